//! Opening files agentd did not create: every read of a transcript, registry file, run log,
//! price table, config or key file goes through here.
//!
//! A watched dir is somebody else's naming: a FIFO there would block a plain `open` forever, a
//! link to `/dev/zero` would make a plain `read_to_end` allocate without end, and in a dir that
//! other users can write a symlink could point at one of this user's private files. So every
//! file is opened read-only, non-blocking and close-on-exec, checked to be a regular file **on
//! the opened handle** (no window between the check and the open), and read with a size bound.
//! What else is required of it ([`Trust`]) depends on who may have put it there.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// What a file must satisfy beyond being a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// A file the user named (config, price table, key file): any owner, and a character
    /// device such as `/dev/null` is read too (within the size bound).
    Named,
    /// A file found in a watched dir: it must belong to this user. In a dir that this user does
    /// not own (a shared runs dir, mode 1777), a symlink is refused outright (another user may
    /// have planted it, pointing at one of ours) and so is a file with more than one hard link.
    Found,
}

/// The real user id of this process.
pub fn my_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

fn refused(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, why)
}

/// What kind of thing `meta` describes, for error messages.
fn kind_of(meta: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// How long a dir's owner, once looked up, is taken as known: a scan opens every file of a
/// dir in turn, and asking for the dir's owner before each was a path lookup per file. A dir
/// changes owner only by the superuser's hand; this is far shorter than anything that does.
const DIR_OWNER_KNOWN_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// Dirs whose owner a thread keeps at most; past it the ones kept are forgotten at once.
const DIR_OWNERS_KEPT: usize = 1024;

thread_local! {
    /// The dirs this thread looked up lately: whether this user owned each, and when asked.
    static DIR_OWNERS: std::cell::RefCell<std::collections::HashMap<std::path::PathBuf, (bool, std::time::Instant)>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Whether `dir` exists and belongs to `uid` (this process's user; an answer is reused for
/// [`DIR_OWNER_KNOWN_FOR`]).
fn owned_dir(dir: &Path, uid: u32) -> bool {
    let known = DIR_OWNERS.with(|owners| {
        owners
            .borrow()
            .get(dir)
            .filter(|(_, at)| at.elapsed() < DIR_OWNER_KNOWN_FOR)
            .map(|(owned, _)| *owned)
    });
    if let Some(owned) = known {
        return owned;
    }
    let owned = std::fs::metadata(dir).is_ok_and(|m| m.uid() == uid);
    DIR_OWNERS.with(|owners| {
        let mut owners = owners.borrow_mut();
        if owners.len() >= DIR_OWNERS_KEPT {
            owners.clear();
        }
        owners.insert(dir.to_owned(), (owned, std::time::Instant::now()));
    });
    owned
}

/// Opens `path` for reading under `trust`, returning the handle and its metadata (from the
/// handle itself).
pub fn open(path: &Path, trust: Trust) -> io::Result<(File, Metadata)> {
    let me = my_uid();
    // In a dir that is not ours, links are someone else's: never follow them.
    let foreign_dir = trust == Trust::Found && path.parent().is_none_or(|d| !owned_dir(d, me));
    let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    if foreign_dir {
        flags |= libc::O_NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| {
            if foreign_dir && e.raw_os_error() == Some(libc::ELOOP) {
                refused("a symlink in a directory owned by another user; not followed".into())
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    // A file the user named may be `/dev/null` ("no config"); the size bound of
    // `read_bounded` keeps any other device from being read without end.
    let named_device = trust == Trust::Named && {
        use std::os::unix::fs::FileTypeExt;
        meta.file_type().is_char_device()
    };
    if !meta.is_file() && !named_device {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}, not a regular file", kind_of(&meta)),
        ));
    }
    if trust == Trust::Found {
        if meta.uid() != me {
            // A shared dir must not let another user put words in this user's mouth.
            return Err(refused(format!(
                "owned by uid {}, not by this user",
                meta.uid()
            )));
        }
        if foreign_dir && meta.nlink() > 1 {
            return Err(refused(
                "a hard-linked file in a directory owned by another user; not read".into(),
            ));
        }
    }
    Ok((file, meta))
}

/// Reads a whole file of at most `max` bytes, refusing a larger one with a message that says so.
pub fn read_bounded(path: &Path, trust: Trust, max: u64) -> io::Result<Vec<u8>> {
    let (file, meta) = open(path, trust)?;
    let too_big = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {} KiB; not read", max / 1024),
        )
    };
    if meta.len() > max {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow between the stat and the read: read one byte past the bound to tell.
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_big());
    }
    Ok(bytes)
}

/// [`read_bounded`] as UTF-8 text.
pub fn read_text(path: &Path, trust: Trust, max: u64) -> io::Result<String> {
    String::from_utf8(read_bounded(path, trust, max)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("agentd-fsread-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn fifos_devices_and_dirs_are_refused_without_blocking() {
        let dir = scratch("kinds");
        let fifo = dir.join("f.jsonl");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = open(&fifo, Trust::Found).unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");
        let link = dir.join("zero.jsonl");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let e = read_bounded(&link, Trust::Found, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("a device"), "{e}");
        // A named device is read within the bound: `/dev/null` is empty, `/dev/zero` too big.
        assert_eq!(
            read_bounded(Path::new("/dev/null"), Trust::Named, 10).unwrap(),
            b""
        );
        let e = read_bounded(&link, Trust::Named, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
        assert!(open(&dir, Trust::Named).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_over_the_bound_is_refused() {
        let dir = scratch("bound");
        let p = dir.join("big");
        std::fs::write(&p, vec![b'x'; 2048]).unwrap();
        assert_eq!(read_bounded(&p, Trust::Named, 2048).unwrap().len(), 2048);
        let e = read_bounded(&p, Trust::Named, 1024).unwrap_err();
        assert!(e.to_string().contains("larger than 1 KiB"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
