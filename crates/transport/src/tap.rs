//! Recording what crosses the wire.

use crate::intake::Intake;
use rsipstack::platform::net::UdpSocket as PlatformUdpSocket;
use rsipstack::sip::SipMessage;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::transport::Transport;
use rsipstack::transport::connection::TransportSender;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, SipConnection, TransportEvent};
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

/// The largest datagram read: a UDP payload is at most 65,507 bytes over IPv4 (65,527 over
/// IPv6); rsipstack's own reads stop at 8 KB and lose the rest silently.
pub const MAX_DATAGRAM: usize = 65_536;

/// A UDP socket that reports every datagram it sends or receives, and checks each received one
/// at the door ([`crate::intake`]): a malformed request is answered here (400, 505, 501) and not
/// handed on; a datagram larger than rsipstack's read buffer is handed on through `large`.
pub(crate) struct TappedUdp {
    pub(crate) socket: tokio::net::UdpSocket,
    pub(crate) local: SocketAddr,
    pub(crate) tap: Arc<dyn WireTap>,
    /// Where a datagram too large for rsipstack's buffer goes (set once its connection exists).
    pub(crate) large: std::sync::OnceLock<(TransportSender, UdpConnection)>,
}

impl TappedUdp {
    pub(crate) fn new(
        socket: tokio::net::UdpSocket,
        local: SocketAddr,
        tap: Arc<dyn WireTap>,
    ) -> Self {
        Self {
            socket,
            local,
            tap,
            large: std::sync::OnceLock::new(),
        }
    }

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

    /// Hands a message larger than rsipstack's read buffer to its transport layer, as its own
    /// UDP loop would have.
    fn deliver_large(&self, bytes: &[u8], from: SocketAddr) {
        let Some((tx, conn)) = self.large.get() else {
            return;
        };
        let msg = SipMessage::try_from(bytes)
            .map_err(|e| e.to_string())
            .and_then(|m| {
                SipConnection::update_msg_received(m, from, Transport::Udp)
                    .map_err(|e| e.to_string())
            });
        match msg {
            Ok(msg) => {
                let source = SipAddr {
                    r#type: Some(Transport::Udp),
                    addr: from.into(),
                };
                let _ = tx.send(TransportEvent::Incoming(
                    msg,
                    SipConnection::Udp(conn.clone()),
                    source,
                ));
            }
            Err(e) => tracing::warn!(%from, error = %e, "a large datagram could not be handed on"),
        }
    }
}

/// What one datagram read comes to.
enum Read {
    /// A message for rsipstack, copied into its buffer: its length and sender.
    Deliver(usize, SocketAddr),
    /// A malformed request: send this answer back.
    Answer(Vec<u8>, SocketAddr),
    /// Nothing for rsipstack (dropped, handed on as a large datagram, or no datagram yet).
    Again,
}

thread_local! {
    /// The read buffer ([`MAX_DATAGRAM`]), one per thread rather than one per UA: a read is
    /// taken from the socket and handled without an await, so it never leaves its thread, and
    /// 4,000 UAs do not hold 4,000 buffers of 64 KB.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; MAX_DATAGRAM]);
}

impl TappedUdp {
    /// Takes one datagram if one is there, checks it at the door and puts a message for
    /// rsipstack into `buf`.
    fn read_one(&self, buf: &mut [u8]) -> std::io::Result<Read> {
        READ_BUF.with_borrow_mut(|own| {
            let (n, from) = match self.socket.try_recv_from(&mut own[..]) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(Read::Again),
                Err(e) => return Err(e),
            };
            let bytes = &own[..n];
            self.record(WireDirection::Received, from, bytes);
            if is_keepalive(bytes) && n <= buf.len() {
                buf[..n].copy_from_slice(bytes);
                return Ok(Read::Deliver(n, from));
            }
            let verdict = crate::intake::check(bytes);
            verdict.log(from);
            Ok(match verdict {
                Intake::Pass { offset, len } => {
                    let message = &bytes[offset..offset + len];
                    if len <= buf.len() {
                        buf[..len].copy_from_slice(message);
                        return Ok(Read::Deliver(len, from));
                    }
                    self.deliver_large(message, from);
                    Read::Again
                }
                Intake::Answer { response, .. } => Read::Answer(response, from),
                Intake::Drop { .. } => Read::Again,
            })
        })
    }
}

#[async_trait::async_trait]
impl PlatformUdpSocket for TappedUdp {
    async fn recv_from(&self, buf: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        loop {
            self.socket.readable().await?;
            match self.read_one(buf)? {
                Read::Deliver(n, from) => return Ok((n, from)),
                Read::Answer(response, from) => {
                    let _ = self.send_to(&response, from).await;
                }
                Read::Again => {}
            }
        }
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

/// Parses the summary out of raw bytes; `None` when they are not a SIP message. Every message
/// a UA sends or receives is summarized for the event stream: a well-formed one is scanned for
/// its start line, Call-ID and CSeq (what rsipstack's parser would say of them, without parsing
/// every header a third time); anything else goes through the parser.
pub fn parse_summary(bytes: &[u8]) -> Option<MessageSummary> {
    scan_summary(bytes).or_else(|| parsed_summary(bytes))
}

/// The summary of a well-formed message from its start line, Call-ID and CSeq alone; `None`
/// when anything is not as expected (the parser then decides).
fn scan_summary(bytes: &[u8]) -> Option<MessageSummary> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let first = lines.next()?;
    let (mut call_id, mut cseq) = (None, None);
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        let name = name.trim_end();
        let slot = if name.eq_ignore_ascii_case("call-id") || name == "i" {
            &mut call_id
        } else if name.eq_ignore_ascii_case("cseq") {
            &mut cseq
        } else {
            continue;
        };
        // Twice is for the parser to judge.
        if slot.replace(value).is_some() {
            return None;
        }
    }
    let (call_id, cseq) = (call_id?.to_owned(), cseq?.to_owned());
    let mut cseq_parts = cseq.split_whitespace();
    cseq_parts.next()?.parse::<u32>().ok()?;
    let cseq_method = cseq_parts.next()?.to_owned();
    if let Some(rest) = first.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let status: u16 = code.parse().ok().filter(|c| (100..700).contains(c))?;
        return Some(MessageSummary {
            method: cseq_method,
            status: Some(status),
            reason: Some(reason.trim().to_owned()).filter(|r| !r.is_empty()),
            call_id,
            cseq,
        });
    }
    let mut parts = first.split(' ');
    let (method, _uri, version) = (parts.next()?, parts.next()?, parts.next()?);
    let known = crate::intake::is_known_method(method);
    (known && version == "SIP/2.0" && parts.next().is_none()).then(|| MessageSummary {
        method: method.to_owned(),
        status: None,
        reason: None,
        call_id,
        cseq,
    })
}

/// The summary through rsipstack's parser.
fn parsed_summary(bytes: &[u8]) -> Option<MessageSummary> {
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

    /// The scan says what the parser says, for every message of the bundled captures and the
    /// SIP texts of the tests' fixtures.
    #[test]
    fn the_scan_agrees_with_the_parser() {
        let texts = [
            "INVITE sip:200@127.0.0.1:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:100@127.0.0.1>;tag=a\r\nTo: <sip:200@127.0.0.1>\r\ni: short@x\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n",
            "SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:100@127.0.0.1>;tag=a\r\nTo: <sip:200@127.0.0.1>;tag=b\r\nCall-ID: abc@x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:100@127.0.0.1>;tag=a\r\nTo: <sip:200@127.0.0.1>;tag=b\r\ncall-id: abc@x\r\ncseq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
            "BYE sip:100@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK2\r\nFrom: <sip:200@127.0.0.1>;tag=b\r\nTo: <sip:100@127.0.0.1>;tag=a\r\nCall-ID: abc@x\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n",
        ];
        for t in texts {
            assert_eq!(
                scan_summary(t.as_bytes()),
                parsed_summary(t.as_bytes()),
                "{t}"
            );
        }
        // The reason phrase as sent (the parser would give a known code's standard one).
        let custom = "SIP/2.0 183 Session Progress Now\r\nCall-ID: abc@x\r\nCSeq: 1 INVITE\r\n\r\n";
        let s = parse_summary(custom.as_bytes()).expect("summary");
        assert_eq!(s.reason.as_deref(), Some("Session Progress Now"));
        // What the scan does not take, the parser decides.
        let two_call_ids = "BYE sip:a@b SIP/2.0\r\nCall-ID: x\r\nCall-ID: y\r\nCSeq: 1 BYE\r\n\r\n";
        assert!(scan_summary(two_call_ids.as_bytes()).is_none());
        assert!(
            scan_summary(b"FOO sip:a@b SIP/2.0\r\nCall-ID: x\r\nCSeq: 1 FOO\r\n\r\n").is_none()
        );
    }
}
