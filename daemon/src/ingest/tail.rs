//! Incremental reading of append-only line files.
//!
//! A [`FileCursor`] remembers which file (device and inode) was read and how far, counting only
//! complete lines: a half-written last line is left for the next read. A file that was replaced
//! (new inode), truncated (shorter than the cursor) or rewritten in place (its first bytes are
//! not the ones read before: an `O_TRUNC` rewrite, or a new file on a reused inode) is read again
//! from the start, and the caller is told so that it resets its fold. A line longer than the limit is dropped without
//! ever being held in memory whole, and reading resumes at the next newline.
//!
//! Files are opened read-only and non-blocking (a FIFO dropped into a watched dir cannot hang
//! the reader); agentd never writes into a file it tails.

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Read granularity. Large enough to amortise syscalls, small enough to keep per-file memory low.
const CHUNK: usize = 64 * 1024;

/// How many leading bytes identify a file's content (see [`FileCursor::head_hash`]).
const HEAD: usize = 64;

/// Where reading of one file stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCursor {
    pub dev: u64,
    pub ino: u64,
    /// Bytes consumed: everything before this is folded (or deliberately skipped).
    pub offset: u64,
    /// Inside an oversized line: discard up to and including the next newline.
    pub skipping: bool,
    /// How many of the file's first bytes `head_hash` covers (up to 64, never past `offset`).
    pub head_len: u8,
    /// FNV-1a of those bytes: if they change, the file was rewritten, not appended to.
    pub head_hash: u64,
}

/// FNV-1a, 64-bit: tiny and good enough to tell two file beginnings apart.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The hash of the first `len` bytes of `file`, if it has that many.
fn head_of(file: &File, len: usize) -> Option<u64> {
    let mut buf = [0u8; HEAD];
    let buf = &mut buf[..len];
    file.read_exact_at(buf, 0).ok()?;
    Some(fnv1a(buf))
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
}

/// What one read found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadOutcome {
    pub lines: u64,
    /// Lines dropped for exceeding the limit.
    pub oversized: u64,
}

impl Opened {
    /// Opens `path` and checks it against the cursor (which it updates on a reset).
    pub fn open(path: &Path, cursor: &mut FileCursor) -> io::Result<Opened> {
        let meta = std::fs::metadata(path)?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        let meta = file.metadata()?;
        // SAFETY: getuid has no preconditions.
        let me = unsafe { libc::getuid() };
        if meta.uid() != me {
            // A shared runs dir must not let another user put words in this user's mouth.
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("owned by uid {}, not by this user", meta.uid()),
            ));
        }
        let same = meta.dev() == cursor.dev && meta.ino() == cursor.ino;
        let rewritten = same
            && cursor.head_len > 0
            && head_of(&file, usize::from(cursor.head_len)) != Some(cursor.head_hash);
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
        self.file.seek(SeekFrom::Start(cursor.offset))?;
        let mut out = ReadOutcome::default();
        let mut pending: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let n = match self.file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut rest = &chunk[..n];
            while let Some(nl) = memchr::memchr(b'\n', rest) {
                let (head, tail) = (&rest[..nl], &rest[nl + 1..]);
                if cursor.skipping {
                    cursor.skipping = false;
                    pending.clear();
                } else if pending.is_empty() {
                    deliver(head, on_line, &mut out);
                } else {
                    pending.extend_from_slice(head);
                    deliver(&pending, on_line, &mut out);
                    pending.clear();
                }
                cursor.offset += nl as u64 + 1;
                rest = tail;
            }
            if cursor.skipping {
                cursor.offset += rest.len() as u64;
            } else {
                pending.extend_from_slice(rest);
                if pending.len() > max_line {
                    // Drop what we have of the line and everything up to its newline.
                    cursor.offset += pending.len() as u64;
                    pending.clear();
                    cursor.skipping = true;
                    out.oversized += 1;
                }
            }
        }
        // Remember how the file begins (once enough of it has been consumed).
        if usize::from(cursor.head_len) < HEAD && cursor.offset > u64::from(cursor.head_len) {
            let len = cursor.offset.min(HEAD as u64) as usize;
            if let Some(h) = head_of(&self.file, len) {
                cursor.head_len = len as u8;
                cursor.head_hash = h;
            }
        }
        // `pending` is normally a half-written line, left for next time. A complete JSON object
        // cannot be the prefix of a longer valid line, so one without its newline (a writer that
        // ended with `print!`) is taken now; a newline arriving later is just an empty line.
        if !cursor.skipping && is_complete_object(&pending) {
            deliver(&pending, on_line, &mut out);
            cursor.offset += pending.len() as u64;
        }
        Ok(out)
    }
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
    fn non_regular_files_are_refused() {
        let (_dir, p) = scratch("dir");
        std::fs::create_dir(&p).unwrap();
        assert!(Opened::open(&p, &mut FileCursor::default()).is_err());
    }
}
