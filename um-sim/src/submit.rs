//! The submitter: drains the queue through [`crate::client::submit`].
//!
//! A voicemail leaves the queue only after the server's 250 reply to DATA (it
//! then moves to `sent/`). A failed attempt rewrites the header's Attempts and
//! LastError atomically and the item stays; when Attempts reaches the limit it
//! moves to `badvoicemail/`. A permanent reply (5yz, RFC 5321 4.2.1) moves it
//! there at once, with the reply in its reason ([`PERMANENT`]); 4yz replies
//! and broken connections are retried. Whether Exchange UM itself gives up
//! on the first 5yz is not verified here (no Exchange server in the lab). A crash at any moment loses nothing: at worst an
//! item delivered just before the crash is sent again, with the same Message-ID.
//!
//! File work never runs on a runtime worker: reading and checking an item and
//! building its message, the scan, moving an item (renames and fsyncs),
//! rewriting its header and writing reason files all go to tokio's blocking
//! pool; the events file is written through `tokio::fs`, which does the same
//! (and is not fsynced: it is a log, not the queue's state).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;

use crate::audio::{self, AudioError};
use crate::client::{self, Attempt, ClientSettings, Identity};
use crate::events::{self, AttemptRecord};
use crate::message;
use crate::profile::Profile;
use crate::queue::{Item, Queue, QueueError};

/// How to submit.
#[derive(Clone, Debug)]
pub struct SubmitSettings {
    /// Connection and SMTP settings.
    pub client: ClientSettings,
    /// Certificate and key.
    pub identity: Identity,
    /// Client profile.
    pub profile: Profile,
    /// Attempts (across runs) after which an item moves to badvoicemail/.
    pub max_attempts: u32,
    /// Wait before trying a failed item again (watch mode).
    pub retry_delay: Duration,
    /// Items submitted at once.
    pub concurrency: usize,
    /// JSON-lines file, one record per attempt.
    pub events_file: Option<PathBuf>,
}

/// What a pass over the queue did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Delivered and moved to sent/.
    pub delivered: usize,
    /// Failed and still queued.
    pub queued: usize,
    /// Moved to badvoicemail/ (exhausted or unusable).
    pub bad: usize,
}

/// How the reason of an item given up on a permanent reply begins (the
/// reply follows). um-sim follows RFC 5321 4.2.1 here; Exchange UM's own
/// handling of a 5yz reply is not verified here (no Exchange server in the
/// lab).
pub const PERMANENT: &str = "permanent SMTP reply (5yz), not retried";

/// What each finished attempt reports to the caller (for the terminal).
pub type Report = Arc<dyn Fn(String) + Send + Sync>;

/// One pass: every item in the queue once (those cooling down after a
/// failure excepted). `progress(n)` counts finished items.
pub async fn pass(
    queue: &Queue,
    settings: &Arc<SubmitSettings>,
    cooling: &mut HashMap<String, Instant>,
    report: &Report,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Summary, QueueError> {
    let q = queue.clone();
    let (items, rejected) = blocking(move || {
        q.sweep_orphans()?;
        q.scan()
    })
    .await?;
    let mut summary = Summary {
        bad: rejected.len(),
        ..Summary::default()
    };
    for r in rejected {
        report(format!(
            "moved {} to badvoicemail/: {}",
            r.header_path.display(),
            r.reason
        ));
    }
    let now = Instant::now();
    let ready: Vec<Item> = items
        .into_iter()
        .filter(|i| cooling.get(&i.guid).is_none_or(|t| *t <= now))
        .collect();
    let events = match &settings.events_file {
        Some(p) => Some(Arc::new(Mutex::new(
            tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .await
                .map_err(|cause| QueueError::Io {
                    path: p.clone(),
                    cause,
                })?,
        ))),
        None => None,
    };
    let limit = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for item in ready {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        let (task_queue, task_settings, events, report) = (
            queue.clone(),
            settings.clone(),
            events.clone(),
            report.clone(),
        );
        tasks.spawn(async move {
            let result = one(
                &task_queue,
                &task_settings,
                &item,
                events.as_deref(),
                &report,
            )
            .await;
            drop(permit);
            (item.guid, result)
        });
        while let Some(done) = tasks.try_join_next() {
            tally(done, &mut summary, cooling, settings, progress)?;
        }
    }
    while let Some(done) = tasks.join_next().await {
        tally(done, &mut summary, cooling, settings, progress)?;
    }
    Ok(summary)
}

type Done = Result<(String, Result<Disposition, QueueError>), tokio::task::JoinError>;

fn tally(
    done: Done,
    summary: &mut Summary,
    cooling: &mut HashMap<String, Instant>,
    settings: &SubmitSettings,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), QueueError> {
    progress(1);
    let Ok((guid, result)) = done else {
        // A panicked task leaves its item untouched in the queue.
        summary.queued += 1;
        return Ok(());
    };
    match result? {
        Disposition::Sent => summary.delivered += 1,
        Disposition::Queued => {
            summary.queued += 1;
            cooling.insert(guid, Instant::now() + settings.retry_delay);
        }
        Disposition::Bad => summary.bad += 1,
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Disposition {
    Sent,
    Queued,
    Bad,
}

async fn one(
    queue: &Queue,
    settings: &SubmitSettings,
    item: &Item,
    events: Option<&Mutex<tokio::fs::File>>,
    report: &Report,
) -> Result<Disposition, QueueError> {
    let attempt = match attempt(queue, settings, item).await? {
        Ok(attempt) => attempt,
        Err(e) => {
            let reason = e.to_string();
            let (q, it, why) = (queue.clone(), item.clone(), reason.clone());
            blocking(move || q.give_up(&it, &why)).await?;
            report(format!("moved {} to badvoicemail/: {reason}", item.guid));
            return Ok(Disposition::Bad);
        }
    };
    let attempt_number = item.header.attempts + 1;
    let event = events::for_attempt(&item.header_path, &settings.client.server, &attempt);
    let disposition = if attempt.delivered {
        Disposition::Sent
    } else {
        let error = attempt.error.clone().unwrap_or_default();
        let max_attempts = settings.max_attempts;
        let permanent = attempt.permanent();
        let (q, it) = (queue.clone(), item.clone());
        blocking(move || {
            let header = q.record_failure(&it, &error)?;
            let reason = if permanent {
                format!(
                    "{PERMANENT}: {error} (attempt {}; RFC 5321 4.2.1)",
                    header.attempts
                )
            } else if header.attempts < max_attempts {
                return Ok(Disposition::Queued);
            } else {
                format!(
                    "gave up after {} attempts; last error: {error}",
                    header.attempts
                )
            };
            q.give_up(&Item { header, ..it }, &reason)?;
            Ok(Disposition::Bad)
        })
        .await?
    };
    let when = events::now_rfc3339();
    match &event {
        Some(ev) => report(events::render(ev, &when)),
        None => report(format!(
            "delivered {} ({}){}",
            item.guid,
            attempt
                .smtp
                .iter()
                .rev()
                .find(|e| e.code == 250)
                .map_or(String::new(), |e| format!("{} {}", e.code, e.reply)),
            attempt
                .unjudged
                .as_ref()
                .map_or(String::new(), |why| format!(
                    "; the profile's record rules were not judged: {why}"
                ))
        )),
    }
    if let Some(file) = events {
        write_record(
            file,
            item,
            settings,
            &attempt,
            attempt_number,
            event.as_ref(),
            disposition,
            when,
        )
        .await;
    }
    Ok(disposition)
}

/// Why an item cannot be submitted. The text is the reason written beside it
/// in `badvoicemail/`; the item's files decide it, so trying again would not
/// help.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    /// The audio file is over [`audio::MAX_WAV_FILE`].
    #[error("audio file {name}: larger than {limit} bytes, the most um-sim reads (see the README)")]
    AudioTooLarge {
        /// The audio file's name.
        name: String,
        /// The cap.
        limit: u64,
    },
    /// The audio failed the check.
    #[error("audio file {name}: {error}")]
    Audio {
        /// The audio file's name.
        name: String,
        /// What is wrong with it.
        error: AudioError,
    },
    /// The message could not be built.
    #[error("cannot build the message: {0}")]
    Message(#[from] message::MessageError),
    /// Building the message panicked (a bug, but one this item's files set
    /// off, so it would again on every run).
    #[error("cannot build the message: um-sim failed on this item: {0}")]
    Crashed(String),
}

/// Reads an item's audio (capped), checks it, and builds the message. Blocking
/// file I/O and CPU work: run it on the blocking pool.
/// `Ok(Err(_))`: the item cannot be submitted.
pub fn prepare(item: &Item, from: &str) -> Result<Result<Vec<u8>, Unusable>, QueueError> {
    let audio = match &item.audio_path {
        Some(p) => {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let bytes = match certgen::fsutil::read_capped(p, audio::MAX_WAV_FILE) {
                Ok(bytes) => bytes,
                Err(certgen::Error::TooLarge { limit, .. }) => {
                    return Ok(Err(Unusable::AudioTooLarge { name, limit }));
                }
                Err(certgen::Error::Io { path, cause }) => {
                    return Err(QueueError::Io { path, cause });
                }
                Err(other) => {
                    return Err(QueueError::Io {
                        path: p.clone(),
                        cause: std::io::Error::other(other.to_string()),
                    });
                }
            };
            if let Err(error) = audio::check(&bytes, item.header.duration) {
                return Ok(Err(Unusable::Audio { name, error }));
            }
            Some(bytes)
        }
        None => None,
    };
    Ok(message::build(&item.header, &item.guid, from, audio.as_deref()).map_err(Unusable::from))
}

/// One submission of a queued item: reads and checks its audio, builds the
/// message (both on the blocking pool) and submits it. On the server's 250
/// reply to DATA the item moves to `sent/` at once, before QUIT, which keeps
/// the window for a duplicate after a crash as small as it can be.
/// `Ok(Err(_))`: the item cannot be submitted (it stays where it is; the
/// caller moves it to `badvoicemail/`). A failed delivery is in the attempt;
/// the caller records it.
pub async fn attempt(
    queue: &Queue,
    settings: &SubmitSettings,
    item: &Item,
) -> Result<Result<Attempt, Unusable>, QueueError> {
    let (owned, from) = (item.clone(), settings.client.from.clone());
    let msg = match tokio::task::spawn_blocking(move || prepare(&owned, &from)).await {
        Ok(Ok(Ok(msg))) => msg,
        Ok(Ok(Err(unusable))) => return Ok(Err(unusable)),
        Ok(Err(e)) => return Err(e),
        Err(join) => match join.try_into_panic() {
            Ok(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned());
                return Ok(Err(Unusable::Crashed(what)));
            }
            // Cancelled (the runtime is shutting down): not the item's fault.
            Err(join) => {
                return Err(QueueError::Io {
                    path: item.header_path.clone(),
                    cause: std::io::Error::other(join.to_string()),
                });
            }
        },
    };
    // Filled by the hook the client calls on the 250 reply to DATA.
    let mut moved: Option<Result<PathBuf, QueueError>> = None;
    let attempt = client::submit(
        &settings.client,
        &settings.identity,
        &settings.profile,
        &item.header.recipient,
        &msg,
        async || {
            let (queue, item) = (queue.clone(), item.clone());
            moved = Some(blocking(move || queue.mark_sent(&item)).await);
        },
    )
    .await;
    if attempt.delivered {
        match moved {
            Some(result) => {
                result?;
            }
            None => {
                let (queue, item) = (queue.clone(), item.clone());
                blocking(move || queue.mark_sent(&item)).await?;
            }
        }
    }
    Ok(Ok(attempt))
}

/// Runs a queue operation (renames, atomic writes, fsyncs) on the blocking
/// pool, so a slow disk stalls neither a runtime worker nor the other items'
/// sessions on it. A panic in the operation is a bug and panics on.
async fn blocking<T: Send + 'static>(
    op: impl FnOnce() -> Result<T, QueueError> + Send + 'static,
) -> Result<T, QueueError> {
    match tokio::task::spawn_blocking(op).await {
        Ok(result) => result,
        Err(join) => match join.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(join) => Err(QueueError::Interrupted(join.to_string())),
        },
    }
}

#[allow(clippy::too_many_arguments)]
async fn write_record(
    file: &Mutex<tokio::fs::File>,
    item: &Item,
    settings: &SubmitSettings,
    attempt: &Attempt,
    attempt_number: u32,
    event: Option<&events::UmEvent>,
    disposition: Disposition,
    time: String,
) {
    let record = AttemptRecord {
        time,
        item: &item.guid,
        header: item.header_path.display().to_string(),
        attempt_number,
        server: &settings.client.server,
        profile: &settings.profile.name,
        preset: settings.profile.preset.map(|p| p.name),
        outcome: if attempt.delivered {
            "delivered"
        } else {
            "failed"
        },
        event_id: event.map(|e| e.id),
        disposition: match disposition {
            Disposition::Sent => "sent",
            Disposition::Queued => "queued",
            Disposition::Bad => "badvoicemail",
        },
        attempt,
    };
    let mut line = match serde_json::to_vec(&record) {
        Ok(line) => line,
        Err(e) => {
            tracing::error!(item = %item.guid, "cannot encode the attempt record: {e}");
            return;
        }
    };
    line.push(b'\n');
    let mut f = file.lock().await;
    let written = match f.write_all(&line).await {
        Ok(()) => f.flush().await,
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        let path = settings
            .events_file
            .as_deref()
            .map_or_else(String::new, |p| p.display().to_string());
        tracing::error!(item = %item.guid, "cannot write the events file {path}: {e}");
    }
}
