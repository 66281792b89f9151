//! The output side of `agentctl run`: the command's stdout and stderr go to ours unchanged, as
//! they come, and into the run log as `output` records.
//!
//! One thread serves both streams with `poll(2)`: each piece it reads is written to our stdout
//! or stderr at once, then handed to a recorder thread, so the order of pieces across the two
//! streams is kept without a lock between them, and encoding the log never delays the terminal.
//! The recorder writes the log in batches ([`Recorder`]): consecutive pieces of one stream
//! become one record, and a batch is written when it reaches [`FLUSH_BYTES`] or [`FLUSH_AFTER`]
//! after its first piece. A command that prints a line at a time thus costs one log write per
//! batch, not one per line, and the daemon that follows the log wakes up per batch too. If the
//! disk is slower than the command, at most [`MAX_PENDING`] bytes wait before the command is
//! held back, as `tee` would hold it back.

use super::{Log, UsageScanner};
use serde_json::Value;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A batch this large is written at once: big enough that a flood costs few writes, small
/// enough that memory stays flat whatever the command prints.
const FLUSH_BYTES: usize = 256 * 1024;
/// Output is in the log at most this long after it was printed; the terminal never waits.
const FLUSH_AFTER: Duration = Duration::from_millis(50);
/// One read takes up to this much of a stream.
const READ_BYTES: usize = 128 * 1024;
/// Output read but not yet recorded, at most: the bound on memory when the disk is slow.
const MAX_PENDING: usize = 4 * 1024 * 1024;

/// The two output streams of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Turns pieces of output into log records, in batches.
///
/// Pieces are encoded as they come, straight into the batch: an `output` record stays open
/// while pieces of its stream keep coming, and is closed when the other stream speaks, a usage
/// line is found, or the batch is written.
pub struct Recorder<'a> {
    log: &'a Log,
    /// Encoded lines not yet written; ends inside the `data` string of an open record when
    /// `open` is set.
    batch: Vec<u8>,
    /// The stream whose record is open at the end of `batch`.
    open: Option<Stream>,
    /// Per stream: the start of a multi-byte character whose rest has not been read yet.
    carry: [Vec<u8>; 2],
    /// Finds agent usage lines in stdout.
    usage: UsageScanner,
}

impl<'a> Recorder<'a> {
    pub fn new(log: &'a Log) -> Recorder<'a> {
        Recorder {
            log,
            batch: Vec::new(),
            open: None,
            carry: [Vec::new(), Vec::new()],
            usage: UsageScanner::default(),
        }
    }

    /// Takes a piece of output read from `stream` at `at` (epoch ms), the time its record
    /// gets if it opens one.
    pub fn take(&mut self, stream: Stream, piece: &[u8], at: i64) {
        if piece.is_empty() || !self.log.is_recording() {
            return;
        }
        // A character cut by the previous read is completed by this one (rarely: a copy).
        let carried = std::mem::take(&mut self.carry[stream.index()]);
        let joined;
        let data = if carried.is_empty() {
            piece
        } else {
            joined = [&carried[..], piece].concat();
            &joined[..]
        };
        let cut = incomplete_tail(data);
        let (text, rest) = data.split_at(data.len() - cut);
        self.carry[stream.index()] = rest.to_vec();
        if !text.is_empty() {
            self.open_record(stream, at);
            escape_lossy_into(&mut self.batch, text);
        }
        if stream == Stream::Stdout {
            let found = self.usage.feed(piece);
            if !found.is_empty() {
                // After the output that carried them.
                self.close_record();
                for usage in found {
                    self.push_record(&usage);
                }
            }
        }
        if self.batch.len() >= FLUSH_BYTES {
            self.flush();
        }
    }

    /// Writes everything collected so far.
    pub fn flush(&mut self) {
        self.close_record();
        if !self.batch.is_empty() {
            self.log.write_line(&self.batch);
            self.batch.clear();
        }
    }

    /// The streams have ended: writes what is left, incomplete characters included.
    pub fn finish(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut self.carry[stream.index()]);
            if !rest.is_empty() {
                self.open_record(stream, agentd_wire::Millis::now().0);
                escape_lossy_into(&mut self.batch, &rest);
            }
        }
        for usage in self.usage.finish() {
            self.close_record();
            self.push_record(&usage);
        }
        self.flush();
    }

    /// Makes sure an `output` record of `stream` is open at the end of the batch.
    fn open_record(&mut self, stream: Stream, at: i64) {
        if self.open == Some(stream) {
            return;
        }
        self.close_record();
        let b = &mut self.batch;
        b.extend_from_slice(b"{\"type\":\"output\",\"ts\":\"");
        b.extend_from_slice(agentd_wire::format_rfc3339_ms(at).as_bytes());
        b.extend_from_slice(b"\",\"stream\":\"");
        b.extend_from_slice(stream.name().as_bytes());
        b.extend_from_slice(b"\",\"data\":\"");
        self.open = Some(stream);
    }

    fn close_record(&mut self) {
        if self.open.take().is_some() {
            self.batch.extend_from_slice(b"\"}\n");
        }
    }

    fn push_record(&mut self, v: &Value) {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.batch, v);
        self.batch.push(b'\n');
    }
}

/// How many bytes at the end of `data` are the start of a character that is not complete yet.
fn incomplete_tail(data: &[u8]) -> usize {
    for back in 1..=data.len().min(3) {
        let b = data[data.len() - back];
        if b & 0xC0 == 0x80 {
            continue; // a continuation byte: look further back for the lead
        }
        let len = match b {
            0xF0.. => 4,
            0xE0.. => 3,
            0xC0.. => 2,
            _ => 1,
        };
        return if len > back { back } else { 0 };
    }
    0
}

/// Appends `bytes` as the inside of a JSON string, invalid UTF-8 replaced by U+FFFD (as
/// `String::from_utf8_lossy` would).
fn escape_lossy_into(out: &mut Vec<u8>, bytes: &[u8]) {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return escape_into(out, text.as_bytes()); // the common case, checked quickly
    }
    for chunk in bytes.utf8_chunks() {
        escape_into(out, chunk.valid().as_bytes());
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{FFFD}".as_bytes());
        }
    }
}

/// Appends valid UTF-8 as the inside of a JSON string, byte for byte what serde_json writes.
///
/// Output is mostly bytes that need no escape. They are found and copied eight at a time, and
/// an escape costs a few instructions rather than a call: on a flood of short lines this is
/// about five times cheaper than serde_json's escaper, which was the largest cost of recording.
fn escape_into(out: &mut Vec<u8>, s: &[u8]) {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    /// Bytes of the word equal to zero are flagged in their high bit (the lowest flag is
    /// exact; flags above it may be false, so only the lowest is used).
    fn zero_bytes(w: u64) -> u64 {
        w.wrapping_sub(ONES) & !w & HIGHS
    }
    fn needs_escape(w: u64) -> u64 {
        let control = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
        control
            | zero_bytes(w ^ (ONES * u64::from(b'"')))
            | zero_bytes(w ^ (ONES * u64::from(b'\\')))
    }
    /// Writes the escape of `b` at `dst`; returns the position after it.
    ///
    /// SAFETY: `dst` must have room for 6 bytes.
    unsafe fn escape(dst: *mut u8, b: u8) -> *mut u8 {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0C => b'f',
            _ => 0,
        };
        // SAFETY: the caller guarantees room for the 2 or 6 bytes written.
        unsafe {
            *dst = b'\\';
            if short != 0 {
                *dst.add(1) = short;
                return dst.add(2);
            }
            std::ptr::copy_nonoverlapping(b"u00".as_ptr(), dst.add(1), 3);
            *dst.add(4) = HEX[usize::from(b >> 4)];
            *dst.add(5) = HEX[usize::from(b & 0xF)];
            dst.add(6)
        }
    }
    // Each input byte becomes at most 6 output bytes.
    out.reserve(s.len() * 6);
    let n = s.len();
    let mut i = 0;
    // SAFETY: `out` has room for 6 bytes per input byte from its length on. Each step below
    // consumes k >= 1 input bytes and writes at most 6k bytes, except that a word store writes
    // 8 bytes when it advances by fewer: with 8 or more input bytes left there is room for 48.
    // Only bytes written here are exposed by `set_len`; all input reads are within `s`.
    unsafe {
        let base = out.as_mut_ptr().add(out.len());
        let mut dst = base;
        while i + 8 <= n {
            let w = s.as_ptr().add(i).cast::<u64>().read_unaligned();
            let flags = needs_escape(w);
            dst.cast::<u64>().write_unaligned(w);
            if flags == 0 {
                dst = dst.add(8);
                i += 8;
                continue;
            }
            let clean = (flags.trailing_zeros() / 8) as usize;
            dst = escape(dst.add(clean), s[i + clean]);
            i += clean + 1;
        }
        while i < n {
            let b = s[i];
            if matches!(b, 0..0x20 | b'"' | b'\\') {
                dst = escape(dst, b);
            } else {
                *dst = b;
                dst = dst.add(1);
            }
            i += 1;
        }
        let written = dst.offset_from(base) as usize;
        out.set_len(out.len() + written);
    }
}

/// Where one stream's output goes: our own stdout or stderr.
struct PassThrough {
    fd: RawFd,
    /// Writing failed (a closed pipe, say): the rest is still recorded, no longer shown.
    broken: bool,
}

impl PassThrough {
    fn write_all(&mut self, mut bytes: &[u8]) {
        while !self.broken && !bytes.is_empty() {
            // SAFETY: writes from a valid slice to a descriptor we hold open.
            let n = unsafe { libc::write(self.fd, bytes.as_ptr().cast(), bytes.len()) };
            if n >= 0 {
                bytes = &bytes[n as usize..];
                continue;
            }
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => {}
                // A terminal shared with a program that made it non-blocking.
                Some(libc::EAGAIN) => wait_for(self.fd, libc::POLLOUT),
                _ => self.broken = true,
            }
        }
    }
}

/// Waits until `fd` is ready for `events` or `deadline` passes.
/// Waits until `fd` is ready for `events`.
fn wait_for(fd: RawFd, events: libc::c_short) {
    poll(&mut [libc::pollfd {
        fd,
        events,
        revents: 0,
    }]);
}

/// Waits until one of `fds` is ready; a signal (forwarded to the command) may end it early.
fn poll(fds: &mut [libc::pollfd]) {
    // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own; only O_NONBLOCK changes.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
}

/// Output read but not yet recorded.
#[derive(Default)]
struct Pending {
    /// Per piece: its stream, when it was read (epoch ms) and where it ends in `bytes`.
    pieces: Vec<(Stream, i64, usize)>,
    bytes: Vec<u8>,
    /// Both streams have ended: nothing more will come.
    done: bool,
}

/// What the reading thread hands to the recording one.
#[derive(Default)]
struct Handoff {
    pending: Mutex<Pending>,
    /// Signalled when work arrives in an empty `pending`, fills a batch, or ends.
    work: Condvar,
    /// Signalled when the recorder has taken `pending`'s contents.
    room: Condvar,
}

impl Handoff {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands over a piece just read; waits while the recorder is [`MAX_PENDING`] behind.
    fn push(&self, stream: Stream, piece: &[u8]) {
        let mut p = self.lock();
        while p.bytes.len() >= MAX_PENDING {
            p = self.room.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        let before = p.bytes.len();
        p.bytes.extend_from_slice(piece);
        let end = p.bytes.len();
        p.pieces.push((stream, agentd_wire::Millis::now().0, end));
        drop(p);
        if before == 0 || (before < FLUSH_BYTES && end >= FLUSH_BYTES) {
            self.work.notify_one();
        }
    }

    fn finish(&self) {
        self.lock().done = true;
        self.work.notify_one();
    }

    /// The recorder's loop: takes what was read in batches and writes it to the log.
    fn record(&self, log: &Log) {
        let mut rec = Recorder::new(log);
        let (mut pieces, mut bytes) = (Vec::new(), Vec::new());
        loop {
            let mut p = self.lock();
            while p.bytes.is_empty() && !p.done {
                p = self.work.wait(p).unwrap_or_else(|e| e.into_inner());
            }
            // Something arrived: let it grow into a batch, unless the batch is full already.
            let due = Instant::now() + FLUSH_AFTER;
            while p.bytes.len() < FLUSH_BYTES && !p.done {
                let left = due.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                p = self
                    .work
                    .wait_timeout(p, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            std::mem::swap(&mut p.pieces, &mut pieces);
            std::mem::swap(&mut p.bytes, &mut bytes);
            let done = p.done;
            drop(p);
            self.room.notify_one();
            let mut start = 0;
            for (stream, at, end) in pieces.drain(..) {
                rec.take(stream, &bytes[start..end], at);
                start = end;
            }
            bytes.clear();
            if done {
                rec.finish();
                return;
            }
            rec.flush();
        }
    }
}

/// Copies the command's streams to ours and into the log until both are closed.
pub fn pump(stdout: Option<impl AsRawFd>, stderr: Option<impl AsRawFd>, log: &Log) {
    // (stream, its pipe, where it goes); a stream leaves the list when it ends.
    let mut streams: Vec<(Stream, RawFd, PassThrough)> = Vec::new();
    if let Some(s) = &stdout {
        streams.push((
            Stream::Stdout,
            s.as_raw_fd(),
            PassThrough {
                fd: 1,
                broken: false,
            },
        ));
    }
    if let Some(s) = &stderr {
        streams.push((
            Stream::Stderr,
            s.as_raw_fd(),
            PassThrough {
                fd: 2,
                broken: false,
            },
        ));
    }
    for (_, fd, _) in &streams {
        // Our read ends only: the command's write ends are separate open files.
        set_nonblocking(*fd);
    }
    let handoff = Handoff::default();
    let recording = log.is_recording();
    std::thread::scope(|scope| {
        if recording {
            scope.spawn(|| handoff.record(log));
        }
        let mut buf = vec![0u8; READ_BYTES];
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(2);
        while !streams.is_empty() {
            // Sleep until a stream has something or has ended.
            fds.clear();
            fds.extend(streams.iter().map(|(_, fd, _)| libc::pollfd {
                fd: *fd,
                events: libc::POLLIN,
                revents: 0,
            }));
            poll(&mut fds);
            let mut ready = fds.iter().map(|p| p.revents != 0);
            streams.retain_mut(|(stream, fd, out)| {
                if ready.next() != Some(true) {
                    return true;
                }
                // SAFETY: reads into a valid buffer from a pipe we hold open.
                let n = unsafe { libc::read(*fd, buf.as_mut_ptr().cast(), buf.len()) };
                if n > 0 {
                    let piece = &buf[..n as usize];
                    out.write_all(piece);
                    if recording {
                        handoff.push(*stream, piece);
                    }
                    return true;
                }
                if n == 0 {
                    return false; // closed: the command (and whatever inherited it) is done
                }
                matches!(
                    std::io::Error::last_os_error().raw_os_error(),
                    Some(libc::EAGAIN | libc::EINTR)
                )
            });
        }
        handoff.finish();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(path: &std::path::Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The escaper writes exactly what serde_json writes, for every byte value in every position
    /// of a word, and lossy decoding matches `from_utf8_lossy`.
    #[test]
    fn escaping_matches_serde_json() {
        let mut cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"plain ascii, longer than one word".to_vec(),
            "h\u{e9}llo \"w\u{f6}rld\"\n\t\r\u{8}\u{c}\u{1}\u{1f}\u{7f} \u{2713} \u{1f600}\\"
                .as_bytes()
                .to_vec(),
            b"bad \xff utf-8 \xe2\x9c and \xc3".to_vec(),
        ];
        for b in 0u8..=0x7F {
            for pos in 0..9 {
                let mut v = b"abcdefghijklmnop".to_vec();
                v.insert(pos, b);
                cases.push(v);
            }
        }
        for case in cases {
            let expected = serde_json::to_string(&String::from_utf8_lossy(&case)).unwrap();
            let mut got = b"\"".to_vec();
            escape_lossy_into(&mut got, &case);
            got.push(b'"');
            assert_eq!(String::from_utf8(got).unwrap(), expected, "{case:?}");
        }
    }

    /// Random text (mostly printable, some escapes and multi-byte characters) escapes as
    /// serde_json escapes it.
    #[test]
    fn escaping_random_text_matches_serde_json() {
        let alphabet: Vec<char> = "abc xyz019\n\t\r\"\\/\u{1}\u{1b}\u{7f}\u{e9}\u{2713}\u{1f600}"
            .chars()
            .collect();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2000 {
            let len = (next() % 40) as usize;
            let text: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let mut got = b"\"".to_vec();
            escape_into(&mut got, text.as_bytes());
            got.push(b'"');
            assert_eq!(
                String::from_utf8(got).unwrap(),
                serde_json::to_string(&text).unwrap()
            );
        }
    }

    #[test]
    fn incomplete_tails() {
        for (bytes, cut) in [
            (&b"abc"[..], 0),
            ("\u{e9}".as_bytes(), 0),
            (b"a\xc3", 1),
            (b"a\xe2\x9c", 2),
            (b"\xf0\x9f\x98", 3),
            ("\u{1f600}".as_bytes(), 0),
            (b"\x9c", 0), // a stray continuation byte is invalid, not incomplete
        ] {
            assert_eq!(incomplete_tail(bytes), cut, "{bytes:?}");
        }
    }

    #[test]
    fn pieces_keep_characters_whole_and_usage_follows_its_output() {
        let dir = std::env::temp_dir().join(format!("agentctl-tee-{}", std::process::id()));
        let log = Log::create(&dir, "t");
        let text = "héllo wörld {not a line start}\n{\"type\":\"turn.completed\",\"usage\":{\"input_tokens\":7,\"output_tokens\":1}}\nbye ✓";
        for piece in [1, 2, 3, 5, 4096] {
            let mut rec = Recorder::new(&log);
            for chunk in text.as_bytes().chunks(piece) {
                rec.take(Stream::Stdout, chunk, 0);
                rec.take(Stream::Stderr, b"e", 0);
            }
            rec.finish();
        }
        let written = records(&dir.join("t.jsonl"));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut out, mut err, mut usages) = (String::new(), String::new(), 0);
        for v in &written {
            match (v["type"].as_str(), v["stream"].as_str()) {
                (Some("output"), Some("stdout")) => out.push_str(v["data"].as_str().unwrap()),
                (Some("output"), Some("stderr")) => err.push_str(v["data"].as_str().unwrap()),
                (Some("usage"), _) => {
                    assert_eq!(v["input_tokens"], 7);
                    usages += 1;
                    assert_eq!(
                        out.matches("\"output_tokens\":1}}\n").count(),
                        usages,
                        "each usage record follows the output line it came from"
                    );
                }
                other => panic!("unexpected record {other:?}"),
            }
        }
        assert_eq!(
            out,
            text.repeat(5),
            "no replacement characters, nothing lost"
        );
        assert!(err.chars().all(|c| c == 'e'));
        assert_eq!(usages, 5, "one usage line per pass");
    }

    #[test]
    fn a_stream_ending_inside_a_character_is_kept_lossily() {
        let dir = std::env::temp_dir().join(format!("agentctl-tee-cut-{}", std::process::id()));
        let log = Log::create(&dir, "t");
        let mut rec = Recorder::new(&log);
        rec.take(Stream::Stdout, b"ok \xe2\x9c", 0);
        rec.finish();
        let written = records(&dir.join("t.jsonl"));
        let _ = std::fs::remove_dir_all(&dir);
        let data: String = written
            .iter()
            .map(|v| v["data"].as_str().unwrap())
            .collect();
        assert_eq!(data, "ok \u{fffd}");
    }

    #[test]
    fn consecutive_pieces_of_a_stream_are_one_record_and_a_flood_is_written_in_batches() {
        let dir = std::env::temp_dir().join(format!("agentctl-tee-batch-{}", std::process::id()));
        let log = Log::create(&dir, "t");
        let mut rec = Recorder::new(&log);
        for _ in 0..100 {
            rec.take(Stream::Stdout, b"line\n", 0);
        }
        rec.take(Stream::Stderr, b"warn\n", 0);
        rec.take(Stream::Stdout, b"more\n", 0);
        rec.flush();
        let line = "x".repeat(1000) + "\n";
        for _ in 0..1000 {
            rec.take(Stream::Stdout, line.as_bytes(), 0);
        }
        rec.finish();
        let written = records(&dir.join("t.jsonl"));
        let _ = std::fs::remove_dir_all(&dir);
        let streams: Vec<&str> = written[..3]
            .iter()
            .map(|v| v["stream"].as_str().unwrap())
            .collect();
        assert_eq!(streams, ["stdout", "stderr", "stdout"]);
        assert_eq!(written[0]["data"], "line\n".repeat(100));
        // 1 MB arrives as a few records of about FLUSH_BYTES, not a thousand of one line.
        let flood = &written[3..];
        assert!((4..=5).contains(&flood.len()), "{} records", flood.len());
        let total: usize = flood
            .iter()
            .map(|v| v["data"].as_str().unwrap().len())
            .sum();
        assert_eq!(total, 1000 * line.len());
    }
}
