//! The `callflow` binary: exit codes, validation output, the JSON Lines stream, and Ctrl-C.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_callflow"))
}

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(rel)
}

#[test]
fn validate_exit_codes_and_messages() {
    let ok = bin()
        .arg("validate")
        .arg(fixture("basic-call.json"))
        .arg(fixture("basic-call.yaml"))
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("valid: `Basic call`, 2 instances, 6 nodes")
    );

    let bad = bin()
        .arg("validate")
        .arg(fixture("invalid/unknown-key.yaml"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("unknown-key.yaml:8:9: error: unknown key `tiemout` in a step"),
        "{err}"
    );
    assert!(err.contains("help: did you mean `timeout`?"), "{err}");
}

#[test]
fn run_refuses_an_invalid_scenario_before_sending_anything() {
    let out = bin()
        .args(["run", "--events", "-"])
        .arg(fixture("invalid/unknown-target.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        out.stdout.is_empty(),
        "no event may be emitted for an invalid scenario"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was sent"));
}

#[test]
fn usage_error_is_exit_2() {
    assert_eq!(
        bin().arg("frobnicate").output().unwrap().status.code(),
        Some(2)
    );
    // serve binds loopback only, unless told otherwise.
    let out = bin()
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
    // No ports to use is a usage error, not a set-up failure later.
    for flag in ["--port-count", "--rtp-port-count"] {
        let out = bin()
            .args(["run", flag, "0"])
            .arg(fixture("basic-call.yaml"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("0 is not in 1..=65535"),
            "{flag}"
        );
    }
}

#[test]
fn run_bundled_default_passes_and_streams_json_lines() {
    let out = bin().args(["run", "--events", "-"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines[0]["event"]["type"], "run_started");
    assert_eq!(
        lines[0]["event"]["data"]["schema_version"],
        events::SCHEMA_VERSION
    );
    let last = lines.last().unwrap();
    assert_eq!(last["event"]["type"], "run_finished");
    assert_eq!(last["event"]["data"]["outcome"], "passed");
    assert_eq!(
        last["event"]["data"]["leaks"],
        serde_json::json!({"dialogs": 0, "ports": 0})
    );
    let sip: Vec<_> = lines
        .iter()
        .filter(|l| l["event"]["type"] == "sip_message")
        .collect();
    let invite = sip
        .iter()
        .find(|l| l["event"]["data"]["method"] == "INVITE")
        .expect("an INVITE");
    let d = &invite["event"]["data"];
    for key in [
        "ua",
        "direction",
        "transport",
        "local",
        "peer",
        "call_id",
        "cseq",
        "raw",
    ] {
        assert!(d.get(key).is_some(), "sip_message lacks {key}: {d}");
    }
    assert!(
        d["raw"]
            .as_str()
            .unwrap()
            .starts_with("INVITE sip:200@127.0.0.1:")
    );
    // The human summary went to stderr, since stdout carries the events.
    assert!(String::from_utf8_lossy(&out.stderr).contains("PASSED in"));
}

#[test]
fn failed_run_is_exit_1_and_names_the_node() {
    let out = bin()
        .arg("run")
        .arg(fixture("demo/failing-call.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAILED in"), "{text}");
    assert!(
        text.contains("bob.3 (INCOMING) on bob: expected an INVITE to bob within 1 s, none came"),
        "{text}"
    );
}

#[test]
fn setup_error_is_exit_3() {
    // Hold the only port the run may use.
    let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let out = bin()
        .args(["run", "--base-port", &port, "--port-count", "1"])
        .arg(fixture("basic-call.yaml"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no free port"));
}

/// Runs the long call with a sidecar that writes its pid, sends `signal` once alice holds the
/// call, and checks the stop: exit 130 within 10 s, BYE sent, `run_finished` written as
/// `stopped` with no leaks, and the sidecar's process group gone.
fn stops_gracefully_on(signal: &str) {
    let tmp = callflow_tests::scratch(&format!("signal-{signal}"));
    let dir = tmp.path().to_path_buf();
    let long = std::fs::read_to_string(fixture("demo/long-call.yaml")).unwrap();
    let scenario = long.replace(
        "instances:",
        "sidecars:\n  - name: helper\n    command: [sh, -c, 'echo $$ > helper.pid; echo ready; exec sleep 120']\n    health:\n      log: ready\n    timeout: 5s\ninstances:",
    );
    let file = dir.join("long-with-sidecar.yaml");
    std::fs::write(&file, scenario).unwrap();
    let mut child = bin()
        .args(["run", "--events", "-"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Wait (on the stream, not a timer) until the call is up and alice is holding it.
    let mut holding = false;
    for line in lines.by_ref() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["event"]["type"] == "node_state"
            && v["event"]["data"]["node"] == "hold-on"
            && v["event"]["data"]["to"] == "running"
        {
            holding = true;
            break;
        }
    }
    assert!(
        holding,
        "the event stream must show `hold-on` running while the run goes on"
    );
    let helper = std::fs::read_to_string(dir.join("helper.pid")).unwrap();
    let helper = helper.trim().to_owned();
    let alive = |pid: &str| {
        Command::new("kill")
            .args(["-0", pid])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    assert!(alive(&helper), "the sidecar runs during the call");
    let started = std::time::Instant::now();
    let kill = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let rest: Vec<serde_json::Value> = lines
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "SIG{signal}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let last = rest.last().expect("run_finished");
    assert_eq!(last["event"]["type"], "run_finished");
    assert_eq!(last["event"]["data"]["outcome"], "stopped");
    assert_eq!(
        last["event"]["data"]["leaks"],
        serde_json::json!({"dialogs": 0, "ports": 0})
    );
    assert!(
        rest.iter()
            .any(|v| v["event"]["type"] == "sip_message" && v["event"]["data"]["method"] == "BYE")
    );
    // The sidecar's group was stopped with the run, not orphaned (a zombie is reaped by then).
    assert!(
        !alive(&helper),
        "SIG{signal} left the sidecar {helper} running"
    );
}

#[test]
fn first_ctrl_c_stops_gracefully_with_exit_130() {
    stops_gracefully_on("INT");
}

#[test]
fn sigterm_stops_like_ctrl_c() {
    stops_gracefully_on("TERM");
}

#[test]
fn sighup_stops_like_ctrl_c() {
    stops_gracefully_on("HUP");
}

#[test]
fn run_folder_and_report_re_renders_it() {
    let tmp = callflow_tests::scratch("out");
    let dir = tmp.path().to_path_buf();
    let out = bin()
        .args(["run", "-q", "--out"])
        .arg(&dir)
        .arg(fixture("media-call.yaml"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "events.jsonl",
        "summary.json",
        "ladder.txt",
        "ladder.mmd",
        "junit.xml",
        "capture.pcap",
        "recordings/bob-media-call-bob.wav",
    ] {
        assert!(dir.join(f).is_file(), "{f} in the run folder");
    }
    let ladder = std::fs::read_to_string(dir.join("ladder.txt")).unwrap();
    assert!(
        ladder.contains("INVITE") && ladder.ends_with("PASSED\n"),
        "{ladder}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["outcome"], "passed");
    // The RTP is captured (for the pcap) with the run folder.
    let jsonl = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    assert!(jsonl.contains(r#""type":"rtp_capture""#));
    // Everything is made again from events.jsonl alone.
    std::fs::remove_file(dir.join("ladder.txt")).unwrap();
    std::fs::remove_file(dir.join("junit.xml")).unwrap();
    let again = bin().arg("report").arg(&dir).output().unwrap();
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("ladder.txt")).unwrap(),
        ladder
    );
    assert!(dir.join("junit.xml").is_file());
}

#[test]
fn several_scenarios_in_parallel_one_summary_one_junit() {
    let tmp = callflow_tests::scratch("many");
    let junit = tmp.path().join("many.xml");
    let out = bin()
        .args(["run", "--jobs", "2", "--junit"])
        .arg(&junit)
        .arg(fixture("basic-call.yaml"))
        .arg(fixture("demo/failing-call.yaml"))
        .arg(fixture("no-answer.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "one failed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("3 scenarios: 2 passed, 1 failed, 0 invalid"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAILED") && l.contains("failing-call.yaml")),
        "{text}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testsuite ").count(), 3);
    assert!(xml.contains("tests=\"3\" failures=\"1\""), "{xml}");
    std::fs::remove_file(junit).ok();
}

#[test]
fn serve_stops_on_sigterm_and_sighup_like_ctrl_c() {
    for signal in ["TERM", "HUP", "INT"] {
        let tmp = callflow_tests::scratch(&format!("serve-{signal}"));
        let dir = tmp.path().to_path_buf();
        let mut child = bin()
            .args(["serve", "--listen", "127.0.0.1:0", "--workspace"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let serving = lines
            .by_ref()
            .map(Result::unwrap)
            .find(|l| l.contains("serving"));
        assert!(serving.is_some(), "serve says where it listens");
        let kill = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        // Handled: a clean exit, not death by the signal (which has no exit code).
        assert_eq!(child.wait().unwrap().code(), Some(0), "SIG{signal}");
    }
}

/// A network namespace of the test's own, with its own `lo` and an nftables rule that drops
/// `percent` % of the UDP datagrams it receives; deleted on drop. None where it cannot be made
/// (not root, no `ip` or `nft`).
struct LossyNetns(String);

impl LossyNetns {
    fn new(percent: u32) -> Option<Self> {
        // One per test: the tests of this file run at once.
        let name = format!("cfloss-{}-{percent}", std::process::id());
        let ok = |args: &[&str], stdin: Option<&str>| {
            let mut c = Command::new(args[0]);
            c.args(&args[1..])
                .stdin(if stdin.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let Ok(mut child) = c.spawn() else {
                return false;
            };
            if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
                use std::io::Write;
                let _ = pipe.write_all(text.as_bytes());
            }
            child.wait().is_ok_and(|s| s.success())
        };
        let _ = ok(&["ip", "netns", "del", &name], None);
        if !ok(&["ip", "netns", "add", &name], None) {
            return None;
        }
        let ns = Self(name);
        // nft takes `< 100` as out of range: all is a rule of its own.
        let share = if percent >= 100 {
            String::new()
        } else {
            format!(" numgen random mod 100 < {percent}")
        };
        let rules = format!(
            "table inet lossy {{\n  chain inp {{\n    type filter hook input priority 0; policy accept;\n    meta l4proto udp{share} drop\n  }}\n}}\n"
        );
        (ok(
            &[
                "ip", "netns", "exec", &ns.0, "ip", "link", "set", "lo", "up",
            ],
            None,
        ) && ok(
            &["ip", "netns", "exec", &ns.0, "nft", "-f", "-"],
            Some(&rules),
        ))
        .then_some(ns)
    }
}

impl LossyNetns {
    /// The namespace, or `None` with a message saying why the test is skipped.
    fn or_skip(percent: u32) -> Option<Self> {
        let ns = Self::new(percent);
        if ns.is_none() {
            eprintln!(
                "skipped: a network namespace with nftables cannot be made here (needs root, ip and nft; .ci/run has them)"
            );
        }
        ns
    }

    /// Runs `callflow run -q --events -` on `file` inside the namespace; its events.
    fn run_events(&self, file: &std::path::Path) -> Vec<serde_json::Value> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .arg(env!("CARGO_BIN_EXE_callflow"))
            .args(["run", "-q", "--events", "-"])
            .arg(file)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for LossyNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn calls_pass_under_15_percent_udp_loss_by_retransmission() {
    let Some(ns) = LossyNetns::or_skip(15) else {
        return;
    };
    let tmp = callflow_tests::scratch("loss");
    let dir = tmp.path().to_path_buf();
    // No wait for a 180: an unreliable provisional may be lost for good (RFC 3262 is not used).
    let file = dir.join("loss.yaml");
    std::fs::write(
        &file,
        "version: 1\nname: call under loss\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - command: MakeCall\n        target: bob\n        timeout: 20s\n      - command: Release\n        timeout: 20s\n  bob:\n    dn: \"200\"\n    steps:\n      - event: INCOMING\n        timeout: 20s\n      - command: Answer\n      - event: DISCONNECTED\n        timeout: 20s\n",
    )
    .unwrap();
    let (mut passed, mut retransmitted) = (0, 0);
    for _ in 0..20 {
        let events = ns.run_events(&file);
        let last = events.last().expect("run_finished");
        assert_eq!(
            last["event"]["data"]["outcome"], "passed",
            "under 15 % loss: {last}"
        );
        assert_eq!(
            last["event"]["data"]["leaks"],
            serde_json::json!({"dialogs": 0, "ports": 0})
        );
        passed += 1;
        // A message (request, or response of one status) sent again by the same UA is a
        // retransmission the loss caused.
        let mut sent = std::collections::HashSet::new();
        for e in &events {
            let d = &e["event"]["data"];
            if e["event"]["type"] == "sip_message"
                && d["direction"] == "sent"
                && d["method"].is_string()
            {
                let key = format!("{} {} {} {}", d["ua"], d["call_id"], d["cseq"], d["status"]);
                if !sent.insert(key) {
                    retransmitted += 1;
                }
            }
        }
    }
    assert_eq!(passed, 20);
    eprintln!("20 calls under 15 % UDP loss passed; {retransmitted} requests were retransmitted");
}

#[test]
fn a_call_under_total_loss_fails_naming_the_invite_that_never_arrived() {
    let Some(ns) = LossyNetns::or_skip(100) else {
        return;
    };
    let tmp = callflow_tests::scratch("lost");
    let dir = tmp.path().to_path_buf();
    let file = dir.join("lost.yaml");
    std::fs::write(
        &file,
        "version: 1\nname: call into the void\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - command: MakeCall\n        target: bob\n        timeout: 2s\n  bob:\n    dn: \"200\"\n    steps:\n      - event: INCOMING\n        timeout: 20s\n",
    )
    .unwrap();
    let events = ns.run_events(&file);
    let last = &events.last().expect("run_finished")["event"]["data"];
    assert_eq!(last["outcome"], "failed", "{last}");
    let message = last["failure"]["message"].as_str().unwrap_or_default();
    // Timer A: the INVITE goes at 0, 0.5 and 1.5 s within the MakeCall's 2 s.
    assert!(
        message.contains("alice.1 (MakeCall)")
            && message.contains("on the wire: INVITE sent 3 times over 1.5 s to 127.0.0.1:")
            && message.ends_with("no response came back"),
        "the failure names the INVITE that never arrived: {message}"
    );
    // No CANCEL can go before a response (RFC 3261 §9.1): cleanup says so, and sends none.
    let hangup = events
        .iter()
        .map(|e| &e["event"]["data"])
        .find(|d| d["phase"] == "hangup_all" && d["finished"] == true)
        .expect("the hang-up step");
    let detail = hangup["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("0 BYE, 0 CANCEL") && detail.contains("1 INVITE with no response"),
        "{detail}"
    );
    assert_eq!(last["leaks"], serde_json::json!({"dialogs": 0, "ports": 0}));
}

#[test]
fn reports_keep_the_runs_story_past_their_memory_budget_and_say_what_they_left_out() {
    let tmp = callflow_tests::scratch("budget");
    let dir = tmp.path().to_path_buf();
    let junit = dir.join("junit.xml");
    let events = dir.join("events.jsonl");
    // A budget of 0: every message goes past it.
    let out = bin()
        .args(["run", "-q", "--report-memory", "0", "--junit"])
        .arg(&junit)
        .arg("--events")
        .arg(&events)
        .arg(fixture("basic-call.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("events (SIP messages, RTP packets, logs) past the 0 MiB kept for reports were left out of them"),
        "{stderr}"
    );
    // The verdict is still in the report; the stream still has every message.
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<testsuite") && !xml.contains("<failure"),
        "{xml}"
    );
    let stream = std::fs::read_to_string(&events).unwrap();
    assert_eq!(
        stream.matches("\"type\":\"sip_message\"").count(),
        14,
        "INVITE 100 180 200 ACK BYE 200, seen by both UAs: {stream}"
    );
}

#[test]
fn a_failure_with_a_failure_edge_shows_as_handled() {
    let out = bin()
        .arg("run")
        .arg(fixture("no-answer.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("FAIL "), "{text}");
    assert!(
        text.contains("fail alice      MakeCall")
            && text.contains("handled: the run goes on along its failure edge")
            && text.contains("1 failed (1 handled by a failure edge)")
            && text.contains("PASSED in"),
        "{text}"
    );
}

#[test]
fn validate_takes_folders_and_globs_like_run_and_an_unmatched_glob_is_a_usage_error() {
    let out = bin().arg("validate").arg(fixture("demo")).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("failing-call.yaml: valid") && text.contains("long-call.yaml: valid"),
        "{text}"
    );
    for cmd in ["validate", "run"] {
        let out = bin()
            .arg(cmd)
            .arg(fixture("no-such-*.yaml"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("no file matches"),
            "{cmd}"
        );
    }
}

#[test]
fn invalid_scenarios_of_a_suite_are_errors_in_its_junit() {
    let tmp = callflow_tests::scratch("suite");
    let dir = tmp.path().to_path_buf();
    std::fs::copy(fixture("basic-call.yaml"), dir.join("a-basic.yaml")).unwrap();
    std::fs::copy(fixture("invalid/unknown-key.yaml"), dir.join("b-bad.yaml")).unwrap();
    let junit = dir.join("junit.xml");
    let out = bin()
        .args(["run", "-q", "--junit"])
        .arg(&junit)
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an invalid scenario makes the exit 2"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<testsuites name=\"callflow\" tests=\"2\" failures=\"0\" errors=\"1\""),
        "{xml}"
    );
    assert!(
        xml.contains("type=\"invalid\"") && xml.contains("unknown key `tiemout`"),
        "{xml}"
    );
}

#[test]
fn a_signal_during_several_runs_stops_each_with_its_cleanup_counts_them_and_exits_130() {
    let tmp = callflow_tests::scratch("many-stop");
    let dir = tmp.path().to_path_buf();
    // Each run's sidecar says it started on a FIFO the test reads: a wait on an event, no timer.
    let fifo = dir.join("started");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let long = std::fs::read_to_string(fixture("demo/long-call.yaml")).unwrap();
    for name in ["one", "two"] {
        let scenario = long.replace(
            "instances:",
            &format!(
                "sidecars:\n  - name: herald\n    command: [sh, -c, 'echo ready; echo {name} > {}; exec sleep 120']\n    health:\n      log: ready\n    timeout: 5s\ninstances:",
                fifo.display()
            ),
        );
        std::fs::write(dir.join(format!("{name}.yaml")), scenario).unwrap();
    }
    let events = dir.join("ev.jsonl");
    let mut child = bin()
        .args(["run", "--jobs", "2", "--events"])
        .arg(&events)
        .arg(dir.join("one.yaml"))
        .arg(dir.join("two.yaml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader_fifo = fifo;
    std::thread::spawn(move || {
        let mut heard = 0;
        while heard < 2 {
            let Ok(f) = std::fs::File::open(&reader_fifo) else {
                return;
            };
            heard += BufReader::new(f).lines().count();
        }
        let _ = tx.send(heard);
    });
    rx.recv_timeout(std::time::Duration::from_secs(20))
        .expect("both runs started");
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut out = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{out}");
    assert!(
        out.contains("2 scenarios: 0 passed, 0 failed, 0 invalid, 2 stopped"),
        "{out}"
    );
    // One stream per run, each ending with its run_finished after its cleanup (the signal may
    // come before the call is up: what is hung up depends on that, that cleanup runs does not).
    for n in ["01", "02"] {
        let stream = std::fs::read_to_string(dir.join(format!("ev-{n}-Long_call.jsonl")))
            .unwrap_or_else(|e| panic!("stream {n}: {e}"));
        let last: serde_json::Value = serde_json::from_str(stream.lines().last().unwrap()).unwrap();
        assert_eq!(last["event"]["type"], "run_finished", "{n}");
        assert_eq!(last["event"]["data"]["outcome"], "stopped", "{n}");
        for phase in ["hangup_all", "close_all", "teardown_uas"] {
            assert!(
                stream.contains(&format!("\"phase\":\"{phase}\",\"finished\":true")),
                "{n}: cleanup step {phase}: {stream}"
            );
        }
    }
}

#[test]
fn verbose_shows_message_lines_and_vv_whole_messages_without_doubled_lines() {
    let run = |flag: &str| {
        let out = bin()
            .args(["run", flag])
            .arg(fixture("basic-call.yaml"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let v = run("-v");
    assert!(v.contains("-> 127.0.0.1:") && !v.contains("| Via:"), "{v}");
    // Each side says once that its call ended.
    assert_eq!(v.matches("ended: BYE from the caller").count(), 2, "{v}");
    let vv = run("-vv");
    assert!(
        vv.contains("| INVITE sip:200@127.0.0.1:") && vv.contains("| Via: SIP/2.0/UDP"),
        "{vv}"
    );
}

#[test]
fn a_sidecar_stopped_after_the_run_leaves_no_kill_noise() {
    let tmp = callflow_tests::scratch("quiet-sidecar");
    let dir = tmp.path().to_path_buf();
    let basic = std::fs::read_to_string(fixture("basic-call.yaml")).unwrap();
    let file = dir.join("with-sidecar.yaml");
    std::fs::write(
        &file,
        basic.replace(
            "instances:",
            "sidecars:\n  - name: helper\n    command: [sh, -c, 'echo ready; exec sleep 30']\n    health:\n      log: ready\n    timeout: 5s\ninstances:",
        ),
    )
    .unwrap();
    let out = bin().args(["run", "-q"]).arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("No such process"), "{stderr}");
}

#[test]
fn report_on_a_missing_folder_says_so_once() {
    let out = bin()
        .args(["report", "/nonexistent/callflow-run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "callflow: no run folder at /nonexistent/callflow-run (`callflow run --out DIR` writes one)"
    );
    // A folder without its events: the cause is given once.
    let tmp = callflow_tests::scratch("empty-run");
    let dir = tmp.path().to_path_buf();
    let out = bin().arg("report").arg(&dir).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
}
