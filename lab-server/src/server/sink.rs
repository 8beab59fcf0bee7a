//! The JSON-lines event writer: one line per connection, on its own task,
//! behind a bounded channel (a slow disk slows the ends of sessions, it does
//! not grow memory), drained at shutdown so the last lines reach the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::events::ConnectionEvent;

/// Events waiting for the writer before a finished session waits for room.
const QUEUE: usize = 1024;

/// How long shutdown waits for the writer to drain.
pub(super) const WRITER_DRAIN: Duration = Duration::from_secs(10);

/// Opens `path` for appending and starts the writer. The writer ends when
/// every sender is gone and the queue is written.
pub(super) async fn spawn_event_writer(
    path: PathBuf,
) -> std::io::Result<(mpsc::Sender<ConnectionEvent>, JoinHandle<()>)> {
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await?;
    let (tx, mut rx) = mpsc::channel::<ConnectionEvent>(QUEUE);
    let handle = tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            let mut line = match serde_json::to_vec(&ev) {
                Ok(line) => line,
                Err(e) => {
                    tracing::error!("event {} not written: {e}", ev.id);
                    continue;
                }
            };
            line.push(b'\n');
            // tokio's File writes on the blocking pool; flush so each line is
            // in the file when the next reader looks.
            let written = match file.write_all(&line).await {
                Ok(()) => file.flush().await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                tracing::error!("cannot write events to {}: {e}", path.display());
                break;
            }
        }
    });
    Ok((tx, handle))
}

/// Appends lines to a human log.
pub(super) async fn append_lines(path: &Path, lines: &[String]) -> std::io::Result<()> {
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await?;
    for l in lines {
        file.write_all(l.as_bytes()).await?;
        file.write_all(b"\n").await?;
    }
    file.flush().await
}
