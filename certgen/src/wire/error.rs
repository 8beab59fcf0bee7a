//! Typed errors of the wire codec: what went wrong, and in which field, so a
//! report can say "certificate_authorities: 300 bytes needed, 12 left" rather
//! than "malformed".

use std::fmt;

/// The part of a TLS message a [`DecodeError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// The 5-byte record header as a whole.
    RecordHeader,
    /// The record's u16 length.
    RecordLength,
    /// The 4-byte handshake header as a whole.
    HandshakeHeader,
    /// The handshake message's u24 length.
    HandshakeLength,
    /// CertificateRequest `certificate_types<1..2^8-1>`.
    CertificateTypes,
    /// CertificateRequest `supported_signature_algorithms<2..2^16-2>`.
    SignatureAlgorithms,
    /// CertificateRequest `certificate_authorities<0..2^16-1>`.
    CertificateAuthorities,
    /// One `DistinguishedName<1..2^16-1>` of certificate_authorities,
    /// numbered from 1.
    DistinguishedName(usize),
    /// ServerHello: its fixed fields (version, random, session id, suite,
    /// compression).
    ServerHello,
    /// ServerHello `extensions<0..2^16-1>`, or one extension in it.
    ServerHelloExtensions,
    /// Certificate `certificate_list<0..2^24-1>` (TLS 1.2).
    CertificateList,
    /// One `ASN.1Cert<1..2^24-1>` of certificate_list, numbered from 1.
    Certificate(usize),
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::RecordHeader => f.write_str("record header"),
            Field::RecordLength => f.write_str("record length"),
            Field::HandshakeHeader => f.write_str("handshake header"),
            Field::HandshakeLength => f.write_str("handshake length"),
            Field::CertificateTypes => f.write_str("certificate_types"),
            Field::SignatureAlgorithms => f.write_str("supported_signature_algorithms"),
            Field::CertificateAuthorities => f.write_str("certificate_authorities"),
            Field::DistinguishedName(n) => {
                write!(f, "DistinguishedName {n} of certificate_authorities")
            }
            Field::ServerHello => f.write_str("ServerHello"),
            Field::ServerHelloExtensions => f.write_str("ServerHello extensions"),
            Field::CertificateList => f.write_str("certificate_list"),
            Field::Certificate(n) => write!(f, "certificate {n} of certificate_list"),
        }
    }
}

/// Why bytes do not decode. Every variant names its field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ends before the field does (a length prefix, or the bytes it
    /// announces).
    #[error("{field}: {needed} bytes needed, {available} left")]
    Missing {
        /// the field cut short
        field: Field,
        /// bytes it needs
        needed: usize,
        /// bytes there were
        available: usize,
    },
    /// Bytes left after the last field of a message.
    #[error("{len} bytes of trailing data after {field}")]
    Trailing {
        /// the last field read
        field: Field,
        /// bytes left over
        len: usize,
    },
    /// A length over the cap the lab puts on it (a u24 handshake length over
    /// [`MAX_HANDSHAKE_LEN`](super::MAX_HANDSHAKE_LEN), a record over
    /// [`MAX_RECORD_PAYLOAD`](super::MAX_RECORD_PAYLOAD)).
    #[error("{field}: {len} bytes claimed, over the cap of {max}")]
    TooLong {
        /// the length field
        field: Field,
        /// what it claims
        len: usize,
        /// the cap
        max: usize,
    },
    /// A vector of 2-byte code points with an odd length.
    #[error("{field}: odd length {len} for a list of 2-byte code points")]
    OddLength {
        /// the vector
        field: Field,
        /// its length
        len: usize,
    },
    /// A record content type TLS does not define.
    #[error("record header: content type {0} is not a TLS record type (20 to 24)")]
    ContentType(u8),
    /// A record version that is not 3.x.
    #[error("record header: version {}.{} is not TLS (3.x)", .0[0], .0[1])]
    Version([u8; 2]),
}

impl DecodeError {
    /// The field the error is about.
    pub fn field(&self) -> Field {
        match self {
            DecodeError::Missing { field, .. }
            | DecodeError::Trailing { field, .. }
            | DecodeError::TooLong { field, .. }
            | DecodeError::OddLength { field, .. } => *field,
            DecodeError::ContentType(_) | DecodeError::Version(_) => Field::RecordHeader,
        }
    }
}
