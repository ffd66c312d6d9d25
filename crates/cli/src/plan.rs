//! `callflow run`: one plan for one scenario and for many. Every scenario named is validated
//! first; each valid one becomes a planned run with its outputs opened up front (an events
//! stream, a run folder). The runs then go at most `--jobs` at a time under one stop: the first
//! signal stops every run, each with its cleanup (BYE sent, `run_finished` emitted), within 10 s
//! whatever happens; a second signal exits at once. A run that panicked counts as failed.
//! One run prints as it goes and draws every report asked for; several print a verdict line
//! each, then one summary and one JUnit.

use crate::output;
use crate::{BUNDLED, Outputs, RunArgs, UsageError, limits, report_budget, write_reports};
use anyhow::Context;
use events::exit_code;
use orchestrator::{EventBus, EventSink, RunOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A scenario that validated, and where its run writes.
struct Planned {
    file: String,
    scenario: scenario::Scenario,
    /// The `--events` stream of this run.
    stream: Option<Arc<output::JsonLines>>,
    /// The run folder (`--out`; with several runs, a folder of its own in it) and its
    /// events.jsonl.
    run_dir: Option<(PathBuf, Arc<output::JsonLines>)>,
}

/// What `callflow run` does.
struct Plan {
    runs: Vec<Planned>,
    /// (file, diagnostics) of each scenario that did not validate.
    invalid: Vec<(String, String)>,
    /// One scenario: it prints as it goes and draws every report.
    single: bool,
}

/// A run that ended.
struct Done {
    file: String,
    events: Vec<events::Event>,
    report: orchestrator::RunReport,
    run_dir: Option<PathBuf>,
}

pub(crate) fn run(args: RunArgs) -> anyhow::Result<i32> {
    let plan = match plan(&args)? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let single = plan.single;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let streams: Vec<Arc<output::JsonLines>> = plan
        .runs
        .iter()
        .flat_map(|p| p.stream.iter().chain(p.run_dir.iter().map(|(_, j)| j)))
        .cloned()
        .collect();
    let terminal = single.then(|| {
        let human: Box<dyn Write + Send> = if args.events.as_deref() == Some("-") {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        };
        output::Terminal::new(human, args.verbose, args.quiet)
    });
    let invalid = plan.invalid;
    let results = rt.block_on(execute(&args, plan.runs, terminal.clone()))?;
    let Some(results) = results else {
        // Stopped twice, or the cleanup overran its bound: keep what the streams have (a run
        // that ended flushed its own), then leave at once, without waiting for the runtime's
        // tasks.
        for j in &streams {
            j.flush();
        }
        std::process::exit(exit_code::STOPPED);
    };
    if let Some(t) = &terminal {
        t.flush();
    }
    rt.shutdown_timeout(Duration::from_millis(200));
    if single {
        finish_one(&args, results)
    } else {
        finish_many(&args, results, &invalid)
    }
}

/// Validates every scenario and opens the outputs of each run; `Err(code)` when nothing can run
/// (the one scenario given is invalid).
fn plan(args: &RunArgs) -> anyhow::Result<Result<Plan, i32>> {
    let files = crate::expand(&args.files)?;
    let single = files.len() <= 1;
    if !single && args.events.as_deref() == Some("-") {
        return Err(UsageError(
            "--events - streams one run; with several scenarios give a file path, and each run gets a stream of its own (events.jsonl -> events-01-<name>.jsonl)".into(),
        )
        .into());
    }
    let mut loaded = Vec::new();
    let mut invalid = Vec::new();
    if files.is_empty() {
        loaded.push((
            BUNDLED.0.to_owned(),
            scenario::parse_with_warnings(BUNDLED.1, BUNDLED.0),
        ));
    }
    for f in &files {
        loaded.push((f.display().to_string(), scenario::load(f)));
    }
    let mut valid = Vec::new();
    for (file, parsed) in loaded {
        match parsed {
            Ok((s, warnings)) => {
                for w in &warnings.0 {
                    eprintln!("{w}");
                }
                valid.push((file, s));
            }
            Err(diags) => {
                eprintln!("{diags}");
                if single {
                    eprintln!("callflow: the scenario is invalid; nothing was sent");
                    return Ok(Err(exit_code::INVALID));
                }
                println!("INVALID  {file}");
                invalid.push((file, diags.to_string()));
            }
        }
    }
    let mut runs = Vec::new();
    for (i, (file, s)) in valid.into_iter().enumerate() {
        let stream = match args.events.as_deref() {
            None => None,
            Some("-") => Some(output::JsonLines::new(Box::new(std::io::stdout()), true)),
            Some(path) => {
                let path = if single {
                    PathBuf::from(path)
                } else {
                    crate::per_run_path(path, i + 1, &s.name)
                };
                let f = std::fs::File::create(&path)
                    .with_context(|| format!("cannot create the events file {}", path.display()))?;
                Some(output::JsonLines::new(Box::new(f), false))
            }
        };
        let run_dir = match &args.out {
            None => None,
            Some(d) => {
                let dir = if single {
                    d.clone()
                } else {
                    d.join(format!("{:02}-{}", i + 1, s.name.replace(['/', ' '], "_")))
                };
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create the run folder {}", dir.display()))?;
                let f = std::fs::File::create(dir.join("events.jsonl"))
                    .with_context(|| format!("cannot create {}/events.jsonl", dir.display()))?;
                Some((dir, output::JsonLines::new(Box::new(f), false)))
            }
        };
        runs.push(Planned {
            file,
            scenario: s,
            stream,
            run_dir,
        });
    }
    Ok(Ok(Plan {
        runs,
        invalid,
        single,
    }))
}

/// Runs the plan, at most `--jobs` at a time, under one stop. Each result is the run's (None:
/// stopped before its turn; Err: it panicked); None as a whole: leave at once.
async fn execute(
    args: &RunArgs,
    runs: Vec<Planned>,
    terminal: Option<Arc<output::Terminal>>,
) -> anyhow::Result<Option<Vec<Result<Option<Done>, String>>>> {
    let mut signals = crate::StopSignals::new()?;
    let stop = tokio_util::sync::CancellationToken::new();
    // One run has the terminal: it prints as it goes.
    let single = terminal.is_some();
    let limit = Arc::new(tokio::sync::Semaphore::new(args.jobs.max(1)));
    let budget = report_budget(args);
    // Events are kept in memory only when a report is drawn from them at the end (a flood of
    // messages would otherwise grow the process for the whole run).
    let keep_events = !single
        || args.ladder
        || args.junit.is_some()
        || args.pcap.is_some()
        || args.mermaid.is_some()
        || args.out.is_some();
    let capture_rtp =
        (args.out.is_some() || (single && args.pcap.is_some())) && !args.no_rtp_capture;
    let mut handles = Vec::new();
    for p in runs {
        let opts = RunOptions {
            sip_ports: args.net.policies().0,
            rtp_ports: args.net.policies().1,
            bind_ip: args.net.bind,
            stop: stop.clone(),
            capture_rtp,
            limits: limits(&args.limits),
            rtp_loss: args.net.rtp_loss(),
            keylog: args.net.keylog(),
            ..RunOptions::default()
        };
        let limit = limit.clone();
        let terminal = terminal.clone();
        handles.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await;
            // Stopped while it waited for its turn: it never starts.
            if opts.stop.is_cancelled() {
                return None;
            }
            let collector = orchestrator::Collector::with_budget(budget);
            let mut sinks: Vec<Arc<dyn EventSink>> = Vec::new();
            if keep_events {
                sinks.push(collector.clone());
            }
            for j in p.stream.iter().chain(p.run_dir.iter().map(|(_, j)| j)) {
                sinks.push(j.clone());
            }
            if let Some(t) = &terminal {
                sinks.push(t.clone());
            }
            let report = orchestrator::run(&p.scenario, opts, EventBus::new(sinks)).await;
            for j in p.stream.iter().chain(p.run_dir.iter().map(|(_, j)| j)) {
                j.flush();
            }
            if terminal.is_none() {
                let verdict = format!("{:?}", report.outcome).to_uppercase();
                let why = report
                    .failure
                    .as_ref()
                    .map_or_else(String::new, |f| format!(": {}", f.message));
                println!(
                    "{verdict:<8} {} ({:.2} s){why}",
                    p.file,
                    report.duration.as_secs_f64()
                );
            }
            if let Some(note) = collector.note() {
                eprintln!("callflow: {}: {note}", p.file);
            }
            Some(Done {
                file: p.file,
                events: collector.events(),
                report,
                run_dir: p.run_dir.map(|(d, _)| d),
            })
        }));
    }
    // First signal: every run stops with its cleanup, within 10 s whatever happens; a second
    // signal exits at once.
    Ok(signals
        .stop_within(join_all(handles), &stop, "stopping, cleanup included")
        .await)
}

/// Every task's result, in order; a task that panicked gives its panic's text.
async fn join_all<T>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<Result<T, String>> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.map_err(|e| e.to_string()));
    }
    out
}

/// One run: its reports, and its verdict as the exit code.
fn finish_one(args: &RunArgs, results: Vec<Result<Option<Done>, String>>) -> anyhow::Result<i32> {
    let done = match results.into_iter().next() {
        Some(Ok(Some(done))) => done,
        Some(Err(e)) => {
            eprintln!("callflow: the run panicked: {e}");
            return Ok(exit_code::SCENARIO_FAILED);
        }
        // Stopped before it started.
        _ => return Ok(exit_code::STOPPED),
    };
    let outputs = Outputs {
        ladder: args.ladder,
        junit: args.junit.clone(),
        pcap: args.pcap.clone(),
        mermaid: args.mermaid.clone(),
        out: done.run_dir,
    };
    write_reports(&done.events, &done.file, &outputs)?;
    if done.report.setup_error {
        return Ok(exit_code::SETUP_ERROR);
    }
    Ok(done.report.outcome.exit_code())
}

/// Several runs: each one's run folder, one summary, one JUnit.
fn finish_many(
    args: &RunArgs,
    results: Vec<Result<Option<Done>, String>>,
    invalid_files: &[(String, String)],
) -> anyhow::Result<i32> {
    let invalid = invalid_files.len();
    let mut panicked = 0;
    let mut not_started = 0;
    let mut done = Vec::new();
    for r in results {
        match r {
            Ok(Some(d)) => done.push(d),
            Ok(None) => not_started += 1,
            Err(e) => {
                // Counted as a failure: a run that panicked has no verdict to trust.
                println!("PANICKED a run: {e}");
                panicked += 1;
            }
        }
    }
    for d in &done {
        if let Some(dir) = &d.run_dir {
            let o = Outputs {
                ladder: false,
                junit: None,
                pcap: None,
                mermaid: None,
                out: Some(dir.clone()),
            };
            if let Err(e) = write_reports(&d.events, &d.file, &o) {
                eprintln!("callflow: {}: {e:#}", d.file);
            }
        }
    }
    let count = |o| done.iter().filter(|d| d.report.outcome == o).count();
    let passed = count(events::Outcome::Passed);
    let stopped = count(events::Outcome::Stopped);
    let failed = done.len() - passed - stopped + panicked;
    let mut summary = format!(
        "{} scenarios: {passed} passed, {failed} failed, {invalid} invalid",
        done.len() + panicked + not_started + invalid
    );
    if stopped > 0 || not_started > 0 {
        summary.push_str(&format!(", {stopped} stopped, {not_started} not started"));
    }
    println!("{summary}");
    let cases: Vec<report::junit::Case<'_>> = done
        .iter()
        .map(|d| report::junit::Case {
            file: &d.file,
            events: &d.events,
        })
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
        std::fs::create_dir_all(d)
            .with_context(|| format!("cannot create the run folder {}", d.display()))?;
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
