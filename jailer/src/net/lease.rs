//! A jail's DHCP interfaces, for its monitor: the lease obtained before the
//! command starts, kept (renewed, rebound, replaced) for the instance's
//! life, released when it ends, and recorded in the jail's directory
//! ([`LEASES_FILE`]) so that `inspect`, `ls` and the tables show it and the
//! next start asks for the same address from the same server.
//!
//! The client is [`crate::dhcp`]; this module is the jail's side of it:
//! which server is trusted (the spec's `dhcp=SERVER`, else the recorded
//! lease's), the client identifier (the jail's id and the interface), and
//! what a lease does to the interface (its address and, on the first
//! interface with a router, the default route).

use crate::dhcp::{self, Client, DhcpError, Lease, LeaseEvent, Stop};
use crate::net::rtnl::Rtnl;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The jail's leases, by interface, in its directory: kept after stop (the
/// address and the server to ask again), gone with the jail.
pub const LEASES_FILE: &str = "leases.json";

/// The pool's directory of learned DHCP servers: one file per parent,
/// named after it, holding the address of the server the first lease on
/// that parent came from.
pub const SERVERS_DIR: &str = "dhcp-servers";

/// The DHCP server the pool learned for `parent`: the one that gave the
/// first lease any of its jails got there.
pub fn pool_server(pool: &crate::pool::Pool, parent: &str) -> Option<Ipv4Addr> {
    if !crate::spec::valid_iface_name(parent) {
        return None;
    }
    let text = std::fs::read_to_string(pool.root().join(SERVERS_DIR).join(parent)).ok()?;
    text.trim().parse().ok()
}

/// Records `server` as the pool's for `parent` unless one is recorded
/// (the first wins: `create_new`, so two monitors learning at once cannot
/// overwrite each other). Best effort: without it the next jail's first
/// lease is found as this one's was.
fn learn_server(pool: &crate::pool::Pool, parent: &str, server: Ipv4Addr) {
    use std::io::Write;
    if !crate::spec::valid_iface_name(parent) {
        return;
    }
    let dir = pool.root().join(SERVERS_DIR);
    let made = std::fs::create_dir_all(&dir).and_then(|()| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join(parent))?;
        f.write_all(format!("{server}\n").as_bytes())?;
        f.sync_all()
    });
    match made {
        Ok(()) => tracing::info!(parent, %server, "learned the DHCP server of this parent"),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            tracing::warn!(parent, error = %e, "cannot record the DHCP server of this parent")
        }
    }
}

/// How long a start waits for each interface's lease.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The leases of a jail, by interface name (`eth0`, ...).
pub type Leases = BTreeMap<String, Lease>;

/// The leases recorded in `jail_dir`; none when there is no file. The file
/// is the monitor's, outside the jail's root; one that cannot be parsed
/// counts as none (the next lease is found by DISCOVER) and is said in the
/// log of whoever reads it.
pub fn read(jail_dir: &Path) -> Leases {
    let path = jail_dir.join(LEASES_FILE);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "unreadable lease record, ignored");
            Leases::new()
        }),
        Err(_) => Leases::new(),
    }
}

/// Writes `leases` to `path` (atomically; the pool's reserve is used when
/// it is full). A lease that cannot be recorded still holds; the caller
/// logs it.
fn write(pool: &crate::pool::Pool, path: &Path, leases: &Leases) -> Result<(), String> {
    let json = serde_json::to_vec_pretty(leases).map_err(|e| e.to_string())?;
    pool.write_record(|| crate::fsutil::atomic_write(path, &json))
        .map_err(|e| crate::error_chain(&e))
}

/// A lease as `inspect` shows it: the record, and when it runs out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseView {
    #[serde(flatten)]
    pub lease: Lease,
    /// Seconds since the epoch; absent for an infinite lease.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

impl From<&Lease> for LeaseView {
    fn from(l: &Lease) -> Self {
        let at = l.expires_at();
        LeaseView {
            lease: l.clone(),
            expires_at: (at != u64::MAX).then_some(at),
        }
    }
}

/// One DHCP interface of a running instance.
#[derive(Debug)]
pub(super) struct DhcpIface {
    pub(super) iface: String,
    /// The host link it is on (whose learned server it may trust).
    pub(super) parent: String,
    /// The parent's MAC (an ipvlan jail's frames carry it).
    pub(super) parent_mac: Option<[u8; 6]>,
    /// An ipvlan link (else macvlan).
    pub(super) ipvlan: bool,
    pub(super) index: u32,
    pub(super) client: Client,
    pub(super) lease: Option<Lease>,
    /// Whether its lease's router is the namespace's default route.
    pub(super) routes: bool,
}

/// The client of interface `iface` (link `index`, MAC `mac`) of the jail
/// with id `jail_id`: it identifies itself by the jail and interface (the
/// same at every start, and different for ipvlan jails sharing a MAC),
/// believes the spec's server, and sends the jail's short host name.
pub(super) fn client(
    jail_id: &str,
    hostname: &str,
    iface: &str,
    index: u32,
    mac: [u8; 6],
    server: Option<Ipv4Addr>,
) -> Result<Client, DhcpError> {
    let id = dhcp::client_id_for(&format!("{jail_id}/{iface}"));
    let c = Client::new(iface, index, mac, id, server)?;
    // The first label of the host name, when it is one the option takes.
    let short = hostname.split('.').next().unwrap_or("");
    Ok(match c.clone().with_hostname(short) {
        Ok(named) => named,
        Err(_) => c,
    })
}

/// Obtains `d`'s lease in the namespace `netns` (asking for `prev` again
/// when recorded) and configures it on the link through `jail` (a socket in
/// that namespace); the default route too when `route` (no interface before
/// it has one).
///
/// The server believed is the spec's (`dhcp=SERVER`), else the one `prev`
/// came from, else the one the pool learned for the parent from the first
/// lease any jail got there ([`pool_server`]); only a parent where no jail
/// ever had a lease leaves the choice to the offers themselves. A lease
/// obtained on a parent with no learned server teaches it.
pub(super) fn obtain(
    pool: &crate::pool::Pool,
    d: &mut DhcpIface,
    netns: std::os::fd::BorrowedFd<'_>,
    jail: &mut Rtnl,
    prev: Option<&Lease>,
    route: bool,
) -> Result<(), DhcpError> {
    // Unless the spec names the server, the pool's jails (and the parent,
    // for ipvlan jails) are never believed: a rogue server in a jail is
    // ignored even on a parent where no server is known yet.
    if d.client.trusted_server(None).is_none() {
        let mut macs = super::jail_macs(pool);
        macs.extend(d.parent_mac);
        d.client = d.client.clone().distrusting(macs);
    }
    let learned = pool_server(pool, &d.parent);
    if d.client.trusted_server(prev).is_none() {
        if let Some(s) = learned {
            d.client = d.client.clone().trusting(s);
        }
    }
    let lease = dhcp::obtain_in(netns, &d.client, prev, Instant::now() + START_TIMEOUT)?;
    if learned.is_none() {
        learn_server(pool, &d.parent, lease.server);
    }
    let io = |op: &'static str| {
        let ifname = d.iface.clone();
        move |source| DhcpError::Io { ifname, op, source }
    };
    // Held from here: released by the drop if the rest fails.
    let (address, prefix, gateway) = (lease.address, lease.prefix, lease.gateway);
    d.lease = Some(lease);
    jail.add_address(d.index, address, prefix)
        .map_err(io("cannot add the leased address"))?;
    if let (true, Some(gw)) = (route, gateway) {
        jail.add_default_route(d.index, gw).map_err(io(
            "cannot add the default route through the lease's router",
        ))?;
        d.routes = true;
    }
    Ok(())
}

/// The threads that keep an instance's leases, one per DHCP interface.
#[derive(Debug)]
pub(super) struct Keepers {
    stop: Stop,
    threads: Vec<(
        String,
        std::thread::JoinHandle<std::io::Result<Option<Lease>>>,
    )>,
}

/// What each keeper shares: the record and where it goes.
struct Shared {
    pool: crate::pool::Pool,
    path: PathBuf,
    leases: Mutex<Leases>,
    jail: String,
}

impl Shared {
    fn record(&self, iface: &str, lease: Option<&Lease>) {
        let mut map = match self.leases.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        match lease {
            Some(l) => map.insert(iface.to_string(), l.clone()),
            None => map.remove(iface),
        };
        if let Err(e) = write(&self.pool, &self.path, &map) {
            tracing::warn!(jail = %self.jail, error = %e, "cannot record the DHCP lease");
        }
    }
}

/// Records `ifaces`' leases in `jail_dir` and starts a thread per interface
/// that joins `netns` and keeps its lease ([`Client::maintain`]): renews it
/// at T1, rebinds at T2, moves the interface to a changed address, and
/// looks for a new lease when one is lost, recording each. Interfaces
/// without a lease are left as they are.
pub(super) fn keep(
    pool: &crate::pool::Pool,
    jail: &str,
    jail_dir: &Path,
    netns: &OwnedFd,
    ifaces: &mut [DhcpIface],
) -> Result<Keepers, String> {
    let stop = Stop::new().map_err(|e| format!("cannot make the DHCP stop signal: {e}"))?;
    let mut map = read(jail_dir);
    for d in ifaces.iter() {
        if let Some(l) = &d.lease {
            map.insert(d.iface.clone(), l.clone());
        }
    }
    let shared = Arc::new(Shared {
        pool: pool.clone(),
        path: jail_dir.join(LEASES_FILE),
        leases: Mutex::new(map.clone()),
        jail: jail.to_string(),
    });
    if let Err(e) = write(pool, &shared.path, &map) {
        tracing::warn!(jail, error = %e, "cannot record the DHCP lease");
    }
    let mut keepers = Keepers {
        stop: stop.clone(),
        threads: Vec::new(),
    };
    for d in ifaces.iter_mut() {
        let Some(lease) = d.lease.take() else {
            continue;
        };
        let ns = netns
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| format!("cannot hold the jail's network namespace: {e}"))?;
        let (client, iface, index, routes) = (d.client.clone(), d.iface.clone(), d.index, d.routes);
        let (shared, stop) = (shared.clone(), stop.clone());
        let thread = crate::sys::dhcpsock::spawn_in_netns(format!("dhcp-{iface}"), ns, move || {
            let mut on = Reconfigure {
                iface: iface.clone(),
                index,
                routes,
                rtnl: None,
                shared: shared.clone(),
            };
            let held = client.maintain(lease, |ev| on.event(ev), &stop);
            match held {
                Ok(Some(mut l)) => {
                    // At the instance's end: give the address back, keep the
                    // record (the next start asks for it again).
                    match client.release(&l) {
                        Ok(()) => l.released = true,
                        Err(e) => {
                            tracing::warn!(jail = %shared.jail, iface = %iface, error = %crate::error_chain(&e), "cannot release the DHCP lease");
                        }
                    }
                    shared.record(&iface, Some(&l));
                    Some(l)
                }
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(jail = %shared.jail, iface = %iface, error = %crate::error_chain(&e), "DHCP lease keeping ended");
                    None
                }
            }
        })
        .map_err(|e| format!("cannot start the DHCP thread: {e}"))?;
        keepers.threads.push((d.iface.clone(), thread));
    }
    Ok(keepers)
}

impl Keepers {
    /// Stops every keeper; each releases its lease. Returns the leases
    /// released, by interface, once every thread is joined.
    pub(super) fn release(self) -> Vec<(String, Lease)> {
        self.stop.stop();
        let mut out = Vec::new();
        for (iface, t) in self.threads {
            if let Ok(Ok(Some(l))) = t.join() {
                out.push((iface, l));
            }
        }
        out
    }
}

/// What a lease event does to the interface, on the keeper's thread (in
/// the jail's namespace: its netlink socket is opened there).
struct Reconfigure {
    iface: String,
    index: u32,
    routes: bool,
    rtnl: Option<Rtnl>,
    shared: Arc<Shared>,
}

impl Reconfigure {
    fn event(&mut self, ev: LeaseEvent<'_>) {
        let r = match ev {
            LeaseEvent::Extended(l) => {
                self.shared.record(&self.iface, Some(l));
                Ok(())
            }
            LeaseEvent::Changed { old, new } => {
                let r = self.unset(old).and_then(|()| self.set(new));
                self.shared.record(&self.iface, Some(new));
                r
            }
            // The record keeps the lost lease's server pinned.
            LeaseEvent::Lost(l) => self.unset(l),
            LeaseEvent::Acquired(l) => {
                let r = self.set(l);
                self.shared.record(&self.iface, Some(l));
                r
            }
        };
        if let Err(e) = r {
            tracing::warn!(jail = %self.shared.jail, iface = %self.iface, error = %e, "cannot reconfigure the interface for its DHCP lease");
        }
    }

    fn rtnl(&mut self) -> std::io::Result<&mut Rtnl> {
        Ok(match &mut self.rtnl {
            Some(r) => r,
            slot @ None => slot.insert(Rtnl::open()?),
        })
    }

    fn set(&mut self, l: &Lease) -> std::io::Result<()> {
        let (index, routes) = (self.index, self.routes);
        let rt = self.rtnl()?;
        // Already there (a change within the subnet keeps the route) is done.
        let done = |r: std::io::Result<()>| match r {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            r => r,
        };
        done(rt.add_address(index, l.address, l.prefix))?;
        if let (true, Some(gw)) = (routes, l.gateway) {
            done(rt.add_default_route(index, gw))?;
        }
        Ok(())
    }

    fn unset(&mut self, l: &Lease) -> std::io::Result<()> {
        let index = self.index;
        let rt = self.rtnl()?;
        // Its routes go with the address.
        match rt.del_address(index, l.address, l.prefix) {
            Err(e) if e.raw_os_error() != Some(libc::EADDRNOTAVAIL) => Err(e),
            _ => Ok(()),
        }
    }
}
