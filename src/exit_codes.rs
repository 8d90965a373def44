//! The exit codes of `sessionfs`, as documented in `--help`.

/// The command did what was asked.
pub const SUCCESS: i32 = 0;
/// The command failed; the one line on stderr says why.
pub const FAILURE: i32 = 1;
/// The command line was wrong (clap's usage errors use this code too).
pub const USAGE: i32 = 2;
/// The session is locked: a checkpoint is being written, or an interrupted
/// one left `session.next` behind (`sessionfs break-lock` clears it).
pub const LOCKED: i32 = 3;
/// No session has the given id.
pub const NO_SUCH_SESSION: i32 = 4;
/// A session's data cannot be read as what it should be: a checkpoint
/// that is damaged (truncated or corrupt gzip), not a Checkbox checkpoint,
/// of an unknown version or too large; a job's log that is damaged,
/// missing, or named by a path outside the session (never read).
pub const BAD_DATA: i32 = 5;

/// The text `--help` shows after the commands.
pub const HELP_TEXT: &str = "\
Exit status:
  0  success
  1  failure (one line on stderr says what and where)
  2  usage error
  3  the session is locked (a checkpoint is being written, or a stale
     session.next was left; `sessionfs break-lock ID` clears a stale one)
  4  no such session
  5  the session's data cannot be read (a damaged, foreign, unknown-version
     or too large checkpoint; a job log that is damaged, missing, or named
     by a path outside the session, which is never read)

Repository: --repo DIR wins; else --checkbox (Checkbox's repository,
$SESSIONFS_CHECKBOX_REPOSITORY or /var/tmp/checkbox-ng/sessions); else
$PLAINBOX_SESSION_REPOSITORY; else ~/.cache/plainbox/sessions. With both,
--repo DIR --checkbox is DIR laid out as Checkbox's (microsecond names,
io-logs/ and session-share/, no legacy mode), as is Checkbox's own place.

Environment:
  PLAINBOX_SESSION_REPOSITORY  the repository, unless --repo or --checkbox
  SESSIONFS_CHECKBOX_REPOSITORY  where --checkbox looks (Checkbox run with
                               another base directory)
  XDG_CACHE_HOME               otherwise $XDG_CACHE_HOME/plainbox/sessions
                               (default ~/.cache/plainbox/sessions)
  RUST_LOG                     log filter (error, warn, info, debug, trace)";
