//! Whether a closing writer is being killed by a signal, read from
//! `/proc/PID/stat` on a small pool of reader threads.
//!
//! Invariants:
//! - a flush never waits more than [`PROC_STAT_WAIT`] for the answer: a
//!   process whose `/proc` file does not answer is taken as alive (see
//!   [`dying_from_signal`]);
//! - a reader thread that answered is reused; one stuck on a process in
//!   `execve()` is never given back, and exits once that process gets on;
//! - anything unreadable or unparsable means "not dying": a checkpoint is
//!   discarded only on positive evidence of a death by signal.

use std::fs::File;
use std::sync::Mutex;

use super::lock;

/// True when `pid` is a thread of a process being killed by a signal: its
/// `/proc/PID/stat` shows PF_EXITING (0x4) in field 9 and a signal number in
/// the low 7 bits of field 52 (`exit_code`). A normal exit shows
/// `status << 8` there.
///
/// The file is read on a helper thread, and a process whose file does not
/// answer within [`PROC_STAT_WAIT`] is taken as alive: on kernels whose
/// procfs takes `exec_update_lock` to show `/proc/PID/stat`, a process
/// inside `execve()` that is closing a close-on-exec descriptor of this
/// mount waits for this very flush while holding that lock, and a plain
/// read would deadlock both (the process stuck in D state for good). A
/// process in the middle of an exec is not dying.
pub(super) fn dying_from_signal(pid: u32) -> bool {
    DyingCheck::ask(pid).answer()
}

/// A [`dying_from_signal`] question asked now and answered later: a flush
/// asks it before syncing the checkpoint and takes the answer just before
/// the rename, so the `/proc` read costs no time of its own.
pub(super) struct DyingCheck {
    pid: u32,
    asked: Option<(ProcStatReader, std::sync::mpsc::Receiver<ProcStatAnswer>)>,
}

impl DyingCheck {
    pub(super) fn ask(pid: u32) -> DyingCheck {
        let asked = if pid == 0 { None } else { proc_stat_ask(pid) };
        DyingCheck { pid, asked }
    }

    /// The process asked about.
    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    pub(super) fn answer(self) -> bool {
        let pid = self.pid;
        let Some((worker, answer)) = self.asked else {
            return false;
        };
        match answer.recv_timeout(PROC_STAT_WAIT) {
            Ok(result) => {
                // The reader answered: it can take the next question.
                lock(&PROC_STAT_READERS).push(worker);
                match result {
                    Ok(stat) => parse_signal_death(&stat),
                    Err(_) => false,
                }
            }
            Err(_) => {
                // The reader stays stuck until the process gets on; dropping
                // its sender lets it exit once it does.
                log::debug!("/proc/{pid}/stat does not answer (the process is in execve): alive");
                false
            }
        }
    }
}

/// `/proc/PID/stat` in one read (the kernel makes the whole line at once;
/// it ends with a newline).
fn read_proc_stat(pid: u32) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = File::open(format!("/proc/{pid}/stat"))?;
    let mut data = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = file.read(&mut buf)?;
        data.extend_from_slice(&buf[..n]);
        if n == 0 || data.ends_with(b"\n") {
            return Ok(data);
        }
    }
}

type ProcStatAnswer = std::io::Result<Vec<u8>>;
type ProcStatJob = (u32, std::sync::mpsc::Sender<ProcStatAnswer>);
type ProcStatReader = std::sync::mpsc::Sender<ProcStatJob>;

/// Idle threads that read `/proc/PID/stat` for [`dying_from_signal`]: a
/// thread is reused for the next close instead of being started for each
/// one, and one that gets stuck is simply not given back.
static PROC_STAT_READERS: Mutex<Vec<std::sync::mpsc::Sender<ProcStatJob>>> = Mutex::new(Vec::new());

/// Hands `pid` to an idle reader (starting one if none is idle); returns the
/// reader and where its answer arrives.
fn proc_stat_ask(pid: u32) -> Option<(ProcStatReader, std::sync::mpsc::Receiver<ProcStatAnswer>)> {
    let (answer_tx, answer_rx) = std::sync::mpsc::channel();
    let mut job = (pid, answer_tx);
    loop {
        let idle = lock(&PROC_STAT_READERS).pop();
        let worker = match idle {
            Some(w) => w,
            None => {
                let (tx, rx) = std::sync::mpsc::channel::<ProcStatJob>();
                let spawned =
                    std::thread::Builder::new()
                        .name("proc-stat".into())
                        .spawn(move || {
                            while let Ok((pid, answer)) = rx.recv() {
                                let _ = answer.send(read_proc_stat(pid));
                            }
                        });
                if let Err(e) = spawned {
                    log::warn!(
                        "cannot check whether process {pid} is dying ({e}): taking it as alive"
                    );
                    return None;
                }
                tx
            }
        };
        match worker.send(job) {
            Ok(()) => return Some((worker, answer_rx)),
            // That reader is gone: try another.
            Err(std::sync::mpsc::SendError(j)) => job = j,
        }
    }
}

/// How long a flush waits for `/proc/PID/stat` of the closing process.
const PROC_STAT_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

fn parse_signal_death(stat: &[u8]) -> bool {
    // The command name (field 2) may contain spaces and parentheses: the
    // fields after it start after the last ')'.
    let Some(close) = stat.iter().rposition(|&b| b == b')') else {
        return false;
    };
    let rest = String::from_utf8_lossy(&stat[close + 1..]);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state), so field N is fields[N - 3].
    let (Some(flags), Some(exit_code)) = (fields.get(9 - 3), fields.get(52 - 3)) else {
        return false;
    };
    let (Ok(flags), Ok(exit_code)) = (flags.parse::<u64>(), exit_code.parse::<u64>()) else {
        return false;
    };
    const PF_EXITING: u64 = 0x4;
    flags & PF_EXITING != 0 && exit_code & 0x7f != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_deaths_are_told_from_normal_exits() {
        let line = |flags: u64, exit_code: u64| {
            let mut fields: Vec<String> = (3..=52).map(|_| "0".to_string()).collect();
            fields[9 - 3] = flags.to_string();
            fields[52 - 3] = exit_code.to_string();
            format!("1234 (my (odd) prog) {}", fields.join(" ")).into_bytes()
        };
        assert!(parse_signal_death(&line(0x4, 9)));
        assert!(parse_signal_death(&line(0x4 | 0x40, 15)));
        assert!(
            !parse_signal_death(&line(0x4, 1 << 8)),
            "exit(1) is a normal exit"
        );
        assert!(!parse_signal_death(&line(0x4, 0)));
        assert!(!parse_signal_death(&line(0x0, 9)), "not exiting");
        assert!(!parse_signal_death(b"garbage"));
    }

    #[test]
    fn a_living_process_is_not_dying() {
        assert!(!dying_from_signal(std::process::id()));
    }
}
