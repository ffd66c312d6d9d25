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
        err.contains("codec `G729` is not supported; use PCMU or PCMA"),
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
