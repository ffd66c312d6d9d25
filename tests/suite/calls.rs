//! Every fixture, run on real UDP/TCP loopback sockets between callflow's own UAs.

use callflow_tests::{Run, run_file};
use events::{CleanupPhase, NodeState, Outcome};

const CALLER_WIRE: &[&str] = &[">INVITE", "<100", "<180", "<200", ">ACK", ">BYE", "<200"];
const CALLEE_WIRE: &[&str] = &["<INVITE", ">100", ">180", ">200", "<ACK", "<BYE", ">200"];

fn assert_basic_call(run: &Run, caller: &str, callee: &str, nodes: &[&str]) {
    run.assert_outcome(Outcome::Passed);
    for n in nodes {
        assert_eq!(run.state(n), NodeState::Passed, "{n}");
    }
    assert_eq!(run.wire(caller), CALLER_WIRE);
    assert_eq!(run.wire(callee), CALLEE_WIRE);
    run.assert_clean();
}

#[tokio::test]
async fn basic_call_native() {
    let run = run_file("basic-call.yaml").await;
    assert_basic_call(
        &run,
        "alice",
        "bob",
        &["alice.1", "alice.2", "alice.3", "bob.1", "bob.2", "bob.3"],
    );
}

#[tokio::test]
async fn basic_call_sipflow_json() {
    let run = run_file("basic-call.json").await;
    assert_basic_call(
        &run,
        "inst-a",
        "inst-b",
        &[
            "cmd-makecall",
            "evt-ringing",
            "cmd-release",
            "evt-incoming",
            "cmd-answer",
            "evt-disconnected",
        ],
    );
}

#[tokio::test]
async fn basic_call_tcp() {
    let run = run_file("basic-call-tcp.yaml").await;
    assert_basic_call(
        &run,
        "alice",
        "bob",
        &["alice.1", "alice.2", "alice.3", "bob.1", "bob.2", "bob.3"],
    );
    let transports = run.transports(None);
    assert!(
        !transports.is_empty() && transports.iter().all(|t| t == "tcp"),
        "{transports:?}"
    );
}

/// MakeCall times out while bob's phone rings; the failure edge sends CANCEL; bob sees the call
/// go away; the run passes because the failure was handled.
async fn no_answer(file: &str, dial: &str, giveup: &str, gone: &str) {
    let run = run_file(file).await;
    run.assert_outcome(Outcome::Passed);
    let d = run.node(dial);
    assert_eq!(d.state, NodeState::Failed);
    let reason = d.reason.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with("expected 2xx from bob within 2 s, last: 180 Ringing at"),
        "{reason}"
    );
    assert_eq!(run.state(giveup), NodeState::Passed);
    assert_eq!(run.state(gone), NodeState::Passed);
    assert_eq!(
        run.wire(if file.ends_with(".json") {
            "inst-a"
        } else {
            "alice"
        }),
        [">INVITE", "<100", "<180", ">CANCEL", "<200", "<487", ">ACK"]
    );
    run.assert_clean();
}

#[tokio::test]
async fn no_answer_native() {
    no_answer("no-answer.yaml", "dial", "dial.failure.1", "bob.2").await;
}

#[tokio::test]
async fn no_answer_sipflow_json() {
    no_answer("no-answer.json", "dial", "giveup", "gone").await;
}

/// A node fails with no failure edge: the run fails at once, the other chain is cancelled, and
/// cleanup hangs up the established call with BYE.
#[tokio::test]
async fn failing_call_cancels_the_other_chains_and_cleans_up() {
    let run = run_file("demo/failing-call.yaml").await;
    run.assert_outcome(Outcome::Failed);
    let failure = run.report.failure.clone().expect("failure");
    assert_eq!(failure.node.as_deref(), Some("bob.3"));
    assert_eq!(
        failure.message,
        "bob.3 (INCOMING) on bob: expected an INVITE to bob within 1 s, none came"
    );
    let cancelled = run.node("alice.2");
    assert_eq!(cancelled.state, NodeState::Skipped);
    assert_eq!(
        cancelled.reason.as_deref(),
        Some("cancelled: node `bob.3` failed")
    );
    // The call was up when bob.3 failed: hangup_all ended it with BYE (from one side or both).
    assert!(
        run.wire("alice").contains(&">BYE".to_owned())
            || run.wire("bob").contains(&">BYE".to_owned())
    );
    let hangup = run.events.iter().find_map(|e| match &e.event {
        events::EventKind::Cleanup(c) if c.phase == CleanupPhase::HangupAll && c.finished => {
            c.detail.clone()
        }
        _ => None,
    });
    assert!(hangup.unwrap_or_default().contains("BYE"));
    run.assert_clean();
}
