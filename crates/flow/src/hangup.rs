//! What "hang up" means for a call in a given state: which legs get BYE, CANCEL or 480.

/// Which side of the INVITE we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We sent the INVITE (UAC).
    Outgoing,
    /// We received the INVITE (UAS).
    Incoming,
}

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

#[cfg(test)]
mod tests {
    use super::*;

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
