//! `--query SQL`: the tables as embedded SQLite, for `jailer query` on hosts
//! without osquery. Prints an aligned table with a header, or with `--json`
//! a JSON array with one object per row (keys in column order).

use jailer_tables::{sql, Sources, TableError};
use std::io::Write;

/// Why a query printed nothing.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// SQLite refused or failed the statement. Its message says what is
    /// wrong (`no such table: x`); the error code under it (`Error code 1:
    /// SQL error or missing database`) adds nothing, so it is not kept.
    #[error("query failed: {message}")]
    Sql { message: String },
    #[error(transparent)]
    Table(TableError),
    #[error("cannot write the result")]
    Write(#[source] std::io::Error),
}

/// How the result is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

/// Runs `sql` over the tables of `src` and prints the result to `out`.
/// A reader that goes away (`| head`) is not an error.
pub fn run(
    src: &Sources,
    sql: &str,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), QueryError> {
    let (names, rows) = sql::query(src, sql).map_err(|e| match e {
        // The message may quote the statement: keep it on one line.
        TableError::Sql { source } => QueryError::Sql {
            message: source.to_string().replace(char::is_control, " "),
        },
        e => QueryError::Table(e),
    })?;
    let text = match format {
        Format::Table => table(&names, &rows),
        Format::Json => json(&names, &rows),
    };
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(QueryError::Write(e)),
        _ => Ok(()),
    }
}

/// A cell as the table shows it: text as it is (control characters
/// escaped, so a row stays one line), numbers as numbers, NULL empty.
fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => {
            if s.chars().any(char::is_control) {
                s.chars()
                    .map(|c| {
                        if c.is_control() {
                            c.escape_default().to_string()
                        } else {
                            c.to_string()
                        }
                    })
                    .collect()
            } else {
                s.clone()
            }
        }
        other => other.to_string(),
    }
}

/// Left-aligned columns two spaces apart under a header of column names.
fn table(names: &[String], rows: &[Vec<serde_json::Value>]) -> String {
    let cells: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(cell).collect()).collect();
    let mut widths: Vec<usize> = names.iter().map(|n| n.chars().count()).collect();
    for r in &cells {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut s = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, c) in cells.enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            l.push_str(c);
            let pad = widths[i].saturating_sub(c.chars().count());
            l.extend(std::iter::repeat(' ').take(pad));
        }
        s.push_str(l.trim_end());
        s.push('\n');
    };
    line(&mut names.iter().map(String::as_str));
    for r in &cells {
        line(&mut r.iter().map(String::as_str));
    }
    s
}

/// `[{"col": value, ...}, ...]`, one row a line, keys in column order.
fn json(names: &[String], rows: &[Vec<serde_json::Value>]) -> String {
    if rows.is_empty() {
        return "[]\n".to_string();
    }
    let keys: Vec<String> = names
        .iter()
        .map(|n| serde_json::Value::from(n.as_str()).to_string())
        .collect();
    let mut s = String::from("[\n");
    for (i, r) in rows.iter().enumerate() {
        s.push_str("  {");
        for (j, (k, v)) in keys.iter().zip(r).enumerate() {
            if j > 0 {
                s.push_str(", ");
            }
            s.push_str(k);
            s.push_str(": ");
            s.push_str(&v.to_string());
        }
        s.push('}');
        if i + 1 < rows.len() {
            s.push(',');
        }
        s.push('\n');
    }
    s.push_str("]\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> Sources {
        Sources::host("/nonexistent")
    }

    fn run_str(sql: &str, format: Format) -> Result<String, QueryError> {
        let mut out = Vec::new();
        run(&src(), sql, format, &mut out)?;
        Ok(String::from_utf8(out).expect("utf-8"))
    }

    #[test]
    fn table_is_aligned_under_a_header() {
        let out = run_str(
            "SELECT 1 AS n, 'a b' AS word, NULL AS empty UNION ALL SELECT 100, 'c', 0.5",
            Format::Table,
        )
        .expect("query");
        assert_eq!(out, "n    word  empty\n1    a b\n100  c     0.5\n", "{out}");
        let out = run_str("SELECT 'x\ny' AS v", Format::Table).expect("query");
        assert_eq!(out, "v\nx\\ny\n");
    }

    #[test]
    fn json_keeps_column_order_and_types() {
        let out = run_str(
            "SELECT 'z' AS zeta, 2 AS alpha, 0.5 AS d, NULL AS n",
            Format::Json,
        )
        .expect("query");
        assert_eq!(
            out,
            "[\n  {\"zeta\": \"z\", \"alpha\": 2, \"d\": 0.5, \"n\": null}\n]\n"
        );
        let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(v[0]["alpha"], 2);
        assert_eq!(
            run_str("SELECT 1 WHERE 0", Format::Json).expect("q"),
            "[]\n"
        );
    }

    #[test]
    fn empty_pool_has_empty_tables() {
        let out = run_str("SELECT name, state FROM jails", Format::Table).expect("query");
        assert_eq!(out, "name  state\n");
    }

    #[test]
    fn errors_are_table_errors() {
        let e = run_str("SELECT * FROM nope", Format::Json).expect_err("no table");
        assert_eq!(e.to_string(), "query failed: no such table: nope");
        assert!(std::error::Error::source(&e).is_none());
        let e = run_str("DELETE FROM jails", Format::Json).expect_err("write");
        assert!(e.to_string().contains("may not be modified"), "{e}");
        let e = run_str("SELECT\n1 +", Format::Table).expect_err("syntax");
        assert!(!e.to_string().contains('\n'), "{e}");
        let e = run_str("SELECT 1; SELECT 2", Format::Json).expect_err("two");
        assert!(
            matches!(e, QueryError::Table(TableError::OneStatement { .. })),
            "{e}"
        );
    }
}
