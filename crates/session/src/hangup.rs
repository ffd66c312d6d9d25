//! What cleanup's hang-up step did (what hanging up means is decided in `flow::hangup`).

use flow::HangupAction;

/// What [`crate::Sessions::hangup_all`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HangupReport {
    pub bye: usize,
    /// CANCELs sent (the INVITE had a provisional response).
    pub cancel: usize,
    /// Outgoing calls whose INVITE had no response at all: their CANCEL is held back until one
    /// comes (RFC 3261 §9.1), so none was sent.
    pub cancel_held: usize,
    pub reject: usize,
    pub already_ended: usize,
    /// Calls whose hang-up was already under way (started by a node), waited for.
    pub in_progress: usize,
    /// Calls still not ended when the limit ran out.
    pub unfinished: usize,
}

impl HangupReport {
    pub(crate) fn count(&mut self, a: HangupAction) {
        match a {
            HangupAction::Bye => self.bye += 1,
            HangupAction::Cancel => self.cancel += 1,
            HangupAction::Reject(_) => self.reject += 1,
            HangupAction::Nothing => self.already_ended += 1,
        }
    }
}

impl std::fmt::Display for HangupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} BYE, {} CANCEL, {} rejected, {} already ended",
            self.bye, self.cancel, self.reject, self.already_ended
        )?;
        if self.cancel_held > 0 {
            write!(
                f,
                ", {} INVITE with no response (CANCEL held back until one comes, RFC 3261 §9.1)",
                self.cancel_held
            )?;
        }
        if self.in_progress > 0 {
            write!(f, ", {} already under way", self.in_progress)?;
        }
        if self.unfinished > 0 {
            write!(f, ", {} still not ended at the limit", self.unfinished)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_held_back_is_not_counted_as_sent() {
        let r = HangupReport {
            cancel_held: 1,
            ..HangupReport::default()
        };
        assert_eq!(
            r.to_string(),
            "0 BYE, 0 CANCEL, 0 rejected, 0 already ended, 1 INVITE with no response (CANCEL held back until one comes, RFC 3261 §9.1)"
        );
    }
}
