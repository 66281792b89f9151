//! The two listeners and their accept loops.
//!
//! - **Unix socket** (interprocess, filesystem path): its directory is made `0700` and checked to
//!   be the user's, the socket is `0600`, and each peer's uid must be ours. A socket file left by
//!   a crashed daemon is replaced only after a connect to it is refused; one that answers
//!   belongs to a live daemon and start-up stops.
//! - **TCP** on loopback, behind the token and Host guard of `api::auth`.
//!
//! Each connection is served by hyper's HTTP/1 with a header read timeout (2 s on TCP, where
//! anyone on the machine may connect) and a buffer cap, so a client that connects and never
//! sends, or floods headers, costs one bounded task; a semaphore caps connections per listener,
//! and a few more may wait briefly for a slot, so that a flood of idle connections delays a
//! real client instead of locking it out. Shutdown stops accepting and lets open requests
//! finish.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use interprocess::local_socket::tokio::{Listener as LocalListener, Stream as LocalStream};
use interprocess::local_socket::traits::StreamCommon as _;
use interprocess::local_socket::traits::tokio::Listener as _;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::unix::local_socket::ListenerOptionsExt as _;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, watch};

/// A client must send its request headers within this time, including on an idle keep-alive
/// connection, or the connection is closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest buffered request head (request line and headers).
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// On TCP, where anyone on the machine can connect, a client must send a complete request head
/// within this time (and between requests on a keep-alive connection): a wave of idle
/// connections holds its slots for this long at most.
pub const TCP_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// Connections served at once per listener. Separate limits, so that unauthenticated TCP
/// clients can never crowd out the owner's socket.
const MAX_CONNECTIONS: usize = 256;

/// Connections that may wait for a slot when all are taken, and how long: long enough for an
/// idle connection's header timeout to free one, so that a real client arriving during a flood
/// of idle ones is served late rather than refused.
const MAX_WAITING: usize = 64;
const SLOT_WAIT: Duration = Duration::from_millis(2500);

/// At most one "too many connections" warning per this interval (with a count of the others):
/// a flood must not flood the log too.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How long shutdown waits for open requests to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("socket activation: {message}")]
    Activation { message: String },
    #[error("cannot create the socket directory {dir}: {source}")]
    Dir { dir: PathBuf, source: io::Error },
    #[error(
        "the socket directory {dir} belongs to uid {owner}, not to this user; refusing to use it"
    )]
    ForeignDir { dir: PathBuf, owner: u32 },
    #[error("the socket {path} is in use by another agentd{pid}; stop it first")]
    SocketInUse { path: PathBuf, pid: String },
    #[error("the socket path {path} is too long for a Unix socket (at most 107 bytes)")]
    PathTooLong { path: PathBuf },
    #[error("cannot listen on {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("cannot listen on http {addr}: {source}")]
    Tcp {
        addr: std::net::SocketAddr,
        source: io::Error,
    },
}

/// Both bound listeners.
pub struct Listeners {
    pub unix: LocalListener,
    pub unix_path: PathBuf,
    /// Remove the socket file at exit (not when the service manager made it).
    pub remove_socket: bool,
    pub tcp: Option<tokio::net::TcpListener>,
}

/// The first descriptor a service manager passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: std::os::fd::RawFd = 3;

/// Takes the listening Unix socket passed by systemd's socket activation (fd 3). The manager
/// made the socket file with the unit's `SocketMode=0600` and `DirectoryMode=0700`.
pub fn activated_unix() -> Result<LocalListener, ListenError> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let err = |message: String| ListenError::Activation { message };
    // SAFETY: fstat and getsockopt only read the descriptor's state; fd 3 is checked before it
    // is owned.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(LISTEN_FDS_START, &mut st) != 0
            || st.st_mode & libc::S_IFMT != libc::S_IFSOCK
        {
            return Err(err("LISTEN_FDS is set but fd 3 is not a socket".into()));
        }
        let (mut listening, mut len): (libc::c_int, libc::socklen_t) =
            (0, std::mem::size_of::<libc::c_int>() as libc::socklen_t);
        let ok = libc::getsockopt(
            LISTEN_FDS_START,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut listening as *mut libc::c_int).cast(),
            &mut len,
        );
        if ok != 0 || listening == 0 {
            return Err(err("fd 3 is not a listening socket".into()));
        }
        libc::fcntl(LISTEN_FDS_START, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    // SAFETY: fd 3 is a listening socket passed to us, owned by nothing else in this process.
    let fd = unsafe { OwnedFd::from_raw_fd(LISTEN_FDS_START) };
    let listener = interprocess::os::unix::uds_local_socket::tokio::Listener::try_from(fd)
        .map_err(|e| err(format!("cannot use the passed socket: {e}")))?;
    Ok(listener.into())
}

/// Tells the service manager (`NOTIFY_SOCKET`) a state such as `READY=1`. Silent on failure:
/// the daemon works the same without a manager listening.
pub fn notify(socket: &str, state: &str) {
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(_) => return,
    };
    let sent = if let Some(name) = socket.strip_prefix('@') {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            Err(io::Error::from(io::ErrorKind::Unsupported))
        }
    } else {
        sock.send_to(state.as_bytes(), socket)
    };
    if let Err(e) = sent {
        tracing::warn!("cannot notify the service manager at {socket}: {e}");
    }
}

/// Creates `dir` (and parents) with mode 0700, or checks an existing one: it must be ours, and
/// group or other access is removed. Only for directories that are agentd's own.
pub fn private_dir(dir: &Path) -> Result<(), ListenError> {
    let err = |source| ListenError::Dir {
        dir: dir.to_owned(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    let meta = std::fs::metadata(dir).map_err(err)?;
    // SAFETY: getuid has no preconditions.
    let me = unsafe { libc::getuid() };
    if meta.uid() != me {
        return Err(ListenError::ForeignDir {
            dir: dir.to_owned(),
            owner: meta.uid(),
        });
    }
    if meta.mode() & 0o077 != 0 {
        tracing::warn!(
            "{} was accessible to other users; setting it to 0700",
            dir.display()
        );
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

/// Refuses a directory that belongs to someone else.
fn check_owner(dir: &Path) -> Result<(), ListenError> {
    let meta = std::fs::metadata(dir).map_err(|source| ListenError::Dir {
        dir: dir.to_owned(),
        source,
    })?;
    // SAFETY: getuid has no preconditions.
    let me = unsafe { libc::getuid() };
    if meta.uid() != me {
        return Err(ListenError::ForeignDir {
            dir: dir.to_owned(),
            owner: meta.uid(),
        });
    }
    Ok(())
}

/// Asks a live daemon on `path` for its pid, for the error message.
fn pid_of_live_daemon(path: &Path) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(path) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = s.write_all(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut buf = Vec::new();
    let _ = s.take(64 * 1024).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("pid")?.as_u64())
        .map(|p| format!(" (pid {p})"))
        .unwrap_or_default()
}

/// Binds the Unix socket at `path`, replacing a stale socket file only when nothing answers it.
pub fn bind_unix(path: &Path) -> Result<LocalListener, ListenError> {
    if path.as_os_str().len() > 107 {
        return Err(ListenError::PathTooLong {
            path: path.to_owned(),
        });
    }
    if let Some(dir) = path.parent() {
        if dir.exists() && dir.file_name().is_none_or(|n| n != "agentd") {
            // A directory the user chose (`--socket ~/agentd.sock`): not ours to chmod. The
            // socket's own 0600 mode still keeps other users out.
            check_owner(dir)?;
        } else {
            private_dir(dir)?;
        }
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => {
            return Err(ListenError::SocketInUse {
                path: path.to_owned(),
                pid: pid_of_live_daemon(path),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(
                "removing a stale socket left by a daemon that is gone: {}",
                path.display()
            );
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
    let bind_err = |source| ListenError::Bind {
        path: path.to_owned(),
        source,
    };
    let name = path.to_fs_name::<GenericFilePath>().map_err(bind_err)?;
    let listener = ListenerOptions::new()
        .name(name)
        .mode(0o600)
        .create_tokio()
        .map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
    Ok(listener)
}

/// Binds the TCP listener.
pub async fn bind_tcp(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, ListenError> {
    if !addr.ip().is_loopback() {
        tracing::warn!(
            "the HTTP listener {addr} is not on loopback: anyone who can reach it and has the token can read agent data"
        );
    }
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError::Tcp { addr, source })
}

/// Serves both listeners until `shutdown` flips, then drains open connections.
pub async fn serve(
    listeners: Listeners,
    unix_router: Router,
    tcp_router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let unix_limit = Limits::new(HEADER_TIMEOUT);
    let tcp_limit = Limits::new(TCP_HEADER_TIMEOUT);
    // SAFETY: getuid has no preconditions.
    let me = unsafe { libc::getuid() };
    let Listeners {
        unix,
        unix_path,
        remove_socket,
        tcp,
    } = listeners;
    loop {
        tokio::select! {
            r = unix.accept() => match r {
                Ok(stream) => {
                    match peer_uid(&stream) {
                        Some(uid) if uid == me => spawn_conn(stream, &unix_router, &graceful, &unix_limit),
                        other => tracing::warn!("refused a socket client with uid {other:?}"),
                    }
                }
                Err(e) => accept_error(e).await,
            },
            r = accept_tcp(tcp.as_ref()) => match r {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    spawn_conn(stream, &tcp_router, &graceful, &tcp_limit);
                }
                Err(e) => accept_error(e).await,
            },
            _ = shutdown.changed() => break,
        }
    }
    drop(unix);
    drop(tcp);
    if remove_socket {
        let _ = std::fs::remove_file(&unix_path);
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after {DRAIN_TIMEOUT:?}; closing them");
    }
}

fn peer_uid(stream: &LocalStream) -> Option<u32> {
    stream.peer_creds().ok()?.euid()
}

async fn accept_tcp(tcp: Option<&tokio::net::TcpListener>) -> io::Result<tokio::net::TcpStream> {
    match tcp {
        Some(l) => l.accept().await.map(|(s, _)| s),
        None => std::future::pending().await,
    }
}

/// Accept errors (out of file descriptors, mostly) are logged and retried after a pause rather
/// than ending the loop.
async fn accept_error(e: io::Error) {
    tracing::warn!("accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// One listener's connection slots.
struct Limits {
    serving: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    header_timeout: Duration,
    refusals: RefusalLog,
}

impl Limits {
    fn new(header_timeout: Duration) -> Limits {
        Limits {
            serving: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            waiting: Arc::new(Semaphore::new(MAX_WAITING)),
            header_timeout,
            refusals: RefusalLog::default(),
        }
    }
}

/// Counts refused connections and logs them at most once per [`REFUSAL_LOG_INTERVAL`].
#[derive(Clone, Default)]
struct RefusalLog(Arc<std::sync::Mutex<(Option<std::time::Instant>, u64)>>);

impl RefusalLog {
    fn refused(&self) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        state.1 += 1;
        if state.0.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_INTERVAL) {
            tracing::warn!(
                "too many connections ({MAX_CONNECTIONS} open, {MAX_WAITING} waiting); closed {} new one(s) since the last warning",
                state.1
            );
            *state = (Some(std::time::Instant::now()), 0);
        }
    }
}

fn spawn_conn<S>(stream: S, router: &Router, graceful: &GracefulShutdown, limits: &Limits)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Taken now if there is a free slot, else waited for (a bounded number of connections, for
    // a bounded time) below.
    let permit = limits.serving.clone().try_acquire_owned();
    let waiting = match &permit {
        Ok(_) => None,
        Err(_) => match limits.waiting.clone().try_acquire_owned() {
            Ok(w) => Some(w),
            Err(_) => {
                limits.refusals.refused();
                return;
            }
        },
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
    let conn = graceful.watch(conn);
    let serving = limits.serving.clone();
    let refusals = limits.refusals.clone();
    tokio::spawn(async move {
        let permit = match permit {
            Ok(p) => p,
            Err(_) => match tokio::time::timeout(SLOT_WAIT, serving.acquire_owned()).await {
                Ok(Ok(p)) => p,
                _ => {
                    refusals.refused();
                    return; // dropping the connection closes it
                }
            },
        };
        drop(waiting);
        if let Err(e) = conn.await {
            tracing::debug!("connection ended: {e}");
        }
        drop(permit);
    });
}
