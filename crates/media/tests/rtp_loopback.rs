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
