//! CA-list planning cost: `Planner::new` (ordering and prefix sums, O(n) after
//! the sort) and `Planner::plan` for one budget (O(log n) by binary search on
//! the prefix sums), for stores of 100 to 100,000 roots.

use std::hint::black_box;

use certgen::synth::{self, Profile};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lab_server::policy::{Entry, MessageShape, Order, Planner, Policy, Settings, TlsVersion};

fn store(n: u64) -> (Vec<Vec<u8>>, Vec<[u8; 20]>) {
    let subjects: Vec<Vec<u8>> = synth::subjects(1, Profile::Realistic, 0, n)
        .iter()
        .map(certgen::Name::to_der)
        .collect();
    let sha1s = subjects
        .iter()
        .map(|s| {
            let mut t = [0u8; 20];
            t.copy_from_slice(&certgen::keys::digest32(b"bench", s)[..20]);
            t
        })
        .collect();
    (subjects, sha1s)
}

fn bench(c: &mut Criterion) {
    let shape = MessageShape {
        version: TlsVersion::Tls12,
        cert_types: 2,
        sig_schemes: 9,
    };
    let mut g = c.benchmark_group("ca_policy");
    for n in [100u64, 1_000, 10_000, 100_000] {
        let (subjects, sha1s) = store(n);
        let entries: Vec<Entry<'_>> = subjects
            .iter()
            .zip(&sha1s)
            .map(|(subject, sha1)| Entry { subject, sha1 })
            .collect();
        g.throughput(Throughput::Elements(n));
        for order in [Order::Store, Order::Thumbprint] {
            g.bench_with_input(
                BenchmarkId::new(format!("prepare/{order}"), n),
                &n,
                |b, _| b.iter(|| Planner::new(black_box(&entries), order)),
            );
        }
        let planner = Planner::new(&entries, Order::Store);
        let settings = Settings {
            policy: Policy::Schannel,
            ..Settings::default()
        };
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("fit_one_budget", n), &n, |b, _| {
            b.iter(|| planner.fit(black_box(16_384)))
        });
        g.bench_with_input(BenchmarkId::new("plan_schannel", n), &n, |b, _| {
            b.iter(|| planner.plan(black_box(&settings), &shape))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
