//! `issuer-listed` over the whole chain, over real TCP: um-sim's client
//! submits to the test Hub (`common`), which requires a client certificate,
//! verifies it against its own trust anchors and advertises a chosen list of
//! names. The certificates are certgen's lab PKI in its three shapes.

mod common;

use certgen::KeyAlg;
use certgen::pki::{Shape, generate_shape};
use common::{TLS12, TLS13, attempt, certs, key, subject};
use rustls::pki_types::CertificateDer;
use um_sim::client::{Attempt, FailureClass, Identity};

fn sent(a: &Attempt) -> (bool, Option<usize>) {
    let d = a.certificate.as_ref().expect("a certificate decision");
    (d.certificate_sent, d.listed_chain_index)
}

/// Two-tier: the Hub's store holds the root only, and the UM sends leaf +
/// issuing CA. Listing the root is enough, as it is for every stack that
/// withholds (the issuing CA's issuer is the root).
#[tokio::test]
async fn two_tier_root_listed_presents_the_chain() {
    let pki = generate_shape(Some(21), KeyAlg::EcdsaP256, Shape::TwoTier).expect("PKI");
    let root = subject(&pki.ca.cert_der);
    let other = subject(&pki.hub.cert_der);
    let anchors = [pki.ca.cert_der.as_slice()];
    // The rule itself: Schannel on 2008 R2 offers no TLS 1.3.
    for version in [TLS12, TLS13] {
        let (a, saw) = attempt(
            &pki,
            "issuer-listed",
            &anchors,
            &[other.clone(), root.clone()],
            version,
        )
        .await;
        assert!(a.delivered, "{version:?}: {a:#?} {saw:?}");
        assert_eq!(sent(&a), (true, Some(1)), "listed through the issuing CA");
        assert_eq!(saw.handshake, Ok(2), "leaf + issuing CA on the wire");
        assert!(saw.data);
    }
    // The tap read the names off the wire (TLS 1.2).
    let (a, _) = attempt(
        &pki,
        "schannel",
        &anchors,
        std::slice::from_ref(&root),
        TLS12,
    )
    .await;
    let req = a.certificate_request.expect("the request seen");
    assert_eq!(req.ca_name_count, 1);
}

#[tokio::test]
async fn two_tier_issuing_ca_listed_presents_through_the_leaf() {
    let pki = generate_shape(Some(22), KeyAlg::EcdsaP256, Shape::TwoTier).expect("PKI");
    let issuing = subject(&pki.issuing.as_ref().expect("issuing CA").cert_der);
    let (a, saw) = attempt(&pki, "schannel", &[&pki.ca.cert_der], &[issuing], TLS12).await;
    assert!(a.delivered, "{a:#?} {saw:?}");
    assert_eq!(sent(&a), (true, Some(0)));
}

/// Neither the root nor the issuing CA listed: the certificate is withheld
/// and the Hub, which requires one, ends the handshake.
#[tokio::test]
async fn two_tier_neither_listed_withholds() {
    let pki = generate_shape(Some(23), KeyAlg::EcdsaP256, Shape::TwoTier).expect("PKI");
    let unrelated = subject(&pki.hub.cert_der);
    let anchors = [pki.ca.cert_der.as_slice()];
    for version in [TLS12, TLS13] {
        let (a, saw) = attempt(
            &pki,
            "issuer-listed",
            &anchors,
            std::slice::from_ref(&unrelated),
            version,
        )
        .await;
        assert!(!a.delivered, "{version:?}: {a:#?}");
        assert_eq!(
            a.failure,
            Some(FailureClass::NoAcceptableCertificate),
            "{a:#?}"
        );
        assert_eq!(sent(&a), (false, None));
        assert!(saw.handshake.is_err(), "{saw:?}");
    }
    // A stack that sends anyway (lenient) is verified against the root and passes.
    let (a, saw) = attempt(&pki, "lenient", &anchors, &[unrelated], TLS12).await;
    assert!(a.delivered, "{a:#?} {saw:?}");
    assert_eq!(sent(&a), (true, None));
    assert_eq!(saw.handshake, Ok(2));
}

/// Self-signed: the Hub's store holds the UM certificate itself; the UM's
/// one-certificate chain is its own issuer.
#[tokio::test]
async fn self_signed_is_listed_by_being_in_the_store() {
    let pki = generate_shape(Some(24), KeyAlg::EcdsaP256, Shape::SelfSigned).expect("PKI");
    let um = subject(&pki.ca.cert_der);
    let anchors = [pki.ca.cert_der.as_slice()];
    let (a, saw) = attempt(&pki, "schannel", &anchors, &[um], TLS12).await;
    assert!(a.delivered, "{a:#?} {saw:?}");
    assert_eq!(sent(&a), (true, Some(0)));
    assert_eq!(saw.handshake, Ok(1));
    let unrelated = subject(&pki.hub.cert_der);
    let (a, _) = attempt(&pki, "schannel", &anchors, &[unrelated], TLS12).await;
    assert_eq!(
        a.failure,
        Some(FailureClass::NoAcceptableCertificate),
        "{a:#?}"
    );
}

#[test]
fn identity_reads_the_issuer_of_every_chain_certificate() {
    let pki = generate_shape(Some(25), KeyAlg::Ed25519, Shape::TwoTier).expect("PKI");
    let id = Identity::new(certs(pki.um_chain()), key(&pki.um.key)).expect("identity");
    let issuing = subject(&pki.issuing.as_ref().expect("issuing CA").cert_der);
    assert_eq!(
        id.chain_issuers,
        [issuing.clone(), subject(&pki.ca.cert_der)]
    );
    assert_eq!(id.issuer, issuing, "the leaf's issuer");
    assert!(id.issuer_text.contains("Issuing CA"), "{}", id.issuer_text);
    // A chain with a broken intermediate is refused, naming it.
    let mut chain = certs(pki.um_chain());
    chain.push(CertificateDer::from(vec![0x30, 0x03, 1, 2, 3]));
    let err = Identity::new(chain, key(&pki.um.key)).expect_err("broken intermediate");
    assert!(
        err.to_string().contains("certificate 3 of the chain"),
        "{err}"
    );
    assert!(Identity::new(Vec::new(), key(&pki.um.key)).is_err());
}
