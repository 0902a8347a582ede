//! `jailer logs --tail N` across a rotation, and a jail that has never run.

use crate::cli::{jailer, ok};
use crate::runtime::{jail, wait_until};
use libtest_mimic::Trial;
use std::time::Duration;

pub fn trials() -> Vec<Trial> {
    vec![Trial::test(
        "logs_opts::tail_spans_the_rotation_and_a_never_run_jail_says_so",
        || crate::check(tail_and_never_run()),
    )]
}

fn tail_and_never_run() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let _j = jail(&root, "lo-tail");
    ok(
        &root,
        &[
            "create",
            "lo-tail",
            "--template",
            "deb",
            "--log-size",
            "4K",
            "--",
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
