//! One rsipstack endpoint per user agent.

use crate::intake::Intake;
use crate::tap::{TappedUdp, WireDirection, WireRecord, WireTap, is_keepalive};
use instances::SipTransport;
use rsipstack::EndpointBuilder;
use rsipstack::dialog::dialog::{DialogStateReceiver, DialogStateSender};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::SipMessage;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::transaction::TransactionReceiver;
use rsipstack::transaction::endpoint::{EndpointOption, MessageInspector, TransportEventInspector};
use rsipstack::transport::channel::ChannelConnection;
use rsipstack::transport::connection::TransportEvent;
use rsipstack::transport::tcp_listener::TcpListenerConnection;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, SipConnection, TransportLayer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// 4 MiB: measured to keep loopback UDP free of drops at 12,000 calls/s (docs/performance.md).
pub const DEFAULT_RCVBUF: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    #[error("failed to bind {transport} {addr}: {source}")]
    Bind {
        transport: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("failed to set up the SIP endpoint on {addr}: {message}")]
    Setup { addr: SocketAddr, message: String },
    #[error("TLS on {addr}: {source}")]
    Tls {
        addr: SocketAddr,
        source: crate::tls::TlsError,
    },
}

/// A new socket for `addr`, and how to report a failure on it.
fn new_socket(
    addr: SocketAddr,
    transport: &'static str,
) -> Result<(socket2::Socket, impl Fn(std::io::Error) -> TransportError), TransportError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = move |source| TransportError::Bind {
        transport,
        addr,
        source,
    };
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let (ty, proto) = if transport == "udp" {
        (Type::DGRAM, Protocol::UDP)
    } else {
        (Type::STREAM, Protocol::TCP)
    };
    let socket = Socket::new(domain, ty, Some(proto)).map_err(err)?;
    Ok((socket, err))
}

/// Binds a UDP socket with the options callflow wants (no address reuse, large receive buffer).
pub fn bind_udp(addr: SocketAddr, rcvbuf: usize) -> Result<std::net::UdpSocket, TransportError> {
    let (socket, err) = new_socket(addr, "udp")?;
    // The kernel caps this at net.core.rmem_max; a smaller buffer is not an error.
    let _ = socket.set_recv_buffer_size(rcvbuf);
    socket.set_nonblocking(true).map_err(&err)?;
    socket.bind(&addr.into()).map_err(&err)?;
    Ok(socket.into())
}

/// Checks that a TCP listener can take `addr`, binding the way rsipstack's listener does
/// (with `SO_REUSEADDR`, so a connection in TIME_WAIT does not count as taken).
pub fn check_tcp(addr: SocketAddr) -> Result<(), TransportError> {
    let (socket, err) = new_socket(addr, "tcp")?;
    socket.set_reuse_address(true).map_err(&err)?;
    socket.bind(&addr.into()).map_err(&err)?;
    socket.listen(1).map_err(&err)?;
    Ok(())
}

/// A TCP listener at `addr` (for TLS), bound the way [`check_tcp`] checks.
fn listen_tcp(addr: SocketAddr) -> Result<tokio::net::TcpListener, TransportError> {
    let (socket, err) = new_socket(addr, "tcp")?;
    socket.set_reuse_address(true).map_err(&err)?;
    socket.set_nonblocking(true).map_err(&err)?;
    socket.bind(&addr.into()).map_err(&err)?;
    socket.listen(128).map_err(&err)?;
    tokio::net::TcpListener::from_std(socket.into()).map_err(err)
}

/// How to build one UA's endpoint.
#[derive(Clone, Debug)]
pub struct EndpointSettings {
    pub user_agent: String,
    /// The UA's transport. Besides UDP (always), a stream transport listens at the UDP
    /// socket's address and is the first (Contact and Via) transport.
    pub transport: SipTransport,
    /// TLS settings: for a TLS listener, and for TLS connections the UA opens (to a PBX over
    /// TLS even when its own transport is not).
    pub tls: Option<crate::tls::TlsSettings>,
    /// Told of each TLS or WebSocket connection that failed, either way.
    pub on_failure: Option<crate::tls::FailureHook>,
    /// The path and Origin of the WebSocket connections the UA makes.
    pub ws: crate::ws::WsSettings,
    /// Call-IDs end in `@<suffix>`.
    pub call_id_suffix: String,
    /// At most this many TCP connections at once (accepted and opened); past it the one idle
    /// longest is closed, so a flood of idle connections cannot lock out a real call or use up
    /// the process's file descriptors.
    pub max_tcp_connections: usize,
    /// A TCP connection with no message for this long is closed.
    pub tcp_idle_timeout: Duration,
}

/// The default of [`EndpointSettings::max_tcp_connections`].
pub const DEFAULT_MAX_TCP_CONNECTIONS: usize = 256;
/// The default of [`EndpointSettings::tcp_idle_timeout`].
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

impl Default for EndpointSettings {
    fn default() -> Self {
        Self {
            user_agent: format!("callflow/{}", env!("CARGO_PKG_VERSION")),
            transport: SipTransport::Udp,
            tls: None,
            on_failure: None,
            ws: crate::ws::WsSettings::default(),
            call_id_suffix: "callflow".to_owned(),
            max_tcp_connections: DEFAULT_MAX_TCP_CONNECTIONS,
            tcp_idle_timeout: DEFAULT_TCP_IDLE_TIMEOUT,
        }
    }
}

/// A running rsipstack endpoint for one UA.
pub struct UaEndpoint {
    pub endpoint: rsipstack::transaction::Endpoint,
    pub dialogs: Arc<DialogLayer>,
    /// New server transactions (the UA's incoming requests). Taken once by the UA's router.
    pub incoming: Option<TransactionReceiver>,
    pub state_tx: DialogStateSender,
    /// Dialog state changes of every dialog of this UA. Taken once by the UA's router.
    pub state_rx: Option<DialogStateReceiver>,
    pub local: SocketAddr,
    pub transport: SipTransport,
    late: Arc<crate::late::LateOffers>,
    /// The UA's TLS client configuration, registered for rsipstack's connector.
    _tls_client: Option<crate::tls::ClientTag>,
    cancel: CancellationToken,
    serve: Option<JoinHandle<()>>,
}

impl UaEndpoint {
    /// Starts an endpoint on an already bound UDP socket (see [`bind_udp`]).
    pub async fn start(
        socket: std::net::UdpSocket,
        settings: &EndpointSettings,
        tap: Arc<dyn WireTap>,
    ) -> Result<Self, TransportError> {
        let local = socket.local_addr().map_err(|e| TransportError::Setup {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            message: e.to_string(),
        })?;
        let setup = |e: &dyn std::fmt::Display| TransportError::Setup {
            addr: local,
            message: e.to_string(),
        };
        let cancel = CancellationToken::new();
        let tl = TransportLayer::new(cancel.child_token());
        tl.set_stream_idle_timeout(settings.tcp_idle_timeout);
        let tls_error = |source| TransportError::Tls {
            addr: local,
            source,
        };
        let mut stream_listener = None;
        match settings.transport {
            SipTransport::Udp => {}
            SipTransport::Tcp => {
                // Listens first, so Contact and Via name TCP.
                let tcp = TcpListenerConnection::new(local, None)
                    .await
                    .map_err(|e| setup(&e))?;
                tl.add_transport(tcp.into());
            }
            SipTransport::Tls | SipTransport::Ws | SipTransport::Wss => {
                let secure = settings.transport.is_secure();
                let config = if secure {
                    let tls = settings.tls.as_ref().ok_or_else(|| TransportError::Setup {
                        addr: local,
                        message: format!(
                            "a {} listener needs TLS settings",
                            settings.transport.via_token()
                        ),
                    })?;
                    Some(tls.server_config().map_err(tls_error)?)
                } else {
                    None
                };
                stream_listener = Some((listen_tcp(local)?, config));
                // Our own listener accepts (tls.rs, ws.rs); rsipstack only needs to know, for
                // Contact and Via, that the UA is reached over this transport here: a listener
                // entry that serves nothing.
                let (_, rx) = rsipstack::platform::mpsc::unbounded_channel();
                let (tx, _) = rsipstack::platform::mpsc::unbounded_channel();
                let named = ChannelConnection::create_connection(
                    rx,
                    tx,
                    SipAddr {
                        r#type: Some(crate::rsip_transport(settings.transport)),
                        addr: local.into(),
                    },
                    Some(cancel.child_token()),
                )
                .await
                .map_err(|e| setup(&e))?;
                tl.add_transport(named.into());
            }
        }
        let (tls_client, client_config) = match &settings.tls {
            Some(tls) => {
                crate::tls::install_crypto_provider();
                let config = tls.client_config().map_err(tls_error)?;
                let tag =
                    crate::tls::ClientTag::register(config.clone(), settings.on_failure.clone());
                tl.set_tls_config(tag.rsip_config(tls.sni.clone()));
                (Some(tag), Some((config, tls.sni.clone())))
            }
            None => (None, None),
        };
        let ws_links = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let locator = Arc::new(crate::ws::WsLocator {
            endpoint: std::sync::OnceLock::new(),
            settings: settings.ws.clone(),
            tls: client_config,
            on_failure: settings.on_failure.clone(),
            links: ws_links.clone(),
            cancel: cancel.child_token(),
        });
        let socket = tokio::net::UdpSocket::from_std(socket).map_err(|e| setup(&e))?;
        let tapped = Arc::new(TappedUdp::new(socket, local, tap.clone()));
        let udp = UdpConnection::from_socket(tapped.clone(), None, Some(cancel.child_token()))
            .await
            .map_err(|e| setup(&e))?;
        // Datagrams larger than rsipstack's read buffer reach its transport layer through a
        // channel of their own, as if its UDP loop had read them.
        let (large_tx, large_rx) = rsipstack::platform::mpsc::unbounded_channel();
        let (unused_tx, _) = rsipstack::platform::mpsc::unbounded_channel();
        let large = ChannelConnection::create_connection(
            large_rx,
            unused_tx,
            SipAddr {
                r#type: Some(rsipstack::sip::transport::Transport::Udp),
                addr: local.into(),
            },
            Some(cancel.child_token()),
        )
        .await
        .map_err(|e| setup(&e))?;
        let _ = tapped.large.set((large_tx, udp.clone()));
        tl.inner.serve_connection(large.into());
        tl.add_transport(udp.into());

        let option = EndpointOption {
            callid_suffix: Some(settings.call_id_suffix.clone()),
            ..Default::default()
        };
        let mut builder = EndpointBuilder::new();
        builder
            .with_cancel_token(cancel.child_token())
            .with_transport_layer(tl)
            .with_user_agent(&settings.user_agent)
            .with_option(option)
            .with_target_locator(Box::new(Locator(locator.clone())));
        // The digest algorithm spelling (below), and the tap of stream transports (UDP is tapped
        // at the socket): every UA's, since a UDP UA may open a TLS connection to its PBX.
        let late = Arc::new(crate::late::LateOffers::default());
        builder.with_inspector(Box::new(Inspector {
            local,
            tap: tap.clone(),
            early: crate::early::EarlyTargets::default(),
            late: late.clone(),
        }));
        // Stream messages are checked at the door here (datagrams are, in TappedUdp).
        builder.with_transport_inspector(Box::new(StreamTap {
            local,
            tap,
            ws_links,
            streams: Streams {
                cap: settings.max_tcp_connections.max(1),
                open: std::sync::Mutex::new(Vec::new()),
            },
        }));
        let endpoint = builder.build();
        let incoming = endpoint.incoming_transactions().map_err(|e| setup(&e))?;
        let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        let (state_tx, state_rx) = dialogs.new_dialog_state_channel();
        let _ = locator.endpoint.set(Arc::downgrade(&endpoint.inner));
        match stream_listener {
            Some((listener, Some(config))) if settings.transport == SipTransport::Tls => {
                crate::tls::serve_listener(
                    listener,
                    config,
                    endpoint.inner.clone(),
                    local,
                    cancel.child_token(),
                    settings.on_failure.clone(),
                    settings.max_tcp_connections,
                );
            }
            Some((listener, config)) => crate::ws::serve_listener(
                listener,
                config,
                endpoint.inner.clone(),
                local,
                cancel.child_token(),
                settings.on_failure.clone(),
                settings.max_tcp_connections,
            ),
            None => {}
        }
        let inner = endpoint.inner.clone();
        let serve = tokio::spawn(async move {
            if let Err(e) = inner.serve().await {
                tracing::warn!(error = %e, "endpoint stopped with an error");
            }
        });
        Ok(Self {
            endpoint,
            dialogs,
            incoming: Some(incoming),
            state_tx,
            state_rx: Some(state_rx),
            local,
            transport: settings.transport,
            late,
            _tls_client: tls_client,
            cancel,
            serve: Some(serve),
        })
    }

    /// Sets how this UA answers the offer in the 2xx of a late-offer INVITE of its own (the
    /// answer goes in the ACK rsipstack sends); once.
    pub fn set_ack_answer(&self, answer: crate::AckAnswer) {
        let _ = self.late.answer.set(answer);
    }

    /// Running transactions; 0 once every exchange has finished.
    pub fn running_transactions(&self) -> usize {
        self.endpoint.inner.get_stats().running_transactions
    }

    /// Closes the transports and stops the endpoint. Waits at most `grace` for its task.
    ///
    /// Cancel safety: safe; the endpoint is cancelled before the first await.
    pub async fn shutdown(mut self, grace: Duration) {
        self.cancel.cancel();
        if let Some(serve) = self.serve.take()
            && tokio::time::timeout(grace, serve).await.is_err()
        {
            tracing::warn!(local = %self.local, "endpoint task did not stop in time");
        }
    }
}

impl Drop for UaEndpoint {
    fn drop(&mut self) {
        // Best effort only: shutdown() is the ordered path.
        self.cancel.cancel();
    }
}

/// rsipstack's locator: the UA's [`crate::ws::WsLocator`] (the trait wants a box).
struct Locator(Arc<crate::ws::WsLocator>);

#[async_trait::async_trait]
impl rsipstack::transaction::endpoint::TargetLocator for Locator {
    async fn locate(&self, uri: &rsipstack::sip::Uri) -> rsipstack::Result<SipAddr> {
        self.0.locate(uri).await
    }
}

/// Taps stream messages (TCP, TLS, WebSocket), which do not pass through [`TappedUdp`]: received
/// ones from the transport
/// events, sent ones just before they are written. Also checks each received stream message at
/// the door ([`crate::intake`]) and answers a malformed request itself: rsipstack would drop it.
struct StreamTap {
    local: SocketAddr,
    tap: Arc<dyn WireTap>,
    /// The TLS and WebSocket connections the UA made (`ws.rs`), forgotten when they close.
    ws_links: Arc<crate::ws::Links>,
    streams: Streams,
}

/// Records a stream transport's message on `tap`.
fn record_tcp(
    tap: &Arc<dyn WireTap>,
    transport: SipTransport,
    local: SocketAddr,
    direction: WireDirection,
    peer: SocketAddr,
    bytes: Vec<u8>,
) {
    tap.record(WireRecord {
        at: SystemTime::now(),
        direction,
        transport: transport.as_str(),
        local,
        peer,
        bytes,
    });
}

/// A stream connection's local and peer addresses.
fn stream_addrs(conn: &SipConnection) -> Option<(SocketAddr, SocketAddr)> {
    let local = conn.get_addr().get_socketaddr().ok()?;
    let peer = conn.get_remote_addr()?.get_socketaddr().ok()?;
    Some((local, peer))
}

/// A TCP (or other stream) connection: neither UDP nor the in-memory channel of large datagrams.
fn is_stream(conn: &SipConnection) -> bool {
    conn.is_reliable() && !matches!(conn, SipConnection::Channel(_))
}

/// The transport a stream connection carries.
fn stream_transport(conn: &SipConnection) -> SipTransport {
    match conn.get_addr().r#type {
        Some(rsipstack::sip::transport::Transport::Tls) => SipTransport::Tls,
        Some(rsipstack::sip::transport::Transport::Ws) => SipTransport::Ws,
        Some(rsipstack::sip::transport::Transport::Wss) => SipTransport::Wss,
        _ => SipTransport::Tcp,
    }
}

/// The UA's open stream connections (by peer address) and when each last carried a message.
struct Streams {
    cap: usize,
    open: std::sync::Mutex<Vec<(String, SipConnection, std::time::Instant)>>,
}

impl Streams {
    fn key(conn: &SipConnection) -> Option<String> {
        conn.get_remote_addr().map(ToString::to_string)
    }

    /// A new connection; the one idle longest if that makes one too many.
    fn opened(&self, conn: &SipConnection) -> Option<SipConnection> {
        let key = Self::key(conn)?;
        let mut open = self.open.lock().expect("streams lock");
        open.retain(|(k, _, _)| *k != key);
        open.push((key, conn.clone(), std::time::Instant::now()));
        if open.len() <= self.cap {
            return None;
        }
        let idlest = open[..open.len() - 1]
            .iter()
            .enumerate()
            .min_by_key(|(_, (_, _, seen))| *seen)
            .map(|(i, _)| i)?;
        Some(open.remove(idlest).1)
    }

    fn closed(&self, conn: &SipConnection) {
        if let Some(key) = Self::key(conn) {
            self.open
                .lock()
                .expect("streams lock")
                .retain(|(k, _, _)| *k != key);
        }
    }

    fn active(&self, conn: &SipConnection) {
        if let Some(key) = Self::key(conn)
            && let Some(entry) = self
                .open
                .lock()
                .expect("streams lock")
                .iter_mut()
                .find(|(k, _, _)| *k == key)
        {
            entry.2 = std::time::Instant::now();
        }
    }
}

/// The stream transport of the top Via (`SIP/2.0/TLS ...`); None for UDP. Read without a copy:
/// it runs on every message a UA sends.
fn top_via_stream(msg: &SipMessage) -> Option<SipTransport> {
    let via = msg.via_header().ok()?;
    let token = via.value().split_whitespace().next()?.rsplit('/').next()?;
    if token.eq_ignore_ascii_case("UDP") {
        return None;
    }
    token.parse().ok()
}

/// rsipstack 0.7.14 spells digest algorithms `SHA256`; RFC 7616 (and Kamailio, Asterisk...)
/// write `SHA-256`, which rsipstack cannot parse, so it cannot answer such a challenge. The name
/// only picks the hash (it is not part of what is hashed), so translating the spelling at the
/// edge is safe: RFC spelling in received challenges becomes rsipstack's, and back on the way out.
const RFC_TO_RSIP: &[(&str, &str)] = &[
    ("SHA-256-sess", "SHA256-sess"),
    ("SHA-256", "SHA256"),
    ("SHA-512-256-sess", "SHA512-sess"),
    ("SHA-512-256", "SHA512"),
];
const CHALLENGES: &[&str] = &["WWW-Authenticate", "Proxy-Authenticate"];
const CREDENTIALS: &[&str] = &["Authorization", "Proxy-Authorization"];

/// rsipstack 0.7.14 writes `qop="auth"` in its credentials; in Authorization and
/// Proxy-Authorization the qop value is a token, unquoted (RFC 7616 §3.4, RFC 2617 §3.2.2; only
/// the challenge quotes its list). The quotes are not part of what is hashed.
fn unquote_qop(value: &str) -> String {
    let mut out = value.to_owned();
    for q in ["auth-int", "auth"] {
        let quoted = format!("qop=\"{q}\"");
        if let Some(pos) = out.to_ascii_lowercase().find(&quoted) {
            out.replace_range(pos..pos + quoted.len(), &format!("qop={q}"));
            break;
        }
    }
    out
}

/// Replaces `algorithm=<from>` (quoted or not, any case) by `algorithm=<to>` in one value.
fn respell_value(value: &str, from: &str, to: &str) -> String {
    let mut out = value.to_owned();
    for (f, t) in [
        (format!("algorithm={from}"), format!("algorithm={to}")),
        (
            format!("algorithm=\"{from}\""),
            format!("algorithm=\"{to}\""),
        ),
    ] {
        let lower = out.to_ascii_lowercase();
        if let Some(pos) = lower.find(&f.to_ascii_lowercase()) {
            // Not a prefix of a longer name (SHA-256 in SHA-256-sess).
            let after = lower[pos + f.len()..].chars().next();
            if !matches!(after, Some(c) if c.is_ascii_alphanumeric() || c == '-') {
                out.replace_range(pos..pos + f.len(), &t);
            }
        }
    }
    out
}

fn respell(mut msg: SipMessage, names: &[&str], outward: bool) -> SipMessage {
    let headers = match &mut msg {
        SipMessage::Request(r) => &mut r.headers,
        SipMessage::Response(r) => &mut r.headers,
    };
    for h in headers.iter_mut() {
        if !names.iter().any(|n| h.name().eq_ignore_ascii_case(n)) {
            continue;
        }
        let mut v = h.value().to_owned();
        if outward {
            v = unquote_qop(&v);
        }
        for (rfc, rsip) in RFC_TO_RSIP {
            v = if outward {
                respell_value(&v, rsip, rfc)
            } else {
                respell_value(&v, rfc, rsip)
            };
        }
        if v != h.value() {
            *h = rsipstack::sip::headers::make_header(h.name(), v);
        }
    }
    msg
}

/// Every UA's message inspector: the digest spelling, the PRACK's target, and the TCP tap for
/// sent messages.
struct Inspector {
    local: SocketAddr,
    tap: Arc<dyn WireTap>,
    /// Where PRACKs go (see `early.rs`).
    early: crate::early::EarlyTargets,
    /// The answers our ACKs carry (see `late.rs`).
    late: Arc<crate::late::LateOffers>,
}

impl MessageInspector for Inspector {
    fn before_send(&self, msg: SipMessage, dest: Option<&SipAddr>) -> SipMessage {
        let msg = self
            .late
            .amend(self.early.aim(respell(msg, CREDENTIALS, true)));
        // A stream request with no destination found no connection (rsipstack's lookup
        // failed: the connection was refused, its handshake failed): it is not sent. A response
        // goes back on the request's connection.
        if let Some(transport) = top_via_stream(&msg) {
            let peer = dest.and_then(|d| d.get_socketaddr().ok()).or_else(|| {
                matches!(msg, SipMessage::Response(_))
                    .then(|| SipConnection::get_destination(&msg).ok())
                    .flatten()
            });
            if let Some(peer) = peer {
                let bytes = msg.to_bytes().to_vec();
                // The connection's own address: an ephemeral port on one we opened.
                let local = crate::tcp_socket::local_for(self.local, peer).unwrap_or(self.local);
                record_tcp(
                    &self.tap,
                    transport,
                    local,
                    WireDirection::Sent,
                    peer,
                    bytes,
                );
            }
        }
        msg
    }

    fn after_received(&self, msg: SipMessage, _from: Option<&SipAddr>) -> SipMessage {
        self.early.saw(&msg);
        self.late.saw(&msg);
        respell(msg, CHALLENGES, false)
    }
}

#[async_trait::async_trait]
impl TransportEventInspector for StreamTap {
    async fn handle(&self, event: TransportEvent) -> Option<TransportEvent> {
        let (msg, conn, from) = match &event {
            TransportEvent::New(conn) if is_stream(conn) => {
                if let Some((local, peer)) = stream_addrs(conn) {
                    crate::tcp_socket::claim(local, peer, self.local);
                    crate::tcp_socket::set_nodelay(local, peer);
                }
                if let Some(old) = self.streams.opened(conn) {
                    tracing::warn!(
                        local = %self.local,
                        cap = self.streams.cap,
                        "too many TCP connections: the one idle longest is closed"
                    );
                    tokio::spawn(async move { old.close().await });
                }
                return Some(event);
            }
            TransportEvent::Closed(conn) => {
                if matches!(conn, SipConnection::WebSocket(_) | SipConnection::Tls(_)) {
                    crate::ws::WsLocator::closed(&self.ws_links, conn);
                }
                if let Some((local, peer)) = stream_addrs(conn) {
                    crate::tcp_socket::release(local, peer);
                }
                self.streams.closed(conn);
                return Some(event);
            }
            TransportEvent::Incoming(msg, conn, from) if is_stream(conn) => (msg, conn, from),
            _ => return Some(event),
        };
        self.streams.active(conn);
        let bytes = msg.to_bytes().to_vec();
        let peer = from.get_socketaddr().ok();
        // The connection's own address: an ephemeral port on one we opened.
        let local = stream_addrs(conn).map_or(self.local, |(l, _)| l);
        let transport = stream_transport(conn);
        if let Some(peer) = peer
            && !is_keepalive(&bytes)
        {
            record_tcp(
                &self.tap,
                transport,
                local,
                WireDirection::Received,
                peer,
                bytes.clone(),
            );
        }
        let verdict = crate::intake::check(&bytes);
        verdict.log(from);
        match verdict {
            Intake::Pass { .. } => Some(event),
            Intake::Answer { response, .. } => {
                if let Some(peer) = peer {
                    let sent = response.clone();
                    record_tcp(&self.tap, transport, local, WireDirection::Sent, peer, sent);
                }
                if let Ok(resp) = SipMessage::try_from(&response[..]) {
                    let _ = conn.send(resp, None).await;
                }
                None
            }
            Intake::Drop { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{respell_value, unquote_qop};

    #[test]
    fn credentials_carry_qop_as_a_token() {
        let a = r#"Digest username="100", realm="lab", nonce="n", uri="sip:x", response="r", qop="auth", nc=00000001, cnonce="c""#;
        assert_eq!(
            unquote_qop(a),
            r#"Digest username="100", realm="lab", nonce="n", uri="sip:x", response="r", qop=auth, nc=00000001, cnonce="c""#
        );
        assert_eq!(unquote_qop(r#"qop="auth-int", nc=1"#), "qop=auth-int, nc=1");
        assert_eq!(unquote_qop("qop=auth, nc=1"), "qop=auth, nc=1");
    }

    #[test]
    fn digest_algorithm_spellings() {
        let c = r#"Digest realm="lab", nonce="abc", qop="auth", algorithm=SHA-256"#;
        assert_eq!(
            respell_value(c, "SHA-256", "SHA256"),
            r#"Digest realm="lab", nonce="abc", qop="auth", algorithm=SHA256"#
        );
        assert_eq!(
            respell_value("algorithm=\"sha-256\", x", "SHA-256", "SHA256"),
            "algorithm=\"SHA256\", x"
        );
        // SHA-256 is not rewritten inside SHA-256-sess.
        assert_eq!(
            respell_value("algorithm=SHA-256-sess", "SHA-256", "SHA256"),
            "algorithm=SHA-256-sess"
        );
        assert_eq!(
            respell_value("algorithm=MD5", "SHA-256", "SHA256"),
            "algorithm=MD5"
        );
    }
}
