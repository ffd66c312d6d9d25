//! Writing a [`Scenario`] back out: as the native YAML (what the editor's text view shows and what
//! it saves) and as a sipflow flow (what the graph editor edits), each reading back into the same
//! scenario. Only what differs from the defaults is written.

use crate::model::{
    Action, Check, DEFAULT_CALL_ID, DEFAULT_TIMEOUT, HeaderTest, Node, Pbx, Scenario, SipTransport,
    Until,
};
use crate::options::{Style, key};
use crate::profiles::Profiles;
use crate::schema;
use saphyr::{Mapping, Scalar, Yaml, YamlEmitter};
use serde_json::{Value as Json, json};
use std::borrow::Cow;
use std::time::Duration;

/// One field of a node, before it is spelled for a format.
enum F {
    Str(String),
    Int(i64),
    Num(f64),
    Bool(bool),
    /// YAML: `500ms`; JSON: milliseconds under the camelCase key.
    Dur(Duration),
    Codes(Vec<u16>),
    Headers(Vec<(String, String)>),
    Checks(Vec<Check>),
}

/// The sipflow spelling of a native key.
fn camel(snake: &'static str) -> &'static str {
    key(Style::Camel, snake)
}

/// The fields of a node beyond its name, id and links, in the order a person writes them.
fn node_fields(s: &Scenario, n: &Node) -> Vec<(&'static str, F)> {
    let mut out: Vec<(&'static str, F)> = Vec::new();
    let mut put = |k, v| out.push((k, v));
    let text = |v: &str| F::Str(v.to_owned());
    if n.label != n.action.name() {
        put("label", text(&n.label));
    }
    if n.call_id != DEFAULT_CALL_ID && !matches!(n.action, Action::AttendedTransfer { .. }) {
        put("call_id", text(&n.call_id));
    }
    match &n.action {
        Action::MakeCall { target } => put("target", text(target)),
        Action::BlindTransfer {
            target_user,
            target_host,
        } => {
            put("target_user", text(target_user));
            if !target_host.is_empty() {
                put("target_host", text(target_host));
            }
        }
        Action::AttendedTransfer {
            primary_call_id,
            consult_call_id,
        } => {
            put("primary_call_id", text(primary_call_id));
            put("consult_call_id", text(consult_call_id));
        }
        Action::PlayAudio { file } | Action::Record { file } => put("file", text(file)),
        Action::SendDtmf { digits, interval } => {
            put("digits", text(digits));
            if *interval != schema::default_duration("SendDTMF", "interval") {
                put("interval", F::Dur(*interval));
            }
        }
        Action::Reject { code, reason } => {
            if i64::from(*code) != schema::default_int("Reject", "code") {
                put("code", F::Int(i64::from(*code)));
            }
            if let Some(r) = reason {
                put("reason", text(r));
            }
        }
        Action::SendRequest {
            content_type,
            body,
            target,
            ..
        } => {
            if let Some(t) = target {
                put("target", text(t));
            }
            if let Some(c) = content_type {
                put("content_type", text(c));
            }
            if let Some(b) = body {
                put("body", text(b));
            }
        }
        Action::Subscribe {
            target,
            event,
            expires,
        } => {
            put("target", text(target));
            put("package", text(event));
            if *expires != schema::default_duration("Subscribe", "expires") {
                put("expires", F::Dur(*expires));
            }
        }
        Action::PlaySignature { duration }
            if *duration != schema::default_duration("PlaySignature", "duration") =>
        {
            put("duration", F::Dur(*duration));
        }
        Action::CheckMedia {
            max_loss_percent,
            max_jitter_ms,
            min_mos,
        } => {
            if let Some(l) = max_loss_percent {
                put("max_loss", F::Num(*l));
            }
            if let Some(j) = max_jitter_ms {
                put("max_jitter", F::Num(*j));
            }
            if let Some(m) = min_mos {
                put("min_mos", F::Num(*m));
            }
        }
        Action::Incoming { number: Some(num) } => put("number", text(num)),
        Action::DtmfReceived { expected: Some(e) } => put("expected", text(e)),
        Action::RequestReceived { method: Some(m) } => put("method", text(m)),
        Action::Heard { from } => put("from", text(from)),
        Action::Tone { frequency, absent } => {
            put("frequency", F::Num(*frequency));
            if *absent {
                put("absent", F::Bool(true));
            }
        }
        _ => {}
    }
    let o = &n.opts;
    if !o.expect.is_empty() {
        put("expect", F::Codes(o.expect.clone()));
    }
    match o.until {
        Until::Answer => {}
        Until::Ringing => put("until", text("ringing")),
        Until::Sent => put("until", text("sent")),
    }
    if o.late_offer {
        put("offer", text("late"));
    }
    if let Some(d) = o.session_expires {
        put("session_expires", F::Dur(d));
    }
    if let Some(r) = o.redirects {
        put("redirects", F::Int(i64::from(r)));
    }
    if !o.headers.is_empty() {
        put("headers", F::Headers(o.headers.clone()));
    }
    if let Some(d) = &o.display_name {
        put("display_name", text(d));
    }
    if let Some(u) = &o.from_user {
        put("from_user", text(u));
    }
    if let Some(d) = o.delay {
        put("delay", F::Dur(d));
    }
    if !o.checks.is_empty() {
        put("check", F::Checks(o.checks.clone()));
    }
    if let Some(a) = o.after {
        put("after", text(&s.nodes[a].id));
    }
    if o.looped {
        put("loop", F::Bool(true));
    }
    if o.dtmf_info {
        put("via", text("info"));
    }
    if let Some(p) = &o.pattern {
        put("matches", text(p));
    }
    if n.timeout != DEFAULT_TIMEOUT {
        put("timeout", F::Dur(n.timeout));
    }
    out
}

fn ystr(s: &str) -> Yaml<'static> {
    Yaml::Value(Scalar::String(Cow::Owned(s.to_owned())))
}

fn ymap(entries: Vec<(&str, Yaml<'static>)>) -> Yaml<'static> {
    let mut m = Mapping::new();
    for (k, v) in entries {
        m.insert(ystr(k), v);
    }
    Yaml::Mapping(m)
}

fn yaml_field(key: &'static str, v: F) -> Yaml<'static> {
    match v {
        F::Str(s) => ystr(&s),
        F::Int(i) => Yaml::Value(Scalar::Integer(i)),
        // `max_jitter` is a duration in YAML, a number of milliseconds in JSON.
        F::Num(x) if key == "max_jitter" => {
            ystr(&humantime::format_duration(Duration::from_secs_f64(x / 1000.0)).to_string())
        }
        F::Num(x) => Yaml::Value(Scalar::parse_from_cow(Cow::Owned(x.to_string()))),
        F::Bool(b) => Yaml::Value(Scalar::Boolean(b)),
        F::Dur(d) => ystr(&humantime::format_duration(d).to_string()),
        F::Codes(c) => Yaml::Sequence(
            c.into_iter()
                .map(|c| Yaml::Value(Scalar::Integer(i64::from(c))))
                .collect(),
        ),
        F::Headers(h) => {
            let mut m = Mapping::new();
            for (k, v) in h {
                m.insert(ystr(&k), ystr(&v));
            }
            Yaml::Mapping(m)
        }
        F::Checks(checks) => Yaml::Sequence(
            checks
                .into_iter()
                .map(|c| {
                    let (k, v) = check_fields(&c, Style::Snake);
                    ymap(
                        k.into_iter()
                            .zip(v)
                            .map(|(k, v)| {
                                (
                                    k,
                                    match v {
                                        Json::Bool(b) => Yaml::Value(Scalar::Boolean(b)),
                                        other => ystr(other.as_str().unwrap_or_default()),
                                    },
                                )
                            })
                            .collect(),
                    )
                })
                .collect(),
        ),
    }
}

fn json_field(key: &'static str, v: F) -> (&'static str, Json) {
    let k = camel(key);
    let v = match v {
        F::Str(s) => json!(s),
        F::Int(i) => json!(i),
        F::Num(x) => json!(x),
        F::Bool(b) => json!(b),
        F::Dur(d) => json!(d.as_millis() as u64),
        F::Codes(c) => json!(c),
        // A list of one-header objects: a JSON object would lose the order.
        F::Headers(h) => Json::Array(
            h.into_iter()
                .map(|(k, v)| Json::Object([(k, json!(v))].into_iter().collect()))
                .collect(),
        ),
        F::Checks(checks) => Json::Array(
            checks
                .iter()
                .map(|c| {
                    let (k, v) = check_fields(c, Style::Camel);
                    Json::Object(k.into_iter().map(str::to_owned).zip(v).collect())
                })
                .collect(),
        ),
    };
    (k, v)
}

fn check_fields(c: &Check, style: Style) -> (Vec<&'static str>, Vec<Json>) {
    match c {
        Check::Header { name, test } => {
            let (k, v) = match test {
                HeaderTest::Exists(e) => ("exists", json!(e)),
                HeaderTest::Equals(v) => ("equals", json!(v)),
                HeaderTest::Matches(r) => ("matches", json!(r)),
            };
            (vec!["header", k], vec![json!(name), v])
        }
        Check::SdpCodec(c) => (vec![key(style, "sdp_codec")], vec![json!(c)]),
        Check::SdpDirection(d) => (vec![key(style, "sdp_direction")], vec![json!(d)]),
    }
}

/// The PBX settings an instance writes: the profile's name and what differs from the profile.
fn pbx_fields(pbx: &Pbx, profiles: &Profiles) -> (Option<String>, Vec<(&'static str, F)>) {
    let base = pbx
        .profile
        .as_ref()
        .and_then(|p| profiles.profiles.get(p).map(|b| (p.clone(), b)));
    let mut out = Vec::new();
    let differs = |get: fn(&Pbx) -> Option<String>| match &base {
        Some((_, b)) => get(pbx) != get(b),
        None => get(pbx).is_some(),
    };
    if differs(|p| Some(p.host.clone())) {
        out.push(("host", F::Str(pbx.host.clone())));
    }
    if differs(|p| p.port.map(|p| p.to_string())) {
        out.extend(pbx.port.map(|p| ("port", F::Int(i64::from(p)))));
    }
    if differs(|p| Some(p.transport.as_str().to_owned()).filter(|t| t != "udp")) {
        out.push(("transport", F::Str(pbx.transport.as_str().to_owned())));
    }
    for (key, get) in [
        (
            "auth_user",
            (|p: &Pbx| p.auth_user.clone()) as fn(&Pbx) -> Option<String>,
        ),
        ("password", |p: &Pbx| p.password_text.clone()),
        ("realm", |p: &Pbx| p.realm.clone()),
        ("outbound_proxy", |p: &Pbx| p.outbound_proxy.clone()),
    ] {
        if differs(get) {
            out.extend(get(pbx).map(|v| (key, F::Str(v))));
        }
    }
    (base.map(|(name, _)| name), out)
}

/// Where a node goes when an instance's chains are written out.
struct Placed {
    node: usize,
    /// 0 for a chain of its own, one more for each failure branch it is down.
    column: usize,
    /// From 1 (row 0 is the instance).
    row: usize,
}

/// The nodes of instance `i`, chain by chain: its start chain first, each failure branch after
/// the chain it leaves (one column right, one row down from its node), then the chains nothing
/// reaches. Each node once, in the order the native format lists them.
fn chains(s: &Scenario, i: usize) -> Vec<Placed> {
    let mut out = Vec::new();
    let mut placed = vec![false; s.nodes.len()];
    let roots = s.instances[i].starts.iter().copied();
    let mut queue: Vec<(usize, Option<(usize, usize)>)> = roots
        .chain((0..s.nodes.len()).filter(|&n| s.nodes[n].instance == i))
        .map(|n| (n, None))
        .collect();
    let mut next_row = 1;
    let mut qi = 0;
    while qi < queue.len() {
        let (first, at) = queue[qi];
        qi += 1;
        let (column, mut row) = at.unwrap_or((0, next_row));
        let mut branches = 0;
        let mut n = Some(first);
        while let Some(cur) = n.filter(|&c| !placed[c] && s.nodes[c].instance == i) {
            placed[cur] = true;
            out.push(Placed {
                node: cur,
                column,
                row,
            });
            if let Some(f) = s.nodes[cur].on_failure {
                queue.insert(qi + branches, (f, Some((column + 1, row + 1))));
                branches += 1;
            }
            row += 1;
            n = s.nodes[cur].on_success;
        }
        next_row = next_row.max(row);
    }
    out
}

/// Why a scenario cannot be written in the native format.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(
        "instance `{0}` has {1} chains; the native format has one per instance (link them, or keep the file as sipflow JSON)"
    )]
    ManyChains(String, usize),
    #[error("cannot write YAML: {0}")]
    Emit(String),
}

/// The scenario as native YAML (see `docs/scenario-format.md`). `profiles` are the ones its
/// instances name, so only what an instance changes is written next to the profile's name.
pub fn to_native(s: &Scenario, profiles: &Profiles) -> Result<String, WriteError> {
    let mut order: Vec<Vec<usize>> = Vec::new();
    for (i, inst) in s.instances.iter().enumerate() {
        if inst.starts.len() > 1 {
            return Err(WriteError::ManyChains(inst.id.clone(), inst.starts.len()));
        }
        order.push(chains(s, i).into_iter().map(|p| p.node).collect());
    }
    // Which nodes are named by a link that is not "the next step in the list".
    let mut referenced = vec![false; s.nodes.len()];
    for list in &order {
        for (k, &n) in list.iter().enumerate() {
            let node = &s.nodes[n];
            if let Some(t) = node.on_success
                && list.get(k + 1) != Some(&t)
            {
                referenced[t] = true;
            }
            if let Some(t) = node.on_failure {
                referenced[t] = true;
            }
            if let Some(a) = node.opts.after {
                referenced[a] = true;
            }
        }
    }

    let mut top: Vec<(&str, Yaml<'static>)> = vec![("name", ystr(&s.name))];
    let mut insts = Mapping::new();
    for (i, inst) in s.instances.iter().enumerate() {
        let mut body: Vec<(&str, Yaml<'static>)> = vec![("dn", ystr(&inst.dn))];
        if inst.label != inst.id {
            body.push(("label", ystr(&inst.label)));
        }
        if inst.transport != SipTransport::Udp {
            body.push(("transport", ystr(inst.transport.as_str())));
        }
        if let Some(pbx) = &inst.pbx {
            let (profile, fields) = pbx_fields(pbx, profiles);
            let fields: Vec<(&str, Yaml<'static>)> = fields
                .into_iter()
                .filter(|(k, _)| *k != "transport" || inst.transport != pbx.transport)
                .map(|(k, v)| (k, yaml_field(k, v)))
                .collect();
            body.push((
                "pbx",
                match (profile, fields.is_empty()) {
                    (Some(p), true) => ystr(&p),
                    (Some(p), false) => {
                        let mut all = vec![("profile", ystr(&p))];
                        all.extend(fields);
                        ymap(all)
                    }
                    (None, _) => ymap(fields),
                },
            ));
        }
        if inst.register != inst.pbx.is_some() {
            body.push(("register", Yaml::Value(Scalar::Boolean(inst.register))));
        }
        if inst.register_interval != Duration::from_secs(300) {
            body.push((
                "register_interval",
                ystr(&humantime::format_duration(inst.register_interval).to_string()),
            ));
        }
        if inst.codecs != ["PCMU", "PCMA"] {
            body.push((
                "codecs",
                Yaml::Sequence(inst.codecs.iter().map(|c| ystr(c)).collect()),
            ));
        }
        if !inst.auto_ringing {
            body.push(("auto_ringing", Yaml::Value(Scalar::Boolean(false))));
        }
        if inst.rel100 != crate::model::Rel100::default() {
            body.push(("100rel", ystr(inst.rel100.as_str())));
        }
        if inst.min_se != crate::model::DEFAULT_MIN_SE {
            body.push((
                "min_se",
                ystr(&humantime::format_duration(inst.min_se).to_string()),
            ));
        }
        if let Some(d) = &inst.display_name {
            body.push(("display_name", ystr(d)));
        }
        if !inst.tls.is_default() {
            let t = &inst.tls;
            let mut tls: Vec<(&str, Yaml<'static>)> = Vec::new();
            for (k, v) in [("ca", &t.ca), ("cert", &t.cert), ("key", &t.key)] {
                if let Some(v) = v {
                    tls.push((k, ystr(v)));
                }
            }
            if t.insecure {
                tls.push(("insecure", Yaml::Value(Scalar::Boolean(true))));
            }
            if let Some(sni) = &t.sni {
                tls.push(("sni", ystr(sni)));
            }
            body.push(("tls", ymap(tls)));
        }
        if inst.srtp != media::srtp::SrtpMode::Off {
            body.push(("srtp", ystr(inst.srtp.as_str())));
        }
        if inst.ws != crate::model::WsSettings::default() {
            let mut ws: Vec<(&str, Yaml<'static>)> = Vec::new();
            for (k, v) in [("path", &inst.ws.path), ("origin", &inst.ws.origin)] {
                if let Some(v) = v {
                    ws.push((k, ystr(v)));
                }
            }
            body.push(("ws", ymap(ws)));
        }
        let list = &order[i];
        let steps: Vec<Yaml<'static>> = list
            .iter()
            .enumerate()
            .map(|(k, &n)| {
                let node = &s.nodes[n];
                let kind = if node.action.is_event() {
                    "event"
                } else {
                    "command"
                };
                let mut step = vec![(kind, ystr(node.action.name()))];
                if referenced[n] {
                    step.push(("id", ystr(&node.id)));
                }
                step.extend(
                    node_fields(s, node)
                        .into_iter()
                        .map(|(k, v)| (k, yaml_field(k, v))),
                );
                match node.on_success {
                    Some(t) if list.get(k + 1) == Some(&t) => {}
                    Some(t) => step.push(("next", ystr(&s.nodes[t].id))),
                    None if k + 1 < list.len() => step.push(("next", ystr("end"))),
                    None => {}
                }
                if let Some(t) = node.on_failure {
                    step.push(("on_failure", ystr(&s.nodes[t].id)));
                }
                ymap(step)
            })
            .collect();
        if !steps.is_empty() {
            body.push(("steps", Yaml::Sequence(steps)));
        }
        insts.insert(ystr(&inst.id), ymap(body));
    }
    top.push(("instances", Yaml::Mapping(insts)));
    if !s.sidecars.is_empty() {
        top.push(("sidecars", sidecars(s)));
    }
    let mut out = String::new();
    YamlEmitter::new(&mut out)
        .dump(&ymap(top))
        .map_err(|e| WriteError::Emit(e.to_string()))?;
    let body = out.strip_prefix("---\n").unwrap_or(&out);
    Ok(format!("{body}\n"))
}

fn sidecars(s: &Scenario) -> Yaml<'static> {
    use crate::model::Health;
    Yaml::Sequence(
        s.sidecars
            .iter()
            .map(|c| {
                let mut m = vec![
                    ("name", ystr(&c.name)),
                    (
                        "command",
                        Yaml::Sequence(c.command.iter().map(|a| ystr(a)).collect()),
                    ),
                ];
                match &c.health {
                    Health::None => {}
                    Health::Options(a) => {
                        m.push(("health", ymap(vec![("options", ystr(&a.to_string()))])))
                    }
                    Health::Tcp(a) => m.push(("health", ymap(vec![("tcp", ystr(&a.to_string()))]))),
                    Health::Log(t) => m.push(("health", ymap(vec![("log", ystr(t))]))),
                }
                if c.timeout != Duration::from_secs(10) {
                    m.push((
                        "timeout",
                        ystr(&humantime::format_duration(c.timeout).to_string()),
                    ));
                }
                ymap(m)
            })
            .collect(),
    )
}

/// The scenario as a sipflow flow (`{nodes, edges}`), laid out for the graph editor: one column
/// per instance, a chain going down, failure branches to the right. Sidecars are not part of a
/// flow.
pub fn to_flow(s: &Scenario, profiles: &Profiles) -> Json {
    const COL: f64 = 420.0;
    const SUB: f64 = 190.0;
    const ROW: f64 = 110.0;
    let mut pos: Vec<Option<(f64, f64)>> = vec![None; s.nodes.len()];
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    for (i, inst) in s.instances.iter().enumerate() {
        let x0 = i as f64 * COL;
        let mut data = serde_json::Map::new();
        data.insert("label".into(), json!(inst.label));
        data.insert("dn".into(), json!(inst.dn));
        data.insert("register".into(), json!(inst.register));
        data.insert(
            "transport".into(),
            json!(inst.transport.as_str().to_uppercase()),
        );
        if let Some(pbx) = &inst.pbx {
            let (profile, fields) = pbx_fields(pbx, profiles);
            if let Some(p) = profile {
                data.insert("pbxProfile".into(), json!(p));
            }
            for (k, v) in fields {
                let key = match k {
                    "host" => "pbxHost",
                    "port" => "pbxPort",
                    "transport" => "pbxTransport",
                    "auth_user" => "authUser",
                    "outbound_proxy" => "outboundProxy",
                    other => other,
                };
                let v = match v {
                    F::Str(s) if k == "transport" => json!(s.to_uppercase()),
                    F::Str(s) => json!(s),
                    F::Int(p) => json!(p.to_string()),
                    _ => Json::Null,
                };
                data.insert(key.into(), v);
            }
        }
        if inst.register_interval != Duration::from_secs(300) {
            data.insert(
                "registerIntervalSeconds".into(),
                json!(inst.register_interval.as_secs()),
            );
        }
        data.insert("codecs".into(), json!(inst.codecs));
        if !inst.auto_ringing {
            data.insert("autoRinging".into(), json!(false));
        }
        if inst.rel100 != crate::model::Rel100::default() {
            data.insert("rel100".into(), json!(inst.rel100.as_str()));
        }
        if inst.min_se != crate::model::DEFAULT_MIN_SE {
            data.insert("minSeMs".into(), json!(inst.min_se.as_millis() as u64));
        }
        if let Some(d) = &inst.display_name {
            data.insert("displayName".into(), json!(d));
        }
        let t = &inst.tls;
        for (k, v) in [
            ("tlsCa", &t.ca),
            ("tlsCert", &t.cert),
            ("tlsKey", &t.key),
            ("tlsSni", &t.sni),
        ] {
            if let Some(v) = v {
                data.insert(k.into(), json!(v));
            }
        }
        if t.insecure {
            data.insert("tlsInsecure".into(), json!(true));
        }
        if inst.srtp != media::srtp::SrtpMode::Off {
            data.insert("srtp".into(), json!(inst.srtp.as_str()));
        }
        for (k, v) in [("wsPath", &inst.ws.path), ("wsOrigin", &inst.ws.origin)] {
            if let Some(v) = v {
                data.insert(k.into(), json!(v));
            }
        }
        nodes.push(json!({
            "id": inst.id, "type": "sipInstance", "position": {"x": x0, "y": 0.0}, "data": data,
        }));
        for p in chains(s, i) {
            pos[p.node] = Some((x0 + p.column as f64 * SUB, p.row as f64 * ROW));
        }
        for &st in &inst.starts {
            edges.push(json!({
                "id": format!("e-{}-{}", inst.id, s.nodes[st].id),
                "source": inst.id, "target": s.nodes[st].id,
                "sourceHandle": "success", "data": {"branchType": "success"},
            }));
        }
    }
    for (k, n) in s.nodes.iter().enumerate() {
        let kind = if n.action.is_event() {
            "event"
        } else {
            "command"
        };
        let mut data = serde_json::Map::new();
        data.insert(kind.into(), json!(n.action.name()));
        data.insert("label".into(), json!(n.label));
        data.insert("sipInstanceId".into(), json!(s.instances[n.instance].id));
        data.insert("callId".into(), json!(n.call_id));
        data.insert("timeout".into(), json!(n.timeout.as_millis() as u64));
        for (key, v) in node_fields(s, n) {
            if key == "label" || key == "call_id" || key == "timeout" {
                continue;
            }
            let (k, v) = json_field(key, v);
            data.insert(k.into(), v);
        }
        let (x, y) = pos[k].unwrap_or((0.0, 0.0));
        nodes.push(json!({
            "id": n.id, "type": kind, "position": {"x": x, "y": y}, "data": data,
        }));
        for (target, branch) in [(n.on_success, "success"), (n.on_failure, "failure")] {
            if let Some(t) = target {
                edges.push(json!({
                    "id": format!("e-{}-{branch}", n.id),
                    "source": n.id, "target": s.nodes[t].id,
                    "sourceHandle": branch, "data": {"branchType": branch},
                }));
            }
        }
    }
    json!({ "nodes": nodes, "edges": edges })
}

impl Profiles {
    /// The profiles as the YAML of [`crate::PROFILES_FILE`] (passwords as written).
    pub fn to_yaml(&self) -> Result<String, WriteError> {
        let mut all = Mapping::new();
        for (name, pbx) in &self.profiles {
            let mut plain = pbx.clone();
            plain.profile = None;
            let (_, fields) = pbx_fields(&plain, &Self::default());
            all.insert(
                ystr(name),
                ymap(
                    fields
                        .into_iter()
                        .map(|(k, v)| (k, yaml_field(k, v)))
                        .collect(),
                ),
            );
        }
        let mut out = String::new();
        YamlEmitter::new(&mut out)
            .dump(&ymap(vec![("profiles", Yaml::Mapping(all))]))
            .map_err(|e| WriteError::Emit(e.to_string()))?;
        let body = out.strip_prefix("---\n").unwrap_or(&out);
        Ok(format!("{body}\n"))
    }
}
