//! One call's RTP: a paced sender (audio or silence every packet time, 20 ms unless the peer's
//! `a=ptime` asks for another; RFC 4733 events when asked) and
//! a receiver that keeps RFC 3550 statistics, the decoded audio and the DTMF digits heard.

use crate::audio::{self, RATE};
use crate::dtmf;
use crate::sdp::{Codec, RemoteMedia};
use rtp_rs::{RtpPacketBuilder, RtpReader, Seq};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// One RTP packet as it crossed the socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured {
    pub at: std::time::SystemTime,
    /// Sent by us (else received).
    pub sent: bool,
    /// The other side's address.
    pub peer: SocketAddr,
    /// The whole packet.
    pub bytes: Vec<u8>,
    /// An RTCP packet (on the RTCP socket, the RTP port + 1), not RTP.
    pub rtcp: bool,
}

/// What the media of a call tells as it happens: the first RTP from the peer, each DTMF digit
/// received (RFC 4733, or SIP INFO through [`MediaSession::push_digit`]), each RTCP report sent
/// (a moment to sample its figures).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heard {
    Flowing,
    Digit(char),
    Reported,
}

/// Hears [`Heard`]: called on the media's task, after its locks are released; quick, never
/// blocking.
pub type Report = Arc<dyn Fn(Heard) + Send + Sync>;

/// Loss simulated on the receiving side (a lossy path, for a test or a what-if): each packet
/// that arrives is dropped, before anything sees it, with this chance, drawn from a generator
/// seeded with `seed` (the same seed drops the same packets of the same stream).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Loss {
    /// In percent, 0 to 100.
    pub percent: f64,
    pub seed: u64,
}

/// How a [`MediaSession`] runs, besides where it sends.
#[derive(Default)]
pub struct Options {
    /// Keep every packet sent and received in the call's [`Capture`]
    /// ([`MediaSession::take_capture`]).
    pub capture: bool,
    /// Keep the audio received, decoded (up to 10 minutes, 16 KB a second: what HEARD, TONE and
    /// recording read; a load whose scenario reads none leaves it out).
    pub keep_audio: bool,
    /// Hears the first RTP and each digit.
    pub report: Option<Report>,
    /// Drop received packets as a lossy path would.
    pub loss: Option<Loss>,
    /// The RTCP socket (bound, conventionally on the RTP port + 1): reports go from it to the
    /// peer's RTP port + 1 every [`RTCP_INTERVAL`] (the first after [`RTCP_FIRST`]), and the
    /// peer's are read on it. None: no RTCP.
    pub rtcp: Option<std::net::UdpSocket>,
    /// SRTP (RFC 3711): protect what is sent and check what is received, RTP and RTCP, with
    /// these keys. The capture keeps the packets as they are inside (the RTP, in clear).
    pub srtp: Option<crate::srtp::Keys>,
}

/// When a call sends its first RTCP report (RFC 3550 §6.2 allows half the interval; sooner
/// still, so a short test call has one).
pub const RTCP_FIRST: Duration = Duration::from_secs(1);
/// How often a call sends RTCP after the first report (RFC 3550 §6.2's minimum).
pub const RTCP_INTERVAL: Duration = Duration::from_secs(5);

/// What RTCP told about a call: the reports each way, and what the peer's said of our stream.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RtcpStats {
    pub sent: u64,
    pub received: u64,
    /// The round trip the peer's last report gave (RFC 3550 §6.4.1).
    pub rtt_ms: Option<f64>,
    /// What the peer last reported of our stream: lost in all, the share lost since its report
    /// before, and its interarrival jitter.
    pub peer_lost: Option<u32>,
    pub peer_fraction_lost_percent: Option<f64>,
    pub peer_jitter_ms: Option<f64>,
}

/// A call's RTCP: its socket and what it keeps between reports.
struct Rtcp {
    socket: tokio::net::UdpSocket,
    cname: String,
    state: Mutex<RtcpState>,
}

#[derive(Default)]
struct RtcpState {
    sent: u64,
    received: u64,
    /// The peer's last sender report: the middle 32 bits of its NTP time, and when it came.
    last_sr: Option<(u32, Instant)>,
    /// The expected and received counts at our last report (the fraction lost is per
    /// interval, RFC 3550 A.3).
    expected_prior: u64,
    received_prior: u64,
    /// RTP packets we had sent at our last report (a sender report only if we sent since).
    packets_prior: u64,
    /// What the peer last said of our stream, and the round trip it gave.
    peer: Option<crate::control::Block>,
    rtt: Option<Duration>,
}

/// How many packets a call's capture keeps: 5 minutes of both directions at 50 per second.
pub const CAPTURE_PACKETS: usize = 30_000;

/// A call's RTP for a packet capture, kept by the media side as it goes: a ring of the last
/// [`CAPTURE_PACKETS`], the older ones counted. Whoever stops the call takes it once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capture {
    pub packets: VecDeque<Captured>,
    /// Packets pushed out of the ring (the oldest first).
    pub dropped: u64,
}

impl Capture {
    fn push(&mut self, p: Captured, limit: usize) {
        if self.packets.len() >= limit {
            self.packets.pop_front();
            self.dropped += 1;
        }
        self.packets.push_back(p);
    }
}

/// RFC 3550 receive statistics, and what we sent.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    pub packets_sent: u64,
    pub packets_received: u64,
    /// Expected minus received (RFC 3550 A.3); never negative.
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Interarrival jitter (RFC 3550 A.8), in milliseconds.
    pub jitter_ms: f64,
    /// Sender pacing: packets sent, how many came more than 1 ms off one packet time after
    /// the one before (pacing jitter), and the largest deviation.
    pub ticks: u64,
    pub ticks_late_1ms: u64,
    pub tick_late_max_ms: f64,
}

/// What one received RTP stream (one SSRC) brought: a PBX changes SSRC on a transfer or for music
/// on hold, and sipp's `uac_pcap` plays two recordings with their own SSRCs, so each stream keeps
/// its own sequence numbers (RFC 3550 A.1).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StreamStats {
    pub ssrc: u32,
    pub packets_received: u64,
    /// Expected minus received in this stream (RFC 3550 A.3); never negative.
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Interarrival jitter (RFC 3550 A.8), in milliseconds.
    pub jitter_ms: f64,
}

impl Stats {
    /// Lost packets as a share of the expected ones, in percent.
    pub fn loss_percent(&self) -> f64 {
        let expected = self.packets_received + self.lost;
        if expected == 0 {
            0.0
        } else {
            100.0 * self.lost as f64 / expected as f64
        }
    }
}

struct Playing {
    /// At `rate`: the codec's audio rate when it began.
    samples: Vec<i16>,
    rate: u32,
    pos: usize,
    looped: bool,
    done: Option<oneshot::Sender<()>>,
}

struct DtmfOut {
    event: u8,
    /// Packets (of the session's packet time) the tone lasts.
    frames: u16,
    gap_frames: u16,
    done: Option<oneshot::Sender<()>>,
}

/// A jump in sequence numbers past which a stream is taken to have restarted (RFC 3550 A.1).
const MAX_DROPOUT: u16 = 3000;
/// How far back a packet may come and still count as reordered rather than a restart.
const MAX_MISORDER: u16 = 100;
/// Streams (SSRCs) a call tracks one by one; the figures of older ones are kept as totals.
const MAX_STREAMS: usize = 16;

/// The receive state of one RTP stream (one SSRC), RFC 3550 A.1, A.3 and A.8.
struct Stream {
    ssrc: u32,
    received: u64,
    duplicates: u64,
    out_of_order: u64,
    base_seq: u16,
    max_seq: u16,
    cycles: u32,
    /// A far sequence number seen once: if the next packet follows it, the stream restarted.
    bad_seq: Option<u16>,
    /// The packets expected before the stream restarted its sequence numbers.
    earlier_expected: u64,
    seen: VecDeque<u16>,
    transit: Option<f64>,
    /// In timestamp units.
    jitter: f64,
    /// The stream's RTP clock (8000; Opus 48000).
    clock: u32,
}

impl Stream {
    fn new(ssrc: u32, seq: u16, clock: u32) -> Self {
        Self {
            clock,
            ssrc,
            received: 0,
            duplicates: 0,
            out_of_order: 0,
            base_seq: seq,
            max_seq: seq,
            cycles: 0,
            bad_seq: None,
            earlier_expected: 0,
            seen: VecDeque::new(),
            transit: None,
            jitter: 0.0,
        }
    }

    fn expected(&self) -> u64 {
        // The extended highest sequence number less the first, plus one (RFC 3550 A.3).
        let extended = (u64::from(self.cycles) << 16) + u64::from(self.max_seq);
        self.earlier_expected + (extended + 1).saturating_sub(u64::from(self.base_seq))
    }

    /// Takes one packet with sequence number `seq` and RTP timestamp `ts` that arrived at
    /// `arrival` (in timestamp units, on any clock); false for a duplicate.
    fn take(&mut self, seq: u16, ts: u32, arrival: f64) -> bool {
        if self.received > 0 && self.seen.contains(&seq) {
            self.duplicates += 1;
            return false;
        }
        if self.received > 0 {
            let delta = seq.wrapping_sub(self.max_seq);
            if delta > 0 && delta < MAX_DROPOUT {
                if seq < self.max_seq {
                    self.cycles += 1;
                }
                self.max_seq = seq;
                self.bad_seq = None;
            } else if delta == 0 || delta >= u16::MAX - MAX_MISORDER {
                self.out_of_order += 1;
            } else if self.bad_seq == Some(seq) {
                // Two packets in a row far from the last: the sender restarted its sequence.
                // The far packet before this one was counted as reordered: it began the new run.
                self.earlier_expected = self.expected();
                self.out_of_order -= 1;
                self.base_seq = seq.wrapping_sub(1);
                self.max_seq = seq;
                self.cycles = u32::from(seq < self.base_seq);
                self.bad_seq = None;
                self.seen.clear();
            } else {
                // A far jump, seen once: wait for the next packet before believing it.
                self.bad_seq = Some(seq.wrapping_add(1));
                self.out_of_order += 1;
            }
        }
        self.received += 1;
        self.seen.push_back(seq);
        if self.seen.len() > 512 {
            self.seen.pop_front();
        }
        let transit = arrival - f64::from(ts);
        if let Some(prev) = self.transit {
            let d = (transit - prev).abs();
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.transit = Some(transit);
        true
    }

    fn stats(&self) -> StreamStats {
        StreamStats {
            ssrc: self.ssrc,
            packets_received: self.received,
            lost: self.expected().saturating_sub(self.received),
            duplicates: self.duplicates,
            out_of_order: self.out_of_order,
            jitter_ms: self.jitter * 1000.0 / f64::from(self.clock),
        }
    }
}

#[derive(Default)]
struct Rx {
    /// The streams received, in the order they began (at most [`MAX_STREAMS`]).
    streams: Vec<Stream>,
    /// The totals of streams dropped from `streams` to keep it bounded.
    retired: StreamStats,
    first_at: Option<Instant>,
    /// The audio received, decoded, at `audio_rate` (the rate of the first codec heard; a
    /// later codec's audio is brought to it).
    audio: Vec<i16>,
    audio_rate: u32,
    /// Digits heard, in order; `taken` of them consumed by waits.
    digits: Vec<char>,
    taken: usize,
    last_event_ts: Option<u32>,
    /// The decoder of the codec received last.
    decoder: Option<audio::Decoder>,
}

impl Rx {
    /// The rate of the audio kept (the analysis rate until something is heard).
    fn rate(&self) -> u32 {
        if self.audio_rate == 0 {
            RATE
        } else {
            self.audio_rate
        }
    }

    /// The stream `ssrc` names, begun at `seq` if it is new.
    fn stream(&mut self, ssrc: u32, seq: u16, clock: u32) -> &mut Stream {
        match self.streams.iter().position(|s| s.ssrc == ssrc) {
            Some(i) => &mut self.streams[i],
            None => {
                if self.streams.len() >= MAX_STREAMS {
                    let old = self.streams.remove(0).stats();
                    let r = &mut self.retired;
                    r.packets_received += old.packets_received;
                    r.lost += old.lost;
                    r.duplicates += old.duplicates;
                    r.out_of_order += old.out_of_order;
                    r.jitter_ms = r.jitter_ms.max(old.jitter_ms);
                }
                self.streams.push(Stream::new(ssrc, seq, clock));
                self.streams.last_mut().expect("just pushed")
            }
        }
    }

    /// Every stream's figures added up; the jitter is the worst stream's.
    fn totals(&self) -> Stats {
        let mut t = Stats {
            packets_received: self.retired.packets_received,
            lost: self.retired.lost,
            duplicates: self.retired.duplicates,
            out_of_order: self.retired.out_of_order,
            jitter_ms: self.retired.jitter_ms,
            ..Stats::default()
        };
        for s in self.streams.iter().map(Stream::stats) {
            t.packets_received += s.packets_received;
            t.lost += s.lost;
            t.duplicates += s.duplicates;
            t.out_of_order += s.out_of_order;
            t.jitter_ms = t.jitter_ms.max(s.jitter_ms);
        }
        t
    }
}

/// A DTMF event on the wire: its packets share one timestamp, durations grow by a packet time.
struct DtmfSending {
    event: u8,
    ts: u32,
    sent: u16,
    total: u16,
    /// End packets sent so far (three in all).
    ends: u8,
    done: Option<oneshot::Sender<()>>,
    gap: u16,
}

struct Shared {
    socket: tokio::net::UdpSocket,
    /// The same socket, for the media clock's thread to send on.
    send_socket: std::net::UdpSocket,
    stopped: std::sync::atomic::AtomicBool,
    /// Keep the audio received, decoded.
    keep_audio: bool,
    /// Every packet, when the run captures RTP.
    capture: Option<Mutex<Capture>>,
    /// Who hears the first RTP and each digit, and whether the first RTP was told.
    report: Option<Report>,
    flowing: std::sync::atomic::AtomicBool,
    /// Where and how to send; a new offer or answer in the call changes it.
    remote: Mutex<RemoteMedia>,
    ssrc: u32,
    started: Instant,
    tx: Mutex<Tx>,
    rx: Mutex<Rx>,
    /// Bumped whenever something is received, so waits wake up.
    changed: watch::Sender<u64>,
    /// Simulated loss: the chance to drop a packet received, and its generator.
    loss: Option<(f64, Mutex<rand::rngs::StdRng>)>,
    rtcp: Option<Rtcp>,
    srtp: Option<Srtp>,
}

/// A call's SRTP contexts: ours protects what we send, the peer's checks what we receive.
struct Srtp {
    suite: crate::srtp::Suite,
    tx: Mutex<webrtc_srtp::context::Context>,
    rx: Mutex<webrtc_srtp::context::Context>,
    /// RTP packets received that failed the check (a wrong key, a forgery, a replay).
    rejected: std::sync::atomic::AtomicU64,
}

impl Shared {
    /// `p` as it goes on the wire: protected under SRTP (RTP, or `rtcp`), else as it is. None
    /// when it cannot be protected.
    fn protect<'a>(&self, p: &'a [u8], rtcp: bool) -> Option<std::borrow::Cow<'a, [u8]>> {
        let Some(srtp) = &self.srtp else {
            return Some(std::borrow::Cow::Borrowed(p));
        };
        let mut tx = srtp.tx.lock().expect("srtp lock");
        let out = if rtcp {
            tx.encrypt_rtcp(p)
        } else {
            tx.encrypt_rtp(p)
        };
        out.ok().map(|b| std::borrow::Cow::Owned(b.to_vec()))
    }

    /// A packet received, as it is inside: checked and decrypted under SRTP. None when it
    /// fails the check (counted).
    fn unprotect(&self, p: &[u8], rtcp: bool) -> Option<Vec<u8>> {
        let Some(srtp) = &self.srtp else {
            return Some(p.to_vec());
        };
        let mut rx = srtp.rx.lock().expect("srtp lock");
        let out = if rtcp {
            rx.decrypt_rtcp(p)
        } else {
            rx.decrypt_rtp(p)
        };
        match out {
            Ok(b) => Some(b.to_vec()),
            Err(_) => {
                // RTP only: an RTCP packet that fails is not media lost (baresip sends an
                // unprotected RTCP APP "PINGPONG" at the start, for instance).
                if !rtcp {
                    srtp.rejected
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                None
            }
        }
    }
}

impl Shared {
    fn tell(&self, h: Heard) {
        if let Some(report) = &self.report {
            report(h);
        }
    }

    /// Keeps a packet in the call's capture, if it has one and is not stopped.
    fn capture(&self, sent: bool, peer: SocketAddr, bytes: &[u8]) {
        self.keep(sent, peer, bytes, false);
    }

    /// Keeps a packet of the call's RTP (or, `rtcp`, RTCP) in its capture.
    fn keep(&self, sent: bool, peer: SocketAddr, bytes: &[u8], rtcp: bool) {
        if let Some(c) = &self.capture
            && !self.stopped.load(std::sync::atomic::Ordering::Acquire)
        {
            let p = Captured {
                at: std::time::SystemTime::now(),
                sent,
                peer,
                bytes: bytes.to_vec(),
                rtcp,
            };
            c.lock().expect("capture lock").push(p, CAPTURE_PACKETS);
        }
    }
}

struct Tx {
    /// Clock ticks ([`TICK`]) left before the next packet.
    wait: u32,
    ticks: u64,
    late_1ms: u64,
    late_max: Duration,
    prev_tick: Option<Instant>,
    seq: Seq,
    ts: u32,
    sent: u64,
    /// Payload octets sent (RTP headers not counted, RFC 3550 §6.4.1).
    octets: u64,
    sending: bool,
    playing: Option<Playing>,
    dtmf: VecDeque<DtmfOut>,
    /// The DTMF event being sent.
    current: Option<DtmfSending>,
    gap_left: u16,
    /// The encoder of the codec sent now.
    encoder: Option<audio::Encoder>,
}

/// The RTP of one call. Dropping it stops its tasks.
pub struct MediaSession {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

/// Cap on the audio a call keeps (10 minutes at 8 kHz), so a long call cannot eat the memory.
const MAX_AUDIO: usize = 10 * 60 * RATE as usize;
const MAX_AUDIO_TRIM: usize = 60 * RATE as usize;

impl MediaSession {
    /// Starts sending to and receiving from `remote` on `socket` (already bound).
    pub fn start(socket: std::net::UdpSocket, remote: RemoteMedia) -> std::io::Result<Self> {
        Self::start_with(
            socket,
            remote,
            Options {
                keep_audio: true,
                ..Options::default()
            },
        )
    }

    /// [`MediaSession::start`], run as `opts` says.
    pub fn start_with(
        socket: std::net::UdpSocket,
        remote: RemoteMedia,
        opts: Options,
    ) -> std::io::Result<Self> {
        socket.set_nonblocking(true)?;
        let send_socket = socket.try_clone()?;
        let socket = tokio::net::UdpSocket::from_std(socket)?;
        let seed = Instant::now().elapsed().as_nanos() as u32
            ^ (std::process::id() << 16)
            ^ remote.addr.port() as u32;
        let ssrc = seed.wrapping_mul(2_654_435_761);
        let Options {
            capture,
            keep_audio,
            report,
            loss,
            rtcp,
            srtp,
        } = opts;
        let srtp = match srtp {
            Some(keys) => {
                let (tx, rx) = keys.contexts().map_err(std::io::Error::other)?;
                Some(Srtp {
                    suite: keys.suite,
                    tx: Mutex::new(tx),
                    rx: Mutex::new(rx),
                    rejected: std::sync::atomic::AtomicU64::new(0),
                })
            }
            None => None,
        };
        let rtcp = match rtcp {
            Some(s) => {
                s.set_nonblocking(true)?;
                Some(Rtcp {
                    socket: tokio::net::UdpSocket::from_std(s)?,
                    cname: format!("{ssrc:08x}@callflow"),
                    state: Mutex::new(RtcpState::default()),
                })
            }
            None => None,
        };
        let shared = Arc::new(Shared {
            socket,
            send_socket,
            stopped: std::sync::atomic::AtomicBool::new(false),
            keep_audio,
            capture: capture.then(|| Mutex::new(Capture::default())),
            report,
            loss: loss.map(|l| {
                use rand::SeedableRng;
                (
                    (l.percent / 100.0).clamp(0.0, 1.0),
                    Mutex::new(rand::rngs::StdRng::seed_from_u64(l.seed)),
                )
            }),
            rtcp,
            srtp,
            flowing: std::sync::atomic::AtomicBool::new(false),
            remote: Mutex::new(remote),
            ssrc,
            started: Instant::now(),
            tx: Mutex::new(Tx {
                ticks: 0,
                late_1ms: 0,
                late_max: Duration::ZERO,
                prev_tick: None,
                wait: 0,
                seq: Seq::from((ssrc >> 16) as u16),
                ts: ssrc.rotate_left(7),
                sent: 0,
                octets: 0,
                sending: true,
                playing: None,
                dtmf: VecDeque::new(),
                current: None,
                gap_left: 0,
                encoder: None,
            }),
            rx: Mutex::new(Rx::default()),
            changed: watch::channel(0).0,
        });
        clock().add(&shared);
        let mut tasks = vec![tokio::spawn(recv_loop(shared.clone()))];
        if shared.rtcp.is_some() {
            tasks.push(tokio::spawn(rtcp_send_loop(shared.clone())));
            tasks.push(tokio::spawn(rtcp_recv_loop(shared.clone())));
        }
        Ok(Self { shared, tasks })
    }

    pub fn codec(&self) -> Codec {
        self.shared.remote().codec
    }

    /// The packet time it sends at, in ms ([`ptime_of`]).
    pub fn ptime(&self) -> u32 {
        ptime_of(&self.shared.remote())
    }

    pub fn remote(&self) -> SocketAddr {
        self.shared.remote().addr
    }

    /// Sends to and as `remote` from the next packet on (a re-INVITE or UPDATE moved the media
    /// or changed its codec, RFC 3264 §8.3). Returns whether anything changed.
    pub fn retarget(&self, remote: RemoteMedia) -> bool {
        let mut now = self.shared.remote.lock().expect("remote lock");
        if *now == remote {
            return false;
        }
        *now = remote;
        true
    }

    pub fn local(&self) -> Option<SocketAddr> {
        self.shared.socket.local_addr().ok()
    }

    /// Stop or resume sending (a party on hold that answered `recvonly` does not send).
    pub fn set_sending(&self, on: bool) {
        self.shared.tx.lock().expect("tx lock").sending = on;
    }

    /// Plays `samples` (8 kHz PCM) instead of silence; resolves when they have been sent (with
    /// `looped`, never: drop the future to stop). Dropping the future stops the playback.
    /// Returns false if the session stopped first (the call ended).
    pub async fn play(&self, samples: Vec<i16>, looped: bool) -> bool {
        self.play_at(samples, RATE, looped).await
    }

    /// [`Self::play`] of audio at `rate` Hz (a WAV at the codec's rate keeps what it has above
    /// 4 kHz on a wideband call); brought to the codec's rate.
    pub async fn play_at(&self, samples: Vec<i16>, rate: u32, looped: bool) -> bool {
        let (done, rx) = oneshot::channel();
        let to = self.codec().audio_rate();
        self.shared.tx.lock().expect("tx lock").playing = Some(Playing {
            samples: audio::convert(&samples, rate, to),
            rate: to,
            pos: 0,
            looped,
            done: Some(done),
        });
        let _stop = StopPlayback(&self.shared);
        rx.await.is_ok()
    }

    /// Sends `digits` as RFC 4733 events, each `tone` long with `gap` between; resolves when the
    /// last one has been sent (false if the session stopped first).
    pub async fn send_dtmf(&self, digits: &str, tone: Duration, gap: Duration) -> bool {
        // In packets of the session's packet time.
        let ptime = u64::from(ptime_of(&self.shared.remote()));
        let frames = |d: Duration| (d.as_millis() as u64 / ptime).clamp(1, 3000) as u16;
        let mut last = None;
        {
            let mut tx = self.shared.tx.lock().expect("tx lock");
            for d in digits.chars() {
                if let Some(event) = dtmf::event_of(d) {
                    let (done, rx) = oneshot::channel();
                    tx.dtmf.push_back(DtmfOut {
                        event,
                        frames: frames(tone),
                        gap_frames: frames(gap),
                        done: Some(done),
                    });
                    last = Some(rx);
                }
            }
        }
        match last {
            Some(rx) => rx.await.is_ok(),
            None => true,
        }
    }

    /// The figures of each stream received (each SSRC), in the order they began; at most the
    /// last 16 (the totals in [`Self::stats`] count them all).
    pub fn streams(&self) -> Vec<StreamStats> {
        let rx = self.shared.rx.lock().expect("rx lock");
        rx.streams.iter().map(Stream::stats).collect()
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.shared.rx.lock().expect("rx lock").totals();
        let tx = self.shared.tx.lock().expect("tx lock");
        s.packets_sent = tx.sent;
        s.ticks = tx.ticks;
        s.ticks_late_1ms = tx.late_1ms;
        s.tick_late_max_ms = tx.late_max.as_secs_f64() * 1000.0;
        s
    }

    /// The SRTP suite, and how many packets received failed its check; None for plain RTP.
    pub fn srtp(&self) -> Option<(crate::srtp::Suite, u64)> {
        self.shared.srtp.as_ref().map(|s| {
            (
                s.suite,
                s.rejected.load(std::sync::atomic::Ordering::Relaxed),
            )
        })
    }

    /// When the first packet from the peer arrived.
    pub fn first_received(&self) -> Option<Instant> {
        self.shared.rx.lock().expect("rx lock").first_at
    }

    /// The decoded audio received so far (at most the last ten minutes), at the analysis rate
    /// ([`RATE`]).
    pub fn received_audio(&self) -> Vec<i16> {
        let rx = self.shared.rx.lock().expect("rx lock");
        audio::convert(&rx.audio, rx.rate(), RATE)
    }

    /// The decoded audio received so far as it came, and its rate (16 kHz on a G.722 call):
    /// what a recording keeps.
    pub fn received_audio_native(&self) -> (u32, Vec<i16>) {
        let rx = self.shared.rx.lock().expect("rx lock");
        (rx.rate(), rx.audio.clone())
    }

    /// How many samples have been received so far, at the analysis rate (a mark for
    /// [`Self::audio_since`]).
    pub fn audio_len(&self) -> usize {
        let rx = self.shared.rx.lock().expect("rx lock");
        rx.audio.len() * RATE as usize / rx.rate() as usize
    }

    /// The audio received since `mark` ([`Self::audio_len`]), at the analysis rate.
    pub fn audio_since(&self, mark: usize) -> Vec<i16> {
        let rx = self.shared.rx.lock().expect("rx lock");
        let start = (mark * rx.rate() as usize / RATE as usize).min(rx.audio.len());
        audio::convert(&rx.audio[start..], rx.rate(), RATE)
    }

    /// Waits until `pred` holds for what has been received, checking on every new packet.
    pub async fn wait_until(&self, mut pred: impl FnMut(&Self) -> bool) {
        let mut rx = self.shared.changed.subscribe();
        loop {
            if pred(self) {
                return;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Digits received and not yet taken by a wait.
    pub fn pending_digits(&self) -> String {
        let rx = self.shared.rx.lock().expect("rx lock");
        rx.digits[rx.taken..].iter().collect()
    }

    /// Marks `n` pending digits as taken.
    pub fn take_digits(&self, n: usize) {
        let mut rx = self.shared.rx.lock().expect("rx lock");
        rx.taken = (rx.taken + n).min(rx.digits.len());
    }

    /// Records a digit that arrived another way (SIP INFO).
    pub fn push_digit(&self, d: char) {
        self.shared.rx.lock().expect("rx lock").digits.push(d);
        self.shared.changed.send_modify(|n| *n += 1);
        self.shared.tell(Heard::Digit(d));
    }

    /// Stops the tasks and returns the final statistics.
    /// Takes what the call captured so far (`None` when it captures nothing).
    pub fn take_capture(&self) -> Option<Capture> {
        self.shared
            .capture
            .as_ref()
            .map(|c| std::mem::take(&mut *c.lock().expect("capture lock")))
    }

    /// What RTCP told so far.
    pub fn rtcp(&self) -> RtcpStats {
        let Some(r) = &self.shared.rtcp else {
            return RtcpStats::default();
        };
        let st = r.state.lock().expect("rtcp lock");
        RtcpStats {
            sent: st.sent,
            received: st.received,
            rtt_ms: st.rtt.map(|d| d.as_secs_f64() * 1000.0),
            peer_lost: st.peer.map(|b| b.total_lost),
            peer_fraction_lost_percent: st.peer.map(|b| f64::from(b.fraction_lost) * 100.0 / 256.0),
            peer_jitter_ms: st
                .peer
                .map(|b| f64::from(b.jitter) * 1000.0 / f64::from(self.codec().clock_rate())),
        }
    }

    pub fn stop(&self) -> Stats {
        self.shared
            .stopped
            .store(true, std::sync::atomic::Ordering::Release);
        for t in &self.tasks {
            t.abort();
        }
        // Whoever waits for a playback or DTMF learns that it will not finish.
        let mut tx = self.shared.tx.lock().expect("tx lock");
        tx.playing = None;
        tx.dtmf.clear();
        tx.current = None;
        drop(tx);
        self.stats()
    }
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        self.shared
            .stopped
            .store(true, std::sync::atomic::Ordering::Release);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Clears the playback when the `play` future is dropped (node cancelled or timed out).
struct StopPlayback<'a>(&'a Shared);

impl Drop for StopPlayback<'_> {
    fn drop(&mut self) {
        self.0.tx.lock().expect("tx lock").playing = None;
    }
}

impl Shared {
    fn remote(&self) -> RemoteMedia {
        self.remote.lock().expect("remote lock").clone()
    }
}

/// One packet time's step: the packet to send, if any.
fn next_packet(s: &Shared, remote: &RemoteMedia, tx: &mut Tx, ptime: u32) -> Option<Vec<u8>> {
    // One packet time of the codec's RTP clock (160 at 8 kHz in 20 ms, 960 for Opus).
    let step = remote.codec.clock_rate() * ptime / 1000;
    tx.ts = tx.ts.wrapping_add(step);
    // A DTMF event in progress, or the next one once the gap has passed.
    if tx.current.is_none()
        && tx.gap_left == 0
        && let Some(d) = remote.dtmf_pt.and(tx.dtmf.pop_front())
    {
        tx.current = Some(DtmfSending {
            event: d.event,
            ts: tx.ts,
            sent: 0,
            total: d.frames,
            ends: 0,
            done: d.done,
            gap: d.gap_frames,
        });
    }
    if tx.gap_left > 0 {
        tx.gap_left -= 1;
    }
    if let (Some(pt), Some(cur)) = (remote.dtmf_pt, tx.current.as_mut()) {
        let first = cur.sent == 0;
        let end = cur.sent + 1 >= cur.total;
        cur.sent = (cur.sent + 1).min(cur.total);
        let duration = (u32::from(cur.sent) * step).min(u32::from(u16::MAX)) as u16;
        if end {
            cur.ends += 1;
        }
        let payload = dtmf::encode(cur.event, end, 10, duration);
        let pkt = RtpPacketBuilder::new()
            .payload_type(pt)
            .ssrc(s.ssrc)
            .sequence(tx.seq)
            .timestamp(cur.ts)
            .marked(first)
            .payload(&payload)
            .build()
            .ok();
        tx.seq = tx.seq.next();
        // The end packet goes out three times (RFC 4733 §2.5.1.4).
        if cur.ends >= 3
            && let Some(done) = tx.current.take()
        {
            tx.gap_left = done.gap;
            if let Some(d) = done.done {
                let _ = d.send(());
            }
        }
        return pkt;
    }
    if !tx.sending {
        return None;
    }
    // One packet time at the codec's audio rate (160 samples at 8 kHz in 20 ms, 320 at 16 kHz).
    let rate = remote.codec.audio_rate();
    // On the stack: the longest is 60 ms at 16 kHz.
    let mut buf = [0i16; MAX_FRAME];
    let frame = &mut buf[..(rate * ptime / 1000) as usize];
    if let Some(p) = tx.playing.as_mut() {
        // The codec changed under the playback (a re-INVITE): the rest at the new rate.
        if p.rate != rate {
            p.samples = audio::convert(&p.samples[p.pos.min(p.samples.len())..], p.rate, rate);
            p.rate = rate;
            p.pos = 0;
        }
        for slot in frame.iter_mut() {
            if p.pos >= p.samples.len() {
                if p.looped && !p.samples.is_empty() {
                    p.pos = 0;
                } else {
                    break;
                }
            }
            *slot = p.samples[p.pos];
            p.pos += 1;
        }
        if p.pos >= p.samples.len() && !p.looped {
            if let Some(d) = p.done.take() {
                let _ = d.send(());
            }
            tx.playing = None;
        }
    }
    // The encoder keeps its state across frames; a re-INVITE that changes the codec starts a
    // new one.
    if tx
        .encoder
        .as_ref()
        .is_none_or(|e| e.codec() != remote.codec)
    {
        tx.encoder = Some(audio::Encoder::new(remote.codec));
    }
    let payload = tx
        .encoder
        .as_mut()
        .map(|e| e.encode(frame))
        .unwrap_or_default();
    let pkt = RtpPacketBuilder::new()
        .payload_type(remote.pt)
        .ssrc(s.ssrc)
        .sequence(tx.seq)
        .timestamp(tx.ts)
        .marked(tx.sent == 0)
        .payload(&payload)
        .build()
        .ok();
    tx.seq = tx.seq.next();
    pkt
}

/// The packet time a session sends at: what the peer asked for (`a=ptime`), in whole clock
/// ticks from 10 to 60 ms; 20 when it asked for none. Opus frames are 10, 20, 40 or 60 ms
/// (RFC 6716 §2.1.4): another time is sent as 20.
pub fn ptime_of(remote: &RemoteMedia) -> u32 {
    let ms = remote.ptime.unwrap_or(20).clamp(10, 60) / 10 * 10;
    match remote.codec {
        Codec::Opus if ![10, 20, 40, 60].contains(&ms) => 20,
        _ => ms,
    }
}

/// One tick of the media clock ([`TICK`]) for a session: when its packet time has come, pace,
/// build and send its packet.
fn tick(s: &Shared, now: Instant) {
    // Most ticks of a 20 ms stream are not its packet's: one lock, nothing else.
    {
        let mut tx = s.tx.lock().expect("tx lock");
        if tx.wait > 1 {
            tx.wait -= 1;
            return;
        }
    }
    let remote = s.remote();
    let ptime = ptime_of(&remote);
    let pkt = {
        let mut tx = s.tx.lock().expect("tx lock");
        tx.wait = ptime / TICK_MS;
        // Pacing jitter: how far this packet is from one packet time after the previous one.
        if let Some(prev) = tx.prev_tick {
            let dev = (now - prev).abs_diff(Duration::from_millis(u64::from(ptime)));
            tx.ticks += 1;
            if dev > Duration::from_millis(1) {
                tx.late_1ms += 1;
            }
            tx.late_max = tx.late_max.max(dev);
        }
        tx.prev_tick = Some(now);
        next_packet(s, &remote, &mut tx, ptime)
    };
    if let Some(p) = pkt
        && let Some(wire) = s.protect(&p, false)
        && s.send_socket.send_to(&wire, remote.addr).is_ok()
    {
        let mut tx = s.tx.lock().expect("tx lock");
        tx.sent += 1;
        // Our packets carry the 12-byte fixed header only (no CSRCs, no extension).
        tx.octets += p.len().saturating_sub(12) as u64;
        drop(tx);
        s.capture(true, remote.addr, &p);
    }
}

/// The most samples one packet carries: 60 ms (the longest packet time) at 16 kHz.
const MAX_FRAME: usize = 16_000 * 60 / 1000;

/// The media clock's period: every packet time is a whole number of it.
const TICK_MS: u32 = 10;
const TICK: Duration = Duration::from_millis(TICK_MS as u64);

/// The media clock: one thread that wakes every 10 ms (sleeping, then spinning the last
/// stretch, since tokio's timer only has millisecond granularity) and sends the packet of each
/// live session whose packet time has come (20 ms unless its peer asked for another). One clock
/// for all streams keeps their pacing jitter well under 1 ms.
struct Clock {
    sessions: Mutex<Vec<std::sync::Weak<Shared>>>,
}

fn clock() -> &'static Clock {
    static CLOCK: std::sync::OnceLock<&'static Clock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(|| {
        let c: &'static Clock = Box::leak(Box::new(Clock {
            sessions: Mutex::new(Vec::new()),
        }));
        std::thread::Builder::new()
            .name("callflow-media-clock".into())
            .spawn(move || c.run())
            .expect("the media clock thread starts");
        c
    })
}

impl Clock {
    fn add(&self, s: &Arc<Shared>) {
        self.sessions
            .lock()
            .expect("clock lock")
            .push(Arc::downgrade(s));
    }

    fn run(&self) {
        const SPIN: Duration = Duration::from_micros(300);
        let mut next = Instant::now() + TICK;
        loop {
            let now = Instant::now();
            if next > now + SPIN {
                std::thread::sleep(next - now - SPIN);
            }
            while Instant::now() < next {
                std::hint::spin_loop();
            }
            let live: Vec<Arc<Shared>> = {
                let mut list = self.sessions.lock().expect("clock lock");
                list.retain(|w| {
                    w.upgrade()
                        .is_some_and(|s| !s.stopped.load(std::sync::atomic::Ordering::Acquire))
                });
                list.iter().filter_map(std::sync::Weak::upgrade).collect()
            };
            let at = Instant::now();
            for s in &live {
                tick(s, at);
            }
            next += TICK;
            // Far behind (the machine stalled): start again from now rather than burst.
            if Instant::now() > next + 10 * TICK {
                next = Instant::now() + TICK;
            }
        }
    }
}

/// Sends a report after [`RTCP_FIRST`], then every [`RTCP_INTERVAL`].
async fn rtcp_send_loop(s: Arc<Shared>) {
    tokio::time::sleep(RTCP_FIRST).await;
    while !s.stopped.load(std::sync::atomic::Ordering::Acquire) {
        send_report(&s);
        tokio::time::sleep(RTCP_INTERVAL).await;
    }
}

/// One compound report: a sender report if we sent RTP since the last one (else a receiver
/// report), a block about the stream we receive now, our CNAME; to the peer's RTP port + 1.
fn send_report(s: &Shared) {
    use crate::control::{self, Block, Sender};
    let Some(r) = &s.rtcp else { return };
    let (packets, octets, rtp_time) = {
        let tx = s.tx.lock().expect("tx lock");
        (tx.sent, tx.octets, tx.ts)
    };
    let now = Instant::now();
    let ntp = control::ntp(std::time::SystemTime::now());
    let mut st = r.state.lock().expect("rtcp lock");
    let block = {
        let rx = s.rx.lock().expect("rx lock");
        rx.streams.last().map(|stream| {
            let expected = stream.expected();
            let (lsr, dlsr) = st.last_sr.map_or((0, 0), |(lsr, at)| {
                (lsr, control::units(now.saturating_duration_since(at)))
            });
            let block = Block {
                ssrc: stream.ssrc,
                fraction_lost: control::fraction_lost(
                    expected.saturating_sub(st.expected_prior),
                    stream.received.saturating_sub(st.received_prior),
                ),
                total_lost: u32::try_from(expected.saturating_sub(stream.received))
                    .unwrap_or(u32::MAX),
                highest_seq: (stream.cycles << 16) | u32::from(stream.max_seq),
                jitter: stream.jitter as u32,
                lsr,
                dlsr,
            };
            st.expected_prior = expected;
            st.received_prior = stream.received;
            block
        })
    };
    let sender = (packets > st.packets_prior).then_some(Sender {
        ntp,
        rtp_time,
        packets: packets as u32,
        octets: octets as u32,
    });
    st.packets_prior = packets;
    let bytes = control::compound(s.ssrc, sender, block, &r.cname);
    let remote = s.remote();
    let to = remote
        .rtcp
        .unwrap_or_else(|| SocketAddr::new(remote.addr.ip(), remote.addr.port().wrapping_add(1)));
    let Some(wire) = s.protect(&bytes, true) else {
        return;
    };
    if r.socket.try_send_to(&wire, to).is_ok() {
        st.sent += 1;
        drop(st);
        s.keep(true, to, &bytes, true);
        s.tell(Heard::Reported);
    }
}

/// Reads the peer's reports: its sender reports (for our blocks' LSR and DLSR), and its blocks
/// about our stream (what it lost, its jitter, the round trip).
async fn rtcp_recv_loop(s: Arc<Shared>) {
    use crate::control;
    let Some(r) = &s.rtcp else { return };
    let mut buf = vec![0u8; 1500];
    loop {
        let Ok((n, from)) = r.socket.recv_from(&mut buf).await else {
            continue;
        };
        let Some(clear) = s.unprotect(&buf[..n], true) else {
            continue;
        };
        s.keep(false, from, &clear, true);
        let arrival = control::mid32(control::ntp(std::time::SystemTime::now()));
        let Ok(heard) = control::read(&clear) else {
            continue;
        };
        let mut st = r.state.lock().expect("rtcp lock");
        st.received += 1;
        for h in heard {
            if let Some(ntp) = h.sr_ntp {
                st.last_sr = Some((control::mid32(ntp), Instant::now()));
            }
            for b in h.blocks.iter().filter(|b| b.ssrc == s.ssrc) {
                if let Some(rtt) = control::round_trip(b, arrival) {
                    st.rtt = Some(rtt);
                }
                st.peer = Some(*b);
            }
        }
    }
}

async fn recv_loop(s: Arc<Shared>) {
    let mut buf = vec![0u8; 2048];
    loop {
        let Ok((n, from)) = s.socket.recv_from(&mut buf).await else {
            continue;
        };
        if let Some((p, rng)) = &s.loss
            && rand::Rng::random_bool(&mut *rng.lock().expect("loss lock"), *p)
        {
            continue;
        }
        let clear;
        let bytes = if s.srtp.is_some() {
            let Some(c) = s.unprotect(&buf[..n], false) else {
                continue;
            };
            clear = c;
            &clear[..]
        } else {
            &buf[..n]
        };
        s.capture(false, from, bytes);
        let Ok(pkt) = RtpReader::new(bytes) else {
            continue;
        };
        let remote = s.remote();
        let clock = remote.codec.clock_rate();
        let arrival = s.started.elapsed().as_secs_f64() * f64::from(clock);
        let dtmf_pt = remote.dtmf_pt;
        // Told once, before the lock (whoever hears it may take locks of its own).
        if !s.flowing.load(std::sync::atomic::Ordering::Relaxed)
            && !s.flowing.swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            s.tell(Heard::Flowing);
        }
        let mut digit = None;
        let mut rx = s.rx.lock().expect("rx lock");
        rx.first_at.get_or_insert_with(Instant::now);
        let seq: u16 = pkt.sequence_number().into();
        if !rx
            .stream(pkt.ssrc(), seq, clock)
            .take(seq, pkt.timestamp(), arrival)
        {
            continue;
        }
        let pt = pkt.payload_type();
        if Some(pt) == dtmf_pt {
            if let Some((event, true, _)) = dtmf::decode(pkt.payload())
                && rx.last_event_ts != Some(pkt.timestamp())
            {
                rx.last_event_ts = Some(pkt.timestamp());
                if let Some(d) = dtmf::digit_of(event) {
                    rx.digits.push(d);
                    digit = Some(d);
                }
            }
        } else if let Some(codec) = (if pt == remote.pt {
            Some(remote.codec)
        } else {
            match pt {
                0 => Some(Codec::Pcmu),
                8 => Some(Codec::Pcma),
                9 => Some(Codec::G722),
                _ => None,
            }
        })
        .filter(|_| s.keep_audio)
        {
            if rx.decoder.as_ref().is_none_or(|d| d.codec() != codec) {
                rx.decoder = Some(audio::Decoder::new(codec));
            }
            let samples = rx
                .decoder
                .as_mut()
                .map(|d| d.decode(pkt.payload()))
                .unwrap_or_default();
            if rx.audio_rate == 0 {
                rx.audio_rate = codec.audio_rate();
            }
            let kept = rx.audio_rate;
            if codec.audio_rate() == kept {
                rx.audio.extend_from_slice(&samples);
            } else {
                let samples = audio::convert(&samples, codec.audio_rate(), kept);
                rx.audio.extend_from_slice(&samples);
            }
            // Bounded in time: ten minutes at whatever rate is kept.
            let per = (kept / RATE).max(1) as usize;
            if rx.audio.len() > MAX_AUDIO * per {
                rx.audio.drain(..MAX_AUDIO_TRIM * per);
            }
        }
        drop(rx);
        s.changed.send_modify(|n| *n += 1);
        if let Some(d) = digit {
            s.tell(Heard::Digit(d));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `seqs` to one stream, a packet every 20 ms on time.
    fn stream_of(seqs: impl IntoIterator<Item = u16>) -> Stream {
        let mut st = None::<Stream>;
        for (i, seq) in seqs.into_iter().enumerate() {
            let ts = i as u32 * 160;
            st.get_or_insert_with(|| Stream::new(1, seq, RATE))
                .take(seq, ts, f64::from(ts));
        }
        st.expect("at least one packet")
    }

    #[test]
    fn a_capture_keeps_the_last_packets_and_counts_the_older_ones() {
        let mut c = Capture::default();
        let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        for i in 0..5u8 {
            let p = Captured {
                at: std::time::SystemTime::UNIX_EPOCH,
                sent: i % 2 == 0,
                peer,
                bytes: vec![i],
                rtcp: false,
            };
            c.push(p, 3);
        }
        let kept: Vec<u8> = c.packets.iter().map(|p| p.bytes[0]).collect();
        assert_eq!((kept, c.dropped), (vec![2, 3, 4], 2));
    }

    #[test]
    fn a_lossless_stream_counts_no_loss_across_the_sequence_wrap() {
        let s = stream_of((65_000..=u16::MAX).chain(0..500)).stats();
        assert_eq!((s.packets_received, s.lost, s.out_of_order), (1036, 0, 0));
        assert_eq!(s.jitter_ms, 0.0);
    }

    #[test]
    fn gaps_count_as_lost_and_late_packets_as_reordered() {
        let s = stream_of([1, 2, 4, 3, 5, 8, 9]).stats();
        assert_eq!((s.packets_received, s.lost, s.out_of_order), (7, 2, 1));
        let d = stream_of([1, 2, 2, 3]).stats();
        assert_eq!((d.packets_received, d.duplicates, d.lost), (3, 1, 0));
    }

    #[test]
    fn a_sequence_restart_is_a_new_run_not_loss() {
        // A sender that restarts its numbering (RFC 3550 A.1: two packets in a row far off).
        let s = stream_of((100..200).chain(40_000..40_100)).stats();
        assert_eq!((s.packets_received, s.lost, s.out_of_order), (200, 0, 0));
        // One stray far packet is reordered, not a restart.
        let one = stream_of((100..150).chain([40_000]).chain(150..200)).stats();
        assert_eq!(
            (one.packets_received, one.lost, one.out_of_order),
            (101, 0, 1)
        );
    }

    #[test]
    fn each_ssrc_keeps_its_own_numbers() {
        // sipp's uac_pcap: a recording with one SSRC, then DTMF from another capture.
        let mut rx = Rx::default();
        for (i, seq) in (1000..1250u16).enumerate() {
            rx.stream(0xaaaa, seq, RATE)
                .take(seq, i as u32 * 160, i as f64 * 160.0);
        }
        for (i, seq) in (7..40u16).enumerate() {
            rx.stream(0xbbbb, seq, RATE)
                .take(seq, i as u32 * 160, i as f64 * 160.0);
        }
        let t = rx.totals();
        assert_eq!((t.packets_received, t.lost), (283, 0));
        assert_eq!(t.loss_percent(), 0.0);
        let ssrcs: Vec<u32> = rx.streams.iter().map(|s| s.ssrc).collect();
        assert_eq!(ssrcs, [0xaaaa, 0xbbbb]);
    }

    #[test]
    fn streams_past_the_bound_are_kept_as_totals() {
        let mut rx = Rx::default();
        for ssrc in 0..(MAX_STREAMS as u32 + 4) {
            for seq in [1u16, 2, 4] {
                rx.stream(ssrc, seq, RATE).take(seq, 0, 0.0);
            }
        }
        assert_eq!(rx.streams.len(), MAX_STREAMS);
        let t = rx.totals();
        let n = MAX_STREAMS as u64 + 4;
        assert_eq!((t.packets_received, t.lost), (3 * n, n));
    }
}
