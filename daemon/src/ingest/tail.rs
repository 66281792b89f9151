//! Incremental reading of append-only line files.
//!
//! A [`FileCursor`] remembers which file (device and inode) was read and how far, counting only
//! complete lines: a half-written last line is left for the next read, and the saved offset is
//! always the end of a whole line (or, inside a line longer than the limit, a position marked
//! `skipping`). A line may span any number of reads: its bytes are carried until its newline,
//! and the offset moves past all of them at once.
//!
//! A file that was replaced (new inode), truncated (shorter than the cursor) or rewritten in
//! place is read again from the start, and the caller is told so that it resets its fold. A
//! rewrite is told from an append by the file's first bytes, by the bytes just before the saved
//! offset (every Claude Code transcript of a project starts alike, so the first bytes alone
//! are not enough), and, for a file exactly as long as the cursor, by its modification time. A
//! line longer than the limit is dropped without ever being held in memory whole, and reading
//! resumes at the next newline.
//!
//! Files are opened through [`crate::fsread`]: read-only, non-blocking, regular files only;
//! agentd never writes into a file it tails.

use crate::fsread::{self, Trust};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

/// Read granularity. Large enough to amortise syscalls, small enough to keep per-file memory low.
const CHUNK: usize = 64 * 1024;

/// How many bytes identify a file's content at its start and just before the cursor.
const PROBE: usize = 64;

/// Where reading of one file stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCursor {
    pub dev: u64,
    pub ino: u64,
    /// Bytes consumed: everything before this is folded (or deliberately skipped). Always the
    /// end of a complete line, unless `skipping`.
    pub offset: u64,
    /// Inside an oversized line: discard up to and including the next newline.
    pub skipping: bool,
    /// How many of the file's first bytes `head_hash` covers (up to 64, never past `offset`).
    pub head_len: u8,
    /// FNV-1a of those bytes: if they change, the file was rewritten, not appended to.
    pub head_hash: u64,
    /// FNV-1a of the (up to 64) bytes just before `offset`: an append leaves them alone, a
    /// rewrite that kept the first bytes almost never does.
    pub tail_hash: u64,
    /// The file's modification time (epoch ns) when `offset` was its whole length, else 0: a
    /// file of the same length with another time was rewritten in place.
    pub mtime_ns: i64,
}

/// FNV-1a, 64-bit: tiny and good enough to tell two byte ranges apart.
fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_more(FNV1A_START, bytes)
}

/// Where an FNV-1a hash starts.
pub(crate) const FNV1A_START: u64 = 0xcbf2_9ce4_8422_2325;

/// An FNV-1a hash `h` of what came before, continued over `bytes` (stable across builds and
/// versions, unlike std's hasher: it is committed).
pub(crate) fn fnv1a_more(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The hash of `len` bytes of `file` at `at`, if it has them.
fn hash_at(file: &File, at: u64, len: usize) -> Option<u64> {
    let mut buf = [0u8; PROBE];
    let buf = &mut buf[..len];
    file.read_exact_at(buf, at).ok()?;
    Some(fnv1a(buf))
}

/// How many bytes before `offset` the tail hash covers.
fn tail_len(offset: u64) -> usize {
    offset.min(PROBE as u64) as usize
}

fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

/// A file opened for tailing, and whether its cursor had to start over.
pub struct Opened {
    file: File,
    /// The file is not the one the cursor describes, or it shrank: read from the start.
    pub reset: bool,
    /// Its length when opened.
    pub len: u64,
    /// Its modification time, epoch ms.
    pub mtime_ms: i64,
    /// The same in nanoseconds, recorded in the cursor when the read ends where the file ended
    /// when opened (see [`Opened::remember`]).
    mtime_ns: i64,
}

/// What one read found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadOutcome {
    pub lines: u64,
    /// Lines dropped for exceeding the limit.
    pub oversized: u64,
}

impl FileCursor {
    /// Whether a file with metadata `meta` is exactly as far as this cursor: same file, same
    /// length, same modification time (when known). The scan's fast path: no open, no read.
    pub fn is_current(&self, meta: &std::fs::Metadata) -> bool {
        meta.ino() == self.ino
            && meta.dev() == self.dev
            && meta.len() == self.offset
            // Unknown (the file grew while it was read): look inside rather than assume.
            && self.mtime_ns != 0
            && self.mtime_ns == mtime_ns(meta)
    }
}

impl Opened {
    /// Opens `path` (a file found in a watched dir, see [`Trust::Found`]) and checks it against
    /// the cursor, which it resets when the file is not the one it describes.
    pub fn open(path: &Path, cursor: &mut FileCursor) -> io::Result<Opened> {
        let (file, meta) = fsread::open(path, Trust::Found)?;
        let same = meta.dev() == cursor.dev && meta.ino() == cursor.ino;
        let rewritten = same
            && cursor.offset > 0
            && meta.len() >= cursor.offset
            && ((cursor.head_len > 0
                && hash_at(&file, 0, usize::from(cursor.head_len)) != Some(cursor.head_hash))
                || hash_at(
                    &file,
                    cursor.offset - tail_len(cursor.offset) as u64,
                    tail_len(cursor.offset),
                ) != Some(cursor.tail_hash)
                || (meta.len() == cursor.offset
                    && cursor.mtime_ns != 0
                    && cursor.mtime_ns != mtime_ns(&meta)));
        let reset = !same || rewritten || meta.len() < cursor.offset;
        if reset {
            *cursor = FileCursor {
                dev: meta.dev(),
                ino: meta.ino(),
                ..FileCursor::default()
            };
        }
        let mtime_ms = meta.mtime() * 1000 + meta.mtime_nsec() / 1_000_000;
        Ok(Opened {
            file,
            reset,
            len: meta.len(),
            mtime_ms,
            mtime_ns: mtime_ns(&meta),
        })
    }

    /// Reads complete lines after the cursor, calling `on_line` for each (without the newline),
    /// and advances the cursor past them.
    pub fn read_lines(
        mut self,
        cursor: &mut FileCursor,
        max_line: usize,
        on_line: &mut dyn FnMut(&[u8]),
    ) -> io::Result<ReadOutcome> {
        let start = cursor.offset;
        self.file.seek(SeekFrom::Start(start))?;
        let mut out = ReadOutcome::default();
        let mut lines = LineSplitter::new(max_line, cursor.skipping);
        let mut read = 0u64;
        // The bytes the cursor's hashes cover, kept as they pass: the file's first ones (when
        // reading from its start) and the last ones read. Hashing them here saves reading them
        // again once the lines are taken (two system calls per file).
        let mut seen = Seen::new();
        let mut chunk = CHUNK_BUF.with(|b| b.take());
        chunk.resize(CHUNK, 0);
        let result = loop {
            let n = match self.file.read(&mut chunk) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            };
            seen.pass(start + read, &chunk[..n]);
            lines.feed(&chunk[..n], on_line, &mut out);
            read += n as u64;
            // Past every complete line; a line still without its newline is read again next
            // time (its bytes are not kept across reads of the file).
            cursor.offset = start + read - lines.pending.len() as u64;
            cursor.skipping = lines.skipping;
            if n < chunk.len() {
                // A short read of a regular file is its end: asking again only to be told so
                // was a system call per file. What is appended after it comes with its own
                // change event.
                break Ok(());
            }
        };
        // Kept for this thread's next file: zeroing a fresh 64 KiB buffer for each file cost
        // more than reading a small one.
        CHUNK_BUF.with(|b| b.replace(chunk));
        result?;
        // `pending` is normally a half-written line, left for next time. A complete JSON object
        // cannot be the prefix of a longer valid line, so one without its newline (a writer that
        // ended with `print!`) is taken now; a newline arriving later is just an empty line.
        if !lines.skipping && is_complete_object(&lines.pending) {
            deliver(&lines.pending, on_line, &mut out);
            cursor.offset = start + read;
        }
        self.remember(cursor, &seen);
        Ok(out)
    }

    /// Reads the whole file (a small file rewritten whole on each change), refusing one over
    /// `max` bytes: a size bound, whatever the file claims to be.
    pub fn read_whole(mut self, max: u64) -> io::Result<Vec<u8>> {
        let too_big = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("larger than {} KiB; not read", max / 1024),
            )
        };
        if self.len > max {
            return Err(too_big());
        }
        self.file.seek(SeekFrom::Start(0))?;
        let mut bytes = Vec::with_capacity(self.len as usize);
        (&mut self.file).take(max + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > max {
            return Err(too_big());
        }
        Ok(bytes)
    }

    /// Records what identifies the content read so far: its first bytes, the bytes just before
    /// the cursor, and the modification time if the cursor is at the end of the file. What
    /// `seen` kept of the read is used; the rest is read from the file.
    fn remember(&self, cursor: &mut FileCursor, seen: &Seen) {
        if usize::from(cursor.head_len) < PROBE && cursor.offset > u64::from(cursor.head_len) {
            let len = cursor.offset.min(PROBE as u64) as usize;
            let hash = match seen.bytes(0, len) {
                Some(bytes) => Some(fnv1a(bytes)),
                None => hash_at(&self.file, 0, len),
            };
            if let Some(h) = hash {
                cursor.head_len = len as u8;
                cursor.head_hash = h;
            }
        }
        let len = tail_len(cursor.offset);
        let at = cursor.offset - len as u64;
        cursor.tail_hash = match seen.bytes(at, len) {
            Some(bytes) => fnv1a(bytes),
            None => hash_at(&self.file, at, len).unwrap_or(0),
        };
        // The time the file had when opened, if the read ended where the file did then (not
        // asked again: a file rewritten in place since then has a newer time, and is read
        // again from the start on the next look, which is what a stale time costs).
        cursor.mtime_ns = if self.len == cursor.offset {
            self.mtime_ns
        } else {
            0 // still being written: the next read records it
        };
    }
}

thread_local! {
    /// Each thread's read buffer, [`CHUNK`] bytes once grown (see [`Opened::read_lines`]).
    static CHUNK_BUF: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// What one read passed of the bytes a cursor's hashes cover: the file's first [`PROBE`]
/// bytes, when the read began at its start, and the last `PROBE` bytes read.
struct Seen {
    head: [u8; PROBE],
    head_len: usize,
    /// The last bytes read, `recent_len` of them ending at `recent_end` (a file offset).
    recent: [u8; PROBE],
    recent_len: usize,
    recent_end: u64,
}

impl Seen {
    fn new() -> Seen {
        Seen {
            head: [0; PROBE],
            head_len: 0,
            recent: [0; PROBE],
            recent_len: 0,
            recent_end: 0,
        }
    }

    /// Notes `bytes`, read at file offset `at` right after the ones noted before.
    fn pass(&mut self, at: u64, bytes: &[u8]) {
        if at == self.head_len as u64 && self.head_len < PROBE {
            let take = bytes.len().min(PROBE - self.head_len);
            self.head[self.head_len..self.head_len + take].copy_from_slice(&bytes[..take]);
            self.head_len += take;
        }
        if bytes.len() >= PROBE {
            self.recent.copy_from_slice(&bytes[bytes.len() - PROBE..]);
            self.recent_len = PROBE;
        } else {
            // Keep the newest `PROBE` of what was there and what came.
            let keep = self.recent_len.min(PROBE - bytes.len());
            self.recent
                .copy_within(self.recent_len - keep..self.recent_len, 0);
            self.recent[keep..keep + bytes.len()].copy_from_slice(bytes);
            self.recent_len = keep + bytes.len();
        }
        self.recent_end = at + bytes.len() as u64;
    }

    /// The `len` bytes at file offset `at`, if they passed.
    fn bytes(&self, at: u64, len: usize) -> Option<&[u8]> {
        let end = at + len as u64;
        if end <= self.head_len as u64 {
            return Some(&self.head[at as usize..end as usize]);
        }
        let recent_start = self.recent_end - self.recent_len as u64;
        (end == self.recent_end && at >= recent_start)
            .then(|| &self.recent[(at - recent_start) as usize..self.recent_len])
    }
}

/// Calls `on_line` with each line of a zstd-compressed line file (a Codex `.jsonl.zst`
/// rollout), decompressing as it goes: memory holds one line, never the whole file. Lines
/// longer than `max_line` are skipped and counted; the answer is how many.
pub fn zstd_lines(
    compressed: &[u8],
    max_line: usize,
    on_line: &mut dyn FnMut(&[u8]),
) -> io::Result<u64> {
    let mut decoder = zstd::stream::read::Decoder::new(compressed)?;
    let mut chunk = vec![0u8; CHUNK];
    let mut lines = LineSplitter::new(max_line, false);
    let mut out = ReadOutcome::default();
    loop {
        let n = match decoder.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        lines.feed(&chunk[..n], on_line, &mut out);
    }
    // The file is whole: a last line without its newline is still a line.
    if !lines.skipping && !lines.pending.is_empty() {
        deliver(&lines.pending, on_line, &mut out);
    }
    Ok(out.oversized)
}

/// Lines that could not be taken during one read, for `/v1/health`.
#[derive(Debug, Default)]
pub struct Skipped {
    pub count: u64,
    /// What the last one was, naming the file.
    pub last: Option<String>,
}

impl Opened {
    /// Reads the new complete lines of `path` after `cursor` into `take`, which refuses a line
    /// by returning why. Refused, oversized and unreadable parts are counted and described, and
    /// the last description is logged.
    pub fn read_counted(
        self,
        path: &Path,
        cursor: &mut FileCursor,
        max_line: usize,
        take: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Skipped {
        let mut skipped = Skipped::default();
        let read = self.read_lines(cursor, max_line, &mut |line| {
            if let Err(e) = take(line) {
                skipped.count += 1;
                skipped.last = Some(format!("{}: skipped a malformed line: {e}", path.display()));
            }
        });
        match read {
            Ok(out) if out.oversized > 0 => {
                skipped.count += out.oversized;
                skipped.last = Some(format!(
                    "{}: skipped {} line(s) longer than {} MiB",
                    path.display(),
                    out.oversized,
                    max_line >> 20
                ));
            }
            Ok(_) => {}
            Err(e) => {
                skipped.count += 1;
                skipped.last = Some(format!("cannot read {}: {e}", path.display()));
            }
        }
        if let Some(msg) = &skipped.last {
            tracing::warn!("{msg}");
        }
        skipped
    }
}

/// Cuts a byte stream into lines wherever its reads fall: a line is delivered once its newline
/// comes, and one longer than `max_line` is dropped (and counted) as soon as it is known to be,
/// so memory never holds more than `max_line` bytes of it.
struct LineSplitter {
    max_line: usize,
    /// The start of a line whose newline has not come yet.
    pending: Vec<u8>,
    /// Inside a line over the cap: bytes are dropped up to its newline.
    skipping: bool,
}

impl LineSplitter {
    fn new(max_line: usize, skipping: bool) -> LineSplitter {
        LineSplitter {
            max_line,
            pending: Vec::new(),
            skipping,
        }
    }

    fn feed(&mut self, mut bytes: &[u8], on_line: &mut dyn FnMut(&[u8]), out: &mut ReadOutcome) {
        while let Some(nl) = memchr::memchr(b'\n', bytes) {
            let head = &bytes[..nl];
            if self.skipping {
                self.skipping = false;
            } else if self.pending.len() + head.len() > self.max_line {
                // Over the cap wherever the reads fell: the same lines are dropped from any
                // starting point.
                out.oversized += 1;
            } else if self.pending.is_empty() {
                deliver(head, on_line, out);
            } else {
                self.pending.extend_from_slice(head);
                deliver(&self.pending, on_line, out);
            }
            self.pending.clear();
            bytes = &bytes[nl + 1..];
        }
        if !self.skipping {
            self.pending.extend_from_slice(bytes);
            if self.pending.len() > self.max_line {
                self.pending.clear();
                self.skipping = true;
                out.oversized += 1;
            }
        }
    }
}

fn is_complete_object(bytes: &[u8]) -> bool {
    let trimmed = bytes.trim_ascii();
    trimmed.first() == Some(&b'{')
        && trimmed.last() == Some(&b'}')
        && serde_json::from_slice::<serde::de::IgnoredAny>(trimmed).is_ok()
}

fn deliver(line: &[u8], on_line: &mut dyn FnMut(&[u8]), out: &mut ReadOutcome) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    out.lines += 1;
    on_line(line);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A scratch dir holding `f.jsonl`, removed when dropped.
    struct Scratch(std::path::PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn scratch(name: &str) -> (Scratch, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("agentd-tail-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f.jsonl");
        (Scratch(dir), file)
    }

    fn read(path: &Path, cursor: &mut FileCursor, max: usize) -> (bool, Vec<String>, ReadOutcome) {
        let opened = Opened::open(path, cursor).unwrap();
        let reset = opened.reset;
        let mut lines = Vec::new();
        let out = opened
            .read_lines(cursor, max, &mut |l| {
                lines.push(String::from_utf8_lossy(l).into_owned())
            })
            .unwrap();
        (reset, lines, out)
    }

    fn append(path: &Path, data: &[u8]) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(data)
            .unwrap();
    }

    /// The hashes a read records from the bytes passing through it are the ones read back from
    /// the file, whatever the sizes of the appends (around the probe and the read size), the
    /// half-written lines and the long ones.
    #[test]
    fn the_hashes_taken_while_reading_equal_the_files_bytes() {
        let (_dir, path) = scratch("seen");
        let sizes = [
            1,
            3,
            30,
            62,
            63,
            64,
            65,
            100,
            4000,
            CHUNK - 1,
            CHUNK,
            CHUNK + 5,
            200_000,
        ];
        let mut cursor = FileCursor::default();
        let mut content = Vec::new();
        for (i, &len) in sizes.iter().enumerate() {
            // A whole line of `len` bytes, then (every other time) the start of the next.
            let mut append = vec![b'a' + (i % 26) as u8; len];
            append.push(b'\n');
            if i % 2 == 0 {
                append.extend_from_slice(b"half");
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap()
                .write_all(&append)
                .unwrap();
            content.extend_from_slice(&append);
            let (reset, _, _) = read(&path, &mut cursor, usize::MAX);
            // The first read finds a file the cursor did not know; every later one an append.
            assert_eq!(reset, i == 0, "append {i}");
            let offset = cursor.offset as usize;
            let head = offset.min(PROBE);
            assert_eq!(usize::from(cursor.head_len), head);
            assert_eq!(
                cursor.head_hash,
                fnv1a(&content[..head]),
                "head after append {i}"
            );
            let tail = tail_len(cursor.offset);
            assert_eq!(
                cursor.tail_hash,
                fnv1a(&content[offset - tail..offset]),
                "tail after append {i}"
            );
        }
    }

    #[test]
    fn a_complete_last_object_without_newline_is_read_once() {
        let (_dir, p) = scratch("nonl");
        let mut c = FileCursor::default();
        append(&p, b"{\"a\":1}\n{\"b\":");
        assert_eq!(read(&p, &mut c, 100).1, vec!["{\"a\":1}"]);
        append(&p, b"2}");
        assert_eq!(read(&p, &mut c, 100).1, vec!["{\"b\":2}"]);
        append(&p, b"\n{\"c\":3}\n");
        assert_eq!(read(&p, &mut c, 100).1, vec!["{\"c\":3}"]);
        assert_eq!(c.offset, std::fs::metadata(&p).unwrap().len());
    }

    #[test]
    fn half_lines_wait_and_pieces_equal_whole() {
        let (_dir, p) = scratch("pieces");
        let mut c = FileCursor::default();
        append(&p, b"one\ntw");
        assert_eq!(read(&p, &mut c, 100).1, vec!["one"]);
        assert_eq!(c.offset, 4);
        append(&p, b"o\r\n\nthree");
        let (reset, lines, _) = read(&p, &mut c, 100);
        assert!(!reset);
        assert_eq!(lines, vec!["two"]);
        append(&p, b"\n");
        assert_eq!(read(&p, &mut c, 100).1, vec!["three"]);
        assert_eq!(read(&p, &mut c, 100).1, Vec::<String>::new());
    }

    #[test]
    fn truncation_and_replacement_start_over() {
        let (_dir, p) = scratch("trunc");
        let mut c = FileCursor::default();
        append(&p, b"a\nb\n");
        read(&p, &mut c, 100);
        std::fs::write(&p, b"c\n").unwrap(); // shorter: truncated in place
        let (reset, lines, _) = read(&p, &mut c, 100);
        assert!(reset);
        assert_eq!(lines, vec!["c"]);

        let tmp = p.with_extension("tmp");
        std::fs::write(&tmp, b"x\ny\nz\n").unwrap();
        std::fs::rename(&tmp, &p).unwrap(); // replaced: new inode, longer
        let (reset, lines, _) = read(&p, &mut c, 100);
        assert!(reset);
        assert_eq!(lines, vec!["x", "y", "z"]);
    }

    #[test]
    fn a_rewrite_in_place_with_longer_content_starts_over() {
        let (_dir, p) = scratch("rewrite");
        let mut c = FileCursor::default();
        append(&p, b"{\"v\":1}\n");
        assert_eq!(read(&p, &mut c, 100).1, vec!["{\"v\":1}"]);
        let ino = std::fs::metadata(&p).unwrap().ino();
        // Same inode (O_TRUNC and write), longer than before.
        std::fs::write(&p, b"{\"w\":22}\n{\"w\":33}\n").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().ino(), ino);
        let (reset, lines, _) = read(&p, &mut c, 100);
        assert!(reset);
        assert_eq!(lines, vec!["{\"w\":22}", "{\"w\":33}"]);
        // Plain appends are not mistaken for rewrites.
        append(&p, b"{\"w\":44}\n");
        let (reset, lines, _) = read(&p, &mut c, 100);
        assert!(!reset);
        assert_eq!(lines, vec!["{\"w\":44}"]);
    }

    #[test]
    fn oversized_lines_are_dropped_across_reads() {
        let (_dir, p) = scratch("huge");
        let mut c = FileCursor::default();
        append(&p, b"ok\n");
        append(&p, &vec![b'x'; 300_000]);
        let (_, lines, out) = read(&p, &mut c, 1000);
        assert_eq!((lines, out.oversized), (vec!["ok".to_owned()], 1));
        assert!(c.skipping);
        append(&p, &vec![b'y'; 1000]);
        append(&p, b"\nafter\n");
        let (_, lines, out) = read(&p, &mut c, 1000);
        assert_eq!((lines, out.oversized), (vec!["after".to_owned()], 0));
        assert!(!c.skipping);
        assert_eq!(c.offset, std::fs::metadata(&p).unwrap().len());
    }

    #[test]
    fn a_line_longer_than_a_read_is_taken_whole_and_never_again() {
        // Regression: the offset stopped inside a line that spanned reads, so the next read
        // counted a fragment as a bad line and every later line twice.
        let (_dir, p) = scratch("long");
        let long = format!("{{\"data\":\"{}\"}}", "x".repeat(300_000));
        for limit in [CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7] {
            let line = format!("{{\"n\":\"{}\"}}", "y".repeat(limit));
            let mut c = FileCursor::default();
            let _ = std::fs::remove_file(&p);
            append(&p, format!("a\n{line}\n{long}\nb\n").as_bytes());
            let (_, lines, _) = read(&p, &mut c, 1 << 20);
            assert_eq!(lines.len(), 4);
            assert_eq!(lines[1], line);
            assert_eq!(lines[2], long);
            assert_eq!(c.offset, std::fs::metadata(&p).unwrap().len());
            append(&p, b"c\n");
            assert_eq!(read(&p, &mut c, 1 << 20).1, vec!["c"]);
        }
    }

    #[test]
    fn a_long_line_written_in_pieces_is_read_once_complete() {
        let (_dir, p) = scratch("pieces-long");
        let mut c = FileCursor::default();
        append(&p, b"first\n");
        assert_eq!(read(&p, &mut c, 1 << 20).1, vec!["first"]);
        let line = "z".repeat(200_000);
        for piece in line.as_bytes().chunks(70_000) {
            append(&p, piece);
            assert!(read(&p, &mut c, 1 << 20).1.is_empty());
            assert_eq!(c.offset, 6);
        }
        append(&p, b"\nlast\n");
        assert_eq!(read(&p, &mut c, 1 << 20).1, vec![line, "last".to_owned()]);
    }

    #[test]
    fn a_rewrite_in_place_that_keeps_the_first_bytes_starts_over() {
        let (_dir, p) = scratch("same-head");
        let mut c = FileCursor::default();
        let head = format!("{{\"type\":\"summary\",\"pad\":\"{}\"}}\n", "p".repeat(100));
        append(&p, format!("{head}{{\"v\":1}}\n").as_bytes());
        assert_eq!(read(&p, &mut c, 1000).1.len(), 2);
        // Same inode, same first bytes, longer: not an append.
        std::fs::write(&p, format!("{head}{{\"v\":2}}\n{{\"v\":3}}\n")).unwrap();
        let (reset, lines, _) = read(&p, &mut c, 1000);
        assert!(reset);
        assert_eq!(lines.len(), 3);
        // Same length, other content, a later modification time.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&p, format!("{head}{{\"v\":2}}\n{{\"v\":4}}\n")).unwrap();
        let (reset, lines, _) = read(&p, &mut c, 1000);
        assert!(reset);
        assert_eq!(lines.last().map(String::as_str), Some("{\"v\":4}"));
        assert!(c.is_current(&std::fs::metadata(&p).unwrap()));
    }

    #[test]
    fn the_line_cap_does_not_depend_on_where_reads_fall() {
        let (_dir, p) = scratch("cap");
        // 70,000 bytes: more than the cap of 66,000 but ending inside the second read.
        append(&p, format!("{}\nok\n", "q".repeat(70_000)).as_bytes());
        let mut c = FileCursor::default();
        let (_, lines, out) = read(&p, &mut c, 66_000);
        assert_eq!((lines, out.oversized), (vec!["ok".to_owned()], 1));
        // A line exactly at the cap is kept.
        let (_dir2, p2) = scratch("cap-exact");
        append(&p2, format!("{}\n", "q".repeat(66_000)).as_bytes());
        let mut c = FileCursor::default();
        assert_eq!(read(&p2, &mut c, 66_000).1.len(), 1);
    }

    #[test]
    fn compressed_line_files_are_read_line_by_line() {
        let text = format!("a\n{}\nb\n{}\nc", "x".repeat(100_000), "y".repeat(10));
        let packed = zstd::stream::encode_all(text.as_bytes(), 3).unwrap();
        let mut lines = Vec::new();
        let skipped = zstd_lines(&packed, 50_000, &mut |l| {
            lines.push(String::from_utf8_lossy(l).into_owned())
        })
        .unwrap();
        assert_eq!(lines, vec!["a", "b", &"y".repeat(10), "c"]);
        assert_eq!(skipped, 1);
        assert!(zstd_lines(b"not zstd", 100, &mut |_| {}).is_err());
    }

    #[test]
    fn non_regular_files_are_refused() {
        let (_dir, p) = scratch("dir");
        std::fs::create_dir(&p).unwrap();
        assert!(Opened::open(&p, &mut FileCursor::default()).is_err());
    }
}
