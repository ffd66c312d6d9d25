//! What a datagram (or a framed stream message) must be before rsipstack sees it, and the answer
//! a peer gets when it is not (RFC 3261 §8.2, §16.3, §18.3, §21.4):
//!
//! - a request without Via, From, To, Call-ID or CSeq, with one of them twice, with a CSeq that
//!   is not `number METHOD` or names another method, a Content-Length larger than the body, a
//!   Request-URI or header that does not parse: `400 Bad Request` with a `Warning: 399` naming
//!   the problem;
//! - a SIP version other than 2.0: `505 Version Not Supported` (written in SIP/2.0);
//! - a method callflow does not know: `501 Not Implemented` with `Allow`;
//! - a malformed ACK or response: dropped (neither is ever answered), and said so.
//!
//! Without this, rsipstack drops each of these without a word (its parser or its transaction
//! layer refuses them and logs at debug level), or takes some as calls. Pure: bytes in, a verdict
//! out, so it is tested and fuzzed without sockets.

use rsipstack::sip::SipMessage;
use std::borrow::Cow;

/// The methods callflow takes (rsipstack's parser knows no others). What a UA does with a known
/// method that it does not handle is the router's answer (405).
pub const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, MESSAGE, REFER, NOTIFY, UPDATE, PRACK";

/// Every method rsipstack's parser knows, in capitals.
pub const KNOWN_METHODS: &[&str] = &[
    "INVITE",
    "ACK",
    "CANCEL",
    "BYE",
    "OPTIONS",
    "INFO",
    "MESSAGE",
    "REFER",
    "NOTIFY",
    "UPDATE",
    "PRACK",
    "REGISTER",
    "SUBSCRIBE",
    "PUBLISH",
];

/// Whether rsipstack's parser knows `method`.
pub(crate) fn is_known_method(method: &str) -> bool {
    KNOWN_METHODS.contains(&method)
}

/// What to do with one received message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Intake {
    /// Hand `len` bytes from `offset` on (leading blank lines are skipped, RFC 3261 §7.5, and a
    /// datagram's bytes past its Content-Length are discarded, §18.3).
    Pass { offset: usize, len: usize },
    /// Send `response` back to the sender and drop the message; `problem` says why.
    Answer {
        status: u16,
        problem: String,
        response: Vec<u8>,
    },
    /// Drop it without an answer (a malformed ACK or response), for `problem`.
    Drop { problem: String },
}

impl Intake {
    /// Says in the log what was refused, and why.
    pub fn log(&self, from: impl std::fmt::Display) {
        match self {
            Self::Pass { .. } => {}
            Self::Answer {
                status, problem, ..
            } => tracing::info!(%from, status, %problem, "malformed request answered"),
            Self::Drop { problem } => tracing::info!(%from, %problem, "malformed message dropped"),
        }
    }
}

/// A request's headers as written: (lower-case full name, value) in order, folded lines joined.
struct Head<'a> {
    method: &'a str,
    uri: &'a str,
    version: &'a str,
    /// (name as written, value): compared by [`is_named`], so a header costs an allocation only
    /// when folded.
    headers: Vec<(&'a str, Cow<'a, str>)>,
}

impl Head<'_> {
    fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| is_named(n, name))
            .map(|(_, v)| v.as_ref())
    }

    fn one<'s>(&'s self, name: &'s str) -> Option<&'s str> {
        self.all(name).next()
    }
}

/// Whether a header written `written` is the one whose lower-case full name is `full`, in any
/// case or in its compact form.
fn is_named(written: &str, full: &str) -> bool {
    written.eq_ignore_ascii_case(full)
        || (written.len() == 1 && full_name(&written.to_ascii_lowercase()) == full)
}

/// The full name of a compact header form (RFC 3261 §7.3.3, RFC 3515, RFC 4028...).
fn full_name(lower: &str) -> &str {
    match lower {
        "v" => "via",
        "f" => "from",
        "t" => "to",
        "i" => "call-id",
        "l" => "content-length",
        "c" => "content-type",
        "m" => "contact",
        "e" => "content-encoding",
        "k" => "supported",
        "s" => "subject",
        "o" => "event",
        "r" => "refer-to",
        "b" => "referred-by",
        "u" => "allow-events",
        "x" => "session-expires",
        _ => lower,
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// Where the head ends and the body starts (CRLF CRLF, or bare LF LF from sloppy peers).
fn split_head(bytes: &[u8]) -> (&[u8], &[u8]) {
    if let Some(i) = find(bytes, b"\r\n\r\n") {
        (&bytes[..i], &bytes[i + 4..])
    } else if let Some(i) = find(bytes, b"\n\n") {
        (&bytes[..i], &bytes[i + 2..])
    } else {
        (bytes, &[])
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Checks one received message (a whole datagram, or one framed stream message). A bug in the
/// checks must not take the UA's receive loop down with it: a panic here drops the message
/// (and says so) instead.
pub fn check(bytes: &[u8]) -> Intake {
    std::panic::catch_unwind(|| check_unguarded(bytes)).unwrap_or_else(|_| Intake::Drop {
        problem: "the intake check failed on this message (a callflow bug: please report it)"
            .to_owned(),
    })
}

/// [`check`] without the guard, so the fuzz targets see a panic as the bug it is.
pub fn check_unguarded(bytes: &[u8]) -> Intake {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(bytes.len());
    let bytes = &bytes[start..];
    let (head_bytes, body) = split_head(bytes);
    let Ok(head_text) = std::str::from_utf8(head_bytes) else {
        return refuse_unparsed("the message head is not UTF-8 text");
    };
    let mut lines = head_text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l));
    let first = lines.next().unwrap_or("");
    if first.starts_with("SIP/") {
        // A response: nobody answers one; rsipstack's parser and transactions judge it.
        return Intake::Pass {
            offset: start,
            len: bytes.len(),
        };
    }
    let mut parts = first.splitn(3, ' ');
    let (method, uri, version) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(u), Some(v)) if !m.is_empty() && !u.is_empty() => (m, u, v),
        _ => return refuse_unparsed("the first line is not `METHOD Request-URI SIP/2.0`"),
    };
    let mut headers: Vec<(&str, Cow<'_, str>)> = Vec::new();
    let mut bad_line = None;
    for line in lines {
        if line.starts_with([' ', '\t']) {
            // A folded line continues the header before it.
            match headers.last_mut() {
                Some((_, v)) => {
                    let v = v.to_mut();
                    v.push(' ');
                    v.push_str(line.trim());
                }
                None => bad_line = bad_line.or(Some(line)),
            }
            continue;
        }
        match line.split_once(':') {
            Some((name, value)) if is_token(name.trim_end()) => {
                headers.push((name.trim(), Cow::Borrowed(value.trim())));
            }
            _ => bad_line = bad_line.or(Some(line)),
        }
    }
    let head = Head {
        method,
        uri,
        version,
        headers,
    };
    // A datagram's bytes past its Content-Length are not the message (checked by `problem`
    // not to run past the body).
    let separator = bytes.len() - head_bytes.len() - body.len();
    let len = match head.one("content-length").map(str::parse::<usize>) {
        Some(Ok(cl)) if cl <= body.len() => head_bytes.len() + separator + cl,
        _ => bytes.len(),
    };
    // The last word is rsipstack's parser: what it cannot read is a 400 too (else it would be
    // dropped silently).
    let found = problem(&head, bad_line, body.len()).or_else(|| {
        SipMessage::try_from(&bytes[..len]).err().and_then(|e| {
            bad(format!(
                "cannot parse the request: {}",
                one_line(&e.to_string())
            ))
        })
    });
    match found {
        None => Intake::Pass { offset: start, len },
        Some(Problem { what, .. }) if method == "ACK" => Intake::Drop {
            problem: format!("a malformed ACK (never answered): {what}"),
        },
        Some(Problem {
            status,
            reason,
            what,
        }) => Intake::Answer {
            status,
            response: response(&head, status, reason, &what),
            problem: what,
        },
    }
}

struct Problem {
    status: u16,
    reason: &'static str,
    what: String,
}

fn bad(what: impl Into<String>) -> Option<Problem> {
    Some(Problem {
        status: 400,
        reason: "Bad Request",
        what: what.into(),
    })
}

/// The first thing wrong with a request, in the order a reader would notice it.
fn problem(head: &Head<'_>, bad_line: Option<&str>, body_len: usize) -> Option<Problem> {
    if !head.version.eq_ignore_ascii_case("SIP/2.0") {
        if head.version.len() > 4
            && head
                .version
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
        {
            return Some(Problem {
                status: 505,
                reason: "Version Not Supported",
                what: format!("{} is not supported: callflow speaks SIP/2.0", head.version),
            });
        }
        return bad(format!("`{}` is not a SIP version (SIP/2.0)", head.version));
    }
    if !is_token(head.method) {
        return bad(format!("`{}` is not a method name", head.method));
    }
    if let Some(line) = bad_line {
        return bad(format!(
            "a header line without a name and a colon: `{line}`"
        ));
    }
    if rsipstack::sip::Uri::try_from(head.uri).is_err() {
        return bad(format!("the Request-URI `{}` does not parse", head.uri));
    }
    for (name, shown) in [
        ("via", "Via"),
        ("from", "From"),
        ("to", "To"),
        ("call-id", "Call-ID"),
        ("cseq", "CSeq"),
    ] {
        match head.all(name).count() {
            0 => return bad(format!("no {shown} header")),
            n if n > 1 && name != "via" => {
                return bad(format!("{n} {shown} headers; one is allowed"));
            }
            _ => {}
        }
        if head.all(name).any(|v| v.is_empty()) {
            return bad(format!("an empty {shown} header"));
        }
    }
    for (name, shown) in [
        ("content-length", "Content-Length"),
        ("max-forwards", "Max-Forwards"),
    ] {
        let n = head.all(name).count();
        if n > 1 {
            return bad(format!("{n} {shown} headers; one is allowed"));
        }
    }
    for via in head.all("via") {
        if !via
            .get(..8)
            .is_some_and(|p| p.eq_ignore_ascii_case("SIP/2.0/"))
        {
            return bad(format!("the Via `{via}` does not start with SIP/2.0/"));
        }
    }
    let cseq = head.one("cseq").unwrap_or("");
    let mut cs = cseq.split_whitespace();
    match (cs.next().map(str::parse::<u32>), cs.next(), cs.next()) {
        (Some(Ok(n)), Some(m), None) if n < 1 << 31 => {
            if m != head.method {
                return bad(format!(
                    "the CSeq `{cseq}` names {m}, the request is {}",
                    head.method
                ));
            }
        }
        _ => {
            return bad(format!(
                "the CSeq `{cseq}` is not a number below 2^31 and the method"
            ));
        }
    }
    if let Some(cl) = head.one("content-length") {
        match cl.parse::<usize>() {
            Ok(n) if n > body_len => {
                return bad(format!(
                    "Content-Length is {n} but the body has {body_len} bytes"
                ));
            }
            Ok(_) => {}
            Err(_) => return bad(format!("Content-Length `{cl}` is not a number")),
        }
    }
    if let Some(mf) = head.one("max-forwards")
        && mf.parse::<u8>().is_err()
    {
        return bad(format!("Max-Forwards `{mf}` is not a number from 0 to 255"));
    }
    if !KNOWN_METHODS.contains(&head.method) {
        return Some(Problem {
            status: 501,
            reason: "Not Implemented",
            what: format!("the method {} is not implemented", head.method),
        });
    }
    None
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A request whose head cannot be split into lines and headers: nothing to route an answer by.
fn refuse_unparsed(what: &str) -> Intake {
    Intake::Drop {
        problem: format!("{what}; without its headers it cannot be answered"),
    }
}

/// The response to a request that is refused: its Via, From, To (with a tag), Call-ID and CSeq
/// copied as they are (RFC 3261 §8.2.6.2), a Warning naming the problem, Allow on a 501.
fn response(head: &Head<'_>, status: u16, reason: &str, what: &str) -> Vec<u8> {
    let mut out = format!("SIP/2.0 {status} {reason}\r\n");
    let safe = |v: &str| v.replace(['\r', '\n'], " ");
    for via in head.all("via") {
        out.push_str(&format!("Via: {}\r\n", safe(via)));
    }
    if let Some(from) = head.one("from") {
        out.push_str(&format!("From: {}\r\n", safe(from)));
    }
    if let Some(to) = head.one("to") {
        let tagged = to.to_ascii_lowercase().contains(";tag=");
        if tagged {
            out.push_str(&format!("To: {}\r\n", safe(to)));
        } else {
            out.push_str(&format!("To: {};tag={}\r\n", safe(to), tag()));
        }
    }
    if let Some(id) = head.one("call-id") {
        out.push_str(&format!("Call-ID: {}\r\n", safe(id)));
    }
    if let Some(cseq) = head.one("cseq") {
        out.push_str(&format!("CSeq: {}\r\n", safe(cseq)));
    }
    if status == 501 || status == 405 {
        out.push_str(&format!("Allow: {ALLOW}\r\n"));
    }
    let text: String = what
        .chars()
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '\''
            } else {
                c
            }
        })
        .take(200)
        .collect();
    out.push_str(&format!("Warning: 399 callflow \"{text}\"\r\n"));
    out.push_str("Content-Length: 0\r\n\r\n");
    out.into_bytes()
}

/// A To tag for a refusal: distinct per answer, from the clock (not security-relevant).
fn tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("cf{:x}", nanos & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

    fn answer(text: &str) -> (u16, String, String) {
        match check(text.as_bytes()) {
            Intake::Answer {
                status,
                problem,
                response,
            } => (status, problem, String::from_utf8(response).unwrap()),
            other => panic!("expected an answer to {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn a_good_request_passes_whole() {
        assert_eq!(
            check(GOOD.as_bytes()),
            Intake::Pass {
                offset: 0,
                len: GOOD.len()
            }
        );
        let padded = format!("\r\n\r\n{GOOD}");
        assert_eq!(
            check(padded.as_bytes()),
            Intake::Pass {
                offset: 4,
                len: GOOD.len()
            }
        );
        // Compact forms.
        let compact = "OPTIONS sip:bob@127.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nf: <sip:a@127.0.0.1>;tag=1\r\nt: <sip:bob@127.0.0.1>\r\ni: c1\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n";
        assert!(matches!(check(compact.as_bytes()), Intake::Pass { .. }));
    }

    #[test]
    fn bytes_past_the_content_length_are_discarded() {
        let text = GOOD.replace("Content-Length: 0", "Content-Length: 2") + "abXYZ";
        assert_eq!(
            check(text.as_bytes()),
            Intake::Pass {
                offset: 0,
                len: text.len() - 3
            }
        );
    }

    #[test]
    fn each_missing_header_is_named_and_the_answer_routes_back() {
        for (header, shown) in [
            ("Call-ID: c1\r\n", "no Call-ID header"),
            ("CSeq: 1 OPTIONS\r\n", "no CSeq header"),
            ("From: <sip:a@127.0.0.1>;tag=1\r\n", "no From header"),
            ("To: <sip:bob@127.0.0.1>\r\n", "no To header"),
        ] {
            let (status, problem, resp) = answer(&GOOD.replace(header, ""));
            assert_eq!((status, problem.as_str()), (400, shown));
            assert!(
                resp.starts_with(
                    "SIP/2.0 400 Bad Request\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n"
                ),
                "{resp}"
            );
            assert!(
                resp.contains(&format!("Warning: 399 callflow \"{shown}\"")),
                "{resp}"
            );
        }
        let (status, problem, resp) =
            answer(&GOOD.replace("Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n", ""));
        assert_eq!((status, problem.as_str()), (400, "no Via header"));
        assert!(resp.contains("To: <sip:bob@127.0.0.1>;tag=cf"), "{resp}");
    }

    #[test]
    fn cseq_content_length_uri_and_version() {
        let cases = [
            (
                GOOD.replace("CSeq: 1 OPTIONS", "CSeq: one OPTIONS"),
                400,
                "is not a number",
            ),
            (
                GOOD.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE"),
                400,
                "names INVITE, the request is OPTIONS",
            ),
            (
                GOOD.replace("CSeq: 1 OPTIONS", "CSeq: 4294967296 OPTIONS"),
                400,
                "below 2^31",
            ),
            (
                GOOD.replace("Content-Length: 0", "Content-Length: 10"),
                400,
                "Content-Length is 10 but the body has 0 bytes",
            ),
            (
                GOOD.replace("Content-Length: 0", "Content-Length: x"),
                400,
                "is not a number",
            ),
            (
                GOOD.replace("sip:bob@127.0.0.1 SIP", "::: SIP"),
                400,
                "Request-URI `:::`",
            ),
            (
                GOOD.replace("SIP/2.0\r\nVia", "SIP/3.0\r\nVia"),
                505,
                "SIP/3.0 is not supported",
            ),
            (
                GOOD.replace("SIP/2.0\r\nVia", "HTTP/1.1\r\nVia"),
                400,
                "not a SIP version",
            ),
            (
                GOOD.replace("Call-ID: c1\r\n", "Call-ID: c1\r\ni: c2\r\n"),
                400,
                "2 Call-ID headers",
            ),
            (
                GOOD.replace("Max-Forwards: 70", "Max-Forwards: 700"),
                400,
                "Max-Forwards `700`",
            ),
            (
                GOOD.replace("Max-Forwards: 70\r\n", "Max-Forwards 70\r\n"),
                400,
                "without a name and a colon",
            ),
            (
                GOOD.replace("Via: SIP/2.0/UDP", "Via: SIP/1.0/UDP"),
                400,
                "does not start with SIP/2.0/",
            ),
            (
                GOOD.replace("OPTIONS", "FOO"),
                501,
                "FOO is not implemented",
            ),
        ];
        for (text, want_status, want) in cases {
            let (status, problem, resp) = answer(&text);
            assert_eq!(status, want_status, "{problem}");
            assert!(problem.contains(want), "{problem} / {want}");
            assert!(resp.starts_with("SIP/2.0 "), "{resp}");
            if status == 501 {
                assert!(resp.contains(&format!("Allow: {ALLOW}")), "{resp}");
            }
        }
    }

    #[test]
    fn a_version_with_a_multibyte_character_is_an_answer_not_a_panic() {
        // Found by the fuzzer: the version was sliced at byte 4, inside a character.
        let text = GOOD.replace("SIP/2.0\r\nVia", "SIP\u{80}2.0\r\nVia");
        let (status, problem, _) = answer(&text);
        assert_eq!(status, 400, "{problem}");
    }

    #[test]
    fn acks_and_responses_are_never_answered() {
        let ack = GOOD
            .replace("OPTIONS", "ACK")
            .replace("Call-ID: c1\r\n", "");
        assert!(matches!(check(ack.as_bytes()), Intake::Drop { .. }));
        let resp = "SIP/2.0 200 OK\r\nbroken\r\n\r\n";
        assert!(matches!(check(resp.as_bytes()), Intake::Pass { .. }));
        assert!(matches!(check(b"\xff\xfe"), Intake::Drop { .. }));
        assert!(matches!(check(b"GARBAGE"), Intake::Drop { .. }));
    }
}
