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
    pub(crate) transport: SipTransport,
    pub(crate) credential: Option<Credential>,
    pub(crate) outbound_proxy: Option<SocketAddr>,
    pub(crate) register: bool,
    pub(crate) expires: u32,
    /// The DN, auth user and password as written, when they use a load's per-iteration data
    /// (`${field}`): each call and each registration expands them for its user
    /// ([`Self::credential_for`]); `credential` is then none.
    pub(crate) template: Option<Template>,
}

/// A PBX account as written, with `${field}`s.
#[derive(Clone, Debug)]
pub(crate) struct Template {
    dn: String,
    auth_user: Option<String>,
    password: Option<String>,
    realm: Option<String>,
}

impl PbxConf {
    pub(crate) fn from_instance(
        inst: &Instance,
        data: Option<&crate::data::Data>,
    ) -> Result<Option<Self>, String> {
        let Some(p) = &inst.pbx else { return Ok(None) };
        let templated = data.is_some()
            && [
                Some(&inst.dn),
                p.auth_user.as_ref(),
                p.password_text.as_ref(),
            ]
            .into_iter()
            .flatten()
            .any(|t| crate::data::templated(t));
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
        let template = templated.then(|| Template {
            dn: inst.dn.clone(),
            auth_user: p.auth_user.clone(),
            password: p.password_text.clone(),
            realm: p.realm.clone(),
        });
        let credential = if templated {
            None
        } else {
            p.password()?.map(|password| Credential {
                username: inst.dn.clone(),
                password,
                realm: p.realm.clone(),
                auth_username: p.auth_user.clone().filter(|a| a != &inst.dn),
            })
        };
        Ok(Some(Self {
            host_port,
            transport: p.transport,
            credential,
            outbound_proxy,
            register: inst.register,
            expires: inst
                .register_interval
                .as_secs()
                .clamp(60, u64::from(u32::MAX)) as u32,
            template,
        }))
    }

    /// The user (DN) and digest credential of `iteration`'s row, when the account is a
    /// template; the environment's `${NAME}`s in the password are expanded after the row's.
    pub(crate) fn credential_for(
        &self,
        data: &crate::data::Data,
        iteration: u32,
    ) -> Option<(String, Option<Credential>)> {
        let t = self.template.as_ref()?;
        let user = data.expand(iteration, &t.dn);
        let credential = t.password.as_ref().map(|p| {
            let expanded = data.expand(iteration, p);
            Credential {
                username: user.clone(),
                password: scenario::expand_env_keeping(&expanded, &[]).unwrap_or(expanded),
                realm: t.realm.clone(),
                auth_username: t
                    .auth_user
                    .as_ref()
                    .map(|a| data.expand(iteration, a))
                    .filter(|a| a != &user),
            }
        });
        Some((user, credential))
    }

    fn suffix(&self) -> String {
        self.transport
            .uri_param()
            .map_or_else(String::new, |t| format!(";transport={t}"))
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
        Some(SipAddr {
            r#type: Some(transport::rsip_transport(self.transport)),
            addr: addr.into(),
        })
    }
}

/// Sends `reg`'s REGISTER to `pbx`'s registrar, answering challenges.
async fn send_register(
    reg: &mut Registration,
    pbx: &PbxConf,
    expires: u32,
) -> Result<RegisterOutcome, String> {
    let server =
        Uri::try_from(pbx.registrar().as_str()).map_err(|e| format!("bad registrar URI: {e}"))?;
    let resp = reg
        .register(server, Some(expires))
        .await
        .map_err(|e| e.to_string())?;
    Ok(RegisterOutcome {
        code: resp.status_code.code(),
        text: resp.status_code.text().to_owned(),
    })
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
        let mut reg = self.registration.lock().await;
        let reg = reg.get_or_insert_with(|| self.registration(pbx));
        send_register(reg, pbx, expires).await
    }

    /// Registers `user` (a load's user of a row) with `credential`, its Contact `user@` our
    /// address; `expires` 0 unregisters.
    pub(crate) async fn register_as(
        &self,
        user: &str,
        credential: Option<Credential>,
        expires: u32,
    ) -> Result<RegisterOutcome, String> {
        let pbx = self.pbx.as_ref().ok_or("no PBX")?;
        let mut reg = Registration::new(self.endpoint.clone(), credential);
        reg.outbound_proxy = pbx.outbound_proxy;
        let contact = instances::sip_uri(user, self.local, self.transport);
        reg.contact = Some(transport::sip::typed::Contact {
            display_name: None,
            uri: Uri::try_from(contact.as_str()).map_err(|e| format!("bad contact: {e}"))?,
            params: vec![],
        });
        send_register(&mut reg, pbx, expires).await
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
