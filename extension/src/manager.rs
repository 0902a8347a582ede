//! The extension's side of osquery's extension manager (the core's socket):
//! wait for it, register, ping, deregister.
//!
//! Each exchange uses a fresh connection, as osquery's own SDK does: a
//! connection that cannot be made is the plainest sign the core is gone,
//! and no idle connection holds one of the core's server threads.

use crate::osquery_thrift::{
    ExtensionManagerSyncClient, ExtensionRegistry, InternalExtensionInfo,
    TExtensionManagerSyncClient, TExtensionSyncClient,
};
use crate::wire::{self, BoundedInput};
use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use thrift::protocol::TBinaryOutputProtocol;
use thrift::transport::{TBufferedReadTransport, TBufferedWriteTransport};

type Client = ExtensionManagerSyncClient<
    BoundedInput<TBufferedReadTransport<UnixStream>>,
    TBinaryOutputProtocol<TBufferedWriteTransport<UnixStream>>,
>;

/// How often the socket is tried while waiting for it to appear.
const WAIT_STEP: Duration = Duration::from_millis(50);

/// Why talking to the manager failed.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("no osquery extension manager answered at {} within {:.1}s (is osqueryd or osqueryi running with extensions enabled, and is this its --extensions_socket?)", path.display(), waited.as_secs_f64())]
    NotThere {
        path: PathBuf,
        waited: Duration,
        #[source]
        source: io::Error,
    },
    #[error("cannot connect to the osquery extension manager at {}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{call} to the osquery extension manager at {} failed", path.display())]
    Call {
        call: &'static str,
        path: PathBuf,
        #[source]
        source: thrift::Error,
    },
    #[error("the osquery core was restarted: the socket {} is not the one this extension registered with", path.display())]
    Replaced { path: PathBuf },
    #[error("the osquery core at {} no longer knows this extension (uuid {uuid}); it was restarted or dropped it", path.display())]
    Forgotten { path: PathBuf, uuid: i64 },
    #[error("osquery refused to register extension {name:?}: {message} (status {code})")]
    Refused {
        name: String,
        code: i32,
        message: String,
    },
}

impl ManagerError {
    /// The manager is not there at all (as opposed to slow or confused).
    pub fn is_gone(&self) -> bool {
        match self {
            ManagerError::NotThere { .. } => true,
            ManagerError::Connect { source, .. } => is_absent(source),
            ManagerError::Replaced { .. } | ManagerError::Forgotten { .. } => true,
            _ => false,
        }
    }
}

/// The socket does not exist or nobody listens on it.
fn is_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}

/// The osquery core's extension manager, reached through its socket.
#[derive(Debug, Clone)]
pub struct Manager {
    path: PathBuf,
    io_timeout: Duration,
    /// The socket's device and inode when it was first reached: a core
    /// that restarts binds a new one.
    identity: Option<(u64, u64)>,
}

/// The device and inode of the socket at `path`.
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl Manager {
    /// Waits up to `timeout` for the manager's socket to accept a
    /// connection; osquery may start its manager after its extensions.
    pub fn wait(
        path: &Path,
        timeout: Duration,
        io_timeout: Duration,
    ) -> Result<Manager, ManagerError> {
        let started = Instant::now();
        loop {
            match UnixStream::connect(path) {
                Ok(_) => {
                    return Ok(Manager {
                        path: path.to_path_buf(),
                        io_timeout,
                        identity: identity(path),
                    })
                }
                Err(e) if is_absent(&e) && started.elapsed() < timeout => {
                    std::thread::sleep(WAIT_STEP.min(timeout.saturating_sub(started.elapsed())));
                }
                Err(source) if is_absent(&source) => {
                    return Err(ManagerError::NotThere {
                        path: path.to_path_buf(),
                        waited: started.elapsed(),
                        source,
                    })
                }
                Err(source) => {
                    return Err(ManagerError::Connect {
                        path: path.to_path_buf(),
                        source,
                    })
                }
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn connect(&self) -> Result<Client, ManagerError> {
        let connect_err = |source| ManagerError::Connect {
            path: self.path.clone(),
            source,
        };
        let stream = UnixStream::connect(&self.path).map_err(connect_err)?;
        stream
            .set_read_timeout(Some(self.io_timeout))
            .map_err(connect_err)?;
        stream
            .set_write_timeout(Some(self.io_timeout))
            .map_err(connect_err)?;
        let rx = stream.try_clone().map_err(connect_err)?;
        Ok(ExtensionManagerSyncClient::new(
            BoundedInput::new(TBufferedReadTransport::new(rx), wire::LIMITS),
            TBinaryOutputProtocol::new(TBufferedWriteTransport::new(stream), true),
        ))
    }

    fn call_err(&self, call: &'static str) -> impl Fn(thrift::Error) -> ManagerError + '_ {
        move |source| ManagerError::Call {
            call,
            path: self.path.clone(),
            source,
        }
    }

    /// Registers every plugin in `registry` in one call; returns the uuid
    /// the manager assigned. A status other than success is an error.
    pub fn register(
        &self,
        info: InternalExtensionInfo,
        registry: ExtensionRegistry,
    ) -> Result<i64, ManagerError> {
        let name = info.name.clone().unwrap_or_default();
        let status = self
            .connect()?
            .register_extension(info, registry)
            .map_err(self.call_err("registerExtension"))?;
        match status.code {
            Some(0) | None => Ok(status.uuid.unwrap_or(0)),
            Some(code) => Err(ManagerError::Refused {
                name,
                code,
                message: status
                    .message
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| "no reason given".into()),
            }),
        }
    }

    /// One health check of the manager.
    pub fn ping(&self) -> Result<(), ManagerError> {
        let status = self.connect()?.ping().map_err(self.call_err("ping"))?;
        match status.code {
            Some(0) | None => Ok(()),
            Some(code) => Err(ManagerError::Call {
                call: "ping",
                path: self.path.clone(),
                source: thrift::Error::User(
                    format!("status {code}: {}", status.message.unwrap_or_default()).into(),
                ),
            }),
        }
    }

    /// Whether the core is still the one that registered `uuid`: its socket
    /// has not been replaced and its `extensions()` still lists `uuid`.
    pub fn still_registered(&self, uuid: i64) -> Result<(), ManagerError> {
        if self.identity.is_some() && identity(&self.path) != self.identity {
            return Err(ManagerError::Replaced {
                path: self.path.clone(),
            });
        }
        let known = self
            .connect()?
            .extensions()
            .map_err(self.call_err("extensions"))?;
        if known.contains_key(&uuid) {
            Ok(())
        } else {
            Err(ManagerError::Forgotten {
                path: self.path.clone(),
                uuid,
            })
        }
    }

    /// Removes this extension's registration (best effort on the caller's
    /// side: the manager forgets extensions whose socket stops answering).
    pub fn deregister(&self, uuid: i64) -> Result<(), ManagerError> {
        let status = self
            .connect()?
            .deregister_extension(uuid)
            .map_err(self.call_err("deregisterExtension"))?;
        match status.code {
            Some(0) | None => Ok(()),
            Some(code) => Err(ManagerError::Call {
                call: "deregisterExtension",
                path: self.path.clone(),
                source: thrift::Error::User(
                    format!("status {code}: {}", status.message.unwrap_or_default()).into(),
                ),
            }),
        }
    }
}
