//! The UAs of a run, as the rest of the run needs to know them: who listens where.

use crate::SipTransport;
use std::net::SocketAddr;

/// One started UA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UaEntry {
    /// The instance id (sipflow node id or native name).
    pub id: String,
    pub label: String,
    pub dn: String,
    /// Where it listens for SIP.
    pub local: SocketAddr,
    pub transport: SipTransport,
}

impl UaEntry {
    /// `sip:<user>@<ip>:<port>`, with `;transport=tcp` (`tls`, `ws`, `wss`) on that transport.
    pub fn uri_for(&self, user: &str) -> String {
        sip_uri(user, self.local, self.transport)
    }
}

/// Where a MakeCall goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Another UA of the run, by its DN: its address is known only now.
    Local { uri: String, label: String },
    /// A full URI, used as written.
    Uri(String),
}

/// The UAs of a run, in instance order.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    entries: Vec<UaEntry>,
}

impl Registry {
    pub fn new(entries: Vec<UaEntry>) -> Self {
        Self { entries }
    }

    pub fn get(&self, idx: usize) -> &UaEntry {
        &self.entries[idx]
    }

    pub fn by_dn(&self, dn: &str) -> Option<&UaEntry> {
        self.entries.iter().find(|e| e.dn == dn)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Resolves a MakeCall target: a DN of a UA of this run, or else a URI as written.
    pub fn resolve(&self, target: &str) -> Target {
        match self.by_dn(target) {
            Some(e) => Target::Local {
                uri: e.uri_for(&e.dn),
                label: e.label.clone(),
            },
            None => Target::Uri(target.to_owned()),
        }
    }
}

/// `host:port` as it goes in a SIP URI (IPv6 in brackets).
pub fn host_port(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// `sip:<user>@<host:port>`, with `;transport=` naming any transport but UDP.
///
/// A TLS UA's URI is `sip:` with `;transport=tls`, not `sips:`: a `sips:` Contact would ask
/// every hop toward it to be TLS (RFC 5630 §3.1.3), which a call through a proxy to a UDP
/// callee cannot give; the connection itself is TLS either way.
pub fn sip_uri(user: &str, addr: SocketAddr, transport: SipTransport) -> String {
    let mut s = format!("sip:{user}@{}", host_port(addr));
    if let Some(t) = transport.uri_param() {
        s.push_str(";transport=");
        s.push_str(t);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_dns_of_the_run_and_passes_uris_through() {
        let reg = Registry::new(vec![
            UaEntry {
                id: "a".into(),
                label: "alice".into(),
                dn: "100".into(),
                local: "127.0.0.1:5060".parse().unwrap(),
                transport: SipTransport::Udp,
            },
            UaEntry {
                id: "b".into(),
                label: "bob".into(),
                dn: "200".into(),
                local: "[::1]:5062".parse().unwrap(),
                transport: SipTransport::Tcp,
            },
        ]);
        assert_eq!(
            reg.resolve("200"),
            Target::Local {
                uri: "sip:200@[::1]:5062;transport=tcp".into(),
                label: "bob".into()
            }
        );
        assert_eq!(
            reg.resolve("sip:svc@127.0.0.1:7000"),
            Target::Uri("sip:svc@127.0.0.1:7000".into())
        );
        assert_eq!(reg.get(0).uri_for("100"), "sip:100@127.0.0.1:5060");
    }
}
