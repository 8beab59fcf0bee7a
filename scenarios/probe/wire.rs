//! The server's first flight as it came over the wire, decoded: pure, total
//! on any input. certgen's [`FlightReader`] cuts the plaintext records into
//! handshake messages; [`FirstFlight`] keeps what the probe reports (the
//! ServerHello's version and cipher suite, the server's chain, every
//! message with its size, and the CertificateRequest with the records it
//! spanned), as um-sim's record tap does for one client.
//!
//! In TLS 1.3 everything after the ServerHello is encrypted under the server
//! handshake traffic secret. The probe is the TLS client, so its own rustls
//! derives that secret; given it ([`FirstFlight::set_secret`]), the flight
//! decrypts the protected records with um-sim's [`um_sim::tls13`] and reads
//! the plaintext handshake stream exactly as in TLS 1.2: the
//! CertificateRequest's bytes, the protected records it spanned and their
//! sizes, and its names.

use std::ops::Range;

use certgen::wire::{
    CONTENT_ALERT, CONTENT_CCS, CONTENT_HANDSHAKE, CertificateRequest12, DecodeError, FlightReader,
    FlightSink, HS_CERTIFICATE_REQUEST, HS_SERVER_HELLO, HS_SERVER_HELLO_DONE, HandshakeHeader,
    RECORD_HEADER_LEN, RecordHeader,
};
use serde::Serialize;
use um_sim::tls13::{CONTENT_APPLICATION_DATA, CertificateRequest13, RecordKeys, Suite};

/// Handshake type: certificate.
pub const HS_CERTIFICATE: u8 = 11;
/// Handshake type: server_key_exchange.
pub const HS_SERVER_KEY_EXCHANGE: u8 = 12;
/// Handshake type: certificate_status (OCSP stapling in TLS 1.2).
pub const HS_CERTIFICATE_STATUS: u8 = 22;
/// Handshake type: encrypted_extensions (TLS 1.3).
pub const HS_ENCRYPTED_EXTENSIONS: u8 = 8;
/// Handshake type: certificate_verify.
pub const HS_CERTIFICATE_VERIFY: u8 = 15;
/// Handshake type: finished (TLS 1.3: the end of the server's flight).
pub const HS_FINISHED: u8 = 20;
/// TLS 1.2 on the wire.
pub const TLS12: u16 = 0x0303;
/// TLS 1.3 on the wire.
pub const TLS13: u16 = 0x0304;
/// Extension: supported_versions (the version a TLS 1.3 ServerHello selects).
const EXT_SUPPORTED_VERSIONS: u16 = 43;
/// The random of a HelloRetryRequest (RFC 8446 4.1.3).
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Most bytes of a first flight the probe holds: 1 MiB, far above any real
/// flight (a chain of a few certificates and a CertificateRequest of at most
/// 131,329 bytes), so a server that never ends its flight cannot grow the
/// probe.
pub const MAX_FLIGHT: usize = 1 << 20;

/// The name of a handshake type, for the report.
pub fn handshake_name(t: u8) -> String {
    match t {
        HS_SERVER_HELLO => "ServerHello".to_owned(),
        HS_CERTIFICATE => "Certificate".to_owned(),
        HS_SERVER_KEY_EXCHANGE => "ServerKeyExchange".to_owned(),
        HS_CERTIFICATE_REQUEST => "CertificateRequest".to_owned(),
        HS_SERVER_HELLO_DONE => "ServerHelloDone".to_owned(),
        HS_CERTIFICATE_STATUS => "CertificateStatus".to_owned(),
        HS_ENCRYPTED_EXTENSIONS => "EncryptedExtensions".to_owned(),
        HS_CERTIFICATE_VERIFY => "CertificateVerify".to_owned(),
        HS_FINISHED => "Finished".to_owned(),
        other => format!("handshake type {other}"),
    }
}

/// The name of a TLS 1.2 ClientCertificateType (RFC 5246 7.4.4, RFC 8422).
pub fn certificate_type_name(t: u8) -> &'static str {
    match t {
        1 => "rsa_sign",
        2 => "dss_sign",
        3 => "rsa_fixed_dh",
        4 => "dss_fixed_dh",
        5 => "rsa_ephemeral_dh",
        6 => "dss_ephemeral_dh",
        20 => "fortezza_dms",
        64 => "ecdsa_sign",
        65 => "rsa_fixed_ecdh",
        66 => "ecdsa_fixed_ecdh",
        _ => "unknown",
    }
}

/// A signature scheme's name, as rustls spells it (`Unknown(0x....)` when
/// rustls has none).
pub fn scheme_name(code: u16) -> String {
    format!("{:?}", rustls::SignatureScheme::from(code))
}

/// A cipher suite's name, as rustls spells it.
pub fn cipher_suite_name(code: u16) -> String {
    format!("{:?}", rustls::CipherSuite::from(code))
}

/// A protocol version's name, as rustls spells it (`TLSv1_2`).
pub fn version_name(code: u16) -> String {
    format!("{:?}", rustls::ProtocolVersion::from(code))
}

/// What a ServerHello says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ServerHello {
    /// The version negotiated: supported_versions when present, else the
    /// legacy version field.
    pub version: u16,
    /// The cipher suite chosen.
    pub cipher_suite: u16,
    /// Whether it is a HelloRetryRequest.
    pub hello_retry: bool,
}

/// A checked cursor over bytes.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u16(&mut self) -> Option<u16> {
        match self.take(2)? {
            [a, b] => Some(u16::from_be_bytes([*a, *b])),
            _ => None,
        }
    }

    fn u24(&mut self) -> Option<usize> {
        match self.take(3)? {
            [a, b, c] => Some(usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c)),
            _ => None,
        }
    }
}

impl ServerHello {
    /// Parses a ServerHello body (handshake header excluded); `None` when it
    /// is cut short.
    pub fn parse(body: &[u8]) -> Option<ServerHello> {
        let mut c = Cursor(body);
        let legacy = c.u16()?;
        let random = c.take(32)?;
        let sid = usize::from(c.u8()?);
        c.take(sid)?;
        let cipher_suite = c.u16()?;
        c.u8()?;
        let mut version = legacy;
        if let Some(len) = c.u16() {
            let mut exts = Cursor(c.take(usize::from(len))?);
            while !exts.0.is_empty() {
                let ty = exts.u16()?;
                let len = usize::from(exts.u16()?);
                let mut data = Cursor(exts.take(len)?);
                if ty == EXT_SUPPORTED_VERSIONS {
                    version = data.u16()?;
                }
            }
        }
        Some(ServerHello {
            version,
            cipher_suite,
            hello_retry: random == HRR_RANDOM,
        })
    }
}

/// The certificates of a TLS 1.2 Certificate body, DER, leaf first; `None`
/// when the body does not parse.
pub fn parse_certificate_list(body: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut c = Cursor(body);
    let total = c.u24()?;
    let mut list = Cursor(c.take(total)?);
    if !c.0.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    while !list.0.is_empty() {
        let len = list.u24()?;
        out.push(list.take(len)?.to_vec());
    }
    Some(out)
}

/// One handshake message of the flight.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlightMessage {
    /// Its name.
    pub name: String,
    /// Bytes, 4-byte handshake header included.
    pub bytes: usize,
    /// Records it spanned.
    pub records: usize,
}

/// One record that carried bytes of the CertificateRequest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RecordSpan {
    /// The whole record, 5-byte header included (TLS 1.3: the protected
    /// record as sent, its tag included).
    pub record_bytes: usize,
    /// The CertificateRequest's bytes in it (handshake header included).
    pub request_bytes: usize,
}

/// A CertificateRequest body decoded by the rules of its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestBody {
    /// TLS 1.2 (RFC 5246 7.4.4).
    Tls12(CertificateRequest12),
    /// TLS 1.3 (RFC 8446 4.3.2), decrypted.
    Tls13(CertificateRequest13),
}

impl RequestBody {
    /// The CA names, in order.
    pub fn ca_names(&self) -> &[Vec<u8>] {
        match self {
            RequestBody::Tls12(r) => &r.ca_names,
            RequestBody::Tls13(r) => &r.ca_names,
        }
    }
}

/// The CertificateRequest as it came over the wire (TLS 1.3: as it came
/// in the protected records, decrypted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireRequest {
    /// Body bytes (handshake header excluded): what body limits compare.
    pub body_bytes: usize,
    /// The records it spanned, in order.
    pub records: Vec<RecordSpan>,
    /// The most a client held at once by um-sim's `max-buffer` measure
    /// ([`um_sim::profile::buffered_bytes`]; TLS 1.3: each protected record
    /// counts whole, as um-sim's tap counts it).
    pub buffered_bytes: usize,
    /// The body decoded, or why it does not decode.
    pub parsed: Result<RequestBody, String>,
}

/// Follows the flight message by message.
#[derive(Default)]
struct Recorder {
    /// Handshake-stream range and raw length of every record.
    records: Vec<(Range<usize>, usize)>,
    /// Handshake bytes so far.
    stream: usize,
    /// Stream offset of the next message.
    consumed: usize,
    hello: Option<ServerHello>,
    chain: Vec<Vec<u8>>,
    messages: Vec<FlightMessage>,
    request: Option<WireRequest>,
    hello_done: bool,
    /// TLS 1.3's decrypted stream: the request and chain follow RFC 8446.
    tls13: bool,
    /// The wire size of the record being fed, when it differs from what the
    /// reader sees (TLS 1.3: the protected record, not its re-framed
    /// plaintext).
    wire_len: Option<usize>,
    /// Whether the server's Finished came (TLS 1.3: its flight is over).
    finished: bool,
}

impl FlightSink for Recorder {
    fn record(&mut self, raw: &[u8]) {
        let payload = raw.len().saturating_sub(RECORD_HEADER_LEN);
        let wire = self.wire_len.take().unwrap_or(raw.len());
        self.records
            .push((self.stream..self.stream + payload, wire));
        self.stream += payload;
    }

    fn message(&mut self, message: &[u8], records: usize, _version: [u8; 2]) {
        let range = self.consumed..self.consumed + message.len();
        self.consumed = range.end;
        let Some(&kind) = message.first() else {
            return;
        };
        self.messages.push(FlightMessage {
            name: handshake_name(kind),
            bytes: message.len(),
            records,
        });
        let body = message
            .get(certgen::wire::HANDSHAKE_HEADER_LEN..)
            .unwrap_or_default();
        match kind {
            HS_SERVER_HELLO => {
                self.hello = self.hello.or(ServerHello::parse(body));
            }
            HS_CERTIFICATE if self.chain.is_empty() && !self.tls13 => {
                self.chain = parse_certificate_list(body).unwrap_or_default();
            }
            HS_CERTIFICATE_REQUEST if self.request.is_none() => {
                let spans = self
                    .records
                    .iter()
                    .filter(|(r, _)| r.start < range.end && range.start < r.end)
                    .map(|(r, raw)| RecordSpan {
                        record_bytes: *raw,
                        request_bytes: r.end.min(range.end) - r.start.max(range.start),
                    })
                    .collect();
                let (buffered, parsed) = if self.tls13 {
                    (
                        protected_buffered(&range, &self.records),
                        CertificateRequest13::parse(body)
                            .map(RequestBody::Tls13)
                            .map_err(|e| e.to_string()),
                    )
                } else {
                    (
                        um_sim::profile::buffered_bytes(
                            range.clone(),
                            self.records.iter().map(|(r, _)| r.clone()),
                        ),
                        CertificateRequest12::parse(body)
                            .map(RequestBody::Tls12)
                            .map_err(|e| e.to_string()),
                    )
                };
                self.request = Some(WireRequest {
                    body_bytes: body.len(),
                    records: spans,
                    buffered_bytes: buffered,
                    parsed,
                });
            }
            HS_SERVER_HELLO_DONE if !self.tls13 => self.hello_done = true,
            HS_FINISHED if self.tls13 => self.finished = true,
            _ => {}
        }
    }
}

/// um-sim's `max-buffer` measure over protected records, as its tap counts
/// them in TLS 1.3: for each record carrying bytes of the message, the bytes
/// of the message in earlier records + the whole protected record (header,
/// ciphertext, tag). `records`: each record's plaintext range in the stream
/// and its wire size. In TLS 1.2 (wire size = 5 + plaintext) this is
/// [`um_sim::profile::buffered_bytes`].
fn protected_buffered(message: &Range<usize>, records: &[(Range<usize>, usize)]) -> usize {
    records
        .iter()
        .filter(|(r, _)| r.start < message.end && message.start < r.end)
        .map(|(r, wire)| r.start.saturating_sub(message.start) + wire)
        .max()
        .unwrap_or(0)
}

/// TLS 1.3's protected part of the flight: the records after the
/// ServerHello, decrypted once the secret is known.
struct Protected {
    /// The suite the ServerHello chose.
    suite: u16,
    /// Bytes of the flight before it (the end of the ServerHello's record).
    start: usize,
    /// Raw bytes not yet processed: records waiting for the key, and a
    /// record not yet whole.
    pending: Vec<u8>,
    keys: Option<RecordKeys>,
    /// The decrypted handshake stream.
    reader: FlightReader,
    sink: Recorder,
    /// Why the protected flight cannot be read (further), once known.
    stopped: Option<String>,
}

impl Protected {
    fn new(suite: u16, start: usize) -> Protected {
        Protected {
            suite,
            start,
            pending: Vec::new(),
            keys: None,
            reader: FlightReader::default(),
            sink: Recorder {
                tls13: true,
                ..Recorder::default()
            },
            stopped: None,
        }
    }

    fn done(&self) -> bool {
        self.sink.finished || self.stopped.is_some() || self.reader.ended()
    }

    fn stop(&mut self, why: String) {
        if self.stopped.is_none() {
            self.stopped = Some(why);
        }
    }

    /// Processes the whole records it holds, as far as the key allows:
    /// change_cipher_spec passes (middlebox compatibility), application_data
    /// is decrypted and its handshake bytes read; anything else ends it.
    fn advance(&mut self) {
        let mut at = 0;
        while !self.done() {
            let rest = self.pending.get(at..).unwrap_or_default();
            let Ok(h) = RecordHeader::parse(rest) else {
                break;
            };
            if let Err(e) = h.check() {
                self.stop(format!("a record after the ServerHello: {e}"));
                break;
            }
            let whole = RECORD_HEADER_LEN + h.len;
            let Some(raw) = rest.get(..whole) else {
                break;
            };
            match h.content_type {
                CONTENT_CCS => {
                    at += whole;
                    continue;
                }
                CONTENT_APPLICATION_DATA => {}
                CONTENT_ALERT => {
                    let what = raw.get(RECORD_HEADER_LEN..).unwrap_or_default();
                    self.stop(format!("the server sent a plaintext alert {what:?}"));
                    break;
                }
                other => {
                    self.stop(format!(
                        "a record of content type {other} after the ServerHello"
                    ));
                    break;
                }
            }
            let Some(keys) = self.keys.as_mut() else {
                break;
            };
            let (header, payload) = raw.split_at(RECORD_HEADER_LEN.min(raw.len()));
            match keys.open(header, payload) {
                Ok((CONTENT_HANDSHAKE, plain)) => {
                    let mut record = Vec::with_capacity(RECORD_HEADER_LEN + plain.len());
                    RecordHeader::write(&mut record, CONTENT_HANDSHAKE, [3, 3], plain.len());
                    record.extend_from_slice(&plain);
                    self.sink.wire_len = Some(whole);
                    let _ = self.reader.feed(&record, &mut self.sink);
                    if let Some(e) = self.reader.error() {
                        let e = e.clone();
                        self.stop(format!("the decrypted flight: {e}"));
                    }
                }
                Ok((CONTENT_ALERT, plain)) => {
                    self.stop(format!("the server sent an encrypted alert {plain:?}"));
                }
                Ok((other, _)) => {
                    self.stop(format!(
                        "a protected record of content type {other} before the server's Finished"
                    ));
                }
                Err(e) => self.stop(e.to_string()),
            }
            at += whole;
        }
        self.pending.drain(..at.min(self.pending.len()));
        if self.done() {
            self.pending = Vec::new();
        }
    }
}

/// Why the flight could not be read to its end.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlightError {
    /// Bytes that are not a TLS flight (the field that says so).
    #[error("the server's reply is not a TLS handshake: {0}")]
    NotTls(DecodeError),
    /// More than [`MAX_FLIGHT`] bytes without the end of the flight.
    #[error("the server's first flight passed {MAX_FLIGHT} bytes without ending")]
    TooLarge,
}

/// Cuts a byte stream at TLS record ends, so the flight can stop reading at
/// the record that ends it whatever the reads looked like.
#[derive(Default)]
struct RecordCutter {
    header: [u8; RECORD_HEADER_LEN],
    have: usize,
    left: usize,
}

impl RecordCutter {
    /// Bytes of `b` up to the end of the current record (all of `b` when
    /// the record goes on past it).
    fn take(&mut self, b: &[u8]) -> usize {
        let mut n = 0;
        while self.have < RECORD_HEADER_LEN {
            let Some(&byte) = b.get(n) else {
                return n;
            };
            if let Some(slot) = self.header.get_mut(self.have) {
                *slot = byte;
            }
            self.have += 1;
            n += 1;
            if self.have == RECORD_HEADER_LEN {
                match RecordHeader::parse(&self.header) {
                    // A header that cannot be TLS ends the flight there.
                    Ok(h) if h.is_plausible() => self.left = h.len,
                    _ => {
                        self.have = 0;
                        return n;
                    }
                }
            }
        }
        let payload = self.left.min(b.len() - n);
        self.left -= payload;
        if self.left == 0 {
            self.have = 0;
        }
        n + payload
    }
}

/// The server's first flight, read as it arrives.
#[derive(Default)]
pub struct FirstFlight {
    reader: FlightReader,
    sink: Recorder,
    cutter: RecordCutter,
    bytes: usize,
    error: Option<FlightError>,
    /// TLS 1.3: what follows the ServerHello.
    protected: Option<Protected>,
}

impl FirstFlight {
    /// A flight not yet begun.
    pub fn new() -> FirstFlight {
        FirstFlight::default()
    }

    /// Consumes bytes from the server, a record at a time, and nothing
    /// after the record that ends the flight (so how the bytes were cut
    /// into reads never changes what is read).
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.done() {
            let n = self.cutter.take(bytes).max(1);
            let (record, rest) = bytes.split_at(n.min(bytes.len()));
            bytes = rest;
            self.bytes = self.bytes.saturating_add(record.len());
            if self.bytes > MAX_FLIGHT {
                self.error = Some(FlightError::TooLarge);
                return;
            }
            if let Some(p) = self.protected.as_mut() {
                p.pending.extend_from_slice(record);
                p.advance();
                continue;
            }
            let _ = self.reader.feed(record, &mut self.sink);
            if let Some(e) = self.reader.error() {
                self.error = Some(FlightError::NotTls(e.clone()));
            }
            if let Some(h) = self.sink.hello
                && h.version == TLS13
                && !h.hello_retry
                && self.reader.in_progress().is_none()
            {
                self.protected = Some(Protected::new(h.cipher_suite, self.bytes));
            }
        }
    }

    /// Whether the plaintext flight is over: ServerHelloDone came, a TLS 1.3
    /// ServerHello came (the rest is encrypted), the flight ended with a
    /// record of another type, or it broke.
    fn plaintext_done(&self) -> bool {
        self.sink.hello_done
            || self.reader.ended()
            || self.error.is_some()
            || self
                .sink
                .hello
                .is_some_and(|h| h.version == TLS13 || h.hello_retry)
    }

    /// Whether nothing more of the flight is to be read: the plaintext
    /// flight is over and, in TLS 1.3, the protected one too (the server's
    /// Finished came, or it cannot be read: see [`FirstFlight::unreadable`]).
    pub fn done(&self) -> bool {
        self.plaintext_done() && self.protected.as_ref().is_none_or(Protected::done)
            || self.error.is_some()
    }

    /// TLS 1.3: the bytes of the flight up to the end of the ServerHello's
    /// record, which the client needs before it can derive the secret; the
    /// protected records start there.
    pub fn protected_start(&self) -> Option<usize> {
        self.protected.as_ref().map(|p| p.start)
    }

    /// Whether the flight waits for the server handshake traffic secret.
    pub fn wants_secret(&self) -> bool {
        self.protected
            .as_ref()
            .is_some_and(|p| p.keys.is_none() && !p.done())
    }

    /// The server handshake traffic secret of this connection (as the
    /// client's own TLS stack logged it): decrypts the protected records
    /// held and those to come. A suite it cannot decrypt, or a secret of the
    /// wrong length, makes the flight unreadable with that reason.
    pub fn set_secret(&mut self, secret: &[u8]) {
        let Some(p) = self.protected.as_mut() else {
            return;
        };
        if p.keys.is_some() || p.done() {
            return;
        }
        match Suite::from_code(p.suite).and_then(|suite| RecordKeys::new(suite, secret)) {
            Ok(keys) => {
                p.keys = Some(keys);
                p.advance();
            }
            Err(e) => p.stop(e.to_string()),
        }
    }

    /// Stops reading the protected flight, for `why` (no secret to be had).
    pub fn give_up(&mut self, why: &str) {
        if let Some(p) = self.protected.as_mut() {
            p.stop(why.to_owned());
        }
    }

    /// TLS 1.3: why the protected flight could not be read to the server's
    /// Finished, if it could not (also set when it stopped part-way).
    pub fn unreadable(&self) -> Option<&str> {
        self.protected.as_ref()?.stopped.as_deref()
    }

    /// TLS 1.3: whether the decrypted flight reached the server's Finished.
    pub fn decrypted_whole(&self) -> bool {
        self.protected.as_ref().is_some_and(|p| p.sink.finished)
    }

    /// TLS 1.3: every whole decrypted message, in order.
    pub fn decrypted_messages(&self) -> &[FlightMessage] {
        self.protected
            .as_ref()
            .map_or(&[], |p| p.sink.messages.as_slice())
    }

    /// Whether ServerHelloDone came: the TLS 1.2 flight is whole.
    pub fn complete(&self) -> bool {
        self.sink.hello_done
    }

    /// Why the flight broke, if it did.
    pub fn error(&self) -> Option<&FlightError> {
        self.error.as_ref()
    }

    /// Bytes read.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The ServerHello, once read.
    pub fn server_hello(&self) -> Option<ServerHello> {
        self.sink.hello
    }

    /// The server's chain (TLS 1.2 Certificate), DER, leaf first.
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.sink.chain
    }

    /// Every whole message, in order.
    pub fn messages(&self) -> &[FlightMessage] {
        &self.sink.messages
    }

    /// The CertificateRequest, once whole (TLS 1.3: decrypted).
    pub fn request(&self) -> Option<&WireRequest> {
        match &self.protected {
            Some(p) => p.sink.request.as_ref(),
            None => self.sink.request.as_ref(),
        }
    }

    /// The message the flight stopped in the middle of: its header as
    /// claimed, the records it spanned so far, and the bytes of it that came
    /// (TLS 1.3: in the decrypted stream).
    pub fn cut_short(&self) -> Option<(HandshakeHeader, usize, usize)> {
        let (reader, sink) = match &self.protected {
            Some(p) => (&p.reader, &p.sink),
            None => (&self.reader, &self.sink),
        };
        let (h, records) = reader.in_progress()?;
        let held = sink.stream.saturating_sub(sink.consumed);
        Some((h, records, held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certgen::wire::write_ca_list;
    use proptest::prelude::*;

    fn message(t: u8, body: &[u8]) -> Vec<u8> {
        let len = (body.len() as u32).to_be_bytes();
        let mut m = vec![t, len[1], len[2], len[3]];
        m.extend_from_slice(body);
        m
    }

    fn hello(version_ext: Option<u16>) -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend_from_slice(&[7; 32]);
        b.extend_from_slice(&[0, 0xc0, 0x2b, 0]);
        match version_ext {
            Some(v) => {
                let v = v.to_be_bytes();
                b.extend_from_slice(&[0, 6, 0, 43, 0, 2, v[0], v[1]]);
            }
            None => b.extend_from_slice(&[0, 0]),
        }
        message(HS_SERVER_HELLO, &b)
    }

    fn request(names: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![2, 1, 64, 0, 4, 4, 3, 8, 4];
        write_ca_list(&mut body, names).unwrap();
        message(HS_CERTIFICATE_REQUEST, &body)
    }

    /// Frames a handshake stream into records of at most `size` payload
    /// bytes, each message starting a record.
    fn framed(messages: &[Vec<u8>], size: usize) -> Vec<u8> {
        let mut wire = Vec::new();
        for m in messages {
            for chunk in m.chunks(size) {
                RecordHeader::write(&mut wire, 22, [3, 3], chunk.len());
                wire.extend_from_slice(chunk);
            }
        }
        wire
    }

    #[test]
    fn a_whole_flight_is_read_with_the_request_records() {
        let names: Vec<Vec<u8>> = (0..30).map(|i| vec![0x30, i, 1, 2, 3]).collect();
        let chain = {
            let b = [0, 0, 8, 0, 0, 5, 1, 2, 3, 4, 5];
            message(HS_CERTIFICATE, &b)
        };
        let flight = [
            hello(None),
            chain,
            request(&names),
            message(HS_SERVER_HELLO_DONE, &[]),
        ];
        let wire = framed(&flight, 100);
        let mut f = FirstFlight::new();
        for byte in wire.chunks(7) {
            assert!(!f.complete());
            f.feed(byte);
        }
        assert!(f.complete() && f.done());
        assert_eq!(f.error(), None);
        let h = f.server_hello().unwrap();
        assert_eq!(
            (h.version, h.cipher_suite, h.hello_retry),
            (TLS12, 0xc02b, false)
        );
        assert_eq!(f.chain(), [vec![1, 2, 3, 4, 5]]);
        let req = f.request().unwrap();
        let cr = flight[2].len();
        assert_eq!(req.body_bytes, cr - 4);
        assert_eq!(req.records.len(), cr.div_ceil(100));
        let sum: usize = req.records.iter().map(|r| r.request_bytes).sum();
        assert_eq!(sum, cr);
        assert_eq!(req.records[0].record_bytes, 105);
        let Ok(RequestBody::Tls12(parsed)) = req.parsed.as_ref() else {
            panic!("a TLS 1.2 request: {:?}", req.parsed);
        };
        assert_eq!(parsed.ca_names, names);
        assert_eq!(parsed.cert_types, [1, 64]);
        assert_eq!(f.messages().len(), 4);
        assert_eq!(f.messages()[2].name, "CertificateRequest");
    }

    #[test]
    fn tls13_ends_the_plaintext_flight_at_the_server_hello() {
        let wire = framed(&[hello(Some(TLS13))], 16_384);
        let mut f = FirstFlight::new();
        f.feed(&wire);
        // The rest is encrypted: the flight waits for the secret, and the
        // ServerHello's record may go to the client first.
        assert!(!f.done() && !f.complete() && f.wants_secret());
        assert_eq!(f.protected_start(), Some(wire.len()));
        assert_eq!(f.server_hello().map(|h| h.version), Some(TLS13));
        assert!(f.request().is_none());
    }

    #[test]
    fn garbage_and_floods_end_the_flight_with_a_reason() {
        let mut f = FirstFlight::new();
        f.feed(b"220 smtp.example ESMTP\r\n");
        assert!(f.done());
        assert!(matches!(f.error(), Some(FlightError::NotTls(_))));
        // Endless small ServerHellos: stopped at the cap.
        let mut f = FirstFlight::new();
        let chunk = framed(&[message(99, &[0; 1000])], 16_384);
        while !f.done() {
            f.feed(&chunk);
        }
        assert_eq!(f.error(), Some(&FlightError::TooLarge));
        assert!(f.bytes() <= MAX_FLIGHT + chunk.len());
    }

    #[test]
    fn a_flight_cut_short_says_where() {
        let names: Vec<Vec<u8>> = (0..200).map(|i| vec![0x30; 50 + i % 7]).collect();
        let wire = framed(&[hello(None), request(&names)], 1_000);
        let mut f = FirstFlight::new();
        f.feed(&wire[..wire.len() / 2]);
        let (h, _, held) = f.cut_short().expect("in progress");
        assert_eq!(h.msg_type, HS_CERTIFICATE_REQUEST);
        assert!(held > 0 && held < h.len + 4);
        assert!(!f.done());
    }

    /// What a reading left, to compare readings of the same bytes.
    fn summary(f: &FirstFlight) -> String {
        format!(
            "{} {} {:?} {:?} {} {:?} {}",
            f.done(),
            f.complete(),
            f.error().map(ToString::to_string),
            f.server_hello(),
            f.messages().len(),
            f.request()
                .map(|r| (r.body_bytes, r.records.len(), r.buffered_bytes)),
            f.bytes()
        )
    }

    /// Found by the probe_flight fuzz target: a TLS 1.3 ServerHello (here
    /// a HelloRetryRequest) ends the plaintext flight, but when the records
    /// after it came in the same read they were read too.
    #[test]
    fn the_flight_ends_at_its_last_record_whatever_the_reads() {
        let mut hrr = hello(Some(0x0304));
        if let Some(random) = hrr.get_mut(6..38) {
            random.copy_from_slice(&HRR_RANDOM);
        }
        let names = vec![vec![0x30, 0]];
        let wire = framed(
            &[hrr, request(&names), message(HS_SERVER_HELLO_DONE, &[])],
            100,
        );
        let mut whole = FirstFlight::new();
        whole.feed(&wire);
        let mut bytewise = FirstFlight::new();
        for b in &wire {
            bytewise.feed(std::slice::from_ref(b));
        }
        assert_eq!(summary(&whole), summary(&bytewise));
        assert!(whole.server_hello().is_some_and(|h| h.hello_retry));
        assert!(
            whole.request().is_none(),
            "nothing read past the ServerHello"
        );
        assert_eq!(whole.messages().len(), 1);
    }

    /// A TLS 1.3 CertificateRequest message: schemes, then the names.
    fn request13(names: &[Vec<u8>]) -> Vec<u8> {
        let mut list = Vec::new();
        for n in names {
            list.extend_from_slice(&(n.len() as u16).to_be_bytes());
            list.extend_from_slice(n);
        }
        let mut exts = vec![0, 13, 0, 6, 0, 4, 4, 3, 8, 4];
        exts.extend_from_slice(&[0, 47]);
        exts.extend_from_slice(&((list.len() + 2) as u16).to_be_bytes());
        exts.extend_from_slice(&(list.len() as u16).to_be_bytes());
        exts.extend_from_slice(&list);
        let mut body = vec![0];
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        message(HS_CERTIFICATE_REQUEST, &body)
    }

    const SECRET: [u8; 32] = [7; 32];

    /// A TLS 1.3 flight: the ServerHello (TLS_AES_128_GCM_SHA256), a
    /// change_cipher_spec, then EncryptedExtensions, the request, a
    /// Certificate and Finished in protected records of at most `size`
    /// plaintext bytes, each padded with `pad` zeros; and the request.
    fn flight13(names: &[Vec<u8>], size: usize, pad: usize) -> (Vec<u8>, Vec<u8>) {
        let mut sh = hello(Some(TLS13));
        // cipher suite 0x1301
        if let Some(cs) = sh.get_mut(4 + 35..4 + 37) {
            cs.copy_from_slice(&[0x13, 0x01]);
        }
        let mut wire = framed(&[sh], 16_384);
        wire.extend_from_slice(&[20, 3, 3, 0, 1, 1]);
        let cr = request13(names);
        let mut stream = message(HS_ENCRYPTED_EXTENSIONS, &[0, 0]);
        stream.extend_from_slice(&cr);
        stream.extend(message(HS_CERTIFICATE, &[0, 0, 0, 0]));
        stream.extend(message(HS_FINISHED, &[9; 32]));
        let mut keys = RecordKeys::new(Suite::Aes128GcmSha256, &SECRET).unwrap();
        for chunk in stream.chunks(size) {
            let mut content = chunk.to_vec();
            content.push(CONTENT_HANDSHAKE);
            content.resize(content.len() + pad, 0);
            // seal(0, ..) appends a zero: padding after the real type.
            wire.extend(keys.seal(0, &content).unwrap());
        }
        (wire, cr)
    }

    #[test]
    fn tls13_is_read_exactly_once_the_secret_is_known() {
        let names: Vec<Vec<u8>> = (0..300)
            .map(|i| vec![0x30, i as u8, 1, 2, 3, 4, 5])
            .collect();
        for (size, pad) in [(16_384, 0), (1_000, 3), (37, 0)] {
            let (wire, cr) = flight13(&names, size, pad);
            let mut f = FirstFlight::new();
            f.feed(&wire);
            // Held until the secret comes.
            assert!(f.wants_secret() && !f.done() && f.request().is_none());
            let start = f.protected_start().expect("protected part");
            assert_eq!(&wire[start..start + 6], &[20, 3, 3, 0, 1, 1]);
            f.set_secret(&SECRET);
            assert!(f.done() && f.decrypted_whole(), "{:?}", f.unreadable());
            assert_eq!(f.unreadable(), None);
            let req = f.request().expect("request");
            assert_eq!(req.body_bytes, cr.len() - 4);
            let Ok(RequestBody::Tls13(parsed)) = &req.parsed else {
                panic!("{:?}", req.parsed);
            };
            assert_eq!(parsed.ca_names, names);
            assert_eq!(parsed.extensions, [(13, 6), (47, 2 + 300 * 9)]);
            let carried: usize = req.records.iter().map(|r| r.request_bytes).sum();
            assert_eq!(carried, cr.len(), "{size}");
            // Each protected record: header, content, type, padding (pad
            // zeros and the one seal(0, ..) adds), tag.
            for r in &req.records {
                assert!(r.record_bytes <= 5 + size + 1 + pad + 1 + 16);
                assert!(r.record_bytes >= 5 + r.request_bytes + 1 + pad + 1 + 16);
            }
            assert_eq!(req.records.len() > 1, cr.len() > size, "{size}");
            let names_seen: Vec<&str> = f
                .decrypted_messages()
                .iter()
                .map(|m| m.name.as_str())
                .collect();
            assert_eq!(
                names_seen,
                [
                    "EncryptedExtensions",
                    "CertificateRequest",
                    "Certificate",
                    "Finished"
                ]
            );
            // The secret given first, and the bytes one at a time: the same.
            let mut g = FirstFlight::new();
            for b in &wire {
                g.feed(std::slice::from_ref(b));
                g.set_secret(&SECRET);
            }
            assert_eq!(summary(&f), summary(&g));
        }
    }

    #[test]
    fn tls13_says_why_it_cannot_be_read() {
        let names = vec![vec![0x30, 0]];
        let (wire, _) = flight13(&names, 16_384, 0);
        // The wrong secret.
        let mut f = FirstFlight::new();
        f.feed(&wire);
        f.set_secret(&[8; 32]);
        assert!(f.done() && f.request().is_none());
        assert!(
            f.unreadable()
                .is_some_and(|w| w.contains("does not decrypt")),
            "{:?}",
            f.unreadable()
        );
        // A secret of the wrong length.
        let mut f = FirstFlight::new();
        f.feed(&wire);
        f.set_secret(&[8; 48]);
        assert!(
            f.unreadable().is_some_and(|w| w.contains("48-byte")),
            "{:?}",
            f.unreadable()
        );
        // A suite it does not know.
        let mut odd = wire.clone();
        odd[5 + 4 + 35..5 + 4 + 37].copy_from_slice(&[0x13, 0x04]);
        let mut f = FirstFlight::new();
        f.feed(&odd);
        f.set_secret(&SECRET);
        assert!(
            f.unreadable().is_some_and(|w| w.contains("0x1304")),
            "{:?}",
            f.unreadable()
        );
        // No secret at all.
        let mut f = FirstFlight::new();
        f.feed(&wire);
        f.give_up("none logged");
        assert!(f.done() && !f.wants_secret());
        assert_eq!(f.unreadable(), Some("none logged"));
    }

    proptest! {
        #[test]
        fn any_cut_of_the_bytes_reads_the_same(
            head in proptest::collection::vec(any::<u8>(), 0..40),
            cut in any::<prop::sample::Index>(),
            extra in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            // A real flight start, then anything.
            let mut wire = framed(&[hello(None)], 100);
            wire.extend_from_slice(&head);
            wire.extend(framed(&[request(&[vec![0x30, 0]]), message(HS_SERVER_HELLO_DONE, &[])], 7));
            wire.extend_from_slice(&extra);
            let at = cut.index(wire.len() + 1);
            let mut whole = FirstFlight::new();
            whole.feed(&wire);
            let mut two = FirstFlight::new();
            two.feed(&wire[..at]);
            two.feed(&wire[at..]);
            prop_assert_eq!(summary(&whole), summary(&two));
        }

        #[test]
        fn any_bytes_are_read_without_panic(chunks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..300), 0..20)) {
            let mut f = FirstFlight::new();
            for c in &chunks {
                f.feed(c);
            }
            let _ = (f.done(), f.request(), f.cut_short(), f.server_hello());
        }

        #[test]
        fn any_server_hello_and_certificate_body_parse_or_not(body in
            proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ServerHello::parse(&body);
            let _ = parse_certificate_list(&body);
        }
    }
}
