//! The session's logic over scripted dialogs: no socket, no rsipstack endpoint, paused time.

use super::*;
use std::sync::Mutex;
use transport::rsipstack::dialog::dialog::TerminatedReason;
use transport::sip::Response;

/// A dialog that is where the test puts it, and notes what it was asked to send.
#[derive(Clone)]
struct Scripted {
    id: DialogId,
    state: Arc<Mutex<DialogState>>,
    sent: Arc<Mutex<Vec<String>>>,
    /// The peer answers what is sent (else it is gone: the dialog never ends).
    answers: bool,
}

fn response(code: u16) -> Response {
    let text = format!(
        "SIP/2.0 {code} Status\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:a@127.0.0.1>;tag=a\r\nTo: <sip:b@127.0.0.1>;tag=b\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    Response::try_from(text.as_str()).expect("a response")
}

impl Scripted {
    /// A dialog of SIP Call-ID `call_id` that is `calling` (no response yet), `early` (a 180),
    /// `confirmed` or `ended`; `sent` is shared by every dialog of a test.
    fn new(call_id: &str, at: &str, sent: &Arc<Mutex<Vec<String>>>) -> Self {
        let id = DialogId {
            call_id: call_id.into(),
            local_tag: format!("l-{call_id}"),
            remote_tag: format!("r-{call_id}"),
        };
        let state = match at {
            "calling" => DialogState::Calling(id.clone()),
            "early" => DialogState::Early(id.clone(), response(180)),
            "confirmed" => DialogState::Confirmed(id.clone(), response(200)),
            _ => DialogState::Terminated(id.clone(), TerminatedReason::UasBye),
        };
        Self {
            id,
            state: Arc::new(Mutex::new(state)),
            sent: sent.clone(),
            answers: true,
        }
    }

    /// The same, with a peer that is gone.
    fn unanswered(self) -> Self {
        Self {
            answers: false,
            ..self
        }
    }

    /// Sends `what` and ends the dialog, as the peer's answer would.
    fn send(&self, what: &str, reason: TerminatedReason) {
        self.sent
            .lock()
            .expect("sent")
            .push(format!("{what} {}", self.id.call_id));
        if self.answers {
            *self.state.lock().expect("state") = DialogState::Terminated(self.id.clone(), reason);
        }
    }
}

impl Dialog for Scripted {
    fn id(&self) -> DialogId {
        self.id.clone()
    }

    fn state(&self) -> DialogState {
        self.state.lock().expect("state").clone()
    }

    fn invite_cseq(&self) -> Option<u32> {
        Some(1)
    }

    fn bye(&self) -> impl Future<Output = transport::rsipstack::Result<()>> + Send {
        self.send("BYE", TerminatedReason::UacBye);
        std::future::ready(Ok(()))
    }

    fn cancel(&self) -> impl Future<Output = transport::rsipstack::Result<()>> + Send {
        self.send("CANCEL", TerminatedReason::UacCancel);
        std::future::ready(Ok(()))
    }

    fn reject(&self, code: u16) -> transport::rsipstack::Result<()> {
        self.send(&code.to_string(), TerminatedReason::UasBusy);
        Ok(())
    }
}

fn reports(s: &Sessions<Scripted>) -> Arc<Mutex<Vec<Observed>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let into = seen.clone();
    s.observe(Box::new(move |o| into.lock().expect("seen").push(o)));
    seen
}

#[test]
fn each_iteration_has_its_own_call_1_on_the_same_ua() {
    let sent = Arc::default();
    let s = Sessions::<Scripted>::new();
    let first = s.insert_outgoing(0, Some((0, "call-1")), Scripted::new("a", "early", &sent));
    let second = s.insert_outgoing(0, Some((1, "call-1")), Scripted::new("b", "early", &sent));
    assert_eq!(s.get(0, 0, "call-1").map(|c| c.key), Some(first.key));
    assert_eq!(s.get(0, 1, "call-1").map(|c| c.key), Some(second.key));
    assert!(s.get(1, 0, "call-1").is_none(), "another UA's");
    assert_eq!(second.binding(), Some((1, "call-1".to_owned())));
}

#[test]
fn every_binding_and_every_new_event_is_reported_in_order() {
    let sent = Arc::default();
    let s = Sessions::<Scripted>::new();
    let seen = reports(&s);
    let call = s.insert_outgoing(2, Some((0, "call-1")), Scripted::new("a", "early", &sent));
    assert!(call.push(CallEvent::Confirmed { code: 200 }));
    // rsipstack says Confirmed again after some requests: not news, not reported.
    assert!(!call.push(CallEvent::Confirmed { code: 200 }));
    let moved = s.insert_outgoing(2, None, Scripted::new("b", "confirmed", &sent));
    s.rebind(2, 0, "call-1", &moved);
    let seen = seen.lock().expect("seen").clone();
    assert_eq!(
        seen,
        [
            Observed::Bound {
                call: call.key,
                ua: 2,
                iteration: 0,
                name: "call-1".into(),
                role: Role::Outgoing
            },
            Observed::Event {
                call: call.key,
                event: CallEvent::Confirmed { code: 200 }
            },
            Observed::Bound {
                call: moved.key,
                ua: 2,
                iteration: 0,
                name: "call-1".into(),
                role: Role::Outgoing
            },
        ]
    );
    assert_eq!(s.get(2, 0, "call-1").map(|c| c.key), Some(moved.key));
}

#[test]
fn an_incoming_call_is_taken_in_the_iteration_of_its_incoming_node() {
    let sent = Arc::default();
    let s = Sessions::<Scripted>::new();
    let seen = reports(&s);
    let rang = s.insert_incoming(1, Scripted::new("a", "early", &sent), None, |c| {
        c.push(CallEvent::Provisional {
            code: 180,
            reason: "Ringing".into(),
        });
    });
    let taken = s.take_incoming(1, rang.key, 3, "call-1").expect("held");
    assert_eq!(taken.key, rang.key);
    assert_eq!(taken.binding(), Some((3, "call-1".to_owned())));
    // The 180 sent before it was held, then that it is held (for the flow to give to an
    // INCOMING), then the binding.
    let seen = seen.lock().expect("seen").clone();
    assert!(matches!(&seen[0], Observed::Event { call, .. } if *call == rang.key));
    assert_eq!(
        seen[1],
        Observed::Arrived {
            call: rang.key,
            ua: 1,
            iteration: None,
        }
    );
    assert!(
        matches!(
            &seen[2],
            Observed::Bound {
                iteration: 3,
                role: Role::Incoming,
                ..
            }
        ),
        "{seen:?}"
    );
    // Taken: it can no longer be withdrawn and refused, nor taken again.
    assert!(!s.withdraw_incoming(1, &taken));
    assert!(s.take_incoming(1, rang.key, 4, "call-1").is_none());
    // One refused before any INCOMING took it is no longer held.
    let other = s.insert_incoming(1, Scripted::new("b", "early", &sent), None, |_| {});
    assert!(s.withdraw_incoming(1, &other));
    assert!(s.take_incoming(1, other.key, 3, "call-2").is_none());
}

#[tokio::test(start_paused = true)]
async fn cleanup_hangs_up_every_leg_still_up_in_its_own_way_then_forgets_them() {
    let sent: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = Sessions::<Scripted>::new();
    s.insert_outgoing(0, Some((0, "up")), Scripted::new("up", "confirmed", &sent));
    s.insert_outgoing(
        0,
        Some((0, "ringing-out")),
        Scripted::new("out", "early", &sent),
    );
    s.insert_incoming(1, Scripted::new("in", "early", &sent), None, |_| {});
    s.insert_outgoing(0, Some((0, "over")), Scripted::new("over", "ended", &sent));
    // A Release already sent this one's BYE to a peer that is gone: waited for (what is left
    // of the step's limit), not sent again.
    let gone = Scripted::new("rel", "confirmed", &sent).unanswered();
    let releasing = s.insert_outgoing(0, Some((0, "rel")), gone);
    drop(releasing.start_hang_up(HangupAction::Bye));
    tokio::task::yield_now().await;
    sent.lock().expect("sent").clear();

    let report = s.hangup_all(Duration::from_secs(5)).await;
    let mut asked = sent.lock().expect("sent").clone();
    asked.sort();
    assert_eq!(asked, ["480 in", "BYE up", "CANCEL out"]);
    assert_eq!(
        report.to_string(),
        "1 BYE, 1 CANCEL, 1 rejected, 1 already ended, 1 already under way, 1 still not ended at the limit"
    );
    assert_eq!(s.close_all(&[]), 5);
    assert!(s.is_empty());
    assert!(s.get(0, 0, "up").is_none());
}

/// Under load each iteration's calls go as it ends: the others stay, untouched, and the flow
/// hears that each one went.
#[tokio::test(start_paused = true)]
async fn an_iteration_that_ends_takes_only_its_own_calls_with_it() {
    let sent: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = Sessions::<Scripted>::new();
    let seen = reports(&s);
    let mine = s.insert_outgoing(
        0,
        Some((1, "call-1")),
        Scripted::new("a", "confirmed", &sent),
    );
    s.insert_outgoing(
        0,
        Some((2, "call-1")),
        Scripted::new("b", "confirmed", &sent),
    );
    let held = s.insert_incoming(1, Scripted::new("c", "early", &sent), Some(1), |_| {});
    let report = s.end_iteration(1, Duration::from_secs(5), &[]).await;
    assert_eq!(sent.lock().expect("sent").clone(), ["BYE a"]);
    assert_eq!(
        report.to_string(),
        "1 BYE, 0 CANCEL, 0 rejected, 0 already ended"
    );
    assert!(s.get(0, 1, "call-1").is_none());
    assert!(s.get(0, 2, "call-1").is_some(), "iteration 2's call stays");
    assert_eq!(
        s.len(),
        2,
        "iteration 2's call and the INVITE no INCOMING took"
    );
    assert!(s.by_dialog(0, &mine.dialog.id).is_none());
    assert!(
        seen.lock()
            .expect("seen")
            .contains(&Observed::Closed { call: mine.key })
    );
    assert!(s.take_incoming(1, held.key, 1, "call-1").is_some());
}

#[test]
fn a_replaces_finds_its_call_whichever_way_round_the_tags_come() {
    let sent = Arc::default();
    let s = Sessions::<Scripted>::new();
    let call = s.insert_outgoing(
        0,
        Some((0, "call-1")),
        Scripted::new("x", "confirmed", &sent),
    );
    for (a, b) in [("l-x", "r-x"), ("r-x", "l-x")] {
        assert_eq!(s.find_replaced(0, "x", a, b).map(|c| c.key), Some(call.key));
    }
    assert!(
        s.find_replaced(1, "x", "l-x", "r-x").is_none(),
        "another UA's"
    );
    assert!(s.find_replaced(0, "x", "l-x", "other").is_none());
}

#[test]
fn a_calls_phase_and_leg_follow_its_dialog() {
    let sent = Arc::default();
    let s = Sessions::<Scripted>::new();
    let table = [
        ("calling", Phase::Calling, LegState::Early, true),
        ("early", Phase::Early, LegState::Early, false),
        ("confirmed", Phase::Confirmed, LegState::Confirmed, false),
        ("ended", Phase::Ended, LegState::Terminated, false),
    ];
    for (at, phase, leg, unanswered) in table {
        let call = s.insert_outgoing(0, None, Scripted::new(at, at, &sent));
        assert_eq!(
            (call.phase(), call.leg_state(), call.unanswered()),
            (phase, leg, unanswered),
            "{at}"
        );
    }
    let id = DialogId {
        call_id: "w".into(),
        local_tag: "l".into(),
        remote_tag: "r".into(),
    };
    // Our 2xx is out, its ACK not in: hanging up means BYE.
    let answered = Phase::of(&DialogState::WaitAck(id, response(200)));
    assert_eq!(
        (answered, answered.leg()),
        (Phase::Answered, LegState::Confirmed)
    );
}
