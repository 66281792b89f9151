//! Transcript history that outlives the agents' own cleanup: a compressed copy (zstd) of every
//! conversation file agentd follows, kept in `<state>/history/` (the state dir is `0700`, the
//! copies `0600`; they are the user's own data and never leave the machine).
//!
//! The followers only say "this file has data up to offset N" (or "it was rewritten"): this
//! module's own thread reads the new bytes from the file and appends them to the copy as a new
//! zstd frame (a zstd stream may be several frames back to back), so copying never slows
//! ingestion, holds no file content in a queue, and never re-copies a whole file on an append.
//! A copy's decompressed length is how far it goes; after a crash, what is missing is read
//! again, and a copy that cannot be read (cut off mid-frame) is made again from the file.
//!
//! The copies are bounded by `history.max_mb` (2048): past it the least recently written go
//! first. `history.keep = false` deletes them and keeps none. When an agent deletes a
//! transcript, `GET /v1/agents/{id}/log` reads the copy.

use sha2::Digest;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

/// Notices queued for the copier; past this a notice is dropped, which loses nothing: the next
/// notice for the file (or the next start) copies everything up to it.
const QUEUE: usize = 4096;
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

enum Notice {
    /// The file has data up to this offset.
    Grew(PathBuf, u64),
    /// The file was rewritten or truncated: its copy starts over.
    Reset(PathBuf),
}

/// The followers' handle: cheap to clone; a no-op when history is off.
#[derive(Clone, Default)]
pub struct History {
    tx: Option<SyncSender<Notice>>,
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

impl History {
    /// Starts the copier (or, with `keep = false`, deletes the copies and keeps none).
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
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let dir = config.dir.clone();
        let spawned = std::thread::Builder::new()
            .name("agentd-history".into())
            .spawn(crate::supervised("history copier", move || {
                // Copying is never urgent: it takes only CPU time nothing else wants.
                // SAFETY: setpriority on this thread's own id (Linux: per-thread nice).
                unsafe {
                    let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                    libc::setpriority(libc::PRIO_PROCESS, tid, 19);
                }
                Copier::new(config).run(rx)
            }));
        match spawned {
            Ok(_) => History {
                tx: Some(tx),
                dir: Some(dir),
            },
            Err(e) => {
                tracing::warn!("no transcript history: {e}");
                History::default()
            }
        }
    }

    /// The copy of `file`, if there is one.
    pub fn copy_of(&self, file: &Path) -> Option<PathBuf> {
        let copy = copy_path(self.dir.as_ref()?, file);
        copy.exists().then_some(copy)
    }

    /// `file` now has data up to `offset`.
    pub fn grew(&self, file: &Path, offset: u64) {
        self.send(Notice::Grew(file.to_owned(), offset));
    }

    /// `file` was rewritten: its copy starts over.
    pub fn reset(&self, file: &Path) {
        self.send(Notice::Reset(file.to_owned()));
    }

    fn send(&self, notice: Notice) {
        if let Some(tx) = &self.tx
            && let Err(TrySendError::Full(_)) = tx.try_send(notice)
        {
            tracing::debug!("history queue full; the next notice catches up");
        }
    }
}

struct Copier {
    config: HistoryConfig,
    /// How far each copy goes (its decompressed length), once known.
    copied: HashMap<PathBuf, u64>,
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
            copied: HashMap::new(),
            total,
        }
    }

    fn run(mut self, rx: Receiver<Notice>) {
        while let Ok(first) = rx.recv() {
            // Coalesce what is queued: the latest offset per file is all that matters.
            let mut grown: HashMap<PathBuf, u64> = HashMap::new();
            let mut next = Some(first);
            while let Some(n) = next {
                match n {
                    Notice::Grew(p, o) => {
                        let e = grown.entry(p).or_insert(0);
                        *e = (*e).max(o);
                    }
                    Notice::Reset(p) => {
                        grown.remove(&p);
                        self.forget(&p);
                    }
                }
                next = rx.try_recv().ok();
            }
            for (path, offset) in grown {
                if let Err(e) = self.copy_up_to(&path, offset) {
                    tracing::warn!("cannot keep a copy of {}: {e}", path.display());
                }
            }
            self.evict();
        }
    }

    /// Deletes the copy of `file` (it starts over).
    fn forget(&mut self, file: &Path) {
        let copy = copy_path(&self.config.dir, file);
        if let Ok(m) = std::fs::metadata(&copy) {
            self.total = self.total.saturating_sub(m.len());
        }
        let _ = std::fs::remove_file(&copy);
        self.copied.insert(file.to_owned(), 0);
    }

    /// How far the copy of `file` goes: its decompressed length (read once per run), or `None`
    /// when it cannot be read whole (then it is made again).
    fn known_length(&mut self, file: &Path) -> Option<u64> {
        if let Some(n) = self.copied.get(file) {
            return Some(*n);
        }
        let copy = copy_path(&self.config.dir, file);
        let n = match std::fs::File::open(&copy) {
            Err(_) => Some(0),
            Ok(f) => zstd::stream::read::Decoder::new(f)
                .ok()
                .and_then(|mut d| std::io::copy(&mut d, &mut std::io::sink()).ok()),
        }?;
        self.copied.insert(file.to_owned(), n);
        Some(n)
    }

    /// Appends the bytes of `file` from where its copy ends up to `offset`.
    fn copy_up_to(&mut self, file: &Path, offset: u64) -> std::io::Result<()> {
        let from = match self.known_length(file) {
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
        let copy = copy_path(&self.config.dir, file);
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&copy)?;
        let before = out.metadata()?.len();
        let mut left = offset - from;
        let mut buf = vec![0u8; CHUNK.min(left as usize)];
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            src.read_exact(&mut buf[..want])?;
            // One frame per chunk: a copy is a sequence of complete frames, each written
            // whole, so a crash can only cut off the last one.
            out.write_all(&zstd::bulk::compress(&buf[..want], LEVEL)?)?;
            left -= want as u64;
        }
        out.flush()?;
        self.total += out.metadata()?.len().saturating_sub(before);
        self.copied.insert(file.to_owned(), offset);
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
                self.copied
                    .retain(|f, _| copy_path(&self.config.dir, f) != path);
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
        assert_eq!(again.known_length(&file), Some(14));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
