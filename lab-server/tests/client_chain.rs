//! The client's chain in the connection event when the server refuses it:
//! rustls reports no peer certificates after a failed handshake, so the
//! chain comes from the client's TLS 1.2 Certificate message read off the
//! wire, judged against the list that connection got. Real rustls clients
//! over TCP against the in-process server: the Schannel 2012 persona with
//! ClientAuthTrustMode 2 (the UM's issuer not among the Client Authentication
//! Issuers; a chain with the issuer's name but another key), an untrusted
//! two-tier chain under required client authentication, a client that
//! withholds its certificate (`empty`) against one whose handshake ended
//! before its Certificate (`none`), and TLS 1.3 (`encrypted`).

mod common;

use std::sync::Arc;

use certgen::pki::{LabPki, Shape, generate_shape};
use certgen::{KeyAlg, Store};
use common::{Lab, Smtp, client_presenting, start_with};
use lab_server::events::ConnectionEvent;
use lab_server::persona::{PersonaName, TrustMode};
use lab_server::policy::TlsVersion;

/// A chain as (subject, issuer, issuer listed, itself listed).
type Chain = Vec<(String, String, bool, bool)>;

fn chain_of(ev: &ConnectionEvent) -> Chain {
    ev.client_chain
        .iter()
        .map(|c| {
            assert_eq!(c.error, None, "{c:?}");
            (
                c.subject.clone(),
                c.issuer.clone(),
                c.issuer_listed,
                c.listed,
            )
        })
        .collect()
}

/// `lab`'s UM chain read from its certificates, each with whether its issuer
/// was listed as given (no certificate of a UM chain is itself listed here).
fn expected(lab: &LabPki, issuer_listed: &[bool]) -> Chain {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let chain = lab.um_chain();
    assert_eq!(chain.len(), issuer_listed.len());
    chain
        .into_iter()
        .zip(issuer_listed)
        .map(|(der, &listed)| {
            let (_, c) = X509Certificate::from_der(der).expect("a certificate");
            (
                c.subject().to_string(),
                c.issuer().to_string(),
                listed,
                false,
            )
        })
        .collect()
}

/// A PKI with the lab's names but its own keys (another seed): its UM's
/// issuer has the lab CA's name, so it is listed, yet nothing the server
/// trusts signed it.
fn foreign(shape: Shape) -> LabPki {
    generate_shape(Some(common::PKI_SEED + 1), KeyAlg::EcdsaP256, shape).expect("foreign PKI")
}

/// The UM chain of `lab` and its key, for [`client_presenting`].
fn um_of(lab: &LabPki) -> Option<(Vec<Vec<u8>>, Vec<u8>)> {
    let chain = lab.um_chain().into_iter().map(<[u8]>::to_vec).collect();
    Some((chain, lab.um.key.pkcs8_der().expect("UM key").to_vec()))
}

/// EHLO, STARTTLS and a handshake with `config`, whatever its outcome; then
/// the server's event for this connection.
async fn handshake(lab: &mut Lab, config: Arc<rustls::ClientConfig>) -> ConnectionEvent {
    let mut s = Smtp::greeted(lab.addr()).await;
    assert_eq!(s.cmd("EHLO um.lab.test").await.code, 250);
    assert_eq!(s.cmd("STARTTLS").await.code, 220);
    let local = s.local;
    let tcp = s.into_tcp();
    let connect = tokio_rustls::TlsConnector::from(config).connect(common::hub_name(), tcp);
    if let Ok(Ok(mut tls)) = tokio::time::timeout(common::IO_TIMEOUT, connect).await {
        // The session ends when the server refuses (TLS 1.3: after the
        // client's Finished) or once it reads QUIT.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = tls.write_all(b"QUIT\r\n").await;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(common::IO_TIMEOUT, tls.read_to_end(&mut rest)).await;
    }
    lab.event_for(local).await
}

fn outcome(ev: &ConnectionEvent) -> Option<&'static str> {
    ev.handshake.as_ref().map(|h| h.outcome)
}

/// Schannel 2012, ClientAuthTrustMode 2 with this Client Authentication
/// Issuers store; the Root store (30 synthetic roots) lacks the lab CA.
async fn schannel_2012_mode_2(issuers: Store) -> Lab {
    let (roots, _) = common::store(30);
    let without_ca = Store::from_roots(roots.roots()[..30].to_vec());
    start_with(without_ca, 0, |s| {
        s.use_persona(PersonaName::Schannel2012);
        s.advertise(true);
        s.issuers = Some(issuers);
        s.trust_mode = TrustMode::ExclusiveCa;
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_chain_is_read_off_the_wire_as_a_completed_one_is() {
    let tls12 = [&rustls::version::TLS12];
    let pki = common::pki();
    let ca = pki.ca.root().expect("CA");
    let mut lab = schannel_2012_mode_2(Store::from_roots(vec![ca])).await;
    assert_eq!(lab.server.report().kept, 1, "the issuers store is listed");

    // Accepted: rustls's chain, and the wire's agreeing with it (no note).
    let ok = handshake(&mut lab, client_presenting(um_of(pki), &tls12)).await;
    assert_eq!(outcome(&ok), Some("ok"), "{ok:#?}");
    assert_eq!(chain_of(&ok), expected(pki, &[true]));
    assert_eq!(ok.client_certificate_message, Some("sent"));
    assert_eq!(ok.client_chain_note, None, "the wire agrees with rustls");

    // Refused: a UM certificate with the listed issuer's name and another
    // key. The same judgement, now read off the wire.
    let other = &foreign(Shape::OneTier);
    let refused = handshake(&mut lab, client_presenting(um_of(other), &tls12)).await;
    assert_eq!(outcome(&refused), Some("failed"), "{refused:#?}");
    assert_eq!(chain_of(&refused), chain_of(&ok), "same names, same flags");
    assert_eq!(chain_of(&refused), expected(other, &[true]));
    assert_eq!(refused.client_certificate_message, Some("sent"));
    assert!(
        refused
            .client_chain_note
            .as_deref()
            .is_some_and(|n| n.contains("read off the wire")),
        "{:?}",
        refused.client_chain_note
    );
    assert_eq!(
        refused.client_certificate.as_ref().map(|c| &c.subject),
        Some(&refused.client_chain[0].subject)
    );

    // A two-tier chain: the issuing CA's issuer (the root's name) is listed,
    // the leaf's issuer (the issuing CA) is not.
    let two_tier = &foreign(Shape::TwoTier);
    let ev = handshake(&mut lab, client_presenting(um_of(two_tier), &tls12)).await;
    assert_eq!(outcome(&ev), Some("failed"), "{ev:#?}");
    assert_eq!(chain_of(&ev), expected(two_tier, &[false, true]));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ums_issuer_not_among_the_client_auth_issuers() {
    // The issuers store holds another CA: the UM's issuer is not listed, and
    // a client that sends its certificate anyway is refused.
    let (roots, _) = common::store(3);
    let other_ca = roots.roots()[0].clone();
    let mut lab = schannel_2012_mode_2(Store::from_roots(vec![other_ca])).await;
    let ev = handshake(
        &mut lab,
        client_presenting(um_of(common::pki()), &[&rustls::version::TLS12]),
    )
    .await;
    assert_eq!(outcome(&ev), Some("failed"), "{ev:#?}");
    assert_eq!(ev.certificate_request.as_ref().map(|c| c.ca_names), Some(1));
    assert_eq!(chain_of(&ev), expected(common::pki(), &[false]));
    assert_eq!(ev.client_certificate_message, Some("sent"));
    assert!(ev.handshake.and_then(|h| h.alert).is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn withheld_is_empty_and_an_earlier_end_is_none() {
    let tls12 = [&rustls::version::TLS12];
    let mut lab = common::start(10, |_| {}).await;
    // No certificate to send: rustls answers the request with an empty
    // Certificate message, and the server requires one.
    let ev = handshake(&mut lab, client_presenting(None, &tls12)).await;
    assert_eq!(outcome(&ev), Some("failed"), "{ev:#?}");
    assert_eq!(ev.client_certificate_message, Some("empty"));
    assert!(ev.client_chain.is_empty() && ev.client_certificate.is_none());

    // The handshake ends before the client's second flight.
    let mut lab = common::start(10, |s| {
        s.faults = vec!["tls:close-after-request".parse().expect("a fault")];
    })
    .await;
    let ev = handshake(&mut lab, client_presenting(um_of(common::pki()), &tls12)).await;
    assert_eq!(outcome(&ev), Some("failed"), "{ev:#?}");
    assert_eq!(ev.client_certificate_message, Some("none"));
    assert!(ev.client_chain.is_empty());

    // No STARTTLS: no handshake, nothing to say.
    let mut s = Smtp::greeted(lab.addr()).await;
    let local = s.local;
    assert_eq!(s.cmd("QUIT").await.code, 221);
    let ev = lab.event_for(local).await;
    assert_eq!(ev.client_certificate_message, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls13_says_the_certificate_was_encrypted() {
    let mut lab = common::start(10, |s| s.tls_version = TlsVersion::Tls13).await;
    let tls13 = [&rustls::version::TLS13];
    let ev = handshake(
        &mut lab,
        client_presenting(um_of(&foreign(Shape::OneTier)), &tls13),
    )
    .await;
    assert_eq!(outcome(&ev), Some("failed"), "{ev:#?}");
    assert_eq!(ev.client_certificate_message, Some("encrypted"));
    assert!(ev.client_chain.is_empty() && ev.client_certificate.is_none());
    assert!(
        ev.client_chain_note
            .as_deref()
            .is_some_and(|n| n.contains("TLS 1.3") && n.contains("encrypted"))
    );
    // The same server and a TLS 1.2 client: read off the wire.
    let ev = handshake(
        &mut lab,
        client_presenting(um_of(&foreign(Shape::OneTier)), &[&rustls::version::TLS12]),
    )
    .await;
    assert_eq!(outcome(&ev), Some("failed"), "{ev:#?}");
    assert_eq!(ev.tls_version, None);
    assert_eq!(ev.client_chain.len(), 1);
    assert!(ev.client_chain[0].issuer_listed);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reconnecting_client_gets_a_full_handshake_each_time() {
    // A rustls client caches the session and offers to resume it; the lab
    // does not resume, so the second connection shows the request and the
    // chain again instead of a resumed session with neither.
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut lab = common::start(10, |s| {
            if version == &rustls::version::TLS13 {
                s.tls_version = TlsVersion::Tls13;
            }
        })
        .await;
        let config = client_presenting(um_of(common::pki()), &[version]);
        for n in 1..=2 {
            let ev = handshake(&mut lab, config.clone()).await;
            let what = format!("{version:?}, connection {n}");
            assert_eq!(outcome(&ev), Some("ok"), "{what}: {ev:#?}");
            assert!(ev.certificate_request.is_some(), "{what}");
            assert_eq!(ev.client_certificate_message, Some("sent"), "{what}");
            assert_eq!(ev.client_chain_note, None, "{what}: the wire agrees");
            assert_eq!(ev.client_chain.len(), 1, "{what}");
        }
    }
}
