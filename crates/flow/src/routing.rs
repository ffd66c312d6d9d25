//! What a UA answers to requests that no node asks about.

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
    fn a_crossing_bye_is_answered_200_and_an_ack_not_at_all() {
        assert_eq!(answer_for_ended_call("BYE"), Some(200));
        assert_eq!(answer_for_ended_call("ACK"), None);
        assert_eq!(answer_for_ended_call("INFO"), Some(481));
    }
}
