//! Serving the extension socket so that no client can lock the core out.
//!
//! One thread (the reactor) owns every connection while it waits for a
//! request: it polls them all, reads what arrives into the connection's
//! buffer and checks, with the bounded reader, whether a whole request is
//! there. Each request must arrive whole within [`REQUEST_DEADLINE`] of the
//! connection's start or its previous reply, and each reply be taken within
//! [`REPLY_DEADLINE`]; a connection that misses either is closed. `ping`,
//! `shutdown` and unknown methods are answered by the reactor itself (their
//! replies are a few dozen bytes), so the core's pings are answered however
//! busy the workers are. `call` (a table generate) goes to one of
//! [`WORKERS`] threads, which writes the reply straight to the socket under
//! the reply deadline and hands the connection back. At
//! [`MAX_CONNECTIONS`], a new connection sheds the one that has waited
//! longest without sending a whole request.
//!
//! Idle, half-sent, trickled or never-read connections therefore cost a
//! buffer and a file descriptor for a few seconds, never a thread.

use crate::server::{Event, Peer, Processor};
use crate::source::Cancel;
use crate::wire::{self, BoundedInput};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thrift::protocol::{TBinaryOutputProtocol, TInputProtocol, TType};
use thrift::transport::TBufferedWriteTransport;

/// Connections held at once; one more sheds the slowest.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections accepted per turn of the loop, so that those accepted just
/// before (the core's, say) are read before a flood of new ones sheds them.
const ACCEPT_BATCH: usize = 32;
/// A request must arrive whole within this time.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(3);
/// A reply must be taken within this time.
pub const REPLY_DEADLINE: Duration = Duration::from_secs(10);
/// Threads answering `call`.
pub const WORKERS: usize = 4;
/// Calls waiting for or held by a worker; beyond, a call's connection is closed.
const MAX_CALLS: usize = 64;
/// Bytes held in the buffers of all connections waiting for their request;
/// a read that would exceed it sheds the connection holding the most.
pub const BUFFER_BUDGET: usize = 64 << 20;
/// Bytes read from one connection per wake-up.
const READ_CHUNK: usize = 64 * 1024;
/// Replies of `call` are written in chunks of this size.
const WRITE_BUFFER: usize = 64 * 1024;

/// One client connection, between requests or while its request arrives.
struct Conn {
    stream: UnixStream,
    peer: Peer,
    /// Bytes received and not yet taken as a request.
    buf: Vec<u8>,
    /// Bytes `buf` needs before a request can be complete.
    need: usize,
    /// When the current request (or reply) had to start.
    since: Instant,
    /// A reply still to be written (inline replies only).
    out: Vec<u8>,
    written: usize,
    /// Close once `out` is written (after `shutdown`).
    then_shutdown: bool,
}

impl Conn {
    fn new(stream: UnixStream) -> Conn {
        Conn {
            peer: Peer::of(&stream),
            stream,
            buf: Vec::new(),
            need: 1,
            since: Instant::now(),
            out: Vec::new(),
            written: 0,
            then_shutdown: false,
        }
    }

    fn writing(&self) -> bool {
        self.written < self.out.len()
    }

    fn deadline(&self) -> Instant {
        self.since
            + if self.writing() {
                REPLY_DEADLINE
            } else {
                REQUEST_DEADLINE
            }
    }
}

/// A `call` for a worker, and the connection to answer on.
struct Job {
    conn: Conn,
    request: Vec<u8>,
    /// Set by the reactor when the client hangs up during the call; the
    /// worker drops its clone when the call is over.
    cancel: Cancel,
}

/// A call in a worker's hands, watched for its client hanging up.
struct Watched {
    stream: UnixStream,
    cancel: Cancel,
}

/// What became of a connection after an event.
enum Step {
    Keep(Conn),
    Close,
    Call(Job),
}

/// Whether `buf` starts with a whole request: `Ok(Some((length, method)))`,
/// `Ok(None)` with the bytes needed to know more, or the error that ends the
/// connection.
fn whole_request(buf: &[u8]) -> Result<Result<(usize, String), usize>, thrift::Error> {
    let mut cur = io::Cursor::new(buf);
    let mut p = BoundedInput::new(&mut cur, wire::LIMITS);
    let parsed = p
        .read_message_begin()
        .and_then(|m| p.skip(TType::Struct).map(|()| m))
        .and_then(|m| p.read_message_end().map(|()| m));
    let charged = p.charged();
    match parsed {
        Ok(m) => Ok(Ok((
            usize::try_from(cur.position()).unwrap_or(buf.len()),
            m.name,
        ))),
        Err(thrift::Error::Transport(e)) if e.kind == thrift::TransportErrorKind::EndOfFile => {
            Ok(Err(charged.max(buf.len() + 1)))
        }
        Err(e) => Err(e),
    }
}

/// A writer that fails once `REPLY_DEADLINE` has passed since its first write.
struct DeadlineWriter<'a> {
    stream: &'a UnixStream,
    started: Option<Instant>,
}

impl Write for DeadlineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let started = *self.started.get_or_insert_with(Instant::now);
        let left = REPLY_DEADLINE.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not take its reply in time",
            ));
        }
        self.stream.set_write_timeout(Some(left))?;
        let mut s = self.stream;
        s.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether the peer has closed its end entirely (not merely its writing
/// half: a client may send its request, shut down writing and still read).
fn client_gone(stream: &UnixStream) -> bool {
    let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLIN)];
    matches!(nix::poll::poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
}

/// A worker: answers calls, hands their connections back.
fn work(
    processor: &Processor,
    jobs: &Mutex<Receiver<Job>>,
    back: &Sender<Option<Conn>>,
    wake: &UnixStream,
) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(Job {
            conn,
            request,
            cancel,
        }) = job
        else {
            return;
        };
        // A call that waited in the queue for a client that has hung up
        // since is not worth generating.
        if client_gone(&conn.stream) {
            tracing::debug!("dropped a call whose client has gone");
            drop(cancel);
            if back.send(None).is_err() {
                return;
            }
            let mut w = wake;
            let _ = w.write(&[1]);
            continue;
        }
        tracing::debug!("call started");
        let started = Instant::now();
        let served = std::panic::catch_unwind(AssertUnwindSafe(|| {
            conn.stream.set_nonblocking(false)?;
            let mut i = BoundedInput::new(&request[..], wire::LIMITS);
            let mut o = TBinaryOutputProtocol::new(
                TBufferedWriteTransport::with_capacity(
                    WRITE_BUFFER,
                    DeadlineWriter {
                        stream: &conn.stream,
                        started: None,
                    },
                ),
                true,
            );
            processor
                .process(&mut i, &mut o, conn.peer, &cancel)
                .map_err(|e| io::Error::other(wire::describe(&e)))?;
            conn.stream.set_nonblocking(true)
        }));
        let kept = match served {
            _ if cancel.is_cancelled() => {
                tracing::debug!(
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "abandoned generate for closed client"
                );
                None
            }
            Ok(Ok(())) => {
                tracing::debug!(
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "call answered"
                );
                Some(conn)
            }
            Ok(Err(e)) => {
                tracing::debug!("extension connection closed: {e}");
                None
            }
            // The panic hook has logged it.
            Err(_) => None,
        };
        drop(cancel);
        // `None` still tells the reactor that a call is over.
        if back.send(kept).is_err() {
            return;
        }
        let mut w = wake;
        let _ = w.write(&[1]);
    }
}

/// Runs the reactor on `listener` until it fails (then `ListenerFailed`).
pub fn start(
    listener: UnixListener,
    processor: Arc<Processor>,
    events: Sender<Event>,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let (wake_rx, wake_tx) = UnixStream::pair()?;
    wake_rx.set_nonblocking(true)?;
    wake_tx.set_nonblocking(true)?;
    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let (back_tx, back_rx) = mpsc::channel();
    let jobs = Arc::new(Mutex::new(job_rx));
    for n in 0..WORKERS {
        let (processor, jobs, back, wake) = (
            processor.clone(),
            jobs.clone(),
            back_tx.clone(),
            wake_tx.try_clone()?,
        );
        std::thread::Builder::new()
            .name(format!("worker{n}"))
            .spawn(move || work(&processor, &jobs, &back, &wake))?;
    }
    std::thread::Builder::new()
        .name("reactor".into())
        .spawn(move || {
            let failed = events.clone();
            let mut r = Reactor {
                listener,
                processor,
                events,
                wake: wake_rx,
                jobs: job_tx,
                back: back_rx,
                conns: Vec::new(),
                watched: Vec::new(),
                calls: 0,
                buffered: 0,
                scratch: vec![0; READ_CHUNK],
            };
            // Without the reactor nothing is served: the extension must end
            // (the panic hook has logged why).
            if std::panic::catch_unwind(AssertUnwindSafe(|| r.run())).is_err() {
                let _ = failed.send(Event::ListenerFailed);
            }
        })?;
    Ok(())
}

struct Reactor {
    listener: UnixListener,
    processor: Arc<Processor>,
    events: Sender<Event>,
    wake: UnixStream,
    jobs: Sender<Job>,
    back: Receiver<Option<Conn>>,
    conns: Vec<Conn>,
    /// The connections of the calls with workers.
    watched: Vec<Watched>,
    /// Calls queued for or held by workers.
    calls: usize,
    /// Capacity of the buffers of `conns` (and of the one being advanced),
    /// counted at the start of each turn and kept up to date by reads.
    buffered: usize,
    scratch: Vec<u8>,
}

impl Reactor {
    fn run(&mut self) {
        loop {
            let now = Instant::now();
            let before = self.conns.len();
            self.conns.retain(|c| c.deadline() > now);
            if self.conns.len() < before {
                tracing::debug!(
                    closed = before - self.conns.len(),
                    "closed connections that missed their deadline"
                );
            }
            let timeout = self
                .conns
                .iter()
                .map(|c| c.deadline().saturating_duration_since(now))
                .min()
                .unwrap_or(Duration::from_secs(60));
            let timeout = PollTimeout::try_from(timeout.as_millis().saturating_add(1))
                .unwrap_or(PollTimeout::MAX);
            let revents = {
                let mut fds = Vec::with_capacity(self.conns.len() + 2);
                fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
                fds.push(PollFd::new(self.wake.as_fd(), PollFlags::POLLIN));
                for c in &self.conns {
                    let ev = if c.writing() {
                        PollFlags::POLLOUT
                    } else {
                        PollFlags::POLLIN
                    };
                    fds.push(PollFd::new(c.stream.as_fd(), ev));
                }
                // Only hang-ups (always reported): a request sent behind
                // the call waits until the worker is done.
                for w in &self.watched {
                    fds.push(PollFd::new(w.stream.as_fd(), PollFlags::empty()));
                }
                match nix::poll::poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        tracing::error!("cannot poll the extension's connections: {e}");
                        let _ = self.events.send(Event::ListenerFailed);
                        return;
                    }
                }
                fds.iter()
                    .map(|f| f.revents().unwrap_or(PollFlags::empty()))
                    .collect::<Vec<_>>()
            };
            let ready = PollFlags::POLLIN
                | PollFlags::POLLOUT
                | PollFlags::POLLHUP
                | PollFlags::POLLERR
                | PollFlags::POLLNVAL;
            self.buffered = self.conns.iter().map(|c| c.buf.capacity()).sum();
            let (conn_ev, watch_ev) = revents[2..].split_at(self.conns.len());
            self.hang_ups(watch_ev);
            let conns = std::mem::take(&mut self.conns);
            for (c, ev) in conns.into_iter().zip(conn_ev) {
                let step = if ev.intersects(ready) {
                    self.advance(c, true)
                } else {
                    Step::Keep(c)
                };
                self.apply(step);
            }
            if !revents[1].is_empty() {
                self.take_back();
            }
            if !revents[0].is_empty() && !self.accept() {
                let _ = self.events.send(Event::ListenerFailed);
                return;
            }
            self.keep_budget();
        }
    }

    /// Sheds the connections holding the most buffered bytes until all of
    /// them hold at most [`BUFFER_BUDGET`]. Calls in progress are with the
    /// workers, not here, and a ping's buffer is a few dozen bytes: the
    /// core's connections are not the ones shed.
    fn keep_budget(&mut self) {
        let mut total: usize = self.conns.iter().map(|c| c.buf.capacity()).sum();
        while total > BUFFER_BUDGET {
            let Some((i, held)) = self
                .conns
                .iter()
                .map(|c| c.buf.capacity())
                .enumerate()
                .max_by_key(|&(_, n)| n)
            else {
                break;
            };
            self.conns.swap_remove(i);
            total -= held;
            tracing::warn!(
                held,
                "connections buffer more than {} MiB of partial requests; closed the one holding the most",
                BUFFER_BUDGET >> 20
            );
        }
        self.buffered = total;
    }

    /// Cancels the calls whose clients have hung up, and stops watching
    /// those and the calls that are over.
    fn hang_ups(&mut self, revents: &[PollFlags]) {
        let gone = PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL;
        let mut ev = revents.iter();
        self.watched.retain(|w| {
            if ev.next().is_some_and(|e| e.intersects(gone)) {
                w.cancel.cancel();
                return false;
            }
            w.cancel.is_shared()
        });
    }

    fn apply(&mut self, step: Step) {
        match step {
            Step::Keep(c) => self.conns.push(c),
            Step::Close => {}
            Step::Call(job) => {
                if self.calls >= MAX_CALLS {
                    tracing::warn!(
                        "{MAX_CALLS} table calls already in progress; closing a connection"
                    );
                    return;
                }
                if let Ok(stream) = job.conn.stream.try_clone() {
                    self.watched.push(Watched {
                        stream,
                        cancel: job.cancel.clone(),
                    });
                }
                self.calls += 1;
                if self.jobs.send(job).is_err() {
                    self.calls -= 1;
                }
            }
        }
    }

    /// Connections that workers are done with.
    fn take_back(&mut self) {
        let mut sink = [0u8; 64];
        while matches!(self.wake.read(&mut sink), Ok(n) if n > 0) {}
        while let Ok(done) = self.back.try_recv() {
            self.calls = self.calls.saturating_sub(1);
            if let Some(mut c) = done {
                c.since = Instant::now();
                // A request sent behind the call is in `buf` already.
                let step = self.advance(c, false);
                self.apply(step);
            }
        }
    }

    /// Accepts what is waiting; false when the socket is unusable.
    fn accept(&mut self) -> bool {
        for _ in 0..ACCEPT_BATCH {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_transient(&e) => {
                    tracing::warn!("extension socket: {e}; closing the slowest connection");
                    self.shed();
                    return true;
                }
                Err(e) => {
                    tracing::error!("extension socket stopped accepting: {e}");
                    return false;
                }
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            if self.conns.len() >= MAX_CONNECTIONS {
                self.shed();
            }
            // osquery writes its request as soon as it is connected: it may
            // be there already.
            let step = self.advance(Conn::new(stream), true);
            self.apply(step);
        }
        true
    }

    /// Closes the connection that has waited longest for its request.
    fn shed(&mut self) {
        let oldest = self
            .conns
            .iter()
            .enumerate()
            .min_by_key(|(_, c)| c.since)
            .map(|(i, _)| i);
        if let Some(i) = oldest {
            self.conns.swap_remove(i);
            tracing::debug!("too many connections; closed the slowest");
        }
    }

    /// Moves a connection on: writes its pending reply, reads (when
    /// `readable`), answers or hands off the requests that are whole.
    fn advance(&mut self, mut c: Conn, mut readable: bool) -> Step {
        loop {
            if c.writing() {
                match (&c.stream).write(&c.out[c.written..]) {
                    Ok(n) => c.written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Keep(c),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return Step::Close,
                }
                if c.writing() {
                    continue;
                }
                c.out = Vec::new();
                c.written = 0;
                c.since = Instant::now();
                if c.then_shutdown {
                    let _ = self.events.send(Event::Shutdown);
                    return Step::Close;
                }
            }
            if c.buf.len() < c.need && readable {
                readable = false;
                // Over the budget, nothing more is read this turn; at its
                // end the largest buffers are shed.
                if self.buffered.saturating_add(READ_CHUNK) > BUFFER_BUDGET
                    && c.buf.len() >= READ_CHUNK
                {
                    return Step::Keep(c);
                }
                match c.stream.read(&mut self.scratch) {
                    Ok(0) => return Step::Close,
                    Ok(n) => {
                        let before = c.buf.capacity();
                        c.buf.extend_from_slice(&self.scratch[..n]);
                        self.buffered += c.buf.capacity().saturating_sub(before);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Keep(c),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Step::Close,
                }
            }
            if c.buf.len() < c.need {
                return Step::Keep(c);
            }
            let (len, method) = match whole_request(&c.buf) {
                Ok(Ok(whole)) => whole,
                Ok(Err(need)) => {
                    c.need = need;
                    continue;
                }
                Err(e) if wire::is_limit(&e) => {
                    tracing::warn!("closed an extension connection: {}", wire::describe(&e));
                    return Step::Close;
                }
                Err(e) => {
                    tracing::debug!("extension connection closed: {}", wire::describe(&e));
                    return Step::Close;
                }
            };
            let request: Vec<u8> = c.buf.drain(..len).collect();
            c.need = 1;
            if c.buf.capacity() > READ_CHUNK && c.buf.len() < READ_CHUNK {
                c.buf.shrink_to(READ_CHUNK);
            }
            if method == "call" {
                return Step::Call(Job {
                    conn: c,
                    request,
                    cancel: Cancel::new(),
                });
            }
            // ping, shutdown, or an unknown method: a short reply, here.
            let mut out = Vec::new();
            let mut o = TBinaryOutputProtocol::new(&mut out, true);
            let mut i = BoundedInput::new(&request[..], wire::LIMITS);
            if let Err(e) = self
                .processor
                .process(&mut i, &mut o, c.peer, &Cancel::new())
            {
                tracing::debug!("extension connection closed: {}", wire::describe(&e));
                return Step::Close;
            }
            c.then_shutdown = self.processor.shutdown_requested().load(Ordering::SeqCst);
            c.out = out;
            c.written = 0;
            c.since = Instant::now();
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ping(seq: i32) -> Vec<u8> {
        let mut v = vec![0x80, 0x01, 0x00, 0x01, 0, 0, 0, 4];
        v.extend(b"ping");
        v.extend(seq.to_be_bytes());
        v.push(0);
        v
    }

    #[test]
    fn a_request_is_whole_only_when_its_last_byte_is_there() {
        let p = ping(3);
        for cut in 0..p.len() {
            match whole_request(&p[..cut]) {
                Ok(Err(need)) => assert!(need > cut, "{cut}: {need}"),
                other => panic!("{cut}: {other:?}"),
            }
        }
        let mut two = p.clone();
        two.extend(ping(4));
        let (len, name) = whole_request(&two).expect("ok").expect("whole");
        assert_eq!((len, name.as_str()), (p.len(), "ping"));
    }

    #[test]
    fn a_long_string_is_waited_for_without_parsing_again() {
        let mut v = vec![0x80, 0x01, 0x00, 0x01, 0, 0, 0, 4];
        v.extend(b"call");
        v.extend(1i32.to_be_bytes());
        v.extend([0x0b, 0x00, 0x01]);
        v.extend(100_000i32.to_be_bytes());
        v.extend([b'x'; 10]);
        let need = whole_request(&v).expect("ok").expect_err("partial");
        assert_eq!(need, 23 + 100_000);
    }

    #[test]
    fn a_client_is_gone_when_it_closed_not_when_it_only_stopped_writing() {
        let (a, b) = UnixStream::pair().expect("pair");
        assert!(!client_gone(&a));
        b.shutdown(std::net::Shutdown::Write).expect("shutdown");
        assert!(!client_gone(&a));
        drop(b);
        assert!(client_gone(&a));
    }

    #[test]
    fn garbage_and_oversize_are_errors() {
        assert!(whole_request(b"GET / HTTP/1.1\r\n").is_err());
        let mut v = vec![0x80, 0x01, 0x00, 0x01, 0, 0, 0, 4];
        v.extend(b"call");
        v.extend(1i32.to_be_bytes());
        v.extend([0x0b, 0x00, 0x01, 0x7f, 0xff, 0xff, 0xff]);
        let e = whole_request(&v).expect_err("limit");
        assert!(wire::is_limit(&e));
    }
}
