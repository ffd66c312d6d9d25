//! Cleanup's first step, planned: what each leg still up gets (BYE, CANCEL or 480), which
//! hang-up already under way is waited for instead of repeated, and which call a transfer left
//! behind is first given to the transferor to end. The driver carries the plan out, each leg
//! bounded by the step's limit.

use crate::hangup::{HangupAction, LegState, Role, hangup_action};

/// A leg as cleanup sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leg {
    pub role: Role,
    pub state: LegState,
    /// A node (a Release) or an earlier step started hanging it up.
    pub hangup_started: bool,
    /// An outgoing INVITE with no response at all: its CANCEL cannot go before one comes
    /// (RFC 3261 §9.1).
    pub unanswered: bool,
    /// A transfer moved the call's logical id to a new call: the transferor ends this one
    /// (RFC 5589 §6).
    pub superseded: bool,
}

/// What cleanup does with one leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegPlan {
    /// What to send (Nothing: it has ended, or a hang-up is already under way).
    pub action: HangupAction,
    /// Wait for the hang-up already under way, for what is left of the limit since it began.
    pub wait_in_flight: bool,
    /// Give the transferor half the limit to end it before sending our own.
    pub transferor_first: bool,
}

/// What cleanup's hang-up step did, by kind.
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
    fn count(&mut self, a: HangupAction) {
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

/// The plan for every leg, in order, and what it will have done (`unfinished` is the driver's
/// to fill in).
pub fn plan(legs: &[Leg]) -> (Vec<LegPlan>, HangupReport) {
    let mut report = HangupReport::default();
    let plans = legs
        .iter()
        .map(|leg| {
            let nothing = LegPlan {
                action: HangupAction::Nothing,
                wait_in_flight: false,
                transferor_first: false,
            };
            if leg.state == LegState::Terminated {
                report.count(HangupAction::Nothing);
                return nothing;
            }
            if leg.hangup_started {
                report.in_progress += 1;
                return LegPlan {
                    wait_in_flight: true,
                    transferor_first: leg.superseded,
                    ..nothing
                };
            }
            let action = hangup_action(leg.role, leg.state);
            if action == HangupAction::Cancel && leg.unanswered {
                report.cancel_held += 1;
            } else {
                report.count(action);
            }
            LegPlan {
                action,
                wait_in_flight: false,
                transferor_first: leg.superseded,
            }
        })
        .collect();
    (plans, report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leg(role: Role, state: LegState) -> Leg {
        Leg {
            role,
            state,
            hangup_started: false,
            unanswered: false,
            superseded: false,
        }
    }

    #[test]
    fn cleanup_plans_bye_cancel_and_480_and_waits_for_what_is_under_way() {
        use HangupAction::*;
        use LegState::*;
        use Role::*;
        let legs = [
            leg(Outgoing, Confirmed),
            leg(Incoming, Confirmed),
            leg(Outgoing, Early),
            leg(Incoming, Early),
            leg(Outgoing, Terminated),
            // A Release whose BYE is still out: waited for, not sent again (a second BYE
            // would get 481).
            Leg {
                hangup_started: true,
                ..leg(Outgoing, Confirmed)
            },
            // A CANCEL cannot go before a provisional response: planned, counted apart.
            Leg {
                unanswered: true,
                ..leg(Outgoing, Early)
            },
            // A transferred-away call at cleanup: the transferor gets the first chance.
            Leg {
                superseded: true,
                ..leg(Incoming, Confirmed)
            },
        ];
        let (plans, report) = plan(&legs);
        let actions: Vec<HangupAction> = plans.iter().map(|p| p.action).collect();
        assert_eq!(
            actions,
            [Bye, Bye, Cancel, Reject(480), Nothing, Nothing, Cancel, Bye]
        );
        assert!(plans[5].wait_in_flight && !plans[0].wait_in_flight);
        assert!(plans[7].transferor_first && !plans[1].transferor_first);
        assert_eq!(
            report.to_string(),
            "3 BYE, 1 CANCEL, 1 rejected, 1 already ended, 1 INVITE with no response (CANCEL held back until one comes, RFC 3261 §9.1), 1 already under way"
        );
    }

    fn any_leg() -> impl Strategy<Value = Leg> {
        (
            prop_oneof![Just(Role::Outgoing), Just(Role::Incoming)],
            prop_oneof![
                Just(LegState::Early),
                Just(LegState::Confirmed),
                Just(LegState::Terminated)
            ],
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(role, state, hangup_started, unanswered, superseded)| Leg {
                    role,
                    state,
                    hangup_started,
                    unanswered,
                    superseded,
                },
            )
    }

    proptest! {
        /// Every leg still up gets a hang-up, or its hang-up under way is waited for; a leg
        /// that ended gets nothing; every leg is counted once.
        #[test]
        fn cleanup_plans_a_hang_up_for_every_leg_still_up(legs in prop::collection::vec(any_leg(), 0..40)) {
            let (plans, r) = plan(&legs);
            prop_assert_eq!(plans.len(), legs.len());
            for (leg, p) in legs.iter().zip(&plans) {
                let up = leg.state != LegState::Terminated;
                prop_assert_eq!(up, p.action != HangupAction::Nothing || p.wait_in_flight, "{:?} {:?}", leg, p);
                prop_assert!(!(p.wait_in_flight && p.action != HangupAction::Nothing));
            }
            let counted = r.bye + r.cancel + r.cancel_held + r.reject + r.already_ended + r.in_progress;
            prop_assert_eq!(counted, legs.len());
        }
    }
}
