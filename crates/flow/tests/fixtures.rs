//! The flow over every bundled fixture, in memory with fake time: the scripted SIP world
//! (`sim::SipWorld`) carries out each node the flow hands it and answers with the calls'
//! signals, and the actions in order are the snapshot (one per fixture, in
//! `tests/snapshots/`). Then property tests over generated scenarios.

use callflow_flow::chains::{Action, Failed, Input, Iteration, NodeRef, Verdict};
use callflow_flow::sim::{Faulty, Script, Sim, SipWorld, busy};
use events::NodeState;
use proptest::prelude::*;
use scenario::Scenario;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn fixtures() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures");
    let mut files: Vec<_> = ["*.yaml", "*.json", "demo/*.yaml"]
        .iter()
        .flat_map(|p| {
            glob::glob(&root.join(p).display().to_string())
                .expect("a pattern")
                .flatten()
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_fixture_runs_in_memory_and_its_actions_are_the_snapshot() {
    let files = fixtures();
    assert!(files.len() >= 20, "fixtures: {files:?}");
    for path in files {
        let (s, _) = scenario::load(&path)
            .unwrap_or_else(|d| panic!("{} does not load: {d:?}", path.display()));
        let mut sim = Sim::sip(Arc::new(s));
        let v = sim.run(&[0], 10_000);
        // The demo of a failing run fails here too, at the node it fails at on the wire.
        let fails = path.ends_with("demo/failing-call.yaml");
        match &v[..] {
            [(0, Verdict::Failed(f))] if fails => {
                assert_eq!(f.node.as_deref(), Some("bob.3"), "{}", path.display());
            }
            _ => assert_eq!(
                v,
                vec![(0, Verdict::Passed)],
                "{}: {:#?}",
                path.display(),
                sim.trace
            ),
        }
        assert_ran_once(&sim.actions);
        let name = path
            .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"))
            .expect("under fixtures")
            .display()
            .to_string()
            .replace('/', "__");
        insta::assert_snapshot!(name, sim.trace.join("\n"));
    }
}

#[test]
fn a_fixture_runs_a_thousand_iterations_in_memory_each_with_its_own_verdict() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/basic-call.yaml");
    let (s, _) = scenario::load(&path).expect("loads");
    // Every 7th iteration's Answer fails: those fail, and only those.
    let world = Faulty {
        world: SipWorld::default(),
        fails: Box::new(|node, i| (i % 7 == 3 && node.action.name() == "Answer").then(busy)),
    };
    let mut sim = Sim::with_world(Arc::new(s), Box::new(world));
    let all: Vec<Iteration> = (0..1000).collect();
    let v = sim.run(&all, 100_000);
    assert_eq!(v.len(), 1000);
    for (i, verdict) in v {
        assert_eq!(matches!(verdict, Verdict::Failed(_)), i % 7 == 3, "#{i}");
    }
    assert_eq!(sim.flow.running(), 0);
    assert_ran_once(&sim.actions);
}

/// No node of an iteration is handed to the world twice, nor starts running twice.
fn assert_ran_once(actions: &[(Duration, Action)]) {
    let mut runs: HashMap<NodeRef, usize> = HashMap::new();
    let mut starts: HashMap<NodeRef, usize> = HashMap::new();
    for (_, a) in actions {
        match a {
            Action::Run(at) => *runs.entry(*at).or_default() += 1,
            Action::State(c) if c.to == NodeState::Running => {
                *starts.entry(c.at).or_default() += 1;
            }
            _ => {}
        }
    }
    assert!(runs.values().all(|&n| n == 1), "run twice: {runs:?}");
    assert!(
        starts.values().all(|&n| n == 1),
        "started twice: {starts:?}"
    );
}

/// A generated node: its role, whether the flow times it (TIMEOUT) or the world runs it, how
/// long the world takes, whether it passes, and its edges (forward only, as validation
/// ensures: no cycle through success and failure edges; `after` may point anywhere).
#[derive(Clone, Debug)]
struct Gen {
    role: usize,
    delay: bool,
    timeout_ms: u64,
    took_ms: u64,
    passes: bool,
    on_success: Option<usize>,
    on_failure: Option<usize>,
    after: Option<usize>,
}

fn gen_scenario() -> impl Strategy<Value = (usize, Vec<Gen>)> {
    (1usize..=4, 1usize..=12).prop_flat_map(|(roles, n)| {
        let node = (
            0..roles,
            any::<bool>(),
            1u64..5_000,
            0u64..6_000,
            prop::bool::weighted(0.8),
            prop::option::weighted(0.7, 0..n),
            prop::option::weighted(0.3, 0..n),
            prop::option::weighted(0.15, 0..n),
        );
        (Just(roles), prop::collection::vec(node, n)).prop_map(|(roles, nodes)| {
            let nodes = nodes
                .into_iter()
                .enumerate()
                .map(
                    |(i, (role, delay, timeout_ms, took_ms, passes, s, f, after))| Gen {
                        role,
                        delay,
                        timeout_ms,
                        took_ms,
                        passes,
                        on_success: s.filter(|&j| j > i),
                        on_failure: f.filter(|&j| j > i),
                        after: after.filter(|&j| j != i),
                    },
                )
                .collect();
            (roles, nodes)
        })
    })
}

/// A scenario of `roles` instances and the generated nodes, built on the nodes of a small
/// scenario read from YAML (one TIMEOUT, one command the world carries out).
fn build(roles: usize, gens: &[Gen]) -> Scenario {
    let base = scenario::parse_str(
        r#"
version: 1
name: generated
instances:
  r0:
    dn: "100"
    steps:
      - { event: TIMEOUT, id: t }
      - { command: MakeCall, id: c, target: "sip:x@127.0.0.1" }
"#,
        "generated.yaml",
    )
    .expect("the base scenario");
    let mut s = base.clone();
    s.instances = (0..roles)
        .map(|r| {
            let mut i = base.instances[0].clone();
            i.id = format!("r{r}");
            i.label = i.id.clone();
            i.dn = format!("{}", 100 + r);
            i.starts.clear();
            i
        })
        .collect();
    let mut reached = vec![false; gens.len()];
    for g in gens {
        for n in [g.on_success, g.on_failure].into_iter().flatten() {
            reached[n] = true;
        }
    }
    s.nodes = gens
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let mut n = base.nodes[usize::from(!g.delay)].clone();
            n.id = format!("n{i}");
            n.instance = g.role;
            n.timeout = Duration::from_millis(g.timeout_ms);
            n.on_success = g.on_success;
            n.on_failure = g.on_failure;
            n.opts.after = g.after;
            n
        })
        .collect();
    for (i, g) in gens.iter().enumerate() {
        if !reached[i] {
            s.instances[g.role].starts.push(i);
        }
    }
    s
}

fn script(gens: Vec<Gen>) -> Script {
    Box::new(move |node, _| {
        let i: usize = node.id[1..].parse().expect("a generated id");
        let g = &gens[i];
        let r = if g.passes {
            Ok(())
        } else {
            Err(Failed::other("scripted failure"))
        };
        (Duration::from_millis(g.took_ms), r)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every iteration ends, with every node in a final state; no node runs twice; nothing is
    /// left on the timer table; a passed iteration had no unhandled failure.
    #[test]
    fn every_run_ends_and_no_node_runs_twice((roles, gens) in gen_scenario(), iterations in 1u32..4) {
        let s = Arc::new(build(roles, &gens));
        let mut sim = Sim::new(s.clone(), script(gens));
        let all: Vec<Iteration> = (0..iterations).collect();
        let v = sim.run(&all, 100_000);
        prop_assert_eq!(v.len(), iterations as usize, "{:#?}", sim.trace);
        prop_assert_eq!(sim.flow.running(), 0);
        prop_assert_eq!(sim.flow.poll_timeout(), None);
        assert_ran_once(&sim.actions);
        for (i, verdict) in v {
            let nodes = sim.flow.nodes(i).expect("kept");
            for r in nodes {
                prop_assert!(matches!(r.state, NodeState::Passed | NodeState::Failed | NodeState::Skipped), "{:#?}", sim.trace);
            }
            let unhandled = nodes.iter().zip(&s.nodes).any(|(r, n)| r.state == NodeState::Failed && n.on_failure.is_none());
            prop_assert_eq!(matches!(verdict, Verdict::Failed(_)), unhandled, "{:#?}", sim.trace);
        }
    }

    /// A stop ends every iteration at once, whatever runs or waits.
    #[test]
    fn a_stop_ends_every_iteration((roles, gens) in gen_scenario(), stop_ms in 0u64..8_000) {
        let s = Arc::new(build(roles, &gens));
        let mut sim = Sim::new(s, script(gens.clone()));
        sim.stop_at = Some(Duration::from_millis(stop_ms));
        let v = sim.run(&[0, 1], 100_000);
        prop_assert_eq!(v.len(), 2);
        prop_assert!(sim.elapsed() <= Duration::from_millis(stop_ms), "{:#?}", sim.trace);
        prop_assert_eq!(sim.flow.running(), 0);
        prop_assert_eq!(sim.flow.poll_timeout(), None);
        // Once stopped, nothing the world reports changes anything.
        let before: Vec<_> = sim.flow.nodes(0).expect("kept").to_vec();
        for node in 0..gens.len() {
            sim.flow.handle(sim.now(), Input::Done { at: NodeRef { iteration: 0, node }, result: Ok(()) });
        }
        prop_assert_eq!(sim.flow.poll_action(), None);
        prop_assert_eq!(sim.flow.nodes(0).expect("kept"), before.as_slice());
    }
}
