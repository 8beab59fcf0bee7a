//! DN encoding: certgen's `Name` encoder vs rcgen's DistinguishedName encoding
//! of the same attributes. Target: certgen at least 3x faster.
//!
//! rcgen has no public "encode a DN" call, so its cost is measured by
//! difference: issue a certificate (placeholder signature, no crypto) whose
//! subject is the DN, minus the same certificate with an empty subject. The
//! rcgen side includes building its DistinguishedName (`Name::to_rcgen`). The
//! issuer is a fixed empty-DN `Issuer`, so the DN is written once, not twice
//! as `self_signed` would (subject and issuer).

use std::hint::black_box;
use std::time::{Duration, Instant};

use certgen::keys::{KeyAlg, LabKey, PlaceholderKey};
use certgen::synth::{self, Profile};
use certgen::{AttrType, Attribute, Name};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rcgen::{CertificateParams, DistinguishedName, Issuer};

fn empty_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x40; 16]));
    p
}

/// Time of `iters` passes over `names` issuing with each DN, minus the same
/// with an empty DN.
fn rcgen_marginal(iters: u64, names: &[Name], key: &PlaceholderKey) -> Duration {
    let issuer = Issuer::new(empty_params(), key);
    let mut params = empty_params();
    let start = Instant::now();
    for _ in 0..iters {
        for n in names {
            params.distinguished_name = n.to_rcgen().unwrap();
            black_box(params.signed_by(key, &issuer).unwrap());
        }
    }
    let with_dn = start.elapsed();
    let start = Instant::now();
    for _ in 0..iters {
        for n in names {
            black_box(n);
            params.distinguished_name = DistinguishedName::new();
            black_box(params.signed_by(key, &issuer).unwrap());
        }
    }
    with_dn.saturating_sub(start.elapsed())
}

fn bench(c: &mut Criterion) {
    let key = PlaceholderKey::new(&LabKey::from_seed(KeyAlg::EcdsaP256, [7; 32]).unwrap());
    let realistic: Vec<Name> = (0..1000)
        .map(|i| synth::subject(1, Profile::Realistic, i))
        .collect();
    let attr = |t, v| Attribute::new(t, v).unwrap();
    let mid = vec![Name::from_attrs(vec![
        attr(AttrType::Country, "US"),
        attr(AttrType::Organization, "Umlab Test Trust Services Inc."),
        attr(AttrType::OrgUnit, "Certification Authorities"),
        attr(AttrType::CommonName, "Umlab Global Root CA G2"),
    ])];

    // certgen's DER must be exactly the subject rcgen writes (parsed by x509-parser).
    let issuer = Issuer::new(empty_params(), &key);
    for n in realistic.iter().chain(&mid) {
        let mut p = empty_params();
        p.distinguished_name = n.to_rcgen().unwrap();
        let cert = p.signed_by(&key, &issuer).unwrap().der().to_vec();
        let root = certgen::store::Root::from_der(cert).unwrap();
        assert_eq!(root.subject_der(), n.to_der(), "{n}");
    }
    let mean = realistic.iter().map(Name::der_len).sum::<usize>() / realistic.len();
    eprintln!(
        "realistic mean DER {mean} B; fixed example {} B",
        mid[0].der_len()
    );

    for (label, names) in [("realistic_1000", &realistic), ("fixed_mid", &mid)] {
        let mut g = c.benchmark_group(format!("dn_encoding/{label}"));
        g.throughput(Throughput::Elements(names.len() as u64));
        let mut buf = Vec::with_capacity(1024);
        g.bench_function("certgen_write_der", |b| {
            b.iter(|| {
                for n in names.iter() {
                    buf.clear();
                    black_box(n).write_der(&mut buf);
                    black_box(&buf);
                }
            })
        });
        g.bench_function("certgen_to_der", |b| {
            b.iter(|| {
                for n in names.iter() {
                    black_box(black_box(n).to_der());
                }
            })
        });
        g.bench_function("rcgen_build_dn_only", |b| {
            b.iter(|| {
                for n in names.iter() {
                    black_box(black_box(n).to_rcgen().unwrap());
                }
            })
        });
        g.bench_function("rcgen_marginal", |b| {
            b.iter_custom(|iters| rcgen_marginal(iters, names, &key))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
