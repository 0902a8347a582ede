//! Bringing the loopback interface up inside a new network namespace, and
//! entering a network namespace.
//!
//! One `SIOCSIFFLAGS` ioctl: a netlink crate (rtnetlink) would bring an async
//! runtime into the jail's init for a single flag.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

const _: () = assert!(std::mem::size_of::<IfReqFlags>() == 40);

nix::ioctl_write_ptr_bad!(siocsifflags, libc::SIOCSIFFLAGS, IfReqFlags);
nix::ioctl_read_bad!(siocgifflags, libc::SIOCGIFFLAGS, IfReqFlags);

/// Sets `lo` up in the caller's network namespace.
pub fn loopback_up() -> std::io::Result<()> {
    // SAFETY: socket(2) with constant arguments; returns a new fd or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the fd was just returned by socket(2) and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: `req` is a properly sized ifreq the kernel fills in; the socket is open.
    unsafe { siocgifflags(sock.as_raw_fd(), &mut req) }?;
    req.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: as above; the kernel only reads `req`.
    unsafe { siocsifflags(sock.as_raw_fd(), &req) }?;
    Ok(())
}

/// Moves the calling thread into the network namespace `netns` (an fd of
/// `/proc/PID/ns/net`). Only this thread moves; sockets it opens from now
/// on belong to that namespace, those it had keep theirs.
pub fn enter_netns(netns: std::os::fd::BorrowedFd<'_>) -> std::io::Result<()> {
    nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
}

/// Writes `content` to the file at the absolute `path` of the caller's
/// root (the jail's, in its init after `pivot_root`). The directory is
/// resolved inside that root on the root's own filesystem (no magic links,
/// no crossing into `/proc` or `/dev`); the last component is never
/// followed: whatever non-regular file is there (a symlink, a FIFO, a
/// device node) is replaced by a regular file, mode 0644.
pub fn write_jail_file(path: &str, content: &[u8]) -> std::io::Result<()> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    use nix::sys::stat::{fstatat, Mode, SFlag};
    use std::io::Write;
    let (dir, file) = match path.trim_start_matches('/').rsplit_once('/') {
        Some((d, f)) => (d, f),
        None => (".", path.trim_start_matches('/')),
    };
    if file.is_empty() || file == "." || file == ".." {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(
            ResolveFlag::RESOLVE_IN_ROOT
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        );
    let root = crate::sys::fd::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let raw = nix::fcntl::openat2(root.as_raw_fd(), dir, how)?;
    // SAFETY: openat2 just returned this descriptor; nothing else owns it.
    let dirfd = unsafe { OwnedFd::from_raw_fd(raw) };
    match fstatat(
        Some(dirfd.as_raw_fd()),
        file,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG => {}
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR => {
            return Err(std::io::Error::from_raw_os_error(libc::EISDIR));
        }
        Ok(_) => nix::unistd::unlinkat(
            Some(dirfd.as_raw_fd()),
            file,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        )?,
        Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    let fd = crate::sys::fd::openat(
        dirfd.as_fd(),
        file,
        OFlag::O_WRONLY
            | OFlag::O_CREAT
            | OFlag::O_TRUNC
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )?;
    let st = nix::sys::stat::fstat(fd.as_raw_fd())?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    std::fs::File::from(fd).write_all(content)
}
