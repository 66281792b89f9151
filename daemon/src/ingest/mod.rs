//! Ingestors: each turns one kind of source into [`ItemUpdate`](crate::store::writer::ItemUpdate)s
//! plus a cursor, and sends them to the writer. A local source is a value implementing
//! [`follow::Followed`] (what to do with a dir, a changed file, a tick, a hook) driven by the one
//! follower engine ([`follow`]: watching, scans, rescans, the tick, coalescing, the polling
//! fallback, resync), whose loop takes the closed [`IngestEvent`] enum; parsers and folds are
//! pure, in their own modules.
//!
//! - [`follow`]: the follower engine.
//! - [`runs`]: run logs (contract section 6), folded by [`runlog`].
//! - [`stores`]: line-file conversation stores, one [`stores::Format`] per CLI (see
//!   [`formats`]), folded by each CLI's module.
//! - [`databases`]: SQLite conversation stores ([`opencode`], with its older JSON tree
//!   [`opencode_storage`]; [`goose`]).
//! - [`tail`]: incremental, restart-safe reading of line files.
//! - [`names`]: the interned paths and conversation ids a store source keeps for every file.
//! - [`transcript`]: a conversation's log as text, through each format's own renderer.

pub mod claude;
pub mod codex;
pub mod convo;
pub mod copilot;
pub mod databases;
pub mod droid;
pub mod follow;
pub mod formats;
pub mod gemini;
pub mod goose;
pub mod hooks;
pub mod kimi;
mod lenient;
pub mod names;
pub mod opencode;
pub mod opencode_storage;
pub mod qwen;
pub mod runlog;
pub mod runs;
pub mod stores;
pub mod tail;
pub mod transcript;

use notify::EventKind;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};

/// A file's modification time (the time of its last append).
pub fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The older of two optional times.
pub fn oldest(
    a: Option<std::time::SystemTime>,
    b: Option<std::time::SystemTime>,
) -> Option<std::time::SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Takes `paths` off the set of files with a queued data event: their next change gets an event
/// of its own (called as the ingestor takes an event, before it reads the files).
pub fn unqueue(queued: &Mutex<HashSet<PathBuf>>, paths: &[PathBuf]) {
    let mut queued = queued.lock().unwrap_or_else(|p| p.into_inner());
    for p in paths {
        queued.remove(p);
    }
}

/// Starts a notify watcher that hands events to an ingestor's loop through `events`.
///
/// Open and close events say nothing about new content: they are not watched (and any a
/// backend still reports stop here). A file being appended to produces an event per write: one queued
/// data event per file is enough, so `queued` holds the files that have one waiting (the
/// ingestor takes a file off it before reading). When the queue is full the event is dropped
/// and `overflowed` asks for a rescan instead: memory stays bounded and nothing is missed.
pub fn start_watcher(
    events: SyncSender<IngestEvent>,
    overflowed: Arc<AtomicBool>,
    queued: Arc<Mutex<HashSet<PathBuf>>>,
) -> notify::Result<notify::RecommendedWatcher> {
    let handler = move |res: notify::Result<notify::Event>| {
        let mut data_path = None;
        if let Ok(e) = &res {
            if matches!(e.kind, EventKind::Access(_)) {
                return;
            }
            if matches!(
                e.kind,
                EventKind::Modify(notify::event::ModifyKind::Data(_))
            ) && let [path] = e.paths.as_slice()
            {
                if !queued
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(path.clone())
                {
                    return; // one is already waiting
                }
                data_path = Some(path.clone());
            }
        }
        if events.try_send(IngestEvent::Fs(Box::new(res))).is_err() {
            // Dropped: the rescan reads the file, and its next change must get through.
            if let Some(p) = data_path {
                queued.lock().unwrap_or_else(|p| p.into_inner()).remove(&p);
            }
            overflowed.store(true, Ordering::Relaxed);
        }
    };
    // Access events (opens and closes) are not watched at all: the kernel then never queues one
    // for each file a scan opens, nor wakes the watcher's thread for it.
    let config = notify::Config::default().with_event_kinds(notify::EventKindMask::CORE);
    <notify::RecommendedWatcher as notify::Watcher>::new(handler, config)
}

/// What wakes an ingestor's loop. Boxed payloads keep a slot small: each follower's queue holds
/// thousands of slots, allocated up front.
#[derive(Debug)]
pub enum IngestEvent {
    /// A file-system notification (or a watcher error, which triggers a rescan).
    Fs(Box<notify::Result<notify::Event>>),
    /// Periodic housekeeping: look for stores that appeared.
    Tick,
    /// An agent's own hook said what a conversation is doing (`POST /v1/hooks/…`).
    Hook(Box<HookSignal>),
    /// Stop after the current step.
    Shutdown,
}

/// What an agent's hook reported about one of its conversations.
#[derive(Debug, Clone, PartialEq)]
pub struct HookSignal {
    pub session_id: String,
    /// The status it implies; `None` ends the signal (the session ended: the transcript
    /// decides again).
    pub status: Option<agentd_wire::Status>,
    pub detail: Option<String>,
    /// It applies only while the transcript says a turn is open (an idle prompt ends a turn; it
    /// never turns a finished, failed or canceled one into anything else).
    pub if_active: bool,
    /// It counts only once it has stood this long (ms) without a newer hook: Codex's
    /// auto-review settles most permission requests within a second.
    pub settle_ms: i64,
    /// When it arrived: transcript lines written after it take over again.
    pub at: crate::model::Millis,
}

/// Live figures of one source for `/v1/health`; error counts live in the store.
#[derive(Debug)]
pub struct SourceStats {
    /// Which source.
    pub kind: crate::sources::SourceKind,
    /// The source's name (`runs`, …): `kind.name()`.
    pub name: &'static str,
    /// The directories it watches.
    pub roots: Vec<String>,
    /// Files known to it.
    pub files: AtomicU64,
    /// Whether the initial scan has finished.
    pub scanned: std::sync::atomic::AtomicBool,
    /// Files the latest scan found (its progress is `files` of this).
    pub scan_total: AtomicU64,
    /// Lines read since start (`agentd_ingest_lines_total`).
    pub lines: AtomicU64,
    /// Bytes read since start (`agentd_ingest_bytes_total`).
    pub bytes: AtomicU64,
    /// Requests made to a remote source (the cloud API) since start, and how many failed.
    pub requests: AtomicU64,
    pub failures: AtomicU64,
}

impl SourceStats {
    /// Stats for a source watching `roots`.
    pub fn new(kind: crate::sources::SourceKind, roots: &[std::path::PathBuf]) -> SourceStats {
        SourceStats {
            kind,
            name: kind.name(),
            roots: roots.iter().map(|r| r.display().to_string()).collect(),
            files: AtomicU64::new(0),
            scanned: AtomicBool::new(false),
            scan_total: AtomicU64::new(0),
            lines: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// The number of files known.
    pub fn files(&self) -> u64 {
        self.files.load(Ordering::Relaxed)
    }

    /// Counts what one read took in: `lines` lines over `bytes` bytes.
    pub fn read(&self, lines: u64, bytes: u64) {
        self.lines.fetch_add(lines, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}
