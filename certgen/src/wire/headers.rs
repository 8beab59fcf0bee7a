//! Record and handshake headers.

use super::consts::{
    CONTENT_TYPES, HANDSHAKE_HEADER_LEN, MAX_HANDSHAKE_LEN, MAX_RECORD_PAYLOAD, RECORD_HEADER_LEN,
};
use super::error::{DecodeError, Field};

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
    /// Parses the first five bytes; [`DecodeError::Missing`] when fewer are
    /// available (wait for more). Any five bytes parse: whether they can be
    /// TLS is [`RecordHeader::check`]'s question.
    pub fn parse(bytes: &[u8]) -> Result<RecordHeader, DecodeError> {
        match bytes {
            [t, v0, v1, l0, l1, ..] => Ok(RecordHeader {
                content_type: *t,
                version: [*v0, *v1],
                len: usize::from(u16::from_be_bytes([*l0, *l1])),
            }),
            _ => Err(DecodeError::Missing {
                field: Field::RecordHeader,
                needed: RECORD_HEADER_LEN,
                available: bytes.len(),
            }),
        }
    }

    /// Whether this can be a TLS record at all, and if not which field says
    /// so: a known content type, a 3.x version, a length within the RFC bound.
    pub fn check(&self) -> Result<(), DecodeError> {
        if !CONTENT_TYPES.contains(&self.content_type) {
            return Err(DecodeError::ContentType(self.content_type));
        }
        if self.version[0] != 3 {
            return Err(DecodeError::Version(self.version));
        }
        if self.len > MAX_RECORD_PAYLOAD {
            return Err(DecodeError::TooLong {
                field: Field::RecordLength,
                len: self.len,
                max: MAX_RECORD_PAYLOAD,
            });
        }
        Ok(())
    }

    /// [`RecordHeader::check`] as a yes or no.
    pub fn is_plausible(&self) -> bool {
        self.check().is_ok()
    }

    /// Appends a record header. `len` is clamped to a u16: callers frame at
    /// most [`MAX_PLAINTEXT`](super::MAX_PLAINTEXT) bytes per record.
    pub fn write(out: &mut Vec<u8>, content_type: u8, version: [u8; 2], len: usize) {
        out.push(content_type);
        out.extend_from_slice(&version);
        let len = u16::try_from(len).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
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
    /// Parses the first four bytes. [`DecodeError::Missing`] when fewer are
    /// available; [`DecodeError::TooLong`] when the length is over
    /// [`MAX_HANDSHAKE_LEN`]: no reader of the lab assembles such a message,
    /// so a peer's 16 MB claim never becomes a 16 MB buffer.
    pub fn parse(bytes: &[u8]) -> Result<HandshakeHeader, DecodeError> {
        let h = HandshakeHeader::parse_claim(bytes)?;
        if h.len > MAX_HANDSHAKE_LEN {
            return Err(DecodeError::TooLong {
                field: Field::HandshakeLength,
                len: h.len,
                max: MAX_HANDSHAKE_LEN,
            });
        }
        Ok(h)
    }

    /// The header as claimed, any u24 length: for judging a claim against a
    /// stack's own limit (Java's 32,768) without assembling the message.
    pub(crate) fn parse_claim(bytes: &[u8]) -> Result<HandshakeHeader, DecodeError> {
        match bytes {
            [t, a, b, c, ..] => Ok(HandshakeHeader {
                msg_type: *t,
                len: usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c),
            }),
            _ => Err(DecodeError::Missing {
                field: Field::HandshakeHeader,
                needed: HANDSHAKE_HEADER_LEN,
                available: bytes.len(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::U24_MAX;

    #[test]
    fn headers() {
        let h = RecordHeader::parse(&[22, 3, 3, 0x40, 0x00, 9]).unwrap();
        assert_eq!((h.content_type, h.version, h.len), (22, [3, 3], 16_384));
        assert!(h.is_plausible());
        assert_eq!(
            RecordHeader::parse(&[22, 3, 3, 0]),
            Err(DecodeError::Missing {
                field: Field::RecordHeader,
                needed: 5,
                available: 4
            })
        );
        let ehlo = RecordHeader::parse(b"EHLO ").unwrap();
        assert_eq!(ehlo.check(), Err(DecodeError::ContentType(b'E')));
        let v = RecordHeader::parse(&[22, 2, 0, 0, 1]).unwrap();
        assert_eq!(v.check(), Err(DecodeError::Version([2, 0])));
        assert_eq!(
            v.check().unwrap_err().to_string(),
            "record header: version 2.0 is not TLS (3.x)"
        );
        let big = RecordHeader::parse(&[23, 3, 3, 0xff, 0xff]).unwrap();
        assert!(matches!(
            big.check(),
            Err(DecodeError::TooLong {
                field: Field::RecordLength,
                len: 65_535,
                ..
            })
        ));
        let m = HandshakeHeader::parse(&[13, 1, 0, 2]).unwrap();
        assert_eq!((m.msg_type, m.len), (13, 65_538));
    }

    #[test]
    fn handshake_lengths_are_capped() {
        let at_cap = (MAX_HANDSHAKE_LEN as u32).to_be_bytes();
        let h = HandshakeHeader::parse(&[13, at_cap[1], at_cap[2], at_cap[3]]).unwrap();
        assert_eq!(h.len, MAX_HANDSHAKE_LEN);
        let over = ((MAX_HANDSHAKE_LEN + 1) as u32).to_be_bytes();
        assert_eq!(
            HandshakeHeader::parse(&[13, over[1], over[2], over[3]]),
            Err(DecodeError::TooLong {
                field: Field::HandshakeLength,
                len: MAX_HANDSHAKE_LEN + 1,
                max: MAX_HANDSHAKE_LEN
            })
        );
        let claim = HandshakeHeader::parse_claim(&[13, 0xff, 0xff, 0xff]).unwrap();
        assert_eq!(claim.len, U24_MAX);
        assert_eq!(
            HandshakeHeader::parse(&[13, 0xff, 0xff, 0xff])
                .unwrap_err()
                .to_string(),
            "handshake length: 16777215 bytes claimed, over the cap of 262144"
        );
    }
}
