//! The statistics of a load, kept as aggregates (memory grows with calls in flight, not with
//! calls made): HDR histograms per phase and per node, counts by outcome, failure class and
//! status code, retransmissions. Fed the event stream (as a sink, off the engine's path) and
//! the verdict of each iteration.

use crate::bus::EventSink;
use events::{Direction, Event, EventKind, NodeState};
use flow::chains::Verdict;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Microseconds, 3 significant digits, from 1 µs to an hour.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// A call's key in the wire map (the UA and its Call-ID), or a CSeq's (with ""): 64 bits of a
/// fixed hash, so entries hold no strings; two calls colliding would merge their phases, with
/// odds near 10^-8 for a million calls in flight.
fn wire_key(a: &str, b: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    (a, b).hash(&mut h);
    h.finish()
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = (d.as_micros() as u64).clamp(1, h.high());
    let _ = h.record(us);
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// What the wire said of one call so far (by UA and Call-ID), until it ends.
#[derive(Debug)]
struct Wire {
    first: SystemTime,
    /// The CSeq of the call's first INVITE (a re-INVITE's is another), and when its request
    /// went, its first 18x and its 2xx came. The events of one call can reach the statistics
    /// out of order (sent and received are tapped on different threads), so each phase is
    /// recorded once both its ends are known, whichever came first.
    invite_cseq: Option<u64>,
    invite: Option<SystemTime>,
    ringing: Option<SystemTime>,
    answer: Option<SystemTime>,
    bye_cseq: Option<u64>,
    bye: Option<SystemTime>,
    bye_answer: Option<SystemTime>,
    /// The first REGISTER of the Call-ID, and its 2xx (after any challenge).
    register: Option<SystemTime>,
    registered: Option<SystemTime>,
    /// The callee's side: the first INVITE received and the first ACK after it.
    invited: Option<SystemTime>,
    acked: Option<SystemTime>,
    /// Phases recorded: pdd, setup, bye, register, answered.
    done: [bool; 5],
    /// When the call ended on the wire (its BYE answered, or its INVITE refused): kept a
    /// little longer only, to count retransmissions.
    ended: Option<SystemTime>,
    /// Each message seen (direction, CSeq, status): a second one is a retransmission.
    seen: Vec<(Direction, u64, u16)>,
}

/// The phases measured from the wire.
#[derive(Debug)]
struct Phases {
    /// INVITE to first 18x: post-dial delay.
    pdd: Histogram<u64>,
    /// INVITE to 2xx.
    setup: Histogram<u64>,
    /// BYE to its final response.
    bye: Histogram<u64>,
    /// A REGISTER to its 2xx, a digest challenge included.
    register: Histogram<u64>,
    /// The callee's setup: an INVITE received to its ACK (the call set up as the callee sees it).
    answered: Histogram<u64>,
}

impl Phases {
    fn new() -> Self {
        Self {
            pdd: histogram(),
            setup: histogram(),
            bye: histogram(),
            register: histogram(),
            answered: histogram(),
        }
    }
}

#[derive(Debug)]
struct Inner {
    phases: Phases,
    /// The same since the last interval (the live line, `--stats`).
    interval: Phases,
    iteration: Histogram<u64>,
    /// From when each iteration was due to start (coordinated omission).
    from_schedule: Histogram<u64>,
    /// How late each start was against its schedule.
    lag: Histogram<u64>,
    nodes: BTreeMap<String, Histogram<u64>>,
    /// By [`wire_key`] of the UA and Call-ID: a call's entry costs no strings.
    wire: HashMap<u64, Wire>,
    started: u64,
    passed: u64,
    failed: u64,
    stopped: u64,
    failures: BTreeMap<String, u64>,
    retrans_sent: u64,
    retrans_received: u64,
    responses_received: BTreeMap<u16, u64>,
    responses_sent: BTreeMap<u16, u64>,
    max_in_flight: u64,
    peak_rss_mb: f64,
    peak_transactions: u64,
    /// The first failures' messages, for the terminal.
    first_failures: Vec<String>,
    first_failure: Option<events::Failure>,
}

/// How many failure messages are kept for the terminal.
const FIRST_FAILURES: usize = 10;
/// A call the wire has said nothing of for this long is forgotten (its entry only counts
/// retransmissions; rsipstack's own transactions end well before).
const WIRE_KEEP: Duration = Duration::from_secs(300);
/// A call that ended on the wire is kept this long for the retransmissions that may follow
/// (Timer J, 32 s).
const WIRE_AFTER_END: Duration = Duration::from_secs(40);

/// The statistics of one load.
#[derive(Debug)]
pub struct LoadStats {
    inner: Mutex<Inner>,
    /// The Prometheus metrics kept alongside (`--metrics`).
    metrics: Option<std::sync::Arc<super::metrics::Metrics>>,
}

impl Default for LoadStats {
    fn default() -> Self {
        Self::new(None)
    }
}

impl LoadStats {
    /// Statistics that keep `metrics` up to date too.
    pub fn new(metrics: Option<std::sync::Arc<super::metrics::Metrics>>) -> Self {
        Self {
            metrics,
            inner: Mutex::new(Inner {
                phases: Phases::new(),
                interval: Phases::new(),
                iteration: histogram(),
                from_schedule: histogram(),
                lag: histogram(),
                nodes: BTreeMap::new(),
                wire: HashMap::new(),
                started: 0,
                passed: 0,
                failed: 0,
                stopped: 0,
                failures: BTreeMap::new(),
                retrans_sent: 0,
                retrans_received: 0,
                responses_received: BTreeMap::new(),
                responses_sent: BTreeMap::new(),
                max_in_flight: 0,
                peak_rss_mb: 0.0,
                peak_transactions: 0,
                first_failures: Vec::new(),
                first_failure: None,
            }),
        }
    }
}

/// A point-in-time view for the live line and the `--stats` file.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Snapshot {
    pub elapsed_s: f64,
    pub target_rate: Option<f64>,
    /// Iterations started per second over the last interval.
    pub rate: f64,
    pub in_flight: u64,
    pub started: u64,
    pub passed: u64,
    pub failed: u64,
    pub retransmissions: u64,
    /// Setup (INVITE to 2xx) over the last interval.
    pub setup_p50_ms: f64,
    pub setup_p99_ms: f64,
    pub setup_count: u64,
    /// rsipstack's transactions, running and finished-but-kept (a UAC's INVITE lingers 64 s:
    /// Timer M, then its finished-transaction cache), over every role.
    pub transactions: u64,
    /// The process's resident memory, MB (Linux; 0 elsewhere).
    pub rss_mb: f64,
}

impl LoadStats {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How late a start was against its schedule.
    pub(crate) fn lag(&self, lag: Duration) {
        record(&mut self.inner().lag, lag);
    }

    /// Iterations started so far, and in flight now.
    pub(crate) fn progress(&self, started: u64, in_flight: u64) {
        if let Some(m) = &self.metrics {
            m.progress(started, in_flight);
        }
        let mut i = self.inner();
        i.started = started;
        i.max_in_flight = i.max_in_flight.max(in_flight);
    }

    /// An iteration ended after `took` (`from_schedule`: since it was due to start).
    pub(crate) fn ended(&self, how: &Verdict, took: Duration, from_schedule: Duration) {
        if let Some(m) = &self.metrics {
            m.ended(match how {
                Verdict::Passed => "passed",
                Verdict::Failed(_) => "failed",
                Verdict::Stopped => "stopped",
            });
        }
        let mut i = self.inner();
        record(&mut i.iteration, took);
        record(&mut i.from_schedule, from_schedule);
        match how {
            Verdict::Passed => i.passed += 1,
            Verdict::Stopped => i.stopped += 1,
            Verdict::Failed(f) => {
                i.failed += 1;
                *i.failures.entry(failure_class(f)).or_default() += 1;
                if i.first_failure.is_none() {
                    i.first_failure = Some(f.clone());
                }
                if i.first_failures.len() < FIRST_FAILURES {
                    i.first_failures.push(f.message.clone());
                }
            }
        }
    }

    pub(crate) fn failed(&self) -> u64 {
        self.inner().failed
    }

    pub(crate) fn first_failure(&self) -> Option<events::Failure> {
        self.inner().first_failure.clone()
    }

    pub(crate) fn first_failures(&self) -> Vec<String> {
        self.inner().first_failures.clone()
    }

    /// Notes the memory now (the peaks go in the summary).
    pub(crate) fn memory(&self, rss_mb: f64, transactions: u64) {
        let mut i = self.inner();
        i.peak_rss_mb = i.peak_rss_mb.max(rss_mb);
        i.peak_transactions = i.peak_transactions.max(transactions);
    }

    /// The numbers now; `interval` restarts the interval's histograms.
    pub(crate) fn snapshot(&self, in_flight: u64) -> Snapshot {
        let mut i = self.inner();
        let setup = Percentiles::of(&i.interval.setup);
        i.interval = Phases::new();
        let now = SystemTime::now();
        let cutoff = |keep| now.checked_sub(keep).unwrap_or(SystemTime::UNIX_EPOCH);
        let (cutoff, ended_cutoff) = (cutoff(WIRE_KEEP), cutoff(WIRE_AFTER_END));
        i.wire
            .retain(|_, w| w.first > cutoff && w.ended.is_none_or(|e| e > ended_cutoff));
        Snapshot {
            in_flight,
            started: i.started,
            passed: i.passed,
            failed: i.failed,
            retransmissions: i.retrans_sent + i.retrans_received,
            setup_p50_ms: setup.p50,
            setup_p99_ms: setup.p99,
            setup_count: setup.count,
            ..Snapshot::default()
        }
    }

    /// Everything, for the summary.
    pub(crate) fn totals(&self) -> Totals {
        let i = self.inner();
        let mut latency = BTreeMap::new();
        let mut histograms = BTreeMap::new();
        for (name, h) in [
            ("pdd", &i.phases.pdd),
            ("setup", &i.phases.setup),
            ("bye", &i.phases.bye),
            ("register", &i.phases.register),
            ("answered", &i.phases.answered),
            ("iteration", &i.iteration),
            ("iteration_from_schedule", &i.from_schedule),
            ("start_lag", &i.lag),
        ] {
            latency.insert(name.to_owned(), Percentiles::of(h));
            histograms.insert(name.to_owned(), encode(h));
        }
        Totals {
            started: i.started,
            passed: i.passed,
            failed: i.failed,
            stopped: i.stopped,
            failures_by_class: i.failures.clone(),
            latency,
            nodes: i
                .nodes
                .iter()
                .map(|(n, h)| (n.clone(), Percentiles::of(h)))
                .collect(),
            histograms,
            retrans_sent: i.retrans_sent,
            retrans_received: i.retrans_received,
            responses_received: i
                .responses_received
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            responses_sent: i
                .responses_sent
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            max_in_flight: i.max_in_flight,
            peak_rss_mb: i.peak_rss_mb,
            peak_transactions: i.peak_transactions,
            max_lag: Duration::from_micros(i.lag.max()),
            late_starts: i.lag.count_between(10_000, u64::MAX),
        }
    }

    fn sip(&self, at: SystemTime, m: &events::SipMessage) {
        let metrics = self.metrics.as_deref();
        let dir = match m.direction {
            Direction::Sent => "sent",
            Direction::Received => "received",
        };
        let mut i = self.inner();
        let i = &mut *i;
        if let Some(code) = m.status {
            if let Some(x) = metrics {
                x.response(dir, code);
            }
            let by = match m.direction {
                Direction::Sent => &mut i.responses_sent,
                Direction::Received => &mut i.responses_received,
            };
            *by.entry(code).or_default() += 1;
        }
        let w = i
            .wire
            .entry(wire_key(&m.ua, &m.call_id))
            .or_insert_with(|| Wire {
                first: at,
                invite_cseq: None,
                invite: None,
                ringing: None,
                answer: None,
                bye_cseq: None,
                bye: None,
                bye_answer: None,
                register: None,
                registered: None,
                invited: None,
                acked: None,
                done: [false; 5],
                ended: None,
                seen: Vec::new(),
            });
        let cseq = wire_key(&m.cseq, "");
        let this = (m.direction, cseq, m.status.unwrap_or(0));
        // A 1xx other than a reliable one may come twice legitimately (two 180s); count only
        // requests and final responses.
        let countable = m.status.is_none_or(|c| c >= 200);
        if countable && w.seen.contains(&this) {
            if let Some(x) = metrics {
                x.retransmission(dir);
            }
            match m.direction {
                Direction::Sent => i.retrans_sent += 1,
                Direction::Received => i.retrans_received += 1,
            }
            return;
        }
        if countable && w.seen.len() < 32 {
            w.seen.push(this);
        }
        let ours = |first: &mut Option<u64>| *first.get_or_insert(cseq) == cseq;
        match (m.status, m.method.as_str(), m.direction) {
            (None, "INVITE", Direction::Sent) if ours(&mut w.invite_cseq) => {
                w.invite.get_or_insert(at);
            }
            (Some(180..=189), "INVITE", Direction::Received) if ours(&mut w.invite_cseq) => {
                w.ringing.get_or_insert(at);
            }
            (Some(200..=299), "INVITE", Direction::Received) if ours(&mut w.invite_cseq) => {
                w.answer.get_or_insert(at);
            }
            (Some(300..), "INVITE", _) if ours(&mut w.invite_cseq) => {
                w.ended.get_or_insert(at);
                return;
            }
            (None, "INVITE", Direction::Received) if ours(&mut w.invite_cseq) => {
                w.invited.get_or_insert(at);
            }
            (None, "ACK", Direction::Received) => {
                w.acked.get_or_insert(at);
            }
            (None, "REGISTER", Direction::Sent) => {
                w.register.get_or_insert(at);
            }
            (Some(200..=299), "REGISTER", Direction::Received) => {
                w.registered.get_or_insert(at);
                w.ended.get_or_insert(at);
            }
            (None, "BYE", Direction::Sent) if ours(&mut w.bye_cseq) => {
                w.bye.get_or_insert(at);
            }
            (Some(200..), "BYE", _) if ours(&mut w.bye_cseq) => {
                w.ended.get_or_insert(at);
                if m.direction == Direction::Received {
                    w.bye_answer.get_or_insert(at);
                }
            }
            _ => return,
        }
        let took = |from: Option<SystemTime>, to: Option<SystemTime>| {
            Some(to?.duration_since(from?).unwrap_or_default())
        };
        let phases = [
            took(w.invite, w.ringing),
            took(w.invite, w.answer),
            took(w.bye, w.bye_answer),
            took(w.register, w.registered),
            took(w.invited, w.acked),
        ];
        for (k, d) in phases.into_iter().enumerate() {
            let Some(d) = d.filter(|_| !w.done[k]) else {
                continue;
            };
            w.done[k] = true;
            let (all, interval) = match k {
                0 => (&mut i.phases.pdd, &mut i.interval.pdd),
                1 => (&mut i.phases.setup, &mut i.interval.setup),
                2 => (&mut i.phases.bye, &mut i.interval.bye),
                3 => (&mut i.phases.register, &mut i.interval.register),
                _ => (&mut i.phases.answered, &mut i.interval.answered),
            };
            record(all, d);
            record(interval, d);
            match (k, metrics) {
                (0, Some(x)) => x.pdd(d),
                (1, Some(x)) => x.setup(d),
                _ => {}
            }
        }
    }
}

/// Everything the statistics say at the end.
#[derive(Clone, Debug)]
pub(crate) struct Totals {
    pub(crate) started: u64,
    pub(crate) passed: u64,
    pub(crate) failed: u64,
    pub(crate) stopped: u64,
    pub(crate) failures_by_class: BTreeMap<String, u64>,
    pub(crate) latency: BTreeMap<String, Percentiles>,
    pub(crate) nodes: BTreeMap<String, Percentiles>,
    pub(crate) histograms: BTreeMap<String, String>,
    pub(crate) retrans_sent: u64,
    pub(crate) retrans_received: u64,
    pub(crate) responses_received: BTreeMap<String, u64>,
    pub(crate) responses_sent: BTreeMap<String, u64>,
    pub(crate) max_in_flight: u64,
    pub(crate) peak_rss_mb: f64,
    pub(crate) peak_transactions: u64,
    pub(crate) max_lag: Duration,
    /// Starts 10 ms or more behind their schedule.
    pub(crate) late_starts: u64,
}

/// The process's resident memory in MB, from /proc (0 where there is none).
pub(crate) fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A histogram as HDR V2 (uncompressed), base64: what `HdrHistogram` tools decode and merge.
fn encode(h: &Histogram<u64>) -> String {
    use base64::Engine as _;
    use hdrhistogram::serialization::{Serializer as _, V2Serializer};
    let mut bytes = Vec::new();
    if V2Serializer::new().serialize(h, &mut bytes).is_err() {
        return String::new();
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A failure's class in `failures_by_class`: its kind, and an unexpected status's code
/// (`status_486`).
pub(crate) fn failure_class(f: &events::Failure) -> String {
    match f.status {
        Some(code) => format!("status_{code}"),
        None => serde_json::to_value(f.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "other".to_owned()),
    }
}

impl EventSink for LoadStats {
    fn event(&self, event: &Event) {
        match &event.event {
            EventKind::SipMessage(m) => {
                let at = SystemTime::UNIX_EPOCH + Duration::from_micros(event.ts_us);
                self.sip(at, m);
            }
            EventKind::NodeState(n)
                if matches!(n.to, NodeState::Passed | NodeState::Failed)
                    && n.from == NodeState::Running =>
            {
                if let Some(ms) = n.duration_ms {
                    let mut i = self.inner();
                    let h = i.nodes.entry(n.node.clone()).or_insert_with(histogram);
                    record(h, Duration::from_secs_f64(ms / 1000.0));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(dir: Direction, method: &str, status: Option<u16>, cseq: &str) -> events::SipMessage {
        events::SipMessage {
            ua: "alice".into(),
            direction: dir,
            transport: "udp".into(),
            local: "127.0.0.1:5060".into(),
            peer: "127.0.0.1:5062".into(),
            method: method.into(),
            status,
            reason: None,
            call_id: "c1".into(),
            cseq: cseq.into(),
            raw: String::new(),
        }
    }

    #[test]
    fn the_phases_and_retransmissions_come_from_the_wire() {
        let s = LoadStats::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let at = |ms| t0 + Duration::from_millis(ms);
        use Direction::{Received as R, Sent as S};
        s.sip(at(0), &msg(S, "INVITE", None, "1 INVITE"));
        s.sip(at(500), &msg(S, "INVITE", None, "1 INVITE"));
        s.sip(at(501), &msg(R, "INVITE", Some(100), "1 INVITE"));
        s.sip(at(520), &msg(R, "INVITE", Some(180), "1 INVITE"));
        s.sip(at(530), &msg(R, "INVITE", Some(200), "1 INVITE"));
        s.sip(at(531), &msg(R, "INVITE", Some(200), "1 INVITE"));
        s.sip(at(1000), &msg(S, "BYE", None, "2 BYE"));
        s.sip(at(1002), &msg(R, "BYE", Some(200), "2 BYE"));
        let t = s.totals();
        // Three significant digits: within 0.1 %.
        let near = |got: f64, want: f64| assert!((got - want).abs() <= want / 1000.0, "{got}");
        near(t.latency["pdd"].p50, 520.0);
        near(t.latency["setup"].p50, 530.0);
        near(t.latency["bye"].p50, 2.0);
        assert_eq!((t.retrans_sent, t.retrans_received), (1, 1));
        assert_eq!(t.responses_received["200"], 3);
        assert!(!t.histograms["setup"].is_empty());
    }

    /// The callee's side: an INVITE received to its ACK.
    #[test]
    fn the_callee_measures_its_side_of_the_setup() {
        let s = LoadStats::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let at = |ms| t0 + Duration::from_millis(ms);
        use Direction::{Received as R, Sent as S};
        s.sip(at(0), &msg(R, "INVITE", None, "1 INVITE"));
        s.sip(at(1), &msg(S, "INVITE", Some(180), "1 INVITE"));
        s.sip(at(3), &msg(S, "INVITE", Some(200), "1 INVITE"));
        s.sip(at(4), &msg(R, "ACK", None, "1 ACK"));
        let t = s.totals();
        assert_eq!(t.latency["answered"].count, 1);
        assert!((t.latency["answered"].p50 - 4.0).abs() < 0.01);
        assert_eq!(t.latency["setup"].count, 0, "the caller's, not ours");
    }

    /// Sent and received are tapped on different threads: a 200 can reach the statistics
    /// before the INVITE it answers. The phase is still measured, once.
    #[test]
    fn a_phase_is_measured_whichever_end_comes_first() {
        let s = LoadStats::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let at = |ms| t0 + Duration::from_millis(ms);
        use Direction::{Received as R, Sent as S};
        s.sip(at(5), &msg(R, "INVITE", Some(200), "1 INVITE"));
        s.sip(at(0), &msg(S, "INVITE", None, "1 INVITE"));
        // A re-INVITE's 200 measures nothing.
        s.sip(at(50), &msg(S, "INVITE", None, "2 INVITE"));
        s.sip(at(90), &msg(R, "INVITE", Some(200), "2 INVITE"));
        let t = s.totals();
        assert_eq!(t.latency["setup"].count, 1);
        assert!((t.latency["setup"].p50 - 5.0).abs() < 0.01);
    }

    #[test]
    fn failures_are_classed_by_kind_and_status() {
        let s = LoadStats::default();
        let f = |kind, status| events::Failure {
            node: None,
            ua: None,
            kind,
            status,
            message: "m".into(),
        };
        let ms = Duration::from_millis(5);
        s.ended(
            &Verdict::Failed(f(events::FailureKind::Status, Some(486))),
            ms,
            ms,
        );
        s.ended(
            &Verdict::Failed(f(events::FailureKind::Timeout, None)),
            ms,
            ms,
        );
        s.ended(&Verdict::Passed, ms, ms);
        let t = s.totals();
        assert_eq!((t.passed, t.failed), (1, 2));
        assert_eq!(t.failures_by_class["status_486"], 1);
        assert_eq!(t.failures_by_class["timeout"], 1);
    }
}
