//! Durable files and advisory locks.
//!
//! State files are replaced atomically: written to a temporary file in the
//! same directory, fsynced, renamed over the old one, and the directory is
//! fsynced, so a crash leaves either the old or the new file, never a torn one.
//!
//! Every file made here is mode 0600 and every directory 0700, whatever the
//! umask: records hold a jail's environment (secrets among it), and a lock
//! another user could open is a lock another user could hold.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
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
    #[error("{} is still locked after {} s{}; retry when that command has finished, or raise JAILER_LOCK_TIMEOUT", path.display(), waited.as_secs(), holder.as_ref().map(|h| format!(" (held by {h})")).unwrap_or_default())]
    TimedOut {
        path: PathBuf,
        waited: std::time::Duration,
        /// `pid N (COMMAND)` of the holder, from `/proc/locks`, when known.
        holder: Option<String>,
    },
    #[error("cannot create directory {}", path.display())]
    Mkdir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How long a verb waits for a lock another command holds, unless
/// `JAILER_LOCK_TIMEOUT` (seconds) says otherwise: longer than any verb
/// holds one in normal operation (`stop` waits its timeout, 10 s by
/// default, plus 10 s for the kill), short enough that a stuck holder is
/// reported rather than waited for forever.
pub const DEFAULT_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn lock_timeout() -> std::time::Duration {
    std::env::var("JAILER_LOCK_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map_or(DEFAULT_LOCK_TIMEOUT, std::time::Duration::from_secs_f64)
}

/// Creates `path` (and missing parents) mode 0700; an existing directory
/// is set to 0700.
pub fn private_dir(path: &Path) -> Result<(), FsError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let err = |source| FsError::Mkdir {
        path: path.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(err)
}

/// Creates the directory `path` mode 0700 (it must not exist yet).
pub fn mkdir_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(path)
}

/// Who holds a lock on the file `held` (an open handle of `path`), from
/// the kernel's lock table (`/proc/locks` under `proc_root`): `pid N
/// (COMMAND)`. The table names the filesystem's device, which on btrfs is
/// not the one `stat` reports, so a candidate found by inode number is
/// confirmed by an open fd of that pid on `path` where its fds can be read.
fn lock_holder(proc_root: &Path, path: &Path, held: &std::fs::Metadata) -> Option<String> {
    let proc = crate::procinfo::Proc::new(proc_root);
    let pid = proc
        .lock_holders(held.ino())
        .into_iter()
        .find(|pid| holds_open(proc_root, *pid, path).unwrap_or(true))?;
    let comm = proc.comm(pid).unwrap_or_default();
    Some(if comm.is_empty() {
        format!("pid {pid}")
    } else {
        format!("pid {pid} ({})", crate::display::escape(&comm))
    })
}

/// Whether `pid` has `path` open (`None`: its fds cannot be read).
fn holds_open(proc_root: &Path, pid: i32, path: &Path) -> Option<bool> {
    let rd = std::fs::read_dir(proc_root.join(format!("{pid}/fd"))).ok()?;
    Some(
        rd.flatten()
            .any(|e| std::fs::read_link(e.path()).is_ok_and(|l| l == path)),
    )
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
        .mode(0o600)
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
    /// Takes the lock at `path`, creating the file (0600) if needed. With
    /// `wait` false, a lock held elsewhere gives [`FsError::Busy`]; with
    /// `wait`, it is waited for up to `JAILER_LOCK_TIMEOUT` seconds
    /// ([`DEFAULT_LOCK_TIMEOUT`]), then [`FsError::TimedOut`] names the
    /// holder.
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
        let limit = if wait {
            lock_timeout()
        } else {
            std::time::Duration::ZERO
        };
        let t0 = std::time::Instant::now();
        let mut pause = std::time::Duration::from_millis(1);
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(err)?;
            // Polled rather than blocking, so that the wait is bounded; the
            // pause grows to 50 ms, which only a contended lock ever pays.
            let file = loop {
                match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                    Ok(f) => break f,
                    Err((f, nix::Error::EWOULDBLOCK)) if t0.elapsed() < limit => {
                        file = f;
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(std::time::Duration::from_millis(50));
                    }
                    Err((f, nix::Error::EWOULDBLOCK)) => {
                        if !wait {
                            return Err(FsError::Busy {
                                path: path.to_path_buf(),
                            });
                        }
                        let holder = f
                            .metadata()
                            .ok()
                            .and_then(|m| lock_holder(Path::new("/proc"), path, &m));
                        return Err(FsError::TimedOut {
                            path: path.to_path_buf(),
                            waited: t0.elapsed(),
                            holder,
                        });
                    }
                    Err((_, e)) => return Err(err(e.into())),
                }
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

    #[test]
    fn records_and_locks_are_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("jail.json");
        atomic_write(&p, b"{}").expect("write");
        let l = dir.path().join("x.lock");
        let _lock = Lock::acquire(&l, false).expect("lock");
        for f in [&p, &l] {
            let mode = std::fs::metadata(f).expect("stat").mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.display());
        }
        let d = dir.path().join("a/b");
        private_dir(&d).expect("mkdir");
        let mode = std::fs::metadata(&d).expect("stat").mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
