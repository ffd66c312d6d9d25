//! What arrives at a UA: new requests (routed by the router task) and dialog state changes
//! (turned into call events by the state task), including the transferee's side of a REFER and
//! the target's side of an INVITE with Replaces.

use crate::calls::{CallOptions, sdp_header};
use crate::ua::UaShared;
use events::Level;
use flow::routing::{InDialog, OutOfDialog};
use media::sdp;
use session::{Call, CallEvent, HangupAction, LegState};
use std::sync::Arc;
use transport::rsipstack::dialog::DialogId;
use transport::rsipstack::dialog::dialog::{
    Dialog, DialogState, DialogStateReceiver, TransactionHandle,
};
use transport::rsipstack::dialog::invite_dialog::InviteDialog;
use transport::rsipstack::transaction::TransactionReceiver;
use transport::rsipstack::transaction::transaction::Transaction;
use transport::sip::prelude::HeadersExt;
use transport::sip::{Header, Method, Request, StatusCode, Uri};

/// How long a re-INVITE may wait for the ACK of the INVITE before it (RFC 3261's T2 would do;
/// in practice the ACK is already in).
const ACK_GRACE: std::time::Duration = std::time::Duration::from_secs(4);

/// The value of the first header of `req` called `name` (case-insensitive).
pub(crate) fn header(req: &Request, name: &str) -> Option<String> {
    header_in(&req.headers, name)
}

/// The value of the first of `headers` called `name` (case-insensitive).
pub(crate) fn header_in(headers: &transport::sip::Headers, name: &str) -> Option<String> {
    headers
        .iter()
        .find(|h| h.name().eq_ignore_ascii_case(name))
        .map(|h| h.value().to_owned())
}

/// The RSeq of a call's first reliable provisional response: unpredictable, and below 2**31 less
/// the room for many more (RFC 3262 §3).
fn first_rseq() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.subsec_nanos());
    1 + nanos.wrapping_mul(2_654_435_761) % (1 << 30)
}

/// A Replaces value (RFC 3891): `call-id;to-tag=X;from-tag=Y`.
fn parse_replaces(v: &str) -> Option<(String, String, String)> {
    let mut parts = v.split(';');
    let call_id = parts.next()?.trim().to_owned();
    let (mut to, mut from) = (None, None);
    for p in parts {
        match p.trim().split_once('=') {
            Some((k, val)) if k.eq_ignore_ascii_case("to-tag") => to = Some(val.to_owned()),
            Some((k, val)) if k.eq_ignore_ascii_case("from-tag") => from = Some(val.to_owned()),
            _ => {}
        }
    }
    Some((call_id, to?, from?))
}

/// Answers an in-dialog request for a call that has ended (our own BYE went out, say while the
/// peer's crossed it, as cleanup does on both sides of a call between our own UAs); rsipstack
/// would drop it unanswered and leave the peer retransmitting. A crossing BYE gets its 200,
/// anything else but an ACK 481. Returns whether it answered.
async fn answered_as_ended(call: Option<&Call>, tx: &mut Transaction) -> bool {
    let ended = call.is_some_and(|c| c.leg_state() == LegState::Terminated);
    if !ended {
        return false;
    }
    let Some(code) = flow::routing::answer_for_ended_call(&tx.original.method.to_string()) else {
        return false;
    };
    let _ = tx.reply(StatusCode::from(code)).await;
    true
}

/// A sipfrag NOTIFY about a REFER (RFC 3515): the status code and whether it is the last.
pub(crate) fn refer_progress(req: &Request) -> Option<(u16, bool)> {
    let event = header(req, "Event")?;
    if !event.to_ascii_lowercase().starts_with("refer") {
        return None;
    }
    let last = header(req, "Subscription-State")
        .is_some_and(|s| s.to_ascii_lowercase().starts_with("terminated"));
    let body = std::str::from_utf8(&req.body).ok()?;
    let code = body
        .lines()
        .find(|l| l.starts_with("SIP/2.0"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((code, last))
}

/// Sends a sipfrag NOTIFY on `dialog` about the REFER it received.
async fn notify_sipfrag(dialog: &InviteDialog, code: u16, reason: &str, last: bool) {
    let state = if last {
        "terminated;reason=noresource"
    } else {
        "active;expires=60"
    };
    let headers = vec![
        Header::Event("refer".into()),
        Header::SubscriptionState(state.into()),
        Header::ContentType("message/sipfrag;version=2.0".into()),
    ];
    let body = format!("SIP/2.0 {code} {reason}\r\n").into_bytes();
    if let Err(e) = dialog.notify(Some(headers), Some(body)).await {
        tracing::debug!(error = %e, "NOTIFY about the transfer failed");
    }
}

impl UaShared {
    /// Routes every new server transaction: in-dialog requests to their dialog, new INVITEs to
    /// the session store (held with 100/180 until a node answers or rejects them).
    pub(crate) async fn route_requests(self: Arc<Self>, mut incoming: TransactionReceiver) {
        while let Some(mut tx) = incoming.recv().await {
            let method = tx.original.method;
            let in_dialog = tx
                .original
                .to_header()
                .ok()
                .and_then(|h| h.tag().ok().flatten())
                .is_some();
            if in_dialog {
                // Our own calls first: rsipstack registers a UAC dialog under its confirmed id
                // only after the INVITE task ends, so a request the callee sends right after its
                // ACK would find nothing there.
                let call = DialogId::try_from(&tx)
                    .ok()
                    .and_then(|id| self.sessions.by_dialog(self.idx, &id));
                // A NOTIFY (or any request) in one of our subscriptions.
                if call.is_none() && self.in_subscription(&mut tx).await {
                    continue;
                }
                let known = call
                    .as_ref()
                    .filter(|c| c.leg_state() != LegState::Terminated)
                    .map(|c| Dialog::Invite(c.dialog.clone()))
                    .or_else(|| self.dialogs.match_dialog(&tx));
                let decision = flow::routing::in_dialog(
                    &method.to_string(),
                    call.as_ref().map(|c| c.leg_state()),
                    known.is_some(),
                );
                match (decision, known) {
                    (InDialog::NotAllowed, _) => {
                        self.log(
                            Level::Warning,
                            None,
                            call.as_ref().and_then(|c| c.name()).as_deref(),
                            format!("{method} in a call is not supported: 405"),
                        );
                        let _ = tx
                            .reply_with(StatusCode::MethodNotAllowed, crate::calls::allow(), None)
                            .await;
                    }
                    (InDialog::Ended(code), _) | (InDialog::Unknown(code @ None), _) => {
                        if let Some(code) = code {
                            let _ = tx.reply(StatusCode::from(code)).await;
                        }
                    }
                    (InDialog::Prack, _) => {
                        if let Some(c) = &call {
                            self.on_prack(c, &mut tx).await;
                        }
                    }
                    (InDialog::Dialog | InDialog::DialogWhenConfirmed, Some(mut d)) => {
                        let wait = (decision == InDialog::DialogWhenConfirmed)
                            .then(|| call.clone())
                            .flatten();
                        self.spawn(async move {
                            if let Some(c) = &wait {
                                let confirmed = c.wait(
                                    |e| {
                                        matches!(
                                            e,
                                            CallEvent::Confirmed { .. }
                                                | CallEvent::Terminated { .. }
                                        )
                                    },
                                    false,
                                );
                                let _ = tokio::time::timeout(ACK_GRACE, confirmed).await;
                            }
                            // Or ended meanwhile (our own BYE went out).
                            if !answered_as_ended(call.as_deref(), &mut tx).await {
                                let _ = d.handle(&mut tx).await;
                            }
                        });
                    }
                    (InDialog::Unknown(Some(code)), _) => {
                        self.log(
                            Level::Warning,
                            None,
                            None,
                            format!("{method} for a dialog this UA does not know: {code}"),
                        );
                        let _ = tx.reply(StatusCode::from(code)).await;
                    }
                    // The flow hands a request to the dialog only when one is known.
                    (InDialog::Dialog | InDialog::DialogWhenConfirmed, None) => {
                        let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await;
                    }
                }
                continue;
            }
            match flow::routing::out_of_dialog(&method.to_string()) {
                OutOfDialog::Invite => {
                    self.spawn(self.clone().on_invite(tx));
                }
                OutOfDialog::Capabilities => {
                    let _ = tx
                        .reply_with(
                            StatusCode::OK,
                            crate::calls::capabilities(self.rel100, true),
                            None,
                        )
                        .await;
                }
                OutOfDialog::Ignore => {}
                // A MESSAGE, an unsolicited NOTIFY (message-waiting), an INFO: taken.
                OutOfDialog::Take => {
                    self.outside_any_dialog(&mut tx).await;
                }
                OutOfDialog::NoCall => {
                    self.log(
                        Level::Warning,
                        None,
                        None,
                        format!("{method} for no known call: 481"),
                    );
                    let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await;
                }
                OutOfDialog::NotAllowed => {
                    self.log(
                        Level::Warning,
                        None,
                        None,
                        format!("{method} outside a dialog is not handled: 405"),
                    );
                    let _ = tx
                        .reply_with(StatusCode::MethodNotAllowed, crate::calls::allow(), None)
                        .await;
                }
            }
        }
    }

    /// A PRACK must match the reliable provisional response it acknowledges (RFC 3262 §3);
    /// rsipstack would answer any PRACK with an RAck 200. Answered here, not by rsipstack: its
    /// dialog drops a request whose CSeq is below the last one seen, and a PRACK handled after
    /// the UPDATE or re-INVITE right behind it (each runs on a task of its own) would go
    /// unanswered. Counted once answered: what waits for it (our 200, the next reliable 18x)
    /// comes after its 200.
    async fn on_prack(&self, c: &Call, tx: &mut Transaction) {
        let rack = crate::rel100::rack(&tx.original);
        let matched = rack.map(|(rseq, cseq)| c.prack(rseq, cseq, false));
        if !matches!(matched, Some(session::Prack::Acked | session::Prack::Again)) {
            self.log(
                Level::Warning,
                None,
                c.name().as_deref(),
                format!(
                    "PRACK with RAck {} matches no reliable provisional response of this call: 481",
                    header(&tx.original, "RAck").unwrap_or_default()
                ),
            );
            let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await;
            return;
        }
        let _ = tx.reply(StatusCode::OK).await;
        if let Some((rseq, cseq)) = rack {
            c.prack(rseq, cseq, true);
        }
    }

    async fn on_invite(self: Arc<Self>, mut tx: Transaction) {
        // An extension we lack (420) or 100rel missing where we require it (421).
        if self.refuse_extensions(&mut tx).await {
            return;
        }
        // A session interval below our Min-SE (RFC 4028 §8.1).
        if let crate::session_timer::UasDecision::TooSmall { min_se } =
            crate::session_timer::uas_decide(&tx.original, self.min_se)
        {
            self.log(
                Level::Warning,
                None,
                None,
                format!(
                    "the INVITE asks for a session interval below our Min-SE of {min_se} s: 422"
                ),
            );
            let _ = tx
                .reply_with(
                    StatusCode::SessionIntervalTooSmall,
                    crate::session_timer::too_small_headers(min_se),
                    None,
                )
                .await;
            return;
        }
        let reliable = matches!(
            crate::rel100::intake(self.rel100, &tx.original),
            crate::rel100::Intake::Take { reliable: true }
        );
        let replaces = header(&tx.original, "Replaces");
        let d = match self.dialogs.get_or_create_server_invite(
            &tx,
            self.state_tx.clone(),
            None,
            Some(self.contact_for(&tx.original.uri)),
        ) {
            Ok(d) => d,
            Err(e) => {
                self.log(
                    Level::Error,
                    None,
                    None,
                    format!("cannot take the INVITE: {e}"),
                );
                let _ = tx.reply(StatusCode::ServerInternalError).await;
                return;
            }
        };
        let _ = tx.send_trying().await;
        let from = tx
            .original
            .from_header()
            .map(|h| h.value().to_string())
            .unwrap_or_default();
        if let Some(rep) = replaces {
            self.on_replaces(&d, &rep, &from);
        } else {
            let iteration = header(&tx.original, crate::ua::ITERATION_HEADER)
                .and_then(|t| self.iteration_of(&t));
            let call = self
                .sessions
                .insert_incoming(self.idx, d.clone(), iteration, |call| {
                    self.log(
                        Level::Info,
                        None,
                        None,
                        format!("incoming call {} from {from}", call.sip_call_id()),
                    );
                    if reliable {
                        call.make_provisionals_reliable(first_rseq());
                    }
                    if self.auto_ringing {
                        // Queued on the INVITE transaction before any node can answer.
                        let _ = self.provisional_now(call, None);
                    }
                });
            drop(call);
            // The UA's sweeper refuses it if no node takes it in time.
            self.unclaimed_wake.notify_one();
        }
        let mut d = d;
        if let Err(e) = d.handle(&mut tx).await {
            self.log(
                Level::Warning,
                None,
                None,
                format!("incoming INVITE transaction ended with an error: {e}"),
            );
        }
    }

    /// An INVITE that no INCOMING node takes within the hold ([`crate::Limits::unclaimed_invite`])
    /// is answered 480, so calls nobody expects cannot pile up for the whole run. One task per
    /// UA sleeps until the oldest held INVITE's hold is over (or, with none held, until one
    /// comes): a call costs no task and no timer of its own.
    pub(crate) async fn sweep_unclaimed(self: Arc<Self>) {
        loop {
            let now = std::time::Instant::now();
            let mut next: Option<std::time::Instant> = None;
            for call in self.sessions.held(self.idx) {
                let due = call.created + self.unclaimed_invite;
                if due <= now {
                    self.refuse_unclaimed(call);
                } else {
                    next = Some(next.map_or(due, |n| n.min(due)));
                }
            }
            // An INVITE held after the scan is due after `next`, so only an empty scan waits
            // for one (a notification sent meanwhile is kept: the wait ends at once).
            match next {
                Some(due) => tokio::time::sleep_until(due.into()).await,
                None => self.unclaimed_wake.notified().await,
            }
        }
    }

    fn refuse_unclaimed(self: &Arc<Self>, call: Arc<Call>) {
        if call.leg_state() != LegState::Early || !self.sessions.withdraw_incoming(self.idx, &call)
        {
            return;
        }
        let from = call
            .dialog
            .initial_request()
            .from_header()
            .map(|h| h.value().to_string())
            .unwrap_or_default();
        self.log(
            Level::Warning,
            None,
            None,
            format!(
                "incoming call {} from {from}: no INCOMING node took it within {} s: 480",
                call.sip_call_id(),
                self.unclaimed_invite.as_secs_f64()
            ),
        );
        self.spawn(async move {
            let _ = call.start_hang_up(HangupAction::Reject(480)).await;
        });
    }

    /// An INVITE with Replaces (RFC 3891): it takes the place of the call it names, which keeps
    /// its logical call id; the new call is answered at once and the old one gets a BYE.
    fn on_replaces(&self, d: &InviteDialog, value: &str, from: &str) {
        let found = parse_replaces(value)
            .and_then(|(cid, to, fr)| self.sessions.find_replaced(self.idx, &cid, &to, &fr));
        let Some(old) = found.filter(|c| c.leg_state() != LegState::Terminated) else {
            self.log(
                Level::Warning,
                None,
                None,
                format!("INVITE with Replaces: {value} names no call of this UA: 481"),
            );
            let _ = d.reject(Some(StatusCode::CallTransactionDoesNotExist), None);
            return;
        };
        let (iteration, name) = old.binding().unwrap_or((0, "replaced".to_owned()));
        let call = self.sessions.insert_bound(
            self.idx,
            session::Role::Incoming,
            d.clone(),
            iteration,
            &name,
        );
        match self.answer_sdp(&call) {
            Ok(answer) => {
                let _ = d.accept(
                    Some(crate::calls::with_capabilities(
                        self.rel100,
                        vec![sdp_header()],
                    )),
                    Some(answer.into_bytes()),
                );
            }
            Err(e) => {
                let _ = d.reject(
                    Some(StatusCode::NotAcceptableHere),
                    Some(crate::calls::reason_value(488, &e)),
                );
                return;
            }
        }
        self.log(
            Level::Info,
            None,
            Some(&name),
            format!("call from {from} replaces {} (Replaces)", old.sip_call_id()),
        );
        // On both: a wait that started before the swap holds the old call, one after it the new.
        call.push(CallEvent::Replaced);
        old.mark_superseded();
        old.push(CallEvent::Replaced);
        if old.leg_state() == LegState::Confirmed && !old.hangup_started() {
            // Runs on its own task; the BYE's answer is not awaited here.
            drop(old.start_hang_up(HangupAction::Bye));
        }
    }

    /// Feeds dialog state changes to the session store, answers mid-dialog requests, and removes
    /// ended dialogs from rsipstack's dialog layer (it keeps them until told).
    pub(crate) async fn route_states(self: Arc<Self>, mut rx: DialogStateReceiver) {
        while let Some(state) = rx.recv().await {
            let applied = self.sessions.apply(self.idx, &state);
            let (call, added) = match applied {
                Some((c, e)) => (Some(c), e),
                None => (None, None),
            };
            let name = call.as_ref().and_then(|c| c.name());
            match state {
                DialogState::Early(_, resp) => {
                    // A caller's answer is the first SDP it receives, a 183's included.
                    if let Some(c) = call.as_ref().filter(|c| c.role == session::Role::Outgoing) {
                        c.first_remote_sdp(&resp.body);
                    }
                }
                DialogState::Confirmed(_, resp) => {
                    // The ACK of a re-INVITE we put our offer in brings the answer.
                    if let Some(c) = call.as_ref().filter(|c| c.media().is_some())
                        && c.take_answer_in_ack()
                    {
                        match c.dialog.last_remote_ack().map(|ack| ack.body) {
                            Some(answer) if !answer.trim_ascii().is_empty() => {
                                let answer = String::from_utf8_lossy(&answer);
                                self.apply_remote_sdp(c, &answer);
                            }
                            _ => self.log(
                                Level::Warning,
                                None,
                                name.as_deref(),
                                "the re-INVITE had no offer and its ACK no answer to ours (RFC 3264 §4): the media stays as it was".into(),
                            ),
                        }
                    }
                    if let Some(c) = call.as_ref().filter(|c| c.media().is_none()) {
                        // Outgoing: the answer is the first SDP received (a 183's, else the
                        // 2xx's); incoming: the offer was in the INVITE, or, for a late offer,
                        // ours went in the 2xx and the answer is in the ACK.
                        let late = crate::calls::late_offer(c);
                        let remote = match c.role {
                            session::Role::Outgoing => {
                                let first = c.first_remote_sdp(&resp.body);
                                if !resp.body.trim_ascii().is_empty()
                                    && resp.body.trim_ascii() != first.trim_ascii()
                                {
                                    self.log(
                                        Level::Warning,
                                        None,
                                        name.as_deref(),
                                        format!(
                                            "the {}'s SDP differs from the one a provisional response brought first; the first stays the answer (RFC 3261 §13.2.1: the same answer in both)",
                                            resp.status_code.code()
                                        ),
                                    );
                                }
                                first
                            }
                            session::Role::Incoming if late => c
                                .dialog
                                .last_remote_ack()
                                .map(|ack| ack.body)
                                .unwrap_or_default(),
                            session::Role::Incoming => c.dialog.initial_request().body,
                        };
                        if remote.trim_ascii().is_empty() && late {
                            self.log(
                                Level::Warning,
                                None,
                                name.as_deref(),
                                "the INVITE had no offer and the ACK no answer to ours (RFC 3264 §4): no media".into(),
                            );
                        } else {
                            self.start_media(c, &String::from_utf8_lossy(&remote));
                        }
                    }
                }
                DialogState::Terminated(id, _) => {
                    if let Some(c) = &call {
                        self.stop_media(c);
                        // A late-offer call that ended before its 2xx waits for no answer.
                        self.late_unanswered(c);
                    }
                    self.dialogs.remove_dialog(&id);
                    if let Some(c) = &call {
                        for id in c.dialog_ids() {
                            self.dialogs.remove_dialog(&id);
                        }
                    }
                    if let Some(ev) = &added {
                        self.log(Level::Info, None, name.as_deref(), ev.describe());
                    }
                }
                DialogState::Updated(_, req, handle) => {
                    self.on_offer(call.as_ref(), &req, handle).await
                }
                DialogState::Refer(_, req, handle) => match call {
                    Some(c) => self.clone().on_refer(c, &req, handle).await,
                    None => {
                        let _ = handle.reply(StatusCode::CallTransactionDoesNotExist).await;
                    }
                },
                DialogState::Notify(_, req, handle) => {
                    let _ = handle.reply(StatusCode::OK).await;
                    if let Some(c) = &call {
                        let ev = match refer_progress(&req) {
                            Some((code, last)) => CallEvent::ReferProgress { code, last },
                            None => received(&req),
                        };
                        self.log(Level::Info, None, name.as_deref(), ev.describe());
                        c.push(ev);
                    }
                }
                DialogState::Info(_, req, handle)
                | DialogState::Message(_, req, handle)
                | DialogState::Options(_, req, handle) => {
                    let caps = (req.method == Method::Options)
                        .then(|| crate::calls::capabilities(self.rel100, true));
                    let _ = handle.respond(StatusCode::OK, caps, None).await;
                    if let Some(c) = &call {
                        // DTMF in SIP INFO joins the digits RFC 4733 brings.
                        let ct = header(&req, "Content-Type");
                        if let Some(d) = transport::sip::event_packages::parse_info_dtmf(
                            ct.as_deref(),
                            &req.body,
                        )
                        .and_then(media::dtmf::digit_of)
                            && let Some(m) = c.media()
                        {
                            m.push_digit(d);
                        }
                        let ev = received(&req);
                        self.log(Level::Info, None, name.as_deref(), ev.describe());
                        c.push(ev);
                    }
                }
                DialogState::Publish(_, req, handle) => {
                    self.log(
                        Level::Warning,
                        None,
                        name.as_deref(),
                        format!("{} in a call is not supported: 501", req.method),
                    );
                    let _ = handle.reply(StatusCode::NotImplemented).await;
                }
                _ => {}
            }
        }
    }

    /// A re-INVITE or UPDATE: answer its offer with our SDP in the matching direction, and
    /// record HELD / RETRIEVED when the peer puts us on or off hold.
    async fn on_offer(
        self: &Arc<Self>,
        call: Option<&Arc<Call>>,
        req: &Request,
        handle: TransactionHandle,
    ) {
        let Some(call) = call else {
            let _ = handle.reply(StatusCode::CallTransactionDoesNotExist).await;
            return;
        };
        // A session refresh (RFC 4028 §9): our 2xx says the interval and who refreshes next.
        let timer = crate::session_timer::uas_decide(req, self.min_se);
        if let crate::session_timer::UasDecision::TooSmall { min_se } = timer {
            let _ = handle
                .respond(
                    StatusCode::SessionIntervalTooSmall,
                    Some(crate::session_timer::too_small_headers(min_se)),
                    None,
                )
                .await;
            return;
        }
        let ours = call
            .local_sdp()
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let offer = String::from_utf8_lossy(&req.body).into_owned();
        let (status, body) = match (ours, offer.trim().is_empty()) {
            // An offer-less re-INVITE: our SDP is the offer, the ACK carries the answer.
            (Some(ours), true) => {
                if req.method == Method::Invite {
                    call.expect_answer_in_ack();
                }
                (StatusCode::OK, Some(ours))
            }
            (Some(ours), false) => match sdp::reanswer(&offer, &ours, &self.codecs) {
                Ok(answer) => {
                    let dir = sdp::offered_direction(&offer);
                    self.apply_remote_sdp(call, &offer);
                    call.set_local_sdp(answer.clone().into_bytes());
                    self.note_hold(call, dir);
                    (StatusCode::OK, Some(answer))
                }
                // RFC 3261 §14.2: the call goes on as it was.
                Err(e) => {
                    self.log(
                        Level::Warning,
                        None,
                        call.name().as_deref(),
                        format!(
                            "the {}'s new offer cannot be taken ({e}): 488, the call goes on as it was",
                            req.method
                        ),
                    );
                    (StatusCode::NotAcceptableHere, None)
                }
            },
            (None, _) => (StatusCode::NotAcceptableHere, None),
        };
        let mut headers = body
            .as_ref()
            .map(|_| vec![sdp_header()])
            .unwrap_or_default();
        if status == StatusCode::OK
            && let Some(t) = timer.timer()
        {
            headers.extend(crate::session_timer::agreed_headers(&timer));
            self.keep_session_timer(call, t);
        }
        // Any 2xx to a re-INVITE or UPDATE refreshes the session (RFC 4028 §10), one without a
        // Session-Expires of its own too.
        if status == StatusCode::OK
            && timer == crate::session_timer::UasDecision::None
            && let Some(t) = call.session_timer()
        {
            call.set_session_timer(t);
        }
        let _ = handle
            .respond(status, Some(headers), body.map(String::into_bytes))
            .await;
    }

    /// Records HELD / RETRIEVED when an offer in direction `dir` puts us on or off hold.
    fn note_hold(&self, call: &Call, dir: sdp::Direction) {
        if dir.is_hold() == call.held_by_peer() {
            return;
        }
        call.set_held_by_peer(dir.is_hold());
        let ev = if dir.is_hold() {
            CallEvent::Held
        } else {
            CallEvent::Retrieved
        };
        self.log(
            Level::Info,
            None,
            call.name().as_deref(),
            format!("{} ({} offered)", ev.describe(), dir.as_str()),
        );
        call.push(ev);
    }

    /// The transferee's side of a REFER (RFC 3515): accept it, call the Refer-To target (with
    /// Replaces when it carries one), report progress with NOTIFYs, and when the new call is
    /// answered, move the logical call id to it.
    async fn on_refer(self: Arc<Self>, call: Arc<Call>, req: &Request, handle: TransactionHandle) {
        let Some(refer_to) = header(req, "Refer-To") else {
            let _ = handle.reply(StatusCode::BadRequest).await;
            return;
        };
        let target = transport::sip::event_packages::parse_refer_to(&refer_to);
        let Ok(uri) = Uri::try_from(target.uri.as_str()) else {
            self.log(
                Level::Warning,
                None,
                call.name().as_deref(),
                format!("REFER to an unreadable target {refer_to}: 400"),
            );
            let _ = handle.reply(StatusCode::BadRequest).await;
            return;
        };
        let _ = handle.reply(StatusCode::Accepted).await;
        call.push(CallEvent::Referred {
            to: target.uri.clone(),
        });
        let (iteration, name) = call.binding().unwrap_or((0, "transferred".to_owned()));
        self.log(
            Level::Info,
            None,
            Some(&name),
            format!("REFER: transferring to {}", target.uri),
        );
        let mut headers = Vec::new();
        if let Some(r) = &target.replaces {
            headers.push(Header::Replaces(r.as_str().into()));
        }
        if let Some(by) = header(req, "Referred-By") {
            headers.push(Header::ReferredBy(by.into()));
        }
        // Under load, the transfer's INVITE belongs to the transferred call's iteration: the
        // target's INCOMING of that iteration takes it.
        if iteration != 0 {
            headers.push(crate::calls::make_header(
                crate::ua::ITERATION_HEADER,
                &self.iteration_tag(iteration),
            ));
        }
        let me = self.clone();
        self.spawn(async move {
            notify_sipfrag(&call.dialog, 100, "Trying", false).await;
            let outcome = match me.place_call(
                None,
                uri,
                CallOptions {
                    headers,
                    ..CallOptions::default()
                },
            ) {
                Ok((new_call, join)) => match join.await {
                    Ok(Ok((_, Some(resp)))) => Ok((
                        new_call,
                        resp.status_code.code(),
                        resp.status_code.text().to_owned(),
                    )),
                    Ok(Ok((_, None))) => Err((new_call, 500, "No Final Response".to_owned())),
                    Ok(Err(e)) => Err((new_call, 408, e.to_string())),
                    Err(e) => Err((new_call, 500, e.to_string())),
                },
                Err(e) => {
                    me.log(
                        Level::Error,
                        None,
                        Some(&name),
                        format!("transfer INVITE not sent: {e}"),
                    );
                    notify_sipfrag(&call.dialog, 503, "Service Unavailable", true).await;
                    return;
                }
            };
            match outcome {
                Ok((new_call, code, reason)) if (200..300).contains(&code) => {
                    me.sessions.rebind(me.idx, iteration, &name, &new_call);
                    call.mark_superseded();
                    let ev = CallEvent::Transferred {
                        to: target.uri.clone(),
                    };
                    me.log(Level::Info, None, Some(&name), ev.describe());
                    new_call.push(ev.clone());
                    call.push(ev);
                    notify_sipfrag(&call.dialog, code, &reason, true).await;
                }
                Ok((_, code, reason)) | Err((_, code, reason)) => {
                    me.log(
                        Level::Warning,
                        None,
                        Some(&name),
                        format!("transfer to {} failed: {code} {reason}", target.uri),
                    );
                    notify_sipfrag(&call.dialog, code, &reason, true).await;
                }
            }
        });
    }
}

/// An in-dialog request as a call event.
pub(crate) fn received(req: &Request) -> CallEvent {
    CallEvent::Request {
        method: req.method.to_string(),
        content_type: header(req, "Content-Type"),
        body: String::from_utf8_lossy(&req.body).into_owned(),
        headers: crate::checks::headers_of(&req.headers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_values_parse_in_any_order() {
        assert_eq!(
            parse_replaces("abc@h;to-tag=1;from-tag=2"),
            Some(("abc@h".into(), "1".into(), "2".into()))
        );
        assert_eq!(
            parse_replaces("abc@h;from-tag=2;early-only;to-tag=1"),
            Some(("abc@h".into(), "1".into(), "2".into()))
        );
        assert_eq!(parse_replaces("abc@h;to-tag=1"), None);
    }
}
