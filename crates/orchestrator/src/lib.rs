//! The callflow engine: runs a [`scenario::Scenario`] against real sockets and reports every step
//! as an [`events::Event`]. It is the IO driver of the flow (`flow::chains::Flow`), which decides.
//!
//! ```text
//! validate (scenario crate) ─► sidecars ─► start UAs: lease port, endpoint, router +
//!        dialog-state tasks ─► register
//!        ─► the flow hands over nodes: each runs in a task of its own (exec) and hands in its
//!           result; the session hands in every call binding and call event; the flow decides
//!           what runs next, the event nodes, TIMEOUT and `after` (engine::Driver)
//!        ─► cleanup: hangup_all (BYE / CANCEL / 480, wait) ─► close_all ─► unregister
//!        ─► tear down UAs ─► stop sidecars
//!        ─► leak check (calls, rsipstack dialogs, leased ports) ─► run_finished
//! ```
//!
//! A failing node with no failure edge fails the run: the flow ends its iteration, the nodes
//! running are cancelled. A stop request ends the run the same way with the outcome `stopped`.
//! Each cleanup step is bounded by [`RunOptions::step_limit`] (docs/ARCHITECTURE.md gives the
//! whole bound).

mod bus;
mod calls;
mod checks;
pub mod data;
mod engine;
mod exec;
pub mod load;
mod pbx;
mod rel100;
mod requests;
mod routing;
mod session_timer;
mod sidecar;
mod ua;

pub use bus::{Collector, EventBus, EventSink};
pub use engine::{Limits, RunOptions, RunReport, run};
pub use instances::PortPolicy;
/// Simulated loss of the RTP a UA receives ([`RunOptions::rtp_loss`]).
pub use media::rtp::Loss as RtpLoss;

/// What the crate's unit tests share.
#[cfg(test)]
mod test_support {
    use transport::sip::Request;

    /// An INVITE with `extra` headers (each ending in CRLF) and no body.
    pub(crate) fn invite(extra: &str) -> Request {
        let text = format!(
            "INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Request::try_from(text.as_str()).expect("a request")
    }
}
