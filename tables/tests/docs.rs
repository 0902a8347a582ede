//! `docs/tables.md` is rendered from the specs; this fails when it drifts.
//! Regenerate with `UPDATE_DOCS=1 cargo test -p jailer-tables --test docs`.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

#[test]
fn docs_tables_md_matches_the_specs() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/tables.md");
    let want = jailer_tables::markdown();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is out of date: run `UPDATE_DOCS=1 cargo test -p jailer-tables --test docs`",
        path.display()
    );
    // Every column of every table is documented.
    for t in jailer_tables::tables() {
        for c in t.columns {
            assert!(
                have.contains(&format!("| `{}` |", c.name)),
                "{}.{}",
                t.name,
                c.name
            );
        }
    }
}
