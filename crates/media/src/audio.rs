//! G.711 and the audio analysis callflow asserts with: tone generation, Goertzel detection and
//! per-party signatures (a tone pair each).

use crate::sdp::Codec;

/// G.711 runs at 8 kHz; a 20 ms packet holds 160 samples.
pub const RATE: u32 = 8000;
pub const FRAME: usize = 160;

/// One direction's encoder of a call: G.711 keeps no state; G.722 is adaptive (its state runs
/// from packet to packet), and takes 16 kHz audio: the call's 8 kHz audio is doubled in rate
/// (linear interpolation) on the way in; Opus codes the call's 8 kHz audio as it is (it runs at
/// 8 kHz inside; the RTP clock stays 48 kHz, RFC 7587).
pub enum Encoder {
    Pcmu,
    Pcma,
    G722 {
        enc: Box<audio_codec::g722::G722Encoder>,
        /// The last sample of the frame before (to interpolate across frames).
        last: i16,
    },
    Opus(Box<audio_codec::opus::OpusEncoder>),
}

impl Encoder {
    pub fn new(codec: Codec) -> Self {
        match codec {
            Codec::Pcmu => Self::Pcmu,
            Codec::Pcma => Self::Pcma,
            Codec::G722 => Self::G722 {
                enc: Box::default(),
                last: 0,
            },
            Codec::Opus => Self::Opus(Box::new(audio_codec::opus::OpusEncoder::new(RATE, 1))),
        }
    }

    pub fn codec(&self) -> Codec {
        match self {
            Self::Pcmu => Codec::Pcmu,
            Self::Pcma => Codec::Pcma,
            Self::G722 { .. } => Codec::G722,
            Self::Opus(_) => Codec::Opus,
        }
    }

    /// The payload of one frame of 8 kHz audio.
    pub fn encode(&mut self, pcm: &[i16]) -> Vec<u8> {
        match self {
            Self::Pcmu => pcm
                .iter()
                .map(|s| audio_codec_algorithms::encode_ulaw(*s))
                .collect(),
            Self::Pcma => pcm
                .iter()
                .map(|s| audio_codec_algorithms::encode_alaw(*s))
                .collect(),
            Self::G722 { enc, last } => {
                let mut wide = Vec::with_capacity(pcm.len() * 2);
                for &s in pcm {
                    wide.push(((i32::from(*last) + i32::from(s)) / 2) as i16);
                    wide.push(s);
                    *last = s;
                }
                audio_codec::Encoder::encode(enc.as_mut(), &wide)
            }
            Self::Opus(enc) => audio_codec::Encoder::encode(enc.as_mut(), pcm),
        }
    }
}

/// One direction's decoder of a call: the payload as 8 kHz audio (G.722's 16 kHz halved, each
/// pair of samples averaged: what the analysis and recordings read; Opus decoded straight to
/// 8 kHz mono, whatever the sender coded).
pub enum Decoder {
    Pcmu,
    Pcma,
    G722(Box<audio_codec::g722::G722Decoder>),
    Opus(Box<audio_codec::opus::OpusDecoder>),
}

impl Decoder {
    pub fn new(codec: Codec) -> Self {
        match codec {
            Codec::Pcmu => Self::Pcmu,
            Codec::Pcma => Self::Pcma,
            Codec::G722 => Self::G722(Box::default()),
            Codec::Opus => Self::Opus(Box::new(audio_codec::opus::OpusDecoder::new(RATE, 1))),
        }
    }

    pub fn codec(&self) -> Codec {
        match self {
            Self::Pcmu => Codec::Pcmu,
            Self::Pcma => Codec::Pcma,
            Self::G722(_) => Codec::G722,
            Self::Opus(_) => Codec::Opus,
        }
    }

    pub fn decode(&mut self, payload: &[u8]) -> Vec<i16> {
        match self {
            Self::Pcmu => payload
                .iter()
                .map(|b| audio_codec_algorithms::decode_ulaw(*b))
                .collect(),
            Self::Pcma => payload
                .iter()
                .map(|b| audio_codec_algorithms::decode_alaw(*b))
                .collect(),
            Self::G722(dec) => audio_codec::Decoder::decode(dec.as_mut(), payload)
                .chunks(2)
                .map(|p| ((p.iter().map(|s| i32::from(*s)).sum::<i32>()) / p.len() as i32) as i16)
                .collect(),
            Self::Opus(dec) => audio_codec::Decoder::decode(dec.as_mut(), payload),
        }
    }
}

/// One frame encoded with a fresh encoder.
pub fn encode(codec: Codec, pcm: &[i16]) -> Vec<u8> {
    Encoder::new(codec).encode(pcm)
}

/// One payload decoded with a fresh decoder.
pub fn decode(codec: Codec, payload: &[u8]) -> Vec<i16> {
    Decoder::new(codec).decode(payload)
}

/// `ms` milliseconds of the sum of `freqs` (Hz), at a level well below clipping.
pub fn tone(freqs: &[f64], ms: u32) -> Vec<i16> {
    let n = (RATE * ms / 1000) as usize;
    let amp = 12000.0 / freqs.len().max(1) as f64;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(RATE);
            let v: f64 = freqs
                .iter()
                .map(|f| (2.0 * std::f64::consts::PI * f * t).sin())
                .sum();
            (v * amp) as i16
        })
        .collect()
}

/// The share of the window's energy at `freq` (0 to about 1), by the Goertzel algorithm.
pub fn tone_share(samples: &[i16], freq: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let n = samples.len() as f64;
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(RATE);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut energy = 0.0f64;
    for &x in samples {
        let x = f64::from(x);
        energy += x * x;
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    if energy <= f64::EPSILON {
        return 0.0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    // A pure sine of any amplitude gives power = energy * n / 2.
    (2.0 * power / (n * energy)).min(1.0)
}

/// Whether `freq` is clearly present: at least a fifth of the window's energy.
pub fn tone_present(samples: &[i16], freq: f64) -> bool {
    tone_share(samples, freq) > 0.2
}

/// The mean level of a window, in dBFS (silence is about -90).
pub fn level_dbfs(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return -90.0;
    }
    let rms =
        (samples.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt();
    20.0 * (rms.max(1.0) / 32768.0).log10()
}

/// Tone pairs well apart from each other and from the DTMF grid, one per party.
const SIGNATURES: &[[f64; 2]] = &[
    [440.0, 1060.0],
    [520.0, 1840.0],
    [600.0, 1120.0],
    [680.0, 1900.0],
    [1000.0, 1960.0],
    [560.0, 2200.0],
    [640.0, 2300.0],
    [1500.0, 2400.0],
];

/// The signature (a tone pair) of the party with this index.
pub fn signature(index: usize) -> [f64; 2] {
    SIGNATURES[index % SIGNATURES.len()]
}

/// How strongly a window carries `sig`: the weaker of its two tones' shares.
pub fn signature_share(samples: &[i16], sig: [f64; 2]) -> f64 {
    tone_share(samples, sig[0]).min(tone_share(samples, sig[1]))
}

/// Which of `candidates` (party index, signature) the window carries, if any.
pub fn which_signature(samples: &[i16], candidates: &[(usize, [f64; 2])]) -> Option<usize> {
    candidates
        .iter()
        .map(|(i, sig)| (*i, signature_share(samples, *sig)))
        .filter(|(_, share)| *share > 0.15)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_round_trip_keeps_a_tone_detectable() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let t = tone(&[1000.0], 200);
            let back = decode(codec, &encode(codec, &t));
            assert!(tone_present(&back, 1000.0), "{codec:?}");
            assert!(!tone_present(&back, 1400.0));
        }
    }

    #[test]
    fn signatures_are_told_apart() {
        let cands: Vec<(usize, [f64; 2])> = (0..4).map(|i| (i, signature(i))).collect();
        for i in 0..4 {
            let s = decode(Codec::Pcmu, &encode(Codec::Pcmu, &tone(&signature(i), 100)));
            assert_eq!(which_signature(&s, &cands), Some(i), "party {i}");
        }
        assert_eq!(which_signature(&vec![0i16; 800], &cands), None);
        assert!(level_dbfs(&vec![0i16; 160]) < -80.0);
    }
}

#[cfg(test)]
mod codec_tests {
    use super::*;

    #[test]
    fn g722_carries_a_tone_across_frames_at_8_khz() {
        let tone = tone(&[1000.0], 400);
        let (mut enc, mut dec) = (Encoder::new(Codec::G722), Decoder::new(Codec::G722));
        let mut heard = Vec::new();
        for frame in tone.chunks(FRAME) {
            let payload = enc.encode(frame);
            assert_eq!(payload.len(), 160, "64 kbit/s: 160 bytes per 20 ms");
            heard.extend(dec.decode(&payload));
        }
        assert_eq!(heard.len(), tone.len());
        // After the codec's start-up (its filters settle), the tone comes through.
        assert!(tone_present(&heard[1600..2400], 1000.0));
        assert!(!tone_present(&heard[1600..2400], 1500.0));
    }

    #[test]
    fn opus_carries_a_tone_at_8_khz() {
        let tone = tone(&[1000.0], 400);
        let (mut enc, mut dec) = (Encoder::new(Codec::Opus), Decoder::new(Codec::Opus));
        let mut heard = Vec::new();
        for frame in tone.chunks(FRAME) {
            let payload = enc.encode(frame);
            assert!(
                !payload.is_empty() && payload.len() < 160,
                "{} bytes",
                payload.len()
            );
            heard.extend(dec.decode(&payload));
        }
        assert_eq!(heard.len(), tone.len());
        assert!(tone_present(&heard[1600..2400], 1000.0));
        assert!(!tone_present(&heard[1600..2400], 1500.0));
    }
}
