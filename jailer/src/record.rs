//! `jail.json` and `template.json`: what the pool records, and how it is read
//! back. These types are the read path's whole view of the write path
//! (`jailer-tables` depends on them and nothing else of this crate's state).

use crate::name::Name;
use crate::spec::JailSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Format version of `jail.json`.
pub const JAIL_RECORD_VERSION: u32 = 1;

/// The lifecycle state of a jail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// `create` has started and not finished (or was killed: then the record
    /// is reported broken and `create` or `rm` finishes the job).
    Creating,
    Created,
    Running,
    Frozen,
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Creating => "creating",
            State::Created => "created",
            State::Running => "running",
            State::Frozen => "frozen",
            State::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A contiguous range of host ids that a jail's ids 0..count map onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub uid_base: u32,
    pub gid_base: u32,
    pub count: u32,
}

/// What `jail.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JailRecord {
    pub version: u32,
    /// A random 128-bit id in hex, unique across re-creations of one name.
    pub id: String,
    pub spec: JailSpec,
    pub state: State,
    pub ids: IdRange,
    /// UNIX seconds.
    pub created_at: u64,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub exit_code: Option<i32>,
}

impl JailRecord {
    pub fn name(&self) -> &Name {
        &self.spec.name
    }
}

/// What `template.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRecord {
    pub name: Name,
    /// UNIX seconds.
    pub created_at: u64,
    /// Where it came from: a path, or `debootstrap:SUITE/VARIANT`.
    pub source: String,
    /// Sum of the regular files' sizes, in bytes.
    pub size: u64,
    /// Number of entries in the tree.
    pub files: u64,
}

/// Why a record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Only ever seen after a crash in the middle of a write.
    #[error("{} is empty (its write was interrupted)", path.display())]
    Empty { path: PathBuf },
    #[error("{} is corrupt", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} has format version {found}, this jailer reads version {JAIL_RECORD_VERSION}", path.display())]
    Version { path: PathBuf, found: u32 },
}

/// Reads and parses a JSON record.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, RecordError> {
    let data = std::fs::read(path).map_err(|source| RecordError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if data.is_empty() {
        return Err(RecordError::Empty {
            path: path.to_path_buf(),
        });
    }
    serde_json::from_slice(&data).map_err(|source| RecordError::Corrupt {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a `jail.json`, checking its version.
pub fn read_jail(path: &Path) -> Result<JailRecord, RecordError> {
    let r: JailRecord = read_json(path)?;
    if r.version != JAIL_RECORD_VERSION {
        return Err(RecordError::Version {
            path: path.to_path_buf(),
            found: r.version,
        });
    }
    Ok(r)
}

/// Seconds since the UNIX epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
