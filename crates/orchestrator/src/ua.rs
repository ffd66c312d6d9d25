//! One running user agent: its endpoint, and the two tasks that route what arrives.

use crate::bus::EventBus;
use events::{Direction, EventKind, Level, Log};
use instances::{PortAllocator, PortLease};
use scenario::Instance;
use session::{Sessions, UaIdx};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use transport::rsipstack::dialog::dialog::DialogState;
use transport::rsipstack::dialog::dialog_layer::DialogLayer;
use transport::sip::prelude::HeadersExt;
use transport::sip::{Header, Method, StatusCode, Uri};
use transport::{EndpointSettings, UaEndpoint, WireDirection, WireRecord};

pub(crate) struct Ua {
    pub(crate) id: String,
    pub(crate) label: String,
    pub(crate) dn: String,
    pub(crate) local: SocketAddr,
    pub(crate) transport: &'static str,
    pub(crate) contact: Uri,
    pub(crate) endpoint: UaEndpoint,
    pub(crate) lease: PortLease,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum UaError {
    #[error("UA `{ua}`: {source}")]
    Ports {
        ua: String,
        source: instances::PortError,
    },
    #[error("UA `{ua}`: {source}")]
    Transport {
        ua: String,
        source: transport::TransportError,
    },
}

pub(crate) fn log(
    bus: &EventBus,
    level: Level,
    ua: Option<&str>,
    node: Option<&str>,
    call: Option<&str>,
    msg: String,
) {
    bus.emit(EventKind::Log(Log {
        level,
        ua: ua.map(str::to_owned),
        node: node.map(str::to_owned),
        call_id: call.map(str::to_owned),
        message: msg,
    }));
}

impl Ua {
    pub(crate) async fn start(
        idx: UaIdx,
        inst: &Instance,
        ip: IpAddr,
        ports: &PortAllocator,
        bus: Arc<EventBus>,
        sessions: Arc<Sessions>,
    ) -> Result<Self, UaError> {
        let tcp = inst.transport == scenario::SipTransport::Tcp;
        let (lease, socket) = ports
            .lease(|port| {
                let addr = SocketAddr::new(ip, port);
                let sock = transport::bind_udp(addr, transport::DEFAULT_RCVBUF)?;
                let got = sock
                    .local_addr()
                    .map_err(|e| transport::TransportError::Bind {
                        transport: "udp",
                        addr,
                        source: e,
                    })?;
                if tcp {
                    // The TCP listener takes the same port; check it is free too.
                    transport::check_tcp(got)?;
                }
                Ok::<_, transport::TransportError>((sock, got.port()))
            })
            .map_err(|source| UaError::Ports {
                ua: inst.label.clone(),
                source,
            })?;

        let tap_bus = bus.clone();
        let ua_id = inst.id.clone();
        let tap = Arc::new(move |rec: WireRecord| wire_event(&tap_bus, &ua_id, rec));
        let settings = EndpointSettings {
            tcp,
            ..EndpointSettings::default()
        };
        let mut endpoint = UaEndpoint::start(socket, &settings, tap)
            .await
            .map_err(|source| UaError::Transport {
                ua: inst.label.clone(),
                source,
            })?;
        let local = endpoint.local;
        let contact = contact_uri(&inst.dn, local, tcp);

        let mut tasks = Vec::new();
        let incoming = endpoint.incoming.take().expect("incoming taken once");
        let state_rx = endpoint.state_rx.take().expect("state receiver taken once");
        let router = Router {
            idx,
            ua: inst.id.clone(),
            auto_ringing: inst.auto_ringing,
            dialogs: endpoint.dialogs.clone(),
            state_tx: endpoint.state_tx.clone(),
            contact: contact.clone(),
            sessions: sessions.clone(),
            bus: bus.clone(),
        };
        tasks.push(tokio::spawn(router.clone().route_requests(incoming)));
        tasks.push(tokio::spawn(router.route_states(state_rx)));

        Ok(Self {
            id: inst.id.clone(),
            label: inst.label.clone(),
            dn: inst.dn.clone(),
            local,
            transport: endpoint.transport,
            contact,
            endpoint,
            lease,
            tasks,
        })
    }

    /// Closes the transport and stops the UA's tasks; the port lease is released on return.
    pub(crate) async fn shutdown(self, grace: Duration) -> PortLease {
        for t in &self.tasks {
            t.abort();
        }
        self.endpoint.shutdown(grace).await;
        for t in self.tasks {
            let _ = t.await;
        }
        self.lease
    }
}

fn contact_uri(user: &str, local: SocketAddr, tcp: bool) -> Uri {
    let s = instances::sip_uri(user, local, tcp);
    Uri::try_from(s.as_str()).expect("a contact built from an address parses")
}

fn wire_event(bus: &EventBus, ua: &str, rec: WireRecord) {
    let raw = String::from_utf8_lossy(&rec.bytes).into_owned();
    let summary = transport::parse_summary(&rec.bytes).unwrap_or_default();
    bus.emit_at(
        EventKind::SipMessage(events::SipMessage {
            ua: ua.to_owned(),
            direction: match rec.direction {
                WireDirection::Sent => Direction::Sent,
                WireDirection::Received => Direction::Received,
            },
            transport: rec.transport.to_owned(),
            local: rec.local.to_string(),
            peer: rec.peer.to_string(),
            method: summary.method,
            status: summary.status,
            reason: summary.reason,
            call_id: summary.call_id,
            cseq: summary.cseq,
            raw,
        }),
        rec.at,
    );
}

#[derive(Clone)]
struct Router {
    idx: UaIdx,
    ua: String,
    auto_ringing: bool,
    dialogs: Arc<DialogLayer>,
    state_tx: transport::rsipstack::dialog::dialog::DialogStateSender,
    contact: Uri,
    sessions: Arc<Sessions>,
    bus: Arc<EventBus>,
}

impl Router {
    fn log(&self, level: Level, msg: String) {
        log(&self.bus, level, Some(&self.ua), None, None, msg);
    }

    /// Routes every new server transaction: in-dialog requests to their dialog, new INVITEs
    /// to the session store (held with 100/180 until a node answers or rejects them).
    async fn route_requests(
        self,
        mut incoming: transport::rsipstack::transaction::TransactionReceiver,
    ) {
        while let Some(mut tx) = incoming.recv().await {
            let method = tx.original.method;
            let in_dialog = tx
                .original
                .to_header()
                .ok()
                .and_then(|h| h.tag().ok().flatten())
                .is_some();
            if in_dialog {
                match self.dialogs.match_dialog(&tx) {
                    Some(mut d) => {
                        tokio::spawn(async move {
                            let _ = d.handle(&mut tx).await;
                        });
                    }
                    None if method == Method::Ack => {}
                    None => {
                        self.log(
                            Level::Warning,
                            format!("{method} for a dialog this UA does not know: 481"),
                        );
                        let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await;
                    }
                }
                continue;
            }
            match method {
                Method::Invite => {
                    let d = match self.dialogs.get_or_create_server_invite(
                        &tx,
                        self.state_tx.clone(),
                        None,
                        Some(self.contact.clone()),
                    ) {
                        Ok(d) => d,
                        Err(e) => {
                            self.log(Level::Error, format!("cannot take the INVITE: {e}"));
                            let _ = tx.reply(StatusCode::ServerInternalError).await;
                            continue;
                        }
                    };
                    let me = self.clone();
                    tokio::spawn(async move {
                        let _ = tx.send_trying().await;
                        let from = tx
                            .original
                            .from_header()
                            .map(|h| h.value().to_string())
                            .unwrap_or_default();
                        me.sessions.insert_incoming(me.idx, d.clone(), |call| {
                            me.log(
                                Level::Info,
                                format!("incoming call {} from {from}", call.sip_call_id()),
                            );
                            if me.auto_ringing {
                                // Queued on the INVITE transaction before any node can answer.
                                let _ = d.ringing(None, None);
                            }
                        });
                        let mut d = d;
                        if let Err(e) = d.handle(&mut tx).await {
                            me.log(
                                Level::Warning,
                                format!("incoming INVITE transaction ended with an error: {e}"),
                            );
                        }
                    });
                }
                Method::Options => {
                    let _ = tx.reply(StatusCode::OK).await;
                }
                Method::Ack => {}
                Method::Bye | Method::Cancel => {
                    self.log(Level::Warning, format!("{method} for no known call: 481"));
                    let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await;
                }
                other => {
                    self.log(
                        Level::Warning,
                        format!("{other} outside a dialog is not handled: 405"),
                    );
                    let _ = tx.reply(StatusCode::MethodNotAllowed).await;
                }
            }
        }
    }

    /// Feeds dialog state changes to the session store, answers mid-dialog requests, and
    /// removes ended dialogs from rsipstack's dialog layer (it keeps them until told).
    async fn route_states(self, mut rx: transport::rsipstack::dialog::dialog::DialogStateReceiver) {
        while let Some(state) = rx.recv().await {
            let applied = self.sessions.apply(self.idx, &state);
            let call_name = applied.as_ref().and_then(|(c, _)| c.name());
            let added = applied.as_ref().and_then(|(_, e)| e.clone());
            let call = applied.map(|(c, _)| c);
            match state {
                DialogState::Terminated(id, _) => {
                    self.dialogs.remove_dialog(&id);
                    if let Some(c) = &call {
                        for id in c.dialog_ids() {
                            self.dialogs.remove_dialog(&id);
                        }
                        if let Some(ev) = &added {
                            log(
                                &self.bus,
                                Level::Info,
                                Some(&self.ua),
                                None,
                                call_name.as_deref(),
                                ev.describe(),
                            );
                        }
                    }
                }
                DialogState::Updated(_, req, handle) => {
                    // A re-INVITE or UPDATE: answer with our SDP (hold handling arrives with call control).
                    let body = call
                        .as_ref()
                        .and_then(|c| c.local_sdp())
                        .filter(|_| req.method == Method::Invite);
                    let headers = body
                        .as_ref()
                        .map(|_| vec![Header::ContentType("application/sdp".into())]);
                    self.log(Level::Info, format!("{} in dialog: 200", req.method));
                    let _ = handle.respond(StatusCode::OK, headers, body).await;
                }
                DialogState::Info(_, req, handle)
                | DialogState::Message(_, req, handle)
                | DialogState::Options(_, req, handle)
                | DialogState::Notify(_, req, handle) => {
                    self.log(Level::Info, format!("{} in dialog: 200", req.method));
                    let _ = handle.reply(StatusCode::OK).await;
                }
                DialogState::Refer(_, req, handle) | DialogState::Publish(_, req, handle) => {
                    self.log(
                        Level::Warning,
                        format!("{} in dialog is not supported yet: 501", req.method),
                    );
                    let _ = handle.reply(StatusCode::NotImplemented).await;
                }
                _ => {}
            }
        }
    }
}
