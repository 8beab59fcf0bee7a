//! The server's first flight as it came over the wire, decoded: pure, total
//! on any input. certgen's [`FlightReader`] cuts the plaintext records into
//! handshake messages; [`FirstFlight`] keeps what the probe reports (the
//! ServerHello's version and cipher suite, the server's chain, every
//! message with its size, and the CertificateRequest with the records it
//! spanned), as um-sim's record tap does for one client.

use std::ops::Range;

use certgen::wire::{
    CertificateRequest12, DecodeError, FlightReader, FlightSink, HS_CERTIFICATE_REQUEST,
    HS_SERVER_HELLO, HS_SERVER_HELLO_DONE, HandshakeHeader, RECORD_HEADER_LEN, RecordHeader,
};
use serde::Serialize;

/// Handshake type: certificate.
pub const HS_CERTIFICATE: u8 = 11;
/// Handshake type: server_key_exchange.
pub const HS_SERVER_KEY_EXCHANGE: u8 = 12;
/// Handshake type: certificate_status (OCSP stapling in TLS 1.2).
pub const HS_CERTIFICATE_STATUS: u8 = 22;
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
    /// The whole record, 5-byte header included.
    pub record_bytes: usize,
    /// The CertificateRequest's bytes in it (handshake header included).
    pub request_bytes: usize,
}

/// The CertificateRequest as it came over the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireRequest {
    /// Body bytes (handshake header excluded): what body limits compare.
    pub body_bytes: usize,
    /// The records it spanned, in order.
    pub records: Vec<RecordSpan>,
    /// The most a client held at once by um-sim's `max-buffer` measure
    /// ([`um_sim::profile::buffered_bytes`]).
    pub buffered_bytes: usize,
    /// The body decoded, or why it does not decode.
    pub parsed: Result<CertificateRequest12, DecodeError>,
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
}

impl FlightSink for Recorder {
    fn record(&mut self, raw: &[u8]) {
        let payload = raw.len().saturating_sub(RECORD_HEADER_LEN);
        self.records
            .push((self.stream..self.stream + payload, raw.len()));
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
            HS_CERTIFICATE if self.chain.is_empty() => {
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
                let buffered = um_sim::profile::buffered_bytes(
                    range.clone(),
                    self.records.iter().map(|(r, _)| r.clone()),
                );
                self.request = Some(WireRequest {
                    body_bytes: body.len(),
                    records: spans,
                    buffered_bytes: buffered,
                    parsed: CertificateRequest12::parse(body),
                });
            }
            HS_SERVER_HELLO_DONE => self.hello_done = true,
            _ => {}
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
            let _ = self.reader.feed(record, &mut self.sink);
            if let Some(e) = self.reader.error() {
                self.error = Some(FlightError::NotTls(e.clone()));
            }
        }
    }

    /// Whether nothing more of the flight is to be read: ServerHelloDone
    /// came, a TLS 1.3 ServerHello came (the rest is encrypted), the flight
    /// ended with a record of another type, or it broke.
    pub fn done(&self) -> bool {
        self.sink.hello_done
            || self.reader.ended()
            || self.error.is_some()
            || self
                .sink
                .hello
                .is_some_and(|h| h.version == TLS13 || h.hello_retry)
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

    /// The CertificateRequest, once whole.
    pub fn request(&self) -> Option<&WireRequest> {
        self.sink.request.as_ref()
    }

    /// The message the flight stopped in the middle of: its header as
    /// claimed, the records it spanned so far, and the bytes of it that came.
    pub fn cut_short(&self) -> Option<(HandshakeHeader, usize, usize)> {
        let (h, records) = self.reader.in_progress()?;
        let held = self.sink.stream.saturating_sub(self.sink.consumed);
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
        let parsed = req.parsed.as_ref().unwrap();
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
        assert!(f.done() && !f.complete());
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
