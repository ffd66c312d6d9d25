//! The events a run keeps in memory for what is drawn at its end (ladder, JUnit, pcap, the web
//! UI's history), within a budget: a flood of messages must not grow the process for the whole
//! run. Every event is kept until the budget is spent; past it, the run's own story (node
//! states, errors, cleanup, media statistics, the verdict) is still kept, and the messages,
//! packets and lesser logs are counted instead. Streams that write as they go (JSON Lines, the
//! terminal) see every event either way.

use crate::{Event, EventKind, Level};

/// What a run keeps unless told otherwise: 128 MiB of events, by [`weight`].
pub const DEFAULT_BUDGET: usize = 128 << 20;

/// The events kept, in order, and the count of those left out.
#[derive(Clone, Debug)]
pub struct Retained {
    events: Vec<Event>,
    bytes: usize,
    budget: usize,
    dropped: u64,
}

impl Default for Retained {
    fn default() -> Self {
        Self::new(DEFAULT_BUDGET)
    }
}

/// About how many bytes an event holds in memory.
pub fn weight(e: &Event) -> usize {
    let text = match &e.event {
        EventKind::SipMessage(m) => {
            m.raw.len() + m.call_id.len() + m.cseq.len() + m.local.len() + m.peer.len()
        }
        EventKind::RtpPacket(p) => p.bytes.len() + p.sip_call_id.len() + p.local.len(),
        EventKind::RtpCapture(c) => c
            .packets
            .iter()
            .map(|p| size_of::<crate::CapturedRtp>() + p.bytes.len() + p.peer.len())
            .sum(),
        EventKind::Log(l) => l.message.len(),
        _ => 0,
    };
    size_of::<Event>() + text
}

/// Kept whatever the budget says: bounded by the scenario, not by what a peer sends.
fn essential(e: &Event) -> bool {
    match &e.event {
        EventKind::SipMessage(_) | EventKind::RtpPacket(_) | EventKind::RtpCapture(_) => false,
        EventKind::Log(l) => l.level == Level::Error,
        _ => true,
    }
}

impl Retained {
    pub fn new(budget: usize) -> Self {
        Self {
            events: Vec::new(),
            bytes: 0,
            budget,
            dropped: 0,
        }
    }

    /// Keeps `event` if the budget allows (or it is essential); returns whether it was kept.
    pub fn push(&mut self, event: &Event) -> bool {
        let w = weight(event);
        if self.bytes + w > self.budget && !essential(event) {
            self.dropped += 1;
            return false;
        }
        self.bytes += w;
        self.events.push(event.clone());
        true
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    pub fn into_events(self) -> Vec<Event> {
        self.events
    }

    /// How many events were left out.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The note for a report drawn from these events, when some were left out.
    pub fn note(&self) -> Option<String> {
        (self.dropped > 0).then(|| {
            format!(
                "{} events (SIP messages, RTP packets, logs) past the {} MiB kept for reports were left out of them; the JSON Lines stream has every event",
                self.dropped,
                self.budget >> 20
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Direction, NodeState, NodeStateChange, SipMessage};

    fn event(kind: EventKind) -> Event {
        Event {
            seq: 0,
            ts_us: 0,
            elapsed_ms: 0.0,
            event: kind,
        }
    }

    fn options(n: usize) -> Event {
        event(EventKind::SipMessage(SipMessage {
            ua: "bob".into(),
            direction: Direction::Received,
            transport: "udp".into(),
            local: "127.0.0.1:5060".into(),
            peer: "127.0.0.1:5070".into(),
            method: "OPTIONS".into(),
            status: None,
            reason: None,
            call_id: format!("flood-{n:05}"),
            cseq: "1 OPTIONS".into(),
            raw: "x".repeat(400),
        }))
    }

    #[test]
    fn a_flood_stops_at_the_budget_and_the_verdict_is_still_kept() {
        let budget = 100 * weight(&options(0));
        let mut kept = Retained::new(budget);
        for n in 0..10_000 {
            kept.push(&options(n));
        }
        assert_eq!(kept.events().len(), 100);
        assert_eq!(kept.dropped(), 9_900);
        let state = event(EventKind::NodeState(NodeStateChange {
            node: "bob.1".into(),
            ua: "bob".into(),
            from: NodeState::Running,
            to: NodeState::Passed,
            reason: None,
            duration_ms: None,
            handled: false,
            iteration: None,
        }));
        assert!(
            kept.push(&state),
            "the run's own story is kept past the budget"
        );
        assert!(kept.note().unwrap().starts_with("9900 events"));
    }

    #[test]
    fn an_ordinary_run_keeps_everything() {
        let mut kept = Retained::default();
        for n in 0..1000 {
            assert!(kept.push(&options(n)));
        }
        assert_eq!(kept.dropped(), 0);
        assert!(kept.note().is_none());
    }
}
