//! The tables through embedded SQLite: joins, push-down, errors.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use jailer_tables::sql::query;
use jailer_tables::TableError;
use serde_json::{json, Value as J};
use std::time::Duration;

fn q(fx: &Fx, sql: &str) -> (Vec<String>, Vec<Vec<J>>) {
    query(&fx.src, sql).unwrap_or_else(|e| panic!("{sql}: {}", jailer::error_chain(&e)))
}

#[test]
fn join_jails_and_processes() {
    let fx = scene();
    let (cols, rows) = q(
        &fx,
        "SELECT j.name, p.cmdline FROM jails j JOIN jail_processes p ON p.jail = j.name \
         ORDER BY p.pid",
    );
    assert_eq!(cols, ["name", "cmdline"]);
    assert_eq!(
        rows,
        vec![
            vec![json!("a"), json!("/usr/bin/init-a --flag")],
            vec![json!("a"), json!("/usr/bin/worker --flag")],
            vec![json!("b"), json!("/usr/bin/init-b --flag")],
            vec![json!("b"), json!("/usr/bin/sh --flag")],
        ]
    );
}

#[test]
fn where_on_index_columns() {
    let fx = scene();
    let (_, rows) = q(
        &fx,
        "SELECT pid, jail_uid FROM jail_processes WHERE jail = 'a'",
    );
    assert_eq!(
        rows,
        vec![vec![json!(1000), json!(0)], vec![json!(1001), json!(33)]]
    );
    let (_, rows) = q(
        &fx,
        "SELECT jail, name FROM jail_processes WHERE pid = 2001",
    );
    assert_eq!(rows, vec![vec![json!("b"), json!("sh")]]);
    // A text constraint on an integer column, as osquery sends them.
    let (_, rows) = q(&fx, "SELECT jail FROM jail_processes WHERE pid = '1001'");
    assert_eq!(rows, vec![vec![json!("a")]]);
    let (_, rows) = q(
        &fx,
        "SELECT name, state, cpu_limit FROM jails WHERE name IN ('c', 'd') ORDER BY name",
    );
    assert_eq!(
        rows,
        vec![
            vec![json!("c"), json!("stopped"), json!(-1.0)],
            vec![json!("d"), json!("created"), json!(1.5)],
        ]
    );
    // SQLite re-checks what generators return: a non-index column filters too.
    let (_, rows) = q(&fx, "SELECT name FROM jails WHERE state = 'running'");
    assert_eq!(rows, vec![vec![json!("a")]]);
    let (_, rows) = q(&fx, "SELECT name FROM jails WHERE name = NULL");
    assert!(rows.is_empty());
}

#[test]
fn fleet_question_which_jail_holds_an_unexpected_capability() {
    let fx = scene();
    let (_, rows) = q(
        &fx,
        "SELECT count(*) FROM jail_capabilities WHERE status = 'unexpected'",
    );
    assert_eq!(rows, vec![vec![json!(1)]]);
    let (_, rows) = q(
        &fx,
        "SELECT DISTINCT c.jail, c.capability, p.name FROM jail_capabilities c \
         JOIN jail_processes p ON p.pid = c.pid WHERE c.status = 'unexpected'",
    );
    assert_eq!(
        rows,
        vec![vec![json!("a"), json!("cap_sys_admin"), json!("init-a")]]
    );
}

#[test]
fn unknown_table_and_bad_sql_are_errors() {
    let fx = scene();
    for sql in [
        "SELECT * FROM no_such_table",
        "SELEKT 1",
        "DELETE FROM jails",
    ] {
        let e = query(&fx.src, sql).expect_err(sql);
        assert!(
            matches!(e, TableError::Sql { .. } | TableError::NotReadOnly { .. }),
            "{sql}: {e}"
        );
    }
    let e = query(&fx.src, "SELECT * FROM no_such_table").expect_err("unknown");
    assert!(
        jailer::error_chain(&e).contains("no such table"),
        "{}",
        jailer::error_chain(&e)
    );
}

#[test]
fn every_table_selects_with_declared_types() {
    let fx = scene();
    for t in jailer_tables::tables() {
        let (cols, rows) = q(&fx, &format!("SELECT * FROM {}", t.name));
        let names: Vec<&str> = t.columns.iter().map(|c| c.name).collect();
        assert_eq!(cols, names);
        assert!(!rows.is_empty(), "{}", t.name);
        let (_, types) = q(
            &fx,
            &format!(
                "SELECT {} FROM {}",
                names
                    .iter()
                    .map(|n| format!("typeof(\"{n}\")"))
                    .collect::<Vec<_>>()
                    .join(", "),
                t.name
            ),
        );
        for row in types {
            for (ty, c) in row.iter().zip(t.columns) {
                let want = match c.ty {
                    jailer_tables::ColumnType::Text => "text",
                    jailer_tables::ColumnType::Integer | jailer_tables::ColumnType::Bigint => {
                        "integer"
                    }
                    jailer_tables::ColumnType::Double => "real",
                };
                assert_eq!(ty, want, "{}.{}", t.name, c.name);
            }
        }
    }
}

#[test]
fn sql_pushes_constraints_down() {
    let fx = scene();
    // Jail z's jail.json is a FIFO: reading it would block the query.
    let z = fx.src.pool_root.join("jails/z");
    std::fs::create_dir_all(&z).unwrap();
    nix::unistd::mkfifo(&z.join("jail.json"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let src = fx.src.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = (
            query(&src, "SELECT count(*) FROM jail_processes WHERE jail = 'a'").map(|r| r.1),
            query(
                &src,
                "SELECT count(*) FROM jails j JOIN jail_capabilities c ON c.jail = j.name \
                 WHERE j.name = 'b'",
            )
            .map(|r| r.1),
        );
        let _ = tx.send(r);
    });
    let (procs, caps) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a constrained query read jail z");
    assert_eq!(procs.unwrap(), vec![vec![json!(2)]]);
    // b's two processes each miss the default capabilities in effective,
    // permitted and bounding.
    let n = jailer::spec::DEFAULT_CAPS.len();
    assert_eq!(caps.unwrap(), vec![vec![json!(2 * 3 * n)]]);
}

#[test]
fn jail_packages_rows_come_from_each_jails_dpkg_status() {
    let fx = scene();
    let (_, rows) = q(
        &fx,
        "SELECT name, version, arch, status, source, installed_size FROM jail_packages \
         WHERE jail = 'a' ORDER BY name",
    );
    let text = |v: &J| match v {
        J::String(t) => t.clone(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(text).collect()).collect();
    assert_eq!(
        rows,
        [
            [
                "dpkg",
                "1.21.22",
                "amd64",
                "deinstall ok config-files",
                "",
                "-1"
            ],
            [
                "libssl3",
                "3.0.15-1~deb12u1",
                "amd64",
                "install ok installed",
                "openssl",
                "6163"
            ],
        ]
    );
}
