#!/usr/bin/env python3
"""Checkbox's provider tool for this test provider.

Not needed to run it (sessionfs-test.provider, beside this file, is found
through $PROVIDERPATH); useful to check it: `python3 manage.py validate`,
with checkbox-ng installed.
"""
from plainbox.provider_manager import setup, N_

setup(
    name="com.example.sessionfs:test",
    namespace="com.example.sessionfs",
    version="1.0",
    description=N_("Shell jobs for running Checkbox against a sessionfs repository"),
)
