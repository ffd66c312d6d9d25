//! The run: set-up, chains, cleanup, verdict.

use crate::bus::EventBus;
use crate::exec;
use crate::ua::{RunShared, Ua, UaShared, log};
use events::{
    CleanupPhase, CleanupStep, EventKind, Failure, InstanceInfo, LeakCheck, Level, NodeInfo,
    NodeResult, NodeState, NodeStateChange, Outcome, RunFinished, RunStarted, UaStarted, UaStopped,
};
use flow::chains::{Action, Flow, Input, Iteration, NodeRef, Signal, StateChange, Verdict};
use instances::{PortAllocator, PortPolicy};
use scenario::Scenario;
use session::{CallEvent, Observed, Sessions};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use transport::rsipstack::dialog::dialog_layer::DialogLayer;

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
    /// Keep each call's RTP packets (a ring per call) and write them as one `rtp_capture`
    /// event when its media ends, for the pcap.
    pub capture_rtp: bool,
    /// Start RTP on every call once it is confirmed (a functional run always does; a load only
    /// when the scenario has a media node, or `--media`).
    pub media: bool,
    /// Keep each call's received audio, decoded (a functional run always does; a load only when
    /// the scenario has a HEARD, TONE or Record node).
    pub keep_audio: bool,
    /// A load's per-iteration data (`--inf`): the `${field}`s of DNs, PBX accounts, targets
    /// and headers.
    pub data: Option<Arc<crate::data::Data>>,
    /// Bounds on what a peer can make a UA hold (docs/security.md).
    pub limits: Limits,
    /// How many sockets (each an endpoint of its own) each role that places calls sends from;
    /// iteration i goes through socket i mod N (a load's `--sockets-per-role`, SIPp's
    /// multi-socket mode). A role that only answers keeps one: its peers send to one address.
    pub sockets_per_role: usize,
    /// Drop received RTP as a lossy path would, seeded (`--rtp-loss`): to see what a scenario
    /// and its media checks make of loss.
    pub rtp_loss: Option<media::rtp::Loss>,
    /// Append the TLS secrets of the run's sessions here (SSLKEYLOGFILE format, `--keylog`).
    pub keylog: Option<String>,
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
            media: true,
            keep_audio: true,
            data: None,
            limits: Limits::default(),
            sockets_per_role: 1,
            rtp_loss: None,
            keylog: None,
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

/// Why a node did not pass: its kind and what was expected and what happened.
pub(crate) type NodeError = flow::chains::Failed;

/// What every node's task shares.
pub(crate) struct Ctx {
    pub(crate) scenario: Arc<Scenario>,
    pub(crate) bus: Arc<EventBus>,
    /// Each instance's UA (its first socket), by instance index.
    pub(crate) uas: Vec<Arc<UaShared>>,
    /// Every socket of each instance's UA (the first is `uas[i]`): more than one for a role
    /// that places calls under `--sockets-per-role`.
    pub(crate) sockets: Vec<Vec<Arc<UaShared>>>,
    /// Who listens where (labels, addresses), by instance index.
    pub(crate) registry: instances::Registry,
    /// A load's per-iteration data.
    pub(crate) data: Option<Arc<crate::data::Data>>,
}

/// Runs a validated scenario to its verdict. Every step is reported on `bus`.
///
/// Cancel safety: not cancel safe (cleanup would be skipped); stop a run with
/// [`RunOptions::stop`] instead.
pub async fn run(scenario: &Scenario, opts: RunOptions, bus: Arc<EventBus>) -> RunReport {
    let stage = set_up(scenario, &opts, &bus).await;
    let ctx = stage.ctx.clone();
    let scenario = ctx.scenario.clone();

    // Run the chains: the flow decides, this drives.
    let flow = Flow::new(scenario.clone());
    let chains: usize = scenario.instances.iter().map(|i| i.starts.len()).sum();
    let mut stopped = false;
    let (verdict, flow) = match stage.setup_failure.clone() {
        Some(f) => {
            let abandon = |flow: &mut Flow| flow.abandon(Instant::now(), 0, f);
            let (verdict, _, flow) = drive(&ctx, flow, &stage.sessions, &opts.stop, abandon).await;
            (verdict, flow)
        }
        None if chains == 0 && !stage.registered.is_empty() => {
            // Register-only: the instances stay up as registered phones until stopped.
            log(
                &bus,
                Level::Info,
                None,
                None,
                None,
                "register-only: staying registered until stopped".into(),
            );
            opts.stop.cancelled().await;
            stopped = true;
            (Verdict::Stopped, flow)
        }
        None => {
            let start = |flow: &mut Flow| flow.start(Instant::now(), 0);
            let (verdict, was_stopped, flow) =
                drive(&ctx, flow, &stage.sessions, &opts.stop, start).await;
            stopped = was_stopped;
            (verdict, flow)
        }
    };
    let failure_of_chains = match &verdict {
        Verdict::Failed(f) => Some(f.clone()),
        Verdict::Passed | Verdict::Stopped => None,
    };
    let setup_error = stage.setup_failure.is_some();
    let (leaks, cleanup_took) = tear_down(stage, &opts).await;
    let mut failure = failure_of_chains;
    let outcome = if stopped {
        Outcome::Stopped
    } else if failure.is_some() {
        Outcome::Failed
    } else if !leaks.is_clean() {
        failure = Some(leak_failure(&leaks));
        Outcome::Failed
    } else {
        Outcome::Passed
    };
    let nodes: Vec<NodeResult> = scenario
        .nodes
        .iter()
        .zip(flow.nodes(0).unwrap_or_default())
        .map(|(n, r)| NodeResult {
            node: n.id.clone(),
            ua: scenario.instances[n.instance].id.clone(),
            state: r.state,
            duration_ms: r.duration.map(|d| d.as_secs_f64() * 1000.0),
            reason: r.reason.clone(),
            handled: r.state == NodeState::Failed && n.on_failure.is_some(),
        })
        .collect();
    let duration = bus.elapsed();
    bus.emit(EventKind::RunFinished(RunFinished {
        outcome,
        duration_ms: duration.as_secs_f64() * 1000.0,
        cleanup_ms: cleanup_took.as_secs_f64() * 1000.0,
        failure: failure.clone(),
        leaks,
        nodes: nodes.clone(),
    }));
    flush(&bus).await;
    RunReport {
        outcome,
        failure,
        setup_error,
        leaks,
        nodes,
        duration,
    }
}

/// Every sink has the whole run before the caller reads it.
pub(crate) async fn flush(bus: &Arc<EventBus>) {
    let flushing = bus.clone();
    let _ = tokio::task::spawn_blocking(move || flushing.flush()).await;
}

/// The failure of a run whose cleanup left something behind.
pub(crate) fn leak_failure(leaks: &LeakCheck) -> Failure {
    Failure {
        node: None,
        ua: None,
        kind: events::FailureKind::Leak,
        status: None,
        message: format!(
            "leak check: {} dialogs and {} ports left after cleanup",
            leaks.dialogs, leaks.ports
        ),
    }
}

/// A run set up: its sidecars and UAs started, the UAs with a PBX registered (or the first
/// thing that failed on the way, in `setup_failure`).
pub(crate) struct Stage {
    pub(crate) ctx: Arc<Ctx>,
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) setup_failure: Option<Failure>,
    pub(crate) registered: Vec<Arc<UaShared>>,
    uas: Vec<Ua>,
    sidecars: Vec<crate::sidecar::Running>,
    refreshers: Vec<tokio::task::JoinHandle<()>>,
    run_shared: RunShared,
}

impl Stage {
    /// Each UA's dialog layers (one per socket), by UA index.
    pub(crate) fn layers(&self) -> Vec<Vec<Arc<DialogLayer>>> {
        layers_of(&self.uas, self.ctx.uas.len())
    }
}

/// The dialog layers of `uas` (every socket of every UA), grouped by UA index.
fn layers_of(uas: &[Ua], count: usize) -> Vec<Vec<Arc<DialogLayer>>> {
    let mut layers = vec![Vec::new(); count];
    for u in uas {
        if let Some(l) = layers.get_mut(u.shared.idx) {
            l.push(u.endpoint.dialogs.clone());
        }
    }
    layers
}

impl Ctx {
    /// The UA socket iteration `iteration` of instance `role` goes through.
    pub(crate) fn ua(&self, role: usize, iteration: Iteration) -> &Arc<UaShared> {
        let sockets = &self.sockets[role];
        &sockets[iteration as usize % sockets.len()]
    }
}

/// A set-up that failed (no UA or node to blame), said as an error event.
fn setup_failed(bus: &EventBus, message: String) -> Failure {
    log(bus, Level::Error, None, None, None, message.clone());
    Failure {
        node: None,
        ua: None,
        kind: events::FailureKind::Setup,
        status: None,
        message,
    }
}

/// Starts what a run needs before its chains: `run_started`, the sidecars (in order, each
/// health-checked), the UAs, the registrations.
pub(crate) async fn set_up(scenario: &Scenario, opts: &RunOptions, bus: &Arc<EventBus>) -> Stage {
    let scenario = Arc::new(scenario.clone());
    bus.emit(EventKind::RunStarted(run_started(&scenario, &opts.run_id)));
    let sessions = Arc::new(Sessions::new());
    // The run's own certificate, when a UA speaks TLS (its own transport or its PBX's).
    let secure = scenario.instances.iter().any(|i| {
        i.transport.is_secure() || i.pbx.as_ref().is_some_and(|p| p.transport.is_secure())
    });
    let mut setup_failure = None;
    let tls = if secure {
        let mut names = vec!["localhost".to_owned(), opts.bind_ip.to_string()];
        if opts.bind_ip.is_unspecified() {
            names.extend(["127.0.0.1".to_owned(), "::1".to_owned()]);
        }
        match transport::tls::RunTls::new(&names, opts.keylog.as_deref()) {
            Ok(t) => Some(t),
            Err(e) => {
                setup_failure = Some(setup_failed(bus, format!("TLS: {e}")));
                None
            }
        }
    } else {
        None
    };
    let run_shared = RunShared {
        tls,
        scenario_file: scenario.file.clone(),
        bind_ip: opts.bind_ip,
        sip_ports: PortAllocator::new(opts.sip_ports),
        rtp_ports: PortAllocator::new(opts.rtp_ports),
        bus: bus.clone(),
        sessions: sessions.clone(),
        capture_rtp: opts.capture_rtp,
        media: opts.media,
        keep_audio: opts.keep_audio,
        rtp_loss: opts.rtp_loss,
        data: opts.data.clone(),
        limits: opts.limits.clone(),
        run_id: opts.run_id.as_str().into(),
    };

    // Start the sidecars (a PBX, phones) before the UAs, in order, each health-checked.
    let mut sidecars = Vec::new();
    let dir = std::path::Path::new(&scenario.file)
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && d.exists());
    for sc in &scenario.sidecars {
        if setup_failure.is_some() {
            break;
        }
        match crate::sidecar::Running::start(sc, dir.unwrap_or(std::path::Path::new(".")), bus)
            .await
        {
            Ok(r) => sidecars.push(r),
            Err(message) => {
                setup_failure = Some(setup_failed(bus, message));
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
                    transport: ua.transport.as_str().to_owned(),
                    local_addr: ua.shared.local.to_string(),
                    contact: ua.shared.contact.to_string(),
                }));
                uas.push(ua);
            }
            Err(e) => {
                setup_failure = Some(ua_failed(bus, &inst.id, format!("set-up failed: {e}")));
                break;
            }
        }
    }

    // Register the UAs that have a PBX and say so; a failed registration fails the set-up.
    let mut refreshers = Vec::new();
    let mut registered = Vec::new();
    if setup_failure.is_none() {
        for ua in &uas {
            // A load's templated accounts register per user (`load`), not here.
            let Some(pbx) = ua
                .shared
                .pbx
                .as_ref()
                .filter(|p| p.register && p.template.is_none())
            else {
                continue;
            };
            let registrar = pbx.registrar();
            match ua.shared.register(pbx.expires).await {
                Ok(o) if (200..300).contains(&o.code) => {
                    log(
                        bus,
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
                        bus,
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
                        status: None,
                        message,
                    });
                    break;
                }
            }
        }
    }

    // A role that places calls sends from more sockets under `--sockets-per-role`, each an
    // endpoint of its own (rsipstack sends every request of an endpoint from its first UDP
    // socket), started after the registrations: a PBX reaches the role at its first.
    let mut sockets: Vec<Vec<Arc<UaShared>>> = uas.iter().map(|u| vec![u.shared.clone()]).collect();
    let primaries = uas.len();
    if setup_failure.is_none() && opts.sockets_per_role > 1 {
        'roles: for (idx, inst) in scenario.instances.iter().enumerate() {
            let places_calls = inst
                .starts
                .iter()
                .any(|&n| !matches!(scenario.nodes[n].action, scenario::Action::Incoming { .. }));
            if !places_calls {
                continue;
            }
            for k in 2..=opts.sockets_per_role {
                match Ua::start(idx, inst, &run_shared).await {
                    Ok(ua) => {
                        log(
                            bus,
                            Level::Info,
                            Some(&inst.id),
                            None,
                            None,
                            format!(
                                "socket {k} of {}: {}",
                                opts.sockets_per_role, ua.shared.local
                            ),
                        );
                        sockets[idx].push(ua.shared.clone());
                        uas.push(ua);
                    }
                    Err(e) => {
                        let message = format!("set-up failed: socket {k}: {e}");
                        setup_failure = Some(ua_failed(bus, &inst.id, message));
                        break 'roles;
                    }
                }
            }
        }
    }

    let ctx = Arc::new(Ctx {
        data: opts.data.clone(),
        scenario: scenario.clone(),
        bus: bus.clone(),
        uas: uas[..primaries].iter().map(|u| u.shared.clone()).collect(),
        sockets,
        registry: instances::Registry::new(
            uas[..primaries]
                .iter()
                .map(|u| instances::UaEntry {
                    id: u.shared.id.clone(),
                    label: u.shared.label.clone(),
                    dn: u.shared.dn.clone(),
                    local: u.shared.local,
                    transport: u.shared.transport,
                })
                .collect(),
        ),
    });
    Stage {
        ctx,
        sessions,
        setup_failure,
        registered,
        uas,
        sidecars,
        refreshers,
        run_shared,
    }
}

/// A UA that could not start: logged on it, and the set-up's failure.
fn ua_failed(bus: &EventBus, ua: &str, message: String) -> Failure {
    log(bus, Level::Error, Some(ua), None, None, message.clone());
    Failure {
        node: None,
        ua: Some(ua.to_owned()),
        kind: events::FailureKind::Setup,
        status: None,
        message,
    }
}

/// Cleanup, in order, each step bounded: hang up every call, close them, unregister, tear the
/// UAs down, stop the sidecars. Returns the leak check and how long it took.
pub(crate) async fn tear_down(stage: Stage, opts: &RunOptions) -> (LeakCheck, Duration) {
    let Stage {
        ctx,
        sessions,
        registered,
        uas,
        sidecars,
        refreshers,
        run_shared,
        ..
    } = stage;
    let bus = ctx.bus.clone();
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
    // A call whose hang-up never completed (its peer gone) still has media: it ends here, with
    // its media_stats and capture, before the calls are closed and the run finishes.
    for call in sessions.all() {
        if call.media().is_some()
            && let Some(ua) = ctx.uas.get(call.ua)
        {
            ua.stop_media(&call);
        }
    }
    let layers = layers_of(&uas, ctx.uas.len());
    let closed = sessions.close_all(&layers);
    for u in &uas {
        u.shared
            .subscriptions
            .lock()
            .expect("subscriptions lock")
            .clear();
    }
    let dialogs_left = sessions.len() + layers.iter().flatten().map(|l| l.len()).sum::<usize>();
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
    (leaks, cleanup_start.elapsed())
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

/// The flow and what carries out its actions, shared by every task that has something to tell
/// it (quinn's connection state behind its lock): a node's task when the node ends, the session
/// when a call is bound or an event is added to one, the timer task, a stop. Whoever tells it
/// carries out the actions that follow, at once: no central task stands between a node's end
/// and the next node's start.
pub(crate) struct Driver {
    pub(crate) ctx: Arc<Ctx>,
    state: std::sync::Mutex<DriverState>,
    tracker: TaskTracker,
    /// Woken when the flow's next deadline changes or an iteration ended.
    pub(crate) wake: tokio::sync::Notify,
}

pub(crate) struct DriverState {
    pub(crate) flow: Flow,
    /// The tasks of the nodes running, to end them when the flow aborts them or times them
    /// out, and what each says its result is at its timeout.
    running: HashMap<NodeRef, (CancellationToken, Arc<exec::AtTimeout>)>,
    deadline: Option<Instant>,
    /// Iterations that ended and nobody collected yet, in the order they ended.
    pub(crate) ended: std::collections::VecDeque<(Iteration, Verdict)>,
    /// Which iterations start and when (under load).
    pub(crate) starts: Starts,
}

/// How iterations start: a functional run starts iteration 0; a load starts one per pacer tick
/// ([`Driver::start`]), or, for an answering load, one per INVITE that no running iteration
/// claims.
#[derive(Debug)]
pub(crate) struct Starts {
    /// The next iteration's number.
    pub(crate) next: Iteration,
    /// How many more may start (`--calls`).
    pub(crate) left: u64,
    /// No more start (stop, `--duration` reached, too many failures).
    pub(crate) closed: bool,
    /// Each INVITE that no running iteration claims starts an iteration.
    pub(crate) answering: bool,
    /// When each running iteration was due to start (its schedule, for latency measured from
    /// it), and when it did.
    pub(crate) due: HashMap<Iteration, (Instant, Instant)>,
}

impl Default for Starts {
    fn default() -> Self {
        Self {
            next: 1,
            left: u64::MAX,
            closed: false,
            answering: false,
            due: HashMap::new(),
        }
    }
}

impl Driver {
    pub(crate) fn new(ctx: Arc<Ctx>, flow: Flow, sessions: &Sessions) -> Arc<Self> {
        let driver = Arc::new(Self {
            ctx,
            state: std::sync::Mutex::new(DriverState {
                flow,
                running: HashMap::new(),
                deadline: None,
                ended: std::collections::VecDeque::new(),
                starts: Starts::default(),
            }),
            tracker: TaskTracker::new(),
            wake: tokio::sync::Notify::new(),
        });
        // Weak: the sessions, which the UAs hold, must not keep the driver alive.
        let weak = Arc::downgrade(&driver);
        sessions.observe(Box::new(move |o| {
            if let (Some(d), Some(input)) = (weak.upgrade(), input_of(o)) {
                d.input(input);
            }
        }));
        driver
    }

    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, DriverState> {
        self.state.lock().expect("driver lock")
    }

    /// Runs `f` on the flow, then carries out what follows.
    pub(crate) fn with_flow<T>(self: &Arc<Self>, f: impl FnOnce(&mut DriverState) -> T) -> T {
        let mut st = self.state();
        let out = f(&mut st);
        self.carry_out(&mut st);
        out
    }

    /// Tells the flow `input` and carries out what follows.
    fn input(self: &Arc<Self>, input: Input) {
        let mut st = self.state();
        let arrived = match &input {
            Input::Arrived { role, .. } if st.starts.answering => Some(*role),
            _ => None,
        };
        let now = Instant::now();
        st.flow.handle(now, input);
        if let Some(role) = arrived {
            // An answering load: each INVITE no running iteration claims starts one.
            for _ in 0..st.flow.unclaimed(role) {
                if Self::start_locked(&mut st, now, now).is_none() {
                    break;
                }
            }
        }
        self.carry_out(&mut st);
    }

    /// Starts the next iteration (due at `due`), if the bounds allow one.
    pub(crate) fn start(self: &Arc<Self>, due: Instant) -> Option<Iteration> {
        self.with_flow(|st| Self::start_locked(st, due, Instant::now()))
    }

    fn start_locked(st: &mut DriverState, due: Instant, now: Instant) -> Option<Iteration> {
        let i = Self::reserve_locked(st, due, now)?;
        st.flow.start(now, i);
        Some(i)
    }

    /// The next iteration's number, if the bounds allow one, without starting the flow's
    /// chains: an iteration carried out beside the flow (a REGISTER load's), which ends with
    /// [`Self::end_outside`].
    pub(crate) fn reserve(&self, due: Instant) -> Option<Iteration> {
        Self::reserve_locked(&mut self.state(), due, Instant::now())
    }

    fn reserve_locked(st: &mut DriverState, due: Instant, now: Instant) -> Option<Iteration> {
        let s = &mut st.starts;
        if s.closed || s.left == 0 {
            return None;
        }
        s.left -= 1;
        let i = s.next;
        s.next += 1;
        s.due.insert(i, (due, now));
        Some(i)
    }

    /// An iteration carried out beside the flow ([`Self::reserve`]) has ended.
    pub(crate) fn end_outside(&self, iteration: Iteration, verdict: Verdict) {
        self.state().ended.push_back((iteration, verdict));
        self.wake.notify_one();
    }

    pub(crate) fn timeout(self: &Arc<Self>) {
        let mut st = self.state();
        st.flow.handle_timeout(Instant::now());
        self.carry_out(&mut st);
    }

    /// When the flow's next timer is due.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.state().deadline
    }

    /// Runs what carries node `at` out on a task of its own, ended by `Action::Abort` or
    /// `Action::TimedOut` (through `running`, with what the node says its timeout means). The
    /// task's result, if it has one (a node that reported `Sent`/`Final` has none), is the
    /// node's `Done`.
    fn spawn_node<F, Fut>(self: &Arc<Self>, st: &mut DriverState, at: NodeRef, carry_out: F)
    where
        F: FnOnce(Arc<Self>, Arc<exec::AtTimeout>) -> Fut + Send + 'static,
        Fut: Future<Output = Option<Result<(), NodeError>>> + Send,
    {
        let token = CancellationToken::new();
        let at_timeout = Arc::new(exec::AtTimeout::default());
        st.running.insert(at, (token.clone(), at_timeout.clone()));
        let me = self.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                r = carry_out(me.clone(), at_timeout) => {
                    if let Some(r) = r {
                        let result = r.map_err(|f| with_missing(&me.ctx, at, f));
                        me.input(Input::Done { at, result });
                    }
                }
                () = token.cancelled() => {}
            }
        });
    }

    /// Carries out every action the flow has (the single-mutation rule: drain after each
    /// input), then notes its next deadline.
    fn carry_out(self: &Arc<Self>, st: &mut DriverState) {
        while let Some(action) = st.flow.poll_action() {
            match action {
                Action::Run(at) => {
                    self.spawn_node(st, at, move |me, at_timeout| async move {
                        let report = |input| me.input(input);
                        exec::execute(&me.ctx, at, &report, &at_timeout).await
                    });
                }
                // Off the lock: binding the call is reported back to the flow.
                Action::Take { at, call } => {
                    let me = self.clone();
                    self.tracker.spawn(async move {
                        let result = exec::take_incoming(&me.ctx, at, session::CallKey(call))
                            .map_err(|f| with_missing(&me.ctx, at, f));
                        me.input(Input::Done { at, result });
                    });
                }
                Action::Invite {
                    at,
                    to,
                    session_expires,
                } => {
                    // A redirect's or a 422's next INVITE replaces the last one's task, which
                    // has ended.
                    self.spawn_node(st, at, move |me, _| async move {
                        let report = |input| me.input(input);
                        let sent = exec::invite(&me.ctx, at, to, session_expires, &report).await;
                        sent.err().map(Err)
                    });
                }
                Action::Note { at, message } => {
                    let node = &self.ctx.scenario.nodes[at.node];
                    self.ctx.uas[node.instance].log(
                        Level::Info,
                        Some(&node.id),
                        Some(&node.call_id),
                        message,
                    );
                }
                Action::TimedOut(at, failed) => {
                    // What carries it out ends first; a command may say what its timeout means.
                    let mut result = Err(failed);
                    if let Some((token, at_timeout)) = st.running.remove(&at) {
                        token.cancel();
                        let waited = self.ctx.scenario.nodes[at.node].timeout;
                        if let Some(r) = at_timeout.verdict(waited) {
                            result = r;
                        }
                    }
                    let result = result.map_err(|f| with_missing(&self.ctx, at, f));
                    st.flow.handle(Instant::now(), Input::Done { at, result });
                }
                Action::Abort(at) => {
                    if let Some((t, _)) = st.running.remove(&at) {
                        t.cancel();
                    }
                }
                Action::State(change) => {
                    if change.to != NodeState::Running {
                        st.running.remove(&change.at);
                    }
                    emit_state(&self.ctx, &change);
                }
                Action::Ended { iteration, verdict } => {
                    st.ended.push_back((iteration, verdict));
                    self.wake.notify_one();
                }
            }
        }
        let next = st.flow.poll_timeout();
        if next != st.deadline {
            st.deadline = next;
            self.wake.notify_one();
        }
    }

    /// Waits (1 s at most) for the tasks of the nodes it ran, then hands the flow back (its
    /// node records).
    pub(crate) async fn finish(self: Arc<Self>) -> Flow {
        self.tracker.close();
        if tokio::time::timeout(Duration::from_secs(1), self.tracker.wait())
            .await
            .is_err()
        {
            log(
                &self.ctx.bus,
                Level::Warning,
                None,
                None,
                None,
                "a node did not stop within 1 s; cleaning up anyway".into(),
            );
        }
        let mut st = self.state();
        std::mem::replace(&mut st.flow, Flow::new(self.ctx.scenario.clone()))
    }
}

/// Drives the flow until iteration 0 ends: `begin` starts it (or abandons it); the nodes it
/// hands over run in tasks of their own, which tell it their results; the session tells it
/// every call binding and call event (which its event nodes wait for); this task fires its
/// timers and passes a stop in. Returns the verdict, whether a stop ended it, and the flow (its
/// node records). Tasks of nodes the flow aborts end at once; they are awaited (1 s at most)
/// before this returns.
async fn drive(
    ctx: &Arc<Ctx>,
    flow: Flow,
    sessions: &Sessions,
    stop: &CancellationToken,
    begin: impl FnOnce(&mut Flow),
) -> (Verdict, bool, Flow) {
    let driver = Driver::new(ctx.clone(), flow, sessions);
    driver.with_flow(|st| begin(&mut st.flow));
    let mut stopped = false;
    let verdict = loop {
        let deadline = {
            let mut st = driver.state();
            if let Some((_, v)) = st.ended.pop_front() {
                break v;
            }
            st.deadline
        };
        tokio::select! {
            () = driver.wake.notified() => {}
            () = sleep_until(deadline), if deadline.is_some() => driver.timeout(),
            () = stop.cancelled(), if !stopped => {
                stopped = true;
                log(&ctx.bus, Level::Warning, None, None, None, "stop requested: cancelling every chain".into());
                driver.input(Input::Stop);
            }
        }
    };
    (verdict, stopped, driver.finish().await)
}

/// What the flow hears of a binding or a call event (the events its nodes wait for).
fn input_of(o: Observed) -> Option<Input> {
    Some(match o {
        Observed::Bound {
            call,
            ua,
            iteration,
            name,
            role,
        } => Input::Bound {
            call: call.0,
            iteration,
            role: ua,
            name,
            outgoing: role == session::Role::Outgoing,
        },
        Observed::Arrived {
            call,
            ua,
            iteration,
        } => Input::Arrived {
            call: call.0,
            role: ua,
            iteration,
        },
        Observed::Withdrawn { call } => Input::Withdrawn { call: call.0 },
        Observed::Closed { call } => Input::Closed { call: call.0 },
        Observed::Event { call, event } => Input::Signal {
            call: call.0,
            signal: match event {
                CallEvent::Provisional { code, .. } => Signal::Provisional(code),
                CallEvent::Confirmed { .. } => Signal::Confirmed,
                CallEvent::Terminated { .. } => Signal::Ended,
                CallEvent::Held => Signal::Held,
                CallEvent::Retrieved => Signal::Retrieved,
                CallEvent::Transferred { .. } => Signal::Transferred,
                CallEvent::Replaced => Signal::Replaced,
                CallEvent::MediaFlowing => Signal::MediaFlowing,
                CallEvent::Digit(d) => Signal::Digit(d),
                _ => return None,
            },
        },
    })
}

pub(crate) async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
    }
}

/// A node's change of state as an event; a failure is logged too.
fn emit_state(ctx: &Ctx, c: &StateChange) {
    let node = &ctx.scenario.nodes[c.at.node];
    let inst = &ctx.scenario.instances[node.instance];
    if c.to == NodeState::Failed
        && let Some(msg) = &c.reason
    {
        log(
            &ctx.bus,
            Level::Error,
            Some(&inst.id),
            Some(&node.id),
            Some(&node.call_id),
            format!("{} on {}: {msg}", node.action.name(), inst.label),
        );
    }
    ctx.bus.emit(EventKind::NodeState(NodeStateChange {
        node: node.id.clone(),
        ua: inst.id.clone(),
        from: c.from,
        to: c.to,
        reason: c.reason.clone(),
        duration_ms: c.duration.map(|d| d.as_secs_f64() * 1000.0),
        handled: c.handled,
        iteration: (c.at.iteration != 0).then_some(c.at.iteration),
    }));
}

/// A node's failure, with what never arrived on the node's call (a request of ours no
/// response answered, a 2xx of ours no ACK acknowledged): under loss or with a peer gone, that
/// names the message the run waited for.
fn with_missing(ctx: &Ctx, at: NodeRef, mut f: NodeError) -> NodeError {
    let node = &ctx.scenario.nodes[at.node];
    let ua = ctx.ua(node.instance, at.iteration);
    if let Some(call) = ua.sessions.get(ua.idx, at.iteration, &node.call_id) {
        f.on_the_wire = ua.ledger.missing(&call.sip_call_id());
    }
    // A connection that could not be made while the node ran: its request never left (unless
    // the failure says so already).
    let said = f.to_string();
    f.on_the_wire.extend(
        ua.link_failures
            .within(node.timeout + Duration::from_secs(1))
            .into_iter()
            .filter(|why| !said.contains(why.as_str())),
    );
    f
}
