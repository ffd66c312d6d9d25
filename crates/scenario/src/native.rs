//! The native YAML format (documented in `docs/scenario-format.md`).
//!
//! ```yaml
//! name: Basic call
//! instances:
//!   alice:
//!     dn: "100"
//!     steps:
//!       - command: MakeCall
//!         target: bob          # an instance name, a DN, or a sip: URI
//!         timeout: 5s
//!         on_failure:          # a list of steps, or the id of a step
//!           - command: Release
//!       - command: Release
//!   bob:
//!     dn: "200"
//!     steps:
//!       - event: INCOMING
//!       - command: Answer
//!       - event: DISCONNECTED
//! ```
//!
//! A step's success goes to the next step of its list unless it says `next: <id>` or `next: end`.
//! A failure list ends the chain when it ends.

use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::model::{
    Action, DEFAULT_CALL_ID, DEFAULT_TIMEOUT, Format, Instance, Node, Pbx, PbxSettings, Scenario,
    SipTransport,
};
use crate::options::Style;
use crate::profiles::Profiles;
use crate::schema::{Kind, Spec, default_duration};
use crate::spanned::{Fields, SNode, Value};
use std::collections::HashMap;
use std::time::Duration;

const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "version",
    "defaults",
    "instances",
    "sidecars",
];
const SIDECAR_KEYS: &[&str] = &["name", "command", "health", "timeout"];
const HEALTH_KEYS: &[&str] = &["options", "tcp", "log"];
const DEFAULTS_KEYS: &[&str] = &["timeout"];
const INSTANCE_KEYS: &[&str] = &[
    "dn",
    "label",
    "transport",
    "register",
    "register_interval",
    "pbx",
    "codecs",
    "auto_ringing",
    "100rel",
    "min_se",
    "steps",
    "display_name",
    "tls",
    "ws",
    "srtp",
];
const TLS_KEYS: &[&str] = &["ca", "cert", "key", "insecure", "sni"];
const WS_KEYS: &[&str] = &["path", "origin"];
/// The keys of an instance's `pbx` (`profile` first: a profile has all the others).
pub(crate) const PBX_KEYS: &[&str] = &[
    "profile",
    "host",
    "port",
    "transport",
    "auth_user",
    "password",
    "realm",
    "outbound_proxy",
];

/// A step's success/failure that names a step id, resolved once every step is known.
enum Link {
    Id(String, Pos),
    End,
}

struct Pending {
    node: usize,
    next: Option<Link>,
    failure: Option<Link>,
    after: Option<(String, Pos)>,
}

pub(crate) fn convert(
    root: &SNode,
    file: &str,
    profiles: &Profiles,
    keep: &[String],
    diags: &mut Diagnostics,
) -> Option<Scenario> {
    let mut f = Fields { file, diags, keep };
    if !matches!(root.value, Value::Map(_)) {
        f.error(
            root.pos,
            format!(
                "a scenario is a mapping with `name` and `instances`, not {}",
                root.type_name()
            ),
        );
        return None;
    }
    f.unknown_keys(root, TOP_KEYS, "the scenario", true);
    if let Some(v) = root.get("version")
        && v.value != Value::Int(1)
    {
        f.error(v.pos, "this callflow reads scenario `version: 1`");
    }
    let default_timeout = match root.get("defaults") {
        Some(d) => {
            f.unknown_keys(d, DEFAULTS_KEYS, "`defaults`", true);
            f.duration(d, "timeout").map_or(DEFAULT_TIMEOUT, |(t, _)| t)
        }
        None => DEFAULT_TIMEOUT,
    };
    let Some(insts) = root.get("instances") else {
        f.error(root.pos, "a scenario needs `instances`");
        return None;
    };
    if !matches!(insts.value, Value::Map(_)) {
        f.error(
            insts.pos,
            "`instances` is a mapping from instance name to its settings and steps",
        );
        return None;
    }

    let mut instances = Vec::new();
    let mut nodes: Vec<Node> = Vec::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut pending: Vec<Pending> = Vec::new();
    for (key, body) in insts.entries() {
        let idx = instances.len();
        let Some(mut inst) = instance(&mut f, &key.name, key.pos, body, profiles) else {
            continue;
        };
        if let Some(steps) = body.get("steps") {
            let mut ctx = StepCtx {
                f: &mut f,
                nodes: &mut nodes,
                ids: &mut ids,
                pending: &mut pending,
                instance: idx,
                default_timeout,
            };
            if let Some(first) = ctx.list(steps, &key.name) {
                inst.starts.push(first);
            }
        }
        instances.push(inst);
    }

    // Targets may name instances: turn them into DNs.
    let dn_of: HashMap<&str, &str> = instances
        .iter()
        .map(|i| (i.id.as_str(), i.dn.as_str()))
        .collect();
    for n in &mut nodes {
        let target = match &mut n.action {
            Action::MakeCall { target } | Action::Subscribe { target, .. } => Some(target),
            Action::SendRequest { target, .. } => target.as_mut(),
            _ => None,
        };
        if let Some(target) = target
            && let Some(dn) = dn_of.get(target.as_str())
        {
            *target = (*dn).to_owned();
        }
    }

    let ids: HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.clone(), i))
        .collect();
    for p in pending {
        if let Some((id, pos)) = &p.after {
            match ids.get(id) {
                Some(&t) => nodes[p.node].opts.after = Some(t),
                None => {
                    let mut d =
                        Diagnostic::error(file, *pos, format!("`after`: no step has id `{id}`"));
                    if let Some(h) = crate::diag::did_you_mean(id, ids.keys().map(String::as_str)) {
                        d = d.with_help(h);
                    }
                    f.diags.push(d);
                }
            }
        }
        for (link, failure) in [(p.next, false), (p.failure, true)] {
            let target = match link {
                None => continue,
                Some(Link::End) => None,
                Some(Link::Id(id, pos)) => match ids.get(&id) {
                    Some(&t) => Some(t),
                    None => {
                        let mut d = Diagnostic::error(file, pos, format!("no step has id `{id}`"));
                        if let Some(h) =
                            crate::diag::did_you_mean(&id, ids.keys().map(String::as_str))
                        {
                            d = d.with_help(h);
                        }
                        f.diags.push(d);
                        continue;
                    }
                },
            };
            if failure {
                nodes[p.node].on_failure = target;
            } else {
                nodes[p.node].on_success = target;
            }
        }
    }
    if instances.is_empty() && !f.diags.has_errors() {
        f.error(insts.pos, "a scenario needs at least one instance");
    }
    if f.diags.has_errors() {
        return None;
    }
    let name = f.string(root, "name").unwrap_or_else(|| {
        std::path::Path::new(file).file_stem().map_or_else(
            || "scenario".to_owned(),
            |s| s.to_string_lossy().into_owned(),
        )
    });
    let sidecars = sidecars(&mut f, root);
    if f.diags.has_errors() {
        return None;
    }
    Some(Scenario {
        name,
        file: file.to_owned(),
        format: Format::Native,
        instances,
        nodes,
        sidecars,
    })
}

/// A `udp`/`tcp`/`tls`/`ws`/`wss` field (any case); UDP when absent.
pub(crate) fn transport(f: &mut Fields<'_>, map: &SNode, key: &str) -> SipTransport {
    match f.string(map, key).map(|t| t.parse::<SipTransport>()) {
        None => SipTransport::Udp,
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            let pos = map.get(key).map_or(map.pos, |n| n.pos);
            f.error(pos, format!("`{key}`: {e}"));
            SipTransport::Udp
        }
    }
}

/// An instance's `100rel`: `supported` (the default), `required` or `off`.
pub(crate) fn rel100(f: &mut Fields<'_>, map: &SNode, key: &str) -> crate::model::Rel100 {
    let Some(v) = f.string(map, key) else {
        return crate::model::Rel100::default();
    };
    crate::model::Rel100::parse(&v).unwrap_or_else(|| {
        let pos = map.get(key).map_or(map.pos, |n| n.pos);
        f.error(
            pos,
            format!("`{key}` is `{v}`; it takes `supported`, `required` or `off`"),
        );
        crate::model::Rel100::default()
    })
}

/// An instance's `pbx`: a profile name, a mapping of settings, or both (`profile:` plus the
/// settings that differ).
fn pbx(f: &mut Fields<'_>, p: &SNode, body: &SNode, profiles: &Profiles) -> Option<Pbx> {
    if let Value::Str(name) = &p.value {
        return profiles.get(f, name, p.pos);
    }
    if !matches!(p.value, Value::Map(_)) {
        f.error(
            p.pos,
            "`pbx` is the name of a PBX profile or a mapping with `host`, `port`, ...",
        );
        return None;
    }
    f.unknown_keys(p, PBX_KEYS, "`pbx`", true);
    let base = match p.get("profile") {
        Some(n) => match n.as_text() {
            Some(name) => Some(profiles.get(f, &name, n.pos)?),
            None => {
                f.error(n.pos, "`profile` is the name of a PBX profile");
                return None;
            }
        },
        None => None,
    };
    // The PBX's transport: its own, else (without a profile to give one) the instance's.
    let transport = if p.get("transport").is_some() {
        Some(transport(f, p, "transport"))
    } else if base.is_none() && body.get("transport").is_some() {
        Some(transport(f, body, "transport"))
    } else {
        None
    };
    pbx_settings(f, p, base, transport)
}

/// PBX settings from a mapping, over `base` (a profile) when there is one.
pub(crate) fn pbx_settings(
    f: &mut Fields<'_>,
    p: &SNode,
    base: Option<Pbx>,
    transport: Option<SipTransport>,
) -> Option<Pbx> {
    let host = match &base {
        Some(_) => f.string(p, "host"),
        None => Some(f.required_string(p, "host", "`pbx`")?),
    };
    let port = match p.get("port").map(|n| (&n.value, n.pos)) {
        Some((Value::Int(i), _)) if (1..=65535).contains(i) => Some(*i as u16),
        Some((_, ppos)) => {
            f.error(ppos, "`port` must be a port number (1-65535)");
            None
        }
        None => None,
    };
    PbxSettings {
        host,
        port,
        transport,
        auth_user: f.string(p, "auth_user"),
        password_text: f.secret(p, "password"),
        realm: f.string(p, "realm"),
        outbound_proxy: f.string(p, "outbound_proxy"),
    }
    .over(base.as_ref())
}

fn instance(
    f: &mut Fields<'_>,
    name: &str,
    pos: Pos,
    body: &SNode,
    profiles: &Profiles,
) -> Option<Instance> {
    if body.value == Value::Null {
        f.error(pos, format!("instance `{name}` needs at least a `dn`"));
        return None;
    }
    if !matches!(body.value, Value::Map(_)) {
        f.error(
            body.pos,
            format!(
                "instance `{name}` must be a mapping, not {}",
                body.type_name()
            ),
        );
        return None;
    }
    f.unknown_keys(body, INSTANCE_KEYS, &format!("instance `{name}`"), true);
    let dn = f
        .required_string(body, "dn", &format!("instance `{name}`"))
        .unwrap_or_default();
    let label = f.string(body, "label").unwrap_or_else(|| name.to_owned());
    let pbx = body.get("pbx").and_then(|p| pbx(f, p, body, profiles));
    let register = f.bool(body, "register").unwrap_or(pbx.is_some());
    if register && pbx.is_none() {
        f.error(
            body.get("register").map_or(pos, |n| n.pos),
            format!("instance `{name}` registers but has no `pbx`"),
        );
    }
    let codecs = match body.get("codecs").map(|c| (&c.value, c.pos)) {
        Some((Value::Seq(items), _)) => {
            let mut out = Vec::new();
            for item in items {
                match item.as_text().map(|c| c.to_ascii_uppercase()) {
                    Some(c) if media::sdp::Codec::from_name(&c).is_some() => {
                        out.push(c);
                    }
                    Some(other) => f.error(
                        item.pos,
                        format!(
                            "codec `{other}` is not supported; use PCMU, PCMA, G722, OPUS or L16"
                        ),
                    ),
                    None => f.error(item.pos, "a codec is a name: PCMU, PCMA, G722, OPUS or L16"),
                }
            }
            out
        }
        Some((_, cpos)) => {
            f.error(cpos, "`codecs` is a list such as [PCMU, PCMA]");
            Vec::new()
        }
        None => vec!["PCMU".to_owned(), "PCMA".to_owned()],
    };
    Some(Instance {
        id: name.to_owned(),
        label,
        dn,
        transport: transport(f, body, "transport"),
        register,
        register_interval: f
            .duration(body, "register_interval")
            .map_or(Duration::from_secs(300), |(d, _)| d),
        pbx,
        codecs,
        auto_ringing: f.bool(body, "auto_ringing").unwrap_or(true),
        rel100: rel100(f, body, "100rel"),
        min_se: f
            .duration(body, "min_se")
            .map_or(crate::model::DEFAULT_MIN_SE, |(d, _)| d),
        display_name: f.string(body, "display_name"),
        tls: tls(f, body, pos),
        ws: ws(f, body),
        srtp: srtp(f, body, "srtp"),
        starts: Vec::new(),
        pos,
    })
}

/// An instance's `srtp`: `off` (the default), `optional` or `required`.
pub(crate) fn srtp(f: &mut Fields<'_>, map: &SNode, key: &str) -> media::srtp::SrtpMode {
    let Some(v) = f.string(map, key).filter(|v| !v.is_empty()) else {
        return media::srtp::SrtpMode::Off;
    };
    media::srtp::SrtpMode::parse(&v).unwrap_or_else(|| {
        let pos = map.get(key).map_or(map.pos, |n| n.pos);
        f.error(
            pos,
            format!("`{key}` is `{v}`; it takes `off`, `optional` or `required`"),
        );
        media::srtp::SrtpMode::Off
    })
}

/// An instance's `ws: {path, origin}`.
fn ws(f: &mut Fields<'_>, body: &SNode) -> crate::model::WsSettings {
    let Some(w) = body.get("ws") else {
        return crate::model::WsSettings::default();
    };
    if !matches!(w.value, Value::Map(_)) {
        f.error(
            w.pos,
            "`ws` is a mapping: `{path: /ws, origin: https://host}`",
        );
        return crate::model::WsSettings::default();
    }
    f.unknown_keys(w, WS_KEYS, "`ws`", true);
    let path = f.string(w, "path");
    if let Some(p) = &path
        && !p.starts_with('/')
    {
        let ppos = w.get("path").map_or(w.pos, |n| n.pos);
        f.error(
            ppos,
            format!("`ws.path` is a URL path starting with `/`, not `{p}`"),
        );
    }
    crate::model::WsSettings {
        path,
        origin: f.string(w, "origin"),
    }
}

/// An instance's `tls: {ca, cert, key, insecure, sni}`.
fn tls(f: &mut Fields<'_>, body: &SNode, pos: Pos) -> crate::model::TlsSettings {
    let Some(t) = body.get("tls") else {
        return crate::model::TlsSettings {
            pos,
            ..Default::default()
        };
    };
    if !matches!(t.value, Value::Map(_)) {
        f.error(
            t.pos,
            "`tls` is a mapping: `{ca: FILE, cert: FILE, key: FILE, insecure: false, sni: NAME}`",
        );
        return crate::model::TlsSettings {
            pos: t.pos,
            ..Default::default()
        };
    }
    f.unknown_keys(t, TLS_KEYS, "`tls`", true);
    crate::model::TlsSettings {
        ca: f.string(t, "ca"),
        cert: f.string(t, "cert"),
        key: f.string(t, "key"),
        insecure: f.bool(t, "insecure").unwrap_or(false),
        sni: f.string(t, "sni"),
        pos: t.pos,
    }
}

struct StepCtx<'a, 'f> {
    f: &'a mut Fields<'f>,
    nodes: &'a mut Vec<Node>,
    /// Step id → the line it is defined on.
    ids: &'a mut HashMap<String, usize>,
    pending: &'a mut Vec<Pending>,
    instance: usize,
    default_timeout: Duration,
}

impl StepCtx<'_, '_> {
    /// Converts a list of steps, chaining each to the next; returns the first node.
    fn list(&mut self, steps: &SNode, prefix: &str) -> Option<usize> {
        let Value::Seq(items) = &steps.value else {
            self.f.error(
                steps.pos,
                format!("`steps` must be a list, not {}", steps.type_name()),
            );
            return None;
        };
        let mut first = None;
        let mut prev: Option<(usize, bool)> = None; // (node, has explicit next)
        for (i, item) in items.iter().enumerate() {
            let Some((idx, explicit_next)) = self.step(item, &format!("{prefix}.{}", i + 1)) else {
                continue;
            };
            if let Some((p, false)) = prev {
                self.nodes[p].on_success = Some(idx);
            }
            first.get_or_insert(idx);
            prev = Some((idx, explicit_next));
        }
        first
    }

    fn step(&mut self, item: &SNode, default_id: &str) -> Option<(usize, bool)> {
        if !matches!(item.value, Value::Map(_)) {
            self.f.error(
                item.pos,
                format!(
                    "a step is a mapping with `command:` or `event:`, not {}",
                    item.type_name()
                ),
            );
            return None;
        }
        let named = |key, kind| {
            item.get(key)
                .and_then(SNode::as_text)
                .and_then(|n| crate::schema::find_loose(kind, &n))
        };
        let spec = named("command", Kind::Command).or_else(|| named("event", Kind::Event));
        crate::schema::check_keys(self.f, item, spec, Style::Snake, "a step");
        let action = match (item.get("command"), item.get("event")) {
            (Some(_), Some(e)) => {
                self.f
                    .error(e.pos, "a step has either `command` or `event`, not both");
                return None;
            }
            (Some(c), None) => self.command(item, c, spec)?,
            (None, Some(e)) => self.event(item, e, spec)?,
            (None, None) => {
                self.f.error(
                    item.pos,
                    "a step needs `command:` (MakeCall, Answer, ...) or `event:` (INCOMING, ...)",
                );
                return None;
            }
        };
        let id = self
            .f
            .string(item, "id")
            .unwrap_or_else(|| default_id.to_owned());
        if let Some(&line) = self.ids.get(&id) {
            self.f.error(
                item.get("id").map_or(item.pos, |n| n.pos),
                format!("step id `{id}` is already used on line {line}"),
            );
        }
        let timeout = self
            .f
            .duration(item, "timeout")
            .map_or(self.default_timeout, |(d, _)| d);
        let call_id = match &action {
            Action::AttendedTransfer {
                primary_call_id, ..
            } => primary_call_id.clone(),
            _ => self
                .f
                .string(item, "call_id")
                .unwrap_or_else(|| DEFAULT_CALL_ID.to_owned()),
        };
        let label = self
            .f
            .string(item, "label")
            .unwrap_or_else(|| action.name().to_owned());
        let (opts, after) = crate::options::read(self.f, item, Style::Snake);
        let idx = self.nodes.len();
        self.ids.entry(id.clone()).or_insert(item.pos.line);
        self.nodes.push(Node {
            id,
            label,
            instance: self.instance,
            call_id,
            timeout,
            action,
            on_success: None,
            on_failure: None,
            opts,
            pos: item.pos,
        });
        let next = self.link(item, "next");
        let explicit_next = next.is_some();
        let failure = match item.get("on_failure") {
            Some(
                n @ SNode {
                    value: Value::Seq(_),
                    ..
                },
            ) => {
                let id = self.nodes[idx].id.clone();
                let first = self.list(n, &format!("{id}.failure"));
                self.nodes[idx].on_failure = first;
                None
            }
            Some(_) => self.link(item, "on_failure"),
            None => None,
        };
        self.pending.push(Pending {
            node: idx,
            next,
            failure,
            after,
        });
        Some((idx, explicit_next))
    }

    fn link(&mut self, item: &SNode, key: &str) -> Option<Link> {
        let node = item.get(key)?;
        match &node.value {
            Value::Str(s) if s == "end" => Some(Link::End),
            Value::Str(s) => Some(Link::Id(s.clone(), node.pos)),
            _ => {
                self.f.error(
                    node.pos,
                    format!("`{key}` is a step id, `end`, or (for on_failure) a list of steps"),
                );
                None
            }
        }
    }

    /// The command `name` names: `spec`, its entry in the table of actions (None: no command).
    fn command(&mut self, item: &SNode, name: &SNode, spec: Option<&Spec>) -> Option<Action> {
        let Some(n) = name.as_text() else {
            self.f
                .error(name.pos, "`command` must be a name such as MakeCall");
            return None;
        };
        let f = &mut *self.f;
        let s = |f: &mut Fields<'_>, k: &str| f.string(item, k).unwrap_or_default();
        let action = spec.and_then(|spec| match spec.name {
            "MakeCall" => Some(Action::MakeCall {
                target: s(f, "target"),
            }),
            "Answer" => Some(Action::Answer),
            "Release" => Some(Action::Release),
            "Hold" => Some(Action::Hold),
            "Retrieve" => Some(Action::Retrieve),
            "BlindTransfer" => Some(Action::BlindTransfer {
                target_user: s(f, "target_user"),
                target_host: s(f, "target_host"),
            }),
            "MuteTransfer" => Some(Action::AttendedTransfer {
                primary_call_id: f
                    .string(item, "primary_call_id")
                    .or_else(|| f.string(item, "call_id"))
                    .unwrap_or_else(|| DEFAULT_CALL_ID.to_owned()),
                consult_call_id: s(f, "consult_call_id"),
            }),
            "PlayAudio" => Some(Action::PlayAudio { file: s(f, "file") }),
            "SendDTMF" => Some(Action::SendDtmf {
                digits: s(f, "digits"),
                interval: f
                    .duration(item, "interval")
                    .map_or_else(|| default_duration("SendDTMF", "interval"), |(d, _)| d),
            }),
            other => crate::options::extra_command(f, item, other, Style::Snake),
        });
        if action.is_none() {
            let known = crate::schema::names(Kind::Command);
            crate::sipflow::unknown_name(f, item, "command", &n, &known);
        }
        action
    }

    /// The event `name` names: `spec`, its entry in the table of actions (None: no event).
    fn event(&mut self, item: &SNode, name: &SNode, spec: Option<&Spec>) -> Option<Action> {
        let Some(n) = name.as_text() else {
            self.f
                .error(name.pos, "`event` must be a name such as INCOMING");
            return None;
        };
        let f = &mut *self.f;
        let action = spec.and_then(|spec| match spec.name {
            "INCOMING" => Some(Action::Incoming {
                number: f.string(item, "number"),
            }),
            "RINGING" => Some(Action::Ringing),
            "DISCONNECTED" => Some(Action::Disconnected),
            "TIMEOUT" => Some(Action::Delay),
            "DTMFReceived" => Some(Action::DtmfReceived {
                expected: f.string(item, "expected"),
            }),
            "HELD" => Some(Action::Held),
            "RETRIEVED" => Some(Action::Retrieved),
            "TRANSFERRED" => Some(Action::Transferred),
            other => crate::options::extra_event(f, item, other),
        });
        if action.is_none() {
            let known = crate::schema::names(Kind::Event);
            crate::sipflow::unknown_name(f, item, "event", &n, &known);
        }
        action
    }
}

fn sidecars(f: &mut Fields<'_>, root: &SNode) -> Vec<crate::model::Sidecar> {
    use crate::model::{Health, Sidecar};
    let Some(list) = root.get("sidecars") else {
        return Vec::new();
    };
    let Value::Seq(items) = &list.value else {
        f.error(
            list.pos,
            "`sidecars` is a list of processes to start before the run",
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        f.unknown_keys(item, SIDECAR_KEYS, "a sidecar", true);
        let name = f
            .string(item, "name")
            .unwrap_or_else(|| format!("sidecar-{}", i + 1));
        let command: Vec<String> = match item.get("command").map(|c| &c.value) {
            Some(Value::Seq(parts)) => parts.iter().filter_map(SNode::as_text).collect(),
            Some(Value::Str(s)) => s.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        if command.is_empty() {
            f.error(
                item.pos,
                format!("sidecar `{name}` needs a `command` (a list: program and arguments)"),
            );
            continue;
        }
        let addr = |f: &mut Fields<'_>, h: &SNode, key: &str| -> Option<std::net::SocketAddr> {
            let text = f.string(h, key)?;
            match text.parse() {
                Ok(a) => Some(a),
                Err(_) => {
                    f.error(
                        h.get(key).map_or(h.pos, |n| n.pos),
                        format!("`{key}` is an `ip:port`, such as 127.0.0.1:5060"),
                    );
                    None
                }
            }
        };
        let health = match item.get("health") {
            None => Health::None,
            Some(h) => {
                f.unknown_keys(h, HEALTH_KEYS, "`health`", true);
                if let Some(a) = addr(f, h, "options") {
                    Health::Options(a)
                } else if let Some(a) = addr(f, h, "tcp") {
                    Health::Tcp(a)
                } else if let Some(text) = f.string(h, "log") {
                    Health::Log(text)
                } else {
                    f.error(
                        h.pos,
                        "`health` is `options: ip:port`, `tcp: ip:port` or `log: text`",
                    );
                    Health::None
                }
            }
        };
        let timeout = f
            .duration(item, "timeout")
            .map_or(Duration::from_secs(10), |(d, _)| d);
        out.push(Sidecar {
            name,
            command,
            health,
            timeout,
            pos: item.pos,
        });
    }
    out
}
