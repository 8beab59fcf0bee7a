//! The version a ServerHello selects: what tells a reader of the wire whether
//! the rest of the handshake (the client's Certificate included) is plaintext
//! (TLS 1.2) or encrypted (TLS 1.3).

use super::consts::{EXT_SUPPORTED_VERSIONS, TLS13_VERSION};
use super::error::{DecodeError, Field};
use super::reader::Reader;

/// The version a ServerHello body (handshake header excluded) selects: the
/// `supported_versions` extension when it carries one (RFC 8446 4.2.1: TLS
/// 1.3, whose legacy_version stays 0x0303), else `legacy_version`. A
/// HelloRetryRequest reads as the TLS 1.3 it is.
pub fn server_hello_version(body: &[u8]) -> Result<u16, DecodeError> {
    let mut r = Reader::new(body);
    let legacy = match r.take(2, Field::ServerHello)? {
        [a, b] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    };
    r.take(32, Field::ServerHello)?; // random
    r.vec_u8(Field::ServerHello)?; // legacy_session_id_echo
    r.take(3, Field::ServerHello)?; // cipher_suite, compression_method
    if r.is_empty() {
        return Ok(legacy);
    }
    let mut extensions = Reader::new(r.vec_u16(Field::ServerHelloExtensions)?);
    r.finish(Field::ServerHelloExtensions)?;
    while !extensions.is_empty() {
        let kind = match extensions.take(2, Field::ServerHelloExtensions)? {
            [a, b] => u16::from_be_bytes([*a, *b]),
            _ => 0,
        };
        let data = extensions.vec_u16(Field::ServerHelloExtensions)?;
        if kind == EXT_SUPPORTED_VERSIONS {
            return match data {
                [a, b] => Ok(u16::from_be_bytes([*a, *b])),
                _ => Err(DecodeError::Missing {
                    field: Field::ServerHelloExtensions,
                    needed: 2,
                    available: data.len(),
                }),
            };
        }
    }
    Ok(legacy)
}

/// Whether a ServerHello body selects TLS 1.3.
pub fn server_hello_is_tls13(body: &[u8]) -> bool {
    server_hello_version(body) == Ok(TLS13_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ServerHello body with these extensions.
    fn hello(extensions: Option<&[u8]>) -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend_from_slice(&[7; 32]);
        b.extend_from_slice(&[2, 0xaa, 0xbb, 0xc0, 0x2b, 0]);
        if let Some(e) = extensions {
            b.extend_from_slice(&u16::try_from(e.len()).unwrap().to_be_bytes());
            b.extend_from_slice(e);
        }
        b
    }

    #[test]
    fn the_selected_version() {
        assert_eq!(server_hello_version(&hello(None)), Ok(0x0303));
        // renegotiation_info, then supported_versions = 0x0304.
        let tls13 = hello(Some(&[0xff, 1, 0, 1, 0, 0, 43, 0, 2, 3, 4]));
        assert_eq!(server_hello_version(&tls13), Ok(TLS13_VERSION));
        assert!(server_hello_is_tls13(&tls13));
        let tls12 = hello(Some(&[0xff, 1, 0, 1, 0]));
        assert_eq!(server_hello_version(&tls12), Ok(0x0303));
        assert!(!server_hello_is_tls13(&tls12));
        // Cut short, trailing, a supported_versions of the wrong size.
        assert!(matches!(
            server_hello_version(&tls13[..20]),
            Err(DecodeError::Missing {
                field: Field::ServerHello,
                ..
            })
        ));
        let mut trailing = tls12.clone();
        trailing.push(0);
        assert!(matches!(
            server_hello_version(&trailing),
            Err(DecodeError::Trailing { .. })
        ));
        let odd = hello(Some(&[0, 43, 0, 1, 3]));
        assert!(matches!(
            server_hello_version(&odd),
            Err(DecodeError::Missing {
                field: Field::ServerHelloExtensions,
                needed: 2,
                available: 1
            })
        ));
    }
}
