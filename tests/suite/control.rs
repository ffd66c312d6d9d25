//! Call control on real sockets between callflow UAs: hold/retrieve both ways, blind and
//! attended transfer (sipflow JSON where sipflow can express it).

use callflow_tests::run_file;
use events::{NodeState, Outcome};

fn all_passed(run: &callflow_tests::Run) {
    run.assert_outcome(Outcome::Passed);
    for n in &run.finished().nodes {
        assert_eq!(n.state, NodeState::Passed, "{} {:?}", n.node, n.reason);
    }
}

#[tokio::test]
async fn caller_holds_and_retrieves() {
    let run = run_file("hold-retrieve.yaml").await;
    all_passed(&run);
    assert_eq!(
        run.wire("alice"),
        [
            ">INVITE", "<100", "<180", "<200", ">ACK", ">INVITE", "<200", ">ACK", ">INVITE",
            "<200", ">ACK", ">BYE", "<200"
        ]
    );
    let invites = run.raw("alice", ">INVITE");
    assert!(invites[0].contains("a=sendrecv"));
    assert!(invites[1].contains("a=sendonly"), "hold offers sendonly");
    assert!(
        invites[2].contains("a=sendrecv"),
        "retrieve offers sendrecv"
    );
    let answers = run.raw("bob", ">200");
    assert!(
        answers
            .iter()
            .any(|a| a.contains("CSeq: 2 INVITE") && a.contains("a=recvonly")),
        "held party answers recvonly"
    );
    run.assert_clean();
}

#[tokio::test]
async fn callee_holds_the_caller() {
    let run = run_file("hold-by-callee.yaml").await;
    all_passed(&run);
    assert_eq!(
        run.wire("alice"),
        [
            ">INVITE", "<100", "<180", "<200", ">ACK", "<INVITE", ">200", "<ACK", "<INVITE",
            ">200", "<ACK", "<BYE", ">200"
        ]
    );
    run.assert_clean();
}

#[tokio::test]
async fn hold_in_sipflow_json() {
    let run = run_file("hold-retrieve.json").await;
    all_passed(&run);
    run.assert_wire_contains(
        "b",
        &[
            "<INVITE", ">200", "<ACK", "<INVITE", ">200", "<INVITE", ">200", "<BYE", ">200",
        ],
    );
    run.assert_clean();
}

async fn blind_transfer(file: &str, a: &str, b: &str, c: &str) {
    let run = run_file(file).await;
    all_passed(&run);
    // The transferor: REFER, 202, NOTIFYs (100 then 200 in sipfrag), then BYE.
    run.assert_wire_contains(
        b,
        &[
            "<INVITE", ">200", "<ACK", ">REFER", "<202", "<NOTIFY", ">200", "<NOTIFY", ">200",
            ">BYE", "<200",
        ],
    );
    let refer = &run.raw(b, ">REFER")[0];
    assert!(refer.contains("Refer-To: <sip:300@127.0.0.1:"), "{refer}");
    let notifies = run.raw(b, "<NOTIFY");
    assert!(
        notifies[0].contains("SIP/2.0 100 Trying")
            && notifies[0].contains("Subscription-State: active")
    );
    assert!(
        notifies.last().unwrap().contains("SIP/2.0 200 OK")
            && notifies.last().unwrap().contains("terminated")
    );
    // The transferee: follows the REFER with a new INVITE to the target, then hangs it up.
    run.assert_wire_contains(
        a,
        &[
            ">INVITE", "<200", ">ACK", "<REFER", ">202", ">INVITE", "<200", ">ACK",
        ],
    );
    // Then two BYEs cross: the transferor ends the old call, the transferee ends the new one.
    run.assert_wire_contains(a, &["<REFER", "<BYE"]);
    run.assert_wire_contains(a, &["<REFER", ">BYE"]);
    // The target sees an ordinary incoming call.
    assert_eq!(
        run.wire(c),
        ["<INVITE", ">100", ">180", ">200", "<ACK", "<BYE", ">200"]
    );
    run.assert_clean();
}

#[tokio::test]
async fn blind_transfer_native() {
    blind_transfer("blind-transfer.yaml", "alice", "bob", "carol").await;
}

#[tokio::test]
async fn blind_transfer_sipflow_json() {
    blind_transfer("blind-transfer.json", "a", "b", "c").await;
}

#[tokio::test]
async fn attended_transfer_replaces_the_consultation_call() {
    let run = run_file("attended-transfer.yaml").await;
    all_passed(&run);
    let refer = &run.raw("bob", ">REFER")[0];
    assert!(
        refer.contains("?Replaces=")
            && refer.contains("%3Bto-tag%3D")
            && refer.contains("%3Bfrom-tag%3D"),
        "{refer}"
    );
    // Alice's INVITE to carol carries Replaces naming carol's call with bob.
    let replacing = run
        .raw("carol", "<INVITE")
        .into_iter()
        .find(|i| i.contains("Replaces:"))
        .expect("an INVITE with Replaces");
    let consult = run
        .raw("bob", ">INVITE")
        .into_iter()
        .find(|i| i.starts_with("INVITE sip:300@"))
        .expect("bob's consultation INVITE");
    let consult_call_id = consult
        .lines()
        .find_map(|l| l.strip_prefix("Call-ID:"))
        .expect("Call-ID")
        .trim()
        .to_owned();
    assert!(
        replacing.contains(&format!("Replaces: {consult_call_id}")),
        "{replacing}"
    );
    // Carol answers it at once and ends her call with bob; bob ends his call with alice.
    run.assert_wire_contains("carol", &["<INVITE", ">200", "<ACK", ">BYE"]);
    run.assert_wire_contains(
        "bob",
        &[">REFER", "<202", "<NOTIFY", ">200", "<BYE", ">200"],
    );
    run.assert_clean();
}

#[tokio::test]
async fn reject_with_an_expected_status() {
    let run = run_file("reject-busy.yaml").await;
    all_passed(&run);
    assert_eq!(
        run.wire("alice"),
        [">INVITE", "<100", "<180", "<486", ">ACK"]
    );
    let busy = &run.raw("bob", ">486")[0];
    assert!(busy.contains("Reason: SIP;cause=486"), "{busy}");
    run.assert_clean();
}

#[tokio::test]
async fn a_reject_reason_in_free_text_is_sent_in_the_rfc_3326_form() {
    let text = std::fs::read_to_string(callflow_tests::fixture("reject-busy.yaml"))
        .unwrap()
        .replace(
            "reason: \"SIP;cause=486;text=\\\"Busy Here\\\"\"",
            "reason: Busy Here",
        );
    assert!(text.contains("reason: Busy Here"));
    let run = callflow_tests::run_text(&text, "reject-free-text.yaml").await;
    all_passed(&run);
    let busy = &run.raw("bob", ">486")[0];
    assert!(
        busy.contains("Reason: SIP ;cause=486 ;text=\"Busy Here\"\r\n"),
        "{busy}"
    );
    run.assert_clean();
}

#[tokio::test]
async fn cancel_while_ringing() {
    let run = run_file("cancel.yaml").await;
    all_passed(&run);
    assert_eq!(
        run.wire("alice"),
        [">INVITE", "<100", "<180", ">CANCEL", "<200", "<487", ">ACK"]
    );
    // The ACK to the 487 may reach bob after his UA is torn down (alice sent it, above).
    assert_eq!(
        run.wire("bob")[..6],
        ["<INVITE", ">100", ">180", "<CANCEL", ">200", ">487"]
    );
    run.assert_clean();
}

#[tokio::test]
async fn manual_ringing_and_early_media() {
    let run = run_file("ringing-progress.yaml").await;
    all_passed(&run);
    assert_eq!(
        run.wire("bob"),
        [
            "<INVITE", ">100", ">180", ">183", ">200", "<ACK", "<BYE", ">200"
        ]
    );
    let early = &run.raw("bob", ">183")[0];
    let answer = &run.raw("bob", ">200")[0];
    assert!(early.contains("m=audio "), "183 carries SDP: {early}");
    let mline = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("m=audio"))
            .map(str::to_owned)
    };
    assert_eq!(
        mline(early),
        mline(answer),
        "the answer reuses the early-media SDP"
    );
    run.assert_clean();
}

#[tokio::test]
async fn in_dialog_requests_custom_headers_and_checks() {
    let run = run_file("requests-and-checks.yaml").await;
    all_passed(&run);
    run.assert_wire_contains(
        "alice",
        &[
            ">INVITE", "<200", ">ACK", ">INFO", "<200", ">MESSAGE", "<200", ">OPTIONS", "<200",
            ">BYE", "<200",
        ],
    );
    let invite = &run.raw("alice", ">INVITE")[0];
    assert!(
        invite.contains("X-Test-Case: requests-and-checks"),
        "{invite}"
    );
    assert!(
        invite.contains("From: \"Alice Example\" <sip:+15550100@"),
        "{invite}"
    );
    run.assert_clean();
}

#[tokio::test]
async fn a_node_waits_for_a_node_of_another_ua() {
    let run = run_file("after.yaml").await;
    all_passed(&run);
    // Bob's 200 goes out only after carol's INCOMING passed.
    let order: Vec<String> = run
        .events
        .iter()
        .filter_map(|e| match &e.event {
            events::EventKind::NodeState(n)
                if n.node == "carol-rang" && n.to == NodeState::Passed =>
            {
                Some("carol rang".to_owned())
            }
            events::EventKind::SipMessage(m)
                if m.ua == "bob" && m.status == Some(200) && m.cseq.ends_with("INVITE") =>
            {
                Some("bob 200".to_owned())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        order.first().map(String::as_str),
        Some("carol rang"),
        "{order:?}"
    );
    run.assert_clean();
}

#[tokio::test]
async fn a_failed_check_names_what_it_found() {
    let text = "version: 1\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - command: MakeCall\n        target: bob\n        check:\n          - header: Server\n            equals: Asterisk\n          - sdp_direction: sendonly\n  bob:\n    dn: \"200\"\n    steps:\n      - event: INCOMING\n      - command: Answer\n";
    let run = callflow_tests::run_text(text, "check-fails.yaml").await;
    run.assert_outcome(Outcome::Failed);
    let reason = run.node("alice.1").reason.clone().unwrap_or_default();
    assert_eq!(
        reason,
        "checks on the 200 from bob failed: expected `Server: Asterisk`, there is no `Server`; expected a=sendonly, got a=sendrecv"
    );
    run.assert_clean();
}

#[tokio::test]
async fn attended_transfer_in_sipflow_json() {
    let run = run_file("attended-transfer.json").await;
    all_passed(&run);
    assert!(run.raw("b", ">REFER")[0].contains("?Replaces="));
    assert!(
        run.raw("c", "<INVITE")
            .iter()
            .any(|i| i.contains("Replaces:"))
    );
    run.assert_clean();
}
