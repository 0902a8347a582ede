//! Copying a directory tree with every piece of metadata a root filesystem
//! needs: file types, numeric owners, full modes, nanosecond times, hard links
//! and extended attributes (file capabilities and POSIX ACLs included).
//!
//! The walk never crosses a symlink: every child is reached relative to an
//! open descriptor of its parent with `O_NOFOLLOW` / `AT_SYMLINK_NOFOLLOW`.
//! Regular files and directories are changed through their own descriptors;
//! symlinks, devices, fifos and sockets (which cannot be opened without side
//! effects) by name relative to their parent's descriptor, their extended
//! attributes through `/proc/self/fd/<parent>/<name>` with the `l*xattr` calls,
//! which do not follow the last component.
//!
//! Metadata is applied in the one order that keeps it all: data, owner, mode
//! (`chown` clears setuid/setgid), extended attributes (`chown` and writing
//! data clear `security.capability`), times (a directory's last, after its
//! children were made).

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, IntoRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::fcntl::{readlinkat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstat, fstatat, futimens, mkdirat, mknodat, utimensat, FchmodatFlags,
    FileStat, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, Gid, Uid};
use xattr::FileExt;

/// What a tree holds: every entry below the root (files, dirs, symlinks, devices, fifos,
/// sockets; a hard-linked inode counted once) and the sum of regular files' sizes in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TreeStats {
    pub files: u64,
    pub bytes: u64,
}

/// Why a tree could not be copied or walked; each variant names the path concerned.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("cannot open {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read the status of {}", path.display())]
    Stat {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot list directory {}", path.display())]
    ReadDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read symlink {}", path.display())]
    ReadLink {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot copy the data of {} to {}", src.display(), dst.display())]
    Data {
        src: PathBuf,
        dst: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot hard-link {} to {}", path.display(), target.display())]
    Link {
        path: PathBuf,
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot set the owner of {} to {uid}:{gid}", path.display())]
    Owner {
        path: PathBuf,
        uid: u32,
        gid: u32,
        #[source]
        source: io::Error,
    },
    #[error("cannot set the mode of {} to {mode:04o}", path.display())]
    Mode {
        path: PathBuf,
        mode: u32,
        #[source]
        source: io::Error,
    },
    #[error("cannot read extended attributes of {}", path.display())]
    ReadXattr {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot set extended attribute {} on {}", name.to_string_lossy(), path.display())]
    WriteXattr {
        path: PathBuf,
        name: OsString,
        #[source]
        source: io::Error,
    },
    #[error("cannot set the times of {}", path.display())]
    Times {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the destination {} lies inside the source tree {}", dst.display(), src.display())]
    DestinationInsideSource { src: PathBuf, dst: PathBuf },
}

/// The metadata of one inode that a copy or an unpacked archive must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits with setuid, setgid and sticky (`0o7777`); no file type.
    pub mode: u32,
    pub atime: TimeSpec,
    pub mtime: TimeSpec,
    /// Extended attributes in the order they are set.
    pub xattrs: Vec<(OsString, Vec<u8>)>,
}

impl Meta {
    fn from_stat(st: &FileStat, xattrs: Vec<(OsString, Vec<u8>)>) -> Meta {
        Meta {
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode & 0o7777,
            atime: TimeSpec::new(st.st_atime, st.st_atime_nsec),
            mtime: TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
            xattrs,
        }
    }
}

/// An inode to read or change: an open regular file or directory, or a name in an
/// open directory for what cannot be opened without side effects.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Node<'a> {
    File(&'a File),
    At {
        dir: &'a File,
        name: &'a OsStr,
        symlink: bool,
    },
}

impl Node<'_> {
    /// The `l*xattr` path of a named node: resolved through the parent's
    /// descriptor, the last component not followed.
    fn proc_path(dir: &File, name: &OsStr) -> PathBuf {
        Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name)
    }

    fn list_xattrs(self) -> io::Result<Vec<OsString>> {
        match self {
            Node::File(f) => Ok(f.list_xattr()?.collect()),
            Node::At { dir, name, .. } => Ok(xattr::list(Self::proc_path(dir, name))?.collect()),
        }
    }

    fn get_xattr(self, key: &OsStr) -> io::Result<Option<Vec<u8>>> {
        match self {
            Node::File(f) => f.get_xattr(key),
            Node::At { dir, name, .. } => xattr::get(Self::proc_path(dir, name), key),
        }
    }

    fn set_xattr(self, key: &OsStr, value: &[u8]) -> io::Result<()> {
        match self {
            Node::File(f) => f.set_xattr(key, value),
            Node::At { dir, name, .. } => xattr::set(Self::proc_path(dir, name), key, value),
        }
    }
}

/// Opens `name` relative to `dir` (close-on-exec added).
pub(crate) fn open_at(dir: &File, name: &OsStr, flags: OFlag, mode: Mode) -> nix::Result<File> {
    let owned = crate::sys::fd::openat(dir.as_fd(), name, flags | OFlag::O_CLOEXEC, mode)?;
    Ok(File::from(owned))
}

/// Opens a directory by path (the caller's own path: symlinks in it are followed).
pub(crate) fn open_dir(path: &Path) -> Result<File, CopyError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| CopyError::Open {
            path: path.to_path_buf(),
            source,
        })
}

/// Opens the child directory `name` of `dir`, refusing a symlink.
pub(crate) fn open_child_dir(dir: &File, name: &OsStr) -> nix::Result<File> {
    open_at(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
}

/// Reads the metadata of `node`, whose status is `st`.
pub(crate) fn read_meta(node: Node<'_>, st: &FileStat, path: &Path) -> Result<Meta, CopyError> {
    let err = |source| CopyError::ReadXattr {
        path: path.to_path_buf(),
        source,
    };
    let mut xattrs = Vec::new();
    for key in node.list_xattrs().map_err(err)? {
        // An attribute removed since the listing is simply gone.
        if let Some(value) = node.get_xattr(&key).map_err(err)? {
            xattrs.push((key, value));
        }
    }
    Ok(Meta::from_stat(st, xattrs))
}

/// Gives `node` the owner, mode, extended attributes and times of `meta`, in that order.
pub(crate) fn apply_meta(node: Node<'_>, meta: &Meta, path: &Path) -> Result<(), CopyError> {
    let (uid, gid) = (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)));
    let owner = match node {
        Node::File(f) => fchown(f.as_raw_fd(), uid, gid),
        Node::At { dir, name, .. } => fchownat(
            Some(dir.as_raw_fd()),
            name,
            uid,
            gid,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ),
    };
    owner.map_err(|e| CopyError::Owner {
        path: path.to_path_buf(),
        uid: meta.uid,
        gid: meta.gid,
        source: e.into(),
    })?;

    let mode = Mode::from_bits_retain(meta.mode & 0o7777);
    let chmod = match node {
        Node::File(f) => fchmod(f.as_raw_fd(), mode),
        // Linux has no mode on symlinks.
        Node::At { symlink: true, .. } => Ok(()),
        // A device, fifo or socket we just made: not a symlink, nothing to follow.
        Node::At { dir, name, .. } => fchmodat(
            Some(dir.as_raw_fd()),
            name,
            mode,
            FchmodatFlags::FollowSymlink,
        ),
    };
    chmod.map_err(|e| CopyError::Mode {
        path: path.to_path_buf(),
        mode: meta.mode,
        source: e.into(),
    })?;

    for (key, value) in &meta.xattrs {
        node.set_xattr(key, value)
            .map_err(|source| CopyError::WriteXattr {
                path: path.to_path_buf(),
                name: key.clone(),
                source,
            })?;
    }

    let times = match node {
        Node::File(f) => futimens(f.as_raw_fd(), &meta.atime, &meta.mtime),
        Node::At { dir, name, .. } => utimensat(
            Some(dir.as_raw_fd()),
            name,
            &meta.atime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        ),
    };
    times.map_err(|e| CopyError::Times {
        path: path.to_path_buf(),
        source: e.into(),
    })
}

/// The POSIX ACLs a directory may have inherited from its parent.
const ACL_XATTRS: [&str; 2] = ["system.posix_acl_access", "system.posix_acl_default"];

/// Removes the POSIX ACLs of a destination root, so that nothing made in it
/// inherits an ACL from the root's own parent; the root's own come last.
pub(crate) fn drop_acls(root: &File, path: &Path) -> Result<(), CopyError> {
    for key in ACL_XATTRS {
        match root.remove_xattr(key) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENODATA | libc::EOPNOTSUPP)) => {}
            Err(source) => {
                return Err(CopyError::WriteXattr {
                    path: path.to_path_buf(),
                    name: key.into(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// The names in an open directory, without `.` and `..`.
pub(crate) fn list_names(dir: &File, path: &Path) -> Result<Vec<OsString>, CopyError> {
    let err = |e: nix::errno::Errno| CopyError::ReadDir {
        path: path.to_path_buf(),
        source: e.into(),
    };
    // A descriptor of its own, so that its offset is not shared with `dir`.
    let own = open_source(dir, OsStr::new("."), OFlag::O_DIRECTORY).map_err(err)?;
    let mut d = Dir::from_fd(own.into_raw_fd()).map_err(err)?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let entry = entry.map_err(err)?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(names)
}

/// The status of `name` in `dir`, not following a symlink.
pub(crate) fn stat_at(dir: &File, name: &OsStr, path: &Path) -> Result<FileStat, CopyError> {
    fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| {
        CopyError::Stat {
            path: path.to_path_buf(),
            source: e.into(),
        }
    })
}

fn stat_fd(f: &File, path: &Path) -> Result<FileStat, CopyError> {
    fstat(f.as_raw_fd()).map_err(|e| CopyError::Stat {
        path: path.to_path_buf(),
        source: e.into(),
    })
}

pub(crate) fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Copies the data of `src` into the empty file `dst`: a reflink when both are
/// on the same btrfs (or another filesystem that clones), a copy otherwise.
pub(crate) fn copy_data(src: &File, dst: &mut File) -> io::Result<()> {
    let cloned = crate::sys::reflink::ficlone(dst.as_fd(), src.as_fd());
    if cloned.is_ok() {
        return Ok(());
    }
    // Another filesystem, or one that cannot clone: copy instead.
    // `io::copy` between files uses copy_file_range, then sendfile, then read/write.
    let mut src = src;
    io::copy(&mut src, dst).map(drop)
}

/// Opens a source file or directory without updating its access time where allowed.
fn open_source(dir: &File, name: &OsStr, flags: OFlag) -> nix::Result<File> {
    let flags = flags | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY;
    match open_at(dir, name, flags | OFlag::O_NOATIME, Mode::empty()) {
        Err(nix::errno::Errno::EPERM) => open_at(dir, name, flags, Mode::empty()),
        r => r,
    }
}

/// Copies the contents of directory `src` into the existing, empty directory `dst`.
///
/// Preserves file types (symlinks are copied, never followed), numeric owners, full
/// modes, nanosecond access and modification times, hard links within the tree and
/// every extended attribute (file capabilities and POSIX ACLs included). File data is
/// reflinked when `src` and `dst` are on the same btrfs, copied otherwise. `dst`
/// itself receives the owner, mode, times and extended attributes of `src`.
/// Returns what was copied.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<TreeStats, CopyError> {
    let src_root = open_dir(src)?;
    let dst_root = open_dir(dst)?;
    let src_st = stat_fd(&src_root, src)?;
    let dst_st = stat_fd(&dst_root, dst)?;
    if (src_st.st_dev, src_st.st_ino) == (dst_st.st_dev, dst_st.st_ino) {
        return Err(CopyError::DestinationInsideSource {
            src: src.to_path_buf(),
            dst: dst.to_path_buf(),
        });
    }
    let meta = read_meta(Node::File(&src_root), &src_st, src)?;
    drop_acls(&dst_root, dst)?;
    let mut copier = Copier {
        src,
        dst,
        dst_root: &dst_root,
        dst_id: (dst_st.st_dev, dst_st.st_ino),
        links: HashMap::new(),
        stats: TreeStats::default(),
    };
    copier.copy_dir(&src_root, src, &dst_root, dst, Path::new(""))?;
    apply_meta(Node::File(&dst_root), &meta, dst)?;
    tracing::debug!(src = %src.display(), dst = %dst.display(), files = copier.stats.files,
        bytes = copier.stats.bytes, "copied tree");
    Ok(copier.stats)
}

struct Copier<'a> {
    src: &'a Path,
    dst: &'a Path,
    dst_root: &'a File,
    /// The destination root's device and inode, to refuse copying it into itself.
    dst_id: (u64, u64),
    /// Inodes with several links already copied: their first path below `dst`.
    links: HashMap<(u64, u64), PathBuf>,
    stats: TreeStats,
}

impl Copier<'_> {
    fn copy_dir(
        &mut self,
        sdir: &File,
        spath: &Path,
        ddir: &File,
        dpath: &Path,
        rel: &Path,
    ) -> Result<(), CopyError> {
        for name in list_names(sdir, spath)? {
            let sp = spath.join(&name);
            let dp = dpath.join(&name);
            let st = stat_at(sdir, &name, &sp)?;
            let kind = file_type(&st);
            let id = (st.st_dev, st.st_ino);
            let linked = kind != SFlag::S_IFDIR && st.st_nlink > 1;
            if linked {
                if let Some(first) = self.links.get(&id) {
                    linkat(
                        Some(self.dst_root.as_raw_fd()),
                        first.as_path(),
                        Some(ddir.as_raw_fd()),
                        Path::new(&name),
                        AtFlags::empty(),
                    )
                    .map_err(|e| CopyError::Link {
                        path: dp.clone(),
                        target: self.dst.join(first),
                        source: e.into(),
                    })?;
                    continue;
                }
            }
            self.copy_entry(kind, &st, sdir, &name, &sp, ddir, &dp, rel)?;
            self.stats.files += 1;
            if kind == SFlag::S_IFREG {
                self.stats.bytes += u64::try_from(st.st_size).unwrap_or(0);
            }
            if linked {
                self.links.insert(id, rel.join(&name));
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_entry(
        &mut self,
        kind: SFlag,
        st: &FileStat,
        sdir: &File,
        name: &OsStr,
        sp: &Path,
        ddir: &File,
        dp: &Path,
        rel: &Path,
    ) -> Result<(), CopyError> {
        let open_err = |e: nix::errno::Errno| CopyError::Open {
            path: sp.to_path_buf(),
            source: e.into(),
        };
        let create_err = |e: nix::errno::Errno| CopyError::Create {
            path: dp.to_path_buf(),
            source: e.into(),
        };
        match kind {
            SFlag::S_IFDIR => {
                if (st.st_dev, st.st_ino) == self.dst_id {
                    return Err(CopyError::DestinationInsideSource {
                        src: self.src.to_path_buf(),
                        dst: self.dst.to_path_buf(),
                    });
                }
                let s = open_source(sdir, name, OFlag::O_DIRECTORY).map_err(open_err)?;
                mkdirat(Some(ddir.as_raw_fd()), name, Mode::S_IRWXU).map_err(create_err)?;
                let d = open_child_dir(ddir, name).map_err(create_err)?;
                self.copy_dir(&s, sp, &d, dp, &rel.join(name))?;
                let meta = read_meta(Node::File(&s), st, sp)?;
                apply_meta(Node::File(&d), &meta, dp)
            }
            SFlag::S_IFREG => {
                let s = open_source(sdir, name, OFlag::empty()).map_err(open_err)?;
                let mut d = open_at(
                    ddir,
                    name,
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW,
                    Mode::S_IRUSR | Mode::S_IWUSR,
                )
                .map_err(create_err)?;
                copy_data(&s, &mut d).map_err(|source| CopyError::Data {
                    src: sp.to_path_buf(),
                    dst: dp.to_path_buf(),
                    source,
                })?;
                let meta = read_meta(Node::File(&s), st, sp)?;
                apply_meta(Node::File(&d), &meta, dp)
            }
            SFlag::S_IFLNK => {
                let target =
                    readlinkat(Some(sdir.as_raw_fd()), name).map_err(|e| CopyError::ReadLink {
                        path: sp.to_path_buf(),
                        source: e.into(),
                    })?;
                symlinkat(target.as_os_str(), Some(ddir.as_raw_fd()), name).map_err(create_err)?;
                let (s, d) = (at(sdir, name, true), at(ddir, name, true));
                apply_meta(d, &read_meta(s, st, sp)?, dp)
            }
            // Character and block devices, fifos and sockets.
            _ => {
                mknodat(
                    Some(ddir.as_raw_fd()),
                    name,
                    kind,
                    Mode::S_IRUSR | Mode::S_IWUSR,
                    st.st_rdev,
                )
                .map_err(create_err)?;
                let (s, d) = (at(sdir, name, false), at(ddir, name, false));
                apply_meta(d, &read_meta(s, st, sp)?, dp)
            }
        }
    }
}

fn at<'a>(dir: &'a File, name: &'a OsStr, symlink: bool) -> Node<'a> {
    Node::At { dir, name, symlink }
}

/// Walks `root` without following symlinks and returns its stats (same counting rules).
pub fn tree_stats(root: &Path) -> Result<TreeStats, CopyError> {
    let dir = open_dir(root)?;
    let mut stats = TreeStats::default();
    let mut seen = HashSet::new();
    count_dir(&dir, root, &mut stats, &mut seen)?;
    Ok(stats)
}

fn count_dir(
    dir: &File,
    path: &Path,
    stats: &mut TreeStats,
    seen: &mut HashSet<(u64, u64)>,
) -> Result<(), CopyError> {
    for name in list_names(dir, path)? {
        let p = path.join(&name);
        let st = stat_at(dir, &name, &p)?;
        let kind = file_type(&st);
        if kind != SFlag::S_IFDIR && st.st_nlink > 1 && !seen.insert((st.st_dev, st.st_ino)) {
            continue;
        }
        stats.files += 1;
        match kind {
            SFlag::S_IFREG => stats.bytes += u64::try_from(st.st_size).unwrap_or(0),
            SFlag::S_IFDIR => {
                let child = open_child_dir(dir, &name).map_err(|e| CopyError::Open {
                    path: p.clone(),
                    source: e.into(),
                })?;
                count_dir(&child, &p, stats, seen)?;
            }
            _ => {}
        }
    }
    Ok(())
}
