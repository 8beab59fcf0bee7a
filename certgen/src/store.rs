//! Trust stores: ordered lists of root certificates.
//!
//! Order is the point: Schannel keeps CA names in enumeration order until the
//! budget is spent, so which root falls off depends on where it sits. A store
//! keeps the order it was loaded or built in, and inserting a CA says where.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::Error;
use crate::fsutil::{Access, MAX_STORE_FILE, read_capped, write_atomic};
use crate::wire;

/// One root certificate with the figures the lab computes over and over.
#[derive(Clone, PartialEq, Eq)]
pub struct Root {
    der: Vec<u8>,
    subject: Vec<u8>,
    sha1: [u8; 20],
    sha256: [u8; 32],
    not_before: i64,
    not_after: i64,
}

impl fmt::Debug for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Root")
            .field("subject", &self.subject_text())
            .field("sha1", &hex(&self.sha1))
            .finish()
    }
}

impl Root {
    /// Parses a DER certificate; the reason is returned as text for the caller
    /// to attach to a file name and position.
    pub fn from_der(der: Vec<u8>) -> Result<Root, String> {
        let (rest, cert) = X509Certificate::from_der(&der)
            .map_err(|e| format!("not a DER X.509 certificate, or truncated ({e})"))?;
        if !rest.is_empty() {
            return Err(format!("{} bytes after the certificate", rest.len()));
        }
        let subject = cert.tbs_certificate.subject.as_raw().to_vec();
        let not_before = cert.validity().not_before.timestamp();
        let not_after = cert.validity().not_after.timestamp();
        Ok(Root::with_parts(der, subject, not_before, not_after))
    }

    /// Builds a root from parts already known (generation), skipping the parse.
    pub(crate) fn with_parts(
        der: Vec<u8>,
        subject: Vec<u8>,
        not_before: i64,
        not_after: i64,
    ) -> Root {
        let mut sha1 = [0u8; 20];
        sha1.copy_from_slice(
            ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &der).as_ref(),
        );
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &der).as_ref());
        Root {
            der,
            subject,
            sha1,
            sha256,
            not_before,
            not_after,
        }
    }

    /// Whether the root may anchor a client-authentication chain: it has no
    /// extended key usage (every purpose), or one naming clientAuth or
    /// anyExtendedKeyUsage. A root that cannot be parsed again counts as
    /// serving client authentication, so a fix never removes it for this.
    pub fn serves_client_auth(&self) -> bool {
        match X509Certificate::from_der(&self.der) {
            Ok((_, cert)) => match cert.extended_key_usage() {
                Ok(Some(eku)) => eku.value.client_auth || eku.value.any,
                Ok(None) | Err(_) => true,
            },
            Err(_) => true,
        }
    }

    /// The certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The subject Name, DER with its SEQUENCE header: exactly the bytes a TLS
    /// server puts in a DistinguishedName of certificate_authorities.
    pub fn subject_der(&self) -> &[u8] {
        &self.subject
    }

    /// SHA-1 of the certificate: the Windows thumbprint.
    pub fn sha1(&self) -> &[u8; 20] {
        &self.sha1
    }

    /// SHA-256 of the certificate.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// notBefore, seconds since the Unix epoch.
    pub fn not_before(&self) -> i64 {
        self.not_before
    }

    /// notAfter, seconds since the Unix epoch.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// The subject as text: x509-parser's rendering, which is openssl's
    /// `-subject` form except that emailAddress shows as `Email`.
    pub fn subject_text(&self) -> String {
        subject_text(&self.subject)
    }

    /// The certificate as PEM.
    pub fn to_pem(&self) -> String {
        pem_cert(&self.der)
    }

    /// A friendly name for the root: the subject's first CN, else the whole
    /// subject as text; none for an empty subject. Written into `.sst` files
    /// so an imported lab store lists readable names in the certificates
    /// console.
    pub fn display_name(&self) -> Option<String> {
        let cn = x509_parser::x509::X509Name::from_der(&self.subject)
            .ok()
            .and_then(|(_, name)| {
                name.iter_common_name()
                    .find_map(|cn| cn.as_str().ok().map(str::to_owned))
            })
            .filter(|cn| !cn.is_empty());
        cn.or_else(|| Some(self.subject_text()).filter(|s| !s.is_empty()))
    }
}

/// Renders a DER Name as text; undecodable names render as their hex.
pub fn subject_text(der: &[u8]) -> String {
    match x509_parser::x509::X509Name::from_der(der) {
        Ok((_, name)) => name.to_string(),
        Err(_) => format!("<undecodable {}>", hex(der)),
    }
}

pub(crate) fn pem_cert(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Where [`Store::insert`] puts a CA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// Before every other root: always advertised.
    First,
    /// After every other root: the first to be dropped (the incident).
    Last,
    /// At index K (0-based); past the end means last.
    Index(usize),
    /// At its rank among the roots by ascending SHA-1 thumbprint (the number of
    /// roots with a smaller thumbprint): where a thumbprint-ordered enumeration,
    /// a model of registry order, puts it. In a store sorted by thumbprint this
    /// keeps the order sorted.
    Thumbprint,
}

impl FromStr for Position {
    type Err = Error;

    fn from_str(s: &str) -> Result<Position, Error> {
        match s {
            "first" => Ok(Position::First),
            "last" => Ok(Position::Last),
            "thumbprint" => Ok(Position::Thumbprint),
            _ => s.parse().map(Position::Index).map_err(|_| {
                Error::Usage(format!(
                    "bad position {s:?}: expected first, last, thumbprint or an index"
                ))
            }),
        }
    }
}

/// An ordered list of roots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Store {
    roots: Vec<Root>,
}

impl Store {
    /// A store holding these roots, in this order.
    pub fn from_roots(roots: Vec<Root>) -> Store {
        Store { roots }
    }

    /// The roots, in enumeration order.
    pub fn roots(&self) -> &[Root] {
        &self.roots
    }

    /// Number of roots.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// Whether the store holds no root.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// The roots, consumed.
    pub fn into_roots(self) -> Vec<Root> {
        self.roots
    }

    /// Inserts `root` at `pos` and returns the index it landed at.
    pub fn insert(&mut self, root: Root, pos: Position) -> usize {
        let at = match pos {
            Position::First => 0,
            Position::Last => self.roots.len(),
            Position::Index(k) => k.min(self.roots.len()),
            Position::Thumbprint => self.roots.iter().filter(|r| r.sha1 < root.sha1).count(),
        };
        self.roots.insert(at, root);
        at
    }

    /// Sum of the subjects' DER lengths.
    pub fn subject_bytes(&self) -> usize {
        self.roots.iter().map(|r| r.subject.len()).sum()
    }

    /// Size of the TLS 1.2 certificate_authorities content: sum of 2 + DER length.
    pub fn ca_list_bytes(&self) -> usize {
        wire::ca_list_len(self.roots.iter().map(|r| r.subject.len()))
    }

    /// Loads a store from a PEM bundle, a DER certificate, a PKCS #7 file
    /// (.p7b/.p7c, DER or PEM), a Windows serialized store (.sst), a DN list
    /// ([`crate::dnlist`]: one placeholder-signed root per name) or a folder
    /// of such files (sorted by name).
    ///
    /// A file, or a folder's files together, past [`MAX_STORE_FILE`] is refused
    /// ([`Error::TooLarge`]): a device or a huge dump must not exhaust memory.
    pub fn load(path: &Path) -> Result<Store, Error> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let roots = if meta.is_dir() {
            load_dir(path)?
        } else {
            let bytes = read_capped(path, MAX_STORE_FILE)?;
            parse_file(path, &bytes)?
        };
        if roots.is_empty() {
            return Err(Error::malformed(path, "no certificates found"));
        }
        Ok(Store { roots })
    }

    /// Saves as `DIR/roots.pem` (the bundle, in order) and `DIR/manifest.json`,
    /// each written atomically.
    pub fn save(&self, dir: &Path, generator: Option<&Generator>) -> Result<(), Error> {
        crate::fsutil::create_dir(dir)?;
        let mut bundle = String::with_capacity(self.roots.len() * 800);
        for r in &self.roots {
            bundle.push_str(&r.to_pem());
        }
        write_atomic(&dir.join("roots.pem"), bundle.as_bytes(), Access::Public)?;
        let manifest = Manifest::of(self, generator.cloned());
        let mut json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::Crypto(format!("manifest encoding: {e}")))?;
        json.push(b'\n');
        write_atomic(&dir.join("manifest.json"), &json, Access::Public)
    }

    /// The store as a Windows serialized store (`.sst`), in order: per root
    /// its SHA-1 hash property, its friendly name ([`Root::display_name`])
    /// and the certificate, then the end marker. Windows imports it with
    /// `certutil -addstore Root FILE` or the certificates console.
    pub fn to_sst(&self) -> Result<Vec<u8>, crate::sst::SstError> {
        use crate::sst::{CERT_SHA1_HASH_PROP_ID, Writer};
        let mut w = Writer::new();
        for r in &self.roots {
            w.property(CERT_SHA1_HASH_PROP_ID, &r.sha1)?;
            if let Some(name) = r.display_name() {
                w.friendly_name(&name)?;
            }
            w.certificate(&r.der)?;
        }
        Ok(w.finish())
    }

    /// Writes [`Store::to_sst`] to `path` atomically, mode 0644.
    pub fn save_sst(&self, path: &Path) -> Result<(), Error> {
        let bytes = self.to_sst().map_err(|problem| Error::Sst {
            path: path.to_path_buf(),
            problem,
        })?;
        write_atomic(path, &bytes, Access::Public)
    }
}

/// How a generated store was made, recorded in its manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generator {
    /// DN seed.
    pub seed: u64,
    /// Whether keys were derived from the seed (reproducible files).
    pub seeded_keys: bool,
    /// Subject profile.
    pub profile: String,
    /// Key algorithm.
    pub key: String,
    /// Whether roots carry placeholder self-signatures (`--dn-only`).
    pub dn_only: bool,
}

/// `manifest.json` beside a saved bundle.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// Format tag.
    pub format: String,
    /// Number of roots.
    pub count: usize,
    /// Sum of subject DER lengths.
    pub subject_bytes: usize,
    /// TLS 1.2 certificate_authorities size (sum of 2 + DER length).
    pub ca_list_bytes: usize,
    /// How the store was generated, when certgen generated it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub generator: Option<Generator>,
    /// One entry per root, in order.
    pub roots: Vec<ManifestRoot>,
}

/// One root in a manifest.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ManifestRoot {
    /// Position in the store.
    pub index: usize,
    /// Subject as text.
    pub subject: String,
    /// Subject DER length.
    pub subject_der_len: usize,
    /// SHA-1 thumbprint, hex.
    pub sha1: String,
    /// SHA-256, hex.
    pub sha256: String,
    /// notBefore, RFC 3339.
    pub not_before: String,
    /// notAfter, RFC 3339.
    pub not_after: String,
}

impl Manifest {
    /// The manifest of a store.
    pub fn of(store: &Store, generator: Option<Generator>) -> Manifest {
        Manifest {
            format: "umlab-store/1".to_owned(),
            count: store.len(),
            subject_bytes: store.subject_bytes(),
            ca_list_bytes: store.ca_list_bytes(),
            generator,
            roots: store
                .roots
                .iter()
                .enumerate()
                .map(|(index, r)| ManifestRoot {
                    index,
                    subject: r.subject_text(),
                    subject_der_len: r.subject.len(),
                    sha1: hex(&r.sha1),
                    sha256: hex(&r.sha256),
                    not_before: rfc3339(r.not_before),
                    not_after: rfc3339(r.not_after),
                })
                .collect(),
        }
    }
}

fn rfc3339(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ts.to_string())
}

const CERT_EXTENSIONS: &[&str] = &["pem", "crt", "cer", "der", "p7b", "p7c", "sst", "dnlist"];

fn load_dir(dir: &Path) -> Result<Vec<Root>, Error> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| CERT_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
        })
        .collect();
    if files.is_empty() {
        return Err(Error::malformed(
            dir,
            "folder holds no .pem, .crt, .cer, .der, .p7b, .sst or .dnlist file",
        ));
    }
    files.sort();
    // A folder is one store: its files together get the cap of one store
    // file. Their sizes are checked before anything is read; the running
    // budget also covers files that grow, or that are devices behind a link.
    let too_large = || Error::TooLarge {
        path: dir.to_path_buf(),
        limit: MAX_STORE_FILE,
    };
    let listed: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .fold(0, u64::saturating_add);
    if listed > MAX_STORE_FILE {
        return Err(too_large());
    }
    let mut budget = MAX_STORE_FILE;
    let mut roots = Vec::new();
    for f in files {
        let bytes = read_capped(&f, budget).map_err(|e| match e {
            Error::TooLarge { .. } => too_large(),
            other => other,
        })?;
        budget = budget.saturating_sub(bytes.len() as u64);
        roots.extend(parse_file(&f, &bytes)?);
    }
    Ok(roots)
}

/// Parses one file's bytes: a Windows serialized store (by its header, or a
/// `.sst` name), PEM (CERTIFICATE and PKCS7 sections), or DER (a certificate
/// or a PKCS #7 SignedData).
pub fn parse_file(path: &Path, bytes: &[u8]) -> Result<Vec<Root>, Error> {
    // First: the header is unambiguous (PEM starts with text, DER with 0x30),
    // and a certificate inside may hold any bytes, "-----BEGIN " included.
    if crate::sst::has_header(bytes) {
        return parse_sst(path, bytes);
    }
    if crate::dnlist::has_header(bytes) {
        let names = crate::dnlist::read(bytes).map_err(|problem| Error::DnList {
            path: path.to_path_buf(),
            problem,
        })?;
        let store =
            crate::roots::with_subjects(&names, crate::dnlist::LOAD_SEED, crate::KeyAlg::Ed25519)?;
        return Ok(store.into_roots());
    }
    let looks_pem = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .and_then(|i| bytes.get(i..))
        .is_some_and(|rest| rest.starts_with(b"-----BEGIN"))
        || bytes.windows(11).any(|w| w == b"-----BEGIN ");
    if looks_pem {
        return parse_pem(path, bytes);
    }
    if bytes.is_empty() {
        return Err(Error::malformed(path, "empty file"));
    }
    let ext = path
        .extension()
        .and_then(|x| x.to_str())
        .map(str::to_ascii_lowercase);
    if ext.as_deref() == Some("sst") {
        // No header: the reader says what the first bytes are instead.
        return parse_sst(path, bytes);
    }
    if matches!(ext.as_deref(), Some("p7b" | "p7c")) {
        return parse_pkcs7(path, bytes);
    }
    if bytes.first() != Some(&0x30) {
        return Err(Error::malformed(
            path,
            "neither PEM (no -----BEGIN line) nor DER (does not start with a SEQUENCE)",
        ));
    }
    match Root::from_der(bytes.to_vec()) {
        Ok(root) => Ok(vec![root]),
        // A .cer/.der that is really a PKCS #7 bundle is common in Windows exports.
        Err(cert_err) => parse_pkcs7(path, bytes).map_err(|_| Error::malformed(path, cert_err)),
    }
}

/// A Windows serialized store: its certificates in file order. A structural
/// fault names its byte offset; a certificate that does not parse names its
/// element's offset and its number in the file.
fn parse_sst(path: &Path, bytes: &[u8]) -> Result<Vec<Root>, Error> {
    let certs = crate::sst::read(bytes).map_err(|problem| Error::Sst {
        path: path.to_path_buf(),
        problem,
    })?;
    certs
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let offset = c.offset;
            Root::from_der(c.der).map_err(|e| {
                Error::malformed(
                    path,
                    format!(
                        "serialized store: offset {offset}: certificate {}: {e}",
                        i + 1
                    ),
                )
            })
        })
        .collect()
}

/// PEM: CERTIFICATE and PKCS7 blocks in file order, other blocks (keys)
/// skipped. A cut or corrupt bundle is refused, naming the line, instead of
/// loading the blocks before the damage as a smaller store.
fn parse_pem(path: &Path, bytes: &[u8]) -> Result<Vec<Root>, Error> {
    let pem_error = |problem| Error::Pem {
        path: path.to_path_buf(),
        problem,
    };
    let blocks = crate::bundle::blocks(bytes).map_err(pem_error)?;
    let mut roots = Vec::new();
    for block in blocks {
        let at = |e: String| {
            let (line, n, begin) = (block.line, block.index, block.begin());
            Error::malformed(path, format!("line {line}: PEM block {n} ({begin}): {e}"))
        };
        match block.label {
            "CERTIFICATE" | "X509 CERTIFICATE" | "TRUSTED CERTIFICATE" => {
                let der = block.decode().map_err(pem_error)?;
                roots.push(Root::from_der(der).map_err(at)?);
            }
            "PKCS7" | "CERTIFICATE CHAIN" => {
                let der = block.decode().map_err(pem_error)?;
                roots.extend(pkcs7_roots(&der).map_err(at)?);
            }
            _ => {}
        }
    }
    if roots.is_empty() {
        return Err(Error::malformed(path, "no CERTIFICATE or PKCS7 block"));
    }
    Ok(roots)
}

/// Reads the certificates of a PKCS #7 SignedData (what Windows exports as
/// .p7b), in the order the file lists them.
///
/// Walked with `der`'s reader rather than decoded into a typed SignedData:
/// typed decoders treat `certificates` as a DER SET OF and sort it (which loses
/// the enumeration order, rejects duplicates and is quadratic), and the
/// certificates' own bytes must be kept exactly for their thumbprints.
fn parse_pkcs7(path: &Path, bytes: &[u8]) -> Result<Vec<Root>, Error> {
    pkcs7_roots(bytes).map_err(|e| Error::malformed(path, e))
}

/// The roots of a PKCS #7 SignedData; the reason as text for the caller to
/// attach to a file name and position.
fn pkcs7_roots(bytes: &[u8]) -> Result<Vec<Root>, String> {
    let certs = pkcs7_certificates(bytes).map_err(|e| format!("PKCS #7: {e}"))?;
    if certs.is_empty() {
        return Err("PKCS #7: no certificates inside".to_owned());
    }
    certs
        .into_iter()
        .enumerate()
        .map(|(i, der)| {
            Root::from_der(der.to_vec()).map_err(|e| format!("PKCS #7 certificate {}: {e}", i + 1))
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
enum P7Error {
    #[error("{0}")]
    Der(#[from] der::Error),
    #[error("content type {0} is not signedData (1.2.840.113549.1.7.2)")]
    NotSignedData(der::asn1::ObjectIdentifier),
    #[error("signedData content is not a [0] EXPLICIT")]
    NoContent,
}

fn pkcs7_certificates(bytes: &[u8]) -> Result<Vec<&[u8]>, P7Error> {
    use der::asn1::{AnyRef, ObjectIdentifier};
    use der::{EncodingRules, Reader, SliceReader, Tag, TagNumber, Tagged as _};

    const SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
    const EXPLICIT_0: Tag = Tag::ContextSpecific {
        constructed: true,
        number: TagNumber(0),
    };
    // BER: some exporters write indefinite lengths; the certificates inside
    // are still DER and are parsed by x509-parser.
    let rules = EncodingRules::Ber;
    let mut outer = SliceReader::new_with_encoding_rules(bytes, rules)?;
    let certs = outer.sequence(|info| -> Result<Vec<&[u8]>, P7Error> {
        let content_type: ObjectIdentifier = info.decode()?;
        if content_type != SIGNED_DATA {
            return Err(P7Error::NotSignedData(content_type));
        }
        let content: AnyRef<'_> = info.decode()?;
        if content.tag() != EXPLICIT_0 {
            return Err(P7Error::NoContent);
        }
        let mut signed = SliceReader::new_with_encoding_rules(content.value(), rules)?;
        signed.sequence(|sd| -> Result<Vec<&[u8]>, P7Error> {
            // version, digestAlgorithms, encapContentInfo
            for _ in 0..3 {
                sd.tlv_bytes()?;
            }
            let mut certs = Vec::new();
            if !sd.is_finished() && Tag::peek(sd)? == EXPLICIT_0 {
                let set: AnyRef<'_> = sd.decode()?;
                let mut choices = SliceReader::new_with_encoding_rules(set.value(), rules)?;
                while !choices.is_finished() {
                    let tlv = choices.tlv_bytes()?;
                    // CertificateChoices: only the plain Certificate is a SEQUENCE.
                    if tlv.first() == Some(&0x30) {
                        certs.push(tlv);
                    }
                }
            }
            // crls [1] and signerInfos are not needed.
            while !sd.is_finished() {
                sd.tlv_bytes()?;
            }
            Ok(certs)
        })
    })?;
    outer.finish()?;
    Ok(certs)
}
