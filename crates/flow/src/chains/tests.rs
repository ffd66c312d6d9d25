use super::*;
use crate::sim::{Script, Sim, all_pass};
use events::FailureKind;
use pretty_assertions::assert_eq;

fn scenario(yaml: &str) -> Arc<Scenario> {
    Arc::new(scenario::parse_str(yaml, "t.yaml").expect("a valid scenario"))
}

/// Nodes named in `fail` fail (kind Status) after 5 ms; the rest pass after 10 ms.
fn failing(fail: &'static [&'static str]) -> Script {
    Box::new(move |node, _| {
        if fail.contains(&node.id.as_str()) {
            let failed = Failed::from(Why::Status {
                expected: "2xx".into(),
                from: "bob".into(),
                waited: Some(Duration::from_secs(10)),
                got: "486 Busy Here".into(),
                at: Some(Duration::from_millis(5)),
                detail: String::new(),
            });
            (Duration::from_millis(5), Err(failed))
        } else {
            (Duration::from_millis(10), Ok(()))
        }
    })
}

const CALL: &str = r#"
version: 1
name: call
instances:
  alice:
    dn: "100"
    steps:
      - { command: MakeCall, id: dial, target: bob }
      - { command: Release, id: hangup }
  bob:
    dn: "200"
    steps:
      - { event: INCOMING, id: ring }
      - { command: Answer, id: answer }
      - { event: DISCONNECTED, id: gone }
"#;

#[test]
fn a_call_runs_each_role_in_order_and_passes() {
    let mut sim = Sim::new(scenario(CALL), all_pass());
    let v = sim.run(&[0], 1000);
    assert_eq!(v, vec![(0, Verdict::Passed)]);
    assert_eq!(
        sim.trace,
        [
            "    0 ms  #0 alice  dial running",
            "    0 ms  #0 alice  run dial (MakeCall)",
            "    0 ms  #0 bob    ring running",
            "    0 ms  #0 bob    run ring (INCOMING)",
            "   10 ms  #0 alice  dial passed",
            "   10 ms  #0 alice  hangup running",
            "   10 ms  #0 alice  run hangup (Release)",
            "   10 ms  #0 bob    ring passed",
            "   10 ms  #0 bob    answer running",
            "   10 ms  #0 bob    run answer (Answer)",
            "   20 ms  #0 alice  hangup passed",
            "   20 ms  #0 bob    answer passed",
            "   20 ms  #0 bob    gone running",
            "   20 ms  #0 bob    run gone (DISCONNECTED)",
            "   30 ms  #0 bob    gone passed",
            "   30 ms  #0 -      passed",
        ]
    );
}

#[test]
fn a_delay_is_a_timer_of_the_flow_not_of_the_world() {
    let s = scenario(
        r#"
version: 1
name: delay
instances:
  alice:
    dn: "100"
    steps:
      - { event: TIMEOUT, id: wait, timeout: 180s }
      - { command: MakeCall, id: dial, target: "sip:x@127.0.0.1" }
"#,
    );
    let mut sim = Sim::new(s.clone(), all_pass());
    let t0 = sim.now();
    sim.flow.start(t0, 0);
    // Nothing for the world to do: the flow only asks to be woken in 180 s.
    let first: Vec<_> = std::iter::from_fn(|| sim.flow.poll_action()).collect();
    assert!(
        first.iter().all(|a| !matches!(a, Action::Run(_))),
        "{first:?}"
    );
    assert_eq!(sim.flow.poll_timeout(), Some(t0 + Duration::from_secs(180)));
    let mut sim = Sim::new(s, all_pass());
    assert_eq!(sim.run(&[0], 100), vec![(0, Verdict::Passed)]);
    assert_eq!(sim.elapsed(), Duration::from_millis(180_010));
}

const AFTER: &str = r#"
version: 1
name: after
instances:
  alice:
    dn: "100"
    steps:
      - { event: TIMEOUT, id: slow, timeout: 2s }
  bob:
    dn: "200"
    steps:
      - { event: TIMEOUT, id: wait, timeout: 3s, after: slow }
"#;

#[test]
fn an_after_wait_starts_the_node_when_the_other_passes() {
    let mut sim = Sim::new(scenario(AFTER), all_pass());
    assert_eq!(sim.run(&[0], 100), vec![(0, Verdict::Passed)]);
    // bob's TIMEOUT begins when alice's ends (2 s), then takes its 3 s.
    assert_eq!(sim.elapsed(), Duration::from_secs(5));
}

#[test]
fn an_after_wait_gives_up_at_its_timeout_and_says_what_it_waited_for() {
    let s = AFTER.replace("timeout: 2s", "timeout: 5s");
    let mut sim = Sim::new(scenario(&s), all_pass());
    let v = sim.run(&[0], 100);
    let Verdict::Failed(f) = &v[0].1 else {
        panic!("{v:?}")
    };
    assert_eq!(f.kind, FailureKind::Timeout);
    assert_eq!(
        f.message,
        "wait (TIMEOUT) on bob: expected `slow` (TIMEOUT on alice) to pass within 3 s, it has not"
    );
    assert_eq!(sim.elapsed(), Duration::from_secs(3));
    // alice's Delay was running: it is cancelled, not left running.
    assert!(
        sim.trace.contains(
            &" 3000 ms  #0 alice  slow skipped: cancelled: node `wait` failed".to_owned()
        ),
        "{:#?}",
        sim.trace
    );
}

#[test]
fn an_after_wait_fails_when_the_other_fails() {
    let s = scenario(
        r#"
version: 1
name: after fails
instances:
  alice:
    dn: "100"
    steps:
      - command: MakeCall
        id: dial
        target: "sip:x@127.0.0.1"
        on_failure:
          - { event: TIMEOUT, id: recover, timeout: 1s }
  bob:
    dn: "200"
    steps:
      - { event: TIMEOUT, id: wait, timeout: 1s, after: dial }
"#,
    );
    let mut sim = Sim::new(s, failing(&["dial"]));
    let v = sim.run(&[0], 100);
    let Verdict::Failed(f) = &v[0].1 else {
        panic!("{v:?}")
    };
    assert_eq!(f.node.as_deref(), Some("wait"));
    assert_eq!(
        f.message,
        "wait (TIMEOUT) on bob: waited for `dial`, which failed"
    );
}

#[test]
fn a_failure_edge_is_followed_and_the_iteration_passes() {
    let s = scenario(
        r#"
version: 1
name: handled
instances:
  alice:
    dn: "100"
    steps:
      - command: MakeCall
        id: dial
        target: "sip:x@127.0.0.1"
        on_failure:
          - { command: Release, id: give-up }
      - { command: Release, id: hangup }
"#,
    );
    let mut sim = Sim::new(s, failing(&["dial"]));
    assert_eq!(sim.run(&[0], 100), vec![(0, Verdict::Passed)]);
    let nodes = sim.flow.nodes(0).expect("kept");
    let state = |i: usize| nodes[i].state;
    let idx = |id: &str| {
        sim.flow
            .scenario()
            .nodes
            .iter()
            .position(|n| n.id == id)
            .expect("a node")
    };
    assert_eq!(state(idx("dial")), NodeState::Failed);
    assert_eq!(state(idx("give-up")), NodeState::Passed);
    assert_eq!(state(idx("hangup")), NodeState::Skipped);
    // A branch not taken: skipped when the iteration ends, with no reason to give.
    assert_eq!(nodes[idx("hangup")].reason, None);
    assert!(
        sim.trace.iter().any(|l| l.ends_with(
            "dial failed: expected 2xx from bob within 10 s, got 486 Busy Here at 0.01 s (handled)"
        )),
        "{:#?}",
        sim.trace
    );
}

#[test]
fn an_unhandled_failure_ends_its_iteration_cancelling_what_runs_and_skipping_the_rest() {
    let mut sim = Sim::new(scenario(CALL), failing(&["answer"]));
    let v = sim.run(&[0], 100);
    let Verdict::Failed(f) = &v[0].1 else {
        panic!("{v:?}")
    };
    assert_eq!(f.node.as_deref(), Some("answer"));
    assert_eq!(f.ua.as_deref(), Some("bob"));
    assert_eq!(f.kind, FailureKind::Status);
    assert_eq!(
        f.message,
        "answer (Answer) on bob: expected 2xx from bob within 10 s, got 486 Busy Here at 0.01 s"
    );
    let tail: Vec<&str> = sim.trace[sim.trace.len() - 5..]
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "   15 ms  #0 bob    answer failed: expected 2xx from bob within 10 s, got 486 Busy Here at 0.01 s",
            "   15 ms  #0 alice  abort hangup",
            "   15 ms  #0 alice  hangup skipped: cancelled: node `answer` failed",
            "   15 ms  #0 bob    gone skipped: not run: node `answer` failed",
            "   15 ms  #0 -      failed: answer (Answer) on bob: expected 2xx from bob within 10 s, got 486 Busy Here at 0.01 s",
        ]
    );
}

#[test]
fn a_report_for_an_aborted_node_is_ignored() {
    let s = scenario(CALL);
    let mut sim = Sim::new(s, failing(&["answer"]));
    sim.run(&[0], 100);
    let hangup = NodeRef {
        iteration: 0,
        node: 1,
    };
    let before = sim.flow.nodes(0).expect("kept").to_vec();
    let later = sim.now() + Duration::from_secs(1);
    sim.flow.handle(
        later,
        Input::Done {
            at: hangup,
            result: Ok(()),
        },
    );
    assert_eq!(sim.flow.poll_action(), None);
    assert_eq!(sim.flow.nodes(0).expect("kept"), before.as_slice());
}

#[test]
fn iterations_are_independent_a_failure_ends_only_its_own() {
    let s = scenario(CALL);
    // Iteration 1's Answer fails; iteration 0 and 2 pass.
    let script: Script = Box::new(|node, i| {
        let r = if i == 1 && node.id == "answer" {
            Err(Failed::timeout(
                "an ACK",
                Duration::from_secs(32),
                "none came",
            ))
        } else {
            Ok(())
        };
        (Duration::from_millis(10), r)
    });
    let mut sim = Sim::new(s, script);
    let mut v = sim.run(&[0, 1, 2], 1000);
    v.sort_by_key(|(i, _)| *i);
    assert_eq!(v[0], (0, Verdict::Passed));
    assert!(matches!(&v[1], (1, Verdict::Failed(f)) if f.node.as_deref() == Some("answer")));
    assert_eq!(v[2], (2, Verdict::Passed));
}

#[test]
fn a_stop_ends_every_iteration() {
    let s = scenario(
        r#"
version: 1
name: long
instances:
  alice:
    dn: "100"
    steps:
      - { event: TIMEOUT, id: hold, timeout: 180s }
  bob:
    dn: "200"
    steps:
      - { event: INCOMING, id: ring, timeout: 180s }
"#,
    );
    let script: Script = Box::new(|_, _| (Duration::from_secs(170), Ok(())));
    let mut sim = Sim::new(s, script);
    sim.stop_at = Some(Duration::from_secs(2));
    let v = sim.run(&[0, 1], 100);
    assert_eq!(v, vec![(0, Verdict::Stopped), (1, Verdict::Stopped)]);
    assert_eq!(sim.elapsed(), Duration::from_secs(2));
    assert_eq!(sim.flow.running(), 0);
    assert_eq!(sim.flow.poll_timeout(), None);
    assert!(
        sim.trace
            .iter()
            .any(|l| l.ends_with("#0 bob    ring skipped: cancelled: the run was stopped")),
        "{:#?}",
        sim.trace
    );
}

#[test]
fn a_role_runs_one_node_at_a_time_and_a_handed_chain_waits_its_turn() {
    // alice has two chains; the second begins only when the first ends. bob's chain hands a
    // node to alice while she is busy: it runs after her first chain.
    let s = scenario(
        r#"
version: 1
name: turns
instances:
  alice:
    dn: "100"
    steps:
      - { event: TIMEOUT, id: a1, timeout: 5s }
  bob:
    dn: "200"
    steps:
      - { event: TIMEOUT, id: b1, timeout: 1s }
"#,
    );
    let mut sc = (*s).clone();
    // b1 → a2 (alice's node), so bob hands the chain to alice at 1 s while she waits until 5 s.
    let mut a2 = sc.nodes[0].clone();
    a2.id = "a2".into();
    a2.timeout = Duration::from_secs(1);
    sc.nodes.push(a2);
    sc.nodes[1].on_success = Some(2);
    let mut sim = Sim::new(Arc::new(sc), all_pass());
    assert_eq!(sim.run(&[0], 100), vec![(0, Verdict::Passed)]);
    assert_eq!(sim.elapsed(), Duration::from_secs(6));
}

#[test]
fn a_node_two_chains_reach_runs_once() {
    let s = scenario(CALL);
    let mut sc = (*s).clone();
    // bob's `gone` also follows alice's `hangup`: the second chain to reach it joins it.
    sc.nodes[1].on_success = Some(4);
    let mut sim = Sim::new(Arc::new(sc), all_pass());
    assert_eq!(sim.run(&[0], 100), vec![(0, Verdict::Passed)]);
    let runs = sim
        .actions
        .iter()
        .filter(|(_, a)| matches!(a, Action::Run(at) if at.node == 4))
        .count();
    assert_eq!(runs, 1);
}

#[test]
fn an_iteration_abandoned_before_it_started_skips_every_node() {
    let mut sim = Sim::new(scenario(CALL), all_pass());
    let failure = Failure {
        node: None,
        ua: Some("bob".into()),
        kind: FailureKind::Setup,
        message: "set-up failed: address in use".into(),
    };
    sim.flow.abandon(sim.now(), 0, failure.clone());
    let actions: Vec<_> = std::iter::from_fn(|| sim.flow.poll_action()).collect();
    assert!(!actions.iter().any(|a| matches!(a, Action::Run(_))));
    assert_eq!(
        actions.last(),
        Some(&Action::Ended {
            iteration: 0,
            verdict: Verdict::Failed(failure)
        })
    );
    let nodes = sim.flow.nodes(0).expect("kept");
    assert!(
        nodes.iter().all(|r| r.state == NodeState::Skipped
            && r.reason.as_deref() == Some("not run: the run failed"))
    );
}
