//! The run: set-up, chains, cleanup, verdict.

use crate::bus::EventBus;
use crate::exec;
use crate::ua::{RunShared, Ua, UaShared, log};
use events::{
    CleanupPhase, CleanupStep, EventKind, Failure, InstanceInfo, LeakCheck, Level, NodeInfo,
    NodeResult, NodeState, NodeStateChange, Outcome, RunFinished, RunStarted, UaStarted, UaStopped,
};
use instances::{PortAllocator, PortPolicy};
use scenario::{NodeIdx, Scenario};
use session::Sessions;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// SIP ports of the UAs.
    pub sip_ports: PortPolicy,
    /// RTP ports of the calls.
    pub rtp_ports: PortPolicy,
    /// The address UAs bind to (loopback for local scenarios).
    pub bind_ip: IpAddr,
    /// Each cleanup step gets at most this long.
    pub step_limit: Duration,
    /// Cancel it to stop the run (outcome `stopped`); cleanup still runs.
    pub stop: CancellationToken,
    pub run_id: String,
    /// Put every RTP packet in the event stream (`rtp_packet`), for the pcap.
    pub capture_rtp: bool,
    /// Bounds on what a peer can make a UA hold (docs/security.md).
    pub limits: Limits,
}

/// Bounds on what a peer can make a UA hold.
#[derive(Clone, Debug)]
pub struct Limits {
    /// TCP connections per UA; past it the one idle longest is closed.
    pub max_tcp_connections: usize,
    /// A TCP connection idle this long is closed.
    pub tcp_idle_timeout: Duration,
    /// An INVITE that no INCOMING node takes within this long is answered 480.
    pub unclaimed_invite: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_tcp_connections: transport::DEFAULT_MAX_TCP_CONNECTIONS,
            tcp_idle_timeout: transport::DEFAULT_TCP_IDLE_TIMEOUT,
            unclaimed_invite: Duration::from_secs(60),
        }
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            sip_ports: PortPolicy::Ephemeral,
            rtp_ports: PortPolicy::Ephemeral,
            bind_ip: instances::bind_ip(None),
            step_limit: Duration::from_secs(5),
            stop: CancellationToken::new(),
            run_id: format!("{}-{}", std::process::id(), now_ms()),
            capture_rtp: false,
            limits: Limits::default(),
        }
    }
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// The verdict of a run; the same facts as its `run_finished` event.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub outcome: Outcome,
    pub failure: Option<Failure>,
    /// The run could not be set up (exit code 3).
    pub setup_error: bool,
    pub leaks: LeakCheck,
    pub nodes: Vec<NodeResult>,
    pub duration: Duration,
}

/// Why a node did not pass.
#[derive(Debug)]
pub(crate) enum NodeError {
    Failed {
        kind: events::FailureKind,
        message: String,
    },
    /// The run was cancelled while the node ran.
    Cancelled,
}

struct NodeRecord {
    state: NodeState,
    duration: Option<Duration>,
    reason: Option<String>,
}

/// What every chain task shares.
pub(crate) struct Ctx {
    pub(crate) scenario: Arc<Scenario>,
    pub(crate) bus: Arc<EventBus>,
    pub(crate) uas: Vec<Arc<UaShared>>,
    /// Who listens where (labels, addresses), by instance index.
    pub(crate) registry: instances::Registry,
    cancel: CancellationToken,
    done: CancellationToken,
    live: AtomicUsize,
    inboxes: Vec<mpsc::UnboundedSender<NodeIdx>>,
    records: Mutex<Vec<NodeRecord>>,
    /// Every node's state, for nodes that wait (`after`) for another.
    states: Vec<tokio::sync::watch::Sender<NodeState>>,
    failure: Mutex<Option<Failure>>,
}

impl Ctx {
    fn set_state(
        &self,
        idx: NodeIdx,
        to: NodeState,
        reason: Option<String>,
        duration: Option<Duration>,
    ) {
        let node = &self.scenario.nodes[idx];
        let from = {
            let mut recs = self.records.lock().expect("records lock");
            let r = &mut recs[idx];
            let from = std::mem::replace(&mut r.state, to);
            r.reason.clone_from(&reason);
            r.duration = duration.or(r.duration);
            from
        };
        self.states[idx].send_replace(to);
        self.bus.emit(EventKind::NodeState(NodeStateChange {
            node: node.id.clone(),
            ua: self.scenario.instances[node.instance].id.clone(),
            from,
            to,
            reason,
            duration_ms: duration.map(|d| d.as_secs_f64() * 1000.0),
            handled: to == NodeState::Failed && node.on_failure.is_some(),
        }));
    }

    /// Waits (within `node`'s timeout) until node `t` has passed.
    async fn wait_passed(&self, node: &scenario::Node, t: NodeIdx) -> Result<(), NodeError> {
        let other = &self.scenario.nodes[t];
        let mut rx = self.states[t].subscribe();
        let done = rx.wait_for(|s| {
            matches!(
                s,
                NodeState::Passed | NodeState::Failed | NodeState::Skipped
            )
        });
        match tokio::time::timeout(node.timeout, done).await {
            Ok(Ok(state)) if *state == NodeState::Passed => Ok(()),
            Ok(Ok(state)) => Err(NodeError::Failed {
                kind: events::FailureKind::Other,
                message: format!("waited for `{}`, which {}", other.id, state.as_str()),
            }),
            Ok(Err(_)) => Err(NodeError::Cancelled),
            Err(_) => Err(NodeError::Failed {
                kind: events::FailureKind::Timeout,
                message: format!(
                    "waited for `{}` ({} on {}) for {}, it has not passed",
                    other.id,
                    other.action.name(),
                    self.scenario.instances[other.instance].label,
                    exec::secs(node.timeout)
                ),
            }),
        }
    }

    /// Records the first failure and cancels every chain.
    pub(crate) fn fail(&self, failure: Failure) {
        let mut f = self.failure.lock().expect("failure lock");
        if f.is_none() {
            *f = Some(failure);
        }
        drop(f);
        self.cancel.cancel();
    }

    fn token_done(&self) {
        if self.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.cancel();
        }
    }
}

/// Runs a validated scenario to its verdict. Every step is reported on `bus`.
///
/// Cancel safety: not cancel safe (cleanup would be skipped); stop a run with
/// [`RunOptions::stop`] instead.
pub async fn run(scenario: &Scenario, opts: RunOptions, bus: Arc<EventBus>) -> RunReport {
    let scenario = Arc::new(scenario.clone());
    bus.emit(EventKind::RunStarted(run_started(&scenario, &opts.run_id)));
    let sessions = Arc::new(Sessions::new());
    let run_shared = RunShared {
        bind_ip: opts.bind_ip,
        sip_ports: PortAllocator::new(opts.sip_ports),
        rtp_ports: PortAllocator::new(opts.rtp_ports),
        bus: bus.clone(),
        sessions: sessions.clone(),
        capture_rtp: opts.capture_rtp,
        limits: opts.limits.clone(),
    };

    // Start the sidecars (a PBX, phones) before the UAs, in order, each health-checked.
    let mut sidecars = Vec::new();
    let mut setup_failure = None;
    let dir = std::path::Path::new(&scenario.file)
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && d.exists());
    for sc in &scenario.sidecars {
        match crate::sidecar::Running::start(sc, dir.unwrap_or(std::path::Path::new(".")), &bus)
            .await
        {
            Ok(r) => sidecars.push(r),
            Err(message) => {
                log(&bus, Level::Error, None, None, None, message.clone());
                setup_failure = Some(Failure {
                    node: None,
                    ua: None,
                    kind: events::FailureKind::Setup,
                    message,
                });
                break;
            }
        }
    }

    // Start the UAs.
    let mut uas: Vec<Ua> = Vec::new();
    for (idx, inst) in scenario.instances.iter().enumerate() {
        if setup_failure.is_some() {
            break;
        }
        match Ua::start(idx, inst, &run_shared).await {
            Ok(ua) => {
                bus.emit(EventKind::UaStarted(UaStarted {
                    ua: ua.shared.id.clone(),
                    dn: ua.shared.dn.clone(),
                    transport: ua.transport.to_owned(),
                    local_addr: ua.shared.local.to_string(),
                    contact: ua.shared.contact.to_string(),
                }));
                uas.push(ua);
            }
            Err(e) => {
                log(
                    &bus,
                    Level::Error,
                    Some(&inst.id),
                    None,
                    None,
                    format!("set-up failed: {e}"),
                );
                setup_failure = Some(Failure {
                    node: None,
                    ua: Some(inst.id.clone()),
                    kind: events::FailureKind::Setup,
                    message: format!("set-up failed: {e}"),
                });
                break;
            }
        }
    }

    // Register the UAs that have a PBX and say so; a failed registration fails the set-up.
    let mut refreshers = Vec::new();
    let mut registered = Vec::new();
    if setup_failure.is_none() {
        for ua in &uas {
            let Some(pbx) = ua.shared.pbx.as_ref().filter(|p| p.register) else {
                continue;
            };
            let registrar = pbx.registrar();
            match ua.shared.register(pbx.expires).await {
                Ok(o) if (200..300).contains(&o.code) => {
                    log(
                        &bus,
                        Level::Info,
                        Some(&ua.shared.id),
                        None,
                        None,
                        format!("registered at {registrar} ({} {})", o.code, o.text),
                    );
                    registered.push(ua.shared.clone());
                    refreshers.push(tokio::spawn(ua.shared.clone().refresh_registration()));
                }
                other => {
                    let why = match other {
                        Ok(o) => format!("{} {}", o.code, o.text),
                        Err(e) => e,
                    };
                    let message = format!(
                        "registration of {} at {registrar} failed: {why}",
                        ua.shared.label
                    );
                    log(
                        &bus,
                        Level::Error,
                        Some(&ua.shared.id),
                        None,
                        None,
                        message.clone(),
                    );
                    setup_failure = Some(Failure {
                        node: None,
                        ua: Some(ua.shared.id.clone()),
                        kind: events::FailureKind::Setup,
                        message,
                    });
                    break;
                }
            }
        }
    }

    let (tx, rx): (Vec<_>, Vec<_>) = scenario
        .instances
        .iter()
        .map(|_| mpsc::unbounded_channel())
        .unzip();
    let ctx = Arc::new(Ctx {
        scenario: scenario.clone(),
        bus: bus.clone(),
        uas: uas.iter().map(|u| u.shared.clone()).collect(),
        registry: instances::Registry::new(
            uas.iter()
                .map(|u| instances::UaEntry {
                    id: u.shared.id.clone(),
                    label: u.shared.label.clone(),
                    dn: u.shared.dn.clone(),
                    local: u.shared.local,
                    tcp: u.shared.tcp,
                })
                .collect(),
        ),
        cancel: CancellationToken::new(),
        done: CancellationToken::new(),
        live: AtomicUsize::new(scenario.instances.iter().map(|i| i.starts.len()).sum()),
        inboxes: tx,
        states: scenario
            .nodes
            .iter()
            .map(|_| tokio::sync::watch::channel(NodeState::Pending).0)
            .collect(),
        records: Mutex::new(
            scenario
                .nodes
                .iter()
                .map(|_| NodeRecord {
                    state: NodeState::Pending,
                    duration: None,
                    reason: None,
                })
                .collect(),
        ),
        failure: Mutex::new(setup_failure.clone()),
    });

    // Run the chains: one task per UA.
    let mut stopped = false;
    if setup_failure.is_none() {
        if ctx.live.load(Ordering::Acquire) == 0 {
            if registered.is_empty() {
                ctx.done.cancel();
            } else {
                // Register-only: the instances stay up as registered phones until stopped.
                log(
                    &bus,
                    Level::Info,
                    None,
                    None,
                    None,
                    "register-only: staying registered until stopped".into(),
                );
            }
        }
        let tracker = TaskTracker::new();
        for (ua, inbox) in rx.into_iter().enumerate() {
            let starts = scenario.instances[ua].starts.clone();
            tracker.spawn(ua_task(ctx.clone(), ua, starts, inbox));
        }
        tracker.close();
        tokio::select! {
            () = tracker.wait() => {}
            () = opts.stop.cancelled() => {
                stopped = true;
                log(&bus, Level::Warning, None, None, None, "stop requested: cancelling every chain".into());
                ctx.cancel.cancel();
                if tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await.is_err() {
                    log(&bus, Level::Warning, None, None, None, "a chain did not stop within 1 s; cleaning up anyway".into());
                }
            }
        }
        ctx.cancel.cancel();
    }

    // Nodes that never ran.
    let never_ran: Vec<NodeIdx> = {
        let recs = ctx.records.lock().expect("records lock");
        recs.iter()
            .enumerate()
            .filter(|(_, r)| r.state == NodeState::Pending)
            .map(|(i, _)| i)
            .collect()
    };
    let skip_reason = ctx
        .failure
        .lock()
        .expect("failure lock")
        .as_ref()
        .map(|f| match &f.node {
            Some(n) => format!("not run: node `{n}` failed"),
            None => "not run: the run failed".to_owned(),
        });
    for idx in never_ran {
        let reason = if stopped {
            Some("not run: stopped".to_owned())
        } else {
            skip_reason.clone()
        };
        ctx.set_state(idx, NodeState::Skipped, reason, None);
    }

    // Cleanup, in order, each step bounded.
    let cleanup_start = Instant::now();
    let step = |phase, finished, detail: Option<String>, took: Option<Duration>| {
        bus.emit(EventKind::Cleanup(CleanupStep {
            phase,
            finished,
            detail,
            duration_ms: took.map(|d| d.as_secs_f64() * 1000.0),
        }));
    };
    let t = Instant::now();
    step(CleanupPhase::HangupAll, false, None, None);
    // Subscriptions end with the calls: SUBSCRIBE with Expires: 0 (RFC 6665 §4.1.2.3).
    let unsubscribe = async {
        let all = uas.iter().map(|u| u.shared.unsubscribe_all());
        tokio::time::timeout(opts.step_limit, futures::future::join_all(all))
            .await
            .map_or(0, |n| n.into_iter().sum::<usize>())
    };
    let (hangup, ended) = tokio::join!(sessions.hangup_all(opts.step_limit), unsubscribe);
    let mut detail = hangup.to_string();
    if ended > 0 {
        detail.push_str(&format!(", {ended} subscriptions ended"));
    }
    step(
        CleanupPhase::HangupAll,
        true,
        Some(detail),
        Some(t.elapsed()),
    );

    let t = Instant::now();
    step(CleanupPhase::CloseAll, false, None, None);
    let layers: Vec<_> = uas.iter().map(|u| u.endpoint.dialogs.clone()).collect();
    let closed = sessions.close_all(&layers);
    for u in &uas {
        u.shared
            .subscriptions
            .lock()
            .expect("subscriptions lock")
            .clear();
    }
    let dialogs_left = sessions.len() + layers.iter().map(|l| l.len()).sum::<usize>();
    step(
        CleanupPhase::CloseAll,
        true,
        Some(format!("{closed} calls closed")),
        Some(t.elapsed()),
    );

    // Unregister (expires 0) before the transports close.
    for r in &refreshers {
        r.abort();
    }
    if !registered.is_empty() {
        let t = Instant::now();
        step(CleanupPhase::Unregister, false, None, None);
        let unregister = futures::future::join_all(
            registered
                .iter()
                .map(|ua| async move { (ua.id.clone(), ua.register(0).await) }),
        );
        let detail = match tokio::time::timeout(opts.step_limit, unregister).await {
            Ok(results) => results
                .into_iter()
                .map(|(id, r)| match r {
                    Ok(o) => format!("{id}: {} {}", o.code, o.text),
                    Err(e) => format!("{id}: {e}"),
                })
                .collect::<Vec<_>>()
                .join(", "),
            Err(_) => "the registrar did not answer in time".to_owned(),
        };
        step(
            CleanupPhase::Unregister,
            true,
            Some(detail),
            Some(t.elapsed()),
        );
    }

    let t = Instant::now();
    step(CleanupPhase::TeardownUas, false, None, None);
    let grace = opts.step_limit.min(Duration::from_secs(2));
    let n_uas = uas.len();
    drop(layers);
    let shutdowns = uas.into_iter().map(|ua| {
        let bus = bus.clone();
        async move {
            let (id, local) = (ua.shared.id.clone(), ua.shared.local);
            let lease = ua.shutdown(grace).await;
            drop(lease);
            bus.emit(EventKind::UaStopped(UaStopped {
                ua: id,
                local_addr: local.to_string(),
            }));
        }
    });
    if tokio::time::timeout(opts.step_limit, futures::future::join_all(shutdowns))
        .await
        .is_err()
    {
        log(
            &bus,
            Level::Warning,
            None,
            None,
            None,
            "UA teardown hit its limit".into(),
        );
    }
    step(
        CleanupPhase::TeardownUas,
        true,
        Some(format!("{n_uas} UAs stopped")),
        Some(t.elapsed()),
    );

    if !sidecars.is_empty() {
        let t = Instant::now();
        step(CleanupPhase::StopSidecars, false, None, None);
        let names: Vec<String> = sidecars.iter().map(|s| s.name.clone()).collect();
        futures::future::join_all(sidecars.into_iter().map(crate::sidecar::Running::stop)).await;
        step(
            CleanupPhase::StopSidecars,
            true,
            Some(format!("{} stopped", names.join(", "))),
            Some(t.elapsed()),
        );
    }

    let leaks = LeakCheck {
        dialogs: dialogs_left,
        ports: run_shared.sip_ports.leased() + run_shared.rtp_ports.leased(),
    };
    let mut failure = ctx.failure.lock().expect("failure lock").clone();
    let outcome = if stopped {
        Outcome::Stopped
    } else if failure.is_some() {
        Outcome::Failed
    } else if !leaks.is_clean() {
        failure = Some(Failure {
            node: None,
            ua: None,
            kind: events::FailureKind::Leak,
            message: format!(
                "leak check: {} dialogs and {} ports left after cleanup",
                leaks.dialogs, leaks.ports
            ),
        });
        Outcome::Failed
    } else {
        Outcome::Passed
    };
    let nodes: Vec<NodeResult> = {
        let recs = ctx.records.lock().expect("records lock");
        scenario
            .nodes
            .iter()
            .zip(recs.iter())
            .map(|(n, r)| NodeResult {
                node: n.id.clone(),
                ua: scenario.instances[n.instance].id.clone(),
                state: r.state,
                duration_ms: r.duration.map(|d| d.as_secs_f64() * 1000.0),
                reason: r.reason.clone(),
                handled: r.state == NodeState::Failed && n.on_failure.is_some(),
            })
            .collect()
    };
    let duration = bus.elapsed();
    bus.emit(EventKind::RunFinished(RunFinished {
        outcome,
        duration_ms: duration.as_secs_f64() * 1000.0,
        cleanup_ms: cleanup_start.elapsed().as_secs_f64() * 1000.0,
        failure: failure.clone(),
        leaks,
        nodes: nodes.clone(),
    }));
    // Every sink has the whole run before the caller reads it.
    let flushing = bus.clone();
    let _ = tokio::task::spawn_blocking(move || flushing.flush()).await;
    RunReport {
        outcome,
        failure,
        setup_error: setup_failure.is_some(),
        leaks,
        nodes,
        duration,
    }
}

fn run_started(s: &Scenario, run_id: &str) -> RunStarted {
    RunStarted {
        schema_version: events::SCHEMA_VERSION,
        run_id: run_id.to_owned(),
        scenario: s.name.clone(),
        file: s.file.clone(),
        format: match s.format {
            scenario::Format::SipflowJson => "sipflow-json",
            scenario::Format::Native => "native-yaml",
        }
        .to_owned(),
        callflow_version: env!("CARGO_PKG_VERSION").to_owned(),
        instances: s
            .instances
            .iter()
            .map(|i| InstanceInfo {
                id: i.id.clone(),
                label: i.label.clone(),
                dn: i.dn.clone(),
            })
            .collect(),
        nodes: s
            .nodes
            .iter()
            .map(|n| NodeInfo {
                id: n.id.clone(),
                label: n.label.clone(),
                ua: s.instances[n.instance].id.clone(),
                kind: n.action.name().to_owned(),
                call_id: n.call_id.clone(),
                timeout_ms: n.timeout.as_millis() as u64,
                source: format!("{}:{}:{}", s.file, n.pos.line, n.pos.col),
            })
            .collect(),
    }
}

/// One UA's task: its own chains in order, then nodes other UAs hand to it, until every chain
/// of the run has ended or the run is cancelled.
async fn ua_task(
    ctx: Arc<Ctx>,
    ua: usize,
    starts: Vec<NodeIdx>,
    mut inbox: mpsc::UnboundedReceiver<NodeIdx>,
) {
    let mut starts = VecDeque::from(starts);
    loop {
        let next = match starts.pop_front() {
            Some(s) => s,
            None => tokio::select! {
                biased;
                () = ctx.cancel.cancelled() => return,
                () = ctx.done.cancelled() => return,
                n = inbox.recv() => match n { Some(n) => n, None => return },
            },
        };
        run_chain(&ctx, ua, next).await;
        if ctx.cancel.is_cancelled() {
            return;
        }
    }
}

/// A node's failure message, with what never arrived on the node's call appended (a request
/// of ours no response answered, a 2xx of ours no ACK acknowledged): under loss or with a
/// peer gone, that names the message the run waited for.
fn with_missing(ua: &UaShared, node: &scenario::Node, msg: String) -> String {
    let Some(call) = ua.sessions.get(ua.idx, &node.call_id) else {
        return msg;
    };
    let missing = ua.ledger.missing(&call.sip_call_id());
    if missing.is_empty() {
        msg
    } else {
        format!("{msg}; on the wire: {}", missing.join("; "))
    }
}

async fn run_chain(ctx: &Arc<Ctx>, ua: usize, mut cur: NodeIdx) {
    loop {
        if ctx.cancel.is_cancelled() {
            return;
        }
        let node = &ctx.scenario.nodes[cur];
        if node.instance != ua {
            // The node belongs to another UA: hand the chain over.
            let _ = ctx.inboxes[node.instance].send(cur);
            return;
        }
        ctx.set_state(cur, NodeState::Running, None, None);
        let started = Instant::now();
        let result = tokio::select! {
            r = async {
                if let Some(t) = node.opts.after {
                    ctx.wait_passed(node, t).await?;
                }
                exec::execute(ctx, cur).await
            } => r,
            () = ctx.cancel.cancelled() => Err(NodeError::Cancelled),
        };
        let took = Some(started.elapsed());
        let next = match result {
            Ok(()) => {
                ctx.set_state(cur, NodeState::Passed, None, took);
                node.on_success
            }
            Err(NodeError::Cancelled) => {
                let why = ctx
                    .failure
                    .lock()
                    .expect("failure lock")
                    .as_ref()
                    .and_then(|f| f.node.clone());
                let reason = match why {
                    Some(n) => format!("cancelled: node `{n}` failed"),
                    None => "cancelled: the run was stopped".to_owned(),
                };
                ctx.set_state(cur, NodeState::Skipped, Some(reason), took);
                return;
            }
            Err(NodeError::Failed { kind, message: msg }) => {
                let msg = with_missing(&ctx.uas[ua], node, msg);
                let label = &ctx.scenario.instances[node.instance].label;
                log(
                    &ctx.bus,
                    Level::Error,
                    Some(&ctx.uas[ua].id),
                    Some(&node.id),
                    Some(&node.call_id),
                    format!("{} on {label}: {msg}", node.action.name()),
                );
                ctx.set_state(cur, NodeState::Failed, Some(msg.clone()), took);
                match node.on_failure {
                    Some(f) => Some(f),
                    None => {
                        ctx.fail(Failure {
                            node: Some(node.id.clone()),
                            ua: Some(ctx.uas[ua].id.clone()),
                            kind,
                            message: format!(
                                "{} ({}) on {label}: {msg}",
                                node.id,
                                node.action.name()
                            ),
                        });
                        return;
                    }
                }
            }
        };
        match next {
            Some(n) => cur = n,
            None => {
                ctx.token_done();
                return;
            }
        }
    }
}
