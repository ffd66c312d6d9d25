//! G.711 and the audio analysis callflow asserts with: tone generation, Goertzel detection and
//! per-party signatures (a tone pair each).

use crate::sdp::Codec;

/// The rate the analysis works at (tones, signatures, levels) and what a scenario's audio is
/// made at: narrowband, 8 kHz. A call's own audio runs at its codec's rate
/// ([`Codec::audio_rate`]): 16 kHz for G.722 and Opus.
pub const RATE: u32 = 8000;
/// A 20 ms frame at [`RATE`].
pub const FRAME: usize = 160;

/// One direction's encoder of a call, fed frames at the codec's audio rate
/// ([`Codec::audio_rate`]): G.711 keeps no state; G.722 is adaptive (its state runs from
/// packet to packet); Opus codes 16 kHz audio (the RTP clock stays 48 kHz, RFC 7587).
pub enum Encoder {
    Pcmu,
    Pcma,
    L16,
    G722(Box<audio_codec::g722::G722Encoder>),
    Opus(Box<audio_codec::opus::OpusEncoder>),
}

impl Encoder {
    pub fn new(codec: Codec) -> Self {
        match codec {
            Codec::Pcmu => Self::Pcmu,
            Codec::Pcma => Self::Pcma,
            Codec::L16 => Self::L16,
            Codec::G722 => Self::G722(Box::default()),
            Codec::Opus => Self::Opus(Box::new(audio_codec::opus::OpusEncoder::new(
                codec.audio_rate(),
                1,
            ))),
        }
    }

    pub fn codec(&self) -> Codec {
        match self {
            Self::Pcmu => Codec::Pcmu,
            Self::Pcma => Codec::Pcma,
            Self::L16 => Codec::L16,
            Self::G722(_) => Codec::G722,
            Self::Opus(_) => Codec::Opus,
        }
    }

    /// The payload of one frame of audio at the codec's rate.
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
            Self::L16 => pcm.iter().flat_map(|s| s.to_be_bytes()).collect(),
            Self::G722(enc) => audio_codec::Encoder::encode(enc.as_mut(), pcm),
            Self::Opus(enc) => audio_codec::Encoder::encode(enc.as_mut(), pcm),
        }
    }
}

/// One direction's decoder of a call: the payload as audio at the codec's rate (G.722's
/// 16 kHz; Opus decoded to 16 kHz mono, whatever the sender coded).
pub enum Decoder {
    Pcmu,
    Pcma,
    L16,
    G722(Box<audio_codec::g722::G722Decoder>),
    Opus(Box<audio_codec::opus::OpusDecoder>),
}

impl Decoder {
    pub fn new(codec: Codec) -> Self {
        match codec {
            Codec::Pcmu => Self::Pcmu,
            Codec::Pcma => Self::Pcma,
            Codec::L16 => Self::L16,
            Codec::G722 => Self::G722(Box::default()),
            Codec::Opus => Self::Opus(Box::new(audio_codec::opus::OpusDecoder::new(
                codec.audio_rate(),
                1,
            ))),
        }
    }

    pub fn codec(&self) -> Codec {
        match self {
            Self::Pcmu => Codec::Pcmu,
            Self::Pcma => Codec::Pcma,
            Self::L16 => Codec::L16,
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
            Self::L16 => payload
                .chunks_exact(2)
                .map(|b| i16::from_be_bytes([b[0], b[1]]))
                .collect(),
            Self::G722(dec) => audio_codec::Decoder::decode(dec.as_mut(), payload),
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

/// Audio at `from` Hz brought to `to` Hz by linear interpolation: what a call's audio and a
/// scenario's 8 kHz audio need between them (8 and 16 kHz; any two rates work). Rates whose
/// ratio is whole downsample by averaging each group, which also keeps what lies above the
/// new Nyquist frequency from folding back much.
pub fn convert(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || samples.is_empty() || from == 0 || to == 0 {
        return samples.to_vec();
    }
    if from.is_multiple_of(to) {
        let k = (from / to) as usize;
        return samples
            .chunks(k)
            .map(|g| (g.iter().map(|s| i32::from(*s)).sum::<i32>() / g.len() as i32) as i16)
            .collect();
    }
    let n = (samples.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    let step = f64::from(from) / f64::from(to);
    (0..n)
        .map(|i| {
            let x = i as f64 * step;
            let j = x.floor() as usize;
            let a = f64::from(samples[j.min(samples.len() - 1)]);
            let b = f64::from(samples[(j + 1).min(samples.len() - 1)]);
            (a + (b - a) * (x - j as f64)) as i16
        })
        .collect()
}

/// `ms` milliseconds of the sum of `freqs` (Hz), at a level well below clipping.
pub fn tone(freqs: &[f64], ms: u32) -> Vec<i16> {
    tone_at(freqs, ms, RATE)
}

/// [`tone`] at `rate` Hz.
pub fn tone_at(freqs: &[f64], ms: u32, rate: u32) -> Vec<i16> {
    let n = (rate * ms / 1000) as usize;
    let amp = 12000.0 / freqs.len().max(1) as f64;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
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
    tone_share_at(samples, freq, RATE)
}

/// [`tone_share`] of audio at `rate` Hz.
pub fn tone_share_at(samples: &[i16], freq: f64, rate: u32) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let n = samples.len() as f64;
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
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

    /// A tone through one direction of a call in `codec`, frame by frame at its audio rate.
    fn through(codec: Codec, freq: f64) -> (Vec<i16>, Vec<usize>) {
        let rate = codec.audio_rate();
        let tone = tone_at(&[freq], 400, rate);
        let (mut enc, mut dec) = (Encoder::new(codec), Decoder::new(codec));
        let mut heard = Vec::new();
        let mut sizes = Vec::new();
        for frame in tone.chunks(rate as usize / 50) {
            let payload = enc.encode(frame);
            sizes.push(payload.len());
            heard.extend(dec.decode(&payload));
        }
        assert_eq!(heard.len(), tone.len());
        (heard, sizes)
    }

    #[test]
    fn g722_carries_a_wideband_tone_across_frames_at_16_khz() {
        for freq in [1000.0, 6000.0] {
            let (heard, sizes) = through(Codec::G722, freq);
            assert!(
                sizes.iter().all(|n| *n == 160),
                "64 kbit/s: 160 bytes per 20 ms"
            );
            // After the codec's start-up (its filters settle), the tone comes through: 6 kHz
            // too, which 8 kHz audio cannot carry.
            let window = &heard[3200..4800];
            assert!(tone_share_at(window, freq, 16_000) > 0.2, "{freq} Hz");
            assert!(tone_share_at(window, 1500.0, 16_000) < 0.2);
        }
    }

    #[test]
    fn opus_carries_a_wideband_tone_at_16_khz() {
        for freq in [1000.0, 6000.0] {
            let (heard, sizes) = through(Codec::Opus, freq);
            assert!(sizes.iter().all(|n| *n > 0 && *n < 320), "{sizes:?}");
            let window = &heard[3200..4800];
            assert!(tone_share_at(window, freq, 16_000) > 0.2, "{freq} Hz");
            assert!(tone_share_at(window, 1500.0, 16_000) < 0.2);
        }
    }

    #[test]
    fn audio_goes_between_rates() {
        let narrow = tone(&[1000.0], 100);
        let wide = convert(&narrow, 8_000, 16_000);
        assert_eq!(wide.len(), 2 * narrow.len());
        assert!(tone_share_at(&wide, 1000.0, 16_000) > 0.9);
        let back = convert(&wide, 16_000, 8_000);
        assert_eq!(back.len(), narrow.len());
        assert!(tone_share(&back, 1000.0) > 0.9);
        assert_eq!(convert(&narrow, 8_000, 8_000), narrow);
    }
}
