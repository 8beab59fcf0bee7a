//! What a TLS handshake showed, for the connection's event: the
//! CertificateRequest as sent, the alert, the version, suite and client
//! certificate; and, when the handshake failed, the client's chain as read
//! off the wire (TLS 1.2).

use certgen::wire::{ClientCertificate, MAX_CERTIFICATE_LEN, TLS13_VERSION};
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
/// this connection was sent ([`advertised_list`]), `facts` what the wire
/// showed (in TLS 1.2 the client's Certificate read there is checked against
/// the chain rustls verified: a disagreement is reported in the note).
pub(super) fn record_tls(
    event: &mut ConnectionEvent,
    tls: &tokio_rustls::server::TlsStream<ShapedStream<TcpStream>>,
    advertised: &[Vec<u8>],
    facts: &WireFacts,
) {
    let (_, state) = tls.get_ref();
    let peer = state.peer_certificates().unwrap_or_default();
    event.client_certificate_message = Some(if !peer.is_empty() {
        "sent"
    } else if event.certificate_request.is_some() {
        // A client answers a CertificateRequest with a Certificate message,
        // empty when it has nothing to send (RFC 5246 7.4.6, RFC 8446 4.4.2).
        "empty"
    } else {
        "none"
    });
    if !is_tls13(facts) && !wire_agrees(&facts.client_certificate, peer) {
        event.client_chain_note = Some(format!(
            "the client's Certificate read off the wire ({}) differs from the chain rustls \
             verified ({} certificate(s)): reported, not resolved",
            describe(&facts.client_certificate),
            peer.len()
        ));
    }
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
        .and_then(client_cert);
    event.client_chain = state
        .peer_certificates()
        .map(|chain| client_chain(chain, advertised))
        .unwrap_or_default();
}

/// Records what the wire showed of the client's certificate when the
/// handshake failed (rustls gives no peer certificates then): in TLS 1.2 the
/// client's Certificate message, plaintext, judged against `advertised` as
/// for a completed handshake; in TLS 1.3 only that it was encrypted.
pub(super) fn record_failed(
    event: &mut ConnectionEvent,
    facts: &WireFacts,
    advertised: &[Vec<u8>],
) {
    if is_tls13(facts) {
        event.client_certificate_message = Some("encrypted");
        event.client_chain_note = Some(
            "TLS 1.3: the client's Certificate is encrypted; the chain of a failed handshake \
             cannot be read"
                .to_owned(),
        );
        return;
    }
    event.client_certificate_message = Some(message_kind(&facts.client_certificate));
    event.client_chain_note = match &facts.client_certificate {
        ClientCertificate::NoMessage | ClientCertificate::Empty => None,
        ClientCertificate::Sent(certs) => {
            event.client_chain = client_chain(certs, advertised);
            event.client_certificate = certs.first().and_then(client_cert);
            Some(
                "read off the wire: the client's TLS 1.2 Certificate message (plaintext); the \
                 handshake then failed"
                    .to_owned(),
            )
        }
        ClientCertificate::TooLarge { claimed } => Some(format!(
            "chain too large to keep: the Certificate message claims {claimed} bytes, over \
             the cap of {MAX_CERTIFICATE_LEN}"
        )),
        ClientCertificate::Malformed(e) => {
            Some(format!("the Certificate message does not decode: {e}"))
        }
    };
}

/// Whether the ServerHello selected TLS 1.3.
fn is_tls13(facts: &WireFacts) -> bool {
    facts.server_hello_version == Some(TLS13_VERSION)
}

/// `none`, `empty` or `sent`: the event's `client_certificate_message`.
fn message_kind(seen: &ClientCertificate) -> &'static str {
    match seen {
        ClientCertificate::NoMessage => "none",
        ClientCertificate::Empty => "empty",
        ClientCertificate::Sent(_)
        | ClientCertificate::TooLarge { .. }
        | ClientCertificate::Malformed(_) => "sent",
    }
}

/// The wire's reading in a few words, for a disagreement's note.
fn describe(seen: &ClientCertificate) -> String {
    match seen {
        ClientCertificate::Sent(certs) => format!("{} certificate(s)", certs.len()),
        ClientCertificate::TooLarge { claimed } => format!("{claimed} bytes, not kept"),
        ClientCertificate::Malformed(e) => format!("not decodable: {e}"),
        other => message_kind(other).to_owned(),
    }
}

/// Whether the Certificate read off the wire is the chain rustls verified
/// after a completed TLS 1.2 handshake (none and empty both give rustls no
/// certificates).
fn wire_agrees(seen: &ClientCertificate, verified: &[CertificateDer<'_>]) -> bool {
    match seen {
        ClientCertificate::NoMessage | ClientCertificate::Empty => verified.is_empty(),
        ClientCertificate::Sent(certs) => {
            certs.len() == verified.len()
                && certs
                    .iter()
                    .zip(verified)
                    .all(|(a, b)| a.as_slice() == b.as_ref())
        }
        ClientCertificate::TooLarge { .. } | ClientCertificate::Malformed(_) => false,
    }
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
pub(super) fn client_chain(chain: &[impl AsRef<[u8]>], advertised: &[Vec<u8>]) -> Vec<ChainCert> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let listed = |name: &[u8]| advertised.iter().any(|a| a.as_slice() == name);
    let mut kept: Vec<ChainCert> = chain
        .iter()
        .take(MAX_CHAIN_KEPT)
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
        .collect();
    if let Some(more) = chain.len().checked_sub(MAX_CHAIN_KEPT).filter(|&n| n > 0) {
        kept.push(ChainCert {
            subject: String::new(),
            issuer: String::new(),
            issuer_listed: false,
            listed: false,
            error: Some(format!(
                "{more} more certificate(s) not kept (lab-server keeps the first {MAX_CHAIN_KEPT})"
            )),
        });
    }
    kept
}

/// Certificates of a client chain kept in an event: a real chain has 1 to 4,
/// and a peer must not make each of the inspector's 1,000 kept events hold
/// thousands.
const MAX_CHAIN_KEPT: usize = 16;

/// What a TLS 1.2 request from a `--tls 1.3` server is, next to the real
/// server's: the lab plans one list for TLS 1.3 and rustls sends it to a
/// TLS 1.2 client too.
const TLS12_ON_A_TLS13_PLAN: &str = "TLS 1.2 on a server planned for TLS 1.3: the names and \
signature schemes are the TLS 1.3 plan's; the persona's own TLS 1.2 request (its schemes and \
certificate types) is not modeled on a --tls 1.3 server: not verified here";

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
                real_overhead: match shared.tls_version {
                    TlsVersion::Tls12 => persona.real_overhead,
                    TlsVersion::Tls13 => None,
                },
                difference: match shared.tls_version {
                    TlsVersion::Tls12 => persona.difference.clone(),
                    // The plan is the TLS 1.3 one: the persona's own TLS 1.2
                    // request is not what went out.
                    TlsVersion::Tls13 => TLS12_ON_A_TLS13_PLAN.to_owned(),
                },
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

fn client_cert(der: &impl AsRef<[u8]>) -> Option<ClientCert> {
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
    fn a_long_chain_is_kept_to_its_first_certificates() {
        let junk = vec![vec![0x30, 0x03, 1, 2, 3]; MAX_CHAIN_KEPT + 4];
        let got = client_chain(&junk, &[]);
        assert_eq!(got.len(), MAX_CHAIN_KEPT + 1);
        let last = got.last().and_then(|c| c.error.clone()).unwrap_or_default();
        assert!(last.starts_with("4 more certificate(s) not kept"), "{last}");
        assert_eq!(
            client_chain(&junk[..MAX_CHAIN_KEPT], &[]).len(),
            MAX_CHAIN_KEPT
        );
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

    #[test]
    fn a_failed_handshake_keeps_what_the_wire_showed() {
        let lab = generate_shape(Some(5), KeyAlg::EcdsaP256, Shape::TwoTier).expect("PKI");
        let root = lab.ca.root().expect("root").subject_der().to_vec();
        let chain = chain_of(&lab);
        let ders: Vec<Vec<u8>> = chain.iter().map(|c| c.as_ref().to_vec()).collect();
        let advertised = std::slice::from_ref(&root);
        let facts = |seen: ClientCertificate, version: u16| WireFacts {
            client_certificate: seen,
            server_hello_version: Some(version),
            ..WireFacts::default()
        };

        // TLS 1.2: the chain read off the wire, judged as rustls's would be.
        let mut ev = ConnectionEvent::default();
        record_failed(
            &mut ev,
            &facts(ClientCertificate::Sent(ders.clone()), 0x0303),
            advertised,
        );
        assert_eq!(ev.client_chain, client_chain(&chain, advertised));
        assert_eq!(ev.client_certificate_message, Some("sent"));
        assert_eq!(
            ev.client_certificate.map(|c| c.subject),
            Some(ev.client_chain[0].subject.clone())
        );
        assert!(
            ev.client_chain_note
                .is_some_and(|n| n.contains("off the wire"))
        );

        // Withheld, none, too large.
        for (seen, kind) in [
            (ClientCertificate::Empty, "empty"),
            (ClientCertificate::NoMessage, "none"),
            (ClientCertificate::TooLarge { claimed: 1 << 20 }, "sent"),
        ] {
            let mut ev = ConnectionEvent::default();
            record_failed(&mut ev, &facts(seen.clone(), 0x0303), advertised);
            assert_eq!(ev.client_certificate_message, Some(kind), "{seen:?}");
            assert!(ev.client_chain.is_empty());
        }
        let mut ev = ConnectionEvent::default();
        record_failed(
            &mut ev,
            &facts(ClientCertificate::TooLarge { claimed: 1 << 20 }, 0x0303),
            advertised,
        );
        assert!(
            ev.client_chain_note
                .is_some_and(|n| n.starts_with("chain too large to keep"))
        );

        // TLS 1.3: encrypted, whatever a reader might claim.
        let mut ev = ConnectionEvent::default();
        record_failed(
            &mut ev,
            &facts(ClientCertificate::Sent(ders.clone()), TLS13_VERSION),
            advertised,
        );
        assert_eq!(ev.client_certificate_message, Some("encrypted"));
        assert!(ev.client_chain.is_empty() && ev.client_certificate.is_none());
        assert!(
            ev.client_chain_note
                .is_some_and(|n| n.contains("encrypted"))
        );

        // The wire against rustls: the same chain agrees; another, a
        // shorter one, or a withheld certificate against a chain do not.
        assert!(wire_agrees(&ClientCertificate::Sent(ders.clone()), &chain));
        assert!(wire_agrees(&ClientCertificate::Empty, &[]));
        assert!(wire_agrees(&ClientCertificate::NoMessage, &[]));
        assert!(!wire_agrees(
            &ClientCertificate::Sent(ders[..1].to_vec()),
            &chain
        ));
        let mut other = ders.clone();
        other[0][10] ^= 1;
        assert!(!wire_agrees(&ClientCertificate::Sent(other), &chain));
        assert!(!wire_agrees(&ClientCertificate::Empty, &chain));
        assert!(!wire_agrees(&ClientCertificate::Sent(ders), &[]));
    }
}
