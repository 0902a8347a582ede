//! The extension's own socket (`<manager socket>.<uuid>`), where osquery
//! calls `ping`, `call` and `shutdown`.
//!
//! A small blocking server: one thread accepts, one short-lived thread
//! serves each connection (osquery opens one per call, and several calls
//! may be in flight from different query threads). No async runtime: the
//! extension idles in a few hundred kilobytes of its own heap.

use crate::osquery_thrift::{
    ExtensionPluginRequest, ExtensionResponse, ExtensionStatus, ExtensionSyncHandler,
    ExtensionSyncProcessor,
};
use crate::registry::Tables;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;
use thrift::protocol::{TBinaryInputProtocol, TBinaryOutputProtocol};
use thrift::server::TProcessor;
use thrift::transport::{TBufferedReadTransport, TBufferedWriteTransport};

/// Connections served at once; more are closed at once (osquery retries).
const MAX_CONNECTIONS: usize = 64;
/// A connection idle this long is closed, so a stuck client holds no thread.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// What the server tells the main loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// osquery called `shutdown` (the reply has been sent).
    Shutdown,
    /// The accept loop stopped: the socket is unusable.
    ListenerFailed,
    /// A termination signal arrived (sent by the signal thread of `run`).
    Signal(i32),
}

/// Why the extension socket could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot remove the stale extension socket {}", path.display())]
    Stale {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on the extension socket {}", path.display())]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot restrict the extension socket {} to its owner", path.display())]
    Permissions {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Answers the three calls of osquery's `Extension` service.
struct Handler {
    tables: Tables,
    uuid: i64,
    shutdown: Arc<AtomicBool>,
}

impl ExtensionSyncHandler for Handler {
    fn handle_ping(&self) -> thrift::Result<ExtensionStatus> {
        Ok(ExtensionStatus::new(0, "pong".to_string(), self.uuid))
    }

    fn handle_call(
        &self,
        registry: String,
        item: String,
        request: ExtensionPluginRequest,
    ) -> thrift::Result<ExtensionResponse> {
        Ok(self.tables.call(&registry, &item, &request))
    }

    fn handle_shutdown(&self) -> thrift::Result<()> {
        tracing::info!("osquery asked the extension to shut down");
        self.shutdown.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// The bound extension socket.
#[derive(Debug)]
pub struct ExtensionSocket {
    listener: UnixListener,
}

impl ExtensionSocket {
    /// Binds `path` (mode 0600), replacing a stale socket left there by a
    /// killed predecessor that had the same uuid.
    pub fn bind(path: &Path) -> Result<ExtensionSocket, ServerError> {
        match std::fs::remove_file(path) {
            Ok(()) => tracing::debug!(path = %path.display(), "removed a stale socket"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ServerError::Stale {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        let listener = UnixListener::bind(path).map_err(|source| ServerError::Bind {
            path: path.to_path_buf(),
            source,
        })?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| ServerError::Permissions {
                path: path.to_path_buf(),
                source,
            },
        )?;
        Ok(ExtensionSocket { listener })
    }

    /// Serves the socket on a background thread; events go to `events`.
    pub fn serve(self, tables: Tables, uuid: i64, events: Sender<Event>) -> io::Result<()> {
        let shutdown = Arc::new(AtomicBool::new(false));
        let processor = Arc::new(ExtensionSyncProcessor::new(Handler {
            tables,
            uuid,
            shutdown: shutdown.clone(),
        }));
        let active = Arc::new(AtomicUsize::new(0));
        let listener = self.listener;
        std::thread::Builder::new()
            .name("accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let stream = match conn {
                        Ok(s) => s,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            tracing::error!("extension socket stopped accepting: {e}");
                            let _ = events.send(Event::ListenerFailed);
                            return;
                        }
                    };
                    if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                        active.fetch_sub(1, Ordering::SeqCst);
                        tracing::warn!("too many connections to the extension socket; closing one");
                        continue;
                    }
                    let (processor, events, conn_count, shutdown) = (
                        processor.clone(),
                        events.clone(),
                        active.clone(),
                        shutdown.clone(),
                    );
                    let spawned =
                        std::thread::Builder::new()
                            .name("conn".into())
                            .spawn(move || {
                                serve_connection(&processor, stream, &shutdown, &events);
                                conn_count.fetch_sub(1, Ordering::SeqCst);
                            });
                    if let Err(e) = spawned {
                        tracing::warn!("cannot start a connection thread: {e}");
                        active.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            })
            .map(|_| ())
    }
}

/// Serves calls on one connection until the client closes it.
fn serve_connection(
    processor: &ExtensionSyncProcessor<Handler>,
    stream: UnixStream,
    shutdown: &AtomicBool,
    events: &Sender<Event>,
) {
    if let Err(e) = stream.set_read_timeout(Some(IDLE_TIMEOUT)) {
        tracing::debug!("cannot set a read timeout: {e}");
    }
    let Ok(rx) = stream.try_clone() else {
        return;
    };
    let mut i_prot = TBinaryInputProtocol::new(TBufferedReadTransport::new(rx), true);
    let mut o_prot = TBinaryOutputProtocol::new(TBufferedWriteTransport::new(stream), true);
    loop {
        let result = processor.process(&mut i_prot, &mut o_prot);
        // The processor has written (and flushed) the reply by now, so a
        // `shutdown` caller gets its answer before the process goes away.
        if shutdown.load(Ordering::SeqCst) {
            let _ = events.send(Event::Shutdown);
            return;
        }
        match result {
            Ok(()) => {}
            Err(thrift::Error::Transport(e)) if e.kind == thrift::TransportErrorKind::EndOfFile => {
                return
            }
            Err(e) => {
                tracing::debug!("extension connection closed: {e}");
                return;
            }
        }
    }
}
