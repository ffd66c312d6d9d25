//! The one scenario model both formats parse into.

use crate::diag::Pos;
use std::time::Duration;

/// The logical call id a node uses when it names none (as in sipflow).
pub const DEFAULT_CALL_ID: &str = "call-1";
/// The per-node timeout when a node sets none (as in sipflow).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

pub type InstanceIdx = usize;
pub type NodeIdx = usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// sipflow's React Flow JSON.
    SipflowJson,
    /// callflow's YAML.
    Native,
}

pub use instances::SipTransport;

/// A PBX (registrar/proxy) an instance talks to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pbx {
    /// The PBX profile this came from (`pbx: lab`), when it did; the fields are the profile's
    /// with the instance's overrides applied.
    pub profile: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub transport: SipTransport,
    /// The digest user, when it is not the DN.
    pub auth_user: Option<String>,
    /// The digest password as written: `${ENV_VAR}` stays unexpanded here (so a scenario written
    /// back never holds the secret); [`Pbx::password`] expands it.
    pub password_text: Option<String>,
    pub realm: Option<String>,
    /// Send every request here (`host[:port]`) whatever its Request-URI says.
    pub outbound_proxy: Option<String>,
}

impl Pbx {
    /// The digest password, `${ENV_VAR}` replaced by the variable (checked when the scenario is
    /// read, so this fails only if the environment changed since).
    pub fn password(&self) -> Result<Option<String>, String> {
        self.password_text
            .as_deref()
            .map(|p| {
                crate::spanned::expand_env(p)
                    .map_err(|name| format!("the environment variable `{name}` is not set"))
            })
            .transpose()
    }
}

/// PBX settings as an instance writes them: each one it leaves unset comes from its profile.
#[derive(Default)]
pub(crate) struct PbxSettings {
    pub(crate) host: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) transport: Option<SipTransport>,
    pub(crate) auth_user: Option<String>,
    pub(crate) password_text: Option<String>,
    pub(crate) realm: Option<String>,
    pub(crate) outbound_proxy: Option<String>,
}

impl PbxSettings {
    /// The PBX these settings make over `profile`; None when neither names a host.
    pub(crate) fn over(self, profile: Option<&Pbx>) -> Option<Pbx> {
        let from = |get: fn(&Pbx) -> &Option<String>| profile.and_then(|p| get(p).clone());
        Some(Pbx {
            host: self.host.or_else(|| profile.map(|p| p.host.clone()))?,
            port: self.port.or(profile.and_then(|p| p.port)),
            transport: self
                .transport
                .or(profile.map(|p| p.transport))
                .unwrap_or_default(),
            auth_user: self.auth_user.or_else(|| from(|p| &p.auth_user)),
            password_text: self.password_text.or_else(|| from(|p| &p.password_text)),
            realm: self.realm.or_else(|| from(|p| &p.realm)),
            outbound_proxy: self.outbound_proxy.or_else(|| from(|p| &p.outbound_proxy)),
            profile: profile.and_then(|p| p.profile.clone()),
        })
    }
}

/// One user agent of the scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    /// The sipflow node id, or the native instance name.
    pub id: String,
    /// What people read: the label, else the DN.
    pub label: String,
    /// The number/extension; unique in the scenario.
    pub dn: String,
    pub transport: SipTransport,
    /// Send REGISTER to the PBX at start.
    pub register: bool,
    pub register_interval: Duration,
    pub pbx: Option<Pbx>,
    /// Codec names in priority order (telephone-event is always added).
    pub codecs: Vec<String>,
    /// Answer new INVITEs with 180 Ringing at once (they are held until a node answers or rejects).
    pub auto_ringing: bool,
    /// Reliable provisional responses (RFC 3262, option tag `100rel`).
    pub rel100: Rel100,
    /// The shortest session interval this UA takes (RFC 4028 `Min-SE`; 90 s, the least the RFC
    /// allows, unless lowered for a test peer).
    pub min_se: Duration,
    /// The From display name of this instance's calls.
    pub display_name: Option<String>,
    /// TLS settings, for a `tls`/`wss` transport of its own or toward its PBX.
    pub tls: TlsSettings,
    /// WebSocket settings, for the `ws`/`wss` connections it makes: `ws: {path, origin}` in
    /// YAML, `wsPath` and `wsOrigin` in sipflow's `data`.
    pub ws: WsSettings,
    /// SRTP with SDES keys (RFC 4568) on its calls: `off` (the default), `optional`,
    /// `required`; `srtp` in both formats.
    pub srtp: media::srtp::SrtpMode,
    /// The first nodes of this instance's chains, in order.
    pub starts: Vec<NodeIdx>,
    pub pos: Pos,
}

/// An instance's WebSocket settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WsSettings {
    /// The path of the WebSocket URL it connects to (`/ws`); `/` when unset.
    pub path: Option<String>,
    /// The Origin header of its upgrade requests.
    pub origin: Option<String>,
}

/// An instance's TLS settings: `tls: {ca, cert, key, insecure, sni}` in YAML, `tlsCa`,
/// `tlsCert`, `tlsKey`, `tlsInsecure`, `tlsSni` in sipflow's `data`. Paths are as written
/// (relative to the scenario file, see [`crate::resolve_path`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// The PEM bundle that verifies the peers (a PBX's certificate chain). The run's own
    /// certificate is trusted besides.
    pub ca: Option<String>,
    /// Our certificate chain (PEM): what the UA's listener shows, and its client certificate
    /// (mutual TLS). Without it the run's own self-signed certificate.
    pub cert: Option<String>,
    /// The private key of `cert` (PEM, PKCS#8 or PKCS#1).
    pub key: Option<String>,
    /// Accept any certificate from the peer: verification is off, explicitly.
    pub insecure: bool,
    /// The name sent as SNI and verified in the peer's certificate, instead of its host.
    pub sni: Option<String>,
    /// Where the settings were written (the `tls` mapping, or the instance).
    pub pos: Pos,
}

impl TlsSettings {
    /// Nothing set: the run's own certificate both ways.
    pub fn is_default(&self) -> bool {
        self.ca.is_none()
            && self.cert.is_none()
            && self.key.is_none()
            && !self.insecure
            && self.sni.is_none()
    }
}

/// How a UA takes reliable provisional responses (RFC 3262): the instance's `100rel`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rel100 {
    /// `Supported: 100rel` on our INVITEs; as the callee, 18x are reliable when the INVITE
    /// requires it.
    #[default]
    Supported,
    /// `Require: 100rel` on our INVITEs; as the callee, 18x are reliable whenever the INVITE
    /// supports it, and an INVITE that does not gets 421 (RFC 3261 §8.2.2.3).
    Required,
    /// Neither: an INVITE that requires 100rel gets 420 with `Unsupported: 100rel`.
    Off,
}

impl Rel100 {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Supported => "supported",
            Self::Required => "required",
            Self::Off => "off",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "supported" => Some(Self::Supported),
            "required" => Some(Self::Required),
            "off" => Some(Self::Off),
            _ => None,
        }
    }
}

/// What a node does.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    // Commands.
    /// Send INVITE to another instance's DN or to a `sip:` URI; passes on 2xx.
    MakeCall {
        target: String,
    },
    /// Answer the incoming call bound to the node's call id with 200 OK; passes on ACK.
    Answer,
    /// Hang up: BYE when confirmed, CANCEL when ringing out, 480 when ringing in.
    Release,
    Hold,
    Retrieve,
    BlindTransfer {
        target_user: String,
        target_host: String,
    },
    /// sipflow's MuteTransfer.
    AttendedTransfer {
        primary_call_id: String,
        consult_call_id: String,
    },
    PlayAudio {
        file: String,
    },
    SendDtmf {
        digits: String,
        interval: Duration,
    },
    /// Answer an incoming call that is still ringing with a final non-2xx code.
    Reject {
        code: u16,
        reason: Option<String>,
    },
    /// CANCEL an outgoing call that is still ringing.
    Cancel,
    /// Send 180 Ringing on an incoming call.
    SendRinging,
    /// Send 183 Session Progress (with our SDP: early media) on an incoming call.
    SendProgress,
    /// Send a request (INFO, MESSAGE, OPTIONS, NOTIFY, UPDATE) and expect a final status: in the
    /// call bound to the node's call id, or, with `target` (a DN or a `sip:` URI), outside any
    /// dialog. An UPDATE (in a call only) carries our SDP as a new offer unless `body` is given.
    SendRequest {
        method: String,
        content_type: Option<String>,
        body: Option<String>,
        target: Option<String>,
    },
    /// SUBSCRIBE (RFC 6665) to the event package `event` (YAML `package`) at `target` for
    /// `expires`; binds the node's call id to
    /// the subscription, whose NOTIFYs REQUEST nodes wait for; passes on a 2xx. Cleanup ends it
    /// (SUBSCRIBE with Expires: 0).
    Subscribe {
        target: String,
        event: String,
        expires: Duration,
    },
    /// Play this instance's signature (a tone pair of its own) for `duration`.
    PlaySignature {
        duration: Duration,
    },
    /// Write what this party receives on the call to a WAV file when the call's media ends.
    Record {
        file: String,
    },
    /// Check the call's RTP statistics so far against bounds.
    CheckMedia {
        max_loss_percent: Option<f64>,
        max_jitter_ms: Option<f64>,
        /// The lowest MOS-LQ (ITU-T G.107's E-model on the loss and jitter so far) it takes.
        min_mos: Option<f64>,
    },
    // Events.
    /// Take the next incoming call of this instance and bind it to the node's call id.
    Incoming {
        number: Option<String>,
    },
    /// A 180/183 was received (caller) or sent (callee) on the call.
    Ringing,
    /// The call ended (BYE, CANCEL, rejection or local teardown).
    Disconnected,
    /// Wait for the node's timeout, then pass.
    Delay,
    DtmfReceived {
        expected: Option<String>,
    },
    Held,
    Retrieved,
    Transferred,
    /// A request (of `method`, if given) was received and answered 200: on the call bound to the
    /// node's call id, in the subscription bound to it (its NOTIFYs), or, when it names neither,
    /// outside any dialog (MESSAGE, NOTIFY, INFO).
    RequestReceived {
        method: Option<String>,
    },
    /// The audio received on the call carries the signature of instance `from` (and not of
    /// another instance).
    Heard {
        from: String,
    },
    /// A tone of `frequency` Hz is heard (or, with `absent`, is not heard for the whole timeout).
    Tone {
        frequency: f64,
        absent: bool,
    },
    /// RTP is arriving from the peer.
    MediaFlowing,
}

impl Action {
    /// Whether the node sends, hears or measures RTP (a load starts media only for the
    /// iterations of a scenario that has such a node, or when asked).
    pub fn uses_media(&self) -> bool {
        matches!(
            self,
            Self::PlayAudio { .. }
                | Self::SendDtmf { .. }
                | Self::PlaySignature { .. }
                | Self::Record { .. }
                | Self::CheckMedia { .. }
                | Self::DtmfReceived { .. }
                | Self::Heard { .. }
                | Self::Tone { .. }
                | Self::MediaFlowing
        )
    }

    /// Whether the node reads the audio a call received (a load keeps it only then).
    pub fn reads_audio(&self) -> bool {
        matches!(
            self,
            Self::Heard { .. } | Self::Tone { .. } | Self::Record { .. }
        )
    }

    /// The sipflow name of the command or event.
    pub fn name(&self) -> &'static str {
        match self {
            Self::MakeCall { .. } => "MakeCall",
            Self::Answer => "Answer",
            Self::Release => "Release",
            Self::Hold => "Hold",
            Self::Retrieve => "Retrieve",
            Self::BlindTransfer { .. } => "BlindTransfer",
            Self::AttendedTransfer { .. } => "MuteTransfer",
            Self::PlayAudio { .. } => "PlayAudio",
            Self::SendDtmf { .. } => "SendDTMF",
            Self::Reject { .. } => "Reject",
            Self::Cancel => "Cancel",
            Self::SendRinging => "Ringing",
            Self::SendProgress => "Progress",
            Self::SendRequest { method, .. } => match method.as_str() {
                "INFO" => "SendInfo",
                "MESSAGE" => "SendMessage",
                "NOTIFY" => "SendNotify",
                "UPDATE" => "SendUpdate",
                _ => "SendOptions",
            },
            Self::Subscribe { .. } => "Subscribe",
            Self::RequestReceived { .. } => "REQUEST",
            Self::PlaySignature { .. } => "PlaySignature",
            Self::Record { .. } => "Record",
            Self::CheckMedia { .. } => "CheckMedia",
            Self::Heard { .. } => "HEARD",
            Self::Tone { .. } => "TONE",
            Self::MediaFlowing => "MEDIA",
            Self::Incoming { .. } => "INCOMING",
            Self::Ringing => "RINGING",
            Self::Disconnected => "DISCONNECTED",
            Self::Delay => "TIMEOUT",
            Self::DtmfReceived { .. } => "DTMFReceived",
            Self::Held => "HELD",
            Self::Retrieved => "RETRIEVED",
            Self::Transferred => "TRANSFERRED",
        }
    }

    pub fn is_event(&self) -> bool {
        matches!(
            self,
            Self::Incoming { .. }
                | Self::Ringing
                | Self::Disconnected
                | Self::Delay
                | Self::DtmfReceived { .. }
                | Self::Held
                | Self::Retrieved
                | Self::Transferred
                | Self::RequestReceived { .. }
                | Self::Heard { .. }
                | Self::Tone { .. }
                | Self::MediaFlowing
        )
    }

    /// Whether this version of the engine can run the action.
    pub fn is_supported(&self) -> bool {
        true
    }
}

/// One command or event node.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Unique in the scenario: the sipflow node id, or the native step id (given or generated).
    pub id: String,
    pub label: String,
    pub instance: InstanceIdx,
    /// The logical dialog key within the instance.
    pub call_id: String,
    pub timeout: Duration,
    pub action: Action,
    pub on_success: Option<NodeIdx>,
    pub on_failure: Option<NodeIdx>,
    pub opts: NodeOptions,
    pub pos: Pos,
}

/// How far MakeCall waits before it passes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Until {
    /// A final response (2xx, or one of `expect`).
    #[default]
    Answer,
    /// A 180/183 (or a final response): the call goes on ringing in the background.
    Ringing,
    /// The INVITE went out.
    Sent,
}

/// What a header check tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderTest {
    Exists(bool),
    Equals(String),
    /// A regular expression (validated when the scenario is read).
    Matches(String),
}

/// An assertion on the message a node receives (MakeCall: the final response; INCOMING: the
/// INVITE; REQUEST: the request; SendInfo/SendMessage/SendOptions: the response).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    Header {
        name: String,
        test: HeaderTest,
    },
    /// The SDP lists this codec.
    SdpCodec(String),
    /// The SDP's audio direction is this (`sendrecv`, `sendonly`, `recvonly`, `inactive`).
    SdpDirection(String),
}

/// Settings some nodes take beyond their action's own fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeOptions {
    /// MakeCall / SendInfo / SendMessage / SendOptions: the final status codes that pass
    /// (empty: any 2xx).
    pub expect: Vec<u16>,
    /// MakeCall: when it passes.
    pub until: Until,
    /// MakeCall / SendInfo / SendMessage / SendOptions: headers to add, in order.
    pub headers: Vec<(String, String)>,
    /// MakeCall: the From display name and user.
    pub display_name: Option<String>,
    pub from_user: Option<String>,
    /// Ringing / Progress: wait this long before sending.
    pub delay: Option<Duration>,
    pub checks: Vec<Check>,
    /// Run only once this node (of any instance) has passed.
    pub after: Option<NodeIdx>,
    /// PlayAudio: play the file over and over until the node's timeout.
    pub looped: bool,
    /// SendDTMF: send the digits as SIP INFO (application/dtmf-relay) instead of RFC 4733.
    pub dtmf_info: bool,
    /// DTMFReceived: a regular expression the received digits must match.
    pub pattern: Option<String>,
    /// MakeCall: send the INVITE without SDP (a late offer: the 2xx offers, our ACK answers).
    pub late_offer: bool,
    /// MakeCall: ask for a session timer with this interval (RFC 4028 `Session-Expires`).
    pub session_expires: Option<Duration>,
    /// MakeCall: how many 3xx redirects to follow (to the Contact they name) before failing;
    /// `None` is the default, [`DEFAULT_REDIRECTS`].
    pub redirects: Option<u32>,
}

/// The `Min-SE` of an instance unless it says otherwise (RFC 4028 §4: no less than 90 s).
pub const DEFAULT_MIN_SE: Duration = Duration::from_secs(90);

/// How many 3xx a MakeCall follows unless its `redirects` says otherwise.
pub const DEFAULT_REDIRECTS: u32 = 3;

/// How a sidecar proves it is ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Ready once started.
    None,
    /// A SIP OPTIONS to this `ip:port` (UDP) gets a 200.
    Options(std::net::SocketAddr),
    /// This TCP `ip:port` accepts a connection.
    Tcp(std::net::SocketAddr),
    /// Its output contains this text.
    Log(String),
}

/// A process the run starts before the UAs and kills after the SIP cleanup (a PBX, a phone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sidecar {
    pub name: String,
    /// The program and its arguments (run in the scenario file's folder).
    pub command: Vec<String>,
    pub health: Health,
    pub timeout: Duration,
    pub pos: Pos,
}

/// A parsed scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub name: String,
    /// Where it came from (a path), for diagnostics and reports.
    pub file: String,
    pub format: Format,
    pub instances: Vec<Instance>,
    pub nodes: Vec<Node>,
    pub sidecars: Vec<Sidecar>,
}

impl Scenario {
    pub fn instance_by_dn(&self, dn: &str) -> Option<InstanceIdx> {
        self.instances.iter().position(|i| i.dn == dn)
    }

    /// Nodes that can run: reachable from some instance's start nodes.
    pub fn reachable(&self) -> Vec<bool> {
        let mut seen = vec![false; self.nodes.len()];
        let mut stack: Vec<NodeIdx> = self
            .instances
            .iter()
            .flat_map(|i| i.starts.iter().copied())
            .collect();
        while let Some(n) = stack.pop() {
            if std::mem::replace(&mut seen[n], true) {
                continue;
            }
            stack.extend(self.nodes[n].on_success);
            stack.extend(self.nodes[n].on_failure);
        }
        seen
    }
}
