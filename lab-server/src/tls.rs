//! TLS for the Hub: the rustls server configuration and the shape of the
//! CertificateRequest it produces.
//!
//! Like Schannel, the server verifies client chains against the whole store
//! (or the persona's trust set) while advertising only the policy's list:
//! `WebPkiClientVerifier` built on every anchor, with its root hints replaced
//! by the planned names, wrapped in a [`PersonaVerifier`] that offers the
//! persona's signature schemes in the real server's order.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

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
    /// The trust anchors for client chains (every root of the store, or the
    /// persona's trust set).
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
    /// The signature schemes the CertificateRequest offers, in order; `None`
    /// for the provider's own.
    pub schemes: Option<Vec<SignatureScheme>>,
    /// Complete the handshake whatever certificate the client sends, trusted
    /// or not; the session judges it afterwards (Postfix).
    pub accept_untrusted: bool,
    /// Reject every client certificate with this reason (Schannel with
    /// KB 2880390's broken client authentication).
    pub reject_all: Option<String>,
    /// Whether a TLS 1.3 server also takes TLS 1.2
    /// ([`crate::persona::Persona::takes_tls12_beside_tls13`]).
    pub tls12_beside_tls13: bool,
}

/// The built configuration.
pub struct ServerTls {
    /// The rustls configuration.
    pub config: Arc<rustls::ServerConfig>,
    /// Store roots that could not serve as trust anchors.
    pub rejected: usize,
    /// The strict chain verifier, for a session that judges the client's
    /// certificate after the handshake (Postfix); `None` without client auth.
    pub verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// The same configuration with another advertised list (the fault
    /// cut-list-at); `None` without client auth.
    pub rebuild: Option<Rebuild>,
}

/// Builds the server configuration again with another advertised list, the
/// same verifier behind it: how a connection gets a cut list (the fault
/// cut-list-at). rustls writes whatever names it is handed, so the
/// CertificateRequest it sends and hashes is the cut one; no byte is rewritten
/// under it.
pub struct Rebuild {
    provider: Arc<CryptoProvider>,
    version: TlsVersion,
    tls12_beside_tls13: bool,
    verifier: PersonaVerifier,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    max_fragment: usize,
    keylog: bool,
}

impl Rebuild {
    /// The configuration advertising `names` (subject DERs, sent as they are,
    /// even when one is not a well-formed DN).
    pub fn with_hints(&self, names: &[Vec<u8>]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let verifier = Arc::new(PersonaVerifier {
            hints: Some(
                names
                    .iter()
                    .map(|n| DistinguishedName::from(n.clone()))
                    .collect(),
            ),
            ..self.verifier.clone()
        });
        let builder = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(versions(self.version, self.tls12_beside_tls13))?
            .with_client_cert_verifier(verifier);
        let config = finish(
            builder,
            self.chain.clone(),
            self.key.clone_key(),
            self.max_fragment,
            self.keylog,
        )?;
        Ok(Arc::new(config))
    }
}

/// The versions a server of `version` takes. A server allowing TLS 1.3
/// (Postfix, OpenSSL, every 2b server that has it) also takes TLS 1.2: a
/// client without TLS 1.3 (Schannel before Windows Server 2022) negotiates
/// TLS 1.2 with it; unless `tls12_beside_tls13` is off (a persona whose TLS
/// 1.2 names differ from its TLS 1.3 ones).
fn versions(
    version: TlsVersion,
    tls12_beside_tls13: bool,
) -> &'static [&'static rustls::SupportedProtocolVersion] {
    static TLS12: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
    static TLS13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    static BOTH: [&rustls::SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    match (version, tls12_beside_tls13) {
        (TlsVersion::Tls12, _) => &TLS12,
        (TlsVersion::Tls13, true) => &BOTH,
        (TlsVersion::Tls13, false) => &TLS13,
    }
}

/// The server's certificate and the lab's record settings: the last steps of
/// every configuration, the planned one and each rebuilt with other names.
fn finish(
    builder: rustls::ConfigBuilder<rustls::ServerConfig, rustls::server::WantsServerCert>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    max_fragment: usize,
    keylog: bool,
) -> Result<rustls::ServerConfig, TlsError> {
    let mut config = builder.with_single_cert(chain, key)?;
    config.max_fragment_size = Some(max_fragment);
    config.cert_decompressors = Vec::new();
    // No resumption: a resumed session has no CertificateRequest and no
    // client Certificate, and every connection to the lab is there to show
    // them (a real Hub resumes; a client that reconnects to the lab gets a
    // full handshake each time).
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    if keylog {
        config.key_log = Arc::new(rustls::KeyLogFile::new());
    }
    Ok(config)
}

/// The client-certificate verifier with a persona's face: the signature
/// schemes it offers (so the CertificateRequest lists the real server's, in
/// its order), and optionally acceptance of any chain (Postfix judges after
/// the handshake) or rejection of all (KB 2880390). Signatures are always
/// checked by the inner verifier.
#[derive(Clone, Debug)]
pub struct PersonaVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    schemes: Option<Vec<SignatureScheme>>,
    accept_untrusted: bool,
    reject_all: Option<String>,
    /// Names advertised instead of the inner verifier's (a list a fault
    /// cut for one connection); the verification stays the inner one's.
    hints: Option<Vec<DistinguishedName>>,
}

impl ClientCertVerifier for PersonaVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        match &self.hints {
            Some(hints) => hints,
            None => self.inner.root_hint_subjects(),
        }
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Some(reason) = &self.reject_all {
            return Err(rustls::Error::General(reason.clone()));
        }
        match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            Err(_) if self.accept_untrusted => Ok(ClientCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        match &self.schemes {
            Some(s) => s.clone(),
            None => self.inner.supported_verify_schemes(),
        }
    }
}

/// The schemes rustls 0.23 writes into a TLS 1.2 CertificateRequest from a
/// verifier's list: only those it knows a signature algorithm for
/// (server/tls12.rs `emit_certificate_req`), in the given order. TLS 1.3
/// writes the list as it is.
pub fn schemes_on_wire(version: TlsVersion, schemes: &[u16]) -> Vec<u16> {
    schemes
        .iter()
        .copied()
        .filter(|s| version == TlsVersion::Tls13 || has_algorithm(SignatureScheme::from(*s)))
        .collect()
}

/// The CertificateRequest's fixed part when the verifier offers `schemes`
/// (`None`: the provider's own, as [`message_shape`]).
pub fn message_shape_with(version: TlsVersion, schemes: Option<&[u16]>) -> MessageShape {
    match schemes {
        None => message_shape(version),
        Some(list) => MessageShape {
            version,
            cert_types: match version {
                TlsVersion::Tls12 => 2,
                TlsVersion::Tls13 => 0,
            },
            sig_schemes: schemes_on_wire(version, list).len(),
        },
    }
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
pub fn server_config(inputs: TlsInputs<'_>) -> Result<ServerTls, TlsError> {
    let fragments = certgen::wire::MIN_FRAGMENT..=certgen::wire::MAX_FRAGMENT;
    if !fragments.contains(&inputs.max_fragment) {
        return Err(TlsError::Fragment(inputs.max_fragment));
    }
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions(inputs.version, inputs.tls12_beside_tls13))?;
    let mut rejected = 0;
    let mut strict = None;
    let mut outer = None;
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
                WebPkiClientVerifier::builder_with_provider(Arc::new(anchors), provider.clone())
                    .clear_root_hint_subjects()
                    .add_root_hint_subjects(hints);
            if inputs.client_auth == ClientAuth::Optional {
                verifier = verifier.allow_unauthenticated();
            }
            let inner: Arc<dyn ClientCertVerifier> = verifier.build()?;
            strict = Some(inner.clone());
            let verifier = PersonaVerifier {
                inner,
                schemes: inputs.schemes,
                accept_untrusted: inputs.accept_untrusted,
                reject_all: inputs.reject_all,
                hints: None,
            };
            outer = Some(verifier.clone());
            builder.with_client_cert_verifier(Arc::new(verifier))
        }
    };
    let rebuild = outer.map(|verifier| Rebuild {
        provider: provider.clone(),
        version: inputs.version,
        tls12_beside_tls13: inputs.tls12_beside_tls13,
        verifier,
        chain: inputs.chain.clone(),
        key: inputs.key.clone_key(),
        max_fragment: inputs.max_fragment,
        keylog: inputs.keylog,
    });
    let config = finish(
        builder,
        inputs.chain,
        inputs.key,
        inputs.max_fragment,
        inputs.keylog,
    )?;
    Ok(ServerTls {
        config: Arc::new(config),
        rejected,
        verifier: strict,
        rebuild,
    })
}

pub use crate::shaped::{ShapedStream, WireFacts};
