//! The runs-dir source: follows `<runs dir>/*.jsonl` (contract section 6) and keeps one item
//! per file.
//!
//! Driven by the follower engine ([`super::follow`]): a scan reads only what changed since the
//! stored cursor (so a restart re-reads nothing and picks up what was written while it was
//! down, and visits files in name order so that ids, cursors and origins go into the store in
//! key order; a dir's first scan looks no cursor up), a change reads the file from its cursor
//! (at most every [`MIN_REREAD`] for a file that keeps changing), and the tick checks that open
//! runs' writers are still alive.
//! Each file's cursor and fold are committed with its item, so a crash replays at most an
//! uncommitted tail, which folds to the same item.

use super::follow::{Step, Stopped};
use super::runlog::{self, RunFold};
use super::tail::{FileCursor, Opened};
use super::{IngestEvent, SourceStats};
use crate::model::{Millis, MineRule};
use crate::store::Store;
use crate::store::writer::{IngestBatch, ItemUpdate, WriteOp, WriterHandle};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::time::Duration;

/// The source's name in `/v1/health` and in cursor keys.
pub const SOURCE: &str = crate::sources::SourceKind::Runs.name();

/// Lines longer than this are skipped (and counted): a run log line is one record, and output
/// records are written in chunks far below this.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// How often to look for runs dirs that did not exist yet.
const TICK: Duration = Duration::from_secs(2);

/// Files per batch during a scan. A batch is one write transaction, and in a large database
/// each transaction rewrites a page of the index for most of the entries it inserts there (a
/// backfill in name order takes ids, cursors and origins in key order, but their index entries,
/// ordered by time, land all over it): the more files share a transaction, the fewer pages each
/// costs. Backfilling a million logs named as `agentctl run` names them, the writer wrote
/// 18.6 GB in 97 s with batches of 8,192 files, 11.3 GB in 64 s with 16,384 and 7.3 GB in 52 s
/// with 32,768, the daemon's peak RSS 151, 183 and 245 MB: two batches in memory (see
/// [`RunsSource::scan_in_flight`]) at about 2 KB per file. A dir of fewer files never fills one.
const SCAN_BATCH: usize = 32_768;

/// A file that keeps changing is read at most this often: a chatty run appends thousands of
/// times a second, and reading (and committing) after each append would cost more than the run.
/// The first change of a quiet file is read at once.
const MIN_REREAD: Duration = Duration::from_millis(25);

/// Notifications queued for the ingestor. When a burst fills the queue, further events are
/// dropped and a rescan is scheduled instead, exactly as for a kernel queue overflow: memory
/// stays bounded and nothing is missed.
const EVENT_QUEUE: usize = 8192;

/// Files whose state is kept in memory between events (live runs are appended to often);
/// beyond this the cache is dropped and state is read back from the store.
const HOT_FILES: usize = 1024;

/// Why a file is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// During a scan: an unchanged file costs one stat and one cursor lookup.
    Scan,
    /// During the first scan of its dir, when no file there has a cursor: none is looked up.
    FirstScan,
    /// A notification said it changed.
    Changed,
    /// Render the item again even without new bytes (its writer may have exited).
    Recheck,
}

/// What is stored per file: where reading stands and the run's folded state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct FileState {
    cursor: FileCursor,
    fold: RunFold,
}

/// Starts the runs source's thread over `dirs`.
pub fn spawn(
    dirs: Vec<PathBuf>,
    wiring: &super::follow::Wiring,
) -> std::io::Result<(SyncSender<IngestEvent>, std::thread::JoinHandle<()>)> {
    let source = RunsSource {
        stop: wiring.stop.clone(),
        failing: HashMap::new(),
        live: HashMap::new(),
        liveness: crate::liveness::Liveness::new(),
        last_read: HashMap::new(),
        deferred: HashMap::new(),
        store: wiring.store.clone(),
        writer: wiring.writer.clone(),
        stats: wiring.stats.clone(),
        hot: HashMap::new(),
        scan_in_flight: None,
    };
    super::follow::spawn(source, dirs, wiring)
}

struct RunsSource {
    /// Set at shutdown: long scans stop between files.
    stop: Arc<AtomicBool>,
    /// Files that could not be read, with the error: counted once, not on every rescan.
    failing: HashMap<PathBuf, String>,
    /// When each recently changed file was last read, and files whose re-read is deferred
    /// (see [`MIN_REREAD`]) with the time it is due.
    last_read: HashMap<PathBuf, std::time::Instant>,
    deferred: HashMap<PathBuf, std::time::Instant>,
    /// Open runs whose writer is running: pid and the run's start, checked every tick.
    live: HashMap<PathBuf, (u32, Millis)>,
    liveness: crate::liveness::Liveness,
    store: Store,
    writer: WriterHandle,
    stats: Arc<SourceStats>,
    hot: HashMap<PathBuf, FileState>,
    /// Passed by the writer once it has committed the scan batch sent last. A scan reads faster
    /// than a large database takes writes; it waits for this before sending the next batch, so
    /// at most two of its batches are in memory instead of a full writer channel of them.
    scan_in_flight: Option<std::sync::mpsc::Receiver<()>>,
}

/// The outcome of reading one file.
#[derive(Default)]
struct FileResult {
    update: Option<ItemUpdate>,
    cursor: Option<(String, Vec<u8>)>,
    errors: u64,
    last_error: Option<String>,
    new_file: bool,
}

impl super::follow::Followed for RunsSource {
    const NAME: &'static str = SOURCE;
    const TICK: Duration = TICK;
    const EVENT_QUEUE: usize = EVENT_QUEUE;

    /// A runs dir holds its logs directly.
    fn recursive(&self, _dir: &Path) -> bool {
        false
    }

    fn scan(&mut self, dir: &Path) -> Step {
        self.scan_dir(dir)
    }

    fn rescan_begins(&mut self) {
        self.stats.files.store(0, Ordering::Relaxed);
    }

    fn scanned(&mut self, watched: &HashSet<PathBuf>) -> Step {
        self.adopt_open_runs(watched)
    }

    fn changed(&mut self, changed: BTreeSet<PathBuf>, removed: BTreeSet<PathBuf>) -> Step {
        for p in removed.iter().filter(|p| is_run_log(p)) {
            self.hot.remove(p);
            let _ = self
                .stats
                .files
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
        self.process_paths(changed.into_iter().filter(|p| is_run_log(p)).collect())
    }

    fn tick(&mut self) -> Step {
        self.last_read.retain(|_, t| t.elapsed() < MIN_REREAD);
        self.check_writers()
    }

    fn forget(&mut self) {
        self.hot.clear();
    }

    fn next_due(&self) -> Option<std::time::Instant> {
        self.deferred.values().min().copied()
    }

    fn run_due(&mut self) -> Step {
        self.read_deferred()
    }
}

impl RunsSource {
    /// Re-renders runs whose writer process has exited without an `end` record: they fail.
    fn check_writers(&mut self) -> Step {
        let gone: Vec<PathBuf> = self
            .live
            .iter()
            .filter(|(_, (pid, started))| !self.liveness.is_running(*pid, *started))
            .map(|(p, _)| p.clone())
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        let mut batch = IngestBatch {
            source: SOURCE,
            ..Default::default()
        };
        for path in gone {
            tracing::info!(
                "the writer of {} exited without an end record",
                path.display()
            );
            add_to_batch(&mut batch, self.read_file(&path, Read::Recheck));
        }
        self.send(batch)
    }

    /// After the start-up scan (which skips unchanged files), finds the runs still open in the
    /// store so that their writers are checked too.
    fn adopt_open_runs(&mut self, watched: &HashSet<PathBuf>) -> Step {
        let mut paths = Vec::new();
        for status in [agentd_wire::Status::Working, agentd_wire::Status::Blocked] {
            match self.store.partition_ids(
                &crate::store::Partition::Status(status),
                &format!("{}:", runlog::ID_SCHEME),
            ) {
                Ok(ids) => {
                    for id in ids {
                        if let Ok(Some(origin)) = self.store.origin_patient(&id) {
                            paths.push(origin);
                        }
                    }
                }
                Err(e) => tracing::warn!("listing open runs: {e}"),
            }
        }
        let mut batch = IngestBatch {
            source: SOURCE,
            scanned: true,
            ..Default::default()
        };
        for path in paths {
            if self.stop.load(Ordering::Relaxed) {
                return Err(Stopped);
            }
            if !path.parent().is_some_and(|d| watched.contains(d)) {
                continue;
            }
            let r = self.read_file(&path, Read::Recheck);
            self.add_and_flush(&mut batch, r)?;
        }
        self.send(batch)
    }

    /// Adds a file's result to a scan batch, sending the batch once it is full (marked as one
    /// with more to follow) and then waiting for the writer to commit the one sent before it
    /// (see [`Self::scan_in_flight`]). The scan sends its last batch itself, unmarked.
    fn add_and_flush(&mut self, batch: &mut IngestBatch, r: FileResult) -> Step {
        add_to_batch(batch, r);
        if batch.updates.len().max(batch.cursors.len()) < SCAN_BATCH {
            return Ok(());
        }
        let mut full = std::mem::replace(
            batch,
            IngestBatch {
                source: SOURCE,
                scanned: true,
                ..Default::default()
            },
        );
        full.scan_continues = true;
        self.send(full)?;
        if let Some(passed) = self.scan_in_flight.take() {
            passed.recv().map_err(|_| Stopped)?;
        }
        self.scan_in_flight = Some(self.writer.barrier_later().map_err(|_| Stopped)?);
        Ok(())
    }

    /// Reads every run log in `dir` that changed since its cursor, in batches.
    fn scan_dir(&mut self, dir: &Path) -> Step {
        let started = std::time::Instant::now();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                let msg = format!("cannot list {}: {e}", dir.display());
                tracing::warn!("{msg}");
                return self.send(IngestBatch {
                    source: SOURCE,
                    errors: 1,
                    last_error: Some(msg),
                    ..Default::default()
                });
            }
        };
        let mut batch = IngestBatch {
            source: SOURCE,
            scanned: true,
            ..Default::default()
        };
        // (`join("")` ends the prefix with one separator, as the files' paths have after it.)
        let prefix = format!("{SOURCE}:{}", dir.join("").display());
        let first_scan = self.store.count_cursors(&prefix, 1).is_ok_and(|n| n == 0);
        // In name order: ids, cursor keys and origins are then inserted in key order, which
        // appends to the store's trees instead of touching a random page per file (the index,
        // ordered by time, still takes a backfill's entries all over it, but it is the smaller
        // part: see `SCAN_BATCH`).
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| is_run_log(p))
            .collect();
        // All in `dir`: their names' bytes give the same order as comparing them as paths
        // component by component, at a fraction of the cost over a million files.
        paths.sort_unstable_by(|a, b| {
            use std::os::unix::ffi::OsStrExt;
            a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes())
        });
        let how = if first_scan {
            Read::FirstScan
        } else {
            Read::Scan
        };
        let (mut files, mut read) = (0u64, 0u64);
        for path in paths {
            if self.stop.load(Ordering::Relaxed) {
                return Err(Stopped);
            }
            files += 1;
            self.stats.files.fetch_add(1, Ordering::Relaxed);
            let r = self.read_file(&path, how);
            read += u64::from(r.cursor.is_some());
            self.add_and_flush(&mut batch, r)?;
        }
        self.send(batch)?;
        tracing::info!(
            "scanned {}: {files} run logs, {read} with new lines, in {:?}",
            dir.display(),
            started.elapsed()
        );
        Ok(())
    }

    fn process_paths(&mut self, paths: BTreeSet<PathBuf>) -> Step {
        let mut batch = IngestBatch {
            source: SOURCE,
            ..Default::default()
        };
        let now = std::time::Instant::now();
        for path in paths {
            if let Some(last) = self.last_read.get(&path)
                && now.duration_since(*last) < MIN_REREAD
            {
                self.deferred.entry(path).or_insert(*last + MIN_REREAD);
                continue;
            }
            self.deferred.remove(&path);
            let r = self.read_file(&path, Read::Changed);
            // Only a read that found something holds the next one back: a file just created
            // is often empty when its first event arrives, and its content must not wait.
            if r.update.is_some() {
                self.last_read.insert(path.clone(), now);
                batch.appended_at = super::oldest(batch.appended_at, super::modified(&path));
            } else {
                self.last_read.remove(&path);
            }
            if r.new_file {
                self.stats.files.fetch_add(1, Ordering::Relaxed);
            }
            add_to_batch(&mut batch, r);
        }
        self.send(batch)
    }

    /// Reads the deferred files that are due.
    fn read_deferred(&mut self) -> Step {
        let now = std::time::Instant::now();
        let due: BTreeSet<PathBuf> = self
            .deferred
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(p, _)| p.clone())
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        for p in &due {
            self.deferred.remove(p);
            self.last_read.remove(p);
        }
        self.process_paths(due)
    }

    fn send(&self, batch: IngestBatch) -> Step {
        if batch.updates.is_empty() && batch.cursors.is_empty() && batch.errors == 0 {
            return Ok(());
        }
        self.writer
            .send(WriteOp::Ingest(batch))
            .map_err(|_| Stopped)
    }

    /// Reads what is new in one file (`Read::Scan` skips an unchanged file after one stat;
    /// `Read::Recheck` renders the item again even without new bytes, after its writer exited).
    fn read_file(&mut self, path: &Path, how: Read) -> FileResult {
        let scanning = how == Read::Scan;
        let key = format!("{SOURCE}:{}", path.display());
        let mut result = FileResult::default();
        let mut state = match self.hot.remove(path) {
            Some(s) => s,
            None if how == Read::FirstScan => {
                result.new_file = true;
                FileState::default()
            }
            None => match self.store.cursor(&key) {
                Ok(Some(bytes)) => {
                    if scanning && unchanged(path, &bytes) {
                        return result; // the common case of a restart: one stat, one lookup
                    }
                    crate::store::decode(&bytes).unwrap_or_default()
                }
                Ok(None) => {
                    result.new_file = true;
                    FileState::default()
                }
                Err(e) => {
                    tracing::error!("reading the cursor of {}: {e}", path.display());
                    return result;
                }
            },
        };
        let before = state.cursor.clone();
        let opened = match Opened::open(path, &mut state.cursor) {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return result,
            Err(e) => {
                let msg = format!("cannot read {}: {e}", path.display());
                if self.failing.get(path) != Some(&msg) {
                    tracing::warn!("{msg}");
                    result.errors = 1;
                    result.last_error = Some(msg.clone());
                    self.failing.insert(path.to_owned(), msg);
                }
                return result;
            }
        };
        self.failing.remove(path);
        if opened.reset {
            state.fold = RunFold::default();
        }
        let mtime = Millis(opened.mtime_ms);
        let fold = &mut state.fold;
        let read_from = if opened.reset { 0 } else { state.cursor.offset };
        let mut lines = 0u64;
        let skipped = opened.read_counted(path, &mut state.cursor, MAX_LINE, &mut |line| {
            lines += 1;
            fold.apply(runlog::parse_line(line).map_err(|e| e.to_string())?);
            Ok(())
        });
        self.stats
            .read(lines, state.cursor.offset.saturating_sub(read_from));
        result.errors = skipped.count;
        result.last_error = skipped.last;
        let writer_gone = match (state.fold.live_pid(), state.fold.start.as_ref()) {
            (Some(pid), Some(start)) => {
                let running = self.liveness.is_running(pid, start.ts);
                if running {
                    self.live.insert(path.to_owned(), (pid, start.ts));
                } else {
                    self.live.remove(path);
                }
                !running
            }
            _ => {
                self.live.remove(path);
                false
            }
        };
        // Nothing new and the writer's state unchanged: nothing to store (a recheck that finds
        // the writer still running, or no writer to check, writes nothing).
        if state.cursor == before && !result.new_file && !writer_gone {
            self.keep_hot(path, state);
            return result;
        }
        if let Some(start) = state.fold.start.as_mut()
            && start.creator.is_none()
        {
            // A local run without a creator is this user's: record that in the fold itself, so
            // the item keeps its creator even if the configured user changes later.
            start.creator = Some(self.store.context().me.clone());
        }
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !state.fold.is_empty() {
            result.update = Some(ItemUpdate {
                item: state.fold.item(&stem, mtime, writer_gone),
                mine: MineRule::Creator,
                origin: Some(path.display().to_string()),
            });
        }
        result.cursor = Some((key, crate::store::encode(&state)));
        self.keep_hot(path, state);
        result
    }

    fn keep_hot(&mut self, path: &Path, state: FileState) {
        if state.fold.end.is_some() {
            return; // a finished run is rarely appended to again
        }
        if self.hot.len() >= HOT_FILES {
            self.hot.clear();
        }
        self.hot.insert(path.to_owned(), state);
    }
}

/// Whether the file is exactly as far as its stored cursor, decoding only the cursor.
fn unchanged(path: &Path, stored: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct CursorOnly {
        cursor: FileCursor,
    }
    let (Ok(meta), Ok(CursorOnly { cursor: c })) = (
        std::fs::metadata(path),
        crate::store::decode::<CursorOnly>(stored),
    ) else {
        return false;
    };
    c.is_current(&meta)
}

fn add_to_batch(batch: &mut IngestBatch, r: FileResult) {
    batch.updates.extend(r.update);
    batch.cursors.extend(r.cursor);
    batch.errors += r.errors;
    if r.last_error.is_some() {
        batch.last_error = r.last_error;
    }
}

/// `*.jsonl`, not hidden (editors and atomic writers use dot-files for temporaries).
fn is_run_log(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "jsonl")
        && p.file_name()
            .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
}
