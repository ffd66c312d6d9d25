//! Placing and answering calls, and their media: what MakeCall, Answer, a transfer and a
//! Replaces have in common.

use crate::ua::UaShared;
use events::Level;
use instances::PortLease;
use media::rtp::MediaSession;
use media::sdp::{self, LocalMedia};
use session::Call;
use std::sync::Arc;
use transport::rsipstack::dialog::invitation::{InviteAsyncResult, InviteOption};
use transport::sip::{Header, Uri};

/// Extra choices for an outgoing INVITE.
#[derive(Clone, Default)]
pub(crate) struct CallOptions {
    /// Headers added to the INVITE (X-*, P-Asserted-Identity, Diversion, Replaces, ...).
    pub(crate) headers: Vec<Header>,
    pub(crate) display_name: Option<String>,
    /// The From user; the UA's DN by default.
    pub(crate) from_user: Option<String>,
    /// No SDP in the INVITE: the 2xx offers, the ACK answers (RFC 3261 §13.2.1).
    pub(crate) late_offer: bool,
    /// The digest credential of this call (a load's user of the iteration), instead of the
    /// PBX's.
    pub(crate) credential: Option<transport::rsipstack::dialog::authenticate::Credential>,
}

pub(crate) fn sdp_header() -> Header {
    Header::ContentType("application/sdp".into())
}

/// The bodies a UA takes (RFC 3261 §20.1).
pub(crate) const ACCEPT: &str = "application/sdp";

/// What a UA says it can do: Allow and Supported (Replaces, RFC 3891, and 100rel, RFC 3262,
/// unless `rel100` is off) on our INVITEs and 2xx (RFC 3261 §20.5), and also Accept on the 200 to
/// OPTIONS (§11.2).
pub(crate) fn capabilities(rel100: scenario::Rel100, with_accept: bool) -> Vec<Header> {
    let mut h = allow();
    h.push(make_header("Supported", crate::rel100::supported(rel100)));
    if with_accept {
        h.push(make_header("Accept", ACCEPT));
    }
    h
}

/// The Allow of a 405 (RFC 3261 §8.2.1: MUST).
pub(crate) fn allow() -> Vec<Header> {
    vec![make_header("Allow", transport::intake::ALLOW)]
}

/// `extra`, then our capabilities where `extra` does not set them already.
pub(crate) fn with_capabilities(rel100: scenario::Rel100, mut extra: Vec<Header>) -> Vec<Header> {
    for h in capabilities(rel100, false) {
        if !extra
            .iter()
            .any(|e| e.name().eq_ignore_ascii_case(h.name()))
        {
            extra.push(h);
        }
    }
    extra
}

/// A Reason header's value (RFC 3326): `SIP ;cause=486 ;text="Busy Here"` for free text, with
/// the text's quotes and backslashes escaped; a value already in that form (`SIP;cause=…`,
/// `Q.850;cause=16`) is kept as written.
pub(crate) fn reason_value(code: u16, text: &str) -> String {
    let text = text.trim();
    let protocol = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_uppercase();
    if text.contains(';') && (protocol == "SIP" || protocol == "Q.850") {
        return text.to_owned();
    }
    let escaped: String = text
        .chars()
        .filter(|c| !c.is_control())
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("SIP ;cause={code} ;text=\"{escaped}\"")
}

/// An incoming call whose INVITE carried no offer (no body): our 2xx offers, the ACK answers.
pub(crate) fn late_offer(call: &Call) -> bool {
    call.role == session::Role::Incoming
        && call.dialog.initial_request().body.trim_ascii().is_empty()
}

/// A header from its name and value, typed where rsipstack knows the name.
pub(crate) fn make_header(name: &str, value: &str) -> Header {
    transport::sip::headers::make_header(name, value.to_owned())
}

/// An RTP port and its socket (and the RTCP socket on the port above), leased before the call
/// they belong to exists.
struct RtpLease {
    lease: PortLease,
    socket: std::net::UdpSocket,
    rtcp: Option<std::net::UdpSocket>,
}

impl RtpLease {
    /// Hands the lease to the call (released when it is closed) and reserves the socket for
    /// its media.
    fn attach(self, call: &Call) {
        call.keep(Box::new(self.lease));
        call.set_rtp_socket(self.socket, self.rtcp);
    }
}

impl UaShared {
    /// The address of record of `user` on this UA: at its PBX, else on its own address (the
    /// From of its requests).
    pub(crate) fn aor(&self, user: &str) -> Result<Uri, String> {
        let aor = match &self.pbx {
            Some(pbx) => format!("sip:{user}@{}", pbx.host_port),
            None => instances::sip_uri(user, self.local, instances::SipTransport::Udp),
        };
        Uri::try_from(aor.as_str()).map_err(|e| format!("bad address of record {aor}: {e}"))
    }

    /// Leases an RTP port and describes our media on it.
    fn lease_media(&self) -> Result<(RtpLease, LocalMedia), String> {
        let ip = self.bind_ip;
        // RTCP on the port above (RFC 3550 §11), when the call will have media: a port whose
        // neighbour is taken is skipped.
        let with_rtcp = self.media;
        let (lease, (socket, rtcp)) = self
            .rtp
            .lease(|port| {
                let s = std::net::UdpSocket::bind((ip, port))?;
                let p = s.local_addr()?.port();
                let rtcp = if with_rtcp {
                    Some(std::net::UdpSocket::bind((
                        ip,
                        p.checked_add(1).unwrap_or(0),
                    ))?)
                } else {
                    None
                };
                Ok::<_, std::io::Error>(((s, rtcp), p))
            })
            .map_err(|e| format!("no RTP port: {e}"))?;
        let media = LocalMedia {
            ip,
            rtp_port: lease.port(),
            codecs: self.codecs.clone(),
            session_id: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs()),
            srtp: self.srtp,
            key: media::srtp::new_key(),
        };
        Ok((
            RtpLease {
                lease,
                socket,
                rtcp,
            },
            media,
        ))
    }

    /// Sends an INVITE with our offer. The call is recorded at once (bound to `name` if given)
    /// and keeps its RTP port; the handle resolves with the final response.
    pub(crate) fn place_call(
        &self,
        name: Option<(session::Iteration, &str)>,
        callee: Uri,
        opts: CallOptions,
    ) -> Result<(Arc<Call>, tokio::task::JoinHandle<InviteAsyncResult>), String> {
        let (rtp, media) = self.lease_media()?;
        let offer = sdp::offer(&media);
        let user = opts.from_user.as_deref().unwrap_or(&self.dn);
        let caller = self.aor(user)?;
        let invite = InviteOption {
            caller,
            caller_display_name: opts.display_name.or_else(|| self.display_name.clone()),
            credential: opts
                .credential
                .or_else(|| self.pbx.as_ref().and_then(|p| p.credential.clone())),
            destination: self.pbx.as_ref().and_then(crate::pbx::PbxConf::destination),
            callee: callee.clone(),
            contact: self.contact_for(&callee),
            content_type: (!opts.late_offer).then(|| "application/sdp".to_owned()),
            offer: (!opts.late_offer).then(|| offer.clone().into_bytes()),
            headers: Some(with_capabilities(self.rel100, {
                let mut h = opts.headers;
                if let Some((i, _)) = name.filter(|(i, _)| *i != 0) {
                    h.push(make_header(
                        crate::ua::ITERATION_HEADER,
                        &self.iteration_tag(i),
                    ));
                }
                if self.rel100 == scenario::Rel100::Required {
                    h.push(make_header("Require", "100rel"));
                }
                h
            })),
            ..Default::default()
        };
        let (dialog, join) = self
            .dialogs
            .do_invite_async(invite, self.state_tx.clone())
            .map_err(|e| format!("cannot send INVITE to {callee}: {e}"))?;
        let call = self.sessions.insert_outgoing(self.idx, name, dialog);
        // With a late offer this is not sent: it says where our media is when we answer.
        call.set_local_sdp(offer.into_bytes());
        if opts.late_offer {
            self.late_calls
                .lock()
                .expect("late lock")
                .insert(call.sip_call_id(), Arc::downgrade(&call));
        }
        rtp.attach(&call);
        Ok((call, join))
    }

    /// Our answer, for the ACK, to the offer in the 2xx of a late-offer INVITE of ours with SIP
    /// Call-ID `call_id` (None for any other call, or an offer we cannot take).
    pub(crate) fn late_answer(&self, call_id: &str, offer: &[u8]) -> Option<Vec<u8>> {
        let call = self
            .late_calls
            .lock()
            .expect("late lock")
            .remove(call_id)?
            .upgrade()?;
        let ours = String::from_utf8_lossy(&call.local_sdp()?).into_owned();
        match sdp::reanswer(&String::from_utf8_lossy(offer), &ours, &self.codecs) {
            Ok(answer) => {
                call.set_local_sdp(answer.clone().into_bytes());
                Some(answer.into_bytes())
            }
            Err(e) => {
                self.log(
                    Level::Warning,
                    None,
                    call.name().as_deref(),
                    format!("the 2xx's offer cannot be answered ({e}): the ACK carries no answer"),
                );
                None
            }
        }
    }

    /// Whether our late-offer INVITE of `call` still waits for an offer we could answer;
    /// forgets it.
    pub(crate) fn late_unanswered(&self, call: &Call) -> bool {
        self.late_calls
            .lock()
            .expect("late lock")
            .remove(&call.sip_call_id())
            .is_some()
    }

    /// Builds our answer to the call's offer (leasing its RTP port) and records it as our SDP.
    /// An answer already sent (in a 183 for early media) is used again.
    pub(crate) fn answer_sdp(&self, call: &Call) -> Result<String, String> {
        if call.role == session::Role::Incoming
            && let Some(sent) = call.local_sdp()
        {
            return Ok(String::from_utf8_lossy(&sent).into_owned());
        }
        let invite = call.dialog.initial_request();
        let offer = String::from_utf8_lossy(&invite.body).into_owned();
        let (rtp, media) = self.lease_media()?;
        // Late offer (RFC 3261 §13.2.1): an INVITE without SDP gets our offer in the 2xx, and
        // the answer comes in the ACK.
        let ours = if late_offer(call) {
            sdp::offer(&media)
        } else {
            sdp::answer(&offer, &media).map_err(|e| match e {
                // Who offered what, and what we take: by codec name.
                sdp::SdpError::NoCommonCodec { offered, ours } => {
                    let caller = crate::routing::header_in(&invite.headers, "From")
                        .and_then(|f| transport::header::name_addr_uri(&f))
                        .map_or_else(|| "the caller".to_owned(), |u| u.to_string());
                    format!(
                        "no common codec: {caller} offered {}; {} accepts {} only",
                        offered.join(", "),
                        self.label,
                        ours.join(", ")
                    )
                }
                sdp::SdpError::SrtpRequired { offered } => {
                    let caller = crate::routing::header_in(&invite.headers, "From")
                        .and_then(|f| transport::header::name_addr_uri(&f))
                        .map_or_else(|| "the caller".to_owned(), |u| u.to_string());
                    format!(
                        "{caller} offered {offered}; {} requires SRTP (srtp: {})",
                        self.label,
                        self.srtp.as_str()
                    )
                }
                sdp::SdpError::SrtpOffered => {
                    let caller = crate::routing::header_in(&invite.headers, "From")
                        .and_then(|f| transport::header::name_addr_uri(&f))
                        .map_or_else(|| "the caller".to_owned(), |u| u.to_string());
                    format!(
                        "{caller} offered RTP/SAVP (SRTP only); {} has srtp: off",
                        self.label
                    )
                }
                other => other.to_string(),
            })?
        };
        rtp.attach(call);
        call.set_local_sdp(ours.clone().into_bytes());
        Ok(ours)
    }

    /// Starts the call's RTP towards the peer its SDP names (once the call is confirmed).
    pub(crate) fn start_media(&self, call: &Arc<Call>, remote_sdp: &str) {
        if call.media().is_some() || !self.media {
            return;
        }
        let name = call.name();
        let Some(remote) = sdp::negotiate(remote_sdp, &self.codecs) else {
            self.log(
                Level::Warning,
                None,
                name.as_deref(),
                "no usable audio in the peer's SDP: no media".into(),
            );
            return;
        };
        let Some((socket, rtcp)) = call.take_rtp_socket() else {
            return;
        };
        // What the media hears goes into the call's log (and so to the flow's event nodes); at
        // each RTCP report, a `media_sample` says how the call's media goes.
        let weak = Arc::downgrade(call);
        let (bus, ua) = (self.bus.clone(), self.id.clone());
        let report: media::rtp::Report = Arc::new(move |h| {
            let Some(c) = weak.upgrade() else { return };
            match h {
                media::rtp::Heard::Flowing => {
                    c.push(session::CallEvent::MediaFlowing);
                }
                media::rtp::Heard::Digit(d) => {
                    c.push(session::CallEvent::Digit(d));
                }
                media::rtp::Heard::Reported => {
                    if let Some(m) = c.media() {
                        let sample = figures(&ua, &c, &m, &m.stats(), None);
                        bus.emit(events::EventKind::MediaSample(sample));
                    }
                }
            }
        });
        // SRTP when both SDPs carry keys we agree on; an RTP/SAVP call of ours without them
        // gets no media (plain RTP must not flow).
        let ours = call
            .local_sdp()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let srtp = sdp::srtp_keys(&ours, remote_sdp);
        if srtp.is_none() && sdp::requires_srtp(&ours) {
            self.log(
                Level::Error,
                None,
                name.as_deref(),
                "the peer's SDP has no SRTP key we take, and this call is RTP/SAVP (srtp: required): no media".into(),
            );
            return;
        }
        let opts = media::rtp::Options {
            capture: self.capture_rtp,
            keep_audio: self.keep_audio,
            report: Some(report),
            loss: self.rtp_loss,
            rtcp,
            srtp,
        };
        match MediaSession::start_with(socket, remote.clone(), opts) {
            Ok(m) => {
                self.log(
                    Level::Debug,
                    None,
                    name.as_deref(),
                    format!(
                        "media: {} to {}{}",
                        remote.codec.name(),
                        remote.addr,
                        srtp.map_or_else(String::new, |k| format!(
                            " over SRTP ({})",
                            k.suite.name()
                        ))
                    ),
                );
                call.set_media(Arc::new(m));
            }
            Err(e) => self.log(
                Level::Error,
                None,
                name.as_deref(),
                format!("cannot start media: {e}"),
            ),
        }
    }

    /// Applies a new offer or answer from the peer to the call's running media (RFC 3264 §8.3):
    /// where and in which codec to send, and whether to send at all (we send unless the peer's
    /// direction, `c=0.0.0.0` counted as a hold, says it will not receive).
    pub(crate) fn apply_remote_sdp(&self, call: &Call, remote_sdp: &str) {
        let Some(m) = call.media() else { return };
        let ours = sdp::offered_direction(remote_sdp).answer();
        let name = call.name();
        match sdp::negotiate(remote_sdp, &self.codecs) {
            Some(r) if !r.addr.ip().is_unspecified() => {
                m.set_sending(matches!(
                    ours,
                    sdp::Direction::SendRecv | sdp::Direction::SendOnly
                ));
                let (codec, addr) = (r.codec, r.addr);
                if m.retarget(r) {
                    self.log(
                        Level::Info,
                        None,
                        name.as_deref(),
                        format!("media now {} to {addr}", codec.name()),
                    );
                }
            }
            // `c=0.0.0.0` (an old-style hold) keeps the address; a port of 0 stops the stream.
            Some(_) => m.set_sending(false),
            None => {
                m.set_sending(false);
                self.log(
                    Level::Warning,
                    None,
                    name.as_deref(),
                    "no usable audio in the peer's new SDP: sending stopped".into(),
                );
            }
        }
    }

    /// Writes what the call's media captured as one event (the packets keep their own times).
    fn emit_capture(&self, call: &Call, m: &MediaSession) {
        use base64::Engine as _;
        let Some(c) = m.take_capture() else { return };
        let us = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64)
        };
        let packets = c
            .packets
            .into_iter()
            .map(|p| events::CapturedRtp {
                ts_us: us(p.at),
                direction: if p.sent {
                    events::Direction::Sent
                } else {
                    events::Direction::Received
                },
                peer: p.peer.to_string(),
                bytes: base64::engine::general_purpose::STANDARD.encode(&p.bytes),
                local: p
                    .rtcp
                    .then(|| {
                        m.local()
                            .map(|a| std::net::SocketAddr::new(a.ip(), a.port().wrapping_add(1)))
                    })
                    .flatten()
                    .map(|a| a.to_string()),
            })
            .collect();
        self.bus
            .emit(events::EventKind::RtpCapture(events::RtpCapture {
                ua: self.id.clone(),
                sip_call_id: call.sip_call_id(),
                local: m.local().map(|a| a.to_string()).unwrap_or_default(),
                packets,
                dropped: c.dropped,
            }));
    }

    /// Stops the call's RTP, reports its statistics and writes its recording.
    pub(crate) fn stop_media(&self, call: &Call) {
        let Some(m) = call.take_media() else { return };
        let stats = m.stop();
        self.emit_capture(call, &m);
        let recording = call.recording().and_then(|path| {
            // As it came: 16 kHz on a wideband call.
            let (rate, audio) = m.received_audio_native();
            match media::wav::save_at(&path, &audio, rate) {
                Ok(()) => Some(path.display().to_string()),
                Err(e) => {
                    self.log(Level::Error, None, call.name().as_deref(), e.to_string());
                    None
                }
            }
        });
        self.bus.emit(events::EventKind::MediaStats(figures(
            &self.id, call, &m, &stats, recording,
        )));
    }
}

/// What a call's media did so far, as `media_stats` (at its end) and `media_sample` (while it
/// runs) say it.
fn figures(
    ua: &str,
    call: &Call,
    m: &MediaSession,
    stats: &media::rtp::Stats,
    recording: Option<String>,
) -> events::MediaStats {
    let rtcp = m.rtcp();
    let quality = (stats.packets_received > 0).then(|| quality_of(m, stats));
    let round = |x: f64| (x * 100.0).round() / 100.0;
    events::MediaStats {
        ua: ua.to_owned(),
        call_id: call.name(),
        sip_call_id: call.sip_call_id(),
        codec: m.codec().name().to_owned(),
        local: m.local().map(|a| a.to_string()).unwrap_or_default(),
        remote: m.remote().to_string(),
        packets_sent: stats.packets_sent,
        packets_received: stats.packets_received,
        lost: stats.lost,
        loss_percent: stats.loss_percent(),
        duplicates: stats.duplicates,
        out_of_order: stats.out_of_order,
        jitter_ms: stats.jitter_ms,
        streams: match m.streams() {
            one if one.len() < 2 => Vec::new(),
            many => many
                .into_iter()
                .map(|s| events::RtpStream {
                    ssrc: s.ssrc,
                    packets_received: s.packets_received,
                    lost: s.lost,
                    duplicates: s.duplicates,
                    out_of_order: s.out_of_order,
                    jitter_ms: s.jitter_ms,
                })
                .collect(),
        },
        recording,
        mos: quality.map(|q| round(q.mos_lq)),
        mos_cq: quality.map(|q| round(q.mos_cq)),
        r_factor: quality.map(|q| round(q.r_factor)),
        rtcp: (rtcp.sent + rtcp.received > 0).then(|| events::RtcpFigures {
            sent: rtcp.sent,
            received: rtcp.received,
            rtt_ms: rtcp.rtt_ms.map(|r| (r * 1000.0).round() / 1000.0),
            peer_lost: rtcp.peer_lost,
            peer_jitter_ms: rtcp.peer_jitter_ms.map(round),
        }),
        srtp: m.srtp().map(|(suite, rejected)| events::SrtpFigures {
            suite: suite.name().to_owned(),
            rejected,
        }),
    }
}

/// How a call's received audio rates so far (the E-model on its loss and jitter, and the round
/// trip RTCP measured, if it has).
pub(crate) fn quality_of(m: &MediaSession, stats: &media::rtp::Stats) -> media::quality::Quality {
    media::quality::quality(&media::quality::Measured {
        codec: m.codec(),
        loss_percent: stats.loss_percent(),
        jitter_ms: stats.jitter_ms,
        rtt_ms: m.rtcp().rtt_ms,
        ptime_ms: f64::from(m.ptime()),
    })
}

#[cfg(test)]
mod tests {
    use super::reason_value;

    #[test]
    fn reason_headers_take_the_rfc_3326_form() {
        assert_eq!(
            reason_value(486, "Busy Here"),
            "SIP ;cause=486 ;text=\"Busy Here\""
        );
        assert_eq!(
            reason_value(488, "codec \"G729\" is not offered"),
            "SIP ;cause=488 ;text=\"codec \\\"G729\\\" is not offered\""
        );
        assert_eq!(
            reason_value(486, "SIP;cause=486;text=\"Busy Here\""),
            "SIP;cause=486;text=\"Busy Here\""
        );
        assert_eq!(reason_value(480, "Q.850;cause=16"), "Q.850;cause=16");
    }
}
