//! The jail's init: cloned by the monitor into new user, mount, pid, uts, ipc
//! and net namespaces, it builds its own world and execs the jail's command.
//!
//! Everything that needs memory is prepared in [`Plan`] before the clone; the
//! child then runs `setup`, one step per line, and reports the first step
//! that fails through a close-on-exec pipe.

use crate::cgroup::{CgroupView, SelfEntry};
use crate::record::JailRecord;
use crate::seccomp;
use crate::sys::fork::{self, ForkError, Forked, ProcSelf};
use crate::sys::process;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::unistd::{Gid, Pid, Uid};
use std::ffi::CString;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// Host device nodes bind-mounted into the jail's `/dev`.
///
/// `tty` (char 5:0) names no terminal: opening it opens the opener's own
/// controlling terminal, or fails with ENXIO. No jail process has a host
/// terminal as that: the monitor (and so init) and `jailer exec`'s helper
/// and command each `setsid` before anything of the jail runs, and `exec
/// -t` gives the command a pty from the jail's own devpts. So the jail's
/// `/dev/tty` reaches the jail's pty or nothing (test
/// `escape_exec::jail_dev_tty_is_never_a_host_terminal`); programs that
/// ask for a terminal there (sudo, less, ssh) keep working.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];
/// Kernel interfaces under `/proc` and `/sys` that a jail has no use for
/// and that leak host state (memory, keys, timers, scheduler and hardware
/// details): masked as runc masks them, files with `/dev/null`, directories
/// with an empty read-only tmpfs. Skipped where the kernel has no such entry.
const MASKED: &[&str] = &[
    "proc/kcore",
    "proc/keys",
    "proc/timer_list",
    "proc/sched_debug",
    "proc/latency_stats",
    "proc/scsi",
    "proc/acpi",
    "sys/firmware",
];
/// Kernel interfaces under `/proc` the jail may read but never write.
const READ_ONLY: &[&str] = &[
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];
/// Where a maintenance instance (a package install, see
/// [`super::maintenance`]) finds the host's staging directory: attached
/// read-only by init after `pivot_root`, so the mount point is made and
/// resolved inside the jail's own tree, where a symlink can point nowhere
/// but into the jail.
pub const INSTALL_DIR: &str = "/run/jailer-install";
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything the child needs, prepared before the clone.
pub struct Plan {
    rootfs: PathBuf,
    hostname: String,
    argv: Vec<CString>,
    env: Vec<CString>,
    path: String,
    caps: caps::CapsHashSet,
    filters: Vec<seccompiler::BpfProgram>,
    /// `jailer exec -u`: the user (name or number, `:GROUP` optional) to
    /// run as, resolved inside the jail by [`resolve_user`].
    user: Option<String>,
    /// `jailer exec -w`: the directory the command starts in (else `/`).
    workdir: Option<CString>,
    /// How many ids the jail's user namespace maps (ids at or above are
    /// not the jail's).
    id_count: u32,
    /// A maintenance instance's staging directory: a detached read-only
    /// tree, attached at [`INSTALL_DIR`].
    install: Option<OwnedFd>,
    /// Whether the spec or `exec -e` set `HOME` (else a `--user`'s home
    /// from the jail's passwd replaces the default `/root`).
    home_given: bool,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("rootfs", &self.rootfs)
            .field("hostname", &self.hostname)
            .field("argv", &self.argv)
            .field("caps", &self.caps)
            .finish_non_exhaustive()
    }
}

impl Plan {
    /// The plan for `rec`'s init, or for `command` run in the jail by
    /// `jailer exec`.
    pub fn new(
        rec: &JailRecord,
        rootfs: &Path,
        command: Option<&[String]>,
    ) -> Result<Plan, String> {
        Plan::build(rec, rootfs, command, &[])
    }

    /// The plan for `jailer exec`'s `command` with its `-e K=V` (over the
    /// jail's env), `-u USER[:GROUP]` and `-w DIR`.
    pub fn for_exec(
        rec: &JailRecord,
        rootfs: &Path,
        command: &[String],
        env: &[String],
        user: Option<&str>,
        workdir: Option<&str>,
    ) -> Result<Plan, String> {
        let extra = env
            .iter()
            .map(|e| crate::spec::parse_env(e).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut plan = Plan::build(rec, rootfs, Some(command), &extra)?;
        // `exec` runs as root of the jail unless told otherwise, whatever
        // the jail's command runs as; it starts in / unless given -w.
        plan.user = user.map(str::to_string);
        plan.workdir = None;
        if let Some(w) = workdir {
            if !w.starts_with('/') {
                return Err(format!(
                    "working directory {w:?} is not absolute: give a path from the jail's /"
                ));
            }
            plan.workdir = Some(CString::new(w).map_err(|_| format!("{w:?} contains a NUL byte"))?);
        }
        Ok(plan)
    }

    fn build(
        rec: &JailRecord,
        rootfs: &Path,
        command: Option<&[String]>,
        extra_env: &[(String, String)],
    ) -> Result<Plan, String> {
        let spec = &rec.spec;
        let cstr = |s: &str| CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"));
        let argv = command
            .unwrap_or(&spec.command)
            .iter()
            .map(|a| cstr(a))
            .collect::<Result<Vec<_>, _>>()?;
        let mut env = vec![
            ("HOME".to_string(), "/root".to_string()),
            ("HOSTNAME".to_string(), spec.hostname.clone()),
            ("PATH".to_string(), DEFAULT_PATH.to_string()),
            ("TERM".to_string(), "xterm".to_string()),
            ("container".to_string(), "jailer".to_string()),
        ];
        let home_given = spec.env.iter().chain(extra_env).any(|(k, _)| k == "HOME");
        for (k, v) in spec.env.iter().chain(extra_env) {
            env.retain(|(ek, _)| ek != k);
            env.push((k.clone(), v.clone()));
        }
        let path = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| DEFAULT_PATH.to_string());
        let env = env
            .iter()
            .map(|(k, v)| cstr(&format!("{k}={v}")))
            .collect::<Result<Vec<_>, _>>()?;
        let caps = spec
            .capabilities
            .iter()
            .map(|c| {
                c.to_ascii_uppercase()
                    .parse::<caps::Capability>()
                    .map_err(|_| format!("unknown capability {c}"))
            })
            .collect::<Result<_, _>>()?;
        if let Some(c) = spec
            .capabilities
            .iter()
            .find(|c| crate::spec::NEVER_GRANTED.contains(&c.as_str()))
        {
            return Err(format!(
                "its record grants {c}, which no jail is given any more (a file capability it wrote would be valid on the host); recreate the jail"
            ));
        }
        let mut filters = seccomp::build(&spec.seccomp).map_err(|e| crate::error_chain(&e))?;
        // A jail with a disk limit makes no subvolumes, which would escape it.
        if spec.disk.is_some() && !spec.seccomp.unconfined {
            filters.push(seccomp::no_subvolumes().map_err(|e| crate::error_chain(&e))?);
        }
        if argv.is_empty() {
            return Err("no command to run".into());
        }
        Ok(Plan {
            rootfs: rootfs.to_path_buf(),
            hostname: spec.hostname.clone(),
            argv,
            env,
            path,
            caps,
            filters,
            user: spec.user.clone(),
            workdir: spec.workdir.as_deref().map(cstr).transpose()?,
            id_count: rec.ids.count,
            install: None,
            home_given,
        })
    }
}

/// Clones the init. The child blocks until [`send_go`]. `console` (the
/// write end of the monitor's console pipe) becomes its stdout and stderr.
///
/// With `cgroup` (the jail's cgroup v2 directory) the child is created in
/// that group (`clone3` with `CLONE_INTO_CGROUP`) and the second value is
/// true; without it, or on a kernel before 5.7, it starts in the monitor's
/// group and moves itself in through `entry`, first thing. `proc`: the
/// host's procfs, where the fork checks that the monitor has one thread (it
/// has: a checked fork of the single-threaded CLI, and it starts none).
pub fn spawn(
    plan: &Plan,
    proc: &Path,
    sock: OwnedFd,
    err_w: OwnedFd,
    console: BorrowedFd<'_>,
    cgroup: Option<BorrowedFd<'_>>,
    entry: &SelfEntry,
) -> Result<(Pid, bool), ForkError> {
    let flags = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNET;
    let console_fd = console.as_raw_fd();
    let (sock_fd, err_fd) = (sock.as_fd(), err_w.as_fd());
    // What the jail sees at /sys/fs/cgroup: its groups' hierarchies, found
    // in the host's mount table here (init mounts them; a failure is its
    // step's error, so start says why).
    let view = crate::procinfo::read_mountinfo(&proc.join("self/mountinfo"))
        .map_err(|e| crate::error_chain(&e))
        .and_then(|mounts| entry.view(&mounts).map_err(|e| crate::error_chain(&e)));
    let view = &view;
    // Runs in the child, on memory prepared before the fork (the plan, the
    // descriptors above), and ends it: the child never returns into the
    // monitor's frames.
    let child = move |in_cgroup: bool| -> isize {
        let entry = (!in_cgroup).then_some(entry);
        match setup(plan, sock_fd, console_fd, entry, view) {
            Ok(never) => match never {},
            Err(msg) => {
                // The child's copy of the pipe's write end, open until exit.
                let _ = crate::sys::fd::write_all(err_fd, msg.as_bytes());
                127
            }
        }
    };
    let into = match cgroup {
        Some(cg) => ProcSelf::open(proc).and_then(|me| fork::fork_into_cgroup(me, flags, cg)),
        None => Ok(None),
    };
    let result = match into {
        Ok(Some(Forked::Child)) => {
            let code = child(true);
            // Without the monitor's destructors in this copy of it.
            process::exit_now(code as i32)
        }
        Ok(Some(Forked::Parent(pid))) => Ok((pid, true)),
        Err(e) => Err(e),
        // No cgroup, or no clone3 with CLONE_INTO_CGROUP: clone; the child
        // moves itself.
        Ok(None) => {
            let mut stack = vec![0u8; 1 << 20];
            let cb = Box::new(move || child(false));
            ProcSelf::open(proc)
                .and_then(|me| fork::clone(me, flags, &mut stack, cb))
                .map(|pid| (pid, false))
        }
    };
    drop(sock);
    drop(err_w);
    result
}

/// The largest go message: `g` and the network's files (a resolver and a
/// hosts file of a few lines each).
const GO_MAX: usize = 16 << 10;

/// Tells the child to go on (its ids are mapped), handing it the idmapped
/// rootfs tree and the network's files (`/etc/resolv.conf`, `/etc/hosts`;
/// made once the leases are known), which it writes from inside the root
/// after `pivot_root`. One datagram: `g`, then per file its path, NUL, its
/// content, NUL.
pub fn send_go(
    sock: &OwnedFd,
    tree: BorrowedFd<'_>,
    files: &[(&'static str, String)],
) -> nix::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let mut msg = b"g".to_vec();
    for (path, content) in files {
        for part in [path.as_bytes(), content.as_bytes()] {
            if part.contains(&0) {
                return Err(nix::Error::EINVAL);
            }
            msg.extend_from_slice(part);
            msg.push(0);
        }
    }
    if msg.len() >= GO_MAX {
        return Err(nix::Error::EMSGSIZE);
    }
    let fds = [tree.as_raw_fd()];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(&msg)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )?;
    Ok(())
}

/// The network's files, as [`send_go`] sent them.
type NetFiles = Vec<(String, String)>;

fn recv_go(sock: BorrowedFd<'_>) -> Result<(OwnedFd, NetFiles), String> {
    let mut buf = vec![0u8; GO_MAX];
    let (n, fds) = process::recv_with_fds(sock, &mut buf)
        .map_err(|e| format!("waiting for the monitor: {e}"))?;
    let tree = fds
        .into_iter()
        .next()
        .ok_or_else(|| "the monitor sent no rootfs".to_string())?;
    let body = buf
        .get(..n)
        .and_then(|b| b.strip_prefix(b"g"))
        .ok_or_else(|| "the monitor's word to go on is malformed".to_string())?;
    let mut parts = body.split(|b| *b == 0);
    let mut files = Vec::new();
    while let (Some(path), Some(content)) = (parts.next(), parts.next()) {
        files.push((
            String::from_utf8_lossy(path).into_owned(),
            String::from_utf8_lossy(content).into_owned(),
        ));
    }
    Ok((tree, files))
}

fn step<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

/// A directory inside the new root that must be a real directory (a jail
/// could have replaced it with a symlink pointing anywhere).
fn jail_dir(root: &Path, rel: &str) -> Result<PathBuf, String> {
    let p = root.join(rel);
    match std::fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => Ok(p),
        Ok(_) => Err(format!("/{rel} in the jail is not a directory")),
        Err(_) => {
            step(&format!("mkdir /{rel}"), std::fs::create_dir(&p))?;
            Ok(p)
        }
    }
}

fn bind_file(src: &str, dst: &Path) -> Result<(), String> {
    step(
        &format!("create {}", dst.display()),
        std::fs::File::create(dst),
    )?;
    step(
        &format!("bind {src}"),
        mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND, None::<&str>),
    )
}

fn symlink(target: &str, link: &Path) -> Result<(), String> {
    step(
        &format!("symlink {}", link.display()),
        std::os::unix::fs::symlink(target, link),
    )
}

/// The jail's setup, in order. Runs in the cloned child; returns only on
/// error. `entry`: the group to move into, unless created in it. `view`:
/// what to mount at `/sys/fs/cgroup`, or why there is nothing to.
fn setup(
    plan: &Plan,
    sock: BorrowedFd<'_>,
    console: RawFd,
    entry: Option<&SelfEntry>,
    view: &Result<CgroupView, String>,
) -> Result<std::convert::Infallible, String> {
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    // 0. Into the jail's cgroup, before anything else is charged; then wait
    // for the monitor to map our ids.
    if let Some(entry) = entry {
        step("enter the jail's cgroup", entry.enter())?;
    }
    let (tree, net_files) = recv_go(sock)?;
    // Hold the rootfs by fd while we may still walk its path: once we are
    // the jail's root, a 0700 directory above the pool is closed to us.
    let target = step(
        "open the rootfs",
        crate::sys::fd::open(
            &plan.rootfs,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ),
    )?;
    // 1. Become root of the new user namespace (host: the jail's id base).
    become_root()?;
    // 2. Private propagation: nothing we mount leaks back to the host.
    step(
        "make mounts private",
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        ),
    )?;
    // 3. The rootfs, idmapped: files owned by 0 on disk are root's here.
    // From now on every path is relative to it (our cwd).
    step(
        "attach the rootfs",
        crate::sys::mountapi::attach_at(tree.as_fd(), target.as_fd(), &plan.rootfs)
            .map_err(|e| crate::error_chain(&e)),
    )?;
    step("enter the rootfs", nix::unistd::fchdir(tree.as_raw_fd()))?;
    drop(tree);
    drop(target);
    let root = Path::new(".");
    // 4. /proc for our pid namespace, /sys read-only.
    let proc_dir = jail_dir(root, "proc")?;
    step(
        "mount /proc",
        mount(
            Some("proc"),
            &proc_dir,
            Some("proc"),
            nosuid_nodev_noexec,
            None::<&str>,
        ),
    )?;
    let sys_dir = jail_dir(root, "sys")?;
    step(
        "mount /sys",
        mount(
            Some("sysfs"),
            &sys_dir,
            Some("sysfs"),
            nosuid_nodev_noexec | MsFlags::MS_RDONLY,
            None::<&str>,
        ),
    )?;
    // The fresh sysfs's own (empty) fs/cgroup, held for step 9.
    let cgroup_dir = step("open /sys/fs/cgroup", sysfs_dir(&sys_dir.join("fs/cgroup")))?;
    // 5. A minimal /dev: a nodev tmpfs; the host's nodes bound on it are
    // mounts of their own (the host's devtmpfs), and devpts is the one
    // mount here that must open devices. The jail's cgroup allows no
    // other device (cgroup::ALLOWED_DEVICES).
    let dev = jail_dir(root, "dev")?;
    step(
        "mount /dev",
        mount(
            Some("tmpfs"),
            &dev,
            Some("tmpfs"),
            nosuid_nodev_noexec,
            Some("mode=755,size=65536k"),
        ),
    )?;
    for d in DEVICES {
        bind_file(&format!("/dev/{d}"), &dev.join(d))?;
    }
    let pts = dev.join("pts");
    step("mkdir /dev/pts", std::fs::create_dir(&pts))?;
    step(
        "mount /dev/pts",
        mount(
            Some("devpts"),
            &pts,
            Some("devpts"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
        ),
    )?;
    symlink("pts/ptmx", &dev.join("ptmx"))?;
    let shm = dev.join("shm");
    step("mkdir /dev/shm", std::fs::create_dir(&shm))?;
    step(
        "mount /dev/shm",
        mount(
            Some("shm"),
            &shm,
            Some("tmpfs"),
            nosuid_nodev_noexec,
            Some("mode=1777,size=65536k"),
        ),
    )?;
    let mq = dev.join("mqueue");
    step("mkdir /dev/mqueue", std::fs::create_dir(&mq))?;
    step(
        "mount /dev/mqueue",
        mount(
            Some("mqueue"),
            &mq,
            Some("mqueue"),
            nosuid_nodev_noexec,
            None::<&str>,
        ),
    )?;
    symlink("/proc/self/fd", &dev.join("fd"))?;
    for (i, n) in ["stdin", "stdout", "stderr"].iter().enumerate() {
        symlink(&format!("/proc/self/fd/{i}"), &dev.join(n))?;
    }
    // 5b. Mask and write-protect the kernel interfaces of MASKED, READ_ONLY.
    mask_kernel_interfaces(root)?;
    // 6. Hostname and loopback.
    step("set the hostname", nix::unistd::sethostname(&plan.hostname))?;
    step("bring up lo", crate::sys::net::loopback_up())?;
    // 7. pivot_root into the rootfs (our cwd); detach the old root.
    step("pivot_root", nix::unistd::pivot_root(".", "."))?;
    step("detach the old root", umount2(".", MntFlags::MNT_DETACH))?;
    step("chdir /", nix::unistd::chdir("/"))?;
    // 7b. The network's files, from inside the jail's root (never a path
    // seen from the host; a symlink the jail left there is replaced).
    step(
        "write the network files",
        crate::net::write_jail_files(&net_files),
    )?;
    // 7c. A maintenance instance: the staging directory, read-only.
    if let Some(tree) = &plan.install {
        attach_install(tree.as_fd())?;
    }
    // 8. stdio: nothing in; out, one pipe for stdout and stderr (kept in
    // the order written), which the monitor copies into the console log:
    // the jail never holds the host's file.
    let null = step("open /dev/null", std::fs::File::open("/dev/null"))?;
    step("stdin", nix::unistd::dup2(null.as_raw_fd(), 0))?;
    step("stdout", nix::unistd::dup2(console, 1))?;
    step("stderr", nix::unistd::dup2(console, 2))?;
    drop(null);
    // 9. A cgroup namespace rooted at the jail's group (we are in it), and
    // that group at /sys/fs/cgroup, read-only (mounted from inside the
    // namespace: the kernel roots it there).
    step(
        "unshare the cgroup namespace",
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP),
    )?;
    step(
        "mount /sys/fs/cgroup",
        view.as_ref().map_err(String::clone).and_then(|v| {
            v.mount_at(cgroup_dir.as_fd())
                .map_err(|e| crate::error_chain(&e))
        }),
    )?;
    drop(cgroup_dir);
    // 10. Privileges drop here: the user (`--user`, from the jail's own
    // /etc/passwd, read through its root now), capabilities,
    // no_new_privs, seccomp; then the working directory, as that user.
    let creds = plan
        .user
        .as_deref()
        .map(|u| resolve_user(u, plan.id_count))
        .transpose()?;
    restrict(&plan.caps, &plan.filters, creds.as_ref())?;
    if let Some(w) = &plan.workdir {
        step(
            &format!("chdir {}", w.to_string_lossy()),
            nix::unistd::chdir(w.as_c_str()),
        )?;
    }
    // 11. Die with the monitor. Set last: every credential change above
    // clears the parent-death signal.
    step(
        "set the parent-death signal",
        process::set_parent_death_signal(nix::sys::signal::Signal::SIGKILL),
    )?;
    // 12. exec.
    Err(plan.exec_as(creds.as_ref()))
}

/// Attaches the staging tree at [`INSTALL_DIR`], after `pivot_root`: the
/// directory is made (if missing) and opened through the jail's own root,
/// without following a last symlink.
fn attach_install(tree: BorrowedFd<'_>) -> Result<(), String> {
    use nix::fcntl::OFlag;
    step(
        &format!("mkdir {INSTALL_DIR}"),
        std::fs::create_dir_all(INSTALL_DIR),
    )?;
    let dir = step(
        &format!("open {INSTALL_DIR}"),
        crate::sys::fd::open(
            INSTALL_DIR,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ),
    )?;
    step(
        &format!("attach the packages at {INSTALL_DIR}"),
        crate::sys::mountapi::attach_at(tree, dir.as_fd(), Path::new(INSTALL_DIR))
            .map_err(|e| crate::error_chain(&e)),
    )
}

/// A directory of a sysfs mounted just before (never a path the jail's
/// tree controls): opened without following a final symlink, and refused
/// unless it is on sysfs.
fn sysfs_dir(path: &Path) -> Result<OwnedFd, String> {
    use nix::fcntl::OFlag;
    let fd = crate::sys::fd::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| e.desc().to_string())?;
    let fs = nix::sys::statfs::fstatfs(&fd).map_err(|e| e.desc().to_string())?;
    if fs.filesystem_type() != nix::sys::statfs::SYSFS_MAGIC {
        return Err("not on the jail's sysfs".into());
    }
    Ok(fd)
}

/// Masks [`MASKED`] and makes [`READ_ONLY`] read-only, below the jail's own
/// fresh `/proc` and `/sys` (never paths the jail's tree controls: these
/// are inside the kernel's own filesystems, mounted just before).
fn mask_kernel_interfaces(root: &Path) -> Result<(), String> {
    let ro = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY;
    for rel in MASKED {
        let p = root.join(rel);
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let r = if m.is_dir() {
            mount(
                Some("tmpfs"),
                &p,
                Some("tmpfs"),
                ro,
                Some("size=0,mode=555"),
            )
        } else {
            mount(
                Some("/dev/null"),
                &p,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        step(&format!("mask /{rel}"), r)?;
    }
    for rel in READ_ONLY {
        let p = root.join(rel);
        if std::fs::symlink_metadata(&p).is_err() {
            continue;
        }
        step(
            &format!("bind /{rel}"),
            mount(
                Some(&p),
                &p,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            ),
        )?;
        step(
            &format!("make /{rel} read-only"),
            mount(
                None::<&str>,
                &p,
                None::<&str>,
                ro | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
                None::<&str>,
            ),
        )?;
    }
    Ok(())
}

/// Becomes root (uid and gid 0, no supplementary groups) of the user
/// namespace the caller is in: init after its clone, `exec`'s helper after
/// it joined the jail's namespaces.
pub fn become_root() -> Result<(), String> {
    step(
        "setgid 0",
        nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)),
    )?;
    step("setgroups", nix::unistd::setgroups(&[]))?;
    step(
        "setuid 0",
        nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)),
    )
}

impl Plan {
    /// Execs the command (searching the plan's PATH); returns the error.
    /// The command starts with default signal actions and none blocked,
    /// whatever jailer's processes had.
    pub fn exec(&self) -> String {
        self.exec_as(None)
    }

    /// [`Plan::exec`] as `user` (the ids already switched to): `HOME` is
    /// the user's home from the jail's passwd, unless the spec or `-e` set
    /// it.
    pub fn exec_as(&self, user: Option<&Creds>) -> String {
        if let Err(e) = process::reset_signals() {
            return crate::error_chain(&e);
        }
        std::env::set_var("PATH", &self.path);
        let home = user
            .and_then(|c| c.home.as_deref())
            .filter(|_| !self.home_given)
            .and_then(|h| CString::new(format!("HOME={h}")).ok());
        let env: Vec<CString> = match home {
            Some(h) => self
                .env
                .iter()
                .filter(|e| !e.as_bytes().starts_with(b"HOME="))
                .cloned()
                .chain(std::iter::once(h))
                .collect(),
            None => self.env.clone(),
        };
        let e = nix::unistd::execvpe(&self.argv[0], &self.argv, &env).err();
        format!(
            "exec {}: {}",
            self.argv[0].to_string_lossy(),
            e.map(|e| e.desc()).unwrap_or("failed")
        )
    }

    pub fn caps(&self) -> &caps::CapsHashSet {
        &self.caps
    }

    pub fn filters(&self) -> &[seccompiler::BpfProgram] {
        &self.filters
    }

    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub fn workdir(&self) -> Option<&CString> {
        self.workdir.as_ref()
    }

    pub fn id_count(&self) -> u32 {
        self.id_count
    }

    /// Makes this a maintenance instance's plan: `tree` (a detached,
    /// read-only tree of the host's staging directory) is attached at
    /// [`INSTALL_DIR`].
    pub fn set_install(&mut self, tree: OwnedFd) {
        self.install = Some(tree);
    }
}

/// The ids `jailer exec -u` switches to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// The user's home directory in the jail's passwd (a known user's).
    pub home: Option<String>,
}

/// Reads one of the jail's account files (`/etc/passwd`, `/etc/group`)
/// through the caller's root, which must be the jail's (after setns into
/// its mount namespace): a symlink there resolves inside the jail. Only a
/// regular file is read (a FIFO would block), at most 4 MiB of it.
fn read_account_file(path: &str) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(format!("cannot read the jail's {path}: {e}")),
    };
    let m = step(&format!("stat the jail's {path}"), f.metadata())?;
    if !m.is_file() {
        return Err(format!("the jail's {path} is not a regular file"));
    }
    let mut buf = Vec::new();
    step(
        &format!("read the jail's {path}"),
        f.take(4 << 20).read_to_end(&mut buf),
    )?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Resolves `jailer exec -u USER[:GROUP]` (names or numbers) from the
/// jail's `/etc/passwd` and `/etc/group`, read through the caller's root
/// (see [`read_account_file`]). A known user gets its primary group and
/// every group of `/etc/group` that lists it; a number not in the jail's
/// passwd gets group 0 and no others (as podman does). Ids must be below
/// `count`, the jail's mapped range.
pub fn resolve_user(spec: &str, count: u32) -> Result<Creds, String> {
    let passwd = read_account_file("/etc/passwd")?;
    let group = read_account_file("/etc/group")?;
    parse_user(spec, &passwd, &group, count)
}

fn parse_user(spec: &str, passwd: &str, group: &str, count: u32) -> Result<Creds, String> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || grp.is_some_and(str::is_empty) {
        return Err(format!(
            "invalid user {spec:?}: use USER or USER:GROUP (names or numbers)"
        ));
    }
    let rows = |text: &str| -> Vec<Vec<String>> {
        text.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| l.split(':').map(str::to_string).collect())
            .collect()
    };
    let pw = rows(passwd);
    let gr = rows(group);
    let num = |s: &str| s.parse::<u32>().ok();
    let by_name = pw.iter().find(|r| r.len() >= 4 && r[0] == user);
    let entry = by_name.or_else(|| {
        num(user).and_then(|u| pw.iter().find(|r| r.len() >= 4 && num(&r[2]) == Some(u)))
    });
    // Field 6, when the user is in the passwd and it names a directory.
    let home = entry
        .and_then(|r| r.get(5))
        .filter(|h| h.starts_with('/'))
        .cloned();
    let (uid, mut gid, name) = match (entry, num(user)) {
        (Some(r), _) => {
            let uid = num(&r[2]).ok_or_else(|| {
                format!(
                    "the jail's /etc/passwd gives user {user:?} an invalid uid {:?}",
                    r[2]
                )
            })?;
            let gid = num(&r[3]).ok_or_else(|| {
                format!(
                    "the jail's /etc/passwd gives user {user:?} an invalid gid {:?}",
                    r[3]
                )
            })?;
            (uid, gid, Some(r[0].clone()))
        }
        (None, Some(u)) => (u, 0, None),
        (None, None) => {
            return Err(format!(
                "no user {user:?} in the jail's /etc/passwd: give a user it has, or a number"
            ))
        }
    };
    if let Some(g) = grp {
        gid = match gr.iter().find(|r| r.len() >= 3 && r[0] == g) {
            Some(r) => num(&r[2]).ok_or_else(|| {
                format!(
                    "the jail's /etc/group gives group {g:?} an invalid gid {:?}",
                    r[2]
                )
            })?,
            None => num(g).ok_or_else(|| {
                format!("no group {g:?} in the jail's /etc/group: give a group it has, or a number")
            })?,
        };
    }
    let mut groups = vec![gid];
    if let Some(n) = &name {
        for r in &gr {
            if r.len() >= 4 && r[3].split(',').any(|m| m == n) {
                if let Some(g) = num(&r[2]) {
                    if !groups.contains(&g) {
                        groups.push(g);
                    }
                }
            }
        }
    }
    for id in std::iter::once(uid).chain(groups.iter().copied()) {
        if id >= count {
            return Err(format!(
                "user {spec:?} needs id {id}, outside the jail's {count} mapped ids"
            ));
        }
    }
    Ok(Creds {
        uid,
        gid,
        groups,
        home,
    })
}

/// Cuts the capability sets to `keep` (bounding, permitted, effective;
/// inheritable and ambient emptied), sets no_new_privs and installs the
/// seccomp filters. Shared by init and `jailer exec`.
///
/// With `user` (`jailer exec -u`), the ids switch to it after the bounding
/// set is cut (which needs CAP_SETPCAP) and before the effective and
/// permitted sets are set: a user other than root then gets no capability
/// at all (the kernel clears them at the switch; they are set empty here),
/// and with no_new_privs no setuid binary gives root back.
pub fn restrict(
    keep: &caps::CapsHashSet,
    filters: &[seccompiler::BpfProgram],
    user: Option<&Creds>,
) -> Result<(), String> {
    use caps::CapSet;
    for c in caps::all() {
        if !keep.contains(&c) {
            step(
                "drop a bounding capability",
                caps::drop(None, CapSet::Bounding, c),
            )?;
        }
    }
    step(
        "clear ambient capabilities",
        caps::clear(None, CapSet::Ambient),
    )?;
    step(
        "clear inheritable capabilities",
        caps::clear(None, CapSet::Inheritable),
    )?;
    let none = caps::CapsHashSet::new();
    let keep = match user {
        Some(c) => {
            let groups: Vec<Gid> = c.groups.iter().map(|g| Gid::from_raw(*g)).collect();
            step("setgroups", nix::unistd::setgroups(&groups))?;
            let g = Gid::from_raw(c.gid);
            step(
                &format!("setgid {}", c.gid),
                nix::unistd::setresgid(g, g, g),
            )?;
            let u = Uid::from_raw(c.uid);
            step(
                &format!("setuid {}", c.uid),
                nix::unistd::setresuid(u, u, u),
            )?;
            if c.uid == 0 {
                keep
            } else {
                &none
            }
        }
        None => keep,
    };
    step(
        "set effective capabilities",
        caps::set(None, CapSet::Effective, keep),
    )?;
    step(
        "set permitted capabilities",
        caps::set(None, CapSet::Permitted, keep),
    )?;
    step("set no_new_privs", process::set_no_new_privs())?;
    step("install the seccomp filter", seccomp::install(filters))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
                          echod:x:999:999::/var/lib/echod:/usr/sbin/nologin\n\
                          odd:x:998:998::relative:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nechod:x:999:\nstaff:x:50:echod\n";

    #[test]
    fn a_known_user_gets_its_home_groups_and_ids() {
        let c = parse_user("echod", PASSWD, GROUP, 65536).expect("known");
        assert_eq!((c.uid, c.gid), (999, 999));
        assert_eq!(c.groups, vec![999, 50]);
        assert_eq!(c.home.as_deref(), Some("/var/lib/echod"));
    }

    #[test]
    fn a_bare_number_or_a_relative_home_gets_no_home() {
        let c = parse_user("4242", PASSWD, GROUP, 65536).expect("a number");
        assert_eq!((c.uid, c.gid, c.home), (4242, 0, None));
        let c = parse_user("odd", PASSWD, GROUP, 65536).expect("known");
        assert_eq!(c.home, None);
    }
}
