//! The DHCP client's link-layer socket, and running a thread in another
//! network namespace.
//!
//! DHCP has to be spoken before the interface has an address, so the client
//! (`crate::dhcp`) uses an `AF_PACKET`/`SOCK_DGRAM` socket bound to the
//! jail's interface: it sends IPv4/UDP packets it built itself (the kernel
//! adds the Ethernet header for the destination MAC given), and receives the
//! IPv4 packets the interface sees before the IP stack judges them. A plain
//! UDP socket with `SO_BINDTODEVICE` and `SO_BROADCAST` would send, but its
//! replies pass through IP input first, where reverse-path filtering (which
//! a new namespace inherits from the host's `rp_filter`) drops broadcasts
//! from a server the address-less interface has no route to; and the jail,
//! which holds `net_bind_service`, could bind UDP port 68 in its own
//! namespace before the monitor does. A packet socket needs neither an
//! address nor the port, and works the same on macvlan and ipvlan children
//! (both deliver broadcasts to their packet taps; ipvlan's unicast needs the
//! address configured, which it is once a lease is bound).
//!
//! A classic BPF filter keeps only unfragmented UDP to port 68, so the
//! monitor does not wake for the jail's other traffic. Neither nix nor
//! rustix wraps `sockaddr_ll` sends and `SO_ATTACH_FILTER`, so those few
//! calls are issued through libc here, each behind a small safe function.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `ETH_P_IP` in network byte order, as `sll_protocol` wants it.
fn eth_p_ip_be() -> u16 {
    (libc::ETH_P_IP as u16).to_be()
}

/// An `AF_PACKET` datagram socket bound to one interface, seeing only
/// unfragmented IPv4 UDP to port 68 (the DHCP client port).
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

/// What [`PacketSocket::recv`] got besides the bytes.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// Bytes of the IPv4 packet written into the buffer.
    pub len: usize,
    /// The link-layer source address of the frame.
    pub src_mac: [u8; 6],
    /// The frame was sent from this host's namespace (`PACKET_OUTGOING`):
    /// never a server's answer, whatever it says.
    pub outgoing: bool,
}

fn sockaddr_ll(ifindex: i32, mac: [u8; 6]) -> libc::sockaddr_ll {
    let mut addr = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: eth_p_ip_be(),
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: [0; 8],
    };
    addr.sll_addr[..6].copy_from_slice(&mac);
    addr
}

/// The filter: accept IPv4 (the socket's protocol already says so) whose
/// protocol is UDP, that is no fragment, and whose UDP destination port is
/// 68. Offsets are from the start of the IP header (a `SOCK_DGRAM` packet
/// socket strips the link header).
fn udp68_filter() -> [libc::sock_filter; 9] {
    const LD_B_ABS: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
    const LD_H_ABS: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
    const LD_H_IND: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_IND) as u16;
    const LDX_MSH: u16 = (libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH) as u16;
    const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JSET: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
    const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    [
        op(LD_B_ABS, 0, 0, 9),      // 0: A = ip protocol
        op(JEQ, 0, 6, 17),          // 1: UDP? else drop (8)
        op(LD_H_ABS, 0, 0, 6),      // 2: A = flags + fragment offset
        op(JSET, 4, 0, 0x1fff),     // 3: a fragment? drop (8)
        op(LDX_MSH, 0, 0, 0),       // 4: X = 4 * (ip[0] & 0xf)
        op(LD_H_IND, 0, 0, 2),      // 5: A = udp destination port
        op(JEQ, 0, 1, 68),          // 6: port 68? else drop (8)
        op(RET, 0, 0, 0x0004_0000), // 7: accept (whole packet)
        op(RET, 0, 0, 0),           // 8: drop
    ]
}

impl PacketSocket {
    /// Opens the socket on `ifindex` in the calling thread's network
    /// namespace. Needs `CAP_NET_RAW` there (the monitor, never the jail).
    pub fn open(ifindex: u32) -> std::io::Result<Self> {
        let ifindex =
            i32::try_from(ifindex).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        // Protocol 0 at creation: the socket receives nothing until it is
        // bound, so no packet of another interface is queued before the
        // filter is in place.
        // SAFETY: socket(2) with constant arguments; returns a new fd or -1.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the fd was just returned by socket(2) and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut filter = udp68_filter();
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_mut_ptr(),
        };
        // SAFETY: `prog` points at `filter`, which outlives the call; the
        // kernel copies the program and keeps no pointer.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                std::ptr::from_ref(&prog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let addr = sockaddr_ll(ifindex, [0; 6]);
        // SAFETY: `addr` is a valid sockaddr_ll of the size passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::from_ref(&addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(PacketSocket { fd, ifindex })
    }

    /// Sends one IPv4 packet to the link-layer address `dst_mac`
    /// (`ff:ff:ff:ff:ff:ff` for a broadcast).
    pub fn send(&self, dst_mac: [u8; 6], packet: &[u8]) -> std::io::Result<()> {
        let addr = sockaddr_ll(self.ifindex, dst_mac);
        // SAFETY: `packet` is a valid buffer of the length passed and `addr`
        // a valid sockaddr_ll of the size passed; the kernel only reads both.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                std::ptr::from_ref(&addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if n as usize != packet.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "short send on the packet socket",
            ));
        }
        Ok(())
    }

    /// Receives one queued packet without blocking: `Ok(None)` when none is
    /// queued (wait with poll on [`AsFd`]). A packet longer than `buf` is
    /// cut (a DHCP reply fits in 1500 bytes; the caller's parser rejects a
    /// cut one).
    pub fn recv(&self, buf: &mut [u8]) -> std::io::Result<Option<Received>> {
        let mut addr = sockaddr_ll(0, [0; 6]);
        let mut alen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `buf` is a valid writable buffer of the length passed;
        // `addr`/`alen` are a valid sockaddr_ll and its size, written by the kernel.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                std::ptr::from_mut(&mut addr).cast(),
                &mut alen,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
                _ => Err(e),
            };
        }
        let mut src_mac = [0; 6];
        src_mac.copy_from_slice(&addr.sll_addr[..6]);
        Ok(Some(Received {
            len: n as usize,
            src_mac,
            outgoing: addr.sll_pkttype == libc::PACKET_OUTGOING,
        }))
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Runs `f` on a new thread that first joins the network namespace `netns`
/// (an fd of `/proc/PID/ns/net` or of a bind mount of it), and returns what
/// it returned. Only that thread changes namespace; the caller's stays as it
/// was. Network namespaces need nothing else of a thread (no unshared
/// `CLONE_FS`, unlike mount namespaces).
pub fn in_netns<T, F>(netns: BorrowedFd<'_>, f: F) -> std::io::Result<T>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET)?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| {
            Err(std::io::Error::other(
                "the thread in the network namespace panicked",
            ))
        })
    })
}

/// Moves the calling thread (only it) into the network namespace `netns`,
/// and closes the fd. For a thread made for the purpose: it never goes back.
pub fn join_netns(netns: OwnedFd) -> std::io::Result<()> {
    nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)?;
    Ok(())
}

/// Like [`in_netns`], for a thread that outlives the caller's frame (the
/// DHCP maintenance loop of a running jail): it owns the namespace fd until
/// it has joined it, and its handle yields `f`'s result or the `setns` error.
pub fn spawn_in_netns<T, F>(
    name: String,
    netns: OwnedFd,
    f: F,
) -> std::io::Result<std::thread::JoinHandle<std::io::Result<T>>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    std::thread::Builder::new().name(name).spawn(move || {
        join_netns(netns)?;
        Ok(f())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_jumps_stay_inside_the_program() {
        let prog = udp68_filter();
        for (i, ins) in prog.iter().enumerate() {
            let class = u32::from(ins.code) & 0x07;
            if class == libc::BPF_JMP {
                assert!(i + 1 + usize::from(ins.jt) < prog.len(), "jt of {i}");
                assert!(i + 1 + usize::from(ins.jf) < prog.len(), "jf of {i}");
            }
        }
        assert_eq!(
            u32::from(prog[prog.len() - 1].code),
            libc::BPF_RET | libc::BPF_K
        );
    }
}
