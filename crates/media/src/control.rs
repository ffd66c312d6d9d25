//! RTCP (RFC 3550 §6): the report a call sends every few seconds (a sender report while it
//! sends, with a reception report block about the stream it receives, and its CNAME), and what
//! the peer's reports say: how much of our stream it lost, the jitter it sees, and the round
//! trip (§6.4.1). The `rtcp` crate (webrtc-rs) writes and reads the packets; this module does the
//! arithmetic, with time as an input.

use bytes::Bytes;
use rtcp::packet::Packet;
use rtcp::receiver_report::ReceiverReport;
use rtcp::reception_report::ReceptionReport;
use rtcp::sender_report::SenderReport;
use rtcp::source_description::{
    SdesType, SourceDescription, SourceDescriptionChunk, SourceDescriptionItem,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// `t` as a 64-bit NTP timestamp (32.32 fixed point seconds since 1900).
pub fn ntp(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() + NTP_UNIX_OFFSET;
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// The middle 32 bits of an NTP timestamp: what LSR and round trips are counted in (1/65536 s).
pub fn mid32(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// A duration in 1/65536 s (DLSR), saturating.
pub fn units(d: Duration) -> u32 {
    u32::try_from(d.as_micros() * 65_536 / 1_000_000).unwrap_or(u32::MAX)
}

/// What we say about the stream we receive (one reception report block, §6.4.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Block {
    /// Whose stream it is about.
    pub ssrc: u32,
    /// Lost since the last report, as a fraction of 256.
    pub fraction_lost: u8,
    /// Lost since the start (24 bits).
    pub total_lost: u32,
    /// The extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter, in timestamp units.
    pub jitter: u32,
    /// The middle 32 bits of the NTP time of the last sender report received (0: none).
    pub lsr: u32,
    /// How long ago that was, in 1/65536 s.
    pub dlsr: u32,
}

/// What we sent, for a sender report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sender {
    pub ntp: u64,
    /// The RTP timestamp that corresponds to `ntp`.
    pub rtp_time: u32,
    pub packets: u32,
    pub octets: u32,
}

/// The fraction lost over an interval (§A.3): of `expected` packets, `received` came.
pub fn fraction_lost(expected: u64, received: u64) -> u8 {
    let lost = expected.saturating_sub(received);
    if expected == 0 || lost == 0 {
        0
    } else {
        u8::try_from((lost << 8) / expected).unwrap_or(u8::MAX)
    }
}

/// A compound report from `ssrc`: a sender report when it sends (`sender`), else a receiver
/// report, with `block` about the stream it receives, then an SDES with its CNAME (§6.1).
pub fn compound(ssrc: u32, sender: Option<Sender>, block: Option<Block>, cname: &str) -> Vec<u8> {
    let reports: Vec<ReceptionReport> = block
        .map(|b| ReceptionReport {
            ssrc: b.ssrc,
            fraction_lost: b.fraction_lost,
            total_lost: b.total_lost & 0x00ff_ffff,
            last_sequence_number: b.highest_seq,
            jitter: b.jitter,
            last_sender_report: b.lsr,
            delay: b.dlsr,
        })
        .into_iter()
        .collect();
    let report: Box<dyn Packet + Send + Sync> = match sender {
        Some(s) => Box::new(SenderReport {
            ssrc,
            ntp_time: s.ntp,
            rtp_time: s.rtp_time,
            packet_count: s.packets,
            octet_count: s.octets,
            reports,
            profile_extensions: Bytes::new(),
        }),
        None => Box::new(ReceiverReport {
            ssrc,
            reports,
            profile_extensions: Bytes::new(),
        }),
    };
    let sdes: Box<dyn Packet + Send + Sync> = Box::new(SourceDescription {
        chunks: vec![SourceDescriptionChunk {
            source: ssrc,
            items: vec![SourceDescriptionItem {
                sdes_type: SdesType::SdesCname,
                text: Bytes::copy_from_slice(cname.as_bytes()),
            }],
        }],
    });
    rtcp::packet::marshal(&[report, sdes]).map_or_else(|_| Vec::new(), |b| b.to_vec())
}

/// What one report of the peer said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Heard {
    /// Whose report it is.
    pub from: u32,
    /// A sender report's NTP time (None for a receiver report).
    pub sr_ntp: Option<u64>,
    /// Its reception report blocks.
    pub blocks: Vec<Block>,
}

/// The reports in a compound RTCP packet (other packets in it are skipped); an error for what
/// is not RTCP.
pub fn read(bytes: &[u8]) -> Result<Vec<Heard>, String> {
    let mut buf = Bytes::copy_from_slice(bytes);
    let packets = rtcp::packet::unmarshal(&mut buf).map_err(|e| e.to_string())?;
    let block = |r: &ReceptionReport| Block {
        ssrc: r.ssrc,
        fraction_lost: r.fraction_lost,
        total_lost: r.total_lost,
        highest_seq: r.last_sequence_number,
        jitter: r.jitter,
        lsr: r.last_sender_report,
        dlsr: r.delay,
    };
    Ok(packets
        .iter()
        .filter_map(|p| {
            let any = p.as_any();
            if let Some(sr) = any.downcast_ref::<SenderReport>() {
                Some(Heard {
                    from: sr.ssrc,
                    sr_ntp: Some(sr.ntp_time),
                    blocks: sr.reports.iter().map(block).collect(),
                })
            } else {
                any.downcast_ref::<ReceiverReport>().map(|rr| Heard {
                    from: rr.ssrc,
                    sr_ntp: None,
                    blocks: rr.reports.iter().map(block).collect(),
                })
            }
        })
        .collect())
}

/// The round trip a block about our stream gives, arriving at `arrival` (the middle 32 bits
/// of the NTP time it came): A - LSR - DLSR (§6.4.1); None when the peer had no sender report
/// of ours yet, or the clock went back.
pub fn round_trip(block: &Block, arrival: u32) -> Option<Duration> {
    if block.lsr == 0 {
        return None;
    }
    let rtt = arrival.checked_sub(block.lsr)?.checked_sub(block.dlsr)?;
    Some(Duration::from_micros(u64::from(rtt) * 1_000_000 / 65_536))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_time_counts_from_1900_in_32_32_fixed_point() {
        let t = UNIX_EPOCH + Duration::from_millis(1_500);
        let n = ntp(t);
        assert_eq!(n >> 32, NTP_UNIX_OFFSET + 1);
        assert_eq!(n & 0xffff_ffff, 1 << 31, "half a second");
        assert_eq!(mid32(n), ((NTP_UNIX_OFFSET as u32 + 1) << 16) | 0x8000);
        assert_eq!(units(Duration::from_millis(500)), 32_768);
    }

    #[test]
    fn a_sender_report_reads_back_with_its_block() {
        let block = Block {
            ssrc: 0xbeef,
            fraction_lost: fraction_lost(50, 45),
            total_lost: 5,
            highest_seq: 70_000,
            jitter: 80,
            lsr: 0x1234_5678,
            dlsr: 65_536,
        };
        assert_eq!(block.fraction_lost, 25, "5 of 50: 10 % of 256");
        let sender = Sender {
            ntp: 0x0102_0304_0506_0708,
            rtp_time: 160,
            packets: 250,
            octets: 40_000,
        };
        let bytes = compound(0xcafe, Some(sender), Some(block), "alice@callflow");
        assert_eq!(bytes[1], 200, "SR first");
        let heard = read(&bytes).expect("RTCP");
        assert_eq!(
            heard,
            vec![Heard {
                from: 0xcafe,
                sr_ntp: Some(sender.ntp),
                blocks: vec![block],
            }]
        );
        let rr = compound(0xcafe, None, None, "alice@callflow");
        assert_eq!(rr[1], 201, "RR when not sending");
        assert_eq!(read(&rr).expect("RTCP")[0].sr_ntp, None);
        assert!(read(b"\x80\x00 not rtcp").is_err());
    }

    #[test]
    fn the_round_trip_is_arrival_less_lsr_less_dlsr() {
        let block = Block {
            lsr: 100_000,
            dlsr: 65_536, // 1 s held at the peer
            ..Block::default()
        };
        // Arrived 1.05 s after our SR's time.
        let arrival = 100_000 + 65_536 + 3_277;
        let rtt = round_trip(&block, arrival).expect("a round trip");
        assert_eq!(rtt.as_millis(), 50);
        assert_eq!(
            round_trip(&Block::default(), arrival),
            None,
            "no SR of ours yet"
        );
        assert_eq!(round_trip(&block, 10), None, "a clock that went back");
    }

    #[test]
    fn what_a_peer_sends_cannot_make_the_reader_panic() {
        use rand::{Rng, SeedableRng};
        let good = compound(
            1,
            Some(Sender::default()),
            Some(Block::default()),
            "x@callflow",
        );
        // Every truncation of a real report, and seeded random datagrams with an RTCP header.
        for n in 0..good.len() {
            let _ = read(&good[..n]);
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..2_000 {
            let len = rng.random_range(0..200);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if let Some(first) = bytes.first_mut() {
                *first = 0x80 | (*first & 0x1f);
            }
            let _ = read(&bytes);
        }
    }
}
