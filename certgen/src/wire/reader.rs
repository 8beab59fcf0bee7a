//! A cursor over bytes whose every read is checked: the one place the codec
//! slices input, so no parser indexes past the end of a peer's bytes.

use super::error::{DecodeError, Field};

/// Reads fields off the front of a byte slice.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader(bytes)
    }

    /// Whether every byte has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The next `n` bytes of `field`.
    pub(crate) fn take(&mut self, n: usize, field: Field) -> Result<&'a [u8], DecodeError> {
        match self.0.split_at_checked(n) {
            Some((head, rest)) => {
                self.0 = rest;
                Ok(head)
            }
            None => Err(DecodeError::Missing {
                field,
                needed: n,
                available: self.0.len(),
            }),
        }
    }

    /// A vector with a 1-byte length prefix.
    pub(crate) fn vec_u8(&mut self, field: Field) -> Result<&'a [u8], DecodeError> {
        let n = match self.take(1, field)? {
            [n] => usize::from(*n),
            _ => 0,
        };
        self.take(n, field)
    }

    /// A vector with a 2-byte length prefix.
    pub(crate) fn vec_u16(&mut self, field: Field) -> Result<&'a [u8], DecodeError> {
        let n = match self.take(2, field)? {
            [a, b] => usize::from(u16::from_be_bytes([*a, *b])),
            _ => 0,
        };
        self.take(n, field)
    }

    /// A vector with a 3-byte length prefix.
    pub(crate) fn vec_u24(&mut self, field: Field) -> Result<&'a [u8], DecodeError> {
        let n = match self.take(3, field)? {
            [a, b, c] => usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c),
            _ => 0,
        };
        self.take(n, field)
    }

    /// Ends a message: nothing may follow `last`, its last field.
    pub(crate) fn finish(self, last: Field) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing {
                field: last,
                len: self.0.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_checked() {
        let mut r = Reader::new(&[2, 7, 8, 0, 5, 1]);
        assert_eq!(r.vec_u8(Field::CertificateTypes), Ok(&[7, 8][..]));
        assert_eq!(
            r.vec_u16(Field::CertificateAuthorities),
            Err(DecodeError::Missing {
                field: Field::CertificateAuthorities,
                needed: 5,
                available: 1
            })
        );
        let mut r = Reader::new(&[0, 0, 2, 9, 9, 0, 1]);
        assert_eq!(r.vec_u24(Field::CertificateList), Ok(&[9, 9][..]));
        assert!(matches!(
            r.vec_u24(Field::Certificate(1)),
            Err(DecodeError::Missing {
                needed: 3,
                available: 2,
                ..
            })
        ));
        let r = Reader::new(&[1, 2]);
        assert_eq!(
            r.finish(Field::CertificateAuthorities),
            Err(DecodeError::Trailing {
                field: Field::CertificateAuthorities,
                len: 2
            })
        );
    }
}
