//! SRTP (RFC 3711) keyed in the SDP (SDES, RFC 4568): the `a=crypto` lines, and the contexts
//! that protect what a call sends and check what it receives (webrtc-rs's `webrtc-srtp`).
//!
//! Each side offers or answers its own master key; a call sends with its own and receives with
//! the peer's, under the suite the answer chose (the offer's tag).

use base64::Engine as _;
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

/// Whether an instance's calls use SRTP (`srtp:` of an instance).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SrtpMode {
    /// Plain RTP; an offer of RTP/SAVP is refused (488).
    #[default]
    Off,
    /// Offer SRTP keys on RTP/AVP (best effort, as baresip's `mediaenc=srtp`); take SRTP when
    /// the peer offers or answers it, plain RTP when it does not.
    Optional,
    /// RTP/SAVP with keys; an offer without SRTP is refused (488).
    Required,
}

impl SrtpMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Optional => "optional",
            Self::Required => "required",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Off, Self::Optional, Self::Required]
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// A crypto suite we take (RFC 4568 §6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    Aes128Sha1_80,
    Aes128Sha1_32,
}

impl Suite {
    /// In the order we offer them.
    pub const ALL: [Self; 2] = [Self::Aes128Sha1_80, Self::Aes128Sha1_32];

    pub fn name(self) -> &'static str {
        match self {
            Self::Aes128Sha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Self::Aes128Sha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    fn profile(self) -> ProtectionProfile {
        match self {
            Self::Aes128Sha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            Self::Aes128Sha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        }
    }
}

/// A master key (16 octets) and salt (14), as `inline:` carries them.
pub const KEY_LEN: usize = 30;

/// A fresh random master key and salt.
pub fn new_key() -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    rand::Rng::fill(&mut rand::rng(), &mut k[..]);
    k
}

/// One `a=crypto` line (RFC 4568 §9.1): `1 AES_CM_128_HMAC_SHA1_80 inline:<base64>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crypto {
    pub tag: u32,
    /// The suite, by name: one we may not take.
    pub suite: String,
    /// The master key and salt, when the line carries a well-formed one.
    pub key: Option<[u8; KEY_LEN]>,
}

impl Crypto {
    pub fn new(tag: u32, suite: Suite, key: [u8; KEY_LEN]) -> Self {
        Self {
            tag,
            suite: suite.name().to_owned(),
            key: Some(key),
        }
    }

    /// The attribute's value.
    pub fn value(&self) -> String {
        let key = self
            .key
            .map(|k| base64::engine::general_purpose::STANDARD.encode(k))
            .unwrap_or_default();
        format!("{} {} inline:{key}", self.tag, self.suite)
    }

    /// Reads an attribute's value; the key's lifetime and MKI (`|2^20|1:4`) are not used.
    pub fn parse(value: &str) -> Option<Self> {
        let mut f = value.split_whitespace();
        let tag = f.next()?.parse().ok()?;
        let suite = f.next()?.to_owned();
        let params = f.next()?;
        let inline = params.strip_prefix("inline:")?;
        let b64 = inline.split('|').next().unwrap_or_default();
        let key = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|k| <[u8; KEY_LEN]>::try_from(k.as_slice()).ok());
        Some(Self { tag, suite, key })
    }

    /// The suite, if we take it, with the key.
    pub fn usable(&self) -> Option<(Suite, [u8; KEY_LEN])> {
        Some((Suite::from_name(&self.suite)?, self.key?))
    }
}

/// The keys of one call: its own (to send) and the peer's (to receive), under one suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keys {
    pub suite: Suite,
    pub local: [u8; KEY_LEN],
    pub remote: [u8; KEY_LEN],
}

impl Keys {
    /// The contexts that protect what we send and check what we receive (RTP and RTCP alike).
    pub fn contexts(&self) -> Result<(Context, Context), String> {
        let ctx = |k: &[u8; KEY_LEN]| {
            Context::new(&k[..16], &k[16..], self.suite.profile(), None, None)
                .map_err(|e| format!("SRTP {}: {e}", self.suite.name()))
        };
        Ok((ctx(&self.local)?, ctx(&self.remote)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crypto_line_round_trips_and_a_foreign_one_is_read_but_not_usable() {
        let c = Crypto::new(1, Suite::Aes128Sha1_80, [7; KEY_LEN]);
        let v = c.value();
        assert!(v.starts_with("1 AES_CM_128_HMAC_SHA1_80 inline:"), "{v}");
        assert_eq!(Crypto::parse(&v), Some(c));
        // baresip's form, with lifetime and MKI.
        let b = Crypto::parse(&format!(
            "2 AES_CM_128_HMAC_SHA1_32 inline:{}|2^20|1:4",
            &v[33..]
        ))
        .unwrap();
        assert_eq!(b.usable(), Some((Suite::Aes128Sha1_32, [7; KEY_LEN])));
        let gcm = Crypto::parse("3 AEAD_AES_256_GCM inline:AAAA").unwrap();
        assert_eq!(gcm.usable(), None);
    }

    #[test]
    fn what_one_side_protects_the_other_reads_and_a_forgery_fails() {
        let (a, b) = (new_key(), new_key());
        let (mut a_tx, _) = Keys {
            suite: Suite::Aes128Sha1_32,
            local: a,
            remote: b,
        }
        .contexts()
        .unwrap();
        let (_, mut b_rx) = Keys {
            suite: Suite::Aes128Sha1_32,
            local: b,
            remote: a,
        }
        .contexts()
        .unwrap();
        let rtp = rtp_rs::RtpPacketBuilder::new()
            .payload_type(0)
            .ssrc(0x1234)
            .sequence(rtp_rs::Seq::from(7))
            .timestamp(160)
            .payload(&[0x55; 160])
            .build()
            .unwrap();
        let sent = a_tx.encrypt_rtp(&rtp).unwrap();
        assert_eq!(sent.len(), rtp.len() + 4, "a 32-bit tag");
        assert_ne!(&sent[12..172], &rtp[12..]);
        assert_eq!(&b_rx.decrypt_rtp(&sent).unwrap()[..], &rtp[..]);
        let mut forged = sent.to_vec();
        forged[20] ^= 1;
        assert!(b_rx.decrypt_rtp(&forged).is_err());
    }
}
