//! Node options both formats share (expected status, headers, checks, `after`, ...), read with
//! the key spelling of each format: snake_case in YAML, camelCase in sipflow JSON.

use crate::diag::Pos;
use crate::model::{Check, HeaderTest, NodeOptions, Until};
use crate::spanned::{Fields, SNode, Value};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Snake,
    Camel,
}

pub(crate) fn key(style: Style, snake: &'static str) -> &'static str {
    match style {
        Style::Snake => snake,
        Style::Camel => crate::schema::camel(snake),
    }
}

/// Reads the options of a node; returns them and the id named by `after`, if any.
pub(crate) fn read(
    f: &mut Fields<'_>,
    map: &SNode,
    style: Style,
) -> (NodeOptions, Option<(String, Pos)>) {
    let k = |snake| key(style, snake);
    let mut o = NodeOptions::default();
    if let Some(n) = map.get("expect") {
        let items: Vec<&SNode> = match &n.value {
            Value::Seq(items) => items.iter().collect(),
            _ => vec![n],
        };
        for item in items {
            match item.value {
                Value::Int(c) if (100..=699).contains(&c) => o.expect.push(c as u16),
                _ => f.error(
                    item.pos,
                    "`expect` is a SIP status code (100-699) or a list of them",
                ),
            }
        }
    }
    if let Some(u) = f.string(map, "until") {
        o.until = match u.to_ascii_lowercase().as_str() {
            "answer" => Until::Answer,
            "ringing" => Until::Ringing,
            "sent" => Until::Sent,
            other => {
                f.error(
                    map.get("until").map_or(map.pos, |n| n.pos),
                    format!("`until` is answer, ringing or sent, not `{other}`"),
                );
                Until::Answer
            }
        };
    }
    if let Some(v) = f.string(map, "offer") {
        match v.to_ascii_lowercase().as_str() {
            "early" => {}
            "late" => o.late_offer = true,
            other => f.error(
                map.get("offer").map_or(map.pos, |n| n.pos),
                format!("`offer` is early (SDP in the INVITE, the default) or late (none), not `{other}`"),
            ),
        }
    }
    o.session_expires = match style {
        Style::Snake => f.duration(map, "session_expires").map(|(d, _)| d),
        Style::Camel => f.millis(map, "sessionExpiresMs").map(|(d, _)| d),
    };
    if let Some(n) = map.get("redirects") {
        match n.value {
            Value::Int(r) if (0..=20).contains(&r) => o.redirects = Some(r as u32),
            _ => f.error(
                n.pos,
                "`redirects` is how many 3xx to follow: a number from 0 (none) to 20",
            ),
        }
    }
    if let Some(h) = map.get("headers") {
        // A mapping, or (so JSON keeps the order) a list of one-header mappings.
        let maps: Vec<&SNode> = match &h.value {
            Value::Seq(items) => items.iter().collect(),
            _ => vec![h],
        };
        for h in maps {
            match &h.value {
                Value::Map(entries) => {
                    for (name, v) in entries {
                        match v.as_text() {
                            Some(val) => o.headers.push((name.name.clone(), val)),
                            None => {
                                f.error(v.pos, format!("header `{}` needs a text value", name.name))
                            }
                        }
                    }
                }
                _ => f.error(h.pos, "`headers` is a mapping from header name to value"),
            }
        }
    }
    o.display_name = f.string(map, k("display_name"));
    o.from_user = f.string(map, k("from_user"));
    o.delay = match style {
        Style::Snake => f.duration(map, "delay").map(|(d, _)| d),
        Style::Camel => f.millis(map, "delayMs").map(|(d, _)| d),
    };
    if let Some(c) = map.get("check") {
        match &c.value {
            Value::Seq(items) => {
                for item in items {
                    if let Some(check) = read_check(f, item, style) {
                        o.checks.push(check);
                    }
                }
            }
            _ => f.error(
                c.pos,
                "`check` is a list of checks, such as `- header: X-Test` `equals: abc`",
            ),
        }
    }
    o.looped = f.bool(map, "loop").unwrap_or(false);
    if let Some(via) = f.string(map, "via") {
        match via.to_ascii_lowercase().as_str() {
            "info" => o.dtmf_info = true,
            "rtp" | "rfc4733" | "rfc2833" => {}
            other => f.error(
                map.get("via").map_or(map.pos, |n| n.pos),
                format!("`via` is `rfc4733` (default) or `info`, not `{other}`"),
            ),
        }
    }
    if let Some(re) = f.string(map, "matches")
        && check_regex(f, map, &re)
    {
        o.pattern = Some(re);
    }
    let after = map.get("after").and_then(|n| match n.as_text() {
        Some(id) => Some((id, n.pos)),
        None => {
            f.error(n.pos, "`after` is the id of the node to wait for");
            None
        }
    });
    (o, after)
}

fn read_check(f: &mut Fields<'_>, item: &SNode, style: Style) -> Option<Check> {
    let k = |snake| key(style, snake);
    let known = [
        "header",
        "exists",
        "equals",
        "matches",
        k("sdp_codec"),
        k("sdp_direction"),
    ];
    f.unknown_keys(item, &known, "a check", true);
    if let Some(name) = f.string(item, "header") {
        let test = if let Some(v) = f.string(item, "equals") {
            HeaderTest::Equals(v)
        } else if let Some(re) = f.string(item, "matches") {
            if !check_regex(f, item, &re) {
                return None;
            }
            HeaderTest::Matches(re)
        } else {
            HeaderTest::Exists(f.bool(item, "exists").unwrap_or(true))
        };
        return Some(Check::Header { name, test });
    }
    if let Some(codec) = f.string(item, k("sdp_codec")) {
        return Some(Check::SdpCodec(codec));
    }
    if let Some(dir) = f.string(item, k("sdp_direction")) {
        if !["sendrecv", "sendonly", "recvonly", "inactive"].contains(&dir.as_str()) {
            f.error(
                item.pos,
                format!(
                    "`{}` is sendrecv, sendonly, recvonly or inactive",
                    k("sdp_direction")
                ),
            );
            return None;
        }
        return Some(Check::SdpDirection(dir));
    }
    f.error(
        item.pos,
        format!(
            "a check needs `header`, `{}` or `{}`",
            k("sdp_codec"),
            k("sdp_direction")
        ),
    );
    None
}

/// The commands both formats spell the same way beyond sipflow's nine.
pub(crate) fn extra_command(
    f: &mut Fields<'_>,
    map: &SNode,
    name: &str,
    style: Style,
) -> Option<crate::model::Action> {
    use crate::model::Action;
    Some(match name {
        "Reject" => {
            let dflt = crate::schema::default_int("Reject", "code") as u16;
            let code = match map.get("code").map(|n| (&n.value, n.pos)) {
                None => dflt,
                Some((Value::Int(c), _)) if (300..=699).contains(c) => *c as u16,
                Some((_, pos)) => {
                    f.error(pos, "`code` of Reject is a final status code (300-699)");
                    dflt
                }
            };
            Action::Reject {
                code,
                reason: f.string(map, "reason"),
            }
        }
        "Cancel" => Action::Cancel,
        "PlaySignature" => {
            let duration = match style {
                Style::Snake => f.duration(map, "duration").map(|(d, _)| d),
                Style::Camel => f.millis(map, "durationMs").map(|(d, _)| d),
            };
            Action::PlaySignature {
                duration: duration
                    .unwrap_or_else(|| crate::schema::default_duration(name, "duration")),
            }
        }
        "Record" => Action::Record {
            file: f
                .string(map, "file")
                .or_else(|| f.string(map, "filePath"))
                .unwrap_or_default(),
        },
        "CheckMedia" => Action::CheckMedia {
            max_loss_percent: number(f, map, key(style, "max_loss")),
            max_jitter_ms: match style {
                Style::Snake => f
                    .duration(map, "max_jitter")
                    .map(|(d, _)| d.as_secs_f64() * 1000.0),
                Style::Camel => number(f, map, "maxJitterMs"),
            },
            min_mos: mos(f, map, key(style, "min_mos")),
        },
        "Ringing" => Action::SendRinging,
        "Progress" => Action::SendProgress,
        "SendInfo" | "SendMessage" | "SendOptions" | "SendNotify" | "SendUpdate" => {
            Action::SendRequest {
                method: name.trim_start_matches("Send").to_ascii_uppercase(),
                content_type: f.string(map, key(style, "content_type")),
                body: f.string(map, "body"),
                target: f.string(map, key(style, "target")),
            }
        }
        "Subscribe" => {
            let expires = match style {
                Style::Snake => f.duration(map, "expires").map(|(d, _)| d),
                Style::Camel => f.millis(map, "expiresMs").map(|(d, _)| d),
            };
            Action::Subscribe {
                target: f.string(map, key(style, "target")).unwrap_or_default(),
                event: f.string(map, "package").unwrap_or_default(),
                expires: expires
                    .unwrap_or_else(|| crate::schema::default_duration(name, "expires")),
            }
        }
        _ => return None,
    })
}

/// The events both formats spell the same way beyond sipflow's eight.
pub(crate) fn extra_event(
    f: &mut Fields<'_>,
    map: &SNode,
    name: &str,
) -> Option<crate::model::Action> {
    match name {
        "REQUEST" => Some(crate::model::Action::RequestReceived {
            method: f.string(map, "method").map(|m| m.to_ascii_uppercase()),
        }),
        "HEARD" => Some(crate::model::Action::Heard {
            from: f.string(map, "from").unwrap_or_default(),
        }),
        "TONE" => Some(crate::model::Action::Tone {
            frequency: number(f, map, "frequency").unwrap_or(0.0),
            absent: f.bool(map, "absent").unwrap_or(false),
        }),
        "MEDIA" => Some(crate::model::Action::MediaFlowing),
        _ => None,
    }
}

/// A plain number (a percentage, a frequency).
/// The longest `matches` pattern (a header or digit pattern is a few dozen characters).
pub(crate) const MAX_REGEX_LEN: usize = 4096;
/// The most memory one compiled pattern may take.
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Whether `re` (the `matches` of `map`) compiles within the limits; the error, on one line,
/// is at the pattern's position otherwise.
fn check_regex(f: &mut Fields<'_>, map: &SNode, re: &str) -> bool {
    let pos = map.get("matches").map_or(map.pos, |n| n.pos);
    if re.len() > MAX_REGEX_LEN {
        f.error(
            pos,
            format!(
                "`matches` is {} bytes long; a pattern may have at most {MAX_REGEX_LEN}",
                re.len()
            ),
        );
        return false;
    }
    match regex::RegexBuilder::new(re)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
    {
        Ok(_) => true,
        Err(e) => {
            f.error(
                pos,
                format!(
                    "`matches` is not a valid regular expression: {}",
                    regex_error(&e)
                ),
            );
            false
        }
    }
}

/// regex's error on one line: its `error:` line and where in the pattern it is.
fn regex_error(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let what = lines
                .iter()
                .rev()
                .find_map(|l| l.strip_prefix("error: "))
                .unwrap_or("syntax error");
            // The pattern is indented by 4 spaces and the line after it marks the spot with ^.
            let at = lines
                .iter()
                .find(|l| l.trim_start().starts_with('^'))
                .and_then(|l| l.find('^'))
                .map(|i| i.saturating_sub(4) + 1);
            match at {
                Some(c) => format!("{what} (at character {c} of the pattern)"),
                None => what.to_owned(),
            }
        }
        regex::Error::CompiledTooBig(limit) => {
            format!("the pattern compiles to more than {limit} bytes")
        }
        other => other.to_string().replace('\n', " "),
    }
}

fn number(f: &mut Fields<'_>, map: &SNode, key: &str) -> Option<f64> {
    let n = map.get(key)?;
    let x = match n.value {
        Value::Int(i) => i as f64,
        Value::Float(x) => x,
        _ => {
            f.error(n.pos, format!("`{key}` must be a number"));
            return None;
        }
    };
    // Every number read here is a percentage or a number of milliseconds.
    if !(0.0..=MAX_NUMBER).contains(&x) {
        f.error(
            n.pos,
            format!("`{key}` must be a number from 0 to {MAX_NUMBER}, got {x}"),
        );
        return None;
    }
    Some(x)
}

/// A MOS bound: from 1 to 4.5, the scale G.107 maps a rating to.
fn mos(f: &mut Fields<'_>, map: &SNode, key: &str) -> Option<f64> {
    let x = number(f, map, key)?;
    if !(1.0..=4.5).contains(&x) {
        let pos = map.get(key).map(|n| n.pos).unwrap_or_default();
        f.error(
            pos,
            format!("`{key}` must be a MOS from 1 to 4.5 (a clean G.711 call rates 4.41), got {x}"),
        );
        return None;
    }
    Some(x)
}

/// The largest number an option takes (a day in milliseconds is 8.64e7).
const MAX_NUMBER: f64 = 1e9;
