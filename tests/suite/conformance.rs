//! What RFC 3261 asks of a UA beyond the call itself, by raw UDP from the test: a UA says what
//! it allows and supports (Allow on every 405, Allow, Supported and Accept on the 200 to
//! OPTIONS, Allow and Supported on its INVITEs and 2xx).

use callflow_tests::{run_file, start_one_ua_opts};
use events::Outcome;
use std::time::Duration;

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn ask(sock: &tokio::net::UdpSocket, ua: &str, method: &str, n: u32) -> String {
    let from = sock.local_addr().unwrap();
    let req = format!(
        "{method} sip:200@{ua} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-cap{n}\r\nFrom: <sip:probe@{from}>;tag=p{n}\r\nTo: <sip:200@{ua}>\r\nCall-ID: cap-{n}\r\nCSeq: 1 {method}\r\nContact: <sip:probe@{from}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(req.as_bytes(), ua).await.unwrap();
    let mut buf = vec![0u8; 65536];
    loop {
        let (len, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        let resp = String::from_utf8_lossy(&buf[..len]).into_owned();
        // Skip a provisional answer.
        if !resp.starts_with("SIP/2.0 1") {
            return resp;
        }
    }
}

#[tokio::test]
async fn options_and_405s_say_what_the_ua_allows() {
    let text = "version: 1\nname: asked\ninstances:\n  bob:\n    dn: \"200\"\n    steps:\n      - event: INCOMING\n        timeout: 30s\n";
    let s = scenario::parse_str(text, "asked.yaml").expect("valid");
    let stop = tokio_util::sync::CancellationToken::new();
    let opts = orchestrator::RunOptions {
        stop: stop.clone(),
        ..orchestrator::RunOptions::default()
    };
    let (run, ua) = start_one_ua_opts(s, opts).await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();

    let ok = ask(&sock, &ua, "OPTIONS", 1).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let allow = header(&ok, "Allow").unwrap_or_default();
    for m in ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REFER"] {
        assert!(allow.contains(m), "Allow lists {m}: {ok}");
    }
    assert_eq!(
        header(&ok, "Supported"),
        Some("replaces, 100rel, timer"),
        "{ok}"
    );
    assert_eq!(header(&ok, "Accept"), Some("application/sdp"), "{ok}");

    // A REGISTER or SUBSCRIBE reaching a UA (not a registrar, no event packages): 405, Allow.
    for (n, method) in [(2, "REGISTER"), (3, "SUBSCRIBE")] {
        let no = ask(&sock, &ua, method, n).await;
        assert!(no.starts_with("SIP/2.0 405"), "{method}: {no}");
        assert!(
            header(&no, "Allow").is_some_and(|a| a.contains("INVITE")),
            "{method}: {no}"
        );
    }
    stop.cancel();
    let run = run.await.unwrap();
    run.assert_outcome(Outcome::Stopped);
    assert!(run.finished().leaks.is_clean());
}

#[tokio::test]
async fn invites_and_their_2xx_carry_allow_and_supported() {
    let run = run_file("basic-call.yaml").await;
    run.assert_outcome(Outcome::Passed);
    let invite = &run.raw("alice", ">INVITE")[0];
    let ok = run
        .raw("bob", ">200")
        .into_iter()
        .find(|m| header(m, "CSeq").is_some_and(|c| c.ends_with("INVITE")))
        .expect("the 200 to the INVITE");
    for msg in [invite, &ok] {
        assert!(
            header(msg, "Allow").is_some_and(|a| a.contains("BYE")),
            "{msg}"
        );
        assert_eq!(
            header(msg, "Supported"),
            Some("replaces, 100rel, timer"),
            "{msg}"
        );
    }
    run.assert_clean();
}

#[tokio::test]
async fn requests_outside_calls_a_late_offer_with_100rel_and_an_update() {
    let run = run_file("requests-outside-calls.yaml").await;
    run.assert_outcome(Outcome::Passed);
    run.assert_wire_contains(
        "alice",
        &[
            ">MESSAGE", "<200", ">OPTIONS", "<200", ">INVITE", "<180", ">PRACK", "<200", ">ACK",
            ">UPDATE", "<200", ">BYE", "<200",
        ],
    );
    run.assert_wire_contains(
        "bob",
        &["<MESSAGE", ">200", "<OPTIONS", ">200", "<INVITE", ">180"],
    );
    let invite = &run.raw("alice", ">INVITE")[0];
    assert!(
        invite.contains("Require: 100rel") && invite.ends_with("\r\n\r\n"),
        "a late offer requiring 100rel: {invite}"
    );
    let ack = &run.raw("alice", ">ACK")[0];
    assert!(ack.contains("m=audio "), "the answer in the ACK: {ack}");
    run.assert_clean();
}

#[tokio::test]
async fn a_session_interval_below_the_callees_min_se_gets_422_and_is_asked_again_larger() {
    let text = "version: 1\nname: 422\ninstances:\n  alice:\n    dn: \"100\"\n    min_se: 1s\n    steps:\n      - command: MakeCall\n        target: bob\n        session_expires: 2s\n      - command: Release\n  bob:\n    dn: \"200\"\n    min_se: 3s\n    steps:\n      - event: INCOMING\n      - command: Answer\n      - event: DISCONNECTED\n";
    let run = callflow_tests::run_text(text, "422.yaml").await;
    run.assert_outcome(Outcome::Passed);
    run.assert_wire_contains(
        "alice",
        &[">INVITE", "<422", ">ACK", ">INVITE", "<200", ">ACK"],
    );
    let too_small = &run.raw("bob", ">422")[0];
    assert!(too_small.contains("Min-SE: 3"), "{too_small}");
    let again = &run
        .raw("alice", ">INVITE")
        .into_iter()
        .find(|m| m.contains("Session-Expires: 3"))
        .expect("the INVITE asked again with the Min-SE");
    assert!(again.contains("Min-SE: 1"), "{again}");
    let ok = run
        .raw("bob", ">200")
        .into_iter()
        .find(|m| header(m, "CSeq").is_some_and(|c| c.ends_with("INVITE")))
        .expect("the 200");
    assert_eq!(
        header(&ok, "Session-Expires"),
        Some("3;refresher=uac"),
        "{ok}"
    );
    assert_eq!(header(&ok, "Require"), Some("timer"), "{ok}");
    run.assert_clean();
}

#[tokio::test]
async fn a_failure_says_its_kind() {
    let cases = [
        // Nothing answers in time: a timeout.
        (
            "      - command: MakeCall\n        target: bob\n      - event: DISCONNECTED\n        timeout: 200ms\n",
            "      - event: INCOMING\n      - command: Answer\n      - event: DISCONNECTED\n        timeout: 2s\n",
            events::FailureKind::Timeout,
        ),
        // A 486 where a 2xx was expected.
        (
            "      - command: MakeCall\n        target: bob\n",
            "      - event: INCOMING\n      - command: Reject\n",
            events::FailureKind::Status,
        ),
        // A check on the 200 that does not hold.
        (
            "      - command: MakeCall\n        target: bob\n        check:\n          - header: X-Nope\n            exists: true\n      - command: Release\n",
            "      - event: INCOMING\n      - command: Answer\n      - event: DISCONNECTED\n",
            events::FailureKind::Checks,
        ),
    ];
    for (alice, bob, kind) in cases {
        let text = format!(
            "version: 1\nname: kinds\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n{alice}  bob:\n    dn: \"200\"\n    steps:\n{bob}"
        );
        let run = callflow_tests::run_text(&text, "kinds.yaml").await;
        run.assert_outcome(Outcome::Failed);
        let failure = run.finished().failure.clone().expect("a failure");
        assert_eq!(failure.kind, kind, "{}", failure.message);
        assert!(run.finished().leaks.is_clean());
    }
}
