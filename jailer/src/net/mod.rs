//! The jail's network: checking a spec's interfaces against the host and
//! the pool, making them in the jail's network namespace, and reading them
//! back for `inspect` and the tables.
//!
//! Who does what, in the process tree that exists (see docs/network.md):
//! - `create` ([`prepare`]): resolves the host's default parent, checks
//!   every interface against the host (the parent exists and is up, the MTU
//!   fits) and against the pool's other jails (MAC, static address on the
//!   same parent), before anything is made. `start` checks again
//!   ([`check`]), since the host may have changed.
//! - the monitor ([`JailNet::setup`]), once init is cloned into its new
//!   network namespace and before it is told to go on: makes each
//!   macvlan/ipvlan child on its parent with a temporary name directly in
//!   the jail's namespace (`IFLA_NET_NS_FD`: it never exists in the
//!   host's), then, over a netlink socket opened in that namespace, renames
//!   it `ethN`, gives it its address, brings it up and adds the default
//!   route; and sets the namespace's `net.ipv4.ping_group_range` to the
//!   jail's ids. The jail itself never holds `CAP_NET_ADMIN` over a host
//!   link. When the instance ends, the monitor deletes the links through
//!   that socket (which holds the namespace alive until then), so nothing
//!   is left on the parent once `stop` returns.
//! - DHCP interfaces ([`lease`]): once their links are up, the monitor
//!   obtains each lease from a thread in the jail's namespace, configures
//!   it, and keeps it on a thread per interface for the instance's life;
//!   at its end the leases are released before the links go.
//! - init writes `/etc/resolv.conf` and `/etc/hosts` from inside the jail's
//!   root after `pivot_root` ([`write_jail_files`]), as the monitor sends
//!   them with the word to go on ([`net_files`]: the spec's `dns=` or the
//!   leases' servers, the first address).

pub mod lease;
pub mod rtnl;

use crate::name::Name;
use crate::pool::Pool;
use crate::record::JailRecord;
use crate::spec::{IfaceAddress, JailSpec, LinkKind, LinkMode, MacAddr, NetIface, NetSpec};
use rtnl::{ChildKind, IpvlanMode, MacvlanMode, Rtnl};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

/// What went wrong with a jail's network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("jail {name}: {iface}'s parent {parent} is not a network interface of this host; `ip link` lists them (give another with parent=, or set the default with `jailer init --net-parent IFACE`)")]
    NoParent {
        name: Name,
        iface: String,
        parent: String,
    },
    #[error("jail {name}: {iface}'s parent {parent} is down; bring it up (`ip link set {parent} up`) or choose another parent")]
    ParentDown {
        name: Name,
        iface: String,
        parent: String,
    },
    #[error("jail {name}: {iface} has no parent= and this host has no default: it has no IPv4 default route and `jailer init --net-parent IFACE` set none; give parent=IFACE")]
    NoDefaultParent { name: Name, iface: String },
    #[error("jail {name}: {iface}'s mtu {mtu} is above its parent {parent}'s {parent_mtu}; use at most {parent_mtu}")]
    MtuTooBig {
        name: Name,
        iface: String,
        mtu: u32,
        parent: String,
        parent_mtu: u32,
    },
    #[error("jail {name}: {iface}'s MAC {mac} is already {other}'s; give another with mac= (or none: each jail gets its own)")]
    MacInUse {
        name: Name,
        iface: String,
        mac: MacAddr,
        other: String,
    },
    #[error("jail {name}: {iface}'s address {ip} on {parent} is already {other}'s; give another with ip=")]
    AddressInUse {
        name: Name,
        iface: String,
        ip: Ipv4Addr,
        parent: String,
        other: String,
    },
    #[error("jail {name}: {iface} got no DHCP lease{hint}")]
    Dhcp {
        name: Name,
        iface: String,
        /// What to try when nothing answered at all (see [`silent_hint`]).
        hint: &'static str,
        #[source]
        source: Box<crate::dhcp::DhcpError>,
    },
    #[error("{parent} cannot be the default parent of jails: it is not a network interface of this host (`ip link` lists them)")]
    BadDefaultParent { parent: String },
    #[error("cannot {what}")]
    Netlink {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("jail {name}: cannot set up {iface}: {step}")]
    Setup {
        name: Name,
        iface: String,
        step: String,
        #[source]
        source: std::io::Error,
    },
}

/// For a macvlan interface that got no answer at all from any DHCP
/// server: the likeliest cause on cloud and VM NICs and Wi-Fi, which drop
/// frames from MACs they did not assign.
fn silent_hint(e: &crate::dhcp::DhcpError, ipvlan: bool) -> &'static str {
    match e {
        crate::dhcp::DhcpError::Timeout { ignored, .. } if ignored.is_empty() && !ipvlan => {
            " (nothing answered its macvlan MAC: where the parent drops frames from \
             MACs it does not know, as cloud and VM NICs and Wi-Fi do, use ipvlan; \
             see docs/network.md)"
        }
        _ => "",
    }
}

fn netlink(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let what = what.into();
    move |source| NetError::Netlink { what, source }
}

/// The name of a jail's `i`th interface.
pub fn iface_name(i: usize) -> String {
    format!("eth{i}")
}

/// The MAC a macvlan interface gets without `mac=`: derived from the
/// jail's id (random, made at create, kept for the jail's life) and the
/// interface's position, so it is the same at every start; locally
/// administered (bit 1 of the first octet) and unicast (bit 0 clear).
/// FNV-1a, 64 bits: not secret, only spread.
pub fn derived_mac(jail_id: &str, index: usize) -> MacAddr {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in jail_id.bytes().chain(format!("/{index}").bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    MacAddr([(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]])
}

/// The MAC a jail's `index`th interface has: its `mac=`, else
/// [`derived_mac`]; `None` for ipvlan (the parent's).
pub fn effective_mac(jail_id: &str, index: usize, iface: &NetIface) -> Option<MacAddr> {
    match iface.kind {
        LinkKind::Ipvlan => None,
        LinkKind::Macvlan => Some(iface.mac.unwrap_or_else(|| derived_mac(jail_id, index))),
    }
}

/// The host link jails use when their interface names no parent: the one
/// `jailer init --net-parent` recorded in `pool.json`, else the link of the
/// host's IPv4 default route.
pub fn default_parent(pool: &Pool, host: &mut Rtnl) -> Result<Option<String>, NetError> {
    if let Some(p) = crate::pool::net_parent(pool) {
        return Ok(Some(p));
    }
    let Some(index) = host
        .default_route_link()
        .map_err(netlink("read the host's routes"))?
    else {
        return Ok(None);
    };
    let links = host.links().map_err(netlink("list the host's links"))?;
    Ok(links.into_iter().find(|l| l.index == index).map(|l| l.name))
}

/// Checks that `parent` names a host link (for `jailer init --net-parent`).
pub fn check_default_parent(parent: &str) -> Result<(), NetError> {
    let bad = || NetError::BadDefaultParent {
        parent: parent.to_string(),
    };
    if !crate::spec::valid_iface_name(parent) {
        return Err(bad());
    }
    let mut host = Rtnl::open().map_err(netlink("open a netlink socket"))?;
    match host
        .link_by_name(parent)
        .map_err(netlink(format!("look up link {parent}")))?
    {
        Some(_) => Ok(()),
        None => Err(bad()),
    }
}

/// For `create`, before anything is made: fills in the default parent of
/// interfaces that name none, and checks the spec against the host and the
/// pool's other jails ([`check`]). `jail_id` is the id the new jail gets.
pub fn prepare(pool: &Pool, spec: &mut JailSpec, jail_id: &str) -> Result<(), NetError> {
    if spec.net.is_none() {
        return Ok(());
    }
    let mut host = Rtnl::open().map_err(netlink("open a netlink socket"))?;
    if spec.net.interfaces.iter().any(|i| i.parent.is_none()) {
        let default = default_parent(pool, &mut host)?;
        for (i, n) in spec.net.interfaces.iter_mut().enumerate() {
            if n.parent.is_none() {
                n.parent = Some(default.clone().ok_or_else(|| NetError::NoDefaultParent {
                    name: spec.name.clone(),
                    iface: iface_name(i),
                })?);
            }
        }
    }
    check_with(pool, spec, jail_id, &mut host)
}

/// Checks a jail's interfaces against the host (each parent exists and is
/// up, each MTU fits its parent's) and against the other jails of the pool
/// (no other jail has the same MAC, nor the same static address on the
/// same parent). At create and again at start.
pub fn check(pool: &Pool, spec: &JailSpec, jail_id: &str) -> Result<(), NetError> {
    if spec.net.is_none() {
        return Ok(());
    }
    let mut host = Rtnl::open().map_err(netlink("open a netlink socket"))?;
    check_with(pool, spec, jail_id, &mut host)
}

fn check_with(
    pool: &Pool,
    spec: &JailSpec,
    jail_id: &str,
    host: &mut Rtnl,
) -> Result<(), NetError> {
    let name = &spec.name;
    for (i, n) in spec.net.interfaces.iter().enumerate() {
        let iface = iface_name(i);
        let parent = parent_of(spec, i, n)?;
        let link = host
            .link_by_name(parent)
            .map_err(netlink(format!("look up link {parent}")))?
            .ok_or_else(|| NetError::NoParent {
                name: name.clone(),
                iface: iface.clone(),
                parent: parent.to_string(),
            })?;
        if !link.up {
            return Err(NetError::ParentDown {
                name: name.clone(),
                iface,
                parent: parent.to_string(),
            });
        }
        if let Some(mtu) = n.mtu {
            if link.mtu != 0 && mtu > link.mtu {
                return Err(NetError::MtuTooBig {
                    name: name.clone(),
                    iface,
                    mtu,
                    parent: parent.to_string(),
                    parent_mtu: link.mtu,
                });
            }
        }
    }
    check_pool(pool, spec, jail_id)
}

fn parent_of<'a>(spec: &JailSpec, i: usize, n: &'a NetIface) -> Result<&'a str, NetError> {
    n.parent
        .as_deref()
        .ok_or_else(|| NetError::NoDefaultParent {
            name: spec.name.clone(),
            iface: iface_name(i),
        })
}

/// What one interface of a jail holds that no other may: its MAC, and its
/// address on its parent (static, or a DHCP lease it holds).
struct Claim {
    iface: String,
    mac: Option<MacAddr>,
    ip: Option<(String, Ipv4Addr)>,
}

/// The claims of a jail's interfaces; `leases`: its recorded leases, of
/// which those neither released nor run out claim their address.
fn claims(spec: &JailSpec, jail_id: &str, leases: &lease::Leases) -> Vec<Claim> {
    spec.net
        .interfaces
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let iface = iface_name(i);
            let held = leases
                .get(&iface)
                .filter(|l| n.address == IfaceAddress::Dhcp && !l.released && !l.expired())
                .map(|l| l.address);
            Claim {
                mac: effective_mac(jail_id, i, n),
                ip: match (&n.parent, n.static_ip().map(|(ip, _, _)| ip).or(held)) {
                    (Some(p), Some(ip)) => Some((p.clone(), ip)),
                    _ => None,
                },
                iface,
            }
        })
        .collect()
}

/// Whether `a` and `b` collide: the error for `a`, held by `other`.
fn collide(name: &Name, a: &Claim, b: &Claim, other: String) -> Option<NetError> {
    if let (Some(mac), Some(theirs)) = (a.mac, b.mac) {
        if mac == theirs {
            return Some(NetError::MacInUse {
                name: name.clone(),
                iface: a.iface.clone(),
                mac,
                other,
            });
        }
    }
    match (&a.ip, &b.ip) {
        (Some((p, ip)), Some(theirs)) if (p, ip) == (&theirs.0, &theirs.1) => {
            Some(NetError::AddressInUse {
                name: name.clone(),
                iface: a.iface.clone(),
                ip: *ip,
                parent: p.clone(),
                other,
            })
        }
        _ => None,
    }
}

/// The conflicts with the pool's other jails (their records, whatever their
/// state: a stopped jail keeps its address for its next start). Records
/// that cannot be read are skipped (`ls` shows them broken). Costs one read
/// per jail of the pool, for jails with interfaces only.
fn check_pool(pool: &Pool, spec: &JailSpec, jail_id: &str) -> Result<(), NetError> {
    let mine = claims(spec, jail_id, &lease::Leases::new());
    // Two interfaces of the same jail conflict too.
    for (k, a) in mine.iter().enumerate() {
        for b in &mine[k + 1..] {
            if let Some(e) = collide(&spec.name, b, a, format!("its own {}", a.iface)) {
                return Err(e);
            }
        }
    }
    for (other, rec, dir) in networked_jails(pool) {
        if other == spec.name.as_str() {
            continue;
        }
        for theirs in claims(&rec.spec, &rec.id, &lease::read(&dir)) {
            for a in &mine {
                let who = format!("jail {other}'s {}", theirs.iface);
                if let Some(e) = collide(&spec.name, a, &theirs, who) {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// The pool's jails that have interfaces: name, record and directory.
/// Records that cannot be read are skipped (`ls` shows them broken). One
/// read per jail of the pool.
fn networked_jails(pool: &Pool) -> impl Iterator<Item = (String, JailRecord, PathBuf)> {
    std::fs::read_dir(pool.jails_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_string();
            let rec = crate::record::read_jail(&entry.path().join("jail.json")).ok()?;
            (!rec.spec.net.is_none()).then(|| (name, rec, entry.path()))
        })
}

/// The MACs of every macvlan interface of the pool's jails, whatever their
/// state: a DHCP answer from one of them is a jail's, never a server's.
pub(super) fn jail_macs(pool: &Pool) -> Vec<[u8; 6]> {
    networked_jails(pool)
        .flat_map(|(_, rec, _)| {
            rec.spec
                .net
                .interfaces
                .iter()
                .enumerate()
                .filter_map(|(i, n)| effective_mac(&rec.id, i, n).map(|m| m.0))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn child_kind(n: &NetIface) -> ChildKind {
    match (n.kind, n.mode()) {
        (LinkKind::Ipvlan, LinkMode::L3) => ChildKind::Ipvlan(IpvlanMode::L3),
        (LinkKind::Ipvlan, _) => ChildKind::Ipvlan(IpvlanMode::L2),
        (_, LinkMode::Private) => ChildKind::Macvlan(MacvlanMode::Private),
        (_, LinkMode::Vepa) => ChildKind::Macvlan(MacvlanMode::Vepa),
        (_, LinkMode::Passthru) => ChildKind::Macvlan(MacvlanMode::Passthru),
        _ => ChildKind::Macvlan(MacvlanMode::Bridge),
    }
}

/// A jail instance's network, made by its monitor: a netlink socket in the
/// jail's namespace (which it keeps alive) and the links made there.
/// Dropped, it deletes them: nothing is left on the parents.
#[derive(Debug)]
pub struct JailNet {
    /// The socket in the jail's namespace; none for `--net none` (nothing
    /// to make or remove there).
    jail: Option<Rtnl>,
    links: Vec<u32>,
    /// The jail's network namespace (for the DHCP threads); none for
    /// `--net none`.
    netns: Option<OwnedFd>,
    /// The DHCP interfaces, whose leases [`JailNet::obtain_leases`] gets.
    dhcp: Vec<lease::DhcpIface>,
    /// Whether the namespace has its default route (from a static gateway).
    routed: bool,
    /// The threads keeping the leases ([`JailNet::keep_leases`]).
    keepers: Option<lease::Keepers>,
}

impl JailNet {
    /// Sets up the network of the jail whose init is `pid` (cloned into its
    /// new network namespace, waiting for the word to go on): every
    /// interface of `rec`'s spec, and `ping_group_range`. Must run in the
    /// host's network namespace, on the monitor's one thread (which enters
    /// the jail's namespace only to open a socket and a sysctl there).
    pub fn setup(rec: &JailRecord, pid: nix::unistd::Pid) -> Result<JailNet, NetError> {
        let name = rec.name();
        let spec = &rec.spec;
        let step = |iface: &str, step: &str| {
            let (iface, step) = (iface.to_string(), step.to_string());
            move |source| NetError::Setup {
                name: name.clone(),
                iface,
                step,
                source,
            }
        };
        let open_ns = |p: String| {
            std::fs::File::open(&p)
                .map(OwnedFd::from)
                .map_err(step("the namespace", &format!("open {p}")))
        };
        let netns = open_ns(format!("/proc/{pid}/ns/net"))?;
        let home = open_ns("/proc/self/ns/net".to_string())?;
        // Unprivileged ping (ICMP datagram sockets) for every id of the
        // jail, as Docker does: in the jail's namespace again, since a
        // sysctl file belongs to the namespace of its opener. The ids are
        // the host's, as this process sees them (the kernel keeps them so).
        let ids = rec.ids;
        let range = format!(
            "{} {}\n",
            ids.gid_base,
            u64::from(ids.gid_base) + u64::from(ids.count.max(1)) - 1
        );
        // Only a convenience: where it cannot be written (a host whose
        // /proc/sys is read-only) the jail starts without it, and says so in
        // its log. Coming back to the host's namespace is not optional.
        let mut written = Ok(());
        crate::sys::net::enter_netns(netns.as_fd())
            .and_then(|()| {
                written = std::fs::write("/proc/sys/net/ipv4/ping_group_range", &range);
                crate::sys::net::enter_netns(home.as_fd())
            })
            .map_err(step(
                "lo",
                "enter the jail's network namespace and come back",
            ))?;
        if let Err(e) = written {
            tracing::warn!(jail = %name, error = %e, "cannot set net.ipv4.ping_group_range: ping needs CAP_NET_RAW in this jail");
        }
        let mut net = JailNet {
            jail: None,
            links: Vec::new(),
            netns: None,
            dhcp: Vec::new(),
            routed: false,
            keepers: None,
        };
        if spec.net.is_none() {
            return Ok(net);
        }
        net.jail = Some(
            Rtnl::open_here_in(netns.as_fd(), home.as_fd())
                .map_err(step("the namespace", "open a netlink socket in it"))?,
        );
        net.netns = Some(netns);
        // On an error, its drop deletes the links made so far.
        make_links(rec, &mut net)?;
        Ok(net)
    }

    /// Obtains the lease of each DHCP interface (asking for the one in
    /// `prev` again, from its server) and configures it: the address, and
    /// the default route on the first with a router when no static gateway
    /// gave one. On an error the drop releases the leases obtained so far
    /// and deletes the links.
    pub fn obtain_leases(
        &mut self,
        pool: &Pool,
        rec: &JailRecord,
        prev: &lease::Leases,
    ) -> Result<(), NetError> {
        let (Some(jail), Some(netns)) = (self.jail.as_mut(), self.netns.as_ref()) else {
            return Ok(());
        };
        for d in &mut self.dhcp {
            let route = !self.routed;
            lease::obtain(pool, d, netns.as_fd(), jail, prev.get(&d.iface), route).map_err(
                |source| NetError::Dhcp {
                    name: rec.name().clone(),
                    iface: d.iface.clone(),
                    hint: silent_hint(&source, d.ipvlan),
                    source: Box::new(source),
                },
            )?;
            self.routed |= d.routes;
        }
        Ok(())
    }

    /// The leases obtained, by interface.
    pub fn leases(&self) -> lease::Leases {
        self.dhcp
            .iter()
            .filter_map(|d| Some((d.iface.clone(), d.lease.clone()?)))
            .collect()
    }

    /// Records the leases obtained in the jail's directory and keeps them
    /// (a thread per interface) until the instance ends. A failure is
    /// logged: the leases hold until they run out.
    pub fn keep_leases(&mut self, pool: &Pool, rec: &JailRecord) {
        let Some(netns) = self.netns.as_ref() else {
            return;
        };
        if self.dhcp.is_empty() {
            return;
        }
        let name = rec.name();
        match lease::keep(
            pool,
            name.as_str(),
            &pool.jail_dir(name),
            netns,
            &mut self.dhcp,
        ) {
            Ok(k) => self.keepers = Some(k),
            Err(e) => tracing::warn!(jail = %name, error = %e, "cannot keep the DHCP leases"),
        }
    }

    /// Ends the lease keepers: each releases its lease. Returns the leases
    /// released. Then this process has one thread again (waited for), so
    /// that the monitor can fork.
    pub fn release_leases(&mut self) -> Vec<(String, crate::dhcp::Lease)> {
        let released = match (self.keepers.take(), self.netns.as_ref()) {
            (Some(k), _) => k.release(),
            // Obtained, never kept (the start failed after): given back.
            (None, Some(netns)) if self.dhcp.iter().any(|d| d.lease.is_some()) => {
                let mut out = Vec::new();
                for d in &mut self.dhcp {
                    if let Some(l) = d.lease.take() {
                        if crate::dhcp::release_in(netns.as_fd(), &d.client, &l).is_ok() {
                            out.push((d.iface.clone(), l));
                        }
                    }
                }
                out
            }
            _ => return Vec::new(),
        };
        let settled = crate::sys::fork::ProcSelf::open(std::path::Path::new("/proc"))
            .is_ok_and(|me| me.wait_single(std::time::Duration::from_secs(2)));
        if !settled {
            tracing::warn!("a DHCP thread is still there after its join");
        }
        released
    }

    /// Deletes the links made (the namespace's end would too, but later and
    /// asynchronously: this makes it done when the monitor says so).
    pub fn teardown(mut self) -> Result<(), NetError> {
        self.delete()
    }

    /// [`JailNet::teardown`] in a forked child, so that the monitor's other
    /// end-of-instance work overlaps it: the kernel's unregister of a link
    /// waits for RCU (`rcu_barrier`, 10 to 20 ms), on the request's own
    /// thread. [`Teardown::wait`] reaps it; inline if it cannot fork. The
    /// caller must have one thread (the fork checks it).
    pub fn teardown_forked(mut self, proc: &std::path::Path) -> Teardown {
        use crate::sys::fork::{self, Forked, ProcSelf};
        self.release_leases();
        if self.links.is_empty() {
            return Teardown { child: None };
        }
        match ProcSelf::open(proc).and_then(fork::fork) {
            Ok(Forked::Child) => {
                let code = i32::from(self.delete().is_err());
                crate::sys::process::exit_now(code)
            }
            Ok(Forked::Parent(pid)) => {
                // The child deletes them; this copy of the socket only goes.
                self.links.clear();
                Teardown { child: Some(pid) }
            }
            Err(e) => {
                tracing::debug!(error = %e, "teardown inline");
                if let Err(e) = self.delete() {
                    tracing::warn!(error = %crate::error_chain(&e), "jail network teardown");
                }
                Teardown { child: None }
            }
        }
    }

    fn delete(&mut self) -> Result<(), NetError> {
        // Released while the links are there to send from.
        self.release_leases();
        let mut first = None;
        let Some(jail) = self.jail.as_mut() else {
            return Ok(());
        };
        for index in std::mem::take(&mut self.links) {
            match jail.del_link(index) {
                Ok(()) => {}
                // Already gone (its parent went).
                Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {}
                Err(e) => {
                    first.get_or_insert(NetError::Netlink {
                        what: format!("delete link {index} of the jail"),
                        source: e,
                    });
                }
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// A teardown running in a child of the monitor ([`JailNet::teardown_forked`]).
#[derive(Debug)]
#[must_use = "wait for the teardown, or the links may outlive the monitor's report"]
pub struct Teardown {
    child: Option<nix::unistd::Pid>,
}

impl Teardown {
    /// Waits until the jail's links are deleted; false if the child failed
    /// (the namespace's end deletes them anyway, later).
    pub fn wait(self) -> bool {
        match self.child {
            None => true,
            Some(pid) => loop {
                match nix::sys::wait::waitpid(pid, None) {
                    Err(nix::Error::EINTR) => continue,
                    Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => break true,
                    _ => break false,
                }
            },
        }
    }
}

impl Drop for JailNet {
    fn drop(&mut self) {
        if let Err(e) = self.delete() {
            tracing::warn!(error = %crate::error_chain(&e), "jail network teardown");
        }
    }
}

/// Makes each interface of `rec`'s spec in `net`'s namespace, over the
/// host's rtnetlink and `net`'s socket in that namespace, pushing each
/// link made onto its links as soon as it exists, and each DHCP interface
/// onto its `dhcp` (its lease is [`JailNet::obtain_leases`]' work).
fn make_links(rec: &JailRecord, net: &mut JailNet) -> Result<(), NetError> {
    let (Some(jail), Some(netns)) = (net.jail.as_mut(), net.netns.as_ref()) else {
        return Ok(());
    };
    let netns = netns.as_fd();
    let links = &mut net.links;
    let name = rec.name();
    let spec = &rec.spec;
    let step = |iface: &str, step: &str| {
        let (iface, step) = (iface.to_string(), step.to_string());
        move |source| NetError::Setup {
            name: name.clone(),
            iface,
            step,
            source,
        }
    };
    let mut host = Rtnl::open().map_err(step("the host", "open a netlink socket"))?;
    for (i, n) in spec.net.interfaces.iter().enumerate() {
        let iface = iface_name(i);
        let parent = parent_of(spec, i, n)?;
        let plink = host
            .link_by_name(parent)
            .map_err(step(&iface, &format!("look up parent {parent}")))?
            .ok_or_else(|| NetError::NoParent {
                name: name.clone(),
                iface: iface.clone(),
                parent: parent.to_string(),
            })?;
        // A temporary name: `ethN` may be taken until the others are
        // renamed (never in the host: the link is made in the jail).
        let tmp = format!("jailer-new{i}");
        host.add_child(
            plink.index,
            &tmp,
            child_kind(n),
            effective_mac(&rec.id, i, n).map(|m| m.0),
            n.mtu,
            netns,
        )
        .map_err(|e| {
            let what = match n.kind {
                LinkKind::Macvlan => format!("make a macvlan link on {parent}"),
                LinkKind::Ipvlan => format!("make an ipvlan link on {parent}"),
            };
            // The kernel's word for a link type it was built without.
            let hint = if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
                format!(
                    " (this kernel has no {} support: CONFIG_{})",
                    n.kind,
                    n.kind.to_string().to_uppercase()
                )
            } else {
                String::new()
            };
            step(&iface, &format!("{what}{hint}"))(e)
        })?;
        let link = jail
            .link_by_name(&tmp)
            .map_err(step(&iface, "find the new link"))?
            .ok_or_else(|| {
                step(&iface, "find the new link")(std::io::Error::from_raw_os_error(libc::ENODEV))
            })?;
        links.push(link.index);
        jail.set_link(link.index, Some(&iface), None, None)
            .map_err(step(&iface, "rename it"))?;
        if let Some((ip, prefix, _)) = n.static_ip() {
            jail.add_address(link.index, ip, prefix)
                .map_err(step(&iface, &format!("add address {ip}/{prefix}")))?;
        }
        jail.set_up(link.index)
            .map_err(step(&iface, "bring it up"))?;
        // One default route: the first static gateway (else the first
        // lease's router).
        if let Some((_, _, Some(gw))) = n.static_ip() {
            if !net.routed {
                jail.add_default_route(link.index, gw)
                    .map_err(step(&iface, &format!("add the default route via {gw}")))?;
                net.routed = true;
            }
        }
        if n.address == IfaceAddress::Dhcp {
            // Its own MAC (an ipvlan child has its parent's).
            let mac = link.mac.ok_or_else(|| {
                step(&iface, "read its MAC")(std::io::Error::from_raw_os_error(libc::ENODATA))
            })?;
            let client = lease::client(
                &rec.id,
                &spec.hostname,
                &iface,
                link.index,
                mac,
                n.dhcp_server,
            )
            .map_err(|source| NetError::Dhcp {
                name: name.clone(),
                iface: iface.clone(),
                hint: "",
                source: Box::new(source),
            })?;
            net.dhcp.push(lease::DhcpIface {
                iface: iface.clone(),
                parent: parent.to_string(),
                parent_mac: plink.mac,
                ipvlan: n.kind == LinkKind::Ipvlan,
                index: link.index,
                client,
                lease: None,
                routes: false,
            });
        }
    }
    Ok(())
}

/// `/etc/resolv.conf` for the jail: each interface's `dns=` servers, or
/// for a DHCP interface without them its lease's (none at all: `None`, the
/// file is left as the template has it). At most three, as the resolver
/// reads.
pub fn resolv_conf(spec: &NetSpec, leases: &lease::Leases) -> Option<String> {
    let mut servers: Vec<Ipv4Addr> = Vec::new();
    let mut from_dhcp = false;
    for (i, n) in spec.interfaces.iter().enumerate() {
        let leased = leases.get(&iface_name(i)).filter(|_| n.dns.is_empty());
        from_dhcp |= leased.is_some_and(|l| !l.dns.is_empty());
        for d in leased.map_or(&n.dns, |l| &l.dns) {
            if !servers.contains(d) {
                servers.push(*d);
            }
        }
    }
    if servers.is_empty() {
        return None;
    }
    let mut s = String::from(if from_dhcp {
        "# written by jailer from the jail's --net dns= and DHCP leases\n"
    } else {
        "# written by jailer from the jail's --net dns=\n"
    });
    for d in servers.iter().take(3) {
        s.push_str(&format!("nameserver {d}\n"));
    }
    Some(s)
}

/// `/etc/hosts` for a jail with interfaces: localhost, and its hostname on
/// its first address, static or leased (else on 127.0.1.1, as Debian does).
pub fn hosts(spec: &JailSpec, leases: &lease::Leases) -> Option<String> {
    if spec.net.is_none() {
        return None;
    }
    let own = spec
        .net
        .interfaces
        .iter()
        .enumerate()
        .find_map(|(i, n)| {
            n.static_ip()
                .map(|(ip, _, _)| ip)
                .or_else(|| leases.get(&iface_name(i)).map(|l| l.address))
        })
        .unwrap_or(Ipv4Addr::new(127, 0, 1, 1));
    Some(format!(
        "# written by jailer\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{own}\t{}\n",
        spec.hostname
    ))
}

/// The files the jail's init writes for its network: `(path, content)`.
pub fn net_files(spec: &JailSpec, leases: &lease::Leases) -> Vec<(&'static str, String)> {
    let mut files = Vec::new();
    if let Some(r) = resolv_conf(&spec.net, leases) {
        files.push(("/etc/resolv.conf", r));
    }
    if let Some(h) = hosts(spec, leases) {
        files.push(("/etc/hosts", h));
    }
    files
}

/// Writes the jail's network files, from inside the jail's root (init,
/// after `pivot_root`: every path resolves in the jail's own tree). The
/// last component is never followed: a symlink, FIFO or device the jail
/// put there is replaced by a regular file.
pub fn write_jail_files(files: &[(String, String)]) -> Result<(), String> {
    for (path, content) in files {
        crate::sys::net::write_jail_file(path, content.as_bytes())
            .map_err(|e| format!("write {path}: {e}"))?;
    }
    Ok(())
}

/// One interface of a running jail, as read in its network namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IfaceState {
    pub name: String,
    /// `macvlan`, `ipvlan`, `loopback`, or the kernel's kind.
    pub kind: String,
    pub mac: Option<MacAddr>,
    pub mtu: u32,
    pub up: bool,
    pub addresses: Vec<(Ipv4Addr, u8)>,
    pub counters: rtnl::Counters,
}

/// The interfaces of the network namespace of `pid` (a jail's init), read
/// over netlink from a socket opened there by a short-lived thread (so the
/// caller's threads never move): the jail's own counters, not the host's.
pub fn observe(proc_root: &std::path::Path, pid: i32) -> std::io::Result<Vec<IfaceState>> {
    let ns = std::fs::File::open(proc_root.join(format!("{pid}/ns/net")))?;
    let mut rt = Rtnl::open_in(ns.as_fd())?;
    let links = rt.links()?;
    let addrs = rt.addresses()?;
    Ok(links
        .into_iter()
        .map(|l| IfaceState {
            kind: if l.name == "lo" && l.kind.is_empty() {
                "loopback".into()
            } else {
                l.kind.clone()
            },
            mac: l.mac.map(MacAddr).filter(|m| m.0 != [0; 6]),
            mtu: l.mtu,
            up: l.up,
            addresses: addrs
                .iter()
                .filter(|a| a.index == l.index)
                .map(|a| (a.ip, a.prefix))
                .collect(),
            counters: l.stats,
            name: l.name,
        })
        .collect())
}

/// One interface of a jail as `inspect` and `ls` show it: what its spec
/// gives, and while it runs what it holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IfaceSummary {
    pub name: String,
    pub kind: LinkKind,
    pub parent: Option<String>,
    pub mode: LinkMode,
    /// Its MAC (macvlan: `mac=` or derived; ipvlan: the parent's, known
    /// only while it runs).
    pub mac: Option<String>,
    /// `ADDR/PREFIX` (static, or held by the running jail), or `dhcp`.
    pub address: String,
    pub gateway: Option<Ipv4Addr>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<Ipv4Addr>,
    /// `dhcp=SERVER`: the only server believed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhcp_server: Option<Ipv4Addr>,
    /// A DHCP interface's recorded lease (kept after stop: the address and
    /// server the next start asks for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<lease::LeaseView>,
}

/// The interfaces of `rec`, filled from `observed` (see [`observe`]) when
/// the jail runs, and from its recorded `leases`.
pub fn summary(
    rec: &JailRecord,
    observed: Option<&[IfaceState]>,
    leases: &lease::Leases,
) -> Vec<IfaceSummary> {
    rec.spec
        .net
        .interfaces
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let name = iface_name(i);
            let st = observed.and_then(|o| o.iter().find(|s| s.name == name));
            let held = st.and_then(|s| s.addresses.first().copied());
            let lease = match n.address {
                IfaceAddress::Dhcp => leases.get(&name),
                IfaceAddress::Static { .. } => None,
            };
            let address = match (held, &n.address) {
                (Some((a, p)), _) => format!("{a}/{p}"),
                (None, IfaceAddress::Static { ip, prefix, .. }) => format!("{ip}/{prefix}"),
                (None, IfaceAddress::Dhcp) => "dhcp".into(),
            };
            IfaceSummary {
                mac: st
                    .and_then(|s| s.mac)
                    .or_else(|| effective_mac(&rec.id, i, n))
                    .map(|m| m.to_string()),
                kind: n.kind,
                parent: n.parent.clone(),
                mode: n.mode(),
                address,
                gateway: n
                    .static_ip()
                    .and_then(|(_, _, g)| g)
                    .or(lease.and_then(|l| l.gateway)),
                dns: match lease {
                    Some(l) if n.dns.is_empty() => l.dns.clone(),
                    _ => n.dns.clone(),
                },
                dhcp_server: n.dhcp_server,
                lease: lease.map(lease::LeaseView::from),
                name,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_derived_mac_is_stable_local_unicast_and_per_interface() {
        let id = "3f2a9c0e8b7d4a1f9e6c5b4a3d2e1f00";
        let a = derived_mac(id, 0);
        assert_eq!(a, derived_mac(id, 0), "the same at every start");
        assert!(a.is_unicast());
        assert_eq!(a.0[0] & 0x02, 0x02, "locally administered");
        assert_ne!(a, derived_mac(id, 1), "eth1 gets its own");
        assert_ne!(a, derived_mac("3f2a9c0e8b7d4a1f9e6c5b4a3d2e1f01", 0));
    }

    #[test]
    fn resolv_conf_and_hosts_come_from_the_spec() {
        let mut raw = crate::spec::RawSpec {
            name: "web".into(),
            template: "t".into(),
            net: vec![
                "macvlan,parent=x,ip=192.0.2.5/24,dns=192.0.2.1,dns=192.0.2.2".into(),
                "ipvlan,parent=y,ip=10.0.0.5/24,dns=192.0.2.1".into(),
            ],
            ..Default::default()
        };
        let spec = raw.validate().expect("valid");
        assert_eq!(
            resolv_conf(&spec.net, &lease::Leases::new()).expect("servers"),
            "# written by jailer from the jail's --net dns=\nnameserver 192.0.2.1\nnameserver 192.0.2.2\n"
        );
        assert!(hosts(&spec, &lease::Leases::new())
            .expect("hosts")
            .contains("192.0.2.5\tweb\n"));
        raw.net = vec![];
        let none = raw.validate().expect("valid");
        assert_eq!(resolv_conf(&none.net, &lease::Leases::new()), None);
        assert_eq!(
            hosts(&none, &lease::Leases::new()),
            None,
            "a none jail keeps its template's files"
        );
    }

    #[test]
    fn a_lease_gives_dns_and_the_hosts_address_unless_dns_is_given() {
        let lease = crate::dhcp::Lease {
            address: Ipv4Addr::new(10, 9, 0, 50),
            prefix: 24,
            gateway: Some(Ipv4Addr::new(10, 9, 0, 1)),
            dns: vec![Ipv4Addr::new(10, 9, 0, 53)],
            server: Ipv4Addr::new(10, 9, 0, 1),
            server_mac: None,
            lease_secs: 120,
            t1_secs: 60,
            t2_secs: 105,
            obtained_at: 1_000,
            released: false,
        };
        let leases: lease::Leases = [("eth0".to_string(), lease)].into_iter().collect();
        let mut raw = crate::spec::RawSpec {
            name: "web".into(),
            template: "t".into(),
            net: vec!["macvlan,parent=x,dhcp".into()],
            ..Default::default()
        };
        let spec = raw.validate().expect("valid");
        let files = net_files(&spec, &leases);
        assert_eq!(files.len(), 2);
        assert!(files[0].1.contains("nameserver 10.9.0.53\n"));
        assert!(files[1].1.contains("10.9.0.50\tweb\n"));
        // Before a lease: the hostname on 127.0.1.1, the template's resolver.
        let files = net_files(&spec, &lease::Leases::new());
        assert_eq!(files.len(), 1);
        assert!(files[0].1.contains("127.0.1.1\tweb\n"));
        // dns= wins over the lease's.
        raw.net = vec!["macvlan,parent=x,dhcp,dns=192.0.2.53".into()];
        let spec = raw.validate().expect("valid");
        let r = resolv_conf(&spec.net, &leases).expect("servers");
        assert!(r.contains("nameserver 192.0.2.53\n") && !r.contains("10.9.0.53"));
    }

    #[test]
    fn a_held_lease_claims_its_address_and_a_released_one_does_not() {
        let raw = crate::spec::RawSpec {
            name: "web".into(),
            template: "t".into(),
            net: vec!["macvlan,parent=x,dhcp".into()],
            ..Default::default()
        };
        let spec = raw.validate().expect("valid");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let mut l = crate::dhcp::Lease {
            address: Ipv4Addr::new(10, 9, 0, 50),
            prefix: 24,
            gateway: None,
            dns: vec![],
            server: Ipv4Addr::new(10, 9, 0, 1),
            server_mac: None,
            lease_secs: 120,
            t1_secs: 60,
            t2_secs: 105,
            obtained_at: now,
            released: false,
        };
        let held = |l: &crate::dhcp::Lease| {
            let leases: lease::Leases = [("eth0".to_string(), l.clone())].into_iter().collect();
            claims(&spec, "id", &leases).remove(0).ip
        };
        assert_eq!(
            held(&l),
            Some(("x".to_string(), Ipv4Addr::new(10, 9, 0, 50)))
        );
        l.released = true;
        assert_eq!(held(&l), None, "a released lease holds nothing");
        l.released = false;
        l.obtained_at = now - 1000;
        assert_eq!(held(&l), None, "an expired lease holds nothing");
    }
}
