//! The calls as the flow's event nodes see them: each call's latched log of signals, and which
//! call each (iteration, role, logical call id) names. The driver reports a call bound to a
//! name and each signal added to a call; an event node (RINGING, DISCONNECTED, HELD,
//! RETRIEVED, TRANSFERRED) passes on the first signal of its kind in its call's log, one that
//! came before it started included ("latched"), and most of them consume it, so two waits for
//! a 180 need two 180s.

use crate::chains::Iteration;
use scenario::Action as Step;
use std::collections::HashMap;
use std::time::Instant;

/// A call, as the driver numbers it (the session's call key).
pub type CallId = u64;

/// What happened to a call, as far as event nodes wait for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// A 1xx other than 100, received (outgoing call) or sent (incoming).
    Provisional(u16),
    /// 2xx received and ACKed (outgoing), or ACK received (incoming).
    Confirmed,
    Ended,
    /// The peer put us on hold, or took us off it.
    Held,
    Retrieved,
    /// A REFER we followed moved the call's logical id to a new call.
    Transferred,
    /// An INVITE with Replaces took the call's place.
    Replaced,
    /// The first RTP from the peer came.
    MediaFlowing,
    /// A DTMF digit came.
    Digit(char),
}

/// What an event node waits for: which signals, whether it consumes the one it takes, and how
/// its failure says what it expected (`{call}` is the logical call id; `{side}` is "received"
/// for a call we placed, "sent" for one we took) and what came instead.
#[derive(Clone, Copy, Debug)]
pub struct Wait {
    pub wants: fn(&Signal) -> bool,
    pub consume: bool,
    pub expected: &'static str,
    pub instead: &'static str,
}

/// The wait of an event node the flow decides itself; None for every other node.
pub fn wait_of(action: &Step) -> Option<Wait> {
    Some(match action {
        Step::Ringing => Wait {
            wants: |s| matches!(s, Signal::Provisional(180 | 183)),
            consume: true,
            expected: "a 180/183 {side} on `{call}`",
            instead: "none",
        },
        Step::Disconnected => Wait {
            wants: |s| *s == Signal::Ended,
            consume: false,
            expected: "`{call}` to end",
            instead: "it is still up",
        },
        Step::Held => Wait {
            wants: |s| *s == Signal::Held,
            consume: true,
            expected: "the peer to hold `{call}`",
            instead: "it did not",
        },
        Step::Retrieved => Wait {
            wants: |s| *s == Signal::Retrieved,
            consume: true,
            expected: "the peer to retrieve `{call}`",
            instead: "it did not",
        },
        Step::MediaFlowing => Wait {
            wants: |s| *s == Signal::MediaFlowing,
            consume: false,
            expected: "RTP from the peer on `{call}`",
            instead: "none came",
        },
        // The transferee sees Transferred; the target of an attended transfer, Replaced.
        Step::Transferred => Wait {
            wants: |s| matches!(s, Signal::Transferred | Signal::Replaced),
            consume: true,
            expected: "`{call}` to be transferred (a REFER followed)",
            instead: "it was not",
        },
        _ => return None,
    })
}

/// What became of a call we answered while its Answer waited for the ACK of our 200.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterAnswer {
    /// The ACK came.
    Acked,
    /// An INVITE with Replaces took the call's place before the ACK was seen (an attended
    /// transfer racing the Answer).
    Replaced,
    /// The caller's BYE overtook its ACK (both sent at once, or reordered by a proxy).
    ByeFromPeer,
    /// It ended otherwise, as the call says it ("was rejected", "timed out").
    Ended(String),
}

/// Whether an Answer passes on what became of its call: the ACK, or what proves the caller
/// took our 200 as well (its BYE; a Replaces, after which the call did its job).
pub fn answered(after: &AfterAnswer) -> Result<(), crate::failure::Failed> {
    match after {
        AfterAnswer::Acked | AfterAnswer::Replaced | AfterAnswer::ByeFromPeer => Ok(()),
        AfterAnswer::Ended(how) => Err(crate::failure::Failed::other(format!(
            "expected the ACK after our 200 OK, the call {how}"
        ))),
    }
}

#[derive(Debug, Default)]
struct Log {
    /// We placed it (else we took it).
    outgoing: bool,
    signals: Vec<(Signal, bool)>,
    /// The last provisional status (180, 183...) and when it came.
    last_provisional: Option<(u16, Instant)>,
}

/// Every call's log and the names bound to calls.
#[derive(Debug, Default)]
pub(crate) struct Calls {
    logs: HashMap<CallId, Log>,
    names: HashMap<(Iteration, usize, String), CallId>,
}

impl Calls {
    pub(crate) fn bind(
        &mut self,
        call: CallId,
        iteration: Iteration,
        role: usize,
        name: &str,
        outgoing: bool,
    ) {
        self.logs.entry(call).or_default().outgoing = outgoing;
        self.names.insert((iteration, role, name.to_owned()), call);
    }

    pub(crate) fn push(&mut self, call: CallId, signal: Signal, now: Instant) {
        let log = self.logs.entry(call).or_default();
        if let Signal::Provisional(code) = signal {
            log.last_provisional = Some((code, now));
        }
        log.signals.push((signal, false));
    }

    /// The first signal of the call's log that `wants` takes, used or not; the log is left as
    /// it is.
    pub(crate) fn find(&self, call: CallId, wants: impl Fn(&Signal) -> bool) -> Option<Signal> {
        self.logs
            .get(&call)?
            .signals
            .iter()
            .map(|(s, _)| *s)
            .find(|s| wants(s))
    }

    /// The last provisional status the call had, and when.
    pub(crate) fn last_provisional(&self, call: CallId) -> Option<(u16, Instant)> {
        self.logs.get(&call)?.last_provisional
    }

    pub(crate) fn named(&self, iteration: Iteration, role: usize, name: &str) -> Option<CallId> {
        self.names.get(&(iteration, role, name.to_owned())).copied()
    }

    pub(crate) fn outgoing(&self, call: CallId) -> bool {
        self.logs.get(&call).is_some_and(|l| l.outgoing)
    }

    /// Takes the first signal `wait` wants from the call's log (marking it used if the wait
    /// consumes); whether there was one.
    pub(crate) fn take(&mut self, call: CallId, wait: &Wait) -> bool {
        let Some(log) = self.logs.get_mut(&call) else {
            return false;
        };
        match log
            .signals
            .iter_mut()
            .find(|(s, used)| !*used && (wait.wants)(s))
        {
            Some((_, used)) => {
                *used |= wait.consume;
                true
            }
            None => false,
        }
    }

    /// The digits of the call not taken yet, in the order they came.
    pub(crate) fn pending_digits(&self, call: CallId) -> String {
        self.logs.get(&call).map_or_else(String::new, |l| {
            l.signals
                .iter()
                .filter_map(|(s, used)| match s {
                    Signal::Digit(d) if !used => Some(*d),
                    _ => None,
                })
                .collect()
        })
    }

    /// Takes the first `n` digits not taken yet.
    pub(crate) fn take_digits(&mut self, call: CallId, n: usize) {
        let Some(log) = self.logs.get_mut(&call) else {
            return;
        };
        for (_, used) in log
            .signals
            .iter_mut()
            .filter(|(s, used)| matches!(s, Signal::Digit(_)) && !*used)
            .take(n)
        {
            *used = true;
        }
    }

    /// Drops a call's log (it is gone).
    pub(crate) fn close(&mut self, call: CallId) {
        self.logs.remove(&call);
    }

    /// Forgets the names of an iteration that ended, and the logs of the calls they named.
    pub(crate) fn forget(&mut self, iteration: Iteration) {
        let gone: Vec<CallId> = self
            .names
            .iter()
            .filter(|((i, _, _), _)| *i == iteration)
            .map(|(_, c)| *c)
            .collect();
        self.names.retain(|(i, _, _), _| *i != iteration);
        let named: std::collections::HashSet<CallId> = self.names.values().copied().collect();
        for c in gone {
            if !named.contains(&c) {
                self.logs.remove(&c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_that_came_first_is_latched_and_consumed_once() {
        let mut c = Calls::default();
        #[allow(clippy::disallowed_methods)] // a test's origin of time
        let now = Instant::now();
        c.push(7, Signal::Provisional(180), now);
        assert_eq!(c.last_provisional(7), Some((180, now)));
        c.bind(7, 0, 1, "call-1", true);
        let ringing = wait_of(&Step::Ringing).expect("an event node");
        assert_eq!(c.named(0, 1, "call-1"), Some(7));
        assert_eq!(c.named(1, 1, "call-1"), None, "another iteration's call-1");
        assert!(c.take(7, &ringing));
        assert!(!c.take(7, &ringing), "two waits for a 180 need two 180s");
        c.push(7, Signal::Ended, now);
        let ended = wait_of(&Step::Disconnected).expect("an event node");
        assert!(
            c.take(7, &ended) && c.take(7, &ended),
            "an end is not consumed"
        );
        assert!(wait_of(&Step::Answer).is_none());
        c.forget(0);
        assert_eq!(c.named(0, 1, "call-1"), None);
        assert!(!c.take(7, &ended));
    }

    #[test]
    fn an_answer_passes_on_its_ack_or_on_what_overtakes_it() {
        assert_eq!(answered(&AfterAnswer::Acked), Ok(()));
        // An Answer racing a Replaces: the transfer's INVITE took the call before the ACK.
        assert_eq!(answered(&AfterAnswer::Replaced), Ok(()));
        // A BYE before the ACK proves the caller took our 200.
        assert_eq!(answered(&AfterAnswer::ByeFromPeer), Ok(()));
        assert_eq!(
            answered(&AfterAnswer::Ended("timed out (no ACK)".into()))
                .unwrap_err()
                .to_string(),
            "expected the ACK after our 200 OK, the call timed out (no ACK)"
        );
    }
}
