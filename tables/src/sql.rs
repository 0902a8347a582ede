//! The tables as SQLite virtual tables, for `jailer query` on hosts without
//! osquery.
//!
//! Each [`TableSpec`] is an eponymous virtual table (usable by its name with
//! no `CREATE VIRTUAL TABLE`). `best_index` hands equality constraints on
//! INDEX columns to `filter`, which passes them to [`generate`] as
//! [`Constraints`], the same push-down osquery does; SQLite checks every
//! constraint again, so a generator may return a superset.

use crate::{generate, tables, Constraints, Row, Sources, TableError, TableSpec, Value};
use rusqlite::limits::Limit;
use rusqlite::types::{Null, ValueRef};
use rusqlite::vtab::{
    eponymous_only_module, sqlite3_vtab, sqlite3_vtab_cursor, Context, IndexConstraintOp,
    IndexInfo, VTab, VTabConnection, VTabCursor, Values,
};
use rusqlite::Connection;
use std::os::raw::c_int;
use std::sync::Arc;

impl From<rusqlite::Error> for TableError {
    fn from(source: rusqlite::Error) -> Self {
        TableError::Sql { source }
    }
}

/// Column names and rows of a query's result, cells as JSON (numbers stay
/// numbers, NULL is null, a BLOB is its hex text).
pub type QueryResult = (Vec<String>, Vec<Vec<serde_json::Value>>);

/// Runs one read-only SQL statement over the tables (more than one, or
/// none, is an error).
pub fn query(src: &Sources, sql: &str) -> Result<QueryResult, TableError> {
    let conn = connection(src)?;
    let one = || TableError::OneStatement {
        sql: sql.to_string(),
    };
    let mut batch = rusqlite::Batch::new(&conn, sql);
    let mut stmt = batch.next()?.ok_or_else(one)?;
    if batch.next()?.is_some() {
        return Err(one());
    }
    if !stmt.readonly() {
        return Err(TableError::NotReadOnly {
            sql: sql.to_string(),
        });
    }
    let names: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
    let n = names.len();
    let mut out = Vec::new();
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let mut row = Vec::with_capacity(n);
        for i in 0..n {
            row.push(json(r.get_ref(i)?));
        }
        out.push(row);
    }
    Ok((names, out))
}

fn json(v: ValueRef<'_>) -> serde_json::Value {
    match v {
        ValueRef::Null => serde_json::Value::Null,
        ValueRef::Integer(i) => i.into(),
        ValueRef::Real(f) => serde_json::Number::from_f64(f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
        ValueRef::Blob(b) => b
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
            .into(),
    }
}

/// An in-memory SQLite connection with every table registered, and no
/// other database attachable.
pub fn connection(src: &Sources) -> Result<Connection, TableError> {
    let conn = Connection::open_in_memory()?;
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0);
    for spec in tables() {
        let aux = Arc::new(Aux {
            spec,
            src: src.clone(),
        });
        conn.create_module(spec.name, eponymous_only_module::<Tab>(), Some(aux))?;
    }
    Ok(conn)
}

/// What one registered table knows.
#[derive(Debug)]
struct Aux {
    spec: &'static TableSpec,
    src: Sources,
}

/// The rows a table may have: used for cost estimates only, so that SQLite
/// puts the small `jails` table outside a join and pushes names into the
/// others.
fn estimated_rows(spec: &TableSpec) -> f64 {
    match spec.name {
        "jails" => 100.0,
        "jail_resources" | "jail_mappings" => 200.0,
        "jail_capabilities" => 100_000.0,
        _ => 10_000.0,
    }
}

#[repr(C)]
struct Tab {
    /// SQLite's part; must come first.
    base: sqlite3_vtab,
    aux: Arc<Aux>,
}

fn schema(spec: &TableSpec) -> String {
    let cols: Vec<String> = spec
        .columns
        .iter()
        .map(|c| {
            let hidden = if c.options.hidden { " HIDDEN" } else { "" };
            format!("\"{}\" {}{hidden}", c.name, c.ty.as_str())
        })
        .collect();
    format!("CREATE TABLE x({})", cols.join(", "))
}

// SAFETY: `Tab` is `#[repr(C)]` with `sqlite3_vtab` as its first field, as
// the trait requires.
unsafe impl<'vtab> VTab<'vtab> for Tab {
    type Aux = Arc<Aux>;
    type Cursor = Cursor<'vtab>;

    fn connect(
        _db: &mut VTabConnection,
        aux: Option<&Arc<Aux>>,
        _args: &[&[u8]],
    ) -> rusqlite::Result<(String, Tab)> {
        let aux = aux.cloned().ok_or_else(|| {
            rusqlite::Error::ModuleError("table registered without its spec".into())
        })?;
        Ok((
            schema(aux.spec),
            Tab {
                base: sqlite3_vtab::default(),
                aux,
            },
        ))
    }

    fn best_index(&self, info: &mut IndexInfo) -> rusqlite::Result<()> {
        let spec = self.aux.spec;
        let mut used: Vec<(usize, usize)> = Vec::new(); // (constraint, column)
        for (i, c) in info.constraints().enumerate() {
            let Ok(col) = usize::try_from(c.column()) else {
                continue; // rowid
            };
            let indexed = spec.columns.get(col).is_some_and(|c| c.options.index);
            if indexed
                && c.is_usable()
                && c.operator() == IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_EQ
            {
                used.push((i, col));
            }
        }
        let missing_required = spec
            .columns
            .iter()
            .enumerate()
            .any(|(i, c)| c.options.required && !used.iter().any(|(_, col)| *col == i));
        for (argv, (i, _)) in used.iter().enumerate() {
            let mut u = info.constraint_usage(*i);
            u.set_argv_index(c_int::try_from(argv + 1).unwrap_or(c_int::MAX));
            // SQLite checks the constraint again: generators may return more.
            u.set_omit(false);
        }
        let idx: Vec<String> = used.iter().map(|(_, col)| col.to_string()).collect();
        info.set_idx_str(&idx.join(","));
        let all = estimated_rows(spec);
        let rows = if used.is_empty() {
            all
        } else {
            (all / 100.0).max(1.0)
        };
        let cost = if missing_required { 1e18 } else { rows * 10.0 };
        info.set_estimated_rows(rows as i64);
        info.set_estimated_cost(cost);
        Ok(())
    }

    fn open(&'vtab mut self) -> rusqlite::Result<Cursor<'vtab>> {
        Ok(Cursor {
            base: sqlite3_vtab_cursor::default(),
            aux: &self.aux,
            rows: Vec::new(),
            i: 0,
        })
    }
}

#[repr(C)]
struct Cursor<'vtab> {
    /// SQLite's part; must come first.
    base: sqlite3_vtab_cursor,
    aux: &'vtab Aux,
    rows: Vec<Row>,
    i: usize,
}

/// A constraint's value as osquery would send it: text.
fn as_text(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
    }
}

// SAFETY: `Cursor` is `#[repr(C)]` with `sqlite3_vtab_cursor` as its first
// field, as the trait requires.
unsafe impl VTabCursor for Cursor<'_> {
    fn filter(
        &mut self,
        _idx_num: c_int,
        idx_str: Option<&str>,
        args: &Values<'_>,
    ) -> rusqlite::Result<()> {
        let spec = self.aux.spec;
        let cols = idx_str.unwrap_or("").split(',').filter(|s| !s.is_empty());
        let mut c = Constraints::new();
        let mut never = false;
        for (col, v) in cols.zip(args.iter()) {
            let Some(column) = col.parse::<usize>().ok().and_then(|i| spec.columns.get(i)) else {
                continue;
            };
            match as_text(v) {
                Some(v) => c.add_eq(column.name, v),
                // `col = NULL` is never true.
                None => never = true,
            }
        }
        self.rows = if never {
            Vec::new()
        } else {
            generate(spec.name, &self.aux.src, &c)
                .map_err(|e| rusqlite::Error::ModuleError(jailer::error_chain(&e)))?
        };
        self.i = 0;
        Ok(())
    }

    fn next(&mut self) -> rusqlite::Result<()> {
        self.i += 1;
        Ok(())
    }

    fn eof(&self) -> bool {
        self.i >= self.rows.len()
    }

    fn column(&self, ctx: &mut Context, col: c_int) -> rusqlite::Result<()> {
        let v = usize::try_from(col)
            .ok()
            .and_then(|c| self.rows.get(self.i)?.get(c));
        match v {
            Some(Value::Text(s)) => ctx.set_result(s),
            Some(Value::Integer(i)) => ctx.set_result(i),
            Some(Value::Double(d)) => ctx.set_result(d),
            Some(Value::Null) | None => ctx.set_result(&Null),
        }
    }

    fn rowid(&self) -> rusqlite::Result<i64> {
        Ok(i64::try_from(self.i).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_declare_osquery_types() {
        let s = schema(&tables()[0]);
        assert!(
            s.starts_with("CREATE TABLE x(\"name\" TEXT, \"id\" TEXT"),
            "{s}"
        );
        assert!(s.contains("\"cpu_limit\" DOUBLE"), "{s}");
    }

    #[test]
    fn writes_and_attach_are_refused() {
        let src = Sources::host("/nonexistent");
        let e = query(&src, "CREATE TABLE t(x)").expect_err("write");
        assert!(matches!(e, TableError::NotReadOnly { .. }), "{e}");
        assert!(query(&src, "ATTACH '/tmp/x.db' AS x").is_err());
        assert!(query(&src, "SELECT * FROM nope").is_err());
        assert!(query(&src, "").is_err());
        assert!(query(&src, "SELECT 1; CREATE TABLE t(x)").is_err());
        let (cols, rows) = query(&src, "SELECT 1 AS one, 'a', NULL, 0.5").expect("query");
        assert_eq!(cols[0], "one");
        assert_eq!(
            rows,
            vec![vec![
                1.into(),
                "a".into(),
                serde_json::Value::Null,
                0.5.into()
            ]]
        );
    }
}
