//! Reading a plaintext handshake flight: records in, handshake messages out.

use super::consts::{CONTENT_HANDSHAKE, HANDSHAKE_HEADER_LEN, RECORD_HEADER_LEN};
use super::error::DecodeError;
use super::headers::{HandshakeHeader, RecordHeader};

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
/// sends, um-sim's record tap on what it receives. Total on any input, and
/// holds at most one capped message ([`MAX_HANDSHAKE_LEN`](super::MAX_HANDSHAKE_LEN))
/// plus one record, whatever a peer claims.
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
    /// Why the flight ended, when bytes that are not a well-formed flight
    /// ended it.
    error: Option<DecodeError>,
}

impl FlightReader {
    /// A reader at the start of a stream.
    pub fn new() -> FlightReader {
        FlightReader::default()
    }

    /// Whether the flight has ended (a record that is not a plaintext
    /// handshake record, bytes that are not TLS, or a handshake message over
    /// the cap).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Why the flight ended, when it was not a record of another content type
    /// (the normal end: ChangeCipherSpec, an alert, application data) but
    /// malformed input: a record header that cannot be TLS, or a handshake
    /// length over [`MAX_HANDSHAKE_LEN`](super::MAX_HANDSHAKE_LEN). The
    /// message cut short stays available through [`FlightReader::in_progress`]
    /// and [`FlightReader::take_partial`].
    pub fn error(&self) -> Option<&DecodeError> {
        self.error.as_ref()
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
            let Ok(header) = RecordHeader::parse(self.pending.get(at..).unwrap_or_default()) else {
                self.pending.drain(..at);
                return None;
            };
            if let Err(e) = header.check() {
                self.error = Some(e);
                break;
            }
            if header.content_type != CONTENT_HANDSHAKE {
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
            if let Err(e) = self.emit_messages(sink) {
                self.error = Some(e);
                break;
            }
        }
        self.ended = true;
        let rest = self.pending.split_off(at.min(self.pending.len()));
        self.pending = Vec::new();
        Some(rest)
    }

    /// The message being assembled, once its header is in: the header as the
    /// peer claims it (its length may be over the cap when that ended the
    /// flight, so a stack's own limit can still be judged) and the records it
    /// has spanned so far (every one of them complete, so a message still in
    /// progress continues into another record).
    pub fn in_progress(&self) -> Option<(HandshakeHeader, usize)> {
        let h = HandshakeHeader::parse_claim(&self.messages).ok()?;
        let start = self.offset;
        let records = self.records.iter().filter(|r| r.1 > start).count();
        Some((h, records))
    }

    /// Handshake bytes of a message the flight ended in the middle of.
    pub fn take_partial(&mut self) -> (Vec<u8>, [u8; 2]) {
        let version = self.records.last().map_or([3, 3], |r| r.2);
        (std::mem::take(&mut self.messages), version)
    }

    /// Reports every complete message in `messages`. An error (a length over
    /// the cap) leaves that message, cut short, in `messages`.
    fn emit_messages(&mut self, sink: &mut impl FlightSink) -> Result<(), DecodeError> {
        let mut at = 0;
        let mut result = Ok(());
        loop {
            let h = match HandshakeHeader::parse(self.messages.get(at..).unwrap_or_default()) {
                Ok(h) => h,
                Err(DecodeError::Missing { .. }) => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
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
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{DecodeError, Field, MAX_HANDSHAKE_LEN, MAX_PLAINTEXT};

    #[derive(Default)]
    struct Count(usize, usize);

    impl FlightSink for Count {
        fn record(&mut self, _raw: &[u8]) {
            self.0 += 1;
        }
        fn message(&mut self, _message: &[u8], _records: usize, _version: [u8; 2]) {
            self.1 += 1;
        }
    }

    #[test]
    fn a_hostile_length_ends_the_flight_without_buffering_it() {
        // A ServerHelloDone, then a message claiming 16 MB, then 40 full
        // records of it: the reader stops at the claim.
        let mut wire = vec![22, 3, 3, 0, 4, 14, 0, 0, 0];
        let mut claim = vec![0u8; MAX_PLAINTEXT];
        claim[..4].copy_from_slice(&[13, 0xff, 0xff, 0xff]);
        for _ in 0..40 {
            RecordHeader::write(&mut wire, 22, [3, 3], claim.len());
            wire.extend_from_slice(&claim);
        }
        let mut reader = FlightReader::new();
        let mut sink = Count::default();
        let rest = reader.feed(&wire, &mut sink).expect("the flight ended");
        assert_eq!((sink.0, sink.1), (2, 1), "records, messages");
        assert_eq!(
            reader.error(),
            Some(&DecodeError::TooLong {
                field: Field::HandshakeLength,
                len: 0xff_ffff,
                max: MAX_HANDSHAKE_LEN
            })
        );
        let (h, records) = reader.in_progress().expect("the claim");
        assert_eq!((h.msg_type, h.len, records), (13, 0xff_ffff, 1));
        assert_eq!(rest.len(), 39 * (5 + MAX_PLAINTEXT), "the rest passes on");
        assert_eq!(
            reader.take_partial().0.len(),
            MAX_PLAINTEXT,
            "one record held"
        );
    }

    #[test]
    fn not_tls_ends_the_flight_with_the_field() {
        let mut reader = FlightReader::new();
        let rest = reader.feed(b"EHLO x\r\n", &mut Count::default());
        assert_eq!(rest.as_deref(), Some(&b"EHLO x\r\n"[..]));
        assert_eq!(reader.error(), Some(&DecodeError::ContentType(b'E')));
        let mut reader = FlightReader::new();
        let rest = reader.feed(&[20, 3, 3, 0, 1, 1], &mut Count::default());
        assert_eq!(rest.map(|r| r.len()), Some(6));
        assert_eq!(reader.error(), None, "ChangeCipherSpec is the normal end");
    }
}
