//! `jailer exec`, `jailer ps`: joining a running jail, listing its processes.

use super::{init::Plan, read, reconcile, RuntimeError};
use crate::cgroup::JailCgroup;
use crate::exit_status;
use crate::name::Name;
use crate::pool::Pool;
use crate::procinfo::Proc;
use crate::record::{self, JailRecord, State};
use crate::sys::fork::{self, ForkError, Forked, ProcSelf};
use crate::sys::{process, pty};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::Pid;
use serde::Serialize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::rc::Rc;

/// Namespaces joined by `exec`, user last (joining it drops the host
/// privileges the others need).
const NAMESPACES: &[(&str, CloneFlags)] = &[
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("mnt", CloneFlags::CLONE_NEWNS),
    ("user", CloneFlags::CLONE_NEWUSER),
];

fn running_record(
    pool: &Pool,
    name: &Name,
    verb: &'static str,
) -> Result<JailRecord, RuntimeError> {
    let _lock = super::lock(pool, name)?;
    let mut rec = read(pool, name)?;
    reconcile(pool, &mut rec)?;
    match rec.state {
        State::Running => Ok(rec),
        s => Err(RuntimeError::Illegal {
            name: name.clone(),
            state: s,
            verb,
            hint: match s {
                State::Frozen => "; thaw it first",
                State::Restarting => " until its restart policy has started it again",
                _ => "; start it first",
            },
        }),
    }
}

/// Whether `exec` gives the command a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tty {
    /// A pty when the CLI's stdin and stdout are both terminals (an
    /// interactive shell), pipes otherwise (`< file`, `| cmd`, `> file`).
    #[default]
    Auto,
    /// Always a pty (`-t`).
    Always,
    /// Always pipes (`-T`).
    Never,
}

/// How `jailer exec` attaches the command.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub tty: Tty,
    /// `-u USER[:GROUP]`: names or numbers, resolved in the jail's
    /// /etc/passwd and /etc/group; a user other than root gets no
    /// capabilities.
    pub user: Option<String>,
    /// `-w DIR`: the directory (absolute, in the jail) to start in.
    pub workdir: Option<String>,
    /// `-e K=V`: over the jail's env, for this command.
    pub env: Vec<String>,
    /// Relay the CLI's stdin when it is a terminal and no pty is used
    /// (`-i`). Stdin that is not a terminal is always relayed.
    pub interactive: bool,
}

/// What went wrong attaching `jailer exec`'s command.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// `-u` or `-w` names what the jail does not have; the message comes
    /// from the jail's side and is escaped when printed.
    #[error("{}", crate::display::escape(message))]
    Refused { message: String },
    #[error("cannot make the {what} for the command")]
    Plumbing {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    #[error(transparent)]
    Pty(#[from] pty::PtyError),
    #[error("cannot relay the command's stdio ({what})")]
    Relay {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
}

/// Signals the CLI takes through a signalfd while the command runs:
/// SIGCHLD (the helper exited), SIGWINCH (resize the jail's pty), and the
/// ones it forwards to the command.
const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// `jailer exec NAME -- CMD..`: runs `command` inside the running jail, in
/// all its namespaces and its cgroup, with the jail's capabilities, no_new_privs
/// and seccomp filter. Returns the command's exit status (128 + signal when
/// killed; 126 when it could not be started, 127 when it does not exist).
///
/// The command never gets a descriptor of the CLI: its stdio are pipes, or
/// the slave of a pty allocated from the jail's own devpts, relayed by this
/// process; it runs in a session of its own, so it has no host terminal
/// and cannot reach the operator's (no TIOCSTI, no tcsetpgrp).
pub fn exec(
    pool: &Pool,
    name: &Name,
    command: &[String],
    opts: ExecOptions,
) -> Result<i32, RuntimeError> {
    let exec_err = |source: ExecError| RuntimeError::Exec {
        name: name.clone(),
        source,
    };
    // From here every descriptor opened is above 2.
    process::ensure_stdio_open().map_err(|e| exec_err(e.into()))?;
    // A failure to enter the jail while it is being stopped shows as
    // whatever the kernel says of a dying pid namespace or a removed
    // cgroup (ENOMEM, ENODEV); said as what it is, once init is seen gone
    // (within half a second: its exit can lag the failure a little).
    let stopped_meanwhile = |init: &record::ProcRef| {
        let t = std::time::Instant::now();
        loop {
            if !record::is_alive(Path::new(super::PROC), init) {
                return Some(RuntimeError::Illegal {
                    name: name.clone(),
                    state: State::Stopped,
                    verb: "exec in",
                    hint: "; it stopped while the command was being started",
                });
            }
            if t.elapsed() > std::time::Duration::from_millis(500) {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    };
    let rec = running_record(pool, name, "exec in")?;
    let Some(rt) = rec.runtime.clone() else {
        return Err(RuntimeError::Illegal {
            name: name.clone(),
            state: State::Stopped,
            verb: "exec in",
            hint: "; start it first",
        });
    };
    let plan = Plan::for_exec(
        &rec,
        &pool.jail_rootfs(name),
        command,
        &opts.env,
        opts.user.as_deref(),
        opts.workdir.as_deref(),
    )
    .map_err(|message| RuntimeError::StartFailed {
        name: name.clone(),
        message,
    })?;
    let mut fds = Vec::new();
    for (ns, flag) in NAMESPACES {
        let f = match std::fs::File::open(format!("/proc/{}/ns/{ns}", rt.init.pid)) {
            Ok(f) => f,
            // Init died (and was reaped) since the record was read: the
            // jail stopped, whatever the open says (ENOENT, ESRCH).
            Err(source) => {
                return Err(stopped_meanwhile(&rt.init).unwrap_or(RuntimeError::Sys {
                    name: name.clone(),
                    what: "cannot open the jail's namespaces",
                    source,
                }))
            }
        };
        fds.push((f, *flag));
    }
    // The fds are bound to the namespaces now; make sure they were init's.
    if !record::is_alive(Path::new(super::PROC), &rt.init) {
        return Err(RuntimeError::Illegal {
            name: name.clone(),
            state: State::Stopped,
            verb: "exec in",
            hint: "; it stopped meanwhile",
        });
    }
    let wiring = Wiring::new(&opts).map_err(exec_err)?;
    let (sock, helper_sock) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|source| {
        exec_err(ExecError::Plumbing {
            what: "socket to the helper",
            source,
        })
    })?;
    // Block what the signalfd reads before the fork, so that none is lost;
    // the helper restores the old mask first thing.
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(*s);
    }
    mask.add(Signal::SIGCHLD);
    mask.add(Signal::SIGWINCH);
    let mask_guard = MaskGuard::block(&mask).map_err(exec_err)?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|source| {
            exec_err(ExecError::Plumbing {
                what: "signalfd",
                source,
            })
        })?;
    let cg = JailCgroup::load(&rec);
    // On v2 the child is created in the jail's group (no move); elsewhere,
    // or before Linux 5.7, it is forked and moves itself in.
    let cg_dir = cg.v2_dir_fd();
    let fork_err = |e: ForkError| match e {
        ForkError::Fork(errno) => RuntimeError::Sys {
            name: name.clone(),
            what: "cannot fork into the jail (at its pids limit?)",
            source: errno.into(),
        },
        other => RuntimeError::Sys {
            name: name.clone(),
            what: "cannot fork the exec helper",
            source: other.into(),
        },
    };
    // Each fork checks there that this process has one thread (the CLI
    // starts none), as spawn_monitor's does.
    let me = || ProcSelf::open(Path::new(super::PROC));
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let forked = match &cg_dir {
        Some(dir) => {
            me().and_then(|me| fork::fork_into_cgroup(me, CloneFlags::empty(), dir.as_fd()))
        }
        None => Ok(None),
    }
    .and_then(|into| match into {
        Some(f) => Ok((f, true)),
        None => me().and_then(fork::fork).map(|f| (f, false)),
    });
    let (fork, in_cgroup) = match forked {
        Ok(f) => f,
        Err(e) => return Err(stopped_meanwhile(&rt.init).unwrap_or_else(|| fork_err(e))),
    };
    match fork {
        Forked::Child => {
            let args = Helper {
                cg: &cg,
                in_cgroup,
                plan: &plan,
                stdio: wiring.child_stdio(),
                sock: helper_sock.as_fd(),
                mask: &mask_guard.old,
                pty: wiring.pty.then_some(wiring.size),
                cli: nix::unistd::getppid(),
            };
            std::process::exit(helper(args, fds))
        }
        Forked::Parent(child) => {
            drop(fds);
            drop(helper_sock);
            drop(cg_dir);
            // The jail's ends are the helper's now.
            let Wiring {
                pty,
                relay_stdin,
                cli,
                child: jail_ends,
                ..
            } = wiring;
            drop(jail_ends);
            let ready = match wait_ready(&sock, &sigfd, child) {
                Ok(Ready::Refused(message)) => {
                    wait_code(child);
                    return Err(exec_err(ExecError::Refused { message }));
                }
                Ok(Ready::Failed(msg)) => {
                    let code = wait_code(child);
                    if let Some(e) = stopped_meanwhile(&rt.init) {
                        return Err(e);
                    }
                    eprintln!(
                        "jailer: error: exec in jail {name}: {}",
                        crate::display::escape(&msg)
                    );
                    return Ok(code);
                }
                Ok(Ready::Gone(code)) => return Ok(code),
                Ok(Ready::Started { pidfd, master }) => (pidfd, master),
                Err(e) => {
                    let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                    wait_code(child);
                    return Err(exec_err(e));
                }
            };
            drop(sock);
            let (pidfd, master) = ready;
            let ends = match (pty, master) {
                (true, Some(m)) => Ends::Pty(m),
                (true, None) => {
                    let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                    wait_code(child);
                    return Err(exec_err(ExecError::Relay {
                        what: "the helper sent no pty master",
                        source: nix::errno::Errno::EPROTO,
                    }));
                }
                (false, _) => Ends::Pipes(cli),
            };
            let r = relay(ends, relay_stdin, &sigfd, child, pidfd.as_ref());
            drop(mask_guard);
            r.map_err(exec_err)
        }
    }
}

/// Blocks signals until dropped, then restores the mask it found.
struct MaskGuard {
    old: SigSet,
}

impl MaskGuard {
    fn block(set: &SigSet) -> Result<MaskGuard, ExecError> {
        let mut old = SigSet::empty();
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(set), Some(&mut old)).map_err(|source| {
            ExecError::Plumbing {
                what: "signal mask",
                source,
            }
        })?;
        Ok(MaskGuard { old })
    }
}

impl Drop for MaskGuard {
    fn drop(&mut self) {
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.old), None);
    }
}

/// The command's stdio, decided and made before the fork.
struct Wiring {
    /// A pty from the jail's devpts (else pipes).
    pty: bool,
    /// Copy the CLI's stdin to the command.
    relay_stdin: bool,
    /// The operator's window size, set on the pty before the command runs.
    size: Option<pty::Winsize>,
    /// The helper's stdio: the jail's ends of the pipes, or /dev/null
    /// (with a pty, the command gets the slave instead).
    child: [OwnedFd; 3],
    /// The CLI's ends: stdin's write end (`None` when not relayed),
    /// stdout's and stderr's read ends.
    cli: [Option<OwnedFd>; 3],
}

impl Wiring {
    fn new(opts: &ExecOptions) -> Result<Wiring, ExecError> {
        let stdin_tty = nix::unistd::isatty(0).unwrap_or(false);
        let stdout_tty = nix::unistd::isatty(1).unwrap_or(false);
        let pty = match opts.tty {
            Tty::Always => true,
            Tty::Never => false,
            Tty::Auto => stdin_tty && stdout_tty,
        };
        // A pty always relays stdin (the operator's keys, or `-t < file`);
        // pipes relay stdin that is no terminal (`< file`, `echo x |`),
        // and a terminal only with -i.
        let relay_stdin = pty || !stdin_tty || opts.interactive;
        let size = if pty {
            pty::window_size(std::io::stdin().as_fd())
                .or_else(|| pty::window_size(std::io::stdout().as_fd()))
        } else {
            None
        };
        let pipe = |what| {
            nix::unistd::pipe2(OFlag::O_CLOEXEC)
                .map_err(|source| ExecError::Plumbing { what, source })
        };
        if pty {
            let io = |e: std::io::Error| ExecError::Plumbing {
                what: "/dev/null",
                source: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            };
            // Close-on-exec, as std opens everything.
            let null = OwnedFd::from(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/null")
                    .map_err(io)?,
            );
            let dup = |fd: &OwnedFd| fd.try_clone().map_err(io);
            let (a, b) = (dup(&null)?, dup(&null)?);
            return Ok(Wiring {
                pty,
                relay_stdin,
                size,
                child: [null, a, b],
                cli: [None, None, None],
            });
        }
        let (in_r, in_w) = pipe("stdin pipe")?;
        let (out_r, out_w) = pipe("stdout pipe")?;
        let (err_r, err_w) = pipe("stderr pipe")?;
        // Stdin not relayed: the command reads EOF (the write end closes).
        let in_w = relay_stdin.then_some(in_w);
        Ok(Wiring {
            pty,
            relay_stdin,
            size,
            child: [in_r, out_w, err_w],
            cli: [in_w, Some(out_r), Some(err_r)],
        })
    }

    fn child_stdio(&self) -> [RawFd; 3] {
        [
            self.child[0].as_raw_fd(),
            self.child[1].as_raw_fd(),
            self.child[2].as_raw_fd(),
        ]
    }
}

/// What the forked helper needs (prepared before the fork).
struct Helper<'a> {
    cg: &'a JailCgroup,
    in_cgroup: bool,
    plan: &'a Plan,
    stdio: [RawFd; 3],
    sock: BorrowedFd<'a>,
    mask: &'a SigSet,
    /// `Some(size)`: allocate a pty in the jail.
    pty: Option<Option<pty::Winsize>>,
    cli: nix::unistd::Pid,
}

/// The helper, in the forked child: its exit status is the command's.
/// Setup errors go to the CLI over the socket.
fn helper(h: Helper<'_>, ns: Vec<(std::fs::File, CloneFlags)>) -> i32 {
    let sock = h.sock;
    match helper_steps(&h, ns) {
        Ok(code) => code,
        Err(fail) => {
            let (tag, msg) = match fail {
                Fail::Internal(m) => (b'E', m),
                Fail::Invalid(m) => (b'I', m),
            };
            let mut m = vec![tag];
            m.extend_from_slice(msg.as_bytes());
            let _ = process::send_with_fds(sock, &m, &[]);
            126
        }
    }
}

fn step<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

/// The helper's setup, in order. It ends as the jail's process that waits
/// for the command (outside the jail's pid namespace, so no jail process
/// can name it: no signal, ptrace, /proc/PID/fd or pidfd_getfd reaches it;
/// and being made non-dumpable by its change to the jail's uid, only
/// CAP_SYS_PTRACE in the host's user namespace could inspect it anyway).
/// It holds no descriptor at all while it waits.
/// Why the helper could not start the command: its own machinery failed,
/// or the operator asked for what the jail does not have (`-u`, `-w`).
enum Fail {
    Internal(String),
    Invalid(String),
}

impl From<String> for Fail {
    fn from(m: String) -> Fail {
        Fail::Internal(m)
    }
}

fn helper_steps(h: &Helper<'_>, ns: Vec<(std::fs::File, CloneFlags)>) -> Result<i32, Fail> {
    // 1. A session of its own: no controlling terminal, out of the CLI's
    // process group (the operator's ^C and job control never reach it).
    step("setsid", nix::unistd::setsid())?;
    step(
        "restore the signal mask",
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(h.mask), None),
    )?;
    // 2. stdio: the jail's ends of the pipes, or /dev/null (all above 2,
    // see ensure_stdio_open, so no dup2 clobbers another).
    for (i, fd) in h.stdio.iter().enumerate() {
        step("set up stdio", nix::unistd::dup2(*fd, i as RawFd))?;
    }
    // 3. Every other descriptor goes now, before anything of the jail runs
    // or can see this process: whatever the operator's shell passed in
    // (`exec 7</ 9</etc/shadow`: CVE-2024-21626), the CLI's own, the
    // CLI's ends of the pipes. Kept, all close-on-exec: the namespace
    // handles (closed once joined) and the socket to the CLI.
    let mut keep: Vec<RawFd> = ns.iter().map(|(f, _)| f.as_raw_fd()).collect();
    keep.push(h.sock.as_raw_fd());
    step(
        "close inherited descriptors",
        process::close_from_except(3, &keep),
    )?;
    // 4. The jail's cgroup, unless created in it (moves itself: no global
    // cgroup lock, see SelfEntry; the files close right after).
    if !h.in_cgroup {
        let entry = h.cg.self_entry().map_err(|e| crate::error_chain(&e))?;
        step("enter the jail's cgroup", entry.enter())?;
    }
    // This process's entry in the host's /proc, while the path is still
    // the host's: the fork in step 7 checks there that the helper has one
    // thread (it has, as a checked fork of the CLI that starts none). The
    // fork closes it before it forks, so the command never holds it.
    let me = step("open /proc/self", ProcSelf::open(Path::new(super::PROC)))?;
    // 5. The jail's namespaces, user last; then its root.
    for (f, flag) in &ns {
        step(
            &format!("setns {flag:?}"),
            nix::sched::setns(f.as_fd(), *flag),
        )?;
    }
    drop(ns);
    super::init::become_root()?;
    // 5b. `-u`: the user, from the jail's own /etc/passwd and /etc/group
    // (our root is the jail's now); `-w`: the directory must be there.
    let creds = match h.plan.user() {
        Some(u) => Some(super::init::resolve_user(u, h.plan.id_count()).map_err(Fail::Invalid)?),
        None => None,
    };
    if let Some(w) = h.plan.workdir() {
        let shown = w.to_string_lossy();
        match std::fs::metadata(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(w.as_bytes()),
        ) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Fail::Invalid(format!(
                    "working directory {shown} in the jail is not a directory"
                )))
            }
            Err(e) => {
                return Err(Fail::Invalid(format!(
                    "working directory {shown} in the jail: {e}"
                )))
            }
        }
    }
    // 6. With a tty: a pty from the jail's own devpts (we are in its mount
    // namespace now), sized like the operator's terminal before the
    // command can ask.
    let pair = match h.pty {
        None => None,
        Some(size) => {
            let master = pty::open_master().map_err(|e| crate::error_chain(&e))?;
            if let Some(ws) = size {
                let _ = pty::set_window_size(master.as_fd(), &ws);
            }
            let slave = pty::open_slave(master.as_fd()).map_err(|e| crate::error_chain(&e))?;
            Some((master, slave))
        }
    };
    // 7. Fork the command (a pid namespace applies to children).
    let child = match step("fork into the pid namespace", fork::fork(me))? {
        Forked::Child => command(h.plan, pair.as_ref().map(|(_, s)| s), creds.as_ref()),
        Forked::Parent(child) => child,
    };
    let master = pair.map(|(m, _slave)| m);
    let pidfd = process::pidfd_open(child).ok();
    // 8. This waiting process sits in the jail's cgroup and user
    // namespace: it holds no more than the jail's own processes.
    if let Err(msg) = super::init::restrict(h.plan.caps(), h.plan.filters(), None) {
        let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
        wait_code(child);
        return Err(msg.into());
    }
    // 9. Hand the CLI the pidfd (signals) and the pty's master, then drop
    // every descriptor: stdio, socket, pty.
    let mut fds = Vec::new();
    let mut flags = 0u8;
    if let Some(p) = &pidfd {
        fds.push(p.as_raw_fd());
        flags |= 1;
    }
    if let Some(m) = &master {
        fds.push(m.as_raw_fd());
        flags |= 2;
    }
    let sent = process::send_with_fds(h.sock, &[b'R', flags], &fds);
    drop(master);
    drop(pidfd);
    let _ = process::close_from_except(0, &[]);
    if sent.is_err() {
        let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
    }
    // 10. Die with the CLI (the command then sees its pipes or pty close).
    let _ = process::die_with_parent(h.cli);
    Ok(wait_code(child))
}

/// The command, in the helper's child (inside the jail's pid namespace):
/// its own session; with a pty, the slave is its stdio and controlling
/// terminal. Never returns.
fn command(plan: &Plan, slave: Option<&OwnedFd>, user: Option<&super::init::Creds>) -> ! {
    let r = (|| -> Result<(), String> {
        if let Some(s) = slave {
            for i in 0..3 {
                step("set up the pty", nix::unistd::dup2(s.as_raw_fd(), i))?;
            }
        }
        // Errors go to the command's stderr from here: the pipe or the pty.
        step("setsid", nix::unistd::setsid())?;
        if slave.is_some() {
            step(
                "set the controlling terminal",
                pty::make_controlling(std::io::stdin().as_fd()),
            )?;
        }
        // Only stdio crosses the exec: not the socket, master or slave.
        step("close descriptors", process::close_from_except(3, &[]))?;
        match plan.workdir() {
            Some(w) => step(
                &format!("chdir {}", w.to_string_lossy()),
                nix::unistd::chdir(w.as_c_str()),
            )?,
            None => step("chdir /", nix::unistd::chdir("/"))?,
        }
        super::init::restrict(plan.caps(), plan.filters(), user)
    })();
    let msg = match r {
        Ok(()) => plan.exec_as(user),
        Err(m) => m,
    };
    eprintln!("jailer: error: {}", crate::display::escape(&msg));
    std::process::exit(if msg.contains("ENOENT") || msg.contains("No such file") {
        127
    } else {
        126
    })
}

/// The helper's first word.
enum Ready {
    Started {
        pidfd: Option<OwnedFd>,
        master: Option<OwnedFd>,
    },
    Failed(String),
    /// The jail has no such user or directory (`-u`, `-w`).
    Refused(String),
    /// It exited without a word (killed): its status.
    Gone(i32),
}

/// Waits for the helper's word; a signal meant for the command kills the
/// helper (there is no command yet).
fn wait_ready(sock: &OwnedFd, sigfd: &SignalFd, helper: Pid) -> Result<Ready, ExecError> {
    loop {
        let mut pfds = [
            PollFd::new(sock.as_fd(), PollFlags::POLLIN),
            PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut pfds, PollTimeout::NONE) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(source) => {
                return Err(ExecError::Relay {
                    what: "poll",
                    source,
                })
            }
        }
        let sock_ready = pfds[0].revents().is_some_and(|r| !r.is_empty());
        if sock_ready {
            return recv_ready(sock, helper);
        }
        while let Ok(Some(si)) = sigfd.read_signal() {
            let Ok(sig) = Signal::try_from(si.ssi_signo as i32) else {
                continue;
            };
            if FORWARDED.contains(&sig) {
                let _ = nix::sys::signal::kill(helper, Signal::SIGKILL);
                wait_code(helper);
                return Ok(Ready::Gone(exit_status::from_signal(sig as i32)));
            }
        }
    }
}

fn recv_ready(sock: &OwnedFd, helper: Pid) -> Result<Ready, ExecError> {
    let mut buf = [0u8; 4096];
    let (n, fds) =
        process::recv_with_fds(sock.as_fd(), &mut buf).map_err(|source| ExecError::Relay {
            what: "the helper's word",
            source,
        })?;
    let data = &buf[..n];
    match data.first() {
        None => Ok(Ready::Gone(wait_code(helper))),
        Some(b'E') => Ok(Ready::Failed(
            String::from_utf8_lossy(&data[1..]).into_owned(),
        )),
        Some(b'I') => Ok(Ready::Refused(
            String::from_utf8_lossy(&data[1..]).into_owned(),
        )),
        Some(_) => {
            let flags = data.get(1).copied().unwrap_or(0);
            let mut fds = fds.into_iter();
            let pidfd = if flags & 1 != 0 { fds.next() } else { None };
            let master = if flags & 2 != 0 { fds.next() } else { None };
            Ok(Ready::Started { pidfd, master })
        }
    }
}

fn wait_code(pid: nix::unistd::Pid) -> i32 {
    use nix::sys::wait::waitpid;
    loop {
        match waitpid(pid, None).map(exit_status::from_wait) {
            Ok(Some(c)) => return c,
            Ok(None) | Err(nix::Error::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}

/// The helper's status if it has exited.
fn try_wait(pid: Pid) -> Option<i32> {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)).map(exit_status::from_wait) {
        Ok(c) => c,
        Err(nix::Error::EINTR) => None,
        Err(_) => Some(255),
    }
}

/// The CLI's ends of the command's stdio.
enum Ends {
    /// stdin's write end (if relayed), stdout's and stderr's read ends.
    Pipes([Option<OwnedFd>; 3]),
    /// The jail's pty master (stdin in, stdout and stderr out).
    Pty(OwnedFd),
}

/// One side of a copy: one of the CLI's stdio, or a descriptor into the
/// jail (shared by two pumps for a pty's master).
enum End {
    Stdin(std::io::Stdin),
    Stdout(std::io::Stdout),
    Stderr(std::io::Stderr),
    Jail(Rc<OwnedFd>),
}

impl End {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            End::Stdin(f) => f.as_fd(),
            End::Stdout(f) => f.as_fd(),
            End::Stderr(f) => f.as_fd(),
            End::Jail(fd) => fd.as_fd(),
        }
    }

    fn is_cli(&self) -> bool {
        !matches!(self, End::Jail(_))
    }
}

/// Bytes after the command exits that the CLI still copies out: more than
/// a pipe (1 MiB at most without CAP_SYS_RESOURCE) or a pty holds, so all
/// the command wrote arrives, and a process it left behind cannot keep the
/// CLI copying forever.
const DRAIN_LIMIT: usize = 4 << 20;

/// A one-way copy with a buffer; it reads only when the buffer is empty,
/// so a slow reader slows the writer, never the other streams.
struct Pump {
    from: Option<End>,
    to: Option<End>,
    buf: Vec<u8>,
    head: usize,
    tail: usize,
    /// Sent when `from` ends: the pty's EOF character (a pty cannot be
    /// half-closed).
    eof: Option<u8>,
}

impl Pump {
    fn new(from: End, to: End, eof: Option<u8>) -> Pump {
        Pump {
            from: Some(from),
            to: Some(to),
            buf: vec![0; 64 << 10],
            head: 0,
            tail: 0,
            eof,
        }
    }

    fn pending(&self) -> bool {
        self.head < self.tail
    }

    /// Reads once; `false` when nothing more will come.
    fn fill(&mut self) -> bool {
        let Some(from) = &self.from else {
            return false;
        };
        match nix::unistd::read(from.fd().as_raw_fd(), &mut self.buf) {
            Ok(n) if n > 0 => {
                self.head = 0;
                self.tail = n;
                true
            }
            Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => true,
            // EOF, or EIO from a pty whose slave is closed.
            _ => {
                self.from = None;
                if let Some(c) = self.eof.take() {
                    self.buf[0] = c;
                    self.head = 0;
                    self.tail = 1;
                } else {
                    self.to = None;
                }
                false
            }
        }
    }

    /// Writes once what is buffered.
    fn flush(&mut self) {
        let Some(to) = &self.to else {
            self.head = self.tail;
            return;
        };
        match nix::unistd::write(to.fd(), &self.buf[self.head..self.tail]) {
            Ok(n) => self.head += n,
            Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => {}
            // The reader is gone (EPIPE): stop copying, and close the
            // source so that its writer learns it too.
            Err(_) => {
                self.head = self.tail;
                self.to = None;
                self.from = None;
            }
        }
        if !self.pending() && self.from.is_none() {
            self.to = None;
        }
    }

    /// After the command exited: copies what is left, up to DRAIN_LIMIT.
    fn drain(&mut self) {
        let mut copied = 0;
        loop {
            while self.pending() && self.to.is_some() {
                if let Some(to) = &self.to {
                    let fd = to.fd();
                    let _ = poll(
                        &mut [PollFd::new(fd, PollFlags::POLLOUT)],
                        PollTimeout::NONE,
                    );
                }
                self.flush();
            }
            if copied >= DRAIN_LIMIT || self.to.is_none() {
                return;
            }
            let Some(from) = &self.from else {
                return;
            };
            match nix::unistd::read(from.fd().as_raw_fd(), &mut self.buf) {
                Ok(n) if n > 0 => {
                    self.head = 0;
                    self.tail = n;
                    copied += n;
                }
                _ => return,
            }
        }
    }
}

fn nonblocking(fd: &OwnedFd) -> Result<(), ExecError> {
    let raw = fd.as_raw_fd();
    let fl = fcntl(raw, FcntlArg::F_GETFL).map_err(|source| ExecError::Relay {
        what: "fcntl",
        source,
    })?;
    fcntl(
        raw,
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(fl) | OFlag::O_NONBLOCK),
    )
    .map(drop)
    .map_err(|source| ExecError::Relay {
        what: "fcntl",
        source,
    })
}

/// Copies between the CLI's stdio and the command's until the helper exits
/// (then what the command wrote is drained); forwards signals; resizes the
/// pty. Returns the command's status. The operator's terminal is in raw
/// mode meanwhile (with a pty) and restored on every way out.
fn relay(
    ends: Ends,
    relay_stdin: bool,
    sigfd: &SignalFd,
    helper: Pid,
    pidfd: Option<&OwnedFd>,
) -> Result<i32, ExecError> {
    let mut pumps = Vec::new();
    let mut master = None;
    match ends {
        Ends::Pipes([stdin, stdout, stderr]) => {
            if let Some(w) = stdin {
                nonblocking(&w)?;
                pumps.push(Pump::new(
                    End::Stdin(std::io::stdin()),
                    End::Jail(Rc::new(w)),
                    None,
                ));
            }
            if let Some(r) = stdout {
                nonblocking(&r)?;
                pumps.push(Pump::new(
                    End::Jail(Rc::new(r)),
                    End::Stdout(std::io::stdout()),
                    None,
                ));
            }
            if let Some(r) = stderr {
                nonblocking(&r)?;
                pumps.push(Pump::new(
                    End::Jail(Rc::new(r)),
                    End::Stderr(std::io::stderr()),
                    None,
                ));
            }
        }
        Ends::Pty(m) => {
            nonblocking(&m)?;
            let m = Rc::new(m);
            pumps.push(Pump::new(
                End::Jail(m.clone()),
                End::Stdout(std::io::stdout()),
                None,
            ));
            if relay_stdin {
                let eof = pty::canonical_eof(m.as_fd());
                let eof = if nix::unistd::isatty(0).unwrap_or(false) {
                    None
                } else {
                    eof
                };
                pumps.push(Pump::new(
                    End::Stdin(std::io::stdin()),
                    End::Jail(m.clone()),
                    eof,
                ));
            }
            master = Some(m);
        }
    }
    let stdin = std::io::stdin();
    let _raw = match &master {
        Some(_) if nix::unistd::isatty(0).unwrap_or(false) => {
            Some(pty::RawMode::enter(stdin.as_fd())?)
        }
        _ => None,
    };
    let resize = |m: &Rc<OwnedFd>| {
        let ws = pty::window_size(std::io::stdin().as_fd())
            .or_else(|| pty::window_size(std::io::stdout().as_fd()));
        if let Some(ws) = ws {
            let _ = pty::set_window_size(m.as_fd(), &ws);
        }
    };
    if let Some(m) = &master {
        // Resized while the helper set up?
        resize(m);
    }
    let code = loop {
        let mut pfds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
        let mut which = Vec::new();
        for (i, p) in pumps.iter().enumerate() {
            if p.pending() {
                if let Some(to) = &p.to {
                    pfds.push(PollFd::new(to.fd(), PollFlags::POLLOUT));
                    which.push(i);
                }
            } else if let Some(from) = &p.from {
                pfds.push(PollFd::new(from.fd(), PollFlags::POLLIN));
                which.push(i);
            }
        }
        match poll(&mut pfds, PollTimeout::NONE) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(source) => {
                return Err(ExecError::Relay {
                    what: "poll",
                    source,
                })
            }
        }
        let ready: Vec<bool> = pfds
            .iter()
            .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(pfds);
        let mut exited = None;
        if ready[0] {
            while let Ok(Some(si)) = sigfd.read_signal() {
                let Ok(sig) = Signal::try_from(si.ssi_signo as i32) else {
                    continue;
                };
                match sig {
                    Signal::SIGCHLD => exited = exited.or_else(|| try_wait(helper)),
                    Signal::SIGWINCH => {
                        if let Some(m) = &master {
                            resize(m);
                        }
                    }
                    s => match pidfd {
                        Some(p) => {
                            let _ = process::pidfd_send_signal(p.as_fd(), s);
                        }
                        None => {
                            let _ = nix::sys::signal::kill(helper, s);
                        }
                    },
                }
            }
        }
        for (k, i) in which.iter().enumerate() {
            if !ready[k + 1] {
                continue;
            }
            let p = &mut pumps[*i];
            if p.pending() {
                p.flush();
            } else {
                p.fill();
            }
        }
        if let Some(code) = exited {
            break code;
        }
    };
    // The command has exited: copy out what it wrote (stdin is dropped).
    for p in pumps.iter_mut() {
        if p.to.as_ref().is_some_and(End::is_cli) {
            p.drain();
        }
    }
    Ok(code)
}

/// One process of a jail, as `jailer ps` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessInfo {
    /// Host pid.
    pub pid: i32,
    /// Pid inside the jail's pid namespace.
    pub jail_pid: i32,
    /// Real uid on the host and inside the jail (-1 when outside its range).
    pub uid: i64,
    pub jail_uid: i64,
    pub state: String,
    pub cmdline: String,
}

/// `jailer ps NAME`: the processes in the jail's cgroup.
pub fn ps(pool: &Pool, name: &Name) -> Result<Vec<ProcessInfo>, RuntimeError> {
    let rec = read(pool, name)?;
    let rec = super::observe(pool, rec);
    if !matches!(rec.state, State::Running | State::Frozen) {
        return Ok(Vec::new());
    }
    let base = i64::from(rec.ids.uid_base);
    let count = i64::from(rec.ids.count);
    let proc = Proc::host();
    // The jail's pid namespace is at the depth of its init's: a process's
    // pid there is the NSpid entry at that depth (`jailer exec`'s waiting
    // helper is in the cgroup but not the namespace: -1).
    let depth = rec
        .runtime
        .as_ref()
        .and_then(|rt| proc.status(rt.init.pid))
        .map_or(0, |st| st.nspid.len());
    let mut out = Vec::new();
    for pid in JailCgroup::load(&rec).procs() {
        let Some(status) = proc.status(pid) else {
            continue;
        };
        let jail_pid = depth
            .checked_sub(1)
            .and_then(|d| status.nspid.get(d))
            .and_then(|p| i32::try_from(*p).ok())
            .unwrap_or(-1);
        let uid = status.uid.map_or(-1, |u| u[0]);
        let jail_uid = if uid >= base && uid < base + count {
            uid - base
        } else {
            -1
        };
        let state = status.state.unwrap_or_else(|| "?".to_string());
        let cmdline = proc.cmdline(pid).unwrap_or_default();
        out.push(ProcessInfo {
            pid,
            jail_pid,
            uid,
            jail_uid,
            state,
            cmdline,
        });
    }
    Ok(out)
}
