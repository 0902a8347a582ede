//! The new mount API (open_tree, mount_setattr, move_mount): idmapped mounts.
//!
//! nix 0.29 and rustix do not wrap `mount_setattr` with `MOUNT_ATTR_IDMAP`, so
//! the three syscalls are issued here through `libc::syscall`, each behind a
//! small safe function.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const AT_EMPTY_PATH: libc::c_uint = 0x1000;
const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x0000_0004;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x0000_0040;

/// `struct mount_attr` (MOUNT_ATTR_SIZE_VER0) from `include/uapi/linux/mount.h`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const _: () = assert!(std::mem::size_of::<MountAttr>() == 32);

/// What went wrong with the mount API.
#[derive(Debug, thiserror::Error)]
pub enum MountApiError {
    #[error("cannot clone the mount tree at {}", path.display())]
    OpenTree {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot make the idmapped, nodev view of {} (needs kernel 5.12+ and a filesystem that supports idmapped mounts)", path.display())]
    Idmap {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot attach the mount at {}", target.display())]
    Move {
        target: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("path {} contains a NUL byte", path.display())]
    Nul { path: PathBuf },
}

fn cpath(p: &Path) -> Result<CString, MountApiError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| MountApiError::Nul {
        path: p.to_path_buf(),
    })
}

/// A detached, recursive copy of the mount tree at `path`, close-on-exec.
pub fn clone_tree(path: &Path) -> Result<OwnedFd, MountApiError> {
    let c = cpath(path)?;
    let flags = OPEN_TREE_CLONE | AT_RECURSIVE | libc::O_CLOEXEC as libc::c_uint;
    // SAFETY: open_tree(2) reads the NUL-terminated path for the duration of
    // the call and returns a new fd or -1; no memory is retained.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(MountApiError::OpenTree {
            path: path.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    let fd = i32::try_from(fd).map_err(|_| MountApiError::OpenTree {
        path: path.to_path_buf(),
        source: std::io::Error::from_raw_os_error(libc::EBADF),
    })?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes the detached tree `tree` (every mount in it) the jail's view of
/// its rootfs, in one `mount_setattr`: idmapped through user namespace
/// `userns` (on-disk ids are shown through that namespace's id map),
/// `nodev` (a device node in the tree, from a template or a snapshot the
/// jail takes of itself, opens nothing: EACCES) and `suid`, whatever the
/// host's pool mount says (setuid programs of the jail's own keep their
/// meaning inside its view).
pub fn idmap(
    tree: BorrowedFd<'_>,
    userns: BorrowedFd<'_>,
    what: &Path,
) -> Result<(), MountApiError> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP | MOUNT_ATTR_NODEV,
        attr_clr: MOUNT_ATTR_NOSUID,
        propagation: 0,
        userns_fd: u64::try_from(userns.as_raw_fd()).unwrap_or(u64::MAX),
    };
    let empty = c"";
    // SAFETY: mount_setattr(2) reads `attr` (size given) and the empty path
    // during the call only; both outlive it, and the fds are open.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            AT_EMPTY_PATH | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(MountApiError::Idmap {
            path: what.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Attaches the detached tree `tree` at `target` in the caller's mount
/// namespace.
pub fn attach(tree: BorrowedFd<'_>, target: &Path) -> Result<(), MountApiError> {
    let c = cpath(target)?;
    let empty = c"";
    // SAFETY: move_mount(2) reads both NUL-terminated paths during the call
    // only; the tree fd is open.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(MountApiError::Move {
            target: target.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Attaches the detached tree `tree` on the directory `target` (an fd, so
/// the caller need not be able to walk the target's path any more).
pub fn attach_at(
    tree: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    what: &Path,
) -> Result<(), MountApiError> {
    let empty = c"";
    // SAFETY: move_mount(2) reads the two empty NUL-terminated paths during
    // the call only; both fds are open.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(MountApiError::Move {
            target: what.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}
