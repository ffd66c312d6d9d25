//! IPv6: `--bind ::1` (RunOptions::bind_ip) puts every UA, its SIP and its RTP on ::1, with the
//! addresses in brackets in URIs, Via and Contact (RFC 3261 §19.1.1, RFC 5118) and `IN IP6` in
//! SDP (RFC 4566); against our own UAs and against sipp.

use callflow_tests::{fixture, free_udp_port, run_scenario};
use events::{EventKind, Outcome};

fn on_ipv6() -> orchestrator::RunOptions {
    orchestrator::RunOptions {
        bind_ip: "::1".parse().expect("::1"),
        ..orchestrator::RunOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn our_uas_call_and_hear_each_other_over_ipv6() {
    let (s, _) = scenario::load(&fixture("signatures.yaml")).expect("fixture");
    let run = run_scenario(&s, on_ipv6(), vec![]).await;
    run.assert_outcome(Outcome::Passed);
    let invite = &run.raw("alice", ">INVITE")[0];
    assert!(invite.contains("Via: SIP/2.0/UDP [::1]:"), "{invite}");
    assert!(invite.contains("Contact: <sip:100@[::1]:"), "{invite}");
    assert!(invite.contains("c=IN IP6 ::1\r\n"), "{invite}");
    let stats: Vec<&events::MediaStats> = run
        .events
        .iter()
        .filter_map(|e| match &e.event {
            EventKind::MediaStats(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(stats.len(), 2, "{stats:?}");
    for m in stats {
        assert!(m.local.starts_with("[::1]:"), "{m:?}");
        assert!(m.packets_received > 20, "{m:?}");
    }
    run.assert_clean();
}

#[tokio::test(flavor = "multi_thread")]
async fn callflow_calls_sipp_over_ipv6() {
    let port = free_udp_port();
    let sipp = callflow_tests::spawn_sipp(
        None,
        &[
            "-sn",
            "uas",
            "-i",
            "::1",
            "-p",
            &port.to_string(),
            "-m",
            "1",
        ],
        "20s",
    );
    let text = format!(
        "version: 1\nname: to sipp over IPv6\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - command: MakeCall\n        target: \"sip:service@[::1]:{port}\"\n      - event: RINGING\n      - command: Release\n"
    );
    let s = scenario::parse_str(&text, "v6.yaml").expect("valid");
    let run = run_scenario(&s, on_ipv6(), vec![]).await;
    run.assert_outcome(Outcome::Passed);
    assert_eq!(
        run.wire("alice"),
        [">INVITE", "<180", "<200", ">ACK", ">BYE", "<200"]
    );
    run.assert_clean();
    let out = tokio::task::spawn_blocking(move || sipp.wait_with_output())
        .await
        .expect("join")
        .expect("wait");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
