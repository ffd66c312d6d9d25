//! The chain cursor: which node of which iteration runs when, what follows it, when an
//! iteration has ended and with what verdict. Sans-IO, in the quinn-proto shape:
//!
//! - [`Flow::start`] begins an iteration; [`Flow::handle`] takes what the driver observed (a
//!   node it ran has finished, a stop); [`Flow::handle_timeout`] fires the timers due.
//! - [`Flow::poll_action`] says what to do next; [`Flow::poll_timeout`] when to call
//!   `handle_timeout` again.
//!
//! **The run-loop contract** (str0m's "single-mutation invariant"): after every `start`,
//! `handle` or `handle_timeout`, drain `poll_action` until it returns `None`, then sleep until
//! `poll_timeout` (or the next input). Every method takes `now` and never reads a clock, so a
//! test drives a whole scenario with fake time in microseconds.
//!
//! What the flow owns: the chain cursor of each role (one node at a time per role and
//! iteration; a role's start chains run one after another, then the nodes other roles hand to
//! it, in the order they were handed), success and failure edges, the cross-role `after` waits,
//! TIMEOUT nodes, INCOMING (the INVITEs held at each role) and the nodes that wait on a call's
//! events, digits or first RTP ([`crate::calls`]), each with its timeout in the timer table;
//! failure propagation (a failure with no failure edge ends its iteration, and only it), and a
//! stop (every iteration ends `Stopped`).
//!
//! The nodes that send a request and wait for its final response (MakeCall, REQUEST,
//! SUBSCRIBE) are decided here too: the driver says the request went out ([`Input::Sent`])
//! and which final response came ([`Input::Final`]); the flow keeps their timeout, takes or
//! refuses the response ([`crate::dial`]), and for a MakeCall asks for the next INVITE
//! ([`Action::Invite`]: after a 422, to a redirect's target) or watches the call ring
//! (`until: ringing`). What any other command does on the wire is the driver's: it gets
//! [`Action::Run`] (or [`Action::Take`]) and answers [`Input::Done`].
//!
//! Everything is keyed by (iteration, node); a node's role is its instance. A functional run is
//! iteration 0; a load run starts more.

use events::{Failure, NodeState};
use scenario::{Action as Step, NodeIdx, Scenario, Until};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An iteration's number: 0 for a functional run.
pub type Iteration = u32;

/// A node of an iteration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeRef {
    pub iteration: Iteration,
    pub node: NodeIdx,
}

pub use crate::calls::{CallId, Signal};
use crate::calls::{Calls, Wait, wait_of};
pub use crate::dial::Final;
use crate::dial::{Dial, Next, expected_codes, provisional_reason};
pub use crate::failure::{Failed, Why};
use crate::media::Digits;
use crate::secs;

/// What the driver observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A node the driver ran ([`Action::Run`]) has finished. A report for a node that is no
    /// longer running (its iteration ended, [`Action::Abort`]) is ignored.
    Done {
        at: NodeRef,
        result: Result<(), Failed>,
    },
    /// Stop: every iteration still running ends `Stopped`.
    Stop,
    /// A call was bound to a node's logical call id (a MakeCall placed it, an INCOMING took it,
    /// a transfer or a Replaces moved the name to it).
    Bound {
        call: CallId,
        iteration: Iteration,
        role: usize,
        name: String,
        /// We placed it (else we took it).
        outgoing: bool,
    },
    /// Something happened to a call (bound or not yet).
    Signal { call: CallId, signal: Signal },
    /// An INVITE arrived at a role and is held, ringing, for its next INCOMING. `iteration`:
    /// the iteration it says it belongs to (between a run's own roles under load), which only
    /// an INCOMING of that iteration takes; `None` for any INCOMING, in the order they began.
    Arrived {
        call: CallId,
        role: usize,
        iteration: Option<Iteration>,
    },
    /// That INVITE was refused before an INCOMING took it.
    Withdrawn { call: CallId },
    /// The call is gone (closed after its iteration ended): its log is dropped.
    Closed { call: CallId },
    /// The request of node `at` (a MakeCall's INVITE, a REQUEST, a SUBSCRIBE) went out: to
    /// `to` (a URI), to `who` (as failures name the other end; the first INVITE's names it for
    /// the whole MakeCall); an INVITE as call `call`.
    Sent {
        at: NodeRef,
        call: Option<CallId>,
        to: Option<String>,
        who: Option<String>,
    },
    /// The final response to that request came.
    Final { at: NodeRef, response: Final },
}

/// A node's change of state, as the `node_state` event says it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    pub at: NodeRef,
    pub from: NodeState,
    pub to: NodeState,
    pub reason: Option<String>,
    /// How long it ran (to a final state from Running).
    pub duration: Option<Duration>,
    /// A failure its failure edge handles.
    pub handled: bool,
}

/// How an iteration ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    /// The first failure no failure edge handled.
    Failed(Failure),
    Stopped,
}

/// What the driver does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Carry out this node (its command, or its wait for an event) on its role; answer with
    /// [`Input::Done`].
    Run(NodeRef),
    /// The node's iteration has ended while it ran: end what carries it out. Its `Done`, if one
    /// still comes, is ignored.
    Abort(NodeRef),
    /// An INCOMING takes this call that arrived at its role: bind it to the node's call id in
    /// its iteration, check the INVITE, and answer [`Input::Done`] (carried out off the lock
    /// the driver keeps the flow under: binding it is reported back as [`Input::Bound`]).
    Take { at: NodeRef, call: CallId },
    /// A node ran out of time (its timeout is the flow's, on its timer table, for every node):
    /// end what carries it out, and answer [`Input::Done`] with this failure, with what never
    /// arrived on the wire if the driver knows it. A command the driver carries out
    /// ([`Action::Run`]) may have its own verdict at its timeout (what it waited for, in its
    /// words; a loop that plays until its timeout passes), which the driver answers instead.
    TimedOut(NodeRef, Failed),
    /// Send the INVITE of MakeCall `at` (its call id in its iteration, from its role): to `to`,
    /// or to the node's own target when None; asking for a session interval of
    /// `session_expires` seconds when Some. Answer [`Input::Sent`] once it went, then
    /// [`Input::Final`] with its final response, or [`Input::Done`] with the failure if it
    /// could not go or ended without one.
    Invite {
        at: NodeRef,
        to: Option<String>,
        session_expires: Option<u32>,
    },
    /// Say this about node `at` (a log line on its role and call).
    Note { at: NodeRef, message: String },
    /// A node changed state.
    State(StateChange),
    /// An iteration has ended; its node states are final ([`Flow::nodes`]).
    Ended {
        iteration: Iteration,
        verdict: Verdict,
    },
}

/// The deadlines the flow keeps itself (quinn's timer table), each for one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Timer {
    /// A `Delay` node passes.
    Delay(NodeRef),
    /// A node waiting (`after`) for another gives up.
    After(NodeRef),
    /// An event node gives up waiting for its call's signal (a request node, for its final
    /// response).
    Wait(NodeRef),
    /// A command the driver carries out has run out of time.
    Run(NodeRef),
}

/// Deadlines ordered by time; each timer at most once.
#[derive(Debug, Default)]
struct TimerTable {
    by_time: BTreeSet<(Instant, Timer)>,
    by_timer: HashMap<Timer, Instant>,
}

impl TimerTable {
    fn set(&mut self, timer: Timer, at: Instant) {
        self.stop(timer);
        self.by_time.insert((at, timer));
        self.by_timer.insert(timer, at);
    }

    fn stop(&mut self, timer: Timer) {
        if let Some(at) = self.by_timer.remove(&timer) {
            self.by_time.remove(&(at, timer));
        }
    }

    fn next(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// The first timer due at `now`, taken off the table.
    fn expired(&mut self, now: Instant) -> Option<Timer> {
        let &(at, timer) = self.by_time.first()?;
        if at > now {
            return None;
        }
        self.by_time.remove(&(at, timer));
        self.by_timer.remove(&timer);
        Some(timer)
    }
}

/// A node's record in one iteration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    pub state: NodeState,
    pub duration: Option<Duration>,
    pub reason: Option<String>,
    started: Option<Instant>,
    /// Handed to the driver (not a Delay, not still waiting for `after`).
    with_driver: bool,
}

/// A node waiting for the final response to its request: since when, whom it asked (as the
/// driver named them), the call its INVITE made, and a MakeCall's dial.
#[derive(Debug)]
struct Asking {
    since: Instant,
    who: Option<String>,
    call: Option<CallId>,
    dial: Option<Dial>,
}

/// One role's cursor in an iteration: the node it runs, and the chains waiting their turn.
#[derive(Debug, Default)]
struct Worker {
    busy: Option<NodeIdx>,
    queue: VecDeque<NodeIdx>,
}

#[derive(Debug)]
struct Iter {
    nodes: Vec<NodeRecord>,
    workers: Vec<Worker>,
    /// Chains not yet ended.
    live: usize,
    /// Nodes waiting (`after`) for the node they index.
    waiters: HashMap<NodeIdx, Vec<NodeIdx>>,
    /// Nodes a chain has reached (started or queued): a second chain reaching one joins it
    /// and ends there, so no node runs twice in an iteration.
    claimed: Vec<bool>,
}

/// The chains of every iteration of one scenario.
#[derive(Debug)]
pub struct Flow {
    scenario: Arc<Scenario>,
    iters: HashMap<Iteration, Iter>,
    /// Ended iterations' records, until forgotten.
    ended: HashMap<Iteration, Vec<NodeRecord>>,
    timers: TimerTable,
    actions: VecDeque<Action>,
    calls: Calls,
    /// Event nodes waiting for a signal of a call, in the order they began, and the call
    /// each waits on.
    watching: HashMap<CallId, Vec<NodeRef>>,
    watched: HashMap<NodeRef, CallId>,
    /// INVITEs held at each role that no INCOMING took yet, in the order they came (with the
    /// iteration each says it belongs to), and the INCOMING nodes waiting for one, in the order
    /// they began.
    arrived: HashMap<usize, VecDeque<(CallId, Option<Iteration>)>>,
    takers: HashMap<usize, VecDeque<NodeRef>>,
    /// What each DTMF_RECEIVED waiting wants.
    digits: HashMap<NodeRef, Digits>,
    /// The nodes waiting for the final response to their request.
    asking: HashMap<NodeRef, Asking>,
}

impl Flow {
    pub fn new(scenario: Arc<Scenario>) -> Self {
        Self {
            scenario,
            iters: HashMap::new(),
            ended: HashMap::new(),
            timers: TimerTable::default(),
            actions: VecDeque::new(),
            calls: Calls::default(),
            watching: HashMap::new(),
            watched: HashMap::new(),
            arrived: HashMap::new(),
            takers: HashMap::new(),
            digits: HashMap::new(),
            asking: HashMap::new(),
        }
    }

    pub fn scenario(&self) -> &Arc<Scenario> {
        &self.scenario
    }

    /// Begins `iteration`: every role starts its first chain. A scenario without chains ends
    /// at once, passed. Starting an iteration already known does nothing.
    pub fn start(&mut self, now: Instant, iteration: Iteration) {
        if self.iters.contains_key(&iteration) || self.ended.contains_key(&iteration) {
            return;
        }
        let iter = self.fresh();
        let live = iter.live;
        self.iters.insert(iteration, iter);
        if live == 0 {
            self.end(now, iteration, Verdict::Passed);
            return;
        }
        for role in 0..self.scenario.instances.len() {
            self.pump(now, iteration, role);
        }
    }

    /// Ends `iteration` failed before or while it runs (a set-up that failed, a limit the
    /// driver keeps): what runs is cancelled, what never ran is skipped. An iteration never
    /// started gets its records here, every node skipped.
    pub fn abandon(&mut self, now: Instant, iteration: Iteration, failure: Failure) {
        if self.ended.contains_key(&iteration) {
            return;
        }
        if !self.iters.contains_key(&iteration) {
            let iter = self.fresh();
            self.iters.insert(iteration, iter);
        }
        self.end(now, iteration, Verdict::Failed(failure));
    }

    /// An iteration's state before anything ran: each role's start chains queued.
    fn fresh(&self) -> Iter {
        let s = &self.scenario;
        Iter {
            nodes: s
                .nodes
                .iter()
                .map(|_| NodeRecord {
                    state: NodeState::Pending,
                    duration: None,
                    reason: None,
                    started: None,
                    with_driver: false,
                })
                .collect(),
            workers: s
                .instances
                .iter()
                .map(|i| Worker {
                    busy: None,
                    queue: i.starts.iter().copied().collect(),
                })
                .collect(),
            live: s.instances.iter().map(|i| i.starts.len()).sum(),
            waiters: HashMap::new(),
            claimed: {
                let mut c = vec![false; s.nodes.len()];
                for &n in s.instances.iter().flat_map(|i| &i.starts) {
                    c[n] = true;
                }
                c
            },
        }
    }

    /// Takes what the driver observed.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Done { at, result } => {
                let Some(rec) = self.record(at) else { return };
                if rec.state != NodeState::Running || !rec.with_driver {
                    return;
                }
                self.finish(now, at, result);
            }
            Input::Bound {
                call,
                iteration,
                role,
                name,
                outgoing,
            } => self.calls.bind(call, iteration, role, &name, outgoing),
            Input::Signal { call, signal } => {
                self.calls.push(call, signal, now);
                self.wake_watchers(now, call);
            }
            Input::Sent { at, call, to, who } => self.sent(now, at, call, to, who),
            Input::Final { at, response } => self.final_response(now, at, &response),
            Input::Arrived {
                call,
                role,
                iteration,
            } => {
                let taker = self.takers.get_mut(&role).and_then(|q| {
                    let i = q
                        .iter()
                        .position(|at| iteration.is_none_or(|i| at.iteration == i))?;
                    q.remove(i)
                });
                match taker {
                    Some(at) => self.take(at, call),
                    None => self
                        .arrived
                        .entry(role)
                        .or_default()
                        .push_back((call, iteration)),
                }
            }
            Input::Withdrawn { call } => {
                for q in self.arrived.values_mut() {
                    q.retain(|(c, _)| *c != call);
                }
            }
            Input::Closed { call } => {
                for q in self.arrived.values_mut() {
                    q.retain(|(c, _)| *c != call);
                }
                self.calls.close(call);
            }
            Input::Stop => {
                let mut live: Vec<Iteration> = self.iters.keys().copied().collect();
                live.sort_unstable();
                for i in live {
                    self.end(now, i, Verdict::Stopped);
                }
            }
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.expired(now) {
            match timer {
                Timer::Delay(at) => self.finish(now, at, Ok(())),
                Timer::Run(at) => {
                    let node = &self.scenario.nodes[at.node];
                    let failed = Failed::timeout(
                        format!("{} to finish", node.action.name()),
                        node.timeout,
                        "it had not",
                    );
                    self.actions.push_back(Action::TimedOut(at, failed));
                }
                Timer::Wait(at) if self.asking.contains_key(&at) => {
                    let failed = self.no_final(at);
                    self.unwatch(at);
                    // The driver adds what the wire says, ends the wait and answers Done.
                    self.with_driver(at, true);
                    self.actions.push_back(Action::TimedOut(at, failed));
                }
                Timer::Wait(at) => {
                    let digits = self.digits.get(&at).map(|want| {
                        let call = self.watched.get(&at).copied().unwrap_or_default();
                        let pending = self.calls.pending_digits(call);
                        let timeout = self.scenario.nodes[at.node].timeout;
                        want.verdict(&pending, Some(timeout))
                    });
                    self.unwatch(at);
                    let s = self.scenario.clone();
                    let node = &s.nodes[at.node];
                    let failed = if let Some(Err(f)) = digits {
                        f
                    } else if matches!(node.action, Step::Incoming { .. }) {
                        let expected = format!("an INVITE to {}", s.instances[node.instance].label);
                        Failed::timeout(expected, node.timeout, "none came")
                    } else {
                        let Some(wait) = wait_of(&node.action) else {
                            continue;
                        };
                        Self::expired(&self.calls, node, at, &wait)
                    };
                    // The driver adds what the wire says and answers Done.
                    self.with_driver(at, true);
                    self.actions.push_back(Action::TimedOut(at, failed));
                }
                Timer::After(at) => {
                    let s = self.scenario.clone();
                    let node = &s.nodes[at.node];
                    let Some(t) = node.opts.after else { continue };
                    if let Some(w) = self
                        .iters
                        .get_mut(&at.iteration)
                        .and_then(|i| i.waiters.get_mut(&t))
                    {
                        w.retain(|&n| n != at.node);
                    }
                    let other = &s.nodes[t];
                    let expected = format!(
                        "`{}` ({} on {}) to pass",
                        other.id,
                        other.action.name(),
                        s.instances[other.instance].label,
                    );
                    let failed = Failed::timeout(expected, node.timeout, "it has not");
                    self.finish(now, at, Err(failed));
                }
            }
        }
    }

    /// A node sends its request and waits for the final response (on the timer table): a
    /// MakeCall asks for its INVITE, a REQUEST or a SUBSCRIBE is the driver's to send.
    fn ask(&mut self, now: Instant, at: NodeRef) {
        let node = &self.scenario.nodes[at.node];
        let dial = match &node.action {
            Step::MakeCall { .. } => Some(Dial::new(
                node.opts.expect.clone(),
                node.opts.redirects.unwrap_or(scenario::DEFAULT_REDIRECTS),
                node.opts
                    .session_expires
                    .map(|d| d.as_secs().clamp(1, u64::from(u32::MAX)) as u32),
            )),
            _ => None,
        };
        let action = match &dial {
            Some(d) => Action::Invite {
                at,
                to: None,
                session_expires: d.session_expires,
            },
            None => Action::Run(at),
        };
        self.timers.set(Timer::Wait(at), now + node.timeout);
        self.asking.insert(
            at,
            Asking {
                since: now,
                who: None,
                call: None,
                dial,
            },
        );
        self.with_driver(at, true);
        self.actions.push_back(action);
    }

    /// A node's request went out.
    fn sent(
        &mut self,
        now: Instant,
        at: NodeRef,
        call: Option<CallId>,
        to: Option<String>,
        who: Option<String>,
    ) {
        let Some(a) = self.asking.get_mut(&at) else {
            return;
        };
        if a.who.is_none() {
            a.who = who;
        }
        if let (Some(d), Some(to)) = (&mut a.dial, &to) {
            d.sent(to);
        }
        a.call = call.or(a.call);
        let s = self.scenario.clone();
        let node = &s.nodes[at.node];
        if !matches!(node.action, Step::MakeCall { .. }) {
            return;
        }
        match (node.opts.until, a.call) {
            (Until::Sent, _) => self.finish(now, at, Ok(())),
            (Until::Ringing, Some(call)) => match self.rang(at, call) {
                Some(result) => self.finish(now, at, result),
                None => {
                    self.watching.entry(call).or_default().push(at);
                    self.watched.insert(at, call);
                }
            },
            _ => {}
        }
    }

    /// Whether a MakeCall `until: ringing` has what it waits for on `call`: a 180/183 or an
    /// answer passes it, an end before either fails it; None while neither came.
    fn rang(&self, at: NodeRef, call: CallId) -> Option<Result<(), Failed>> {
        let got = self.calls.find(call, |s| {
            matches!(
                s,
                Signal::Provisional(180 | 183) | Signal::Confirmed | Signal::Ended
            )
        })?;
        Some(if got == Signal::Ended {
            Err(Why::CallState(format!("the call to {} ended before it rang", self.who(at))).into())
        } else {
            Ok(())
        })
    }

    /// Whom a node's request went to, as failures name it.
    fn who(&self, at: NodeRef) -> String {
        if let Some(w) = self.asking.get(&at).and_then(|a| a.who.clone()) {
            return w;
        }
        match &self.scenario.nodes[at.node].action {
            Step::MakeCall { target } => target.clone(),
            Step::SendRequest {
                target: Some(t), ..
            }
            | Step::Subscribe { target: t, .. } => t.clone(),
            _ => "the peer".to_owned(),
        }
    }

    /// The final response to a node's request came: the node takes it (and passes on its
    /// checks), or a MakeCall asks again or follows a redirect, or the node fails.
    fn final_response(&mut self, now: Instant, at: NodeRef, resp: &Final) {
        let who = self.who(at);
        let s = self.scenario.clone();
        let node = &s.nodes[at.node];
        let Some(a) = self.asking.get_mut(&at) else {
            return;
        };
        let Some(dial) = &mut a.dial else {
            let method = match &node.action {
                Step::SendRequest { method, .. } => method.as_str(),
                _ => "SUBSCRIBE",
            };
            let result = crate::dial::on_request_final(&node.opts.expect, method, &who, resp);
            return self.finish(now, at, result);
        };
        let waited = now.saturating_duration_since(a.since);
        match dial.on_final(resp, &who, node.timeout, waited) {
            Next::Take => {
                let code = resp.code;
                let result = if resp.offerless && (200..300).contains(&code) {
                    Err(Failed::other(format!(
                        "our INVITE had no offer, and the {code} from {who} brought none we could answer (RFC 3261 §13.2.1: the 2xx offers, the ACK answers)"
                    )))
                } else {
                    resp.checks.clone().map_err(|m| Why::Checks(m).into())
                };
                self.finish(now, at, result);
            }
            Next::AskAgain {
                asked,
                session_expires,
            } => {
                let to = dial.target().map(str::to_owned);
                self.actions.push_back(Action::Note {
                    at,
                    message: format!(
                        "422: the session interval {asked} s is too small; asking again with {session_expires} s"
                    ),
                });
                self.actions.push_back(Action::Invite {
                    at,
                    to,
                    session_expires: Some(session_expires),
                });
            }
            Next::Follow { target } => {
                self.actions.push_back(Action::Note {
                    at,
                    message: format!(
                        "{} {}: following it to {target} ({} of at most {})",
                        resp.code,
                        resp.reason,
                        dial.hops.len(),
                        dial.redirects
                    ),
                });
                self.actions.push_back(Action::Invite {
                    at,
                    to: Some(target),
                    session_expires: dial.session_expires,
                });
            }
            Next::Fail(f) => self.finish(now, at, Err(f)),
        }
    }

    /// The failure of a node whose final response did not come in time.
    fn no_final(&self, at: NodeRef) -> Failed {
        let node = &self.scenario.nodes[at.node];
        let who = self.who(at);
        let (t, a) = (node.timeout, self.asking.get(&at));
        match &node.action {
            Step::MakeCall { .. } => match node.opts.until {
                Until::Ringing => {
                    Failed::timeout(format!("a 180/183 or an answer from {who}"), t, "none")
                }
                Until::Sent => {
                    Failed::timeout(format!("the INVITE to {who} to go"), t, "it did not")
                }
                Until::Answer => {
                    let last = a.and_then(|a| {
                        let (code, when) = self.calls.last_provisional(a.call?)?;
                        Some(format!(
                            "last: {code} {} at {}; the call is still ringing",
                            provisional_reason(code),
                            secs(when.saturating_duration_since(a.since))
                        ))
                    });
                    let expected = format!("{} from {who}", expected_codes(&node.opts.expect));
                    Failed::timeout(
                        expected,
                        t,
                        last.unwrap_or_else(|| "no response at all".into()),
                    )
                }
            },
            Step::SendRequest {
                method,
                target: None,
                ..
            } => Failed::timeout(format!("a final response to our {method}"), t, "none came"),
            Step::SendRequest { method, .. } => Failed::timeout(
                format!("a final response to our {method} from {who}"),
                t,
                "none came",
            ),
            Step::Subscribe { event, .. } => Failed::timeout(
                format!("a final response to our SUBSCRIBE ({event}) from {who}"),
                t,
                "none came",
            ),
            _ => Failed::timeout("a final response", t, "none came"),
        }
    }

    /// The failure of an event node whose wait ran out.
    fn expired(calls: &Calls, node: &scenario::Node, at: NodeRef, wait: &Wait) -> Failed {
        let side = match calls.named(at.iteration, node.instance, &node.call_id) {
            Some(c) if calls.outgoing(c) => "received",
            _ => "sent",
        };
        let expected = wait
            .expected
            .replace("{side}", side)
            .replace("{call}", &node.call_id);
        Failed::timeout(expected, node.timeout, wait.instead)
    }

    /// The event nodes waiting on `call` take its signals, in the order they began waiting.
    fn wake_watchers(&mut self, now: Instant, call: CallId) {
        let Some(waiting) = self.watching.get(&call).cloned() else {
            return;
        };
        for at in waiting {
            if self.asking.contains_key(&at) {
                if let Some(result) = self.rang(at, call) {
                    self.finish(now, at, result);
                }
                continue;
            }
            if self.digits.contains_key(&at) {
                self.try_digits(now, at, call);
                continue;
            }
            let node = &self.scenario.nodes[at.node];
            let Some(wait) = wait_of(&node.action) else {
                continue;
            };
            if self.calls.take(call, &wait) {
                self.unwatch(at);
                self.finish(now, at, Ok(()));
            }
        }
    }

    /// A DTMF_RECEIVED decides once the digits of its call are enough (it takes them).
    fn try_digits(&mut self, now: Instant, at: NodeRef, call: CallId) -> bool {
        let Some(want) = self.digits.get(&at) else {
            return false;
        };
        let pending = self.calls.pending_digits(call);
        if !want.ready(&pending) {
            return false;
        }
        let verdict = want.verdict(&pending, None);
        // The digits it looked at are taken, matched or not; the rest wait for the next node.
        let looked = match (&verdict, want) {
            (Ok(n), _) => *n,
            (Err(_), Digits::Exactly(w)) => w.chars().count(),
            (Err(_), _) => 0,
        };
        self.calls.take_digits(call, looked);
        self.unwatch(at);
        self.finish(now, at, verdict.map(drop));
        true
    }

    /// A DTMF_RECEIVED begins: it decides on the digits already in, or waits for more.
    fn watch_digits(&mut self, now: Instant, at: NodeRef, expected: Option<&str>) {
        let s = self.scenario.clone();
        let node = &s.nodes[at.node];
        let want = match Digits::of(expected, node.opts.pattern.as_deref()) {
            Ok(w) => w,
            Err(f) => return self.finish(now, at, Err(f)),
        };
        let Some(call) = self.bound_call(now, at) else {
            return;
        };
        self.digits.insert(at, want);
        if !self.try_digits(now, at, call) {
            self.wait_on(now, at, call);
        }
    }

    /// The call a node's call id names in its iteration; when none, the node fails.
    fn bound_call(&mut self, now: Instant, at: NodeRef) -> Option<CallId> {
        let s = self.scenario.clone();
        let node = &s.nodes[at.node];
        let call = self.calls.named(at.iteration, node.instance, &node.call_id);
        if call.is_none() {
            let label = &s.instances[node.instance].label;
            self.finish(now, at, Err(Failed::unbound(label, &node.call_id)));
        }
        call
    }

    /// The node waits on `call`'s signals until its timeout.
    fn wait_on(&mut self, now: Instant, at: NodeRef, call: CallId) {
        self.watching.entry(call).or_default().push(at);
        self.watched.insert(at, call);
        let timeout = self.scenario.nodes[at.node].timeout;
        self.timers.set(Timer::Wait(at), now + timeout);
    }

    fn unwatch(&mut self, at: NodeRef) {
        self.digits.remove(&at);
        for q in self.takers.values_mut() {
            q.retain(|n| *n != at);
        }
        self.unwatch_call(at);
    }

    /// The node no longer waits on its timer or its call's signals (nor for a final response).
    fn unwatch_call(&mut self, at: NodeRef) {
        self.timers.stop(Timer::Wait(at));
        self.asking.remove(&at);
        let Some(call) = self.watched.remove(&at) else {
            return;
        };
        if let Some(w) = self.watching.get_mut(&call) {
            w.retain(|n| *n != at);
            if w.is_empty() {
                self.watching.remove(&call);
            }
        }
    }

    /// An INCOMING begins: it takes the oldest INVITE held at its role, or waits for the next
    /// until its timeout.
    fn take_or_wait(&mut self, now: Instant, at: NodeRef) {
        let node = &self.scenario.nodes[at.node];
        let (role, timeout) = (node.instance, node.timeout);
        let held = self.arrived.get_mut(&role).and_then(|q| {
            let i = q
                .iter()
                .position(|(_, i)| i.is_none_or(|i| i == at.iteration))?;
            q.remove(i)
        });
        match held {
            Some((call, _)) => self.take(at, call),
            None => {
                self.takers.entry(role).or_default().push_back(at);
                self.timers.set(Timer::Wait(at), now + timeout);
            }
        }
    }

    /// An INCOMING takes `call`: the driver binds it and answers Done.
    fn take(&mut self, at: NodeRef, call: CallId) {
        self.timers.stop(Timer::Wait(at));
        self.with_driver(at, true);
        self.actions.push_back(Action::Take { at, call });
    }

    /// An event node begins: it passes on a signal already in its call's log, or waits for
    /// one until its timeout.
    fn watch(&mut self, now: Instant, at: NodeRef, wait: Wait) {
        let Some(call) = self.bound_call(now, at) else {
            return;
        };
        if self.calls.take(call, &wait) {
            self.finish(now, at, Ok(()));
        } else {
            self.wait_on(now, at, call);
        }
    }

    /// When `handle_timeout` is due next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// What to do next.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Iterations started and not yet ended.
    pub fn running(&self) -> usize {
        self.iters.len()
    }

    /// INVITEs held at `role` that no INCOMING has taken and none of a running iteration will
    /// (they name no iteration, or one that is not running): under load, each starts an
    /// iteration of an answering role.
    pub fn unclaimed(&self, role: usize) -> usize {
        self.arrived.get(&role).map_or(0, |q| {
            q.iter()
                .filter(|(_, i)| i.is_none_or(|i| !self.iters.contains_key(&i)))
                .count()
        })
    }

    /// The node records of an iteration (running or ended and not forgotten), in node order.
    pub fn nodes(&self, iteration: Iteration) -> Option<&[NodeRecord]> {
        self.iters
            .get(&iteration)
            .map(|i| i.nodes.as_slice())
            .or_else(|| self.ended.get(&iteration).map(Vec::as_slice))
    }

    /// Drops what is kept of an ended iteration.
    pub fn forget(&mut self, iteration: Iteration) {
        self.ended.remove(&iteration);
    }

    fn record(&self, at: NodeRef) -> Option<&NodeRecord> {
        self.iters.get(&at.iteration)?.nodes.get(at.node)
    }

    /// Marks a running node as the driver's to finish (its `Done` is taken), or not.
    fn with_driver(&mut self, at: NodeRef, on: bool) {
        if let Some(rec) = self
            .iters
            .get_mut(&at.iteration)
            .and_then(|i| i.nodes.get_mut(at.node))
        {
            rec.with_driver = on;
        }
    }

    fn set_state(
        &mut self,
        now: Instant,
        at: NodeRef,
        to: NodeState,
        reason: Option<String>,
    ) -> Option<()> {
        let handled = to == NodeState::Failed && self.scenario.nodes[at.node].on_failure.is_some();
        let rec = self.iters.get_mut(&at.iteration)?.nodes.get_mut(at.node)?;
        let from = std::mem::replace(&mut rec.state, to);
        let duration = match to {
            NodeState::Running => {
                rec.started = Some(now);
                None
            }
            _ => rec.started.map(|s| now.saturating_duration_since(s)),
        };
        rec.reason.clone_from(&reason);
        rec.duration = duration.or(rec.duration);
        self.actions.push_back(Action::State(StateChange {
            at,
            from,
            to,
            reason,
            duration,
            handled,
        }));
        Some(())
    }

    /// Starts the next chain of a role that is idle.
    fn pump(&mut self, now: Instant, iteration: Iteration, role: usize) {
        let Some(iter) = self.iters.get_mut(&iteration) else {
            return;
        };
        let w = &mut iter.workers[role];
        if w.busy.is_some() {
            return;
        }
        let Some(next) = w.queue.pop_front() else {
            return;
        };
        w.busy = Some(next);
        self.begin(
            now,
            NodeRef {
                iteration,
                node: next,
            },
        );
    }

    /// The node's turn has come on its role: it runs, or waits for its `after` first.
    fn begin(&mut self, now: Instant, at: NodeRef) {
        self.set_state(now, at, NodeState::Running, None);
        let s = self.scenario.clone();
        let node = &s.nodes[at.node];
        let Some(t) = node.opts.after else {
            self.execute(now, at);
            return;
        };
        let Some(iter) = self.iters.get_mut(&at.iteration) else {
            return;
        };
        match iter.nodes[t].state {
            NodeState::Passed => self.execute(now, at),
            NodeState::Failed | NodeState::Skipped => {
                let state = iter.nodes[t].state;
                self.finish(now, at, Err(waited_for(&s.nodes[t].id, state)));
            }
            NodeState::Pending | NodeState::Running => {
                iter.waiters.entry(t).or_default().push(at.node);
                self.timers.set(Timer::After(at), now + node.timeout);
            }
        }
    }

    /// Carries the node out: a Delay on the timer table, anything else by the driver.
    fn execute(&mut self, now: Instant, at: NodeRef) {
        let node = &self.scenario.nodes[at.node];
        if matches!(node.action, Step::Delay) {
            self.timers.set(Timer::Delay(at), now + node.timeout);
            return;
        }
        if let Some(wait) = wait_of(&node.action) {
            self.watch(now, at, wait);
            return;
        }
        if matches!(node.action, Step::Incoming { .. }) {
            self.take_or_wait(now, at);
            return;
        }
        if let Step::DtmfReceived { expected } = &node.action {
            let expected = expected.clone();
            self.watch_digits(now, at, expected.as_deref());
            return;
        }
        if matches!(
            node.action,
            Step::MakeCall { .. } | Step::SendRequest { .. } | Step::Subscribe { .. }
        ) {
            self.ask(now, at);
            return;
        }
        // A command's `delay` (RINGING, PROGRESS wait before sending) is not its timeout's.
        let deadline = now + node.opts.delay.unwrap_or_default() + node.timeout;
        self.with_driver(at, true);
        self.timers.set(Timer::Run(at), deadline);
        self.actions.push_back(Action::Run(at));
    }

    /// A running node has passed or failed: its waiters go on, its chain follows its edge.
    fn finish(&mut self, now: Instant, at: NodeRef, result: Result<(), Failed>) {
        let s = self.scenario.clone();
        let node = &s.nodes[at.node];
        let role = node.instance;
        if self.asking.contains_key(&at) {
            self.unwatch_call(at);
        }
        self.timers.stop(Timer::Run(at));
        let (next, failure) = match result {
            Ok(()) => {
                self.set_state(now, at, NodeState::Passed, None);
                (node.on_success, None)
            }
            Err(f) => {
                self.set_state(now, at, NodeState::Failed, Some(f.message()));
                (node.on_failure, Some(f))
            }
        };
        self.with_driver(at, false);
        self.wake_waiters(now, at, failure.is_none());
        let Some(iter) = self.iters.get_mut(&at.iteration) else {
            return;
        };
        iter.workers[role].busy = None;
        // A node another chain already reached: this chain joins it and ends here.
        let handled = next.is_some();
        let next = next.filter(|&n| !std::mem::replace(&mut iter.claimed[n], true));
        match (next, failure) {
            (None, Some(f)) if !handled => {
                let label = &s.instances[role].label;
                let failure = Failure {
                    node: Some(node.id.clone()),
                    ua: Some(s.instances[role].id.clone()),
                    kind: f.kind(),
                    status: f.status_code(),
                    message: format!("{} ({}) on {label}: {f}", node.id, node.action.name()),
                };
                self.end(now, at.iteration, Verdict::Failed(failure));
            }
            (Some(n), _) => {
                let owner = s.nodes[n].instance;
                if owner == role {
                    iter.workers[role].busy = Some(n);
                    self.begin(
                        now,
                        NodeRef {
                            iteration: at.iteration,
                            node: n,
                        },
                    );
                } else {
                    // The chain goes on on another role: it takes its turn there.
                    iter.workers[owner].queue.push_back(n);
                    self.pump(now, at.iteration, owner);
                    self.pump(now, at.iteration, role);
                }
            }
            (None, _) => {
                iter.live -= 1;
                if iter.live == 0 {
                    self.end(now, at.iteration, Verdict::Passed);
                } else {
                    self.pump(now, at.iteration, role);
                }
            }
        }
    }

    /// The nodes waiting for `at` go on (it passed) or fail (it did not).
    fn wake_waiters(&mut self, now: Instant, at: NodeRef, passed: bool) {
        let Some(waiting) = self
            .iters
            .get_mut(&at.iteration)
            .and_then(|i| i.waiters.remove(&at.node))
        else {
            return;
        };
        let id = self.scenario.nodes[at.node].id.clone();
        for w in waiting {
            let wat = NodeRef {
                iteration: at.iteration,
                node: w,
            };
            self.timers.stop(Timer::After(wat));
            if passed {
                self.execute(now, wat);
            } else {
                self.finish(now, wat, Err(waited_for(&id, NodeState::Failed)));
            }
        }
    }

    /// Ends an iteration: what runs is cancelled, what never ran is skipped.
    fn end(&mut self, now: Instant, iteration: Iteration, verdict: Verdict) {
        let Some(iter) = self.iters.get(&iteration) else {
            return;
        };
        let why = match &verdict {
            Verdict::Failed(f) => f.node.clone(),
            _ => None,
        };
        // What ran is cancelled; what never ran is skipped (on a passed iteration: a branch
        // not taken, with no reason to give).
        let (cancelled, not_run) = match (&verdict, &why) {
            (Verdict::Stopped, _) => (
                "cancelled: the run was stopped".to_owned(),
                Some("not run: stopped".to_owned()),
            ),
            (Verdict::Failed(_), Some(n)) => (
                format!("cancelled: node `{n}` failed"),
                Some(format!("not run: node `{n}` failed")),
            ),
            (Verdict::Failed(_), None) => (
                "cancelled: the run failed".to_owned(),
                Some("not run: the run failed".to_owned()),
            ),
            (Verdict::Passed, _) => ("cancelled".to_owned(), None),
        };
        let running: Vec<(NodeIdx, bool)> = iter
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.state == NodeState::Running)
            .map(|(i, r)| (i, r.with_driver))
            .collect();
        for (node, with_driver) in running {
            let at = NodeRef { iteration, node };
            self.timers.stop(Timer::Delay(at));
            self.timers.stop(Timer::After(at));
            self.timers.stop(Timer::Run(at));
            self.unwatch(at);
            if with_driver {
                self.actions.push_back(Action::Abort(at));
            }
            self.set_state(now, at, NodeState::Skipped, Some(cancelled.clone()));
        }
        let pending: Vec<NodeIdx> = self.iters[&iteration]
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.state == NodeState::Pending)
            .map(|(i, _)| i)
            .collect();
        for node in pending {
            let at = NodeRef { iteration, node };
            self.set_state(now, at, NodeState::Skipped, not_run.clone());
        }
        if let Some(iter) = self.iters.remove(&iteration) {
            self.ended.insert(iteration, iter.nodes);
        }
        self.calls.forget(iteration);
        self.actions.push_back(Action::Ended { iteration, verdict });
    }
}

/// The failure of a node whose `after` node did not pass.
fn waited_for(id: &str, state: NodeState) -> Failed {
    Failed::other(format!("waited for `{id}`, which {}", state.as_str()))
}

#[cfg(test)]
mod tests;
