//! `callflow load`: one scenario as the template of many iterations over one set of UAs (one
//! SIP endpoint per role, SIPp's mono-socket mode). Each iteration has its own calls, timers and
//! verdict (the flow keys everything by iteration); when one ends, its calls are hung up and
//! closed and its ports go back, so memory follows the calls in flight, not the calls made.
//!
//! - A scenario with a role whose chain starts with a command *originates*: a pacer starts
//!   iterations on an absolute schedule (`flow::pacing`), or keeps `users` in flight. Its INVITEs
//!   to the run's own roles name their iteration, so each reaches that iteration's INCOMING.
//! - A scenario whose every chain starts with INCOMING *answers*: each INVITE that no running
//!   iteration claims starts one (`sipp -sn uac` can load it).
//!
//! A load always has a bound (`calls` or `duration`) and stops by itself; a stop (Ctrl-C) or
//! too many failures ends the iterations in flight with the ordered cleanup. The statistics
//! ([`LoadStats`]) are aggregates fed by the event stream.

pub mod kept;
pub mod metrics;
pub mod stats;

use crate::bus::EventBus;
use crate::engine::{self, Driver, RunOptions, Stage};
use crate::ua::log;
use events::{LeakCheck, Level};
use flow::chains::{Flow, Input, Verdict};
pub use flow::pacing::Ramp;
use flow::pacing::Schedule;
pub use kept::{Kept, KeptIteration};
pub use metrics::Metrics;
use scenario::{Action as Step, Scenario};
use serde::Serialize;
pub use stats::{LoadStats, Percentiles, Snapshot};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How iterations start.
#[derive(Clone, Debug)]
pub enum Pacing {
    /// New iterations per second, on an absolute schedule, ramping if asked.
    Rate(Ramp),
    /// Closed loop: `users` in flight, a new one as soon as one ends; the first `users` start
    /// at `ramp` per second.
    Users { users: usize, ramp: f64 },
}

/// How to run a load.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub run: RunOptions,
    pub pacing: Pacing,
    /// Iterations in all, whoever starts them.
    pub calls: Option<u64>,
    /// No iteration starts after this long; those in flight end on their own.
    pub duration: Option<Duration>,
    /// Iterations in flight at most (a start due meanwhile waits, and is counted late).
    pub max_concurrent: Option<usize>,
    /// More failed iterations than this stop the load.
    pub max_failures: u64,
    /// How often `on_tick` hears a snapshot.
    pub interval: Duration,
}

/// What a load did: the summary (`--summary`), and whether it was set up at all.
#[derive(Clone, Debug)]
pub struct LoadReport {
    pub summary: Summary,
    /// The set-up failed (exit 3): nothing was started.
    pub setup_error: Option<String>,
}

/// The summary of a load, as `--summary` writes it (docs/load.md, schema version 1).
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub schema_version: u32,
    pub scenario: String,
    pub file: String,
    /// `originate` (a pacer starts iterations) or `answer` (each INVITE starts one).
    pub mode: &'static str,
    /// `passed` (failures within --max-failures), `failed`, `stopped`, `setup_error`.
    pub outcome: &'static str,
    pub duration_s: f64,
    pub calls: Calls,
    pub rate: Rate,
    pub concurrency: Concurrency,
    pub memory: Memory,
    /// Per phase: pdd (INVITE to first 18x), setup (INVITE to 2xx), bye (BYE to its final
    /// response), register (REGISTER to 2xx), answered (the callee's: INVITE to ACK),
    /// iteration (start to end), iteration_from_schedule (from when it was due: coordinated
    /// omission), start_lag (start against schedule).
    pub latency_ms: BTreeMap<String, Percentiles>,
    /// Each node's duration, by node id.
    pub nodes_ms: BTreeMap<String, Percentiles>,
    pub retransmissions: Retransmissions,
    /// Responses by status code.
    pub responses: Responses,
    /// The generator, not the peer, was the limit: starts skipped or late by an interval.
    pub generator_limited: bool,
    pub generator: Generator,
    pub leaks: LeakCheck,
    /// The first failures' messages.
    pub first_failures: Vec<String>,
    /// The histograms behind `latency_ms`, HDR V2 base64, in microseconds: summaries of several
    /// generators merge exactly.
    pub histograms: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Calls {
    pub attempted: u64,
    pub passed: u64,
    pub failed: u64,
    pub stopped: u64,
    pub failures_by_class: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Rate {
    /// Per second (the last step of a ramp); none when answering or closed-loop.
    pub target: Option<f64>,
    /// Iterations started per second, from the first start to the last.
    pub achieved: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Concurrency {
    pub max_in_flight: u64,
    pub limit: Option<usize>,
}

/// What the load held at its peak (sampled every interval).
#[derive(Clone, Debug, Serialize)]
pub struct Memory {
    pub peak_rss_mb: f64,
    /// rsipstack's transactions, running and finished-but-kept: a UAC's INVITE transaction
    /// lingers 64 s after its call (Timer M, then the finished-transaction cache), about 25 KB
    /// each, so a load at R calls/s holds about R x 64 of them whatever its calls in flight.
    pub peak_transactions: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Retransmissions {
    pub sent: u64,
    pub received: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Responses {
    pub received: BTreeMap<String, u64>,
    pub sent: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Generator {
    /// Starts skipped: due more than one interval before the pacer could start them.
    pub missed_starts: u64,
    /// Starts 10 ms or more behind their schedule.
    pub late_starts: u64,
    pub max_lag_ms: f64,
    /// Time spent at the concurrency limit with starts due.
    pub capped_s: f64,
}

/// Whether every chain of the scenario starts with INCOMING: it answers.
pub fn answers(s: &Scenario) -> bool {
    let mut starts = s.instances.iter().flat_map(|i| &i.starts).peekable();
    starts.peek().is_some() && starts.all(|&n| matches!(s.nodes[n].action, Step::Incoming { .. }))
}

/// Runs `scenario` as a load. `stats` is fed by the event stream (make it one of `bus`'s
/// sinks); `on_tick` hears a snapshot every [`LoadOptions::interval`].
///
/// Cancel safety: not cancel safe; stop it with the run options' stop token.
pub async fn load(
    scenario: &Scenario,
    opts: LoadOptions,
    bus: Arc<EventBus>,
    stats: Arc<LoadStats>,
    mut on_tick: impl FnMut(&Snapshot),
) -> LoadReport {
    let began = Instant::now();
    let answering = answers(scenario);
    let stage = engine::set_up(scenario, &opts.run, &bus).await;
    let register_load = registers_only(&stage);
    // The data's users register before the first call (a REGISTER load's register as it runs).
    let mut accounts = Vec::new();
    let failure = match stage.setup_failure.clone() {
        Some(f) => Some(f),
        None if register_load => None,
        None => register_users(&stage, &opts, &mut accounts)
            .await
            .err()
            .map(|message| {
                log(&bus, Level::Error, None, None, None, message.clone());
                events::Failure {
                    node: None,
                    ua: None,
                    kind: events::FailureKind::Setup,
                    status: None,
                    message,
                }
            }),
    };
    if let Some(f) = failure {
        unregister_users(&stage, &opts, accounts).await;
        let (leaks, cleanup) = engine::tear_down(stage, &opts.run).await;
        finished(
            &bus,
            events::Outcome::Failed,
            Some(f.clone()),
            leaks,
            cleanup,
        );
        engine::flush(&bus).await;
        let mut summary = summarize(scenario, &opts, answering, &stats, &Progress::default());
        summary.outcome = "setup_error";
        summary.leaks = leaks;
        summary.duration_s = began.elapsed().as_secs_f64();
        return LoadReport {
            summary,
            setup_error: Some(f.message),
        };
    }
    let registered = Arc::new(std::sync::Mutex::new(accounts));
    // A REGISTER load's iterations register on their own; a call load keeps its users fresh.
    let refresher = (!register_load)
        .then(|| tokio::spawn(refresh_users(stage.ctx.bus.clone(), registered.clone())));
    let progress = drive(&stage, &opts, answering, &stats, &registered, &mut on_tick).await;
    if let Some(r) = refresher {
        r.abort();
    }
    let accounts = std::mem::take(&mut *registered.lock().expect("accounts lock"));
    unregister_users(&stage, &opts, accounts).await;
    let (leaks, cleanup) = engine::tear_down(stage, &opts.run).await;
    // The statistics have every event before they are read.
    engine::flush(&bus).await;
    let mut summary = summarize(scenario, &opts, answering, &stats, &progress);
    summary.leaks = leaks;
    summary.duration_s = began.elapsed().as_secs_f64();
    summary.outcome = if progress.stopped {
        "stopped"
    } else if summary.calls.failed > opts.max_failures || !leaks.is_clean() {
        "failed"
    } else {
        "passed"
    };
    if !leaks.is_clean() {
        summary
            .first_failures
            .push(engine::leak_failure(&leaks).message);
    }
    let outcome = match summary.outcome {
        "passed" => events::Outcome::Passed,
        "stopped" => events::Outcome::Stopped,
        _ => events::Outcome::Failed,
    };
    let failure = stats
        .first_failure()
        .or_else(|| (!leaks.is_clean()).then(|| engine::leak_failure(&leaks)));
    finished(&bus, outcome, failure, leaks, cleanup);
    engine::flush(&bus).await;
    LoadReport {
        summary,
        setup_error: None,
    }
}

/// A load's stream ends as a run's does: `run_finished`, with no per-node results (the
/// summary has the per-node statistics).
fn finished(
    bus: &EventBus,
    outcome: events::Outcome,
    failure: Option<events::Failure>,
    leaks: LeakCheck,
    cleanup: Duration,
) {
    bus.emit(events::EventKind::RunFinished(events::RunFinished {
        outcome,
        duration_ms: bus.elapsed().as_secs_f64() * 1000.0,
        cleanup_ms: cleanup.as_secs_f64() * 1000.0,
        failure,
        leaks,
        nodes: Vec::new(),
    }));
}

/// A user a role registers for the load (its row's account, or the role's own DN).
struct Account {
    ua: Arc<crate::ua::UaShared>,
    user: String,
    credential: Option<transport::rsipstack::dialog::authenticate::Credential>,
    expires: u32,
}

impl Account {
    /// REGISTERs the user (`expires` 0 unregisters); a refusal says why, with its status when
    /// one came.
    async fn register(&self, expires: u32) -> Result<(), (Option<u16>, String)> {
        match self
            .ua
            .register_as(&self.user, self.credential.clone(), expires)
            .await
        {
            Ok(o) if (200..300).contains(&o.code) => Ok(()),
            Ok(o) => Err((Some(o.code), format!("{} {}", o.code, o.text))),
            Err(e) => Err((None, e)),
        }
    }
}

/// Registers every user of the data's rows on each role whose PBX account is a template
/// (`dn: ${caller}`), before the first call: a role holds one endpoint, and each of its users
/// registers it as their contact. Each user registered goes into `registered`; the first
/// refusal fails the set-up.
async fn register_users(
    stage: &Stage,
    opts: &LoadOptions,
    registered: &mut Vec<Account>,
) -> Result<(), String> {
    let Some(data) = opts.run.data.as_deref() else {
        return Ok(());
    };
    let mut accounts: Vec<Account> = Vec::new();
    for ua in &stage.ctx.uas {
        let Some(pbx) = ua
            .pbx
            .as_ref()
            .filter(|p| p.register && p.template.is_some())
        else {
            continue;
        };
        for row in 1..=data.rows() {
            let Some((user, credential)) = pbx.credential_for(data, row as u32) else {
                continue;
            };
            if accounts
                .iter()
                .any(|a| a.ua.idx == ua.idx && a.user == user)
            {
                continue;
            }
            accounts.push(Account {
                ua: ua.clone(),
                user,
                credential,
                expires: pbx.expires,
            });
        }
    }
    let n = accounts.len();
    let mut accounts = accounts.into_iter().peekable();
    // At most 32 REGISTERs in flight: a registrar is not the load's target.
    while accounts.peek().is_some() {
        let chunk: Vec<Account> = accounts.by_ref().take(32).collect();
        let results = futures::future::join_all(chunk.iter().map(|a| a.register(a.expires))).await;
        // Every user this chunk registered is kept (to be unregistered), whatever failed.
        let mut refused = None;
        for (a, r) in chunk.into_iter().zip(results) {
            match r {
                Ok(()) => registered.push(a),
                Err((_, why)) => {
                    refused.get_or_insert_with(|| {
                        format!("registration of {} on {} failed: {why}", a.user, a.ua.label)
                    });
                }
            }
        }
        if let Some(refused) = refused {
            return Err(refused);
        }
    }
    if n > 0 {
        log(
            &stage.ctx.bus,
            Level::Info,
            None,
            None,
            None,
            format!("registered {n} users of the data"),
        );
    }
    Ok(())
}

/// The users registered so far, to unregister at the end.
type Registered = Arc<std::sync::Mutex<Vec<Account>>>;

/// Whether the scenario only registers (no chains; an instance with a PBX that registers):
/// a REGISTER load, each iteration a registration of its row's user on each such role.
fn registers_only(stage: &Stage) -> bool {
    let s = &stage.ctx.scenario;
    s.instances.iter().all(|i| i.starts.is_empty())
        && stage
            .ctx
            .uas
            .iter()
            .any(|u| u.pbx.as_ref().is_some_and(|p| p.register))
}

/// One iteration of a REGISTER load: each registering role registers the iteration's user
/// (its row's, or its own DN); the first refusal fails it, by status.
async fn register_iteration(
    uas: &[Arc<crate::ua::UaShared>],
    data: Option<&crate::data::Data>,
    iteration: u32,
    registered: &Registered,
) -> Verdict {
    for ua in uas {
        let Some(pbx) = ua.pbx.as_ref().filter(|p| p.register) else {
            continue;
        };
        let (user, credential) = data
            .and_then(|d| pbx.credential_for(d, iteration))
            .unwrap_or_else(|| (ua.dn.clone(), pbx.credential.clone()));
        let account = Account {
            ua: ua.clone(),
            user,
            credential,
            expires: pbx.expires,
        };
        if let Err((status, why)) = account.register(account.expires).await {
            return Verdict::Failed(events::Failure {
                node: None,
                ua: Some(ua.id.clone()),
                kind: if status.is_some() {
                    events::FailureKind::Status
                } else {
                    events::FailureKind::Transport
                },
                status,
                message: format!("REGISTER of {} on {}: {why}", account.user, ua.label),
            });
        }
        let mut r = registered.lock().expect("accounts lock");
        if !r
            .iter()
            .any(|a| a.ua.idx == ua.idx && a.user == account.user)
        {
            r.push(account);
        }
    }
    Verdict::Passed
}

/// Keeps the data's users registered through a long load: every user again at 80 % of the
/// shortest expiry, 32 REGISTERs at a time, until aborted. A refusal is logged (the calls of
/// that user will say the rest).
async fn refresh_users(bus: Arc<EventBus>, registered: Registered) {
    loop {
        let accounts: Vec<Account> = registered
            .lock()
            .expect("accounts lock")
            .iter()
            .map(|a| Account {
                ua: a.ua.clone(),
                user: a.user.clone(),
                credential: a.credential.clone(),
                expires: a.expires,
            })
            .collect();
        let Some(expires) = accounts.iter().map(|a| a.expires).min() else {
            return;
        };
        tokio::time::sleep(Duration::from_secs(u64::from(expires) * 4 / 5)).await;
        for chunk in accounts.chunks(32) {
            let results =
                futures::future::join_all(chunk.iter().map(|a| a.register(a.expires))).await;
            for (a, r) in chunk.iter().zip(results) {
                if let Err((_, why)) = r {
                    log(
                        &bus,
                        Level::Error,
                        Some(&a.ua.id),
                        None,
                        None,
                        format!("refreshing the registration of {}: {why}", a.user),
                    );
                }
            }
        }
    }
}

/// Unregisters what [`register_users`] registered (Expires: 0), bounded by the step limit.
async fn unregister_users(stage: &Stage, opts: &LoadOptions, accounts: Vec<Account>) {
    if accounts.is_empty() {
        return;
    }
    let all = futures::future::join_all(accounts.iter().map(|a| a.register(0)));
    if tokio::time::timeout(opts.run.step_limit, all)
        .await
        .is_err()
    {
        log(
            &stage.ctx.bus,
            Level::Warning,
            None,
            None,
            None,
            "unregistering the data's users hit its limit".into(),
        );
    }
}

/// What the pacer saw.
#[derive(Debug, Default)]
struct Progress {
    stopped: bool,
    first_start: Option<Instant>,
    last_start: Option<Instant>,
    missed: u64,
    capped: Duration,
    target: Option<f64>,
}

/// Starts iterations until a bound says stop, collects each that ends (its statistics, its
/// cleanup), and returns once none is in flight.
async fn drive(
    stage: &Stage,
    opts: &LoadOptions,
    answering: bool,
    stats: &Arc<LoadStats>,
    registered: &Registered,
    on_tick: &mut impl FnMut(&Snapshot),
) -> Progress {
    let ctx = &stage.ctx;
    let register_load = registers_only(stage);
    let driver = Driver::new(
        ctx.clone(),
        Flow::new(ctx.scenario.clone()),
        &stage.sessions,
    );
    {
        let mut st = driver.state();
        st.starts.left = opts.calls.unwrap_or(u64::MAX);
        st.starts.answering = answering;
    }
    let start = Instant::now();
    let end_of_starts = opts.duration.map(|d| start + d);
    let mut schedule = match (&opts.pacing, answering) {
        (_, true) => None,
        (Pacing::Rate(ramp), false) => Some(Schedule::new(*ramp, start)),
        (Pacing::Users { ramp, .. }, false) => {
            Some(Schedule::new(Ramp::constant(ramp.max(0.001)), start))
        }
    };
    let users = match opts.pacing {
        Pacing::Users { users, .. } => Some(users as u64),
        Pacing::Rate(_) => None,
    };
    let cap = opts.max_concurrent.map(|c| c as u64);
    let layers = Arc::new(stage.layers());
    let (cleaned_tx, mut cleaned_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut cleaning = 0u64;
    let mut progress = Progress {
        target: match (&opts.pacing, answering) {
            (Pacing::Rate(r), false) => Some(r.rate),
            _ => None,
        },
        ..Progress::default()
    };
    let mut closed = false;
    let mut stop_sent = false;
    let mut next_tick = start + opts.interval;
    let mut last_started = 0u64;
    let mut started_at_tick = 0u64;
    let mut capped_since: Option<Instant> = None;
    loop {
        // The loop's wake-ups that are ready at once (a stop) must not starve the runtime's
        // other tasks (the iterations' cleanup, the CLI's stop bound) on one thread.
        tokio::task::consume_budget().await;
        let now = Instant::now();
        // Collect what ended: statistics now, cleanup on a task of its own.
        let (ended, running, mut started, left) = {
            let mut st = driver.state();
            let st = &mut *st;
            let ended: Vec<_> = st
                .ended
                .drain(..)
                .map(|(i, v)| {
                    st.flow.forget(i);
                    (i, v, st.starts.due.remove(&i))
                })
                .collect();
            (
                ended,
                st.starts.due.len() as u64,
                u64::from(st.starts.next - 1),
                st.starts.left,
            )
        };
        for (i, verdict, due) in ended {
            let (due, began) = due.unwrap_or((now, now));
            let took = now.saturating_duration_since(began);
            if let Some(d) = &opts.run.data {
                d.release(i);
            }
            stats.ended(&verdict, took, now.saturating_duration_since(due));
            let (outcome, failure) = match verdict {
                Verdict::Passed => (events::Outcome::Passed, None),
                Verdict::Failed(f) => (events::Outcome::Failed, Some(f)),
                Verdict::Stopped => (events::Outcome::Stopped, None),
            };
            ctx.bus
                .emit(events::EventKind::IterationEnded(events::IterationEnded {
                    iteration: i,
                    outcome,
                    failure,
                    duration_ms: took.as_secs_f64() * 1000.0,
                    call_ids: stage
                        .sessions
                        .of_iteration(i)
                        .iter()
                        .map(|c| c.sip_call_id())
                        .collect(),
                }));
            cleaning += 1;
            let (sessions, layers, tx) =
                (stage.sessions.clone(), layers.clone(), cleaned_tx.clone());
            let limit = opts.run.step_limit;
            tokio::spawn(async move {
                sessions.end_iteration(i, limit, &layers).await;
                let _ = tx.send(());
            });
        }
        while cleaned_rx.try_recv().is_ok() {
            cleaning -= 1;
        }
        if started > last_started {
            progress.first_start.get_or_insert(now);
            progress.last_start = Some(now);
            last_started = started;
        }
        let in_flight = running + cleaning;
        stats.progress(started, in_flight);
        // Bounds.
        if !stop_sent {
            // Why no more start, and whether the iterations in flight end now too (a stop, too
            // many failures: also once every start was made) or on their own (the bounds).
            let why = if opts.run.stop.is_cancelled() {
                progress.stopped = true;
                Some(("stop requested", true))
            } else if stats.failed() > opts.max_failures {
                Some(("too many failures", true))
            } else if closed {
                None
            } else if end_of_starts.is_some_and(|e| now >= e) {
                Some(("duration reached", false))
            } else if left == 0 {
                Some(("every call started", false))
            } else {
                None
            };
            if let Some((why, end_in_flight)) = why {
                closed = true;
                driver.state().starts.closed = true;
                if end_in_flight {
                    log(
                        &ctx.bus,
                        Level::Warning,
                        None,
                        None,
                        None,
                        format!("{why}: ending the iterations in flight"),
                    );
                    stop_sent = true;
                    driver.with_flow(|st| st.flow.handle(now, Input::Stop));
                }
            }
        }
        if closed && in_flight == 0 {
            break;
        }
        // Start what is due.
        let mut next_due = None;
        if !closed && let Some(sched) = schedule.as_mut() {
            let mut in_flight = in_flight;
            loop {
                let full =
                    cap.is_some_and(|c| in_flight >= c) || users.is_some_and(|u| in_flight >= u);
                let ramping = users.is_none_or(|u| started < u);
                if full {
                    if sched.peek() <= now && users.is_none() {
                        capped_since.get_or_insert(now);
                    }
                    break;
                }
                if let Some(t) = capped_since.take() {
                    progress.capped += now.saturating_duration_since(t);
                }
                // Closed loop past its ramp-in: one starts as soon as one ends.
                let due = if ramping {
                    match sched.take(now) {
                        Some(d) => d.at,
                        None => {
                            next_due = Some(sched.peek());
                            break;
                        }
                    }
                } else {
                    now
                };
                if register_load {
                    let Some(i) = driver.reserve(due) else { break };
                    let (driver, registered) = (driver.clone(), registered.clone());
                    let uas = ctx.uas.clone();
                    let data = opts.run.data.clone();
                    tokio::spawn(async move {
                        let verdict =
                            register_iteration(&uas, data.as_deref(), i, &registered).await;
                        driver.end_outside(i, verdict);
                    });
                } else if driver.start(due).is_none() {
                    break;
                }
                stats.lag(now.saturating_duration_since(due));
                in_flight += 1;
                started += 1;
            }
            progress.missed = sched.missed();
        }
        if now >= next_tick {
            let mut snap = stats.snapshot(in_flight);
            snap.elapsed_s = start.elapsed().as_secs_f64();
            snap.target_rate = schedule
                .as_ref()
                .filter(|_| users.is_none())
                .map(|s| s.rate(now));
            let secs = opts.interval.as_secs_f64();
            snap.rate = started.saturating_sub(started_at_tick) as f64 / secs;
            snap.rss_mb = stats::rss_mb();
            snap.transactions = ctx
                .sockets
                .iter()
                .flatten()
                .map(|u| {
                    let s = u.endpoint.get_stats();
                    (s.running_transactions + s.finished_transactions) as u64
                })
                .sum();
            stats.memory(snap.rss_mb, snap.transactions);
            started_at_tick = started;
            on_tick(&snap);
            next_tick += opts.interval;
            if next_tick < now {
                next_tick = now + opts.interval;
            }
        }
        let deadline = [driver.deadline(), next_due, Some(next_tick), end_of_starts]
            .into_iter()
            .flatten()
            .min();
        tokio::select! {
            () = driver.wake.notified() => {}
            () = engine::sleep_until(deadline) => driver.timeout(),
            Some(()) = cleaned_rx.recv() => cleaning -= 1,
            () = opts.run.stop.cancelled(), if !stop_sent => {}
        }
    }
    let _ = driver.finish().await;
    progress
}

fn summarize(
    scenario: &Scenario,
    opts: &LoadOptions,
    answering: bool,
    stats: &LoadStats,
    p: &Progress,
) -> Summary {
    let t = stats.totals();
    let achieved = match (p.first_start, p.last_start) {
        (Some(a), Some(b)) if t.started > 1 && b > a => {
            (t.started - 1) as f64 / b.duration_since(a).as_secs_f64()
        }
        _ => 0.0,
    };
    let interval = p
        .target
        .map(|r| Duration::from_secs_f64(1.0 / r.max(0.001)));
    let generator_limited = p.missed > 0
        || interval.is_some_and(|i| t.max_lag > i.max(flow::pacing::LATE_OK))
        || !p.capped.is_zero();
    let target = match &opts.pacing {
        Pacing::Rate(r) if !answering => Some(if r.increase > 0.0 { r.max } else { r.rate }),
        _ => None,
    };
    Summary {
        schema_version: 1,
        scenario: scenario.name.clone(),
        file: scenario.file.clone(),
        mode: if answering { "answer" } else { "originate" },
        outcome: "passed",
        duration_s: 0.0,
        calls: Calls {
            attempted: t.started.max(t.passed + t.failed + t.stopped),
            passed: t.passed,
            failed: t.failed,
            stopped: t.stopped,
            failures_by_class: t.failures_by_class,
        },
        rate: Rate { target, achieved },
        concurrency: Concurrency {
            max_in_flight: t.max_in_flight,
            limit: opts.max_concurrent,
        },
        memory: Memory {
            peak_rss_mb: t.peak_rss_mb,
            peak_transactions: t.peak_transactions,
        },
        latency_ms: t.latency,
        nodes_ms: t.nodes,
        retransmissions: Retransmissions {
            sent: t.retrans_sent,
            received: t.retrans_received,
        },
        responses: Responses {
            received: t.responses_received,
            sent: t.responses_sent,
        },
        generator_limited,
        generator: Generator {
            missed_starts: p.missed,
            late_starts: t.late_starts,
            max_lag_ms: t.max_lag.as_secs_f64() * 1000.0,
            capped_s: p.capped.as_secs_f64(),
        },
        leaks: LeakCheck::default(),
        first_failures: stats.first_failures(),
        histograms: t.histograms,
    }
}
