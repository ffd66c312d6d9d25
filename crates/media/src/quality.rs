//! How good a call sounds, from what its receiver measured: the ITU-T G.107 E-model's
//! transmission rating R and the MOS it maps to (G.107 Annex B), the way voip_patrol and RTCP XR
//! (RFC 3611 §4.7.5) report MOS-LQ and MOS-CQ. Pure arithmetic, no IO.
//!
//! - R = R0 - Is - Id - Ie,eff + A, with G.107's default values for everything not measured:
//!   R0 - Is = 93.2, A = 0 (a wired call).
//! - Ie,eff = Ie + (95 - Ie) x Ppl / (Ppl / BurstR + Bpl) (G.107 §7.4): the codec's impairment
//!   `Ie` and robustness to loss `Bpl` (G.113 Appendix I), the loss `Ppl` in percent, random
//!   loss (BurstR = 1).
//! - Id, the delay impairment, from the one-way delay Ta in ms (the simplified form of G.107's
//!   Idd, Cole and Rosenbluth 2001): 0.024 Ta + 0.11 (Ta - 177.3) when Ta > 177.3. Ta is half the
//!   round-trip time when one is known (RTCP), plus the packet time and a jitter buffer of twice
//!   the interarrival jitter.
//! - MOS-LQ (listening quality) leaves delay out; MOS-CQ (conversational quality) takes it in.

use crate::sdp::Codec;

/// What a codec brings to the E-model (G.113 Appendix I).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Impairment {
    /// The equipment impairment factor with no loss.
    pub ie: f64,
    /// How robust the codec is to random packet loss (with packet loss concealment).
    pub bpl: f64,
}

/// Each codec's factors, as voip_patrol rates them:
/// - G.711 (either law) with packet loss concealment: Ie 0, Bpl 25.1 (G.113 Appendix I,
///   Table I.3).
/// - G.722: G.711's. The narrowband E-model has no factor for a wideband codec: G.113's
///   values for lossy coders would rate it below G.711 on a clean call, the opposite of what is
///   heard (the wideband E-model, G.107.1, has a scale of its own).
/// - L16 (uncompressed): G.711's, the fallback voip_patrol takes for a codec it does not list.
/// - Opus: Ie 0 like G.722, and Bpl 28, a little more robust to loss than G.711 for its
///   concealment (more with in-band FEC, which is not assumed).
pub fn impairment(codec: Codec) -> Impairment {
    match codec {
        Codec::Pcmu | Codec::Pcma | Codec::G722 | Codec::L16 => Impairment { ie: 0.0, bpl: 25.1 },
        Codec::Opus => Impairment { ie: 0.0, bpl: 28.0 },
    }
}

/// The E-model's verdict on a call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quality {
    /// The transmission rating R (0 to 100) with delay taken in.
    pub r_factor: f64,
    /// Listening quality (no delay): 1 to 4.5.
    pub mos_lq: f64,
    /// Conversational quality (delay taken in): 1 to 4.5.
    pub mos_cq: f64,
}

/// What a receiver measured on a call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measured {
    pub codec: Codec,
    /// Packets lost, in percent of those expected.
    pub loss_percent: f64,
    /// Interarrival jitter (RFC 3550 A.8), ms.
    pub jitter_ms: f64,
    /// The round-trip time, when RTCP measured one, ms.
    pub rtt_ms: Option<f64>,
    /// The packet time, ms.
    pub ptime_ms: f64,
}

/// G.107's default R0 - Is: the rating of a call with no impairment but the codec's.
const R_BASE: f64 = 93.2;

/// The MOS a rating R maps to (G.107 Annex B): 1 below 0, 4.5 above 100.
pub fn mos_of(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }
}

/// The effective equipment impairment at `loss_percent` random loss (G.107 §7.4).
pub fn ie_eff(i: Impairment, loss_percent: f64) -> f64 {
    let ppl = loss_percent.clamp(0.0, 100.0);
    i.ie + (95.0 - i.ie) * ppl / (ppl + i.bpl)
}

/// The delay impairment of a one-way delay of `ta_ms`.
pub fn id(ta_ms: f64) -> f64 {
    let ta = ta_ms.max(0.0);
    0.024 * ta + if ta > 177.3 { 0.11 * (ta - 177.3) } else { 0.0 }
}

/// The E-model's verdict on what a receiver measured.
pub fn quality(m: &Measured) -> Quality {
    let listening = R_BASE - ie_eff(impairment(m.codec), m.loss_percent);
    let one_way = m.rtt_ms.unwrap_or(0.0) / 2.0 + m.ptime_ms + 2.0 * m.jitter_ms.max(0.0);
    let conversational = listening - id(one_way);
    Quality {
        r_factor: conversational.clamp(0.0, 100.0),
        mos_lq: mos_of(listening),
        mos_cq: mos_of(conversational),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(loss_percent: f64, jitter_ms: f64, rtt_ms: Option<f64>) -> Measured {
        Measured {
            codec: Codec::Pcmu,
            loss_percent,
            jitter_ms,
            rtt_ms,
            ptime_ms: 20.0,
        }
    }

    fn round(x: f64) -> f64 {
        (x * 100.0).round() / 100.0
    }

    #[test]
    fn opus_loses_less_to_loss_than_g711_and_g722_rates_as_g711() {
        let at = |codec, loss| {
            quality(&Measured {
                codec,
                ..measured(loss, 1.0, None)
            })
            .mos_lq
        };
        assert_eq!(at(Codec::G722, 0.0), at(Codec::Pcmu, 0.0));
        assert_eq!(at(Codec::Opus, 0.0), at(Codec::Pcmu, 0.0));
        assert!(at(Codec::Opus, 5.0) > at(Codec::Pcmu, 5.0));
        assert_eq!(at(Codec::G722, 5.0), at(Codec::Pcmu, 5.0));
    }

    #[test]
    fn a_clean_g711_call_rates_4_41() {
        let q = quality(&measured(0.0, 0.0, None));
        assert_eq!(round(q.mos_lq), 4.41);
        // 20 ms of packet time costs almost nothing: R 93.2 - 0.48.
        assert_eq!(round(q.r_factor), 92.72);
        assert_eq!(round(q.mos_cq), 4.40);
    }

    #[test]
    fn loss_lowers_the_mos_as_g107_says() {
        // Ie,eff = 95 Ppl / (Ppl + 25.1).
        for (loss, r, mos) in [
            (1.0, 89.56, 4.33),
            (2.0, 86.19, 4.23),
            (5.0, 77.42, 3.92),
            (10.0, 66.13, 3.41),
            (20.0, 51.07, 2.63),
        ] {
            let q = quality(&measured(loss, 0.0, None));
            let listening = R_BASE - ie_eff(impairment(Codec::Pcmu), loss);
            assert_eq!(round(listening), r, "{loss} %");
            assert_eq!(round(q.mos_lq), mos, "{loss} %");
        }
        assert_eq!(mos_of(-3.0), 1.0);
        assert_eq!(mos_of(120.0), 4.5);
    }

    #[test]
    fn delay_counts_for_conversation_only() {
        let near = quality(&measured(0.0, 1.0, Some(20.0)));
        let far = quality(&measured(0.0, 20.0, Some(400.0)));
        assert_eq!(
            near.mos_lq, far.mos_lq,
            "listening quality leaves delay out"
        );
        // Ta = 200 + 20 + 40 = 260 ms: Id = 6.24 + 9.1 = 15.34.
        assert_eq!(round(id(260.0)), 15.34);
        assert_eq!(round(far.r_factor), round(93.2 - 15.34));
        assert!(far.mos_cq < near.mos_cq);
    }
}
