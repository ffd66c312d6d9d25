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

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SipTransport {
    #[default]
    Udp,
    Tcp,
}

impl SipTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        }
    }
}

/// A PBX (registrar/proxy) an instance talks to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pbx {
    pub host: String,
    pub port: Option<u16>,
    pub transport: SipTransport,
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
    /// The first nodes of this instance's chains, in order.
    pub starts: Vec<NodeIdx>,
    pub pos: Pos,
}

/// What a node does.
#[derive(Clone, Debug, PartialEq, Eq)]
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
}

impl Action {
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
        )
    }

    /// Whether this version of the engine can run the action.
    pub fn is_supported(&self) -> bool {
        !matches!(
            self,
            Self::PlayAudio { .. } | Self::SendDtmf { .. } | Self::DtmfReceived { .. }
        )
    }
}

/// Command names, as sipflow spells them, with the aliases callflow also accepts.
pub(crate) const COMMANDS: &[&str] = &[
    "MakeCall",
    "Answer",
    "Release",
    "Hold",
    "Retrieve",
    "BlindTransfer",
    "MuteTransfer",
    "AttendedTransfer",
    "PlayAudio",
    "SendDTMF",
];

/// Event names, as sipflow spells them.
pub(crate) const EVENTS: &[&str] = &[
    "INCOMING",
    "RINGING",
    "DISCONNECTED",
    "TIMEOUT",
    "DTMFReceived",
    "HELD",
    "RETRIEVED",
    "TRANSFERRED",
];

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
