//! Lifecycle at scale and records that never lie: legacy id ranges are
//! registered once and never reused, swap never extends a memory limit, a
//! symlinked `/proc` is refused without mounting anything at its target.

use crate::cli::{fails, ok};
use crate::runtime::{inspect, jail, start_sh, wait_until};
use libtest_mimic::Trial;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub fn trials() -> Vec<Trial> {
    let t = |name: &'static str, f: fn() -> Result<(), String>| {
        Trial::test(
            format!("lifecycle_scale::{name}"),
            move || crate::check(f()),
        )
    };
    vec![
        t(
            "create_never_reuses_the_range_of_an_unregistered_legacy_jail",
            legacy_ranges,
        ),
        t("swap_cannot_extend_the_memory_limit", swap_limit),
        t(
            "symlinked_proc_is_refused_and_nothing_is_mounted_at_its_target",
            symlinked_proc,
        ),
    ]
}

/// A private id registry (`JAILER_ID_REGISTRY`), so that the host's is
/// untouched; removes its jails (by exact name, with the same registry, so
/// their sub-id lines go too) and then itself on drop.
struct PrivateRegistry<'a> {
    root: &'a Path,
    dir: PathBuf,
    jails: Vec<String>,
}

impl PrivateRegistry<'_> {
    fn jailer(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_jailer"))
            .arg("--root")
            .arg(self.root)
            .args(args)
            .env_remove("JAILER_ROOT")
            .env("JAILER_ID_REGISTRY", &self.dir)
            .stdin(Stdio::null())
            .output()
            .expect("run jailer")
    }

    fn ok(&self, args: &[&str]) -> Result<String, String> {
        let out = self.jailer(args);
        if !out.status.success() {
            return Err(format!(
                "jailer {args:?} (registry {}) failed ({}): {}",
                self.dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn create(&mut self, name: &str) -> Result<u64, String> {
        self.jails.push(name.to_string());
        self.ok(&["create", name, "--template", "deb", "--", "/bin/true"])?;
        let rec: serde_json::Value = serde_json::from_str(&self.ok(&["inspect", name])?)
            .map_err(|e| format!("inspect {name}: {e}"))?;
        rec["ids"]["uid_base"]
            .as_u64()
            .ok_or_else(|| format!("{name} has no ids: {rec}"))
    }

    fn json(&self, file: &str) -> Result<serde_json::Value, String> {
        let p = self.dir.join(file);
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
    }

    fn write_json(&self, file: &str, v: &serde_json::Value) -> Result<(), String> {
        let p = self.dir.join(file);
        std::fs::write(&p, v.to_string()).map_err(|e| format!("{}: {e}", p.display()))
    }

    /// Makes `name` a jail from before the registry: its entry gone, and
    /// the pool not marked registered.
    fn forget(&self, name: &str) -> Result<(), String> {
        let mut ranges = self.json("ranges.json")?;
        let before_ranges = ranges.clone();
        let list = ranges.as_array_mut().ok_or("ranges.json is not a list")?;
        let before = list.len();
        list.retain(|e| e["jail"] != name);
        if list.len() + 1 != before {
            return Err(format!("{name} had no single entry in the registry"));
        }
        self.write_json("ranges.json", &ranges)?;
        // A jail from before the registry has no sub-id line either. The
        // host registry's lock keeps its own rewrites of these files out.
        let base = self.registered_in(&before_ranges, name).ok_or("no range")?;
        let line = format!("root:{base}:65536");
        let lock = std::fs::File::open("/var/lib/jailer-ids/lock")
            .ok()
            .and_then(|f| nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).ok());
        for f in ["/etc/subuid", "/etc/subgid"] {
            let text = std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?;
            let kept: String = text
                .lines()
                .filter(|l| *l != line)
                .map(|l| format!("{l}\n"))
                .collect();
            let tmp = format!("{f}.jailer-test");
            std::fs::write(&tmp, kept).map_err(|e| format!("{tmp}: {e}"))?;
            std::fs::rename(&tmp, f).map_err(|e| format!("{f}: {e}"))?;
        }
        drop(lock);
        let root = self.root.canonicalize().map_err(|e| e.to_string())?;
        if !self.dir.join("pools.json").exists() {
            return Ok(());
        }
        let mut pools = self.json("pools.json")?;
        pools
            .as_array_mut()
            .ok_or("pools.json is not a list")?
            .retain(|p| p.as_str() != root.to_str());
        self.write_json("pools.json", &pools)
    }

    fn registered_in(&self, ranges: &serde_json::Value, name: &str) -> Option<u64> {
        ranges
            .as_array()?
            .iter()
            .find(|e| e["jail"] == name)
            .and_then(|e| e["ids"]["uid_base"].as_u64())
    }

    fn registered(&self, name: &str) -> Result<Option<u64>, String> {
        Ok(self
            .json("ranges.json")?
            .as_array()
            .ok_or("ranges.json is not a list")?
            .iter()
            .find(|e| e["jail"] == name)
            .and_then(|e| e["ids"]["uid_base"].as_u64()))
    }
}

impl Drop for PrivateRegistry<'_> {
    fn drop(&mut self) {
        for j in &self.jails {
            let _ = self.jailer(&["rm", "--force", j]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn legacy_ranges() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let dir = std::env::temp_dir().join("jailer-test-ids-legacy");
    let _ = std::fs::remove_dir_all(&dir);
    let mut reg = PrivateRegistry {
        root: &root,
        dir,
        jails: Vec::new(),
    };
    let legacy = reg.create("ls-legacy")?;
    // Now it is a jail made before the registry: no entry, pool unmarked.
    reg.forget("ls-legacy")?;
    let new = reg.create("ls-new")?;
    if new == legacy {
        return Err(format!(
            "create gave ls-new the range {new} of the unregistered ls-legacy"
        ));
    }
    // That create registered the legacy range, once: later creates (which
    // never read other jails' records) skip it too.
    if reg.registered("ls-legacy")? != Some(legacy) {
        return Err("the first create did not register ls-legacy's range".into());
    }
    let third = reg.create("ls-third")?;
    if third == legacy || third == new {
        return Err(format!("ls-third got a taken range {third}"));
    }
    // `jailer init` registers them too.
    reg.forget("ls-legacy")?;
    reg.ok(&["init"])?;
    if reg.registered("ls-legacy")? != Some(legacy) {
        return Err("`jailer init` did not register ls-legacy's range".into());
    }
    // And the adopted jail starts (its record and the registry agree).
    reg.ok(&["start", "--wait", "ls-legacy"])?;
    Ok(())
}

/// The jail's cgroup directory under a v1 controller or the v2 root.
fn cgroup_dir(base: &str, name: &str) -> Option<PathBuf> {
    let prefix = format!("{name}-");
    std::fs::read_dir(Path::new(base).join("jailer"))
        .ok()?
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
}

fn read_trim(p: &Path) -> Result<String, String> {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{}: {e}", p.display()))
}

fn swap_limit() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let name = "ls-swap";
    let _j = jail(&root, name);
    let limit: u64 = 32 << 20;
    start_sh(&root, name, &["--memory", "32M"], "sleep 1000")?;
    if let Some(dir) = cgroup_dir("/sys/fs/cgroup/memory", name) {
        // v1: memory+swap is capped at the memory limit itself.
        let mem = read_trim(&dir.join("memory.limit_in_bytes"))?;
        let memsw = dir.join("memory.memsw.limit_in_bytes");
        if !memsw.exists() {
            return Err("no memory.memsw.limit_in_bytes: the kernel has no swap accounting (boot with swapaccount=1), so swap is not limited".into());
        }
        let memsw = read_trim(&memsw)?;
        if mem != limit.to_string() || memsw != limit.to_string() {
            return Err(format!(
                "v1 limits: memory {mem}, memory+swap {memsw}; both must be {limit}"
            ));
        }
    } else if let Some(dir) = cgroup_dir("/sys/fs/cgroup", name) {
        let swap = read_trim(&dir.join("memory.swap.max"))?;
        if swap != "0" {
            return Err(format!("v2 memory.swap.max is {swap}, not 0"));
        }
    } else {
        return Err(format!("{name} has no memory cgroup"));
    }
    // With swap on the host, a hog past the limit must be OOM-killed rather
    // than swapped out. This machine may have no swap (then the cgroup
    // files above are the whole check: nothing could be swapped anyway).
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    if swaps.lines().count() > 1 {
        let hog = "ls-swap-hog";
        let _h = jail(&root, hog);
        ok(
            &root,
            &[
                "create",
                hog,
                "--template",
                "deb",
                "--memory",
                "32M",
                "--",
                "/usr/bin/perl",
                "-e",
                "my $x = 'x' x (128 << 20); sleep 1000",
            ],
        )?;
        ok(&root, &["start", hog])?;
        if !wait_until(Duration::from_secs(30), || {
            inspect(&root, hog).is_ok_and(|r| r["oom_killed"] == true)
        }) {
            return Err("a 128M hog under --memory 32M was not OOM-killed (swapped?)".into());
        }
    }
    Ok(())
}

/// Whether `p` is a mount point in this (the host's) mount namespace.
fn is_mount_point(p: &Path) -> bool {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let p = p.to_string_lossy();
    mi.lines().any(|l| l.split(' ').nth(4) == Some(&*p))
}

fn symlinked_proc() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let name = "ls-procsym";
    let _j = jail(&root, name);
    // The target, on the host and at the same path inside the jail's root:
    // neither may get a proc mounted on it.
    let target = std::env::temp_dir().join("jailer-test-procsym-target");
    let _ = std::fs::remove_dir_all(&target);
    std::fs::create_dir(&target).map_err(|e| e.to_string())?;
    std::fs::write(target.join("marker"), "host").map_err(|e| e.to_string())?;
    let cleanup = |t: &Path| {
        let _ = std::fs::remove_dir_all(t);
    };
    let r = (|| {
        ok(
            &root,
            &["create", name, "--template", "deb", "--", "/bin/true"],
        )?;
        let rootfs = root.join("jails").join(name).join("rootfs");
        let inner = rootfs.join(target.strip_prefix("/").map_err(|e| e.to_string())?);
        std::fs::create_dir_all(&inner).map_err(|e| e.to_string())?;
        std::fs::write(inner.join("marker"), "jail").map_err(|e| e.to_string())?;
        let proc_dir = rootfs.join("proc");
        match std::fs::remove_dir(&proc_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", proc_dir.display())),
        }
        std::os::unix::fs::symlink(&target, &proc_dir).map_err(|e| e.to_string())?;
        fails(
            &root,
            &["start", name],
            &["/proc in the jail is not a directory"],
        )?;
        let state = inspect(&root, name)?["state"].clone();
        if state == "running" {
            return Err("the jail runs with a symlinked /proc".into());
        }
        for (dir, mark) in [(&target, "host"), (&inner, "jail")] {
            if is_mount_point(dir) {
                return Err(format!("something is mounted at {}", dir.display()));
            }
            let names: Vec<_> = std::fs::read_dir(dir)
                .map_err(|e| e.to_string())?
                .flatten()
                .map(|e| e.file_name())
                .collect();
            let marker = std::fs::read_to_string(dir.join("marker")).unwrap_or_default();
            if names.len() != 1 || marker != mark {
                return Err(format!(
                    "{} was changed: {names:?}, marker {marker:?}",
                    dir.display()
                ));
            }
        }
        Ok(())
    })();
    cleanup(&target);
    r
}
