//! The restart policy (`--restart`), kept by the jail's monitor: how many
//! times it starts the command again, what every verb shows meanwhile, and
//! that `stop` ends it whatever it is doing.

use crate::cli::{jailer, ok};
use crate::runtime::{create, init_pid, inspect, jail, wait_until};
use libtest_mimic::Trial;
use std::path::Path;
use std::time::Duration;

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test(
            "restart::on_failure_n_restarts_n_times_and_start_wait_reports_the_last_exit",
            || crate::check(on_failure_n()),
        ),
        Trial::test("restart::on_failure_does_not_restart_a_clean_exit", || {
            crate::check(clean_exit())
        }),
        Trial::test(
            "restart::always_restarts_a_killed_jail_and_stop_ends_the_policy_even_in_backoff",
            || crate::check(always_until_stop()),
        ),
        Trial::test(
            "restart::invalid_restart_policies_are_refused_at_create",
            || crate::check(invalid_policies()),
        ),
    ]
}

fn state(root: &Path, name: &str) -> String {
    inspect(root, name)
        .ok()
        .and_then(|v| v["state"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn restarts(root: &Path, name: &str) -> i64 {
    inspect(root, name)
        .ok()
        .and_then(|v| v["restarts"].as_i64())
        .unwrap_or(-1)
}

/// The jails table's row for `name`, from `jailer query`.
fn table_row(root: &Path, name: &str) -> Result<serde_json::Value, String> {
    let q = format!("SELECT state, restart_policy, restarts FROM jails WHERE name = '{name}'");
    let out = ok(root, &["--json", "query", &q])?;
    let v: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| format!("query: {e}: {out}"))?;
    Ok(v[0].clone())
}

/// No monitor of the jail is left: none holds its lock (a monitor holds it
/// for exactly its life; its pid may linger as a zombie of whoever reaps).
fn monitor_gone(root: &Path, name: &str) -> Result<(), String> {
    let id = inspect(root, name)?["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let dir = format!("/run/jailer/{id}");
    if !Path::new(&dir).join("monitor.lock").is_file() {
        return Err(format!("no monitor lock of {name} in {dir}"));
    }
    if jailer::record::monitor_holds_lock(Path::new(&dir)) {
        return Err(format!(
            "a monitor of {name} still holds its lock after stop"
        ));
    }
    Ok(())
}

fn on_failure_n() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let name = "rs-onfail";
    let _j = jail(&root, name);
    create(
        &root,
        name,
        &["--restart", "on-failure:2"],
        &["/bin/sh", "-c", "echo run; exit 3"],
    )?;
    // --wait waits until the policy gives up, and exits as the last run did.
    let out = jailer(&root, &["start", "--wait", name]);
    if out.status.code() != Some(3) {
        return Err(format!("start --wait of on-failure:2: {out:?}"));
    }
    let logs = ok(&root, &["logs", name])?;
    let runs = logs.lines().filter(|l| *l == "run").count();
    if runs != 3 {
        return Err(format!(
            "on-failure:2 ran the command {runs} times, not 3:\n{logs}"
        ));
    }
    if !logs.contains("its command exited 3; restart 2 (on-failure:2)") {
        return Err(format!("the log does not say why it restarted:\n{logs}"));
    }
    let v = inspect(&root, name)?;
    if v["state"] != "stopped" || v["restarts"] != 2 || v["exit_code"] != 3 {
        return Err(format!("inspect after on-failure:2: {v}"));
    }
    let ls = ok(&root, &["ls"])?;
    if !ls
        .lines()
        .any(|l| l.starts_with(name) && l.contains("exited 3") && l.contains("2 restarts"))
    {
        return Err(format!("ls does not show the restarts:\n{ls}"));
    }
    let row = table_row(&root, name)?;
    if row["restart_policy"] != "on-failure:2" || row["restarts"] != 2 {
        return Err(format!("jails table: {row}"));
    }
    // A new start counts from 0 again.
    ok(&root, &["start", "--wait", name]).ok();
    if restarts(&root, name) != 2 {
        return Err(format!(
            "a second start --wait: restarts {}",
            restarts(&root, name)
        ));
    }
    Ok(())
}

fn clean_exit() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let name = "rs-clean";
    let _j = jail(&root, name);
    create(
        &root,
        name,
        &["--restart", "on-failure"],
        &["/bin/sh", "-c", "echo once"],
    )?;
    ok(&root, &["start", "--wait", name])?;
    let logs = ok(&root, &["logs", name])?;
    if logs.lines().filter(|l| *l == "once").count() != 1 || restarts(&root, name) != 0 {
        return Err(format!("a clean exit was restarted:\n{logs}"));
    }
    Ok(())
}

fn always_until_stop() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let name = "rs-always";
    let _j = jail(&root, name);
    create(
        &root,
        name,
        &["--restart", "always"],
        &["/bin/sleep", "1000"],
    )?;
    ok(&root, &["start", name])?;
    let first = init_pid(&root, name)?;
    // Killed from outside: always starts it again, as a new init.
    ok(&root, &["kill", "--signal", "KILL", name])?;
    let restarted = wait_until(Duration::from_secs(20), || {
        restarts(&root, name) == 1
            && state(&root, name) == "running"
            && init_pid(&root, name).is_ok_and(|p| p != first)
    });
    if !restarted {
        return Err(format!(
            "not restarted after SIGKILL: {:?}",
            inspect(&root, name)
        ));
    }
    let second = init_pid(&root, name)?;
    // stop ends the policy: the jail stays stopped, its monitor is gone.
    ok(&root, &["stop", "--timeout", "1", name])?;
    let v = inspect(&root, name)?;
    if v["state"] != "stopped" || Path::new(&format!("/proc/{second}")).exists() {
        return Err(format!("after stop: {v}"));
    }
    monitor_gone(&root, name)?;
    // In backoff: a command that fails at once is `restarting` between
    // runs; verbs say so; stop ends it there too.
    ok(&root, &["rm", name])?;
    create(&root, name, &["--restart", "always"], &["/bin/false"])?;
    ok(&root, &["start", name])?;
    if !wait_until(Duration::from_secs(20), || {
        state(&root, name) == "restarting" && restarts(&root, name) >= 3
    }) {
        return Err(format!("never restarting: {:?}", inspect(&root, name)));
    }
    let exec = jailer(&root, &["--json", "exec", name, "/bin/true"]);
    let err: serde_json::Value = serde_json::from_slice(&exec.stdout).unwrap_or_default();
    if exec.status.code() != Some(5) || err["error"]["kind"] != "illegal_state" {
        return Err(format!("exec in a restarting jail: {exec:?}"));
    }
    let rm = jailer(&root, &["rm", name]);
    if rm.status.code() != Some(5) {
        return Err(format!("rm of a restarting jail without --force: {rm:?}"));
    }
    let row = table_row(&root, name)?;
    if row["state"] != "restarting" && row["state"] != "running" {
        return Err(format!("jails table while restarting: {row}"));
    }
    let stopped = ok(&root, &["--json", "stop", name])?;
    let sv: serde_json::Value = serde_json::from_str(&stopped).map_err(|e| e.to_string())?;
    if sv["state"] != "stopped" || sv["was_running"] != true {
        return Err(format!("stop of a restarting jail: {stopped}"));
    }
    let n = restarts(&root, name);
    // Nothing restarts it any more: no monitor holds its lock, so every
    // look derives stopped.
    monitor_gone(&root, name)?;
    if state(&root, name) != "stopped" || restarts(&root, name) != n {
        return Err(format!("after stop: {:?}", inspect(&root, name)));
    }
    ok(&root, &["rm", "--force", name])?;
    Ok(())
}

fn invalid_policies() -> Result<(), String> {
    let root = crate::debian_pool()?;
    for bad in ["sometimes", "on-failure:0", "on-failure:x", "always:3", ""] {
        let out = jailer(
            &root,
            &[
                "--json",
                "create",
                "rs-bad",
                "--template",
                "deb",
                "--restart",
                bad,
                "--",
                "/bin/true",
            ],
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        if out.status.code() != Some(2)
            || v["error"]["kind"] != "invalid"
            || !msg.contains("invalid restart policy")
        {
            return Err(format!("--restart {bad:?}: {out:?}"));
        }
    }
    // run --rm would wait forever for an `always` jail.
    let out = jailer(
        &root,
        &[
            "--json",
            "run",
            "--rm",
            "-t",
            "deb",
            "--restart",
            "always",
            "rs-bad",
            "--",
            "/bin/true",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    if out.status.code() != Some(2) || v["error"]["kind"] != "invalid" {
        return Err(format!("run --rm --restart always: {out:?}"));
    }
    if Path::new(&root.join("jails/rs-bad")).exists() {
        return Err("a refused create left a jail".into());
    }
    Ok(())
}
