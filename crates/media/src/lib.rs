//! Media for callflow: SDP offer/answer, RTP with G.711 and RFC 4733 DTMF, WAV playback and
//! recording, and the audio analysis the media assertions use (tones, per-party signatures).
//!
//! Sans-IO where it can be: [`sdp`], [`audio`], [`dtmf`] and [`wav`] are pure; [`rtp`] owns a
//! socket and two tasks per call.

pub mod audio;
pub mod control;
pub mod dtmf;
pub mod file;
pub mod quality;
pub mod rtp;
pub mod sdp;
pub mod srtp;
pub mod wav;
