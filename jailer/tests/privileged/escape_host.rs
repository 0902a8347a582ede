//! What a jail's root, and host users, can do to the host and the pool:
//! regression tests for the escapes found from outside (the pool's
//! permissions and mount, file capabilities, id ranges across pools, edited
//! records, stuck locks, control characters, socket families, kernel
//! interfaces under /proc, the default pids limit). Attacks run inside
//! jails (through `jailer exec` or the probe); host users are simulated by a
//! child of the test that drops to `nobody` before touching anything.

use crate::cli::{fails, jailer, ok, pool_with_template};
use crate::runtime::{inspect, jail, sh_ok, start_sh};
use libtest_mimic::Trial;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn trials() -> Vec<Trial> {
    let t = |name: &'static str, f: fn() -> Result<(), String>| {
        Trial::test(format!("escape_host::{name}"), move || crate::check(f()))
    };
    vec![
        t("pool_files_are_closed_to_host_users", pool_closed),
        t(
            "setuid_and_capability_files_made_in_a_jail_are_inert_on_the_host",
            setuid_and_fcaps,
        ),
        t(
            "host_id_ranges_never_overlap_across_pools",
            ranges_across_pools,
        ),
        t(
            "start_refuses_a_record_whose_id_range_was_edited",
            edited_ids,
        ),
        t(
            "a_held_lock_gives_a_bounded_error_naming_its_holder",
            held_lock,
        ),
        t(
            "ps_ls_and_errors_escape_control_characters",
            control_characters,
        ),
        t(
            "jail_cannot_open_vsock_or_other_unneeded_socket_families",
            socket_families,
        ),
        t(
            "kernel_interfaces_under_proc_are_masked_or_read_only",
            masked_proc,
        ),
        t("jails_get_a_default_pids_limit", default_pids),
    ]
}

fn mode(p: &Path) -> Result<u32, String> {
    std::fs::symlink_metadata(p)
        .map(|m| m.mode() & 0o7777)
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// What host user `nobody` gets trying to read `path`: a forked child
/// drops to uid and gid 65534 and opens it (no exec: no lane is sure to
/// have a program at a path nobody may run). `ok` or the errno's name.
fn as_nobody_read(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return "NUL in path".into();
    };
    // SAFETY: the child makes only async-signal-safe syscalls (setgroups,
    // setgid, setuid, open) on memory prepared before the fork, and ends in
    // _exit; the parent only waits for it.
    match unsafe { nix::unistd::fork() } {
        Err(e) => e.to_string(),
        Ok(nix::unistd::ForkResult::Child) => {
            // nix's setgroups, setgid and setuid do not allocate.
            let dropped = nix::unistd::setgroups(&[]).is_ok()
                && nix::unistd::setgid(nix::unistd::Gid::from_raw(65534)).is_ok()
                && nix::unistd::setuid(nix::unistd::Uid::from_raw(65534)).is_ok();
            let code = if !dropped {
                200
            } else {
                // SAFETY: open(2) reads the NUL-terminated path, valid in
                // this copy of the address space.
                let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY) };
                if fd >= 0 {
                    0
                } else {
                    nix::errno::Errno::last_raw()
                }
            };
            // SAFETY: _exit ends the child without running anything of the
            // test harness.
            unsafe { libc::_exit(code) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            match nix::sys::wait::waitpid(child, None) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => "ok".into(),
                Ok(nix::sys::wait::WaitStatus::Exited(_, 200)) => "could not drop to nobody".into(),
                Ok(nix::sys::wait::WaitStatus::Exited(_, n)) => {
                    format!("{:?}", nix::errno::Errno::from_raw(n))
                }
                other => format!("{other:?}"),
            }
        }
    }
}

/// The per-mount options of the mount whose mount point is `p`.
fn mount_options(p: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines()
        .rev()
        .find(|l| l.split(' ').nth(4).map(Path::new) == Some(p))
        .and_then(|l| l.split(' ').nth(5).map(str::to_string))
}

fn pool_closed() -> Result<(), String> {
    // An image pool (the default kind) and a jail with a secret.
    let dir = crate::scratch().fresh_plain_dir("closed");
    let root = dir.join("pool");
    let image = dir.join("pool.img");
    let _release = crate::cli::ImagePool {
        root: root.clone(),
        image: image.clone(),
    };
    ok(&root, &["init", "--size", "512M"])?;
    crate::cli::import_base(&root, "closed")?;
    ok(
        &root,
        &[
            "create",
            "sec",
            "--template",
            "base",
            "--env",
            "DB_PASSWORD=hunter2",
            "--",
            "/bin/true",
        ],
    )?;
    let _j = jail(&root, "sec");
    let opts = mount_options(&root).ok_or("the pool is not a mount point")?;
    let has = |o: &str| opts.split(',').any(|x| x == o);
    if !(has("nosuid") && has("nodev")) {
        return Err(format!("pool mounted {opts}, not nosuid,nodev"));
    }
    for (p, want) in [
        (image.clone(), 0o600),
        (root.clone(), 0o700),
        (root.join("jails"), 0o700),
        (root.join("templates"), 0o700),
        (root.join(".locks"), 0o700),
        (root.join("jails/sec"), 0o700),
        (root.join("jails/sec/jail.json"), 0o600),
        (root.join("templates/base/template.json"), 0o600),
        (root.join(".locks/jail-sec.lock"), 0o600),
        (root.join("pool.json"), 0o600),
    ] {
        let m = mode(&p)?;
        if m != want {
            return Err(format!("{} is {m:o}, want {want:o}", p.display()));
        }
    }
    // Host user nobody: neither the image's superblock nor the secret.
    for p in [image.clone(), root.join("jails/sec/jail.json")] {
        let got = as_nobody_read(&p);
        if got != "EACCES" {
            return Err(format!("nobody reading {}: {got}", p.display()));
        }
    }
    Ok(())
}

fn setuid_and_fcaps() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let name = "esc-suid";
    let _j = jail(&root, name);
    start_sh(&root, name, &[], "sleep 1000")?;
    sh_ok(
        &root,
        name,
        "cp /bin/sh /tmp/x && chmod 4755 /tmp/x && echo cap > /tmp/capfile",
    )?;
    let x = root.join("jails").join(name).join("rootfs/tmp/x");
    let m = std::fs::metadata(&x).map_err(|e| e.to_string())?;
    if m.mode() & 0o4000 == 0 || m.uid() != 0 {
        return Err(format!("fixture: /tmp/x is {:o} uid {}", m.mode(), m.uid()));
    }
    // The setuid-root file is where the host honours no setuid bit, and no
    // host user can reach it.
    let st = nix::sys::statvfs::statvfs(&x).map_err(|e| e.to_string())?;
    use nix::sys::statvfs::FsFlags;
    if !st.flags().contains(FsFlags::ST_NOSUID | FsFlags::ST_NODEV) {
        return Err("a setuid-root file made in a jail is on a suid mount of the host".into());
    }
    let got = as_nobody_read(&x);
    if got != "EACCES" {
        return Err(format!(
            "host user nobody reading the jail's setuid file: {got}"
        ));
    }
    // A file capability: refused inside (no cap_setfcap), so none is stored
    // in a form the host would honour.
    crate::probe::install(&root, name)?;
    let (_, answer) = crate::probe::run(&root, name, &["setcap", "/tmp/capfile"]);
    let stored = xattr::get(
        root.join("jails").join(name).join("rootfs/tmp/capfile"),
        "security.capability",
    )
    .map_err(|e| e.to_string())?;
    if answer != "EPERM" || stored.is_some() {
        return Err(format!(
            "setting a file capability in a jail answered {answer:?}; stored on disk: {stored:?}"
        ));
    }
    // `--cap-add setfcap` is refused at create, with the reason.
    fails(
        &root,
        &[
            "create",
            "esc-fcap",
            "--template",
            "deb",
            "--cap-add",
            "SETFCAP",
            "--",
            "/bin/true",
        ],
        &["cap_setfcap", "never granted"],
    )?;
    Ok(())
}

fn ids_of(root: &Path, name: &str) -> Result<u64, String> {
    let rec = inspect(root, name)?;
    rec["ids"]["uid_base"]
        .as_u64()
        .ok_or_else(|| format!("{name} has no uid_base: {rec}"))
}

fn ranges_across_pools() -> Result<(), String> {
    let a = pool_with_template("ids-a")?;
    let b = pool_with_template("ids-b")?;
    let _ja = jail(&a, "same");
    let _jb = jail(&b, "same");
    ok(
        &a,
        &["create", "same", "--template", "base", "--", "/bin/true"],
    )?;
    ok(
        &b,
        &["create", "same", "--template", "base", "--", "/bin/true"],
    )?;
    let (ra, rb) = (ids_of(&a, "same")?, ids_of(&b, "same")?);
    if ra.abs_diff(rb) < 65_536 {
        return Err(format!("jails of two pools share host ids: {ra} and {rb}"));
    }
    // Kept in step with /etc/subuid and /etc/subgid, and released by rm.
    let line = format!("root:{rb}:65536");
    for f in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        if !text.lines().any(|l| l == line) {
            return Err(format!("{f} lacks {line}: {text}"));
        }
    }
    ok(&b, &["rm", "same"])?;
    let text = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    if text.lines().any(|l| l == line) {
        return Err(format!("/etc/subuid still has {line} after rm"));
    }
    Ok(())
}

fn edited_ids() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let (name, other) = ("esc-ids", "esc-ids-2");
    let _j = jail(&root, name);
    let _k = jail(&root, other);
    for n in [name, other] {
        ok(
            &root,
            &["create", n, "--template", "deb", "--", "/bin/sleep", "1000"],
        )?;
    }
    let path = root.join("jails").join(name).join("jail.json");
    let edit = |base: u64| -> Result<(), String> {
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let mut v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        v["ids"]["uid_base"] = base.into();
        v["ids"]["gid_base"] = base.into();
        std::fs::write(&path, v.to_string()).map_err(|e| e.to_string())
    };
    let own = ids_of(&root, name)?;
    edit(0)?;
    fails(
        &root,
        &["start", name],
        &[name, "not a range jailer allocates"],
    )?;
    edit(ids_of(&root, other)?)?;
    fails(&root, &["start", name], &[name, "allocated to it"])?;
    if inspect(&root, name)?["state"] != "created" {
        return Err("a refused start changed the state".into());
    }
    // Put back, it starts.
    edit(own)?;
    ok(&root, &["start", name])?;
    Ok(())
}

fn held_lock() -> Result<(), String> {
    let root = pool_with_template("lock")?;
    let _j = jail(&root, "locked");
    ok(
        &root,
        &["create", "locked", "--template", "base", "--", "/bin/true"],
    )?;
    let f = std::fs::File::open(root.join(".locks/jail-locked.lock")).map_err(|e| e.to_string())?;
    let held = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e.to_string())?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_jailer"))
        .arg("--root")
        .arg(&root)
        .args(["start", "locked"])
        .env("JAILER_LOCK_TIMEOUT", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(s);
        }
        if t.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(held);
    let Some(status) = status else {
        return Err("`jailer start` waited for a held lock for over a minute".into());
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    let me = format!("pid {}", std::process::id());
    if status.success() || !err.contains("still locked") || !err.contains(&me) {
        return Err(format!("start with a held lock: {status}: {err}"));
    }
    Ok(())
}

fn control_characters() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let name = "esc-ctl";
    let _j = jail(&root, name);
    // A title change and a line erase in the jail's command line.
    start_sh(&root, name, &[], "sleep 1000; : '\x1b]0;pwned\x07\x1b[2K'")?;
    for verb in ["ps", "ls"] {
        let args: &[&str] = if verb == "ls" { &["ls"] } else { &["ps", name] };
        let out = ok(&root, args)?;
        let shown = out;
        if shown.contains('\x1b') || shown.contains('\x07') {
            return Err(format!(
                "`jailer {verb}` printed raw control characters: {shown:?}"
            ));
        }
        if !shown.contains("\\x1b]0;pwned\\x07") {
            return Err(format!(
                "`jailer {verb}` does not show the escaped command: {shown:?}"
            ));
        }
    }
    // An error that quotes jail-controlled text.
    let bad = "esc-ctl-2";
    let _k = jail(&root, bad);
    ok(
        &root,
        &["create", bad, "--template", "deb", "--", "/bin/no\x1b[2Kpe"],
    )?;
    let out = jailer(&root, &["start", bad]);
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || err.contains('\x1b') || !err.contains("\\x1b[2Kpe") {
        return Err(format!("start error: {err:?}"));
    }
    Ok(())
}

fn socket_families() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let (deny, allow) = ("esc-sock", "esc-sock-allowed");
    let _j = jail(&root, deny);
    let _k = jail(&root, allow);
    start_sh(&root, deny, &[], "sleep 1000")?;
    start_sh(
        &root,
        allow,
        &["--seccomp-allow", "af_vsock", "--seccomp-allow", "af_alg"],
        "sleep 1000",
    )?;
    let mut reachable = Vec::new();
    for j in [deny, allow] {
        crate::probe::install(&root, j)?;
    }
    for family in ["vsock", "alg"] {
        let (_, denied) = crate::probe::run(&root, deny, &["socket", family]);
        if denied != "EAFNOSUPPORT" {
            return Err(format!("socket({family}) in a default jail: {denied}"));
        }
        let (_, allowed) = crate::probe::run(&root, allow, &["socket", family]);
        if allowed == "ok" {
            reachable.push(family);
        }
    }
    let (_, inet) = crate::probe::run(&root, deny, &["socket", "inet"]);
    if inet != "ok" {
        return Err(format!("socket(inet) in a default jail: {inet}"));
    }
    // The filter, not the kernel, refused: with the families allowed, at
    // least one of them opens on this kernel.
    if reachable.is_empty() {
        return Err("neither vsock nor alg sockets open even when allowed: this test cannot tell the filter from the kernel here".into());
    }
    Ok(())
}

fn masked_proc() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let name = "esc-proc";
    let _j = jail(&root, name);
    start_sh(&root, name, &[], "sleep 1000")?;
    let mounts = sh_ok(&root, name, "cat /proc/self/mountinfo")?;
    let opts_at = |p: &str| -> Option<String> {
        mounts
            .lines()
            .rev()
            .find(|l| l.split(' ').nth(4) == Some(p))
            .and_then(|l| l.split(' ').nth(5).map(str::to_string))
    };
    let exists = |p: &str| sh_ok(&root, name, &format!("test -e {p} && echo y")).is_ok();
    for p in [
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
        "/proc/acpi",
        "/proc/scsi",
        "/sys/firmware",
    ] {
        if exists(p) && opts_at(p).is_none() {
            return Err(format!("{p} is not masked in the jail"));
        }
    }
    let timers = sh_ok(&root, name, "cat /proc/timer_list 2>/dev/null | wc -c")?;
    if timers.trim() != "0" {
        return Err(format!("/proc/timer_list shows {timers} bytes"));
    }
    for p in [
        "/proc/sys",
        "/proc/sysrq-trigger",
        "/proc/irq",
        "/proc/bus",
        "/proc/fs",
    ] {
        if !exists(p) {
            continue;
        }
        match opts_at(p) {
            Some(o) if o.split(',').any(|x| x == "ro") => {}
            other => return Err(format!("{p} in the jail: {other:?}, want read-only")),
        }
    }
    let (code, _, err) = crate::runtime::sh(&root, name, "echo x > /proc/sys/kernel/hostname");
    if code == 0 || !err.contains("Read-only file system") {
        return Err(format!("writing /proc/sys/kernel/hostname: {code:?} {err}"));
    }
    Ok(())
}

fn default_pids() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let name = "esc-pids";
    let _j = jail(&root, name);
    start_sh(&root, name, &[], "sleep 1000")?;
    let rec = inspect(&root, name)?;
    if rec["spec"]["pids"] != 4096 {
        return Err(format!("spec pids: {}", rec["spec"]["pids"]));
    }
    let paths = &rec["runtime"]["cgroup"]["paths"];
    let dir = paths["pids"]
        .as_str()
        .or(paths["unified"].as_str())
        .ok_or_else(|| format!("no pids cgroup in {paths}"))?;
    let max =
        std::fs::read_to_string(Path::new(dir).join("pids.max")).map_err(|e| e.to_string())?;
    if max.trim() != "4096" {
        return Err(format!("pids.max of the jail's cgroup: {max}"));
    }
    Ok(())
}
