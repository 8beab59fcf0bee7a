//! The TLS 1.2 CertificateRequest body (RFC 5246 7.4.4).

use super::error::{DecodeError, Field};
use super::reader::Reader;

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
    /// Parses a body (handshake header excluded). The error names the field:
    /// the one cut short, the name whose length overruns the list, or the
    /// last field when bytes trail it.
    pub fn parse(body: &[u8]) -> Result<CertificateRequest12, DecodeError> {
        let mut r = Reader::new(body);
        let cert_types = r.vec_u8(Field::CertificateTypes)?.to_vec();
        let schemes_raw = r.vec_u16(Field::SignatureAlgorithms)?;
        if schemes_raw.len() % 2 != 0 {
            return Err(DecodeError::OddLength {
                field: Field::SignatureAlgorithms,
                len: schemes_raw.len(),
            });
        }
        let sig_schemes = schemes_raw
            .chunks_exact(2)
            .map(|c| match c {
                [a, b] => u16::from_be_bytes([*a, *b]),
                _ => 0,
            })
            .collect();
        let mut cas = Reader::new(r.vec_u16(Field::CertificateAuthorities)?);
        let mut ca_names = Vec::new();
        while !cas.is_empty() {
            let field = Field::DistinguishedName(ca_names.len() + 1);
            ca_names.push(cas.vec_u16(field)?.to_vec());
        }
        r.finish(Field::CertificateAuthorities)?;
        Ok(CertificateRequest12 {
            cert_types,
            sig_schemes,
            ca_names,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::write_ca_list;

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
        assert_eq!(
            CertificateRequest12::parse(&body),
            Err(DecodeError::Trailing {
                field: Field::CertificateAuthorities,
                len: 1
            }),
            "trailing byte"
        );
        assert_eq!(
            CertificateRequest12::parse(&body[..5]),
            Err(DecodeError::Missing {
                field: Field::SignatureAlgorithms,
                needed: 4,
                available: 0
            }),
            "truncated"
        );
        // The second name claims more than the list holds.
        let mut bad = vec![1, 1, 0, 2, 4, 3, 0, 7, 0, 1, 0x30, 0, 9, 0x30, 0];
        assert_eq!(
            CertificateRequest12::parse(&bad),
            Err(DecodeError::Missing {
                field: Field::DistinguishedName(2),
                needed: 9,
                available: 2
            })
        );
        bad[2] = 1;
        assert!(matches!(
            CertificateRequest12::parse(&bad),
            Err(DecodeError::Missing {
                field: Field::SignatureAlgorithms,
                ..
            })
        ));
        let odd = [1, 1, 0, 3, 4, 3, 8, 0, 0];
        assert_eq!(
            CertificateRequest12::parse(&odd),
            Err(DecodeError::OddLength {
                field: Field::SignatureAlgorithms,
                len: 3
            })
        );
    }
}
