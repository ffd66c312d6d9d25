//! callflow against a phone nobody here wrote: pjsua2 (PJSIP, PyPI `pjsua2-python`, in the venv
//! `scripts/test` makes), driven by `tests/peers/pjsua_call.py`.

use callflow_tests::start_one_ua;
use events::Outcome;
use std::path::PathBuf;
use std::process::Command;

/// The venv's python with pjsua2: `CALLFLOW_PJSUA_PYTHON`, else where `scripts/test` puts it.
fn pjsua_python() -> PathBuf {
    if let Some(p) = std::env::var_os("CALLFLOW_PJSUA_PYTHON") {
        return p.into();
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    let python = home.join(".cache/callflow/pjsua2-venv/bin/python");
    assert!(
        python.is_file(),
        "no pjsua2 venv at {}: run scripts/test (it makes one with `pip install pjsua2-python`), or set CALLFLOW_PJSUA_PYTHON",
        python.display()
    );
    python
}

/// pjsua2 (tests/peers/pjsua_call.py) calls `target` with the script's further `args`; asserts
/// that the call was confirmed and ended.
async fn pjsua_calls(target: String, args: &[&str]) {
    let script = callflow_tests::fixture("../tests/peers/pjsua_call.py");
    let python = pjsua_python();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let phone = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(target)
            .args(args)
            .output()
            .expect("pjsua2 runs")
    })
    .await
    .expect("join");
    let said = String::from_utf8_lossy(&phone.stdout).into_owned();
    assert!(
        phone.status.success() && said.contains("state CONFIRMED"),
        "the phone: {said}\n{}",
        String::from_utf8_lossy(&phone.stderr)
    );
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pjsua_phone_requiring_100rel_and_a_session_timer_calls_us() {
    let text = "version: 1\nname: pjsua callee\ninstances:\n  bob:\n    dn: \"200\"\n    steps:\n      - event: INCOMING\n        timeout: 20s\n      - command: Answer\n      - event: DISCONNECTED\n        timeout: 20s\n";
    let s = scenario::parse_str(text, "pjsua.yaml").expect("valid");
    let (run, bob) = start_one_ua(s).await;
    pjsua_calls(format!("sip:200@{bob}"), &["1", "15"]).await;
    let run = run.await.expect("run");
    run.assert_outcome(Outcome::Passed);
    run.assert_wire_contains(
        "bob",
        &["<INVITE", ">180", "<PRACK", "<ACK", "<BYE", ">200"],
    );
    let invite = &run.raw("bob", "<INVITE")[0];
    assert!(
        header(invite, "Require").is_some_and(|r| r.contains("100rel") && r.contains("timer")),
        "pjsua asks for both: {invite}"
    );
    let ringing = &run.raw("bob", ">180")[0];
    assert_eq!(header(ringing, "Require"), Some("100rel"), "{ringing}");
    assert!(header(ringing, "RSeq").is_some(), "{ringing}");
    let oks = run.raw("bob", ">200");
    let prack_ok = oks
        .iter()
        .any(|m| header(m, "CSeq").is_some_and(|c| c.ends_with("PRACK")));
    assert!(prack_ok, "the PRACK answered: {oks:?}");
    let answer = oks
        .iter()
        .find(|m| header(m, "CSeq").is_some_and(|c| c.ends_with(" INVITE")))
        .expect("the 200 to the INVITE");
    assert_eq!(
        header(answer, "Session-Expires"),
        Some("90;refresher=uac"),
        "{answer}"
    );
    run.assert_clean();
}

/// pjsua2 calls us over TLS with SRTP mandatory (RTP/SAVP, SDES keys): our TLS listener and our
/// SRTP answer take a phone nobody here wrote, and its media reaches us through SRTP unharmed.
#[tokio::test(flavor = "multi_thread")]
async fn a_pjsua_phone_calls_us_over_tls_with_srtp() {
    let text = "version: 1\nname: pjsua over TLS and SRTP\ninstances:\n  bob:\n    dn: \"200\"\n    transport: tls\n    srtp: required\n    steps:\n      - event: INCOMING\n        timeout: 20s\n      - command: Answer\n      - event: MEDIA\n        timeout: 10s\n      - event: DISCONNECTED\n        timeout: 20s\n";
    let s = scenario::parse_str(text, "pjsua-tls.yaml").expect("valid");
    let (run, bob) = start_one_ua(s).await;
    pjsua_calls(
        format!("sip:200@{bob};transport=tls"),
        &["2", "15", "tls,srtp"],
    )
    .await;
    let run = run.await.expect("run");
    run.assert_outcome(Outcome::Passed);
    let invite = &run.raw("bob", "<INVITE")[0];
    assert!(
        invite.contains("RTP/SAVP") && invite.contains("a=crypto:"),
        "{invite}"
    );
    let transports = run.transports(None);
    assert!(transports.iter().all(|t| t == "tls"), "{transports:?}");
    let stats = run.media_stats().into_iter().next().expect("media_stats");
    assert!(stats.packets_received > 20, "{stats:?}");
    assert_eq!(stats.srtp.map(|s| s.rejected), Some(0));
    assert!(run.finished().leaks.is_clean());
}
