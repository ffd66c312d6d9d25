//! Placing and answering calls: what MakeCall, Answer, a transfer and a Replaces have in common.

use crate::ua::UaShared;
use instances::PortLease;
use media::sdp::{self, LocalMedia, SdpError};
use session::Call;
use std::sync::Arc;
use transport::rsipstack::dialog::invitation::{InviteAsyncResult, InviteOption};
use transport::sip::{Header, Uri};

/// An RTP port held for a call until the call is closed.
struct MediaLease {
    _lease: PortLease,
    _socket: std::net::UdpSocket,
}

/// Extra choices for an outgoing INVITE.
#[derive(Clone, Debug, Default)]
pub(crate) struct CallOptions {
    /// Headers added to the INVITE (X-*, P-Asserted-Identity, Diversion, Replaces, ...).
    pub(crate) headers: Vec<Header>,
    pub(crate) display_name: Option<String>,
    /// The From user; the UA's DN by default.
    pub(crate) from_user: Option<String>,
}

pub(crate) fn sdp_header() -> Header {
    Header::ContentType("application/sdp".into())
}

/// A header from its name and value, typed where rsipstack knows the name.
pub(crate) fn make_header(name: &str, value: &str) -> Header {
    transport::sip::headers::make_header(name, value.to_owned())
}

impl UaShared {
    /// Leases an RTP port and describes our media on it.
    fn local_media(&self) -> Result<(MediaLease, LocalMedia), String> {
        let ip = self.bind_ip;
        let (lease, socket) = self
            .rtp
            .lease(|port| {
                let s = std::net::UdpSocket::bind((ip, port))?;
                let p = s.local_addr()?.port();
                Ok::<_, std::io::Error>((s, p))
            })
            .map_err(|e| format!("no RTP port: {e}"))?;
        let media = LocalMedia {
            ip,
            rtp_port: lease.port(),
            codecs: self.codecs.clone(),
            session_id: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs()),
        };
        Ok((
            MediaLease {
                _lease: lease,
                _socket: socket,
            },
            media,
        ))
    }

    /// Sends an INVITE with our offer. The call is recorded at once (bound to `name` if given)
    /// and keeps its RTP port; the handle resolves with the final response.
    pub(crate) fn place_call(
        &self,
        name: Option<&str>,
        callee: Uri,
        opts: CallOptions,
    ) -> Result<(Arc<Call>, tokio::task::JoinHandle<InviteAsyncResult>), String> {
        let (lease, media) = self.local_media()?;
        let offer = sdp::offer(&media);
        let user = opts.from_user.as_deref().unwrap_or(&self.dn);
        let caller = Uri::try_from(instances::sip_uri(user, self.local, false).as_str())
            .map_err(|e| format!("bad caller URI: {e}"))?;
        let invite = InviteOption {
            caller,
            caller_display_name: opts.display_name,
            callee: callee.clone(),
            contact: self.contact.clone(),
            content_type: Some("application/sdp".to_owned()),
            offer: Some(offer.clone().into_bytes()),
            headers: (!opts.headers.is_empty()).then_some(opts.headers),
            ..Default::default()
        };
        let (dialog, join) = self
            .dialogs
            .do_invite_async(invite, self.state_tx.clone())
            .map_err(|e| format!("cannot send INVITE to {callee}: {e}"))?;
        let call = self.sessions.insert_outgoing(self.idx, name, dialog);
        call.set_local_sdp(offer.into_bytes());
        call.keep(Box::new(lease));
        Ok((call, join))
    }

    /// Builds our answer to the call's offer (leasing its RTP port) and records it as our SDP.
    /// An answer already sent (in a 183 for early media) is used again.
    pub(crate) fn answer_sdp(&self, call: &Call) -> Result<String, String> {
        if call.role == session::Role::Incoming
            && let Some(sent) = call.local_sdp()
        {
            return Ok(String::from_utf8_lossy(&sent).into_owned());
        }
        let offer = String::from_utf8_lossy(&call.dialog.initial_request().body).into_owned();
        let (lease, media) = self.local_media()?;
        let answer = sdp::answer(&offer, &media).map_err(|e: SdpError| e.to_string())?;
        call.keep(Box::new(lease));
        call.set_local_sdp(answer.clone().into_bytes());
        Ok(answer)
    }
}
