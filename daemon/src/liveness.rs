//! Is the process that writes a run still there?
//!
//! A run log names the pid of its writer. If the run has no `end` record and that process is
//! gone, the run is over: it did not finish cleanly (contract section 6). A pid can be reused
//! by an unrelated process, so a process only counts as the writer if it started no later than
//! the run did (with a little slack for writers that log `start` before spawning).
//!
//! On Linux this reads `/proc/<pid>/stat` directly: one small read, no scan of other processes,
//! and exact start times. (sysinfo's single-pid refresh was tried first; it reported a live,
//! multi-threaded process as gone between two refreshes, which would fail healthy runs.)
//! Elsewhere `kill(pid, 0)` says whether the pid exists, without the reuse guard.

use crate::model::Millis;

/// How much later than the run's `start` record its writer process may have started.
const START_SLACK_MS: i64 = 10_000;

/// Checks single pids cheaply.
#[derive(Debug, Default)]
pub struct Liveness {
    /// Boot time (epoch ms) and clock ticks per second, read once.
    clock: Option<(i64, i64)>,
}

impl Liveness {
    pub fn new() -> Liveness {
        Liveness {
            clock: boot_clock(),
        }
    }

    /// Whether `pid` is running (not a zombie) and started no later than `run_started` plus
    /// slack. When the check itself is impossible, the answer is "running": a run is never
    /// failed on a guess.
    pub fn is_running(&mut self, pid: u32, run_started: Millis) -> bool {
        if pid == 0 || pid > i32::MAX as u32 {
            return false;
        }
        match (proc_stat(pid), self.clock) {
            (Some(Stat { zombie: true, .. }), _) => false,
            (Some(stat), Some((boot_ms, ticks))) => {
                let started_ms = boot_ms + stat.start_ticks * 1000 / ticks.max(1);
                started_ms <= run_started.0 + START_SLACK_MS
            }
            (Some(_), None) => true,
            (None, _) if cfg!(target_os = "linux") => false,
            (None, _) => {
                // SAFETY: kill with signal 0 only checks that the pid exists.
                let rc = unsafe { libc::kill(pid as i32, 0) };
                rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
            }
        }
    }
}

/// One process, as `/proc` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    /// Its process group.
    pub pgrp: u32,
    /// Its (effective) owner.
    pub uid: u32,
    /// When it started, epoch ms.
    pub started_ms: i64,
}

impl Liveness {
    /// Process `pid`, if it exists and is not a zombie (Linux; `None` elsewhere).
    pub fn process(&self, pid: u32) -> Option<Proc> {
        let (boot_ms, ticks) = self.clock?;
        let stat = proc_stat(pid)?;
        if stat.zombie {
            return None;
        }
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata(format!("/proc/{pid}")).ok()?.uid();
        Some(Proc {
            pid,
            ppid: stat.ppid,
            pgrp: stat.pgrp,
            uid,
            started_ms: boot_ms + stat.start_ticks * 1000 / ticks.max(1),
        })
    }

    /// Every live process (one read of `/proc/<pid>/stat` each).
    pub fn processes(&self) -> Vec<Proc> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| self.process(pid))
            .collect()
    }

    /// Whether `p` may be the writer of a run that started at `run_started` (see
    /// [`Liveness::is_running`]).
    pub fn could_have_written(p: &Proc, run_started: Millis) -> bool {
        p.started_ms <= run_started.0 + START_SLACK_MS
    }
}

/// The fields of `/proc/<pid>/stat` that matter here.
struct Stat {
    zombie: bool,
    ppid: u32,
    pgrp: u32,
    /// Start time after boot, in clock ticks.
    start_ticks: i64,
}

fn proc_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: fields after it
    // start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state), then ppid and pgrp; field 22 (starttime) is rest[19].
    let state = *fields.first()?;
    let start_ticks = fields.get(19)?.parse().ok()?;
    Some(Stat {
        zombie: state == "Z" || state == "X",
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_ticks,
    })
}

/// Boot time (epoch ms, from `/proc/stat` btime) and clock ticks per second.
fn boot_clock() -> Option<(i64, i64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: i64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then_some((btime * 1000, ticks as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_runs_and_a_reused_pid_does_not_count() {
        let mut l = Liveness::new();
        let me = std::process::id();
        assert!(l.is_running(me, Millis::now()));
        // A run that "started" a day before this process did was written by someone else.
        assert!(!l.is_running(me, Millis(Millis::now().0 - 86_400_000)));
        // No such pid (above the kernel's pid_max).
        assert!(!l.is_running(4_194_304 + 7, Millis::now()));
    }

    #[test]
    fn a_reaped_child_is_gone_and_a_live_threaded_one_stays() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!Liveness::new().is_running(pid, Millis::now()));

        // This test process has several threads; checks in a row keep saying it runs.
        let mut l = Liveness::new();
        let t = Millis::now();
        let _threads: Vec<_> = (0..3)
            .map(|_| {
                std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(200)))
            })
            .collect();
        for _ in 0..10 {
            assert!(l.is_running(std::process::id(), t));
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
