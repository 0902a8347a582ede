//! osquery's query context: the `context` string of a `generate` request.
//!
//! osquery serialises the WHERE clause it could push down as JSON, e.g.
//! `{"constraints":[{"name":"jail","list":[{"op":2,"expr":"web"}],"affinity":"TEXT"}],
//! "colsUsed":["jail","pid"],"colsUsedBitset":3}`. Only equality (`op` 2) is
//! used here: it narrows what a generator reads. Every other operator is left
//! to SQLite, which filters the rows again whatever the generator returns.

use crate::excerpt::{excerpt, Excerpt};
use std::collections::{BTreeMap, BTreeSet};

/// SQLite's `SQLITE_INDEX_CONSTRAINT_EQ`, as osquery forwards it.
pub const OP_EQUALS: u64 = 2;

/// Equality constraints: column -> the values it was compared with.
///
/// Several values for one column are a superset of what the query wants
/// (`a = 1 AND a = 2` selects nothing), which is allowed: constraints only
/// narrow the work and SQLite filters again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Equalities(BTreeMap<String, BTreeSet<String>>);

impl Equalities {
    /// The values `column` must equal, if the query constrains it.
    #[cfg(test)]
    pub fn get(&self, column: &str) -> Option<&BTreeSet<String>> {
        self.0.get(column)
    }

    /// Every constrained column with its values.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &BTreeSet<String>)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The constrained columns with their number of values, e.g.
    /// `name(3) pid(1)`, for the log (never the values themselves).
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(c, v)| format!("{}({})", Excerpt(c), v.len()))
            .collect();
        parts.join(" ")
    }

    /// Adds `column = value`.
    pub fn insert(&mut self, column: &str, value: &str) {
        self.0
            .entry(column.to_string())
            .or_default()
            .insert(value.to_string());
    }
}

/// Why a context could not be used. `column` holds the column name as
/// [`excerpt`] shows it (quoted, escaped, cut), not the raw input.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("query context is not JSON")]
    Json(#[source] serde_json::Error),
    #[error("query context is not an object")]
    NotObject,
    #[error("query context field `constraints` is not a list")]
    ConstraintsNotList,
    #[error("query context constraint #{index} has no column `name`")]
    NoName { index: usize },
    #[error("query context constraint on column {column} has no `list` of operations")]
    NoList { column: String },
    #[error("query context constraint on column {column} has an operation without a numeric `op`")]
    BadOp { column: String },
    #[error("query context constraint on column {column} has an operation without `expr`")]
    BadExpr { column: String },
}

/// Parses osquery's context JSON into its equality constraints. An empty
/// string (or a request without context) means no constraints.
pub fn parse(context: &str) -> Result<Equalities, ContextError> {
    let mut eq = Equalities::default();
    if context.trim().is_empty() {
        return Ok(eq);
    }
    let doc: serde_json::Value = serde_json::from_str(context).map_err(ContextError::Json)?;
    let obj = doc.as_object().ok_or(ContextError::NotObject)?;
    let constraints = match obj.get("constraints") {
        None | Some(serde_json::Value::Null) => return Ok(eq),
        Some(c) => c.as_array().ok_or(ContextError::ConstraintsNotList)?,
    };
    for (index, c) in constraints.iter().enumerate() {
        let column = c
            .get("name")
            .and_then(|n| n.as_str())
            .ok_or(ContextError::NoName { index })?;
        let list =
            c.get("list")
                .and_then(|l| l.as_array())
                .ok_or_else(|| ContextError::NoList {
                    column: excerpt(column),
                })?;
        for item in list {
            let op = item
                .get("op")
                .and_then(op_number)
                .ok_or_else(|| ContextError::BadOp {
                    column: excerpt(column),
                })?;
            let expr = match item.get("expr") {
                Some(serde_json::Value::String(s)) => s.clone(),
                // osquery sends strings; numbers are accepted all the same.
                Some(serde_json::Value::Number(n)) => n.to_string(),
                _ => {
                    return Err(ContextError::BadExpr {
                        column: excerpt(column),
                    })
                }
            };
            if op == OP_EQUALS {
                eq.insert(column, &expr);
            }
        }
    }
    Ok(eq)
}

/// `op` as osquery writes it (a number; some writers quote it).
fn op_number(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(eq: &Equalities, col: &str) -> Vec<String> {
        eq.get(col)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn equality_is_kept_other_operators_are_left_to_sqlite() {
        // As osqueryd 5 sends it for
        // SELECT pid FROM jail_processes WHERE jail = 'web' AND pid > 10.
        let ctx = r#"{"constraints":[
            {"name":"jail","list":[{"op":2,"expr":"web"}],"affinity":"TEXT"},
            {"name":"pid","list":[{"op":4,"expr":"10"}],"affinity":"INTEGER"},
            {"name":"name","list":[],"affinity":"TEXT"}],
            "colsUsed":["jail","pid"],"colsUsedBitset":3}"#;
        let eq = parse(ctx).expect("parse");
        assert_eq!(values(&eq, "jail"), ["web"]);
        assert!(eq.get("pid").is_none());
        assert!(eq.get("name").is_none());
    }

    #[test]
    fn several_values_collect() {
        let ctx = r#"{"constraints":[{"name":"pid","list":[{"op":2,"expr":"7"},{"op":2,"expr":3}],"affinity":"INTEGER"}]}"#;
        let eq = parse(ctx).expect("parse");
        assert_eq!(values(&eq, "pid"), ["3", "7"]);
    }

    #[test]
    fn empty_contexts_mean_no_constraints() {
        for ctx in [
            "",
            "  ",
            "{}",
            r#"{"constraints":[]}"#,
            r#"{"constraints":null}"#,
        ] {
            assert!(parse(ctx).expect(ctx).is_empty(), "{ctx}");
        }
    }

    #[test]
    fn malformed_contexts_are_errors_not_panics() {
        for ctx in [
            "{",
            "[]",
            "42",
            r#"{"constraints":{}}"#,
            r#"{"constraints":[{"list":[]}]}"#,
            r#"{"constraints":[{"name":"jail"}]}"#,
            r#"{"constraints":[{"name":"jail","list":[{"expr":"x"}]}]}"#,
            r#"{"constraints":[{"name":"jail","list":[{"op":2}]}]}"#,
            r#"{"constraints":[{"name":"jail","list":[{"op":-2,"expr":"x"}]}]}"#,
            r#"{"constraints":[{"name":"jail","list":[{"op":2,"expr":["x"]}]}]}"#,
        ] {
            let e = parse(ctx).expect_err(ctx);
            assert!(!e.to_string().is_empty());
        }
    }
}
