//! The engine's decisions, sans-IO (in the manner of quinn-proto and str0m): what a UA answers,
//! how a call is hung up, when a session timer fires. Nothing here touches a socket, a runtime
//! or a clock: the orchestrator observes, asks, and carries out what it is told. `clippy.toml`
//! keeps it that way (no `Instant::now`, no sleeps, no sockets).
//!
//! This is the first part of the engine-core redesign: the decisions that were already pure
//! moved here from session and orchestrator; the chain cursor and its timer table come next.

pub mod extensions;
pub mod hangup;
pub mod routing;
pub mod session_timer;

pub use hangup::{HangupAction, LegState, Role, hangup_action};
