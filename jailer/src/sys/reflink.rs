//! `FICLONE`: a reflink of a whole file, the data shared copy-on-write
//! (btrfs, XFS, and other filesystems that clone).

use std::os::fd::{AsRawFd, BorrowedFd};

mod ioctl {
    // FICLONE = _IOW(0x94, 9, int): the source descriptor is passed by value.
    nix::ioctl_write_int!(ficlone, 0x94, 9);
}

/// Makes the file of `dst` share the data of `src` (`EXDEV` across
/// filesystems, `EOPNOTSUPP` or `EINVAL` where the filesystem cannot clone).
pub fn ficlone(dst: BorrowedFd<'_>, src: BorrowedFd<'_>) -> nix::Result<()> {
    // A descriptor is never negative, so it survives the widening unchanged.
    let src_fd = src.as_raw_fd() as libc::c_ulong;
    // SAFETY: FICLONE takes the source descriptor by value and reads no
    // memory of ours; both descriptors are borrowed, so open for the call.
    unsafe { ioctl::ficlone(dst.as_raw_fd(), src_fd) }.map(drop)
}
