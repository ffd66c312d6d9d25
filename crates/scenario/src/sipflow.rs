//! sipflow's flow JSON (`{nodes, edges}`), imported as-is.
//!
//! Field names, defaults and edge rules follow sipflow (see `docs/scenario-format.md`), except
//! where sipflow has a known bug: several success edges from one node are an error (sipflow kept
//! the last), and `register: true` without a `pbxHost` runs locally with a warning (sipflow failed
//! to start).

use crate::diag::{Diagnostics, Pos};
use crate::model::{
    Action, DEFAULT_CALL_ID, DEFAULT_TIMEOUT, Format, Instance, Node, PbxSettings, Scenario,
    SipTransport,
};
use crate::options::Style;
use crate::profiles::Profiles;
use crate::schema::Kind;
use crate::spanned::{Fields, SNode, Value};
use std::collections::HashMap;
use std::time::Duration;

const INSTANCE_KEYS: &[&str] = &[
    "label",
    "dn",
    "register",
    "color",
    "codecs",
    "pbxProfile",
    "pbxHost",
    "pbxPort",
    "pbxTransport",
    "registerIntervalSeconds",
    "pbxInstanceId",
    "serverId",
    "authUser",
    "password",
    "realm",
    "displayName",
    "outboundProxy",
    "transport",
    "autoRinging",
    // callflow's own: 100rel (RFC 3262) as `supported`, `required` or `off`.
    "rel100",
    "minSeMs",
    // callflow's own: TLS settings (`tls:` in YAML).
    "tlsCa",
    "tlsCert",
    "tlsKey",
    "tlsInsecure",
    "tlsSni",
    // callflow's own: WebSocket settings (`ws:` in YAML).
    "wsPath",
    "wsOrigin",
    // callflow's own: SRTP (`off`, `optional`, `required`).
    "srtp",
];
/// A value with where it was written.
type Located = (String, Pos);

/// The keys of a flow, its nodes and its edges (React Flow's, as sipflow writes them).
const FLOW_KEYS: &[&str] = &[
    "nodes",
    "edges",
    "id",
    "type",
    "data",
    "position",
    "source",
    "target",
    "sourceHandle",
    "targetHandle",
    "branchType",
];

/// Every key the reader knows, in the spelling it looks for.
fn known_key(name: &str) -> Option<&'static str> {
    FLOW_KEYS
        .iter()
        .chain(INSTANCE_KEYS)
        .copied()
        .chain(crate::schema::all_keys(Style::Camel))
        .find(|k| k.eq_ignore_ascii_case(name))
}

/// Reads keys the way sipflow does: its Go structs are filled by encoding/json, which takes a
/// key that differs from a field's name only in case (`Nodes`, `ID`, `SourceHandle`, what Go
/// writes for a struct without tags) and prefers the exact spelling when both are there. So a
/// key is renamed to the spelling this reader looks for, unless its map has that spelling too.
fn fold_keys(node: &mut SNode) {
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(fold_keys),
        Value::Map(entries) => {
            // The spellings present, once: linear in the map's size whatever its keys.
            let present: std::collections::HashSet<&str> =
                entries.iter().map(|(k, _)| k.name.as_str()).collect();
            let renames: Vec<(usize, &'static str)> = entries
                .iter()
                .enumerate()
                .filter_map(|(i, (k, _))| {
                    let canon = known_key(&k.name)?;
                    (k.name != canon && !present.contains(canon)).then_some((i, canon))
                })
                .collect();
            for (i, canon) in renames {
                entries[i].0.name = canon.to_owned();
            }
            entries.iter_mut().for_each(|(_, v)| fold_keys(v));
        }
        _ => {}
    }
}

pub(crate) fn convert(
    root: &SNode,
    file: &str,
    profiles: &Profiles,
    keep: &[String],
    diags: &mut Diagnostics,
) -> Option<Scenario> {
    let mut f = Fields { file, diags, keep };
    let mut folded = root.clone();
    fold_keys(&mut folded);
    let root = &folded;
    let Some(nodes) = root.get("nodes") else {
        f.error(root.pos, "a sipflow flow needs a `nodes` list");
        return None;
    };
    let Value::Seq(raw_nodes) = &nodes.value else {
        f.error(nodes.pos, "`nodes` must be a list");
        return None;
    };
    let raw_edges: &[SNode] = match root.get("edges").map(|e| &e.value) {
        Some(Value::Seq(items)) => items,
        Some(Value::Null) | None => &[],
        Some(_) => {
            f.error(
                root.get("edges").map_or(root.pos, |e| e.pos),
                "`edges` must be a list",
            );
            return None;
        }
    };

    let mut instances: Vec<Instance> = Vec::new();
    let mut inst_by_id: HashMap<String, usize> = HashMap::new();
    let mut out_nodes: Vec<Node> = Vec::new();
    let mut node_by_id: HashMap<String, usize> = HashMap::new();
    // Node index -> (explicit sipInstanceId and its position, INCOMING number).
    let mut bindings: Vec<(Option<Located>, Option<Located>)> = Vec::new();
    // Nodes already reported as broken: edges to and from them say nothing new.
    let mut broken: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut afters: Vec<Option<(String, Pos)>> = Vec::new();

    // Instances first, so command/event nodes can refer to them whatever the order.
    for raw in raw_nodes {
        let (Some(id), Some(ty)) = (f.string(raw, "id"), f.string(raw, "type")) else {
            f.error(raw.pos, "every node needs an `id` and a `type`");
            continue;
        };
        if ty != "sipInstance" {
            continue;
        }
        let data = raw.get("data").cloned().unwrap_or(SNode {
            pos: raw.pos,
            value: Value::Map(vec![]),
        });
        if let Some(inst) = instance(&mut f, &id, raw.pos, &data, profiles) {
            if inst_by_id.insert(id.clone(), instances.len()).is_some() {
                f.error(raw.pos, format!("duplicate node id `{id}`"));
            }
            instances.push(inst);
        }
    }

    for raw in raw_nodes {
        let (Some(id), Some(ty)) = (f.string(raw, "id"), f.string(raw, "type")) else {
            continue;
        };
        let data = raw.get("data").cloned().unwrap_or(SNode {
            pos: raw.pos,
            value: Value::Map(vec![]),
        });
        let (action, binding) = match ty.as_str() {
            "sipInstance" => continue,
            "command" => {
                let spec = data.get("command").and_then(SNode::as_text);
                let spec = spec.and_then(|n| crate::schema::find(Kind::Command, &n));
                crate::schema::check_keys(&mut f, &data, spec, Style::Camel, "command data");
                (command(&mut f, &data), None)
            }
            "event" => {
                let spec = data.get("event").and_then(SNode::as_text);
                let spec = spec.and_then(|n| crate::schema::find(Kind::Event, &n));
                crate::schema::check_keys(&mut f, &data, spec, Style::Camel, "event data");
                let number = f.string(&data, "number").filter(|n| !n.is_empty());
                let number_pos = data.get("number").map_or(raw.pos, |n| n.pos);
                (event(&mut f, &data), number.map(|n| (n, number_pos)))
            }
            other => {
                f.warn(raw.pos, format!("node `{id}` has type `{other}`, which callflow does not know; it is ignored"));
                continue;
            }
        };
        let Some(action) = action else {
            broken.insert(id);
            continue;
        };
        let explicit = f.string(&data, "sipInstanceId").filter(|s| !s.is_empty());
        let explicit_pos = data.get("sipInstanceId").map_or(raw.pos, |n| n.pos);
        let timeout = f
            .millis(&data, "timeout")
            .map_or(DEFAULT_TIMEOUT, |(d, _)| d);
        let call_id = match &action {
            Action::AttendedTransfer {
                primary_call_id, ..
            } => primary_call_id.clone(),
            _ => f
                .string(&data, "callId")
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| DEFAULT_CALL_ID.to_owned()),
        };
        let label = f
            .string(&data, "label")
            .filter(|l| !l.is_empty())
            .unwrap_or_else(|| action.name().to_owned());
        if node_by_id.insert(id.clone(), out_nodes.len()).is_some() || inst_by_id.contains_key(&id)
        {
            f.error(raw.pos, format!("duplicate node id `{id}`"));
        }
        let (opts, after) = crate::options::read(&mut f, &data, Style::Camel);
        afters.push(after);
        out_nodes.push(Node {
            id,
            label,
            instance: usize::MAX,
            call_id,
            timeout,
            action,
            on_success: None,
            on_failure: None,
            opts,
            pos: raw.pos,
        });
        bindings.push((explicit.map(|e| (e, explicit_pos)), binding));
    }

    // `after` names any node.
    for (idx, after) in afters.into_iter().enumerate() {
        let Some((id, pos)) = after else { continue };
        match node_by_id.get(&id) {
            Some(&t) => out_nodes[idx].opts.after = Some(t),
            None => {
                let mut d =
                    crate::Diagnostic::error(file, pos, format!("`after`: no node has id `{id}`"));
                if let Some(h) =
                    crate::diag::did_you_mean(&id, node_by_id.keys().map(String::as_str))
                {
                    d = d.with_help(h);
                }
                f.diags.push(d);
            }
        }
    }

    // Explicit bindings, then INCOMING numbers.
    for (idx, (explicit, number)) in bindings.iter().enumerate() {
        if let Some((inst_id, pos)) = explicit {
            match inst_by_id.get(inst_id) {
                Some(&i) => out_nodes[idx].instance = i,
                None => {
                    let help =
                        crate::diag::did_you_mean(inst_id, inst_by_id.keys().map(String::as_str));
                    let mut d = crate::Diagnostic::error(
                        file,
                        *pos,
                        format!(
                            "node `{}` refers to instance `{inst_id}`, which does not exist",
                            out_nodes[idx].id
                        ),
                    );
                    if let Some(h) = help {
                        d = d.with_help(h);
                    }
                    f.diags.push(d);
                }
            }
        }
        if let Some((number, pos)) = number {
            match instances.iter().position(|i| &i.dn == number) {
                Some(i) if out_nodes[idx].instance == usize::MAX => out_nodes[idx].instance = i,
                Some(i) if out_nodes[idx].instance != i => f.warn(
                    *pos,
                    format!(
                        "INCOMING `number` {number} is the DN of `{}`, but the node is bound to `{}`; it runs on `{}`",
                        instances[i].label, instances[out_nodes[idx].instance].label, instances[out_nodes[idx].instance].label
                    ),
                ),
                Some(_) => {}
                None => {
                    let help =
                        crate::diag::did_you_mean(number, instances.iter().map(|i| i.dn.as_str()));
                    let mut d = crate::Diagnostic::error(
                        file,
                        *pos,
                        format!("INCOMING `number` {number} is the DN of no instance"),
                    );
                    if let Some(h) = help {
                        d = d.with_help(h);
                    }
                    f.diags.push(d);
                }
            }
        }
    }

    // Edges.
    for raw in raw_edges {
        let (Some(src), Some(dst)) = (f.string(raw, "source"), f.string(raw, "target")) else {
            f.error(raw.pos, "every edge needs a `source` and a `target`");
            continue;
        };
        if broken.contains(&src) || broken.contains(&dst) {
            continue;
        }
        let Some(&to) = node_by_id.get(&dst) else {
            if inst_by_id.contains_key(&dst) {
                f.error(raw.pos, format!("edge `{src}` -> `{dst}` ends at an instance; edges go from an instance to its first node"));
            } else {
                f.error(
                    raw.pos,
                    format!("edge `{src}` -> `{dst}`: no node has id `{dst}`"),
                );
            }
            continue;
        };
        let handle = f.string(raw, "sourceHandle").unwrap_or_default();
        let branch = raw
            .get("data")
            .and_then(|d| f.string(d, "branchType"))
            .unwrap_or_default();
        let failure = handle == "failure" || branch == "failure";
        if let Some(&i) = inst_by_id.get(&src) {
            instances[i].starts.push(to);
            if out_nodes[to].instance == usize::MAX {
                out_nodes[to].instance = i;
            }
            continue;
        }
        let Some(&from) = node_by_id.get(&src) else {
            f.warn(
                raw.pos,
                format!("edge `{src}` -> `{dst}`: no node has id `{src}`; the edge is ignored"),
            );
            continue;
        };
        let slot = if failure {
            &mut out_nodes[from].on_failure
        } else {
            &mut out_nodes[from].on_success
        };
        if let Some(prev) = slot.replace(to) {
            let kind = if failure { "failure" } else { "success" };
            f.diags.push(
                crate::Diagnostic::error(
                    file,
                    raw.pos,
                    format!(
                        "node `{src}` already has a {kind} edge (to `{}`); a node has at most one success and one failure edge",
                        out_nodes[prev].id
                    ),
                )
                .with_help("sipflow silently kept the last edge; remove the one you do not want"),
            );
        }
    }

    // A node with no explicit instance inherits the one of the node before it.
    let mut changed = true;
    while changed {
        changed = false;
        for i in 0..out_nodes.len() {
            let inst = out_nodes[i].instance;
            if inst == usize::MAX {
                continue;
            }
            for next in [out_nodes[i].on_success, out_nodes[i].on_failure]
                .into_iter()
                .flatten()
            {
                if out_nodes[next].instance == usize::MAX {
                    out_nodes[next].instance = inst;
                    changed = true;
                }
            }
        }
    }
    for n in &out_nodes {
        if n.instance == usize::MAX {
            f.diags.push(
                crate::Diagnostic::error(
                    file,
                    n.pos,
                    format!(
                        "node `{}` ({}) is bound to no instance",
                        n.id,
                        n.action.name()
                    ),
                )
                .with_help("set `sipInstanceId`, or connect it to an instance or to a node of one"),
            );
        }
    }
    if instances.is_empty() {
        f.error(root.pos, "the flow has no `sipInstance` node");
    }
    if f.diags.has_errors() {
        return None;
    }
    let name = std::path::Path::new(file).file_stem().map_or_else(
        || "scenario".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    );
    Some(Scenario {
        name,
        file: file.to_owned(),
        format: Format::SipflowJson,
        instances,
        nodes: out_nodes,
        sidecars: Vec::new(),
    })
}

fn instance(
    f: &mut Fields<'_>,
    id: &str,
    pos: Pos,
    data: &SNode,
    profiles: &Profiles,
) -> Option<Instance> {
    f.unknown_keys(data, INSTANCE_KEYS, "sipInstance data", false);
    let dn = f.string(data, "dn").unwrap_or_default();
    let label = f
        .string(data, "label")
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| {
            if dn.is_empty() {
                id.to_owned()
            } else {
                dn.clone()
            }
        });
    let mut register = f.bool(data, "register").unwrap_or(true);
    let profile = match f.string(data, "pbxProfile").filter(|p| !p.is_empty()) {
        Some(name) => {
            let ppos = data.get("pbxProfile").map_or(pos, |n| n.pos);
            Some(profiles.get(f, &name, ppos)?)
        }
        None => None,
    };
    let transport = sip_transport(f, data, "pbxTransport", pos);
    let port = match f.string(data, "pbxPort").filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(p) => Some(p),
            Err(_) => {
                let ppos = data.get("pbxPort").map_or(pos, |n| n.pos);
                f.error(ppos, format!("`pbxPort` `{p}` is not a port number"));
                None
            }
        },
    };
    let nonempty = |f: &mut Fields<'_>, key: &str| f.string(data, key).filter(|s| !s.is_empty());
    let pbx = PbxSettings {
        host: nonempty(f, "pbxHost"),
        port,
        transport,
        auth_user: nonempty(f, "authUser"),
        password_text: f.secret(data, "password"),
        realm: nonempty(f, "realm"),
        outbound_proxy: nonempty(f, "outboundProxy"),
    }
    .over(profile.as_ref());
    if register && pbx.is_none() {
        if data.get("register").is_some() {
            f.warn(pos, format!("instance `{label}` has `register: true` but no `pbxHost`; it runs locally without REGISTER"));
        }
        register = false;
    }
    let register_interval = f
        .millis(data, "registerIntervalSeconds")
        .map_or(Duration::from_secs(300), |(d, _)| {
            d.saturating_mul(1000).min(crate::spanned::MAX_DURATION)
        });
    let codecs = match data.get("codecs").map(|c| &c.value) {
        Some(Value::Seq(items)) => {
            let mut out = Vec::new();
            for item in items {
                match item.as_text().map(|c| c.to_ascii_uppercase()) {
                    Some(c) if media::sdp::Codec::from_name(&c).is_some() => {
                        out.push(c);
                    }
                    Some(other) => f.warn(
                        item.pos,
                        format!(
                            "codec `{other}` is not supported (PCMU, PCMA, G722, OPUS, L16); it is dropped"
                        ),
                    ),
                    None => f.warn(
                        item.pos,
                        "a codec is a name (PCMU, PCMA, G722, OPUS, L16); this one is dropped",
                    ),
                }
            }
            out
        }
        _ => vec!["PCMU".to_owned(), "PCMA".to_owned()],
    };
    let auto_ringing = f.bool(data, "autoRinging").unwrap_or(true);
    // callflow's `transport` (the UA's own, when there is no PBX to take it from).
    let own_transport = sip_transport(f, data, "transport", pos)
        .or(transport)
        .or(profile.as_ref().map(|p| p.transport))
        .unwrap_or_default();
    Some(Instance {
        id: id.to_owned(),
        label,
        dn,
        transport: own_transport,
        register,
        register_interval,
        pbx,
        display_name: f.string(data, "displayName").filter(|s| !s.is_empty()),
        codecs,
        auto_ringing,
        rel100: crate::native::rel100(f, data, "rel100"),
        min_se: f
            .millis(data, "minSeMs")
            .map_or(crate::model::DEFAULT_MIN_SE, |(d, _)| d),
        tls: crate::model::TlsSettings {
            ca: nonempty(f, "tlsCa"),
            cert: nonempty(f, "tlsCert"),
            key: nonempty(f, "tlsKey"),
            insecure: f.bool(data, "tlsInsecure").unwrap_or(false),
            sni: nonempty(f, "tlsSni"),
            pos,
        },
        ws: crate::model::WsSettings {
            path: nonempty(f, "wsPath"),
            origin: nonempty(f, "wsOrigin"),
        },
        srtp: crate::native::srtp(f, data, "srtp"),
        starts: Vec::new(),
        pos,
    })
}

/// A `UDP`/`TCP`/`TLS`/`WS`/`WSS` field (any case; empty, as sipflow writes an unset one, is
/// UDP); None when absent or wrong (an error).
fn sip_transport(f: &mut Fields<'_>, data: &SNode, key: &str, pos: Pos) -> Option<SipTransport> {
    let t = f.string(data, key)?;
    if t.is_empty() {
        return Some(SipTransport::Udp);
    }
    match t.parse::<SipTransport>() {
        Ok(t) => Some(t),
        Err(_) => {
            let tpos = data.get(key).map_or(pos, |n| n.pos);
            let names: Vec<&str> = SipTransport::ALL.iter().map(|t| t.via_token()).collect();
            f.error(
                tpos,
                format!(
                    "`{key}` is `{}`; callflow speaks {}",
                    t.to_ascii_uppercase(),
                    names.join(", ")
                ),
            );
            None
        }
    }
}

fn command(f: &mut Fields<'_>, data: &SNode) -> Option<Action> {
    let name = f.required_string(data, "command", "a command node")?;
    let s = |f: &mut Fields<'_>, k: &str| f.string(data, k).unwrap_or_default();
    Some(match name.as_str() {
        "MakeCall" => Action::MakeCall {
            target: s(f, "targetUri"),
        },
        "Answer" => Action::Answer,
        "Release" => Action::Release,
        "Hold" => Action::Hold,
        "Retrieve" => Action::Retrieve,
        "BlindTransfer" => Action::BlindTransfer {
            target_user: s(f, "targetUser"),
            target_host: s(f, "targetHost"),
        },
        "MuteTransfer" | "AttendedTransfer" => {
            let primary = f.string(data, "primaryCallId").filter(|p| !p.is_empty());
            let primary = primary.or_else(|| f.string(data, "callId").filter(|p| !p.is_empty()));
            Action::AttendedTransfer {
                primary_call_id: primary.unwrap_or_else(|| DEFAULT_CALL_ID.to_owned()),
                consult_call_id: s(f, "consultCallId"),
            }
        }
        "PlayAudio" => Action::PlayAudio {
            file: s(f, "filePath"),
        },
        "SendDTMF" => Action::SendDtmf {
            digits: s(f, "digits"),
            interval: f.millis(data, "intervalMs").map_or_else(
                || crate::schema::default_duration("SendDTMF", "interval"),
                |(d, _)| d,
            ),
        },
        other => match crate::options::extra_command(f, data, other, Style::Camel) {
            Some(a) => a,
            None => {
                unknown_name(
                    f,
                    data,
                    "command",
                    other,
                    &crate::schema::names(Kind::Command),
                );
                return None;
            }
        },
    })
}

fn event(f: &mut Fields<'_>, data: &SNode) -> Option<Action> {
    let name = f.required_string(data, "event", "an event node")?;
    Some(match name.as_str() {
        "INCOMING" => Action::Incoming {
            number: f.string(data, "number").filter(|n| !n.is_empty()),
        },
        "RINGING" => Action::Ringing,
        "DISCONNECTED" => Action::Disconnected,
        "TIMEOUT" => Action::Delay,
        "DTMFReceived" => Action::DtmfReceived {
            expected: f.string(data, "expectedDigit").filter(|d| !d.is_empty()),
        },
        "HELD" => Action::Held,
        "RETRIEVED" => Action::Retrieved,
        "TRANSFERRED" => Action::Transferred,
        other => match crate::options::extra_event(f, data, other) {
            Some(a) => a,
            None => {
                unknown_name(f, data, "event", other, &crate::schema::names(Kind::Event));
                return None;
            }
        },
    })
}

pub(crate) fn unknown_name(f: &mut Fields<'_>, data: &SNode, key: &str, got: &str, known: &[&str]) {
    let pos = data.get(key).map_or(data.pos, |n| n.pos);
    let help = crate::diag::did_you_mean(got, known.iter().copied())
        .unwrap_or_else(|| format!("known {key}s: {}", known.join(", ")));
    f.diags.push(
        crate::Diagnostic::error(f.file, pos, format!("unknown {key} `{got}`")).with_help(help),
    );
}
