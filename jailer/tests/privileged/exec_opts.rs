//! `jailer exec -u USER[:GROUP]`, `-w DIR`, `-e K=V`, and a command given
//! without `--`: the user comes from the jail's own account files (read
//! inside the jail, never through a host path), and a user other than
//! root holds no capability.

use crate::cli::{jailer, ok};
use crate::runtime::{jail, sh_ok, start_sh};
use libtest_mimic::Trial;
use std::path::Path;

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test(
            "exec_opts::exec_as_a_jail_user_holds_no_capability_and_its_groups",
            || crate::check(user_has_no_caps()),
        ),
        Trial::test(
            "exec_opts::exec_user_is_resolved_inside_the_jail_and_a_fifo_cannot_hang_it",
            || crate::check(user_resolved_inside()),
        ),
        Trial::test(
            "exec_opts::exec_workdir_env_and_a_command_without_double_dash",
            || crate::check(workdir_env_no_dashes()),
        ),
    ]
}

/// `jailer exec ARGS..` as (code, stdout, stderr).
fn run(root: &Path, args: &[&str]) -> (i32, String, String) {
    let out = jailer(root, args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A refusal: exit 2 (invalid), one line on stderr containing `needle`,
/// and under `--json` one error document of kind `invalid`.
fn refused(root: &Path, args: &[&str], needle: &str) -> Result<(), String> {
    let (code, out, err) = run(root, args);
    if code != 2 || err.trim_end().lines().count() != 1 || !err.contains(needle) {
        return Err(format!(
            "{args:?}: want exit 2 saying {needle:?}, got {code}: {out}{err}"
        ));
    }
    let mut j = vec!["--json"];
    j.extend_from_slice(args);
    let (code, out, _) = run(root, &j);
    let v: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| format!("{j:?}: not JSON ({e}): {out}"))?;
    if code != 2 || v["error"]["kind"] != "invalid" {
        return Err(format!("{j:?}: want kind invalid, exit 2: {code} {out}"));
    }
    Ok(())
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or("")
        .trim()
        .to_string()
}

fn user_has_no_caps() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let name = "xo-user";
    let _j = jail(&root, name);
    start_sh(&root, name, &[], "exec sleep 1000")?;
    sh_ok(
        &root,
        name,
        "echo 'svc:x:1234:1234::/tmp:/bin/sh' >> /etc/passwd && \
         echo 'svc:x:1234:' >> /etc/group && echo 'extra:x:2345:daemon,svc' >> /etc/group",
    )?;
    let id = ok(&root, &["exec", "-u", "svc", name, "/usr/bin/id"])?;
    if id.trim() != "uid=1234(svc) gid=1234(svc) groups=1234(svc),2345(extra)" {
        return Err(format!("exec -u svc id: {id}"));
    }
    // Every capability set of a non-root user is empty (the bounding set
    // stays the jail's), and no setuid binary gives root back.
    let st = ok(
        &root,
        &["exec", "-u", "svc", name, "/bin/cat", "/proc/self/status"],
    )?;
    for key in ["CapInh:", "CapPrm:", "CapEff:", "CapAmb:"] {
        if status_field(&st, key) != "0000000000000000" {
            return Err(format!("exec -u svc: {key} is not empty:\n{st}"));
        }
    }
    if status_field(&st, "NoNewPrivs:") != "1" {
        return Err(format!("exec -u svc: no_new_privs is not set:\n{st}"));
    }
    let root_st = ok(&root, &["exec", name, "/bin/cat", "/proc/self/status"])?;
    if status_field(&root_st, "CapEff:") == "0000000000000000" {
        return Err(format!(
            "exec as root lost the jail's capabilities:\n{root_st}"
        ));
    }
    // A setuid-root binary (su, from the template) cannot elevate.
    let (code, out, _) = run(
        &root,
        &["exec", "-u", "svc", name, "/bin/su", "-c", "/usr/bin/id -u"],
    );
    if code == 0 && out.trim() == "0" {
        return Err("su as svc became root".to_string());
    }
    // USER:GROUP by number and name; a number the jail's passwd lacks gets
    // group 0 (as podman does).
    let ug = ok(
        &root,
        &[
            "exec",
            "-u",
            "4321:extra",
            name,
            "/bin/sh",
            "-c",
            "echo $(id -u) $(id -g)",
        ],
    )?;
    if ug.trim() != "4321 2345" {
        return Err(format!("exec -u 4321:extra: {ug}"));
    }
    let (n, _, _) = run(
        &root,
        &[
            "exec",
            "-u",
            "7777",
            name,
            "/bin/sh",
            "-c",
            "test $(id -g) = 0",
        ],
    );
    if n != 0 {
        return Err("exec -u 7777 does not get group 0".to_string());
    }
    // What the jail lacks, or what is malformed, is refused as invalid.
    refused(
        &root,
        &["exec", "-u", "nosuch", name, "/bin/true"],
        "no user \"nosuch\" in the jail's /etc/passwd",
    )?;
    refused(
        &root,
        &["exec", "-u", "svc:nogroup-here", name, "/bin/true"],
        "no group \"nogroup-here\" in the jail's /etc/group",
    )?;
    refused(
        &root,
        &["exec", "-u", "70000", name, "/bin/true"],
        "outside the jail's 65536 mapped ids",
    )?;
    refused(
        &root,
        &["exec", "-u", "a:b:c", name, "/bin/true"],
        "is not USER or USER:GROUP",
    )?;
    Ok(())
}

fn user_resolved_inside() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let name = "xo-inside";
    let _j = jail(&root, name);
    start_sh(&root, name, &[], "exec sleep 1000")?;
    // /etc/passwd a symlink climbing far above the jail's root: from the
    // host it would reach the host's /tmp; inside the jail it stays there.
    sh_ok(
        &root,
        name,
        "echo 'inside:x:3456:3456::/:/bin/sh' > /tmp/pw && \
         rm /etc/passwd && ln -s ../../../../../../../../../../tmp/pw /etc/passwd",
    )?;
    let id = ok(&root, &["exec", "-u", "inside", name, "/usr/bin/id", "-u"])?;
    if id.trim() != "3456" {
        return Err(format!("exec -u inside: {id}"));
    }
    // A FIFO as the jail's /etc/group would block a reader: refused at once.
    sh_ok(&root, name, "rm /etc/group && mkfifo /etc/group")?;
    refused(
        &root,
        &["exec", "-u", "inside", name, "/bin/true"],
        "the jail's /etc/group is not a regular file",
    )?;
    Ok(())
}

fn workdir_env_no_dashes() -> Result<(), String> {
    let root = crate::debian_pool()?;
    let name = "xo-wd";
    let _j = jail(&root, name);
    start_sh(&root, name, &["--env", "FROM_SPEC=spec"], "exec sleep 1000")?;
    let pwd = ok(&root, &["exec", "-w", "/var/tmp", name, "/bin/pwd"])?;
    if pwd.trim() != "/var/tmp" {
        return Err(format!("exec -w /var/tmp pwd: {pwd}"));
    }
    let plain = ok(&root, &["exec", name, "/bin/pwd"])?;
    if plain.trim() != "/" {
        return Err(format!("exec pwd without -w: {plain}"));
    }
    refused(
        &root,
        &["exec", "-w", "/no/such/dir", name, "/bin/true"],
        "working directory /no/such/dir in the jail",
    )?;
    refused(
        &root,
        &["exec", "-w", "/etc/hostname", name, "/bin/true"],
        "is not a directory",
    )?;
    refused(
        &root,
        &["exec", "-w", "var/tmp", name, "/bin/true"],
        "is not an absolute path",
    )?;
    // -e over the spec's env, which stays for the rest.
    let env = ok(
        &root,
        &[
            "exec",
            "-e",
            "ONE=1",
            "-e",
            "FROM_SPEC=over",
            name,
            "/bin/sh",
            "-c",
            "echo $ONE $FROM_SPEC",
        ],
    )?;
    if env.trim() != "1 over" {
        return Err(format!("exec -e: {env}"));
    }
    let spec_env = ok(&root, &["exec", name, "/bin/sh", "-c", "echo $FROM_SPEC"])?;
    if spec_env.trim() != "spec" {
        return Err(format!("the spec's env: {spec_env}"));
    }
    refused(
        &root,
        &["exec", "-e", "NOEQUALS", name, "/bin/true"],
        "NOEQUALS",
    )?;
    // Without `--`, everything after the command is the command's, options
    // like exec's own included; with `--` the same.
    let echoed = ok(&root, &["exec", name, "/bin/echo", "-u", "x", "-w", "y"])?;
    if echoed.trim() != "-u x -w y" {
        return Err(format!("exec NAME echo -u x -w y: {echoed}"));
    }
    let dashed = ok(&root, &["exec", name, "--", "/bin/echo", "-e", "a"])?;
    if dashed.trim() != "a" {
        return Err(format!("exec NAME -- echo -e a: {dashed}"));
    }
    Ok(())
}
