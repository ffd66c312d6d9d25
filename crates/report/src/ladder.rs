//! The ladder diagram of a run: one lane per UA and per remote address, one arrow per SIP
//! message (a message between two of our UAs is drawn once), the first failure marked.

use events::{Direction, Event, EventKind, NodeState, Outcome};
use std::collections::HashMap;
use std::fmt::Write as _;

#[derive(Clone, Debug, PartialEq)]
pub struct Lane {
    /// The UA id, or the remote `ip:port`.
    pub key: String,
    /// What people read: `alice (100)`, or the address.
    pub title: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Arrow {
    pub at_ms: f64,
    pub from: usize,
    pub to: usize,
    /// `INVITE`, or `180 Ringing`.
    pub label: String,
    pub status: Option<u16>,
    pub call_id: String,
    /// 1, 2, ... in order of first appearance: tells dialogs apart.
    pub call: usize,
    /// `PCMU sendonly` when the message carries SDP.
    pub sdp: Option<String>,
    /// The node running on the sending UA (or awaiting, on the receiving UA) at the time.
    pub node: Option<String>,
    pub raw: String,
    /// A 401/407 the challenged side answered with credentials later in the call: part of
    /// digest authentication, not a failure.
    pub challenge_answered: bool,
}

impl Arrow {
    pub fn is_failure(&self) -> bool {
        self.status.is_some_and(|s| s >= 400) && !self.challenge_answered
    }

    pub fn is_response(&self) -> bool {
        self.status.is_some()
    }
}

/// A note on a lane: the first failure of the run (expected versus observed).
#[derive(Clone, Debug, PartialEq)]
pub struct Divergence {
    pub at_ms: f64,
    pub lane: usize,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Ladder {
    pub title: String,
    pub lanes: Vec<Lane>,
    pub arrows: Vec<Arrow>,
    pub divergence: Option<Divergence>,
    pub outcome: Option<Outcome>,
}

/// `PCMU sendonly` from an SDP body, if the message has one.
fn sdp_note(raw: &str) -> Option<String> {
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b)?;
    if !body.contains("m=audio") {
        return None;
    }
    let codec = media::sdp::codec_names(body)
        .into_iter()
        .next()
        .unwrap_or_default();
    Some(format!("{codec} {}", media::sdp::direction(body).as_str()))
}

impl Ladder {
    pub fn from_events(events: &[Event]) -> Self {
        let mut l = Self::default();
        let mut lane_of: HashMap<String, usize> = HashMap::new();
        let addr_of_ua = crate::our_addresses(events);
        let mut calls: HashMap<String, usize> = HashMap::new();
        // Each message between our own UAs is drawn once.
        let mut once = crate::OnceEach::default();
        // The node running on each UA.
        let mut running: HashMap<String, String> = HashMap::new();
        let mut labels: HashMap<String, String> = HashMap::new();
        let mut failure: Option<(String, String)> = None;

        let mut lane = |l: &mut Self, key: &str, title: &str| -> usize {
            *lane_of.entry(key.to_owned()).or_insert_with(|| {
                l.lanes.push(Lane {
                    key: key.to_owned(),
                    title: title.to_owned(),
                });
                l.lanes.len() - 1
            })
        };
        for e in crate::in_wire_order(events) {
            match &e.event {
                EventKind::RunStarted(r) => {
                    l.title = r.scenario.clone();
                    for i in &r.instances {
                        labels.insert(i.id.clone(), i.label.clone());
                        let title = if i.label == i.dn {
                            i.label.clone()
                        } else {
                            format!("{} ({})", i.label, i.dn)
                        };
                        lane(&mut l, &i.id, &title);
                    }
                }
                EventKind::NodeState(n) => match n.to {
                    NodeState::Running => {
                        running.insert(n.ua.clone(), n.node.clone());
                    }
                    NodeState::Failed if failure.is_none() => {
                        failure = Some((
                            n.ua.clone(),
                            format!("{}: {}", n.node, n.reason.clone().unwrap_or_default()),
                        ));
                        let ua_lane = lane(&mut l, &n.ua, &n.ua);
                        l.divergence = Some(Divergence {
                            at_ms: e.elapsed_ms,
                            lane: ua_lane,
                            text: failure.clone().map(|f| f.1).unwrap_or_default(),
                        });
                    }
                    _ => {}
                },
                EventKind::SipMessage(m) => {
                    let peer_is_ours = addr_of_ua.get(&m.peer).cloned();
                    if !once.keep(m, peer_is_ours.is_some()) {
                        continue;
                    }
                    let peer = match &peer_is_ours {
                        Some(ua) => lane(&mut l, ua, ua),
                        None => lane(&mut l, &m.peer, &m.peer),
                    };
                    let me = lane(&mut l, &m.ua, &m.ua);
                    let (from, to) = match m.direction {
                        Direction::Sent => (me, peer),
                        Direction::Received => (peer, me),
                    };
                    let n = calls.len() + 1;
                    let call = *calls.entry(m.call_id.clone()).or_insert(n);
                    l.arrows.push(Arrow {
                        at_ms: e.elapsed_ms,
                        from,
                        to,
                        label: m.summary(),
                        status: m.status,
                        call_id: m.call_id.clone(),
                        call,
                        sdp: sdp_note(&m.raw),
                        node: running.get(&m.ua).cloned(),
                        raw: m.raw.clone(),
                        challenge_answered: false,
                    });
                }
                EventKind::RunFinished(f) => l.outcome = Some(f.outcome),
                _ => {}
            }
        }
        l.mark_answered_challenges();
        l
    }

    /// A 401 or 407 is answered when the side it went to sends a request with credentials on
    /// the same call afterwards: one pass from the end, remembering who has sent credentials
    /// on which call from there on.
    fn mark_answered_challenges(&mut self) {
        let mut credentials_later: std::collections::HashSet<(usize, String)> =
            std::collections::HashSet::new();
        for a in self.arrows.iter_mut().rev() {
            match a.status {
                None if a.raw.lines().any(|l| {
                    let name = l.split(':').next().unwrap_or_default().trim();
                    name.eq_ignore_ascii_case("Authorization")
                        || name.eq_ignore_ascii_case("Proxy-Authorization")
                }) =>
                {
                    credentials_later.insert((a.from, a.call_id.clone()));
                }
                Some(401 | 407) => {
                    a.challenge_answered = credentials_later.contains(&(a.to, a.call_id.clone()));
                }
                _ => {}
            }
        }
    }

    /// The ladder as text, at most `width` columns wide (120 fits a terminal and a CI log).
    pub fn to_text(&self, width: usize) -> String {
        let lanes = self.lanes.len().max(1);
        let time_w = 9;
        let col = ((width.saturating_sub(time_w)) / lanes).clamp(12, 40);
        let x = |lane: usize| time_w + lane * col + col / 2;
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.title);
        // Lane titles, centred on their lines.
        let mut head = vec![b' '; time_w + lanes * col];
        for (i, lane) in self.lanes.iter().enumerate() {
            let t: String = lane.title.chars().take(col - 1).collect();
            let start = x(i).saturating_sub(t.len() / 2);
            head[start..start + t.len()].copy_from_slice(t.as_bytes());
        }
        let _ = writeln!(out, "{}", String::from_utf8_lossy(&head).trim_end());
        let many_calls = self.arrows.iter().map(|a| a.call).max().unwrap_or(0) > 1;
        let mut div = self.divergence.clone();
        for a in &self.arrows {
            if let Some(d) = div.take_if(|d| d.at_ms <= a.at_ms) {
                out.push_str(&self.note_line(&d, &x, lanes, col, time_w));
            }
            let mut line = vec![b' '; time_w + lanes * col];
            let t = format!("{:8.3}", a.at_ms / 1000.0);
            line[..t.len()].copy_from_slice(t.as_bytes());
            for i in 0..lanes {
                line[x(i)] = b'|';
            }
            let (lo, hi) = (x(a.from.min(a.to)), x(a.from.max(a.to)));
            if lo == hi {
                continue;
            }
            for c in &mut line[lo + 1..hi] {
                *c = b'-';
            }
            if a.to > a.from {
                line[hi - 1] = b'>';
            } else {
                line[lo + 1] = b'<';
            }
            let mut label = a.label.clone();
            if many_calls {
                label = format!("[{}] {label}", a.call);
            }
            if let Some(s) = &a.sdp {
                label = format!("{label} ({s})");
            }
            if a.is_failure() {
                label = format!("!! {label}");
            }
            let room = hi - lo - 3;
            let label: String = label.chars().take(room).collect();
            let start = lo + 1 + (hi - lo - 1 - label.len()) / 2;
            line[start..start + label.len()].copy_from_slice(label.as_bytes());
            let _ = writeln!(out, "{}", String::from_utf8_lossy(&line).trim_end());
        }
        if let Some(d) = div {
            out.push_str(&self.note_line(&d, &x, lanes, col, time_w));
        }
        if let Some(o) = self.outcome {
            let _ = writeln!(out, "{}", format!("{o:?}").to_uppercase());
        }
        out
    }

    fn note_line(
        &self,
        d: &Divergence,
        x: &impl Fn(usize) -> usize,
        lanes: usize,
        col: usize,
        time_w: usize,
    ) -> String {
        let mut line = vec![b' '; time_w + lanes * col];
        let t = format!("{:8.3}", d.at_ms / 1000.0);
        line[..t.len()].copy_from_slice(t.as_bytes());
        for i in 0..lanes {
            line[x(i)] = b'|';
        }
        line[x(d.lane)] = b'X';
        let head = String::from_utf8_lossy(&line).trim_end().to_owned();
        let lane = self.lanes.get(d.lane).map_or("", |l| l.title.as_str());
        format!(
            "{head}\n{:w$}X {lane} diverged: {}\n",
            "",
            d.text,
            w = time_w
        )
    }

    /// The ladder as a Mermaid `sequenceDiagram`, for docs and tickets.
    pub fn to_mermaid(&self) -> String {
        let id = |i: usize| format!("L{i}");
        let mut out = String::from("sequenceDiagram\n");
        for (i, lane) in self.lanes.iter().enumerate() {
            let _ = writeln!(
                out,
                "    participant {} as {}",
                id(i),
                lane.title.replace(':', "#colon;")
            );
        }
        let many_calls = self.arrows.iter().map(|a| a.call).max().unwrap_or(0) > 1;
        let mut div = self.divergence.clone();
        for a in &self.arrows {
            if let Some(d) = div.take_if(|d| d.at_ms <= a.at_ms) {
                let _ = writeln!(
                    out,
                    "    Note over {}: diverged: {}",
                    id(d.lane),
                    d.text.replace(';', ",")
                );
            }
            let arrow = match (a.is_response(), a.is_failure()) {
                (_, true) => "--x",
                (true, false) => "-->>",
                (false, false) => "->>",
            };
            let mut label = a.label.clone();
            if many_calls {
                label = format!("[{}] {label}", a.call);
            }
            if let Some(s) = &a.sdp {
                label = format!("{label} ({s})");
            }
            let _ = writeln!(
                out,
                "    {}{arrow}{}: {}",
                id(a.from),
                id(a.to),
                label.replace(';', ",")
            );
        }
        if let Some(d) = div {
            let _ = writeln!(
                out,
                "    Note over {}: diverged: {}",
                id(d.lane),
                d.text.replace(';', ",")
            );
        }
        out
    }
}
