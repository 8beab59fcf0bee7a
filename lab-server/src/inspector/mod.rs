//! The inspector: a web page and a JSON API (`--http 127.0.0.1:8025`, off
//! unless asked) showing every connection's CertificateRequest, cut and
//! outcome, every stored message with its voicemail fields and audio, and the
//! store with each root's fate; connection events also stream live
//! (server-sent events on `/api/stream`).
//!
//! It keeps the last [`MAX_CONNECTIONS`] connection events and
//! [`MAX_MESSAGES`] messages in memory, fed by the server's event broadcast
//! (subscribed before the first connection is accepted). Messages are read
//! from the Maildir on request, never more than [`MAX_FILE`] bytes. Every
//! string from a peer or a certificate reaches the page as JSON and is put in
//! the document as text, never as markup.

pub mod faults_api;
pub mod view;

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use futures_util::stream::{self, Stream};
use mail_parser::{MessageParser, MimeHeaders};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::events::{ConnectionEvent, Stored};
use crate::policy::Report;
use view::{ConnectionSummary, RequestView, RootView, request_view, summary};

/// Connection events kept (the oldest go first).
pub const MAX_CONNECTIONS: usize = 1_000;
/// Messages listed (the oldest go first; their files stay in the Maildir).
pub const MAX_MESSAGES: usize = 1_000;
/// Largest message file served.
pub const MAX_FILE: u64 = 64 * 1024 * 1024;

/// What the server knew at start: the store, the list and the report.
#[derive(Clone, Debug, Serialize)]
pub struct Setup {
    /// Every root, with its place in the list sent.
    pub roots: Vec<RootView>,
    /// Store indices sent, in order.
    pub sent: Vec<usize>,
    /// The policy's figures.
    pub report: Report,
    /// Start-up log (event 36885 when names were dropped).
    pub startup_log: Vec<String>,
    /// The Maildir's root.
    #[serde(skip)]
    pub maildir: PathBuf,
    /// The fault set, for `/api/faults`.
    #[serde(skip)]
    pub faults: crate::faults::FaultHandle,
}

/// One stored message as the API lists it.
#[derive(Clone, Debug, Serialize)]
pub struct MessageEntry {
    /// Its id in the API.
    pub id: u64,
    /// The connection that delivered it.
    pub connection: u64,
    /// When that connection started.
    pub received: String,
    /// Envelope, size, path and the voicemail check.
    pub stored: Stored,
}

#[derive(Default)]
struct Kept {
    connections: VecDeque<Arc<ConnectionEvent>>,
    messages: BTreeMap<u64, MessageEntry>,
    next_message: u64,
    /// Events the collector missed because it fell behind.
    missed: u64,
}

struct Shared {
    setup: Setup,
    kept: Mutex<Kept>,
    live: broadcast::Sender<ConnectionSummary>,
}

impl Shared {
    fn kept(&self) -> MutexGuard<'_, Kept> {
        // A panic while holding the lock leaves plain data behind: go on.
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, ev: ConnectionEvent) {
        let ev = Arc::new(ev);
        let mut k = self.kept();
        for stored in &ev.stored {
            k.next_message += 1;
            let id = k.next_message;
            k.messages.insert(
                id,
                MessageEntry {
                    id,
                    connection: ev.id,
                    received: ev.started.clone(),
                    stored: stored.clone(),
                },
            );
            while k.messages.len() > MAX_MESSAGES {
                k.messages.pop_first();
            }
        }
        k.connections.push_back(ev.clone());
        while k.connections.len() > MAX_CONNECTIONS {
            k.connections.pop_front();
        }
        drop(k);
        let _ = self.live.send(summary(&ev));
    }
}

/// The running inspector.
pub struct Inspector {
    addr: std::net::SocketAddr,
    collector: JoinHandle<()>,
    http: JoinHandle<()>,
}

impl Inspector {
    /// Serves the inspector on `listener`, fed by `events` (subscribe before
    /// the server accepts its first connection), until `shutdown` turns true.
    pub fn start(
        listener: TcpListener,
        setup: Setup,
        mut events: broadcast::Receiver<ConnectionEvent>,
        mut shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<Inspector> {
        let addr = listener.local_addr()?;
        let (live, _) = broadcast::channel(256);
        let shared = Arc::new(Shared {
            setup,
            kept: Mutex::new(Kept::default()),
            live,
        });
        let feed = shared.clone();
        let collector = tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(ev) => feed.add(ev),
                    Err(broadcast::error::RecvError::Lagged(n)) => feed.kept().missed += n,
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        let app = router(shared);
        let http = tokio::spawn(async move {
            let stop = async move {
                while !*shutdown.borrow() {
                    if shutdown.changed().await.is_err() {
                        break;
                    }
                }
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::warn!("inspector: {e}");
            }
        });
        Ok(Inspector {
            addr,
            collector,
            http,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Stops serving at once (live streams never end on their own).
    pub fn stop(self) {
        self.http.abort();
        self.collector.abort();
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let faults = faults_api::router(shared.setup.faults.clone());
    Router::new()
        .route("/", get(page))
        .route("/inspector.js", get(script))
        .route("/inspector.css", get(style))
        .route("/api/policy", get(policy))
        .route("/api/connections", get(connections))
        .route("/api/connections/{id}", get(connection))
        .route("/api/messages", get(messages))
        .route("/api/messages/{id}", get(message).delete(delete_message))
        .route("/api/messages/{id}/raw", get(raw))
        .route("/api/messages/{id}/audio", get(audio))
        .route("/api/stream", get(live))
        .with_state(shared)
        .merge(faults)
}

type St = State<Arc<Shared>>;

/// The page's policy: scripts and styles only from the inspector's own files
/// (no inline script, so markup that reached the document could not run),
/// fetches and the live stream to itself, audio from itself.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
media-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", include_str!("page.html"))
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("page.js"))
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", include_str!("page.css"))
}

async fn policy(State(s): St) -> Json<Setup> {
    Json(s.setup.clone())
}

/// The connections list, newest first.
#[derive(Serialize)]
struct Connections {
    connections: Vec<ConnectionSummary>,
    missed: u64,
}

async fn connections(State(s): St) -> Json<Connections> {
    let k = s.kept();
    Json(Connections {
        connections: k.connections.iter().rev().map(|e| summary(e)).collect(),
        missed: k.missed,
    })
}

/// One connection: its event and its request decoded against the store.
#[derive(Serialize)]
struct ConnectionDetail {
    event: ConnectionEvent,
    request: Option<RequestView>,
    /// Schannel's event 36885 when the list this connection got was cut.
    events: Vec<String>,
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("no such {what}\n")).into_response()
}

async fn connection(State(s): St, Path(id): Path<u64>) -> Response {
    let ev = s.kept().connections.iter().find(|e| e.id == id).cloned();
    let Some(ev) = ev else {
        return not_found("connection");
    };
    let setup = &s.setup;
    let request = request_view(&setup.roots, &setup.sent, &setup.report, &ev);
    let events = if request.as_ref().is_some_and(|r| r.dropped > 0) {
        setup.startup_log.clone()
    } else {
        Vec::new()
    };
    Json(ConnectionDetail {
        event: (*ev).clone(),
        request,
        events,
    })
    .into_response()
}

async fn messages(State(s): St) -> Json<Vec<MessageEntry>> {
    Json(s.kept().messages.values().rev().cloned().collect())
}

/// One message: the entry and the headers a UM voicemail carries.
#[derive(Serialize)]
struct MessageDetail {
    #[serde(flatten)]
    entry: MessageEntry,
    headers: BTreeMap<String, String>,
}

/// Headers the messages view shows.
const HEADERS: &[&str] = &[
    "From",
    "To",
    "Subject",
    "Date",
    "Content-Class",
    "X-CallingTelephoneNumber",
    "X-VoiceMessageSenderName",
    "X-CallID",
    "X-VoiceMessageDuration",
    "X-AttachmentOrder",
];

fn entry(s: &Shared, id: u64) -> Option<MessageEntry> {
    s.kept().messages.get(&id).cloned()
}

/// The message file, if it is still there and not over [`MAX_FILE`].
async fn read_message(s: &Shared, e: &MessageEntry) -> Result<Vec<u8>, Response> {
    let path = PathBuf::from(&e.stored.path);
    if !path.starts_with(&s.setup.maildir) {
        return Err(not_found("message file"));
    }
    match tokio::fs::metadata(&path).await {
        Ok(m) if m.len() <= MAX_FILE => {}
        Ok(_) => return Err((StatusCode::PAYLOAD_TOO_LARGE, "message too large\n").into_response()),
        Err(_) => return Err(not_found("message file")),
    }
    tokio::fs::read(&path)
        .await
        .map_err(|_| not_found("message file"))
}

async fn message(State(s): St, Path(id): Path<u64>) -> Response {
    let Some(e) = entry(&s, id) else {
        return not_found("message");
    };
    let bytes = match read_message(&s, &e).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut headers = BTreeMap::new();
    if let Some(m) = MessageParser::default().parse(&bytes) {
        for name in HEADERS {
            if let Some(v) = m.header_raw(*name) {
                headers.insert((*name).to_owned(), v.trim().to_owned());
            }
        }
    }
    Json(MessageDetail { entry: e, headers }).into_response()
}

async fn raw(State(s): St, Path(id): Path<u64>) -> Response {
    let Some(e) = entry(&s, id) else {
        return not_found("message");
    };
    match read_message(&s, &e).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "message/rfc822".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"message-{id}.eml\""),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(r) => r,
    }
}

async fn audio(State(s): St, Path(id): Path<u64>) -> Response {
    let Some(e) = entry(&s, id) else {
        return not_found("message");
    };
    let bytes = match read_message(&s, &e).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let wav = MessageParser::default().parse(&bytes).and_then(|m| {
        m.attachments()
            .find(|p| {
                p.content_type()
                    .is_some_and(|ct| ct.ctype().eq_ignore_ascii_case("audio"))
            })
            .map(|p| p.contents().to_vec())
    });
    match wav {
        Some(w) => ([(header::CONTENT_TYPE, "audio/wav")], w).into_response(),
        None => not_found("audio attachment"),
    }
}

async fn delete_message(State(s): St, Path(id): Path<u64>) -> Response {
    let Some(e) = entry(&s, id) else {
        return not_found("message");
    };
    let path = PathBuf::from(&e.stored.path);
    if path.starts_with(&s.setup.maildir) {
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return (StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")).into_response();
            }
        }
    }
    s.kept().messages.remove(&id);
    StatusCode::NO_CONTENT.into_response()
}

async fn live(State(s): St) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = s.live.subscribe();
    let events = stream::unfold(rx, |mut rx| async move {
        let ev = match rx.recv().await {
            Ok(c) => Event::default()
                .event("connection")
                .json_data(&c)
                .unwrap_or_else(|_| Event::default().comment("unserialisable")),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                Event::default().event("lagged").data(n.to_string())
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(ev), rx))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
