//! The client's TLS side: its identity, and the rustls configuration whose
//! certificate resolver lets the profile decide, from the names the server
//! listed, whether the certificate is presented.

use std::sync::{Arc, Mutex};

use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use serde::Serialize;

use crate::presets::Version;
use crate::profile::{Profile, listed_in_chain};
use crate::tap::HandshakeSecrets;

/// The client's certificate chain, key and the issuers `issuer-listed` looks for.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Certificate chain, leaf first, as it is sent.
    pub chain: Vec<CertificateDer<'static>>,
    /// Private key.
    pub key: Arc<PrivateKeyDer<'static>>,
    /// The leaf's issuer Name, DER.
    pub issuer: Vec<u8>,
    /// The leaf's issuer as text.
    pub issuer_text: String,
    /// The issuer Name (DER) of every certificate of the chain, leaf first:
    /// what `issuer-listed` looks for, as real stacks walk the whole chain.
    pub chain_issuers: Vec<Vec<u8>>,
}

/// Errors setting the client up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The certificate could not be read.
    #[error("client certificate: {0}")]
    Certificate(String),
    /// rustls refused the key or settings.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

impl Identity {
    /// From a chain (leaf first) and key; the issuers are read from every
    /// certificate of the chain, so a malformed intermediate is refused here
    /// rather than sent.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Identity, SetupError> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let mut chain_issuers = Vec::with_capacity(chain.len());
        let mut leaf_issuer_text = None;
        for (i, der) in chain.iter().enumerate() {
            let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| {
                SetupError::Certificate(format!("certificate {} of the chain: {e}", i + 1))
            })?;
            leaf_issuer_text.get_or_insert_with(|| cert.issuer().to_string());
            chain_issuers.push(cert.issuer().as_raw().to_vec());
        }
        let (Some(issuer), Some(issuer_text)) = (chain_issuers.first(), leaf_issuer_text) else {
            return Err(SetupError::Certificate(
                "no certificate in the file".to_owned(),
            ));
        };
        Ok(Identity {
            issuer: issuer.clone(),
            issuer_text,
            chain_issuers,
            chain,
            key: Arc::new(key),
        })
    }
}

/// What the client decided about its certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CertDecision {
    /// Names rustls passed to the resolver (as the server sent them).
    pub names: usize,
    /// Whether the issuer of some certificate of our chain was among them.
    pub issuer_listed: bool,
    /// Which one: its position in the chain (0 = leaf), the first whose
    /// issuer was listed.
    pub listed_chain_index: Option<usize>,
    /// Whether the certificate was sent.
    pub certificate_sent: bool,
}

/// Presents the certificate as the profile says.
#[derive(Debug)]
struct Resolver {
    key: Arc<CertifiedKey>,
    chain_issuers: Vec<Vec<u8>>,
    profile: Profile,
    decision: Arc<Mutex<Option<CertDecision>>>,
}

impl ResolvesClientCert for Resolver {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let send = self
            .profile
            .presents_chain(root_hint_subjects, &self.chain_issuers);
        let listed = listed_in_chain(root_hint_subjects, &self.chain_issuers);
        if let Ok(mut d) = self.decision.lock() {
            *d = Some(CertDecision {
                names: root_hint_subjects.len(),
                issuer_listed: listed.is_some(),
                listed_chain_index: listed,
                certificate_sent: send,
            });
        }
        send.then(|| self.key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The rustls client configuration for one attempt: the server is verified
/// against `server_roots`; the certificate goes out as the profile decides,
/// and the decision is left in `decision` for the attempt record.
///
/// It offers the TLS versions the profile's stack negotiates (a Schannel of
/// 2008 R2: TLS 1.2 only), and logs the handshake traffic secrets into
/// `secrets`, from which the record tap decrypts a TLS 1.3 server's flight.
pub(crate) fn client_config(
    server_roots: Arc<rustls::RootCertStore>,
    identity: &Identity,
    profile: &Profile,
    decision: Arc<Mutex<Option<CertDecision>>>,
    secrets: Arc<HandshakeSecrets>,
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = provider
        .key_provider
        .load_private_key(identity.key.clone_key())?;
    let certified = Arc::new(CertifiedKey::new(identity.chain.clone(), key));
    let resolver = Resolver {
        key: certified,
        chain_issuers: identity.chain_issuers.clone(),
        profile: profile.clone(),
        decision,
    };
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = profile
        .versions()
        .iter()
        .map(|v| match v {
            Version::Tls12 => &rustls::version::TLS12,
            Version::Tls13 => &rustls::version::TLS13,
        })
        .collect();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)?
        .with_root_certificates(server_roots)
        .with_client_cert_resolver(Arc::new(resolver));
    config.key_log = secrets;
    Ok(Arc::new(config))
}
