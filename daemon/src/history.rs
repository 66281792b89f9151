//! Transcript history that outlives the agents' own cleanup: a compressed copy (zstd) of every
//! conversation file agentd follows, kept in `<state>/history/` (the state dir is `0700`, the
//! copies `0600`; they are the user's own data and never leave the machine).
//!
//! The followers only say "this file has data up to offset N" (or "it was rewritten"): this
//! module's own thread reads the new bytes from the file and appends them to the copy as a new
//! zstd frame (a zstd stream may be several frames back to back), so copying never slows
//! ingestion, holds no file content in memory, and never re-copies a whole file on an append.
//! A copy's decompressed length is how far it goes; after a crash, what is missing is read
//! again, and a copy that cannot be read (cut off mid-frame) is made again from the file.
//!
//! What the followers say is merged per file into one table the copier empties, never queued:
//! however far the copier falls behind, no file is skipped, and the table holds at most one
//! entry per followed file. Copying waits until the first scans are done (see
//! [`History::copy_once`]): a backfill's CPU goes to making the agents queryable, and the
//! copies follow at the lowest priority.
//!
//! The copies are bounded by `history.max_mb` (2048): past it the least recently written go
//! first. `history.keep = false` deletes them and keeps none. When an agent deletes a
//! transcript, `GET /v1/agents/{id}/log` reads the copy.

use sha2::Digest;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

/// Bytes read from a file per frame: bounded memory however large the file.
const CHUNK: usize = 4 * 1024 * 1024;
/// zstd level: fast, and still several times smaller than JSON lines.
const LEVEL: i32 = 3;

/// Config `[history]`.
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    pub dir: PathBuf,
    /// Keep copies at all (`history.keep`, default true).
    pub keep: bool,
    /// Bound on the copies' total size (`history.max_mb`, default 2048).
    pub max_bytes: u64,
}

/// What is to be copied of one file, merged from what the followers said since the copier
/// last looked.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Wanted {
    /// The file was rewritten or truncated: its copy starts over.
    reset: bool,
    /// The file has data up to here.
    offset: u64,
}

/// Whether the copier may start: set once by the daemon (see [`History::copy_once`]).
type Ready = Box<dyn Fn() -> bool + Send + Sync>;

/// What the followers and the copier share.
#[derive(Default)]
struct Shared {
    wanted: Mutex<HashMap<PathBuf, Wanted>>,
    /// Signalled when `wanted` gains an entry.
    more: Condvar,
    ready: OnceLock<Ready>,
}

/// Files copied in one round from which the round counts as a backfill (or a burst): its
/// buffers are let go of and the memory it freed handed back to the system.
const LARGE_ROUND: usize = 64;
/// Buffer capacity kept between small rounds (an append's bytes fit; a large file's chunks
/// are let go of).
const SMALL_BUFFERS: usize = 1 << 20;

/// How often the copier looks again whether it may start, while the first scans run.
const READY_POLL: Duration = Duration::from_millis(100);

/// The followers' handle: cheap to clone; a no-op when history is off.
#[derive(Clone, Default)]
pub struct History {
    shared: Option<Arc<Shared>>,
    /// Where the copies are, when history is on.
    dir: Option<PathBuf>,
}

/// Where the copy of `file` lives.
pub fn copy_path(dir: &Path, file: &Path) -> PathBuf {
    let hash: String = sha2::Sha256::digest(file.as_os_str().as_encoded_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    dir.join(format!("{hash}.zst"))
}

/// The key of a copy in [`Copier::copied`]: the first 8 bytes of its name's hash (a collision
/// among a user's files is vanishingly unlikely, and would only make a copy be read again).
fn copy_key(copy: &Path) -> Option<u64> {
    let hex = copy.file_stem()?.to_str()?.get(..16)?;
    u64::from_str_radix(hex, 16).ok()
}

impl History {
    /// Starts the copier (or, with `keep = false`, deletes the copies and keeps none). It makes
    /// no copy before [`History::copy_once`] says so.
    pub fn start(config: HistoryConfig) -> History {
        if !config.keep {
            if config.dir.exists() {
                match std::fs::remove_dir_all(&config.dir) {
                    Ok(()) => tracing::info!("history.keep = false: deleted the transcript copies"),
                    Err(e) => tracing::warn!("cannot delete {}: {e}", config.dir.display()),
                }
            }
            return History::default();
        }
        if let Err(e) = crate::listen::private_dir(&config.dir) {
            tracing::warn!("no transcript history: {e}");
            return History::default();
        }
        let shared = Arc::new(Shared::default());
        let dir = config.dir.clone();
        let copier_shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("agentd-history".into())
            .spawn(crate::supervised("history copier", move || {
                // Copying is never urgent: it takes only CPU time nothing else wants.
                // SAFETY: setpriority on this thread's own id (Linux: per-thread nice).
                unsafe {
                    let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                    libc::setpriority(libc::PRIO_PROCESS, tid, 19);
                }
                Copier::new(config).run(&copier_shared)
            }));
        match spawned {
            Ok(_) => History {
                shared: Some(shared),
                dir: Some(dir),
            },
            Err(e) => {
                tracing::warn!("no transcript history: {e}");
                History::default()
            }
        }
    }

    /// Lets the copier start once `ready` holds (the daemon: once every source has done its
    /// first scan). Only the first call counts.
    pub fn copy_once(&self, ready: impl Fn() -> bool + Send + Sync + 'static) {
        if let Some(shared) = &self.shared {
            let _ = shared.ready.set(Box::new(ready));
        }
    }

    /// The copy of `file`, if there is one.
    pub fn copy_of(&self, file: &Path) -> Option<PathBuf> {
        let copy = copy_path(self.dir.as_ref()?, file);
        copy.exists().then_some(copy)
    }

    /// `file` now has data up to `offset`.
    pub fn grew(&self, file: &Path, offset: u64) {
        self.want(file, |w| w.offset = w.offset.max(offset));
    }

    /// `file` was rewritten: its copy starts over.
    pub fn reset(&self, file: &Path) {
        self.want(file, |w| {
            *w = Wanted {
                reset: true,
                offset: 0,
            }
        });
    }

    fn want(&self, file: &Path, merge: impl FnOnce(&mut Wanted)) {
        let Some(shared) = &self.shared else { return };
        let mut wanted = shared.wanted.lock().unwrap_or_else(|e| e.into_inner());
        match wanted.get_mut(file) {
            Some(w) => merge(w),
            None => {
                let mut w = Wanted::default();
                merge(&mut w);
                wanted.insert(file.to_owned(), w);
                shared.more.notify_one();
            }
        }
    }
}

struct Copier {
    config: HistoryConfig,
    /// One compression context for every frame (not one made per frame).
    compressor: zstd::bulk::Compressor<'static>,
    /// What is read of a file, and its frame: kept across the files of a round and across
    /// small rounds, let go of after a large one (see [`LARGE_ROUND`]).
    read: Vec<u8>,
    frame: Vec<u8>,
    /// How far each copy goes (its decompressed length), once known.
    /// Keyed by [`copy_key`], not by path: it holds an entry for every file copied since
    /// start, so 16 bytes each rather than a path.
    copied: HashMap<u64, u64>,
    /// The copies' total size on disk.
    total: u64,
}

impl Copier {
    fn new(config: HistoryConfig) -> Copier {
        let total = std::fs::read_dir(&config.dir)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        Copier {
            config,
            compressor: zstd::bulk::Compressor::new(LEVEL).expect("zstd level 3 is valid"),
            read: Vec::new(),
            frame: Vec::new(),
            copied: HashMap::new(),
            total,
        }
    }

    fn run(mut self, shared: &Shared) {
        while !shared.ready.get().is_some_and(|ready| ready()) {
            std::thread::sleep(READY_POLL);
        }
        loop {
            let wanted = {
                let mut wanted = shared.wanted.lock().unwrap_or_else(|e| e.into_inner());
                while wanted.is_empty() {
                    wanted = shared.more.wait(wanted).unwrap_or_else(|e| e.into_inner());
                }
                std::mem::take(&mut *wanted)
            };
            let files = wanted.len();
            for (path, want) in wanted {
                if want.reset {
                    self.forget(&path);
                }
                if let Err(e) = self.copy_up_to(&path, want.offset) {
                    tracing::warn!("cannot keep a copy of {}: {e}", path.display());
                }
            }
            self.evict();
            if files >= LARGE_ROUND || self.read.capacity() > SMALL_BUFFERS {
                self.read = Vec::new();
                self.frame = Vec::new();
            }
            if files >= LARGE_ROUND {
                // A backfill's round: what it freed goes back to the system. Not after every
                // append: trimming takes the allocator's locks, which the followers wait on.
                crate::store::writer::release_free_memory();
            }
        }
    }

    /// Deletes the copy of `file` (it starts over).
    fn forget(&mut self, file: &Path) {
        let copy = copy_path(&self.config.dir, file);
        if let Ok(m) = std::fs::metadata(&copy) {
            self.total = self.total.saturating_sub(m.len());
        }
        let _ = std::fs::remove_file(&copy);
        self.note_copied(&copy, 0);
    }

    /// Notes that `copy` goes as far as `length` of its file.
    fn note_copied(&mut self, copy: &Path, length: u64) {
        if let Some(key) = copy_key(copy) {
            self.copied.insert(key, length);
        }
    }

    /// How far `copy` goes: its decompressed length (read once per run), or `None` when it
    /// cannot be read whole (then it is made again).
    fn known_length(&mut self, copy: &Path) -> Option<u64> {
        if let Some(n) = copy_key(copy).and_then(|key| self.copied.get(&key)) {
            return Some(*n);
        }
        let n = match std::fs::File::open(copy) {
            Err(_) => Some(0),
            Ok(f) => zstd::stream::read::Decoder::new(f)
                .ok()
                .and_then(|mut d| std::io::copy(&mut d, &mut std::io::sink()).ok()),
        }?;
        self.note_copied(copy, n);
        Some(n)
    }

    /// Appends the bytes of `file` from where its copy ends up to `offset`.
    fn copy_up_to(&mut self, file: &Path, offset: u64) -> std::io::Result<()> {
        let copy = copy_path(&self.config.dir, file);
        let from = match self.known_length(&copy) {
            Some(n) => n,
            None => {
                self.forget(file);
                0
            }
        };
        if offset <= from {
            return Ok(());
        }
        let (mut src, meta) = crate::fsread::open(file, crate::fsread::Trust::Found)?;
        if meta.len() < offset {
            return Ok(()); // rewritten meanwhile: its reset notice is on the way
        }
        src.seek(SeekFrom::Start(from))?;
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&copy)?;
        let before = out.metadata()?.len();
        let mut left = offset - from;
        while left > 0 {
            let want = left.min(CHUNK as u64) as usize;
            self.read.resize(want, 0);
            src.read_exact(&mut self.read)?;
            // One frame per chunk: a copy is a sequence of complete frames, each written
            // whole, so a crash can only cut off the last one.
            self.frame.clear();
            self.frame.reserve(zstd::zstd_safe::compress_bound(want));
            self.compressor
                .compress_to_buffer(&self.read[..], &mut self.frame)?;
            out.write_all(&self.frame)?;
            left -= want as u64;
        }
        out.flush()?;
        self.total += out.metadata()?.len().saturating_sub(before);
        self.note_copied(&copy, offset);
        Ok(())
    }

    /// Deletes the least recently written copies while the total is over the bound.
    fn evict(&mut self) {
        if self.total <= self.config.max_bytes {
            return;
        }
        let mut copies: Vec<(std::time::SystemTime, u64, PathBuf)> =
            std::fs::read_dir(&self.config.dir)
                .map(|d| {
                    d.flatten()
                        .filter_map(|e| {
                            let m = e.metadata().ok()?;
                            Some((m.modified().ok()?, m.len(), e.path()))
                        })
                        .collect()
                })
                .unwrap_or_default();
        copies.sort();
        self.total = copies.iter().map(|(_, n, _)| n).sum();
        for (_, len, path) in copies {
            if self.total <= self.config.max_bytes {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                self.total = self.total.saturating_sub(len);
                // Its file's copy starts over if the file changes again.
                if let Some(key) = copy_key(&path) {
                    self.copied.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_grow_by_frames_and_read_back_whole() {
        let dir = std::env::temp_dir().join(format!("agentd-history-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t.jsonl");
        std::fs::write(&file, "one\ntwo\n").unwrap();
        let mut c = Copier::new(HistoryConfig {
            dir: dir.join("h"),
            keep: true,
            max_bytes: 1 << 30,
        });
        std::fs::create_dir_all(dir.join("h")).unwrap();
        c.copy_up_to(&file, 8).unwrap();
        std::fs::write(&file, "one\ntwo\nthree\n").unwrap();
        c.copy_up_to(&file, 14).unwrap();
        c.copy_up_to(&file, 14).unwrap(); // nothing new: nothing appended
        let copy = std::fs::read(copy_path(&dir.join("h"), &file)).unwrap();
        assert_eq!(
            zstd::decode_all(copy.as_slice()).unwrap(),
            b"one\ntwo\nthree\n"
        );
        // A new run of the copier finds how far the copy goes.
        let mut again = Copier::new(c.config.clone());
        assert_eq!(
            again.known_length(&copy_path(&dir.join("h"), &file)),
            Some(14)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn what_is_said_of_a_file_merges_and_a_rewrite_starts_over() {
        let h = History {
            shared: Some(Arc::new(Shared::default())),
            dir: None,
        };
        let f = Path::new("/x/a.jsonl");
        let wanted = |h: &History| h.shared.as_ref().unwrap().wanted.lock().unwrap()[f];
        h.grew(f, 10);
        h.grew(f, 30);
        h.grew(f, 20);
        assert_eq!(
            wanted(&h),
            Wanted {
                reset: false,
                offset: 30
            }
        );
        h.reset(f);
        h.grew(f, 5);
        assert_eq!(
            wanted(&h),
            Wanted {
                reset: true,
                offset: 5
            }
        );
    }

    /// More files than any queue would hold, told while the copier is held back: every one
    /// gets its copy once it may start.
    #[test]
    fn a_copier_held_back_misses_no_file() {
        const N: usize = 5_000;
        let dir = std::env::temp_dir().join(format!("agentd-history-many-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("files")).unwrap();
        let h = History::start(HistoryConfig {
            dir: dir.join("h"),
            keep: true,
            max_bytes: 1 << 30,
        });
        for i in 0..N {
            let file = dir.join("files").join(format!("{i}.jsonl"));
            std::fs::write(&file, format!("line {i}\n")).unwrap();
            h.grew(&file, std::fs::metadata(&file).unwrap().len());
        }
        std::thread::sleep(2 * READY_POLL);
        let count = || std::fs::read_dir(dir.join("h")).unwrap().count();
        assert_eq!(count(), 0, "no copy before the copier may start");
        h.copy_once(|| true);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while count() < N && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(count(), N);
        let last = dir.join("files").join(format!("{}.jsonl", N - 1));
        let copy = std::fs::read(h.copy_of(&last).unwrap()).unwrap();
        assert_eq!(zstd::decode_all(copy.as_slice()).unwrap(), b"line 4999\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
