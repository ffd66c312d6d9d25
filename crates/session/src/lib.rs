//! The calls of a run: rsipstack dialogs keyed by UA and logical call id, with their events
//! latched, and the ordered teardown ([`Sessions::hangup_all`], then [`Sessions::close_all`]).
//!
//! Every dialog state change of a UA goes through [`Sessions::apply`], which appends a
//! [`CallEvent`] to the call's log. Waits read the log, so an event that happened before a wait
//! started is still seen ("latched"); a wait consumes the event it matched, so two waits for a
//! 180 need two 180s.

mod call;
mod dialog;
mod latched;
pub mod ledger;

pub use call::{Call, CallEvent, CallKey, EndCause, Phase, Prack, Role, SessionTimer};
pub use dialog::Dialog;
pub use flow::cleanup::HangupReport;
pub use flow::{HangupAction, LegState, hangup_action};
pub use latched::{Events, Latched};
pub use ledger::Ledger;

use dashmap::DashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use transport::rsipstack::dialog::DialogId;
use transport::rsipstack::dialog::dialog::DialogState;
use transport::rsipstack::dialog::dialog_layer::DialogLayer;
use transport::rsipstack::dialog::invite_dialog::InviteDialog;

/// Index of a UA (instance) in the scenario.
pub type UaIdx = usize;

pub use flow::chains::Iteration;

/// What the calls of a run report as it happens, in order, for the engine's flow: a call bound
/// to a node's logical call id, an event added to a call's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    Bound {
        call: CallKey,
        ua: UaIdx,
        iteration: Iteration,
        name: String,
        role: Role,
    },
    Event {
        call: CallKey,
        event: CallEvent,
    },
    /// An INVITE is held, ringing, for the UA's next INCOMING (of `iteration` if it names
    /// one of this run's).
    Arrived {
        call: CallKey,
        ua: UaIdx,
        iteration: Option<Iteration>,
    },
    /// It was refused before any INCOMING took it.
    Withdrawn {
        call: CallKey,
    },
    /// The call was closed and forgotten.
    Closed {
        call: CallKey,
    },
}

/// What hears the reports: called on the task where each happened, right after it (never
/// under a lock of the sessions), so it must be quick and must not block.
pub type Report = Box<dyn Fn(Observed) + Send + Sync>;

/// Where the calls report (set once, by [`Sessions::observe`]).
pub(crate) type Observer = Arc<std::sync::OnceLock<Report>>;

/// Every call of a run (over rsipstack's dialogs, or in the session's own tests scripted ones).
pub struct Sessions<D = InviteDialog> {
    observer: Observer,
    next_key: AtomicU64,
    calls: DashMap<CallKey, Arc<Call<D>>>,
    /// (UA, iteration, logical call id) -> call: under load, every iteration has its own
    /// `call-1` on the same UA.
    names: DashMap<(UaIdx, Iteration, String), CallKey>,
    /// (UA, SIP Call-ID, local tag) -> call: the part of a DialogId that never changes.
    dialogs: DashMap<(UaIdx, String, String), CallKey>,
    /// Incoming calls held for an INCOMING and not taken yet, with their UA (the order they
    /// came in is the flow's to keep).
    held: DashMap<CallKey, UaIdx>,
}

impl<D> Default for Sessions<D> {
    fn default() -> Self {
        Self {
            observer: Observer::default(),
            next_key: AtomicU64::new(0),
            calls: DashMap::new(),
            names: DashMap::new(),
            dialogs: DashMap::new(),
            held: DashMap::new(),
        }
    }
}

impl<D: Dialog> Sessions<D> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tells `report` every binding and every call event from now on, as each happens (once
    /// per run: a second observer is not taken).
    pub fn observe(&self, report: Report) {
        let _ = self.observer.set(report);
    }

    fn report(&self, o: Observed) {
        if let Some(report) = self.observer.get() {
            report(o);
        }
    }

    fn insert(
        &self,
        ua: UaIdx,
        role: Role,
        dialog: D,
        name: Option<(Iteration, &str)>,
    ) -> Arc<Call<D>> {
        let key = CallKey(self.next_key.fetch_add(1, Ordering::Relaxed));
        let id = dialog.id();
        let binding = name.map(|(i, n)| (i, n.to_owned()));
        let call = Arc::new(Call::new(
            key,
            ua,
            role,
            dialog,
            binding,
            self.observer.clone(),
        ));
        self.dialogs.insert((ua, id.call_id, id.local_tag), key);
        if let Some((i, n)) = name {
            self.names.insert((ua, i, n.to_owned()), key);
            self.report(Observed::Bound {
                call: key,
                ua,
                iteration: i,
                name: n.to_owned(),
                role,
            });
        }
        self.calls.insert(key, call.clone());
        call
    }

    /// Records a call we placed, under its logical name in its iteration if it has one. A
    /// previous call of that name is replaced in the name table (it stays in the run until
    /// cleanup).
    pub fn insert_outgoing(
        &self,
        ua: UaIdx,
        name: Option<(Iteration, &str)>,
        dialog: D,
    ) -> Arc<Call<D>> {
        self.insert(ua, Role::Outgoing, dialog, name)
    }

    /// Records a call already bound to `name` (not queued for INCOMING): an INVITE with
    /// Replaces takes its place this way.
    pub fn insert_bound(
        &self,
        ua: UaIdx,
        role: Role,
        dialog: D,
        iteration: Iteration,
        name: &str,
    ) -> Arc<Call<D>> {
        self.insert(ua, role, dialog, Some((iteration, name)))
    }

    /// Records an incoming call, runs `prepare` on it (for example, sends 180 Ringing), and only
    /// then holds it for an INCOMING node (reported: the flow gives it to one). The call is
    /// indexed before `prepare`, so dialog states that `prepare` causes are latched on it; it
    /// is held after, so no node can answer it before `prepare` is done.
    /// `iteration`: the iteration of this run the INVITE says it belongs to, if any.
    pub fn insert_incoming(
        &self,
        ua: UaIdx,
        dialog: D,
        iteration: Option<Iteration>,
        prepare: impl FnOnce(&Arc<Call<D>>),
    ) -> Arc<Call<D>> {
        let call = self.insert(ua, Role::Incoming, dialog, None);
        prepare(&call);
        self.held.insert(call.key, ua);
        self.report(Observed::Arrived {
            call: call.key,
            ua,
            iteration,
        });
        call
    }

    /// The incoming calls of `ua` no node has taken yet.
    pub fn held(&self, ua: UaIdx) -> Vec<Arc<Call<D>>> {
        self.held
            .iter()
            .filter(|e| *e.value() == ua)
            .filter_map(|e| self.calls.get(e.key()).map(|c| c.clone()))
            .collect()
    }

    /// Takes an incoming call of `ua` back if no node has taken it yet (true), so it can be
    /// refused; false once a node has it. Atomic with [`Self::take_incoming`].
    pub fn withdraw_incoming(&self, ua: UaIdx, call: &Call<D>) -> bool {
        let withdrawn = self.held.remove_if(&call.key, |_, u| *u == ua).is_some();
        if withdrawn {
            self.report(Observed::Withdrawn { call: call.key });
        }
        withdrawn
    }

    /// Takes the incoming call `key` of `ua`, if it is still held (not refused
    /// meanwhile), and binds it to `name` in `iteration`. Atomic with
    /// [`Self::withdraw_incoming`].
    pub fn take_incoming(
        &self,
        ua: UaIdx,
        key: CallKey,
        iteration: Iteration,
        name: &str,
    ) -> Option<Arc<Call<D>>> {
        self.held.remove_if(&key, |_, u| *u == ua)?;
        let call = self.calls.get(&key).map(|c| c.clone())?;
        self.rebind(ua, iteration, name, &call);
        Some(call)
    }

    /// The call a node of `iteration` names, if any.
    pub fn get(&self, ua: UaIdx, iteration: Iteration, name: &str) -> Option<Arc<Call<D>>> {
        let key = *self.names.get(&(ua, iteration, name.to_owned()))?;
        self.calls.get(&key).map(|c| c.clone())
    }

    /// Makes `name` of `iteration` on `ua` refer to `call` from now on (an incoming call
    /// taken, a transfer, a Replaces), so later nodes naming it follow that dialog.
    pub fn rebind(&self, ua: UaIdx, iteration: Iteration, name: &str, call: &Arc<Call<D>>) {
        call.set_binding(iteration, name);
        self.names
            .insert((ua, iteration, name.to_owned()), call.key);
        self.report(Observed::Bound {
            call: call.key,
            ua,
            iteration,
            name: name.to_owned(),
            role: call.role,
        });
    }

    /// The call of `ua` that a Replaces header names (RFC 3891): its Call-ID and both tags, in
    /// either order (peers disagree on which tag is "to" and which is "from").
    pub fn find_replaced(
        &self,
        ua: UaIdx,
        call_id: &str,
        tag_a: &str,
        tag_b: &str,
    ) -> Option<Arc<Call<D>>> {
        self.all().into_iter().find(|c| {
            let id = c.dialog.id();
            c.ua == ua
                && id.call_id == call_id
                && ((id.local_tag == tag_a && id.remote_tag == tag_b)
                    || (id.local_tag == tag_b && id.remote_tag == tag_a))
        })
    }

    pub fn by_dialog(&self, ua: UaIdx, id: &DialogId) -> Option<Arc<Call<D>>> {
        let key = *self
            .dialogs
            .get(&(ua, id.call_id.clone(), id.local_tag.clone()))?;
        self.calls.get(&key).map(|c| c.clone())
    }

    /// Records a dialog state change of `ua`. Returns the call it belongs to, if known, and
    /// the event it added to the call's log, if any.
    pub fn apply(
        &self,
        ua: UaIdx,
        state: &DialogState,
    ) -> Option<(Arc<Call<D>>, Option<CallEvent>)> {
        let id = dialog_id(state);
        let call = self.by_dialog(ua, id)?;
        let added = CallEvent::from_state(state, call.role).filter(|ev| call.push(ev.clone()));
        Some((call, added))
    }

    /// Calls not yet removed by [`Self::close_all`].
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    pub fn all(&self) -> Vec<Arc<Call<D>>> {
        let mut v: Vec<_> = self.calls.iter().map(|c| c.clone()).collect();
        v.sort_by_key(|c| c.key);
        v
    }

    /// Step 1 of cleanup: ends every call that is not over (BYE when confirmed, CANCEL when
    /// ringing out, 480 when ringing in) and waits for each to end, at most `limit` in all.
    ///
    /// Cancel safety: not cancel safe; requests may be left half-done. Bound it with `limit`.
    pub async fn hangup_all(&self, limit: Duration) -> HangupReport {
        self.hangup(self.all(), limit).await
    }

    /// The calls bound to a node of `iteration` (an incoming call no INCOMING took belongs to
    /// none).
    pub fn of_iteration(&self, iteration: Iteration) -> Vec<Arc<Call<D>>> {
        let mut v: Vec<_> = self
            .calls
            .iter()
            .filter(|c| c.iteration() == Some(iteration))
            .map(|c| c.clone())
            .collect();
        v.sort_by_key(|c| c.key);
        v
    }

    /// Cleanup of one iteration under load: [`Self::hangup_all`] and [`Self::close_all`] for
    /// its calls only, so each call's dialog, ports and media go as its iteration ends.
    pub async fn end_iteration(
        &self,
        iteration: Iteration,
        limit: Duration,
        layers: &[Vec<Arc<DialogLayer>>],
    ) -> HangupReport {
        let report = self.hangup(self.of_iteration(iteration), limit).await;
        self.close(self.of_iteration(iteration), layers);
        report
    }

    /// Ends `calls` (step 1 of cleanup, for some calls).
    async fn hangup(&self, calls: Vec<Arc<Call<D>>>, limit: Duration) -> HangupReport {
        let keys: Vec<CallKey> = calls.iter().map(|c| c.key).collect();
        let legs: Vec<flow::cleanup::Leg> = calls
            .iter()
            .map(|c| flow::cleanup::Leg {
                role: c.role,
                state: c.leg_state(),
                hangup_started: c.hangup_started(),
                unanswered: c.unanswered(),
                superseded: c.superseded(),
            })
            .collect();
        let (plans, mut report) = flow::cleanup::plan(&legs);
        let mut pending = Vec::new();
        for ((call, leg), p) in calls.into_iter().zip(&legs).zip(plans) {
            if leg.state == LegState::Terminated {
                continue;
            }
            // A hang-up already in flight (a Release that timed out, or one the run interrupted)
            // is waited for only for what is left of `limit` since it started: a BYE to a peer
            // that died gets `limit` in all, not again here.
            let own_limit = call
                .hangup_started_at()
                .map_or(limit, |at| limit.saturating_sub(at.elapsed()));
            pending.push(async move {
                let work = async {
                    let ended = |e: &CallEvent| matches!(e, CallEvent::Terminated { .. });
                    if p.transferor_first
                        && tokio::time::timeout(limit / 2, call.wait(ended, false))
                            .await
                            .is_ok()
                    {
                        return;
                    }
                    let sent = (p.action != HangupAction::Nothing)
                        .then(|| call.start_hang_up(p.action));
                    if let Some(handle) = sent
                        && let Ok(Err(e)) = handle.await
                    {
                        tracing::debug!(call = %call.sip_call_id(), error = %e, "hang-up request failed");
                    }
                    call.wait(ended, false).await;
                };
                let _ = tokio::time::timeout(own_limit, work).await;
            });
        }
        let _ = tokio::time::timeout(limit, futures::future::join_all(pending)).await;
        report.unfinished = keys
            .iter()
            .filter_map(|k| self.calls.get(k).map(|c| c.leg_state()))
            .filter(|s| *s != LegState::Terminated)
            .count();
        report
    }

    /// Step 2 of cleanup: forgets every call and removes its dialog from the UA's dialog layer
    /// (rsipstack keeps confirmed dialogs until told). Returns how many calls were closed.
    pub fn close_all(&self, layers: &[Vec<Arc<DialogLayer>>]) -> usize {
        let n = self.close(self.all(), layers);
        self.calls.clear();
        self.names.clear();
        self.dialogs.clear();
        self.held.clear();
        n
    }

    /// Forgets `calls` (each reported closed) and removes their dialogs from their UAs'
    /// dialog layers (`layers[ua]`: every dialog layer of UA `ua`, one per socket it sends
    /// from; a call's dialog is in one of them).
    fn close(&self, calls: Vec<Arc<Call<D>>>, layers: &[Vec<Arc<DialogLayer>>]) -> usize {
        for call in &calls {
            call.release_resources();
            // Media still running (a hang-up that never completed: the dialog is not over)
            // ends with the call: no RTP or RTCP outlives it.
            if let Some(m) = call.take_media() {
                m.stop();
            }
            for layer in layers.get(call.ua).into_iter().flatten() {
                for id in call.dialog_ids() {
                    layer.remove_dialog(&id);
                }
            }
            self.calls.remove(&call.key);
            self.held.remove(&call.key);
            let id = &call.first_id();
            self.dialogs.remove_if(
                &(call.ua, id.call_id.clone(), id.local_tag.clone()),
                |_, k| *k == call.key,
            );
            if let Some((i, name)) = call.binding() {
                self.names
                    .remove_if(&(call.ua, i, name), |_, k| *k == call.key);
            }
            self.report(Observed::Closed { call: call.key });
        }
        calls.len()
    }
}

fn dialog_id(state: &DialogState) -> &DialogId {
    match state {
        DialogState::Calling(id)
        | DialogState::Trying(id)
        | DialogState::Early(id, _)
        | DialogState::WaitAck(id, _)
        | DialogState::Confirmed(id, _)
        | DialogState::Updated(id, _, _)
        | DialogState::Publish(id, _, _)
        | DialogState::Notify(id, _, _)
        | DialogState::Refer(id, _, _)
        | DialogState::Message(id, _, _)
        | DialogState::Info(id, _, _)
        | DialogState::Options(id, _, _)
        | DialogState::Terminated(id, _) => id,
    }
}

#[cfg(test)]
mod tests;
