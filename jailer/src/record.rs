//! `jail.json` and `template.json`: what the pool records, and how it is read
//! back. These types are the read path's whole view of the write path
//! (`jailer-tables` depends on them and nothing else of this crate's state).

use crate::name::Name;
use crate::procinfo::Proc;
use crate::spec::JailSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Format version of `jail.json`.
pub const JAIL_RECORD_VERSION: u32 = 1;

/// The lifecycle state of a jail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// `create` has started and not finished (or was killed: then the record
    /// is reported broken and `create` or `rm` finishes the job).
    Creating,
    Created,
    Running,
    Frozen,
    Stopped,
    /// Its command ended and its restart policy starts it again: the
    /// monitor waits out the backoff (`restart.json`); `stop` ends it.
    Restarting,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Creating => "creating",
            State::Created => "created",
            State::Running => "running",
            State::Frozen => "frozen",
            State::Stopped => "stopped",
            State::Restarting => "restarting",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A contiguous range of host ids that a jail's ids 0..count map onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdRange {
    pub uid_base: u32,
    pub gid_base: u32,
    pub count: u32,
}

/// What `jail.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JailRecord {
    pub version: u32,
    /// A random 128-bit id in hex, unique across re-creations of one name.
    pub id: String,
    pub spec: JailSpec,
    pub state: State,
    pub ids: IdRange,
    /// UNIX seconds.
    pub created_at: u64,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub exit_code: Option<i32>,
    /// The kernel's OOM killer acted in the jail during its last run.
    #[serde(default)]
    pub oom_killed: bool,
    /// Set while the jail runs (state `running` or `frozen`).
    #[serde(default)]
    pub runtime: Option<Runtime>,
    /// How many times its restart policy has started the command again
    /// since the last `start` (0 without a policy).
    #[serde(default)]
    pub restarts: u32,
}

/// A process, identified so that a reused pid is never mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRef {
    pub pid: i32,
    /// Field 22 of `/proc/PID/stat`: start time in clock ticks since boot.
    pub start_time: u64,
}

/// Where a running jail's cgroup lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupRef {
    /// 1 (one directory per controller) or 2 (one unified directory).
    pub version: u8,
    /// v1: controller name (`memory`, `cpu`, `cpuacct`, `pids`, `freezer`,
    /// `blkio`, ...) to absolute directory; v2: `unified` to the directory.
    pub paths: std::collections::BTreeMap<String, PathBuf>,
}

/// What a running jail holds on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    /// `/proc/sys/kernel/random/boot_id` when started: after a reboot
    /// nothing recorded here is alive, whatever the pids say.
    pub boot_id: String,
    /// The per-jail monitor, parent of init.
    pub monitor: ProcRef,
    /// The jail's init (pid 1 inside), as a host pid.
    pub init: ProcRef,
    pub cgroup: CgroupRef,
    /// The instance (one per start; empty in records of older versions,
    /// whose cgroup is `jailer/NAME-ID12`).
    #[serde(default)]
    pub instance: String,
}

/// Where running instances keep their state: `RUN_ROOT/<jail id>/`, on
/// tmpfs (a full pool never blocks it; a reboot clears it, as it clears
/// what it describes), root-only.
pub const RUN_ROOT: &str = "/run/jailer";
/// `instance.json` in the run directory: written by the monitor, once the
/// jail's command was exec'd and before it reports the start.
pub const INSTANCE_FILE: &str = "instance.json";
/// `exit.json` in the run directory: written by the monitor when init
/// exits (or by the first verb that finds the instance dead without it).
pub const EXIT_FILE: &str = "exit.json";
/// `monitor.lock` in the run directory: flock'ed for exactly the monitor's
/// lifetime (taken by `start` before the fork, inherited by the monitor).
pub const LOCK_FILE: &str = "monitor.lock";
/// `restart.json` in the run directory: written by a monitor whose jail's
/// command ended and that starts it again (see [`RestartRecord`]).
pub const RESTART_FILE: &str = "restart.json";
/// `stopping` in the run directory: made by `stop` before it signals, so
/// that the monitor starts nothing again; removed by the next `start`.
pub const STOP_FILE: &str = "stopping";

/// What `restart.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartRecord {
    /// The instance that ended.
    pub after: String,
    /// The restart about to be made (1 for the first).
    pub restart: u32,
    /// When, in UNIX seconds.
    pub at: u64,
}

/// `RUN_ROOT/<jail id>`.
pub fn run_dir(run_root: &Path, rec: &JailRecord) -> PathBuf {
    run_root.join(&rec.id)
}

/// What `instance.json` holds: one start of a jail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub runtime: Runtime,
    /// UNIX seconds.
    pub started_at: u64,
    /// Restarts by the restart policy before this instance, since `start`.
    #[serde(default)]
    pub restarts: u32,
}

/// Whether the jail's group is frozen, from the kernel's freezer state
/// (v1 `freezer.state`, v2 `cgroup.freeze`).
pub fn cgroup_frozen(cg: &CgroupRef) -> bool {
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    match (cg.version, cg.paths.get("freezer"), cg.paths.get("unified")) {
        (1, Some(d), _) => matches!(read(d.join("freezer.state")).trim(), "FROZEN" | "FREEZING"),
        (2, _, Some(d)) => read(d.join("cgroup.freeze")).trim() == "1",
        _ => false,
    }
}

/// The record with its state derived from what holds the jail, not from
/// what a CLI wrote: the instance the monitor recorded in `run_root`
/// (running while its init lives, frozen when the kernel's freezer says
/// so, else stopped with the exit the monitor recorded). Without an
/// instance (none since boot, or started by an older version) the
/// record's word, checked against `/proc`. `jail_dir` holds the pool's
/// copy of `exit.json`.
pub fn derive(
    proc_root: &Path,
    run_root: &Path,
    jail_dir: &Path,
    mut rec: JailRecord,
) -> JailRecord {
    if rec.state == State::Creating {
        return rec;
    }
    let dir = run_dir(run_root, &rec);
    let pool_exit = || read_json::<ExitRecord>(&jail_dir.join(EXIT_FILE)).ok();
    let apply_exit = |rec: &mut JailRecord, e: Option<ExitRecord>| {
        rec.state = State::Stopped;
        rec.runtime = None;
        if let Some(e) = e {
            rec.finished_at = Some(e.finished_at);
            rec.exit_code = e.status();
            rec.oom_killed = e.oom_killed;
        }
    };
    let Ok(inst) = read_json::<InstanceRecord>(&dir.join(INSTANCE_FILE)) else {
        let observed = observed_state(proc_root, &rec);
        if observed != rec.state {
            apply_exit(&mut rec, pool_exit());
        }
        return rec;
    };
    let rt = inst.runtime;
    let same_boot = boot_id(proc_root).is_some_and(|b| b == rt.boot_id);
    rec.started_at = Some(inst.started_at);
    rec.restarts = inst.restarts;
    if same_boot && is_alive(proc_root, &rt.init) {
        rec.state = if cgroup_frozen(&rt.cgroup) {
            State::Frozen
        } else {
            State::Running
        };
        rec.runtime = Some(rt);
        rec.finished_at = None;
        rec.exit_code = None;
        rec.oom_killed = false;
    } else {
        // The exit of this instance (a later one's is not its).
        let own = || {
            read_json::<InstanceExit>(&dir.join(EXIT_FILE))
                .ok()
                .filter(|x| x.instance == rt.instance)
                .map(|x| x.exit)
        };
        // Init is dead (or a zombie) and its monitor, alive, is reaping it
        // and recording how it ended: that record is moments away, and a
        // reader that did not wait for it would show an exit without a
        // code or an OOM kill.
        let mut e = own();
        let t = std::time::Instant::now();
        while e.is_none() && same_boot && t.elapsed() < EXIT_WAIT && monitor_holds_lock(&dir) {
            std::thread::sleep(std::time::Duration::from_millis(5));
            e = own();
        }
        let e = e.or_else(pool_exit);
        // Dead without an exit record (its monitor was killed): it stopped
        // no later than now, never "not finished".
        if e.is_none() && rec.finished_at.map_or(true, |f| f < inst.started_at) {
            rec.finished_at = Some(now());
            rec.exit_code = None;
        }
        apply_exit(&mut rec, e);
        // Ended, and its monitor (alive: it holds its lock) starts it again.
        // The monitor records the exit first and decides on a restart after
        // the instance's teardown, so a live monitor without a decision yet
        // is waited for (bounded, as for the exit): until it records the
        // restart (or has already begun the next instance), or exits.
        let decided = || {
            read_json::<RestartRecord>(&dir.join(RESTART_FILE))
                .is_ok_and(|r| r.after == rt.instance)
                || read_json::<InstanceRecord>(&dir.join(INSTANCE_FILE))
                    .is_ok_and(|i| i.runtime.instance != rt.instance)
        };
        let mut again = decided();
        let t = std::time::Instant::now();
        while !again && same_boot && t.elapsed() < EXIT_WAIT && monitor_holds_lock(&dir) {
            std::thread::sleep(std::time::Duration::from_millis(5));
            again = decided();
        }
        if same_boot && again && monitor_holds_lock(&dir) {
            rec.state = State::Restarting;
        }
    }
    rec
}

/// How long a reader waits for a live monitor to record the exit of an
/// init it found dead: the monitor does it right after reaping, so this is
/// reached only by a monitor that is stopped or starved.
const EXIT_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Whether a monitor holds the run directory's lock (it does for exactly
/// its life).
pub fn monitor_holds_lock(dir: &Path) -> bool {
    let Ok(f) = std::fs::File::open(dir.join(LOCK_FILE)) else {
        return false;
    };
    // Taken, it is released again when `f` closes (the only fd of it).
    matches!(
        crate::sys::process::try_flock(std::os::fd::AsFd::as_fd(&f)),
        Ok(false)
    )
}

/// `jails/NAME/exit.json`, written by the monitor when init exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The init's exit status, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that killed init, when one did.
    pub signal: Option<i32>,
    /// The kernel's OOM killer acted in the jail's cgroup.
    pub oom_killed: bool,
    /// UNIX seconds.
    pub finished_at: u64,
}

impl ExitRecord {
    /// The exit code, or 128 + the signal that killed init.
    pub fn status(&self) -> Option<i32> {
        crate::exit_status::from_parts(self.exit_code, self.signal)
    }
}

/// The run directory's `exit.json`: the exit of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceExit {
    pub instance: String,
    #[serde(flatten)]
    pub exit: ExitRecord,
}

/// Start time (field 22) of `/proc/PID/stat` under `proc_root`.
pub fn proc_start_time(proc_root: &Path, pid: i32) -> Option<u64> {
    Proc::new(proc_root).stat(pid).map(|s| s.starttime)
}

/// Whether `p` is still the process it was recorded as, and not a zombie
/// (an exited monitor whose new parent has not reaped it yet).
pub fn is_alive(proc_root: &Path, p: &ProcRef) -> bool {
    Proc::new(proc_root)
        .stat(p.pid)
        .is_some_and(|s| s.starttime == p.start_time && !matches!(s.state, 'Z' | 'X'))
}

/// The boot id of the running kernel, from `proc_root/sys/kernel/random/boot_id`.
pub fn boot_id(proc_root: &Path) -> Option<String> {
    Proc::new(proc_root).boot_id()
}

/// The state a jail is really in: a record saying `running` or `frozen`
/// whose init is gone (or whose monitor is gone, or that was written before
/// a reboot) is `stopped`, never running.
pub fn observed_state(proc_root: &Path, rec: &JailRecord) -> State {
    match (rec.state, &rec.runtime) {
        (State::Running | State::Frozen, Some(rt)) => {
            let same_boot = boot_id(proc_root).is_some_and(|b| b == rt.boot_id);
            if same_boot && is_alive(proc_root, &rt.init) && is_alive(proc_root, &rt.monitor) {
                rec.state
            } else {
                State::Stopped
            }
        }
        (State::Running | State::Frozen, None) => State::Stopped,
        (s, _) => s,
    }
}

impl JailRecord {
    pub fn name(&self) -> &Name {
        &self.spec.name
    }

    /// The signal that ended the jail's last run, when its status says one
    /// did (128 + a signal's number, the shells' convention of
    /// [`crate::exit_status`]; a command that itself exits 137 reads the
    /// same).
    pub fn signal(&self) -> Option<nix::sys::signal::Signal> {
        let code = self.exit_code?;
        if code <= 128 {
            return None;
        }
        nix::sys::signal::Signal::try_from(code - 128).ok()
    }

    /// One line on how the last run ended, when it did not just exit: the
    /// OOM killer (with the limit it enforced) or a signal. `None` for an
    /// exit with a code, or no end recorded.
    pub fn end_note(&self) -> Option<String> {
        let n = self.name();
        if self.oom_killed {
            return Some(match self.spec.memory {
                Some(m) => format!(
                    "jail {n} was killed by the OOM killer at its {} memory limit",
                    binary_size(m)
                ),
                None => format!("jail {n} was killed by the OOM killer"),
            });
        }
        self.signal()
            .map(|sig| format!("jail {n} was killed by {}", sig.as_str()))
    }
}

/// `bytes` in the largest binary unit that divides it (`1 MiB`,
/// `1536 KiB`), else to one decimal (`1.5 MiB`).
pub fn binary_size(bytes: u64) -> String {
    const UNITS: [(&str, u32); 4] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (unit, shift) in UNITS {
        if bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    for (unit, shift) in UNITS {
        if bytes >= 1 << shift {
            return format!("{:.1} {unit}", bytes as f64 / (1u64 << shift) as f64);
        }
    }
    format!("{bytes} B")
}

/// What `template.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRecord {
    pub name: Name,
    /// UNIX seconds.
    pub created_at: u64,
    /// Where it came from: a path, or `debootstrap:SUITE/VARIANT`.
    pub source: String,
    /// Sum of the regular files' sizes, in bytes.
    pub size: u64,
    /// Number of entries in the tree.
    pub files: u64,
    /// The command a jail made from it runs when `create` gives none
    /// (`template import NAME PATH -- COMMAND`); empty: none, and such a
    /// jail is refused. Absent from records made before the field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
}

/// Why a record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Only ever seen after a crash in the middle of a write.
    #[error("{} is empty (its write was interrupted)", path.display())]
    Empty { path: PathBuf },
    #[error("{} is corrupt", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} has format version {found}, this jailer reads version {JAIL_RECORD_VERSION}", path.display())]
    Version { path: PathBuf, found: u32 },
}

/// Reads and parses a JSON record.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, RecordError> {
    let data = std::fs::read(path).map_err(|source| RecordError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if data.is_empty() {
        return Err(RecordError::Empty {
            path: path.to_path_buf(),
        });
    }
    serde_json::from_slice(&data).map_err(|source| RecordError::Corrupt {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a `jail.json`, checking its version.
pub fn read_jail(path: &Path) -> Result<JailRecord, RecordError> {
    let r: JailRecord = read_json(path)?;
    if r.version != JAIL_RECORD_VERSION {
        return Err(RecordError::Version {
            path: path.to_path_buf(),
            found: r.version,
        });
    }
    Ok(r)
}

/// Seconds since the UNIX epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_proc(dir: &Path, pid: i32, comm: &str, start: u64) {
        let d = dir.join(pid.to_string());
        std::fs::create_dir_all(&d).expect("mkdir");
        // 52 fields like the kernel's; field 22 is the start time.
        let mut fields: Vec<String> = (3..=52).map(|i| i.to_string()).collect();
        fields[22 - 3] = start.to_string();
        std::fs::write(
            d.join("stat"),
            format!("{pid} ({comm}) {}", fields.join(" ")),
        )
        .expect("write");
    }

    #[test]
    fn a_template_record_from_before_default_commands_reads_without_one() {
        let old: TemplateRecord = serde_json::from_value(serde_json::json!({
            "name": "bookworm", "created_at": 1, "source": "/srv/root",
            "size": 17, "files": 5
        }))
        .expect("old record");
        assert!(old.command.is_empty());
        // None is written as nothing; one is written and read back.
        let v = serde_json::to_value(&old).expect("json");
        assert!(v.get("command").is_none(), "{v}");
        let with = TemplateRecord {
            command: vec!["/bin/sleep".into(), "infinity".into()],
            ..old
        };
        let back: TemplateRecord =
            serde_json::from_value(serde_json::to_value(&with).expect("json")).expect("read");
        assert_eq!(back, with);
    }

    #[test]
    fn limits_read_in_binary_units() {
        assert_eq!(binary_size(1 << 20), "1 MiB");
        assert_eq!(binary_size(8 << 20), "8 MiB");
        assert_eq!(binary_size(1536 << 10), "1536 KiB");
        assert_eq!(binary_size(3 << 30), "3 GiB");
        assert_eq!(binary_size(1000), "1000 B");
        assert_eq!(binary_size((1 << 20) + 1), "1.0 MiB");
    }

    #[test]
    fn start_time_survives_odd_command_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        fake_proc(dir.path(), 42, "a) b (c", 123_456);
        assert_eq!(proc_start_time(dir.path(), 42), Some(123_456));
        assert_eq!(proc_start_time(dir.path(), 43), None);
    }

    #[test]
    fn running_record_with_dead_or_reused_pid_is_stopped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path();
        std::fs::create_dir_all(p.join("sys/kernel/random")).expect("mkdir");
        std::fs::write(p.join("sys/kernel/random/boot_id"), "boot-1\n").expect("write");
        fake_proc(p, 10, "monitor", 100);
        fake_proc(p, 11, "init", 101);
        let rt = Runtime {
            boot_id: "boot-1".into(),
            monitor: ProcRef {
                pid: 10,
                start_time: 100,
            },
            init: ProcRef {
                pid: 11,
                start_time: 101,
            },
            cgroup: CgroupRef {
                version: 2,
                paths: Default::default(),
            },
            instance: String::new(),
        };
        let spec = crate::spec::RawSpec {
            name: "j".into(),
            template: "t".into(),
            ..Default::default()
        }
        .validate()
        .expect("spec");
        let mut rec = JailRecord {
            version: JAIL_RECORD_VERSION,
            id: "x".into(),
            spec,
            state: State::Running,
            ids: IdRange {
                uid_base: 1 << 28,
                gid_base: 1 << 28,
                count: 65536,
            },
            created_at: 0,
            started_at: Some(1),
            finished_at: None,
            exit_code: None,
            oom_killed: false,
            runtime: Some(rt.clone()),
            restarts: 0,
        };
        assert_eq!(observed_state(p, &rec), State::Running);
        // pid 11 reused by another process: different start time.
        fake_proc(p, 11, "other", 999);
        assert_eq!(observed_state(p, &rec), State::Stopped);
        fake_proc(p, 11, "init", 101);
        // After a reboot.
        std::fs::write(p.join("sys/kernel/random/boot_id"), "boot-2\n").expect("write");
        assert_eq!(observed_state(p, &rec), State::Stopped);
        rec.state = State::Created;
        assert_eq!(observed_state(p, &rec), State::Created);
    }

    #[test]
    fn state_is_derived_from_the_instance_not_the_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("proc");
        let run = dir.path().join("run");
        let jail_dir = dir.path().join("jail");
        std::fs::create_dir_all(p.join("sys/kernel/random")).expect("mkdir");
        std::fs::create_dir_all(&jail_dir).expect("mkdir");
        std::fs::write(p.join("sys/kernel/random/boot_id"), "boot-1\n").expect("write");
        fake_proc(&p, 10, "jailer-monitor", 100);
        fake_proc(&p, 11, "sleep", 101);
        let freezer = dir.path().join("freezer");
        std::fs::create_dir_all(&freezer).expect("mkdir");
        std::fs::write(freezer.join("freezer.state"), "THAWED\n").expect("write");
        let rt = Runtime {
            boot_id: "boot-1".into(),
            monitor: ProcRef {
                pid: 10,
                start_time: 100,
            },
            init: ProcRef {
                pid: 11,
                start_time: 101,
            },
            cgroup: CgroupRef {
                version: 1,
                paths: [("freezer".to_string(), freezer.clone())].into(),
            },
            instance: "0000beef".into(),
        };
        let spec = crate::spec::RawSpec {
            name: "j".into(),
            template: "t".into(),
            ..Default::default()
        }
        .validate()
        .expect("spec");
        // The CLI was killed before it recorded the start.
        let rec = JailRecord {
            version: JAIL_RECORD_VERSION,
            id: "x".into(),
            spec,
            state: State::Created,
            ids: IdRange {
                uid_base: 1 << 28,
                gid_base: 1 << 28,
                count: 65536,
            },
            created_at: 0,
            started_at: None,
            finished_at: None,
            exit_code: None,
            oom_killed: false,
            runtime: None,
            restarts: 0,
        };
        let rdir = run_dir(&run, &rec);
        std::fs::create_dir_all(&rdir).expect("mkdir");
        let inst = InstanceRecord {
            runtime: rt.clone(),
            started_at: 50,
            restarts: 0,
        };
        std::fs::write(
            rdir.join(INSTANCE_FILE),
            serde_json::to_vec(&inst).expect("json"),
        )
        .expect("write");
        let d = derive(&p, &run, &jail_dir, rec.clone());
        assert_eq!((d.state, d.runtime.as_ref()), (State::Running, Some(&rt)));
        // Frozen is what the kernel's freezer says.
        std::fs::write(freezer.join("freezer.state"), "FROZEN\n").expect("write");
        assert_eq!(
            derive(&p, &run, &jail_dir, rec.clone()).state,
            State::Frozen
        );
        // Init gone, no exit record (its monitor was killed): stopped, with a
        // finish time.
        fake_proc(&p, 11, "other", 999);
        let d = derive(&p, &run, &jail_dir, rec.clone());
        assert_eq!(d.state, State::Stopped);
        assert!(d.finished_at.is_some_and(|f| f >= 50));
        // Another instance's exit is not this one's; its own is.
        let exit = |instance: &str, code| InstanceExit {
            instance: instance.into(),
            exit: ExitRecord {
                exit_code: Some(code),
                signal: None,
                oom_killed: false,
                finished_at: 60,
            },
        };
        let write_exit = |x: &InstanceExit| {
            std::fs::write(rdir.join(EXIT_FILE), serde_json::to_vec(x).expect("json"))
                .expect("write")
        };
        write_exit(&exit("0000cafe", 3));
        assert_eq!(derive(&p, &run, &jail_dir, rec.clone()).exit_code, None);
        write_exit(&exit("0000beef", 0));
        let d = derive(&p, &run, &jail_dir, rec.clone());
        assert_eq!(
            (d.state, d.exit_code, d.finished_at),
            (State::Stopped, Some(0), Some(60))
        );
        // A restarting jail never reads stopped: its live monitor records the
        // exit before it decides on the restart (after the teardown), and
        // the reader waits for that decision.
        let lock = std::fs::File::create(rdir.join(LOCK_FILE)).expect("lock file");
        let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| e)
            .expect("flock");
        let restart = rdir.join(RESTART_FILE);
        let decide = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let plan = RestartRecord {
                after: "0000beef".into(),
                restart: 1,
                at: 61,
            };
            std::fs::write(&restart, serde_json::to_vec(&plan).expect("json")).expect("write");
        });
        let d = derive(&p, &run, &jail_dir, rec.clone());
        decide.join().expect("thread");
        assert_eq!(d.state, State::Restarting);
        // The monitor gone without a restart: stopped, at once.
        std::fs::remove_file(rdir.join(RESTART_FILE)).expect("rm");
        drop(held);
        assert_eq!(derive(&p, &run, &jail_dir, rec).state, State::Stopped);
    }
}
