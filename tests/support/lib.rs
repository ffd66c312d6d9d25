//! Test support: run a scenario in-process on real loopback sockets and read its events the way
//! a ladder diagram would.

pub mod lab;

use events::{CleanupPhase, Direction, Event, EventKind, NodeState, Outcome, RunFinished};
use orchestrator::{Collector, EventBus, EventSink, RunOptions, RunReport};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A folder of a test's own (`callflow-{name}-…` in the temp dir), removed with everything in
/// it when the value is dropped: tests leave nothing behind.
pub fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("callflow-{name}-"))
        .tempdir()
        .expect("a temp dir")
}

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// A finished run and every event it emitted.
pub struct Run {
    pub report: RunReport,
    pub events: Vec<Event>,
}

/// Runs a fixture file with ephemeral ports.
pub async fn run_file(rel: &str) -> Run {
    let (s, _) = scenario::load(&fixture(rel)).unwrap_or_else(|d| panic!("{rel} is invalid:\n{d}"));
    run_scenario(&s, RunOptions::default(), vec![]).await
}

/// Runs scenario text (for peers whose address is only known at run time).
pub async fn run_text(text: &str, name: &str) -> Run {
    let s = scenario::parse_str(text, name).unwrap_or_else(|d| panic!("{name} is invalid:\n{d}"));
    run_scenario(&s, RunOptions::default(), vec![]).await
}

pub async fn run_scenario(
    s: &scenario::Scenario,
    opts: RunOptions,
    mut sinks: Vec<Arc<dyn EventSink>>,
) -> Run {
    let collector = Collector::new();
    sinks.push(collector.clone());
    let report = orchestrator::run(s, opts, EventBus::new(sinks)).await;
    Run {
        report,
        events: collector.events(),
    }
}

/// Starts sipp (Debian `sip-tester`) with `args`, in `dir` if given (where a scenario's
/// `play_pcap_audio` files are found), bounded by its own `-timeout` of `timeout`; its stderr
/// is kept for the failure message, its stdout dropped.
pub fn spawn_sipp(dir: Option<&Path>, args: &[&str], timeout: &str) -> std::process::Child {
    use std::process::{Command, Stdio};
    let mut cmd = Command::new("sipp");
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    cmd.args(args)
        .args(["-nostdin", "-timeout", timeout, "-timeout_error"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start sipp ({e}): install it with `apt-get install sip-tester` (.ci/run does)")
        })
}

/// A port free right now on 127.0.0.1 (UDP and TCP), for a peer the test starts on it.
pub fn free_udp_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    // Handed out in blocks of 4 (a peer binds next to its port: sipp's media port and its
    // RTCP), each block once per test process: two tests running at once never get the same
    // or a neighbouring port between the check here and the peer's bind.
    static HANDED: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let free = |p: u16| {
        std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
    };
    let mut handed = HANDED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Below the kernel's ephemeral range (32768 up, by default): a port the OS hands out for
    // port 0 (our UAs', other tests') can never take it between here and the peer's bind.
    for _ in 0..1000 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = 20_000 + (h.finish() % 3_000) as u16 * 4;
        if !handed.contains(&port) && (port..port + 4).all(free) {
            handed.push(port);
            return port;
        }
    }
    panic!("no free port between 20000 and 32000")
}

/// Tells the test where the first UA listens, once it does.
struct UaListening {
    started: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<String>>>,
}

impl EventSink for UaListening {
    fn event(&self, e: &Event) {
        if let EventKind::UaStarted(u) = &e.event
            && let Some(tx) = self.started.lock().expect("lock").take()
        {
            let _ = tx.send(u.local_addr.clone());
        }
    }
}

/// Runs a one-UA scenario on a free port of its own and waits for the UA to listen: the run's
/// task and the UA's address, for a peer (sipp, or a test's own socket) to reach.
pub async fn start_one_ua(s: scenario::Scenario) -> (tokio::task::JoinHandle<Run>, String) {
    start_one_ua_with(s, orchestrator::Limits::default()).await
}

/// [`start_one_ua`] with other [`orchestrator::Limits`].
pub async fn start_one_ua_with(
    s: scenario::Scenario,
    limits: orchestrator::Limits,
) -> (tokio::task::JoinHandle<Run>, String) {
    start_one_ua_opts(
        s,
        RunOptions {
            limits,
            ..RunOptions::default()
        },
    )
    .await
}

/// Starts the run of `s` (its UA on a free port) with `opts` and returns once the UA listens,
/// with its address; cancel `opts.stop` to end a scenario that waits.
pub async fn start_one_ua_opts(
    s: scenario::Scenario,
    opts: RunOptions,
) -> (tokio::task::JoinHandle<Run>, String) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let opts = RunOptions {
        sip_ports: orchestrator::PortPolicy::Range {
            base: free_udp_port(),
            count: 1,
            step: 1,
        },
        ..opts
    };
    let sink = Arc::new(UaListening {
        started: std::sync::Mutex::new(Some(tx)),
    });
    let run = tokio::spawn(async move { run_scenario(&s, opts, vec![sink]).await });
    let ua = tokio::time::timeout(std::time::Duration::from_secs(10), rx)
        .await
        .expect("the UA starts")
        .expect("address");
    (run, ua)
}

impl Run {
    pub fn finished(&self) -> &RunFinished {
        match &self.events.last().expect("events").event {
            EventKind::RunFinished(f) => f,
            other => panic!("the last event is not run_finished: {other:?}"),
        }
    }

    pub fn node(&self, id: &str) -> &events::NodeResult {
        self.finished()
            .nodes
            .iter()
            .find(|n| n.node == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    pub fn state(&self, id: &str) -> NodeState {
        self.node(id).state
    }

    /// The SIP messages one UA sent (`>`) and received (`<`), as `>INVITE` or `<180`, with
    /// retransmissions (byte-identical repeats) folded.
    pub fn wire(&self, ua: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut last_raw: Vec<(Direction, String)> = Vec::new();
        for e in &self.events {
            let EventKind::SipMessage(m) = &e.event else {
                continue;
            };
            if m.ua != ua {
                continue;
            }
            if last_raw
                .iter()
                .any(|(d, r)| *d == m.direction && *r == m.raw)
            {
                continue;
            }
            last_raw.push((m.direction, m.raw.clone()));
            let dir = if m.direction == Direction::Sent {
                ">"
            } else {
                "<"
            };
            let what = m.status.map_or_else(|| m.method.clone(), |s| s.to_string());
            out.push(format!("{dir}{what}"));
        }
        out
    }

    /// Cleanup steps as (phase, finished), in the order they were reported.
    pub fn cleanup(&self) -> Vec<(CleanupPhase, bool)> {
        self.events
            .iter()
            .filter_map(|e| match &e.event {
                EventKind::Cleanup(c) => Some((c.phase, c.finished)),
                _ => None,
            })
            .collect()
    }

    /// The checks every run test ends with: cleanup ran in order, and nothing was left behind.
    pub fn assert_clean(&self) {
        use CleanupPhase::*;
        assert_eq!(
            self.cleanup(),
            vec![
                (HangupAll, false),
                (HangupAll, true),
                (CloseAll, false),
                (CloseAll, true),
                (TeardownUas, false),
                (TeardownUas, true)
            ],
            "cleanup order"
        );
        let leaks = self.finished().leaks;
        assert!(leaks.is_clean(), "leak check: {leaks:?}");
        assert_eq!(self.report.leaks, leaks);
        // Sequence numbers have no gaps; run_started comes first and carries the schema version.
        for (i, e) in self.events.iter().enumerate() {
            assert_eq!(e.seq, i as u64);
        }
        match &self.events[0].event {
            EventKind::RunStarted(r) => assert_eq!(r.schema_version, events::SCHEMA_VERSION),
            other => panic!("first event: {other:?}"),
        }
        // Between our own UAs on loopback every request is answered at once, so none is ever
        // retransmitted; one that is was dropped (an in-dialog request taken before its dialog was
        // confirmed once was).
        let ours: Vec<&str> = self
            .events
            .iter()
            .filter_map(|e| match &e.event {
                EventKind::UaStarted(u) => Some(u.local_addr.as_str()),
                _ => None,
            })
            .collect();
        let mut sent = std::collections::HashSet::new();
        for e in &self.events {
            if let EventKind::SipMessage(m) = &e.event
                && m.direction == Direction::Sent
                && m.status.is_none()
                && m.method != "ACK"
                && ours.contains(&m.peer.as_str())
                && !sent.insert((m.ua.clone(), m.call_id.clone(), m.cseq.clone()))
            {
                let trace: Vec<String> = self
                    .events
                    .iter()
                    .map(|e| match &e.event {
                        EventKind::SipMessage(s) => format!(
                            "{:>9.3} {} {:?} {} {}",
                            e.elapsed_ms,
                            s.ua,
                            s.direction,
                            s.summary(),
                            s.cseq
                        ),
                        other => format!("{:>9.3} {other:?}", e.elapsed_ms),
                    })
                    .collect();
                panic!(
                    "{} retransmitted {} {} to one of our own UAs:\n{}",
                    m.ua,
                    m.cseq,
                    m.call_id,
                    trace.join("\n")
                );
            }
        }
        // Nothing (not even a late RTP packet) comes after run_finished.
        let last = &self.events.last().expect("events").event;
        assert!(
            matches!(last, EventKind::RunFinished(_)),
            "last event: {last:?}"
        );
    }

    pub fn assert_outcome(&self, want: Outcome) {
        assert_eq!(
            self.report.outcome, want,
            "outcome; failure: {:?}",
            self.report.failure
        );
    }
}

impl Run {
    /// Every `media_stats` event, in order.
    pub fn media_stats(&self) -> Vec<events::MediaStats> {
        self.events
            .iter()
            .filter_map(|e| match &e.event {
                EventKind::MediaStats(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    /// The transport of every SIP message of `ua` (of every UA when None), in order.
    pub fn transports(&self, ua: Option<&str>) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match &e.event {
                EventKind::SipMessage(m) if ua.is_none_or(|u| u == m.ua) => {
                    Some(m.transport.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// The raw text of the SIP messages one UA sent (`>`) or received (`<`) whose summary is
    /// `what` (as in [`Run::wire`]), in order.
    pub fn raw(&self, ua: &str, what: &str) -> Vec<String> {
        let (dir, name) = what.split_at(1);
        self.events
            .iter()
            .filter_map(|e| match &e.event {
                EventKind::SipMessage(m) if m.ua == ua => Some(m),
                _ => None,
            })
            .filter(|m| (dir == ">") == (m.direction == Direction::Sent))
            .filter(|m| m.status.map_or_else(|| m.method.clone(), |s| s.to_string()) == name)
            .map(|m| m.raw.clone())
            .collect()
    }

    /// Asserts that `expected` appears in the UA's wire in this order (other messages may come
    /// between: RFC 3515 lets a NOTIFY overtake the 202 to its REFER, for instance).
    pub fn assert_wire_contains(&self, ua: &str, expected: &[&str]) {
        let wire = self.wire(ua);
        let mut it = wire.iter();
        for want in expected {
            assert!(
                it.any(|got| got == want),
                "{ua}: expected {expected:?} in order within {wire:?}"
            );
        }
    }
}
