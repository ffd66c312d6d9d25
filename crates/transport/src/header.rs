//! Reading header values the way SIP writes them: a name-addr's URI, a list of option tags.

use rsipstack::sip::{Headers, Uri};

/// The URI of the first element of a Contact, Record-Route or similar value
/// (`"Bob" <sip:bob@h;lr>;p=1, <sip:x@y>` gives `sip:bob@h;lr`; a bare `sip:a@h;p=1` gives
/// `sip:a@h`).
pub fn name_addr_uri(value: &str) -> Option<Uri> {
    let v = value.split(',').next()?.trim();
    let inner = match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v.split(';').next().unwrap_or(v),
    };
    Uri::try_from(inner.trim()).ok()
}

/// The option tags every `name` header lists (`Supported` also in its compact form `k`), lower
/// case, in order.
pub fn option_tags(headers: &Headers, name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|h| {
            h.name().eq_ignore_ascii_case(name)
                || (name.eq_ignore_ascii_case("Supported") && h.name().eq_ignore_ascii_case("k"))
        })
        .flat_map(|h| {
            h.value()
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uri_of_a_name_addr_and_of_a_bare_uri() {
        let u = |v| name_addr_uri(v).map(|u| u.to_string());
        assert_eq!(
            u("\"Bob\" <sip:bob@h;lr>;p=1, <sip:x@y>").as_deref(),
            Some("sip:bob@h;lr")
        );
        assert_eq!(u("sip:a@h;expires=5").as_deref(), Some("sip:a@h"));
        assert_eq!(u("<>"), None);
    }

    #[test]
    fn option_tags_of_every_header_and_the_compact_form() {
        let msg = rsipstack::sip::SipMessage::try_from(
            "OPTIONS sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:b@h>;tag=1\r\nTo: <sip:a@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nSupported: Timer, replaces\r\nk: 100rel\r\nRequire: 100rel\r\nContent-Length: 0\r\n\r\n",
        )
        .expect("a request");
        let rsipstack::sip::SipMessage::Request(req) = msg else {
            panic!("a request");
        };
        assert_eq!(
            option_tags(&req.headers, "Supported"),
            ["timer", "replaces", "100rel"]
        );
        assert_eq!(option_tags(&req.headers, "Require"), ["100rel"]);
    }
}
