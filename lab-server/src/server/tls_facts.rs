//! What a TLS handshake showed, for the connection's event: the
//! CertificateRequest as sent, the alert, the version, suite and client
//! certificate.

use rustls::pki_types::CertificateDer;
use tokio::net::TcpStream;

use super::Shared;
use crate::events::{CertRequestInfo, ClientCert, ConnectionEvent, Handshake};
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

/// Records a completed handshake in the event.
pub(super) fn record_tls(
    event: &mut ConnectionEvent,
    tls: &tokio_rustls::server::TlsStream<ShapedStream<TcpStream>>,
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
