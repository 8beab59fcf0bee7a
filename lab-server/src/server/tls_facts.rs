//! What a TLS handshake showed, for the connection's event: the
//! CertificateRequest as sent, the alert, the version, suite and client
//! certificate.

use rustls::pki_types::CertificateDer;
use tokio::net::TcpStream;

use super::Shared;
use crate::events::{CertRequestInfo, ChainCert, ClientCert, ConnectionEvent, Handshake};
use crate::policy::TlsVersion;
use crate::tls::{ClientAuth, ShapedStream, WireFacts};

/// The failed handshake: the error, and the alert involved. A sent alert is
/// read off the wire by the shaper (plaintext in TLS 1.2 before
/// ChangeCipherSpec); a received one comes from rustls's error.
pub(super) fn handshake_failure(e: &std::io::Error, sent: Option<[u8; 2]>) -> Handshake {
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let alert = match (rustls_error, sent) {
        (Some(rustls::Error::AlertReceived(a)), _) => Some(format!("received {a:?}")),
        (_, Some([_, description])) => Some(format!(
            "sent {:?}",
            rustls::AlertDescription::from(description)
        )),
        _ => None,
    };
    Handshake {
        outcome: "failed",
        error: Some(e.to_string()),
        alert,
    }
}

/// A handshake that ran out of time.
pub(super) fn handshake_timeout() -> Handshake {
    Handshake {
        outcome: "failed",
        error: Some("handshake timed out".to_owned()),
        alert: None,
    }
}

/// Records a completed handshake in the event; `advertised` is the CA list
/// this connection was sent ([`advertised_list`]).
pub(super) fn record_tls(
    event: &mut ConnectionEvent,
    tls: &tokio_rustls::server::TlsStream<ShapedStream<TcpStream>>,
    advertised: &[Vec<u8>],
) {
    let (_, state) = tls.get_ref();
    event.tls_version = state.protocol_version().map(|v| format!("{v:?}"));
    event.cipher_suite = state
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()));
    event.handshake = Some(Handshake {
        outcome: "ok",
        error: None,
        alert: None,
    });
    event.client_certificate = state
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| client_cert(leaf));
    event.client_chain = state
        .peer_certificates()
        .map(|chain| client_chain(chain, advertised))
        .unwrap_or_default();
}

/// The CA names this connection was sent: read off the wire when the
/// request was plaintext (TLS 1.2, also a TLS 1.3 server's answer to a client
/// without TLS 1.3), so a list rewritten or cut on the way counts as sent; in
/// TLS 1.3 (encrypted there) the list a fault cut for this connection, else
/// the planned list; none when no CertificateRequest went out.
pub(super) fn advertised_list<'a>(
    shared: &'a Shared,
    facts: &'a WireFacts,
    cut: Option<&'a Vec<Vec<u8>>>,
) -> &'a [Vec<u8>] {
    if shared.client_auth == ClientAuth::None {
        return &[];
    }
    match (shared.tls_version, &facts.request) {
        (_, Some(seen)) => seen.ca_names.as_deref().unwrap_or_default(),
        (TlsVersion::Tls12, None) => &[],
        (TlsVersion::Tls13, None) => cut.map_or(&shared.advertised, |c| c.as_slice()),
    }
}

/// Each certificate the client sent, with whether its issuer and its
/// subject were among the `advertised` DER names.
pub(super) fn client_chain(chain: &[CertificateDer<'_>], advertised: &[Vec<u8>]) -> Vec<ChainCert> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let listed = |name: &[u8]| advertised.iter().any(|a| a.as_slice() == name);
    chain
        .iter()
        .map(|der| match X509Certificate::from_der(der.as_ref()) {
            Ok((_, cert)) => ChainCert {
                subject: cert.subject().to_string(),
                issuer: cert.issuer().to_string(),
                issuer_listed: listed(cert.issuer().as_raw()),
                listed: listed(cert.subject().as_raw()),
                error: None,
            },
            Err(e) => ChainCert {
                subject: String::new(),
                issuer: String::new(),
                issuer_listed: false,
                listed: false,
                error: Some(format!("not X.509 ({} bytes): {e}", der.as_ref().len())),
            },
        })
        .collect()
}

/// The CertificateRequest for the event: read off the wire in TLS 1.2, from
/// the lab's own encoding in TLS 1.3 (encrypted there).
pub(super) fn request_info(shared: &Shared, facts: &WireFacts) -> Option<CertRequestInfo> {
    if shared.client_auth == ClientAuth::None {
        return None;
    }
    let persona = &shared.persona;
    match (shared.tls_version, &facts.request) {
        // A plaintext request: TLS 1.2, also when a TLS 1.3 server met a
        // client without TLS 1.3.
        (_, Some(seen)) => {
            let names = seen.ca_names.as_deref().unwrap_or_default();
            let list: usize = names
                .iter()
                .map(|n| certgen::wire::NAME_LEN_PREFIX + n.len())
                .sum();
            Some(CertRequestInfo {
                bytes: seen.message_bytes,
                records: seen.records,
                ca_names: names.len(),
                source: "wire",
                overhead: seen
                    .message_bytes
                    .saturating_sub(certgen::wire::HANDSHAKE_HEADER_LEN + list),
                real_overhead: persona.real_overhead,
                difference: persona.difference.clone(),
            })
        }
        (TlsVersion::Tls13, _) if facts.server_hello => Some(CertRequestInfo {
            bytes: shared.report.message_bytes,
            records: shared.report.records,
            ca_names: shared.advertised.len(),
            source: "encoding",
            overhead: persona.overhead,
            real_overhead: persona.real_overhead,
            difference: persona.difference.clone(),
        }),
        _ => None,
    }
}

fn client_cert(der: &CertificateDer<'_>) -> Option<ClientCert> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    Some(ClientCert {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
    })
}

/// Postfix's judgement after the handshake: why the client is refused, or
/// `None` when it brought a certificate that chains to a trusted anchor.
/// The texts are Postfix 3.7's (measured).
pub(super) fn untrusted_client(
    shared: &Shared,
    tls: &tokio_rustls::server::TlsStream<ShapedStream<TcpStream>>,
) -> Option<&'static str> {
    const NONE: &str = "No client certificate presented";
    const UNTRUSTED: &str = "Client certificate not trusted";
    let (_, state) = tls.get_ref();
    let Some((leaf, intermediates)) = state.peer_certificates().and_then(|c| c.split_first())
    else {
        return Some(NONE);
    };
    let verifier = shared.verifier.as_ref()?;
    match verifier.verify_client_cert(leaf, intermediates, rustls::pki_types::UnixTime::now()) {
        Ok(_) => None,
        Err(_) => Some(UNTRUSTED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certgen::KeyAlg;
    use certgen::pki::{Shape, generate_shape};

    fn chain_of(lab: &certgen::pki::LabPki) -> Vec<CertificateDer<'static>> {
        lab.um_chain()
            .into_iter()
            .map(|d| CertificateDer::from(d.to_vec()))
            .collect()
    }

    #[test]
    fn each_certificate_is_judged_against_the_names_advertised_as_der() {
        let lab = generate_shape(Some(5), KeyAlg::EcdsaP256, Shape::TwoTier).expect("PKI");
        let root = lab.ca.root().expect("root").subject_der().to_vec();
        let issuing = lab
            .issuing
            .as_ref()
            .expect("two-tier has an issuing CA")
            .root()
            .expect("issuing as a root")
            .subject_der()
            .to_vec();
        let chain = chain_of(&lab);

        // Only the root listed (the AD CS case): the issuing CA's issuer is
        // listed, the leaf's is not.
        let got = client_chain(&chain, std::slice::from_ref(&root));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].issuer, got[1].subject);
        assert_eq!(
            got.iter()
                .map(|c| (c.issuer_listed, c.listed))
                .collect::<Vec<_>>(),
            [(false, false), (true, false)]
        );
        // The issuing CA listed: the leaf's issuer is listed, and so is the
        // issuing CA itself.
        let got = client_chain(&chain, std::slice::from_ref(&issuing));
        assert_eq!(
            got.iter()
                .map(|c| (c.issuer_listed, c.listed))
                .collect::<Vec<_>>(),
            [(true, false), (false, true)]
        );
        // A name one byte off is another name.
        let mut other = issuing;
        if let Some(b) = other.iter_mut().rev().find(|b| b.is_ascii_alphabetic()) {
            *b ^= 0x20;
        }
        assert!(
            client_chain(&chain, &[other])
                .iter()
                .all(|c| !c.issuer_listed)
        );
        // Nothing advertised; bytes that are no certificate.
        assert!(
            client_chain(&chain, &[])
                .iter()
                .all(|c| !c.issuer_listed && !c.listed)
        );
        let junk = client_chain(&[CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])], &[root]);
        assert_eq!(junk.len(), 1);
        assert!(junk[0].error.is_some() && junk[0].subject.is_empty());
    }
}
