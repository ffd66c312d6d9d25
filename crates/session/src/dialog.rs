//! The seam between a call and rsipstack: what the session asks of an INVITE dialog. rsipstack's
//! [`InviteDialog`] is the real one; the session's own tests use a scripted one, so names,
//! iterations, reports, hang-up and close are tested without a socket.

use std::future::Future;
use transport::rsipstack::Result;
use transport::rsipstack::dialog::DialogId;
use transport::rsipstack::dialog::dialog::DialogState;
use transport::rsipstack::dialog::invite_dialog::InviteDialog;
use transport::sip::StatusCode;

/// What a call needs of its dialog.
pub trait Dialog: Clone + Send + Sync + 'static {
    /// Its id as it is now (with the remote tag once there is one).
    fn id(&self) -> DialogId;
    /// Where it stands (authoritative: the call's event log may lag a moment behind).
    fn state(&self) -> DialogState;
    /// The CSeq number of the INVITE that made it.
    fn invite_cseq(&self) -> Option<u32>;
    /// BYE; done once the peer answered it.
    fn bye(&self) -> impl Future<Output = Result<()>> + Send;
    /// CANCEL of our INVITE; done once the peer answered it.
    fn cancel(&self) -> impl Future<Output = Result<()>> + Send;
    /// A final non-2xx response to the peer's INVITE.
    #[allow(clippy::result_large_err)] // rsipstack's error, passed through as it is
    fn reject(&self, code: u16) -> Result<()>;
}

// `InviteDialog::` names rsipstack's own methods, which these wrap (not this trait's).
#[allow(clippy::use_self)]
impl Dialog for InviteDialog {
    fn id(&self) -> DialogId {
        InviteDialog::id(self)
    }

    fn state(&self) -> DialogState {
        InviteDialog::state(self)
    }

    fn invite_cseq(&self) -> Option<u32> {
        self.initial_request()
            .headers
            .iter()
            .find(|h| h.name().eq_ignore_ascii_case("CSeq"))
            .and_then(|h| h.value().split_whitespace().next()?.parse::<u32>().ok())
    }

    fn bye(&self) -> impl Future<Output = Result<()>> + Send {
        InviteDialog::bye(self)
    }

    fn cancel(&self) -> impl Future<Output = Result<()>> + Send {
        InviteDialog::cancel(self)
    }

    fn reject(&self, code: u16) -> Result<()> {
        InviteDialog::reject(self, Some(StatusCode::from(code)), None)
    }
}
