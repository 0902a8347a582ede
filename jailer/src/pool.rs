//! The pool: a BTRFS filesystem at the jailer root that holds templates and
//! jails, and `jailer init`, which makes it ready.
//!
//! ```text
//! ROOT/pool.json                 how the pool was made (image, device, existing)
//! ROOT/templates/NAME/rootfs     read-only subvolume
//! ROOT/templates/NAME/template.json
//! ROOT/jails/NAME/rootfs         writable snapshot of a template
//! ROOT/jails/NAME/jail.json      spec + lifecycle state
//! ROOT/.locks/                   flock files (jail-NAME, template-NAME, pool)
//! ROOT/.reserve                  preallocated space for lifecycle records
//! ```
//!
//! Quotas: `init` turns btrfs quotas on (simple quotas where the kernel has
//! them, 6.7+, else full qgroups), and `create` does for pools made before;
//! each jail's rootfs subvolume gets its `--disk` limit on its qgroup.
//!
//! The reserve: a full pool (filled by a jail without a limit, or by the
//! host) must not stop `stop`, `start`, `rm` or `ls` of the other jails.
//! Lifecycle records are written through [`Pool::write_record`], which on
//! `ENOSPC` gives the reserve's space back to the filesystem and writes
//! again; the reserve is made again once the pool has room.

use crate::fsutil::{atomic_write, FsError, Lock};
use crate::name::Name;
use crate::procinfo;
use crate::sys::{btrfs, loopdev, mount};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The default pool root.
pub const DEFAULT_ROOT: &str = "/var/lib/jailer";
/// The default size of the embedded image.
pub const DEFAULT_IMAGE_SIZE: u64 = 20 << 30;
/// The label `jailer init` gives the filesystems it formats.
pub const LABEL: &str = "jailer-pool";

/// The size of `ROOT/.reserve`: room for thousands of record writes.
pub const RESERVE_SIZE: u64 = 32 << 20;

/// What went wrong with the pool.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("pool at {} is not ready: {why}; run `jailer --root {} init` first", root.display(), root.display())]
    NotReady { root: PathBuf, why: String },
    #[error("cannot prepare {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pool at {} is not confined: {why}; run `jailer --root {} init` to close it", root.display(), root.display())]
    NotConfined { root: PathBuf, why: String },
    #[error("{} is not empty and not on btrfs: refusing to mount a pool over its contents; choose an empty directory with --root", root.display())]
    RootNotEmpty { root: PathBuf },
    #[error("{} holds a {fstype} filesystem: pass --force to format it as a pool (this destroys its data)", device.display())]
    DeviceInUse { device: PathBuf, fstype: String },
    #[error("{} is still in use by {holder}: the pool may have been unmounted lazily while jails or open files held it; a second mount would be a second filesystem over the same blocks (data loss); stop what holds it (`fuser -vm {holder}`) or mount it again at the root yourself (`mount {holder} {}`), then run `jailer init`", what.display(), root.display())]
    InUse {
        what: PathBuf,
        holder: String,
        root: PathBuf,
    },
    #[error("{} is not a block device", device.display())]
    NotBlockDevice { device: PathBuf },
    #[error("image {} exists but holds {found} rather than btrfs; move it away or choose another root", image.display())]
    ImageNotBtrfs { image: PathBuf, found: String },
    #[error("cannot run {tool}: is it installed? (apt-get install {package})")]
    ToolMissing {
        tool: &'static str,
        package: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{tool} failed on {}: {output}", target.display())]
    ToolFailed {
        tool: &'static str,
        target: PathBuf,
        output: String,
    },
    #[error(transparent)]
    Btrfs(#[from] btrfs::BtrfsError),
    #[error(transparent)]
    Mount(#[from] mount::MountError),
    #[error(transparent)]
    Proc(#[from] procinfo::ProcError),
    #[error(transparent)]
    Loop(#[from] loopdev::LoopError),
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// How the pool's filesystem came to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolKind {
    /// A sparse image file, loop-mounted at the root.
    Image,
    /// A block device given with `--device`.
    Device,
    /// The root was already on btrfs.
    Existing,
}

/// `pool.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRecord {
    pub kind: PoolKind,
    pub image: Option<PathBuf>,
    pub device: Option<PathBuf>,
    pub created_at: u64,
}

/// The pool at a root directory. Paths only; nothing is touched until a verb
/// runs.
#[derive(Debug, Clone)]
pub struct Pool {
    root: PathBuf,
}

impl Pool {
    pub fn new(root: impl Into<PathBuf>) -> Pool {
        Pool { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn record_path(&self) -> PathBuf {
        self.root.join("pool.json")
    }
    pub fn templates_dir(&self) -> PathBuf {
        self.root.join("templates")
    }
    pub fn template_dir(&self, name: &Name) -> PathBuf {
        self.templates_dir().join(name)
    }
    pub fn template_rootfs(&self, name: &Name) -> PathBuf {
        self.template_dir(name).join("rootfs")
    }
    pub fn template_json(&self, name: &Name) -> PathBuf {
        self.template_dir(name).join("template.json")
    }
    pub fn jails_dir(&self) -> PathBuf {
        self.root.join("jails")
    }
    pub fn jail_dir(&self, name: &Name) -> PathBuf {
        self.jails_dir().join(name)
    }
    pub fn jail_rootfs(&self, name: &Name) -> PathBuf {
        self.jail_dir(name).join("rootfs")
    }
    pub fn jail_json(&self, name: &Name) -> PathBuf {
        self.jail_dir(name).join("jail.json")
    }
    fn locks_dir(&self) -> PathBuf {
        self.root.join(".locks")
    }
    /// `ROOT/.reserve`: space held back for lifecycle records.
    pub fn reserve_path(&self) -> PathBuf {
        self.root.join(".reserve")
    }

    /// Makes `ROOT/.reserve` hold [`RESERVE_SIZE`] preallocated bytes if it
    /// does not, when the pool has room for it (four times its size free);
    /// best effort, a failure is logged.
    pub fn ensure_reserve(&self) {
        let path = self.reserve_path();
        let full = std::fs::metadata(&path).is_ok_and(|m| m.blocks() * 512 >= RESERVE_SIZE);
        if full {
            return;
        }
        let room = mount::usage(&self.root).is_ok_and(|u| u.free >= 4 * RESERVE_SIZE);
        if !room {
            return;
        }
        let made = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .and_then(|f| {
                let len = RESERVE_SIZE as libc::off_t;
                nix::fcntl::fallocate(
                    std::os::fd::AsRawFd::as_raw_fd(&f),
                    nix::fcntl::FallocateFlags::empty(),
                    0,
                    len,
                )?;
                f.sync_all()
            });
        if let Err(e) = made {
            tracing::warn!(path = %path.display(), error = %e, "cannot make the pool's space reserve");
        }
    }

    /// Gives the reserve's space back to the filesystem and commits, so that
    /// the next write finds it. Whether there was a reserve to release.
    fn release_reserve(&self) -> bool {
        let path = self.reserve_path();
        let had = std::fs::metadata(&path).is_ok_and(|m| m.blocks() > 0);
        if had {
            let _ = std::fs::remove_file(&path);
            // Freed extents are usable once the transaction commits.
            let _ = btrfs::sync(&self.root);
            tracing::warn!(root = %self.root.display(), "pool is full: released its space reserve to write a record");
        }
        had
    }

    /// Writes a lifecycle record with `write`; if the pool is full
    /// (`ENOSPC`), releases the reserve and writes once more. Records live
    /// outside every jail's rootfs, so no jail's disk limit applies to them.
    pub fn write_record<T>(&self, write: impl Fn() -> Result<T, FsError>) -> Result<T, FsError> {
        match write() {
            Err(FsError::Write { source, .. })
                if source.raw_os_error() == Some(libc::ENOSPC) && self.release_reserve() =>
            {
                write()
            }
            other => other,
        }
    }

    /// Turns btrfs quotas on for the pool (a no-op when on).
    pub fn ensure_quota(&self) -> Result<btrfs::QuotaMode, PoolError> {
        Ok(btrfs::enable_quota(&self.root)?)
    }

    /// The pool's quota mode; `None` when quotas are off.
    pub fn quota_mode(&self) -> Option<btrfs::QuotaMode> {
        let fsid = btrfs::fsid(&self.root).ok()?;
        btrfs::quota_mode_in(Path::new(btrfs::SYSFS), &fsid)
    }

    /// Takes the lock of one jail (`kind` "jail") or template ("template").
    pub fn lock(&self, kind: &str, name: &Name, wait: bool) -> Result<Lock, PoolError> {
        Ok(Lock::acquire(
            &self.locks_dir().join(format!("{kind}-{name}.lock")),
            wait,
        )?)
    }

    /// Whether another process holds the lock of `kind` `name` now. Never
    /// creates a lock file.
    pub fn is_locked(&self, kind: &str, name: &Name) -> bool {
        let path = self.locks_dir().join(format!("{kind}-{name}.lock"));
        match std::fs::File::open(&path) {
            Ok(f) => {
                nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).is_err()
            }
            Err(_) => false,
        }
    }

    /// Takes the pool-wide lock (id allocation), waiting for it.
    pub fn lock_pool(&self) -> Result<Lock, PoolError> {
        Ok(Lock::acquire(&self.locks_dir().join("pool.lock"), true)?)
    }

    /// Checks that the root is a btrfs filesystem laid out by `jailer init`.
    pub fn ensure_ready(&self) -> Result<(), PoolError> {
        let not_ready = |why: &str| PoolError::NotReady {
            root: self.root.clone(),
            why: why.to_string(),
        };
        if !self.root.is_dir() {
            return Err(not_ready("the directory does not exist"));
        }
        if !btrfs::is_btrfs(&self.root)? {
            return Err(not_ready("it is not a btrfs filesystem"));
        }
        for d in [self.templates_dir(), self.jails_dir(), self.locks_dir()] {
            if !d.is_dir() {
                return Err(not_ready(&format!("{} is missing", d.display())));
            }
        }
        Ok(())
    }

    /// The default image path for this root: `ROOT.img` beside the root.
    pub fn default_image(&self) -> PathBuf {
        let mut s = self.root.as_os_str().to_owned();
        s.push(".img");
        PathBuf::from(s)
    }
}

/// Options of `jailer init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Size of a new image file.
    pub size: u64,
    /// Use this block device instead of an image.
    pub device: Option<PathBuf>,
    /// Format a device that holds a filesystem.
    pub force: bool,
    /// Where the image lives (default: `ROOT.img`).
    pub image: Option<PathBuf>,
    /// Only re-attach a pool made before (the boot unit): never make an
    /// image, format a device or lay out a filesystem.
    pub attach_only: bool,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            size: DEFAULT_IMAGE_SIZE,
            device: None,
            force: false,
            image: None,
            attach_only: false,
        }
    }
}

/// What `jailer init` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InitAction {
    /// The root was already a ready btrfs pool.
    AlreadyReady,
    /// An existing btrfs root was laid out.
    UsedExisting,
    /// A new image was made and mounted.
    CreatedImage,
    /// An existing image was attached and mounted again.
    ReattachedImage,
    /// A device was formatted and mounted.
    FormattedDevice,
    /// A device already holding a pool was mounted.
    MountedDevice,
    /// `attach_only`, and no pool was made here: nothing was done.
    NothingToAttach,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PoolError + '_ {
    move |source| PoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Probes what filesystem `path` holds, as `(TYPE, LABEL)`, with `blkid -p`.
/// `None` when it holds nothing blkid recognises.
fn probe(path: &Path) -> Result<Option<(String, String)>, PoolError> {
    let out = Command::new("blkid")
        .args(["-p", "-o", "export"])
        .arg(path)
        .output()
        .map_err(|source| PoolError::ToolMissing {
            tool: "blkid",
            package: "util-linux",
            source,
        })?;
    // blkid exits 2 when it finds nothing.
    if out.status.code() == Some(2) {
        return Ok(None);
    }
    if !out.status.success() {
        return Err(PoolError::ToolFailed {
            tool: "blkid",
            target: path.to_path_buf(),
            output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).map(str::to_string))
            .unwrap_or_default()
    };
    let t = field("TYPE=");
    let usage = field("USAGE=");
    if t.is_empty() && usage.is_empty() {
        return Ok(None);
    }
    Ok(Some((
        if t.is_empty() { usage } else { t },
        field("LABEL="),
    )))
}

/// Whether the btrfs filesystem on `device` is active in the kernel
/// (mounted anywhere, or detached by a lazy unmount but still held): its
/// UUID under `/sys/fs/btrfs`. Returns the device to name in the error.
fn btrfs_in_use(device: &Path) -> Option<String> {
    let out = Command::new("blkid")
        .args(["-p", "-s", "UUID", "-o", "value"])
        .arg(device)
        .output()
        .ok()?;
    let uuid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!uuid.is_empty() && Path::new("/sys/fs/btrfs").join(&uuid).exists())
        .then(|| device.display().to_string())
}

fn mkfs(target: &Path) -> Result<(), PoolError> {
    let out = Command::new("mkfs.btrfs")
        .args(["-q", "-f", "-L", LABEL])
        .arg(target)
        .output()
        .map_err(|source| PoolError::ToolMissing {
            tool: "mkfs.btrfs",
            package: "btrfs-progs",
            source,
        })?;
    if !out.status.success() {
        return Err(PoolError::ToolFailed {
            tool: "mkfs.btrfs",
            target: target.to_path_buf(),
            output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Creates the pool's directories and `pool.json` if missing, turns quotas
/// on, makes the reserve, then closes the pool to host users ([`harden`]).
fn lay_out(pool: &Pool, record: PoolRecord) -> Result<(), PoolError> {
    for d in [pool.templates_dir(), pool.jails_dir(), pool.locks_dir()] {
        std::fs::create_dir_all(&d).map_err(io_err(&d))?;
    }
    if !pool.record_path().exists() {
        let json = serde_json::to_vec_pretty(&record).unwrap_or_default();
        atomic_write(&pool.record_path(), &json)?;
    }
    prepare_space(pool);
    harden(pool)
}

/// Closes the pool to every host user but root, on every `init` (so a pool
/// made by an earlier version is closed too): the root and its directories
/// 0700, every jail's directory 0700, and the root's mount `nosuid,nodev`
/// (a bind mount of the root onto itself where it is no mount point of its
/// own), so that a setuid-root file, a file capability or a device node a
/// jail made in its tree means nothing on the host even if reached. Jails
/// see their rootfs through their own mount, with `suid` and `nodev`.
fn harden(pool: &Pool) -> Result<(), PoolError> {
    crate::fsutil::private_dir(pool.root())?;
    for d in [pool.templates_dir(), pool.jails_dir(), pool.locks_dir()] {
        crate::fsutil::private_dir(&d)?;
    }
    for dir in [pool.jails_dir(), pool.templates_dir()] {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    crate::fsutil::private_dir(&e.path())?;
                }
            }
        }
    }
    if !mount::is_confined(pool.root())? {
        let mounts = procinfo::Proc::host().mountinfo("self")?;
        let is_mount_point = procinfo::mount_at(&mounts, pool.root()).is_some();
        mount::confine(pool.root(), is_mount_point)?;
    }
    Ok(())
}

impl Pool {
    /// Refuses to run jails from a pool that host users could reach into
    /// or whose mount honours setuid bits and device nodes (a pool made by
    /// an earlier version, or an existing btrfs root after a reboot lost
    /// its confining bind mount): `jailer init` fixes both.
    pub fn ensure_confined(&self) -> Result<(), PoolError> {
        use std::os::unix::fs::PermissionsExt;
        self.ensure_ready()?;
        let mode = std::fs::metadata(&self.root)
            .map_err(io_err(&self.root))?
            .permissions()
            .mode();
        let why = if mode & 0o077 != 0 {
            Some(format!(
                "its root is mode {:o}, open to other host users",
                mode & 0o777
            ))
        } else if !mount::is_confined(&self.root)? {
            Some("it is mounted without nosuid,nodev".to_string())
        } else {
            None
        };
        match why {
            None => Ok(()),
            Some(why) => Err(PoolError::NotConfined {
                root: self.root.clone(),
                why,
            }),
        }
    }
}

/// Quotas on and the reserve made; a failure is logged, not fatal: jails
/// without a disk limit work without quotas, and `create` of one with a
/// limit reports why quotas cannot be turned on.
fn prepare_space(pool: &Pool) {
    if let Err(e) = pool.ensure_quota() {
        tracing::warn!(root = %pool.root.display(), error = %crate::error_chain(&e), "cannot turn on btrfs quotas");
    }
    pool.ensure_reserve();
}

/// `jailer init`: makes the pool at `root` ready. Idempotent: a ready pool is
/// left as it is, an existing image is re-attached, never re-formatted.
pub fn init(root: &Path, opts: &InitOptions) -> Result<(Pool, InitAction), PoolError> {
    std::fs::create_dir_all(root).map_err(io_err(root))?;
    let root = root.canonicalize().map_err(io_err(root))?;
    let pool = Pool::new(&root);
    let _guard = Lock::acquire(&std::env::temp_dir().join(".jailer-init.lock"), true)?;

    if btrfs::is_btrfs(&root)? {
        if pool.ensure_ready().is_ok() {
            prepare_space(&pool);
            harden(&pool)?;
            return Ok((pool, InitAction::AlreadyReady));
        }
        if opts.attach_only {
            return Ok((pool, InitAction::NothingToAttach));
        }
        lay_out(
            &pool,
            PoolRecord {
                kind: PoolKind::Existing,
                image: None,
                device: None,
                created_at: crate::record::now(),
            },
        )?;
        return Ok((pool, InitAction::UsedExisting));
    }
    let non_empty = std::fs::read_dir(&root)
        .map_err(io_err(&root))?
        .next()
        .is_some();
    if non_empty {
        return Err(PoolError::RootNotEmpty { root });
    }

    let (record, action) = if let Some(device) = &opts.device {
        use std::os::unix::fs::FileTypeExt;
        let meta = std::fs::metadata(device).map_err(io_err(device))?;
        if !meta.file_type().is_block_device() {
            return Err(PoolError::NotBlockDevice {
                device: device.clone(),
            });
        }
        let action = match probe(device)? {
            Some((t, label)) if t == "btrfs" && label == LABEL && !opts.force => {
                InitAction::MountedDevice
            }
            _ if opts.attach_only => return Ok((pool, InitAction::NothingToAttach)),
            Some((t, _)) if !opts.force => {
                return Err(PoolError::DeviceInUse {
                    device: device.clone(),
                    fstype: t,
                })
            }
            _ => {
                mkfs(device)?;
                InitAction::FormattedDevice
            }
        };
        if let Some(holder) = btrfs_in_use(device) {
            return Err(PoolError::InUse {
                what: device.clone(),
                holder,
                root: root.clone(),
            });
        }
        mount::mount_btrfs(device, &root)?;
        (
            PoolRecord {
                kind: PoolKind::Device,
                image: None,
                device: Some(device.clone()),
                created_at: crate::record::now(),
            },
            action,
        )
    } else {
        let image = opts.image.clone().unwrap_or_else(|| pool.default_image());
        let action = if image.exists() {
            match probe(&image)? {
                Some((t, _)) if t == "btrfs" => InitAction::ReattachedImage,
                other => {
                    return Err(PoolError::ImageNotBtrfs {
                        image,
                        found: other.map_or("no filesystem".to_string(), |(t, _)| t),
                    })
                }
            }
        } else if opts.attach_only {
            return Ok((pool, InitAction::NothingToAttach));
        } else {
            let made = (|| {
                use std::os::unix::fs::OpenOptionsExt;
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&image)?;
                f.set_len(opts.size)?;
                f.sync_all()
            })();
            made.map_err(io_err(&image))?;
            if let Err(e) = mkfs(&image) {
                let _ = std::fs::remove_file(&image);
                return Err(e);
            }
            InitAction::CreatedImage
        };
        // The image holds every jail's files: root's alone (0600).
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&image, std::fs::Permissions::from_mode(0o600))
                .map_err(io_err(&image))?;
        }
        // An image still attached (a pool unmounted lazily while jails
        // ran keeps its loop device and filesystem alive) is never
        // attached and mounted a second time.
        let canonical = image.canonicalize().map_err(io_err(&image))?;
        if let Some(dev) = loopdev::devices_backed_by(Path::new("/sys/block"), &canonical).first() {
            return Err(PoolError::InUse {
                what: image,
                holder: dev.display().to_string(),
                root: root.clone(),
            });
        }
        let dev = loopdev::attach(&image)?;
        mount::mount_btrfs(dev.path(), &root)?;
        // Autoclear: the device goes away when the pool is unmounted.
        drop(dev);
        (
            PoolRecord {
                kind: PoolKind::Image,
                image: Some(image),
                device: None,
                created_at: crate::record::now(),
            },
            action,
        )
    };
    lay_out(&pool, record)?;
    Ok((pool, action))
}

/// What `jailer pool` reports.
#[derive(Debug, Clone, Serialize)]
pub struct PoolInfo {
    pub root: PathBuf,
    pub kind: Option<PoolKind>,
    /// The device the pool's filesystem is mounted from.
    pub device: Option<String>,
    /// The image file behind a loop device, if any.
    pub image: Option<PathBuf>,
    pub size: u64,
    pub used: u64,
    pub free: u64,
    pub templates: usize,
    pub jails: usize,
    /// `simple` or `full` btrfs quotas, `null` when off.
    pub quota: Option<&'static str>,
}

fn count_dirs(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter(|e| e.file_name().to_str().is_some_and(|n| Name::new(n).is_ok()))
                .count()
        })
        .unwrap_or(0)
}

/// `jailer pool`: device, size, used, free, template and jail counts.
pub fn info(pool: &Pool) -> Result<PoolInfo, PoolError> {
    pool.ensure_ready()?;
    let record: Option<PoolRecord> = crate::record::read_json(&pool.record_path()).ok();
    let mounts = procinfo::Proc::host().mountinfo("self")?;
    let root = pool.root().canonicalize().map_err(io_err(pool.root()))?;
    let device = mounts
        .iter()
        .filter(|m| root.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len())
        .map(|m| m.source.clone());
    let image = device.as_deref().and_then(|d| {
        let name = d.strip_prefix("/dev/")?;
        let b = std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).ok()?;
        Some(PathBuf::from(b.trim_end()))
    });
    let usage = mount::usage(&root)?;
    Ok(PoolInfo {
        root,
        kind: record.map(|r| r.kind),
        device,
        image,
        size: usage.size,
        used: usage.used,
        free: usage.free,
        templates: count_dirs(&pool.templates_dir()),
        jails: count_dirs(&pool.jails_dir()),
        quota: pool.quota_mode().map(btrfs::QuotaMode::as_str),
    })
}
