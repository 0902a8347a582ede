//! The read path: pool state, `/proc` and cgroupfs turned into typed rows.
//!
//! Tables are data: each is a constant list of [`Column`]s ([`tables`]) plus
//! a generator ([`generate`]). This crate reads `jailer`'s record types and
//! never calls code that changes the host; every host path comes in through
//! [`Sources`], so the tables run on fixture trees in tests. `/proc` is read
//! and parsed by [`jailer::procinfo`], as the runtime reads it. The same tables
//! serve osquery (through `jailer-extension`) and embedded SQLite
//! ([`sql::query`]); `docs/tables.md` is rendered from them ([`markdown`]).

mod capnames;
mod cgroup;
mod gen;
mod specs;
pub mod sql;

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// An osquery column type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ColumnType {
    Text,
    Integer,
    Bigint,
    Double,
}

/// osquery column options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ColumnOptions {
    /// The generator narrows its work on `=` constraints on this column.
    pub index: bool,
    /// A query must constrain this column.
    pub required: bool,
    /// Not shown by `SELECT *`.
    pub hidden: bool,
}

/// One column of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Column {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    pub options: ColumnOptions,
    pub description: &'static str,
}

impl Column {
    /// A plain column.
    pub const fn new(name: &'static str, ty: ColumnType, description: &'static str) -> Column {
        Column {
            name,
            ty,
            options: ColumnOptions {
                index: false,
                required: false,
                hidden: false,
            },
            description,
        }
    }

    /// The same column, marked as an index.
    pub const fn index(mut self) -> Column {
        self.options.index = true;
        self
    }

    /// The same column, marked as required.
    pub const fn required(mut self) -> Column {
        self.options.required = true;
        self
    }

    /// The same column, marked as hidden.
    pub const fn hidden(mut self) -> Column {
        self.options.hidden = true;
        self
    }
}

impl ColumnType {
    /// The osquery (and SQLite declared) type name.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::Text => "TEXT",
            ColumnType::Integer => "INTEGER",
            ColumnType::Bigint => "BIGINT",
            ColumnType::Double => "DOUBLE",
        }
    }
}

/// One table: its name, what it shows, and its columns in row order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TableSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub columns: &'static [Column],
}

impl TableSpec {
    /// The position of a column.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// A cell. `Integer` serves both INTEGER and BIGINT columns.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Integer(i64),
    Double(f64),
    Null,
}

impl Value {
    /// Whether this value may stand in a column of type `ty` (`Null` may
    /// stand anywhere, though the generators never produce it).
    pub fn fits(&self, ty: ColumnType) -> bool {
        matches!(
            (self, ty),
            (Value::Text(_), ColumnType::Text)
                | (Value::Integer(_), ColumnType::Integer | ColumnType::Bigint)
                | (Value::Double(_), ColumnType::Double)
                | (Value::Null, _)
        )
    }

    /// As JSON: numbers stay numbers.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Text(s) => serde_json::Value::String(s.clone()),
            Value::Integer(i) => (*i).into(),
            Value::Double(d) => serde_json::Number::from_f64(*d)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Null => serde_json::Value::Null,
        }
    }

    /// As osquery's Thrift rows carry every cell: a string (`Null` is empty).
    pub fn to_osquery_string(&self) -> String {
        match self {
            Value::Text(s) => s.clone(),
            Value::Integer(i) => i.to_string(),
            Value::Double(d) => d.to_string(),
            Value::Null => String::new(),
        }
    }
}

/// A row: one value per column, in column order.
pub type Row = Vec<Value>;

/// Equality constraints pushed down from a query: column name to the values
/// it was compared with, as strings (osquery sends them so). A generator
/// may return any superset of the matching rows: osquery and SQLite filter
/// again. Several values for one column (`IN (...)`) mean any of them; they
/// are kept as a set, so adding n values costs O(n log n), not O(n²).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Constraints {
    eq: BTreeMap<String, BTreeSet<String>>,
}

impl Constraints {
    /// No constraints: every row.
    pub fn new() -> Constraints {
        Constraints::default()
    }

    /// Adds `column = value` (a value already there is kept once).
    pub fn add_eq(&mut self, column: &str, value: impl Into<String>) {
        let v = value.into();
        match self.eq.get_mut(column) {
            Some(vals) => {
                vals.insert(v);
            }
            None => {
                self.eq.insert(column.to_string(), BTreeSet::from([v]));
            }
        }
    }

    /// The same constraints plus `column = value`.
    pub fn with_eq(mut self, column: &str, value: impl Into<String>) -> Constraints {
        self.add_eq(column, value);
        self
    }

    /// The values `column` must equal one of, or `None` when unconstrained.
    pub fn eq(&self, column: &str) -> Option<&BTreeSet<String>> {
        self.eq.get(column)
    }

    pub fn is_empty(&self) -> bool {
        self.eq.is_empty()
    }
}

/// Where the host shows btrfs filesystems and their quota groups.
pub const HOST_BTRFS_SYSFS: &str = jailer::sys::btrfs::SYSFS;

/// Where running instances keep their records.
pub const HOST_RUN_ROOT: &str = jailer::record::RUN_ROOT;

/// Where the host's state is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// The pool root (`/var/lib/jailer`).
    pub pool_root: PathBuf,
    /// `/proc`.
    pub proc_root: PathBuf,
    /// The cgroup root (`/sys/fs/cgroup`); recorded cgroup paths under
    /// `/sys/fs/cgroup` are read under it instead.
    pub cgroup_root: PathBuf,
    /// `/sys/fs/btrfs`: the pool's quota groups (a jail's disk use).
    pub btrfs_sysfs: PathBuf,
    /// `/run/jailer`: the running instances' records, from which a jail's
    /// state is derived.
    pub run_root: PathBuf,
}

impl Sources {
    /// The real host's paths with the given pool root.
    pub fn host(pool_root: impl Into<PathBuf>) -> Sources {
        Sources {
            pool_root: pool_root.into(),
            proc_root: PathBuf::from("/proc"),
            cgroup_root: PathBuf::from(cgroup::HOST_CGROUP_ROOT),
            btrfs_sysfs: PathBuf::from(HOST_BTRFS_SYSFS),
            run_root: PathBuf::from(jailer::record::RUN_ROOT),
        }
    }
}

/// Why a query failed. A broken jail is never one of these: it is logged and
/// skipped, or shown partly filled.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("no table named {name:?}; the tables are {}", table_names())]
    UnknownTable { name: String },
    #[error("cannot list jails in {}", path.display())]
    ListJails {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the generate was abandoned: its client hung up")]
    Cancelled,
    #[error("query failed")]
    Sql {
        #[source]
        source: rusqlite::Error,
    },
    #[error("only read-only statements are allowed: {sql:?}")]
    NotReadOnly { sql: String },
    #[error("give exactly one SQL statement: {sql:?}")]
    OneStatement { sql: String },
}

fn table_names() -> String {
    tables()
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every table.
pub fn tables() -> &'static [TableSpec] {
    specs::TABLES
}

/// The table named `name`.
pub fn table(name: &str) -> Option<&'static TableSpec> {
    tables().iter().find(|t| t.name == name)
}

/// Every table's name, description and columns, as `--spec` prints them:
/// `[{"name", "description", "columns": [{"name", "type", "options":
/// {"index", "required", "hidden"}, "description"}]}]`.
pub fn spec_json() -> serde_json::Value {
    serde_json::to_value(tables()).unwrap_or(serde_json::Value::Null)
}

/// The rows of `table` that may match `c` (a superset: callers filter again).
/// Only an unknown table or an unreadable pool fails; a broken jail is
/// logged with `tracing::warn` and skipped or partly filled.
pub fn generate(table: &str, src: &Sources, c: &Constraints) -> Result<Vec<Row>, TableError> {
    gen::generate(table, src, c, &Cancel::new())
}

/// Like [`generate`], but gives up with [`TableError::Cancelled`] (between
/// jails, and between processes) once `cancel` is set.
pub fn generate_cancellable(
    table: &str,
    src: &Sources,
    c: &Constraints,
    cancel: &Cancel,
) -> Result<Vec<Row>, TableError> {
    gen::generate(table, src, c, cancel)
}

/// Set (from another thread) when whoever asked for a generate no longer
/// waits for it. Clones share one flag.
#[derive(Debug, Clone, Default)]
pub struct Cancel(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether some clone of this flag is held elsewhere.
    pub fn is_shared(&self) -> bool {
        std::sync::Arc::strong_count(&self.0) > 1
    }

    /// `Err(Cancelled)` once set.
    pub fn check(&self) -> Result<(), TableError> {
        if self.is_cancelled() {
            Err(TableError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// `docs/tables.md`, rendered from the specs.
pub fn markdown() -> String {
    let mut s = String::from(
        "# Tables\n\n<!-- Generated from the column specs in tables/src/specs.rs by \
         `UPDATE_DOCS=1 cargo test -p jailer-tables --test docs`; do not edit. -->\n\n\
         Types follow osquery: TEXT, INTEGER, BIGINT, DOUBLE. Times are UNIX seconds, \
         booleans are 0 or 1, and unknown or unlimited numbers are -1. An `index` column \
         narrows the work when a query compares it with `=` (or `IN`).\n",
    );
    for t in tables() {
        s.push_str(&format!("\n## `{}`\n\n{}\n\n", t.name, t.description));
        s.push_str("| column | type | options | description |\n|---|---|---|---|\n");
        for c in t.columns {
            let mut opts = Vec::new();
            if c.options.index {
                opts.push("index");
            }
            if c.options.required {
                opts.push("required");
            }
            if c.options.hidden {
                opts.push("hidden");
            }
            s.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                c.name,
                c.ty.as_str(),
                opts.join(", "),
                c.description.replace('|', "\\|")
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_serialize_as_osquery_names_them() {
        let c = Column::new("name", ColumnType::Text, "jail name").index();
        let v = serde_json::to_value(c).expect("json");
        assert_eq!(v["type"], "TEXT");
        assert_eq!(v["options"]["index"], true);
        assert_eq!(v["options"]["hidden"], false);
        assert_eq!(
            serde_json::to_value(ColumnType::Bigint).expect("json"),
            "BIGINT"
        );
    }

    #[test]
    fn specs_are_well_formed() {
        let mut names = std::collections::BTreeSet::new();
        for t in tables() {
            assert!(names.insert(t.name), "duplicate table {}", t.name);
            let mut cols = std::collections::BTreeSet::new();
            for c in t.columns {
                assert!(cols.insert(c.name), "{}.{} twice", t.name, c.name);
                assert!(!c.description.is_empty(), "{}.{}", t.name, c.name);
            }
            let key = if t.name == "jails" { "name" } else { "jail" };
            assert!(
                t.columns[0].name == key && t.columns[0].options.index,
                "{}",
                t.name
            );
        }
        let spec = spec_json();
        assert_eq!(spec.as_array().map(Vec::len), Some(7));
        assert_eq!(spec[1]["name"], "jail_processes");
        assert_eq!(spec[1]["columns"][1]["name"], "pid");
        assert_eq!(spec[1]["columns"][1]["options"]["index"], true);
        assert_eq!(spec[0]["columns"][16]["type"], "DOUBLE");
    }

    #[test]
    fn constraints_collect_values() {
        let c = Constraints::new()
            .with_eq("jail", "a")
            .with_eq("jail", "b")
            .with_eq("jail", "a");
        let vals: Vec<&str> = c
            .eq("jail")
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        assert_eq!(vals, ["a", "b"]);
        assert_eq!(c.eq("pid"), None);
        assert!(Constraints::new().is_empty());
    }

    #[test]
    fn many_equality_values_are_kept_once_each_in_any_insertion_order() {
        let mut c = Constraints::new();
        for i in (0..40_000).rev() {
            c.add_eq("name", format!("j{i}"));
            c.add_eq("name", format!("j{}", i / 2));
        }
        let vals = c.eq("name").expect("constrained");
        assert_eq!(vals.len(), 40_000);
        assert!(vals.contains("j0") && vals.contains("j39999") && !vals.contains("j40000"));
        assert_eq!(c.eq("jail"), None);
    }

    #[test]
    fn unknown_table_is_an_error() {
        let src = Sources::host("/nonexistent");
        let e = generate("nope", &src, &Constraints::new()).expect_err("unknown");
        assert!(e.to_string().contains("jail_processes"), "{e}");
    }

    #[test]
    fn a_cancelled_generate_stops_before_reading_any_jail() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("jails/web")).expect("mkdir");
        let src = Sources::host(dir.path());
        let cancel = Cancel::new();
        let rows = generate_cancellable("jails", &src, &Constraints::new(), &cancel)
            .expect("not cancelled");
        assert_eq!(rows.len(), 1);
        cancel.clone().cancel();
        for table in ["jails", "jail_processes", "jail_mounts"] {
            let e = generate_cancellable(table, &src, &Constraints::new(), &cancel)
                .expect_err("cancelled");
            assert!(matches!(e, TableError::Cancelled), "{table}: {e}");
        }
    }

    #[test]
    fn values_render() {
        assert_eq!(Value::Integer(-1).to_osquery_string(), "-1");
        assert_eq!(Value::Double(0.5).to_osquery_string(), "0.5");
        assert_eq!(Value::Double(2.0).to_json(), serde_json::json!(2.0));
        assert!(Value::Integer(1).fits(ColumnType::Bigint));
        assert!(!Value::Text(String::new()).fits(ColumnType::Integer));
    }
}
