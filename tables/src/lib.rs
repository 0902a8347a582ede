//! The read path: pool state, `/proc` and cgroupfs turned into typed rows.
//!
//! Tables are data: each is a constant list of [`Column`]s plus a generator.
//! This crate reads `jailer`'s record types and never calls code that changes
//! the host. The tables themselves arrive with the osquery extension; what is
//! here is the column model they and `docs/tables.md` share.

use serde::Serialize;

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
}
