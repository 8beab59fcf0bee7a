//! Stack presets over real TCP: um-sim's client against the test Hub
//! (`common`) advertising a list large enough to break a preset's limit.
//! The attempt and its UM event quote what the modeled stack prints, and the
//! Hub receives the alert that stack sends (or none).

mod common;

use std::path::Path;

use certgen::pki::generate;
use certgen::synth::{self, Profile as Subjects};
use certgen::{KeyAlg, Name};
use common::{TLS12, TLS13, attempt, subject};
use um_sim::client::FailureClass;
use um_sim::events;
use um_sim::presets::Version;
use um_sim::profile::Rule;

/// `n` names of 100 bytes of DER, and the lab CA's last.
fn names(n: u64, ca: &[u8]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = synth::subjects(5, Subjects::Fixed(100), 0, n)
        .iter()
        .map(Name::to_der)
        .collect();
    v.push(ca.to_vec());
    v
}

/// Body bytes of the Hub's CertificateRequest, as um-sim's tap read it.
fn body_of(a: &um_sim::client::Attempt) -> usize {
    a.certificate_request
        .as_ref()
        .expect("request seen")
        .body_bytes
}

#[tokio::test]
async fn a_broken_limit_quotes_the_stack_and_sends_its_alert() {
    let pki = generate(Some(31), KeyAlg::EcdsaP256).expect("PKI");
    let anchors = [pki.ca.cert_der.as_slice()];
    // 340 names: about 34,700 bytes of names, past 32,768 and 18,462.
    let big = names(340, &subject(&pki.ca.cert_der));
    for (profile, rule, alert) in [
        ("java17", Rule::MaxBody(32_768), Some("UnexpectedMessage")),
        ("schannel", Rule::MaxBody(32_768), None),
        ("wolfssl5", Rule::MaxBody(18_462), None),
        ("mbedtls-3.6.3", Rule::MaxBuffer(16_752), None),
        ("mbedtls-3.6.2", Rule::OneRecord, None),
    ] {
        let (a, saw) = attempt(&pki, profile, &anchors, &big, TLS12).await;
        assert_eq!(
            a.failure,
            Some(FailureClass::ProfileRule),
            "{profile}: {a:#?}"
        );
        assert_eq!(a.rule, Some(rule), "{profile}");
        let p: um_sim::profile::Profile = profile.parse().expect("profile");
        let want = p.prints(rule, body_of(&a)).expect("the stack's text");
        assert_eq!(a.stack_error.as_deref(), Some(want.as_str()), "{profile}");
        let error = a.error.clone().unwrap_or_default();
        assert!(error.contains(&want), "{profile}: {error}");
        // The UM event quotes it too.
        let ev = events::for_attempt(Path::new("q/x.txt"), "hub", &a).expect("an event");
        assert_eq!(ev.id, 1423);
        assert!(ev.text.contains(&want), "{profile}: {}", ev.text);
        // The Hub saw the stack's alert, or none.
        let server_error = saw.handshake.expect_err("the handshake failed");
        match alert {
            Some(name) => assert!(server_error.contains(name), "{profile}: {server_error}"),
            None => assert!(!server_error.contains("alert"), "{profile}: {server_error}"),
        }
    }
    // TLS 1.3: the tap decrypts the request, judges it the same way, and
    // the alert goes out protected under the client handshake key: the Hub
    // decrypts it.
    // (Go's TLS 1.3 limit: tests/clients, go-tls13::over.)
    let (a, saw) = attempt(&pki, "java17", &anchors, &big, TLS13).await;
    let seen = a.certificate_request.clone().expect("the request seen");
    assert_eq!(a.rule, Some(Rule::MaxBody(32_768)), "TLS 1.3: {a:#?}");
    assert!(
        seen.encrypted && !seen.complete && seen.body_bytes > 32_768,
        "{seen:?}"
    );
    let server_error = saw.handshake.expect_err("the handshake failed");
    assert!(server_error.contains("UnexpectedMessage"), "{server_error}");
    // Java's text carries the body length and the limit.
    let (a, _) = attempt(&pki, "java17", &anchors, &big, TLS12).await;
    let body = body_of(&a);
    assert!(body > 32_768);
    assert_eq!(
        a.stack_error.as_deref(),
        Some(format!(
            "The size of the handshake message ({body}) exceeds the maximum allowed size (32768)"
        ))
        .as_deref()
    );
}

#[tokio::test]
async fn below_the_limits_every_preset_delivers_or_withholds_as_its_row_says() {
    let pki = generate(Some(32), KeyAlg::EcdsaP256).expect("PKI");
    let anchors = [pki.ca.cert_der.as_slice()];
    // 150 names (about 15,300 bytes): within every limit, in one record.
    let listed = names(150, &subject(&pki.ca.cert_der));
    let unlisted = names(150, &subject(&pki.hub.cert_der));
    // Each preset against a Hub of each TLS version its stack offers.
    let runs = um_sim::presets::PRESETS.iter().flat_map(|p| {
        p.versions.iter().map(move |v| match v {
            Version::Tls12 => (p, TLS12),
            Version::Tls13 => (p, TLS13),
        })
    });
    for (preset, version) in runs {
        let (a, _) = attempt(&pki, preset.name, &anchors, &listed, version).await;
        assert!(a.delivered, "{} {version:?}: {a:#?}", preset.name);
        assert!(a.stack_error.is_none());
        let seen = a.certificate_request.as_ref().expect("the request seen");
        assert_eq!(seen.encrypted, *version == *TLS13, "{}", preset.name);
        assert_eq!(seen.ca_name_count, listed.len(), "{}", preset.name);
        let (a, _) = attempt(&pki, preset.name, &anchors, &unlisted, version).await;
        let sent = a.certificate.as_ref().is_some_and(|d| d.certificate_sent);
        match preset.unlisted {
            // Sent anyway, and the Hub, which verifies against its whole
            // store, accepts it.
            um_sim::presets::Unlisted::Sends => {
                assert!(sent && a.delivered, "{}: {a:#?}", preset.name)
            }
            um_sim::presets::Unlisted::Withholds => {
                assert!(!sent, "{}", preset.name);
                assert_eq!(
                    a.failure,
                    Some(FailureClass::NoAcceptableCertificate),
                    "{}",
                    preset.name
                );
            }
        }
    }
}
