//! TLS for the Hub: the rustls server configuration and the shape of the
//! CertificateRequest it produces.
//!
//! Like Schannel, the server verifies client chains against the whole store
//! while advertising only the policy's list: `WebPkiClientVerifier` built on
//! every root, with its root hints replaced by the planned names.

use std::sync::Arc;

use rustls::SignatureScheme;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;

use crate::policy::{MessageShape, TlsVersion};

pub use crate::settings::ClientAuth;

/// Errors building the TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused a setting.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// No root of the store could serve as a trust anchor.
    #[error("none of the {0} roots in the store is usable as a trust anchor")]
    NoAnchors(usize),
    /// `--max-fragment` out of range.
    #[error(
        "--max-fragment {0} is out of range: {min}..={max} bytes, record header included",
        min = certgen::wire::MIN_FRAGMENT,
        max = certgen::wire::MAX_FRAGMENT
    )]
    Fragment(usize),
}

/// What [`server_config`] needs.
pub struct TlsInputs<'a> {
    /// Every root of the store (trust anchors for client chains).
    pub roots: &'a [&'a [u8]],
    /// The subject DERs to advertise, in order.
    pub advertised: &'a [Vec<u8>],
    /// The server's certificate chain.
    pub chain: Vec<CertificateDer<'static>>,
    /// Its key.
    pub key: PrivateKeyDer<'static>,
    /// Client authentication.
    pub client_auth: ClientAuth,
    /// Protocol version.
    pub version: TlsVersion,
    /// Record size limit, header included.
    pub max_fragment: usize,
    /// Log secrets to SSLKEYLOGFILE.
    pub keylog: bool,
}

/// The lab's one crypto provider.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The CertificateRequest's fixed part for this provider and version, as
/// rustls 0.23 writes it (server/tls12.rs `emit_certificate_req`: two
/// certificate types, RSA_SIGN and ECDSA_SIGN, and the verifier's schemes that
/// have a signature algorithm; tls13.rs: signature_algorithms with every
/// scheme, no compression extension). Events compare it with the bytes
/// actually sent.
pub fn message_shape(version: TlsVersion) -> MessageShape {
    let schemes = provider()
        .signature_verification_algorithms
        .supported_schemes();
    match version {
        TlsVersion::Tls12 => MessageShape {
            version,
            cert_types: 2,
            sig_schemes: schemes.iter().filter(|s| has_algorithm(**s)).count(),
        },
        TlsVersion::Tls13 => MessageShape {
            version,
            cert_types: 0,
            sig_schemes: schemes.len(),
        },
    }
}

fn has_algorithm(s: SignatureScheme) -> bool {
    use SignatureScheme as S;
    matches!(
        s,
        S::RSA_PKCS1_SHA1
            | S::RSA_PKCS1_SHA256
            | S::RSA_PKCS1_SHA384
            | S::RSA_PKCS1_SHA512
            | S::RSA_PSS_SHA256
            | S::RSA_PSS_SHA384
            | S::RSA_PSS_SHA512
            | S::ECDSA_SHA1_Legacy
            | S::ECDSA_NISTP256_SHA256
            | S::ECDSA_NISTP384_SHA384
            | S::ECDSA_NISTP521_SHA512
            | S::ED25519
            | S::ED448
    )
}

/// Builds the server configuration. Returns it with the number of store roots
/// that could not serve as trust anchors.
pub fn server_config(
    inputs: TlsInputs<'_>,
) -> Result<(Arc<rustls::ServerConfig>, usize), TlsError> {
    let fragments = certgen::wire::MIN_FRAGMENT..=certgen::wire::MAX_FRAGMENT;
    if !fragments.contains(&inputs.max_fragment) {
        return Err(TlsError::Fragment(inputs.max_fragment));
    }
    let provider = provider();
    let versions: &[&rustls::SupportedProtocolVersion] = match inputs.version {
        TlsVersion::Tls12 => &[&rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)?;
    let mut rejected = 0;
    let builder = match inputs.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Required | ClientAuth::Optional => {
            let mut anchors = rustls::RootCertStore::empty();
            let (_, bad) = anchors.add_parsable_certificates(
                inputs
                    .roots
                    .iter()
                    .map(|der| CertificateDer::from(der.to_vec())),
            );
            rejected = bad;
            if anchors.is_empty() {
                return Err(TlsError::NoAnchors(inputs.roots.len()));
            }
            let hints = inputs
                .advertised
                .iter()
                .map(|dn| rustls::DistinguishedName::from(dn.clone()));
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(anchors), provider)
                    .clear_root_hint_subjects()
                    .add_root_hint_subjects(hints);
            if inputs.client_auth == ClientAuth::Optional {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier: Arc<dyn ClientCertVerifier> = verifier.build()?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(inputs.chain, inputs.key)?;
    config.max_fragment_size = Some(inputs.max_fragment);
    config.cert_decompressors = Vec::new();
    if inputs.keylog {
        config.key_log = Arc::new(rustls::KeyLogFile::new());
    }
    Ok((Arc::new(config), rejected))
}

pub use crate::shaped::{ShapedStream, WireFacts};
