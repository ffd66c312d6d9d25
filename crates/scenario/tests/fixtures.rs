//! Every fixture under `fixtures/` parses as its model says; every file under `fixtures/invalid/`
//! fails with the expected message at the expected `line:col`.

use callflow_scenario::{Action, Format, Severity};
use std::path::{Path, PathBuf};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(rel)
}

/// (file, line:col of the first error, a piece of its message).
const INVALID: &[(&str, &str, &str)] = &[
    ("syntax-error.yaml", "9:1", "invalid YAML"),
    ("syntax-error.json", "4:3", "invalid JSON: trailing comma"),
    ("unknown-key.yaml", "8:9", "unknown key `tiemout` in a step"),
    ("unknown-command.yaml", "6:18", "unknown command `MakeCal`"),
    ("unknown-event.json", "4:53", "unknown event `INCOMMING`"),
    (
        "unknown-target.yaml",
        "6:9",
        "target `201` is the DN of no instance",
    ),
    ("unbound-node.json", "4:5", "is bound to no instance"),
    ("cycle.json", "5:5", "cycle: "),
    ("duplicate-dn.yaml", "5:3", "duplicate DN 100"),
    ("missing-field.yaml", "6:9", "needs a target"),
    (
        "unknown-instance.json",
        "4:86",
        "refers to instance `inst-x`, which does not exist",
    ),
    (
        "two-success-edges.json",
        "11:5",
        "already has a success edge",
    ),
    ("bad-duration.yaml", "7:18", "`timeout` needs a unit"),
    ("unknown-step-id.yaml", "8:15", "no step has id `finnish`"),
    ("after-cycle.yaml", "13:9", "cycle: a -> b -> a"),
    (
        "sipflow-v1.1-compat.json",
        "8:5",
        "node `cmd-playaudio` (PlayAudio): cannot read /audio/greeting.wav",
    ),
    (
        "misplaced-option.yaml",
        "7:9",
        "`expect` is a key of MakeCall, SendInfo, SendMessage, SendOptions (and 3 more), not of Release",
    ),
    (
        "bad-regex.yaml",
        "9:22",
        "`matches` is not a valid regular expression",
    ),
    (
        "bad-wav.yaml",
        "6:9",
        "2000 Hz, 1 channel(s), 16-bit PCM; callflow plays PCM (8 to 32 bits) or 32-bit float WAV at 4 to 192 kHz",
    ),
];

#[test]
fn every_invalid_fixture_fails_with_position_and_message() {
    let dir = fixture("invalid");
    let mut listed: Vec<String> = INVALID.iter().map(|(f, _, _)| (*f).to_owned()).collect();
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    on_disk.sort();
    assert_eq!(
        listed, on_disk,
        "every invalid fixture has an expectation, and every expectation a fixture"
    );

    let mut mismatches = vec![];
    for (file, at, msg) in INVALID {
        let err = callflow_scenario::load(&dir.join(file)).expect_err(file);
        let first = err
            .errors()
            .next()
            .unwrap_or_else(|| panic!("{file}: no error in {err}"));
        let got_at = format!("{}:{}", first.pos.line, first.pos.col);
        assert!(
            first.message.contains(msg),
            "{file}: expected `{msg}` in:\n{err}"
        );
        if &got_at != at {
            mismatches.push(format!("{file}: expected {at}, got:\n{err}"));
            continue;
        }
        let text = err.to_string();
        assert!(
            text.contains(&format!("{file}:{at}: error:")),
            "{file}: rendered as:\n{text}"
        );
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}

#[test]
fn did_you_mean_is_offered() {
    for (file, hint) in [
        ("unknown-key.yaml", "did you mean `timeout`?"),
        ("unknown-command.yaml", "did you mean `MakeCall`?"),
        ("unknown-event.json", "did you mean `INCOMING`?"),
        ("unknown-target.yaml", "did you mean `200`?"),
        ("unknown-step-id.yaml", "did you mean `finish`?"),
    ] {
        let err = callflow_scenario::load(&fixture("invalid").join(file)).unwrap_err();
        assert!(err.to_string().contains(hint), "{file}: {err}");
    }
}

#[test]
fn basic_call_is_the_same_model_in_both_formats() {
    let (json, _) = callflow_scenario::load(&fixture("basic-call.json")).unwrap();
    let (yaml, _) = callflow_scenario::load(&fixture("basic-call.yaml")).unwrap();
    assert_eq!(json.format, Format::SipflowJson);
    assert_eq!(yaml.format, Format::Native);
    let shape = |s: &callflow_scenario::Scenario| {
        s.instances
            .iter()
            .map(|i| {
                let mut chain = vec![];
                let mut cur = i.starts.first().copied();
                while let Some(n) = cur {
                    let node = &s.nodes[n];
                    // sipflow's UI stores the DN on INCOMING as `number`; the YAML need not.
                    let action = match &node.action {
                        Action::Incoming { .. } => Action::Incoming { number: None },
                        a => a.clone(),
                    };
                    chain.push((action, node.timeout, node.call_id.clone()));
                    cur = node.on_success;
                }
                (i.dn.clone(), i.label.clone(), i.register, chain)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(shape(&json), shape(&yaml));
    assert_eq!(
        yaml.nodes[0].action,
        Action::MakeCall {
            target: "200".into()
        }
    );
}

#[test]
fn no_answer_has_a_failure_edge_in_both_formats() {
    for f in ["no-answer.yaml", "no-answer.json"] {
        let (s, _) = callflow_scenario::load(&fixture(f)).unwrap();
        let dial = s.nodes.iter().find(|n| n.id == "dial").unwrap();
        let fail = dial.on_failure.expect("failure edge");
        assert_eq!(s.nodes[fail].action, Action::Release, "{f}");
    }
}

#[test]
fn sipflow_compat_fixture_imports_and_checks_its_wav_before_running() {
    // sipflow's own v1.1 test fixture imports whole; the one error is its example WAV path,
    // which does not exist here: reported at the PlayAudio node, before anything is sent.
    let err = callflow_scenario::load(&fixture("invalid/sipflow-v1.1-compat.json")).unwrap_err();
    let errors: Vec<_> = err.errors().collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert_eq!(errors[0].pos.line, 8);
    assert!(
        errors[0]
            .message
            .contains("node `cmd-playaudio` (PlayAudio): cannot read /audio/greeting.wav"),
        "{err}"
    );
    assert!(
        !err.0
            .iter()
            .any(|d| d.severity == Severity::Warning && d.message.contains("register"))
    );
}

#[test]
fn a_flow_marshalled_by_go_with_capitalised_keys_reads_like_the_react_flow_one() {
    // sipflow's Go tests marshal structs without tags (`Nodes`, `ID`, `SourceHandle`); Go's
    // encoding/json reads keys without regard to case, and so does this reader.
    let (go, warnings) = callflow_scenario::load(&fixture("sipflow-go-keys.json")).unwrap();
    let (react, _) = callflow_scenario::load(&fixture("basic-call.json")).unwrap();
    assert!(warnings.is_empty(), "{warnings}");
    assert_eq!(go.format, Format::SipflowJson);
    assert_eq!(go.instances.len(), react.instances.len());
    assert_eq!(go.nodes.len(), react.nodes.len());
    for (a, b) in go.nodes.iter().zip(&react.nodes) {
        assert_eq!(
            (&a.id, &a.action, a.timeout, &a.on_success, &a.on_failure),
            (&b.id, &b.action, b.timeout, &b.on_success, &b.on_failure)
        );
    }
    for (a, b) in go.instances.iter().zip(&react.instances) {
        assert_eq!(
            (&a.dn, &a.label, a.register, &a.codecs, &a.starts),
            (&b.dn, &b.label, b.register, &b.codecs, &b.starts)
        );
    }
}
