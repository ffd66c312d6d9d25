//! Media for callflow. For now: the SDP offer/answer for G.711 audio with telephone-event.
//! (RTP, DTMF and WAV arrive with the media issue.)

pub mod sdp;
