//! The voicemail queue folder, modeled on the UM voicemail folder: each item
//! is `<GUID>.txt` (header) and `<GUID>.wav` (audio; none for a missed call).
//! Delivered items move to `sent/`, unusable or exhausted ones to
//! `badvoicemail/` with a `<GUID>.reason.txt`. Nothing is ever deleted unsent.
//!
//! Every file is written to a temporary name and renamed, audio before header,
//! so a reader never sees a header without its audio; leaving the queue moves
//! the header first, then the audio.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::header::{ContentType, Header, Importance};

/// Folder for delivered items.
pub const SENT: &str = "sent";
/// Folder for items that cannot or could not be delivered.
pub const BAD: &str = "badvoicemail";

/// Largest header file read: [`certgen::fsutil::MAX_TEXT_FILE`] (1 MiB), far
/// above any honest header (a few hundred bytes).
pub const MAX_HEADER_FILE: u64 = certgen::fsutil::MAX_TEXT_FILE;

/// Errors of queue operations.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A file operation failed.
    #[error("{}: {cause}", path.display())]
    Io {
        /// the file
        path: PathBuf,
        /// why
        cause: std::io::Error,
    },
    /// An item with this GUID exists already (the same seed used twice).
    #[error("item {0} already exists in the queue, sent/ or badvoicemail/ (same --seed twice?)")]
    Exists(String),
    /// A file operation on the blocking pool did not finish (the runtime is
    /// shutting down).
    #[error("a queue operation was interrupted: {0}")]
    Interrupted(String),
    /// The WAV writer failed.
    #[error("{}: {cause}", path.display())]
    Wav {
        /// the file
        path: PathBuf,
        /// why
        cause: hound::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> QueueError + '_ {
    move |cause| QueueError::Io {
        path: path.to_owned(),
        cause,
    }
}

/// A queued item.
#[derive(Clone, Debug)]
pub struct Item {
    /// The GUID (file stem).
    pub guid: String,
    /// The header file.
    pub header_path: PathBuf,
    /// The parsed header.
    pub header: Header,
    /// The audio file, for a voicemail.
    pub audio_path: Option<PathBuf>,
}

/// An item that could not be loaded, already moved to `badvoicemail/`.
#[derive(Clone, Debug)]
pub struct Rejected {
    /// The header file's original path.
    pub header_path: PathBuf,
    /// Why.
    pub reason: String,
}

/// The queue folder.
#[derive(Clone, Debug)]
pub struct Queue {
    dir: PathBuf,
}

impl Queue {
    /// Opens a queue folder, creating it and its sub-folders.
    pub fn open(dir: &Path) -> Result<Queue, QueueError> {
        for sub in ["", SENT, BAD] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(io(&d))?;
        }
        Ok(Queue {
            dir: dir.to_owned(),
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Items waiting, oldest first (by ReceivedTime, then GUID). Malformed
    /// headers and missing audio are moved to `badvoicemail/` and returned as
    /// rejected.
    pub fn scan(&self) -> Result<(Vec<Item>, Vec<Rejected>), QueueError> {
        let headers = self.header_paths()?;
        let mut items = Vec::new();
        let mut rejected = Vec::new();
        for path in headers {
            let guid = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            // Capped: a header file that is really a 10 GB dump goes to
            // badvoicemail/ like any other malformed header.
            let loaded = certgen::fsutil::read_capped(&path, MAX_HEADER_FILE)
                .map_err(|e| match e {
                    certgen::Error::TooLarge { limit, .. } => format!(
                        "header file larger than {limit} bytes, the most um-sim reads (see the README)"
                    ),
                    other => other.to_string(),
                })
                .and_then(|b| String::from_utf8(b).map_err(|_| "header is not UTF-8".to_owned()))
                .and_then(|t| Header::parse(&t).map_err(|e| format!("malformed header: {e}")));
            let verdict = loaded.and_then(|header| {
                let audio_path = header.audio_file.as_ref().map(|f| self.dir.join(f));
                match (&audio_path, header.content_type) {
                    (Some(a), _) if !a.is_file() => Err(format!(
                        "audio file {} is missing",
                        a.file_name().unwrap_or_default().to_string_lossy()
                    )),
                    (None, ContentType::Voicemail) => Err("no audio file named".to_owned()),
                    _ => Ok(Item {
                        guid: guid.clone(),
                        header_path: path.clone(),
                        header,
                        audio_path,
                    }),
                }
            });
            match verdict {
                Ok(item) => items.push(item),
                Err(reason) => {
                    self.reject(&path, None, &guid, &reason)?;
                    rejected.push(Rejected {
                        header_path: path,
                        reason,
                    });
                }
            }
        }
        items.sort_by(|a, b| {
            (&a.header.received_time, &a.guid).cmp(&(&b.header.received_time, &b.guid))
        });
        Ok((items, rejected))
    }

    /// How many items wait in the queue (header files), without reading or
    /// moving any: what a progress bar or a final count needs, where
    /// [`Queue::scan`] would move malformed items out of sight.
    pub fn waiting(&self) -> Result<usize, QueueError> {
        Ok(self.header_paths()?.len())
    }

    /// The header files in the queue folder, sorted (temporary files, whose
    /// names start with a dot, excluded).
    fn header_paths(&self) -> Result<Vec<PathBuf>, QueueError> {
        let mut headers: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(io(&self.dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "txt"))
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        headers.sort();
        Ok(headers)
    }

    /// Moves a delivered item to `sent/`.
    pub fn mark_sent(&self, item: &Item) -> Result<PathBuf, QueueError> {
        self.move_out(item, SENT)
    }

    /// Records a failed attempt in the header (Attempts + 1, LastError),
    /// atomically. Returns the updated header.
    pub fn record_failure(&self, item: &Item, error: &str) -> Result<Header, QueueError> {
        let mut header = item.header.clone();
        header.attempts += 1;
        header.last_error = error.to_owned();
        write_atomic(&item.header_path, header.render().as_bytes())?;
        Ok(header)
    }

    /// Moves an item to `badvoicemail/` with a reason file.
    pub fn give_up(&self, item: &Item, reason: &str) -> Result<PathBuf, QueueError> {
        let bad = self.dir.join(BAD);
        write_atomic(
            &bad.join(format!("{}.reason.txt", item.guid)),
            reason.as_bytes(),
        )?;
        self.move_out(item, BAD)
    }

    fn reject(
        &self,
        header: &Path,
        audio: Option<&Path>,
        guid: &str,
        reason: &str,
    ) -> Result<(), QueueError> {
        let bad = self.dir.join(BAD);
        write_atomic(&bad.join(format!("{guid}.reason.txt")), reason.as_bytes())?;
        for p in [Some(header), audio].into_iter().flatten() {
            if let Some(name) = p.file_name() {
                std::fs::rename(p, bad.join(name)).map_err(io(p))?;
            }
        }
        Ok(())
    }

    fn move_out(&self, item: &Item, to: &str) -> Result<PathBuf, QueueError> {
        let dest = self.dir.join(to);
        let header_dest = dest.join(item.header_path.file_name().unwrap_or_default());
        // Header first: the queue never holds a header without its audio.
        std::fs::rename(&item.header_path, &header_dest).map_err(io(&item.header_path))?;
        if let Some(audio) = &item.audio_path {
            let audio_dest = dest.join(audio.file_name().unwrap_or_default());
            std::fs::rename(audio, &audio_dest).map_err(io(audio))?;
        }
        sync_dir(&self.dir)?;
        sync_dir(&dest)?;
        Ok(header_dest)
    }

    /// Audio files whose header already left the queue (a crash between the two
    /// renames): moved beside their header.
    pub fn sweep_orphans(&self) -> Result<usize, QueueError> {
        let mut moved = 0;
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            if path.extension().is_none_or(|x| x != "wav") {
                continue;
            }
            let stem = path.file_stem().unwrap_or_default().to_string_lossy();
            if self.dir.join(format!("{stem}.txt")).exists() {
                continue;
            }
            for folder in [SENT, BAD] {
                if self.dir.join(folder).join(format!("{stem}.txt")).exists() {
                    let to = self.dir.join(folder).join(entry.file_name());
                    std::fs::rename(&path, &to).map_err(io(&path))?;
                    moved += 1;
                    break;
                }
            }
        }
        Ok(moved)
    }
}

/// What `enqueue` synthesizes.
#[derive(Clone, Debug)]
pub struct EnqueueSpec {
    /// Number of voicemails.
    pub count: u64,
    /// Length of each recording in seconds.
    pub seconds: u32,
    /// Recipient address.
    pub to: String,
    /// Seed: GUIDs, callers and audio follow from it.
    pub seed: u64,
    /// Sample rate (8,000 Hz as UM records).
    pub sample_rate: u32,
}

const CALLERS: &[&str] = &[
    "Alice Example",
    "Bob Sample",
    "Carol Test",
    "Dan Lab",
    "Erin Demo",
    "Frank Trial",
];

/// Writes `count` voicemails: audio first, header last, each renamed into place.
pub fn enqueue(queue: &Queue, spec: &EnqueueSpec) -> Result<Vec<PathBuf>, QueueError> {
    let mut written = Vec::new();
    for i in 0..spec.count {
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        rng.set_stream(i);
        let guid = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
        let guid = guid.as_hyphenated().to_string();
        let exists = ["", SENT, BAD]
            .iter()
            .any(|sub| queue.dir.join(sub).join(format!("{guid}.txt")).exists());
        if exists {
            return Err(QueueError::Exists(guid));
        }
        let caller = CALLERS
            .get(rng.random_range(0..CALLERS.len() as u32) as usize)
            .copied()
            .unwrap_or("Caller");
        let number = format!("+1425555{:04}", rng.random_range(0..10_000u32));
        let audio_name = format!("{guid}.wav");
        let audio_path = queue.dir.join(&audio_name);
        let tone = 300.0 + f64::from(rng.random_range(0..500u32));
        write_wav(&audio_path, spec.seconds, spec.sample_rate, tone)?;
        let received = time::OffsetDateTime::UNIX_EPOCH
            + time::Duration::seconds(1_764_000_000 + i as i64 * 60);
        let header = Header {
            content_type: ContentType::Voicemail,
            recipient: spec.to.clone(),
            caller_id: Some(number),
            caller_name: Some(caller.to_owned()),
            call_id: format!("{:032x}", rng.random::<u128>()),
            duration: Some(spec.seconds),
            audio_file: Some(audio_name),
            audio_codec: Some(format!("PCM 16-bit {} Hz mono", spec.sample_rate)),
            received_time: received
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            subject: None,
            importance: Importance::Normal,
            attempts: 0,
            last_error: String::new(),
            extra: Vec::new(),
        };
        let header_path = queue.dir.join(format!("{guid}.txt"));
        write_atomic(&header_path, header.render().as_bytes())?;
        written.push(header_path);
    }
    Ok(written)
}

/// A sine tone with a short fade, PCM 16-bit mono, through a temporary file.
fn write_wav(path: &Path, seconds: u32, rate: u32, hz: f64) -> Result<(), QueueError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".um-sim-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let wav_err = |cause| QueueError::Wav {
        path: path.to_owned(),
        cause,
    };
    {
        let file = tmp.as_file().try_clone().map_err(io(tmp.path()))?;
        let mut w = hound::WavWriter::new(std::io::BufWriter::new(file), spec).map_err(wav_err)?;
        let total = u64::from(seconds) * u64::from(rate);
        for n in 0..total {
            let t = n as f64 / f64::from(rate);
            let fade = (t * 20.0)
                .min(1.0)
                .min((seconds as f64 - t) * 20.0)
                .max(0.0);
            let sample = (t * hz * std::f64::consts::TAU).sin() * 8_000.0 * fade;
            w.write_sample(sample as i16).map_err(wav_err)?;
        }
        w.finalize().map_err(wav_err)?;
    }
    tmp.as_file().sync_all().map_err(io(path))?;
    tmp.persist(path).map_err(|e| QueueError::Io {
        path: path.to_owned(),
        cause: e.error,
    })?;
    Ok(())
}

/// Writes a file through a temporary name in the same folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), QueueError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".um-sim-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    tmp.write_all(bytes).map_err(io(path))?;
    tmp.as_file().sync_all().map_err(io(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(path).map_err(|e| QueueError::Io {
        path: path.to_owned(),
        cause: e.error,
    })?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), QueueError> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}
