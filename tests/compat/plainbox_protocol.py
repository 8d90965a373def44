"""plainbox 0.38's own storage protocol, step by step, on a given repository.

  plainbox_protocol.py REPO [--saves N]

REPO is a plain directory or a sessionfs mount.  Unlike plainbox_tool.py
(one storage operation per run, for tests that interleave the two
implementations), this runs one whole life of a session in one process, the
way plainbox itself does:

  create        SessionStorage.create(REPO): a new pbox-*.session directory
  save-loop     save_checkpoint() N times (20 by default), each one read back
                with load_checkpoint() and leaving no session.next behind
  list          SessionStorageRepository(REPO).get_storage_list() has it
  stale-lock    a writer killed (SIGKILL) after creating session.next with
                O_CREAT|O_EXCL and writing half a checkpoint: the lock stays
                and save_checkpoint() raises LockedStorageError, while
                load_checkpoint() still gives the last whole checkpoint
  break-lock    break_lock() removes it; save_checkpoint() works again
  manager       SessionManager.create_with_unit_list(repo=REPO).checkpoint(),
                then a stale lock left by a killed writer, then checkpoint()
                again: plainbox's manager breaks the lock and saves; then
                SessionManager.load_session() reads back the second one
  remove        remove() both sessions; the listing no longer has them

Prints "ok STEP" for each step and exits 0; at the first failure prints
"FAILED STEP: what happened" (with the errno name of an OSError) on stderr and
exits 1.  Run it with the plainbox venv's interpreter ($PLAINBOX_PYTHON).
"""
import argparse
import errno
import os
import signal
import sys

from plainbox.impl.session.manager import SessionManager
from plainbox.impl.session.storage import (
    LockedStorageError, SessionStorage, SessionStorageRepository)

NEXT = "session.next"


class StepFailed(Exception):
    pass


def describe(exc):
    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        return "{} {}: {}".format(type(exc).__name__, name, exc)
    return "{}: {}".format(type(exc).__name__, exc)


def check(cond, what):
    if not cond:
        raise StepFailed(what)


def checkpoint_bytes(i):
    # Distinct, recognisable, and big enough to need more than one page.
    return ("checkpoint {:04d} ".format(i) * 700).encode()


def killed_writer(location, data):
    """Forks a process that takes the session's lock (session.next, O_EXCL),
    writes part of `data` and is killed with SIGKILL mid-save.  Returns the
    errno its open got (0 when it took the lock)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 0
        try:
            fd = os.open(os.path.join(location, NEXT),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, data[: len(data) // 2])
        except OSError as exc:
            code = exc.errno or 255
        os.write(w, bytes([code & 0xFF]))
        if code:
            os._exit(0)
        os.kill(os.getpid(), signal.SIGKILL)
        os._exit(0)  # not reached
    os.close(w)
    got = os.read(r, 1)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if not got:
        raise StepFailed("the killed writer reported nothing (status {})"
                         .format(status))
    return got[0]


def assert_stale_lock(location, data, label):
    code = killed_writer(location, data)
    check(code == 0, "{}: creating {} with O_CREAT|O_EXCL failed with {}"
          .format(label, NEXT, errno.errorcode.get(code, code)))
    check(os.path.lexists(os.path.join(location, NEXT)),
          "{}: a writer killed mid-save left no {} (no stale lock)"
          .format(label, NEXT))


def run(repo, saves):
    steps = []
    state = {}

    def step(name):
        def wrap(fn):
            steps.append((name, fn))
            return fn
        return wrap

    @step("create")
    def _():
        st = SessionStorage.create(repo, prefix="pbox-")
        state["st"] = st
        check(os.path.isdir(st.location), "no directory " + st.location)
        check(os.path.dirname(os.path.abspath(st.location))
              == os.path.abspath(repo), "created outside the repository")
        check(st.load_checkpoint() == b"",
              "a new session's checkpoint is not empty")

    @step("save-loop")
    def _():
        st = state["st"]
        for i in range(saves):
            data = checkpoint_bytes(i)
            try:
                st.save_checkpoint(data)
            except (OSError, LockedStorageError) as exc:
                raise StepFailed("save {} of {}: {}".format(
                    i + 1, saves, describe(exc)))
            got = st.load_checkpoint()
            check(got == data, "save {}: load_checkpoint() gave {} bytes "
                  "({!r}...), want {}".format(i + 1, len(got), got[:20],
                                              len(data)))
            check(not os.path.lexists(os.path.join(st.location, NEXT)),
                  "save {}: {} left behind".format(i + 1, NEXT))
        state["last"] = checkpoint_bytes(saves - 1)

    @step("list")
    def _():
        ids = [s.id for s in SessionStorageRepository(repo).get_storage_list()]
        check(state["st"].id in ids,
              "get_storage_list() lacks {}: {}".format(state["st"].id, ids))

    @step("stale-lock")
    def _():
        st = state["st"]
        assert_stale_lock(st.location, checkpoint_bytes(9999), "stale-lock")
        try:
            st.save_checkpoint(b"must not commit")
        except LockedStorageError:
            pass
        else:
            raise StepFailed("save_checkpoint() went through a held lock")
        got = st.load_checkpoint()
        check(got == state["last"], "with the stale lock, load_checkpoint() "
              "gave {} bytes, not the last whole checkpoint".format(len(got)))

    @step("break-lock")
    def _():
        st = state["st"]
        st.break_lock()
        check(not os.path.lexists(os.path.join(st.location, NEXT)),
              "break_lock() left " + NEXT)
        data = b"after the broken lock"
        st.save_checkpoint(data)
        check(st.load_checkpoint() == data, "the save after break_lock() "
              "is not what load_checkpoint() gives")

    @step("manager")
    def _():
        mgr = SessionManager.create_with_unit_list(
            [], repo=SessionStorageRepository(repo))
        state["mgr"] = mgr.storage
        mgr.state.metadata.title = "first checkpoint"
        mgr.checkpoint()
        assert_stale_lock(mgr.storage.location, checkpoint_bytes(1), "manager")
        mgr.state.metadata.title = "second checkpoint"
        # SessionManager.checkpoint() catches LockedStorageError, breaks the
        # lock and saves again: this is how Checkbox gets past session.next.
        mgr.checkpoint()
        check(not os.path.lexists(os.path.join(mgr.storage.location, NEXT)),
              "checkpoint() left " + NEXT)
        back = SessionManager.load_session([], mgr.storage)
        check(back.state.metadata.title == "second checkpoint",
              "load_session() title is {!r}, want 'second checkpoint'"
              .format(back.state.metadata.title))

    @step("remove")
    def _():
        for st in (state["st"], state["mgr"]):
            st.remove()
            check(not os.path.lexists(st.location),
                  "remove() left " + st.location)
        ids = [s.id for s in SessionStorageRepository(repo).get_storage_list()]
        for st in (state["st"], state["mgr"]):
            check(st.id not in ids, "removed {} is still listed".format(st.id))

    for name, fn in steps:
        try:
            fn()
        except StepFailed as exc:
            print("FAILED {}: {}".format(name, exc), file=sys.stderr)
            return 1
        except Exception as exc:  # plainbox's own errors, OSError and all
            print("FAILED {}: {}".format(name, describe(exc)), file=sys.stderr)
            return 1
        print("ok " + name, flush=True)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("repo")
    p.add_argument("--saves", type=int, default=20)
    a = p.parse_args(argv)
    return run(a.repo, max(1, a.saves))


if __name__ == "__main__":
    sys.exit(main())
