//! A jail's control group: limits, membership, freezing, killing, cleanup.
//!
//! Built on cgroups-rs, which detects the hierarchy by itself: cgroup v1
//! (one directory per controller, as on these development machines) or the
//! unified v2 hierarchy (most production hosts). Each jail's group is
//! `jailer/NAME-ID` under every controller jailer uses.

use crate::name::Name;
use crate::procinfo::MountEntry;
use crate::record::{CgroupRef, JailRecord};
use crate::sys::bpf::{self, BpfError, DeviceKind, DeviceRule};
use crate::sys::mountapi::{self, MountApiError};
use cgroups_rs::{hierarchies, Cgroup, MaxValue, Resources};
use nix::fcntl::OFlag;
use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// v1 controllers a jail gets a group in (those the host has).
const V1_CONTROLLERS: &[&str] = &[
    "cpu", "cpuacct", "memory", "pids", "freezer", "blkio", "devices",
];
/// The only devices a jail may open (or make, had it `cap_mknod` in the
/// host's namespace): the nodes of its minimal `/dev` (`null zero full
/// random urandom tty` bound from the host, `ptmx` and the ptys of its own
/// devpts). Everything else, whatever node a jail finds in its rootfs (a
/// template's `b 7 N`, a snapshot's `/dev/console`), is refused by the
/// kernel with EPERM: v1's `devices` controller (`devices.deny a`, then one
/// `devices.allow` per rule) or, on v2, the BPF device program
/// ([`crate::sys::bpf`]) attached to the group.
pub const ALLOWED_DEVICES: &[DeviceRule] = &[
    chr(1, Some(3)), // null
    chr(1, Some(5)), // zero
    chr(1, Some(7)), // full
    chr(1, Some(8)), // random
    chr(1, Some(9)), // urandom
    chr(5, Some(0)), // tty
    chr(5, Some(2)), // ptmx
    chr(136, None),  // pts/*
];

const fn chr(major: u32, minor: Option<u32>) -> DeviceRule {
    DeviceRule {
        kind: DeviceKind::Char,
        major,
        minor,
        access: bpf::ACCESS_ALL,
    }
}
/// CFS period in microseconds (v1 `cpu.cfs_period_us`, the second number
/// of v2 `cpu.max`): the kernel's default.
pub const CPU_PERIOD_US: u64 = 100_000;
/// The smallest CFS quota the kernel takes, in microseconds: 1 ms per
/// period (`min_cfs_quota_period` in kernel/sched/core.c; a smaller
/// `cpu.cfs_quota_us` or `cpu.max` fails with EINVAL).
pub const MIN_CPU_QUOTA_US: u64 = 1_000;

/// The CFS quota, in microseconds per [`CPU_PERIOD_US`], that `--cpus`
/// becomes. `create` refuses counts whose quota is below
/// [`MIN_CPU_QUOTA_US`] using this same function.
pub fn cpu_quota_us(cpus: f64) -> i64 {
    (cpus * CPU_PERIOD_US as f64).round() as i64
}

/// What went wrong with a jail's cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot create the cgroup of jail {name}")]
    Create {
        name: Name,
        #[source]
        source: cgroups_rs::error::Error,
    },
    #[error("cannot make {} for the cgroup of jail {name}", path.display())]
    Parent {
        name: Name,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set limits on the cgroup of jail {name} (is the controller enabled?)")]
    Limits {
        name: Name,
        #[source]
        source: cgroups_rs::error::Error,
    },
    #[error("cannot open {path} to enter the cgroup of jail {name}")]
    Open {
        name: Name,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot {what} the cgroup of jail {name}")]
    Op {
        name: Name,
        what: &'static str,
        #[source]
        source: cgroups_rs::error::Error,
    },
    #[error("cannot remove the cgroup of jail {name}: processes are still in it")]
    Busy { name: Name },
    #[error("cannot remove the cgroup directory {} of jail {name}", path.display())]
    Remove {
        name: Name,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot limit the devices of jail {name} in {}", path.display())]
    Devices {
        name: Name,
        path: PathBuf,
        #[source]
        source: cgroups_rs::error::Error,
    },
    #[error("cannot open the cgroup directory {} of jail {name} to limit its devices", path.display())]
    DeviceDir {
        name: Name,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot limit the devices of jail {name}")]
    DeviceFilter {
        name: Name,
        #[source]
        source: BpfError,
    },
    #[error("cannot stat {} to find the cgroup hierarchy of jail {name}", path.display())]
    Stat {
        name: Name,
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("cannot show jail {name} its cgroup at /sys/fs/cgroup: {why}")]
    NoView { name: Name, why: String },
    #[error("cannot mount the jail's cgroup view at /sys/fs/cgroup ({what})")]
    Mount {
        what: String,
        #[source]
        source: Box<MountApiError>,
    },
    #[error("cannot make the jail's cgroup view at /sys/fs/cgroup ({what})")]
    ViewDir {
        what: String,
        #[source]
        source: nix::Error,
    },
}

/// Limits from the jail's spec.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
    pub pids: Option<u64>,
    /// 1-10000, v2 scale.
    pub io_weight: Option<u16>,
}

/// A jail's control group.
pub struct JailCgroup {
    name: Name,
    cg: Cgroup,
}

impl std::fmt::Debug for JailCgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JailCgroup")
            .field("name", &self.name)
            .field("v2", &self.cg.v2())
            .finish()
    }
}

/// `NAME-ID12`: the jail's id (random per create) keeps two pools, or a
/// jail re-created under the same name, from ever sharing a group.
fn base(name: &Name, id: &str) -> String {
    let short: String = id.chars().take(12).collect();
    format!("{name}-{short}")
}

/// `jailer/NAME-ID12-INSTANCE`: each start (instance) gets a group of its
/// own, so that one instance's cleanup never touches the next one's.
/// (`jailer/NAME-ID12` for an instance of an older version, `instance`
/// empty.)
fn rel(name: &Name, id: &str, instance: &str) -> String {
    if instance.is_empty() {
        format!("jailer/{}", base(name, id))
    } else {
        format!("jailer/{}-{instance}", base(name, id))
    }
}

/// The directory name (under `jailer/`) of the jail's instance's group.
pub fn dir_name(name: &Name, id: &str, instance: &str) -> String {
    rel(name, id, instance)
        .trim_start_matches("jailer/")
        .to_string()
}

/// Length of an instance id (hex).
pub const INSTANCE_ID_LEN: usize = 8;

/// Whether the group directory `dir_name` (under `jailer/`) belongs to the
/// jail: `NAME-ID12` or `NAME-ID12-` and an instance id, nothing longer
/// (another jail may be named `NAME-ID12`).
fn is_jail_dir(dir_name: &str, base: &str) -> bool {
    match dir_name.strip_prefix(base) {
        Some("") => true,
        Some(rest) => rest.strip_prefix('-').is_some_and(|i| {
            i.len() == INSTANCE_ID_LEN && i.bytes().all(|b| b.is_ascii_hexdigit())
        }),
        None => false,
    }
}

/// Every group directory of the jail (all its instances, in every v1
/// hierarchy or the v2 one) under `root` (`/sys/fs/cgroup`).
pub fn jail_dirs(root: &Path, name: &Name, id: &str) -> Vec<PathBuf> {
    let base = base(name, id);
    // v2: `root/jailer`; v1: `root/<hierarchy>/jailer` (the `cpu` and
    // `cpuacct` symlinks to `cpu,cpuacct` are skipped: no duplicates).
    let mut hierarchies = vec![root.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(root) {
        hierarchies.extend(
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path()),
        );
    }
    let mut out = Vec::new();
    for h in hierarchies {
        let Ok(rd) = std::fs::read_dir(h.join("jailer")) else {
            continue;
        };
        for e in rd.flatten() {
            let n = e.file_name();
            if e.file_type().is_ok_and(|t| t.is_dir())
                && n.to_str().is_some_and(|n| is_jail_dir(n, &base))
            {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Kills everything in the jail's groups but `keep` (the directory name of
/// a live instance's group, which its monitor releases), waits until they
/// are empty and removes them: thawed first on v1 (a frozen task cannot
/// die), `cgroup.kill` on v2. Returns only once they are gone, or says
/// which processes are left.
pub fn sweep(
    root: &Path,
    name: &Name,
    id: &str,
    keep: Option<&str>,
    limit: std::time::Duration,
) -> Result<(), CgroupError> {
    use nix::sys::signal::{kill, Signal};
    let dirs: Vec<PathBuf> = jail_dirs(root, name, id)
        .into_iter()
        .filter(|d| keep.map_or(true, |k| d.file_name().and_then(|n| n.to_str()) != Some(k)))
        .collect();
    if dirs.is_empty() {
        return Ok(());
    }
    let t = std::time::Instant::now();
    loop {
        let mut left = 0;
        for d in &dirs {
            let _ = std::fs::write(d.join("cgroup.kill"), "1");
            for pid in read_procs(d) {
                left += 1;
                let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            }
            // After the signal: it is delivered as the tasks thaw.
            if d.join("freezer.state").exists() {
                let _ = std::fs::write(d.join("freezer.state"), "THAWED");
            }
            let _ = std::fs::write(d.join("cgroup.freeze"), "0");
        }
        if left == 0 {
            break;
        }
        if t.elapsed() > limit {
            return Err(CgroupError::Busy { name: name.clone() });
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    for d in &dirs {
        remove_tree(d).map_err(|source| CgroupError::Remove {
            name: name.clone(),
            path: d.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Removes a group directory and its children, deepest first (ENOENT is
/// success: the monitor may remove its own meanwhile).
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path())?;
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn hierarchy() -> Box<dyn cgroups_rs::Hierarchy> {
    hierarchies::auto()
}

/// Whether the host uses the unified (v2) hierarchy.
pub fn is_v2() -> bool {
    hierarchies::is_cgroup2_unified_mode()
}

/// The jail's group opened for a process to move *itself* in: `tasks` in
/// every v1 hierarchy, `cgroup.procs` on v2. Opened by the monitor (or the
/// CLI) as root before the fork; the child inherits the fds (close-on-exec,
/// so the jail's command never holds them) and calls [`SelfEntry::enter`].
///
/// Why not move the child from outside: writing a pid to `cgroup.procs` or
/// `tasks` takes the kernel's global `cgroup_threadgroup_rwsem` for
/// writing, and its first writer after a quiet spell waits for a full RCU
/// grace period (5-15 ms on the 2-cpu machines we measured, the largest
/// single cost of a start on a v1 host). A thread that writes `0` (itself)
/// to a v1 `tasks` file moves only itself, and the kernel skips that lock
/// (Linux 5.13+, "cgroup: Optimize single thread migration"): on Debian
/// 12's 6.1 kernel, 5 hierarchies in 1.2 ms under qemu TCG against 16 ms
/// for a pid written from outside (benches/v1_self_move.sh). Our children
/// are single-threaded, so the thread is the whole process. Permission is
/// the opener's: v1 checks the file's open-time credentials, so init may
/// write after it became root of its user namespace. On v2 `0` in
/// `cgroup.procs` moves the caller's process, under the lock; jailer only
/// gets there on a kernel without `clone3`'s `CLONE_INTO_CGROUP` (< 5.7).
#[derive(Debug)]
pub struct SelfEntry {
    name: Name,
    /// The files opened, and their paths (for messages).
    files: Vec<(OwnedFd, PathBuf)>,
}

impl SelfEntry {
    /// Moves the calling thread into the jail's group in every hierarchy.
    /// Only write(2): safe in a child cloned from a single-threaded process.
    pub fn enter(&self) -> nix::Result<()> {
        for (f, _) in &self.files {
            nix::unistd::write(f, b"0")?;
        }
        Ok(())
    }

    /// What the jail is to see at `/sys/fs/cgroup`: the hierarchies of the
    /// groups this entry opened, found in the host's mount table `mounts`
    /// by the device of each open file (so a hierarchy reached through a
    /// symlink such as v1's `cpu` -> `cpu,cpuacct` is found too).
    pub fn view(&self, mounts: &[MountEntry]) -> Result<CgroupView, CgroupError> {
        let mut devices = Vec::with_capacity(self.files.len());
        for (f, path) in &self.files {
            let st = nix::sys::stat::fstat(f.as_raw_fd()).map_err(|source| CgroupError::Stat {
                name: self.name.clone(),
                path: path.clone(),
                source,
            })?;
            let dev = format!(
                "{}:{}",
                nix::sys::stat::major(st.st_dev),
                nix::sys::stat::minor(st.st_dev)
            );
            devices.push((dev, path.clone()));
        }
        view_of(&self.name, &devices, mounts)
    }
}

/// v1 controller names as the kernel spells them in a hierarchy's mount
/// options (`legacy_name`); any other option (`rw`, `name=`, `xattr`,
/// `release_agent=`, ...) is not one.
const V1_KNOWN_CONTROLLERS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
    "debug",
];

/// What a jail sees of its own cgroup at `/sys/fs/cgroup`, read-only, as
/// Docker and runc show containers theirs (JVMs and Go runtimes size
/// themselves from it). Mounted by init from inside its cgroup namespace,
/// so the kernel roots every mount at the jail's own group: nothing above
/// it, host or sibling, is reachable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupView {
    /// cgroup v2: one `cgroup2` mount.
    Unified,
    /// cgroup v1: a tmpfs with one `cgroup` mount per hierarchy the jail
    /// is placed in, named as the host names it (its controllers, comma
    /// joined, as the kernel lists them: `memory`, `cpu,cpuacct`), and a
    /// symlink per controller of a shared hierarchy (`cpu` ->
    /// `cpu,cpuacct`).
    V1(Vec<Vec<String>>),
}

/// The view for groups whose open files are on `devices` (`major:minor`,
/// the path opened), from the host's mount table `mounts`.
fn view_of(
    name: &Name,
    devices: &[(String, PathBuf)],
    mounts: &[MountEntry],
) -> Result<CgroupView, CgroupError> {
    if devices.is_empty() {
        return Err(CgroupError::NoView {
            name: name.clone(),
            why: "the jail is in no cgroup hierarchy".into(),
        });
    }
    let mut hierarchies: Vec<Vec<String>> = Vec::new();
    for (dev, path) in devices {
        let Some(m) = mounts
            .iter()
            .find(|m| &m.device == dev && (m.fstype == "cgroup" || m.fstype == "cgroup2"))
        else {
            return Err(CgroupError::NoView {
                name: name.clone(),
                why: format!(
                    "{} is on no cgroup mount of the host's mount table (device {dev})",
                    path.display()
                ),
            });
        };
        if m.fstype == "cgroup2" {
            if devices.len() != 1 {
                return Err(CgroupError::NoView {
                    name: name.clone(),
                    why: format!(
                        "{} is on the v2 hierarchy, but the jail is in v1 hierarchies too",
                        path.display()
                    ),
                });
            }
            return Ok(CgroupView::Unified);
        }
        let controllers: Vec<String> = m
            .super_options
            .split(',')
            .filter(|o| V1_KNOWN_CONTROLLERS.contains(o))
            .map(str::to_string)
            .collect();
        if controllers.is_empty() {
            return Err(CgroupError::NoView {
                name: name.clone(),
                why: format!(
                    "the hierarchy of {} has no controller (options {:?})",
                    path.display(),
                    m.super_options
                ),
            });
        }
        if !hierarchies.contains(&controllers) {
            hierarchies.push(controllers);
        }
    }
    Ok(CgroupView::V1(hierarchies))
}

impl CgroupView {
    /// Mounts the view on `target`, a directory held by fd (init's own
    /// sysfs's `fs/cgroup`: nothing of the jail's tree is walked). Must run
    /// in the jail's cgroup namespace, created while in the jail's group:
    /// the kernel roots each cgroupfs mount made there at that group.
    ///
    /// Why v1 hierarchies are mounted from inside rather than the host's
    /// group directories bound in: the kernel lets root of the user
    /// namespace that owns a cgroup namespace mount an *existing* v1
    /// hierarchy (by its exact set of controllers; it refuses to make a new
    /// one outside the initial cgroup namespace), and then roots it at the
    /// namespace's group itself. The mount's root is the kernel's to
    /// choose, not a host path jailer computed, and v1 and v2 follow the
    /// same steps. (Inside the namespace matters on v2 too: a `cgroup2`
    /// mount made in the initial cgroup namespace applies its options, here
    /// none, to the host's hierarchy, clearing `nsdelegate` and
    /// `memory_recursiveprot`; outside it the kernel leaves them alone.)
    pub fn mount_at(&self, target: BorrowedFd<'_>) -> Result<(), CgroupError> {
        let at = Path::new("/sys/fs/cgroup");
        let err = |what: String| {
            move |source: MountApiError| CgroupError::Mount {
                what,
                source: Box::new(source),
            }
        };
        match self {
            CgroupView::Unified => {
                let m = mountapi::new_mount("cgroup2", &[], &[("source", "cgroup2")], true)
                    .map_err(err("cgroup2".into()))?;
                mountapi::attach_at(m.as_fd(), target, at).map_err(err("cgroup2".into()))
            }
            CgroupView::V1(hierarchies) => {
                // The tmpfs stays writable until its directories and links
                // are made, then turns read-only (the cgroupfs mounts on it
                // already are).
                let tmpfs = mountapi::new_mount(
                    "tmpfs",
                    &[],
                    &[("source", "tmpfs"), ("mode", "755"), ("size", "64k")],
                    false,
                )
                .map_err(err("tmpfs".into()))?;
                mountapi::attach_at(tmpfs.as_fd(), target, at).map_err(err("tmpfs".into()))?;
                let io =
                    |what: String| move |source: nix::Error| CgroupError::ViewDir { what, source };
                for controllers in hierarchies {
                    let dir = controllers.join(",");
                    let flags: Vec<&str> = controllers.iter().map(String::as_str).collect();
                    nix::sys::stat::mkdirat(
                        Some(tmpfs.as_raw_fd()),
                        dir.as_str(),
                        nix::sys::stat::Mode::from_bits_truncate(0o755),
                    )
                    .map_err(io(format!("mkdir {dir}")))?;
                    let on = crate::sys::fd::openat(
                        tmpfs.as_fd(),
                        dir.as_str(),
                        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        nix::sys::stat::Mode::empty(),
                    )
                    .map_err(io(format!("open {dir}")))?;
                    let m = mountapi::new_mount("cgroup", &flags, &[("source", "cgroup")], true)
                        .map_err(err(format!("cgroup {dir}")))?;
                    mountapi::attach_at(m.as_fd(), on.as_fd(), &at.join(&dir))
                        .map_err(err(format!("cgroup {dir}")))?;
                    if controllers.len() > 1 {
                        for c in controllers {
                            nix::unistd::symlinkat(
                                dir.as_str(),
                                Some(tmpfs.as_raw_fd()),
                                c.as_str(),
                            )
                            .map_err(io(format!("symlink {c}")))?;
                        }
                    }
                }
                mountapi::make_read_only(tmpfs.as_fd(), at).map_err(err("tmpfs".into()))
            }
        }
    }
}

impl JailCgroup {
    /// Creates (or reuses) the group of the jail's instance `instance` and
    /// applies `limits`.
    pub fn create(
        rec: &JailRecord,
        instance: &str,
        limits: &Limits,
    ) -> Result<JailCgroup, CgroupError> {
        let name = rec.name();
        let h = hierarchy();
        let v2 = h.v2();
        let controllers: Option<Vec<String>> = if v2 {
            None
        } else {
            Some(V1_CONTROLLERS.iter().map(|s| s.to_string()).collect())
        };
        if v2 {
            // cgroups-rs makes each missing ancestor with a check-then-mkdir,
            // so two first starts at once (after a boot) race for `jailer/`
            // and one fails with EEXIST; made here first, race-free.
            let parent = h.root().join("jailer");
            std::fs::create_dir_all(&parent).map_err(|source| CgroupError::Parent {
                name: name.clone(),
                path: parent.clone(),
                source,
            })?;
        }
        let cg =
            Cgroup::new_with_specified_controllers(h, rel(name, &rec.id, instance), controllers)
                .map_err(|source| CgroupError::Create {
                    name: name.clone(),
                    source,
                })?;
        let mut res = Resources::default();
        if let Some(m) = limits.memory {
            let m = i64::try_from(m).unwrap_or(i64::MAX);
            res.memory.memory_hard_limit = Some(m);
        }
        if let Some(c) = limits.cpus {
            res.cpu.quota = Some(cpu_quota_us(c));
            res.cpu.period = Some(CPU_PERIOD_US);
        }
        if let Some(p) = limits.pids {
            res.pid.maximum_number_of_processes =
                Some(MaxValue::Value(i64::try_from(p).unwrap_or(i64::MAX)));
        }
        let jc = JailCgroup {
            name: name.clone(),
            cg,
        };
        jc.cg.apply(&res).map_err(|source| CgroupError::Limits {
            name: name.clone(),
            source,
        })?;
        // Swap must not extend the memory limit.
        if let Some(m) = limits.memory {
            let (file, value) = if v2 {
                ("memory.swap.max", "0".to_string())
            } else {
                ("memory.memsw.limit_in_bytes", m.to_string())
            };
            if let Some(dir) = jc.dir("memory") {
                let p = dir.join(file);
                if p.exists() {
                    let _ = std::fs::write(p, value);
                }
            }
        }
        if let Some(w) = limits.io_weight {
            jc.set_io_weight(w);
        }
        if let Err(e) = jc.limit_devices() {
            // Never leave a group that would let a jail open any device.
            let _ = jc.cg.delete();
            return Err(e);
        }
        Ok(jc)
    }

    /// Allows the group [`ALLOWED_DEVICES`] and nothing else. Runs before
    /// init exists (on v2 init is created in the group, on v1 it joins the
    /// `devices` group first thing), so nothing of the jail's ever runs
    /// without the list.
    fn limit_devices(&self) -> Result<(), CgroupError> {
        if self.cg.v2() {
            let open_err = |path: PathBuf, source| CgroupError::DeviceDir {
                name: self.name.clone(),
                path,
                source,
            };
            let Some(dir) = self.dir("") else {
                let gone = std::io::Error::from(std::io::ErrorKind::NotFound);
                return Err(open_err(PathBuf::from("(none)"), gone));
            };
            let fd = std::fs::File::open(&dir).map_err(|e| open_err(dir.clone(), e))?;
            return bpf::attach_device_filter(fd.as_fd(), ALLOWED_DEVICES, &dir).map_err(
                |source| CgroupError::DeviceFilter {
                    name: self.name.clone(),
                    source,
                },
            );
        }
        use cgroups_rs::devices::{DevicePermissions, DeviceType, DevicesController};
        let Some(dev) = self.cg.controller_of::<DevicesController>() else {
            // The jail's rootfs and /dev are still `nodev` in its view.
            tracing::warn!(jail = %self.name, "this host has no v1 devices controller; device nodes are refused by nodev mounts only");
            eprintln!(
                "jailer-monitor: {}: no devices cgroup on this host; device nodes are refused by nodev mounts only",
                self.name
            );
            return Ok(());
        };
        let err = |source| CgroupError::Devices {
            name: self.name.clone(),
            path: self.dir("devices").unwrap_or_default(),
            source,
        };
        dev.deny_device(DeviceType::All, -1, -1, &DevicePermissions::all())
            .map_err(err)?;
        for r in ALLOWED_DEVICES {
            let kind = match r.kind {
                DeviceKind::Char => DeviceType::Char,
                DeviceKind::Block => DeviceType::Block,
            };
            let access: Vec<DevicePermissions> = [
                (bpf::ACCESS_READ, DevicePermissions::Read),
                (bpf::ACCESS_WRITE, DevicePermissions::Write),
                (bpf::ACCESS_MKNOD, DevicePermissions::MkNod),
            ]
            .into_iter()
            .filter(|(bit, _)| r.access & bit != 0)
            .map(|(_, p)| p)
            .collect();
            let minor = r.minor.map_or(-1, i64::from);
            dev.allow_device(kind, i64::from(r.major), minor, &access)
                .map_err(err)?;
        }
        Ok(())
    }

    /// Applies an I/O weight where the controller supports one: v2
    /// `io.weight` (1-10000), v1 `blkio.weight` or `blkio.bfq.weight`
    /// (10-1000, the value scaled). Hosts whose I/O scheduler has no weights
    /// have neither file; the jail then runs without one (logged).
    fn set_io_weight(&self, w: u16) {
        let (dir, files, value) = if self.cg.v2() {
            (
                self.dir(""),
                &["io.weight", "io.bfq.weight"][..],
                u32::from(w),
            )
        } else {
            let scaled = (u32::from(w) * 1000 / 10000).clamp(10, 1000);
            (
                self.dir("blkio"),
                &["blkio.weight", "blkio.bfq.weight"][..],
                scaled,
            )
        };
        let Some(dir) = dir else { return };
        for f in files {
            let p = dir.join(f);
            if p.exists() {
                let written = if self.cg.v2() && *f == "io.weight" {
                    std::fs::write(&p, format!("default {value}"))
                } else {
                    std::fs::write(&p, value.to_string())
                };
                if written.is_ok() {
                    return;
                }
            }
        }
        tracing::warn!(jail = %self.name, "no I/O weight support in this host's I/O controller; --io-weight ignored");
        eprintln!(
            "jailer-monitor: {}: no I/O weight support on this host; --io-weight ignored",
            self.name
        );
    }

    /// The group of the jail's running instance (`rec.runtime`), which may
    /// be gone.
    pub fn load(rec: &JailRecord) -> JailCgroup {
        let instance = rec.runtime.as_ref().map_or("", |rt| rt.instance.as_str());
        Self::load_instance(rec, instance)
    }

    /// The group of the jail's instance `instance` (it may be gone).
    pub fn load_instance(rec: &JailRecord, instance: &str) -> JailCgroup {
        let name = rec.name();
        let h = hierarchy();
        // On v2 every controller (and the freezer) lives in the one unified
        // directory: load them all, as `create` does. An empty list would
        // filter every subsystem out, leaving a handle that cannot attach,
        // list, freeze or remove anything.
        let cg = if h.v2() {
            Cgroup::load(h, rel(name, &rec.id, instance))
        } else {
            Cgroup::load_with_specified_controllers(
                h,
                rel(name, &rec.id, instance),
                V1_CONTROLLERS.iter().map(|s| s.to_string()).collect(),
            )
        };
        JailCgroup {
            name: name.clone(),
            cg,
        }
    }

    pub fn exists(&self) -> bool {
        self.cg.exists()
    }

    /// The directory of `controller` (v1), or the unified directory (v2).
    pub fn dir(&self, controller: &str) -> Option<PathBuf> {
        self.cg
            .subsystems()
            .iter()
            .map(|s| s.to_controller().path().to_path_buf())
            .find(|p| {
                self.cg.v2()
                    || p.components().any(|c| {
                        c.as_os_str()
                            .to_str()
                            .is_some_and(|s| s.split(',').any(|x| x == controller))
                    })
            })
    }

    /// On v2, the group's directory, opened for `clone3`'s
    /// `CLONE_INTO_CGROUP`; `None` on v1 or if it cannot be opened.
    pub fn v2_dir_fd(&self) -> Option<OwnedFd> {
        if !self.cg.v2() {
            return None;
        }
        let dir = self
            .cg
            .subsystems()
            .first()?
            .to_controller()
            .path()
            .to_path_buf();
        std::fs::File::open(dir).ok().map(OwnedFd::from)
    }

    /// Where the group lives, for the jail's record.
    pub fn reference(&self) -> CgroupRef {
        let mut paths = BTreeMap::new();
        if self.cg.v2() {
            if let Some(d) = self.dir("") {
                paths.insert("unified".to_string(), d);
            }
        } else {
            for c in V1_CONTROLLERS {
                if let Some(d) = self.dir(c) {
                    paths.insert((*c).to_string(), d);
                }
            }
        }
        CgroupRef {
            version: if self.cg.v2() { 2 } else { 1 },
            paths,
        }
    }

    /// Opens the group for a child to move itself in; see [`SelfEntry`].
    pub fn self_entry(&self) -> Result<SelfEntry, CgroupError> {
        let (dirs, file): (Vec<PathBuf>, &str) = if self.cg.v2() {
            (self.dir("").into_iter().collect(), "cgroup.procs")
        } else {
            let dirs = V1_CONTROLLERS.iter().filter_map(|c| self.dir(c));
            (dirs.collect(), "tasks")
        };
        let open_err = |path: PathBuf, source| CgroupError::Open {
            name: self.name.clone(),
            path,
            source,
        };
        if dirs.is_empty() {
            let gone = std::io::Error::from(std::io::ErrorKind::NotFound);
            return Err(open_err(PathBuf::from(file), gone));
        }
        let mut files = Vec::with_capacity(dirs.len());
        for dir in dirs {
            let path = dir.join(file);
            match std::fs::OpenOptions::new().write(true).open(&path) {
                Ok(f) => files.push((OwnedFd::from(f), path)),
                Err(e) => return Err(open_err(path, e)),
            }
        }
        Ok(SelfEntry {
            name: self.name.clone(),
            files,
        })
    }

    /// The processes in the group (from the pids controller on v1).
    pub fn procs(&self) -> Vec<i32> {
        let Some(dir) = self.dir("pids") else {
            return Vec::new();
        };
        read_procs(&dir)
    }

    fn freezer(&self) -> Option<&cgroups_rs::freezer::FreezerController> {
        self.cg
            .controller_of::<cgroups_rs::freezer::FreezerController>()
    }

    /// Freezes every process of the group.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        let op = |source| CgroupError::Op {
            name: self.name.clone(),
            what: "freeze",
            source,
        };
        match self.freezer() {
            Some(f) => f.freeze().map_err(op),
            None => Ok(()),
        }
    }

    /// Thaws the group.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        let op = |source| CgroupError::Op {
            name: self.name.clone(),
            what: "thaw",
            source,
        };
        match self.freezer() {
            Some(f) => f.thaw().map_err(op),
            None => Ok(()),
        }
    }

    /// Whether the group is frozen.
    pub fn is_frozen(&self) -> bool {
        use cgroups_rs::freezer::FreezerState;
        self.freezer()
            .and_then(|f| f.state().ok())
            .is_some_and(|s| matches!(s, FreezerState::Frozen | FreezerState::Freezing))
    }

    /// Sends `signal` to every process of the group. SIGKILL on v2 uses
    /// `cgroup.kill` where the kernel has it (no pid races). A frozen group
    /// is thawed after signalling, so the signal is delivered.
    pub fn signal_all(&self, signal: nix::sys::signal::Signal) {
        use nix::sys::signal::{kill, Signal};
        if signal == Signal::SIGKILL && self.cg.v2() && self.cg.kill().is_ok() {
            return;
        }
        for pid in self.procs() {
            let _ = kill(nix::unistd::Pid::from_raw(pid), signal);
        }
        if signal == Signal::SIGKILL && self.is_frozen() {
            let _ = self.thaw();
        }
    }

    /// OOM kills recorded in the group.
    pub fn oom_kills(&self) -> u64 {
        let Some(dir) = self.dir("memory") else {
            return 0;
        };
        let file = if self.cg.v2() {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|v| v.trim().parse().ok())
                })
            })
            .unwrap_or(0)
    }

    /// Removes the group in every controller. Fails while processes remain.
    pub fn delete(&self) -> Result<(), CgroupError> {
        if !self.exists() {
            return Ok(());
        }
        if !self.procs().is_empty() {
            return Err(CgroupError::Busy {
                name: self.name.clone(),
            });
        }
        self.cg.delete().map_err(|source| CgroupError::Op {
            name: self.name.clone(),
            what: "remove",
            source,
        })
    }
}

/// The pids in `dir/cgroup.procs`, and in its descendants' on v2.
pub fn read_procs(dir: &Path) -> Vec<i32> {
    let mut out: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(read_procs(&e.path()));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Debian 12 host booted with v1 hierarchies (`cpu,cpuacct` shared,
    /// systemd's named hierarchy and its empty v2 one beside them).
    const V1_MOUNTINFO: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755
27 26 0:25 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
28 26 0:26 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,name=systemd
31 26 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,cpu,cpuacct
32 26 0:30 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
33 26 0:31 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,pids
34 26 0:32 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,freezer,release_agent=/x
";
    const V2_MOUNTINFO: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:8 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    fn devs(list: &[(&str, &str)]) -> Vec<(String, PathBuf)> {
        list.iter()
            .map(|(d, p)| (d.to_string(), PathBuf::from(p)))
            .collect()
    }

    #[test]
    fn the_view_has_each_v1_hierarchy_the_jail_is_in_once_named_by_its_controllers() {
        let name = Name::new("web").expect("name");
        let mounts = crate::procinfo::parse_mountinfo(V1_MOUNTINFO);
        // cpu and cpuacct reach one hierarchy (through the `cpu` symlink).
        let d = devs(&[
            ("0:29", "/sys/fs/cgroup/cpu/jailer/web/tasks"),
            ("0:29", "/sys/fs/cgroup/cpuacct/jailer/web/tasks"),
            ("0:30", "/sys/fs/cgroup/memory/jailer/web/tasks"),
            ("0:31", "/sys/fs/cgroup/pids/jailer/web/tasks"),
            ("0:32", "/sys/fs/cgroup/freezer/jailer/web/tasks"),
        ]);
        let view = view_of(&name, &d, &mounts).expect("view");
        let want: Vec<Vec<String>> = [
            &["cpu", "cpuacct"][..],
            &["memory"],
            &["pids"],
            &["freezer"],
        ]
        .iter()
        .map(|h| h.iter().map(|c| c.to_string()).collect())
        .collect();
        assert_eq!(view, CgroupView::V1(want));
    }

    #[test]
    fn the_view_is_unified_on_a_v2_host() {
        let name = Name::new("web").expect("name");
        let mounts = crate::procinfo::parse_mountinfo(V2_MOUNTINFO);
        let d = devs(&[("0:24", "/sys/fs/cgroup/jailer/web/cgroup.procs")]);
        assert_eq!(
            view_of(&name, &d, &mounts).expect("view"),
            CgroupView::Unified
        );
    }

    #[test]
    fn no_view_for_a_group_on_no_cgroup_mount_or_a_named_hierarchy_or_none() {
        let name = Name::new("web").expect("name");
        let mounts = crate::procinfo::parse_mountinfo(V1_MOUNTINFO);
        for d in [
            // The sysfs: not a cgroup.
            devs(&[("0:23", "/sys/x")]),
            // Unknown device.
            devs(&[("0:99", "/elsewhere/tasks")]),
            // systemd's named hierarchy: no controller to mount it by.
            devs(&[("0:26", "/sys/fs/cgroup/systemd/jailer/web/tasks")]),
            // v2 and v1 at once.
            devs(&[("0:25", "/a"), ("0:30", "/b")]),
            devs(&[]),
        ] {
            let e = view_of(&name, &d, &mounts).expect_err("no view");
            assert!(matches!(e, CgroupError::NoView { .. }), "{d:?}: {e}");
        }
    }

    #[test]
    fn jail_dirs_are_the_jails_instances_and_nothing_longer() {
        let base = "web-0123456789ab";
        assert!(is_jail_dir("web-0123456789ab", base));
        assert!(is_jail_dir("web-0123456789ab-deadbeef", base));
        // Another jail named `web-0123456789ab`, and its instances.
        assert!(!is_jail_dir("web-0123456789ab-ffffffffffff", base));
        assert!(!is_jail_dir("web-0123456789ab-ffffffffffff-deadbeef", base));
        assert!(!is_jail_dir("web-0123456789ab-deadbee", base));
        assert!(!is_jail_dir("web-0123456789ab-deadbeeg", base));
        assert!(!is_jail_dir("web-0123456789", base));
    }

    #[test]
    fn jail_dirs_found_in_every_hierarchy() {
        let root = tempfile::tempdir().expect("tempdir");
        let name = Name::new("web").expect("name");
        let id = "0123456789abcdef";
        for d in [
            "jailer/web-0123456789ab-00000001",
            "memory/jailer/web-0123456789ab-00000001",
            "freezer/jailer/web-0123456789ab",
            "freezer/jailer/web-0123456789ab-ffffffffffff",
            "pids/jailer/other-0123456789ab-00000001",
        ] {
            std::fs::create_dir_all(root.path().join(d)).expect("mkdir");
        }
        let found: Vec<String> = jail_dirs(root.path(), &name, id)
            .iter()
            .map(|p| {
                p.strip_prefix(root.path())
                    .map(|r| r.display().to_string())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(
            found,
            [
                "freezer/jailer/web-0123456789ab",
                "jailer/web-0123456789ab-00000001",
                "memory/jailer/web-0123456789ab-00000001",
            ]
        );
    }
}
