//! JUnit XML (the Ant/Jenkins form GitLab and Jenkins read): one testsuite per scenario file,
//! one testcase for the scenario, each UA chain as a property, the failure message, and the
//! text ladder in `system-out`.

use crate::Ladder;
use events::{Event, EventKind, NodeState, Outcome};
use std::fmt::Write as _;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn cdata(s: &str) -> String {
    format!("<![CDATA[{}]]>", s.replace("]]>", "]]]]><![CDATA[>"))
}

/// One scenario run for the report: its file and its events.
pub struct Case<'a> {
    pub file: &'a str,
    pub events: &'a [Event],
}

/// A scenario that did not validate: it ran nothing, and the report lists it as an error with
/// its diagnostics.
pub struct Invalid<'a> {
    pub file: &'a str,
    pub diagnostics: &'a str,
}

pub fn render(cases: &[Case<'_>]) -> String {
    render_with_invalid(cases, &[])
}

/// The report of `cases` and of the scenarios that were `invalid` (each an error: it ran
/// nothing), one test suite each.
pub fn render_with_invalid(cases: &[Case<'_>], invalid: &[Invalid<'_>]) -> String {
    let mut suites = String::new();
    let (mut tests, mut failures, mut errors, mut total) = (0, 0, 0, 0.0);
    for case in cases {
        let started = case.events.iter().find_map(|e| match &e.event {
            EventKind::RunStarted(r) => Some(r),
            _ => None,
        });
        let finished = case.events.iter().rev().find_map(|e| match &e.event {
            EventKind::RunFinished(f) => Some(f),
            _ => None,
        });
        let name = started.map_or_else(|| case.file.to_owned(), |r| r.scenario.clone());
        let time = finished.map_or(0.0, |f| f.duration_ms / 1000.0);
        total += time;
        tests += 1;
        let mut props = String::new();
        if let Some(f) = finished {
            let mut uas: Vec<&str> = f.nodes.iter().map(|n| n.ua.as_str()).collect();
            uas.dedup();
            for ua in uas {
                let count = |s: NodeState| {
                    f.nodes
                        .iter()
                        .filter(|n| n.ua == ua && n.state == s)
                        .count()
                };
                let _ = writeln!(
                    props,
                    "      <property name=\"ua.{}\" value=\"{} passed, {} failed, {} skipped\"/>",
                    esc(ua),
                    count(NodeState::Passed),
                    count(NodeState::Failed),
                    count(NodeState::Skipped)
                );
            }
            let _ = writeln!(
                props,
                "      <property name=\"leaks\" value=\"{} dialogs, {} ports\"/>",
                f.leaks.dialogs, f.leaks.ports
            );
        }
        let verdict = match finished {
            None => {
                errors += 1;
                "      <error message=\"the run did not finish (no run_finished event)\" type=\"incomplete\"/>\n".to_owned()
            }
            Some(f) if f.outcome == Outcome::Passed => String::new(),
            Some(f) => {
                let msg = f
                    .failure
                    .as_ref()
                    .map_or_else(|| format!("{:?}", f.outcome), |x| x.message.clone());
                if f.outcome == Outcome::Stopped {
                    errors += 1;
                    format!(
                        "      <error message=\"{}\" type=\"stopped\"/>\n",
                        esc(&msg)
                    )
                } else {
                    failures += 1;
                    format!(
                        "      <failure message=\"{}\" type=\"scenario-failed\">{}</failure>\n",
                        esc(&msg),
                        esc(&msg)
                    )
                }
            }
        };
        let ladder = Ladder::from_events(case.events).to_text(120);
        let _ = write!(
            suites,
            "  <testsuite name=\"{name}\" tests=\"1\" failures=\"{f}\" errors=\"{e}\" skipped=\"0\" time=\"{time:.3}\">\n    <properties>\n{props}    </properties>\n    <testcase name=\"{name}\" classname=\"{class}\" time=\"{time:.3}\">\n{verdict}      <system-out>{out}</system-out>\n    </testcase>\n  </testsuite>\n",
            name = esc(&name),
            f = usize::from(!verdict.is_empty() && verdict.contains("<failure")),
            e = usize::from(verdict.contains("<error")),
            class = esc(case.file),
            out = cdata(&ladder),
        );
    }
    for i in invalid {
        tests += 1;
        errors += 1;
        let first = i.diagnostics.lines().next().unwrap_or("invalid");
        let _ = write!(
            suites,
            "  <testsuite name=\"{name}\" tests=\"1\" failures=\"0\" errors=\"1\" skipped=\"0\" time=\"0.000\">\n    <testcase name=\"{name}\" classname=\"{name}\" time=\"0.000\">\n      <error message=\"the scenario is invalid: {msg}\" type=\"invalid\">{body}</error>\n    </testcase>\n  </testsuite>\n",
            name = esc(i.file),
            msg = esc(first),
            body = esc(i.diagnostics),
        );
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"callflow\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{total:.3}\">\n{suites}</testsuites>\n"
    )
}
