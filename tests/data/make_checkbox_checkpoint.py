"""Makes a real Checkbox checkpoint and io-log for the tests.

Usage: PYTHON make_checkbox_checkpoint.py SESSION_DIR FLAG...

PYTHON is a Python whose `plainbox` is Checkbox's (checkbox-ng 1.18.1 from
PyPI writes format version 7; canonical/checkbox main, put first on
PYTHONPATH with pyyaml, writes version 11). SESSION_DIR is created with
io-logs/ in it; the checkpoint is written to SESSION_DIR/session.

The session: desired jobs ns::pass (passed, its output in a record.gz with
both streams interleaved), ns::fail (failed, commented) and ns::wait (the
running job, no result yet); mandatory job ns::info (passed).

The committed tests/data/checkbox-1.18.1-v7.session, checkbox-main-v11.session
and checkbox-ns__pass.record.gz were made with FLAGs "incomplete" (1.18.1)
and "incomplete strict_template_expansion" (main).
"""

import gzip
import io
import json
import os
import sys

from plainbox.impl.result import DiskJobResult, IOLogRecord, IOLogRecordWriter
from plainbox.impl.session.state import SessionState
from plainbox.impl.session.suspend import SessionSuspendHelper
from plainbox.impl.unit.job import JobDefinition

session_dir = os.path.abspath(sys.argv[1])
os.makedirs(os.path.join(session_dir, "io-logs"), exist_ok=True)


def job(id, command):
    return JobDefinition({"id": id, "plugin": "shell", "command": command})


jobs = {
    "pass": job("ns::pass", "echo one; echo two >&2; echo three"),
    "fail": job("ns::fail", "false"),
    "wait": job("ns::wait", "sleep 60"),
    "info": job("ns::info", "uname"),
}
state = SessionState(list(jobs.values()))
state.update_mandatory_job_list([jobs["info"]])
state.update_desired_job_list([jobs["pass"], jobs["fail"], jobs["wait"]])
meta = state.metadata
meta.title = "demo"
meta.flags = set(sys.argv[2:])
meta.app_id = "com.canonical:checkbox-cli"
meta.app_blob = json.dumps(
    {"testplan_id": "ns::tp", "description": "A demo plan"}
).encode("UTF-8")
meta.running_job_name = "ns::wait"
meta.last_job_start_time = 1764582167.25
if hasattr(meta, "remaining_todo_jobs"):
    meta.remaining_todo_jobs = True


def record(slug, records):
    path = os.path.join(session_dir, "io-logs", slug + ".record.gz")
    with gzip.open(path, "wb") as gz, io.TextIOWrapper(gz, "UTF-8") as text:
        writer = IOLogRecordWriter(text)
        for r in records:
            writer.write_record(IOLogRecord(*r))
    return path


def result(outcome, rc, duration, log, comments=None):
    return DiskJobResult(
        {
            "outcome": outcome,
            "return_code": rc,
            "execution_duration": duration,
            "io_log_filename": log,
            "comments": comments,
        }
    )


log = record(
    "ns__pass",
    [
        (0.0, "stdout", b"one\n"),
        (0.001, "stderr", b"two\n"),
        (0.002, "stdout", b"three\n"),
    ],
)
state.update_job_result(jobs["pass"], result("pass", 0, 0.25, log))
log = record("ns__fail", [])
state.update_job_result(jobs["fail"], result("fail", 1, 0.5, log, "boom"))
log = record("ns__info", [(0.0, "stdout", b"Linux\n")])
state.update_job_result(jobs["info"], result("pass", 0, 0.125, log))

data = SessionSuspendHelper().suspend(state, session_dir)
with open(os.path.join(session_dir, "session"), "wb") as f:
    f.write(data)
print(SessionSuspendHelper.VERSION)
