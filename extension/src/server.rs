//! The extension's own socket (`<manager socket>.<uuid>`), where osquery
//! calls `ping`, `call` and `shutdown`.
//!
//! Connections are served by [`crate::reactor`]: one polling thread that
//! takes whole requests under deadlines and answers pings itself, and a few
//! workers for table calls. No async runtime: the extension idles in a few
//! hundred kilobytes of its own heap.
//!
//! `ping` and `shutdown` go through the generated Thrift code; `call` is
//! read here and its reply streamed (see [`crate::registry::Reply`]).

use crate::osquery_thrift::{
    ExtensionPluginRequest, ExtensionResponse, ExtensionStatus, ExtensionSyncHandler,
    TExtensionProcessFunctions,
};
use crate::registry::Tables;
use crate::source::Cancel;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use thrift::protocol::{
    TFieldIdentifier, TInputProtocol, TMessageIdentifier, TMessageType, TOutputProtocol,
    TStructIdentifier, TType,
};
use thrift::{ApplicationError, ApplicationErrorKind};

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

/// osquery's `Extension` service over [`Handler`].
pub(crate) struct Processor {
    handler: Handler,
    /// The extension's effective uid (allowed to call `shutdown`).
    own_uid: u32,
}

/// Who is at the other end of a connection (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer {
    /// The peer's uid, when the kernel told it.
    uid: Option<u32>,
}

impl Peer {
    pub(crate) fn of(stream: &UnixStream) -> Peer {
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
    /// Whether `shutdown` has been accepted.
    pub(crate) fn shutdown_requested(&self) -> &AtomicBool {
        &self.handler.shutdown
    }

    /// Reads one call from `i` and answers it on `o`; a table generate
    /// gives up once `cancel` is set.
    pub(crate) fn process(
        &self,
        i: &mut dyn TInputProtocol,
        o: &mut dyn TOutputProtocol,
        peer: Peer,
        cancel: &Cancel,
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
                let reply = self
                    .handler
                    .tables
                    .call_cancellable(&registry, &item, &request, cancel);
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
        crate::reactor::start(self.listener, processor, events)
    }
}
