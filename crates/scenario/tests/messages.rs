//! Messages a new user reads first: near words suggested, far ones not; values named, never as
//! Rust debug text.

fn error_of(text: &str) -> String {
    callflow_scenario::parse_str(text, "m.yaml")
        .unwrap_err()
        .to_string()
}

fn with_step(step: &str) -> String {
    format!(
        "version: 1\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - command: MakeCall\n        target: bob\n      - {step}\n  bob:\n    dn: \"200\"\n    steps:\n      - event: INCOMING\n"
    )
}

#[test]
fn did_you_mean_suggests_near_words_only() {
    for (step, hint) in [
        ("command: Relase", Some("did you mean `Release`?")),
        ("command: Anwser", Some("did you mean `Answer`?")),
        ("event: DISCONECTED", Some("did you mean `DISCONNECTED`?")),
        ("event: CONNECTED", None),
        ("command: SendBye", None),
    ] {
        let err = error_of(&with_step(step));
        match hint {
            Some(h) => assert!(err.contains(h), "{step}: {err}"),
            None => assert!(!err.contains("did you mean"), "{step}: {err}"),
        }
    }
}

#[test]
fn an_unsupported_codec_is_named_not_debug_printed() {
    let text = "version: 1\ninstances:\n  alice:\n    dn: \"100\"\n    codecs: [PCMU, G729]\n    steps:\n      - command: MakeCall\n        target: bob\n  bob:\n    dn: \"200\"\n    steps:\n      - event: INCOMING\n";
    let err = error_of(text);
    assert!(
        err.contains("codec `G729` is not supported; use PCMU, PCMA, G722, OPUS or L16"),
        "{err}"
    );
    assert!(!err.contains("Some("), "{err}");
}

#[test]
fn a_second_incoming_on_a_call_still_up_is_refused_and_one_after_it_ended_is_not() {
    let callee = |steps: &str| {
        format!(
            "version: 1\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - command: MakeCall\n        target: bob\n  bob:\n    dn: \"200\"\n    steps:\n{steps}"
        )
    };
    let err = error_of(&callee(
        "      - event: INCOMING\n      - command: Answer\n      - event: INCOMING\n",
    ));
    assert!(
        err.contains("node `bob.3` (INCOMING) binds `call-1` again while the call node `bob.1` bound to it is still up"),
        "{err}"
    );
    assert!(err.contains("call_id: call-2"), "{err}");
    // Sequential calls, each ended before the next: fine. So is a second call id.
    for steps in [
        "      - event: INCOMING\n      - command: Answer\n      - event: DISCONNECTED\n      - event: INCOMING\n",
        "      - event: INCOMING\n      - command: Answer\n      - event: INCOMING\n        call_id: call-2\n",
    ] {
        callflow_scenario::parse_str(&callee(steps), "m.yaml")
            .unwrap_or_else(|e| panic!("{steps}: {e}"));
    }
}

#[test]
fn requests_outside_calls_say_what_they_need() {
    for (step, want) in [
        (
            "command: Subscribe\n        target: bob",
            "needs the event package to subscribe to (`package: message-summary`",
        ),
        (
            "command: Subscribe\n        package: dialog",
            "needs a target",
        ),
        (
            "command: SendNotify\n        body: x",
            "a NOTIFY needs a `target`",
        ),
        (
            "command: SendUpdate\n        target: bob",
            "`target` is a key of MakeCall, SendInfo, SendMessage, SendOptions (and 2 more), not of SendUpdate",
        ),
        (
            "command: MakeCall\n        target: bob\n        offer: sideways",
            "`offer` is early (SDP in the INVITE, the default) or late (none), not `sideways`",
        ),
        (
            "command: MakeCall\n        target: bob\n        redirects: 99",
            "`redirects` is how many 3xx to follow: a number from 0 (none) to 20",
        ),
        (
            "command: Answer\n        redirects: 2",
            "`redirects` is a key of MakeCall, not of Answer",
        ),
    ] {
        let err = error_of(&with_step(step));
        assert!(err.contains(want), "{step}: {err}");
    }
    // These are fine.
    for step in [
        "command: Subscribe\n        call_id: mwi\n        target: bob\n        package: message-summary\n        expires: 60s",
        "command: SendMessage\n        target: bob\n        body: hi",
        "command: SendNotify\n        target: sip:200@127.0.0.1\n        headers:\n          Event: message-summary",
        "command: SendUpdate",
    ] {
        callflow_scenario::parse_str(&with_step(step), "m.yaml")
            .unwrap_or_else(|e| panic!("{step}: {e}"));
    }
}

#[test]
fn an_instance_100rel_takes_three_words() {
    let text = "version: 1\ninstances:\n  alice:\n    dn: \"100\"\n    100rel: maybe\n    steps:\n      - command: MakeCall\n        target: sip:x@127.0.0.1\n";
    let err = error_of(text);
    assert!(
        err.contains("`100rel` is `maybe`; it takes `supported`, `required` or `off`"),
        "{err}"
    );
}

#[test]
fn a_request_in_a_call_nothing_binds_is_refused_before_the_run() {
    let text = "version: 1\ninstances:\n  alice:\n    dn: \"100\"\n    steps:\n      - command: SendMessage\n        body: hi\n";
    let err = error_of(text);
    assert!(
        err.contains("node `alice.1` (SendMessage) is sent in the call `call-1`, which no MakeCall or INCOMING of `alice` binds")
            && err.contains("give it a `target`"),
        "{err}"
    );
}

#[test]
fn transports_and_tls_settings_are_read_and_their_mistakes_named_where_written() {
    let with = |alice: &str| {
        format!(
            "version: 1\ninstances:\n  alice:\n    dn: \"100\"\n{alice}    steps:\n      - command: MakeCall\n        target: bob\n  bob:\n    dn: \"200\"\n    steps:\n      - event: INCOMING\n"
        )
    };
    let (s, _) = callflow_scenario::parse_with_warnings(
        &with("    transport: TLS\n    tls: {insecure: true, sni: pbx.lab}\n"),
        "m.yaml",
    )
    .expect("valid");
    let alice = &s.instances[0];
    assert_eq!(alice.transport, callflow_scenario::SipTransport::Tls);
    assert!(alice.tls.insecure);
    assert_eq!(alice.tls.sni.as_deref(), Some("pbx.lab"));
    assert_eq!((alice.tls.pos.line, alice.tls.pos.col), (6, 10));

    let err = error_of(&with("    transport: sctp\n"));
    assert!(
        err.contains("m.yaml:5:16")
            && err.contains(
                "`transport`: `sctp` is not a SIP transport; callflow speaks `udp`, `tcp`, `tls`, `ws` or `wss`"
            ),
        "{err}"
    );
    let err = error_of(&with("    transport: tls\n    tls: {cert: me.pem}\n"));
    assert!(
        err.contains("m.yaml:6:10") && err.contains("`tls` has a `cert` but no `key` for it"),
        "{err}"
    );
    assert!(err.contains("`tls.cert` me.pem cannot be read"), "{err}");
    let err = error_of(&with("    transport: tls\n    tls: {verify: false}\n"));
    assert!(err.contains("verify"), "{err}");

    let (s, _) = callflow_scenario::parse_with_warnings(
        &with("    transport: wss\n    ws: {path: /ws, origin: \"https://lab\"}\n"),
        "m.yaml",
    )
    .expect("valid");
    assert_eq!(s.instances[0].ws.path.as_deref(), Some("/ws"));
    assert_eq!(s.instances[0].ws.origin.as_deref(), Some("https://lab"));
    let err = error_of(&with("    transport: ws\n    ws: {path: ws}\n"));
    assert!(
        err.contains("m.yaml:6:16")
            && err.contains("`ws.path` is a URL path starting with `/`, not `ws`"),
        "{err}"
    );
}
