//! Fuzz targets for what callflow reads from outside, and the mutator that feeds them.
//!
//! Each target takes bytes and must neither panic, nor hang, nor abort; `tests/fuzz.rs` runs
//! them with bolero (random inputs on stable Rust, under `cargo test`) for a bounded time
//! (`CALLFLOW_FUZZ_SECS`, 2 s each by default; `.ci/run` gives each 60 s). Random bytes alone
//! rarely get past a parser's first line, so an input is read as a choice of seed (a committed
//! corpus file: the fixtures, real SIP messages) and a list of edits to it, which keeps most
//! inputs close to something real. Inputs that once crashed are kept in `regressions/` and
//! replayed by every test run.

use std::path::{Path, PathBuf};

/// The three targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// callflow's YAML scenarios: parse, validate, and write back when valid.
    Yaml,
    /// sipflow's flow JSON, the same way.
    Sipflow,
    /// A datagram at the SIP door: the intake's verdict, then rsipstack's parser on what passes.
    Sip,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Self::Yaml => "yaml",
            Self::Sipflow => "sipflow",
            Self::Sip => "sip",
        }
    }

    fn dir(self, kind: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(kind)
            .join(self.name())
    }

    /// The committed seeds of this target (`corpus/<target>/`), in name order.
    pub fn corpus(self) -> Vec<Vec<u8>> {
        read_all(&self.dir("corpus"))
    }

    /// Inputs that once failed (`regressions/<target>/`), with their file names.
    pub fn regressions(self) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<(String, Vec<u8>)> = files(&self.dir("regressions"))
            .into_iter()
            .filter_map(|p| {
                Some((
                    p.file_name()?.to_string_lossy().into_owned(),
                    std::fs::read(&p).ok()?,
                ))
            })
            .collect();
        out.sort();
        out
    }

    /// Runs the target on `input` as it is.
    pub fn run(self, input: &[u8]) {
        match self {
            Self::Yaml => scenario_text(input, "fuzz.yaml"),
            Self::Sipflow => scenario_text(input, "fuzz.json"),
            Self::Sip => {
                if let transport::intake::Intake::Pass { offset, len } =
                    transport::intake::check_unguarded(input)
                {
                    let _ = transport::sip::SipMessage::try_from(&input[offset..offset + len]);
                }
            }
        }
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .filter(|p| {
                    !p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn read_all(dir: &Path) -> Vec<Vec<u8>> {
    files(dir)
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

fn scenario_text(input: &[u8], file: &str) {
    let text = String::from_utf8_lossy(input);
    let profiles = scenario::Profiles::default();
    if let Ok((s, _)) = scenario::parse_with_profiles(&text, file, &profiles) {
        // What reads must also write back.
        let _ = scenario::to_native(&s, &profiles);
        let _ = scenario::to_flow(&s, &profiles);
    }
}

/// Pieces an edit may insert: the characters and values that steer a YAML, JSON or SIP parser.
const TOKENS: &[&[u8]] = &[
    b"- ",
    b"[",
    b"]",
    b"{",
    b"}",
    b": ",
    b"\n",
    b"\r\n",
    b"  ",
    b"\"",
    b"'",
    b",",
    b"&a ",
    b"*a",
    b"!!str ",
    b"${PATH}",
    b"${UNSET_CALLFLOW_VAR}",
    b"1e23",
    b"-1",
    b"0",
    b"99999999999999999999",
    b"NaN",
    b".inf",
    b"null",
    b"\xff",
    b"\x1b[2J",
    b"\x00",
    b"command: ",
    b"event: ",
    b"timeout: ",
    b"matches: ",
    b"(",
    b")",
    b"{1000}",
    b"SIP/2.0",
    b"SIP/3.0",
    b"Via: ",
    b"CSeq: ",
    b"Call-ID: ",
    b"Content-Length: ",
    b";tag=",
    b"<sip:",
    b">",
    b"@",
    b"%00",
    b"\t",
];

/// The input `bytes` stand for: their first two bytes choose a seed of `corpus`, each following
/// group of four is an edit (where, what, which byte or token). No corpus, or an input shorter
/// than two bytes, is the input itself.
pub fn mutate(corpus: &[Vec<u8>], bytes: &[u8]) -> Vec<u8> {
    if corpus.is_empty() || bytes.len() < 2 {
        return bytes.to_vec();
    }
    let pick = usize::from(u16::from_le_bytes([bytes[0], bytes[1]]));
    let mut out = corpus[pick % corpus.len()].clone();
    for edit in bytes[2..].chunks(4) {
        let [a, b, op, v] = [0, 1, 2, 3].map(|i| edit.get(i).copied().unwrap_or(0));
        let at = usize::from(u16::from_le_bytes([a, b])) % (out.len() + 1);
        match op % 5 {
            0 if at < out.len() => out[at] = v,
            1 => out.insert(at, v),
            2 if at < out.len() => {
                out.remove(at);
            }
            3 => {
                let t = TOKENS[usize::from(v) % TOKENS.len()];
                out.splice(at..at, t.iter().copied());
            }
            // Repeat a slice: nesting and long lines.
            4 => {
                let end = (at + usize::from(v % 32) + 1).min(out.len());
                let piece = out[at..end].to_vec();
                for _ in 0..(v / 32 + 1) {
                    out.splice(at..at, piece.iter().copied());
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_seeds_and_they_run() {
        for t in [Target::Yaml, Target::Sipflow, Target::Sip] {
            let corpus = t.corpus();
            assert!(corpus.len() >= 5, "{}: {} seeds", t.name(), corpus.len());
            for seed in &corpus {
                t.run(seed);
            }
        }
    }

    #[test]
    fn mutations_start_from_a_seed() {
        let corpus = vec![b"abc".to_vec(), b"xyz".to_vec()];
        assert_eq!(mutate(&corpus, &[1, 0]), b"xyz");
        assert_eq!(mutate(&corpus, &[0, 0, 1, 0, 1, b'!']), b"a!bc");
        assert_eq!(mutate(&[], b"raw"), b"raw");
    }
}
