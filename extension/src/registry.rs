//! The extension's table plugins in osquery's terms: routes (the column list
//! sent at registration and for `columns`), and `call` requests answered
//! with rows, which osquery takes as maps from column name to string.
//!
//! Rows are written to the wire as they are ([`Reply::write`]) rather than
//! first turned into the generated `ExtensionResponse` (a `BTreeMap` with
//! owned keys per row): on a 120,000-row `jail_capabilities` that halves the
//! reply time and saves a hundred megabytes of peak memory.

use crate::context;
use crate::excerpt::Excerpt;
use crate::osquery_thrift::{
    ExtensionPluginRequest, ExtensionPluginResponse, ExtensionRegistry, ExtensionResponse,
    ExtensionRouteTable, ExtensionStatus,
};
use crate::source::{Cancel, ColumnDef, Row, SourceError, TableDef, TableSource, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use thrift::protocol::{
    TFieldIdentifier, TListIdentifier, TMapIdentifier, TOutputProtocol, TSerializable,
    TStructIdentifier, TType,
};

/// osquery's name of the registry that holds table plugins.
pub const TABLE_REGISTRY: &str = "table";

/// The tables, their routes and the source of their rows.
pub struct Tables {
    defs: Vec<TableDef>,
    source: Box<dyn TableSource>,
    uuid: i64,
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tables")
            .field("tables", &self.defs.len())
            .field("uuid", &self.uuid)
            .finish()
    }
}

impl Tables {
    pub fn new(source: Box<dyn TableSource>) -> Tables {
        Tables {
            defs: source.tables(),
            source,
            uuid: 0,
        }
    }

    /// Sets the uuid the manager gave this extension (echoed in statuses).
    pub fn set_uuid(&mut self, uuid: i64) {
        self.uuid = uuid;
    }

    pub fn defs(&self) -> &[TableDef] {
        &self.defs
    }

    /// What `registerExtension` sends: `"table"` -> every table -> its
    /// routes. The other registries are sent empty, as osquery's own SDKs do.
    pub fn registry(&self) -> ExtensionRegistry {
        let tables: ExtensionRouteTable = self
            .defs
            .iter()
            .map(|d| (d.name.clone(), routes(d)))
            .collect();
        let mut reg = ExtensionRegistry::new();
        reg.insert("config".into(), ExtensionRouteTable::new());
        reg.insert("logger".into(), ExtensionRouteTable::new());
        reg.insert(TABLE_REGISTRY.into(), tables);
        reg
    }

    /// Answers osquery's `call(registry, item, request)`. Never panics on
    /// what osquery sends: anything unusable is an error status.
    pub fn call(&self, registry: &str, item: &str, request: &ExtensionPluginRequest) -> Reply<'_> {
        self.call_cancellable(registry, item, request, &Cancel::new())
    }

    /// [`Tables::call`], giving up on a generate once `cancel` is set.
    pub fn call_cancellable(
        &self,
        registry: &str,
        item: &str,
        request: &ExtensionPluginRequest,
        cancel: &Cancel,
    ) -> Reply<'_> {
        if registry != TABLE_REGISTRY {
            return self.failure(format!(
                "this extension has no {} plugins, only tables",
                Excerpt(registry)
            ));
        }
        let Some(def) = self.defs.iter().find(|d| d.name == item) else {
            return self.failure(format!(
                "no table named {} in this extension",
                Excerpt(item)
            ));
        };
        match request.get("action").map(String::as_str) {
            Some("columns") => Reply::Response(self.success(routes(def))),
            Some("generate") => self.generate(def, request, cancel),
            Some(other) => self.failure(format!(
                "table {item} is read-only and answers `generate` and `columns`, not {}",
                Excerpt(other)
            )),
            None => self.failure(format!("request to table {item} has no action")),
        }
    }

    fn generate<'a>(
        &self,
        def: &'a TableDef,
        request: &ExtensionPluginRequest,
        cancel: &Cancel,
    ) -> Reply<'a> {
        let ctx = request.get("context").map(String::as_str).unwrap_or("");
        let eq = match context::parse(ctx) {
            Ok(eq) => eq,
            Err(e) => {
                tracing::warn!(table = %def.name, context = %Excerpt(ctx), "{e}");
                return self.failure(format!("table {}: {e}", def.name));
            }
        };
        let started = std::time::Instant::now();
        match self.source.generate(&def.name, &eq, cancel) {
            Ok(rows) => {
                tracing::debug!(
                    table = %def.name, constraints = %eq.summary(), rows = rows.len(),
                    elapsed_us = started.elapsed().as_micros() as u64, "generated"
                );
                Reply::Rows {
                    columns: &def.columns,
                    rows,
                    uuid: self.uuid,
                }
            }
            // Nobody reads this reply: no warning.
            Err(e @ SourceError::Cancelled(_)) => self.failure(e.to_string()),
            Err(e) => {
                let msg = jailer::error_chain(&e);
                tracing::warn!("{msg}");
                self.failure(msg)
            }
        }
    }

    fn success(&self, response: ExtensionPluginResponse) -> ExtensionResponse {
        ExtensionResponse::new(ok_status(self.uuid), response)
    }

    fn failure<'a>(&self, message: String) -> Reply<'a> {
        Reply::Response(ExtensionResponse::new(
            ExtensionStatus::new(1, message, self.uuid),
            ExtensionPluginResponse::new(),
        ))
    }
}

fn ok_status(uuid: i64) -> ExtensionStatus {
    ExtensionStatus::new(0, "OK".to_string(), uuid)
}

/// The answer to a `call`.
#[derive(Debug)]
pub enum Reply<'a> {
    /// A table's rows (success).
    Rows {
        columns: &'a [ColumnDef],
        rows: Vec<Row>,
        uuid: i64,
    },
    /// Routes, or an error status.
    Response(ExtensionResponse),
}

impl Reply<'_> {
    /// Writes the reply as osquery's `ExtensionResponse` struct: field 1 the
    /// status, field 2 a list of maps, one per row, from column name to
    /// value; NULL values are left out of their row's map.
    pub fn write(&self, o: &mut dyn TOutputProtocol) -> thrift::Result<()> {
        let (columns, rows, uuid) = match self {
            Reply::Response(r) => return r.write_to_out_protocol(o),
            Reply::Rows {
                columns,
                rows,
                uuid,
            } => (columns, rows, *uuid),
        };
        o.write_struct_begin(&TStructIdentifier::new("ExtensionResponse"))?;
        o.write_field_begin(&TFieldIdentifier::new("status", TType::Struct, 1))?;
        ok_status(uuid).write_to_out_protocol(o)?;
        o.write_field_end()?;
        o.write_field_begin(&TFieldIdentifier::new("response", TType::List, 2))?;
        o.write_list_begin(&TListIdentifier::new(TType::Map, wire_len(rows.len())?))?;
        let mut num = String::with_capacity(32);
        for row in rows {
            let present = row.iter().filter(|v| !matches!(v, Value::Null)).count();
            o.write_map_begin(&TMapIdentifier::new(
                TType::String,
                TType::String,
                wire_len(present)?,
            ))?;
            for (c, v) in columns.iter().zip(row) {
                let text = match v {
                    Value::Null => continue,
                    Value::Text(s) => s.as_str(),
                    Value::Integer(i) => {
                        num.clear();
                        let _ = write!(num, "{i}");
                        num.as_str()
                    }
                    Value::Double(d) => {
                        num.clear();
                        let _ = write!(num, "{d}");
                        num.as_str()
                    }
                };
                o.write_string(&c.name)?;
                o.write_string(text)?;
            }
            o.write_map_end()?;
        }
        o.write_list_end()?;
        o.write_field_end()?;
        o.write_field_stop()?;
        o.write_struct_end()
    }

    /// The same reply as the generated type (what a generic Thrift handler
    /// would return).
    pub fn into_response(self) -> ExtensionResponse {
        match self {
            Reply::Response(r) => r,
            Reply::Rows {
                columns,
                rows,
                uuid,
            } => {
                let rows: ExtensionPluginResponse = rows
                    .into_iter()
                    .map(|row| {
                        columns
                            .iter()
                            .zip(row)
                            .filter(|(_, v)| !matches!(v, Value::Null))
                            .map(|(c, v)| (c.name.clone(), v.to_osquery_string()))
                            .collect::<BTreeMap<String, String>>()
                    })
                    .collect();
                ExtensionResponse::new(ok_status(uuid), rows)
            }
        }
    }
}

/// A collection size as Thrift's binary protocol carries it.
fn wire_len(n: usize) -> thrift::Result<i32> {
    i32::try_from(n).map_err(|_| {
        thrift::Error::Protocol(thrift::ProtocolError::new(
            thrift::ProtocolErrorKind::SizeLimit,
            format!("{n} entries do not fit in one Thrift collection"),
        ))
    })
}

/// A table's routes: one `{"id": "column", "name", "type", "op"}` map per
/// column, `op` being the option bits as a decimal string.
pub fn routes(def: &TableDef) -> ExtensionPluginResponse {
    def.columns
        .iter()
        .map(|c| {
            BTreeMap::from([
                ("id".to_string(), "column".to_string()),
                ("name".to_string(), c.name.clone()),
                ("type".to_string(), c.ty.to_string()),
                ("op".to_string(), c.options.to_string()),
            ])
        })
        .collect()
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::context::Equalities;
    use crate::source::{options, ColumnDef, SourceError};
    use std::sync::{Arc, Mutex};
    use thrift::protocol::{TBinaryInputProtocol, TBinaryOutputProtocol};

    /// Two tables; records the constraints each generate was given.
    #[derive(Default)]
    pub struct Fake {
        pub seen: Arc<Mutex<Vec<Equalities>>>,
    }

    impl TableSource for Fake {
        fn tables(&self) -> Vec<TableDef> {
            let col = |name: &str, ty, options| ColumnDef {
                name: name.into(),
                ty,
                options,
            };
            vec![
                TableDef {
                    name: "jails".into(),
                    columns: vec![
                        col("name", "TEXT", options::INDEX),
                        col("pid", "BIGINT", 0),
                        col("cpu_limit", "DOUBLE", 0),
                    ],
                },
                TableDef {
                    name: "broken".into(),
                    columns: vec![col("x", "INTEGER", options::HIDDEN)],
                },
            ]
        }

        fn generate(
            &self,
            table: &str,
            eq: &Equalities,
            _cancel: &Cancel,
        ) -> Result<Vec<Row>, SourceError> {
            self.seen.lock().expect("lock").push(eq.clone());
            match table {
                "jails" => Ok(["web", "db"]
                    .iter()
                    .filter(|n| eq.get("name").map_or(true, |v| v.contains(**n)))
                    .map(|n| {
                        let cpus = if *n == "web" {
                            Value::Double(0.5)
                        } else {
                            Value::Null
                        };
                        vec![Value::Text(n.to_string()), Value::Integer(-1), cpus]
                    })
                    .collect()),
                _ => Err(SourceError::Generate {
                    table: table.into(),
                    source: "pool root unreadable".into(),
                }),
            }
        }
    }

    fn req(pairs: &[(&str, &str)]) -> ExtensionPluginRequest {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn registry_holds_every_table_with_typed_columns() {
        let t = Tables::new(Box::new(Fake::default()));
        let reg = t.registry();
        let tables = &reg[TABLE_REGISTRY];
        assert_eq!(tables.len(), 2);
        let jails = &tables["jails"];
        assert_eq!(jails[0]["id"], "column");
        assert_eq!(jails[0]["name"], "name");
        assert_eq!(jails[0]["type"], "TEXT");
        assert_eq!(jails[0]["op"], "1");
        assert_eq!(jails[2]["type"], "DOUBLE");
        assert_eq!(tables["broken"][0]["op"], "16");
        assert!(reg["config"].is_empty() && reg["logger"].is_empty());
    }

    #[test]
    fn generate_pushes_equality_down_and_omits_nulls() {
        let fake = Fake::default();
        let seen = fake.seen.clone();
        let t = Tables::new(Box::new(fake));
        let ctx =
            r#"{"constraints":[{"name":"name","list":[{"op":2,"expr":"web"}],"affinity":"TEXT"}]}"#;
        let r = t
            .call(
                "table",
                "jails",
                &req(&[("action", "generate"), ("context", ctx)]),
            )
            .into_response();
        assert_eq!(r.status.as_ref().and_then(|s| s.code), Some(0));
        let rows = r.response.expect("rows");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["name"], "web");
        assert_eq!(rows[0]["pid"], "-1");
        assert_eq!(rows[0]["cpu_limit"], "0.5");
        let seen = seen.lock().expect("lock");
        assert!(seen[0].get("name").is_some_and(|v| v.contains("web")));
    }

    #[test]
    fn generate_without_context_returns_everything() {
        let t = Tables::new(Box::new(Fake::default()));
        let r = t.call("table", "jails", &req(&[("action", "generate")]));
        let rows = r.into_response().response.expect("rows");
        assert_eq!(rows.len(), 2);
        // NULL is left out of the row.
        assert!(!rows[1].contains_key("cpu_limit"), "{rows:?}");
    }

    #[test]
    fn columns_action_returns_routes() {
        let t = Tables::new(Box::new(Fake::default()));
        let r = t
            .call("table", "jails", &req(&[("action", "columns")]))
            .into_response();
        assert_eq!(r.status.as_ref().and_then(|s| s.code), Some(0));
        assert_eq!(r.response.expect("routes").len(), 3);
    }

    #[test]
    fn bad_requests_are_error_statuses() {
        let mut t = Tables::new(Box::new(Fake::default()));
        t.set_uuid(7);
        for (registry, item, request, want) in [
            ("logger", "jails", req(&[("action", "generate")]), "tables"),
            ("table", "nope", req(&[("action", "generate")]), "nope"),
            ("table", "jails", req(&[("action", "insert")]), "read-only"),
            ("table", "jails", req(&[]), "no action"),
            (
                "table",
                "jails",
                req(&[("action", "generate"), ("context", "{not json")]),
                "not JSON",
            ),
            (
                "table",
                "broken",
                req(&[("action", "generate")]),
                "pool root unreadable",
            ),
        ] {
            let r = t.call(registry, item, &request).into_response();
            let status = r.status.expect("status");
            assert_eq!(status.code, Some(1), "{want}");
            assert_eq!(status.uuid, Some(7));
            let msg = status.message.unwrap_or_default();
            assert!(msg.contains(want), "{msg:?} lacks {want:?}");
        }
    }

    #[test]
    fn streamed_rows_decode_as_the_generated_response() {
        let mut t = Tables::new(Box::new(Fake::default()));
        t.set_uuid(42);
        for request in [
            req(&[("action", "generate")]),
            req(&[("action", "columns")]),
            req(&[("action", "nope")]),
        ] {
            let mut wire = Vec::new();
            t.call("table", "jails", &request)
                .write(&mut TBinaryOutputProtocol::new(&mut wire, true))
                .expect("write");
            let decoded = ExtensionResponse::read_from_in_protocol(&mut TBinaryInputProtocol::new(
                &wire[..],
                true,
            ))
            .expect("decode");
            let want = t.call("table", "jails", &request).into_response();
            assert_eq!(decoded, want);
        }
    }
}
