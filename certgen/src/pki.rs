//! The lab PKI: the certificates of the incident's Exchange organisation, in
//! the three shapes real organisations have (DESIGN.md section 4):
//!
//! - [`Shape::OneTier`]: an enterprise root CA issues the UM server's client
//!   certificate and the Hub's server certificate.
//! - [`Shape::TwoTier`]: an enterprise root issues an issuing CA, which issues
//!   both leaves, as with AD CS. The UM presents leaf + issuing CA; the Hub's
//!   store holds only the root, so a client stack passes `issuer-listed` only
//!   when it matches over its whole chain.
//! - [`Shape::SelfSigned`]: the UM and Hub certificates are self-signed, as
//!   Exchange's default certificate is; the Hub trusts the UM by holding the
//!   UM's certificate itself in its store.
//!
//! Whatever the shape, [`LabPki::ca`] is what the Hub's store must hold to
//! accept the UM, and [`LabPki::hub_anchor`] what the UM must trust to accept
//! the Hub.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::str::FromStr;

use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyUsagePurpose,
    SanType, SerialNumber,
};

use crate::error::Error;
use crate::fsutil::{Access, create_dir, write_atomic};
use crate::keys::{KeyAlg, LabKey, digest32};
use crate::name::{AttrType, Attribute, Name};
use crate::roots::{date, serial};
use crate::store::{Root, pem_cert};

/// Subject CN of the enterprise (root) CA.
pub const CA_CN: &str = "umlab Enterprise Root CA";
/// Subject CN of the issuing CA of the two-tier shape.
pub const ISSUING_CN: &str = "umlab Enterprise Issuing CA";
/// DNS name of the UM server (client certificate).
pub const UM_DNS: &str = "um.lab.test";
/// DNS name of the Hub Transport server (server certificate).
pub const HUB_DNS: &str = "hub.lab.test";

/// Every file name [`LabPki::save`] may write. Those a shape does not write
/// are removed from the folder, so a folder reused for another shape never
/// keeps, say, a `ca.key` that no longer matches `ca.pem`.
pub const FILE_NAMES: [&str; 8] = [
    "ca.pem",
    "ca.key",
    "issuing-ca.pem",
    "issuing-ca.key",
    "um.pem",
    "um.key",
    "hub.pem",
    "hub.key",
];

/// The shape of the lab PKI.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Shape {
    /// Enterprise root CA -> UM and Hub leaves.
    #[default]
    OneTier,
    /// Enterprise root -> issuing CA -> UM and Hub leaves (AD CS style).
    TwoTier,
    /// UM and Hub certificates self-signed (Exchange's default certificate).
    SelfSigned,
}

impl Shape {
    /// Every shape, in documentation order.
    pub const ALL: [Shape; 3] = [Shape::OneTier, Shape::TwoTier, Shape::SelfSigned];
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Shape::OneTier => "one-tier",
            Shape::TwoTier => "two-tier",
            Shape::SelfSigned => "self-signed",
        })
    }
}

impl FromStr for Shape {
    type Err = Error;

    fn from_str(s: &str) -> Result<Shape, Error> {
        Shape::ALL
            .into_iter()
            .find(|shape| shape.to_string() == s)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "unknown PKI shape {s:?}: expected one-tier, two-tier or self-signed"
                ))
            })
    }
}

/// A certificate and its private key.
#[derive(Debug)]
pub struct Issued {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// Its private key.
    pub key: LabKey,
}

impl Issued {
    /// The certificate as a store root (for inserting the CA into a store).
    pub fn root(&self) -> Result<Root, Error> {
        Root::from_der(self.cert_der.clone()).map_err(Error::Crypto)
    }
}

/// The certificates of the lab.
#[derive(Debug)]
pub struct LabPki {
    /// The shape they were issued in.
    pub shape: Shape,
    /// What the Hub's store must hold to accept the UM: the enterprise root
    /// CA (one-tier, two-tier), or the UM's own self-signed certificate and
    /// its key (self-signed).
    pub ca: Issued,
    /// The issuing CA (two-tier only): sent by the UM after its leaf, never
    /// in the Hub's store.
    pub issuing: Option<Issued>,
    /// UM server: clientAuth, `um.lab.test`.
    pub um: Issued,
    /// Hub server: serverAuth, `hub.lab.test`, `localhost`, 127.0.0.1.
    pub hub: Issued,
}

fn subject(ou: &str, cn: &str) -> Result<Name, Error> {
    Ok(Name::from_attrs(vec![
        Attribute::new(AttrType::Country, "US")?,
        Attribute::new(AttrType::Organization, "umlab")?,
        Attribute::new(AttrType::OrgUnit, ou)?,
        Attribute::new(AttrType::CommonName, cn)?,
    ]))
}

/// Keys and serial numbers of one PKI: seeded, or from the OS RNG.
struct Draw {
    seed: Option<u64>,
    alg: KeyAlg,
}

impl Draw {
    fn key(&self, label: &[u8]) -> Result<LabKey, Error> {
        match self.seed {
            Some(s) => LabKey::from_seed(self.alg, digest32(label, &s.to_be_bytes())),
            None => LabKey::random(self.alg),
        }
    }

    fn serial(&self, index: u64) -> SerialNumber {
        match self.seed {
            Some(s) => serial(b"umlab-pki-serial", s, index),
            None => serial(b"umlab-pki-serial", rand_u64(), index),
        }
    }
}

/// Serial-number indices: one per certificate of the PKI.
const SERIAL_ROOT: u64 = 0;
const SERIAL_UM: u64 = 1;
const SERIAL_HUB: u64 = 2;
const SERIAL_ISSUING: u64 = 3;

/// A CA certificate's parameters: `path_len` CAs may follow it.
fn ca_params(cn: &str, path_len: u8, serial: SerialNumber) -> Result<CertificateParams, Error> {
    let mut ca = CertificateParams::default();
    ca.distinguished_name = subject("Lab PKI", cn)?.to_rcgen()?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.serial_number = Some(serial);
    ca.not_before = date((2025, 1, 1));
    ca.not_after = date((2049, 12, 31));
    Ok(ca)
}

/// The two servers' certificates.
#[derive(Clone, Copy)]
enum Leaf {
    Um,
    Hub,
}

impl Leaf {
    fn key_label(self) -> &'static [u8] {
        match self {
            Leaf::Um => b"umlab-pki-um",
            Leaf::Hub => b"umlab-pki-hub",
        }
    }

    fn params(self, serial: SerialNumber, issued: bool) -> Result<CertificateParams, Error> {
        let dns = |s: &str| -> Result<SanType, Error> { Ok(SanType::DnsName(s.try_into()?)) };
        let (ou, cn, sans, eku) = match self {
            Leaf::Um => (
                "Unified Messaging",
                UM_DNS,
                vec![dns(UM_DNS)?],
                ExtendedKeyUsagePurpose::ClientAuth,
            ),
            Leaf::Hub => (
                "Hub Transport",
                HUB_DNS,
                vec![
                    dns(HUB_DNS)?,
                    dns("localhost")?,
                    SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                ],
                ExtendedKeyUsagePurpose::ServerAuth,
            ),
        };
        let mut p = CertificateParams::default();
        p.distinguished_name = subject(ou, cn)?.to_rcgen()?;
        p.subject_alt_names = sans;
        p.extended_key_usages = vec![eku];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // A self-signed certificate names no other key.
        p.use_authority_key_identifier_extension = issued;
        p.serial_number = Some(serial);
        p.not_before = date((2025, 1, 1));
        p.not_after = date((2049, 12, 31));
        Ok(p)
    }

    fn serial_index(self) -> u64 {
        match self {
            Leaf::Um => SERIAL_UM,
            Leaf::Hub => SERIAL_HUB,
        }
    }

    /// The leaf signed by `issuer`.
    fn issue(
        self,
        draw: &Draw,
        issuer: &Issuer<'_, impl rcgen::SigningKey>,
    ) -> Result<Issued, Error> {
        let key = draw.key(self.key_label())?;
        let cert = self
            .params(draw.serial(self.serial_index()), true)?
            .signed_by(&key, issuer)?;
        Ok(Issued {
            cert_der: cert.der().to_vec(),
            key,
        })
    }

    /// The leaf signed by its own key.
    fn self_signed(self, draw: &Draw) -> Result<Issued, Error> {
        let key = draw.key(self.key_label())?;
        let cert = self
            .params(draw.serial(self.serial_index()), false)?
            .self_signed(&key)?;
        Ok(Issued {
            cert_der: cert.der().to_vec(),
            key,
        })
    }
}

/// Issues the lab PKI in its default shape, one-tier. With a seed the output
/// is byte-identical on every run.
pub fn generate(seed: Option<u64>, alg: KeyAlg) -> Result<LabPki, Error> {
    generate_shape(seed, alg, Shape::OneTier)
}

/// Issues the lab PKI in `shape`. With a seed the output is byte-identical on
/// every run; the one-tier output is the same as [`generate`]'s.
pub fn generate_shape(seed: Option<u64>, alg: KeyAlg, shape: Shape) -> Result<LabPki, Error> {
    let draw = Draw { seed, alg };
    if shape == Shape::SelfSigned {
        let um = Leaf::Um.self_signed(&draw)?;
        let hub = Leaf::Hub.self_signed(&draw)?;
        let ca = Issued {
            cert_der: um.cert_der.clone(),
            key: um.key.try_clone()?,
        };
        return Ok(LabPki {
            shape,
            ca,
            issuing: None,
            um,
            hub,
        });
    }
    let root_key = draw.key(b"umlab-pki-ca")?;
    let path_len = if shape == Shape::TwoTier { 1 } else { 0 };
    let root_params = ca_params(CA_CN, path_len, draw.serial(SERIAL_ROOT))?;
    let root_cert = root_params.self_signed(&root_key)?;
    let root_issuer = Issuer::from_params(&root_params, &root_key);
    let (um, hub, issuing) = if shape == Shape::TwoTier {
        let key = draw.key(b"umlab-pki-issuing")?;
        let mut params = ca_params(ISSUING_CN, 0, draw.serial(SERIAL_ISSUING))?;
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &root_issuer)?;
        let issuer = Issuer::from_params(&params, &key);
        let um = Leaf::Um.issue(&draw, &issuer)?;
        let hub = Leaf::Hub.issue(&draw, &issuer)?;
        let issuing = Issued {
            cert_der: cert.der().to_vec(),
            key,
        };
        (um, hub, Some(issuing))
    } else {
        let um = Leaf::Um.issue(&draw, &root_issuer)?;
        let hub = Leaf::Hub.issue(&draw, &root_issuer)?;
        (um, hub, None)
    };
    Ok(LabPki {
        shape,
        ca: Issued {
            cert_der: root_cert.der().to_vec(),
            key: root_key,
        },
        issuing,
        um,
        hub,
    })
}

impl LabPki {
    /// The UM's chain as it sends it in its Certificate message: the leaf,
    /// then the issuing CA (two-tier). DER, leaf first.
    pub fn um_chain(&self) -> Vec<&[u8]> {
        self.chain(&self.um)
    }

    /// The Hub's chain as it sends it: the leaf, then the issuing CA
    /// (two-tier). DER, leaf first.
    pub fn hub_chain(&self) -> Vec<&[u8]> {
        self.chain(&self.hub)
    }

    fn chain<'a>(&'a self, leaf: &'a Issued) -> Vec<&'a [u8]> {
        let mut chain = vec![leaf.cert_der.as_slice()];
        chain.extend(self.issuing.iter().map(|i| i.cert_der.as_slice()));
        chain
    }

    /// What the UM must trust to verify the Hub (DER): the enterprise root,
    /// or in the self-signed shape the Hub's own certificate.
    pub fn hub_anchor(&self) -> &[u8] {
        match self.shape {
            Shape::SelfSigned => &self.hub.cert_der,
            Shape::OneTier | Shape::TwoTier => &self.ca.cert_der,
        }
    }

    /// The file holding [`LabPki::hub_anchor`] once saved: what to give
    /// `um-sim --server-ca` and `openssl s_client -CAfile`.
    pub fn hub_anchor_file(&self) -> &'static str {
        match self.shape {
            Shape::SelfSigned => "hub.pem",
            Shape::OneTier | Shape::TwoTier => "ca.pem",
        }
    }

    /// The files [`LabPki::save`] writes, in order, with their contents.
    fn files(&self) -> Result<Vec<(&'static str, String, Access)>, Error> {
        let chain_pem = |chain: Vec<&[u8]>| chain.into_iter().map(pem_cert).collect::<String>();
        let key = |issued: &Issued| issued.key.pkcs8_pem();
        let mut files = Vec::new();
        if self.shape != Shape::SelfSigned {
            files.push(("ca.key", key(&self.ca)?, Access::Private));
        }
        files.push(("ca.pem", pem_cert(&self.ca.cert_der), Access::Public));
        if let Some(issuing) = &self.issuing {
            files.push(("issuing-ca.key", key(issuing)?, Access::Private));
            files.push((
                "issuing-ca.pem",
                pem_cert(&issuing.cert_der),
                Access::Public,
            ));
        }
        files.push(("um.key", key(&self.um)?, Access::Private));
        files.push(("um.pem", chain_pem(self.um_chain()), Access::Public));
        files.push(("hub.key", key(&self.hub)?, Access::Private));
        files.push(("hub.pem", chain_pem(self.hub_chain()), Access::Public));
        Ok(files)
    }

    /// The names of the files [`LabPki::save`] writes for this shape.
    pub fn file_names(&self) -> Vec<&'static str> {
        let mut names = vec!["ca.pem"];
        if self.shape != Shape::SelfSigned {
            names.insert(0, "ca.key");
        }
        if self.issuing.is_some() {
            names.extend(["issuing-ca.key", "issuing-ca.pem"]);
        }
        names.extend(["um.key", "um.pem", "hub.key", "hub.pem"]);
        names
    }

    /// Writes the shape's files into `dir` (keys 0600, each file atomically)
    /// and removes the lab files of other shapes left there (see
    /// [`LabPki::save_report`]).
    pub fn save(&self, dir: &Path) -> Result<(), Error> {
        self.save_report(dir).map(drop)
    }

    /// [`LabPki::save`], returning the names of the stale files it removed.
    ///
    /// | file | one-tier | two-tier | self-signed |
    /// | --- | --- | --- | --- |
    /// | `ca.pem` | root CA | root CA | the UM certificate |
    /// | `ca.key` | root key | root key | - |
    /// | `issuing-ca.pem`, `.key` | - | issuing CA | - |
    /// | `um.pem` | UM leaf | UM leaf + issuing CA | UM certificate |
    /// | `hub.pem` | Hub leaf | Hub leaf + issuing CA | Hub certificate |
    pub fn save_report(&self, dir: &Path) -> Result<Vec<&'static str>, Error> {
        create_dir(dir)?;
        let files = self.files()?;
        for (name, text, access) in &files {
            write_atomic(&dir.join(name), text.as_bytes(), *access)?;
        }
        let mut removed = Vec::new();
        for stale in FILE_NAMES {
            if files.iter().any(|(name, ..)| *name == stale) {
                continue;
            }
            let path = dir.join(stale);
            match std::fs::remove_file(&path) {
                Ok(()) => removed.push(stale),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        Ok(removed)
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    // On failure the serial is still unique per certificate within the PKI.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer, X509Certificate};

    fn names(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let (_, cert) = X509Certificate::from_der(der).unwrap();
        (
            cert.subject().as_raw().to_vec(),
            cert.issuer().as_raw().to_vec(),
        )
    }

    #[test]
    fn shapes_parse_and_print() {
        for shape in Shape::ALL {
            assert_eq!(shape.to_string().parse::<Shape>().unwrap(), shape);
        }
        assert!("two_tier".parse::<Shape>().is_err());
        assert_eq!(Shape::default(), Shape::OneTier);
    }

    #[test]
    fn chains_link_subject_to_issuer() {
        let two = generate_shape(Some(1), KeyAlg::Ed25519, Shape::TwoTier).unwrap();
        let chain = two.um_chain();
        assert_eq!(chain.len(), 2);
        let (root_subject, root_issuer) = names(&two.ca.cert_der);
        let (issuing_subject, issuing_issuer) = names(chain[1]);
        let (_, leaf_issuer) = names(chain[0]);
        assert_eq!(root_subject, root_issuer, "the root is self-issued");
        assert_eq!(issuing_issuer, root_subject);
        assert_eq!(leaf_issuer, issuing_subject);
        assert_ne!(
            leaf_issuer, root_subject,
            "the leaf is not issued by the root"
        );
        assert_eq!(two.hub_anchor(), two.ca.cert_der.as_slice());

        let one = generate_shape(Some(1), KeyAlg::Ed25519, Shape::OneTier).unwrap();
        assert_eq!(one.um_chain().len(), 1);
        assert_eq!(names(one.um_chain()[0]).1, names(&one.ca.cert_der).0);

        let ss = generate_shape(Some(1), KeyAlg::Ed25519, Shape::SelfSigned).unwrap();
        let (s, i) = names(&ss.um.cert_der);
        assert_eq!(s, i, "self-signed");
        assert_eq!(
            ss.ca.cert_der, ss.um.cert_der,
            "the store holds the UM certificate"
        );
        assert_eq!(ss.hub_anchor(), ss.hub.cert_der.as_slice());
        assert_eq!(
            ss.ca.key.pkcs8_der().unwrap(),
            ss.um.key.pkcs8_der().unwrap()
        );
    }

    #[test]
    fn one_tier_is_the_default_and_unchanged_by_the_shapes() {
        let a = generate(Some(4), KeyAlg::EcdsaP256).unwrap();
        let b = generate_shape(Some(4), KeyAlg::EcdsaP256, Shape::OneTier).unwrap();
        assert_eq!(a.ca.cert_der, b.ca.cert_der);
        assert_eq!(a.um.cert_der, b.um.cert_der);
        assert_eq!(a.shape, Shape::OneTier);
        assert!(a.issuing.is_none());
        // The two-tier leaves use the same keys but another issuer.
        let t = generate_shape(Some(4), KeyAlg::EcdsaP256, Shape::TwoTier).unwrap();
        assert_eq!(t.um.key.pkcs8_der().unwrap(), a.um.key.pkcs8_der().unwrap());
        assert_ne!(t.um.cert_der, a.um.cert_der);
    }
}
