//! The `certificate_authorities` vector (RFC 5246 7.4.4), written by the lab.
//!
//! `DistinguishedName certificate_authorities<0..2^16-1>`, each
//! `opaque DistinguishedName<1..2^16-1>`: every name costs 2 + its DER length,
//! and the whole list must stay within 65,535 bytes.

use super::consts::{NAME_LEN_PREFIX, U16_MAX};

/// Content length of the vector for names of these DER lengths (its own
/// 2-byte length prefix excluded).
pub fn ca_list_len(der_lens: impl IntoIterator<Item = usize>) -> usize {
    der_lens.into_iter().map(|n| NAME_LEN_PREFIX + n).sum()
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
        if len > U16_MAX {
            return Err(WireError::NameTooLong(len));
        }
        total += NAME_LEN_PREFIX + len;
    }
    let Ok(total16) = u16::try_from(total) else {
        return Err(WireError::ListTooLong(total));
    };
    out.reserve(2 + total);
    out.extend_from_slice(&total16.to_be_bytes());
    for n in names {
        let n = n.as_ref();
        // Checked above: every name fits a u16.
        let len = u16::try_from(n.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(n);
    }
    Ok(())
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
        assert_eq!(
            write_ca_list(&mut out, &[vec![0u8; U16_MAX + 1]]),
            Err(WireError::NameTooLong(U16_MAX + 1))
        );
    }
}
