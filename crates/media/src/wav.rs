//! WAV files: what PlayAudio plays (8 kHz mono 16-bit PCM) and what Record writes.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WavError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: hound::Error },
    #[error("cannot read {path}: {source}")]
    Open {
        path: String,
        source: crate::file::OpenError,
    },
    #[error(
        "{path} is {got}; callflow plays 8000 Hz mono 16-bit PCM (convert it with `sox in.wav -r 8000 -c 1 -b 16 out.wav`)"
    )]
    Format { path: String, got: String },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: hound::Error },
}

fn spec() -> hound::WavSpec {
    hound::WavSpec {
        channels: 1,
        sample_rate: crate::audio::RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    }
}

/// The largest WAV PlayAudio plays: 64 MiB, over an hour of 8 kHz 16-bit mono.
pub const MAX_WAV_BYTES: u64 = 64 << 20;

/// A reader over a regular file within [`MAX_WAV_BYTES`] (a FIFO or a device is refused at
/// once instead of blocking or reading without end).
fn reader(path: &Path) -> Result<hound::WavReader<std::io::BufReader<std::fs::File>>, WavError> {
    let p = path.display().to_string();
    let (file, _) = crate::file::open_regular(path, MAX_WAV_BYTES, crate::file::Symlinks::Follow)
        .map_err(|source| WavError::Open {
        path: p.clone(),
        source,
    })?;
    hound::WavReader::new(std::io::BufReader::new(file))
        .map_err(|source| WavError::Read { path: p, source })
}

/// Checks a file without reading its samples.
pub fn check(path: &Path) -> Result<(), WavError> {
    let p = path.display().to_string();
    let r = reader(path)?;
    let s = r.spec();
    if s != spec() {
        let kind = if s.sample_format == hound::SampleFormat::Float {
            "float"
        } else {
            "PCM"
        };
        let got = format!(
            "{} Hz, {} channel(s), {}-bit {kind}",
            s.sample_rate, s.channels, s.bits_per_sample
        );
        return Err(WavError::Format { path: p, got });
    }
    Ok(())
}

pub fn load(path: &Path) -> Result<Vec<i16>, WavError> {
    check(path)?;
    let p = path.display().to_string();
    let mut r = reader(path)?;
    r.samples::<i16>()
        .collect::<Result<_, _>>()
        .map_err(|source| WavError::Read { path: p, source })
}

pub fn save(path: &Path, samples: &[i16]) -> Result<(), WavError> {
    let p = path.display().to_string();
    let err = |source| WavError::Write {
        path: p.clone(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| err(hound::Error::IoError(e)))?;
    }
    let mut w = hound::WavWriter::create(path, spec()).map_err(err)?;
    for s in samples {
        w.write_sample(*s).map_err(err)?;
    }
    w.finalize().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_and_reject_other_formats() {
        let dir = std::env::temp_dir().join(format!("callflow-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.wav");
        save(&good, &[1, 2, 3]).unwrap();
        assert_eq!(load(&good).unwrap(), [1, 2, 3]);
        let bad = dir.join("bad.wav");
        let mut w = hound::WavWriter::create(
            &bad,
            hound::WavSpec {
                sample_rate: 44100,
                channels: 2,
                ..spec()
            },
        )
        .unwrap();
        w.write_sample(0i16).unwrap();
        w.write_sample(0i16).unwrap();
        w.finalize().unwrap();
        let e = load(&bad).unwrap_err().to_string();
        assert!(
            e.contains(
                "44100 Hz, 2 channel(s), 16-bit PCM; callflow plays 8000 Hz mono 16-bit PCM"
            ),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
