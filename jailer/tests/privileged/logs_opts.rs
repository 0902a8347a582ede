//! `jailer logs --tail N` across a rotation, `--since` to the second, and
//! a jail that has never run (`logs` says so, `logs -f` waits for it).

use crate::cli::{jailer, ok};
use crate::runtime::{create, jail, wait_until};
use libtest_mimic::Trial;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test(
            "logs_opts::tail_spans_the_rotation_and_a_never_run_jail_says_so",
            || crate::check(tail_and_never_run()),
        ),
        Trial::test(
            "logs_opts::since_shows_only_output_from_that_second_on",
            || crate::check(since_second()),
        ),
        Trial::test(
            "logs_opts::follow_of_a_never_run_jail_waits_for_its_start_and_ends_with_it",
            || crate::check(follow_waits()),
        ),
    ]
}

fn since_second() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let name = "lo-since";
    let _j = jail(&root, name);
    create(
        &root,
        name,
        &[],
        &[
            "/bin/sh",
            "-c",
            "echo early-1; echo early-2; sleep 4; echo late-1; echo late-2; exec sleep 1000",
        ],
    )?;
    ok(&root, &["start", name])?;
    if !wait_until(Duration::from_secs(20), || {
        ok(&root, &["logs", name]).is_ok_and(|l| l.contains("early-2"))
    }) {
        return Err("no early output".into());
    }
    // The next whole second after early output was seen: after it, before
    // the late output (4 s after the early).
    let seen = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let mid = humantime::format_rfc3339(UNIX_EPOCH + Duration::from_secs(seen + 1)).to_string();
    if !wait_until(Duration::from_secs(20), || {
        ok(&root, &["logs", name]).is_ok_and(|l| l.contains("late-2"))
    }) {
        return Err("no late output".into());
    }
    let since = ok(&root, &["logs", name, "--since", &mid])?;
    if since != "late-1\nlate-2\n" {
        return Err(format!("logs --since {mid}: {since:?}"));
    }
    let all = ok(&root, &["logs", name, "--since", "1h"])?;
    if !all.starts_with("early-1\nearly-2\n") || !all.contains("late-2") {
        return Err(format!("logs --since 1h: {all:?}"));
    }
    let future = ok(&root, &["logs", name, "--since", "2099-01-01T00:00:00Z"])?;
    if !future.is_empty() {
        return Err(format!("logs --since the future: {future:?}"));
    }
    Ok(())
}

fn follow_waits() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let name = "lo-follow";
    let _j = jail(&root, name);
    create(&root, name, &[], &["/bin/sh", "-c", "echo hello-follow"])?;
    let mut f = Command::new(env!("CARGO_BIN_EXE_jailer"))
        .arg("--root")
        .arg(&root)
        .args(["logs", "-f", name])
        .env_remove("JAILER_ROOT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    // It waits (still running) for a jail that has not run.
    std::thread::sleep(Duration::from_millis(300));
    let waiting = f.try_wait().map_err(|e| e.to_string())?.is_none();
    ok(&root, &["start", name])?;
    let ended = wait_until(Duration::from_secs(30), || {
        f.try_wait().ok().flatten().is_some()
    });
    if !ended {
        let _ = f.kill();
    }
    let out = f.wait_with_output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !waiting
        || !ended
        || !out.status.success()
        || stdout != "hello-follow\n"
        || !stderr.contains("has not run yet; waiting for it to start")
    {
        return Err(format!(
            "logs -f of a never-run jail (waiting {waiting}, ended {ended}): {out:?}"
        ));
    }
    Ok(())
}

fn tail_and_never_run() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let _j = jail(&root, "lo-tail");
    create(
        &root,
        "lo-tail",
        &["--log-size", "4K"],
        &[
            "/bin/sh",
            "-c",
            "i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done",
        ],
    )?;
    // Never started: said on stderr, nothing on stdout.
    let out = jailer(&root, &["logs", "lo-tail"]);
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !out.stdout.is_empty() || !err.contains("has not run yet") {
        return Err(format!("logs of a never-run jail: {out:?}"));
    }
    ok(&root, &["start", "--wait", "lo-tail"])?;
    if !wait_until(Duration::from_secs(10), || {
        root.join("jails/lo-tail/console.log.1").exists()
    }) {
        return Err("the 4K log never rotated".into());
    }
    // The last lines, whichever file they are in, and no more.
    let tail = ok(&root, &["logs", "lo-tail", "--tail", "3"])?;
    if tail != "line-1997\nline-1998\nline-1999\n" {
        return Err(format!("logs --tail 3: {tail:?}"));
    }
    // More lines than the current file holds: the rotated one supplies them
    // in order.
    let current = std::fs::read_to_string(root.join("jails/lo-tail/console.log"))
        .map_err(|e| e.to_string())?;
    let n = current.lines().count() + 5;
    let tail = ok(&root, &["logs", "lo-tail", "--tail", &n.to_string()])?;
    let lines: Vec<&str> = tail.lines().collect();
    let want: Vec<String> = (2000 - n..2000).map(|i| format!("line-{i}")).collect();
    if lines != want {
        return Err(format!(
            "logs --tail {n}: got {} lines from {:?} to {:?}",
            lines.len(),
            lines.first(),
            lines.last()
        ));
    }
    Ok(())
}
