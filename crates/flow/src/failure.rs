//! Why a node failed, as data: what was expected, what came instead, how long was waited.
//! [`Failed`]'s `Display` is the one place a failure becomes words; reports, the terminal and
//! the event stream show that text, and tools read its [`FailureKind`].

use crate::secs;
use events::FailureKind;
use std::fmt;
use std::time::Duration;

/// What went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// What the node waited for did not come in time: "expected {expected} within {waited},
    /// {got}" ("none came", "it is still up", "last: 180 Ringing at 0.02 s").
    Timeout {
        expected: String,
        waited: Duration,
        got: String,
    },
    /// A final response other than the ones expected: "expected {expected} from {from}[ within
    /// {waited}], got {got}[ at {at}]{detail}".
    Status {
        expected: String,
        from: String,
        waited: Option<Duration>,
        got: String,
        at: Option<Duration>,
        /// Where a redirect pointed, the path of redirects followed.
        detail: String,
    },
    /// The checks of a received message failed (each says what it expected and got).
    Checks(String),
    /// The call was not in the state the node needs.
    CallState(String),
    /// A request could not go, or its transaction failed.
    Transport(String),
    /// The media was not what was expected: "expected {expected}[ within {waited}], {got}".
    Media {
        expected: String,
        waited: Option<Duration>,
        got: String,
    },
    /// Anything else, said in words.
    Other(String),
}

/// Why a node failed, and what never arrived on its call (a request of ours no response
/// answered, a 2xx of ours no ACK acknowledged): under loss or with a peer gone, that names
/// the message the node waited for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failed {
    /// Boxed: a failure is rare, a `Result` carrying it is everywhere.
    pub why: Box<Why>,
    pub on_the_wire: Vec<String>,
}

impl Failed {
    pub fn kind(&self) -> FailureKind {
        match *self.why {
            Why::Timeout { .. } => FailureKind::Timeout,
            Why::Status { .. } => FailureKind::Status,
            Why::Checks(_) => FailureKind::Checks,
            Why::CallState(_) => FailureKind::CallState,
            Why::Transport(_) => FailureKind::Transport,
            Why::Media { .. } => FailureKind::Media,
            Why::Other(_) => FailureKind::Other,
        }
    }

    /// The status code of the unexpected final response, if that is what failed.
    pub fn status_code(&self) -> Option<u16> {
        match &*self.why {
            Why::Status { got, .. } => got.get(..3)?.parse().ok(),
            _ => None,
        }
    }

    /// What a person reads.
    pub fn message(&self) -> String {
        self.to_string()
    }

    pub fn timeout(expected: impl Into<String>, waited: Duration, got: impl Into<String>) -> Self {
        Why::Timeout {
            expected: expected.into(),
            waited,
            got: got.into(),
        }
        .into()
    }

    pub fn other(message: impl Into<String>) -> Self {
        Why::Other(message.into()).into()
    }

    /// A node names a call that nothing bound on its UA (`label`).
    pub fn unbound(label: &str, name: &str) -> Self {
        Why::CallState(format!(
            "{label} has no call `{name}`: a MakeCall or INCOMING node must bind it first"
        ))
        .into()
    }

    pub fn media(
        expected: impl Into<String>,
        waited: Option<Duration>,
        got: impl Into<String>,
    ) -> Self {
        Why::Media {
            expected: expected.into(),
            waited,
            got: got.into(),
        }
        .into()
    }

    /// A final response `got` from `from`, where `expected` was wanted.
    pub fn status(
        expected: impl Into<String>,
        from: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        Why::Status {
            expected: expected.into(),
            from: from.into(),
            waited: None,
            got: got.into(),
            at: None,
            detail: String::new(),
        }
        .into()
    }
}

impl From<Why> for Failed {
    fn from(why: Why) -> Self {
        Self {
            why: Box::new(why),
            on_the_wire: Vec::new(),
        }
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout {
                expected,
                waited,
                got,
            } => write!(f, "expected {expected} within {}, {got}", secs(*waited)),
            Self::Status {
                expected,
                from,
                waited,
                got,
                at,
                detail,
            } => {
                write!(f, "expected {expected} from {from}")?;
                if let Some(w) = waited {
                    write!(f, " within {}", secs(*w))?;
                }
                write!(f, ", got {got}")?;
                if let Some(a) = at {
                    write!(f, " at {}", secs(*a))?;
                }
                f.write_str(detail)
            }
            Self::Media {
                expected,
                waited: Some(w),
                got,
            } => write!(f, "expected {expected} within {}, {got}", secs(*w)),
            Self::Media {
                expected,
                waited: None,
                got,
            } => write!(f, "expected {expected}, {got}"),
            Self::Checks(m) | Self::CallState(m) | Self::Transport(m) | Self::Other(m) => {
                f.write_str(m)
            }
        }
    }
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.why)?;
        if !self.on_the_wire.is_empty() {
            write!(f, "; on the wire: {}", self.on_the_wire.join("; "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_says_what_was_expected_and_what_came() {
        let ms = Duration::from_millis;
        let cases: Vec<(Failed, FailureKind, &str)> = vec![
            (
                Failed::timeout("an INVITE to bob", ms(1000), "none came"),
                FailureKind::Timeout,
                "expected an INVITE to bob within 1 s, none came",
            ),
            (
                Why::Status {
                    expected: "2xx".into(),
                    from: "bob".into(),
                    waited: Some(ms(10_000)),
                    got: "486 Busy Here".into(),
                    at: Some(ms(20)),
                    detail: String::new(),
                }
                .into(),
                FailureKind::Status,
                "expected 2xx from bob within 10 s, got 486 Busy Here at 0.02 s",
            ),
            (
                Why::Media {
                    expected: "to hear carol".into(),
                    waited: Some(ms(1000)),
                    got: "heard alice instead".into(),
                }
                .into(),
                FailureKind::Media,
                "expected to hear carol within 1 s, heard alice instead",
            ),
            (
                Failed {
                    on_the_wire: vec!["200 to the INVITE sent 7 times, no ACK".into()],
                    ..Failed::timeout("an ACK to our 200", ms(2500), "none came")
                },
                FailureKind::Timeout,
                "expected an ACK to our 200 within 2.50 s, none came; on the wire: 200 to the INVITE sent 7 times, no ACK",
            ),
            (
                Why::CallState("`call-1` is not an established call".into()).into(),
                FailureKind::CallState,
                "`call-1` is not an established call",
            ),
        ];
        for (f, kind, text) in cases {
            assert_eq!((f.kind(), f.to_string().as_str()), (kind, text));
        }
    }
}
