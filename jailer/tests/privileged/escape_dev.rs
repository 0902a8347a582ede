//! Device nodes inside jails open nothing but the minimal `/dev` jailer
//! makes: the jail's view of its rootfs is `nodev` (and explicitly `suid`),
//! its `/dev` tmpfs is `nodev`, and the kernel allows the jail's cgroup the
//! minimal `/dev`'s devices only (v1 `devices` controller, v2 BPF device
//! program), so a node a jail finds (in its template, in a snapshot it takes
//! of its own rootfs under its `/dev` mount) or makes is refused even where a
//! jail could clear `nodev`.
//!
//! Errnos: a `nodev` mount refuses in `may_open` with EACCES, before the
//! device cgroup is asked; the cgroup (v1 list or v2 program) refuses with
//! EPERM. So a plain jail sees EACCES for every node on its rootfs, and a
//! jail that remounted its root `dev` (one with `cap_sys_admin` and no
//! seccomp filter can: the mount is its own) sees EPERM.

use crate::cli::{jailer, ok};
use crate::runtime::{init_pid, inspect, jail, sh_ok, start_sh, wait_until};
use libtest_mimic::Trial;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

pub fn trials() -> Vec<Trial> {
    let t = |name: &'static str, f: fn() -> Result<(), String>| {
        Trial::test(format!("escape_dev::{name}"), move || crate::check(f()))
    };
    vec![
        t(
            "jail_rootfs_view_is_nodev_and_suid_even_on_a_nosuid_pool",
            mount_attrs,
        ),
        t(
            "template_nodes_and_own_snapshot_nodes_open_nothing",
            template_nodes,
        ),
        t(
            "cgroup_refuses_nodes_on_a_root_the_jail_remounted_dev",
            cgroup_refuses,
        ),
        t("mknod_fails_with_or_without_cap_mknod", mknod),
    ]
}

const EPERM: i32 = 1;
const EACCES: i32 = 13;
const ENXIO: i32 = 6;

/// Opens each argument read-only, write-only and read-write; one line per
/// open: `PATH MODE ERRNO` (0: opened).
const PROBE: &str = r#"use Fcntl;
for my $p (@ARGV) {
  for my $m ([O_RDONLY, "r"], [O_WRONLY, "w"], [O_RDWR, "rw"]) {
    if (sysopen(my $f, $p, $m->[0] | O_NOCTTY)) { print "$p $m->[1] 0\n" }
    else { printf "%s %s %d\n", $p, $m->[1], $! + 0 }
  }
}"#;

/// BTRFS_IOC_SNAP_CREATE_V2 of the jail's own `/` into `/tmp/$ARGV[0]`
/// (no btrfs-progs in minbase): prints `0` or the errno.
const SNAPSHOT: &str = r#"use Fcntl;
sysopen(my $dst, "/tmp", O_RDONLY | O_DIRECTORY) or die "/tmp: $!";
sysopen(my $src, "/", O_RDONLY | O_DIRECTORY) or die "/: $!";
# struct btrfs_ioctl_vol_args_v2: fd, transid, flags, 32 bytes, name[4040].
my $args = pack("q Q Q a32 Z4040", fileno($src), 0, 0, "", $ARGV[0]);
print ioctl($dst, 0x50009417, $args) ? "0\n" : ($! + 0) . "\n";"#;

/// Opens a pty pair through `/dev/ptmx`: prints `0` or the errno.
const PTY: &str = r#"use Fcntl;
sysopen(my $m, "/dev/ptmx", O_RDWR | O_NOCTTY) or do { print $! + 0, "\n"; exit };
my $n = pack("i", 0);
ioctl($m, 0x40045431, $n) or do { print $! + 0, "\n"; exit };   # TIOCSPTLCK 0
ioctl($m, 0x80045430, $n) or do { print $! + 0, "\n"; exit };   # TIOCGPTN
my $pts = "/dev/pts/" . unpack("i", $n);
print sysopen(my $s, $pts, O_RDWR | O_NOCTTY) ? "0\n" : ($! + 0) . "\n";"#;

/// `jailer exec NAME -- perl -e PROBE PATHS..`: (path, mode) -> errno.
fn probe(root: &Path, name: &str, paths: &[&str]) -> Result<Vec<(String, String, i32)>, String> {
    let mut args = vec!["exec", name, "--", "perl", "-e", PROBE];
    args.extend_from_slice(paths);
    parse_probe(&ok(root, &args)?)
}

fn parse_probe(out: &str) -> Result<Vec<(String, String, i32)>, String> {
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f[..] {
                [p, m, e] => e
                    .parse()
                    .map(|e| (p.to_string(), m.to_string(), e))
                    .map_err(|_| format!("probe line {l:?}")),
                _ => Err(format!("probe line {l:?}")),
            }
        })
        .collect()
}

/// Every open of every path in `got` ended with `errno` (0: opened).
fn all_errno(got: &[(String, String, i32)], errno: i32, what: &str) -> Result<(), String> {
    let bad: Vec<_> = got.iter().filter(|(_, _, e)| *e != errno).collect();
    if got.is_empty() || !bad.is_empty() {
        return Err(format!(
            "{what}: every open should fail with errno {errno}; got {bad:?} (all: {got:?})"
        ));
    }
    Ok(())
}

fn perl(root: &Path, name: &str, script: &str, args: &[&str]) -> Result<String, String> {
    let mut a = vec!["exec", name, "--", "perl", "-e", script];
    a.extend_from_slice(args);
    Ok(ok(root, &a)?.trim().to_string())
}

/// `(mount point, per-mount options)` of each line of a mountinfo.
fn mount_opts(mountinfo: &str) -> Vec<(String, Vec<String>)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let opts = f.get(5)?.split(',').map(str::to_string).collect();
            Some((f.get(4)?.to_string(), opts))
        })
        .collect()
}

fn opts_of<'a>(mounts: &'a [(String, Vec<String>)], mp: &str) -> Result<&'a [String], String> {
    mounts
        .iter()
        .rev()
        .find(|(m, _)| m == mp)
        .map(|(_, o)| o.as_slice())
        .ok_or_else(|| format!("no mount at {mp} in {mounts:?}"))
}

fn has(opts: &[String], o: &str) -> bool {
    opts.iter().any(|x| x == o)
}

/// A host mount made by a test, unmounted by exact path on drop (before
/// the jail guard declared ahead of it removes the jail).
struct HostMount(PathBuf);

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// (i) The jail's view of its rootfs is `nodev`, and `suid` even where the
/// host mounts the pool `nosuid,nodev`; its `/dev` tmpfs is `nodev`, the
/// host nodes bound on it and devpts are not.
fn mount_attrs() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let name = "ed-attrs";
    let _j = jail(&root, name);
    ok(
        &root,
        &["create", name, "--template", "deb", "--", "sleep", "1000"],
    )?;
    // The host's side: this jail's rootfs under a nosuid,nodev bind mount
    // of its own (the pool's other jails are left alone).
    let rootfs = root.join("jails").join(name).join("rootfs");
    run(Command::new("mount")
        .arg("--bind")
        .arg(&rootfs)
        .arg(&rootfs))?;
    let _m = HostMount(rootfs.clone());
    run(Command::new("mount")
        .args(["-o", "remount,bind,nosuid,nodev"])
        .arg(&rootfs))?;
    let host = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let host = mount_opts(&host);
    let host_opts = opts_of(&host, rootfs.to_str().unwrap_or_default())?;
    if !has(host_opts, "nosuid") || !has(host_opts, "nodev") {
        return Err(format!(
            "the host bind mount is not nosuid,nodev: {host_opts:?}"
        ));
    }
    ok(&root, &["start", name])?;
    let inside = mount_opts(&sh_ok(&root, name, "cat /proc/self/mountinfo")?);
    let slash = opts_of(&inside, "/")?;
    if !has(slash, "nodev") || has(slash, "nosuid") || !has(slash, "idmapped") {
        return Err(format!(
            "the jail's / should be idmapped, nodev and suid in its view: {slash:?}"
        ));
    }
    let dev = opts_of(&inside, "/dev")?;
    if !has(dev, "nodev") {
        return Err(format!("the jail's /dev tmpfs is not nodev: {dev:?}"));
    }
    for mp in ["/dev/null", "/dev/urandom", "/dev/pts"] {
        let o = opts_of(&inside, mp)?;
        if has(o, "nodev") {
            return Err(format!("{mp} must keep opening its device: {o:?}"));
        }
    }
    ok(&root, &["stop", name, "--timeout", "0"])?;
    Ok(())
}

static DEVS: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The debian pool with template `devs`: `deb` plus device nodes made on
/// the host (`jailer template import` keeps nodes): `/nodes/{loop, mem,
/// kmsg, console, null}` (`loop` is the loop device under the scratch
/// btrfs that holds every pool and jail of this run) and `/dev/kmsg` under
/// where the jail's `/dev` is mounted.
fn devs_pool() -> Result<PathBuf, String> {
    DEVS.get_or_init(|| {
        let root = crate::debian_pool()?;
        let loopdev = scratch_device()?;
        let dir = crate::scratch().fresh_dir("ed-devs-src");
        let src = dir.join("rootfs");
        run(Command::new("btrfs")
            .args(["subvolume", "snapshot"])
            .arg(root.join("templates/deb/rootfs"))
            .arg(&src))?;
        let made = (|| {
            std::fs::create_dir(src.join("nodes")).map_err(|e| e.to_string())?;
            let (maj, min) = loopdev;
            let nodes = [
                ("nodes/loop", "b", maj, min),
                ("nodes/mem", "c", 1, 1),
                ("nodes/kmsg", "c", 1, 11),
                ("nodes/console", "c", 5, 1),
                ("nodes/null", "c", 1, 3),
                ("dev/kmsg", "c", 1, 11),
            ];
            for (p, kind, maj, min) in nodes {
                run(Command::new("mknod")
                    .args(["-m", "0666"])
                    .arg(src.join(p))
                    .args([kind, &maj.to_string(), &min.to_string()]))?;
            }
            ok(
                &root,
                &[
                    "template",
                    "import",
                    "devs",
                    src.to_str().unwrap_or_default(),
                ],
            )
            .map(drop)
        })();
        let _ = Command::new("btrfs")
            .args(["subvolume", "delete"])
            .arg(&src)
            .output();
        made.map(|()| root)
    })
    .clone()
}

/// Major and minor of the block device the scratch btrfs is mounted from.
fn scratch_device() -> Result<(u64, u64), String> {
    let mnt = crate::scratch().mnt();
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let source = info
        .lines()
        .find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            (pre.split(' ').nth(4)? == mnt.to_str()?)
                .then(|| post.split(' ').nth(1).map(str::to_string))?
        })
        .ok_or_else(|| format!("no mount of {} in mountinfo", mnt.display()))?;
    let m = std::fs::metadata(&source).map_err(|e| format!("{source}: {e}"))?;
    let rdev = m.rdev();
    Ok((libc::major(rdev) as u64, libc::minor(rdev) as u64))
}

/// What the jail's minimal /dev offers keeps working: null, zero, full,
/// random, urandom read and write; tty is allowed (ENXIO: the jail has no
/// controlling terminal); a pty pair opens through ptmx.
fn minimal_dev_works(root: &Path, name: &str) -> Result<(), String> {
    let got = probe(
        root,
        name,
        &[
            "/dev/null",
            "/dev/zero",
            "/dev/full",
            "/dev/random",
            "/dev/urandom",
        ],
    )?;
    all_errno(&got, 0, "the minimal /dev")?;
    all_errno(&probe(root, name, &["/dev/tty"])?, ENXIO, "/dev/tty")?;
    let pty = perl(root, name, PTY, &[])?;
    if pty != "0" {
        return Err(format!("a pty pair through /dev/ptmx: errno {pty}"));
    }
    Ok(())
}

/// Takes a snapshot of the jail's own rootfs at /tmp/SNAP; checks it holds
/// the debootstrap root's /dev/console (5:1), hidden under the jail's /dev.
fn own_snapshot(root: &Path, name: &str, snap: &str) -> Result<(), String> {
    let r = perl(root, name, SNAPSHOT, &[snap])?;
    if r != "0" {
        return Err(format!("snapshot of the jail's own / failed: errno {r}"));
    }
    let st = sh_ok(
        root,
        name,
        &format!("stat -c '%F %t:%T' /tmp/{snap}/dev/console /tmp/{snap}/dev/kmsg"),
    )?;
    if st.lines().collect::<Vec<_>>()
        != ["character special file 5:1", "character special file 1:b"]
    {
        return Err(format!("the snapshot's /dev lacks the nodes: {st}"));
    }
    Ok(())
}

/// (iii) In a plain jail every node of its rootfs opens nothing: the
/// template's loop device (the scratch pool's own, read-write), /dev/mem,
/// /dev/kmsg (write-only too), the console, even a node for /dev/null; so
/// do /dev/console and /dev/kmsg under its /dev mount, exposed by a btrfs
/// snapshot the jail takes of itself. EACCES: the rootfs view is nodev.
fn template_nodes() -> Result<(), String> {
    let root = devs_pool()?;
    let name = "ed-nodes";
    let _j = jail(&root, name);
    ok(
        &root,
        // No disk limit: a limited jail may not snapshot itself at all
        // (escape_disk); without one it can, and the snapshot's nodes must
        // still open nothing.
        &[
            "create",
            name,
            "--template",
            "devs",
            "--disk",
            "none",
            "--",
            "sleep",
            "1000",
        ],
    )?;
    ok(&root, &["start", name])?;
    let inside = mount_opts(&sh_ok(&root, name, "cat /proc/self/mountinfo")?);
    let slash = opts_of(&inside, "/")?;
    if !has(slash, "nodev") || has(slash, "nosuid") {
        return Err(format!("the jail's / should be nodev and suid: {slash:?}"));
    }
    let nodes = [
        "/nodes/loop",
        "/nodes/mem",
        "/nodes/kmsg",
        "/nodes/console",
        "/nodes/null",
    ];
    all_errno(&probe(&root, name, &nodes)?, EACCES, "template nodes")?;
    own_snapshot(&root, name, "snap")?;
    let hidden = ["/tmp/snap/dev/console", "/tmp/snap/dev/kmsg"];
    all_errno(
        &probe(&root, name, &hidden)?,
        EACCES,
        "nodes under /dev, through the jail's own snapshot",
    )?;
    minimal_dev_works(&root, name)?;
    ok(&root, &["stop", name, "--timeout", "0"])?;
    Ok(())
}

/// (ii) The kernel's allow-list alone: a jail with `cap_sys_admin` and no
/// seccomp filter can remount its own root `dev` (jailer does not lock the
/// mount's flags), and the nodes then still open nothing: EPERM, from the
/// devices cgroup (v1) or the BPF device program (v2). Checked for init's
/// own command (from the console log) and for an exec'd process. The
/// template's /dev/null node, the one allowed device among them, opens.
fn cgroup_refuses() -> Result<(), String> {
    let root = devs_pool()?;
    let name = "ed-cgroup";
    let _j = jail(&root, name);
    let env = format!("PROBE={PROBE}");
    ok(
        &root,
        &[
            "create",
            name,
            "--template",
            "devs",
            "--cap-add",
            "sys_admin",
            "--seccomp",
            "unconfined",
            "--env",
            &env,
            "--",
            "/bin/sh",
            "-c",
            "mount -o remount,bind,dev / && echo remounted; \
             perl -e \"$PROBE\" /nodes/loop /nodes/kmsg; exec sleep 1000",
        ],
    )?;
    ok(&root, &["start", name])?;
    let log_path = root.join("jails").join(name).join("console.log");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_until(Duration::from_secs(120), || {
        log().contains("/nodes/kmsg rw ")
    });
    let log = log();
    if !log.contains("remounted") {
        return Err(format!("the jail could not remount its root dev: {log}"));
    }
    let init_lines: String = log
        .lines()
        .filter(|l| l.starts_with("/nodes/"))
        .map(|l| format!("{l}\n"))
        .collect();
    all_errno(&parse_probe(&init_lines)?, EPERM, "init's command")?;
    let inside = mount_opts(&sh_ok(&root, name, "cat /proc/self/mountinfo")?);
    let slash = opts_of(&inside, "/")?;
    if has(slash, "nodev") {
        return Err(format!("the remount did not clear nodev: {slash:?}"));
    }
    let nodes = ["/nodes/loop", "/nodes/mem", "/nodes/kmsg", "/nodes/console"];
    all_errno(
        &probe(&root, name, &nodes)?,
        EPERM,
        "template nodes on a dev mount",
    )?;
    all_errno(
        &probe(&root, name, &["/nodes/null"])?,
        0,
        "the template's node for an allowed device",
    )?;
    own_snapshot(&root, name, "snap")?;
    all_errno(
        &probe(
            &root,
            name,
            &["/tmp/snap/dev/console", "/tmp/snap/dev/kmsg"],
        )?,
        EPERM,
        "nodes under /dev, through the jail's own snapshot, on a dev mount",
    )?;
    minimal_dev_works(&root, name)?;
    if !Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        v1_devices_group(&root, name)?;
    }
    ok(&root, &["stop", name, "--timeout", "0"])?;
    Ok(())
}

/// On v1: init is in the jail's `devices` group, whose list is exactly the
/// allow-list.
fn v1_devices_group(root: &Path, name: &str) -> Result<(), String> {
    let rec = inspect(root, name)?;
    let dir = rec["runtime"]["cgroup"]["paths"]["devices"]
        .as_str()
        .ok_or_else(|| format!("no devices group recorded: {}", rec["runtime"]["cgroup"]))?
        .to_string();
    let list = std::fs::read_to_string(Path::new(&dir).join("devices.list"))
        .map_err(|e| format!("{dir}/devices.list: {e}"))?;
    let want = [
        "c 1:3 rwm",
        "c 1:5 rwm",
        "c 1:7 rwm",
        "c 1:8 rwm",
        "c 1:9 rwm",
        "c 5:0 rwm",
        "c 5:2 rwm",
        "c 136:* rwm",
    ];
    let mut got: Vec<&str> = list.lines().collect();
    got.sort_unstable();
    let mut want = want.to_vec();
    want.sort_unstable();
    if got != want {
        return Err(format!("devices.list of {dir}: {got:?}, want {want:?}"));
    }
    let pid = init_pid(root, name)?;
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let prefix = format!("/jailer/{name}-");
    let joined = cg.lines().any(|l| {
        let mut f = l.splitn(3, ':');
        let (_, c, p) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        c.split(',').any(|x| x == "devices") && p.contains(&prefix)
    });
    if !joined {
        return Err(format!("init is not in the jail's devices group: {cg}"));
    }
    Ok(())
}

/// mknod of a device fails in a jail whether or not it holds `cap_mknod`
/// (the kernel wants it in the host's user namespace), with EPERM; a fifo
/// is made, so mknod itself is not filtered.
fn mknod() -> Result<(), String> {
    let root = crate::debian_pool()?;
    for (name, extra) in [
        ("ed-mknod", &[][..]),
        ("ed-mknod-cap", &["--cap-add", "mknod"][..]),
    ] {
        let _j = jail(&root, name);
        start_sh(&root, name, extra, "exec sleep 1000")?;
        let capeff = sh_ok(&root, name, "grep CapEff /proc/self/status")?;
        let mask = capeff
            .split_whitespace()
            .nth(1)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .ok_or_else(|| format!("CapEff: {capeff}"))?;
        let has_mknod = mask & (1 << 27) != 0;
        if has_mknod == extra.is_empty() {
            return Err(format!(
                "{name}: cap_mknod in CapEff is {has_mknod}: {capeff}"
            ));
        }
        for node in ["c 1 3", "c 1 11", "b 7 0"] {
            let out = jailer(
                &root,
                &[
                    "exec",
                    name,
                    "--",
                    "/bin/sh",
                    "-c",
                    &format!("mknod /tmp/n {node}"),
                ],
            );
            let err = String::from_utf8_lossy(&out.stderr);
            if out.status.success() || !err.contains("Operation not permitted") {
                return Err(format!(
                    "{name}: mknod {node} should fail with EPERM: {} {err}",
                    out.status
                ));
            }
        }
        sh_ok(&root, name, "mknod /tmp/fifo p && test -p /tmp/fifo")?;
        ok(&root, &["stop", name, "--timeout", "0"])?;
    }
    Ok(())
}
