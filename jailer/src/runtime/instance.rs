//! One instance of a running jail on the host side: its run directory
//! ([`record::RUN_ROOT`]`/<jail id>/`) with `instance.json` and the exit
//! files, the monitor lock that a monitor holds for exactly its life, and
//! the reconciliation every verb does first: waiting for a start in flight
//! (`settle`), sweeping the cgroups no live instance owns (`sweep`), and
//! deriving the state (`reconcile`). Also the pidfd waits on an instance's
//! processes.

use super::{observe, write_cache, RuntimeError, CGROUP_ROOT, MONITOR_WAIT, PROC};
use crate::pool::Pool;
use crate::record::{self, InstanceRecord, JailRecord, ProcRef, State};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `RUN_ROOT/<jail id>/`: the running instance's state (see
/// [`record::RUN_ROOT`]).
pub fn run_dir(rec: &JailRecord) -> PathBuf {
    record::run_dir(Path::new(record::RUN_ROOT), rec)
}

pub(super) fn run_err(
    rec: &JailRecord,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let (name, path) = (rec.name().clone(), path.to_path_buf());
    move |source| RuntimeError::RunDir { name, path, source }
}

/// The instance the jail's last monitor recorded, if any.
pub(super) fn instance(rec: &JailRecord) -> Option<InstanceRecord> {
    record::read_json(&run_dir(rec).join(record::INSTANCE_FILE)).ok()
}

/// The exit the jail's last monitor recorded (of its instance).
pub(super) fn instance_exit(rec: &JailRecord) -> Option<record::InstanceExit> {
    record::read_json(&run_dir(rec).join(record::EXIT_FILE)).ok()
}

/// `exit-INSTANCE.json` in the run directory: the exit of that instance
/// alone, which a later instance's `exit.json` cannot overwrite before a
/// `start --wait` of this one has read it.
pub(super) fn own_exit_path(rec: &JailRecord, instance: &str) -> PathBuf {
    run_dir(rec).join(format!("exit-{instance}.json"))
}

/// How long an instance's own exit file is kept for a waiter that never
/// came back for it.
pub(super) const OWN_EXIT_KEPT: Duration = Duration::from_secs(600);

/// The exit of `instance`: its own file, else `exit.json` if it names it.
pub(super) fn exit_of(rec: &JailRecord, instance: &str) -> Option<record::InstanceExit> {
    record::read_json::<record::InstanceExit>(&own_exit_path(rec, instance))
        .ok()
        .or_else(|| instance_exit(rec).filter(|x| x.instance == instance))
}

/// Removes own exit files that no waiter read within [`OWN_EXIT_KEPT`].
pub(super) fn prune_own_exits(dir: &Path) {
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
pub(super) fn monitor_alive(rec: &JailRecord) -> bool {
    record::monitor_holds_lock(&run_dir(rec))
}

/// Takes the jail's monitor lock for a new instance, waiting (bounded)
/// for a monitor that is releasing a stopped instance: the run directory
/// is made (root-only) and the last instance's records are cleared. The
/// lock is held by the returned file's open description: the monitor
/// forked with a copy of it holds it for its whole life.
pub(crate) fn claim_monitor_lock(rec: &JailRecord) -> Result<std::fs::File, RuntimeError> {
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
    // A stop of the last instance asked its monitor to start nothing
    // again; this start is a new one.
    for stale in [
        record::INSTANCE_FILE,
        record::STOP_FILE,
        record::RESTART_FILE,
    ] {
        let file = dir.join(stale);
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(run_err(rec, &file)(e))
            }
            _ => {}
        }
    }
    Ok(f)
}

/// Waits (bounded) while a monitor is alive that has not recorded its
/// instance yet (a start whose CLI died between the fork and the report).
pub(super) fn settle(rec: &JailRecord) {
    let t = Instant::now();
    while t.elapsed() < MONITOR_WAIT && instance(rec).is_none() && monitor_alive(rec) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (bounded) until no monitor of the jail is alive.
pub(super) fn wait_monitor_gone(rec: &JailRecord) -> Result<(), RuntimeError> {
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
pub(super) fn sweep(rec: &JailRecord, keep: Option<&str>) -> Result<(), RuntimeError> {
    crate::cgroup::sweep(
        Path::new(CGROUP_ROOT),
        rec.name(),
        &rec.id,
        keep,
        Duration::from_secs(10),
    )?;
    Ok(())
}

/// Makes the record the truth before a verb acts on it (call with the
/// jail's lock held): the state derived from the instance (see
/// [`observe`]), written back to `jail.json`'s cache when it differs, and
/// every cgroup of the jail that no live instance owns (a killed monitor's,
/// a killed start's) killed and removed.
pub(super) fn reconcile(pool: &Pool, rec: &mut JailRecord) -> Result<(), RuntimeError> {
    let derived = observe(pool, rec.clone());
    let inst = instance(rec);
    let live = matches!(derived.state, State::Running | State::Frozen);
    // Restarting: its monitor is alive and owns the instance's group (it
    // has released it, or is about to).
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
    // Restarting: its monitor makes and removes the groups of the
    // instances it starts; nothing is touched while it lives.
    let restarting = derived.state == State::Restarting;
    let unknown = inst.is_none() && monitor;
    if !(unknown || restarting) {
        let keep = keep.map(|i| crate::cgroup::dir_name(rec.name(), &rec.id, &i));
        sweep(rec, keep.as_deref())?;
    }
    if derived != *rec {
        write_cache(pool, &derived);
    }
    *rec = derived;
    Ok(())
}

/// A pidfd for `p`, if it is still the process recorded (the start time is
/// checked after the pidfd is open, so a reused pid is never waited for).
pub(super) fn pidfd(p: &ProcRef) -> Option<OwnedFd> {
    let fd = crate::sys::process::pidfd_open(nix::unistd::Pid::from_raw(p.pid)).ok()?;
    record::is_alive(Path::new(PROC), p).then_some(fd)
}

/// Whether the process behind `fd` exited within `timeout` (`None`: wait
/// as long as it takes).
pub(super) fn exited_within(fd: &OwnedFd, timeout: Option<Duration>) -> bool {
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
pub(super) fn wait_exit(p: &ProcRef) {
    if let Some(fd) = pidfd(p) {
        exited_within(&fd, None);
    }
}

/// The jail's last monitor (of the running instance, or of the last one).
pub(super) fn monitor_of(rec: &JailRecord) -> Option<ProcRef> {
    rec.runtime
        .as_ref()
        .map(|rt| rt.monitor)
        .or_else(|| instance(rec).map(|i| i.runtime.monitor))
}
