//! The ACK that answers a late offer (RFC 3261 §13.2.1, RFC 3264 §4): an INVITE we sent without
//! SDP gets the offer in its 2xx, and the answer belongs in the ACK.
//!
//! rsipstack sends the 2xx ACK itself, from inside the INVITE client transaction (and again for
//! each retransmitted 2xx), with no body. The UA's message inspector sees the 2xx before
//! rsipstack does and the ACK just before it goes out: on the 2xx it asks the UA for the answer
//! to the offer (an [`AckAnswer`], set once the UA is up) and keeps it; on the ACK it puts it in.

use crate::by_dialog::{ByDialog, key};
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, SipMessage};
use std::sync::{Arc, OnceLock};

/// The UA's answer to the offer in the 2xx of the INVITE with this Call-ID, when that INVITE
/// was a late offer of ours; `None` for any other 2xx.
pub type AckAnswer = Arc<dyn Fn(&str, &[u8]) -> Option<Vec<u8>> + Send + Sync>;

#[derive(Default)]
pub(crate) struct LateOffers {
    pub(crate) answer: OnceLock<AckAnswer>,
    kept: ByDialog<Vec<u8>>,
}

impl LateOffers {
    /// A 2xx to an INVITE with an offer: keeps the UA's answer, if the INVITE was a late offer.
    pub(crate) fn saw(&self, msg: &SipMessage) {
        let SipMessage::Response(resp) = msg else {
            return;
        };
        let invite = resp
            .cseq_header()
            .ok()
            .and_then(|c| c.method().ok())
            .is_some_and(|m| m == Method::Invite);
        if !(200..300).contains(&resp.status_code.code())
            || !invite
            || resp.body.trim_ascii().is_empty()
        {
            return;
        }
        let (Some(answer), Some(k)) = (self.answer.get(), key(&resp.headers)) else {
            return;
        };
        let call_id = k.0.clone();
        self.kept.insert_with(k, || answer(&call_id, &resp.body));
    }

    /// Our ACK of such a 2xx carries the answer; our INVITE without an offer names no
    /// Content-Type (rsipstack always puts one in).
    pub(crate) fn amend(&self, msg: SipMessage) -> SipMessage {
        let SipMessage::Request(mut req) = msg else {
            return msg;
        };
        match req.method {
            Method::Ack => {
                let body = key(&req.headers).and_then(|k| self.kept.get(&k));
                if let Some(body) = body.filter(|_| req.body.is_empty()) {
                    req.headers
                        .unique_push(Header::ContentType("application/sdp".into()));
                    req.headers
                        .unique_push(Header::ContentLength((body.len() as u32).into()));
                    req.body = body;
                }
            }
            Method::Invite if req.body.is_empty() => {
                req.headers.retain(|h| !matches!(h, Header::ContentType(_)));
            }
            _ => {}
        }
        SipMessage::Request(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:a@127.0.0.1>;tag=f1\r\nTo: <sip:bob@127.0.0.1>;tag=t9\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@127.0.0.1>\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n";
    const ACK: &str = "ACK sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK2\r\nFrom: <sip:a@127.0.0.1>;tag=f1\r\nTo: <sip:bob@127.0.0.1>;tag=t9\r\nCall-ID: c1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn the_ack_of_a_late_offer_carries_the_uas_answer() {
        let late = LateOffers::default();
        let hook: AckAnswer = Arc::new(|call_id: &str, offer: &[u8]| {
            (call_id == "c1" && offer.starts_with(b"v=0")).then(|| b"v=0 answer".to_vec())
        });
        let _ = late.answer.set(hook);
        late.saw(&SipMessage::try_from(OK).expect("a 200"));
        let SipMessage::Request(ack) = late.amend(SipMessage::try_from(ACK).expect("an ACK"))
        else {
            panic!("a request");
        };
        assert_eq!(ack.body, b"v=0 answer");
        let text = ack.to_string();
        assert!(text.contains("Content-Type: application/sdp"), "{text}");
        assert!(text.contains("Content-Length: 10"), "{text}");
        // Another dialog's ACK is left alone.
        let other = ACK.replace("Call-ID: c1", "Call-ID: c2");
        let SipMessage::Request(ack) =
            late.amend(SipMessage::try_from(other.as_str()).expect("an ACK"))
        else {
            panic!("a request");
        };
        assert!(ack.body.is_empty());
    }
}
