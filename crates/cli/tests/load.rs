//! `callflow load` on real sockets, each bounded in calls and time: against sipp as callee and
//! as caller, against itself in one process, and stopped by Ctrl-C with every call hung up.

use callflow_tests::{fixture, free_udp_port, scratch};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_callflow"))
}

/// A folder of the test's own, for its scenario and outputs (removed when dropped).
fn workdir(name: &str) -> tempfile::TempDir {
    scratch(&format!("load-{name}"))
}

/// A process killed if the test ends first.
struct Killed(Option<Child>);

impl Killed {
    fn wait(mut self) -> Output {
        self.0
            .take()
            .expect("child")
            .wait_with_output()
            .expect("wait")
    }

    /// Waits for the process to exit, at most `limit` (then kills it and fails).
    fn wait_within(mut self, limit: std::time::Duration) -> Output {
        let child = self.0.take().expect("child");
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(limit) {
            Ok(out) => out.expect("wait"),
            Err(_) => {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                panic!("callflow did not exit within {limit:?} of the stop");
            }
        }
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn sipp(args: &[&str]) -> Killed {
    Killed(Some(callflow_tests::spawn_sipp(None, args, "60s")))
}

fn summary(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("summary written");
    serde_json::from_str(&text).expect("summary is JSON")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// What every load must end with: nothing left behind.
fn assert_clean(s: &serde_json::Value) {
    assert_eq!(s["leaks"]["dialogs"], 0, "{s:#}");
    assert_eq!(s["leaks"]["ports"], 0, "{s:#}");
}

#[test]
fn callflow_loads_a_sipp_uas_3000_calls_at_300_per_second() {
    let tmp = workdir("to-sipp");
    let dir = tmp.path().to_path_buf();
    let port = free_udp_port();
    let uas = sipp(&[
        "-sn",
        "uas",
        "-i",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-m",
        "3000",
    ]);
    let file = dir.join("to-sipp.yaml");
    std::fs::write(
        &file,
        format!(
            "version: 1\nname: to sipp\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - command: MakeCall\n        target: sip:service@127.0.0.1:{port}\n      - command: Release\n"
        ),
    )
    .expect("scenario");
    let out = bin()
        .arg("load")
        .arg(&file)
        .args(["--rate", "300", "--calls", "3000", "--summary"])
        .arg(dir.join("summary.json"))
        .output()
        .expect("callflow runs");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = summary(&dir.join("summary.json"));
    assert_eq!(s["schema_version"], 1);
    assert_eq!(s["mode"], "originate");
    assert_eq!(s["calls"]["attempted"], 3000, "{s:#}");
    assert_eq!(s["calls"]["passed"], 3000, "{s:#}");
    assert_eq!(s["calls"]["failed"], 0);
    assert_eq!(s["latency_ms"]["setup"]["count"], 3000);
    for p in ["p50", "p90", "p99", "p999", "max"] {
        assert!(s["latency_ms"]["setup"][p].as_f64().expect(p) > 0.0, "{p}");
        assert!(s["latency_ms"]["pdd"][p].is_number(), "{p}");
    }
    let achieved = s["rate"]["achieved"].as_f64().expect("rate");
    assert!((250.0..=350.0).contains(&achieved), "achieved {achieved}/s");
    assert!(
        s["histograms"]["setup"]
            .as_str()
            .is_some_and(|h| !h.is_empty())
    );
    assert!(s["retransmissions"]["sent"].is_u64());
    assert!(s["generator_limited"].is_boolean());
    assert_clean(&s);
    let sipp = uas.wait();
    assert_eq!(sipp.status.code(), Some(0), "{}", text(&sipp));
}

#[test]
fn sockets_per_role_spreads_the_calls_over_that_many_source_ports() {
    let tmp = workdir("sockets");
    let dir = tmp.path().to_path_buf();
    let port = free_udp_port();
    let log = dir.join("sipp-messages.log");
    let uas = sipp(&[
        "-sn",
        "uas",
        "-i",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-m",
        "40",
        "-trace_msg",
        "-message_file",
        log.to_str().expect("a UTF-8 path"),
    ]);
    let file = dir.join("sockets.yaml");
    std::fs::write(
        &file,
        format!(
            "version: 1\nname: sockets\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - command: MakeCall\n        target: sip:service@127.0.0.1:{port}\n      - command: Release\n"
        ),
    )
    .expect("scenario");
    let out = bin()
        .arg("load")
        .arg(&file)
        .args(["--rate", "100", "--calls", "40", "--sockets-per-role", "4"])
        .arg("--summary")
        .arg(dir.join("summary.json"))
        .output()
        .expect("callflow runs");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = summary(&dir.join("summary.json"));
    assert_eq!(s["calls"]["passed"], 40, "{s:#}");
    assert_clean(&s);
    let sipp = uas.wait();
    assert_eq!(sipp.status.code(), Some(0), "{}", text(&sipp));
    // What sipp received: each INVITE's Via names the port it came from, ten from each.
    let received = std::fs::read_to_string(&log).expect("sipp's message log");
    let mut by_port = std::collections::BTreeMap::<String, usize>::new();
    for invite in received.split("INVITE sip:").skip(1) {
        let via = invite
            .lines()
            .find(|l| l.starts_with("Via:"))
            .expect("a Via");
        let sent_by = via.split_whitespace().nth(2).expect("sent-by");
        let port = sent_by.split(';').next().and_then(|h| h.rsplit(':').next());
        *by_port.entry(port.expect("a port").to_owned()).or_default() += 1;
    }
    assert_eq!(by_port.len(), 4, "{by_port:?}");
    assert!(by_port.values().all(|&n| n == 10), "{by_port:?}");
}

#[test]
fn sipp_uac_at_300_per_second_loads_a_callflow_answering_role() {
    let tmp = workdir("from-sipp");
    let dir = tmp.path().to_path_buf();
    let port = free_udp_port();
    let mut callflow = Killed(Some(
        bin()
            .arg("load")
            .arg(fixture("load/answer.yaml"))
            .args(["--calls", "3000", "--base-port"])
            .arg(port.to_string())
            .args(["--port-count", "1", "--stats", "-", "--summary"])
            .arg(dir.join("summary.json"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("callflow runs"),
    ));
    // The first stats line: the role listens.
    let stdout = callflow
        .0
        .as_mut()
        .and_then(|c| c.stdout.take())
        .expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().expect("a stats line").expect("read");
    assert!(first.starts_with('{'), "{first}");
    let uac = sipp(&[
        "-sn",
        "uac",
        &format!("127.0.0.1:{port}"),
        "-i",
        "127.0.0.1",
        "-p",
        &free_udp_port().to_string(),
        "-r",
        "300",
        "-m",
        "3000",
        "-s",
        "200",
    ]);
    let sipp = uac.wait();
    assert_eq!(sipp.status.code(), Some(0), "{}", text(&sipp));
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let out = callflow.wait();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        rest.join("\n"),
        text(&out)
    );
    let s = summary(&dir.join("summary.json"));
    assert_eq!(s["mode"], "answer");
    assert_eq!(s["calls"]["passed"], 3000, "{s:#}");
    // The callee's side of the setup: each INVITE to its ACK.
    assert_eq!(s["latency_ms"]["answered"]["count"], 3000, "{s:#}");
    assert_eq!(s["calls"]["failed"], 0);
    assert_clean(&s);
}

#[test]
fn two_roles_of_one_scenario_load_each_other_in_one_process() {
    let tmp = workdir("self");
    let dir = tmp.path().to_path_buf();
    let out = bin()
        .arg("load")
        .arg(fixture("basic-call.yaml"))
        .args(["--rate", "200", "--calls", "1000", "--stats"])
        .arg(dir.join("stats.csv"))
        .args(["--stats-interval", "500ms", "--summary"])
        .arg(dir.join("summary.json"))
        .output()
        .expect("callflow runs");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = summary(&dir.join("summary.json"));
    assert_eq!(s["calls"]["passed"], 1000, "{s:#}");
    // Every node of the scenario has its durations.
    for node in s["nodes_ms"].as_object().expect("nodes").values() {
        assert!(node["count"].as_u64().expect("count") > 0);
    }
    assert_eq!(s["latency_ms"]["setup"]["count"], 1000);
    assert_clean(&s);
    let csv = std::fs::read_to_string(dir.join("stats.csv")).expect("stats");
    let mut rows = csv.lines();
    assert!(
        rows.next()
            .is_some_and(|h| h.starts_with("elapsed_s,target_rate,rate,in_flight"))
    );
    assert!(rows.count() >= 4, "{csv}");
}

/// Failures are counted by class, the load stops once more than --max-failures failed, and
/// the exit code says it.
#[test]
fn a_busy_callee_fails_the_load_by_status_and_stops_it_early() {
    let tmp = workdir("busy");
    let dir = tmp.path().to_path_buf();
    let out = bin()
        .arg("load")
        .arg(fixture("load/busy.yaml"))
        .args([
            "--rate",
            "100",
            "--calls",
            "1000",
            "--max-failures",
            "5",
            "--summary",
        ])
        .arg(dir.join("summary.json"))
        .arg("--out")
        .arg(dir.join("out"))
        .output()
        .expect("callflow runs");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // The failed iterations read like a functional run: a ladder each, with the 486 on it.
    let mut folders: Vec<_> = std::fs::read_dir(dir.join("out"))
        .expect("out")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    assert!(!folders.is_empty() && folders.len() <= 10, "{folders:?}");
    let first = &folders[0];
    assert!(first.to_string_lossy().ends_with("-failed"), "{first:?}");
    let ladder = std::fs::read_to_string(first.join("ladder.txt")).expect("ladder");
    assert!(ladder.contains("486"), "{ladder}");
    assert!(first.join("ladder.html").exists());
    let events = std::fs::read_to_string(first.join("events.jsonl")).expect("events");
    assert!(
        events.lines().any(|l| l.contains("\"iteration_ended\"")),
        "{events}"
    );
    let s = summary(&dir.join("summary.json"));
    assert_eq!(s["outcome"], "failed");
    let failed = s["calls"]["failed"].as_u64().expect("failed");
    assert!(failed > 5, "{s:#}");
    assert_eq!(
        s["calls"]["failures_by_class"]["status_486"], failed,
        "{s:#}"
    );
    assert!(s["calls"]["attempted"].as_u64().expect("n") < 100, "{s:#}");
    assert_clean(&s);
}

#[test]
fn a_load_needs_a_bound() {
    let out = bin()
        .arg("load")
        .arg(fixture("basic-call.yaml"))
        .args(["--rate", "10"])
        .output()
        .expect("callflow runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("a load needs a bound"),
        "{}",
        text(&out)
    );
}

/// An HTTP GET of `path` on 127.0.0.1:`port`, naming `host`: the status line and the body.
fn http_get(port: u16, host: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// `callflow load` of fixtures/load/long-call.yaml (calls that stay up a minute) with `args`
/// and what `more` adds, its stats on stdout every 100 ms: the process, and its stats lines.
fn long_load(
    args: &[&str],
    more: impl FnOnce(&mut Command),
) -> (Killed, std::io::Lines<BufReader<std::process::ChildStdout>>) {
    let mut cmd = bin();
    cmd.arg("load")
        .arg(fixture("load/long-call.yaml"))
        .args(args)
        .args(["--stats", "-", "--stats-interval", "100ms"]);
    more(&mut cmd);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("callflow runs");
    let stdout = child.stdout.take().expect("stdout");
    (Killed(Some(child)), BufReader::new(stdout).lines())
}

/// Ctrl-C: no new iteration, every confirmed call gets its BYE, the summary is written, exit 130.
/// Meanwhile --metrics serves the load's Prometheus metrics.
#[test]
fn ctrl_c_ends_a_load_with_every_call_hung_up() {
    let tmp = workdir("ctrl-c");
    let dir = tmp.path().to_path_buf();
    let events = dir.join("events.jsonl");
    let metrics = free_udp_port();
    let (mut callflow, mut lines) = long_load(&["--rate", "50", "--calls", "1000"], |c| {
        c.arg("--summary")
            .arg(dir.join("summary.json"))
            .arg("--events")
            .arg(&events)
            .arg("--metrics")
            .arg(format!("127.0.0.1:{metrics}"));
    });
    let child = callflow.0.as_mut().expect("child");
    // Wait (on its own stats lines) until calls are up.
    let up = lines.by_ref().map_while(Result::ok).any(|l| {
        serde_json::from_str::<serde_json::Value>(&l)
            .is_ok_and(|v| v["in_flight"].as_u64().unwrap_or(0) >= 10)
    });
    assert!(up, "no calls in flight");
    let scraped = http_get(metrics, &format!("127.0.0.1:{metrics}"), "/metrics");
    assert!(scraped.starts_with("HTTP/1.1 200"), "{scraped}");
    // A page that rebinds its own name to 127.0.0.1 cannot read them (docs/security.md).
    let rebound = http_get(metrics, &format!("evil.example:{metrics}"), "/metrics");
    assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
    assert!(!rebound.contains("callflow_load_"), "{rebound}");
    for want in [
        "callflow_load_in_flight ",
        "callflow_load_started_total ",
        "callflow_load_setup_seconds_bucket",
        "callflow_load_responses_total{direction=\"received\",code=\"200\"}",
    ] {
        assert!(scraped.contains(want), "{want} not in\n{scraped}");
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let _rest: Vec<String> = lines.map_while(Result::ok).collect();
    let out = callflow.wait();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    let s = summary(&dir.join("summary.json"));
    assert_eq!(s["outcome"], "stopped", "{s:#}");
    assert!(
        s["calls"]["stopped"].as_u64().expect("stopped") >= 10,
        "{s:#}"
    );
    assert_clean(&s);
    // Every call alice had answered ended with a BYE (hers, or bob's: the cleanup of an
    // iteration hangs up both its legs, and the first BYE ends the call).
    let mut answered = std::collections::BTreeSet::new();
    let mut byes = std::collections::BTreeSet::new();
    for line in std::fs::read_to_string(&events).expect("events").lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let m = &v["event"]["data"];
        if v["event"]["type"] != "sip_message" || m["ua"] != "alice" {
            continue;
        }
        let call = m["call_id"].as_str().unwrap_or_default().to_owned();
        let cseq = m["cseq"].as_str().unwrap_or_default();
        if m["direction"] == "received" && m["status"] == 200 && cseq.ends_with("INVITE") {
            answered.insert(call.clone());
        }
        if m["method"] == "BYE" && m["status"].is_null() {
            byes.insert(call);
        }
    }
    assert!(answered.len() >= 10, "{} answered", answered.len());
    let unended: Vec<_> = answered.difference(&byes).collect();
    assert!(unended.is_empty(), "answered, never hung up: {unended:?}");
}

/// Ctrl-C once every start was made (all the calls in flight, none left to start): the stop
/// still ends them with their cleanup, at once. It used to be ignored once the starts were
/// done, and the load's loop spun on it, starving the runtime, until killed.
#[test]
fn ctrl_c_after_the_last_start_still_ends_the_calls_in_flight() {
    let tmp = workdir("ctrl-c-late");
    let dir = tmp.path().to_path_buf();
    let (mut callflow, mut lines) = long_load(&["--rate", "200", "--calls", "20"], |c| {
        c.arg("--summary").arg(dir.join("summary.json"));
    });
    let child = callflow.0.as_mut().expect("child");
    let all_up = lines.by_ref().map_while(Result::ok).any(|l| {
        serde_json::from_str::<serde_json::Value>(&l).is_ok_and(|v| {
            v["started"].as_u64().unwrap_or(0) >= 20 && v["in_flight"].as_u64().unwrap_or(0) >= 20
        })
    });
    assert!(all_up, "the 20 calls never were all in flight");
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    // The rest of its output is read aside: a load that never ends must fail the wait below.
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).count());
    let out = callflow.wait_within(std::time::Duration::from_secs(12));
    drain.join().expect("drained");
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    let s = summary(&dir.join("summary.json"));
    assert_eq!(s["outcome"], "stopped", "{s:#}");
    assert_eq!(s["calls"]["stopped"], 20, "{s:#}");
    assert_clean(&s);
}

/// A PBX load: each role registers the users of a CSV through Kamailio (digest auth), then
/// the calls go between them through it, each iteration with its row's users.
#[test]
fn a_load_through_kamailio_with_digest_auth_and_a_csv_of_users() {
    let pbx = callflow_tests::lab::kamailio(free_udp_port());
    let tmp = workdir("kamailio");
    let dir = tmp.path().to_path_buf();
    std::fs::write(
        dir.join("users.csv"),
        "caller,caller_pw,callee,callee_pw\n100,alicepw,200,bobpw\n300,carolpw,200,bobpw\n",
    )
    .expect("csv");
    let port = pbx.port;
    std::fs::write(
        dir.join("pbx-load.yaml"),
        format!(
            "version: 1\nname: PBX load\ninstances:\n  caller:\n    dn: \"${{caller}}\"\n    pbx: {{ host: 127.0.0.1, port: {port}, password: \"${{caller_pw}}\" }}\n    steps:\n      - command: MakeCall\n        target: \"${{callee}}\"\n        headers: {{ X-Row: \"${{caller}}-${{iteration}}\" }}\n      - command: Release\n  callee:\n    dn: \"${{callee}}\"\n    pbx: {{ host: 127.0.0.1, port: {port}, password: \"${{callee_pw}}\" }}\n    steps:\n      - event: INCOMING\n      - command: Answer\n      - event: DISCONNECTED\n"
        ),
    )
    .expect("scenario");
    let out = bin()
        .arg("load")
        .arg(dir.join("pbx-load.yaml"))
        .arg("--inf")
        .arg(dir.join("users.csv"))
        .args(["--rate", "20", "--calls", "60", "--summary"])
        .arg(dir.join("summary.json"))
        .arg("--events")
        .arg(dir.join("events.jsonl"))
        .output()
        .expect("callflow runs");
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out), pbx.log());
    let s = summary(&dir.join("summary.json"));
    assert_eq!(s["calls"]["passed"], 60, "{s:#}");
    assert_clean(&s);
    // Each user registered (and unregistered), and each call from its row's user, with the
    // digest challenge answered.
    let events = std::fs::read_to_string(dir.join("events.jsonl")).expect("events");
    let sent = |what: &str| {
        events
            .lines()
            .filter(|l| l.contains("\"direction\":\"sent\"") && l.contains(what))
            .count()
    };
    assert!(sent("\"method\":\"REGISTER\"") >= 6, "3 users, in and out");
    assert!(sent("From: <sip:100@") > 0, "row 1's caller");
    assert!(sent("From: <sip:300@") > 0, "row 2's caller");
    assert!(sent("X-Row: 300-2") >= 1, "iteration 2 is row 2's");
    assert!(
        s["responses"]["received"]["407"].as_u64().unwrap_or(0) >= 60,
        "{s:#}"
    );
}

/// A scenario whose instances only register is a REGISTER load: each iteration registers its
/// row's user through Kamailio (digest auth); a refused one fails by its status.
#[test]
fn a_register_load_through_kamailio() {
    let pbx = callflow_tests::lab::kamailio(free_udp_port());
    let tmp = workdir("register");
    let dir = tmp.path().to_path_buf();
    std::fs::write(
        dir.join("users.csv"),
        "user,pw\n100,alicepw\n200,bobpw\n300,carolpw\n300,wrong\n",
    )
    .expect("csv");
    std::fs::write(
        dir.join("register.yaml"),
        format!(
            "version: 1\nname: REGISTER load\ninstances:\n  phone:\n    dn: \"${{user}}\"\n    pbx: {{ host: 127.0.0.1, port: {}, password: \"${{pw}}\" }}\n",
            pbx.port
        ),
    )
    .expect("scenario");
    let out = bin()
        .arg("load")
        .arg(dir.join("register.yaml"))
        .arg("--inf")
        .arg(dir.join("users.csv"))
        .args([
            "--rate",
            "40",
            "--calls",
            "40",
            "--max-failures",
            "10",
            "--summary",
        ])
        .arg(dir.join("summary.json"))
        .output()
        .expect("callflow runs");
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out), pbx.log());
    let s = summary(&dir.join("summary.json"));
    // Every fourth row has the wrong password.
    assert_eq!(s["calls"]["passed"], 30, "{s:#}");
    assert_eq!(s["calls"]["failed"], 10, "{s:#}");
    let classes = s["calls"]["failures_by_class"]
        .as_object()
        .expect("classes");
    assert!(
        classes.keys().all(|k| k.starts_with("status_4")),
        "{classes:?}"
    );
    // 30 registrations, and the 3 users' unregistrations at the end.
    assert_eq!(s["latency_ms"]["register"]["count"], 33, "{s:#}");
    assert_clean(&s);
}

/// Three roles and a transfer per iteration, many iterations at once: each transfer's INVITE
/// names its iteration, and every iteration passes.
#[test]
fn overlapping_blind_transfers_each_reach_their_own_iteration() {
    let tmp = workdir("transfer");
    let dir = tmp.path().to_path_buf();
    let events = dir.join("events.jsonl");
    let out = bin()
        .arg("load")
        .arg(fixture("load/blind-transfer.yaml"))
        .args(["--rate", "50", "--calls", "100", "--summary"])
        .arg(dir.join("summary.json"))
        .arg("--events")
        .arg(&events)
        .output()
        .expect("callflow runs");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = summary(&dir.join("summary.json"));
    assert_eq!(s["calls"]["passed"], 100, "{s:#}");
    assert!(
        s["concurrency"]["max_in_flight"].as_u64().expect("n") >= 50,
        "{s:#}"
    );
    assert_clean(&s);
    // Alice's INVITEs to carol (the transfers) each name an iteration.
    let text = std::fs::read_to_string(&events).expect("events");
    let transfers: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"ua\":\"alice\"") && l.contains("\"direction\":\"sent\""))
        .filter(|l| l.contains("\"raw\":\"INVITE sip:300@"))
        .collect();
    assert_eq!(transfers.len(), 100);
    assert!(
        transfers
            .iter()
            .all(|l| l.contains("X-Callflow-Iteration: "))
    );
}

/// Runs `callflow load` on `fixture` with `args` and returns its summary (exit 0 asked).
fn load_summary(name: &str, fixture_file: &str, args: &[&str]) -> serde_json::Value {
    let tmp = workdir(name);
    let dir = tmp.path().to_path_buf();
    let out = bin()
        .arg("load")
        .arg(fixture(fixture_file))
        .args(args)
        .arg("--summary")
        .arg(dir.join("summary.json"))
        .output()
        .expect("callflow runs");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = summary(&dir.join("summary.json"));
    assert_clean(&s);
    s
}

/// The pacing flags: a closed loop keeps its users in flight; a concurrency cap holds, and the
/// summary says the generator was the limit; a duration bounds the starts; a ramp steps up.
#[test]
fn the_pacing_flags_do_what_they_say() {
    let users = load_summary(
        "users",
        "load/hold-100ms.yaml",
        &["--users", "5", "--calls", "40"],
    );
    assert_eq!(users["calls"]["passed"], 40, "{users:#}");
    assert_eq!(users["concurrency"]["max_in_flight"], 5, "{users:#}");
    assert_eq!(users["rate"]["target"], serde_json::Value::Null);

    // 200/s of 100 ms calls would be 20 at once; 3 are allowed.
    let capped = load_summary(
        "capped",
        "load/hold-100ms.yaml",
        &["--rate", "200", "--max-concurrent", "3", "--calls", "30"],
    );
    assert_eq!(capped["calls"]["passed"], 30, "{capped:#}");
    assert!(
        capped["concurrency"]["max_in_flight"].as_u64().expect("n") <= 3,
        "{capped:#}"
    );
    assert_eq!(capped["generator_limited"], true, "{capped:#}");
    assert!(
        capped["generator"]["capped_s"].as_f64().expect("s") > 0.0,
        "{capped:#}"
    );

    let timed = load_summary(
        "duration",
        "basic-call.yaml",
        &["--rate", "40", "--duration", "1s"],
    );
    // Every start of the schedule is made or, on a busy machine, counted as skipped.
    let scheduled = |s: &serde_json::Value| {
        s["calls"]["attempted"].as_u64().expect("n")
            + s["generator"]["missed_starts"].as_u64().expect("missed")
    };
    let n = scheduled(&timed);
    assert!((40..=41).contains(&n), "{n} due in 1 s at 40/s: {timed:#}");
    assert_eq!(timed["calls"]["passed"], timed["calls"]["attempted"]);

    // 20/s for 0.5 s, then 40/s, then 60/s (the max) for the rest of 1.5 s: about 10 + 20 + 30.
    let ramp = load_summary(
        "ramp",
        "basic-call.yaml",
        &[
            "--rate",
            "20",
            "--rate-increase",
            "20",
            "--rate-max",
            "60",
            "--rate-interval",
            "500ms",
            "--duration",
            "1500ms",
        ],
    );
    let n = scheduled(&ramp);
    assert!((59..=61).contains(&n), "{n} due on the ramp: {ramp:#}");
    assert_eq!(ramp["rate"]["target"], 60.0);
}

/// A load over TLS between the two roles of one scenario (the run's own certificate), the
/// caller sending from two sockets, each its own TLS client: every call passes.
#[test]
fn a_load_over_tls_from_two_sockets() {
    let s = load_summary(
        "tls",
        "basic-call-tls.yaml",
        &["--rate", "100", "--calls", "200", "--sockets-per-role", "2"],
    );
    assert_eq!(s["calls"]["passed"], 200, "{s:#}");
    assert_eq!(s["calls"]["failed"], 0, "{s:#}");
}
