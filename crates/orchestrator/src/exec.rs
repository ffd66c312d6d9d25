//! What each command and event does.

use crate::engine::{Ctx, NodeError};
use crate::ua::log;
use events::Level;
use media::sdp::{self, Codec, LocalMedia};
use scenario::{Action, Node, NodeIdx};
use session::{Call, CallEvent, EndCause, HangupAction, Role, hangup_action};
use std::sync::Arc;
use std::time::{Duration, Instant};
use transport::rsipstack::dialog::invitation::InviteOption;
use transport::sip::{Header, StatusCode, Uri};

type NodeResult = Result<(), NodeError>;

fn fail(msg: impl Into<String>) -> NodeError {
    NodeError::Failed(msg.into())
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 10.0 || s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.2} s")
    }
}

pub(crate) async fn execute(ctx: &Arc<Ctx>, idx: NodeIdx) -> NodeResult {
    let node = &ctx.scenario.nodes[idx];
    match &node.action {
        Action::MakeCall { target } => make_call(ctx, node, target).await,
        Action::Answer => answer(ctx, node).await,
        Action::Release => release(ctx, node).await,
        Action::Incoming { .. } => incoming(ctx, node).await,
        Action::Ringing => ringing(ctx, node).await,
        Action::Disconnected => disconnected(ctx, node).await,
        Action::Delay => {
            tokio::time::sleep(node.timeout).await;
            Ok(())
        }
        other => Err(fail(format!(
            "{} is not supported by this version",
            other.name()
        ))),
    }
}

/// A log line about a node, on its UA and call.
fn node_log(ctx: &Ctx, node: &Node, level: Level, message: String) {
    let ua = &ctx.uas[node.instance];
    log(
        &ctx.bus,
        level,
        Some(&ua.id),
        Some(&node.id),
        Some(&node.call_id),
        message,
    );
}

fn call_of(ctx: &Ctx, node: &Node) -> Result<Arc<Call>, NodeError> {
    ctx.sessions
        .get(node.instance, &node.call_id)
        .ok_or_else(|| {
            fail(format!(
                "{} has no call `{}`: a MakeCall or INCOMING node must bind it first",
                ctx.registry.get(node.instance).label,
                node.call_id
            ))
        })
}

/// Leases an RTP port for a call and builds our media description.
fn local_media(
    ctx: &Ctx,
    node: &Node,
) -> Result<(instances::PortLease, std::net::UdpSocket, LocalMedia), NodeError> {
    let ip = ctx.bind_ip;
    let (lease, sock) = ctx
        .rtp
        .lease(|port| {
            let s = std::net::UdpSocket::bind((ip, port))?;
            let p = s.local_addr()?.port();
            Ok::<_, std::io::Error>((s, p))
        })
        .map_err(|e| fail(format!("no RTP port: {e}")))?;
    let inst = &ctx.scenario.instances[node.instance];
    let codecs: Vec<Codec> = inst
        .codecs
        .iter()
        .filter_map(|c| Codec::from_name(c))
        .collect();
    let media = LocalMedia {
        ip,
        rtp_port: lease.port(),
        codecs,
        session_id: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs()),
    };
    Ok((lease, sock, media))
}

/// Resolves a MakeCall target: another instance's DN, or a full URI. Returns the URI and who it is.
fn resolve_target(ctx: &Ctx, target: &str) -> Result<(Uri, String), NodeError> {
    let (uri, who) = match ctx.registry.resolve(target) {
        instances::Target::Local { uri, label } => (uri, label),
        instances::Target::Uri(uri) => (uri, target.to_owned()),
    };
    let parsed = Uri::try_from(uri.as_str())
        .map_err(|e| fail(format!("target `{uri}` is not a SIP URI: {e}")))?;
    Ok((parsed, who))
}

async fn make_call(ctx: &Arc<Ctx>, node: &Node, target: &str) -> NodeResult {
    let ua = &ctx.uas[node.instance];
    let (callee, who) = resolve_target(ctx, target)?;
    let (lease, sock, media) = local_media(ctx, node)?;
    let offer = sdp::offer(&media);
    let caller = Uri::try_from(ctx.registry.get(node.instance).uri_for(&ua.dn).as_str())
        .map_err(|e| fail(format!("bad caller URI: {e}")))?;
    let opt = InviteOption {
        caller,
        callee: callee.clone(),
        contact: ua.contact.clone(),
        content_type: Some("application/sdp".to_owned()),
        offer: Some(offer.clone().into_bytes()),
        ..Default::default()
    };
    let started = Instant::now();
    let (dialog, join) = ua
        .dialogs
        .do_invite_async(opt, ua.state_tx.clone())
        .map_err(|e| fail(format!("cannot send INVITE to {callee}: {e}")))?;
    let call = ctx
        .sessions
        .insert_outgoing(node.instance, &node.call_id, dialog);
    call.set_local_sdp(offer.into_bytes());
    ctx.rtp_leases
        .lock()
        .expect("rtp lock")
        .insert(call.key, (lease, sock));
    node_log(ctx, node, Level::Info, format!("calling {who} ({callee})"));

    match tokio::time::timeout(node.timeout, join).await {
        Ok(Ok(Ok((_, Some(resp))))) => {
            let code = resp.status_code.code();
            if (200..300).contains(&code) {
                Ok(())
            } else {
                Err(fail(format!(
                    "expected 2xx from {who} within {}, got {code} {} at {}",
                    secs(node.timeout),
                    resp.status_code.text(),
                    secs(started.elapsed())
                )))
            }
        }
        Ok(Ok(Ok((_, None)))) => Err(fail(format!(
            "the INVITE to {who} ended with no final response"
        ))),
        Ok(Ok(Err(e))) => Err(fail(format!(
            "the INVITE to {who} failed after {}: {e}",
            secs(started.elapsed())
        ))),
        Ok(Err(e)) => Err(fail(format!("the INVITE task failed: {e}"))),
        Err(_) => {
            let last = call
                .events()
                .into_iter()
                .rev()
                .find_map(|(e, at)| match e {
                    CallEvent::Provisional { code, reason } => {
                        Some(format!("{code} {reason} at {}", secs(at - started)))
                    }
                    _ => None,
                })
                .unwrap_or_else(|| "no provisional response".to_owned());
            Err(fail(format!(
                "expected 2xx from {who} within {}; last: {last}; the call is still ringing",
                secs(node.timeout)
            )))
        }
    }
}

async fn incoming(ctx: &Arc<Ctx>, node: &Node) -> NodeResult {
    match tokio::time::timeout(
        node.timeout,
        ctx.sessions.next_incoming(node.instance, &node.call_id),
    )
    .await
    {
        Ok(call) => {
            node_log(
                ctx,
                node,
                Level::Info,
                format!("took incoming call {}", call.sip_call_id()),
            );
            Ok(())
        }
        Err(_) => Err(fail(format!(
            "expected an INVITE to {} within {}, none came",
            ctx.registry.get(node.instance).label,
            secs(node.timeout)
        ))),
    }
}

async fn answer(ctx: &Arc<Ctx>, node: &Node) -> NodeResult {
    let call = call_of(ctx, node)?;
    if call.role != Role::Incoming {
        return Err(fail(format!(
            "`{}` is a call we placed; Answer takes an incoming call",
            node.call_id
        )));
    }
    if let Some((CallEvent::Terminated { reason, .. }, _)) = call.last_event() {
        return Err(fail(format!(
            "the call ended before it was answered: {reason}"
        )));
    }
    let offer = String::from_utf8_lossy(&call.dialog.initial_request().body).into_owned();
    let (lease, sock, media) = local_media(ctx, node)?;
    let answer = match sdp::answer(&offer, &media) {
        Ok(a) => a,
        Err(e) => {
            let _ = call
                .dialog
                .reject(Some(StatusCode::NotAcceptableHere), Some(e.to_string()));
            return Err(fail(format!(
                "cannot answer: {e}; rejected with 488 Not Acceptable Here"
            )));
        }
    };
    ctx.rtp_leases
        .lock()
        .expect("rtp lock")
        .insert(call.key, (lease, sock));
    call.set_local_sdp(answer.clone().into_bytes());
    call.dialog
        .accept(
            Some(vec![Header::ContentType("application/sdp".into())]),
            Some(answer.into_bytes()),
        )
        .map_err(|e| fail(format!("cannot send 200 OK: {e}")))?;
    let wait = call.wait(
        |e| {
            matches!(
                e,
                CallEvent::Confirmed { .. } | CallEvent::Terminated { .. }
            )
        },
        false,
    );
    match tokio::time::timeout(node.timeout, wait).await {
        Ok((CallEvent::Confirmed { .. }, _)) => Ok(()),
        // The caller's BYE can overtake its ACK (both sent at once, or reordered by a proxy):
        // a BYE proves the caller took our 200 OK.
        Ok((
            CallEvent::Terminated {
                cause: EndCause::Bye,
                by_peer: true,
                ..
            },
            _,
        )) => Ok(()),
        Ok((other, _)) => Err(fail(format!(
            "expected the ACK after our 200 OK, the call {}",
            other.describe()
        ))),
        Err(_) => Err(fail(format!(
            "200 OK sent, no ACK within {}",
            secs(node.timeout)
        ))),
    }
}

async fn release(ctx: &Arc<Ctx>, node: &Node) -> NodeResult {
    let call = call_of(ctx, node)?;
    let action = hangup_action(call.role, call.leg_state());
    if action == HangupAction::Nothing {
        node_log(ctx, node, Level::Info, "the call had already ended".into());
        return Ok(());
    }
    let what = match action {
        HangupAction::Bye => "BYE".to_owned(),
        HangupAction::Cancel => "CANCEL".to_owned(),
        HangupAction::Reject(code) => format!("{code} to the ringing call"),
        HangupAction::Nothing => unreachable!("handled above"),
    };
    let sent = call.start_hang_up(action);
    let work = async {
        match sent.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(fail(format!("{what} failed: {e}"))),
            Err(e) => return Err(fail(format!("{what} task failed: {e}"))),
        }
        call.wait(|e| matches!(e, CallEvent::Terminated { .. }), false)
            .await;
        Ok(())
    };
    tokio::time::timeout(node.timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(fail(format!(
                "{what} sent, the call did not end within {}",
                secs(node.timeout)
            )))
        })
}

async fn ringing(ctx: &Arc<Ctx>, node: &Node) -> NodeResult {
    let call = call_of(ctx, node)?;
    let wait = call.wait(
        |e| {
            matches!(
                e,
                CallEvent::Provisional {
                    code: 180 | 183,
                    ..
                }
            )
        },
        true,
    );
    match tokio::time::timeout(node.timeout, wait).await {
        Ok(_) => Ok(()),
        Err(_) => {
            let side = if call.role == Role::Outgoing {
                "received"
            } else {
                "sent"
            };
            Err(fail(format!(
                "expected a 180/183 {side} on `{}` within {}, none",
                node.call_id,
                secs(node.timeout)
            )))
        }
    }
}

async fn disconnected(ctx: &Arc<Ctx>, node: &Node) -> NodeResult {
    let call = call_of(ctx, node)?;
    let wait = call.wait(|e| matches!(e, CallEvent::Terminated { .. }), false);
    match tokio::time::timeout(node.timeout, wait).await {
        Ok((ev, _)) => {
            node_log(ctx, node, Level::Info, ev.describe());
            Ok(())
        }
        Err(_) => Err(fail(format!(
            "expected `{}` to end within {}, it is still up",
            node.call_id,
            secs(node.timeout)
        ))),
    }
}
