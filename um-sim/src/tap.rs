//! The record tap: reads, below rustls, the TLS 1.2 handshake records the
//! server sends, to see the CertificateRequest as it was on the wire (records
//! spanned, body size, names) and to apply the profile's record rules before
//! rustls ever sees the message. Pure codec over bytes; [`TapStream`] is the
//! I/O edge.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use certgen::wire::{
    ALERT_FATAL, CONTENT_ALERT, CertificateRequest12, FlightReader, FlightSink,
    HANDSHAKE_HEADER_LEN, HS_CERTIFICATE_REQUEST, RECORD_HEADER_LEN,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::profile::{Profile, RequestFacts, Rule};

/// The CertificateRequest as received.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SeenRequest {
    /// Body bytes (handshake header excluded): what Java compares with its limit.
    pub body_bytes: usize,
    /// Records the message spanned.
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
    pub buffered_bytes: usize,
}

/// What the tap saw of the server's plaintext flight.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// Handshake records read.
    pub handshake_records: usize,
    /// The CertificateRequest, if one came in plaintext.
    pub request: Option<SeenRequest>,
    /// The rule that stopped the handshake, if any.
    pub violated: Option<Rule>,
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
    /// The type of the message in progress, once its first byte is known.
    pending_type: Option<u8>,
    /// The CertificateRequest's buffer figure so far.
    request_buffered: usize,
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
            self.request_buffered = RECORD_HEADER_LEN + self.last.len();
        }
    }
}

impl FlightSink for Sink {
    fn record(&mut self, raw: &[u8]) {
        self.seen.handshake_records += 1;
        self.settle();
        let payload = raw.get(RECORD_HEADER_LEN..).unwrap_or_default();
        // Bytes of the message in progress that came in earlier records.
        let earlier = self.stream.saturating_sub(self.consumed);
        if earlier > 0 && self.pending_type == Some(HS_CERTIFICATE_REQUEST) {
            let held = RECORD_HEADER_LEN + earlier + payload.len();
            self.request_buffered = self.request_buffered.max(held);
        }
        self.last.clear();
        self.last.extend_from_slice(payload);
        self.last_start = self.stream;
        self.stream += payload.len();
    }

    fn message(&mut self, message: &[u8], records: usize, _version: [u8; 2]) {
        self.consumed += message.len();
        let continued = self.pending_type.take().is_some();
        if message.first() != Some(&HS_CERTIFICATE_REQUEST) {
            return;
        }
        if !continued {
            // Whole within the last record.
            self.request_buffered = RECORD_HEADER_LEN + self.last.len();
        }
        let body = message.get(HANDSHAKE_HEADER_LEN..).unwrap_or_default();
        let ca_names = CertificateRequest12::parse(body)
            .map(|cr| cr.ca_names)
            .unwrap_or_default();
        self.seen.request = Some(SeenRequest {
            body_bytes: body.len(),
            records,
            ca_name_count: ca_names.len(),
            ca_names,
            complete: true,
            buffered_bytes: self.request_buffered,
        });
    }
}

/// The pure tap.
pub struct Tap {
    reader: FlightReader,
    sink: Sink,
    profile: Profile,
}

impl Tap {
    /// A tap applying `profile`'s record rules.
    pub fn new(profile: Profile) -> Tap {
        Tap {
            reader: FlightReader::new(),
            sink: Sink::default(),
            profile,
        }
    }

    /// What has been seen.
    pub fn seen(&self) -> &Seen {
        &self.sink.seen
    }

    /// Consumes bytes from the server. `Err(rule)` when the CertificateRequest
    /// breaks a record rule of the profile: the bytes must not reach rustls.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Rule> {
        if self.sink.seen.violated.is_some() {
            return Err(self.sink.seen.violated.unwrap_or(Rule::OneRecord));
        }
        if self.reader.ended() {
            return Ok(());
        }
        let _ = self.reader.feed(bytes, &mut self.sink);
        self.sink.settle();
        let verdict = match (&self.sink.seen.request, self.reader.in_progress()) {
            (Some(req), _) => self.profile.judge(&RequestFacts {
                body_len: req.body_bytes,
                records: req.records,
                complete: true,
                buffered: req.buffered_bytes,
            }),
            (None, Some((h, records))) if h.msg_type == HS_CERTIFICATE_REQUEST => {
                let buffered = self.sink.request_buffered;
                let v = self.profile.judge(&RequestFacts {
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
                        ..SeenRequest::default()
                    });
                }
                v
            }
            _ => None,
        };
        match verdict {
            Some(rule) => {
                self.sink.seen.violated = Some(rule);
                Err(rule)
            }
            None => Ok(()),
        }
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

/// The fatal alert record the modeled stack sends for a rule, if it sends one
/// (Java: unexpected_message, Go: internal_error, OpenSSL and BoringSSL:
/// illegal_parameter; mbedTLS none).
fn alert_for(profile: &Profile, rule: Rule) -> Option<[u8; 7]> {
    let description = profile.alert(rule)?;
    Some([CONTENT_ALERT, 3, 3, 0, 2, ALERT_FATAL, description])
}

/// A stream whose inbound bytes pass through a [`Tap`] before rustls reads
/// them. The tap is shared so the connection can read what it saw afterwards.
pub struct TapStream<S> {
    inner: S,
    tap: Arc<Mutex<Tap>>,
}

impl<S> TapStream<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, tap: Arc<Mutex<Tap>>) -> TapStream<S> {
        TapStream { inner, tap }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TapStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let fresh = buf.filled().get(before..).unwrap_or_default().to_vec();
        let verdict = match this.tap.lock() {
            Ok(mut tap) => tap.feed(&fresh).map_err(|rule| {
                let body = tap.seen().request.as_ref().map_or(0, |r| r.body_bytes);
                let violation = RuleViolation {
                    rule,
                    stack: tap.profile.stack.clone(),
                    prints: tap.profile.prints(rule, body),
                };
                (violation, alert_for(&tap.profile, rule))
            }),
            Err(_) => return Poll::Ready(Err(io::Error::other("tap poisoned"))),
        };
        if let Err((violation, alert)) = verdict {
            buf.set_filled(before);
            if let Some(alert) = alert {
                // Best effort, as the stack would: seven bytes on an idle
                // socket go out at once; the connection is failing anyway.
                let _ = Pin::new(&mut this.inner).poll_write(cx, &alert);
            }
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, violation)));
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TapStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
