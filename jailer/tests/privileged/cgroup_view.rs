//! A workload reads its own limits: the jail's cgroup, and nothing above
//! it, at `/sys/fs/cgroup` inside, read-only (cgroup v2: one `cgroup2`
//! mount; v1: a read-only tmpfs with one `cgroup` mount per hierarchy the
//! jail is placed in). Each test finds the host's layout in the host's
//! mount table and asserts the files of that layout, so the same tests run
//! on v2 and v1 hosts.

use crate::cli::ok;
use crate::runtime::{errno_of, init_pid, jail, sh_ok, start_sh};
use libtest_mimic::Trial;
use std::path::Path;

pub fn trials() -> Vec<Trial> {
    let t = |name: &'static str, f: fn() -> Result<(), String>| {
        Trial::test(format!("cgroup_view::{name}"), move || crate::check(f()))
    };
    vec![
        t(
            "jail_reads_its_own_limits_at_sys_fs_cgroup",
            reads_own_limits,
        ),
        t("jail_sees_no_cgroup_above_its_own", nothing_above),
        t("jail_cannot_write_its_cgroup_limits", cannot_write),
        t(
            "a_symlink_at_sys_fs_cgroup_in_the_rootfs_redirects_nothing",
            symlink_in_rootfs,
        ),
    ]
}

/// The controllers jailer places a jail in on v1 (`cgroup::V1_CONTROLLERS`).
const V1_CONTROLLERS: &[&str] = &[
    "cpu", "cpuacct", "memory", "pids", "freezer", "blkio", "devices",
];

/// The host's cgroup layout, as jailer sees it.
#[derive(Debug)]
enum Layout {
    V2,
    /// The hierarchies a jail is placed in: each one's directory name
    /// inside the jail (its controllers, comma joined, in the order the
    /// host's mount options list them) and its controllers.
    V1(Vec<(String, Vec<String>)>),
}

/// Reads the host's mount table: v2 when `/sys/fs/cgroup` is a cgroup2
/// mount, else the v1 hierarchies holding jailer's controllers.
fn layout() -> Result<Layout, String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let mut v1: Vec<(String, Vec<String>)> = Vec::new();
    for l in info.lines() {
        let Some((pre, post)) = l.split_once(" - ") else {
            continue;
        };
        let point = pre.split(' ').nth(4).unwrap_or("");
        let mut p = post.split(' ');
        let (fstype, super_opts) = (p.next().unwrap_or(""), p.nth(1).unwrap_or(""));
        if point == "/sys/fs/cgroup" && fstype == "cgroup2" {
            return Ok(Layout::V2);
        }
        if fstype != "cgroup" {
            continue;
        }
        let controllers: Vec<String> = super_opts
            .split(',')
            .filter(|o| {
                !["rw", "ro"].contains(o)
                    && !o.contains('=')
                    && ![
                        "noprefix",
                        "xattr",
                        "clone_children",
                        "cpuset_v2_mode",
                        "favordynmods",
                    ]
                    .contains(o)
            })
            .map(str::to_string)
            .collect();
        if controllers
            .iter()
            .any(|c| V1_CONTROLLERS.contains(&c.as_str()))
        {
            let dir = controllers.join(",");
            if !v1.iter().any(|(d, _)| *d == dir) {
                v1.push((dir, controllers));
            }
        }
    }
    if v1.is_empty() {
        return Err("the host has neither a cgroup2 /sys/fs/cgroup nor v1 hierarchies".into());
    }
    v1.sort();
    Ok(Layout::V1(v1))
}

/// The directory of `controller` inside the jail (`""` on v2), ending in
/// `/`.
fn dir_of(layout: &Layout, controller: &str) -> Result<String, String> {
    match layout {
        Layout::V2 => Ok("/sys/fs/cgroup/".into()),
        Layout::V1(h) => h
            .iter()
            .find(|(_, cs)| cs.iter().any(|c| c == controller))
            .map(|(d, _)| format!("/sys/fs/cgroup/{d}/"))
            .ok_or_else(|| format!("the host has no v1 {controller} hierarchy")),
    }
}

/// The files that show the limits of `--memory 64M --cpus 0.5 --pids 77`,
/// with the values they must show: (path inside the jail, value).
fn limit_files(layout: &Layout) -> Result<Vec<(String, &'static str)>, String> {
    Ok(match layout {
        Layout::V2 => vec![
            ("/sys/fs/cgroup/memory.max".into(), "67108864"),
            ("/sys/fs/cgroup/cpu.max".into(), "50000 100000"),
            ("/sys/fs/cgroup/pids.max".into(), "77"),
        ],
        Layout::V1(_) => vec![
            (
                format!("{}memory.limit_in_bytes", dir_of(layout, "memory")?),
                "67108864",
            ),
            (
                format!("{}cpu.cfs_quota_us", dir_of(layout, "cpu")?),
                "50000",
            ),
            (
                format!("{}cpu.cfs_period_us", dir_of(layout, "cpu")?),
                "100000",
            ),
            (format!("{}pids.max", dir_of(layout, "pids")?), "77"),
        ],
    })
}

const LIMITS: &[&str] = &["--memory", "64M", "--cpus", "0.5", "--pids", "77"];

/// The mounts at or below `/sys/fs/cgroup` in a mountinfo text: (root,
/// mount point, per-mount options, fstype).
fn cgroup_mounts(info: &str) -> Vec<(String, String, String, String)> {
    info.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let point = *f.get(4)?;
            if point != "/sys/fs/cgroup" && !point.starts_with("/sys/fs/cgroup/") {
                return None;
            }
            Some((
                f.get(3)?.to_string(),
                point.to_string(),
                f.get(5)?.to_string(),
                post.split(' ').next()?.to_string(),
            ))
        })
        .collect()
}

fn has_opts(opts: &str, want: &[&str]) -> bool {
    want.iter().all(|w| opts.split(',').any(|o| o == *w))
}

fn reads_own_limits() -> Result<(), String> {
    let layout = layout()?;
    let root = crate::debian_pool()?;
    let name = "cgv-limits";
    let _j = jail(&root, name);
    let files = limit_files(&layout)?;
    // The jail's command itself (init's view) writes what it reads; exec's
    // view is read below.
    let script: String = files
        .iter()
        .map(|(f, _)| format!("cat {f} >> /tmp/init-view; "))
        .chain(std::iter::once("sleep 1000".to_string()))
        .collect();
    start_sh(&root, name, LIMITS, &script)?;
    let cat_all: String = files.iter().map(|(f, _)| format!("cat {f}; ")).collect();
    let by_exec = sh_ok(&root, name, &cat_all)?;
    let want: Vec<&str> = files.iter().map(|(_, v)| *v).collect();
    let got: Vec<&str> = by_exec.lines().map(str::trim).collect();
    if got != want {
        return Err(format!(
            "{layout:?}: {:?} read {got:?} through exec, not {want:?}",
            files.iter().map(|(f, _)| f).collect::<Vec<_>>()
        ));
    }
    let by_init = crate::runtime::sh(&root, name, "cat /tmp/init-view");
    if by_init.1 != by_exec {
        return Err(format!(
            "the jail's command read {:?} (stderr {:?}), exec read {by_exec:?}",
            by_init.1, by_init.2
        ));
    }
    // The mounts: read-only, nosuid, nodev, noexec; cgroup2 on v2, a tmpfs
    // and one cgroup per hierarchy on v1, each named as the host names it.
    let info = sh_ok(&root, name, "cat /proc/self/mountinfo")?;
    let mounts = cgroup_mounts(&info);
    let want_types: Vec<(String, String)> = match &layout {
        Layout::V2 => vec![("/sys/fs/cgroup".into(), "cgroup2".into())],
        Layout::V1(h) => std::iter::once(("/sys/fs/cgroup".to_string(), "tmpfs".to_string()))
            .chain(
                h.iter()
                    .map(|(d, _)| (format!("/sys/fs/cgroup/{d}"), "cgroup".to_string())),
            )
            .collect(),
    };
    let mut got_types: Vec<(String, String)> = mounts
        .iter()
        .map(|(_, p, _, t)| (p.clone(), t.clone()))
        .collect();
    got_types.sort();
    let mut want_sorted = want_types.clone();
    want_sorted.sort();
    if got_types != want_sorted {
        return Err(format!(
            "mounts at /sys/fs/cgroup inside: {mounts:?}, want {want_types:?}"
        ));
    }
    for (_, point, opts, _) in &mounts {
        if !has_opts(opts, &["ro", "nosuid", "nodev", "noexec"]) {
            return Err(format!(
                "{point} is mounted {opts}, not ro,nosuid,nodev,noexec"
            ));
        }
    }
    // v1: a shared hierarchy's controllers are links to it (`cpu` ->
    // `cpu,cpuacct`), as on the host.
    if let Layout::V1(h) = &layout {
        for (d, cs) in h.iter().filter(|(_, cs)| cs.len() > 1) {
            for c in cs {
                let link = sh_ok(&root, name, &format!("readlink /sys/fs/cgroup/{c}"))?;
                if link.trim() != d {
                    return Err(format!("/sys/fs/cgroup/{c} -> {link:?}, not {d}"));
                }
            }
        }
    }
    Ok(())
}

fn nothing_above() -> Result<(), String> {
    let layout = layout()?;
    let root = crate::debian_pool()?;
    let (a, b) = ("cgv-above-a", "cgv-above-b");
    let (_ja, _jb) = (jail(&root, a), jail(&root, b));
    start_sh(
        &root,
        a,
        LIMITS,
        "cat /proc/self/cgroup > /tmp/init-cgroup; sleep 1000",
    )?;
    // A sibling with other limits, running meanwhile.
    start_sh(&root, b, &["--memory", "96M"], "sleep 1000")?;
    // Every hierarchy's path, the jail's command's and exec's, is the
    // namespace's root.
    for (who, text) in [
        (
            "the jail's command",
            sh_ok(&root, a, "cat /tmp/init-cgroup")?,
        ),
        ("exec", sh_ok(&root, a, "cat /proc/self/cgroup")?),
    ] {
        if text.trim().is_empty() || text.lines().any(|l| !l.ends_with(":/")) {
            return Err(format!("/proc/self/cgroup of {who} in {a}: {text:?}"));
        }
    }
    // Seen from the host, each cgroup mount in the jail is rooted at the
    // jail's own group (the kernel shows a cgroupfs mount's root relative
    // to the reader's cgroup namespace): `/jailer/<jail>-...`, in every
    // hierarchy; inside, that root is `/`.
    let pid = init_pid(&root, a)?;
    let host_view =
        std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).map_err(|e| e.to_string())?;
    let prefix = format!("/jailer/{a}-");
    let cg: Vec<_> = cgroup_mounts(&host_view)
        .into_iter()
        .filter(|(_, _, _, t)| t.starts_with("cgroup"))
        .collect();
    if cg.is_empty()
        || cg
            .iter()
            .any(|(r, _, _, _)| !r.starts_with(&prefix) || r[prefix.len()..].contains('/'))
    {
        return Err(format!(
            "the jail's cgroup mounts, seen from the host: {cg:?}; each must be rooted at {prefix}*"
        ));
    }
    let inside = sh_ok(&root, a, "cat /proc/self/mountinfo")?;
    let roots: Vec<_> = cgroup_mounts(&inside)
        .into_iter()
        .filter(|(r, _, _, t)| t.starts_with("cgroup") && r != "/")
        .collect();
    if !roots.is_empty() {
        return Err(format!("cgroup mounts inside not rooted at /: {roots:?}"));
    }
    // No group below or beside: the jail's group has no child directory,
    // and the sibling's limit is nowhere in the jail's view.
    let dirs = match &layout {
        Layout::V2 => "find /sys/fs/cgroup -mindepth 1 -type d".to_string(),
        Layout::V1(_) => "find /sys/fs/cgroup/*/ -mindepth 1 -type d".to_string(),
    };
    let found = sh_ok(&root, a, &dirs)?;
    if !found.trim().is_empty() {
        return Err(format!("groups inside {a}'s view: {found}"));
    }
    let mem = &limit_files(&layout)?[0].0;
    for (jail_name, want) in [(a, "67108864"), (b, "100663296")] {
        let got = sh_ok(&root, jail_name, &format!("cat {mem}"))?;
        if got.trim() != want {
            return Err(format!("{jail_name} reads {mem} = {got:?}, not {want}"));
        }
    }
    let grep = sh_ok(
        &root,
        a,
        "grep -rl 100663296 /sys/fs/cgroup/ 2>/dev/null; true",
    )?;
    if !grep.trim().is_empty() {
        return Err(format!("{b}'s limit is visible in {a}: {grep}"));
    }
    // The processes listed are the jail's: its init, pid 1 in its pid
    // namespace, among them.
    let procs = sh_ok(
        &root,
        a,
        &format!("cat {}cgroup.procs", dir_of(&layout, "pids")?),
    )?;
    if !procs.lines().any(|p| p.trim() == "1") {
        return Err(format!("cgroup.procs inside {a} lacks its init: {procs:?}"));
    }
    Ok(())
}

fn cannot_write() -> Result<(), String> {
    let layout = layout()?;
    let root = crate::debian_pool()?;
    let name = "cgv-write";
    let _j = jail(&root, name);
    start_sh(&root, name, LIMITS, "sleep 1000")?;
    let mem = limit_files(&layout)?[0].0.clone();
    let parent = Path::new(&mem)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let (eperm, erofs, eacces) = (libc::EPERM, libc::EROFS, libc::EACCES);
    let ms_remount = 32;
    let ms_bind = 4096;
    let mnt_detach = 2;
    // Each call must fail with the errno of the protection that stops it.
    let checks: Vec<(String, &str, i32)> = vec![
        // open(O_WRONLY|O_CREAT|O_TRUNC): the read-only mount, checked first.
        (
            format!("open(F, \">\", \"{mem}\") && print(F \"4096\\n\") && close(F)"),
            "truncate and write the memory limit",
            erofs,
        ),
        // open(O_WRONLY): the file is the host root's, not the jail's.
        (
            format!("sysopen(F, \"{mem}\", 1) && syswrite(F, \"4096\\n\")"),
            "write the memory limit",
            eacces,
        ),
        (
            format!("mkdir(\"{parent}/sub\")"),
            "make a child group",
            erofs,
        ),
        (
            "mkdir(\"/sys/fs/cgroup/x\")".into(),
            "make a directory in /sys/fs/cgroup",
            erofs,
        ),
        (
            format!("syscall(165, 0, z(\"/sys/fs/cgroup\"), 0, {ms_remount}, 0) == 0"),
            "remount /sys/fs/cgroup read-write",
            eperm,
        ),
        (
            format!(
                "syscall(165, 0, z(\"{parent}\"), 0, {}, 0) == 0",
                ms_remount | ms_bind
            ),
            "remount the group's mount read-write",
            eperm,
        ),
        (
            format!("syscall(166, z(\"{parent}\"), 0) == 0"),
            "unmount the group",
            eperm,
        ),
        (
            format!("syscall(166, z(\"/sys/fs/cgroup\"), {mnt_detach}) == 0"),
            "detach /sys/fs/cgroup",
            eperm,
        ),
    ];
    for (call, what, want) in &checks {
        match errno_of(&root, name, call)? {
            Ok(()) => return Err(format!("jail could {what}: `{call}` succeeded")),
            Err(e) if e != *want => {
                return Err(format!(
                    "{what}: `{call}` failed with errno {e}, not {want}: not the protection that should stop it"
                ))
            }
            Err(_) => {}
        }
    }
    // The limit is the one the host set, inside and out.
    let inside = sh_ok(&root, name, &format!("cat {mem}"))?;
    if inside.trim() != "67108864" {
        return Err(format!("{mem} reads {inside:?} after the attempts"));
    }
    let info = sh_ok(&root, name, "cat /proc/self/mountinfo")?;
    let rw: Vec<_> = cgroup_mounts(&info)
        .into_iter()
        .filter(|(_, _, o, _)| !has_opts(o, &["ro"]))
        .collect();
    if !rw.is_empty() {
        return Err(format!(
            "writable mounts at /sys/fs/cgroup after the attempts: {rw:?}"
        ));
    }
    Ok(())
}

/// A rootfs whose `/sys/fs/cgroup` is a symlink (left by a template, or
/// by the jail's root in its tree): the view is mounted on the fresh
/// sysfs's own directory, so the link under it is never followed.
fn symlink_in_rootfs() -> Result<(), String> {
    let layout = layout()?;
    let root = crate::debian_pool()?;
    let name = "cgv-link";
    let _j = jail(&root, name);
    ok(
        &root,
        &[
            "create",
            name,
            "--template",
            "deb",
            "--memory",
            "64M",
            "--",
            "/bin/sleep",
            "1000",
        ],
    )?;
    let rootfs = root.join("jails").join(name).join("rootfs");
    let fs = rootfs.join("sys/fs");
    std::fs::create_dir_all(&fs).map_err(|e| format!("{}: {e}", fs.display()))?;
    let _ = std::fs::remove_dir(fs.join("cgroup"));
    std::os::unix::fs::symlink("/tmp", fs.join("cgroup")).map_err(|e| e.to_string())?;
    ok(&root, &["start", name])?;
    let mem = &limit_files(&layout)?[0].0;
    let got = sh_ok(&root, name, &format!("cat {mem}"))?;
    if got.trim() != "67108864" {
        return Err(format!("{mem} reads {got:?}"));
    }
    let info = sh_ok(&root, name, "cat /proc/self/mountinfo")?;
    if let Some(l) = info.lines().find(|l| l.split(' ').nth(4) == Some("/tmp")) {
        return Err(format!("a mount landed on the symlink's target: {l}"));
    }
    Ok(())
}
