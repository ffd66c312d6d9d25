//! SDP offer/answer for one audio stream (RFC 3264), PCMU/PCMA plus telephone-event.

use std::net::IpAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Pcmu,
    Pcma,
}

impl Codec {
    pub fn payload_type(self) -> u8 {
        match self {
            Self::Pcmu => 0,
            Self::Pcma => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Pcmu => "PCMU",
            Self::Pcma => "PCMA",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "PCMU" => Some(Self::Pcmu),
            "PCMA" => Some(Self::Pcma),
            _ => None,
        }
    }

    fn from_pt(pt: u8) -> Option<Self> {
        match pt {
            0 => Some(Self::Pcmu),
            8 => Some(Self::Pcma),
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
}

/// What we put in our SDP.
#[derive(Clone, Debug)]
pub struct LocalMedia {
    pub ip: IpAddr,
    pub rtp_port: u16,
    pub codecs: Vec<Codec>,
    pub session_id: u64,
}

fn render(m: &LocalMedia, codecs: &[Codec], dtmf_pt: Option<u8>) -> String {
    let (net, ip) = match m.ip {
        IpAddr::V4(ip) => ("IP4", ip.to_string()),
        IpAddr::V6(ip) => ("IP6", ip.to_string()),
    };
    let mut fmts: Vec<String> = codecs
        .iter()
        .map(|c| c.payload_type().to_string())
        .collect();
    fmts.extend(dtmf_pt.map(|p| p.to_string()));
    let mut s = format!(
        "v=0\r\no=callflow {id} {id} IN {net} {ip}\r\ns=callflow\r\nc=IN {net} {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {fmts}\r\n",
        id = m.session_id,
        port = m.rtp_port,
        fmts = fmts.join(" ")
    );
    for c in codecs {
        s.push_str(&format!(
            "a=rtpmap:{} {}/8000\r\n",
            c.payload_type(),
            c.name()
        ));
    }
    if let Some(pt) = dtmf_pt {
        s.push_str(&format!(
            "a=rtpmap:{pt} telephone-event/8000\r\na=fmtp:{pt} 0-16\r\n"
        ));
    }
    s.push_str("a=ptime:20\r\na=sendrecv\r\n");
    s
}

/// The payload type an SDP maps to telephone-event, if any.
fn telephone_event_pt(sdp: &str) -> Option<u8> {
    sdp.lines().find_map(|l| {
        let (pt, enc) = l.strip_prefix("a=rtpmap:")?.split_once(' ')?;
        enc.to_ascii_lowercase()
            .starts_with("telephone-event/")
            .then(|| pt.trim().parse().ok())
            .flatten()
    })
}

/// The encoding name an `a=rtpmap` line of `sdp` gives payload type `pt` (`PCMU` of
/// `a=rtpmap:0 PCMU/8000`), if one does.
fn rtpmap_name<'a>(sdp: &'a str, pt: &str) -> Option<&'a str> {
    sdp.lines().find_map(|l| {
        let (p, enc) = l.strip_prefix("a=rtpmap:")?.split_once(' ')?;
        (p.trim() == pt).then(|| enc.split('/').next().unwrap_or(enc).trim())
    })
}

/// What a payload type of `sdp` is called: its rtpmap's encoding name, else the static name RFC
/// 3551 gives it, else `payload type N`.
fn codec_name(sdp: &str, pt: u8) -> String {
    if let Some(name) = rtpmap_name(sdp, &pt.to_string()).filter(|n| !n.is_empty()) {
        return name.to_owned();
    }
    let name = match pt {
        0 => "PCMU",
        3 => "GSM",
        4 => "G723",
        8 => "PCMA",
        9 => "G722",
        18 => "G729",
        _ => return format!("payload type {pt}"),
    };
    name.to_owned()
}

/// Our offer: the codecs in our order, then telephone-event.
pub fn offer(m: &LocalMedia) -> String {
    render(m, &m.codecs, Some(TELEPHONE_EVENT_PT))
}

/// Our answer to `offer_sdp`: the offered codecs we support, in the offer's order (RFC 3264 §6.1),
/// and telephone-event with the offerer's payload type if it offered it.
pub fn answer(offer_sdp: &str, m: &LocalMedia) -> Result<String, SdpError> {
    let mline = offer_sdp
        .lines()
        .find(|l| l.starts_with("m=audio "))
        .ok_or(SdpError::NoAudio)?;
    let pts: Vec<u8> = mline
        .split_whitespace()
        .skip(3)
        .filter_map(|p| p.parse().ok())
        .collect();
    let dtmf_pt = telephone_event_pt(offer_sdp);
    let common: Vec<Codec> = pts
        .iter()
        .filter_map(|pt| Codec::from_pt(*pt))
        .filter(|c| m.codecs.contains(c))
        .collect();
    if common.is_empty() {
        return Err(SdpError::NoCommonCodec {
            offered: pts
                .iter()
                .filter(|pt| Some(**pt) != dtmf_pt)
                .map(|pt| codec_name(offer_sdp, *pt))
                .collect(),
            ours: m.codecs.iter().map(|c| c.name().to_owned()).collect(),
        });
    }
    Ok(render(m, &common, dtmf_pt.filter(|pt| pts.contains(pt))))
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
            "v=0\r\nm=audio 1 RTP/AVP 18 96 101\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n",
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

/// The direction of the (first) audio stream, else of the session, else `sendrecv`.
pub fn direction(sdp: &str) -> Direction {
    let mut session = None;
    let mut in_audio = false;
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            if in_audio {
                break;
            }
            in_audio = m.starts_with("audio");
            continue;
        }
        if let Some(d) = line.strip_prefix("a=").and_then(Direction::parse) {
            if in_audio {
                return d;
            }
            session = Some(d);
        }
    }
    session.unwrap_or(Direction::SendRecv)
}

/// The codec names the audio stream lists (from its rtpmaps and static payload types), in order.
pub fn codec_names(sdp: &str) -> Vec<String> {
    let Some(mline) = sdp.lines().find(|l| l.starts_with("m=audio ")) else {
        return Vec::new();
    };
    mline
        .split_whitespace()
        .skip(3)
        .map(|pt| {
            rtpmap_name(sdp, pt)
                .map(str::to_owned)
                .unwrap_or_else(|| match pt {
                    "0" => "PCMU".to_owned(),
                    "8" => "PCMA".to_owned(),
                    other => other.to_owned(),
                })
        })
        .collect()
}

/// `sdp` with its direction set to `dir` and its `o=` version incremented (a new offer or
/// answer in the same session, RFC 3264 §8).
pub fn with_direction(sdp: &str, dir: Direction) -> String {
    let mut out = String::with_capacity(sdp.len() + 16);
    for line in sdp.lines() {
        if line.strip_prefix("a=").and_then(Direction::parse).is_some() {
            continue;
        }
        if let Some(o) = line.strip_prefix("o=") {
            let mut f: Vec<String> = o.split_whitespace().map(str::to_owned).collect();
            if let Some(v) = f
                .get_mut(2)
                .and_then(|v| v.parse::<u64>().ok().map(|n| (n + 1).to_string()))
            {
                f[2] = v;
            }
            out.push_str(&format!("o={}\r\n", f.join(" ")));
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!("a={}\r\n", dir.as_str()));
    out
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
            direction("v=0\r\na=inactive\r\nm=audio 1 RTP/AVP 0\r\n"),
            Direction::Inactive
        );
    }
}

/// Where and how to send media to a peer, from its SDP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteMedia {
    pub addr: std::net::SocketAddr,
    pub codec: Codec,
    pub pt: u8,
    pub dtmf_pt: Option<u8>,
}

/// The audio stream's address (its own `c=`, else the session's), port and payload types.
fn audio_of(sdp: &str) -> Option<(IpAddr, u16, Vec<u8>)> {
    let mut conn: Option<IpAddr> = None;
    let mut port = None;
    let mut pts: Vec<u8> = Vec::new();
    let mut in_audio = false;
    let mut media_conn = None;
    for line in sdp.lines() {
        if let Some(c) = line.strip_prefix("c=") {
            let ip = c
                .split_whitespace()
                .nth(2)
                .and_then(|a| a.split('/').next())
                .and_then(|a| a.parse().ok());
            if in_audio { media_conn = ip } else { conn = ip }
        } else if let Some(m) = line.strip_prefix("m=") {
            if in_audio {
                break;
            }
            let mut f = m.split_whitespace();
            if f.next() == Some("audio") {
                in_audio = true;
                port = f.next().and_then(|p| p.parse::<u16>().ok());
                pts = f.skip(1).filter_map(|p| p.parse().ok()).collect();
            }
        }
    }
    Some((media_conn.or(conn)?, port?, pts))
}

/// The peer's audio address and the first of its formats we also have.
pub fn negotiate(remote_sdp: &str, ours: &[Codec]) -> Option<RemoteMedia> {
    let (ip, port, pts) = audio_of(remote_sdp)?;
    let port = Some(port).filter(|p| *p != 0)?;
    let dtmf_pt = telephone_event_pt(remote_sdp);
    let (pt, codec) = pts.iter().find_map(|pt| {
        Codec::from_pt(*pt)
            .filter(|c| ours.contains(c))
            .map(|c| (*pt, c))
    })?;
    Some(RemoteMedia {
        addr: std::net::SocketAddr::new(ip, port),
        codec,
        pt,
        dtmf_pt,
    })
}

/// The direction an offer asks for, counting the old way of holding (RFC 2543, RFC 3264 §8.4):
/// a connection address of `0.0.0.0` in an offer that names no direction is a hold.
pub fn offered_direction(offer: &str) -> Direction {
    let dir = direction(offer);
    let on_hold = audio_of(offer).is_some_and(|(ip, ..)| ip.is_unspecified());
    if dir == Direction::SendRecv && on_hold {
        Direction::SendOnly
    } else {
        dir
    }
}

/// The `o=` line's session id and version.
fn origin(sdp: &str) -> Option<(u64, u64)> {
    let o = sdp.lines().find_map(|l| l.strip_prefix("o="))?;
    let mut f = o.split_whitespace().skip(1);
    Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
}

/// `sdp` with the version of its `o=` line set to `version`.
fn with_version(sdp: &str, version: u64) -> String {
    sdp.lines()
        .map(|line| match line.strip_prefix("o=") {
            Some(o) => {
                let mut f: Vec<String> = o.split_whitespace().map(str::to_owned).collect();
                if let Some(v) = f.get_mut(2) {
                    *v = version.to_string();
                }
                format!("o={}\r\n", f.join(" "))
            }
            None => format!("{line}\r\n"),
        })
        .collect()
}

/// Our answer to a new offer in a running session (a re-INVITE or UPDATE, RFC 3264 §8): the
/// codecs of `codecs` the offer lists, in its order, on the address and port of our SDP so far
/// (`ours`), in the direction that answers the offer's, with the version of `ours` bumped. When
/// nothing changed (a session refresh), `ours` as it was.
pub fn reanswer(offer: &str, ours: &str, codecs: &[Codec]) -> Result<String, SdpError> {
    let (ip, rtp_port, _) = audio_of(ours).ok_or(SdpError::NoAudio)?;
    let (session_id, version) = origin(ours).unwrap_or((1, 1));
    let local = LocalMedia {
        ip,
        rtp_port,
        codecs: codecs.to_vec(),
        session_id,
    };
    let fresh = with_version(&answer(offer, &local)?, version);
    let fresh = with_direction(&fresh, offered_direction(offer).answer());
    let body = |s: &str| -> String { s.lines().filter(|l| !l.starts_with("o=")).collect() };
    if body(&fresh) == body(ours) {
        Ok(ours.to_owned())
    } else {
        Ok(fresh)
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
        })
    }

    #[test]
    fn a_pcma_only_reoffer_is_answered_pcma_on_our_port_with_the_version_bumped() {
        let reoffer =
            "v=0\r\no=- 1 2 IN IP4 127.0.0.2\r\nc=IN IP4 127.0.0.2\r\nm=audio 5000 RTP/AVP 8\r\n";
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
        let first = "v=0\r\nc=IN IP4 127.0.0.2\r\nm=audio 5000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n";
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
                "v=0\r\nc=IN IP4 127.0.0.2\r\nm=audio 5000 RTP/AVP 18\r\n",
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
        let sdp = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4002 RTP/AVP 18 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        let r = negotiate(sdp, &[Codec::Pcmu, Codec::Pcma]).unwrap();
        assert_eq!(
            (r.addr.to_string().as_str(), r.codec, r.pt, r.dtmf_pt),
            ("127.0.0.1:4002", Codec::Pcma, 8, Some(101))
        );
        assert_eq!(negotiate(sdp, &[]), None);
        assert_eq!(
            negotiate(
                "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 0 RTP/AVP 0\r\n",
                &[Codec::Pcmu]
            ),
            None
        );
    }
}
