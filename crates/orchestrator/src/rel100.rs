//! Reliable provisional responses (RFC 3262) on the callee's side, and the extensions an INVITE
//! may require (RFC 3261 §8.2.2.3): which INVITEs are taken, which get 420 or 421, and the
//! sending of reliable 18x with RSeq, retransmitted until their PRACK.

use crate::ua::UaShared;
use events::Level;
use scenario::Rel100;
use session::{Call, LegState};
use std::sync::Arc;
use std::time::Duration;
use transport::sip::{Header, Request, StatusCode};

/// RFC 3261's T1: the first retransmission interval of a reliable provisional response.
const T1: Duration = Duration::from_millis(500);

pub(crate) use flow::extensions::{Intake, supported};

/// Decides on an INVITE for a UA whose 100rel setting is `mode` (`flow::extensions::intake`
/// over the INVITE's option tags).
pub(crate) fn intake(mode: Rel100, invite: &Request) -> Intake {
    flow::extensions::intake(
        mode,
        &transport::header::option_tags(&invite.headers, "Require"),
        &transport::header::option_tags(&invite.headers, "Supported"),
    )
}

/// The RSeq and CSeq number of a PRACK's RAck (`RAck: 776656 1 INVITE`).
pub(crate) fn rack(req: &Request) -> Option<(u32, u32)> {
    let v = crate::routing::header(req, "RAck")?;
    let mut f = v.split_whitespace();
    let rseq = f.next()?.parse().ok()?;
    let cseq = f.next()?.parse().ok()?;
    f.next()
        .filter(|m| m.eq_ignore_ascii_case("INVITE"))
        .map(|_| (rseq, cseq))
}

impl UaShared {
    /// Sends a 180 (or, with `sdp`, a 183 with it) on an incoming call, as
    /// [`Self::provisional_now`] does; a reliable one first waits, up to `wait`, for the PRACK
    /// of the one before it (RFC 3262 §3: one at a time).
    pub(crate) async fn send_provisional(
        &self,
        call: &Arc<Call>,
        sdp: Option<String>,
        wait: Duration,
    ) -> Result<(), String> {
        if call.provisionals_reliable()
            && let Some((rseq, _)) = call.unacked_provisional()
            && tokio::time::timeout(wait, call.wait_pracked())
                .await
                .is_err()
        {
            return Err(format!(
                "the reliable provisional response before this one (RSeq {rseq}) got no PRACK within {} s, and RFC 3262 §3 allows one at a time",
                wait.as_secs_f64()
            ));
        }
        self.provisional_now(call, sdp)
    }

    /// Sends a 180 (or, with `sdp`, a 183 with it) on an incoming call: reliable when the call's
    /// provisionals are (with Require: 100rel and RSeq, retransmitted from T1 on, doubling,
    /// until its PRACK comes; after 64×T1 without one the INVITE is refused with 500, RFC 3262
    /// §3).
    pub(crate) fn provisional_now(
        &self,
        call: &Arc<Call>,
        sdp: Option<String>,
    ) -> Result<(), String> {
        let code = if sdp.is_some() { 183 } else { 180 };
        let mut headers = Vec::new();
        if sdp.is_some() {
            headers.push(crate::calls::sdp_header());
        }
        let body = sdp.map(String::into_bytes);
        if !call.provisionals_reliable() {
            return call
                .dialog
                .ringing((!headers.is_empty()).then_some(headers), body)
                .map_err(|e| format!("cannot send {code}: {e}"));
        }
        if call.leg_state() != LegState::Early {
            return Ok(());
        }
        let rseq = call.begin_reliable_provisional(body.is_some());
        headers.push(crate::calls::make_header("Require", "100rel"));
        headers.push(crate::calls::make_header("RSeq", &rseq.to_string()));
        call.dialog
            .ringing(Some(headers.clone()), body.clone())
            .map_err(|e| format!("cannot send {code}: {e}"))?;
        let (bus, ua, call) = (self.bus.clone(), self.id.clone(), call.clone());
        self.spawn(async move {
            let mut interval = T1;
            let mut waited = Duration::ZERO;
            while waited < 64 * T1 {
                let acked = tokio::time::timeout(interval, call.wait_pracked()).await;
                if acked.is_ok() || call.leg_state() != LegState::Early {
                    return;
                }
                waited += interval;
                interval *= 2;
                let _ = call.dialog.ringing(Some(headers.clone()), body.clone());
            }
            if call.leg_state() == LegState::Early && call.unacked_provisional().is_some() {
                crate::ua::log(
                    &bus,
                    Level::Warning,
                    Some(&ua),
                    None,
                    call.name().as_deref(),
                    format!(
                        "the reliable {code} (RSeq {rseq}) got no PRACK within {} s: the INVITE is refused with 500 (RFC 3262 §3)",
                        (64 * T1).as_secs()
                    ),
                );
                let _ = call.dialog.reject(
                    Some(StatusCode::ServerInternalError),
                    Some(crate::calls::reason_value(500, "no PRACK")),
                );
            }
        });
        Ok(())
    }

    /// Refuses `tx`'s INVITE as `intake` says (420 or 421), if it does.
    pub(crate) async fn refuse_extensions(
        &self,
        tx: &mut transport::rsipstack::transaction::transaction::Transaction,
    ) -> bool {
        let Intake::Refuse { code, headers, why } = intake(self.rel100, &tx.original) else {
            return false;
        };
        self.log(Level::Warning, None, None, format!("{why}: {code}"));
        let headers: Vec<Header> = headers
            .iter()
            .map(|(n, v)| crate::calls::make_header(n, v))
            .collect();
        let _ = tx.reply_with(StatusCode::from(code), headers, None).await;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::invite;

    #[test]
    fn an_invite_requiring_100rel_gets_reliable_provisionals_or_420_when_off() {
        let req = invite("Require: 100rel\r\n");
        assert_eq!(
            intake(Rel100::Supported, &req),
            Intake::Take { reliable: true }
        );
        let Intake::Refuse { code, headers, .. } = intake(Rel100::Off, &req) else {
            panic!("refused");
        };
        assert_eq!(
            (code, headers),
            (420, vec![("Unsupported", "100rel".to_owned())])
        );
    }

    #[test]
    fn supported_only_is_reliable_when_we_require_it_and_none_is_421() {
        let k = invite("k: timer, 100rel\r\n");
        assert_eq!(
            intake(Rel100::Supported, &k),
            Intake::Take { reliable: false }
        );
        assert_eq!(
            intake(Rel100::Required, &k),
            Intake::Take { reliable: true }
        );
        let plain = invite("");
        assert!(matches!(
            intake(Rel100::Required, &plain),
            Intake::Refuse { code: 421, .. }
        ));
        assert_eq!(
            intake(Rel100::Off, &plain),
            Intake::Take { reliable: false }
        );
    }

    #[test]
    fn an_unknown_required_extension_is_named_in_the_420() {
        let Intake::Refuse { code, headers, .. } =
            intake(Rel100::Supported, &invite("Require: 100rel, foo\r\n"))
        else {
            panic!("refused");
        };
        assert_eq!(
            (code, headers),
            (420, vec![("Unsupported", "foo".to_owned())])
        );
        assert_eq!(
            intake(Rel100::Supported, &invite("Require: replaces, timer\r\n")),
            Intake::Take { reliable: false }
        );
    }

    #[test]
    fn rack_reads_rseq_and_cseq_of_an_invite() {
        let mut req = invite("RAck: 776656 1 INVITE\r\n");
        req.method = transport::sip::Method::PRack;
        assert_eq!(rack(&req), Some((776_656, 1)));
        let bad = invite("RAck: 1 1 BYE\r\n");
        assert_eq!(rack(&bad), None);
    }
}
