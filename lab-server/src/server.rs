//! The SMTP + STARTTLS server on tokio: the I/O edge around [`crate::smtp`],
//! [`crate::tls`] and [`crate::maildir`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use certgen::Store;

use crate::events::{
    CertRequestInfo, ClientCert, ConnectionEvent, Exchange, Handshake, Stored, event_36885,
    now_rfc3339,
};
use crate::maildir::{Maildir, check_voicemail};
use crate::policy::{self, Report, TlsVersion};
use crate::shaper::Layout;
use crate::smtp::{DataReader, Limits, Next, Reply, Session, SessionConfig};
use crate::tls::{ClientAuth, ShapedStream, TlsInputs, WireFacts, message_shape, server_config};

/// Everything the server is started with.
pub struct Settings {
    /// Address to listen on (127.0.0.1:2525 unless told otherwise).
    pub listen: SocketAddr,
    /// Name in the greeting.
    pub hostname: String,
    /// The trust store, in enumeration order.
    pub store: Store,
    /// Roots whose fate the report states: (label, store index).
    pub named: Vec<(String, usize)>,
    /// Server certificate chain.
    pub chain: Vec<CertificateDer<'static>>,
    /// Server key.
    pub key: PrivateKeyDer<'static>,
    /// CA-list policy.
    pub policy: policy::Settings,
    /// Client authentication.
    pub client_auth: ClientAuth,
    /// TLS version.
    pub tls_version: TlsVersion,
    /// Record size, header included.
    pub max_fragment: usize,
    /// Record layout of the first flight.
    pub layout: Layout,
    /// Log TLS secrets to SSLKEYLOGFILE.
    pub keylog: bool,
    /// Maildir for accepted messages.
    pub maildir: PathBuf,
    /// JSON-lines file, one record per connection.
    pub events_file: Option<PathBuf>,
    /// Human log in the Windows event style.
    pub log_file: Option<PathBuf>,
    /// Refuse mail before STARTTLS.
    pub require_tls: bool,
    /// SMTP limits.
    pub limits: Limits,
    /// Idle time allowed between commands.
    pub idle_timeout: Duration,
    /// Time allowed for one DATA transfer.
    pub data_timeout: Duration,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Concurrent connections; the excess get 421.
    pub max_connections: usize,
}

impl Settings {
    /// Lab defaults around a store and a server certificate.
    pub fn new(
        store: Store,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        maildir: PathBuf,
    ) -> Settings {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 2525)),
            hostname: "hub.lab.test".to_owned(),
            store,
            named: Vec::new(),
            chain,
            key,
            policy: policy::Settings::default(),
            client_auth: ClientAuth::Required,
            tls_version: TlsVersion::Tls12,
            max_fragment: 16_389,
            layout: Layout::PerMessage,
            keylog: false,
            maildir,
            events_file: None,
            log_file: None,
            require_tls: true,
            limits: Limits::default(),
            idle_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            handshake_timeout: Duration::from_secs(30),
            max_connections: 100,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The CA list cannot be sent.
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    /// TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A file or socket could not be opened.
    #[error("{what}: {source}")]
    Io {
        /// what was being opened
        what: String,
        /// the reason
        source: std::io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Io { what, source }
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    report: Report,
    events: broadcast::Sender<ConnectionEvent>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    log: Vec<String>,
}

/// State shared by connection tasks.
struct Shared {
    session: SessionConfig,
    acceptor: TlsAcceptor,
    layout: Layout,
    max_fragment: usize,
    tls_version: TlsVersion,
    client_auth: ClientAuth,
    report: Report,
    advertised: Vec<Vec<u8>>,
    maildir: Maildir,
    idle_timeout: Duration,
    data_timeout: Duration,
    handshake_timeout: Duration,
    events: broadcast::Sender<ConnectionEvent>,
    sink: Option<mpsc::UnboundedSender<ConnectionEvent>>,
    next_id: AtomicU64,
}

impl Server {
    /// Plans the CA list, builds TLS, binds and starts serving.
    pub async fn start(settings: Settings) -> Result<Server, StartError> {
        let shape = message_shape(settings.tls_version);
        let entries = policy::entries(&settings.store);
        let plan = policy::plan(
            &entries,
            &settings.policy,
            &shape,
            settings.max_fragment,
            &settings.named,
        )?;
        let advertised: Vec<Vec<u8>> = plan
            .sent
            .iter()
            .filter_map(|&i| settings.store.roots().get(i))
            .map(|r| r.subject_der().to_vec())
            .collect();
        let roots: Vec<&[u8]> = settings.store.roots().iter().map(|r| r.der()).collect();
        let (config, rejected) = server_config(TlsInputs {
            roots: &roots,
            advertised: &advertised,
            chain: settings.chain,
            key: settings.key,
            client_auth: settings.client_auth,
            version: settings.tls_version,
            max_fragment: settings.max_fragment,
            keylog: settings.keylog,
        })?;
        let maildir = Maildir::create(&settings.maildir, &settings.hostname)
            .map_err(io_err(format!("maildir {}", settings.maildir.display())))?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(io_err(format!("listen on {}", settings.listen)))?;
        let addr = listener.local_addr().map_err(io_err("listening address"))?;

        let mut log = Vec::new();
        if rejected > 0 {
            log.push(format!(
                "warning: {rejected} roots of the store are not usable as trust anchors"
            ));
        }
        if plan.report.truncated && settings.client_auth != ClientAuth::None {
            log.push(event_36885(&plan.report, &now_rfc3339()));
        }
        if let Some(path) = &settings.log_file {
            append_lines(path, &log)
                .await
                .map_err(io_err(format!("log file {}", path.display())))?;
        }
        let sink = match &settings.events_file {
            Some(path) => Some(spawn_event_writer(path.clone()).await?),
            None => None,
        };
        let (events, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            session: SessionConfig {
                hostname: settings.hostname,
                tls_offered: true,
                require_tls: settings.require_tls,
                limits: settings.limits,
            },
            acceptor: TlsAcceptor::from(config),
            layout: settings.layout,
            max_fragment: settings.max_fragment,
            tls_version: settings.tls_version,
            client_auth: settings.client_auth,
            report: plan.report.clone(),
            advertised,
            maildir,
            idle_timeout: settings.idle_timeout,
            data_timeout: settings.data_timeout,
            handshake_timeout: settings.handshake_timeout,
            events: events.clone(),
            sink,
            next_id: AtomicU64::new(1),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let limit = Arc::new(Semaphore::new(settings.max_connections.max(1)));
        let task = tokio::spawn(accept_loop(listener, shared, limit, shutdown_rx));
        Ok(Server {
            addr,
            report: plan.report,
            events,
            shutdown,
            task,
            log,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the policy decided.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Start-up log entries (event 36885 when the list was truncated).
    pub fn startup_log(&self) -> &[String] {
        &self.log
    }

    /// A stream of per-connection events, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.events.subscribe()
    }

    /// Stops accepting; sessions waiting for a command get 421; transactions
    /// in flight may finish until `grace` has passed.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
        }
    }
}

async fn append_lines(path: &std::path::Path, lines: &[String]) -> std::io::Result<()> {
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

async fn spawn_event_writer(
    path: PathBuf,
) -> Result<mpsc::UnboundedSender<ConnectionEvent>, StartError> {
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await
        .map_err(io_err(format!("events file {}", path.display())))?;
    let (tx, mut rx) = mpsc::unbounded_channel::<ConnectionEvent>();
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            let Ok(mut line) = serde_json::to_vec(&ev) else {
                continue;
            };
            line.push(b'\n');
            if file.write_all(&line).await.is_err() || file.flush().await.is_err() {
                tracing::error!("cannot write events to {}", path.display());
                break;
            }
        }
    });
    Ok(tx)
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of descriptors and the like: back off, keep serving.
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let shared = shared.clone();
                let shutdown = shutdown.clone();
                match limit.clone().try_acquire_owned() {
                    Ok(permit) => {
                        tasks.spawn(async move {
                            connection(tcp, peer, shared, shutdown).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tasks.spawn(async move {
                            let mut tcp = tcp;
                            let reply = "421 4.3.2 Too many connections, try again later\r\n";
                            let _ = tcp.write_all(reply.as_bytes()).await;
                            let _ = tcp.shutdown().await;
                        });
                    }
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

/// How a command loop ended.
enum LoopEnd {
    StartTls,
    Closed(String),
}

/// Per-connection context for the command loop.
struct Conn<'a> {
    shared: &'a Shared,
    session: Session,
    event: ConnectionEvent,
    shutdown: watch::Receiver<bool>,
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let mut conn = Conn {
        shared: &shared,
        session: Session::new(shared.session.clone()),
        event: ConnectionEvent {
            id: shared.next_id.fetch_add(1, Ordering::Relaxed),
            peer: peer.to_string(),
            started: now_rfc3339(),
            ..ConnectionEvent::default()
        },
        shutdown,
    };
    let end = serve(tcp, &mut conn).await;
    conn.event.end = end;
    if let Some(sink) = &shared.sink {
        let _ = sink.send(conn.event.clone());
    }
    let _ = shared.events.send(conn.event);
}

async fn serve(tcp: TcpStream, conn: &mut Conn<'_>) -> String {
    let mut plain = BufReader::new(tcp);
    let greeting = conn.session.greeting();
    if let Err(e) = send(&mut plain, &greeting).await {
        return format!("write failed: {e}");
    }
    match command_loop(&mut plain, conn).await {
        LoopEnd::Closed(why) => return why,
        LoopEnd::StartTls => {}
    }
    // RFC 3207 5: bytes the client sent after STARTTLS, before the handshake,
    // belong to the plaintext session. Drop them (CVE-2011-0411).
    conn.event.plaintext_discarded = plain.buffer().len();
    let tcp = plain.into_inner();
    let facts = Arc::new(std::sync::Mutex::new(WireFacts::default()));
    let shaped = ShapedStream::new(
        tcp,
        conn.shared.layout,
        conn.shared.max_fragment,
        facts.clone(),
    );
    let accepted = tokio::time::timeout(
        conn.shared.handshake_timeout,
        conn.shared.acceptor.accept(shaped),
    )
    .await;
    let facts = facts.lock().map(|f| f.clone()).unwrap_or_default();
    conn.event.certificate_request = request_info(conn.shared, &facts);
    let tls = match accepted {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            conn.event.handshake = Some(handshake_failure(&e, facts.alert));
            return format!("TLS handshake failed: {e}");
        }
        Err(_) => {
            conn.event.handshake = Some(Handshake {
                outcome: "failed",
                error: Some("handshake timed out".to_owned()),
                alert: None,
            });
            return "TLS handshake timed out".to_owned();
        }
    };
    record_tls(conn, &tls);
    conn.session.tls_established();
    let mut secure = BufReader::new(tls);
    let end = match command_loop(&mut secure, conn).await {
        LoopEnd::Closed(why) => why,
        LoopEnd::StartTls => "STARTTLS inside TLS".to_owned(),
    };
    let _ = secure.get_mut().shutdown().await;
    end
}

/// The failed handshake: the error, and the alert involved. A sent alert is
/// read off the wire by the shaper (plaintext in TLS 1.2 before
/// ChangeCipherSpec); a received one comes from rustls's error.
fn handshake_failure(e: &std::io::Error, sent: Option<[u8; 2]>) -> Handshake {
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let alert = match (rustls_error, sent) {
        (Some(rustls::Error::AlertReceived(a)), _) => Some(format!("received {a:?}")),
        (_, Some([_, description])) => Some(format!(
            "sent {:?}",
            rustls::AlertDescription::from(description)
        )),
        _ => None,
    };
    Handshake {
        outcome: "failed",
        error: Some(e.to_string()),
        alert,
    }
}

fn record_tls(conn: &mut Conn<'_>, tls: &tokio_rustls::server::TlsStream<ShapedStream<TcpStream>>) {
    let (_, state) = tls.get_ref();
    conn.event.tls_version = state.protocol_version().map(|v| format!("{v:?}"));
    conn.event.cipher_suite = state
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()));
    conn.event.handshake = Some(Handshake {
        outcome: "ok",
        error: None,
        alert: None,
    });
    conn.event.client_certificate = state
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| client_cert(leaf));
}

/// The CertificateRequest for the event: read off the wire in TLS 1.2, from
/// the lab's own encoding in TLS 1.3 (encrypted there).
fn request_info(shared: &Shared, facts: &WireFacts) -> Option<CertRequestInfo> {
    if shared.client_auth == ClientAuth::None {
        return None;
    }
    match (shared.tls_version, &facts.request) {
        (TlsVersion::Tls12, Some(seen)) => Some(CertRequestInfo {
            bytes: seen.message_bytes,
            records: seen.records,
            ca_names: seen.ca_names.as_ref().map_or(0, Vec::len),
            source: "wire",
        }),
        (TlsVersion::Tls13, _) if facts.server_hello => Some(CertRequestInfo {
            bytes: shared.report.message_bytes,
            records: shared.report.records,
            ca_names: shared.advertised.len(),
            source: "encoding",
        }),
        _ => None,
    }
}

fn client_cert(der: &CertificateDer<'_>) -> Option<ClientCert> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    Some(ClientCert {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
    })
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    reply: &Reply,
) -> std::io::Result<()> {
    let stream = io.get_mut();
    stream.write_all(reply.to_string().as_bytes()).await?;
    stream.flush().await
}

/// A line read with a length limit.
enum Line {
    /// The line without its line end, and whether that end was CRLF (not a bare LF).
    Text(Vec<u8>, bool),
    TooLong,
    Eof,
}

/// Reads one line (LF-terminated; CRLF stripped) keeping at most `max` bytes
/// in memory: a longer line is consumed to its end and reported as too long.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, max: usize) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(Line::Eof);
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            line.extend_from_slice(chunk.get(..take).unwrap_or_default());
            if line.len() > max {
                too_long = true;
                line = Vec::new();
            }
        }
        r.consume(take);
        if done {
            break;
        }
    }
    if too_long {
        return Ok(Line::TooLong);
    }
    if line.ends_with(b"\n") {
        line.pop();
    }
    let crlf = line.ends_with(b"\r");
    if crlf {
        line.pop();
    }
    Ok(Line::Text(line, crlf))
}

async fn command_loop<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    conn: &mut Conn<'_>,
) -> LoopEnd {
    let max_line = conn.shared.session.limits.max_line;
    loop {
        let line = tokio::select! {
            r = tokio::time::timeout(conn.shared.idle_timeout, read_line(io, max_line)) => r,
            _ = conn.shutdown.changed() => {
                let reply = Reply { code: 421, lines: vec!["4.3.2 Service shutting down".into()] };
                let _ = send(io, &reply).await;
                return LoopEnd::Closed("server shutting down".into());
            }
        };
        let (reply, next, command) = match line {
            Err(_) => {
                let reply = Reply {
                    code: 421,
                    lines: vec!["4.4.2 Idle timeout, closing connection".into()],
                };
                let _ = send(io, &reply).await;
                return LoopEnd::Closed("idle timeout".into());
            }
            Ok(Err(e)) => return LoopEnd::Closed(format!("read failed: {e}")),
            Ok(Ok(Line::Eof)) => return LoopEnd::Closed("client closed the connection".into()),
            Ok(Ok(Line::TooLong)) => {
                let (r, n) = conn.session.line_too_long();
                (r, n, "<line over the limit>".to_owned())
            }
            Ok(Ok(Line::Text(text, _))) => {
                let (r, n) = conn.session.command(&text);
                (r, n, printable(&text))
            }
        };
        conn.event.smtp.push(exchange(command, &reply));
        if let Err(e) = send(io, &reply).await {
            return LoopEnd::Closed(format!("write failed: {e}"));
        }
        match next {
            Next::Command => {}
            Next::Close => return LoopEnd::Closed(format!("closed after {}", reply.code)),
            Next::StartTls => return LoopEnd::StartTls,
            Next::Data => {
                if let Some(end) = receive_data(io, conn).await {
                    return end;
                }
            }
        }
    }
}

/// Reads a message, stores it and replies. `Some` when the connection ends.
async fn receive_data<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    conn: &mut Conn<'_>,
) -> Option<LoopEnd> {
    let shared = conn.shared;
    let mut data = DataReader::new(shared.session.limits.max_message);
    // The whole transfer is bounded by the DATA timeout, and each line by the
    // idle timeout, so a client gone silent mid-DATA does not hold its slot.
    let read = tokio::time::timeout(shared.data_timeout, async {
        loop {
            let line = tokio::time::timeout(
                shared.idle_timeout,
                read_line(io, shared.session.limits.max_line),
            )
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
            match line {
                Line::Eof => return Ok(false),
                Line::TooLong => {
                    data.line(b"", true, true);
                }
                Line::Text(text, crlf) => {
                    if data.line(&text, crlf, false) {
                        return Ok(true);
                    }
                }
            }
        }
    })
    .await;
    let timed_out = |r: &Result<Result<bool, std::io::Error>, _>| match r {
        Err(_) => true,
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::TimedOut,
        Ok(Ok(_)) => false,
    };
    if timed_out(&read) {
        let reply = Reply {
            code: 421,
            lines: vec!["4.4.2 DATA timeout, closing connection".into()],
        };
        let _ = send(io, &reply).await;
        return Some(LoopEnd::Closed("DATA timeout; nothing stored".into()));
    }
    match read {
        Err(_) => return Some(LoopEnd::Closed("DATA timeout; nothing stored".into())),
        Ok(Err::<bool, std::io::Error>(e)) => {
            return Some(LoopEnd::Closed(format!(
                "read failed in DATA: {e}; nothing stored"
            )));
        }
        Ok(Ok(false)) => {
            return Some(LoopEnd::Closed(
                "client closed the connection in DATA; nothing stored".into(),
            ));
        }
        Ok(Ok(true)) => {}
    }
    let reply = match conn.session.data_received(&data) {
        Err(reply) => reply,
        Ok(envelope) => {
            let message = with_received_header(conn, &envelope.helo, data.body());
            let maildir = shared.maildir.clone();
            let stored = tokio::task::spawn_blocking(move || {
                maildir.deliver(&message).map(|path| (path, message))
            })
            .await;
            match stored {
                Ok(Ok((path, message))) => {
                    let id = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    conn.event.stored.push(Stored {
                        path: path.display().to_string(),
                        bytes: message.len(),
                        from: envelope.from,
                        to: envelope.to,
                        voicemail: check_voicemail(&message),
                    });
                    conn.session.stored(Ok(&id))
                }
                Ok(Err(e)) => conn.session.stored(Err(&e.to_string())),
                Err(e) => conn.session.stored(Err(&e.to_string())),
            }
        }
    };
    conn.event.smtp.push(exchange(
        format!("<message, {} octets>", data.size()),
        &reply,
    ));
    if let Err(e) = send(io, &reply).await {
        return Some(LoopEnd::Closed(format!("write failed: {e}")));
    }
    None
}

/// Prepends a Received header (RFC 5321 4.4) naming the TLS session.
fn with_received_header(conn: &Conn<'_>, helo: &str, body: &[u8]) -> Vec<u8> {
    let tls = match (&conn.event.tls_version, &conn.event.client_certificate) {
        (Some(v), Some(c)) => format!(" ({v}, client certificate {})", c.subject),
        (Some(v), None) => format!(" ({v}, no client certificate)"),
        _ => String::new(),
    };
    let with = if conn.session.tls_active() {
        "ESMTPS"
    } else {
        "ESMTP"
    };
    let header = format!(
        "Received: from {} ({})\r\n\tby {} (umlab lab-server) with {with}{tls};\r\n\t{}\r\n",
        printable(helo.as_bytes()),
        conn.event.peer,
        conn.shared.session.hostname,
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap_or_default()
    );
    let mut out = Vec::with_capacity(header.len() + body.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(body);
    out
}

fn exchange(command: String, reply: &Reply) -> Exchange {
    Exchange {
        command,
        code: reply.code,
        reply: reply.lines.first().cloned().unwrap_or_default(),
    }
}

/// A command for the log: control bytes escaped, long lines cut.
fn printable(bytes: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(bytes)
        .chars()
        .flat_map(char::escape_debug)
        .collect();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", text.get(..i).unwrap_or_default()),
        None => text,
    }
}
