//! Durable files and advisory locks.
//!
//! State files are replaced atomically: written to a temporary file in the
//! same directory, fsynced, renamed over the old one, and the directory is
//! fsynced, so a crash leaves either the old or the new file, never a torn one.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What went wrong writing a file or taking a lock.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock {}", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is locked by another jailer command; retry when it has finished", path.display())]
    Busy { path: PathBuf },
}

/// Replaces `path` with `data` atomically and durably.
pub fn atomic_write(path: &Path, data: &[u8]) -> Result<(), FsError> {
    replace(path, data)
}

/// Writes `data` to a temporary file and renames it over `path`, syncing
/// nothing; returns the file so the caller can make it durable in its own
/// time. For a caller that commits a btrfs transaction right after (a
/// snapshot does: that persists the rename) and fsyncs the returned file
/// concurrently with it, so the record is durable when both have returned.
/// Between the two, a crash can leave `path` empty: readers must treat an
/// empty record as one whose write did not finish.
pub fn write_unsynced(path: &Path, data: &[u8]) -> Result<File, FsError> {
    let (tmp, result) = write_tmp(path, data);
    let result = result.and_then(|f| std::fs::rename(&tmp, path).map(|()| f));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|source| FsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn write_tmp(path: &Path, data: &[u8]) -> (PathBuf, std::io::Result<File>) {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp.{}", std::process::id()));
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(data).map(|()| f));
    (tmp, f)
}

fn replace(path: &Path, data: &[u8]) -> Result<(), FsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let (tmp, f) = write_tmp(path, data);
    let result = f.and_then(|f| {
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|source| FsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// An exclusive `flock` on a lock file, released when dropped (or when the
/// process dies, however it dies).
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
    file: nix::fcntl::Flock<File>,
}

impl Lock {
    /// Takes the lock at `path`, creating the file if needed. With `wait`
    /// false, a lock held elsewhere gives [`FsError::Busy`].
    ///
    /// A holder may unlink the lock file (see [`Lock::remove`]); a waiter that
    /// then wins the lock on the unlinked inode notices and tries again, so
    /// two processes never both believe they hold the lock for one path.
    pub fn acquire(path: &Path, wait: bool) -> Result<Lock, FsError> {
        use nix::fcntl::{Flock, FlockArg};
        let err = |source| FsError::Lock {
            path: path.to_path_buf(),
            source,
        };
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(err)?;
            let arg = if wait {
                FlockArg::LockExclusive
            } else {
                FlockArg::LockExclusiveNonblock
            };
            let file = match Flock::lock(file, arg) {
                Ok(f) => f,
                Err((_, nix::Error::EWOULDBLOCK)) => {
                    return Err(FsError::Busy {
                        path: path.to_path_buf(),
                    })
                }
                Err((_, e)) => return Err(err(e.into())),
            };
            let held = file.metadata().map_err(err)?;
            match std::fs::metadata(path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                    return Ok(Lock {
                        path: path.to_path_buf(),
                        file,
                    })
                }
                // Unlinked or replaced while we waited: try again.
                _ => continue,
            }
        }
    }

    /// Removes the lock file while still holding the lock, then releases it.
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
        drop(self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("jail.json");
        atomic_write(&p, b"one").expect("write");
        atomic_write(&p, b"two").expect("write");
        assert_eq!(std::fs::read(&p).expect("read"), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("readdir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "left over: {names:?}");
    }

    #[test]
    fn atomic_write_into_missing_dir_names_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("missing/jail.json");
        let e = atomic_write(&p, b"x").expect_err("must fail");
        assert!(e.to_string().contains("missing/jail.json"), "{e}");
    }

    #[test]
    fn second_lock_is_busy_until_first_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.lock");
        let a = Lock::acquire(&p, false).expect("first");
        assert!(matches!(
            Lock::acquire(&p, false),
            Err(FsError::Busy { .. })
        ));
        drop(a);
        let b = Lock::acquire(&p, false).expect("after release");
        b.remove();
        assert!(!p.exists());
    }
}
