//! The DHCPv4 client a jail's monitor runs for the jail, on the host side.
//!
//! The monitor (root on the host) runs this client on a thread that joined
//! the jail's network namespace ([`crate::sys::dhcpsock::in_netns`],
//! [`crate::sys::dhcpsock::spawn_in_netns`]), before the jail's command
//! starts and for as long as it runs. The jail's template needs no DHCP
//! client, and the jail needs neither `CAP_NET_ADMIN` nor `CAP_NET_RAW`.
//!
//! # What it does (RFC 2131)
//! - [`Client::obtain`]: with no recorded lease, DISCOVER, OFFER, REQUEST,
//!   ACK. With the lease recorded at the last start, first INIT-REBOOT (a
//!   broadcast REQUEST for that address, no server identifier); a NAK, or
//!   silence for a few seconds (a server that does not know the lease and is
//!   not authoritative stays silent), falls back to DISCOVER, which still
//!   asks for the old address as a hint.
//! - [`Client::renew`] at T1: a REQUEST unicast to the server (to the MAC its
//!   last answer came from), `ciaddr` set, neither server identifier nor
//!   requested address (section 4.3.2, RENEWING). [`Client::rebind`] at T2:
//!   the same, broadcast. [`Client::maintain`] runs both in a loop and
//!   reports every extension, change of address and loss to its caller.
//! - [`Client::release`] at stop: a unicast RELEASE with `ciaddr` set to the
//!   address and only the message type, server identifier and client
//!   identifier (section 4.4.1). In particular no requested-address option:
//!   dnsmasq clears `ciaddr` when it sees one and then drops the RELEASE
//!   silently (mozim had exactly this bug, nispor/mozim#87).
//! - Every message carries the client identifier (option 61) the caller
//!   derives from the jail's identity ([`client_id_for`]): ipvlan children
//!   share their parent's MAC, so `chaddr` cannot tell two jails apart.
//!   Requests that expect an answer before the address is configured set the
//!   broadcast flag, so the answer reaches an ipvlan child (whose unicast is
//!   dispatched by IP address, which it does not have yet) and a macvlan one
//!   alike.
//!
//! # Which server is believed
//! A jail holds `net_bind_service`, so it can run a DHCP server on its own
//! interface and answer its neighbours' broadcasts. Replies are therefore
//! accepted only when their server identifier (option 54) is the trusted
//! server *and* their IP source address is that server: a jail has no
//! `CAP_NET_RAW` and no `CAP_NET_ADMIN`, so it can neither forge a source
//! address nor add the server's address to its interface. The trusted server
//! is, in order: the one the spec names (`accept_server`, from `dhcp=SERVER`),
//! else the one the jail's recorded lease came from (its first lease pins it
//! for good), else the one the pool learned for the parent
//! ([`Client::trusting`], see `crate::net::lease::pool_server`). Frames the
//! jail's own namespace sent (`PACKET_OUTGOING`) are never answers, and
//! unless the spec names the server, frames from a jail's own MAC are not
//! either ([`Client::distrusting`]): a jail cannot send from another MAC.
//!
//! With no trusted server (the very first lease on a parent, no server
//! named) nothing else tells the real server from another machine's, and
//! the client does not guess: it collects offers for [`OFFER_WINDOW`] after
//! the first, takes the offer when they all come from one server, and fails
//! with [`DhcpError::Ambiguous`] naming every server when several answered.
//! What remains is the first-lease risk: another machine that answers while
//! the real server is down, or before it is up, is believed, and pinned;
//! naming the server with `dhcp=SERVER` closes that. Replies relayed by a
//! DHCP relay agent (source = the relay, not the server) are not accepted in
//! this version.
//!
//! # Why dhcproto, and not mozim
//! dhcproto (used by mozim itself and by dora, a DHCP server) encodes and
//! decodes the messages and options; etherparse builds and parses the
//! IPv4/UDP headers around them. The client state machine is ours, about as
//! long as mozim's, because the jail's needs are not mozim's: accepting
//! answers from one pinned server only (mozim takes the first offer),
//! INIT-REBOOT from a lease recorded by the caller, a synchronous API on a
//! thread that joined another namespace (mozim's own event loop and timers
//! own the socket), and the renew/release behaviour checked against dnsmasq
//! here rather than inherited: mozim's tracker shows a RENEW sent to `siaddr`
//! instead of the server identifier (nispor/mozim#78) and a RELEASE that
//! dnsmasq ignored (nispor/mozim#87), both fixed only recently.
//!
//! # Sockets
//! See [`crate::sys::dhcpsock`]: an `AF_PACKET` datagram socket on the
//! interface, for sending before an address exists and receiving before the
//! IP stack's reverse-path filter, on macvlan and ipvlan alike. ipvlan's `l3`
//! modes deliver no broadcasts, so DHCP needs `l2` there.
//!
//! # Times
//! A lease's times are recorded as wall-clock seconds ([`Lease::obtained_at`],
//! counted from the moment the request that got it was sent), so a restarted
//! monitor can tell whether its recorded lease has run out; waits re-read
//! the clock at least once a minute.

use crate::sys::dhcpsock::{PacketSocket, Received};
use dhcproto::v4::{DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CLIENT_PORT: u16 = 68;
const SERVER_PORT: u16 = 67;
const BROADCAST_MAC: [u8; 6] = [0xff; 6];
/// At most this many DNS servers are kept from a lease.
pub const MAX_DNS: usize = 3;
/// With no trusted server yet, how long offers are collected after the
/// first: longer than a real server's check that an address is free before
/// it offers it (dnsmasq pings it for 3 s, ISC dhcpd for 1 s), so that a
/// rogue that answers at once is not alone in the window.
pub const OFFER_WINDOW: Duration = Duration::from_millis(4000);
/// How long INIT-REBOOT waits for an answer before falling back to DISCOVER.
const INIT_REBOOT_WAIT: Duration = Duration::from_secs(3);
/// How many NAKs to a REQUEST after an OFFER are tolerated before giving up.
const MAX_NAKS: usize = 3;
/// The longest a single wait lasts before the wall clock is read again.
const CLOCK_CHECK: Duration = Duration::from_secs(60);
/// How long [`Client::maintain`] waits before trying again after an I/O error.
const IO_RETRY: Duration = Duration::from_secs(5);
/// How many distinct untrusted answerers an error reports.
const MAX_IGNORED: usize = 8;

/// A DHCP lease as it is recorded in the jail's record and shown by
/// `inspect`. Times are seconds; `obtained_at` is seconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// The server identifier of the server that granted the lease: the one
    /// trusted from then on when the spec names none.
    pub server: Ipv4Addr,
    /// The link-layer address the server's last answer came from (where a
    /// renewal and a release are unicast), `aa:bb:cc:dd:ee:ff`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_mac: Option<String>,
    /// Lease time; `u32::MAX` is an infinite lease.
    pub lease_secs: u32,
    /// T1, when renewing starts.
    pub t1_secs: u32,
    /// T2, when rebinding starts.
    pub t2_secs: u32,
    /// When the request that got this lease was sent.
    pub obtained_at: u64,
    /// Given back with a RELEASE: no longer the jail's, but still the
    /// address and server to ask for at the next start.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub released: bool,
}

impl Lease {
    fn at(&self, secs: u32) -> u64 {
        if self.lease_secs == u32::MAX {
            u64::MAX
        } else {
            self.obtained_at.saturating_add(u64::from(secs))
        }
    }

    /// When the lease runs out (seconds since the epoch; `u64::MAX` never).
    pub fn expires_at(&self) -> u64 {
        self.at(self.lease_secs)
    }

    /// When renewing starts (T1).
    pub fn renew_at(&self) -> u64 {
        self.at(self.t1_secs)
    }

    /// When rebinding starts (T2).
    pub fn rebind_at(&self) -> u64 {
        self.at(self.t2_secs)
    }

    /// The lease has run out by the wall clock.
    pub fn expired(&self) -> bool {
        now_secs() >= self.expires_at()
    }

    fn server_mac_bytes(&self) -> Option<[u8; 6]> {
        let s = self.server_mac.as_deref()?;
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in out.iter_mut() {
            *b = u8::from_str_radix(parts.next()?, 16).ok()?;
        }
        parts.next().is_none().then_some(out)
    }
}

/// What a [`DhcpError`] is, as a stable word for scripts and the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DhcpErrorKind {
    /// No trusted server answered in time.
    Timeout,
    /// The trusted server answered with a NAK.
    Refused,
    /// Several servers offered and none is trusted yet.
    Ambiguous,
    /// A bad argument (client identifier, host name).
    Invalid,
    /// The stop signal came first.
    Stopped,
    /// A socket or system call failed.
    Io,
}

impl DhcpErrorKind {
    /// `timeout`, `refused`, `ambiguous`, `invalid`, `stopped`, `io`.
    pub fn as_str(self) -> &'static str {
        match self {
            DhcpErrorKind::Timeout => "timeout",
            DhcpErrorKind::Refused => "refused",
            DhcpErrorKind::Ambiguous => "ambiguous",
            DhcpErrorKind::Invalid => "invalid",
            DhcpErrorKind::Stopped => "stopped",
            DhcpErrorKind::Io => "io",
        }
    }
}

/// A server that answered but was not believed, kept for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ignored {
    /// Its server identifier (option 54), if it sent one.
    pub server: Option<Ipv4Addr>,
    /// The IP source address of its answer.
    pub source: Ipv4Addr,
    /// Whether its link-layer source is one of the jails' own (see
    /// [`Client::distrusting`]).
    pub jail: bool,
}

fn ignored_text(ignored: &[Ignored], trusted: Option<Ipv4Addr>) -> String {
    if ignored.is_empty() {
        return String::new();
    }
    let list: Vec<String> = ignored
        .iter()
        .map(|i| {
            let who = match i.server {
                Some(s) if s == i.source => s.to_string(),
                Some(s) => format!("{} claiming to be {s}", i.source),
                None => format!("{} without a server identifier", i.source),
            };
            if i.jail {
                format!("{who} from a jail's interface")
            } else {
                who
            }
        })
        .collect();
    let why = match trusted {
        Some(t) => format!("only {t} is trusted"),
        None => "none is trusted".to_string(),
    };
    format!("; ignored answers from {} ({why})", list.join(", "))
}

fn ips_text(ips: &[Ipv4Addr]) -> String {
    let v: Vec<String> = ips.iter().map(Ipv4Addr::to_string).collect();
    v.join(", ")
}

#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    #[error(
        "no answer to DHCP {what} on {ifname} within {}s{}; check that the DHCP server is up \
         and reachable on the parent's LAN{}",
        waited.as_secs(), ignored_text(ignored, *trusted),
        if trusted.is_some() { ", and that dhcp=SERVER names it" } else { "" }
    )]
    Timeout {
        ifname: String,
        what: &'static str,
        waited: Duration,
        trusted: Option<Ipv4Addr>,
        ignored: Vec<Ignored>,
    },
    #[error("DHCP server {server} refused {address} on {ifname} (NAK{})",
        if message.is_empty() { String::new() } else { format!(": {message}") })]
    Refused {
        ifname: String,
        server: Ipv4Addr,
        address: Ipv4Addr,
        /// The server's message (option 56), escaped and cut to 100 characters.
        message: String,
    },
    #[error(
        "several DHCP servers offered a lease on {ifname} ({}) and none is trusted yet; \
         name the right one with dhcp=SERVER",
        ips_text(servers)
    )]
    Ambiguous {
        ifname: String,
        servers: Vec<Ipv4Addr>,
    },
    #[error("DHCP client on {ifname}: invalid {what}: {why}")]
    Invalid {
        ifname: String,
        what: &'static str,
        why: String,
    },
    #[error("DHCP client on {ifname}: stopped")]
    Stopped { ifname: String },
    #[error("DHCP client on {ifname}: {op}")]
    Io {
        ifname: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl DhcpError {
    /// The stable kind of this error.
    pub fn dhcp_kind(&self) -> DhcpErrorKind {
        match self {
            DhcpError::Timeout { .. } => DhcpErrorKind::Timeout,
            DhcpError::Refused { .. } => DhcpErrorKind::Refused,
            DhcpError::Ambiguous { .. } => DhcpErrorKind::Ambiguous,
            DhcpError::Invalid { .. } => DhcpErrorKind::Invalid,
            DhcpError::Stopped { .. } => DhcpErrorKind::Stopped,
            DhcpError::Io { .. } => DhcpErrorKind::Io,
        }
    }
}

/// The client identifier (option 61) for a jail: type 0 (not a hardware
/// address) followed by `prodng:` and the jail's identity (its id, stable
/// across restarts and unique among the pool's jails).
pub fn client_id_for(identity: &str) -> Vec<u8> {
    let mut id = vec![0u8];
    id.extend_from_slice(b"prodng:");
    id.extend_from_slice(identity.as_bytes());
    id
}

/// A stop signal for [`Client::maintain`] and every wait of a [`Client`]
/// given it with [`Client::with_stop`]: a pipe whose read end becomes
/// readable, so a wait on a socket wakes at once. Clones share the signal.
#[derive(Debug, Clone)]
pub struct Stop(Arc<(OwnedFd, OwnedFd)>);

impl Stop {
    pub fn new() -> std::io::Result<Self> {
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
        Ok(Stop(Arc::new((r, w))))
    }

    /// Signals every holder; idempotent.
    pub fn stop(&self) {
        // A full pipe (EAGAIN) is already signalled.
        let _ = nix::unistd::write(&self.0 .1, b"x");
    }

    pub fn is_stopped(&self) -> bool {
        let mut fds = [nix::poll::PollFd::new(
            self.0 .0.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO), Ok(n) if n > 0)
    }
}

/// What [`Client::maintain`] reports.
#[derive(Debug, Clone, Copy)]
pub enum LeaseEvent<'a> {
    /// The server extended the lease; the address is unchanged (record the
    /// new times).
    Extended(&'a Lease),
    /// A renewal or rebinding answered with a different address, prefix or
    /// gateway: reconfigure the interface.
    Changed { old: &'a Lease, new: &'a Lease },
    /// The lease ended (NAK, or expiry with no answer): remove the address.
    /// The loop then looks for a new lease with DISCOVER.
    Lost(&'a Lease),
    /// A new lease after [`LeaseEvent::Lost`]: configure it.
    Acquired(&'a Lease),
}

/// A DHCP client for one interface of one jail. Every operation runs in the
/// calling thread's network namespace and opens its own socket there.
#[derive(Debug, Clone)]
pub struct Client {
    ifname: String,
    ifindex: u32,
    mac: [u8; 6],
    client_id: Vec<u8>,
    accept_server: Option<Ipv4Addr>,
    /// Link-layer sources whose answers are never believed: the jails'
    /// own interfaces ([`Client::distrusting`]).
    distrusted: Arc<[[u8; 6]]>,
    hostname: Option<String>,
    stop: Option<Stop>,
}

/// An answer that matched the transaction (op, xid, chaddr, client id).
#[derive(Debug)]
struct Reply {
    msg: Message,
    kind: MessageType,
    server: Option<Ipv4Addr>,
    src_ip: Ipv4Addr,
    src_mac: [u8; 6],
}

/// What a judge says of a matching answer.
enum Step<T> {
    /// Not for us after all (untrusted, malformed): keep waiting.
    Skip,
    /// The transaction is done.
    Done(T),
    /// A candidate: keep listening for [`OFFER_WINDOW`], then return all.
    Hold(T),
}

enum Outcome<T> {
    Done(T),
    Held(Vec<T>),
}

/// Why a transaction ended without an outcome.
enum Ended {
    TimedOut,
    Stopped,
    Io(&'static str, std::io::Error),
}

/// A destination: IP address and link-layer address.
#[derive(Clone, Copy)]
struct Dest {
    ip: Ipv4Addr,
    mac: [u8; 6],
}

const BROADCAST: Dest = Dest {
    ip: Ipv4Addr::BROADCAST,
    mac: BROADCAST_MAC,
};

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The instant at `unix` seconds by the wall clock now (capped a day ahead:
/// waits re-read the clock anyway).
fn instant_at(unix: u64) -> Instant {
    let ahead = unix.saturating_sub(now_secs()).min(86_400);
    Instant::now() + Duration::from_secs(ahead)
}

fn mac_text(mac: [u8; 6]) -> String {
    let v: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    v.join(":")
}

fn usable_address(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback())
}

/// The prefix length of a contiguous netmask.
fn mask_prefix(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let len = m.leading_ones();
    (m.checked_shl(len).unwrap_or(0) == 0).then_some(len as u8)
}

/// The classful prefix RFC 2131 falls back to when no mask is given.
fn classful_prefix(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

/// A server's free text, escaped and bounded before it is stored or printed.
fn server_text(s: &str) -> String {
    let s: String = s.chars().take(100).collect();
    s.escape_debug().to_string()
}

impl Client {
    /// A client for the interface `ifname` (index `ifindex`, link-layer
    /// address `mac`) that identifies itself with `client_id` (the whole
    /// option 61 payload, see [`client_id_for`]) and believes only
    /// `accept_server` when given (see the module's documentation).
    pub fn new(
        ifname: &str,
        ifindex: u32,
        mac: [u8; 6],
        client_id: Vec<u8>,
        accept_server: Option<Ipv4Addr>,
    ) -> Result<Client, DhcpError> {
        let invalid = |what, why: &str| DhcpError::Invalid {
            ifname: ifname.to_string(),
            what,
            why: why.to_string(),
        };
        if client_id.len() < 2 || client_id.len() > 255 {
            return Err(invalid("client identifier", "it must be 2 to 255 bytes"));
        }
        if mac[0] & 1 != 0 {
            return Err(invalid("MAC address", "it is a multicast address"));
        }
        if let Some(s) = accept_server {
            if !usable_address(s) {
                return Err(invalid(
                    "DHCP server address",
                    "it is not a unicast address",
                ));
            }
        }
        Ok(Client {
            ifname: ifname.to_string(),
            ifindex,
            mac,
            client_id,
            accept_server,
            distrusted: Arc::new([]),
            hostname: None,
            stop: None,
        })
    }

    /// Sends `name` as the host name (option 12), for the server's lease
    /// table and DNS. 1 to 63 letters, digits and `-`.
    pub fn with_hostname(mut self, name: &str) -> Result<Client, DhcpError> {
        let ok = !name.is_empty()
            && name.len() <= 63
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(DhcpError::Invalid {
                ifname: self.ifname.clone(),
                what: "host name",
                why: "it must be 1 to 63 letters, digits and '-'".to_string(),
            });
        }
        self.hostname = Some(name.to_string());
        Ok(self)
    }

    /// Makes every wait of this client end with [`DhcpError::Stopped`] once
    /// `stop` is signalled.
    pub fn with_stop(mut self, stop: Stop) -> Client {
        self.stop = Some(stop);
        self
    }

    /// The same client, believing `server` (as `accept_server` would): the
    /// server the pool learned for the interface's parent. A server that is
    /// not a unicast address is ignored.
    pub fn trusting(mut self, server: Ipv4Addr) -> Client {
        if usable_address(server) {
            self.accept_server = Some(server);
        }
        self
    }

    /// The same client, never believing an answer whose link-layer source
    /// is one of `macs`: the interfaces of the host's jails (and the parent,
    /// whose MAC ipvlan jails share). A jail may run a DHCP server, but it
    /// has neither `CAP_NET_RAW` nor `CAP_NET_ADMIN`, so its frames always
    /// carry its own interface's MAC: this rule holds even when no server is
    /// trusted yet. The caller leaves it out when the spec names the server
    /// (a DHCP server the operator runs in a jail).
    pub fn distrusting(mut self, macs: impl IntoIterator<Item = [u8; 6]>) -> Client {
        let mut v: Vec<[u8; 6]> = macs.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        self.distrusted = v.into();
        self
    }

    /// The server this client believes, given the recorded lease.
    pub fn trusted_server(&self, prev: Option<&Lease>) -> Option<Ipv4Addr> {
        self.accept_server.or(prev.map(|l| l.server))
    }

    fn io(&self, op: &'static str, source: std::io::Error) -> DhcpError {
        DhcpError::Io {
            ifname: self.ifname.clone(),
            op,
            source,
        }
    }

    fn ended(
        &self,
        e: Ended,
        what: &'static str,
        waited: Duration,
        trusted: Option<Ipv4Addr>,
        ignored: &[Ignored],
    ) -> DhcpError {
        match e {
            Ended::TimedOut => DhcpError::Timeout {
                ifname: self.ifname.clone(),
                what,
                waited,
                trusted,
                ignored: ignored.to_vec(),
            },
            Ended::Stopped => DhcpError::Stopped {
                ifname: self.ifname.clone(),
            },
            Ended::Io(op, source) => self.io(op, source),
        }
    }

    fn open(&self) -> Result<PacketSocket, DhcpError> {
        PacketSocket::open(self.ifindex)
            .map_err(|e| self.io("cannot open a packet socket on the interface", e))
    }

    /// A request message with the options every request of this client
    /// carries.
    fn message(&self, xid: u32, kind: MessageType, ciaddr: Ipv4Addr, broadcast: bool) -> Message {
        let z = Ipv4Addr::UNSPECIFIED;
        let mut m = Message::new_with_id(xid, ciaddr, z, z, z, &self.mac);
        m.set_opcode(Opcode::BootRequest).set_htype(HType::Eth);
        if broadcast {
            m.set_flags(Flags::default().set_broadcast());
        }
        let opts = m.opts_mut();
        opts.insert(DhcpOption::MessageType(kind));
        opts.insert(DhcpOption::ClientIdentifier(self.client_id.clone()));
        if kind != MessageType::Release {
            opts.insert(DhcpOption::MaxMessageSize(1500));
            opts.insert(DhcpOption::ParameterRequestList(vec![
                OptionCode::SubnetMask,
                OptionCode::Router,
                OptionCode::DomainNameServer,
                OptionCode::AddressLeaseTime,
                OptionCode::Renewal,
                OptionCode::Rebinding,
            ]));
            if let Some(h) = &self.hostname {
                opts.insert(DhcpOption::Hostname(h.clone()));
            }
        }
        m
    }

    /// The IPv4/UDP packet carrying `msg` from `src` to `dst`.
    fn packet(&self, msg: &Message, src: Ipv4Addr, dst: Ipv4Addr) -> Result<Vec<u8>, DhcpError> {
        let mut payload = Vec::with_capacity(300);
        msg.encode(&mut Encoder::new(&mut payload))
            .map_err(|e| self.io("cannot encode a DHCP message", std::io::Error::other(e)))?;
        // BOOTP's minimum message size; some relays drop shorter ones.
        if payload.len() < 300 {
            payload.resize(300, 0);
        }
        let builder = etherparse::PacketBuilder::ipv4(src.octets(), dst.octets(), 64)
            .udp(CLIENT_PORT, SERVER_PORT);
        let mut out = Vec::with_capacity(builder.size(payload.len()));
        builder
            .write(&mut out, &payload)
            .map_err(|e| self.io("cannot build a DHCP packet", std::io::Error::other(e)))?;
        Ok(out)
    }

    /// Parses a received packet into a reply of transaction `xid` for this
    /// client, or `None` when it is anything else.
    fn parse(&self, buf: &[u8], rx: Received, xid: u32) -> Option<Reply> {
        if rx.outgoing {
            return None;
        }
        let p = etherparse::SlicedPacket::from_ip(buf.get(..rx.len)?).ok()?;
        let src_ip = match &p.net {
            Some(etherparse::NetSlice::Ipv4(ip)) => ip.header().source_addr(),
            _ => return None,
        };
        let udp = match &p.transport {
            Some(etherparse::TransportSlice::Udp(u)) => u,
            _ => return None,
        };
        if udp.source_port() != SERVER_PORT || udp.destination_port() != CLIENT_PORT {
            return None;
        }
        let msg = Message::decode(&mut Decoder::new(udp.payload())).ok()?;
        if msg.opcode() != Opcode::BootReply
            || msg.xid() != xid
            || msg.chaddr().get(..6) != Some(&self.mac[..])
        {
            return None;
        }
        // RFC 6842: a server echoes the client identifier; one that names
        // another client is not answering this one.
        if let Some(DhcpOption::ClientIdentifier(id)) = msg.opts().get(OptionCode::ClientIdentifier)
        {
            if *id != self.client_id {
                return None;
            }
        }
        let kind = msg.opts().msg_type()?;
        let server = match msg.opts().get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(s)) => Some(*s),
            _ => None,
        };
        Some(Reply {
            msg,
            kind,
            server,
            src_ip,
            src_mac: rx.src_mac,
        })
    }

    /// Waits until a reply of `xid` arrives (`Ok(Some)`), `until` passes
    /// (`Ok(None)`), or the stop signal comes.
    fn recv_until(
        &self,
        sock: &PacketSocket,
        xid: u32,
        until: Instant,
    ) -> Result<Option<Reply>, Ended> {
        let mut buf = vec![0u8; 2048];
        loop {
            while let Some(rx) = sock
                .recv(&mut buf)
                .map_err(|e| Ended::Io("cannot receive on the packet socket", e))?
            {
                if let Some(r) = self.parse(&buf, rx, xid) {
                    return Ok(Some(r));
                }
            }
            let now = Instant::now();
            if now >= until {
                return Ok(None);
            }
            let ms = (until - now).as_millis().clamp(1, 60_000) as u16;
            let mut fds = vec![nix::poll::PollFd::new(
                sock.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            if let Some(stop) = &self.stop {
                fds.push(nix::poll::PollFd::new(
                    stop.0 .0.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                ));
            }
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(Ended::Io("cannot poll the packet socket", e.into())),
            }
            if self.stop.as_ref().is_some_and(Stop::is_stopped) {
                return Err(Ended::Stopped);
            }
        }
    }

    /// Sends `packet` to `dst` and retransmits it with exponential backoff
    /// (from `first` up to `max`, plus up to 250 ms of jitter) until the
    /// judge is done with an answer or `deadline` passes.
    #[allow(clippy::too_many_arguments)]
    fn transact<T>(
        &self,
        sock: &PacketSocket,
        xid: u32,
        packet: &[u8],
        dst: Dest,
        deadline: Instant,
        (first, max): (Duration, Duration),
        mut judge: impl FnMut(Reply) -> Step<T>,
    ) -> Result<Outcome<T>, Ended> {
        let mut wait = first;
        let mut held = Vec::new();
        let mut window_end: Option<Instant> = None;
        loop {
            if window_end.is_none() {
                sock.send(dst.mac, packet)
                    .map_err(|e| Ended::Io("cannot send on the packet socket", e))?;
            }
            let jitter = Duration::from_millis(rand::random_range(0..250));
            let resend_at = (Instant::now() + wait + jitter).min(deadline);
            loop {
                let until = window_end.unwrap_or(resend_at);
                match self.recv_until(sock, xid, until)? {
                    Some(reply) => match judge(reply) {
                        Step::Skip => {}
                        Step::Done(t) => return Ok(Outcome::Done(t)),
                        Step::Hold(t) => {
                            held.push(t);
                            window_end.get_or_insert_with(|| {
                                (Instant::now() + OFFER_WINDOW).min(deadline)
                            });
                        }
                    },
                    None if window_end.is_some() => return Ok(Outcome::Held(held)),
                    None => break,
                }
            }
            if Instant::now() >= deadline {
                return Err(Ended::TimedOut);
            }
            wait = (wait * 2).min(max);
        }
    }

    /// Whether `r` comes from the trusted server (any server when `trusted`
    /// is `None`) and not from a distrusted link-layer address, recording
    /// it in `ignored` when not.
    fn believe(&self, r: &Reply, trusted: Option<Ipv4Addr>, ignored: &mut Vec<Ignored>) -> bool {
        let jail = self.distrusted.binary_search(&r.src_mac).is_ok();
        let ok = !jail
            && match r.server {
                Some(s) => s == r.src_ip && trusted.is_none_or_eq(s),
                None => false,
            };
        if !ok {
            let i = Ignored {
                server: r.server,
                source: r.src_ip,
                jail,
            };
            if !ignored.contains(&i) && ignored.len() < MAX_IGNORED {
                ignored.push(i);
            }
        }
        ok
    }

    /// The lease an ACK grants, or `None` when the ACK is unusable.
    fn lease_from(&self, ack: &Reply, sent_at: u64) -> Option<Lease> {
        let address = ack.msg.yiaddr();
        if !usable_address(address) {
            return None;
        }
        let opts = ack.msg.opts();
        let lease_secs = match opts.get(OptionCode::AddressLeaseTime) {
            Some(DhcpOption::AddressLeaseTime(t)) => *t,
            _ => return None,
        };
        let prefix = match opts.get(OptionCode::SubnetMask) {
            Some(DhcpOption::SubnetMask(m)) => mask_prefix(*m)?,
            _ => classful_prefix(address),
        };
        let gateway = match opts.get(OptionCode::Router) {
            Some(DhcpOption::Router(r)) => r.iter().copied().find(|a| usable_address(*a)),
            _ => None,
        };
        let dns = match opts.get(OptionCode::DomainNameServer) {
            Some(DhcpOption::DomainNameServer(d)) => d
                .iter()
                .copied()
                .filter(|a| usable_address(*a))
                .take(MAX_DNS)
                .collect(),
            _ => Vec::new(),
        };
        let t2_default = if lease_secs == u32::MAX {
            u32::MAX
        } else {
            (u64::from(lease_secs) * 7 / 8) as u32
        };
        let t1_default = if lease_secs == u32::MAX {
            u32::MAX
        } else {
            lease_secs / 2
        };
        let t2 = match opts.get(OptionCode::Rebinding) {
            Some(DhcpOption::Rebinding(t)) if *t <= lease_secs => *t,
            _ => t2_default,
        };
        let t1 = match opts.get(OptionCode::Renewal) {
            Some(DhcpOption::Renewal(t)) if *t <= t2 => *t,
            _ => t1_default.min(t2),
        };
        Some(Lease {
            address,
            prefix,
            gateway,
            dns,
            server: ack.server?,
            server_mac: Some(mac_text(ack.src_mac)),
            lease_secs,
            t1_secs: t1,
            t2_secs: t2,
            obtained_at: sent_at,
            released: false,
        })
    }

    fn nak(&self, r: &Reply, address: Ipv4Addr) -> DhcpError {
        let message = match r.msg.opts().get(OptionCode::Message) {
            Some(DhcpOption::Message(m)) => server_text(m),
            _ => String::new(),
        };
        DhcpError::Refused {
            ifname: self.ifname.clone(),
            server: r.server.unwrap_or(r.src_ip),
            address,
            message,
        }
    }

    /// Obtains a lease: INIT-REBOOT for `prev`'s address when a lease was
    /// recorded, else (or after a NAK or no answer) DISCOVER. Gives up at
    /// `deadline` with [`DhcpError::Timeout`].
    pub fn obtain(&self, prev: Option<&Lease>, deadline: Instant) -> Result<Lease, DhcpError> {
        let sock = self.open()?;
        let trusted = self.trusted_server(prev);
        let mut ignored = Vec::new();
        let started = Instant::now();
        // INIT-REBOOT only for a lease still held: a released or expired
        // one is gone from the server's table, and a server that is not
        // authoritative says nothing to it (a wait for nothing); DISCOVER
        // asks for the address as a hint instead.
        if let Some(prev) = prev.filter(|l| !l.released && !l.expired()) {
            let until = (Instant::now() + INIT_REBOOT_WAIT).min(deadline);
            match self.init_reboot(&sock, prev, trusted, until, &mut ignored) {
                Ok(lease) => return Ok(lease),
                Err(DhcpError::Refused { .. }) | Err(DhcpError::Timeout { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let hint = prev.map(|l| l.address);
        let mut naks = 0;
        loop {
            let offer = self.discover(&sock, trusted, hint, deadline, started, &mut ignored)?;
            match self.select(&sock, &offer, deadline, started, &mut ignored) {
                Ok(lease) => return Ok(lease),
                Err(DhcpError::Refused { .. }) if naks < MAX_NAKS => naks += 1,
                Err(e) => return Err(e),
            }
        }
    }

    fn init_reboot(
        &self,
        sock: &PacketSocket,
        prev: &Lease,
        trusted: Option<Ipv4Addr>,
        until: Instant,
        ignored: &mut Vec<Ignored>,
    ) -> Result<Lease, DhcpError> {
        let xid = rand::random();
        let mut m = self.message(xid, MessageType::Request, Ipv4Addr::UNSPECIFIED, true);
        m.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(prev.address));
        let pkt = self.packet(&m, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST)?;
        let sent_at = now_secs();
        let started = Instant::now();
        let r = self.transact(
            sock,
            xid,
            &pkt,
            BROADCAST,
            until,
            (Duration::from_secs(1), Duration::from_secs(2)),
            |r| {
                if !self.believe(&r, trusted, ignored) {
                    return Step::Skip;
                }
                match r.kind {
                    MessageType::Ack => match self.lease_from(&r, sent_at) {
                        Some(l) if l.address == prev.address => Step::Done(Ok(l)),
                        _ => Step::Skip,
                    },
                    MessageType::Nak => Step::Done(Err(self.nak(&r, prev.address))),
                    _ => Step::Skip,
                }
            },
        );
        match r {
            Ok(Outcome::Done(r)) => r,
            Ok(Outcome::Held(_)) => unreachable_held(&self.ifname),
            Err(e) => Err(self.ended(
                e,
                "REQUEST (INIT-REBOOT)",
                started.elapsed(),
                trusted,
                ignored,
            )),
        }
    }

    fn discover(
        &self,
        sock: &PacketSocket,
        trusted: Option<Ipv4Addr>,
        hint: Option<Ipv4Addr>,
        deadline: Instant,
        started: Instant,
        ignored: &mut Vec<Ignored>,
    ) -> Result<Reply, DhcpError> {
        let xid = rand::random();
        let mut m = self.message(xid, MessageType::Discover, Ipv4Addr::UNSPECIFIED, true);
        if let Some(h) = hint {
            m.opts_mut().insert(DhcpOption::RequestedIpAddress(h));
        }
        let pkt = self.packet(&m, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST)?;
        let r = self.transact(
            sock,
            xid,
            &pkt,
            BROADCAST,
            deadline,
            (Duration::from_secs(1), Duration::from_secs(8)),
            |r| {
                if r.kind != MessageType::Offer || !usable_address(r.msg.yiaddr()) {
                    return Step::Skip;
                }
                if !self.believe(&r, trusted, ignored) {
                    return Step::Skip;
                }
                if trusted.is_some() {
                    Step::Done(r)
                } else {
                    Step::Hold(r)
                }
            },
        );
        match r {
            Ok(Outcome::Done(offer)) => Ok(offer),
            Ok(Outcome::Held(offers)) => {
                let mut servers: Vec<Ipv4Addr> = offers.iter().filter_map(|o| o.server).collect();
                servers.sort();
                servers.dedup();
                if servers.len() > 1 {
                    return Err(DhcpError::Ambiguous {
                        ifname: self.ifname.clone(),
                        servers,
                    });
                }
                offers.into_iter().next().ok_or_else(|| DhcpError::Timeout {
                    ifname: self.ifname.clone(),
                    what: "DISCOVER",
                    waited: started.elapsed(),
                    trusted,
                    ignored: ignored.clone(),
                })
            }
            Err(e) => Err(self.ended(e, "DISCOVER", started.elapsed(), trusted, ignored)),
        }
    }

    /// REQUEST (SELECTING) for an offer, answered by the offering server only.
    fn select(
        &self,
        sock: &PacketSocket,
        offer: &Reply,
        deadline: Instant,
        started: Instant,
        ignored: &mut Vec<Ignored>,
    ) -> Result<Lease, DhcpError> {
        let xid = offer.msg.xid();
        let server = offer.server;
        let address = offer.msg.yiaddr();
        let mut m = self.message(xid, MessageType::Request, Ipv4Addr::UNSPECIFIED, true);
        m.opts_mut().insert(DhcpOption::RequestedIpAddress(address));
        if let Some(s) = server {
            m.opts_mut().insert(DhcpOption::ServerIdentifier(s));
        }
        let pkt = self.packet(&m, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST)?;
        let sent_at = now_secs();
        let r = self.transact(
            sock,
            xid,
            &pkt,
            BROADCAST,
            deadline,
            (Duration::from_secs(1), Duration::from_secs(8)),
            |r| {
                if !self.believe(&r, server, ignored) {
                    return Step::Skip;
                }
                match r.kind {
                    MessageType::Ack => match self.lease_from(&r, sent_at) {
                        Some(l) => Step::Done(Ok(l)),
                        None => Step::Skip,
                    },
                    MessageType::Nak => Step::Done(Err(self.nak(&r, address))),
                    _ => Step::Skip,
                }
            },
        );
        match r {
            Ok(Outcome::Done(r)) => r,
            Ok(Outcome::Held(_)) => unreachable_held(&self.ifname),
            Err(e) => Err(self.ended(e, "REQUEST", started.elapsed(), server, ignored)),
        }
    }

    /// A REQUEST for `lease`'s address from its bound state, to `dst`.
    fn extend(
        &self,
        lease: &Lease,
        dst: Dest,
        what: &'static str,
        deadline: Instant,
    ) -> Result<Lease, DhcpError> {
        let sock = self.open()?;
        let trusted = Some(self.accept_server.unwrap_or(lease.server));
        let xid = rand::random();
        let m = self.message(xid, MessageType::Request, lease.address, false);
        let pkt = self.packet(&m, lease.address, dst.ip)?;
        let sent_at = now_secs();
        let started = Instant::now();
        let mut ignored = Vec::new();
        let r = self.transact(
            &sock,
            xid,
            &pkt,
            dst,
            deadline,
            (Duration::from_secs(2), Duration::from_secs(32)),
            |r| {
                if !self.believe(&r, trusted, &mut ignored) {
                    return Step::Skip;
                }
                match r.kind {
                    MessageType::Ack => match self.lease_from(&r, sent_at) {
                        Some(l) => Step::Done(Ok(l)),
                        None => Step::Skip,
                    },
                    MessageType::Nak => Step::Done(Err(self.nak(&r, lease.address))),
                    _ => Step::Skip,
                }
            },
        );
        match r {
            Ok(Outcome::Done(r)) => r,
            Ok(Outcome::Held(_)) => unreachable_held(&self.ifname),
            Err(e) => Err(self.ended(e, what, started.elapsed(), trusted, &ignored)),
        }
    }

    /// RENEWING: asks the lease's server, by unicast, to extend it. The
    /// interface must have the lease's address (the server answers to it).
    pub fn renew(&self, lease: &Lease, deadline: Instant) -> Result<Lease, DhcpError> {
        let dst = Dest {
            ip: lease.server,
            mac: lease.server_mac_bytes().unwrap_or(BROADCAST_MAC),
        };
        self.extend(lease, dst, "REQUEST (RENEWING)", deadline)
    }

    /// REBINDING: the same request, broadcast, for when the server did not
    /// answer its unicast (it moved, or its MAC changed). Only the trusted
    /// server's answer is taken, as always.
    pub fn rebind(&self, lease: &Lease, deadline: Instant) -> Result<Lease, DhcpError> {
        self.extend(lease, BROADCAST, "REQUEST (REBINDING)", deadline)
    }

    /// Releases `lease`: one RELEASE unicast to its server (which does not
    /// answer). Sent from the lease's address, which the interface may or
    /// may not still have.
    pub fn release(&self, lease: &Lease) -> Result<(), DhcpError> {
        let sock = self.open()?;
        let xid = rand::random();
        let mut m = self.message(xid, MessageType::Release, lease.address, false);
        m.opts_mut()
            .insert(DhcpOption::ServerIdentifier(lease.server));
        let pkt = self.packet(&m, lease.address, lease.server)?;
        let mac = lease.server_mac_bytes().unwrap_or(BROADCAST_MAC);
        sock.send(mac, &pkt)
            .map_err(|e| self.io("cannot send the RELEASE", e))
    }

    /// Sleeps until `unix` seconds by the wall clock; `false` when stopped.
    fn sleep_until(&self, unix: u64, stop: &Stop) -> Result<bool, DhcpError> {
        loop {
            let now = now_secs();
            if now >= unix {
                return Ok(true);
            }
            let secs = (unix - now).min(CLOCK_CHECK.as_secs()).max(1);
            let mut fds = [nix::poll::PollFd::new(
                stop.0 .0.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from((secs * 1000) as u16)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(self.io("cannot wait for the stop signal", e.into())),
            }
            if stop.is_stopped() {
                return Ok(false);
            }
        }
    }

    /// Keeps `lease` for as long as `stop` is not signalled: renews at T1,
    /// rebinds at T2, and when the lease is lost (NAK, or expiry without an
    /// answer) looks for a new one with DISCOVER, trusting the same server.
    /// Reports every change through `on_event`, which runs on this thread
    /// (in the jail's network namespace, where it can reconfigure the
    /// interface). Returns the lease held when stopped (to release and
    /// record), or `None` when none is held then.
    pub fn maintain(
        &self,
        lease: Lease,
        mut on_event: impl FnMut(LeaseEvent<'_>),
        stop: &Stop,
    ) -> Result<Option<Lease>, DhcpError> {
        let mut c = self.clone().with_stop(stop.clone());
        c.accept_server = Some(self.accept_server.unwrap_or(lease.server));
        let mut held = Some(lease);
        loop {
            let Some(lease) = held.take() else {
                // Lost: DISCOVER again, a minute at a time, until stopped.
                match c.obtain(None, Instant::now() + Duration::from_secs(60)) {
                    Ok(new) => {
                        on_event(LeaseEvent::Acquired(&new));
                        held = Some(new);
                    }
                    Err(DhcpError::Stopped { .. }) => return Ok(None),
                    Err(DhcpError::Io { .. }) => {
                        if !c.pause(IO_RETRY, stop)? {
                            return Ok(None);
                        }
                    }
                    Err(_) => {}
                }
                continue;
            };
            if !c.sleep_until(lease.renew_at(), stop)? {
                return Ok(Some(lease));
            }
            let mut result = c.persist(stop, instant_at(lease.rebind_at()), |d| c.renew(&lease, d));
            if let Err(DhcpError::Timeout { .. }) | Err(DhcpError::Io { .. }) = result {
                result = c.persist(stop, instant_at(lease.expires_at()), |d| {
                    c.rebind(&lease, d)
                });
            }
            match result {
                Ok(new) => {
                    let same = new.address == lease.address
                        && new.prefix == lease.prefix
                        && new.gateway == lease.gateway;
                    if same {
                        on_event(LeaseEvent::Extended(&new));
                    } else {
                        on_event(LeaseEvent::Changed {
                            old: &lease,
                            new: &new,
                        });
                    }
                    held = Some(new);
                }
                Err(DhcpError::Stopped { .. }) => return Ok(Some(lease)),
                // Refused: the server ended it. Otherwise it ran out with
                // no answer (or no working socket) until its expiry.
                Err(_) => on_event(LeaseEvent::Lost(&lease)),
            }
        }
    }

    /// Waits `d` or until stopped (`false`).
    fn pause(&self, d: Duration, stop: &Stop) -> Result<bool, DhcpError> {
        let mut fds = [nix::poll::PollFd::new(
            stop.0 .0.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = d.as_millis().min(60_000) as u16;
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(!stop.is_stopped()),
            Err(e) => Err(self.io("cannot wait for the stop signal", e.into())),
        }
    }

    /// Calls `f(until)` again after an I/O error (a link briefly down, an
    /// interface being replaced) while time is left before `until`.
    fn persist(
        &self,
        stop: &Stop,
        until: Instant,
        f: impl Fn(Instant) -> Result<Lease, DhcpError>,
    ) -> Result<Lease, DhcpError> {
        loop {
            match f(until) {
                Err(DhcpError::Io { .. }) if Instant::now() + IO_RETRY < until => {
                    if !self.pause(IO_RETRY, stop)? {
                        return Err(DhcpError::Stopped {
                            ifname: self.ifname.clone(),
                        });
                    }
                }
                r => return r,
            }
        }
    }
}

/// The error for a thread that could not join the jail's namespace.
fn netns_error(ifname: &str, e: std::io::Error) -> DhcpError {
    DhcpError::Io {
        ifname: ifname.to_string(),
        op: "cannot join the jail's network namespace",
        source: e,
    }
}

/// [`Client::obtain`] on a thread that joined the network namespace `netns`
/// (the jail's `/proc/PID/ns/net`); the caller's thread stays where it is.
pub fn obtain_in(
    netns: BorrowedFd<'_>,
    client: &Client,
    prev: Option<&Lease>,
    deadline: Instant,
) -> Result<Lease, DhcpError> {
    crate::sys::dhcpsock::in_netns(netns, || client.obtain(prev, deadline))
        .map_err(|e| netns_error(&client.ifname, e))?
}

/// [`Client::release`] on a thread that joined `netns`.
pub fn release_in(netns: BorrowedFd<'_>, client: &Client, lease: &Lease) -> Result<(), DhcpError> {
    crate::sys::dhcpsock::in_netns(netns, || client.release(lease))
        .map_err(|e| netns_error(&client.ifname, e))?
}

/// What [`spawn_maintain`]'s thread returns: [`Client::maintain`]'s result.
pub type Maintainer = std::thread::JoinHandle<Result<Option<Lease>, DhcpError>>;

/// Starts [`Client::maintain`] on a thread named `dhcp-IFNAME` that joins
/// `netns` first, for the jail's lifetime: signal `stop`, then join the
/// handle for the lease to release and record.
pub fn spawn_maintain(
    netns: OwnedFd,
    client: Client,
    lease: Lease,
    on_event: impl FnMut(LeaseEvent<'_>) + Send + 'static,
    stop: Stop,
) -> Result<Maintainer, DhcpError> {
    let ifname = client.ifname.clone();
    std::thread::Builder::new()
        .name(format!("dhcp-{ifname}"))
        .spawn(move || {
            crate::sys::dhcpsock::join_netns(netns).map_err(|e| netns_error(&client.ifname, e))?;
            client.maintain(lease, on_event, &stop)
        })
        .map_err(|e| DhcpError::Io {
            ifname,
            op: "cannot start the DHCP thread",
            source: e,
        })
}

/// `Held` only comes from a judge that holds, which only DISCOVER's does.
fn unreachable_held<T>(ifname: &str) -> Result<T, DhcpError> {
    Err(DhcpError::Io {
        ifname: ifname.to_string(),
        op: "internal error: a held answer outside DISCOVER",
        source: std::io::Error::other("held answer"),
    })
}

/// `Option::is_none_or` with equality, for the MSRV.
trait NoneOrEq {
    fn is_none_or_eq(&self, v: Ipv4Addr) -> bool;
}

impl NoneOrEq for Option<Ipv4Addr> {
    fn is_none_or_eq(&self, v: Ipv4Addr) -> bool {
        match self {
            None => true,
            Some(t) => *t == v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client::new("eth0", 2, [2, 0, 0, 0, 0, 1], client_id_for("j1"), None).expect("valid client")
    }

    #[test]
    fn netmasks_give_prefixes_and_holes_are_refused() {
        assert_eq!(mask_prefix(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(mask_prefix(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
        assert_eq!(mask_prefix(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(mask_prefix(Ipv4Addr::new(255, 0, 255, 0)), None);
    }

    #[test]
    fn a_release_carries_ciaddr_and_no_requested_address() {
        // dnsmasq drops a RELEASE with option 50 (nispor/mozim#87).
        let c = client();
        let mut m = c.message(7, MessageType::Release, Ipv4Addr::new(10, 0, 0, 5), false);
        m.opts_mut()
            .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(m.ciaddr(), Ipv4Addr::new(10, 0, 0, 5));
        assert!(!m.opts().contains(OptionCode::RequestedIpAddress));
        assert!(!m.opts().contains(OptionCode::ParameterRequestList));
        let pkt = c
            .packet(&m, Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(10, 0, 0, 1))
            .expect("builds");
        let p = etherparse::SlicedPacket::from_ip(&pkt).expect("parses");
        let Some(etherparse::TransportSlice::Udp(u)) = p.transport else {
            panic!("not udp")
        };
        assert_eq!((u.source_port(), u.destination_port()), (68, 67));
        let back = Message::decode(&mut Decoder::new(u.payload())).expect("decodes");
        assert_eq!(back.opts().msg_type(), Some(MessageType::Release));
        assert_eq!(back.ciaddr(), Ipv4Addr::new(10, 0, 0, 5));
    }

    fn reply(server: Option<Ipv4Addr>, src: Ipv4Addr) -> Reply {
        let mut msg = Message::default();
        msg.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Offer));
        Reply {
            msg,
            kind: MessageType::Offer,
            server,
            src_ip: src,
            src_mac: [2, 0, 0, 0, 0, 9],
        }
    }

    #[test]
    fn a_server_claiming_another_servers_identity_is_not_believed() {
        let real = Ipv4Addr::new(10, 0, 0, 1);
        let rogue = Ipv4Addr::new(10, 0, 0, 66);
        let c = client();
        let mut ignored = Vec::new();
        assert!(c.believe(&reply(Some(real), real), Some(real), &mut ignored));
        assert!(!c.believe(&reply(Some(real), rogue), Some(real), &mut ignored));
        assert!(!c.believe(&reply(Some(rogue), rogue), Some(real), &mut ignored));
        assert!(!c.believe(&reply(None, rogue), None, &mut ignored));
        assert!(c.believe(&reply(Some(rogue), rogue), None, &mut ignored));
        assert_eq!(ignored.len(), 3);
        let text = ignored_text(&ignored, Some(real));
        assert!(text.contains("10.0.0.66 claiming to be 10.0.0.1"), "{text}");
    }

    #[test]
    fn an_answer_from_a_jails_own_interface_is_never_believed() {
        // src_mac of `reply` is 02:00:00:00:00:09: a jail's interface here.
        let c = client().distrusting([[2, 0, 0, 0, 0, 9], [2, 0, 0, 0, 0, 1]]);
        let rogue = Ipv4Addr::new(10, 0, 0, 66);
        let mut ignored = Vec::new();
        assert!(!c.believe(&reply(Some(rogue), rogue), None, &mut ignored));
        assert!(!c.believe(&reply(Some(rogue), rogue), Some(rogue), &mut ignored));
        assert_eq!(ignored.len(), 1, "{ignored:?}");
        assert!(ignored[0].jail);
        let text = ignored_text(&ignored, None);
        assert!(text.contains("10.0.0.66 from a jail's interface"), "{text}");
        // The same answer from another MAC is a server's.
        let mut r = reply(Some(rogue), rogue);
        r.src_mac = [0x52, 0x54, 0, 0, 0, 1];
        assert!(c.believe(&r, None, &mut ignored));
    }

    #[test]
    fn lease_times_are_sane_whatever_the_server_sends() {
        let c = client();
        let mut msg = Message::default();
        msg.set_yiaddr(Ipv4Addr::new(10, 0, 0, 7));
        let o = msg.opts_mut();
        o.insert(DhcpOption::MessageType(MessageType::Ack));
        o.insert(DhcpOption::AddressLeaseTime(120));
        o.insert(DhcpOption::Renewal(500)); // past T2: ignored
        o.insert(DhcpOption::Rebinding(105));
        o.insert(DhcpOption::DomainNameServer(vec![
            Ipv4Addr::new(1, 1, 1, 1);
            10
        ]));
        let r = Reply {
            msg,
            kind: MessageType::Ack,
            server: Some(Ipv4Addr::new(10, 0, 0, 1)),
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            src_mac: [2, 0, 0, 0, 0, 9],
        };
        let l = c.lease_from(&r, 1000).expect("usable");
        assert_eq!((l.t1_secs, l.t2_secs, l.lease_secs), (60, 105, 120));
        assert_eq!(l.prefix, 8);
        assert_eq!(l.dns.len(), MAX_DNS);
        assert_eq!(l.expires_at(), 1120);
        assert_eq!(l.server_mac_bytes(), Some([2, 0, 0, 0, 0, 9]));
        let json = serde_json::to_string(&l).expect("serializes");
        let back: Lease = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, l);
    }

    /// A server's answer to `c`, as the IPv4/UDP packet the socket gets.
    fn answer(c: &Client, xid: u32, client_id: Option<Vec<u8>>) -> Vec<u8> {
        let z = Ipv4Addr::UNSPECIFIED;
        let mut m = Message::new_with_id(xid, z, Ipv4Addr::new(10, 0, 0, 7), z, z, &c.mac);
        m.set_opcode(Opcode::BootReply);
        m.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Offer));
        m.opts_mut()
            .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 0, 1)));
        if let Some(id) = client_id {
            m.opts_mut().insert(DhcpOption::ClientIdentifier(id));
        }
        let mut payload = Vec::new();
        m.encode(&mut Encoder::new(&mut payload)).expect("encodes");
        let b = etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [255; 4], 64).udp(67, 68);
        let mut out = Vec::new();
        b.write(&mut out, &payload).expect("builds");
        out
    }

    fn rx(len: usize, outgoing: bool) -> Received {
        Received {
            len,
            src_mac: [2, 0, 0, 0, 0, 9],
            outgoing,
        }
    }

    #[test]
    fn only_answers_to_this_transaction_and_client_are_parsed() {
        let c = client();
        let ok = answer(&c, 42, Some(c.client_id.clone()));
        let r = c.parse(&ok, rx(ok.len(), false), 42).expect("an answer");
        assert_eq!(
            (r.kind, r.server, r.src_ip),
            (
                MessageType::Offer,
                Some(Ipv4Addr::new(10, 0, 0, 1)),
                Ipv4Addr::new(10, 0, 0, 1)
            )
        );
        // Without an echoed client id (pre-RFC 6842 servers) it is still ours.
        let bare = answer(&c, 42, None);
        assert!(c.parse(&bare, rx(bare.len(), false), 42).is_some());
        // Sent from the jail's own namespace: never an answer.
        assert!(c.parse(&ok, rx(ok.len(), true), 42).is_none());
        // Another transaction, another client (ipvlan: same MAC), a cut packet.
        assert!(c.parse(&ok, rx(ok.len(), false), 43).is_none());
        let other = answer(&c, 42, Some(client_id_for("j2")));
        assert!(c.parse(&other, rx(other.len(), false), 42).is_none());
        assert!(c.parse(&ok, rx(ok.len() - 20, false), 42).is_none());
    }

    #[test]
    fn bad_client_arguments_are_refused() {
        let e = Client::new("eth0", 2, [3, 0, 0, 0, 0, 1], client_id_for("j"), None)
            .expect_err("multicast MAC");
        assert_eq!(e.dhcp_kind(), DhcpErrorKind::Invalid);
        let e = Client::new("eth0", 2, [2, 0, 0, 0, 0, 1], vec![0], None).expect_err("short id");
        assert_eq!(e.dhcp_kind(), DhcpErrorKind::Invalid);
        assert!(client().with_hostname("a b").is_err());
        assert!(client().with_hostname("web-1").is_ok());
    }

    #[test]
    fn a_stop_wakes_and_stays_signalled() {
        let s = Stop::new().expect("pipe");
        assert!(!s.is_stopped());
        let t = s.clone();
        t.stop();
        t.stop();
        assert!(s.is_stopped());
    }
}
