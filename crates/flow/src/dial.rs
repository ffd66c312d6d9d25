//! What a node that sent a request does with its final response. A MakeCall's INVITE: pass,
//! ask again with a larger session interval (a 422, RFC 4028 §7.4), follow a redirect (RFC 3261
//! §8.1.3.4: within its bound, never back to a target already tried), or fail saying what came.
//! A REQUEST's or a SUBSCRIBE's: pass on an expected status whose checks hold. The flow decides
//! ([`crate::chains`]); the driver reports the response and carries the decision out.

use std::time::Duration;

use crate::failure::{Failed, Why};

/// What a node's `expect` asks of a final response: a 2xx when it is empty.
pub fn is_expected(expect: &[u16], code: u16) -> bool {
    if expect.is_empty() {
        (200..300).contains(&code)
    } else {
        expect.contains(&code)
    }
}

/// A node's `expect` as failures say it: `2xx`, or `486/603`.
pub fn expected_codes(expect: &[u16]) -> String {
    if expect.is_empty() {
        "2xx".to_owned()
    } else {
        expect
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// Where a MakeCall stands between its INVITEs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dial {
    /// The final responses it takes besides a 2xx (`expect`).
    pub expect: Vec<u16>,
    /// How many redirects it follows.
    pub redirects: u32,
    /// The targets an INVITE went to, the first one first.
    pub hops: Vec<String>,
    /// The session interval asked for, if any, and whether a 422 raised it already.
    pub session_expires: Option<u32>,
    pub raised: bool,
}

/// A final response, as the decision reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Final {
    pub code: u16,
    pub reason: String,
    /// A 3xx's first Contact URI, if it reads as one; else its Contact as written.
    pub redirect: Option<String>,
    pub contact: Option<String>,
    /// A 422's Min-SE.
    pub min_se: Option<u32>,
    /// The node's checks (`check:`) on this response, as the driver ran them: what failed.
    pub checks: Result<(), String>,
    /// A 2xx to an INVITE sent without an offer (`late_offer`) that brought none we could
    /// answer (RFC 3261 §13.2.1: the 2xx offers, the ACK answers).
    pub offerless: bool,
}

impl Final {
    /// A response with this status and nothing else to say.
    pub fn of(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            redirect: None,
            contact: None,
            min_se: None,
            checks: Ok(()),
            offerless: false,
        }
    }
}

/// The reason phrase RFC 3261 §21.1 gives a provisional status (rsipstack gives every response
/// its canonical phrase, so this is what the wire said), for failures that name the last one.
pub fn provisional_reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated",
        _ => "Provisional",
    }
}

/// A REQUEST's or a SUBSCRIBE's final response to `method` from `who`: one of `expect` (a 2xx
/// when it is empty) whose checks hold passes.
pub fn on_request_final(
    expect: &[u16],
    method: &str,
    who: &str,
    resp: &Final,
) -> Result<(), Failed> {
    if !is_expected(expect, resp.code) {
        return Err(Failed::status(
            format!("{} to {method}", expected_codes(expect)),
            who,
            format!("{} {}", resp.code, resp.reason),
        ));
    }
    resp.checks.clone().map_err(|m| Why::Checks(m).into())
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// The response is one the node takes (a 2xx, or one of `expect`): go on to its checks.
    Take,
    /// Send the INVITE again asking for `session_expires` instead of the `asked` interval.
    AskAgain {
        asked: u32,
        session_expires: u32,
    },
    /// Send the INVITE to this target instead.
    Follow {
        target: String,
    },
    Fail(Failed),
}

impl Dial {
    pub fn new(expect: Vec<u16>, redirects: u32, session_expires: Option<u32>) -> Self {
        Self {
            expect,
            redirects,
            hops: Vec::new(),
            session_expires,
            raised: false,
        }
    }

    /// An INVITE went to `to` (asked again after a 422, to the same target: one hop).
    pub fn sent(&mut self, to: &str) {
        if self.hops.last().is_none_or(|l| l != to) {
            self.hops.push(to.to_owned());
        }
    }

    /// The target the last INVITE went to.
    pub fn target(&self) -> Option<&str> {
        self.hops.last().map(String::as_str)
    }

    /// Decides on `resp`, which came `at` after the first INVITE from `who`, the node having
    /// `waited` at most; updates the hops and the interval asked for.
    pub fn on_final(&mut self, resp: &Final, who: &str, waited: Duration, at: Duration) -> Next {
        let code = resp.code;
        if is_expected(&self.expect, code) {
            return Next::Take;
        }
        // 422: the interval was too small; ask again, once, with the Min-SE it names.
        if code == 422
            && !self.raised
            && let (Some(asked), Some(min)) = (self.session_expires, resp.min_se)
            && min > asked
        {
            self.session_expires = Some(min);
            self.raised = true;
            return Next::AskAgain {
                asked,
                session_expires: min,
            };
        }
        let to = resp
            .redirect
            .as_ref()
            .filter(|_| (300..400).contains(&code));
        if let Some(next) = to
            && self.hops.len() <= self.redirects as usize
            && !self.hops.contains(next)
        {
            // The next INVITE's `sent` adds the hop.
            return Next::Follow {
                target: next.clone(),
            };
        }
        let redirects = self.redirects;
        let contact = match to {
            Some(next) if self.hops.contains(next) => {
                format!("; it redirects to {next}, already tried (a redirect loop)")
            }
            Some(next) if redirects == 0 => {
                format!("; it redirects to {next} (`redirects: 0`: not followed)")
            }
            Some(next) => format!(
                "; it redirects to {next}, past the {redirects} redirects this MakeCall follows"
            ),
            None => resp
                .contact
                .as_ref()
                .filter(|_| (300..400).contains(&code))
                .map(|v| format!("; it redirects to {v}"))
                .unwrap_or_default(),
        };
        let path = if self.hops.len() > 1 {
            format!(
                " (after {} redirects: {})",
                self.hops.len() - 1,
                self.hops.join(" → ")
            )
        } else {
            String::new()
        };
        Next::Fail(
            Why::Status {
                expected: expected_codes(&self.expect),
                from: who.to_owned(),
                waited: Some(waited),
                got: format!("{code} {}", resp.reason),
                at: Some(at),
                detail: format!("{contact}{path}"),
            }
            .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(code: u16, redirect: Option<&str>) -> Final {
        Final {
            redirect: redirect.map(str::to_owned),
            contact: redirect.map(|r| format!("<{r}>")),
            ..Final::of(code, "Reason")
        }
    }

    /// A dial whose first INVITE went to `sip:a@h`.
    fn dial(expect: Vec<u16>, redirects: u32, se: Option<u32>) -> Dial {
        let mut d = Dial::new(expect, redirects, se);
        d.sent("sip:a@h");
        d
    }

    fn fail_text(n: Next) -> String {
        match n {
            Next::Fail(f) => f.to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_redirect_is_followed_within_its_bound_and_never_in_a_loop() {
        let (w, at) = (Duration::from_secs(10), Duration::from_millis(20));
        let mut d = dial(vec![], 2, None);
        assert_eq!(
            d.on_final(&resp(302, Some("sip:b@h")), "bob", w, at),
            Next::Follow {
                target: "sip:b@h".into()
            }
        );
        d.sent("sip:b@h");
        // Back to a target already tried: a loop, not followed.
        assert_eq!(
            fail_text(d.on_final(&resp(302, Some("sip:a@h")), "bob", w, at)),
            "expected 2xx from bob within 10 s, got 302 Reason at 0.02 s; it redirects to sip:a@h, already tried (a redirect loop) (after 1 redirects: sip:a@h → sip:b@h)"
        );
        assert_eq!(
            d.on_final(&resp(301, Some("sip:c@h")), "bob", w, at),
            Next::Follow {
                target: "sip:c@h".into()
            }
        );
        d.sent("sip:c@h");
        assert!(
            fail_text(d.on_final(&resp(302, Some("sip:d@h")), "bob", w, at))
                .contains("past the 2 redirects this MakeCall follows")
        );
        let mut none = dial(vec![], 0, None);
        assert!(
            fail_text(none.on_final(&resp(302, Some("sip:b@h")), "bob", w, at))
                .ends_with("; it redirects to sip:b@h (`redirects: 0`: not followed)")
        );
    }

    #[test]
    fn a_422_is_asked_again_once_with_its_min_se_and_expected_codes_pass() {
        let (w, at) = (Duration::from_secs(10), Duration::ZERO);
        let mut d = dial(vec![], 3, Some(60));
        let too_small = Final {
            min_se: Some(90),
            ..resp(422, None)
        };
        assert_eq!(
            d.on_final(&too_small, "bob", w, at),
            Next::AskAgain {
                asked: 60,
                session_expires: 90
            }
        );
        d.sent("sip:a@h");
        assert_eq!(d.hops.len(), 1, "asked again of the same target: one hop");
        assert!(
            matches!(d.on_final(&too_small, "bob", w, at), Next::Fail(_)),
            "once"
        );
        assert_eq!(d.on_final(&resp(200, None), "bob", w, at), Next::Take);
        let mut busy = dial(vec![486, 603], 3, None);
        assert_eq!(busy.on_final(&resp(486, None), "bob", w, at), Next::Take);
        assert_eq!(
            fail_text(busy.on_final(&resp(200, None), "bob", w, at)),
            "expected 486/603 from bob within 10 s, got 200 Reason at 0 s"
        );
    }

    #[test]
    fn a_request_passes_on_an_expected_status_whose_checks_hold() {
        assert_eq!(
            on_request_final(&[], "INFO", "bob", &Final::of(200, "OK")),
            Ok(())
        );
        assert_eq!(
            on_request_final(
                &[],
                "INFO",
                "the peer",
                &Final::of(481, "Call Does Not Exist")
            )
            .unwrap_err()
            .to_string(),
            "expected 2xx to INFO from the peer, got 481 Call Does Not Exist"
        );
        assert_eq!(
            on_request_final(
                &[405],
                "MESSAGE",
                "bob",
                &Final::of(405, "Method Not Allowed")
            ),
            Ok(())
        );
        let unchecked = Final {
            checks: Err("checks on the 200 to INFO failed: expected a `X` header".into()),
            ..Final::of(200, "OK")
        };
        let f = on_request_final(&[], "INFO", "bob", &unchecked).unwrap_err();
        assert_eq!(f.kind(), events::FailureKind::Checks);
    }
}
