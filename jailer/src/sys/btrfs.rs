// Hand-written: no well-kept crate wraps the btrfs subvolume ioctls.
//! BTRFS subvolume operations through the kernel's ioctls.
//!
//! Everything here talks to the kernel directly (never through the `btrfs`
//! tool). Paths are opened with `O_DIRECTORY | O_CLOEXEC`, and with
//! `O_NOFOLLOW` where the last component is the subvolume acted on. Nested
//! subvolumes are found through the kernel's root references, never by
//! walking files, and are opened with `openat2` beneath their parent
//! subvolume (no symlinks, no mount crossings), so a process that still runs
//! inside a jail cannot steer a recursive delete out of the jail's tree.
//! `SNAP_DESTROY` unlinks a name in a directory without looking into mounts,
//! so a subvolume with something mounted over it is refused, never deleted.
//!
//! Privileges, as the kernel checks them:
//! - creating a subvolume or a snapshot needs write and search permission on
//!   the parent directory; a snapshot also needs ownership of the source
//!   subvolume (or `CAP_FOWNER`);
//! - changing the read-only flag needs ownership (or `CAP_FOWNER`); reading
//!   flags, the subvolume id and the nested subvolumes needs no privilege;
//! - deleting a subvolume needs `CAP_SYS_ADMIN` in the initial user namespace,
//!   unless the filesystem is mounted with `user_subvol_rm_allowed`.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::statfs::{fstatfs, statfs, BTRFS_SUPER_MAGIC};

/// Errors of the btrfs operations; each names the path(s) concerned.
#[derive(Debug, thiserror::Error)]
pub enum BtrfsError {
    /// `stat` or `statfs` failed.
    #[error("cannot inspect {}", path.display())]
    Stat {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A directory could not be opened.
    #[error("cannot open {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not on a btrfs filesystem", path.display())]
    NotBtrfs { path: PathBuf },
    #[error("{} is not a btrfs subvolume", path.display())]
    NotSubvolume { path: PathBuf },
    /// The path has no last component that can name a subvolume (`/`, `..`,
    /// a NUL byte, too long).
    #[error("{} does not end in a valid subvolume name", path.display())]
    InvalidName { path: PathBuf },
    #[error("cannot create subvolume {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot snapshot {} to {}", src.display(), dst.display())]
    Snapshot {
        src: PathBuf,
        dst: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the flags of subvolume {}", path.display())]
    GetFlags {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot make subvolume {} {}",
        path.display(),
        if *readonly { "read-only" } else { "writable" }
    )]
    SetReadonly {
        path: PathBuf,
        readonly: bool,
        #[source]
        source: io::Error,
    },
    #[error("cannot find the subvolume id of {}", path.display())]
    SubvolumeId {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot list the subvolumes below {}", path.display())]
    ListNested {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The subvolume at a path was not the same between two looks at it.
    #[error("subvolume {} was moved or replaced while being walked", path.display())]
    Changed { path: PathBuf },
    #[error("cannot delete subvolume {}", path.display())]
    Delete {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A quota ioctl failed; `what` says which.
    #[error("cannot {what} {}", path.display())]
    Quota {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// A recursive delete failed below a read-only subvolume whose flag had
    /// been cleared, and setting the flag again failed too.
    #[error(
        "cannot delete subvolume {} and it was left writable (restoring read-only failed: {restore})",
        path.display()
    )]
    DeleteLeftWritable {
        path: PathBuf,
        #[source]
        source: Box<BtrfsError>,
        restore: io::Error,
    },
}

/// Kernel ABI of `include/uapi/linux/btrfs.h`: layouts and request numbers.
mod abi {
    use std::mem::size_of;

    const MAGIC: u8 = 0x94;
    /// Room for a name in `btrfs_ioctl_vol_args` (BTRFS_PATH_NAME_MAX + 1).
    pub const VOL_ARGS_NAME_LEN: usize = 4088;
    /// Room for a name in `btrfs_ioctl_vol_args_v2` (BTRFS_SUBVOL_NAME_MAX + 1).
    pub const VOL_ARGS_V2_NAME_LEN: usize = 4040;
    /// BTRFS_SUBVOL_RDONLY, in `flags` of the v2 args and of GET/SETFLAGS.
    pub const SUBVOL_RDONLY: u64 = 1 << 1;
    /// BTRFS_FIRST_FREE_OBJECTID: the inode number of every subvolume's root.
    pub const SUBVOL_ROOT_INO: u64 = 256;
    /// BTRFS_MAX_ROOTREF_BUFFER_NUM.
    pub const MAX_ROOTREFS: usize = 255;

    /// `struct btrfs_ioctl_vol_args`.
    #[repr(C)]
    pub struct VolArgs {
        pub fd: i64,
        pub name: [u8; VOL_ARGS_NAME_LEN],
    }
    const _: () = assert!(size_of::<VolArgs>() == 4096);

    /// `struct btrfs_ioctl_vol_args_v2`; the qgroup union is left zeroed and
    /// the name union is only used as a name.
    #[repr(C)]
    pub struct VolArgsV2 {
        pub fd: i64,
        pub transid: u64,
        pub flags: u64,
        pub unused: [u64; 4],
        pub name: [u8; VOL_ARGS_V2_NAME_LEN],
    }
    const _: () = assert!(size_of::<VolArgsV2>() == 4096);

    /// `struct btrfs_ioctl_ino_lookup_args`.
    #[repr(C)]
    pub struct InoLookupArgs {
        pub treeid: u64,
        pub objectid: u64,
        pub name: [u8; 4080],
    }
    const _: () = assert!(size_of::<InoLookupArgs>() == 4096);

    /// `struct btrfs_ioctl_ino_lookup_user_args`.
    #[repr(C)]
    pub struct InoLookupUserArgs {
        pub dirid: u64,
        pub treeid: u64,
        pub name: [u8; 256],
        pub path: [u8; 4080 - 256],
    }
    const _: () = assert!(size_of::<InoLookupUserArgs>() == 4096);

    /// One entry of `btrfs_ioctl_get_subvol_rootref_args.rootref`.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct RootRef {
        pub treeid: u64,
        pub dirid: u64,
    }

    /// `struct btrfs_ioctl_get_subvol_rootref_args`.
    #[repr(C)]
    pub struct RootRefArgs {
        pub min_treeid: u64,
        pub rootref: [RootRef; MAX_ROOTREFS],
        pub num_items: u8,
        pub align: [u8; 7],
    }
    const _: () = assert!(size_of::<RootRefArgs>() == 4096);

    impl VolArgs {
        pub fn new(name: [u8; VOL_ARGS_NAME_LEN]) -> Self {
            VolArgs { fd: 0, name }
        }
    }

    impl VolArgsV2 {
        pub fn new(fd: i64, flags: u64, name: [u8; VOL_ARGS_V2_NAME_LEN]) -> Self {
            VolArgsV2 {
                fd,
                transid: 0,
                flags,
                unused: [0; 4],
                name,
            }
        }
    }

    impl InoLookupArgs {
        pub fn new(treeid: u64, objectid: u64) -> Self {
            InoLookupArgs {
                treeid,
                objectid,
                name: [0; 4080],
            }
        }
    }

    impl InoLookupUserArgs {
        pub fn new(dirid: u64, treeid: u64) -> Self {
            InoLookupUserArgs {
                dirid,
                treeid,
                name: [0; 256],
                path: [0; 4080 - 256],
            }
        }
    }

    impl RootRefArgs {
        pub fn new() -> Self {
            RootRefArgs {
                min_treeid: 0,
                rootref: [RootRef {
                    treeid: 0,
                    dirid: 0,
                }; MAX_ROOTREFS],
                num_items: 0,
                align: [0; 7],
            }
        }
    }

    /// `struct btrfs_ioctl_quota_ctl_args`.
    #[repr(C)]
    pub struct QuotaCtlArgs {
        pub cmd: u64,
        pub status: u64,
    }
    /// BTRFS_QUOTA_CTL_ENABLE: full qgroups (every extent's sharing tracked).
    pub const QUOTA_CTL_ENABLE: u64 = 1;
    /// BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA (kernel 6.7+): extents charged to
    /// the subvolume that wrote them.
    pub const QUOTA_CTL_ENABLE_SIMPLE_QUOTA: u64 = 4;

    /// `struct btrfs_qgroup_limit`.
    #[repr(C)]
    pub struct QgroupLimit {
        pub flags: u64,
        pub max_rfer: u64,
        pub max_excl: u64,
        pub rsv_rfer: u64,
        pub rsv_excl: u64,
    }
    /// `struct btrfs_ioctl_qgroup_limit_args`.
    #[repr(C)]
    pub struct QgroupLimitArgs {
        pub qgroupid: u64,
        pub lim: QgroupLimit,
    }
    const _: () = assert!(size_of::<QgroupLimitArgs>() == 48);
    /// BTRFS_QGROUP_LIMIT_MAX_EXCL.
    pub const QGROUP_LIMIT_MAX_EXCL: u64 = 1 << 1;
    /// The value that removes a limit (`(u64)-1`, CLEAR_VALUE in the kernel).
    pub const QGROUP_LIMIT_CLEAR: u64 = u64::MAX;

    /// `struct btrfs_ioctl_qgroup_create_args`.
    #[repr(C)]
    pub struct QgroupCreateArgs {
        pub create: u64,
        pub qgroupid: u64,
    }

    /// `struct btrfs_ioctl_fs_info_args`.
    #[repr(C)]
    pub struct FsInfoArgs {
        pub max_id: u64,
        pub num_devices: u64,
        pub fsid: [u8; 16],
        pub nodesize: u32,
        pub sectorsize: u32,
        pub clone_alignment: u32,
        pub csum_type: u16,
        pub csum_size: u16,
        pub flags: u64,
        pub generation: u64,
        pub metadata_uuid: [u8; 16],
        pub reserved: [u8; 944],
    }
    const _: () = assert!(size_of::<FsInfoArgs>() == 1024);

    impl FsInfoArgs {
        pub fn new() -> Self {
            FsInfoArgs {
                max_id: 0,
                num_devices: 0,
                fsid: [0; 16],
                nodesize: 0,
                sectorsize: 0,
                clone_alignment: 0,
                csum_type: 0,
                csum_size: 0,
                flags: 0,
                generation: 0,
                metadata_uuid: [0; 16],
                reserved: [0; 944],
            }
        }
    }

    /// BTRFS_SUBVOL_SPEC_BY_ID: `SNAP_DESTROY_V2` names the subvolume by the
    /// id in the first 8 bytes of the name union.
    pub const SUBVOL_SPEC_BY_ID: u64 = 1 << 4;

    nix::ioctl_none!(sync, MAGIC, 8);
    nix::ioctl_write_ptr!(subvol_create, MAGIC, 14, VolArgs);
    nix::ioctl_write_ptr!(snap_destroy, MAGIC, 15, VolArgs);
    nix::ioctl_readwrite!(ino_lookup, MAGIC, 18, InoLookupArgs);
    nix::ioctl_write_ptr!(snap_create_v2, MAGIC, 23, VolArgsV2);
    nix::ioctl_read!(subvol_getflags, MAGIC, 25, u64);
    nix::ioctl_write_ptr!(subvol_setflags, MAGIC, 26, u64);
    nix::ioctl_readwrite!(get_subvol_rootref, MAGIC, 61, RootRefArgs);
    nix::ioctl_readwrite!(ino_lookup_user, MAGIC, 62, InoLookupUserArgs);
    nix::ioctl_read!(fs_info, MAGIC, 31, FsInfoArgs);
    nix::ioctl_readwrite!(quota_ctl, MAGIC, 40, QuotaCtlArgs);
    nix::ioctl_write_ptr!(qgroup_create, MAGIC, 42, QgroupCreateArgs);
    nix::ioctl_read!(qgroup_limit, MAGIC, 43, QgroupLimitArgs);
    nix::ioctl_write_ptr!(snap_destroy_v2, MAGIC, 63, VolArgsV2);
}

/// The ioctl request numbers that make a subvolume or a snapshot
/// (`BTRFS_IOC_SNAP_CREATE`, `SUBVOL_CREATE`, `SNAP_CREATE_V2`,
/// `SUBVOL_CREATE_V2`), for a seccomp filter; the kernel reads the request
/// as 32 bits.
pub fn subvolume_creating_ioctls() -> [u32; 4] {
    use std::mem::size_of;
    let v1 = size_of::<abi::VolArgs>();
    let v2 = size_of::<abi::VolArgsV2>();
    [
        nix::request_code_write!(0x94, 1, v1) as u32,
        nix::request_code_write!(0x94, 14, v1) as u32,
        nix::request_code_write!(0x94, 23, v2) as u32,
        nix::request_code_write!(0x94, 24, v2) as u32,
    ]
}

/// Whether `path` is on a btrfs filesystem (`statfs` reports
/// `BTRFS_SUPER_MAGIC`); a symlink is followed.
pub fn is_btrfs(path: &Path) -> Result<bool, BtrfsError> {
    let fs = statfs(path).map_err(|e| BtrfsError::Stat {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    Ok(fs.filesystem_type() == BTRFS_SUPER_MAGIC)
}

/// Whether `path` is the root directory of a subvolume: a directory on btrfs
/// with inode number 256. A symlink is not followed and is never a subvolume;
/// a missing path is an error.
pub fn is_subvolume(path: &Path) -> Result<bool, BtrfsError> {
    let meta = std::fs::symlink_metadata(path).map_err(|source| BtrfsError::Stat {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() || meta.ino() != abi::SUBVOL_ROOT_INO {
        return Ok(false);
    }
    is_btrfs(path)
}

/// Creates a new, empty, writable subvolume at `path`; its parent directory
/// must exist and `path` must not (`BTRFS_IOC_SUBVOL_CREATE` on the parent).
pub fn create_subvolume(path: &Path) -> Result<(), BtrfsError> {
    let (parent, name) = split(path)?;
    let args = abi::VolArgs::new(name_field(name, path)?);
    let dir = open_btrfs_dir(parent, Follow::Yes)?;
    // SAFETY: `dir` is an open descriptor and `args` is a live, initialised
    // `btrfs_ioctl_vol_args` that the kernel only reads.
    let res = unsafe { abi::subvol_create(dir.as_raw_fd(), &args) };
    res.map(drop).map_err(|e| BtrfsError::Create {
        path: path.to_path_buf(),
        source: e.into(),
    })
}

/// Snapshots subvolume `src` to the new path `dst`, read-only when `readonly`
/// (`BTRFS_IOC_SNAP_CREATE_V2` on the parent of `dst`).
///
/// `src` must be the root of a subvolume: given any other directory the
/// kernel would quietly snapshot the whole subvolume that contains it.
/// Subvolumes nested in `src` are not part of the snapshot (they appear in it
/// as empty directories).
pub fn snapshot(src: &Path, dst: &Path, readonly: bool) -> Result<(), BtrfsError> {
    let source = open_subvolume(src)?;
    let (parent, name) = split(dst)?;
    let flags = if readonly { abi::SUBVOL_RDONLY } else { 0 };
    let args = abi::VolArgsV2::new(i64::from(source.as_raw_fd()), flags, name_field(name, dst)?);
    let dir = open_btrfs_dir(parent, Follow::Yes)?;
    // SAFETY: `dir` and `source` (whose number is in `args.fd`) stay open for
    // the call; `args` is a live, initialised `btrfs_ioctl_vol_args_v2` the
    // kernel only reads, with a zero qgroup-inherit size and pointer.
    let res = unsafe { abi::snap_create_v2(dir.as_raw_fd(), &args) };
    res.map(drop).map_err(|e| BtrfsError::Snapshot {
        src: src.to_path_buf(),
        dst: dst.to_path_buf(),
        source: e.into(),
    })
}

/// Sets or clears the read-only flag of the subvolume at `path`
/// (`BTRFS_IOC_SUBVOL_GETFLAGS`/`SETFLAGS`); a no-op when already so.
pub fn set_readonly(path: &Path, readonly: bool) -> Result<(), BtrfsError> {
    let subvol = open_subvolume(path)?;
    set_readonly_fd(&subvol, path, readonly)
}

/// Whether the subvolume at `path` is read-only.
pub fn is_readonly(path: &Path) -> Result<bool, BtrfsError> {
    let subvol = open_subvolume(path)?;
    readonly_fd(&subvol, path)
}

/// The id (tree id) of the subvolume that contains the directory `path`
/// (followed if a symlink); the top-level subvolume is 5.
pub fn subvolume_id(path: &Path) -> Result<u64, BtrfsError> {
    let dir = open_btrfs_dir(path, Follow::Yes)?;
    tree_id(&dir).map_err(|source| BtrfsError::SubvolumeId {
        path: path.to_path_buf(),
        source,
    })
}

/// Paths (each starting with `path`) of the subvolumes nested directly or
/// indirectly below the subvolume `path`, deepest first, so each comes before
/// the one that contains it.
///
/// The cost grows with the number of subvolumes, not of files: the kernel's
/// root references give each child's tree and directory ids
/// (`BTRFS_IOC_GET_SUBVOL_ROOTREF`), and `BTRFS_IOC_INO_LOOKUP_USER` turns
/// them into a path; no directory is read.
pub fn nested_subvolumes(path: &Path) -> Result<Vec<PathBuf>, BtrfsError> {
    let top = open_subvolume(path)?;
    let found = walk_nested(&top, path)?;
    let mut order: Vec<usize> = (0..found.len()).collect();
    // The walk lists parents before children; a stable sort by depth,
    // deepest first, puts each child before the one that contains it.
    order.sort_by_key(|&i| std::cmp::Reverse(found[i].depth));
    Ok(order
        .into_iter()
        .map(|i| path.join(rel_path(&found, i)))
        .collect())
}

/// Deletes the subvolume `path` and every subvolume nested below it, children
/// first, read-only ones included (`BTRFS_IOC_SNAP_DESTROY` by name on the
/// parent directory).
///
/// The kernel refuses to unlink a child from a read-only subvolume (`EROFS`),
/// so such a parent's flag is cleared first. If a step fails, the flags
/// cleared on the way are set again; what was deleted stays deleted, and a
/// second call finishes the job. Nested subvolumes are only reached beneath
/// `path` without crossing symlinks or mounts, and every one of them is
/// checked (found, opened, its id compared) before anything is deleted.
///
/// Any depth works: the walk keeps an explicit list, not a call stack, and
/// holds a bounded number of descriptors (the nearest 16 ancestors; others
/// are re-opened from the top by their path, in pieces below `PATH_MAX`).
/// Nested subvolumes are then deleted by id (`BTRFS_IOC_SNAP_DESTROY_V2` with
/// `BTRFS_SUBVOL_SPEC_BY_ID`), leaves first, which follows no path at all;
/// one whose path from the filesystem's top is too long for the kernel to
/// name (`ENAMETOOLONG`) is unlinked by name from its directory, opened
/// beneath its parent.
/// Returns without waiting for the transaction to commit (like
/// `btrfs subvolume delete` without `-c`): the space is freed in the
/// background.
pub fn delete_subvolume_recursive(path: &Path) -> Result<(), BtrfsError> {
    let (parent, name) = split(path)?;
    let subvol = open_subvolume(path)?;
    let dir = open_dir(parent, Follow::Yes)?;
    // The kernel unlinks `name` as found in `dir` without looking into
    // mounts: make sure that is the subvolume checked above and not one
    // hidden under a mount point.
    let subvol = match open_beneath(&dir, Path::new(name)) {
        Ok(beneath) => {
            let same = match (beneath.metadata(), subvol.metadata()) {
                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            };
            if !same {
                return Err(BtrfsError::Changed {
                    path: path.to_path_buf(),
                });
            }
            beneath
        }
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            return Err(BtrfsError::Delete {
                path: path.to_path_buf(),
                source: io::Error::from_raw_os_error(libc::EBUSY),
            })
        }
        Err(source) => {
            return Err(BtrfsError::Open {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    delete_tree(&dir, name, &subvol, path)
}

// ---------------------------------------------------------------------------
// Quota groups

/// How a filesystem with quotas enabled charges space to subvolumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaMode {
    /// Simple quotas (kernel 6.7+): an extent is charged to the subvolume
    /// that wrote it, for as long as it exists; shared extents are never
    /// re-counted, so the accounting is cheap.
    Simple,
    /// Full qgroups: every extent's sharing is tracked (`exclusive` is what
    /// only this subvolume references).
    Full,
}

impl QuotaMode {
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaMode::Simple => "simple",
            QuotaMode::Full => "full",
        }
    }
}

/// Where the kernel shows btrfs filesystems (`/sys/fs/btrfs`).
pub const SYSFS: &str = "/sys/fs/btrfs";

/// The filesystem UUID of the btrfs holding `path`, as sysfs names it
/// (`BTRFS_IOC_FS_INFO`, no privilege needed).
pub fn fsid(path: &Path) -> Result<String, BtrfsError> {
    let dir = open_btrfs_dir(path, Follow::Yes)?;
    fsid_fd(&dir, path)
}

fn fsid_fd(dir: &File, path: &Path) -> Result<String, BtrfsError> {
    let mut args = abi::FsInfoArgs::new();
    // SAFETY: `dir` is open and `args` is a live, zeroed
    // `btrfs_ioctl_fs_info_args` (flags 0: the kernel fills the basic
    // fields and reads nothing else).
    let res = unsafe { abi::fs_info(dir.as_raw_fd(), &mut args) };
    res.map_err(|e| BtrfsError::Quota {
        path: path.to_path_buf(),
        what: "read the filesystem id of",
        source: e.into(),
    })?;
    let h: String = args.fsid.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// The quota mode of the filesystem with UUID `fsid`, from sysfs
/// (`SYSFS/FSID/qgroups/` exists only while quotas are on; its `mode` file,
/// kernel 6.7+, says `squota` or `qgroup`). `None`: quotas are off.
pub fn quota_mode_in(sysfs: &Path, fsid: &str) -> Option<QuotaMode> {
    let dir = sysfs.join(fsid).join("qgroups");
    if !dir.is_dir() {
        return None;
    }
    match std::fs::read_to_string(dir.join("mode")) {
        Ok(m) if m.trim() == "squota" => Some(QuotaMode::Simple),
        _ => Some(QuotaMode::Full),
    }
}

/// Turns quotas on for the btrfs holding `path` (needs `CAP_SYS_ADMIN`):
/// simple quotas where the kernel has them, else full qgroups (whose
/// enabling starts a rescan in the background). A no-op when they are on.
pub fn enable_quota(path: &Path) -> Result<QuotaMode, BtrfsError> {
    let dir = open_btrfs_dir(path, Follow::Yes)?;
    let id = fsid_fd(&dir, path)?;
    if let Some(mode) = quota_mode_in(Path::new(SYSFS), &id) {
        return Ok(mode);
    }
    let ctl = |cmd| {
        let mut args = abi::QuotaCtlArgs { cmd, status: 0 };
        // SAFETY: `dir` is open and `args` is a live
        // `btrfs_ioctl_quota_ctl_args` the kernel may read and overwrite.
        unsafe { abi::quota_ctl(dir.as_raw_fd(), &mut args) }
    };
    let err = |e: Errno| BtrfsError::Quota {
        path: path.to_path_buf(),
        what: "enable quotas on",
        source: e.into(),
    };
    match ctl(abi::QUOTA_CTL_ENABLE_SIMPLE_QUOTA) {
        Ok(_) => Ok(QuotaMode::Simple),
        // Before 6.7 the command is unknown.
        Err(Errno::EINVAL | Errno::EOPNOTSUPP) => ctl(abi::QUOTA_CTL_ENABLE)
            .map(|_| QuotaMode::Full)
            .map_err(err),
        Err(e) => Err(err(e)),
    }
}

/// Sets (or with `None` removes) the limit on what the subvolume at `path`
/// holds exclusively: its level-0 qgroup's `max_excl`
/// (`BTRFS_IOC_QGROUP_LIMIT`). Writes past it fail with `EDQUOT`.
pub fn set_exclusive_limit(path: &Path, max_excl: Option<u64>) -> Result<(), BtrfsError> {
    let subvol = open_subvolume(path)?;
    let id = tree_id(&subvol).map_err(|source| BtrfsError::SubvolumeId {
        path: path.to_path_buf(),
        source,
    })?;
    let mut args = abi::QgroupLimitArgs {
        qgroupid: id,
        lim: abi::QgroupLimit {
            flags: abi::QGROUP_LIMIT_MAX_EXCL,
            max_rfer: 0,
            max_excl: max_excl.unwrap_or(abi::QGROUP_LIMIT_CLEAR),
            rsv_rfer: 0,
            rsv_excl: 0,
        },
    };
    // SAFETY: `subvol` is open and `args` is a live, initialised
    // `btrfs_ioctl_qgroup_limit_args` (only the MAX_EXCL field flagged).
    let res = unsafe { abi::qgroup_limit(subvol.as_raw_fd(), &mut args) };
    res.map(drop).map_err(|e| BtrfsError::Quota {
        path: path.to_path_buf(),
        what: "set the disk limit of",
        source: e.into(),
    })
}

/// Removes the level-0 qgroup of subvolume `id` from the btrfs holding
/// `path` (`BTRFS_IOC_QGROUP_CREATE` with `create` 0), once the subvolume
/// is deleted. The kernel refuses (`EBUSY`) while it still holds space.
pub fn destroy_qgroup(path: &Path, id: u64) -> Result<(), BtrfsError> {
    let dir = open_btrfs_dir(path, Follow::Yes)?;
    let args = abi::QgroupCreateArgs {
        create: 0,
        qgroupid: id,
    };
    // SAFETY: `dir` is open and `args` is a live
    // `btrfs_ioctl_qgroup_create_args` the kernel only reads.
    let res = unsafe { abi::qgroup_create(dir.as_raw_fd(), &args) };
    res.map(drop).map_err(|e| BtrfsError::Quota {
        path: path.to_path_buf(),
        what: "remove the quota group of a deleted subvolume below",
        source: e.into(),
    })
}

/// Commits the current transaction of the btrfs holding `path`
/// (`BTRFS_IOC_SYNC`), so quota counters include what was just written.
pub fn sync(path: &Path) -> Result<(), BtrfsError> {
    let dir = open_btrfs_dir(path, Follow::Yes)?;
    // SAFETY: `dir` is open; the ioctl takes no argument.
    let res = unsafe { abi::sync(dir.as_raw_fd()) };
    res.map(drop).map_err(|e| BtrfsError::Quota {
        path: path.to_path_buf(),
        what: "sync",
        source: e.into(),
    })
}

/// What a subvolume's level-0 qgroup holds, as the kernel counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QgroupUsage {
    /// Bytes only this subvolume holds (under simple quotas: bytes it wrote).
    pub exclusive: u64,
    /// The limit on `exclusive`, if any.
    pub max_exclusive: Option<u64>,
}

/// The usage of the subvolume at `path` (not following a symlink there)
/// from `SYSFS/FSID/qgroups/0_ID/`; `None` when quotas are off.
pub fn qgroup_usage(path: &Path, sysfs: &Path) -> Result<Option<QgroupUsage>, BtrfsError> {
    let subvol = open_subvolume(path)?;
    let id = tree_id(&subvol).map_err(|source| BtrfsError::SubvolumeId {
        path: path.to_path_buf(),
        source,
    })?;
    let fsid = fsid_fd(&subvol, path)?;
    let dir = sysfs.join(fsid).join("qgroups");
    if !dir.is_dir() {
        return Ok(None);
    }
    read_qgroup_dir(&dir.join(format!("0_{id}")))
        .map(Some)
        .map_err(|source| BtrfsError::Quota {
            path: path.to_path_buf(),
            what: "read the disk usage of",
            source,
        })
}

/// Parses a sysfs qgroup directory (`exclusive`, `max_exclusive`, where 0
/// means no limit).
pub fn read_qgroup_dir(dir: &Path) -> io::Result<QgroupUsage> {
    let num = |f: &str| -> io::Result<u64> {
        let s = std::fs::read_to_string(dir.join(f))?;
        s.trim()
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{f}: {s:?}")))
    };
    let max = num("max_exclusive")?;
    Ok(QgroupUsage {
        exclusive: num("exclusive")?,
        max_exclusive: (max != 0 && max != u64::MAX).then_some(max),
    })
}

// ---------------------------------------------------------------------------
// Helpers

/// A subvolume directly below another one, as the kernel reports it.
struct Child {
    treeid: u64,
    /// Directory holding the child, relative to the parent subvolume's root
    /// (empty when it is the root itself).
    dir: PathBuf,
    name: OsString,
}

#[cfg(test)]
mod tests {
    #[test]
    fn subvolume_creating_request_numbers() {
        // As `strace` prints them on x86_64.
        assert_eq!(
            super::subvolume_creating_ioctls(),
            [0x5000_9401, 0x5000_940e, 0x5000_9417, 0x5000_9418]
        );
    }

    #[test]
    fn qgroup_dir_parses() {
        let d = tempfile::tempdir().expect("tmp");
        std::fs::write(d.path().join("exclusive"), "16384\n").expect("w");
        std::fs::write(d.path().join("max_exclusive"), "0\n").expect("w");
        let u = super::read_qgroup_dir(d.path()).expect("parse");
        assert_eq!((u.exclusive, u.max_exclusive), (16384, None));
        std::fs::write(d.path().join("max_exclusive"), "67108864\n").expect("w");
        let u = super::read_qgroup_dir(d.path()).expect("parse");
        assert_eq!(u.max_exclusive, Some(64 << 20));
        std::fs::write(d.path().join("exclusive"), "x").expect("w");
        assert!(super::read_qgroup_dir(d.path()).is_err());
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Follow {
    Yes,
    No,
}

/// Opens `path` as a directory and checks that it is on btrfs.
fn open_btrfs_dir(path: &Path, follow: Follow) -> Result<File, BtrfsError> {
    let file = open_dir(path, follow)?;
    let fs = fstatfs(&file).map_err(|e| BtrfsError::Stat {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    if fs.filesystem_type() != BTRFS_SUPER_MAGIC {
        return Err(BtrfsError::NotBtrfs {
            path: path.to_path_buf(),
        });
    }
    Ok(file)
}

/// Opens `path` as a directory; without `Follow::Yes`, a symlink or a
/// non-directory there is reported as not a subvolume.
fn open_dir(path: &Path, follow: Follow) -> Result<File, BtrfsError> {
    let mut flags = libc::O_DIRECTORY;
    if follow == Follow::No {
        flags |= libc::O_NOFOLLOW;
    }
    // std sets O_CLOEXEC on every file it opens.
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::ELOOP | libc::ENOTDIR) if follow == Follow::No => BtrfsError::NotSubvolume {
                path: path.to_path_buf(),
            },
            _ => BtrfsError::Open {
                path: path.to_path_buf(),
                source,
            },
        })
}

/// Opens the root directory of the subvolume at `path` (not following a
/// symlink there).
fn open_subvolume(path: &Path) -> Result<File, BtrfsError> {
    let file = open_btrfs_dir(path, Follow::No)?;
    let ino = file
        .metadata()
        .map_err(|source| BtrfsError::Stat {
            path: path.to_path_buf(),
            source,
        })?
        .ino();
    if ino != abi::SUBVOL_ROOT_INO {
        return Err(BtrfsError::NotSubvolume {
            path: path.to_path_buf(),
        });
    }
    Ok(file)
}

/// Splits `path` into its parent directory and last component.
fn split(path: &Path) -> Result<(&Path, &OsStr), BtrfsError> {
    let name = path.file_name().ok_or_else(|| BtrfsError::InvalidName {
        path: path.to_path_buf(),
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((parent, name))
}

/// `name` as a NUL-terminated field of `N` bytes.
fn name_field<const N: usize>(name: &OsStr, path: &Path) -> Result<[u8; N], BtrfsError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= N || bytes.contains(&0) || bytes.contains(&b'/') {
        return Err(BtrfsError::InvalidName {
            path: path.to_path_buf(),
        });
    }
    let mut field = [0u8; N];
    field[..bytes.len()].copy_from_slice(bytes);
    Ok(field)
}

/// The bytes of a NUL-terminated field, without the terminator.
fn c_field(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// The id of the subvolume that holds the open file `fd`.
fn tree_id(fd: &File) -> io::Result<u64> {
    // Tree id 0 with the subvolume-root object id is the one lookup the
    // kernel allows without CAP_SYS_ADMIN: it answers with the containing
    // subvolume's id.
    let mut args = abi::InoLookupArgs::new(0, abi::SUBVOL_ROOT_INO);
    // SAFETY: `fd` is open and `args` is a live, initialised
    // `btrfs_ioctl_ino_lookup_args` the kernel may read and overwrite.
    unsafe { abi::ino_lookup(fd.as_raw_fd(), &mut args) }?;
    Ok(args.treeid)
}

fn readonly_fd(subvol: &File, path: &Path) -> Result<bool, BtrfsError> {
    let mut flags: u64 = 0;
    // SAFETY: `subvol` is open and `flags` is a live u64 for the kernel to fill.
    let res = unsafe { abi::subvol_getflags(subvol.as_raw_fd(), &mut flags) };
    res.map_err(|e| BtrfsError::GetFlags {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    Ok(flags & abi::SUBVOL_RDONLY != 0)
}

fn set_readonly_fd(subvol: &File, path: &Path, readonly: bool) -> Result<(), BtrfsError> {
    let mut flags: u64 = 0;
    // SAFETY: `subvol` is open and `flags` is a live u64 for the kernel to fill.
    let res = unsafe { abi::subvol_getflags(subvol.as_raw_fd(), &mut flags) };
    res.map_err(|e| BtrfsError::GetFlags {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    let wanted = if readonly {
        flags | abi::SUBVOL_RDONLY
    } else {
        flags & !abi::SUBVOL_RDONLY
    };
    if wanted == flags {
        return Ok(());
    }
    // SAFETY: `subvol` is open and `wanted` is a live u64 the kernel only reads.
    let res = unsafe { abi::subvol_setflags(subvol.as_raw_fd(), &wanted) };
    res.map(drop).map_err(|e| BtrfsError::SetReadonly {
        path: path.to_path_buf(),
        readonly,
        source: e.into(),
    })
}

/// The subvolumes directly below the subvolume whose root is open as `subvol`.
fn children(subvol: &File, path: &Path) -> Result<Vec<Child>, BtrfsError> {
    let list_err = |source: io::Error| BtrfsError::ListNested {
        path: path.to_path_buf(),
        source,
    };
    let mut refs = Vec::new();
    let mut args = abi::RootRefArgs::new();
    loop {
        // SAFETY: `subvol` is open and `args` is a live, initialised
        // `btrfs_ioctl_get_subvol_rootref_args` the kernel may overwrite.
        let res = unsafe { abi::get_subvol_rootref(subvol.as_raw_fd(), &mut args) };
        // EOVERFLOW: the buffer is full and more remain; the kernel has
        // filled it and advanced `min_treeid` past the last entry.
        let more = match res {
            Ok(_) => false,
            Err(Errno::EOVERFLOW) => true,
            Err(e) => return Err(list_err(e.into())),
        };
        let n = usize::from(args.num_items).min(abi::MAX_ROOTREFS);
        refs.extend_from_slice(&args.rootref[..n]);
        if !more || n == 0 {
            break;
        }
    }

    let mut out = Vec::with_capacity(refs.len());
    for r in refs {
        let mut args = abi::InoLookupUserArgs::new(r.dirid, r.treeid);
        // SAFETY: `subvol` is open and `args` is a live, initialised
        // `btrfs_ioctl_ino_lookup_user_args` the kernel may overwrite.
        let res = unsafe { abi::ino_lookup_user(subvol.as_raw_fd(), &mut args) };
        res.map_err(|e| list_err(e.into()))?;
        let name = OsStr::from_bytes(c_field(&args.name));
        let dir = Path::new(OsStr::from_bytes(c_field(&args.path)));
        let name_ok =
            !name.is_empty() && name != "." && name != ".." && !name.as_bytes().contains(&b'/');
        let dir_ok = dir.components().all(|c| matches!(c, Component::Normal(_)));
        if !name_ok || !dir_ok {
            return Err(list_err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the kernel reported an unusable path for subvolume {}",
                    r.treeid
                ),
            )));
        }
        out.push(Child {
            treeid: r.treeid,
            dir: dir.to_path_buf(),
            name: name.to_os_string(),
        });
    }
    Ok(out)
}

/// Opens directory `rel` strictly beneath the open directory `base`: no
/// symlinks, no `..` out of it, no mount crossings.
fn open_beneath(base: &File, rel: &Path) -> io::Result<File> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        );
    let fd = nix::fcntl::openat2(base.as_raw_fd(), rel, how)?;
    // SAFETY: `openat2` just returned `fd` as a new descriptor that nothing
    // else owns, so handing its ownership to an `OwnedFd` is sound.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(File::from(owned))
}

/// A subvolume found below the top of a walk.
struct Nested {
    id: u64,
    /// Index of its parent in the walk's list; `None`: the top.
    parent: Option<usize>,
    /// Its path relative to its parent subvolume's root.
    seg: PathBuf,
    /// 1 for a child of the top.
    depth: usize,
    /// Whether it was read-only with subvolumes below it (their deletion
    /// needs its flag cleared).
    readonly_parent: bool,
}

/// The path of `list[i]` relative to the top of the walk.
fn rel_path(list: &[Nested], i: usize) -> PathBuf {
    let mut segs = Vec::new();
    let mut cur = Some(i);
    while let Some(j) = cur {
        segs.push(&list[j].seg);
        cur = list[j].parent;
    }
    segs.iter().rev().collect()
}

/// The longest piece of a relative path opened in one `openat2`, safely
/// below `PATH_MAX`.
const OPEN_CHUNK: usize = 3072;

/// How many ancestors' descriptors a walk keeps open (the rest it re-opens
/// from the top when it needs them).
const CHAIN_FDS: usize = 16;

/// Opens the subvolume `rel` below the open directory `base` (the
/// subvolume or directory at `path`) beneath it, in pieces shorter than
/// `PATH_MAX` (so any depth works, with at most two descriptors open), and
/// checks it is subvolume `id`.
fn open_nested(base: &File, path: &Path, rel: &Path, id: u64) -> Result<File, BtrfsError> {
    let full = path.join(rel);
    let open_err = |source: io::Error| BtrfsError::Open {
        path: full.clone(),
        source,
    };
    let mut cur: Option<File> = None;
    let mut piece = PathBuf::new();
    let mut comps = rel.components().peekable();
    while let Some(c) = comps.next() {
        piece.push(c);
        let next_len = comps.peek().map_or(0, |n| n.as_os_str().len() + 1);
        if next_len == 0 || piece.as_os_str().len() + next_len > OPEN_CHUNK {
            let opened = open_beneath(cur.as_ref().unwrap_or(base), &piece).map_err(open_err)?;
            cur = Some(opened);
            piece.clear();
        }
    }
    let root = match cur {
        Some(f) => f,
        None => open_beneath(base, Path::new("")).map_err(open_err)?,
    };
    let ino = root
        .metadata()
        .map(|m| m.ino())
        .map_err(|source| BtrfsError::Stat {
            path: full.clone(),
            source,
        })?;
    let found = tree_id(&root).map_err(|source| BtrfsError::SubvolumeId {
        path: full.clone(),
        source,
    })?;
    if ino != abi::SUBVOL_ROOT_INO || found != id {
        return Err(BtrfsError::Changed { path: full });
    }
    Ok(root)
}

/// Opens `list[i]`, beneath `top` (at `path`), checking its id.
fn open_listed(top: &File, path: &Path, list: &[Nested], i: usize) -> Result<File, BtrfsError> {
    open_nested(top, path, &rel_path(list, i), list[i].id)
}

/// Every subvolume below the subvolume open as `top` (at `path`), parents
/// before children, each opened beneath its parent (no symlinks, no mounts)
/// and checked once. Iterative, depth first: the tree's size costs memory
/// for one entry per subvolume, never stack; descriptors are bounded by
/// keeping only the nearest [`CHAIN_FDS`] ancestors open.
fn walk_nested(top: &File, path: &Path) -> Result<Vec<Nested>, BtrfsError> {
    let mut out: Vec<Nested> = Vec::new();
    // Indexes into `out` still to expand; `None` is the top itself.
    let mut todo: Vec<Option<usize>> = vec![None];
    // Open ancestors of what is being expanded, outermost first, with
    // their paths.
    let mut chain: Vec<(usize, File, PathBuf)> = Vec::new();
    while let Some(i) = todo.pop() {
        let here = match i {
            None => None,
            Some(i) => {
                let parent = out[i].parent;
                // Keep the chain up to this node's parent, if it holds it.
                match chain.iter().rposition(|(j, _, _)| Some(*j) == parent) {
                    Some(k) => chain.truncate(k + 1),
                    None => chain.clear(),
                }
                let n = &out[i];
                let opened = match chain.last() {
                    Some((_, pf, pp)) if parent.is_some() => {
                        (open_nested(pf, pp, &n.seg, n.id)?, pp.join(&n.seg))
                    }
                    _ => (
                        open_listed(top, path, &out, i)?,
                        path.join(rel_path(&out, i)),
                    ),
                };
                Some((i, opened.0, opened.1))
            }
        };
        let (subvol, here_path, depth) = match &here {
            None => (top, path, 0),
            Some((i, f, p)) => (f, p.as_path(), out[*i].depth),
        };
        let kids = children(subvol, here_path)?;
        if let Some(i) = i {
            if !kids.is_empty() {
                out[i].readonly_parent = readonly_fd(subvol, here_path)?;
            }
        }
        for child in kids {
            let seg = child.dir.join(&child.name);
            // Checked now, so that a bad path fails the walk before any
            // change, whatever the order of the deletes.
            drop(open_nested(subvol, here_path, &seg, child.treeid)?);
            todo.push(Some(out.len()));
            out.push(Nested {
                id: child.treeid,
                parent: i,
                seg,
                depth: depth + 1,
                readonly_parent: false,
            });
        }
        if let Some(h) = here {
            chain.push(h);
            if chain.len() > CHAIN_FDS {
                chain.remove(0);
            }
        }
    }
    Ok(out)
}

/// Unlinks `list[i]` by name from its directory, opened beneath its parent
/// subvolume (itself opened beneath `top`, at `path`), after checking that
/// the name there is still subvolume `list[i].id`.
fn destroy_listed(top: &File, path: &Path, list: &[Nested], i: usize) -> Result<(), BtrfsError> {
    let n = &list[i];
    let full = path.join(rel_path(list, i));
    let parent = match n.parent {
        Some(p) => open_listed(top, path, list, p)?,
        None => top.try_clone().map_err(|source| BtrfsError::Open {
            path: path.to_path_buf(),
            source,
        })?,
    };
    let (dir_rel, name) = match (n.seg.parent(), n.seg.file_name()) {
        (Some(d), Some(name)) => (d, name),
        _ => return Err(BtrfsError::InvalidName { path: full }),
    };
    let dir = open_beneath(&parent, dir_rel).map_err(|source| BtrfsError::Open {
        path: full.parent().unwrap_or(&full).to_path_buf(),
        source,
    })?;
    let dir_path = full.parent().unwrap_or(&full).to_path_buf();
    drop(open_nested(&dir, &dir_path, Path::new(name), n.id)?);
    destroy(&dir, name, &full)
}

/// Deletes the subvolume `id` (somewhere below the open directory `fd`) by
/// its id: the kernel finds its name and parent itself.
fn destroy_by_id(fd: &File, id: u64) -> Result<(), Errno> {
    let mut name = [0u8; abi::VOL_ARGS_V2_NAME_LEN];
    name[..8].copy_from_slice(&id.to_ne_bytes());
    let args = abi::VolArgsV2::new(0, abi::SUBVOL_SPEC_BY_ID, name);
    // SAFETY: `fd` is open and `args` is a live, initialised
    // `btrfs_ioctl_vol_args_v2` (the subvolume id in the name union's first
    // 8 bytes) that the kernel only reads.
    let res = unsafe { abi::snap_destroy_v2(fd.as_raw_fd(), &args) };
    res.map(drop)
}

/// Unlinks the subvolume `name` from the open directory `dir`.
fn destroy(dir: &File, name: &OsStr, path: &Path) -> Result<(), BtrfsError> {
    let args = abi::VolArgs::new(name_field(name, path)?);
    // SAFETY: `dir` is open and `args` is a live, initialised
    // `btrfs_ioctl_vol_args` that the kernel only reads.
    let res = unsafe { abi::snap_destroy(dir.as_raw_fd(), &args) };
    res.map(drop).map_err(|e| BtrfsError::Delete {
        path: path.to_path_buf(),
        source: e.into(),
    })
}

/// Deletes the subvolumes below `subvol` (open at `path`), leaves first,
/// then `subvol` itself, which is `name` in `dir`.
fn delete_tree(dir: &File, name: &OsStr, subvol: &File, path: &Path) -> Result<(), BtrfsError> {
    let nested = walk_nested(subvol, path)?;
    // Read-only subvolumes that hold others: `None` is the top.
    let mut parents: Vec<Option<usize>> = (0..nested.len())
        .filter(|&i| nested[i].readonly_parent)
        .map(Some)
        .collect();
    if !nested.is_empty() && readonly_fd(subvol, path)? {
        parents.insert(0, None);
    }
    let open = |n: Option<usize>| match n {
        None => subvol.try_clone().map_err(|source| BtrfsError::Open {
            path: path.to_path_buf(),
            source,
        }),
        Some(i) => open_listed(subvol, path, &nested, i),
    };
    let path_of = |n: Option<usize>| {
        n.map_or_else(|| path.to_path_buf(), |i| path.join(rel_path(&nested, i)))
    };
    let mut cleared = Vec::new();
    let result = (|| {
        for &p in &parents {
            set_readonly_fd(&open(p)?, &path_of(p), false)?;
            cleared.push(p);
        }
        // Parents come before their children in the walk: backwards,
        // every subvolume is deleted after those below it.
        for (i, n) in nested.iter().enumerate().rev() {
            match destroy_by_id(subvol, n.id) {
                Ok(()) => {}
                // The kernel builds the subvolume's whole path from the
                // filesystem's top, which fails past PATH_MAX: unlink it
                // by name from its directory, opened beneath its parent.
                Err(Errno::ENAMETOOLONG) => destroy_listed(subvol, path, &nested, i)?,
                Err(e) => {
                    return Err(BtrfsError::Delete {
                        path: path_of(Some(i)),
                        source: e.into(),
                    })
                }
            }
        }
        destroy(dir, name, path)
    })();
    let Err(cause) = result else {
        return Ok(());
    };
    // Give the flags back to what is left, the outermost last.
    for &p in cleared.iter().rev() {
        let restored = open(p).and_then(|f| set_readonly_fd(&f, &path_of(p), true));
        match restored {
            Ok(()) => {}
            // Deleted before the failure: nothing to restore.
            Err(BtrfsError::Open { ref source, .. })
                if source.raw_os_error() == Some(libc::ENOENT) => {}
            Err(restore) => {
                return Err(BtrfsError::DeleteLeftWritable {
                    path: path_of(p),
                    source: Box::new(cause),
                    restore: match restore {
                        BtrfsError::GetFlags { source, .. }
                        | BtrfsError::SetReadonly { source, .. }
                        | BtrfsError::Open { source, .. } => source,
                        other => io::Error::other(other.to_string()),
                    },
                })
            }
        }
    }
    Err(cause)
}
