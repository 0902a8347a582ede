//! The `jailer` binary as a user runs it: pool, templates, jail records.

use crate::scratch::{detach_loops_of, unmount_below};
use libtest_mimic::Trial;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test("cli::init_uses_existing_btrfs_and_is_idempotent", || {
            crate::check(init_existing())
        }),
        Trial::test("cli::init_image_is_reattached_never_reformatted", || {
            crate::check(init_image())
        }),
        Trial::test(
            "cli::init_device_refuses_a_filesystem_without_force",
            || crate::check(init_device()),
        ),
        Trial::test("cli::init_refuses_non_empty_plain_root", || {
            crate::check(init_non_empty())
        }),
        Trial::test("cli::commands_on_an_unready_pool_say_how_to_fix_it", || {
            crate::check(not_ready())
        }),
        Trial::test("cli::template_import_ls_rm_and_in_use_refusal", || {
            crate::check(template_lifecycle())
        }),
        Trial::test("cli::template_import_from_tar_zst", || {
            crate::check(template_from_archive())
        }),
        Trial::test("cli::create_inspect_ls_rm", || {
            crate::check(jail_lifecycle())
        }),
        Trial::test("cli::bad_input_gets_one_line_errors", || {
            crate::check(bad_input())
        }),
        Trial::test("cli::corrupt_record_is_listed_broken_not_fatal", || {
            crate::check(corrupt_record())
        }),
        Trial::test("cli::concurrent_creates_exactly_one_wins", || {
            crate::check(concurrent_creates())
        }),
        Trial::test("cli::interrupted_create_states_are_recoverable", || {
            crate::check(interrupted_states())
        }),
        Trial::test("cli::create_killed_with_sigkill_is_recoverable", || {
            crate::check(sigkill_creates())
        }),
        Trial::test("cli::debootstrap_makes_a_debian_template", || {
            crate::check(debootstrap_template())
        }),
        Trial::test(
            "cli::create_refuses_fractions_of_a_byte_and_sizes_below_their_minimum",
            || crate::check(sizes_refused()),
        ),
        Trial::test(
            "cli::create_refuses_cpus_below_the_kernels_quota_or_beyond_the_host",
            || crate::check(cpus_refused()),
        ),
        Trial::test(
            "cli::create_without_a_command_is_refused_unless_the_template_has_one",
            || crate::check(default_command()),
        ),
        Trial::test(
            "cli::create_says_the_hostname_a_name_gets_and_takes_fqdns",
            || crate::check(hostnames()),
        ),
        Trial::test(
            "cli::template_import_of_a_missing_path_says_it_does_not_exist",
            || crate::check(import_missing()),
        ),
        Trial::test(
            "cli::debootstrap_refuses_a_bad_or_taken_name_before_it_starts",
            || crate::check(debootstrap_checks_first()),
        ),
        Trial::test("cli::init_of_an_existing_pool_says_it_ignored_size", || {
            crate::check(init_size_ignored())
        }),
    ]
}

pub fn jailer(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jailer"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("JAILER_ROOT")
        .stdin(Stdio::null())
        .output()
        .expect("run jailer")
}

/// Runs jailer and requires success; returns stdout.
pub fn ok(root: &Path, args: &[&str]) -> Result<String, String> {
    let out = jailer(root, args);
    if !out.status.success() {
        return Err(format!(
            "jailer {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs jailer and requires a failure whose stderr is one line containing
/// every one of `needles`; returns stderr.
pub fn fails(root: &Path, args: &[&str], needles: &[&str]) -> Result<String, String> {
    let out = jailer(root, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        return Err(format!("jailer {args:?} succeeded but should fail"));
    }
    if err.trim_end().lines().count() != 1 {
        return Err(format!("jailer {args:?}: error is not one line: {err}"));
    }
    for n in needles {
        if !err.contains(n) {
            return Err(format!("jailer {args:?}: error lacks {n:?}: {err}"));
        }
    }
    Ok(err)
}

fn json(s: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(s).map_err(|e| format!("not JSON ({e}): {s}"))
}

/// A fresh pool on the scratch btrfs, laid out by `jailer init`.
pub fn fresh_pool(tag: &str) -> Result<PathBuf, String> {
    let root = crate::scratch().fresh_dir(tag);
    ok(&root, &["init"])?;
    Ok(root)
}

/// A small template source tree: a few files, a symlink, an owner.
pub fn small_tree(tag: &str) -> Result<PathBuf, String> {
    let src = crate::scratch().fresh_plain_dir(tag);
    let e = |e: std::io::Error| e.to_string();
    std::fs::create_dir_all(src.join("etc")).map_err(e)?;
    std::fs::create_dir_all(src.join("bin")).map_err(e)?;
    std::fs::write(src.join("etc/hostname"), "template\n").map_err(e)?;
    std::fs::write(src.join("etc/os-release"), "ID=test\n").map_err(e)?;
    std::os::unix::fs::symlink("/etc/hostname", src.join("bin/link")).map_err(e)?;
    std::os::unix::fs::chown(src.join("etc/os-release"), Some(100), Some(101)).map_err(e)?;
    Ok(src)
}

/// A pool with template `base` imported from [`small_tree`].
pub fn pool_with_template(tag: &str) -> Result<PathBuf, String> {
    let root = fresh_pool(tag)?;
    import_base(&root, tag)?;
    Ok(root)
}

/// Imports template `base` from a fresh [`small_tree`] into the pool at
/// `root`. It records a default command, so that the tests' jails made from
/// it (never started: the tree has no programs) need none.
pub fn import_base(root: &Path, tag: &str) -> Result<(), String> {
    let src = small_tree(&format!("{tag}-src"))?;
    ok(
        root,
        &[
            "template",
            "import",
            "base",
            src.to_str().unwrap_or_default(),
            "--",
            "/bin/sh",
        ],
    )?;
    Ok(())
}

/// Subvolume paths below `root`, from the btrfs tool (not our code).
fn subvolumes_below(root: &Path) -> Result<Vec<String>, String> {
    let out = Command::new("btrfs")
        .args(["subvolume", "list", "-o"])
        .arg(crate::scratch().mnt())
        .output()
        .map_err(|e| e.to_string())?;
    // -o lists only the top level's children; use the full list instead.
    let out = if out.status.success() {
        Command::new("btrfs")
            .args(["subvolume", "list"])
            .arg(crate::scratch().mnt())
            .output()
            .map_err(|e| e.to_string())?
    } else {
        out
    };
    let rel = root
        .strip_prefix(crate::scratch().mnt())
        .map_err(|e| e.to_string())?
        .to_string_lossy()
        .into_owned();
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(" path ").nth(1))
        .filter(|p| p.starts_with(&rel))
        .map(str::to_string)
        .collect())
}

fn init_existing() -> Result<(), String> {
    let root = crate::scratch().fresh_dir("init-existing");
    let first = ok(&root, &["init"])?;
    if !first.contains("existing btrfs") {
        return Err(format!("first init: {first}"));
    }
    let second = ok(&root, &["init", "--json"])?;
    if json(&second)?["action"] != "already_ready" {
        return Err(format!("second init: {second}"));
    }
    let info = json(&ok(&root, &["pool", "--json"])?)?;
    if info["kind"] != "existing" || info["templates"] != 0 || info["jails"] != 0 {
        return Err(format!("pool info: {info}"));
    }
    if info["size"].as_u64().unwrap_or(0) < (1 << 30) || info["free"].as_u64().is_none() {
        return Err(format!("pool sizes: {info}"));
    }
    let human = ok(&root, &["info"])?;
    for k in [
        "device:",
        "size:",
        "used:",
        "free:",
        "templates:  0",
        "jails:      0",
    ] {
        if !human.contains(k) {
            return Err(format!("`jailer info` lacks {k}: {human}"));
        }
    }
    Ok(())
}

/// Releases an image-backed pool by exact name, also when the test failed.
pub(crate) struct ImagePool {
    pub(crate) root: PathBuf,
    pub(crate) image: PathBuf,
}

impl Drop for ImagePool {
    fn drop(&mut self) {
        unmount_below(&self.root);
        detach_loops_of(&self.image);
        let _ = std::fs::remove_file(&self.image);
    }
}

/// A host file removed on drop (declared after the jails' guards of a test
/// that fills a pool, it goes first, so that their `rm` finds room).
pub(crate) struct RemoveOnDrop(pub(crate) PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub(crate) fn loops_backing(image: &Path) -> usize {
    std::fs::read_dir("/sys/block")
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    std::fs::read_to_string(e.path().join("loop/backing_file"))
                        .map(|b| Path::new(b.trim()) == image)
                        .unwrap_or(false)
                })
                .count()
        })
        .unwrap_or(0)
}

fn is_mountpoint(p: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines()
                .any(|l| l.split(' ').nth(4).map(Path::new) == Some(p))
        })
        .unwrap_or(false)
}

fn init_image() -> Result<(), String> {
    let dir = crate::scratch().fresh_plain_dir("init-image");
    let guard = ImagePool {
        root: dir.join("pool"),
        image: dir.join("pool.img"),
    };
    let root = &guard.root;
    let out = ok(root, &["init", "--size", "1G"])?;
    if !out.contains("image") {
        return Err(format!("init said: {out}"));
    }
    let meta = std::fs::metadata(&guard.image).map_err(|e| e.to_string())?;
    if meta.len() != 1 << 30 {
        return Err(format!("image is {} bytes, not 1G", meta.len()));
    }
    use std::os::unix::fs::MetadataExt;
    if meta.blocks() * 512 > 200 << 20 {
        return Err(format!("image is not sparse: {} blocks", meta.blocks()));
    }
    if !is_mountpoint(root) || loops_backing(&guard.image) != 1 {
        return Err("pool is not mounted from one loop device".into());
    }
    let info = json(&ok(root, &["pool", "--json"])?)?;
    if info["kind"] != "image" || info["image"] != guard.image.to_str().unwrap_or_default() {
        return Err(format!("pool info: {info}"));
    }
    // Something to survive the "reboot".
    let src = small_tree("init-image-src")?;
    ok(
        root,
        &[
            "template",
            "import",
            "keep",
            src.to_str().unwrap_or_default(),
        ],
    )?;
    // Idempotent while mounted.
    let again = json(&ok(root, &["init", "--json"])?)?;
    if again["action"] != "already_ready" {
        return Err(format!("init again: {again}"));
    }
    // "Reboot": unmount; autoclear must release the loop device by itself.
    unmount_below(root);
    if is_mountpoint(root) {
        return Err("could not unmount the pool".into());
    }
    // The kernel releases an autoclear device asynchronously.
    let t = std::time::Instant::now();
    while loops_backing(&guard.image) != 0 && t.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if loops_backing(&guard.image) != 0 {
        return Err("the loop device was not auto-cleared after unmount".into());
    }
    fails(root, &["ls"], &["not ready", "init"])?;
    let re = json(&ok(root, &["init", "--json"])?)?;
    if re["action"] != "reattached_image" {
        return Err(format!("re-init: {re}"));
    }
    let list = ok(root, &["template", "ls"])?;
    if !list.contains("keep") {
        return Err(format!(
            "template lost after re-attach (re-formatted?): {list}"
        ));
    }
    Ok(())
}

struct LoopGuard {
    dev: String,
    root: PathBuf,
    image: PathBuf,
}

impl Drop for LoopGuard {
    fn drop(&mut self) {
        unmount_below(&self.root);
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
        detach_loops_of(&self.image);
        let _ = std::fs::remove_file(&self.image);
    }
}

fn init_device() -> Result<(), String> {
    let dir = crate::scratch().fresh_plain_dir("init-device");
    let image = dir.join("disk.img");
    let f = std::fs::File::create(&image).map_err(|e| e.to_string())?;
    f.set_len(512 << 20).map_err(|e| e.to_string())?;
    drop(f);
    let st = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&image)
        .status()
        .map_err(|e| e.to_string())?;
    if !st.success() {
        return Err("mkfs.ext4 failed".into());
    }
    let out = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&image)
        .output()
        .map_err(|e| e.to_string())?;
    let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if dev.is_empty() {
        return Err("losetup failed".into());
    }
    let guard = LoopGuard {
        dev: dev.clone(),
        root: dir.join("pool"),
        image,
    };
    let root = &guard.root;
    fails(
        root,
        &["init", "--device", &dev],
        &[&dev, "ext4", "--force"],
    )?;
    if is_mountpoint(root) {
        return Err("refused init mounted anyway".into());
    }
    fails(
        root,
        &["init", "--device", "/etc/passwd"],
        &["not a block device"],
    )?;
    let out = json(&ok(root, &["init", "--device", &dev, "--force", "--json"])?)?;
    if out["action"] != "formatted_device" {
        return Err(format!("init --force: {out}"));
    }
    let info = json(&ok(root, &["pool", "--json"])?)?;
    if info["kind"] != "device" || info["device"] != dev.as_str() {
        return Err(format!("pool info: {info}"));
    }
    // Run again after an unmount: our own pool device is mounted, not refused.
    unmount_below(root);
    let again = json(&ok(root, &["init", "--device", &dev, "--json"])?)?;
    if again["action"] != "mounted_device" {
        return Err(format!("init again: {again}"));
    }
    Ok(())
}

fn init_non_empty() -> Result<(), String> {
    let root = crate::scratch().fresh_plain_dir("init-nonempty");
    std::fs::write(root.join("precious"), "data").map_err(|e| e.to_string())?;
    fails(&root, &["init", "--size", "1G"], &["not empty", "--root"])?;
    if root.with_extension("img").exists() || is_mountpoint(&root) {
        return Err("refused init left an image or a mount".into());
    }
    Ok(())
}

fn not_ready() -> Result<(), String> {
    let root = crate::scratch().fresh_plain_dir("unready");
    let r = root.to_str().unwrap_or_default();
    for args in [
        &["ls"][..],
        &["pool"],
        &["template", "ls"],
        &["create", "x", "--template", "t"],
    ] {
        fails(
            &root,
            args,
            &["not ready", &format!("jailer --root {r} init")],
        )?;
    }
    Ok(())
}

fn template_lifecycle() -> Result<(), String> {
    let root = pool_with_template("tpl")?;
    let list = json(&ok(&root, &["template", "ls", "--json"])?)?;
    let t = &list[0];
    if t["name"] != "base"
        || t["files"] != 5
        || t["size"] != 17
        || t["created_at"].as_u64().is_none()
    {
        return Err(format!("template ls: {list}"));
    }
    if !t["source"].as_str().unwrap_or("").contains("tpl-src") {
        return Err(format!("template source not recorded: {t}"));
    }
    // The template is read-only.
    let rootfs = root.join("templates/base/rootfs");
    if std::fs::write(rootfs.join("etc/new"), "x").is_ok() {
        return Err("template rootfs is writable".into());
    }
    fails(
        &root,
        &["template", "import", "base", "/etc"],
        &["already exists"],
    )?;
    ok(&root, &["create", "j1", "--template", "base"])?;
    fails(
        &root,
        &["template", "rm", "base"],
        &["used by jail", "j1", "--force"],
    )?;
    ok(&root, &["template", "rm", "base", "--force"])?;
    if root.join("templates/base").exists() {
        return Err("template dir left after rm".into());
    }
    // The jail made from it keeps its files.
    let host = std::fs::read_to_string(root.join("jails/j1/rootfs/etc/hostname"))
        .map_err(|e| e.to_string())?;
    if host != "template\n" {
        return Err("jail lost its files with the template".into());
    }
    fails(&root, &["template", "rm", "base"], &["unknown template"])?;
    ok(&root, &["rm", "j1"])?;
    let left = subvolumes_below(&root)?;
    if !left.is_empty() {
        return Err(format!("subvolumes left: {left:?}"));
    }
    Ok(())
}

fn template_from_archive() -> Result<(), String> {
    let root = fresh_pool("tpl-tar")?;
    let src = small_tree("tpl-tar-src")?;
    let tar = crate::scratch()
        .fresh_plain_dir("tpl-tar-archive")
        .join("root.tar.zst");
    let st = Command::new("tar")
        .args(["--xattrs", "--numeric-owner", "--zstd", "-cpf"])
        .arg(&tar)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .map_err(|e| e.to_string())?;
    if !st.success() {
        return Err("tar failed".into());
    }
    let out = ok(
        &root,
        &[
            "template",
            "import",
            "fromtar",
            tar.to_str().unwrap_or_default(),
        ],
    )?;
    if !out.contains("fromtar") {
        return Err(out);
    }
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(root.join("templates/fromtar/rootfs/etc/os-release"))
        .map_err(|e| e.to_string())?;
    if (m.uid(), m.gid()) != (100, 101) {
        return Err(format!("owner lost: {}:{}", m.uid(), m.gid()));
    }
    // Not an archive: refused, nothing left behind.
    let junk = crate::scratch().fresh_plain_dir("junk").join("junk.tar");
    std::fs::write(&junk, vec![b'x'; 4096]).map_err(|e| e.to_string())?;
    fails(
        &root,
        &[
            "template",
            "import",
            "junk",
            junk.to_str().unwrap_or_default(),
        ],
        &["junk"],
    )?;
    if root.join("templates/junk").exists() {
        return Err("failed import left a directory".into());
    }
    fails(
        &root,
        &["template", "import", "nope", "/does/not/exist"],
        &["/does/not/exist"],
    )?;
    Ok(())
}

fn jail_lifecycle() -> Result<(), String> {
    let root = pool_with_template("jail")?;
    let out = ok(
        &root,
        &[
            "create",
            "web-1",
            "--template",
            "base",
            "--memory",
            "256M",
            "--cpus",
            "1.5",
            "--pids",
            "64",
            "--cap-add",
            "NET_RAW",
            "--cap-drop",
            "cap_chown",
            "--env",
            "PORT=8080",
            "--hostname",
            "web",
            // create looks the parent up (it exists and is up); nothing is
            // made on it, and the jail never starts.
            "--net",
            "macvlan,parent=lo,ip=192.0.2.10/24,gateway=192.0.2.1",
            "--",
            "/bin/sleep",
            "30",
        ],
    )?;
    if !out.contains("created jail web-1") {
        return Err(out);
    }
    let rec = json(&ok(&root, &["inspect", "web-1"])?)?;
    let s = &rec["spec"];
    let caps: Vec<&str> = s["capabilities"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let checks = [
        (rec["state"] == "created", "state"),
        (s["memory"] == 256u64 << 20, "memory"),
        (s["cpus"] == 1.5, "cpus"),
        (s["pids"] == 64, "pids"),
        (s["hostname"] == "web", "hostname"),
        (s["template"] == "base", "template"),
        (
            s["command"] == serde_json::json!(["/bin/sleep", "30"]),
            "command",
        ),
        (s["env"] == serde_json::json!([["PORT", "8080"]]), "env"),
        (
            s["net"][0]["kind"] == "macvlan" && s["net"][0]["parent"] == "lo",
            "net",
        ),
        (
            caps.contains(&"cap_net_raw") && !caps.contains(&"cap_chown"),
            "caps",
        ),
        (rec["ids"]["count"] == 65536, "id count"),
        (
            rec["ids"]["uid_base"].as_u64().unwrap_or(0) >= 1 << 28,
            "uid base",
        ),
        (rec["id"].as_str().map(str::len) == Some(32), "id"),
    ];
    for (good, what) in checks {
        if !good {
            return Err(format!("inspect: wrong {what}: {rec}"));
        }
    }
    // The rootfs is a writable snapshot; writes do not reach the template.
    let jr = root.join("jails/web-1/rootfs");
    std::fs::write(jr.join("etc/hostname"), "changed\n").map_err(|e| e.to_string())?;
    let t = std::fs::read_to_string(root.join("templates/base/rootfs/etc/hostname"))
        .map_err(|e| e.to_string())?;
    if t != "template\n" {
        return Err("a write in the jail changed the template".into());
    }
    // A second jail gets a different id range.
    ok(&root, &["create", "db", "--template", "base"])?;
    let ls = json(&ok(&root, &["ls", "--json"])?)?;
    let arr = ls.as_array().cloned().unwrap_or_default();
    if arr.len() != 2 || arr[0]["name"] != "db" || arr[1]["state"] != "created" {
        return Err(format!("ls: {ls}"));
    }
    let b0 = arr[0]["record"]["ids"]["uid_base"].as_u64().unwrap_or(0);
    let b1 = arr[1]["record"]["ids"]["uid_base"].as_u64().unwrap_or(0);
    if b0.abs_diff(b1) < 65536 {
        return Err(format!("id ranges overlap: {b0} {b1}"));
    }
    let human = ok(&root, &["ls"])?;
    if !human.starts_with("NAME") || !human.contains("/bin/sleep 30") {
        return Err(format!("ls: {human}"));
    }
    ok(&root, &["rm", "web-1"])?;
    ok(&root, &["rm", "db"])?;
    if root.join("jails/web-1").exists() || !subvolumes_below(&root.join("jails"))?.is_empty() {
        return Err("rm left the jail behind".into());
    }
    fails(&root, &["rm", "web-1"], &["no jail named web-1"])?;
    fails(&root, &["inspect", "web-1"], &["no jail named web-1"])?;
    Ok(())
}

fn bad_input() -> Result<(), String> {
    let root = pool_with_template("bad")?;
    fails(
        &root,
        &["create", "../etc", "--template", "base"],
        &["invalid name", "../etc"],
    )?;
    fails(
        &root,
        &["create", "Upper", "--template", "base"],
        &["invalid name"],
    )?;
    fails(
        &root,
        &["create", "x", "--template", "nosuch"],
        &["unknown template nosuch", "template ls"],
    )?;
    fails(
        &root,
        &["create", "x", "--template", "base", "--memory", "lots"],
        &["invalid size", "lots"],
    )?;
    fails(
        &root,
        &["create", "x", "--template", "base", "--cpus", "0"],
        &["cpu"],
    )?;
    fails(
        &root,
        &["create", "x", "--template", "base", "--cap-add", "fly"],
        &["unknown capability", "fly"],
    )?;
    fails(
        &root,
        &["create", "x", "--template", "base", "--net", "bridge"],
        &["invalid network"],
    )?;
    fails(
        &root,
        &["create", "x", "--template", "base", "--env", "1=2"],
        &["environment"],
    )?;
    fails(
        &root,
        &["create", "x", "--template", "base", "--io-weight", "0"],
        &["I/O weight"],
    )?;
    fails(&root, &["init", "--size", "big"], &["invalid size"])?;
    ok(&root, &["create", "x", "--template", "base"])?;
    fails(
        &root,
        &["create", "x", "--template", "base"],
        &["jail x already exists", "jailer rm x"],
    )?;
    fails(
        &root,
        &["template", "import", "../t", "/etc"],
        &["invalid name"],
    )?;
    if root
        .join("jails")
        .read_dir()
        .map(|d| d.count())
        .unwrap_or(0)
        != 1
    {
        return Err("a refused create left something in jails/".into());
    }
    Ok(())
}

fn corrupt_record() -> Result<(), String> {
    let root = pool_with_template("corrupt")?;
    ok(&root, &["create", "good", "--template", "base"])?;
    ok(&root, &["create", "bad", "--template", "base"])?;
    std::fs::write(root.join("jails/bad/jail.json"), "{ not json").map_err(|e| e.to_string())?;
    let ls = json(&ok(&root, &["ls", "--json"])?)?;
    let arr = ls.as_array().cloned().unwrap_or_default();
    if arr.len() != 2 || arr[0]["name"] != "bad" || arr[0]["state"] != "broken" {
        return Err(format!("ls: {ls}"));
    }
    if !arr[0]["broken"].as_str().unwrap_or("").contains("corrupt") || arr[1]["state"] != "created"
    {
        return Err(format!("ls: {ls}"));
    }
    let human = ok(&root, &["ls"])?;
    if !human.contains("broken") || !human.contains("good") {
        return Err(human);
    }
    fails(
        &root,
        &["inspect", "bad"],
        &["jail bad is broken", "corrupt"],
    )?;
    // A broken jail is not silently replaced, but rm removes it.
    fails(&root, &["create", "bad", "--template", "base"], &["broken"])?;
    ok(&root, &["rm", "bad"])?;
    if root.join("jails/bad").exists() {
        return Err("rm left a broken jail".into());
    }
    Ok(())
}

fn concurrent_creates() -> Result<(), String> {
    let root = pool_with_template("race")?;
    for i in 0..8 {
        let name = format!("r{i}");
        let spawn = || {
            Command::new(env!("CARGO_BIN_EXE_jailer"))
                .arg("--root")
                .arg(&root)
                .args(["create", &name, "--template", "base"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
        };
        let a = spawn().map_err(|e| e.to_string())?;
        let b = spawn().map_err(|e| e.to_string())?;
        let (a, b) = (
            a.wait_with_output().map_err(|e| e.to_string())?,
            b.wait_with_output().map_err(|e| e.to_string())?,
        );
        let wins = [&a, &b].iter().filter(|o| o.status.success()).count();
        if wins != 1 {
            return Err(format!("{name}: {wins} creates succeeded"));
        }
        let loser = if a.status.success() { &b } else { &a };
        let msg = String::from_utf8_lossy(&loser.stderr);
        if !(msg.contains("already exists") || msg.contains("locked by another")) {
            return Err(format!("{name}: loser said: {msg}"));
        }
        let rec = json(&ok(&root, &["inspect", &name])?)?;
        if rec["state"] != "created" {
            return Err(format!("{name}: {rec}"));
        }
    }
    Ok(())
}

fn interrupted_states() -> Result<(), String> {
    let root = pool_with_template("interrupted")?;
    let e = |e: std::io::Error| e.to_string();
    // (a) a bare directory: killed right after mkdir.
    std::fs::create_dir(root.join("jails/a")).map_err(e)?;
    // (b) a record in state creating, no snapshot yet.
    ok(&root, &["create", "b", "--template", "base"])?;
    let p = root.join("jails/b/jail.json");
    let mut rec = json(&std::fs::read_to_string(&p).map_err(e)?)?;
    rec["state"] = "creating".into();
    std::fs::write(&p, rec.to_string()).map_err(e)?;
    let snap = root.join("jails/b/rootfs");
    let st = Command::new("btrfs")
        .args(["subvolume", "delete"])
        .arg(&snap)
        .stdout(Stdio::null())
        .status()
        .map_err(e)?;
    if !st.success() {
        return Err("btrfs subvolume delete failed".into());
    }
    // (c) a record in state creating with the snapshot made.
    ok(&root, &["create", "c", "--template", "base"])?;
    let p = root.join("jails/c/jail.json");
    let mut rec = json(&std::fs::read_to_string(&p).map_err(e)?)?;
    rec["state"] = "creating".into();
    std::fs::write(&p, rec.to_string()).map_err(e)?;

    // (d) a record without its snapshot: killed between the two.
    ok(&root, &["create", "d", "--template", "base"])?;
    let st = Command::new("btrfs")
        .args(["subvolume", "delete"])
        .arg(root.join("jails/d/rootfs"))
        .stdout(Stdio::null())
        .status()
        .map_err(e)?;
    if !st.success() {
        return Err("btrfs subvolume delete failed".into());
    }

    // (e) an empty record: a crash between the rename and the fsync.
    ok(&root, &["create", "e", "--template", "base"])?;
    std::fs::write(root.join("jails/e/jail.json"), "").map_err(e)?;

    let ls = json(&ok(&root, &["ls", "--json"])?)?;
    if ls.as_array().map(Vec::len) != Some(5) {
        return Err(format!("ls: {ls}"));
    }
    for j in ls.as_array().cloned().unwrap_or_default() {
        if j["state"] != "broken" || !j["broken"].as_str().unwrap_or("").contains("jailer rm") {
            return Err(format!("interrupted jail not shown broken with a fix: {j}"));
        }
    }
    // create finishes (redoes) them, rm removes them.
    ok(&root, &["create", "a", "--template", "base"])?;
    ok(&root, &["create", "b", "--template", "base"])?;
    ok(&root, &["rm", "c"])?;
    ok(&root, &["create", "d", "--template", "base"])?;
    ok(&root, &["rm", "d"])?;
    ok(&root, &["create", "e", "--template", "base"])?;
    ok(&root, &["rm", "e"])?;
    let ls = json(&ok(&root, &["ls", "--json"])?)?;
    let states: Vec<String> = ls
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|j| format!("{}={}", j["name"], j["state"]).replace('"', ""))
        .collect();
    if states != ["a=created", "b=created"] {
        return Err(format!("after recovery: {states:?}"));
    }
    Ok(())
}

fn sigkill_creates() -> Result<(), String> {
    let root = pool_with_template("sigkill")?;
    // Kill creates at spread-out moments; whatever state each leaves, a later
    // rm must clear it and a later create must succeed.
    for i in 0..24u64 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_jailer"))
            .arg("--root")
            .arg(&root)
            .args(["create", "k", "--template", "base"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        std::thread::sleep(std::time::Duration::from_micros(i * 400));
        let _ = child.kill();
        let _ = child.wait();
        // Listing never fails, whatever was left.
        ok(&root, &["ls"])?;
        if i % 2 == 0 {
            if root.join("jails/k").exists() {
                ok(&root, &["rm", "k"])?;
            }
        } else {
            let out = jailer(&root, &["create", "k", "--template", "base"]);
            let err = String::from_utf8_lossy(&out.stderr);
            if !out.status.success() && !err.contains("already exists") {
                return Err(format!("create after kill #{i}: {err}"));
            }
            ok(&root, &["rm", "k"])?;
        }
        if root.join("jails/k").exists() {
            return Err(format!("kill #{i}: jail left after rm"));
        }
    }
    let left = subvolumes_below(&root.join("jails"))?;
    if !left.is_empty() {
        return Err(format!("subvolumes leaked: {left:?}"));
    }
    Ok(())
}

fn debootstrap_template() -> Result<(), String> {
    // Bad arguments are refused before anything runs.
    let scratch_root = fresh_pool("debootstrap-args")?;
    fails(
        &scratch_root,
        &["template", "debootstrap", "x", "--suite=-rf"],
        &["invalid debootstrap argument"],
    )?;
    fails(
        &scratch_root,
        &["template", "debootstrap", "x", "--include", "a b"],
        &["invalid debootstrap argument"],
    )?;
    if scratch_root.join("templates/x").exists() {
        return Err("refused debootstrap left a template directory".into());
    }
    // The shared template is made by `jailer template debootstrap deb`.
    let root = crate::debian_pool()?;
    let list = json(&ok(&root, &["template", "ls", "--json"])?)?;
    let t = list
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == "deb"))
        .cloned()
        .ok_or_else(|| format!("no deb template: {list}"))?;
    let imported = std::env::var("JAILER_TEST_ROOTFS").is_ok();
    // `--include` is in the source, and its package in the tree.
    if (!imported && t["source"] != "debootstrap:bookworm/minbase+procps")
        || t["files"].as_u64().unwrap_or(0) < 5000
    {
        return Err(format!("debootstrap template: {t}"));
    }
    let rootfs = root.join("templates/deb/rootfs");
    if !imported && !rootfs.join("usr/bin/ps").exists() && !rootfs.join("bin/ps").exists() {
        return Err("debootstrap --include procps: no ps in the template".into());
    }
    let version = std::fs::read_to_string(rootfs.join("etc/debian_version"))
        .map_err(|e| format!("no etc/debian_version: {e}"))?;
    if !version.starts_with("12.") {
        return Err(format!("not bookworm: {version}"));
    }
    if std::fs::write(rootfs.join("etc/x"), "x").is_ok() {
        return Err("debootstrap template is writable".into());
    }
    ok(
        &root,
        &["create", "deb1", "--template", "deb", "--", "/bin/true"],
    )?;
    if !root.join("jails/deb1/rootfs/usr/bin/dpkg").exists() {
        return Err("jail from the debootstrap template lacks dpkg".into());
    }
    ok(&root, &["rm", "deb1"])?;
    Ok(())
}

/// Requires `jailer ARGS` to fail as invalid input (exit status 2, kind
/// `invalid` under --json) with a one-line error holding `needles`, leaving
/// `jails/` as it was.
fn refused(root: &Path, args: &[&str], needles: &[&str]) -> Result<(), String> {
    let before = entries(&root.join("jails"));
    fails(root, args, needles)?;
    let mut json_args = vec!["--json"];
    json_args.extend_from_slice(args);
    let out = jailer(root, &json_args);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    if out.status.code() != Some(2) || doc["error"]["kind"] != "invalid" {
        return Err(format!(
            "jailer --json {args:?} exited {:?} with {doc}, not 2 and kind invalid",
            out.status.code()
        ));
    }
    let after = entries(&root.join("jails"));
    if before != after {
        return Err(format!(
            "refused {args:?} changed jails/: {before:?} -> {after:?}"
        ));
    }
    Ok(())
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn sizes_refused() -> Result<(), String> {
    let root = pool_with_template("sizes")?;
    let create = |opt: &'static str, value: &'static str| -> Vec<&'static str> {
        vec!["create", "x", "--template", "base", opt, value]
    };
    // `--memory 1.5` used to be recorded as 1 byte.
    refused(
        &root,
        &create("--memory", "1.5"),
        &["\"1.5\"", "--memory", "not a whole number of bytes"],
    )?;
    refused(
        &root,
        &create("--disk", "0.3K"),
        &["\"0.3K\"", "--disk", "not a whole number of bytes"],
    )?;
    for (opt, value, min) in [
        ("--memory", "1M", "4M"),
        ("--memory", "1", "4M"),
        ("--disk", "64K", "1M"),
        ("--log-size", "1K", "4K"),
    ] {
        refused(
            &root,
            &create(opt, value),
            &[&format!("{opt} {value} is below the minimum of {min}")],
        )?;
    }
    // The minimums themselves are taken, and recorded exactly.
    ok(
        &root,
        &[
            "create",
            "x",
            "--template",
            "base",
            "--memory",
            "4M",
            "--disk",
            "1M",
            "--log-size",
            "4K",
        ],
    )?;
    let s = json(&ok(&root, &["inspect", "x"])?)?["spec"].clone();
    if s["memory"] != 4u64 << 20 || s["disk"] != 1u64 << 20 || s["log_size"] != 4096 {
        return Err(format!("minimums recorded as: {s}"));
    }
    ok(&root, &["rm", "x"])?;
    // A pool image below what mkfs.btrfs can format: refused before any file.
    let dir = crate::scratch().fresh_plain_dir("sizes-init");
    let pool = dir.join("pool");
    fails(
        &pool,
        &["init", "--size", "100M"],
        &["--size 100M is below the minimum of 256M", "mkfs.btrfs"],
    )?;
    if dir.join("pool.img").exists() {
        return Err("a refused init --size made an image".into());
    }
    Ok(())
}

/// `&str`s of `v`.
fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The CPUs this host has online, as the C library counts them.
/// The C library's count of online cpus (what `getconf _NPROCESSORS_ONLN`
/// prints; the VM lane's guest has no getconf).
fn online_cpus() -> Result<usize, String> {
    nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
        .map_err(|e| format!("sysconf(_SC_NPROCESSORS_ONLN): {e}"))?
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| "sysconf(_SC_NPROCESSORS_ONLN) has no answer".to_string())
}

fn cpus_refused() -> Result<(), String> {
    let root = pool_with_template("cpus")?;
    let create = |value: &str| -> Vec<String> {
        ["create", "x", "--template", "base", "--cpus", value]
            .map(String::from)
            .to_vec()
    };
    // `--cpus 0.001` used to be accepted; start then failed with EINVAL
    // from cpu.cfs_quota_us.
    for few in ["0.001", "0.009"] {
        refused(
            &root,
            &args(&create(few)),
            &[
                &format!("--cpus {few} is below the minimum of 0.01"),
                "1 ms per 100 ms",
            ],
        )?;
    }
    let host = online_cpus()?;
    for many in [format!("{}", host + 1), "1000".to_string()] {
        refused(
            &root,
            &args(&create(&many)),
            &[&format!(
                "--cpus {many} is more than the {host} cpu(s) this host has"
            )],
        )?;
    }
    ok(&root, &args(&create(&host.to_string())))?;
    ok(&root, &["rm", "x"])?;
    // The least accepted is what the kernel takes: a jail at 0.01 cpus runs.
    let deb = crate::debian_pool()?;
    let name = "cli-cpus-min";
    let _ = jailer(&deb, &["rm", "--force", name]);
    ok(
        &deb,
        &[
            "create",
            name,
            "--template",
            "deb",
            "--cpus",
            "0.01",
            "--",
            "/bin/true",
        ],
    )?;
    let out = jailer(&deb, &["start", "--wait", name]);
    let _ = jailer(&deb, &["rm", "--force", name]);
    if !out.status.success() {
        return Err(format!(
            "a jail at --cpus 0.01 did not run ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn default_command() -> Result<(), String> {
    let root = fresh_pool("defcmd")?;
    let src = small_tree("defcmd-src")?;
    let src = src.to_str().unwrap_or_default();
    ok(&root, &["template", "import", "bare", src])?;
    // `create foo -t bare` used to succeed; start then said "has no command".
    for verb in ["create", "run"] {
        refused(
            &root,
            &[verb, "foo", "--template", "bare"],
            &[
                "jail foo has no command",
                "template bare records no default one",
                "-- /bin/sleep infinity",
            ],
        )?;
    }
    let out = ok(
        &root,
        &[
            "template",
            "import",
            "svc",
            src,
            "--",
            "/bin/sleep",
            "infinity",
        ],
    )?;
    if !out.contains("default command: /bin/sleep infinity") {
        return Err(format!("import did not say its default command: {out}"));
    }
    let list = json(&ok(&root, &["template", "ls", "--json"])?)?;
    let svc = list
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == "svc"))
        .cloned()
        .unwrap_or_default();
    if svc["command"] != serde_json::json!(["/bin/sleep", "infinity"]) {
        return Err(format!("template ls: {list}"));
    }
    ok(&root, &["create", "foo", "--template", "svc"])?;
    ok(
        &root,
        &["create", "own", "--template", "svc", "--", "/bin/true"],
    )?;
    let from_tpl = json(&ok(&root, &["inspect", "foo"])?)?;
    let own = json(&ok(&root, &["inspect", "own"])?)?;
    if from_tpl["spec"]["command"] != serde_json::json!(["/bin/sleep", "infinity"])
        || own["spec"]["command"] != serde_json::json!(["/bin/true"])
    {
        return Err(format!("commands recorded: {from_tpl} / {own}"));
    }
    fails(
        &root,
        &["template", "import", "empty", src, "--", ""],
        &["invalid default command for template empty"],
    )?;
    if root.join("templates/empty").exists() {
        return Err("a refused import left a template".into());
    }
    ok(&root, &["rm", "foo"])?;
    ok(&root, &["rm", "own"])?;
    Ok(())
}

fn hostnames() -> Result<(), String> {
    let root = pool_with_template("hostnames")?;
    let help = ok(&root, &["create", "--help"])?;
    if !help.contains("`my_app.v2` gets `my-app-v2`") {
        return Err(format!(
            "create --help does not say a name's hostname: {help}"
        ));
    }
    // `my_app.v2` used to get `my-app-v2` without a word.
    let out = jailer(&root, &["create", "my_app.v2", "--template", "base"]);
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !err.contains("jail my_app.v2 gets hostname my-app-v2") {
        return Err(format!("create my_app.v2 ({}): {err}", out.status));
    }
    let rec = json(&ok(&root, &["inspect", "my_app.v2"])?)?;
    if rec["spec"]["hostname"] != "my-app-v2" {
        return Err(format!("hostname: {rec}"));
    }
    // A name that is its own hostname gets no warning.
    let out = jailer(&root, &["create", "web", "--template", "base"]);
    if !out.status.success() || !out.stderr.is_empty() {
        return Err(format!(
            "create web: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // `--hostname my.host` used to be refused.
    let fqdn = format!("{}.example.com", "a".repeat(52));
    ok(
        &root,
        &["create", "fq", "--template", "base", "--hostname", &fqdn],
    )?;
    let rec = json(&ok(&root, &["inspect", "fq"])?)?;
    if rec["spec"]["hostname"] != fqdn.as_str() {
        return Err(format!("fqdn hostname: {rec}"));
    }
    let too_long = format!("{}.example.com", "a".repeat(53));
    refused(
        &root,
        &[
            "create",
            "long",
            "--template",
            "base",
            "--hostname",
            &too_long,
        ],
        &["invalid hostname", "longer than 64", "sethostname"],
    )?;
    refused(
        &root,
        &["create", "dots", "--template", "base", "--hostname", "a..b"],
        &["invalid hostname", "empty label"],
    )?;
    for n in ["my_app.v2", "web", "fq"] {
        ok(&root, &["rm", n])?;
    }
    Ok(())
}

fn import_missing() -> Result<(), String> {
    let root = fresh_pool("import-missing")?;
    // It used to say "neither a directory nor a tar archive".
    let err = fails(
        &root,
        &["template", "import", "nope", "/does/not/exist"],
        &["/does/not/exist does not exist"],
    )?;
    if err.contains("neither") {
        return Err(format!("missing path called the wrong kind: {err}"));
    }
    if root.join("templates/nope").exists() {
        return Err("a refused import left a template".into());
    }
    Ok(())
}

fn debootstrap_checks_first() -> Result<(), String> {
    let root = pool_with_template("debootstrap-first")?;
    // Each is refused at once, on one line: no "this takes a few minutes"
    // first (`fails` requires a one-line stderr).
    fails(
        &root,
        &["template", "debootstrap", "base"],
        &["template base already exists"],
    )?;
    fails(
        &root,
        &["template", "debootstrap", "../x"],
        &["invalid name \"../x\""],
    )?;
    let unready = crate::scratch().fresh_plain_dir("debootstrap-unready");
    fails(
        &unready,
        &["template", "debootstrap", "x"],
        &["not ready", "init"],
    )?;
    // --if-missing: a setup script that runs twice succeeds, and does
    // nothing the second time.
    let out = jailer(&root, &["template", "debootstrap", "base", "--if-missing"]);
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !err.contains("template base exists already") {
        return Err(format!(
            "debootstrap --if-missing of an existing template: {out:?}"
        ));
    }
    // The existing template is untouched.
    let list = json(&ok(&root, &["template", "ls", "--json"])?)?;
    if list[0]["name"] != "base" || list[0]["files"] != 5 {
        return Err(format!("template ls: {list}"));
    }
    Ok(())
}

fn init_size_ignored() -> Result<(), String> {
    let root = fresh_pool("init-size")?;
    // It used to say "already ready" and nothing of the 5G.
    let out = ok(&root, &["init", "--size", "5G"])?;
    if !out.contains("already ready; --size 5G ignored") || !out.contains("this pool exists") {
        return Err(format!("init --size on a ready pool said: {out}"));
    }
    let v = json(&ok(&root, &["init", "--size", "5G", "--json"])?)?;
    if v["action"] != "already_ready" || v["size_ignored"] != "5G" {
        return Err(format!("init --size --json: {v}"));
    }
    let plain = ok(&root, &["init"])?;
    if plain.contains("ignored") {
        return Err(format!("init without --size: {plain}"));
    }
    Ok(())
}
