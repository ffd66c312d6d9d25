//! Checks on the model that hold whatever the format: names resolve, the graph is acyclic,
//! required fields are there, and nothing is asked that this engine cannot do.

use crate::diag::{Diagnostic, Diagnostics, did_you_mean};
use crate::model::{Action, Scenario};
use std::collections::HashMap;

pub(crate) fn validate(s: &Scenario, diags: &mut Diagnostics) {
    let file = s.file.as_str();
    let mut dns: HashMap<&str, &str> = HashMap::new();
    for inst in &s.instances {
        if inst.min_se < crate::model::DEFAULT_MIN_SE {
            diags.push(Diagnostic::warning(
                file,
                inst.pos,
                format!(
                    "instance `{}`: `min_se` of {} s is below the 90 s RFC 4028 §4 allows; use it only against a test peer",
                    inst.label,
                    inst.min_se.as_secs()
                ),
            ));
        }
        if inst.min_se < std::time::Duration::from_secs(1) {
            diags.push(Diagnostic::error(
                file,
                inst.pos,
                format!("instance `{}`: `min_se` is at least 1 s", inst.label),
            ));
        }
        tls(s, inst, diags);
        if inst.dn.trim().is_empty() {
            diags.push(Diagnostic::error(
                file,
                inst.pos,
                format!("instance `{}` has no `dn`", inst.label),
            ));
        } else if let Some(first) = dns.insert(&inst.dn, &inst.label) {
            diags.push(Diagnostic::error(
                file,
                inst.pos,
                format!(
                    "duplicate DN {}: instances `{first}` and `{}` both use it",
                    inst.dn, inst.label
                ),
            ));
        }
    }

    for n in &s.nodes {
        let inst = &s.instances[n.instance];
        let err = |msg: String| {
            Diagnostic::error(
                file,
                n.pos,
                format!("node `{}` ({}): {msg}", n.id, n.action.name()),
            )
        };
        if n.opts
            .session_expires
            .is_some_and(|d| d < std::time::Duration::from_secs(1))
        {
            diags.push(err("`session_expires` is at least 1 s".into()));
        }
        match &n.action {
            Action::MakeCall { target } => {
                let t = target.trim();
                if t.is_empty() {
                    diags.push(err(
                        "needs a target: another instance's DN or a sip: URI".into()
                    ));
                } else if is_uri(t) {
                    // A full URI goes where it says.
                } else if !dns.contains_key(t) && inst.pbx.is_none() {
                    // Through a PBX a DN may be any extension there.
                    // (Without one it must be an instance of this scenario.)
                    let candidates = s
                        .instances
                        .iter()
                        .flat_map(|i| [i.dn.as_str(), i.id.as_str()]);
                    let mut d = err(format!(
                        "target `{t}` is the DN of no instance and not a sip: URI"
                    ));
                    d = d.with_help(did_you_mean(t, candidates).unwrap_or_else(|| {
                        format!(
                            "DNs in this scenario: {}",
                            s.instances
                                .iter()
                                .map(|i| i.dn.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }));
                    diags.push(d);
                } else if t == inst.dn {
                    diags.push(err(format!("`{}` calls its own DN {t}", inst.label)));
                }
            }
            Action::Subscribe { target, event, .. } => {
                if target.trim().is_empty() {
                    diags.push(err(
                        "needs a target: another instance's DN, a DN at the PBX, or a sip: URI"
                            .into(),
                    ));
                }
                if event.trim().is_empty() {
                    diags.push(err(
                        "needs the event package to subscribe to (`package: message-summary`, `dialog`, `presence`)".into(),
                    ));
                }
            }
            Action::SendRequest { method, target, .. }
                if method == "NOTIFY" && target.is_none() =>
            {
                diags.push(err(
                    "a NOTIFY needs a `target`: callflow sends it outside any dialog (an unsolicited NOTIFY, such as message-waiting)".into(),
                ));
            }
            Action::BlindTransfer { target_user, .. } if target_user.trim().is_empty() => {
                diags.push(err("needs a transfer target (`targetUser`)".into()));
            }
            Action::AttendedTransfer {
                consult_call_id, ..
            } if consult_call_id.trim().is_empty() => {
                diags.push(err(
                    "needs the consultation call id (`consultCallId`)".into()
                ));
            }
            Action::PlayAudio { file: f } if !f.trim().is_empty() => {
                let path = crate::resolve_path(&s.file, f);
                if let Err(e) = media::wav::check(&path) {
                    diags.push(err(e.to_string()));
                }
            }
            Action::Record { file: f } if f.trim().is_empty() => {
                diags.push(err("needs a `file` to write".into()))
            }
            Action::Heard { from }
                if s.instances
                    .iter()
                    .all(|i| &i.id != from && &i.label != from && &i.dn != from) =>
            {
                let mut d = err(format!("`from: {from}` names no instance"));
                if let Some(h) = did_you_mean(from, s.instances.iter().map(|i| i.id.as_str())) {
                    d = d.with_help(h);
                }
                diags.push(d);
            }
            Action::Tone { frequency, .. } if !(50.0..=3900.0).contains(frequency) => {
                diags.push(err(format!(
                    "`frequency` must be between 50 and 3900 Hz (8 kHz audio), got {frequency}"
                )));
            }
            Action::DtmfReceived { expected: Some(e) }
                if e.chars().any(|c| media::dtmf::event_of(c).is_none()) =>
            {
                diags.push(err(format!(
                    "`{e}` is not a DTMF digit string (0-9, *, #, A-D)"
                )));
            }
            Action::PlayAudio { file: f } if f.trim().is_empty() => {
                diags.push(err("needs a WAV file (`filePath`)".into()))
            }
            Action::SendDtmf { digits, .. } => {
                if digits.is_empty() {
                    diags.push(err("needs `digits`".into()));
                } else if let Some(c) = digits
                    .chars()
                    .find(|c| !matches!(c, '0'..='9' | '*' | '#' | 'A'..='D' | 'a'..='d'))
                {
                    diags.push(err(format!("`{c}` is not a DTMF digit (0-9, *, #, A-D)")));
                }
            }
            _ => {}
        }
        if !n.action.is_supported() {
            diags.push(
                err("is not supported by this version of callflow yet".into()).with_help(
                    "media nodes (PlayAudio, SendDTMF, DTMFReceived) arrive with the media work",
                ),
            );
        }
    }

    options(s, diags);

    // Cycles: a node must never lead back to itself, through success, failure or `after`
    // edges (a node that waits for a node that waits for it could never run).
    let mut waiters: Vec<Vec<usize>> = vec![Vec::new(); s.nodes.len()];
    for (i, n) in s.nodes.iter().enumerate() {
        if let Some(t) = n.opts.after {
            waiters[t].push(i);
        }
    }
    let mut color = vec![0u8; s.nodes.len()]; // 0 new, 1 on stack, 2 done
    for start in 0..s.nodes.len() {
        if color[start] != 0 {
            continue;
        }
        let mut stack = vec![(start, 0usize)];
        color[start] = 1;
        while let Some((n, edge)) = stack.last().copied() {
            let nexts: Vec<Option<usize>> = [s.nodes[n].on_success, s.nodes[n].on_failure]
                .into_iter()
                .chain(waiters[n].iter().map(|w| Some(*w)))
                .collect();
            if edge >= nexts.len() {
                color[n] = 2;
                stack.pop();
                continue;
            }
            stack.last_mut().expect("non-empty").1 += 1;
            let Some(next) = nexts[edge] else { continue };
            match color[next] {
                0 => {
                    color[next] = 1;
                    stack.push((next, 0));
                }
                1 => {
                    let path: Vec<&str> = stack
                        .iter()
                        .skip_while(|(m, _)| *m != next)
                        .map(|(m, _)| s.nodes[*m].id.as_str())
                        .chain([s.nodes[next].id.as_str()])
                        .collect();
                    diags.push(Diagnostic::error(
                        file,
                        s.nodes[n].pos,
                        format!("cycle: {} (through success, failure and `after` edges): it could never finish", path.join(" -> ")),
                    ));
                }
                _ => {}
            }
        }
    }

    let reachable = s.reachable();
    for n in &s.nodes {
        if let Some(t) = n.opts.after
            && !reachable[t]
        {
            diags.push(Diagnostic::error(
                file,
                n.pos,
                format!(
                    "node `{}` waits (`after`) for `{}`, which no instance reaches: it could never run",
                    n.id, s.nodes[t].id
                ),
            ));
        }
    }
    for (n, r) in s.nodes.iter().zip(reachable) {
        if !r {
            diags.push(Diagnostic::warning(
                file,
                n.pos,
                format!(
                    "node `{}` ({}) is reached from no instance and never runs",
                    n.id,
                    n.action.name()
                ),
            ));
        }
    }
    rebinding(s, diags);
    unbound_requests(s, diags);
    diags.sort();
}

/// A request in a call (SendInfo, SendMessage, SendOptions, SendUpdate without a `target`) whose
/// call id no MakeCall or INCOMING of its instance ever binds could only fail at run time.
fn unbound_requests(s: &Scenario, diags: &mut Diagnostics) {
    for n in &s.nodes {
        let Action::SendRequest {
            method,
            target: None,
            ..
        } = &n.action
        else {
            continue;
        };
        let bound = s.nodes.iter().any(|b| {
            b.instance == n.instance
                && b.call_id == n.call_id
                && matches!(b.action, Action::MakeCall { .. } | Action::Incoming { .. })
        });
        if !bound {
            let help = if method == "UPDATE" {
                "an UPDATE belongs to a call: bind it with MakeCall or INCOMING first"
            } else {
                "give it a `target` (a DN or a sip: URI) to send it outside any call"
            };
            diags.push(
                Diagnostic::error(
                    &s.file,
                    n.pos,
                    format!(
                        "node `{}` ({}) is sent in the call `{}`, which no MakeCall or INCOMING of `{}` binds",
                        n.id,
                        n.action.name(),
                        n.call_id,
                        s.instances[n.instance].label
                    ),
                )
                .with_help(help),
            );
        }
    }
}

/// An instance's `tls`: a certificate comes with its key, each file can be read, and settings
/// that nothing uses are pointed out.
fn tls(s: &Scenario, inst: &crate::model::Instance, diags: &mut Diagnostics) {
    let t = &inst.tls;
    let file = s.file.as_str();
    let who = format!("instance `{}`", inst.label);
    match (&t.cert, &t.key) {
        (Some(_), None) => diags.push(Diagnostic::error(
            file,
            t.pos,
            format!("{who}: `tls` has a `cert` but no `key` for it"),
        )),
        (None, Some(_)) => diags.push(Diagnostic::error(
            file,
            t.pos,
            format!("{who}: `tls` has a `key` but no `cert` for it"),
        )),
        _ => {}
    }
    for (name, path) in [("ca", &t.ca), ("cert", &t.cert), ("key", &t.key)] {
        let Some(path) = path else { continue };
        let resolved = crate::resolve_path(&s.file, path);
        if let Err(e) = std::fs::File::open(&resolved) {
            diags.push(Diagnostic::error(
                file,
                t.pos,
                format!(
                    "{who}: `tls.{name}` {} cannot be read: {e}",
                    resolved.display()
                ),
            ));
        }
    }
    if t.insecure && t.ca.is_some() {
        diags.push(Diagnostic::warning(
            file,
            t.pos,
            format!("{who}: `tls.insecure` verifies nothing, so `tls.ca` is not used"),
        ));
    }
    let secure =
        inst.transport.is_secure() || inst.pbx.as_ref().is_some_and(|p| p.transport.is_secure());
    if !secure && !t.is_default() {
        diags.push(Diagnostic::warning(
            file,
            t.pos,
            format!("{who}: `tls` is set but neither the instance nor its PBX uses `tls` or `wss`"),
        ));
    }
}

/// A node that binds a call id (INCOMING, MakeCall) while the call an earlier node of its chain
/// bound to that id is still up would orphan that call: the id then names the new one, and the
/// first is left to the cleanup. Walks each chain's success path; a node that ends the call
/// (DISCONNECTED, Release, Reject, Cancel, a transfer) frees its id.
fn rebinding(s: &Scenario, diags: &mut Diagnostics) {
    for inst in &s.instances {
        for &start in &inst.starts {
            let mut open: HashMap<(usize, &str), &str> = HashMap::new();
            let mut cur = Some(start);
            // The graph is checked acyclic elsewhere; bound the walk all the same.
            for _ in 0..s.nodes.len() {
                let Some(i) = cur else { break };
                let n = &s.nodes[i];
                let key = (n.instance, n.call_id.as_str());
                match &n.action {
                    Action::Incoming { .. } | Action::MakeCall { .. } => {
                        if let Some(first) = open.insert(key, n.id.as_str()) {
                            diags.push(
                                Diagnostic::error(
                                    &s.file,
                                    n.pos,
                                    format!(
                                        "node `{}` ({}) binds `{}` again while the call node `{first}` bound to it is still up: that call would be orphaned",
                                        n.id,
                                        n.action.name(),
                                        n.call_id
                                    ),
                                )
                                .with_help(
                                    "give this node a call id of its own (`call_id: call-2`; sipflow: `callId`), or end the first call before it (DISCONNECTED, Release)",
                                ),
                            );
                        }
                    }
                    Action::AttendedTransfer {
                        primary_call_id,
                        consult_call_id,
                    } => {
                        open.remove(&(n.instance, primary_call_id.as_str()));
                        open.remove(&(n.instance, consult_call_id.as_str()));
                    }
                    Action::Disconnected
                    | Action::Release
                    | Action::Reject { .. }
                    | Action::Cancel
                    | Action::BlindTransfer { .. }
                    | Action::Transferred => {
                        open.remove(&key);
                    }
                    _ => {}
                }
                cur = n.on_success;
            }
        }
    }
}

pub(crate) fn is_uri(t: &str) -> bool {
    let l = t.to_ascii_lowercase();
    l.starts_with("sip:") || l.starts_with("sips:")
}

/// Options that go together. (Which node takes which key, the readers check by the table of
/// actions, `crate::schema`.)
fn options(s: &Scenario, diags: &mut Diagnostics) {
    for n in &s.nodes {
        let o = &n.opts;
        if matches!(n.action, Action::MakeCall { .. })
            && o.until != crate::model::Until::Answer
            && !o.expect.is_empty()
        {
            diags.push(Diagnostic::error(
                &s.file,
                n.pos,
                format!(
                    "node `{}`: `expect` needs `until: answer` (the final response)",
                    n.id
                ),
            ));
        }
    }
}
