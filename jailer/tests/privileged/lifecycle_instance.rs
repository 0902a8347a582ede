//! The record never lies (issue 11, items 1-4): a jail's state comes from
//! what holds it (its instance's monitor, init and cgroups), so a killed
//! `start`, a killed monitor, a start racing the last instance's cleanup or
//! a full pool never leave a jail running untracked, twice, or half
//! removed.

use crate::cli::{jailer, ok};
use crate::runtime::jail;
use libtest_mimic::Trial;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn trials() -> Vec<Trial> {
    let t = |name: &'static str, f: fn() -> Result<(), String>| {
        Trial::test(format!("lifecycle_instance::{name}"), move || {
            crate::check(f())
        })
    };
    vec![
        t(
            "killed_start_never_leaves_an_untracked_or_second_instance",
            killed_start,
        ),
        t(
            "parallel_starts_of_a_short_jail_lose_no_instance",
            parallel_starts,
        ),
        t(
            "rm_after_a_killed_monitor_leaves_no_process_or_cgroup",
            rm_after_killed_monitor,
        ),
        t(
            "freeze_thaw_stop_on_a_full_pool_work_and_ls_tells_the_truth",
            full_pool,
        ),
    ]
}

fn e(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// `jails/NAME/jail.json`'s `id`.
fn jail_id(root: &Path, name: &str) -> Result<String, String> {
    let text =
        std::fs::read_to_string(root.join("jails").join(name).join("jail.json")).map_err(e)?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(e)?;
    v["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no id in {text}"))
}

/// Every cgroup directory of the jail (`jailer/NAME-ID12*`), in the v2
/// hierarchy and in every v1 one, found by walking `/sys/fs/cgroup`.
fn cgroup_dirs(name: &str, id: &str) -> Vec<PathBuf> {
    let prefix = format!("{name}-{}", &id[..12]);
    let root = Path::new("/sys/fs/cgroup");
    let mut hierarchies = vec![root.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(root) {
        for d in rd.flatten() {
            if d.file_type().is_ok_and(|t| t.is_dir()) {
                hierarchies.push(d.path());
            }
        }
    }
    let mut out = Vec::new();
    for h in hierarchies {
        if let Ok(rd) = std::fs::read_dir(h.join("jailer")) {
            for d in rd.flatten() {
                if d.file_name().to_string_lossy().starts_with(&prefix) {
                    out.push(d.path());
                }
            }
        }
    }
    out
}

/// The pids in the jail's cgroups, every hierarchy.
fn cgroup_procs(name: &str, id: &str) -> Vec<i32> {
    let mut out: Vec<i32> = cgroup_dirs(name, id)
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next().map(str::to_string))
        })
        .is_some_and(|st| st != "Z" && st != "X")
}

/// The jail's inits: `comm` processes in its cgroups.
fn inits(name: &str, id: &str, comm_name: &str) -> Vec<i32> {
    cgroup_procs(name, id)
        .into_iter()
        .filter(|p| comm(*p) == comm_name && alive(*p))
        .collect()
}

/// `jailer-monitor` processes whose command line is a start of this jail
/// in this pool.
fn monitors(root: &Path, name: &str) -> Vec<i32> {
    let mut out = Vec::new();
    let root = root.to_string_lossy();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for d in rd.flatten() {
            let Some(pid) = d.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if comm(pid) != "jailer-monitor" || !alive(pid) {
                continue;
            }
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<String> = cmd
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if args.iter().any(|a| *a == root) && args.last().is_some_and(|a| a == name) {
                out.push(pid);
            }
        }
    }
    out
}

fn inspect(root: &Path, name: &str) -> Result<serde_json::Value, String> {
    let out = ok(root, &["inspect", name])?;
    serde_json::from_str(&out).map_err(|x| format!("inspect: {x}: {out}"))
}

fn state(root: &Path, name: &str) -> Result<String, String> {
    Ok(inspect(root, name)?["state"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// Polls `f` until it holds (bounded: the bound only keeps a broken build
/// from hanging the run, it is not what the test asserts).
fn eventually(what: &str, mut f: impl FnMut() -> bool) -> Result<(), String> {
    let t = Instant::now();
    while !f() {
        if t.elapsed() > Duration::from_secs(30) {
            return Err(format!("{what}: still not so after 30 s"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Nothing of the jail is left: no process in, no directory of, any of
/// its cgroups, and no monitor.
fn nothing_left(root: &Path, name: &str, id: &str) -> Result<(), String> {
    let dirs = cgroup_dirs(name, id);
    let procs = cgroup_procs(name, id);
    let mons = monitors(root, name);
    if !dirs.is_empty() || !procs.is_empty() || !mons.is_empty() {
        return Err(format!(
            "{name}: left over: cgroups {dirs:?}, processes {procs:?}, monitors {mons:?}"
        ));
    }
    Ok(())
}

/// SIGKILL of `start` at increasing delays, 0 ms on in 0.25 ms steps, then
/// growing by an eighth (so a slow lane, such as the VM's emulated cpus,
/// is covered in a bounded number of kills), until starts complete before
/// the kill: after each, a jail whose init runs is
/// shown running, a second start never makes a second instance, and a
/// stop leaves nothing.
fn killed_start() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let name = "li-kill";
    let _g = jail(&root, name);
    ok(
        &root,
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
    let id = jail_id(&root, name)?;
    let mut completed = 0;
    let mut delay = 0u64;
    let mut kills = 0;
    while completed < 3 && delay < 2_000_000 {
        kills += 1;
        let mut child = Command::new(env!("CARGO_BIN_EXE_jailer"))
            .arg("--root")
            .arg(&root)
            .args(["start", name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(e)?;
        std::thread::sleep(Duration::from_micros(delay));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let status = child.wait().map_err(e)?;
        if status.success() {
            completed += 1;
        }
        // A jail whose init runs is never shown as anything but running.
        let running_inits = inits(name, &id, "sleep");
        let st = state(&root, name)?;
        if !running_inits.is_empty() && st != "running" {
            return Err(format!(
                "start killed after {delay} us: init {running_inits:?} runs, but the jail is {st}"
            ));
        }
        // A second start runs the jail once, never twice.
        let again = jailer(&root, &["start", name]);
        let err = String::from_utf8_lossy(&again.stderr).into_owned();
        if !again.status.success() && !err.contains("already running") {
            return Err(format!(
                "start after a start killed at {delay} us: {err} (exit {:?})",
                again.status.code()
            ));
        }
        let i = inits(name, &id, "sleep");
        let m = monitors(&root, name);
        if i.len() != 1 || m.len() != 1 || state(&root, name)? != "running" {
            return Err(format!(
                "start killed after {delay} us, then start: inits {i:?}, monitors {m:?}, state {}",
                state(&root, name)?
            ));
        }
        ok(&root, &["stop", "--timeout", "0", name])?;
        if state(&root, name)? != "stopped" {
            return Err(format!("after stop: {}", state(&root, name)?));
        }
        nothing_left(&root, name, &id)?;
        delay += (delay / 8).max(250);
    }
    if completed == 0 {
        return Err("no start completed before its kill within 2 s".into());
    }
    eprintln!("killed starts: {kills} kill points up to {delay} us, {completed} completed first");
    ok(&root, &["rm", name])?;
    nothing_left(&root, name, &id)
}

/// Three parallel loops of 20 `start --wait` of a jail whose command runs
/// 50 ms: each start either ran its own instance to exit 0 or was refused
/// as already running; none is killed by another instance's cleanup.
fn parallel_starts() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let name = "li-par";
    let _g = jail(&root, name);
    ok(
        &root,
        &[
            "create",
            name,
            "--template",
            "deb",
            "--",
            "/bin/sh",
            "-c",
            "echo begin; sleep 0.05; echo end",
        ],
    )?;
    let id = jail_id(&root, name)?;
    let loops: Vec<_> = (0..3)
        .map(|_| {
            let root = root.clone();
            std::thread::spawn(move || -> Result<u32, String> {
                let mut ran = 0;
                for _ in 0..20 {
                    let out = jailer(&root, &["start", "--wait", name]);
                    let err = String::from_utf8_lossy(&out.stderr).into_owned();
                    match out.status.code() {
                        Some(0) => ran += 1,
                        // Refused while another instance runs (the
                        // wording of older versions too).
                        _ if err.contains("already running")
                            || err.contains("is running: cannot start") => {}
                        c => return Err(format!("start --wait: exit {c:?}: {err}")),
                    }
                }
                Ok(ran)
            })
        })
        .collect();
    let mut ran = 0;
    for l in loops {
        ran += l
            .join()
            .map_err(|_| "a start loop panicked".to_string())??;
    }
    let logs = ok(&root, &["logs", name])?;
    let begins = logs.lines().filter(|l| *l == "begin").count();
    let ends = logs.lines().filter(|l| *l == "end").count();
    if ran == 0 || begins != ran as usize || ends != ran as usize {
        return Err(format!(
            "{ran} starts ran to exit 0, the log has {begins} begin and {ends} end lines"
        ));
    }
    eprintln!("parallel starts: {ran} of 60 ran, the others were refused as already running");
    let rec = inspect(&root, name)?;
    if rec["state"] != "stopped" || rec["exit_code"] != 0 {
        return Err(format!("after the loops: {rec}"));
    }
    nothing_left(&root, name, &id)
}

/// A killed monitor (the jail frozen or not): `rm` refuses or removes, `rm
/// --force` removes, and nothing is left: no process, no cgroup directory
/// in any hierarchy, the jail's directory gone (nothing pins the pool).
fn rm_after_killed_monitor() -> Result<(), String> {
    let root = crate::debian_pool()?;
    for frozen in [false, true] {
        let name = if frozen { "li-rm-frozen" } else { "li-rm" };
        let _g = jail(&root, name);
        ok(
            &root,
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
        let id = jail_id(&root, name)?;
        ok(&root, &["start", name])?;
        if frozen {
            ok(&root, &["freeze", name])?;
        }
        let rec = inspect(&root, name)?;
        let monitor = rec["runtime"]["monitor"]["pid"].as_i64().unwrap_or(0) as i32;
        let init = rec["runtime"]["init"]["pid"].as_i64().unwrap_or(0) as i32;
        if monitor <= 0 || init <= 0 {
            return Err(format!("{name}: no runtime: {rec}"));
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(monitor),
            nix::sys::signal::Signal::SIGKILL,
        )
        .map_err(e)?;
        eventually("the monitor dies", || !alive(monitor))?;
        // While its init lives the jail is not stopped, and plain rm
        // either refuses or leaves nothing.
        let st = state(&root, name)?;
        let want = if frozen { "frozen" } else { "running" };
        if alive(init) && st != want {
            return Err(format!(
                "{name}: monitor killed, init {init} alive, state {st}"
            ));
        }
        if !frozen {
            // Init dies with its monitor; the jail then reads stopped, with
            // a finish time although no monitor recorded one.
            eventually("init dies with its monitor", || !alive(init))?;
            let rec = inspect(&root, name)?;
            if rec["state"] != "stopped" || rec["finished_at"].is_null() {
                return Err(format!("{name}: monitor and init dead: {rec}"));
            }
        }
        let rm = jailer(&root, &["rm", name]);
        if rm.status.success() {
            if alive(init) {
                return Err(format!("{name}: rm exited 0 and left init {init}"));
            }
        } else {
            ok(&root, &["rm", "--force", name])?;
        }
        if alive(init) {
            return Err(format!("{name}: rm --force left init {init}"));
        }
        nothing_left(&root, name, &id)?;
        if root.join("jails").join(name).exists() {
            return Err(format!("{name}: its directory is left"));
        }
    }
    Ok(())
}

/// `jailer ARGS` with a bound (a verb hanging in the freezer fails the
/// test instead of hanging the run): (exit code, stderr).
fn bounded(root: &Path, args: &[&str]) -> Result<(Option<i32>, String), String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jailer"))
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(e)?;
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().map_err(e)? {
            let mut err = String::new();
            if let Some(mut p) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut p, &mut err);
            }
            return Ok((s.code(), err));
        }
        if t.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("jailer {args:?} hung for 30 s"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// On a pool filled from the host: freeze, thaw and stop work, exit 0, and
/// `ls`/`inspect` say what the kernel says after each; exec in the frozen
/// jail is refused (it does not hang in the freezer).
fn full_pool() -> Result<(), String> {
    let rootfs = std::env::var("JAILER_TEST_ROOTFS").ok();
    let dir = crate::scratch().fresh_plain_dir("li-full");
    let pool = crate::cli::ImagePool {
        root: dir.join("pool"),
        image: dir.join("pool.img"),
    };
    let root = &pool.root;
    ok(root, &["init", "--size", "1G"])?;
    match &rootfs {
        Some(t) => ok(root, &["template", "import", "deb", t])?,
        None => {
            let shared = crate::debian_pool()?.join("templates/deb/rootfs");
            ok(
                root,
                &["template", "import", "deb", &shared.to_string_lossy()],
            )?
        }
    };
    let name = "li-full";
    let _j = jail(root, name);
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
    let id = jail_id(root, name)?;
    ok(root, &["start", name])?;
    let fill = root.join("fill");
    let _fill = crate::cli::RemoveOnDrop(fill.clone());
    let out = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", fill.display()))
        .args(["bs=1M", "conv=fsync"])
        .output()
        .map_err(e)?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !err.contains("No space left") {
        return Err(format!("filling the pool: {err}"));
    }
    let synced = Command::new("sync")
        .arg("-f")
        .arg(root)
        .status()
        .map_err(e)?;
    if !synced.success() {
        return Err(format!("sync -f {}: {synced}", root.display()));
    }
    let ls_state = |root: &Path| -> Result<String, String> {
        let ls = ok(root, &["ls"])?;
        Ok(ls
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_default()
            .to_string())
    };
    let (code, err) = bounded(root, &["freeze", name])?;
    if code != Some(0) {
        return Err(format!("freeze on a full pool: exit {code:?}: {err}"));
    }
    if state(root, name)? != "frozen" || !ls_state(root)?.contains("frozen") {
        return Err(format!("after freeze: {}", ls_state(root)?));
    }
    let (code, err) = bounded(root, &["exec", name, "--", "/bin/true"])?;
    if code == Some(0) || !err.contains("frozen") {
        return Err(format!("exec in a frozen jail: exit {code:?}: {err}"));
    }
    let (code, err) = bounded(root, &["thaw", name])?;
    if code != Some(0) {
        return Err(format!("thaw on a full pool: exit {code:?}: {err}"));
    }
    if state(root, name)? != "running" || !ls_state(root)?.contains("running") {
        return Err(format!("after thaw: {}", ls_state(root)?));
    }
    let (code, err) = bounded(root, &["exec", name, "--", "/bin/true"])?;
    if code != Some(0) {
        return Err(format!("exec after thaw: exit {code:?}: {err}"));
    }
    let (code, err) = bounded(root, &["stop", "--timeout", "1", name])?;
    if code != Some(0) {
        return Err(format!("stop on a full pool: exit {code:?}: {err}"));
    }
    let rec = inspect(root, name)?;
    if rec["state"] != "stopped" || rec["finished_at"].is_null() {
        return Err(format!("after stop: {rec}"));
    }
    nothing_left(root, name, &id)
}
