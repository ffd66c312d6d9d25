//! One call (an INVITE dialog) and its latched event log.

use crate::UaIdx;
use flow::{HangupAction, LegState};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use tokio::sync::watch;
use transport::rsipstack::dialog::DialogId;
use transport::rsipstack::dialog::dialog::{DialogState, TerminatedReason};
use transport::rsipstack::dialog::invite_dialog::InviteDialog;
use transport::sip::StatusCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallKey(pub u64);

pub use flow::Role;

/// Something that happened to a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallEvent {
    /// A 1xx (other than 100) was received (outgoing) or sent (incoming).
    Provisional { code: u16, reason: String },
    /// The incoming call was answered with 2xx; the ACK is awaited.
    Answered,
    /// Outgoing: 2xx received (and ACKed). Incoming: ACK received.
    Confirmed { code: u16 },
    /// The call is over.
    Terminated {
        reason: String,
        by_peer: bool,
        code: Option<u16>,
        cause: EndCause,
    },
    /// The peer put us on hold (a re-INVITE or UPDATE offering `sendonly` or `inactive`).
    Held,
    /// The peer took us off hold (an offer with `sendrecv` or `recvonly` after a hold).
    Retrieved,
    /// An in-dialog request we received and answered (INFO, MESSAGE, OPTIONS, NOTIFY...).
    Request {
        method: String,
        content_type: Option<String>,
        body: String,
        headers: Vec<(String, String)>,
    },
    /// The peer asked us to transfer this call (REFER) to `to`.
    Referred { to: String },
    /// A NOTIFY about a REFER we sent: the sipfrag status, and whether it is the last one.
    ReferProgress { code: u16, last: bool },
    /// This call was transferred: its logical call id now names a new call to `to`.
    Transferred { to: String },
    /// An INVITE with Replaces took this call's place; its logical call id names the new call.
    Replaced,
    /// The first RTP from the peer came.
    MediaFlowing,
    /// A DTMF digit came (RFC 4733 or SIP INFO).
    Digit(char),
}

/// Where a call stands: the state of its INVITE dialog, as decisions read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// INVITE sent, no response yet (a CANCEL must wait for one, RFC 3261 §9.1).
    Calling,
    /// A provisional response (100 Trying included): ringing.
    Early,
    /// Our 2xx went out; its ACK has not come.
    Answered,
    /// 2xx and ACK: the call is up (re-INVITEs and in-dialog requests keep it so).
    Confirmed,
    Ended,
}

impl Phase {
    pub fn of(state: &DialogState) -> Self {
        match state {
            DialogState::Calling(_) => Self::Calling,
            DialogState::Trying(_) | DialogState::Early(..) => Self::Early,
            DialogState::WaitAck(..) => Self::Answered,
            DialogState::Terminated(..) => Self::Ended,
            _ => Self::Confirmed,
        }
    }

    /// As hanging up sees it: BYE once a 2xx went either way, CANCEL or a rejection before.
    pub fn leg(self) -> LegState {
        match self {
            Self::Calling | Self::Early => LegState::Early,
            Self::Answered | Self::Confirmed => LegState::Confirmed,
            Self::Ended => LegState::Terminated,
        }
    }
}

/// How a call ended, for decisions (the `reason` text is for people).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndCause {
    Bye,
    Cancel,
    /// A final non-2xx response (busy, declined, any 3xx-6xx).
    Rejected,
    Timeout,
}

impl CallEvent {
    pub(crate) fn from_state(state: &DialogState, role: Role) -> Option<Self> {
        Some(match state {
            DialogState::Early(_, resp) => Self::Provisional {
                code: resp.status_code.code(),
                reason: resp.status_code.text().to_owned(),
            },
            DialogState::WaitAck(_, _) => Self::Answered,
            DialogState::Confirmed(_, resp) => Self::Confirmed {
                code: resp.status_code.code(),
            },
            DialogState::Terminated(_, reason) => {
                let (text, by_peer, code) = describe(reason, role);
                let cause = match reason {
                    TerminatedReason::UacBye | TerminatedReason::UasBye => EndCause::Bye,
                    TerminatedReason::UacCancel => EndCause::Cancel,
                    TerminatedReason::Timeout => EndCause::Timeout,
                    _ => EndCause::Rejected,
                };
                Self::Terminated {
                    reason: text,
                    by_peer,
                    code,
                    cause,
                }
            }
            _ => return None,
        })
    }

    /// How a person reads it: `180 Ringing`, `BYE from the peer`.
    pub fn describe(&self) -> String {
        match self {
            Self::Provisional { code, reason } => format!("{code} {reason}"),
            Self::Answered => "answered (200 sent)".to_owned(),
            Self::Confirmed { code } => format!("confirmed ({code})"),
            Self::Terminated { reason, .. } => format!("ended: {reason}"),
            Self::Held => "held by the peer".to_owned(),
            Self::Retrieved => "retrieved by the peer".to_owned(),
            Self::Request { method, .. } => format!("{method} received"),
            Self::Referred { to } => format!("REFER to {to} received"),
            Self::ReferProgress { code, last } => {
                format!(
                    "transfer progress: {code}{}",
                    if *last { " (final)" } else { "" }
                )
            }
            Self::Transferred { to } => format!("transferred to {to}"),
            Self::Replaced => "replaced by a new call (Replaces)".to_owned(),
            Self::MediaFlowing => "RTP from the peer".to_owned(),
            Self::Digit(d) => format!("DTMF {d} received"),
        }
    }
}

fn status(code: &StatusCode) -> String {
    format!("{} {}", code.code(), code.text())
}

fn describe(reason: &TerminatedReason, role: Role) -> (String, bool, Option<u16>) {
    // "Uac*" reasons are the caller's doing: the peer's when we are the callee.
    let caller_did_it = role == Role::Incoming;
    match reason {
        TerminatedReason::Timeout => ("timed out".to_owned(), false, None),
        TerminatedReason::UacCancel => ("cancelled by the caller".to_owned(), caller_did_it, None),
        TerminatedReason::UacBye => ("BYE from the caller".to_owned(), caller_did_it, None),
        TerminatedReason::UasBye => ("BYE from the callee".to_owned(), !caller_did_it, None),
        TerminatedReason::UacBusy => ("busy (caller)".to_owned(), false, Some(486)),
        TerminatedReason::UasBusy => ("486 Busy Here".to_owned(), true, Some(486)),
        TerminatedReason::UasDecline => ("declined".to_owned(), false, Some(603)),
        TerminatedReason::ProxyError(c) => {
            (format!("proxy error {}", status(c)), true, Some(c.code()))
        }
        TerminatedReason::ProxyAuthRequired => {
            ("authentication required".to_owned(), true, Some(407))
        }
        TerminatedReason::UacOther(c) => (status(c), false, Some(c.code())),
        TerminatedReason::UasOther(c) => (status(c), true, Some(c.code())),
    }
}

pub use flow::session_timer::SessionTimer;

/// What a PRACK did (RFC 3262 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prack {
    /// It acknowledged the reliable provisional response waiting for it.
    Acked,
    /// It acknowledges one acknowledged already (a retransmission): answer it again.
    Again,
    /// It matches no reliable provisional response of this call: 481.
    NoMatch,
}

/// The reliable provisional responses of an incoming call (RFC 3262).
#[derive(Debug, Default)]
struct Reliable {
    on: bool,
    /// The RSeq of the next one.
    next: u32,
    /// The one sent and not yet PRACKed: its RSeq, and whether it carried SDP.
    unacked: Option<(u32, bool)>,
    last_acked: Option<u32>,
}

impl Reliable {
    /// Numbered from `first_rseq` (RFC 3262 §3: chosen at random, below 2**31).
    fn start(&mut self, first_rseq: u32) {
        self.on = true;
        self.next = first_rseq.clamp(1, (1 << 31) - 1);
    }

    /// Numbers a new reliable provisional response, waiting for its PRACK from now on.
    fn begin(&mut self, with_sdp: bool) -> u32 {
        let rseq = self.next;
        self.next = self.next.wrapping_add(1);
        self.unacked = Some((rseq, with_sdp));
        rseq
    }

    /// What a PRACK whose RAck names `rseq` and CSeq `cseq` does, for an INVITE of CSeq
    /// `invite_cseq`; with `take`, the provisional response it acknowledges stops waiting.
    fn prack(&mut self, invite_cseq: Option<u32>, rseq: u32, cseq: u32, take: bool) -> Prack {
        if invite_cseq.is_some_and(|c| c != cseq) {
            return Prack::NoMatch;
        }
        match self.unacked {
            Some((want, _)) if want == rseq => {
                if take {
                    self.unacked = None;
                    self.last_acked = Some(rseq);
                }
                Prack::Acked
            }
            _ if self.last_acked == Some(rseq) => Prack::Again,
            _ => Prack::NoMatch,
        }
    }
}

/// Whether `event` is news to a call whose log holds `seen`: rsipstack reports Confirmed again
/// after some mid-dialog requests and Terminated more than once (the first counts), nothing
/// follows the end, and a reliable provisional response sent again until its PRACK comes is
/// news once.
fn is_news(seen: crate::latched::Events<'_, CallEvent>, event: &CallEvent, reliable: bool) -> bool {
    let ended = seen
        .iter()
        .any(|e| matches!(e, CallEvent::Terminated { .. }));
    let confirmed_again = matches!(event, CallEvent::Confirmed { .. })
        && seen
            .iter()
            .any(|e| matches!(e, CallEvent::Confirmed { .. }));
    let resent = matches!(event, CallEvent::Provisional { .. })
        && reliable
        && seen.last().is_some_and(|e| e == event);
    !(ended || confirmed_again || resent)
}

/// What a call holds beside its dialog: what nodes and the router decided about it. Plain data
/// behind one lock; its rules (above) are tested without a dialog or a socket.
#[derive(Debug, Default)]
struct State {
    /// The iteration and logical call id a node bound it to.
    binding: Option<(crate::Iteration, String)>,
    /// Our SDP, for answering re-INVITEs.
    local_sdp: Option<Vec<u8>>,
    /// The first SDP the peer sent on this call (a 183's, or the 2xx's): for a caller, the
    /// answer to its offer (RFC 3261 §13.2.1).
    first_remote_sdp: Option<Vec<u8>>,
    /// We put the peer on hold (our last offer was sendonly/inactive).
    held_by_us: bool,
    /// The peer put us on hold.
    held_by_peer: bool,
    /// A transfer moved this call's logical id to a new call; the transferor ends this one.
    superseded: bool,
    /// Our INVITE failed where it started (no connection could be made): the call is over,
    /// though rsipstack's dialog still says Calling.
    failed_locally: bool,
    /// We put an offer in a 2xx to an offer-less re-INVITE: the answer comes in its ACK.
    answer_in_ack: bool,
    reliable: Reliable,
    /// Where to write the received audio when the media ends.
    recording: Option<std::path::PathBuf>,
}

/// One INVITE dialog of a UA: rsipstack's, or in the session's own tests a scripted one
/// ([`crate::Dialog`]).
pub struct Call<D = InviteDialog> {
    pub key: CallKey,
    pub ua: UaIdx,
    pub role: Role,
    pub dialog: D,
    pub created: Instant,
    first_id: DialogId,
    state: Mutex<State>,
    log: crate::Latched<CallEvent>,
    /// When a hang-up was first started on this call (by a node or by cleanup): cleanup must
    /// not send another.
    hangup_started: OnceLock<Instant>,
    /// What the call holds until it is closed (its RTP port lease and socket).
    resources: Mutex<Vec<Box<dyn std::any::Any + Send + Sync>>>,
    /// The session timer agreed for the call, if any (the last refresh's). Made when first
    /// used, like the two wake-ups below: a load's calls mostly never use them.
    session_timer: OnceLock<watch::Sender<Option<SessionTimer>>>,
    /// Where each event added to the log is reported.
    observer: crate::Observer,
    /// Bumped when a reliable provisional response is PRACKed.
    pracked: crate::latched::Wakeup,
    /// The RTP socket reserved when our SDP was made, until the media starts.
    /// The call's RTP socket and its RTCP socket, leased with its port, until its media starts.
    rtp_socket: Mutex<Option<(std::net::UdpSocket, Option<std::net::UdpSocket>)>>,
    /// The call's RTP, once the call is confirmed.
    media: Mutex<Option<Arc<media::rtp::MediaSession>>>,
    media_started: crate::latched::Wakeup,
}

impl<D: crate::Dialog> Call<D> {
    pub(crate) fn new(
        key: CallKey,
        ua: UaIdx,
        role: Role,
        dialog: D,
        binding: Option<(crate::Iteration, String)>,
        observer: crate::Observer,
    ) -> Self {
        Self {
            key,
            ua,
            role,
            first_id: dialog.id(),
            dialog,
            created: Instant::now(),
            state: Mutex::new(State {
                binding,
                ..State::default()
            }),
            log: crate::Latched::new(),
            hangup_started: OnceLock::new(),
            resources: Mutex::new(Vec::new()),
            session_timer: OnceLock::new(),
            observer,
            pracked: crate::latched::Wakeup::default(),
            rtp_socket: Mutex::new(None),
            media: Mutex::new(None),
            media_started: crate::latched::Wakeup::default(),
        }
    }

    /// The logical call id a node bound it to.
    pub fn name(&self) -> Option<String> {
        self.binding().map(|(_, n)| n)
    }

    /// The iteration and logical call id a node bound it to.
    pub fn binding(&self) -> Option<(crate::Iteration, String)> {
        self.state().binding.clone()
    }

    /// The iteration a node bound it to.
    pub fn iteration(&self) -> Option<crate::Iteration> {
        self.state().binding.as_ref().map(|(i, _)| *i)
    }

    /// Its dialog's id as it was made (the Call-ID and local tag never change).
    pub(crate) fn first_id(&self) -> &DialogId {
        &self.first_id
    }

    pub(crate) fn set_binding(&self, iteration: crate::Iteration, name: &str) {
        self.state().binding = Some((iteration, name.to_owned()));
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("call state lock")
    }

    pub fn sip_call_id(&self) -> String {
        self.first_id.call_id.clone()
    }

    /// The dialog's ids: as created (early) and as it is now (with the remote tag).
    pub fn dialog_ids(&self) -> Vec<DialogId> {
        let now = self.dialog.id();
        if now == self.first_id {
            vec![now]
        } else {
            vec![self.first_id.clone(), now]
        }
    }

    pub fn set_local_sdp(&self, sdp: Vec<u8>) {
        self.state().local_sdp = Some(sdp);
    }

    pub fn local_sdp(&self) -> Option<Vec<u8>> {
        self.state().local_sdp.clone()
    }

    /// Keeps `sdp` if it is the first SDP the peer sent; returns the first one.
    pub fn first_remote_sdp(&self, sdp: &[u8]) -> Vec<u8> {
        let mut st = self.state();
        if st.first_remote_sdp.is_none() && !sdp.trim_ascii().is_empty() {
            st.first_remote_sdp = Some(sdp.to_vec());
        }
        st.first_remote_sdp.clone().unwrap_or_default()
    }

    /// Appends an event; returns false when it adds nothing (a repeat, or after the end).
    pub fn push(&self, event: CallEvent) -> bool {
        let reliable = self.provisionals_reliable();
        let report = self.observer.get().map(|r| (r, event.clone()));
        let added = self
            .log
            .push_unless(event, |seen, event| !is_news(seen, event, reliable));
        if added && let Some((report, event)) = report {
            report(crate::Observed::Event {
                call: self.key,
                event,
            });
        }
        added
    }

    /// Every event so far, with when it happened.
    pub fn events(&self) -> Vec<(CallEvent, Instant)> {
        self.log.events()
    }

    /// The call's latched event log, for waits.
    pub fn latched(&self) -> &crate::Latched<CallEvent> {
        &self.log
    }

    pub fn last_event(&self) -> Option<(CallEvent, Instant)> {
        self.log.last()
    }

    /// Where the call stands, from rsipstack's own dialog state (authoritative: the event log
    /// is fed asynchronously and may lag a moment behind).
    pub fn leg_state(&self) -> LegState {
        self.phase().leg()
    }

    /// Where the call stands, from its dialog's state.
    pub fn phase(&self) -> Phase {
        if self.state().failed_locally {
            return Phase::Ended;
        }
        Phase::of(&self.dialog.state())
    }

    /// Our INVITE failed before it reached the peer (the transport said so): the call ends
    /// here, with nothing to hang up; its log gets the end.
    pub fn mark_failed_locally(&self, reason: String) {
        self.state().failed_locally = true;
        self.push(CallEvent::Terminated {
            reason,
            by_peer: false,
            code: None,
            cause: EndCause::Timeout,
        });
    }

    /// An outgoing call whose INVITE has had no response at all: a CANCEL cannot go before one
    /// (RFC 3261 §9.1); rsipstack holds it back until a provisional response comes.
    pub fn unanswered(&self) -> bool {
        self.role == Role::Outgoing && self.phase() == Phase::Calling
    }

    pub fn is_terminated(&self) -> bool {
        self.leg_state() == LegState::Terminated
    }

    /// Waits for the first event matching `pred` (one that happened already counts) and
    /// returns it. With `consume`, the event is marked used and a later wait will not see it.
    ///
    /// Cancel safety: safe; nothing is consumed unless this returns.
    pub async fn wait(
        &self,
        pred: impl Fn(&CallEvent) -> bool,
        consume: bool,
    ) -> (CallEvent, Instant) {
        self.log.wait(pred, consume).await
    }

    /// Keeps `resource` alive until the call is closed (then it is dropped, releasing it).
    pub fn keep(&self, resource: Box<dyn std::any::Any + Send + Sync>) {
        self.resources
            .lock()
            .expect("resources lock")
            .push(resource);
    }

    /// Drops what the call keeps (at close).
    pub(crate) fn release_resources(&self) {
        self.resources.lock().expect("resources lock").clear();
    }

    pub fn held_by_us(&self) -> bool {
        self.state().held_by_us
    }

    pub fn set_held_by_us(&self, held: bool) {
        self.state().held_by_us = held;
    }

    pub fn set_rtp_socket(&self, socket: std::net::UdpSocket, rtcp: Option<std::net::UdpSocket>) {
        *self.rtp_socket.lock().expect("rtp lock") = Some((socket, rtcp));
    }

    /// The RTP socket and the RTCP socket beside it, once.
    pub fn take_rtp_socket(&self) -> Option<(std::net::UdpSocket, Option<std::net::UdpSocket>)> {
        self.rtp_socket.lock().expect("rtp lock").take()
    }

    pub fn set_media(&self, m: Arc<media::rtp::MediaSession>) {
        *self.media.lock().expect("media lock") = Some(m);
        self.media_started.wake();
    }

    pub fn media(&self) -> Option<Arc<media::rtp::MediaSession>> {
        self.media.lock().expect("media lock").clone()
    }

    /// Waits until the call's media has started.
    ///
    /// Cancel safety: safe.
    pub async fn wait_media(&self) -> Arc<media::rtp::MediaSession> {
        let mut rx = self.media_started.subscribe();
        loop {
            if let Some(m) = self.media() {
                return m;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Takes the media out of the call (to stop it once).
    pub fn take_media(&self) -> Option<Arc<media::rtp::MediaSession>> {
        self.media.lock().expect("media lock").take()
    }

    pub fn set_recording(&self, path: std::path::PathBuf) {
        self.state().recording = Some(path);
    }

    pub fn recording(&self) -> Option<std::path::PathBuf> {
        self.state().recording.clone()
    }

    /// Marks the call as left behind by a transfer (its logical id now names a new call).
    pub fn mark_superseded(&self) {
        self.state().superseded = true;
    }

    pub fn superseded(&self) -> bool {
        self.state().superseded
    }

    /// Sets the call's session timer (a 2xx or a refresh agreed it; the same again re-arms it);
    /// returns the one before.
    pub fn set_session_timer(&self, t: SessionTimer) -> Option<SessionTimer> {
        self.session_timer_channel().send_replace(Some(t))
    }

    pub fn session_timer(&self) -> Option<SessionTimer> {
        self.session_timer.get().and_then(|t| *t.borrow())
    }

    fn session_timer_channel(&self) -> &watch::Sender<Option<SessionTimer>> {
        self.session_timer.get_or_init(|| watch::channel(None).0)
    }

    /// Sees every change of the session timer.
    pub fn session_timer_changes(&self) -> watch::Receiver<Option<SessionTimer>> {
        self.session_timer_channel().subscribe()
    }

    /// Makes this (incoming) call's provisional responses reliable (RFC 3262), numbered from
    /// `first_rseq` (RFC 3262 §3: chosen at random, below 2**31).
    pub fn make_provisionals_reliable(&self, first_rseq: u32) {
        self.state().reliable.start(first_rseq);
    }

    pub fn provisionals_reliable(&self) -> bool {
        self.state().reliable.on
    }

    /// The reliable provisional response sent and not PRACKed yet: its RSeq, and whether it
    /// carried SDP.
    pub fn unacked_provisional(&self) -> Option<(u32, bool)> {
        self.state().reliable.unacked
    }

    /// Numbers a new reliable provisional response (carrying SDP or not) and marks it as
    /// waiting for its PRACK; returns its RSeq.
    pub fn begin_reliable_provisional(&self, with_sdp: bool) -> u32 {
        self.state().reliable.begin(with_sdp)
    }

    /// What a PRACK whose RAck names `rseq` and the INVITE's CSeq `cseq` does; with `take`, it
    /// is taken (once answered): the provisional response it acknowledges stops waiting.
    pub fn prack(&self, rseq: u32, cseq: u32, take: bool) -> Prack {
        let invite_cseq = self.dialog.invite_cseq();
        let done = self.state().reliable.prack(invite_cseq, rseq, cseq, take);
        if take && done == Prack::Acked {
            self.pracked.wake();
        }
        done
    }

    /// Waits until no reliable provisional response waits for its PRACK.
    ///
    /// Cancel safety: safe.
    pub async fn wait_pracked(&self) {
        let mut rx = self.pracked.subscribe();
        while self.unacked_provisional().is_some() {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Marks that the next ACK brings the answer to the offer in our 2xx (a re-INVITE without
    /// SDP, RFC 3264 §8.1).
    pub fn expect_answer_in_ack(&self) {
        self.state().answer_in_ack = true;
    }

    /// Whether an ACK was to bring an answer; clears the mark.
    pub fn take_answer_in_ack(&self) -> bool {
        std::mem::take(&mut self.state().answer_in_ack)
    }

    pub fn held_by_peer(&self) -> bool {
        self.state().held_by_peer
    }

    pub fn set_held_by_peer(&self, held: bool) {
        self.state().held_by_peer = held;
    }

    /// Whether a hang-up was started on this call (by a node or by cleanup).
    pub fn hangup_started(&self) -> bool {
        self.hangup_started.get().is_some()
    }

    /// When the first hang-up was started on this call.
    pub fn hangup_started_at(&self) -> Option<Instant> {
        self.hangup_started.get().copied()
    }

    /// Starts what `action` says in a task of its own, so that cancelling the caller cannot
    /// leave a BYE or CANCEL half-done. Await the handle for the peer's answer.
    pub fn start_hang_up(
        self: &Arc<Self>,
        action: HangupAction,
    ) -> tokio::task::JoinHandle<Result<(), transport::rsipstack::Error>> {
        let _ = self.hangup_started.set(Instant::now());
        let call = self.clone();
        tokio::spawn(async move { call.hang_up(action).await })
    }

    /// Sends what `action` says; for BYE and CANCEL, returns once the peer answered.
    async fn hang_up(&self, action: HangupAction) -> Result<(), transport::rsipstack::Error> {
        match action {
            HangupAction::Bye => self.dialog.bye().await,
            HangupAction::Cancel => self.dialog.cancel().await,
            HangupAction::Reject(code) => self.dialog.reject(code),
            HangupAction::Nothing => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provisional(code: u16) -> CallEvent {
        CallEvent::Provisional {
            code,
            reason: "Ringing".into(),
        }
    }

    fn ended() -> CallEvent {
        CallEvent::Terminated {
            reason: "BYE from the callee".into(),
            by_peer: true,
            code: None,
            cause: EndCause::Bye,
        }
    }

    #[test]
    fn the_log_keeps_what_is_news() {
        let confirmed = CallEvent::Confirmed { code: 200 };
        let cases: Vec<(Vec<CallEvent>, CallEvent, bool, bool)> = vec![
            // (seen, event, 18x reliable, news?)
            (vec![], provisional(180), false, true),
            (vec![provisional(180)], provisional(180), false, true),
            // A reliable 180 resent until its PRACK: once.
            (vec![provisional(180)], provisional(180), true, false),
            (vec![provisional(180)], provisional(183), true, true),
            (vec![confirmed.clone()], confirmed.clone(), false, false),
            (vec![confirmed], CallEvent::Held, false, true),
            // Nothing after the end, the end included.
            (vec![ended()], ended(), false, false),
            (vec![ended()], CallEvent::Held, false, false),
        ];
        for (seen, event, reliable, news) in cases {
            let log = crate::Latched::new();
            for e in &seen {
                log.push(e.clone());
            }
            assert_eq!(
                log.push_unless(event.clone(), |s, e| !is_news(s, e, reliable)),
                news,
                "{seen:?} then {event:?}"
            );
        }
    }

    #[test]
    fn reliable_provisionals_are_numbered_and_pracked_one_at_a_time() {
        let mut r = Reliable::default();
        r.start(0);
        assert_eq!(r.next, 1, "an RSeq is at least 1");
        let mut r = Reliable::default();
        r.start(u32::MAX);
        assert_eq!(r.next, (1 << 31) - 1, "and below 2**31");

        let mut r = Reliable::default();
        r.start(7);
        assert_eq!(r.begin(true), 7);
        assert_eq!(r.unacked, Some((7, true)));
        // A PRACK for another INVITE (its CSeq) matches nothing.
        assert_eq!(r.prack(Some(1), 7, 2, true), Prack::NoMatch);
        // Asked first without taking: it matches, and still waits.
        assert_eq!(r.prack(Some(1), 7, 1, false), Prack::Acked);
        assert_eq!(r.unacked, Some((7, true)));
        assert_eq!(r.prack(Some(1), 7, 1, true), Prack::Acked);
        assert_eq!(r.unacked, None);
        // Its retransmission is answered again; an RSeq never sent matches nothing.
        assert_eq!(r.prack(Some(1), 7, 1, true), Prack::Again);
        assert_eq!(r.prack(Some(1), 9, 1, true), Prack::NoMatch);
        assert_eq!(r.begin(false), 8);
        assert_eq!(r.unacked, Some((8, false)));
    }

    #[test]
    fn a_call_state_starts_unbound_and_undecided() {
        let s = State::default();
        assert_eq!(s.binding, None);
        assert!(!s.held_by_us && !s.held_by_peer && !s.superseded && !s.answer_in_ack);
        assert!(!s.reliable.on);
    }
}
