//! The DHCP client (`jailer::dhcp`) against real dnsmasq servers, on a LAN
//! made of network namespaces: a "router" namespace running dnsmasq on one
//! end of a veth pair, a "host" namespace holding the other end (the
//! macvlan/ipvlan parent), and one namespace per client ("jail") holding a
//! macvlan or ipvlan child of that parent named `eth0`. A rogue server is a
//! neighbour "jail" on the same parent running its own dnsmasq, as a hostile
//! jail with `net_bind_service` could. The client runs on a thread of the
//! test process that joined the client's namespace, as the monitor's does.
//!
//! Everything is named `jdh<pid><tag>-<role>` and removed by that name when
//! the test ends, pass or fail (the guards' `Drop`): dnsmasq processes by the
//! pid this test spawned, namespaces by name (their links go with them).
//! Nothing touches the test process's own namespace.

use jailer::dhcp::{client_id_for, Client, DhcpErrorKind, Lease, LeaseEvent, Stop};
use libtest_mimic::Trial;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn trials() -> Vec<Trial> {
    // ipvlan is a module the host lane's kernel may lack (CONFIG_IPVLAN);
    // those tests then show as ignored, and run in the VM lane's kernel.
    let no_ipvlan = ipvlan_missing();
    // dnsmasq is installed by tests/run.sh; a local run without it shows
    // these tests as ignored, and under CI=true they run and fail.
    let ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
    let no_dnsmasq = !ci && !dnsmasq_installed();
    if no_dnsmasq {
        eprintln!("dhcp tests ignored: dnsmasq is not installed (apt-get install dnsmasq-base)");
    }
    let ipvlan = |t: Trial| t.with_ignored_flag(no_ipvlan);
    let trials = vec![
        Trial::test("dhcp::two_macvlan_jails_get_different_addresses", || {
            crate::check(two_clients("mv", Kind::Macvlan))
        }),
        ipvlan(Trial::test(
            "dhcp::two_ipvlan_jails_sharing_a_mac_get_different_addresses_by_client_id",
            || crate::check(two_clients("iv", Kind::Ipvlan)),
        )),
        Trial::test(
            "dhcp::a_restart_gets_the_same_address_again_by_init_reboot",
            || crate::check(init_reboot_same_address()),
        ),
        Trial::test("dhcp::a_nak_on_init_reboot_falls_back_to_discover", || {
            crate::check(nak_falls_back())
        }),
        Trial::test(
            "dhcp::release_is_seen_by_dnsmasq_and_leaves_no_lease",
            || crate::check(release_seen("rl", Kind::Macvlan)),
        ),
        ipvlan(Trial::test(
            "dhcp::release_from_an_ipvlan_jail_is_seen_by_dnsmasq",
            || crate::check(release_seen("ri", Kind::Ipvlan)),
        )),
        Trial::test("dhcp::no_server_gives_a_timeout_error", || {
            crate::check(no_server_times_out())
        }),
        Trial::test(
            "dhcp::a_rogue_server_answering_first_is_ignored_when_the_spec_names_the_server",
            || crate::check(rogue_ignored_when_named()),
        ),
        Trial::test(
            "dhcp::a_rogue_server_claiming_the_real_servers_identifier_is_ignored",
            || crate::check(rogue_claiming_real_id()),
        ),
        Trial::test(
            "dhcp::a_recorded_lease_pins_its_server_so_a_rogue_nak_cannot_take_it",
            || crate::check(rogue_nak_ignored_on_restart()),
        ),
        Trial::test(
            "dhcp::two_servers_and_none_trusted_is_refused_as_ambiguous",
            || crate::check(ambiguous_refused()),
        ),
        Trial::test("dhcp::a_lease_is_renewed_at_t1_while_it_runs", || {
            crate::check(renewed_at_t1())
        }),
        Trial::test(
            "dhcp::an_unanswered_renewal_is_rebound_by_broadcast_at_t2",
            || crate::check(rebound_at_t2()),
        ),
        Trial::test(
            "dhcp::a_nak_to_a_renewal_loses_the_lease_and_a_new_one_is_found",
            || crate::check(nak_on_renewal()),
        ),
    ];
    if no_dnsmasq {
        return trials
            .into_iter()
            .map(|t| t.with_ignored_flag(true))
            .collect();
    }
    trials
}

pub(crate) fn dnsmasq_installed() -> bool {
    Command::new("dnsmasq")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Whether ipvlan tests are to be ignored: the kernel cannot make an
/// ipvlan link (the host lane's 6.18 is built without CONFIG_IPVLAN), and
/// the lane does not require it. The VM lane, whose kernel has the module
/// and loads it, sets `JAILER_TEST_NEED_IPVLAN=1`: there a missing ipvlan
/// fails the tests instead.
pub(crate) fn ipvlan_missing() -> bool {
    if std::env::var("JAILER_TEST_NEED_IPVLAN").is_ok_and(|v| v == "1") {
        return false;
    }
    static MISSING: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *MISSING.get_or_init(|| {
        let missing = !ipvlan_supported();
        if missing {
            eprintln!(
                "ipvlan tests ignored: this kernel cannot make an ipvlan link (no CONFIG_IPVLAN); the VM lane runs them"
            );
        }
        missing
    })
}

/// Whether this kernel can make an ipvlan link: tried once in a throwaway
/// namespace (only as root; otherwise every privileged test is skipped).
fn ipvlan_supported() -> bool {
    if !nix::unistd::geteuid().is_root() {
        return true;
    }
    let Ok(ns) = Netns::new(format!("jdh{}probe", std::process::id())) else {
        return true;
    };
    ns.ip(&["link", "add", "p0", "type", "veth", "peer", "name", "p9"])
        .is_ok()
        && ns
            .ip(&[
                "link", "add", "p1", "link", "p0", "type", "ipvlan", "mode", "l2",
            ])
            .is_ok()
}

const REAL: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const ROGUE: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 66);

fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A named network namespace, deleted by name on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(name: String) -> Result<Netns, String> {
        // A leftover of an earlier, killed run of this pid would be ours.
        let _ = run(&["ip", "netns", "del", &name]);
        run(&["ip", "netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn ip(&self, args: &[&str]) -> Result<String, String> {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend_from_slice(args);
        run(&v)
    }

    fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Runs `f` on a thread in this namespace.
    fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, String> {
        let fd = std::fs::File::open(self.path()).map_err(|e| format!("{}: {e}", self.name))?;
        jailer::sys::dhcpsock::in_netns(fd.as_fd(), f)
            .map_err(|e| format!("setns {}: {e}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

/// A dnsmasq serving DHCP in a namespace, killed by its pid on drop.
struct Dnsmasq {
    child: Child,
    dir: tempfile::TempDir,
}

impl Dnsmasq {
    fn start(ns: &Netns, iface: &str, range: &str, extra: &[&str]) -> Result<Dnsmasq, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let d = dir.path();
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", ns.path().display()))
            .arg("dnsmasq")
            .arg("--keep-in-foreground")
            .arg("--conf-file=/dev/null")
            .arg("--port=0")
            .arg(format!("--interface={iface}"))
            .arg("--bind-interfaces")
            .arg(format!("--dhcp-range={range}"))
            .arg("--dhcp-authoritative")
            .arg(format!("--dhcp-leasefile={}", d.join("leases").display()))
            .arg(format!("--pid-file={}", d.join("pid").display()))
            .arg(format!("--log-facility={}", d.join("log").display()))
            .arg("--log-dhcp")
            .arg("--user=root")
            .arg("--group=root")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().map_err(|e| format!("dnsmasq: {e}"))?;
        let mut dns = Dnsmasq { child, dir };
        // Ready when it logged that DHCP is on.
        let ready = wait_for(Duration::from_secs(10), || {
            dns.log().contains("DHCP, IP range")
        });
        if let Ok(Some(st)) = dns.child.try_wait() {
            return Err(format!("dnsmasq exited at once ({st}): {}", dns.log()));
        }
        if !ready {
            return Err(format!("dnsmasq did not start: {}", dns.log()));
        }
        Ok(dns)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn leases(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("leases")).unwrap_or_default()
    }

    /// How many transactions (distinct xids: a client's retransmissions,
    /// e.g. while dnsmasq pings an address before offering it, are one)
    /// dnsmasq logged a DHCP message `what` (DHCPDISCOVER, DHCPACK, ...) in
    /// that mentions `needle` (an address or a MAC).
    fn count(&self, what: &str, needle: &str) -> usize {
        let mut xids: Vec<String> = self
            .log()
            .lines()
            .filter(|l| l.contains(&format!(" {what}(")) && l.contains(needle))
            .filter_map(|l| l.split("]: ").nth(1)?.split(' ').next().map(str::to_string))
            .collect();
        xids.sort();
        xids.dedup();
        xids.len()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Macvlan,
    Ipvlan,
}

/// The LAN: router and host namespaces, the veth between them.
struct Lan {
    tag: String,
    router: Netns,
    host: Netns,
}

/// A client namespace with its `eth0`.
struct Jail {
    ns: Netns,
    ifindex: u32,
    mac: [u8; 6],
}

impl Lan {
    fn new(tag: &str) -> Result<Lan, String> {
        let tag = format!("jdh{}{tag}", std::process::id());
        let router = Netns::new(format!("{tag}-r"))?;
        let host = Netns::new(format!("{tag}-h"))?;
        router.ip(&[
            "link", "add", "vr", "type", "veth", "peer", "name", "vh", "netns", &host.name,
        ])?;
        router.ip(&["addr", "add", "10.77.0.1/24", "dev", "vr"])?;
        router.ip(&["link", "set", "vr", "up"])?;
        host.ip(&["link", "set", "vh", "up"])?;
        Ok(Lan { tag, router, host })
    }

    /// The real server: 10.77.0.100-150, 2-minute leases.
    fn server(&self, extra: &[&str]) -> Result<Dnsmasq, String> {
        Dnsmasq::start(
            &self.router,
            "vr",
            "10.77.0.100,10.77.0.150,255.255.255.0,2m",
            extra,
        )
    }

    /// A child of the parent `vh`, moved into a new namespace as `eth0`.
    fn jail(&self, role: &str, kind: Kind) -> Result<Jail, String> {
        let ns = Netns::new(format!("{}-{role}", self.tag))?;
        let tmp = format!("t{role}");
        match kind {
            Kind::Macvlan => self.host.ip(&[
                "link", "add", &tmp, "link", "vh", "type", "macvlan", "mode", "bridge",
            ])?,
            Kind::Ipvlan => self.host.ip(&[
                "link", "add", &tmp, "link", "vh", "type", "ipvlan", "mode", "l2",
            ])?,
        };
        self.host.ip(&["link", "set", &tmp, "netns", &ns.name])?;
        ns.ip(&["link", "set", &tmp, "name", "eth0"])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        let out = ns.ip(&["-j", "link", "show", "eth0"])?;
        let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
        let ifindex = v[0]["ifindex"].as_u64().ok_or("no ifindex")? as u32;
        let mac_s = v[0]["address"].as_str().ok_or("no address")?;
        let mut mac = [0u8; 6];
        for (b, p) in mac.iter_mut().zip(mac_s.split(':')) {
            *b = u8::from_str_radix(p, 16).map_err(|e| e.to_string())?;
        }
        Ok(Jail { ns, ifindex, mac })
    }

    /// A rogue "jail" on the same parent, 10.77.0.66, serving 200-210.
    fn rogue(&self, extra: &[&str]) -> Result<(Jail, Dnsmasq), String> {
        let j = self.jail("g", Kind::Macvlan)?;
        j.ns.ip(&["addr", "add", "10.77.0.66/24", "dev", "eth0"])?;
        let d = Dnsmasq::start(
            &j.ns,
            "eth0",
            "10.77.0.200,10.77.0.210,255.255.255.0,2m",
            extra,
        )?;
        Ok((j, d))
    }
}

impl Jail {
    fn client(&self, id: &str, server: Option<Ipv4Addr>) -> Result<Client, String> {
        Client::new("eth0", self.ifindex, self.mac, client_id_for(id), server)
            .map_err(|e| e.to_string())
    }

    /// As the monitor does: `obtain_in` the jail's namespace.
    fn obtain(&self, c: &Client, prev: Option<&Lease>, secs: u64) -> Result<Lease, String> {
        let fd = std::fs::File::open(self.ns.path()).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(secs);
        jailer::dhcp::obtain_in(fd.as_fd(), c, prev, deadline).map_err(|e| format!("obtain: {e}"))
    }
}

fn mac_text(mac: [u8; 6]) -> String {
    let v: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    v.join(":")
}

fn in_real_range(a: Ipv4Addr) -> bool {
    let o = a.octets();
    o[..3] == [10, 77, 0] && (100..=150).contains(&o[3])
}

fn two_clients(tag: &str, kind: Kind) -> Result<(), String> {
    let lan = Lan::new(tag)?;
    let dns = lan.server(&[])?;
    let a = lan.jail("a", kind)?;
    let b = lan.jail("b", kind)?;
    if kind == Kind::Ipvlan && a.mac != b.mac {
        return Err("ipvlan children should share the parent's MAC".into());
    }
    let la = a.obtain(&a.client("jail-a", None)?, None, 20)?;
    let lb = b.obtain(&b.client("jail-b", None)?, None, 20)?;
    if la.address == lb.address {
        return Err(format!("both clients got {}", la.address));
    }
    for l in [&la, &lb] {
        if !in_real_range(l.address) || l.server != REAL || l.prefix != 24 {
            return Err(format!("unexpected lease {l:?}"));
        }
        if l.lease_secs != 120 || l.t1_secs != 60 || l.t2_secs != 105 {
            return Err(format!("unexpected times {l:?}"));
        }
        if dns.count("DHCPACK", &l.address.to_string()) != 1 {
            return Err(format!(
                "dnsmasq did not ACK {} once: {}",
                l.address,
                dns.log()
            ));
        }
    }
    // dnsmasq keyed them by client id (the lease file's last column).
    let leases = dns.leases();
    if !(leases.contains("00:70:72:6f:64:6e:67:3a:6a:61:69:6c:2d:61") || leases.contains("jail-a"))
    {
        return Err(format!("no lease keyed by jail-a's client id: {leases}"));
    }
    Ok(())
}

fn init_reboot_same_address() -> Result<(), String> {
    let lan = Lan::new("ir")?;
    let dns = lan.server(&[])?;
    let a = lan.jail("a", Kind::Macvlan)?;
    let c = a.client("jail-a", None)?;
    let t0 = Instant::now();
    let first = a.obtain(&c, None, 20)?;
    let t1 = Instant::now();
    // The monitor restarts: a new client with the recorded lease.
    let again = a.obtain(&a.client("jail-a", None)?, Some(&first), 20)?;
    // Informational, not asserted: what a jail's start waits for.
    eprintln!(
        "dhcp: first lease in {} ms, again by INIT-REBOOT in {} ms",
        (t1 - t0).as_millis(),
        t1.elapsed().as_millis()
    );
    if again.address != first.address {
        return Err(format!("{} then {}", first.address, again.address));
    }
    let mac = mac_text(a.mac);
    if dns.count("DHCPDISCOVER", &mac) != 1 || dns.count("DHCPACK", &mac) != 2 {
        return Err(format!(
            "expected one DISCOVER and two ACKs (the second to INIT-REBOOT): {}",
            dns.log()
        ));
    }
    Ok(())
}

fn nak_falls_back() -> Result<(), String> {
    let lan = Lan::new("nk")?;
    let dns = lan.server(&[])?;
    let a = lan.jail("a", Kind::Macvlan)?;
    // A lease recorded on another network (the jail moved), still running
    // by the clock (so INIT-REBOOT asks for it): the server NAKs.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let stale = Lease {
        address: Ipv4Addr::new(10, 78, 0, 5),
        prefix: 24,
        gateway: None,
        dns: vec![],
        server: REAL,
        server_mac: None,
        lease_secs: 120,
        t1_secs: 60,
        t2_secs: 105,
        obtained_at: now,
        released: false,
    };
    let l = a.obtain(&a.client("jail-a", None)?, Some(&stale), 20)?;
    if !in_real_range(l.address) {
        return Err(format!("unexpected lease {l:?}"));
    }
    let mac = mac_text(a.mac);
    if dns.count("DHCPNAK", &mac) != 1 || dns.count("DHCPDISCOVER", &mac) != 1 {
        return Err(format!("expected a NAK, then DISCOVER: {}", dns.log()));
    }
    Ok(())
}

fn release_seen(tag: &str, kind: Kind) -> Result<(), String> {
    let lan = Lan::new(tag)?;
    let dns = lan.server(&[])?;
    let a = lan.jail("a", kind)?;
    let c = a.client("jail-a", None)?;
    let l = a.obtain(&c, None, 20)?;
    let addr = l.address.to_string();
    if !dns.leases().contains(&addr) {
        return Err(format!("no lease for {addr} in {}", dns.leases()));
    }
    let fd = std::fs::File::open(a.ns.path()).map_err(|e| e.to_string())?;
    jailer::dhcp::release_in(fd.as_fd(), &c, &l).map_err(|e| e.to_string())?;
    let gone = wait_for(Duration::from_secs(10), || {
        dns.count("DHCPRELEASE", &addr) == 1 && !dns.leases().contains(&addr)
    });
    if !gone {
        return Err(format!(
            "dnsmasq kept the lease: log {} leases {}",
            dns.log(),
            dns.leases()
        ));
    }
    Ok(())
}

fn no_server_times_out() -> Result<(), String> {
    let lan = Lan::new("to")?;
    let a = lan.jail("a", Kind::Macvlan)?;
    let c = a.client("jail-a", None)?;
    let r =
        a.ns.enter(|| c.obtain(None, Instant::now() + Duration::from_secs(3)))?;
    match r {
        Err(e) if e.dhcp_kind() == DhcpErrorKind::Timeout => {
            if !e.to_string().contains("DISCOVER on eth0") {
                return Err(format!("message does not say what: {e}"));
            }
            Ok(())
        }
        other => Err(format!("expected a timeout, got {other:?}")),
    }
}

fn rogue_ignored_when_named() -> Result<(), String> {
    let lan = Lan::new("rg")?;
    // The real server answers 2 s late, so the rogue's offer comes first.
    let dns = lan.server(&["--dhcp-reply-delay=2"])?;
    let (_g, rogue) = lan.rogue(&[])?;
    let a = lan.jail("a", Kind::Macvlan)?;
    let l = a.obtain(&a.client("jail-a", Some(REAL))?, None, 20)?;
    if l.server != REAL || !in_real_range(l.address) {
        return Err(format!("took the rogue's lease {l:?}"));
    }
    let mac = mac_text(a.mac);
    if rogue.count("DHCPOFFER", &mac) == 0 {
        return Err(format!(
            "the rogue never offered, the test proves nothing: {}",
            rogue.log()
        ));
    }
    if dns.count("DHCPACK", &mac) != 1 {
        return Err(format!("the real server did not ACK: {}", dns.log()));
    }
    Ok(())
}

/// A forged DHCP server as a hostile jail could run one: a plain UDP socket
/// on port 67 (no raw socket, so its answers come from its own address),
/// answering every DISCOVER and REQUEST with 10.77.0.222 under the real
/// server's identifier. Counts what it sent; ends when `stop` is set.
fn forger(
    ns: &Netns,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
) -> Result<std::thread::JoinHandle<std::io::Result<std::io::Result<()>>>, String> {
    use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode};
    use dhcproto::{Decodable, Decoder, Encodable, Encoder};
    let fd = std::fs::File::open(ns.path()).map_err(|e| e.to_string())?;
    jailer::sys::dhcpsock::spawn_in_netns("forger".into(), fd.into(), move || {
        let sock = std::net::UdpSocket::bind("0.0.0.0:67")?;
        sock.set_broadcast(true)?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            let n = match sock.recv_from(&mut buf) {
                Ok((n, _)) => n,
                Err(_) => continue,
            };
            let Ok(m) = Message::decode(&mut Decoder::new(&buf[..n])) else {
                continue;
            };
            let kind = match m.opts().msg_type() {
                Some(MessageType::Discover) => MessageType::Offer,
                Some(MessageType::Request) => MessageType::Ack,
                _ => continue,
            };
            let z = Ipv4Addr::UNSPECIFIED;
            let mut r = Message::new_with_id(
                m.xid(),
                z,
                Ipv4Addr::new(10, 77, 0, 222),
                z,
                z,
                &m.chaddr()[..6],
            );
            r.set_opcode(Opcode::BootReply).set_flags(m.flags());
            let o = r.opts_mut();
            o.insert(DhcpOption::MessageType(kind));
            o.insert(DhcpOption::ServerIdentifier(REAL));
            o.insert(DhcpOption::AddressLeaseTime(120));
            o.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
            o.insert(DhcpOption::Router(vec![ROGUE]));
            if let Some(DhcpOption::ClientIdentifier(id)) =
                m.opts().get(dhcproto::v4::OptionCode::ClientIdentifier)
            {
                o.insert(DhcpOption::ClientIdentifier(id.clone()));
            }
            let mut out = Vec::new();
            if r.encode(&mut Encoder::new(&mut out)).is_ok() {
                sock.send_to(&out, "10.77.0.255:68")?;
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    })
    .map_err(|e| e.to_string())
}

fn rogue_claiming_real_id() -> Result<(), String> {
    let lan = Lan::new("rc")?;
    // The real server answers 2 s late, so the forgeries come first.
    let dns = lan.server(&["--dhcp-reply-delay=2"])?;
    let g = lan.jail("g", Kind::Macvlan)?;
    g.ns.ip(&["addr", "add", "10.77.0.66/24", "dev", "eth0"])?;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let handle = forger(&g.ns, stop.clone(), sent.clone())?;
    let a = lan.jail("a", Kind::Macvlan)?;
    let got = a.obtain(&a.client("jail-a", Some(REAL))?, None, 20);
    stop.store(true, Ordering::Relaxed);
    let forged = handle
        .join()
        .map_err(|_| "the forger panicked".to_string())?
        .map_err(|e| format!("forger: {e}"))?;
    forged.map_err(|e| format!("forger: {e}"))?;
    let l = got?;
    if l.server != REAL || !in_real_range(l.address) {
        return Err(format!("took the forged lease {l:?}"));
    }
    if sent.load(Ordering::Relaxed) == 0 {
        return Err("the forger never answered, the test proves nothing".into());
    }
    if dns.count("DHCPACK", &mac_text(a.mac)) != 1 {
        return Err(format!("the real server did not ACK: {}", dns.log()));
    }
    Ok(())
}

fn rogue_nak_ignored_on_restart() -> Result<(), String> {
    let lan = Lan::new("rn")?;
    let dns = lan.server(&["--dhcp-reply-delay=2"])?;
    let a = lan.jail("a", Kind::Macvlan)?;
    // The first lease, before the rogue is up, pins the real server.
    let first = a.obtain(&a.client("jail-a", None)?, None, 20)?;
    let (_g, rogue) = lan.rogue(&[])?;
    // Restart, no server named in the spec: the record's server is trusted,
    // and the rogue's NAK (it is authoritative and does not know the
    // address) is ignored.
    let again = a.obtain(&a.client("jail-a", None)?, Some(&first), 20)?;
    if again.address != first.address || again.server != REAL {
        return Err(format!("{first:?} then {again:?}"));
    }
    let mac = mac_text(a.mac);
    if rogue.count("DHCPNAK", &mac) == 0 {
        return Err(format!(
            "the rogue never NAKed, the test proves nothing: {}",
            rogue.log()
        ));
    }
    if dns.count("DHCPDISCOVER", &mac) != 1 {
        return Err(format!("the restart fell back to DISCOVER: {}", dns.log()));
    }
    Ok(())
}

fn ambiguous_refused() -> Result<(), String> {
    let lan = Lan::new("am")?;
    let _dns = lan.server(&[])?;
    let (_g, rogue) = lan.rogue(&[])?;
    let a = lan.jail("a", Kind::Macvlan)?;
    let c = a.client("jail-a", None)?;
    let r =
        a.ns.enter(|| c.obtain(None, Instant::now() + Duration::from_secs(20)))?;
    match r {
        Err(e) if e.dhcp_kind() == DhcpErrorKind::Ambiguous => {
            let m = e.to_string();
            if !m.contains(&REAL.to_string())
                || !m.contains(&ROGUE.to_string())
                || !m.contains("dhcp=SERVER")
            {
                return Err(format!(
                    "message does not name both servers and the fix: {m}"
                ));
            }
        }
        other => return Err(format!("expected an ambiguous error, got {other:?}")),
    }
    // Nothing was requested from either.
    if rogue.count("DHCPREQUEST", &mac_text(a.mac)) != 0 {
        return Err(format!("requested from the rogue: {}", rogue.log()));
    }
    Ok(())
}

/// dnsmasq's shortest lease is 2 minutes, but it sends the T1 and T2 it is
/// given: 10 s and 20 s keep the maintenance tests short.
const SHORT_TIMERS: [&str; 2] = ["--dhcp-option=option:T1,10s", "--dhcp-option=option:T2,20s"];

/// What `maintain` reported, owned (a `Changed` is only ever printed, in a
/// failure).
#[derive(Debug)]
#[allow(dead_code)]
enum Ev {
    Extended(Lease),
    Changed(Lease),
    Lost(Lease),
    Acquired(Lease),
}

use jailer::dhcp::Maintainer;

/// Runs `maintain` on a thread in the jail's namespace, as the monitor does
/// (`spawn_maintain`). The address is configured first, as the monitor's
/// link setup does with a lease (a renewal's answer is unicast to it).
fn maintain(
    a: &Jail,
    c: Client,
    lease: &Lease,
    stop: &Stop,
) -> Result<(Maintainer, std::sync::mpsc::Receiver<Ev>), String> {
    a.ns.ip(&[
        "addr",
        "add",
        &format!("{}/{}", lease.address, lease.prefix),
        "dev",
        "eth0",
    ])?;
    let (tx, rx) = std::sync::mpsc::channel::<Ev>();
    let fd = std::fs::File::open(a.ns.path()).map_err(|e| e.to_string())?;
    let on_event = move |ev: LeaseEvent<'_>| {
        let _ = tx.send(match ev {
            LeaseEvent::Extended(l) => Ev::Extended(l.clone()),
            LeaseEvent::Changed { new, .. } => Ev::Changed(new.clone()),
            LeaseEvent::Lost(l) => Ev::Lost(l.clone()),
            LeaseEvent::Acquired(l) => Ev::Acquired(l.clone()),
        });
    };
    let h = jailer::dhcp::spawn_maintain(fd.into(), c, lease.clone(), on_event, stop.clone())
        .map_err(|e| e.to_string())?;
    Ok((h, rx))
}

/// Stops the maintainer and returns the lease it held.
fn finish(h: Maintainer, stop: &Stop) -> Result<Option<Lease>, String> {
    stop.stop();
    h.join()
        .map_err(|_| "maintain panicked".to_string())?
        .map_err(|e| e.to_string())
}

fn renewed_at_t1() -> Result<(), String> {
    let lan = Lan::new("rw")?;
    let dns = lan.server(&SHORT_TIMERS)?;
    let a = lan.jail("a", Kind::Macvlan)?;
    let c = a.client("jail-a", None)?;
    let first = a.obtain(&c, None, 20)?;
    if first.t1_secs != 10 {
        return Err(format!("dnsmasq did not send T1 10 s: {first:?}"));
    }
    let stop = Stop::new().map_err(|e| e.to_string())?;
    let (h, rx) = maintain(&a, c, &first, &stop)?;
    // T1 is 10 s after the first request; allow for T2 and a slow machine.
    let got = rx.recv_timeout(Duration::from_secs(60));
    let held = finish(h, &stop)?;
    let renewed = match got {
        Ok(Ev::Extended(l)) => l,
        other => {
            return Err(format!(
                "expected an extension, got {other:?}: {}",
                dns.log()
            ))
        }
    };
    if renewed.address != first.address || renewed.obtained_at < first.obtained_at + 9 {
        return Err(format!("{first:?} renewed as {renewed:?}"));
    }
    if held.as_ref() != Some(&renewed) {
        return Err(format!("maintain returned {held:?}, not the renewed lease"));
    }
    let addr = first.address.to_string();
    // The selecting REQUEST, then the renewal: unicast to the server's MAC,
    // answered before T2 (no rebinding transaction).
    if dns.count("DHCPACK", &addr) != 2 || dns.count("DHCPREQUEST", &addr) != 2 {
        return Err(format!(
            "expected two REQUESTs and ACKs for {addr}: {}",
            dns.log()
        ));
    }
    Ok(())
}

fn rebound_at_t2() -> Result<(), String> {
    let lan = Lan::new("rb")?;
    let dns = lan.server(&SHORT_TIMERS)?;
    let a = lan.jail("a", Kind::Macvlan)?;
    let c = a.client("jail-a", None)?;
    let mut first = a.obtain(&c, None, 20)?;
    // The server's MAC changed (a replaced machine): the unicast renewals
    // reach nobody, and the broadcast at T2 finds the server.
    first.server_mac = Some("02:00:00:00:00:99".into());
    let stop = Stop::new().map_err(|e| e.to_string())?;
    let (h, rx) = maintain(&a, c, &first, &stop)?;
    let got = rx.recv_timeout(Duration::from_secs(60));
    finish(h, &stop)?;
    let renewed = match got {
        Ok(Ev::Extended(l)) => l,
        other => {
            return Err(format!(
                "expected an extension, got {other:?}: {}",
                dns.log()
            ))
        }
    };
    if renewed.obtained_at < first.obtained_at + 19 {
        return Err(format!("extended before T2: {first:?} then {renewed:?}"));
    }
    if renewed.server_mac.as_deref() == first.server_mac.as_deref() {
        return Err(format!(
            "the server's real MAC was not learnt again: {renewed:?}"
        ));
    }
    let addr = first.address.to_string();
    if dns.count("DHCPREQUEST", &addr) != 2 {
        return Err(format!(
            "expected the selecting REQUEST and the rebinding one only: {}",
            dns.log()
        ));
    }
    Ok(())
}

fn nak_on_renewal() -> Result<(), String> {
    let lan = Lan::new("rk")?;
    let dns = lan.server(&SHORT_TIMERS)?;
    let a = lan.jail("a", Kind::Macvlan)?;
    let c = a.client("jail-a", None)?;
    let first = a.obtain(&c, None, 20)?;
    // The server is reconfigured with another range and forgets the lease:
    // the renewal gets a NAK.
    drop(dns);
    let dns = Dnsmasq::start(
        &lan.router,
        "vr",
        "10.77.0.160,10.77.0.170,255.255.255.0,2m",
        &SHORT_TIMERS,
    )?;
    let stop = Stop::new().map_err(|e| e.to_string())?;
    let (h, rx) = maintain(&a, c, &first, &stop)?;
    let lost = rx.recv_timeout(Duration::from_secs(60));
    let acquired = rx.recv_timeout(Duration::from_secs(60));
    let held = finish(h, &stop)?;
    match lost {
        Ok(Ev::Lost(l)) if l.address == first.address => {}
        other => {
            return Err(format!(
                "expected the lease lost, got {other:?}: {}",
                dns.log()
            ))
        }
    }
    let new = match acquired {
        Ok(Ev::Acquired(l)) => l,
        other => {
            return Err(format!(
                "expected a new lease, got {other:?}: {}",
                dns.log()
            ))
        }
    };
    if !(160..=170).contains(&new.address.octets()[3]) || held.as_ref() != Some(&new) {
        return Err(format!("new lease {new:?}, held {held:?}"));
    }
    if dns.count("DHCPNAK", &first.address.to_string()) != 1 {
        return Err(format!("no NAK for the old address: {}", dns.log()));
    }
    Ok(())
}
