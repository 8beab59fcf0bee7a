//! The CA-list policy with exact arithmetic, and its invariants as properties.

use certgen::synth::{self, Profile};
use lab_server::policy::{
    self, Accounting, Entry, MessageShape, Order, Policy, PolicyError, Settings, TlsVersion,
};
use proptest::prelude::*;

/// TLS 1.2 shape with rustls's two certificate types and `schemes` schemes.
fn tls12(schemes: usize) -> MessageShape {
    MessageShape {
        version: TlsVersion::Tls12,
        cert_types: 2,
        sig_schemes: schemes,
    }
}

/// Subjects and thumbprints of a synthetic store (thumbprints: SHA-1 of the subject
/// stands in for the certificate's, which the policy only orders by).
fn store(profile: Profile, n: u64, seed: u64) -> (Vec<Vec<u8>>, Vec<[u8; 20]>) {
    let subjects: Vec<Vec<u8>> = synth::subjects(seed, profile, 0, n)
        .iter()
        .map(certgen::Name::to_der)
        .collect();
    let sha1s = subjects
        .iter()
        .map(|s| {
            let d = certgen::keys::digest32(b"sha1-stand-in", s);
            let mut out = [0u8; 20];
            out.copy_from_slice(&d[..20]);
            out
        })
        .collect();
    (subjects, sha1s)
}

fn entries<'a>(subjects: &'a [Vec<u8>], sha1s: &'a [[u8; 20]]) -> Vec<Entry<'a>> {
    subjects
        .iter()
        .zip(sha1s)
        .map(|(subject, sha1)| Entry { subject, sha1 })
        .collect()
}

#[test]
fn schannel_keeps_160_of_161_fixed_100_roots() {
    let (subjects, sha1s) = store(Profile::Fixed(100), 161, 1);
    let e = entries(&subjects, &sha1s);
    let settings = Settings::default();
    let plan = policy::plan(&e, &settings, &tls12(9), 16_389, &[("last".into(), 160)]).unwrap();
    // 160 x 102 = 16,320 <= 16,384 < 161 x 102 = 16,422.
    assert_eq!(plan.report.kept, 160);
    assert_eq!(plan.report.dropped, 1);
    assert_eq!(plan.report.list_bytes, 16_320);
    assert_eq!(plan.sent, (0..160).collect::<Vec<_>>());
    assert!(plan.report.truncated);
    assert_eq!(plan.report.named, vec![("last".to_owned(), None)]);
    // body = 1 + 2 types + 2 + 2 x 9 schemes + 2 + 16,320; message adds 4.
    assert_eq!(plan.report.message_bytes, 4 + 1 + 2 + 2 + 18 + 2 + 16_320);
    assert_eq!(plan.report.records, 1);
}

#[test]
fn message_accounting_fits_one_record() {
    let (subjects, sha1s) = store(Profile::Fixed(100), 161, 1);
    let e = entries(&subjects, &sha1s);
    let settings = Settings {
        accounting: Accounting::Message,
        ..Settings::default()
    };
    let shape = tls12(9);
    let plan = policy::plan(&e, &settings, &shape, 16_389, &[]).unwrap();
    // fixed part: 4 + 1 + 2 + 2 + 18 + 2 = 29 bytes; (16,384 - 29) / 102 = 160.
    assert_eq!(plan.report.kept, 160);
    assert!(plan.report.message_bytes <= 16_384);
    assert!(shape.message_len(plan.report.list_bytes + 102) > 16_384);
    let small = Settings {
        budget: 10,
        ..settings
    };
    assert!(matches!(
        policy::plan(&e, &small, &shape, 16_389, &[]),
        Err(PolicyError::BudgetTooSmall { fixed: 29, .. })
    ));
}

#[test]
fn omit_sends_nothing_and_logs_nothing() {
    let (subjects, sha1s) = store(Profile::Realistic, 355, 2);
    let e = entries(&subjects, &sha1s);
    let settings = Settings {
        policy: Policy::Omit,
        ..Settings::default()
    };
    let plan = policy::plan(&e, &settings, &tls12(9), 16_389, &[("ca".into(), 0)]).unwrap();
    assert!(plan.sent.is_empty());
    assert_eq!(plan.report.list_bytes, 0);
    assert!(!plan.report.truncated);
    assert_eq!(plan.report.named[0].1, None);
}

#[test]
fn full_refuses_past_65535_naming_both_sizes() {
    // 643 x 102 = 65,586 > 65,535; 642 x 102 = 65,484 fits.
    let (subjects, sha1s) = store(Profile::Fixed(100), 643, 3);
    let e = entries(&subjects, &sha1s);
    let full = Settings {
        policy: Policy::Full,
        ..Settings::default()
    };
    let err = policy::plan(&e, &full, &tls12(9), 16_389, &[]).unwrap_err();
    assert_eq!(
        err,
        PolicyError::OverProtocolLimit {
            list: 65_586,
            max: 65_535,
            version: TlsVersion::Tls12,
            roots: 643
        }
    );
    let text = err.to_string();
    assert!(text.contains("65586") && text.contains("65535"), "{text}");
    let plan = policy::plan(&e[..642], &full, &tls12(9), 16_389, &[]).unwrap();
    assert_eq!(plan.report.list_bytes, 65_484);
    // 65,484 + 29 = 65,513 bytes of message: 4 records of 16,384 bytes of
    // plaintext at the largest fragment, 17 of 4,091 at --max-fragment 4096.
    assert_eq!(plan.report.message_bytes, 65_513);
    assert_eq!(plan.report.records, 4);
    let plan = policy::plan(&e[..642], &full, &tls12(9), 4_096, &[]).unwrap();
    assert_eq!(plan.report.records, 17);
}

#[test]
fn tls13_limit_is_lower() {
    let shape = MessageShape {
        version: TlsVersion::Tls13,
        cert_types: 0,
        sig_schemes: 14,
    };
    // 65,535 - (4 + 2 + 28) - (4 + 2) = 65,495.
    assert_eq!(shape.max_list(), 65_495);
    assert_eq!(shape.body_len(0), 1 + 2 + 34);
    assert_eq!(shape.body_len(102), 1 + 2 + 34 + 6 + 102);
}

#[test]
fn orders() {
    let (subjects, sha1s) = store(Profile::Realistic, 50, 4);
    let e = entries(&subjects, &sha1s);
    for (order, key) in [
        (
            Order::Thumbprint,
            Box::new(|i: usize| sha1s[i].to_vec()) as Box<dyn Fn(usize) -> Vec<u8>>,
        ),
        (Order::Subject, Box::new(|i: usize| subjects[i].clone())),
    ] {
        let settings = Settings {
            policy: Policy::Full,
            order,
            ..Settings::default()
        };
        let plan = policy::plan(&e, &settings, &tls12(9), 16_389, &[]).unwrap();
        let keys: Vec<Vec<u8>> = plan.sent.iter().map(|&i| key(i)).collect();
        assert!(
            keys.windows(2).all(|w| w[0] <= w[1]),
            "{order} is ascending"
        );
        assert_eq!(plan.sent.len(), 50);
    }
}

fn any_settings() -> impl Strategy<Value = Settings> {
    (
        prop::sample::select(vec![Policy::Full, Policy::Schannel, Policy::Omit]),
        0usize..70_000,
        prop::sample::select(vec![Accounting::CaList, Accounting::Message]),
        prop::sample::select(vec![Order::Store, Order::Thumbprint, Order::Subject]),
    )
        .prop_map(|(policy, budget, accounting, order)| Settings {
            policy,
            budget,
            accounting,
            order,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn kept_list_is_an_order_prefix_within_budget(
        n in 0u64..800,
        seed in any::<u64>(),
        settings in any_settings(),
        tls13 in any::<bool>(),
        schemes in 1usize..20,
    ) {
        let (subjects, sha1s) = store(Profile::Realistic, n, seed);
        let e = entries(&subjects, &sha1s);
        let shape = MessageShape {
            version: if tls13 { TlsVersion::Tls13 } else { TlsVersion::Tls12 },
            cert_types: if tls13 { 0 } else { 2 },
            sig_schemes: schemes,
        };
        let full = Settings { policy: Policy::Full, budget: 0, ..settings };
        let everything: Vec<usize> = match policy::plan(&e, &full, &shape, 16_389, &[]) {
            Ok(p) => p.sent,
            Err(PolicyError::OverProtocolLimit { list, max, .. }) => {
                // full never passes the limit silently
                prop_assert!(list > max);
                let total: usize = subjects.iter().map(|s| 2 + s.len()).sum();
                prop_assert_eq!(list, total);
                return Ok(());
            }
            Err(other) => return Err(TestCaseError::fail(other.to_string())),
        };
        match policy::plan(&e, &settings, &shape, 16_389, &[]) {
            Ok(plan) => {
                prop_assert!(everything.starts_with(&plan.sent), "a prefix of the enumeration order");
                prop_assert!(plan.report.list_bytes <= shape.max_list());
                let list: usize = plan.sent.iter().map(|&i| 2 + subjects[i].len()).sum();
                prop_assert_eq!(list, plan.report.list_bytes);
                if settings.policy == Policy::Schannel {
                    let used = match settings.accounting {
                        Accounting::CaList => list,
                        Accounting::Message => plan.report.message_bytes,
                    };
                    prop_assert!(used <= settings.budget, "{} > {}", used, settings.budget);
                    // maximal: the next name would not fit
                    if let Some(&next) = everything.get(plan.sent.len()) {
                        let more = list + 2 + subjects[next].len();
                        let used_more = match settings.accounting {
                            Accounting::CaList => more,
                            Accounting::Message => shape.message_len(more),
                        };
                        prop_assert!(used_more > settings.budget || more > shape.max_list());
                    }
                    prop_assert_eq!(plan.report.truncated, plan.sent.len() < e.len());
                }
            }
            Err(PolicyError::BudgetTooSmall { fixed, budget }) => {
                prop_assert_eq!(settings.accounting, Accounting::Message);
                prop_assert!(budget < fixed);
            }
            Err(other) => return Err(TestCaseError::fail(other.to_string())),
        }
    }
}
