//! The SIP transports a UA speaks, and how each is written in URIs and Via headers.

use std::fmt;
use std::str::FromStr;

/// A SIP transport: UDP and TCP (RFC 3261 §18), TLS (RFC 3261 §26, RFC 5630) and WebSocket,
/// plain or over TLS (RFC 7118).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SipTransport {
    #[default]
    Udp,
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl SipTransport {
    /// Every transport, in the order the docs list them.
    pub const ALL: [Self; 5] = [Self::Udp, Self::Tcp, Self::Tls, Self::Ws, Self::Wss];

    /// The lower-case name (`udp`, `tls`, ...), as a scenario writes it and as a URI's
    /// `transport` parameter carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Ws => "ws",
            Self::Wss => "wss",
        }
    }

    /// The token of a Via header's sent-protocol (`SIP/2.0/TLS`, `SIP/2.0/WSS`).
    pub fn via_token(self) -> &'static str {
        match self {
            Self::Udp => "UDP",
            Self::Tcp => "TCP",
            Self::Tls => "TLS",
            Self::Ws => "WS",
            Self::Wss => "WSS",
        }
    }

    /// The `;transport=` parameter a URI of a UA on this transport carries: none on UDP, the
    /// default of a `sip:` URI.
    pub fn uri_param(self) -> Option<&'static str> {
        (self != Self::Udp).then(|| self.as_str())
    }

    /// Carried over a connection (TCP underneath): everything but UDP.
    pub fn is_stream(self) -> bool {
        self != Self::Udp
    }

    /// Encrypted: TLS and WSS.
    pub fn is_secure(self) -> bool {
        matches!(self, Self::Tls | Self::Wss)
    }

    /// A WebSocket transport: WS and WSS.
    pub fn is_websocket(self) -> bool {
        matches!(self, Self::Ws | Self::Wss)
    }

    /// The names a scenario may write, for messages: `udp`, `tcp`, `tls`, `ws` or `wss`.
    pub fn choices() -> String {
        let names: Vec<String> = Self::ALL
            .iter()
            .map(|t| format!("`{}`", t.as_str()))
            .collect();
        let (last, rest) = names.split_last().expect("five transports");
        format!("{} or {last}", rest.join(", "))
    }
}

impl fmt::Display for SipTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transport name not among [`SipTransport::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a SIP transport; callflow speaks {choices}", choices = SipTransport::choices())]
pub struct UnknownTransport(pub String);

impl FromStr for SipTransport {
    type Err = UnknownTransport;

    /// Any case: `udp`, `UDP`, `Tls`...
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownTransport(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::SipTransport;

    #[test]
    fn names_round_trip_in_any_case() {
        for t in SipTransport::ALL {
            assert_eq!(t.as_str().parse::<SipTransport>(), Ok(t));
            assert_eq!(t.via_token().parse::<SipTransport>(), Ok(t));
        }
        assert_eq!(
            "sctp".parse::<SipTransport>().unwrap_err().to_string(),
            "`sctp` is not a SIP transport; callflow speaks `udp`, `tcp`, `tls`, `ws` or `wss`"
        );
        assert_eq!(SipTransport::Udp.uri_param(), None);
        assert_eq!(SipTransport::Wss.uri_param(), Some("wss"));
        assert!(SipTransport::Wss.is_secure() && SipTransport::Wss.is_websocket());
        assert!(!SipTransport::Ws.is_secure() && SipTransport::Tcp.is_stream());
    }
}
