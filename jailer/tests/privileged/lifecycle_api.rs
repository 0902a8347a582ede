//! The lifecycle layer as scripts see it through the CLI: every failure
//! under `--json` is one document on stdout with a stable kind and the
//! kind's exit code; verbs that change state print the jail; `run` never
//! removes what it did not create; `stop` of a stopped jail succeeds.

use crate::cli::{jailer, ok};
use crate::runtime::{jail, start_sh};
use libtest_mimic::Trial;
use std::path::Path;

pub fn trials() -> Vec<Trial> {
    let t = |name: &'static str, f: fn() -> Result<(), String>| {
        Trial::test(format!("lifecycle_api::{name}"), move || crate::check(f()))
    };
    vec![
        t(
            "json_errors_are_one_document_with_a_stable_kind_and_exit_code",
            json_errors,
        ),
        t(
            "run_rm_never_removes_a_jail_it_did_not_create",
            run_rm_keeps_others,
        ),
        t(
            "ctrl_c_on_run_rm_reaches_the_jail_and_a_second_stops_it_then_it_is_removed",
            ctrl_c,
        ),
        t(
            "jail_commands_start_with_no_signal_ignored_or_blocked",
            clean_signals,
        ),
        t("exec_racing_stop_says_the_jail_stopped", exec_racing_stop),
        t(
            "stop_and_rm_take_several_names_and_report_each",
            several_names,
        ),
        t(
            "an_interrupted_rm_is_reported_as_one_and_rm_finishes_it",
            interrupted_rm,
        ),
        t(
            "stop_of_a_stopped_jail_succeeds_and_freeze_thaw_print_the_jail",
            stop_stopped,
        ),
        t(
            "first_starts_after_boot_do_not_race_for_the_parent_cgroup",
            parallel_first_starts,
        ),
    ]
}

/// After a boot no `jailer/` group exists; the first jails started at once
/// (systemd starting them all) each make it. On cgroup v2 one of them used
/// to fail with EEXIST (cgroups-rs checks, then makes, each ancestor).
fn parallel_first_starts() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let names: Vec<String> = (1..=8).map(|i| format!("pa-{i}")).collect();
    let _jails: Vec<_> = names.iter().map(|n| jail(&root, n)).collect();
    for n in &names {
        create(&root, n, &["/bin/sleep", "1000"])?;
    }
    // The race is narrow: a few rounds.
    for round in 0..3 {
        // As after a boot, where nothing holds it: an empty `jailer/` (v2)
        // goes; where other jails run, it stays (rmdir refuses), and this
        // round only tests parallel starts.
        let _ = std::fs::remove_dir("/sys/fs/cgroup/jailer");
        let results: Vec<Result<String, String>> = std::thread::scope(|s| {
            let handles: Vec<_> = names
                .iter()
                .map(|n| {
                    let root = &root;
                    s.spawn(move || ok(root, &["start", n]))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("panicked".into())))
                .collect()
        });
        for (n, r) in names.iter().zip(&results) {
            if let Err(e) = r {
                return Err(format!("parallel first start of {n} (round {round}): {e}"));
            }
        }
        let mut stop = vec!["stop", "--timeout", "0"];
        stop.extend(names.iter().map(String::as_str));
        ok(&root, &stop)?;
    }
    Ok(())
}

/// `jailer create NAME --template deb -- COMMAND..`.
fn create(root: &Path, name: &str, command: &[&str]) -> Result<(), String> {
    let mut args = vec!["create", name, "--template", "deb", "--"];
    args.extend_from_slice(command);
    ok(root, &args).map(drop)
}

/// `jailer --json ARGS` that must fail: (exit code, the error document).
fn json_failure(root: &Path, args: &[&str]) -> Result<(i32, serde_json::Value), String> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = jailer(root, &all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() {
        return Err(format!("jailer {all:?} succeeded: {stdout}"));
    }
    let doc: serde_json::Value = serde_json::from_str(&stdout).map_err(|e| {
        format!("jailer {all:?}: stdout is not one JSON document ({e}): {stdout:?}")
    })?;
    Ok((out.status.code().unwrap_or(-1), doc))
}

fn expect_kind(root: &Path, args: &[&str], kind: &str, code: i32) -> Result<(), String> {
    let (got, doc) = json_failure(root, args)?;
    let err = &doc["error"];
    if err["kind"] != kind || got != code || !err["message"].as_str().is_some_and(|m| !m.is_empty())
    {
        return Err(format!(
            "jailer --json {args:?}: exit {got} and {doc}, want kind {kind} and exit {code}"
        ));
    }
    Ok(())
}

fn json_errors() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let _j = jail(&root, "api-a");
    create(&root, "api-a", &["/bin/true"])?;
    expect_kind(&root, &["inspect", "api-nosuch"], "not_found", 3)?;
    expect_kind(&root, &["start", "api-nosuch"], "not_found", 3)?;
    expect_kind(
        &root,
        &["create", "api-x", "--template", "nosuch", "--", "/bin/true"],
        "not_found",
        3,
    )?;
    expect_kind(
        &root,
        &["create", "api-a", "--template", "deb", "--", "/bin/true"],
        "exists",
        4,
    )?;
    expect_kind(&root, &["thaw", "api-a"], "illegal_state", 5)?;
    expect_kind(
        &root,
        &["exec", "api-a", "--", "/bin/true"],
        "illegal_state",
        5,
    )?;
    expect_kind(&root, &["inspect", "Bad/Name"], "invalid", 2)?;
    expect_kind(&root, &["stop", "api-a", "--timeout=-1"], "invalid", 2)?;
    // Refused by the argument parser itself (no value), also one document.
    expect_kind(&root, &["stop", "api-a", "--timeout"], "invalid", 2)?;
    expect_kind(&root, &["frobnicate"], "invalid", 2)?;
    expect_kind(&root, &["kill", "api-a", "--signal", "NOPE"], "invalid", 2)?;
    expect_kind(
        &root,
        &[
            "create",
            "api-y",
            "--template",
            "deb",
            "--memory",
            "lots",
            "--",
            "/bin/true",
        ],
        "invalid",
        2,
    )?;
    // A directory that is no pool.
    let empty = crate::scratch().fresh_plain_dir("api-nopool");
    expect_kind(&empty, &["ls"], "pool_not_ready", 8)?;
    // Without --json the error is one line on stderr and stdout is empty,
    // with the same exit code.
    let out = jailer(&root, &["inspect", "api-nosuch"]);
    if out.status.code() != Some(3) || !out.stdout.is_empty() {
        return Err(format!("inspect of a missing jail without --json: {out:?}"));
    }
    Ok(())
}

fn run_rm_keeps_others() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let _v = jail(&root, "api-victim");
    start_sh(&root, "api-victim", &[], "exec sleep 600")?;
    // A run --rm of the same name with a misspelt template, or with the
    // right one: refused, and the running jail is untouched.
    for template in ["nosuch", "deb"] {
        let out = jailer(
            &root,
            &[
                "run",
                "--rm",
                "-t",
                template,
                "api-victim",
                "--",
                "/bin/true",
            ],
        );
        if out.status.success() {
            return Err(format!("run --rm over a running jail succeeded: {out:?}"));
        }
        let rec = crate::runtime::inspect(&root, "api-victim")?;
        if rec["state"] != "running" {
            return Err(format!(
                "after a refused run --rm (template {template}) the existing jail is {}",
                rec["state"]
            ));
        }
    }
    // A run --rm whose start fails removes the jail it made, nothing else.
    let _f = jail(&root, "api-fails");
    let out = jailer(
        &root,
        &[
            "run",
            "--rm",
            "-t",
            "deb",
            "api-fails",
            "--",
            "/nonexistent",
        ],
    );
    if out.status.success() || root.join("jails/api-fails").exists() {
        return Err(format!("run --rm of a command that cannot start: {out:?}"));
    }
    Ok(())
}

fn stop_stopped() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let _j = jail(&root, "api-s");
    create(&root, "api-s", &["/bin/sleep", "600"])?;
    let out = ok(&root, &["stop", "api-s"])?;
    if !out.contains("not running") {
        return Err(format!("stop of a created jail: {out:?}"));
    }
    ok(&root, &["start", "api-s"])?;
    let frozen: serde_json::Value =
        serde_json::from_str(&ok(&root, &["--json", "freeze", "api-s"])?)
            .map_err(|e| e.to_string())?;
    if frozen["state"] != "frozen" {
        return Err(format!("freeze --json printed {frozen}"));
    }
    let thawed: serde_json::Value = serde_json::from_str(&ok(&root, &["--json", "thaw", "api-s"])?)
        .map_err(|e| e.to_string())?;
    if thawed["state"] != "running" {
        return Err(format!("thaw --json printed {thawed}"));
    }
    ok(&root, &["stop", "api-s", "--timeout", "1"])?;
    let again: serde_json::Value = serde_json::from_str(&ok(&root, &["--json", "stop", "api-s"])?)
        .map_err(|e| e.to_string())?;
    if again["state"] != "stopped" {
        return Err(format!("second stop --json printed {again}"));
    }
    Ok(())
}

fn interrupted_rm() -> Result<(), String> {
    let root = crate::debian_pool()?;
    for (name, rootfs_gone) in [("api-rm-early", false), ("api-rm-late", true)] {
        let _j = jail(&root, name);
        create(&root, name, &["/bin/true"])?;
        // What an rm killed after it began leaves: its marker, and (later
        // on) the rootfs already deleted while the record is still there.
        let dir = root.join("jails").join(name);
        std::fs::write(dir.join("removing"), b"").map_err(|e| e.to_string())?;
        if rootfs_gone {
            let st = std::process::Command::new("btrfs")
                .args(["-q", "subvolume", "delete"])
                .arg(dir.join("rootfs"))
                .status()
                .map_err(|e| e.to_string())?;
            if !st.success() {
                return Err(format!("btrfs subvolume delete: {st}"));
            }
        }
        let ls: serde_json::Value =
            serde_json::from_str(&ok(&root, &["--json", "ls"])?).map_err(|e| e.to_string())?;
        let entry = ls
            .as_array()
            .and_then(|a| a.iter().find(|j| j["name"] == name))
            .ok_or_else(|| format!("{name} not listed: {ls}"))?;
        let why = entry["broken"].as_str().unwrap_or_default();
        if entry["state"] != "broken" || !why.contains("interrupted rm") {
            return Err(format!("an interrupted rm of {name} is listed as {entry}"));
        }
        ok(&root, &["rm", name])?;
        if dir.exists() {
            return Err(format!("rm did not finish the removal of {name}"));
        }
    }
    Ok(())
}

/// Runs `jailer run --rm NAME -- sh -c SCRIPT`, waits for the script to
/// print `ready`, sends the CLI `signals` SIGINTs (0.5 s apart), and returns
/// (exit code, all it printed).
fn run_and_interrupt(
    root: &Path,
    name: &str,
    script: &str,
    signals: usize,
) -> Result<(Option<i32>, String), String> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_jailer"))
        .arg("--root")
        .arg(root)
        .args([
            "run", "--rm", "-t", "deb", name, "--", "/bin/sh", "-c", script,
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut seen = String::new();
    loop {
        match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(l) => {
                seen.push_str(&l);
                seen.push('\n');
                if l == "ready" {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{name} never printed ready: {seen:?}"));
            }
        }
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    for _ in 0..signals {
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).map_err(|e| e.to_string())?;
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let t = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            break st;
        }
        if t.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{name}: the CLI did not exit within 60 s of {signals} SIGINT(s): {seen:?}"
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    while let Ok(l) = rx.recv_timeout(std::time::Duration::from_secs(5)) {
        seen.push_str(&l);
        seen.push('\n');
    }
    Ok((status.code(), seen))
}

fn ctrl_c() -> Result<(), String> {
    let root = crate::debian_pool()?;
    // The jail handles SIGINT: it sees it, and its exit status is the CLI's.
    let _a = jail(&root, "api-int");
    let (code, out) = run_and_interrupt(
        &root,
        "api-int",
        "trap 'echo got-INT; exit 3' INT; echo ready; while :; do sleep 0.1; done",
        1,
    )?;
    if code != Some(3) || !out.contains("got-INT") || root.join("jails/api-int").exists() {
        return Err(format!(
            "run --rm after one SIGINT: exit {code:?}, output {out:?}, jail left: {}",
            root.join("jails/api-int").exists()
        ));
    }
    // The jail ignores SIGINT: the second one stops it (SIGTERM, which a
    // pid 1 without a handler does not act on, then SIGKILL), and --rm
    // still removes it.
    let _b = jail(&root, "api-noint");
    let (code, out) = run_and_interrupt(
        &root,
        "api-noint",
        "trap '' INT; echo ready; while :; do sleep 0.1; done",
        2,
    )?;
    if !matches!(code, Some(137 | 143)) || root.join("jails/api-noint").exists() {
        return Err(format!(
            "run --rm after two SIGINTs: exit {code:?}, output {out:?}, jail left: {}",
            root.join("jails/api-noint").exists()
        ));
    }
    Ok(())
}

fn clean_signals() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let _j = jail(&root, "api-sig");
    start_sh(&root, "api-sig", &[], "exec sleep 600")?;
    // init (pid 1), and a command run by exec.
    let out = crate::runtime::sh_ok(
        &root,
        "api-sig",
        "grep -E '^Sig(Ign|Blk)' /proc/1/status /proc/self/status",
    )?;
    let lines: Vec<&str> = out.lines().collect();
    if lines.len() != 4 || lines.iter().any(|l| !l.ends_with("0000000000000000")) {
        return Err(format!("signals ignored or blocked in the jail: {out}"));
    }
    Ok(())
}

fn exec_racing_stop() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let _j = jail(&root, "api-race");
    create(&root, "api-race", &["/bin/sleep", "600"])?;
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for round in 0..30u64 {
        ok(&root, &["start", "api-race"])?;
        let r = root.clone();
        let exec = std::thread::spawn(move || jailer(&r, &["exec", "api-race", "--", "/bin/true"]));
        // Spread the stop over the exec's whole setup.
        std::thread::sleep(std::time::Duration::from_micros(round * 700));
        ok(&root, &["stop", "api-race", "--timeout", "0"])?;
        let out = exec.join().map_err(|_| "exec thread panicked")?;
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        // Either it ran, or it was killed with the jail, or it says the jail
        // stopped: never what the kernel says of a dying namespace.
        let said = match out.status.code() {
            Some(0) => "ran".to_string(),
            Some(137) => "killed with the jail".to_string(),
            _ if err.contains("is stopped") => "refused: stopped".to_string(),
            code => {
                return Err(format!(
                    "exec racing stop (round {round}): exit {code:?}: {err}"
                ));
            }
        };
        *outcomes.entry(said).or_default() += 1;
    }
    eprintln!("exec racing stop: {outcomes:?}");
    Ok(())
}

fn several_names() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let names = ["api-m1", "api-m2", "api-m3"];
    let _guards: Vec<_> = names.iter().map(|n| jail(&root, n)).collect();
    for n in names {
        // pid 1 without a handler does not act on SIGTERM: each stop needs
        // its SIGKILL.
        start_sh(&root, n, &[], "exec sleep 600")?;
    }
    // One name that is no jail: the others are stopped all the same, the
    // array says which failed, and the exit status is its kind's.
    let out = jailer(
        &root,
        &[
            "--json",
            "stop",
            "--timeout",
            "1",
            "api-m1",
            "api-nosuch",
            "api-m2",
            "api-m3",
        ],
    );
    let docs: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("stop of several: not one JSON document ({e}): {out:?}"))?;
    let arr = docs
        .as_array()
        .ok_or(format!("stop of several printed {docs}"))?;
    let states: Vec<String> = arr
        .iter()
        .map(|d| match d["error"]["kind"].as_str() {
            Some(k) => format!("{}:{k}", d["name"].as_str().unwrap_or("?")),
            None => format!(
                "{}:{}",
                d["spec"]["name"].as_str().unwrap_or("?"),
                d["state"].as_str().unwrap_or("?")
            ),
        })
        .collect();
    let want = [
        "api-m1:stopped",
        "api-nosuch:not_found",
        "api-m2:stopped",
        "api-m3:stopped",
    ];
    if out.status.code() != Some(3) || states != want {
        return Err(format!(
            "stop of several: exit {:?}, {states:?}, want 3 and {want:?}",
            out.status.code()
        ));
    }
    for n in names {
        ok(&root, &["start", n])?;
    }
    let out = ok(
        &root,
        &[
            "rm",
            "--force",
            "--timeout",
            "0",
            "api-m1",
            "api-m2",
            "api-m3",
        ],
    )?;
    for n in names {
        if !out.contains(&format!("removed jail {n}")) || root.join("jails").join(n).exists() {
            return Err(format!("rm --force of several: {out:?}; {n} left"));
        }
    }
    Ok(())
}
