//! `callflow`: run SIP call-flow scenarios against real sockets.

mod load;
mod output;
mod plan;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use events::exit_code;
use orchestrator::PortPolicy;
use std::net::IpAddr;
use std::path::PathBuf;
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
    /// Run a scenario as a load: many iterations at a rate, with statistics (docs/load.md).
    /// Exit 0 when the failures stayed within --max-failures, 1 otherwise.
    Load(load::LoadArgs),
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
    #[command(flatten)]
    net: Network,
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
    /// each call's packets, the last 30,000, as one `rtp_capture` event when its media ends).
    #[arg(long)]
    no_rtp_capture: bool,
    #[command(flatten)]
    limits: LimitArgs,
    /// Memory the reports (ladder, JUnit, pcap, --out) may keep of a run's events; past it, SIP
    /// messages and RTP packets are left out of them (the --events stream keeps all) [default:
    /// 128].
    #[arg(long, value_name = "MIB")]
    report_memory: Option<usize>,
}

/// Where the UAs listen and which ports they may take (`run` and `load` alike).
#[derive(Args, Clone, Debug)]
pub(crate) struct Network {
    /// Address the UAs bind to.
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) bind: IpAddr,
    /// First SIP port to try; without it the OS picks free ports.
    #[arg(long)]
    pub(crate) base_port: Option<u16>,
    /// How many SIP ports (2 apart) from --base-port may be used.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) port_count: u16,
    /// First RTP port to try; without it the OS picks free ports.
    #[arg(long)]
    pub(crate) rtp_base_port: Option<u16>,
    /// How many RTP ports (2 apart) from --rtp-base-port may be used.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) rtp_port_count: u16,
    /// Drop this percentage of the RTP each UA receives, as a lossy path would (seeded: the
    /// same --rtp-loss-seed drops the same packets): what the scenario's media checks and MOS
    /// make of loss.
    #[arg(long, value_name = "PERCENT", value_parser = percent)]
    pub(crate) rtp_loss: Option<f64>,
    /// The seed of --rtp-loss.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "rtp_loss")]
    pub(crate) rtp_loss_seed: u64,
    /// Append the secrets of every TLS session to PATH (SSLKEYLOGFILE format), so Wireshark
    /// can decrypt a capture of the real connections (docs/transports.md).
    #[arg(long, value_name = "PATH")]
    pub(crate) keylog: Option<PathBuf>,
}

/// A percentage, 0 to 100.
fn percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("expected a percentage from 0 to 100, got `{s}`")),
    }
}

impl Network {
    /// `--keylog`, as the engine takes it.
    pub(crate) fn keylog(&self) -> Option<String> {
        self.keylog
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
    }

    /// The simulated loss of received RTP, if asked for.
    pub(crate) fn rtp_loss(&self) -> Option<orchestrator::RtpLoss> {
        self.rtp_loss.map(|percent| orchestrator::RtpLoss {
            percent,
            seed: self.rtp_loss_seed,
        })
    }

    /// The SIP and RTP port policies.
    pub(crate) fn policies(&self) -> (PortPolicy, PortPolicy) {
        let policy = |base: Option<u16>, count| {
            base.map_or(PortPolicy::Ephemeral, |b| PortPolicy::range(b, count))
        };
        (
            policy(self.base_port, self.port_count),
            policy(self.rtp_base_port, self.rtp_port_count),
        )
    }
}

/// Bounds on what a peer can make a UA hold (`run` and `load` alike).
#[derive(Args, Clone, Debug)]
pub(crate) struct LimitArgs {
    /// How long an INVITE that no INCOMING node takes is held (ringing) before it is answered
    /// 480 Temporarily Unavailable [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub(crate) unclaimed_invite_hold: Option<Duration>,
    /// TCP connections a UA keeps at once; past it the one idle longest is closed
    /// [default: 256].
    #[arg(long, value_name = "N")]
    pub(crate) max_tcp_connections: Option<usize>,
    /// A TCP connection with no message for this long is closed [default: 120s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub(crate) tcp_idle_timeout: Option<Duration>,
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
        Command::Run(args) => plan::run(args),
        Command::Load(args) => load::run(args),
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

    /// Runs `work` under the stop every command shares: the first signal says `stopping` and
    /// cancels `stop`, and `work` then has 9 s to end with its cleanup; a second signal, or
    /// the 9 s, gives `None` (leave at once), so a command returns within 10 s of Ctrl-C.
    async fn stop_within<T>(
        &mut self,
        work: impl Future<Output = T>,
        stop: &tokio_util::sync::CancellationToken,
        stopping: &str,
    ) -> Option<T> {
        tokio::pin!(work);
        tokio::select! {
            r = &mut work => return Some(r),
            () = self.recv() => {}
        }
        eprintln!("\ncallflow: {stopping} (Ctrl-C again to exit at once)");
        stop.cancel();
        tokio::select! {
            r = &mut work => Some(r),
            () = self.recv() => None,
            () = tokio::time::sleep(Duration::from_secs(9)) => {
                eprintln!("callflow: cleanup did not finish in time; exiting");
                None
            }
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

/// The memory the reports may keep of a run's events, in bytes.
fn report_budget(args: &RunArgs) -> usize {
    args.report_memory
        .map_or(events::retained::DEFAULT_BUDGET, |mib| {
            mib.saturating_mul(1 << 20)
        })
}

/// The run's limits: each flag given, else the engine's default (one source for both).
fn limits(args: &LimitArgs) -> orchestrator::Limits {
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
