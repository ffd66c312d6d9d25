//! What a UA answers to requests that no node asks about. The router reads the request and the
//! call it names and asks here; the answers are decided without a socket, so the races the
//! router has met (a BYE before the ACK, a REFER or re-INVITE right behind it, crossing BYEs at
//! cleanup) are tested as tables.

use crate::hangup::LegState;

/// The methods a call takes in its dialog (anything else gets 405 with Allow).
pub const IN_DIALOG_METHODS: &[&str] = &[
    "ACK", "BYE", "CANCEL", "INVITE", "INFO", "MESSAGE", "OPTIONS", "NOTIFY", "REFER", "UPDATE",
    "PRACK",
];

/// What the router does with a request in a dialog (its To has a tag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InDialog {
    /// A method calls do not take: 405, with Allow.
    NotAllowed,
    /// The call has ended: answer this (a crossing BYE 200, anything else 481; an ACK nothing).
    Ended(Option<u16>),
    /// A PRACK: matched against the call's reliable provisional responses here (200 or 481),
    /// never by the dialog (which drops a request whose CSeq is below the last seen).
    Prack,
    /// To the dialog at once.
    Dialog,
    /// To the dialog once the call is confirmed (or has ended), waiting at most the ACK's
    /// grace: a request right behind our 2xx can overtake the ACK, and the dialog would take a
    /// re-INVITE for the initial one or drop anything else.
    DialogWhenConfirmed,
    /// No dialog of this UA knows it: 481 (an ACK: nothing).
    Unknown(Option<u16>),
}

/// The decision for an in-dialog request of `method`, for the call it names (`call`: its leg
/// state, if the UA has one) and whether rsipstack's dialog layer knows the dialog.
pub fn in_dialog(method: &str, call: Option<LegState>, dialog_known: bool) -> InDialog {
    if !IN_DIALOG_METHODS.contains(&method) {
        return InDialog::NotAllowed;
    }
    if call == Some(LegState::Terminated)
        && let Some(answer) = answer_for_ended_call(method)
    {
        return InDialog::Ended(Some(answer));
    }
    if method == "PRACK" && call.is_some() {
        return InDialog::Prack;
    }
    let live = call.is_some_and(|s| s != LegState::Terminated);
    if !live && !dialog_known {
        return InDialog::Unknown((method != "ACK").then_some(481));
    }
    // An UPDATE in the early dialog (before any 2xx) is taken there (RFC 3311).
    let early_update = method == "UPDATE" && call == Some(LegState::Early);
    if call.is_some() && !matches!(method, "ACK" | "CANCEL" | "PRACK") && !early_update {
        InDialog::DialogWhenConfirmed
    } else {
        InDialog::Dialog
    }
}

/// What the router does with a request outside any dialog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutOfDialog {
    /// A new call: 100, 180, then held for an INCOMING node.
    Invite,
    /// 200 with our capabilities (Allow, Supported, Accept).
    Capabilities,
    /// A MESSAGE, an unsolicited NOTIFY, an INFO: 200, kept for REQUEST.
    Take,
    /// Nothing: a stray ACK.
    Ignore,
    /// A BYE or CANCEL for no call: 481.
    NoCall,
    /// 405, with Allow.
    NotAllowed,
}

pub fn out_of_dialog(method: &str) -> OutOfDialog {
    match method {
        "INVITE" => OutOfDialog::Invite,
        "OPTIONS" => OutOfDialog::Capabilities,
        "MESSAGE" | "NOTIFY" | "INFO" => OutOfDialog::Take,
        "ACK" => OutOfDialog::Ignore,
        "BYE" | "CANCEL" => OutOfDialog::NoCall,
        _ => OutOfDialog::NotAllowed,
    }
}

/// The answer to an in-dialog request for a call that has ended (our own BYE went out while the
/// peer's crossed it, as cleanup does on both sides of a call between our own UAs): a crossing
/// BYE gets its 200, an ACK nothing, anything else 481 (RFC 3261 §12.2.2).
pub fn answer_for_ended_call(method: &str) -> Option<u16> {
    match method {
        "ACK" => None,
        "BYE" => Some(200),
        _ => Some(481),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_races_met_before_are_decided_here() {
        use InDialog::*;
        use LegState::*;
        let table = [
            // A BYE before the ACK of our 200 (a fast caller, a reordering proxy): it waits
            // for the confirmation; the dialog then takes it (it counts as the ACK for Answer).
            ("BYE", Some(Confirmed), true, DialogWhenConfirmed),
            // A REFER 1 ms after the ACK, a re-INVITE right behind it: the same.
            ("REFER", Some(Confirmed), true, DialogWhenConfirmed),
            ("INVITE", Some(Confirmed), false, DialogWhenConfirmed),
            // Crossing BYEs at cleanup: ours went out, theirs gets its 200, not silence.
            ("BYE", Some(Terminated), true, Ended(Some(200))),
            ("INFO", Some(Terminated), true, Ended(Some(481))),
            // An ACK for an ended call is absorbed by the dialog layer if it still knows it.
            ("ACK", Some(Terminated), true, Dialog),
            ("ACK", None, false, Unknown(None)),
            ("ACK", Some(Confirmed), true, Dialog),
            ("CANCEL", Some(Early), true, Dialog),
            ("UPDATE", Some(Early), true, Dialog),
            ("UPDATE", Some(Confirmed), true, DialogWhenConfirmed),
            ("PRACK", Some(Early), true, Prack),
            ("PRACK", None, true, Dialog),
            ("BYE", None, false, Unknown(Some(481))),
            // A dialog rsipstack knows without a call of ours (a subscription's, a transfer's).
            ("NOTIFY", None, true, Dialog),
            ("SUBSCRIBE", Some(Confirmed), true, NotAllowed),
            ("PUBLISH", None, false, NotAllowed),
        ];
        for (method, call, known, want) in table {
            assert_eq!(
                in_dialog(method, call, known),
                want,
                "{method} {call:?} {known}"
            );
        }
    }

    #[test]
    fn outside_a_dialog_each_method_has_its_answer() {
        use OutOfDialog::*;
        for (method, want) in [
            ("INVITE", Invite),
            ("OPTIONS", Capabilities),
            ("MESSAGE", Take),
            ("NOTIFY", Take),
            ("INFO", Take),
            ("ACK", Ignore),
            ("BYE", NoCall),
            ("CANCEL", NoCall),
            ("REGISTER", NotAllowed),
        ] {
            assert_eq!(out_of_dialog(method), want, "{method}");
        }
    }

    #[test]
    fn a_crossing_bye_is_answered_200_and_an_ack_not_at_all() {
        assert_eq!(answer_for_ended_call("BYE"), Some(200));
        assert_eq!(answer_for_ended_call("ACK"), None);
        assert_eq!(answer_for_ended_call("INFO"), Some(481));
    }
}
