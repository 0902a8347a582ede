//! Every table on fixture trees: column types, and the values that matter.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use jailer_tables::{generate, tables, Constraints, Row};
use std::time::Duration;

fn rows(fx: &Fx, table: &str, c: &Constraints) -> Vec<Row> {
    let rows = generate(table, &fx.src, c).unwrap();
    check_types(table, &rows);
    rows
}

fn all(fx: &Fx, table: &str) -> Vec<Row> {
    rows(fx, table, &Constraints::new())
}

fn jail(c: &str) -> Constraints {
    Constraints::new().with_eq("jail", c)
}

fn find<'a>(rows: &'a [Row], table: &str, col: &str, val: &str) -> &'a Row {
    rows.iter()
        .find(|r| txt(get(table, r, col)) == val)
        .unwrap_or_else(|| panic!("no {table} row with {col} = {val}"))
}

#[test]
fn jails_reconcile_state_and_fill_every_column() {
    let fx = scene();
    let (rows, logs) = capture_logs(|| all(&fx, "jails"));
    let names: Vec<&str> = rows.iter().map(|r| txt(get("jails", r, "name"))).collect();
    assert_eq!(names, ["a", "b", "c", "d", "e"]);
    assert!(logs.contains("broken jail") && logs.contains("e"), "{logs}");

    let g = |name: &str, col: &str| get("jails", find(&rows, "jails", "name", name), col).clone();
    // a: running, with its pids, namespaces and v1 memory cgroup.
    assert_eq!(txt(&g("a", "state")), "running");
    assert_eq!(num(&g("a", "pid")), 1000);
    assert_eq!(num(&g("a", "monitor_pid")), 999);
    assert_eq!(txt(&g("a", "pid_namespace")), "4026532000");
    assert_eq!(txt(&g("a", "cgroup_namespace")), "4026532006");
    assert_eq!(
        txt(&g("a", "cgroup_path")),
        "/sys/fs/cgroup/memory/jailer/a"
    );
    assert_eq!(txt(&g("a", "command")), "/sbin/init --quiet");
    assert_eq!(txt(&g("a", "template")), "bookworm");
    assert_eq!(txt(&g("a", "network")), "none");
    assert_eq!(txt(&g("a", "ip_address")), "");
    assert_eq!(num(&g("a", "uid_base")), i64::from(BASE_A));
    assert_eq!(num(&g("a", "id_count")), 65536);
    assert_eq!(num(&g("a", "memory_limit")), -1);
    assert_eq!(dbl(&g("a", "cpu_limit")), -1.0);
    assert_eq!(num(&g("a", "started_at")), 1_700_000_200);
    assert_eq!(num(&g("a", "finished_at")), -1);
    assert!(txt(&g("a", "root_path")).ends_with("pool/jails/a/rootfs"));
    // b: frozen, v2, DHCP address from its own network namespace.
    assert_eq!(txt(&g("b", "state")), "frozen");
    assert_eq!(txt(&g("b", "cgroup_path")), "/sys/fs/cgroup/jailer/b");
    assert_eq!(txt(&g("b", "ip_address")), "10.1.2.3");
    assert_eq!(txt(&g("b", "network")), "macvlan,parent=eth0,dhcp");
    // c: recorded running, init gone: stopped, with exit.json's outcome.
    assert_eq!(txt(&g("c", "state")), "stopped");
    assert_eq!(num(&g("c", "pid")), -1);
    assert_eq!(num(&g("c", "monitor_pid")), -1);
    assert_eq!(txt(&g("c", "pid_namespace")), "");
    assert_eq!(txt(&g("c", "cgroup_path")), "");
    assert_eq!(num(&g("c", "exit_code")), 137);
    assert_eq!(num(&g("c", "finished_at")), 1_700_000_300);
    // d: created, limits and static address from the spec.
    assert_eq!(txt(&g("d", "state")), "created");
    assert_eq!(txt(&g("d", "ip_address")), "192.0.2.10");
    assert_eq!(num(&g("d", "memory_limit")), 512 << 20);
    assert_eq!(dbl(&g("d", "cpu_limit")), 1.5);
    assert_eq!(num(&g("d", "pids_limit")), 64);
    assert_eq!(num(&g("d", "started_at")), -1);
    assert_eq!(num(&g("d", "exit_code")), -1);
    // e: corrupt, listed as broken, never an error.
    assert_eq!(txt(&g("e", "state")), "broken");
    assert_eq!(num(&g("e", "pid")), -1);
}

#[test]
fn processes_map_ids_and_times() {
    let fx = scene();
    let rows = all(&fx, "jail_processes");
    let pids: Vec<i64> = rows
        .iter()
        .map(|r| num(get("jail_processes", r, "pid")))
        .collect();
    // Descendant cgroups included; stopped jail c contributes nothing.
    assert_eq!(pids, [1000, 1001, 2000, 2001]);
    let p = |pid: i64| {
        rows.iter()
            .find(|r| num(get("jail_processes", r, "pid")) == pid)
            .unwrap()
    };
    let g = |pid: i64, col: &str| get("jail_processes", p(pid), col).clone();
    let tck = jailer::procinfo::clk_tck() as i64;
    assert_eq!(txt(&g(1000, "jail")), "a");
    assert_eq!(num(&g(1000, "jail_pid")), 1);
    assert_eq!(num(&g(1001, "jail_pid")), 7);
    assert_eq!(num(&g(1001, "parent")), 1000);
    assert_eq!(txt(&g(1001, "name")), "worker");
    assert_eq!(txt(&g(1001, "path")), "/usr/bin/worker");
    assert_eq!(txt(&g(1001, "cmdline")), "/usr/bin/worker --flag");
    assert_eq!(txt(&g(1001, "state")), "S");
    assert_eq!(num(&g(1000, "uid")), i64::from(BASE_A));
    assert_eq!(num(&g(1000, "jail_uid")), 0);
    assert_eq!(num(&g(1001, "euid")), i64::from(BASE_A) + 33);
    assert_eq!(num(&g(1001, "jail_uid")), 33);
    assert_eq!(num(&g(1001, "jail_gid")), 33);
    assert_eq!(
        num(&g(1001, "start_time")),
        common::BTIME as i64 + 45_600 / tck
    );
    assert_eq!(num(&g(1000, "user_time")), 250 * 1000 / tck);
    assert_eq!(num(&g(1000, "system_time")), 50 * 1000 / tck);
    assert_eq!(num(&g(1000, "resident_size")), 2048 * 1024);
    assert_eq!(num(&g(1000, "total_size")), 10240 * 1024);
    assert_eq!(num(&g(1000, "threads")), 3);
    assert_eq!(num(&g(1000, "no_new_privs")), 1);
    assert_eq!(num(&g(1000, "seccomp_mode")), 2);
    assert_eq!(num(&g(1001, "seccomp_mode")), 0);
    // b's processes run inside b's range.
    assert_eq!(txt(&g(2001, "jail")), "b");
    assert_eq!(num(&g(2001, "jail_uid")), 0);
}

#[test]
fn ids_outside_the_range_are_minus_one() {
    let fx = scene();
    // A process in a's cgroup running as host root.
    let mut intruder = FakeProc::new(1002, 1, "intruder");
    intruder.uid = 0;
    fx.add_proc(&intruder);
    std::fs::write(
        fx.src.cgroup_root.join("pids/jailer/a/cgroup.procs"),
        "1000\n1002\n",
    )
    .unwrap();
    let rows = rows(&fx, "jail_processes", &jail("a"));
    let r = rows
        .iter()
        .find(|r| num(get("jail_processes", r, "pid")) == 1002)
        .unwrap();
    assert_eq!(num(get("jail_processes", r, "uid")), 0);
    assert_eq!(num(get("jail_processes", r, "jail_uid")), -1);
}

#[test]
fn jail_pid_is_the_pid_in_the_jails_own_namespace() {
    let fx = scene();
    // In a's cgroup but still in the host's pid namespace (as the helper
    // of `jailer exec` is, between joining the cgroup and forking into the
    // jail): its innermost pid is a host pid, not a jail pid.
    fx.add_proc(&FakeProc::new(1002, 1, "jailer"));
    // In a pid namespace nested below the jail's: its pid in the jail's.
    let mut nested = FakeProc::new(1003, 1001, "nested");
    nested.nspid = vec![1003, 8, 1];
    fx.add_proc(&nested);
    std::fs::write(
        fx.src.cgroup_root.join("pids/jailer/a/cgroup.procs"),
        "1000\n1002\n1003\n",
    )
    .unwrap();
    let rows = rows(&fx, "jail_processes", &jail("a"));
    let jail_pid = |pid: i64| {
        let r = rows
            .iter()
            .find(|r| num(get("jail_processes", r, "pid")) == pid)
            .unwrap();
        num(get("jail_processes", r, "jail_pid"))
    };
    assert_eq!(jail_pid(1000), 1);
    assert_eq!(jail_pid(1001), 7);
    assert_eq!(jail_pid(1002), -1);
    assert_eq!(jail_pid(1003), 8);
}

#[test]
fn mappings_compare_spec_and_kernel() {
    let fx = scene();
    let rows = all(&fx, "jail_mappings");
    let view: Vec<(String, String, i64, i64, i64, String)> = rows
        .iter()
        .map(|r| {
            let g = |c| get("jail_mappings", r, c);
            (
                txt(g("jail")).to_string(),
                txt(g("type")).to_string(),
                num(g("jail_id")),
                num(g("host_id")),
                num(g("count")),
                txt(g("status")).to_string(),
            )
        })
        .collect();
    let a = i64::from(BASE_A);
    let b = i64::from(BASE_B);
    let s = |x: &str| x.to_string();
    assert_eq!(
        view,
        vec![
            (s("a"), s("uid"), 0, a, 65536, s("ok")),
            (s("a"), s("gid"), 0, a, 65536, s("missing")),
            (s("a"), s("gid"), 0, a, 1000, s("unexpected")),
            (s("b"), s("uid"), 0, b, 65536, s("ok")),
            (s("b"), s("gid"), 0, b, 65536, s("ok")),
        ]
    );
}

#[test]
fn capabilities_show_unexpected_and_missing() {
    let fx = scene();
    let rows = rows(&fx, "jail_capabilities", &jail("a"));
    let get_row = |pid: i64, set: &str, cap: &str| {
        rows.iter().find(|r| {
            let g = |c| get("jail_capabilities", r, c);
            num(g("pid")) == pid && txt(g("cap_set")) == set && txt(g("capability")) == cap
        })
    };
    let status = |pid, set, cap| {
        let r = get_row(pid, set, cap).unwrap_or_else(|| panic!("{pid} {set} {cap}"));
        let g = |c| get("jail_capabilities", r, c);
        (
            num(g("expected")),
            num(g("actual")),
            txt(g("status")).to_string(),
        )
    };
    assert_eq!(
        status(1000, "effective", "cap_sys_admin"),
        (0, 1, "unexpected".into())
    );
    assert_eq!(
        status(1000, "effective", "cap_kill"),
        (1, 0, "missing".into())
    );
    assert_eq!(
        status(1000, "effective", "cap_net_raw"),
        (1, 1, "ok".into())
    );
    assert_eq!(status(1000, "permitted", "cap_kill"), (1, 1, "ok".into()));
    assert_eq!(status(1000, "bounding", "cap_chown"), (1, 1, "ok".into()));
    // Nothing expected or held in inheritable and ambient: no rows.
    assert!(get_row(1000, "inheritable", "cap_chown").is_none());
    assert!(get_row(1000, "ambient", "cap_net_raw").is_none());
    // Capabilities neither expected nor held have no rows.
    assert!(get_row(1000, "bounding", "cap_sys_module").is_none());
    // The non-root child holds nothing: every expected one is missing.
    assert_eq!(
        status(1001, "effective", "cap_chown"),
        (1, 0, "missing".into())
    );
    let unexpected: Vec<_> = rows
        .iter()
        .filter(|r| txt(get("jail_capabilities", r, "status")) == "unexpected")
        .collect();
    assert_eq!(unexpected.len(), 1);
    // One row per (pid, set, capability).
    let mut keys: Vec<_> = rows
        .iter()
        .map(|r| {
            let g = |c| get("jail_capabilities", r, c);
            (num(g("pid")), txt(g("cap_set")), txt(g("capability")))
        })
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n);
}

#[test]
fn capabilities_held_in_inheritable_or_ambient_are_unexpected() {
    let fx = scene();
    let mut p = FakeProc::new(1000, 999, "init-a");
    p.cap_amb = mask(&["cap_net_admin"]);
    p.cap_inh = mask(&["cap_net_admin"]);
    p.start_ticks = 12_300;
    std::fs::remove_dir_all(fx.src.proc_root.join("1000")).unwrap();
    fx.add_proc(&p);
    let rows = rows(&fx, "jail_capabilities", &jail("a"));
    for set in ["inheritable", "ambient"] {
        let r = rows
            .iter()
            .find(|r| {
                num(get("jail_capabilities", r, "pid")) == 1000
                    && txt(get("jail_capabilities", r, "cap_set")) == set
            })
            .unwrap();
        assert_eq!(
            txt(get("jail_capabilities", r, "capability")),
            "cap_net_admin"
        );
        assert_eq!(txt(get("jail_capabilities", r, "status")), "unexpected");
    }
}

#[test]
fn mounts_come_from_the_jails_mountinfo() {
    let fx = scene();
    let rows = all(&fx, "jail_mounts");
    assert_eq!(rows.len(), 4, "only a has mounts in its fixture");
    let root = find(&rows, "jail_mounts", "mount_point", "/");
    assert_eq!(txt(get("jail_mounts", root, "fstype")), "btrfs");
    assert_eq!(txt(get("jail_mounts", root, "source")), "/dev/loop0");
    assert_eq!(txt(get("jail_mounts", root, "options")), "rw,relatime");
    assert_eq!(num(get("jail_mounts", root, "read_only")), 0);
    let sys = find(&rows, "jail_mounts", "mount_point", "/sys");
    assert_eq!(num(get("jail_mounts", sys, "read_only")), 1);
    find(&rows, "jail_mounts", "mount_point", "/my data");
}

#[test]
fn interfaces_of_a_stopped_jail_come_from_its_spec() {
    let fx = scene();
    let d = rows(&fx, "jail_interfaces", &jail("d"));
    assert_eq!(d.len(), 1, "a stopped jail has no lo row: {d:?}");
    let r = &d[0];
    let t = "jail_interfaces";
    assert_eq!(txt(get(t, r, "interface")), "eth0");
    assert_eq!(txt(get(t, r, "kind")), "macvlan");
    assert_eq!(txt(get(t, r, "parent")), "eth0");
    assert_eq!(txt(get(t, r, "mode")), "bridge");
    assert_eq!(txt(get(t, r, "address")), "192.0.2.10");
    assert_eq!(num(get(t, r, "prefix")), 24);
    assert_eq!(txt(get(t, r, "gateway")), "192.0.2.1");
    assert_eq!(num(get(t, r, "dhcp")), 0);
    assert_eq!(num(get(t, r, "rx_bytes")), -1, "no counters while stopped");
    // The MAC it gets at start: locally administered unicast, and the
    // jails row shows the same.
    let mac = txt(get(t, r, "mac")).to_string();
    let first = u8::from_str_radix(&mac[..2], 16).unwrap();
    assert_eq!(first & 3, 2, "{mac}");
    let jails = rows(&fx, "jails", &Constraints::new().with_eq("name", "d"));
    assert_eq!(txt(get("jails", &jails[0], "mac_address")), mac);
    let b = rows(&fx, "jail_interfaces", &jail("b"));
    assert!(b.iter().any(|r| num(get(t, r, "dhcp")) == 1));
    assert!(
        rows(&fx, "jail_interfaces", &jail("c")).is_empty(),
        "none: no rows"
    );
}

#[test]
fn hostile_names_and_mounts_are_shown_exactly_and_never_fail_a_query() {
    let fx = scene();
    let proc = &fx.src.proc_root;
    let edit = |path: std::path::PathBuf, from: &str, to: &str| {
        let s = std::fs::read_to_string(&path).unwrap();
        assert!(s.contains(from), "{s}");
        std::fs::write(&path, s.replace(from, to)).unwrap();
    };
    // A jail sets its command name and arguments and names its mounts.
    edit(proc.join("1001/stat"), "(worker)", "() S 1 (\n)");
    edit(proc.join("1001/status"), "Name:\tworker", "Name:\tx: y\\n");
    std::fs::write(proc.join("1001/cmdline"), b"a\nb\0\0--c\0").unwrap();
    let mut mi = std::fs::read_to_string(proc.join("1000/mountinfo")).unwrap();
    mi.push_str(
        "604 600 0:44 / /evil\\012line\\040-\\040x rw - tmpfs a\\040b ro\n\
         garbage\n\
         605 600 0:45 / /cut rw - tmpfs",
    );
    std::fs::write(proc.join("1000/mountinfo"), mi).unwrap();

    let rows = all(&fx, "jail_processes");
    let p = rows
        .iter()
        .find(|r| num(get("jail_processes", r, "pid")) == 1001)
        .unwrap();
    let g = |col| get("jail_processes", p, col);
    assert_eq!(txt(g("name")), "x: y\\n");
    assert_eq!(txt(g("state")), "S");
    assert_eq!(num(g("parent")), 1000);
    assert_eq!(txt(g("cmdline")), "a\nb  --c");

    let rows = all(&fx, "jail_mounts");
    assert_eq!(rows.len(), 5, "the garbage and the cut line are skipped");
    let evil = find(&rows, "jail_mounts", "mount_point", "/evil\nline - x");
    assert_eq!(txt(get("jail_mounts", evil, "source")), "a b");
    assert_eq!(num(get("jail_mounts", evil, "read_only")), 1);

    // A stat that is not the kernel's leaves the process out, nothing else.
    std::fs::write(proc.join("1001/stat"), "(x) R 1 2 3").unwrap();
    let rows = all(&fx, "jail_processes");
    let pids: Vec<i64> = rows
        .iter()
        .map(|r| num(get("jail_processes", r, "pid")))
        .collect();
    assert_eq!(pids, [1000, 2000, 2001]);
}

#[test]
fn resources_from_v1_and_v2() {
    let fx = scene();
    let rows = all(&fx, "jail_resources");
    assert_eq!(rows.len(), 2);
    let tck = jailer::procinfo::clk_tck() as i64;
    let a = find(&rows, "jail_resources", "jail", "a");
    let g = |c| get("jail_resources", a, c);
    assert_eq!(num(g("cgroup_version")), 1);
    assert_eq!(num(g("cpu_usage_usec")), 5000);
    assert_eq!(num(g("cpu_user_usec")), 300 * 1_000_000 / tck);
    assert_eq!(num(g("cpu_system_usec")), 200 * 1_000_000 / tck);
    assert_eq!(num(g("cpu_throttled_usec")), 2000);
    assert_eq!(dbl(g("cpu_limit")), 0.5);
    assert_eq!(num(g("memory_current")), 1 << 20);
    assert_eq!(num(g("memory_peak")), 2 << 20);
    assert_eq!(num(g("memory_limit")), 256 << 20);
    assert_eq!(num(g("memory_oom_kills")), 3);
    assert_eq!(num(g("pids_current")), 2);
    assert_eq!(num(g("pids_limit")), -1);
    assert_eq!(num(g("io_read_bytes")), 100);
    assert_eq!(num(g("io_write_bytes")), 50);
    assert_eq!(num(g("frozen")), 0);

    let b = find(&rows, "jail_resources", "jail", "b");
    let g = |c| get("jail_resources", b, c);
    assert_eq!(num(g("cgroup_version")), 2);
    assert_eq!(num(g("cpu_usage_usec")), 9000);
    assert_eq!(num(g("cpu_user_usec")), 6000);
    assert_eq!(num(g("cpu_system_usec")), 3000);
    assert_eq!(num(g("cpu_throttled_usec")), 40);
    assert_eq!(dbl(g("cpu_limit")), -1.0);
    assert_eq!(num(g("memory_current")), 4096);
    assert_eq!(num(g("memory_peak")), 8192);
    assert_eq!(num(g("memory_limit")), 512 << 20);
    assert_eq!(num(g("memory_oom_kills")), 1);
    assert_eq!(num(g("pids_limit")), 100);
    assert_eq!(num(g("io_read_bytes")), 11);
    assert_eq!(num(g("io_write_bytes")), 22);
    assert_eq!(num(g("frozen")), 1);
}

#[test]
fn unlimited_v1_memory_and_missing_files_are_minus_one() {
    let fx = scene();
    let mem = fx.src.cgroup_root.join("memory/jailer/a");
    std::fs::write(mem.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
    std::fs::remove_file(mem.join("memory.max_usage_in_bytes")).unwrap();
    let rows = rows(&fx, "jail_resources", &jail("a"));
    assert_eq!(num(get("jail_resources", &rows[0], "memory_limit")), -1);
    assert_eq!(num(get("jail_resources", &rows[0], "memory_peak")), -1);
}

#[test]
fn a_broken_jail_never_fails_a_query() {
    let fx = scene();
    // A jail directory without jail.json, and one whose record is a directory.
    std::fs::create_dir_all(fx.src.pool_root.join("jails/f")).unwrap();
    std::fs::create_dir_all(fx.src.pool_root.join("jails/g/jail.json")).unwrap();
    // A running jail whose cgroup vanished.
    std::fs::remove_dir_all(fx.src.cgroup_root.join("jailer/b")).unwrap();
    for t in tables() {
        let rows = all(&fx, t.name);
        if t.name == "jails" {
            let broken: Vec<&str> = rows
                .iter()
                .filter(|r| txt(get("jails", r, "state")) == "broken")
                .map(|r| txt(get("jails", r, "name")))
                .collect();
            assert_eq!(broken, ["e", "f", "g"]);
        }
    }
    // Processes of a are still listed.
    assert_eq!(all(&fx, "jail_processes").len(), 2);
    // No pool at all: no rows, no error.
    let mut src = fx.src.clone();
    src.pool_root = fx.path().join("nowhere");
    assert!(generate("jails", &src, &Constraints::new())
        .unwrap()
        .is_empty());
}

/// Runs `f` on another thread, failing if it does not finish in time (a
/// FIFO opened for reading blocks until a writer comes).
fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the query read a file its constraints exclude")
}

#[test]
fn constraints_read_only_what_they_name() {
    let fx = scene();
    // Jail z's jail.json is a FIFO: opening it would block.
    let z = fx.src.pool_root.join("jails/z");
    std::fs::create_dir_all(&z).unwrap();
    nix::unistd::mkfifo(&z.join("jail.json"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    // So is the status of a's child 1001.
    std::fs::remove_file(fx.src.proc_root.join("1001/status")).unwrap();
    nix::unistd::mkfifo(
        &fx.src.proc_root.join("1001/status"),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .unwrap();
    let src = fx.src.clone();
    let (n_jails, n_procs, others) = within(move || {
        let jails = generate("jails", &src, &Constraints::new().with_eq("name", "a")).unwrap();
        let procs = generate(
            "jail_processes",
            &src,
            &Constraints::new()
                .with_eq("jail", "a")
                .with_eq("pid", "1000"),
        )
        .unwrap();
        let mut others = 0;
        for t in ["jail_mappings", "jail_mounts", "jail_resources"] {
            others += generate(t, &src, &Constraints::new().with_eq("jail", "a"))
                .unwrap()
                .len();
        }
        (jails.len(), procs.len(), others)
    });
    assert_eq!((n_jails, n_procs), (1, 1));
    assert_eq!(others, 3 + 4 + 1);
    // A name that is no valid jail name, or no jail, matches nothing.
    for bad in ["../a", "nope", ""] {
        let c = Constraints::new().with_eq("name", bad);
        assert!(generate("jails", &fx.src, &c).unwrap().is_empty(), "{bad}");
    }
}

#[test]
fn constraints_skip_broken_jails_they_do_not_name() {
    let fx = scene();
    let ((), logs) = capture_logs(|| {
        for t in tables() {
            let key = if t.name == "jails" { "name" } else { "jail" };
            generate(t.name, &fx.src, &Constraints::new().with_eq(key, "a")).unwrap();
        }
    });
    assert!(logs.is_empty(), "{logs}");
    let ((), logs) = capture_logs(|| {
        generate("jail_processes", &fx.src, &Constraints::new()).unwrap();
    });
    assert!(
        logs.contains("broken jail") && logs.contains("jail=e"),
        "{logs}"
    );
}

#[test]
fn pid_constraint_narrows_processes() {
    let fx = scene();
    let rows = rows(
        &fx,
        "jail_processes",
        &Constraints::new().with_eq("pid", "2001"),
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(txt(get("jail_processes", &rows[0], "jail")), "b");
    let rows = rows_of(&fx, Constraints::new().with_eq("pid", "x"));
    assert!(rows.is_empty());
    // IN lists: several values for one column.
    let c = Constraints::new()
        .with_eq("pid", "1000")
        .with_eq("pid", "2000");
    assert_eq!(rows_of(&fx, c).len(), 2);
}

fn rows_of(fx: &Fx, c: Constraints) -> Vec<Row> {
    rows(fx, "jail_processes", &c)
}
