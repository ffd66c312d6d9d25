//! UA bookkeeping for a run: the registry of started UAs, which ports are leased, and where a
//! UA binds.
//!
//! The allocator is pure: it decides which port to try next and tracks leases; the caller's
//! closure does the binding (a test passes a fake). A lease is released when it is dropped, so a
//! port can only stay leased while something still holds it, which is what the leak check counts.

mod registry;
mod transport;

pub use registry::{Registry, Target, UaEntry, host_port, sip_uri};
pub use transport::{SipTransport, UnknownTransport};

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

/// Where ports come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortPolicy {
    /// Let the OS choose (bind port 0). Tests use this, so they run in parallel.
    Ephemeral,
    /// `count` ports from `base` upwards, `step` apart (sipflow used base 15060, step 2).
    Range { base: u16, count: u16, step: u16 },
}

impl PortPolicy {
    pub fn range(base: u16, count: u16) -> Self {
        Self::Range {
            base,
            count,
            step: 2,
        }
    }
}

/// How often an ephemeral lease is tried before giving up. The OS picks a free port for the
/// first socket; the second (TCP beside UDP, RTCP on the port above RTP) finds its port taken
/// about as often as any port is: with thousands of sockets open (2,000 pairs keep 12,000),
/// 8 tries ran out about once in 16 such runs. A try is one bind.
const EPHEMERAL_TRIES: usize = 64;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PortError {
    #[error("no free port in {base}..{end} (step {step}): {tried} tried, all in use")]
    Exhausted {
        base: u16,
        end: u32,
        step: u16,
        tried: usize,
    },
    #[error("failed to bind an ephemeral port ({EPHEMERAL_TRIES} tries): {0}")]
    Ephemeral(std::io::Error),
}

#[derive(Debug)]
struct State {
    policy: PortPolicy,
    leased: BTreeSet<u16>,
    /// Round-robin cursor into the range, so a just-released port is not reused at once.
    cursor: u32,
}

/// Leases ports for one run.
#[derive(Clone, Debug)]
pub struct PortAllocator {
    state: Arc<Mutex<State>>,
}

/// A leased port; dropped = released.
#[derive(Debug)]
pub struct PortLease {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl PortLease {
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        lock(&self.state).leased.remove(&self.port);
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // A panic while holding this lock leaves plain data behind; keep going.
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl PortAllocator {
    pub fn new(policy: PortPolicy) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                policy,
                leased: BTreeSet::new(),
                cursor: 0,
            })),
        }
    }

    /// Ports leased and not yet released.
    pub fn leased(&self) -> usize {
        lock(&self.state).leased.len()
    }

    /// Leases a port: `bind(port)` tries to take it (with 0 meaning "any") and returns what it
    /// bound and the port actually obtained. Ports in use (bind fails) are skipped.
    pub fn lease<T, E: std::fmt::Display>(
        &self,
        mut bind: impl FnMut(u16) -> Result<(T, u16), E>,
    ) -> Result<(PortLease, T), PortError> {
        let policy = lock(&self.state).policy;
        match policy {
            PortPolicy::Ephemeral => {
                // The OS picks a free port for the first socket; a second one (TCP beside UDP)
                // may still find it taken, so try a few times.
                let mut last = String::new();
                for _ in 0..EPHEMERAL_TRIES {
                    match bind(0) {
                        Ok((t, port)) => {
                            lock(&self.state).leased.insert(port);
                            return Ok((
                                PortLease {
                                    port,
                                    state: self.state.clone(),
                                },
                                t,
                            ));
                        }
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(PortError::Ephemeral(std::io::Error::other(last)))
            }
            PortPolicy::Range { base, count, step } => {
                let step = step.max(1);
                let mut tried = 0;
                for _ in 0..count {
                    let candidate = {
                        let mut st = lock(&self.state);
                        let offset = st.cursor % u32::from(count.max(1));
                        st.cursor = st.cursor.wrapping_add(1);
                        let port = u32::from(base) + offset * u32::from(step);
                        match u16::try_from(port) {
                            Ok(p) if !st.leased.contains(&p) => p,
                            _ => continue,
                        }
                    };
                    tried += 1;
                    match bind(candidate) {
                        Ok((t, _)) => {
                            let mut st = lock(&self.state);
                            if st.leased.insert(candidate) {
                                return Ok((
                                    PortLease {
                                        port: candidate,
                                        state: self.state.clone(),
                                    },
                                    t,
                                ));
                            }
                        }
                        Err(e) => {
                            tracing::debug!(port = candidate, error = %e, "port in use, trying the next")
                        }
                    }
                }
                Err(PortError::Exhausted {
                    base,
                    end: u32::from(base) + u32::from(count) * u32::from(step),
                    step,
                    tried,
                })
            }
        }
    }
}

/// The address a UA binds to: loopback for local scenarios, the configured address otherwise.
pub fn bind_ip(configured: Option<IpAddr>) -> IpAddr {
    configured.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn range_skips_ports_in_use_and_reports_exhaustion() {
        let a = PortAllocator::new(PortPolicy::range(20000, 3));
        let busy = [20002u16];
        let bind = |p: u16| {
            if busy.contains(&p) {
                Err("in use")
            } else {
                Ok(((), p))
            }
        };
        let (l1, ()) = a.lease(bind).unwrap();
        let (l2, ()) = a.lease(bind).unwrap();
        assert_eq!((l1.port(), l2.port()), (20000, 20004));
        let err = a.lease(bind).unwrap_err();
        assert!(
            err.to_string().contains("no free port in 20000..20006"),
            "{err}"
        );
        drop(l1);
        assert_eq!(a.leased(), 1);
        assert_eq!(a.lease(bind).unwrap().0.port(), 20000);
    }

    #[test]
    fn ephemeral_records_the_port_the_os_gave() {
        let a = PortAllocator::new(PortPolicy::Ephemeral);
        let (l, ()) = a
            .lease(|p| {
                assert_eq!(p, 0);
                Ok::<_, String>(((), 40123))
            })
            .unwrap();
        assert_eq!((l.port(), a.leased()), (40123, 1));
        drop(l);
        assert_eq!(a.leased(), 0);
    }

    /// A second socket whose port is taken (RTCP's, above RTP's) is tried again with another
    /// port, many times over before the lease gives up, saying why.
    #[test]
    fn ephemeral_tries_again_when_the_second_socket_is_taken() {
        let a = PortAllocator::new(PortPolicy::Ephemeral);
        let mut tries = 0;
        let (l, ()) = a
            .lease(|_| {
                tries += 1;
                if tries < 20 {
                    Err("Address already in use".to_owned())
                } else {
                    Ok(((), 40200))
                }
            })
            .unwrap();
        assert_eq!((l.port(), tries), (40200, 20));
        let err = a
            .lease(|_| Err::<((), u16), _>("Address already in use"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "failed to bind an ephemeral port (64 tries): Address already in use"
        );
    }

    proptest! {
        /// Never two leases on one port; releasing restores; the count is exact.
        #[test]
        fn leases_are_unique_and_released(ops in proptest::collection::vec(any::<bool>(), 1..60), count in 1u16..12) {
            let a = PortAllocator::new(PortPolicy::range(30000, count));
            let mut held: Vec<PortLease> = vec![];
            for lease in ops {
                if lease {
                    match a.lease(|p| Ok::<_, String>(((), p))) {
                        Ok((l, ())) => {
                            prop_assert!(!held.iter().any(|h| h.port() == l.port()));
                            held.push(l);
                        }
                        Err(_) => prop_assert_eq!(held.len(), usize::from(count)),
                    }
                } else if !held.is_empty() {
                    held.remove(0);
                }
                prop_assert_eq!(a.leased(), held.len());
            }
            held.clear();
            prop_assert_eq!(a.leased(), 0);
        }
    }
}
