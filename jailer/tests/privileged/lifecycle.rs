//! The lifecycle under faults (issue 11, the parts done so far): output
//! into a closed pipe or a full disk, verbs on names that are not jails,
//! a pool that was unmounted, and `init` on an image still in use after a
//! lazy unmount.

use crate::cli::{fails, jailer, loops_backing, ok, pool_with_template, ImagePool};
use crate::runtime::jail;
use libtest_mimic::Trial;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn trials() -> Vec<Trial> {
    let t = |name: &'static str, f: fn() -> Result<(), String>| {
        Trial::test(format!("lifecycle::{name}"), move || crate::check(f()))
    };
    vec![
        t(
            "ls_into_a_closed_pipe_exits_quietly_and_into_a_full_disk_fails_cleanly",
            closed_pipe,
        ),
        t(
            "verbs_on_missing_jails_leave_no_lock_and_an_unmounted_pool_is_not_ready",
            missing_and_unmounted,
        ),
    ]
}

/// Runs jailer with stdout `out`: (exit code, stderr).
fn with_stdout(root: &Path, args: &[&str], out: Stdio) -> Result<(Option<i32>, String), String> {
    let o = Command::new(env!("CARGO_BIN_EXE_jailer"))
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| e.to_string())?;
    Ok((
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    ))
}

fn closed_pipe() -> Result<(), String> {
    let root = pool_with_template("pipe")?;
    let names = ["pipe-a", "pipe-b", "pipe-c"];
    let _guards: Vec<_> = names.iter().map(|n| jail(&root, n)).collect();
    for n in names {
        ok(
            &root,
            &["create", n, "--template", "base", "--", "/bin/true"],
        )?;
    }
    // `logs` needs output to write into the pipe: a console log as a run
    // leaves it (the base template has nothing to run; a jail that never
    // ran says so on stderr instead).
    std::fs::write(root.join("jails/pipe-a/console.log"), b"some output\n")
        .map_err(|e| e.to_string())?;
    for args in [
        &["ls"][..],
        &["template", "ls"],
        &["inspect", "pipe-a"],
        &["logs", "pipe-a"],
    ] {
        // A pipe whose reader is gone before jailer writes: EPIPE at once.
        let (r, w) = nix::unistd::pipe().map_err(|e| e.to_string())?;
        drop(r);
        let (code, err) = with_stdout(&root, args, Stdio::from(w))?;
        if code != Some(0) || !err.is_empty() {
            return Err(format!(
                "jailer {args:?} into a closed pipe: exit {code:?}, stderr {err:?}"
            ));
        }
    }
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .map_err(|e| e.to_string())?;
    let (code, err) = with_stdout(&root, &["ls"], Stdio::from(full))?;
    if code != Some(1)
        || err.contains("panicked")
        || !err.contains("cannot write the output")
        || err.trim_end().lines().count() != 1
    {
        return Err(format!(
            "jailer ls > /dev/full: exit {code:?}, stderr {err:?}"
        ));
    }
    Ok(())
}

fn lock_files(root: &Path) -> Vec<String> {
    std::fs::read_dir(root.join(".locks"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn missing_and_unmounted() -> Result<(), String> {
    let dir = crate::scratch().fresh_plain_dir("lazy");
    let pool = ImagePool {
        root: dir.join("pool"),
        image: dir.join("pool.img"),
    };
    let root = &pool.root;
    ok(root, &["init", "--size", "512M"])?;
    crate::cli::import_base(root, "lazy")?;
    ok(
        root,
        &["create", "kept", "--template", "base", "--", "/bin/true"],
    )?;
    // Every verb on a name that is no jail says so and leaves no lock.
    let before = lock_files(root);
    for verb in [
        &["start", "nosuch"][..],
        &["stop", "nosuch"],
        &["kill", "nosuch"],
        &["freeze", "nosuch"],
        &["thaw", "nosuch"],
        &["exec", "nosuch", "--", "/bin/true"],
        &["logs", "nosuch"],
        &["inspect", "nosuch"],
        &["rm", "nosuch"],
        &["ps", "nosuch"],
    ] {
        fails(root, verb, &["no jail named nosuch"])?;
    }
    let after = lock_files(root);
    if after != before {
        return Err(format!("lock files before {before:?}, after {after:?}"));
    }
    // A lazy unmount while something holds the filesystem: the verbs say
    // the pool is not ready, and `init` refuses to mount the image twice.
    let held = std::fs::File::open(root.join("pool.json")).map_err(|e| e.to_string())?;
    let st = Command::new("umount")
        .arg("-l")
        .arg(root)
        .status()
        .map_err(|e| e.to_string())?;
    if !st.success() {
        return Err("umount -l failed".into());
    }
    for verb in [
        &["stop", "kept"][..],
        &["start", "kept"],
        &["exec", "kept", "--", "/bin/true"],
    ] {
        fails(root, verb, &["not ready", "init"])?;
    }
    let loops = loops_backing(&pool.image);
    let err = fails(root, &["init"], &["still in use", "/dev/loop"])?;
    if loops_backing(&pool.image) != loops || loops != 1 {
        return Err(format!(
            "init attached the image again ({loops} loop devices before, {} after): {err}",
            loops_backing(&pool.image)
        ));
    }
    // Once released, the image is re-attached as usual.
    let _ = held.as_raw_fd();
    drop(held);
    let t = Instant::now();
    while loops_backing(&pool.image) != 0 && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let re = ok(root, &["init", "--json"])?;
    if !re.contains("reattached_image") {
        return Err(format!("init after release: {re}"));
    }
    let out = jailer(root, &["ls"]);
    if !String::from_utf8_lossy(&out.stdout).contains("kept") {
        return Err("the jail is gone after the re-attach".into());
    }
    Ok(())
}
