//! A scratch BTRFS filesystem on a loop device, made for one test run and
//! released by exact name (unmount, detach the loop device we attached, remove
//! the image) when dropped, also after failed tests.
//!
//! The fixture deliberately uses util-linux (`losetup`, `mount`, `umount`) and
//! `mkfs.btrfs` instead of the code under test, so a bug in `jailer`'s own
//! pool code cannot hide behind a fixture that shares it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct Scratch {
    dir: tempfile::TempDir,
    image: PathBuf,
    mnt: PathBuf,
    loopdev: Option<String>,
    released: std::sync::Mutex<bool>,
    counter: AtomicUsize,
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl Scratch {
    /// Makes a sparse image of `size` bytes, formats it as btrfs and mounts it.
    pub fn new(size: u64) -> Result<Scratch, String> {
        let dir = tempfile::Builder::new()
            .prefix("jailer-test-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        // Like mkdtemp: closed to others. Jails must start from a pool whose
        // path their (unprivileged) root cannot walk.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
                .map_err(|e| e.to_string())?;
        }
        let image = dir.path().join("scratch.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).map_err(|e| e.to_string())?;
        let f = std::fs::File::create(&image).map_err(|e| e.to_string())?;
        f.set_len(size).map_err(|e| e.to_string())?;
        drop(f);
        let mut s = Scratch {
            dir,
            image,
            mnt,
            loopdev: None,
            released: std::sync::Mutex::new(false),
            counter: AtomicUsize::new(0),
        };
        run(Command::new("mkfs.btrfs").arg("-q").arg(&s.image))?;
        let dev = run(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&s.image))?;
        s.loopdev = Some(dev.clone());
        run(Command::new("mount").arg(&dev).arg(&s.mnt))?;
        Ok(s)
    }

    /// The mounted btrfs filesystem.
    pub fn mnt(&self) -> &Path {
        &self.mnt
    }

    /// The temp directory (not btrfs) that holds the image; tests may make
    /// their own files there.
    pub fn tmp(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh, unique directory on the btrfs filesystem, named after `tag`.
    pub fn fresh_dir(&self, tag: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let p = self.mnt.join(format!("{tag}-{n}"));
        std::fs::create_dir_all(&p).expect("create scratch dir");
        p
    }

    /// A fresh, unique directory outside btrfs (on the temp dir's filesystem).
    pub fn fresh_plain_dir(&self, tag: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let p = self.dir.path().join(format!("{tag}-{n}"));
        std::fs::create_dir_all(&p).expect("create plain dir");
        p
    }
}

/// Mount points at or below `path`, deepest first.
pub fn mounts_below(path: &Path) -> Vec<String> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|mp| Path::new(mp).starts_with(path))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points
}

/// Unmounts every mount at or below `path` (deepest first), by exact path.
pub fn unmount_below(path: &Path) {
    for mp in mounts_below(path) {
        let ok = Command::new("umount")
            .arg(&mp)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Busy (a straggler holds it): detach it now, the kernel frees
            // it with the last reference.
            let _ = Command::new("umount").arg("-l").arg(&mp).status();
        }
    }
}

/// Detaches every loop device whose backing file is exactly `image`.
pub fn detach_loops_of(image: &Path) {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with("loop") {
            continue;
        }
        let backing = e.path().join("loop/backing_file");
        if let Ok(b) = std::fs::read_to_string(&backing) {
            if Path::new(b.trim()) == image {
                let _ = Command::new("losetup")
                    .arg("-d")
                    .arg(format!("/dev/{name}"))
                    .status();
            }
        }
    }
}

impl Scratch {
    /// Unmounts everything below the scratch mount, the mount itself, detaches
    /// the loop device (only if it still backs our image) and removes the
    /// image. Idempotent.
    pub fn release(&self) {
        let mut released = self.released.lock().unwrap_or_else(|e| e.into_inner());
        if *released {
            return;
        }
        *released = true;
        unmount_below(&self.mnt);
        if let Some(dev) = &self.loopdev {
            // Only detach if it is still ours.
            let name = dev.trim_start_matches("/dev/");
            let backing = format!("/sys/block/{name}/loop/backing_file");
            if let Ok(b) = std::fs::read_to_string(backing) {
                if Path::new(b.trim()) == self.image {
                    let _ = Command::new("losetup").arg("-d").arg(dev).status();
                }
            }
        }
        let _ = std::fs::remove_file(&self.image);
        // TempDir's own cleanup never runs for the harness's static scratch.
        // Never recurse into something still mounted (it could be a bind
        // mount of host files).
        if mounts_below(self.dir.path()).is_empty() {
            let _ = std::fs::remove_dir_all(self.dir.path());
        } else {
            eprintln!(
                "scratch: {} still has mounts below it; left in place",
                self.dir.path().display()
            );
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.release();
    }
}
