//! Root generation throughput of `certgen::roots::generate` (all cores, rayon)
//! by key mode, and the dn-only fast path's subject generation alone.
//! Targets: P-256 roots >= 20,000/s (10,000 in 0.5 s on 2 cores); dn-only
//! subjects >= 1,000,000/s.

use std::hint::black_box;
use std::time::Duration;

use certgen::KeyAlg;
use certgen::roots::{RootsSpec, generate};
use certgen::synth::{self, Profile};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("certgen_throughput");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let cases = [
        ("p256_seeded", 1_000, Some(1), KeyAlg::EcdsaP256, false),
        ("p256_unseeded", 1_000, None, KeyAlg::EcdsaP256, false),
        ("ed25519_seeded", 1_000, Some(1), KeyAlg::Ed25519, false),
        ("dn_only", 10_000, Some(1), KeyAlg::EcdsaP256, true),
    ];
    for (label, count, seed, key, dn_only) in cases {
        let spec = RootsSpec {
            count,
            seed,
            profile: Profile::Realistic,
            key,
            dn_only,
        };
        g.throughput(Throughput::Elements(count));
        g.bench_function(format!("roots/{label}/{count}"), |b| {
            b.iter(|| generate(black_box(&spec), &|_| {}).unwrap())
        });
    }
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("subjects_to_der/realistic/100000", |b| {
        b.iter(|| {
            (0..100_000u64)
                .into_par_iter()
                .map(|i| synth::subject(black_box(1), Profile::Realistic, i).to_der())
                .collect::<Vec<_>>()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
