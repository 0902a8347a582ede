//! What an operator sees of a jail's end: the OOM note of `start --wait`,
//! the STATUS of `ls`, and JSON with each key once.

use crate::cli::{jailer, ok};
use crate::runtime::jail;
use libtest_mimic::Trial;

pub fn trials() -> Vec<Trial> {
    vec![Trial::test(
        "ls_status::oom_is_said_on_stderr_and_ls_shows_how_jails_ended",
        || crate::check(oom_and_status()),
    )]
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
