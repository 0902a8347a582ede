//! The jail's monitor: forked from the CLI by [`spawn_monitor`], it makes
//! the instance's cgroup, clones init ([`super::init::spawn`]), writes its
//! id maps, hands it the idmapped rootfs, records the instance and reports
//! the start back ([`finish_start`] reads the report); then it copies the
//! jail's output from the console pipe into the console log until init
//! exits, records the exit and releases the cgroup.

use super::instance::{own_exit_path, run_dir};
use super::{console, exit_path, init, log_path, sys, write_cache, RuntimeError, PROC};
use crate::cgroup::{JailCgroup, Limits};
use crate::display::escape;
use crate::name::Name;
use crate::pool::Pool;
use crate::record::{self, ExitRecord, InstanceRecord, JailRecord, ProcRef, Runtime, State};
use crate::sys::fork::{self, ForkError, Forked, ProcSelf};
use crate::sys::{mountapi, process};
use nix::sys::signal::Signal;
use std::io::{BufRead, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

pub(super) fn wait_empty(cg: &JailCgroup, limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if cg.procs().is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cg.procs().is_empty()
}

/// A monitor that has been spawned but not yet told that the rootfs is
/// ready. Dropped unfinished, it is told to give up and reaped.
#[derive(Debug)]
pub(crate) struct Monitor {
    name: Name,
    pid: nix::unistd::Pid,
    /// The monitor's stdin: one byte says the rootfs is ready, EOF says
    /// give up.
    ready: Option<std::fs::File>,
    /// The monitor's stdout: its one-line report.
    report: Option<std::fs::File>,
    detached: bool,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if !self.detached {
            // EOF on its stdin: the monitor releases what it made and exits.
            self.ready.take();
            let _ = nix::sys::wait::waitpid(self.pid, None);
        }
    }
}

/// Forks the jail's monitor into its own session, so that the CLI's
/// terminal and process-group signals never reach it: stdin a pipe from
/// here (the word that the rootfs is ready), stdout a pipe back (its
/// report), stderr the jail's console log (which only the monitor writes),
/// and no other fd (the CLI's
/// locks among them). It prepares the cgroup and the init's namespaces,
/// then waits for the word.
///
/// A fork, not an exec of `jailer`: the record is in memory already and the
/// monitor starts working at once. That needs this process to have one
/// thread (checked), so that the child inherits no lock another thread held.
pub(crate) fn spawn_monitor(
    pool: &Pool,
    rec: &JailRecord,
    monitor_lock: &std::fs::File,
) -> Result<Monitor, RuntimeError> {
    spawn_monitor_with(pool, rec, monitor_lock, None)
}

/// [`spawn_monitor`], with `install`: a host directory (made by the host,
/// outside the jail's root) that init attaches read-only at
/// [`init::INSTALL_DIR`] for a maintenance instance (see
/// [`super::maintenance`]).
pub(super) fn spawn_monitor_with(
    pool: &Pool,
    rec: &JailRecord,
    monitor_lock: &std::fs::File,
    install: Option<&Path>,
) -> Result<Monitor, RuntimeError> {
    let name = rec.name();
    if rec.spec.command.is_empty() {
        return Err(RuntimeError::NoCommand { name: name.clone() });
    }
    let _ = std::fs::remove_file(exit_path(pool, name));
    let log = console::open_append(&log_path(pool, name))
        .map_err(sys(name, "cannot open the console log"))?;
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| sys(name, "cannot make a pipe to the monitor")(e.into()))
    };
    let (ready_r, ready_w) = pipe()?;
    let (report_r, report_w) = pipe()?;
    let monitor_err = |e: ForkError| RuntimeError::Monitor {
        name: name.clone(),
        source: e.into(),
    };
    let me = ProcSelf::open(Path::new(PROC)).map_err(monitor_err)?;
    let _ = std::io::stdout().flush();
    // The fork checks that this process has one thread, so the child is a
    // complete copy in which std, the allocator and every lock are in a
    // consistent state. The child never returns into the caller's frames:
    // it ends in `exit_now`, so no destructor of the CLI runs twice.
    match fork::fork(me) {
        Err(e) => Err(monitor_err(e)),
        Ok(Forked::Child) => {
            // Lift the three above stdio first: a CLI started with closed
            // stdio gets them as 0-2, and one dup2 would clobber another.
            // (Raw numbers from here: this frame's descriptors are closed
            // below by number, and never dropped.)
            let lift = |fd: BorrowedFd<'_>| {
                crate::sys::fd::dup_from(fd, 10).map_or(-1, IntoRawFd::into_raw_fd)
            };
            let fds = [
                lift(ready_r.as_fd()),
                lift(report_w.as_fd()),
                lift(log.as_fd()),
                lift(monitor_lock.as_fd()),
            ];
            // `ps` and `top` show it as the monitor (its argv stays the
            // CLI's: `jailer start NAME`).
            let _ = process::set_name(c"jailer-monitor");
            let wired = nix::unistd::setsid().is_ok()
                && fds.iter().all(|fd| *fd >= 10)
                && (0..4).all(|i| nix::unistd::dup2(fds[i], i as i32).is_ok());
            // Every fd but stdio and the monitor lock (fd 3, held for this
            // process's whole life) goes, the CLI's lock files first among
            // them. (`dup2` clears close-on-exec on 0-3; fd 3 gets it back,
            // so that init's exec drops its copy.) The OwnedFds of this
            // frame are never dropped: `exit_now` below does not return.
            let closed = process::close_from_except(MONITOR_LOCK_FD + 1, &[]).is_ok()
                && nix::fcntl::fcntl(
                    MONITOR_LOCK_FD,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
                )
                .is_ok();
            let code = if wired && closed {
                monitor_main(pool, rec, install)
            } else {
                1
            };
            // Without the CLI's destructors or atexit handlers in this copy
            // of it.
            process::exit_now(code)
        }
        Ok(Forked::Parent(child)) => Ok(Monitor {
            name: name.clone(),
            pid: child,
            ready: Some(std::fs::File::from(ready_w)),
            report: Some(std::fs::File::from(report_r)),
            detached: false,
        }),
    }
}

/// The monitor's copy of its lock (see [`claim_monitor_lock`](super::claim_monitor_lock)).
pub(super) const MONITOR_LOCK_FD: i32 = 3;

/// Tells the monitor the rootfs is ready, waits for its report (the exec, or
/// why it failed) and records the running jail.
pub(crate) fn finish_start(
    pool: &Pool,
    mut rec: JailRecord,
    m: Monitor,
) -> Result<JailRecord, RuntimeError> {
    let runtime = finish_report(m)?;
    rec.state = State::Running;
    rec.runtime = Some(runtime);
    rec.started_at = Some(record::now());
    rec.finished_at = None;
    rec.exit_code = None;
    rec.oom_killed = false;
    // The cache only: the monitor recorded the instance before its report.
    write_cache(pool, &rec);
    Ok(rec)
}

/// Tells the monitor the rootfs is ready and reads its report: the
/// instance's runtime once its command is exec'd, or why it failed. Writes
/// no record.
pub(super) fn finish_report(mut m: Monitor) -> Result<Runtime, RuntimeError> {
    let name = m.name.clone();
    if let Some(mut ready) = m.ready.take() {
        let _ = ready.write_all(b"r");
    }
    let mut line = String::new();
    if let Some(out) = m.report.take() {
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    let line = line.trim();
    let Some(rest) = line.strip_prefix("ok ") else {
        let message = line.strip_prefix("error ").unwrap_or(if line.is_empty() {
            "the monitor exited without a report; see `jailer logs`"
        } else {
            line
        });
        return Err(RuntimeError::StartFailed {
            name,
            message: message.to_string(),
        });
    };
    let parsed: Result<Runtime, _> = serde_json::from_str(rest);
    let runtime = parsed.map_err(|e| RuntimeError::StartFailed {
        name: name.clone(),
        message: format!("unreadable monitor report: {e}"),
    })?;
    // The monitor now lives on its own; it is reparented when we exit.
    m.detached = true;
    Ok(runtime)
}

/// Writes a status line for the CLI to the monitor's stdout and closes it.
pub(super) fn report(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    // Point fd 1 at /dev/null so the CLI sees EOF.
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
    }
}

/// The monitor, in the forked child. Runs for the jail's whole life: one
/// instance, or, under a restart policy, one after another until the
/// policy gives up or `stop` asks it to end.
pub(super) fn monitor_main(pool: &Pool, rec: &JailRecord, install: Option<&Path>) -> i32 {
    let name = rec.name();
    // Terminal and session signals must not take the jail down.
    for s in [Signal::SIGHUP, Signal::SIGINT, Signal::SIGPIPE] {
        let _ = process::ignore(s);
    }
    // The console log: fd 2 is the log file, which only this process writes.
    let mut log = match monitor_log(pool, rec) {
        Ok(l) => l,
        Err(e) => {
            report(&format!("error {}", escape(&crate::error_chain(&e))));
            return 1;
        }
    };
    let policy = rec.spec.restart;
    let mut restarts = 0u32;
    let mut backoff = Backoff::default();
    let mut instance = new_instance_id();
    loop {
        let first = restarts == 0;
        let end = match run_instance(pool, rec, &mut log, &instance, restarts, install) {
            Ok(end) => end,
            // The first start's failure went to the CLI; a restart's is in
            // the log, and counts as a failed run.
            Err(()) if first => return 1,
            Err(()) => InstanceEnd {
                instance: last_instance(rec).unwrap_or_default(),
                status: None,
                how: "its command could not be started".into(),
                ran_for: Duration::ZERO,
            },
        };
        let InstanceEnd {
            instance: ended,
            status,
            how,
            ran_for,
        } = end;
        if stop_asked(rec) || !policy.wants(status, restarts) {
            return 0;
        }
        restarts += 1;
        let delay = backoff.next(ran_for);
        instance = new_instance_id();
        let plan = record::RestartRecord {
            after: ended,
            restart: restarts,
            at: record::now() + delay.as_secs(),
        };
        let json = serde_json::to_vec_pretty(&plan).unwrap_or_default();
        let _ = crate::fsutil::atomic_write(&run_dir(rec).join(record::RESTART_FILE), &json);
        log.note(&format!(
            "jailer-monitor: {name}: {how}; restart {restarts} ({policy}) in {} ms",
            delay.as_millis()
        ));
        super::instance::prune_own_exits(&run_dir(rec));
        // `stop` during the wait ends it.
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if stop_asked(rec) {
                return 0;
            }
            std::thread::sleep(
                Duration::from_millis(20).min(until.saturating_duration_since(Instant::now())),
            );
        }
        if stop_asked(rec) {
            return 0;
        }
    }
}

/// Whether `stop` asked this jail's monitor to start nothing again.
fn stop_asked(rec: &JailRecord) -> bool {
    run_dir(rec).join(record::STOP_FILE).exists()
}

/// The instance `instance.json` names (the last one recorded).
fn last_instance(rec: &JailRecord) -> Option<String> {
    super::instance::instance(rec).map(|i| i.runtime.instance)
}

/// The restart policy's delay: 100 ms doubling to at most 30 s, back to
/// 100 ms after a run of 10 s or more (a command that ran that long was
/// not failing at once).
#[derive(Debug, Default)]
struct Backoff {
    next: Option<Duration>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(30);
    const RESET_AFTER: Duration = Duration::from_secs(10);

    fn next(&mut self, ran_for: Duration) -> Duration {
        let d = match self.next {
            Some(d) if ran_for < Self::RESET_AFTER => d,
            _ => Self::FIRST,
        };
        self.next = Some((d * 2).min(Self::MAX));
        d
    }
}

/// How one instance ended.
struct InstanceEnd {
    instance: String,
    /// Exit code, or 128 + signal; `None` when unknown.
    status: Option<i32>,
    /// As the log says it: `its command exited 3`.
    how: String,
    ran_for: Duration,
}

/// One instance: its cgroup, init, the console until init exits, the exit
/// records, and the cgroup released. The first (`restarts == 0`) reports
/// to the CLI that started it; a failure to start is reported (first) or
/// logged, and everything made for it released.
fn run_instance(
    pool: &Pool,
    rec: &JailRecord,
    log: &mut console::LogWriter,
    instance: &str,
    restarts: u32,
    install: Option<&Path>,
) -> Result<InstanceEnd, ()> {
    let name = rec.name();
    let first = restarts == 0;
    let fail = |log: &mut console::LogWriter, msg: &str| {
        let msg = escape(msg);
        if first {
            report(&format!("error {msg}"));
        }
        log.note(&format!("jailer-monitor: {name}: start failed: {msg}"));
    };
    let limits = Limits {
        memory: rec.spec.memory,
        cpus: rec.spec.cpus,
        pids: Some(rec.spec.pids.unwrap_or(crate::spec::DEFAULT_PIDS)),
        io_weight: rec.spec.io_weight,
    };
    let cg = match JailCgroup::create(rec, instance, &limits) {
        Ok(c) => c,
        Err(e) => {
            fail(log, &crate::error_chain(&e));
            return Err(());
        }
    };
    // The jail gets the write end of a pipe as its stdout and stderr.
    let (console_r, console_w) = match console_pipe(name) {
        Ok(p) => p,
        Err(e) => {
            fail(log, &crate::error_chain(&e));
            let _ = cg.delete();
            return Err(());
        }
    };
    let (started, net) = match launch(pool, rec, &cg, console_w.as_fd(), first, install) {
        Ok(s) => s,
        Err(e) => {
            cg.signal_all(Signal::SIGKILL);
            wait_empty(&cg, Duration::from_secs(5));
            let _ = cg.delete();
            let msg = match &e {
                RuntimeError::StartFailed { message, .. } => message.clone(),
                other => crate::error_chain(other),
            };
            fail(log, &msg);
            return Err(());
        }
    };
    let began = Instant::now();
    drop(console_w);
    // The leases recorded and kept while the command runs (threads, joined
    // before the next fork: see JailNet::release_leases).
    let mut net = net;
    net.keep_leases(pool, rec);
    let me = nix::unistd::getpid().as_raw();
    let proc_root = Path::new(PROC);
    let runtime = Runtime {
        boot_id: record::boot_id(proc_root).unwrap_or_default(),
        monitor: ProcRef {
            pid: me,
            start_time: record::proc_start_time(proc_root, me).unwrap_or(0),
        },
        init: ProcRef {
            pid: started.as_raw(),
            start_time: record::proc_start_time(proc_root, started.as_raw()).unwrap_or(0),
        },
        cgroup: cg.reference(),
        instance: instance.to_string(),
    };
    // The instance is on record (where a full pool cannot block it) before
    // anyone is told it runs: a CLI killed from here on leaves a jail that
    // every reader sees running.
    let inst = InstanceRecord {
        runtime: runtime.clone(),
        started_at: record::now(),
        restarts,
    };
    let json = serde_json::to_vec_pretty(&inst).unwrap_or_default();
    if let Err(e) = crate::fsutil::atomic_write(&run_dir(rec).join(record::INSTANCE_FILE), &json) {
        log.note(&format!(
            "jailer-monitor: {name}: cannot record the instance: {}",
            escape(&crate::error_chain(&e))
        ));
    }
    if first {
        report(&format!(
            "ok {}",
            serde_json::to_string(&runtime).unwrap_or_default()
        ));
    } else {
        let _ = std::fs::remove_file(run_dir(rec).join(record::RESTART_FILE));
        // A stop that came while this restart was being made: it may have
        // swept before this group existed, so the group goes here.
        if stop_asked(rec) {
            cg.signal_all(Signal::SIGKILL);
        }
    }

    // Copy the jail's output into the log until init (the only child) exits;
    // reap it, then take what it wrote last (already in the pipe).
    let mut buf = vec![0u8; 64 << 10];
    let (code, signal) = pump_until_exit(log, &console_r, &mut buf, started);
    // The jail's links go now, through the socket that keeps its network
    // namespace alive, in a child while the rest is recorded and released:
    // none is left on a parent once the monitor is done (stop waits for it).
    let teardown = net.teardown_forked(Path::new(PROC));
    let ran_for = began.elapsed();
    let mut open = pump(log, &console_r, &mut buf, 16 << 20);
    let exit = ExitRecord {
        exit_code: code,
        signal,
        oom_killed: cg.oom_kills() > 0,
        finished_at: record::now(),
    };
    let json = serde_json::to_vec_pretty(&exit).unwrap_or_default();
    let mine = record::InstanceExit {
        instance: runtime.instance.clone(),
        exit,
    };
    let run_json = serde_json::to_vec_pretty(&mine).unwrap_or_default();
    // In the run directory first (never full), then the pool's copy (kept
    // across reboots), best effort: after a crash the jail is stopped
    // whatever this says.
    let own = own_exit_path(rec, &runtime.instance);
    if let Err(e) = crate::fsutil::atomic_write(&own, &run_json).and_then(|()| {
        crate::fsutil::atomic_write(&run_dir(rec).join(record::EXIT_FILE), &run_json)
    }) {
        log.note(&format!(
            "jailer-monitor: {name}: {}",
            escape(&crate::error_chain(&e))
        ));
    }
    if let Err(e) =
        pool.write_record(|| crate::fsutil::write_unsynced(&exit_path(pool, name), &json))
    {
        log.note(&format!(
            "jailer-monitor: {name}: {}",
            escape(&crate::error_chain(&e))
        ));
    }
    // Init's death killed its pid namespace; anything joined only to the
    // cgroup goes too. What they wrote is drained until the pipe's EOF (no
    // writer is left), for a few seconds at most. Then release the cgroup in
    // every controller.
    cg.signal_all(Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while open {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !readable(&console_r, left) {
            break;
        }
        open = pump(log, &console_r, &mut buf, 16 << 20);
    }
    drop(console_r);
    wait_empty(&cg, Duration::from_secs(10));
    if let Err(e) = cg.delete() {
        log.note(&format!(
            "jailer-monitor: {name}: {}",
            escape(&crate::error_chain(&e))
        ));
    }
    if !teardown.wait() {
        log.note(&format!(
            "jailer-monitor: {name}: could not delete the jail's network links; the kernel removes them with its namespace"
        ));
    }
    let how = match (exit.oom_killed, code, signal) {
        (true, _, _) => "its command was killed by the OOM killer".to_string(),
        (false, Some(c), _) => format!("its command exited {c}"),
        (false, None, Some(sig)) => format!(
            "its command was killed by {}",
            Signal::try_from(sig).map_or_else(|_| sig.to_string(), |s| s.as_str().to_string())
        ),
        (false, None, None) => "its command ended".to_string(),
    };
    Ok(InstanceEnd {
        instance: runtime.instance,
        status: exit.status(),
        how,
        ran_for,
    })
}

/// A fresh instance id: [`crate::cgroup::INSTANCE_ID_LEN`] hex digits.
pub(super) fn new_instance_id() -> String {
    use std::io::Read;
    let mut b = [0u8; crate::cgroup::INSTANCE_ID_LEN / 2];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if ok.is_err() {
        // Not secret, only unique among this jail's instances.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        b = (t ^ std::process::id()).to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The monitor's writer of the console log, on a duplicate of its fd 2.
pub(super) fn monitor_log(
    pool: &Pool,
    rec: &JailRecord,
) -> Result<console::LogWriter, RuntimeError> {
    let name = rec.name();
    let fd = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(sys(name, "cannot hold the console log"))?;
    Ok(console::LogWriter::new(
        pool.jail_dir(name),
        rec.spec.log_size,
        std::fs::File::from(fd),
        true,
    ))
}

/// The jail's stdout and stderr: a pipe whose read end (close-on-exec,
/// non-blocking) only the monitor holds; the write end (blocking, as a
/// program expects its stdout) goes to init.
pub(super) fn console_pipe(name: &Name) -> Result<(OwnedFd, OwnedFd), RuntimeError> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let err = |e: nix::Error| sys(name, "cannot make the console pipe")(e.into());
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(err)?;
    fcntl(r.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(err)?;
    Ok((r, w))
}

/// Copies what the console pipe holds into the log, `budget` bytes at most
/// (so that init's exit is noticed under a flood); false at EOF (no writer
/// left).
pub(super) fn pump(
    log: &mut console::LogWriter,
    pipe: &OwnedFd,
    buf: &mut [u8],
    budget: usize,
) -> bool {
    let mut done = 0;
    while done < budget {
        match nix::unistd::read(pipe.as_raw_fd(), buf) {
            Ok(0) => return false,
            Ok(n) => {
                log.write(&buf[..n]);
                done += n;
            }
            Err(nix::Error::EINTR) => continue,
            Err(nix::Error::EAGAIN) => return true,
            Err(_) => return false,
        }
    }
    true
}

/// Whether `fd` has something to read (or its EOF) within `timeout`.
pub(super) fn readable(fd: &OwnedFd, timeout: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let t = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    loop {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, t) {
            Err(nix::Error::EINTR) => continue,
            Ok(n) => return n > 0,
            Err(_) => return false,
        }
    }
}

/// Copies the console pipe into the log while `init` runs; reaps it and
/// returns its exit code or signal. Waits in `poll` on the pipe and a pidfd
/// of init (without one, on a kernel before 5.3, it looks every 100 ms).
pub(super) fn pump_until_exit(
    log: &mut console::LogWriter,
    pipe: &OwnedFd,
    buf: &mut [u8],
    init: nix::unistd::Pid,
) -> (Option<i32>, Option<i32>) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    // Our unreaped child: its pid cannot be reused before the waitpid below.
    let init_fd = process::pidfd_open(init).ok();
    let timeout = match init_fd {
        Some(_) => PollTimeout::NONE,
        None => PollTimeout::from(100u8),
    };
    let mut open = true;
    loop {
        let mut fds = Vec::with_capacity(2);
        if open {
            fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLIN));
        }
        if let Some(p) = &init_fd {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Err(nix::Error::EINTR) | Ok(_) => {}
            // Cannot wait in poll (out of memory?): look again soon.
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
        drop(fds);
        // Non-blocking: nothing there costs one read.
        if open {
            open = pump(log, pipe, buf, 1 << 20);
        }
        match waitpid(init, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => return (Some(c), None),
            Ok(WaitStatus::Signaled(_, s, _)) => return (None, Some(s as i32)),
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(_) => return (None, None),
        }
    }
}

/// `console`: the write end of the console pipe, init's stdout and stderr.
/// Returns init and its network (whose drop removes the jail's links).
pub(super) fn launch(
    pool: &Pool,
    rec: &JailRecord,
    cg: &JailCgroup,
    console: std::os::fd::BorrowedFd<'_>,
    first: bool,
    install: Option<&Path>,
) -> Result<(nix::unistd::Pid, crate::net::JailNet), RuntimeError> {
    let name = rec.name();
    let rootfs = pool.jail_rootfs(name);
    let mut plan = init::Plan::new(rec, &rootfs, None).map_err(|e| RuntimeError::StartFailed {
        name: name.clone(),
        message: e,
    })?;
    if let Some(dir) = install {
        // A detached bind of the host's staging directory, read-only,
        // nosuid, nodev, noexec (set here, in the host's namespaces, before
        // the jail's init can see it), attached by init inside the jail.
        let tree = mountapi::clone_tree(dir)?;
        mountapi::restrict_tree(tree.as_fd(), dir)?;
        plan.set_install(tree);
    }
    let (parent_sock, child_sock) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::SeqPacket,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| sys(name, "cannot make a socket pair")(e.into()))?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| sys(name, "cannot make a pipe")(e.into()))?;

    // On v2 init is created in its group by clone3; otherwise (v1, or a
    // kernel before 5.7) it moves itself in first thing (see SelfEntry).
    let cgroup_dir = cg.v2_dir_fd();
    let entry = cg.self_entry()?;
    let (child, in_cgroup) = init::spawn(
        &plan,
        Path::new(PROC),
        child_sock,
        err_w,
        console,
        cgroup_dir.as_ref().map(|d| d.as_fd()),
        &entry,
    )
    .map_err(|e| sys(name, "cannot clone the jail's init")(e.into()))?;
    drop(entry);
    if in_cgroup {
        tracing::debug!(jail = %name, pid = %child, "init created in its cgroup by clone3");
    } else {
        tracing::debug!(jail = %name, pid = %child, "init cloned, moves itself into its cgroup");
    }
    let setup = (|| -> Result<crate::net::JailNet, RuntimeError> {
        write_id_maps(name, child, rec)?;
        // The network, made from here (the host's namespace) into the
        // jail's, while init waits for the word to go on; then the DHCP
        // leases (asking for the recorded ones again), so that the command
        // starts with its addresses and the files name its servers.
        let mut net = crate::net::JailNet::setup(rec, child)?;
        let recorded = crate::net::lease::read(&pool.jail_dir(name));
        net.obtain_leases(pool, rec, &recorded)?;
        let files = crate::net::net_files(&rec.spec, &net.leases());
        // Under `jailer run` the snapshot is being committed meanwhile (a
        // restart's rootfs is there).
        if first {
            rootfs_ready(name)?;
        }
        let userns = std::fs::File::open(format!("/proc/{child}/ns/user"))
            .map_err(sys(name, "cannot open the jail's user namespace"))?;
        // The jail's view: idmapped, nodev, suid (see mountapi::idmap).
        let tree = mountapi::clone_tree(&rootfs)?;
        mountapi::idmap(tree.as_fd(), userns.as_fd(), &rootfs)?;
        init::send_go(&parent_sock, tree.as_fd(), &files)
            .map_err(|e| sys(name, "cannot hand the rootfs to the jail's init")(e.into()))?;
        Ok(net)
    })();
    let net = match setup {
        Ok(n) => n,
        Err(e) => {
            let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(child, None);
            return Err(e);
        }
    };
    drop(parent_sock);
    // The pipe is close-on-exec: EOF means the command was exec'd; anything
    // else is the setup step that failed.
    let mut msg = String::new();
    let mut f = std::fs::File::from(err_r);
    let _ = std::io::Read::read_to_string(&mut f, &mut msg);
    if !msg.is_empty() {
        let _ = nix::sys::wait::waitpid(child, None);
        drop(net);
        return Err(RuntimeError::StartFailed {
            name: name.clone(),
            message: msg,
        });
    }
    Ok((child, net))
}

/// Waits for the CLI's word (one byte on stdin) that the rootfs exists.
pub(super) fn rootfs_ready(name: &Name) -> Result<(), RuntimeError> {
    let mut b = [0u8; 1];
    match std::io::Read::read(&mut std::io::stdin(), &mut b) {
        Ok(1) => Ok(()),
        _ => Err(RuntimeError::StartFailed {
            name: name.clone(),
            message: "start was abandoned before the rootfs was ready".into(),
        }),
    }
}

pub(super) fn write_id_maps(
    name: &Name,
    pid: nix::unistd::Pid,
    rec: &JailRecord,
) -> Result<(), RuntimeError> {
    let ids = rec.ids;
    std::fs::write(
        format!("/proc/{pid}/uid_map"),
        format!("0 {} {}\n", ids.uid_base, ids.count),
    )
    .map_err(sys(name, "cannot write the uid map"))?;
    std::fs::write(
        format!("/proc/{pid}/gid_map"),
        format!("0 {} {}\n", ids.gid_base, ids.count),
    )
    .map_err(sys(name, "cannot write the gid map"))
}
