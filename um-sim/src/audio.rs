//! The audio check before submission: a voicemail whose WAV file is
//! truncated, random, not PCM or not the length its header claims would be
//! delivered as a message nobody can play, so it goes to `badvoicemail/` with
//! the reason instead. Pure: the bytes are read (with [`MAX_WAV_FILE`] as the
//! cap) by the caller.
//!
//! hound reads the RIFF/WAVE header and validates the format chunk (channels,
//! block alignment, byte rate, bits per sample, the data length a multiple of
//! the frame size); this module adds what hound leaves to its caller: that
//! the data chunk the header declares is really in the file, and that its
//! length matches the header file's `Duration`.

use std::io::Cursor;

/// Largest WAV file read: 18 MiB. A message carries the audio in base64 with
/// a CRLF every 76 characters (x 4/3 x 78/76), so 18 MiB of audio makes
/// 24.6 MiB, under lab-server's 25 MiB message limit (its EHLO `SIZE`) with
/// room for the headers and the text part. 18 MiB hold 19.6 minutes of UM's
/// 8 kHz 16-bit mono.
pub const MAX_WAV_FILE: u64 = 18 * 1024 * 1024;

/// How far the audio's length may be from the header's `Duration`: 1,000 ms.
/// `Duration` is whole seconds, so an honest recording lies within one second
/// of it however the recorder rounded.
pub const DURATION_TOLERANCE_MS: u64 = 1_000;

/// What the check learned about sound audio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioFacts {
    /// Channels.
    pub channels: u16,
    /// Samples per second.
    pub sample_rate: u32,
    /// Bits per sample.
    pub bits_per_sample: u16,
    /// Bytes of sample data.
    pub data_bytes: u32,
    /// Length, from the data length.
    pub duration_ms: u64,
}

/// Why audio cannot be delivered. The text is the reason written beside the
/// item in `badvoicemail/`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AudioError {
    /// No RIFF/WAVE header.
    #[error("not a WAV file: {0}")]
    NotWav(&'static str),
    /// The file ends before a data chunk.
    #[error("the WAV header is cut short: the file ends before its data chunk")]
    NoData,
    /// A format other than integer PCM.
    #[error("the audio is not PCM: {0}")]
    NotPcm(String),
    /// A format chunk hound refuses.
    #[error("bad WAV format chunk: {0}")]
    Format(String),
    /// The data chunk declares more bytes than the file holds.
    #[error(
        "truncated: the data chunk declares {declared} bytes but the file holds {present} after it"
    )]
    Truncated {
        /// Bytes the data chunk declares.
        declared: u64,
        /// Bytes the file holds from the start of the data.
        present: u64,
    },
    /// A data length of 0 with samples after it: the length a WAV writer puts
    /// first and fixes when it finishes.
    #[error(
        "the recorder never finished the file: the data chunk declares 0 bytes but {present} follow"
    )]
    Unfinished {
        /// Bytes after the data chunk header.
        present: u64,
    },
    /// The audio's length is not the header's `Duration`.
    #[error(
        "the audio lasts {actual_ms} ms but the header says Duration {claimed_s} s \
         (tolerance {DURATION_TOLERANCE_MS} ms)"
    )]
    Duration {
        /// Length from the data.
        actual_ms: u64,
        /// The header's `Duration`.
        claimed_s: u32,
    },
}

/// Checks a WAV file's bytes against the header's `Duration` (`None`: not
/// compared). Total: any bytes give facts or an error, never a panic.
pub fn check(wav: &[u8], claimed_s: Option<u32>) -> Result<AudioFacts, AudioError> {
    if wav.get(..4) != Some(b"RIFF") {
        return Err(AudioError::NotWav("no RIFF tag at the start"));
    }
    if wav.get(8..12) != Some(b"WAVE") {
        return Err(AudioError::NotWav("no WAVE tag after the RIFF header"));
    }
    let mut cursor = Cursor::new(wav);
    let (spec, frames) = hound::WavReader::new(&mut cursor)
        .map(|reader| (reader.spec(), reader.duration()))
        .map_err(|e| match e {
            hound::Error::IoError(_) => AudioError::NoData,
            hound::Error::Unsupported => AudioError::NotPcm(match format_tag(wav) {
                Some(tag) => format!("format tag 0x{tag:04x}"),
                None => "an unsupported format".to_owned(),
            }),
            hound::Error::FormatError(m) => AudioError::Format(m.to_owned()),
            other => AudioError::Format(other.to_string()),
        })?;
    if spec.sample_format != hound::SampleFormat::Int {
        return Err(AudioError::NotPcm("IEEE float samples".to_owned()));
    }
    if spec.sample_rate == 0 {
        return Err(AudioError::Format("sample rate 0".to_owned()));
    }
    // hound leaves the cursor at the first data byte, just after the chunk's
    // 4-byte length.
    let start = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
    let declared = start
        .checked_sub(4)
        .and_then(|at| wav.get(at..start))
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_le_bytes)
        .ok_or(AudioError::NoData)?;
    let present = wav.len().saturating_sub(start) as u64;
    if declared == 0 && present > 0 {
        return Err(AudioError::Unfinished { present });
    }
    if u64::from(declared) > present {
        return Err(AudioError::Truncated {
            declared: declared.into(),
            present,
        });
    }
    let duration_ms = u64::from(frames) * 1_000 / u64::from(spec.sample_rate);
    if let Some(claimed_s) = claimed_s
        && duration_ms.abs_diff(u64::from(claimed_s) * 1_000) > DURATION_TOLERANCE_MS
    {
        return Err(AudioError::Duration {
            actual_ms: duration_ms,
            claimed_s,
        });
    }
    Ok(AudioFacts {
        channels: spec.channels,
        sample_rate: spec.sample_rate,
        bits_per_sample: spec.bits_per_sample,
        data_bytes: declared,
        duration_ms,
    })
}

/// The format tag of the first `fmt ` chunk, for a message (hound does not
/// name the format it refuses).
fn format_tag(wav: &[u8]) -> Option<u16> {
    let mut at = 12usize;
    loop {
        let id = wav.get(at..at.checked_add(4)?)?;
        let len = wav.get(at + 4..at.checked_add(8)?)?;
        let len = u32::from_le_bytes(<[u8; 4]>::try_from(len).ok()?) as usize;
        if id == b"fmt " {
            let tag = wav.get(at + 8..at.checked_add(10)?)?;
            return Some(u16::from_le_bytes(<[u8; 2]>::try_from(tag).ok()?));
        }
        // Chunks are padded to an even length.
        at = at.checked_add(8)?.checked_add(len)?.checked_add(len % 2)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAV of `frames` frames, 8 kHz, written by hound.
    fn wav(spec: hound::WavSpec, frames: u32) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
        for n in 0..frames * u32::from(spec.channels) {
            match (spec.sample_format, spec.bits_per_sample) {
                (hound::SampleFormat::Float, _) => w.write_sample(n as f32).unwrap(),
                (_, 8) => w.write_sample((n % 100) as i8).unwrap(),
                _ => w.write_sample((n % 1000) as i16).unwrap(),
            }
        }
        w.finalize().unwrap();
        out.into_inner()
    }

    fn pcm(channels: u16, bits: u16) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: 8_000,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        }
    }

    #[test]
    fn sound_pcm_passes_with_its_facts() {
        let facts = check(&wav(pcm(1, 16), 16_000), Some(2)).unwrap();
        assert_eq!(facts.duration_ms, 2_000);
        assert_eq!(facts.data_bytes, 32_000);
        assert_eq!((facts.channels, facts.bits_per_sample), (1, 16));
        // Stereo 8-bit: the length counts frames, not samples.
        assert_eq!(
            check(&wav(pcm(2, 8), 8_000), Some(1)).unwrap().duration_ms,
            1_000
        );
        // A chunk after the data (a LIST chunk, say) is no truncation.
        let mut trailing = wav(pcm(1, 16), 8_000);
        trailing.extend_from_slice(b"LIST\x04\x00\x00\x00abcd");
        assert!(check(&trailing, Some(1)).is_ok());
        // No Duration to compare: only the file is checked.
        assert!(check(&wav(pcm(1, 16), 8_000), None).is_ok());
    }

    #[test]
    fn the_duration_tolerance_is_one_second() {
        let two_s = wav(pcm(1, 16), 16_000);
        for claimed in [1, 2, 3] {
            assert!(check(&two_s, Some(claimed)).is_ok(), "{claimed}");
        }
        // 2.5 s against 1 s and 4 s: 1.5 s off.
        let two_and_a_half = wav(pcm(1, 16), 20_000);
        for claimed in [1, 4] {
            assert_eq!(
                check(&two_and_a_half, Some(claimed)),
                Err(AudioError::Duration {
                    actual_ms: 2_500,
                    claimed_s: claimed
                })
            );
        }
        assert!(matches!(
            check(&two_s, Some(0)),
            Err(AudioError::Duration { .. })
        ));
    }

    #[test]
    fn broken_files_name_what_is_wrong() {
        let good = wav(pcm(1, 16), 16_000);
        // Cut anywhere inside the data: truncated.
        for cut in [45, 1_000, good.len() - 2] {
            assert!(
                matches!(
                    check(&good[..cut], Some(2)),
                    Err(AudioError::Truncated {
                        declared: 32_000,
                        ..
                    })
                ),
                "cut at {cut}: {:?}",
                check(&good[..cut], Some(2))
            );
        }
        // Cut inside the header: no data chunk.
        for cut in [12, 20, 30, 43] {
            assert_eq!(
                check(&good[..cut], Some(2)),
                Err(AudioError::NoData),
                "{cut}"
            );
        }
        // Too short or not RIFF/WAVE at all.
        for bytes in [&b""[..], b"RIFF", b"RIFF\0\0\0\0AVI ", b"ID3\x03 an mp3"] {
            assert!(matches!(check(bytes, Some(2)), Err(AudioError::NotWav(_))));
        }
        // The length a writer puts first and never fixed.
        let mut unfinished = good.clone();
        unfinished[40..44].copy_from_slice(&[0; 4]);
        assert_eq!(
            check(&unfinished, Some(2)),
            Err(AudioError::Unfinished { present: 32_000 })
        );
        // A data length that is not whole frames.
        let mut odd = good.clone();
        odd[40..44].copy_from_slice(&31_999u32.to_le_bytes());
        assert!(matches!(check(&odd, Some(2)), Err(AudioError::Format(_))));
        // Float samples; a compressed format (GSM 6.10, tag 0x0031).
        let float = hound::WavSpec {
            sample_format: hound::SampleFormat::Float,
            ..pcm(1, 32)
        };
        assert_eq!(
            check(&wav(float, 8_000), Some(1)),
            Err(AudioError::NotPcm("IEEE float samples".to_owned()))
        );
        let mut gsm = good.clone();
        gsm[20..22].copy_from_slice(&0x0031u16.to_le_bytes());
        assert_eq!(
            check(&gsm, Some(2)),
            Err(AudioError::NotPcm("format tag 0x0031".to_owned()))
        );
        // A format chunk whose numbers disagree.
        let mut inconsistent = good.clone();
        inconsistent[28..32].copy_from_slice(&1u32.to_le_bytes());
        assert!(matches!(
            check(&inconsistent, Some(2)),
            Err(AudioError::Format(_))
        ));
    }
}
