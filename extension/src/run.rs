//! The extension's life, in order: wait for osquery's manager socket,
//! register every table in one call, serve the extension socket, ping the
//! manager every interval, and leave cleanly (deregister, remove the
//! socket) on `shutdown` or a signal, or with an error when the manager is
//! gone.

use crate::manager::{Manager, ManagerError};
use crate::osquery_thrift::InternalExtensionInfo;
use crate::registry::Tables;
use crate::server::{Event, ExtensionSocket, ServerError};
use crate::source::TableSource;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

/// The name osquery knows the extension by (`--extensions_require=jailer`).
pub const EXTENSION_NAME: &str = "jailer";
/// The osquery SDK version this extension speaks (osquery refuses below 1.7.7).
const SDK_VERSION: &str = "5.0.0";
/// The oldest osquery it works with.
const MIN_SDK_VERSION: &str = "4.0.0";
/// Failed pings in a row, short of a socket that is gone, before giving up.
const MAX_PING_FAILURES: u32 = 3;

/// When and where to talk to osquery.
#[derive(Debug, Clone)]
pub struct Options {
    /// The manager's socket (`--socket`).
    pub socket: PathBuf,
    /// How long to wait for that socket (`--timeout`).
    pub timeout: Duration,
    /// Ping period (`--interval`).
    pub interval: Duration,
}

/// How the extension ended without error.
#[derive(Debug)]
pub enum Outcome {
    /// osquery called `shutdown`.
    Shutdown,
    /// SIGTERM, SIGINT or SIGHUP.
    Signal(i32),
    /// The core stopped answering pings: an extension's life is bound to
    /// its core's, so this is a normal end (osquery's own SDK exits 0 too;
    /// osqueryd starts autoloaded extensions again when it comes back).
    ManagerGone { path: PathBuf, reason: ManagerError },
}

/// Why the extension stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Manager(#[from] ManagerError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("cannot start a thread")]
    Thread(#[source] std::io::Error),
    #[error("cannot block termination signals")]
    Signals(#[source] nix::Error),
    #[error("the extension socket {} stopped accepting connections", path.display())]
    Listener { path: PathBuf },
}

/// Blocks SIGTERM, SIGINT and SIGHUP in this thread and every thread it
/// starts later, and turns them into [`Event::Signal`] on `events`. Must run
/// before any other thread is started.
fn forward_signals(events: mpsc::Sender<Event>) -> Result<(), RunError> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block().map_err(RunError::Signals)?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            while let Ok(sig) = set.wait() {
                if events.send(Event::Signal(sig as i32)).is_err() {
                    return;
                }
            }
        })
        .map_err(RunError::Thread)?;
    Ok(())
}

/// Runs the extension until osquery or a signal stops it.
pub fn run(opts: &Options, source: Box<dyn TableSource>) -> Result<Outcome, RunError> {
    let (tx, rx) = mpsc::channel();
    forward_signals(tx.clone())?;

    let io_timeout = opts.timeout.max(Duration::from_secs(3));
    let manager = Manager::wait(&opts.socket, opts.timeout, io_timeout)?;
    let mut tables = Tables::new(source);
    let info = InternalExtensionInfo::new(
        EXTENSION_NAME.to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
        SDK_VERSION.to_string(),
        MIN_SDK_VERSION.to_string(),
    );
    let uuid = manager.register(info, tables.registry())?;
    tables.set_uuid(uuid);
    let path = extension_socket_path(&opts.socket, uuid);
    tracing::info!(uuid, tables = tables.defs().len(), socket = %path.display(), "registered with osquery");
    let socket = match ExtensionSocket::bind(&path) {
        Ok(s) => s,
        Err(e) => {
            deregister(&manager, uuid);
            return Err(e.into());
        }
    };
    if let Err(e) = socket.serve(tables, uuid, tx) {
        deregister(&manager, uuid);
        remove_socket(&path);
        return Err(RunError::Thread(e));
    }

    let mut failures = 0;
    loop {
        let outcome = match rx.recv_timeout(opts.interval) {
            Ok(Event::Shutdown) => Outcome::Shutdown,
            Ok(Event::Signal(sig)) => Outcome::Signal(sig),
            Ok(Event::ListenerFailed) | Err(RecvTimeoutError::Disconnected) => {
                deregister(&manager, uuid);
                remove_socket(&path);
                return Err(RunError::Listener { path });
            }
            Err(RecvTimeoutError::Timeout) => {
                match manager.ping().and_then(|()| manager.still_registered(uuid)) {
                    Ok(()) => {
                        failures = 0;
                        continue;
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(failures, "ping failed: {}", jailer::error_chain(&e));
                        if e.is_gone() || failures >= MAX_PING_FAILURES {
                            remove_socket(&path);
                            return Ok(Outcome::ManagerGone {
                                path: manager.path().to_path_buf(),
                                reason: e,
                            });
                        }
                        continue;
                    }
                }
            }
        };
        deregister(&manager, uuid);
        remove_socket(&path);
        return Ok(outcome);
    }
}

/// Where the extension listens: the manager's socket path plus `.<uuid>`.
pub fn extension_socket_path(manager: &Path, uuid: i64) -> PathBuf {
    let mut s = manager.as_os_str().to_owned();
    s.push(format!(".{uuid}"));
    PathBuf::from(s)
}

fn deregister(manager: &Manager, uuid: i64) {
    if let Err(e) = manager.deregister(uuid) {
        // After `shutdown` the core is often already gone; it forgets
        // extensions whose socket is gone anyway.
        tracing::debug!("deregistering: {}", jailer::error_chain(&e));
    }
}

fn remove_socket(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), "cannot remove the extension socket: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_socket_is_the_manager_socket_plus_uuid() {
        assert_eq!(
            extension_socket_path(Path::new("/var/osquery/osquery.em"), 24517),
            PathBuf::from("/var/osquery/osquery.em.24517")
        );
    }
}
