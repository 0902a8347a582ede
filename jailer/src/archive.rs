//! Unpacking a template from a tar archive (plain, gzip or zstd) with every
//! piece of metadata a root filesystem needs.
//!
//! The `tar` crate parses the archive (GNU long names, pax headers, sparse
//! files); the files are made here, with the same code that [`crate::copy`]
//! uses, because the crate's own `unpack` writes devices and fifos as regular
//! files, drops directories' extended attributes and times, keeps whole seconds
//! only and silently skips entries with `..` instead of refusing the archive.
//!
//! Every entry is made relative to an open descriptor of its parent directory,
//! reached from the destination one component at a time with `O_NOFOLLOW`: an
//! entry whose path is absolute, holds `..` or leads through a symlink (one the
//! archive made itself, say) is refused, and nothing is ever written outside
//! the destination. Directories get their metadata last, deepest first, after
//! everything inside them was made.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{makedev, mkdirat, mknodat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{linkat, symlinkat, unlinkat, UnlinkatFlags};

use crate::copy::{self, CopyError, Meta, Node, TreeStats};

/// How an archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Why an archive could not be unpacked; each variant names the archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot open archive {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a tar, tar.gz or tar.zst archive", path.display())]
    UnknownFormat { path: PathBuf },
    #[error("cannot read archive {}", path.display())]
    Unpack {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("entry {} of archive {} would land outside the destination", entry.display(), path.display())]
    Escape { path: PathBuf, entry: PathBuf },
    #[error("entry {} of archive {} is invalid: {reason}", entry.display(), path.display())]
    Invalid {
        path: PathBuf,
        entry: PathBuf,
        reason: Box<str>,
    },
    #[error("cannot unpack entry {} of archive {}", entry.display(), path.display())]
    Entry {
        path: PathBuf,
        entry: PathBuf,
        #[source]
        source: Box<CopyError>,
    },
    #[error("cannot prepare the destination of archive {}", path.display())]
    Destination {
        path: PathBuf,
        #[source]
        source: Box<CopyError>,
    },
    #[error("cannot count what was unpacked into {}", dst.display())]
    Stats {
        dst: PathBuf,
        #[source]
        source: Box<CopyError>,
    },
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const BLOCK: usize = 512;

/// Sniffs the first bytes (gzip 1f 8b, zstd 28 b5 2f fd, otherwise a ustar/gnu tar header at
/// offset 257 "ustar"); errors with UnknownFormat for anything else.
///
/// An old (v7) tar header has no magic: a `.tar` file whose first block is a header
/// with a valid checksum, or the all-zero end of an empty archive, is taken as tar.
pub fn detect(path: &Path) -> Result<Compression, ArchiveError> {
    let mut f = File::open(path).map_err(|source| ArchiveError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let mut head = [0u8; BLOCK];
    let mut n = 0;
    while n < BLOCK {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(ArchiveError::Unpack {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
    let head = &head[..n];
    if head.starts_with(&GZIP_MAGIC) {
        return Ok(Compression::Gzip);
    }
    if head.starts_with(&ZSTD_MAGIC) {
        return Ok(Compression::Zstd);
    }
    if head.get(257..262) == Some(b"ustar".as_slice()) {
        return Ok(Compression::None);
    }
    let tar_name = path.extension().is_some_and(|e| e == "tar");
    if tar_name && n == BLOCK && (head.iter().all(|&b| b == 0) || checksum_ok(head)) {
        return Ok(Compression::None);
    }
    Err(ArchiveError::UnknownFormat {
        path: path.to_path_buf(),
    })
}

/// Whether a 512-byte block is a tar header by its checksum (field counted as spaces).
fn checksum_ok(block: &[u8]) -> bool {
    let field = &block[148..156];
    let stored = field
        .iter()
        .skip_while(|&&b| b == b' ')
        .take_while(|&&b| (b'0'..=b'7').contains(&b))
        .fold(0u32, |acc, &b| acc * 8 + u32::from(b - b'0'));
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    field.iter().any(u8::is_ascii_digit) && stored == sum
}

/// Unpacks into existing empty dir `dst`, preserving numeric owners, modes, mtimes (and
/// pax atimes, to the nanosecond), symlinks, hard links, devices, fifos and xattrs (pax
/// `SCHILY.xattr.*`, which is how GNU tar `--xattrs` writes them, incl. security.capability).
///
/// Entries that would escape `dst` (absolute paths, `..`, through a symlink) are refused
/// with an error, never written outside. An entry `./` gives `dst` itself its metadata.
/// On error, what was unpacked so far stays in `dst` for the caller to remove.
/// Returns the stats of the result.
pub fn unpack(archive: &Path, dst: &Path) -> Result<TreeStats, ArchiveError> {
    let compression = detect(archive)?;
    let open_err = |source| ArchiveError::Open {
        path: archive.to_path_buf(),
        source,
    };
    let read_err = |source| ArchiveError::Unpack {
        path: archive.to_path_buf(),
        source,
    };
    let file = BufReader::new(File::open(archive).map_err(open_err)?);
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        Compression::Zstd => Box::new(zstd::Decoder::with_buffer(file).map_err(read_err)?),
    };
    let dest_err = |source| ArchiveError::Destination {
        path: archive.to_path_buf(),
        source: Box::new(source),
    };
    let root = copy::open_dir(dst).map_err(dest_err)?;
    copy::drop_acls(&root, dst).map_err(dest_err)?;

    let mut unpacker = Unpacker {
        archive,
        dst,
        root,
        parent: None,
        dirs: Vec::new(),
    };
    let mut tar = tar::Archive::new(reader);
    for entry in tar.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        unpacker.entry(&mut entry)?;
    }
    unpacker.finish()?;
    let stats = copy::tree_stats(dst).map_err(|source| ArchiveError::Stats {
        dst: dst.to_path_buf(),
        source: Box::new(source),
    })?;
    tracing::debug!(archive = %archive.display(), dst = %dst.display(), ?compression,
        files = stats.files, bytes = stats.bytes, "unpacked archive");
    Ok(stats)
}

/// Why a path inside the destination could not be reached.
enum Reach {
    /// A component is a symlink.
    Symlink,
    Io(CopyError),
}

struct Unpacker<'a> {
    archive: &'a Path,
    dst: &'a Path,
    root: File,
    /// The last parent directory reached: its components and descriptor.
    parent: Option<(Vec<OsString>, File)>,
    /// Directories made from entries, with the metadata they get at the end.
    dirs: Vec<(Vec<OsString>, Meta)>,
}

impl Unpacker<'_> {
    fn escape(&self, entry: &Path) -> ArchiveError {
        ArchiveError::Escape {
            path: self.archive.to_path_buf(),
            entry: entry.to_path_buf(),
        }
    }

    fn invalid(&self, entry: &Path, reason: impl Into<String>) -> ArchiveError {
        ArchiveError::Invalid {
            path: self.archive.to_path_buf(),
            entry: entry.to_path_buf(),
            reason: reason.into().into_boxed_str(),
        }
    }

    fn failed(&self, entry: &Path, source: CopyError) -> ArchiveError {
        ArchiveError::Entry {
            path: self.archive.to_path_buf(),
            entry: entry.to_path_buf(),
            source: Box::new(source),
        }
    }

    fn read_failed(&self, source: io::Error) -> ArchiveError {
        ArchiveError::Unpack {
            path: self.archive.to_path_buf(),
            source,
        }
    }

    /// The host path of `comps` below the destination, for messages.
    fn host_path(&self, comps: &[OsString]) -> PathBuf {
        comps.iter().fold(self.dst.to_path_buf(), |p, c| p.join(c))
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ArchiveError> {
        use tar::EntryType as T;
        let kind = entry.header().entry_type();
        if matches!(kind, T::XGlobalHeader) {
            return Ok(());
        }
        let name = entry.path().map_err(|e| self.read_failed(e))?.into_owned();
        let comps = components(&name).ok_or_else(|| self.escape(&name))?;
        let meta = entry_meta(entry).map_err(|reason| self.invalid(&name, reason))?;
        let Some((leaf, parent_comps)) = comps.split_last() else {
            // The archive's root, `./`: the destination itself.
            if kind != T::Directory {
                return Err(self.invalid(&name, "the archive root is not a directory"));
            }
            self.dirs.push((comps, meta));
            return Ok(());
        };
        let (parent_key, parent) = self.take_parent(parent_comps, &name)?;
        let result = self.make(kind, entry, &name, &comps, leaf, &parent, meta);
        self.parent = Some((parent_key, parent));
        result
    }

    /// Makes the entry `name`, whose last component `leaf` is in `parent`.
    #[allow(clippy::too_many_arguments)]
    fn make<R: Read>(
        &mut self,
        kind: tar::EntryType,
        entry: &mut tar::Entry<'_, R>,
        name: &Path,
        comps: &[OsString],
        leaf: &OsStr,
        parent: &File,
        meta: Meta,
    ) -> Result<(), ArchiveError> {
        use tar::EntryType as T;
        let path = self.host_path(comps);
        let create_err = |e: Errno| CopyError::Create {
            path: path.clone(),
            source: e.into(),
        };
        let fd = Some(parent.as_raw_fd());
        let owner_only = Mode::S_IRUSR | Mode::S_IWUSR;
        let result = match kind {
            T::Directory => match mkdirat(fd, leaf, Mode::S_IRWXU) {
                Ok(()) => Ok(()),
                Err(Errno::EEXIST) if is_dir(parent, leaf) => Ok(()),
                Err(Errno::EEXIST) => {
                    replace(parent, leaf, || mkdirat(fd, leaf, Mode::S_IRWXU)).map_err(create_err)
                }
                Err(e) => Err(create_err(e)),
            }
            .map(|()| self.dirs.push((comps.to_vec(), meta))),
            T::Regular | T::Continuous | T::GNUSparse => {
                let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW;
                let size = entry.size();
                replace(parent, leaf, || {
                    copy::open_at(parent, leaf, flags, owner_only)
                })
                .map_err(create_err)
                .and_then(|mut f| {
                    let data_err = |source| CopyError::Data {
                        src: self.archive.join(name),
                        dst: path.clone(),
                        source,
                    };
                    let copied = io::copy(entry, &mut f).map_err(data_err)?;
                    if copied != size {
                        let eof = io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("the archive holds {copied} of {size} bytes"),
                        );
                        return Err(data_err(eof));
                    }
                    copy::apply_meta(Node::File(&f), &meta, &path)
                })
            }
            T::Symlink => {
                let target = link_name(entry, name).map_err(|r| self.invalid(name, r))?;
                replace(parent, leaf, || symlinkat(target.as_os_str(), fd, leaf))
                    .map_err(create_err)
                    .and_then(|()| copy::apply_meta(at(parent, leaf, true), &meta, &path))
            }
            T::Char | T::Block | T::Fifo => {
                let sflag = match kind {
                    T::Char => SFlag::S_IFCHR,
                    T::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let header = entry.header();
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let dev = makedev(major.into(), minor.into());
                replace(parent, leaf, || mknodat(fd, leaf, sflag, owner_only, dev))
                    .map_err(create_err)
                    .and_then(|()| copy::apply_meta(at(parent, leaf, false), &meta, &path))
            }
            T::Link => return self.hard_link(entry, name, leaf, parent),
            other => {
                let reason = format!("unsupported entry type {:?}", other.as_byte() as char);
                return Err(self.invalid(name, reason));
            }
        };
        result.map_err(|e| self.failed(name, e))
    }

    /// Makes `leaf` in `parent` another link to an earlier entry.
    fn hard_link<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        name: &Path,
        leaf: &OsStr,
        parent: &File,
    ) -> Result<(), ArchiveError> {
        let target = link_name(entry, name).map_err(|r| self.invalid(name, r))?;
        let target_comps = components(&target).ok_or_else(|| self.escape(name))?;
        let Some((target_leaf, target_parent)) = target_comps.split_last() else {
            return Err(self.invalid(name, "hard link to the archive root"));
        };
        let dir = self.walk(target_parent, name)?;
        let link = || {
            linkat(
                Some(dir.as_raw_fd()),
                Path::new(target_leaf),
                Some(parent.as_raw_fd()),
                Path::new(leaf),
                nix::fcntl::AtFlags::empty(),
            )
        };
        replace(parent, leaf, link).map_err(|e| {
            self.failed(
                name,
                CopyError::Link {
                    path: self.dst.join(name),
                    target: self.host_path(&target_comps),
                    source: e.into(),
                },
            )
        })
    }

    /// The directory `comps`: the cached one when it is that, else reached anew.
    fn take_parent(
        &mut self,
        comps: &[OsString],
        entry: &Path,
    ) -> Result<(Vec<OsString>, File), ArchiveError> {
        match self.parent.take() {
            Some((key, dir)) if key == comps => Ok((key, dir)),
            _ => Ok((comps.to_vec(), self.walk(comps, entry)?)),
        }
    }

    /// Opens the directory `comps` below the destination one component at a time,
    /// refusing symlinks and creating missing directories (owned by root, 0755, as
    /// tar does when an archive lists no entry for them).
    fn walk(&self, comps: &[OsString], entry: &Path) -> Result<File, ArchiveError> {
        let mut dir = self
            .root
            .try_clone()
            .map_err(|source| self.failed(entry, open_error(self.dst, source)))?;
        for (i, comp) in comps.iter().enumerate() {
            dir = match reach_child(&dir, comp, || self.host_path(&comps[..=i])) {
                Ok(d) => d,
                Err(Reach::Symlink) => return Err(self.escape(entry)),
                Err(Reach::Io(e)) => return Err(self.failed(entry, e)),
            };
        }
        Ok(dir)
    }

    /// Gives the directories made from entries their metadata, deepest first.
    fn finish(mut self) -> Result<(), ArchiveError> {
        self.parent = None;
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by(|a, b| b.0.cmp(&a.0));
        dirs.dedup_by(|later, earlier| later.0 == earlier.0);
        for (comps, meta) in dirs {
            let entry: PathBuf = comps.iter().collect();
            let dir = self.walk(&comps, &entry)?;
            let path = self.host_path(&comps);
            copy::apply_meta(Node::File(&dir), &meta, &path).map_err(|e| self.failed(&entry, e))?;
        }
        Ok(())
    }
}

fn at<'a>(dir: &'a File, name: &'a OsStr, symlink: bool) -> Node<'a> {
    Node::At { dir, name, symlink }
}

fn open_error(path: &Path, source: io::Error) -> CopyError {
    CopyError::Open {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens the child directory `name` of `dir`, making it when missing.
fn reach_child(dir: &File, name: &OsStr, path: impl Fn() -> PathBuf) -> Result<File, Reach> {
    let opened = match copy::open_child_dir(dir, name) {
        Err(Errno::ENOENT) => {
            match mkdirat(Some(dir.as_raw_fd()), name, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => {
                    return Err(Reach::Io(CopyError::Create {
                        path: path(),
                        source: e.into(),
                    }))
                }
            }
            copy::open_child_dir(dir, name)
        }
        r => r,
    };
    match opened {
        Ok(d) => Ok(d),
        // O_NOFOLLOW | O_DIRECTORY on a symlink fails with one or the other.
        Err(Errno::ELOOP | Errno::ENOTDIR) if is_symlink(dir, name) => Err(Reach::Symlink),
        Err(e) => Err(Reach::Io(open_error(&path(), e.into()))),
    }
}

fn is_symlink(dir: &File, name: &OsStr) -> bool {
    nix::sys::stat::fstatat(
        Some(dir.as_raw_fd()),
        name,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .is_ok_and(|st| copy::file_type(&st) == SFlag::S_IFLNK)
}

fn is_dir(dir: &File, name: &OsStr) -> bool {
    nix::sys::stat::fstatat(
        Some(dir.as_raw_fd()),
        name,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .is_ok_and(|st| copy::file_type(&st) == SFlag::S_IFDIR)
}

/// Runs `make`; if `name` already exists and is not a directory, removes it (a
/// later entry replaces an earlier one, as with tar) and runs `make` again.
fn replace<T>(dir: &File, name: &OsStr, make: impl Fn() -> nix::Result<T>) -> nix::Result<T> {
    match make() {
        Err(Errno::EEXIST) if !is_dir(dir, name) => {
            unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir)?;
            make()
        }
        r => r,
    }
}

/// The normal components of an entry path; `None` for an absolute path or one with `..`.
fn components(path: &Path) -> Option<Vec<OsString>> {
    let mut comps = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(c) => comps.push(c.to_os_string()),
            Component::CurDir => {}
            Component::RootDir | Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(comps)
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>, name: &Path) -> Result<PathBuf, String> {
    match entry.link_name() {
        Ok(Some(target)) if !target.as_os_str().is_empty() => Ok(target.into_owned()),
        Ok(_) => Err("empty link target".into()),
        Err(e) => Err(format!("unreadable link target of {}: {e}", name.display())),
    }
}

/// The metadata of an entry: its header, overridden by pax `uid`, `gid`, `mtime`,
/// `atime` (to the nanosecond), and the pax `SCHILY.xattr.*` records.
fn entry_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta, String> {
    let header = entry.header();
    let mode = header.mode().map_err(|e| format!("bad mode: {e}"))? & 0o7777;
    let mut uid = header.uid().map_err(|e| format!("bad uid: {e}"))?;
    let mut gid = header.gid().map_err(|e| format!("bad gid: {e}"))?;
    let secs = header.mtime().map_err(|e| format!("bad mtime: {e}"))?;
    let secs = i64::try_from(secs).map_err(|_| format!("mtime {secs} out of range"))?;
    let mut mtime = TimeSpec::new(secs, 0);
    let mut atime = None;
    let mut xattrs = Vec::new();
    if let Some(exts) = entry
        .pax_extensions()
        .map_err(|e| format!("bad pax header: {e}"))?
    {
        for ext in exts {
            let ext = ext.map_err(|e| format!("bad pax record: {e}"))?;
            let key = ext.key_bytes();
            let value = ext.value_bytes();
            let text = || std::str::from_utf8(value).unwrap_or("");
            let bad = || format!("bad pax {}: {:?}", String::from_utf8_lossy(key), text());
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                xattrs.push((OsStr::from_bytes(name).to_os_string(), value.to_vec()));
            } else {
                match key {
                    b"uid" => uid = text().parse().map_err(|_| bad())?,
                    b"gid" => gid = text().parse().map_err(|_| bad())?,
                    b"mtime" => mtime = pax_time(text()).ok_or_else(bad)?,
                    b"atime" => atime = Some(pax_time(text()).ok_or_else(bad)?),
                    _ => {}
                }
            }
        }
    }
    Ok(Meta {
        uid: u32::try_from(uid).map_err(|_| format!("uid {uid} out of range"))?,
        gid: u32::try_from(gid).map_err(|_| format!("gid {gid} out of range"))?,
        mode,
        atime: atime.unwrap_or(mtime),
        mtime,
        xattrs,
    })
}

/// Parses a pax time, `[-]seconds[.fraction]`, to the nanosecond.
fn pax_time(s: &str) -> Option<TimeSpec> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = int.parse().ok()?;
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let nanos: i64 = digits.parse().ok()?;
    Some(match (neg, nanos) {
        (false, _) => TimeSpec::new(secs, nanos),
        (true, 0) => TimeSpec::new(-secs, 0),
        (true, _) => TimeSpec::new(-secs - 1, 1_000_000_000 - nanos),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        assert_eq!(pax_time("12"), Some(TimeSpec::new(12, 0)));
        assert_eq!(pax_time("12.5"), Some(TimeSpec::new(12, 500_000_000)));
        assert_eq!(
            pax_time("1700000000.123456789"),
            Some(TimeSpec::new(1_700_000_000, 123_456_789))
        );
        assert_eq!(pax_time("-1.25"), Some(TimeSpec::new(-2, 750_000_000)));
        assert_eq!(pax_time("x"), None);
        assert_eq!(pax_time(""), None);
    }

    #[test]
    fn entry_components() {
        let c = |s: &str| components(Path::new(s));
        assert_eq!(c("./a/b/"), Some(vec!["a".into(), "b".into()]));
        assert_eq!(c("./"), Some(vec![]));
        assert_eq!(c("/etc/passwd"), None);
        assert_eq!(c("a/../../evil"), None);
    }

    #[test]
    fn errors_stay_small() {
        // Callers wrap these; clippy's `result_large_err` counts the whole chain.
        assert!(std::mem::size_of::<ArchiveError>() <= 72);
        assert!(std::mem::size_of::<CopyError>() <= 64);
    }
}
