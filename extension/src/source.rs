//! Where rows come from: the `jailer-tables` read path, behind a narrow trait
//! so that the protocol code can be tested with a fake.

use crate::context::Equalities;
use std::path::PathBuf;

/// osquery's column option bits (`ColumnOptions` in osquery's tables.h).
pub mod options {
    pub const INDEX: u32 = 1;
    pub const REQUIRED: u32 = 2;
    pub const HIDDEN: u32 = 16;
}

/// One column as osquery registers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    pub name: String,
    /// `TEXT`, `INTEGER`, `BIGINT` or `DOUBLE`.
    pub ty: &'static str,
    /// Sum of [`options`] bits.
    pub options: u32,
}

/// One table as osquery registers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    pub name: String,
    pub columns: Vec<ColumnDef>,
}

pub use jailer_tables::{Cancel, Row, Value};

/// Why a table could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("no table named {0:?}")]
    UnknownTable(String),
    #[error("the generate of table {0} was abandoned: its client hung up")]
    Cancelled(String),
    #[error("cannot generate table {table}")]
    Generate {
        table: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The tables the extension serves.
pub trait TableSource: Send + Sync {
    /// Every table with its columns; asked once, at registration.
    fn tables(&self) -> Vec<TableDef>;
    /// The rows of `table`, narrowed (or not) by `eq`.
    /// Each row holds one value per column, in the table's column order.
    /// Once `cancel` is set nobody waits for the rows: give up early.
    fn generate(
        &self,
        table: &str,
        eq: &Equalities,
        cancel: &Cancel,
    ) -> Result<Vec<Row>, SourceError>;
}

/// The host paths the read path looks at.
#[derive(Debug, Clone)]
pub struct Paths {
    pub pool_root: PathBuf,
    pub proc_root: PathBuf,
    pub cgroup_root: PathBuf,
}
