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
    if report.setup_error {
        return Ok(exit_code::SETUP_ERROR);
    }
    Ok(report.outcome.exit_code())
}
