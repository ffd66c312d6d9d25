use super::*;
use crate::sim::{Faulty, Script, Scripted, Sim, SipWorld, World, all_pass, busy};
use events::FailureKind;
use pretty_assertions::assert_eq;

fn scenario(yaml: &str) -> Arc<Scenario> {
    Arc::new(scenario::parse_str(yaml, "t.yaml").expect("a valid scenario"))
}

/// Nodes named in `fail` fail (a 486, kind Status) after 5 ms; the rest pass after 10 ms.
fn failing(fail: &'static [&'static str]) -> Box<dyn World> {
    Box::new(Faulty {
        world: Scripted(all_pass()),
        fails: Box::new(move |node, _| fail.contains(&node.id.as_str()).then(busy)),
    })
}

/// The same, over the SIP world: the other nodes run their calls.
fn failing_sip(fail: &'static [&'static str]) -> Box<dyn World> {
    Box::new(Faulty {
        world: SipWorld::default(),
        fails: Box::new(move |node, _| fail.contains(&node.id.as_str()).then(busy)),
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
    let mut sim = Sim::sip(scenario(CALL));
    let v = sim.run(&[0], 1000);
    assert_eq!(v, vec![(0, Verdict::Passed)]);
    assert_eq!(
        sim.trace,
        [
            "    0 ms  #0 alice  dial running",
            "    0 ms  #0 alice  invite dial (MakeCall)",
            "    0 ms  #0 bob    ring running",
            // The INVITE arrives at bob's UA at 2 ms: the flow gives it to his INCOMING, which
            // waited; alice's MakeCall waits for the answer.
            "    2 ms  #0 bob    take ring (call 2)",
            "    2 ms  #0 bob    ring passed",
            "    2 ms  #0 bob    answer running",
            "    2 ms  #0 bob    run answer (Answer)",
            "    6 ms  #0 alice  dial passed",
            "    6 ms  #0 alice  hangup running",
            "    6 ms  #0 alice  run hangup (Release)",
            "    6 ms  #0 bob    answer passed",
            "    6 ms  #0 bob    gone running",
            // bob's DISCONNECTED is decided by the flow, from the call's signal (the BYE at
            // 9 ms), not run by the world.
            "   10 ms  #0 bob    gone passed",
            "   10 ms  #0 alice  hangup passed",
            "   10 ms  #0 -      passed",
        ]
    );
}

#[test]
fn an_event_node_takes_a_signal_that_came_before_it_began() {
    // alice's RINGING runs after her MakeCall passed: the 180 came long before, latched.
    let s = scenario(
        r#"
version: 1
name: latched
instances:
  alice:
    dn: "100"
    steps:
      - { command: MakeCall, id: dial, target: bob }
      - { event: RINGING, id: rang }
      - { event: RINGING, id: again, timeout: 1s }
  bob:
    dn: "200"
    steps:
      - { event: INCOMING, id: ring }
      - { command: Answer, id: answer }
"#,
    );
    let mut sim = Sim::sip(s);
    let v = sim.run(&[0], 1000);
    let Verdict::Failed(f) = &v[0].1 else {
        panic!("{:#?}", sim.trace)
    };
    // One 180, taken by the first RINGING: the second waits its 1 s and says so.
    assert_eq!(f.node.as_deref(), Some("again"));
    assert_eq!(f.kind, FailureKind::Timeout);
    assert_eq!(
        f.message,
        "again (RINGING) on alice: expected a 180/183 received on `call-1` within 1 s, none"
    );
    let rang = sim.trace.iter().position(|l| l.ends_with("rang passed"));
    let dial = sim.trace.iter().position(|l| l.ends_with("dial passed"));
    assert!(rang > dial, "{:#?}", sim.trace);
    assert!(sim.trace.iter().any(|l| l.ends_with("timed out again")));
}

#[test]
fn an_event_node_on_a_call_nothing_bound_fails_at_once() {
    let s = scenario(
        r#"
version: 1
name: unbound
instances:
  alice:
    dn: "100"
    steps:
      - { event: DISCONNECTED, id: gone, call_id: nothing }
"#,
    );
    let mut sim = Sim::sip(s);
    let v = sim.run(&[0], 100);
    let Verdict::Failed(f) = &v[0].1 else {
        panic!("{:#?}", sim.trace)
    };
    assert_eq!(f.kind, FailureKind::CallState);
    assert_eq!(sim.elapsed(), Duration::ZERO);
    assert_eq!(
        f.message,
        "gone (DISCONNECTED) on alice: alice has no call `nothing`: a MakeCall or INCOMING node must bind it first"
    );
}

#[test]
fn hold_and_retrieve_reach_the_peer_as_signals() {
    let s = scenario(
        r#"
version: 1
name: hold
instances:
  alice:
    dn: "100"
    steps:
      - { command: MakeCall, target: bob }
      - { command: Hold }
      - { command: Retrieve }
      - { command: Release }
  bob:
    dn: "200"
    steps:
      - { event: INCOMING }
      - { command: Answer }
      - { event: HELD }
      - { event: RETRIEVED }
      - { event: DISCONNECTED }
"#,
    );
    let mut sim = Sim::sip(s);
    assert_eq!(
        sim.run(&[0], 1000),
        vec![(0, Verdict::Passed)],
        "{:#?}",
        sim.trace
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
    let mut sim = Sim::with_world(s, failing(&["dial"]));
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
    let mut sim = Sim::with_world(s, failing(&["dial"]));
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
    let mut sim = Sim::with_world(scenario(CALL), failing_sip(&["answer"]));
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
    let tail: Vec<&str> = sim.trace[sim.trace.len() - 6..]
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "    7 ms  #0 bob    answer failed: expected 2xx from bob within 10 s, got 486 Busy Here at 0.01 s",
            // alice's MakeCall still waited for the answer: its task is ended.
            "    7 ms  #0 alice  abort dial",
            "    7 ms  #0 alice  dial skipped: cancelled: node `answer` failed",
            "    7 ms  #0 alice  hangup skipped: not run: node `answer` failed",
            "    7 ms  #0 bob    gone skipped: not run: node `answer` failed",
            "    7 ms  #0 -      failed: answer (Answer) on bob: expected 2xx from bob within 10 s, got 486 Busy Here at 0.01 s",
        ]
    );
}

#[test]
fn a_report_for_an_aborted_node_is_ignored() {
    let s = scenario(CALL);
    let mut sim = Sim::with_world(s, failing_sip(&["answer"]));
    sim.run(&[0], 100);
    // alice's MakeCall was running, waiting for the answer, when the iteration failed.
    let dial = NodeRef {
        iteration: 0,
        node: 0,
    };
    let before = sim.flow.nodes(0).expect("kept").to_vec();
    let later = sim.now() + Duration::from_secs(1);
    sim.flow.handle(
        later,
        Input::Done {
            at: dial,
            result: Ok(()),
        },
    );
    assert_eq!(sim.flow.poll_action(), None);
    assert_eq!(sim.flow.nodes(0).expect("kept"), before.as_slice());
}

#[test]
fn iterations_are_independent_a_failure_ends_only_its_own() {
    // Iteration 1's Answer fails; the others run their calls in the SIP world.
    let world = Faulty {
        world: SipWorld::default(),
        fails: Box::new(|node, i| (i == 1 && node.id == "answer").then(busy)),
    };
    let mut sim = Sim::with_world(scenario(CALL), Box::new(world));
    let mut v = sim.run(&[0, 1, 2], 1000);
    v.sort_by_key(|(i, _)| *i);
    assert_eq!(v[0], (0, Verdict::Passed), "{:#?}", sim.trace);
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
    let mut sim = Sim::sip(Arc::new(sc));
    assert_eq!(sim.run(&[0], 100), vec![(0, Verdict::Passed)]);
    let runs = sim
        .actions
        .iter()
        .filter(
            |(_, a)| matches!(a, Action::State(c) if c.at.node == 4 && c.to == NodeState::Running),
        )
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
        status: None,
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

#[test]
fn an_incoming_takes_the_oldest_invite_held_and_never_one_refused_meanwhile() {
    let s = scenario(
        r#"
version: 1
name: held
instances:
  bob:
    dn: "200"
    steps:
      - { event: TIMEOUT, id: busy, timeout: 1s }
      - { event: INCOMING, id: first }
      - { event: INCOMING, id: second, call_id: call-2, timeout: 2s }
"#,
    );
    let mut flow = Flow::new(s);
    // Fake time's origin (the flow crate reads no clock).
    let t0 = Sim::sip(scenario(CALL)).now();
    flow.start(t0, 0);
    // Two INVITEs arrive while bob is busy; the first is refused (unclaimed) before he looks.
    flow.handle(
        t0,
        Input::Arrived {
            call: 7,
            role: 0,
            iteration: None,
        },
    );
    flow.handle(
        t0,
        Input::Arrived {
            call: 8,
            role: 0,
            iteration: None,
        },
    );
    flow.handle(t0, Input::Withdrawn { call: 7 });
    let _ = std::iter::from_fn(|| flow.poll_action()).count();
    let t1 = t0 + Duration::from_secs(1);
    flow.handle_timeout(t1);
    let actions: Vec<Action> = std::iter::from_fn(|| flow.poll_action()).collect();
    let first = NodeRef {
        iteration: 0,
        node: 1,
    };
    assert!(
        actions.contains(&Action::Take { at: first, call: 8 }),
        "{actions:?}"
    );
    flow.handle(
        t1,
        Input::Done {
            at: first,
            result: Ok(()),
        },
    );
    let _ = std::iter::from_fn(|| flow.poll_action()).count();
    // None held for the second: it waits its 2 s, then the driver hears what it expected.
    assert_eq!(flow.poll_timeout(), Some(t1 + Duration::from_secs(2)));
    flow.handle_timeout(t1 + Duration::from_secs(2));
    let timed_out = std::iter::from_fn(|| flow.poll_action()).find_map(|a| match a {
        Action::TimedOut(_, f) => Some(f.to_string()),
        _ => None,
    });
    assert_eq!(
        timed_out.as_deref(),
        Some("expected an INVITE to bob within 2 s, none came")
    );
}

#[test]
fn dtmf_is_taken_digit_by_digit_from_what_the_call_heard() {
    let s = scenario(
        r#"
version: 1
name: dtmf
instances:
  alice:
    dn: "100"
    steps:
      - { command: MakeCall, target: bob }
      - { command: SendDTMF, digits: "1234" }
  bob:
    dn: "200"
    steps:
      - { event: INCOMING }
      - { command: Answer }
      - { event: MEDIA, id: flowing }
      - { event: DTMFReceived, id: first, expected: "12" }
      - { event: DTMFReceived, id: second, expected: "35" }
"#,
    );
    let mut sim = Sim::sip(s);
    let v = sim.run(&[0], 1000);
    let Verdict::Failed(f) = &v[0].1 else {
        panic!("{:#?}", sim.trace)
    };
    // The first takes 1 and 2; the second looks at 3 and 4.
    assert_eq!(f.node.as_deref(), Some("second"));
    assert_eq!(f.kind, FailureKind::Media);
    assert_eq!(
        f.message,
        "second (DTMFReceived) on bob: expected DTMF 35, got 34"
    );
    assert!(sim.trace.iter().any(|l| l.ends_with("flowing passed")));
    assert!(sim.trace.iter().any(|l| l.ends_with("first passed")));
}

/// Under load, an INVITE that names its iteration goes to that iteration's INCOMING, whatever
/// order the INCOMINGs began in; one that names none goes to the oldest; one that no running
/// iteration claims is unclaimed (it starts an iteration of an answering role).
#[test]
fn an_invite_that_names_its_iteration_goes_to_it() {
    let s = scenario(
        r#"
instances:
  bob:
    dn: "200"
    steps:
      - { event: INCOMING, id: in, timeout: 5s }
"#,
    );
    let mut flow = Flow::new(s);
    let t0 = Sim::sip(scenario(CALL)).now();
    flow.start(t0, 1);
    flow.start(t0, 2);
    let _ = std::iter::from_fn(|| flow.poll_action()).count();
    let arrive = |call, iteration| Input::Arrived {
        call,
        role: 0,
        iteration,
    };
    flow.handle(t0, arrive(20, Some(2)));
    flow.handle(t0, arrive(30, Some(3)));
    let actions: Vec<Action> = std::iter::from_fn(|| flow.poll_action()).collect();
    let at = |iteration| NodeRef { iteration, node: 0 };
    assert_eq!(
        actions,
        vec![Action::Take {
            at: at(2),
            call: 20
        }]
    );
    assert_eq!(flow.unclaimed(0), 1, "iteration 3 is not running");
    flow.handle(t0, arrive(10, None));
    let actions: Vec<Action> = std::iter::from_fn(|| flow.poll_action()).collect();
    assert_eq!(
        actions,
        vec![Action::Take {
            at: at(1),
            call: 10
        }]
    );
    flow.start(t0, 3);
    let actions: Vec<Action> = std::iter::from_fn(|| flow.poll_action()).collect();
    assert!(
        actions.contains(&Action::Take {
            at: at(3),
            call: 30
        }),
        "{actions:?}"
    );
    assert_eq!(flow.unclaimed(0), 0);
}

/// A world that answers each INVITE and request as `reply` says: the node, the target the
/// INVITE goes to (None: the node's own), the fake time now.
type Reply = Box<dyn FnMut(NodeRef, Option<&str>, Duration) -> Vec<(Duration, Input)>>;

struct Replies(Reply);

impl World for Replies {
    fn run(&mut self, _: &Scenario, at: NodeRef, now: Duration) -> Vec<(Duration, Input)> {
        (self.0)(at, None, now)
    }

    fn invite(
        &mut self,
        _: &Scenario,
        at: NodeRef,
        to: Option<&str>,
        now: Duration,
    ) -> Vec<(Duration, Input)> {
        (self.0)(at, to, now)
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn sent(at: NodeRef, to: &str, call: Option<CallId>) -> Input {
    Input::Sent {
        at,
        call,
        to: Some(to.to_owned()),
        who: Some("bob".to_owned()),
    }
}

fn final_(at: NodeRef, response: Final) -> Input {
    Input::Final { at, response }
}

fn dial_scenario(opts: &str) -> Arc<Scenario> {
    scenario(&format!(
        r#"
version: 1
name: dial
instances:
  alice:
    dn: "100"
    steps:
      - {{ command: MakeCall, id: dial, target: "sip:bob@127.0.0.1", timeout: 1s{opts} }}
"#
    ))
}

/// The failure that ended the only iteration, in words.
fn failure_of(v: &[(Iteration, Verdict)]) -> String {
    match v {
        [(_, Verdict::Failed(f))] => f.message.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_makecall_follows_a_redirect_and_asks_again_after_a_422() {
    let s = dial_scenario(", session_expires: 90s");
    let world = Replies(Box::new(|at, to, now| {
        let redirect = Final {
            redirect: Some("sip:carol@127.0.0.2".into()),
            contact: Some("<sip:carol@127.0.0.2>".into()),
            ..Final::of(302, "Moved Temporarily")
        };
        let too_small = Final {
            min_se: Some(1800),
            ..Final::of(422, "Session Interval Too Small")
        };
        match to {
            None => vec![
                (now, sent(at, "sip:bob@127.0.0.1", Some(1))),
                (now + ms(5), final_(at, redirect)),
            ],
            Some(to) if now < ms(10) => vec![
                (now, sent(at, to, Some(2))),
                (now + ms(5), final_(at, too_small)),
            ],
            Some(to) => vec![
                (now, sent(at, to, Some(3))),
                (now + ms(5), final_(at, Final::of(200, "OK"))),
            ],
        }
    }));
    let mut sim = Sim::with_world(s, Box::new(world));
    let v = sim.run(&[0], 100);
    assert_eq!(v, vec![(0, Verdict::Passed)], "{:#?}", sim.trace);
    let at = NodeRef {
        iteration: 0,
        node: 0,
    };
    let asked: Vec<Action> = sim
        .actions
        .iter()
        .map(|(_, a)| a.clone())
        .filter(|a| matches!(a, Action::Invite { .. } | Action::Note { .. }))
        .collect();
    assert_eq!(
        asked,
        vec![
            Action::Invite {
                at,
                to: None,
                session_expires: Some(90)
            },
            Action::Note {
                at,
                message:
                    "302 Moved Temporarily: following it to sip:carol@127.0.0.2 (1 of at most 3)"
                        .into()
            },
            Action::Invite {
                at,
                to: Some("sip:carol@127.0.0.2".into()),
                session_expires: Some(90)
            },
            Action::Note {
                at,
                message: "422: the session interval 90 s is too small; asking again with 1800 s"
                    .into()
            },
            Action::Invite {
                at,
                to: Some("sip:carol@127.0.0.2".into()),
                session_expires: Some(1800)
            },
        ]
    );
}

#[test]
fn a_makecall_with_no_answer_times_out_naming_the_last_provisional() {
    let world = Replies(Box::new(|at, _, now| {
        vec![
            (now, sent(at, "sip:bob@127.0.0.1", Some(7))),
            (
                now + ms(30),
                Input::Signal {
                    call: 7,
                    signal: Signal::Provisional(183),
                },
            ),
            // Long after the node gave up: ignored.
            (now + ms(5000), final_(at, Final::of(200, "OK"))),
        ]
    }));
    let mut sim = Sim::with_world(dial_scenario(""), Box::new(world));
    let v = sim.run(&[0], 100);
    assert_eq!(
        failure_of(&v),
        "dial (MakeCall) on alice: expected 2xx from bob within 1 s, last: 183 Session Progress at 0.03 s; the call is still ringing"
    );
    assert!(
        sim.trace.iter().any(|l| l.ends_with("timed out dial")),
        "{:#?}",
        sim.trace
    );
    assert_eq!(
        sim.elapsed(),
        ms(1000),
        "the late 200 never came: cancelled"
    );
}

#[test]
fn a_makecall_until_ringing_passes_on_a_180_and_fails_on_an_end_before_it() {
    for (signal, want) in [
        (Signal::Provisional(180), None),
        (Signal::Confirmed, None),
        (
            Signal::Ended,
            Some("dial (MakeCall) on alice: the call to bob ended before it rang"),
        ),
    ] {
        let world = Replies(Box::new(move |at, _, now| {
            vec![
                (now, sent(at, "sip:bob@127.0.0.1", Some(7))),
                (now + ms(20), Input::Signal { call: 7, signal }),
            ]
        }));
        let mut sim = Sim::with_world(dial_scenario(", until: ringing"), Box::new(world));
        let v = sim.run(&[0], 100);
        match want {
            None => assert_eq!(v, vec![(0, Verdict::Passed)], "{signal:?}"),
            Some(w) => assert_eq!(failure_of(&v), w),
        }
        assert_eq!(sim.elapsed(), ms(20), "{signal:?}");
    }
    // A 180 that came before the INVITE's report is latched.
    let world = Replies(Box::new(|at, _, now| {
        vec![
            (
                now,
                Input::Signal {
                    call: 7,
                    signal: Signal::Provisional(180),
                },
            ),
            (now + ms(1), sent(at, "sip:bob@127.0.0.1", Some(7))),
        ]
    }));
    let mut sim = Sim::with_world(dial_scenario(", until: ringing"), Box::new(world));
    assert_eq!(sim.run(&[0], 100), vec![(0, Verdict::Passed)]);
}

#[test]
fn a_request_passes_on_its_final_response_and_fails_on_another_or_none() {
    let s = |expect: &str| {
        scenario(&format!(
            r#"
version: 1
name: request
instances:
  alice:
    dn: "100"
    steps:
      - {{ command: SendOptions, id: ask, target: "sip:bob@127.0.0.1", timeout: 1s{expect} }}
"#
        ))
    };
    let answering = |code: u16| {
        Replies(Box::new(move |at, _, now| {
            vec![
                (now, sent(at, "sip:bob@127.0.0.1", None)),
                (now + ms(3), final_(at, Final::of(code, "Reason"))),
            ]
        }))
    };
    let mut sim = Sim::with_world(s(""), Box::new(answering(200)));
    assert_eq!(sim.run(&[0], 100), vec![(0, Verdict::Passed)]);
    let mut sim = Sim::with_world(s(""), Box::new(answering(404)));
    assert_eq!(
        failure_of(&sim.run(&[0], 100)),
        "ask (SendOptions) on alice: expected 2xx to OPTIONS from bob, got 404 Reason"
    );
    let mut sim = Sim::with_world(s(", expect: [404]"), Box::new(answering(404)));
    assert_eq!(sim.run(&[0], 100), vec![(0, Verdict::Passed)]);
    let silent = Replies(Box::new(|at, _, now| {
        vec![(now, sent(at, "sip:bob@127.0.0.1", None))]
    }));
    let mut sim = Sim::with_world(s(""), Box::new(silent));
    assert_eq!(
        failure_of(&sim.run(&[0], 100)),
        "ask (SendOptions) on alice: expected a final response to our OPTIONS from bob within 1 s, none came"
    );
}

#[test]
fn every_command_has_its_timeout_on_the_flows_timer_table() {
    let s = scenario(
        r#"
version: 1
name: slow
instances:
  bob:
    dn: "200"
    steps:
      - { command: Ringing, id: ring, delay: 2s, timeout: 1s }
      - { command: Hold, id: hold, timeout: 1s }
"#,
    );
    // RINGING takes 2.5 s (its delay is not its timeout's); HOLD takes 5 s.
    let script: Script = Box::new(|node, _| {
        let took = if node.id == "ring" { 2_500 } else { 5_000 };
        (ms(took), Ok(()))
    });
    let mut sim = Sim::new(s, script);
    let v = sim.run(&[0], 100);
    assert_eq!(
        failure_of(&v),
        "hold (Hold) on bob: expected Hold to finish within 1 s, it had not"
    );
    assert!(
        sim.trace.iter().any(|l| l.ends_with("timed out hold")),
        "{:#?}",
        sim.trace
    );
    assert_eq!(
        sim.elapsed(),
        ms(3_500),
        "the driver's late Done never comes: its task was ended"
    );
}
