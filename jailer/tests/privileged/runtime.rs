//! Running jails for real on the debootstrap template: isolation, limits,
//! lifecycle, and that nothing leaks.

use crate::cli::{fails, jailer, ok};
use libtest_mimic::Trial;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub fn trials() -> Vec<Trial> {
    let t = |name: &'static str, f: fn() -> Result<(), String>| {
        Trial::test(format!("runtime::{name}"), move || crate::check(f()))
    };
    vec![
        t("root_inside_is_the_jails_host_uid_outside", identity),
        t(
            "jail_sees_no_host_processes_files_or_other_jails",
            isolation,
        ),
        t(
            "jail_cannot_mount_load_modules_write_sysctl_or_mknod",
            forbidden,
        ),
        t(
            "capabilities_match_the_spec_and_cannot_be_raised",
            capabilities,
        ),
        t("seccomp_default_filter_and_per_jail_relaxation", seccomp),
        t("memory_hog_is_oom_killed_and_reported", oom),
        t("fork_bomb_stops_at_the_pids_limit", pids),
        t("freeze_stops_a_counter_and_thaw_resumes_it", freeze),
        t("stop_kills_a_jail_that_ignores_sigterm", stop_timeout),
        t("exec_joins_the_jail_and_passes_the_exit_code", exec),
        t("lifecycle_transitions_and_clear_errors", transitions),
        t("missing_binary_is_reported_at_start", missing_binary),
        t(
            "a_jail_whose_network_cannot_be_made_leaves_nothing",
            dhcp_refused,
        ),
        t(
            "init_and_exec_enter_every_controllers_group",
            born_in_cgroup,
        ),
        t(
            "run_rm_and_start_wait_show_the_output_and_pass_the_exit_code",
            run_rm,
        ),
        t("logs_and_ps", logs_ps),
        t("dead_monitor_or_init_reads_stopped", dead_monitor),
        t("hundred_start_stop_cycles_leak_nothing", no_leaks),
    ]
}

fn pool() -> Result<PathBuf, String> {
    crate::debian_pool()
}

/// Creates and starts `name` running `sh -c script`, with extra create args.
pub(crate) fn start_sh(
    root: &Path,
    name: &str,
    extra: &[&str],
    script: &str,
) -> Result<(), String> {
    create(root, name, extra, &["/bin/sh", "-c", script])?;
    ok(root, &["start", name])?;
    Ok(())
}

/// `jailer create NAME --template deb EXTRA.. -- COMMAND..`.
pub(crate) fn create(
    root: &Path,
    name: &str,
    extra: &[&str],
    command: &[&str],
) -> Result<(), String> {
    let mut args = vec!["create", name, "--template", "deb"];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(command);
    ok(root, &args)?;
    Ok(())
}

/// The command of jails that only need to stay up.
const SLEEP: &[&str] = &["/bin/sleep", "1000"];

/// Removes a jail whatever its state (test cleanup).
pub(crate) struct Jail<'a> {
    root: &'a Path,
    name: String,
}

impl Drop for Jail<'_> {
    fn drop(&mut self) {
        let _ = jailer(self.root, &["rm", "--force", &self.name]);
    }
}

pub(crate) fn jail<'a>(root: &'a Path, name: &str) -> Jail<'a> {
    Jail {
        root,
        name: name.to_string(),
    }
}

/// `jailer exec NAME -- sh -c script`: (exit code, stdout, stderr).
pub(crate) fn sh(root: &Path, name: &str, script: &str) -> (i32, String, String) {
    let out = jailer(root, &["exec", name, "--", "/bin/sh", "-c", script]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn sh_ok(root: &Path, name: &str, script: &str) -> Result<String, String> {
    let (code, out, err) = sh(root, name, script);
    if code != 0 {
        return Err(format!("exec {script:?} in {name}: exit {code}: {err}"));
    }
    Ok(out)
}

pub(crate) fn inspect(root: &Path, name: &str) -> Result<serde_json::Value, String> {
    let out = ok(root, &["inspect", name])?;
    serde_json::from_str(&out).map_err(|e| format!("inspect: {e}: {out}"))
}

pub(crate) fn init_pid(root: &Path, name: &str) -> Result<i32, String> {
    inspect(root, name)?["runtime"]["init"]["pid"]
        .as_i64()
        .map(|p| p as i32)
        .ok_or_else(|| format!("{name} has no init pid"))
}

fn status_of(pid: i32, key: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
}

pub(crate) fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

fn identity() -> Result<(), String> {
    let root = pool()?;
    let _j = jail(&root, "rt-id");
    start_sh(&root, "rt-id", &[], "sleep 1000")?;
    let id = sh_ok(&root, "rt-id", "id -u; id -g; id -un")?;
    if id != "0\n0\nroot\n" {
        return Err(format!("id inside: {id}"));
    }
    let rec = inspect(&root, "rt-id")?;
    let base = rec["ids"]["uid_base"].as_u64().unwrap_or(0);
    let map = sh_ok(&root, "rt-id", "cat /proc/self/uid_map /proc/self/gid_map")?;
    let fields: Vec<&str> = map.split_whitespace().collect();
    if fields
        != [
            "0",
            &base.to_string(),
            "65536",
            "0",
            &base.to_string(),
            "65536",
        ]
    {
        return Err(format!("uid_map/gid_map inside: {map}"));
    }
    let pid = init_pid(&root, "rt-id")?;
    let uid = status_of(pid, "Uid:").unwrap_or_default();
    if uid.split_whitespace().next() != Some(&base.to_string()) {
        return Err(format!("host sees init with Uid {uid}, expected {base}"));
    }
    // Files of the template appear owned by root inside (idmapped mount),
    // while on disk they stay owned by host root.
    let owner = sh_ok(&root, "rt-id", "stat -c %u:%g /etc/passwd /bin/sh")?;
    if owner != "0:0\n0:0\n" {
        return Err(format!("template files inside owned by {owner}"));
    }
    sh_ok(&root, "rt-id", "echo hi > /root/new")?;
    use std::os::unix::fs::MetadataExt;
    let m =
        std::fs::metadata(root.join("jails/rt-id/rootfs/root/new")).map_err(|e| e.to_string())?;
    if m.uid() != 0 {
        return Err(format!(
            "a file root made inside is owned by {} on disk",
            m.uid()
        ));
    }
    let hn = sh_ok(&root, "rt-id", "hostname")?;
    if hn != "rt-id\n" {
        return Err(format!("hostname {hn}"));
    }
    Ok(())
}

fn isolation() -> Result<(), String> {
    let root = pool()?;
    let _a = jail(&root, "rt-iso-a");
    let _b = jail(&root, "rt-iso-b");
    start_sh(&root, "rt-iso-a", &[], "sleep 1000")?;
    start_sh(&root, "rt-iso-b", &[], "sleep 1000")?;
    // Only the jail's own processes: init (sh), its sleep, and the exec'd
    // sh, ls and wc.
    let procs = sh_ok(&root, "rt-iso-a", "ls -d /proc/[0-9]* | wc -l")?;
    let n: usize = procs.trim().parse().map_err(|_| procs.clone())?;
    if n > 5 {
        return Err(format!("jail sees {n} processes"));
    }
    let me = std::process::id();
    let (code, _, _) = sh(&root, "rt-iso-a", &format!("kill -0 {me}"));
    if code == 0 {
        return Err("jail can signal the host test process".into());
    }
    let b_init = init_pid(&root, "rt-iso-b")?;
    let (code, _, _) = sh(&root, "rt-iso-a", &format!("kill -9 {b_init}"));
    if code == 0 || !Path::new(&format!("/proc/{b_init}")).exists() {
        return Err("jail a could signal jail b".into());
    }
    // Host files are out of reach: a marker in the host's /tmp is not in
    // the jail's /tmp, and nothing in the jail's mount table is the host's.
    let marker = std::env::temp_dir().join("jailer-host-marker");
    std::fs::write(&marker, "host").map_err(|e| e.to_string())?;
    let (code, _, _) = sh(&root, "rt-iso-a", "cat /tmp/jailer-host-marker");
    let _ = std::fs::remove_file(&marker);
    if code == 0 {
        return Err("jail reads a host file".into());
    }
    let mounts = sh_ok(&root, "rt-iso-a", "cat /proc/self/mountinfo")?;
    for l in mounts.lines() {
        let mp = l.split(' ').nth(4).unwrap_or("");
        if ![
            "/",
            "/proc",
            "/sys",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
        ]
        .contains(&mp)
            && !mp.starts_with("/dev/")
            // The masks and read-only binds over kernel interfaces.
            && !((mp.starts_with("/proc/") || mp.starts_with("/sys/"))
                && ["tmpfs", "proc", "sysfs", "devtmpfs"]
                    .iter()
                    .any(|t| l.contains(&format!(" - {t} "))))
            // The jail's own cgroup (cgroup_view.rs).
            && !(mp.starts_with("/sys/fs/cgroup")
                && [" - cgroup ", " - cgroup2 "].iter().any(|t| l.contains(t)))
        {
            return Err(format!("unexpected mount inside: {l}"));
        }
    }
    // The host's /etc/shadow: reading it needs a path to the host root; the
    // jail's own shadow is the template's.
    let shadow = sh_ok(&root, "rt-iso-a", "cat /etc/shadow | head -1")?;
    let tpl = std::fs::read_to_string(root.join("templates/deb/rootfs/etc/shadow"))
        .map_err(|e| e.to_string())?;
    if !tpl.starts_with(&shadow) {
        return Err("the jail's /etc/shadow is not its own".into());
    }
    Ok(())
}

/// `perl -e CALL` inside the jail, where CALL is a perl expression true
/// on success: `Ok(())` if it succeeded, else `Err(errno)`. (Syscall
/// numbers are x86_64's.)
pub(crate) fn errno_of(root: &Path, name: &str, call: &str) -> Result<Result<(), i32>, String> {
    // z() copies a string: perl's syscall refuses read-only literals
    // (dying before the call, which an exit-code check took for a refusal).
    let script = format!("sub z {{ my $x = $_[0]; $x }} {call} and exit 0; print $!+0; exit 1");
    let out = jailer(root, &["exec", name, "--", "/usr/bin/perl", "-e", &script]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    match out.status.code() {
        Some(0) => Ok(Ok(())),
        Some(1) => stdout
            .trim()
            .parse()
            .map(Err)
            .map_err(|_| format!("`{call}`: no errno printed: {stdout:?}")),
        c => Err(format!(
            "`{call}`: exit {c:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

/// The jail's memory limit as the host's cgroup says (v1 or v2).
fn host_memory_limit(name: &str) -> Option<String> {
    let prefix = format!("{name}-");
    for (dir, file) in [
        ("/sys/fs/cgroup/memory/jailer", "memory.limit_in_bytes"),
        ("/sys/fs/cgroup/jailer", "memory.max"),
    ] {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                if let Ok(v) = std::fs::read_to_string(e.path().join(file)) {
                    return Some(v.trim().to_string());
                }
            }
        }
    }
    None
}

fn forbidden() -> Result<(), String> {
    let root = pool()?;
    let _j = jail(&root, "rt-forbid");
    start_sh(&root, "rt-forbid", &["--memory", "64M"], "sleep 1000")?;
    let limit = host_memory_limit("rt-forbid").ok_or("rt-forbid has no memory cgroup")?;
    let (eperm, erofs) = (libc::EPERM, libc::EROFS);
    // Each call must fail with the errno of the protection that stops it
    // (seccomp's EPERM, the read-only mount's EROFS, the kernel's EPERM for
    // devices in a user namespace), not with any error at all.
    // Writes back the file's own value, so that nothing changes even if
    // every protection failed.
    let write = |path: &str| {
        format!("open(R, \"<\", \"{path}\") && defined(my $v = <R>) && open(F, \">\", \"{path}\") && print(F $v) && close(F)")
    };
    let checks: Vec<(String, &str, i32)> = vec![
        (
            "syscall(165, z(\"none\"), z(\"/mnt\"), z(\"tmpfs\"), 0, 0) == 0".into(),
            "mount",
            eperm,
        ),
        (
            "syscall(165, z(\"/tmp\"), z(\"/mnt\"), 0, 4096, 0) == 0".into(),
            "bind mount",
            eperm,
        ),
        (
            write("/proc/sys/vm/overcommit_memory"),
            "write /proc/sys",
            erofs,
        ),
        (
            write("/proc/sys/kernel/core_pattern"),
            "write /proc/sys/kernel",
            erofs,
        ),
        (write("/sys/kernel/mm/ksm/run"), "write /sys", erofs),
        // mknod("/tmp/null", S_IFCHR | 0666, makedev(1, 3)).
        (
            "syscall(133, z(\"/tmp/null\"), 0020666, 259) == 0".into(),
            "mknod",
            eperm,
        ),
        (
            "syscall(175, 0, 0, z(\"\")) == 0".into(),
            "init_module",
            eperm,
        ),
        (
            "syscall(313, 0, z(\"\"), 0) == 0".into(),
            "finit_module",
            eperm,
        ),
        // The jail's own cgroup at /sys/fs/cgroup is read-only (see
        // cgroup_view.rs); mounting a cgroupfs of its own is refused too.
        (
            "syscall(165, z(\"none\"), z(\"/mnt\"), z(\"cgroup\"), 0, z(\"memory\")) == 0".into(),
            "mount the v1 memory controller",
            eperm,
        ),
        (
            "syscall(165, z(\"none\"), z(\"/mnt\"), z(\"cgroup2\"), 0, 0) == 0".into(),
            "mount cgroup2",
            eperm,
        ),
        ("syscall(166, z(\"/proc\"), 0) == 0".into(), "umount", eperm),
        // unshare(CLONE_NEWNS).
        (
            "syscall(272, 0x20000) == 0".into(),
            "unshare a mount namespace",
            eperm,
        ),
        (
            "open(F, \"<\", \"/proc/1/ns/mnt\") && syscall(308, fileno(F), 0) == 0".into(),
            "setns",
            eperm,
        ),
    ];
    for (call, what, want) in &checks {
        match errno_of(&root, "rt-forbid", call)? {
            Ok(()) => return Err(format!("jail could {what}: `{call}` succeeded")),
            Err(e) if e != *want => {
                return Err(format!(
                    "{what}: `{call}` failed with errno {e}, not {want}: not the protection that should stop it"
                ))
            }
            Err(_) => {}
        }
    }
    // And the limit the host set is the one still in force.
    let after = host_memory_limit("rt-forbid").ok_or("rt-forbid's memory cgroup is gone")?;
    if after != limit {
        return Err(format!(
            "the jail's memory limit changed: {limit} -> {after}"
        ));
    }
    Ok(())
}

fn cap_mask(names: &[String]) -> u64 {
    let mut m = 0u64;
    for n in names {
        if let Ok(c) = n.to_ascii_uppercase().parse::<caps::Capability>() {
            m |= 1u64 << c.index();
        }
    }
    m
}

fn capabilities() -> Result<(), String> {
    let root = pool()?;
    let _j = jail(&root, "rt-caps");
    start_sh(
        &root,
        "rt-caps",
        &["--cap-add", "net_raw", "--cap-drop", "chown"],
        "sleep 1000",
    )?;
    let rec = inspect(&root, "rt-caps")?;
    let spec: Vec<String> =
        serde_json::from_value(rec["spec"]["capabilities"].clone()).map_err(|e| e.to_string())?;
    let want = cap_mask(&spec);
    let pid = init_pid(&root, "rt-caps")?;
    for key in ["CapEff:", "CapPrm:", "CapBnd:"] {
        let v = status_of(pid, key).unwrap_or_default();
        let got = u64::from_str_radix(&v, 16).map_err(|e| format!("{key} {v}: {e}"))?;
        if got != want {
            return Err(format!("init {key} {got:#x} != spec {want:#x} ({spec:?})"));
        }
    }
    for key in ["CapInh:", "CapAmb:"] {
        if status_of(pid, key).as_deref() != Some("0000000000000000") {
            return Err(format!("init {key} not empty"));
        }
    }
    if status_of(pid, "NoNewPrivs:").as_deref() != Some("1") {
        return Err("no_new_privs not set".into());
    }
    // The exec'd process holds the same set.
    let eff = sh_ok(&root, "rt-caps", "grep CapEff /proc/self/status")?;
    let got = u64::from_str_radix(eff.split_whitespace().nth(1).unwrap_or(""), 16).unwrap_or(0);
    if got != want {
        return Err(format!("exec'd CapEff {got:#x} != {want:#x}"));
    }
    // chown was dropped; net_raw added.
    let (code, _, _) = sh(&root, "rt-caps", "touch /tmp/f && chown 1:1 /tmp/f");
    if code == 0 {
        return Err("chown worked without cap_chown".into());
    }
    // No capability outside the set can be raised, even with setpriv: it
    // either fails or leaves every set within the spec's.
    for args in [
        "--inh-caps +sys_admin --ambient-caps +sys_admin",
        "--inh-caps +sys_module",
        "--ambient-caps +net_admin",
    ] {
        let (code, out, _) = sh(
            &root,
            "rt-caps",
            &format!("setpriv {args} cat /proc/self/status"),
        );
        if code != 0 {
            continue;
        }
        for l in out.lines().filter(|l| l.starts_with("Cap")) {
            let v = l.split_whitespace().nth(1).unwrap_or("");
            let got = u64::from_str_radix(v, 16).unwrap_or(u64::MAX);
            if got & !want != 0 {
                return Err(format!("setpriv {args} raised {l}"));
            }
        }
    }
    Ok(())
}

fn seccomp() -> Result<(), String> {
    let root = pool()?;
    let _a = jail(&root, "rt-sec");
    let _b = jail(&root, "rt-sec-relaxed");
    start_sh(&root, "rt-sec", &[], "sleep 1000")?;
    let pid = init_pid(&root, "rt-sec")?;
    if status_of(pid, "Seccomp:").as_deref() != Some("2") {
        return Err("init has no seccomp filter".into());
    }
    // keyctl(KEYCTL_GET_KEYRING_ID=0, -3, 0) and a new user namespace.
    let (code, _, _) = sh(
        &root,
        "rt-sec",
        "perl -e 'exit(syscall(250, 0, -3, 0) == -1 && $! == 1 ? 0 : 1)'",
    );
    if code != 0 {
        return Err("keyctl was not refused with EPERM".into());
    }
    let (code, _, _) = sh(&root, "rt-sec", "unshare -U true");
    if code == 0 {
        return Err("a nested user namespace was allowed by default".into());
    }
    start_sh(
        &root,
        "rt-sec-relaxed",
        &["--seccomp-allow", "newuser", "--seccomp-allow", "keyctl"],
        "sleep 1000",
    )?;
    sh_ok(&root, "rt-sec-relaxed", "unshare -U true")?;
    let (code, _, _) = sh(
        &root,
        "rt-sec-relaxed",
        "perl -e 'exit(syscall(250, 0, -3, 0) == -1 && $! == 1 ? 1 : 0)'",
    );
    if code != 0 {
        return Err("keyctl still refused after --seccomp-allow keyctl".into());
    }
    fails(
        &root,
        &[
            "create",
            "rt-sec-bad",
            "--template",
            "deb",
            "--seccomp-allow",
            "read",
        ],
        &["not refused by the default seccomp filter"],
    )?;
    Ok(())
}

fn oom() -> Result<(), String> {
    let root = pool()?;
    let _j = jail(&root, "rt-oom");
    create(
        &root,
        "rt-oom",
        &["--memory", "32M"],
        &[
            "/usr/bin/perl",
            "-e",
            "$x = 'a' x (256*1024*1024); sleep 100",
        ],
    )?;
    ok(&root, &["start", "rt-oom"])?;
    if !wait_until(Duration::from_secs(20), || {
        inspect(&root, "rt-oom").is_ok_and(|r| r["state"] == "stopped")
    }) {
        return Err("memory hog still running".into());
    }
    let rec = inspect(&root, "rt-oom")?;
    if rec["oom_killed"] != true || rec["exit_code"] != 137 {
        return Err(format!("OOM not reported: {rec}"));
    }
    // The memory cgroup is gone after the OOM kill too, once the monitor
    // (which records the exit first, then releases the group) is done.
    if !wait_until(Duration::from_secs(10), || cgroup_dirs("rt-oom") == 0) {
        return Err("cgroup left after OOM".into());
    }
    Ok(())
}

fn pids() -> Result<(), String> {
    let root = pool()?;
    let _j = jail(&root, "rt-pids");
    // perl's fork returns undef when refused, where a shell would give up.
    create(
        &root,
        "rt-pids",
        &["--pids", "20"],
        &[
            "/usr/bin/perl",
            "-e",
            "$| = 1; my $n = 0; for (1..200) { my $p = fork(); if (!defined $p) { $n++; next } if ($p == 0) { sleep 1000; exit } } print \"refused $n\\n\"; sleep 1000",
        ],
    )?;
    ok(&root, &["start", "rt-pids"])?;
    // The bomb is over once it prints how many forks were refused.
    if !wait_until(Duration::from_secs(10), || {
        ok(&root, &["logs", "rt-pids"]).is_ok_and(|l| l.contains("refused"))
    }) {
        return Err("the fork bomb never finished".into());
    }
    let out = ok(&root, &["ps", "rt-pids", "--json"])?;
    let procs: Vec<serde_json::Value> = serde_json::from_str(&out).map_err(|e| e.to_string())?;
    if procs.is_empty() || procs.len() > 20 {
        return Err(format!("{} processes under a limit of 20", procs.len()));
    }
    let rec = inspect(&root, "rt-pids")?;
    if rec["state"] != "running" {
        return Err("the jail died from its fork bomb".into());
    }
    if !wait_until(Duration::from_secs(5), || {
        ok(&root, &["logs", "rt-pids"]).is_ok_and(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n >= 180)
        })
    }) {
        return Err(format!(
            "fork refusals: {:?}",
            ok(&root, &["logs", "rt-pids"])
        ));
    }
    Ok(())
}

fn read_counter(root: &Path, name: &str) -> u64 {
    std::fs::read_to_string(root.join(format!("jails/{name}/rootfs/tmp/counter")))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn freeze() -> Result<(), String> {
    let root = pool()?;
    let _j = jail(&root, "rt-freeze");
    start_sh(
        &root,
        "rt-freeze",
        &[],
        "i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; done",
    )?;
    if !wait_until(Duration::from_secs(5), || {
        read_counter(&root, "rt-freeze") > 10
    }) {
        return Err("counter does not run".into());
    }
    ok(&root, &["freeze", "rt-freeze"])?;
    if inspect(&root, "rt-freeze")?["state"] != "frozen" {
        return Err("state is not frozen".into());
    }
    // Frozen means every process of the group is: wait for that state,
    // then see the counter stand still (the one interval here is what is
    // checked, not a stand-in for a state).
    if !wait_until(Duration::from_secs(5), || frozen_group("rt-freeze")) {
        return Err("the jail's freezer group never reads frozen".into());
    }
    let a = read_counter(&root, "rt-freeze");
    std::thread::sleep(Duration::from_millis(500));
    let b = read_counter(&root, "rt-freeze");
    if a != b {
        return Err(format!("counter moved while frozen: {a} -> {b}"));
    }
    fails(&root, &["freeze", "rt-freeze"], &["frozen"])?;
    ok(&root, &["thaw", "rt-freeze"])?;
    if !wait_until(Duration::from_secs(5), || {
        read_counter(&root, "rt-freeze") > b + 10
    }) {
        return Err("counter did not resume after thaw".into());
    }
    // A frozen jail can be stopped.
    ok(&root, &["freeze", "rt-freeze"])?;
    ok(&root, &["stop", "rt-freeze", "--timeout", "1"])?;
    if inspect(&root, "rt-freeze")?["state"] != "stopped" || cgroup_dirs("rt-freeze") != 0 {
        return Err("frozen jail not stopped cleanly".into());
    }
    Ok(())
}

fn stop_timeout() -> Result<(), String> {
    let root = pool()?;
    let _j = jail(&root, "rt-term");
    start_sh(
        &root,
        "rt-term",
        &[],
        "trap '' TERM; while true; do sleep 1; done",
    )?;
    let t = Instant::now();
    ok(&root, &["stop", "rt-term", "--timeout", "1"])?;
    let took = t.elapsed();
    let rec = inspect(&root, "rt-term")?;
    if rec["state"] != "stopped" || rec["exit_code"] != 137 {
        return Err(format!("after stop: {rec}"));
    }
    if took < Duration::from_millis(900) {
        return Err(format!("stop did not wait for the timeout ({took:?})"));
    }
    // A jail that honours SIGTERM stops with its own status.
    let _k = jail(&root, "rt-term2");
    start_sh(
        &root,
        "rt-term2",
        &[],
        "trap 'exit 42' TERM; while true; do sleep 0.1; done",
    )?;
    // Only once the shell has installed its trap: until then SIGTERM means
    // nothing to a namespace's init.
    let pid = init_pid(&root, "rt-term2")?;
    let trapped = wait_until(Duration::from_secs(10), || {
        status_of(pid, "SigCgt:")
            .and_then(|m| u64::from_str_radix(&m, 16).ok())
            .is_some_and(|m| m & (1 << (libc::SIGTERM - 1)) != 0)
    });
    if !trapped {
        return Err("the shell never installed its SIGTERM trap".into());
    }
    ok(&root, &["stop", "rt-term2", "--timeout", "10"])?;
    let rec = inspect(&root, "rt-term2")?;
    if rec["exit_code"] != 42 {
        return Err(format!("SIGTERM handler's status lost: {rec}"));
    }
    Ok(())
}

fn exec() -> Result<(), String> {
    let root = pool()?;
    let _j = jail(&root, "rt-exec");
    start_sh(&root, "rt-exec", &["--env", "GREETING=hello"], "sleep 1000")?;
    let (code, out, _) = sh(
        &root,
        "rt-exec",
        "echo $GREETING; hostname; cat /proc/1/cmdline | tr '\\0' ' '; exit 7",
    );
    if code != 7 {
        return Err(format!("exit code {code}, not 7"));
    }
    if !out.starts_with("hello\nrt-exec\n/bin/sh -c sleep 1000") {
        return Err(format!("exec output: {out:?}"));
    }
    // stdin is attached.
    let mut child = Command::new(env!("CARGO_BIN_EXE_jailer"))
        .arg("--root")
        .arg(&root)
        .args(["exec", "rt-exec", "--", "/bin/cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        stdin
            .write_all(b"through stdin\n")
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.stdout != b"through stdin\n" {
        return Err(format!(
            "cat got {:?}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    // Same seccomp and no_new_privs as init; same cgroup.
    let st = sh_ok(
        &root,
        "rt-exec",
        "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status",
    )?;
    if !st.contains("NoNewPrivs:\t1") || !st.contains("Seccomp:\t2") {
        return Err(format!("exec'd status: {st}"));
    }
    let cg = sh_ok(&root, "rt-exec", "cat /proc/self/cgroup")?;
    let init_cg = sh_ok(&root, "rt-exec", "cat /proc/1/cgroup")?;
    if cg != init_cg {
        return Err(format!("exec'd cgroup {cg} != init's {init_cg}"));
    }
    let (code, _, err) = sh(&root, "rt-exec", "exec /no/such/binary");
    if code != 127 {
        return Err(format!("missing binary in exec: {code} {err}"));
    }
    Ok(())
}

fn transitions() -> Result<(), String> {
    let root = pool()?;
    let _j = jail(&root, "rt-trans");
    // An I/O weight is accepted and never stops a start, whether or not the
    // host's I/O scheduler supports weights.
    create(&root, "rt-trans", &["--io-weight", "200"], SLEEP)?;
    // Stopping a jail that is not running is no error (as `podman stop`):
    // it is already where stop would put it.
    let out = ok(&root, &["stop", "rt-trans"])?;
    if !out.contains("rt-trans is not running (created)") {
        return Err(format!("stop of a created jail said {out:?}"));
    }
    fails(&root, &["freeze", "rt-trans"], &["created"])?;
    fails(&root, &["exec", "rt-trans", "--", "true"], &["created"])?;
    ok(&root, &["start", "rt-trans"])?;
    fails(
        &root,
        &["start", "rt-trans"],
        &["rt-trans is running", "stop it first"],
    )?;
    fails(&root, &["thaw", "rt-trans"], &["not frozen"])?;
    fails(
        &root,
        &["rm", "rt-trans"],
        &["rt-trans is running", "--force"],
    )?;
    fails(
        &root,
        &["kill", "rt-trans", "--signal", "NOPE"],
        &["unknown signal"],
    )?;
    ok(&root, &["stop", "rt-trans", "--timeout", "0"])?;
    // stopped -> running again.
    ok(&root, &["start", "rt-trans"])?;
    ok(&root, &["kill", "rt-trans", "--signal", "KILL"])?;
    if !wait_until(Duration::from_secs(5), || {
        inspect(&root, "rt-trans").is_ok_and(|r| r["state"] == "stopped")
    }) {
        return Err("kill -9 did not stop the jail".into());
    }
    // rm --force stops a running jail first.
    ok(&root, &["start", "rt-trans"])?;
    ok(&root, &["rm", "--force", "rt-trans"])?;
    if root.join("jails/rt-trans").exists() || cgroup_dirs("rt-trans") != 0 {
        return Err("rm --force left the jail or its cgroup".into());
    }
    Ok(())
}

/// On cgroup v2 init is created in the jail's group (clone3 with
/// CLONE_INTO_CGROUP); on v1 it moves itself into the group of every
/// controller (one `tasks` file each). The monitor says which at debug level
/// in the console log. So does `jailer exec`'s command.
fn born_in_cgroup() -> Result<(), String> {
    let root = pool()?;
    let _j = jail(&root, "rt-born");
    create(&root, "rt-born", &[], SLEEP)?;
    ok(&root, &["-vv", "start", "rt-born"])?;
    let pid = init_pid(&root, "rt-born")?;
    let log = std::fs::read_to_string(root.join("jails/rt-born/console.log"))
        .map_err(|e| format!("console log: {e}"))?;
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let want = if v2 {
        "init created in its cgroup by clone3"
    } else {
        "init cloned, moves itself into its cgroup"
    };
    if !log.contains(want) {
        return Err(format!("v2={v2}: the console log lacks {want:?}: {log}"));
    }
    // v2: the unified line; v1: every controller jailer uses.
    let wanted: &[&str] = if v2 {
        &[""]
    } else {
        &["cpu", "cpuacct", "memory", "pids", "freezer", "blkio"]
    };
    let in_jail = |cg: &str| -> Result<(), String> {
        for c in wanted {
            let hit = cg.lines().any(|l| {
                let mut f = l.splitn(3, ':');
                let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
                let ctrl_ok = if c.is_empty() {
                    ctrls.is_empty()
                } else {
                    ctrls.split(',').any(|x| x == *c)
                };
                ctrl_ok && path.contains("/jailer/rt-born-")
            });
            if !hit {
                return Err(format!("not in the jail's {c:?} group: {cg}"));
            }
        }
        Ok(())
    };
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    in_jail(&cg).map_err(|e| format!("init {pid}: {e}"))?;
    // An exec'd process, seen from the host while it runs.
    let mut child = Command::new(env!("CARGO_BIN_EXE_jailer"))
        .arg("--root")
        .arg(&root)
        .args(["exec", "rt-born", "--", "sleep", "31"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn exec: {e}"))?;
    let found = (0..200).find_map(|_| {
        std::thread::sleep(Duration::from_millis(25));
        let ps = ok(&root, &["ps", "rt-born", "--json"]).ok()?;
        let v: serde_json::Value = serde_json::from_str(&ps).ok()?;
        v.as_array()?
            .iter()
            .find(|p| p["cmdline"] == "sleep 31")
            .and_then(|p| p["pid"].as_i64())
    });
    let _ = child.kill();
    let _ = child.wait();
    let epid = found.ok_or("the exec'd sleep never showed in `jailer ps`")?;
    let cg = std::fs::read_to_string(format!("/proc/{epid}/cgroup")).unwrap_or_default();
    in_jail(&cg).map_err(|e| format!("exec'd {epid}: {e}"))?;
    ok(&root, &["stop", "rt-born", "--timeout", "0"])?;
    Ok(())
}

/// macvlan is recorded but not made yet: start and run refuse such a jail
/// rather than start it without the network it asks for.
/// DHCP is recorded but not set up by this version: a jail asking for it
/// is refused at start, never started without its network. (The parent is
/// the host's `lo`, only looked up: create checks that it exists and is up.)
fn dhcp_refused() -> Result<(), String> {
    let root = pool()?;
    let _j = jail(&root, "rt-mv");
    let _k = jail(&root, "rt-mv2");
    let net = "macvlan,parent=lo,dhcp";
    create(&root, "rt-mv", &["--net", net], &["/bin/true"])?;
    // A macvlan link cannot be made on the loopback: the start fails at
    // that step, before any DHCP, and leaves nothing.
    fails(&root, &["start", "rt-mv"], &["rt-mv", "eth0", "macvlan"])?;
    if inspect(&root, "rt-mv")?["state"] != "created" || cgroup_dirs("rt-mv") != 0 {
        return Err("a refused start left state or a cgroup behind".into());
    }
    // `run --rm` removes the jail it made when its start fails.
    fails(
        &root,
        &[
            "run",
            "--rm",
            "rt-mv2",
            "--template",
            "deb",
            "--net",
            net,
            "--",
            "/bin/true",
        ],
        &["rt-mv2", "eth0", "macvlan"],
    )?;
    let ls = ok(&root, &["ls"])?;
    if ls.contains("rt-mv2") || cgroup_dirs("rt-mv2") != 0 {
        return Err(format!("a failed run --rm left a jail: {ls}"));
    }
    Ok(())
}

fn missing_binary() -> Result<(), String> {
    let root = pool()?;
    let _j = jail(&root, "rt-missing");
    create(&root, "rt-missing", &[], &["/usr/bin/nope"])?;
    fails(
        &root,
        &["start", "rt-missing"],
        &["failed to start", "/usr/bin/nope", "No such file"],
    )?;
    if inspect(&root, "rt-missing")?["state"] != "created" || cgroup_dirs("rt-missing") != 0 {
        return Err("a failed start left state or a cgroup behind".into());
    }
    Ok(())
}

fn run_rm() -> Result<(), String> {
    let root = pool()?;
    let out = jailer(
        &root,
        &[
            "run",
            "--rm",
            "rt-run",
            "--template",
            "deb",
            "--",
            "/bin/sh",
            "-c",
            "echo out; echo err >&2; exit 5",
        ],
    );
    if out.status.code() != Some(5) {
        return Err(format!("run --rm exit {:?}", out.status.code()));
    }
    if root.join("jails/rt-run").exists() {
        return Err("run --rm left the jail".into());
    }
    // The command's output is shown (the log goes with the jail).
    let shown = String::from_utf8_lossy(&out.stdout);
    if !shown.lines().any(|l| l == "out") || !shown.lines().any(|l| l == "err") {
        return Err(format!(
            "run --rm showed {shown:?}, not the command's out and err"
        ));
    }
    // --json: the record on stdout, the output on stderr.
    let _j = jail(&root, "rt-runj");
    let out = jailer(
        &root,
        &[
            "--json",
            "run",
            "--rm",
            "rt-runj",
            "-t",
            "deb",
            "--",
            "/bin/sh",
            "-c",
            "echo hi; exit 4",
        ],
    );
    let rec: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("run --rm --json stdout is not JSON ({e}): {out:?}"))?;
    if out.status.code() != Some(4)
        || rec["exit_code"] != 4
        || !String::from_utf8_lossy(&out.stderr)
            .lines()
            .any(|l| l == "hi")
    {
        return Err(format!("run --rm --json: {rec} / {out:?}"));
    }
    // start --wait: this start's output only, and the command's status.
    let _w = jail(&root, "rt-wait");
    create(
        &root,
        "rt-wait",
        &[],
        &["/bin/sh", "-c", "cat /proc/sys/kernel/random/uuid; exit 3"],
    )?;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let out = jailer(&root, &["start", "--wait", "rt-wait"]);
        let shown = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.code() != Some(3) || shown.lines().count() != 1 {
            return Err(format!(
                "start --wait: {:?}, showed {shown:?}",
                out.status.code()
            ));
        }
        seen.push(shown);
    }
    if seen[0] == seen[1] {
        return Err(format!(
            "the second start --wait showed the first's output: {seen:?}"
        ));
    }
    let out = jailer(
        &root,
        &[
            "run",
            "--rm",
            "rt-run2",
            "--template",
            "deb",
            "--",
            "/bin/true",
        ],
    );
    if out.status.code() != Some(0) || root.join("jails/rt-run2").exists() {
        return Err("run --rm /bin/true".into());
    }
    let _j = jail(&root, "rt-run3");
    ok(
        &root,
        &[
            "run",
            "rt-run3",
            "--template",
            "deb",
            "--",
            "/bin/sleep",
            "1000",
        ],
    )?;
    if inspect(&root, "rt-run3")?["state"] != "running" {
        return Err("run without --rm did not leave it running".into());
    }
    Ok(())
}

fn logs_ps() -> Result<(), String> {
    let root = pool()?;
    let _j = jail(&root, "rt-logs");
    start_sh(
        &root,
        "rt-logs",
        &[],
        "echo to-stdout; echo to-stderr >&2; sleep 1000",
    )?;
    if !wait_until(Duration::from_secs(5), || {
        ok(&root, &["logs", "rt-logs"])
            .is_ok_and(|l| l.contains("to-stdout") && l.contains("to-stderr"))
    }) {
        return Err("logs lack the jail's output".into());
    }
    let out = ok(&root, &["ps", "rt-logs", "--json"])?;
    let procs: Vec<serde_json::Value> = serde_json::from_str(&out).map_err(|e| e.to_string())?;
    let init = procs
        .iter()
        .find(|p| p["jail_pid"] == 1)
        .ok_or_else(|| format!("no pid 1 in ps: {out}"))?;
    let base = inspect(&root, "rt-logs")?["ids"]["uid_base"]
        .as_i64()
        .unwrap_or(0);
    if init["jail_uid"] != 0
        || init["uid"] != base
        || !init["cmdline"]
            .as_str()
            .unwrap_or("")
            .contains("sleep 1000")
    {
        return Err(format!("ps init row: {init}"));
    }
    let human = ok(&root, &["ps", "rt-logs"])?;
    if !human.starts_with("PID") {
        return Err(human);
    }
    // --follow ends when the jail stops.
    let mut follower = Command::new(env!("CARGO_BIN_EXE_jailer"))
        .arg("--root")
        .arg(&root)
        .args(["logs", "--follow", "rt-logs"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    // Following: it has printed what the log held.
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(follower.stdout.take().ok_or("no stdout")?).lines();
    if !lines.any(|l| l.is_ok_and(|l| l.contains("to-stdout"))) {
        let _ = follower.kill();
        let _ = follower.wait();
        return Err("logs --follow printed nothing".into());
    }
    ok(&root, &["stop", "rt-logs", "--timeout", "0"])?;
    // It ends when the jail stops (its stdout reaches EOF).
    for _ in lines {}
    follower.wait().map_err(|e| e.to_string())?;
    Ok(())
}

fn dead_monitor() -> Result<(), String> {
    let root = pool()?;
    let _j = jail(&root, "rt-dead");
    start_sh(&root, "rt-dead", &[], "sleep 1000")?;
    let rec = inspect(&root, "rt-dead")?;
    let monitor = rec["runtime"]["monitor"]["pid"].as_i64().unwrap_or(0) as i32;
    let init = init_pid(&root, "rt-dead")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::Signal::SIGKILL,
    )
    .map_err(|e| e.to_string())?;
    // Init dies with its monitor (parent-death signal); the jail reads stopped.
    if !wait_until(Duration::from_secs(5), || {
        !Path::new(&format!("/proc/{init}")).exists()
    }) {
        return Err("init outlived its monitor".into());
    }
    let ls = ok(&root, &["ls", "--json"])?;
    let v: serde_json::Value = serde_json::from_str(&ls).map_err(|e| e.to_string())?;
    let me = v
        .as_array()
        .and_then(|a| a.iter().find(|j| j["name"] == "rt-dead"))
        .cloned()
        .unwrap_or_default();
    if me["state"] != "stopped" {
        return Err(format!("ls after the monitor died: {me}"));
    }
    // The next start cleans up what the dead monitor left and runs again.
    ok(&root, &["start", "rt-dead"])?;
    if cgroup_dirs("rt-dead") == 0 {
        return Err("restarted jail has no cgroup".into());
    }
    Ok(())
}

/// How many cgroup directories `jailer/NAME-*` exist across all hierarchies.
/// Whether the jail's freezer group says frozen (v1 `freezer.state`
/// FROZEN, v2 `cgroup.events` frozen 1).
fn frozen_group(name: &str) -> bool {
    let prefix = format!("{name}-");
    for (dir, file, want) in [
        ("/sys/fs/cgroup/freezer/jailer", "freezer.state", "FROZEN"),
        ("/sys/fs/cgroup/jailer", "cgroup.events", "frozen 1"),
    ] {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                return std::fs::read_to_string(e.path().join(file))
                    .is_ok_and(|v| v.lines().any(|l| l.trim() == want));
            }
        }
    }
    false
}

fn cgroup_dirs(name: &str) -> usize {
    let prefix = format!("{name}-");
    let count_in = |dir: &Path| {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .count()
            })
            .unwrap_or(0)
    };
    let mut n = count_in(Path::new("/sys/fs/cgroup/jailer"));
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            n += count_in(&e.path().join("jailer"));
        }
    }
    n
}

/// Host mounts a start or stop of jail `name` in the pool at `root` could
/// leave: below the pool, or of the jail's own tree anywhere. (Other tests
/// running meanwhile mount their own pools elsewhere.)
fn count_mounts(root: &Path, name: &str) -> usize {
    let jail_tree = format!("/jails/{name}/");
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines()
                .filter(|l| {
                    let f: Vec<&str> = l.split(' ').collect();
                    let point = f.get(4).map(Path::new);
                    point.is_some_and(|p| p.starts_with(root) && p != root)
                        || f.get(3).is_some_and(|r| r.contains(&jail_tree))
                })
                .count()
        })
        .unwrap_or(0)
}

fn fd_count(pid: i64) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn no_leaks() -> Result<(), String> {
    let root = pool()?;
    let _j = jail(&root, "rt-cycle");
    create(&root, "rt-cycle", &[], SLEEP)?;
    let mounts_before = count_mounts(&root, "rt-cycle");
    let mut monitor_fds = Vec::new();
    for i in 0..100 {
        ok(&root, &["start", "rt-cycle"])?;
        let rec = inspect(&root, "rt-cycle")?;
        let monitor = rec["runtime"]["monitor"]["pid"].as_i64().unwrap_or(0);
        let monitor_start = rec["runtime"]["monitor"]["start_time"].as_u64();
        if i == 0 || i == 99 {
            monitor_fds.push(fd_count(monitor));
        }
        ok(&root, &["stop", "rt-cycle", "--timeout", "0"])?;
        // The same process (pid and start time), not yet exited: a zombie
        // waiting for its reaper has released everything.
        let stat = std::fs::read_to_string(format!("/proc/{monitor}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let same = fields.get(19).and_then(|t| t.parse::<u64>().ok()) == monitor_start;
        if same && fields.first().is_some_and(|st| *st != "Z" && *st != "X") {
            return Err(format!("cycle {i}: the monitor outlived stop"));
        }
        if cgroup_dirs("rt-cycle") != 0 {
            return Err(format!("cycle {i}: cgroup left after stop"));
        }
    }
    let mounts_after = count_mounts(&root, "rt-cycle");
    if mounts_after != mounts_before {
        return Err(format!(
            "host mounts {mounts_before} -> {mounts_after} after 100 cycles"
        ));
    }
    if monitor_fds.len() != 2 || monitor_fds[0] != monitor_fds[1] || monitor_fds[0] > 8 {
        return Err(format!("monitor fds first/last cycle: {monitor_fds:?}"));
    }
    Ok(())
}
