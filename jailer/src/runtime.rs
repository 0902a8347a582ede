//! Running jails: start (through a per-jail monitor), stop, kill, freeze,
//! thaw, and the reconciliation of records with what the kernel reports.
//!
//! `start` forks the jail's monitor from the CLI (no exec: the record is
//! already read, and an exec of this binary would cost a millisecond of
//! loading before any work), a small process in its own session that
//! outlives the CLI: it makes the cgroup, clones the
//! jail's init into new namespaces, maps its ids, hands it an idmapped view of
//! the rootfs, reports the exec (or its error) back, then copies the jail's
//! output from a pipe into its console log (see [`console`]) until init
//! exits, reaps it, records its exit in `exit.json` and releases the cgroup.
//! The jail's own setup, the ordered list of steps inside the new
//! namespaces, is [`init::setup`].
//!
//! Each start is an instance: its own id and cgroup, a monitor holding the
//! jail's monitor lock for exactly its life, and `instance.json` written by
//! that monitor (in [`record::RUN_ROOT`], where a full pool cannot block it)
//! before it reports the start. A jail's state is derived from its instance
//! ([`observe`]); `jail.json`'s state is a cache, and every verb reconciles
//! it and sweeps the cgroups no live instance owns (`reconcile`).

pub mod console;
pub mod exec;
pub mod init;

use crate::cgroup::{CgroupError, JailCgroup, Limits};
use crate::display::escape;
use crate::fsutil::FsError;
use crate::name::Name;
use crate::pool::{Pool, PoolError};
use crate::record::{
    self, ExitRecord, InstanceRecord, JailRecord, ProcRef, RecordError, Runtime, State,
};
use crate::sys::mountapi::{self, MountApiError};
use nix::sys::signal::Signal;
use std::io::{BufRead, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What went wrong running a jail.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("no jail named {name}; `jailer ls` lists the jails")]
    Unknown { name: Name },
    #[error("jail {name} is broken")]
    Broken {
        name: Name,
        #[source]
        source: RecordError,
    },
    #[error("jail {name} is {state}: cannot {verb} it{hint}")]
    Illegal {
        name: Name,
        state: State,
        verb: &'static str,
        hint: &'static str,
    },
    #[error("jail {name} has no command; recreate it with `jailer create {name} --template T -- COMMAND`")]
    NoCommand { name: Name },
    #[error("jail {name} asks for {net} networking, which this version of jailer cannot set up yet; recreate it with `--net none`")]
    NetUnsupported { name: Name, net: String },
    #[error("jail {name} failed to start: {message}")]
    StartFailed { name: Name, message: String },
    #[error("cannot run the monitor for jail {name}")]
    Monitor {
        name: Name,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    MountApi(#[from] MountApiError),
    #[error("cannot record jail {name}")]
    Record {
        name: Name,
        #[source]
        source: FsError,
    },
    #[error("{what} for jail {name}")]
    Sys {
        name: Name,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Ids(#[from] crate::ids::IdsError),
    #[error("cannot exec in jail {name}")]
    Exec {
        name: Name,
        #[source]
        source: exec::ExecError,
    },
    #[error("jail {name} did not stop within {secs} s after SIGKILL")]
    StopTimeout { name: Name, secs: u64 },
    #[error("the monitor of jail {name} has not exited within {secs} s after its jail stopped; try again, or see `jailer logs {name}`")]
    MonitorBusy { name: Name, secs: u64 },
    #[error("cannot use the runtime directory {} of jail {name}", path.display())]
    RunDir {
        name: Name,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<FsError> for RuntimeError {
    fn from(e: FsError) -> Self {
        RuntimeError::Pool(PoolError::Fs(e))
    }
}

fn sys<'a>(name: &'a Name, what: &'static str) -> impl FnOnce(std::io::Error) -> RuntimeError + 'a {
    move |source| RuntimeError::Sys {
        name: name.clone(),
        what,
        source,
    }
}

/// Host paths the runtime reads; parameters so tests can point elsewhere.
const PROC: &str = "/proc";
/// Where every cgroup hierarchy is mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// How long a verb waits for a monitor to finish what it is doing (record
/// its instance, or release its cgroup after its jail exited).
const MONITOR_WAIT: Duration = Duration::from_secs(15);

/// `RUN_ROOT/<jail id>/`: the running instance's state (see
/// [`record::RUN_ROOT`]).
pub fn run_dir(rec: &JailRecord) -> PathBuf {
    record::run_dir(Path::new(record::RUN_ROOT), rec)
}

fn run_err(rec: &JailRecord, path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let (name, path) = (rec.name().clone(), path.to_path_buf());
    move |source| RuntimeError::RunDir { name, path, source }
}

/// The instance the jail's last monitor recorded, if any.
fn instance(rec: &JailRecord) -> Option<InstanceRecord> {
    record::read_json(&run_dir(rec).join(record::INSTANCE_FILE)).ok()
}

/// The exit the jail's last monitor recorded (of its instance).
fn instance_exit(rec: &JailRecord) -> Option<record::InstanceExit> {
    record::read_json(&run_dir(rec).join(record::EXIT_FILE)).ok()
}

/// `exit-INSTANCE.json` in the run directory: the exit of that instance
/// alone, which a later instance's `exit.json` cannot overwrite before a
/// `start --wait` of this one has read it.
fn own_exit_path(rec: &JailRecord, instance: &str) -> PathBuf {
    run_dir(rec).join(format!("exit-{instance}.json"))
}

/// How long an instance's own exit file is kept for a waiter that never
/// came back for it.
const OWN_EXIT_KEPT: Duration = Duration::from_secs(600);

/// The exit of `instance`: its own file, else `exit.json` if it names it.
fn exit_of(rec: &JailRecord, instance: &str) -> Option<record::InstanceExit> {
    record::read_json::<record::InstanceExit>(&own_exit_path(rec, instance))
        .ok()
        .or_else(|| instance_exit(rec).filter(|x| x.instance == instance))
}

/// Removes own exit files that no waiter read within [`OWN_EXIT_KEPT`].
fn prune_own_exits(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let stale = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with("exit-"))
            && e.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > OWN_EXIT_KEPT);
        if stale {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Whether a monitor of the jail is alive: its lock is held.
fn monitor_alive(rec: &JailRecord) -> bool {
    let Ok(f) = std::fs::File::open(run_dir(rec).join(record::LOCK_FILE)) else {
        return false;
    };
    // Taken, it is released again when `f` closes (the only fd of it).
    matches!(crate::sys::process::try_flock(f.as_fd()), Ok(false))
}

/// Takes the jail's monitor lock for a new instance, waiting (bounded)
/// for a monitor that is releasing a stopped instance: the run directory
/// is made (root-only) and the last instance's records are cleared. The
/// lock is held by the returned file's open description: the monitor
/// forked with a copy of it holds it for its whole life.
fn claim_monitor_lock(rec: &JailRecord) -> Result<std::fs::File, RuntimeError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = run_dir(rec);
    crate::fsutil::private_dir(&dir).map_err(|e| RuntimeError::RunDir {
        name: rec.name().clone(),
        path: dir.clone(),
        source: std::io::Error::other(crate::error_chain(&e)),
    })?;
    let path = dir.join(record::LOCK_FILE);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map_err(run_err(rec, &path))?;
    let t = Instant::now();
    loop {
        match crate::sys::process::try_flock(f.as_fd()) {
            Ok(true) => break,
            Ok(false) if t.elapsed() < MONITOR_WAIT => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(false) => {
                return Err(RuntimeError::MonitorBusy {
                    name: rec.name().clone(),
                    secs: MONITOR_WAIT.as_secs(),
                })
            }
            Err(e) => return Err(run_err(rec, &path)(e.into())),
        }
    }
    // The last instance's exit.json stays: it names its instance, and a
    // `start --wait` of that instance may still be about to read it (or
    // its own exit-INSTANCE.json, kept a while).
    prune_own_exits(&dir);
    let file = dir.join(record::INSTANCE_FILE);
    match std::fs::remove_file(&file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(run_err(rec, &file)(e)),
        _ => Ok(f),
    }
}

/// Waits (bounded) while a monitor is alive that has not recorded its
/// instance yet (a start whose CLI died between the fork and the report).
fn settle(rec: &JailRecord) {
    let t = Instant::now();
    while t.elapsed() < MONITOR_WAIT && instance(rec).is_none() && monitor_alive(rec) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (bounded) until no monitor of the jail is alive.
fn wait_monitor_gone(rec: &JailRecord) -> Result<(), RuntimeError> {
    let t = Instant::now();
    while monitor_alive(rec) {
        if t.elapsed() > MONITOR_WAIT {
            return Err(RuntimeError::MonitorBusy {
                name: rec.name().clone(),
                secs: MONITOR_WAIT.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Kills and removes every cgroup of the jail but `keep`'s (see
/// [`crate::cgroup::sweep`]).
fn sweep(rec: &JailRecord, keep: Option<&str>) -> Result<(), RuntimeError> {
    crate::cgroup::sweep(
        Path::new(CGROUP_ROOT),
        rec.name(),
        &rec.id,
        keep,
        Duration::from_secs(10),
    )?;
    Ok(())
}

/// `jails/NAME/exit.json`.
pub fn exit_path(pool: &Pool, name: &Name) -> PathBuf {
    pool.jail_dir(name).join("exit.json")
}

/// `jails/NAME/console.log`: what the jail writes to its stdout and stderr,
/// and the monitor's messages; `console.log.1` beside it holds the output
/// before (see [`console`]).
pub fn log_path(pool: &Pool, name: &Name) -> PathBuf {
    pool.jail_dir(name).join(console::CURRENT)
}

/// Takes the lock of an existing jail (waiting, bounded): the pool must be
/// ready (else "not ready", not a failure to lock) and the jail must exist,
/// before and after the wait, so that a verb on a name that is not a jail
/// leaves no lock file behind.
pub(crate) fn lock(pool: &Pool, name: &Name) -> Result<crate::fsutil::Lock, RuntimeError> {
    pool.ensure_ready()?;
    if !pool.jail_dir(name).exists() {
        return Err(RuntimeError::Unknown { name: name.clone() });
    }
    let lock = pool.lock("jail", name, true)?;
    if !pool.jail_dir(name).exists() {
        // Removed while we waited.
        lock.remove();
        return Err(RuntimeError::Unknown { name: name.clone() });
    }
    Ok(lock)
}

fn read(pool: &Pool, name: &Name) -> Result<JailRecord, RuntimeError> {
    pool.ensure_ready()?;
    if !pool.jail_dir(name).exists() {
        return Err(RuntimeError::Unknown { name: name.clone() });
    }
    record::read_jail(&pool.jail_json(name)).map_err(|source| RuntimeError::Broken {
        name: name.clone(),
        source,
    })
}

/// Records a state transition. Atomic (temp file, rename) but not fsynced:
/// what a transition records is re-derived from the kernel after a crash
/// (the boot id and start times tell a dead jail from a running one), and a
/// rename over an existing file on btrfs flushes its data first, so a crash
/// leaves the old record or the new one, never an empty one. The spec and
/// the id range, which cannot be re-derived, were written durably by create.
fn write(pool: &Pool, rec: &JailRecord) -> Result<(), RuntimeError> {
    let json = serde_json::to_vec_pretty(rec).unwrap_or_default();
    pool.write_record(|| crate::fsutil::write_unsynced(&pool.jail_json(rec.name()), &json))
        .map(drop)
        .map_err(|source| RuntimeError::Record {
            name: rec.name().clone(),
            source,
        })
}

/// Updates `jail.json`'s cache of the derived state, best effort: the
/// state is re-derived from the instance by every reader, so a full pool
/// (or any failure here) never fails a verb whose kernel-side work is done.
fn write_cache(pool: &Pool, rec: &JailRecord) {
    if let Err(e) = write(pool, rec) {
        tracing::warn!(jail = %rec.name(), error = %crate::error_chain(&e), "jail.json not updated (its state is derived anyway)");
    }
}

/// Makes the record the truth before a verb acts on it (call with the
/// jail's lock held): the state derived from the instance (see
/// [`observe`]), written back to `jail.json`'s cache when it differs, and
/// every cgroup of the jail that no live instance owns (a killed monitor's,
/// a killed start's) killed and removed.
fn reconcile(pool: &Pool, rec: &mut JailRecord) -> Result<(), RuntimeError> {
    let derived = observe(pool, rec.clone());
    let inst = instance(rec);
    let live = matches!(derived.state, State::Running | State::Frozen);
    // The live instance's group is its own (a monitor releasing a stopped
    // instance's group too); every other group of the jail is left over.
    let monitor = monitor_alive(rec);
    let keep = match (&derived.runtime, &inst) {
        (Some(rt), _) if live => Some(rt.instance.clone()),
        (_, Some(i)) if monitor => Some(i.runtime.instance.clone()),
        _ => None,
    };
    // A monitor that has not recorded its instance within the wait: its
    // group is unknown, so nothing is touched.
    if !(inst.is_none() && monitor) {
        let keep = keep.map(|i| crate::cgroup::dir_name(rec.name(), &rec.id, &i));
        sweep(rec, keep.as_deref())?;
    }
    if derived != *rec {
        write_cache(pool, &derived);
    }
    *rec = derived;
    Ok(())
}

fn wait_empty(cg: &JailCgroup, limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if cg.procs().is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cg.procs().is_empty()
}

/// The record with its state derived from the instance (see
/// [`record::derive`]), for `ls`, `inspect` and every verb. Writes nothing
/// to the pool; an instance found dead without an exit record (its monitor
/// was killed) gets one in its run directory, so that its `finished_at`
/// is when it was first found dead, the same on every later look.
pub fn observe(pool: &Pool, rec: JailRecord) -> JailRecord {
    // A start in flight (or whose CLI was killed) is shown once its monitor
    // has recorded the instance or given up: never `created` while it runs.
    settle(&rec);
    let rec = record::derive(
        Path::new(PROC),
        Path::new(record::RUN_ROOT),
        &pool.jail_dir(rec.name()),
        rec,
    );
    if rec.state == State::Stopped {
        if let Some(inst) = instance(&rec) {
            let path = run_dir(&rec).join(record::EXIT_FILE);
            let recorded = instance_exit(&rec).is_some_and(|x| x.instance == inst.runtime.instance);
            if !recorded && !monitor_alive(&rec) {
                let e = record::InstanceExit {
                    instance: inst.runtime.instance,
                    exit: ExitRecord {
                        exit_code: rec.exit_code,
                        signal: None,
                        oom_killed: rec.oom_killed,
                        finished_at: rec.finished_at.unwrap_or_else(record::now),
                    },
                };
                let json = serde_json::to_vec_pretty(&e).unwrap_or_default();
                let _ = crate::fsutil::atomic_write(&path, &json);
            }
        }
    }
    rec
}

/// `jailer start NAME`: runs the jail's command as its init, through a
/// monitor that outlives this process. Returns once the command is exec'd,
/// or with the reason it could not be.
///
/// The calling process must have one thread: the monitor is forked from it.
pub fn start(pool: &Pool, name: &Name) -> Result<JailRecord, RuntimeError> {
    pool.ensure_confined()?;
    let _lock = lock(pool, name)?;
    let mut rec = read(pool, name)?;
    // Whatever the record says: an instance whose init lives (its monitor
    // alive or not) is running, and a second one is never started.
    reconcile(pool, &mut rec)?;
    match rec.state {
        State::Created | State::Stopped => {}
        s => {
            return Err(RuntimeError::Illegal {
                name: name.clone(),
                state: s,
                verb: "start",
                hint: if s == State::Creating {
                    ""
                } else {
                    " (it is already running); stop it first"
                },
            })
        }
    }
    check_net(&rec.spec)?;
    // The record's id range must be the one the host allocated to this jail
    // (a jail.json edited to `uid_base: 0` would make its root host root).
    crate::ids::Registry::host().verify(pool.root(), name.as_str(), &rec.id, rec.ids)?;
    // The last monitor is gone once we hold its lock; what it (or a killed
    // start) left in the cgroups goes.
    let mlock = claim_monitor_lock(&rec)?;
    sweep(&rec, None)?;
    let monitor = spawn_monitor(pool, &rec, &mlock)?;
    drop(mlock);
    finish_start(pool, rec, monitor)
}

/// `jailer run`: creates the jail and starts it. The monitor is spawned
/// before the snapshot is taken, so that making the cgroup and cloning init
/// into its namespaces overlap the snapshot's transaction commit.
///
/// The calling process must have one thread: the monitor is forked from it.
pub fn run(pool: &Pool, spec: crate::spec::JailSpec) -> Result<JailRecord, crate::jail::JailError> {
    if spec.command.is_empty() {
        return Err(RuntimeError::NoCommand { name: spec.name }.into());
    }
    pool.ensure_confined().map_err(RuntimeError::from)?;
    check_net(&spec)?;
    let (rec, _lock, monitor) = crate::jail::create_with(pool, spec, |rec| {
        let mlock = claim_monitor_lock(rec)?;
        Ok(spawn_monitor(pool, rec, &mlock)?)
    })?;
    Ok(finish_start(pool, rec, monitor)?)
}

/// Refuses a network the runtime cannot make: a jail is never started
/// without the network its spec asks for. (Only `none`, a private loopback,
/// is made today; macvlan is recorded in the spec for a later version.)
fn check_net(spec: &crate::spec::JailSpec) -> Result<(), RuntimeError> {
    match &spec.net {
        crate::spec::NetSpec::None => Ok(()),
        other => Err(RuntimeError::NetUnsupported {
            name: spec.name.clone(),
            net: other.to_string(),
        }),
    }
}

/// A monitor that has been spawned but not yet told that the rootfs is
/// ready. Dropped unfinished, it is told to give up and reaped.
#[derive(Debug)]
pub struct Monitor {
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

/// Whether this process has exactly one thread (from `/proc/self/stat`).
fn single_threaded() -> bool {
    crate::procinfo::Proc::host()
        .stat("self")
        .is_some_and(|s| s.num_threads == 1)
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
fn spawn_monitor(
    pool: &Pool,
    rec: &JailRecord,
    monitor_lock: &std::fs::File,
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
    if !single_threaded() {
        return Err(RuntimeError::Monitor {
            name: name.clone(),
            source: std::io::Error::other(
                "the monitor must be forked from a single-threaded process",
            ),
        });
    }
    let _ = std::io::stdout().flush();
    // SAFETY: this process has one thread (checked just above), so the
    // child is a complete copy in which std, the allocator and every lock
    // are in a consistent state. The child never returns into the caller's
    // frames: it ends in `_exit`, so no destructor of the CLI runs twice.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(RuntimeError::Monitor {
            name: name.clone(),
            source: e.into(),
        }),
        Ok(nix::unistd::ForkResult::Child) => {
            // Lift the three above stdio first: a CLI started with closed
            // stdio gets them as 0-2, and one dup2 would clobber another.
            // SAFETY: fcntl(F_DUPFD) only duplicates a descriptor we own.
            let lift = |fd: i32| unsafe { libc::fcntl(fd, libc::F_DUPFD, 10) };
            let fds = [
                lift(ready_r.as_raw_fd()),
                lift(report_w.as_raw_fd()),
                lift(log.as_raw_fd()),
                lift(monitor_lock.as_raw_fd()),
            ];
            // `ps` and `top` show it as the monitor (its argv stays the
            // CLI's: `jailer start NAME`).
            // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most
            // 16 bytes, which this literal is.
            unsafe { libc::prctl(libc::PR_SET_NAME, c"jailer-monitor".as_ptr()) };
            let wired = nix::unistd::setsid().is_ok()
                && fds.iter().all(|fd| *fd >= 10)
                && (0..4).all(|i| nix::unistd::dup2(fds[i], i as i32).is_ok());
            // Every fd but stdio and the monitor lock (fd 3, held for this
            // process's whole life) goes, the CLI's lock files first among
            // them. (`dup2` clears close-on-exec on 0-3; fd 3 gets it back,
            // so that init's exec drops its copy.) The OwnedFds of this
            // frame are never dropped: `_exit` below does not return.
            // SAFETY: close_range(2) only closes descriptors.
            let closed =
                unsafe { libc::close_range(MONITOR_LOCK_FD as u32 + 1, libc::c_uint::MAX, 0) } == 0
                    && nix::fcntl::fcntl(
                        MONITOR_LOCK_FD,
                        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
                    )
                    .is_ok();
            let code = if wired && closed {
                monitor_main(pool, rec)
            } else {
                1
            };
            // SAFETY: _exit(2) ends the process without running the CLI's
            // destructors or atexit handlers in this copy of it.
            unsafe { libc::_exit(code) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(Monitor {
            name: name.clone(),
            pid: child,
            ready: Some(std::fs::File::from(ready_w)),
            report: Some(std::fs::File::from(report_r)),
            detached: false,
        }),
    }
}

/// The monitor's copy of its lock (see [`claim_monitor_lock`]).
const MONITOR_LOCK_FD: i32 = 3;

/// Tells the monitor the rootfs is ready, waits for its report (the exec, or
/// why it failed) and records the running jail.
fn finish_start(
    pool: &Pool,
    mut rec: JailRecord,
    mut m: Monitor,
) -> Result<JailRecord, RuntimeError> {
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

/// Like [`Signal::from_str`], accepting `TERM`, `SIGTERM`, `15`.
pub fn parse_signal(s: &str) -> Option<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let up = s.to_ascii_uppercase();
    let full = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    full.parse().ok()
}

fn running(pool: &Pool, name: &Name, verb: &'static str) -> Result<JailRecord, RuntimeError> {
    let mut rec = read(pool, name)?;
    reconcile(pool, &mut rec)?;
    match rec.state {
        State::Running | State::Frozen => Ok(rec),
        s => Err(RuntimeError::Illegal {
            name: name.clone(),
            state: s,
            verb,
            hint: "; start it first",
        }),
    }
}

/// `jailer kill NAME [--signal SIG]`: signals every process of the jail.
pub fn kill(pool: &Pool, name: &Name, signal: Signal) -> Result<(), RuntimeError> {
    let _lock = lock(pool, name)?;
    let rec = running(pool, name, "signal")?;
    JailCgroup::load(&rec).signal_all(signal);
    Ok(())
}

/// `jailer freeze NAME`.
pub fn freeze(pool: &Pool, name: &Name) -> Result<(), RuntimeError> {
    let _lock = lock(pool, name)?;
    let mut rec = running(pool, name, "freeze")?;
    if rec.state == State::Frozen {
        return Err(RuntimeError::Illegal {
            name: name.clone(),
            state: rec.state,
            verb: "freeze",
            hint: " (already)",
        });
    }
    // The freezer is the truth (read back by every verb): the cache write
    // after it cannot fail the verb.
    JailCgroup::load(&rec).freeze()?;
    rec.state = State::Frozen;
    write_cache(pool, &rec);
    Ok(())
}

/// `jailer thaw NAME`.
pub fn thaw(pool: &Pool, name: &Name) -> Result<(), RuntimeError> {
    let _lock = lock(pool, name)?;
    let mut rec = running(pool, name, "thaw")?;
    if rec.state != State::Frozen {
        return Err(RuntimeError::Illegal {
            name: name.clone(),
            state: rec.state,
            verb: "thaw",
            hint: " (it is not frozen)",
        });
    }
    JailCgroup::load(&rec).thaw()?;
    rec.state = State::Running;
    write_cache(pool, &rec);
    Ok(())
}

/// `jailer stop NAME [--timeout S]`: SIGTERM to init, then after `timeout`
/// SIGKILL to every process of the jail; returns when everything the jail
/// held is released.
pub fn stop(pool: &Pool, name: &Name, timeout: Duration) -> Result<JailRecord, RuntimeError> {
    let _lock = lock(pool, name)?;
    let rec = running(pool, name, "stop")?;
    stop_locked(pool, rec, timeout)
}

/// Stops the jail, whoever holds it (its monitor alive or killed, frozen or
/// not): SIGTERM to init (thawed, so it can act), then every cgroup of the
/// jail killed, emptied and removed; returns once that is done and the
/// monitor (if alive) has recorded the exit and exited.
fn stop_locked(
    pool: &Pool,
    mut rec: JailRecord,
    timeout: Duration,
) -> Result<JailRecord, RuntimeError> {
    let name = rec.name().clone();
    let proc_root = Path::new(PROC);
    if let Some(rt) = rec.runtime.clone() {
        let init = nix::unistd::Pid::from_raw(rt.init.pid);
        if record::is_alive(proc_root, &rt.init) {
            let _ = nix::sys::signal::kill(init, Signal::SIGTERM);
            if rec.state == State::Frozen {
                // A frozen init cannot act on SIGTERM: give it the chance.
                let _ = JailCgroup::load(&rec).thaw();
            }
        }
        let t = Instant::now();
        while t.elapsed() < timeout && record::is_alive(proc_root, &rt.init) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // Everything the jail holds, in every instance's group.
    sweep(&rec, None).map_err(|e| match e {
        RuntimeError::Cgroup(CgroupError::Busy { .. }) => RuntimeError::StopTimeout {
            name: name.clone(),
            secs: 10,
        },
        e => e,
    })?;
    // The monitor reaps init, writes exit.json and exits.
    wait_monitor_gone(&rec)?;
    reconcile(pool, &mut rec)?;
    Ok(rec)
}

/// Stops the jail if it runs (for `rm --force`), with the jail's lock held by
/// the caller.
pub fn stop_if_running(pool: &Pool, name: &Name) -> Result<(), RuntimeError> {
    let mut rec = read(pool, name)?;
    reconcile(pool, &mut rec)?;
    if matches!(rec.state, State::Running | State::Frozen) {
        stop_locked(pool, rec, Duration::from_secs(10))?;
    }
    Ok(())
}

/// Before `rm` deletes a stopped jail (its lock held by the caller): waits
/// for its monitor to exit, kills and removes whatever is left in any of
/// its cgroups, and removes its run directory; fails (so `rm` keeps the
/// jail) while anything of it is left.
pub fn release(rec: &JailRecord) -> Result<(), RuntimeError> {
    wait_monitor_gone(rec)?;
    sweep(rec, None)?;
    let dir = run_dir(rec);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(run_err(rec, &dir)(e)),
        _ => Ok(()),
    }
}

/// Writes a status line for the CLI to the monitor's stdout and closes it.
fn report(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    // Point fd 1 at /dev/null so the CLI sees EOF.
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
    }
}

/// The monitor, in the forked child. Runs for the jail's whole life.
fn monitor_main(pool: &Pool, rec: &JailRecord) -> i32 {
    let name = rec.name();
    // Terminal and session signals must not take the jail down.
    for s in [Signal::SIGHUP, Signal::SIGINT, Signal::SIGPIPE] {
        // SAFETY: SIG_IGN installs no handler code; always sound.
        let _ = unsafe { nix::sys::signal::signal(s, nix::sys::signal::SigHandler::SigIgn) };
    }
    let limits = Limits {
        memory: rec.spec.memory,
        cpus: rec.spec.cpus,
        pids: Some(rec.spec.pids.unwrap_or(crate::spec::DEFAULT_PIDS)),
        io_weight: rec.spec.io_weight,
    };
    let instance = new_instance_id();
    let cg = match JailCgroup::create(rec, &instance, &limits) {
        Ok(c) => c,
        Err(e) => {
            report(&format!("error {}", escape(&crate::error_chain(&e))));
            return 1;
        }
    };
    // The console: fd 2 is the log file, which only this process writes; the
    // jail gets the write end of a pipe as its stdout and stderr.
    let mut log = match monitor_log(pool, rec) {
        Ok(l) => l,
        Err(e) => {
            report(&format!("error {}", escape(&crate::error_chain(&e))));
            let _ = cg.delete();
            return 1;
        }
    };
    let (console_r, console_w) = match console_pipe(name) {
        Ok(p) => p,
        Err(e) => {
            report(&format!("error {}", escape(&crate::error_chain(&e))));
            let _ = cg.delete();
            return 1;
        }
    };
    let started = match launch(pool, rec, &cg, console_w.as_fd()) {
        Ok(s) => s,
        Err(e) => {
            cg.signal_all(Signal::SIGKILL);
            wait_empty(&cg, Duration::from_secs(5));
            let _ = cg.delete();
            let msg = match &e {
                RuntimeError::StartFailed { message, .. } => message.clone(),
                other => crate::error_chain(other),
            };
            // The report is one line; the message may quote the spec.
            let msg = escape(&msg);
            report(&format!("error {msg}"));
            log.note(&format!("jailer-monitor: {name}: start failed: {msg}"));
            return 1;
        }
    };
    drop(console_w);
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
        instance,
    };
    // The instance is on record (where a full pool cannot block it) before
    // anyone is told it runs: a CLI killed from here on leaves a jail that
    // every reader sees running.
    let inst = InstanceRecord {
        runtime: runtime.clone(),
        started_at: record::now(),
    };
    let json = serde_json::to_vec_pretty(&inst).unwrap_or_default();
    if let Err(e) = crate::fsutil::atomic_write(&run_dir(rec).join(record::INSTANCE_FILE), &json) {
        log.note(&format!(
            "jailer-monitor: {name}: cannot record the instance: {}",
            escape(&crate::error_chain(&e))
        ));
    }
    report(&format!(
        "ok {}",
        serde_json::to_string(&runtime).unwrap_or_default()
    ));

    // Copy the jail's output into the log until init (the only child) exits;
    // reap it, then take what it wrote last (already in the pipe).
    let mut buf = vec![0u8; 64 << 10];
    let (code, signal) = pump_until_exit(&mut log, &console_r, &mut buf, started);
    let mut open = pump(&mut log, &console_r, &mut buf, 16 << 20);
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
        open = pump(&mut log, &console_r, &mut buf, 16 << 20);
    }
    drop(console_r);
    wait_empty(&cg, Duration::from_secs(10));
    if let Err(e) = cg.delete() {
        log.note(&format!(
            "jailer-monitor: {name}: {}",
            escape(&crate::error_chain(&e))
        ));
    }
    0
}

/// A fresh instance id: [`crate::cgroup::INSTANCE_ID_LEN`] hex digits.
fn new_instance_id() -> String {
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
fn monitor_log(pool: &Pool, rec: &JailRecord) -> Result<console::LogWriter, RuntimeError> {
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
fn console_pipe(name: &Name) -> Result<(OwnedFd, OwnedFd), RuntimeError> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let err = |e: nix::Error| sys(name, "cannot make the console pipe")(e.into());
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(err)?;
    fcntl(r.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(err)?;
    Ok((r, w))
}

/// Copies what the console pipe holds into the log, `budget` bytes at most
/// (so that init's exit is noticed under a flood); false at EOF (no writer
/// left).
fn pump(log: &mut console::LogWriter, pipe: &OwnedFd, buf: &mut [u8], budget: usize) -> bool {
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
fn readable(fd: &OwnedFd, timeout: Duration) -> bool {
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
fn pump_until_exit(
    log: &mut console::LogWriter,
    pipe: &OwnedFd,
    buf: &mut [u8],
    init: nix::unistd::Pid,
) -> (Option<i32>, Option<i32>) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    // Our unreaped child: its pid cannot be reused before the waitpid below.
    let init_fd = open_pidfd(init.as_raw());
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
fn launch(
    pool: &Pool,
    rec: &JailRecord,
    cg: &JailCgroup,
    console: std::os::fd::BorrowedFd<'_>,
) -> Result<nix::unistd::Pid, RuntimeError> {
    let name = rec.name();
    let rootfs = pool.jail_rootfs(name);
    let plan = init::Plan::new(rec, &rootfs, None).map_err(|e| RuntimeError::StartFailed {
        name: name.clone(),
        message: e,
    })?;
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
    let setup = (|| -> Result<(), RuntimeError> {
        write_id_maps(name, child, rec)?;
        // Under `jailer run` the snapshot is being committed meanwhile.
        rootfs_ready(name)?;
        let userns = std::fs::File::open(format!("/proc/{child}/ns/user"))
            .map_err(sys(name, "cannot open the jail's user namespace"))?;
        // The jail's view: idmapped, nodev, suid (see mountapi::idmap).
        let tree = mountapi::clone_tree(&rootfs)?;
        mountapi::idmap(tree.as_fd(), userns.as_fd(), &rootfs)?;
        init::send_go(&parent_sock, tree.as_fd())
            .map_err(|e| sys(name, "cannot hand the rootfs to the jail's init")(e.into()))
    })();
    if let Err(e) = setup {
        let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(child, None);
        return Err(e);
    }
    drop(parent_sock);
    // The pipe is close-on-exec: EOF means the command was exec'd; anything
    // else is the setup step that failed.
    let mut msg = String::new();
    let mut f = std::fs::File::from(err_r);
    let _ = std::io::Read::read_to_string(&mut f, &mut msg);
    if !msg.is_empty() {
        let _ = nix::sys::wait::waitpid(child, None);
        return Err(RuntimeError::StartFailed {
            name: name.clone(),
            message: msg,
        });
    }
    Ok(child)
}

/// Waits for the CLI's word (one byte on stdin) that the rootfs exists.
fn rootfs_ready(name: &Name) -> Result<(), RuntimeError> {
    let mut b = [0u8; 1];
    match std::io::Read::read(&mut std::io::stdin(), &mut b) {
        Ok(1) => Ok(()),
        _ => Err(RuntimeError::StartFailed {
            name: name.clone(),
            message: "start was abandoned before the rootfs was ready".into(),
        }),
    }
}

fn write_id_maps(name: &Name, pid: nix::unistd::Pid, rec: &JailRecord) -> Result<(), RuntimeError> {
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

/// An owned fd, for the child side (kept here so `init` needs no imports).
pub type Fd = OwnedFd;

/// A pidfd for `p`, if it is still the process recorded (the start time is
/// checked after the pidfd is open, so a reused pid is never waited for).
fn pidfd(p: &ProcRef) -> Option<OwnedFd> {
    let fd = open_pidfd(p.pid)?;
    record::is_alive(Path::new(PROC), p).then_some(fd)
}

/// pidfd_open(2) of `pid`, whatever process that is now.
fn open_pidfd(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the kernel just returned this fd; we own it.
    Some(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Whether the process behind `fd` exited within `timeout` (`None`: wait
/// as long as it takes).
fn exited_within(fd: &OwnedFd, timeout: Option<Duration>) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let t = timeout.map_or(PollTimeout::NONE, |d| {
        PollTimeout::try_from(d).unwrap_or(PollTimeout::MAX)
    });
    loop {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, t) {
            Err(nix::Error::EINTR) => continue,
            Ok(0) => return false,
            _ => return true,
        }
    }
}

/// Blocks until `p` has exited (a pidfd, so no polling loop and no pid
/// reuse race).
fn wait_exit(p: &ProcRef) {
    if let Some(fd) = pidfd(p) {
        exited_within(&fd, None);
    }
}

/// The jail's last monitor (of the running instance, or of the last one).
fn monitor_of(rec: &JailRecord) -> Option<ProcRef> {
    rec.runtime
        .as_ref()
        .map(|rt| rt.monitor)
        .or_else(|| instance(rec).map(|i| i.runtime.monitor))
}

/// Waits until the jail's init has exited and its monitor has released
/// everything, then returns the stopped record (with the exit status).
pub fn wait(pool: &Pool, name: &Name) -> Result<JailRecord, RuntimeError> {
    wait_echo(pool, name, None, None)
}

/// Where the console log ends now: where the output of a start begins
/// (`None`: no log yet, so all of it).
pub fn log_position(pool: &Pool, name: &Name) -> Option<console::Position> {
    console::position(&pool.jail_dir(name))
}

/// Like [`wait`], and copies what the jail writes to its console log from
/// `from` on (`Some(None)`: all of it) to `out`, as it comes, following the
/// log across rotations (for `start --wait` and `run --rm`, whose user would
/// otherwise never see it: `--rm` removes the log). A failing `out` (a
/// closed pipe) ends the copy, never the wait.
///
/// `started`: the record `start` returned, whose instance is waited for
/// (another start may follow it at once); `None`: the running one.
pub fn wait_echo(
    pool: &Pool,
    name: &Name,
    started: Option<&JailRecord>,
    echo: Option<(Option<console::Position>, &mut dyn Write)>,
) -> Result<JailRecord, RuntimeError> {
    let rec = match started {
        Some(r) => r.clone(),
        None => observe(pool, read(pool, name)?),
    };
    let dir = pool.jail_dir(name);
    let mut echo = echo.map(|(from, out)| {
        let f = console::Follower::new(dir.clone(), rec.spec.log_size, from);
        (f, out)
    });
    let mut buf = vec![0u8; 64 << 10];
    let mut copy = |echo: &mut Option<(console::Follower, &mut dyn Write)>| {
        if let Some((f, out)) = echo {
            if f.copy_new(&mut buf, *out, None).is_err() {
                *echo = None;
            }
        }
    };
    if let Some(rt) = &rec.runtime {
        if let Some(init) = pidfd(&rt.init) {
            // Poll the log while init runs; its exit ends the poll at once.
            let tick = echo.is_some().then_some(Duration::from_millis(100));
            loop {
                copy(&mut echo);
                if exited_within(&init, tick) {
                    break;
                }
            }
        }
    }
    // The monitor drains the jail's last output, then exits.
    if let Some(m) = monitor_of(&rec) {
        wait_exit(&m);
    }
    copy(&mut echo);
    let _lock = lock(pool, name)?;
    let mut now = read(pool, name)?;
    reconcile(pool, &mut now)?;
    // The exit of the instance waited for, though another may run now.
    if let Some(rt) = &rec.runtime {
        let other = now.runtime.as_ref().map(|r| &r.instance) != Some(&rt.instance);
        let mine = exit_of(&rec, &rt.instance);
        // Read: the waiter owned it.
        let _ = std::fs::remove_file(own_exit_path(&rec, &rt.instance));
        if let (true, Some(x)) = (other, mine) {
            now.state = State::Stopped;
            now.runtime = None;
            now.started_at = rec.started_at;
            now.finished_at = Some(x.exit.finished_at);
            now.exit_code = x.exit.status();
            now.oom_killed = x.exit.oom_killed;
        }
    }
    Ok(now)
}

/// `jailer logs NAME [--follow]`: copies the console log to `out`, the
/// rotated part first, as the jail wrote it (the jail's own bytes, not
/// escaped); with `follow`, keeps copying, across rotations, until the jail
/// stops and its monitor has written the last of it.
pub fn logs(
    pool: &Pool,
    name: &Name,
    follow: bool,
    out: &mut dyn Write,
) -> Result<(), RuntimeError> {
    let rec = read(pool, name)?;
    let dir = pool.jail_dir(name);
    if !follow && !dir.join(console::CURRENT).exists() && !dir.join(console::ROTATED).exists() {
        return Ok(());
    }
    let mut f = console::Follower::new(dir, rec.spec.log_size, None);
    let mut buf = vec![0u8; 64 << 10];
    let mut drain = |f: &mut console::Follower, stop_at: Option<u64>| {
        f.copy_new(&mut buf, out, stop_at)
            .map_err(sys(name, "cannot copy the console log out"))
    };
    if !follow {
        // What is there now: a chatty jail does not keep this going.
        let stop_at = f.current_ino();
        return drain(&mut f, stop_at);
    }
    loop {
        drain(&mut f, None)?;
        let rec = observe(pool, read(pool, name)?);
        let monitor = monitor_of(&rec);
        if !matches!(rec.state, State::Running | State::Frozen) {
            // What the jail wrote before it stopped, once the monitor has
            // drained it.
            if let Some(m) = monitor {
                wait_exit(&m);
            }
            return drain(&mut f, None);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
