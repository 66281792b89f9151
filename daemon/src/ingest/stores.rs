//! The conversation-store source: follows the line-file stores of agent CLIs (Claude Code,
//! Codex, Gemini CLI and the others with a [`Format`]), each file folded by its format's parser.
//!
//! Driven by the follower engine ([`super::follow`]), dirs watched recursively: a scan does not
//! read a file whose stored cursor matches it (only its folded state is loaded when needed); a
//! changed file is read from its cursor. Each file's cursor and fold are committed with the
//! item they produced.
//!
//! A conversation can span several files (Claude Code sub-agents write their own transcripts):
//! its item is the main file's conversation with the sub-files' tokens and cost added. The
//! folds of active conversations and of recently read files are kept in memory (others are
//! loaded back from their committed cursors), so an item can be rebuilt from its files at any
//! time; this is also what lets the tick re-evaluate time-based statuses (a pending tool call
//! going quiet becomes `blocked`) without reading anything.

use super::convo::{ABANDONED_AFTER_MS, Conversation, ConversationFold};
use super::follow::{Step, Stopped};
use super::tail::{FileCursor, Opened};
use super::{HookSignal, IngestEvent, SourceStats};
use crate::model::{Millis, MineRule};
use crate::prices::Prices;
use crate::store::Store;
use crate::store::writer::{IngestBatch, ItemUpdate, WriteOp, WriterHandle};
use agentd_wire::{Item, Kind, Open, Source, Status, StatusSource};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::time::Duration;

/// Lines longer than this are skipped and counted (a 50 MB line is garbage, not a message).
pub const MAX_LINE: usize = 16 * 1024 * 1024;
/// How often live conversations are re-evaluated and missing store dirs looked for.
const TICK: Duration = Duration::from_secs(1);

/// How long after a dir is seen created it is walked again. The watcher sets up the watch on a
/// new dir after reporting it, once it has handled the events read with it: milliseconds, far
/// less than this; a file written in that gap is read this late, not never.
const CREATED_DIR_RECHECK: Duration = Duration::from_millis(500);
/// Notifications queued for the ingestor; beyond this a rescan replaces the dropped events.
const EVENT_QUEUE: usize = 8192;
/// Files per batch during a scan: large enough to share commits, small enough to show progress.
const SCAN_BATCH: usize = 256;
/// Directory depth followed under a store dir (Codex: `sessions/YYYY/MM/DD`; Claude Code
/// sub-agents: `projects/P/S/subagents/workflows/R`): deep enough for every layout, and a
/// bound against pathological trees.
const MAX_DEPTH: usize = 8;

/// One store format: where its files are and how they map to conversations.
pub trait Format: Send + 'static {
    type Fold: ConversationFold + Clone;
    /// Which source this is (see [`crate::sources`]).
    const KIND: crate::sources::SourceKind;
    /// The source's name in `/v1/health` and cursor keys, and the item id prefix.
    const NAME: &'static str = Self::KIND.name();
    /// The dirs to watch under one configured root.
    fn watch_dirs(root: &Path) -> Vec<PathBuf>;
    /// Whether `path` is a file of this store.
    fn is_store_file(path: &Path) -> bool;
    /// The conversation a file belongs to, and whether it is that conversation's main file.
    fn session_of(path: &Path, c: &Conversation) -> Option<(String, bool)>;
    /// The shell command that resumes the conversation.
    fn resume_command(session: &str, cwd: Option<&str>) -> Option<String>;
    /// The project of a conversation whose files do not name it (Gemini CLI keeps it beside
    /// the chats).
    fn project_of(_path: &Path) -> Option<String> {
        None
    }
    /// Whether `path` is rewritten whole rather than appended to (legacy Gemini JSON): such
    /// files are folded from their whole content on every change.
    fn is_whole_file(_path: &Path) -> bool {
        false
    }
    /// The largest whole file read (see [`Format::is_whole_file`]); a larger one is refused
    /// and counted.
    const MAX_WHOLE_FILE: u64 = 64 * 1024 * 1024;
    /// Folds a whole file (see [`Format::is_whole_file`]).
    fn fold_whole_file(_bytes: &[u8], _prices: &Prices) -> Result<Self::Fold, String> {
        Err("this store has no whole-file format".into())
    }
}

/// What is stored per file: where reading stands and the folded state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct FileState<F> {
    cursor: FileCursor,
    fold: F,
}

/// One file as the ingestor holds it. An entry outlives its fold (it is kept for every file
/// followed), so it is small and holds no allocation of its own once its fold is let go of:
/// its path and its conversation are ids (see [`super::names`]).
struct FileEntry<F> {
    /// Where reading stands and the fold; `None` when it was let go of (a quiet file of a
    /// finished conversation): it is then loaded from its committed cursor when needed. Boxed:
    /// most files' folds are let go of, and an entry then costs a pointer, not a fold.
    state: Option<Box<FileState<F>>>,
    /// The conversation the file belongs to.
    session: Option<SessionId>,
    /// The next file of the same conversation, in path order (see [`Session::first`]).
    next: Option<PathId>,
    /// The file is its conversation's main file (not a sub-agent's or a live registry).
    is_main: bool,
    /// The file is gone (the agent's cleanup); its conversation stays, marked as such.
    deleted: bool,
    /// When it was last read: the ingestor's count of files read then (see
    /// [`StoreSource::reads`]).
    read_at: u64,
}

/// A conversation's main file while it is rendered: its path, entry, conversation and fold.
type MainFile<'a, Fold> = (
    &'a Path,
    &'a FileEntry<Fold>,
    Conversation,
    std::borrow::Cow<'a, Fold>,
);

/// Files whose fold is kept in memory beyond those of active conversations and those read in
/// the last second: the rest are loaded from their committed cursors when they change, so
/// memory does not grow with the user's whole history. Loading one back costs a cursor read
/// (tens of microseconds), so this only needs to cover the files that change together, not a
/// user's history: 128 folds is a few MB.
const RESIDENT_FOLDS: usize = 128;

/// Folds in memory during a scan past which it waits for the writer to commit what it sent
/// (see `StoreSource::let_go_while_scanning`): a few scan batches, enough to keep the writer
/// busy.
const RESIDENT_WHILE_BEHIND: usize = 8 * RESIDENT_FOLDS;

/// The status last stored for a conversation, to notice when the clock changes it.
type Emitted = (Status, Option<String>);

/// A followed file: its path's id in [`StoreSource::paths`], and its index in
/// [`StoreSource::files`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct PathId(u32);

/// A conversation: its id's id in [`StoreSource::ids`], and its index in
/// [`StoreSource::sessions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct SessionId(u32);

/// One conversation as the ingestor knows it: kept for every conversation seen since start,
/// so small, and no allocation of its own (its files' entries hold the rest).
#[derive(Default)]
struct Session {
    /// Its first file in path order; each file's entry names the next ([`FileEntry::next`]).
    /// Most conversations have one file, some a few (sub-agents): a list through the entries
    /// costs nothing per conversation.
    first: Option<PathId>,
    /// Looked at since this process started (a restart re-renders the ones that were or are
    /// active, once: time may have moved them on while agentd was down). Kept when the files
    /// in memory are forgotten.
    seen: bool,
    /// Rendered from the files in memory: when another of its files is loaded later (a scan
    /// meets a conversation's files in any order, and may commit between them), it is rendered
    /// again, so its item always adds up all of its files.
    rendered: bool,
    /// Had something new but could not be rendered yet (its main file was not loaded: a scan
    /// met a sub-agent file first): rendered as soon as another of its files is loaded.
    unrendered: bool,
}

/// Starts the source thread of format `F` over `roots`.
pub fn spawn<F: Format>(
    roots: Vec<PathBuf>,
    prices: Arc<Prices>,
    history: crate::history::History,
    wiring: &super::follow::Wiring,
) -> std::io::Result<(SyncSender<IngestEvent>, std::thread::JoinHandle<()>)> {
    let dirs: Vec<PathBuf> = roots.iter().flat_map(|r| F::watch_dirs(r)).collect();
    let source = StoreSource::<F> {
        history,
        stop: wiring.stop.clone(),
        failing: HashMap::new(),
        paths: super::names::Names::default(),
        files: Vec::new(),
        known_files: 0,
        ids: super::names::Names::default(),
        sessions: Vec::new(),
        emitted: HashMap::new(),
        reads: 0,
        reads_at_tick: 0,
        letting_go: None,
        resident: Vec::new(),
        created_dirs: Vec::new(),
        hooks: HashMap::new(),
        prices,
        liveness: std::cell::RefCell::new(crate::liveness::Liveness::new()),
        store: wiring.store.clone(),
        writer: wiring.writer.clone(),
        stats: wiring.stats.clone(),
    };
    super::follow::spawn(source, dirs, wiring)
}

struct StoreSource<F: Format> {
    /// Keeps compressed copies of the files read (see [`crate::history`]).
    history: crate::history::History,
    /// Set at shutdown: long scans stop between files.
    stop: Arc<AtomicBool>,
    /// Files that could not be read, with the error: counted once, not on every rescan.
    failing: HashMap<PathBuf, String>,
    /// The paths of the files seen since start.
    paths: super::names::Names,
    /// By [`PathId`]: the files in memory (`None`: not looked at since start, or forgotten).
    files: Vec<Option<FileEntry<F::Fold>>>,
    /// How many of [`Self::files`] are in memory.
    known_files: usize,
    /// The ids of the conversations seen since start.
    ids: super::names::Names,
    /// By [`SessionId`]: every conversation seen since start.
    sessions: Vec<Session>,
    /// Conversations stored as working or blocked, with what was stored.
    emitted: HashMap<SessionId, Emitted>,
    /// Files read since start: each read is stamped with it, to tell the files read since a
    /// moment from the others.
    reads: u64,
    /// [`Self::reads`] at the last tick: files read since are not quiet.
    reads_at_tick: u64,
    /// While a scan holds more than twice [`RESIDENT_FOLDS`]: a barrier sent to the writer and
    /// [`Self::reads`] when it was sent. Once it is passed, the folds of the files read before
    /// are committed and can be let go of, so a backfill does not hold every fold at once and
    /// never waits for the writer to do it.
    letting_go: Option<(std::sync::mpsc::Receiver<()>, u64)>,
    /// The files whose fold is in memory (in no order). Letting go of folds looks only at
    /// these, not at every file seen since start: a backfill lets go after every batch.
    resident: Vec<PathId>,
    /// Dirs seen created, and when: walked again once [`CREATED_DIR_RECHECK`] has passed (see
    /// [`Self::process_paths`]).
    created_dirs: Vec<(PathBuf, std::time::Instant)>,
    /// The latest hook signal per conversation (see [`HookSignal`]).
    hooks: HashMap<String, HookSignal>,
    prices: Arc<Prices>,
    /// Checks the pid of an agent's live registry (interior: rendering is otherwise `&self`).
    liveness: std::cell::RefCell<crate::liveness::Liveness>,
    store: Store,
    writer: WriterHandle,
    stats: Arc<SourceStats>,
}

impl<F: Format> super::follow::Followed for StoreSource<F> {
    const NAME: &'static str = F::NAME;
    const TICK: Duration = TICK;
    const EVENT_QUEUE: usize = EVENT_QUEUE;

    /// Conversation stores nest by project and day.
    fn recursive(&self, _dir: &Path) -> bool {
        true
    }

    fn scan(&mut self, dir: &Path) -> Step {
        self.scan_dir(dir)
    }

    fn changed(&mut self, changed: BTreeSet<PathBuf>, removed: BTreeSet<PathBuf>) -> Step {
        let mut paths = changed;
        // A removed file's conversation stays, marked as such: rendered again.
        paths.extend(removed.into_iter().filter(|p| self.file(p).is_some()));
        self.process_paths(paths)
    }

    /// Records a hook's signal and renders its conversation at once.
    fn hook(&mut self, signal: HookSignal) -> Step {
        let id = signal.session_id.clone();
        if signal.status.is_some() {
            self.hooks.insert(id.clone(), signal);
        } else {
            self.hooks.remove(&id);
        }
        let mut batch = self.batch();
        let id = self.session_id(&id);
        self.render_into(&mut batch, BTreeSet::from([id]));
        self.send(batch)
    }

    fn tick(&mut self) -> Step {
        let due = self
            .created_dirs
            .iter()
            .filter(|(_, at)| at.elapsed() >= CREATED_DIR_RECHECK)
            .count();
        if due > 0 {
            // In the order seen: the ones due are the first.
            let dirs: Vec<PathBuf> = self.created_dirs.drain(..due).map(|(d, _)| d).collect();
            let mut batch = self.batch();
            let mut touched = BTreeSet::new();
            for dir in dirs {
                self.read_dir_files(&dir, &mut batch, &mut touched);
            }
            self.render_into(&mut batch, touched);
            self.send(batch)?;
        }
        if self.resident.len() > RESIDENT_FOLDS {
            self.writer.barrier().map_err(|_| Stopped)?;
            self.let_go_of_folds_read_by(self.reads_at_tick, "quiet");
            // What they held goes back to the system now that the source is quiet.
            crate::store::writer::release_free_memory();
        }
        self.reads_at_tick = self.reads;
        let now = Millis::now();
        self.hooks
            .retain(|_, h| now.0.saturating_sub(h.at.0) < ABANDONED_AFTER_MS);
        // Time moves statuses on: a quiet pending tool call becomes blocked, a quiet answer
        // finishes, an abandoned turn fails.
        let mut live: Vec<SessionId> = self.emitted.keys().copied().collect();
        // A hook that has just settled (a Codex permission request that stood for its second)
        // takes effect now, whatever the conversation showed.
        let settled: Vec<String> = self
            .hooks
            .iter()
            .filter(|(_, h)| {
                let due = h.at.0.saturating_add(h.settle_ms);
                h.settle_ms > 0 && now.0 >= due && now.0 - due < 3 * TICK.as_millis() as i64
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in settled {
            live.push(self.session_id(&id));
        }
        live.sort();
        live.dedup();
        let mut batch = self.batch();
        for id in live {
            if let Some(update) = self.render(id, now)
                && self.emitted.get(&id)
                    != Some(&(update.item.status, update.item.status_detail.clone()))
            {
                self.sessions[id.0 as usize].rendered = true;
                self.note_emitted(id, &update.item);
                batch.updates.push(update);
            }
        }
        self.send(batch)
    }

    fn forget(&mut self) {
        self.files.iter_mut().for_each(|f| *f = None);
        self.known_files = 0;
        self.resident.clear();
        self.letting_go = None;
        for session in &mut self.sessions {
            // Only whether it was seen outlives what is forgotten.
            *session = Session {
                seen: session.seen,
                ..Session::default()
            };
        }
        self.emitted.clear();
    }
}

impl<F: Format> StoreSource<F> {
    /// Reads every store file under `dir` that changed since its cursor, in batches.
    fn scan_dir(&mut self, dir: &Path) -> Step {
        let started = std::time::Instant::now();
        // A conversation's files are neighbours (see `scan_order`), and a batch is only cut
        // between groups, so an item is rarely committed before all of its files are read
        // (`rendered` and `unrendered` correct it when it is). In a first scan of the dir (a
        // backfill: no file has a cursor) conversations are taken oldest first; otherwise (a
        // restart) in path order, which is their cursors' key order: each cursor is then on the
        // page of the one before, where in time order every one would be a read of its own.
        // (`join("")` ends the prefix with one separator, as the files' paths have after it.)
        let prefix = format!("{}:{}", F::NAME, dir.join("").display());
        let first_scan = self.store.count_cursors(&prefix, 1).is_ok_and(|n| n == 0);
        let mut found = Vec::new();
        let mut errors = Vec::new();
        walk(dir, 0, &mut found, &mut errors, first_scan);
        found.retain(|(p, _)| F::is_store_file(p));
        let total = found.len();
        let new = found.iter().filter(|(p, _)| self.file(p).is_none()).count();
        self.stats
            .scan_total
            .store((self.known_files + new) as u64, Ordering::Relaxed);
        let mut batch = self.scan_batch();
        for msg in errors {
            if self
                .failing
                .insert(PathBuf::from(&msg), msg.clone())
                .is_none()
            {
                tracing::warn!("{msg}");
                batch.errors += 1;
                batch.last_error = Some(msg);
            }
        }
        let found = scan_order(found);
        let mut touched = BTreeSet::new();
        let mut group: Option<PathBuf> = None;
        let mut in_batch = 0usize;
        let mut n = 0usize;
        // The files are read and folded on reader threads; what they read is taken in here, in
        // order, on this one, while the next files are being read.
        let jobs = found
            .iter()
            .map(|p| {
                (
                    p.as_path(),
                    self.file(p)
                        .and_then(|e| e.state.as_ref().map(|s| Box::new((**s).clone()))),
                )
            })
            .collect();
        let (store, prices) = (self.store.clone(), Arc::clone(&self.prices));
        std::thread::scope(|scope| -> Step {
            // None of the files has a cursor in a first scan of the dir: none is looked up.
            let cursors = (!first_scan).then_some(&store);
            let reads = read_in_order::<F>(scope, jobs, cursors, &prices, reader_threads());
            for read in reads {
                if self.stop.load(Ordering::Relaxed) {
                    return Err(Stopped);
                }
                let same_group = group.as_ref().is_some_and(|g| read.path.starts_with(g));
                if in_batch >= SCAN_BATCH && !same_group {
                    self.stats
                        .files
                        .store(self.known_files as u64, Ordering::Relaxed);
                    self.render_into(&mut batch, std::mem::take(&mut touched));
                    let mut full = std::mem::replace(&mut batch, self.scan_batch());
                    full.scan_continues = true;
                    self.send(full)?;
                    self.let_go_while_scanning()?;
                    tracing::info!("{}: scanned {n} of {total} files", F::NAME);
                    in_batch = 0;
                }
                if !same_group {
                    group = Some(read.path.with_extension(""));
                }
                self.take(read, &mut batch, &mut touched);
                in_batch += 1;
                n += 1;
            }
            Ok(())
        })?;
        self.render_into(&mut batch, touched);
        self.send(batch)?;
        self.stats
            .files
            .store(self.known_files as u64, Ordering::Relaxed);
        tracing::info!(
            "scanned {}: {total} files in {:?}",
            dir.display(),
            started.elapsed()
        );
        Ok(())
    }

    fn process_paths(&mut self, paths: BTreeSet<PathBuf>) -> Step {
        let mut batch = self.batch();
        let mut touched = BTreeSet::new();
        for path in paths {
            if path.is_dir() {
                // A new dir (a new day of Codex sessions, a new project, a conversation's
                // sub-agents): its files may have been written before the watch on it was set
                // up. The watcher reports a dir before it watches it, so a file written between
                // this walk and that watch has no event of its own: the dir is walked once more
                // a little later, when its watch is surely in place (reading only what is new).
                self.read_dir_files(&path, &mut batch, &mut touched);
                self.created_dirs.push((path, std::time::Instant::now()));
                continue;
            }
            if !path.exists() {
                if let Some(f) = self.file_mut(&path) {
                    f.deleted = true;
                    if let Some(id) = f.session {
                        touched.insert(id);
                    }
                }
                continue;
            }
            if F::is_store_file(&path) {
                let before = touched.len();
                self.read_file(&path, &mut batch, &mut touched);
                if touched.len() > before {
                    batch.appended_at = super::oldest(batch.appended_at, super::modified(&path));
                }
            }
        }
        self.render_into(&mut batch, touched);
        self.stats
            .files
            .store(self.known_files as u64, Ordering::Relaxed);
        self.send(batch)
    }

    /// Reads what is new in every store file under `dir`.
    fn read_dir_files(
        &mut self,
        dir: &Path,
        batch: &mut IngestBatch,
        touched: &mut BTreeSet<SessionId>,
    ) {
        let mut found = Vec::new();
        walk(dir, 0, &mut found, &mut Vec::new(), false);
        for (p, _) in found.into_iter().filter(|(p, _)| F::is_store_file(p)) {
            self.read_file(&p, batch, touched);
        }
    }

    /// Reads what is new in `path`, folding it, and notes its conversation in `touched` when
    /// anything changed, or when it is seen for the first time since start and is (or was
    /// stored as) active: time may have moved it on while agentd was down.
    fn read_file(
        &mut self,
        path: &Path,
        batch: &mut IngestBatch,
        touched: &mut BTreeSet<SessionId>,
    ) {
        let prior = self.file(path).and_then(|e| e.state.as_deref().cloned());
        let read = read_path::<F>(path, prior, Some(&self.store), &self.prices);
        self.take(read, batch, touched);
    }

    /// Takes one file's read into the ingestor: its errors, history copy, cursor, conversation.
    fn take(
        &mut self,
        read: FileRead<F::Fold>,
        batch: &mut IngestBatch,
        touched: &mut BTreeSet<SessionId>,
    ) {
        let FileRead {
            path,
            key,
            state,
            before,
            known,
            outcome,
        } = read;
        let path = path.as_path();
        let loaded_now = self.file(path).is_none();
        let mut refolded = false;
        match outcome {
            ReadOutcome::Gone => return,
            ReadOutcome::CursorError(e) => {
                tracing::error!("reading the cursor of {}: {e}", path.display());
                return;
            }
            ReadOutcome::Failed(msg) => {
                if self.failing.get(path) != Some(&msg) {
                    tracing::warn!("{msg}");
                    batch.errors += 1;
                    batch.last_error = Some(msg.clone());
                    self.failing.insert(path.to_owned(), msg);
                }
                return;
            }
            ReadOutcome::Whole { error } => {
                self.failing.remove(path);
                match error {
                    None => refolded = true,
                    Some(msg) => {
                        // A whole-file format caught mid-write: try again on the next change.
                        tracing::warn!("{msg}");
                        batch.errors += 1;
                        batch.last_error = Some(msg);
                    }
                }
            }
            ReadOutcome::Lines {
                reset,
                read_from,
                lines,
                bytes,
                errors,
                last_error,
            } => {
                self.failing.remove(path);
                if reset && before.offset > 0 {
                    self.history.reset(path);
                }
                self.stats.read(lines, bytes);
                batch.errors += errors;
                if last_error.is_some() {
                    batch.last_error = last_error;
                }
                // New data, or the first look at the file in this run (the copy may lag
                // behind after a crash, or history was just turned on).
                if state.cursor.offset != read_from || loaded_now {
                    self.history.grew(path, state.cursor.offset);
                }
            }
        }
        self.reads += 1;
        let changed = state.cursor != before || !known || refolded;
        let session = F::session_of(path, &state.fold.conversation(Millis::now()));
        if changed {
            batch.cursors.push((key, crate::store::encode(&state)));
        }
        let path_id = PathId(self.paths.intern(path.as_os_str().as_bytes()));
        if self.files.len() <= path_id.0 as usize {
            self.files.resize_with(path_id.0 as usize + 1, || None);
        }
        let (session, is_main) = match session {
            Some((id, is_main)) => (Some(self.session_id(&id)), is_main),
            None => (None, false),
        };
        let was_in = self.files[path_id.0 as usize]
            .as_ref()
            .and_then(|e| e.session);
        if was_in != session
            && let Some(old) = was_in
        {
            // Moved to another conversation (its files said otherwise before).
            self.unlink(old, path_id);
        }
        let mut next = self.files[path_id.0 as usize].as_ref().and_then(|e| e.next);
        if let Some(id) = session {
            if was_in != session {
                next = self.link(id, path_id, path);
            }
            let entry = &mut self.sessions[id.0 as usize];
            let first_look = !std::mem::replace(&mut entry.seen, true);
            if changed
                || (loaded_now && entry.rendered)
                || entry.unrendered
                || (first_look
                    && (state.fold.conversation(Millis::now()).status.is_active()
                        || self
                            .store
                            .get(&format!("{}:{}", F::NAME, self.id_of(id)))
                            .ok()
                            .flatten()
                            .is_none_or(|item| item.status.is_active())))
            {
                touched.insert(id);
            }
        }
        let was = self.files[path_id.0 as usize].replace(FileEntry {
            state: Some(Box::new(state)),
            session,
            next: if session.is_some() { next } else { None },
            is_main,
            deleted: false,
            read_at: self.reads,
        });
        if was.is_none() {
            self.known_files += 1;
        }
        if was.is_none_or(|e| e.state.is_none()) {
            self.resident.push(path_id);
        }
    }

    /// A file's fold: in memory, or loaded from its committed cursor.
    fn fold_of<'a>(
        &self,
        path: &Path,
        entry: &'a FileEntry<F::Fold>,
    ) -> Option<std::borrow::Cow<'a, F::Fold>> {
        match &entry.state {
            Some(s) => Some(std::borrow::Cow::Borrowed(&s.fold)),
            None => {
                let key = format!("{}:{}", F::NAME, path.display());
                let bytes = self.store.cursor(&key).ok()??;
                crate::store::decode::<FileState<F::Fold>>(&bytes)
                    .ok()
                    .map(|s| std::borrow::Cow::Owned(s.fold))
            }
        }
    }

    /// During a scan, once more than twice [`RESIDENT_FOLDS`] are in memory: sends the writer
    /// a barrier without waiting for it, and when a barrier sent earlier has been passed, lets
    /// go of the quiet folds read before it (their cursors are committed).
    ///
    /// With more than [`RESIDENT_WHILE_BEHIND`] in memory it waits for that barrier: the scan
    /// reads faster than a large database takes writes, and would otherwise hold every fold
    /// and batch the writer has not reached yet.
    fn let_go_while_scanning(&mut self) -> Step {
        if let Some((passed, mark)) = &self.letting_go {
            let waited = if self.resident.len() > RESIDENT_WHILE_BEHIND {
                passed
                    .recv()
                    .map_err(|_| std::sync::mpsc::TryRecvError::Disconnected)
            } else {
                passed.try_recv()
            };
            match waited {
                Ok(()) => {
                    let mark = *mark;
                    self.letting_go = None;
                    self.let_go_of_folds_read_by(mark, "while scanning");
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(()),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return Err(Stopped),
            }
        }
        if self.letting_go.is_none() && self.resident.len() > 2 * RESIDENT_FOLDS {
            let passed = self.writer.barrier_later().map_err(|_| Stopped)?;
            self.letting_go = Some((passed, self.reads));
        }
        Ok(())
    }

    /// Lets go of the folds of files last read by `mark` (see [`Self::reads`]) of finished
    /// conversations, oldest first, while more than [`RESIDENT_FOLDS`] are in memory. The
    /// caller has seen the writer commit everything sent before `mark`, so a fold loaded back
    /// from its cursor is the one that was let go of. The memory is not given back to the
    /// system here: during a scan the next folds reuse it (trimming the heap after each let-go
    /// was a few percent of a backfill's time); a quiet source gives it back on its tick.
    fn let_go_of_folds_read_by(&mut self, mark: u64, why: &str) {
        if self.resident.len() <= RESIDENT_FOLDS {
            return;
        }
        let mut quiet: Vec<(u64, PathId)> = self
            .resident
            .iter()
            .filter_map(|&id| Some((id, self.files[id.0 as usize].as_ref()?)))
            .filter(|(_, e)| e.state.is_some() && e.read_at <= mark)
            .filter(|(_, e)| e.session.is_none_or(|id| !self.emitted.contains_key(&id)))
            .map(|(id, e)| (e.read_at, id))
            .collect();
        quiet.sort();
        let excess = self.resident.len() - RESIDENT_FOLDS;
        let mut let_go = 0;
        for (_, id) in quiet.into_iter().take(excess) {
            if let Some(e) = &mut self.files[id.0 as usize] {
                e.state = None;
                let_go += 1;
            }
        }
        let files = &self.files;
        self.resident.retain(|id| {
            files[id.0 as usize]
                .as_ref()
                .is_some_and(|e| e.state.is_some())
        });
        tracing::debug!(
            "{}: let go of {let_go} folds ({why}); {} in memory",
            F::NAME,
            self.resident.len()
        );
    }

    /// Renders the conversations in `touched` into `batch`.
    fn render_into(&mut self, batch: &mut IngestBatch, touched: BTreeSet<SessionId>) {
        let now = Millis::now();
        for id in touched {
            let update = self.render(id, now);
            let session = &mut self.sessions[id.0 as usize];
            session.unrendered = update.is_none();
            if let Some(update) = update {
                session.rendered = true;
                self.note_emitted(id, &update.item);
                batch.updates.push(update);
            }
        }
    }

    /// Notes what was stored for conversation `id`: active ones are re-evaluated on the tick.
    fn note_emitted(&mut self, id: SessionId, item: &Item) {
        if item.status.is_active() {
            self.emitted
                .insert(id, (item.status, item.status_detail.clone()));
        } else {
            self.emitted.remove(&id);
        }
    }

    /// The [`SessionId`] of conversation `id`, made if it is new.
    fn session_id(&mut self, id: &str) -> SessionId {
        let id = SessionId(self.ids.intern(id.as_bytes()));
        if self.sessions.len() <= id.0 as usize {
            self.sessions
                .resize_with(id.0 as usize + 1, Session::default);
        }
        id
    }

    /// The conversation id of `id`.
    fn id_of(&self, id: SessionId) -> &str {
        // Interned from a `&str`: always UTF-8.
        std::str::from_utf8(self.ids.name(id.0)).unwrap_or_default()
    }

    /// The path of `id`.
    fn path_of(&self, id: PathId) -> &Path {
        Path::new(std::ffi::OsStr::from_bytes(self.paths.name(id.0)))
    }

    /// The entry of `path`, if it is in memory.
    fn file(&self, path: &Path) -> Option<&FileEntry<F::Fold>> {
        let id = self.paths.get(path.as_os_str().as_bytes())?;
        self.files.get(id as usize)?.as_ref()
    }

    fn file_mut(&mut self, path: &Path) -> Option<&mut FileEntry<F::Fold>> {
        let id = self.paths.get(path.as_os_str().as_bytes())?;
        self.files.get_mut(id as usize)?.as_mut()
    }

    /// The files of conversation `id` in memory, in path order.
    fn files_of(&self, id: SessionId) -> impl Iterator<Item = (&Path, &FileEntry<F::Fold>)> {
        let mut at = self.sessions.get(id.0 as usize).and_then(|s| s.first);
        std::iter::from_fn(move || {
            let here = at?;
            let entry = self.files.get(here.0 as usize)?.as_ref()?;
            at = entry.next;
            Some((self.path_of(here), entry))
        })
    }

    /// Puts `file` (at `path`) into conversation `id`'s list, in path order, and returns the
    /// file that is to follow it (the caller writes it into `file`'s entry).
    fn link(&mut self, id: SessionId, file: PathId, path: &Path) -> Option<PathId> {
        let mut before: Option<PathId> = None;
        let mut at = self.sessions[id.0 as usize].first;
        while let Some(here) = at {
            if self.path_of(here) > path {
                break;
            }
            before = Some(here);
            at = self.files[here.0 as usize].as_ref().and_then(|e| e.next);
        }
        match before {
            None => self.sessions[id.0 as usize].first = Some(file),
            Some(b) => {
                if let Some(e) = &mut self.files[b.0 as usize] {
                    e.next = Some(file);
                }
            }
        }
        at
    }

    /// Takes `file` out of conversation `id`'s list.
    fn unlink(&mut self, id: SessionId, file: PathId) {
        let after = self.files[file.0 as usize].as_ref().and_then(|e| e.next);
        if self.sessions[id.0 as usize].first == Some(file) {
            self.sessions[id.0 as usize].first = after;
            return;
        }
        let mut at = self.sessions[id.0 as usize].first;
        while let Some(here) = at {
            let Some(e) = &mut self.files[here.0 as usize] else {
                return;
            };
            if e.next == Some(file) {
                e.next = after;
                return;
            }
            at = e.next;
        }
    }

    /// The item of conversation `id` from its files, as of `now`.
    fn render(&self, session: SessionId, now: Millis) -> Option<ItemUpdate> {
        let id = self.id_of(session);
        let mut main: Option<MainFile<'_, F::Fold>> = None;
        let mut parts = Vec::new();
        let mut live = None;
        for (p, f) in self.files_of(session) {
            let Some(fold) = self.fold_of(p, f) else {
                continue;
            };
            let c = fold.conversation(now);
            if f.is_main {
                // A conversation moved (Codex archiving) has its old path deleted: the one
                // that exists wins; of two that exist, a plain file beats a whole-file copy
                // (a Codex rollout and its compressed form).
                let better = main.as_ref().is_none_or(|(mp, m, _, _)| {
                    if m.deleted != f.deleted {
                        m.deleted
                    } else {
                        !F::is_whole_file(p) || F::is_whole_file(mp)
                    }
                });
                if better {
                    main = Some((p, f, c, fold));
                }
            } else if let Some(l) = c.live.clone() {
                if !f.deleted {
                    live = Some(l);
                }
            } else {
                parts.push(c);
            }
        }
        let (path, entry, mut c, fold) = main?;
        if c.cwd.is_none() {
            c.cwd = F::project_of(path);
        }
        // The agent's own registry counts only while its process runs.
        let live = live.filter(|l| self.liveness.borrow_mut().is_running(l.pid, l.started_at));
        let at_last_line = c
            .updated_at
            .map_or(c.status, |u| fold.conversation(u).status);
        let (c, source) = super::convo::merge(
            c,
            super::convo::Signals {
                at_last_line,
                parts: &parts,
                live: live.as_ref(),
                hook: self.hooks.get(id),
                now,
            },
        );
        // The file's time stands in for times its lines do not give (looked up only then: a
        // backfill renders every conversation once).
        let mtime = || {
            std::fs::metadata(path).ok().map(|m| {
                use std::os::unix::fs::MetadataExt;
                Millis(m.mtime() * 1000 + m.mtime_nsec() / 1_000_000)
            })
        };
        let created = c.created_at.or_else(mtime).unwrap_or(now);
        let updated = c.updated_at.or_else(mtime).unwrap_or(created).max(created);
        let mut detail = c.status_detail.clone();
        if entry.deleted {
            let gone = match self.history.copy_of(path) {
                Some(_) => format!(
                    "transcript deleted by {}; agentd kept a copy",
                    F::KIND.title()
                ),
                None => "transcript deleted".into(),
            };
            detail = Some(match detail {
                Some(d) => format!("{d} ({gone})"),
                None => gone,
            });
        }
        Some(conversation_item(
            F::KIND,
            id,
            &c,
            (created, updated),
            detail,
            source,
            F::resume_command(id, c.cwd.as_deref()),
            path,
        ))
    }

    fn batch(&self) -> IngestBatch {
        IngestBatch {
            source: F::NAME,
            ..Default::default()
        }
    }

    /// A batch of a scan (see [`IngestBatch::scanned`]).
    fn scan_batch(&self) -> IngestBatch {
        IngestBatch {
            scanned: true,
            ..self.batch()
        }
    }

    fn send(&self, batch: IngestBatch) -> Step {
        send_batch(&self.writer, batch)
    }
}

/// What reading one file gave, before the ingestor takes it in ([`StoreSource::take`]): the
/// reading and folding, the expensive part, is done by [`read_path`] without the ingestor's
/// state, so that a scan can read several files at once.
struct FileRead<Fold> {
    path: PathBuf,
    /// Its cursor key.
    key: String,
    /// The state after the read.
    state: FileState<Fold>,
    /// The cursor before it.
    before: FileCursor,
    /// Whether a state was known (in memory or committed) before this read.
    known: bool,
    outcome: ReadOutcome,
}

enum ReadOutcome {
    /// The file is gone.
    Gone,
    /// Its committed cursor could not be read.
    CursorError(String),
    /// It could not be opened (a FIFO, another user's file, …): the message.
    Failed(String),
    /// A whole file, folded again (or not, with why).
    Whole { error: Option<String> },
    /// Lines read from `read_from`.
    Lines {
        reset: bool,
        read_from: u64,
        lines: u64,
        bytes: u64,
        errors: u64,
        last_error: Option<String>,
    },
}

/// Files read ahead of the one a scan is taking in, at most: bounds the reads held in memory
/// while one large file is still being read.
const READ_AHEAD: usize = 128;
/// Reader threads at most: parsing is the backfill's cost, and files are independent.
const MAX_READERS: usize = 4;

/// Reader threads for a scan: one per core beyond the first (the writer commits on a core of
/// its own meanwhile, and the scan's thread takes in what is read; on two cores one reader
/// beside them already keeps both busy: two made a backfill no faster and its peak memory
/// larger), up to [`MAX_READERS`].
fn reader_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_sub(1)
        .clamp(1, MAX_READERS)
}

/// One file for a reader: its path and its state in memory, if held (boxed: a scan makes a job
/// for every file at once, and most have no state in memory).
type ReadJob<'a, F> = (&'a Path, Option<Box<FileState<F>>>);

/// The jobs not taken yet, numbered in their order, shared by the readers and the caller.
type Jobs<'a, F> = Arc<
    std::sync::Mutex<std::iter::Peekable<std::iter::Enumerate<std::vec::IntoIter<ReadJob<'a, F>>>>>,
>;

/// Reads `jobs` with [`read_path`] on `workers` threads of `scope` and yields what they read in
/// the jobs' order, each as soon as it and every job before it are read: the caller takes
/// files in while the next ones are being read, and reads one itself rather than wait for the
/// next. Dropping it early stops the readers.
fn read_in_order<'scope, 'env, F: Format>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    jobs: Vec<ReadJob<'env, F::Fold>>,
    cursors: Option<&'env Store>,
    prices: &'env Prices,
    workers: usize,
) -> InOrder<'env, F> {
    let (tx, rx) = std::sync::mpsc::channel();
    let progress = Arc::new((
        std::sync::Mutex::new(Progress {
            taken: Some(0),
            waiting: 0,
        }),
        std::sync::Condvar::new(),
    ));
    let queue: Jobs<'env, F::Fold> = Arc::new(std::sync::Mutex::new(
        jobs.into_iter().enumerate().peekable(),
    ));
    for _ in 0..workers.max(1) {
        let (tx, progress, queue) = (tx.clone(), Arc::clone(&progress), Arc::clone(&queue));
        scope.spawn(move || {
            loop {
                let Some((i, (path, prior))) =
                    queue.lock().unwrap_or_else(|e| e.into_inner()).next()
                else {
                    return;
                };
                // Wait until the caller has taken in all but READ_AHEAD of the files before.
                let (lock, moved) = &*progress;
                let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
                while p.taken.is_some_and(|t| i >= t + READ_AHEAD) {
                    p.waiting += 1;
                    p = moved.wait(p).unwrap_or_else(|e| e.into_inner());
                    p.waiting -= 1;
                }
                if p.taken.is_none() {
                    return; // dropped: stop reading
                }
                drop(p);
                if tx
                    .send((i, read_path::<F>(path, prior.map(|b| *b), cursors, prices)))
                    .is_err()
                {
                    return;
                }
            }
        });
    }
    InOrder {
        rx,
        early: BTreeMap::new(),
        next: 0,
        progress,
        queue,
        cursors,
        prices,
    }
}

/// How far the caller of [`read_in_order`] is, for the readers to wait on.
struct Progress {
    /// How many jobs were taken (`None` once dropped).
    taken: Option<usize>,
    /// Readers waiting for it to move: only then is it worth waking them (a wake-up is a
    /// system call, and most files are taken with no reader waiting).
    waiting: usize,
}

/// What [`read_in_order`] yields.
struct InOrder<'env, F: Format> {
    rx: std::sync::mpsc::Receiver<(usize, FileRead<F::Fold>)>,
    /// Reads that arrived before one of a file ahead of them.
    early: BTreeMap<usize, FileRead<F::Fold>>,
    /// The index of the next job to yield.
    next: usize,
    progress: Arc<(std::sync::Mutex<Progress>, std::sync::Condvar)>,
    /// The jobs no reader took yet: the caller reads one of them itself when the next read is
    /// not there yet.
    queue: Jobs<'env, F::Fold>,
    cursors: Option<&'env Store>,
    prices: &'env Prices,
}

impl<F: Format> InOrder<'_, F> {
    fn set_taken(&self, taken: Option<usize>) {
        let (lock, moved) = &*self.progress;
        let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
        p.taken = taken;
        if p.waiting > 0 {
            moved.notify_all();
        }
    }
}

impl<F: Format> Iterator for InOrder<'_, F> {
    type Item = FileRead<F::Fold>;
    fn next(&mut self) -> Option<FileRead<F::Fold>> {
        loop {
            if let Some(read) = self.early.remove(&self.next) {
                self.next += 1;
                self.set_taken(Some(self.next));
                return Some(read);
            }
            if let Ok((i, read)) = self.rx.try_recv() {
                self.early.insert(i, read);
                continue;
            }
            // The next file is not read yet: read one after it (within the read-ahead bound)
            // rather than sleep until a reader wakes this thread, which would cost a wake-up
            // per file and leave this thread's core to the others.
            let ahead = self.next + READ_AHEAD;
            let job = self
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .next_if(|(i, _)| *i < ahead);
            if let Some((i, (path, prior))) = job {
                let read = read_path::<F>(path, prior.map(|b| *b), self.cursors, self.prices);
                self.early.insert(i, read);
                continue;
            }
            // Every job is read by some reader unless a reader panicked (the scope then
            // propagates the panic); all senders gone means no job is left.
            let (i, read) = self.rx.recv().ok()?;
            self.early.insert(i, read);
        }
    }
}

impl<F: Format> Drop for InOrder<'_, F> {
    fn drop(&mut self) {
        self.set_taken(None);
    }
}

/// Reads what is new in `path` from `prior` (its state in memory, else its committed cursor in
/// `cursors`; `None` when no file has one) and folds it: no ingestor state is touched, so files can be read in parallel.
fn read_path<F: Format>(
    path: &Path,
    prior: Option<FileState<F::Fold>>,
    cursors: Option<&Store>,
    prices: &Prices,
) -> FileRead<F::Fold> {
    let key = format!("{}:{}", F::NAME, path.display());
    let (mut state, known, cursor_error) = match prior {
        Some(s) => (s, true, None),
        None => match cursors.map_or(Ok(None), |store| store.cursor(&key)) {
            Ok(Some(bytes)) => (crate::store::decode(&bytes).unwrap_or_default(), true, None),
            Ok(None) => (FileState::<F::Fold>::default(), false, None),
            Err(e) => (FileState::default(), false, Some(e.to_string())),
        },
    };
    let before = state.cursor.clone();
    let done = |state, outcome| FileRead {
        path: path.to_owned(),
        key: key.clone(),
        state,
        before: before.clone(),
        known,
        outcome,
    };
    if let Some(e) = cursor_error {
        return done(state, ReadOutcome::CursorError(e));
    }
    let outcome = match Opened::open(path, &mut state.cursor) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => ReadOutcome::Gone,
        Err(e) => ReadOutcome::Failed(format!("cannot read {}: {e}", path.display())),
        Ok(opened) => {
            if opened.reset {
                state.fold = F::Fold::default();
            }
            if F::is_whole_file(path) {
                // Whole files are small and may be rewritten in place at the same length:
                // read again on every look.
                let folded = opened
                    .read_whole(F::MAX_WHOLE_FILE)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))
                    .and_then(|bytes| {
                        F::fold_whole_file(&bytes, prices)
                            .map(|fold| (fold, bytes.len()))
                            .map_err(|e| format!("{}: {e}", path.display()))
                    });
                match folded {
                    Ok((fold, len)) => {
                        state.fold = fold;
                        state.cursor.offset = len as u64;
                        ReadOutcome::Whole { error: None }
                    }
                    Err(msg) => ReadOutcome::Whole { error: Some(msg) },
                }
            } else {
                let reset = opened.reset;
                let read_from = state.cursor.offset;
                let counted_from = if reset { 0 } else { read_from };
                let fold = &mut state.fold;
                let mut lines = 0u64;
                let skipped = opened.read_counted(path, &mut state.cursor, MAX_LINE, &mut |line| {
                    lines += 1;
                    fold.apply(line, prices)
                });
                ReadOutcome::Lines {
                    reset,
                    read_from,
                    lines,
                    bytes: state.cursor.offset.saturating_sub(counted_from),
                    errors: skipped.count,
                    last_error: skipped.last,
                }
            }
        }
    };
    done(state, outcome)
}

/// Sends `batch` to the writer unless it says nothing; `Err` when the writer has stopped.
pub(crate) fn send_batch(writer: &WriterHandle, batch: IngestBatch) -> Step {
    if batch.updates.is_empty() && batch.cursors.is_empty() && batch.errors == 0 {
        return Ok(());
    }
    writer.send(WriteOp::Ingest(batch)).map_err(|_| Stopped)
}

/// The item of conversation `session` of a conversation store, as `c` describes it; `origin`
/// is the file (or database) its log is read from.
#[allow(clippy::too_many_arguments)]
pub fn conversation_item(
    kind: crate::sources::SourceKind,
    session: &str,
    c: &Conversation,
    (created, updated): (Millis, Millis),
    detail: Option<String>,
    source: StatusSource,
    command: Option<String>,
    origin: &Path,
) -> ItemUpdate {
    let item = Item {
        id: format!("{}:{session}", kind.id_scheme()),
        kind: Kind::Interactive,
        source: Source::Interactive,
        status: c.status,
        status_detail: detail,
        harness: Some(kind.name().to_owned()),
        title: c.title.clone(),
        creator: None,
        mine: false,
        project: c.cwd.clone(),
        model: c.model.clone(),
        created_at: created,
        updated_at: updated,
        finished_at: None,
        duration_ms: None,
        credits: c.credits,
        cost_usd: c.cost_usd,
        usage: c.usage,
        open: Open { url: None, command },
        status_source: Some(source),
        blocked_ms: 0,
        blocked_since: None,
    };
    ItemUpdate {
        item,
        mine: MineRule::Creator,
        origin: Some(origin.display().to_string()),
    }
}

/// Collects the regular files under `dir` (not following symlinks, so a link loop cannot trap
/// the walk), up to [`MAX_DEPTH`], with their modification times when `times` is set;
/// unreadable dirs are reported in `errors`.
fn walk(
    dir: &Path,
    depth: usize,
    found: &mut Vec<(PathBuf, Option<std::time::SystemTime>)>,
    errors: &mut Vec<String>,
    times: bool,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(format!("cannot list {}: {e}", dir.display()));
            return;
        }
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_dir() {
            walk(&path, depth + 1, found, errors, times);
        } else if !kind.is_symlink() {
            // FIFOs, sockets and devices too: reading refuses them with a message that is
            // counted in `/v1/health`, rather than passing over them in silence. (The time is
            // read relative to the open dir, without walking down the whole path again.)
            let modified = times
                .then(|| entry.metadata().and_then(|m| m.modified()).ok())
                .flatten();
            found.push((path, modified));
        }
    }
}

/// The order a scan reads its files in: a conversation's files together, sorted by their path
/// without the extension, so its main file comes first (`S`, then `S/subagents/…`; by whole
/// paths `S/…` would come before `S.jsonl`); and the conversations by when their files were last
/// written (oldest first, unknown first, ties in path order).
///
/// Why by time: the index is ordered by when each item was last updated, which is about when
/// its files were last written. Taken in that order, a backfill's index entries land at the end
/// of each partition and a transaction dirties a few of its pages. In path order they landed all
/// over it, and every transaction of a large backfill rewrote nearly the whole index: at 50,000
/// conversations, most of the writer's time.
fn scan_order(mut found: Vec<(PathBuf, Option<std::time::SystemTime>)>) -> Vec<PathBuf> {
    found.sort_by_cached_key(|(p, _)| component_order_key(&p.with_extension("")));
    // (the group's latest write, the group's number, the file)
    let mut keyed: Vec<(Option<std::time::SystemTime>, usize, PathBuf)> =
        Vec::with_capacity(found.len());
    let (mut prefix, mut first, mut latest): (Option<PathBuf>, usize, _) = (None, 0, None);
    for (path, modified) in found {
        if !prefix.as_ref().is_some_and(|g| path.starts_with(g)) {
            keyed[first..].iter_mut().for_each(|k| k.0 = latest);
            (first, latest) = (keyed.len(), None);
            prefix = Some(path.with_extension(""));
        }
        latest = latest.max(modified);
        keyed.push((None, first, path));
    }
    keyed[first..].iter_mut().for_each(|k| k.0 = latest);
    // Stable: a group's files keep their order.
    keyed.sort_by_key(|(time, group, _)| (*time, *group));
    keyed.into_iter().map(|(_, _, path)| path).collect()
}

/// A key whose byte order is the paths' order by components (`S` < `S/x` < `S-x`): the path's
/// bytes with each separator as the lowest byte (no path holds a NUL). Comparing paths by
/// components walks them component by component; at 50,000 files that sort was a percent of
/// a backfill. The paths a walk finds are normal (no `.`, no doubled or trailing separators),
/// where the two orders agree.
fn component_order_key(path: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut key = path.as_os_str().as_bytes().to_vec();
    key.iter_mut().filter(|b| **b == b'/').for_each(|b| *b = 0);
    key
}

/// `*.jsonl` (or another extension), not hidden: editors and atomic writers use dot-files.
pub fn has_extension(p: &Path, ext: &str) -> bool {
    p.extension().is_some_and(|e| e == ext)
        && p.file_name()
            .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sort key orders paths as `Path`'s own order does (by components), for the paths a
    /// walk finds.
    #[test]
    fn the_scan_sort_key_orders_paths_by_components() {
        let paths = [
            "/p/a",
            "/p/a-b",
            "/p/a/subagents/agent-1",
            "/p/a/b",
            "/p/a.b",
            "/p/ab",
            "/p/a b",
            "/p/\u{e9}",
            "/p/z",
            "/p",
            "/q/a",
            "/p/a/subagents",
            "/p/A",
        ];
        for x in paths {
            for y in paths {
                let (x, y) = (Path::new(x), Path::new(y));
                assert_eq!(
                    component_order_key(x).cmp(&component_order_key(y)),
                    x.cmp(y),
                    "{x:?} against {y:?}"
                );
            }
        }
    }

    #[test]
    fn a_scan_reads_conversations_oldest_first_with_their_files_together() {
        let at = |s: u64| Some(std::time::UNIX_EPOCH + Duration::from_secs(s));
        let files = [
            ("/p/b.jsonl", at(50)),
            ("/p/a.jsonl", at(10)),
            ("/p/a/subagents/agent-2.jsonl", at(90)), // makes `a` the newest conversation
            ("/p/a/subagents/agent-1.jsonl", at(20)),
            ("/p/c.jsonl", at(50)),  // a tie with `b`: path order
            ("/p/d.jsonl", None),    // unreadable times come first
            ("/p/ab.jsonl", at(30)), // not one of `a`'s files
        ];
        let order = scan_order(files.iter().map(|(p, t)| (PathBuf::from(p), *t)).collect());
        let order: Vec<_> = order.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            order,
            [
                "/p/d.jsonl",
                "/p/ab.jsonl",
                "/p/b.jsonl",
                "/p/c.jsonl",
                "/p/a.jsonl",
                "/p/a/subagents/agent-1.jsonl",
                "/p/a/subagents/agent-2.jsonl",
            ]
        );
    }

    #[test]
    fn reading_on_several_threads_gives_what_reading_on_one_gives() {
        let dir = std::env::temp_dir().join(format!("agentd-read-many-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let chats = dir.join("projects/-src/chats");
        std::fs::create_dir_all(&chats).unwrap();
        let mut paths = Vec::new();
        for i in 0..23 {
            let path = chats.join(format!("s{i:02}.jsonl"));
            let lines: String = (0..=i)
                .map(|k| {
                    format!(
                        "{{\"uuid\":\"a{k}\",\"sessionId\":\"s{i}\",\"timestamp\":\"2026-11-30T10:00:{k:02}Z\",\"type\":\"assistant\",\"model\":\"qwen3-coder-plus\",\"message\":{{\"parts\":[{{\"text\":\"ok\"}}]}},\"usageMetadata\":{{\"promptTokenCount\":{},\"candidatesTokenCount\":1}}}}\n",
                        100 * (k + 1)
                    )
                })
                .collect();
            std::fs::write(&path, lines).unwrap();
            paths.push(path);
        }
        let store = Store::open(
            &dir.join("agentd.redb"),
            crate::store::IndexContext {
                me: "me".into(),
                tz: jiff::tz::TimeZone::UTC,
            },
        )
        .unwrap();
        let prices = Prices::builtin();
        let summary = |reads: Vec<FileRead<<super::super::formats::Qwen as Format>::Fold>>| {
            reads
                .into_iter()
                .map(|r| {
                    let c = r.state.fold.conversation(Millis(0));
                    (r.path, r.state.cursor.offset, c.usage, c.session_id)
                })
                .collect::<Vec<_>>()
        };
        let read = |workers| {
            std::thread::scope(|scope| {
                summary(
                    read_in_order::<super::super::formats::Qwen>(
                        scope,
                        paths.iter().map(|p| (p.as_path(), None)).collect(),
                        Some(&store),
                        &prices,
                        workers,
                    )
                    .collect(),
                )
            })
        };
        let one = read(1);
        let three = read(3);
        // Dropped early, with more jobs than are read ahead, the readers waiting to read ahead
        // stop (the scope would not end otherwise).
        let many: Vec<_> = paths
            .iter()
            .cycle()
            .take(READ_AHEAD * 3)
            .map(|p| (p.as_path(), None))
            .collect();
        std::thread::scope(|scope| {
            let mut reads =
                read_in_order::<super::super::formats::Qwen>(scope, many, Some(&store), &prices, 2);
            assert!(reads.next().is_some());
            std::thread::sleep(Duration::from_millis(50)); // the readers reach the bound
        });
        assert_eq!(one.len(), 23);
        assert_eq!(one, three);
        assert_eq!(
            one[22].2.input_tokens,
            (1..=23).map(|k| 100 * k).sum::<u64>()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
