//! The TLS version each preset negotiates, against a lab-server that offers
//! TLS 1.3 (and 1.2, as every real server allowing TLS 1.3 does): Schannel
//! on 2008 R2 has no TLS 1.3, so um-sim with that preset negotiates TLS 1.2
//! and its limit is judged on the plaintext request, exactly as against a
//! TLS 1.2 server; a stack with TLS 1.3 gets the encrypted request, which
//! um-sim's tap decrypts and judges.

use std::time::Duration;

use certgen::pki::Shape;
use lab_server::policy::{Policy, TlsVersion};
use um_sim::client::FailureClass;
use um_sim::profile::Rule;

use crate::case::{ca_root, pki, run_um_sim, start};
use crate::sizing;

/// Bytes of names for a request of about 34 KB: over Schannel's 32,768
/// (and far over the 16 KB a Schannel Hub would keep).
const LIST: usize = 34_000;

/// Runs `profile` against a TLS 1.3 lab-server whose list is [`LIST`]
/// bytes; checks the version, what the tap saw and the rule.
async fn against_tls13_server(profile: &str, want: TlsVersion) -> Result<String, String> {
    let one = pki(Shape::OneTier);
    let (store, at) = sizing::store(LIST, &ca_root(one));
    let mut lab = start(one, store, at, Policy::Full, None, TlsVersion::Tls13)
        .await
        .map_err(|e| format!("lab-server: {e}"))?;
    let (attempt, event) = run_um_sim(&mut lab, profile).await;
    lab.server.shutdown(Duration::from_secs(1)).await;
    let mut problems = Vec::new();
    let body = sizing::shape(want).body_len(LIST);
    let seen = attempt.certificate_request.clone().unwrap_or_default();
    if seen.body_bytes != body || seen.encrypted != (want == TlsVersion::Tls13) {
        problems.push(format!(
            "the tap saw a {}-byte body (encrypted {}), want the TLS {want:?} body of {body}",
            seen.body_bytes, seen.encrypted
        ));
    }
    if attempt.failure != Some(FailureClass::ProfileRule)
        || attempt.rule != Some(Rule::MaxBody(32_768))
        || attempt.delivered
    {
        problems.push(format!(
            "want a failure on max-body=32768, got {:?} rule {:?}: {:?}",
            attempt.failure, attempt.rule, attempt.error
        ));
    }
    let cr = event.as_ref().and_then(|e| e.certificate_request.clone());
    let source = if want == TlsVersion::Tls12 {
        "wire"
    } else {
        "encoding"
    };
    if cr.as_ref().map(|c| (c.source, c.bytes)) != Some((source, body + 4)) {
        problems.push(format!("the server's event: {cr:?}"));
    }
    let summary = format!(
        "{profile} against a TLS 1.3 server, {LIST} bytes of names: TLS {want:?}, body {} \
         (encrypted {}), {:?} on {:?}",
        seen.body_bytes, seen.encrypted, attempt.failure, attempt.rule
    );
    if problems.is_empty() {
        Ok(summary)
    } else {
        Err(format!("{summary}\n  - {}", problems.join("\n  - ")))
    }
}

/// Schannel 2008 R2 negotiates TLS 1.2 with a TLS 1.3 server and fails
/// on its limit, as against a TLS 1.2 server.
pub async fn schannel_negotiates_tls12() -> Result<String, String> {
    against_tls13_server("schannel-2008r2", TlsVersion::Tls12).await
}

/// Java 17 negotiates TLS 1.3: the tap decrypts the request and Java's
/// limit holds there too (measured against the real Java in `java-tls13`).
pub async fn java_judged_in_tls13() -> Result<String, String> {
    against_tls13_server("java17", TlsVersion::Tls13).await
}
