//! `jailer template pack` and `jailer template import NAME FILE.deb`: a
//! template through a Debian package and back, every piece of metadata
//! kept, and a jail run from the result.

use crate::cli::{fresh_pool, jailer, ok};
use crate::runtime::jail;
use libtest_mimic::Trial;
use serde_json::Value;
use std::path::Path;

pub fn trials() -> Vec<Trial> {
    vec![
        Trial::test(
            "pack::a_packed_template_imports_with_every_piece_of_metadata",
            || crate::check(metadata_round_trip()),
        ),
        Trial::test(
            "pack::a_packed_debian_template_runs_a_jail_and_bad_input_is_refused",
            || crate::check(debian_round_trip()),
        ),
    ]
}

fn templates(root: &Path) -> Result<Value, String> {
    let out = ok(root, &["--json", "template", "ls"])?;
    serde_json::from_str(&out).map_err(|e| format!("template ls: {e}: {out}"))
}

fn metadata_round_trip() -> Result<(), String> {
    let root = fresh_pool("pack-meta")?;
    let src = crate::scratch().fresh_plain_dir("pack-meta-src");
    crate::import::fixture(&src)?;
    ok(
        &root,
        &[
            "template",
            "import",
            "fx",
            &src.to_string_lossy(),
            "--",
            "/bin/sh",
            "-c",
            "echo 'it''s'",
        ],
    )?;
    let out_dir = crate::scratch().fresh_plain_dir("pack-meta-out");
    let deb = out_dir.join("fx.deb");
    let done: Value = serde_json::from_str(&ok(
        &root,
        &[
            "--json",
            "template",
            "pack",
            "fx",
            "-o",
            &deb.to_string_lossy(),
            "--pkg-version",
            "1.2-3",
        ],
    )?)
    .map_err(|e| e.to_string())?;
    if done["package"] != "jailer-template-fx" || done["version"] != "1.2-3" || !deb.is_file() {
        return Err(format!("pack: {done}"));
    }
    // Nothing but the package is left beside it.
    let left: Vec<_> = std::fs::read_dir(&out_dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    if left.len() != 1 {
        return Err(format!("pack left {left:?} in the output directory"));
    }
    ok(
        &root,
        &["template", "import", "fx2", &deb.to_string_lossy()],
    )?;
    crate::import::check_fixture(&root.join("templates/fx2/rootfs"))?;
    let list = templates(&root)?;
    let fx2 = list
        .as_array()
        .and_then(|a| a.iter().find(|t| t["name"] == "fx2"))
        .ok_or_else(|| format!("fx2 not listed: {list}"))?;
    let cmd = &fx2["command"];
    if *cmd != serde_json::json!(["/bin/sh", "-c", "echo 'it''s'"])
        || !fx2["source"].as_str().unwrap_or("").contains("fx.deb")
    {
        return Err(format!(
            "the packed default command or source was not kept: {fx2}"
        ));
    }
    Ok(())
}

fn debian_round_trip() -> Result<(), String> {
    let shared = crate::debian_pool()?;
    let root = fresh_pool("pack-deb")?;
    let out_dir = crate::scratch().fresh_plain_dir("pack-deb-out");
    let deb = out_dir.join("deb.deb");
    let debs = deb.to_string_lossy().to_string();
    ok(&shared, &["template", "pack", "deb", "-o", &debs])?;
    // An existing output is never overwritten.
    let before = std::fs::metadata(&deb).map_err(|e| e.to_string())?.len();
    let out = jailer(&shared, &["template", "pack", "deb", "-o", &debs]);
    if out.status.code() != Some(4)
        || std::fs::metadata(&deb).map_err(|e| e.to_string())?.len() != before
    {
        return Err(format!("pack over an existing file: {out:?}"));
    }
    for (args, code) in [
        (
            vec![
                "template",
                "pack",
                "deb",
                "-o",
                "/nonexistent-dir/x.deb",
                "--pkg-version",
                "v1",
            ],
            2,
        ),
        (
            vec!["template", "pack", "nosuch", "-o", "/tmp/never.deb"],
            3,
        ),
    ] {
        let out = jailer(&shared, &args);
        if out.status.code() != Some(code) {
            return Err(format!("{args:?}: {out:?}"));
        }
    }
    // Not a template package: refused, nothing made.
    let bogus = out_dir.join("bogus.deb");
    std::fs::write(&bogus, b"!<arch>\ngarbage").map_err(|e| e.to_string())?;
    let out = jailer(
        &root,
        &["template", "import", "b", &bogus.to_string_lossy()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(2) || !err.contains("is not a template package") {
        return Err(format!("import of a bogus .deb: {out:?}"));
    }
    if root.join("templates/b").exists() {
        return Err("a refused import left templates/b".into());
    }
    ok(&root, &["template", "import", "packed", &debs])?;
    let _j = jail(&root, "pk-run");
    // setuid bits, owners and the default command come through: the jail
    // runs the template's own binaries.
    let out = ok(
        &root,
        &[
            "run",
            "--rm",
            "-t",
            "packed",
            "pk-run",
            "--",
            "/bin/sh",
            "-c",
            "stat -c '%a %U' /usr/bin/su /etc/shadow; dpkg-query -W -f='${Package}\\n' dpkg",
        ],
    )?;
    if !out.contains("4755 root") || !out.contains("640 root") || !out.contains("dpkg") {
        return Err(format!("a jail of the packed template: {out}"));
    }
    Ok(())
}
