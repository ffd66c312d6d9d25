//! `callflow load`: a scenario as a load (docs/load.md). A live line once a second, a stats
//! file per interval, a summary at the end; the exit code says whether the failures stayed
//! within `--max-failures`.

use crate::{LimitArgs, Network, UsageError, limits, output};
use anyhow::Context;
use clap::Args;
use events::exit_code;
use orchestrator::load::{LoadOptions, LoadReport, LoadStats, Pacing, Snapshot, Summary};
use orchestrator::{EventBus, EventSink, RunOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug)]
pub(crate) struct LoadArgs {
    /// The scenario (sipflow flow JSON or callflow YAML). Each of its instances is a role with
    /// one SIP endpoint; each iteration has its own calls, timers and verdict.
    file: PathBuf,
    #[command(flatten)]
    net: Network,
    #[command(flatten)]
    limits: LimitArgs,
    /// New iterations per second, on an absolute schedule (SIPp's -r) [default: 10]. With
    /// --users: the rate at which the first users start.
    #[arg(long, short = 'r', value_name = "PER_SECOND")]
    rate: Option<f64>,
    /// Ramp: the rate goes up by this much every --rate-interval (SIPp's -rate_increase)...
    #[arg(long, value_name = "PER_SECOND", requires = "rate_max")]
    rate_increase: Option<f64>,
    /// ...up to this (SIPp's -rate_max).
    #[arg(long, value_name = "PER_SECOND")]
    rate_max: Option<f64>,
    /// How often the ramp steps up.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    rate_interval: Duration,
    /// Closed loop: keep this many iterations in flight, a new one as soon as one ends.
    #[arg(long, value_name = "N", conflicts_with_all = ["rate_increase", "rate_max"])]
    users: Option<usize>,
    /// Iterations in flight at most (SIPp's -l); a start due meanwhile waits and counts as late.
    #[arg(long, alias = "limit", value_name = "N")]
    max_concurrent: Option<usize>,
    /// Iterations in all, whoever starts them (SIPp's -m). A load needs this or --duration.
    #[arg(long, short = 'm', value_name = "N")]
    calls: Option<u64>,
    /// Start no iteration after this long; those in flight end on their own.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Stop early once more iterations than this failed; exit 1 when more failed.
    #[arg(long, value_name = "K", default_value_t = 0)]
    max_failures: u64,
    /// Write the summary as JSON to PATH (docs/load.md, schema version 1).
    #[arg(long, value_name = "PATH")]
    summary: Option<PathBuf>,
    /// Write a line of statistics every --stats-interval to PATH: CSV when it ends in .csv,
    /// else JSON Lines (SIPp's -trace_stat, with percentiles); `-`: JSON Lines on stdout.
    #[arg(long, value_name = "PATH")]
    stats: Option<PathBuf>,
    /// How often --stats gets a line.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = humantime::parse_duration)]
    stats_interval: Duration,
    /// Write every event as JSON Lines to PATH (`-` for stdout): large under load.
    #[arg(long, value_name = "PATH")]
    events: Option<String>,
    /// Write a folder per kept iteration to DIR: the first 10 failed iterations and the first
    /// 2 passed ones, each with its events.jsonl and ladder (text and HTML), and the summary.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Per-iteration data (SIPp's -inf): a CSV whose first line names the fields; each
    /// iteration takes a row, and `${field}` (and `${iteration}`) in DNs, PBX auth users and
    /// passwords, MakeCall targets and headers becomes that row's value. A role whose PBX account
    /// uses a field registers every row's user before the first call.
    #[arg(long, value_name = "CSV")]
    inf: Option<PathBuf>,
    /// How an iteration picks its row of --inf.
    #[arg(long, value_enum, default_value = "sequential", requires = "inf")]
    inf_order: InfOrder,
    /// Serve Prometheus metrics at http://ADDR/metrics while the load runs (OpenMetrics text:
    /// iterations by outcome, responses by status, retransmissions, in flight, setup and
    /// post-dial delay histograms).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Send RTP on every call (G.711 both ways, from the shared media clock) even when the
    /// scenario has no media node; without it, only a scenario with one sends media.
    #[arg(long)]
    media: bool,
    /// Send each role's calls from N sockets (each its own SIP endpoint on its own port):
    /// iteration i goes through socket i mod N, so a PBX that balances or limits by source
    /// port sees N peers (SIPp's multi-socket mode, -t un with -max_socket N). A role that
    /// only answers keeps one socket: its peers send to one address.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    sockets_per_role: u16,
    /// Worker threads of the engine. 1 (the default) runs everything on one thread: no wake-ups
    /// between threads, a third less CPU per call and, against one peer, the higher clean rate
    /// (docs/performance.md); more spread a load over cores.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Print only the verdict line.
    #[arg(short, long)]
    quiet: bool,
}

/// Iterations whose events `--out` keeps: failed, passed.
const KEEP: (usize, usize) = (10, 2);

/// Writes each kept iteration's events and ladders in a folder of its own under `dir`.
fn write_kept(
    dir: &std::path::Path,
    kept: &[orchestrator::load::KeptIteration],
) -> anyhow::Result<()> {
    for k in kept {
        let outcome = serde_json::to_value(k.outcome)?;
        let name = format!(
            "iteration-{:06}-{}",
            k.iteration,
            outcome.as_str().unwrap_or("ended")
        );
        let d = dir.join(name);
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        let mut lines = String::new();
        for e in &k.events {
            lines.push_str(&serde_json::to_string(e)?);
            lines.push('\n');
        }
        std::fs::write(d.join("events.jsonl"), lines)?;
        let ladder = report::Ladder::from_events(&k.events);
        std::fs::write(d.join("ladder.txt"), ladder.to_text(120))?;
        std::fs::write(d.join("ladder.html"), ladder.to_html())?;
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum InfOrder {
    /// Iteration k takes row k (and round again).
    Sequential,
    /// A row at random per iteration.
    Random,
    /// One row per user: an iteration holds the first row no iteration in flight holds, until
    /// it ends (with --users U, U rows in turn).
    User,
}

/// Where the per-interval lines go.
enum StatsFile {
    Csv(Box<dyn Write + Send>),
    Json(Box<dyn Write + Send>),
}

impl StatsFile {
    fn open(path: &PathBuf) -> anyhow::Result<Self> {
        if path.as_os_str() == "-" {
            return Ok(Self::Json(Box::new(std::io::stdout())));
        }
        let f = std::fs::File::create(path)
            .with_context(|| format!("cannot create the stats file {}", path.display()))?;
        let mut w: Box<dyn Write + Send> = Box::new(std::io::BufWriter::new(f));
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            writeln!(
                w,
                "elapsed_s,target_rate,rate,in_flight,started,passed,failed,retransmissions,setup_count,setup_p50_ms,setup_p99_ms,transactions,rss_mb"
            )?;
            Ok(Self::Csv(w))
        } else {
            Ok(Self::Json(w))
        }
    }

    fn write(&mut self, s: &Snapshot) {
        let _ = match self {
            Self::Csv(w) => writeln!(
                w,
                "{:.3},{},{:.1},{},{},{},{},{},{},{:.3},{:.3},{},{:.1}",
                s.elapsed_s,
                s.target_rate
                    .map_or_else(String::new, |r| format!("{r:.1}")),
                s.rate,
                s.in_flight,
                s.started,
                s.passed,
                s.failed,
                s.retransmissions,
                s.setup_count,
                s.setup_p50_ms,
                s.setup_p99_ms,
                s.transactions,
                s.rss_mb
            ),
            Self::Json(w) => serde_json::to_writer(&mut *w, s)
                .map_err(std::io::Error::other)
                .and_then(|()| writeln!(w)),
        };
        let _ = match self {
            Self::Csv(w) | Self::Json(w) => w.flush(),
        };
    }
}

fn live_line(s: &Snapshot) -> String {
    let target = s
        .target_rate
        .map_or_else(String::new, |r| format!(" (target {r:.0})"));
    format!(
        "{:>6.1}s  rate {:.1}/s{target}  in flight {}  passed {}  failed {}  setup p50 {:.2} ms p99 {:.2} ms  retrans {}",
        s.elapsed_s,
        s.rate,
        s.in_flight,
        s.passed,
        s.failed,
        s.setup_p50_ms,
        s.setup_p99_ms,
        s.retransmissions
    )
}

pub(crate) fn run(args: LoadArgs) -> anyhow::Result<i32> {
    if args.calls.is_none() && args.duration.is_none() {
        return Err(
            UsageError("a load needs a bound: --calls N, --duration D, or both".into()).into(),
        );
    }
    for (flag, v) in [
        ("--rate", args.rate),
        ("--rate-max", args.rate_max),
        ("--rate-increase", args.rate_increase),
    ] {
        if v.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return Err(UsageError(format!("{flag} must be a positive number")).into());
        }
    }
    if args.rate_increase.is_some() && args.rate_interval.is_zero() {
        return Err(UsageError("--rate-interval must be longer than 0".into()).into());
    }
    if args.users == Some(0) || args.max_concurrent == Some(0) {
        return Err(UsageError("--users and --max-concurrent must be at least 1".into()).into());
    }
    let data = match &args.inf {
        None => None,
        Some(path) => {
            let order = match args.inf_order {
                InfOrder::Sequential => orchestrator::data::Order::Sequential,
                InfOrder::Random => orchestrator::data::Order::Random,
                InfOrder::User => orchestrator::data::Order::User,
            };
            match orchestrator::data::Data::read(path, order) {
                Ok(d) => Some(Arc::new(d)),
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(exit_code::INVALID);
                }
            }
        }
    };
    let keep = data.as_ref().map(|d| d.names()).unwrap_or_default();
    let (scenario, warnings) = match scenario::load_keeping(&args.file, &keep) {
        Ok(s) => s,
        Err(diags) => {
            eprintln!("{diags}");
            eprintln!("callflow: the scenario is invalid; nothing was sent");
            return Ok(exit_code::INVALID);
        }
    };
    for w in &warnings.0 {
        eprintln!("{w}");
    }
    let rate = args.rate.unwrap_or(10.0);
    let pacing = match args.users {
        Some(users) => Pacing::Users {
            users,
            ramp: args.rate.unwrap_or_else(|| (users as f64).max(10.0)),
        },
        None => Pacing::Rate(orchestrator::load::Ramp {
            rate,
            increase: args.rate_increase.unwrap_or(0.0),
            every: args.rate_interval,
            max: args.rate_max.unwrap_or(rate).max(rate),
        }),
    };
    if orchestrator::load::answers(&scenario) && (args.rate.is_some() || args.users.is_some()) {
        eprintln!(
            "callflow: every chain of {} starts with INCOMING: each INVITE starts an iteration; --rate and --users do not apply",
            args.file.display()
        );
    }
    let (sip_ports, rtp_ports) = args.net.policies();
    let stop = tokio_util::sync::CancellationToken::new();
    let opts = LoadOptions {
        run: RunOptions {
            sip_ports,
            rtp_ports,
            bind_ip: args.net.bind,
            stop: stop.clone(),
            limits: limits(&args.limits),
            media: args.media || scenario.nodes.iter().any(|n| n.action.uses_media()),
            keep_audio: scenario.nodes.iter().any(|n| n.action.reads_audio()),
            data,
            sockets_per_role: usize::from(args.sockets_per_role),
            rtp_loss: args.net.rtp_loss(),
            keylog: args.net.keylog(),
            ..RunOptions::default()
        },
        pacing,
        calls: args.calls,
        duration: args.duration,
        max_concurrent: args.max_concurrent,
        max_failures: args.max_failures,
        interval: args.stats_interval.max(Duration::from_millis(100)),
    };
    let mut stats_file = args.stats.as_ref().map(StatsFile::open).transpose()?;
    let metrics = args
        .metrics
        .map(|_| Arc::new(orchestrator::load::Metrics::default()));
    let stats = Arc::new(LoadStats::new(metrics.clone()));
    let mut sinks: Vec<Arc<dyn EventSink>> = vec![stats.clone()];
    let stream = match args.events.as_deref() {
        None => None,
        Some("-") => Some(output::JsonLines::new(Box::new(std::io::stdout()), true)),
        Some(path) => {
            let f = std::fs::File::create(path)
                .with_context(|| format!("cannot create the events file {path}"))?;
            Some(output::JsonLines::new(Box::new(f), false))
        }
    };
    if let Some(j) = &stream {
        sinks.push(j.clone());
    }
    let kept = args
        .out
        .as_ref()
        .map(|_| Arc::new(orchestrator::load::Kept::new(KEEP.0, KEEP.1)));
    if let Some(k) = &kept {
        sinks.push(k.clone());
    }
    if let Some(d) = &args.out {
        std::fs::create_dir_all(d)
            .with_context(|| format!("cannot create the folder {}", d.display()))?;
    }
    let quiet = args.quiet;
    let bar = (!quiet).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(2));
        bar
    });
    let plain = bar.as_ref().is_some_and(indicatif::ProgressBar::is_hidden);
    let mut ticks = 0u64;
    let rt = match args.threads.filter(|&n| n > 1) {
        None => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(n))
            .enable_all()
            .build(),
    }
    .context("cannot start the runtime")?;
    let report: Option<LoadReport> = rt.block_on(async {
        let mut signals = crate::StopSignals::new()?;
        if let (Some(addr), Some(m)) = (args.metrics, metrics) {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for --metrics"))?;
            let addr = listener.local_addr().unwrap_or(addr);
            let app = web::guard_router(
                axum::Router::new().route(
                    "/metrics",
                    axum::routing::get(move || {
                        let m = m.clone();
                        async move {
                            (
                                [(
                                    axum::http::header::CONTENT_TYPE,
                                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                )],
                                m.render(),
                            )
                        }
                    }),
                ),
                addr,
            );
            if !quiet {
                eprintln!("callflow: metrics on http://{addr}/metrics");
            }
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
        }
        let on_tick = |s: &Snapshot| {
            if let Some(f) = stats_file.as_mut() {
                f.write(s);
            }
            if let Some(bar) = &bar {
                if plain {
                    // No terminal (CI): a line every 10 s.
                    if ticks.is_multiple_of(10) {
                        eprintln!("callflow: {}", live_line(s));
                    }
                } else {
                    bar.set_message(live_line(s));
                    bar.tick();
                }
            }
            ticks += 1;
        };
        let work = orchestrator::load::load(&scenario, opts, EventBus::new(sinks), stats, on_tick);
        anyhow::Ok(
            signals
                .stop_within(
                    work,
                    &stop,
                    "stopping: no new iterations; those in flight end with their cleanup",
                )
                .await,
        )
    })?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    if let Some(j) = &stream {
        j.flush();
    }
    let Some(report) = report else {
        std::process::exit(exit_code::STOPPED);
    };
    rt.shutdown_timeout(Duration::from_millis(200));
    if let Some(path) = &args.summary {
        let text = serde_json::to_string_pretty(&report.summary)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write the summary {}", path.display()))?;
    }
    if let (Some(dir), Some(k)) = (&args.out, &kept) {
        let kept = k.take();
        write_kept(dir, &kept)?;
        std::fs::write(
            dir.join("summary.json"),
            serde_json::to_string_pretty(&report.summary)? + "\n",
        )?;
        if !quiet && !kept.is_empty() {
            eprintln!(
                "callflow: the events and ladders of {} iterations are in {}",
                kept.len(),
                dir.display()
            );
        }
    }
    if let Some(e) = &report.setup_error {
        eprintln!("callflow: the load could not be set up: {e}");
        return Ok(exit_code::SETUP_ERROR);
    }
    print_summary(&report.summary, quiet);
    Ok(match report.summary.outcome {
        "passed" => exit_code::PASSED,
        "stopped" => exit_code::STOPPED,
        _ => exit_code::SCENARIO_FAILED,
    })
}

fn print_summary(s: &Summary, quiet: bool) {
    let c = &s.calls;
    println!(
        "LOAD {}  {}  {} iterations: {} passed, {} failed{}  in {:.1} s",
        s.outcome.to_uppercase(),
        s.scenario,
        c.attempted,
        c.passed,
        c.failed,
        if c.stopped > 0 {
            format!(", {} stopped", c.stopped)
        } else {
            String::new()
        },
        s.duration_s
    );
    if quiet {
        return;
    }
    let target = s
        .rate
        .target
        .map_or_else(String::new, |t| format!("target {t:.1}/s, "));
    println!(
        "  rate: {target}achieved {:.1}/s; {} in flight at most",
        s.rate.achieved, s.concurrency.max_in_flight
    );
    for (name, p) in &s.latency_ms {
        if p.count == 0 || name == "start_lag" {
            continue;
        }
        println!(
            "  {name:<24} n {:<7} p50 {:>8.2} ms  p90 {:>8.2}  p99 {:>8.2}  p99.9 {:>8.2}  max {:>8.2}",
            p.count, p.p50, p.p90, p.p99, p.p999, p.max
        );
    }
    println!(
        "  memory: {:.1} MB at most; {} rsipstack transactions at most (a UAC's INVITE lingers 64 s)",
        s.memory.peak_rss_mb, s.memory.peak_transactions
    );
    println!(
        "  retransmissions: {} sent, {} received",
        s.retransmissions.sent, s.retransmissions.received
    );
    if s.generator_limited {
        println!(
            "  generator_limited: {} starts skipped, {} late, {:.1} ms late at most, {:.1} s at the concurrency limit",
            s.generator.missed_starts,
            s.generator.late_starts,
            s.generator.max_lag_ms,
            s.generator.capped_s
        );
    }
    if !c.failures_by_class.is_empty() {
        let by: Vec<String> = c
            .failures_by_class
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("  failures: {}", by.join(", "));
    }
    for f in &s.first_failures {
        println!("  - {f}");
    }
    if !s.leaks.is_clean() {
        println!(
            "  leak check: {} dialogs, {} ports left",
            s.leaks.dialogs, s.leaks.ports
        );
    }
}
