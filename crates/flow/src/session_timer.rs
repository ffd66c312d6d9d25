//! Session timers (RFC 4028): the interval an INVITE and its 2xx agree, who refreshes it, and
//! when the refresh or the give-up is due. The headers are read by the caller; this decides.

use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
