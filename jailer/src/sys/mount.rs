//! Mounting, unmounting and reading mount tables.
//!
//! `mountinfo` parsing is pure (it takes the file's text) so it is tested on
//! fixtures; the two syscalls are thin wrappers over nix.

use std::path::{Path, PathBuf};

/// What went wrong while mounting or reading the mount table.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot mount {} on {}", source_dev.display(), target.display())]
    Mount {
        source_dev: PathBuf,
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("cannot unmount {}", target.display())]
    Unmount {
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot stat filesystem at {}", path.display())]
    Statfs {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

/// One line of `/proc/<pid>/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_id: u32,
    pub parent_id: u32,
    /// `major:minor` of the filesystem's device.
    pub device: String,
    /// The root of the mount within its filesystem.
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub options: String,
    pub fstype: String,
    pub source: String,
    pub super_options: String,
}

impl MountEntry {
    /// Whether the per-mount options include `ro`.
    pub fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }
}

/// Undoes the octal escapes (`\040` for space, ...) the kernel uses in
/// mountinfo paths.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = std::str::from_utf8(&b[i + 1..i + 4]).ok();
            if let Some(v) = oct.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the text of a mountinfo file. Malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let (pre, post) = line.split_once(" - ")?;
    let mut f = pre.split(' ');
    let mount_id = f.next()?.parse().ok()?;
    let parent_id = f.next()?.parse().ok()?;
    let device = f.next()?.to_string();
    let root = PathBuf::from(unescape(f.next()?));
    let mount_point = PathBuf::from(unescape(f.next()?));
    let options = f.next()?.to_string();
    let mut p = post.split(' ');
    let fstype = p.next()?.to_string();
    let source = unescape(p.next()?);
    let super_options = p.next().unwrap_or("").to_string();
    Some(MountEntry {
        mount_id,
        parent_id,
        device,
        root,
        mount_point,
        options,
        fstype,
        source,
        super_options,
    })
}

/// Reads and parses a mountinfo file (normally `/proc/self/mountinfo`).
pub fn read_mountinfo(path: &Path) -> Result<Vec<MountEntry>, MountError> {
    let text = std::fs::read_to_string(path).map_err(|source| MountError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse_mountinfo(&text))
}

/// The topmost mount whose mount point is exactly `path`, if any.
pub fn mount_at<'a>(mounts: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    mounts.iter().rev().find(|m| m.mount_point == path)
}

/// Mounts the btrfs filesystem on `device` at `target`.
pub fn mount_btrfs(device: &Path, target: &Path) -> Result<(), MountError> {
    use nix::mount::{mount, MsFlags};
    mount(
        Some(device),
        target,
        Some("btrfs"),
        // `nosuid,nodev`: a setuid-root file or a device node a jail made in
        // its tree is inert on the host. Jails see their rootfs through a
        // mount of their own (suid, nodev); debootstrap gets a private
        // mount with dev and suid (`exec_with_dev_mount`).
        // No `user_subvol_rm_allowed`: root in a jail's user namespace must
        // not delete subvolumes.
        MsFlags::MS_NOATIME | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .map_err(|source| MountError::Mount {
        source_dev: device.to_path_buf(),
        target: target.to_path_buf(),
        source,
    })
}

/// Makes the mount at `path` (its own, bind-mounted onto itself first when
/// `path` is no mount point) `nosuid,nodev,noatime`, changing no
/// filesystem-wide option.
pub fn confine(path: &Path, is_mount_point: bool) -> Result<(), MountError> {
    use nix::mount::{mount, MsFlags};
    let err = |source| MountError::Mount {
        source_dev: path.to_path_buf(),
        target: path.to_path_buf(),
        source,
    };
    if !is_mount_point {
        mount(
            Some(path),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(err)?;
    }
    let flags = MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOATIME;
    mount(None::<&str>, path, None::<&str>, flags, None::<&str>).map_err(err)
}

/// Whether the mount holding `path` is `nosuid` and `nodev`.
pub fn is_confined(path: &Path) -> Result<bool, MountError> {
    use nix::sys::statvfs::FsFlags;
    let st = nix::sys::statvfs::statvfs(path).map_err(|source| MountError::Statfs {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(st.flags().contains(FsFlags::ST_NOSUID | FsFlags::ST_NODEV))
}

/// Makes `cmd` run in a mount namespace of its own in which `dir` is
/// bind-mounted onto itself with `dev` and `suid` (the pool is mounted
/// `nosuid,nodev`): for debootstrap, whose chrooted dpkg opens the
/// `/dev/null` it made and runs setuid helpers. Whatever the command
/// mounts below `dir` (debootstrap mounts `/proc` there) vanishes with it.
pub fn exec_with_dev_mount(cmd: &mut std::process::Command, dir: &Path) -> Result<(), MountError> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|_| MountError::Mount {
        source_dev: dir.to_path_buf(),
        target: dir.to_path_buf(),
        source: nix::Error::EINVAL,
    })?;
    let hook = move || -> std::io::Result<()> {
        let check = |r: libc::c_int| {
            if r == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        let p = c.as_ptr();
        let null = std::ptr::null::<libc::c_char>();
        // SAFETY: unshare(2) takes flags only.
        check(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
        // SAFETY: mount(2) with NUL-terminated strings that outlive the
        // call ("/" a literal, `p` owned by this closure) or null pointers
        // where the kernel accepts them; nothing is retained.
        check(unsafe {
            libc::mount(
                null,
                c"/".as_ptr(),
                null,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        })?;
        // SAFETY: as above.
        check(unsafe { libc::mount(p, p, null, libc::MS_BIND, std::ptr::null()) })?;
        let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOATIME;
        // SAFETY: as above.
        check(unsafe { libc::mount(null, p, null, flags, std::ptr::null()) })
    };
    // SAFETY: the hook runs between fork and exec in the child and calls
    // only unshare(2) and mount(2) on memory it owns (no allocation, no
    // lock), which is async-signal-safe.
    unsafe { cmd.pre_exec(hook) };
    Ok(())
}

/// Unmounts `target`.
pub fn unmount(target: &Path) -> Result<(), MountError> {
    nix::mount::umount2(target, nix::mount::MntFlags::empty()).map_err(|source| {
        MountError::Unmount {
            target: target.to_path_buf(),
            source,
        }
    })
}

/// Size, used and free bytes of the filesystem holding `path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub size: u64,
    pub used: u64,
    pub free: u64,
}

/// statvfs of `path`.
pub fn usage(path: &Path) -> Result<Usage, MountError> {
    let st = nix::sys::statvfs::statvfs(path).map_err(|source| MountError::Statfs {
        path: path.to_path_buf(),
        source,
    })?;
    let frsize = st.fragment_size();
    let size = st.blocks() * frsize;
    let free = st.blocks_available() * frsize;
    let used = (st.blocks() - st.blocks_free()) * frsize;
    Ok(Usage { size, used, free })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
35 22 0:33 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
80 22 7:3 / /var/lib/jailer rw,noatime shared:40 - btrfs /dev/loop3 rw,space_cache=v2,subvolid=5,subvol=/
81 22 7:4 /sub /srv/my\\040pool ro,noatime - btrfs /dev/loop4 ro,subvolid=256,subvol=/sub
garbage line
";

    #[test]
    fn parses_fields_and_escapes() {
        let m = parse_mountinfo(FIXTURE);
        assert_eq!(m.len(), 4);
        assert_eq!(m[2].mount_point, PathBuf::from("/var/lib/jailer"));
        assert_eq!(m[2].fstype, "btrfs");
        assert_eq!(m[2].source, "/dev/loop3");
        assert_eq!(m[2].device, "7:3");
        assert!(!m[2].read_only());
        assert_eq!(m[3].mount_point, PathBuf::from("/srv/my pool"));
        assert_eq!(m[3].root, PathBuf::from("/sub"));
        assert!(m[3].read_only());
        assert_eq!(m[0].parent_id, 1);
    }

    #[test]
    fn finds_mount_by_exact_point() {
        let m = parse_mountinfo(FIXTURE);
        assert_eq!(
            mount_at(&m, Path::new("/var/lib/jailer")).map(|e| e.source.as_str()),
            Some("/dev/loop3")
        );
        assert!(mount_at(&m, Path::new("/var/lib")).is_none());
    }
}
