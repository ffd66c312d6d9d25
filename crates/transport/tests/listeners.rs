//! A UA's TLS and WebSocket listeners against clients that get it wrong: a plain TCP client on
//! the TLS port, a client that does not trust its certificate, a WebSocket that does not ask for
//! the `sip` subprotocol. Each is refused (its connection closed or a 400, the failure reported
//! once) and the listener goes on serving a client that gets it right; the key log holds the
//! secrets of each TLS session.

use callflow_transport::tls::{FailureHook, RunTls, TlsSettings};
use callflow_transport::{EndpointSettings, UaEndpoint, WireRecord, bind_udp};
use rustls::pki_types::pem::PemObject;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn settings(run: &RunTls) -> TlsSettings {
    TlsSettings {
        identity: run.identity.clone(),
        client_identity: None,
        roots_pem: run.identity.cert_pem.clone(),
        insecure: false,
        sni: None,
        keylog: run.keylog.clone(),
    }
}

/// A UA on a loopback port with `settings`, whose wire records go nowhere.
async fn start_ua(settings: EndpointSettings) -> UaEndpoint {
    UaEndpoint::start(
        bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 16).expect("bind"),
        &settings,
        Arc::new(|_: WireRecord| {}),
    )
    .await
    .expect("endpoint")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_listener_refuses_plain_tcp_and_untrusting_clients_and_serves_on() {
    let dir = tempfile::tempdir().expect("dir");
    let keylog = dir.path().join("keys.txt");
    let run = RunTls::new(&["127.0.0.1".to_owned()], Some(keylog.to_str().unwrap())).expect("tls");
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let (tx, mut failed) = tokio::sync::mpsc::unbounded_channel::<()>();
    let hook = {
        let failures = failures.clone();
        FailureHook(Arc::new(move |_, why| {
            failures.lock().unwrap().push(why);
            let _ = tx.send(());
        }))
    };
    let ua = start_ua(EndpointSettings {
        transport: instances::SipTransport::Tls,
        tls: Some(settings(&run)),
        on_failure: Some(hook),
        ..EndpointSettings::default()
    })
    .await;
    let port = ua.local;

    // A plain TCP client writes SIP in the clear: the handshake fails, the connection closes.
    let plain = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(port).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n")
            .expect("write");
        let mut buf = [0u8; 512];
        // The server's alert, then the end of the stream.
        let mut total = 0;
        loop {
            match s.read(&mut buf) {
                Ok(0) => break total,
                Ok(n) => total += n,
                Err(e) => panic!("the connection was not closed: {e}"),
            }
        }
    });
    let alert = plain.await.expect("join");
    assert!(
        alert < 64,
        "a short TLS alert at most, not a SIP answer: {alert} bytes"
    );
    tokio::time::timeout(Duration::from_secs(10), failed.recv())
        .await
        .expect("reported");
    assert!(
        failures.lock().unwrap()[0].starts_with("TLS handshake from 127.0.0.1:"),
        "{:?}",
        failures.lock().unwrap()
    );

    // A client that trusts nothing of ours: refused by the client, reported by the listener.
    let tcp = tokio::net::TcpStream::connect(port).await.expect("connect");
    let empty = rustls::RootCertStore::empty();
    let strict = rustls::ClientConfig::builder()
        .with_root_certificates(empty)
        .with_no_client_auth();
    let refused = tokio_rustls::TlsConnector::from(Arc::new(strict))
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await;
    assert!(refused.is_err());
    tokio::time::timeout(Duration::from_secs(10), failed.recv())
        .await
        .expect("reported");

    // One that trusts the run's certificate gets through, and its session is in the key log.
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&run.identity.cert_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let good = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(port).await.expect("connect");
    tokio_rustls::TlsConnector::from(Arc::new(good))
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .expect("handshake");
    let keys = std::fs::read_to_string(&keylog).expect("key log");
    assert!(
        keys.lines()
            .any(|l| l.starts_with("CLIENT_HANDSHAKE_TRAFFIC_SECRET ")),
        "{keys}"
    );
    ua.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_without_the_sip_subprotocol_is_refused_with_400() {
    let (tx, mut failed) = tokio::sync::mpsc::unbounded_channel::<String>();
    let hook = FailureHook(Arc::new(move |_, why| {
        let _ = tx.send(why);
    }));
    let ua = start_ua(EndpointSettings {
        transport: instances::SipTransport::Ws,
        on_failure: Some(hook),
        ..EndpointSettings::default()
    })
    .await;
    let url = format!("ws://{}/", ua.local);

    let refused = tokio_tungstenite::connect_async(url.as_str()).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 400);
        }
        other => panic!("expected a 400, got {other:?}"),
    }
    let why = tokio::time::timeout(Duration::from_secs(10), failed.recv())
        .await
        .expect("reported")
        .expect("a failure");
    assert!(
        why.starts_with("WS connection from 127.0.0.1:")
            && why.contains("did not ask for the `sip` subprotocol"),
        "{why}"
    );

    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "sip".parse().unwrap());
    let (_, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgraded");
    assert_eq!(resp.headers()["sec-websocket-protocol"], "sip");
    ua.shutdown(Duration::from_secs(2)).await;
}

/// Connections that never shake hands hold at most the UA's cap of handshakes: one past it is
/// closed at once, while those within it stay open (until the handshake's own bound).
#[tokio::test(flavor = "multi_thread")]
async fn handshakes_in_flight_are_bounded() {
    let run = RunTls::new(&["127.0.0.1".to_owned()], None).expect("tls");
    let ua = start_ua(EndpointSettings {
        transport: instances::SipTransport::Tls,
        tls: Some(settings(&run)),
        max_tcp_connections: 2,
        ..EndpointSettings::default()
    })
    .await;
    let port = ua.local;
    let held = tokio::task::spawn_blocking(move || {
        // Two silent connections take both places; the third is closed.
        let a = std::net::TcpStream::connect(port).expect("connect");
        let b = std::net::TcpStream::connect(port).expect("connect");
        let mut c = std::net::TcpStream::connect(port).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut byte = [0u8; 1];
        let third = c.read(&mut byte);
        // The first is still open: a read times out rather than ends.
        let mut a2 = a.try_clone().unwrap();
        a2.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let first = a2.read(&mut byte);
        drop((a, b));
        (third.map_err(|e| e.kind()), first.map_err(|e| e.kind()))
    })
    .await
    .expect("join");
    assert_eq!(held.0, Ok(0), "the third connection is closed at once");
    assert!(
        matches!(
            held.1,
            Err(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
        ),
        "the first stays open: {:?}",
        held.1
    );
    ua.shutdown(Duration::from_secs(2)).await;
}

/// A WebSocket message larger than a datagram callflow reads (64 KB) ends the connection
/// (tungstenite would read up to 64 MiB).
#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_message_past_64_kb_closes_the_connection() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let ua = start_ua(EndpointSettings {
        transport: instances::SipTransport::Ws,
        ..EndpointSettings::default()
    })
    .await;
    let mut req = format!("ws://{}/", ua.local).into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "sip".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgraded");
    ws.send(Message::Text("x".repeat(100_000).into()))
        .await
        .expect("sent");
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the connection ended");
    ua.shutdown(Duration::from_secs(2)).await;
}
