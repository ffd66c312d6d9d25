//! Event sinks of the binary: JSON Lines and the terminal.

use events::{CleanupPhase, Direction, Event, EventKind, Level, NodeState, Outcome};
use orchestrator::EventSink;
use std::collections::HashMap;
use std::io::{BufWriter, ErrorKind, Write};
use std::sync::{Arc, Mutex};

/// One JSON object per line. A closed pipe (`| head`) silences it instead of failing the run.
pub(crate) struct JsonLines {
    out: Mutex<Option<BufWriter<Box<dyn Write + Send>>>>,
    /// Flush every line (a live stream someone reads as it comes), not only at the end.
    live: bool,
}

impl JsonLines {
    pub(crate) fn new(w: Box<dyn Write + Send>, live: bool) -> Arc<Self> {
        Arc::new(Self {
            out: Mutex::new(Some(BufWriter::new(w))),
            live,
        })
    }

    pub(crate) fn flush(&self) {
        let mut g = self
            .out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(w) = g.as_mut() {
            let _ = w.flush();
        }
    }
}

impl EventSink for JsonLines {
    fn event(&self, event: &Event) {
        let mut g = self
            .out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(w) = g.as_mut() else { return };
        let line = serde_json::to_string(event).expect("events serialize");
        let res = writeln!(w, "{line}").and_then(|()| {
            if self.live || matches!(event.event, EventKind::RunFinished(_)) {
                w.flush()
            } else {
                Ok(())
            }
        });
        if let Err(e) = res {
            if e.kind() != ErrorKind::BrokenPipe {
                eprintln!("callflow: cannot write events: {e}");
            }
            *g = None;
        }
    }
}

/// The readable view: node results as they happen, then a summary.
pub(crate) struct Terminal {
    state: Mutex<TermState>,
    /// 1: every SIP message as a line; 2: and each whole message under it.
    verbose: u8,
    quiet: bool,
}

struct TermState {
    out: Box<dyn Write + Send>,
    labels: HashMap<String, String>,
    kinds: HashMap<String, String>,
}

impl Terminal {
    pub(crate) fn new(out: Box<dyn Write + Send>, verbose: u8, quiet: bool) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(TermState {
                out,
                labels: HashMap::new(),
                kinds: HashMap::new(),
            }),
            verbose,
            quiet,
        })
    }

    pub(crate) fn flush(&self) {
        let _ = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .out
            .flush();
    }
}

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else {
        format!("{v:.1} ms")
    }
}

impl EventSink for Terminal {
    fn event(&self, e: &Event) {
        let mut g = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let st = &mut *g;
        let t = e.elapsed_ms / 1000.0;
        let line = match &e.event {
            EventKind::RunStarted(r) => {
                for i in &r.instances {
                    st.labels.insert(i.id.clone(), i.label.clone());
                }
                for n in &r.nodes {
                    st.kinds.insert(n.id.clone(), n.kind.clone());
                }
                (!self.quiet).then(|| {
                    format!(
                        "callflow {}: {} ({}), {} UAs, {} nodes",
                        r.callflow_version,
                        r.scenario,
                        r.file,
                        r.instances.len(),
                        r.nodes.len()
                    )
                })
            }
            EventKind::UaStarted(u) => (self.verbose > 0).then(|| {
                format!(
                    "{t:8.3}  {} ({}) on {} {} ",
                    st.labels.get(&u.ua).unwrap_or(&u.ua),
                    u.dn,
                    u.transport,
                    u.local_addr
                )
            }),
            EventKind::NodeState(n)
                if !self.quiet && matches!(n.to, NodeState::Passed | NodeState::Failed) =>
            {
                // A failure with a failure edge is the scenario's plan, not the run's verdict.
                let mark = match (n.to, n.handled) {
                    (NodeState::Passed, _) => "ok  ",
                    (_, true) => "fail",
                    _ => "FAIL",
                };
                let kind = st.kinds.get(&n.node).cloned().unwrap_or_default();
                let label = st
                    .labels
                    .get(&n.ua)
                    .cloned()
                    .unwrap_or_else(|| n.ua.clone());
                let mut s = format!(
                    "{t:8.3}  {mark} {label:<10} {kind:<14} {:<18} {:>9}",
                    n.node,
                    n.duration_ms.map(ms).unwrap_or_default()
                );
                if let Some(r) = &n.reason {
                    s.push_str(&format!("\n{:10}     {r}", ""));
                }
                if n.handled {
                    s.push_str(&format!(
                        "\n{:10}     handled: the run goes on along its failure edge",
                        ""
                    ));
                }
                Some(s)
            }
            EventKind::SipMessage(m) if self.verbose > 0 => {
                let arrow = if m.direction == Direction::Sent {
                    "->"
                } else {
                    "<-"
                };
                let label = st
                    .labels
                    .get(&m.ua)
                    .cloned()
                    .unwrap_or_else(|| m.ua.clone());
                let mut line = format!(
                    "{t:8.3}       {label:<10} {arrow} {:<21} {:<18} {}",
                    m.peer,
                    m.summary(),
                    m.cseq
                );
                if self.verbose > 1 {
                    // The whole message, indented, control characters escaped.
                    for l in m.raw.trim_end().lines() {
                        let l: String = l.chars().flat_map(char::escape_debug).collect();
                        line.push_str(&format!("\n{:19}| {}", "", l.replace("\\\"", "\"")));
                    }
                }
                Some(line)
            }
            EventKind::Log(l)
                if l.level >= Level::Warning || (self.verbose > 0 && l.level >= Level::Info) =>
            {
                let who =
                    l.ua.as_ref()
                        .map(|u| st.labels.get(u).cloned().unwrap_or_else(|| u.clone()))
                        .unwrap_or_default();
                let lvl = match l.level {
                    Level::Error => "error",
                    Level::Warning => "warn",
                    _ => "info",
                };
                Some(format!("{t:8.3}  {lvl:<5} {who:<10} {}", l.message))
            }
            EventKind::Cleanup(c) if self.verbose > 0 && c.finished => {
                let name = match c.phase {
                    CleanupPhase::HangupAll => "hang up all",
                    CleanupPhase::CloseAll => "close all",
                    CleanupPhase::Unregister => "unregister",
                    CleanupPhase::TeardownUas => "tear down UAs",
                    CleanupPhase::StopSidecars => "stop sidecars",
                };
                Some(format!(
                    "{t:8.3}  cleanup: {name}: {} ({})",
                    c.detail.clone().unwrap_or_default(),
                    c.duration_ms.map(ms).unwrap_or_default()
                ))
            }
            EventKind::RunFinished(r) => {
                let mut s = String::new();
                if !self.quiet {
                    let skipped: Vec<_> = r
                        .nodes
                        .iter()
                        .filter(|n| n.state == NodeState::Skipped)
                        .collect();
                    if !skipped.is_empty() {
                        s.push_str(&format!(
                            "skipped: {}\n",
                            skipped
                                .iter()
                                .map(|n| n.node.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                    let passed = r
                        .nodes
                        .iter()
                        .filter(|n| n.state == NodeState::Passed)
                        .count();
                    let failed = r
                        .nodes
                        .iter()
                        .filter(|n| n.state == NodeState::Failed)
                        .count();
                    let handled = r.nodes.iter().filter(|n| n.handled).count();
                    let failed = if handled > 0 {
                        format!("{failed} failed ({handled} handled by a failure edge)")
                    } else {
                        format!("{failed} failed")
                    };
                    s.push_str(&format!(
                        "nodes: {passed} passed, {failed}, {} skipped; cleanup {}; leak check: {} dialogs, {} ports\n",
                        skipped.len(),
                        ms(r.cleanup_ms),
                        r.leaks.dialogs,
                        r.leaks.ports
                    ));
                }
                let verdict = match r.outcome {
                    Outcome::Passed => "PASSED",
                    Outcome::Failed => "FAILED",
                    Outcome::Stopped => "STOPPED",
                };
                s.push_str(&format!("{verdict} in {}", ms(r.duration_ms)));
                if let Some(f) = &r.failure {
                    s.push_str(&format!(": {}", f.message));
                }
                Some(s)
            }
            _ => None,
        };
        if let Some(l) = line {
            let _ = writeln!(st.out, "{l}");
        }
    }
}
