//! Assertions on a received message: headers (exists / equals / regex) and SDP (codec,
//! direction). Pure: they take the message's headers and body.

use scenario::{Check, HeaderTest};

/// Compact header names (RFC 3261 §7.3.3) and their full names.
const COMPACT: &[(&str, &str)] = &[
    ("i", "Call-ID"),
    ("m", "Contact"),
    ("e", "Content-Encoding"),
    ("l", "Content-Length"),
    ("c", "Content-Type"),
    ("f", "From"),
    ("s", "Subject"),
    ("k", "Supported"),
    ("t", "To"),
    ("v", "Via"),
    ("r", "Refer-To"),
    ("b", "Referred-By"),
];

fn same_header(a: &str, b: &str) -> bool {
    let full = |n: &str| {
        COMPACT
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(n))
            .map_or(n.to_owned(), |(_, f)| (*f).to_owned())
    };
    full(a).eq_ignore_ascii_case(&full(b))
}

/// Runs every check; the error lists each one that failed, with what was there.
pub(crate) fn run(
    checks: &[Check],
    what: &str,
    headers: &[(String, String)],
    body: &str,
) -> Result<(), String> {
    let mut failed = Vec::new();
    for c in checks {
        if let Err(e) = one(c, headers, body) {
            failed.push(e);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("checks on {what} failed: {}", failed.join("; ")))
    }
}

fn one(check: &Check, headers: &[(String, String)], body: &str) -> Result<(), String> {
    match check {
        Check::Header { name, test } => {
            let values: Vec<&str> = headers
                .iter()
                .filter(|(n, _)| same_header(n, name))
                .map(|(_, v)| v.as_str())
                .collect();
            match test {
                HeaderTest::Exists(true) if values.is_empty() => {
                    Err(format!("expected a `{name}` header, there is none"))
                }
                HeaderTest::Exists(false) if !values.is_empty() => {
                    Err(format!("expected no `{name}` header, got `{}`", values[0]))
                }
                HeaderTest::Exists(_) => Ok(()),
                HeaderTest::Equals(want) => match values.iter().find(|v| v.trim() == want.trim()) {
                    Some(_) => Ok(()),
                    None if values.is_empty() => {
                        Err(format!("expected `{name}: {want}`, there is no `{name}`"))
                    }
                    None => Err(format!(
                        "expected `{name}: {want}`, got `{}`",
                        values.join("`, `")
                    )),
                },
                HeaderTest::Matches(re) => {
                    let re = regex::Regex::new(re).map_err(|e| format!("bad regex {re}: {e}"))?;
                    match values.iter().find(|v| re.is_match(v)) {
                        Some(_) => Ok(()),
                        None if values.is_empty() => Err(format!(
                            "expected `{name}` matching /{re}/, there is no `{name}`"
                        )),
                        None => Err(format!(
                            "expected `{name}` matching /{re}/, got `{}`",
                            values.join("`, `")
                        )),
                    }
                }
            }
        }
        Check::SdpCodec(codec) => {
            let codecs = media::sdp::codec_names(body);
            if codecs.iter().any(|c| c.eq_ignore_ascii_case(codec)) {
                Ok(())
            } else if body.trim().is_empty() {
                Err(format!(
                    "expected SDP with {codec}, the message has no body"
                ))
            } else {
                Err(format!(
                    "expected SDP with {codec}, it lists {}",
                    codecs.join(", ")
                ))
            }
        }
        Check::SdpDirection(dir) => {
            if body.trim().is_empty() {
                return Err(format!(
                    "expected SDP with a={dir}, the message has no body"
                ));
            }
            let got = media::sdp::direction(body);
            if got.as_str() == dir {
                Ok(())
            } else {
                Err(format!("expected a={dir}, got a={}", got.as_str()))
            }
        }
    }
}

/// The headers of a parsed SIP message as (name, value) pairs.
pub(crate) fn headers_of(headers: &transport::sip::Headers) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| (h.name().to_owned(), h.value().to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn header_tests_say_what_was_there() {
        let headers = h(&[
            ("X-Test", "abc"),
            ("User-Agent", "callflow/0.1.0"),
            ("i", "x@y"),
        ]);
        let ok = [
            Check::Header {
                name: "x-test".into(),
                test: HeaderTest::Equals("abc".into()),
            },
            Check::Header {
                name: "User-Agent".into(),
                test: HeaderTest::Matches("^callflow/".into()),
            },
            Check::Header {
                name: "Call-ID".into(),
                test: HeaderTest::Exists(true),
            },
            Check::Header {
                name: "P-Asserted-Identity".into(),
                test: HeaderTest::Exists(false),
            },
        ];
        assert_eq!(run(&ok, "the INVITE", &headers, ""), Ok(()));
        let bad = [
            Check::Header {
                name: "X-Test".into(),
                test: HeaderTest::Equals("abd".into()),
            },
            Check::Header {
                name: "Diversion".into(),
                test: HeaderTest::Exists(true),
            },
        ];
        assert_eq!(
            run(&bad, "the INVITE", &headers, ""),
            Err("checks on the INVITE failed: expected `X-Test: abd`, got `abc`; expected a `Diversion` header, there is none".into())
        );
    }

    #[test]
    fn sdp_tests() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n";
        assert_eq!(
            run(
                &[
                    Check::SdpCodec("PCMA".into()),
                    Check::SdpDirection("sendonly".into())
                ],
                "x",
                &[],
                sdp
            ),
            Ok(())
        );
        let err = run(&[Check::SdpCodec("PCMU".into())], "the 200", &[], sdp).unwrap_err();
        assert_eq!(
            err,
            "checks on the 200 failed: expected SDP with PCMU, it lists PCMA, telephone-event"
        );
    }
}
