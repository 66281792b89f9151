//! The one follower engine: watching, scans, rescans, the tick, event coalescing, the polling
//! fallback and resync after dropped writes, for every local source (run logs, line-file
//! conversation stores, SQLite stores).
//!
//! A source says what to do with a dir, a changed file, a tick and a hook ([`Followed`]); the
//! engine decides when. It runs on its own thread: notify's callback hands events to it over a
//! bounded std channel ([`super::start_watcher`]), and a source's file work is blocking I/O.
//!
//! - On start every configured dir that exists is watched and scanned (a source's scan reads
//!   only what changed since the committed cursors); then [`Followed::scanned`], a writer
//!   barrier, and the source's `scan_done` is true.
//! - A burst of notifications is handled in one step: the changed paths under watched dirs,
//!   the removed ones, and any hook signals that arrived meanwhile. A source may ask for the
//!   burst to settle first ([`Followed::SETTLE`]).
//! - A watcher error, a kernel queue overflow, a full event queue or a resync from the writer
//!   (writes were dropped; the committed cursors are the truth) lead to a rescan of every dir.
//! - Every tick: dirs that appeared are watched and scanned, dirs that could not be watched are
//!   scanned (without a watcher at all, every dir is), then [`Followed::tick`].
//! - A source may defer work to a moment ([`Followed::next_due`]): the loop wakes for it.

use super::{IngestEvent, SourceStats};
use crate::store::writer::WriterHandle;
use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The writer has stopped or a shutdown was asked for: the follower stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// The outcome of one step of a source's work.
pub type Step = Result<(), Stopped>;

/// What a followed source does when the engine asks.
pub trait Followed: Send + 'static {
    /// The source's name, for logs and the thread's name.
    const NAME: &'static str;
    /// How often [`Followed::tick`] runs and unwatched dirs are scanned.
    const TICK: Duration;
    /// Notifications queued before a rescan replaces them.
    const EVENT_QUEUE: usize = 8192;
    /// How long a burst of notifications may go on before it is handled (a database commit
    /// touches the file, its WAL and SHM in several writes); zero handles it at once.
    const SETTLE: Duration = Duration::ZERO;

    /// Whether `dir` is watched with everything under it (conversation stores nest by project
    /// and day; OpenCode's JSON tree by session and message) or alone (a runs dir, a
    /// database's dir).
    fn recursive(&self, dir: &Path) -> bool;
    /// Reads what changed under `dir` since the committed cursors: a dir newly watched, a
    /// polled one, or a rescan.
    fn scan(&mut self, dir: &Path) -> Step;
    /// A rescan of every dir begins (reset what counts a scan's files).
    fn rescan_begins(&mut self) {}
    /// After the first scan of every dir, before `scan_done` is promised.
    fn scanned(&mut self, _watched: &HashSet<PathBuf>) -> Step {
        Ok(())
    }
    /// Paths under watched dirs that were created or written (`changed`) or removed.
    fn changed(&mut self, changed: BTreeSet<PathBuf>, removed: BTreeSet<PathBuf>) -> Step;
    /// Every [`Followed::TICK`], after the engine's own dir work: time moves statuses on.
    fn tick(&mut self) -> Step;
    /// An agent's hook said what one of its conversations is doing.
    fn hook(&mut self, _signal: super::HookSignal) -> Step {
        Ok(()) // a source without hooks (run logs carry their own status)
    }
    /// Writes were dropped and the committed cursors are the truth: forget what is held in
    /// memory (a rescan follows at once).
    fn forget(&mut self);
    /// When deferred work is next due, if any.
    fn next_due(&self) -> Option<Instant> {
        None
    }
    /// Does the deferred work that is due.
    fn run_due(&mut self) -> Step {
        Ok(())
    }
}

/// What every local source is connected to: the store it reads cursors from, the writer it
/// sends batches to, its live figures, the writer's resync generation (see
/// `Published::resync`) and the shutdown flag (long scans stop between files).
#[derive(Clone)]
pub struct Wiring {
    pub store: crate::store::Store,
    pub writer: WriterHandle,
    pub stats: Arc<SourceStats>,
    pub resync: Arc<AtomicU64>,
    pub stop: Arc<AtomicBool>,
}

/// Starts the follower thread of `source` over `dirs` (some may not exist yet). Send
/// [`IngestEvent::Shutdown`] on the returned sender to stop it; hook signals go the same way.
pub fn spawn<S: Followed>(
    source: S,
    dirs: Vec<PathBuf>,
    wiring: &Wiring,
) -> std::io::Result<(SyncSender<IngestEvent>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(S::EVENT_QUEUE);
    let follower = Follower {
        seen_resync: wiring.resync.load(Ordering::Relaxed),
        dirs,
        wiring: wiring.clone(),
        watched: HashSet::new(),
        polled: HashSet::new(),
        watcher: None,
        events: tx.clone(),
        overflowed: Arc::new(AtomicBool::new(false)),
        queued: Arc::new(Mutex::new(HashSet::new())),
        source,
    };
    let thread = std::thread::Builder::new()
        .name(format!("agentd-{}", S::NAME))
        .spawn(crate::supervised("ingestor", move || follower.run(rx)))?;
    Ok((tx, thread))
}

/// What a watcher error means for the follower.
#[derive(Debug, PartialEq, Eq)]
enum WatchError {
    /// Notifications may have been lost (the watcher could not read the kernel's queue):
    /// rescan.
    Lost,
    /// A dir under a watched one could not be watched, the watch limit reached: poll.
    TooManyWatches,
    /// A dir under a watched one could not be walked or watched (no permission, say): the
    /// rest is followed, and a rescan would fail the same way.
    Unreadable,
}

impl WatchError {
    fn of(e: &notify::Error) -> WatchError {
        match &e.kind {
            notify::ErrorKind::MaxFilesWatch => WatchError::TooManyWatches,
            _ if e.paths.is_empty() => WatchError::Lost,
            _ => WatchError::Unreadable,
        }
    }
}

/// Why the loop woke up.
enum Wake {
    Event(IngestEvent),
    Tick,
    /// Deferred work of the source is due.
    Due,
}

struct Follower<S: Followed> {
    /// The dirs to follow (some may not exist yet).
    dirs: Vec<PathBuf>,
    wiring: Wiring,
    /// Dirs watched (and scanned) so far.
    watched: HashSet<PathBuf>,
    /// Watched dirs that notify could not follow (the inotify watch limit, say): scanned every
    /// tick instead.
    polled: HashSet<PathBuf>,
    /// Kept alive for as long as the follower runs; dropping it stops notifications.
    watcher: Option<notify::RecommendedWatcher>,
    /// Where the watcher's callback sends events (the channel the loop reads).
    events: SyncSender<IngestEvent>,
    /// Set by the callback when the queue was full and an event was dropped: rescan.
    overflowed: Arc<AtomicBool>,
    /// Files with a data-change event in the queue (see [`super::start_watcher`]).
    queued: Arc<Mutex<HashSet<PathBuf>>>,
    /// The last resync generation handled.
    seen_resync: u64,
    source: S,
}

impl<S: Followed> Follower<S> {
    fn run(mut self, rx: Receiver<IngestEvent>) {
        match super::start_watcher(
            self.events.clone(),
            self.overflowed.clone(),
            self.queued.clone(),
        ) {
            Ok(w) => self.watcher = Some(w),
            Err(e) => tracing::error!(
                "cannot start the file watcher, {} is scanned every {:?}: {e}",
                S::NAME,
                S::TICK
            ),
        }
        if self.watch_new_dirs().is_err() || self.source.scanned(&self.watched).is_err() {
            return;
        }
        // `scan_done` promises that what the scan read is queryable: wait for the commit.
        if self.wiring.writer.barrier().is_err() {
            return;
        }
        // A scan of many files (a million run logs' paths and cursors) leaves its memory
        // freed but held; a scan that changed nothing makes the writer trim nothing.
        crate::store::writer::release_free_memory();
        self.wiring.stats.scanned.store(true, Ordering::Relaxed);
        let mut last_tick = Instant::now();
        loop {
            if self.wiring.stop.load(Ordering::Relaxed) {
                return;
            }
            let wake = self.next(&rx, last_tick);
            let step = match wake {
                None | Some(Wake::Event(IngestEvent::Shutdown)) => return,
                Some(Wake::Tick | Wake::Event(IngestEvent::Tick)) => {
                    last_tick = Instant::now();
                    self.on_tick()
                }
                Some(Wake::Due) => Ok(()),
                Some(Wake::Event(IngestEvent::Hook(signal))) => self.source.hook(*signal),
                Some(Wake::Event(IngestEvent::Fs(first))) => match self.burst(first, &rx) {
                    Some(step) => step,
                    None => return, // a shutdown arrived in the burst
                },
            };
            if step.is_err() || self.source.run_due().is_err() {
                return; // the writer stopped: the daemon is shutting down
            }
            let resync = self.wiring.resync.load(Ordering::Relaxed);
            if resync != self.seen_resync {
                // Writes were dropped while the store could not take them: the committed
                // cursors are the truth, so forget what is in memory and read again from them.
                self.seen_resync = resync;
                self.source.forget();
                self.overflowed.store(true, Ordering::Relaxed);
            }
            if self.overflowed.swap(false, Ordering::Relaxed) {
                tracing::warn!("rescanning {} (dropped events or writes)", S::NAME);
                if self.rescan().is_err() {
                    return;
                }
            }
        }
    }

    /// Waits for the next thing to do: an event, the tick, or the source's deferred work.
    /// `None` when every sender is gone.
    fn next(&self, rx: &Receiver<IngestEvent>, last_tick: Instant) -> Option<Wake> {
        // Housekeeping runs every tick even when events never let the queue go quiet.
        if last_tick.elapsed() >= S::TICK {
            return Some(Wake::Tick);
        }
        let now = Instant::now();
        let mut wait = S::TICK.saturating_sub(last_tick.elapsed());
        if let Some(due) = self.source.next_due() {
            wait = wait.min(due.saturating_duration_since(now));
        }
        match rx.recv_timeout(wait) {
            Ok(e) => Some(Wake::Event(e)),
            Err(RecvTimeoutError::Timeout) if last_tick.elapsed() >= S::TICK => Some(Wake::Tick),
            Err(RecvTimeoutError::Timeout) => Some(Wake::Due),
            Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Handles a burst of notifications as one step: everything already queued (or arriving
    /// while it settles) is taken with `first`. `None` when a shutdown arrived in it.
    fn burst(
        &mut self,
        first: Box<notify::Result<notify::Event>>,
        rx: &Receiver<IngestEvent>,
    ) -> Option<Step> {
        let (mut changed, mut removed) = (BTreeSet::new(), BTreeSet::new());
        let (mut rescan, mut stop) = (false, false);
        let mut hooks = Vec::new();
        let started = Instant::now();
        let mut next = Some(IngestEvent::Fs(first));
        while let Some(ev) = next {
            match ev {
                IngestEvent::Fs(fs) => match *fs {
                    Ok(ev) => rescan |= self.collect(ev, &mut changed, &mut removed),
                    Err(e) => match WatchError::of(&e) {
                        WatchError::Lost => {
                            tracing::warn!("file watcher error, rescanning {}: {e}", S::NAME);
                            rescan = true;
                        }
                        WatchError::TooManyWatches => {
                            // Part of a tree is not watched: scan the dirs it is under every
                            // tick instead (a rescan would run into the same limit).
                            let roots: Vec<PathBuf> = self
                                .watched
                                .iter()
                                .filter(|d| {
                                    e.paths.is_empty() || e.paths.iter().any(|p| p.starts_with(d))
                                })
                                .cloned()
                                .collect();
                            for dir in roots {
                                if self.polled.insert(dir.clone()) {
                                    tracing::warn!(
                                        "cannot watch all of {} (the inotify watch limit, fs.inotify.max_user_watches): scanning it every {:?} instead",
                                        dir.display(),
                                        S::TICK
                                    );
                                }
                            }
                        }
                        WatchError::Unreadable => {
                            // A dir that cannot be watched cannot be read either: nothing to
                            // rescan, the rest of the tree is watched.
                            tracing::warn!("{} cannot follow part of its dirs: {e}", S::NAME);
                        }
                    },
                },
                IngestEvent::Tick => {}
                IngestEvent::Hook(signal) => hooks.push(*signal),
                IngestEvent::Shutdown => stop = true,
            }
            let left = S::SETTLE.saturating_sub(started.elapsed());
            next = if left.is_zero() || stop {
                rx.try_recv().ok()
            } else {
                rx.recv_timeout(left.min(Duration::from_millis(20))).ok()
            };
        }
        let mut step = if rescan {
            self.rescan()
        } else {
            self.source.changed(changed, removed)
        };
        for signal in hooks {
            step = step.and_then(|()| self.source.hook(signal));
        }
        (!stop).then_some(step)
    }

    /// Sorts an event's paths under watched dirs into `changed` and `removed`; returns whether
    /// a rescan is needed instead.
    fn collect(
        &mut self,
        ev: notify::Event,
        changed: &mut BTreeSet<PathBuf>,
        removed: &mut BTreeSet<PathBuf>,
    ) -> bool {
        if ev.need_rescan() {
            return true;
        }
        let followed = |p: &PathBuf| self.watched.iter().any(|d| p.starts_with(d));
        match ev.kind {
            EventKind::Create(_) | EventKind::Modify(_) | EventKind::Any | EventKind::Other => {
                super::unqueue(&self.queued, &ev.paths);
                changed.extend(ev.paths.into_iter().filter(followed));
            }
            EventKind::Remove(_) => {
                removed.extend(ev.paths.into_iter().filter(followed));
                // A removed dir must be watched again when it comes back.
                self.watched.retain(|d| d.is_dir());
            }
            EventKind::Access(_) => {}
        }
        false
    }

    fn on_tick(&mut self) -> Step {
        if self.watcher.is_none() {
            self.rescan()?; // no notifications: poll
        } else {
            self.watched.retain(|d| d.is_dir());
            self.watch_new_dirs()?;
            for dir in self.polled.clone() {
                self.source.scan(&dir)?;
            }
        }
        self.source.tick()
    }

    /// Watches and scans every configured dir that exists and is not watched yet.
    fn watch_new_dirs(&mut self) -> Step {
        for dir in self.dirs.clone() {
            if self.watched.contains(&dir) || !dir.is_dir() {
                continue;
            }
            let mode = if self.source.recursive(&dir) {
                RecursiveMode::Recursive
            } else {
                RecursiveMode::NonRecursive
            };
            if let Some(w) = self.watcher.as_mut()
                && let Err(e) = w.watch(&dir, mode)
            {
                // Still read, and scanned every tick instead of followed.
                tracing::warn!(
                    "cannot watch {}: {e}; scanning it every {:?} instead",
                    dir.display(),
                    S::TICK
                );
                self.polled.insert(dir.clone());
            }
            tracing::info!("following {} in {}", S::NAME, dir.display());
            self.watched.insert(dir.clone());
            self.source.scan(&dir)?;
        }
        Ok(())
    }

    /// Forgets every watch and scans every dir again from the committed cursors.
    fn rescan(&mut self) -> Step {
        self.watched.clear();
        self.polled.clear();
        self.queued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        if let Some(w) = self.watcher.as_mut() {
            for dir in &self.dirs {
                let _ = w.unwatch(dir);
            }
        }
        self.source.rescan_begins();
        let step = self.watch_new_dirs();
        crate::store::writer::release_free_memory();
        step
    }
}

#[cfg(test)]
mod tests {
    use super::WatchError;

    /// notify reports the parts of a watched tree it could not watch as errors naming them
    /// (where older versions left those subtrees unwatched in silence): such an error must not
    /// start a rescan, which would walk into the same dir and fail again, forever.
    #[test]
    fn a_dir_that_cannot_be_watched_is_not_a_reason_to_rescan() {
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let cases = [
            (
                notify::Error::io(denied).add_path("/home/u/.claude/projects/locked".into()),
                WatchError::Unreadable,
            ),
            (
                notify::Error::new(notify::ErrorKind::MaxFilesWatch)
                    .add_path("/home/u/.claude/projects/p".into()),
                WatchError::TooManyWatches,
            ),
            (
                notify::Error::new(notify::ErrorKind::MaxFilesWatch),
                WatchError::TooManyWatches,
            ),
            (
                notify::Error::io(std::io::Error::other("read of the inotify fd failed")),
                WatchError::Lost,
            ),
            (notify::Error::generic("queue gone"), WatchError::Lost),
        ];
        for (error, want) in cases {
            assert_eq!(WatchError::of(&error), want, "{error:?}");
        }
    }
}
