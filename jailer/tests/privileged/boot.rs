//! What the boot units run: `jailer init --attach-only` (jailer-pool.service)
//! and `jailer start --autostart` / `jailer stop --all`
//! (jailer-autostart.service).

use crate::cli::{fresh_pool, jailer, ok, ImagePool};
use crate::runtime::{create, inspect, jail};
use libtest_mimic::Trial;
use serde_json::Value;
use std::path::Path;

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test(
            "boot::attach_only_never_makes_a_pool_and_re_attaches_one",
            || crate::check(attach_only()),
        ),
        Trial::test(
            "boot::start_autostart_starts_exactly_the_marked_jails_and_stop_all_stops_all",
            || crate::check(autostart()),
        ),
    ]
}

fn json(root: &Path, args: &[&str]) -> Result<Value, String> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ok(root, &all)?;
    serde_json::from_str(&out).map_err(|e| format!("{args:?}: {e}: {out}"))
}

fn attach_only() -> Result<(), String> {
    let dir = crate::scratch().fresh_plain_dir("boot-attach");
    let pool = ImagePool {
        root: dir.join("pool"),
        image: dir.join("pool.img"),
    };
    let root = &pool.root;
    // No pool was made: nothing is made, and it succeeds (a boot with no
    // pool is not a failed boot).
    let doc = json(root, &["init", "--attach-only"])?;
    if doc["action"] != "nothing_to_attach" || pool.image.exists() {
        return Err(format!(
            "attach-only with no pool: {doc}, image made: {}",
            pool.image.exists()
        ));
    }
    // --size would make one: refused with --attach-only.
    let out = jailer(root, &["init", "--attach-only", "--size", "1G"]);
    if out.status.code() != Some(2) || pool.image.exists() {
        return Err(format!("--attach-only --size: {out:?}"));
    }
    ok(root, &["init", "--size", "256M"])?;
    ok(
        root,
        &[
            "template",
            "import",
            "t",
            &crate::cli::small_tree("boot-attach-src")?.to_string_lossy(),
            "--",
            "/bin/true",
        ],
    )?;
    // As after a reboot: the pool unmounted, its loop device gone.
    crate::scratch::unmount_below(root);
    crate::scratch::detach_loops_of(&pool.image);
    let doc = json(root, &["init", "--attach-only"])?;
    if doc["action"] != "reattached_image" {
        return Err(format!("attach-only after unmount: {doc}"));
    }
    if !ok(root, &["template", "ls"])?.contains('t') {
        return Err("the template is gone after re-attaching".into());
    }
    // Already mounted: ready, nothing done twice.
    let doc = json(root, &["init", "--attach-only"])?;
    if doc["action"] != "already_ready" {
        return Err(format!("attach-only on a mounted pool: {doc}"));
    }
    Ok(())
}

/// A pool of its own: `stop --all` stops every jail of its pool, and the
/// shared pool's jails belong to tests running beside this one.
fn autostart() -> Result<(), String> {
    let root = fresh_pool("boot-auto")?;
    match std::env::var("JAILER_TEST_ROOTFS") {
        Ok(t) => ok(&root, &["template", "import", "deb", &t])?,
        Err(_) => {
            let shared = crate::debian_pool()?.join("templates/deb/rootfs");
            ok(
                &root,
                &["template", "import", "deb", &shared.to_string_lossy()],
            )?
        }
    };
    let _g = [
        jail(&root, "boot-a"),
        jail(&root, "boot-b"),
        jail(&root, "boot-c"),
    ];
    let sleep = ["/bin/sleep", "infinity"];
    create(&root, "boot-a", &["--autostart"], &sleep)?;
    create(&root, "boot-b", &["--autostart"], &sleep)?;
    create(&root, "boot-c", &[], &sleep)?;
    if inspect(&root, "boot-a")?["spec"]["autostart"] != true
        || inspect(&root, "boot-c")?["spec"]["autostart"] != false
    {
        return Err("--autostart is not recorded in the spec".into());
    }
    let state = |n: &str| inspect(&root, n).map(|r| r["state"].as_str().unwrap_or("").to_string());
    let started = json(&root, &["start", "--autostart"])?;
    let names: Vec<&str> = started
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["spec"]["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    if names != ["boot-a", "boot-b"]
        || state("boot-a")? != "running"
        || state("boot-c")? != "created"
    {
        return Err(format!("start --autostart: {started}"));
    }
    // Run again (a unit restarted): the running ones are no error, and
    // nothing is started twice.
    let again = json(&root, &["start", "--autostart"])?;
    if again != serde_json::json!([]) {
        return Err(format!("a second start --autostart: {again}"));
    }
    let human = ok(&root, &["start", "--autostart"])?;
    if !human.contains("no jail marked --autostart is waiting to start") {
        return Err(format!("a second start --autostart said: {human}"));
    }
    // --wait is for one jail.
    let out = jailer(&root, &["start", "--wait", "boot-c", "boot-a"]);
    if out.status.code() != Some(2) || state("boot-c")? != "created" {
        return Err(format!("start --wait of two jails: {out:?}"));
    }
    ok(&root, &["start", "boot-c"])?;
    let stopped = json(&root, &["stop", "--all", "--timeout", "2"])?;
    let n = stopped.as_array().map_or(0, Vec::len);
    if n != 3 {
        return Err(format!("stop --all: {stopped}"));
    }
    for j in ["boot-a", "boot-b", "boot-c"] {
        if state(j)? != "stopped" {
            return Err(format!("{j} is {} after stop --all", state(j)?));
        }
    }
    let none = ok(&root, &["stop", "--all"])?;
    if !none.contains("no jail is running") {
        return Err(format!("stop --all with none running: {none}"));
    }
    // Stopped jails marked --autostart start again (a reboot).
    let started = json(&root, &["start", "--autostart"])?;
    if started.as_array().map_or(0, Vec::len) != 2 {
        return Err(format!("start --autostart of stopped jails: {started}"));
    }
    Ok(())
}
