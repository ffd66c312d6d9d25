//! Reports from the event stream: ladder snapshots (times redacted), tshark reading our pcap,
//! and JUnit.

use callflow_tests::{run_file, run_text};
use report::Ladder;

/// Replaces the run-dependent parts of a ladder (the time column, durations) with placeholders.
fn redact(text: &str) -> String {
    let durations = regex::Regex::new(r"\b\d+\.\d+ s\b").unwrap();
    text.lines()
        .map(|l| match l.get(..9) {
            Some(t) if t.trim().parse::<f64>().is_ok() => format!("   <time>{}", &l[9..]),
            _ => l.to_owned(),
        })
        .map(|l| durations.replace_all(&l, "<t> s").into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

const BUSY: &str = "version: 1\nname: Busy\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - command: MakeCall\n        target: bob\n  bob:\n    dn: \"200\"\n    steps:\n      - event: INCOMING\n      - command: Reject\n        code: 486\n";

#[tokio::test(flavor = "multi_thread")]
async fn basic_call_ladder() {
    let run = run_file("basic-call.yaml").await;
    let ladder = Ladder::from_events(&run.events);
    insta::assert_snapshot!("basic_call_text", redact(&ladder.to_text(120)));
    insta::assert_snapshot!("basic_call_mermaid", redact(&ladder.to_mermaid()));
}

#[tokio::test(flavor = "multi_thread")]
async fn failure_ladder_marks_the_divergence() {
    let run = run_text(BUSY, "busy.yaml").await;
    let ladder = Ladder::from_events(&run.events);
    let text = ladder.to_text(120);
    assert!(text.lines().all(|l| l.len() <= 120), "fits 120 columns");
    insta::assert_snapshot!("busy_text", redact(&text));
    insta::assert_snapshot!("busy_mermaid", redact(&ladder.to_mermaid()));
}

#[tokio::test(flavor = "multi_thread")]
async fn transfer_ladder_tells_dialogs_apart() {
    let run = run_file("attended-transfer.yaml").await;
    let ladder = Ladder::from_events(&run.events);
    assert_eq!(
        ladder
            .lanes
            .iter()
            .map(|l| l.title.as_str())
            .collect::<Vec<_>>(),
        ["alice (100)", "bob (200)", "carol (300)"]
    );
    assert_eq!(
        ladder.arrows.iter().map(|a| a.call).max(),
        Some(3),
        "primary, consultation and the replacing call"
    );
    let text = ladder.to_text(120);
    assert!(
        text.contains("[1] REFER")
            && text.contains("[3] INVITE (PCMU sendrecv)")
            && text.contains("[1] INVITE (PCMU sendonly)"),
        "{text}"
    );
    // Each message between our own UAs is drawn once.
    let sent = run.events.iter().filter(|e| matches!(&e.event, events::EventKind::SipMessage(m) if m.direction == events::Direction::Sent)).count();
    assert_eq!(ladder.arrows.len(), sent);
    // The node that sent each message is linked.
    assert!(
        ladder
            .arrows
            .iter()
            .any(|a| a.label == "REFER" && a.node.as_deref() == Some("bob.5"))
    );
}

/// tshark's output for `pcap` with `args` (tshark is installed by .ci/run).
fn tshark(pcap: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run tshark ({e}): apt-get install tshark (.ci/run does)")
        });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn tshark_reads_the_pcap_in_ladder_order() {
    let run = run_file("hold-retrieve.yaml").await;
    let tmp = callflow_tests::scratch("pcap");
    let dir = tmp.path().to_path_buf();
    let pcap = dir.join("run.pcap");
    let written = report::pcap::write(&run.events, &pcap).unwrap();
    let fields = ["-Y", "sip", "-T", "fields", "-e", "sip.Method"];
    let out = tshark(
        &pcap,
        &[&fields[..], &["-e", "sip.Status-Code", "-e", "sip.CSeq"]].concat(),
    );
    let decoded: Vec<String> = out
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            if f[1].is_empty() {
                f[0].to_owned()
            } else {
                f[1].to_owned()
            }
        })
        .collect();
    let ladder: Vec<String> = Ladder::from_events(&run.events)
        .arrows
        .iter()
        .map(|a| a.status.map_or_else(|| a.label.clone(), |s| s.to_string()))
        .collect();
    assert_eq!(decoded.len(), written);
    assert_eq!(
        decoded, ladder,
        "tshark decodes the same SIP messages in the same order"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn junit_names_the_failure_and_carries_the_ladder() {
    let run = run_text(BUSY, "busy.yaml").await;
    let xml = report::junit::render(&[report::junit::Case {
        file: "busy.yaml",
        events: &run.events,
    }]);
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"callflow\" tests=\"1\" failures=\"1\" errors=\"0\""), "{xml}");
    assert!(xml.contains("<testcase name=\"Busy\" classname=\"busy.yaml\""));
    assert!(xml.contains("<failure message=\"alice.1 (MakeCall) on alice: expected 2xx from bob within 10 s, got 486 Busy Here at"), "{xml}");
    assert!(xml.contains("<property name=\"ua.alice\" value=\"0 passed, 1 failed, 0 skipped\"/>"));
    assert!(xml.contains("<system-out><![CDATA[Busy\n") && xml.contains("486 Busy Here"));
    assert_valid_junit(&xml, "failing");
}

#[tokio::test(flavor = "multi_thread")]
async fn junit_of_several_scenarios_is_valid_against_the_schema() {
    let (pass, fail) = tokio::join!(run_file("basic-call.yaml"), run_text(BUSY, "busy.yaml"));
    let xml = report::junit::render(&[
        report::junit::Case {
            file: "basic-call.yaml",
            events: &pass.events,
        },
        report::junit::Case {
            file: "busy.yaml",
            events: &fail.events,
        },
    ]);
    assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
    assert_valid_junit(&xml, "several");
}

/// Validates JUnit XML against `fixtures/schemas/junit.xsd` (the Ant/Jenkins JUnit format) with
/// xmllint (libxml2-utils, installed by .ci/run).
fn assert_valid_junit(xml: &str, tag: &str) {
    let schema =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/schemas/junit.xsd");
    let tmp = callflow_tests::scratch(&format!("junit-{tag}"));
    let path = tmp.path().join("junit-{tag}.xml");
    std::fs::write(&path, xml).unwrap();
    let out = std::process::Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(&schema)
        .arg(&path)
        .output();
    std::fs::remove_file(&path).ok();
    match out {
        Ok(out) => assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => eprintln!("xmllint not installed; JUnit schema check skipped"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_html_ladder_renders_one_arrow_per_message_in_chromium() {
    let run = run_file("blind-transfer.yaml").await;
    let ladder = Ladder::from_events(&run.events);
    let tmp = callflow_tests::scratch("html");
    let dir = tmp.path().to_path_buf();
    let page = dir.join("ladder.html");
    std::fs::write(&page, ladder.to_html()).unwrap();
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
        ])
        .args(["--disable-component-update", "--disable-sync", "--dump-dom"])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run chromium ({e}): apt-get install chromium (.ci/run does)")
        });
    let dom = String::from_utf8_lossy(&out.stdout);
    // The page's script counted the arrows the browser built (it ran: the attribute is set).
    assert!(
        dom.contains(&format!("data-arrows=\"{}\"", ladder.arrows.len())),
        "chromium DOM:\n{}",
        &dom[..dom.len().min(2000)]
    );
    assert_eq!(dom.matches("class=\"arrow\"").count(), ladder.arrows.len());
    assert!(
        dom.contains(">[1] REFER<") || dom.contains(">REFER<"),
        "labels are drawn"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pcap_carries_the_rtp_when_the_run_captures_it() {
    let (s, _) = scenario::load(&callflow_tests::fixture("media-call.yaml")).unwrap();
    let opts = orchestrator::RunOptions {
        capture_rtp: true,
        ..orchestrator::RunOptions::default()
    };
    let run = callflow_tests::run_scenario(&s, opts, vec![]).await;
    // One capture per call side, written by the media side when the call's media ended.
    let captures: Vec<&events::RtpCapture> = run
        .events
        .iter()
        .filter_map(|e| match &e.event {
            events::EventKind::RtpCapture(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(captures.len(), 2, "alice's and bob's");
    assert!(
        !run.events
            .iter()
            .any(|e| matches!(e.event, events::EventKind::RtpPacket(_))),
        "no event per packet"
    );
    let sent: Vec<&events::CapturedRtp> = captures
        .iter()
        .flat_map(|c| &c.packets)
        .filter(|p| p.direction == events::Direction::Sent && p.local.is_none())
        .collect();
    assert!(sent.len() > 20, "RTP captured: {} packets sent", sent.len());
    // RTCP (on the RTP port + 1) is captured beside it: each side's reports.
    let rtcp_sent = captures
        .iter()
        .flat_map(|c| &c.packets)
        .filter(|p| p.direction == events::Direction::Sent && p.local.is_some())
        .count();
    assert!(rtcp_sent >= 2, "a report from each side: {rtcp_sent}");
    let tmp = callflow_tests::scratch("rtp-pcap");
    let dir = tmp.path().to_path_buf();
    let pcap = dir.join("run.pcap");
    let written = report::pcap::write(&run.events, &pcap).unwrap();
    let text = tshark(
        &pcap,
        &[
            "-o",
            "rtp.heuristic_rtp:TRUE",
            "-o",
            "rtcp.heuristic_rtcp:TRUE",
            "-T",
            "fields",
            "-e",
            "_ws.col.Protocol",
            "-e",
            "rtp.ssrc",
        ],
    );
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let rtp: Vec<&Vec<&str>> = rows.iter().filter(|r| r[0].starts_with("RTP")).collect();
    let ssrcs: std::collections::HashSet<&str> = rtp.iter().map(|r| r[1]).collect();
    // Between our own UAs each packet is recorded by its sender and its receiver, written once.
    assert_eq!(
        rtp.len(),
        sent.len(),
        "every packet sent is in the pcap once"
    );
    assert_eq!(ssrcs.len(), 2, "both directions: {ssrcs:?}");
    let sip = rows
        .iter()
        .filter(|r| r[0] == "SIP" || r[0] == "SIP/SDP")
        .count();
    // tshark decodes our RTCP: sender reports (with their SDES) from both sides.
    let rtcp = tshark(
        &pcap,
        &[
            "-o",
            "rtcp.heuristic_rtcp:TRUE",
            "-Y",
            "rtcp.pt == 200",
            "-T",
            "fields",
            "-e",
            "rtcp.senderssrc",
            "-e",
            "rtcp.ssrc.identifier",
        ],
    );
    let rows: Vec<Vec<&str>> = rtcp.lines().map(|l| l.split('\t').collect()).collect();
    let reporters: std::collections::HashSet<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(reporters.len(), 2, "sender reports from both sides: {rtcp}");
    // Each side's report carries a reception report block about the other's stream.
    for r in &rows {
        let about = r.get(1).copied().unwrap_or_default();
        assert!(
            !about.is_empty() && about != r[0],
            "a block about the peer: {rtcp}"
        );
    }
    assert_eq!(sip + rtp.len() + rtcp_sent, written, "{text}");
    assert_eq!(sip, Ladder::from_events(&run.events).arrows.len());
    run.assert_clean();
    std::fs::remove_dir_all(dir).ok();
}

/// A transfer's ladder in a canonical order: dialog by dialog, and within a dialog transaction
/// by transaction in the order their requests came. A transfer's dialogs and transactions run
/// concurrently (RFC 3515 lets the first NOTIFY overtake the 202, a BYE may cross a NOTIFY's 200,
/// a NOTIFY on one dialog may cross an ACK on another), so that order is what is fixed and
/// compared; which node was running when the stack answered depends on timing, so it is dropped.
fn canonical(mut ladder: Ladder) -> Ladder {
    let cseq = |raw: &str| {
        let line = raw
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("cseq:"))
            .unwrap_or_default();
        let mut f = line[5..].split_whitespace();
        let n = f.next().unwrap_or_default().to_owned();
        let m = f.next().unwrap_or_default();
        (
            n,
            if m == "ACK" {
                "INVITE".to_owned()
            } else {
                m.to_owned()
            },
        )
    };
    let mut keys: Vec<(usize, (String, String))> = Vec::new();
    for a in &ladder.arrows {
        let k = (a.call, cseq(&a.raw));
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let rank = |a: &report::ladder::Arrow| {
        let k = (a.call, cseq(&a.raw));
        (a.call, keys.iter().position(|x| *x == k))
    };
    ladder.arrows.sort_by_key(|a| rank(a));
    for a in &mut ladder.arrows {
        a.node = None;
    }
    ladder
}

#[tokio::test(flavor = "multi_thread")]
async fn transfer_ladders() {
    for (fixture, name) in [
        ("blind-transfer.yaml", "blind_transfer"),
        ("attended-transfer.yaml", "attended_transfer"),
    ] {
        let run = run_file(fixture).await;
        let ladder = canonical(Ladder::from_events(&run.events));
        insta::assert_snapshot!(format!("{name}_text"), redact(&ladder.to_text(120)));
        insta::assert_snapshot!(format!("{name}_mermaid"), redact(&ladder.to_mermaid()));
        run.assert_clean();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reception_listed_before_its_sending_is_drawn_once() {
    // Each UA records its wire messages on its own task, so the stream can list bob's reception
    // of the INVITE before alice's sending of it, even with the same timestamp.
    let run = run_file("basic-call.yaml").await;
    let want = Ladder::from_events(&run.events).to_text(120);
    let is_invite = |e: &events::Event, d: events::Direction| matches!(&e.event, events::EventKind::SipMessage(m) if m.method == "INVITE" && m.status.is_none() && m.direction == d);
    let mut events = run.events.clone();
    let sent = events
        .iter()
        .position(|e| is_invite(e, events::Direction::Sent))
        .unwrap();
    let received = events
        .iter()
        .position(|e| is_invite(e, events::Direction::Received))
        .unwrap();
    let ts = events[sent].ts_us;
    events[received].ts_us = ts;
    let moved = events.remove(received);
    events.insert(sent, moved);
    for (i, e) in events.iter_mut().enumerate() {
        e.seq = i as u64;
    }
    let ladder = Ladder::from_events(&events);
    assert_eq!(
        ladder.arrows.iter().filter(|a| a.label == "INVITE").count(),
        1
    );
    assert_eq!(redact(&ladder.to_text(120)), redact(&want));
    let tmp = callflow_tests::scratch("order");
    let pcap = tmp.path().join("order.pcap");
    assert_eq!(
        report::pcap::write(&events, &pcap).unwrap(),
        report::pcap::write(&run.events, &pcap).unwrap()
    );
    std::fs::remove_file(pcap).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn over_tcp_each_message_is_recorded_on_the_connection_it_crossed() {
    let run = run_file("basic-call-tcp.yaml").await;
    run.assert_outcome(events::Outcome::Passed);
    let sip: Vec<&events::SipMessage> = run
        .events
        .iter()
        .filter_map(|e| match &e.event {
            events::EventKind::SipMessage(m) => Some(m),
            _ => None,
        })
        .collect();
    // The INVITE alice sent and bob received: one 4-tuple, seen from both ends.
    let sent = sip
        .iter()
        .find(|m| m.ua == "alice" && m.direction == events::Direction::Sent)
        .expect("alice's INVITE");
    let got = sip
        .iter()
        .find(|m| m.ua == "bob" && m.direction == events::Direction::Received)
        .expect("bob's INVITE");
    assert_eq!(
        (&sent.local, &sent.peer),
        (&got.peer, &got.local),
        "alice's connection port, not her listener's"
    );
    // Every record of alice's is on that connection.
    for m in sip.iter().filter(|m| m.ua == "alice") {
        assert_eq!(m.local, sent.local, "{} {:?}", m.summary(), m.direction);
    }
    // So the ladder has a lane per UA and no lane for a port, and the pcap has each message once.
    let ladder = Ladder::from_events(&run.events);
    assert_eq!(ladder.lanes.len(), 2, "{:?}", ladder.lanes);
    let tmp = callflow_tests::scratch("tcp-pcap");
    let dir = tmp.path().to_path_buf();
    let pcap = dir.join("tcp.pcap");
    let written = report::pcap::write(&run.events, &pcap).unwrap();
    assert_eq!(written, ladder.arrows.len());
    let streams = tshark(&pcap, &["-Y", "sip", "-T", "fields", "-e", "tcp.stream"]);
    let mut ids: Vec<&str> = streams.lines().collect();
    ids.dedup();
    assert_eq!(ids, ["0"], "one TCP conversation in the pcap");
    std::fs::remove_dir_all(dir).ok();
    run.assert_clean();
}
