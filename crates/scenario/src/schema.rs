//! The one table of every command and event a node can run: its name (and aliases), its keys in
//! both spellings (YAML snake_case, sipflow JSON camelCase), their types, defaults and whether
//! they are required. Both readers take a node's keys from here (a key of another command is an
//! error at its line and column), both writers spell keys and leave out defaults by it, the web
//! UI builds its property panels from it (`GET /api/schema`, [`to_json`]), and
//! docs/scenario-format.md's key table is [`markdown`] (a test keeps them equal).

use serde_json::{Value as Json, json};
use std::time::Duration;

/// What a key's value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Text,
    /// Text of several lines (a body).
    Area,
    /// Another instance's DN (in YAML also its name) or a `sip:` URI.
    Target,
    Int,
    /// A plain number (a percentage, a frequency).
    Number,
    Bool,
    /// YAML: a duration (`500ms`, `2s`); JSON: a number of milliseconds.
    Duration,
    /// A SIP status code or a list of them.
    Codes,
    /// A mapping of header names to values (JSON: a list of one-header objects, in order).
    Headers,
    /// A list of checks (`header`/`exists`/`equals`/`matches`, `sdp_codec`, `sdp_direction`).
    Checks,
    /// The id of another node.
    Node,
    /// An instance (its id, name, label or DN).
    Instance,
    /// One of a fixed set of words.
    Choice(&'static [&'static str]),
    /// A PBX profile's name (pbx-profiles.yaml).
    Profile,
    /// A list of words (codecs).
    List,
}

impl Type {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Area => "area",
            Self::Target => "target",
            Self::Int => "int",
            Self::Number => "number",
            Self::Bool => "bool",
            Self::Duration => "duration",
            Self::Codes => "codes",
            Self::Headers => "headers",
            Self::Checks => "checks",
            Self::Node => "node",
            Self::Instance => "instance",
            Self::Choice(_) => "choice",
            Self::Profile => "profile",
            Self::List => "list",
        }
    }
}

/// A key's value when a node leaves it out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Default {
    Text(&'static str),
    Int(i64),
    Duration(Duration),
    Bool(bool),
}

impl Default {
    /// As YAML writes it.
    fn yaml(self) -> String {
        match self {
            Self::Text(t) => t.to_owned(),
            Self::Int(i) => i.to_string(),
            Self::Duration(d) => humantime::format_duration(d).to_string(),
            Self::Bool(b) => b.to_string(),
        }
    }

    /// As sipflow JSON writes it (a duration in milliseconds).
    fn json(self) -> Json {
        match self {
            Self::Text(t) => json!(t),
            Self::Int(i) => json!(i),
            Self::Duration(d) => json!(d.as_millis() as u64),
            Self::Bool(b) => json!(b),
        }
    }
}

/// One key of a node.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Key {
    /// The YAML spelling (snake_case).
    pub yaml: &'static str,
    /// The sipflow JSON spelling (camelCase; a duration's carries `Ms`).
    pub json: &'static str,
    pub ty: Type,
    pub default: Option<Default>,
    pub required: bool,
}

const fn key(yaml: &'static str, json: &'static str, ty: Type) -> Key {
    Key {
        yaml,
        json,
        ty,
        default: None,
        required: false,
    }
}

impl Key {
    const fn or(mut self, d: Default) -> Self {
        self.default = Some(d);
        self
    }

    const fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// The spelling of the format.
    pub(crate) fn name(&self, style: crate::options::Style) -> &'static str {
        match style {
            crate::options::Style::Snake => self.yaml,
            crate::options::Style::Camel => self.json,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Command,
    Event,
}

/// A command or an event.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spec {
    /// As sipflow spells it.
    pub name: &'static str,
    pub kind: Kind,
    /// Other names callflow takes for it.
    pub aliases: &'static [&'static str],
    /// Its keys beyond [`COMMON`].
    pub keys: &'static [Key],
}

impl Spec {
    /// Its key of this spelling (beyond [`COMMON`]).
    pub(crate) fn key(&self, name: &str, style: crate::options::Style) -> Option<&'static Key> {
        self.keys.iter().find(|k| k.name(style) == name)
    }
}

/// Keys every node takes.
pub const COMMON: &[Key] = &[
    key("label", "label", Type::Text),
    key("call_id", "callId", Type::Text).or(Default::Text(crate::model::DEFAULT_CALL_ID)),
    key("timeout", "timeout", Type::Duration).or(Default::Duration(crate::model::DEFAULT_TIMEOUT)),
    key("after", "after", Type::Node),
];

/// The keys that place a node, beyond [`COMMON`]: YAML's step keys.
pub(crate) const YAML_STEP: &[&str] = &["command", "event", "id", "next", "on_failure"];
/// The keys that place a node, beyond [`COMMON`]: sipflow's `data` keys (and `transferTarget`,
/// which sipflow's editor writes and nothing reads).
pub(crate) const JSON_DATA: &[&str] = &["command", "event", "sipInstanceId", "transferTarget"];

const TARGET: Key = key("target", "targetUri", Type::Target);
const EXPECT: Key = key("expect", "expect", Type::Codes);
const HEADERS: Key = key("headers", "headers", Type::Headers);
const CHECK: Key = key("check", "check", Type::Checks);
const CONTENT_TYPE: Key = key("content_type", "contentType", Type::Text);
const BODY: Key = key("body", "body", Type::Area);
const DELAY: Key = key("delay", "delayMs", Type::Duration);
const FILE: Key = key("file", "filePath", Type::Text).required();

/// Every command and event, in the order the editor's palette shows them.
pub const ACTIONS: &[Spec] = &[
    Spec {
        name: "MakeCall",
        kind: Kind::Command,
        aliases: &[],
        keys: &[
            TARGET.required(),
            EXPECT,
            key(
                "until",
                "until",
                Type::Choice(&["answer", "ringing", "sent"]),
            )
            .or(Default::Text("answer")),
            HEADERS,
            key("display_name", "displayName", Type::Text),
            key("from_user", "fromUser", Type::Text),
            key("offer", "offer", Type::Choice(&["early", "late"])).or(Default::Text("early")),
            key("redirects", "redirects", Type::Int)
                .or(Default::Int(crate::model::DEFAULT_REDIRECTS as i64)),
            key("session_expires", "sessionExpiresMs", Type::Duration),
            CHECK,
        ],
    },
    command("Answer", &[]),
    command("Release", &[]),
    command("Hold", &[]),
    command("Retrieve", &[]),
    command("Cancel", &[]),
    command(
        "BlindTransfer",
        &[
            key("target_user", "targetUser", Type::Text).required(),
            key("target_host", "targetHost", Type::Text),
        ],
    ),
    Spec {
        name: "MuteTransfer",
        kind: Kind::Command,
        aliases: &["AttendedTransfer"],
        keys: &[
            key("primary_call_id", "primaryCallId", Type::Text)
                .or(Default::Text(crate::model::DEFAULT_CALL_ID)),
            key("consult_call_id", "consultCallId", Type::Text).required(),
        ],
    },
    command(
        "PlayAudio",
        &[
            FILE,
            key("loop", "loop", Type::Bool).or(Default::Bool(false)),
        ],
    ),
    command(
        "SendDTMF",
        &[
            key("digits", "digits", Type::Text).required(),
            key("interval", "intervalMs", Type::Duration)
                .or(Default::Duration(Duration::from_millis(100))),
            key("via", "via", Type::Choice(&["rfc4733", "info"])).or(Default::Text("rfc4733")),
        ],
    ),
    command(
        "Reject",
        &[
            key("code", "code", Type::Int).or(Default::Int(486)),
            key("reason", "reason", Type::Text),
        ],
    ),
    command("Ringing", &[DELAY]),
    command("Progress", &[DELAY]),
    command(
        "SendInfo",
        &[TARGET, CONTENT_TYPE, BODY, EXPECT, HEADERS, CHECK],
    ),
    command(
        "SendMessage",
        &[TARGET, CONTENT_TYPE, BODY, EXPECT, HEADERS, CHECK],
    ),
    command("SendOptions", &[TARGET, EXPECT, HEADERS, CHECK]),
    command(
        "SendNotify",
        &[
            TARGET.required(),
            CONTENT_TYPE,
            BODY,
            EXPECT,
            HEADERS,
            CHECK,
        ],
    ),
    command("SendUpdate", &[CONTENT_TYPE, BODY, EXPECT, HEADERS, CHECK]),
    command(
        "Subscribe",
        &[
            TARGET.required(),
            key("package", "package", Type::Text).required(),
            key("expires", "expiresMs", Type::Duration)
                .or(Default::Duration(Duration::from_secs(3600))),
            EXPECT,
            HEADERS,
            CHECK,
        ],
    ),
    command(
        "PlaySignature",
        &[key("duration", "durationMs", Type::Duration)
            .or(Default::Duration(Duration::from_secs(1)))],
    ),
    command("Record", &[FILE]),
    command(
        "CheckMedia",
        &[
            key("max_loss", "maxLoss", Type::Number),
            key("max_jitter", "maxJitterMs", Type::Duration),
            key("min_mos", "minMos", Type::Number),
        ],
    ),
    event("INCOMING", &[key("number", "number", Type::Text), CHECK]),
    event("RINGING", &[]),
    event("DISCONNECTED", &[]),
    event("TIMEOUT", &[]),
    event(
        "DTMFReceived",
        &[
            key("expected", "expectedDigit", Type::Text),
            key("matches", "matches", Type::Text),
        ],
    ),
    event("HELD", &[]),
    event("RETRIEVED", &[]),
    event("TRANSFERRED", &[]),
    event(
        "REQUEST",
        &[
            key(
                "method",
                "method",
                Type::Choice(&["INFO", "MESSAGE", "OPTIONS", "NOTIFY", "UPDATE"]),
            ),
            CHECK,
        ],
    ),
    event("HEARD", &[key("from", "from", Type::Instance).required()]),
    event(
        "TONE",
        &[
            key("frequency", "frequency", Type::Number).required(),
            key("absent", "absent", Type::Bool).or(Default::Bool(false)),
        ],
    ),
    event("MEDIA", &[]),
];

const fn command(name: &'static str, keys: &'static [Key]) -> Spec {
    Spec {
        name,
        kind: Kind::Command,
        aliases: &[],
        keys,
    }
}

const fn event(name: &'static str, keys: &'static [Key]) -> Spec {
    Spec {
        name,
        kind: Kind::Event,
        aliases: &[],
        keys,
    }
}

/// The keys of a sipflow `sipInstance` node's `data`, as the editor shows them.
pub const INSTANCE: &[Key] = &[
    key("label", "label", Type::Text),
    key("dn", "dn", Type::Text).required(),
    key(
        "transport",
        "transport",
        Type::Choice(&["UDP", "TCP", "TLS", "WS", "WSS"]),
    )
    .or(Default::Text("UDP")),
    key("pbx.profile", "pbxProfile", Type::Profile),
    key("pbx.host", "pbxHost", Type::Text),
    key("pbx.port", "pbxPort", Type::Text),
    key(
        "pbx.transport",
        "pbxTransport",
        Type::Choice(&["UDP", "TCP", "TLS", "WS", "WSS"]),
    ),
    key("pbx.auth_user", "authUser", Type::Text),
    key("pbx.password", "password", Type::Text),
    key("pbx.realm", "realm", Type::Text),
    key("pbx.outbound_proxy", "outboundProxy", Type::Text),
    key("register", "register", Type::Bool),
    key("register_interval", "registerIntervalSeconds", Type::Int).or(Default::Int(300)),
    key("codecs", "codecs", Type::List),
    key("auto_ringing", "autoRinging", Type::Bool).or(Default::Bool(true)),
    key(
        "100rel",
        "rel100",
        Type::Choice(&["supported", "required", "off"]),
    )
    .or(Default::Text("supported")),
    key("min_se", "minSeMs", Type::Duration).or(Default::Duration(crate::model::DEFAULT_MIN_SE)),
    key("display_name", "displayName", Type::Text),
    key("tls.ca", "tlsCa", Type::Text),
    key("tls.cert", "tlsCert", Type::Text),
    key("tls.key", "tlsKey", Type::Text),
    key("tls.insecure", "tlsInsecure", Type::Bool).or(Default::Bool(false)),
    key("tls.sni", "tlsSni", Type::Text),
    key("ws.path", "wsPath", Type::Text),
    key("ws.origin", "wsOrigin", Type::Text),
    key(
        "srtp",
        "srtp",
        Type::Choice(&["off", "optional", "required"]),
    )
    .or(Default::Text("off")),
];

/// The command or event named `name` of `kind`, as sipflow spells it or by an alias.
pub fn find(kind: Kind, name: &str) -> Option<&'static Spec> {
    ACTIONS
        .iter()
        .find(|s| s.kind == kind && (s.name == name || s.aliases.contains(&name)))
}

/// [`find`] by a loose spelling: case and `_`/`-` do not matter (`make_call`, `dtmf_received`).
pub(crate) fn find_loose(kind: Kind, name: &str) -> Option<&'static Spec> {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .collect::<String>()
            .to_ascii_lowercase()
    };
    let want = norm(name);
    ACTIONS.iter().find(|s| {
        s.kind == kind
            && std::iter::once(s.name)
                .chain(s.aliases.iter().copied())
                .any(|n| norm(n) == want)
    })
}

/// The default of the key `yaml` of the command or event `action`, which the table gives.
fn default_of(action: &str, yaml: &str) -> Default {
    ACTIONS
        .iter()
        .find(|s| s.name == action)
        .and_then(|s| s.keys.iter().find(|k| k.yaml == yaml))
        .and_then(|k| k.default)
        .unwrap_or_else(|| unreachable!("{action}.{yaml} has a default in the table"))
}

/// [`default_of`] a duration key.
pub(crate) fn default_duration(action: &str, yaml: &str) -> Duration {
    match default_of(action, yaml) {
        Default::Duration(d) => d,
        other => unreachable!("{action}.{yaml} defaults to a duration, not {other:?}"),
    }
}

/// [`default_of`] a number key.
pub(crate) fn default_int(action: &str, yaml: &str) -> i64 {
    match default_of(action, yaml) {
        Default::Int(i) => i,
        other => unreachable!("{action}.{yaml} defaults to a number, not {other:?}"),
    }
}

/// Every name of `kind` (aliases too), for did-you-mean.
pub(crate) fn names(kind: Kind) -> Vec<&'static str> {
    ACTIONS
        .iter()
        .filter(|s| s.kind == kind)
        .flat_map(|s| std::iter::once(s.name).chain(s.aliases.iter().copied()))
        .collect()
}

/// The sipflow spelling of the YAML key `yaml` (of a node or a check); itself if both are the same.
pub(crate) fn camel(yaml: &'static str) -> &'static str {
    match yaml {
        "sdp_codec" => return "sdpCodec",
        "sdp_direction" => return "sdpDirection",
        _ => {}
    }
    COMMON
        .iter()
        .chain(ACTIONS.iter().flat_map(|s| s.keys))
        .find(|k| k.yaml == yaml)
        .map_or(yaml, |k| k.json)
}

/// Every key of any node in a spelling (with the keys that place it), for reading keys without
/// regard to case.
pub(crate) fn all_keys(style: crate::options::Style) -> impl Iterator<Item = &'static str> {
    let placing = match style {
        crate::options::Style::Snake => YAML_STEP,
        crate::options::Style::Camel => JSON_DATA,
    };
    placing.iter().copied().chain(
        COMMON
            .iter()
            .chain(ACTIONS.iter().flat_map(|s| s.keys))
            .map(move |k| k.name(style)),
    )
}

/// Checks the keys of a node that runs `spec` (None: a name that is no command or event, whose
/// keys are checked against every key). A key of another command or event is an error at its
/// position, naming who takes it (a sipflow editor leaves empty fields behind: an empty one is
/// let be). Any other key is unknown: an error in YAML, a warning in sipflow JSON (sipflow
/// ignores what it does not know) when it looks like a misspelling.
pub(crate) fn check_keys(
    f: &mut crate::spanned::Fields<'_>,
    map: &crate::spanned::SNode,
    spec: Option<&Spec>,
    style: crate::options::Style,
    what: &str,
) {
    use crate::diag::Diagnostic;
    use crate::spanned::Value;
    let placing = match style {
        crate::options::Style::Snake => YAML_STEP,
        crate::options::Style::Camel => JSON_DATA,
    };
    let own: Vec<&str> = match spec {
        Some(s) => placing
            .iter()
            .copied()
            .chain(COMMON.iter().chain(s.keys).map(|k| k.name(style)))
            .collect(),
        None => all_keys(style).collect(),
    };
    // Keys of other commands or events: an error here, and no unknown key below.
    let mut elsewhere = Vec::new();
    for (k, v) in map.entries() {
        let name = k.name.as_str();
        if own.contains(&name) {
            continue;
        }
        let owners: Vec<&str> = ACTIONS
            .iter()
            .filter(|s| s.key(name, style).is_some())
            .map(|s| s.name)
            .collect();
        let Some(spec) = spec.filter(|_| !owners.is_empty()) else {
            continue;
        };
        elsewhere.push(name);
        let empty = match &v.value {
            Value::Null => true,
            Value::Str(s) => s.is_empty(),
            Value::Seq(items) => items.is_empty(),
            Value::Map(entries) => entries.is_empty(),
            _ => false,
        };
        if empty {
            continue;
        }
        let takes: Vec<&str> = spec.keys.iter().map(|k| k.name(style)).collect();
        let help = if takes.is_empty() {
            format!("{} takes none but the common keys", spec.name)
        } else {
            format!("{} takes: {}", spec.name, takes.join(", "))
        };
        f.diags.push(
            Diagnostic::error(
                f.file,
                k.pos,
                format!(
                    "`{name}` is a key of {}, not of {}",
                    list(&owners),
                    spec.name
                ),
            )
            .with_help(help),
        );
    }
    let as_error = style == crate::options::Style::Snake;
    f.unknown_keys_except(map, &own, &elsewhere, what, as_error);
}

/// `a`, `a or b`, `a, b or c`: at most four names, then "and N more".
fn list(names: &[&str]) -> String {
    let shown = &names[..names.len().min(4)];
    let mut s = match shown {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    };
    if names.len() > shown.len() {
        s = format!(
            "{} (and {} more)",
            shown.join(", "),
            names.len() - shown.len()
        );
    }
    s
}

fn key_json(k: &Key) -> Json {
    let mut o = json!({
        "yaml": k.yaml,
        "json": k.json,
        "type": k.ty.as_str(),
        "required": k.required,
    });
    if let Type::Choice(c) = k.ty {
        o["choices"] = json!(c);
    }
    if let Some(d) = k.default {
        o["default"] = d.json();
    }
    o
}

/// The table as JSON (`GET /api/schema`): `common` keys, `commands` and `events` (each
/// `{name, aliases, keys}` in palette order), and the `instance` keys of a sipflow flow.
pub fn to_json() -> Json {
    let specs = |kind| {
        ACTIONS
            .iter()
            .filter(|s| s.kind == kind)
            .map(|s| {
                json!({
                    "name": s.name,
                    "aliases": s.aliases,
                    "keys": s.keys.iter().map(key_json).collect::<Vec<_>>(),
                })
            })
            .collect::<Vec<_>>()
    };
    json!({
        "common": COMMON.iter().map(key_json).collect::<Vec<_>>(),
        "commands": specs(Kind::Command),
        "events": specs(Kind::Event),
        "instance": INSTANCE.iter().map(key_json).collect::<Vec<_>>(),
    })
}

/// The key table of docs/scenario-format.md: a row per command and event.
pub fn markdown() -> String {
    let spell = |k: &Key| {
        let name = if k.yaml == k.json {
            format!("`{}`", k.yaml)
        } else {
            format!("`{}` / `{}`", k.yaml, k.json)
        };
        let mut s = format!("{name} {}", k.ty.as_str());
        if let Type::Choice(c) = k.ty {
            s = format!("{name} ({})", c.join(", "));
        }
        if k.required {
            s.push_str(", required");
        }
        if let Some(d) = k.default {
            s.push_str(&format!(", default `{}`", d.yaml()));
        }
        s
    };
    let mut out = String::from(
        "| name | kind | keys (YAML / sipflow JSON, type, default) |\n|---|---|---|\n",
    );
    for s in ACTIONS {
        let mut name = format!("`{}`", s.name);
        for a in s.aliases {
            name.push_str(&format!(" (also `{a}`)"));
        }
        let kind = match s.kind {
            Kind::Command => "command",
            Kind::Event => "event",
        };
        let keys: Vec<String> = s.keys.iter().map(spell).collect();
        let keys = if keys.is_empty() {
            "none".to_owned()
        } else {
            keys.join("; ")
        };
        out.push_str(&format!("| {name} | {kind} | {keys} |\n"));
    }
    let common: Vec<String> = COMMON.iter().map(spell).collect();
    out.push_str(&format!("| every node | | {} |\n", common.join("; ")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_once_in_the_table_and_every_key_once_in_its_spec() {
        let mut seen = std::collections::HashSet::new();
        for s in ACTIONS {
            for n in std::iter::once(s.name).chain(s.aliases.iter().copied()) {
                assert!(seen.insert((s.kind, n)), "{n} twice");
            }
            for style in [crate::options::Style::Snake, crate::options::Style::Camel] {
                let mut keys = std::collections::HashSet::new();
                for k in COMMON.iter().chain(s.keys) {
                    assert!(keys.insert(k.name(style)), "{}: {} twice", s.name, k.yaml);
                }
            }
        }
    }

    #[test]
    fn a_key_spelt_in_both_formats_is_spelt_the_same_wherever_it_appears() {
        let all: Vec<&Key> = COMMON
            .iter()
            .chain(ACTIONS.iter().flat_map(|s| s.keys))
            .collect();
        for a in &all {
            for b in &all {
                assert!(
                    a.yaml != b.yaml || a.json == b.json,
                    "{} is {} and {}",
                    a.yaml,
                    a.json,
                    b.json
                );
            }
        }
    }
}
