//! The parsers on the running kernel's real formats: this test process is
//! made a "jail" (its record's init is this process, its cgroup this
//! process's cgroup) and every table is generated from the real `/proc` and
//! `/sys/fs/cgroup`.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use jailer::record::{CgroupRef, ProcRef, Runtime, State};
use jailer::spec::RawSpec;
use jailer_tables::{generate, Constraints, Sources};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// This process's cgroup as the runtime would record it: v1 controllers
/// when any are mounted, else the v2 directory.
fn own_cgroup() -> CgroupRef {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let mut v1 = BTreeMap::new();
    let mut v2 = None;
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        let rel = path.trim_start_matches('/');
        if ctrls.is_empty() {
            v2 = Some(PathBuf::from("/sys/fs/cgroup").join(rel));
        } else if !ctrls.starts_with("name=") {
            let mount = Path::new("/sys/fs/cgroup").join(ctrls);
            // Joint controllers may be mounted as `cpu,cpuacct` with
            // `cpu` and `cpuacct` links; record what exists.
            if mount.exists() {
                v1.insert(ctrls.to_string(), mount.join(rel));
            }
        }
    }
    if v1.is_empty() {
        let mut paths = BTreeMap::new();
        paths.insert("unified".to_string(), v2.unwrap());
        CgroupRef { version: 2, paths }
    } else {
        CgroupRef {
            version: 1,
            paths: v1,
        }
    }
}

#[test]
fn tables_parse_the_real_kernel() {
    let fx = Fx::new();
    let src = Sources {
        pool_root: fx.src.pool_root.clone(),
        proc_root: PathBuf::from("/proc"),
        cgroup_root: PathBuf::from("/sys/fs/cgroup"),
        btrfs_sysfs: PathBuf::from("/sys/fs/btrfs"),
        run_root: PathBuf::from("/run/jailer"),
    };
    let proc = Path::new("/proc");
    let me = std::process::id() as i32;
    let parent = nix::unistd::getppid().as_raw();
    let mut rec = fx.record(
        RawSpec {
            name: "self".into(),
            template: "host".into(),
            command: vec!["cargo".into(), "test".into()],
            ..Default::default()
        },
        0,
    );
    rec.state = State::Running;
    rec.started_at = Some(jailer::record::now());
    rec.runtime = Some(Runtime {
        boot_id: jailer::record::boot_id(proc).unwrap(),
        monitor: ProcRef {
            pid: parent,
            start_time: jailer::record::proc_start_time(proc, parent).unwrap(),
        },
        init: ProcRef {
            pid: me,
            start_time: jailer::record::proc_start_time(proc, me).unwrap(),
        },
        cgroup: own_cgroup(),
        instance: String::new(),
    });
    let version = rec.runtime.as_ref().unwrap().cgroup.version;
    fx.write_record(&rec);
    let c = Constraints::new();
    let gen = |t: &str| {
        let rows = generate(t, &src, &c).unwrap();
        check_types(t, &rows);
        rows
    };

    let jails = gen("jails");
    assert_eq!(jails.len(), 1);
    assert_eq!(txt(get("jails", &jails[0], "state")), "running");
    assert_eq!(num(get("jails", &jails[0], "pid")), i64::from(me));
    let ns = txt(get("jails", &jails[0], "pid_namespace"));
    assert!(
        !ns.is_empty() && ns.chars().all(|c| c.is_ascii_digit()),
        "{ns}"
    );

    let procs = gen("jail_processes");
    let mine = procs
        .iter()
        .find(|r| num(get("jail_processes", r, "pid")) == i64::from(me))
        .expect("this process is in its own cgroup");
    let start = num(get("jail_processes", mine, "start_time"));
    let now = jailer::record::now() as i64;
    assert!(
        start > 1_000_000_000 && start <= now + 1,
        "{start} vs {now}"
    );
    assert!(!txt(get("jail_processes", mine, "cmdline")).is_empty());
    assert!(num(get("jail_processes", mine, "resident_size")) > 0);
    assert!(num(get("jail_processes", mine, "threads")) >= 1);
    assert_eq!(
        num(get("jail_processes", mine, "uid")),
        i64::from(nix::unistd::getuid().as_raw())
    );
    assert!(num(get("jail_processes", mine, "jail_pid")) > 0);
    assert!(txt(get("jail_processes", mine, "path")).starts_with('/'));

    // Pid push-down finds this process alone.
    let one = generate(
        "jail_processes",
        &src,
        &Constraints::new().with_eq("pid", me.to_string()),
    )
    .unwrap();
    assert_eq!(one.len(), 1);

    let caps = gen("jail_capabilities");
    assert!(caps
        .iter()
        .any(|r| num(get("jail_capabilities", r, "pid")) == i64::from(me)));
    let mounts = gen("jail_mounts");
    assert!(mounts
        .iter()
        .any(|r| txt(get("jail_mounts", r, "mount_point")) == "/"));
    let maps = gen("jail_mappings");
    assert!(maps.len() >= 2, "{maps:?}");
    let res = gen("jail_resources");
    assert_eq!(res.len(), 1);
    assert_eq!(
        num(get("jail_resources", &res[0], "cgroup_version")),
        i64::from(version)
    );
    // The memory counter exists in both versions when the controller is on.
    let mem = num(get("jail_resources", &res[0], "memory_current"));
    let cpu = num(get("jail_resources", &res[0], "cpu_usage_usec"));
    eprintln!("cgroup v{version}: memory_current {mem}, cpu_usage_usec {cpu}");
    assert!(mem != 0, "memory_current {mem}");
}
