//! Loop devices: attach an image file, find the device backing a file.
//!
//! Written here rather than taken from a crate: the maintained loop-device
//! crates generate their bindings with bindgen at build time (a libclang
//! build dependency) for three ioctls we can declare with nix in a few lines.
//!
//! Devices are attached with `LO_FLAGS_AUTOCLEAR`: the kernel detaches the
//! device by itself once the filesystem on it is unmounted and our fd is
//! closed, so a crash can never leak a loop device that nothing uses.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

const LOOP_CTL_GET_FREE: u16 = 0x4C82;
const LOOP_CONFIGURE: u16 = 0x4C0A;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_NAME_SIZE: usize = 64;
const LO_KEY_SIZE: usize = 32;

/// `struct loop_info64` from `include/uapi/linux/loop.h`.
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; LO_KEY_SIZE],
    lo_init: [u64; 2],
}

/// `struct loop_config` from `include/uapi/linux/loop.h` (kernel 5.8+).
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

nix::ioctl_none_bad!(loop_ctl_get_free, LOOP_CTL_GET_FREE);
nix::ioctl_write_ptr_bad!(loop_configure, LOOP_CONFIGURE, LoopConfig);

/// What went wrong with a loop device.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error("cannot open {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no free loop device (all are in use; `losetup -a` lists them)")]
    NoFreeDevice {
        #[source]
        source: nix::Error,
    },
    #[error("cannot attach {} to {}", image.display(), device.display())]
    Attach {
        image: PathBuf,
        device: PathBuf,
        #[source]
        source: nix::Error,
    },
}

/// An attached loop device. Keep it alive until the filesystem on it is
/// mounted: with autoclear, closing the last reference to an unmounted device
/// detaches it.
#[derive(Debug)]
pub struct LoopDevice {
    path: PathBuf,
    _file: File,
}

impl LoopDevice {
    /// The device node, e.g. `/dev/loop3`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Attaches `image` to a free loop device with autoclear set.
pub fn attach(image: &Path) -> Result<LoopDevice, LoopError> {
    let backing = OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .map_err(|source| LoopError::Open {
            path: image.to_path_buf(),
            source,
        })?;
    let ctl_path = Path::new("/dev/loop-control");
    let ctl = OpenOptions::new()
        .read(true)
        .write(true)
        .open(ctl_path)
        .map_err(|source| LoopError::Open {
            path: ctl_path.to_path_buf(),
            source,
        })?;
    // Another process may take the free device between GET_FREE and
    // CONFIGURE; that shows as EBUSY and we ask again.
    let mut last = nix::Error::EBUSY;
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument; the fd is a valid open
        // /dev/loop-control for the duration of the call.
        let n = unsafe { loop_ctl_get_free(ctl.as_raw_fd()) }
            .map_err(|source| LoopError::NoFreeDevice { source })?;
        let device = PathBuf::from(format!("/dev/loop{n}"));
        let dev = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&device)
            .map_err(|source| LoopError::Open {
                path: device.clone(),
                source,
            })?;
        let mut info = LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: LO_FLAGS_AUTOCLEAR,
            lo_file_name: [0; LO_NAME_SIZE],
            lo_crypt_name: [0; LO_NAME_SIZE],
            lo_encrypt_key: [0; LO_KEY_SIZE],
            lo_init: [0; 2],
        };
        let name = image.as_os_str().as_encoded_bytes();
        let len = name.len().min(LO_NAME_SIZE - 1);
        info.lo_file_name[..len].copy_from_slice(&name[..len]);
        let config = LoopConfig {
            fd: u32::try_from(backing.as_raw_fd()).unwrap_or(u32::MAX),
            block_size: 0,
            info,
            reserved: [0; 8],
        };
        // SAFETY: `config` is a fully initialised loop_config whose layout is
        // checked against the kernel's above; the kernel only reads it, and
        // both fds stay open across the call.
        match unsafe { loop_configure(dev.as_raw_fd(), &config) } {
            Ok(_) => {
                return Ok(LoopDevice {
                    path: device,
                    _file: dev,
                })
            }
            Err(nix::Error::EBUSY) => last = nix::Error::EBUSY,
            Err(source) => {
                return Err(LoopError::Attach {
                    image: image.to_path_buf(),
                    device,
                    source,
                })
            }
        }
    }
    Err(LoopError::Attach {
        image: image.to_path_buf(),
        device: PathBuf::from("/dev/loop-control"),
        source: last,
    })
}

/// The loop devices whose backing file is exactly `image`, read from
/// `sys_block` (normally `/sys/block`).
pub fn devices_backed_by(sys_block: &Path, image: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(sys_block) else {
        return found;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with("loop") {
            continue;
        }
        if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
            if Path::new(b.trim_end_matches('\n')) == image {
                found.push(PathBuf::from(format!("/dev/{name}")));
            }
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_devices_by_exact_backing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sys = dir.path();
        for (dev, backing) in [
            ("loop0", "/srv/pool.img\n"),
            ("loop1", "/srv/pool.img.old\n"),
            ("loop2", "/srv/pool.img\n"),
        ] {
            std::fs::create_dir_all(sys.join(dev).join("loop")).expect("mkdir");
            std::fs::write(sys.join(dev).join("loop/backing_file"), backing).expect("write");
        }
        std::fs::create_dir_all(sys.join("sda")).expect("mkdir");
        assert_eq!(
            devices_backed_by(sys, Path::new("/srv/pool.img")),
            vec![PathBuf::from("/dev/loop0"), PathBuf::from("/dev/loop2")]
        );
        assert!(devices_backed_by(sys, Path::new("/srv/other.img")).is_empty());
    }
}
