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
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Render the reports of a run folder again from its events.jsonl.
    Report {
        /// A folder written by `run --out`.
        dir: PathBuf,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Scenario file: sipflow flow JSON or callflow YAML (auto-detected).
    file: Option<PathBuf>,
    /// Write every event as JSON Lines to PATH (`-` for stdout).
    #[arg(long, value_name = "PATH")]
    events: Option<String>,
    /// Address the UAs bind to.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// First SIP port to try; without it the OS picks free ports.
    #[arg(long)]
    base_port: Option<u16>,
    /// How many SIP ports (2 apart) from --base-port may be used.
    #[arg(long, default_value_t = 100)]
    port_count: u16,
    /// First RTP port to try; without it the OS picks free ports.
    #[arg(long)]
    rtp_base_port: Option<u16>,
    /// How many RTP ports (2 apart) from --rtp-base-port may be used.
    #[arg(long, default_value_t = 1000)]
    rtp_port_count: u16,
    /// Show every SIP message as it crosses the wire.
    #[arg(short, long)]
    verbose: bool,
    /// Print only the verdict line.
    #[arg(short, long)]
    quiet: bool,
    /// Print the ladder diagram of the run (120 columns) after the summary.
    #[arg(long)]
    ladder: bool,
    /// Write JUnit XML to PATH.
    #[arg(long, value_name = "PATH")]
    junit: Option<PathBuf>,
    /// Write the SIP messages as a pcap to PATH.
    #[arg(long, value_name = "PATH")]
    pcap: Option<PathBuf>,
    /// Write the ladder as a Mermaid sequenceDiagram to PATH.
    #[arg(long, value_name = "PATH")]
    mermaid: Option<PathBuf>,
    /// Write a run folder: events.jsonl, summary.json, ladder.txt, ladder.html, ladder.mmd, junit.xml, capture.pcap.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

fn main() {
    let code = match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("callflow: error: {e:#}");
            exit_code::SETUP_ERROR
        }
    };
    std::process::exit(code);
}

fn real_main() -> anyhow::Result<i32> {
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
        Command::Validate { files } => Ok(validate(&files)),
        Command::Run(args) => run(args),
        Command::Report { dir } => report(&dir),
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

fn run(args: RunArgs) -> anyhow::Result<i32> {
    let parsed = match &args.file {
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
    let collector = orchestrator::Collector::new();
    sinks.push(collector.clone());
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
    let file_name = args
        .file
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
        ..RunOptions::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let report = rt.block_on(async move {
        let bus = EventBus::new(sinks);
        let run = orchestrator::run(&scenario, opts, bus);
        tokio::pin!(run);
        tokio::select! {
            r = &mut run => return Some(r),
            _ = tokio::signal::ctrl_c() => {}
        }
        // First Ctrl-C: stop gracefully, within 10 s whatever happens; a second exits at once.
        eprintln!("\ncallflow: stopping (Ctrl-C again to exit at once)");
        stop.cancel();
        tokio::select! {
            r = &mut run => Some(r),
            _ = tokio::signal::ctrl_c() => None,
            () = tokio::time::sleep(Duration::from_secs(9)) => {
                eprintln!("callflow: cleanup did not finish in time; exiting");
                None
            }
        }
    });
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
    }
    Ok(())
}

fn report(dir: &std::path::Path) -> anyhow::Result<i32> {
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
