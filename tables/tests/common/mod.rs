//! Fixture trees for the table tests: a pool with real `JailRecord`s, a fake
//! `/proc` and fake cgroup v1 and v2 hierarchies, all in one tempdir.

#![allow(dead_code, clippy::unwrap_used)]

use jailer::record::{
    CgroupRef, ExitRecord, IdRange, JailRecord, ProcRef, Runtime, State, JAIL_RECORD_VERSION,
};
use jailer::spec::RawSpec;
use jailer_tables::{table, ColumnType, Row, Sources, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const BOOT_ID: &str = "6b1c4c1e-0000-4000-8000-000000000001";
pub const BTIME: u64 = 1_700_000_000;
pub const BASE_A: u32 = 1 << 28;
pub const BASE_B: u32 = (1 << 28) + 65536;

pub struct Fx {
    pub dir: tempfile::TempDir,
    pub src: Sources,
}

/// One fake process.
#[derive(Clone)]
pub struct FakeProc {
    pub pid: i64,
    pub ppid: i64,
    pub comm: String,
    pub cmdline: Vec<String>,
    /// Clock ticks since boot.
    pub start_ticks: u64,
    pub uid: i64,
    pub gid: i64,
    pub nspid: Vec<i64>,
    pub cap_eff: u64,
    pub cap_prm: u64,
    pub cap_inh: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
    pub no_new_privs: i64,
    pub seccomp: i64,
    pub uid_map: String,
    pub gid_map: String,
    pub mountinfo: String,
    pub ns_base: u64,
    pub fib_trie: Option<String>,
}

impl FakeProc {
    pub fn new(pid: i64, ppid: i64, comm: &str) -> FakeProc {
        FakeProc {
            pid,
            ppid,
            comm: comm.into(),
            cmdline: vec![format!("/usr/bin/{comm}"), "--flag".into()],
            start_ticks: 12_300,
            uid: 0,
            gid: 0,
            nspid: vec![pid],
            cap_eff: 0,
            cap_prm: 0,
            cap_inh: 0,
            cap_bnd: 0,
            cap_amb: 0,
            no_new_privs: 0,
            seccomp: 0,
            uid_map: "         0          0 4294967295\n".into(),
            gid_map: "         0          0 4294967295\n".into(),
            mountinfo: String::new(),
            ns_base: 4026531830,
            fib_trie: None,
        }
    }
}

/// A capability mask from names.
pub fn mask(names: &[&str]) -> u64 {
    names.iter().fold(0, |m, n| {
        let c: caps::Capability = n.to_ascii_uppercase().parse().unwrap();
        m | (1u64 << c.index())
    })
}

impl Fx {
    pub fn new() -> Fx {
        let dir = tempfile::tempdir().unwrap();
        let src = Sources {
            pool_root: dir.path().join("pool"),
            proc_root: dir.path().join("proc"),
            cgroup_root: dir.path().join("cgroup"),
            btrfs_sysfs: dir.path().join("btrfs"),
            run_root: dir.path().join("run"),
        };
        std::fs::create_dir_all(src.pool_root.join("jails")).unwrap();
        std::fs::create_dir_all(src.proc_root.join("sys/kernel/random")).unwrap();
        std::fs::write(
            src.proc_root.join("sys/kernel/random/boot_id"),
            format!("{BOOT_ID}\n"),
        )
        .unwrap();
        std::fs::write(
            src.proc_root.join("stat"),
            format!("cpu  1 2 3 4\ncpu0 1 2 3 4\nintr 0\nbtime {BTIME}\nprocesses 9\n"),
        )
        .unwrap();
        Fx { dir, src }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A record as `jailer create` makes it.
    pub fn record(&self, raw: RawSpec, base: u32) -> JailRecord {
        JailRecord {
            version: JAIL_RECORD_VERSION,
            id: format!("{:032x}", base),
            spec: raw.validate().unwrap(),
            state: State::Created,
            ids: IdRange {
                uid_base: base,
                gid_base: base,
                count: 65536,
            },
            created_at: 1_700_000_100,
            started_at: None,
            finished_at: None,
            exit_code: None,
            oom_killed: false,
            runtime: None,
            restarts: 0,
        }
    }

    /// Marks a record running with this init, monitor and cgroup.
    pub fn run(rec: &mut JailRecord, monitor: &FakeProc, init: &FakeProc, cgroup: CgroupRef) {
        rec.state = State::Running;
        rec.started_at = Some(1_700_000_200);
        rec.runtime = Some(Runtime {
            boot_id: BOOT_ID.into(),
            monitor: ProcRef {
                pid: monitor.pid as i32,
                start_time: monitor.start_ticks,
            },
            init: ProcRef {
                pid: init.pid as i32,
                start_time: init.start_ticks,
            },
            cgroup,
            instance: String::new(),
        });
    }

    /// Every jail's dpkg status file: two packages, a paragraph without a
    /// Package field (skipped) and a continuation line.
    pub fn write_record(&self, rec: &JailRecord) {
        let dir = self
            .src
            .pool_root
            .join("jails")
            .join(rec.spec.name.as_str());
        std::fs::create_dir_all(dir.join("rootfs/var/lib/dpkg")).unwrap();
        std::fs::write(dir.join("rootfs/var/lib/dpkg/status"), DPKG_STATUS).unwrap();
        std::fs::write(
            dir.join("jail.json"),
            serde_json::to_vec_pretty(rec).unwrap(),
        )
        .unwrap();
    }

    pub fn write_exit(&self, name: &str, exit: &ExitRecord) {
        let dir = self.src.pool_root.join("jails").join(name);
        std::fs::write(dir.join("exit.json"), serde_json::to_vec(exit).unwrap()).unwrap();
    }

    /// A jail directory whose `jail.json` holds `content`.
    pub fn write_raw_record(&self, name: &str, content: &[u8]) -> PathBuf {
        let dir = self.src.pool_root.join("jails").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("jail.json"), content).unwrap();
        dir.join("jail.json")
    }

    pub fn add_proc(&self, p: &FakeProc) {
        let d = self.src.proc_root.join(p.pid.to_string());
        std::fs::create_dir_all(d.join("ns")).unwrap();
        std::fs::create_dir_all(d.join("net")).unwrap();
        // 52 fields like the kernel's.
        let mut f: Vec<String> = (3..=52).map(|_| "0".to_string()).collect();
        let mut set = |n: usize, v: String| f[n - 3] = v;
        set(3, "S".into());
        set(4, p.ppid.to_string());
        set(14, "250".into()); // utime ticks
        set(15, "50".into()); // stime ticks
        set(20, "3".into()); // threads
        set(22, p.start_ticks.to_string());
        set(23, "10485760".into()); // vsize
        std::fs::write(
            d.join("stat"),
            format!("{} ({}) {}\n", p.pid, p.comm, f.join(" ")),
        )
        .unwrap();
        let nspid: Vec<String> = p.nspid.iter().map(i64::to_string).collect();
        let status = format!(
            "Name:\t{comm}\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t{pid}\nPid:\t{pid}\nPPid:\t{ppid}\n\
             Uid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{gid}\t{gid}\t{gid}\t{gid}\nNSpid:\t{nspid}\n\
             VmSize:\t   10240 kB\nVmRSS:\t    2048 kB\nThreads:\t3\n\
             CapInh:\t{inh:016x}\nCapPrm:\t{prm:016x}\nCapEff:\t{eff:016x}\nCapBnd:\t{bnd:016x}\nCapAmb:\t{amb:016x}\n\
             NoNewPrivs:\t{nnp}\nSeccomp:\t{sc}\nSeccomp_filters:\t0\n",
            comm = p.comm,
            pid = p.pid,
            ppid = p.ppid,
            uid = p.uid,
            gid = p.gid,
            nspid = nspid.join("\t"),
            inh = p.cap_inh,
            prm = p.cap_prm,
            eff = p.cap_eff,
            bnd = p.cap_bnd,
            amb = p.cap_amb,
            nnp = p.no_new_privs,
            sc = p.seccomp,
        );
        std::fs::write(d.join("status"), status).unwrap();
        let mut cmdline = p.cmdline.join("\0");
        cmdline.push('\0');
        std::fs::write(d.join("cmdline"), cmdline).unwrap();
        std::os::unix::fs::symlink(&p.cmdline[0], d.join("exe")).unwrap();
        std::fs::write(d.join("uid_map"), &p.uid_map).unwrap();
        std::fs::write(d.join("gid_map"), &p.gid_map).unwrap();
        std::fs::write(d.join("mountinfo"), &p.mountinfo).unwrap();
        for (i, kind) in ["pid", "mnt", "net", "user", "uts", "ipc", "cgroup"]
            .iter()
            .enumerate()
        {
            std::os::unix::fs::symlink(
                format!("{kind}:[{}]", p.ns_base + i as u64),
                d.join("ns").join(kind),
            )
            .unwrap();
        }
        if let Some(t) = &p.fib_trie {
            std::fs::write(d.join("net/fib_trie"), t).unwrap();
        }
    }

    fn write_files(dir: &Path, files: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).unwrap();
        for (f, v) in files {
            std::fs::write(dir.join(f), v).unwrap();
        }
    }

    fn procs(pids: &[i64]) -> String {
        pids.iter().map(|p| format!("{p}\n")).collect()
    }

    /// A v1 cgroup for jail `name` (controllers `pids`, `memory`, a joint
    /// `cpu,cpuacct`, `blkio`, `freezer`) holding `top` and, in a child
    /// cgroup, `child`. Paths are recorded as on a real host.
    pub fn cgroup_v1(&self, name: &str, top: &[i64], child: &[i64]) -> CgroupRef {
        let mut paths = BTreeMap::new();
        for ctrl in ["pids", "memory", "cpu,cpuacct", "blkio", "freezer"] {
            let rel = format!("{ctrl}/jailer/{name}");
            let dir = self.src.cgroup_root.join(&rel);
            Self::write_files(&dir, &[("cgroup.procs", &Self::procs(top))]);
            Self::write_files(&dir.join("sub"), &[("cgroup.procs", &Self::procs(child))]);
            paths.insert(ctrl.to_string(), PathBuf::from("/sys/fs/cgroup").join(rel));
        }
        let d = |c: &str| self.src.cgroup_root.join(c).join("jailer").join(name);
        Self::write_files(
            &d("cpu,cpuacct"),
            &[
                ("cpuacct.usage", "5000000\n"),
                ("cpuacct.stat", "user 300\nsystem 200\n"),
                (
                    "cpu.stat",
                    "nr_periods 10\nnr_throttled 2\nthrottled_time 2000000\n",
                ),
                ("cpu.cfs_quota_us", "50000\n"),
                ("cpu.cfs_period_us", "100000\n"),
            ],
        );
        Self::write_files(
            &d("memory"),
            &[
                ("memory.usage_in_bytes", "1048576\n"),
                ("memory.max_usage_in_bytes", "2097152\n"),
                ("memory.limit_in_bytes", "268435456\n"),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
                ),
            ],
        );
        Self::write_files(
            &d("pids"),
            &[("pids.current", "2\n"), ("pids.max", "max\n")],
        );
        Self::write_files(
            &d("blkio"),
            &[(
                "blkio.throttle.io_service_bytes",
                "8:0 Read 100\n8:0 Write 50\n8:0 Sync 150\n8:0 Total 150\nTotal 150\n",
            )],
        );
        Self::write_files(&d("freezer"), &[("freezer.state", "THAWED\n")]);
        CgroupRef { version: 1, paths }
    }

    /// A v2 cgroup for jail `name` holding `top` and, in a child, `child`.
    pub fn cgroup_v2(&self, name: &str, top: &[i64], child: &[i64]) -> CgroupRef {
        let rel = format!("jailer/{name}");
        let dir = self.src.cgroup_root.join(&rel);
        Self::write_files(
            &dir,
            &[
                ("cgroup.procs", &Self::procs(top)),
                (
                    "cpu.stat",
                    "usage_usec 9000\nuser_usec 6000\nsystem_usec 3000\nnr_periods 0\nnr_throttled 0\nthrottled_usec 40\n",
                ),
                ("cpu.max", "max 100000\n"),
                ("memory.current", "4096\n"),
                ("memory.peak", "8192\n"),
                ("memory.max", "536870912\n"),
                ("memory.events", "low 0\nhigh 0\nmax 0\noom 1\noom_kill 1\n"),
                ("pids.current", "2\n"),
                ("pids.max", "100\n"),
                ("io.stat", "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=2\n"),
                ("cgroup.freeze", "1\n"),
                ("cgroup.events", "populated 1\nfrozen 1\n"),
            ],
        );
        Self::write_files(&dir.join("inner"), &[("cgroup.procs", &Self::procs(child))]);
        let mut paths = BTreeMap::new();
        paths.insert(
            "unified".to_string(),
            PathBuf::from("/sys/fs/cgroup").join(rel),
        );
        CgroupRef { version: 2, paths }
    }
}

/// Asserts every row has one value per column, of the column's type, and
/// never NULL.
pub fn check_types(name: &str, rows: &[Row]) {
    let spec = table(name).unwrap();
    for row in rows {
        assert_eq!(row.len(), spec.columns.len(), "{name}: {row:?}");
        for (v, c) in row.iter().zip(spec.columns) {
            assert!(
                v.fits(c.ty) && *v != Value::Null,
                "{name}.{} is {:?}, value {v:?}",
                c.name,
                c.ty
            );
            if c.ty == ColumnType::Double {
                assert!(matches!(v, Value::Double(_)));
            }
        }
    }
}

/// The value of column `col` in `row` of table `name`.
pub fn get<'a>(name: &str, row: &'a Row, col: &str) -> &'a Value {
    let i = table(name)
        .unwrap()
        .column_index(col)
        .unwrap_or_else(|| panic!("{name} has no column {col}"));
    &row[i]
}

pub fn txt(v: &Value) -> &str {
    match v {
        Value::Text(s) => s,
        other => panic!("not text: {other:?}"),
    }
}

pub fn num(v: &Value) -> i64 {
    match v {
        Value::Integer(i) => *i,
        other => panic!("not an integer: {other:?}"),
    }
}

pub fn dbl(v: &Value) -> f64 {
    match v {
        Value::Double(d) => *d,
        other => panic!("not a double: {other:?}"),
    }
}

/// Captures `tracing` output while `f` runs on this thread.
pub fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let w = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let out = tracing::subscriber::with_default(sub, f);
    let logs = String::from_utf8_lossy(&buf.0.lock().unwrap()).into_owned();
    (out, logs)
}

/// The standard scene:
/// - `a`: running, cgroup v1, init 1000 (jail root) and a child 1001 (jail
///   uid 33) in a sub-cgroup; holds `cap_sys_admin` behind the spec's back
///   and lacks `cap_kill`; gid_map shorter than expected.
/// - `b`: frozen, cgroup v2, DHCP network, init 2000 and 2001 in a child.
/// - `c`: recorded running but its init (3000) is gone; exit.json says
///   SIGKILL.
/// - `d`: created, static IP, limits.
/// - `e`: corrupt jail.json.
pub fn scene() -> Fx {
    let fx = Fx::new();
    let spec_caps = jailer::spec::effective_caps(&["cap_net_raw".into()], &[]);
    let spec_refs: Vec<&str> = spec_caps.iter().map(String::as_str).collect();
    let spec_mask = mask(&spec_refs);
    let sys_admin = mask(&["cap_sys_admin"]);
    let kill = mask(&["cap_kill"]);

    // Jail a.
    let mon_a = FakeProc::new(999, 1, "jailer-monitor");
    let mut init_a = FakeProc::new(1000, 999, "init-a");
    init_a.nspid = vec![1000, 1];
    init_a.uid = BASE_A as i64;
    init_a.gid = BASE_A as i64;
    init_a.cap_eff = (spec_mask | sys_admin) & !kill;
    init_a.cap_prm = spec_mask;
    init_a.cap_bnd = spec_mask;
    init_a.no_new_privs = 1;
    init_a.seccomp = 2;
    init_a.uid_map = format!("         0  {BASE_A}      65536\n");
    init_a.gid_map = format!("         0  {BASE_A}       1000\n");
    init_a.mountinfo =
        "600 550 0:40 /jails/a/rootfs / rw,relatime - btrfs /dev/loop0 rw,space_cache=v2\n\
                        601 600 0:41 / /proc rw,nosuid,nodev,noexec - proc proc rw\n\
                        602 600 0:42 / /sys ro,nosuid - sysfs sysfs ro\n\
                        603 600 0:43 / /my\\040data rw - tmpfs tmpfs rw\n"
            .into();
    init_a.ns_base = 4026532000;
    let mut child_a = FakeProc::new(1001, 1000, "worker");
    child_a.nspid = vec![1001, 7];
    child_a.uid = BASE_A as i64 + 33;
    child_a.gid = BASE_A as i64 + 33;
    child_a.start_ticks = 45_600;
    for p in [&mon_a, &init_a, &child_a] {
        fx.add_proc(p);
    }
    let mut a = fx.record(
        RawSpec {
            name: "a".into(),
            template: "bookworm".into(),
            cap_add: vec!["NET_RAW".into()],
            command: vec!["/sbin/init".into(), "--quiet".into()],
            ..Default::default()
        },
        BASE_A,
    );
    let cg = fx.cgroup_v1("a", &[1000], &[1001]);
    Fx::run(&mut a, &mon_a, &init_a, cg);
    fx.write_record(&a);

    // Jail b.
    let mon_b = FakeProc::new(1999, 1, "jailer-monitor");
    let mut init_b = FakeProc::new(2000, 1999, "init-b");
    init_b.uid = BASE_B as i64;
    init_b.gid = BASE_B as i64;
    init_b.uid_map = format!("0 {BASE_B} 65536\n");
    init_b.gid_map = format!("0 {BASE_B} 65536\n");
    init_b.fib_trie =
        Some("Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 10.1.2.3\n        /32 host LOCAL\n".into());
    let mut child_b = FakeProc::new(2001, 2000, "sh");
    child_b.uid = BASE_B as i64;
    child_b.gid = BASE_B as i64;
    for p in [&mon_b, &init_b, &child_b] {
        fx.add_proc(p);
    }
    let mut b = fx.record(
        RawSpec {
            name: "b".into(),
            template: "bookworm".into(),
            net: vec!["macvlan,parent=eth0,dhcp".into()],
            ..Default::default()
        },
        BASE_B,
    );
    let cg = fx.cgroup_v2("b", &[2000], &[2001]);
    Fx::run(&mut b, &mon_b, &init_b, cg);
    b.state = State::Frozen;
    fx.write_record(&b);

    // Jail c: its init is gone (no /proc/3000), the monitor too.
    let mut c = fx.record(
        RawSpec {
            name: "c".into(),
            template: "bookworm".into(),
            ..Default::default()
        },
        BASE_B + 65536,
    );
    let cg = fx.cgroup_v1("c", &[], &[]);
    Fx::run(
        &mut c,
        &FakeProc::new(2999, 1, "m"),
        &FakeProc::new(3000, 2999, "i"),
        cg,
    );
    fx.write_record(&c);
    fx.write_exit(
        "c",
        &ExitRecord {
            exit_code: None,
            signal: Some(9),
            oom_killed: false,
            finished_at: 1_700_000_300,
        },
    );

    // Jail d: created only.
    let d = fx.record(
        RawSpec {
            name: "d".into(),
            template: "trixie".into(),
            memory: Some("512M".into()),
            cpus: Some("1.5".into()),
            pids: Some("64".into()),
            net: vec!["macvlan,parent=eth0,ip=192.0.2.10/24,gateway=192.0.2.1".into()],
            ..Default::default()
        },
        BASE_B + 2 * 65536,
    );
    fx.write_record(&d);

    // Jail e: corrupt.
    fx.write_raw_record("e", b"{\"version\": 1, \"id\": ");
    fx
}

/// The dpkg status file of every fixture jail.
pub const DPKG_STATUS: &str = "Package: libssl3\n\
Status: install ok installed\n\
Priority: optional\n\
Installed-Size: 6163\n\
Maintainer: Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>\n\
Architecture: amd64\n\
Multi-Arch: same\n\
Source: openssl\n\
Version: 3.0.15-1~deb12u1\n\
Description: Secure Sockets Layer toolkit - shared libraries\n\
\x20This package is part of the OpenSSL project.\n\
\n\
Version: 9\n\
\n\
Package: dpkg\n\
Status: deinstall ok config-files\n\
Architecture: amd64\n\
Version: 1.21.22\n";
