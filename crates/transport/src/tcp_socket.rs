//! Our own TCP sockets, found by their addresses.
//!
//! rsipstack owns its TCP streams (split into halves inside its connections, never handed out),
//! so neither TCP_NODELAY nor the local port of a connection we opened can be had through it.
//! Linux lets a process look at its own descriptors: `/proc/self/fd` lists them, and
//! `pidfd_getfd` (Linux 5.6) duplicates one, in safe code, onto which `getsockname`,
//! `getpeername` and `setsockopt` work as on the original. Without it (another system, an
//! older kernel) nothing is found and nothing is set: the records keep the listener's address
//! and Nagle stays on.

use rustix::fd::OwnedFd;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};

/// Every TCP socket of this process that is connected, with its local and peer addresses.
fn connected() -> Vec<(OwnedFd, SocketAddr, SocketAddr)> {
    let Ok(pidfd) = rustix::process::pidfd_open(
        rustix::process::getpid(),
        rustix::process::PidfdFlags::empty(),
    ) else {
        return Vec::new();
    };
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
        })
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|n| {
            let fd =
                rustix::process::pidfd_getfd(&pidfd, n, rustix::process::PidfdGetfdFlags::empty())
                    .ok()?;
            // A connected UDP socket (RTP) is not one, nor a TCP socket whose peer has
            // closed (CLOSE_WAIT, about to go): its peer's port may be a new UA's by now.
            if rustix::net::sockopt::socket_type(&fd).ok()? != rustix::net::SocketType::STREAM
                || peer_closed(&fd)
            {
                return None;
            }
            let local = SocketAddr::try_from(rustix::net::getsockname(&fd).ok()?).ok()?;
            let peer = SocketAddr::try_from(rustix::net::getpeername(&fd).ok()??).ok()?;
            Some((fd, local, peer))
        })
        .collect()
}

/// Whether the other end closed the connection: a peek (which takes nothing) reads its end.
fn peer_closed(fd: &OwnedFd) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        rustix::net::recv(
            fd,
            &mut byte,
            rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT
        ),
        Ok((0, _))
    )
}

/// Turns Nagle's algorithm off on the socket from `local` to `peer` (SIP messages are small and
/// each waits for the one before it: with Nagle and delayed ACKs, a BYE right behind an ACK
/// waits ~40 ms). Returns whether the socket was found.
pub(crate) fn set_nodelay(local: SocketAddr, peer: SocketAddr) -> bool {
    connected()
        .into_iter()
        .find(|(_, l, p)| *p == peer && (*l == local || local.port() == 0))
        .is_some_and(|(fd, _, _)| rustix::net::sockopt::set_tcp_nodelay(&fd, true).is_ok())
}

/// Which UA (by its listening address) owns each connection (local and peer address),
/// process-wide: two UAs connected to the same peer (a PBX) are told apart by it.
type Claims = HashMap<(SocketAddr, SocketAddr), SocketAddr>;

fn claims() -> &'static Mutex<Claims> {
    static CLAIMS: OnceLock<Mutex<Claims>> = OnceLock::new();
    CLAIMS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Records that the connection from `local` to `peer` belongs to the UA listening on `ua`.
pub(crate) fn claim(local: SocketAddr, peer: SocketAddr, ua: SocketAddr) {
    claims()
        .lock()
        .expect("claims lock")
        .insert((local, peer), ua);
}

/// Forgets a closed connection.
pub(crate) fn release(local: SocketAddr, peer: SocketAddr) {
    claims().lock().expect("claims lock").remove(&(local, peer));
}

/// The local address of the UA `ua`'s connection to `peer`: its listener's own when it accepted
/// the connection, an ephemeral one when it opened it. A connection another UA claimed is
/// never taken; one nobody claimed yet is claimed for `ua`. Known connections are answered
/// from the claims, the others by looking at the process's sockets.
pub(crate) fn local_for(ua: SocketAddr, peer: SocketAddr) -> Option<SocketAddr> {
    let known = claims()
        .lock()
        .expect("claims lock")
        .iter()
        .find(|((_, p), owner)| *p == peer && **owner == ua)
        .map(|((l, _), _)| *l);
    if known.is_some() {
        return known;
    }
    let candidates = connected();
    let mut claims = claims().lock().expect("claims lock");
    let (_, local, _) = candidates
        .iter()
        .filter(|(_, l, p)| *p == peer && l.ip() == ua.ip())
        .find(|(_, l, p)| claims.get(&(*l, *p)).is_none_or(|owner| *owner == ua))?;
    claims.insert((*local, peer), ua);
    Some(*local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_of_ours_is_found_by_its_peer_and_gets_nodelay() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(server).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let local = client.local_addr().unwrap();
        if connected().is_empty() {
            eprintln!("pidfd_getfd is not available here: nothing to check");
            return;
        }
        // The UA that opened it is told its ephemeral port, not its listener's.
        let ua: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(local_for(ua, server), Some(local));
        // Another UA with a connection to the same peer never gets this one.
        let other: SocketAddr = "127.0.0.1:2".parse().unwrap();
        assert_eq!(local_for(other, server), None);
        assert!(set_nodelay(local, server));
        assert!(
            client.nodelay().unwrap(),
            "the original socket has TCP_NODELAY"
        );
        assert!(!accepted.nodelay().unwrap());
        release(local, server);
    }

    #[test]
    fn a_socket_whose_peer_closed_or_a_connected_udp_socket_is_never_taken() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(server).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        // A UDP socket connected to the same address (an RTP socket whose peer once had it).
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.connect(server).unwrap();
        if connected().is_empty() {
            eprintln!("pidfd_getfd is not available here: nothing to check");
            return;
        }
        drop(accepted);
        // Wait (bounded) for the FIN: a blocking peek returns 0 once it is in.
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        assert_eq!(client.peek(&mut [0u8; 1]).unwrap(), 0, "the peer closed");
        let ua: SocketAddr = "127.0.0.1:3".parse().unwrap();
        assert_eq!(local_for(ua, server), None, "{:?}", connected());
    }
}
