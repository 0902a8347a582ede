//! Jail records: create, list, inspect, remove.
//!
//! Create protocol (crash-safe, under the jail's lock and the pool lock):
//! 1. allocate the id range (no other create runs, so none takes it too);
//! 2. make `jails/NAME/` and write `jail.json` (state `created`);
//! 3. snapshot the template into `jails/NAME/rootfs`: the btrfs transaction
//!    this commits is the commit point of the whole create;
//! 4. set the rootfs qgroup's limit (`--disk`), before anything can run in
//!    it (quotas are turned on first if the pool has none).
//!
//! A create killed anywhere before 3 leaves a directory without a rootfs;
//! `ls` shows it broken, and the next `create` or `rm` of that name clears
//! it. Records in state `creating` (written by earlier versions) are treated
//! the same way when their lock is free.

use crate::fsutil::{self, FsError};
use crate::name::Name;
use crate::pool::{Pool, PoolError};
use crate::record::{self, JailRecord, RecordError, State, JAIL_RECORD_VERSION};
use crate::spec::JailSpec;
use crate::sys::btrfs::{self, BtrfsError};
use crate::template::{self, TemplateError};
use serde::Serialize;

/// What went wrong with a jail.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(
        "jail {name} already exists; remove it with `jailer rm {name}` or choose another name"
    )]
    Exists { name: Name },
    #[error("no jail named {name}; `jailer ls` lists the jails")]
    Unknown { name: Name },
    #[error("jail {name} is {state}; stop it first (`jailer stop {name}`) or pass --force")]
    Running { name: Name, state: State },
    #[error(transparent)]
    Ids(#[from] crate::ids::IdsError),
    #[error("jail {name} is broken")]
    Broken {
        name: Name,
        #[source]
        source: RecordError,
    },
    #[error("cannot snapshot template {template} for jail {name}")]
    Snapshot {
        name: Name,
        template: Name,
        #[source]
        source: BtrfsError,
    },
    #[error("cannot turn on btrfs quotas for the disk limit of jail {name}; create it with `--disk none` to have no limit")]
    Quota {
        name: Name,
        #[source]
        source: PoolError,
    },
    #[error("cannot set the disk limit of jail {name}")]
    DiskLimit {
        name: Name,
        #[source]
        source: BtrfsError,
    },
    #[error("cannot remove jail {name}")]
    Remove {
        name: Name,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot record jail {name}")]
    Record {
        name: Name,
        #[source]
        source: FsError,
    },
    #[error(transparent)]
    Btrfs(#[from] BtrfsError),
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
}

impl From<FsError> for JailError {
    fn from(e: FsError) -> Self {
        JailError::Pool(PoolError::Fs(e))
    }
}

fn random_id() -> String {
    use std::io::Read;
    let mut b = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if ok.is_err() {
        // Not secret, only unique: fall back to time and pid.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = (t ^ u128::from(std::process::id())).to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Removes whatever is at `jails/NAME`: the rootfs subvolume (with nested
/// ones, however deep), then the record and the directory, so the record
/// goes only once the rootfs is gone: a removal that fails midway leaves a
/// jail that the next `rm` removes; last its id range in the host's
/// registry (never before its files are gone: they are owned by it).
/// Tolerates any partial state.
fn clear(pool: &Pool, name: &Name) -> Result<(), JailError> {
    clear_files(pool, name)?;
    crate::ids::Registry::host().release(pool.root(), name.as_str())?;
    Ok(())
}

fn clear_files(pool: &Pool, name: &Name) -> Result<(), JailError> {
    let rootfs = pool.jail_rootfs(name);
    if btrfs::is_subvolume(&rootfs).unwrap_or(false) {
        let id = btrfs::subvolume_id(&rootfs).ok();
        btrfs::delete_subvolume_recursive(&rootfs)?;
        // Its qgroup (and limit) is of no more use; the kernel keeps it
        // until the subvolume's space is freed (EBUSY before), and newer
        // kernels drop it by themselves then. A leftover costs nothing:
        // `create` sets the limit of every new rootfs.
        if let Some(id) = id {
            if let Err(e) = btrfs::destroy_qgroup(pool.root(), id) {
                tracing::debug!(jail = %name, error = %crate::error_chain(&e), "qgroup kept");
            }
        }
    }
    match std::fs::remove_dir_all(pool.jail_dir(name)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(JailError::Remove {
            name: name.clone(),
            source,
        }),
    }
}

/// Whether a record belongs to a create that has not finished (written in
/// state `creating`, or without its rootfs snapshot yet) or to a removal
/// that has begun.
fn is_incomplete(pool: &Pool, r: &JailRecord) -> bool {
    r.state == State::Creating
        || !pool.jail_rootfs(r.name()).is_dir()
        || removing(pool, r.name())
        || pool.jail_dir(r.name()).join(FINISHING).exists()
}

/// `jails/NAME/removing`: left by an `rm` that began deleting the jail, so
/// that an interrupted removal is told from an interrupted create.
fn removing_marker(pool: &Pool, name: &Name) -> std::path::PathBuf {
    pool.jail_dir(name).join("removing")
}

fn removing(pool: &Pool, name: &Name) -> bool {
    removing_marker(pool, name).exists()
}

/// The records of every readable jail (to register the ranges of jails
/// made before the host-wide registry, once per pool).
fn all_records(pool: &Pool) -> Vec<JailRecord> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(pool.jails_dir()) {
        for e in rd.flatten() {
            if let Ok(r) = record::read_jail(&e.path().join("jail.json")) {
                out.push(r);
            }
        }
    }
    out
}

/// Registers with the host's id registry the ranges of every jail of the
/// pool (jails made before the registry had none there): reads every
/// record once. `force`: even if the pool is already registered (`jailer
/// init` does, and drops the entries of its jails that are gone). Returns
/// how many ranges were adopted.
pub fn register_ranges(pool: &Pool, force: bool) -> Result<usize, JailError> {
    let scan = || {
        all_records(pool)
            .into_iter()
            .map(|r| (r.name().as_str().to_string(), r.id.clone(), r.ids))
            .collect()
    };
    Ok(crate::ids::Registry::host().register_pool(pool.root(), force, scan)?)
}

/// `jailer create`: snapshots the template and records the jail in state
/// `created`. Its cost does not depend on the template's size.
pub fn create(pool: &Pool, spec: JailSpec) -> Result<JailRecord, JailError> {
    create_with(pool, spec, |_| Ok::<_, JailError>(())).map(|(rec, _lock, ())| rec)
}

/// [`create`], running `before_snapshot` once the record is written and
/// before the snapshot (`jailer run` starts the jail's monitor there, so its
/// setup overlaps the snapshot's commit). Returns the jail's lock, still
/// held, and what the hook returned. A hook's error (of the caller's type,
/// which this module's errors convert into) undoes the create like any
/// other.
pub fn create_with<H, E: From<JailError>>(
    pool: &Pool,
    spec: JailSpec,
    before_snapshot: impl FnOnce(&JailRecord) -> Result<H, E>,
) -> Result<(JailRecord, crate::fsutil::Lock, H), E> {
    create_inner(pool, spec, before_snapshot, None)
}

/// [`create_with`], running `after_snapshot` once the rootfs is made and
/// its limit set, with the jail's lock still held and the pool's released
/// (`create --deb` installs its packages there, which takes seconds: other
/// creates go on meanwhile). Its error undoes the create like any other:
/// the snapshot and the record go. While it runs the jail's directory
/// holds [`FINISHING`], so that a create killed in the hook leaves a jail
/// `ls` shows as an interrupted create (and the next `create` clears).
pub fn create_with_then<H, E: From<JailError>>(
    pool: &Pool,
    spec: JailSpec,
    before_snapshot: impl FnOnce(&JailRecord) -> Result<H, E>,
    after_snapshot: impl FnOnce(&JailRecord) -> Result<(), E>,
) -> Result<(JailRecord, crate::fsutil::Lock, H), E> {
    create_inner(pool, spec, before_snapshot, Some(Box::new(after_snapshot)))
}

/// `jails/NAME/finishing`: a create's last step (a package install) is
/// under way; the jail is not made until it is gone.
pub const FINISHING: &str = "finishing";

type After<'a, E> = Box<dyn FnOnce(&JailRecord) -> Result<(), E> + 'a>;

fn create_inner<H, E: From<JailError>>(
    pool: &Pool,
    spec: JailSpec,
    before_snapshot: impl FnOnce(&JailRecord) -> Result<H, E>,
    after_snapshot: Option<After<'_, E>>,
) -> Result<(JailRecord, crate::fsutil::Lock, H), E> {
    let (rec, lock, pool_lock, quota) = prepare(pool, spec)?;
    let name = rec.name().clone();
    // The record goes in first, unsynced. The snapshot then commits a btrfs
    // transaction, which makes the rename durable together with the
    // snapshot, while a second thread fsyncs the record's data, so the two
    // flushes overlap. When both have returned the jail is durable; a crash
    // before leaves a directory with an empty or no record, which reads as
    // an interrupted create.
    let json = serde_json::to_vec_pretty(&rec).unwrap_or_default();
    let result = fsutil::write_unsynced(&pool.jail_json(&name), &json)
        .map_err(|source| {
            E::from(JailError::Record {
                name: name.clone(),
                source,
            })
        })
        .and_then(|file| {
            // The hook first: `jailer run` forks the monitor there, which
            // needs this process to have one thread still.
            let hooked = before_snapshot(&rec);
            let syncer = std::thread::spawn(move || file.sync_all());
            let snap = btrfs::snapshot(
                &pool.template_rootfs(&rec.spec.template),
                &pool.jail_rootfs(&name),
                false,
            )
            .map_err(|source| JailError::Snapshot {
                name: name.clone(),
                template: rec.spec.template.clone(),
                source,
            });
            let synced = syncer
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("fsync thread panicked")))
                .map_err(|source| JailError::Record {
                    name: name.clone(),
                    source: FsError::Write {
                        path: pool.jail_json(&name),
                        source,
                    },
                });
            let hooked = hooked?;
            snap.and(synced)?;
            // Before anything runs in it (`jailer run` tells its monitor to
            // go on only once this returns). Without a limit the call only
            // matters for a qgroup left over from an old subvolume id.
            if quota.is_some() {
                btrfs::set_exclusive_limit(&pool.jail_rootfs(&name), rec.spec.disk).map_err(
                    |source| JailError::DiskLimit {
                        name: name.clone(),
                        source,
                    },
                )?;
            }
            Ok(hooked)
        });
    drop(pool_lock);
    let result = match after_snapshot {
        None => result,
        Some(after) => result.and_then(|h| {
            let marker = pool.jail_dir(&name).join(FINISHING);
            std::fs::write(&marker, b"").map_err(|source| {
                E::from(JailError::Record {
                    name: name.clone(),
                    source: FsError::Write {
                        path: marker.clone(),
                        source,
                    },
                })
            })?;
            after(&rec)?;
            std::fs::remove_file(&marker).map_err(|source| {
                E::from(JailError::Record {
                    name: name.clone(),
                    source: FsError::Write {
                        path: marker.clone(),
                        source,
                    },
                })
            })?;
            Ok(h)
        }),
    };
    match result {
        Ok(h) => {
            // Pools made before the reserve get it here (and one spent on a
            // full pool is made again once there is room).
            pool.ensure_reserve();
            Ok((rec, lock, h))
        }
        Err(e) => {
            if let Err(cleanup) = clear(pool, &name) {
                tracing::warn!(jail = %name, error = %crate::error_chain(&cleanup), "cleanup after failed create failed");
            }
            Err(e)
        }
    }
}

/// The part of a create before anything is written: checks, the jail's
/// lock, the pool lock and its id range. Returns the record to write.
fn prepare(
    pool: &Pool,
    mut spec: JailSpec,
) -> Result<
    (
        JailRecord,
        crate::fsutil::Lock,
        crate::fsutil::Lock,
        Option<btrfs::QuotaMode>,
    ),
    JailError,
> {
    pool.ensure_ready()?;
    let name = spec.name.clone();
    template::get(pool, &spec.template)?;
    // Pools made before quotas existed get them now.
    let quota = match spec.disk {
        Some(_) => Some(pool.ensure_quota().map_err(|source| JailError::Quota {
            name: name.clone(),
            source,
        })?),
        None => pool.quota_mode(),
    };
    let lock = pool.lock("jail", &name, false)?;
    match record::read_jail(&pool.jail_json(&name)) {
        Ok(r) if !is_incomplete(pool, &r) => return Err(JailError::Exists { name }),
        // An interrupted create (we hold the lock, so nobody is finishing
        // it), a corrupt record or a bare directory: start afresh. A corrupt
        // record of a real jail is not silently replaced.
        Ok(_) => clear(pool, &name)?,
        Err(RecordError::Read { .. } | RecordError::Empty { .. }) => clear(pool, &name)?,
        Err(source) => return Err(JailError::Broken { name, source }),
    }

    // The pool lock is held until the record is written, so that no other
    // create can take the same id range; creates are short (a snapshot and
    // one durable write), so serialising them costs little.
    // The range comes from the host-wide registry (every pool on the host
    // allocates there, under its lock). A pool with jails made before the
    // registry has their ranges registered first, once (`jailer init` does
    // it too); after that a create never reads other jails' records, so it
    // costs the same at 1 and 1,000 jails.
    let pool_lock = pool.lock_pool()?;
    register_ranges(pool, false)?;
    let id = random_id();
    // Its network against the host and the other jails (under the pool
    // lock: two creates cannot both take an address), before anything is
    // made; the default parent is resolved and recorded.
    crate::net::prepare(pool, &mut spec, &id)?;
    let ids = crate::ids::Registry::host().allocate(pool.root(), name.as_str(), &id)?;
    let dir = pool.jail_dir(&name);
    crate::fsutil::mkdir_private(&dir).map_err(|source| JailError::Remove {
        name: name.clone(),
        source,
    })?;
    let rec = JailRecord {
        version: JAIL_RECORD_VERSION,
        id,
        spec,
        state: State::Created,
        ids,
        created_at: record::now(),
        started_at: None,
        finished_at: None,
        exit_code: None,
        oom_killed: false,
        runtime: None,
        restarts: 0,
    };
    Ok((rec, lock, pool_lock, quota))
}

/// One jail as `ls` shows it: its record, or why it is broken. Serialized
/// (`ls --json`) with its [`state`](JailEntry::state) and, flattened, its
/// [`JailStatus`] besides these fields.
#[derive(Debug, Clone)]
pub struct JailEntry {
    pub name: String,
    pub record: Option<JailRecord>,
    pub broken: Option<String>,
}

/// How a jail's last run ended, or how long it has run (`ls`'s STATUS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JailStatus {
    /// STATUS as `ls` shows it: `up 3h`, `exited 0 2m ago`,
    /// `oom-killed 5s ago`, `killed by SIGTERM 1d ago`; `-` when the jail
    /// never ran or is broken.
    pub status: String,
    /// The last run's status (128 + signal when a signal ended it).
    pub exit_code: Option<i32>,
    /// The OOM killer acted in the last run.
    pub oom_killed: bool,
    /// The signal that ended the last run, e.g. `SIGKILL`.
    pub signal: Option<String>,
    /// Seconds the jail has been running (running or frozen jails only).
    pub uptime_secs: Option<u64>,
    /// Restarts by its restart policy since the last `start`.
    pub restarts: u32,
}

/// `secs` in its largest whole unit: `42s`, `2m`, `3h`, `5d`.
pub fn coarse_duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

impl JailEntry {
    /// `broken` or the record's state.
    pub fn state(&self) -> &str {
        match (&self.broken, &self.record) {
            (Some(_), _) | (None, None) => "broken",
            (None, Some(r)) => r.state.as_str(),
        }
    }

    /// Its status at `now` (UNIX seconds).
    pub fn status_at(&self, now: u64) -> JailStatus {
        let none = JailStatus {
            status: "-".into(),
            exit_code: None,
            oom_killed: false,
            signal: None,
            uptime_secs: None,
            restarts: 0,
        };
        let Some(r) = self.record.as_ref().filter(|_| self.broken.is_none()) else {
            return none;
        };
        let mut st = Self::status_of(r, now, none);
        st.restarts = r.restarts;
        if r.restarts > 0 {
            let s = if r.restarts == 1 { "" } else { "s" };
            st.status = format!("{}, {} restart{s}", st.status, r.restarts);
        }
        st
    }

    fn status_of(r: &JailRecord, now: u64, none: JailStatus) -> JailStatus {
        let signal = r.signal().map(|s| s.as_str().to_string());
        match r.state {
            State::Running | State::Frozen => {
                let up = r.started_at.map(|t| now.saturating_sub(t));
                JailStatus {
                    status: up.map_or("up".into(), |u| format!("up {}", coarse_duration(u))),
                    uptime_secs: up,
                    ..none
                }
            }
            State::Stopped | State::Restarting => {
                let how = match (r.oom_killed, &signal, r.exit_code) {
                    (true, _, _) => "oom-killed".to_string(),
                    (false, Some(sig), _) => format!("killed by {sig}"),
                    (false, None, Some(c)) => format!("exited {c}"),
                    (false, None, None) => "exited".to_string(),
                };
                let mut status = match r.finished_at {
                    Some(t) => format!("{how} {} ago", coarse_duration(now.saturating_sub(t))),
                    None => how,
                };
                if r.state == State::Restarting {
                    status = format!("restarting, {status}");
                }
                JailStatus {
                    status,
                    exit_code: r.exit_code,
                    oom_killed: r.oom_killed,
                    signal,
                    ..none
                }
            }
            State::Creating | State::Created => none,
        }
    }
}

impl Serialize for JailEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            name: &'a str,
            state: &'a str,
            broken: &'a Option<String>,
            record: &'a Option<JailRecord>,
            #[serde(flatten)]
            status: JailStatus,
        }
        View {
            name: &self.name,
            state: self.state(),
            broken: &self.broken,
            record: &self.record,
            status: self.status_at(record::now()),
        }
        .serialize(s)
    }
}

fn entry(pool: &Pool, name: &Name, observe: &dyn Fn(JailRecord) -> JailRecord) -> JailEntry {
    let n = name.to_string();
    if removing(pool, name) {
        let record = record::read_jail(&pool.jail_json(name)).ok();
        // Being removed right now, or abandoned: the lock tells.
        let broken = (!pool.is_locked("jail", name))
            .then(|| format!("interrupted rm; `jailer rm {n}` finishes it"));
        return JailEntry {
            name: n,
            record,
            broken,
        };
    }
    match record::read_jail(&pool.jail_json(name)) {
        Ok(mut r) if is_incomplete(pool, &r) => {
            // Being created right now, or abandoned: the lock tells.
            match pool.lock("jail", name, false) {
                Ok(_free) => JailEntry {
                    name: n.clone(),
                    record: Some(r),
                    broken: Some(format!(
                        "interrupted create; `jailer rm {n}` removes it, `jailer create {n}` redoes it"
                    )),
                },
                Err(_) => {
                    r.state = State::Creating;
                    JailEntry {
                        name: n,
                        record: Some(r),
                        broken: None,
                    }
                }
            }
        }
        Ok(r) => JailEntry {
            name: n,
            record: Some(observe(r)),
            broken: None,
        },
        Err(RecordError::Empty { .. }) => JailEntry {
            name: n.clone(),
            record: None,
            broken: Some(format!(
                "empty jail.json (interrupted create); `jailer rm {n}` removes it, `jailer create {n}` redoes it"
            )),
        },
        Err(RecordError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            JailEntry {
                name: n.clone(),
                record: None,
                broken: Some(format!(
                    "no jail.json (interrupted create); `jailer rm {n}` removes it"
                )),
            }
        }
        Err(e) => JailEntry {
            name: n,
            record: None,
            broken: Some(crate::error_chain(&e)),
        },
    }
}

/// Every jail, broken ones included with the reason, each complete record
/// passed through `observe` (the runtime's view of its state). One
/// unreadable record never hides the others.
pub fn list(
    pool: &Pool,
    observe: &dyn Fn(JailRecord) -> JailRecord,
) -> Result<Vec<JailEntry>, JailError> {
    pool.ensure_ready()?;
    let dir = pool.jails_dir();
    let rd = std::fs::read_dir(&dir).map_err(|source| PoolError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut out: Vec<JailEntry> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| Name::new(n).ok()))
        .map(|name| entry(pool, &name, observe))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A jail's record, or why it cannot be read.
pub fn read(pool: &Pool, name: &Name) -> Result<JailRecord, JailError> {
    pool.ensure_ready()?;
    if !pool.jail_dir(name).exists() {
        return Err(JailError::Unknown { name: name.clone() });
    }
    record::read_jail(&pool.jail_json(name)).map_err(|source| JailError::Broken {
        name: name.clone(),
        source,
    })
}

/// Removes a jail's files, broken and half-created jails too. Under the
/// jail's lock, `before` is given the record (when it reads) and must leave
/// nothing of the jail running; its error aborts the removal.
pub fn remove_with<E: From<JailError>>(
    pool: &Pool,
    name: &Name,
    before: impl FnOnce(&JailRecord) -> Result<(), E>,
) -> Result<(), E> {
    pool.ensure_ready().map_err(JailError::from)?;
    if !pool.jail_dir(name).exists() {
        return Err(JailError::Unknown { name: name.clone() }.into());
    }
    let lock = pool.lock("jail", name, false).map_err(JailError::from)?;
    if let Ok(r) = record::read_jail(&pool.jail_json(name)) {
        before(&r)?;
    }
    // Best effort: on a full pool the marker may not fit, and the removal
    // must go on (it frees the space); then an interruption reads as an
    // interrupted create, which `rm` finishes the same way.
    if let Err(e) = std::fs::File::create(removing_marker(pool, name)) {
        tracing::debug!(jail = %name, error = %e, "no removal marker");
    }
    // The rootfs first, the record last: a removal that fails (or a crash)
    // midway leaves the record, or a directory without a rootfs, which reads
    // as an interrupted create; either way the next rm finishes it.
    clear(pool, name)?;
    lock.remove();
    pool.ensure_reserve();
    Ok(())
}
