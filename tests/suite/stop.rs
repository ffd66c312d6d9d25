//! Stop: a run stopped while a call is up ends `stopped`, with the full cleanup, well within 10 s.

use callflow_tests::{fixture, run_scenario};
use events::{Event, EventKind, NodeState, Outcome};
use orchestrator::{EventSink, RunOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Requests a stop once a given node is running.
struct StopWhenRunning {
    node: &'static str,
    stop: CancellationToken,
}

impl EventSink for StopWhenRunning {
    fn event(&self, e: &Event) {
        if let EventKind::NodeState(n) = &e.event
            && n.node == self.node
            && n.to == NodeState::Running
        {
            self.stop.cancel();
        }
    }
}

#[tokio::test]
async fn stop_ends_the_run_with_cleanup() {
    let (s, _) = scenario::load(&fixture("demo/long-call.yaml")).expect("valid");
    let stop = CancellationToken::new();
    let opts = RunOptions {
        stop: stop.clone(),
        ..RunOptions::default()
    };
    let sink = Arc::new(StopWhenRunning {
        node: "hold-on",
        stop: stop.clone(),
    });
    let started = Instant::now();
    let run = run_scenario(&s, opts, vec![sink]).await;
    run.assert_outcome(Outcome::Stopped);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stop took {:?}",
        started.elapsed()
    );
    assert_eq!(run.state("hold-on"), NodeState::Skipped);
    assert!(
        run.wire("alice").contains(&">BYE".to_owned())
            || run.wire("bob").contains(&">BYE".to_owned())
    );
    run.assert_clean();
}
