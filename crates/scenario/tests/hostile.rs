//! Inputs a probe sent to crash, hang or blow up the parser: each is refused with an error at
//! its position, at once, and nothing panics.

use callflow_scenario as scenario;
/// A folder of the test's own, removed when dropped.
fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("callflow-hostile-{tag}-"))
        .tempdir()
        .unwrap()
}

/// The first error, rendered.
fn first_error(text: &str, file: &str) -> String {
    let d = scenario::parse_str(text, file).expect_err("must be refused");
    d.errors().next().expect("an error").to_string()
}

fn sipflow_with_timeout(ms: &str) -> String {
    format!(
        r#"{{"nodes": [
{{"id": "i1", "type": "sipInstance", "data": {{"label": "a", "dn": "100"}}}},
{{"id": "c1", "type": "command", "data": {{"command": "Release", "sipInstanceId": "i1", "timeout": {ms}}}}}
], "edges": [{{"id": "e1", "source": "i1", "target": "c1"}}]}}"#
    )
}

#[test]
fn a_huge_millisecond_field_is_an_error_not_a_panic() {
    for ms in ["1e23", "1e300", "99999999999999999999"] {
        let e = first_error(&sipflow_with_timeout(ms), "f.json");
        assert!(e.starts_with("f.json:3:"), "{e}");
        assert!(e.contains("longer than 30 days"), "{e}");
    }
    let e = first_error(
        "instances:\n  a:\n    dn: 1\n    steps:\n      - command: Release\n        timeout: 99999999999d\n",
        "f.yaml",
    );
    assert!(e.starts_with("f.yaml:6:18:"), "{e}");
}

#[test]
fn deep_nesting_is_refused_at_its_position() {
    // 10,000 levels of `- ` on one line (20 KB): aborted the process by stack overflow.
    let yaml = format!("{}x\n", "- ".repeat(10_000));
    let e = first_error(&yaml, "deep.yaml");
    assert!(e.starts_with("deep.yaml:1:"), "{e}");
    assert!(e.contains("nest more than 64 deep"), "{e}");
    // Flow style, and JSON.
    let flow = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let e = first_error(&flow, "deep.json");
    assert!(e.starts_with("deep.json:1:"), "{e}");
    let e = first_error(&format!("a: {flow}"), "deep.yaml");
    // The YAML scanner bounds flow nesting itself.
    assert!(
        e.starts_with("deep.yaml:1:") && e.contains("recursion limit exceeded"),
        "{e}"
    );
    // Nesting within the limit is read as usual (and then rejected as no scenario).
    let ok = format!("a: {}{}", "[".repeat(60), "]".repeat(60));
    let e = first_error(&ok, "ok.yaml");
    assert!(!e.contains("nest"), "{e}");
}

#[test]
fn what_is_not_a_regular_file_is_refused_at_once() {
    let tmp = temp_dir("files");
    let dir = tmp.path();
    let fifo = dir.join("fifo.yaml");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let e = scenario::load(&fifo).unwrap_err().to_string();
    assert!(
        e.contains("fifo.yaml:1:1: error: cannot read the file: not a regular file (it is a FIFO)"),
        "{e}"
    );
    let zero = dir.join("zero.yaml");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let e = scenario::load(&zero).unwrap_err().to_string();
    assert!(e.contains("it is a device"), "{e}");
    let e = scenario::load(std::path::Path::new("/dev/zero"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("it is a device"), "{e}");
    // A WAV that is a FIFO: refused at validation, not waited on.
    let wav = dir.join("audio.wav");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&wav)
            .status()
            .unwrap()
            .success()
    );
    let yaml = dir.join("play.yaml");
    std::fs::write(
        &yaml,
        "instances:\n  a:\n    dn: 1\n    steps:\n      - command: PlayAudio\n        file: audio.wav\n",
    )
    .unwrap();
    let e = scenario::load(&yaml).unwrap_err().to_string();
    assert!(e.contains("play.yaml:5:"), "{e}");
    assert!(e.contains("it is a FIFO"), "{e}");
    // Too large.
    let big = dir.join("big.yaml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(scenario::MAX_SCENARIO_BYTES + 1).unwrap();
    let e = scenario::load(&big).unwrap_err().to_string();
    assert!(e.contains("more than the limit of 4194304 bytes"), "{e}");
}

#[test]
fn every_error_has_a_position() {
    let tmp = temp_dir("positions");
    let dir = tmp.path();
    let bad = dir.join("latin1.yaml");
    std::fs::write(&bad, b"name: x\ninstances:\n  caf\xe9: {}\n").unwrap();
    let e = scenario::load(&bad).unwrap_err().to_string();
    assert!(
        e.contains("latin1.yaml:3:6: error: the file is not UTF-8"),
        "{e}"
    );
    let empty = dir.join("empty.yaml");
    std::fs::write(&empty, "").unwrap();
    let e = scenario::load(&empty).unwrap_err().to_string();
    assert!(
        e.contains("empty.yaml:1:1: error: the file is empty"),
        "{e}"
    );
    std::fs::write(&empty, "\n  \n").unwrap();
    let e = scenario::load(&empty).unwrap_err().to_string();
    assert!(
        e.contains("empty.yaml:1:1: error: the file is empty"),
        "{e}"
    );
    // A regex error is one line, at the pattern.
    let e = first_error(
        "instances:\n  a:\n    dn: 1\n    steps:\n      - event: DTMFReceived\n        matches: \"(12\"\n",
        "re.yaml",
    );
    assert!(e.starts_with("re.yaml:6:18: error: `matches` is not a valid regular expression: unclosed group (at character 1 of the pattern)"), "{e}");
    assert!(!e.contains('\n'), "{e}");
}

#[test]
fn a_huge_regex_is_refused_without_compiling_it() {
    let pattern = "a{1000}".repeat(2_000); // 14 KB
    let text = format!(
        "instances:\n  a:\n    dn: 1\n    steps:\n      - event: DTMFReceived\n        matches: \"{pattern}\"\n"
    );
    let e = first_error(&text, "re.yaml");
    assert!(e.contains("a pattern may have at most 4096"), "{e}");
    // Short but explosive: refused by the size limit.
    let text = "instances:\n  a:\n    dn: 1\n    steps:\n      - event: DTMFReceived\n        matches: \"(\\\\w{100}){100}\"\n";
    let e = first_error(text, "re.yaml");
    assert!(e.contains("compiles to more than"), "{e}");
}

#[test]
fn control_characters_cannot_reach_the_terminal() {
    let text = "instances:\n  a:\n    dn: 1\n    steps:\n      - command: Release\n        \"x\\e[2J\\nfake.yaml:1:1: error: forged\": 1\n";
    let d = scenario::parse_str(text, "c.yaml").unwrap_err().to_string();
    assert!(!d.contains('\u{1b}'), "{d:?}");
    assert_eq!(
        d.lines().filter(|l| l.contains(": error: ")).count(),
        1,
        "{d}"
    );
    assert!(d.contains("x\\u{1b}[2J\\u{a}fake.yaml"), "{d}");
}

#[test]
fn environment_values_are_not_echoed_in_diagnostics() {
    // PATH is set wherever tests run and stands in for a secret (the workspace forbids the
    // `unsafe` that setting a variable takes).
    let secret = std::env::var("PATH").unwrap();
    let text = "instances:\n  a:\n    dn: 1\n    steps:\n      - command: MakeCall\n        target: \"x${PATH}\"\n";
    let d = scenario::parse_str(text, "s.yaml").unwrap_err().to_string();
    assert!(!d.contains(&secret), "{d}");
    assert!(
        d.contains("target `x${PATH}` is the DN of no instance"),
        "{d}"
    );
}

#[test]
fn a_large_scenario_reads_in_one_pass() {
    // 10,000 steps with ids: the duplicate-id check was a scan per step (quadratic).
    let mut text = String::from("instances:\n  a:\n    dn: 1\n    steps:\n");
    for i in 0..10_000 {
        text.push_str(&format!("      - command: Release\n        id: s{i}\n"));
    }
    let s = scenario::parse_str(&text, "big.yaml").unwrap();
    assert_eq!(s.nodes.len(), 10_000);
}

#[test]
fn a_mos_bound_off_the_scale_is_an_error_at_its_value() {
    let text = "version: 1\ninstances:\n  a:\n    dn: \"1\"\n    steps:\n      - command: CheckMedia\n        min_mos: 7\n";
    assert_eq!(
        first_error(text, "mos.yaml"),
        "mos.yaml:7:18: error: `min_mos` must be a MOS from 1 to 4.5 (a clean G.711 call rates 4.41), got 7"
    );
    let ok = "version: 1\ninstances:\n  a:\n    dn: \"1\"\n    steps:\n      - command: CheckMedia\n        min_mos: 4.2\n";
    let s = scenario::parse_str(ok, "ok.yaml").expect("a MOS on the scale");
    assert!(matches!(
        s.nodes[0].action,
        scenario::Action::CheckMedia {
            min_mos: Some(m),
            ..
        } if m == 4.2
    ));
}
