//! What each command and event does.

use crate::calls::{CallOptions, make_header, sdp_header};
use crate::checks;
use crate::engine::{Ctx, NodeError};
use crate::ua::UaShared;
use events::Level;
use flow::calls::AfterAnswer;
use flow::chains::{Final, Input, Iteration, NodeRef};
use flow::failure::Why;
use media::rtp::MediaSession;
use media::sdp::{self, Direction};
use scenario::{Action, Node, Until};
use session::{Call, CallEvent, EndCause, HangupAction, LegState, Role, hangup_action};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use transport::rsipstack::dialog::dialog::Dialog;
use transport::sip::{Method, StatusCode, Uri};

type NodeResult = Result<(), NodeError>;

fn fail(msg: impl Into<String>) -> NodeError {
    NodeError::other(msg)
}

/// The call is not in the state the node needs.
fn state(msg: impl Into<String>) -> NodeError {
    Why::CallState(msg.into()).into()
}

/// A request could not go, or its transaction failed.
fn transport(msg: impl Into<String>) -> NodeError {
    Why::Transport(msg.into()).into()
}

/// A node's checks failed.
fn checks_failed(msg: String) -> NodeError {
    Why::Checks(msg).into()
}

pub(crate) use flow::secs;

/// What a wait expects, and what to say came instead if the node's timeout passes first.
struct Expecting {
    expected: String,
    instead: String,
}

fn expecting(expected: impl Into<String>, instead: impl Into<String>) -> Expecting {
    Expecting {
        expected: expected.into(),
        instead: instead.into(),
    }
}

/// Waits for `fut`, saying what the node waits for: if the flow's deadline for the node passes
/// first, its failure says what was expected, how long was waited and what came instead:
/// `expected an ACK within 10 s, none came`.
async fn within<T>(
    node: &Step<'_>,
    e: Expecting,
    fut: impl Future<Output = Result<T, NodeError>>,
) -> Result<T, NodeError> {
    node.at_timeout(move |waited| {
        Err(NodeError::timeout(
            e.expected.clone(),
            waited,
            e.instead.clone(),
        ))
    });
    fut.await
}

/// A verdict at a command's timeout, from how long it was given.
type Verdict = Box<dyn Fn(Duration) -> NodeResult + Send>;

/// What a command's result is if the flow's deadline for it passes now (what it waits for, in
/// its words; a loop that plays until its timeout passes). The command sets it as it goes; the
/// driver reads it at the flow's `TimedOut`, once it has ended the command's task.
#[derive(Default)]
pub(crate) struct AtTimeout(std::sync::Mutex<Option<Verdict>>);

impl AtTimeout {
    fn set(&self, verdict: Verdict) {
        *self.0.lock().expect("at-timeout lock") = Some(verdict);
    }

    /// The command's verdict at its timeout (`waited`: how long it had), if it said one.
    pub(crate) fn verdict(&self, waited: Duration) -> Option<NodeResult> {
        self.0
            .lock()
            .expect("at-timeout lock")
            .as_ref()
            .map(|v| v(waited))
    }
}

/// A node as one iteration runs it: the calls it names are that iteration's.
pub(crate) struct Step<'a> {
    node: &'a Node,
    iteration: Iteration,
    /// A load's per-iteration data.
    data: Option<&'a crate::data::Data>,
    /// Where a command says what its timeout means (None: nothing the flow times out).
    on_timeout: Option<&'a AtTimeout>,
}

impl<'a> Step<'a> {
    fn of(ctx: &'a Ctx, at: NodeRef) -> Self {
        Self {
            node: &ctx.scenario.nodes[at.node],
            iteration: at.iteration,
            data: ctx.data.as_deref(),
            on_timeout: None,
        }
    }

    /// Says what the node's result is if its timeout passes from now on.
    fn at_timeout(&self, verdict: impl Fn(Duration) -> NodeResult + Send + 'static) {
        if let Some(t) = self.on_timeout {
            t.set(Box::new(verdict));
        }
    }

    /// `text` with this iteration's `${field}`s of a load's data replaced.
    fn expand(&self, text: &str) -> String {
        match self.data {
            Some(d) => d.expand(self.iteration, text),
            None => text.to_owned(),
        }
    }
}

impl std::ops::Deref for Step<'_> {
    type Target = Node;
    fn deref(&self) -> &Node {
        self.node
    }
}

/// How a node tells the flow what it observed while it runs (a request sent, its final
/// response).
pub(crate) type Report<'a> = &'a (dyn Fn(Input) + Send + Sync);

/// Carries out a node ([`flow::chains::Action::Run`]); returns its result, for the flow's
/// `Done`. A REQUEST or a SUBSCRIBE reports its request sent and its final response instead,
/// for the flow to decide (None), and has a result only if it could not go.
///
/// Each kind's future is boxed: this one stays small (it is moved into a task for every node
/// a load runs), and each node allocates only what its own kind needs.
pub(crate) async fn execute(
    ctx: &Arc<Ctx>,
    at: NodeRef,
    report: Report<'_>,
    at_timeout: &AtTimeout,
) -> Option<NodeResult> {
    let node = &Step {
        on_timeout: Some(at_timeout),
        ..Step::of(ctx, at)
    };
    let ua = ctx.ua(node.instance, at.iteration);
    if matches!(
        node.action,
        Action::SendRequest { .. } | Action::Subscribe { .. }
    ) {
        return Box::pin(request(ctx, ua, at, node, report))
            .await
            .err()
            .map(Err);
    }
    Some(command(ctx, ua, node).await)
}

/// Carries out a command (or a wait the driver keeps) to its result.
async fn command(ctx: &Arc<Ctx>, ua: &Arc<UaShared>, node: &Step<'_>) -> NodeResult {
    match &node.action {
        Action::Answer => Box::pin(answer(ua, node)).await,
        Action::Release => Box::pin(release(ua, node)).await,
        Action::Hold => Box::pin(reinvite(ua, node, Direction::SendOnly)).await,
        Action::Retrieve => Box::pin(reinvite(ua, node, Direction::SendRecv)).await,
        Action::BlindTransfer {
            target_user,
            target_host,
        } => {
            let target = blind_target(ctx, ua, target_user, target_host)?;
            Box::pin(transfer(ua, node, &node.call_id, target, None)).await
        }
        Action::AttendedTransfer {
            primary_call_id,
            consult_call_id,
        } => {
            Box::pin(attended_transfer(
                ua,
                node,
                primary_call_id,
                consult_call_id,
            ))
            .await
        }
        // Waits on a call's events (its signals, digits, first RTP), INCOMING (the flow gives
        // it a held INVITE: take_incoming) and TIMEOUT: the flow decides them itself and never
        // hands them here; a MakeCall's INVITE is the flow's `Invite` (invite), a request's
        // (request) comes before this.
        Action::MakeCall { .. }
        | Action::SendRequest { .. }
        | Action::Subscribe { .. }
        | Action::Incoming { .. }
        | Action::DtmfReceived { .. }
        | Action::MediaFlowing
        | Action::Ringing
        | Action::Disconnected
        | Action::Held
        | Action::Retrieved
        | Action::Transferred
        | Action::Delay => Err(fail(format!(
            "{} is decided by the flow, not run by the driver",
            node.action.name()
        ))),
        Action::Reject { code, reason } => {
            Box::pin(reject(ua, node, *code, reason.as_deref())).await
        }
        Action::Cancel => Box::pin(cancel(ua, node)).await,
        Action::SendRinging => Box::pin(send_provisional(ua, node, false)).await,
        Action::SendProgress => Box::pin(send_provisional(ua, node, true)).await,
        Action::RequestReceived { method } => {
            Box::pin(request_received(ua, node, method.as_deref())).await
        }
        Action::PlayAudio { file } => Box::pin(play_audio(ctx, ua, node, file)).await,
        Action::SendDtmf { digits, interval } => {
            Box::pin(send_dtmf(ua, node, digits, *interval)).await
        }
        Action::PlaySignature { duration } => Box::pin(play_signature(ua, node, *duration)).await,
        Action::Record { file } => {
            let call = call_of(ua, node)?;
            let path = scenario::resolve_path(&ctx.scenario.file, file);
            node_log(
                ua,
                node,
                Level::Info,
                format!("recording what this party receives to {}", path.display()),
            );
            call.set_recording(path);
            Ok(())
        }
        Action::CheckMedia {
            max_loss_percent,
            max_jitter_ms,
            min_mos,
        } => {
            let bounds = flow::media::Bounds {
                max_loss: *max_loss_percent,
                max_jitter: *max_jitter_ms,
                min_mos: *min_mos,
            };
            Box::pin(check_media(ua, node, bounds)).await
        }
        Action::Heard { from } => Box::pin(heard(ctx, ua, node, from)).await,
        Action::Tone { frequency, absent } => Box::pin(tone(ua, node, *frequency, *absent)).await,
    }
}

/// A REQUEST (in a call or outside any) or a SUBSCRIBE: sends it and reports it sent, then its
/// final response; the flow keeps the node's timeout and decides on the response.
async fn request(
    ctx: &Arc<Ctx>,
    ua: &UaShared,
    at: NodeRef,
    node: &Step<'_>,
    report: Report<'_>,
) -> NodeResult {
    let (method, resp) = match &node.action {
        Action::SendRequest {
            method,
            content_type,
            body,
            target: Some(target),
        } => {
            let (uri, who) = resolve_target(ctx, ua, target)?;
            let resp = request_outside(
                ua,
                node,
                method,
                uri,
                &who,
                content_type.as_deref(),
                body.as_deref(),
                &|to| report(sent(at, to, &who)),
            )
            .await?;
            (method.as_str(), resp)
        }
        Action::SendRequest {
            method,
            content_type,
            body,
            target: None,
        } => {
            let resp = send_request(
                ua,
                node,
                method,
                content_type.as_deref(),
                body.as_deref(),
                &|| {
                    report(Input::Sent {
                        at,
                        call: None,
                        to: None,
                        who: None,
                    });
                },
            )
            .await?;
            (method.as_str(), resp)
        }
        Action::Subscribe {
            target,
            event,
            expires,
        } => {
            let (uri, who) = resolve_target(ctx, ua, target)?;
            report(sent(at, &uri, &who));
            (
                "SUBSCRIBE",
                subscribe(ua, node, uri, &who, event, *expires).await?,
            )
        }
        other => return Err(fail(format!("{} sends no request", other.name()))),
    };
    let code = resp.status_code.code();
    let response = final_of(node, &format!("the {code} to {method}"), &resp);
    report(Input::Final { at, response });
    Ok(())
}

/// A request of node `at` went to `to` (`who`).
fn sent(at: NodeRef, to: &Uri, who: &str) -> Input {
    Input::Sent {
        at,
        call: None,
        to: Some(to.to_string()),
        who: Some(who.to_owned()),
    }
}

/// The headers a node adds to its request (`headers:`), in order.
fn node_headers(node: &Step<'_>) -> Vec<transport::sip::Header> {
    node.opts
        .headers
        .iter()
        .map(|(n, v)| make_header(n, &node.expand(v)))
        .collect()
}

/// A log line about a node, on its UA and call.
fn node_log(ua: &UaShared, node: &Step<'_>, level: Level, message: String) {
    ua.log(level, Some(&node.id), Some(&node.call_id), message);
}

fn call_named(ua: &UaShared, iteration: Iteration, name: &str) -> Result<Arc<Call>, NodeError> {
    ua.sessions
        .get(ua.idx, iteration, name)
        .ok_or_else(|| NodeError::unbound(&ua.label, name))
}

fn call_of(ua: &UaShared, node: &Step<'_>) -> Result<Arc<Call>, NodeError> {
    call_named(ua, node.iteration, &node.call_id)
}

/// Waits (within the node's timeout) for an event on the call; returns it.
async fn wait_for(
    node: &Step<'_>,
    call: &Call,
    pred: impl Fn(&CallEvent) -> bool,
    consume: bool,
    what: Expecting,
) -> Result<CallEvent, NodeError> {
    within(node, what, async { Ok(call.wait(pred, consume).await.0) }).await
}

async fn wait_event(
    node: &Step<'_>,
    call: &Call,
    pred: impl Fn(&CallEvent) -> bool,
    consume: bool,
    what: Expecting,
) -> NodeResult {
    wait_for(node, call, pred, consume, what).await.map(|_| ())
}

/// Resolves a MakeCall target: a DN goes through the UA's PBX when it has one, else to the
/// instance with that DN; a full URI goes where it says. Returns the URI and who it is.
fn resolve_target(ctx: &Ctx, ua: &UaShared, target: &str) -> Result<(Uri, String), NodeError> {
    if let Some(pbx) = &ua.pbx
        && !target.contains(':')
    {
        let uri = pbx.uri_for(target);
        let who = ctx
            .registry
            .by_dn(target)
            .map_or_else(|| target.to_owned(), |e| e.label.clone());
        let parsed = Uri::try_from(uri.as_str())
            .map_err(|e| fail(format!("target `{uri}` is not a SIP URI: {e}")))?;
        return Ok((parsed, who));
    }
    let (uri, who) = match ctx.registry.resolve(target) {
        instances::Target::Local { uri, label } => (uri, label),
        instances::Target::Uri(uri) => (uri, target.to_owned()),
    };
    let parsed = Uri::try_from(uri.as_str())
        .map_err(|e| fail(format!("target `{uri}` is not a SIP URI: {e}")))?;
    Ok((parsed, who))
}

/// Where a 3xx points (RFC 3261 §21.3): the URI of its first Contact.
fn redirect_target(resp: &transport::sip::Response) -> Option<Uri> {
    transport::header::name_addr_uri(&crate::routing::header_in(&resp.headers, "Contact")?)
}

/// A MakeCall's INVITE, as the flow asks for it ([`flow::chains::Action::Invite`]): placed
/// to `to` (a redirect's target) or to the node's own target, reported sent, then its final
/// response reported; the flow decides what it means (take it, ask again, follow, fail) and
/// keeps the node's timeout. `Ok`: everything is reported; `Err`: the INVITE could not go or
/// ended with no final response (the node's `Done`).
pub(crate) async fn invite(
    ctx: &Arc<Ctx>,
    at: NodeRef,
    to: Option<String>,
    session_expires: Option<u32>,
    report: Report<'_>,
) -> NodeResult {
    let node = &Step::of(ctx, at);
    let ua = ctx.ua(node.instance, at.iteration);
    let Action::MakeCall { target } = &node.action else {
        return Err(fail(format!("{} sends no INVITE", node.action.name())));
    };
    let (callee, who) = match to {
        Some(to) => (
            Uri::try_from(to.as_str()).map_err(|e| fail(format!("redirect to `{to}`: {e}")))?,
            to,
        ),
        None => resolve_target(ctx, ua, &node.expand(target))?,
    };
    // A load's user of this iteration: the From user and the credential of its row.
    let account = node
        .data
        .zip(ua.pbx.as_ref())
        .and_then(|(d, p)| p.credential_for(d, node.iteration));
    let templated_dn = node
        .data
        .filter(|_| crate::data::templated(&ua.dn))
        .map(|d| d.expand(node.iteration, &ua.dn));
    let started = Instant::now();
    let mut headers: Vec<_> = node_headers(node);
    if let Some(s) = session_expires {
        headers.push(make_header("Session-Expires", &s.to_string()));
        headers.push(make_header("Min-SE", &ua.min_se.min(s).to_string()));
    }
    let opts = CallOptions {
        headers,
        display_name: node.opts.display_name.clone(),
        from_user: node
            .opts
            .from_user
            .as_deref()
            .map(|u| node.expand(u))
            .or_else(|| account.as_ref().map(|(u, _)| u.clone()))
            .or(templated_dn),
        late_offer: node.opts.late_offer,
        credential: account.and_then(|(_, c)| c),
    };
    let (call, join) = ua
        .place_call(Some((node.iteration, &node.call_id)), callee.clone(), opts)
        .map_err(fail)?;
    node_log(ua, node, Level::Info, format!("calling {who} ({callee})"));
    report(Input::Sent {
        at,
        call: Some(call.key.0),
        to: Some(callee.to_string()),
        who: Some(who.clone()),
    });
    // `until: sent` or `ringing`: the flow decides on the call's signals; the transaction
    // goes on without us.
    if node.opts.until != Until::Answer {
        return Ok(());
    }
    let resp = match join.await {
        Ok(Ok((_, Some(resp)))) => resp,
        Ok(Ok((_, None))) => {
            return Err(fail(format!(
                "the INVITE to {who} ended with no final response"
            )));
        }
        Ok(Err(e)) => {
            // rsipstack's catch-all error writes itself `Error: ...`.
            let e = match e {
                transport::rsipstack::Error::Error(m) => m,
                other => other.to_string(),
            };
            call.mark_failed_locally(e.clone());
            return Err(fail(format!(
                "the INVITE to {who} failed after {}: {e}",
                secs(started.elapsed())
            )));
        }
        Err(e) => return Err(transport(format!("the INVITE task failed: {e}"))),
    };
    let code = resp.status_code.code();
    let success = (200..300).contains(&code);
    // Asked for or not: we say `Supported: timer`, so a UAS may set one (RFC 4028 §9).
    if success && let Some(t) = crate::session_timer::from_2xx(&resp, true) {
        ua.keep_session_timer(&call, t);
    }
    let redirect = (300..400).contains(&code);
    let response = Final {
        redirect: redirect
            .then(|| redirect_target(&resp).map(|u| u.to_string()))
            .flatten(),
        contact: redirect
            .then(|| crate::routing::header_in(&resp.headers, "Contact"))
            .flatten(),
        min_se: (code == 422)
            .then(|| crate::session_timer::min_se_of(&resp.headers))
            .flatten(),
        offerless: node.opts.late_offer && success && ua.late_unanswered(&call),
        ..final_of(node, &format!("the {code} from {who}"), &resp)
    };
    report(Input::Final { at, response });
    Ok(())
}

/// A final response to a node's request as the flow reads it, with the node's checks run on
/// it (`what` names it in their failure: "the 200 from bob").
fn final_of(node: &Step<'_>, what: &str, resp: &transport::sip::Response) -> Final {
    let checks = if node.opts.checks.is_empty() {
        Ok(())
    } else {
        checks::run(
            &node.opts.checks,
            what,
            &checks::headers_of(&resp.headers),
            &String::from_utf8_lossy(&resp.body),
        )
    };
    Final {
        checks,
        ..Final::of(resp.status_code.code(), resp.status_code.text())
    }
}

/// Reject, Ringing, Progress: the call must be incoming and not answered yet.
fn ringing_call(ua: &UaShared, node: &Step<'_>) -> Result<Arc<Call>, NodeError> {
    let call = call_of(ua, node)?;
    if call.role != Role::Incoming {
        return Err(state(format!(
            "`{}` is a call we placed; {} takes an incoming call",
            node.call_id,
            node.action.name()
        )));
    }
    if call.leg_state() != LegState::Early {
        return Err(state(format!(
            "`{}` is no longer ringing ({})",
            node.call_id,
            call.last_event()
                .map_or_else(String::new, |(e, _)| e.describe())
        )));
    }
    Ok(call)
}

async fn reject(ua: &UaShared, node: &Step<'_>, code: u16, reason: Option<&str>) -> NodeResult {
    let call = ringing_call(ua, node)?;
    call.dialog
        .reject(
            Some(StatusCode::from(code)),
            reason.map(|r| crate::calls::reason_value(code, r)),
        )
        .map_err(|e| transport(format!("cannot send {code}: {e}")))?;
    wait_event(
        node,
        &call,
        |e| matches!(e, CallEvent::Terminated { .. }),
        false,
        expecting(
            format!("the call to end after our {code}"),
            "it is still up",
        ),
    )
    .await
}

async fn cancel(ua: &UaShared, node: &Step<'_>) -> NodeResult {
    let call = call_of(ua, node)?;
    if call.role != Role::Outgoing || call.leg_state() != LegState::Early {
        return Err(state(format!(
            "`{}` is not an outgoing call still ringing: nothing to CANCEL",
            node.call_id
        )));
    }
    hang_up(node, &call).await
}

async fn send_provisional(ua: &UaShared, node: &Step<'_>, early_media: bool) -> NodeResult {
    if let Some(d) = node.opts.delay {
        tokio::time::sleep(d).await;
    }
    let call = ringing_call(ua, node)?;
    if early_media && crate::calls::late_offer(&call) {
        return Err(fail(
            "the INVITE carries no offer: early media would put ours in the 183, which RFC 3262 allows only in a reliable provisional; send RINGING, or Answer (our offer goes in the 200)",
        ));
    }
    let sdp = if early_media {
        Some(ua.answer_sdp(&call).map_err(fail)?)
    } else {
        None
    };
    if call.provisionals_reliable()
        && let Some((rseq, _)) = call.unacked_provisional()
    {
        node.at_timeout(move |waited| {
            Err(fail(format!(
                "the reliable provisional response before this one (RSeq {rseq}) got no PRACK within {}, and RFC 3262 §3 allows one at a time",
                secs(waited)
            )))
        });
    }
    ua.send_provisional(&call, sdp, node.timeout)
        .await
        .map_err(fail)
}

/// A request in the node's call; its final response.
async fn send_request(
    ua: &UaShared,
    node: &Step<'_>,
    method: &str,
    content_type: Option<&str>,
    body: Option<&str>,
    on_sent: &(dyn Fn() + Send + Sync),
) -> Result<transport::sip::Response, NodeError> {
    let call = call_of(ua, node)?;
    if call.leg_state() != LegState::Confirmed {
        return Err(state(format!(
            "`{}` is not an established call",
            node.call_id
        )));
    }
    let m = method_of(method);
    let mut headers: Vec<_> = node_headers(node);
    // An UPDATE without a body of its own is a new offer of our SDP (RFC 3311 §5.1), in the
    // direction the call has now, its version bumped.
    let offer = (m == Method::Update && body.is_none()).then(|| {
        let ours = call
            .local_sdp()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        sdp::with_direction(&ours, sdp::direction(&ours))
    });
    let (content_type, body) = match &offer {
        Some(o) => (Some("application/sdp"), Some(o.as_str())),
        None => (content_type, body),
    };
    if body.is_some() {
        headers.push(make_header(
            "Content-Type",
            content_type.unwrap_or("text/plain"),
        ));
    }
    let sent = call
        .dialog
        .request(m, Some(headers), body.map(|b| b.as_bytes().to_vec()));
    on_sent();
    let resp = sent
        .await
        .map_err(|e| transport(format!("{method} failed: {e}")))?
        .ok_or_else(|| state(format!("the call is not confirmed: no {method} sent")))?;
    let body = String::from_utf8_lossy(&resp.body);
    if let Some(offer) = offer
        && resp.status_code.kind() == transport::sip::StatusCodeKind::Successful
        && !body.trim().is_empty()
    {
        call.set_local_sdp(offer.into_bytes());
        ua.apply_remote_sdp(&call, &body);
    }
    Ok(resp)
}

/// The method a SendRequest names (the scenario reader only makes INFO, MESSAGE, OPTIONS,
/// NOTIFY and UPDATE).
fn method_of(name: &str) -> Method {
    name.parse().unwrap_or(Method::Options)
}

/// Sends `method` to `uri` outside any dialog; its final response.
#[allow(clippy::too_many_arguments)]
async fn request_outside(
    ua: &UaShared,
    node: &Step<'_>,
    method: &str,
    uri: Uri,
    who: &str,
    content_type: Option<&str>,
    body: Option<&str>,
    on_sent: &(dyn Fn(&Uri) + Send + Sync),
) -> Result<transport::sip::Response, NodeError> {
    let m = method_of(method);
    node_log(
        ua,
        node,
        Level::Info,
        format!("{method} to {who} ({uri}), outside any call"),
    );
    let headers = node_headers(node);
    on_sent(&uri);
    let out = crate::requests::Outgoing {
        method: m,
        uri,
        dialog: None,
        cseq: 1,
        headers,
        content_type: content_type.map(str::to_owned),
        body: body.map(|b| b.as_bytes().to_vec()),
    };
    ua.send_outside(out).await.map_err(fail)
}

/// Subscribe: SUBSCRIBE to `event` at `uri`, binding the node's call id to the subscription;
/// its final response.
async fn subscribe(
    ua: &UaShared,
    node: &Step<'_>,
    uri: Uri,
    who: &str,
    event: &str,
    expires: Duration,
) -> Result<transport::sip::Response, NodeError> {
    node_log(
        ua,
        node,
        Level::Info,
        format!(
            "subscribing to {event} at {who} ({uri}) for {}",
            secs(expires)
        ),
    );
    let headers = node_headers(node);
    let (_, resp) = ua
        .subscribe(&node.call_id, uri, event, expires, headers)
        .await
        .map_err(fail)?;
    Ok(resp)
}

async fn request_received(ua: &UaShared, node: &Step<'_>, method: Option<&str>) -> NodeResult {
    let wanted = |e: &CallEvent| matches!(e, CallEvent::Request { method: m, .. } if method.is_none_or(|want| want.eq_ignore_ascii_case(m)));
    let kind = method.unwrap_or("a request");
    // The call the node's call id names, else its subscription, else the UA's inbox.
    let call = ua.sessions.get(ua.idx, node.iteration, &node.call_id);
    let sub = ua.subscription(&node.call_id);
    let (log, what) = match (&call, &sub) {
        (Some(c), _) => (
            c.latched(),
            expecting(format!("{kind} on `{}`", node.call_id), "none came"),
        ),
        (None, Some(s)) => (
            &s.log,
            expecting(
                format!("{kind} in the {} subscription `{}`", s.event, node.call_id),
                "none came",
            ),
        ),
        (None, None) => (
            &ua.inbox,
            expecting(
                format!("{kind} to {} outside any call", ua.label),
                format!(
                    "none came (`{}` names no call or subscription)",
                    node.call_id
                ),
            ),
        ),
    };
    let got = within(node, what, async { Ok(log.wait(wanted, true).await.0) }).await?;
    match got {
        CallEvent::Request {
            method,
            body,
            headers,
            ..
        } => checks::run(&node.opts.checks, &format!("the {method}"), &headers, &body)
            .map_err(checks_failed),
        _ => Ok(()),
    }
}

/// An INCOMING takes the incoming call `key` the flow gave it: binds it to the node's call id
/// in its iteration and checks the INVITE.
pub(crate) fn take_incoming(ctx: &Ctx, at: NodeRef, key: session::CallKey) -> NodeResult {
    let node = &Step::of(ctx, at);
    let ua = ctx.ua(node.instance, at.iteration);
    let Some(call) = ua
        .sessions
        .take_incoming(ua.idx, key, node.iteration, &node.call_id)
    else {
        return Err(state(
            "the INVITE given to this INCOMING was refused (480, unclaimed) just before",
        ));
    };
    node_log(
        ua,
        node,
        Level::Info,
        format!("took incoming call {}", call.sip_call_id()),
    );
    let invite = call.dialog.initial_request();
    checks::run(
        &node.opts.checks,
        "the INVITE",
        &checks::headers_of(&invite.headers),
        &String::from_utf8_lossy(&invite.body),
    )
    .map_err(checks_failed)
}

async fn answer(ua: &Arc<UaShared>, node: &Step<'_>) -> NodeResult {
    let call = call_of(ua, node)?;
    if call.role != Role::Incoming {
        return Err(state(format!(
            "`{}` is a call we placed; Answer takes an incoming call",
            node.call_id
        )));
    }
    if let Some((CallEvent::Terminated { reason, .. }, _)) = call.last_event() {
        return Err(state(format!(
            "the call ended before it was answered: {reason}"
        )));
    }
    // RFC 3262 §3: no 2xx before the PRACK of a reliable provisional response with SDP.
    if let Some((rseq, true)) = call.unacked_provisional() {
        within(
            node,
            expecting(
                format!("a PRACK for the reliable 183 (RSeq {rseq})"),
                "none came, so no 200 can follow it (RFC 3262 §3)",
            ),
            async {
                call.wait_pracked().await;
                Ok(())
            },
        )
        .await?;
    }
    let answer = match ua.answer_sdp(&call) {
        Ok(a) => a,
        Err(e) => {
            let _ = call.dialog.reject(
                Some(StatusCode::NotAcceptableHere),
                Some(crate::calls::reason_value(488, &e)),
            );
            return Err(fail(format!(
                "cannot answer: {e}; rejected with 488 Not Acceptable Here"
            )));
        }
    };
    // A session timer the INVITE asked for (RFC 4028 §9); one below our Min-SE got 422.
    let timer = crate::session_timer::uas_decide(&call.dialog.initial_request(), ua.min_se);
    let mut headers = vec![sdp_header()];
    headers.extend(crate::session_timer::agreed_headers(&timer));
    call.dialog
        .accept(
            Some(crate::calls::with_capabilities(ua.rel100, headers)),
            Some(answer.into_bytes()),
        )
        .map_err(|e| transport(format!("cannot send 200 OK: {e}")))?;
    if let Some(t) = timer.timer() {
        ua.keep_session_timer(&call, t);
    }
    let what = expecting("an ACK to our 200 OK", "none came");
    let settled = |e: &CallEvent| {
        matches!(
            e,
            CallEvent::Confirmed { .. } | CallEvent::Terminated { .. } | CallEvent::Replaced
        )
    };
    let after = match wait_for(node, &call, settled, false, what).await? {
        CallEvent::Confirmed { .. } => AfterAnswer::Acked,
        CallEvent::Replaced => AfterAnswer::Replaced,
        CallEvent::Terminated {
            cause: EndCause::Bye,
            by_peer: true,
            ..
        } => AfterAnswer::ByeFromPeer,
        other => AfterAnswer::Ended(other.describe()),
    };
    flow::calls::answered(&after)
}

/// Hangs up `call` as its state says and waits for it to end.
async fn hang_up(node: &Step<'_>, call: &Arc<Call>) -> NodeResult {
    let action = hangup_action(call.role, call.leg_state());
    let what = match action {
        HangupAction::Bye => "BYE".to_owned(),
        // RFC 3261 §9.1: no CANCEL before a provisional response; rsipstack holds it back.
        HangupAction::Cancel if call.unanswered() => {
            "no response to the INVITE yet, so its CANCEL is held back until one comes (RFC 3261 §9.1); nothing was".to_owned()
        }
        HangupAction::Cancel => "CANCEL".to_owned(),
        HangupAction::Reject(code) => format!("{code} to the ringing call"),
        HangupAction::Nothing => return Ok(()),
    };
    let sent = call.start_hang_up(action);
    let work = async {
        match sent.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(transport(format!("{what} failed: {e}"))),
            Err(e) => return Err(transport(format!("{what} task failed: {e}"))),
        }
        call.wait(|e| matches!(e, CallEvent::Terminated { .. }), false)
            .await;
        Ok(())
    };
    within(
        node,
        expecting(
            format!("the call to end after our {what}"),
            "it is still up",
        ),
        work,
    )
    .await
}

async fn release(ua: &UaShared, node: &Step<'_>) -> NodeResult {
    let call = call_of(ua, node)?;
    if call.leg_state() == LegState::Terminated {
        node_log(ua, node, Level::Info, "the call had already ended".into());
        return Ok(());
    }
    hang_up(node, &call).await
}

/// Hold (`sendonly`) or Retrieve (`sendrecv`): a re-INVITE with our SDP in that direction.
async fn reinvite(ua: &UaShared, node: &Step<'_>, dir: Direction) -> NodeResult {
    let call = call_of(ua, node)?;
    if call.leg_state() != LegState::Confirmed {
        return Err(state(format!(
            "`{}` is not an established call",
            node.call_id
        )));
    }
    let ours = call
        .local_sdp()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let offer = sdp::with_direction(&ours, dir);
    let sent = call
        .dialog
        .reinvite(Some(vec![sdp_header()]), Some(offer.clone().into_bytes()));
    let what = expecting(
        format!("a final response to our re-INVITE ({})", dir.as_str()),
        "none came",
    );
    let resp = within(node, what, async {
        sent.await
            .map_err(|e| transport(format!("re-INVITE failed: {e}")))
    })
    .await?;
    let Some(resp) = resp else {
        return Err(state("the call is not confirmed: no re-INVITE sent"));
    };
    let code = resp.status_code.code();
    if !(200..300).contains(&code) {
        return Err(NodeError::status(
            format!("2xx to our re-INVITE ({})", dir.as_str()),
            "the peer",
            format!("{code} {}", resp.status_code.text()),
        ));
    }
    call.set_local_sdp(offer.into_bytes());
    call.set_held_by_us(dir.is_hold());
    let answer = String::from_utf8_lossy(&resp.body);
    let answered = sdp::direction(&answer);
    if !answer.trim().is_empty() {
        ua.apply_remote_sdp(&call, &answer);
    }
    node_log(
        ua,
        node,
        Level::Info,
        format!(
            "re-INVITE {}: answered {code} with {}",
            dir.as_str(),
            answered.as_str()
        ),
    );
    Ok(())
}

/// BlindTransfer's target: the DN of an instance of this run (its address is known only now),
/// or `sip:user@host`.
fn blind_target(ctx: &Ctx, ua: &UaShared, user: &str, host: &str) -> Result<Uri, NodeError> {
    let host = host.trim();
    // Through a PBX, a bare DN is transferred to that DN at the PBX.
    if let Some(pbx) = &ua.pbx
        && host.is_empty()
    {
        let uri = pbx.uri_for(user);
        return Uri::try_from(uri.as_str())
            .map_err(|e| fail(format!("bad transfer target {uri}: {e}")));
    }
    let local = ctx
        .registry
        .by_dn(user)
        .filter(|_| host.is_empty() || !host.contains(':') || host.starts_with('['));
    let uri = match local {
        Some(e)
            if host.is_empty()
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip == e.local.ip())
                || host == "localhost" =>
        {
            e.uri_for(user)
        }
        _ if host.is_empty() => {
            return Err(fail(format!(
                "transfer target `{user}` is the DN of no instance, and no host is given"
            )));
        }
        _ => format!("sip:{user}@{host}"),
    };
    Uri::try_from(uri.as_str()).map_err(|e| fail(format!("bad transfer target {uri}: {e}")))
}

/// Sends REFER on the call named `primary`, follows the NOTIFYs to a final status, then hangs
/// up the call (and `also_end`, for an attended transfer).
async fn transfer(
    ua: &UaShared,
    node: &Step<'_>,
    primary: &str,
    refer_to: Uri,
    also_end: Option<Arc<Call>>,
) -> NodeResult {
    let call = call_named(ua, node.iteration, primary)?;
    if call.leg_state() != LegState::Confirmed {
        return Err(state(format!("`{primary}` is not an established call")));
    }
    let started = Instant::now();
    let refer_to_text = refer_to.to_string();
    let work = async {
        let resp = call
            .dialog
            .refer(format!("<{refer_to_text}>"), None, None)
            .await
            .map_err(|e| transport(format!("REFER failed: {e}")))?
            .ok_or_else(|| state("the call is not confirmed: no REFER sent"))?;
        let code = resp.status_code.code();
        if !(200..300).contains(&code) {
            return Err(fail(format!(
                "REFER answered {code} {}",
                resp.status_code.text()
            )));
        }
        node_log(
            ua,
            node,
            Level::Info,
            format!(
                "REFER to {refer_to_text}: {code} {}",
                resp.status_code.text()
            ),
        );
        loop {
            match call
                .wait(|e| matches!(e, CallEvent::ReferProgress { .. }), true)
                .await
                .0
            {
                CallEvent::ReferProgress { code, last: true }
                | CallEvent::ReferProgress {
                    code: code @ 200..=699,
                    ..
                } => {
                    return Ok(code);
                }
                _ => {}
            }
        }
    };
    let what = expecting(
        format!("the transfer to {refer_to_text} to complete (a final NOTIFY)"),
        "it did not",
    );
    let code = within(node, what, work).await?;
    if !(200..300).contains(&code) {
        return Err(fail(format!(
            "the transfer target answered {code} at {}; the call stays up",
            secs(started.elapsed())
        )));
    }
    hang_up(node, &call).await?;
    if let Some(other) = also_end
        && other.leg_state() != LegState::Terminated
        && !other.hangup_started()
    {
        hang_up(node, &other).await?;
    }
    Ok(())
}

/// Attended transfer: REFER on the primary call with Refer-To pointing at the consultation
/// call's peer, carrying Replaces for that call (RFC 3891), then BYE on both calls.
async fn attended_transfer(
    ua: &UaShared,
    node: &Step<'_>,
    primary: &str,
    consult: &str,
) -> NodeResult {
    let consult_call = call_named(ua, node.iteration, consult)?;
    if consult_call.leg_state() != LegState::Confirmed {
        return Err(fail(format!(
            "the consultation call `{consult}` is not established"
        )));
    }
    let id = consult_call.dialog.id();
    let contact = Dialog::Invite(consult_call.dialog.clone())
        .remote_contact()
        .ok_or_else(|| {
            fail(format!(
                "the consultation call `{consult}` has no remote Contact"
            ))
        })?;
    // The target's own tag is our remote tag: it goes in to-tag.
    let replaces = format!(
        "{};to-tag={};from-tag={}",
        id.call_id, id.remote_tag, id.local_tag
    );
    let mut target = contact.clone();
    target
        .headers
        .push(("Replaces".to_owned(), escape(&replaces)));
    transfer(ua, node, primary, target, Some(consult_call)).await
}

/// Percent-encodes a URI header value (RFC 3261 §25.1 `hvalue`).
fn escape(v: &str) -> String {
    v.chars()
        .map(|c| match c {
            'a'..='z'
            | 'A'..='Z'
            | '0'..='9'
            | '-'
            | '_'
            | '.'
            | '!'
            | '~'
            | '*'
            | '\''
            | '('
            | ')'
            | '['
            | ']'
            | '/'
            | '?'
            | ':'
            | '+'
            | '$' => c.to_string(),
            other => other
                .to_string()
                .bytes()
                .map(|b| format!("%{b:02X}"))
                .collect(),
        })
        .collect()
}

/// The call's media, waiting (within the node's timeout) for it to start.
async fn media_of(
    ua: &UaShared,
    node: &Step<'_>,
) -> Result<(Arc<Call>, Arc<MediaSession>), NodeError> {
    let call = call_of(ua, node)?;
    let what = expecting(
        format!(
            "`{}` to have media (a confirmed call with SDP)",
            node.call_id
        ),
        "it had none",
    );
    let m = within(node, what, async { Ok(call.wait_media().await) }).await?;
    Ok((call, m))
}

/// The analysis windows (100 ms, overlapping by half) that became complete since the last call;
/// `cursor` is where the next window starts.
fn new_windows(m: &MediaSession, cursor: &mut usize) -> Vec<Vec<i16>> {
    const WIN: usize = 800;
    let audio = m.audio_since(*cursor);
    let mut out = Vec::new();
    let mut at = 0;
    while at + WIN <= audio.len() {
        out.push(audio[at..at + WIN].to_vec());
        at += WIN / 2;
    }
    *cursor += at;
    out
}

pub(crate) async fn play_audio(
    ctx: &Ctx,
    ua: &UaShared,
    node: &Step<'_>,
    file: &str,
) -> NodeResult {
    let path = scenario::resolve_path(&ctx.scenario.file, file);
    let (_, m) = media_of(ua, node).await?;
    // At the call's audio rate: a wideband file stays wideband on a G.722 or Opus call.
    let rate = m.codec().audio_rate();
    let samples = media::wav::load_at(&path, rate).map_err(|e| fail(e.to_string()))?;
    let secs_long = samples.len() as f64 / f64::from(rate);
    node_log(
        ua,
        node,
        Level::Info,
        format!(
            "playing {} ({secs_long:.2} s{})",
            path.display(),
            if node.opts.looped { ", looped" } else { "" }
        ),
    );
    if node.opts.looped {
        // Plays until the node's timeout, then passes; ending the task stops it.
        node.at_timeout(|_| Ok(()));
        m.play_at(samples, rate, true).await;
        return Ok(());
    }
    within(
        node,
        expecting(
            format!("playing {} to finish", path.display()),
            "it had not",
        ),
        async {
            if m.play_at(samples, rate, false).await {
                Ok(())
            } else {
                Err(state("the call ended while playing"))
            }
        },
    )
    .await
}

async fn send_dtmf(ua: &UaShared, node: &Step<'_>, digits: &str, gap: Duration) -> NodeResult {
    let tone = Duration::from_millis(100);
    if node.opts.dtmf_info {
        let call = call_of(ua, node)?;
        let work = async {
            for (i, d) in digits.chars().enumerate() {
                if i > 0 {
                    tokio::time::sleep(gap).await;
                }
                let headers = vec![make_header("Content-Type", "application/dtmf-relay")];
                let body = format!("Signal={d}\r\nDuration={}\r\n", tone.as_millis()).into_bytes();
                let resp = call
                    .dialog
                    .info(Some(headers), Some(body))
                    .await
                    .map_err(|e| transport(format!("INFO failed: {e}")))?;
                match resp.map(|r| r.status_code.code()) {
                    Some(200..=299) => {}
                    Some(code) => {
                        return Err(NodeError::status(
                            format!("2xx to our INFO with digit {d}"),
                            "the peer",
                            code.to_string(),
                        ));
                    }
                    None => return Err(state("the call is not confirmed: no INFO sent")),
                }
            }
            Ok(())
        };
        return within(
            node,
            expecting(
                format!("sending DTMF {digits} by SIP INFO to finish"),
                "it had not",
            ),
            work,
        )
        .await;
    }
    let (_, m) = media_of(ua, node).await?;
    within(
        node,
        expecting(format!("sending DTMF {digits} to finish"), "it had not"),
        async {
            if m.send_dtmf(digits, tone, gap).await {
                Ok(())
            } else {
                Err(state("the call ended while sending DTMF"))
            }
        },
    )
    .await
}

async fn play_signature(ua: &UaShared, node: &Step<'_>, duration: Duration) -> NodeResult {
    let (_, m) = media_of(ua, node).await?;
    let sig = media::audio::signature(ua.idx);
    let samples = media::audio::tone(&sig, duration.as_millis() as u32);
    within(
        node,
        expecting("playing the signature to finish", "it had not"),
        async {
            if m.play(samples, false).await {
                Ok(())
            } else {
                Err(state("the call ended while playing the signature"))
            }
        },
    )
    .await
}

/// The index of the instance a `from` names (id, label or DN).
fn instance_named(ctx: &Ctx, from: &str) -> Option<usize> {
    ctx.scenario
        .instances
        .iter()
        .position(|i| i.id == from || i.label == from || i.dn == from)
}

async fn heard(ctx: &Ctx, ua: &UaShared, node: &Step<'_>, from: &str) -> NodeResult {
    let want =
        instance_named(ctx, from).ok_or_else(|| fail(format!("`{from}` names no instance")))?;
    let (_, m) = media_of(ua, node).await?;
    let candidates: Vec<(usize, [f64; 2])> = (0..ctx.scenario.instances.len())
        .map(|i| (i, media::audio::signature(i)))
        .collect();
    let mut cursor = 0;
    // The other parties heard so far: what a failure at the node's timeout names.
    let others = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let labels: Vec<String> = ctx
        .scenario
        .instances
        .iter()
        .map(|i| i.label.clone())
        .collect();
    let (heard, media) = (others.clone(), m.clone());
    node.at_timeout(move |waited| {
        let expected = format!("to hear {}", labels[want]);
        let heard = heard.lock().expect("heard lock");
        let got = if heard.is_empty() {
            let level = media::audio::level_dbfs(
                &media.audio_since(media.audio_len().saturating_sub(8000)),
            );
            format!("heard no signature (level {level:.0} dBFS)")
        } else {
            let names: Vec<&str> = heard.iter().map(|i: &usize| labels[*i].as_str()).collect();
            format!("heard {} instead", names.join(" and "))
        };
        Err(NodeError::media(expected, Some(waited), got))
    });
    m.wait_until(|m| {
        let mut hit = false;
        for w in new_windows(m, &mut cursor) {
            match media::audio::which_signature(&w, &candidates) {
                Some(i) if i == want => hit = true,
                Some(i) => {
                    others.lock().expect("heard lock").insert(i);
                }
                None => {}
            }
        }
        hit
    })
    .await;
    Ok(())
}

async fn tone(ua: &UaShared, node: &Step<'_>, frequency: f64, absent: bool) -> NodeResult {
    let (_, m) = media_of(ua, node).await?;
    let mut cursor = if absent { m.audio_len() } else { 0 };
    // Not heard by the node's timeout: absent passes, present fails.
    node.at_timeout(move |waited| flow::media::tone_verdict(false, absent, frequency, waited));
    m.wait_until(|m| {
        new_windows(m, &mut cursor)
            .iter()
            .any(|w| media::audio::tone_present(w, frequency))
    })
    .await;
    flow::media::tone_verdict(true, absent, frequency, node.timeout)
}

async fn check_media(ua: &UaShared, node: &Step<'_>, bounds: flow::media::Bounds) -> NodeResult {
    let (_, m) = media_of(ua, node).await?;
    let s = m.stats();
    let quality = crate::calls::quality_of(&m, &s);
    node_log(
        ua,
        node,
        Level::Info,
        format!(
            "RTP: {} sent, {} received, {} lost, jitter {:.2} ms, MOS {:.2}",
            s.packets_sent, s.packets_received, s.lost, s.jitter_ms, quality.mos_lq
        ),
    );
    let received = flow::media::Received {
        sent: s.packets_sent,
        received: s.packets_received,
        lost: s.lost,
        loss_percent: s.loss_percent(),
        jitter_ms: s.jitter_ms,
        mos: quality.mos_lq,
    };
    flow::media::check_verdict(received, &m.remote().to_string(), bounds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_is_escaped_for_a_uri_header() {
        assert_eq!(
            escape("abc@h;to-tag=1;from-tag=2"),
            "abc%40h%3Bto-tag%3D1%3Bfrom-tag%3D2"
        );
    }
}

#[cfg(test)]
mod future_sizes {
    use super::*;

    /// The size of the future of an async fn of four arguments.
    fn of<F, A, B, C, D, Fut>(_: F) -> usize
    where
        F: Fn(A, B, C, D) -> Fut,
    {
        size_of::<Fut>()
    }

    fn of5<F, A, B, C, D, E, Fut>(_: F) -> usize
    where
        F: Fn(A, B, C, D, E) -> Fut,
    {
        size_of::<Fut>()
    }

    /// `execute` is moved into a task for every node a load runs: its future must stay small
    /// (each kind's is boxed), or every node pays a copy of the largest kind's.
    #[test]
    fn a_nodes_future_is_small() {
        let size = of(execute);
        assert!(size <= 256, "execute's future is {size} bytes");
        // A MakeCall's INVITE is a task of its own, unboxed.
        let size = of5(invite);
        assert!(size <= 1024, "invite's future is {size} bytes");
    }
}
