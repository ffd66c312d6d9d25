//! WAV files: what PlayAudio plays and what Record writes (8 kHz mono 16-bit PCM). A file at
//! another rate, in stereo, 8/24/32-bit or float is mixed down to mono and resampled to 8 kHz
//! (rubato's FFT resampler, band-limited) as it is loaded.

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
        "{path} is {got}; callflow plays PCM (8 to 32 bits) or 32-bit float WAV at 4 to 192 kHz (convert it with `sox in.wav -r 8000 -c 1 -b 16 out.wav`)"
    )]
    Format { path: String, got: String },
    #[error("cannot resample {path} from {from} Hz to {to} Hz: {message}")]
    Resample {
        path: String,
        from: u32,
        to: u32,
        message: String,
    },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: hound::Error },
}

fn spec_at(rate: u32) -> hound::WavSpec {
    hound::WavSpec {
        channels: 1,
        sample_rate: rate,
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

/// Whether callflow plays WAV files of `s`: PCM of 8 to 32 bits or 32-bit float, 4 to 192 kHz,
/// any number of channels.
fn playable(s: hound::WavSpec) -> bool {
    let bits = match s.sample_format {
        hound::SampleFormat::Int => (8..=32).contains(&s.bits_per_sample),
        hound::SampleFormat::Float => s.bits_per_sample == 32,
    };
    bits && s.channels >= 1 && (4_000..=192_000).contains(&s.sample_rate)
}

/// Checks a file without reading its samples.
pub fn check(path: &Path) -> Result<(), WavError> {
    let p = path.display().to_string();
    let s = reader(path)?.spec();
    if !playable(s) {
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

/// The file's audio as 8 kHz mono 16-bit samples: as it is when it is that already, else mixed
/// down (the channels averaged) and resampled.
pub fn load(path: &Path) -> Result<Vec<i16>, WavError> {
    load_at(path, crate::audio::RATE)
}

/// [`load`] at `rate` Hz (a call's audio rate: 16 kHz keeps a wideband file wideband).
pub fn load_at(path: &Path, rate: u32) -> Result<Vec<i16>, WavError> {
    check(path)?;
    let p = path.display().to_string();
    let mut r = reader(path)?;
    let s = r.spec();
    let read = |source| WavError::Read {
        path: p.clone(),
        source,
    };
    if s == spec_at(rate) {
        return r.samples::<i16>().collect::<Result<_, _>>().map_err(read);
    }
    // Every sample as a float in [-1, 1].
    let samples: Vec<f32> = match s.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().collect::<Result<_, _>>().map_err(read)?,
        hound::SampleFormat::Int => {
            let scale = (1u64 << (s.bits_per_sample - 1)) as f32;
            r.samples::<i32>()
                .map(|v| v.map(|v| v as f32 / scale))
                .collect::<Result<_, _>>()
                .map_err(read)?
        }
    };
    let channels = usize::from(s.channels);
    let mono: Vec<f32> = samples
        .chunks(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect();
    let audio = resample(&mono, s.sample_rate, rate).map_err(|message| WavError::Resample {
        path: p.clone(),
        from: s.sample_rate,
        to: rate,
        message,
    })?;
    Ok(audio
        .into_iter()
        .map(|x| (x * 32_767.0).round().clamp(-32_768.0, 32_767.0) as i16)
        .collect())
}

/// `mono` at `from` Hz as it sounds at `to` Hz (band-limited: nothing above the new Nyquist
/// folds back).
fn resample(mono: &[f32], from: u32, to: u32) -> Result<Vec<f32>, String> {
    use rubato::Resampler;
    if from == to || mono.is_empty() {
        return Ok(mono.to_vec());
    }
    let mut r = rubato::Fft::<f32>::new(
        from as usize,
        to as usize,
        1024,
        1,
        rubato::FixedSync::Input,
    )
    .map_err(|e| e.to_string())?;
    let input = rubato::audioadapter_buffers::direct::InterleavedSlice::new(mono, 1, mono.len())
        .map_err(|e| e.to_string())?;
    let out = r
        .process_all(&input, mono.len(), None)
        .map_err(|e| e.to_string())?;
    Ok(out.take_data())
}

pub fn save(path: &Path, samples: &[i16]) -> Result<(), WavError> {
    save_at(path, samples, crate::audio::RATE)
}

/// Writes `samples` (mono, at `rate` Hz) as a 16-bit WAV.
pub fn save_at(path: &Path, samples: &[i16], rate: u32) -> Result<(), WavError> {
    let p = path.display().to_string();
    let err = |source| WavError::Write {
        path: p.clone(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| err(hound::Error::IoError(e)))?;
    }
    let mut w = hound::WavWriter::create(path, spec_at(rate)).map_err(err)?;
    for s in samples {
        w.write_sample(*s).map_err(err)?;
    }
    w.finalize().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_and_reject_what_cannot_be_played() {
        let tmp = tempfile::tempdir().unwrap();
        let good = tmp.path().join("good.wav");
        save(&good, &[1, 2, 3]).unwrap();
        assert_eq!(load(&good).unwrap(), [1, 2, 3]);
        let bad = tmp.path().join("bad.wav");
        let mut w = hound::WavWriter::create(
            &bad,
            hound::WavSpec {
                sample_rate: 2_000,
                ..spec_at(8_000)
            },
        )
        .unwrap();
        w.write_sample(0i16).unwrap();
        w.finalize().unwrap();
        let e = load(&bad).unwrap_err().to_string();
        assert!(
            e.contains("2000 Hz, 1 channel(s), 16-bit PCM; callflow plays PCM"),
            "{e}"
        );
    }

    /// A second of a `hz` tone at `rate`, in `channels` (the same in each), as `format`.
    fn tone_file(path: &Path, rate: u32, channels: u16, float: bool, hz: f64) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: if float { 32 } else { 16 },
            sample_format: if float {
                hound::SampleFormat::Float
            } else {
                hound::SampleFormat::Int
            },
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for n in 0..rate {
            let x = 0.5 * (2.0 * std::f64::consts::PI * hz * f64::from(n) / f64::from(rate)).sin();
            for _ in 0..channels {
                if float {
                    w.write_sample(x as f32).unwrap();
                } else {
                    w.write_sample((x * 32_767.0) as i16).unwrap();
                }
            }
        }
        w.finalize().unwrap();
    }

    #[test]
    fn other_rates_and_stereo_are_mixed_down_and_resampled_to_8_khz() {
        let tmp = tempfile::tempdir().unwrap();
        for (rate, channels, float) in [(44_100, 2, false), (16_000, 1, false), (48_000, 2, true)] {
            let path = tmp.path().join(format!("tone-{rate}-{channels}.wav"));
            tone_file(&path, rate, channels, float, 1000.0);
            let audio = load(&path).unwrap();
            // A second at 8 kHz, give or take the resampler's edges.
            assert!(
                (7_900..=8_100).contains(&audio.len()),
                "{rate} Hz: {} samples",
                audio.len()
            );
            // Still a 1 kHz tone, at about the same level.
            let mid = &audio[2_000..2_800];
            assert!(crate::audio::tone_present(mid, 1000.0), "{rate} Hz");
            let peak = mid.iter().map(|s| s.unsigned_abs()).max().unwrap();
            assert!((15_000..=17_500).contains(&peak), "{rate} Hz: peak {peak}");
        }
        // A tone above 4 kHz cannot be played at 8 kHz: it is filtered out, not folded back.
        let high = tmp.path().join("high.wav");
        tone_file(&high, 44_100, 1, false, 5_000.0);
        let audio = load(&high).unwrap();
        let level = crate::audio::level_dbfs(&audio[2_000..6_000]);
        assert!(level < -30.0, "{level} dBFS");
    }
}
