//! How many simultaneous G.711 streams one process sends and receives at 20 ms pacing.
//!
//! `cargo bench -p callflow-media --bench streams [-- SECONDS PAIRS...]`: for each count of
//! call pairs (each pair is two sessions on loopback, so 2 streams sent and 2 received), run
//! SECONDS (default 5) and report sender pacing jitter (packets more than 1 ms off 20 ms after
//! the one before, and the largest deviation),
//! loss, RFC 3550 jitter and the CPU the process used. Bounded: it stops by itself.

use callflow_media::rtp::MediaSession;
use callflow_media::sdp::{Codec, RemoteMedia};
use std::time::{Duration, Instant};

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (100 Hz on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn pair() -> (MediaSession, MediaSession) {
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
    (
        MediaSession::start(a, to(ba)).unwrap(),
        MediaSession::start(b, to(aa)).unwrap(),
    )
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let secs: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(5);
    let counts: Vec<usize> = if args.len() > 1 {
        args[1..].iter().filter_map(|s| s.parse().ok()).collect()
    } else {
        vec![25, 50, 100, 200, 400]
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "| streams sent+received | packets >1 ms off 20 ms pacing | largest deviation | loss | mean RFC 3550 jitter | CPU (of 2 cores) |"
    );
    println!("|---|---|---|---|---|---|");
    for pairs in counts {
        rt.block_on(async {
            let sessions: Vec<(MediaSession, MediaSession)> = (0..pairs).map(|_| pair()).collect();
            let cpu0 = cpu_seconds();
            let t0 = Instant::now();
            tokio::time::sleep(Duration::from_secs(secs)).await;
            let wall = t0.elapsed().as_secs_f64();
            let cpu = cpu_seconds() - cpu0;
            let all: Vec<_> = sessions.iter().flat_map(|(a, b)| [a.stats(), b.stats()]).collect();
            let ticks: u64 = all.iter().map(|s| s.ticks).sum();
            let late: u64 = all.iter().map(|s| s.ticks_late_1ms).sum();
            let latest = all.iter().map(|s| s.tick_late_max_ms).fold(0.0, f64::max);
            let lost: u64 = all.iter().map(|s| s.lost).sum();
            let recv: u64 = all.iter().map(|s| s.packets_received).sum();
            let jitter = all.iter().map(|s| s.jitter_ms).sum::<f64>() / all.len() as f64;
            println!(
                "| {} + {} | {:.3} % ({late} of {ticks}) | {latest:.2} ms | {:.3} % | {jitter:.3} ms | {:.0} % |",
                2 * pairs,
                2 * pairs,
                100.0 * late as f64 / ticks.max(1) as f64,
                100.0 * lost as f64 / (lost + recv).max(1) as f64,
                100.0 * cpu / wall,
            );
            drop(sessions);
        });
    }
}
