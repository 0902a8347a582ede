//! A small synchronous rtnetlink client: the link, address and route
//! requests the jail's network needs, over netlink-sys's socket with
//! netlink-packet-route's messages (as youki does; the `rtnetlink` crate
//! would bring an async runtime into the monitor for a dozen requests).
//!
//! A socket belongs to the network namespace it was opened in, for its
//! whole life: [`Rtnl::open`] talks to the caller's namespace, and
//! [`Rtnl::open_in`] (a thread that enters the namespace, opens the socket
//! and ends) to another one, without ever moving the calling thread.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoIpVlan, InfoKind, InfoMacVlan, IpVlanMode, LinkAttribute, LinkFlags, LinkInfo,
    LinkMessage, MacVlanMode,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// A link as the kernel reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `IFF_UP` (administratively up).
    pub up: bool,
    pub mtu: u32,
    pub mac: Option<[u8; 6]>,
    /// `macvlan`, `ipvlan`, `veth`, ...; empty for a physical NIC or `lo`.
    pub kind: String,
    /// The index of the link's parent (`IFLA_LINK`), if it has one.
    pub parent: Option<u32>,
    /// The counters (`IFLA_STATS64`), zero when the kernel gave none.
    pub stats: Counters,
}

/// A link's traffic counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

/// An IPv4 address on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    pub ip: Ipv4Addr,
    pub prefix: u8,
}

/// The child link to make on a parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildKind {
    Macvlan(MacvlanMode),
    Ipvlan(IpvlanMode),
}

/// `IFLA_MACVLAN_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacvlanMode {
    Bridge,
    Private,
    Vepa,
    Passthru,
}

/// `IFLA_IPVLAN_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpvlanMode {
    L2,
    L3,
}

/// An rtnetlink socket in one network namespace.
#[derive(Debug)]
pub struct Rtnl {
    sock: Socket,
    seq: u32,
}

impl Rtnl {
    /// A socket in the caller's network namespace.
    pub fn open() -> std::io::Result<Rtnl> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        // Errors carry the kernel's extended message where it has one.
        let _ = sock.set_ext_ack(true);
        Ok(Rtnl { sock, seq: 0 })
    }

    /// A socket in the network namespace `netns` (an fd of
    /// `/proc/PID/ns/net`), opened by a short-lived thread that enters it:
    /// the calling thread never changes namespace.
    pub fn open_in(netns: BorrowedFd<'_>) -> std::io::Result<Rtnl> {
        let ns = netns.try_clone_to_owned()?;
        std::thread::scope(|s| {
            s.spawn(move || {
                crate::sys::net::enter_netns(ns.as_fd())?;
                Rtnl::open()
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("netlink thread panicked")))
        })
    }

    /// A socket in the namespace `netns`, opened by the calling thread,
    /// which enters it and goes back to `home` (an fd of its own namespace)
    /// at once: for a process that must stay single-threaded (the monitor
    /// forks the jail's init again at a restart).
    pub fn open_here_in(netns: BorrowedFd<'_>, home: BorrowedFd<'_>) -> std::io::Result<Rtnl> {
        crate::sys::net::enter_netns(netns)?;
        let sock = Rtnl::open();
        crate::sys::net::enter_netns(home).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot return to the host's network namespace: {e}"),
            )
        })?;
        sock
    }

    /// Sends one request and collects its answers: the messages of a dump
    /// (until `NLMSG_DONE`), or nothing for an acknowledged change. A
    /// negative acknowledgement is the errno it carries.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> std::io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.sock.send(&buf, 0)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        let mut rx = vec![0u8; 64 << 10];
        loop {
            let n = self.sock.recv(&mut &mut rx[..], 0)?;
            let mut off = 0;
            while off < n {
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[off..n])
                    .map_err(|e| std::io::Error::other(format!("bad netlink answer: {e}")))?;
                let len = m.header.length as usize;
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
                if m.header.sequence_number != self.seq {
                    continue;
                }
                match m.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(_) => Err(e.to_io()),
                        }
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::InnerMessage(inner) => {
                        out.push(inner);
                        if !dump {
                            // A GET of one object: its answer, then nothing.
                            return Ok(out);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> std::io::Result<Vec<Link>> {
        let msgs = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(parse_link(l)),
                _ => None,
            })
            .collect())
    }

    /// The link named `name`, if there is one.
    pub fn link_by_name(&mut self, name: &str) -> std::io::Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(v) => Ok(v.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(parse_link(l)),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every IPv4 address of the namespace.
    pub fn addresses(&mut self) -> std::io::Result<Vec<Address>> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        let msgs = self.request(RouteNetlinkMessage::GetAddress(msg), NLM_F_DUMP)?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => {
                    let ip = a.attributes.iter().find_map(|at| match at {
                        AddressAttribute::Local(IpAddr::V4(ip))
                        | AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                        _ => None,
                    })?;
                    Some(Address {
                        index: a.header.index,
                        ip,
                        prefix: a.header.prefix_len,
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// The name of the link the IPv4 default route of the main table
    /// leaves by, if there is one.
    pub fn default_route_link(&mut self) -> std::io::Result<Option<u32>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        let msgs = self.request(RouteNetlinkMessage::GetRoute(msg), NLM_F_DUMP)?;
        Ok(msgs.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewRoute(r)
                if r.header.destination_prefix_length == 0
                    && r.header.table == RouteHeader::RT_TABLE_MAIN =>
            {
                r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Oif(i) => Some(*i),
                    _ => None,
                })
            }
            _ => None,
        }))
    }

    /// Makes a macvlan or ipvlan link named `name` on the link `parent` of
    /// this socket's namespace, with `mac` and `mtu` where given, created
    /// directly in the namespace `netns` (an fd of `/proc/PID/ns/net`): it
    /// never exists in this one.
    pub fn add_child(
        &mut self,
        parent: u32,
        name: &str,
        kind: ChildKind,
        mac: Option<[u8; 6]>,
        mtu: Option<u32>,
        netns: BorrowedFd<'_>,
    ) -> std::io::Result<()> {
        let mut msg = LinkMessage::default();
        let info = match kind {
            ChildKind::Macvlan(m) => vec![
                LinkInfo::Kind(InfoKind::MacVlan),
                LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(match m {
                    MacvlanMode::Bridge => MacVlanMode::Bridge,
                    MacvlanMode::Private => MacVlanMode::Private,
                    MacvlanMode::Vepa => MacVlanMode::Vepa,
                    MacvlanMode::Passthru => MacVlanMode::Passthrough,
                })])),
            ],
            ChildKind::Ipvlan(m) => vec![
                LinkInfo::Kind(InfoKind::IpVlan),
                LinkInfo::Data(InfoData::IpVlan(vec![InfoIpVlan::Mode(match m {
                    IpvlanMode::L2 => IpVlanMode::L2,
                    IpvlanMode::L3 => IpVlanMode::L3,
                })])),
            ],
        };
        msg.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::Link(parent),
            LinkAttribute::NetNsFd(netns.as_raw_fd()),
            LinkAttribute::LinkInfo(info),
        ];
        if let Some(m) = mac {
            msg.attributes.push(LinkAttribute::Address(m.to_vec()));
        }
        if let Some(m) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(m));
        }
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
        )
        .map(drop)
    }

    /// Changes the link `index`: its name, MAC and MTU where given; it must
    /// be down for a rename.
    pub fn set_link(
        &mut self,
        index: u32,
        name: Option<&str>,
        mac: Option<[u8; 6]>,
        mtu: Option<u32>,
    ) -> std::io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        if let Some(n) = name {
            msg.attributes.push(LinkAttribute::IfName(n.to_string()));
        }
        if let Some(m) = mac {
            msg.attributes.push(LinkAttribute::Address(m.to_vec()));
        }
        if let Some(m) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(m));
        }
        self.request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)
            .map(drop)
    }

    /// Sets the link `index` up.
    pub fn set_up(&mut self, index: u32) -> std::io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)
            .map(drop)
    }

    /// Deletes the link `index`.
    pub fn del_link(&mut self, index: u32) -> std::io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(msg), NLM_F_ACK)
            .map(drop)
    }

    /// Adds `ip/prefix` to the link `index`.
    pub fn add_address(&mut self, index: u32, ip: Ipv4Addr, prefix: u8) -> std::io::Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.attributes = vec![
            AddressAttribute::Local(IpAddr::V4(ip)),
            AddressAttribute::Address(IpAddr::V4(ip)),
        ];
        if prefix < 31 {
            let host = u32::MAX >> prefix;
            let bcast = Ipv4Addr::from(u32::from(ip) | host);
            msg.attributes.push(AddressAttribute::Broadcast(bcast));
        }
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
        )
        .map(drop)
    }

    /// Removes `ip/prefix` from the link `index` (and with it the routes
    /// that needed it).
    pub fn del_address(&mut self, index: u32, ip: Ipv4Addr, prefix: u8) -> std::io::Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.attributes = vec![AddressAttribute::Local(IpAddr::V4(ip))];
        self.request(RouteNetlinkMessage::DelAddress(msg), NLM_F_ACK)
            .map(drop)
    }

    /// Adds the IPv4 default route through `gateway` on the link `index`.
    pub fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> std::io::Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes = vec![
            RouteAttribute::Gateway(RouteAddress::Inet(gateway)),
            RouteAttribute::Oif(index),
        ];
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
        )
        .map(drop)
    }
}

impl AsFd for Rtnl {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

fn parse_link(l: LinkMessage) -> Link {
    let mut link = Link {
        index: l.header.index,
        up: l.header.flags.contains(LinkFlags::Up),
        ..Link::default()
    };
    for a in l.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Mtu(m) => link.mtu = m,
            LinkAttribute::Address(m) if m.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(&m);
                link.mac = Some(mac);
            }
            LinkAttribute::Link(p) => link.parent = Some(p),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        link.kind = k.to_string();
                    }
                }
            }
            LinkAttribute::Stats64(s) => {
                link.stats = Counters {
                    rx_bytes: s.rx_bytes,
                    tx_bytes: s.tx_bytes,
                    rx_packets: s.rx_packets,
                    tx_packets: s.tx_packets,
                    rx_errors: s.rx_errors,
                    tx_errors: s.tx_errors,
                    rx_dropped: s.rx_dropped,
                    tx_dropped: s.tx_dropped,
                }
            }
            _ => {}
        }
    }
    link
}
