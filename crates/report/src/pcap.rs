//! A pcap of the run's SIP messages: Ethernet/IPv4/UDP (or TCP) frames with the real addresses
//! and timestamps, each message once, readable by tshark and Wireshark.

use crate::ReportError;
use etherparse::PacketBuilder;
use events::{Direction, Event, EventKind};
use pcap_file::pcap::{PcapPacket, PcapWriter};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// Writes the SIP messages of `events` to `path`.
pub fn write(events: &[Event], path: &Path) -> Result<usize, ReportError> {
    let p = path.display().to_string();
    let err = |e: &dyn std::fmt::Display| ReportError::Write {
        path: p.clone(),
        message: e.to_string(),
    };
    let file = std::fs::File::create(path).map_err(|e| err(&e))?;
    let mut w = PcapWriter::new(file).map_err(|e| err(&e))?;
    let ours: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.event {
            EventKind::UaStarted(u) => Some(u.local_addr.clone()),
            _ => None,
        })
        .collect();
    let mut in_flight: HashMap<(String, String, String), usize> = HashMap::new();
    let mut tcp_seq: HashMap<(SocketAddr, SocketAddr), u32> = HashMap::new();
    let mut n = 0;
    for e in events {
        let EventKind::SipMessage(m) = &e.event else {
            continue;
        };
        let key = (m.call_id.clone(), m.cseq.clone(), m.summary());
        let (Ok(local), Ok(peer)) = (m.local.parse::<SocketAddr>(), m.peer.parse::<SocketAddr>())
        else {
            continue;
        };
        let (src, dst) = match m.direction {
            Direction::Sent => {
                if ours.contains(&m.peer) {
                    *in_flight.entry(key).or_default() += 1;
                }
                (local, peer)
            }
            Direction::Received => {
                if let Some(c) = in_flight.get_mut(&key).filter(|c| **c > 0) {
                    *c -= 1;
                    continue;
                }
                (peer, local)
            }
        };
        let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
            continue;
        };
        let payload = m.raw.as_bytes();
        let base = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(
            s.octets(),
            d.octets(),
            64,
        );
        let mut frame = Vec::new();
        if m.transport == "tcp" {
            let seq = tcp_seq.entry((src, dst)).or_insert(1);
            base.tcp(src.port(), dst.port(), *seq, 65535)
                .psh()
                .ack(1)
                .write(&mut frame, payload)
                .map_err(|e| err(&e))?;
            *seq = seq.wrapping_add(payload.len() as u32);
        } else {
            base.udp(src.port(), dst.port())
                .write(&mut frame, payload)
                .map_err(|e| err(&e))?;
        }
        let ts = Duration::from_micros(e.ts_us);
        w.write_packet(&PcapPacket::new(ts, frame.len() as u32, &frame))
            .map_err(|e| err(&e))?;
        n += 1;
    }
    Ok(n)
}
