//! The extension's own socket (`<manager socket>.<uuid>`), where osquery
//! calls `ping`, `call` and `shutdown`.
//!
//! A small blocking server: one thread accepts, one short-lived thread
//! serves each connection (osquery opens one per call, and several calls
//! may be in flight from different query threads). No async runtime: the
//! extension idles in a few hundred kilobytes of its own heap.
//!
//! `ping` and `shutdown` go through the generated Thrift code; `call` is
//! read here and its reply streamed (see [`crate::registry::Reply`]).

use crate::osquery_thrift::{
    ExtensionPluginRequest, ExtensionResponse, ExtensionStatus, ExtensionSyncHandler,
    TExtensionProcessFunctions,
};
use crate::registry::Tables;
use crate::wire::{self, BoundedInput};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;
use thrift::protocol::{
    TBinaryOutputProtocol, TFieldIdentifier, TInputProtocol, TMessageIdentifier, TMessageType,
    TOutputProtocol, TStructIdentifier, TType,
};
use thrift::transport::{TBufferedReadTransport, TBufferedWriteTransport};
use thrift::{ApplicationError, ApplicationErrorKind};

/// Connections served at once; one more is closed at once.
const MAX_CONNECTIONS: usize = 64;
/// A connection idle this long is closed, so a stuck client holds no thread.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Replies are written in chunks of this size.
const WRITE_BUFFER: usize = 64 * 1024;

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
    #[error("cannot make the private directory {} to bind the extension socket in (is the socket's directory writable?)", path.display())]
    Private {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot put the extension socket in place at {} (is a directory there?)", path.display())]
    Place {
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
        // Not reached: `Processor` streams calls itself.
        Ok(self.tables.call(&registry, &item, &request).into_response())
    }

    fn handle_shutdown(&self) -> thrift::Result<()> {
        tracing::info!("osquery asked the extension to shut down");
        self.shutdown.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// An `accept` failure that passes (out of file descriptors or memory, or
/// a client that gave up).
fn is_transient(e: &io::Error) -> bool {
    use nix::errno::Errno;
    e.raw_os_error().is_some_and(|n| {
        [
            Errno::EMFILE,
            Errno::ENFILE,
            Errno::ENOBUFS,
            Errno::ENOMEM,
            Errno::ECONNABORTED,
            Errno::EPROTO,
        ]
        .contains(&Errno::from_raw(n))
    })
}

/// One of the [`MAX_CONNECTIONS`] connection slots, given back on drop.
struct Slot {
    active: Arc<AtomicUsize>,
    /// Connections open with this one.
    count: usize,
}

impl Slot {
    fn take(active: &Arc<AtomicUsize>) -> Slot {
        let count = active.fetch_add(1, Ordering::SeqCst) + 1;
        Slot {
            active: active.clone(),
            count,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// osquery's `Extension` service over [`Handler`].
struct Processor {
    handler: Handler,
    /// The extension's effective uid (allowed to call `shutdown`).
    own_uid: u32,
}

/// Who is at the other end of a connection (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Peer {
    /// The peer's uid, when the kernel told it.
    uid: Option<u32>,
}

impl Peer {
    fn of(stream: &UnixStream) -> Peer {
        use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
        Peer {
            uid: getsockopt(stream, PeerCredentials).ok().map(|c| c.uid()),
        }
    }

    /// Only the core may stop the extension: it runs as root or as the
    /// extension's own user.
    fn may_shutdown(&self, own_uid: u32) -> bool {
        self.uid.is_some_and(|u| u == 0 || u == own_uid)
    }
}

/// Answers one call with an exception (its arguments are read and dropped).
fn refuse(
    i: &mut dyn TInputProtocol,
    o: &mut dyn TOutputProtocol,
    name: &str,
    seq: i32,
    err: ApplicationError,
) -> thrift::Result<()> {
    i.skip(TType::Struct)?;
    i.read_message_end()?;
    o.write_message_begin(&TMessageIdentifier::new(name, TMessageType::Exception, seq))?;
    thrift::Error::write_application_error_to_out_protocol(&err, o)?;
    o.write_message_end()?;
    o.flush()
}

impl Processor {
    /// Reads one call from `i` and answers it on `o`.
    fn process(
        &self,
        i: &mut dyn TInputProtocol,
        o: &mut dyn TOutputProtocol,
        peer: Peer,
    ) -> thrift::Result<()> {
        let msg = i.read_message_begin()?;
        let seq = msg.sequence_number;
        match msg.name.as_str() {
            "ping" => TExtensionProcessFunctions::process_ping(&self.handler, seq, i, o),
            "shutdown" if peer.may_shutdown(self.own_uid) => {
                TExtensionProcessFunctions::process_shutdown(&self.handler, seq, i, o)
            }
            "shutdown" => {
                let why = format!(
                    "shutdown refused: the caller (uid {}) is neither root nor the extension's user (uid {})",
                    peer.uid.map_or_else(|| "unknown".to_string(), |u| u.to_string()),
                    self.own_uid
                );
                tracing::warn!("{why}");
                let err = ApplicationError::new(ApplicationErrorKind::Unknown, why);
                refuse(i, o, "shutdown", seq, err)
            }
            "call" => {
                let (registry, item, request) = read_call_args(i)?;
                i.read_message_end()?;
                let reply = self.handler.tables.call(&registry, &item, &request);
                o.write_message_begin(&TMessageIdentifier::new("call", TMessageType::Reply, seq))?;
                o.write_struct_begin(&TStructIdentifier::new("call_result"))?;
                o.write_field_begin(&TFieldIdentifier::new("success", TType::Struct, 0))?;
                reply.write(o)?;
                o.write_field_end()?;
                o.write_field_stop()?;
                o.write_struct_end()?;
                o.write_message_end()?;
                o.flush()
            }
            other => {
                let err = ApplicationError::new(
                    ApplicationErrorKind::UnknownMethod,
                    format!("unknown method {}", crate::excerpt::Excerpt(other)),
                );
                refuse(i, o, other, seq, err)
            }
        }
    }
}

/// The arguments of `call`: 1 registry, 2 item, 3 request.
fn read_call_args(
    i: &mut dyn TInputProtocol,
) -> thrift::Result<(String, String, ExtensionPluginRequest)> {
    let (mut registry, mut item, mut request) = (None, None, None);
    i.read_struct_begin()?;
    loop {
        let field = i.read_field_begin()?;
        match (field.field_type, field.id) {
            (TType::Stop, _) => break,
            (TType::String, Some(1)) => registry = Some(i.read_string()?),
            (TType::String, Some(2)) => item = Some(i.read_string()?),
            (TType::Map, Some(3)) => {
                let m = i.read_map_begin()?;
                let mut req = ExtensionPluginRequest::new();
                for _ in 0..m.size {
                    let k = i.read_string()?;
                    let v = i.read_string()?;
                    req.insert(k, v);
                }
                i.read_map_end()?;
                request = Some(req);
            }
            (t, _) => i.skip(t)?,
        }
        i.read_field_end()?;
    }
    i.read_struct_end()?;
    match (registry, item, request) {
        (Some(r), Some(it), Some(req)) => Ok((r, it, req)),
        _ => Err(thrift::Error::Protocol(thrift::ProtocolError::new(
            thrift::ProtocolErrorKind::InvalidData,
            "call needs registry, item and request",
        ))),
    }
}

/// The bound extension socket.
#[derive(Debug)]
pub struct ExtensionSocket {
    listener: UnixListener,
}

impl ExtensionSocket {
    /// Binds `path` (mode 0600), replacing a stale socket left there by a
    /// killed predecessor that had the same uuid. The socket is bound inside
    /// a private (0700) directory beside `path`, made 0600 there and renamed
    /// into place: whatever the umask, nobody else can reach it at any moment.
    pub fn bind(path: &Path) -> Result<ExtensionSocket, ServerError> {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let private = parent.join(format!(".jailer-ext.{}", std::process::id()));
        let tmp = private.join("s");
        // Left behind by a killed predecessor that had our pid.
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_dir(&private);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&private)
            .map_err(|source| ServerError::Private {
                path: private.clone(),
                source,
            })?;
        let placed = Self::bind_at(&tmp, path);
        if placed.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        let _ = std::fs::remove_dir(&private);
        placed
    }

    fn bind_at(tmp: &Path, path: &Path) -> Result<ExtensionSocket, ServerError> {
        let listener = UnixListener::bind(tmp).map_err(|source| ServerError::Bind {
            path: tmp.to_path_buf(),
            source,
        })?;
        std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| ServerError::Permissions {
                path: tmp.to_path_buf(),
                source,
            },
        )?;
        // Replaces a stale socket at `path` in one step.
        std::fs::rename(tmp, path).map_err(|source| ServerError::Place {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(ExtensionSocket { listener })
    }

    /// Serves the socket on a background thread; events go to `events`.
    pub fn serve(self, tables: Tables, uuid: i64, events: Sender<Event>) -> io::Result<()> {
        let shutdown = Arc::new(AtomicBool::new(false));
        let processor = Arc::new(Processor {
            handler: Handler {
                tables,
                uuid,
                shutdown: shutdown.clone(),
            },
            own_uid: nix::unistd::geteuid().as_raw(),
        });
        let active = Arc::new(AtomicUsize::new(0));
        let listener = self.listener;
        std::thread::Builder::new()
            .name("accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let stream = match conn {
                        Ok(s) => s,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) if is_transient(&e) => {
                            tracing::warn!("extension socket: {e}; retrying");
                            std::thread::sleep(Duration::from_millis(100));
                            continue;
                        }
                        Err(e) => {
                            tracing::error!("extension socket stopped accepting: {e}");
                            let _ = events.send(Event::ListenerFailed);
                            return;
                        }
                    };
                    let slot = Slot::take(&active);
                    if slot.count > MAX_CONNECTIONS {
                        tracing::warn!("too many connections to the extension socket; closing one");
                        continue;
                    }
                    let (processor, events, shutdown) =
                        (processor.clone(), events.clone(), shutdown.clone());
                    let spawned =
                        std::thread::Builder::new()
                            .name("conn".into())
                            .spawn(move || {
                                let _slot = slot;
                                // Garbage on the socket may make the Thrift
                                // library panic (a negative length, say): that
                                // ends this connection, not the extension.
                                let served = std::panic::catch_unwind(AssertUnwindSafe(|| {
                                    serve_connection(&processor, stream, &shutdown, &events)
                                }));
                                if served.is_err() {
                                    // The panic hook has logged it.
                                    tracing::debug!("dropped the connection that panicked");
                                }
                            });
                    if let Err(e) = spawned {
                        tracing::warn!("cannot start a connection thread: {e}");
                    }
                }
            })
            .map(|_| ())
    }
}

/// Serves calls on one connection until the client closes it.
fn serve_connection(
    processor: &Processor,
    stream: UnixStream,
    shutdown: &AtomicBool,
    events: &Sender<Event>,
) {
    let peer = Peer::of(&stream);
    if let Err(e) = stream.set_read_timeout(Some(IDLE_TIMEOUT)) {
        tracing::debug!("cannot set a read timeout: {e}");
    }
    let Ok(rx) = stream.try_clone() else {
        return;
    };
    let mut i_prot = BoundedInput::new(TBufferedReadTransport::new(rx), wire::LIMITS);
    let mut o_prot = TBinaryOutputProtocol::new(
        TBufferedWriteTransport::with_capacity(WRITE_BUFFER, stream),
        true,
    );
    loop {
        let started = std::time::Instant::now();
        let result = processor.process(&mut i_prot, &mut o_prot, peer);
        if result.is_ok() {
            tracing::debug!(
                elapsed_us = started.elapsed().as_micros() as u64,
                "call answered"
            );
        }
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
            Err(e) if wire::is_limit(&e) => {
                tracing::warn!("closed an extension connection: {}", wire::describe(&e));
                return;
            }
            Err(e) => {
                tracing::debug!("extension connection closed: {}", wire::describe(&e));
                return;
            }
        }
    }
}
