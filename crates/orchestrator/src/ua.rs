//! One running user agent: its endpoint, the context its tasks and nodes share, and the two
//! tasks that route what arrives (see `routing.rs`).

use crate::bus::EventBus;
use events::{Direction, EventKind, Level, Log};
use instances::{PortAllocator, PortLease};
use media::sdp::Codec;
use scenario::Instance;
use session::{Sessions, UaIdx};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use transport::rsipstack::dialog::dialog::DialogStateSender;
use transport::rsipstack::dialog::dialog_layer::DialogLayer;
use transport::sip::Uri;
use transport::{EndpointSettings, UaEndpoint, WireDirection, WireRecord};

/// What a UA's tasks and the nodes running on it share.
pub(crate) struct UaShared {
    pub(crate) idx: UaIdx,
    pub(crate) id: String,
    pub(crate) label: String,
    pub(crate) dn: String,
    pub(crate) local: SocketAddr,
    pub(crate) transport: scenario::SipTransport,
    pub(crate) contact: Uri,
    pub(crate) auto_ringing: bool,
    /// Reliable provisional responses (RFC 3262).
    pub(crate) rel100: scenario::Rel100,
    /// The shortest session interval this UA takes, in seconds (RFC 4028 `Min-SE`).
    pub(crate) min_se: u32,
    pub(crate) codecs: Vec<Codec>,
    /// SRTP on its calls (the instance's `srtp`).
    pub(crate) srtp: media::srtp::SrtpMode,
    pub(crate) bind_ip: IpAddr,
    pub(crate) dialogs: Arc<DialogLayer>,
    pub(crate) state_tx: DialogStateSender,
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) bus: Arc<EventBus>,
    /// RTP ports for this UA's calls (shared by every UA of the run).
    pub(crate) rtp: PortAllocator,
    pub(crate) pbx: Option<crate::pbx::PbxConf>,
    pub(crate) endpoint: transport::rsipstack::transaction::endpoint::EndpointInnerRef,
    /// The REGISTER state (Call-ID, CSeq) kept between refreshes and the unregister.
    pub(crate) registration:
        tokio::sync::Mutex<Option<transport::rsipstack::dialog::registration::Registration>>,
    pub(crate) display_name: Option<String>,
    /// Capture the RTP of this UA's calls (`rtp_capture`, one event per call).
    pub(crate) capture_rtp: bool,
    /// Start RTP on each call once it is confirmed.
    pub(crate) media: bool,
    /// Keep each call's received audio, decoded (HEARD, TONE, Record read it).
    pub(crate) keep_audio: bool,
    /// Drop received RTP as a lossy path would (`--rtp-loss`).
    pub(crate) rtp_loss: Option<media::rtp::Loss>,
    /// How long an INVITE no node takes is held before it is answered 480.
    pub(crate) unclaimed_invite: Duration,
    /// Wakes the UA's sweeper of unclaimed INVITEs when one is held.
    pub(crate) unclaimed_wake: tokio::sync::Notify,
    /// What crossed the wire on each call: what a failure message says never arrived.
    pub(crate) ledger: Arc<session::Ledger>,
    /// The connections that failed lately (a TLS handshake): a failure message names them.
    pub(crate) link_failures: Arc<LinkFailures>,
    /// Our late-offer INVITEs not answered yet, by SIP Call-ID: their 2xx's offer gets our
    /// answer in the ACK (`transport::AckAnswer`).
    pub(crate) late_calls:
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Weak<session::Call>>>,
    /// Requests that reached this UA outside any dialog (MESSAGE, NOTIFY, INFO), latched.
    pub(crate) inbox: session::Latched<session::CallEvent>,
    /// Our subscriptions, by the logical id their Subscribe node bound.
    pub(crate) subscriptions: crate::requests::Subscriptions,
    /// Every task this UA spawns (request handlers, retransmissions, timers), awaited at
    /// teardown; `stopping` ends the ones still waiting.
    pub(crate) tasks: tokio_util::task::TaskTracker,
    pub(crate) stopping: tokio_util::sync::CancellationToken,
    /// The run's id: an INVITE between its own UAs names its iteration under it
    /// ([`ITERATION_HEADER`]).
    pub(crate) run_id: Arc<str>,
}

/// The header with which an INVITE between one run's UAs names its iteration (under load, the
/// callee's INCOMING of that iteration takes it): `7@<run id>`.
pub(crate) const ITERATION_HEADER: &str = "X-Callflow-Iteration";

impl UaShared {
    /// The value of [`ITERATION_HEADER`] for `iteration` of this run.
    pub(crate) fn iteration_tag(&self, iteration: session::Iteration) -> String {
        format!("{iteration}@{}", self.run_id)
    }

    /// The iteration of this run an INVITE's [`ITERATION_HEADER`] names, if it names one.
    pub(crate) fn iteration_of(&self, tag: &str) -> Option<session::Iteration> {
        let (i, run) = tag.trim().split_once('@')?;
        (run == &*self.run_id).then(|| i.parse().ok()).flatten()
    }

    /// Our Contact in a dialog with `uri` (the callee, or the Request-URI of an INVITE to us):
    /// a SIPS URI when `uri` is one (RFC 3261 §8.1.1.8, §12.1.1), on a secure transport.
    pub(crate) fn contact_for(&self, uri: &Uri) -> Uri {
        let mut c = self.contact.clone();
        if uri.scheme == Some(transport::sip::Scheme::Sips) && self.transport.is_secure() {
            c.scheme = Some(transport::sip::Scheme::Sips);
        }
        c
    }

    /// Runs `fut` on a task this UA tracks: it ends at teardown at the latest.
    pub(crate) fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let stopping = self.stopping.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = fut => {}
                () = stopping.cancelled() => {}
            }
        });
    }

    pub(crate) fn log(&self, level: Level, node: Option<&str>, call: Option<&str>, msg: String) {
        log(&self.bus, level, Some(&self.id), node, call, msg);
    }
}

/// The last connections of a UA that failed, with when and why.
#[derive(Default)]
pub(crate) struct LinkFailures(
    std::sync::Mutex<std::collections::VecDeque<(std::time::Instant, String)>>,
);

impl LinkFailures {
    const KEPT: usize = 8;

    fn push(&self, why: String) {
        let mut q = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if q.len() >= Self::KEPT {
            q.pop_front();
        }
        q.push_back((std::time::Instant::now(), why));
    }

    /// Why connections failed within the last `window`, oldest first, each once.
    pub(crate) fn within(&self, window: Duration) -> Vec<String> {
        let q = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<String> = Vec::new();
        for (at, why) in q.iter() {
            if at.elapsed() <= window && !out.contains(why) {
                out.push(why.clone());
            }
        }
        out
    }
}

/// A started UA.
pub(crate) struct Ua {
    pub(crate) shared: Arc<UaShared>,
    pub(crate) endpoint: UaEndpoint,
    pub(crate) transport: scenario::SipTransport,
    lease: PortLease,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum UaError {
    #[error("UA `{ua}`: TLS: {message}")]
    Tls { ua: String, message: String },
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
    #[error("UA `{ua}`: {message}")]
    Pbx { ua: String, message: String },
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

/// Shared by every UA of a run.
pub(crate) struct RunShared {
    pub(crate) bind_ip: IpAddr,
    pub(crate) sip_ports: PortAllocator,
    pub(crate) rtp_ports: PortAllocator,
    pub(crate) bus: Arc<EventBus>,
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) capture_rtp: bool,
    pub(crate) media: bool,
    pub(crate) keep_audio: bool,
    pub(crate) rtp_loss: Option<media::rtp::Loss>,
    pub(crate) data: Option<Arc<crate::data::Data>>,
    pub(crate) limits: crate::engine::Limits,
    pub(crate) run_id: Arc<str>,
    /// The run's own certificate and key log, when a UA speaks TLS.
    pub(crate) tls: Option<transport::tls::RunTls>,
    /// The scenario's file: its `tls` paths are relative to it.
    pub(crate) scenario_file: String,
}

impl Ua {
    pub(crate) async fn start(
        idx: UaIdx,
        inst: &Instance,
        run: &RunShared,
    ) -> Result<Self, UaError> {
        let own = inst.transport;
        let ip = run.bind_ip;
        let (lease, socket) = run
            .sip_ports
            .lease(|port| {
                let addr = SocketAddr::new(ip, port);
                let sock = transport::bind_udp(addr, transport::DEFAULT_RCVBUF)?;
                let got = sock
                    .local_addr()
                    .map_err(|source| transport::TransportError::Bind {
                        transport: "udp",
                        addr,
                        source,
                    })?;
                if own.is_stream() {
                    // The stream listener takes the same port; check it is free too.
                    transport::check_tcp(got)?;
                }
                Ok::<_, transport::TransportError>((sock, got.port()))
            })
            .map_err(|source| UaError::Ports {
                ua: inst.label.clone(),
                source,
            })?;

        let tap_bus = run.bus.clone();
        let ua_id = inst.id.clone();
        let ledger = Arc::new(session::Ledger::new());
        let tap_ledger = ledger.clone();
        let tap = Arc::new(move |rec: WireRecord| wire_event(&tap_bus, &tap_ledger, &ua_id, rec));
        let tls = tls_settings(inst, run).map_err(|message| UaError::Tls {
            ua: inst.label.clone(),
            message,
        })?;
        let link_failures = Arc::new(LinkFailures::default());
        let on_failure = {
            let failures = link_failures.clone();
            let bus = run.bus.clone();
            let id = inst.id.clone();
            transport::tls::FailureHook(Arc::new(move |_peer, why: String| {
                log(&bus, Level::Error, Some(&id), None, None, why.clone());
                failures.push(why);
            }))
        };
        let settings = EndpointSettings {
            transport: own,
            tls,
            on_failure: Some(on_failure),
            ws: transport::ws::WsSettings {
                path: inst.ws.path.clone().unwrap_or_else(|| "/".to_owned()),
                origin: inst.ws.origin.clone(),
            },
            max_tcp_connections: run.limits.max_tcp_connections,
            tcp_idle_timeout: run.limits.tcp_idle_timeout,
            ..EndpointSettings::default()
        };
        let mut endpoint = UaEndpoint::start(socket, &settings, tap)
            .await
            .map_err(|source| UaError::Transport {
                ua: inst.label.clone(),
                source,
            })?;
        let local = endpoint.local;
        let shared = Arc::new(UaShared {
            idx,
            id: inst.id.clone(),
            label: inst.label.clone(),
            dn: inst.dn.clone(),
            local,
            transport: own,
            contact: contact_uri(&inst.dn, local, own),
            auto_ringing: inst.auto_ringing,
            rel100: inst.rel100,
            min_se: inst.min_se.as_secs().clamp(1, u64::from(u32::MAX)) as u32,
            codecs: inst
                .codecs
                .iter()
                .filter_map(|c| Codec::from_name(c))
                .collect(),
            srtp: inst.srtp,
            bind_ip: ip,
            dialogs: endpoint.dialogs.clone(),
            state_tx: endpoint.state_tx.clone(),
            sessions: run.sessions.clone(),
            bus: run.bus.clone(),
            rtp: run.rtp_ports.clone(),
            pbx: crate::pbx::PbxConf::from_instance(inst, run.data.as_deref()).map_err(|e| {
                UaError::Pbx {
                    ua: inst.label.clone(),
                    message: e,
                }
            })?,
            endpoint: endpoint.endpoint.inner.clone(),
            registration: tokio::sync::Mutex::new(None),
            display_name: inst.display_name.clone(),
            capture_rtp: run.capture_rtp,
            media: run.media,
            keep_audio: run.keep_audio,
            rtp_loss: run.rtp_loss,
            unclaimed_invite: run.limits.unclaimed_invite,
            unclaimed_wake: tokio::sync::Notify::new(),
            ledger,
            link_failures,
            late_calls: std::sync::Mutex::new(std::collections::HashMap::new()),
            inbox: session::Latched::bounded(crate::requests::INBOX),
            subscriptions: std::sync::Mutex::new(std::collections::HashMap::new()),
            tasks: tokio_util::task::TaskTracker::new(),
            stopping: tokio_util::sync::CancellationToken::new(),
            run_id: run.run_id.clone(),
        });
        // Weak: the endpoint (which the UA's context holds) keeps the hook.
        let weak = Arc::downgrade(&shared);
        endpoint.set_ack_answer(Arc::new(move |call_id: &str, offer: &[u8]| {
            weak.upgrade()?.late_answer(call_id, offer)
        }));

        let incoming = endpoint.incoming.take().expect("incoming taken once");
        let state_rx = endpoint.state_rx.take().expect("state receiver taken once");
        let tasks = vec![
            tokio::spawn(shared.clone().route_requests(incoming)),
            tokio::spawn(shared.clone().route_states(state_rx)),
            tokio::spawn(shared.clone().sweep_unclaimed()),
        ];
        Ok(Self {
            shared,
            transport: endpoint.transport,
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
        // The UA's own tasks end with it (each is cut short at its next await).
        self.shared.stopping.cancel();
        self.shared.tasks.close();
        if tokio::time::timeout(grace, self.shared.tasks.wait())
            .await
            .is_err()
        {
            self.shared.log(
                Level::Warning,
                None,
                None,
                format!(
                    "{} of its tasks still running {} s after teardown began",
                    self.shared.tasks.len(),
                    grace.as_secs_f64()
                ),
            );
        }
        self.endpoint.shutdown(grace).await;
        for t in self.tasks {
            let _ = t.await;
        }
        self.lease
    }
}

/// An instance's TLS settings, when it or its PBX speaks TLS: its `tls` files read, over the
/// run's own certificate (shown when it has none of its own, and trusted always).
fn tls_settings(
    inst: &Instance,
    run: &RunShared,
) -> Result<Option<transport::tls::TlsSettings>, String> {
    let secure =
        inst.transport.is_secure() || inst.pbx.as_ref().is_some_and(|p| p.transport.is_secure());
    let Some(run_tls) = run.tls.as_ref().filter(|_| secure) else {
        return Ok(None);
    };
    let t = &inst.tls;
    let read = |name: &str, path: &String| {
        let file = scenario::resolve_path(&run.scenario_file, path);
        std::fs::read(&file).map_err(|e| format!("tls.{name} {}: {e}", file.display()))
    };
    let own = match (&t.cert, &t.key) {
        (Some(cert), Some(key)) => Some(transport::tls::TlsIdentity {
            cert_pem: read("cert", cert)?,
            key_pem: read("key", key)?,
        }),
        _ => None,
    };
    let mut roots_pem = match &t.ca {
        Some(ca) => {
            let mut pem = read("ca", ca)?;
            pem.push(b'\n');
            pem
        }
        None => Vec::new(),
    };
    roots_pem.extend_from_slice(&run_tls.identity.cert_pem);
    Ok(Some(transport::tls::TlsSettings {
        identity: own.clone().unwrap_or_else(|| run_tls.identity.clone()),
        client_identity: own,
        roots_pem,
        insecure: t.insecure,
        sni: t.sni.clone(),
        keylog: run_tls.keylog.clone(),
    }))
}

fn contact_uri(user: &str, local: SocketAddr, transport: scenario::SipTransport) -> Uri {
    let s = instances::sip_uri(user, local, transport);
    Uri::try_from(s.as_str()).expect("a contact built from an address parses")
}

fn wire_event(bus: &EventBus, ledger: &session::Ledger, ua: &str, rec: WireRecord) {
    let summary = transport::parse_summary(&rec.bytes).unwrap_or_default();
    // The record's bytes become the text as they are (a SIP message is UTF-8 but for a
    // malformed one): no second copy.
    let raw = String::from_utf8(rec.bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    let peer = rec.peer.to_string();
    ledger.record(session::ledger::Seen {
        way: match rec.direction {
            WireDirection::Sent => session::ledger::Way::Sent,
            WireDirection::Received => session::ledger::Way::Received,
        },
        at: rec.at,
        peer: &peer,
        status: summary.status,
        call_id: &summary.call_id,
        cseq: &summary.cseq,
    });
    bus.emit_at(
        EventKind::SipMessage(events::SipMessage {
            ua: ua.to_owned(),
            direction: match rec.direction {
                WireDirection::Sent => Direction::Sent,
                WireDirection::Received => Direction::Received,
            },
            transport: rec.transport.to_owned(),
            local: rec.local.to_string(),
            peer,
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
