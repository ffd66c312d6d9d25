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

fn transports(run: &callflow_tests::Run) -> Vec<String> {
    run.events
        .iter()
        .filter_map(|e| match &e.event {
            EventKind::SipMessage(m) => Some(m.transport.clone()),
            _ => None,
        })
        .collect()
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
    let t = transports(&run);
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
    let t = transports(&run);
    assert!(t.iter().all(|t| t == "tls"), "{t:?}");
    let register = &run.raw("bob", ">REGISTER")[0];
    assert!(register.contains("Via: SIP/2.0/TLS"), "{register}");
    assert!(run.finished().leaks.is_clean());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_caller_reaches_a_udp_callee_through_kamailio() {
    let run = through_kamailio_over_tls(true).await;
    let on = |ua: &str| -> Vec<String> {
        run.events
            .iter()
            .filter_map(|e| match &e.event {
                EventKind::SipMessage(m) if m.ua == ua => Some(m.transport.clone()),
                _ => None,
            })
            .collect()
    };
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
        let t = transports(&run);
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
        let t = transports(&run);
        assert!(t.iter().all(|t| t == transport), "{t:?}");
        let register = &run.raw("bob", ">REGISTER")[0];
        assert!(
            register.contains(&format!("Via: SIP/2.0/{}", transport.to_uppercase())),
            "{register}"
        );
        assert!(run.finished().leaks.is_clean());
    }
}
