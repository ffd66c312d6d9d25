//! `callflow`: run SIP call-flow scenarios against real sockets.

mod output;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use events::exit_code;
use orchestrator::{EventBus, EventSink, PortPolicy, RunOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The scenario `callflow run` runs when given no file: the basic two-party call, on loopback.
const BUNDLED: (&str, &str) = (
    "bundled:basic-call.yaml",
    include_str!("../../../fixtures/basic-call.yaml"),
);

#[derive(Parser)]
#[command(
    name = "callflow",
    version,
    about = "SIP call-flow test harness: scenarios of several user agents, run on real sockets"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate and run a scenario (the bundled basic call when no file is given).
    Run(RunArgs),
    /// Check scenarios without sending anything. Exit 0 when all are valid, 2 otherwise.
    Validate {
        /// Scenario files, folders (their *.yaml, *.yml and *.json) or glob patterns, as `run`
        /// takes them.
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Render the reports of a run folder again from its events.jsonl.
    Report {
        /// A folder written by `run --out`.
        dir: PathBuf,
    },
    /// Serve the browser UI and its API for the scenarios in a workspace folder (Ctrl-C,
    /// SIGTERM or SIGHUP stops; see docs/security.md for what it trusts).
    Serve {
        /// Address to listen on; loopback unless --allow-remote.
        #[arg(long, default_value = "127.0.0.1:7070")]
        listen: std::net::SocketAddr,
        /// The folder whose scenario files the UI lists, edits and runs.
        #[arg(long, default_value = ".")]
        workspace: PathBuf,
        /// Allow a non-loopback --listen address (anyone who reaches it can run scenarios).
        #[arg(long)]
        allow_remote: bool,
        /// Another host name the server answers to (`name` or `name:port`, for a reverse proxy
        /// or a DNS name); requests naming any other host are refused. Repeatable.
        #[arg(long = "allow-host", value_name = "NAME")]
        allow_hosts: Vec<String>,
        /// Run scenarios that start sidecar processes (they run any command the file names, as
        /// this user); without it such scenarios are refused.
        #[arg(long)]
        allow_sidecars: bool,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Scenario files (sipflow flow JSON or callflow YAML, auto-detected), folders of them, or
    /// glob patterns. None: the bundled basic call. Several: run in parallel (see --jobs).
    files: Vec<String>,
    /// With several scenarios, how many run at once.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Write every event as JSON Lines to PATH (`-` for stdout). With several scenarios, one
    /// stream per run: PATH-NN-<name>.<ext>.
    #[arg(long, value_name = "PATH")]
    events: Option<String>,
    /// Address the UAs bind to.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// First SIP port to try; without it the OS picks free ports.
    #[arg(long)]
    base_port: Option<u16>,
    /// How many SIP ports (2 apart) from --base-port may be used.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..))]
    port_count: u16,
    /// First RTP port to try; without it the OS picks free ports.
    #[arg(long)]
    rtp_base_port: Option<u16>,
    /// How many RTP ports (2 apart) from --rtp-base-port may be used.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..))]
    rtp_port_count: u16,
    /// Show every SIP message as it crosses the wire (-v: a line each; -vv: and the whole
    /// message).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Print only the verdict line.
    #[arg(short, long)]
    quiet: bool,
    /// Print the ladder diagram of the run (120 columns) after the summary.
    #[arg(long)]
    ladder: bool,
    /// Write JUnit XML to PATH.
    #[arg(long, value_name = "PATH")]
    junit: Option<PathBuf>,
    /// Write the SIP messages and the RTP as a pcap to PATH.
    #[arg(long, value_name = "PATH")]
    pcap: Option<PathBuf>,
    /// Write the ladder as a Mermaid sequenceDiagram to PATH.
    #[arg(long, value_name = "PATH")]
    mermaid: Option<PathBuf>,
    /// Write a run folder: events.jsonl, summary.json, ladder.txt, ladder.html, ladder.mmd, junit.xml, capture.pcap, recordings/.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Leave RTP out of the event stream and the pcap (by default `--pcap` and `--out` capture it:
    /// an `rtp_packet` event per packet, 50 per second per call direction).
    #[arg(long)]
    no_rtp_capture: bool,
    /// How long an INVITE that no INCOMING node takes is held (ringing) before it is answered
    /// 480 Temporarily Unavailable [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    unclaimed_invite_hold: Option<Duration>,
    /// TCP connections a UA keeps at once; past it the one idle longest is closed
    /// [default: 256].
    #[arg(long, value_name = "N")]
    max_tcp_connections: Option<usize>,
    /// A TCP connection with no message for this long is closed [default: 120s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    tcp_idle_timeout: Option<Duration>,
    /// Memory the reports (ladder, JUnit, pcap, --out) may keep of a run's events; past it, SIP
    /// messages and RTP packets are left out of them (the --events stream keeps all) [default:
    /// 128].
    #[arg(long, value_name = "MIB")]
    report_memory: Option<usize>,
}

/// A command line that names nothing to work on (a glob that matches no file, a folder with no
/// scenario): exit 2, like clap's own usage errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

fn main() {
    let code = match real_main() {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<UsageError>().is_some() => {
            eprintln!("callflow: {e:#}");
            exit_code::INVALID
        }
        Err(e) => {
            eprintln!("callflow: error: {e:#}");
            exit_code::SETUP_ERROR
        }
    };
    std::process::exit(code);
}

/// Raises the open-file limit to its hard maximum (many systems start at 1,024): each UA holds
/// sockets, each TCP peer a connection, and running out makes every accept fail.
fn raise_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

fn real_main() -> anyhow::Result<i32> {
    raise_file_limit();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                exit_code::INVALID
            } else {
                exit_code::PASSED
            };
            let _ = e.print();
            return Ok(code);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CALLFLOW_LOG")
                .unwrap_or_else(|_| "off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Validate { files } => Ok(validate(&expand(&files)?)),
        Command::Run(args) => run(args),
        Command::Report { dir } => report(&dir),
        Command::Serve {
            listen,
            workspace,
            allow_remote,
            allow_hosts,
            allow_sidecars,
        } => serve(
            listen,
            workspace,
            allow_remote,
            web::ServeOptions {
                allowed_hosts: allow_hosts,
                allow_sidecars,
                token: None,
            },
        ),
    }
}

fn serve(
    listen: std::net::SocketAddr,
    workspace: PathBuf,
    allow_remote: bool,
    options: web::ServeOptions,
) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(async move {
        let mut signals = StopSignals::new()?;
        let listener = match web::bind(listen, allow_remote).await {
            Ok(l) => l,
            // A command-line mistake, like any other usage error.
            Err(e @ web::WebError::NotLoopback(_)) => {
                eprintln!("callflow: error: {e}");
                return Ok(exit_code::INVALID);
            }
            Err(e) => return Err(e.into()),
        };
        let addr = listener.local_addr().context("no local address")?;
        eprintln!(
            "callflow: serving {} on http://{addr}/",
            workspace.display()
        );
        let shutdown = tokio_util::sync::CancellationToken::new();
        let on_signal = shutdown.clone();
        tokio::spawn(async move {
            signals.recv().await;
            on_signal.cancel();
        });
        web::serve(listener, workspace, options, shutdown).await?;
        Ok(exit_code::PASSED)
    })
}

/// SIGINT (Ctrl-C), SIGTERM and SIGHUP, each of which stops a run like Ctrl-C, with its cleanup
/// (BYE, sidecars stopped, `run_finished`), instead of killing the process at once. The handlers
/// are installed when this is made (inside the runtime), before anything can be interrupted.
struct StopSignals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            hup: signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
        })
    }

    /// The next of the three.
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
            _ = self.hup.recv() => {}
        }
    }
}

fn validate(files: &[PathBuf]) -> i32 {
    let mut ok = true;
    for f in files {
        match scenario::load(f) {
            Ok((s, warnings)) => {
                for w in &warnings.0 {
                    eprintln!("{w}");
                }
                println!(
                    "{}: valid: `{}`, {} instances, {} nodes",
                    f.display(),
                    s.name,
                    s.instances.len(),
                    s.nodes.len()
                );
            }
            Err(diags) => {
                ok = false;
                eprintln!("{diags}");
                let n = diags.errors().count();
                eprintln!(
                    "{}: invalid: {n} error{}",
                    f.display(),
                    if n == 1 { "" } else { "s" }
                );
            }
        }
    }
    if ok {
        exit_code::PASSED
    } else {
        exit_code::INVALID
    }
}

/// The scenario files the arguments name: files as given, folders' *.yaml/*.yml/*.json, globs.
fn expand(args: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for a in args {
        let p = PathBuf::from(a);
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(&p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.is_file()
                        && matches!(
                            f.extension().and_then(|x| x.to_str()),
                            Some("yaml" | "yml" | "json")
                        )
                })
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(UsageError(format!(
                    "no scenario (*.yaml, *.yml, *.json) in the folder {a}"
                ))
                .into());
            }
            out.extend(found);
        } else if a.contains(['*', '?', '[']) {
            let mut found: Vec<PathBuf> = glob::glob(a)?
                .filter_map(Result::ok)
                .filter(|f| f.is_file())
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(UsageError(format!("no file matches {a}")).into());
            }
            out.extend(found);
        } else {
            out.push(p);
        }
    }
    Ok(out)
}

fn run(args: RunArgs) -> anyhow::Result<i32> {
    let files = expand(&args.files)?;
    if files.len() > 1 {
        return run_many(&args, &files);
    }
    let file = files.into_iter().next();
    let parsed = match &file {
        Some(path) => scenario::load(path),
        None => scenario::parse_with_warnings(BUNDLED.1, BUNDLED.0),
    };
    let (scenario, warnings) = match parsed {
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

    let events_to_stdout = args.events.as_deref() == Some("-");
    let mut sinks: Vec<Arc<dyn EventSink>> = Vec::new();
    let jsonl = match args.events.as_deref() {
        None => None,
        Some("-") => Some(output::JsonLines::new(Box::new(std::io::stdout()), true)),
        Some(path) => {
            let f = std::fs::File::create(path)
                .with_context(|| format!("cannot create the events file {path}"))?;
            Some(output::JsonLines::new(Box::new(f), false))
        }
    };
    if let Some(j) = &jsonl {
        sinks.push(j.clone());
    }
    // Events are kept in memory only when a report is drawn from them at the end (a flood of
    // messages would otherwise grow the process for the whole run).
    let reports_wanted = args.ladder
        || args.junit.is_some()
        || args.pcap.is_some()
        || args.mermaid.is_some()
        || args.out.is_some();
    let collector = orchestrator::Collector::with_budget(report_budget(&args));
    if reports_wanted {
        sinks.push(collector.clone());
    }
    let out_events = match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the run folder {}", dir.display()))?;
            let f = std::fs::File::create(dir.join("events.jsonl"))
                .context("cannot create events.jsonl")?;
            let j = output::JsonLines::new(Box::new(f), false);
            sinks.push(j.clone());
            Some(j)
        }
        None => None,
    };
    let file_name = file
        .as_ref()
        .map_or_else(|| BUNDLED.0.to_owned(), |f| f.display().to_string());
    let human: Box<dyn Write + Send> = if events_to_stdout {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let terminal = output::Terminal::new(human, args.verbose, args.quiet);
    sinks.push(terminal.clone());

    let policy = |base: Option<u16>, count| {
        base.map_or(PortPolicy::Ephemeral, |b| PortPolicy::range(b, count))
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let opts = RunOptions {
        sip_ports: policy(args.base_port, args.port_count),
        rtp_ports: policy(args.rtp_base_port, args.rtp_port_count),
        bind_ip: args.bind,
        stop: stop.clone(),
        capture_rtp: (args.pcap.is_some() || args.out.is_some()) && !args.no_rtp_capture,
        limits: limits(&args),
        ..RunOptions::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let report = rt.block_on(async move {
        let mut signals = StopSignals::new()?;
        let bus = EventBus::new(sinks);
        let run = orchestrator::run(&scenario, opts, bus);
        tokio::pin!(run);
        tokio::select! {
            r = &mut run => return Ok(Some(r)),
            () = signals.recv() => {}
        }
        // First Ctrl-C: stop gracefully, within 10 s whatever happens; a second exits at once.
        eprintln!("\ncallflow: stopping (Ctrl-C again to exit at once)");
        stop.cancel();
        Ok::<_, anyhow::Error>(tokio::select! {
            r = &mut run => Some(r),
            () = signals.recv() => None,
            () = tokio::time::sleep(Duration::from_secs(9)) => {
                eprintln!("callflow: cleanup did not finish in time; exiting");
                None
            }
        })
    })?;
    if let Some(j) = &jsonl {
        j.flush();
    }
    let Some(report) = report else {
        // Leave at once: do not wait for the runtime's tasks.
        std::process::exit(exit_code::STOPPED);
    };
    terminal.flush();
    rt.shutdown_timeout(Duration::from_millis(200));
    if let Some(j) = &out_events {
        j.flush();
    }
    let events = collector.events();
    if let Some(note) = collector.note() {
        eprintln!("callflow: {note}");
    }
    let outputs = Outputs {
        ladder: args.ladder,
        junit: args.junit,
        pcap: args.pcap,
        mermaid: args.mermaid,
        out: args.out,
    };
    write_reports(&events, &file_name, &outputs)?;
    if report.setup_error {
        return Ok(exit_code::SETUP_ERROR);
    }
    Ok(report.outcome.exit_code())
}

/// The memory the reports may keep of a run's events, in bytes.
fn report_budget(args: &RunArgs) -> usize {
    args.report_memory
        .map_or(events::retained::DEFAULT_BUDGET, |mib| {
            mib.saturating_mul(1 << 20)
        })
}

/// The run's limits: each flag given, else the engine's default (one source for both).
fn limits(args: &RunArgs) -> orchestrator::Limits {
    let d = orchestrator::Limits::default();
    orchestrator::Limits {
        max_tcp_connections: args
            .max_tcp_connections
            .unwrap_or(d.max_tcp_connections)
            .max(1),
        tcp_idle_timeout: args.tcp_idle_timeout.unwrap_or(d.tcp_idle_timeout),
        unclaimed_invite: args.unclaimed_invite_hold.unwrap_or(d.unclaimed_invite),
    }
}

/// Where the reports of a run go.
struct Outputs {
    ladder: bool,
    junit: Option<PathBuf>,
    pcap: Option<PathBuf>,
    mermaid: Option<PathBuf>,
    out: Option<PathBuf>,
}

fn write_reports(events: &[events::Event], file: &str, o: &Outputs) -> anyhow::Result<()> {
    let ladder = report::Ladder::from_events(events);
    if o.ladder {
        println!("\n{}", ladder.to_text(120));
    }
    let junit = || report::junit::render(&[report::junit::Case { file, events }]);
    if let Some(p) = &o.junit {
        std::fs::write(p, junit()).with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(p) = &o.mermaid {
        std::fs::write(p, ladder.to_mermaid())
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(p) = &o.pcap {
        report::pcap::write(events, p)?;
    }
    if let Some(dir) = &o.out {
        std::fs::write(dir.join("ladder.txt"), ladder.to_text(120))?;
        std::fs::write(dir.join("ladder.mmd"), ladder.to_mermaid())?;
        std::fs::write(dir.join("ladder.html"), ladder.to_html())?;
        std::fs::write(dir.join("junit.xml"), junit())?;
        report::pcap::write(events, &dir.join("capture.pcap"))?;
        let summary = events.iter().rev().find_map(|e| match &e.event {
            events::EventKind::RunFinished(f) => Some(serde_json::to_string_pretty(f)),
            _ => None,
        });
        if let Some(s) = summary {
            std::fs::write(dir.join("summary.json"), s?)?;
        }
        copy_recordings(events, &dir.join("recordings"))?;
    }
    Ok(())
}

/// Copies the WAV recordings the run wrote (`media_stats.recording`) into `to`, named
/// `<ua>-<file name>`; a recording already there, or gone since, is left alone.
fn copy_recordings(events: &[events::Event], to: &std::path::Path) -> anyhow::Result<()> {
    for e in events {
        let events::EventKind::MediaStats(m) = &e.event else {
            continue;
        };
        let Some(src) = m.recording.as_deref().map(std::path::Path::new) else {
            continue;
        };
        let Some(name) = src.file_name() else {
            continue;
        };
        let dest = to.join(format!("{}-{}", m.ua, name.to_string_lossy()));
        if !src.exists() || dest.canonicalize().ok() == src.canonicalize().ok() {
            continue;
        }
        std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
        std::fs::copy(src, &dest)
            .with_context(|| format!("cannot copy {} to {}", src.display(), dest.display()))?;
    }
    Ok(())
}

fn report(dir: &std::path::Path) -> anyhow::Result<i32> {
    if !dir.is_dir() {
        return Err(UsageError(format!(
            "no run folder at {} (`callflow run --out DIR` writes one)",
            dir.display()
        ))
        .into());
    }
    let events = report::read_events(&dir.join("events.jsonl"))?;
    let file = events
        .iter()
        .find_map(|e| match &e.event {
            events::EventKind::RunStarted(r) => Some(r.file.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let o = Outputs {
        ladder: true,
        junit: None,
        pcap: None,
        mermaid: None,
        out: Some(dir.to_path_buf()),
    };
    write_reports(&events, &file, &o)?;
    eprintln!(
        "callflow: re-rendered {} from {} events",
        dir.display(),
        events.len()
    );
    Ok(exit_code::PASSED)
}

/// Runs several scenarios, at most `--jobs` at a time, with one combined summary and JUnit.
fn run_many(args: &RunArgs, files: &[PathBuf]) -> anyhow::Result<i32> {
    if args.events.as_deref() == Some("-") {
        return Err(UsageError(
            "--events - streams one run; with several scenarios give a file path, and each run gets a stream of its own (events.jsonl -> events-01-<name>.jsonl)".into(),
        )
        .into());
    }
    let mut valid = Vec::new();
    // (file, diagnostics) of each scenario that did not validate: counted, and errors in the JUnit.
    let mut invalid_files: Vec<(String, String)> = Vec::new();
    for f in files {
        match scenario::load(f) {
            Ok((s, _)) => valid.push((f.display().to_string(), s)),
            Err(diags) => {
                eprintln!("{diags}");
                println!("INVALID  {}", f.display());
                invalid_files.push((f.display().to_string(), diags.to_string()));
            }
        }
    }
    let invalid = invalid_files.len();
    let policy = |base: Option<u16>, count| {
        base.map_or(PortPolicy::Ephemeral, |b| PortPolicy::range(b, count))
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let jobs = args.jobs.max(1);
    let out_dir = args.out.clone();
    let results = rt.block_on(async {
        let mut signals = StopSignals::new().ok();
        let limit = Arc::new(tokio::sync::Semaphore::new(jobs));
        let budget = report_budget(args);
        let mut handles = Vec::new();
        for (i, (file, s)) in valid.into_iter().enumerate() {
            let limit = limit.clone();
            let stop = stop.clone();
            let stop_before_start = stop.clone();
            let opts = RunOptions {
                sip_ports: policy(args.base_port, args.port_count),
                rtp_ports: policy(args.rtp_base_port, args.rtp_port_count),
                bind_ip: args.bind,
                stop,
                capture_rtp: out_dir.is_some() && !args.no_rtp_capture,
                limits: limits(args),
                ..RunOptions::default()
            };
            let run_dir = out_dir
                .as_ref()
                .map(|d| d.join(format!("{:02}-{}", i + 1, s.name.replace(['/', ' '], "_"))));
            let events_path = args
                .events
                .as_deref()
                .map(|p| per_run_path(p, i + 1, &s.name));
            handles.push(tokio::spawn(async move {
                let _permit = limit.acquire_owned().await;
                // Stopped while it waited for its turn: it never starts.
                if stop_before_start.is_cancelled() {
                    return None;
                }
                let collector = orchestrator::Collector::with_budget(budget);
                let mut sinks: Vec<Arc<dyn EventSink>> = vec![collector.clone()];
                let stream = events_path.as_ref().and_then(|p| {
                    let f = std::fs::File::create(p)
                        .map_err(|e| eprintln!("callflow: cannot create {}: {e}", p.display()))
                        .ok()?;
                    Some(output::JsonLines::new(Box::new(f), false))
                });
                if let Some(j) = &stream {
                    sinks.push(j.clone());
                }
                let jsonl = run_dir.as_ref().and_then(|d| {
                    std::fs::create_dir_all(d).ok()?;
                    let f = std::fs::File::create(d.join("events.jsonl")).ok()?;
                    Some(output::JsonLines::new(Box::new(f), false))
                });
                if let Some(j) = &jsonl {
                    sinks.push(j.clone());
                }
                let report = orchestrator::run(&s, opts, EventBus::new(sinks)).await;
                for j in jsonl.iter().chain(&stream) {
                    j.flush();
                }
                let verdict = format!("{:?}", report.outcome).to_uppercase();
                let why = report
                    .failure
                    .as_ref()
                    .map_or_else(String::new, |f| format!(": {}", f.message));
                println!(
                    "{verdict:<8} {file} ({:.2} s){why}",
                    report.duration.as_secs_f64()
                );
                if let Some(note) = collector.note() {
                    eprintln!("callflow: {file}: {note}");
                }
                Some((file, collector.events(), report, run_dir))
            }));
        }
        // A signal stops every run; each started one still does its cleanup and is counted.
        let joined = futures_join(handles);
        tokio::pin!(joined);
        tokio::select! {
            all = &mut joined => all,
            () = async {
                match &mut signals {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                stop.cancel();
                eprintln!("callflow: stopping every run (cleanup included)");
                joined.await
            }
        }
    });
    let mut panicked = 0;
    let mut not_started = 0;
    let results: Vec<(String, Vec<events::Event>, orchestrator::RunReport)> = results
        .into_iter()
        .filter_map(|r| match r {
            Ok(Some(done)) => Some(done),
            Ok(None) => {
                not_started += 1;
                None
            }
            Err(e) => {
                // Counted as a failure: a run that panicked has no verdict to trust.
                println!("PANICKED a run: {e}");
                panicked += 1;
                None
            }
        })
        .map(|(f, e, r, d)| {
            if let Some(d) = d {
                let o = Outputs {
                    ladder: false,
                    junit: None,
                    pcap: None,
                    mermaid: None,
                    out: Some(d),
                };
                let _ = write_reports(&e, &f, &o);
            }
            (f, e, r)
        })
        .collect();
    let passed = results
        .iter()
        .filter(|(_, _, r)| r.outcome == events::Outcome::Passed)
        .count();
    let stopped = results
        .iter()
        .filter(|(_, _, r)| r.outcome == events::Outcome::Stopped)
        .count();
    let failed = results.len() - passed - stopped + panicked;
    let mut summary = format!(
        "{} scenarios: {passed} passed, {failed} failed, {invalid} invalid",
        results.len() + panicked + not_started + invalid
    );
    if stopped > 0 || not_started > 0 {
        summary.push_str(&format!(", {stopped} stopped, {not_started} not started"));
    }
    println!("{summary}");
    let cases: Vec<report::junit::Case<'_>> = results
        .iter()
        .map(|(f, e, _)| report::junit::Case { file: f, events: e })
        .collect();
    let invalid_cases: Vec<report::junit::Invalid<'_>> = invalid_files
        .iter()
        .map(|(file, diagnostics)| report::junit::Invalid { file, diagnostics })
        .collect();
    let junit = report::junit::render_with_invalid(&cases, &invalid_cases);
    if let Some(p) = &args.junit {
        std::fs::write(p, &junit).with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(d) = &args.out {
        std::fs::write(d.join("junit.xml"), &junit)?;
    }
    Ok(if stopped > 0 || not_started > 0 {
        exit_code::STOPPED
    } else if invalid > 0 {
        exit_code::INVALID
    } else if failed > 0 {
        exit_code::SCENARIO_FAILED
    } else {
        exit_code::PASSED
    })
}

/// Every task's result, in order; a task that panicked gives its panic's text.
async fn futures_join<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<Result<T, String>> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.map_err(|e| e.to_string()));
    }
    out
}

/// The events file of run `n` of several: `PATH` with `-NN-name` before its extension
/// (`run.jsonl` → `run-01-Basic_call.jsonl`), one stream per run.
fn per_run_path(path: &str, n: usize, name: &str) -> PathBuf {
    let p = std::path::Path::new(path);
    let stem = p
        .file_stem()
        .map_or_else(|| "events".into(), |s| s.to_string_lossy());
    let ext = p
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    p.with_file_name(format!("{stem}-{n:02}-{safe}{ext}"))
}
