//! A scripted world for the flow, with fake time: it carries out every [`Action::Run`] by a
//! script (how long the node takes, and whether it passes) and writes what happened as a
//! ladder-like trace. Tests of the flow and of every fixture run on it in microseconds, with
//! no socket and no clock.

use crate::chains::{Action, Failed, Flow, Input, Iteration, NodeRef, Verdict};
use events::NodeState;
use scenario::{Node, Scenario};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the world carries out a node: after this long, with this result.
pub type Script = Box<dyn FnMut(&Node, Iteration) -> (Duration, Result<(), Failed>)>;

/// Every node passes after 10 ms.
pub fn all_pass() -> Script {
    Box::new(|_, _| (Duration::from_millis(10), Ok(())))
}

/// The flow and its world.
pub struct Sim {
    pub flow: Flow,
    t0: Instant,
    now: Instant,
    script: Script,
    /// Nodes the world is carrying out, by when they finish.
    pending: BTreeMap<(Instant, u64), (NodeRef, Result<(), Failed>)>,
    seq: u64,
    /// Every action, in order, as text.
    pub trace: Vec<String>,
    /// Every action, in order.
    pub actions: Vec<(Duration, Action)>,
    /// Stop the run at this time after its start.
    pub stop_at: Option<Duration>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim").field("trace", &self.trace).finish()
    }
}

impl Sim {
    #[allow(clippy::disallowed_methods)] // the origin of fake time; nothing else reads a clock
    pub fn new(scenario: Arc<Scenario>, script: Script) -> Self {
        let t0 = Instant::now();
        Self {
            flow: Flow::new(scenario),
            t0,
            now: t0,
            script,
            pending: BTreeMap::new(),
            seq: 0,
            trace: Vec::new(),
            actions: Vec::new(),
            stop_at: None,
        }
    }

    /// The fake time now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Fake time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// Starts these iterations and runs until nothing is left to do (or `max_steps` inputs,
    /// a bound against a flow that never ends). Returns the verdicts in the order they came.
    pub fn run(&mut self, iterations: &[Iteration], max_steps: usize) -> Vec<(Iteration, Verdict)> {
        let mut verdicts = Vec::new();
        for &i in iterations {
            self.flow.start(self.now, i);
        }
        self.drain(&mut verdicts);
        for _ in 0..max_steps {
            let next_done = self.pending.keys().next().map(|(at, _)| *at);
            let stop = self.stop_at.map(|d| self.t0 + d);
            let next = [next_done, self.flow.poll_timeout(), stop]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next else { break };
            self.now = self.now.max(next);
            if stop.is_some_and(|s| s <= self.now) {
                self.stop_at = None;
                self.trace.push(format!("{:>8}  stop", ms(self.elapsed())));
                self.flow.handle(self.now, Input::Stop);
            } else if next_done == Some(next) {
                let key = *self.pending.keys().next().expect("a pending node");
                let (at, result) = self.pending.remove(&key).expect("a pending node");
                self.flow.handle(self.now, Input::Done { at, result });
            } else {
                self.flow.handle_timeout(self.now);
            }
            self.drain(&mut verdicts);
        }
        verdicts
    }

    fn drain(&mut self, verdicts: &mut Vec<(Iteration, Verdict)>) {
        while let Some(a) = self.flow.poll_action() {
            let t = self.elapsed();
            let s = self.flow.scenario().clone();
            let line = match &a {
                Action::Run(at) => {
                    let node = &s.nodes[at.node];
                    let (took, result) = (self.script)(node, at.iteration);
                    self.seq += 1;
                    self.pending
                        .insert((self.now + took, self.seq), (*at, result));
                    format!("run {} ({})", node.id, node.action.name())
                }
                Action::Abort(at) => {
                    self.pending.retain(|_, (p, _)| p != at);
                    format!("abort {}", s.nodes[at.node].id)
                }
                Action::State(c) => {
                    let node = &s.nodes[c.at.node];
                    let mut l = format!("{} {}", node.id, c.to.as_str());
                    if c.to != NodeState::Running
                        && let Some(r) = &c.reason
                    {
                        let _ = write!(l, ": {r}");
                    }
                    if c.handled {
                        l.push_str(" (handled)");
                    }
                    l
                }
                Action::Ended { iteration, verdict } => {
                    verdicts.push((*iteration, verdict.clone()));
                    match verdict {
                        Verdict::Passed => "passed".to_owned(),
                        Verdict::Stopped => "stopped".to_owned(),
                        Verdict::Failed(f) => format!("failed: {}", f.message),
                    }
                }
            };
            let who = match &a {
                Action::Run(at) | Action::Abort(at) => {
                    s.instances[s.nodes[at.node].instance].id.clone()
                }
                Action::State(c) => s.instances[s.nodes[c.at.node].instance].id.clone(),
                Action::Ended { .. } => "-".to_owned(),
            };
            let iteration = match &a {
                Action::Run(at) | Action::Abort(at) => at.iteration,
                Action::State(c) => c.at.iteration,
                Action::Ended { iteration, .. } => *iteration,
            };
            self.trace
                .push(format!("{:>8}  #{iteration} {who:<6} {line}", ms(t)));
            self.actions.push((t, a));
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}
