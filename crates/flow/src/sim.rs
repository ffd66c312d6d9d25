//! A scripted world for the flow, with fake time: it carries out every [`Action::Run`] and
//! answers with the inputs a real driver would give (a call bound, a call's signals, a node
//! done), each at its time, and writes what happened as a ladder-like trace. Tests of the flow
//! and of every fixture run on it in microseconds, with no socket and no clock.
//!
//! Two worlds: [`Scripted`] (each node passes or fails as a closure says, after its delay) and
//! [`SipWorld`] (a small model of SIP between the scenario's own UAs: a MakeCall's INVITE rings
//! its target's next INCOMING and gets a 200 when that call is answered, Release ends both
//! legs, Hold holds the peer...).

use crate::calls::{CallId, Signal};
use crate::chains::{Action, Failed, Final, Flow, Input, Iteration, NodeRef, Verdict, Why};
use events::NodeState;
use scenario::{Action as Step, Node, Scenario};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What carries out the nodes the flow hands over.
pub trait World {
    /// Starts node `at` at `now` (fake time since the start); returns the inputs it causes,
    /// each with the time it comes. The node's own `Done` may come later, from another node
    /// (an Answer completes the MakeCall it answers).
    fn run(&mut self, s: &Scenario, at: NodeRef, now: Duration) -> Vec<(Duration, Input)>;

    /// Sends the INVITE of MakeCall `at` (to `to`, or to its target); returns the inputs it
    /// causes ([`Input::Sent`], the call's signals, [`Input::Final`]). By default, as `run`
    /// carries the node out: its `Done` decides it.
    fn invite(
        &mut self,
        s: &Scenario,
        at: NodeRef,
        _to: Option<&str>,
        now: Duration,
    ) -> Vec<(Duration, Input)> {
        self.run(s, at, now)
    }

    /// The flow gave up on node `at` (its iteration ended): forget what it waited for.
    fn abort(&mut self, _at: NodeRef) {}

    /// An INCOMING takes a call that arrived at its role: it is bound to the node's call id,
    /// and the node passes.
    fn take(
        &mut self,
        s: &Scenario,
        at: NodeRef,
        call: CallId,
        now: Duration,
    ) -> Vec<(Duration, Input)> {
        let node = &s.nodes[at.node];
        vec![
            (
                now,
                Input::Bound {
                    call,
                    iteration: at.iteration,
                    role: node.instance,
                    name: node.call_id.clone(),
                    outgoing: false,
                },
            ),
            (now, Input::Done { at, result: Ok(()) }),
        ]
    }
}

/// How a scripted world carries out a node: after this long, with this result.
pub type Script = Box<dyn FnMut(&Node, Iteration) -> (Duration, Result<(), Failed>)>;

/// Every node passes after 10 ms.
pub fn all_pass() -> Script {
    Box::new(|_, _| (Duration::from_millis(10), Ok(())))
}

/// A world that carries out each node as its script says, and nothing more.
pub struct Scripted(pub Script);

impl World for Scripted {
    fn run(&mut self, s: &Scenario, at: NodeRef, now: Duration) -> Vec<(Duration, Input)> {
        let (took, result) = (self.0)(&s.nodes[at.node], at.iteration);
        vec![(now + took, Input::Done { at, result })]
    }
}

/// The flow and its world.
pub struct Sim {
    pub flow: Flow,
    t0: Instant,
    now: Instant,
    world: Box<dyn World>,
    /// Inputs the world has yet to give, by when they come.
    pending: BTreeMap<(Instant, u64), Input>,
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
    /// A flow over `scenario` whose nodes run as `script` says.
    pub fn new(scenario: Arc<Scenario>, script: Script) -> Self {
        Self::with_world(scenario, Box::new(Scripted(script)))
    }

    /// A flow over `scenario` between its own UAs, in [`SipWorld`].
    pub fn sip(scenario: Arc<Scenario>) -> Self {
        Self::with_world(scenario, Box::new(SipWorld::default()))
    }

    #[allow(clippy::disallowed_methods)] // the origin of fake time; nothing else reads a clock
    pub fn with_world(scenario: Arc<Scenario>, world: Box<dyn World>) -> Self {
        let t0 = Instant::now();
        Self {
            flow: Flow::new(scenario),
            t0,
            now: t0,
            world,
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

    fn give(&mut self, at: Duration, input: Input) {
        self.seq += 1;
        self.pending.insert((self.t0 + at, self.seq), input);
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
            let next_input = self.pending.keys().next().map(|(at, _)| *at);
            let stop = self.stop_at.map(|d| self.t0 + d);
            let next = [next_input, self.flow.poll_timeout(), stop]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next else { break };
            self.now = self.now.max(next);
            if stop.is_some_and(|s| s <= self.now) {
                self.stop_at = None;
                self.trace.push(format!("{:>8}  stop", ms(self.elapsed())));
                self.flow.handle(self.now, Input::Stop);
            } else if next_input == Some(next) {
                let key = *self.pending.keys().next().expect("a pending input");
                let input = self.pending.remove(&key).expect("a pending input");
                self.flow.handle(self.now, input);
            } else {
                self.flow.handle_timeout(self.now);
            }
            self.drain(&mut verdicts);
        }
        verdicts
    }

    /// What carries node `at` out ends: the world forgets it, and what it would still report
    /// of it never comes.
    fn cancel(&mut self, at: NodeRef) {
        self.world.abort(at);
        self.pending.retain(|_, i| {
            !matches!(i, Input::Done { at: p, .. } | Input::Sent { at: p, .. } | Input::Final { at: p, .. } if *p == at)
        });
    }

    fn drain(&mut self, verdicts: &mut Vec<(Iteration, Verdict)>) {
        while let Some(a) = self.flow.poll_action() {
            let t = self.elapsed();
            let s = self.flow.scenario().clone();
            let line = match &a {
                Action::Run(at) => {
                    let node = &s.nodes[at.node];
                    for (when, input) in self.world.run(&s, *at, t) {
                        self.give(when, input);
                    }
                    format!("run {} ({})", node.id, node.action.name())
                }
                Action::Invite { at, to, .. } => {
                    let node = &s.nodes[at.node];
                    for (when, input) in self.world.invite(&s, *at, to.as_deref(), t) {
                        self.give(when, input);
                    }
                    match to {
                        Some(to) => format!("invite {} (to {to})", node.id),
                        None => format!("invite {} (MakeCall)", node.id),
                    }
                }
                Action::Note { at, message } => {
                    format!("note {}: {message}", s.nodes[at.node].id)
                }
                Action::Take { at, call } => {
                    for (when, input) in self.world.take(&s, *at, *call, t) {
                        self.give(when, input);
                    }
                    format!("take {} (call {call})", s.nodes[at.node].id)
                }
                Action::TimedOut(at, failed) => {
                    // As the driver: what carried the node out is ended first.
                    self.cancel(*at);
                    self.give(
                        t,
                        Input::Done {
                            at: *at,
                            result: Err(failed.clone()),
                        },
                    );
                    format!("timed out {}", s.nodes[at.node].id)
                }
                Action::Abort(at) => {
                    self.cancel(*at);
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
            let (iteration, who) = match &a {
                Action::Run(at)
                | Action::Abort(at)
                | Action::TimedOut(at, _)
                | Action::Invite { at, .. }
                | Action::Note { at, .. }
                | Action::Take { at, .. } => (
                    at.iteration,
                    s.instances[s.nodes[at.node].instance].id.clone(),
                ),
                Action::State(c) => (
                    c.at.iteration,
                    s.instances[s.nodes[c.at.node].instance].id.clone(),
                ),
                Action::Ended { iteration, .. } => (*iteration, "-".to_owned()),
            };
            self.trace
                .push(format!("{:>8}  #{iteration} {who:<6} {line}", ms(t)));
            self.actions.push((t, a));
        }
    }
}

/// The reason phrase of the final responses the world gives.
fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        487 => "Request Terminated",
        603 => "Decline",
        _ => "Response",
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// How long the SIP world takes for a hop (a request or a response between our UAs).
const HOP: Duration = Duration::from_millis(1);
/// How long a command that only sends takes.
const SEND: Duration = Duration::from_millis(2);

/// What an outgoing call of the world does when it is answered.
#[derive(Debug)]
enum OnAnswer {
    /// A MakeCall's INVITE: its final response goes to the node.
    MakeCall(NodeRef),
    /// It is the transferee's call to the transfer target: the transfer completes (the name
    /// moves to it, both legs say Transferred, the transferor hangs up).
    Transfer {
        node: NodeRef,
        transferee_old: CallId,
        primary: CallId,
    },
}

#[derive(Debug)]
struct SimCall {
    peer: Option<CallId>,
    up: bool,
    /// The (iteration, role, logical call id) bound to it.
    bound: Option<(Iteration, usize, String)>,
    on_answer: Option<OnAnswer>,
}

/// A small model of SIP between the scenario's own UAs (and a peer outside that answers every
/// call at once): enough for the flow to meet the signals and orders real calls give: a
/// MakeCall rings its target's next INCOMING and passes when that call is answered, Release,
/// Cancel and Reject end both legs, Hold and Retrieve reach the peer, a blind transfer makes
/// the transferee call the target, an attended one replaces the consulted call.
#[derive(Debug, Default)]
pub struct SipWorld {
    next: CallId,
    calls: HashMap<CallId, SimCall>,
    names: HashMap<(Iteration, usize, String), CallId>,
}

type Out = Vec<(Duration, Input)>;

impl SipWorld {
    fn new_call(&mut self) -> CallId {
        self.next += 1;
        self.calls.insert(
            self.next,
            SimCall {
                peer: None,
                up: true,
                bound: None,
                on_answer: None,
            },
        );
        self.next
    }

    fn pair(&mut self) -> (CallId, CallId) {
        let (a, b) = (self.new_call(), self.new_call());
        if let Some(c) = self.calls.get_mut(&a) {
            c.peer = Some(b);
        }
        if let Some(c) = self.calls.get_mut(&b) {
            c.peer = Some(a);
        }
        (a, b)
    }

    fn bind(
        &mut self,
        call: CallId,
        iteration: Iteration,
        role: usize,
        name: &str,
        outgoing: bool,
    ) -> Input {
        let key = (iteration, role, name.to_owned());
        self.names.insert(key.clone(), call);
        if let Some(c) = self.calls.get_mut(&call) {
            c.bound = Some(key);
        }
        Input::Bound {
            call,
            iteration,
            role,
            name: name.to_owned(),
            outgoing,
        }
    }

    fn signal(call: CallId, signal: Signal, when: Duration) -> (Duration, Input) {
        (when, Input::Signal { call, signal })
    }

    /// Both legs of a call get `signal`.
    fn both(&self, call: CallId, signal: Signal, when: Duration) -> Out {
        let mut v = vec![Self::signal(call, signal, when)];
        if let Some(p) = self.peer_of(call) {
            v.push(Self::signal(p, signal, when + HOP));
        }
        v
    }

    fn peer_of(&self, call: CallId) -> Option<CallId> {
        self.calls.get(&call).and_then(|c| c.peer)
    }

    fn role_named(s: &Scenario, target: &str) -> Option<usize> {
        s.instances
            .iter()
            .position(|i| i.id == target || i.label == target || i.dn == target)
    }

    /// The INVITE of `ours` (already paired with `theirs`) reaches `callee`: it rings (100,
    /// 180) and is held for the next INCOMING there (the flow's to give).
    fn ring(callee: usize, ours: CallId, theirs: CallId, t: Duration) -> Out {
        vec![
            Self::signal(theirs, Signal::Provisional(180), t),
            (
                t,
                Input::Arrived {
                    call: theirs,
                    role: callee,
                    iteration: None,
                },
            ),
            Self::signal(ours, Signal::Provisional(180), t + HOP),
        ]
    }

    /// Ends both legs; a MakeCall still dialing on either gets the final response `code`.
    fn end(&mut self, call: CallId, code: u16, when: Duration) -> Out {
        let mut out = self.both(call, Signal::Ended, when);
        for c in [Some(call), self.peer_of(call)].into_iter().flatten() {
            let Some(sc) = self.calls.get_mut(&c) else {
                continue;
            };
            sc.up = false;
            match sc.on_answer.take() {
                Some(OnAnswer::MakeCall(at)) => {
                    let response = Final::of(code, reason(code));
                    out.push((when + HOP, Input::Final { at, response }));
                }
                Some(OnAnswer::Transfer { node, .. }) => {
                    let result = Err(Failed::other(format!(
                        "the transfer failed: the target answered {code}"
                    )));
                    out.push((when + HOP, Input::Done { at: node, result }));
                }
                None => {}
            }
        }
        out
    }

    /// `call`'s callee answered: both legs are confirmed (and their RTP flows), and what
    /// waited for it goes on.
    fn answered(&mut self, call: CallId, t: Duration) -> Out {
        let mut out = self.both(call, Signal::Confirmed, t);
        out.extend(self.both(call, Signal::MediaFlowing, t + HOP));
        let Some(ours) = self.peer_of(call) else {
            return out;
        };
        match self.calls.get_mut(&ours).and_then(|c| c.on_answer.take()) {
            Some(OnAnswer::MakeCall(at)) => out.push((
                t + HOP,
                Input::Final {
                    at,
                    response: Final::of(200, "OK"),
                },
            )),
            Some(OnAnswer::Transfer {
                node,
                transferee_old,
                primary,
            }) => {
                // The transferee's name moves to its new call, both of its legs say so, and
                // the transferor hangs up the old call (RFC 5589 §6).
                if let Some((i, role, name)) = self
                    .calls
                    .get(&transferee_old)
                    .and_then(|c| c.bound.clone())
                {
                    out.push((t + HOP, self.bind(ours, i, role, &name, true)));
                }
                out.push(Self::signal(ours, Signal::Transferred, t + HOP));
                out.push(Self::signal(transferee_old, Signal::Transferred, t + HOP));
                out.extend(self.end(primary, 200, t + 2 * HOP));
                out.push(Self::done(node, t + 3 * HOP));
            }
            None => {}
        }
        out
    }

    fn done(at: NodeRef, when: Duration) -> (Duration, Input) {
        (when, Input::Done { at, result: Ok(()) })
    }

    fn no_call(s: &Scenario, node: &Node, name: &str) -> Result<(), Failed> {
        Err(Why::CallState(format!(
            "{} has no call `{name}`",
            s.instances[node.instance].label
        ))
        .into())
    }

    fn named(&self, at: NodeRef, role: usize, name: &str) -> Option<CallId> {
        self.names
            .get(&(at.iteration, role, name.to_owned()))
            .copied()
            .filter(|c| self.calls.get(c).is_some_and(|c| c.up))
    }

    /// A MakeCall's INVITE: to one of the scenario's roles it rings there and waits for the
    /// answer (the flow keeps the node's timeout); to anyone else, it is answered at once.
    fn make_call(&mut self, s: &Scenario, at: NodeRef, target: &str, now: Duration) -> Out {
        let node = &s.nodes[at.node];
        let role = node.instance;
        let t = now + SEND;
        let sent = |call| Input::Sent {
            at,
            call: Some(call),
            to: Some(target.to_owned()),
            who: Some(target.to_owned()),
        };
        let Some(callee) = Self::role_named(s, target) else {
            // A peer outside the scenario: it rings and answers at once.
            let ours = self.new_call();
            return vec![
                (
                    now,
                    self.bind(ours, at.iteration, role, &node.call_id, true),
                ),
                (now, sent(ours)),
                Self::signal(ours, Signal::Provisional(180), t),
                Self::signal(ours, Signal::Confirmed, t + HOP),
                (
                    t + HOP,
                    Input::Final {
                        at,
                        response: Final::of(200, "OK"),
                    },
                ),
            ];
        };
        let (ours, theirs) = self.pair();
        let mut out = vec![
            (
                now,
                self.bind(ours, at.iteration, role, &node.call_id, true),
            ),
            (now, sent(ours)),
        ];
        out.extend(Self::ring(callee, ours, theirs, t));
        if let Some(c) = self.calls.get_mut(&ours) {
            c.on_answer = Some(OnAnswer::MakeCall(at));
        }
        out
    }

    fn transfer(&mut self, s: &Scenario, at: NodeRef, now: Duration) -> Out {
        let node = &s.nodes[at.node];
        let role = node.instance;
        let t = now + SEND;
        let (primary_name, consult_name, target) = match &node.action {
            Step::BlindTransfer { target_user, .. } => {
                (node.call_id.as_str(), None, Some(target_user.as_str()))
            }
            Step::AttendedTransfer {
                primary_call_id,
                consult_call_id,
            } => (
                primary_call_id.as_str(),
                Some(consult_call_id.as_str()),
                None,
            ),
            _ => return Vec::new(),
        };
        let Some(primary) = self.named(at, role, primary_name) else {
            let result = Self::no_call(s, node, primary_name);
            return vec![(t, Input::Done { at, result })];
        };
        let Some(transferee_old) = self.peer_of(primary) else {
            let result = Err(Failed::other("the transferee is outside the scenario"));
            return vec![(t, Input::Done { at, result })];
        };
        let (n1, n2) = self.pair();
        if let Some(c) = self.calls.get_mut(&n1) {
            c.on_answer = Some(OnAnswer::Transfer {
                node: at,
                transferee_old,
                primary,
            });
        }
        let mut out = Vec::new();
        match (consult_name, target) {
            (Some(consult_name), _) => {
                // Attended: the transferee's INVITE with Replaces takes the consulted call's
                // place at its other end, which answers it at once and ends the old one.
                let Some(consult) = self.named(at, role, consult_name) else {
                    let result = Self::no_call(s, node, consult_name);
                    return vec![(t, Input::Done { at, result })];
                };
                let Some(c_old) = self.peer_of(consult) else {
                    return vec![(t, Input::Done { at, result: Ok(()) })];
                };
                if let Some((i, r, name)) = self.calls.get(&c_old).and_then(|c| c.bound.clone()) {
                    out.push((t + HOP, self.bind(n2, i, r, &name, false)));
                }
                out.push(Self::signal(n2, Signal::Replaced, t + HOP));
                out.push(Self::signal(c_old, Signal::Replaced, t + HOP));
                out.extend(self.end(c_old, 200, t + 2 * HOP));
                out.extend(self.answered(n2, t + 2 * HOP));
            }
            (None, Some(target)) => match Self::role_named(s, target) {
                Some(callee) => out.extend(Self::ring(callee, n1, n2, t + HOP)),
                // A target outside the scenario answers at once.
                None => out.extend(self.answered(n2, t + HOP)),
            },
            (None, None) => {}
        }
        out
    }
}

impl World for SipWorld {
    fn invite(&mut self, s: &Scenario, at: NodeRef, to: Option<&str>, now: Duration) -> Out {
        match (&s.nodes[at.node].action, to) {
            (_, Some(to)) => self.make_call(s, at, to, now),
            (Step::MakeCall { target }, None) => self.make_call(s, at, target, now),
            _ => Vec::new(),
        }
    }

    fn take(&mut self, s: &Scenario, at: NodeRef, call: CallId, now: Duration) -> Out {
        let node = &s.nodes[at.node];
        vec![
            (
                now,
                self.bind(call, at.iteration, node.instance, &node.call_id, false),
            ),
            Self::done(at, now),
        ]
    }

    fn run(&mut self, s: &Scenario, at: NodeRef, now: Duration) -> Out {
        let node = &s.nodes[at.node];
        let role = node.instance;
        let named = self.named(at, role, &node.call_id);
        let t = now + SEND;
        match &node.action {
            // A request is answered 200 a hop later.
            Step::SendRequest { .. } | Step::Subscribe { .. } => vec![
                (
                    now,
                    Input::Sent {
                        at,
                        call: None,
                        to: None,
                        who: None,
                    },
                ),
                (
                    t + HOP,
                    Input::Final {
                        at,
                        response: Final::of(200, "OK"),
                    },
                ),
            ],
            Step::Answer => {
                let Some(call) = named else {
                    let result = Self::no_call(s, node, &node.call_id);
                    return vec![(t, Input::Done { at, result })];
                };
                let mut out = self.answered(call, t + HOP);
                out.push(Self::done(at, t + 2 * HOP));
                out
            }
            Step::Release | Step::Cancel | Step::Reject { .. } => {
                let code = match &node.action {
                    Step::Reject { code, .. } => *code,
                    Step::Cancel => 487,
                    _ => 480,
                };
                let Some(call) = named else {
                    let result = Self::no_call(s, node, &node.call_id);
                    return vec![(t, Input::Done { at, result })];
                };
                let mut out = self.end(call, code, t + HOP);
                out.push(Self::done(at, t + 2 * HOP));
                out
            }
            Step::Hold | Step::Retrieve => {
                let signal = if matches!(node.action, Step::Hold) {
                    Signal::Held
                } else {
                    Signal::Retrieved
                };
                let mut out = Vec::new();
                if let Some(p) = named.and_then(|c| self.peer_of(c)) {
                    out.push(Self::signal(p, signal, t));
                }
                out.push(Self::done(at, t + HOP));
                out
            }
            Step::BlindTransfer { .. } | Step::AttendedTransfer { .. } => self.transfer(s, at, now),
            Step::SendRinging | Step::SendProgress => {
                let code = if matches!(node.action, Step::SendRinging) {
                    180
                } else {
                    183
                };
                let mut out = Vec::new();
                if let Some(c) = named {
                    out.extend(self.both(c, Signal::Provisional(code), t));
                }
                out.push(Self::done(at, t + HOP));
                out
            }
            // Each digit reaches the peer, an interval apart.
            Step::SendDtmf { digits, interval } => {
                let mut out = Vec::new();
                let mut at_time = t;
                if let Some(p) = named.and_then(|c| self.peer_of(c)) {
                    for d in digits.chars() {
                        out.push(Self::signal(p, Signal::Digit(d), at_time));
                        at_time += *interval;
                    }
                }
                out.push(Self::done(at, at_time));
                out
            }
            // Everything else (requests, media, checks) passes in the time it takes to send.
            _ => vec![Self::done(at, t)],
        }
    }

    fn abort(&mut self, at: NodeRef) {
        for c in self.calls.values_mut() {
            let waits = match &c.on_answer {
                Some(OnAnswer::MakeCall(n)) => *n == at,
                Some(OnAnswer::Transfer { node, .. }) => *node == at,
                None => false,
            };
            if waits {
                c.on_answer = None;
            }
        }
    }
}

/// What the nodes [`Faulty`] fails report: a 486 where a 2xx was expected.
pub fn busy() -> Failed {
    Why::Status {
        expected: "2xx".into(),
        from: "bob".into(),
        waited: Some(Duration::from_secs(10)),
        got: "486 Busy Here".into(),
        at: Some(Duration::from_millis(5)),
        detail: String::new(),
    }
    .into()
}

/// Picks the nodes a [`Faulty`] world fails, and how.
pub type Faults = Box<dyn Fn(&Node, Iteration) -> Option<Failed>>;

/// A world in which the nodes `fails` picks fail as it says (after 5 ms), and every other node
/// is carried out by `world`.
pub struct Faulty<W> {
    pub world: W,
    pub fails: Faults,
}

impl<W> Faulty<W> {
    /// The failure of node `at` 5 ms from `now`, if `fails` picks it.
    fn failure(&self, s: &Scenario, at: NodeRef, now: Duration) -> Option<Vec<(Duration, Input)>> {
        let failed = (self.fails)(&s.nodes[at.node], at.iteration)?;
        Some(vec![(
            now + Duration::from_millis(5),
            Input::Done {
                at,
                result: Err(failed),
            },
        )])
    }
}

impl<W: World> World for Faulty<W> {
    fn invite(
        &mut self,
        s: &Scenario,
        at: NodeRef,
        to: Option<&str>,
        now: Duration,
    ) -> Vec<(Duration, Input)> {
        self.failure(s, at, now)
            .unwrap_or_else(|| self.world.invite(s, at, to, now))
    }

    fn run(&mut self, s: &Scenario, at: NodeRef, now: Duration) -> Vec<(Duration, Input)> {
        self.failure(s, at, now)
            .unwrap_or_else(|| self.world.run(s, at, now))
    }

    fn abort(&mut self, at: NodeRef) {
        self.world.abort(at);
    }

    fn take(
        &mut self,
        s: &Scenario,
        at: NodeRef,
        call: CallId,
        now: Duration,
    ) -> Vec<(Duration, Input)> {
        self.world.take(s, at, call, now)
    }
}
