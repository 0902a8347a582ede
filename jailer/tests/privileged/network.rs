//! Jail networking on a LAN of the test's own: a network namespace that
//! plays the host (the macvlan/ipvlan parent is one end of a veth pair in
//! it) and a "router" namespace at the other end, at .1. `jailer` runs in
//! the host namespace by entering only its network namespace (`nsenter
//! --net`), so the monitor makes the jail's links there; nothing touches
//! the real host's namespace, links or routes, and every namespace is
//! deleted by exact name when the test ends, pass or fail.
//!
//! The jails run perl (in the template): an ICMP echo over a datagram
//! socket (what unprivileged `ping` does) and a TCP service and client.

use crate::check;
use crate::runtime::{inspect, jail, sh, sh_ok};
use libtest_mimic::Trial;
use std::path::Path;
use std::process::{Command, Output, Stdio};

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test(
            "network::net_static_macvlan_jails_reach_each_other_and_the_router",
            || check(static_macvlan()),
        ),
        Trial::test("network::net_ipvlan_jail_reaches_the_router", || {
            check(ipvlan())
        })
        .with_ignored_flag(crate::dhcp::ipvlan_missing()),
        Trial::test("network::net_none_jail_reaches_nothing_but_lo", || {
            check(none_jail())
        }),
        Trial::test("network::net_restart_keeps_mac_and_address", || {
            check(restart_keeps())
        }),
        Trial::test("network::net_stop_leaves_no_link_on_the_parent", || {
            check(stop_leaves_nothing())
        }),
        Trial::test(
            "network::net_bad_specs_are_refused_with_nothing_left",
            || check(bad_specs()),
        ),
        Trial::test(
            "network::net_unprivileged_ping_works_without_cap_net_raw",
            || check(unprivileged_ping()),
        ),
        Trial::test(
            "network::net_resolv_conf_symlink_never_makes_the_host_write_through_it",
            || check(resolv_symlink()),
        ),
        Trial::test(
            "network::net_a_jail_claiming_another_jails_address_is_refused_at_create",
            || check(address_claim()),
        ),
        Trial::test(
            "network::net_a_jail_cannot_take_a_neighbours_address_or_mac_or_forge_frames",
            || check(neighbour_attack()),
        ),
        Trial::test(
            "network::net_jail_interfaces_counts_in_the_jails_namespace",
            || check(interfaces_table()),
        ),
        Trial::test("network::net_two_interfaces_are_eth0_and_eth1", || {
            check(two_interfaces())
        }),
        Trial::test("network::net_init_net_parent_is_the_default_parent", || {
            check(net_parent())
        }),
    ]
}

/// An ICMP echo to ARGV[0] over a datagram socket (no CAP_NET_RAW needed
/// where `ping_group_range` covers the caller); exit 0 on a reply.
pub(crate) const PING: &str = r#"use Socket; socket(my $s, PF_INET, SOCK_DGRAM, 1) or die "socket: $!\n"; my $p = pack("CCnnn", 8, 0, 0, 0, 1) . "jailer"; send($s, $p, 0, sockaddr_in(0, inet_aton($ARGV[0]))) or die "send: $!\n"; my $r = ''; vec($r, fileno($s), 1) = 1; select(my $o = $r, undef, undef, 5) or die "no reply\n"; recv($s, my $b, 1500, 0); my ($t) = unpack("C", $b); print "reply $t\n"; exit($t == 0 ? 0 : 1);"#;

/// A TCP service on port 8080 answering `hello from NAME`.
pub(crate) fn tcp_server(name: &str) -> String {
    format!(
        r#"exec perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalPort => 8080, Listen => 5, ReuseAddr => 1) or die "listen: $!"; while ($c = $s->accept) {{ print $c "hello from {name}\n"; close $c }}'"#
    )
}

/// A TCP client of ARGV[0]:8080, retrying while the service starts.
pub(crate) const TCP_CLIENT: &str = r#"use IO::Socket::INET; for (1..100) { my $c = IO::Socket::INET->new(PeerAddr => "$ARGV[0]:8080", Timeout => 5); if ($c) { print scalar <$c>; exit 0 } select(undef, undef, undef, 0.1) } die "connect: $!\n";"#;

/// The test's LAN: `jn-TAG-h` (the host, parent `jnTAGp`), `jn-TAG-r`
/// (the router, 10.77.0.1/24). Deleted on drop.
pub(crate) struct Lan {
    pub(crate) host: String,
    pub(crate) router: String,
    pub(crate) parent: String,
}

pub(crate) fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Lan {
    pub(crate) fn new(tag: &str) -> Result<Lan, String> {
        assert!(tag.len() <= 8, "interface names are at most 15 bytes");
        let lan = Lan {
            host: format!("jn-{tag}-h"),
            router: format!("jn-{tag}-r"),
            parent: format!("jn{tag}p"),
        };
        // Leftovers of a killed run of this test go first.
        lan.delete();
        let peer = format!("jn{tag}r");
        ip(&["netns", "add", &lan.host])?;
        ip(&["netns", "add", &lan.router])?;
        ip(&[
            "-n",
            &lan.host,
            "link",
            "add",
            &lan.parent,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "netns",
            &lan.router,
        ])?;
        ip(&["-n", &lan.host, "link", "set", "lo", "up"])?;
        ip(&["-n", &lan.host, "link", "set", &lan.parent, "up"])?;
        ip(&["-n", &lan.router, "link", "set", "lo", "up"])?;
        ip(&["-n", &lan.router, "link", "set", &peer, "up"])?;
        ip(&[
            "-n",
            &lan.router,
            "addr",
            "add",
            "10.77.0.1/24",
            "dev",
            &peer,
        ])?;
        Ok(lan)
    }

    fn delete(&self) {
        // The veth pair goes with its namespaces.
        let _ = ip(&["netns", "del", &self.host]);
        let _ = ip(&["netns", "del", &self.router]);
    }

    /// `jailer --root ROOT ARGS` in the host namespace (its network only).
    pub(crate) fn jailer(&self, root: &Path, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.host))
            .arg(env!("CARGO_BIN_EXE_jailer"))
            .arg("--root")
            .arg(root)
            .args(args)
            .env_remove("JAILER_ROOT")
            .stdin(Stdio::null())
            .output()
            .expect("run nsenter jailer")
    }

    pub(crate) fn ok(&self, root: &Path, args: &[&str]) -> Result<String, String> {
        let out = self.jailer(root, args);
        if !out.status.success() {
            return Err(format!(
                "jailer {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Requires a failure with exit status `code` whose message has every
    /// one of `needles`.
    pub(crate) fn fails(
        &self,
        root: &Path,
        args: &[&str],
        code: i32,
        needles: &[&str],
    ) -> Result<(), String> {
        let out = self.jailer(root, args);
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(code) {
            return Err(format!(
                "jailer {args:?}: exit {:?}, not {code}: {err}",
                out.status.code()
            ));
        }
        for n in needles {
            if !err.contains(n) {
                return Err(format!("jailer {args:?}: error lacks {n:?}: {err}"));
            }
        }
        Ok(())
    }

    /// `create NAME --template deb --net SPEC.. -- /bin/sh -c SCRIPT`, then
    /// `start`.
    pub(crate) fn start_sh(
        &self,
        root: &Path,
        name: &str,
        nets: &[&str],
        script: &str,
    ) -> Result<(), String> {
        let mut args = vec!["create", name, "--template", "deb"];
        for n in nets {
            args.extend(["--net", n]);
        }
        args.extend(["--", "/bin/sh", "-c", script]);
        self.ok(root, &args)?;
        self.ok(root, &["start", name])?;
        Ok(())
    }

    /// The host-side view of the parent's unicast filter: a macvlan
    /// child's MAC is there for as long as the child exists, in whatever
    /// namespace.
    pub(crate) fn parent_unicast(&self) -> Result<String, String> {
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.host))
            .args(["bridge", "fdb", "show", "dev", &self.parent])
            .output()
            .map_err(|e| format!("bridge: {e}"))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        self.delete();
    }
}

fn pool() -> Result<std::path::PathBuf, String> {
    crate::debian_pool()
}

/// `perl -e PING ADDR` in the jail.
pub(crate) fn ping(root: &Path, name: &str, addr: &str) -> (i32, String, String) {
    let out = crate::cli::jailer(root, &["exec", name, "--", "perl", "-e", PING, addr]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn ping_ok(root: &Path, name: &str, addr: &str) -> Result<(), String> {
    match ping(root, name, addr) {
        (0, out, _) if out.contains("reply 0") => Ok(()),
        (code, out, err) => Err(format!("ping {addr} from {name}: exit {code}: {out} {err}")),
    }
}

pub(crate) fn tcp(root: &Path, name: &str, addr: &str) -> Result<String, String> {
    let out = crate::cli::jailer(root, &["exec", name, "--", "perl", "-e", TCP_CLIENT, addr]);
    if !out.status.success() {
        return Err(format!(
            "tcp {addr}:8080 from {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The jail's `eth0`: (MAC, `ADDR/PREFIX` lines of `ip -o -4 addr`
/// equivalents read from /proc: the address from fib_trie is enough).
pub(crate) fn eth0(root: &Path, name: &str) -> Result<(String, String), String> {
    let mac = sh_ok(root, name, "cat /sys/class/net/eth0/address")?;
    // The kernel's local routes: one `ADDR` per own address.
    let addrs = sh_ok(
        root,
        name,
        "awk '/32 host LOCAL/ {print a} {a=$2}' /proc/net/fib_trie | sort -u | grep -v '^127\\.'",
    )?;
    Ok((mac.trim().to_string(), addrs.trim().to_string()))
}

fn static_macvlan() -> Result<(), String> {
    let root = pool()?;
    let lan = Lan::new("st")?;
    let _a = jail(&root, "net-st-a");
    let _b = jail(&root, "net-st-b");
    let p = &lan.parent;
    // The host's default route leaves by the parent: the short form `ip=`
    // alone makes a macvlan there.
    ip(&["-n", &lan.host, "addr", "add", "10.77.0.254/24", "dev", p])?;
    ip(&[
        "-n",
        &lan.host,
        "route",
        "add",
        "default",
        "via",
        "10.77.0.1",
    ])?;
    lan.start_sh(
        &root,
        "net-st-a",
        &["ip=10.77.0.10/24,gateway=10.77.0.1"],
        "sleep 1000",
    )?;
    let spec = &inspect(&root, "net-st-a")?["spec"]["net"][0];
    if spec["parent"] != p.as_str() || spec["kind"] != "macvlan" {
        return Err(format!("the short form was recorded as {spec}"));
    }
    lan.start_sh(
        &root,
        "net-st-b",
        &[&format!("macvlan,parent={p},mode=bridge,ip=10.77.0.11/24")],
        &tcp_server("b"),
    )?;
    ping_ok(&root, "net-st-a", "10.77.0.1")?;
    ping_ok(&root, "net-st-a", "10.77.0.11")?;
    ping_ok(&root, "net-st-b", "10.77.0.10")?;
    let got = tcp(&root, "net-st-a", "10.77.0.11")?;
    if got != "hello from b\n" {
        return Err(format!("a TCP client in a got {got:?} from b's service"));
    }
    // The default route of a's spec, and none in b's.
    let routes_a = sh_ok(&root, "net-st-a", "cat /proc/net/route")?;
    if !routes_a
        .lines()
        .any(|l| l.starts_with("eth0\t00000000\t01004D0A"))
    {
        return Err(format!("a has no default route via 10.77.0.1: {routes_a}"));
    }
    let routes_b = sh_ok(&root, "net-st-b", "cat /proc/net/route")?;
    if routes_b
        .lines()
        .any(|l| l.split('\t').nth(1) == Some("00000000"))
    {
        return Err(format!(
            "b got a default route it did not ask for: {routes_b}"
        ));
    }
    Ok(())
}

fn ipvlan() -> Result<(), String> {
    let root = pool()?;
    let lan = Lan::new("iv")?;
    let _j = jail(&root, "net-iv");
    lan.start_sh(
        &root,
        "net-iv",
        &[&format!(
            "ipvlan,parent={},mode=l2,ip=10.77.0.20/24,gateway=10.77.0.1",
            lan.parent
        )],
        "sleep 1000",
    )?;
    ping_ok(&root, "net-iv", "10.77.0.1")?;
    // An ipvlan child has its parent's MAC.
    let (mac, addr) = eth0(&root, "net-iv")?;
    // With `ip` only: the VM guest has no `cat` beside nsenter.
    let out = Command::new("ip")
        .args(["-n", &lan.host, "-o", "link", "show", &lan.parent])
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let parent_mac = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    if !out.status.success() || parent_mac.is_empty() {
        return Err(format!("ip link show {}: {out:?}", lan.parent));
    }
    if mac != parent_mac || addr != "10.77.0.20" {
        return Err(format!(
            "ipvlan eth0: mac {mac} (parent {parent_mac}), address {addr:?}"
        ));
    }
    Ok(())
}

fn none_jail() -> Result<(), String> {
    let root = pool()?;
    let lan = Lan::new("no")?;
    let _j = jail(&root, "net-no");
    lan.start_sh(&root, "net-no", &[], "sleep 1000")?;
    let links = sh_ok(&root, "net-no", "ls /sys/class/net")?;
    if links.split_whitespace().collect::<Vec<_>>() != ["lo"] {
        return Err(format!("a none jail has links {links:?}"));
    }
    match ping(&root, "net-no", "10.77.0.1") {
        (0, out, _) => Err(format!("a none jail reached the router: {out}")),
        (_, _, err) if err.contains("Network is unreachable") => Ok(()),
        (code, out, err) => Err(format!("ping from a none jail: exit {code}: {out} {err}")),
    }?;
    ping_ok(&root, "net-no", "127.0.0.1")
}

fn restart_keeps() -> Result<(), String> {
    let root = pool()?;
    let lan = Lan::new("rs")?;
    let _a = jail(&root, "net-rs-a");
    let _b = jail(&root, "net-rs-b");
    let p = &lan.parent;
    lan.start_sh(
        &root,
        "net-rs-a",
        &[&format!("macvlan,parent={p},ip=10.77.0.30/24")],
        "sleep 1000",
    )?;
    lan.start_sh(
        &root,
        "net-rs-b",
        &[&format!(
            "macvlan,parent={p},ip=10.77.0.31/24,mac=02:42:0a:4d:00:1f"
        )],
        "sleep 1000",
    )?;
    let first = eth0(&root, "net-rs-a")?;
    let b = eth0(&root, "net-rs-b")?;
    if b.0 != "02:42:0a:4d:00:1f" {
        return Err(format!("mac= was not applied: {}", b.0));
    }
    for _ in 0..2 {
        lan.ok(&root, &["stop", "-t", "0", "net-rs-a"])?;
        lan.ok(&root, &["start", "net-rs-a"])?;
        let again = eth0(&root, "net-rs-a")?;
        if again != first {
            return Err(format!("restart changed eth0: {first:?} then {again:?}"));
        }
    }
    // Locally administered unicast.
    let o = u8::from_str_radix(&first.0[..2], 16).map_err(|e| e.to_string())?;
    if o & 3 != 2 || first.1 != "10.77.0.30" {
        return Err(format!("derived eth0 {first:?}"));
    }
    ping_ok(&root, "net-rs-a", "10.77.0.31")
}

fn stop_leaves_nothing() -> Result<(), String> {
    let root = pool()?;
    let lan = Lan::new("sp")?;
    let _j = jail(&root, "net-sp");
    lan.start_sh(
        &root,
        "net-sp",
        &[&format!("macvlan,parent={},ip=10.77.0.40/24", lan.parent)],
        "sleep 1000",
    )?;
    let (mac, _) = eth0(&root, "net-sp")?;
    if !lan.parent_unicast()?.contains(&mac) {
        return Err(format!(
            "the running jail's MAC {mac} is not on its parent: {}",
            lan.parent_unicast()?
        ));
    }
    // A network setup that fails in the kernel (a passthru child on a
    // parent that has a bridge one: EINVAL) fails the start and leaves no
    // link and no cgroup.
    let _pt = jail(&root, "net-sp-pt");
    lan.ok(
        &root,
        &[
            "create",
            "net-sp-pt",
            "--template",
            "deb",
            "--net",
            &format!(
                "macvlan,parent={},mode=passthru,ip=10.77.0.42/24",
                lan.parent
            ),
            "--",
            "/bin/sleep",
            "1000",
        ],
    )?;
    let before = lan.parent_unicast()?;
    let out = lan.jailer(&root, &["start", "net-sp-pt"]);
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || !err.contains("make a macvlan link") {
        return Err(format!("a passthru start beside a bridge child: {err}"));
    }
    if lan.parent_unicast()? != before {
        return Err(format!(
            "a failed setup changed the parent: {}",
            lan.parent_unicast()?
        ));
    }
    let cgroups = Command::new("sh")
        .args(["-c", "ls -d /sys/fs/cgroup/jailer/net-sp-pt-* /sys/fs/cgroup/*/jailer/net-sp-pt-* 2>/dev/null"])
        .output()
        .map_err(|e| e.to_string())?;
    if !cgroups.stdout.is_empty() {
        return Err(format!(
            "a failed setup left cgroups: {}",
            String::from_utf8_lossy(&cgroups.stdout)
        ));
    }
    lan.ok(&root, &["stop", "-t", "0", "net-sp"])?;
    // At once: the monitor deleted the link before it exited, which stop
    // waited for (not the namespace's asynchronous cleanup).
    let left = lan.parent_unicast()?;
    if left.contains(&mac) {
        return Err(format!("after stop the parent still has {mac}: {left}"));
    }
    // A start that fails after the link was made (the jail's command does
    // not exist) leaves nothing either.
    let _k = jail(&root, "net-sp-bad");
    lan.ok(
        &root,
        &[
            "create",
            "net-sp-bad",
            "--template",
            "deb",
            "--net",
            &format!("macvlan,parent={},ip=10.77.0.41/24", lan.parent),
            "--",
            "/no/such/command",
        ],
    )?;
    let out = lan.jailer(&root, &["start", "net-sp-bad"]);
    if out.status.success() {
        return Err("a jail without its command started".into());
    }
    let left = lan.parent_unicast()?;
    let rec = inspect(&root, "net-sp-bad")?;
    if rec["state"] != "created" && rec["state"] != "stopped" {
        return Err(format!("after a failed start the jail is {}", rec["state"]));
    }
    let macs: Vec<&str> = left
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|m| !m.starts_with("33:33") && !m.starts_with("01:00:5e"))
        .collect();
    let parent_mac = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lan.host))
        .args(["cat", &format!("/sys/class/net/{}/address", lan.parent)])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .map_err(|e| e.to_string())?;
    if macs.iter().any(|m| *m != parent_mac) {
        return Err(format!("after a failed start the parent has {macs:?}"));
    }
    Ok(())
}

fn bad_specs() -> Result<(), String> {
    let root = pool()?;
    let lan = Lan::new("bd")?;
    let p = lan.parent.clone();
    // A second link of the host, left down.
    let down = "jnbddown";
    ip(&[
        "-n",
        &lan.host,
        "link",
        "add",
        down,
        "type",
        "veth",
        "peer",
        "name",
        "jnbddownp",
    ])?;
    let _held = jail(&root, "net-bd-held");
    lan.ok(
        &root,
        &[
            "create",
            "net-bd-held",
            "--template",
            "deb",
            "--net",
            &format!("macvlan,parent={p},ip=10.77.0.50/24,mac=02:00:0a:4d:00:32"),
            "--",
            "/bin/true",
        ],
    )?;
    // (spec, exit status: 2 invalid, 9 conflict, what the message says)
    let cases: Vec<(String, i32, &str)> = vec![
        (
            "macvlan,parent=jnbdnone,ip=10.77.0.51/24".into(),
            2,
            "is not a network interface",
        ),
        (
            format!("macvlan,parent={down},ip=10.77.0.51/24"),
            2,
            "is down",
        ),
        (
            format!("macvlan,parent={p},ip=10.77.0.51"),
            2,
            "prefix length",
        ),
        (
            format!("macvlan,parent={p},ip=10.77.0.51/40"),
            2,
            "prefix length",
        ),
        (
            format!("macvlan,parent={p},ip=10.77.0.51/24,gateway=10.78.0.1"),
            2,
            "outside",
        ),
        (
            format!("macvlan,parent={p},ip=10.77.0.51/24,mac=01:00:5e:00:00:01"),
            2,
            "not unicast",
        ),
        (
            format!("macvlan,parent={p},ip=10.77.0.51/24,mac=02:00:0a:4d:00:32"),
            9,
            "net-bd-held",
        ),
        (
            format!("macvlan,parent={p},ip=10.77.0.51/24,mtu=9000"),
            2,
            "above its parent",
        ),
        (
            format!("macvlan,parent={p},ip=10.77.0.50/24"),
            9,
            "already jail net-bd-held",
        ),
        (
            format!("ipvlan,parent={p},mode=l3,dhcp"),
            2,
            "DHCP cannot work",
        ),
    ];
    for (spec, code, needle) in &cases {
        let _j = jail(&root, "net-bd-x");
        lan.fails(
            &root,
            &[
                "create",
                "net-bd-x",
                "--template",
                "deb",
                "--net",
                spec,
                "--",
                "/bin/true",
            ],
            *code,
            &[needle],
        )?;
        if root.join("jails/net-bd-x").exists() {
            return Err(format!("a refused create ({spec}) left jails/net-bd-x"));
        }
    }
    // At start, when the host changed: its parent went down.
    let _s = jail(&root, "net-bd-later");
    ip(&[
        "-n",
        &lan.host,
        "link",
        "add",
        "jnbdlater",
        "type",
        "veth",
        "peer",
        "name",
        "jnbdlaterp",
    ])?;
    ip(&["-n", &lan.host, "link", "set", "jnbdlater", "up"])?;
    lan.ok(
        &root,
        &[
            "create",
            "net-bd-later",
            "--template",
            "deb",
            "--net",
            "macvlan,parent=jnbdlater,ip=10.77.0.52/24",
            "--",
            "/bin/sleep",
            "1000",
        ],
    )?;
    ip(&["-n", &lan.host, "link", "set", "jnbdlater", "down"])?;
    lan.fails(&root, &["start", "net-bd-later"], 2, &["jnbdlater is down"])?;
    let rec = inspect(&root, "net-bd-later")?;
    if rec["state"] != "created" || !rec["runtime"].is_null() {
        return Err(format!("a refused start left {}", rec["state"]));
    }
    // A DHCP jail with no server to answer: net_dhcp::no_dhcp_server_fails_the_start_cleanly.
    Ok(())
}

fn unprivileged_ping() -> Result<(), String> {
    let root = pool()?;
    let lan = Lan::new("pg")?;
    let _j = jail(&root, "net-pg");
    lan.start_sh(
        &root,
        "net-pg",
        &[&format!("macvlan,parent={},ip=10.77.0.60/24", lan.parent)],
        "sleep 1000",
    )?;
    let caps = sh_ok(&root, "net-pg", "grep CapEff /proc/self/status")?;
    let eff = u64::from_str_radix(caps.split_whitespace().nth(1).unwrap_or(""), 16)
        .map_err(|e| format!("{caps}: {e}"))?;
    if eff & (1 << 13) != 0 {
        return Err("the jail holds CAP_NET_RAW: the test proves nothing".into());
    }
    ping_ok(&root, "net-pg", "10.77.0.1")?;
    // As a user other than root too (nobody, 65534, a jail id).
    let out = crate::cli::jailer(
        &root,
        &[
            "exec",
            "-u",
            "65534",
            "net-pg",
            "--",
            "perl",
            "-e",
            PING,
            "10.77.0.1",
        ],
    );
    if !out.status.success() {
        return Err(format!(
            "ping as nobody: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn resolv_symlink() -> Result<(), String> {
    let root = pool()?;
    let lan = Lan::new("rv")?;
    // Under the host's temp directory, which both lanes have (the VM
    // guest has /tmp but no /var/tmp).
    let canary = std::env::temp_dir()
        .join(format!("jailer-net-canary-{}", std::process::id()))
        .display()
        .to_string();
    let canary2 = format!("{canary}-hosts");
    std::fs::write(&canary, "host file\n").map_err(|e| e.to_string())?;
    std::fs::write(&canary2, "host file\n").map_err(|e| e.to_string())?;
    struct Rm(Vec<String>);
    impl Drop for Rm {
        fn drop(&mut self) {
            for p in &self.0 {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    let _rm = Rm(vec![canary.clone(), canary2.clone()]);
    let _j = jail(&root, "net-rv");
    // First run: the jail points its files at host paths and exits;
    // every later run shows what it finds.
    let script = format!(
        "if [ -e /net-rv-done ]; then sleep 1000; else touch /net-rv-done; \
         ln -sf {canary} /etc/resolv.conf; ln -sf ../../../../../../..{canary2} /etc/hosts; fi"
    );
    lan.ok(
        &root,
        &[
            "create",
            "net-rv",
            "--template",
            "deb",
            "--net",
            &format!(
                "macvlan,parent={},ip=10.77.0.70/24,dns=10.77.0.1",
                lan.parent
            ),
            "--",
            "/bin/sh",
            "-c",
            &script,
        ],
    )?;
    lan.ok(&root, &["start", "--wait", "net-rv"])?;
    let link = std::fs::read_link(root.join("jails/net-rv/rootfs/etc/resolv.conf"))
        .map_err(|e| format!("the jail did not make its symlink: {e}"))?;
    if link.to_string_lossy() != canary {
        return Err(format!("symlink is {link:?}"));
    }
    lan.ok(&root, &["start", "net-rv"])?;
    for c in [&canary, &canary2] {
        let now = std::fs::read_to_string(c).map_err(|e| e.to_string())?;
        if now != "host file\n" {
            return Err(format!(
                "the host wrote through the jail's symlink into {c}: {now:?}"
            ));
        }
    }
    let (code, out, err) = sh(
        &root,
        "net-rv",
        "test ! -L /etc/resolv.conf && test ! -L /etc/hosts && cat /etc/resolv.conf /etc/hosts",
    );
    if code != 0 || !out.contains("nameserver 10.77.0.1") || !out.contains("10.77.0.70\tnet-rv") {
        return Err(format!("the jail's files: exit {code}: {out} {err}"));
    }
    Ok(())
}

fn address_claim() -> Result<(), String> {
    let root = pool()?;
    let lan = Lan::new("ac")?;
    let _v = jail(&root, "net-ac-victim");
    let _t = jail(&root, "net-ac-thief");
    let p = &lan.parent;
    lan.start_sh(
        &root,
        "net-ac-victim",
        &[&format!("macvlan,parent={p},ip=10.77.0.80/24")],
        &tcp_server("victim"),
    )?;
    lan.fails(
        &root,
        &[
            "create",
            "net-ac-thief",
            "--template",
            "deb",
            "--net",
            &format!("macvlan,parent={p},ip=10.77.0.80/24"),
            "--",
            "/bin/true",
        ],
        9,
        &["10.77.0.80", "already jail net-ac-victim's eth0"],
    )?;
    if root.join("jails/net-ac-thief").exists() {
        return Err("the refused create left its jail".into());
    }
    ping_ok(&root, "net-ac-victim", "10.77.0.1")
}

/// An attacker in a jail on the LAN (default capabilities) tries what
/// taking a neighbour's place needs: its address, its MAC, frames of its
/// own making. Each is refused with EPERM, and the neighbour keeps its
/// address and its traffic: a third jail reaches its service, at its MAC.
fn neighbour_attack() -> Result<(), String> {
    let root = pool()?;
    let lan = Lan::new("na")?;
    let _v = jail(&root, "net-na-victim");
    let _t = jail(&root, "net-na-thief");
    let _c = jail(&root, "net-na-client");
    let p = &lan.parent;
    let victim = "10.77.0.82";
    lan.start_sh(
        &root,
        "net-na-victim",
        &[&format!("macvlan,parent={p},ip={victim}/24")],
        &tcp_server("victim"),
    )?;
    for (name, ip) in [
        ("net-na-thief", "10.77.0.83"),
        ("net-na-client", "10.77.0.84"),
    ] {
        lan.start_sh(
            &root,
            name,
            &[&format!("macvlan,parent={p},ip={ip}/24")],
            "sleep 1000",
        )?;
    }
    let (vmac, _) = eth0(&root, "net-na-victim")?;
    crate::probe::install(&root, "net-na-thief")?;
    let victim_cidr = format!("{victim}/24");
    let attempts: [(&[&str], &str); 4] = [
        (
            &["addaddr", "eth0", &victim_cidr],
            "add the victim's address",
        ),
        (&["setmac", "eth0", &vmac], "take the victim's MAC"),
        (&["socket", "packet"], "open a packet socket"),
        (&["socket", "raw"], "open a raw IP socket"),
    ];
    for (args, what) in attempts {
        let (code, answer) = crate::probe::run(&root, "net-na-thief", args);
        if (code, answer.as_str()) != (1, "EPERM") {
            return Err(format!(
                "the thief tried to {what}: exit {code}, {answer:?} (want EPERM)"
            ));
        }
    }
    let (tmac, taddrs) = eth0(&root, "net-na-thief")?;
    if tmac == vmac || taddrs != "10.77.0.83" {
        return Err(format!("the thief's eth0 is now {tmac} {taddrs:?}"));
    }
    let got = tcp(&root, "net-na-client", victim)?;
    if got != "hello from victim\n" {
        return Err(format!("the client reached {got:?} at {victim}"));
    }
    let arp = sh_ok(&root, "net-na-client", "cat /proc/net/arp")?;
    let seen = arp
        .lines()
        .find(|l| l.split_whitespace().next() == Some(victim))
        .and_then(|l| l.split_whitespace().nth(3).map(str::to_string));
    if seen.as_deref() != Some(vmac.as_str()) {
        return Err(format!(
            "the client has {victim} at {seen:?}, not {vmac}: {arp}"
        ));
    }
    ping_ok(&root, "net-na-victim", "10.77.0.1")
}

fn interfaces_table() -> Result<(), String> {
    let root = pool()?;
    let lan = Lan::new("tb")?;
    let _j = jail(&root, "net-tb");
    lan.start_sh(
        &root,
        "net-tb",
        &[&format!(
            "macvlan,parent={},ip=10.77.0.90/24,gateway=10.77.0.1,dns=10.77.0.1",
            lan.parent
        )],
        "sleep 1000",
    )?;
    ping_ok(&root, "net-tb", "10.77.0.1")?;
    let stat = |what: &str| -> Result<i64, String> {
        sh_ok(
            &root,
            "net-tb",
            &format!("cat /sys/class/net/eth0/statistics/{what}"),
        )?
        .trim()
        .parse::<i64>()
        .map_err(|e| e.to_string())
    };
    let before = stat("tx_packets")?;
    let out = crate::cli::ok(
        &root,
        &[
            "query",
            "SELECT * FROM jail_interfaces WHERE jail = 'net-tb'",
            "--json",
        ],
    )?;
    let after = stat("tx_packets")?;
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["interface"] == name)
            .cloned()
            .ok_or_else(|| format!("no {name} row: {out}"))
    };
    let lo = row("lo")?;
    let (mac, _) = eth0(&root, "net-tb")?;
    let eth0 = row("eth0")?;
    let tx = eth0["tx_packets"].as_i64().unwrap_or(-1);
    if lo["kind"] != "loopback"
        || eth0["kind"] != "macvlan"
        || eth0["address"] != "10.77.0.90"
        || eth0["prefix"] != 24
        || eth0["gateway"] != "10.77.0.1"
        || eth0["dns"] != "10.77.0.1"
        || eth0["mac"] != mac.as_str()
        || eth0["parent"] != lan.parent.as_str()
        || !(before >= 1 && before <= tx && tx <= after)
    {
        return Err(format!(
            "jail_interfaces (jail's tx_packets {before} then {after}, mac {mac}): {out}"
        ));
    }
    // inspect shows it too.
    let rec = inspect(&root, "net-tb")?;
    let i = &rec["interfaces"][0];
    if i["address"] != "10.77.0.90/24" || i["mac"] != mac.as_str() {
        return Err(format!("inspect's interfaces: {}", rec["interfaces"]));
    }
    Ok(())
}

fn two_interfaces() -> Result<(), String> {
    let root = pool()?;
    let lan = Lan::new("tw")?;
    // A second LAN on the same router: 10.78.0.0/24 on jntwp2.
    let (p2, r2) = ("jntwp2", "jntwr2");
    ip(&[
        "-n",
        &lan.host,
        "link",
        "add",
        p2,
        "type",
        "veth",
        "peer",
        "name",
        r2,
        "netns",
        &lan.router,
    ])?;
    ip(&["-n", &lan.host, "link", "set", p2, "up"])?;
    ip(&["-n", &lan.router, "link", "set", r2, "up"])?;
    ip(&["-n", &lan.router, "addr", "add", "10.78.0.1/24", "dev", r2])?;
    let _j = jail(&root, "net-tw");
    lan.start_sh(
        &root,
        "net-tw",
        &[
            &format!(
                "macvlan,parent={},ip=10.77.0.100/24,gateway=10.77.0.1",
                lan.parent
            ),
            &format!("macvlan,parent={p2},ip=10.78.0.100/24,mtu=1400"),
        ],
        "sleep 1000",
    )?;
    let links = sh_ok(
        &root,
        "net-tw",
        "ls /sys/class/net; cat /sys/class/net/eth1/mtu",
    )?;
    if links.split_whitespace().collect::<Vec<_>>() != ["eth0", "eth1", "lo", "1400"] {
        return Err(format!("links and eth1's mtu: {links:?}"));
    }
    ping_ok(&root, "net-tw", "10.77.0.1")?;
    ping_ok(&root, "net-tw", "10.78.0.1")?;
    let (mac0, _) = eth0(&root, "net-tw")?;
    let mac1 = sh_ok(&root, "net-tw", "cat /sys/class/net/eth1/address")?;
    if mac0 == mac1.trim() {
        return Err(format!("eth0 and eth1 share the MAC {mac0}"));
    }
    Ok(())
}

fn net_parent() -> Result<(), String> {
    let lan = Lan::new("dp")?;
    // A pool of its own: its pool.json is changed.
    let root = crate::cli::pool_with_template("net-dp")?;
    lan.fails(
        &root,
        &["init", "--net-parent", "jndpnone"],
        2,
        &["jndpnone", "not a network interface"],
    )?;
    // No default route in the test's host namespace: refused without one.
    lan.fails(
        &root,
        &[
            "create",
            "net-dp",
            "--template",
            "base",
            "--net",
            "ip=10.77.0.110/24",
        ],
        2,
        &["no parent="],
    )?;
    lan.ok(&root, &["init", "--net-parent", &lan.parent])?;
    let pool_json = std::fs::read_to_string(root.join("pool.json")).map_err(|e| e.to_string())?;
    if !pool_json.contains(&format!("\"net_parent\": \"{}\"", lan.parent)) {
        return Err(format!("pool.json: {pool_json}"));
    }
    lan.ok(
        &root,
        &[
            "create",
            "net-dp",
            "--template",
            "base",
            "--net",
            "ip=10.77.0.110/24",
            "--net",
            "dhcp",
        ],
    )?;
    let rec = inspect(&root, "net-dp")?;
    let nets = &rec["spec"]["net"];
    if nets[0]["parent"] != lan.parent.as_str() || nets[1]["parent"] != lan.parent.as_str() {
        return Err(format!("recorded {nets}"));
    }
    let _ = crate::cli::jailer(&root, &["rm", "net-dp"]);
    Ok(())
}
