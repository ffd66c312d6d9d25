//! The engine's decisions, sans-IO (in the manner of quinn-proto and str0m). Nothing here
//! touches a socket, a runtime or a clock: the orchestrator observes, asks, and carries out what
//! it is told. `clippy.toml` keeps it that way (no `Instant::now`, no sleeps, no sockets).
//!
//! - [`chains::Flow`]: which node of which iteration runs when (the chain cursor of each role,
//!   edges, failure per iteration, a stop), with its timer table (every node's timeout) and
//!   [`calls`], the latched per-call logs its event nodes wait on; the requests' final
//!   responses (a MakeCall's INVITEs, REQUEST, SUBSCRIBE).
//! - [`failure`]: why a node failed, as data, put in words in one place.
//! - [`dial`]: what a MakeCall does with a final response (take, ask again, follow, fail), and
//!   whether a REQUEST's passes.
//! - [`media`]: the verdicts of DTMF_RECEIVED, TONE and CHECK_MEDIA on what the media measured.
//! - [`cleanup`], [`hangup`]: how every leg still up is hung up at cleanup.
//! - [`routing`], [`extensions`], [`session_timer`]: what a UA answers to requests no node
//!   asks about, which INVITEs it takes, and its session timers.
//! - [`sim`]: a scripted SIP world with fake time, on which every fixture runs in memory.

pub mod calls;
pub mod chains;
pub mod cleanup;
pub mod dial;
pub mod extensions;
pub mod failure;
pub mod hangup;
pub mod media;
pub mod pacing;
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
