//! Running jails: the verbs start, stop, kill, freeze, thaw, wait,
//! observe and release (here), and the reconciliation of records with what
//! the kernel reports.
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
//! namespaces, is `init::setup`.
//!
//! Each start is an instance: its own id and cgroup, a monitor holding the
//! jail's monitor lock for exactly its life, and `instance.json` written by
//! that monitor (in [`record::RUN_ROOT`], where a full pool cannot block it)
//! before it reports the start. A jail's state is derived from its instance
//! ([`observe`]); `jail.json`'s state is a cache, and every verb reconciles
//! it and sweeps the cgroups no live instance owns (`reconcile`).
//!
//! The submodules, by concern: `instance` (the run directory, the instance
//! and exit files, the monitor lock, settle, sweep and reconcile), `monitor`
//! (spawning the monitor and its life: launch, console pipe, id maps),
//! `logs` ([`logs()`], [`wait_echo`], [`log_position`]), [`init`] (the jail's
//! init), [`exec`] (`exec` and `ps`) and [`console`] (the console log). Every
//! fork and raw syscall is in [`crate::sys`], with the code that must be
//! trusted to be sound.

pub mod console;
pub mod exec;
pub mod init;
mod instance;
mod logs;
pub mod maintenance;
mod monitor;

pub use instance::run_dir;
pub use logs::{log_position, logs, wait_echo, LogOptions};

pub(crate) use instance::claim_monitor_lock;
pub(crate) use monitor::{finish_start, spawn_monitor};

use crate::cgroup::{CgroupError, JailCgroup};
use crate::fsutil::FsError;
use crate::name::Name;
use crate::pool::{Pool, PoolError};
use crate::record::{self, ExitRecord, JailRecord, RecordError, State};
use crate::sys::mountapi::MountApiError;
use instance::{
    instance, instance_exit, monitor_alive, reconcile, run_err, settle, sweep, wait_monitor_gone,
};
use nix::sys::signal::Signal;
use std::os::fd::OwnedFd;
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
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
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
    #[error("cannot stage the packages for jail {name} at {}", path.display())]
    Staging {
        name: Name,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("installing packages into jail {name} failed: the install {how}; its output ended: {output}")]
    InstallFailed {
        name: Name,
        how: String,
        output: String,
    },
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
                hint: match s {
                    State::Creating => "",
                    State::Restarting => {
                        " (its restart policy starts it again); `jailer stop` ends the policy"
                    }
                    _ => " (it is already running); stop it first",
                },
            })
        }
    }
    // The host may have changed since create (a parent gone or down), or
    // another jail taken an address.
    crate::net::check(pool, &rec.spec, &rec.id)?;
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

/// `jailer install NAME FILE.deb.. [--repo DIR]`: installs or upgrades
/// packages in an existing jail that is not running, with the jail's own
/// `dpkg` inside it (see [`maintenance`]). `echo`: where the install's
/// output goes as it comes (a terminal).
///
/// The calling process must have one thread: the monitor is forked from it.
pub fn install(
    pool: &Pool,
    name: &Name,
    req: &maintenance::Install,
    echo: Option<&mut dyn std::io::Write>,
) -> Result<JailRecord, RuntimeError> {
    pool.ensure_confined()?;
    let _lock = lock(pool, name)?;
    let mut rec = read(pool, name)?;
    reconcile(pool, &mut rec)?;
    match rec.state {
        State::Created | State::Stopped => {}
        s => {
            return Err(RuntimeError::Illegal {
                name: name.clone(),
                state: s,
                verb: "install packages into",
                hint:
                    "; packages go into a stopped jail: `jailer stop` it first, then start it again",
            })
        }
    }
    maintenance::install_locked(pool, &rec, req, echo)?;
    Ok(observe(pool, rec))
}

/// Installs packages into a jail `create` has just made (its lock held
/// by the caller).
pub(crate) fn install_new(
    pool: &Pool,
    rec: &JailRecord,
    req: &maintenance::Install,
    echo: Option<&mut dyn std::io::Write>,
) -> Result<(), RuntimeError> {
    pool.ensure_confined()?;
    maintenance::install_locked(pool, rec, req, echo)
}

/// Like `Signal::from_str`, accepting `TERM`, `SIGTERM`, `15`.
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
        State::Restarting if verb == "stop" => Ok(rec),
        s => Err(RuntimeError::Illegal {
            name: name.clone(),
            state: s,
            verb,
            hint: if s == State::Restarting {
                " until its restart policy has started it again; `jailer stop` ends the policy"
            } else {
                "; start it first"
            },
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
    set_frozen(pool, name, true)
}

/// `jailer thaw NAME`.
pub fn thaw(pool: &Pool, name: &Name) -> Result<(), RuntimeError> {
    set_frozen(pool, name, false)
}

/// Freezes (`frozen`) or thaws a running jail; refused when it is already
/// so. The freezer is the truth (read back by every verb): the cache write
/// after it cannot fail the verb.
fn set_frozen(pool: &Pool, name: &Name, frozen: bool) -> Result<(), RuntimeError> {
    let verb = if frozen { "freeze" } else { "thaw" };
    let _lock = lock(pool, name)?;
    let mut rec = running(pool, name, verb)?;
    if (rec.state == State::Frozen) == frozen {
        return Err(RuntimeError::Illegal {
            name: name.clone(),
            state: rec.state,
            verb,
            hint: if frozen {
                " (already)"
            } else {
                " (it is not frozen)"
            },
        });
    }
    let cg = JailCgroup::load(&rec);
    if frozen {
        cg.freeze()?;
        rec.state = State::Frozen;
    } else {
        cg.thaw()?;
        rec.state = State::Running;
    }
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
    // First: its monitor starts nothing again (a restart policy ends).
    let marker = run_dir(&rec).join(record::STOP_FILE);
    crate::fsutil::atomic_write(&marker, b"").map_err(|e| RuntimeError::RunDir {
        name: name.clone(),
        path: marker.clone(),
        source: std::io::Error::other(crate::error_chain(&e)),
    })?;
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
    // Everything the jail holds, in every instance's group; again while
    // its monitor lives (a restart it was making as the marker appeared
    // is killed by the monitor itself, or here). The monitor reaps init,
    // writes exit.json and exits.
    let t = Instant::now();
    loop {
        sweep(&rec, None).map_err(|e| match e {
            RuntimeError::Cgroup(CgroupError::Busy { .. }) => RuntimeError::StopTimeout {
                name: name.clone(),
                secs: 10,
            },
            e => e,
        })?;
        if !monitor_alive(&rec) || t.elapsed() > MONITOR_WAIT {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    wait_monitor_gone(&rec)?;
    reconcile(pool, &mut rec)?;
    Ok(rec)
}

/// Stops the jail if it runs (for `rm --force`), with the jail's lock held by
/// the caller.
pub fn stop_if_running(pool: &Pool, name: &Name, timeout: Duration) -> Result<(), RuntimeError> {
    let mut rec = read(pool, name)?;
    reconcile(pool, &mut rec)?;
    if matches!(
        rec.state,
        State::Running | State::Frozen | State::Restarting
    ) {
        stop_locked(pool, rec, timeout)?;
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

/// An owned fd, for the child side (kept here so `init` needs no imports).
pub type Fd = OwnedFd;

/// Waits until the jail's init has exited and its monitor has released
/// everything, then returns the stopped record (with the exit status).
pub fn wait(pool: &Pool, name: &Name) -> Result<JailRecord, RuntimeError> {
    wait_echo(pool, name, None, None)
}
