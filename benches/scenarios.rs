//! End-to-end costs of the lab, over real TCP and TLS on loopback:
//! - the seed-2013 break-point search (target: at most 5 s on 2 cores);
//! - voicemails delivered per second through lab-server (one handshake each);
//! - the whole default run, every built-in scenario (target: at most 60 s).

use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use umlab::engine::{self, Lab};
use umlab::model::Resolved;

fn scenario(name: &str) -> Resolved {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(format!("{name}.toml"));
    Resolved::load(&path).expect("scenario file")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let mut g = c.benchmark_group("scenarios");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));

    let seed = scenario("seed-2013");
    g.bench_function("seed_2013_break_point_search", |b| {
        b.iter(|| {
            rt.block_on(async {
                // A fresh lab each time: PKI, stores and servers all included.
                let mut lab = Lab::new(umlab::PKI_SEED).expect("lab");
                let bp = engine::break_point(&mut lab, &seed, 11, 355, 2013)
                    .await
                    .expect("search runs")
                    .expect("a break point");
                assert_eq!(bp.size, 170);
            })
        })
    });

    // Delivered voicemails per second: 20 per store, a new handshake each.
    let mut omit = scenario("fix-sendtrustedissuerlist");
    omit.scenario.client.voicemails = 20;
    let mut lab = Lab::new(umlab::PKI_SEED).expect("lab");
    g.throughput(Throughput::Elements(20));
    g.bench_function("deliveries_per_second_355_roots", |b| {
        b.iter(|| {
            rt.block_on(async {
                let p = lab.point(&omit, 355, 2013).await.expect("point");
                assert!(!p.measured.failed());
            })
        })
    });

    g.throughput(Throughput::Elements(1));
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("scenarios folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let all: Vec<Resolved> = files
        .iter()
        .map(|f| Resolved::load(f).expect("scenario"))
        .collect();
    g.bench_function("whole_default_run", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut lab = Lab::new(umlab::PKI_SEED).expect("lab");
                for r in &all {
                    let result = umlab::run(r, &mut lab, &|_| {}).await.expect("scenario");
                    assert!(result.problems.is_empty(), "{:?}", result.problems);
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
