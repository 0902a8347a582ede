//! [`TableSource`] over `jailer-tables`: ProdNG's real tables.

use crate::context::Equalities;
use crate::source::{options, Cancel, ColumnDef, Paths, Row, SourceError, TableDef, TableSource};
use jailer_tables::{Constraints, Sources, TableError};

/// The jail tables of one pool.
#[derive(Debug, Clone)]
pub struct JailTables {
    sources: Sources,
}

impl JailTables {
    pub fn new(paths: &Paths) -> JailTables {
        JailTables {
            sources: Sources {
                pool_root: paths.pool_root.clone(),
                proc_root: paths.proc_root.clone(),
                cgroup_root: paths.cgroup_root.clone(),
                btrfs_sysfs: std::path::PathBuf::from(jailer_tables::HOST_BTRFS_SYSFS),
                run_root: std::path::PathBuf::from(jailer_tables::HOST_RUN_ROOT),
            },
        }
    }
}

/// A pool root that is not there: every table would be empty, and osquery
/// would take that for "no jails".
#[derive(Debug, thiserror::Error)]
#[error("the pool root {} does not exist (pass --root or set JAILER_ROOT to the pool `jailer init` made)", path.display())]
pub struct MissingPool {
    pub path: std::path::PathBuf,
}

/// [`MissingPool`] when `root` is not a directory (or cannot be looked at).
pub fn missing_pool(root: &std::path::Path) -> Option<MissingPool> {
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => None,
        _ => Some(MissingPool {
            path: root.to_path_buf(),
        }),
    }
}

/// Every table's columns as `--spec` prints them.
pub fn spec_json() -> serde_json::Value {
    jailer_tables::spec_json()
}

impl TableSource for JailTables {
    fn tables(&self) -> Vec<TableDef> {
        jailer_tables::tables()
            .iter()
            .map(|t| TableDef {
                name: t.name.to_string(),
                columns: t
                    .columns
                    .iter()
                    .map(|c| ColumnDef {
                        name: c.name.to_string(),
                        ty: c.ty.as_str(),
                        options: u32::from(c.options.index) * options::INDEX
                            + u32::from(c.options.required) * options::REQUIRED
                            + u32::from(c.options.hidden) * options::HIDDEN,
                    })
                    .collect(),
            })
            .collect()
    }

    fn generate(
        &self,
        table: &str,
        eq: &Equalities,
        cancel: &Cancel,
    ) -> Result<Vec<Row>, SourceError> {
        if let Some(e) = missing_pool(&self.sources.pool_root) {
            return Err(SourceError::Generate {
                table: table.to_string(),
                source: Box::new(e),
            });
        }
        let mut c = Constraints::new();
        for (column, values) in eq.iter() {
            for v in values {
                c.add_eq(column, v.as_str());
            }
        }
        match jailer_tables::generate_cancellable(table, &self.sources, &c, cancel) {
            Ok(rows) => Ok(rows),
            Err(TableError::UnknownTable { name }) => Err(SourceError::UnknownTable(name)),
            Err(TableError::Cancelled) => Err(SourceError::Cancelled(table.to_string())),
            Err(e) => Err(SourceError::Generate {
                table: table.to_string(),
                source: Box::new(e),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_pool_root_fails_every_generate_with_its_path() {
        let t = JailTables::new(&Paths {
            pool_root: "/nonexistent/pool".into(),
            proc_root: "/proc".into(),
            cgroup_root: "/sys/fs/cgroup".into(),
        });
        for d in t.tables() {
            let e = t
                .generate(&d.name, &Equalities::default(), &Cancel::new())
                .expect_err("no pool");
            let msg = jailer::error_chain(&e);
            assert!(msg.contains("/nonexistent/pool does not exist"), "{msg}");
        }
        assert!(missing_pool(std::path::Path::new("/")).is_none());
    }

    #[test]
    fn every_table_is_registered_with_osquery_types_and_options() {
        let defs = JailTables::new(&Paths {
            pool_root: "/nonexistent".into(),
            proc_root: "/proc".into(),
            cgroup_root: "/sys/fs/cgroup".into(),
        })
        .tables();
        let names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
        for t in [
            "jails",
            "jail_processes",
            "jail_mappings",
            "jail_capabilities",
            "jail_mounts",
            "jail_resources",
            "jail_packages",
        ] {
            assert!(names.contains(&t), "{t} missing from {names:?}");
        }
        for d in &defs {
            for c in &d.columns {
                assert!(["TEXT", "INTEGER", "BIGINT", "DOUBLE"].contains(&c.ty));
                assert_eq!(
                    c.options & !(options::INDEX | options::REQUIRED | options::HIDDEN),
                    0
                );
            }
        }
        let jails = defs.iter().find(|d| d.name == "jails").expect("jails");
        assert_eq!(jails.columns[0].name, "name");
        assert_eq!(jails.columns[0].options & options::INDEX, options::INDEX);
    }
}
