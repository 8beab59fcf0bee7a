//! `umlab probe HOST:PORT`: one handshake with a real server, as a client
//! that asks nothing of it but its CertificateRequest, and the verdict of
//! every client stack um-sim models on that request.
//!
//! The probe runs the STARTTLS dialogue (SMTP, IMAP, POP3, LDAP, or none),
//! performs one TLS handshake with rustls while reading the server's first
//! flight below it (TLS 1.2: the plaintext CertificateRequest with its
//! records; TLS 1.3: the protected records, decrypted with the server
//! handshake traffic secret the probe's own rustls logs, so the request is
//! read as exactly as in TLS 1.2; only when that is impossible, the names rustls hands its
//! certificate resolver, with the reason), says
//! goodbye (QUIT, LOGOUT, unbind) and sends nothing else. The report
//! ([`report`], pure) decodes the request, measures its list against the
//! 16 KB / 32 KB / 64 KB marks, warns when it sits just under 16,384 bytes
//! (Schannel truncation), checks the client's issuers, and judges every
//! preset with um-sim's own rules.
//!
//! Parts: [`wire`] (the first flight, pure), [`ldap`] (StartTLS in BER,
//! pure), [`report`] (figures and verdicts, pure), `net` (the I/O edge).

pub mod ldap;
mod net;
pub mod report;
pub mod wire;

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use um_sim::client::Identity;
use um_sim::profile::Profile;

pub use report::{Client, Outcome, Report, Verdict};

/// The STARTTLS dialogue before the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Starttls {
    /// SMTP (RFC 3207): EHLO, STARTTLS; QUIT after.
    Smtp,
    /// IMAP (RFC 9051): STARTTLS; LOGOUT after.
    Imap,
    /// POP3 (RFC 2595): STLS; QUIT after.
    Pop3,
    /// LDAP (RFC 4511): the StartTLS extended operation; unbind after.
    Ldap,
    /// TLS from the first byte.
    None,
}

impl Starttls {
    /// The dialogue a port usually speaks: 25, 587, 2525 SMTP; 143 IMAP;
    /// 110 POP3; 389 LDAP; anything else none.
    pub fn for_port(port: u16) -> Starttls {
        match port {
            25 | 587 | 2525 => Starttls::Smtp,
            143 => Starttls::Imap,
            110 => Starttls::Pop3,
            389 => Starttls::Ldap,
            _ => Starttls::None,
        }
    }
}

impl fmt::Display for Starttls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Starttls::Smtp => "smtp",
            Starttls::Imap => "imap",
            Starttls::Pop3 => "pop3",
            Starttls::Ldap => "ldap",
            Starttls::None => "none",
        })
    }
}

impl FromStr for Starttls {
    type Err = String;

    fn from_str(s: &str) -> Result<Starttls, String> {
        match s {
            "smtp" => Ok(Starttls::Smtp),
            "imap" => Ok(Starttls::Imap),
            "pop3" => Ok(Starttls::Pop3),
            "ldap" => Ok(Starttls::Ldap),
            "none" => Ok(Starttls::None),
            _ => Err(format!(
                "unknown STARTTLS dialogue {s:?}: smtp, imap, pop3, ldap or none"
            )),
        }
    }
}

/// The one TLS version the probe offers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum TlsChoice {
    /// TLS 1.2: the request travels in plaintext and is read on the wire.
    #[default]
    Tls12,
    /// TLS 1.3: the request is encrypted; the probe decrypts its own
    /// connection's records with the secret its rustls logs.
    Tls13,
}

impl FromStr for TlsChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<TlsChoice, String> {
        match s {
            "1.2" => Ok(TlsChoice::Tls12),
            "1.3" => Ok(TlsChoice::Tls13),
            _ => Err(format!("unknown TLS version {s:?}: 1.2 or 1.3")),
        }
    }
}

/// Why the probe could not judge the server (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A setting or file of the command line.
    #[error("{0}")]
    Usage(String),
    /// The TCP connection failed.
    #[error("cannot connect to {0}")]
    Connect(String),
    /// A wait passed the timeout.
    #[error("{what}: no answer within {seconds} s")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The timeout.
        seconds: f64,
    },
    /// The STARTTLS dialogue failed.
    #[error("STARTTLS: {0}")]
    Starttls(String),
    /// The server's answer to the ClientHello is not TLS.
    #[error("{0}")]
    NotTls(String),
    /// The first flight stopped in the middle.
    #[error("{0}")]
    Truncated(String),
    /// The handshake failed before the request was seen.
    #[error("TLS handshake: {0}")]
    Handshake(String),
    /// The server asked no client certificate.
    #[error("the server sent no CertificateRequest: it asks no client certificate")]
    NoCertificateRequest,
    /// The CertificateRequest does not decode.
    #[error("the CertificateRequest does not decode: {0}")]
    BadRequest(String),
}

/// What to probe, and for which client.
#[derive(Clone, Debug)]
pub struct Request {
    /// `host:port`.
    pub target: String,
    /// The dialogue; `None`: by port ([`Starttls::for_port`]).
    pub starttls: Option<Starttls>,
    /// The version offered.
    pub tls: TlsChoice,
    /// A client identity to present and check (`--cert`, `--key`).
    pub identity: Option<Identity>,
    /// More names the client's chain needs listed (`--issuer`): (source,
    /// subject DER).
    pub issuers: Vec<(String, Vec<u8>)>,
    /// Anchors to verify the server with (`--server-ca`): (label, certs).
    pub server_ca: Option<(String, Vec<CertificateDer<'static>>)>,
    /// The name to verify (and send as SNI); default the host.
    pub servername: Option<String>,
    /// Bound on connecting, each read, and the handshake.
    pub timeout: Duration,
    /// The presets to judge; empty: every preset and lenient.
    pub presets: Vec<Profile>,
}

impl Request {
    /// A request with the defaults: STARTTLS by port, TLS 1.2, 10 s.
    pub fn new(target: impl Into<String>) -> Request {
        Request {
            target: target.into(),
            starttls: None,
            tls: TlsChoice::Tls12,
            identity: None,
            issuers: Vec::new(),
            server_ca: None,
            servername: None,
            timeout: Duration::from_secs(10),
            presets: Vec::new(),
        }
    }

    /// The dialogue to run.
    pub fn starttls_or_default(&self) -> Starttls {
        self.starttls.unwrap_or_else(|| {
            let port = self
                .target
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse().ok())
                .unwrap_or(0);
            Starttls::for_port(port)
        })
    }

    /// The client the verdicts are for.
    fn client(&self) -> Result<Client, ProbeError> {
        let presets = if self.presets.is_empty() {
            crate::analyze::preset_names()
                .into_iter()
                .map(|n| n.parse::<Profile>().map_err(ProbeError::Usage))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            self.presets.clone()
        };
        let mut issuers: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(id) = &self.identity {
            for (i, der) in id.chain_issuers.iter().enumerate() {
                issuers.push((
                    format!("issuer of certificate {} of --cert", i + 1),
                    der.clone(),
                ));
            }
        }
        for (from, der) in &self.issuers {
            if !issuers.iter().any(|(_, d)| d == der) {
                issuers.push((from.clone(), der.clone()));
            }
        }
        Ok(Client { issuers, presets })
    }
}

/// Probes the server and judges every client.
pub async fn probe(req: &Request) -> Result<Report, ProbeError> {
    if req
        .target
        .rsplit_once(':')
        .is_none_or(|(_, p)| p.parse::<u16>().is_err())
    {
        return Err(ProbeError::Usage(format!(
            "{:?} is not HOST:PORT",
            req.target
        )));
    }
    let client = req.client()?;
    let obs = net::observe(req).await?;
    Ok(Report::new(&obs, &client))
}

/// Reads a file of at most 1 MiB.
fn read_small(path: &Path, what: &str) -> Result<Vec<u8>, ProbeError> {
    certgen::fsutil::read_capped(path, 1 << 20)
        .map_err(|e| ProbeError::Usage(format!("{what} {}: {e}", path.display())))
}

/// The certificates of a PEM file, in order (at least one).
pub fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, ProbeError> {
    let pem = read_small(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ProbeError::Usage(format!("{what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ProbeError::Usage(format!(
            "{what} {}: no certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}

/// A client identity from a PEM chain (leaf first) and its PEM key.
pub fn load_identity(cert: &Path, key: &Path) -> Result<Identity, ProbeError> {
    let chain = load_certs(cert, "--cert")?;
    let pem = read_small(key, "--key")?;
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| ProbeError::Usage(format!("--key {}: {e}", key.display())))?;
    Identity::new(chain, key).map_err(|e| ProbeError::Usage(format!("--cert: {e}")))
}

/// The subjects of an issuer file's certificates, each with its source.
pub fn load_issuers(path: &Path) -> Result<Vec<(String, Vec<u8>)>, ProbeError> {
    load_certs(path, "--issuer")?
        .into_iter()
        .enumerate()
        .map(|(i, der)| {
            certgen::Root::from_der(der.as_ref().to_vec())
                .map(|r| {
                    (
                        format!("--issuer {} #{}", path.display(), i + 1),
                        r.subject_der().to_vec(),
                    )
                })
                .map_err(|e| ProbeError::Usage(format!("--issuer {}: {e}", path.display())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dialogue_follows_the_port_unless_given() {
        for (port, want) in [
            (25, Starttls::Smtp),
            (587, Starttls::Smtp),
            (2525, Starttls::Smtp),
            (143, Starttls::Imap),
            (110, Starttls::Pop3),
            (389, Starttls::Ldap),
            (443, Starttls::None),
            (636, Starttls::None),
        ] {
            assert_eq!(Starttls::for_port(port), want, "{port}");
            let r = Request::new(format!("mail.example:{port}"));
            assert_eq!(r.starttls_or_default(), want);
            assert_eq!(want.to_string().parse::<Starttls>(), Ok(want));
        }
        let mut r = Request::new("[::1]:25");
        assert_eq!(r.starttls_or_default(), Starttls::Smtp);
        r.starttls = Some(Starttls::None);
        assert_eq!(r.starttls_or_default(), Starttls::None);
        assert_eq!(net::host_of("[::1]:25"), "::1");
        assert_eq!(net::host_of("hub.example:2525"), "hub.example");
        assert!("smtps".parse::<Starttls>().is_err());
        assert_eq!("1.3".parse::<TlsChoice>(), Ok(TlsChoice::Tls13));
        assert!("1.1".parse::<TlsChoice>().is_err());
    }

    #[tokio::test]
    async fn a_target_without_a_port_is_refused_before_any_connection() {
        let err = probe(&Request::new("hub.example"))
            .await
            .expect_err("no port");
        assert!(err.to_string().contains("HOST:PORT"), "{err}");
    }
}
