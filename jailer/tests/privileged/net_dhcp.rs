//! Jails with DHCP networking, end to end: `jailer start` of a jail whose
//! `--net` says `dhcp`, on the LAN of network.rs (a "host" namespace whose
//! veth end is the parent, a "router" namespace at the other end, 10.77.0.1)
//! with a real dnsmasq in the router namespace. What is asserted is what a
//! user relies on: the jail's address, route, resolv.conf and hosts, the
//! recorded lease (leases.json, inspect, jail_interfaces), what dnsmasq saw
//! (the REQUESTs, the renewal, the RELEASE), and that a failed start leaves
//! nothing (no link, no cgroup, not running).
//!
//! Names: jails `nd-*`, LANs `jn-dTAG-*` (network.rs's `Lan`, deleted by
//! exact name on drop); each dnsmasq is killed by the pid this test spawned.

use crate::check;
use crate::network::{eth0, ip, ping_ok, tcp, tcp_server, Lan};
use crate::runtime::{inspect, jail, sh_ok, wait_until};
use libtest_mimic::Trial;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn trials() -> Vec<Trial> {
    // dnsmasq is installed by tests/run.sh; a local run without it shows
    // these tests as ignored, and under CI=true they run and fail.
    let ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
    let no_dnsmasq = !ci && !crate::dhcp::dnsmasq_installed();
    if no_dnsmasq {
        eprintln!(
            "net_dhcp tests ignored: dnsmasq is not installed (apt-get install dnsmasq-base)"
        );
    }
    let trials = vec![
        Trial::test(
            "net_dhcp::two_dhcp_jails_get_different_addresses_and_reach_each_other_and_the_router",
            || check(two_jails()),
        ),
        Trial::test(
            "net_dhcp::stop_releases_the_lease_and_leaves_no_link_and_restart_gets_the_same_address",
            || check(stop_releases()),
        ),
        Trial::test("net_dhcp::a_running_jails_lease_is_renewed_at_t1", || {
            check(renewed_at_t1())
        }),
        Trial::test(
            "net_dhcp::a_lease_lost_at_renewal_moves_the_jail_to_its_new_address_and_route",
            || check(moved()),
        ),
        Trial::test(
            "net_dhcp::a_rogue_dhcp_server_in_a_jail_never_captures_a_later_jails_lease",
            || check(rogue_jail()),
        ),
        // Needs no dnsmasq: not ignored without it.
        Trial::test("net_dhcp::no_dhcp_server_fails_the_start_cleanly", || {
            check(no_server())
        }),
        Trial::test(
            "net_dhcp::ipvlan_dhcp_jails_sharing_a_mac_get_different_addresses",
            || check(ipvlan_jails()),
        )
        .with_ignored_flag(crate::dhcp::ipvlan_missing()),
    ];
    trials
        .into_iter()
        .map(|t| {
            let ignore =
                no_dnsmasq && !t.name().ends_with("no_dhcp_server_fails_the_start_cleanly");
            if ignore {
                t.with_ignored_flag(true)
            } else {
                t
            }
        })
        .collect()
}

const ROUTER: &str = "10.77.0.1";
/// The DNS server dnsmasq hands out (option 6); nothing listens there.
const LEASE_DNS: &str = "10.77.0.53";
/// A DNS server a spec names with `dns=`, overriding the lease's.
const OWN_DNS: &str = "10.77.0.9";
/// The rogue jail's own (static) address, and the address it hands out.
const ROGUE: &str = "10.77.0.66";
const ROGUE_OFFER: &str = "10.99.0.50";

/// A dnsmasq serving DHCP on the router's end of the LAN, killed by its
/// pid on drop.
struct Dnsmasq {
    child: Child,
    dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// 10.77.0.100-150, 2-minute leases (dnsmasq's shortest: T1 60 s),
    /// DNS server `LEASE_DNS`; the router (its own address) is 10.77.0.1.
    fn start(lan: &Lan, extra: &[&str]) -> Result<Dnsmasq, String> {
        Dnsmasq::start_range(lan, "10.77.0.100,10.77.0.150", extra)
    }

    /// [`Dnsmasq::start`] handing out `range` (`FIRST,LAST`).
    fn start_range(lan: &Lan, range: &str, extra: &[&str]) -> Result<Dnsmasq, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let d = dir.path();
        // network.rs's Lan: the router's end of the veth is `jnTAGr`.
        let iface = format!("{}r", lan.parent.trim_end_matches('p'));
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", lan.router))
            .arg("dnsmasq")
            .arg("--keep-in-foreground")
            .arg("--conf-file=/dev/null")
            .arg("--port=0")
            .arg(format!("--interface={iface}"))
            .arg("--bind-interfaces")
            .arg(format!("--dhcp-range={range},255.255.255.0,2m"))
            .arg(format!("--dhcp-option=option:dns-server,{LEASE_DNS}"))
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
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("dnsmasq: {e}"))?;
        let mut dns = Dnsmasq { child, dir };
        let ready = wait_until(Duration::from_secs(10), || {
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

    /// How many transactions (distinct xids) dnsmasq logged a message
    /// `what` (DHCPACK, DHCPRELEASE, ...) in that mentions `needle`.
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

/// Runs `jailer ARGS.. --json` and returns the array it prints.
fn json_rows(root: &Path, args: &[&str]) -> Result<Vec<serde_json::Value>, String> {
    let mut all = args.to_vec();
    all.push("--json");
    let out = crate::cli::ok(root, &all)?;
    serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn dhcp_spec(lan: &Lan, extra: &str) -> String {
    format!("macvlan,parent={},dhcp{extra}", lan.parent)
}

/// The jail's `leases.json`.
fn leases_json(root: &Path, name: &str) -> Result<serde_json::Value, String> {
    let p = root.join(format!("jails/{name}/leases.json"));
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}: {text}", p.display()))
}

/// The running jail's leased eth0 as `inspect` shows it: (address, whole
/// interface record). Checks that the lease is recorded in inspect and in
/// leases.json alike, from `server`, unexpired, and that the jail holds the
/// address.
fn leased(root: &Path, name: &str, server: &str) -> Result<(String, serde_json::Value), String> {
    let rec = inspect(root, name)?;
    let i = rec["interfaces"][0].clone();
    let lease = &i["lease"];
    let addr = lease["address"]
        .as_str()
        .ok_or_else(|| format!("{name}: no lease in inspect: {i}"))?
        .to_string();
    let prefix = lease["prefix"].as_u64().unwrap_or(0);
    if i["address"] != format!("{addr}/{prefix}").as_str()
        || prefix != 24
        || lease["server"] != server
        || lease["gateway"] != ROUTER
        || lease["expires_at"].as_i64().unwrap_or(0) <= now()
    {
        return Err(format!("{name}: inspect's interface {i}"));
    }
    let file = leases_json(root, name)?;
    if file["eth0"]["address"] != addr.as_str() || file["eth0"]["server"] != server {
        return Err(format!("{name}: leases.json {file} vs inspect {i}"));
    }
    let (_, held) = eth0(root, name)?;
    if held != addr {
        return Err(format!("{name}: eth0 holds {held:?}, the lease is {addr}"));
    }
    Ok((addr, i))
}

fn in_real_range(a: &str) -> bool {
    a.strip_prefix("10.77.0.")
        .and_then(|o| o.parse::<u8>().ok())
        .is_some_and(|o| (100..=150).contains(&o))
}

/// The links of the LAN's host namespace other than lo and the parent: a
/// failed or stopped jail's link left on the parent would show here (or in
/// the parent's unicast filter, `Lan::parent_unicast`).
fn stray_links(lan: &Lan) -> Result<Vec<String>, String> {
    let out = ip(&["-n", &lan.host, "-o", "link"])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .filter(|n| n != "lo" && *n != lan.parent)
        .collect())
}

/// The jail's cgroup directories (`jailer/NAME-*`, v2 and v1).
fn cgroups(name: &str) -> Result<String, String> {
    let out = Command::new("sh")
        .args([
            "-c",
            &format!(
                "ls -d /sys/fs/cgroup/jailer/{name}-* /sys/fs/cgroup/*/jailer/{name}-* 2>/dev/null"
            ),
        ])
        .output()
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A start that failed left nothing: the parent's filter as `before`, no
/// link beside the parent, no cgroup, the jail not running.
fn nothing_left(root: &Path, lan: &Lan, name: &str, before: &str) -> Result<(), String> {
    let after = lan.parent_unicast()?;
    if after != before {
        return Err(format!(
            "{name}: the failed start changed the parent's filter: {before} then {after}"
        ));
    }
    let stray = stray_links(lan)?;
    if !stray.is_empty() {
        return Err(format!("{name}: the failed start left links {stray:?}"));
    }
    let cg = cgroups(name)?;
    if !cg.is_empty() {
        return Err(format!("{name}: the failed start left cgroups {cg}"));
    }
    let rec = inspect(root, name)?;
    if rec["state"] != "created" && rec["state"] != "stopped" {
        return Err(format!(
            "{name}: after a failed start it is {}",
            rec["state"]
        ));
    }
    Ok(())
}

fn pool() -> Result<std::path::PathBuf, String> {
    crate::debian_pool()
}

fn two_jails() -> Result<(), String> {
    let root = pool()?;
    let lan = Lan::new("dtw")?;
    let dns = Dnsmasq::start(&lan, &[])?;
    let _a = jail(&root, "nd-tw-a");
    let _b = jail(&root, "nd-tw-b");
    lan.start_sh(&root, "nd-tw-a", &[&dhcp_spec(&lan, "")], "sleep 1000")?;
    // b names its DNS server: that one, not the lease's, is in its
    // resolv.conf.
    lan.start_sh(
        &root,
        "nd-tw-b",
        &[&dhcp_spec(&lan, &format!(",dns={OWN_DNS}"))],
        &tcp_server("b"),
    )?;
    let (a, _) = leased(&root, "nd-tw-a", ROUTER)?;
    let (b, ib) = leased(&root, "nd-tw-b", ROUTER)?;
    if a == b || !in_real_range(&a) || !in_real_range(&b) {
        return Err(format!("leases {a} and {b}: {}", dns.log()));
    }
    if ib["lease"]["dns"] != serde_json::json!([LEASE_DNS]) {
        return Err(format!("b's lease DNS: {ib}"));
    }
    for (name, addr, ns, not) in [
        ("nd-tw-a", &a, LEASE_DNS, OWN_DNS),
        ("nd-tw-b", &b, OWN_DNS, LEASE_DNS),
    ] {
        let files = sh_ok(
            &root,
            name,
            "cat /etc/resolv.conf /etc/hosts /proc/net/route",
        )?;
        if !files.contains(&format!("nameserver {ns}\n"))
            || files.contains(&format!("nameserver {not}"))
            || !files.contains(&format!("{addr}\t{name}"))
            // The default route via 10.77.0.1 (little-endian hex).
            || !files
                .lines()
                .any(|l| l.starts_with("eth0\t00000000\t01004D0A"))
        {
            return Err(format!("{name}'s resolv.conf, hosts, routes: {files}"));
        }
        if dns.count("DHCPACK", addr) != 1 {
            return Err(format!("dnsmasq's ACKs for {addr}: {}", dns.log()));
        }
    }
    ping_ok(&root, "nd-tw-a", ROUTER)?;
    ping_ok(&root, "nd-tw-b", ROUTER)?;
    ping_ok(&root, "nd-tw-a", &b)?;
    ping_ok(&root, "nd-tw-b", &a)?;
    let got = tcp(&root, "nd-tw-a", &b)?;
    if got != "hello from b\n" {
        return Err(format!("a TCP client in a got {got:?} from b's service"));
    }
    let rows = json_rows(
        &root,
        &[
            "query",
            "SELECT * FROM jail_interfaces WHERE jail = 'nd-tw-a'",
        ],
    )?;
    let row = rows
        .iter()
        .find(|r| r["interface"] == "eth0")
        .ok_or_else(|| format!("no eth0 row: {rows:?}"))?;
    let expires = inspect(&root, "nd-tw-a")?["interfaces"][0]["lease"]["expires_at"].as_i64();
    let dhcp_on = row["dhcp"] == 1 || row["dhcp"] == true;
    if row["address"] != a.as_str()
        || row["prefix"] != 24
        || row["gateway"] != ROUTER
        || row["dns"] != LEASE_DNS
        || !dhcp_on
        || row["lease_expires"].as_i64() != expires
        || row["lease_expires"].as_i64().unwrap_or(0) <= now()
    {
        return Err(format!(
            "jail_interfaces for a (lease expires {expires:?}): {row}"
        ));
    }
    // The jails table shows eth0's lease too.
    let rows = json_rows(
        &root,
        &[
            "query",
            "SELECT ip_address, gateway, dns, dhcp_server, lease_obtained, lease_expires \
             FROM jails WHERE name = 'nd-tw-a'",
        ],
    )?;
    let j = rows.first().ok_or("no jails row for a")?;
    let obtained = inspect(&root, "nd-tw-a")?["interfaces"][0]["lease"]["obtained_at"].as_i64();
    if j["ip_address"] != a.as_str()
        || j["gateway"] != ROUTER
        || j["dns"] != LEASE_DNS
        || j["dhcp_server"] != ROUTER
        || j["lease_expires"].as_i64() != expires
        || j["lease_obtained"].as_i64() != obtained
        || obtained.unwrap_or(0) <= 0
    {
        return Err(format!("jails row for a (obtained {obtained:?}): {j}"));
    }
    // And `ls`: the leased address in NET, the lease in --json.
    let table = crate::cli::ok(&root, &["ls"])?;
    if !table
        .lines()
        .any(|l| l.starts_with("nd-tw-a ") && l.contains(&format!("{a}/24")))
    {
        return Err(format!("ls shows no lease for a: {table}"));
    }
    let all = json_rows(&root, &["ls"])?;
    let e = all
        .iter()
        .find(|e| e["name"] == "nd-tw-a")
        .ok_or_else(|| format!("no a in ls --json: {all:?}"))?;
    let l = &e["interfaces"][0]["lease"];
    if l["address"] != a.as_str() || l["server"] != ROUTER || l["expires_at"].as_i64() != expires {
        return Err(format!("ls --json's lease for a: {e}"));
    }
    Ok(())
}

fn stop_releases() -> Result<(), String> {
    let root = pool()?;
    let lan = Lan::new("drl")?;
    let dns = Dnsmasq::start(&lan, &[])?;
    let _j = jail(&root, "nd-rl");
    lan.start_sh(&root, "nd-rl", &[&dhcp_spec(&lan, "")], "sleep 1000")?;
    let (addr, _) = leased(&root, "nd-rl", ROUTER)?;
    let (mac, _) = eth0(&root, "nd-rl")?;
    if !dns.leases().contains(&addr) || !lan.parent_unicast()?.contains(&mac) {
        return Err(format!(
            "while running: dnsmasq's leases {}, the parent's filter {}",
            dns.leases(),
            lan.parent_unicast()?
        ));
    }
    lan.ok(&root, &["stop", "-t", "0", "nd-rl"])?;
    // stop returned after the RELEASE was sent; dnsmasq logs it a moment
    // later.
    let released = wait_until(Duration::from_secs(10), || {
        dns.count("DHCPRELEASE", &addr) == 1 && !dns.leases().contains(&addr)
    });
    if !released {
        return Err(format!(
            "dnsmasq did not see the release of {addr}: log {} leases {}",
            dns.log(),
            dns.leases()
        ));
    }
    let filter = lan.parent_unicast()?;
    let stray = stray_links(&lan)?;
    if filter.contains(&mac) || !stray.is_empty() {
        return Err(format!(
            "after stop: the parent's filter {filter}, links beside it {stray:?}"
        ));
    }
    // The lease stays recorded after stop.
    let kept = leases_json(&root, "nd-rl")?;
    if kept["eth0"]["address"] != addr.as_str() {
        return Err(format!("after stop leases.json is {kept}"));
    }
    lan.ok(&root, &["start", "nd-rl"])?;
    let (again, _) = leased(&root, "nd-rl", ROUTER)?;
    let (mac2, _) = eth0(&root, "nd-rl")?;
    if again != addr || mac2 != mac {
        return Err(format!(
            "restart: {mac} {addr} then {mac2} {again}: {}",
            dns.log()
        ));
    }
    ping_ok(&root, "nd-rl", ROUTER)?;
    // rm takes the record with it.
    lan.ok(&root, &["rm", "--force", "nd-rl"])?;
    if root.join("jails/nd-rl").exists() {
        return Err("rm left jails/nd-rl".into());
    }
    Ok(())
}

fn renewed_at_t1() -> Result<(), String> {
    let root = pool()?;
    let lan = Lan::new("drn")?;
    let dns = Dnsmasq::start(&lan, &[])?;
    let _j = jail(&root, "nd-rn");
    lan.start_sh(&root, "nd-rn", &[&dhcp_spec(&lan, "")], "sleep 1000")?;
    let (addr, i) = leased(&root, "nd-rn", ROUTER)?;
    let first = i["lease"]["obtained_at"].as_i64().unwrap_or(0);
    if i["lease"]["t1_secs"] != 60 || i["lease"]["lease_secs"] != 120 {
        return Err(format!("dnsmasq's 2-minute lease is not T1 60 s: {i}"));
    }
    // T1 is 60 s after the lease was obtained: poll (bounded at 90 s) for
    // the renewal, checking the jail keeps its address meanwhile.
    let mut renewed = None;
    for _ in 0..45 {
        let (_, held) = eth0(&root, "nd-rn")?;
        if held != addr {
            return Err(format!(
                "while waiting for T1 eth0 held {held:?}, not {addr}"
            ));
        }
        let at = leases_json(&root, "nd-rn")?["eth0"]["obtained_at"]
            .as_i64()
            .unwrap_or(0);
        if at > first {
            renewed = Some(at);
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let Some(at) = renewed else {
        return Err(format!(
            "obtained_at still {first} after 90 s: {}",
            dns.log()
        ));
    };
    if at < first + 55 {
        return Err(format!("renewed at {at}, before T1 (obtained {first})"));
    }
    if dns.count("DHCPACK", &addr) != 2 {
        return Err(format!(
            "dnsmasq did not ACK a renewal of {addr}: {}",
            dns.log()
        ));
    }
    let (again, _) = leased(&root, "nd-rn", ROUTER)?;
    if again != addr {
        return Err(format!("the renewal moved {addr} to {again}"));
    }
    ping_ok(&root, "nd-rn", ROUTER)
}

/// The LAN's server is replaced, with the same address, by one handing
/// out another range: the jail's renewal at T1 is refused (NAK: dnsmasq is
/// authoritative and the address is outside its range), the lease is lost
/// and a new one found, and the monitor moves the jail's interface to the
/// new address, with its default route, and records it.
fn moved() -> Result<(), String> {
    let root = pool()?;
    let lan = Lan::new("dmv")?;
    let timers = ["--dhcp-option=option:T1,8s", "--dhcp-option=option:T2,14s"];
    let dns = Dnsmasq::start(&lan, &timers)?;
    let _j = jail(&root, "nd-mv");
    lan.start_sh(&root, "nd-mv", &[&dhcp_spec(&lan, "")], "sleep 1000")?;
    let (old, _) = leased(&root, "nd-mv", ROUTER)?;
    drop(dns);
    let dns = Dnsmasq::start_range(&lan, "10.77.0.200,10.77.0.220", &timers)?;
    let mut new = None;
    let moved = wait_until(Duration::from_secs(60), || {
        match leased(&root, "nd-mv", ROUTER) {
            Ok((a, _)) if a != old => {
                new = Some(a);
                true
            }
            _ => false,
        }
    });
    let Some(new) = new.filter(|_| moved) else {
        return Err(format!(
            "the jail still has {old} (or no lease) a minute after its server changed: {}",
            dns.log()
        ));
    };
    let in_new = new
        .strip_prefix("10.77.0.")
        .and_then(|o| o.parse::<u8>().ok())
        .is_some_and(|o| (200..=220).contains(&o));
    if !in_new || dns.count("DHCPNAK", &old) == 0 {
        return Err(format!("moved from {old} to {new}: {}", dns.log()));
    }
    // The old address is gone from the interface (leased() checked that
    // eth0 holds the new one only), and the default route is back.
    let route = sh_ok(&root, "nd-mv", "cat /proc/net/route")?;
    if !route.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 2 && f[0] == "eth0" && f[1] == "00000000" && f[2] == "01004D0A"
    }) {
        return Err(format!(
            "no default route via {ROUTER} after the move: {route}"
        ));
    }
    ping_ok(&root, "nd-mv", ROUTER)
}

/// A DHCP server as a hostile jail can run one (it holds
/// net_bind_service, but no CAP_NET_RAW): a UDP socket on port 67 that
/// answers every DISCOVER with an OFFER and every REQUEST with an ACK of
/// 10.99.0.50 (router 10.99.0.1), from and identified as its own address
/// 10.77.0.66, sent to the LAN's broadcast address. It logs each answer
/// in /tmp/rogue.log, after "ready" once bound. (The template has perl but
/// no dnsmasq.)
const ROGUE_PL: &str = r#"
use strict; use Socket; use IO::Handle;
socket(my $s, PF_INET, SOCK_DGRAM, getprotobyname("udp")) or die "socket: $!\n";
setsockopt($s, SOL_SOCKET, SO_REUSEADDR, 1) or die "reuseaddr: $!\n";
setsockopt($s, SOL_SOCKET, SO_BROADCAST, 1) or die "broadcast: $!\n";
bind($s, sockaddr_in(67, INADDR_ANY)) or die "bind: $!\n";
open(my $log, ">>", "/tmp/rogue.log") or die "log: $!\n";
$log->autoflush(1);
print $log "ready\n";
my $me = inet_aton("10.77.0.66");
while (1) {
    my $from = recv($s, my $m, 1500, 0);
    next unless defined $from && length($m) >= 240;
    my ($op, $xid, $flags, $chaddr) = unpack("C x3 N x2 n x16 a16", $m);
    next unless $op == 1;
    my ($type, $i) = (0, 240);
    while ($i + 1 < length($m)) {
        my $c = ord(substr($m, $i, 1));
        last if $c == 255;
        if ($c == 0) { $i++; next }
        my $l = ord(substr($m, $i + 1, 1));
        $type = ord(substr($m, $i + 2, 1)) if $c == 53;
        $i += 2 + $l;
    }
    my $reply;
    if ($type == 1) { $reply = 2 } elsif ($type == 3) { $reply = 5 } else { next }
    my $r = pack("CCCC N n n a4 a4 a4 a4 a16 x64 x128 N", 2, 1, 6, 0, $xid, 0, $flags,
        "\0" x 4, inet_aton("10.99.0.50"), $me, "\0" x 4, $chaddr, 0x63825363);
    $r .= pack("CCC", 53, 1, $reply) . pack("CC", 54, 4) . $me . pack("CCN", 51, 4, 120)
        . pack("CC", 1, 4) . inet_aton("255.255.255.0") . pack("CC", 3, 4)
        . inet_aton("10.99.0.1") . pack("C", 255);
    send($s, $r, 0, sockaddr_in(68, inet_aton("10.77.0.255"))) or die "send: $!\n";
    print $log ($reply == 2 ? "OFFER" : "ACK"), " 10.99.0.50 xid $xid\n";
}
"#;

/// How many answers of `kind` (OFFER, ACK) the rogue jail `rogue` logged.
fn rogue_sent(root: &Path, rogue: &str, kind: &str) -> Result<usize, String> {
    let log = sh_ok(root, rogue, "cat /tmp/rogue.log")?;
    Ok(log
        .lines()
        .filter(|l| l.starts_with(&format!("{kind} ")))
        .count())
}

/// Starts the rogue DHCP server in a jail `name` with the static address
/// `ROGUE` on `lan`, and waits until it is bound.
fn start_rogue(root: &Path, lan: &Lan, name: &str) -> Result<(), String> {
    lan.ok(
        root,
        &[
            "create",
            name,
            "--template",
            "deb",
            "--net",
            &format!("macvlan,parent={},ip={ROGUE}/24", lan.parent),
            "--",
            "perl",
            "-e",
            ROGUE_PL,
        ],
    )?;
    lan.ok(root, &["start", name])?;
    let up = wait_until(Duration::from_secs(10), || {
        sh_ok(root, name, "grep -q ready /tmp/rogue.log").is_ok()
    });
    if !up {
        let logs = crate::cli::jailer(root, &["logs", name]);
        return Err(format!(
            "the rogue did not bind port 67: {}",
            String::from_utf8_lossy(&logs.stdout)
        ));
    }
    Ok(())
}

fn rogue_jail() -> Result<(), String> {
    let root = pool()?;
    let lan = Lan::new("drg")?;
    // dnsmasq as it comes: it pings an address for about 3 s before it
    // offers it, so the rogue (which answers at once) is always first.
    let dns = Dnsmasq::start(&lan, &[])?;
    let spec = dhcp_spec(&lan, "");
    // The victim's first lease, before any rogue: it pins the real server
    // for the victim, and for the pool on this parent.
    let _v = jail(&root, "nd-rg-v");
    lan.start_sh(&root, "nd-rg-v", &[&spec], "sleep 1000")?;
    let (first, _) = leased(&root, "nd-rg-v", ROUTER)?;
    lan.ok(&root, &["stop", "-t", "0", "nd-rg-v"])?;

    let _g = jail(&root, "nd-rg-g");
    start_rogue(&root, &lan, "nd-rg-g")?;

    // (a) The victim restarted: its recorded server is the only one
    // believed, the rogue's answers are not.
    lan.ok(&root, &["start", "nd-rg-v"])?;
    let (again, _) = leased(&root, "nd-rg-v", ROUTER)?;
    if again != first {
        return Err(format!(
            "the victim had {first}, after the rogue came {again}"
        ));
    }
    let answered_a = rogue_sent(&root, "nd-rg-g", "OFFER")? + rogue_sent(&root, "nd-rg-g", "ACK")?;
    if answered_a == 0 {
        return Err("the rogue never answered the victim's restart: (a) proves nothing".into());
    }

    // (b) A new jail naming the real server.
    let _n = jail(&root, "nd-rg-n");
    lan.start_sh(
        &root,
        "nd-rg-n",
        &[&dhcp_spec(&lan, &format!("={ROUTER}"))],
        "sleep 1000",
    )?;
    let (named, _) = leased(&root, "nd-rg-n", ROUTER)?;
    if !in_real_range(&named) || named == first {
        return Err(format!("dhcp={ROUTER} got {named} (victim {first})"));
    }
    let offers_b = rogue_sent(&root, "nd-rg-g", "OFFER")?;

    // (c) A new jail naming no server, on a parent where the pool learned
    // the real server from the victim's first lease: the rogue offers to
    // it, and it gets the real server's address all the same.
    let _p = jail(&root, "nd-rg-p");
    lan.start_sh(&root, "nd-rg-p", &[&spec], "sleep 1000")?;
    let (plain, _) = leased(&root, "nd-rg-p", ROUTER)?;
    if !in_real_range(&plain) {
        return Err(format!("a plain dhcp jail beside the rogue got {plain}"));
    }
    if rogue_sent(&root, "nd-rg-g", "OFFER")? <= offers_b {
        return Err("the rogue did not offer to the plain jail: (c) proves nothing".into());
    }
    if dns.log().contains(ROGUE_OFFER) {
        return Err(format!(
            "someone asked the real server for the rogue's address: {}",
            dns.log()
        ));
    }

    // (d) A parent where no jail ever had a lease (no server learned), the
    // rogue already there and answering at once, the real server 3 s
    // behind: the rogue's answers come from a jail's interface, so they are
    // never believed; the new jail gets the real server's address and the
    // pool learns the real server, not the rogue.
    let lan2 = Lan::new("drg2")?;
    let _dns2 = Dnsmasq::start(&lan2, &[])?;
    let _g2 = jail(&root, "nd-rg-g2");
    start_rogue(&root, &lan2, "nd-rg-g2")?;
    let _q = jail(&root, "nd-rg-q");
    lan2.start_sh(&root, "nd-rg-q", &[&dhcp_spec(&lan2, "")], "sleep 1000")?;
    let (fresh, _) = leased(&root, "nd-rg-q", ROUTER)?;
    if !in_real_range(&fresh) {
        return Err(format!(
            "a jail on a fresh parent beside the rogue got {fresh}"
        ));
    }
    if rogue_sent(&root, "nd-rg-g2", "OFFER")? == 0 {
        return Err("the rogue did not offer on the fresh parent: (d) proves nothing".into());
    }
    let learned = std::fs::read_to_string(root.join("dhcp-servers").join(&lan2.parent))
        .map_err(|e| format!("the pool learned no server for {}: {e}", lan2.parent))?;
    if learned.trim() != ROUTER {
        return Err(format!("the pool learned {learned:?} for {}", lan2.parent));
    }
    Ok(())
}

fn no_server() -> Result<(), String> {
    let root = pool()?;
    let lan = Lan::new("dno")?;
    let _j = jail(&root, "nd-no");
    lan.ok(
        &root,
        &[
            "create",
            "nd-no",
            "--template",
            "deb",
            "--net",
            &dhcp_spec(&lan, ""),
            "--",
            "/bin/sleep",
            "1000",
        ],
    )?;
    let before = lan.parent_unicast()?;
    let out = lan.jailer(&root, &["start", "nd-no"]);
    let err = String::from_utf8_lossy(&out.stderr);
    // Nothing answered a macvlan link: the error says what to try.
    if out.status.success() || !err.contains("DHCP") || !err.contains("use ipvlan") {
        return Err(format!(
            "a DHCP start with no server ({}): {err}",
            out.status
        ));
    }
    nothing_left(&root, &lan, "nd-no", &before)?;
    if let Ok(rec) = leases_json(&root, "nd-no") {
        return Err(format!("a start without a lease recorded one: {rec}"));
    }
    Ok(())
}

fn ipvlan_jails() -> Result<(), String> {
    let root = pool()?;
    let lan = Lan::new("div")?;
    let dns = Dnsmasq::start(&lan, &[])?;
    let _a = jail(&root, "nd-iv-a");
    let _b = jail(&root, "nd-iv-b");
    let spec = format!("ipvlan,parent={},mode=l2,dhcp", lan.parent);
    lan.start_sh(&root, "nd-iv-a", &[&spec], "sleep 1000")?;
    lan.start_sh(&root, "nd-iv-b", &[&spec], "sleep 1000")?;
    let (a, _) = leased(&root, "nd-iv-a", ROUTER)?;
    let (b, _) = leased(&root, "nd-iv-b", ROUTER)?;
    let (mac_a, _) = eth0(&root, "nd-iv-a")?;
    let (mac_b, _) = eth0(&root, "nd-iv-b")?;
    if mac_a != mac_b || a == b || !in_real_range(&a) || !in_real_range(&b) {
        return Err(format!(
            "ipvlan jails: {mac_a} {a} and {mac_b} {b}: {}",
            dns.log()
        ));
    }
    ping_ok(&root, "nd-iv-a", ROUTER)?;
    ping_ok(&root, "nd-iv-b", ROUTER)?;
    ping_ok(&root, "nd-iv-a", &b)
}
