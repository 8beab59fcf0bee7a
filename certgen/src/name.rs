//! X.509 Name model and its DER encoding.
//!
//! The lab needs the exact byte size of every subject it advertises, millions of
//! times per sweep, so the encoder computes lengths up front and writes each name
//! with one allocation. Parsing goes through `x509-parser`, never a hand-written
//! DER reader, so what the lab reads is what a real TLS stack reads.

use std::fmt;

use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

/// Attribute types the model covers: the ones that make up root CA subjects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttrType {
    /// countryName, 2.5.4.6 (always PrintableString, two letters).
    Country,
    /// stateOrProvinceName, 2.5.4.8.
    State,
    /// localityName, 2.5.4.7.
    Locality,
    /// organizationName, 2.5.4.10.
    Organization,
    /// organizationalUnitName, 2.5.4.11.
    OrgUnit,
    /// commonName, 2.5.4.3.
    CommonName,
    /// PKCS #9 emailAddress, 1.2.840.113549.1.9.1 (always IA5String).
    Email,
}

impl AttrType {
    /// Every type, in the order subjects conventionally list them.
    pub const ALL: [AttrType; 7] = [
        AttrType::Country,
        AttrType::State,
        AttrType::Locality,
        AttrType::Organization,
        AttrType::OrgUnit,
        AttrType::CommonName,
        AttrType::Email,
    ];

    /// The complete DER encoding of the attribute's OBJECT IDENTIFIER (tag, length, value).
    pub fn oid_der(self) -> &'static [u8] {
        match self {
            AttrType::Country => &[0x06, 0x03, 0x55, 0x04, 0x06],
            AttrType::State => &[0x06, 0x03, 0x55, 0x04, 0x08],
            AttrType::Locality => &[0x06, 0x03, 0x55, 0x04, 0x07],
            AttrType::Organization => &[0x06, 0x03, 0x55, 0x04, 0x0a],
            AttrType::OrgUnit => &[0x06, 0x03, 0x55, 0x04, 0x0b],
            AttrType::CommonName => &[0x06, 0x03, 0x55, 0x04, 0x03],
            AttrType::Email => &[
                0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01,
            ],
        }
    }

    /// The OID arcs, for crates that take them as integers (rcgen).
    pub fn oid_arcs(self) -> &'static [u64] {
        match self {
            AttrType::Country => &[2, 5, 4, 6],
            AttrType::State => &[2, 5, 4, 8],
            AttrType::Locality => &[2, 5, 4, 7],
            AttrType::Organization => &[2, 5, 4, 10],
            AttrType::OrgUnit => &[2, 5, 4, 11],
            AttrType::CommonName => &[2, 5, 4, 3],
            AttrType::Email => &[1, 2, 840, 113549, 1, 9, 1],
        }
    }

    /// The short label used in text renderings (RFC 4514 style).
    pub fn label(self) -> &'static str {
        match self {
            AttrType::Country => "C",
            AttrType::State => "ST",
            AttrType::Locality => "L",
            AttrType::Organization => "O",
            AttrType::OrgUnit => "OU",
            AttrType::CommonName => "CN",
            AttrType::Email => "emailAddress",
        }
    }

    fn from_oid_der(oid: &[u8]) -> Option<AttrType> {
        AttrType::ALL.into_iter().find(|t| &t.oid_der()[2..] == oid)
    }
}

/// ASN.1 string type of an attribute value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StringKind {
    /// PrintableString (tag 0x13): A-Z a-z 0-9 space and `'()+,-./:=?`.
    Printable,
    /// UTF8String (tag 0x0c).
    Utf8,
    /// IA5String (tag 0x16): ASCII.
    Ia5,
}

impl StringKind {
    /// The DER tag byte.
    pub fn tag(self) -> u8 {
        match self {
            StringKind::Printable => 0x13,
            StringKind::Utf8 => 0x0c,
            StringKind::Ia5 => 0x16,
        }
    }

    /// Whether `value` may be carried in this string type.
    pub fn allows(self, value: &str) -> bool {
        match self {
            StringKind::Printable => value.bytes().all(is_printable),
            StringKind::Utf8 => true,
            StringKind::Ia5 => value.is_ascii(),
        }
    }
}

/// Whether a byte is in the PrintableString alphabet (X.680 41.4).
pub fn is_printable(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b)
}

/// Errors from building or parsing a Name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// countryName must be two PrintableString characters (RFC 5280 appendix A).
    #[error("countryName must be two letters, got {0:?}")]
    BadCountry(String),
    /// The value does not fit the string type it was given.
    #[error("{label} value {value:?} is not a valid {kind:?}String")]
    BadValue {
        /// attribute label
        label: &'static str,
        /// the offending value
        value: String,
        /// the string type it was meant for
        kind: StringKind,
    },
    /// The DER could not be parsed as an X.509 Name.
    #[error("not a DER X.509 Name: {0}")]
    Der(String),
    /// A multi-valued RDN, which the model (one attribute per RDN) cannot hold.
    #[error("multi-valued RDN is outside the model")]
    MultiValuedRdn,
    /// An attribute type the model does not cover.
    #[error("attribute type {0} is outside the model")]
    UnknownAttribute(String),
    /// A string type the model does not cover (BMPString, T61String, ...).
    #[error("string tag {0:#04x} is outside the model")]
    UnknownStringTag(u32),
    /// A PrintableString with '?': X.680 allows it, but rcgen's DER writer
    /// (yasna 0.6) asserts it away, so such a name cannot be issued through rcgen.
    #[error("{0} value contains '?', which rcgen cannot write in a PrintableString")]
    QuestionMarkForRcgen(&'static str),
    /// The same attribute type twice, which rcgen's DistinguishedName cannot hold.
    #[error("attribute {0} appears twice; rcgen keeps one value per type")]
    DuplicateForRcgen(&'static str),
}

/// One attribute of a Name; each sits in its own RDN.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attribute {
    ty: AttrType,
    kind: StringKind,
    value: String,
}

impl Attribute {
    /// An attribute with the string type RFC 5280 calls for: PrintableString for
    /// countryName and wherever the value allows it, IA5String for emailAddress,
    /// UTF8String otherwise.
    pub fn new(ty: AttrType, value: impl Into<String>) -> Result<Attribute, NameError> {
        let value = value.into();
        let kind = match ty {
            AttrType::Country => StringKind::Printable,
            AttrType::Email => StringKind::Ia5,
            _ if StringKind::Printable.allows(&value) => StringKind::Printable,
            _ => StringKind::Utf8,
        };
        Attribute::with_kind(ty, kind, value)
    }

    /// An attribute with an explicit string type, validated against it.
    pub fn with_kind(
        ty: AttrType,
        kind: StringKind,
        value: impl Into<String>,
    ) -> Result<Attribute, NameError> {
        let value = value.into();
        if ty == AttrType::Country
            && (value.len() != 2 || !value.bytes().all(|b| b.is_ascii_alphabetic()))
        {
            return Err(NameError::BadCountry(value));
        }
        if !kind.allows(&value) {
            return Err(NameError::BadValue {
                label: ty.label(),
                value,
                kind,
            });
        }
        Ok(Attribute { ty, kind, value })
    }

    /// The attribute type.
    pub fn ty(&self) -> AttrType {
        self.ty
    }

    /// The ASN.1 string type of the value.
    pub fn kind(&self) -> StringKind {
        self.kind
    }

    /// The value as text.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// DER length of `SET { SEQUENCE { OID, value } }`.
    fn rdn_len(&self) -> usize {
        let atv = self.atv_content_len();
        tlv_len(tlv_len(atv))
    }

    fn atv_content_len(&self) -> usize {
        self.ty.oid_der().len() + tlv_len(self.value.len())
    }
}

/// An X.509 Name: a sequence of single-attribute RDNs, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Name {
    attrs: Vec<Attribute>,
}

impl Name {
    /// An empty name (encodes as `30 00`).
    pub fn new() -> Name {
        Name::default()
    }

    /// A name from attributes, in order.
    pub fn from_attrs(attrs: Vec<Attribute>) -> Name {
        Name { attrs }
    }

    /// Appends an attribute as a new RDN.
    pub fn push(&mut self, attr: Attribute) {
        self.attrs.push(attr);
    }

    /// The attributes, in order.
    pub fn attrs(&self) -> &[Attribute] {
        &self.attrs
    }

    /// Exact length of [`Name::to_der`] without encoding.
    pub fn der_len(&self) -> usize {
        tlv_len(self.content_len())
    }

    fn content_len(&self) -> usize {
        self.attrs.iter().map(Attribute::rdn_len).sum()
    }

    /// The DER encoding.
    pub fn to_der(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.der_len());
        self.write_der(&mut out);
        out
    }

    /// Appends the DER encoding to `out`.
    pub fn write_der(&self, out: &mut Vec<u8>) {
        write_header(out, 0x30, self.content_len());
        for a in &self.attrs {
            let atv = a.atv_content_len();
            write_header(out, 0x31, tlv_len(atv));
            write_header(out, 0x30, atv);
            out.extend_from_slice(a.ty.oid_der());
            write_header(out, a.kind.tag(), a.value.len());
            out.extend_from_slice(a.value.as_bytes());
        }
    }

    /// Parses a DER Name (with its outer SEQUENCE) through x509-parser.
    pub fn from_der(der: &[u8]) -> Result<Name, NameError> {
        let (rest, name) = X509Name::from_der(der).map_err(|e| NameError::Der(e.to_string()))?;
        if !rest.is_empty() {
            return Err(NameError::Der(format!("{} trailing bytes", rest.len())));
        }
        let mut attrs = Vec::new();
        for rdn in name.iter() {
            let mut it = rdn.iter();
            let (Some(atv), None) = (it.next(), it.next()) else {
                return Err(NameError::MultiValuedRdn);
            };
            let ty = AttrType::from_oid_der(atv.attr_type().as_bytes())
                .ok_or_else(|| NameError::UnknownAttribute(atv.attr_type().to_id_string()))?;
            let value = atv.attr_value();
            let kind = match value.header.tag() {
                Tag::PrintableString => StringKind::Printable,
                Tag::Utf8String => StringKind::Utf8,
                Tag::Ia5String => StringKind::Ia5,
                other => return Err(NameError::UnknownStringTag(other.0)),
            };
            let text = std::str::from_utf8(value.data)
                .map_err(|e| NameError::Der(format!("{} value is not UTF-8: {e}", ty.label())))?;
            attrs.push(Attribute::with_kind(ty, kind, text)?);
        }
        Ok(Name { attrs })
    }

    /// The same attributes as an rcgen DistinguishedName (identical DER), for
    /// issuing certificates. Fails on a repeated type, which rcgen cannot hold.
    pub fn to_rcgen(&self) -> Result<rcgen::DistinguishedName, NameError> {
        let mut dn = rcgen::DistinguishedName::new();
        let mut seen = [false; AttrType::ALL.len()];
        for a in &self.attrs {
            let slot = &mut seen[a.ty as usize];
            if *slot {
                return Err(NameError::DuplicateForRcgen(a.ty.label()));
            }
            *slot = true;
            dn.push(rcgen_type(a.ty), rcgen_value(a)?);
        }
        Ok(dn)
    }
}

fn rcgen_type(ty: AttrType) -> rcgen::DnType {
    match ty {
        AttrType::Country => rcgen::DnType::CountryName,
        AttrType::State => rcgen::DnType::StateOrProvinceName,
        AttrType::Locality => rcgen::DnType::LocalityName,
        AttrType::Organization => rcgen::DnType::OrganizationName,
        AttrType::OrgUnit => rcgen::DnType::OrganizationalUnitName,
        AttrType::CommonName => rcgen::DnType::CommonName,
        AttrType::Email => rcgen::DnType::CustomDnType(ty.oid_arcs().to_vec()),
    }
}

fn rcgen_value(a: &Attribute) -> Result<rcgen::DnValue, NameError> {
    let bad = || NameError::BadValue {
        label: a.ty.label(),
        value: a.value.clone(),
        kind: a.kind,
    };
    Ok(match a.kind {
        StringKind::Printable if a.value.contains('?') => {
            return Err(NameError::QuestionMarkForRcgen(a.ty.label()));
        }
        StringKind::Printable => rcgen::DnValue::PrintableString(
            rcgen::string::PrintableString::try_from(a.value.as_str()).map_err(|_| bad())?,
        ),
        StringKind::Ia5 => rcgen::DnValue::Ia5String(
            rcgen::string::Ia5String::try_from(a.value.as_str()).map_err(|_| bad())?,
        ),
        StringKind::Utf8 => rcgen::DnValue::Utf8String(a.value.clone()),
    })
}

impl fmt::Display for Name {
    /// RFC 4514-like text, most significant RDN first, as `openssl -nameopt` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.attrs.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={}", a.ty.label(), a.value)?;
        }
        Ok(())
    }
}

/// Length of a DER TLV whose content is `content` bytes long.
pub fn tlv_len(content: usize) -> usize {
    1 + len_octets(content) + content
}

fn len_octets(n: usize) -> usize {
    match n {
        0..=0x7f => 1,
        0x80..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xff_ffff => 4,
        _ => 5,
    }
}

/// Appends a DER tag and definite length.
pub(crate) fn write_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    let n = len_octets(len);
    if n == 1 {
        out.push(len as u8);
    } else {
        out.push(0x80 | (n - 1) as u8);
        for i in (0..n - 1).rev() {
            out.push((len >> (8 * i)) as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_encoding() {
        let name = Name::from_attrs(vec![
            Attribute::new(AttrType::Country, "US").unwrap(),
            Attribute::new(AttrType::CommonName, "Lab Root").unwrap(),
        ]);
        let der = name.to_der();
        let expected: &[u8] = &[
            0x30, 0x20, // Name
            0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06, 0x13, 0x02, b'U', b'S', 0x31,
            0x11, 0x30, 0x0f, 0x06, 0x03, 0x55, 0x04, 0x03, 0x13, 0x08, b'L', b'a', b'b', b' ',
            b'R', b'o', b'o', b't',
        ];
        assert_eq!(der, expected);
        assert_eq!(der.len(), name.der_len());
        assert_eq!(Name::from_der(&der).unwrap(), name);
    }

    #[test]
    fn string_kind_rules() {
        assert_eq!(
            Attribute::new(AttrType::CommonName, "Plain Name")
                .unwrap()
                .kind(),
            StringKind::Printable
        );
        assert_eq!(
            Attribute::new(AttrType::CommonName, "Zürich Root")
                .unwrap()
                .kind(),
            StringKind::Utf8
        );
        assert_eq!(
            Attribute::new(AttrType::CommonName, "a_b@c")
                .unwrap()
                .kind(),
            StringKind::Utf8
        );
        assert_eq!(
            Attribute::new(AttrType::Email, "pki@lab.test")
                .unwrap()
                .kind(),
            StringKind::Ia5
        );
        assert!(Attribute::new(AttrType::Country, "USA").is_err());
        assert!(Attribute::new(AttrType::Email, "ü@lab.test").is_err());
    }

    #[test]
    fn long_lengths_use_long_form() {
        let name = Name::from_attrs(vec![
            Attribute::new(AttrType::CommonName, "x".repeat(300)).unwrap(),
        ]);
        let der = name.to_der();
        assert_eq!(&der[..4], &[0x30, 0x82, 0x01, 0x3d]);
        assert_eq!(der.len(), name.der_len());
        assert_eq!(Name::from_der(&der).unwrap(), name);
    }

    #[test]
    fn rejects_garbage_and_duplicates_for_rcgen() {
        assert!(Name::from_der(&[0x30, 0x05, 0x31]).is_err());
        assert!(Name::from_der(&[]).is_err());
        let dup = Name::from_attrs(vec![
            Attribute::new(AttrType::OrgUnit, "a").unwrap(),
            Attribute::new(AttrType::OrgUnit, "b").unwrap(),
        ]);
        assert_eq!(
            dup.to_rcgen().unwrap_err(),
            NameError::DuplicateForRcgen("OU")
        );
    }
}
