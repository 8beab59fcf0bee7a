//! TLS wire formats shared by both ends of the lab: the `certificate_authorities`
//! vector (RFC 5246 7.4.4), record and handshake headers, and the TLS 1.2
//! CertificateRequest. lab-server frames what it sends with these, um-sim reads
//! what it receives with them; neither depends on the other.
//!
//! `DistinguishedName certificate_authorities<0..2^16-1>`, each
//! `opaque DistinguishedName<1..2^16-1>`: every name costs 2 + its DER length,
//! and the whole list must stay within 65,535 bytes.
//!
//! Parsers here are total: any input gives a value or `None`, never a panic.

/// Schannel's cap on the list (KB 933430).
pub const SCHANNEL_LIMIT: usize = 16_384;
/// Java's default `jdk.tls.maxHandshakeMessageSize`.
pub const JAVA_LIMIT: usize = 32_768;
/// The TLS 1.2 vector bound, 2^16 - 1.
pub const TLS12_LIMIT: usize = 65_535;

/// Content length of the vector for names of these DER lengths (its own
/// 2-byte length prefix excluded).
pub fn ca_list_len(der_lens: impl IntoIterator<Item = usize>) -> usize {
    der_lens.into_iter().map(|n| 2 + n).sum()
}

/// A list that cannot be encoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// The names add up to more than the vector can carry.
    #[error("certificate_authorities would be {0} bytes; TLS 1.2 allows at most 65,535")]
    ListTooLong(usize),
    /// A single name longer than its 2-byte length prefix can express.
    #[error("a distinguished name of {0} bytes exceeds 65,535")]
    NameTooLong(usize),
}

/// Appends the whole vector, 2-byte length prefix included, to `out`.
///
/// The size is checked before anything is written, so `out` is untouched on error.
pub fn write_ca_list<N: AsRef<[u8]>>(out: &mut Vec<u8>, names: &[N]) -> Result<(), WireError> {
    let mut total = 0usize;
    for n in names {
        let len = n.as_ref().len();
        if len > TLS12_LIMIT {
            return Err(WireError::NameTooLong(len));
        }
        total += 2 + len;
    }
    if total > TLS12_LIMIT {
        return Err(WireError::ListTooLong(total));
    }
    out.reserve(2 + total);
    out.extend_from_slice(&(total as u16).to_be_bytes());
    for n in names {
        let n = n.as_ref();
        out.extend_from_slice(&(n.len() as u16).to_be_bytes());
        out.extend_from_slice(n);
    }
    Ok(())
}

/// Record content type: handshake.
pub const CONTENT_HANDSHAKE: u8 = 22;
/// Record content type: change_cipher_spec.
pub const CONTENT_CCS: u8 = 20;
/// Record content type: alert.
pub const CONTENT_ALERT: u8 = 21;
/// Handshake type: certificate_request.
pub const HS_CERTIFICATE_REQUEST: u8 = 13;
/// Handshake type: server_hello_done.
pub const HS_SERVER_HELLO_DONE: u8 = 14;
/// Bytes of a record header.
pub const RECORD_HEADER_LEN: usize = 5;
/// Bytes of a handshake message header.
pub const HANDSHAKE_HEADER_LEN: usize = 4;
/// Largest record plaintext, 2^14.
pub const MAX_PLAINTEXT: usize = 16_384;
/// Largest ciphertext a record may carry (RFC 5246 6.2.3: 2^14 + 2048).
pub const MAX_RECORD_PAYLOAD: usize = MAX_PLAINTEXT + 2048;

/// A TLS record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Content type.
    pub content_type: u8,
    /// Legacy record version.
    pub version: [u8; 2],
    /// Payload length.
    pub len: usize,
}

impl RecordHeader {
    /// Parses the first five bytes; `None` when fewer are available.
    pub fn parse(bytes: &[u8]) -> Option<RecordHeader> {
        match bytes {
            [t, v0, v1, l0, l1, ..] => Some(RecordHeader {
                content_type: *t,
                version: [*v0, *v1],
                len: usize::from(u16::from_be_bytes([*l0, *l1])),
            }),
            _ => None,
        }
    }

    /// Whether this can be a TLS record at all: a known content type, a 3.x
    /// version and a length within the RFC bound.
    pub fn is_plausible(&self) -> bool {
        (20..=24).contains(&self.content_type)
            && self.version[0] == 3
            && self.len <= MAX_RECORD_PAYLOAD
    }

    /// Appends a record header.
    pub fn write(out: &mut Vec<u8>, content_type: u8, version: [u8; 2], len: usize) {
        out.push(content_type);
        out.extend_from_slice(&version);
        out.extend_from_slice(&(len.min(usize::from(u16::MAX)) as u16).to_be_bytes());
    }
}

/// A handshake message header: type and body length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeHeader {
    /// Handshake type.
    pub msg_type: u8,
    /// Body length (u24).
    pub len: usize,
}

impl HandshakeHeader {
    /// Parses the first four bytes; `None` when fewer are available.
    pub fn parse(bytes: &[u8]) -> Option<HandshakeHeader> {
        match bytes {
            [t, a, b, c, ..] => Some(HandshakeHeader {
                msg_type: *t,
                len: usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c),
            }),
            _ => None,
        }
    }
}

/// A TLS 1.2 CertificateRequest body, as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateRequest12 {
    /// certificate_types.
    pub cert_types: Vec<u8>,
    /// supported_signature_algorithms, as u16 code points.
    pub sig_schemes: Vec<u16>,
    /// certificate_authorities: the DER Names, in order.
    pub ca_names: Vec<Vec<u8>>,
}

impl CertificateRequest12 {
    /// Parses a body (handshake header excluded). `None` on any malformation,
    /// trailing bytes included.
    pub fn parse(body: &[u8]) -> Option<CertificateRequest12> {
        let mut r = Reader(body);
        let types = r.vec_u8()?.to_vec();
        let schemes_raw = r.vec_u16()?;
        if schemes_raw.len() % 2 != 0 {
            return None;
        }
        let sig_schemes = schemes_raw
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        let mut cas = Reader(r.vec_u16()?);
        let mut ca_names = Vec::new();
        while !cas.0.is_empty() {
            ca_names.push(cas.vec_u16()?.to_vec());
        }
        r.0.is_empty().then_some(CertificateRequest12 {
            cert_types: types,
            sig_schemes,
            ca_names,
        })
    }
}

/// What a [`FlightReader`] reports while it reads a plaintext handshake flight.
pub trait FlightSink {
    /// A complete handshake record, exactly as it was on the wire.
    fn record(&mut self, raw: &[u8]);
    /// A complete handshake message (header included), the number of records
    /// it spanned, and the version field of the record it started in.
    fn message(&mut self, message: &[u8], records: usize, version: [u8; 2]);
}

/// Reads the plaintext handshake flight of a TLS byte stream in one
/// direction: records in, handshake messages out, with the records each one
/// spanned. Both ends of the lab use it: lab-server's record shaper on what it
/// sends, um-sim's record tap on what it receives. Total on any input.
#[derive(Clone, Debug, Default)]
pub struct FlightReader {
    /// Input not yet forming a whole record.
    pending: Vec<u8>,
    /// Handshake bytes not yet forming a whole message.
    messages: Vec<u8>,
    /// Handshake-stream offset of `messages[0]`.
    offset: usize,
    /// Handshake-stream ranges of the records read, and their versions.
    records: Vec<(usize, usize, [u8; 2])>,
    ended: bool,
}

impl FlightReader {
    /// A reader at the start of a stream.
    pub fn new() -> FlightReader {
        FlightReader::default()
    }

    /// Whether the flight has ended (a record that is not a plaintext
    /// handshake record, or bytes that are not TLS).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Consumes `input`. Returns, once, the bytes from the end of the flight on
    /// (the first non-handshake record and everything after it); after that
    /// every call returns its whole input.
    pub fn feed(&mut self, input: &[u8], sink: &mut impl FlightSink) -> Option<Vec<u8>> {
        if self.ended {
            return Some(input.to_vec());
        }
        self.pending.extend_from_slice(input);
        let mut at = 0;
        loop {
            let Some(header) = self.pending.get(at..).and_then(RecordHeader::parse) else {
                self.pending.drain(..at);
                return None;
            };
            if !header.is_plausible() || header.content_type != CONTENT_HANDSHAKE {
                break;
            }
            let start = at + RECORD_HEADER_LEN;
            let end = start + header.len;
            let (Some(raw), Some(payload)) =
                (self.pending.get(at..end), self.pending.get(start..end))
            else {
                self.pending.drain(..at);
                return None;
            };
            sink.record(raw);
            let from = self.offset + self.messages.len();
            self.records
                .push((from, from + payload.len(), header.version));
            self.messages.extend_from_slice(payload);
            at = end;
            self.emit_messages(sink);
        }
        self.ended = true;
        let rest = self.pending.split_off(at);
        self.pending = Vec::new();
        Some(rest)
    }

    /// The message being assembled, once its header is in: the header and the
    /// records it has spanned so far (every one of them complete, so a message
    /// still in progress continues into another record).
    pub fn in_progress(&self) -> Option<(HandshakeHeader, usize)> {
        let h = HandshakeHeader::parse(&self.messages)?;
        let start = self.offset;
        let records = self.records.iter().filter(|r| r.1 > start).count();
        Some((h, records))
    }

    /// Handshake bytes of a message the flight ended in the middle of.
    pub fn take_partial(&mut self) -> (Vec<u8>, [u8; 2]) {
        let version = self.records.last().map_or([3, 3], |r| r.2);
        (std::mem::take(&mut self.messages), version)
    }

    fn emit_messages(&mut self, sink: &mut impl FlightSink) {
        let mut at = 0;
        while let Some(h) = self.messages.get(at..).and_then(HandshakeHeader::parse) {
            let end = at + HANDSHAKE_HEADER_LEN + h.len;
            let Some(message) = self.messages.get(at..end) else {
                break;
            };
            let (a, b) = (self.offset + at, self.offset + end);
            let spanned = self.records.iter().filter(|r| r.0 < b && a < r.1);
            let records = spanned.clone().count().max(1);
            let version = spanned.map(|r| r.2).next().unwrap_or([3, 3]);
            sink.message(message, records, version);
            at = end;
        }
        self.messages.drain(..at);
        self.offset += at;
        let offset = self.offset;
        self.records.retain(|r| r.1 > offset);
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn vec_u8(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(*self.take(1)?.first()?);
        self.take(n)
    }

    fn vec_u16(&mut self) -> Option<&'a [u8]> {
        let n = match self.take(2)? {
            [a, b] => usize::from(u16::from_be_bytes([*a, *b])),
            _ => return None,
        };
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_prefixes() {
        let mut out = Vec::new();
        write_ca_list(&mut out, &[&b"\x30\x00"[..], &b"\x30\x01\x05"[..]]).unwrap();
        assert_eq!(out, [0, 9, 0, 2, 0x30, 0, 0, 3, 0x30, 1, 5]);
        assert_eq!(ca_list_len([2, 3]), 9);
    }

    #[test]
    fn certificate_request_round_trip() {
        let names = [vec![0x30, 0x00], vec![0x30, 0x01, 0x07]];
        let mut body = vec![2, 1, 64, 0, 4, 4, 3, 8, 7];
        write_ca_list(&mut body, &names).unwrap();
        let cr = CertificateRequest12::parse(&body).unwrap();
        assert_eq!(cr.cert_types, [1, 64]);
        assert_eq!(cr.sig_schemes, [0x0403, 0x0807]);
        assert_eq!(cr.ca_names, names);
        body.push(0);
        assert_eq!(CertificateRequest12::parse(&body), None, "trailing byte");
        assert_eq!(CertificateRequest12::parse(&body[..5]), None, "truncated");
    }

    #[test]
    fn headers() {
        let h = RecordHeader::parse(&[22, 3, 3, 0x40, 0x00, 9]).unwrap();
        assert_eq!((h.content_type, h.version, h.len), (22, [3, 3], 16_384));
        assert!(h.is_plausible());
        assert!(RecordHeader::parse(&[22, 3, 3, 0]).is_none());
        assert!(!RecordHeader::parse(b"EHLO ").unwrap().is_plausible());
        let m = HandshakeHeader::parse(&[13, 1, 0, 2]).unwrap();
        assert_eq!((m.msg_type, m.len), (13, 65_538));
    }

    #[test]
    fn refuses_past_the_limit_without_writing() {
        let name = vec![0x30u8; 1000];
        let names = vec![name; 66];
        let mut out = vec![1, 2];
        assert_eq!(
            write_ca_list(&mut out, &names),
            Err(WireError::ListTooLong(66 * 1002))
        );
        assert_eq!(out, [1, 2]);
        let names = vec![vec![0u8; 1000]; 65];
        assert!(write_ca_list(&mut out, &names).is_ok());
        assert_eq!(out.len(), 2 + 2 + 65 * 1002);
    }
}
