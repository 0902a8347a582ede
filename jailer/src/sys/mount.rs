//! Mounting and unmounting: thin wrappers over nix. The mount table is
//! read by [`crate::procinfo`].

use std::path::{Path, PathBuf};

/// What went wrong while mounting.
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
    #[error("cannot stat filesystem at {}", path.display())]
    Statfs {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
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
