//! Seeded synthetic subject DNs.
//!
//! Name `i` of a seed depends only on `(seed, profile, i)`: a store of N roots is
//! a prefix of the store of N + 1, which is what break-point searches rely on,
//! and generation parallelises without changing a byte. ChaCha8 is specified
//! bit for bit, and only `u32` ranges are drawn, so output is the same on every
//! platform.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

use crate::name::{AttrType, Attribute, Name, StringKind, tlv_len, write_header};

/// Smallest subject `fixed:LEN` can produce exactly.
pub const FIXED_MIN: usize = 20;
/// Largest subject `fixed:LEN` accepts.
pub const FIXED_MAX: usize = 1000;

/// How subject sizes and attribute mixes are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Shapes (attribute types, string types and exact DER sizes) of the Mozilla
    /// root subjects shipped in the webpki-roots crate, drawn uniformly.
    Realistic,
    /// Every subject exactly LEN bytes of DER, for exact arithmetic.
    Fixed(usize),
    /// Terse subjects (country and common name), 32 to 64 bytes of DER.
    Short,
    /// Verbose subjects with every attribute, 180 to 420 bytes of DER.
    Long,
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Profile::Realistic => f.write_str("realistic"),
            Profile::Fixed(n) => write!(f, "fixed:{n}"),
            Profile::Short => f.write_str("short"),
            Profile::Long => f.write_str("long"),
        }
    }
}

/// A profile string that does not name a profile.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ProfileError(pub String);

impl FromStr for Profile {
    type Err = ProfileError;

    fn from_str(s: &str) -> Result<Profile, ProfileError> {
        match s {
            "realistic" => Ok(Profile::Realistic),
            "short" => Ok(Profile::Short),
            "long" => Ok(Profile::Long),
            _ => {
                let len = s
                    .strip_prefix("fixed:")
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|n| (FIXED_MIN..=FIXED_MAX).contains(n))
                    .ok_or_else(|| {
                        ProfileError(format!(
                            "unknown profile {s:?}: expected realistic, short, long or fixed:LEN with LEN {FIXED_MIN}..={FIXED_MAX}"
                        ))
                    })?;
                if !der_len_exists(len) {
                    return Err(ProfileError(format!(
                        "fixed:{len} is impossible: no DER Name is exactly {len} bytes (its SEQUENCE length octets jump past it)"
                    )));
                }
                Ok(Profile::Fixed(len))
            }
        }
    }
}

/// Whether some DER SEQUENCE is exactly `len` bytes long. Lengths 130 and 259
/// are not: 127 content bytes make 129, 128 make 131 (255 make 258, 256 make 260).
pub fn der_len_exists(len: usize) -> bool {
    (0..=len).any(|c| tlv_len(c) == len)
}

/// Attribute layout of one subject: type, string type, value length in bytes.
type Shape = Vec<(AttrType, StringKind, usize)>;

/// Generates subject `index` of `seed` under `profile`.
///
/// Every name carries a token derived from `index` in its longest attribute, so
/// the names of one seed are pairwise distinct.
pub fn subject(seed: u64, profile: Profile, index: u64) -> Name {
    let mut rng = rng_for(seed, index);
    let draw = match draws(profile) {
        Some(n) => rng.random_range(0..n),
        None => 0,
    };
    let shape = shape_of_draw(profile, draw);
    fill(&mut rng, &shape, index)
}

/// How many equally likely shapes `subject` draws from (`None`: one shape,
/// nothing drawn).
fn draws(profile: Profile) -> Option<u32> {
    match profile {
        Profile::Realistic => Some(mozilla_shapes().len() as u32),
        Profile::Fixed(_) => None,
        Profile::Short => Some(33),
        Profile::Long => Some(241),
    }
}

/// The shape of draw `k` (see [`draws`]).
fn shape_of_draw(profile: Profile, k: u32) -> Shape {
    match profile {
        Profile::Realistic => mozilla_shapes()
            .get(k as usize)
            .cloned()
            .unwrap_or_default(),
        Profile::Fixed(len) => fixed_shape(len),
        Profile::Short => fit_shape(
            vec![
                (AttrType::Country, StringKind::Printable, 2),
                (AttrType::CommonName, StringKind::Printable, 1),
            ],
            1,
            32 + k as usize,
        ),
        Profile::Long => fit_shape(
            vec![
                (AttrType::Country, StringKind::Printable, 2),
                (AttrType::State, StringKind::Printable, 12),
                (AttrType::Locality, StringKind::Printable, 10),
                (AttrType::Organization, StringKind::Printable, 36),
                (AttrType::OrgUnit, StringKind::Printable, 40),
                (AttrType::CommonName, StringKind::Printable, 1),
                (AttrType::Email, StringKind::Ia5, 20),
            ],
            5,
            180 + k as usize,
        ),
    }
}

/// The DER lengths of the subjects `profile` draws, each with its exact
/// probability, in ascending length. Every subject of every seed and index
/// is drawn independently from this distribution (one ChaCha stream per
/// index), which is what lets the odds of a thumbprint-ordered store of this
/// profile be computed exactly rather than sampled.
pub fn length_distribution(profile: Profile) -> Vec<(usize, f64)> {
    let n = draws(profile).unwrap_or(1);
    let mut counts = std::collections::BTreeMap::<usize, u32>::new();
    for k in 0..n {
        *counts
            .entry(shape_der_len(&shape_of_draw(profile, k)))
            .or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(len, c)| (len, f64::from(c) / f64::from(n)))
        .collect()
}

/// Generates subjects `start..start + count` of `seed`, in order.
pub fn subjects(seed: u64, profile: Profile, start: u64, count: u64) -> Vec<Name> {
    (start..start + count)
        .map(|i| subject(seed, profile, i))
        .collect()
}

fn rng_for(seed: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    rng
}

/// DER length of a Name with the given shape.
fn shape_der_len(shape: &[(AttrType, StringKind, usize)]) -> usize {
    tlv_len(
        shape
            .iter()
            .map(|&(ty, _, len)| tlv_len(tlv_len(ty.oid_der().len() + tlv_len(len))))
            .sum(),
    )
}

/// Adjusts the value length of `shape[filler]` (and, where a DER length-octet
/// step skips the target, one neighbour by a few bytes) so the Name is exactly
/// `target` bytes. When no Name has that length (130, 259), returns the
/// closest one found.
fn fit_shape(mut shape: Shape, filler: usize, target: usize) -> Shape {
    let others: Vec<usize> = (0..shape.len())
        .filter(|&i| i != filler && shape[i].0 != AttrType::Country)
        .collect();
    let mut nudges = vec![(usize::MAX, 0isize)];
    for d in 1..=4isize {
        for &o in &others {
            nudges.push((o, -d));
            nudges.push((o, d));
        }
    }
    let base = shape.clone();
    let mut best: Option<(usize, Shape)> = None;
    for (other, delta) in nudges {
        shape.clone_from(&base);
        if other != usize::MAX {
            let Some(len) = shape[other].2.checked_add_signed(delta).filter(|&l| l >= 1) else {
                continue;
            };
            shape[other].2 = len;
        }
        // total(v) is non-decreasing in v: bisect for the smallest v reaching target.
        let (mut lo, mut hi) = (1usize, target);
        while lo < hi {
            let mid = (lo + hi) / 2;
            shape[filler].2 = mid;
            if shape_der_len(&shape) < target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        shape[filler].2 = lo;
        let miss = shape_der_len(&shape).abs_diff(target);
        if miss == 0 {
            return shape;
        }
        if best.as_ref().is_none_or(|(m, _)| miss < *m) {
            best = Some((miss, shape.clone()));
        }
    }
    best.map(|(_, s)| s).unwrap_or(base)
}

fn fixed_shape(len: usize) -> Shape {
    static CACHE: OnceLock<Vec<Shape>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| {
        (0..=FIXED_MAX)
            .map(|len| {
                if len < 64 {
                    fit_shape(
                        vec![(AttrType::CommonName, StringKind::Printable, 1)],
                        0,
                        len,
                    )
                } else {
                    fit_shape(
                        vec![
                            (AttrType::Country, StringKind::Printable, 2),
                            (AttrType::Organization, StringKind::Printable, 16),
                            (AttrType::CommonName, StringKind::Printable, 1),
                        ],
                        2,
                        len,
                    )
                }
            })
            .collect()
    });
    cache
        .get(len.clamp(FIXED_MIN, FIXED_MAX))
        .cloned()
        .unwrap_or_default()
}

/// Shapes of the Mozilla root subjects in webpki-roots, computed once.
///
/// Attribute types outside the model (serialNumber, DC, organizationIdentifier)
/// count as OU; repeated types are merged, and the merged shape is refitted to
/// the original DER length, so the size distribution is kept exactly.
pub(crate) fn mozilla_shapes() -> &'static [Shape] {
    static SHAPES: OnceLock<Vec<Shape>> = OnceLock::new();
    SHAPES.get_or_init(|| {
        mozilla_subjects()
            .iter()
            .filter_map(|der| shape_of(der))
            .collect()
    })
}

/// DER subjects (outer SEQUENCE included) of the Mozilla roots in webpki-roots.
pub fn mozilla_subjects() -> Vec<Vec<u8>> {
    webpki_roots::TLS_SERVER_ROOTS
        .iter()
        .map(|anchor| {
            // webpki keeps the Name's contents without its SEQUENCE header.
            let inner: &[u8] = anchor.subject.as_ref();
            let mut der = Vec::with_capacity(inner.len() + 4);
            write_header(&mut der, 0x30, inner.len());
            der.extend_from_slice(inner);
            der
        })
        .collect()
}

fn shape_of(der: &[u8]) -> Option<Shape> {
    let (_, name) = X509Name::from_der(der).ok()?;
    let mut shape: Shape = Vec::new();
    for atv in name.iter_attributes() {
        let ty = AttrType::ALL
            .into_iter()
            .find(|t| &t.oid_der()[2..] == atv.attr_type().as_bytes())
            .unwrap_or(AttrType::OrgUnit);
        let value = atv.attr_value();
        let kind = match (ty, value.header.tag()) {
            (AttrType::Country, _) => StringKind::Printable,
            (AttrType::Email, _) => StringKind::Ia5,
            (_, Tag::PrintableString) => StringKind::Printable,
            _ => StringKind::Utf8,
        };
        let len = value.data.len().max(1);
        match shape.iter_mut().find(|(t, _, _)| *t == ty) {
            Some(slot) if ty != AttrType::Country => slot.2 += len,
            Some(_) => {}
            None => shape.push((ty, kind, if ty == AttrType::Country { 2 } else { len })),
        }
    }
    let filler = shape
        .iter()
        .enumerate()
        .filter(|(_, (t, _, _))| *t != AttrType::Country)
        .max_by_key(|(i, (_, _, len))| (*len, usize::MAX - i))
        .map(|(i, _)| i)?;
    let fitted = fit_shape(shape, filler, der.len());
    (shape_der_len(&fitted) == der.len()).then_some(fitted)
}

const WORDS: &[&str] = &[
    "Global",
    "Root",
    "Trust",
    "Secure",
    "Services",
    "Certification",
    "Authority",
    "Network",
    "Public",
    "Primary",
    "Digital",
    "Signature",
    "Commercial",
    "Premium",
    "Assured",
    "Identity",
    "Systems",
    "Solutions",
    "Telecom",
    "Universal",
    "Gold",
    "Class",
    "Server",
    "Enterprise",
    "National",
    "Infrastructure",
    "Registry",
    "Holdings",
    "Group",
    "Limited",
    "Inc.",
    "GmbH",
    "S.A.",
    "Ltd.",
    "ECC",
    "RSA",
    "G2",
    "G3",
    "TLS",
    "Hub",
];

const COUNTRIES: &[&str] = &[
    "US", "DE", "GB", "FR", "JP", "CN", "ES", "IT", "NL", "BE", "CH", "SE", "NO", "PL", "TW", "KR",
    "HU", "TR", "GR", "SK", "BM", "HK", "IE", "AT",
];

fn pick<'a>(rng: &mut ChaCha8Rng, items: &[&'a str]) -> &'a str {
    items
        .get(rng.random_range(0..items.len() as u32) as usize)
        .copied()
        .unwrap_or("X")
}

/// Fills a shape with words; the token of `index` ends the longest attribute.
fn fill(rng: &mut ChaCha8Rng, shape: &[(AttrType, StringKind, usize)], index: u64) -> Name {
    let token = format!(" {}", base36(index));
    let token_slot = shape
        .iter()
        .enumerate()
        .filter(|(_, (t, _, _))| *t != AttrType::Country)
        .max_by_key(|(i, (_, _, len))| (*len, usize::MAX - i))
        .map(|(i, _)| i);
    let mut name = Name::new();
    for (i, &(ty, kind, len)) in shape.iter().enumerate() {
        let mut value = match ty {
            AttrType::Country => pick(rng, COUNTRIES).to_owned(),
            AttrType::Email => email(rng, len),
            _ => words(rng, len),
        };
        if Some(i) == token_slot {
            let keep = len.saturating_sub(token.len());
            value.truncate(keep);
            value.push_str(&token[token.len().saturating_sub(len)..]);
        }
        // The vocabulary is PrintableString-safe ASCII, so these never fail.
        if let Ok(attr) = Attribute::with_kind(ty, kind, value) {
            name.push(attr);
        }
    }
    name
}

fn words(rng: &mut ChaCha8Rng, len: usize) -> String {
    let mut s = String::with_capacity(len + 16);
    while s.len() < len {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(pick(rng, WORDS));
    }
    s.truncate(len);
    if s.ends_with(' ') {
        s.pop();
        s.push('X');
    }
    s
}

fn email(rng: &mut ChaCha8Rng, len: usize) -> String {
    let mut s = String::with_capacity(len + 16);
    s.push_str("pki@");
    while s.len() < len {
        s.push_str(
            &pick(rng, WORDS)
                .to_ascii_lowercase()
                .replace(['.', ' '], ""),
        );
        s.push('.');
    }
    s.truncate(len);
    s
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_profiles() {
        assert_eq!("realistic".parse(), Ok(Profile::Realistic));
        assert_eq!("fixed:100".parse(), Ok(Profile::Fixed(100)));
        assert!("fixed:19".parse::<Profile>().is_err());
        assert!("fixed:1001".parse::<Profile>().is_err());
        assert!("fixed:".parse::<Profile>().is_err());
        assert!("huge".parse::<Profile>().is_err());
        assert_eq!(Profile::Fixed(64).to_string(), "fixed:64");
    }

    #[test]
    fn every_fixed_length_is_exact() {
        let impossible: Vec<usize> = (FIXED_MIN..=FIXED_MAX)
            .filter(|&l| !der_len_exists(l))
            .collect();
        assert_eq!(impossible, [130, 259]);
        assert!("fixed:130".parse::<Profile>().is_err());
        for len in (FIXED_MIN..=FIXED_MAX).filter(|&l| der_len_exists(l)) {
            for i in [0u64, 1, 35, 36, 99_999] {
                let der = subject(3, Profile::Fixed(len), i).to_der();
                assert_eq!(der.len(), len, "fixed:{len} index {i}");
            }
        }
    }

    #[test]
    fn calibration_matches_the_mozilla_program() {
        let subjects = mozilla_subjects();
        let shapes = mozilla_shapes();
        assert_eq!(shapes.len(), subjects.len(), "every subject has a shape");
        let mut want: Vec<usize> = subjects.iter().map(Vec::len).collect();
        let mut got: Vec<usize> = shapes.iter().map(|s| shape_der_len(s)).collect();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want, "shapes keep each subject's exact DER size");
    }

    #[test]
    fn length_distributions_are_what_subjects_draw() {
        for profile in [
            Profile::Realistic,
            Profile::Short,
            Profile::Long,
            Profile::Fixed(100),
        ] {
            let dist = length_distribution(profile);
            let total: f64 = dist.iter().map(|(_, p)| p).sum();
            assert!((total - 1.0).abs() < 1e-12, "{profile}: {total}");
            // 4,000 subjects: every length is in the support, and each
            // length's count is within 5 standard deviations of its mean.
            let n = 4_000u64;
            let mut seen = std::collections::BTreeMap::<usize, u64>::new();
            for i in 0..n {
                *seen.entry(subject(11, profile, i).der_len()).or_default() += 1;
            }
            for (len, count) in &seen {
                let p = dist
                    .iter()
                    .find(|(l, _)| l == len)
                    .map(|(_, p)| *p)
                    .unwrap_or_else(|| panic!("{profile}: length {len} drawn, not in the support"));
                let mean = p * n as f64;
                let sd = (mean * (1.0 - p)).sqrt().max(1.0);
                assert!(
                    (*count as f64 - mean).abs() <= 5.0 * sd,
                    "{profile}: length {len}: {count} drawn, {mean:.1} expected"
                );
            }
        }
        assert_eq!(length_distribution(Profile::Fixed(100)), vec![(100, 1.0)]);
    }

    #[test]
    fn base36_digits() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "Z");
        assert_eq!(base36(36), "10");
    }
}
