//! SIP transport for callflow: one rsipstack endpoint per user agent, over UDP or TCP, on sockets
//! built here (socket options such as a large `SO_RCVBUF`), with a tap that records every SIP
//! message sent and received with its raw bytes, real addresses and a timestamp.
//!
//! This crate is the one place the rest of the workspace gets its SIP types from:
//! [`rsipstack`] is re-exported, and with it `rsipstack::sip` (no second `rsip` universe).
//!
//! ```text
//!   orchestrator ──► UaEndpoint { endpoint, dialog layer, incoming, dialog states }
//!                         │
//!        rsipstack TransportLayer ── UdpConnection(TappedUdp) ──► socket ─► WireTap::record
//!                                 └─ TcpListenerConnection ─────► inspectors ─► WireTap::record
//! ```
//!
//! The UDP tap sits under rsipstack, so it sees what crossed the socket, retransmissions
//! included; rsipstack's own `MessageInspector` misses retransmissions and absorbed ACKs.

mod by_dialog;
mod early;
mod endpoint;
pub mod header;
pub mod intake;
mod late;
mod tap;
mod tcp_socket;
pub mod tls;
pub mod ws;

pub use endpoint::{
    DEFAULT_MAX_TCP_CONNECTIONS, DEFAULT_RCVBUF, DEFAULT_TCP_IDLE_TIMEOUT, EndpointSettings,
    TransportError, UaEndpoint, bind_udp, check_tcp,
};
pub use late::AckAnswer;
pub use rsipstack;

/// rsipstack's name for a transport.
pub fn rsip_transport(t: instances::SipTransport) -> sip::transport::Transport {
    use rsipstack::sip::transport::Transport;
    match t {
        instances::SipTransport::Udp => Transport::Udp,
        instances::SipTransport::Tcp => Transport::Tcp,
        instances::SipTransport::Tls => Transport::Tls,
        instances::SipTransport::Ws => Transport::Ws,
        instances::SipTransport::Wss => Transport::Wss,
    }
}
pub use rsipstack::sip;
pub use tap::{MAX_DATAGRAM, MessageSummary, WireDirection, WireRecord, WireTap, parse_summary};
