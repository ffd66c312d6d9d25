//! The engine's decisions, sans-IO (in the manner of quinn-proto and str0m): what a UA answers,
//! how a call is hung up, when a session timer fires. Nothing here touches a socket, a runtime
//! or a clock: the orchestrator observes, asks, and carries out what it is told. `clippy.toml`
//! keeps it that way (no `Instant::now`, no sleeps, no sockets).
//!
//! The chain cursor ([`chains::Flow`]) decides which node of which iteration runs when, with
//! its timer table; the other modules are the pure decisions of a call.

pub mod calls;
pub mod chains;
pub mod cleanup;
pub mod extensions;
pub mod failure;
pub mod hangup;
pub mod routing;
pub mod session_timer;
pub mod sim;

pub use hangup::{HangupAction, LegState, Role, hangup_action};

/// A duration as failure messages say it: `10 s`, `2.50 s`.
pub fn secs(d: std::time::Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 10.0 || s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.2} s")
    }
}
