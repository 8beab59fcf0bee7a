//! The lab PKI: an enterprise CA, the UM server's client certificate and the
//! Hub's server certificate, as the incident's Exchange organisation had them.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyUsagePurpose,
    SanType,
};

use crate::error::Error;
use crate::fsutil::{Access, create_dir, write_atomic};
use crate::keys::{KeyAlg, LabKey, digest32};
use crate::name::{AttrType, Attribute, Name};
use crate::roots::{date, serial};
use crate::store::{Root, pem_cert};

/// Subject CN of the enterprise CA.
pub const CA_CN: &str = "umlab Enterprise Root CA";
/// DNS name of the UM server (client certificate).
pub const UM_DNS: &str = "um.lab.test";
/// DNS name of the Hub Transport server (server certificate).
pub const HUB_DNS: &str = "hub.lab.test";

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

/// The three certificates of the lab.
#[derive(Debug)]
pub struct LabPki {
    /// Enterprise root CA (issues the other two).
    pub ca: Issued,
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

/// Issues the lab PKI. With a seed the output is byte-identical on every run.
pub fn generate(seed: Option<u64>, alg: KeyAlg) -> Result<LabPki, Error> {
    let key = |label: &[u8]| match seed {
        Some(s) => LabKey::from_seed(alg, digest32(label, &s.to_be_bytes())),
        None => LabKey::random(alg),
    };
    let s = seed.unwrap_or(0);
    let serial_of = |i| match seed {
        Some(_) => serial(b"umlab-pki-serial", s, i),
        None => serial(b"umlab-pki-serial", s ^ rand_u64(), i),
    };

    let ca_key = key(b"umlab-pki-ca")?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = subject("Lab PKI", CA_CN)?.to_rcgen()?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.serial_number = Some(serial_of(0));
    ca.not_before = date((2025, 1, 1));
    ca.not_after = date((2049, 12, 31));
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::from_params(&ca, &ca_key);

    let leaf = |ou: &str, cn: &str, sans: Vec<SanType>, eku, n| -> Result<Issued, Error> {
        let key = key(if n == 1 {
            b"umlab-pki-um"
        } else {
            b"umlab-pki-hub"
        })?;
        let mut p = CertificateParams::default();
        p.distinguished_name = subject(ou, cn)?.to_rcgen()?;
        p.subject_alt_names = sans;
        p.extended_key_usages = vec![eku];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.use_authority_key_identifier_extension = true;
        p.serial_number = Some(serial_of(n));
        p.not_before = date((2025, 1, 1));
        p.not_after = date((2049, 12, 31));
        let cert = p.signed_by(&key, &issuer)?;
        Ok(Issued {
            cert_der: cert.der().to_vec(),
            key,
        })
    };
    let dns = |s: &str| -> Result<SanType, Error> { Ok(SanType::DnsName(s.try_into()?)) };
    let um = leaf(
        "Unified Messaging",
        UM_DNS,
        vec![dns(UM_DNS)?],
        ExtendedKeyUsagePurpose::ClientAuth,
        1,
    )?;
    let hub = leaf(
        "Hub Transport",
        HUB_DNS,
        vec![
            dns(HUB_DNS)?,
            dns("localhost")?,
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ],
        ExtendedKeyUsagePurpose::ServerAuth,
        2,
    )?;
    Ok(LabPki {
        ca: Issued {
            cert_der: ca_cert.der().to_vec(),
            key: ca_key,
        },
        um,
        hub,
    })
}

impl LabPki {
    /// Writes `ca.pem ca.key um.pem um.key hub.pem hub.key` into `dir`; keys 0600.
    pub fn save(&self, dir: &Path) -> Result<(), Error> {
        create_dir(dir)?;
        for (stem, issued) in [("ca", &self.ca), ("um", &self.um), ("hub", &self.hub)] {
            write_atomic(
                &dir.join(format!("{stem}.key")),
                issued.key.pkcs8_pem()?.as_bytes(),
                Access::Private,
            )?;
            write_atomic(
                &dir.join(format!("{stem}.pem")),
                pem_cert(&issued.cert_der).as_bytes(),
                Access::Public,
            )?;
        }
        Ok(())
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    // On failure the serial is still unique per certificate within the PKI.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u64::from_be_bytes(b)
}
