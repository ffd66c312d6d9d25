//! Requests outside any call: MESSAGE, OPTIONS, INFO and NOTIFY sent outside a dialog, SUBSCRIBE
//! (RFC 6665) and the requests of its subscription, and what reaches a UA outside any call.

use crate::ua::UaShared;
use events::Level;
use session::{CallEvent, Latched};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use transport::rsipstack::dialog::authenticate::{AuthRetry, handle_client_authenticate};
use transport::rsipstack::transaction::key::{TransactionKey, TransactionRole};
use transport::rsipstack::transaction::transaction::Transaction;
use transport::sip::prelude::HeadersExt;
use transport::sip::{Header, Method, Response, SipMessage, StatusCode, Uri};

/// How long ending a subscription waits for the notifier's final NOTIFY.
const FINAL_NOTIFY: Duration = Duration::from_secs(2);

/// The requests a UA keeps that reached it outside any dialog (the oldest go first).
pub(crate) const INBOX: usize = 256;

/// A request of ours outside an INVITE dialog.
pub(crate) struct Outgoing<'a> {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    /// Inside a subscription: its Call-ID, our tag and the remote tag, if known.
    pub(crate) dialog: Option<(&'a str, &'a str, Option<&'a str>)>,
    pub(crate) cseq: u32,
    pub(crate) headers: Vec<Header>,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Option<Vec<u8>>,
}

/// A subscription of ours (RFC 6665): the dialog its SUBSCRIBE made, and the NOTIFYs it got.
pub(crate) struct Subscription {
    pub(crate) event: String,
    pub(crate) call_id: String,
    pub(crate) local_tag: String,
    pub(crate) remote_tag: Mutex<Option<String>>,
    /// Where its requests go: the target, then the Contact of its 2xx or NOTIFY.
    pub(crate) remote: Mutex<Uri>,
    pub(crate) cseq: AtomicU32,
    /// A NOTIFY said `Subscription-State: terminated`, or we ended it.
    pub(crate) ended: AtomicBool,
    pub(crate) log: Latched<CallEvent>,
}

/// A random token for tags and Call-IDs.
fn token() -> String {
    transport::rsipstack::transaction::random_text(10)
}

impl UaShared {
    /// Sends `out` and returns its final response, answering a 401/407 once with the PBX's
    /// credentials.
    ///
    /// Cancel safety: safe; dropping it abandons the transaction (rsipstack's timers end it).
    pub(crate) async fn send_outside(&self, out: Outgoing<'_>) -> Result<Response, String> {
        let via = self
            .endpoint
            .get_via(None, None)
            .map_err(|e| format!("no Via: {e}"))?;
        let (call_id, from_tag, to_tag) = match out.dialog {
            Some((c, f, t)) => (c.to_owned(), f.to_owned(), t.map(str::to_owned)),
            None => (format!("{}@callflow", token()), token(), None::<String>),
        };
        let tag = |t: String| vec![transport::sip::uri::Param::Tag(t.into())];
        let from = transport::sip::typed::From {
            display_name: None,
            uri: self.aor(&self.dn)?,
            params: tag(from_tag),
        };
        let to = transport::sip::typed::To {
            display_name: None,
            uri: out.uri.clone(),
            params: to_tag.map(tag).unwrap_or_default(),
        };
        let mut req = self.endpoint.make_request(
            out.method,
            out.uri.clone(),
            via,
            from,
            to,
            out.cseq,
            Some(call_id.into()),
        );
        req.headers
            .push(Header::Contact(format!("<{}>", self.contact).into()));
        for h in out.headers {
            req.headers.push(h);
        }
        if let Some(body) = out.body {
            req.headers.push(Header::ContentType(
                out.content_type
                    .unwrap_or_else(|| "text/plain".to_owned())
                    .into(),
            ));
            req.body = body;
        }
        req.headers
            .unique_push(Header::ContentLength((req.body.len() as u32).into()));
        let key = TransactionKey::from_request(&req, TransactionRole::Client)
            .map_err(|e| format!("cannot key the {}: {e}", out.method))?;
        let mut tx = Transaction::new_client(key, req, self.endpoint.clone(), None);
        if let Some(dest) = self.pbx.as_ref().and_then(crate::pbx::PbxConf::destination) {
            tx.destination = Some(dest);
        }
        tx.send()
            .await
            .map_err(|e| format!("cannot send the {}: {e}", out.method))?;
        let mut auth = AuthRetry::new();
        let mut seq = out.cseq;
        while let Some(msg) = tx.receive().await {
            let SipMessage::Response(resp) = msg else {
                continue;
            };
            let code = resp.status_code.code();
            if code < 200 {
                continue;
            }
            let cred = self.pbx.as_ref().and_then(|p| p.credential.as_ref());
            if matches!(
                resp.status_code,
                StatusCode::Unauthorized | StatusCode::ProxyAuthenticationRequired
            ) && let Some(cred) = cred
                && auth.should_answer(&resp)
            {
                seq += 1;
                tx = handle_client_authenticate(seq, &tx, resp, cred)
                    .await
                    .map_err(|e| format!("cannot answer the challenge: {e}"))?;
                tx.send()
                    .await
                    .map_err(|e| format!("cannot send the {}: {e}", out.method))?;
                continue;
            }
            return Ok(resp);
        }
        Err(format!(
            "the {} got no final response (its transaction timed out)",
            out.method
        ))
    }

    /// SUBSCRIBE to `event` at `uri` for `expires` (with `headers`), bound to `name`; returns
    /// the subscription and the final response.
    pub(crate) async fn subscribe(
        &self,
        name: &str,
        uri: Uri,
        event: &str,
        expires: Duration,
        headers: Vec<Header>,
    ) -> Result<(Arc<Subscription>, Response), String> {
        let sub = Arc::new(Subscription {
            event: event.to_owned(),
            call_id: format!("{}@callflow", token()),
            local_tag: token(),
            remote_tag: Mutex::new(None),
            remote: Mutex::new(uri.clone()),
            cseq: AtomicU32::new(1),
            ended: AtomicBool::new(false),
            log: Latched::bounded(INBOX),
        });
        // Known before the SUBSCRIBE goes: its first NOTIFY may overtake the 2xx (RFC 6665 §4.1.2.4).
        self.subscriptions
            .lock()
            .expect("subscriptions lock")
            .insert(name.to_owned(), sub.clone());
        let mut h = vec![
            Header::Event(event.into()),
            Header::Expires((expires.as_secs() as u32).into()),
        ];
        h.extend(headers);
        let resp = self
            .send_outside(Outgoing {
                method: Method::Subscribe,
                uri,
                dialog: Some((&sub.call_id, &sub.local_tag, None)),
                cseq: 1,
                headers: h,
                content_type: None,
                body: None,
            })
            .await?;
        sub.cseq.fetch_add(2, Ordering::AcqRel);
        if (200..300).contains(&resp.status_code.code()) {
            if let Some(tag) = resp.to_header().ok().and_then(|t| t.tag().ok().flatten()) {
                sub.remote_tag
                    .lock()
                    .expect("tag lock")
                    .get_or_insert(tag.value().to_owned());
            }
            if let Some(uri) = crate::routing::header_in(&resp.headers, "Contact")
                .as_deref()
                .and_then(transport::header::name_addr_uri)
            {
                *sub.remote.lock().expect("remote lock") = uri;
            }
        } else {
            sub.ended.store(true, Ordering::Release);
        }
        Ok((sub, resp))
    }

    /// Ends every subscription still up (SUBSCRIBE with Expires: 0); returns how many.
    pub(crate) async fn unsubscribe_all(&self) -> usize {
        let subs: Vec<Arc<Subscription>> = self
            .subscriptions
            .lock()
            .expect("subscriptions lock")
            .values()
            .filter(|s| !s.ended.swap(true, Ordering::AcqRel))
            .cloned()
            .collect();
        let ends = subs.iter().map(|sub| async move {
            let remote = sub.remote.lock().expect("remote lock").clone();
            let tag = sub.remote_tag.lock().expect("tag lock").clone();
            let r = self
                .send_outside(Outgoing {
                    method: Method::Subscribe,
                    uri: remote,
                    dialog: Some((&sub.call_id, &sub.local_tag, tag.as_deref())),
                    cseq: sub.cseq.fetch_add(2, Ordering::AcqRel),
                    headers: vec![
                        Header::Event(sub.event.clone().into()),
                        Header::Expires(0.into()),
                    ],
                    content_type: None,
                    body: None,
                })
                .await;
            match r {
                // The notifier's last word is a NOTIFY with `Subscription-State: terminated`
                // (RFC 6665 §4.1.2.3): wait a little for it, so it is answered, not refused.
                Ok(resp)
                    if resp.status_code.kind() == transport::sip::StatusCodeKind::Successful =>
                {
                    let last = |e: &CallEvent| {
                        matches!(e, CallEvent::Request { method, headers, .. }
                        if method == "NOTIFY" && headers.iter().any(|(n, v)| {
                            n.eq_ignore_ascii_case("Subscription-State")
                                && v.trim().to_ascii_lowercase().starts_with("terminated")
                        }))
                    };
                    let _ = tokio::time::timeout(FINAL_NOTIFY, sub.log.wait(last, false)).await;
                }
                Ok(_) => {}
                Err(e) => self.log(
                    Level::Warning,
                    None,
                    None,
                    format!("ending the {} subscription: {e}", sub.event),
                ),
            }
        });
        futures::future::join_all(ends).await;
        subs.len()
    }

    /// The subscription bound to `name`, if any.
    pub(crate) fn subscription(&self, name: &str) -> Option<Arc<Subscription>> {
        self.subscriptions
            .lock()
            .expect("subscriptions lock")
            .get(name)
            .cloned()
    }

    /// A request in one of our subscriptions (a NOTIFY): answered 200, latched on it. Returns
    /// false when it belongs to none.
    pub(crate) async fn in_subscription(&self, tx: &mut Transaction) -> bool {
        let req = &tx.original;
        let call_id = req.call_id_header().map(|c| c.value().to_owned()).ok();
        let to_tag = req
            .to_header()
            .ok()
            .and_then(|t| t.tag().ok().flatten())
            .map(|t| t.value().to_owned());
        let found = {
            let subs = self.subscriptions.lock().expect("subscriptions lock");
            subs.iter()
                .find(|(_, s)| {
                    Some(&s.call_id) == call_id.as_ref() && Some(&s.local_tag) == to_tag.as_ref()
                })
                .map(|(n, s)| (n.clone(), s.clone()))
        };
        let Some((name, sub)) = found else {
            return false;
        };
        if req.method == Method::Notify {
            if let Some(tag) = req.from_header().ok().and_then(|f| f.tag().ok().flatten()) {
                sub.remote_tag
                    .lock()
                    .expect("tag lock")
                    .get_or_insert(tag.value().to_owned());
            }
            if let Some(uri) = crate::routing::header(req, "Contact")
                .as_deref()
                .and_then(transport::header::name_addr_uri)
            {
                *sub.remote.lock().expect("remote lock") = uri;
            }
            if crate::routing::header(req, "Subscription-State")
                .is_some_and(|s| s.trim().to_ascii_lowercase().starts_with("terminated"))
            {
                sub.ended.store(true, Ordering::Release);
            }
        }
        let ev = crate::routing::received(req);
        self.log(Level::Info, None, Some(&name), ev.describe());
        let _ = tx.reply(StatusCode::OK).await;
        sub.log.push(ev);
        true
    }

    /// A request that reached this UA outside any dialog (MESSAGE, NOTIFY, INFO): answered 200,
    /// latched in the UA's inbox.
    pub(crate) async fn outside_any_dialog(&self, tx: &mut Transaction) {
        let ev = crate::routing::received(&tx.original);
        self.log(
            Level::Info,
            None,
            None,
            format!("{} (outside any call)", ev.describe()),
        );
        let _ = tx.reply(StatusCode::OK).await;
        self.inbox.push(ev);
    }
}

/// The subscriptions of a UA, by the logical id their Subscribe node bound.
pub(crate) type Subscriptions = Mutex<HashMap<String, Arc<Subscription>>>;
