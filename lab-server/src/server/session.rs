//! One SMTP session over a connection: the command loop, DATA and STARTTLS,
//! under the session's bounds (per-line timeouts, shorter before TLS; a
//! lifetime; a byte budget).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::Shared;
use super::connection::Framed;
use super::{delivery, tls_facts};
use crate::events::{ConnectionEvent, Exchange, now_rfc3339};
use crate::faults::{self, Action, Fired, MessagePlan, Stage};
use crate::persona::WithoutCert;
use crate::smtp::{DataReader, Line, Next, Reply, Session};
use crate::tls::{ShapedStream, WireFacts};

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
    /// When the session must end, whatever it is doing.
    deadline: Instant,
    /// The faults decided for the current transaction.
    message: MessagePlan,
}

/// What waiting for the next line produced.
enum Wait {
    Line(std::io::Result<Option<Line>>),
    /// The per-line time ran out.
    Idle,
    /// The session's lifetime ran out.
    Lifetime,
    /// The server is stopping.
    Shutdown,
}

impl Conn<'_> {
    /// Time allowed for the next line: `per_line`, cut to what is left of the
    /// session's lifetime. `None` when nothing is left.
    fn allowance(&self, per_line: Duration) -> Option<(Duration, bool)> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        Some((per_line.min(left), left <= per_line))
    }

    /// Sends an injected SMTP fault's reply instead of the server's own:
    /// recorded in the event and counted.
    fn inject(&mut self, fired: &Fired, stage: Stage) -> (Reply, Next) {
        let code = match fired.fault.action {
            Action::Smtp { code, .. } => code,
            _ => 451,
        };
        let r = faults::smtp_reply(stage, code);
        self.event.faults.push(fired.describe());
        self.shared.faults.lock().applied(fired);
        let reply = Reply::with_status(
            r.code,
            r.enhanced,
            format!("{} (umlab fault {})", r.text, fired.fault),
        );
        (reply, if r.closes { Next::Close } else { Next::Command })
    }

    /// Applies the faults of the current transaction to a command's reply:
    /// a MAIL the server accepted starts a transaction (counted, its faults
    /// decided) and may be refused; so may each RCPT accepted.
    fn smtp_faults(&mut self, line: &[u8], reply: Reply, next: Next) -> (Reply, Next) {
        if reply.code != 250 {
            return (reply, next);
        }
        let verb = line
            .split(|&b| b == b' ')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        match verb.as_slice() {
            b"MAIL" => {
                self.message = self.shared.faults.lock().next_message();
                if let Some(f) = self.message.mail.clone() {
                    self.session.refuse_transaction();
                    return self.inject(&f, Stage::Mail);
                }
            }
            b"RCPT" => {
                if let Some(f) = self.message.rcpt.clone() {
                    self.session.refuse_last_recipient();
                    return self.inject(&f, Stage::Rcpt);
                }
            }
            _ => {}
        }
        (reply, next)
    }

    /// Records an exchange in the event's bounded summary.
    fn log(&mut self, command: String, reply: &Reply) {
        self.event.record(Exchange {
            command,
            code: reply.code,
            reply: reply.lines.first().cloned().unwrap_or_default(),
        });
    }
}

/// Serves one accepted connection and publishes its event.
pub(super) async fn connection(
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
            persona: shared.persona.name.clone(),
            started: now_rfc3339(),
            ..ConnectionEvent::default()
        },
        shutdown,
        deadline: Instant::now() + shared.session_lifetime,
        message: MessagePlan::default(),
    };
    let end = serve(tcp, &mut conn).await;
    conn.event.end = end;
    if let Some(sink) = &shared.sink {
        // Bounded: a writer behind on a slow disk makes this wait, it does not
        // let events pile up in memory.
        let _ = sink.send(conn.event.clone()).await;
    }
    let _ = shared.events.send(conn.event);
}

async fn serve(tcp: TcpStream, conn: &mut Conn<'_>) -> String {
    let mut plain = Framed::new(tcp, 0);
    let greeting = conn.session.greeting();
    if let Err(e) = plain.send(&greeting).await {
        return format!("write failed: {e}");
    }
    match command_loop(&mut plain, conn).await {
        LoopEnd::Closed(why) => return why,
        LoopEnd::StartTls => {}
    }
    // RFC 3207 5: bytes the client sent after STARTTLS, before the handshake,
    // belong to the plaintext session. Drop them (CVE-2011-0411).
    conn.event.plaintext_discarded = plain.buffered();
    let received = plain.received();
    let tcp = plain.into_inner();
    let facts = Arc::new(std::sync::Mutex::new(WireFacts::default()));
    let (rewrite, delay, acceptor, cut) = handshake_faults(conn);
    let shaped = ShapedStream::with_rewrite(
        tcp,
        conn.shared.layout,
        conn.shared.max_fragment,
        rewrite,
        facts.clone(),
    )
    .with_delay(delay);
    let allowed = conn
        .allowance(conn.shared.handshake_timeout)
        .map_or(Duration::ZERO, |(d, _)| d);
    let accepted = tokio::time::timeout(allowed, acceptor.accept(shaped)).await;
    let facts = facts.lock().map(|f| f.clone()).unwrap_or_default();
    conn.event.certificate_request = tls_facts::request_info(conn.shared, &facts);
    let cut_list = cut.map(|at| Arc::new(crate::faults::cut_ca_list(&conn.shared.advertised, at)));
    if let (Some(at), Some(list), Some(info)) = (
        cut,
        cut_list.as_ref(),
        conn.event.certificate_request.as_mut(),
    ) && info.source == "encoding"
    {
        // TLS 1.3: the request is encrypted, so its figures come from the
        // lab's encoding, here of the cut list.
        let bytes: usize = list
            .iter()
            .map(|n| certgen::wire::NAME_LEN_PREFIX + n.len())
            .sum();
        let shape = conn.shared.report.shape;
        info.ca_names = list.len();
        info.bytes = shape.message_len(bytes);
        info.records = crate::policy::records_for(info.bytes, conn.shared.max_fragment);
        info.difference = format!(
            "{}; the list was cut at {at} bytes by tls:cut-list-at",
            info.difference
        );
    }
    conn.event.cut_list = cut_list;
    let tls = match accepted {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            conn.event.handshake = Some(tls_facts::handshake_failure(&e, facts.alert));
            record_failed(conn, &facts);
            return format!("TLS handshake failed: {e}");
        }
        Err(_) => {
            conn.event.handshake = Some(tls_facts::handshake_timeout());
            record_failed(conn, &facts);
            return "TLS handshake timed out".to_owned();
        }
    };
    let cut_list = conn.event.cut_list.clone();
    let advertised = tls_facts::advertised_list(conn.shared, &facts, cut_list.as_deref());
    tls_facts::record_tls(&mut conn.event, &tls, advertised, &facts);
    conn.session.tls_established();
    let refusal = match conn.shared.without_cert {
        WithoutCert::FailHandshake => None,
        WithoutCert::Reply421 => tls_facts::untrusted_client(conn.shared, &tls),
    };
    let mut secure = Framed::new(tls, received);
    if let Some(why) = refusal {
        return refuse_after_tls(&mut secure, conn, why).await;
    }
    let end = match command_loop(&mut secure, conn).await {
        LoopEnd::Closed(why) => why,
        LoopEnd::StartTls => "STARTTLS inside TLS".to_owned(),
    };
    let _ = secure.get_mut().shutdown().await;
    end
}

/// The client's certificate as the wire showed it, for a failed handshake,
/// judged against the list this connection was sent.
fn record_failed(conn: &mut Conn<'_>, facts: &WireFacts) {
    let cut_list = conn.event.cut_list.clone();
    let advertised = tls_facts::advertised_list(conn.shared, facts, cut_list.as_deref());
    tls_facts::record_failed(&mut conn.event, facts, advertised);
}

/// Decides this handshake's faults: the shaper's rewrite with the framing
/// faults, the delay before ServerHelloDone, and the acceptor (one
/// advertising a cut list for cut-list-at). Each fault applied is recorded in
/// the event and counted.
fn handshake_faults(
    conn: &mut Conn<'_>,
) -> (crate::shaper::Rewrite, Duration, TlsAcceptor, Option<usize>) {
    let shared = conn.shared;
    let plan = shared.faults.lock().next_handshake();
    let mut rewrite = shared.rewrite;
    let mut delay = Duration::ZERO;
    let mut acceptor = shared.acceptor.clone();
    let mut cut = None;
    let mut applied = Vec::new();
    for fired in plan.all() {
        match fired.fault.action {
            Action::CloseAfterRequest => rewrite.close_after_request = true,
            Action::DelayBeforeDone { ms } => {
                rewrite.hold_done = true;
                delay = Duration::from_millis(ms);
            }
            Action::FragmentRequest { bytes } => rewrite.fragment_request = Some(bytes),
            Action::CutListAt { bytes } => match shared.cut_acceptor(bytes) {
                Ok(a) => {
                    acceptor = a;
                    cut = Some(bytes);
                }
                Err(e) => {
                    conn.event
                        .faults
                        .push(format!("{} not applied: {e}", fired.describe()));
                    continue;
                }
            },
            Action::Smtp { .. } => continue,
        }
        conn.event.faults.push(fired.describe());
        applied.push(fired);
    }
    let mut state = shared.faults.lock();
    for fired in applied {
        state.applied(fired);
    }
    (rewrite, delay, acceptor, cut)
}

/// Postfix with `smtpd_tls_req_ccert`: TLS is up but the client brought no
/// trusted certificate. The first command after the handshake, whatever it
/// is, gets `421 4.7.1 <host> Error: <why>` and the session closes (measured
/// against Postfix 3.7: nothing is sent before that command).
async fn refuse_after_tls<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Framed<S>,
    conn: &mut Conn<'_>,
    why: &'static str,
) -> String {
    let command = match next_line(io, conn, conn.shared.idle_timeout, true).await {
        Wait::Line(Ok(Some(Line::Text(text, _)))) => printable(&text),
        Wait::Line(Ok(Some(Line::TooLong(_)))) => "<line over the limit>".to_owned(),
        Wait::Line(Ok(None)) => return "client closed the connection".to_owned(),
        Wait::Line(Err(e)) => return format!("read failed: {e}"),
        Wait::Idle | Wait::Lifetime | Wait::Shutdown => {
            return "closed before the first command after TLS".to_owned();
        }
    };
    let reply = conn.session.client_certificate_refused(why);
    match close(io, conn, reply, &command, why).await {
        LoopEnd::Closed(end) => end,
        LoopEnd::StartTls => why.to_owned(),
    }
}

/// Waits for the next line within `per_line` (cut to the session's lifetime),
/// or for shutdown.
async fn next_line<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Framed<S>,
    conn: &mut Conn<'_>,
    per_line: Duration,
    watch_shutdown: bool,
) -> Wait {
    let Some((allowed, lifetime_bound)) = conn.allowance(per_line) else {
        return Wait::Lifetime;
    };
    let max_line = conn.shared.session.limits.max_line;
    let read = tokio::time::timeout(allowed, io.read_line(max_line));
    let result = if watch_shutdown {
        tokio::select! {
            r = read => r,
            _ = conn.shutdown.changed() => return Wait::Shutdown,
        }
    } else {
        read.await
    };
    match result {
        Ok(line) => Wait::Line(line),
        Err(_) if lifetime_bound => Wait::Lifetime,
        Err(_) => Wait::Idle,
    }
}

/// Sends a closing reply and ends the loop.
async fn close<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Framed<S>,
    conn: &mut Conn<'_>,
    (reply, _): (Reply, Next),
    command: &str,
    why: &str,
) -> LoopEnd {
    conn.log(command.to_owned(), &reply);
    if io.send(&reply).await.is_ok() {
        io.linger().await;
    }
    LoopEnd::Closed(why.to_owned())
}

async fn command_loop<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Framed<S>,
    conn: &mut Conn<'_>,
) -> LoopEnd {
    loop {
        // Before TLS the client has not authenticated: a short per-line
        // timeout, so slow senders cannot hold slots for long.
        let per_line = if conn.session.tls_active() {
            conn.shared.idle_timeout
        } else {
            conn.shared.pre_tls_timeout.min(conn.shared.idle_timeout)
        };
        let line = match next_line(io, conn, per_line, true).await {
            Wait::Line(line) => line,
            Wait::Shutdown => {
                let r = conn.session.shutting_down();
                return close(io, conn, r, "<shutdown>", "server shutting down").await;
            }
            Wait::Idle => {
                let r = conn.session.idle_timeout();
                return close(io, conn, r, "<idle>", "idle timeout").await;
            }
            Wait::Lifetime => {
                let r = conn.session.time_limit_exceeded();
                return close(io, conn, r, "<lifetime>", "session lifetime exceeded").await;
            }
        };
        if io.received() > conn.shared.session_bytes {
            let r = conn.session.transfer_quota_exceeded();
            return close(io, conn, r, "<quota>", "session byte budget exceeded").await;
        }
        // The DATA command's line end is the first CRLF of the end marker
        // only when it is a CRLF.
        let command_crlf = matches!(line, Ok(Some(Line::Text(_, true))));
        let (reply, next, command) = match line {
            Err(e) => return LoopEnd::Closed(format!("read failed: {e}")),
            Ok(None) => return LoopEnd::Closed("client closed the connection".into()),
            Ok(Some(Line::TooLong(_))) => {
                let (r, n) = conn.session.line_too_long();
                (r, n, "<line over the limit>".to_owned())
            }
            Ok(Some(Line::Text(text, _))) => {
                let (r, n) = conn.session.command(&text);
                let (r, n) = conn.smtp_faults(&text, r, n);
                (r, n, printable(&text))
            }
        };
        conn.log(command, &reply);
        if let Err(e) = io.send(&reply).await {
            return LoopEnd::Closed(format!("write failed: {e}"));
        }
        match next {
            Next::Command => {}
            Next::Close => return LoopEnd::Closed(format!("closed after {}", reply.code)),
            Next::StartTls => return LoopEnd::StartTls,
            Next::Data => {
                if let Some(end) = receive_data(io, conn, command_crlf).await {
                    return end;
                }
            }
        }
    }
}

/// How reading a message ended.
enum DataEnd {
    /// The end marker arrived.
    Complete,
    /// The connection must close with this reply (or none).
    Abort(Option<(Reply, Next)>, &'static str),
}

/// Reads a message, stores it and replies; `data_crlf` tells whether the DATA
/// command line ended with CRLF. `Some` when the connection ends.
async fn receive_data<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Framed<S>,
    conn: &mut Conn<'_>,
    data_crlf: bool,
) -> Option<LoopEnd> {
    let shared = conn.shared;
    let mut data = DataReader::after_command(shared.session.limits.max_message, data_crlf);
    // The whole transfer is bounded by the DATA timeout, each line by the
    // idle timeout, and both by the session's lifetime, so a client gone
    // silent mid-DATA does not hold its slot.
    let data_deadline = Instant::now() + shared.data_timeout;
    let end = loop {
        let left = data_deadline.saturating_duration_since(Instant::now());
        let per_line = shared.idle_timeout.min(left);
        if per_line.is_zero() {
            break DataEnd::Abort(
                Some(conn.session.data_timeout()),
                "DATA timeout; nothing stored",
            );
        }
        let line = match next_line(io, conn, per_line, false).await {
            Wait::Line(line) => line,
            Wait::Idle | Wait::Shutdown => {
                break DataEnd::Abort(
                    Some(conn.session.data_timeout()),
                    "DATA timeout; nothing stored",
                );
            }
            Wait::Lifetime => {
                break DataEnd::Abort(
                    Some(conn.session.time_limit_exceeded()),
                    "session lifetime exceeded in DATA; nothing stored",
                );
            }
        };
        if io.received() > shared.session_bytes {
            break DataEnd::Abort(
                Some(conn.session.transfer_quota_exceeded()),
                "session byte budget exceeded in DATA; nothing stored",
            );
        }
        match line {
            Err(_) => break DataEnd::Abort(None, "read failed in DATA; nothing stored"),
            Ok(None) => {
                break DataEnd::Abort(None, "client closed the connection in DATA; nothing stored");
            }
            Ok(Some(Line::TooLong(crlf))) => {
                data.line(b"", crlf, true);
            }
            Ok(Some(Line::Text(text, crlf))) => {
                if data.line(&text, crlf, false) {
                    break DataEnd::Complete;
                }
            }
        }
    };
    if let DataEnd::Abort(reply, why) = end {
        return Some(match reply {
            Some(r) => close(io, conn, r, "<message>", why).await,
            None => LoopEnd::Closed(why.to_owned()),
        });
    }
    let mut closes = false;
    let reply = match conn.session.data_received(&data) {
        Err(reply) => reply,
        Ok(envelope) => match conn.message.data.take() {
            // A fault refuses the message: nothing is stored.
            Some(fired) => {
                let (reply, next) = conn.inject(&fired, Stage::Data);
                closes = next == Next::Close;
                reply
            }
            None => {
                let tls_active = conn.session.tls_active();
                let stored =
                    delivery::deliver(shared, &mut conn.event, tls_active, envelope, data.body())
                        .await;
                conn.session
                    .stored(stored.as_deref().map_err(String::as_str))
            }
        },
    };
    conn.log(format!("<message, {} octets>", data.size()), &reply);
    if let Err(e) = io.send(&reply).await {
        return Some(LoopEnd::Closed(format!("write failed: {e}")));
    }
    if closes {
        return Some(LoopEnd::Closed(format!("closed after {}", reply.code)));
    }
    None
}

/// A command for the log: control bytes escaped, long lines cut.
pub(super) fn printable(bytes: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(bytes)
        .chars()
        .flat_map(char::escape_debug)
        .collect();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", text.get(..i).unwrap_or_default()),
        None => text,
    }
}
