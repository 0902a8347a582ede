//! What an operator sees of a jail's end: the OOM note of `start --wait`,
//! the STATUS of `ls`, and JSON with each key once.

use crate::cli::{jailer, ok};
use crate::runtime::jail;
use libtest_mimic::Trial;

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test(
            "ls_status::oom_is_said_on_stderr_and_ls_shows_how_jails_ended",
            || crate::check(oom_and_status()),
        ),
        Trial::test(
            "ls_status::a_reader_never_shows_an_exit_before_the_monitor_recorded_it",
            || crate::check(exit_not_shown_before_recorded()),
        ),
    ]
}

/// Sends SIGCONT to a stopped process when dropped, so a failing test
/// never leaves a monitor stopped.
struct Continue(i32);

impl Drop for Continue {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0),
            nix::sys::signal::Signal::SIGCONT,
        );
    }
}

/// Between init's death and the monitor's `exit.json` (it reaps init,
/// reads the OOM counter, drains the pipe), a reader that did not wait for
/// the monitor showed `stopped` with no exit code and no OOM kill: CI saw
/// an OOM-killed jail reported as such. The monitor is held stopped here
/// to make that window as long as the test needs.
fn exit_not_shown_before_recorded() -> Result<(), String> {
    use std::time::Duration;
    let root = crate::debian_pool()?;
    let _j = jail(&root, "ls-window");
    crate::runtime::start_sh(
        &root,
        "ls-window",
        &[],
        "while [ ! -e /tmp/go ]; do sleep 0.05; done; exit 7",
    )?;
    let rec = crate::runtime::inspect(&root, "ls-window")?;
    let monitor = rec["runtime"]["monitor"]["pid"]
        .as_i64()
        .ok_or_else(|| format!("no monitor pid: {rec}"))? as i32;
    let init = crate::runtime::init_pid(&root, "ls-window")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .map_err(|e| format!("SIGSTOP monitor {monitor}: {e}"))?;
    let cont = Continue(monitor);
    ok(&root, &["exec", "ls-window", "touch", "/tmp/go"])?;
    // Init exits and stays a zombie: its parent, the monitor, is stopped.
    let zombie = || {
        std::fs::read_to_string(format!("/proc/{init}/stat"))
            .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
    };
    if !crate::runtime::wait_until(Duration::from_secs(10), zombie) {
        return Err("init did not exit".into());
    }
    let reader = {
        let root = root.clone();
        std::thread::spawn(move || crate::runtime::inspect(&root, "ls-window"))
    };
    std::thread::sleep(Duration::from_millis(300));
    drop(cont);
    let rec = reader
        .join()
        .map_err(|_| "inspect thread panicked".to_string())??;
    if rec["state"] != "stopped" || rec["exit_code"] != 7 {
        return Err(format!(
            "inspect while the monitor recorded the exit: {rec}"
        ));
    }
    Ok(())
}

fn oom_and_status() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let (_a, _b) = (jail(&root, "ls-oom"), jail(&root, "ls-ok"));
    ok(
        &root,
        &[
            "create",
            "ls-oom",
            "--template",
            "deb",
            "--memory",
            "8M",
            "--",
            "/usr/bin/perl",
            "-e",
            "$x = 'a' x (256*1024*1024); sleep 100",
        ],
    )?;
    let out = jailer(&root, &["start", "--wait", "ls-oom"]);
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(137)
        || !err.contains("jail ls-oom was killed by the OOM killer at its 8 MiB memory limit")
    {
        return Err(format!("start --wait of an OOM-killed jail: {out:?}"));
    }
    ok(
        &root,
        &["create", "ls-ok", "--template", "deb", "--", "/bin/true"],
    )?;
    ok(&root, &["start", "--wait", "ls-ok"])?;
    let ls = ok(&root, &["ls"])?;
    let line = |n: &str| {
        ls.lines()
            .find(|l| l.starts_with(n))
            .unwrap_or("")
            .to_string()
    };
    if !line("ls-oom ").contains("oom-killed") || !line("ls-ok ").contains("exited 0") {
        return Err(format!("ls STATUS: {ls}"));
    }
    // template ls --json: every key once (the raw text, as a script's
    // parser that keeps the last of a duplicate would not tell).
    let raw = ok(&root, &["--json", "template", "ls"])?;
    let names = raw.matches("\"name\"").count();
    let templates = serde_json::from_str::<serde_json::Value>(&raw)
        .map_err(|e| e.to_string())?
        .as_array()
        .map_or(0, Vec::len);
    if names != templates {
        return Err(format!("template ls --json repeats \"name\": {raw}"));
    }
    Ok(())
}
