//! What "hang up" means for a call in a given state: decided here, without sockets.

use crate::call::Role;

/// Where a call stands, as far as hanging it up is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegState {
    /// INVITE sent or received, no final response yet.
    Early,
    /// 2xx sent or received (ACK pending or done).
    Confirmed,
    Terminated,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HangupAction {
    /// A confirmed call: BYE.
    Bye,
    /// An outgoing call still ringing: CANCEL.
    Cancel,
    /// An incoming call never answered: reject it with this code.
    Reject(u16),
    Nothing,
}

/// The one place that decides how a call is hung up.
pub fn hangup_action(role: Role, state: LegState) -> HangupAction {
    match (role, state) {
        (_, LegState::Terminated) => HangupAction::Nothing,
        (_, LegState::Confirmed) => HangupAction::Bye,
        (Role::Outgoing, LegState::Early) => HangupAction::Cancel,
        (Role::Incoming, LegState::Early) => HangupAction::Reject(480),
    }
}

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

    #[test]
    fn every_state_has_its_hangup() {
        use HangupAction::*;
        use LegState::*;
        let table = [
            (Role::Outgoing, Early, Cancel),
            (Role::Outgoing, Confirmed, Bye),
            (Role::Outgoing, Terminated, Nothing),
            (Role::Incoming, Early, Reject(480)),
            (Role::Incoming, Confirmed, Bye),
            (Role::Incoming, Terminated, Nothing),
        ];
        for (role, state, want) in table {
            assert_eq!(hangup_action(role, state), want, "{role:?} {state:?}");
        }
    }
}
