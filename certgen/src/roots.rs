//! Mass production of self-signed root CAs.

use rayon::prelude::*;
use rcgen::{
    BasicConstraints, CertificateParams, IsCa, KeyIdMethod, KeyUsagePurpose, SerialNumber,
};

use crate::error::Error;
use crate::keys::{KeyAlg, LabKey, PlaceholderKey, RelatedP256, digest32};

/// Any key rcgen can sign a root with, shareable across threads.
trait Signer: rcgen::SigningKey + Sync {}
impl<T: rcgen::SigningKey + Sync> Signer for T {}
use crate::name::Name;
use crate::store::{Generator, Root, Store};
use crate::synth::{self, Profile};

/// Upper bound on one run, to keep memory and time predictable.
pub const MAX_ROOTS: u64 = 100_000;

/// notBefore of generated roots (fixed, so seeded output never depends on the clock).
const NOT_BEFORE: (i32, u8, u8) = (2015, 1, 1);
/// notAfter of generated roots.
const NOT_AFTER: (i32, u8, u8) = (2045, 1, 1);

/// What to generate.
#[derive(Clone, Debug)]
pub struct RootsSpec {
    /// Number of roots.
    pub count: u64,
    /// Seed: the same seed gives byte-identical roots. `None` draws a DN seed at
    /// random and takes keys from the OS RNG (faster, not reproducible).
    pub seed: Option<u64>,
    /// Subject profile.
    pub profile: Profile,
    /// Key algorithm.
    pub key: KeyAlg,
    /// Share one key and use placeholder self-signatures (see [`PlaceholderKey`]).
    pub dn_only: bool,
}

/// Generates the roots in parallel on all cores; `progress(n)` is called as
/// roots are finished.
pub fn generate(
    spec: &RootsSpec,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(Store, Generator), Error> {
    if spec.count > MAX_ROOTS {
        return Err(Error::Usage(format!(
            "--count {} is over the limit of {MAX_ROOTS}",
            spec.count
        )));
    }
    let seed = match spec.seed {
        Some(s) => s,
        None => random_u64()?,
    };
    let shared = if spec.dn_only {
        let key = LabKey::from_seed(
            spec.key,
            digest32(b"umlab-dn-only-key", &seed.to_be_bytes()),
        )?;
        Some(PlaceholderKey::new(&key))
    } else {
        None
    };
    let issue = |i: u64, key: &dyn Signer| -> Result<Root, Error> {
        let name = synth::subject(seed, spec.profile, i);
        let root = issue_root(&name, seed, i, &key, spec.dn_only);
        progress(1);
        root
    };
    let roots: Vec<Root> = match (&shared, spec.seed, spec.key) {
        (Some(key), _, _) => (0..spec.count)
            .into_par_iter()
            .map(|i| issue(i, key))
            .collect::<Result<_, Error>>()?,
        // Seeded P-256: related keys in chunks, one scalar multiplication and
        // one inversion per chunk (see RelatedP256).
        (None, Some(_), KeyAlg::EcdsaP256) => {
            const CHUNK: u64 = 256;
            let family = digest32(b"umlab-root-key-family", &seed.to_be_bytes());
            let starts: Vec<u64> = (0..spec.count).step_by(CHUNK as usize).collect();
            let chunks = starts
                .into_par_iter()
                .map(|start| {
                    let n = CHUNK.min(spec.count - start) as usize;
                    RelatedP256::batch(family, start, n)?
                        .iter()
                        .enumerate()
                        .map(|(k, key)| issue(start + k as u64, key))
                        .collect::<Result<Vec<_>, Error>>()
                })
                .collect::<Result<Vec<_>, Error>>()?;
            chunks.into_iter().flatten().collect()
        }
        (None, seeded, alg) => (0..spec.count)
            .into_par_iter()
            .map(|i| {
                let key = match seeded {
                    Some(_) => LabKey::from_seed(alg, root_key_seed(seed, i))?,
                    None => LabKey::random(alg)?,
                };
                issue(i, &key)
            })
            .collect::<Result<_, Error>>()?,
    };
    let generator = Generator {
        seed,
        seeded_keys: spec.seed.is_some(),
        profile: spec.profile.to_string(),
        key: spec.key.to_string(),
        dn_only: spec.dn_only,
    };
    Ok((Store::from_roots(roots), generator))
}

fn root_key_seed(seed: u64, index: u64) -> [u8; 32] {
    let mut data = [0u8; 16];
    data[..8].copy_from_slice(&seed.to_be_bytes());
    data[8..].copy_from_slice(&index.to_be_bytes());
    digest32(b"umlab-root-key", &data)
}

/// A positive 16-byte serial derived from a label, seed and index.
pub(crate) fn serial(label: &[u8], seed: u64, index: u64) -> SerialNumber {
    let mut data = [0u8; 16];
    data[..8].copy_from_slice(&seed.to_be_bytes());
    data[8..].copy_from_slice(&index.to_be_bytes());
    let mut s = digest32(label, &data);
    s[0] = (s[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&s[..16])
}

pub(crate) fn date((y, m, d): (i32, u8, u8)) -> time::OffsetDateTime {
    rcgen::date_time_ymd(y, m, d)
}

fn issue_root(
    name: &Name,
    seed: u64,
    index: u64,
    key: &impl rcgen::SigningKey,
    dn_only: bool,
) -> Result<Root, Error> {
    let subject = name.to_der();
    let mut params = CertificateParams::default();
    params.distinguished_name = name.to_rcgen()?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(serial(b"umlab-root-serial", seed, index));
    params.not_before = date(NOT_BEFORE);
    params.not_after = date(NOT_AFTER);
    if dn_only {
        // The key is shared, so derive the key identifier from the subject to
        // keep it unique per root.
        let id = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &subject);
        params.key_identifier_method = KeyIdMethod::PreSpecified(id.as_ref().to_vec());
    }
    let cert = params.self_signed(key)?;
    Ok(Root::with_parts(
        cert.der().to_vec(),
        subject,
        params.not_before.unix_timestamp(),
        params.not_after.unix_timestamp(),
    ))
}

fn random_u64() -> Result<u64, Error> {
    let mut b = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| Error::Crypto("the OS RNG failed".to_owned()))?;
    Ok(u64::from_be_bytes(b))
}

/// Placeholder-signed roots whose subjects are exactly the given DER Names
/// (for example the Mozilla root subjects of webpki-roots), in order.
///
/// rcgen cannot write every real Name (multi-valued RDNs, BMPString, repeated
/// attributes), so each root is issued `--dn-only` style with a stand-in name
/// and the exact Name is spliced into its issuer and subject fields. The
/// placeholder signature was never valid, so nothing is lost by the splice.
pub fn with_subjects(subjects: &[Vec<u8>], seed: u64, key: KeyAlg) -> Result<Store, Error> {
    let shared = LabKey::from_seed(
        key,
        digest32(b"umlab-exact-subject-key", &seed.to_be_bytes()),
    )?;
    let placeholder = PlaceholderKey::new(&shared);
    let stand_in = synth::subject(seed, Profile::Fixed(40), 0);
    let roots = subjects
        .iter()
        .enumerate()
        .map(|(i, subject)| {
            let root = issue_root(&stand_in, seed, i as u64, &placeholder, true)?;
            let der = splice_name(root.der(), subject)
                .map_err(|e| Error::Crypto(format!("subject {i}: {e}")))?;
            Root::from_der(der).map_err(Error::Crypto)
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(Store::from_roots(roots))
}

/// Replaces the issuer and subject of a DER certificate with `name`.
fn splice_name(cert: &[u8], name: &[u8]) -> Result<Vec<u8>, der::Error> {
    use der::{Reader, SliceReader};
    let mut outer = SliceReader::new(cert)?;
    let (tbs, rest) = outer.sequence(|c| {
        let tbs = c.tlv_bytes()?;
        let sig_alg = c.tlv_bytes()?;
        let sig = c.tlv_bytes()?;
        Ok::<_, der::Error>((tbs, [sig_alg, sig].concat()))
    })?;
    let mut reader = SliceReader::new(tbs)?;
    let fields = reader.sequence(|t| {
        let mut fields = Vec::new();
        while !t.is_finished() {
            fields.push(t.tlv_bytes()?);
        }
        Ok::<_, der::Error>(fields)
    })?;
    // [0] version, serial, signature, issuer, validity, subject, spki, [3] extensions
    if fields.len() < 7 || fields.first().and_then(|f| f.first()) != Some(&0xa0) {
        return Err(der::ErrorKind::Failed.into());
    }
    let mut body = Vec::with_capacity(tbs.len() + 2 * name.len());
    for (i, f) in fields.iter().enumerate() {
        body.extend_from_slice(if i == 3 || i == 5 { name } else { f });
    }
    let mut new_tbs = Vec::with_capacity(body.len() + 4);
    crate::name::write_header(&mut new_tbs, 0x30, body.len());
    new_tbs.extend_from_slice(&body);
    let mut out = Vec::with_capacity(new_tbs.len() + rest.len() + 4);
    crate::name::write_header(&mut out, 0x30, new_tbs.len() + rest.len());
    out.extend_from_slice(&new_tbs);
    out.extend_from_slice(&rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_subjects_are_spliced_in() {
        let subjects = synth::mozilla_subjects();
        let store = with_subjects(&subjects, 1, KeyAlg::Ed25519).unwrap();
        assert_eq!(store.len(), subjects.len());
        for (root, want) in store.roots().iter().zip(&subjects) {
            assert_eq!(root.subject_der(), want.as_slice());
            // Issuer = subject: still a self-issued root for chain builders.
            let (_, cert) = x509_parser::parse_x509_certificate(root.der()).unwrap();
            assert_eq!(cert.issuer().as_raw(), want.as_slice());
        }
        assert_eq!(
            store.ca_list_bytes(),
            subjects.iter().map(|s| s.len() + 2).sum::<usize>()
        );
    }
}
