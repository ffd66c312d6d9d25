//! A pcap of the run's SIP messages, and its RTP when the run captured it (`rtp_capture` events,
//! or the `rtp_packet` events of schema version 2):
//! Ethernet/IPv4/UDP (or TCP) frames with the real addresses and timestamps, each packet once
//! (a packet between two of our own UAs is recorded by both, and written once), readable by
//! tshark and Wireshark.

use crate::ReportError;
use base64::Engine as _;
use etherparse::PacketBuilder;
use events::{Direction, Event, EventKind, SipMessage};
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
    let wire = on_the_wire(events);
    let our_rtp: HashSet<&str> = wire
        .iter()
        .filter_map(|w| match w.what {
            What::Rtp { local, .. } => Some(local),
            What::Sip(_) => None,
        })
        .collect();
    let mut n = 0;
    for item in &wire {
        let (direction, local, peer, payload, tcp): (_, _, _, Cow<'_, [u8]>, _) = match item.what {
            What::Rtp {
                direction,
                local,
                peer,
                bytes,
            } => {
                // Between two of our UAs, the sender's copy is the one written.
                if direction == Direction::Received && our_rtp.contains(peer) {
                    continue;
                }
                let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(bytes) else {
                    continue;
                };
                (direction, local, peer, bytes.into(), false)
            }
            What::Sip(m) => {
                if !once.keep(m, ours.contains_key(&m.peer)) {
                    continue;
                }
                let raw = m.raw.as_bytes();
                (
                    m.direction,
                    m.local.as_str(),
                    m.peer.as_str(),
                    raw.into(),
                    // TLS and WebSocket are written as the SIP text over TCP: the text
                    // is taken above the encryption (docs/transports.md).
                    m.transport != "udp",
                )
            }
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
        let ts = Duration::from_micros(item.ts_us);
        w.write_packet(&PcapPacket::new(ts, frame.len() as u32, &frame))
            .map_err(|e| err(&e))?;
        n += 1;
    }
    Ok(n)
}

/// What crossed a socket: a SIP message, or an RTP packet (an `rtp_packet` event of schema
/// version 2, or a packet of an `rtp_capture`).
enum What<'a> {
    Sip(&'a SipMessage),
    Rtp {
        direction: Direction,
        local: &'a str,
        peer: &'a str,
        bytes: &'a str,
    },
}

struct Wire<'a> {
    ts_us: u64,
    what: What<'a>,
}

/// Every message and packet of the run in the order it crossed the wire (by its time, then by
/// the event's number: a capture's packets carry their own times).
fn on_the_wire(events: &[Event]) -> Vec<Wire<'_>> {
    let mut wire: Vec<(u64, u64, Wire<'_>)> = Vec::new();
    for e in events {
        match &e.event {
            EventKind::SipMessage(m) => wire.push((
                e.ts_us,
                e.seq,
                Wire {
                    ts_us: e.ts_us,
                    what: What::Sip(m),
                },
            )),
            EventKind::RtpPacket(r) => wire.push((
                e.ts_us,
                e.seq,
                Wire {
                    ts_us: e.ts_us,
                    what: What::Rtp {
                        direction: r.direction,
                        local: &r.local,
                        peer: &r.peer,
                        bytes: &r.bytes,
                    },
                },
            )),
            EventKind::RtpCapture(c) => wire.extend(c.packets.iter().map(|p| {
                (
                    p.ts_us,
                    e.seq,
                    Wire {
                        ts_us: p.ts_us,
                        what: What::Rtp {
                            direction: p.direction,
                            local: p.local.as_deref().unwrap_or(&c.local),
                            peer: &p.peer,
                            bytes: &p.bytes,
                        },
                    },
                )
            })),
            _ => {}
        }
    }
    // Stable: a capture's packets with the same time keep their order.
    wire.sort_by_key(|(ts, seq, _)| (*ts, *seq));
    wire.into_iter().map(|(_, _, w)| w).collect()
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
