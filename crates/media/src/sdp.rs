//! SDP offer/answer (RFC 3264): one audio stream among any others, PCMU, PCMA or G.722 plus
//! telephone-event. The `sdp` crate (webrtc-rs) reads and writes the descriptions; this module
//! decides: which codecs (mapped by their rtpmap names, RFC 4566 §6, not by number), which
//! address, which direction, and answers every media line of an offer in its order, the ones
//! it does not take with port 0 (RFC 3264 §6).

use crate::srtp::{Crypto, Keys, SrtpMode, Suite};
use sdp::description::common::{Address, Attribute, ConnectionInformation};
use sdp::description::media::{MediaDescription, MediaName, RangedPort};
use sdp::description::session::{Origin, SessionDescription, TimeDescription, Timing};
use std::net::IpAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Pcmu,
    Pcma,
    /// G.722: 16 kHz audio, an RTP clock of 8000 (RFC 3551 §4.5.2), 160 bytes per 20 ms.
    G722,
    /// Opus (RFC 7587): `opus/48000/2` in SDP, an RTP clock of 48000 whatever it codes.
    Opus,
    /// Linear 16-bit PCM, big-endian (RFC 3551 §4.5.11), mono at 16 kHz: `L16/16000`. Not
    /// compressed, so what a test sends arrives bit for bit.
    L16,
}

impl Codec {
    pub fn payload_type(self) -> u8 {
        match self {
            Self::Pcmu => 0,
            Self::Pcma => 8,
            Self::G722 => 9,
            // Dynamic: the number we offer it on; an answer takes the offer's.
            Self::Opus => 111,
            Self::L16 => 98,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Pcmu => "PCMU",
            Self::Pcma => "PCMA",
            Self::G722 => "G722",
            Self::Opus => "opus",
            Self::L16 => "L16",
        }
    }

    /// The rate of the audio it carries: 8 kHz for G.711, 16 kHz (wideband) for G.722 and for
    /// Opus (which callflow codes at 16 kHz; its RTP clock is 48 kHz whatever it carries).
    pub fn audio_rate(self) -> u32 {
        match self {
            Self::Pcmu | Self::Pcma => 8_000,
            Self::G722 | Self::Opus | Self::L16 => 16_000,
        }
    }

    /// Its RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Self::Opus => 48_000,
            Self::L16 => 16_000,
            _ => 8_000,
        }
    }

    /// What its `a=rtpmap` says after the payload type.
    fn rtpmap(self) -> String {
        match self {
            Self::Opus => "opus/48000/2".to_owned(),
            Self::L16 => "L16/16000".to_owned(),
            other => format!("{}/8000", other.name()),
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "PCMU" => Some(Self::Pcmu),
            "PCMA" => Some(Self::Pcma),
            "G722" => Some(Self::G722),
            "OPUS" => Some(Self::Opus),
            "L16" => Some(Self::L16),
            _ => None,
        }
    }
}

/// Dynamic payload type we use for telephone-event.
pub const TELEPHONE_EVENT_PT: u8 = 101;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SdpError {
    #[error("the offer has no audio stream")]
    NoAudio,
    #[error("no common codec: the offer has {}, we accept {}", offered.join(", "), ours.join(", "))]
    NoCommonCodec {
        offered: Vec<String>,
        ours: Vec<String>,
    },
    #[error("the SDP cannot be read: {0}")]
    Invalid(String),
    /// We require SRTP (`srtp: required`) and the offer has none we take.
    #[error("SRTP is required here, and the offer has {offered}")]
    SrtpRequired { offered: String },
    /// The offer is SRTP only with no suite we take.
    #[error("the offer has {offered}; we take AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32")]
    SrtpSuites { offered: String },
    /// The offer is RTP/SAVP (SRTP only) and SRTP is off here.
    #[error("the offer is RTP/SAVP (SRTP only), and SRTP is off here")]
    SrtpOffered,
}

/// What we put in our SDP.
#[derive(Clone, Debug)]
pub struct LocalMedia {
    pub ip: IpAddr,
    pub rtp_port: u16,
    pub codecs: Vec<Codec>,
    pub session_id: u64,
    /// Whether to offer or take SRTP, and our master key and salt for it.
    pub srtp: SrtpMode,
    pub key: [u8; crate::srtp::KEY_LEN],
}

/// Where and how to send media to a peer, from its SDP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteMedia {
    pub addr: std::net::SocketAddr,
    pub codec: Codec,
    pub pt: u8,
    pub dtmf_pt: Option<u8>,
    /// Where its RTCP goes when the SDP says (`a=rtcp`, RFC 3605); else the RTP port + 1.
    pub rtcp: Option<std::net::SocketAddr>,
    /// The packet time it asks for (`a=ptime`, RFC 4566 §6), in ms; 20 when it names none.
    pub ptime: Option<u32>,
}

/// The media direction of an SDP (RFC 3264 §5.1; `sendrecv` when none is given).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sendrecv" => Some(Self::SendRecv),
            "sendonly" => Some(Self::SendOnly),
            "recvonly" => Some(Self::RecvOnly),
            "inactive" => Some(Self::Inactive),
            _ => None,
        }
    }

    /// The direction an answer takes to an offer with this direction (RFC 3264 §6.1).
    pub fn answer(self) -> Self {
        match self {
            Self::SendOnly => Self::RecvOnly,
            Self::RecvOnly => Self::SendOnly,
            other => other,
        }
    }

    /// Whether an offer with this direction puts the answerer on hold (it will not receive).
    pub fn is_hold(self) -> bool {
        matches!(self, Self::SendOnly | Self::Inactive)
    }
}

fn parse(text: &str) -> Result<SessionDescription, SdpError> {
    SessionDescription::unmarshal(&mut std::io::Cursor::new(text.as_bytes()))
        .map_err(|e| SdpError::Invalid(e.to_string()))
}

/// The first audio stream of a description, and its index.
fn audio(d: &SessionDescription) -> Option<(usize, &MediaDescription)> {
    d.media_descriptions
        .iter()
        .enumerate()
        .find(|(_, m)| m.media_name.media.eq_ignore_ascii_case("audio"))
}

/// A stream's connection address: its own `c=`, else the session's.
fn address(d: &SessionDescription, m: &MediaDescription) -> Option<IpAddr> {
    let c = m
        .connection_information
        .as_ref()
        .or(d.connection_information.as_ref())?;
    let a = c.address.as_ref()?.address.as_str();
    a.split('/').next()?.parse().ok()
}

/// The port of a stream (0: rejected or disabled).
fn port(m: &MediaDescription) -> u16 {
    u16::try_from(m.media_name.port.value).unwrap_or(0)
}

/// The encoding name and clock rate an `a=rtpmap` of `m` gives payload type `pt`.
fn rtpmap<'a>(m: &'a MediaDescription, pt: &str) -> Option<(&'a str, Option<u32>)> {
    m.attributes.iter().find_map(|a| {
        if !a.key.eq_ignore_ascii_case("rtpmap") {
            return None;
        }
        let (p, enc) = a.value.as_deref()?.split_once(' ')?;
        if p.trim() != pt {
            return None;
        }
        let mut f = enc.trim().split('/');
        let name = f.next()?.trim();
        Some((name, f.next().and_then(|r| r.trim().parse().ok())))
    })
}

/// What a payload type of `m` is called: its rtpmap's encoding name, else the static name RFC
/// 3551 gives it, else `payload type N`.
fn format_name(m: &MediaDescription, pt: &str) -> String {
    if let Some((name, _)) = rtpmap(m, pt).filter(|(n, _)| !n.is_empty()) {
        return name.to_owned();
    }
    let name = match pt {
        "0" => "PCMU",
        "3" => "GSM",
        "4" => "G723",
        "8" => "PCMA",
        "9" => "G722",
        "18" => "G729",
        other => return format!("payload type {other}"),
    };
    name.to_owned()
}

/// The codec of ours a payload type of `m` is, by its name (and its clock, when named).
fn codec_of(m: &MediaDescription, pt: &str) -> Option<Codec> {
    let codec = Codec::from_name(&format_name(m, pt))?;
    let clock_ok =
        rtpmap(m, pt).is_none_or(|(_, rate)| rate.is_none_or(|r| r == codec.clock_rate()));
    // L16 is ours in mono only (`L16/16000` or `L16/16000/1`).
    let mono = codec != Codec::L16 || channels(m, pt).is_none_or(|c| c == 1);
    (clock_ok && mono).then_some(codec)
}

/// The channels an rtpmap of `pt` names (its third field), if it names them.
fn channels(m: &MediaDescription, pt: &str) -> Option<u32> {
    m.attributes.iter().find_map(|a| {
        let (p, enc) = a
            .value
            .as_deref()
            .filter(|_| a.key.eq_ignore_ascii_case("rtpmap"))?
            .split_once(' ')?;
        (p.trim() == pt)
            .then(|| enc.trim().split('/').nth(2)?.trim().parse().ok())
            .flatten()
    })
}

/// The payload type `m` maps to telephone-event at `clock` (RFC 4733: the audio's clock), else
/// at any clock, if any.
fn dtmf_pt(m: &MediaDescription, clock: u32) -> Option<u8> {
    let events: Vec<(u8, Option<u32>)> = m
        .media_name
        .formats
        .iter()
        .filter_map(|pt| {
            let (name, rate) = rtpmap(m, pt)?;
            name.eq_ignore_ascii_case("telephone-event")
                .then(|| Some((pt.parse().ok()?, rate)))
                .flatten()
        })
        .collect();
    events
        .iter()
        .find(|(_, rate)| *rate == Some(clock))
        .or(events.first())
        .map(|(pt, _)| *pt)
}

/// The direction attribute among `attributes`, if one is there.
fn direction_in(attributes: &[Attribute]) -> Option<Direction> {
    attributes.iter().find_map(|a| {
        a.value
            .is_none()
            .then(|| Direction::parse(&a.key))
            .flatten()
    })
}

/// An `IN IP4`/`IN IP6` connection to `ip`.
fn connection(ip: IpAddr) -> ConnectionInformation {
    ConnectionInformation {
        network_type: "IN".into(),
        address_type: if ip.is_ipv4() { "IP4" } else { "IP6" }.into(),
        address: Some(Address {
            address: ip.to_string(),
            ttl: None,
            range: None,
        }),
    }
}

/// Our audio stream: these formats (payload type and codec, in order), telephone-event on
/// `dtmf`, 20 ms packets, in `dir`.
fn our_audio(
    m: &LocalMedia,
    formats: &[(u8, Codec)],
    dtmf: Option<u8>,
    dir: Direction,
    (savp, crypto): (bool, &[Crypto]),
) -> MediaDescription {
    let mut attributes: Vec<Attribute> = formats
        .iter()
        .map(|(pt, c)| Attribute::new("rtpmap".into(), Some(format!("{pt} {}", c.rtpmap()))))
        .collect();
    if let Some(pt) = dtmf {
        // At the clock of the first codec (RFC 4733 §2.1: the audio's).
        let clock = formats.first().map_or(8_000, |(_, c)| c.clock_rate());
        attributes.push(Attribute::new(
            "rtpmap".into(),
            Some(format!("{pt} telephone-event/{clock}")),
        ));
        attributes.push(Attribute::new("fmtp".into(), Some(format!("{pt} 0-16"))));
    }
    attributes.push(Attribute::new("ptime".into(), Some("20".into())));
    for c in crypto {
        attributes.push(Attribute::new("crypto".into(), Some(c.value())));
    }
    attributes.push(Attribute::new(dir.as_str().into(), None));
    let mut names: Vec<String> = formats.iter().map(|(pt, _)| pt.to_string()).collect();
    names.extend(dtmf.map(|pt| pt.to_string()));
    MediaDescription {
        media_name: MediaName {
            media: "audio".into(),
            port: RangedPort {
                value: isize::try_from(m.rtp_port).unwrap_or(0),
                range: None,
            },
            protos: vec!["RTP".into(), if savp { "SAVP" } else { "AVP" }.into()],
            formats: names,
        },
        media_title: None,
        connection_information: None,
        bandwidth: Vec::new(),
        encryption_key: None,
        attributes,
    }
}

/// A stream of an offer we do not take, as the answer says so: the same media and transport,
/// port 0 (RFC 3264 §6).
fn rejected(offered: &MediaDescription) -> MediaDescription {
    MediaDescription {
        media_name: MediaName {
            port: RangedPort {
                value: 0,
                range: None,
            },
            ..offered.media_name.clone()
        },
        media_title: None,
        connection_information: None,
        bandwidth: Vec::new(),
        encryption_key: None,
        attributes: Vec::new(),
    }
}

/// A description of ours around `media`.
fn session(m: &LocalMedia, version: u64, media: Vec<MediaDescription>) -> String {
    let c = connection(m.ip);
    SessionDescription {
        version: 0,
        origin: Origin {
            username: "callflow".into(),
            session_id: m.session_id,
            session_version: version,
            network_type: "IN".into(),
            address_type: c.address_type.clone(),
            unicast_address: m.ip.to_string(),
        },
        session_name: "callflow".into(),
        session_information: None,
        uri: None,
        email_address: None,
        phone_number: None,
        connection_information: Some(c),
        bandwidth: Vec::new(),
        time_descriptions: vec![TimeDescription {
            timing: Timing {
                start_time: 0,
                stop_time: 0,
            },
            repeat_times: Vec::new(),
        }],
        time_zones: Vec::new(),
        encryption_key: None,
        attributes: Vec::new(),
        media_descriptions: media,
    }
    .marshal()
}

/// Our offer: the codecs in our order, then telephone-event.
pub fn offer(m: &LocalMedia) -> String {
    let formats: Vec<(u8, Codec)> = m.codecs.iter().map(|c| (c.payload_type(), *c)).collect();
    // SRTP: every suite we take, tagged from 1, with our key (RFC 4568 §5.1).
    let keys: Vec<Crypto> = (1..)
        .zip(Suite::ALL)
        .map(|(tag, suite)| Crypto::new(tag, suite, m.key))
        .collect();
    let srtp = match m.srtp {
        SrtpMode::Off => (false, &[][..]),
        SrtpMode::Optional => (false, &keys[..]),
        SrtpMode::Required => (true, &keys[..]),
    };
    let audio = our_audio(
        m,
        &formats,
        Some(TELEPHONE_EVENT_PT),
        Direction::SendRecv,
        srtp,
    );
    session(m, m.session_id, vec![audio])
}

/// Our answer to `offer_sdp`: every stream of the offer in its order; the first audio stream
/// with the offered codecs we support, in the offer's order and with its payload types, in the
/// direction that answers the offer's (RFC 3264 §6.1: `recvonly` to `sendonly`), and
/// telephone-event if it offered it; every other stream rejected (port 0).
pub fn answer(offer_sdp: &str, m: &LocalMedia) -> Result<String, SdpError> {
    // Parsed once: the direction and the answer read the same description.
    let offer = parse(offer_sdp)?;
    let dir = offered_direction_of(&offer).answer();
    answer_parsed(&offer, m, m.session_id, dir)
}

fn answer_as(
    offer_sdp: &str,
    m: &LocalMedia,
    version: u64,
    dir: Direction,
) -> Result<String, SdpError> {
    answer_parsed(&parse(offer_sdp)?, m, version, dir)
}

fn answer_parsed(
    offer: &SessionDescription,
    m: &LocalMedia,
    version: u64,
    dir: Direction,
) -> Result<String, SdpError> {
    let Some((at, audio)) = offer
        .media_descriptions
        .iter()
        .enumerate()
        .find(|(_, md)| md.media_name.media.eq_ignore_ascii_case("audio") && port(md) != 0)
    else {
        return Err(SdpError::NoAudio);
    };
    let common: Vec<(u8, Codec)> = audio
        .media_name
        .formats
        .iter()
        .filter_map(|pt| Some((pt.parse().ok()?, codec_of(audio, pt)?)))
        .filter(|(_, c)| m.codecs.contains(c))
        .collect();
    let offered_dtmf = dtmf_pt(audio, 8_000);
    if common.is_empty() {
        let dtmf = offered_dtmf;
        return Err(SdpError::NoCommonCodec {
            offered: audio
                .media_name
                .formats
                .iter()
                .filter(|pt| pt.parse::<u8>().ok() != dtmf)
                .map(|pt| format_name(audio, pt))
                .collect(),
            ours: m.codecs.iter().map(|c| c.name().to_owned()).collect(),
        });
    }
    let dtmf = dtmf_pt(audio, common[0].1.clock_rate());
    let offered_savp = is_savp(audio);
    let offered = cryptos(audio);
    let ours_key = match (
        m.srtp,
        offered.iter().find_map(|c| Some((c.tag, c.usable()?.0))),
    ) {
        (SrtpMode::Off, _) if offered_savp => return Err(SdpError::SrtpOffered),
        (SrtpMode::Off, _) => None,
        (_, Some((tag, suite))) => Some(Crypto::new(tag, suite, m.key)),
        (SrtpMode::Required, None) => {
            return Err(SdpError::SrtpRequired {
                offered: describe_srtp(offered_savp, &offered),
            });
        }
        (SrtpMode::Optional, None) if offered_savp => {
            return Err(SdpError::SrtpSuites {
                offered: describe_srtp(offered_savp, &offered),
            });
        }
        (SrtpMode::Optional, None) => None,
    };
    let ours = our_audio(
        m,
        &common,
        dtmf,
        dir,
        (offered_savp && ours_key.is_some(), ours_key.as_slice()),
    );
    let media = offer
        .media_descriptions
        .iter()
        .enumerate()
        .map(|(i, md)| if i == at { ours.clone() } else { rejected(md) })
        .collect();
    Ok(session(m, version, media))
}

/// An RTP/SAVP stream (SRTP only, RFC 3711 §12).
fn is_savp(m: &MediaDescription) -> bool {
    m.media_name
        .protos
        .iter()
        .any(|p| p.eq_ignore_ascii_case("SAVP"))
}

/// The `a=crypto` lines of a stream, in order.
fn cryptos(m: &MediaDescription) -> Vec<Crypto> {
    m.attributes
        .iter()
        .filter(|a| a.key.eq_ignore_ascii_case("crypto"))
        .filter_map(|a| Crypto::parse(a.value.as_deref()?))
        .collect()
}

/// What an offer has of SRTP, for a refusal: `RTP/AVP without a=crypto`, `RTP/SAVP with
/// AEAD_AES_256_GCM only`.
fn describe_srtp(savp: bool, offered: &[Crypto]) -> String {
    let proto = if savp { "RTP/SAVP" } else { "RTP/AVP" };
    if offered.is_empty() {
        format!("{proto} without a=crypto")
    } else {
        let suites: Vec<&str> = offered.iter().map(|c| c.suite.as_str()).collect();
        format!("{proto} with {} only", suites.join(", "))
    }
}

/// The SRTP keys of a call, from our SDP and the peer's: the peer's first key of a suite we
/// take under a tag our SDP has too (the offer's tag the answer chose). None: plain RTP.
pub fn srtp_keys(ours: &str, theirs: &str) -> Option<Keys> {
    let (ours, theirs) = (parse(ours).ok()?, parse(theirs).ok()?);
    let mine = cryptos(audio(&ours)?.1);
    cryptos(audio(&theirs)?.1).into_iter().find_map(|t| {
        let (suite, remote) = t.usable()?;
        let local = mine
            .iter()
            .find(|o| o.tag == t.tag && o.suite == t.suite)?
            .key?;
        Some(Keys {
            suite,
            local,
            remote,
        })
    })
}

/// Whether our SDP asks for SRTP only (RTP/SAVP): then plain RTP must not flow.
pub fn requires_srtp(ours: &str) -> bool {
    parse(ours)
        .ok()
        .and_then(|d| audio(&d).map(|(_, m)| is_savp(m)))
        .unwrap_or(false)
}

/// The direction of the (first) audio stream, else of the session, else `sendrecv`.
pub fn direction(sdp: &str) -> Direction {
    parse(sdp).map_or(Direction::SendRecv, |d| direction_of(&d))
}

fn direction_of(d: &SessionDescription) -> Direction {
    audio(d)
        .and_then(|(_, m)| direction_in(&m.attributes))
        .or_else(|| direction_in(&d.attributes))
        .unwrap_or(Direction::SendRecv)
}

/// The codec names the audio stream lists (from its rtpmaps and static payload types), in order.
pub fn codec_names(sdp: &str) -> Vec<String> {
    let Ok(d) = parse(sdp) else {
        return Vec::new();
    };
    audio(&d).map_or_else(Vec::new, |(_, m)| {
        m.media_name
            .formats
            .iter()
            .map(|pt| format_name(m, pt))
            .collect()
    })
}

/// `sdp` with the direction of its audio stream set to `dir` (any at session level dropped) and
/// its `o=` version incremented (a new offer or answer in the same session, RFC 3264 §8). What
/// cannot be read is returned as it is.
pub fn with_direction(sdp: &str, dir: Direction) -> String {
    let Ok(mut d) = parse(sdp) else {
        return sdp.to_owned();
    };
    let is_dir = |a: &Attribute| a.value.is_none() && Direction::parse(&a.key).is_some();
    d.attributes.retain(|a| !is_dir(a));
    let at = audio(&d).map(|(i, _)| i);
    match at.and_then(|i| d.media_descriptions.get_mut(i)) {
        Some(m) => {
            m.attributes.retain(|a| !is_dir(a));
            m.attributes.push(Attribute::new(dir.as_str().into(), None));
        }
        None => d.attributes.push(Attribute::new(dir.as_str().into(), None)),
    }
    d.origin.session_version += 1;
    d.marshal()
}

/// The peer's audio address and the first of its formats we also have (by name).
pub fn negotiate(remote_sdp: &str, ours: &[Codec]) -> Option<RemoteMedia> {
    let d = parse(remote_sdp).ok()?;
    let (_, m) = audio(&d)?;
    let port = Some(port(m)).filter(|p| *p != 0)?;
    let ip = address(&d, m)?;
    let (pt, codec) = m.media_name.formats.iter().find_map(|pt| {
        let c = codec_of(m, pt).filter(|c| ours.contains(c))?;
        Some((pt.parse().ok()?, c))
    })?;
    Some(RemoteMedia {
        addr: std::net::SocketAddr::new(ip, port),
        codec,
        pt,
        dtmf_pt: dtmf_pt(m, codec.clock_rate()),
        rtcp: rtcp_of(m, ip),
        ptime: ptime_of(&m.attributes).or_else(|| ptime_of(&d.attributes)),
    })
}

/// The `a=ptime` among `attributes`, in whole milliseconds.
fn ptime_of(attributes: &[Attribute]) -> Option<u32> {
    let v = attributes
        .iter()
        .find(|a| a.key.eq_ignore_ascii_case("ptime"))?
        .value
        .as_deref()?;
    let ms: f64 = v.trim().parse().ok()?;
    (ms.is_finite() && ms >= 1.0).then_some(ms.round() as u32)
}

/// The RTCP address an `a=rtcp:PORT [IN IP4 ADDR]` of `m` names (RFC 3605), on `ip` when it
/// names no address.
fn rtcp_of(m: &MediaDescription, ip: IpAddr) -> Option<std::net::SocketAddr> {
    let v = m
        .attributes
        .iter()
        .find(|a| a.key.eq_ignore_ascii_case("rtcp"))?
        .value
        .as_deref()?;
    let mut f = v.split_whitespace();
    let port: u16 = f.next()?.parse().ok()?;
    let addr = f.nth(2).and_then(|a| a.parse().ok()).unwrap_or(ip);
    Some(std::net::SocketAddr::new(addr, port))
}

/// The direction an offer asks for, counting the old way of holding (RFC 2543, RFC 3264 §8.4):
/// a connection address of `0.0.0.0` in an offer that names no direction is a hold.
pub fn offered_direction(offer: &str) -> Direction {
    parse(offer).map_or(Direction::SendRecv, |d| offered_direction_of(&d))
}

fn offered_direction_of(d: &SessionDescription) -> Direction {
    let dir = direction_of(d);
    let on_hold = audio(d)
        .and_then(|(_, m)| address(d, m))
        .is_some_and(|ip| ip.is_unspecified());
    if dir == Direction::SendRecv && on_hold {
        Direction::SendOnly
    } else {
        dir
    }
}

/// Our answer to a new offer in a running session (a re-INVITE or UPDATE, RFC 3264 §8): the
/// codecs of `codecs` the offer lists, in its order, on the address and port of our SDP so far
/// (`ours`), in the direction that answers the offer's, with the version of `ours` bumped. When
/// nothing changed (a session refresh), `ours` as it was.
pub fn reanswer(offer: &str, ours: &str, codecs: &[Codec]) -> Result<String, SdpError> {
    let mine = parse(ours)?;
    let (_, audio_ours) = audio(&mine).ok_or(SdpError::NoAudio)?;
    let ip = address(&mine, audio_ours).ok_or(SdpError::NoAudio)?;
    // Our SRTP as our SDP so far has it: the same key again.
    let our_keys = cryptos(audio_ours);
    let local = LocalMedia {
        ip,
        rtp_port: port(audio_ours),
        codecs: codecs.to_vec(),
        session_id: mine.origin.session_id,
        srtp: if is_savp(audio_ours) {
            SrtpMode::Required
        } else if our_keys.is_empty() {
            SrtpMode::Off
        } else {
            SrtpMode::Optional
        },
        key: our_keys.iter().find_map(|c| c.key).unwrap_or_default(),
    };
    let version = mine.origin.session_version;
    let dir = offered_direction(offer).answer();
    let fresh = answer_as(offer, &local, version + 1, dir)?;
    let body = |s: &str| -> String { s.lines().filter(|l| !l.starts_with("o=")).collect() };
    if body(&fresh) == body(ours) {
        Ok(ours.to_owned())
    } else {
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(codecs: Vec<Codec>) -> LocalMedia {
        LocalMedia {
            ip: "127.0.0.1".parse().unwrap(),
            rtp_port: 40000,
            codecs,
            session_id: 7,
            srtp: SrtpMode::Off,
            key: [0; crate::srtp::KEY_LEN],
        }
    }

    #[test]
    fn offer_lists_codecs_then_dtmf() {
        let o = offer(&local(vec![Codec::Pcma, Codec::Pcmu]));
        assert!(o.contains("m=audio 40000 RTP/AVP 8 0 101\r\n"), "{o}");
        assert!(o.contains("a=rtpmap:101 telephone-event/8000\r\n"));
        assert!(o.contains("c=IN IP4 127.0.0.1\r\n"));
    }

    #[test]
    fn answer_keeps_offer_order_and_intersects() {
        let o = offer(&local(vec![Codec::Pcmu, Codec::Pcma]));
        let a = answer(&o, &local(vec![Codec::Pcma])).unwrap();
        assert!(a.contains("m=audio 40000 RTP/AVP 8 101\r\n"), "{a}");
        let err = answer(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.2\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 18 96 101\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n",
            &local(vec![Codec::Pcmu]),
        )
        .unwrap_err();
        // Codecs by name, not payload number, and no Rust debug text.
        assert_eq!(
            err.to_string(),
            "no common codec: the offer has G729, opus, we accept PCMU"
        );
    }
}

#[cfg(test)]
mod direction_tests {
    use super::*;

    #[test]
    fn direction_round_trip_and_version_bump() {
        let m = LocalMedia {
            ip: "127.0.0.1".parse().unwrap(),
            rtp_port: 4000,
            codecs: vec![Codec::Pcmu],
            session_id: 9,
            srtp: SrtpMode::Off,
            key: [0; crate::srtp::KEY_LEN],
        };
        let o = offer(&m);
        assert_eq!(direction(&o), Direction::SendRecv);
        let held = with_direction(&o, Direction::SendOnly);
        assert_eq!(direction(&held), Direction::SendOnly);
        assert!(held.contains("o=callflow 9 10 IN IP4"), "{held}");
        assert_eq!(held.matches("a=sendonly").count(), 1);
        assert_eq!(
            direction(&with_direction(&held, Direction::SendRecv)),
            Direction::SendRecv
        );
        assert_eq!(Direction::SendOnly.answer(), Direction::RecvOnly);
        assert_eq!(codec_names(&o), ["PCMU", "telephone-event"]);
    }

    #[test]
    fn session_level_direction_counts() {
        assert_eq!(
            direction(
                "v=0\r\no=- 1 2 IN IP4 127.0.0.2\r\ns=-\r\nt=0 0\r\na=inactive\r\nm=audio 1 RTP/AVP 0\r\n"
            ),
            Direction::Inactive
        );
    }
}

#[cfg(test)]
mod reanswer_tests {
    use super::*;

    fn ours() -> String {
        offer(&LocalMedia {
            ip: "127.0.0.1".parse().unwrap(),
            rtp_port: 4000,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            session_id: 9,
            srtp: SrtpMode::Off,
            key: [0; crate::srtp::KEY_LEN],
        })
    }

    #[test]
    fn a_pcma_only_reoffer_is_answered_pcma_on_our_port_with_the_version_bumped() {
        let reoffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 5000 RTP/AVP 8\r\n";
        let a = reanswer(reoffer, &ours(), &[Codec::Pcmu, Codec::Pcma]).unwrap();
        assert!(a.contains("m=audio 4000 RTP/AVP 8\r\n"), "{a}");
        assert!(a.contains("o=callflow 9 10 IN IP4 127.0.0.1"), "{a}");
        assert_eq!(direction(&a), Direction::SendRecv);
        let r = negotiate(reoffer, &[Codec::Pcmu, Codec::Pcma]).unwrap();
        assert_eq!(
            (r.addr.to_string().as_str(), r.codec),
            ("127.0.0.2:5000", Codec::Pcma)
        );
    }

    #[test]
    fn a_refresh_keeps_our_sdp_and_a_hold_answers_recvonly() {
        let first = "v=0\r\no=- 1 2 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        let codecs = [Codec::Pcmu, Codec::Pcma];
        let a1 = reanswer(first, &ours(), &codecs).unwrap();
        assert_eq!(
            reanswer(first, &a1, &codecs).unwrap(),
            a1,
            "nothing changed"
        );
        let held = format!("{first}a=sendonly\r\n");
        let a2 = reanswer(&held, &a1, &codecs).unwrap();
        assert_eq!(direction(&a2), Direction::RecvOnly);
        let old_style = first.replace("127.0.0.2", "0.0.0.0");
        assert_eq!(offered_direction(&old_style), Direction::SendOnly);
        assert!(matches!(
            reanswer(
                "v=0\r\no=- 1 2 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 5000 RTP/AVP 18\r\n",
                &a1,
                &codecs
            ),
            Err(SdpError::NoCommonCodec { .. })
        ));
    }
}

#[cfg(test)]
mod negotiate_tests {
    use super::*;

    #[test]
    fn picks_the_peers_first_common_codec_and_its_address() {
        let sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4002 RTP/AVP 18 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        let r = negotiate(sdp, &[Codec::Pcmu, Codec::Pcma]).unwrap();
        assert_eq!(
            (r.addr.to_string().as_str(), r.codec, r.pt, r.dtmf_pt),
            ("127.0.0.1:4002", Codec::Pcma, 8, Some(101))
        );
        assert_eq!(negotiate(sdp, &[]), None);
        assert_eq!(
            negotiate(
                "v=0\r\no=- 1 2 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n",
                &[Codec::Pcmu]
            ),
            None
        );
    }
}

#[cfg(test)]
mod captured_tests {
    //! Offers and answers real peers sent (fixtures/sdp): sipp's built-in UAC, baresip's
    //! answer, a video phone's audio and video offer, an offer with nothing in common.
    use super::*;

    const SIPP: &str = include_str!("../../../fixtures/sdp/sipp-uac-offer.sdp");
    const BARESIP: &str = include_str!("../../../fixtures/sdp/baresip-answer.sdp");
    const VIDEO: &str = include_str!("../../../fixtures/sdp/audio-video-offer.sdp");
    const NOTHING: &str = include_str!("../../../fixtures/sdp/no-common-codec-offer.sdp");

    fn us() -> LocalMedia {
        LocalMedia {
            ip: "127.0.0.1".parse().unwrap(),
            rtp_port: 40000,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            session_id: 7,
            srtp: SrtpMode::Off,
            key: [0; crate::srtp::KEY_LEN],
        }
    }

    #[test]
    fn sipps_offer_is_answered_pcmu_and_its_media_found() {
        let a = answer(SIPP, &us()).unwrap();
        assert!(a.contains("m=audio 40000 RTP/AVP 0\r\n"), "{a}");
        let r = negotiate(SIPP, &[Codec::Pcmu, Codec::Pcma]).unwrap();
        assert_eq!(
            (r.addr.to_string().as_str(), r.codec, r.pt, r.dtmf_pt),
            ("127.0.0.1:6000", Codec::Pcmu, 0, None)
        );
    }

    #[test]
    fn baresips_answer_gives_its_media_dtmf_and_direction() {
        let r = negotiate(BARESIP, &[Codec::Pcma, Codec::Pcmu]).unwrap();
        assert_eq!(r.codec, Codec::Pcmu, "its first that we have");
        assert_eq!(r.dtmf_pt, Some(101));
        assert_eq!(direction(BARESIP), Direction::SendRecv);
        assert_eq!(codec_names(BARESIP), ["PCMU", "PCMA", "telephone-event"]);
    }

    #[test]
    fn a_video_line_is_answered_with_port_0_and_codecs_map_by_name() {
        let a = answer(VIDEO, &us()).unwrap();
        // Every offered stream answered, in order (RFC 3264 §6): audio taken, video refused.
        let mlines: Vec<&str> = a.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            mlines,
            ["m=audio 40000 RTP/AVP 96 0 8 101", "m=video 0 RTP/AVP 97"],
            "{a}"
        );
        // 96 is PCMU by its rtpmap: the answer keeps the offer's number for it.
        assert!(a.contains("a=rtpmap:96 PCMU/8000\r\n"), "{a}");
        let r = negotiate(VIDEO, &[Codec::Pcmu]).unwrap();
        assert_eq!((r.codec, r.pt), (Codec::Pcmu, 96));
        assert_eq!(
            r.rtcp.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:4001")
        );
        assert_eq!(r.addr.to_string(), "127.0.0.1:4000", "the stream's own c=");
        // Our answer reads back with the crate that wrote it.
        assert_eq!(negotiate(&a, &[Codec::Pcma]).map(|r| r.pt), Some(8));
    }

    #[test]
    fn an_offer_with_nothing_in_common_names_the_codecs() {
        assert_eq!(
            answer(NOTHING, &us()).unwrap_err().to_string(),
            "no common codec: the offer has G729, opus, we accept PCMU, PCMA"
        );
        assert_eq!(
            answer("not sdp", &us()).unwrap_err(),
            SdpError::Invalid("SdpInvalidSyntax: not sdp".into())
        );
    }

    #[test]
    fn a_sendonly_offer_is_answered_recvonly() {
        let held = format!("{SIPP}a=sendonly\r\n");
        assert_eq!(
            direction(&answer(&held, &us()).unwrap()),
            Direction::RecvOnly
        );
        assert_eq!(
            direction(&answer(SIPP, &us()).unwrap()),
            Direction::SendRecv
        );
    }

    #[test]
    fn what_a_peer_sends_cannot_make_the_sdp_readers_panic() {
        // Every truncation of real SDP, each line doubled, and garbage: an error or a value.
        for sdp in [SIPP, BARESIP, VIDEO, NOTHING] {
            let doubled: String = sdp
                .lines()
                .flat_map(|l| [l, l])
                .map(|l| format!("{l}\r\n"))
                .collect();
            for text in (0..sdp.len()).map(|n| &sdp[..n]).chain([doubled.as_str()]) {
                let _ = answer(text, &us());
                let _ = negotiate(text, &[Codec::Pcmu, Codec::Opus]);
                let _ = (direction(text), codec_names(text), offered_direction(text));
                let _ = with_direction(text, Direction::SendOnly);
                let _ = reanswer(text, &answer(SIPP, &us()).unwrap(), &[Codec::Pcmu]);
            }
        }
        let _ = negotiate(
            "v=0\r\nm=audio 99999999999 RTP/AVP x\r\na=rtpmap:\r\n",
            &[Codec::Pcmu],
        );
    }
}

#[cfg(test)]
mod srtp_tests {
    use super::*;

    fn us(srtp: SrtpMode, key: u8) -> LocalMedia {
        LocalMedia {
            ip: "127.0.0.1".parse().unwrap(),
            rtp_port: 4000,
            codecs: vec![Codec::Pcmu],
            session_id: 3,
            srtp,
            key: [key; crate::srtp::KEY_LEN],
        }
    }

    #[test]
    fn a_required_offer_is_savp_with_both_suites_and_the_answer_takes_the_first() {
        let o = offer(&us(SrtpMode::Required, 1));
        assert!(o.contains("m=audio 4000 RTP/SAVP 0 101\r\n"), "{o}");
        assert!(
            o.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
            "{o}"
        );
        assert!(
            o.contains("a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:"),
            "{o}"
        );
        let a = answer(&o, &us(SrtpMode::Optional, 2)).unwrap();
        assert!(a.contains("m=audio 4000 RTP/SAVP 0 101\r\n"), "{a}");
        assert_eq!(a.matches("a=crypto:").count(), 1, "{a}");
        // Each side sends with its own key and receives with the other's.
        let offerer = srtp_keys(&o, &a).unwrap();
        let answerer = srtp_keys(&a, &o).unwrap();
        assert_eq!(offerer.suite, Suite::Aes128Sha1_80);
        assert_eq!(
            (offerer.local, offerer.remote),
            (answerer.remote, answerer.local)
        );
        assert_eq!(offerer.local, [1; crate::srtp::KEY_LEN]);
    }

    #[test]
    fn an_optional_offer_is_avp_with_keys_and_plain_rtp_answers_it_without() {
        let o = offer(&us(SrtpMode::Optional, 1));
        assert!(o.contains("m=audio 4000 RTP/AVP 0 101\r\n") && o.contains("a=crypto:1 "));
        let plain = answer(&o, &us(SrtpMode::Off, 2)).unwrap();
        assert!(!plain.contains("a=crypto"), "{plain}");
        assert_eq!(srtp_keys(&o, &plain), None);
        let keyed = answer(&o, &us(SrtpMode::Optional, 2)).unwrap();
        assert!(
            keyed.contains("RTP/AVP") && keyed.contains("a=crypto:1 "),
            "{keyed}"
        );
        assert!(srtp_keys(&o, &keyed).is_some());
    }

    #[test]
    fn mismatches_are_refused_saying_what_each_side_has() {
        let plain = offer(&us(SrtpMode::Off, 1));
        assert_eq!(
            answer(&plain, &us(SrtpMode::Required, 2))
                .unwrap_err()
                .to_string(),
            "SRTP is required here, and the offer has RTP/AVP without a=crypto"
        );
        let savp = offer(&us(SrtpMode::Required, 1));
        assert_eq!(
            answer(&savp, &us(SrtpMode::Off, 2)).unwrap_err(),
            SdpError::SrtpOffered
        );
        let gcm = savp
            .replace("AES_CM_128_HMAC_SHA1_80", "AEAD_AES_256_GCM")
            .replace("AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM");
        assert_eq!(
            answer(&gcm, &us(SrtpMode::Optional, 2))
                .unwrap_err()
                .to_string(),
            "the offer has RTP/SAVP with AEAD_AES_256_GCM, AEAD_AES_128_GCM only; we take AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32"
        );
    }
}

#[cfg(test)]
mod ptime_tests {
    use super::*;

    #[test]
    fn the_ptime_is_read_from_the_stream_else_the_session() {
        let sdp = |session: &str, media: &str| {
            format!(
                "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n{session}m=audio 5000 RTP/AVP 0\r\n{media}"
            )
        };
        let ptime = |s: &str| negotiate(s, &[Codec::Pcmu]).unwrap().ptime;
        assert_eq!(ptime(&sdp("", "a=ptime:30\r\n")), Some(30));
        assert_eq!(ptime(&sdp("a=ptime:40\r\n", "")), Some(40));
        assert_eq!(ptime(&sdp("a=ptime:40\r\n", "a=ptime:10\r\n")), Some(10));
        assert_eq!(ptime(&sdp("", "")), None);
        assert_eq!(ptime(&sdp("", "a=ptime:x\r\n")), None);
    }
}

#[cfg(test)]
mod l16_tests {
    use super::*;

    #[test]
    fn l16_is_ours_in_mono_at_16_khz_only() {
        let offer = |rtpmap: &str| {
            format!(
                "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 5000 RTP/AVP 96\r\na=rtpmap:96 {rtpmap}\r\n"
            )
        };
        let ours = [Codec::L16];
        for taken in ["L16/16000", "L16/16000/1", "l16/16000"] {
            let r = negotiate(&offer(taken), &ours).expect(taken);
            assert_eq!((r.codec, r.pt), (Codec::L16, 96), "{taken}");
        }
        for refused in ["L16/16000/2", "L16/8000", "L16/44100/1"] {
            assert!(negotiate(&offer(refused), &ours).is_none(), "{refused}");
        }
    }
}
