//! SIP over WebSocket (RFC 7118), plain (WS) and over TLS (WSS).
//!
//! rsipstack carries SIP over a WebSocket once one exists (its `WebSocketConnection`); the
//! connections are made here, both ways, so that each UA's TLS settings, the `sip` subprotocol,
//! the path and the Origin are ours to set and check, and a failure is reported like a TLS one:
//! - **Accepting:** a UA on `ws`/`wss` listens on a TCP listener of its own. A WSS connection's
//!   handshake is the UA's TLS (`tls.rs`); the WebSocket upgrade must ask for the `sip`
//!   subprotocol (RFC 7118 §4), else it is refused with 400.
//! - **Connecting:** a UA's [`WsLocator`] is asked by rsipstack where each new request goes;
//!   for a `ws`/`wss` target without a live connection it connects first (TCP, TLS for WSS, the
//!   upgrade with `Sec-WebSocket-Protocol: sip`), so rsipstack's lookup finds it. A failure
//!   fails the request at once with what failed.
//!
//! rsipstack's WebSocket type holds a plain TCP stream (its tokio-tungstenite has no TLS
//! feature, and none of its stream types is a server-side TLS stream). A WSS connection is
//! therefore terminated in-process: the TLS stream is pumped through a loopback TCP pair and
//! the WebSocket runs on the plain end. The connection rsipstack sees is named by the real
//! addresses.

use crate::tls::FailureHook;
use futures::StreamExt;
use rsipstack::sip::transport::Transport;
use rsipstack::transport::websocket::{WebSocketConnection, WebSocketInner};
use rsipstack::transport::{SipAddr, SipConnection};
use rustls::{ClientConfig, ServerConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http;
use tokio_util::sync::CancellationToken;

/// The subprotocol of SIP over WebSocket (RFC 7118 §4).
const SUBPROTOCOL: &str = "sip";

/// A WebSocket's bounds: one SIP message per frame (RFC 7118 §5), at most as large as a
/// datagram callflow reads ([`crate::MAX_DATAGRAM`], 64 KB; tungstenite would take 64 MiB), and
/// a 16 KB read buffer (its default of 128 KB is set aside for every connection).
fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(crate::MAX_DATAGRAM))
        .max_frame_size(Some(crate::MAX_DATAGRAM))
        .read_buffer_size(16 * 1024)
}

/// A UA's WebSocket settings.
#[derive(Clone, Debug)]
pub struct WsSettings {
    /// The path of the URIs we connect to (`/ws`, Kamailio's and most gateways' default is `/`).
    pub path: String,
    /// The Origin our upgrade requests carry (browsers send one; some gateways check it).
    pub origin: Option<String>,
}

impl Default for WsSettings {
    fn default() -> Self {
        Self {
            path: "/".into(),
            origin: None,
        }
    }
}

fn sip_addr(transport: Transport, addr: SocketAddr) -> SipAddr {
    SipAddr {
        r#type: Some(transport),
        addr: addr.into(),
    }
}

/// A WebSocket that asked for `sip` among its subprotocols (a comma-separated list).
fn asks_for_sip(req: &Request) -> bool {
    req.headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case(SUBPROTOCOL))
}

/// Pumps `outer` (a TLS stream) through a loopback TCP pair until either side closes or
/// `cancel`; returns the plain end, on which the WebSocket runs.
async fn through_pipe<S>(outer: S, cancel: CancellationToken) -> std::io::Result<TcpStream>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let at = listener.local_addr()?;
    let (ours, theirs) = tokio::join!(TcpStream::connect(at), listener.accept());
    let (ours, (theirs, _)) = (ours?, theirs?);
    let _ = ours.set_nodelay(true);
    let _ = theirs.set_nodelay(true);
    tokio::spawn(async move {
        let (mut outer, mut theirs) = (outer, theirs);
        tokio::select! {
            () = cancel.cancelled() => {}
            _ = tokio::io::copy_bidirectional(&mut outer, &mut theirs) => {}
        }
    });
    Ok(ours)
}

/// rsipstack's connection over an upgraded WebSocket.
fn connection(
    ws: tokio_tungstenite::WebSocketStream<MaybeTlsStream<TcpStream>>,
    transport: Transport,
    local: SocketAddr,
    peer: SocketAddr,
    cancel: CancellationToken,
) -> WebSocketConnection {
    let (sink, read) = ws.split();
    WebSocketConnection {
        inner: Arc::new(WebSocketInner {
            local_addr: sip_addr(transport, local),
            remote_addr: sip_addr(transport, peer),
            ws_sink: tokio::sync::Mutex::new(sink),
            ws_read: tokio::sync::Mutex::new(Some(read)),
        }),
        cancel_token: Some(cancel),
    }
}

/// Accepts WebSocket connections (`tls`: WSS) on `listener` for a UA until `cancel`, each on a
/// task of its own, bounded by [`crate::tls::HANDSHAKE_TIMEOUT`]; a connection that completes
/// the upgrade is handed to the endpoint's transport layer.
pub(crate) fn serve_listener(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    endpoint: rsipstack::transaction::endpoint::EndpointInnerRef,
    local: SocketAddr,
    cancel: CancellationToken,
    on_failure: Option<FailureHook>,
    cap: usize,
) {
    let transport = if tls.is_some() {
        Transport::Wss
    } else {
        Transport::Ws
    };
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let what = if acceptor.is_some() { "WSS" } else { "WS" };
    crate::tls::accept_each(
        listener,
        local,
        cancel.clone(),
        (what, cap),
        move |tcp, peer| {
            let acceptor = acceptor.clone();
            let endpoint = endpoint.clone();
            let cancel = cancel.clone();
            let on_failure = on_failure.clone();
            async move {
                let failed = |why: String| {
                    let why = format!("{what} connection from {peer} failed: {why}");
                    tracing::warn!(%local, "{why}");
                    if let Some(hook) = &on_failure {
                        hook.call(peer, why);
                    }
                };
                let upgrade = async {
                    let plain = match &acceptor {
                        Some(a) => {
                            let tls = a.accept(tcp).await.map_err(|e| {
                                format!("TLS handshake: {}", crate::tls::explain(&e))
                            })?;
                            through_pipe(tls, cancel.clone())
                                .await
                                .map_err(|e| e.to_string())?
                        }
                        None => tcp,
                    };
                    // tungstenite's callback signature: its error is the HTTP response.
                    #[allow(clippy::result_large_err)]
                    let check = |req: &Request, mut resp: Response| {
                        if !asks_for_sip(req) {
                            let mut refusal = ErrorResponse::new(Some(
                                "SIP over WebSocket needs the `sip` subprotocol (RFC 7118)".into(),
                            ));
                            *refusal.status_mut() = http::StatusCode::BAD_REQUEST;
                            return Err(refusal);
                        }
                        resp.headers_mut().insert(
                            "sec-websocket-protocol",
                            http::HeaderValue::from_static(SUBPROTOCOL),
                        );
                        Ok(resp)
                    };
                    tokio_tungstenite::accept_hdr_async_with_config(
                    MaybeTlsStream::Plain(plain),
                    check,
                    Some(ws_config()),
                )
                .await
                .map_err(|e| match e {
                    tokio_tungstenite::tungstenite::Error::Http(_) => {
                        "the upgrade did not ask for the `sip` subprotocol (RFC 7118 §4); refused with 400".to_owned()
                    }
                    other => format!("WebSocket upgrade: {other}"),
                })
                };
                let ws = tokio::select! {
                    () = cancel.cancelled() => return,
                    r = tokio::time::timeout(crate::tls::HANDSHAKE_TIMEOUT, upgrade) => r,
                };
                match ws {
                    Ok(Ok(ws)) => {
                        let conn = connection(ws, transport, local, peer, cancel.child_token());
                        endpoint
                            .transport_layer
                            .add_connection(SipConnection::WebSocket(conn));
                    }
                    Ok(Err(why)) => failed(why),
                    Err(_) => failed(format!(
                        "no upgrade within {} s",
                        crate::tls::HANDSHAKE_TIMEOUT.as_secs()
                    )),
                }
            }
        },
    );
}

/// A UA's own TLS and WebSocket connections, by peer and transport: the ones it made and is
/// still using.
pub(crate) type Links = Mutex<HashMap<(SocketAddr, Transport), SipConnection>>;

/// Where rsipstack sends a new request (its `TargetLocator`): where the URI says, after
/// connecting first when that is over WebSocket and no connection is up.
pub(crate) struct WsLocator {
    pub(crate) endpoint: OnceLock<Weak<rsipstack::transaction::endpoint::EndpointInner>>,
    pub(crate) settings: WsSettings,
    /// For WSS: the UA's TLS client configuration and SNI name.
    pub(crate) tls: Option<(Arc<ClientConfig>, Option<String>)>,
    pub(crate) on_failure: Option<FailureHook>,
    pub(crate) links: Arc<Links>,
    pub(crate) cancel: CancellationToken,
}

impl WsLocator {
    /// Forgets a connection that closed.
    pub(crate) fn closed(links: &Links, conn: &SipConnection) {
        links.lock().expect("links lock").retain(|_, c| {
            c.get_addr() != conn.get_addr() || c.get_remote_addr() != conn.get_remote_addr()
        });
    }

    /// A TLS connection to `peer`, handed to rsipstack, so a failure fails the request at once
    /// (rsipstack's own dial would leave it to its timers).
    async fn connect_tls(&self, peer: SocketAddr, host: Option<String>) -> Result<(), String> {
        let (config, sni) = self
            .tls
            .clone()
            .ok_or_else(|| format!("TLS connection to {peer}: this UA has no TLS settings"))?;
        let name = sni.or(host).unwrap_or_else(|| peer.ip().to_string());
        let (stream, _) = crate::tls::dial(config, &name, peer, "TLS").await?;
        let endpoint = self
            .endpoint
            .get()
            .and_then(Weak::upgrade)
            .ok_or("the endpoint is gone")?;
        let conn = rsipstack::transport::tls::TlsConnection::from_client_stream(
            stream,
            sip_addr(Transport::Tls, peer),
            Some(self.cancel.child_token()),
        )
        .await
        .map_err(|e| e.to_string())?;
        let conn = SipConnection::Tls(conn);
        self.links
            .lock()
            .expect("links lock")
            .insert((peer, Transport::Tls), conn.clone());
        endpoint.transport_layer.add_connection(conn);
        Ok(())
    }

    async fn connect(&self, peer: SocketAddr, secure: bool) -> Result<(), String> {
        let scheme = if secure { "wss" } else { "ws" };
        let host = instances::host_port(peer);
        let url = format!("{scheme}://{host}{}", self.settings.path);
        let (plain, local) = if secure {
            let (config, sni) = self
                .tls
                .clone()
                .ok_or_else(|| format!("WSS connection to {peer}: this UA has no TLS settings"))?;
            let name = sni.unwrap_or_else(|| peer.ip().to_string());
            let (tls, local) = crate::tls::dial(config, &name, peer, "WSS").await?;
            let plain = through_pipe(tls, self.cancel.clone())
                .await
                .map_err(|e| e.to_string())?;
            (plain, local)
        } else {
            let tcp = TcpStream::connect(peer)
                .await
                .map_err(|e| format!("WS connection to {peer} failed: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let local = tcp.local_addr().map_err(|e| e.to_string())?;
            (tcp, local)
        };
        let mut request = http::Request::builder()
            .uri(&url)
            .header("Host", host)
            .header("Sec-WebSocket-Protocol", SUBPROTOCOL)
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header(
                "Sec-WebSocket-Key",
                tokio_tungstenite::tungstenite::handshake::client::generate_key(),
            );
        if let Some(origin) = &self.settings.origin {
            request = request.header("Origin", origin);
        }
        let request = request.body(()).map_err(|e| e.to_string())?;
        let (ws, resp) = tokio_tungstenite::client_async_with_config(
            request,
            MaybeTlsStream::Plain(plain),
            Some(ws_config()),
        )
        .await
        .map_err(|e| format!("WebSocket upgrade with {url} failed: {e}"))?;
        let agreed = resp
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case(SUBPROTOCOL));
        if !agreed {
            return Err(format!(
                "WebSocket upgrade with {url}: the server did not agree to the `sip` subprotocol (RFC 7118 §4)"
            ));
        }
        let endpoint = self
            .endpoint
            .get()
            .and_then(Weak::upgrade)
            .ok_or("the endpoint is gone")?;
        let transport = if secure {
            Transport::Wss
        } else {
            Transport::Ws
        };
        let conn = SipConnection::WebSocket(connection(
            ws,
            transport,
            local,
            peer,
            self.cancel.child_token(),
        ));
        self.links
            .lock()
            .expect("links lock")
            .insert((peer, transport), conn.clone());
        endpoint.transport_layer.add_connection(conn);
        Ok(())
    }
}

impl WsLocator {
    pub(crate) async fn locate(&self, uri: &rsipstack::sip::Uri) -> rsipstack::Result<SipAddr> {
        let mut addr = SipAddr::try_from(uri)?;
        // `sips:` is TLS (RFC 3261 §26.2), on 5061 unless it says (§26.2.3).
        if addr.r#type.is_none() && uri.scheme == Some(rsipstack::sip::Scheme::Sips) {
            addr.r#type = Some(Transport::Tls);
            if addr.addr.port.is_none() {
                addr.addr.port = Some(5061.into());
            }
        }
        let Some(transport) = addr
            .r#type
            .filter(|t| matches!(t, Transport::Tls | Transport::Ws | Transport::Wss))
        else {
            return Ok(addr);
        };
        // A name (not an address) goes rsipstack's way: its resolver, then our TLS connector.
        let Ok(peer) = addr.get_socketaddr() else {
            return Ok(addr);
        };
        let up = self
            .links
            .lock()
            .expect("links lock")
            .contains_key(&(peer, transport));
        let made = if up {
            Ok(())
        } else if transport == Transport::Tls {
            self.connect_tls(peer, None).await
        } else {
            self.connect(peer, transport == Transport::Wss).await
        };
        if let Err(why) = made {
            tracing::warn!("{why}");
            if let Some(hook) = &self.on_failure {
                hook.call(peer, why.clone());
            }
            return Err(rsipstack::Error::Error(why));
        }
        Ok(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our upgrade request, as a server sees it: the path and Origin of the UA's settings and
    /// the `sip` subprotocol.
    #[tokio::test]
    async fn an_upgrade_carries_the_path_the_origin_and_the_sip_subprotocol() {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = server.local_addr().unwrap();
        let seen = tokio::spawn(async move {
            let (tcp, _) = server.accept().await.unwrap();
            let mut got = None;
            #[allow(clippy::result_large_err)]
            let look = |req: &Request, mut resp: Response| {
                let h = |n: &str| {
                    req.headers()
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                got = Some((
                    req.uri().path().to_owned(),
                    h("origin"),
                    h("sec-websocket-protocol"),
                ));
                resp.headers_mut().insert(
                    "sec-websocket-protocol",
                    http::HeaderValue::from_static("sip"),
                );
                Ok(resp)
            };
            let _ws = tokio_tungstenite::accept_hdr_async(tcp, look)
                .await
                .unwrap();
            got.unwrap()
        });
        let locator = WsLocator {
            endpoint: OnceLock::new(),
            settings: WsSettings {
                path: "/ws".into(),
                origin: Some("https://lab.example".into()),
            },
            tls: None,
            on_failure: None,
            links: Arc::default(),
            cancel: CancellationToken::new(),
        };
        // No endpoint to hand the connection to: the upgrade itself is what is tested.
        let err = locator.connect(peer, false).await.unwrap_err();
        assert_eq!(err, "the endpoint is gone");
        assert_eq!(
            seen.await.unwrap(),
            ("/ws".into(), "https://lab.example".into(), "sip".into())
        );
    }

    #[test]
    fn the_sip_subprotocol_is_found_in_a_list_in_any_case() {
        let req = |v: &str| {
            http::Request::builder()
                .header("Sec-WebSocket-Protocol", v)
                .body(())
                .unwrap()
        };
        assert!(asks_for_sip(&req("sip")));
        assert!(asks_for_sip(&req("chat, SIP")));
        assert!(!asks_for_sip(&req("sipx, chat")));
        assert!(!asks_for_sip(&http::Request::builder().body(()).unwrap()));
    }
}
