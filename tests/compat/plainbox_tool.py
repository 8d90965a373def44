"""Reference driver for plainbox 0.38's session storage (compat tests).

Uses only plainbox.impl.session.storage, so sessionfs' on-disk layout can be
checked against the real thing.  Run with the plainbox venv's interpreter
(tests use $PLAINBOX_PYTHON, default /opt/plainbox-venv/bin/python):

  create REPO [--prefix P] [--legacy]  print the new session dir (absolute)
  save REPO SESSION FILE               save_checkpoint(FILE bytes); exit 3 +
                                       "locked" on LockedStorageError
  load REPO SESSION                    load_checkpoint() bytes to stdout
  list REPO                            session ids, get_storage_list() order
  last REPO                            id of get_last_storage(), or nothing
  break-lock REPO SESSION              break_lock()
  remove REPO SESSION                  remove()

SESSION is a session id (directory name without ".session") or a path to a
session directory.  REPO is passed to plainbox unchanged.  Other errors exit 1.
"""
import argparse
import os
import sys

from plainbox.impl.session.storage import (
    LockedStorageError, SessionStorage, SessionStorageRepository)


def storage(repo, session):
    if os.sep in session or os.path.isdir(session):
        return SessionStorage(session)
    return SessionStorage(os.path.join(repo, session + ".session"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create")
    c.add_argument("repo")
    c.add_argument("--prefix", default="pbox-")
    c.add_argument("--legacy", action="store_true")
    s = sub.add_parser("save")
    s.add_argument("repo")
    s.add_argument("session")
    s.add_argument("file")
    for name in ("load", "break-lock", "remove"):
        x = sub.add_parser(name)
        x.add_argument("repo")
        x.add_argument("session")
    for name in ("list", "last"):
        sub.add_parser(name).add_argument("repo")
    a = p.parse_args(argv)
    try:
        if a.cmd == "create":
            st = SessionStorage.create(a.repo, legacy_mode=a.legacy,
                                       prefix=a.prefix)
            print(os.path.abspath(st.location))
        elif a.cmd == "save":
            with open(a.file, "rb") as f:
                data = f.read()
            try:
                storage(a.repo, a.session).save_checkpoint(data)
            except LockedStorageError:
                print("locked")
                return 3
        elif a.cmd == "load":
            data = storage(a.repo, a.session).load_checkpoint()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        elif a.cmd == "list":
            for st in SessionStorageRepository(a.repo).get_storage_list():
                print(st.id)
        elif a.cmd == "last":
            st = SessionStorageRepository(a.repo).get_last_storage()
            if st is not None:
                print(st.id)
        elif a.cmd == "break-lock":
            storage(a.repo, a.session).break_lock()
        elif a.cmd == "remove":
            storage(a.repo, a.session).remove()
    except OSError as exc:
        print("error: {}".format(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
