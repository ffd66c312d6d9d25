//! The PBX lab (`tests/lab/`): Kamailio as registrar and record-routing proxy with digest auth,
//! baresip as an echo service (extension 600) and as a registered phone. Every process runs on
//! loopback ports of its own, is health-checked before use, and is killed when dropped.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port free for both UDP and TCP (Kamailio and baresip listen on both), below the kernel's
/// ephemeral range.
pub use crate::free_udp_port as free_port;

fn temp_dir(name: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("callflow-lab-{name}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A process of the lab, killed (with its log kept for the failure message) when dropped.
pub struct Sidecar {
    child: Option<Child>,
    pub dir: PathBuf,
    pub port: u16,
    /// Kamailio's TLS port, when it listens on TLS.
    tls_port: Option<u16>,
    name: &'static str,
}

impl Sidecar {
    fn spawn(name: &'static str, cmd: &mut Command, dir: PathBuf, port: u16) -> Self {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(dir.join("output.log")).expect("log file");
        // A process group of its own: Kamailio forks workers, and they must go with it.
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {name} ({e}): .ci/run installs it (kamailio, baresip-core)")
            });
        Self {
            child: Some(child),
            dir,
            port,
            tls_port: None,
            name,
        }
    }

    /// The TLS port of a Kamailio or baresip started with TLS ([`kamailio_tls`],
    /// [`baresip_echo_tls`]).
    pub fn tls_port(&self) -> u16 {
        self.tls_port.expect("a sidecar started with TLS")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("output.log")).unwrap_or_default()
    }

    /// Waits (polling its log, at most `limit`) until the process has written `needle`.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if self.log().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{} did not log `{needle}` within {limit:?}:\n{}",
            self.name,
            self.log()
        );
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // The whole group: the process and every worker it forked.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", c.id())])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// Sends OPTIONS until the server answers (at most `limit`): the health check.
fn options_ping(port: u16, limit: Duration) -> bool {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let me = sock.local_addr().expect("addr");
    let end = Instant::now() + limit;
    let mut n = 0;
    while Instant::now() < end {
        n += 1;
        let msg = format!(
            "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKprobe{n}\r\nFrom: <sip:probe@{me}>;tag=p{n}\r\nTo: <sip:127.0.0.1:{port}>\r\nCall-ID: probe-{n}@{me}\r\nCSeq: {n} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = sock.send_to(msg.as_bytes(), ("127.0.0.1", port));
        let mut buf = [0u8; 2048];
        if let Ok((len, _)) = sock.recv_from(&mut buf)
            && String::from_utf8_lossy(&buf[..len]).starts_with("SIP/2.0 200")
        {
            return true;
        }
    }
    false
}

/// Kamailio with the lab config; extension 600 goes to `echo_port`.
pub fn kamailio(echo_port: u16) -> Sidecar {
    kamailio_with(echo_port, 1)
}

/// Kamailio with the lab config; extensions 600 and 700 go to `echo_port` and `play_port`.
pub fn kamailio_with(echo_port: u16, play_port: u16) -> Sidecar {
    kamailio_full(echo_port, play_port, "MD5")
}

/// Kamailio with the lab config and the digest `algorithm` of its challenges.
pub fn kamailio_full(echo_port: u16, play_port: u16, algorithm: &str) -> Sidecar {
    kamailio_start(echo_port, play_port, algorithm, None)
}

/// Kamailio listening on TLS as well (at [`Sidecar::tls_port`]), showing `cert_pem` (the
/// certificate of 127.0.0.1 a test made, with its `key_pem`; it verifies no client
/// certificate), and taking SIP over WebSocket: WS on its TCP port, WSS on its TLS port.
pub fn kamailio_tls(cert_pem: &[u8], key_pem: &[u8]) -> Sidecar {
    kamailio_start(
        1,
        1,
        "MD5",
        Some(LabTls {
            cert: cert_pem,
            key: key_pem,
            clients: None,
            method: "TLSv1.2+",
        }),
    )
}

/// [`kamailio_tls`] speaking TLS 1.2 only and requiring a client certificate that `clients_pem`
/// verifies (mutual TLS).
pub fn kamailio_mutual_tls(cert_pem: &[u8], key_pem: &[u8], clients_pem: &[u8]) -> Sidecar {
    kamailio_start(
        1,
        1,
        "MD5",
        Some(LabTls {
            cert: cert_pem,
            key: key_pem,
            clients: Some(clients_pem),
            method: "TLSv1.2",
        }),
    )
}

/// Kamailio's TLS: its certificate and key, the CA bundle of the client certificates it
/// requires (none: it asks for none), its TLS versions (Kamailio's `method`).
struct LabTls<'a> {
    cert: &'a [u8],
    key: &'a [u8],
    clients: Option<&'a [u8]>,
    method: &'a str,
}

fn kamailio_start(
    echo_port: u16,
    play_port: u16,
    algorithm: &str,
    tls: Option<LabTls<'_>>,
) -> Sidecar {
    let dir = temp_dir("kamailio");
    let port = free_port();
    let tls_port = free_port();
    let mut defines: Vec<&str> = Vec::new();
    let with_tls = tls.is_some();
    if let Some(t) = tls {
        std::fs::write(dir.join("cert.pem"), t.cert).expect("write");
        std::fs::write(dir.join("key.pem"), t.key).expect("write");
        let clients = match t.clients {
            Some(pem) => {
                std::fs::write(dir.join("clients.pem"), pem).expect("write");
                format!(
                    "verify_certificate = yes\nrequire_certificate = yes\nca_list = {}/clients.pem\n",
                    dir.display()
                )
            }
            None => "verify_certificate = no\nrequire_certificate = no\n".to_owned(),
        };
        std::fs::write(
            dir.join("tls.cfg"),
            format!(
                "[server:default]\nmethod = {1}\n{2}private_key = {0}/key.pem\ncertificate = {0}/cert.pem\n\n[client:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n",
                dir.display(),
                t.method,
                clients
            ),
        )
        .expect("write");
        defines.extend(["-A", "WITH_TLS", "-A", "WITH_WS"]);
    }
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/kamailio.cfg"),
    )
    .expect("config");
    let cfg = dir.join("kamailio.cfg");
    std::fs::write(
        &cfg,
        template
            .replace("@PORT@", &port.to_string())
            .replace("@ECHO_PORT@", &echo_port.to_string())
            .replace("@PLAY_PORT@", &play_port.to_string())
            .replace("@TLS_PORT@", &tls_port.to_string())
            .replace("@DIR@", &dir.display().to_string())
            .replace("@ALGORITHM@", algorithm),
    )
    .expect("write");
    let mut k = Sidecar::spawn(
        "kamailio",
        Command::new("kamailio")
            .args([
                "-f",
                cfg.to_str().unwrap(),
                "-DD",
                "-E",
                "-n",
                "1",
                "-m",
                "64",
                "-M",
                "8",
                "-Y",
                dir.to_str().unwrap(),
            ])
            .args(&defines),
        dir,
        port,
    );
    k.tls_port = with_tls.then_some(tls_port);
    assert!(
        options_ping(port, Duration::from_secs(10)),
        "kamailio did not answer OPTIONS:\n{}",
        k.log()
    );
    k
}

/// Where a baresip's call audio comes from and goes to (its `audio_source` and `audio_player`).
struct Audio<'a> {
    source: &'a str,
    player: &'a str,
}

/// The echo module's loop: what the peer sends comes back.
const ECHO: Audio<'static> = Audio {
    source: "aubridge,echo",
    player: "aubridge,echo",
};

/// Starts baresip with its whole config written first (it reads the config once, at start), and
/// returns once it says it is ready (it answers OPTIONS only for its own account's URI).
fn baresip(
    name: &'static str,
    account: &str,
    modules: &[&str],
    audio: Audio<'_>,
    port: u16,
) -> Sidecar {
    baresip_in(temp_dir(name), name, account, modules, audio, port, "")
}

fn baresip_in(
    dir: PathBuf,
    name: &'static str,
    account: &str,
    modules: &[&str],
    audio: Audio<'_>,
    port: u16,
    extra: &str,
) -> Sidecar {
    let Audio { source, player } = audio;
    let mut config = format!(
        "poll_method epoll\nsip_listen 127.0.0.1:{port}\nnet_interface 127.0.0.1\nmodule_path /usr/lib/baresip/modules\naudio_player {player}\naudio_source {source}\naudio_alert {player}\n{extra}"
    );
    for m in modules {
        config.push_str(&format!("module {m}\n"));
    }
    std::fs::write(dir.join("config"), config).expect("config");
    std::fs::write(dir.join("accounts"), format!("{account}\n")).expect("accounts");
    let b = Sidecar::spawn(
        name,
        Command::new("baresip").args(["-f", dir.to_str().unwrap(), "-v", "-t", "120"]),
        dir,
        port,
    );
    b.wait_for_log("baresip is ready.", Duration::from_secs(10));
    b
}

/// baresip answering every call with its echo module (not registered).
pub fn baresip_echo() -> Sidecar {
    let port = free_port();
    baresip(
        "baresip-echo",
        &format!("<sip:echo@127.0.0.1:{port}>;regint=0;answermode=auto"),
        &[
            "g711.so",
            "g722.so",
            "opus.so",
            "aubridge.so",
            "account.so",
            "echo.so",
        ],
        ECHO,
        port,
    )
}

/// baresip answering every call with its echo module over TLS (its listener on
/// [`Sidecar::tls_port`], the port above its UDP one, showing `cert_pem` with `key_pem`) and,
/// with `srtp`, only with SRTP (`mediaenc=srtp-mand`: RTP/SAVP, SDES keys).
pub fn baresip_echo_tls(cert_pem: &[u8], key_pem: &[u8], srtp: bool) -> Sidecar {
    let port = free_tls_pair();
    let dir = temp_dir("baresip-echo-tls");
    let mut pem = cert_pem.to_vec();
    pem.extend_from_slice(key_pem);
    std::fs::write(dir.join("cert.pem"), pem).expect("write");
    let extra = format!("sip_certificate {}/cert.pem\n", dir.display());
    let enc = if srtp { ";mediaenc=srtp-mand" } else { "" };
    let mut b = baresip_in(
        dir,
        "baresip-echo-tls",
        &format!("<sip:echo@127.0.0.1:{port}>;regint=0;answermode=auto{enc}"),
        // srtp before account: the account's mediaenc names one of its encodings.
        &["g711.so", "srtp.so", "aubridge.so", "account.so", "echo.so"],
        ECHO,
        port,
        &extra,
    );
    b.tls_port = Some(port + 1);
    b
}

/// A port free for UDP and TCP whose next port is free for TCP too (baresip's TLS listener).
fn free_tls_pair() -> u16 {
    loop {
        let p = free_port();
        if p < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

/// baresip answering every call by playing `wav` (over and over).
pub fn baresip_playback(wav: &Path) -> Sidecar {
    let port = free_port();
    // aufile plays the file as the call's audio source.
    let source = format!("aufile,{}", wav.display());
    baresip(
        "baresip-play",
        &format!("<sip:play@127.0.0.1:{port}>;regint=0;answermode=auto"),
        &["g711.so", "aufile.so", "account.so"],
        Audio {
            source: &source,
            player: "aufile,/dev/null",
        },
        port,
    )
}

/// baresip as a phone that registers at `pbx` as `dn` with `password` and answers every call
/// (its audio loops back); returns once it is registered.
pub fn baresip_phone(pbx: u16, dn: &str, password: &str) -> Sidecar {
    let port = free_port();
    let account =
        format!("<sip:{dn}@127.0.0.1:{pbx}>;auth_pass={password};answermode=auto;regint=60");
    let phone = baresip(
        "baresip-phone",
        &account,
        &["g711.so", "aubridge.so", "account.so", "echo.so"],
        ECHO,
        port,
    );
    phone.wait_for_log("200 OK", Duration::from_secs(10));
    phone
}
