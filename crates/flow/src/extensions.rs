//! The extensions a UA supports and what an INVITE's `Require` and `Supported` make of it
//! (RFC 3261 §8.2.2.3, RFC 3262 for 100rel).

use scenario::Rel100;

/// The extensions a UA with `mode` supports: Replaces and session timers always, 100rel unless
/// it is off (the value of its `Supported` header).
pub fn supported(mode: Rel100) -> &'static str {
    match mode {
        Rel100::Off => "replaces, timer",
        _ => "replaces, 100rel, timer",
    }
}

/// What becomes of a new INVITE, by the extensions it requires and supports.
#[derive(Debug, PartialEq, Eq)]
pub enum Intake {
    /// Taken; its provisional responses are reliable or not.
    Take { reliable: bool },
    /// Refused with `code` and `headers` (420 with Unsupported, or 421 with Require).
    Refuse {
        code: u16,
        headers: Vec<(&'static str, String)>,
        why: String,
    },
}

/// Decides on an INVITE whose `Require` and `Supported` list the option tags `required` and
/// `supports` (lower case), for a UA whose 100rel setting is `mode`.
pub fn intake(mode: Rel100, required: &[String], supports: &[String]) -> Intake {
    let ours = supported(mode);
    let unknown: Vec<&str> = required
        .iter()
        .map(String::as_str)
        .filter(|t| !ours.split(", ").any(|o| o == *t))
        .collect();
    if !unknown.is_empty() {
        return Intake::Refuse {
            code: 420,
            headers: vec![("Unsupported", unknown.join(", "))],
            why: format!(
                "the INVITE requires {}, which this UA does not support{}",
                unknown.join(", "),
                if unknown.contains(&"100rel") {
                    " (its `100rel` is off)"
                } else {
                    ""
                }
            ),
        };
    }
    let wants = required.iter().any(|t| t == "100rel");
    let can = wants || supports.iter().any(|t| t == "100rel");
    match mode {
        Rel100::Required if !can => Intake::Refuse {
            code: 421,
            headers: vec![("Require", "100rel".to_owned())],
            why: "the INVITE does not support 100rel, which this UA requires".to_owned(),
        },
        Rel100::Required => Intake::Take { reliable: true },
        _ => Intake::Take { reliable: wants },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(s: &[&str]) -> Vec<String> {
        s.iter().map(|t| (*t).to_owned()).collect()
    }

    #[test]
    fn every_mode_against_what_an_invite_requires_and_supports() {
        use Rel100::*;
        let none = tags(&[]);
        let rel = tags(&["100rel"]);
        let table = [
            (Supported, &rel, &none, Some(true)),
            (Supported, &none, &rel, Some(false)),
            (Supported, &none, &none, Some(false)),
            (Required, &rel, &none, Some(true)),
            (Required, &none, &rel, Some(true)),
            (Required, &none, &none, None),
            (Off, &rel, &none, None),
            (Off, &none, &rel, Some(false)),
        ];
        for (mode, req, sup, want) in table {
            let got = match intake(mode, req, sup) {
                Intake::Take { reliable } => Some(reliable),
                Intake::Refuse { .. } => None,
            };
            assert_eq!(got, want, "{mode:?} require {req:?} supported {sup:?}");
        }
        assert!(matches!(
            intake(Off, &rel, &none),
            Intake::Refuse { code: 420, .. }
        ));
        assert!(matches!(
            intake(Required, &none, &none),
            Intake::Refuse { code: 421, .. }
        ));
    }
}
