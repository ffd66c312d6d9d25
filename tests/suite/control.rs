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
