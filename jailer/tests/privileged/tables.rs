//! The SQL tables against real running jails, through `jailer query --json`
//! (which runs `jailer-extension --query`): every row is checked against
//! what `jailer inspect`, `jailer exec` and the host's `/proc` say.

use crate::cli::{fails, jailer, ok};
use crate::runtime::{init_pid, inspect, jail, sh_ok, start_sh, wait_until};
use libtest_mimic::Trial;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub fn trials() -> Vec<Trial> {
    let t = |name: &'static str, f: fn() -> Result<(), String>| {
        Trial::test(format!("tables::{name}"), move || crate::check(f()))
    };
    vec![
        t("jails_row_matches_inspect_and_host_namespaces", jails),
        t(
            "stopped_and_broken_jails_have_rows_but_no_processes",
            stopped,
        ),
        t("jail_processes_match_proc_and_join_with_jails", processes),
        t("jail_mappings_are_ok_for_uid_and_gid", mappings),
        t(
            "cap_add_is_expected_and_drift_shows_unexpected",
            capabilities,
        ),
        t("jail_mounts_match_the_jails_mountinfo", mounts),
        t("jail_resources_match_limits_and_freezer", resources),
        t(
            "jail_packages_match_the_jails_dpkg_and_never_read_a_host_path",
            packages,
        ),
        t("query_cli_prints_tables_and_one_line_errors", query_cli),
        t(
            "query_without_the_extension_says_how_to_build_it",
            missing_extension,
        ),
        // `jailer exec`'s waiting helper joins the jail's cgroup and user
        // namespace: it must hold no more than the jail's own processes.
        t("exec_session_holds_no_unexpected_capability", exec_session),
    ]
}

/// `jailer-extension`, which `jailer query` runs, next to the `jailer`
/// under test. `cargo test` builds no other package's binaries, not even
/// with `--workspace`: tests/run.sh runs `cargo build --workspace` first;
/// by hand, `cargo build -p jailer-extension` before `cargo test -p jailer`
/// (or an old build of it is what gets tested).
fn extension() -> Result<PathBuf, String> {
    let jailer = Path::new(env!("CARGO_BIN_EXE_jailer"));
    let ext = jailer.with_file_name("jailer-extension");
    if !ext.is_file() {
        return Err(format!(
            "{} is not built: run `cargo build -p jailer-extension` (tests/run.sh does)",
            ext.display()
        ));
    }
    Ok(ext)
}

/// The debian pool, once the extension is known to be there.
fn pool() -> Result<PathBuf, String> {
    extension()?;
    crate::debian_pool()
}

/// `jailer query SQL --json`: the rows.
fn query(root: &Path, sql: &str) -> Result<Vec<Value>, String> {
    let out = ok(root, &["query", sql, "--json"])?;
    match serde_json::from_str(&out) {
        Ok(Value::Array(rows)) => Ok(rows),
        _ => Err(format!("query {sql:?}: not a JSON array: {out}")),
    }
}

/// The one row of `sql`.
fn one(root: &Path, sql: &str) -> Result<Value, String> {
    let mut rows = query(root, sql)?;
    match rows.len() {
        1 => Ok(rows.remove(0)),
        n => Err(format!("query {sql:?}: {n} rows, expected 1: {rows:?}")),
    }
}

/// Fails with every column of `row` that differs from `want`.
fn expect(what: &str, row: &Value, want: &[(&str, Value)]) -> Result<(), String> {
    let bad: Vec<String> = want
        .iter()
        .filter(|(k, v)| row[*k] != *v)
        .map(|(k, v)| format!("{k} = {} (expected {v})", row[*k]))
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("{what}: {}; row {row}", bad.join(", ")))
    }
}

/// The inode of the host's `/proc/PID/ns/KIND`, as the tables show it.
fn ns_inode(pid: i64, kind: &str) -> Result<String, String> {
    let target = std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .map_err(|e| format!("readlink /proc/{pid}/ns/{kind}: {e}"))?;
    let t = target.to_string_lossy();
    t.strip_prefix(&format!("{kind}:["))
        .and_then(|r| r.strip_suffix(']'))
        .map(str::to_string)
        .ok_or_else(|| format!("/proc/{pid}/ns/{kind} -> {t}"))
}

fn host_cgroup_version() -> i64 {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        2
    } else {
        1
    }
}

const NAMESPACES: [&str; 7] = ["pid", "mnt", "net", "user", "uts", "ipc", "cgroup"];

fn jails() -> Result<(), String> {
    let root = pool()?;
    let name = "tb-jails";
    let _j = jail(&root, name);
    start_sh(
        &root,
        name,
        &["--memory", "64M", "--cpus", "0.5", "--pids", "50"],
        "sleep 1000",
    )?;
    let rec = inspect(&root, name)?;
    let pid = i64::from(init_pid(&root, name)?);
    let row = one(&root, &format!("SELECT * FROM jails WHERE name = '{name}'"))?;
    let ids = &rec["ids"];
    expect(
        "jails row",
        &row,
        &[
            ("name", name.into()),
            ("id", rec["id"].clone()),
            ("state", "running".into()),
            ("template", "deb".into()),
            ("command", "/bin/sh -c sleep 1000".into()),
            ("hostname", name.into()),
            (
                "root_path",
                root.join("jails")
                    .join(name)
                    .join("rootfs")
                    .to_string_lossy()
                    .into(),
            ),
            ("pid", pid.into()),
            ("monitor_pid", rec["runtime"]["monitor"]["pid"].clone()),
            ("uid_base", ids["uid_base"].clone()),
            ("gid_base", ids["gid_base"].clone()),
            ("id_count", ids["count"].clone()),
            ("network", "none".into()),
            ("ip_address", "".into()),
            ("memory_limit", (64i64 << 20).into()),
            ("cpu_limit", 0.5.into()),
            ("pids_limit", 50.into()),
            ("created_at", rec["created_at"].clone()),
            ("started_at", rec["started_at"].clone()),
            ("finished_at", (-1).into()),
            ("exit_code", (-1).into()),
        ],
    )?;
    let cg = row["cgroup_path"].as_str().unwrap_or("");
    if cg.is_empty() || !Path::new(cg).is_dir() || !cg.contains(name) {
        return Err(format!("cgroup_path {cg:?} is not the jail's cgroup"));
    }
    let me = i64::from(std::process::id());
    for kind in NAMESPACES {
        let col = format!("{kind}_namespace");
        let want = ns_inode(pid, kind)?;
        if row[&col] != want.as_str() {
            return Err(format!("{col} = {}, readlink says {want}", row[&col]));
        }
        if want == ns_inode(me, kind)? {
            return Err(format!("the jail shares the host's {kind} namespace"));
        }
    }
    // The pushed-down constraint narrows; an unconstrained scan holds it too.
    let all = query(&root, "SELECT name, pid FROM jails")?;
    if !all.iter().any(|r| r["name"] == name && r["pid"] == pid) {
        return Err(format!("SELECT without WHERE lacks {name}: {all:?}"));
    }
    let none = query(&root, "SELECT * FROM jails WHERE name = 'tb-no-such-jail'")?;
    if !none.is_empty() {
        return Err(format!("a missing jail has rows: {none:?}"));
    }
    Ok(())
}

/// A corrupt record that removes itself.
struct Broken(PathBuf);

impl Drop for Broken {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn stopped() -> Result<(), String> {
    let root = pool()?;
    let name = "tb-stopped";
    let _j = jail(&root, name);
    start_sh(&root, name, &[], "trap 'exit 3' TERM; sleep 1000 & wait")?;
    let pid = init_pid(&root, name)?;
    ok(&root, &["stop", name, "--timeout", "10"])?;
    let rec = inspect(&root, name)?;
    let row = one(&root, &format!("SELECT * FROM jails WHERE name = '{name}'"))?;
    let mut want = vec![
        ("state", Value::from("stopped")),
        ("pid", (-1).into()),
        ("monitor_pid", (-1).into()),
        ("cgroup_path", "".into()),
        ("exit_code", rec["exit_code"].clone()),
        ("finished_at", rec["finished_at"].clone()),
        ("started_at", rec["started_at"].clone()),
    ];
    let ns: Vec<String> = NAMESPACES
        .iter()
        .map(|k| format!("{k}_namespace"))
        .collect();
    want.extend(ns.iter().map(|c| (c.as_str(), Value::from(""))));
    expect("stopped jails row", &row, &want)?;
    if rec["exit_code"] != 3 {
        return Err(format!("init's exit status lost: {rec}"));
    }
    for table in [
        "jail_processes",
        "jail_capabilities",
        "jail_mappings",
        "jail_mounts",
        "jail_resources",
    ] {
        let rows = query(
            &root,
            &format!("SELECT * FROM {table} WHERE jail = '{name}'"),
        )?;
        if !rows.is_empty() {
            return Err(format!("{table} has rows for a stopped jail: {rows:?}"));
        }
    }
    let by_pid = query(
        &root,
        &format!("SELECT * FROM jail_processes WHERE pid = {pid}"),
    )?;
    if !by_pid.is_empty() {
        return Err(format!("init {pid} is gone but listed: {by_pid:?}"));
    }
    // A corrupt record beside it is a `broken` row, never a failed query.
    let dir = root.join("jails/tb-broken");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let _b = Broken(dir.clone());
    std::fs::write(dir.join("jail.json"), "{ not json").map_err(|e| e.to_string())?;
    let rows = query(
        &root,
        &format!(
            "SELECT name, state FROM jails WHERE name IN ('tb-broken', '{name}') ORDER BY name"
        ),
    )?;
    let got: Vec<(Value, Value)> = rows
        .iter()
        .map(|r| (r["name"].clone(), r["state"].clone()))
        .collect();
    if got
        != [
            ("tb-broken".into(), "broken".into()),
            (name.into(), "stopped".into()),
        ]
    {
        return Err(format!("broken and stopped rows: {rows:?}"));
    }
    query(&root, "SELECT * FROM jail_processes")?;
    Ok(())
}

/// A `jailer exec` running in the background; waited for when dropped.
struct Exec(std::process::Child);

impl Exec {
    fn spawn(root: &Path, name: &str, command: &[&str]) -> Result<Exec, String> {
        std::process::Command::new(env!("CARGO_BIN_EXE_jailer"))
            .arg("--root")
            .arg(root)
            .args(["exec", name, "--"])
            .args(command)
            .stdin(std::process::Stdio::null())
            .spawn()
            .map(Exec)
            .map_err(|e| format!("jailer exec: {e}"))
    }

    fn wait(mut self) -> Result<(), String> {
        match self.0.wait() {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("jailer exec: {s}")),
            Err(e) => Err(format!("jailer exec: {e}")),
        }
    }
}

impl Drop for Exec {
    fn drop(&mut self) {
        let _ = self.0.wait();
    }
}

/// The host pids `jailer ps` lists for a jail.
fn ps_pids(root: &Path, name: &str) -> Result<Vec<i64>, String> {
    let out = ok(root, &["ps", name, "--json"])?;
    let v: Vec<Value> = serde_json::from_str(&out).map_err(|e| format!("ps: {e}: {out}"))?;
    let mut p: Vec<i64> = v.iter().filter_map(|p| p["pid"].as_i64()).collect();
    p.sort_unstable();
    Ok(p)
}

fn processes() -> Result<(), String> {
    let root = pool()?;
    let name = "tb-procs";
    let _j = jail(&root, name);
    start_sh(&root, name, &[], "sleep 1000 & wait")?;
    let rec = inspect(&root, name)?;
    let pid = i64::from(init_pid(&root, name)?);
    let monitor = rec["runtime"]["monitor"]["pid"].as_i64().unwrap_or(-1);
    let (uid_base, gid_base) = (&rec["ids"]["uid_base"], &rec["ids"]["gid_base"]);
    // Init and its sleep: wait for the sleep to be forked.
    let sql = format!("SELECT * FROM jail_processes WHERE jail = '{name}' ORDER BY jail_pid");
    if !wait_until(Duration::from_secs(5), || {
        query(&root, &sql).is_ok_and(|r| r.len() == 2)
    }) {
        return Err(format!("processes: {:?}", query(&root, &sql)));
    }
    let rows = query(&root, &sql)?;
    let (init, sleep) = (&rows[0], &rows[1]);
    let common = |r: &Value| -> Vec<(&str, Value)> {
        vec![
            ("jail", name.into()),
            ("uid", uid_base.clone()),
            ("gid", gid_base.clone()),
            ("euid", uid_base.clone()),
            ("egid", gid_base.clone()),
            ("jail_uid", 0.into()),
            ("jail_gid", 0.into()),
            ("no_new_privs", 1.into()),
            ("seccomp_mode", 2.into()),
            ("threads", 1.into()),
            ("state", r["state"].clone()),
        ]
    };
    let mut want = common(init);
    want.extend([
        ("pid", pid.into()),
        ("jail_pid", 1.into()),
        ("parent", monitor.into()),
        ("name", "sh".into()),
        ("cmdline", "/bin/sh -c sleep 1000 & wait".into()),
    ]);
    expect("init row", init, &want)?;
    let mut want = common(sleep);
    want.extend([
        ("jail_pid", 2.into()),
        ("parent", pid.into()),
        ("name", "sleep".into()),
        ("cmdline", "sleep 1000".into()),
    ]);
    expect("sleep row", sleep, &want)?;
    // Numbers from the host's /proc for the same pid.
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<i64>().ok())
            .unwrap_or(-2)
            * 1024
    };
    if init["total_size"] != kb("VmSize:") || init["resident_size"].as_i64().unwrap_or(0) <= 0 {
        return Err(format!("init sizes {init} vs VmSize {}", kb("VmSize:")));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs() as i64;
    let started = init["start_time"].as_i64().unwrap_or(0);
    if (started - now).abs() > 120 {
        return Err(format!("init start_time {started}, now {now}"));
    }
    let exe = init["path"].as_str().unwrap_or("");
    if !exe.ends_with("/bin/dash") && !exe.ends_with("/bin/sh") {
        return Err(format!("init path {exe:?}"));
    }
    // The same processes `jailer ps` lists, and an exec'd one joins them.
    let mut pids: Vec<i64> = rows.iter().filter_map(|r| r["pid"].as_i64()).collect();
    pids.sort_unstable();
    if pids != ps_pids(&root, name)? {
        return Err(format!(
            "table pids {pids:?} != jailer ps {:?}",
            ps_pids(&root, name)
        ));
    }
    // A process `jailer exec` starts is in the jail's cgroup: it is listed.
    let exec = Exec::spawn(&root, name, &["/bin/sleep", "5"])?;
    let exec_sql = format!(
        "SELECT jail_uid, no_new_privs, seccomp_mode FROM jail_processes \
         WHERE jail = '{name}' AND cmdline = '/bin/sleep 5'"
    );
    if !wait_until(Duration::from_secs(3), || {
        query(&root, &exec_sql).is_ok_and(|r| r.len() == 1)
    }) {
        return Err(format!(
            "the exec'd process is not listed: {:?}",
            query(&root, &exec_sql)
        ));
    }
    expect(
        "exec'd row",
        &one(&root, &exec_sql)?,
        &[
            ("jail_uid", 0.into()),
            ("no_new_privs", 1.into()),
            ("seccomp_mode", 2.into()),
        ],
    )?;
    // jail_pid is the pid the jail sees, and -1 for a process of its
    // cgroup outside its pid namespace (exec's helper, while it waits).
    let rows = query(
        &root,
        &format!("SELECT pid, jail_pid FROM jail_processes WHERE jail = '{name}'"),
    )?;
    let visible = sh_ok(&root, name, "cd /proc && echo [0-9]*")?;
    let visible: Vec<i64> = visible
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    let jail_ns = ns_inode(pid, "pid")?;
    for r in &rows {
        let (host, inside) = (
            r["pid"].as_i64().unwrap_or(0),
            r["jail_pid"].as_i64().unwrap_or(0),
        );
        let Ok(ns) = ns_inode(host, "pid") else {
            continue; // exited meanwhile
        };
        let in_jail = ns == jail_ns;
        if in_jail != (inside != -1) || (in_jail && !visible.contains(&inside)) {
            return Err(format!(
                "pid {host}: jail_pid {inside}, in the jail's pid namespace: {in_jail}, \
                 pids seen inside {visible:?}"
            ));
        }
    }
    exec.wait()?;
    // `WHERE pid =` pushed down: one row, and one for an unknown pid.
    let r = one(
        &root,
        &format!("SELECT jail, jail_pid FROM jail_processes WHERE pid = {pid}"),
    )?;
    expect(
        "by pid",
        &r,
        &[("jail", name.into()), ("jail_pid", 1.into())],
    )?;
    let r = query(&root, "SELECT * FROM jail_processes WHERE pid = -5")?;
    if !r.is_empty() {
        return Err(format!("pid -5: {r:?}"));
    }
    // The join of the issue: one row per process of the jail.
    let joined = query(
        &root,
        &format!(
            "SELECT j.name, p.cmdline FROM jails j JOIN jail_processes p ON p.jail = j.name \
             WHERE j.name = '{name}' ORDER BY p.jail_pid"
        ),
    )?;
    let got: Vec<&Value> = joined.iter().map(|r| &r["cmdline"]).collect();
    if joined.iter().any(|r| r["name"] != name)
        || got
            != [
                &Value::from("/bin/sh -c sleep 1000 & wait"),
                &"sleep 1000".into(),
            ]
    {
        return Err(format!("join: {joined:?}"));
    }
    // The join the other way round, over all jails, finds the same.
    let joined = query(
        &root,
        &format!(
            "SELECT j.name, j.uid_base, p.uid FROM jail_processes p JOIN jails j \
             ON j.name = p.jail WHERE p.jail = '{name}'"
        ),
    )?;
    if joined.len() != 2 || joined.iter().any(|r| r["uid_base"] != r["uid"]) {
        return Err(format!("reverse join: {joined:?}"));
    }
    Ok(())
}

fn mappings() -> Result<(), String> {
    let root = pool()?;
    let name = "tb-maps";
    let _j = jail(&root, name);
    start_sh(&root, name, &[], "sleep 1000")?;
    let rec = inspect(&root, name)?;
    let rows = query(
        &root,
        &format!("SELECT * FROM jail_mappings WHERE jail = '{name}' ORDER BY type"),
    )?;
    if rows.len() != 2 {
        return Err(format!("mappings: {rows:?}"));
    }
    for (row, kind, base) in [(&rows[0], "gid", "gid_base"), (&rows[1], "uid", "uid_base")] {
        expect(
            &format!("{kind} mapping"),
            row,
            &[
                ("jail", name.into()),
                ("type", kind.into()),
                ("jail_id", 0.into()),
                ("host_id", rec["ids"][base].clone()),
                ("count", rec["ids"]["count"].clone()),
                ("status", "ok".into()),
            ],
        )?;
    }
    // The same map the kernel shows inside.
    let map = sh_ok(&root, name, "cat /proc/self/uid_map")?;
    let f: Vec<&str> = map.split_whitespace().collect();
    if f != ["0", &rows[1]["host_id"].to_string(), "65536"] {
        return Err(format!("uid_map inside: {map}"));
    }
    Ok(())
}

/// Rewrites the jail's `jail.json` with another `spec.capabilities`, as
/// drift would: the running jail keeps what it was started with.
fn set_spec_caps(root: &Path, name: &str, caps: &[String]) -> Result<(), String> {
    let path = root.join("jails").join(name).join("jail.json");
    let s = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let mut rec: Value = serde_json::from_str(&s).map_err(|e| e.to_string())?;
    rec["spec"]["capabilities"] = caps.into();
    let tmp = path.with_extension("json.test-tmp");
    std::fs::write(&tmp, rec.to_string()).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &path).map_err(|e| e.to_string())
}

fn capabilities() -> Result<(), String> {
    let root = pool()?;
    let name = "tb-caps";
    let _j = jail(&root, name);
    start_sh(&root, name, &["--cap-add", "net_raw"], "sleep 1000")?;
    let rec = inspect(&root, name)?;
    let spec: Vec<String> =
        serde_json::from_value(rec["spec"]["capabilities"].clone()).map_err(|e| e.to_string())?;
    if !spec.iter().any(|c| c == "cap_net_raw") {
        return Err(format!("--cap-add net_raw not in the spec: {spec:?}"));
    }
    let pid = init_pid(&root, name)?;
    let sql = |cap: &str| {
        format!(
            "SELECT cap_set, expected, actual, status FROM jail_capabilities \
             WHERE jail = '{name}' AND pid = {pid} AND capability = '{cap}' ORDER BY cap_set"
        )
    };
    let rows = query(&root, &sql("cap_net_raw"))?;
    let sets: Vec<&Value> = rows.iter().map(|r| &r["cap_set"]).collect();
    if sets != ["bounding", "effective", "permitted"] {
        return Err(format!("cap_net_raw rows: {rows:?}"));
    }
    for r in &rows {
        expect(
            "cap_net_raw",
            r,
            &[
                ("expected", 1.into()),
                ("actual", 1.into()),
                ("status", "ok".into()),
            ],
        )?;
    }
    // Init holds exactly its spec: every effective row ok, one per cap.
    let eff = query(
        &root,
        &format!(
            "SELECT capability, status FROM jail_capabilities WHERE jail = '{name}' \
             AND pid = {pid} AND cap_set = 'effective'"
        ),
    )?;
    let mut held: Vec<String> = eff
        .iter()
        .filter_map(|r| r["capability"].as_str().map(str::to_string))
        .collect();
    held.sort();
    let mut want = spec.clone();
    want.sort();
    if held != want || eff.iter().any(|r| r["status"] != "ok") {
        return Err(format!("effective rows {eff:?} vs spec {want:?}"));
    }
    let bad = query(
        &root,
        &format!("SELECT * FROM jail_capabilities WHERE jail = '{name}' AND status != 'ok'"),
    )?;
    if !bad.is_empty() {
        return Err(format!("a fresh jail has non-ok capability rows: {bad:?}"));
    }
    // Drift: the spec loses net_raw and gains sys_admin while the jail runs.
    let mut drifted: Vec<String> = spec
        .iter()
        .filter(|c| *c != "cap_net_raw")
        .cloned()
        .collect();
    drifted.push("cap_sys_admin".into());
    set_spec_caps(&root, name, &drifted)?;
    for (cap, e, a, status) in [
        ("cap_net_raw", 0, 1, "unexpected"),
        ("cap_sys_admin", 1, 0, "missing"),
    ] {
        let rows = query(&root, &sql(cap))?;
        let sets: Vec<&Value> = rows.iter().map(|r| &r["cap_set"]).collect();
        if sets != ["bounding", "effective", "permitted"] {
            return Err(format!("{cap} rows after drift: {rows:?}"));
        }
        for r in &rows {
            expect(
                &format!("{cap} after drift"),
                r,
                &[
                    ("expected", e.into()),
                    ("actual", a.into()),
                    ("status", status.into()),
                ],
            )?;
        }
    }
    // The fleet policy of docs/osquery.md fails (no row) for this host,
    // and its live query names the jail.
    let policy = query(
        &root,
        "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM jail_capabilities WHERE status = 'unexpected')",
    )?;
    if !policy.is_empty() {
        return Err("the no-unexpected-capability policy passes despite drift".into());
    }
    let culprits = query(
        &root,
        "SELECT DISTINCT jail, capability FROM jail_capabilities WHERE status = 'unexpected'",
    )?;
    if !culprits
        .iter()
        .any(|r| r["jail"] == name && r["capability"] == "cap_net_raw")
    {
        return Err(format!("culprits: {culprits:?}"));
    }
    Ok(())
}

fn mounts() -> Result<(), String> {
    let root = pool()?;
    let name = "tb-mounts";
    let _j = jail(&root, name);
    start_sh(&root, name, &[], "sleep 1000")?;
    let rows = query(
        &root,
        &format!("SELECT * FROM jail_mounts WHERE jail = '{name}'"),
    )?;
    let fstype = |mp: &str| {
        rows.iter()
            .find(|r| r["mount_point"] == mp)
            .and_then(|r| r["fstype"].as_str())
            .map(str::to_string)
    };
    for (mp, want) in [("/", "btrfs"), ("/proc", "proc"), ("/dev", "")] {
        match fstype(mp) {
            Some(t) if want.is_empty() && !t.is_empty() => {}
            Some(t) if t == want => {}
            other => return Err(format!("{mp}: fstype {other:?}, rows {rows:?}")),
        }
    }
    // Exactly the mount table the jail sees from inside.
    let inside = sh_ok(&root, name, "cat /proc/self/mountinfo")?;
    let mut want: Vec<(String, String, bool)> = inside
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let p: Vec<&str> = post.split(' ').collect();
            let ro = |o: &str| o.split(',').any(|x| x == "ro");
            Some((
                f.get(4)?.replace("\\040", " "),
                p.first()?.to_string(),
                ro(f.get(5)?) || ro(p.get(2).unwrap_or(&"")),
            ))
        })
        .collect();
    let mut got: Vec<(String, String, bool)> = rows
        .iter()
        .map(|r| {
            (
                r["mount_point"].as_str().unwrap_or("").to_string(),
                r["fstype"].as_str().unwrap_or("").to_string(),
                r["read_only"] == 1,
            )
        })
        .collect();
    want.sort();
    got.sort();
    if got != want {
        return Err(format!("jail_mounts {got:?}\n!= mountinfo inside {want:?}"));
    }
    Ok(())
}

fn resources() -> Result<(), String> {
    let root = pool()?;
    let name = "tb-res";
    let _j = jail(&root, name);
    start_sh(
        &root,
        name,
        &["--memory", "96M", "--pids", "40", "--cpus", "1.5"],
        "sleep 1000",
    )?;
    let sql = format!("SELECT * FROM jail_resources WHERE jail = '{name}'");
    let row = one(&root, &sql)?;
    expect(
        "resources",
        &row,
        &[
            ("jail", name.into()),
            ("cgroup_version", host_cgroup_version().into()),
            ("memory_limit", (96i64 << 20).into()),
            ("pids_limit", 40.into()),
            ("cpu_limit", 1.5.into()),
            ("frozen", 0.into()),
        ],
    )?;
    let n = |c: &str| row[c].as_i64().unwrap_or(-1);
    if !(1..=40).contains(&n("pids_current"))
        || n("memory_current") <= 0
        || n("memory_peak") < n("memory_current")
        || n("cpu_usage_usec") < 0
        || n("memory_oom_kills") != 0
    {
        return Err(format!("resource counters: {row}"));
    }
    ok(&root, &["freeze", name])?;
    let frozen = one(&root, &sql)?;
    expect("frozen", &frozen, &[("frozen", 1.into())])?;
    let state = one(
        &root,
        &format!("SELECT state FROM jails WHERE name = '{name}'"),
    )?;
    expect("frozen jails row", &state, &[("state", "frozen".into())])?;
    // A frozen jail still lists its processes.
    let procs = query(
        &root,
        &format!("SELECT state FROM jail_processes WHERE jail = '{name}'"),
    )?;
    if procs.is_empty() {
        return Err("a frozen jail has no processes".into());
    }
    ok(&root, &["thaw", name])?;
    expect("thawed", &one(&root, &sql)?, &[("frozen", 0.into())])?;
    // Without limits: -1 for unlimited (pids: every jail gets the default).
    let free = "tb-res-free";
    let _k = jail(&root, free);
    start_sh(&root, free, &[], "sleep 1000")?;
    let row = one(
        &root,
        &format!("SELECT * FROM jail_resources WHERE jail = '{free}'"),
    )?;
    expect(
        "unlimited resources",
        &row,
        &[
            ("memory_limit", (-1).into()),
            ("pids_limit", (jailer::spec::DEFAULT_PIDS as i64).into()),
            ("cpu_limit", (-1.0).into()),
        ],
    )?;
    let row = one(
        &root,
        &format!("SELECT memory_limit, cpu_limit, pids_limit FROM jails WHERE name = '{free}'"),
    )?;
    expect(
        "unlimited spec",
        &row,
        &[
            ("memory_limit", (-1).into()),
            ("pids_limit", (jailer::spec::DEFAULT_PIDS as i64).into()),
            ("cpu_limit", (-1.0).into()),
        ],
    )?;
    Ok(())
}

fn query_cli() -> Result<(), String> {
    let root = pool()?;
    let name = "tb-cli";
    let _j = jail(&root, name);
    start_sh(&root, name, &[], "sleep 1000")?;
    let pid = init_pid(&root, name)?;
    let out = ok(
        &root,
        &[
            "query",
            &format!("SELECT name, state, pid FROM jails WHERE name = '{name}'"),
        ],
    )?;
    let lines: Vec<&str> = out.lines().collect();
    let cells: Vec<Vec<&str>> = lines
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    if cells
        != [
            vec!["name", "state", "pid"],
            vec![name, "running", &pid.to_string()],
        ]
        || lines[0].find("state") != lines[1].find("running")
    {
        return Err(format!("human output:\n{out}"));
    }
    // JAILER_ROOT-free: --root reaches the extension.
    let empty = crate::cli::fresh_pool("tables-empty")?;
    if ok(
        &empty,
        &["query", "SELECT count(*) AS n FROM jails", "--json"],
    )? != "[\n  {\"n\": 0}\n]\n"
    {
        return Err("another --root sees jails".into());
    }
    fails(
        &root,
        &["query", "SELECT * FROM nope"],
        &["no such table: nope"],
    )?;
    fails(
        &root,
        &["query", "DELETE FROM jails"],
        &["may not be modified"],
    )?;
    fails(
        &root,
        &["query", "SELECT 1; SELECT 2"],
        &["exactly one SQL statement"],
    )?;
    fails(
        &root,
        &["query", "SELECT *\n  FROM WHERE"],
        &["syntax error", "SELECT *   FROM WHERE"],
    )?;
    let out = jailer(&root, &["query", "SELECT 1"]);
    if out.status.code() != Some(0) {
        return Err(format!("query exit status {:?}", out.status.code()));
    }
    let out = jailer(&root, &["query", "SELECT * FROM nope"]);
    if out.status.code() != Some(1) || !out.stdout.is_empty() {
        return Err(format!("failed query: {out:?}"));
    }
    Ok(())
}

fn missing_extension() -> Result<(), String> {
    let installed = Path::new("/usr/lib/osquery/extensions/jailer.ext");
    if installed.exists() {
        // That one would be found; nothing to check on this host.
        return Ok(());
    }
    let dir = crate::scratch().fresh_plain_dir("lonely-jailer");
    let bin = dir.join("jailer");
    std::fs::copy(env!("CARGO_BIN_EXE_jailer"), &bin).map_err(|e| e.to_string())?;
    let out = std::process::Command::new(&bin)
        .args(["--root", "/nonexistent", "query", "SELECT 1"])
        .env("PATH", "/usr/bin:/bin")
        .output()
        .map_err(|e| e.to_string())?;
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(1)
        || err.trim_end().lines().count() != 1
        || !err.contains("cargo build -p jailer-extension")
        || !err.contains(&bin.display().to_string())
    {
        return Err(format!("without the extension: {:?}: {err}", out.status));
    }
    Ok(())
}

fn exec_session() -> Result<(), String> {
    let root = pool()?;
    let name = "tb-exec-caps";
    let _j = jail(&root, name);
    start_sh(&root, name, &[], "sleep 1000")?;
    let exec = Exec::spawn(&root, name, &["/bin/sleep", "3"])?;
    let listed = format!(
        "SELECT pid FROM jail_processes WHERE jail = '{name}' AND cmdline = '/bin/sleep 3'"
    );
    if !wait_until(Duration::from_secs(3), || {
        query(&root, &listed).is_ok_and(|r| r.len() == 1)
    }) {
        return Err("the exec'd process is not listed".into());
    }
    let bad = query(
        &root,
        &format!(
            "SELECT c.pid, p.name, count(*) AS caps FROM jail_capabilities c \
             JOIN jail_processes p ON p.pid = c.pid \
             WHERE c.jail = '{name}' AND c.status = 'unexpected' GROUP BY c.pid"
        ),
    )?;
    exec.wait()?;
    if !bad.is_empty() {
        return Err(format!("processes with unexpected capabilities: {bad:?}"));
    }
    Ok(())
}

/// A host file removed on drop.
struct HostFile(std::path::PathBuf);

impl Drop for HostFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn packages() -> Result<(), String> {
    let root = pool()?;
    let name = "tb-pkgs";
    let _j = jail(&root, name);
    start_sh(&root, name, &[], "sleep 1000")?;
    let sql = format!(
        "SELECT name, version, arch, installed_size FROM jail_packages \
         WHERE jail = '{name}' AND status = 'install ok installed'"
    );
    let listed = |root: &Path| -> Result<std::collections::BTreeSet<String>, String> {
        Ok(query(root, &sql)?
            .iter()
            .map(|r| {
                format!(
                    "{} {} {}",
                    r["name"].as_str().unwrap_or(""),
                    r["version"].as_str().unwrap_or(""),
                    r["arch"].as_str().unwrap_or("")
                )
            })
            .collect())
    };
    // What the jail's own dpkg says is installed.
    let inside: std::collections::BTreeSet<String> = sh_ok(
        &root,
        name,
        "dpkg-query -W -f='${db:Status-Status} ${Package} ${Version} ${Architecture}\\n' | sed -n 's/^installed //p'",
    )?
    .lines()
    .map(str::to_string)
    .collect();
    let rows = listed(&root)?;
    if inside.len() < 50 || rows != inside {
        return Err(format!(
            "jail_packages and the jail's dpkg differ: only in the table {:?}, only in dpkg {:?}",
            rows.difference(&inside).collect::<Vec<_>>(),
            inside.difference(&rows).collect::<Vec<_>>()
        ));
    }
    let dpkg = one(
        &root,
        &format!("SELECT installed_size, maintainer FROM jail_packages WHERE jail = '{name}' AND name = 'dpkg'"),
    )?;
    if dpkg["installed_size"].as_i64().unwrap_or(-1) <= 0
        || !dpkg["maintainer"].as_str().unwrap_or("").contains('@')
    {
        return Err(format!("dpkg's row: {dpkg}"));
    }
    // A stopped jail's packages are listed too (they are its files).
    ok(&root, &["stop", "--timeout", "1", name])?;
    if listed(&root)? != inside {
        return Err("a stopped jail's packages differ from its dpkg's".into());
    }
    ok(&root, &["start", name])?;
    // The jail points its status file at a host path: the table reads the
    // jail's file of that name (absent, then the jail's own), never the host's.
    // Under the host's temp directory, which both lanes have (the VM
    // guest has /tmp but no /var/tmp).
    let host =
        HostFile(std::env::temp_dir().join(format!("jailer-host-status-{}", std::process::id())));
    std::fs::write(
        &host.0,
        "Package: hostleak\nVersion: 1\nStatus: install ok installed\n",
    )
    .map_err(|e| e.to_string())?;
    let path = host.0.display().to_string();
    sh_ok(
        &root,
        name,
        &format!("cd /var/lib/dpkg && mv status status.real && ln -s {path} status"),
    )?;
    let all = format!("SELECT name FROM jail_packages WHERE jail = '{name}'");
    let rows = query(&root, &all)?;
    if !rows.is_empty() {
        return Err(format!(
            "a status symlink to a path missing in the jail gave rows: {rows:?}"
        ));
    }
    sh_ok(
        &root,
        name,
        &format!(
            "mkdir -p \"$(dirname {path})\" && printf 'Package: jailown\\nVersion: 2\\n' > {path}"
        ),
    )?;
    let rows = query(&root, &all)?;
    if rows.len() != 1 || rows[0]["name"] != "jailown" {
        return Err(format!(
            "a status symlink resolved outside the jail's root: {rows:?}"
        ));
    }
    // A FIFO in its place is refused unread (a read would wait forever).
    sh_ok(
        &root,
        name,
        "cd /var/lib/dpkg && rm status && mkfifo status",
    )?;
    let rows = query(&root, &all)?;
    if !rows.is_empty() {
        return Err(format!("rows from a FIFO: {rows:?}"));
    }
    Ok(())
}
