//! Session timers (RFC 4028): the interval an INVITE and its 2xx agree, who refreshes it, and
//! when the refresh or the give-up is due. The headers are read by the caller; this decides.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Who refreshes, as the `refresher` parameter names it: the UAC or the UAS of the transaction
/// that carried it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}

/// A `Session-Expires` value: `1800;refresher=uac`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub secs: u32,
    pub refresher: Option<Refresher>,
}

impl Interval {
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split(';');
        let secs = parts.next()?.trim().parse().ok()?;
        let refresher = parts.find_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            if !k.trim().eq_ignore_ascii_case("refresher") {
                return None;
            }
            match v.trim().to_ascii_lowercase().as_str() {
                "uac" => Some(Refresher::Uac),
                "uas" => Some(Refresher::Uas),
                _ => None,
            }
        });
        Some(Self { secs, refresher })
    }

    pub fn value(self) -> String {
        match self.refresher {
            Some(Refresher::Uac) => format!("{};refresher=uac", self.secs),
            Some(Refresher::Uas) => format!("{};refresher=uas", self.secs),
            None => self.secs.to_string(),
        }
    }
}

/// When the refresher sends its refresh: half the interval (RFC 4028 §10).
pub fn refresh_after(secs: u32) -> Duration {
    Duration::from_millis(u64::from(secs) * 500)
}

/// When the side that does not refresh gives up: the interval less a third of it or 32 s,
/// whichever is less (RFC 4028 §10).
pub fn expire_after(secs: u32) -> Duration {
    let s = Duration::from_secs(u64::from(secs));
    s - (s / 3).min(Duration::from_secs(32))
}

/// A call's session timer (RFC 4028): the interval, and whether we are the refresher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionTimer {
    pub secs: u32,
    pub we_refresh: bool,
}

/// What the UAS does with an INVITE (or a refresh) as to session timers (RFC 4028 §9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UasDecision {
    /// No Session-Expires: no session timer.
    None,
    /// The interval is below our minimum: 422 with `Min-SE: min_se`.
    TooSmall { min_se: u32 },
    /// Our 2xx carries `Session-Expires: interval` (its refresher set) and, when the UAC
    /// supports the extension, `Require: timer`.
    Agree { interval: Interval, require: bool },
}

impl UasDecision {
    /// The timer the UAS keeps once its 2xx agreed (we are the UAS: we refresh when the
    /// refresher named is the UAS).
    pub fn timer(&self) -> Option<SessionTimer> {
        match self {
            Self::Agree { interval, .. } => agreed(Some(*interval), false),
            _ => None,
        }
    }
}

/// What the UAS of an INVITE (or refresh) asking for `asked` does, when the UAC supports the
/// `timer` extension or not, with our `min_se` (RFC 4028 §9): refused below it; otherwise the
/// refresher is the one asked for, else the UAC if it supports timers, else the UAS.
pub fn uas_decide(asked: Option<Interval>, supports: bool, min_se: u32) -> UasDecision {
    let Some(asked) = asked else {
        return UasDecision::None;
    };
    if asked.secs < min_se {
        return UasDecision::TooSmall { min_se };
    }
    let refresher = asked.refresher.unwrap_or(if supports {
        Refresher::Uac
    } else {
        Refresher::Uas
    });
    UasDecision::Agree {
        interval: Interval {
            secs: asked.secs,
            refresher: Some(refresher),
        },
        require: supports,
    }
}

/// The timer a 2xx's `Session-Expires` sets; `we_sent` says whether we were the UAC of the
/// transaction (the refresher parameter names a side of it).
pub fn agreed(interval: Option<Interval>, we_sent: bool) -> Option<SessionTimer> {
    let i = interval?;
    let uac_refreshes = i.refresher.unwrap_or(Refresher::Uac) == Refresher::Uac;
    Some(SessionTimer {
        secs: i.secs,
        we_refresh: uac_refreshes == we_sent,
    })
}

/// What the session-timer keeper of a call is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimerInput {
    /// A 2xx, or a refresh from the peer, agreed this timer (again).
    Agreed(SessionTimer),
    /// Our refresh got its 2xx, which agreed this timer.
    Refreshed(SessionTimer),
    /// Our refresh failed (a non-2xx, a timeout, the transaction's error).
    RefreshFailed(String),
    /// The call ended.
    Ended,
}

/// What the keeper asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimerAction {
    /// Refresh the session now (a re-INVITE asking for `secs` and to stay the refresher).
    Refresh { secs: u32 },
    /// End the call with BYE, for `reason`.
    Bye { reason: String },
}

/// One call's session timer as a state machine (RFC 4028 §10), with time as an input: the
/// driver feeds it what happened (`handle`) and the deadlines it asked for
/// (`handle_timeout` once `poll_timeout` is reached) and carries out what `poll_action` says.
#[derive(Debug, Default)]
pub struct Keeper {
    timer: Option<SessionTimer>,
    deadline: Option<Instant>,
    actions: VecDeque<TimerAction>,
    done: bool,
}

impl Keeper {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn handle(&mut self, now: Instant, input: TimerInput) {
        if self.done {
            return;
        }
        match input {
            TimerInput::Agreed(t) | TimerInput::Refreshed(t) => {
                self.timer = Some(t);
                let wait = if t.we_refresh {
                    refresh_after(t.secs)
                } else {
                    expire_after(t.secs)
                };
                self.deadline = Some(now + wait);
            }
            TimerInput::RefreshFailed(why) => {
                self.end(format!(
                    "session refresh failed ({why}): the call is ended with BYE (RFC 4028 §10)"
                ));
            }
            TimerInput::Ended => {
                self.done = true;
                self.deadline = None;
            }
        }
    }

    /// When the keeper must next be woken (`handle_timeout`), if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// The deadline came: refresh if we are the refresher, else end the call.
    pub fn handle_timeout(&mut self, now: Instant) {
        let (Some(deadline), Some(t)) = (self.deadline, self.timer) else {
            return;
        };
        if now < deadline || self.done {
            return;
        }
        if t.we_refresh {
            // Until the refresh's outcome comes in, nothing more is due.
            self.deadline = None;
            self.actions
                .push_back(TimerAction::Refresh { secs: t.secs });
        } else {
            self.end(format!(
                "no session refresh from the peer within {} s of a {} s session interval: BYE (RFC 4028 §10)",
                expire_after(t.secs).as_secs(),
                t.secs
            ));
        }
    }

    pub fn poll_action(&mut self) -> Option<TimerAction> {
        self.actions.pop_front()
    }

    fn end(&mut self, reason: String) {
        self.done = true;
        self.deadline = None;
        self.actions.push_back(TimerAction::Bye { reason });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A keeper driven with fake time: `at(ms)` is that many milliseconds after the start.
    #[allow(clippy::disallowed_methods)] // one origin for fake time; nothing reads the clock after it
    fn clock() -> impl Fn(u64) -> Instant {
        let t0 = Instant::now();
        move |ms| t0 + Duration::from_millis(ms)
    }

    #[test]
    fn the_refresher_refreshes_at_half_the_interval_and_rearms_on_success() {
        let at = clock();
        let mut k = Keeper::new();
        let t = SessionTimer {
            secs: 90,
            we_refresh: true,
        };
        k.handle(at(0), TimerInput::Agreed(t));
        assert_eq!(k.poll_timeout(), Some(at(45_000)));
        k.handle_timeout(at(44_999));
        assert_eq!(k.poll_action(), None, "not yet");
        k.handle_timeout(at(45_000));
        assert_eq!(k.poll_action(), Some(TimerAction::Refresh { secs: 90 }));
        assert_eq!(k.poll_timeout(), None, "waiting for the refresh's answer");
        k.handle(at(45_010), TimerInput::Refreshed(t));
        assert_eq!(k.poll_timeout(), Some(at(90_010)));
        k.handle(at(50_000), TimerInput::RefreshFailed("481".into()));
        assert!(
            matches!(k.poll_action(), Some(TimerAction::Bye { reason }) if reason.starts_with("session refresh failed (481)"))
        );
        assert_eq!(k.poll_timeout(), None);
    }

    #[test]
    fn the_other_side_gives_up_unless_a_refresh_rearms_it() {
        let at = clock();
        let mut k = Keeper::new();
        let t = SessionTimer {
            secs: 90,
            we_refresh: false,
        };
        k.handle(at(0), TimerInput::Agreed(t));
        assert_eq!(k.poll_timeout(), Some(at(60_000)));
        // The peer refreshes at 45 s: the deadline moves on.
        k.handle(at(45_000), TimerInput::Agreed(t));
        k.handle_timeout(at(60_000));
        assert_eq!(k.poll_action(), None);
        k.handle_timeout(at(105_000));
        assert!(
            matches!(k.poll_action(), Some(TimerAction::Bye { reason }) if reason.starts_with("no session refresh from the peer within 60 s of a 90 s"))
        );
        // An ended call asks for nothing more.
        let mut k = Keeper::new();
        k.handle(at(0), TimerInput::Agreed(t));
        k.handle(at(1), TimerInput::Ended);
        assert_eq!((k.poll_timeout(), k.poll_action()), (None, None));
    }

    #[test]
    fn deadlines_follow_rfc_4028_section_10() {
        assert_eq!(refresh_after(1800), Duration::from_secs(900));
        assert_eq!(expire_after(1800), Duration::from_secs(1768));
        assert_eq!(expire_after(90), Duration::from_secs(60));
        assert_eq!(expire_after(3), Duration::from_secs(2));
    }

    #[test]
    fn values_read_and_write_back() {
        let i = Interval::parse("1800 ; refresher=UAS").unwrap();
        assert_eq!((i.secs, i.refresher), (1800, Some(Refresher::Uas)));
        assert_eq!(i.value(), "1800;refresher=uas");
        assert_eq!(Interval::parse("x"), None);
    }

    #[test]
    fn the_refresher_is_named_from_the_side_that_sent_the_request() {
        let uac = Some(Interval {
            secs: 120,
            refresher: Some(Refresher::Uac),
        });
        assert_eq!(agreed(uac, true).map(|t| t.we_refresh), Some(true));
        assert_eq!(agreed(uac, false).map(|t| t.we_refresh), Some(false));
        assert_eq!(agreed(None, true), None);
        assert_eq!(
            uas_decide(uac, false, 200),
            UasDecision::TooSmall { min_se: 200 }
        );
        // The UAS refreshes when the refresher named is the UAS.
        let uas = Interval {
            secs: 120,
            refresher: Some(Refresher::Uas),
        };
        assert_eq!(
            uas_decide(Some(uas), true, 90)
                .timer()
                .map(|t| t.we_refresh),
            Some(true)
        );
        assert_eq!(
            uas_decide(uac, true, 90).timer().map(|t| t.we_refresh),
            Some(false)
        );
    }
}
