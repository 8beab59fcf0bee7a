//! The client's plaintext flight as a server reads it: in TLS 1.2 the
//! client's Certificate message (RFC 5246 7.4.6) comes before its
//! ChangeCipherSpec, in plaintext, so a server can see the chain the client
//! sent even when the handshake then fails (the certificate refused), which
//! the TLS library does not report.

use super::consts::{HANDSHAKE_HEADER_LEN, HS_CERTIFICATE, MAX_CERTIFICATE_LEN};
use super::error::{DecodeError, Field};
use super::flight::{FlightReader, FlightSink};
use super::reader::Reader;

/// The certificates of a TLS 1.2 Certificate body (handshake header
/// excluded), leaf first, as sent: `ASN.1Cert certificate_list<0..2^24-1>`,
/// each `opaque ASN.1Cert<1..2^24-1>`. An empty list is the client declining
/// to send a certificate.
pub fn parse_certificate_list(body: &[u8]) -> Result<Vec<Vec<u8>>, DecodeError> {
    let mut r = Reader::new(body);
    let mut list = Reader::new(r.vec_u24(Field::CertificateList)?);
    r.finish(Field::CertificateList)?;
    let mut certs = Vec::new();
    while !list.is_empty() {
        let field = Field::Certificate(certs.len() + 1);
        let cert = list.vec_u24(field)?;
        if cert.is_empty() {
            // ASN.1Cert<1..2^24-1>: an empty entry is malformed (and would let
            // 3 bytes of a peer's input cost the server a chain entry).
            return Err(DecodeError::Missing {
                field,
                needed: 1,
                available: 0,
            });
        }
        certs.push(cert.to_vec());
    }
    Ok(certs)
}

/// What the client's plaintext flight showed of its Certificate message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ClientCertificate {
    /// No Certificate message in the plaintext flight (none yet; or the
    /// handshake ended before the client's second flight; or TLS 1.3, where
    /// it is encrypted).
    #[default]
    NoMessage,
    /// A Certificate message with an empty list: the client withheld its
    /// certificate.
    Empty,
    /// The certificates, leaf first, as sent (DER, not yet parsed as X.509).
    Sent(Vec<Vec<u8>>),
    /// A Certificate message claiming more than [`MAX_CERTIFICATE_LEN`]
    /// bytes: not kept.
    TooLarge {
        /// The body length the message claims.
        claimed: usize,
    },
    /// A Certificate message whose list does not decode.
    Malformed(DecodeError),
}

/// Reads the client's plaintext handshake flight and picks out its first
/// Certificate message. Reading stops for good at the first record that is
/// not a plaintext handshake record (ChangeCipherSpec, an alert, application
/// data), so nothing encrypted is ever parsed, and after that [`feed`] costs
/// nothing. Total on any input; holds at most one capped handshake message
/// ([`MAX_CERTIFICATE_LEN`]) plus one record, and drops both once reading
/// stops.
///
/// [`feed`]: ClientFlightReader::feed
#[derive(Clone, Debug, Default)]
pub struct ClientFlightReader {
    reader: FlightReader,
    found: Found,
    ended: bool,
    error: Option<DecodeError>,
}

/// The [`FlightSink`] half: keeps the first Certificate message's contents.
#[derive(Clone, Debug, Default)]
struct Found {
    certificate: ClientCertificate,
    /// Handshake messages read (the ClientHello is the first).
    messages: usize,
}

impl FlightSink for Found {
    fn record(&mut self, _raw: &[u8]) {}

    fn message(&mut self, message: &[u8], _records: usize, _version: [u8; 2]) {
        self.messages += 1;
        if message.first() != Some(&HS_CERTIFICATE)
            || self.certificate != ClientCertificate::NoMessage
        {
            return;
        }
        let body = message.get(HANDSHAKE_HEADER_LEN..).unwrap_or_default();
        self.certificate = match parse_certificate_list(body) {
            Ok(certs) if certs.is_empty() => ClientCertificate::Empty,
            Ok(certs) => ClientCertificate::Sent(certs),
            Err(e) => ClientCertificate::Malformed(e),
        };
    }
}

impl ClientFlightReader {
    /// A reader at the start of the client's byte stream (its ClientHello).
    pub fn new() -> ClientFlightReader {
        ClientFlightReader::default()
    }

    /// Consumes the next bytes the client sent, in any pieces. Once reading
    /// has stopped, does nothing.
    pub fn feed(&mut self, input: &[u8]) {
        if self.ended {
            return;
        }
        // What follows the flight is not ours to read: dropped.
        let _ = self.reader.feed(input, &mut self.found);
        if !self.reader.ended() {
            return;
        }
        self.ended = true;
        self.error = self.reader.error().cloned();
        if self.found.certificate == ClientCertificate::NoMessage
            && let Some((h, _)) = self.reader.in_progress()
            && h.msg_type == HS_CERTIFICATE
            && h.len > MAX_CERTIFICATE_LEN
        {
            self.found.certificate = ClientCertificate::TooLarge { claimed: h.len };
        }
        // Free what the flight reader holds (a message cut short).
        self.reader = FlightReader::new();
    }

    /// Whether reading has stopped: a record that is not a plaintext
    /// handshake record came, or the bytes were not a TLS flight.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The Certificate message, as far as read.
    pub fn certificate(&self) -> &ClientCertificate {
        &self.found.certificate
    }

    /// Handshake messages read in the plaintext flight.
    pub fn messages(&self) -> usize {
        self.found.messages
    }

    /// Why reading stopped, when malformed input stopped it (bytes that are
    /// not TLS, a handshake length over the cap) rather than a record of
    /// another content type.
    pub fn error(&self) -> Option<&DecodeError> {
        self.error.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{MAX_HANDSHAKE_LEN, RecordHeader};
    use proptest::prelude::*;

    fn u24(n: usize) -> [u8; 3] {
        let b = u32::try_from(n).unwrap().to_be_bytes();
        [b[1], b[2], b[3]]
    }

    /// A Certificate handshake message (header included) with these certs.
    fn certificate(certs: &[&[u8]]) -> Vec<u8> {
        let list: usize = certs.iter().map(|c| 3 + c.len()).sum();
        let mut m = vec![HS_CERTIFICATE];
        m.extend_from_slice(&u24(3 + list));
        m.extend_from_slice(&u24(list));
        for c in certs {
            m.extend_from_slice(&u24(c.len()));
            m.extend_from_slice(c);
        }
        m
    }

    /// Handshake bytes framed in records of at most `max` bytes.
    fn records(hs: &[u8], max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in hs.chunks(max) {
            RecordHeader::write(&mut out, 22, [3, 3], chunk.len());
            out.extend_from_slice(chunk);
        }
        out
    }

    const CLIENT_HELLO: &[u8] = &[1, 0, 0, 2, 3, 3];
    const CKE: &[u8] = &[16, 0, 0, 3, 2, 9, 9];
    const CCS: &[u8] = &[20, 3, 3, 0, 1, 1];

    /// A client's TLS 1.2 stream: ClientHello, then its second flight with
    /// this Certificate, then ChangeCipherSpec and an encrypted record.
    fn stream(cert_msg: &[u8], max: usize) -> Vec<u8> {
        let mut s = records(CLIENT_HELLO, 100);
        let mut second = cert_msg.to_vec();
        second.extend_from_slice(CKE);
        s.extend(records(&second, max));
        s.extend_from_slice(CCS);
        s.extend_from_slice(&[23, 3, 3, 0, 4, 11, 0, 0, 9]);
        s
    }

    fn read(bytes: &[u8]) -> ClientFlightReader {
        let mut r = ClientFlightReader::new();
        r.feed(bytes);
        r
    }

    #[test]
    fn a_certificate_split_across_records_is_read_whole() {
        let leaf = vec![0x30; 700];
        let ca = vec![0x31; 500];
        let msg = certificate(&[&leaf, &ca]);
        let r = read(&stream(&msg, 64));
        assert!(r.ended(), "the ChangeCipherSpec ends reading");
        assert_eq!(r.error(), None);
        assert_eq!(
            r.messages(),
            3,
            "ClientHello, Certificate, ClientKeyExchange"
        );
        assert_eq!(r.certificate(), &ClientCertificate::Sent(vec![leaf, ca]));
    }

    #[test]
    fn an_empty_list_is_a_withheld_certificate() {
        let r = read(&stream(&certificate(&[]), 100));
        assert_eq!(r.certificate(), &ClientCertificate::Empty);
        // No Certificate message at all: the flight had none.
        let r = read(&stream(&[], 100));
        assert_eq!(r.certificate(), &ClientCertificate::NoMessage);
        assert!(r.ended());
    }

    #[test]
    fn nothing_after_the_change_cipher_spec_is_parsed() {
        // A Certificate after the ChangeCipherSpec (as an encrypted one would
        // be) is never read.
        let mut s = records(CLIENT_HELLO, 100);
        s.extend_from_slice(CCS);
        s.extend(records(&certificate(&[&[0x30; 10]]), 100));
        let mut r = read(&s);
        assert!(r.ended());
        assert_eq!(r.certificate(), &ClientCertificate::NoMessage);
        r.feed(&records(&certificate(&[&[0x30; 10]]), 100));
        assert_eq!(r.certificate(), &ClientCertificate::NoMessage);
        // A second Certificate message does not replace the first.
        let mut hs = certificate(&[]);
        hs.extend(certificate(&[&[1]]));
        assert_eq!(
            read(&records(&hs, 100)).certificate(),
            &ClientCertificate::Empty
        );
    }

    #[test]
    fn garbage_and_oversized_lengths_are_errors() {
        // Not TLS.
        let r = read(b"EHLO there\r\n");
        assert!(r.ended());
        assert_eq!(r.error(), Some(&DecodeError::ContentType(b'E')));
        assert_eq!(r.certificate(), &ClientCertificate::NoMessage);
        // A certificate claiming more than its list holds.
        let mut msg = certificate(&[&[0x30; 8]]);
        msg[9] = 9;
        assert_eq!(
            read(&stream(&msg, 100)).certificate(),
            &ClientCertificate::Malformed(DecodeError::Missing {
                field: Field::Certificate(1),
                needed: 9,
                available: 8
            })
        );
        // A list length past the message.
        let mut msg = certificate(&[&[0x30; 8]]);
        msg[6] = 12;
        assert!(matches!(
            read(&stream(&msg, 100)).certificate(),
            ClientCertificate::Malformed(DecodeError::Missing {
                field: Field::CertificateList,
                ..
            })
        ));
        // Bytes after the list.
        let mut msg = certificate(&[&[0x30; 8]]);
        msg[3] += 1;
        msg.push(0);
        assert!(matches!(
            read(&stream(&msg, 100)).certificate(),
            ClientCertificate::Malformed(DecodeError::Trailing {
                field: Field::CertificateList,
                len: 1
            })
        ));
        // A Certificate claiming 16 MB: not kept, whatever follows.
        let mut wire = records(CLIENT_HELLO, 100);
        let mut claim = vec![HS_CERTIFICATE, 0xff, 0xff, 0xff];
        claim.resize(16_000, 0x30);
        for _ in 0..20 {
            wire.extend(records(&claim, 16_000));
        }
        let r = read(&wire);
        assert!(r.ended());
        assert_eq!(
            r.certificate(),
            &ClientCertificate::TooLarge { claimed: 0xff_ffff }
        );
        assert!(matches!(
            r.error(),
            Some(DecodeError::TooLong {
                field: Field::HandshakeLength,
                max: MAX_HANDSHAKE_LEN,
                ..
            })
        ));
        // Just over the cap is too large too; at the cap it is read.
        let over = [HS_CERTIFICATE, 4, 0, 1];
        assert_eq!(
            read(&records(&over, 100)).certificate(),
            &ClientCertificate::TooLarge {
                claimed: MAX_CERTIFICATE_LEN + 1
            }
        );
    }

    #[test]
    fn a_certificate_at_the_cap_is_kept() {
        let big = vec![0x30; MAX_CERTIFICATE_LEN - 6];
        let msg = certificate(&[&big]);
        assert_eq!(msg.len(), HANDSHAKE_HEADER_LEN + MAX_CERTIFICATE_LEN);
        assert_eq!(
            read(&stream(&msg, 16_384)).certificate(),
            &ClientCertificate::Sent(vec![big])
        );
    }

    #[test]
    fn an_empty_certificate_entry_is_malformed() {
        // certificate_list of 6 bytes: a 3-byte entry, then an empty one.
        let body = [0, 0, 9, 0, 0, 3, 0x30, 1, 0, 0, 0, 0];
        assert_eq!(
            parse_certificate_list(&body),
            Err(DecodeError::Missing {
                field: Field::Certificate(2),
                needed: 1,
                available: 0,
            })
        );
        assert_eq!(
            parse_certificate_list(
                &body[..9]
                    .iter()
                    .copied()
                    .enumerate()
                    .map(|(i, b)| if i == 2 { 6 } else { b })
                    .collect::<Vec<_>>()
            ),
            Ok(vec![vec![0x30, 1, 0]])
        );
    }

    proptest! {
        /// Any split of the client's bytes gives the same result, for any
        /// chain and record size; any bytes at all give a result.
        #[test]
        fn any_split_reads_the_same(
            certs in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..4),
            max in 1usize..400,
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
            noise in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let certs: Vec<&[u8]> = certs.iter().map(Vec::as_slice).collect();
            let mut wire = stream(&certificate(&certs), max);
            let whole = read(&wire);
            let want = if certs.is_empty() {
                ClientCertificate::Empty
            } else {
                ClientCertificate::Sent(certs.iter().map(|c| c.to_vec()).collect())
            };
            prop_assert_eq!(whole.certificate(), &want);
            wire.extend_from_slice(&noise);
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
            at.sort_unstable();
            let mut r = ClientFlightReader::new();
            let mut from = 0;
            for c in at.into_iter().chain([wire.len()]) {
                r.feed(&wire[from..c]);
                from = c;
            }
            prop_assert_eq!(r.certificate(), &want);
            prop_assert_eq!(r.messages(), whole.messages());
            // Garbage: never a panic, and splitting changes nothing.
            let g = read(&noise);
            let mut h = ClientFlightReader::new();
            for b in noise.chunks(3) {
                h.feed(b);
            }
            prop_assert_eq!(g.certificate(), h.certificate());
            prop_assert_eq!(g.error(), h.error());
        }
    }
}
