//! Acting on agents: `POST /v1/agents/{id}/cancel`.
//!
//! | kind | how it is stopped | refused when |
//! |---|---|---|
//! | CLI run (`cli:`) | the run log's `pid` is asked with SIGINT (queued with [`stop::FORWARD`], or [`stop::NOTE`] when its `pgid` is signalled too), SIGTERM after 5 s, then SIGKILL to the group (or the pid's descendants) and the pid 10 s later; `force` goes straight to SIGKILL | the run has ended; it names no pid; the pid is not running, is not its writer (it started after the run: a reused pid), or belongs to another user |
//! | cloud run (`cloud:`) | Oz's `POST /agent/runs/{id}/cancel` (409 while `PENDING`: retried, within 20 s in all), then a sync | the run has ended (Oz 400); Oz cannot cancel it (422: self-hosted, local and GitHub Actions runs) |
//! | Claude Code conversation | SIGINT to the process in its live session registry (pid and start time checked), which interrupts the current turn; only with `force` (a confirmation), since it interrupts an interactive program | not confirmed; no live process is known |
//! | other conversations | — | always: their process is not known to agentd; the answer names the resume command |
//!
//! Every signal goes only to a process of this user whose start time shows it is the run's
//! writer (see [`crate::liveness`]); a pid that was reused is never signalled. The answer is
//! given once the request is carried out; the item turns `canceled` when its writer records it.

use crate::ingest::runlog;
use crate::liveness::{Liveness, Proc};
use crate::model::Millis;
use crate::store::Store;
use agentd_wire::{Item, stop};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// After SIGINT, how long a run has to stop before SIGTERM.
const TERM_AFTER: Duration = Duration::from_secs(5);
/// After SIGTERM, how long before SIGKILL.
const KILL_AFTER: Duration = Duration::from_secs(10);
/// After SIGKILL to its command, how long a supervising writer (`agentctl run`) has to record
/// the end before it is killed too.
const WRITER_GRACE: Duration = Duration::from_secs(1);
/// How much earlier than its run's start a process of the run's group may have started (the
/// writer logs `start` just after spawning): older ones belong to a group that was reused.
const START_SLACK_MS: i64 = 10_000;
/// How long a cloud cancel may take, retries while Oz says the run is still `PENDING` included:
/// below the 30 s a client waits for an answer.
const CLOUD_CANCEL_BUDGET: Duration = Duration::from_secs(20);

/// Why an agent could not be stopped.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no agent with id {0:?}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyFinished(String),
    #[error("{0}")]
    NotCancelable(String),
    #[error("{0}")]
    Upstream(String),
    #[error("{0}")]
    Internal(String),
}

impl From<crate::store::StoreError> for CancelError {
    fn from(e: crate::store::StoreError) -> Self {
        CancelError::Internal(e.to_string())
    }
}

/// Stops agents. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    store: Store,
    cloud: Option<Arc<crate::cloud::sync::CloudHandle>>,
    /// Claude Code's live registry dirs (`<root>/sessions`).
    claude_sessions: Arc<Vec<PathBuf>>,
}

/// The `start` record fields that say who to signal.
#[derive(Debug, Clone, Copy)]
struct Writer {
    pid: u32,
    pgid: Option<u32>,
    started: Millis,
    /// When the stop was asked for: a process that started after it is not the run's (its
    /// pid or group number was reused).
    asked: Millis,
}

impl Control {
    pub fn new(
        store: Store,
        cloud: Option<Arc<crate::cloud::sync::CloudHandle>>,
        claude_sessions: Vec<PathBuf>,
    ) -> Control {
        Control {
            store,
            cloud,
            claude_sessions: Arc::new(claude_sessions),
        }
    }

    /// Carries out a stop request for item `id`.
    pub async fn cancel(&self, id: &str, force: bool) -> Result<(), CancelError> {
        let item = self
            .store
            .get(id)?
            .ok_or_else(|| CancelError::NotFound(id.to_owned()))?;
        if !item.status.is_active() {
            return Err(CancelError::AlreadyFinished(format!(
                "{id} has already finished ({})",
                item.status.as_str()
            )));
        }
        use crate::sources::SourceKind;
        match SourceKind::of_id(id) {
            Some(SourceKind::Runs) => self.cancel_run(&item, force).await,
            Some(SourceKind::Cloud) => self.cancel_cloud(&item).await,
            Some(SourceKind::ClaudeCode) => self.cancel_claude(&item, force).await,
            Some(
                SourceKind::Codex
                | SourceKind::Gemini
                | SourceKind::Qwen
                | SourceKind::Droid
                | SourceKind::Copilot
                | SourceKind::Kimi
                | SourceKind::OpenCode
                | SourceKind::Goose,
            )
            | None => Err(not_visible(&item)),
        }
    }

    async fn cancel_run(&self, item: &Item, force: bool) -> Result<(), CancelError> {
        let path = self.store.origin(&item.id)?.ok_or_else(|| {
            CancelError::NotCancelable(format!("{} has no run log to find its process", item.id))
        })?;
        let writer = tokio::task::spawn_blocking(move || read_writer(&path))
            .await
            .map_err(|e| CancelError::Internal(e.to_string()))??;
        let procs = Liveness::new();
        check_writer(&procs, &writer)?;
        let me = crate::fsread::my_uid();
        tracing::info!(
            "stopping {} (pid {}, group {:?}{})",
            item.id,
            writer.pid,
            writer.pgid,
            if force { ", forced" } else { "" }
        );
        if force {
            kill_run(&procs, &writer, me);
        } else {
            signal_run(&procs, &writer, libc::SIGINT, me);
            let store = self.store.clone();
            let id = item.id.clone();
            tokio::spawn(async move { escalate(store, id, writer).await });
        }
        Ok(())
    }

    async fn cancel_cloud(&self, item: &Item) -> Result<(), CancelError> {
        let Some(cloud) = &self.cloud else {
            return Err(CancelError::NotCancelable(format!(
                "{} is a cloud run, and no cloud API key is configured",
                item.id
            )));
        };
        let run_id = item.id.strip_prefix("cloud:").unwrap_or(&item.id);
        let accepted = cloud
            .cancel(run_id, CLOUD_CANCEL_BUDGET)
            .await
            .map_err(|e| match e {
                crate::cloud::sync::CancelRefused::Finished(m) => CancelError::AlreadyFinished(m),
                crate::cloud::sync::CancelRefused::NotCancelable(m) => {
                    CancelError::NotCancelable(m)
                }
                crate::cloud::sync::CancelRefused::Upstream(m) => CancelError::Upstream(m),
            });
        if accepted.is_ok() {
            // The row turns canceled with the next sync: ask for it now, without waiting.
            let cloud = cloud.clone();
            let id = item.id.clone();
            tokio::spawn(async move {
                if let Err(e) = cloud.sync_now().await {
                    tracing::warn!("{id} was canceled; the sync after it failed: {e}");
                }
            });
        }
        accepted
    }

    async fn cancel_claude(&self, item: &Item, force: bool) -> Result<(), CancelError> {
        let session = item.id.strip_prefix("claude-code:").unwrap_or(&item.id);
        let dirs = self.claude_sessions.clone();
        let session_owned = session.to_owned();
        let live = tokio::task::spawn_blocking(move || live_claude_process(&dirs, &session_owned))
            .await
            .map_err(|e| CancelError::Internal(e.to_string()))?;
        let Some((pid, started)) = live else {
            return Err(not_visible(item));
        };
        let procs = Liveness::new();
        let me = crate::fsread::my_uid();
        let Some(p) = procs.process(pid).filter(|p| p.uid == me) else {
            return Err(not_visible(item));
        };
        // A process that started after the registry's entry was written reuses the pid.
        if !Liveness::could_have_written(&p, started) {
            return Err(not_visible(item));
        }
        if !force {
            return Err(CancelError::NotCancelable(format!(
                "stopping {} interrupts its interactive Claude Code session (pid {pid}); confirm with force (agentctl stop --force)",
                item.id
            )));
        }
        tracing::info!("interrupting {} (pid {pid})", item.id);
        send(pid as i32, libc::SIGINT);
        Ok(())
    }
}

/// The refusal for a conversation whose process agentd cannot see.
fn not_visible(item: &Item) -> CancelError {
    let how = item
        .open
        .command
        .as_deref()
        .map(|c| format!(": {c}"))
        .unwrap_or_default();
    CancelError::NotCancelable(format!(
        "agentd cannot see the process of {}; open it to stop it{how}",
        item.id
    ))
}

/// Reads the `start` record (the run log's first record) for its `pid`, `pgid` and time.
fn read_writer(path: &Path) -> Result<Writer, CancelError> {
    use crate::ingest::tail::{FileCursor, Opened};
    let refuse = |why: String| CancelError::NotCancelable(why);
    let mut cursor = FileCursor::default();
    let opened = Opened::open(path, &mut cursor)
        .map_err(|e| refuse(format!("cannot read {}: {e}", path.display())))?;
    let mut start: Option<(serde_json::Value, Millis)> = None;
    // The start record is the first; a bound keeps a huge log from being read for it.
    let _ = opened.read_lines(&mut cursor, crate::ingest::runs::MAX_LINE, &mut |line| {
        if start.is_none()
            && let Ok(runlog::Record::Start(s)) = runlog::parse_line(line)
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(line)
        {
            start = Some((v, s.ts));
        }
    });
    let (v, started) = start.ok_or_else(|| refuse("the run log has no start record".into()))?;
    let id = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 1)
    };
    let pid = id("pid").ok_or_else(|| {
        refuse("the run log names no process (`pid` in its start record), so it cannot be stopped from here".into())
    })?;
    Ok(Writer {
        pid,
        pgid: id("pgid"),
        started,
        asked: Millis::now(),
    })
}

/// Refuses a writer that is gone, was replaced by another process on the same pid, or is not
/// this user's.
fn check_writer(procs: &Liveness, w: &Writer) -> Result<Proc, CancelError> {
    let p = procs.process(w.pid).ok_or_else(|| {
        CancelError::NotCancelable(format!(
            "its process (pid {}) is not running; the run will be marked failed",
            w.pid
        ))
    })?;
    if !Liveness::could_have_written(&p, w.started) {
        return Err(CancelError::NotCancelable(format!(
            "pid {} is now another process (it started after the run); not signalled",
            w.pid
        )));
    }
    if p.uid != crate::fsread::my_uid() {
        return Err(CancelError::NotCancelable(format!(
            "its process (pid {}) belongs to another user",
            w.pid
        )));
    }
    Ok(p)
}

/// The live processes of the run's group (`pgid`) that can be the run's: this user's, started
/// no earlier than the run (less slack) and no later than the stop request (a group number,
/// like a pid, can be reused once its processes are gone). The writer itself is not included.
fn group_members(procs: &Liveness, w: &Writer, me: u32) -> Vec<Proc> {
    let Some(pgid) = w.pgid else {
        return Vec::new();
    };
    procs
        .processes()
        .into_iter()
        .filter(|p| {
            p.pgrp == pgid
                && p.uid == me
                && p.pid != w.pid
                && p.started_ms + START_SLACK_MS >= w.started.0
                && p.started_ms <= w.asked.0
        })
        .collect()
}

/// The writer's descendants that can be the run's (this user's, started after the run began
/// and before the stop was asked for).
fn descendants(procs: &Liveness, w: &Writer, me: u32) -> Vec<Proc> {
    let all = procs.processes();
    let mut found: Vec<Proc> = Vec::new();
    let mut frontier = vec![w.pid];
    while let Some(parent) = frontier.pop() {
        for p in all.iter().filter(|p| {
            p.ppid == parent
                && p.uid == me
                && p.started_ms + START_SLACK_MS >= w.started.0
                && p.started_ms <= w.asked.0
        }) {
            if !found.iter().any(|f| f.pid == p.pid) {
                found.push(*p);
                frontier.push(p.pid);
            }
        }
    }
    found
}

fn send(target: i32, sig: i32) {
    // SAFETY: kill(2) with a checked pid or process group.
    let rc = unsafe { libc::kill(target, sig) };
    if rc != 0 {
        tracing::debug!("kill({target}, {sig}): {}", std::io::Error::last_os_error());
    }
}

/// Queues `sig` to `pid` carrying `value` (see `agentd_wire::stop`).
fn queue(pid: u32, sig: i32, value: usize) {
    let v = libc::sigval {
        sival_ptr: value as *mut libc::c_void,
    };
    // SAFETY: sigqueue(2) with a checked pid and a plain integer value.
    let rc = unsafe { libc::sigqueue(pid as i32, sig, v) };
    if rc != 0 {
        tracing::debug!(
            "sigqueue({pid}, {sig}): {}",
            std::io::Error::last_os_error()
        );
    }
}

/// SIGINT or SIGTERM. When the run's group has live members, each of them gets it and the
/// writer (if it is still the run's) is only told, first, so that it records a cancel; else the
/// writer gets it, to pass on to its command.
fn signal_run(procs: &Liveness, w: &Writer, sig: i32, me: u32) {
    let writer_ok = check_writer(procs, w).is_ok();
    let group = group_members(procs, w, me);
    if group.is_empty() {
        if writer_ok {
            queue(w.pid, sig, stop::FORWARD);
        }
        return;
    }
    if writer_ok && procs.process(w.pid).is_some_and(|p| Some(p.pgrp) != w.pgid) {
        queue(w.pid, sig, stop::NOTE);
    }
    for p in group {
        send(p.pid as i32, sig);
    }
}

/// SIGKILL to what the run started (its group, else the writer's descendants), then, if the
/// writer is still there (and still the run's) a moment later, to the writer itself.
fn kill_run(procs: &Liveness, w: &Writer, me: u32) {
    // Tell a supervising writer first, so that it records the stop as a cancel.
    if check_writer(procs, w).is_ok() {
        queue(w.pid, libc::SIGINT, stop::NOTE);
    }
    let targets = match group_members(procs, w, me) {
        g if !g.is_empty() => g,
        _ => descendants(procs, w, me),
    };
    for p in targets {
        send(p.pid as i32, libc::SIGKILL);
    }
    let w = *w;
    std::thread::spawn(move || {
        std::thread::sleep(WRITER_GRACE);
        if check_writer(&Liveness::new(), &w).is_ok() {
            send(w.pid as i32, libc::SIGKILL);
        }
    });
}

/// SIGTERM after [`TERM_AFTER`], SIGKILL after [`KILL_AFTER`] more, each only while the run is
/// still active with the same writer, or processes it started in its group are left (a tool
/// that ignored SIGINT outlives the command that started it).
async fn escalate(store: Store, id: String, w: Writer) {
    let still_running = |store: &Store| {
        let procs = Liveness::new();
        let me = crate::fsread::my_uid();
        (store
            .get(&id)
            .ok()
            .flatten()
            .is_some_and(|i| i.status.is_active())
            && check_writer(&procs, &w).is_ok())
            || !group_members(&procs, &w, me).is_empty()
    };
    tokio::time::sleep(TERM_AFTER).await;
    if !still_running(&store) {
        return;
    }
    tracing::info!("{id} is still running {TERM_AFTER:?} after SIGINT: SIGTERM");
    signal_run(&Liveness::new(), &w, libc::SIGTERM, crate::fsread::my_uid());
    tokio::time::sleep(KILL_AFTER).await;
    if !still_running(&store) {
        return;
    }
    tracing::info!("{id} is still running after SIGTERM: SIGKILL");
    kill_run(&Liveness::new(), &w, crate::fsread::my_uid());
}

/// The pid and start time of the live Claude Code process of `session`, from its registry.
fn live_claude_process(dirs: &[PathBuf], session: &str) -> Option<(u32, Millis)> {
    use crate::fsread::{Trust, read_bounded};
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let Ok(bytes) = read_bounded(&path, Trust::Found, 1 << 20) else {
                continue;
            };
            let Ok(fold) = crate::ingest::claude::ClaudeFold::from_registry(&bytes) else {
                continue;
            };
            use crate::ingest::convo::ConversationFold;
            let c = fold.conversation(Millis::now());
            if c.session_id.as_deref() == Some(session)
                && let Some(live) = c.live
            {
                return Some((live.pid, live.started_at));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_pid_and_a_dead_one_are_refused() {
        let procs = Liveness::new();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let writer = |started: Millis| Writer {
            pid,
            pgid: None,
            started,
            asked: Millis::now(),
        };
        assert!(check_writer(&procs, &writer(Millis::now())).is_ok());
        // The run started two minutes before this process: the pid was reused.
        let e = check_writer(&procs, &writer(Millis(Millis::now().0 - 120_000))).unwrap_err();
        assert!(e.to_string().contains("another process"), "{e}");
        child.kill().unwrap();
        child.wait().unwrap();
        let e = check_writer(&procs, &writer(Millis::now())).unwrap_err();
        assert!(e.to_string().contains("not running"), "{e}");
    }

    #[test]
    fn the_start_record_names_the_writer() {
        let dir = std::env::temp_dir().join(format!("agentd-control-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.jsonl");
        std::fs::write(
            &path,
            "{\"type\":\"output\",\"ts\":1,\"data\":\"x\"}\n{\"type\":\"start\",\"ts\":\"2026-11-28T09:00:00Z\",\"pid\":4242,\"pgid\":4243}\n",
        )
        .unwrap();
        let w = read_writer(&path).unwrap();
        assert_eq!((w.pid, w.pgid), (4242, Some(4243)));
        std::fs::write(&path, "{\"type\":\"start\",\"ts\":1,\"pid\":1}\n").unwrap();
        assert!(
            read_writer(&path)
                .unwrap_err()
                .to_string()
                .contains("names no process")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
