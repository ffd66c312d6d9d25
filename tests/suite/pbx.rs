//! Against a real PBX: Kamailio (registrar, record-routing proxy, digest auth) with baresip
//! behind it, all started by the tests on loopback ports of their own.

use callflow_tests::lab;
use callflow_tests::run_text;
use events::{CleanupPhase, Outcome};

fn two_users(
    port: u16,
    transport: &str,
    alice_pw: &str,
    alice_steps: &str,
    bob_steps: &str,
) -> String {
    format!(
        "version: 1\nname: lab\ninstances:\n  alice:\n    dn: \"100\"\n    transport: {transport}\n    pbx: {{ host: 127.0.0.1, port: {port}, password: {alice_pw} }}\n    steps:\n{alice_steps}  bob:\n    dn: \"200\"\n    transport: {transport}\n    pbx: {{ host: 127.0.0.1, port: {port}, password: bobpw }}\n    steps:\n{bob_steps}"
    )
}

const CALLER_HANGS_UP: (&str, &str) = (
    "      - command: MakeCall\n        target: \"200\"\n      - command: Release\n",
    "      - event: INCOMING\n      - command: Answer\n      - event: DISCONNECTED\n",
);
const CALLEE_HANGS_UP: (&str, &str) = (
    "      - command: MakeCall\n        target: \"200\"\n      - event: DISCONNECTED\n",
    "      - event: INCOMING\n      - command: Answer\n      - command: Release\n",
);

/// The caller's side of a call through the PBX: REGISTER is challenged (401) and retried with
/// digest, the INVITE is challenged (407), ACKed and retried.
const DIGEST_CALL: &[&str] = &[
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
];

/// alice (password `alice_pw`) calls bob through the PBX on `port` and hangs up.
async fn caller_hangs_up(port: u16, transport: &str, alice_pw: &str) -> callflow_tests::Run {
    let text = two_users(
        port,
        transport,
        alice_pw,
        CALLER_HANGS_UP.0,
        CALLER_HANGS_UP.1,
    );
    run_text(&text, "lab.yaml").await
}

#[tokio::test(flavor = "multi_thread")]
async fn register_with_digest_then_call_through_the_proxy_both_hang_up_orders() {
    let pbx = lab::kamailio(1);
    for (a, b) in [CALLER_HANGS_UP, CALLEE_HANGS_UP] {
        let run = run_text(&two_users(pbx.port, "udp", "alicepw", a, b), "lab.yaml").await;
        run.assert_outcome(Outcome::Passed);
        run.assert_wire_contains("alice", DIGEST_CALL);
        assert!(
            run.raw("alice", ">REGISTER")[1].contains("Authorization: Digest"),
            "digest on the retry"
        );
        assert!(run.raw("alice", ">INVITE")[1].contains("Proxy-Authorization: Digest"));
        // An answered challenge is authentication, not a failure: the ladder does not mark it.
        let ladder = report::Ladder::from_events(&run.events);
        assert!(
            ladder.arrows.iter().any(|a| a.status == Some(407))
                && !ladder.arrows.iter().any(|a| a.is_failure()),
            "{}",
            ladder.to_text(120)
        );
        assert!(!ladder.to_mermaid().contains("--x"));
        // qop is a token in credentials (RFC 7616 §3.4), quoted only in the challenge.
        for creds in [
            &run.raw("alice", ">REGISTER")[1],
            &run.raw("alice", ">INVITE")[1],
        ] {
            assert!(
                creds.contains("qop=auth,") && !creds.contains("qop=\"auth\""),
                "{creds}"
            );
        }
        // The proxy record-routes: in-dialog requests carry its Route.
        let bye = run
            .raw("alice", ">BYE")
            .into_iter()
            .chain(run.raw("bob", ">BYE"))
            .next()
            .expect("a BYE");
        assert!(
            bye.contains("Route: <sip:127.0.0.1:"),
            "BYE follows the route set: {bye}"
        );
        // Unregister is a cleanup step, before the transports close.
        let phases: Vec<CleanupPhase> = run
            .cleanup()
            .into_iter()
            .filter(|(_, done)| *done)
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            phases,
            [
                CleanupPhase::HangupAll,
                CleanupPhase::CloseAll,
                CleanupPhase::Unregister,
                CleanupPhase::TeardownUas
            ]
        );
        assert!(
            run.raw("alice", ">REGISTER")
                .iter()
                .any(|r| r.contains("Expires: 0") || r.contains("expires=0")),
            "unregistered"
        );
        assert!(run.finished().leaks.is_clean());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_fails_the_set_up_cleanly() {
    let pbx = lab::kamailio(1);
    let run = caller_hangs_up(pbx.port, "udp", "wrong").await;
    run.assert_outcome(Outcome::Failed);
    assert!(run.report.setup_error);
    let msg = run.report.failure.clone().expect("failure").message;
    assert!(
        msg.starts_with(&format!(
            "registration of alice at sip:127.0.0.1:{} failed: 401",
            pbx.port
        )),
        "{msg}"
    );
    assert!(run.finished().leaks.is_clean());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_on_a_call_without_registration_fails_its_makecall() {
    // The rule (docs/scenario-format.md, "A PBX"): a refused REGISTER is a set-up error (exit
    // 3, nothing ran); credentials refused on a call fail the node that placed it (exit 1).
    let pbx = lab::kamailio(1);
    let text = format!(
        "version: 1\nname: lab\ninstances:\n  alice:\n    dn: \"100\"\n    register: false\n    pbx: {{ host: 127.0.0.1, port: {}, password: wrong }}\n    steps:\n      - command: MakeCall\n        target: \"200\"\n        timeout: 5s\n",
        pbx.port
    );
    let run = run_text(&text, "wrong-call-password.yaml").await;
    run.assert_outcome(Outcome::Failed);
    assert!(!run.report.setup_error);
    let failure = run.report.failure.clone().expect("failure");
    assert_eq!(failure.node.as_deref(), Some("alice.1"));
    assert!(
        failure.message.contains("got 407") || failure.message.contains("got 401"),
        "{}",
        failure.message
    );
    assert!(run.finished().leaks.is_clean());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_call_over_tcp() {
    let pbx = lab::kamailio(1);
    let run = caller_hangs_up(pbx.port, "tcp", "alicepw").await;
    run.assert_outcome(Outcome::Passed);
    assert!(
        run.raw("alice", ">INVITE")[0].contains("SIP/2.0/TCP"),
        "Via names TCP"
    );
    assert!(
        run.raw("alice", ">REGISTER")[0]
            .to_ascii_lowercase()
            .contains("contact: <sip:100@127.0.0.1:")
            && run.raw("alice", ">REGISTER")[0]
                .to_ascii_lowercase()
                .contains(";transport=tcp>"),
        "Contact names TCP"
    );
    assert!(run.finished().leaks.is_clean());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_echo_extension_returns_our_media() {
    let echo = lab::baresip_echo();
    let pbx = lab::kamailio(echo.port);
    let text = format!(
        "version: 1\ninstances:\n  alice:\n    dn: \"100\"\n    pbx: {{ host: 127.0.0.1, port: {}, password: alicepw }}\n    steps:\n      - command: MakeCall\n        target: \"600\"\n      - command: PlaySignature\n        duration: 1s\n      - event: HEARD\n        from: alice\n        timeout: 3s\n      - command: CheckMedia\n        max_loss: 1\n      - command: Release\n",
        pbx.port
    );
    let run = run_text(&text, "echo.yaml").await;
    run.assert_outcome(Outcome::Passed);
    assert!(run.finished().leaks.is_clean());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_echo_extension_returns_our_media_over_g722_and_opus() {
    let echo = lab::baresip_echo();
    let pbx = lab::kamailio(echo.port);
    for (codec, name) in [("G722", "G722"), ("OPUS", "opus")] {
        let text = format!(
            "version: 1\ninstances:\n  alice:\n    dn: \"100\"\n    codecs: [{codec}]\n    pbx: {{ host: 127.0.0.1, port: {}, password: alicepw }}\n    steps:\n      - command: MakeCall\n        target: \"600\"\n      - command: PlaySignature\n        duration: 1s\n      - event: HEARD\n        from: alice\n        timeout: 3s\n      - command: CheckMedia\n        max_loss: 1\n      - command: Release\n",
            pbx.port
        );
        let run = run_text(&text, "echo-wideband.yaml").await;
        run.assert_outcome(Outcome::Passed);
        let codecs: Vec<String> = run
            .events
            .iter()
            .filter_map(|e| match &e.event {
                events::EventKind::MediaStats(m) => Some(m.codec.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(codecs, [name], "{codec}");
        assert!(run.finished().leaks.is_clean());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_to_a_registered_baresip_phone() {
    let pbx = lab::kamailio(1);
    let _carol = lab::baresip_phone(pbx.port, "300", "carolpw");
    let text = format!(
        "version: 1\ninstances:\n  alice:\n    dn: \"100\"\n    pbx: {{ host: 127.0.0.1, port: {}, password: alicepw }}\n    steps:\n      - command: MakeCall\n        target: \"300\"\n      - event: MEDIA\n        timeout: 3s\n      - command: Release\n",
        pbx.port
    );
    let run = run_text(&text, "phone.yaml").await;
    run.assert_outcome(Outcome::Passed);
    assert!(run.finished().leaks.is_clean());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blind_transfer_through_the_proxy() {
    let pbx = lab::kamailio(1);
    let p = pbx.port;
    let user = |name: &str, dn: &str, pw: &str, steps: &str| {
        format!(
            "  {name}:\n    dn: \"{dn}\"\n    pbx: {{ host: 127.0.0.1, port: {p}, password: {pw} }}\n    steps:\n{steps}"
        )
    };
    let text = format!(
        "version: 1\ninstances:\n{}{}{}",
        user(
            "alice",
            "100",
            "alicepw",
            "      - command: MakeCall\n        target: \"200\"\n      - event: TRANSFERRED\n      - command: Release\n"
        ),
        user(
            "bob",
            "200",
            "bobpw",
            "      - event: INCOMING\n      - command: Answer\n      - command: BlindTransfer\n        target_user: \"300\"\n"
        ),
        user(
            "carol",
            "300",
            "carolpw",
            "      - event: INCOMING\n      - command: Answer\n      - event: DISCONNECTED\n"
        ),
    );
    let run = run_text(&text, "transfer.yaml").await;
    run.assert_outcome(Outcome::Passed);
    let refer = &run.raw("bob", ">REFER")[0];
    assert!(
        refer.contains(&format!("Refer-To: <sip:300@127.0.0.1:{p}>")),
        "{refer}"
    );
    assert!(
        refer.contains("Route: <sip:127.0.0.1:"),
        "REFER follows the route set"
    );
    assert!(run.finished().leaks.is_clean());
}

/// Requests a stop once the run logs `needle`.
struct StopOnLog {
    needle: &'static str,
    stop: tokio_util::sync::CancellationToken,
}

impl orchestrator::EventSink for StopOnLog {
    fn event(&self, e: &events::Event) {
        if let events::EventKind::Log(l) = &e.event
            && l.message.contains(self.needle)
        {
            self.stop.cancel();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn register_only_stays_up_until_stopped_then_unregisters() {
    let pbx = lab::kamailio(1);
    let text = format!(
        "version: 1\ninstances:\n  alice:\n    dn: \"100\"\n    pbx: {{ host: 127.0.0.1, port: {}, password: alicepw }}\n",
        pbx.port
    );
    let s = scenario::parse_str(&text, "register-only.yaml").expect("valid");
    let stop = tokio_util::sync::CancellationToken::new();
    let sink = std::sync::Arc::new(StopOnLog {
        needle: "register-only",
        stop: stop.clone(),
    });
    let opts = orchestrator::RunOptions {
        stop,
        ..orchestrator::RunOptions::default()
    };
    let run = callflow_tests::run_scenario(&s, opts, vec![sink]).await;
    run.assert_outcome(Outcome::Stopped);
    let registers = run.raw("alice", ">REGISTER");
    assert!(
        registers.len() >= 3,
        "register (challenged, retried), then unregister: {}",
        registers.len()
    );
    assert!(
        registers.last().unwrap().contains("Expires: 0")
            || registers.last().unwrap().contains("expires=0")
    );
    assert!(run.finished().leaks.is_clean());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_playback_extension_plays_its_file() {
    let play = lab::baresip_playback(&callflow_tests::fixture("media/tone-1khz.wav"));
    let pbx = lab::kamailio_with(1, play.port);
    let text = format!(
        "version: 1\ninstances:\n  alice:\n    dn: \"100\"\n    pbx: {{ host: 127.0.0.1, port: {}, password: alicepw }}\n    steps:\n      - command: MakeCall\n        target: \"700\"\n      - event: TONE\n        frequency: 1000\n        timeout: 3s\n      - command: Release\n",
        pbx.port
    );
    let run = run_text(&text, "playback.yaml").await;
    run.assert_outcome(Outcome::Passed);
    assert!(run.finished().leaks.is_clean());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scenario_starts_its_own_pbx_as_a_sidecar_and_stops_it() {
    let port = lab::free_port();
    let dir = std::env::temp_dir().join(format!("callflow-sidecar-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("kamailio.cfg");
    let template =
        std::fs::read_to_string(callflow_tests::fixture("../tests/lab/kamailio.cfg")).unwrap();
    std::fs::write(
        &cfg,
        template
            .replace("@PORT@", &port.to_string())
            .replace("@ECHO_PORT@", "1")
            .replace("@PLAY_PORT@", "1")
            .replace("@ALGORITHM@", "MD5"),
    )
    .unwrap();
    let text = format!(
        "version: 1\nsidecars:\n  - name: pbx\n    command: [kamailio, -f, {cfg}, -DD, -E, -n, \"1\", -m, \"64\", -M, \"8\", -Y, {dir}]\n    health:\n      options: 127.0.0.1:{port}\n    timeout: 10s\n{}",
        &two_users(port, "udp", "alicepw", CALLER_HANGS_UP.0, CALLER_HANGS_UP.1)
            ["version: 1\nname: lab\n".len()..],
        cfg = cfg.display(),
        dir = dir.display(),
    );
    let run = run_text(&text, "with-sidecar.yaml").await;
    run.assert_outcome(Outcome::Passed);
    let last = run.cleanup().last().copied();
    assert_eq!(
        last,
        Some((CleanupPhase::StopSidecars, true)),
        "sidecars stop after the SIP cleanup"
    );
    let left = std::process::Command::new("pgrep")
        .args(["-f", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "kamailio left behind: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sidecar_that_dies_fails_the_set_up() {
    let text = "version: 1\nsidecars:\n  - name: broken\n    command: [\"false\"]\n    health:\n      log: never printed\n    timeout: 5s\ninstances:\n  alice:\n    dn: \"100\"\n";
    let run = run_text(text, "broken-sidecar.yaml").await;
    run.assert_outcome(Outcome::Failed);
    assert!(run.report.setup_error);
    let msg = run.report.failure.as_ref().unwrap().message.clone();
    assert!(
        msg.starts_with("sidecar `broken` exited (exit status: 1) before it was ready"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sha256_digest() {
    let pbx = lab::kamailio_full(1, 1, "SHA-256");
    let run = caller_hangs_up(pbx.port, "udp", "alicepw").await;
    run.assert_outcome(Outcome::Passed);
    assert!(
        run.raw("alice", "<401")[0].contains("algorithm=SHA-256"),
        "challenged with SHA-256"
    );
    assert!(
        run.raw("alice", ">REGISTER")[1].contains("algorithm=SHA-256"),
        "answered with SHA-256"
    );
    assert!(run.finished().leaks.is_clean());
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_name_a_pbx_profile_from_the_scenario_folder() {
    let pbx = lab::kamailio(1);
    let dir = std::env::temp_dir().join(format!(
        "callflow-profiles-{}-{}",
        std::process::id(),
        pbx.port
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(scenario::PROFILES_FILE),
        format!(
            "profiles:\n  lab:\n    host: 127.0.0.1\n    port: {}\n    transport: udp\n",
            pbx.port
        ),
    )
    .unwrap();
    let text = format!(
        "name: profiles\ninstances:\n  alice:\n    dn: \"100\"\n    pbx: {{ profile: lab, password: alicepw }}\n    steps:\n{}  bob:\n    dn: \"200\"\n    pbx: {{ profile: lab, password: bobpw }}\n    steps:\n{}",
        CALLER_HANGS_UP.0, CALLER_HANGS_UP.1
    );
    let path = dir.join("lab.yaml");
    std::fs::write(&path, text).unwrap();
    let (s, _) = scenario::load(&path).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        s.instances[0].pbx.as_ref().unwrap().profile.as_deref(),
        Some("lab")
    );
    let run = callflow_tests::run_scenario(&s, Default::default(), vec![]).await;
    run.assert_outcome(Outcome::Passed);
    run.assert_wire_contains("alice", DIGEST_CALL);
    assert!(run.raw("bob", ">REGISTER")[1].contains("Authorization: Digest"));
    assert!(run.finished().leaks.is_clean());
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_outside_any_call_goes_through_the_proxy_with_digest() {
    let pbx = lab::kamailio(1);
    let text = two_users(
        pbx.port,
        "udp",
        "alicepw",
        "      - command: SendMessage\n        target: \"200\"\n        content_type: text/plain\n        body: voicemail for you\n",
        "      - event: REQUEST\n        call_id: inbox\n        method: MESSAGE\n        check:\n          - header: Content-Type\n            equals: text/plain\n",
    );
    let run = run_text(&text, "message.yaml").await;
    run.assert_outcome(Outcome::Passed);
    // Challenged by the proxy (407) and sent again with credentials, then relayed to bob.
    run.assert_wire_contains("alice", &[">MESSAGE", "<407", ">MESSAGE", "<200"]);
    run.assert_wire_contains("bob", &["<MESSAGE", ">200"]);
    let got = &run.raw("bob", "<MESSAGE")[0];
    assert!(got.ends_with("voicemail for you"), "{got}");
    assert!(run.finished().leaks.is_clean());
}
