//! The remote target and route set of early dialogs, for the PRACKs rsipstack sends.
//!
//! rsipstack PRACKs a reliable provisional response (RFC 3262) from inside its INVITE client
//! transaction, addressed to the INVITE's Request-URI: the dialog's remote target is only taken
//! from the 2xx. RFC 3262 §4 and RFC 3261 §12.1.2 put the PRACK in the early dialog the 18x
//! created: to its Contact, through the route set its Record-Route gives. The UA's message
//! inspector sees every response before rsipstack does and every request just before it goes
//! out, so it records that target here and puts it in the PRACK's request line (and Route
//! headers when the PRACK has none). Where the datagram goes was decided before: the INVITE's
//! next hop, which is the proxy whenever there is one.

use crate::by_dialog::{ByDialog, key, value_of};
use rsipstack::sip::{Header, Request, Response, SipMessage, Uri};

/// An early dialog's remote target and route set.
#[derive(Clone, Debug, PartialEq)]
struct Target {
    contact: Uri,
    /// The Record-Route values of the 18x, reversed (RFC 3261 §12.1.2).
    routes: Vec<String>,
}

/// Early dialogs by Call-ID and remote (To) tag.
#[derive(Default)]
pub(crate) struct EarlyTargets {
    targets: ByDialog<Target>,
}

impl EarlyTargets {
    /// Records the early dialog of a reliable provisional response.
    pub(crate) fn saw(&self, msg: &SipMessage) {
        let SipMessage::Response(resp) = msg else {
            return;
        };
        if let Some((k, t)) = reliable_target(resp) {
            self.targets.insert_with(k, || Some(t));
        }
    }

    /// A PRACK addressed to its early dialog's remote target, with its route set.
    pub(crate) fn aim(&self, msg: SipMessage) -> SipMessage {
        let SipMessage::Request(mut req) = msg else {
            return msg;
        };
        if req.method == rsipstack::sip::Method::PRack
            && let Some(k) = key(&req.headers)
            && let Some(t) = self.targets.get(&k)
        {
            aim_at(&mut req, &t);
        }
        SipMessage::Request(req)
    }
}

fn reliable_target(resp: &Response) -> Option<(crate::by_dialog::Key, Target)> {
    let code = resp.status_code.code();
    if !(101..200).contains(&code)
        || !crate::header::option_tags(&resp.headers, "Require")
            .iter()
            .any(|t| t == "100rel")
    {
        return None;
    }
    let contact = value_of(&resp.headers, "Contact", "m").and_then(crate::header::name_addr_uri)?;
    let mut routes: Vec<String> = resp
        .headers
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case("Record-Route"))
        .flat_map(|h| {
            h.value()
                .split(',')
                .map(|v| v.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    routes.reverse();
    Some((key(&resp.headers)?, Target { contact, routes }))
}

fn aim_at(req: &mut Request, t: &Target) {
    req.uri = t.contact.clone();
    let routed = req
        .headers
        .iter()
        .any(|h| h.name().eq_ignore_ascii_case("Route"));
    if !routed {
        for r in &t.routes {
            req.headers.push(Header::Route(r.as_str().into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELIABLE_180: &str = "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nRecord-Route: <sip:p2.example;lr>\r\nRecord-Route: <sip:p1.example;lr>\r\nFrom: <sip:a@127.0.0.1>;tag=f1\r\nTo: <sip:bob@127.0.0.1>;tag=t9\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@127.0.0.2:5070;transport=udp>\r\nRequire: 100rel\r\nRSeq: 7\r\nContent-Length: 0\r\n\r\n";

    fn prack(extra: &str) -> SipMessage {
        SipMessage::try_from(format!("PRACK sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK2\r\nFrom: <sip:a@127.0.0.1>;tag=f1\r\nTo: <sip:bob@127.0.0.1>;tag=t9\r\nCall-ID: c1\r\nCSeq: 2 PRACK\r\nRAck: 7 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n").as_str())
            .expect("a PRACK")
    }

    #[test]
    fn a_prack_goes_to_the_contact_of_its_reliable_18x_through_its_route_set() {
        let early = EarlyTargets::default();
        early.saw(&SipMessage::try_from(RELIABLE_180).expect("a 180"));
        let SipMessage::Request(req) = early.aim(prack("")) else {
            panic!("a request");
        };
        assert_eq!(
            req.uri.to_string().to_ascii_lowercase(),
            "sip:bob@127.0.0.2:5070;transport=udp"
        );
        let routes: Vec<&str> = req
            .headers
            .iter()
            .filter(|h| h.name() == "Route")
            .map(|h| h.value())
            .collect();
        assert_eq!(routes, ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]);
    }

    #[test]
    fn other_requests_and_unreliable_18x_are_left_alone() {
        let early = EarlyTargets::default();
        early.saw(
            &SipMessage::try_from(RELIABLE_180.replace("Require: 100rel\r\n", "").as_str())
                .expect("a 180"),
        );
        let SipMessage::Request(req) = early.aim(prack("")) else {
            panic!("a request");
        };
        assert_eq!(req.uri.to_string(), "sip:bob@127.0.0.1");
        early.saw(&SipMessage::try_from(RELIABLE_180).expect("a 180"));
        let SipMessage::Request(req) = early.aim(prack("Route: <sip:own;lr>\r\n")) else {
            panic!("a request");
        };
        assert_eq!(
            req.headers.iter().filter(|h| h.name() == "Route").count(),
            1,
            "a Route of its own is kept"
        );
    }
}
