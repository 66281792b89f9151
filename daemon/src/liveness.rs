//! Is the process that writes a run still there?
//!
//! A run log names the pid of its writer. If the run has no `end` record and that process is
//! gone, the run is over: it did not finish cleanly (contract section 6). A pid can be reused
//! by an unrelated process, so a process only counts as the writer if it started no later than
//! the run did (with a little slack for writers that log `start` before spawning).

use crate::model::Millis;
use sysinfo::{Pid, ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System};

/// How much later than the run's `start` record its writer process may have started.
const START_SLACK_SECS: u64 = 10;

/// Checks single pids cheaply (one `/proc/<pid>` read each), reusing one `System`.
pub struct Liveness {
    sys: Option<System>,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness::new()
    }
}

impl Liveness {
    pub fn new() -> Liveness {
        let sys = System::new()
            .map_err(|e| {
                tracing::warn!("process checks unavailable, runs are never timed out: {e}")
            })
            .ok();
        Liveness { sys }
    }

    /// Whether `pid` is running and started no later than `run_started` (plus slack). When the
    /// check itself is impossible, the answer is "running": never fail a run on a guess.
    pub fn is_running(&mut self, pid: u32, run_started: Millis) -> bool {
        let Some(sys) = self.sys.as_mut() else {
            return true;
        };
        let pid = Pid::from_u32(pid);
        sys.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            true,
            ProcessRefreshKind::nothing(),
        );
        match sys.process(pid) {
            None => false,
            Some(p) if p.status() == ProcessStatus::Zombie => false,
            Some(p) => {
                let started = u64::try_from(run_started.0 / 1000).unwrap_or(0);
                p.start_time() <= started + START_SLACK_SECS
            }
        }
    }
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
    fn a_reaped_child_is_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!Liveness::new().is_running(pid, Millis::now()));
    }
}
