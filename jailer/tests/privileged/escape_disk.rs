//! A jail's disk: its `--disk` limit holds against writes inside it and
//! against nested subvolumes it makes, a pool filled by something else does
//! not stop the other jails' lifecycle, and `rm` finishes whatever the jail
//! nested in itself.

use crate::cli::{jailer, ok};
use crate::runtime::{jail, sh_ok, start_sh};
use jailer::sys::btrfs;
use libtest_mimic::Trial;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub fn trials() -> Vec<Trial> {
    let t = |name: &'static str, f: fn() -> Result<(), String>| {
        Trial::test(format!("escape_disk::{name}"), move || crate::check(f()))
    };
    vec![
        t(
            "disk_limit_stops_writes_inside_and_spares_the_pool",
            disk_limit,
        ),
        t(
            "nested_subvolume_cannot_escape_the_disk_limit",
            nested_limit,
        ),
        t(
            "full_pool_does_not_break_stop_start_rm_ls_of_another_jail",
            full_pool,
        ),
        t(
            "rm_finishes_3600_nested_subvolumes_past_path_max_with_64_fds",
            deep_nesting,
        ),
    ]
}

fn sync(root: &Path) -> Result<(), String> {
    btrfs::sync(root).map_err(|e| jailer::error_chain(&e))
}

/// `jailer exec NAME -- sh -c script`: (exit code, stdout + stderr).
fn sh(root: &Path, name: &str, script: &str) -> (i32, String) {
    let out = jailer(root, &["exec", name, "--", "/bin/sh", "-c", script]);
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// The errno text btrfs gives a write past a qgroup limit (EDQUOT), or
/// ENOSPC, which some kernels give instead.
fn quota_error(text: &str) -> bool {
    text.contains("Disk quota exceeded") || text.contains("No space left")
}

/// Writes three times `limit_mib` to `file` inside a jail limited to
/// `limit_mib` and checks the write was stopped by the quota near the limit.
fn write_past_limit(root: &Path, name: &str, file: &str, limit_mib: u64) -> Result<(), String> {
    let count = 3 * limit_mib;
    let (code, text) = sh(
        root,
        name,
        &format!("dd if=/dev/zero of={file} bs=1M count={count} conv=fsync; echo dd=$?"),
    );
    if code != 0 || !text.contains("dd=1") || !quota_error(&text) {
        return Err(format!(
            "{count}M into {file} of a {limit_mib}M jail was not stopped by the quota (exit {code}): {text}"
        ));
    }
    let size = sh_ok(root, name, &format!("stat -c %s {file}"))?;
    let size: u64 = size.trim().parse().map_err(|_| format!("stat: {size}"))?;
    if size > (limit_mib + 16) << 20 {
        return Err(format!(
            "{file} holds {size} bytes, past the {limit_mib}M limit"
        ));
    }
    Ok(())
}

fn disk_limit() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let _g = jail(&root, "dq-limit");
    start_sh(&root, "dq-limit", &["--disk", "64M"], "exec sleep 1000")?;
    let spec = crate::runtime::inspect(&root, "dq-limit")?;
    if spec["spec"]["disk"] != 64u64 << 20 {
        return Err(format!("inspect shows disk {}", spec["spec"]["disk"]));
    }
    write_past_limit(&root, "dq-limit", "/root/big", 64)?;
    // What the jail holds in the pool, as btrfs counts it once committed
    // (the pool's free space is shared with parallel tests: too noisy).
    sync(&root)?;
    let rootfs = root.join("jails/dq-limit/rootfs");
    let usage = btrfs::qgroup_usage(&rootfs, Path::new(btrfs::SYSFS))
        .map_err(|e| jailer::error_chain(&e))?
        .ok_or("the pool has no quotas")?;
    if usage.exclusive > 80 << 20 || usage.max_exclusive != Some(64 << 20) {
        return Err(format!("the jail holds {usage:?} of the pool"));
    }
    // jail_resources shows the use, near the limit, and the limit.
    let out = ok(
        &root,
        &[
            "query",
            "SELECT disk_used, disk_limit FROM jail_resources WHERE jail = 'dq-limit'",
            "--json",
        ],
    )?;
    let rows: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| format!("query: {e}: {out}"))?;
    let used = rows[0]["disk_used"].as_i64().unwrap_or(-1);
    if rows[0]["disk_limit"] != 64i64 << 20 || !(32i64 << 20..=80 << 20).contains(&used) {
        return Err(format!("jail_resources shows {rows}"));
    }
    // A jail without a limit is not bounded (the limit is per jail).
    let _u = jail(&root, "dq-unlimited");
    start_sh(
        &root,
        "dq-unlimited",
        &["--disk", "none"],
        "exec sleep 1000",
    )?;
    sh_ok(
        &root,
        "dq-unlimited",
        "dd if=/dev/zero of=/root/big bs=1M count=100 conv=fsync",
    )?;
    Ok(())
}

/// The `subvol_probe` example, built beside this test binary.
fn probe_path() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe.parent().and_then(Path::parent).ok_or("no target dir")?;
    let p = dir.join("examples/subvol_probe");
    if !p.exists() {
        return Err(format!(
            "{} is missing: `cargo build -p jailer --example subvol_probe`",
            p.display()
        ));
    }
    Ok(p)
}

/// Copies the probe into the running jail as /tmp/probe (about 40 MB of
/// the jail's disk: `/dev/shm` is `noexec`).
fn copy_probe(root: &Path, name: &str) -> Result<(), String> {
    let probe = std::fs::File::open(probe_path()?).map_err(|e| e.to_string())?;
    let out = Command::new(env!("CARGO_BIN_EXE_jailer"))
        .arg("--root")
        .arg(root)
        .args(["exec", name, "--", "/bin/sh", "-c"])
        .arg("cat > /tmp/probe && chmod +x /tmp/probe")
        .stdin(Stdio::from(probe))
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "copying the probe into {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn nested_limit() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let _g = jail(&root, "dq-nested");
    start_sh(&root, "dq-nested", &["--disk", "128M"], "exec sleep 1000")?;
    copy_probe(&root, "dq-nested")?;
    let (code, text) = sh(&root, "dq-nested", "/tmp/probe /root/sub");
    match code {
        // Refused: the seccomp rule of a limited jail.
        1 if text.contains("Operation not permitted") => Ok(()),
        // Made (a kernel that puts it under the jail's limit): writing
        // there must hit the limit too.
        0 => write_past_limit(&root, "dq-nested", "/root/sub/big", 128),
        _ => Err(format!("probe exit {code}: {text}")),
    }?;
    // Without a limit nothing is refused (the rule is the limit's).
    let _u = jail(&root, "dq-nested-free");
    start_sh(
        &root,
        "dq-nested-free",
        &["--disk", "none"],
        "exec sleep 1000",
    )?;
    copy_probe(&root, "dq-nested-free")?;
    let (code, text) = sh(&root, "dq-nested-free", "/tmp/probe /root/sub");
    if code != 0 || !text.contains("created") {
        return Err(format!("probe in an unlimited jail: exit {code}: {text}"));
    }
    Ok(())
}

fn full_pool() -> Result<(), String> {
    let rootfs = std::env::var("JAILER_TEST_ROOTFS").ok();
    let dir = crate::scratch().fresh_plain_dir("dq-full");
    let pool = crate::cli::ImagePool {
        root: dir.join("pool"),
        image: dir.join("pool.img"),
    };
    let root = &pool.root;
    ok(root, &["init", "--size", "1G"])?;
    match &rootfs {
        Some(t) => ok(root, &["template", "import", "deb", t])?,
        None => {
            // The shared template's tree, copied as a plain directory.
            let shared = crate::debian_pool()?.join("templates/deb/rootfs");
            ok(
                root,
                &["template", "import", "deb", &shared.to_string_lossy()],
            )?
        }
    };
    // Dropped before `pool`: the jails go before their pool is unmounted.
    let _a = jail(root, "dq-a");
    let _b = jail(root, "dq-b");
    for name in ["dq-a", "dq-b"] {
        ok(
            root,
            &[
                "create",
                name,
                "--template",
                "deb",
                "--",
                "/bin/sleep",
                "1000",
            ],
        )?;
    }
    ok(root, &["start", "dq-a"])?;
    ok(root, &["start", "dq-b"])?;
    // Fill the pool from the host until the filesystem says it is full.
    let fill = root.join("fill");
    let _fill = crate::cli::RemoveOnDrop(fill.clone());
    let out = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", fill.display()))
        .args(["bs=1M", "conv=fsync"])
        .output()
        .map_err(|e| e.to_string())?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !err.contains("No space left") {
        return Err(format!("filling the pool: {err}"));
    }
    sync(root)?;
    // Every lifecycle verb of the other jail still works.
    ok(root, &["stop", "dq-b"])?;
    ok(root, &["start", "dq-b"])?;
    let ls = ok(root, &["ls"])?;
    if !ls.contains("dq-b") || ls.contains("broken") {
        return Err(format!("ls on a full pool: {ls}"));
    }
    ok(root, &["stop", "dq-b"])?;
    ok(root, &["rm", "dq-b"])?;
    ok(root, &["rm", "--force", "dq-a"])?;
    let ls = ok(root, &["ls"])?;
    if ls.contains("dq-") {
        return Err(format!("jails left after rm: {ls}"));
    }
    Ok(())
}

/// Subvolumes listed by `btrfs subvolume list` below `rel` of the pool.
fn listed_below(root: &Path, rel: &str) -> Result<Vec<String>, String> {
    let out = Command::new("btrfs")
        .args(["subvolume", "list"])
        .arg(root)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "btrfs subvolume list: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(rel))
        .map(str::to_string)
        .collect())
}

fn deep_nesting() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let name = "dq-deep";
    let _g = jail(&root, name);
    ok(
        &root,
        &["create", name, "--template", "deb", "--", "/bin/true"],
    )?;
    let rootfs = root.join("jails").join(name).join("rootfs");
    // A subvolume outside the jail, and a symlink to it planted in the
    // jail's tree: rm must not follow it.
    let outside = crate::scratch().fresh_dir("dq-deep-outside").join("victim");
    btrfs::create_subvolume(&outside).map_err(|e| jailer::error_chain(&e))?;
    std::os::unix::fs::symlink(&outside, rootfs.join("root/link"))
        .map_err(|e| format!("symlink: {e}"))?;
    // 3,600 nested subvolumes, made from the host (the fixture: jails with
    // a limit cannot make them), one read-only midway with others below.
    // Two chains of 1,800 (each made through paths below PATH_MAX), the
    // second then moved to the end of the first: the deepest paths pass
    // 7,000 bytes, so the walk must open them in pieces, and the kernel
    // cannot name them when deleting by id.
    let chain = |base: PathBuf| -> Result<PathBuf, String> {
        let mut p = base;
        for i in 0..1800 {
            p = p.join("n");
            btrfs::create_subvolume(&p)
                .map_err(|e| format!("level {i}: {}", jailer::error_chain(&e)))?;
            if i == 500 {
                std::os::unix::fs::symlink(&outside, p.join("link"))
                    .map_err(|e| format!("symlink: {e}"))?;
            }
        }
        Ok(p)
    };
    let leaf = chain(rootfs.join("root"))?;
    chain(rootfs.join("tmp"))?;
    std::fs::rename(rootfs.join("tmp/n"), leaf.join("m"))
        .map_err(|e| format!("moving the second chain: {e}"))?;
    let mid = rootfs.join("root").join(vec!["n"; 400].join("/"));
    btrfs::set_readonly(&mid, true).map_err(|e| jailer::error_chain(&e))?;
    // 64 descriptors: the walk must not hold one per level. (The shell's
    // `ulimit`: the VM lane has busybox, no prlimit.)
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 64 && exec "$0" --root "$1" rm "$2""#)
        .arg(env!("CARGO_BIN_EXE_jailer"))
        .arg(&root)
        .arg(name)
        .env_remove("JAILER_ROOT")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "rm with 64 fds: exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if root.join("jails").join(name).exists() {
        return Err("the jail's directory is left".into());
    }
    let left = listed_below(&root, &format!("jails/{name}"))?;
    if !left.is_empty() {
        return Err(format!(
            "subvolumes left: {} (first {})",
            left.len(),
            left[0]
        ));
    }
    let kept = btrfs::is_subvolume(&outside).map_err(|e| jailer::error_chain(&e))?;
    if !kept {
        return Err("the subvolume the jail's symlink pointed at was deleted".into());
    }
    btrfs::delete_subvolume_recursive(&outside).map_err(|e| jailer::error_chain(&e))
}
