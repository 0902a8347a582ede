//! Descriptors made and owned: `open`/`openat` and `fcntl(F_DUPFD)` return
//! an [`OwnedFd`] (nix hands back a bare number), and a write of a whole
//! buffer to a borrowed descriptor.

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag};
use nix::sys::stat::Mode;
use nix::NixPath;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `open(2)` of `path`; the flags as given (add `O_CLOEXEC` yourself).
pub fn open<P: ?Sized + NixPath>(path: &P, flags: OFlag, mode: Mode) -> nix::Result<OwnedFd> {
    let fd = nix::fcntl::open(path, flags, mode)?;
    // SAFETY: open(2) just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat(2)` of `name` relative to `dir`; the flags as given.
pub fn openat<P: ?Sized + NixPath>(
    dir: BorrowedFd<'_>,
    name: &P,
    flags: OFlag,
    mode: Mode,
) -> nix::Result<OwnedFd> {
    let fd = nix::fcntl::openat(Some(dir.as_raw_fd()), name, flags, mode)?;
    // SAFETY: openat(2) just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A duplicate of `fd` numbered `min` or above (`F_DUPFD`: close-on-exec
/// clear).
pub fn dup_from(fd: BorrowedFd<'_>, min: RawFd) -> nix::Result<OwnedFd> {
    let new = nix::fcntl::fcntl(fd.as_raw_fd(), FcntlArg::F_DUPFD(min))?;
    // SAFETY: fcntl(F_DUPFD) just returned this new descriptor; nothing else
    // owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Writes all of `buf` to `fd` (retrying short writes and `EINTR`); a
/// write of nothing is `EIO`. For a forked child, which writes to a
/// descriptor it does not own (no `File` to close it twice).
pub fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> nix::Result<()> {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(0) => return Err(Errno::EIO),
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
