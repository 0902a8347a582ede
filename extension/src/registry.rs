//! The extension's table plugins in osquery's terms: routes (the column list
//! sent at registration and for `columns`), and `call` requests answered
//! with rows as string maps.

use crate::context;
use crate::osquery_thrift::{
    ExtensionPluginRequest, ExtensionPluginResponse, ExtensionRegistry, ExtensionResponse,
    ExtensionRouteTable, ExtensionStatus,
};
use crate::source::{TableDef, TableSource};
use std::collections::BTreeMap;

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
    pub fn call(
        &self,
        registry: &str,
        item: &str,
        request: &ExtensionPluginRequest,
    ) -> ExtensionResponse {
        if registry != TABLE_REGISTRY {
            return self.failure(format!(
                "this extension has no {registry:?} plugins, only tables"
            ));
        }
        let Some(def) = self.defs.iter().find(|d| d.name == item) else {
            return self.failure(format!("no table named {item:?} in this extension"));
        };
        match request.get("action").map(String::as_str) {
            Some("columns") => self.success(routes(def)),
            Some("generate") => self.generate(def, request),
            Some(other) => self.failure(format!(
                "table {item} is read-only and answers `generate` and `columns`, not {other:?}"
            )),
            None => self.failure(format!("request to table {item} has no action")),
        }
    }

    fn generate(&self, def: &TableDef, request: &ExtensionPluginRequest) -> ExtensionResponse {
        let ctx = request.get("context").map(String::as_str).unwrap_or("");
        let eq = match context::parse(ctx) {
            Ok(eq) => eq,
            Err(e) => {
                tracing::warn!(table = %def.name, context = %ctx, "{e}");
                return self.failure(format!("table {}: {e}", def.name));
            }
        };
        let started = std::time::Instant::now();
        match self.source.generate(&def.name, &eq) {
            Ok(rows) => {
                tracing::debug!(
                    table = %def.name, constraints = ?eq, rows = rows.len(),
                    elapsed_us = started.elapsed().as_micros() as u64, "generate"
                );
                let rows = rows
                    .into_iter()
                    .map(|cells| {
                        def.columns
                            .iter()
                            .zip(cells)
                            .filter_map(|(c, v)| v.map(|v| (c.name.clone(), v)))
                            .collect::<BTreeMap<String, String>>()
                    })
                    .collect();
                self.success(rows)
            }
            Err(e) => {
                let msg = error_chain(&e);
                tracing::warn!("{msg}");
                self.failure(msg)
            }
        }
    }

    fn success(&self, response: ExtensionPluginResponse) -> ExtensionResponse {
        ExtensionResponse::new(
            ExtensionStatus::new(0, "OK".to_string(), self.uuid),
            response,
        )
    }

    fn failure(&self, message: String) -> ExtensionResponse {
        ExtensionResponse::new(
            ExtensionStatus::new(1, message, self.uuid),
            ExtensionPluginResponse::new(),
        )
    }
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

/// An error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::context::Equalities;
    use crate::source::{options, Cells, ColumnDef, SourceError};
    use std::sync::{Arc, Mutex};

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

        fn generate(&self, table: &str, eq: &Equalities) -> Result<Vec<Cells>, SourceError> {
            self.seen.lock().expect("lock").push(eq.clone());
            match table {
                "jails" => Ok(["web", "db"]
                    .iter()
                    .filter(|n| eq.get("name").map_or(true, |v| v.contains(**n)))
                    .map(|n| vec![Some(n.to_string()), Some("-1".into()), None])
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
        let r = t.call(
            "table",
            "jails",
            &req(&[("action", "generate"), ("context", ctx)]),
        );
        assert_eq!(r.status.as_ref().and_then(|s| s.code), Some(0));
        let rows = r.response.expect("rows");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["name"], "web");
        assert_eq!(rows[0]["pid"], "-1");
        assert!(!rows[0].contains_key("cpu_limit"));
        let seen = seen.lock().expect("lock");
        assert!(seen[0].get("name").is_some_and(|v| v.contains("web")));
    }

    #[test]
    fn generate_without_context_returns_everything() {
        let t = Tables::new(Box::new(Fake::default()));
        let r = t.call("table", "jails", &req(&[("action", "generate")]));
        assert_eq!(r.response.expect("rows").len(), 2);
    }

    #[test]
    fn columns_action_returns_routes() {
        let t = Tables::new(Box::new(Fake::default()));
        let r = t.call("table", "jails", &req(&[("action", "columns")]));
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
            let r = t.call(registry, item, &request);
            let status = r.status.expect("status");
            assert_eq!(status.code, Some(1), "{want}");
            assert_eq!(status.uuid, Some(7));
            let msg = status.message.unwrap_or_default();
            assert!(msg.contains(want), "{msg:?} lacks {want:?}");
        }
    }
}
