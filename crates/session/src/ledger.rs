//! What crossed the wire on each call, as far as a failure message needs it: which request of
//! ours was never answered, which 2xx of ours was never acknowledged. Fed the summaries of the
//! wire tap, with the time each message crossed (time is an input: the tests use fake times),
//! and bounded: at most [`MAX_CALLS`] Call-IDs (the oldest forgotten first) of at most
//! [`MAX_EXCHANGES`] transactions each, so a flood of requests cannot grow it.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Call-IDs remembered per UA.
pub const MAX_CALLS: usize = 4096;
/// Transactions remembered per Call-ID.
pub const MAX_EXCHANGES: usize = 16;

/// Which way a message went, seen from the UA that keeps the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    Sent,
    Received,
}

/// One message as the ledger takes it.
#[derive(Clone, Copy, Debug)]
pub struct Seen<'a> {
    pub way: Way,
    pub at: SystemTime,
    pub peer: &'a str,
    /// `None` for a request.
    pub status: Option<u16>,
    pub call_id: &'a str,
    /// The CSeq value, `1 INVITE`: its method is the request's (or, on a response, the method
    /// it answers).
    pub cseq: &'a str,
}

/// One transaction: a request and what answered it.
#[derive(Clone, Debug)]
struct Exchange {
    /// CSeq number and method (an ACK's is its INVITE's).
    cseq: (u32, Cow<'static, str>),
    /// We sent the request (else the peer did).
    ours: bool,
    /// Shared with the exchanges before it when the peer is the same (under load, every call's).
    peer: Arc<str>,
    requests: u32,
    first: SystemTime,
    last: SystemTime,
    /// The highest status that answered it (ours: received; theirs: sent).
    answered: Option<u16>,
    /// How many times that final response went out (theirs only).
    finals_sent: u32,
    acked: bool,
}

#[derive(Default)]
struct Inner {
    calls: HashMap<String, VecDeque<Exchange>>,
    order: VecDeque<String>,
    /// The last peer seen.
    peer: Option<Arc<str>>,
}

/// The ledger of one UA.
#[derive(Default)]
pub struct Ledger(Mutex<Inner>);

fn cseq_of(cseq: &str) -> Option<(u32, Cow<'static, str>)> {
    let mut parts = cseq.split_whitespace();
    let n = parts.next()?.parse().ok()?;
    let method = parts.next()?;
    // A known method is named without a copy.
    let known = transport::intake::KNOWN_METHODS
        .iter()
        .find(|k| k.eq_ignore_ascii_case(method));
    Some((
        n,
        known.map_or_else(
            || Cow::Owned(method.to_ascii_uppercase()),
            |k| Cow::Borrowed(*k),
        ),
    ))
}

impl Ledger {
    pub fn new() -> Self {
        Self::default()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes one message off the wire.
    pub fn record(&self, m: Seen<'_>) {
        let Some((n, method)) = cseq_of(m.cseq) else {
            return;
        };
        if m.call_id.is_empty() {
            return;
        }
        let mut inner = self.inner();
        let inner = &mut *inner;
        if !inner.calls.contains_key(m.call_id) {
            if inner.order.len() >= MAX_CALLS
                && let Some(old) = inner.order.pop_front()
            {
                inner.calls.remove(&old);
            }
            inner.order.push_back(m.call_id.to_owned());
            // Room for a call's INVITE and BYE (an ACK joins its INVITE).
            inner
                .calls
                .insert(m.call_id.to_owned(), VecDeque::with_capacity(2));
        }
        let exchanges = inner.calls.get_mut(m.call_id).expect("inserted above");
        let is_ack = m.status.is_none() && method == "ACK";
        let key = (
            n,
            if is_ack {
                Cow::Borrowed("INVITE")
            } else {
                method
            },
        );
        // Who sent the request of this transaction (an ACK belongs to the INVITE of whoever
        // sends it).
        let ours = (m.way == Way::Sent) == m.status.is_none();
        let found = exchanges
            .iter()
            .rposition(|e| e.cseq == key && e.ours == ours);
        let e = match found {
            Some(i) => &mut exchanges[i],
            None => {
                if is_ack {
                    return;
                }
                if exchanges.len() >= MAX_EXCHANGES {
                    exchanges.pop_front();
                }
                let peer = match &inner.peer {
                    Some(p) if **p == *m.peer => p.clone(),
                    _ => {
                        let p: Arc<str> = Arc::from(m.peer);
                        inner.peer = Some(p.clone());
                        p
                    }
                };
                exchanges.push_back(Exchange {
                    cseq: key,
                    ours,
                    peer,
                    requests: 0,
                    first: m.at,
                    last: m.at,
                    answered: None,
                    finals_sent: 0,
                    acked: false,
                });
                exchanges.back_mut().expect("pushed")
            }
        };
        match m.status {
            None if is_ack => e.acked = true,
            None => {
                e.requests += 1;
                e.last = m.at;
            }
            Some(code) => {
                if e.answered.is_none_or(|a| code >= a) {
                    if code >= 200 && e.answered == Some(code) {
                        e.finals_sent += 1;
                    } else {
                        e.finals_sent = u32::from(code >= 200);
                    }
                    e.answered = Some(code);
                }
            }
        }
    }

    /// What never arrived on the call with this Call-ID, oldest first: a request of ours no
    /// response answered, a 2xx of ours to an INVITE no ACK acknowledged. Empty when nothing is
    /// missing.
    pub fn missing(&self, call_id: &str) -> Vec<String> {
        let inner = self.inner();
        let Some(exchanges) = inner.calls.get(call_id) else {
            return Vec::new();
        };
        exchanges.iter().filter_map(describe_missing).collect()
    }

    /// How many Call-IDs are remembered.
    pub fn len(&self) -> usize {
        self.inner().calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn times(n: u32) -> String {
    match n {
        1 => "once".to_owned(),
        2 => "twice".to_owned(),
        n => format!("{n} times"),
    }
}

fn describe_missing(e: &Exchange) -> Option<String> {
    let method = &e.cseq.1;
    if e.ours && e.answered.is_none() && e.requests > 0 {
        let over = e.last.duration_since(e.first).unwrap_or_default();
        let span = if e.requests > 1 {
            format!(" over {:.1} s", over.as_secs_f64())
        } else {
            String::new()
        };
        return Some(format!(
            "{method} sent {}{span} to {}, no response came back",
            times(e.requests),
            e.peer
        ));
    }
    // (An INVITE still ringing is the MakeCall's own message: "last: 180 Ringing".)
    if e.ours
        && method != "INVITE"
        && let Some(code) = e.answered.filter(|c| *c < 200)
    {
        return Some(format!(
            "{method} to {} answered {code} only, no final response came back",
            e.peer
        ));
    }
    if !e.ours
        && method == "INVITE"
        && e.answered.is_some_and(|c| (200..300).contains(&c))
        && !e.acked
    {
        return Some(format!(
            "{} to the INVITE sent {} to {}, no ACK came back",
            e.answered.unwrap_or(200),
            times(e.finals_sent.max(1)),
            e.peer
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct Wire {
        ledger: Ledger,
        t0: SystemTime,
    }

    impl Wire {
        fn new() -> Self {
            Self {
                ledger: Ledger::new(),
                t0: SystemTime::UNIX_EPOCH,
            }
        }

        /// `>INVITE 1` (we send), `<200 1 INVITE` (we receive), at `ms`.
        fn at(&self, ms: u64, line: &str) -> &Self {
            let (way, rest) = match line.as_bytes()[0] {
                b'>' => (Way::Sent, &line[1..]),
                _ => (Way::Received, &line[1..]),
            };
            let mut words = rest.split_whitespace();
            let first = words.next().unwrap();
            let (status, cseq) = match first.parse::<u16>() {
                Ok(code) => (Some(code), words.collect::<Vec<_>>().join(" ")),
                Err(_) => (None, format!("{} {first}", words.next().unwrap())),
            };
            self.ledger.record(Seen {
                way,
                at: self.t0 + Duration::from_millis(ms),
                peer: "127.0.0.1:5060",
                status,
                call_id: "c1",
                cseq: &cseq,
            });
            self
        }

        fn missing(&self) -> Vec<String> {
            self.ledger.missing("c1")
        }
    }

    #[test]
    fn an_answered_call_misses_nothing() {
        let w = Wire::new();
        w.at(0, ">INVITE 1")
            .at(1, "<180 1 INVITE")
            .at(2, "<200 1 INVITE")
            .at(3, ">ACK 1")
            .at(9, ">BYE 2")
            .at(10, "<200 2 BYE");
        assert!(w.missing().is_empty(), "{:?}", w.missing());
    }

    #[test]
    fn an_invite_lost_every_time_is_named_with_its_retransmissions() {
        let w = Wire::new();
        for ms in [0, 500, 1500, 3500] {
            w.at(ms, ">INVITE 1");
        }
        assert_eq!(
            w.missing(),
            ["INVITE sent 4 times over 3.5 s to 127.0.0.1:5060, no response came back"]
        );
    }

    #[test]
    fn a_bye_to_a_dead_peer_is_named_and_a_provisional_counts_as_an_answer() {
        let w = Wire::new();
        w.at(0, ">INVITE 1")
            .at(1, "<100 1 INVITE")
            .at(2, "<200 1 INVITE")
            .at(3, ">ACK 1")
            .at(2000, ">BYE 2");
        assert_eq!(
            w.missing(),
            ["BYE sent once to 127.0.0.1:5060, no response came back"]
        );
    }

    #[test]
    fn a_request_answered_only_provisionally_names_the_final_response() {
        let w = Wire::new();
        w.at(0, ">INVITE 1")
            .at(1, "<100 1 INVITE")
            .at(2, "<180 1 INVITE");
        // A ringing INVITE is its MakeCall's to describe ("last: 180 Ringing").
        assert!(w.missing().is_empty());
        w.at(3, "<200 1 INVITE")
            .at(4, ">ACK 1")
            .at(9, ">BYE 2")
            .at(10, "<100 2 BYE");
        assert_eq!(
            w.missing(),
            ["BYE to 127.0.0.1:5060 answered 100 only, no final response came back"]
        );
    }

    #[test]
    fn our_200_without_its_ack_is_named_and_the_ack_clears_it() {
        let w = Wire::new();
        w.at(0, "<INVITE 7")
            .at(1, ">180 7 INVITE")
            .at(2, ">200 7 INVITE")
            .at(500, ">200 7 INVITE");
        assert_eq!(
            w.missing(),
            ["200 to the INVITE sent twice to 127.0.0.1:5060, no ACK came back"]
        );
        w.at(900, "<ACK 7");
        assert!(w.missing().is_empty());
    }

    #[test]
    fn a_flood_of_call_ids_stays_bounded() {
        let ledger = Ledger::new();
        for i in 0..(MAX_CALLS + 100) {
            let id = format!("flood-{i}");
            ledger.record(Seen {
                // The first one is ours and unanswered: it would be named if still kept.
                way: if i == 0 { Way::Sent } else { Way::Received },
                at: SystemTime::UNIX_EPOCH,
                peer: "127.0.0.1:5060",
                status: None,
                call_id: &id,
                cseq: "1 OPTIONS",
            });
        }
        assert_eq!(ledger.len(), MAX_CALLS);
        // The oldest went first.
        assert!(ledger.missing("flood-0").is_empty());
        assert_eq!(ledger.missing("flood-1").len(), 0);
    }
}
