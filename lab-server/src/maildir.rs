//! Durable capture: each accepted message becomes a file in a Maildir, written
//! to `tmp/`, fsynced, renamed into `new/`, and the folder fsynced, before the
//! 250 reply to DATA. A connection lost mid-DATA never reaches this code, so it
//! leaves nothing in `new/`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use mail_parser::{MessageParser, MimeHeaders};
use serde::Serialize;

/// A Maildir (`tmp/`, `new/`, `cur/`).
#[derive(Clone, Debug)]
pub struct Maildir {
    root: PathBuf,
    host: String,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl Maildir {
    /// Opens `root`, creating the three folders if needed.
    pub fn create(root: &Path, host: &str) -> std::io::Result<Maildir> {
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        Ok(Maildir {
            root: root.to_owned(),
            host: host.replace(['/', ':'], "_"),
        })
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stores a message durably and returns its path in `new/`. Blocking: call
    /// from a blocking thread.
    pub fn deliver(&self, message: &[u8]) -> std::io::Result<PathBuf> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let name = format!(
            "{}.M{}P{}Q{}.{}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            self.host
        );
        let tmp = self.root.join("tmp").join(&name);
        let new = self.root.join("new").join(&name);
        let result = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            file.write_all(message)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &new)?;
            std::fs::File::open(self.root.join("new"))?.sync_all()
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(new)
    }
}

/// Whether a stored message is a well-formed UM voicemail (MS-OXCMAIL
/// 2.2.3.2.23, MS-OXOUM): Content-Class `voice-ca`, an X-CallID header, and an
/// audio attachment that parses as a whole WAV file whose length matches the
/// X-VoiceMessageDuration the message claims.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VoicemailCheck {
    /// The message parsed as MIME.
    pub parsed: bool,
    /// Value of Content-Class, if any.
    pub content_class: Option<String>,
    /// Number of audio/* attachments.
    pub audio_attachments: usize,
    /// Value of X-CallID, if any.
    pub call_id: Option<String>,
    /// Value of X-VoiceMessageDuration (seconds), if any.
    pub claimed_seconds: Option<u64>,
    /// The first audio attachment, parsed.
    pub audio: Option<AudioCheck>,
    /// Every marker present and the audio whole.
    pub well_formed_voicemail: bool,
}

/// What the first audio attachment holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AudioCheck {
    /// Decoded attachment size in bytes.
    pub bytes: usize,
    /// `PCM 16-bit 8000 Hz 1 ch`, when the header parsed.
    pub format: Option<String>,
    /// Length from the samples actually present, in milliseconds.
    pub duration_ms: Option<u64>,
    /// Why the audio is not a whole WAV file (or does not match the claimed
    /// duration); `None` when it is.
    pub problem: Option<String>,
}

/// Seconds the audio may differ from X-VoiceMessageDuration, which is a
/// whole number of seconds.
pub const DURATION_TOLERANCE: f64 = 1.0;

/// Parses a message with mail-parser and checks the voicemail markers and
/// the audio.
pub fn check_voicemail(message: &[u8]) -> VoicemailCheck {
    let Some(parsed) = MessageParser::default().parse(message) else {
        return VoicemailCheck::default();
    };
    let header = |name: &str| parsed.header_raw(name).map(|v| v.trim().to_owned());
    let content_class = header("Content-Class");
    let call_id = header("X-CallID");
    let claimed_seconds = header("X-VoiceMessageDuration").and_then(|v| v.parse::<u64>().ok());
    let audio_parts: Vec<_> = parsed
        .attachments()
        .filter(|part| {
            part.content_type()
                .is_some_and(|ct| ct.ctype().eq_ignore_ascii_case("audio"))
        })
        .collect();
    let audio = audio_parts
        .first()
        .map(|part| check_wav(part.contents(), claimed_seconds));
    let well_formed_voicemail = content_class
        .as_deref()
        .is_some_and(|c| c.eq_ignore_ascii_case("voice-ca"))
        && call_id.as_deref().is_some_and(|c| !c.is_empty())
        && audio.as_ref().is_some_and(|a| a.problem.is_none());
    VoicemailCheck {
        parsed: true,
        content_class,
        audio_attachments: audio_parts.len(),
        call_id,
        claimed_seconds,
        audio,
        well_formed_voicemail,
    }
}

/// Parses a WAV file to its last sample (hound checks the RIFF/WAVE header
/// and format; reading every sample finds a data chunk cut short) and
/// compares its length with the claimed duration.
pub fn check_wav(bytes: &[u8], claimed_seconds: Option<u64>) -> AudioCheck {
    let mut check = AudioCheck {
        bytes: bytes.len(),
        ..AudioCheck::default()
    };
    let mut reader = match hound::WavReader::new(bytes) {
        Ok(r) => r,
        Err(e) => {
            check.problem = Some(format!("not a WAV file: {e}"));
            return check;
        }
    };
    let spec = reader.spec();
    let kind = match spec.sample_format {
        hound::SampleFormat::Int => "PCM",
        hound::SampleFormat::Float => "IEEE float",
    };
    check.format = Some(format!(
        "{kind} {}-bit {} Hz {} ch",
        spec.bits_per_sample, spec.sample_rate, spec.channels
    ));
    let claimed_samples = u64::from(reader.len());
    let read = match spec.sample_format {
        hound::SampleFormat::Int => count_samples(reader.samples::<i32>()),
        hound::SampleFormat::Float => count_samples(reader.samples::<f32>()),
    };
    let (present, error) = read;
    let frames = present / u64::from(spec.channels.max(1));
    let seconds = frames as f64 / f64::from(spec.sample_rate.max(1));
    check.duration_ms = Some(frames.saturating_mul(1000) / u64::from(spec.sample_rate.max(1)));
    if let Some(e) = error {
        check.problem = Some(format!(
            "data cut short: {present} of {claimed_samples} samples present ({e})"
        ));
    } else if present == 0 {
        check.problem = Some("no samples".to_owned());
    } else if let Some(claimed) = claimed_seconds
        && (seconds - claimed as f64).abs() > DURATION_TOLERANCE
    {
        check.problem = Some(format!(
            "{seconds:.2} s of audio, but X-VoiceMessageDuration says {claimed} s"
        ));
    }
    check
}

fn count_samples<T, E: std::fmt::Display>(
    samples: impl Iterator<Item = Result<T, E>>,
) -> (u64, Option<String>) {
    let mut n = 0u64;
    for s in samples {
        if let Err(e) = s {
            return (n, Some(e.to_string()));
        }
        n += 1;
    }
    (n, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_into_new_and_checks_voicemail() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::create(dir.path(), "hub.lab.test").unwrap();
        let voicemail = b"Content-Class: voice-ca\r\nX-CallID: 42\r\nSubject: vm\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
--b\r\nContent-Type: audio/wav\r\nContent-Disposition: attachment; filename=a.wav\r\n\
Content-Transfer-Encoding: base64\r\n\r\nUklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQgAAAABAAIAAwAEAA==\r\n--b--\r\n";
        let path = md.deliver(voicemail).unwrap();
        assert_eq!(path.parent().unwrap(), dir.path().join("new"));
        assert_eq!(std::fs::read(&path).unwrap(), voicemail);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
        let check = check_voicemail(voicemail);
        assert!(check.well_formed_voicemail, "{check:?}");
        assert_eq!(check.audio_attachments, 1);
        let plain = check_voicemail(b"Subject: hi\r\n\r\nbody\r\n");
        assert!(plain.parsed && !plain.well_formed_voicemail);
        assert_eq!(plain.audio_attachments, 0);
    }

    fn wav(seconds: u32) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut out = std::io::Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
        for i in 0..seconds * 8000 {
            w.write_sample((i % 100) as i16).unwrap();
        }
        w.finalize().unwrap();
        out.into_inner()
    }

    #[test]
    fn a_whole_wav_passes_and_a_broken_one_is_named() {
        let good = wav(3);
        let ok = check_wav(&good, Some(3));
        assert_eq!(ok.problem, None, "{ok:?}");
        assert_eq!(ok.format.as_deref(), Some("PCM 16-bit 8000 Hz 1 ch"));
        assert_eq!(ok.duration_ms, Some(3000));

        let cut = check_wav(&good[..good.len() / 2], Some(3));
        assert!(
            cut.problem
                .as_deref()
                .unwrap()
                .starts_with("data cut short"),
            "{cut:?}"
        );
        let random: Vec<u8> = (0..4000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let junk = check_wav(&random, None);
        assert!(
            junk.problem
                .as_deref()
                .unwrap()
                .starts_with("not a WAV file"),
            "{junk:?}"
        );
        let long = check_wav(&good, Some(10));
        assert!(
            long.problem.as_deref().unwrap().contains("says 10 s"),
            "{long:?}"
        );
        let header_only = check_wav(&good[..44], None);
        assert!(header_only.problem.is_some(), "{header_only:?}");
    }
}
