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

/// The text `--help` shows after the commands.
pub const HELP_TEXT: &str = "\
Exit status:
  0  success
  1  failure (one line on stderr says what and where)
  2  usage error
  3  the session is locked (a checkpoint is being written, or a stale
     session.next was left; `sessionfs break-lock ID` clears a stale one)
  4  no such session

Environment:
  PLAINBOX_SESSION_REPOSITORY  the repository, unless --repo is given
  XDG_CACHE_HOME               otherwise $XDG_CACHE_HOME/plainbox/sessions
                               (default ~/.cache/plainbox/sessions)
  RUST_LOG                     log filter (error, warn, info, debug, trace)";
