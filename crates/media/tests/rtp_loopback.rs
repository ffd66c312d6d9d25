//! Two RTP sessions on loopback sockets: a tone one way, DTMF the other, clean statistics.

use callflow_media::audio;
use callflow_media::rtp::MediaSession;
use callflow_media::sdp::{Codec, RemoteMedia};
use std::time::Duration;

fn pair(codec: Codec) -> (MediaSession, MediaSession) {
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let pt = if codec == Codec::Pcmu { 0 } else { 8 };
    let to = |addr| RemoteMedia {
        addr,
        codec,
        pt,
        dtmf_pt: Some(101),
        rtcp: None,
        ptime: None,
    };
    (
        MediaSession::start(a, to(ba)).unwrap(),
        MediaSession::start(b, to(aa)).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn tone_one_way_dtmf_the_other() {
    let (alice, bob) = pair(Codec::Pcma);
    let wait = Duration::from_secs(5);
    // Alice plays a 1 kHz tone; bob hears it.
    let mark = bob.audio_len();
    let play = alice.play(audio::tone(&[1000.0], 400), false);
    tokio::time::timeout(wait, play).await.expect("played");
    tokio::time::timeout(
        wait,
        bob.wait_until(|m| {
            let heard = m.audio_since(mark);
            heard.len() >= 1600
                && heard
                    .windows(800)
                    .step_by(160)
                    .any(|w| audio::tone_present(w, 1000.0))
        }),
    )
    .await
    .expect("bob hears the tone");
    // Bob sends DTMF; alice gets every digit, in order, once.
    let send = bob.send_dtmf("159#", Duration::from_millis(60), Duration::from_millis(40));
    tokio::time::timeout(wait, send).await.expect("sent");
    tokio::time::timeout(wait, alice.wait_until(|m| m.pending_digits().len() >= 4))
        .await
        .expect("digits");
    assert_eq!(alice.pending_digits(), "159#");
    alice.take_digits(4);
    assert_eq!(alice.pending_digits(), "");
    let s = bob.stats();
    assert!(s.packets_sent > 20 && s.packets_received > 20, "{s:?}");
    assert_eq!((s.lost, s.duplicates), (0, 0), "{s:?}");
    assert!(s.jitter_ms < 20.0, "{s:?}");
}

/// A session talking to a raw socket the test drives: what goes on the wire, packet by packet.
fn with_raw_peer() -> (MediaSession, std::net::UdpSocket) {
    let ours = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let remote = RemoteMedia {
        addr: peer.local_addr().unwrap(),
        codec: Codec::Pcmu,
        pt: 0,
        dtmf_pt: Some(101),
        rtcp: None,
        ptime: None,
    };
    let to = ours.local_addr().unwrap();
    peer.connect(to).unwrap();
    (MediaSession::start(ours, remote).unwrap(), peer)
}

#[tokio::test(flavor = "multi_thread")]
async fn rfc4733_events_on_the_wire() {
    let (session, peer) = with_raw_peer();
    let recv = tokio::task::spawn_blocking(move || {
        // Read until a digit's three end packets have gone by.
        let mut events = Vec::new();
        let mut buf = [0u8; 1500];
        let mut ssrc = None;
        let mut last_seq: Option<u16> = None;
        while events.iter().filter(|(_, _, end, _, _)| *end).count() < 3 {
            let n = peer.recv(&mut buf).expect("a packet within 5 s");
            let p = rtp_rs::RtpReader::new(&buf[..n]).expect("RTP");
            assert_eq!(*ssrc.get_or_insert(p.ssrc()), p.ssrc(), "one SSRC");
            let seq: u16 = p.sequence_number().into();
            if let Some(l) = last_seq {
                assert_eq!(seq, l.wrapping_add(1), "sequence numbers step by one");
            }
            last_seq = Some(seq);
            if p.payload_type() == 101 {
                let (ev, end, dur) = callflow_media::dtmf::decode(p.payload()).unwrap();
                events.push((ev, p.timestamp(), end, dur, p.mark()));
            } else {
                assert_eq!(
                    (p.payload_type(), p.payload().len()),
                    (0, 160),
                    "20 ms of PCMU between events"
                );
            }
        }
        events
    });
    assert!(
        session
            .send_dtmf("5", Duration::from_millis(100), Duration::from_millis(40))
            .await
    );
    let events = recv.await.unwrap();
    assert!(
        events
            .iter()
            .all(|(ev, ts, ..)| *ev == 5 && *ts == events[0].1),
        "one event, one timestamp: {events:?}"
    );
    assert!(
        events[0].4 && events[1..].iter().all(|e| !e.4),
        "the marker on the first packet only"
    );
    let durations: Vec<u16> = events.iter().map(|e| e.3).collect();
    assert_eq!(
        durations,
        [160, 320, 480, 640, 800, 800, 800],
        "20 ms steps, then the end three times"
    );
    assert_eq!(events.iter().filter(|e| e.2).count(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicates_reordering_and_loss_are_counted() {
    let (session, peer) = with_raw_peer();
    let send = |seq: u16| {
        let payload = [0xffu8; 160];
        let pkt = rtp_rs::RtpPacketBuilder::new()
            .payload_type(0)
            .ssrc(7)
            .sequence(seq.into())
            .timestamp(u32::from(seq) * 160)
            .payload(&payload)
            .build()
            .unwrap();
        peer.send(&pkt).unwrap();
    };
    // 1 2 2 4 3 7: one duplicate, one out of order, 5 and 6 lost.
    for seq in [1u16, 2, 2, 4, 3, 7] {
        send(seq);
    }
    tokio::time::timeout(
        Duration::from_secs(5),
        session.wait_until(|m| m.stats().packets_received + m.stats().duplicates >= 6),
    )
    .await
    .expect("all six arrive");
    let s = session.stats();
    assert_eq!(
        (s.packets_received, s.duplicates, s.out_of_order, s.lost),
        (5, 1, 1, 2),
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retargeted_session_sends_to_the_new_address_in_the_new_codec() {
    let (session, old_peer) = with_raw_peer();
    let new_peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    new_peer
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 1500];
    let n = old_peer.recv(&mut buf).expect("RTP to the first address");
    assert_eq!(rtp_rs::RtpReader::new(&buf[..n]).unwrap().payload_type(), 0);
    let moved = RemoteMedia {
        addr: new_peer.local_addr().unwrap(),
        codec: Codec::Pcma,
        pt: 8,
        dtmf_pt: None,
        rtcp: None,
        ptime: None,
    };
    assert!(session.retarget(moved.clone()));
    assert!(
        !session.retarget(moved),
        "the same target again changes nothing"
    );
    let n = new_peer.recv(&mut buf).expect("RTP to the new address");
    let p = rtp_rs::RtpReader::new(&buf[..n]).unwrap();
    assert_eq!((p.payload_type(), p.payload().len()), (8, 160), "PCMA now");
    assert_eq!(session.codec(), Codec::Pcma);
    assert_eq!(session.remote(), new_peer.local_addr().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_ssrc_is_a_new_stream_not_loss() {
    let (session, peer) = with_raw_peer();
    let send = |ssrc: u32, seq: u16| {
        let pkt = rtp_rs::RtpPacketBuilder::new()
            .payload_type(0)
            .ssrc(ssrc)
            .sequence(seq.into())
            .timestamp(u32::from(seq) * 160)
            .payload(&[0xffu8; 160])
            .build()
            .unwrap();
        peer.send(&pkt).unwrap();
    };
    // Music on hold from another SSRC, far away in sequence numbers, then the call again.
    for seq in 100..120 {
        send(1, seq);
    }
    for seq in 50_000..50_010 {
        send(2, seq);
    }
    for seq in 120..130 {
        send(1, seq);
    }
    tokio::time::timeout(
        Duration::from_secs(5),
        session.wait_until(|m| m.stats().packets_received >= 40),
    )
    .await
    .expect("all forty arrive");
    let s = session.stats();
    assert_eq!((s.packets_received, s.lost), (40, 0), "{s:?}");
    let per: Vec<(u32, u64)> = session
        .streams()
        .iter()
        .map(|s| (s.ssrc, s.packets_received))
        .collect();
    assert_eq!(per, [(1, 30), (2, 10)]);
}

/// Two sessions under SRTP: a tone one way and DTMF the other go through as in clear, and what
/// crosses the wire is not the clear RTP (a raw socket sees the protected packets: a header in
/// clear, a payload that is not PCMU's, a tag).
#[tokio::test(flavor = "multi_thread")]
async fn srtp_carries_a_tone_and_dtmf_and_the_wire_is_not_clear() {
    use callflow_media::rtp::Options;
    use callflow_media::srtp::{Keys, Suite, new_key};
    let (ka, kb) = (new_key(), new_key());
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    let to = |addr| RemoteMedia {
        addr,
        codec: Codec::Pcmu,
        pt: 0,
        dtmf_pt: Some(101),
        rtcp: None,
        ptime: None,
    };
    let keyed = |local, remote| Options {
        keep_audio: true,
        srtp: Some(Keys {
            suite: Suite::Aes128Sha1_80,
            local,
            remote,
        }),
        ..Options::default()
    };
    let alice = MediaSession::start_with(a, to(ba), keyed(ka, kb)).unwrap();
    let bob = MediaSession::start_with(b, to(aa), keyed(kb, ka)).unwrap();
    let wait = Duration::from_secs(5);
    let mark = bob.audio_len();
    tokio::time::timeout(wait, alice.play(audio::tone(&[1000.0], 400), false))
        .await
        .expect("played");
    tokio::time::timeout(
        wait,
        bob.wait_until(|m| {
            m.audio_since(mark)
                .windows(800)
                .step_by(160)
                .any(|w| audio::tone_present(w, 1000.0))
        }),
    )
    .await
    .expect("bob hears the tone");
    let send = bob.send_dtmf("42", Duration::from_millis(60), Duration::from_millis(40));
    tokio::time::timeout(wait, send).await.expect("sent");
    tokio::time::timeout(wait, alice.wait_until(|m| m.pending_digits().len() >= 2))
        .await
        .expect("digits");
    assert_eq!(alice.pending_digits(), "42");
    assert_eq!(bob.srtp(), Some((Suite::Aes128Sha1_80, 0)));

    // What a session sends, seen on the wire: 12 header octets, 160 of payload, a 10-octet
    // tag; the payload is not the silence PCMU carries in clear, and the peer's key opens it.
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(wait)).unwrap();
    let kc = new_key();
    let carol = MediaSession::start_with(
        std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
        to(peer.local_addr().unwrap()),
        keyed(kc, kb),
    )
    .unwrap();
    let mut buf = [0u8; 2048];
    let n = peer.recv(&mut buf).expect("a packet");
    assert_eq!(n, 12 + 160 + 10);
    // The peer's side of carol's call: it receives with carol's key.
    let (_, mut rx) = Keys {
        suite: Suite::Aes128Sha1_80,
        local: kb,
        remote: kc,
    }
    .contexts()
    .unwrap();
    let clear = rx.decrypt_rtp(&buf[..n]).expect("the peer's side opens it");
    assert_eq!(clear.len(), 12 + 160);
    // Silence in PCMU is 0xFF; the wire's payload is not.
    assert!(clear[12..].iter().all(|&b| b == 0xFF), "clear silence");
    assert!(buf[12..172].iter().filter(|&&b| b == 0xFF).count() < 20);
    drop(carol);
}

/// The peer's `a=ptime` sets our packet time: 10, 30 and 40 ms of PCMU per packet, timestamps
/// stepping as much; 30 ms over Opus (which has no 30 ms frame) goes as 20.
#[tokio::test(flavor = "multi_thread")]
async fn the_peers_ptime_sets_our_packet_time() {
    for (codec, pt, asked, sent) in [
        (Codec::Pcmu, 0, 10, 10),
        (Codec::Pcmu, 0, 30, 30),
        (Codec::Pcmu, 0, 40, 40),
        (Codec::Opus, 111, 30, 20),
    ] {
        let ours = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let remote = RemoteMedia {
            addr: peer.local_addr().unwrap(),
            codec,
            pt,
            dtmf_pt: None,
            rtcp: None,
            ptime: Some(asked),
        };
        let session = MediaSession::start(ours, remote).unwrap();
        let got = tokio::task::spawn_blocking(move || {
            let mut buf = [0u8; 1500];
            let mut seen = Vec::new();
            while seen.len() < 12 {
                let n = peer.recv(&mut buf).expect("a packet");
                let p = rtp_rs::RtpReader::new(&buf[..n]).expect("RTP");
                seen.push((p.timestamp(), p.payload().len()));
            }
            seen
        })
        .await
        .unwrap();
        drop(session);
        let clock = codec.clock_rate();
        for w in got.windows(2) {
            assert_eq!(
                w[1].0.wrapping_sub(w[0].0),
                clock * sent / 1000,
                "{codec:?} asked {asked} ms"
            );
        }
        if codec == Codec::Pcmu {
            assert!(
                got.iter().all(|(_, len)| *len == (8 * sent) as usize),
                "{got:?}"
            );
        }
    }
}
