//! The new mount API (open_tree, mount_setattr, move_mount; fsopen,
//! fsconfig, fsmount): idmapped mounts, and new filesystems mounted on a
//! directory held by fd (no path walked at mount time).
//!
//! nix 0.29 and rustix do not wrap these, so the syscalls are issued here
//! through `libc::syscall`, each behind a small safe function.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const AT_EMPTY_PATH: libc::c_uint = 0x1000;
const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
const MOUNT_ATTR_NOSUID: u64 = 0x0000_0002;
const MOUNT_ATTR_NODEV: u64 = 0x0000_0004;
const MOUNT_ATTR_NOEXEC: u64 = 0x0000_0008;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x0000_0004;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x0000_0040;
const FSOPEN_CLOEXEC: libc::c_uint = 0x0000_0001;
const FSMOUNT_CLOEXEC: libc::c_uint = 0x0000_0001;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;

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
    #[error("cannot open a new {fstype} filesystem (fsopen)")]
    FsOpen {
        fstype: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot configure the new {fstype} filesystem ({what}){}",
        kernel_says(detail)
    )]
    FsConfig {
        fstype: String,
        what: String,
        /// What the kernel logged on the filesystem context, if anything.
        detail: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot mount the new {fstype} filesystem (fsmount)")]
    FsMount {
        fstype: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot make the mount at {} read-only", path.display())]
    ReadOnly {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn kernel_says(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": the kernel says {detail:?}")
    }
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

/// A string argument for the fs syscalls, or the error naming it.
fn cstr(s: &str, fstype: &str) -> Result<CString, MountApiError> {
    CString::new(s).map_err(|_| MountApiError::Nul {
        path: PathBuf::from(format!("{fstype}: {s}")),
    })
}

/// A new filesystem of type `fstype`, not attached anywhere yet: `flags`
/// and `options` (key, value) configure it as `-o` would, and its mount is
/// `nosuid,nodev,noexec`, and read-only with `read_only`. Attach it with
/// [`attach_at`]; the returned fd (close-on-exec) stays a handle on the
/// mount's root. The filesystem is made in the caller's namespaces (a
/// cgroupfs shows the caller's cgroup namespace's root).
pub fn new_mount(
    fstype: &str,
    flags: &[&str],
    options: &[(&str, &str)],
    read_only: bool,
) -> Result<OwnedFd, MountApiError> {
    let name = cstr(fstype, fstype)?;
    // SAFETY: fsopen(2) reads the NUL-terminated name during the call and
    // returns a new fd or -1; nothing is retained.
    let fd = unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) };
    let fs = owned(fd).map_err(|source| MountApiError::FsOpen {
        fstype: fstype.to_string(),
        source,
    })?;
    let config = |cmd: libc::c_uint, key: Option<&CString>, value: Option<&CString>| {
        let ptr = |c: Option<&CString>| c.map_or(std::ptr::null(), |c| c.as_ptr());
        // SAFETY: fsconfig(2) reads the NUL-terminated key and value (or
        // takes null where the command has none) during the call only; the
        // fs context fd is open.
        let r = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                cmd,
                ptr(key),
                ptr(value),
                0 as libc::c_int,
            )
        };
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    let failed = |what: String, source: std::io::Error| MountApiError::FsConfig {
        fstype: fstype.to_string(),
        what,
        detail: context_log(fs.as_fd()),
        source,
    };
    for f in flags {
        config(FSCONFIG_SET_FLAG, Some(&cstr(f, fstype)?), None)
            .map_err(|e| failed(format!("option {f}"), e))?;
    }
    for (k, v) in options {
        config(
            FSCONFIG_SET_STRING,
            Some(&cstr(k, fstype)?),
            Some(&cstr(v, fstype)?),
        )
        .map_err(|e| failed(format!("option {k}={v}"), e))?;
    }
    config(FSCONFIG_CMD_CREATE, None, None).map_err(|e| failed("create".into(), e))?;
    let mut attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    if read_only {
        attrs |= MOUNT_ATTR_RDONLY;
    }
    // SAFETY: fsmount(2) takes the open fs context fd and integers, and
    // returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) };
    owned(fd).map_err(|source| MountApiError::FsMount {
        fstype: fstype.to_string(),
        source,
    })
}

/// Makes the mount whose root `mnt` holds read-only (that mount only, not
/// those on it). `what` names it in the error.
pub fn make_read_only(mnt: BorrowedFd<'_>, what: &Path) -> Result<(), MountApiError> {
    set_attrs(mnt, MOUNT_ATTR_RDONLY, 0, what)
}

/// Makes every mount of the detached tree `tree` read-only, `nosuid`,
/// `nodev` and `noexec`: a view of host files that a jail may read and
/// nothing else (the staging directory of a package install).
pub fn restrict_tree(tree: BorrowedFd<'_>, what: &Path) -> Result<(), MountApiError> {
    set_attrs(
        tree,
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
        AT_RECURSIVE,
        what,
    )
}

fn set_attrs(
    mnt: BorrowedFd<'_>,
    attr_set: u64,
    recursive: libc::c_uint,
    what: &Path,
) -> Result<(), MountApiError> {
    let attr = MountAttr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let empty = c"";
    // SAFETY: mount_setattr(2) reads `attr` (size given) and the empty path
    // during the call only; both outlive it, and the fd is open.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            AT_EMPTY_PATH | recursive,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(MountApiError::ReadOnly {
            path: what.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// The fd a syscall returned, owned; or the error it set.
fn owned(fd: libc::c_long) -> std::io::Result<OwnedFd> {
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The messages the kernel logged on an fs context (read(2) of its fd
/// gives one per call, prefixed `e `, `w ` or `i `), joined; empty if none.
fn context_log(fd: BorrowedFd<'_>) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    // A handful at most; the read fails with ENODATA once none are left.
    for _ in 0..8 {
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(n) if n > 0 => out.push(String::from_utf8_lossy(&buf[..n]).trim().to_string()),
            _ => break,
        }
    }
    out.join("; ")
}
