//! Windows serialized certificate stores (`.sst`): what `CertSaveStore` writes
//! with `CERT_STORE_SAVE_AS_STORE`, and so what `certutil -generateSSTFromWU`,
//! the MMC export and `Export-Certificate -Type SST` produce.
//!
//! A Hub's trust store leaves Windows in this form, so the lab reads it; and it
//! writes it, so a lab store can be imported on a Windows server.
//!
//! Layout ([MS-OSHARED] 2.3.2.5, `DocSigSerializedCertStore` and its parts;
//! checked against Wine's `dlls/crypt32/serialize.c` and the store bytes in
//! Wine's `dlls/crypt32/tests/store.c` that its test suite compares with what
//! Windows writes), every integer a little-endian u32:
//!
//! ```text
//! header       version = 0, fileType = 0x54524543 ("CERT" in file order)
//! element*     id, encodingType, length, length bytes of value
//! end marker   id = 0, 0, length = 0 (12 zero bytes)
//! ```
//!
//! Elements form groups: zero or more property elements, then the element
//! they describe, a certificate (id 32, the DER), a CRL (33) or a CTL (34)
//! (MS-OSHARED 2.3.2.5.4: properties are read "until a SerializedPropertyEntry.id
//! is read with the unsigned integer value 0x00000020"). Wine's own file
//! reader attaches properties to the element *before* them, but the
//! specification and Wine's writer (`CRYPT_SerializeStoreElement`) put them
//! before the element they describe, and that is what is followed here.
//!
//! [MS-OSHARED]: https://learn.microsoft.com/en-us/openspecs/office_file_formats/ms-oshared/
//!
//! The reader is pure and total: bytes in, certificates or a [`SstError`]
//! naming the byte offset out. It slices the input and never allocates from a
//! length the file claims.

/// `version` of the file header: MS-OSHARED, "MUST be 0x00000000".
pub const VERSION: u32 = 0;

/// `fileType` of the file header: MS-OSHARED, "MUST be the value 0x54524543";
/// the bytes `C E R T` (Wine: `fileHeader[] = { 0, 0, 0, 0, 'C','E','R','T' }`).
pub const MAGIC: u32 = 0x5452_4543;

/// The file header: version then magic.
pub const HEADER: [u8; 8] = [0, 0, 0, 0, b'C', b'E', b'R', b'T'];

/// Bytes of an element header: id, encoding type, length (Wine's
/// `WINE_CERT_PROP_HEADER`).
pub const ELEMENT_HEADER_LEN: usize = 12;

/// `CERT_SHA1_HASH_PROP_ID` (wincrypt.h): the certificate's SHA-1, 20 bytes.
pub const CERT_SHA1_HASH_PROP_ID: u32 = 3;
/// `CERT_MD5_HASH_PROP_ID` (wincrypt.h): the certificate's MD5, 16 bytes.
pub const CERT_MD5_HASH_PROP_ID: u32 = 4;
/// `CERT_FRIENDLY_NAME_PROP_ID` (wincrypt.h): UTF-16LE, NUL-terminated
/// ([MS-GPEF] 2.2.1.1.1.1 "a null-terminated Unicode string").
pub const CERT_FRIENDLY_NAME_PROP_ID: u32 = 11;
/// `CERT_SIGNATURE_HASH_PROP_ID` (wincrypt.h).
pub const CERT_SIGNATURE_HASH_PROP_ID: u32 = 15;
/// `CERT_KEY_IDENTIFIER_PROP_ID` (wincrypt.h): SHA-1 of the public key.
pub const CERT_KEY_IDENTIFIER_PROP_ID: u32 = 20;
/// `CERT_SUBJECT_PUB_KEY_BIT_LENGTH_PROP_ID` (wincrypt.h): a u32.
pub const CERT_SUBJECT_PUB_KEY_BIT_LENGTH_PROP_ID: u32 = 92;
/// `CERT_CERT_PROP_ID`: the certificate element (MS-OSHARED 2.3.2.5.1, "MUST
/// be 0x00000020"; Wine's crypt32_private.h, "reserved" in wincrypt.h).
pub const CERT_CERT_PROP_ID: u32 = 32;
/// `CERT_CRL_PROP_ID`: a CRL element (Wine's crypt32_private.h).
pub const CERT_CRL_PROP_ID: u32 = 33;
/// `CERT_CTL_PROP_ID`: a CTL element (Wine's crypt32_private.h).
pub const CERT_CTL_PROP_ID: u32 = 34;
/// The end marker's id (MS-OSHARED 2.3.2.5.2).
pub const END_MARKER_ID: u32 = 0;

/// Largest property id: MS-OSHARED 2.3.2.5.3, "MUST be less than or equal to
/// 0x0000FFFF". A larger id means the reader has lost the element boundaries.
pub const MAX_PROP_ID: u32 = 0xFFFF;

/// `X509_ASN_ENCODING` (wincrypt.h), the encoding type MS-OSHARED requires
/// ("MUST be the value 0x00000001") and Wine writes and checks.
pub const X509_ASN_ENCODING: u32 = 1;
/// `PKCS_7_ASN_ENCODING` (wincrypt.h): the message-encoding half of an
/// encoding type; `0x10001` (both) is accepted, since only the certificate
/// half says how the value is encoded.
pub const PKCS_7_ASN_ENCODING: u32 = 0x1_0000;

/// Largest element read or written: 16 MiB, far above any certificate or CTL.
/// A larger claim is refused as such, before it is compared with the bytes
/// left.
pub const MAX_ELEMENT_LEN: u32 = 16 * 1024 * 1024;

/// One certificate of a serialized store, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SstCert {
    /// The certificate, DER, as stored (not parsed here).
    pub der: Vec<u8>,
    /// Its friendly name property, when the group has one that is not empty.
    pub friendly_name: Option<String>,
    /// Byte offset of its certificate element, for messages about the DER.
    pub offset: usize,
}

/// Why a serialized store was refused. Every variant names a byte offset.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SstError {
    /// The file ends inside a fixed-size part (the header, an element header).
    #[error("offset {offset}: file ends inside the {what}: {need} bytes expected, {have} left")]
    Truncated {
        /// where the part starts
        offset: usize,
        /// which part
        what: &'static str,
        /// its size
        need: usize,
        /// bytes left in the file
        have: usize,
    },
    /// The header is not version 0 and the `CERT` magic.
    #[error(
        "offset 0: not a serialized certificate store: version {version:#x} and type {magic:#010x}, expected 0 and 0x54524543 ('CERT')"
    )]
    BadMagic {
        /// the first u32
        version: u32,
        /// the second u32
        magic: u32,
    },
    /// An element id over [`MAX_PROP_ID`].
    #[error(
        "offset {offset}: element id {id:#x} is over 0xffff, expected a property, certificate (32), CRL (33), CTL (34) or end marker (0)"
    )]
    BadId {
        /// the element
        offset: usize,
        /// its id
        id: u32,
    },
    /// An encoding type other than X509_ASN_ENCODING (with or without PKCS_7).
    #[error(
        "offset {offset}: {} has encoding type {encoding:#x}, expected 1 (X509_ASN_ENCODING)",
        Id(*id)
    )]
    BadEncoding {
        /// the element
        offset: usize,
        /// its id
        id: u32,
        /// the encoding type
        encoding: u32,
    },
    /// An element length over [`MAX_ELEMENT_LEN`].
    #[error("offset {offset}: {} claims {len} bytes, over the cap of {cap}", Id(*id))]
    TooLong {
        /// the element
        offset: usize,
        /// its id
        id: u32,
        /// the length claimed
        len: u64,
        /// [`MAX_ELEMENT_LEN`]
        cap: u32,
    },
    /// An element whose value runs past the end of the file.
    #[error("offset {offset}: {} claims {len} bytes, but only {left} are left", Id(*id))]
    PastEnd {
        /// the element
        offset: usize,
        /// its id
        id: u32,
        /// the length claimed
        len: u32,
        /// bytes after its header
        left: usize,
    },
    /// An end marker with a non-zero length.
    #[error("offset {offset}: end marker (id 0) has length {len}, expected 0")]
    EndMarkerLength {
        /// the marker
        offset: usize,
        /// its length
        len: u32,
    },
    /// The file ends at an element boundary without the end marker.
    #[error("offset {offset}: file ends without the end marker (12 zero bytes)")]
    MissingEnd {
        /// the end of the file
        offset: usize,
    },
    /// Properties followed by the end marker instead of the element they describe.
    #[error(
        "offset {offset}: {count} propert{} with no certificate, CRL or CTL after them before the end marker",
        if *count == 1 { "y" } else { "ies" }
    )]
    Orphan {
        /// the first property of the group
        offset: usize,
        /// how many
        count: usize,
    },
    /// Bytes after the end marker.
    #[error(
        "offset {offset}: data after the end marker ({len} bytes), expected the end of the file"
    )]
    Trailing {
        /// the first byte after the marker
        offset: usize,
        /// how many
        len: usize,
    },
    /// The writer was asked for a property with a reserved or out-of-range id.
    #[error("property id {id} cannot be written: expected 1..=0xffff other than 32, 33 and 34")]
    ReservedId {
        /// the id
        id: u32,
    },
}

/// An element id in a message: its number and, when known, what it holds.
struct Id(u32);

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.0 {
            CERT_CERT_PROP_ID => "certificate",
            CERT_CRL_PROP_ID => "CRL",
            CERT_CTL_PROP_ID => "CTL",
            CERT_SHA1_HASH_PROP_ID => "SHA-1 hash property",
            CERT_MD5_HASH_PROP_ID => "MD5 hash property",
            CERT_FRIENDLY_NAME_PROP_ID => "friendly name property",
            _ => "property",
        };
        write!(f, "element {} ({what})", self.0)
    }
}

/// Whether `bytes` start with the serialized-store header: how a `.sst` is
/// recognised whatever its name.
pub fn has_header(bytes: &[u8]) -> bool {
    bytes.starts_with(&HEADER)
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// Decodes a friendly name: UTF-16LE up to the first NUL. Lossy (an unpaired
/// surrogate or an odd last byte does not refuse a store over a label the lab
/// only displays); empty names read as none.
fn friendly_name(value: &[u8]) -> Option<String> {
    let units: Vec<u16> = value
        .chunks_exact(2)
        .map_while(|c| <[u8; 2]>::try_from(c).ok())
        .map(u16::from_le_bytes)
        .take_while(|&u| u != 0)
        .collect();
    let name = String::from_utf16_lossy(&units);
    (!name.is_empty()).then_some(name)
}

/// The properties seen since the last certificate, CRL or CTL.
#[derive(Default)]
struct Group {
    first: Option<usize>,
    count: usize,
    friendly_name: Option<String>,
}

/// Reads a serialized store: its certificates in file order, each with its
/// friendly name. Other properties, CRLs and CTLs are skipped.
pub fn read(bytes: &[u8]) -> Result<Vec<SstCert>, SstError> {
    let header_len = HEADER.len();
    let (Some(version), Some(magic)) = (u32_at(bytes, 0), u32_at(bytes, 4)) else {
        return Err(SstError::Truncated {
            offset: 0,
            what: "file header (version, 'CERT' magic)",
            need: header_len,
            have: bytes.len(),
        });
    };
    if version != VERSION || magic != MAGIC {
        return Err(SstError::BadMagic { version, magic });
    }
    let mut certs = Vec::new();
    let mut group = Group::default();
    let mut at = header_len;
    loop {
        let left = bytes.len().saturating_sub(at);
        if left == 0 {
            return Err(SstError::MissingEnd { offset: at });
        }
        let (Some(id), Some(encoding), Some(len)) = (
            u32_at(bytes, at),
            u32_at(bytes, at + 4),
            u32_at(bytes, at + 8),
        ) else {
            return Err(SstError::Truncated {
                offset: at,
                what: "element header (id, encoding type, length)",
                need: ELEMENT_HEADER_LEN,
                have: left,
            });
        };
        if id == END_MARKER_ID {
            // Windows writes 12 zero bytes; the encoding word is not judged.
            if len != 0 {
                return Err(SstError::EndMarkerLength { offset: at, len });
            }
            if let Some(offset) = group.first {
                return Err(SstError::Orphan {
                    offset,
                    count: group.count,
                });
            }
            let end = at + ELEMENT_HEADER_LEN;
            if end < bytes.len() {
                return Err(SstError::Trailing {
                    offset: end,
                    len: bytes.len() - end,
                });
            }
            return Ok(certs);
        }
        if id > MAX_PROP_ID {
            return Err(SstError::BadId { offset: at, id });
        }
        if encoding & 0xFFFF != X509_ASN_ENCODING {
            return Err(SstError::BadEncoding {
                offset: at,
                id,
                encoding,
            });
        }
        if len > MAX_ELEMENT_LEN {
            return Err(SstError::TooLong {
                offset: at,
                id,
                len: u64::from(len),
                cap: MAX_ELEMENT_LEN,
            });
        }
        let start = at + ELEMENT_HEADER_LEN;
        let end = start.saturating_add(len as usize);
        let Some(value) = bytes.get(start..end) else {
            return Err(SstError::PastEnd {
                offset: at,
                id,
                len,
                left: left.saturating_sub(ELEMENT_HEADER_LEN),
            });
        };
        match id {
            CERT_CERT_PROP_ID => {
                let group = std::mem::take(&mut group);
                certs.push(SstCert {
                    der: value.to_vec(),
                    friendly_name: group.friendly_name,
                    offset: at,
                });
            }
            CERT_CRL_PROP_ID | CERT_CTL_PROP_ID => group = Group::default(),
            _ => {
                group.first.get_or_insert(at);
                group.count += 1;
                if id == CERT_FRIENDLY_NAME_PROP_ID {
                    group.friendly_name = friendly_name(value);
                }
            }
        }
        at = end;
    }
}

/// Builds a serialized store: the header, then groups of properties each
/// closed by a certificate, then (in [`Writer::finish`]) the end marker.
#[derive(Clone, Debug)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Default for Writer {
    fn default() -> Self {
        Writer::new()
    }
}

impl Writer {
    /// A store with its header and nothing else yet.
    pub fn new() -> Writer {
        Writer {
            buf: HEADER.to_vec(),
        }
    }

    fn element(&mut self, id: u32, value: &[u8]) -> Result<(), SstError> {
        let len = u32::try_from(value.len())
            .ok()
            .filter(|&l| l <= MAX_ELEMENT_LEN)
            .ok_or(SstError::TooLong {
                offset: self.buf.len(),
                id,
                len: value.len() as u64,
                cap: MAX_ELEMENT_LEN,
            })?;
        self.buf.reserve(ELEMENT_HEADER_LEN + value.len());
        self.buf.extend_from_slice(&id.to_le_bytes());
        self.buf.extend_from_slice(&X509_ASN_ENCODING.to_le_bytes());
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(value);
        Ok(())
    }

    /// A property of the next certificate. Ids 0 and 32 to 34 are structure,
    /// not properties, and ids past 0xffff are invalid: both are refused.
    pub fn property(&mut self, id: u32, value: &[u8]) -> Result<(), SstError> {
        if id == END_MARKER_ID
            || id > MAX_PROP_ID
            || (CERT_CERT_PROP_ID..=CERT_CTL_PROP_ID).contains(&id)
        {
            return Err(SstError::ReservedId { id });
        }
        self.element(id, value)
    }

    /// The friendly name property: UTF-16LE with its NUL terminator.
    pub fn friendly_name(&mut self, name: &str) -> Result<(), SstError> {
        let mut value: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
        value.extend_from_slice(&[0, 0]);
        self.property(CERT_FRIENDLY_NAME_PROP_ID, &value)
    }

    /// The certificate element, closing the group of properties before it.
    pub fn certificate(&mut self, der: &[u8]) -> Result<(), SstError> {
        self.element(CERT_CERT_PROP_ID, der)
    }

    /// The finished file: what was written, then the end marker.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&[0; ELEMENT_HEADER_LEN]);
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An element as bytes, built without the writer.
    fn element(id: u32, encoding: u32, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&encoding.to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
        out
    }

    fn file(elements: &[Vec<u8>]) -> Vec<u8> {
        let mut out = HEADER.to_vec();
        for e in elements {
            out.extend_from_slice(e);
        }
        out
    }

    const END: [u8; 12] = [0; 12];

    /// The store Wine's test suite expects CertSaveStore to write for one
    /// certificate (dlls/crypt32/tests/store.c, serializedStoreWithCert),
    /// rebuilt from its parts: header, element 32 with encoding 1, 12 zero bytes.
    #[test]
    fn reads_the_layout_windows_writes() {
        let der = [0x30, 0x03, 0x02, 0x01, 0x01];
        let mut bytes = b"\0\0\0\0CERT".to_vec();
        bytes.extend_from_slice(&[0x20, 0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0]);
        bytes.extend_from_slice(&der);
        bytes.extend_from_slice(&END);
        let certs = read(&bytes).unwrap();
        assert_eq!(certs.len(), 1);
        assert_eq!(certs[0].der, der);
        assert_eq!(certs[0].friendly_name, None);
        assert_eq!(certs[0].offset, 8);
        assert_eq!(u32::from_le_bytes(*b"CERT"), MAGIC);
    }

    #[test]
    fn properties_belong_to_the_certificate_after_them() {
        let name: Vec<u8> = "Root A\0"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let bytes = file(&[
            element(CERT_SHA1_HASH_PROP_ID, 1, &[7; 20]),
            element(CERT_FRIENDLY_NAME_PROP_ID, 1, &name),
            element(CERT_CERT_PROP_ID, 0x10001, b"A"),
            element(CERT_CRL_PROP_ID, 1, b"crl"),
            element(CERT_CERT_PROP_ID, 1, b"B"),
            element(CERT_FRIENDLY_NAME_PROP_ID, 1, &name),
            element(CERT_CTL_PROP_ID, 1, b"ctl"),
            element(CERT_CERT_PROP_ID, 1, b"C"),
            END.to_vec(),
        ]);
        let certs = read(&bytes).unwrap();
        let got: Vec<(&[u8], Option<&str>)> = certs
            .iter()
            .map(|c| (c.der.as_slice(), c.friendly_name.as_deref()))
            .collect();
        // The name before the CTL belongs to the CTL, not to C.
        assert_eq!(
            got,
            [
                (&b"A"[..], Some("Root A")),
                (&b"B"[..], None),
                (&b"C"[..], None)
            ]
        );
    }

    #[test]
    fn an_empty_store_reads_as_no_certificates() {
        assert_eq!(read(&file(&[END.to_vec()])).unwrap(), []);
    }

    #[test]
    fn refusals_name_the_offset() {
        let cert = element(CERT_CERT_PROP_ID, 1, b"0123");
        let cases: Vec<(Vec<u8>, SstError)> = vec![
            (
                b"\0\0\0\0CER".to_vec(),
                SstError::Truncated {
                    offset: 0,
                    what: "file header (version, 'CERT' magic)",
                    need: 8,
                    have: 7,
                },
            ),
            (
                b"\x01\0\0\0CERT".to_vec(),
                SstError::BadMagic {
                    version: 1,
                    magic: MAGIC,
                },
            ),
            (
                b"\0\0\0\0TREC".to_vec(),
                SstError::BadMagic {
                    version: 0,
                    magic: 0x4345_5254,
                },
            ),
            (
                file(std::slice::from_ref(&cert)),
                SstError::MissingEnd { offset: 24 },
            ),
            (
                file(&[cert.clone(), vec![0; 5]]),
                SstError::Truncated {
                    offset: 24,
                    what: "element header (id, encoding type, length)",
                    need: 12,
                    have: 5,
                },
            ),
            (
                file(&[cert[..14].to_vec()]),
                SstError::PastEnd {
                    offset: 8,
                    id: 32,
                    len: 4,
                    left: 2,
                },
            ),
            (
                file(&[
                    cert.clone(),
                    [32, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff].to_vec(),
                ]),
                SstError::TooLong {
                    offset: 24,
                    id: 32,
                    len: 0xffff_ffff,
                    cap: MAX_ELEMENT_LEN,
                },
            ),
            (
                file(&[element(0x1_0003, 1, b"")]),
                SstError::BadId {
                    offset: 8,
                    id: 0x1_0003,
                },
            ),
            (
                file(&[element(3, 2, b"")]),
                SstError::BadEncoding {
                    offset: 8,
                    id: 3,
                    encoding: 2,
                },
            ),
            (
                file(&[element(0, 0, b"xy")]),
                SstError::EndMarkerLength { offset: 8, len: 2 },
            ),
            (
                file(&[
                    cert.clone(),
                    element(3, 1, &[0; 20]),
                    element(4, 1, &[0; 16]),
                    END.to_vec(),
                ]),
                SstError::Orphan {
                    offset: 24,
                    count: 2,
                },
            ),
            (
                file(&[cert.clone(), END.to_vec(), b"x".to_vec()]),
                SstError::Trailing { offset: 36, len: 1 },
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(read(&bytes), Err(want.clone()), "{want}");
            assert!(want.to_string().starts_with("offset "), "{want}");
        }
    }

    #[test]
    fn friendly_names_are_utf16_up_to_the_nul() {
        let enc = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
        assert_eq!(
            friendly_name(&enc("Zürich Root\0junk")),
            Some("Zürich Root".into())
        );
        assert_eq!(
            friendly_name(&enc("no terminator")),
            Some("no terminator".into())
        );
        assert_eq!(friendly_name(&enc("\0")), None);
        assert_eq!(friendly_name(b""), None);
        // An odd last byte is dropped, an unpaired surrogate replaced.
        assert_eq!(friendly_name(b"A\0B"), Some("A".into()));
        assert_eq!(
            friendly_name(&[0x00, 0xd8, b'x', 0]),
            Some("\u{fffd}x".into())
        );
    }

    #[test]
    fn the_writer_refuses_structure_ids_as_properties() {
        let mut w = Writer::new();
        for id in [0, 32, 33, 34, 0x1_0000] {
            assert_eq!(w.property(id, b""), Err(SstError::ReservedId { id }));
        }
        w.property(0xffff, b"ok").unwrap();
        w.certificate(b"c").unwrap();
        let certs = read(&w.finish()).unwrap();
        assert_eq!(certs.len(), 1);
    }
}
