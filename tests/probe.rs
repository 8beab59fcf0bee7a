//! `umlab probe` against servers whose figures are known, loopback only:
//! lab-server in-process under each CA-list policy (the report equals the
//! server's own plan, report and connection event; every preset's verdict
//! equals um-sim's measured outcome against the same server), TLS 1.3
//! against lab-server, `openssl s_server -Verify 1 -CAfile` at 16,384,
//! 32,720 and 65,535 bytes of names (names and order equal the CA file's),
//! the STARTTLS dialogues, and bad peers (garbage, a truncated flight, no
//! CertificateRequest, a huge record, silence): one line on stderr, exit 2,
//! within the timeout.

mod common;
#[path = "../lab-server/tests/common/postfix.rs"]
mod postfix;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use certgen::roots::RootsSpec;
use certgen::wire::{MAX_FRAGMENT, RecordHeader};
use certgen::{KeyAlg, Profile, Store};
use lab_server::policy::{Policy, TlsVersion};
use lab_server::tls::ClientAuth;
use um_sim::client::FailureClass;
use umlab::probe::report::{Layer, ServerAnswer};
use umlab::probe::{self, Outcome, Report, Starttls, TlsChoice};

use common::{EVENT_TIMEOUT, pki};

/// Longest one `umlab probe` process may take here.
const DEADLINE: Duration = Duration::from_secs(60);

/// A request for `addr` with a short timeout.
fn request(addr: &str, starttls: Starttls) -> probe::Request {
    let mut r = probe::Request::new(addr);
    r.starttls = Some(starttls);
    r.timeout = Duration::from_secs(10);
    r
}

/// The names of the report as (subject text, DER length), in order.
fn report_names(r: &Report) -> Vec<(String, usize)> {
    r.request
        .names
        .iter()
        .map(|n| (n.subject.clone(), n.der_bytes))
        .collect()
}

/// The same for DER names.
fn names_of<D: AsRef<[u8]>>(ders: &[D]) -> Vec<(String, usize)> {
    ders.iter()
        .map(|d| (certgen::store::subject_text(d.as_ref()), d.as_ref().len()))
        .collect()
}

/// The names lab-server advertises for `store` under `policy` (with
/// `budget` when given), in order.
fn planned(
    store: &Store,
    policy: Policy,
    budget: Option<usize>,
    version: TlsVersion,
) -> Vec<Vec<u8>> {
    let mut settings = lab_server::policy::Settings {
        policy,
        ..lab_server::policy::Settings::default()
    };
    if let Some(b) = budget {
        settings.budget = b;
    }
    let plan =
        lab_server::policy::plan_store(store, &settings, version, MAX_FRAGMENT, &[]).expect("plan");
    plan.sent
        .iter()
        .filter_map(|&i| store.roots().get(i))
        .map(|r| r.subject_der().to_vec())
        .collect()
}

/// Whether a verdict is the outcome um-sim measured with that preset.
fn agrees(outcome: &Outcome, attempt: &um_sim::client::Attempt) -> bool {
    match outcome {
        Outcome::Delivers { .. } => attempt.delivered,
        Outcome::Withholds { .. } => attempt.failure == Some(FailureClass::NoAcceptableCertificate),
        Outcome::Fails {
            rule: Some(rule), ..
        } => attempt.failure == Some(FailureClass::ProfileRule) && attempt.rule == Some(*rule),
        Outcome::Fails { rule: None, .. } | Outcome::Unknown { .. } => false,
    }
}

/// Probes lab-server (355 realistic roots, the enterprise CA last) under
/// `policy` (and `budget`) with `version`, presenting the UM's certificate,
/// and checks the report against the server's own figures and um-sim's
/// outcomes. Returns the report.
async fn against_lab_server(policy: Policy, budget: Option<usize>, version: TlsVersion) -> Report {
    let (store, ca) = common::store_with(354, Profile::Realistic);
    let advertised = planned(&store, policy, budget, version);
    let mut lab = common::start_server(store, ca, |s| {
        s.policy.policy = policy;
        if let Some(b) = budget {
            s.policy.budget = b;
        }
        s.tls_version = version;
    })
    .await
    .expect("lab-server");
    let mut req = request(&lab.addr().to_string(), Starttls::Smtp);
    req.identity = Some(common::um_identity(pki()));
    req.tls = match version {
        TlsVersion::Tls12 => TlsChoice::Tls12,
        TlsVersion::Tls13 => TlsChoice::Tls13,
    };
    let report = probe::probe(&req).await.expect("probe");
    let server = lab.server.report().clone();
    let event = lab
        .next_event(EVENT_TIMEOUT)
        .await
        .expect("the probe's event");
    let what = format!("{policy:?} {version:?}");

    // Names and order: the server's plan.
    assert_eq!(report_names(&report), names_of(&advertised), "{what}");
    assert_eq!(report.request.list_bytes, server.list_bytes, "{what}");
    assert_eq!(report.request.names.len(), server.kept, "{what}");
    let cr = event.certificate_request.as_ref().expect("request event");
    assert_eq!(cr.ca_names, server.kept, "{what}");
    assert_eq!(
        Some(&report.tls_version),
        event.tls_version.as_ref(),
        "{what}"
    );
    assert_eq!(
        Some(&report.cipher_suite),
        event.cipher_suite.as_ref(),
        "{what}"
    );
    match version {
        TlsVersion::Tls12 => {
            assert_eq!(report.request.layer, Layer::Wire);
            assert_eq!(cr.source, "wire");
            let body = report.request.body_bytes.expect("body on the wire");
            assert_eq!(body + 4, server.message_bytes, "{what}");
            assert_eq!(body + 4, cr.bytes, "{what}");
            let records = report.request.records.as_ref().expect("records");
            assert_eq!(records.len(), server.records, "{what}");
            assert_eq!(records.len(), cr.records, "{what}");
            let carried: usize = records.iter().map(|r| r.request_bytes).sum();
            assert_eq!(carried, cr.bytes, "{what}");
        }
        TlsVersion::Tls13 => {
            // Decrypted with the probe's own key log: the exact message the
            // lab computes from its own encoding.
            let r = &report.request;
            assert_eq!(r.layer, Layer::Decrypted, "{:?}", r.unobserved);
            assert_eq!(
                (r.body_bytes_at_least.is_none(), &r.unobserved),
                (true, &None)
            );
            assert_eq!(cr.source, "encoding");
            let body = r.body_bytes.expect("the decrypted body");
            assert_eq!(body + 4, server.message_bytes, "{what}");
            assert_eq!(body + 4, cr.bytes, "{what}");
            let shape = lab_server::tls::message_shape(TlsVersion::Tls13);
            assert_eq!(shape.message_len(server.list_bytes), server.message_bytes);
            // Every scheme the server wrote, not only those rustls passes on.
            assert_eq!(r.signature_schemes.len(), shape.sig_schemes, "{what}");
            let ext = |name: &str| {
                r.extensions
                    .iter()
                    .find(|e| e.name == name)
                    .map(|e| e.bytes)
            };
            assert_eq!(
                ext("signature_algorithms"),
                Some(4 + 2 + 2 * shape.sig_schemes),
                "{what}"
            );
            assert_eq!(
                ext("certificate_authorities"),
                (server.list_bytes > 0).then_some(4 + 2 + server.list_bytes),
                "{what}"
            );
            assert_eq!(
                r.extensions.iter().map(|e| e.bytes).sum::<usize>() + 1 + 2,
                body,
                "context, extensions block: every byte accounted for"
            );
            let records = r.records.as_ref().expect("protected records");
            let carried: usize = records.iter().map(|s| s.request_bytes).sum();
            assert_eq!(carried, body + 4, "{what}");
            for s in records {
                // header, the request's bytes at least, content type, tag
                assert!(s.record_bytes >= 5 + s.request_bytes + 1 + 16, "{s:?}");
                assert!(s.record_bytes <= 5 + 16_384 + 256, "{s:?}");
            }
            assert_eq!(records.len(), cr.records, "{what}");
            eprintln!(
                "{what}: decrypted body {body}, protected records {:?}; the lab's encoding \
                 says {} record(s)",
                records.iter().map(|s| s.record_bytes).collect::<Vec<_>>(),
                cr.records
            );
        }
    }
    // The UM's issuer: listed exactly when the server's plan kept it.
    let ca_der = common::ca_subject();
    let listed = advertised.iter().position(|d| *d == ca_der).map(|i| i + 1);
    assert_eq!(report.issuers.len(), 1, "{what}");
    assert_eq!(report.issuers.first().and_then(|i| i.listed_at), listed);
    assert!(report.handshake.certificate_sent);
    assert_eq!(report.handshake.answer, ServerAnswer::Accepted, "{what}");

    // Every preset's verdict is what um-sim measures against this server.
    assert_eq!(
        report.verdicts.len(),
        um_sim::presets::PRESETS.len() + 1,
        "every preset and lenient"
    );
    let probed = match version {
        TlsVersion::Tls12 => um_sim::presets::Version::Tls12,
        TlsVersion::Tls13 => um_sim::presets::Version::Tls13,
    };
    for v in &report.verdicts {
        if let Outcome::Unknown { why } = &v.outcome {
            // Unknown only for a stack without the version the probe ran
            // (erlang-tls13 over TLS 1.2, Schannel over TLS 1.3): in TLS
            // 1.3 too every figure is known.
            let offers = v
                .preset
                .parse::<um_sim::profile::Profile>()
                .is_ok_and(|p| p.versions().contains(&probed));
            assert!(!offers, "{}: {why}", v.preset);
            continue;
        }
        let attempt = common::submit_one(&lab, &v.preset).await;
        assert!(
            agrees(&v.outcome, &attempt),
            "{what}: {} judged {:?}, um-sim measured {:?} ({:?})",
            v.preset,
            v.outcome,
            attempt.failure,
            attempt.error
        );
        assert_eq!(v.fails, !attempt.delivered, "{what}: {}", v.preset);
    }
    let fails = report.verdicts.iter().any(|v| v.fails);
    assert_eq!(report.exit_code, u8::from(fails));
    lab.server.shutdown(Duration::from_secs(1)).await;
    report
}

/// The verdict of `preset` in `report`.
fn verdict<'a>(report: &'a Report, preset: &str) -> &'a probe::Verdict {
    report
        .verdicts
        .iter()
        .find(|v| v.preset == preset)
        .unwrap_or_else(|| panic!("no verdict for {preset}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_server_full_policy() {
    against_lab_server(Policy::Full, None, TlsVersion::Tls12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_server_schannel_policy() {
    against_lab_server(Policy::Schannel, None, TlsVersion::Tls12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_server_omit_policy() {
    against_lab_server(Policy::Omit, None, TlsVersion::Tls12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_server_tls13_schannel_policy() {
    against_lab_server(Policy::Schannel, None, TlsVersion::Tls13).await;
}

/// A TLS 1.3 request past 32 KB whose list, cut at 34,000 bytes, leaves
/// the enterprise CA out: java17 fails on the decrypted body's exact size
/// and go withholds its certificate; both say "fails", not unknown, and
/// (in [`against_lab_server`]) equal what um-sim measures against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_server_tls13_over_32k() {
    let report = against_lab_server(Policy::Schannel, Some(34_000), TlsVersion::Tls13).await;
    let body = report.request.body_bytes.expect("exact body");
    assert!(body > 32_768, "{body}");
    assert_eq!(report.issuers.first().and_then(|i| i.listed_at), None);
    let java = verdict(&report, "java17");
    assert_eq!(
        java.outcome,
        Outcome::Fails {
            rule: Some(um_sim::profile::Rule::MaxBody(32_768)),
            error: format!(
                "The size of the handshake message ({body}) exceeds the maximum allowed size (32768)"
            )
        }
    );
    let go = verdict(&report, "go");
    assert!(go.fails, "{:?}", go.outcome);
    assert!(
        matches!(go.outcome, Outcome::Withholds { .. }),
        "{:?}",
        go.outcome
    );
    assert_eq!(report.exit_code, 1);
}

/// Runs `umlab probe ARGS`.
fn umlab(args: &[&str]) -> common::Run {
    common::run(
        Command::new(env!("CARGO_BIN_EXE_umlab"))
            .arg("probe")
            .args(args),
        DEADLINE,
    )
}

/// The case: the incident's Hub (355 roots, Schannel policy), the
/// enterprise CA given with --issuer: the list just under 16 KB with the
/// warning, the issuer not listed, the Schannel, Java and Go clients failing
/// and a lenient one passing; exit 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_incident_hub_from_the_command_line() {
    let (store, ca) = common::store_with(354, Profile::Realistic);
    let lab = common::start_server(store, ca, |_| {})
        .await
        .expect("lab-server");
    let dir = tempfile::tempdir().expect("temp dir");
    pki().save(dir.path()).expect("PKI files");
    let ca_pem = dir.path().join("ca.pem");
    let addr = lab.addr().to_string();
    let list = lab.server.report().list_bytes;
    let run = tokio::task::spawn_blocking(move || {
        umlab(&[
            &addr,
            "--starttls",
            "smtp",
            "--issuer",
            ca_pem.to_str().expect("path"),
        ])
    })
    .await
    .expect("run");
    assert_eq!(run.code, Some(1), "{}", run.dump());
    let out = &run.stdout;
    let shown = umlab::probe::report::thousands(list);
    assert!(
        out.contains(&format!("{shown} bytes of names")),
        "{}",
        run.dump()
    );
    assert!(out.contains("WARNING: the list is"), "{out}");
    assert!(out.contains("mark of Schannel truncation"), "{out}");
    assert!(out.contains("umlab Enterprise Root CA"), "{out}");
    assert!(out.contains("NOT LISTED"), "{out}");
    for failing in ["schannel-2008r2", "java17", "go"] {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{failing} ")))
            .unwrap_or_else(|| panic!("no line for {failing}:\n{out}"));
        assert!(line.contains("FAILS"), "{line}");
        let verified = um_sim::presets::find(failing).is_some_and(|p| p.is_verified());
        assert_eq!(line.contains("not verified here"), !verified, "{line}");
    }
    let lenient = out
        .lines()
        .find(|l| l.trim_start().starts_with("lenient "))
        .expect("lenient line");
    assert!(lenient.contains("delivers") && !lenient.contains("FAILS"));
    // The same as JSON.
    let addr = lab.addr().to_string();
    let run = tokio::task::spawn_blocking(move || {
        umlab(&[&addr, "--starttls", "smtp", "--json", "--client", "lenient"])
    })
    .await
    .expect("run");
    assert_eq!(run.code, Some(0), "{}", run.dump());
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(json["request"]["list_bytes"], list);
    assert_eq!(json["verdicts"][0]["preset"], "lenient");
    assert_eq!(json["exit_code"], 0);
}

/// A CA file whose names are exactly `total` bytes in TLS 1.2 (2 + DER
/// each): roots of 1,000-byte names and one filler.
fn ca_file(total: usize, dir: &Path) -> (std::path::PathBuf, Vec<Vec<u8>>) {
    let spec = |count, len, seed| RootsSpec {
        count,
        seed: Some(seed),
        profile: Profile::Fixed(len),
        key: KeyAlg::Ed25519,
        dn_only: true,
    };
    let big = 1_000;
    let count = (total - 300) / (big + 2);
    let filler = total - count * (big + 2) - 2;
    let (store, _) = certgen::roots::generate(&spec(count as u64, big, 7), &|_| {}).expect("roots");
    let (extra, _) = certgen::roots::generate(&spec(1, filler, 8), &|_| {}).expect("filler");
    let roots: Vec<certgen::Root> = store
        .into_roots()
        .into_iter()
        .chain(extra.into_roots())
        .collect();
    let store = Store::from_roots(roots);
    assert_eq!(store.ca_list_bytes(), total, "the CA file's size");
    let path = dir.join(format!("ca-{total}.pem"));
    let pem: String = store.roots().iter().map(|r| r.to_pem()).collect();
    std::fs::write(&path, pem).expect("CA file");
    let names = store
        .roots()
        .iter()
        .map(|r| r.subject_der().to_vec())
        .collect();
    (path, names)
}

/// Whether `tool` runs; outside CI a missing tool skips with a reason.
fn have(tool: &str, args: &[&str]) -> bool {
    let ok = Command::new(tool)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is required under CI"
        );
        eprintln!("skipped: {tool} is not installed");
    }
    ok
}

/// A free loopback port (bound, then released for the tool to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_server_at_16k_32k_and_64k_of_names() {
    if !have("openssl", &["version"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    pki().save(dir.path()).expect("PKI files");
    for total in [16_384, 32_720, 65_535] {
        let (ca, names) = ca_file(total, dir.path());
        let port = free_port();
        let mut server = common::start(
            Command::new("openssl")
                .args(["s_server", "-tls1_2", "-Verify", "1", "-quiet"])
                .arg("-accept")
                .arg(format!("127.0.0.1:{port}"))
                .arg("-CAfile")
                .arg(&ca)
                .arg("-cert")
                .arg(dir.path().join("hub.pem"))
                .arg("-key")
                .arg(dir.path().join("hub.key")),
        );
        let addr = format!("127.0.0.1:{port}");
        let started = Instant::now();
        while TcpStream::connect(&addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "s_server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut req = request(&addr, Starttls::None);
        req.issuers = vec![("CA file".into(), names[0].clone())];
        let report = probe::probe(&req).await;
        server.kill();
        let report = report.unwrap_or_else(|e| panic!("{total}: {e}"));
        assert_eq!(report.request.list_bytes, total);
        assert_eq!(
            report_names(&report),
            names_of(&names),
            "{total}: names and order"
        );
        let body = report.request.body_bytes.expect("body");
        let r = &report.request;
        assert_eq!(
            body,
            1 + r.certificate_types.len() + 2 + 2 * r.signature_schemes.len() + 2 + total
        );
        eprintln!(
            "openssl s_server, {total} bytes of names: body {body}, {} types, {} schemes, records {:?}; \
             the probe's handshake: {:?}",
            r.certificate_types.len(),
            r.signature_schemes.len(),
            r.records
                .as_ref()
                .map(|v| v.iter().map(|s| s.record_bytes).collect::<Vec<_>>()),
            report.handshake.answer
        );
        let records = r.records.as_ref().expect("records");
        assert_eq!(
            records.iter().map(|s| s.request_bytes).sum::<usize>(),
            body + 4
        );
        // 16,384 is a list Schannel's cap lets through whole: the mark; the
        // others are past the cap.
        assert_eq!(r.schannel_truncation.is_some(), total == 16_384, "{total}");
        let java = report
            .verdicts
            .iter()
            .find(|v| v.preset == "java17")
            .expect("java17");
        assert_eq!(java.fails, body > 32_768, "{total}: {:?}", java.outcome);
        let go = report
            .verdicts
            .iter()
            .find(|v| v.preset == "go")
            .expect("go");
        assert_eq!(go.fails, body > 65_536, "{total}: {:?}", go.outcome);
        if total == 65_535 {
            // The probe's own rustls refuses a body over 65,535 bytes; the
            // request was read below it all the same.
            assert!(
                matches!(report.handshake.answer, ServerAnswer::Unknown(_)),
                "{:?}",
                report.handshake
            );
        }
    }
}

/// Starts `openssl s_server -tls1_3 -Verify 1 -CAfile CA` (plus `extra`)
/// with the lab's Hub identity from `dir`; returns it and its address.
fn s_server_tls13(dir: &Path, ca: &Path, extra: &[&str]) -> (common::Running, String) {
    let port = free_port();
    let server = common::start(
        Command::new("openssl")
            .args(["s_server", "-tls1_3", "-Verify", "1", "-quiet"])
            .args(extra)
            .arg("-accept")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-CAfile")
            .arg(ca)
            .arg("-cert")
            .arg(dir.join("hub.pem"))
            .arg("-key")
            .arg(dir.join("hub.key")),
    );
    let addr = format!("127.0.0.1:{port}");
    let started = Instant::now();
    while TcpStream::connect(&addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "s_server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, addr)
}

/// A server that answers the probe's X25519 key share with a
/// HelloRetryRequest (`-groups P-256`): the probe does not follow a second
/// ServerHello, so it falls back to the names rustls hands its resolver and
/// says why; the sizes are a lower bound and record rules are unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_server_tls13_hello_retry_falls_back() {
    if !have("openssl", &["version"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    pki().save(dir.path()).expect("PKI files");
    let (ca, names) = ca_file(20_000, dir.path());
    let (mut server, addr) = s_server_tls13(dir.path(), &ca, &["-groups", "P-256"]);
    let mut req = request(&addr, Starttls::None);
    req.tls = TlsChoice::Tls13;
    let report = probe::probe(&req).await;
    server.kill();
    let report = report.expect("probe");
    let r = &report.request;
    assert_eq!(r.layer, Layer::Resolver);
    assert!(
        r.unobserved
            .as_deref()
            .is_some_and(|u| u.contains("HelloRetryRequest")),
        "{:?}",
        r.unobserved
    );
    assert_eq!(report_names(&report), names_of(&names));
    assert_eq!(r.body_bytes, None);
    let least = r.body_bytes_at_least.expect("a lower bound");
    assert!(least > 20_000 && least <= 20_000 + 47, "{least}");
    assert!(matches!(
        verdict(&report, "mbedtls-3.6.2").outcome,
        Outcome::Unknown { .. }
    ));
}

/// `openssl s_server -tls1_3 -Verify 1 -CAfile` with N roots of 1,000-byte
/// names: the decrypted request holds the N names in file order, and its
/// body is the names plus OpenSSL's TLS 1.3 overhead (context, extensions
/// block, signature_algorithms, certificate_authorities' headers), the same
/// at every size; java17 fails past 32,768 and go past 65,536, on the exact
/// body. At 65,491 bytes of names (OpenSSL's TLS 1.3 limit, DESIGN.md 2b)
/// the probe's own rustls gives up, and the request is read all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_server_tls13_decrypted() {
    if !have("openssl", &["version"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    pki().save(dir.path()).expect("PKI files");
    let mut overheads = Vec::new();
    for total in [16_384, 40_000, 65_491] {
        let (ca, names) = ca_file(total, dir.path());
        let (mut server, addr) = s_server_tls13(dir.path(), &ca, &[]);
        let mut req = request(&addr, Starttls::None);
        req.tls = TlsChoice::Tls13;
        req.issuers = vec![("CA file".into(), names[0].clone())];
        let report = probe::probe(&req).await;
        server.kill();
        let report = report.unwrap_or_else(|e| panic!("{total}: {e}"));
        assert_eq!(report.tls_version, "TLSv1_3");
        let r = &report.request;
        assert_eq!(r.layer, Layer::Decrypted, "{total}: {:?}", r.unobserved);
        assert_eq!(r.names.len(), names.len(), "{total}: N names");
        assert_eq!(
            report_names(&report),
            names_of(&names),
            "{total}: names and order"
        );
        assert_eq!(r.list_bytes, total);
        let body = r.body_bytes.expect("body");
        let overhead = body - total;
        let exts: usize = r.extensions.iter().map(|e| e.bytes).sum();
        assert_eq!(1 + 2 + exts, body, "{total}: every byte accounted for");
        let ca_ext = r
            .extensions
            .iter()
            .find(|e| e.name == "certificate_authorities")
            .map(|e| e.bytes);
        assert_eq!(ca_ext, Some(4 + 2 + total), "{total}");
        let records = r.records.as_ref().expect("records");
        assert_eq!(
            records.iter().map(|s| s.request_bytes).sum::<usize>(),
            body + 4
        );
        eprintln!(
            "openssl s_server -tls1_3, {total} bytes of names: body {body} (overhead {overhead}), \
             {} schemes, extensions {:?}, protected records {:?}; the probe's handshake: {:?}",
            r.signature_schemes.len(),
            r.extensions
                .iter()
                .map(|e| (e.name.as_str(), e.bytes))
                .collect::<Vec<_>>(),
            records.iter().map(|s| s.record_bytes).collect::<Vec<_>>(),
            report.handshake.answer
        );
        overheads.push(overhead);
        // wolfSSL is proven here over TLS 1.2 only: its TLS 1.3 verdict is
        // not; Java's TLS 1.3 limit was measured.
        assert!(!verdict(&report, "wolfssl5").verified);
        assert!(verdict(&report, "java17").verified);
        let java = verdict(&report, "java17");
        assert_eq!(java.fails, body > 32_768, "{total}: {:?}", java.outcome);
        let go = verdict(&report, "go");
        assert_eq!(go.fails, body > 65_536, "{total}: {:?}", go.outcome);
        for v in [java, go] {
            assert!(
                !matches!(v.outcome, Outcome::Unknown { .. }),
                "{total}: {} {:?}",
                v.preset,
                v.outcome
            );
            if v.fails {
                assert!(
                    matches!(
                        v.outcome,
                        Outcome::Fails {
                            rule: Some(um_sim::profile::Rule::MaxBody(_)),
                            ..
                        }
                    ),
                    "{:?}",
                    v.outcome
                );
            }
        }
    }
    // OpenSSL's TLS 1.3 overhead does not depend on the list.
    assert!(overheads.windows(2).all(|w| w[0] == w[1]), "{overheads:?}");
}

/// A one-connection server on 127.0.0.1 that runs `serve` on the
/// connection; returns its address and what it read, once done.
fn fake(serve: impl FnOnce(&mut TcpStream) + Send + 'static) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let handle = std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            serve(&mut s);
        }
    });
    (addr, handle)
}

/// Reads what the client sent (its ClientHello), up to 4 KB.
fn read_some(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    buf.truncate(n);
    buf
}

/// Reads and drops whatever comes until the client closes (or 10 s pass).
fn until_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
}

/// A ServerHello record (TLS 1.2, ECDHE-ECDSA-AES128-GCM).
fn server_hello_record() -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[9; 32]);
    body.extend_from_slice(&[0, 0xc0, 0x2b, 0, 0, 0]);
    let mut msg = vec![2, 0, 0, body.len() as u8];
    msg.extend_from_slice(&body);
    let mut wire = Vec::new();
    RecordHeader::write(&mut wire, 22, [3, 3], msg.len());
    wire.extend_from_slice(&msg);
    wire
}

/// `umlab probe` against a bad peer: exit 2, one line on stderr naming
/// `expect`, within `within`.
fn bad_peer(addr: &str, args: &[&str], expect: &str, within: Duration) {
    let mut all = vec![addr];
    all.extend_from_slice(args);
    let run = umlab(&all);
    assert_eq!(run.code, Some(2), "{}", run.dump());
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.dump());
    assert!(run.stderr.starts_with("umlab: error: "), "{}", run.dump());
    assert!(
        run.stderr.contains(expect),
        "want {expect:?}: {}",
        run.dump()
    );
    assert!(run.stdout.is_empty(), "{}", run.dump());
    assert!(run.elapsed < within, "{}", run.dump());
}

#[test]
fn garbage_instead_of_tls() {
    let (addr, h) = fake(|s| {
        read_some(s);
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    bad_peer(
        &addr,
        &["--starttls", "none", "--timeout", "5"],
        "is not a TLS handshake",
        DEADLINE,
    );
    let _ = h.join();
}

#[test]
fn a_huge_record() {
    let (addr, h) = fake(|s| {
        read_some(s);
        let mut wire = vec![22, 3, 3, 0xff, 0xff];
        wire.extend_from_slice(&[0; 1000]);
        let _ = s.write_all(&wire);
        until_closed(s);
    });
    bad_peer(
        &addr,
        &["--starttls", "none", "--timeout", "5"],
        "record length: 65535 bytes claimed",
        DEADLINE,
    );
    let _ = h.join();
}

#[test]
fn a_flight_cut_short() {
    let (addr, h) = fake(|s| {
        read_some(s);
        let mut wire = server_hello_record();
        // A CertificateRequest claiming 20,000 bytes, of which one record comes.
        let mut part = vec![13, 0x00, 0x4e, 0x20];
        part.resize(16_384, 0x30);
        RecordHeader::write(&mut wire, 22, [3, 3], part.len());
        wire.extend_from_slice(&part);
        let _ = s.write_all(&wire);
    });
    bad_peer(
        &addr,
        &["--starttls", "none", "--timeout", "5"],
        "stopped inside its CertificateRequest (16384 of 20004 bytes, 1 record(s))",
        DEADLINE,
    );
    let _ = h.join();
}

#[test]
fn a_server_that_never_answers() {
    for (dialogue, expect) in [
        ("smtp", "SMTP greeting: no answer within 1 s"),
        (
            "none",
            "no TLS answer from the server: no progress within 1 s",
        ),
    ] {
        let (addr, h) = fake(|s| {
            read_some(s);
            until_closed(s);
        });
        bad_peer(
            &addr,
            &["--starttls", dialogue, "--timeout", "1"],
            expect,
            Duration::from_secs(3),
        );
        let _ = h.join();
    }
}

/// A TLS 1.3 ServerHello (its key share not a real one) followed by
/// protected records of noise: no secret can be had, so nothing is
/// decrypted; one line, exit 2, no hang.
#[test]
fn a_tls13_server_hello_then_noise() {
    let (addr, h) = fake(|s| {
        read_some(s);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[9; 32]);
        body.extend_from_slice(&[0, 0x13, 0x01, 0]);
        let exts = [0, 43, 0, 2, 3, 4, 0, 51, 0, 36, 0, 29, 0, 32];
        let mut ext_block = exts.to_vec();
        ext_block.extend_from_slice(&[5; 32]);
        body.extend_from_slice(&(ext_block.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext_block);
        let mut msg = vec![2, 0, 0, body.len() as u8];
        msg.extend_from_slice(&body);
        let mut wire = Vec::new();
        RecordHeader::write(&mut wire, 22, [3, 3], msg.len());
        wire.extend_from_slice(&msg);
        RecordHeader::write(&mut wire, 23, [3, 3], 500);
        wire.extend_from_slice(&[0xab; 500]);
        let _ = s.write_all(&wire);
        until_closed(s);
    });
    bad_peer(
        &addr,
        &["--starttls", "none", "--tls", "1.3", "--timeout", "5"],
        "TLS 1.3 records not decrypted",
        Duration::from_secs(8),
    );
    let _ = h.join();
}

#[test]
fn nobody_listening() {
    let port = free_port();
    bad_peer(
        &format!("127.0.0.1:{port}"),
        &["--timeout", "2"],
        "cannot connect",
        DEADLINE,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_asks_no_certificate() {
    let (store, ca) = common::store_with(10, Profile::Realistic);
    let lab = common::start_server(store, ca, |s| s.client_auth = ClientAuth::None)
        .await
        .expect("lab-server");
    let addr = lab.addr().to_string();
    tokio::task::spawn_blocking(move || {
        bad_peer(
            &addr,
            &["--starttls", "smtp", "--timeout", "5"],
            "no CertificateRequest",
            DEADLINE,
        )
    })
    .await
    .expect("run");
}

/// IMAP, POP3 and LDAP servers that run their dialogue, then answer the
/// ClientHello with garbage: the probe's error is about TLS, so the dialogue
/// passed; and what the server read is the dialogue's exact bytes.
#[test]
fn starttls_dialogues_reach_tls() {
    type Serve = fn(&mut TcpStream) -> Vec<u8>;
    let imap: Serve = |s| {
        let _ = s.write_all(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n");
        let got = read_some(s);
        let _ = s.write_all(b"* some untagged line\r\nP1 OK Begin TLS negotiation now\r\n");
        got
    };
    let pop3: Serve = |s| {
        let _ = s.write_all(b"+OK POP3 ready\r\n");
        let got = read_some(s);
        let _ = s.write_all(b"+OK Begin TLS\r\n");
        got
    };
    let ldap: Serve = |s| {
        let mut got = vec![0u8; 31];
        let _ = s.read_exact(&mut got);
        let mut name = Vec::new();
        umlab::probe::ldap::write_tlv(&mut name, 0x8a, umlab::probe::ldap::STARTTLS_OID.as_bytes());
        let mut op = vec![0x0a, 1, 0, 0x04, 0, 0x04, 0];
        op.extend_from_slice(&name);
        let mut resp = Vec::new();
        umlab::probe::ldap::write_tlv(&mut resp, 0x78, &op);
        let mut msg = vec![0x02, 1, 1];
        msg.extend_from_slice(&resp);
        let mut wire = Vec::new();
        umlab::probe::ldap::write_tlv(&mut wire, 0x30, &msg);
        let _ = s.write_all(&wire);
        got
    };
    let cases: [(&str, Serve, Vec<u8>); 3] = [
        ("imap", imap, b"P1 STARTTLS\r\n".to_vec()),
        ("pop3", pop3, b"STLS\r\n".to_vec()),
        ("ldap", ldap, umlab::probe::ldap::starttls_request(1)),
    ];
    for (dialogue, serve, want) in cases {
        let (tx, rx) = std::sync::mpsc::channel();
        let (addr, h) = fake(move |s| {
            let got = serve(s);
            let _ = tx.send(got);
            read_some(s);
            let _ = s.write_all(b"garbage, not TLS\r\n");
        });
        bad_peer(
            &addr,
            &["--starttls", dialogue, "--timeout", "5"],
            "is not a TLS handshake",
            DEADLINE,
        );
        assert_eq!(rx.recv().expect("what the server read"), want, "{dialogue}");
        let _ = h.join();
    }
}

#[test]
fn starttls_refusals_are_one_line() {
    let (addr, h) = fake(|s| {
        let _ = s.write_all(b"220 mx ESMTP\r\n");
        read_some(s);
        let _ = s.write_all(b"250-mx\r\n250 PIPELINING\r\n");
        read_some(s);
    });
    bad_peer(
        &addr,
        &["--starttls", "smtp", "--timeout", "5"],
        "does not offer STARTTLS",
        DEADLINE,
    );
    let _ = h.join();
    let (addr, h) = fake(|s| {
        let mut got = vec![0u8; 31];
        let _ = s.read_exact(&mut got);
        let mut op = vec![0x0a, 1, 2, 0x04, 0, 0x04, 9];
        op.extend_from_slice(b"no TLS!!!");
        let mut resp = Vec::new();
        umlab::probe::ldap::write_tlv(&mut resp, 0x78, &op);
        let mut msg = vec![0x02, 1, 1];
        msg.extend_from_slice(&resp);
        let mut wire = Vec::new();
        umlab::probe::ldap::write_tlv(&mut wire, 0x30, &msg);
        let _ = s.write_all(&wire);
    });
    bad_peer(
        &addr,
        &["--starttls", "ldap", "--timeout", "5"],
        "LDAP StartTLS refused: resultCode 2 (no TLS!!!)",
        DEADLINE,
    );
    let _ = h.join();
}

/// Real Postfix 3.7 with STARTTLS, `smtpd_tls_req_ccert` and the incident's
/// 355 roots as its CA file: OpenSSL advertises the whole file in order, so
/// the report must hold every name with OpenSSL's 48 bytes around them, and
/// each preset's verdict must be what um-sim measures against that Postfix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_postfix_with_starttls() {
    if !postfix::usable() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    pki().save(dir.path()).expect("PKI files");
    let (store, _) = common::store_with(354, Profile::Realistic);
    let cafile = dir.path().join("cafile.pem");
    let pem: String = store.roots().iter().map(|r| r.to_pem()).collect();
    std::fs::write(&cafile, pem).expect("CA file");
    let pf = postfix::start(
        &dir.path().join("hub.pem"),
        &dir.path().join("hub.key"),
        &cafile,
    );
    let addr = format!("127.0.0.1:{}", pf.port);
    let mut req = request(&addr, Starttls::Smtp);
    req.identity = Some(common::um_identity(pki()));
    let report = probe::probe(&req).await.expect("probe");

    let names: Vec<Vec<u8>> = store
        .roots()
        .iter()
        .map(|r| r.subject_der().to_vec())
        .collect();
    assert_eq!(
        report_names(&report),
        names_of(&names),
        "the CA file, in order"
    );
    assert_eq!(report.request.list_bytes, store.ca_list_bytes());
    let r = &report.request;
    assert_eq!(r.layer, Layer::Wire);
    assert_eq!(
        (r.certificate_types.len(), r.signature_schemes.len()),
        (3, 20)
    );
    let body = r.body_bytes.expect("body on the wire");
    assert_eq!(body, store.ca_list_bytes() + 48, "OpenSSL: names + 48");
    let records = r.records.as_ref().expect("records");
    assert_eq!(
        records.iter().map(|s| s.request_bytes).sum::<usize>(),
        body + 4
    );
    assert_eq!(records.len(), (body + 4).div_ceil(16_384));
    assert_eq!(report.issuers.first().and_then(|i| i.listed_at), Some(355));
    assert_eq!(report.handshake.answer, ServerAnswer::Accepted);

    for v in &report.verdicts {
        if let Outcome::Unknown { why } = &v.outcome {
            // Probed over TLS 1.2: a stack without it (erlang-tls13) is unknown.
            let offers12 = v
                .preset
                .parse::<um_sim::profile::Profile>()
                .is_ok_and(|p| p.versions().contains(&um_sim::presets::Version::Tls12));
            assert!(!offers12, "{}: {why}", v.preset);
            continue;
        }
        let settings = common::submit_settings(&addr, &v.preset, 1);
        let attempt = common::submit_one_with(settings, dir.path()).await;
        assert!(
            agrees(&v.outcome, &attempt),
            "{} judged {:?}, um-sim measured {:?} ({:?}) over {:?}",
            v.preset,
            v.outcome,
            attempt.failure,
            attempt.error,
            attempt.tls_version
        );
        assert_eq!(v.fails, !attempt.delivered, "{}", v.preset);
    }
    let java = report
        .verdicts
        .iter()
        .find(|v| v.preset == "java17")
        .expect("java17");
    assert!(java.fails, "a 34 KB request breaks Java's 32,768");
    let go = report
        .verdicts
        .iter()
        .find(|v| v.preset == "go")
        .expect("go");
    assert!(!go.fails);
    drop(pf);
}
