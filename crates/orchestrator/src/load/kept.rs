//! The full events of a few iterations under load: the first failed ones (and a few passed
//! ones, to compare), so a failure under load reads like a functional run (its ladder). Every
//! other iteration's events are dropped as it ends: memory follows the calls in flight.
//!
//! A sink on the event stream, so it sees each iteration's events in order: SIP messages by
//! Call-ID, node states by iteration, then `iteration_ended` (with its Call-IDs) decides. The
//! messages of a kept iteration that come after (its cleanup's BYE) join it.

use crate::bus::EventSink;
use events::{Event, EventKind, Outcome};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Events kept per call or iteration at most, before it ends.
const PER_CALL: usize = 64;
/// A call the stream said nothing of for this long is forgotten.
const KEEP: Duration = Duration::from_secs(300);
/// How long after its iteration a call's messages may still come.
const LATE: Duration = Duration::from_secs(64);

/// One kept iteration: its events in stream order.
#[derive(Clone, Debug)]
pub struct KeptIteration {
    pub iteration: u32,
    pub outcome: Outcome,
    pub events: Vec<Event>,
}

#[derive(Debug, Default)]
struct Inner {
    started: Vec<Event>,
    calls: HashMap<String, (SystemTime, Vec<Event>)>,
    nodes: HashMap<u32, Vec<Event>>,
    kept: Vec<KeptIteration>,
    /// Call-ID -> index in `kept`.
    kept_calls: HashMap<String, usize>,
    /// The Call-IDs of iterations not kept, and when they ended: their late messages (a BYE's
    /// 200, a retransmission) are dropped, not buffered, for 64 s (rsipstack's longest).
    dropped: HashMap<String, SystemTime>,
    failed: usize,
    passed: usize,
    seen: u64,
}

/// Keeps the events of the first `failed` failed iterations and the first `passed` passed ones.
#[derive(Debug)]
pub struct Kept {
    inner: Mutex<Inner>,
    failed: usize,
    passed: usize,
}

impl Kept {
    pub fn new(failed: usize, passed: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            failed,
            passed,
        }
    }

    /// The iterations kept, each with the run's `run_started` and `ua_started` first (what a
    /// ladder needs to name its lanes).
    pub fn take(&self) -> Vec<KeptIteration> {
        let mut i = self.lock();
        let head = i.started.clone();
        std::mem::take(&mut i.kept)
            .into_iter()
            .map(|mut k| {
                k.events.sort_by_key(|e| e.seq);
                let mut events = head.clone();
                events.append(&mut k.events);
                KeptIteration { events, ..k }
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl EventSink for Kept {
    fn event(&self, event: &Event) {
        let mut guard = self.lock();
        let i = &mut *guard;
        match &event.event {
            EventKind::RunStarted(_) | EventKind::UaStarted(_) => i.started.push(event.clone()),
            EventKind::SipMessage(m) => {
                if let Some(&k) = i.kept_calls.get(&m.call_id) {
                    i.kept[k].events.push(event.clone());
                    return;
                }
                if i.dropped.contains_key(&m.call_id) {
                    return;
                }
                let at = SystemTime::UNIX_EPOCH + Duration::from_micros(event.ts_us);
                let (_, v) = i
                    .calls
                    .entry(m.call_id.clone())
                    .or_insert_with(|| (at, Vec::new()));
                if v.len() < PER_CALL {
                    v.push(event.clone());
                }
                i.seen += 1;
                if i.seen.is_multiple_of(10_000) {
                    let cutoff = |keep| at.checked_sub(keep).unwrap_or(SystemTime::UNIX_EPOCH);
                    let (calls, dropped) = (cutoff(KEEP), cutoff(LATE));
                    i.calls.retain(|_, (first, _)| *first > calls);
                    i.dropped.retain(|_, ended| *ended > dropped);
                }
            }
            EventKind::NodeState(n) => {
                if let Some(it) = n.iteration {
                    let v = i.nodes.entry(it).or_default();
                    if v.len() < PER_CALL {
                        v.push(event.clone());
                    }
                }
            }
            EventKind::IterationEnded(end) => {
                let nodes = i.nodes.remove(&end.iteration).unwrap_or_default();
                let calls: Vec<Vec<Event>> = end
                    .call_ids
                    .iter()
                    .filter_map(|c| i.calls.remove(c).map(|(_, v)| v))
                    .collect();
                let keep = match end.outcome {
                    Outcome::Passed => {
                        i.passed += 1;
                        i.passed <= self.passed
                    }
                    Outcome::Failed => {
                        i.failed += 1;
                        i.failed <= self.failed
                    }
                    _ => false,
                };
                if !keep {
                    let at = SystemTime::UNIX_EPOCH + Duration::from_micros(event.ts_us);
                    for c in &end.call_ids {
                        i.dropped.insert(c.clone(), at);
                    }
                    return;
                }
                let mut events: Vec<Event> = calls.into_iter().flatten().collect();
                events.extend(nodes);
                events.push(event.clone());
                let k = i.kept.len();
                for c in &end.call_ids {
                    i.kept_calls.insert(c.clone(), k);
                }
                i.kept.push(KeptIteration {
                    iteration: end.iteration,
                    outcome: end.outcome,
                    events,
                });
            }
            _ => {}
        }
    }
}
