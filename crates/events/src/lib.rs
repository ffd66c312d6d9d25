//! The one typed event stream of a callflow run.
//!
//! Every output (terminal summary, JSON Lines, and later the ladder, JUnit and the web UI) reads
//! [`Event`]s and nothing else. The wire format is JSON Lines, one [`Event`] per line:
//!
//! ```json
//! {"seq":0,"ts_us":1764000000000000,"elapsed_ms":0.0,"event":{"type":"run_started","data":{"schema_version":3,...}}}
//! ```
//!
//! - `seq` counts from 0 and has no gaps; `ts_us` is the wall clock in µs since the Unix epoch;
//!   `elapsed_ms` is the time since the run started, from a monotonic clock.
//! - `event` is `{"type": ..., "data": {...}}`; the first line is always `run_started`, which
//!   carries [`SCHEMA_VERSION`]; the last is `run_finished`.
//! - New event types and new fields may be added without a version change; readers must ignore
//!   what they do not know. Renaming or removing anything bumps [`SCHEMA_VERSION`].
//!
//! The schema is documented for people in `docs/events.md`.

use serde::{Deserialize, Serialize};

pub mod retained;
pub use retained::Retained;

/// Version of the event schema, carried by `run_started`.
pub const SCHEMA_VERSION: u32 = 3;

/// Exit codes of the `callflow` binary, for scripts.
pub mod exit_code {
    /// The run passed (or the scenario is valid, for `validate`).
    pub const PASSED: i32 = 0;
    /// The scenario ran and failed.
    pub const SCENARIO_FAILED: i32 = 1;
    /// The scenario is invalid, or the command line is wrong.
    pub const INVALID: i32 = 2;
    /// The run could not be set up (for example no free port).
    pub const SETUP_ERROR: i32 = 3;
    /// Stopped by a signal (Ctrl-C).
    pub const STOPPED: i32 = 130;
}

/// One line of the stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub ts_us: u64,
    pub elapsed_ms: f64,
    pub event: EventKind,
}

/// The `type` of each [`EventKind`], as the stream spells it. A reader meeting another type (from
/// a newer callflow) skips that event (docs/events.md).
pub const EVENT_TYPES: &[&str] = &[
    "run_started",
    "ua_started",
    "node_state",
    "log",
    "sip_message",
    "cleanup",
    "media_stats",
    "media_sample",
    "rtp_packet",
    "rtp_capture",
    "ua_stopped",
    "run_finished",
    "iteration_ended",
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    RunStarted(RunStarted),
    UaStarted(UaStarted),
    NodeState(NodeStateChange),
    Log(Log),
    SipMessage(SipMessage),
    Cleanup(CleanupStep),
    MediaStats(MediaStats),
    /// A call's media figures while it runs (at each RTCP report it sends, every 5 s): the
    /// same fields as `media_stats`, so far.
    MediaSample(MediaStats),
    RtpPacket(RtpPacket),
    RtpCapture(RtpCapture),
    UaStopped(UaStopped),
    RunFinished(RunFinished),
    IterationEnded(IterationEnded),
}

/// Under load: one iteration of the scenario ended (iterations 1 and up; a functional run's
/// one iteration ends with `run_finished`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IterationEnded {
    pub iteration: u32,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// From its start to its verdict.
    pub duration_ms: f64,
    /// The SIP Call-IDs of its calls.
    #[serde(default)]
    pub call_ids: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunStarted {
    pub schema_version: u32,
    pub run_id: String,
    pub scenario: String,
    pub file: String,
    pub format: String,
    pub callflow_version: String,
    pub instances: Vec<InstanceInfo>,
    pub nodes: Vec<NodeInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// The instance id (sipflow node id, or native name).
    pub id: String,
    pub label: String,
    pub dn: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: String,
    pub label: String,
    /// The instance id the node runs on.
    pub ua: String,
    /// The command or event name, as sipflow spells it.
    pub kind: String,
    pub call_id: String,
    pub timeout_ms: u64,
    /// `file:line:col` of the node in the scenario.
    pub source: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UaStarted {
    pub ua: String,
    pub dn: String,
    pub transport: String,
    /// The SIP address the UA listens on, `ip:port`.
    pub local_addr: String,
    pub contact: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UaStopped {
    pub ua: String,
    pub local_addr: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Pending,
    Running,
    Passed,
    Failed,
    /// Never ran: its chain was cancelled, or it was on a branch not taken.
    Skipped,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Passed => "passed",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeStateChange {
    pub node: String,
    pub ua: String,
    pub from: NodeState,
    pub to: NodeState,
    /// Why a node failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How long the node ran, on passed/failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// A failure the scenario handles: the node has a failure edge, and the run goes on there.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub handled: bool,
    /// The iteration the node ran in, under load (absent: iteration 0, a functional run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iteration: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Log {
    pub level: Level,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ua: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The logical call id (`call-1`), not the SIP Call-ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Sent,
    Received,
}

/// A SIP message as it crossed the socket, with its raw text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipMessage {
    pub ua: String,
    pub direction: Direction,
    pub transport: String,
    /// Our address, `ip:port`.
    pub local: String,
    /// The other side's address, `ip:port`.
    pub peer: String,
    /// The method of a request, or the CSeq method of a response.
    pub method: String,
    /// The status code of a response; absent on requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub call_id: String,
    pub cseq: String,
    /// The whole message as sent or received.
    pub raw: String,
}

impl SipMessage {
    /// `INVITE`, or `180 Ringing`.
    pub fn summary(&self) -> String {
        match (self.status, &self.reason) {
            (Some(code), Some(r)) => format!("{code} {r}"),
            (Some(code), None) => code.to_string(),
            _ => self.method.clone(),
        }
    }
}

/// One RTP packet as it crossed the socket. Only emitted when the run captures RTP
/// (`RunOptions::capture_rtp`, set by `--pcap` and `--out`): 50 per second per call direction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtpPacket {
    pub ua: String,
    /// The SIP Call-ID of the call the media belongs to.
    pub sip_call_id: String,
    pub direction: Direction,
    /// Our RTP address, `ip:port`.
    pub local: String,
    /// The other side's RTP address, `ip:port`.
    pub peer: String,
    /// The whole packet (RTP header and payload), base64 (standard alphabet, padded).
    pub bytes: String,
}

/// A call's RTP packets as they crossed its socket, kept by the media side in a ring (the last
/// 30,000) and written once when the call's media ends. Only when the run captures RTP
/// (`RunOptions::capture_rtp`, set by `--pcap` and `--out`). Since schema version 3; version 2
/// wrote an [`RtpPacket`] event per packet instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtpCapture {
    pub ua: String,
    /// The SIP Call-ID of the call the media belongs to.
    pub sip_call_id: String,
    /// Our RTP address, `ip:port`.
    pub local: String,
    /// In the order they crossed the socket.
    pub packets: Vec<CapturedRtp>,
    /// Older packets the ring no longer held.
    #[serde(default)]
    pub dropped: u64,
}

/// One packet of an [`RtpCapture`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedRtp {
    /// When it crossed the socket: µs since the Unix epoch, as [`Event::ts_us`].
    pub ts_us: u64,
    pub direction: Direction,
    /// The other side's RTP address, `ip:port`.
    pub peer: String,
    /// The whole packet (RTP header and payload), base64 (standard alphabet, padded).
    pub bytes: String,
    /// Our address for this packet when it is not the capture's `local`: an RTCP packet, on
    /// the RTP port + 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
}

/// A call's RTP when its media ended (at hang-up, or at cleanup).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MediaStats {
    pub ua: String,
    /// The logical call id (`call-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// The SIP Call-ID.
    pub sip_call_id: String,
    pub codec: String,
    pub local: String,
    pub remote: String,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub lost: u64,
    pub loss_percent: f64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub jitter_ms: f64,
    /// The same figures for each RTP stream received (each SSRC), when there was more than one
    /// (a PBX changes SSRC on a transfer or for music on hold); the totals above add them up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<RtpStream>,
    /// The WAV file the received audio was written to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<String>,
    /// How the received audio rates (ITU-T G.107's E-model, `media::quality`): MOS-LQ
    /// (listening, 1 to 4.5), MOS-CQ (conversational, delay taken in) and the rating R. None
    /// when nothing was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mos: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mos_cq: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r_factor: Option<f64>,
    /// What RTCP said (RFC 3550 §6.4): reports each way, and what the peer's last one said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtcp: Option<RtcpFigures>,
    /// SRTP (RFC 3711), when the call's media is protected: the suite, and how many RTP packets
    /// received failed its check (a wrong key, a forgery, a replay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srtp: Option<SrtpFigures>,
}

/// A call's SRTP, as `media_stats` reports it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SrtpFigures {
    /// `AES_CM_128_HMAC_SHA1_80` or `AES_CM_128_HMAC_SHA1_32`.
    pub suite: String,
    pub rejected: u64,
}

/// A call's RTCP, as `media_stats` reports it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RtcpFigures {
    /// Reports sent and received.
    pub sent: u64,
    pub received: u64,
    /// The round trip the peer's last report gave (LSR/DLSR), ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// What the peer last reported of our stream: packets lost in all, and its jitter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_lost: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_jitter_ms: Option<f64>,
}

/// One RTP stream a call received (one SSRC), RFC 3550 statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RtpStream {
    pub ssrc: u32,
    pub packets_received: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub jitter_ms: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CleanupPhase {
    /// BYE/CANCEL/480 for every dialog, and wait for the answers.
    HangupAll,
    /// Forget every dialog.
    CloseAll,
    /// REGISTER with expires 0 for every registered UA.
    Unregister,
    /// Close the UAs' transports and release their ports.
    TeardownUas,
    /// Stop the scenario's sidecar processes (after the SIP cleanup).
    StopSidecars,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CleanupStep {
    pub phase: CleanupPhase,
    pub finished: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Failed,
    Stopped,
}

impl Outcome {
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Passed => exit_code::PASSED,
            Self::Failed => exit_code::SCENARIO_FAILED,
            Self::Stopped => exit_code::STOPPED,
        }
    }
}

/// What went wrong first, for the summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ua: Option<String>,
    /// What went wrong, for tools (the message says it for people).
    #[serde(default)]
    pub kind: FailureKind,
    /// The status code of an unexpected final response (kind `status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub message: String,
}

/// The kind of a failure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// What a node waited for did not come within its timeout.
    Timeout,
    /// A final response other than the ones expected.
    Status,
    /// The checks of a node failed.
    Checks,
    /// The call was not in the state the node needs (not established, still ringing, ended).
    CallState,
    /// A request could not be sent or its transaction failed.
    Transport,
    /// The media was not what was expected (digits, signature, tone, loss, jitter).
    Media,
    /// The run could not start: a UA, a registration, a sidecar.
    Setup,
    /// Cleanup left dialogs or ports behind.
    Leak,
    /// Anything else.
    #[default]
    Other,
}

/// What was left behind after cleanup: both must be 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeakCheck {
    pub dialogs: usize,
    pub ports: usize,
}

impl LeakCheck {
    pub fn is_clean(self) -> bool {
        self.dialogs == 0 && self.ports == 0
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunFinished {
    pub outcome: Outcome,
    pub duration_ms: f64,
    /// Time spent in cleanup, included in `duration_ms`.
    pub cleanup_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    pub leaks: LeakCheck,
    pub nodes: Vec<NodeResult>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeResult {
    pub node: String,
    pub ua: String,
    pub state: NodeState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Failed, and handled by the node's failure edge.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub handled: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape_is_tagged_type_and_data() {
        let e = Event {
            seq: 3,
            ts_us: 1,
            elapsed_ms: 0.5,
            event: EventKind::Log(Log {
                level: Level::Warning,
                ua: Some("alice".into()),
                node: None,
                call_id: None,
                message: "hi".into(),
            }),
        };
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(
            line,
            r#"{"seq":3,"ts_us":1,"elapsed_ms":0.5,"event":{"type":"log","data":{"level":"warning","ua":"alice","message":"hi"}}}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&line).unwrap(), e);
    }
}
