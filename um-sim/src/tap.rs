//! The record tap: reads, below rustls, the handshake records the server
//! sends, to see the CertificateRequest as it was on the wire (records
//! spanned, body size, names) and to apply the profile's record rules before
//! rustls ever sees the message. In TLS 1.2 the request is plaintext. In TLS
//! 1.3 it is encrypted: the tap takes the server handshake traffic secret
//! rustls logs for this connection ([`HandshakeSecrets`], a `rustls::KeyLog`),
//! decrypts the server's protected handshake records ([`crate::tls13`]) and
//! reads the plaintext stream exactly as in TLS 1.2. The secret exists only
//! once rustls has processed the ServerHello, so [`TapStream`] hands rustls
//! no byte past the ServerHello's record before the tap has judged it.
//! The codec ([`Tap`]) is pure over bytes; [`TapStream`] is the I/O edge.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use certgen::wire::{
    ALERT_FATAL, CONTENT_ALERT, CONTENT_CCS, CONTENT_HANDSHAKE, CertificateRequest12, FlightReader,
    FlightSink, HANDSHAKE_HEADER_LEN, HS_CERTIFICATE_REQUEST, HS_SERVER_HELLO, RECORD_HEADER_LEN,
    RecordHeader,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::profile::{Profile, RequestFacts, Rule};
use crate::tls13::{CertificateRequest13, RecordKeys, ServerHello, Suite};

/// The CertificateRequest as received.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SeenRequest {
    /// Body bytes (handshake header excluded): what Java compares with its limit.
    pub body_bytes: usize,
    /// Records the message spanned (TLS 1.3: protected records).
    pub records: usize,
    /// The CA names, in order (empty when the body did not parse or was cut off).
    #[serde(skip)]
    pub ca_names: Vec<Vec<u8>>,
    /// Number of CA names.
    pub ca_name_count: usize,
    /// Whether the whole message arrived (false when a rule stopped it).
    pub complete: bool,
    /// The most a client held of it at once, by `max-buffer`'s measure
    /// ([`crate::profile::buffered_bytes`]), over the records seen so far.
    /// In TLS 1.3 a record counts with its whole protected payload
    /// (content, content type, padding and the 16-byte tag).
    pub buffered_bytes: usize,
    /// Whether it came encrypted (TLS 1.3) and the tap decrypted it.
    pub encrypted: bool,
}

/// What the tap saw of the server's handshake flight.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// Handshake records read (TLS 1.3: protected handshake records).
    pub handshake_records: usize,
    /// The CertificateRequest, if one came.
    pub request: Option<SeenRequest>,
    /// The rule that stopped the handshake, if any.
    pub violated: Option<Rule>,
    /// Whether the server chose TLS 1.3.
    pub tls13: bool,
    /// Why the tap could not follow a TLS 1.3 flight, when it could not.
    pub blind: Option<String>,
}

/// Follows the handshake stream record by record, to measure the buffer a
/// client holds for the CertificateRequest ([`crate::profile::buffered_bytes`])
/// as the records arrive, in constant memory (one record's payload).
#[derive(Default)]
struct Sink {
    seen: Seen,
    /// Handshake bytes of all records so far.
    stream: usize,
    /// Handshake-stream offset after the last complete message: where the
    /// message in progress, if any, starts.
    consumed: usize,
    /// The last record's payload and its stream offset: the message in
    /// progress may start in it.
    last: Vec<u8>,
    last_start: usize,
    /// What the last record costs a client's buffer beyond its plaintext
    /// (TLS 1.3: content type, padding, tag).
    last_extra: usize,
    /// The same for the record being fed.
    extra: usize,
    /// The type of the message in progress, once its first byte is known.
    pending_type: Option<u8>,
    /// The CertificateRequest's buffer figure so far.
    request_buffered: usize,
    /// Wire bytes of the records so far, headers included.
    wire: usize,
    /// The ServerHello, and the wire offset of the end of its record.
    server_hello: Option<(ServerHello, usize)>,
    /// Whether the stream is TLS 1.3's decrypted one.
    tls13: bool,
    /// Whether the server's Finished went by (TLS 1.3: the flight is over).
    finished: bool,
}

impl Sink {
    /// Learns the type of the message in progress (it starts in the last
    /// record when nothing of it was known before). A CertificateRequest
    /// starting there counts that record: header + its whole payload.
    fn settle(&mut self) {
        if self.pending_type.is_some() || self.consumed >= self.stream {
            return;
        }
        let first = self
            .consumed
            .checked_sub(self.last_start)
            .and_then(|at| self.last.get(at))
            .copied();
        self.pending_type = first;
        if first == Some(HS_CERTIFICATE_REQUEST) {
            self.request_buffered = RECORD_HEADER_LEN + self.last.len() + self.last_extra;
        }
    }
}

impl FlightSink for Sink {
    fn record(&mut self, raw: &[u8]) {
        self.seen.handshake_records += 1;
        self.wire += raw.len();
        self.settle();
        let payload = raw.get(RECORD_HEADER_LEN..).unwrap_or_default();
        // Bytes of the message in progress that came in earlier records.
        let earlier = self.stream.saturating_sub(self.consumed);
        if earlier > 0 && self.pending_type == Some(HS_CERTIFICATE_REQUEST) {
            let held = RECORD_HEADER_LEN + earlier + payload.len() + self.extra;
            self.request_buffered = self.request_buffered.max(held);
        }
        self.last.clear();
        self.last.extend_from_slice(payload);
        self.last_start = self.stream;
        self.last_extra = self.extra;
        self.stream += payload.len();
    }

    fn message(&mut self, message: &[u8], records: usize, _version: [u8; 2]) {
        self.consumed += message.len();
        let continued = self.pending_type.take().is_some();
        let body = message.get(HANDSHAKE_HEADER_LEN..).unwrap_or_default();
        match message.first() {
            Some(&HS_SERVER_HELLO) if !self.tls13 && self.server_hello.is_none() => {
                if let Ok(sh) = ServerHello::parse(body) {
                    self.server_hello = Some((sh, self.wire));
                }
                return;
            }
            Some(&HS_FINISHED) if self.tls13 => {
                self.finished = true;
                return;
            }
            Some(&HS_CERTIFICATE_REQUEST) => {}
            _ => return,
        }
        if !continued {
            // Whole within the last record.
            self.request_buffered = RECORD_HEADER_LEN + self.last.len() + self.last_extra;
        }
        let ca_names = if self.tls13 {
            CertificateRequest13::parse(body)
                .map(|cr| cr.ca_names)
                .unwrap_or_default()
        } else {
            CertificateRequest12::parse(body)
                .map(|cr| cr.ca_names)
                .unwrap_or_default()
        };
        self.seen.request = Some(SeenRequest {
            body_bytes: body.len(),
            records,
            ca_name_count: ca_names.len(),
            ca_names,
            complete: true,
            buffered_bytes: self.request_buffered,
            encrypted: self.tls13,
        });
    }
}

/// Handshake type: finished.
const HS_FINISHED: u8 = 20;

/// A handshake stream and what it showed: the plaintext flight (TLS 1.2, or
/// TLS 1.3's ServerHello), or TLS 1.3's decrypted one.
#[derive(Default)]
struct Flight {
    reader: FlightReader,
    sink: Sink,
}

impl Flight {
    /// The record rule the request breaks so far, if any; a request stopped
    /// mid-way is recorded as seen.
    fn judge(&mut self, profile: &Profile) -> Option<Rule> {
        let verdict = match (&self.sink.seen.request, self.reader.in_progress()) {
            (Some(req), _) => profile.judge(&RequestFacts {
                body_len: req.body_bytes,
                records: req.records,
                complete: true,
                buffered: req.buffered_bytes,
            }),
            (None, Some((h, records))) if h.msg_type == HS_CERTIFICATE_REQUEST => {
                let buffered = self.sink.request_buffered;
                let v = profile.judge(&RequestFacts {
                    body_len: h.len,
                    records,
                    complete: false,
                    buffered,
                });
                if v.is_some() {
                    self.sink.seen.request = Some(SeenRequest {
                        body_bytes: h.len,
                        records,
                        complete: false,
                        buffered_bytes: buffered,
                        encrypted: self.sink.tls13,
                        ..SeenRequest::default()
                    });
                }
                v
            }
            _ => None,
        };
        if verdict.is_some() {
            self.sink.seen.violated = verdict;
        }
        verdict
    }
}

/// TLS 1.3's protected part of the server's stream.
struct Protected {
    suite: u16,
    /// Stream offset where it starts (the end of the ServerHello's record).
    start: usize,
    /// Its bytes not yet processed: whole records waiting for the key, and a
    /// record not yet whole.
    pending: Vec<u8>,
    /// Stream offset up to which records are processed (judged).
    processed: usize,
    server: Option<RecordKeys>,
    client: Option<RecordKeys>,
    flight: Flight,
}

/// Bytes of protected records the tap holds while it waits for the secret:
/// four full records, more than a server sends before its first protected
/// one is read.
const MAX_HELD: usize = 4 * (RECORD_HEADER_LEN + crate::tls13::MAX_CIPHERTEXT);

/// The pure tap.
pub struct Tap {
    plain: Flight,
    protected: Option<Protected>,
    profile: Profile,
    /// Bytes fed so far.
    fed: usize,
    /// The tap's work is over: every byte may pass.
    done: bool,
    /// Why it could not follow a TLS 1.3 flight.
    blind: Option<String>,
}

impl Tap {
    /// A tap applying `profile`'s record rules.
    pub fn new(profile: Profile) -> Tap {
        Tap {
            plain: Flight::default(),
            protected: None,
            profile,
            fed: 0,
            done: false,
            blind: None,
        }
    }

    /// The profile whose rules it applies.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// What has been seen: TLS 1.3's decrypted flight once the tap had the
    /// secret, the plaintext flight otherwise.
    pub fn seen(&self) -> Seen {
        let mut seen = match &self.protected {
            Some(p) if p.server.is_some() => p.flight.sink.seen.clone(),
            _ => self.plain.sink.seen.clone(),
        };
        seen.tls13 = self.protected.is_some();
        seen.blind = self.blind.clone();
        seen
    }

    fn violated(&self) -> Option<Rule> {
        self.plain
            .sink
            .seen
            .violated
            .or_else(|| self.protected.as_ref()?.flight.sink.seen.violated)
    }

    /// Consumes bytes from the server. `Err(rule)` when the CertificateRequest
    /// breaks a record rule of the profile: the bytes must not reach rustls.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Rule> {
        if let Some(rule) = self.violated() {
            return Err(rule);
        }
        if self.done {
            return Ok(());
        }
        self.fed += bytes.len();
        let protected = if self.plain.reader.ended() {
            Some(bytes.to_vec())
        } else {
            let rest = self.plain.reader.feed(bytes, &mut self.plain.sink);
            self.plain.sink.settle();
            if let Some(rule) = self.plain.judge(&self.profile) {
                return Err(rule);
            }
            rest
        };
        match self.plain.sink.server_hello {
            Some((sh, _)) if sh.retry => {
                self.give_up("a HelloRetryRequest: the tap does not follow a second ServerHello");
            }
            Some((sh, end)) if sh.tls13 => {
                let p = self.protected.get_or_insert_with(|| Protected {
                    suite: sh.suite,
                    start: end,
                    pending: Vec::new(),
                    processed: end,
                    server: None,
                    client: None,
                    flight: Flight {
                        sink: Sink {
                            tls13: true,
                            ..Sink::default()
                        },
                        ..Flight::default()
                    },
                });
                if let Some(bytes) = protected {
                    p.pending.extend_from_slice(&bytes);
                }
                if p.pending.len() > MAX_HELD && p.server.is_none() {
                    self.give_up("no server handshake secret while the protected records came");
                }
                return self.advance();
            }
            _ if protected.is_some() => self.done = true,
            _ => {}
        }
        Ok(())
    }

    /// Whether the tap waits for the handshake secrets of a TLS 1.3 flight.
    pub fn wants_secrets(&self) -> bool {
        !self.done && self.protected.as_ref().is_some_and(|p| p.server.is_none())
    }

    /// The handshake traffic secrets rustls derived for this connection
    /// (server's, and client's for the alert). Decrypts what it holds.
    pub fn set_secrets(&mut self, server: &[u8], client: Option<&[u8]>) -> Result<(), Rule> {
        let Some(p) = self.protected.as_mut() else {
            return Ok(());
        };
        if p.server.is_some() {
            return Ok(());
        }
        let keys = Suite::from_code(p.suite).and_then(|suite| {
            let server = RecordKeys::new(suite, server)?;
            let client = client.map(|c| RecordKeys::new(suite, c)).transpose()?;
            Ok((server, client))
        });
        match keys {
            Ok((server, client)) => {
                p.server = Some(server);
                p.client = client;
                self.advance()
            }
            Err(e) => {
                self.give_up(&e.to_string());
                Ok(())
            }
        }
    }

    /// Stops following the flight: every byte may pass, unjudged.
    pub fn give_up(&mut self, why: &str) {
        if !self.done {
            self.blind = Some(format!("TLS 1.3 flight not observed: {why}"));
            self.done = true;
        }
    }

    /// Whether the tap's work is over (every byte may pass).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The stream offset up to which bytes may reach rustls: `None` for all.
    /// In TLS 1.3 only records the tap has judged pass, which holds back the
    /// protected records until rustls, given the ServerHello, logs the secret.
    pub fn releasable(&self) -> Option<usize> {
        if self.done {
            return None;
        }
        match (&self.protected, self.plain.sink.server_hello) {
            (Some(p), _) => Some(p.processed),
            _ => None,
        }
    }

    /// The stream offset where TLS 1.3's protected part starts.
    pub fn protected_start(&self) -> Option<usize> {
        self.protected.as_ref().map(|p| p.start)
    }

    /// Processes the whole protected records it holds, as far as the key
    /// allows: change_cipher_spec passes, application_data is decrypted and
    /// its handshake bytes read as in TLS 1.2; the server's Finished, an
    /// alert or anything else ends the tap's work.
    fn advance(&mut self) -> Result<(), Rule> {
        let Some(p) = self.protected.as_mut() else {
            return Ok(());
        };
        let mut at = 0;
        let mut stop: Option<String> = None;
        let mut end = false;
        while let Ok(h) = RecordHeader::parse(p.pending.get(at..).unwrap_or_default()) {
            let whole = RECORD_HEADER_LEN + h.len;
            let Some(raw) = p.pending.get(at..at + whole) else {
                break;
            };
            if h.content_type == CONTENT_CCS {
                at += whole;
                continue;
            }
            if h.content_type != crate::tls13::CONTENT_APPLICATION_DATA {
                end = true;
                break;
            }
            let Some(keys) = p.server.as_mut() else {
                break;
            };
            let (header, payload) = raw.split_at(RECORD_HEADER_LEN);
            match keys.open(header, payload) {
                Ok((CONTENT_HANDSHAKE, plain)) => {
                    let mut record = Vec::with_capacity(RECORD_HEADER_LEN + plain.len());
                    RecordHeader::write(&mut record, CONTENT_HANDSHAKE, [3, 3], plain.len());
                    record.extend_from_slice(&plain);
                    p.flight.sink.extra = payload.len().saturating_sub(plain.len());
                    let _ = p.flight.reader.feed(&record, &mut p.flight.sink);
                    p.flight.sink.settle();
                }
                Ok(_) => end = true,
                Err(e) => stop = Some(e.to_string()),
            }
            at += whole;
            if let Some(rule) = p.flight.judge(&self.profile) {
                p.processed += at;
                p.pending.drain(..at);
                return Err(rule);
            }
            if end || stop.is_some() || p.flight.sink.finished || p.flight.reader.ended() {
                end = true;
                break;
            }
        }
        p.processed += at;
        p.pending.drain(..at);
        if let Some(why) = stop {
            self.give_up(&why);
        } else if end {
            self.done = true;
            if let Some(p) = self.protected.as_mut() {
                p.pending = Vec::new();
            }
        }
        Ok(())
    }

    /// The fatal alert record the modeled stack sends for a rule, if it
    /// sends one (Java: unexpected_message, Go: internal_error, OpenSSL and
    /// BoringSSL: illegal_parameter; mbedTLS none): plaintext in TLS 1.2,
    /// protected with the client handshake key in TLS 1.3, as the stack
    /// would send it there.
    pub fn alert_record(&mut self, rule: Rule) -> Option<Vec<u8>> {
        let description = self.profile.alert(rule)?;
        match self.protected.as_mut().and_then(|p| p.client.as_mut()) {
            Some(keys) => keys.seal(CONTENT_ALERT, &[ALERT_FATAL, description]).ok(),
            None => Some(vec![CONTENT_ALERT, 3, 3, 0, 2, ALERT_FATAL, description]),
        }
    }
}

/// The handshake traffic secrets rustls derives, captured through its
/// [`rustls::KeyLog`] for the tap of one connection. They stay in memory
/// and are never printed (`Debug` shows how many).
#[derive(Default)]
pub struct HandshakeSecrets {
    logged: Mutex<Vec<Logged>>,
}

/// One logged secret: its label, the connection's client random, the secret.
type Logged = (String, Vec<u8>, Vec<u8>);

impl std::fmt::Debug for HandshakeSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.logged.lock().map_or(0, |l| l.len());
        write!(f, "HandshakeSecrets({n} logged)")
    }
}

const SERVER_HS: &str = "SERVER_HANDSHAKE_TRAFFIC_SECRET";
const CLIENT_HS: &str = "CLIENT_HANDSHAKE_TRAFFIC_SECRET";

impl rustls::KeyLog for HandshakeSecrets {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        if self.will_log(label)
            && let Ok(mut l) = self.logged.lock()
        {
            l.push((label.to_owned(), client_random.to_vec(), secret.to_vec()));
        }
    }

    fn will_log(&self, label: &str) -> bool {
        label == SERVER_HS || label == CLIENT_HS
    }
}

impl HandshakeSecrets {
    /// The server's and the client's handshake traffic secrets logged for
    /// the connection whose ClientHello carried `client_random`.
    pub fn for_connection(&self, client_random: &[u8]) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
        let l = self.logged.lock().ok()?;
        let find = |label: &str| {
            l.iter()
                .rev()
                .find(|(lb, r, _)| lb == label && r == client_random)
                .map(|(_, _, s)| s.clone())
        };
        Some((find(SERVER_HS)?, find(CLIENT_HS)))
    }
}

/// The error a [`TapStream`] returns when a rule stops the handshake.
#[derive(Debug, thiserror::Error)]
#[error("the CertificateRequest breaks rule {rule} of {stack}{}", quoted(.prints))]
pub struct RuleViolation {
    /// The rule.
    pub rule: Rule,
    /// The stack the profile models.
    pub stack: String,
    /// What that stack prints for it (DESIGN.md 2a), when recorded.
    pub prints: Option<String>,
}

fn quoted(prints: &Option<String>) -> String {
    prints
        .as_deref()
        .map(|p| format!("; the stack reports: {p}"))
        .unwrap_or_default()
}

/// A stream whose inbound bytes pass through a [`Tap`] before rustls reads
/// them. The tap is shared so the connection can read what it saw
/// afterwards. Bytes the tap has not judged yet (TLS 1.3's protected records
/// before the secret is known) wait in the stream, in order.
pub struct TapStream<S> {
    inner: S,
    tap: Arc<Mutex<Tap>>,
    secrets: Arc<HandshakeSecrets>,
    /// Bytes read from the server, not yet handed to rustls.
    inbox: Vec<u8>,
    /// Bytes handed to rustls so far.
    released: usize,
    /// The first bytes the client wrote: its ClientHello's random is in them.
    hello: Vec<u8>,
}

impl<S> TapStream<S> {
    /// Wraps `inner`; `secrets` is the `KeyLog` of the connection's rustls
    /// configuration.
    pub fn new(inner: S, tap: Arc<Mutex<Tap>>, secrets: Arc<HandshakeSecrets>) -> TapStream<S> {
        TapStream {
            inner,
            tap,
            secrets,
            inbox: Vec::new(),
            released: 0,
            hello: Vec::new(),
        }
    }
}

/// Bytes of the first client record that hold its random.
const HELLO_PREFIX: usize = 43;

/// The error for a broken rule, and the alert to send with it.
fn violation(tap: &mut Tap, rule: Rule) -> (RuleViolation, Option<Vec<u8>>) {
    let body = tap.seen().request.as_ref().map_or(0, |r| r.body_bytes);
    let v = RuleViolation {
        rule,
        stack: tap.profile.stack.clone(),
        prints: tap.profile.prints(rule, body),
    };
    (v, tap.alert_record(rule))
}

impl<S: AsyncRead + AsyncWrite + Unpin> TapStream<S> {
    /// Ends the read with the rule's error, after the stack's alert.
    fn refuse(
        &mut self,
        cx: &mut Context<'_>,
        (violation, alert): (RuleViolation, Option<Vec<u8>>),
    ) -> Poll<io::Result<()>> {
        if let Some(alert) = alert {
            // Best effort, as the stack would: a short record on an idle
            // socket goes out at once; the connection is failing anyway.
            let _ = Pin::new(&mut self.inner).poll_write(cx, &alert);
        }
        Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, violation)))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TapStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            let step = {
                let Ok(mut tap) = this.tap.lock() else {
                    return Poll::Ready(Err(io::Error::other("tap poisoned")));
                };
                if tap.wants_secrets() {
                    let random = crate::tls13::client_random(&this.hello);
                    let got = random.and_then(|r| this.secrets.for_connection(&r));
                    match got {
                        Some((server, client)) => {
                            if let Err(rule) = tap.set_secrets(&server, client.as_deref()) {
                                Err(violation(&mut tap, rule))
                            } else {
                                Ok(())
                            }
                        }
                        // rustls has had the whole ServerHello and logged
                        // nothing for this connection: nothing to wait for.
                        None if tap
                            .protected_start()
                            .is_some_and(|start| this.released >= start) =>
                        {
                            tap.give_up("rustls logged no server handshake secret");
                            Ok(())
                        }
                        None => Ok(()),
                    }
                } else {
                    Ok(())
                }
                .map(|()| (tap.releasable(), tap.is_done()))
            };
            let (limit, done) = match step {
                Ok(s) => s,
                Err(v) => return this.refuse(cx, v),
            };
            if done && this.inbox.is_empty() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let allowed = limit.map_or(this.inbox.len(), |at| {
                at.saturating_sub(this.released).min(this.inbox.len())
            });
            let n = allowed.min(buf.remaining());
            if n > 0 {
                buf.put_slice(this.inbox.get(..n).unwrap_or_default());
                this.inbox.drain(..n);
                this.released += n;
                return Poll::Ready(Ok(()));
            }
            // Nothing to hand over yet: more from the server.
            let mut space = vec![0; buf.remaining().max(1)];
            let mut fresh = ReadBuf::new(&mut space);
            match Pin::new(&mut this.inner).poll_read(cx, &mut fresh) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            let fresh = fresh.filled();
            if fresh.is_empty() {
                // The server closed: whatever is held goes to rustls, which
                // reports the end as it would.
                if this.inbox.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                if let Ok(mut tap) = this.tap.lock() {
                    tap.give_up("the server closed the connection");
                }
                continue;
            }
            this.inbox.extend_from_slice(fresh);
            let fed = match this.tap.lock() {
                Ok(mut tap) => tap.feed(fresh).map_err(|rule| violation(&mut tap, rule)),
                Err(_) => return Poll::Ready(Err(io::Error::other("tap poisoned"))),
            };
            if let Err(v) = fed {
                return this.refuse(cx, v);
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TapStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written
            && this.hello.len() < HELLO_PREFIX
        {
            let take = n.min(HELLO_PREFIX - this.hello.len());
            this.hello
                .extend_from_slice(buf.get(..take).unwrap_or_default());
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
