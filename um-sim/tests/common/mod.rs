//! A small Hub for um-sim's tests over real TCP: an SMTP + STARTTLS server on
//! rustls, built here (lab-server is not a dependency of um-sim), which
//! requires a client certificate, verifies it against its own trust anchors
//! and advertises a chosen list of names; and one submission by um-sim's
//! client against it.

#![allow(dead_code)] // each test file uses its part

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use certgen::Root;
use certgen::pki::LabPki;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{DistinguishedName, RootCertStore, ServerConfig};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use um_sim::client::{Attempt, ClientSettings, Identity, submit};
use um_sim::profile::Profile;

/// Runs the `um-sim` binary to completion.
pub fn um_sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_um-sim"))
        .args(args)
        .output()
        .expect("um-sim runs")
}

/// The names of the files in `dir` ending in `ext`, sorted (none when the
/// folder is missing).
pub fn files(dir: &Path, ext: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(ext))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub const TIMEOUT: Duration = Duration::from_secs(10);

pub fn subject(der: &[u8]) -> Vec<u8> {
    Root::from_der(der.to_vec())
        .expect("a certificate")
        .subject_der()
        .to_vec()
}

pub fn key(pki_key: &certgen::LabKey) -> PrivateKeyDer<'static> {
    PrivateKeyDer::try_from(pki_key.pkcs8_der().expect("PKCS #8").to_vec()).expect("key")
}

pub fn certs(chain: Vec<&[u8]>) -> Vec<CertificateDer<'static>> {
    chain
        .into_iter()
        .map(|c| CertificateDer::from(c.to_vec()))
        .collect()
}

/// What the server saw of one connection.
#[derive(Debug)]
pub struct ServerSaw {
    /// The client's chain length, or the handshake error.
    pub handshake: Result<usize, String>,
    /// Whether the message data arrived.
    pub data: bool,
}

/// Reads one line; `None` at the end of the stream.
async fn line<S: AsyncRead + Unpin>(io: &mut BufReader<S>) -> Option<String> {
    let mut l = String::new();
    match io.read_line(&mut l).await {
        Ok(n) if n > 0 => Some(l),
        _ => None,
    }
}

/// The SMTP session after STARTTLS: EHLO, MAIL, RCPT, DATA, QUIT.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(io: &mut BufReader<S>) -> bool {
    let mut data = false;
    while let Some(l) = line(io).await {
        let verb = l.get(..4).unwrap_or_default().to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250 hub.lab.test\r\n",
            "MAIL" | "RCPT" => b"250 ok\r\n",
            "DATA" => {
                let _ = io.get_mut().write_all(b"354 go on\r\n").await;
                while let Some(d) = line(io).await {
                    if d == ".\r\n" {
                        data = true;
                        break;
                    }
                }
                b"250 stored\r\n"
            }
            "QUIT" => {
                let _ = io.get_mut().write_all(b"221 bye\r\n").await;
                break;
            }
            _ => b"500 what\r\n",
        };
        if io.get_mut().write_all(reply).await.is_err() {
            break;
        }
    }
    data
}

/// One connection: the plaintext greeting and STARTTLS, the handshake with
/// client authentication required, then the session.
async fn serve_one(listener: TcpListener, config: Arc<ServerConfig>) -> ServerSaw {
    let Ok((tcp, _)) = listener.accept().await else {
        return ServerSaw {
            handshake: Err("no connection".to_owned()),
            data: false,
        };
    };
    let mut io = BufReader::new(tcp);
    let _ = io.get_mut().write_all(b"220 hub.lab.test ESMTP\r\n").await;
    let _ = line(&mut io).await; // EHLO
    let _ = io
        .get_mut()
        .write_all(b"250-hub.lab.test\r\n250 STARTTLS\r\n")
        .await;
    let _ = line(&mut io).await; // STARTTLS
    let _ = io.get_mut().write_all(b"220 ready\r\n").await;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    match acceptor.accept(io.into_inner()).await {
        Ok(tls) => {
            let n = tls.get_ref().1.peer_certificates().map_or(0, <[_]>::len);
            let mut io = BufReader::new(tls);
            let data = session(&mut io).await;
            ServerSaw {
                handshake: Ok(n),
                data,
            }
        }
        Err(e) => ServerSaw {
            handshake: Err(e.to_string()),
            data: false,
        },
    }
}

/// A Hub that trusts `anchors`, advertises `hints` and presents the PKI's
/// Hub chain, in TLS 1.2 or 1.3.
pub fn hub_config(
    pki: &LabPki,
    anchors: &[&[u8]],
    hints: &[Vec<u8>],
    version: &'static rustls::SupportedProtocolVersion,
) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for a in anchors {
        roots.add(CertificateDer::from(a.to_vec())).expect("anchor");
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .clear_root_hint_subjects()
        .add_root_hint_subjects(hints.iter().cloned().map(DistinguishedName::from))
        .build()
        .expect("verifier");
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(pki.hub_chain()), key(&pki.hub.key))
        .expect("server config");
    Arc::new(config)
}

/// One submission by um-sim's client under `profile` to a Hub configured as
/// given; returns um-sim's attempt and what the Hub saw.
pub async fn attempt(
    pki: &LabPki,
    profile: &str,
    anchors: &[&[u8]],
    hints: &[Vec<u8>],
    version: &'static rustls::SupportedProtocolVersion,
) -> (Attempt, ServerSaw) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = tokio::spawn(serve_one(
        listener,
        hub_config(pki, anchors, hints, version),
    ));
    let mut server_roots = RootCertStore::empty();
    server_roots
        .add(CertificateDer::from(pki.hub_anchor().to_vec()))
        .expect("hub anchor");
    let settings = ClientSettings {
        server: addr.to_string(),
        server_name: ServerName::try_from("hub.lab.test").expect("name"),
        server_roots: Arc::new(server_roots),
        helo: "um.lab.test".to_owned(),
        from: "um@um.lab.test".to_owned(),
        connect_timeout: TIMEOUT,
        io_timeout: TIMEOUT,
    };
    let identity = Identity::new(certs(pki.um_chain()), key(&pki.um.key)).expect("identity");
    let profile: Profile = profile.parse().expect("profile");
    let message = b"Subject: voice mail\r\n\r\nhello\r\n";
    let attempt = submit(
        &settings,
        &identity,
        &profile,
        "user@lab.test",
        message,
        async || {},
    )
    .await;
    let saw = tokio::time::timeout(TIMEOUT, server)
        .await
        .expect("the server ends")
        .expect("the server task");
    (attempt, saw)
}

/// TLS 1.2: the CertificateRequest in plaintext, where the tap reads it.
pub const TLS12: &rustls::SupportedProtocolVersion = &rustls::version::TLS12;
/// TLS 1.3.
pub const TLS13: &rustls::SupportedProtocolVersion = &rustls::version::TLS13;
