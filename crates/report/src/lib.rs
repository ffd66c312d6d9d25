//! Reports of a run, made from its event stream alone (never from the network): the ladder
//! diagram (text, HTML with SVG, Mermaid), JUnit XML and a pcap of the SIP messages.
//!
//! ```text
//! events.jsonl ──► Ladder::from_events ──► text (120 columns) / Mermaid
//!              ├─► junit::render
//!              └─► pcap::write
//! ```

mod html;
pub mod junit;
pub mod ladder;
pub mod pcap;

pub use ladder::Ladder;

use events::{Direction, Event, EventKind, SipMessage};
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    // The cause is in the message, so it is not also a `source` (a chain printer such as
    // anyhow's `{:#}` would say it twice).
    #[error("cannot read {path}: {cause}")]
    Read { path: String, cause: std::io::Error },
    #[error("{path}:{line}: not an event: {cause}")]
    Parse {
        path: String,
        line: usize,
        cause: serde_json::Error,
    },
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
}

/// Reads a JSON Lines event file. An event of a type this callflow does not know (a newer one
/// wrote it) is skipped, as docs/events.md promises; a known one that does not read is an error.
pub fn read_events(path: &Path) -> Result<Vec<Event>, ReportError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|cause| ReportError::Read {
        path: p.clone(),
        cause,
    })?;
    let mut out = Vec::new();
    for (i, l) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        match serde_json::from_str::<Event>(l) {
            Ok(e) => out.push(e),
            Err(cause) => {
                let unknown = serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v["event"]["type"].as_str().map(str::to_owned))
                    .is_some_and(|t| !events::EVENT_TYPES.contains(&t.as_str()));
                if !unknown {
                    return Err(ReportError::Parse {
                        path: p,
                        line: i + 1,
                        cause,
                    });
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod read_tests {
    #[test]
    fn an_event_of_an_unknown_type_is_skipped_and_a_broken_known_one_is_not() {
        let dir = std::env::temp_dir().join(format!("callflow-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("e.jsonl");
        let known = r#"{"seq":1,"ts_us":1,"elapsed_ms":0.0,"event":{"type":"ua_stopped","data":{"ua":"a","local_addr":"127.0.0.1:1"}}}"#;
        let future = r#"{"seq":2,"ts_us":2,"elapsed_ms":0.0,"event":{"type":"mos_sample","data":{"mos":4.4}}}"#;
        std::fs::write(&file, format!("{known}\n{future}\n")).unwrap();
        assert_eq!(super::read_events(&file).unwrap().len(), 1);
        let broken =
            r#"{"seq":3,"ts_us":3,"elapsed_ms":0.0,"event":{"type":"ua_stopped","data":{}}}"#;
        std::fs::write(&file, format!("{known}\n{broken}\n")).unwrap();
        let err = super::read_events(&file).unwrap_err().to_string();
        assert!(err.contains(":2"), "{err}");
        std::fs::remove_dir_all(dir).ok();
    }
}

/// The events in the order things happened on the wire: by timestamp, ties in stream order.
/// Each UA records its wire messages on its own task, so the stream may list a message's
/// reception just before its sending; their timestamps (a send is stamped before it is sent)
/// put them right.
pub(crate) fn in_wire_order(events: &[Event]) -> Vec<&Event> {
    let mut v: Vec<&Event> = events.iter().collect();
    v.sort_by_key(|e| (e.ts_us, e.seq));
    v
}

/// Every address our UAs used, and whose: each UA's listener, and each local address its SIP
/// messages crossed (over TCP, a connection it opened has a port of its own).
pub(crate) fn our_addresses(events: &[Event]) -> HashMap<String, String> {
    let mut ours = HashMap::new();
    for e in events {
        match &e.event {
            EventKind::UaStarted(u) => {
                ours.insert(u.local_addr.clone(), u.ua.clone());
            }
            EventKind::SipMessage(m) => {
                ours.entry(m.local.clone()).or_insert_with(|| m.ua.clone());
            }
            _ => {}
        }
    }
    ours
}

/// Each SIP message between two of our own UAs is recorded twice, as sent and as received; this
/// keeps one record of it, whichever comes first. Records are matched by Call-ID, CSeq and
/// method or status, not by address: over TCP the receiver sees the connection's own port.
#[derive(Default)]
pub(crate) struct OnceEach {
    /// Per message: sent and not yet received (> 0), or received before the sender's record
    /// came (< 0).
    pending: HashMap<(String, String, String), i64>,
}

impl OnceEach {
    /// Whether to keep this record; `peer_is_ours`: its other side is one of our UAs' addresses.
    pub(crate) fn keep(&mut self, m: &SipMessage, peer_is_ours: bool) -> bool {
        let key = (m.call_id.clone(), m.cseq.clone(), m.summary());
        match m.direction {
            Direction::Sent if peer_is_ours => {
                let n = self.pending.entry(key).or_default();
                *n += 1;
                *n > 0
            }
            Direction::Sent => true,
            Direction::Received => {
                if let Some(n) = self.pending.get_mut(&key).filter(|n| **n > 0) {
                    *n -= 1;
                    return false;
                }
                if peer_is_ours {
                    *self.pending.entry(key).or_default() -= 1;
                }
                true
            }
        }
    }
}
