//! A small blocking client of the agentd API over its Unix socket, for `agentctl` and for any
//! Rust tool that wants agent data without an async runtime.
//!
//! It speaks just enough HTTP/1.1 for this API (one request per connection, `Content-Length` or
//! chunked answers, streaming for logs and events). It never starts the daemon and never links
//! it: like every plugin, it only knows the contract.
//!
//! ```no_run
//! let client = agentctl::Client::new(agentctl::default_socket());
//! let summary = client.summary(false)?;
//! println!("{} agents need you", summary.blocked);
//! # Ok::<(), agentctl::ClientError>(())
//! ```

pub mod display;
pub mod events;
pub mod hook;
pub mod run;
pub mod service;
pub mod top;
pub mod wait;

pub use agentd_wire::{AgentsPage, Health, Item, Source, Status, Summary};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a `503 unavailable` answer is retried before it is reported (see
/// [`Client::get_json`]).
const UNAVAILABLE_PATIENCE: Duration = Duration::from_secs(5);

/// The socket path the daemon uses by default, from the same environment rules (contract
/// section 2): `AGENTD_SOCKET`, else `$XDG_RUNTIME_DIR/agentd/agentd.sock`, else
/// `<state dir>/agentd.sock`.
pub fn default_socket() -> PathBuf {
    let env = &agentd_wire::paths::process_env;
    agentd_wire::paths::socket_path(env, &agentd_wire::paths::state_dir(env))
}

/// What went wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing is listening (no socket file, or a refused connect).
    #[error("agentd is not reachable at {socket}: {source}")]
    Unreachable { socket: PathBuf, source: io::Error },
    #[error("talking to agentd: {0}")]
    Io(#[from] io::Error),
    #[error("agentd answered something unexpected: {0}")]
    Protocol(String),
    /// The API answered an error (contract section 4).
    #[error("{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
}

impl ClientError {
    /// Whether the API said "not found".
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Api { status: 404, .. })
    }
}

/// A client bound to one socket path.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    /// Deadline for a whole non-streaming exchange; `None` waits as long as it takes.
    timeout: Option<Duration>,
}

/// A complete answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Percent-encodes one path segment (ids contain `:` and may contain anything else).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Builds a query string from pairs, skipping empty values.
pub fn query(pairs: &[(&str, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    let q = s.finish();
    if q.is_empty() { q } else { format!("?{q}") }
}

impl Client {
    /// A client of the daemon listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
            timeout: Some(Duration::from_secs(30)),
        }
    }

    /// Sets the deadline for each non-streaming request.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Client {
        self.timeout = timeout;
        self
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn connect(&self) -> Result<UnixStream, ClientError> {
        UnixStream::connect(&self.socket).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                ClientError::Unreachable {
                    socket: self.socket.clone(),
                    source,
                }
            }
            _ => ClientError::Io(source),
        })
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<BufReader<UnixStream>, ClientError> {
        let mut stream = self.connect()?;
        stream.set_write_timeout(self.timeout)?;
        let mut head =
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        if let Some(b) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        head.push_str("\r\n");
        // One write: the daemon may answer (and close) as soon as it has the head, and a body
        // sent after that would fail with EPIPE although the answer is there to read.
        let mut request = head.into_bytes();
        if let Some(b) = body {
            request.extend_from_slice(b);
        }
        match stream.write_all(&request) {
            Ok(()) => {}
            // Answered and closed before reading everything: the answer still counts.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(BufReader::new(stream))
    }

    /// Sends one request and reads the whole answer.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, ClientError> {
        let deadline = self.timeout.map(|t| Instant::now() + t);
        let mut reader = self.send(method, path, body)?;
        let set_deadline = |r: &BufReader<UnixStream>| -> Result<(), ClientError> {
            if let Some(d) = deadline {
                let left = d
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1));
                r.get_ref().set_read_timeout(Some(left))?;
            }
            Ok(())
        };
        set_deadline(&reader)?;
        let head = read_head(&mut reader)?;
        let body = read_all(&mut reader, &head)?;
        Ok(Response {
            status: head.status,
            body,
        })
    }

    /// Sends a GET and calls `on_data` with each piece of the answer as it arrives, until the
    /// answer ends or `on_data` returns `false`. For `?follow=true` logs and `/v1/events`.
    pub fn stream(
        &self,
        path: &str,
        on_data: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), ClientError> {
        let mut reader = self.send("GET", path, None)?;
        let head = read_head(&mut reader)?;
        if head.status >= 400 {
            return Err(api_error(head.status, &read_all(&mut reader, &head)?));
        }
        read_body(&mut reader, &head, on_data)
    }

    /// [`Client::stream`], with a handle that ends it from another thread: the connection is
    /// put in `handle` once made, and [`end_stream`] on it closes the connection, so a reader
    /// blocked on a quiet stream returns at once.
    pub fn stream_ended_by(
        &self,
        path: &str,
        handle: &std::sync::Mutex<Option<UnixStream>>,
        on_data: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), ClientError> {
        let mut reader = self.send("GET", path, None)?;
        if let Ok(clone) = reader.get_ref().try_clone() {
            *handle.lock().unwrap_or_else(|p| p.into_inner()) = Some(clone);
        }
        let head = read_head(&mut reader)?;
        if head.status >= 400 {
            return Err(api_error(head.status, &read_all(&mut reader, &head)?));
        }
        read_body(&mut reader, &head, on_data)
    }

    /// One GET that gives up at `budget`, whatever the daemon does: the connect never waits (a
    /// full backlog is a failure, not a queue), and every read waits only for the time left.
    /// For `agentctl prompt`, which must never hold up a shell.
    pub fn get_within(&self, path: &str, budget: Duration) -> Result<Response, ClientError> {
        let deadline = Instant::now() + budget;
        let mut stream = connect_nonblocking(&self.socket)?;
        stream.set_nonblocking(false)?;
        let left = || {
            let d = deadline.saturating_duration_since(Instant::now());
            if d.is_zero() {
                Err(ClientError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "time budget spent",
                )))
            } else {
                Ok(d)
            }
        };
        stream.set_write_timeout(Some(left()?))?;
        stream.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )?;
        let mut raw = Vec::with_capacity(1024);
        let mut buf = [0u8; 4096];
        loop {
            stream.set_read_timeout(Some(left()?))?;
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
            if raw.len() > 1 << 20 {
                return Err(ClientError::Protocol("answer too large".into()));
            }
        }
        let mut r = BufReader::new(raw.as_slice());
        let head = read_head(&mut r)?;
        let body = read_all(&mut r, &head)?;
        Ok(Response {
            status: head.status,
            body,
        })
    }

    /// GET a JSON answer. A `503` is a state that passes (the database being compacted after a
    /// backfill, or reopened after a write error): it is waited out for a few seconds before
    /// it is reported.
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let until = Instant::now() + UNAVAILABLE_PATIENCE;
        loop {
            let resp = self.request("GET", path, None)?;
            if resp.status == 503 && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            return self.json(resp);
        }
    }

    /// Decodes a JSON answer, or the API error it carries.
    pub fn json<T: serde::de::DeserializeOwned>(&self, resp: Response) -> Result<T, ClientError> {
        if resp.status >= 400 {
            return Err(api_error(resp.status, &resp.body));
        }
        serde_json::from_slice(&resp.body)
            .map_err(|e| ClientError::Protocol(format!("bad JSON: {e}")))
    }

    /// `GET /v1/summary`.
    pub fn summary(&self, all: bool) -> Result<Summary, ClientError> {
        self.get_json(if all {
            "/v1/summary?tab=all"
        } else {
            "/v1/summary"
        })
    }

    /// `GET /v1/health`.
    pub fn health(&self) -> Result<Health, ClientError> {
        self.get_json("/v1/health")
    }

    /// `GET /v1/agents` with a query string built by [`query`].
    pub fn agents(&self, query: &str) -> Result<AgentsPage, ClientError> {
        self.get_json(&format!("/v1/agents{query}"))
    }

    /// One item by exact id, or by a unique prefix of it.
    pub fn resolve(&self, id: &str) -> Result<Item, ResolveError> {
        match self.get_json::<Item>(&format!("/v1/agents/{}", encode_segment(id))) {
            Ok(item) => return Ok(item),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(ResolveError::Client(e)),
        }
        let page = self.agents(&query(&[
            ("id_prefix", id.to_owned()),
            ("limit", "10".into()),
        ]))?;
        match page.items.len() {
            0 => Err(ResolveError::NotFound(id.to_owned())),
            1 => Ok(page.items.into_iter().next().expect("one item")),
            _ => Err(ResolveError::Ambiguous {
                prefix: id.to_owned(),
                candidates: page.items.into_iter().map(|i| i.id).collect(),
            }),
        }
    }
}

/// Ends a stream started with [`Client::stream_ended_by`] (a no-op before it connected).
pub fn end_stream(handle: &std::sync::Mutex<Option<UnixStream>>) {
    if let Some(s) = handle.lock().unwrap_or_else(|p| p.into_inner()).take() {
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
}

/// Connects without ever waiting: `EAGAIN` (the daemon's backlog is full) or any other error is
/// returned at once.
fn connect_nonblocking(path: &Path) -> Result<UnixStream, ClientError> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::io::FromRawFd;
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: a plain socket(2)/connect(2) pair on a zeroed sockaddr_un whose path we bound-check;
    // the fd is owned by the UnixStream from here on (closed on every path).
    unsafe {
        let mut addr: libc::sockaddr_un = std::mem::zeroed();
        if bytes.len() >= addr.sun_path.len() {
            return Err(ClientError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "socket path too long",
            )));
        }
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
            *dst = *src as libc::c_char;
        }
        let fd = libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error().into());
        }
        let stream = UnixStream::from_raw_fd(fd);
        let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        if libc::connect(
            fd,
            &addr as *const libc::sockaddr_un as *const libc::sockaddr,
            len,
        ) != 0
        {
            let source = io::Error::last_os_error();
            return Err(match source.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    ClientError::Unreachable {
                        socket: path.to_owned(),
                        source,
                    }
                }
                _ => ClientError::Io(source),
            });
        }
        Ok(stream)
    }
}

/// Why an id could not be resolved to one item.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no agent matches {0:?}")]
    NotFound(String),
    #[error("{prefix:?} matches several agents: {}", candidates.join(", "))]
    Ambiguous {
        prefix: String,
        candidates: Vec<String>,
    },
    #[error(transparent)]
    Client(#[from] ClientError),
}

fn api_error(status: u16, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<agentd_wire::ErrorBody>(body) {
        Ok(e) => ClientError::Api {
            status,
            code: e.error.code,
            message: e.error.message,
        },
        Err(_) => ClientError::Api {
            status,
            code: "unknown".into(),
            message: format!("HTTP {status}: {}", String::from_utf8_lossy(body).trim()),
        },
    }
}

/// The parts of a response head this client needs.
struct Head {
    status: u16,
    content_length: Option<usize>,
    chunked: bool,
}

fn read_head(r: &mut impl BufRead) -> Result<Head, ClientError> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Protocol(format!("bad status line {:?}", line.trim())))?;
    let (mut content_length, mut chunked) = (None, false);
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(ClientError::Protocol(
                "connection closed inside the headers".into(),
            ));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("content-length") {
                content_length = v.parse().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding")
                && v.eq_ignore_ascii_case("chunked")
            {
                chunked = true;
            }
        }
    }
    Ok(Head {
        status,
        content_length,
        chunked,
    })
}

fn read_all(r: &mut impl BufRead, head: &Head) -> Result<Vec<u8>, ClientError> {
    let mut body = Vec::new();
    read_body(r, head, &mut |chunk| {
        body.extend_from_slice(chunk);
        true
    })?;
    Ok(body)
}

fn read_body(
    r: &mut impl BufRead,
    head: &Head,
    on_data: &mut dyn FnMut(&[u8]) -> bool,
) -> Result<(), ClientError> {
    if head.chunked {
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Ok(()); // the daemon went away mid-stream
            }
            let size_text = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| ClientError::Protocol(format!("bad chunk size {size_text:?}")))?;
            if size == 0 {
                return Ok(());
            }
            let mut chunk = vec![0u8; size];
            r.read_exact(&mut chunk)?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
            if !on_data(&chunk) {
                return Ok(());
            }
        }
    }
    let mut buf = [0u8; 16 * 1024];
    let mut left = head.content_length;
    loop {
        let want = left.map_or(buf.len(), |l| l.min(buf.len()));
        if want == 0 {
            return Ok(());
        }
        let n = r.read(&mut buf[..want])?;
        if n == 0 {
            return Ok(());
        }
        if let Some(l) = left.as_mut() {
            *l -= n;
        }
        if !on_data(&buf[..n]) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_path_segments_and_queries() {
        assert_eq!(encode_segment("cli:run 1/x"), "cli:run%201%2Fx");
        assert_eq!(
            query(&[("status", "failed,canceled".into()), ("q", "".into())]),
            "?status=failed%2Ccanceled"
        );
        assert_eq!(query(&[]), "");
    }

    /// One row: a raw answer in, its status and decoded body out.
    fn check(raw: &[u8], status: u16, body: &[u8]) {
        let mut r = BufReader::new(raw);
        let head = read_head(&mut r).unwrap();
        let got = read_all(&mut r, &head).unwrap();
        assert_eq!(
            (head.status, got.as_slice()),
            (status, body),
            "{}",
            String::from_utf8_lossy(raw)
        );
    }

    #[test]
    fn reads_chunked_and_sized_bodies() {
        check(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n", 200, b"hello!");
        check(
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\nabcdef",
            404,
            b"abc",
        );
        check(b"HTTP/1.1 200 OK\r\n\r\nuntil close", 200, b"until close");
    }
}
