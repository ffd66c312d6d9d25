//! Session timers (RFC 4028): what an INVITE and its 2xx agree on (the interval and who
//! refreshes), and a task per call that keeps it: the refresher sends a re-INVITE at half the
//! interval; the other side ends the call with BYE when no refresh came in time.
//!
//! This side reads the headers and drives the call's `flow::session_timer::Keeper`, which
//! decides (with time as an input, tested there with fake time); the task only feeds it and
//! sleeps until the deadline it gives.

use crate::ua::UaShared;
use events::Level;
use session::{Call, CallEvent, LegState, SessionTimer};
use std::sync::Arc;
use std::time::Instant;
use transport::sip::{Header, Request, Response};

pub(crate) use flow::session_timer::{Interval, UasDecision, refresh_after};

use crate::routing::header_in;

/// The `Session-Expires` (or compact `x`) of a message's headers.
pub(crate) fn interval_of(headers: &transport::sip::Headers) -> Option<Interval> {
    Interval::parse(&header_in(headers, "Session-Expires").or_else(|| header_in(headers, "x"))?)
}

/// The `Min-SE` of a message's headers, in seconds.
pub(crate) fn min_se_of(headers: &transport::sip::Headers) -> Option<u32> {
    header_in(headers, "Min-SE")?.trim().parse().ok()
}

/// Whether a request says it supports (or requires) the `timer` extension.
fn supports_timer(req: &Request) -> bool {
    ["Supported", "Require"].iter().any(|name| {
        transport::header::option_tags(&req.headers, name)
            .iter()
            .any(|t| t == "timer")
    })
}

/// A 422's headers: the smallest interval we take (RFC 4028 §6).
pub(crate) fn too_small_headers(min_se: u32) -> Vec<Header> {
    vec![crate::calls::make_header("Min-SE", &min_se.to_string())]
}

pub(crate) fn uas_decide(req: &Request, min_se: u32) -> UasDecision {
    flow::session_timer::uas_decide(interval_of(&req.headers), supports_timer(req), min_se)
}

/// The headers of a 2xx that agrees `d` (empty for no timer).
pub(crate) fn agreed_headers(d: &UasDecision) -> Vec<Header> {
    match d {
        UasDecision::Agree { interval, require } => {
            let mut h = vec![crate::calls::make_header(
                "Session-Expires",
                &interval.value(),
            )];
            if *require {
                h.push(crate::calls::make_header("Require", "timer"));
            }
            h
        }
        _ => Vec::new(),
    }
}

/// The timer a transaction set, from the `Session-Expires` its 2xx carries: `we_sent` says
/// whether we were its UAC. A 2xx without one sets none.
pub(crate) fn from_2xx(resp: &Response, we_sent: bool) -> Option<SessionTimer> {
    flow::session_timer::agreed(interval_of(&resp.headers), we_sent)
}

impl UaShared {
    /// Keeps `call`'s session timer from now on (the call's timer may change with each
    /// refresh): refreshes with a re-INVITE at half the interval when we are the refresher,
    /// sends BYE when a refresh from the peer is late. Ends with the call.
    pub(crate) fn keep_session_timer(self: &Arc<Self>, call: &Arc<Call>, timer: SessionTimer) {
        let before = call.set_session_timer(timer);
        if before != Some(timer) {
            self.log(
                Level::Info,
                None,
                call.name().as_deref(),
                format!(
                    "session timer: {} s, refreshed by {} (RFC 4028)",
                    timer.secs,
                    if timer.we_refresh { "us" } else { "the peer" }
                ),
            );
        }
        if before.is_some() {
            return;
        }
        let (me, call) = (self.clone(), call.clone());
        self.spawn(async move { me.session_timer_task(call).await });
    }

    /// Drives the call's `flow::session_timer::Keeper`: feeds it the timers agreed and the
    /// refreshes' outcomes, wakes it at its deadlines, and does what it asks.
    async fn session_timer_task(self: Arc<Self>, call: Arc<Call>) {
        use flow::session_timer::{Keeper, TimerAction, TimerInput};
        let mut changes = call.session_timer_changes();
        let mut keeper = Keeper::new();
        if let Some(t) = *changes.borrow_and_update() {
            keeper.handle(Instant::now(), TimerInput::Agreed(t));
        }
        loop {
            while let Some(action) = keeper.poll_action() {
                if call.leg_state() != LegState::Confirmed || call.hangup_started() {
                    return;
                }
                match action {
                    TimerAction::Refresh { secs } => {
                        let outcome = match self.refresh(&call, secs).await {
                            Ok(next) => TimerInput::Refreshed(next),
                            Err(why) => TimerInput::RefreshFailed(why),
                        };
                        // The refresh set the call's timer itself: not news to the keeper.
                        changes.borrow_and_update();
                        keeper.handle(Instant::now(), outcome);
                    }
                    TimerAction::Bye { reason } => {
                        self.log(Level::Warning, None, call.name().as_deref(), reason);
                        drop(call.start_hang_up(session::HangupAction::Bye));
                        return;
                    }
                }
            }
            let Some(deadline) = keeper.poll_timeout() else {
                return;
            };
            let ended = call.wait(|e| matches!(e, CallEvent::Terminated { .. }), false);
            tokio::select! {
                _ = ended => {
                    keeper.handle(Instant::now(), TimerInput::Ended);
                    return;
                }
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if let Some(t) = *changes.borrow_and_update() {
                        keeper.handle(Instant::now(), TimerInput::Agreed(t));
                    }
                }
                () = tokio::time::sleep_until(deadline.into()) => {
                    keeper.handle_timeout(Instant::now());
                }
            }
        }
    }

    /// A session refresh: a re-INVITE with our SDP as it is, asking to stay the refresher.
    async fn refresh(&self, call: &Call, secs: u32) -> Result<SessionTimer, String> {
        let ours = call.local_sdp().unwrap_or_default();
        let headers = vec![
            crate::calls::sdp_header(),
            crate::calls::make_header("Session-Expires", &format!("{secs};refresher=uac")),
            crate::calls::make_header("Supported", "timer"),
        ];
        let resp = call
            .dialog
            .reinvite(Some(headers), Some(ours))
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the call is no longer confirmed")?;
        let code = resp.status_code.code();
        if !(200..300).contains(&code) {
            return Err(format!("{code} {}", resp.status_code.text()));
        }
        let answer = String::from_utf8_lossy(&resp.body).into_owned();
        if !answer.trim().is_empty() {
            self.apply_remote_sdp(call, &answer);
        }
        let next = from_2xx(&resp, true).unwrap_or(SessionTimer {
            secs,
            we_refresh: true,
        });
        self.log(
            Level::Info,
            None,
            call.name().as_deref(),
            format!(
                "session refreshed ({code}), next in {:.1} s",
                refresh_after(next.secs).as_secs_f64()
            ),
        );
        if call.set_session_timer(next) != Some(next) {
            self.log(
                Level::Info,
                None,
                call.name().as_deref(),
                format!(
                    "session timer now {} s, refreshed by {}",
                    next.secs,
                    if next.we_refresh { "us" } else { "the peer" }
                ),
            );
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::invite;
    use flow::session_timer::Refresher;

    #[test]
    fn the_uas_takes_the_interval_and_names_the_refresher() {
        let d = uas_decide(&invite("Session-Expires: 1800\r\nSupported: timer\r\n"), 90);
        assert_eq!(
            d,
            UasDecision::Agree {
                interval: Interval {
                    secs: 1800,
                    refresher: Some(Refresher::Uac)
                },
                require: true
            }
        );
        let names: Vec<String> = agreed_headers(&d)
            .iter()
            .map(|h| format!("{}: {}", h.name(), h.value()))
            .collect();
        assert_eq!(
            names,
            ["Session-Expires: 1800;refresher=uac", "Require: timer"]
        );
        // A UAC without the extension: the UAS refreshes, and requires nothing.
        assert_eq!(
            uas_decide(&invite("x: 600\r\n"), 90),
            UasDecision::Agree {
                interval: Interval {
                    secs: 600,
                    refresher: Some(Refresher::Uas)
                },
                require: false
            }
        );
        assert_eq!(
            uas_decide(&invite("Session-Expires: 60;refresher=uas\r\n"), 90),
            UasDecision::TooSmall { min_se: 90 }
        );
        assert_eq!(uas_decide(&invite(""), 90), UasDecision::None);
    }

    #[test]
    fn the_2xx_says_who_refreshes_from_the_side_that_sent_the_request() {
        let ok = |se: &str| {
            Response::try_from(
                format!("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n{se}Content-Length: 0\r\n\r\n")
                    .as_str(),
            )
            .expect("a response")
        };
        let uac = ok("Session-Expires: 120;refresher=uac\r\n");
        assert_eq!(
            from_2xx(&uac, true),
            Some(SessionTimer {
                secs: 120,
                we_refresh: true
            })
        );
        assert_eq!(
            from_2xx(&uac, false),
            Some(SessionTimer {
                secs: 120,
                we_refresh: false
            })
        );
        assert_eq!(from_2xx(&ok(""), true), None);
    }
}
