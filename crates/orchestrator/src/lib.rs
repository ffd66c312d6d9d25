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
