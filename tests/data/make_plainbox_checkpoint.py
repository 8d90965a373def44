"""Makes a real plainbox checkpoint (gzip of compact JSON) for the tests.

Usage: PYTHON make_plainbox_checkpoint.py REPOSITORY [TITLE]

PYTHON is a Python with plainbox 0.38 (scripts/test.sh sets one up and
exports it as $PLAINBOX_PYTHON). Prints the new session directory. The
committed tests/data/plainbox-0.38-demo.session was made with TITLE "demo".
"""

import sys

from plainbox.impl.session.manager import SessionManager
from plainbox.impl.session.storage import SessionStorageRepository

repo = SessionStorageRepository(sys.argv[1])
manager = SessionManager.create_with_unit_list([], repo=repo)
manager.state.metadata.title = sys.argv[2] if len(sys.argv) > 2 else "demo"
manager.state.metadata.flags = {"incomplete"}
manager.checkpoint()
print(manager.storage.location)
