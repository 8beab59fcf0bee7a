//! Signing keys for the certificates certgen issues.
//!
//! ring (the lab's crypto provider, shared with rustls and rcgen) draws P-256
//! keys and ECDSA nonces only from the operating system's RNG and offers no
//! seeded API, so it cannot give "same seed, same bytes". Seeded P-256 keys
//! therefore come from RustCrypto's `p256` with RFC 6979 deterministic
//! signatures (about 3.5x slower than ring, measured); unseeded P-256 keys come
//! from ring. Ed25519 is deterministic by definition and always uses ring.

use std::fmt;
use std::str::FromStr;

use p256::ecdsa::signature::Signer;
use pkcs8::der::Encode;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};

use crate::error::Error;

/// Key algorithm of issued certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum KeyAlg {
    /// ECDSA over P-256 with SHA-256: what Windows PKIs commonly issue today.
    #[default]
    EcdsaP256,
    /// Ed25519: fastest to generate, deterministic by construction.
    Ed25519,
}

impl fmt::Display for KeyAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlg::EcdsaP256 => "ecdsa-p256",
            KeyAlg::Ed25519 => "ed25519",
        })
    }
}

impl FromStr for KeyAlg {
    type Err = Error;

    fn from_str(s: &str) -> Result<KeyAlg, Error> {
        match s {
            "ecdsa-p256" | "p256" => Ok(KeyAlg::EcdsaP256),
            "ed25519" => Ok(KeyAlg::Ed25519),
            other => Err(Error::Usage(format!(
                "unknown key algorithm {other:?}: expected ecdsa-p256 or ed25519"
            ))),
        }
    }
}

enum Inner {
    SeededP256(Box<p256::ecdsa::SigningKey>),
    RingP256(EcdsaKeyPair, SystemRandom),
    Ed25519(Ed25519KeyPair),
}

/// A private key that rcgen can sign with and that can be written as PKCS #8.
pub struct LabKey {
    inner: Inner,
    public_raw: Vec<u8>,
    /// Encoded on first use: root keys are discarded unsaved, and p256's
    /// PKCS #8 encoder recomputes the public key (a scalar multiplication).
    pkcs8: std::sync::OnceLock<Vec<u8>>,
}

impl fmt::Debug for LabKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LabKey")
            .field("alg", &self.alg())
            .finish_non_exhaustive()
    }
}

impl LabKey {
    /// A key derived from 32 seed bytes: the same seed gives the same key.
    pub fn from_seed(alg: KeyAlg, seed: [u8; 32]) -> Result<LabKey, Error> {
        match alg {
            KeyAlg::EcdsaP256 => {
                let key = p256::ecdsa::SigningKey::from(LabKey::p256_scalar(seed));
                let public_raw = key.verifying_key().to_sec1_point(false).as_bytes().to_vec();
                Ok(LabKey {
                    inner: Inner::SeededP256(Box::new(key)),
                    public_raw,
                    pkcs8: std::sync::OnceLock::new(),
                })
            }
            KeyAlg::Ed25519 => {
                let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
                    .map_err(|e| Error::Crypto(format!("Ed25519 seed rejected: {e}")))?;
                Ok(LabKey {
                    public_raw: pair.public_key().as_ref().to_vec(),
                    inner: Inner::Ed25519(pair),
                    pkcs8: std::sync::OnceLock::from(ed25519_pkcs8_v1(&seed)?),
                })
            }
        }
    }

    /// The P-256 scalar of a seed. A 256-bit string is a valid scalar unless
    /// zero or >= n (probability about 2^-32); rehash until it is one.
    fn p256_scalar(seed: [u8; 32]) -> p256::NonZeroScalar {
        let mut bytes = seed;
        loop {
            let scalar = p256::NonZeroScalar::from_repr(bytes.into());
            if let Some(k) = Option::<p256::NonZeroScalar>::from(scalar) {
                return k;
            }
            bytes = digest32(b"umlab-p256-retry", &bytes);
        }
    }

    /// A fresh key from the operating system's RNG (ring).
    pub fn random(alg: KeyAlg) -> Result<LabKey, Error> {
        let rng = SystemRandom::new();
        let crypto = |e: ring::error::Unspecified| Error::Crypto(format!("key generation: {e}"));
        match alg {
            KeyAlg::EcdsaP256 => {
                let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
                    .map_err(crypto)?;
                let pair =
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, doc.as_ref(), &rng)
                        .map_err(|e| Error::Crypto(format!("P-256 key rejected: {e}")))?;
                Ok(LabKey {
                    public_raw: pair.public_key().as_ref().to_vec(),
                    inner: Inner::RingP256(pair, rng),
                    pkcs8: std::sync::OnceLock::from(doc.as_ref().to_vec()),
                })
            }
            KeyAlg::Ed25519 => {
                let mut seed = [0u8; 32];
                ring::rand::SecureRandom::fill(&rng, &mut seed).map_err(crypto)?;
                LabKey::from_seed(KeyAlg::Ed25519, seed)
            }
        }
    }

    /// The algorithm of this key.
    pub fn alg(&self) -> KeyAlg {
        match self.inner {
            Inner::SeededP256(_) | Inner::RingP256(..) => KeyAlg::EcdsaP256,
            Inner::Ed25519(_) => KeyAlg::Ed25519,
        }
    }

    /// The private key as PKCS #8 DER (what rustls and openssl load).
    pub fn pkcs8_der(&self) -> Result<&[u8], Error> {
        if let Some(der) = self.pkcs8.get() {
            return Ok(der);
        }
        let der = match &self.inner {
            Inner::SeededP256(key) => pkcs8::EncodePrivateKey::to_pkcs8_der(key.as_ref())
                .map_err(|e| Error::Crypto(format!("P-256 PKCS#8 encoding: {e}")))?
                .as_bytes()
                .to_vec(),
            // The other variants are filled at construction.
            _ => {
                return Err(Error::Crypto(
                    "PKCS#8 of this key is unavailable".to_owned(),
                ));
            }
        };
        Ok(self.pkcs8.get_or_init(|| der))
    }

    /// A second handle on the same key: in the self-signed PKI the UM's
    /// certificate is also the Hub store's anchor, and both hold its key.
    /// ring's key pairs cannot be cloned, so they are rebuilt from PKCS #8.
    pub fn try_clone(&self) -> Result<LabKey, Error> {
        let rejected = |e: ring::error::KeyRejected| Error::Crypto(format!("key copy: {e}"));
        let inner = match &self.inner {
            Inner::SeededP256(key) => Inner::SeededP256(key.clone()),
            Inner::RingP256(..) => {
                let rng = SystemRandom::new();
                let pair = EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_ASN1_SIGNING,
                    self.pkcs8_der()?,
                    &rng,
                )
                .map_err(rejected)?;
                Inner::RingP256(pair, rng)
            }
            Inner::Ed25519(_) => Inner::Ed25519(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(self.pkcs8_der()?).map_err(rejected)?,
            ),
        };
        Ok(LabKey {
            inner,
            public_raw: self.public_raw.clone(),
            pkcs8: self.pkcs8.clone(),
        })
    }

    /// The private key as a PKCS #8 PEM ("PRIVATE KEY").
    pub fn pkcs8_pem(&self) -> Result<String, Error> {
        Ok(pem::encode_config(
            &pem::Pem::new("PRIVATE KEY", self.pkcs8_der()?.to_vec()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        ))
    }
}

impl rcgen::PublicKeyData for LabKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public_raw
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        match self.alg() {
            KeyAlg::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlg::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }
}

impl rcgen::SigningKey for LabKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        match &self.inner {
            Inner::SeededP256(key) => {
                let sig: p256::ecdsa::Signature = key.sign(msg);
                Ok(sig.to_der().as_bytes().to_vec())
            }
            Inner::RingP256(pair, rng) => pair
                .sign(rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| rcgen::Error::RingUnspecified),
            Inner::Ed25519(pair) => Ok(pair.sign(msg).as_ref().to_vec()),
        }
    }
}

/// Seeded P-256 keys for mass-produced roots: `d_i = d_0 + i`, so public keys
/// follow by point addition (`Q_i = Q_{i-1} + G`) and one batched inversion
/// instead of a scalar multiplication each, and signing goes straight to
/// RFC 6979 without re-deriving the public key. About twice as fast as
/// [`LabKey::from_seed`] (measured), still deterministic per `(seed, i)`.
///
/// The keys are related by known offsets, so one leaked key gives away all:
/// that is fine for synthetic roots, whose private keys sign only their own
/// certificate and are never written anywhere, and it is the only use.
pub struct RelatedP256 {
    d: p256::NonZeroScalar,
    public_raw: Vec<u8>,
}

impl RelatedP256 {
    /// Keys `start..start + count` of the family of `seed`.
    pub fn batch(seed: [u8; 32], start: u64, count: usize) -> Result<Vec<RelatedP256>, Error> {
        use p256::elliptic_curve::BatchNormalize as _;
        use p256::elliptic_curve::group::Group as _;
        use p256::elliptic_curve::sec1::ToSec1Point as _;
        use p256::{ProjectivePoint, Scalar};
        let d0 = *LabKey::p256_scalar(seed).as_ref();
        let d_start = d0 + Scalar::from(start);
        let mut points = Vec::with_capacity(count);
        let mut q = ProjectivePoint::mul_by_generator(&d_start);
        for _ in 0..count {
            points.push(q);
            q += ProjectivePoint::GENERATOR;
        }
        let affine = ProjectivePoint::batch_normalize(points.as_slice());
        affine
            .iter()
            .enumerate()
            .map(|(k, a)| {
                let d = Option::from(p256::NonZeroScalar::new(d_start + Scalar::from(k as u64)))
                    .ok_or_else(|| Error::Crypto("a related P-256 key is zero".to_owned()))?;
                Ok(RelatedP256 {
                    d,
                    public_raw: a.to_sec1_point(false).as_bytes().to_vec(),
                })
            })
            .collect()
    }
}

impl rcgen::PublicKeyData for RelatedP256 {
    fn der_bytes(&self) -> &[u8] {
        &self.public_raw
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for RelatedP256 {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let z = ring::digest::digest(&ring::digest::SHA256, msg);
        let (sig, _) = ecdsa::hazmat::sign_prehashed_rfc6979::<p256::NistP256, sha2::Sha256>(
            &self.d,
            z.as_ref(),
            &[],
        );
        Ok(sig.to_der().as_bytes().to_vec())
    }
}

/// A public key whose "signatures" are a fixed, well-formed placeholder.
///
/// For `--dn-only` stores: filler roots whose keys never sign anything. TLS
/// stacks never check a trust anchor's self-signature (rustls/webpki, OpenSSL,
/// Schannel all take the anchor as given), so such a root behaves exactly like a
/// real one in the CA list and in chain building, at a fraction of the cost.
/// The signature does not verify; do not import these roots where a tool checks
/// self-signatures.
pub struct PlaceholderKey {
    alg: KeyAlg,
    public_raw: Vec<u8>,
}

impl PlaceholderKey {
    /// Borrows the public half of `key`; signing never touches the private half.
    pub fn new(key: &LabKey) -> PlaceholderKey {
        PlaceholderKey {
            alg: key.alg(),
            public_raw: key.public_raw.clone(),
        }
    }
}

impl rcgen::PublicKeyData for PlaceholderKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public_raw
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        match self.alg {
            KeyAlg::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlg::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }
}

impl rcgen::SigningKey for PlaceholderKey {
    fn sign(&self, _msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        Ok(match self.alg {
            // ECDSA-Sig-Value ::= SEQUENCE { r INTEGER 1, s INTEGER 1 }
            KeyAlg::EcdsaP256 => vec![0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01],
            KeyAlg::Ed25519 => vec![0; 64],
        })
    }
}

/// SHA-256 over a domain label and data: the lab's one way to derive seeds.
pub fn digest32(label: &[u8], data: &[u8]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&(label.len() as u64).to_be_bytes());
    ctx.update(label);
    ctx.update(data);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// RFC 8410 PKCS #8 v1 for an Ed25519 seed, encoded by the pkcs8 crate.
fn ed25519_pkcs8_v1(seed: &[u8; 32]) -> Result<Vec<u8>, Error> {
    let enc = |e: pkcs8::der::Error| Error::Crypto(format!("Ed25519 PKCS#8 encoding: {e}"));
    // CurvePrivateKey ::= OCTET STRING, itself wrapped in privateKey OCTET STRING.
    let curve_key = pkcs8::der::asn1::OctetStringRef::new(seed)
        .map_err(enc)?
        .to_der()
        .map_err(enc)?;
    let info = pkcs8::PrivateKeyInfoRef::new(
        pkcs8::AlgorithmIdentifierRef {
            oid: pkcs8::ObjectIdentifier::new_unwrap("1.3.101.112"),
            parameters: None,
        },
        pkcs8::der::asn1::OctetStringRef::new(&curve_key).map_err(enc)?,
    );
    info.to_der().map_err(enc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::SigningKey as _;

    #[test]
    fn seeded_keys_are_deterministic_and_loadable_by_ring() {
        for alg in [KeyAlg::EcdsaP256, KeyAlg::Ed25519] {
            let a = LabKey::from_seed(alg, [9; 32]).unwrap();
            let b = LabKey::from_seed(alg, [9; 32]).unwrap();
            assert_eq!(a.pkcs8_der().unwrap(), b.pkcs8_der().unwrap());
            assert_eq!(a.sign(b"msg").unwrap(), b.sign(b"msg").unwrap());
            assert_ne!(
                a.pkcs8_der().unwrap(),
                LabKey::from_seed(alg, [8; 32])
                    .unwrap()
                    .pkcs8_der()
                    .unwrap()
            );
            // ring (the provider rustls uses) must accept what we write.
            let ok = match alg {
                KeyAlg::EcdsaP256 => EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_ASN1_SIGNING,
                    a.pkcs8_der().unwrap(),
                    &SystemRandom::new(),
                )
                .is_ok(),
                KeyAlg::Ed25519 => {
                    Ed25519KeyPair::from_pkcs8_maybe_unchecked(a.pkcs8_der().unwrap()).is_ok()
                }
            };
            assert!(ok, "{alg} PKCS#8 rejected by ring");
        }
    }

    #[test]
    fn related_p256_keys_are_consistent_and_verify() {
        let family = [5u8; 32];
        let all = RelatedP256::batch(family, 0, 8).unwrap();
        let tail = RelatedP256::batch(family, 5, 3).unwrap();
        // Key i depends on the family and i only, not on how batches are cut.
        for (a, b) in all[5..].iter().zip(&tail) {
            assert_eq!(a.public_raw, b.public_raw);
            assert_eq!(a.sign(b"m").unwrap(), b.sign(b"m").unwrap());
        }
        // Distinct keys, and each public key matches its scalar.
        let mut publics: Vec<&Vec<u8>> = all.iter().map(|k| &k.public_raw).collect();
        publics.dedup();
        assert_eq!(publics.len(), 8);
        for k in &all {
            let sig = k.sign(b"to be signed").unwrap();
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_ASN1,
                &k.public_raw,
            )
            .verify(b"to be signed", &sig)
            .unwrap();
            let expected = p256::ecdsa::SigningKey::from(k.d);
            let point = expected.verifying_key().to_sec1_point(false);
            assert_eq!(point.as_bytes(), k.public_raw.as_slice());
            // The same RFC 6979 signature p256's own signer makes.
            let theirs: p256::ecdsa::Signature = expected.sign(b"to be signed");
            assert_eq!(theirs.to_der().as_bytes(), sig.as_slice());
        }
    }

    #[test]
    fn signatures_verify_with_ring() {
        for alg in [KeyAlg::EcdsaP256, KeyAlg::Ed25519] {
            for key in [
                LabKey::from_seed(alg, [1; 32]).unwrap(),
                LabKey::random(alg).unwrap(),
            ] {
                let sig = key.sign(b"to be signed").unwrap();
                let verify_alg: &dyn ring::signature::VerificationAlgorithm = match alg {
                    KeyAlg::EcdsaP256 => &ring::signature::ECDSA_P256_SHA256_ASN1,
                    KeyAlg::Ed25519 => &ring::signature::ED25519,
                };
                ring::signature::UnparsedPublicKey::new(verify_alg, &key.public_raw)
                    .verify(b"to be signed", &sig)
                    .unwrap();
            }
        }
    }

    #[test]
    fn a_copy_is_the_same_key() {
        for alg in [KeyAlg::EcdsaP256, KeyAlg::Ed25519] {
            for key in [
                LabKey::from_seed(alg, [3; 32]).unwrap(),
                LabKey::random(alg).unwrap(),
            ] {
                let copy = key.try_clone().unwrap();
                assert_eq!(copy.pkcs8_der().unwrap(), key.pkcs8_der().unwrap());
                assert_eq!(copy.public_raw, key.public_raw);
                let verify_alg: &dyn ring::signature::VerificationAlgorithm = match alg {
                    KeyAlg::EcdsaP256 => &ring::signature::ECDSA_P256_SHA256_ASN1,
                    KeyAlg::Ed25519 => &ring::signature::ED25519,
                };
                // The copy signs for the original's public key.
                let sig = copy.sign(b"copy").unwrap();
                ring::signature::UnparsedPublicKey::new(verify_alg, &key.public_raw)
                    .verify(b"copy", &sig)
                    .unwrap();
            }
        }
    }
}
