"""Asks Checkbox's own SessionAssistant which sessions it would offer to
resume and which `--clear-old-sessions` would delete, for each flag set of
the tests (src/checkbox/read_tests.rs, each_status_and_what_checkbox_does).

Usage: PYTHON checkbox_rules.py EMPTY_DIR   (PYTHON as for
make_checkbox_checkpoint.py). Its sessions are made in EMPTY_DIR: the
repository Checkbox reads is redirected there, /var/tmp is not touched.
"""
import os, subprocess, sys
from plainbox.impl.session.storage import SessionStorage, WellKnownDirsHelper
from plainbox.impl.session.assistant import SessionAssistant
cases = [["incomplete","strict_template_expansion"],["setting_up"],["submitted","strict_template_expansion"],["bootstrapping"],[],["strict_template_expansion"],["incomplete","submitted"]]
root = sys.argv[1]
storages = []
for i, flags in enumerate(cases):
    d = os.path.join(root, "s%d" % i)
    subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "make_checkbox_checkpoint.py"), d] + flags, check=True, stdout=subprocess.DEVNULL, env=os.environ)
    storages.append(SessionStorage("s%d" % i))
WellKnownDirsHelper.get_storage_list = staticmethod(lambda: storages)
WellKnownDirsHelper.session_dir = staticmethod(lambda id: os.path.join(root, id))
sa = SessionAssistant("com.canonical:checkbox-cli")
old = {s[0] for s in sa.get_old_sessions()}
res = {c.id for c in sa.get_resumable_sessions()}
for i, flags in enumerate(cases):
    sid = storages[i].id
    print(flags, "resume" if sid in res else "-", "clear" if sid in old else "-")
