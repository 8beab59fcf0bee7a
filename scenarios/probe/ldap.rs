//! LDAP StartTLS (RFC 4511 4.14) in BER, by hand: the ExtendedRequest
//! 1.3.6.1.4.1.1466.20037, the ExtendedResponse it gets, and the
//! UnbindRequest that ends the session. Pure, total on any input: a server's
//! bytes give a value or a [`BerError`], never a panic, and no length it
//! claims makes the probe buffer more than [`MAX_MESSAGE`] bytes.

/// The StartTLS extended operation.
pub const STARTTLS_OID: &str = "1.3.6.1.4.1.1466.20037";
/// The Notice of Disconnection a server sends before closing (RFC 4511 4.4.1).
pub const NOTICE_OF_DISCONNECTION_OID: &str = "1.3.6.1.4.1.1466.20036";
/// Most bytes of one LDAP message the probe reads: 64 KiB, far above a
/// StartTLS response (a result code and two short strings).
pub const MAX_MESSAGE: usize = 1 << 16;

const TAG_SEQUENCE: u8 = 0x30;
const TAG_INTEGER: u8 = 0x02;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_ENUMERATED: u8 = 0x0a;
/// [APPLICATION 2] UnbindRequest (primitive NULL).
const TAG_UNBIND: u8 = 0x42;
/// [APPLICATION 23] ExtendedRequest.
const TAG_EXTENDED_REQUEST: u8 = 0x77;
/// [APPLICATION 24] ExtendedResponse.
const TAG_EXTENDED_RESPONSE: u8 = 0x78;
/// [0] requestName.
const TAG_REQUEST_NAME: u8 = 0x80;
/// [10] responseName.
const TAG_RESPONSE_NAME: u8 = 0x8a;

/// Why bytes are not the LDAP message expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BerError {
    /// The bytes end inside an element.
    #[error("LDAP: the message ends inside an element")]
    Truncated,
    /// An element of another type than the one due.
    #[error("LDAP: expected {expected}, found tag 0x{found:02x}")]
    Tag {
        /// what was due
        expected: &'static str,
        /// the tag found
        found: u8,
    },
    /// A length form LDAP forbids (indefinite, or more than 4 length bytes).
    #[error("LDAP: length form 0x{0:02x} is not allowed")]
    LengthForm(u8),
    /// A length over [`MAX_MESSAGE`].
    #[error("LDAP: an element claims {0} bytes, over the probe's cap of {MAX_MESSAGE}")]
    TooLong(usize),
    /// An INTEGER or ENUMERATED that is empty, negative or over 32 bits.
    #[error("LDAP: {0} is not a non-negative 32-bit number")]
    Number(&'static str),
    /// Bytes after the last element.
    #[error("LDAP: {0} bytes after the message")]
    Trailing(usize),
}

/// Appends a BER element with a definite length (short or long form).
pub fn write_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        let tail = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | tail.len() as u8);
        out.extend_from_slice(tail);
    }
    out.extend_from_slice(content);
}

/// A non-negative INTEGER's content octets.
fn integer_content(n: u32) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count().min(3);
    let mut out = bytes.get(skip..).unwrap_or_default().to_vec();
    if out.first().is_some_and(|b| b & 0x80 != 0) {
        out.insert(0, 0);
    }
    out
}

/// An LDAPMessage: messageID, then the protocol operation.
fn ldap_message(message_id: u32, op: &[u8]) -> Vec<u8> {
    let mut inner = Vec::new();
    write_tlv(&mut inner, TAG_INTEGER, &integer_content(message_id));
    inner.extend_from_slice(op);
    let mut out = Vec::new();
    write_tlv(&mut out, TAG_SEQUENCE, &inner);
    out
}

/// The StartTLS ExtendedRequest.
pub fn starttls_request(message_id: u32) -> Vec<u8> {
    let mut name = Vec::new();
    write_tlv(&mut name, TAG_REQUEST_NAME, STARTTLS_OID.as_bytes());
    let mut op = Vec::new();
    write_tlv(&mut op, TAG_EXTENDED_REQUEST, &name);
    ldap_message(message_id, &op)
}

/// The UnbindRequest: how a client ends an LDAP session.
pub fn unbind_request(message_id: u32) -> Vec<u8> {
    let mut op = Vec::new();
    write_tlv(&mut op, TAG_UNBIND, &[]);
    ldap_message(message_id, &op)
}

/// An element's tag, content, and what follows it.
fn element(bytes: &[u8]) -> Result<(u8, &[u8], &[u8]), BerError> {
    let (tag, header, len) = header(bytes)?.ok_or(BerError::Truncated)?;
    let rest = bytes.get(header..).ok_or(BerError::Truncated)?;
    let (content, after) = rest.split_at_checked(len).ok_or(BerError::Truncated)?;
    Ok((tag, content, after))
}

/// An element's tag, header length and content length, once the header is
/// in (`None` before).
fn header(bytes: &[u8]) -> Result<Option<(u8, usize, usize)>, BerError> {
    let (Some(&tag), Some(&first)) = (bytes.first(), bytes.get(1)) else {
        return Ok(None);
    };
    if first < 0x80 {
        return Ok(Some((tag, 2, usize::from(first))));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return Err(BerError::LengthForm(first));
    }
    let Some(len_bytes) = bytes.get(2..2 + n) else {
        return Ok(None);
    };
    let len = len_bytes
        .iter()
        .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
    if len > MAX_MESSAGE {
        return Err(BerError::TooLong(len));
    }
    Ok(Some((tag, 2 + n, len)))
}

/// Bytes of the first element of `bytes` (header and content), once its
/// header is in; `Ok(None)` while more bytes are needed to tell.
pub fn element_len(bytes: &[u8]) -> Result<Option<usize>, BerError> {
    Ok(header(bytes)?.map(|(_, h, len)| h + len))
}

/// An element of the tag due.
fn expect<'a>(
    bytes: &'a [u8],
    tag: u8,
    name: &'static str,
) -> Result<(&'a [u8], &'a [u8]), BerError> {
    let (found, content, rest) = element(bytes)?;
    if found != tag {
        return Err(BerError::Tag {
            expected: name,
            found,
        });
    }
    Ok((content, rest))
}

/// A non-negative number of at most 32 bits.
fn number(content: &[u8], name: &'static str) -> Result<u32, BerError> {
    if content.is_empty() || content.first().is_some_and(|b| b & 0x80 != 0) {
        return Err(BerError::Number(name));
    }
    let digits: &[u8] = match content {
        [0, rest @ ..] if !rest.is_empty() => rest,
        all => all,
    };
    if digits.len() > 4 {
        return Err(BerError::Number(name));
    }
    Ok(digits.iter().fold(0u32, |acc, &b| acc << 8 | u32::from(b)))
}

/// The ExtendedResponse a StartTLS request gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtendedResponse {
    /// The messageID it answers (0: an unsolicited notification).
    pub message_id: u32,
    /// resultCode (0 = success).
    pub result_code: u32,
    /// diagnosticMessage, as text.
    pub diagnostic: String,
    /// responseName, when present.
    pub response_name: Option<String>,
}

impl ExtendedResponse {
    /// Parses one whole LDAPMessage carrying an ExtendedResponse.
    pub fn parse(bytes: &[u8]) -> Result<ExtendedResponse, BerError> {
        let (message, trailing) = expect(bytes, TAG_SEQUENCE, "LDAPMessage (SEQUENCE)")?;
        if !trailing.is_empty() {
            return Err(BerError::Trailing(trailing.len()));
        }
        let (id, rest) = expect(message, TAG_INTEGER, "messageID (INTEGER)")?;
        let message_id = number(id, "messageID")?;
        let (op, _controls) = expect(rest, TAG_EXTENDED_RESPONSE, "ExtendedResponse")?;
        let (code, rest) = expect(op, TAG_ENUMERATED, "resultCode (ENUMERATED)")?;
        let result_code = number(code, "resultCode")?;
        let (_matched, rest) = expect(rest, TAG_OCTET_STRING, "matchedDN (OCTET STRING)")?;
        let (diagnostic, mut rest) =
            expect(rest, TAG_OCTET_STRING, "diagnosticMessage (OCTET STRING)")?;
        let mut response_name = None;
        while !rest.is_empty() {
            let (tag, content, after) = element(rest)?;
            if tag == TAG_RESPONSE_NAME {
                response_name = Some(String::from_utf8_lossy(content).into_owned());
            }
            rest = after;
        }
        Ok(ExtendedResponse {
            message_id,
            result_code,
            diagnostic: String::from_utf8_lossy(diagnostic).into_owned(),
            response_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An ExtendedResponse as a server writes it.
    fn response(id: u32, code: u32, diagnostic: &str, name: Option<&str>) -> Vec<u8> {
        let mut op = Vec::new();
        write_tlv(&mut op, TAG_ENUMERATED, &integer_content(code));
        write_tlv(&mut op, TAG_OCTET_STRING, b"");
        write_tlv(&mut op, TAG_OCTET_STRING, diagnostic.as_bytes());
        if let Some(n) = name {
            write_tlv(&mut op, TAG_RESPONSE_NAME, n.as_bytes());
        }
        let mut wrapped = Vec::new();
        write_tlv(&mut wrapped, TAG_EXTENDED_RESPONSE, &op);
        ldap_message(id, &wrapped)
    }

    #[test]
    fn the_request_is_the_rfc_bytes() {
        let r = starttls_request(1);
        let mut want = vec![0x30, 0x1d, 0x02, 0x01, 0x01, 0x77, 0x18, 0x80, 0x16];
        want.extend_from_slice(STARTTLS_OID.as_bytes());
        assert_eq!(r, want);
        assert_eq!(element_len(&r), Ok(Some(r.len())));
        assert_eq!(
            unbind_request(2),
            [0x30, 0x05, 0x02, 0x01, 0x02, 0x42, 0x00]
        );
        assert_eq!(integer_content(128), [0, 128]);
        assert_eq!(integer_content(0), [0]);
    }

    #[test]
    fn responses_decode() {
        let ok = response(1, 0, "", Some(STARTTLS_OID));
        let r = ExtendedResponse::parse(&ok).unwrap();
        assert_eq!((r.message_id, r.result_code), (1, 0));
        assert_eq!(r.response_name.as_deref(), Some(STARTTLS_OID));
        // OpenLDAP without TLS configured: protocolError (2).
        let refused = response(1, 2, "unsupported extended operation", None);
        let r = ExtendedResponse::parse(&refused).unwrap();
        assert_eq!(r.result_code, 2);
        assert_eq!(r.diagnostic, "unsupported extended operation");
        // A long diagnostic uses the long length form.
        let long = response(1, 52, &"x".repeat(300), None);
        assert_eq!(
            ExtendedResponse::parse(&long).unwrap().diagnostic.len(),
            300
        );
        assert_eq!(element_len(&long), Ok(Some(long.len())));
        assert_eq!(element_len(&long[..3]), Ok(None));
        // Wrong operation, cut short, trailing bytes, hostile lengths.
        let bind = [0x30, 0x05, 0x02, 0x01, 0x01, 0x61, 0x00];
        assert!(matches!(
            ExtendedResponse::parse(&bind),
            Err(BerError::Tag { found: 0x61, .. })
        ));
        assert_eq!(
            ExtendedResponse::parse(&ok[..ok.len() - 1]),
            Err(BerError::Truncated)
        );
        let mut more = ok.clone();
        more.push(0);
        assert_eq!(ExtendedResponse::parse(&more), Err(BerError::Trailing(1)));
        assert_eq!(
            element_len(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
            Err(BerError::TooLong(0xffff_ffff))
        );
        assert_eq!(element_len(&[0x30, 0x80]), Err(BerError::LengthForm(0x80)));
        assert_eq!(
            ExtendedResponse::parse(&[0x30, 0x03, 0x02, 0x01, 0xff]),
            Err(BerError::Number("messageID"))
        );
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_fail_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = ExtendedResponse::parse(&bytes);
            if let Ok(Some(n)) = element_len(&bytes) {
                prop_assert!(n <= MAX_MESSAGE + 6);
            }
        }

        #[test]
        fn every_response_round_trips(id in 0u32.., code in 0u32.., diag in ".{0,400}",
                                      name in proptest::option::of("[0-9.]{1,40}")) {
            let bytes = response(id, code, &diag, name.as_deref());
            prop_assert_eq!(element_len(&bytes), Ok(Some(bytes.len())));
            let r = ExtendedResponse::parse(&bytes).unwrap();
            prop_assert_eq!(r.message_id, id);
            prop_assert_eq!(r.result_code, code);
            prop_assert_eq!(r.diagnostic, diag);
            prop_assert_eq!(r.response_name, name);
            // Every prefix is incomplete, never an error or a panic.
            for cut in 0..bytes.len() {
                let prefix = &bytes[..cut];
                prop_assert!(ExtendedResponse::parse(prefix).is_err());
                if let Ok(Some(n)) = element_len(prefix) {
                    prop_assert_eq!(n, bytes.len());
                }
            }
        }
    }
}
