//! Recording what crosses the wire.

use rsipstack::platform::net::UdpSocket as PlatformUdpSocket;
use rsipstack::sip::SipMessage;
use rsipstack::sip::prelude::HeadersExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireDirection {
    Sent,
    Received,
}

/// One SIP message as it crossed a socket.
#[derive(Clone, Debug)]
pub struct WireRecord {
    pub at: SystemTime,
    pub direction: WireDirection,
    /// `udp` or `tcp`.
    pub transport: &'static str,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub bytes: Vec<u8>,
}

/// Receives every recorded message. Called on the I/O path: keep it quick (push to a channel).
pub trait WireTap: Send + Sync {
    fn record(&self, record: WireRecord);
}

impl<F: Fn(WireRecord) + Send + Sync> WireTap for F {
    fn record(&self, record: WireRecord) {
        self(record);
    }
}

/// Keepalives (CRLF) are not SIP messages.
pub(crate) fn is_keepalive(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| b.is_ascii_whitespace())
}

/// A UDP socket that reports every datagram it sends or receives.
pub(crate) struct TappedUdp {
    pub(crate) socket: tokio::net::UdpSocket,
    pub(crate) local: SocketAddr,
    pub(crate) tap: Arc<dyn WireTap>,
}

impl TappedUdp {
    fn record(&self, direction: WireDirection, peer: SocketAddr, bytes: &[u8]) {
        if !is_keepalive(bytes) {
            self.tap.record(WireRecord {
                at: SystemTime::now(),
                direction,
                transport: "udp",
                local: self.local,
                peer,
                bytes: bytes.to_vec(),
            });
        }
    }
}

#[async_trait::async_trait]
impl PlatformUdpSocket for TappedUdp {
    async fn recv_from(&self, buf: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        let (n, from) = self.socket.recv_from(buf).await?;
        self.record(WireDirection::Received, from, &buf[..n]);
        Ok((n, from))
    }

    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> rsipstack::Result<usize> {
        // Recorded before it leaves: the answer may otherwise be recorded first.
        self.record(WireDirection::Sent, addr, buf);
        Ok(self.socket.send_to(buf, addr).await?)
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// The fields of a SIP message a person scans first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageSummary {
    /// The request method, or the CSeq method of a response.
    pub method: String,
    pub status: Option<u16>,
    pub reason: Option<String>,
    pub call_id: String,
    pub cseq: String,
}

/// Parses the summary out of raw bytes; `None` when they are not a SIP message.
pub fn parse_summary(bytes: &[u8]) -> Option<MessageSummary> {
    let msg = SipMessage::try_from(bytes).ok()?;
    let call_id = msg
        .call_id_header()
        .map(|h| h.value().to_string())
        .unwrap_or_default();
    let cseq = msg
        .cseq_header()
        .map(|h| h.value().to_string())
        .unwrap_or_default();
    let cseq_method = cseq
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    Some(match msg {
        SipMessage::Request(r) => MessageSummary {
            method: r.method.to_string(),
            status: None,
            reason: None,
            call_id,
            cseq,
        },
        SipMessage::Response(r) => MessageSummary {
            method: cseq_method,
            status: Some(u16::from(r.status_code.clone())),
            reason: Some(r.status_code.text().to_string()).filter(|t| !t.is_empty()),
            call_id,
            cseq,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_request_and_response() {
        let invite = b"INVITE sip:200@127.0.0.1:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:100@127.0.0.1>;tag=a\r\nTo: <sip:200@127.0.0.1>\r\nCall-ID: abc@x\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let s = parse_summary(invite).unwrap();
        assert_eq!(
            (
                s.method.as_str(),
                s.status,
                s.call_id.as_str(),
                s.cseq.as_str()
            ),
            ("INVITE", None, "abc@x", "1 INVITE")
        );
        let ringing = b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:100@127.0.0.1>;tag=a\r\nTo: <sip:200@127.0.0.1>;tag=b\r\nCall-ID: abc@x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let s = parse_summary(ringing).unwrap();
        assert_eq!(
            (s.method.as_str(), s.status, s.reason.as_deref()),
            ("INVITE", Some(180), Some("Ringing"))
        );
        assert!(parse_summary(b"\r\n\r\n").is_none());
        assert!(is_keepalive(b"\r\n\r\n"));
    }
}
