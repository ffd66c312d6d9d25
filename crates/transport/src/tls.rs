//! TLS for SIP (RFC 3261 §26, RFC 5630): a UA's listener, its outgoing connections, the run's
//! own certificate and the key log.
//!
//! rsipstack carries SIP over a TLS stream once it has one; the handshakes are done here, with
//! rustls configurations built per UA:
//! - **Accepting:** each TLS UA listens with its own TCP listener and [`ServerConfig`]; an
//!   accepted stream goes to rsipstack as a TLS connection. rsipstack's own listener builds its
//!   configuration inside, with no key log and no way to report a failed handshake.
//! - **Connecting:** rsipstack asks the process-wide connector (its `platform::tls` seam) for
//!   each new TLS connection, passing the UA's settings; the connector finds the UA's
//!   [`ClientConfig`] by the tag its settings carry ([`ClientTag`]), dials and shakes hands.
//!   A failure names the peer and what failed (`TLS handshake with 127.0.0.1:5061 failed:
//!   invalid peer certificate: certificate not valid for name "pbx.lab"; ...`).

use rsipstack::platform::tls::{TlsClientConfig, TlsConnector as SeamConnector, TlsStream};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Once};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

/// How long a handshake may take, either way.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("{what}: {message}")]
    Pem { what: String, message: String },
    #[error("the certificate and key do not make a TLS identity: {0}")]
    Identity(String),
    #[error("could not make a self-signed certificate: {0}")]
    SelfSigned(String),
    #[error("key log {path}: {source}")]
    KeyLog {
        path: String,
        source: std::io::Error,
    },
}

/// Installs rustls's ring provider once for the process (rsipstack's TLS and ours use the
/// process default; with none installed the first connection would panic). rsipstack builds
/// rustls with ring alone, which this rustls marks deprecated for its lack of post-quantum key
/// exchange; aws-lc-rs would be a second provider in the build.
#[allow(deprecated)]
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        rsipstack::platform::tls::set_client_connector(Arc::new(Connector));
    });
}

/// A certificate chain and its private key, in PEM.
#[derive(Clone)]
pub struct TlsIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// A self-signed certificate for `names` (DNS names or IP addresses), made now: the run's
    /// own, which its UAs show and trust.
    pub fn self_signed(names: &[String]) -> Result<Self, TlsError> {
        let made = rcgen::generate_simple_self_signed(names.to_vec())
            .map_err(|e| TlsError::SelfSigned(e.to_string()))?;
        Ok(Self {
            cert_pem: made.cert.pem().into_bytes(),
            key_pem: made.signing_key.serialize_pem().into_bytes(),
        })
    }

    fn certs(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        certs(&self.cert_pem, "the certificate")
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(&self.key_pem).map_err(|e| TlsError::Pem {
            what: "the private key".into(),
            message: pem_error(&e),
        })
    }
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item of that kind in it".into(),
        other => other.to_string(),
    }
}

/// The certificates of a PEM bundle; at least one.
fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: what.into(),
            message: pem_error(&e),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what: what.into(),
            message: "no certificate (-----BEGIN CERTIFICATE-----) in it".into(),
        });
    }
    Ok(certs)
}

/// Appends the TLS secrets of every session to a file in the SSLKEYLOGFILE format, which
/// Wireshark reads to decrypt a capture (`--keylog`).
#[derive(Debug)]
pub struct KeyLogFile {
    path: String,
    file: Mutex<std::fs::File>,
}

impl KeyLogFile {
    pub fn create(path: &str) -> Result<Arc<Self>, TlsError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| TlsError::KeyLog {
                path: path.to_owned(),
                source,
            })?;
        Ok(Arc::new(Self {
            path: path.to_owned(),
            file: Mutex::new(file),
        }))
    }
}

impl rustls::KeyLog for KeyLogFile {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let line = format!("{label} {} {}\n", hex(client_random), hex(secret));
        let mut f = self.file.lock().expect("key log lock");
        if let Err(e) = f.write_all(line.as_bytes()) {
            tracing::warn!(path = %self.path, error = %e, "key log write failed");
        }
    }
}

/// What every TLS UA of a run shares: the run's own certificate and the key log.
#[derive(Clone, Debug)]
pub struct RunTls {
    /// Shown by each UA that has no certificate of its own, and trusted by every UA.
    pub identity: TlsIdentity,
    pub keylog: Option<Arc<KeyLogFile>>,
}

impl RunTls {
    /// A new certificate for `names` (the addresses the run's UAs bind, `localhost`), and the
    /// key log at `keylog` if asked for.
    pub fn new(names: &[String], keylog: Option<&str>) -> Result<Self, TlsError> {
        install_crypto_provider();
        Ok(Self {
            identity: TlsIdentity::self_signed(names)?,
            keylog: keylog.map(KeyLogFile::create).transpose()?,
        })
    }
}

/// One UA's TLS: what it shows, whom it trusts.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    /// What the UA's listener shows (the run's own certificate unless the instance has one).
    pub identity: TlsIdentity,
    /// Shown as a client certificate when a server asks (mutual TLS): the instance's own
    /// certificate only, not the run's.
    pub client_identity: Option<TlsIdentity>,
    /// The trusted certificates (PEM): the instance's `ca` and the run's own certificate.
    pub roots_pem: Vec<u8>,
    /// Verify nothing (`insecure: true`).
    pub insecure: bool,
    /// The name sent as SNI and verified, instead of the target's host.
    pub sni: Option<String>,
    pub keylog: Option<Arc<KeyLogFile>>,
}

impl TlsSettings {
    pub(crate) fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(self.identity.certs()?, self.identity.key()?)
            .map_err(|e| TlsError::Identity(e.to_string()))?;
        if let Some(k) = &self.keylog {
            config.key_log = k.clone();
        }
        Ok(Arc::new(config))
    }

    pub(crate) fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in certs(&self.roots_pem, "the CA bundle")? {
            roots.add(cert).map_err(|e| TlsError::Pem {
                what: "the CA bundle".into(),
                message: e.to_string(),
            })?;
        }
        let builder = ClientConfig::builder().with_root_certificates(roots);
        let mut config = match &self.client_identity {
            Some(id) => builder
                .with_client_auth_cert(id.certs()?, id.key()?)
                .map_err(|e| TlsError::Identity(e.to_string()))?,
            None => builder.with_no_client_auth(),
        };
        if self.insecure {
            config
                .dangerous()
                .set_certificate_verifier(Arc::new(AcceptAnything::new()));
        }
        if let Some(k) = &self.keylog {
            config.key_log = k.clone();
        }
        Ok(Arc::new(config))
    }
}

/// The settings a UA hands rsipstack for its outgoing TLS connections: they name the UA's
/// client configuration (kept in [`CLIENTS`]) by a tag line in the CA bundle, which only our
/// connector reads. The tag is released (and the configuration dropped) with this.
#[derive(Debug)]
pub(crate) struct ClientTag(u64);

const TAG_PREFIX: &str = "callflow-tls-client: ";

/// Told of each connection that failed, with the peer and why (a UA logs it, and a failure
/// message names it).
#[derive(Clone)]
pub struct FailureHook(pub Arc<dyn Fn(SocketAddr, String) + Send + Sync>);

impl FailureHook {
    pub(crate) fn call(&self, peer: SocketAddr, why: String) {
        (self.0)(peer, why);
    }
}

impl std::fmt::Debug for FailureHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FailureHook")
    }
}

type Client = (Arc<ClientConfig>, Option<FailureHook>);

static CLIENTS: LazyLock<Mutex<HashMap<u64, Client>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

impl ClientTag {
    pub(crate) fn register(config: Arc<ClientConfig>, on_failure: Option<FailureHook>) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        CLIENTS
            .lock()
            .expect("clients lock")
            .insert(id, (config, on_failure));
        Self(id)
    }

    /// rsipstack's TLS settings for the UA: the tag, and the SNI name if one is set.
    pub(crate) fn rsip_config(&self, sni: Option<String>) -> rsipstack::transport::tls::TlsConfig {
        rsipstack::transport::tls::TlsConfig {
            ca_certs: Some(format!("{TAG_PREFIX}{}\n", self.0).into_bytes()),
            sni_hostname: sni,
            ..Default::default()
        }
    }

    fn find(config: &TlsClientConfig) -> Option<Client> {
        let roots = config.root_certs.as_deref()?;
        let text = std::str::from_utf8(roots).ok()?;
        let id: u64 = text
            .trim()
            .strip_prefix(TAG_PREFIX.trim())?
            .trim()
            .parse()
            .ok()?;
        CLIENTS.lock().expect("clients lock").get(&id).cloned()
    }
}

impl Drop for ClientTag {
    fn drop(&mut self) {
        CLIENTS.lock().expect("clients lock").remove(&self.0);
    }
}

/// A failed handshake as a person reads it: rustls's words, with what to do for the refusals
/// a lab meets most (a certificate no one here signed, an openssl-made CA certificate shown as
/// a server's).
pub(crate) fn explain(e: &std::io::Error) -> String {
    use rustls::CertificateError as C;
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return e.to_string();
    };
    match tls {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "invalid peer certificate: not signed by a certificate this UA trusts (its `tls.ca`, or the run's own); give its CA in `tls.ca`, or set `tls.insecure: true`".into()
        }
        rustls::Error::InvalidCertificate(C::Other(o))
            if format!("{o:?}").contains("CaUsedAsEndEntity") =>
        {
            "invalid peer certificate: it is a CA certificate (basicConstraints CA:TRUE, as `openssl req -x509` makes by default) shown as a server's own, which verification refuses; sign a server certificate with it, or set `tls.insecure: true`".into()
        }
        other => other.to_string(),
    }
}

/// rsipstack's connector for every outgoing TLS connection of the process.
struct Connector;

fn seam_error(msg: String) -> rsipstack::Error {
    rsipstack::Error::Error(msg)
}

#[async_trait::async_trait]
impl SeamConnector for Connector {
    async fn connect(
        &self,
        config: &TlsClientConfig,
        addr: SocketAddr,
    ) -> rsipstack::Result<Box<dyn TlsStream>> {
        let (client, on_failure) = ClientTag::find(config).ok_or_else(|| {
            seam_error(format!(
                "TLS connection to {addr}: this UA has no TLS settings (its transport and its PBX's are not TLS)"
            ))
        })?;
        let (stream, local) = dial(client, &config.server_name, addr, "TLS")
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "outgoing TLS connection failed");
                if let Some(hook) = &on_failure {
                    hook.call(addr, e.clone());
                }
                seam_error(e)
            })?;
        let (read, write) = tokio::io::split(stream);
        Ok(Box::new(ClientStream {
            read: tokio::sync::Mutex::new(read),
            write: tokio::sync::Mutex::new(write),
            local,
        }))
    }
}

pub(crate) type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;

/// A TLS connection to `peer` with `config`, verifying `name` (and sending it as SNI when it is
/// a host name): the TCP connection (with TCP_NODELAY) and the handshake, within
/// [`HANDSHAKE_TIMEOUT`]. Returns the stream and its local address; an error says what failed,
/// `what` (`TLS`, `WSS`) naming the connection. Every outgoing TLS connection is made here:
/// rsipstack's seam, a UA's TLS targets and its WSS ones.
pub(crate) async fn dial(
    config: Arc<ClientConfig>,
    name: &str,
    peer: SocketAddr,
    what: &str,
) -> Result<(ClientTls, SocketAddr), String> {
    let server = ServerName::try_from(name.to_owned()).map_err(|_| {
        format!("{what} connection to {peer}: `{name}` is not a name a certificate can hold")
    })?;
    let shake = async {
        let tcp = TcpStream::connect(peer)
            .await
            .map_err(|e| format!("{what} connection to {peer} failed: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let local = tcp
            .local_addr()
            .map_err(|e| format!("{what} connection to {peer}: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(server, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {peer} failed: {}", explain(&e)))?;
        Ok((stream, local))
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, shake)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "TLS handshake with {peer} failed: no answer within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            ))
        })
}

/// An established client session, as rsipstack's seam reads and writes it.
struct ClientStream {
    read: tokio::sync::Mutex<ReadHalf<ClientTls>>,
    write: tokio::sync::Mutex<WriteHalf<ClientTls>>,
    local: SocketAddr,
}

#[async_trait::async_trait]
impl TlsStream for ClientStream {
    async fn recv(&self) -> rsipstack::Result<Vec<u8>> {
        let mut buf = vec![0u8; 16 * 1024];
        let n = self
            .read
            .lock()
            .await
            .read(&mut buf)
            .await
            .map_err(|e| seam_error(e.to_string()))?;
        buf.truncate(n);
        Ok(buf)
    }

    async fn send_all(&self, data: Vec<u8>) -> rsipstack::Result<()> {
        let mut w = self.write.lock().await;
        w.write_all(&data)
            .await
            .map_err(|e| seam_error(e.to_string()))?;
        w.flush().await.map_err(|e| seam_error(e.to_string()))
    }

    async fn shutdown(&self) -> rsipstack::Result<()> {
        self.write
            .lock()
            .await
            .shutdown()
            .await
            .map_err(|e| seam_error(e.to_string()))
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// `insecure: true`: every certificate is taken; signatures are still checked, so the session
/// is encrypted with the key of the certificate shown.
#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl AcceptAnything {
    fn new() -> Self {
        install_crypto_provider();
        Self(
            rustls::crypto::CryptoProvider::get_default()
                .cloned()
                .expect("installed above"),
        )
    }
}

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Accepts TLS connections on `listener` for a UA until `cancel`: each handshake on a task of
/// its own (bounded by [`HANDSHAKE_TIMEOUT`]); a stream that completes it is handed to the
/// endpoint's transport layer as a TLS connection of `local`. A failed handshake (a plain TCP client, a wrong certificate) is
/// logged and its connection closed.
pub(crate) fn serve_listener(
    listener: tokio::net::TcpListener,
    config: Arc<ServerConfig>,
    endpoint: rsipstack::transaction::endpoint::EndpointInnerRef,
    local: SocketAddr,
    cancel: tokio_util::sync::CancellationToken,
    on_failure: Option<FailureHook>,
    cap: usize,
) {
    use rsipstack::transport::{SipAddr, SipConnection, tls::TlsConnection};
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let sip_addr = |addr: SocketAddr| SipAddr {
        r#type: Some(rsipstack::sip::transport::Transport::Tls),
        addr: addr.into(),
    };
    accept_each(
        listener,
        local,
        cancel.clone(),
        ("TLS", cap),
        move |tcp, peer| {
            let acceptor = acceptor.clone();
            let endpoint = endpoint.clone();
            let cancel = cancel.clone();
            let on_failure = on_failure.clone();
            async move {
                let shake = tokio::select! {
                    () = cancel.cancelled() => return,
                    r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => r,
                };
                let failed = |why: String| {
                    let why = format!("TLS handshake from {peer} failed: {why}");
                    tracing::warn!(%local, "{why}");
                    if let Some(hook) = &on_failure {
                        hook.call(peer, why);
                    }
                };
                let stream = match shake {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return failed(explain(&e)),
                    Err(_) => {
                        return failed(format!(
                            "no handshake within {} s",
                            HANDSHAKE_TIMEOUT.as_secs()
                        ));
                    }
                };
                match TlsConnection::from_server_stream(
                    stream,
                    sip_addr(local),
                    sip_addr(peer),
                    Some(cancel.child_token()),
                )
                .await
                {
                    Ok(conn) => endpoint
                        .transport_layer
                        .add_connection(SipConnection::Tls(conn)),
                    Err(e) => failed(e.to_string()),
                }
            }
        },
    );
}

/// Accepts TCP connections on `listener` until `cancel`, each (with TCP_NODELAY) handed to
/// `each` on a task of its own: the loop of the TLS and WebSocket listeners (`what` names
/// which in a log line). At most `cap` are in `each` at once (a handshake can take
/// [`HANDSHAKE_TIMEOUT`]): one past it is closed at once, so connections that never shake
/// hands cannot hold the UA's descriptors. A connection that completes its handshake counts
/// against the UA's cap of open connections instead.
pub(crate) fn accept_each<F, Fut>(
    listener: tokio::net::TcpListener,
    local: SocketAddr,
    cancel: tokio_util::sync::CancellationToken,
    (what, cap): (&'static str, usize),
    each: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let shaking = Arc::new(tokio::sync::Semaphore::new(cap.max(1)));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = cancel.cancelled() => break,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((tcp, peer)) => {
                    let Ok(permit) = shaking.clone().try_acquire_owned() else {
                        tracing::warn!(%local, %peer, cap, "too many {what} handshakes at once: closed");
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let handshake = each(tcp, peer);
                    tokio::spawn(async move {
                        handshake.await;
                        drop(permit);
                    });
                }
                Err(e) => tracing::warn!(%local, error = %e, "{what} accept failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_identity_makes_both_configurations() {
        install_crypto_provider();
        let id = TlsIdentity::self_signed(&["127.0.0.1".into(), "localhost".into()]).unwrap();
        let settings = TlsSettings {
            roots_pem: id.cert_pem.clone(),
            identity: id,
            client_identity: None,
            insecure: false,
            sni: None,
            keylog: None,
        };
        settings.server_config().unwrap();
        settings.client_config().unwrap();
    }

    #[test]
    fn bad_pem_is_named() {
        let id = TlsIdentity {
            cert_pem: b"not a certificate".to_vec(),
            key_pem: b"nor a key".to_vec(),
        };
        let settings = TlsSettings {
            roots_pem: b"junk".to_vec(),
            identity: id,
            client_identity: None,
            insecure: false,
            sni: None,
            keylog: None,
        };
        assert_eq!(
            settings.server_config().unwrap_err().to_string(),
            "the certificate: no certificate (-----BEGIN CERTIFICATE-----) in it"
        );
        assert_eq!(
            settings.client_config().unwrap_err().to_string(),
            "the CA bundle: no certificate (-----BEGIN CERTIFICATE-----) in it"
        );
    }
}
