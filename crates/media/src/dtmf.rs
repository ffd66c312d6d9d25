//! RFC 4733 telephone-events: the 4-byte payload and the digit mapping.

/// The event code of a DTMF digit (0-9, *, #, A-D).
pub fn event_of(digit: char) -> Option<u8> {
    Some(match digit.to_ascii_uppercase() {
        d @ '0'..='9' => d as u8 - b'0',
        '*' => 10,
        '#' => 11,
        d @ 'A'..='D' => d as u8 - b'A' + 12,
        _ => return None,
    })
}

pub fn digit_of(event: u8) -> Option<char> {
    Some(match event {
        0..=9 => (b'0' + event) as char,
        10 => '*',
        11 => '#',
        12..=15 => (b'A' + event - 12) as char,
        _ => return None,
    })
}

/// The payload: event, E bit and volume (-dBm0, 0-63), duration in timestamp units.
pub fn encode(event: u8, end: bool, volume: u8, duration: u16) -> [u8; 4] {
    let d = duration.to_be_bytes();
    [event, (u8::from(end) << 7) | (volume & 0x3f), d[0], d[1]]
}

/// (event, end, duration) of a payload.
pub fn decode(payload: &[u8]) -> Option<(u8, bool, u16)> {
    if payload.len() < 4 {
        return None;
    }
    Some((
        payload[0],
        payload[1] & 0x80 != 0,
        u16::from_be_bytes([payload[2], payload[3]]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_and_payloads_round_trip() {
        for d in "0123456789*#ABCD".chars() {
            assert_eq!(digit_of(event_of(d).unwrap()), Some(d));
        }
        assert_eq!(event_of('x'), None);
        let p = encode(11, true, 10, 800);
        assert_eq!(p, [11, 0x8a, 0x03, 0x20]);
        assert_eq!(decode(&p), Some((11, true, 800)));
    }
}
