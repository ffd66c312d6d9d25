//! The verdicts of the media nodes, decided from what the media side measured: the digits a
//! DTMF_RECEIVED takes, whether a TONE passes, whether CHECK_MEDIA's bounds hold. The driver
//! waits on the call's media and asks here.

use crate::failure::Failed;
use std::time::Duration;

/// What a DTMF_RECEIVED waits for: these digits, digits matching a pattern, or any digit.
#[derive(Clone, Debug)]
pub enum Digits {
    Exactly(String),
    /// A regular expression the whole of the pending digits must match (`^(?:…)$`), and how
    /// the scenario wrote it.
    Matching(regex::Regex, String),
    Any,
}

impl Digits {
    /// From a node's `expected` digits and `matches` pattern (`expected` wins).
    pub fn of(expected: Option<&str>, pattern: Option<&str>) -> Result<Self, Failed> {
        Ok(match (expected, pattern) {
            (Some(w), _) => Self::Exactly(w.to_owned()),
            (None, Some(p)) => Self::Matching(
                regex::Regex::new(&format!("^(?:{p})$"))
                    .map_err(|e| Failed::other(format!("bad `matches`: {e}")))?,
                p.to_owned(),
            ),
            (None, None) => Self::Any,
        })
    }

    /// Whether the digits received so far are enough to decide.
    pub fn ready(&self, pending: &str) -> bool {
        match self {
            Self::Exactly(w) => pending.chars().count() >= w.chars().count(),
            Self::Matching(re, _) => re.is_match(pending),
            Self::Any => !pending.is_empty(),
        }
    }

    /// The verdict on the digits received (`pending`), once ready or at the node's timeout
    /// (`waited`: None when ready): how many digits the node takes, or why it failed.
    pub fn verdict(&self, pending: &str, waited: Option<Duration>) -> Result<usize, Failed> {
        let want = match self {
            Self::Exactly(w) => w.clone(),
            Self::Matching(_, p) => format!("/{p}/"),
            Self::Any => "a digit".to_owned(),
        };
        if waited.is_some() || !self.ready(pending) {
            return Err(Failed::media(
                format!("DTMF {want}"),
                waited,
                format!("got `{pending}`"),
            ));
        }
        match self {
            Self::Exactly(w) => {
                let got: String = pending.chars().take(w.chars().count()).collect();
                if got.eq_ignore_ascii_case(w) {
                    Ok(got.chars().count())
                } else {
                    Err(Failed::media(
                        format!("DTMF {w}"),
                        None,
                        format!("got {got}"),
                    ))
                }
            }
            Self::Matching(..) => Ok(pending.chars().count()),
            Self::Any => Ok(1),
        }
    }
}

/// A TONE node's verdict: whether a tone of `frequency` Hz was heard within `waited`, and
/// whether the node asked for its absence.
pub fn tone_verdict(
    heard: bool,
    absent: bool,
    frequency: f64,
    waited: Duration,
) -> Result<(), Failed> {
    match (heard, absent) {
        (true, false) | (false, true) => Ok(()),
        (true, true) => Err(Failed::media(
            format!("no {frequency} Hz tone"),
            Some(waited),
            "heard one",
        )),
        (false, false) => Err(Failed::media(
            format!("a {frequency} Hz tone"),
            Some(waited),
            "none",
        )),
    }
}

/// What the receiving side of a call measured, as CHECK_MEDIA reads it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Received {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub loss_percent: f64,
    pub jitter_ms: f64,
    /// MOS-LQ, as the media side's E-model rates the loss and jitter.
    pub mos: f64,
}

/// What a CHECK_MEDIA asks of the RTP received so far.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Bounds {
    pub max_loss: Option<f64>,
    pub max_jitter: Option<f64>,
    pub min_mos: Option<f64>,
}

/// CHECK_MEDIA's verdict: RTP came from `from`, within the bounds asked.
pub fn check_verdict(r: Received, from: &str, bounds: Bounds) -> Result<(), Failed> {
    let Bounds {
        max_loss,
        max_jitter,
        min_mos,
    } = bounds;
    if r.received == 0 {
        return Err(Failed::media(
            format!("RTP from {from}"),
            None,
            format!("none came ({} packets sent)", r.sent),
        ));
    }
    // Each bound exceeded: what it allows, and what was measured.
    let mut bad: Vec<(String, String)> = Vec::new();
    if let Some(max) = max_loss
        && r.loss_percent > max
    {
        bad.push((
            format!("loss at most {max} %"),
            format!(
                "loss {:.2} % ({} of {})",
                r.loss_percent,
                r.lost,
                r.lost + r.received
            ),
        ));
    }
    if let Some(max) = max_jitter
        && r.jitter_ms > max
    {
        bad.push((
            format!("jitter at most {max} ms"),
            format!("jitter {:.2} ms", r.jitter_ms),
        ));
    }
    if let Some(min) = min_mos
        && r.mos < min
    {
        bad.push((format!("MOS at least {min}"), format!("MOS {:.2}", r.mos)));
    }
    if bad.is_empty() {
        return Ok(());
    }
    let (expected, got): (Vec<_>, Vec<_>) = bad.into_iter().unzip();
    Err(Failed::media(
        expected.join(" and "),
        None,
        format!("got {}", got.join(", ")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtmf_takes_what_it_waited_for_and_says_what_came_instead() {
        let s = Duration::from_secs;
        let exactly = Digits::of(Some("123"), None).unwrap();
        assert!(!exactly.ready("12"));
        assert_eq!(
            exactly.verdict("123#", None).unwrap(),
            3,
            "the rest stays for the next"
        );
        assert_eq!(
            exactly.verdict("129", None).unwrap_err().to_string(),
            "expected DTMF 123, got 129"
        );
        assert_eq!(
            exactly.verdict("12", Some(s(5))).unwrap_err().to_string(),
            "expected DTMF 123 within 5 s, got `12`"
        );
        let pin = Digits::of(None, Some("[0-9]{4}#")).unwrap();
        assert!(!pin.ready("123") && pin.ready("1234#"));
        assert_eq!(pin.verdict("1234#", None).unwrap(), 5);
        assert_eq!(
            pin.verdict("12", Some(s(2))).unwrap_err().to_string(),
            "expected DTMF /[0-9]{4}#/ within 2 s, got `12`"
        );
        let any = Digits::of(None, None).unwrap();
        assert_eq!(any.verdict("57", None).unwrap(), 1);
        assert!(Digits::of(None, Some("(")).is_err(), "a bad pattern");
    }

    #[test]
    fn a_tone_passes_when_heard_or_absent_as_asked() {
        let t = Duration::from_secs(2);
        assert!(tone_verdict(true, false, 1000.0, t).is_ok());
        assert!(tone_verdict(false, true, 1000.0, t).is_ok());
        assert_eq!(
            tone_verdict(true, true, 1000.0, t).unwrap_err().to_string(),
            "expected no 1000 Hz tone within 2 s, heard one"
        );
        assert_eq!(
            tone_verdict(false, false, 425.0, t)
                .unwrap_err()
                .to_string(),
            "expected a 425 Hz tone within 2 s, none"
        );
    }

    #[test]
    fn check_media_names_every_bound_exceeded() {
        let r = Received {
            sent: 100,
            received: 90,
            lost: 10,
            loss_percent: 10.0,
            jitter_ms: 25.0,
            mos: 3.41,
        };
        let bounds = |max_loss, max_jitter, min_mos| Bounds {
            max_loss,
            max_jitter,
            min_mos,
        };
        let from = "127.0.0.1:4000";
        assert!(check_verdict(r, from, bounds(Some(15.0), Some(30.0), Some(3.4))).is_ok());
        assert_eq!(
            check_verdict(r, from, bounds(Some(1.0), Some(20.0), Some(4.0)))
                .unwrap_err()
                .to_string(),
            "expected loss at most 1 % and jitter at most 20 ms and MOS at least 4, got loss 10.00 % (10 of 100), jitter 25.00 ms, MOS 3.41"
        );
        let silent = Received { received: 0, ..r };
        assert_eq!(
            check_verdict(silent, from, Bounds::default())
                .unwrap_err()
                .to_string(),
            "expected RTP from 127.0.0.1:4000, none came (100 packets sent)"
        );
    }
}
