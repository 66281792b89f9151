//! One daemon per state dir, and the TCP token.
//!
//! The lock is an exclusive `flock` on `<state dir>/agentd.pid`, which holds the owner's pid so
//! that a second daemon can say which process to look at. The kernel drops the lock when the
//! process dies, however it dies, so a crash never leaves a stale lock behind.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the daemon may not start on this state dir.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error(
        "agentd is already running on {state_dir} (pid {pid}); stop it first or use another --state-dir"
    )]
    AlreadyRunning { state_dir: PathBuf, pid: String },
    #[error("cannot use the state dir {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Dir(#[from] crate::listen::ListenError),
}

/// Held for the daemon's lifetime; dropping it empties the pid file and releases the lock.
#[derive(Debug)]
pub struct Lock {
    file: File,
}

impl Lock {
    /// Creates the state dir if needed and takes the lock, or says who holds it.
    pub fn acquire(state_dir: &Path) -> Result<Lock, InstanceError> {
        crate::listen::private_dir(state_dir)?;
        let path = state_dir.join("agentd.pid");
        let io_err = |source| InstanceError::Io {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err)?;
        if let Err(e) = file.try_lock() {
            return match e {
                std::fs::TryLockError::WouldBlock => {
                    let mut pid = String::new();
                    let _ = file.read_to_string(&mut pid);
                    let pid = pid.trim();
                    Err(InstanceError::AlreadyRunning {
                        state_dir: state_dir.to_owned(),
                        pid: if pid.is_empty() {
                            "unknown".into()
                        } else {
                            pid.to_owned()
                        },
                    })
                }
                std::fs::TryLockError::Error(e) => Err(io_err(e)),
            };
        }
        file.set_len(0).map_err(io_err)?;
        file.rewind().map_err(io_err)?;
        writeln!(file, "{}", std::process::id()).map_err(io_err)?;
        Ok(Lock { file })
    }
}

/// The pid file is emptied, never removed: unlinking a locked file would let one starting daemon
/// lock the old inode while another creates and locks a new file, and both would run.
impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// Reads the TCP token, or makes one (32 random bytes, hex) in a new `0600` file.
pub fn load_or_create_token(state_dir: &Path) -> Result<String, InstanceError> {
    load_or_create_secret(agentd_wire::paths::token_path(state_dir))
}

/// The token of the separate metrics listener (config `metrics`): `<state dir>/metrics-token`,
/// made like the API token, and a different secret, so that a scraper elsewhere never holds
/// the API's.
pub fn load_or_create_metrics_token(state_dir: &Path) -> Result<String, InstanceError> {
    load_or_create_secret(state_dir.join("metrics-token"))
}

/// Reads the 0600 secret at `path` (narrowing its mode if needed), or makes a new one.
fn load_or_create_secret(path: std::path::PathBuf) -> Result<String, InstanceError> {
    let io_err = |source| InstanceError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(t) if t.trim().len() >= 32 => {
            let meta = std::fs::metadata(&path).map_err(io_err)?;
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    "{} was readable by others; setting it to 0600",
                    path.display()
                );
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(io_err)?;
            }
            return Ok(t.trim().to_owned());
        }
        Ok(_) => tracing::warn!(
            "{} is empty or too short; making a new token",
            path.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    let mut bytes = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(io_err)?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err)?;
    f.write_all(token.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(io_err)?;
    std::fs::rename(&tmp, &path).map_err(io_err)?;
    Ok(token)
}
