//! Bringing the loopback interface up inside a new network namespace.
//!
//! One `SIOCSIFFLAGS` ioctl: a netlink crate (rtnetlink) would bring an async
//! runtime into the jail's init for a single flag.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

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
