//! The callflow engine: runs a [`scenario::Scenario`] against real sockets and reports every step
//! as an [`events::Event`].
//!
//! ```text
//! validate (scenario crate) ─► start UAs: lease port, endpoint, router + dialog-state tasks
//!        ─► one task per UA runs its chains; nodes of another UA are handed to that UA's task
//!        ─► cleanup: hangup_all (BYE / CANCEL / 480, wait) ─► close_all ─► tear down UAs
//!        ─► leak check (calls, rsipstack dialogs, leased ports) ─► run_finished
//! ```
//!
//! A failing node with no failure edge fails the run and cancels every chain at once. A stop
//! request ends the run the same way with the outcome `stopped`. Each cleanup step is bounded, so
//! a run returns within [`RunOptions::step_limit`] × 2 (plus a little) of a stop.

mod bus;
mod calls;
mod checks;
mod engine;
mod exec;
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
