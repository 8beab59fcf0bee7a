//! CA list assembly: `certgen::wire::write_ca_list` vs a plain copy of the same
//! DER names (`extend_from_slice` into a reused Vec, no length prefixes).
//! Target: write_ca_list at least half the copy's throughput.
//!
//! Both sides report `Throughput::Bytes` of the DN payload (sum of DER
//! lengths), so throughputs compare like the times. Only lists within the TLS
//! 1.2 bound of 65,535 bytes can be written: 10/100/600 realistic names and
//! 10/100/1,000/2,900 `fixed:20` names (2,900 x 22 = 63,800 B). 10,000
//! realistic names (about 970 KB) are over it; for them only the refusal
//! (the size check `write_ca_list` runs before writing) is timed.

use std::hint::black_box;
use std::time::Duration;

use certgen::synth::{self, Profile};
use certgen::wire::{self, TLS12_LIMIT};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn names(profile: Profile, n: u64) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| synth::subject(1, profile, i).to_der())
        .collect()
}

fn bench(c: &mut Criterion) {
    let cases = [
        ("realistic", Profile::Realistic, &[10u64, 100, 600][..]),
        ("fixed20", Profile::Fixed(20), &[10, 100, 1000, 2900][..]),
    ];
    for (label, profile, counts) in cases {
        let mut g = c.benchmark_group(format!("ca_list/{label}"));
        for &n in counts {
            let names = names(profile, n);
            let payload: usize = names.iter().map(Vec::len).sum();
            assert!(wire::ca_list_len(names.iter().map(Vec::len)) <= TLS12_LIMIT);
            g.throughput(Throughput::Bytes(payload as u64));
            let mut out = Vec::with_capacity(2 + 2 * names.len() + payload);
            g.bench_with_input(BenchmarkId::new("write_ca_list", n), &names, |b, names| {
                b.iter(|| {
                    out.clear();
                    wire::write_ca_list(&mut out, black_box(names)).unwrap();
                    black_box(&out);
                })
            });
            g.bench_with_input(BenchmarkId::new("copy", n), &names, |b, names| {
                b.iter(|| {
                    out.clear();
                    for name in black_box(names) {
                        out.extend_from_slice(name);
                    }
                    black_box(&out);
                })
            });
        }
        g.finish();
    }

    let over = names(Profile::Realistic, 10_000);
    let mut g = c.benchmark_group("ca_list/realistic_over_limit");
    g.throughput(Throughput::Elements(over.len() as u64));
    let mut out = Vec::new();
    g.bench_function("write_ca_list_refusal/10000", |b| {
        b.iter(|| wire::write_ca_list(&mut out, black_box(&over)).unwrap_err())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
