//! callflow against an independent SIP implementation: sipp (Debian `sip-tester`), as callee
//! and as caller.

use callflow_tests::{Run, free_udp_port, run_text, start_one_ua};
use events::{EventKind, Outcome};
use std::process::Child;

/// A sipp process that is killed if the test ends before it does.
struct Sipp(Option<Child>);

impl Sipp {
    fn spawn(args: &[&str]) -> Self {
        Self::spawn_in(None, args)
    }

    /// sipp working in `dir` (where a scenario's `play_pcap_audio` files are found).
    fn spawn_in(dir: Option<&std::path::Path>, args: &[&str]) -> Self {
        Self(Some(callflow_tests::spawn_sipp(dir, args, "20s")))
    }

    /// Waits for sipp to exit (bounded by its own -timeout) and returns its exit code and stderr.
    async fn finish(mut self) -> (i32, String) {
        let child = self.0.take().expect("child");
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .expect("join")
            .expect("wait");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// sipp's built-in callee on `port`, for `calls` calls.
fn sipp_uas(port: u16, calls: u32) -> Sipp {
    Sipp::spawn(&[
        "-sn",
        "uas",
        "-i",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-m",
        &calls.to_string(),
    ])
}

/// sipp as the callee of one call, playing `fixtures/sipp/<file>` on `port` (`extra`: more
/// arguments, such as `-mp` for its media port).
fn sipp_uas_file(file: &str, port: u16, extra: &[&str]) -> Sipp {
    let (scenario, port) = (sipp_file(file), port.to_string());
    let mut args = vec!["-sf", &scenario, "-i", "127.0.0.1", "-p", &port, "-m", "1"];
    args.extend_from_slice(extra);
    Sipp::spawn(&args)
}

/// A socket where a peer's new offer or answer moves our RTP: its port, and the payload type of
/// the first packet that reaches it (within 10 s).
fn rtp_listener() -> (String, tokio::task::JoinHandle<u8>) {
    let moved = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    moved
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let port = moved.local_addr().expect("addr").port().to_string();
    let heard = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 1500];
        let n = moved
            .recv(&mut buf)
            .expect("RTP at the new address within 10 s");
        assert!(n > 12, "an RTP packet");
        buf[1] & 0x7f
    });
    (port, heard)
}

/// sipp as the callee of one call on `fixtures/sipp/<file>`, with a media port of its own; and
/// the port it listens on.
fn sipp_callee(file: &str) -> (Sipp, u16) {
    let port = free_udp_port();
    let sipp = sipp_uas_file(file, port, &["-mp", &free_udp_port().to_string()]);
    (sipp, port)
}

#[tokio::test]
async fn callflow_calls_sipp_uas() {
    let port = free_udp_port();
    let sipp = sipp_uas(port, 1);
    // No wait for sipp to be ready: if the INVITE comes first, UDP retransmission covers it.
    let text = format!(
        "version: 1\nname: to sipp\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - command: MakeCall\n        target: sip:service@127.0.0.1:{port}\n      - event: RINGING\n      - command: Release\n"
    );
    let run = run_text(&text, "to-sipp.yaml").await;
    run.assert_outcome(Outcome::Passed);
    assert_eq!(
        run.wire("alice"),
        [">INVITE", "<180", "<200", ">ACK", ">BYE", "<200"]
    );
    run.assert_clean();
    let (code, err) = sipp.finish().await;
    assert_eq!(code, 0, "sipp uas failed: {err}");
}

#[tokio::test]
async fn sipp_uac_calls_callflow() {
    let text = "version: 1\nname: from sipp\ninstances:\n  bob:\n    dn: \"200\"\n    steps:\n      - event: INCOMING\n        timeout: 20s\n      - command: Answer\n      - event: DISCONNECTED\n        timeout: 20s\n";
    let s = scenario::parse_str(text, "from-sipp.yaml").expect("valid");
    let (run, bob) = start_one_ua(s).await;
    let sipp_port = free_udp_port().to_string();
    let sipp = Sipp::spawn(&[
        "-sn",
        "uac",
        &bob,
        "-i",
        "127.0.0.1",
        "-p",
        &sipp_port,
        "-m",
        "1",
        "-s",
        "200",
    ]);
    let run = run.await.expect("run");
    run.assert_outcome(Outcome::Passed);
    assert_eq!(
        run.wire("bob"),
        ["<INVITE", ">100", ">180", ">200", "<ACK", "<BYE", ">200"]
    );
    run.assert_clean();
    let (code, err) = sipp.finish().await;
    assert_eq!(code, 0, "sipp uac failed: {err}");
}

/// sipp as a caller playing `fixtures/sipp/<file>` to service `200`, with a media port of its own.
fn caller_args(file: &str) -> Vec<String> {
    vec![
        "-sf".into(),
        sipp_file(file),
        "-s".into(),
        "200".into(),
        "-mp".into(),
        free_udp_port().to_string(),
    ]
}

fn sipp_file(name: &str) -> String {
    callflow_tests::fixture(&format!("sipp/{name}"))
        .display()
        .to_string()
}

/// Runs `text` (one UA, on a free port of its own), starts a sipp caller at that UA
/// once it listens, and returns the run and sipp's exit code and stderr.
async fn with_sipp_caller(text: &str, sipp_args: Vec<String>) -> (Run, i32, String) {
    with_sipp_caller_in(None, text, sipp_args).await
}

/// [`with_sipp_caller`], with sipp working in `dir`.
async fn with_sipp_caller_in(
    dir: Option<&std::path::Path>,
    text: &str,
    sipp_args: Vec<String>,
) -> (Run, i32, String) {
    let s = scenario::parse_str(text, "with-sipp.yaml").expect("valid");
    let (run, ua) = start_one_ua(s).await;
    let own = free_udp_port().to_string();
    let mut args: Vec<String> = vec![
        ua,
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        own,
        "-m".into(),
        "1".into(),
    ];
    args.extend(sipp_args);
    let sipp = Sipp::spawn_in(dir, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let run = run.await.expect("run");
    let (code, err) = sipp.finish().await;
    (run, code, err)
}

const ANSWER_AND_WAIT: &str = "version: 1\nname: callee\ninstances:\n  bob:\n    dn: \"200\"\n    steps:\n      - event: INCOMING\n        timeout: 20s\n      - command: Answer\n      - event: DISCONNECTED\n        timeout: 20s\n";

#[tokio::test]
async fn a_180_after_the_200_and_a_retransmitted_200_do_not_break_a_call() {
    let port = free_udp_port();
    let sipp = sipp_uas_file("uas-late-180-double-200.xml", port, &[]);
    let text = format!(
        // The call lasts 300 ms (a call duration, like sipp's -d): sipp aborts on any message
        // that arrives while it is still sending its late 180 and repeated 200.
        "version: 1\nname: odd callee\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - command: MakeCall\n        target: sip:service@127.0.0.1:{port}\n      - event: TIMEOUT\n        timeout: 300ms\n      - command: Release\n"
    );
    let run = run_text(&text, "odd-callee.yaml").await;
    run.assert_outcome(Outcome::Passed);
    run.assert_wire_contains("alice", &[">INVITE", "<200", ">ACK", ">BYE", "<200"]);
    assert!(
        run.wire("alice").contains(&"<180".to_owned()),
        "the late 180 was received: {:?}",
        run.wire("alice")
    );
    run.assert_clean();
    let (code, err) = sipp.finish().await;
    assert_eq!(code, 0, "sipp: {err}");
}

#[tokio::test]
async fn a_bye_before_the_ack_still_answers_the_call() {
    let args = vec![
        "-sf".into(),
        sipp_file("uac-bye-before-ack.xml"),
        "-s".into(),
        "200".into(),
    ];
    let (run, code, err) = with_sipp_caller(ANSWER_AND_WAIT, args).await;
    run.assert_outcome(Outcome::Passed);
    run.assert_wire_contains("bob", &["<INVITE", ">200", "<BYE", ">200"]);
    run.assert_clean();
    assert_eq!(code, 0, "sipp: {err}");
}

#[tokio::test]
async fn an_answer_whose_ack_never_comes_names_the_200_that_went_unacknowledged() {
    let args = vec![
        "-sf".into(),
        sipp_file("uac-no-ack.xml"),
        "-s".into(),
        "200".into(),
    ];
    let text = "version: 1\nname: callee\ninstances:\n  bob:\n    dn: \"200\"\n    steps:\n      - event: INCOMING\n        timeout: 20s\n      - command: Answer\n        timeout: 2s\n";
    let (run, code, err) = with_sipp_caller(text, args).await;
    run.assert_outcome(Outcome::Failed);
    let reason = run.node("bob.2").reason.clone().unwrap_or_default();
    assert!(
        reason.contains("expected an ACK to our 200 OK")
            && reason.contains("on the wire: 200 to the INVITE sent"),
        "the failure names the unacknowledged 200: {reason}"
    );
    // rsipstack retransmits the 200 (RFC 3261 §13.3.1.4) until it gives up.
    assert!(run.raw("bob", ">200").len() >= 2, "{:?}", run.wire("bob"));
    run.assert_clean();
    assert_eq!(code, 0, "sipp: {err}");
}

/// A sink that kills a process (and waits for it to be gone) when a node passes.
struct KillWhenPassed {
    node: &'static str,
    child: std::sync::Mutex<Option<Child>>,
}

impl orchestrator::EventSink for KillWhenPassed {
    fn event(&self, event: &events::Event) {
        if let EventKind::NodeState(n) = &event.event
            && n.node == self.node
            && n.to == events::NodeState::Passed
            && let Some(mut c) = self.child.lock().unwrap().take()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test]
async fn a_peer_killed_mid_call_fails_the_run_within_its_bounds_naming_the_unanswered_bye() {
    let port = free_udp_port();
    let mut sipp = sipp_uas(port, 1);
    let child = sipp.0.take();
    let text = format!(
        "version: 1\nname: peer dies\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - command: MakeCall\n        target: sip:service@127.0.0.1:{port}\n      - event: TIMEOUT\n        timeout: 1s\n      - command: Release\n        timeout: 2s\n"
    );
    // Sinks run on the event bus's own thread, a moment after the event: the scenario's 1 s
    // pause lets the kill land before the Release.
    let s = scenario::parse_str(&text, "peer-dies.yaml").expect("valid");
    let killer = std::sync::Arc::new(KillWhenPassed {
        node: "alice.1",
        child: std::sync::Mutex::new(child),
    });
    let run =
        callflow_tests::run_scenario(&s, orchestrator::RunOptions::default(), vec![killer]).await;
    run.assert_outcome(Outcome::Failed);
    let failure = run.finished().failure.clone().expect("a failure").message;
    assert!(
        failure.contains("alice.3 (Release)")
            && failure.contains("on the wire: BYE sent")
            && failure.contains(&format!("to 127.0.0.1:{port}, no response came back")),
        "the failure names the BYE nobody answered: {failure}"
    );
    // The run ends at the Release's own bound: cleanup waits no second time for that BYE.
    let cleanup = run.events.iter().find_map(|e| match &e.event {
        EventKind::Cleanup(c) if c.phase == events::CleanupPhase::HangupAll && c.finished => {
            Some(c.clone())
        }
        _ => None,
    });
    let cleanup = cleanup.expect("a hang-up step");
    assert!(
        cleanup
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("1 already under way"),
        "{cleanup:?}"
    );
    let limit = orchestrator::RunOptions::default().step_limit;
    assert!(
        run.finished().duration_ms < (3_000.0 + limit.as_millis() as f64),
        "ended within the pause, the Release timeout and one cleanup step: {} ms",
        run.finished().duration_ms
    );
    assert!(run.finished().leaks.is_clean());
}

#[tokio::test]
async fn a_late_offer_gets_our_offer_in_the_200_and_media_from_the_answer_in_the_ack() {
    let args = caller_args("uac-late-offer.xml");
    let (run, code, err) = with_sipp_caller(ANSWER_AND_WAIT, args).await;
    assert_eq!(code, 0, "sipp (which checks the 200 offers audio): {err}");
    run.assert_outcome(Outcome::Passed);
    run.assert_wire_contains("bob", &["<INVITE", ">200", "<ACK", "<BYE", ">200"]);
    let invite = &run.raw("bob", "<INVITE")[0];
    assert!(
        invite.ends_with("\r\n\r\n"),
        "no SDP in the INVITE: {invite}"
    );
    let ok = &run.raw("bob", ">200")[0];
    assert!(
        ok.contains("m=audio ") && ok.contains("a=sendrecv"),
        "our offer: {ok}"
    );
    // The media follows the answer in the ACK (sipp's media port), not the INVITE (none).
    let ack = &run.raw("bob", "<ACK")[0];
    let port = ack
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split_whitespace().next())
        .expect("an answer in the ACK")
        .to_owned();
    assert!(
        run.events.iter().any(|e| matches!(&e.event, EventKind::Log(l)
            if l.message.starts_with("media: PCMU to ") && l.message.ends_with(&format!(":{port}")))),
        "media to the ACK's address"
    );
    run.assert_clean();
}

#[tokio::test]
async fn the_first_sdp_is_the_answer_and_a_different_one_in_the_200_is_reported() {
    let port = free_udp_port();
    let media = free_udp_port();
    let sipp = sipp_uas_file(
        "uas-183-then-other-200.xml",
        port,
        &["-mp", &media.to_string()],
    );
    let text = format!(
        "version: 1\nname: two answers\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - command: MakeCall\n        target: sip:service@127.0.0.1:{port}\n      - command: Release\n"
    );
    let run = run_text(&text, "two-answers.yaml").await;
    run.assert_outcome(Outcome::Passed);
    let logs: Vec<&str> = run
        .events
        .iter()
        .filter_map(|e| match &e.event {
            EventKind::Log(l) => Some(l.message.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        logs.iter().any(|l| l.starts_with(
            "the 200's SDP differs from the one a provisional response brought first"
        )),
        "{logs:?}"
    );
    // The media goes where the 183 said, not the 200.
    let first = run.raw("alice", "<183")[0]
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split_whitespace().next())
        .expect("SDP in the 183")
        .to_owned();
    assert!(
        logs.iter()
            .any(|l| l.starts_with("media: PCMU to ") && l.ends_with(&format!(":{first}"))),
        "{logs:?}"
    );
    run.assert_clean();
    let (code, err) = sipp.finish().await;
    assert_eq!(code, 0, "sipp: {err}");
}

#[tokio::test]
async fn a_redirect_not_followed_fails_the_call_naming_where_it_points() {
    let port = free_udp_port();
    let sipp = sipp_uas_file("uas-302.xml", port, &["-key", "target_port", "5099"]);
    let text = format!(
        "version: 1\nname: redirected\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - command: MakeCall\n        target: sip:service@127.0.0.1:{port}\n        redirects: 0\n"
    );
    let run = run_text(&text, "redirected.yaml").await;
    run.assert_outcome(Outcome::Failed);
    let message = run.finished().failure.clone().expect("a failure").message;
    assert!(
        message.contains("got 302 Moved Temporarily")
            && message.contains("it redirects to sip:elsewhere@127.0.0.1:5099 (`redirects: 0`"),
        "{message}"
    );
    assert_eq!(
        run.finished().failure.as_ref().map(|f| f.kind),
        Some(events::FailureKind::Status)
    );
    run.assert_wire_contains("alice", &[">INVITE", "<302", ">ACK"]);
    run.assert_clean();
    let (code, err) = sipp.finish().await;
    assert_eq!(code, 0, "sipp: {err}");
}

#[tokio::test]
async fn a_redirect_is_followed_to_the_contact_it_names() {
    let (port, elsewhere) = (free_udp_port(), free_udp_port());
    let redirector = sipp_uas_file(
        "uas-302.xml",
        port,
        &["-key", "target_port", &elsewhere.to_string()],
    );
    let callee = sipp_uas(elsewhere, 1);
    let text = format!(
        "version: 1\nname: redirected\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - command: MakeCall\n        target: sip:service@127.0.0.1:{port}\n      - command: Release\n"
    );
    let run = run_text(&text, "followed.yaml").await;
    run.assert_outcome(Outcome::Passed);
    run.assert_wire_contains(
        "alice",
        &[
            ">INVITE", "<302", ">ACK", ">INVITE", "<200", ">ACK", ">BYE", "<200",
        ],
    );
    let invites = run.raw("alice", ">INVITE");
    assert!(
        invites
            .iter()
            .any(|m| m.starts_with(&format!("INVITE sip:elsewhere@127.0.0.1:{elsewhere} "))),
        "an INVITE goes to the Contact: {invites:?}"
    );
    run.assert_clean();
    for (name, sipp) in [("redirector", redirector), ("callee", callee)] {
        let (code, err) = sipp.finish().await;
        assert_eq!(code, 0, "sipp {name}: {err}");
    }
}

#[tokio::test]
async fn an_unexpected_in_dialog_request_gets_405_and_is_logged() {
    let args = vec![
        "-sf".into(),
        sipp_file("uac-unexpected-request.xml"),
        "-s".into(),
        "200".into(),
    ];
    let (run, code, err) = with_sipp_caller(ANSWER_AND_WAIT, args).await;
    run.assert_outcome(Outcome::Passed);
    run.assert_wire_contains("bob", &["<SUBSCRIBE", ">405", "<BYE", ">200"]);
    assert!(run.events.iter().any(|e| matches!(&e.event, EventKind::Log(l) if l.message == "SUBSCRIBE in a call is not supported: 405")));
    run.assert_clean();
    assert_eq!(code, 0, "sipp: {err}");
}

#[tokio::test]
async fn blind_transfer_to_a_sipp_target() {
    let port = free_udp_port();
    let target = sipp_uas(port, 1);
    let text = std::fs::read_to_string(callflow_tests::fixture("blind-transfer.yaml"))
        .expect("fixture")
        .replace(
            "target_user: \"300\"         # carol's DN: her address is known at run time",
            &format!("target_user: service\n        target_host: 127.0.0.1:{port}"),
        );
    // Carol is sipp now: drop her from the scenario.
    let text = text[..text.find("  carol:").expect("carol")].to_owned();
    let run = run_text(&text, "blind-transfer-to-sipp.yaml").await;
    run.assert_outcome(Outcome::Passed);
    let refer = &run.raw("bob", ">REFER")[0];
    assert!(
        refer.contains(&format!("Refer-To: <sip:service@127.0.0.1:{port}>")),
        "{refer}"
    );
    run.assert_wire_contains(
        "alice",
        &["<REFER", ">202", ">INVITE", "<200", ">ACK", ">BYE", "<200"],
    );
    run.assert_clean();
    let (code, err) = target.finish().await;
    assert_eq!(code, 0, "sipp target: {err}");
}

#[tokio::test]
async fn attended_transfer_to_a_sipp_target() {
    let port = free_udp_port();
    // Two calls reach the target: bob's consultation, then alice's INVITE with Replaces.
    let target = sipp_uas(port, 2);
    let text = format!(
        "version: 1\nname: attended to sipp\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - command: MakeCall\n        target: bob\n      - event: HELD\n      - event: TRANSFERRED\n        timeout: 15s\n      - command: Release\n  bob:\n    dn: \"200\"\n    steps:\n      - event: INCOMING\n      - command: Answer\n      - command: Hold\n      - command: MakeCall\n        call_id: consult\n        target: sip:service@127.0.0.1:{port}\n      - command: MuteTransfer\n        primary_call_id: call-1\n        consult_call_id: consult\n"
    );
    let run = run_text(&text, "attended-to-sipp.yaml").await;
    run.assert_outcome(Outcome::Passed);
    let invite = run
        .raw("alice", ">INVITE")
        .into_iter()
        .find(|i| i.contains("Replaces:"))
        .expect("alice's INVITE with Replaces");
    let request_line = invite.lines().next().unwrap_or_default();
    assert!(
        request_line.contains(&format!("127.0.0.1:{port}")),
        "alice calls the target's Contact: {request_line}"
    );
    run.assert_wire_contains(
        "bob",
        &[">REFER", "<202", "<NOTIFY", ">200", ">BYE", "<200"],
    );
    run.assert_clean();
    let (code, err) = target.finish().await;
    assert_eq!(code, 0, "sipp target: {err}");
}

#[tokio::test]
async fn callflow_follows_a_refer_from_sipp() {
    // sipp calls alice and transfers her to a second sipp.
    let port = free_udp_port();
    let target = sipp_uas(port, 1);
    let text = "version: 1\nname: transferee\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - event: INCOMING\n        timeout: 20s\n      - command: Answer\n      - event: TRANSFERRED\n        timeout: 20s\n      - command: Release\n";
    let args = vec![
        "-sf".into(),
        sipp_file("uac-refer-transferor.xml"),
        "-s".into(),
        "100".into(),
        "-key".into(),
        "target".into(),
        format!("sip:service@127.0.0.1:{port}"),
    ];
    let (run, code, err) = with_sipp_caller(text, args).await;
    run.assert_outcome(Outcome::Passed);
    run.assert_wire_contains(
        "alice",
        &[
            "<INVITE", ">200", "<ACK", "<REFER", ">202", ">INVITE", "<200", ">ACK", ">BYE", "<200",
        ],
    );
    let notifies = run.raw("alice", ">NOTIFY");
    assert!(
        notifies.iter().any(|n| n.contains("SIP/2.0 100 Trying"))
            && notifies.iter().any(|n| n.contains("SIP/2.0 200 OK")),
        "{notifies:?}"
    );
    run.assert_clean();
    assert_eq!(code, 0, "sipp transferor: {err}");
    let (code, err) = target.finish().await;
    assert_eq!(code, 0, "sipp target: {err}");
}

#[tokio::test]
async fn a_reinvite_that_moves_the_media_moves_it_and_one_we_cannot_take_gets_488() {
    // sipp's re-offer points the media at this socket, PCMA only.
    let (moved_port, heard) = rtp_listener();
    let args = [
        caller_args("uac-reinvite-moves-media.xml"),
        vec!["-key".into(), "moved_port".into(), moved_port.clone()],
    ]
    .concat();
    let (run, code, err) = with_sipp_caller(ANSWER_AND_WAIT, args).await;
    assert_eq!(
        code, 0,
        "sipp (which checks the 488, and PCMA in the 200): {err}"
    );
    run.assert_outcome(Outcome::Passed);
    run.assert_wire_contains(
        "bob",
        &[
            "<INVITE", ">200", "<ACK", "<INVITE", ">488", "<ACK", "<INVITE", ">200", "<ACK",
            "<BYE", ">200",
        ],
    );
    assert_eq!(heard.await.expect("join"), 8, "PCMA at the new address");
    let stats = run
        .events
        .iter()
        .find_map(|e| match &e.event {
            EventKind::MediaStats(m) => Some(m.clone()),
            _ => None,
        })
        .expect("media statistics");
    assert_eq!(stats.codec, "PCMA");
    assert!(
        stats.remote.ends_with(&format!(":{moved_port}")),
        "{stats:?}"
    );
    run.assert_clean();
}

/// A capture of two RTP streams of PCMU silence from 127.0.0.1:`from`: `first` packets of one
/// SSRC, then `second` of another whose sequence numbers start 17,000 further on (one sequence
/// read as one stream, that is 99 % loss), 20 ms apart.
fn two_ssrc_capture(path: &std::path::Path, from: u16, first: u16, second: u16) {
    use base64::Engine as _;
    let packet = |ssrc: u32, seq: u16, i: u64| {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&((i as u32) * 160).to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xff; 160]);
        events::Event {
            seq: i,
            ts_us: 1_000_000 + i * 20_000,
            elapsed_ms: 0.0,
            event: EventKind::RtpPacket(events::RtpPacket {
                ua: "capture".into(),
                sip_call_id: "c".into(),
                direction: events::Direction::Sent,
                local: format!("127.0.0.1:{from}"),
                peer: "127.0.0.1:9".into(),
                bytes: base64::engine::general_purpose::STANDARD.encode(p),
            }),
        }
    };
    let mut frames: Vec<events::Event> = (0..first)
        .map(|n| packet(0x1111_1111, 3_000 + n, u64::from(n)))
        .collect();
    frames.extend((0..second).map(|n| packet(0x2222_2222, 20_000 + n, u64::from(first + n))));
    report::pcap::write(&frames, path).expect("write the capture");
}

#[tokio::test]
async fn two_rtp_streams_from_a_sipp_capture_count_no_loss_and_each_is_reported() {
    let dir = std::env::temp_dir().join(format!("callflow-two-ssrcs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let media = free_udp_port();
    two_ssrc_capture(&dir.join("two-ssrcs.pcap"), media, 60, 40);
    let args = vec![
        "-sf".into(),
        sipp_file("uac-pcap-two-ssrcs.xml"),
        "-s".into(),
        "200".into(),
        "-mp".into(),
        media.to_string(),
    ];
    let (run, code, err) = with_sipp_caller_in(Some(&dir), ANSWER_AND_WAIT, args).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 0, "sipp: {err}");
    run.assert_outcome(Outcome::Passed);
    let stats = run
        .events
        .iter()
        .find_map(|e| match &e.event {
            EventKind::MediaStats(m) => Some(m.clone()),
            _ => None,
        })
        .expect("media statistics");
    assert_eq!((stats.packets_received, stats.lost), (100, 0), "{stats:?}");
    let per: Vec<(u32, u64, u64)> = stats
        .streams
        .iter()
        .map(|s| (s.ssrc, s.packets_received, s.lost))
        .collect();
    assert_eq!(per, [(0x1111_1111, 60, 0), (0x2222_2222, 40, 0)]);
    run.assert_clean();
}

#[tokio::test]
async fn an_invite_requiring_100rel_gets_a_reliable_183_and_the_200_waits_for_its_prack() {
    let callee = "version: 1\nname: reliable callee\ninstances:\n  bob:\n    dn: \"200\"\n    auto_ringing: false\n    steps:\n      - event: INCOMING\n        timeout: 20s\n      - command: Progress\n      - command: Answer\n      - event: DISCONNECTED\n        timeout: 20s\n";
    let args = caller_args("uac-100rel.xml");
    let (run, code, err) = with_sipp_caller(callee, args).await;
    assert_eq!(
        code, 0,
        "sipp (which checks Require and RSeq, and the order of the 200s): {err}"
    );
    run.assert_outcome(Outcome::Passed);
    assert_eq!(
        run.wire("bob"),
        [
            "<INVITE", ">100", ">183", "<PRACK", ">200", ">200", "<ACK", "<BYE", ">200"
        ]
    );
    let ok = &run.raw("bob", ">200")[1];
    assert!(
        ok.lines()
            .any(|l| l.starts_with("Supported:") && l.contains("100rel")),
        "Supported: 100rel advertised: {ok}"
    );
    run.assert_clean();
}

#[tokio::test]
async fn an_invite_requiring_100rel_gets_420_when_it_is_off() {
    let callee = "version: 1\nname: no 100rel\ninstances:\n  bob:\n    dn: \"200\"\n    100rel: \"off\"\n    steps:\n      - event: TIMEOUT\n        timeout: 2s\n";
    let args = vec!["-sf".into(), sipp_file("uac-100rel-refused.xml")];
    let (run, code, err) = with_sipp_caller(callee, args).await;
    assert_eq!(code, 0, "sipp (which checks Unsupported: 100rel): {err}");
    run.assert_outcome(Outcome::Passed);
    assert_eq!(run.wire("bob"), ["<INVITE", ">420", "<ACK"]);
    run.assert_clean();
}

#[tokio::test]
async fn our_prack_goes_to_the_contact_of_the_reliable_180() {
    let (sipp, port) = sipp_callee("uas-100rel.xml");
    let text = format!(
        "version: 1\nname: reliable 180\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - command: MakeCall\n        target: sip:service@127.0.0.1:{port}\n      - command: Release\n"
    );
    let run = run_text(&text, "reliable-180.yaml").await;
    run.assert_outcome(Outcome::Passed);
    assert_eq!(
        run.wire("alice"),
        [
            ">INVITE", "<180", ">PRACK", "<200", "<200", ">ACK", ">BYE", "<200"
        ]
    );
    run.assert_clean();
    let (code, err) = sipp.finish().await;
    assert_eq!(
        code, 0,
        "sipp (which checks the PRACK's target and RAck): {err}"
    );
}

#[tokio::test]
async fn a_late_offer_of_ours_answers_the_200s_offer_in_the_ack() {
    let port = free_udp_port();
    let media = free_udp_port();
    let sipp = sipp_uas_file("uas-late-offer.xml", port, &["-mp", &media.to_string()]);
    let text = format!(
        "version: 1\nname: late offer\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - command: MakeCall\n        target: sip:service@127.0.0.1:{port}\n        offer: late\n      - command: Release\n"
    );
    let run = run_text(&text, "late-offer.yaml").await;
    run.assert_outcome(Outcome::Passed);
    run.assert_wire_contains("alice", &[">INVITE", "<200", ">ACK", ">BYE", "<200"]);
    let invite = &run.raw("alice", ">INVITE")[0];
    assert!(
        invite.ends_with("\r\n\r\n") && !invite.contains("Content-Type"),
        "no SDP, no Content-Type: {invite}"
    );
    let ack = &run.raw("alice", ">ACK")[0];
    assert!(
        ack.contains("Content-Type: application/sdp") && ack.contains("m=audio "),
        "the answer in the ACK: {ack}"
    );
    let stats = run
        .events
        .iter()
        .find_map(|e| match &e.event {
            EventKind::MediaStats(m) => Some(m.clone()),
            _ => None,
        })
        .expect("media statistics");
    assert_eq!(stats.codec, "PCMA", "the 200 offered PCMA first");
    assert!(stats.remote.ends_with(&format!(":{media}")), "{stats:?}");
    run.assert_clean();
    let (code, err) = sipp.finish().await;
    assert_eq!(
        code, 0,
        "sipp (which checks the INVITE had no SDP and the ACK answers): {err}"
    );
}

#[tokio::test]
async fn a_subscription_to_message_waiting_gets_its_notify_and_ends_at_cleanup() {
    let port = free_udp_port();
    let sipp = sipp_uas_file("uas-subscribe-mwi.xml", port, &[]);
    let text = format!(
        "version: 1\nname: mwi\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - command: Subscribe\n        call_id: mwi\n        target: sip:100@127.0.0.1:{port}\n        package: message-summary\n        expires: 10m\n      - event: REQUEST\n        call_id: mwi\n        method: NOTIFY\n        check:\n          - header: Content-Type\n            equals: application/simple-message-summary\n"
    );
    let run = run_text(&text, "mwi.yaml").await;
    run.assert_outcome(Outcome::Passed);
    run.assert_wire_contains(
        "alice",
        &[
            ">SUBSCRIBE",
            "<200",
            "<NOTIFY",
            ">200",
            ">SUBSCRIBE",
            "<200",
            "<NOTIFY",
            ">200",
        ],
    );
    let first = &run.raw("alice", ">SUBSCRIBE")[0];
    assert!(
        first.contains("Event: message-summary") && first.contains("Expires: 600"),
        "{first}"
    );
    let hangup = run
        .events
        .iter()
        .find_map(|e| match &e.event {
            EventKind::Cleanup(c) if c.finished && c.phase == events::CleanupPhase::HangupAll => {
                c.detail.clone()
            }
            _ => None,
        })
        .unwrap_or_default();
    assert!(hangup.contains("1 subscriptions ended"), "{hangup}");
    run.assert_clean();
    let (code, err) = sipp.finish().await;
    assert_eq!(
        code, 0,
        "sipp (which checks Event, Expires and the Expires: 0): {err}"
    );
}

#[tokio::test]
async fn an_update_offers_our_sdp_and_its_answer_moves_the_media() {
    let (moved_port, heard) = rtp_listener();
    let port = free_udp_port();
    let sipp = sipp_uas_file(
        "uas-update.xml",
        port,
        &[
            "-mp",
            &free_udp_port().to_string(),
            "-key",
            "moved_port",
            &moved_port,
        ],
    );
    let text = format!(
        "version: 1\nname: update\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - command: MakeCall\n        target: sip:service@127.0.0.1:{port}\n      - command: SendUpdate\n      - event: TIMEOUT\n        timeout: 300ms\n      - command: Release\n"
    );
    let run = run_text(&text, "update.yaml").await;
    run.assert_outcome(Outcome::Passed);
    run.assert_wire_contains(
        "alice",
        &[">INVITE", "<200", ">ACK", ">UPDATE", "<200", ">BYE", "<200"],
    );
    let update = &run.raw("alice", ">UPDATE")[0];
    assert!(
        update.contains("Content-Type: application/sdp") && update.contains("m=audio "),
        "our offer: {update}"
    );
    assert_eq!(
        heard.await.expect("join"),
        8,
        "PCMA at the address the answer gave"
    );
    run.assert_clean();
    let (code, err) = sipp.finish().await;
    assert_eq!(code, 0, "sipp (which checks the UPDATE's offer): {err}");
}

#[tokio::test]
async fn a_session_timer_the_peer_never_refreshes_ends_the_call_with_bye() {
    let callee = "version: 1\nname: session timer\ninstances:\n  bob:\n    dn: \"200\"\n    min_se: 2s\n    steps:\n      - event: INCOMING\n        timeout: 20s\n      - command: Answer\n      - event: DISCONNECTED\n        timeout: 10s\n";
    let args = caller_args("uac-session-timer.xml");
    let (run, code, err) = with_sipp_caller(callee, args).await;
    assert_eq!(
        code, 0,
        "sipp (which checks Session-Expires and Require): {err}"
    );
    run.assert_outcome(Outcome::Passed);
    run.assert_wire_contains("bob", &["<INVITE", ">200", "<ACK", ">BYE", "<200"]);
    assert!(
        run.events.iter().any(|e| matches!(&e.event, EventKind::Log(l)
            if l.message.starts_with("no session refresh from the peer within 2 s of a 3 s session interval"))),
        "the BYE says why"
    );
    run.assert_clean();
}

#[tokio::test]
async fn a_session_timer_we_refresh_sends_a_reinvite_at_half_the_interval() {
    let (sipp, port) = sipp_callee("uas-session-timer.xml");
    let text = format!(
        "version: 1\nname: refresher\ninstances:\n  alice:\n    dn: \"100\"\n    min_se: 2s\n    steps:\n      - command: MakeCall\n        target: sip:service@127.0.0.1:{port}\n        session_expires: 4s\n        check:\n          - header: Session-Expires\n            matches: refresher=uac\n      - event: TIMEOUT\n        timeout: 3s\n      - command: Release\n"
    );
    let run = run_text(&text, "refresher.yaml").await;
    run.assert_outcome(Outcome::Passed);
    run.assert_wire_contains(
        "alice",
        &[
            ">INVITE", "<200", ">ACK", ">INVITE", "<200", ">ACK", ">BYE", "<200",
        ],
    );
    let first = &run.raw("alice", ">INVITE")[0];
    assert!(
        first.contains("Session-Expires: 4") && first.contains("Min-SE: 2"),
        "{first}"
    );
    run.assert_clean();
    let (code, err) = sipp.finish().await;
    assert_eq!(
        code, 0,
        "sipp (which checks the refresh's Session-Expires): {err}"
    );
}
