//! The mount options `sessionfs mount -o` takes: one table, [`OPTIONS`],
//! from which `-o` is parsed ([`apply`]), its help and its error message
//! are written ([`common_names`], [`help_lines`]), and the mount helper
//! decides which options of an fstab line to pass on ([`is_known`]).
//!
//! Invariants: an option is known exactly when it has a row; a row with a
//! value placeholder matches only `NAME=VALUE` (never `NAME` alone or
//! `NAMEX=…`), a row without one matches only `NAME`; the order of the rows
//! is the order every text lists them in.

use std::fmt;
use std::path::PathBuf;

use super::config::MountRequest;

/// What an option does to the mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Accepted and nothing to do: the mount already behaves that way, or
    /// the option is for mount(8) and /etc/fstab only.
    Nothing,
    /// `--read-only`.
    ReadOnly,
    /// `--allow-other`.
    AllowOther,
    /// `--auto-unmount`.
    AutoUnmount,
    /// `--no-passthrough`.
    NoPassthrough,
    /// `--threads N`.
    Threads,
    /// `--log-file PATH`.
    LogFile,
    /// How many directories the daemon watches at most.
    MaxWatches,
}

/// Where an option is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    /// A FUSE option other FUSE tools take too: named in the short help of
    /// `-o`, in its long help and in the error for an unknown option.
    Fuse,
    /// One of sessionfs's own: in the long help and in the error.
    Own,
    /// Accepted so that fstab lines written for other filesystems work;
    /// named only in the long help's last line.
    Quiet,
}

/// One mount option.
#[derive(Debug, Clone, Copy)]
pub struct MountOption {
    pub name: &'static str,
    /// The placeholder of its value (`threads=N`); `None` for a flag.
    pub value: Option<&'static str>,
    pub effect: Effect,
    pub listed: Listed,
    pub help: &'static str,
}

impl MountOption {
    /// `name`, or `name=VALUE`.
    pub fn usage(&self) -> String {
        match self.value {
            Some(v) => format!("{}={v}", self.name),
            None => self.name.to_string(),
        }
    }
}

const fn opt(
    name: &'static str,
    value: Option<&'static str>,
    effect: Effect,
    listed: Listed,
    help: &'static str,
) -> MountOption {
    MountOption {
        name,
        value,
        effect,
        listed,
        help,
    }
}

const fn quiet(name: &'static str) -> MountOption {
    opt(name, None, Effect::Nothing, Listed::Quiet, "")
}

/// Every option `-o` takes, in the order the help lists them.
pub const OPTIONS: &[MountOption] = &[
    opt(
        "ro",
        None,
        Effect::ReadOnly,
        Listed::Fuse,
        "refuse every change (--read-only)",
    ),
    opt(
        "rw",
        None,
        Effect::Nothing,
        Listed::Fuse,
        "allow changes (the default)",
    ),
    opt(
        "allow_other",
        None,
        Effect::AllowOther,
        Listed::Fuse,
        "let other users in (--allow-other)",
    ),
    opt(
        "auto_unmount",
        None,
        Effect::AutoUnmount,
        Listed::Fuse,
        "unmount when the daemon exits (--auto-unmount)",
    ),
    opt(
        "default_permissions",
        None,
        Effect::Nothing,
        Listed::Fuse,
        "the kernel checks the files' modes (always so)",
    ),
    opt(
        "threads",
        Some("N"),
        Effect::Threads,
        Listed::Own,
        "threads serving FUSE requests (--threads)",
    ),
    opt(
        "no_passthrough",
        None,
        Effect::NoPassthrough,
        Listed::Own,
        "serve `session` from the daemon (--no-passthrough)",
    ),
    opt(
        "log_file",
        Some("PATH"),
        Effect::LogFile,
        Listed::Own,
        "where the background daemon logs (--log-file)",
    ),
    opt(
        "max_watches",
        Some("N"),
        Effect::MaxWatches,
        Listed::Own,
        "watch at most N directories for changes made outside the mount; the kernel caches the others only briefly (default: as many as fs.inotify.max_user_watches allows)",
    ),
    opt("allow_root", None, Effect::AllowOther, Listed::Quiet, ""),
    quiet("dev"),
    quiet("nodev"),
    quiet("suid"),
    quiet("nosuid"),
    quiet("exec"),
    quiet("noexec"),
    quiet("auto"),
    quiet("noauto"),
    quiet("user"),
    quiet("nouser"),
    quiet("_netdev"),
    quiet("nofail"),
];

/// The row `opt` (one option, without commas) matches, and its value.
pub fn lookup(opt: &str) -> Option<(&'static MountOption, Option<&str>)> {
    OPTIONS.iter().find_map(|o| match o.value {
        None => (opt == o.name).then_some((o, None)),
        Some(_) => opt
            .strip_prefix(o.name)
            .and_then(|rest| rest.strip_prefix('='))
            .map(|value| (o, Some(value))),
    })
}

/// True when `opt` (one option, without commas) is one `-o` takes.
pub fn is_known(opt: &str) -> bool {
    lookup(opt).is_some()
}

/// Why `-o` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionError {
    Unknown(String),
    /// `threads=` or `max_watches=` with something other than a number.
    NotANumber(String),
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionError::Unknown(opt) => {
                let known: Vec<String> = OPTIONS
                    .iter()
                    .filter(|o| o.listed != Listed::Quiet)
                    .map(MountOption::usage)
                    .collect();
                write!(
                    f,
                    "unknown mount option {opt:?} (known: {})",
                    known.join(", ")
                )
            }
            OptionError::NotANumber(opt) => {
                let name = opt.split('=').next().unwrap_or(opt);
                write!(f, "invalid mount option {opt:?}: {name} takes a number")
            }
        }
    }
}

/// Applies the `-o` options of `request` to it, left to right.
pub fn apply(request: &mut MountRequest) -> Result<(), OptionError> {
    let options = request.options.clone();
    for opt in options.iter().flat_map(|o| o.split(',')) {
        let opt = opt.trim();
        if opt.is_empty() {
            continue;
        }
        let Some((row, value)) = lookup(opt) else {
            return Err(OptionError::Unknown(opt.to_string()));
        };
        let value = value.unwrap_or_default();
        match row.effect {
            Effect::Nothing => {}
            Effect::ReadOnly => request.read_only = true,
            Effect::AllowOther => request.allow_other = true,
            Effect::AutoUnmount => request.auto_unmount = true,
            Effect::NoPassthrough => request.passthrough = false,
            Effect::Threads => {
                request.threads = value
                    .parse()
                    .map_err(|_| OptionError::NotANumber(opt.to_string()))?;
            }
            Effect::LogFile => request.log_file = Some(PathBuf::from(value)),
            Effect::MaxWatches => {
                request.max_watches = Some(
                    value
                        .parse()
                        .map_err(|_| OptionError::NotANumber(opt.to_string()))?,
                );
            }
        }
    }
    Ok(())
}

/// The FUSE options other tools take too, for the short help of `-o`:
/// `ro, rw, allow_other, …`.
pub fn common_names() -> String {
    OPTIONS
        .iter()
        .filter(|o| o.listed == Listed::Fuse)
        .map(|o| o.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The long help of `-o`: one line per option, then the quietly accepted
/// ones.
pub fn help_lines() -> String {
    let shown: Vec<&MountOption> = OPTIONS
        .iter()
        .filter(|o| o.listed != Listed::Quiet)
        .collect();
    let width = shown.iter().map(|o| o.usage().len()).max().unwrap_or(0);
    let mut text = String::from("Mount options (-o OPT[,OPT]):\n");
    for o in shown {
        text.push_str(&format!("  {:<width$}  {}\n", o.usage(), o.help));
    }
    let quiet: Vec<&str> = OPTIONS
        .iter()
        .filter(|o| o.listed == Listed::Quiet)
        .map(|o| o.name)
        .collect();
    // Wrapped as the rest of the help text is.
    let mut line = String::from("Also accepted, for /etc/fstab lines:");
    for (i, name) in quiet.iter().enumerate() {
        let word = if i + 1 == quiet.len() {
            format!("{name}.")
        } else {
            format!("{name},")
        };
        if line.len() + 1 + word.len() > 78 {
            text.push_str(&line);
            text.push('\n');
            line = word;
        } else {
            line.push(' ');
            line.push_str(&word);
        }
    }
    text.push_str(&line);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(options: &[&str]) -> MountRequest {
        MountRequest {
            mountpoint: "/m".into(),
            foreground: false,
            read_only: false,
            allow_other: false,
            auto_unmount: false,
            threads: 8,
            max_watches: None,
            passthrough: true,
            log_file: None,
            options: options.iter().map(|s| s.to_string()).collect(),
            ready_fd: None,
            daemon_args: Vec::new(),
        }
    }

    #[test]
    fn options_set_what_the_long_options_set() {
        let mut r = request(&["ro, allow_root", "threads=3,no_passthrough,,log_file=/l"]);
        apply(&mut r).unwrap();
        assert!(r.read_only && r.allow_other && !r.auto_unmount && !r.passthrough);
        assert_eq!(r.threads, 3);
        assert_eq!(r.log_file, Some(PathBuf::from("/l")));
        let mut r = request(&["rw,auto_unmount,default_permissions,nofail,_netdev"]);
        apply(&mut r).unwrap();
        assert!(!r.read_only && r.auto_unmount && r.passthrough);
    }

    #[test]
    fn bad_options_are_refused_with_what_is_known() {
        let mut r = request(&["ro,frobnicate"]);
        assert_eq!(
            apply(&mut r).unwrap_err().to_string(),
            "unknown mount option \"frobnicate\" (known: ro, rw, allow_other, auto_unmount, \
             default_permissions, threads=N, no_passthrough, log_file=PATH, max_watches=N)"
        );
        let mut r = request(&["threads=many"]);
        assert_eq!(
            apply(&mut r).unwrap_err().to_string(),
            "invalid mount option \"threads=many\": threads takes a number"
        );
        for bad in ["threads", "threadsx=4", "ro=1", "log_file"] {
            assert_eq!(
                apply(&mut request(&[bad])),
                Err(OptionError::Unknown(bad.to_string())),
                "{bad}"
            );
        }
    }

    #[test]
    fn known_options_match_whole_names() {
        assert!(is_known("threads=4"));
        assert!(!is_known("threads"));
        assert!(!is_known("threadsx=4"));
        assert!(is_known("log_file=/var/log/s.log"));
        assert!(is_known("nodev"));
        assert!(!is_known("noatime"));
    }

    #[test]
    fn every_option_is_in_the_help_and_names_are_unique() {
        let help = help_lines();
        for (i, o) in OPTIONS.iter().enumerate() {
            assert!(help.contains(o.name), "{} missing from:\n{help}", o.name);
            assert!(
                OPTIONS[..i].iter().all(|p| p.name != o.name),
                "{} twice",
                o.name
            );
            assert_eq!(o.help.is_empty(), o.listed == Listed::Quiet, "{}", o.name);
        }
        assert_eq!(
            common_names(),
            "ro, rw, allow_other, auto_unmount, default_permissions"
        );
    }
}
