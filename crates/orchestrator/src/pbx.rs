//! A UA's PBX: where its REGISTERs and its calls to DNs go, with which credentials, and the
//! registration kept fresh until cleanup.

use crate::ua::UaShared;
use events::Level;
use scenario::{Instance, SipTransport};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;
use transport::rsipstack::dialog::authenticate::Credential;
use transport::rsipstack::dialog::registration::Registration;
use transport::rsipstack::transport::SipAddr;
use transport::sip::Uri;

/// A PBX, resolved for use.
#[derive(Clone)]
pub(crate) struct PbxConf {
    /// `host[:port]` as written.
    pub(crate) host_port: String,
    pub(crate) tcp: bool,
    pub(crate) credential: Option<Credential>,
    pub(crate) outbound_proxy: Option<SocketAddr>,
    pub(crate) register: bool,
    pub(crate) expires: u32,
}

impl PbxConf {
    pub(crate) fn from_instance(inst: &Instance) -> Result<Option<Self>, String> {
        let Some(p) = &inst.pbx else { return Ok(None) };
        let host_port = match p.port {
            Some(port) => format!("{}:{port}", p.host),
            None => p.host.clone(),
        };
        let outbound_proxy = match &p.outbound_proxy {
            None => None,
            Some(op) => {
                let with_port = if op.contains(':') {
                    op.clone()
                } else {
                    format!("{op}:5060")
                };
                Some(
                    with_port
                        .to_socket_addrs()
                        .map_err(|e| format!("outbound proxy {op}: {e}"))?
                        .next()
                        .ok_or_else(|| format!("outbound proxy {op} resolves to no address"))?,
                )
            }
        };
        let credential = p.password()?.map(|password| Credential {
            username: inst.dn.clone(),
            password,
            realm: p.realm.clone(),
            auth_username: p.auth_user.clone().filter(|a| a != &inst.dn),
        });
        Ok(Some(Self {
            host_port,
            tcp: p.transport == SipTransport::Tcp,
            credential,
            outbound_proxy,
            register: inst.register,
            expires: inst
                .register_interval
                .as_secs()
                .clamp(60, u64::from(u32::MAX)) as u32,
        }))
    }

    fn suffix(&self) -> &'static str {
        if self.tcp { ";transport=tcp" } else { "" }
    }

    /// `sip:<user>@<pbx>` (a DN reached through the PBX, or our address of record).
    pub(crate) fn uri_for(&self, user: &str) -> String {
        format!("sip:{user}@{}{}", self.host_port, self.suffix())
    }

    /// The registrar: `sip:<pbx>`.
    pub(crate) fn registrar(&self) -> String {
        format!("sip:{}{}", self.host_port, self.suffix())
    }

    /// Where requests are sent when there is an outbound proxy.
    pub(crate) fn destination(&self) -> Option<SipAddr> {
        let addr = self.outbound_proxy?;
        let transport = if self.tcp {
            transport::sip::Transport::Tcp
        } else {
            transport::sip::Transport::Udp
        };
        Some(SipAddr {
            r#type: Some(transport),
            addr: addr.into(),
        })
    }
}

/// The outcome of a REGISTER: the status, and what a person reads.
pub(crate) struct RegisterOutcome {
    pub(crate) code: u16,
    pub(crate) text: String,
}

impl UaShared {
    fn registration(&self, pbx: &PbxConf) -> Registration {
        let mut reg = Registration::new(self.endpoint.clone(), pbx.credential.clone());
        reg.outbound_proxy = pbx.outbound_proxy;
        // Our own Contact (listener address, `;transport=tcp` on TCP): rsipstack would take the
        // outgoing connection's ephemeral port, without the transport, which a registrar then
        // tries to reach over UDP.
        reg.contact = Some(transport::sip::typed::Contact {
            display_name: None,
            uri: self.contact.clone(),
            params: vec![],
        });
        reg
    }

    /// Sends REGISTER (with `expires`, 0 to unregister), answering challenges.
    pub(crate) async fn register(&self, expires: u32) -> Result<RegisterOutcome, String> {
        let pbx = self.pbx.as_ref().ok_or("no PBX")?;
        let server = Uri::try_from(pbx.registrar().as_str())
            .map_err(|e| format!("bad registrar URI: {e}"))?;
        let mut reg = self.registration.lock().await;
        let reg = reg.get_or_insert_with(|| self.registration(pbx));
        let resp = reg
            .register(server, Some(expires))
            .await
            .map_err(|e| e.to_string())?;
        Ok(RegisterOutcome {
            code: resp.status_code.code(),
            text: resp.status_code.text().to_owned(),
        })
    }

    /// Keeps the registration fresh (at 80 % of the expiry) until the task is aborted.
    pub(crate) async fn refresh_registration(self: std::sync::Arc<Self>) {
        let Some(pbx) = self.pbx.clone() else { return };
        loop {
            tokio::time::sleep(Duration::from_secs(u64::from(pbx.expires) * 4 / 5)).await;
            match self.register(pbx.expires).await {
                Ok(o) if (200..300).contains(&o.code) => {
                    self.log(Level::Debug, None, None, "registration refreshed".into())
                }
                Ok(o) => self.log(
                    Level::Error,
                    None,
                    None,
                    format!("registration refresh: {} {}", o.code, o.text),
                ),
                Err(e) => self.log(
                    Level::Error,
                    None,
                    None,
                    format!("registration refresh failed: {e}"),
                ),
            }
        }
    }
}
