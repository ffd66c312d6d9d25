//! callflow against an independent SIP implementation: sipp (Debian `sip-tester`), as callee
//! and as caller.

use callflow_tests::{run_scenario, run_text};
use events::{Event, EventKind, Outcome};
use orchestrator::{EventSink, PortPolicy, RunOptions};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A sipp process that is killed if the test ends before it does.
struct Sipp(Option<Child>);

impl Sipp {
    fn spawn(args: &[&str]) -> Self {
        let child = Command::new("sipp")
            .args(args)
            .args(["-nostdin", "-timeout", "20s", "-timeout_error"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start sipp ({e}): install it with `apt-get install sip-tester` (.ci/run does)"));
        Self(Some(child))
    }

    /// Waits for sipp to exit (bounded by its own -timeout) and returns its exit code and stderr.
    async fn finish(mut self) -> (i32, String) {
        let child = self.0.take().expect("child");
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .expect("join")
            .expect("wait");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test]
async fn callflow_calls_sipp_uas() {
    let port = free_udp_port();
    let sipp = Sipp::spawn(&[
        "-sn",
        "uas",
        "-i",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-m",
        "1",
    ]);
    // No wait for sipp to be ready: if the INVITE comes first, UDP retransmission covers it.
    let text = format!(
        "version: 1\nname: to sipp\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - command: MakeCall\n        target: sip:service@127.0.0.1:{port}\n      - event: RINGING\n      - command: Release\n"
    );
    let run = run_text(&text, "to-sipp.yaml").await;
    run.assert_outcome(Outcome::Passed);
    assert_eq!(
        run.wire("alice"),
        [">INVITE", "<180", "<200", ">ACK", ">BYE", "<200"]
    );
    run.assert_clean();
    let (code, err) = sipp.finish().await;
    assert_eq!(code, 0, "sipp uas failed: {err}");
}

/// Starts sipp's caller once callee `bob` is listening.
struct StartSippOnUa {
    started: Mutex<Option<tokio::sync::oneshot::Sender<String>>>,
}

impl EventSink for StartSippOnUa {
    fn event(&self, e: &Event) {
        if let EventKind::UaStarted(u) = &e.event
            && let Some(tx) = self.started.lock().expect("lock").take()
        {
            let _ = tx.send(u.local_addr.clone());
        }
    }
}

#[tokio::test]
async fn sipp_uac_calls_callflow() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let text = "version: 1\nname: from sipp\ninstances:\n  bob:\n    dn: \"200\"\n    steps:\n      - event: INCOMING\n        timeout: 20s\n      - command: Answer\n      - event: DISCONNECTED\n        timeout: 20s\n";
    let s = scenario::parse_str(text, "from-sipp.yaml").expect("valid");
    let bob_port = free_udp_port();
    let opts = RunOptions {
        sip_ports: PortPolicy::Range {
            base: bob_port,
            count: 1,
            step: 1,
        },
        ..RunOptions::default()
    };
    let sink = Arc::new(StartSippOnUa {
        started: Mutex::new(Some(tx)),
    });
    let run = tokio::spawn(async move { run_scenario(&s, opts, vec![sink]).await });
    let bob = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("bob starts")
        .expect("address");
    let sipp_port = free_udp_port().to_string();
    let sipp = Sipp::spawn(&[
        "-sn",
        "uac",
        &bob,
        "-i",
        "127.0.0.1",
        "-p",
        &sipp_port,
        "-m",
        "1",
        "-s",
        "200",
    ]);
    let run = run.await.expect("run");
    run.assert_outcome(Outcome::Passed);
    assert_eq!(
        run.wire("bob"),
        ["<INVITE", ">100", ">180", ">200", "<ACK", "<BYE", ">200"]
    );
    run.assert_clean();
    let (code, err) = sipp.finish().await;
    assert_eq!(code, 0, "sipp uac failed: {err}");
}
