//! TLS for the Hub: the rustls server configuration and the shaped stream.
//!
//! Like Schannel, the server verifies client chains against the whole store
//! while advertising only the policy's list: `WebPkiClientVerifier` built on
//! every root, with its root hints replaced by the planned names.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::SignatureScheme;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::policy::{MessageShape, TlsVersion};
use crate::shaper::{Layout, Observed, Shaper};

/// Whether the Hub asks for a client certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAuth {
    /// Ask, and fail the handshake without one (the Hub's setting).
    Required,
    /// Ask, and accept a client without one.
    Optional,
    /// Do not ask (no CertificateRequest at all).
    None,
}

crate::policy::parse_enum!(ClientAuth, "client auth", "required" => ClientAuth::Required, "optional" => ClientAuth::Optional, "none" => ClientAuth::None);

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
    #[error("--max-fragment {0} is out of range: 32..=16389 bytes, record header included")]
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

/// What the shaper saw go out, shared with the connection, which keeps it
/// when a failed handshake drops the stream: the incident's own connection is
/// the one whose CertificateRequest matters most.
#[derive(Clone, Debug, Default)]
pub struct WireFacts {
    /// The CertificateRequest as sent.
    pub request: Option<Observed>,
    /// The plaintext alert (level, description) that ended the flight.
    pub alert: Option<[u8; 2]>,
    /// Whether a ServerHello went out.
    pub server_hello: bool,
}

/// A stream whose outbound bytes pass through a [`Shaper`]: TLS writes go
/// through it, reads pass untouched.
pub struct ShapedStream<S> {
    inner: S,
    shaper: Shaper,
    facts: Arc<std::sync::Mutex<WireFacts>>,
    out: Vec<u8>,
    written: usize,
}

/// Output held before a write reports back-pressure.
const HIGH_WATER: usize = 64 * 1024;

impl<S> ShapedStream<S> {
    /// Wraps `inner`; `facts` receives what the shaper sees go out.
    pub fn new(
        inner: S,
        layout: Layout,
        max_fragment: usize,
        facts: Arc<std::sync::Mutex<WireFacts>>,
    ) -> ShapedStream<S> {
        ShapedStream {
            inner,
            shaper: Shaper::new(layout, max_fragment),
            facts,
            out: Vec::new(),
            written: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> ShapedStream<S> {
    /// Writes held output; Ready(Ok) when all of it is out.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            let pending = self.out.get(self.written..).unwrap_or_default();
            match Pin::new(&mut self.inner).poll_write(cx, pending) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.out.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ShapedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ShapedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.out.len() - this.written >= HIGH_WATER {
            match this.drain(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let was_passthrough = this.shaper.is_passthrough();
        this.shaper.feed(buf, &mut this.out);
        if !was_passthrough && let Ok(mut facts) = this.facts.lock() {
            facts.request = this.shaper.observed().cloned();
            facts.alert = this.shaper.alert();
            facts.server_hello = this.shaper.server_hello_sent();
        }
        // Push what we can now; the rest goes out on flush (tokio-rustls
        // flushes after every handshake flight).
        if let Poll::Ready(Err(e)) = this.drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_shutdown(cx),
            other => other,
        }
    }
}
