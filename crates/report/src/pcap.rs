//! A pcap of the run's SIP messages, and its RTP when the run captured it (`rtp_packet` events):
//! Ethernet/IPv4/UDP (or TCP) frames with the real addresses and timestamps, each packet once
//! (a packet between two of our own UAs is recorded by both, and written once), readable by
//! tshark and Wireshark.

use crate::ReportError;
use base64::Engine as _;
use etherparse::PacketBuilder;
use events::{Direction, Event, EventKind};
use pcap_file::pcap::{PcapPacket, PcapWriter};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// Writes the SIP messages and RTP packets of `events` to `path`; returns how many frames.
pub fn write(events: &[Event], path: &Path) -> Result<usize, ReportError> {
    let p = path.display().to_string();
    let err = |e: &dyn std::fmt::Display| ReportError::Write {
        path: p.clone(),
        message: e.to_string(),
    };
    let file = std::fs::File::create(path).map_err(|e| err(&e))?;
    let mut w = PcapWriter::new(file).map_err(|e| err(&e))?;
    let ours = crate::our_addresses(events);
    let mut once = crate::OnceEach::default();
    let mut tcp_seq: HashMap<(SocketAddr, SocketAddr), u32> = HashMap::new();
    let our_rtp: HashSet<&str> = events
        .iter()
        .filter_map(|e| match &e.event {
            EventKind::RtpPacket(r) => Some(r.local.as_str()),
            _ => None,
        })
        .collect();
    let mut n = 0;
    for e in crate::in_wire_order(events) {
        let (direction, local, peer, payload, tcp): (_, _, _, Cow<'_, [u8]>, _) = match &e.event {
            EventKind::RtpPacket(r) => {
                // Between two of our UAs, the sender's copy is the one written.
                if r.direction == Direction::Received && our_rtp.contains(r.peer.as_str()) {
                    continue;
                }
                let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(&r.bytes) else {
                    continue;
                };
                (r.direction, &r.local, &r.peer, bytes.into(), false)
            }
            EventKind::SipMessage(m) => {
                if !once.keep(m, ours.contains_key(&m.peer)) {
                    continue;
                }
                let raw = m.raw.as_bytes();
                (
                    m.direction,
                    &m.local,
                    &m.peer,
                    raw.into(),
                    m.transport == "tcp",
                )
            }
            _ => continue,
        };
        let (Ok(local), Ok(peer)) = (local.parse::<SocketAddr>(), peer.parse::<SocketAddr>())
        else {
            continue;
        };
        let (src, dst) = match direction {
            Direction::Sent => (local, peer),
            Direction::Received => (peer, local),
        };
        let Some(base) = ip(src, dst) else { continue };
        let mut frame = Vec::new();
        if tcp {
            let seq = tcp_seq.entry((src, dst)).or_insert(1);
            base.tcp(src.port(), dst.port(), *seq, 65535)
                .psh()
                .ack(1)
                .write(&mut frame, &payload)
                .map_err(|e| err(&e))?;
            *seq = seq.wrapping_add(payload.len() as u32);
        } else {
            base.udp(src.port(), dst.port())
                .write(&mut frame, &payload)
                .map_err(|e| err(&e))?;
        }
        let ts = Duration::from_micros(e.ts_us);
        w.write_packet(&PcapPacket::new(ts, frame.len() as u32, &frame))
            .map_err(|e| err(&e))?;
        n += 1;
    }
    Ok(n)
}

/// The Ethernet and IP headers of a frame from `src` to `dst` (None when the families differ).
fn ip(
    src: SocketAddr,
    dst: SocketAddr,
) -> Option<etherparse::PacketBuilderStep<etherparse::IpHeaders>> {
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Some(eth.ipv4(s.octets(), d.octets(), 64)),
        (IpAddr::V6(s), IpAddr::V6(d)) => Some(eth.ipv6(s.octets(), d.octets(), 64)),
        _ => None,
    }
}
