//! Secure transports between our own UAs: TLS with the run's own certificate, a wrong
//! certificate, and what a plain TCP client gets from a TLS port.

use callflow_tests::run_scenario;
use events::{EventKind, Outcome};

/// Two UAs on `transport`, alice calls bob, both hear each other's signature, alice hangs up.
fn call_over(transport: &str, alice_extra: &str) -> scenario::Scenario {
    let text = format!(
        r#"version: 1
name: call over {transport}
instances:
  alice:
    dn: "100"
    transport: {transport}{alice_extra}
    steps:
      - command: MakeCall
        target: bob
        timeout: 5s
      - command: PlaySignature
        duration: 600ms
      - event: HEARD
        from: bob
      - command: Release
        after: bob-sig
  bob:
    dn: "200"
    transport: {transport}
    steps:
      - event: INCOMING
      - command: Answer
      - event: HEARD
        from: alice
      - command: PlaySignature
        id: bob-sig
        duration: 600ms
      - event: DISCONNECTED
"#
    );
    scenario::parse_str(&text, "over.yaml").expect("valid scenario")
}

#[tokio::test(flavor = "multi_thread")]
async fn two_tls_uas_call_each_other_with_the_runs_own_certificate() {
    let s = call_over("tls", "");
    let run = run_scenario(&s, orchestrator::RunOptions::default(), vec![]).await;
    run.assert_outcome(Outcome::Passed);
    assert_eq!(
        run.wire("alice"),
        [">INVITE", "<100", "<180", "<200", ">ACK", ">BYE", "<200"]
    );
    let invite = &run.raw("alice", ">INVITE")[0];
    assert!(invite.contains("Via: SIP/2.0/TLS 127.0.0.1:"), "{invite}");
    // rsipstack writes the parameter's value in capitals; it is case-insensitive (RFC 3261 §19.1.4).
    assert!(invite.contains("Contact: <sip:100@127.0.0.1:"), "{invite}");
    assert!(invite.contains(";transport=TLS>"), "{invite}");
    let t = run.transports(None);
    assert!(!t.is_empty() && t.iter().all(|t| t == "tls"), "{t:?}");
    run.assert_clean();
}

/// Bob shows a certificate of his own for `pbx.lab`; alice trusts it (`ca`) and names the server
/// `sni`: the right name calls, a wrong one fails MakeCall with what failed.
fn with_bobs_certificate(sni: &str) -> (scenario::Scenario, tempfile::TempDir) {
    let dir = callflow_tests::scratch("tls-cert");
    let id = transport::tls::TlsIdentity::self_signed(&["pbx.lab".to_owned()]).expect("cert");
    std::fs::write(dir.path().join("bob.pem"), &id.cert_pem).expect("write");
    std::fs::write(dir.path().join("bob.key"), &id.key_pem).expect("write");
    let text = format!(
        r#"version: 1
name: bob's own certificate
instances:
  alice:
    dn: "100"
    transport: tls
    tls: {{ca: bob.pem, sni: {sni}}}
    steps:
      - command: MakeCall
        target: bob
        timeout: 5s
      - command: Release
  bob:
    dn: "200"
    transport: tls
    tls: {{cert: bob.pem, key: bob.key}}
    steps:
      - event: INCOMING
        timeout: 5s
      - command: Answer
      - event: DISCONNECTED
"#
    );
    let file = dir.path().join("cert.yaml");
    std::fs::write(&file, text).expect("write");
    let (s, _) = scenario::load(&file).expect("valid scenario");
    (s, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_of_our_own_is_verified_by_its_name() {
    let (s, _dir) = with_bobs_certificate("pbx.lab");
    let run = run_scenario(&s, orchestrator::RunOptions::default(), vec![]).await;
    run.assert_outcome(Outcome::Passed);
    run.assert_clean();

    let (s, _dir) = with_bobs_certificate("other.lab");
    let run = run_scenario(&s, orchestrator::RunOptions::default(), vec![]).await;
    run.assert_outcome(Outcome::Failed);
    let reason = run.node("alice.1").reason.clone().unwrap_or_default();
    assert!(
        reason.contains("TLS handshake with 127.0.0.1:")
            && reason.contains("certificate not valid for name \"other.lab\""),
        "{reason}"
    );
    run.assert_clean();
}

/// alice and bob register at Kamailio over TLS (digest) and call each other through it; the
/// certificate is one the test makes for 127.0.0.1, trusted through `tls.ca`. With `bob_udp`,
/// bob stays on UDP: Kamailio carries the call from TLS to UDP.
async fn through_kamailio_over_tls(bob_udp: bool) -> callflow_tests::Run {
    let id = transport::tls::TlsIdentity::self_signed(&["127.0.0.1".to_owned()]).expect("cert");
    let pbx = callflow_tests::lab::kamailio_tls(&id.cert_pem, &id.key_pem);
    let dir = callflow_tests::scratch("kamailio-tls");
    std::fs::write(dir.path().join("pbx.pem"), &id.cert_pem).expect("write");
    let (tls, udp) = (pbx.tls_port(), pbx.port);
    let bob = if bob_udp {
        format!("    transport: udp\n    pbx: {{host: 127.0.0.1, port: {udp}, password: bobpw}}\n")
    } else {
        format!(
            "    transport: tls\n    tls: {{ca: pbx.pem}}\n    pbx: {{host: 127.0.0.1, port: {tls}, password: bobpw}}\n"
        )
    };
    let text = format!(
        r#"version: 1
name: through Kamailio over TLS
instances:
  alice:
    dn: "100"
    transport: tls
    tls: {{ca: pbx.pem}}
    pbx: {{host: 127.0.0.1, port: {tls}, password: alicepw}}
    steps:
      - command: MakeCall
        target: "200"
      - command: PlaySignature
        duration: 600ms
      - event: HEARD
        from: bob
      - command: Release
        after: bob-sig
  bob:
    dn: "200"
{bob}    steps:
      - event: INCOMING
      - command: Answer
      - event: HEARD
        from: alice
      - command: PlaySignature
        id: bob-sig
        duration: 600ms
      - event: DISCONNECTED
"#
    );
    let file = dir.path().join("lab.yaml");
    std::fs::write(&file, text).expect("write");
    let (s, _) = scenario::load(&file).expect("valid scenario");
    let run = run_scenario(&s, orchestrator::RunOptions::default(), vec![]).await;
    assert!(
        run.report.outcome == Outcome::Passed,
        "{:?}\n{}",
        run.report.failure,
        pbx.log()
    );
    run
}

#[tokio::test(flavor = "multi_thread")]
async fn register_and_call_through_kamailio_over_tls() {
    let run = through_kamailio_over_tls(false).await;
    run.assert_wire_contains(
        "alice",
        &[
            ">REGISTER",
            "<401",
            ">REGISTER",
            "<200",
            ">INVITE",
            "<407",
            ">ACK",
            ">INVITE",
            "<200",
            ">ACK",
        ],
    );
    let t = run.transports(None);
    assert!(t.iter().all(|t| t == "tls"), "{t:?}");
    let register = &run.raw("bob", ">REGISTER")[0];
    assert!(register.contains("Via: SIP/2.0/TLS"), "{register}");
    assert!(run.finished().leaks.is_clean());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_caller_reaches_a_udp_callee_through_kamailio() {
    let run = through_kamailio_over_tls(true).await;
    let on = |ua: &str| run.transports(Some(ua));
    assert!(on("alice").iter().all(|t| t == "tls"), "{:?}", on("alice"));
    assert!(on("bob").iter().all(|t| t == "udp"), "{:?}", on("bob"));
    assert!(run.finished().leaks.is_clean());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_uas_call_each_other_over_ws_and_over_wss() {
    for transport in ["ws", "wss"] {
        let s = call_over(transport, "");
        let run = run_scenario(&s, orchestrator::RunOptions::default(), vec![]).await;
        run.assert_outcome(Outcome::Passed);
        assert_eq!(
            run.wire("alice"),
            [">INVITE", "<100", "<180", "<200", ">ACK", ">BYE", "<200"],
            "{transport}"
        );
        let invite = &run.raw("alice", ">INVITE")[0];
        let token = transport.to_uppercase();
        assert!(
            invite.contains(&format!("Via: SIP/2.0/{token} 127.0.0.1:")),
            "{invite}"
        );
        assert!(invite.contains(&format!(";transport={token}>")), "{invite}");
        let t = run.transports(None);
        assert!(!t.is_empty() && t.iter().all(|t| t == transport), "{t:?}");
        run.assert_clean();
    }
}

/// The callee hangs up: its BYE goes to the caller's Contact, a listener it has no connection
/// to yet, over WSS (and TLS) too.
#[tokio::test(flavor = "multi_thread")]
async fn the_callee_hangs_up_over_each_secure_transport() {
    for transport in ["tls", "wss"] {
        let text = format!(
            "version: 1\nname: callee hangs up\ninstances:\n  alice:\n    dn: \"100\"\n    transport: {transport}\n    steps:\n      - command: MakeCall\n        target: bob\n      - event: DISCONNECTED\n  bob:\n    dn: \"200\"\n    transport: {transport}\n    steps:\n      - event: INCOMING\n      - command: Answer\n      - command: Release\n"
        );
        let s = scenario::parse_str(&text, "bye.yaml").expect("valid");
        let run = run_scenario(&s, orchestrator::RunOptions::default(), vec![]).await;
        run.assert_outcome(Outcome::Passed);
        assert_eq!(
            run.wire("bob"),
            ["<INVITE", ">100", ">180", ">200", "<ACK", ">BYE", "<200"],
            "{transport}"
        );
        run.assert_clean();
    }
}

/// alice and bob register at Kamailio over WebSocket (`ws` on its TCP port, `wss` on its TLS
/// port) with digest and call each other through it.
#[tokio::test(flavor = "multi_thread")]
async fn register_and_call_through_kamailio_over_ws_and_wss() {
    let id = transport::tls::TlsIdentity::self_signed(&["127.0.0.1".to_owned()]).expect("cert");
    let pbx = callflow_tests::lab::kamailio_tls(&id.cert_pem, &id.key_pem);
    let dir = callflow_tests::scratch("kamailio-ws");
    std::fs::write(dir.path().join("pbx.pem"), &id.cert_pem).expect("write");
    for (transport, port) in [("ws", pbx.port), ("wss", pbx.tls_port())] {
        let user = |dn: &str, pw: &str| {
            format!(
                "    dn: \"{dn}\"\n    transport: {transport}\n    tls: {{ca: pbx.pem}}\n    pbx: {{host: 127.0.0.1, port: {port}, password: {pw}}}\n"
            )
        };
        let tls_unused = transport == "ws";
        let user = |dn: &str, pw: &str| {
            let u = user(dn, pw);
            if tls_unused {
                u.replace("    tls: {ca: pbx.pem}\n", "")
            } else {
                u
            }
        };
        let text = format!(
            "version: 1\nname: through Kamailio over {transport}\ninstances:\n  alice:\n{}    steps:\n      - command: MakeCall\n        target: \"200\"\n      - command: Release\n  bob:\n{}    steps:\n      - event: INCOMING\n      - command: Answer\n      - event: DISCONNECTED\n",
            user("100", "alicepw"),
            user("200", "bobpw")
        );
        let file = dir.path().join(format!("{transport}.yaml"));
        std::fs::write(&file, text).expect("write");
        let (s, _) = scenario::load(&file).expect("valid scenario");
        let run = run_scenario(&s, orchestrator::RunOptions::default(), vec![]).await;
        assert!(
            run.report.outcome == Outcome::Passed,
            "{transport}: {:?}\nalice: {:?}\nbob: {:?}\n{}",
            run.report.failure,
            run.wire("alice"),
            run.wire("bob"),
            pbx.log()
        );
        let t = run.transports(None);
        assert!(t.iter().all(|t| t == transport), "{t:?}");
        let register = &run.raw("bob", ">REGISTER")[0];
        assert!(
            register.contains(&format!("Via: SIP/2.0/{}", transport.to_uppercase())),
            "{register}"
        );
        assert!(run.finished().leaks.is_clean());
    }
}

/// SRTP between our UAs (`srtp` on each side): both hear each other's signature, and
/// media_stats names the suite, with nothing rejected.
#[tokio::test(flavor = "multi_thread")]
async fn srtp_between_our_uas_over_tls_and_each_side_hears_the_other() {
    for (alice, bob) in [
        ("required", "required"),
        ("optional", "required"),
        ("required", "optional"),
    ] {
        let s = call_over("tls", &format!("\n    srtp: {alice}"));
        let mut s = s;
        s.instances[1].srtp = media::srtp::SrtpMode::parse(bob).expect("mode");
        let run = run_scenario(&s, orchestrator::RunOptions::default(), vec![]).await;
        run.assert_outcome(Outcome::Passed);
        let invite = &run.raw("alice", ">INVITE")[0];
        let savp = alice == "required";
        assert_eq!(invite.contains("RTP/SAVP"), savp, "{invite}");
        assert!(
            invite.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
            "{invite}"
        );
        let srtp: Vec<_> = run.media_stats().into_iter().map(|m| m.srtp).collect();
        assert_eq!(srtp.len(), 2, "{alice}/{bob}");
        for s in srtp {
            let s = s.expect("SRTP");
            assert_eq!(
                (s.suite.as_str(), s.rejected),
                ("AES_CM_128_HMAC_SHA1_80", 0)
            );
        }
        run.assert_clean();
    }
}

/// One side requires SRTP, the other offers plain RTP/AVP: 488, with a message naming both.
#[tokio::test(flavor = "multi_thread")]
async fn an_srtp_mismatch_is_answered_488_naming_both_sides() {
    let text = "version: 1\nname: mismatch\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - command: MakeCall\n        target: bob\n        expect: 488\n  bob:\n    dn: \"200\"\n    srtp: required\n    steps:\n      - event: INCOMING\n      - command: Answer\n        on_failure:\n          - event: DISCONNECTED\n";
    let s = scenario::parse_str(text, "mismatch.yaml").expect("valid");
    let run = run_scenario(&s, orchestrator::RunOptions::default(), vec![]).await;
    assert_eq!(
        run.wire("alice"),
        [">INVITE", "<100", "<180", "<488", ">ACK"]
    );
    let why = run.node("bob.2").reason.clone().unwrap_or_default();
    assert!(why.contains("bob requires SRTP (srtp: required)"), "{why}");
    let refusal = &run.raw("alice", "<488")[0];
    assert!(
        refusal.contains("offered RTP/AVP without a=crypto; bob requires SRTP (srtp: required)"),
        "{refusal}"
    );
    run.assert_clean();
}

/// A live capture of loopback by tshark (`filter`: a capture filter), from when it says it
/// captures until stopped. tshark also prints a line per packet as it writes it (`-P -l`): what
/// [`LiveCapture::read`] waits on before it stops the capture.
struct LiveCapture {
    child: std::process::Child,
    file: std::path::PathBuf,
    lines: std::sync::mpsc::Receiver<String>,
}

impl LiveCapture {
    fn start(dir: &std::path::Path, filter: &str) -> Self {
        use std::io::BufRead;
        let file = dir.join("live.pcapng");
        let mut child = std::process::Command::new("tshark")
            .args(["-i", "lo", "-f", filter, "-P", "-l", "-w"])
            .arg(&file)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("tshark (.ci/run installs it)");
        // tshark says so on stderr once it captures.
        let mut err = std::io::BufReader::new(child.stderr.take().expect("stderr"));
        let mut line = String::new();
        while err.read_line(&mut line).expect("tshark's stderr") > 0
            && !line.contains("Capturing on")
        {
            line.clear();
        }
        assert!(
            line.contains("Capturing on"),
            "tshark did not start: {line}"
        );
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        let out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let capture = Self { child, file, lines };
        // "Capturing on" comes before the capture does: it is live once it takes a packet.
        capture.sync();
        capture
    }

    /// Sends a marker datagram to the discard port until tshark has taken one: everything sent
    /// before it is in the capture. Each sync's marker comes from a port of its own, so an
    /// earlier one's line does not count.
    fn sync(&self) {
        let marker = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let from = marker.local_addr().expect("addr").port();
        let ours = [format!(" {from} \u{2192} 9 "), format!(" {from} -> 9 ")];
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            assert!(
                std::time::Instant::now() < end,
                "tshark never took the marker"
            );
            let _ = marker.send_to(b"callflow-capture-marker", "127.0.0.1:9");
            while let Ok(l) = self
                .lines
                .recv_timeout(std::time::Duration::from_millis(200))
            {
                if ours.iter().any(|m| l.contains(m.as_str())) {
                    return;
                }
            }
        }
    }

    /// Stops the capture once all that came before is in it, and reads it back with tshark
    /// and `args`.
    fn read(mut self, args: &[&str]) -> String {
        self.sync();
        let _ = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let out = std::process::Command::new("tshark")
            .args(["-r"])
            .arg(&self.file)
            .args(args)
            .output()
            .expect("tshark reads the capture");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the capture and returns the UDP payloads from `port`.
    fn payloads_from(self, port: u16) -> Vec<Vec<u8>> {
        let filter = format!("udp.srcport == {port}");
        self.read(&["-Y", &filter, "-T", "fields", "-e", "udp.payload"])
            .lines()
            .filter_map(|l| {
                let hex = l.trim().replace(':', "");
                (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                    .collect()
            })
            .collect()
    }
}

/// Shannon entropy of the bytes, in bits per byte: near 8 for ciphertext, far less for G.711.
fn entropy(bytes: &[u8]) -> f64 {
    let mut counts = [0u64; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let n = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// baresip's echo over TLS and SRTP only (`mediaenc=srtp-mand`): we hear our own signature
/// back, while a live capture of the wire shows SRTP packets (a 10-octet tag after 160 octets)
/// whose payloads are ciphertext, not the G.711 we sent.
#[tokio::test(flavor = "multi_thread")]
async fn baresip_echoes_our_signature_over_tls_and_srtp() {
    let id = transport::tls::TlsIdentity::self_signed(&["127.0.0.1".to_owned()]).expect("cert");
    let echo = callflow_tests::lab::baresip_echo_tls(&id.cert_pem, &id.key_pem, true);
    let dir = callflow_tests::scratch("baresip-srtp");
    std::fs::write(dir.path().join("echo.pem"), &id.cert_pem).expect("write");
    // A `sips:` target: TLS implied (RFC 3261 §26.2), and our Contact a SIPS URI too (§8.1.1.8).
    let text = format!(
        "version: 1\nname: echo over TLS and SRTP\ninstances:\n  alice:\n    dn: \"100\"\n    transport: tls\n    tls: {{ca: echo.pem}}\n    srtp: required\n    codecs: [PCMU]\n    steps:\n      - command: MakeCall\n        target: \"sips:echo@127.0.0.1:{}\"\n      - command: PlaySignature\n        duration: 1s\n      - event: HEARD\n        from: alice\n        timeout: 3s\n      - command: Release\n",
        echo.tls_port()
    );
    let file = dir.path().join("echo.yaml");
    std::fs::write(&file, text).expect("write");
    let (s, _) = scenario::load(&file).expect("valid scenario");
    let capture = LiveCapture::start(dir.path(), "udp");
    let run = run_scenario(&s, orchestrator::RunOptions::default(), vec![]).await;
    assert!(
        run.report.outcome == Outcome::Passed,
        "{:?}\n{}",
        run.report.failure,
        echo.log()
    );
    let answer = &run.raw("alice", "<200")[0];
    assert!(
        answer.contains("RTP/SAVP") && answer.contains("a=crypto:"),
        "{answer}"
    );
    let stats = run.media_stats().into_iter().next().expect("media_stats");
    assert_eq!(
        stats.srtp.as_ref().map(|s| s.rejected),
        Some(0),
        "{stats:?}"
    );
    let port: u16 = stats.local.rsplit(':').next().unwrap().parse().unwrap();
    let sent = capture.payloads_from(port);
    let rtp: Vec<&Vec<u8>> = sent.iter().filter(|p| p.len() == 12 + 160 + 10).collect();
    assert!(
        rtp.len() > 40,
        "{} SRTP packets of {}",
        rtp.len(),
        sent.len()
    );
    let payload: Vec<u8> = rtp.iter().flat_map(|p| p[12..172].to_vec()).collect();
    let bits = entropy(&payload);
    assert!(
        bits > 7.5,
        "the payload is not ciphertext: {bits:.2} bits per byte"
    );
    assert!(run.finished().leaks.is_clean());
}

/// Kamailio speaks TLS 1.2 only and requires a client certificate: alice, who has one
/// (`tls.cert`, `tls.key`), registers; bob, who has none, fails his set-up at once, saying the
/// handshake failed.
#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_with_kamailio_over_tls_1_2() {
    let pbx_id = transport::tls::TlsIdentity::self_signed(&["127.0.0.1".to_owned()]).expect("cert");
    let alice_id =
        transport::tls::TlsIdentity::self_signed(&["alice.lab".to_owned()]).expect("cert");
    let pbx = callflow_tests::lab::kamailio_mutual_tls(
        &pbx_id.cert_pem,
        &pbx_id.key_pem,
        &alice_id.cert_pem,
    );
    let dir = callflow_tests::scratch("kamailio-mtls");
    for (name, bytes) in [
        ("pbx.pem", &pbx_id.cert_pem),
        ("alice.pem", &alice_id.cert_pem),
        ("alice.key", &alice_id.key_pem),
    ] {
        std::fs::write(dir.path().join(name), bytes).expect("write");
    }
    let port = pbx.tls_port();
    let run_as = |dn: &str, pw: &str, tls: &str| {
        let text = format!(
            "version: 1\nname: mutual TLS\ninstances:\n  ua:\n    dn: \"{dn}\"\n    transport: tls\n    tls: {tls}\n    pbx: {{host: 127.0.0.1, port: {port}, password: {pw}}}\n    steps:\n      - command: Release\n        timeout: 1s\n        on_failure:\n          - command: Release\n            timeout: 1s\n"
        );
        let file = dir.path().join(format!("{dn}.yaml"));
        std::fs::write(&file, text).expect("write");
        scenario::load(&file).expect("valid scenario").0
    };
    let alice = run_as(
        "100",
        "alicepw",
        "{ca: pbx.pem, cert: alice.pem, key: alice.key}",
    );
    let run = run_scenario(&alice, orchestrator::RunOptions::default(), vec![]).await;
    run.assert_wire_contains("ua", &[">REGISTER", "<401", ">REGISTER", "<200"]);
    assert!(run.finished().leaks.is_clean());

    let bob = run_as("200", "bobpw", "{ca: pbx.pem}");
    let started = std::time::Instant::now();
    let run = run_scenario(&bob, orchestrator::RunOptions::default(), vec![]).await;
    let failure = run.report.failure.clone().expect("a set-up failure");
    assert!(
        failure
            .message
            .contains(&format!("TLS handshake with 127.0.0.1:{port} failed")),
        "{failure:?}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "at once"
    );
    assert!(run.finished().leaks.is_clean());
}

/// `--keylog`: a live capture of a TLS call between our UAs is decrypted by tshark with the key
/// log the run wrote, and reads as SIP.
#[tokio::test(flavor = "multi_thread")]
async fn the_key_log_decrypts_a_live_capture_of_a_tls_call() {
    let dir = callflow_tests::scratch("keylog");
    let keys = dir.path().join("keys.txt");
    let capture = LiveCapture::start(dir.path(), "tcp or (udp and port 9)");
    let s = call_over("tls", "");
    let opts = orchestrator::RunOptions {
        keylog: Some(keys.to_string_lossy().into_owned()),
        ..orchestrator::RunOptions::default()
    };
    let run = run_scenario(&s, opts, vec![]).await;
    run.assert_outcome(Outcome::Passed);
    let bob = run
        .events
        .iter()
        .find_map(|e| match &e.event {
            EventKind::UaStarted(u) if u.ua == "bob" => Some(u.local_addr.clone()),
            _ => None,
        })
        .expect("bob started");
    let port = bob.rsplit(':').next().expect("a port").to_owned();
    let keylog = format!("tls.keylog_file:{}", keys.display());
    let tls = format!("tcp.port=={port},tls");
    let sip = format!("tls.port=={port},sip");
    let seen = capture.read(&[
        "-o",
        &keylog,
        "-d",
        &tls,
        "-d",
        &sip,
        "-Y",
        "sip",
        "-T",
        "fields",
        "-e",
        "sip.CSeq.method",
        "-e",
        "sip.Status-Code",
    ]);
    // One line per frame; a frame carrying two messages lists both, comma-separated.
    let tokens: Vec<&str> = seen
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .collect();
    let count = |t: &str| tokens.iter().filter(|x| **x == t).count();
    // At least: loopback is shared with the tests running beside this one.
    assert!(
        count("INVITE") >= 4 && count("ACK") >= 1 && count("BYE") >= 2 && count("200") >= 2,
        "{seen}"
    );
    run.assert_clean();
}
