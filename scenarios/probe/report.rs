//! The probe's report, pure: from what one handshake observed (the
//! CertificateRequest on the wire, decrypted from TLS 1.3's protected
//! records, or, when it could not be decrypted, as rustls handed it to the
//! certificate resolver; and how the server took the probe's own answer) to the figures
//! an administrator needs and the verdict for every client preset of um-sim
//! ([`um_sim::presets::PRESETS`] and `lenient`), judged by um-sim's own rules
//! ([`Profile::judge`], [`Profile::presents_chain`]) so the probe and a
//! measured scenario can never disagree on a limit.

use std::fmt;

use certgen::wire::{CertificateRequest12, JAVA_LIMIT, NAME_LEN_PREFIX, SCHANNEL_LIMIT, U16_MAX};
use serde::Serialize;
use um_sim::presets::Version;
use um_sim::profile::{Profile, RequestFacts, Rule};
use um_sim::tls13::CertificateRequest13;

use super::wire::{
    FlightMessage, RecordSpan, ServerHello, certificate_type_name, cipher_suite_name, scheme_name,
    version_name,
};

/// Where the probe read the CertificateRequest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layer {
    /// TLS 1.2: the plaintext records, read below rustls.
    Wire,
    /// TLS 1.3: the protected records, read below rustls and decrypted with
    /// the server handshake traffic secret the probe's own rustls logged.
    Decrypted,
    /// TLS 1.3 when the records could not be decrypted: the names and
    /// schemes rustls handed to the client certificate resolver.
    Resolver,
}

impl Layer {
    fn describe(self) -> &'static str {
        match self {
            Layer::Wire => "read on the wire, below rustls (TLS 1.2 sends it in plaintext)",
            Layer::Decrypted => {
                "read on the wire, below rustls, and decrypted with the lab's own key log (TLS \
                 1.3 encrypts it; the probe is the TLS client, so its own rustls holds the \
                 handshake secrets: no one else's TLS is broken)"
            }
            Layer::Resolver => {
                "NOT decrypted; only what rustls handed to the client certificate resolver \
                 (TLS 1.3 encrypts it)"
            }
        }
    }
}

/// The CertificateRequest as the probe saw it.
#[derive(Clone, Debug)]
pub enum Seen {
    /// TLS 1.2, on the wire.
    Wire {
        /// The body, decoded.
        request: CertificateRequest12,
        /// Body bytes.
        body_bytes: usize,
        /// The records it spanned.
        records: Vec<RecordSpan>,
        /// um-sim's `max-buffer` measure of it.
        buffered_bytes: usize,
    },
    /// TLS 1.3, on the wire, decrypted.
    Decrypted {
        /// The body, decoded.
        request: CertificateRequest13,
        /// Body bytes.
        body_bytes: usize,
        /// The protected records it spanned.
        records: Vec<RecordSpan>,
        /// um-sim's `max-buffer` measure of it (protected records whole).
        buffered_bytes: usize,
    },
    /// TLS 1.3 when the records could not be decrypted: from the resolver.
    Resolver {
        /// The names, DER, in order.
        names: Vec<Vec<u8>>,
        /// The signature schemes.
        schemes: Vec<u16>,
        /// Why the records could not be decrypted.
        why: String,
    },
}

impl Seen {
    fn names(&self) -> &[Vec<u8>] {
        match self {
            Seen::Wire { request, .. } => &request.ca_names,
            Seen::Decrypted { request, .. } => &request.ca_names,
            Seen::Resolver { names, .. } => names,
        }
    }

    /// The exact figures, when the message itself was read: (body bytes,
    /// records, buffered bytes).
    fn exact(&self) -> Option<(usize, &[RecordSpan], usize)> {
        match self {
            Seen::Wire {
                body_bytes,
                records,
                buffered_bytes,
                ..
            }
            | Seen::Decrypted {
                body_bytes,
                records,
                buffered_bytes,
                ..
            } => Some((*body_bytes, records, *buffered_bytes)),
            Seen::Resolver { .. } => None,
        }
    }
}

/// How the server took the probe's own answer to its request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "answer", content = "detail", rename_all = "kebab-case")]
pub enum ServerAnswer {
    /// The handshake completed and the server went on.
    Accepted,
    /// The server ended the handshake or the session (its alert or reply).
    Refused(String),
    /// The probe's own TLS stack stopped first (the text says why): the
    /// server's answer is unknown.
    Unknown(String),
}

/// The probe's own handshake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OwnHandshake {
    /// Whether the probe presented the `--cert` chain.
    pub certificate_sent: bool,
    /// How the server took it.
    pub answer: ServerAnswer,
}

/// What verifying the server's own chain gave (the probe never depends on it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServerVerification {
    /// The anchors: `--server-ca FILE` or the system bundle's path.
    pub against: String,
    /// `None` when it verified, else why not.
    pub error: Option<String>,
}

/// One certificate of the server's chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainEntry {
    /// Subject.
    pub subject: String,
    /// Issuer.
    pub issuer: String,
}

/// One of the names the client's chain needs, and whether it is listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IssuerRow {
    /// Where it comes from: `certificate 1 of --cert` or `--issuer`.
    pub from: String,
    /// The issuer name, as text.
    pub name: String,
    /// Its position in the list (1-based), when listed.
    pub listed_at: Option<usize>,
    /// The DER, for matching.
    #[serde(skip)]
    pub der: Vec<u8>,
}

/// What the probe knows of the client it stands for.
#[derive(Clone, Debug, Default)]
pub struct Client {
    /// The names a withholding stack looks for, each with its source:
    /// the issuer of each certificate of `--cert`, then `--issuer`'s subjects.
    pub issuers: Vec<(String, Vec<u8>)>,
    /// The presets to judge (all, and lenient, by default).
    pub presets: Vec<Profile>,
}

/// Everything one handshake observed.
#[derive(Clone, Debug)]
pub struct Observation {
    /// `host:port`.
    pub target: String,
    /// `smtp`, `imap`, `pop3`, `ldap` or `none`.
    pub starttls: String,
    /// The ServerHello.
    pub hello: ServerHello,
    /// The plaintext flight's messages (TLS 1.2; the ServerHello alone in 1.3).
    pub flight: Vec<FlightMessage>,
    /// TLS 1.3: the decrypted flight's messages (empty when not decrypted).
    pub decrypted_flight: Vec<FlightMessage>,
    /// The request.
    pub seen: Seen,
    /// The server's chain, DER, leaf first.
    pub server_chain: Vec<Vec<u8>>,
    /// Verifying it.
    pub verification: ServerVerification,
    /// The probe's handshake.
    pub handshake: OwnHandshake,
    /// Bytes the STARTTLS dialogue left in the buffer (discarded).
    pub discarded: usize,
}

/// A code point and its name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Code {
    /// The value.
    pub code: u16,
    /// Its name.
    pub name: String,
}

/// One CA name of the list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NameRow {
    /// Position, 1-based.
    pub position: usize,
    /// The Name as text.
    pub subject: String,
    /// DER bytes.
    pub der_bytes: usize,
    /// Bytes of the list up to and including it (2 + DER each).
    pub running_total: usize,
}

/// The list against one of the marks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mark {
    /// Bytes.
    pub bytes: usize,
    /// What it is.
    pub meaning: &'static str,
    /// Whether the list passes it.
    pub over: bool,
}

/// The mark of Schannel truncation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SchannelMark {
    /// Bytes of names sent.
    pub list_bytes: usize,
    /// How far under 16,384.
    pub under_by: usize,
    /// The largest name's cost in the list (2 + DER): "near" is under this.
    pub largest_name: usize,
}

/// One extension of a TLS 1.3 CertificateRequest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExtensionRow {
    /// Its type.
    pub code: u16,
    /// Its name.
    pub name: String,
    /// Its bytes in the body, 4-byte type and length included.
    pub bytes: usize,
}

/// The name of a CertificateRequest extension (RFC 8446 4.2).
fn extension_name(code: u16) -> String {
    match code {
        13 => "signature_algorithms".to_owned(),
        47 => "certificate_authorities".to_owned(),
        50 => "signature_algorithms_cert".to_owned(),
        5 => "status_request".to_owned(),
        18 => "signed_certificate_timestamp".to_owned(),
        48 => "oid_filters".to_owned(),
        other => format!("extension {other}"),
    }
}

/// The CertificateRequest, decoded.
#[derive(Clone, Debug, Serialize)]
pub struct RequestView {
    /// Where it was read.
    pub layer: Layer,
    /// certificate_types (TLS 1.2; none in 1.3).
    pub certificate_types: Vec<Code>,
    /// The signature schemes.
    pub signature_schemes: Vec<Code>,
    /// TLS 1.3 (decrypted): every extension with its size, in order.
    pub extensions: Vec<ExtensionRow>,
    /// Every name.
    pub names: Vec<NameRow>,
    /// Bytes of names (sum of 2 + DER).
    pub list_bytes: usize,
    /// Body bytes, exact (`None` only when TLS 1.3 could not be decrypted).
    pub body_bytes: Option<usize>,
    /// TLS 1.3 not decrypted: the least the body can be, from the names and
    /// schemes (extensions rustls does not pass on are not counted).
    pub body_bytes_at_least: Option<usize>,
    /// The records it spanned (TLS 1.3: the protected records).
    pub records: Option<Vec<RecordSpan>>,
    /// um-sim's `max-buffer` measure.
    pub buffered_bytes: Option<usize>,
    /// TLS 1.3 not decrypted: why, and so why bodies and records are unknown.
    pub unobserved: Option<String>,
    /// The list against 16,384 / 32,768 / 65,535.
    pub marks: Vec<Mark>,
    /// Set when the list sits just under 16,384.
    pub schannel_truncation: Option<SchannelMark>,
}

/// One preset's fate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Outcome {
    /// It presents its certificate and takes the request.
    Delivers {
        /// Its issuer was assumed listed (no `--cert` or `--issuer`).
        assumed_listed: bool,
    },
    /// It cannot take the request.
    Fails {
        /// The rule it breaks (`None`: the server refused the certificate).
        rule: Option<Rule>,
        /// What the stack reports, as recorded (DESIGN.md 2a).
        error: String,
    },
    /// It sends no certificate: no issuer of its chain is listed.
    Withholds {
        /// Whether this server ends a handshake without one (`None`: not
        /// tested here, because the probe presented `--cert`).
        server_refuses: Option<bool>,
    },
    /// TLS 1.3 hides what its rule needs.
    Unknown {
        /// Why.
        why: String,
    },
}

impl Outcome {
    /// Whether the client fails against this server: a broken rule, or a
    /// withheld certificate that the server requires (or was not shown to
    /// go without).
    pub fn fails(&self) -> bool {
        match self {
            Outcome::Fails { .. } => true,
            Outcome::Withholds { server_refuses } => *server_refuses != Some(false),
            Outcome::Delivers { .. } | Outcome::Unknown { .. } => false,
        }
    }
}

/// One verdict line.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// The preset.
    pub preset: String,
    /// The stack it models.
    pub stack: String,
    /// Whether a real-peer test proves the preset here.
    pub verified: bool,
    /// Its fate.
    pub outcome: Outcome,
    /// Whether that is a failure.
    pub fails: bool,
}

/// The whole report (`--json` prints it).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `host:port`.
    pub target: String,
    /// The STARTTLS dialogue used.
    pub starttls: String,
    /// Negotiated version.
    pub tls_version: String,
    /// Negotiated cipher suite.
    pub cipher_suite: String,
    /// The plaintext flight's messages.
    pub flight: Vec<FlightMessage>,
    /// TLS 1.3: the decrypted flight's messages, each with the protected
    /// records it spanned.
    pub decrypted_flight: Vec<FlightMessage>,
    /// The server's chain.
    pub server_chain: Vec<ChainEntry>,
    /// Verifying it.
    pub server_verification: ServerVerification,
    /// The request.
    pub request: RequestView,
    /// The client's issuers, each listed or not (empty without `--cert` or
    /// `--issuer`).
    pub issuers: Vec<IssuerRow>,
    /// The probe's own handshake.
    pub handshake: OwnHandshake,
    /// Bytes after the STARTTLS reply, discarded.
    pub discarded_after_starttls: usize,
    /// One per preset.
    pub verdicts: Vec<Verdict>,
    /// 0: every client passes; 1: one fails.
    pub exit_code: u8,
}

/// The marks a list is measured against.
const MARKS: [(usize, &str); 3] = [
    (SCHANNEL_LIMIT, "Schannel's cap on the list (KB 933430)"),
    (
        JAVA_LIMIT,
        "Java's jdk.tls.maxHandshakeMessageSize and Schannel's MessageLimitClient (they compare \
         the body)",
    ),
    (U16_MAX, "the TLS 1.2 bound of certificate_authorities"),
];

/// Why the sizes are hidden when TLS 1.3 could not be decrypted.
const HIDDEN: &str = "its records and exact body size are unknown; rustls passes on only the \
                      names and the signature schemes usable in TLS 1.3";

/// The fallback's explanation: why the records were not decrypted, and so
/// what is unknown.
fn hidden(why: &str) -> String {
    format!("TLS 1.3 records not decrypted ({why}): {HIDDEN}")
}

/// The subject and issuer of a DER certificate, as text.
pub fn chain_entry(der: &[u8]) -> ChainEntry {
    use x509_parser::prelude::{FromDer, X509Certificate};
    match X509Certificate::from_der(der) {
        Ok((_, c)) => ChainEntry {
            subject: c.subject().to_string(),
            issuer: c.issuer().to_string(),
        },
        Err(e) => ChainEntry {
            subject: format!("<not a certificate: {e}>"),
            issuer: String::new(),
        },
    }
}

/// The figures of a request.
fn view(seen: &Seen) -> RequestView {
    let names = seen.names();
    let mut total = 0;
    let rows: Vec<NameRow> = names
        .iter()
        .enumerate()
        .map(|(i, der)| {
            total += NAME_LEN_PREFIX + der.len();
            NameRow {
                position: i + 1,
                subject: certgen::store::subject_text(der),
                der_bytes: der.len(),
                running_total: total,
            }
        })
        .collect();
    let list_bytes = total;
    let largest = names
        .iter()
        .map(|n| NAME_LEN_PREFIX + n.len())
        .max()
        .unwrap_or(0);
    let under_by = SCHANNEL_LIMIT.saturating_sub(list_bytes);
    let schannel_truncation = (!names.is_empty()
        && list_bytes <= SCHANNEL_LIMIT
        && under_by < largest)
        .then_some(SchannelMark {
            list_bytes,
            under_by,
            largest_name: largest,
        });
    let marks = MARKS
        .iter()
        .map(|&(bytes, meaning)| Mark {
            bytes,
            meaning,
            over: list_bytes > bytes,
        })
        .collect();
    let codes = |v: &[u16]| -> Vec<Code> {
        v.iter()
            .map(|&code| Code {
                code,
                name: scheme_name(code),
            })
            .collect()
    };
    match seen {
        Seen::Wire {
            request,
            body_bytes,
            records,
            buffered_bytes,
        } => RequestView {
            layer: Layer::Wire,
            extensions: Vec::new(),
            certificate_types: request
                .cert_types
                .iter()
                .map(|&t| Code {
                    code: u16::from(t),
                    name: certificate_type_name(t).to_owned(),
                })
                .collect(),
            signature_schemes: codes(&request.sig_schemes),
            names: rows,
            list_bytes,
            body_bytes: Some(*body_bytes),
            body_bytes_at_least: None,
            records: Some(records.clone()),
            buffered_bytes: Some(*buffered_bytes),
            unobserved: None,
            marks,
            schannel_truncation,
        },
        Seen::Decrypted {
            request,
            body_bytes,
            records,
            buffered_bytes,
        } => RequestView {
            layer: Layer::Decrypted,
            certificate_types: Vec::new(),
            signature_schemes: codes(&request.sig_schemes),
            extensions: request
                .extensions
                .iter()
                .map(|&(code, len)| ExtensionRow {
                    code,
                    name: extension_name(code),
                    bytes: 4 + len,
                })
                .collect(),
            names: rows,
            list_bytes,
            body_bytes: Some(*body_bytes),
            body_bytes_at_least: None,
            records: Some(records.clone()),
            buffered_bytes: Some(*buffered_bytes),
            unobserved: None,
            marks,
            schannel_truncation,
        },
        Seen::Resolver {
            names,
            schemes,
            why,
        } => RequestView {
            layer: Layer::Resolver,
            certificate_types: Vec::new(),
            signature_schemes: codes(schemes),
            extensions: Vec::new(),
            names: rows,
            list_bytes,
            body_bytes: None,
            body_bytes_at_least: Some(tls13_body_at_least(names, schemes.len())),
            records: None,
            buffered_bytes: None,
            unobserved: Some(hidden(why)),
            marks,
            schannel_truncation,
        },
    }
}

/// The least a TLS 1.3 CertificateRequest body with these names and
/// `schemes` signature schemes can be (used only when the records could not
/// be decrypted): context<0..255> (empty),
/// extensions<2..2^16-1> holding signature_algorithms, then
/// certificate_authorities when names are sent.
fn tls13_body_at_least(names: &[Vec<u8>], schemes: usize) -> usize {
    let list: usize = names.iter().map(|n| NAME_LEN_PREFIX + n.len()).sum();
    let sigalgs = 4 + 2 + 2 * schemes;
    let cas = if names.is_empty() { 0 } else { 4 + 2 + list };
    1 + 2 + sigalgs + cas
}

/// One preset's fate against what was seen.
pub fn judge(
    profile: &Profile,
    seen: &Seen,
    issuers: &[(String, Vec<u8>)],
    own: &OwnHandshake,
) -> Outcome {
    let (probed, label) = match seen {
        Seen::Wire { .. } => (Version::Tls12, "1.2"),
        Seen::Decrypted { .. } | Seen::Resolver { .. } => (Version::Tls13, "1.3"),
    };
    if !profile.versions().contains(&probed) {
        let offers: Vec<&str> = profile.versions().iter().map(|v| v.as_str()).collect();
        return Outcome::Unknown {
            why: format!(
                "the server was probed over TLS {label}; this stack offers TLS {} only, and \
                 what the server sends there was not seen",
                offers.join(", ")
            ),
        };
    }
    let names: Vec<&[u8]> = seen.names().iter().map(Vec::as_slice).collect();
    match (seen.exact(), seen) {
        (Some((body_bytes, records, buffered_bytes)), _) => {
            let facts = RequestFacts {
                body_len: body_bytes,
                records: records.len(),
                complete: true,
                buffered: buffered_bytes,
            };
            if let Some(rule) = profile.judge(&facts) {
                return broken(profile, rule, body_bytes);
            }
        }
        (
            None,
            Seen::Resolver {
                names,
                schemes,
                why,
            },
        ) => {
            let least = tls13_body_at_least(names, schemes.len());
            if let Some(n) = profile.max_body()
                && least > n
            {
                return broken(profile, Rule::MaxBody(n), least);
            }
            let record_rule = profile
                .rules
                .iter()
                .find(|r| matches!(r, Rule::OneRecord | Rule::MaxBuffer(_)));
            if let Some(rule) = record_rule {
                return Outcome::Unknown {
                    why: format!("its rule {rule} needs the records: {}", hidden(why)),
                };
            }
        }
        (None, _) => {}
    }
    let chain: Vec<&[u8]> = issuers.iter().map(|(_, d)| d.as_slice()).collect();
    let assumed = issuers.is_empty() && profile.issuer_listed() && !names.is_empty();
    if !assumed && !profile.presents_chain(&names, &chain) {
        let server_refuses = match (&own.certificate_sent, &own.answer) {
            (false, ServerAnswer::Accepted) => Some(false),
            (false, ServerAnswer::Refused(_)) => Some(true),
            _ => None,
        };
        return Outcome::Withholds { server_refuses };
    }
    if let (true, ServerAnswer::Refused(why)) = (own.certificate_sent, &own.answer) {
        return Outcome::Fails {
            rule: None,
            error: format!("the server refused the certificate the probe presented: {why}"),
        };
    }
    Outcome::Delivers {
        assumed_listed: assumed,
    }
}

fn broken(profile: &Profile, rule: Rule, body: usize) -> Outcome {
    Outcome::Fails {
        rule: Some(rule),
        error: profile
            .prints(rule, body)
            .unwrap_or_else(|| "not recorded (DESIGN.md 2a)".to_owned()),
    }
}

impl Report {
    /// The report of one observation for one client.
    pub fn new(obs: &Observation, client: &Client) -> Report {
        let request = view(&obs.seen);
        let probed = match obs.seen {
            Seen::Wire { .. } => Version::Tls12,
            Seen::Decrypted { .. } | Seen::Resolver { .. } => Version::Tls13,
        };
        let names = obs.seen.names();
        let issuers = client
            .issuers
            .iter()
            .map(|(from, der)| IssuerRow {
                from: from.clone(),
                name: certgen::store::subject_text(der),
                listed_at: names.iter().position(|n| n == der).map(|i| i + 1),
                der: der.clone(),
            })
            .collect();
        let verdicts: Vec<Verdict> = client
            .presets
            .iter()
            .map(|p| {
                let outcome = judge(p, &obs.seen, &client.issuers, &obs.handshake);
                Verdict {
                    preset: p.name.clone(),
                    stack: p.stack.clone(),
                    verified: p.preset.is_some_and(|x| x.is_verified_over(probed)),
                    fails: outcome.fails(),
                    outcome,
                }
            })
            .collect();
        let exit_code = u8::from(verdicts.iter().any(|v| v.fails));
        Report {
            target: obs.target.clone(),
            starttls: obs.starttls.clone(),
            tls_version: version_name(obs.hello.version),
            cipher_suite: cipher_suite_name(obs.hello.cipher_suite),
            flight: obs.flight.clone(),
            decrypted_flight: obs.decrypted_flight.clone(),
            server_chain: obs.server_chain.iter().map(|d| chain_entry(d)).collect(),
            server_verification: obs.verification.clone(),
            request,
            issuers,
            handshake: obs.handshake.clone(),
            discarded_after_starttls: obs.discarded,
            verdicts,
            exit_code,
        }
    }
}

/// `12,345`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = thousands;
        let r = &self.request;
        writeln!(
            f,
            "server {} (STARTTLS {}): {}, {}",
            self.target, self.starttls, self.tls_version, self.cipher_suite
        )?;
        let verified = match &self.server_verification.error {
            None => "verifies".to_owned(),
            Some(e) => format!("does NOT verify ({e})"),
        };
        writeln!(
            f,
            "server chain ({verified} against {}; the probe goes on either way):",
            self.server_verification.against
        )?;
        for (i, c) in self.server_chain.iter().enumerate() {
            writeln!(f, "  {}: {}  (issuer: {})", i + 1, c.subject, c.issuer)?;
        }
        for (label, messages) in [
            ("plaintext flight", &self.flight),
            ("decrypted flight", &self.decrypted_flight),
        ] {
            if messages.is_empty() {
                continue;
            }
            let parts: Vec<String> = messages
                .iter()
                .map(|m| {
                    let records = if m.records > 1 {
                        format!(" in {} records", m.records)
                    } else {
                        String::new()
                    };
                    format!("{} {} B{records}", m.name, n(m.bytes))
                })
                .collect();
            writeln!(f, "{label}: {}", parts.join(", "))?;
        }
        writeln!(f, "CertificateRequest, {}:", r.layer.describe())?;
        if r.layer == Layer::Wire {
            let types: Vec<String> = r
                .certificate_types
                .iter()
                .map(|c| format!("{} ({})", c.name, c.code))
                .collect();
            writeln!(f, "  certificate types: {}", types.join(", "))?;
        }
        let schemes: Vec<&str> = r
            .signature_schemes
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        writeln!(
            f,
            "  signature schemes ({}): {}",
            schemes.len(),
            schemes.join(", ")
        )?;
        if !r.extensions.is_empty() {
            let exts: Vec<String> = r
                .extensions
                .iter()
                .map(|e| format!("{} {} B", e.name, n(e.bytes)))
                .collect();
            writeln!(
                f,
                "  extensions (each with its 4-byte header): {}",
                exts.join(", ")
            )?;
        }
        let kind = if r.layer == Layer::Decrypted {
            "encrypted record(s)"
        } else {
            "record(s)"
        };
        match (r.body_bytes, &r.records) {
            (Some(body), Some(records)) => {
                let spans: Vec<String> = records
                    .iter()
                    .map(|s| {
                        format!(
                            "{} B ({} of it the request)",
                            n(s.record_bytes),
                            n(s.request_bytes)
                        )
                    })
                    .collect();
                writeln!(
                    f,
                    "  body {} bytes (message {} with its 4-byte header) in {} {kind}: {}",
                    n(body),
                    n(body + 4),
                    records.len(),
                    spans.join(" + ")
                )?;
            }
            _ => {
                writeln!(
                    f,
                    "  body at least {} bytes; {}",
                    n(r.body_bytes_at_least.unwrap_or(0)),
                    r.unobserved.as_deref().unwrap_or(HIDDEN)
                )?;
            }
        }
        writeln!(
            f,
            "  CA names: {}, {} bytes of names (2 + DER each)",
            r.names.len(),
            n(r.list_bytes)
        )?;
        if !r.names.is_empty() {
            writeln!(f, "  {:>5} {:>6} {:>7}  subject", "#", "DER", "total")?;
            for row in &r.names {
                writeln!(
                    f,
                    "  {:>5} {:>6} {:>7}  {}",
                    row.position,
                    row.der_bytes,
                    n(row.running_total),
                    row.subject
                )?;
            }
        }
        writeln!(
            f,
            "  list size {} bytes against the marks:",
            n(r.list_bytes)
        )?;
        for m in &r.marks {
            let (side, by) = if m.over {
                ("OVER", r.list_bytes - m.bytes)
            } else {
                ("under", m.bytes - r.list_bytes)
            };
            writeln!(
                f,
                "    {:>7}  {side} by {:<7} {}",
                n(m.bytes),
                n(by),
                m.meaning
            )?;
        }
        if let Some(w) = &r.schannel_truncation {
            writeln!(
                f,
                "  WARNING: the list is {} bytes, {} short of 16,384: nearer to it than its largest \
                 name ({} bytes with its prefix), the mark of Schannel truncation. A Schannel server \
                 (Windows 2008 R2 and earlier, or SendTrustedIssuerList = 1) fills the list up to \
                 16 KB and drops the rest (System event 36885): its trust store likely holds more \
                 CAs than it sends, and a client whose issuer was dropped withholds its \
                 certificate.",
                n(w.list_bytes),
                w.under_by,
                w.largest_name
            )?;
        }
        if self.issuers.is_empty() {
            writeln!(
                f,
                "client issuers: none given (--cert or --issuer): clients that send only a \
                 certificate from a listed issuer are assumed to find theirs"
            )?;
        } else {
            writeln!(f, "client issuers (issuer by issuer):")?;
            for i in &self.issuers {
                match i.listed_at {
                    Some(k) => writeln!(f, "  {} ({}): listed, position {k}", i.name, i.from)?,
                    None => writeln!(f, "  {} ({}): NOT LISTED", i.name, i.from)?,
                }
            }
        }
        let sent = if self.handshake.certificate_sent {
            "presented the --cert chain"
        } else {
            "sent no certificate"
        };
        let answer = match &self.handshake.answer {
            ServerAnswer::Accepted => "the server went on".to_owned(),
            ServerAnswer::Refused(why) => format!("the server refused: {why}"),
            ServerAnswer::Unknown(why) => format!("the server's answer is unknown: {why}"),
        };
        writeln!(f, "the probe's handshake: {sent}; {answer}")?;
        if self.discarded_after_starttls > 0 {
            writeln!(
                f,
                "note: {} bytes the server sent after its STARTTLS reply were discarded",
                self.discarded_after_starttls
            )?;
        }
        writeln!(f, "client presets against this request:")?;
        for v in &self.verdicts {
            let what = match &v.outcome {
                Outcome::Delivers {
                    assumed_listed: false,
                } => "delivers".to_owned(),
                Outcome::Delivers {
                    assumed_listed: true,
                } => "delivers, if its issuer is listed (give --cert or --issuer)".to_owned(),
                Outcome::Fails {
                    rule: Some(rule),
                    error,
                } => format!("FAILS: {rule}: {error}"),
                Outcome::Fails { rule: None, error } => format!("FAILS: {error}"),
                Outcome::Withholds { server_refuses } => {
                    let then = match server_refuses {
                        Some(true) => "this server refused a handshake without one: FAILS",
                        Some(false) => "this server took a handshake without one",
                        None => {
                            "a server that requires one ends the handshake (not tested: the \
                             probe presented --cert): FAILS"
                        }
                    };
                    format!("withholds its certificate (no issuer of its chain listed); {then}")
                }
                Outcome::Unknown { why } => format!("unknown: {why}"),
            };
            let proof = if v.verified {
                ""
            } else {
                ", not verified here"
            };
            writeln!(f, "  {:<16} {what}   [{}{proof}]", v.preset, v.stack)?;
        }
        if self.verdicts.iter().any(|v| !v.verified) {
            writeln!(
                f,
                "  (\"not verified here\": no real-peer test of that stack on this machine; \
                 `um-sim profiles` gives the reason)"
            )?;
        }
        let failing = self.verdicts.iter().filter(|v| v.fails).count();
        writeln!(
            f,
            "{}",
            if failing == 0 {
                "verdict: every client judged passes".to_owned()
            } else {
                format!("verdict: {failing} of {} clients fail", self.verdicts.len())
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(names: Vec<Vec<u8>>, records: Vec<RecordSpan>) -> Seen {
        let list: usize = names.iter().map(|n| 2 + n.len()).sum();
        let body = 1 + 2 + 2 + 2 * 9 + 2 + list;
        Seen::Wire {
            request: CertificateRequest12 {
                cert_types: vec![1, 64],
                sig_schemes: vec![0x0403; 9],
                ca_names: names,
            },
            body_bytes: body,
            buffered_bytes: records.iter().map(|r| r.record_bytes).max().unwrap_or(0),
            records,
        }
    }

    fn own(sent: bool, answer: ServerAnswer) -> OwnHandshake {
        OwnHandshake {
            certificate_sent: sent,
            answer,
        }
    }

    fn profile(name: &str) -> Profile {
        name.parse().unwrap()
    }

    #[test]
    fn the_incident_request_fails_withholding_clients_and_warns() {
        // 16,382 bytes of names: 160 names of 100 DER bytes, one of 60.
        let mut names: Vec<Vec<u8>> = (0..160).map(|i| vec![i as u8; 100]).collect();
        names.push(vec![0xaa; 60]);
        let records = vec![
            RecordSpan {
                record_bytes: 16_389,
                request_bytes: 16_384,
            },
            RecordSpan {
                record_bytes: 64,
                request_bytes: 59,
            },
        ];
        let seen = wire(names, records);
        let v = view(&seen);
        assert_eq!(v.list_bytes, 16_382);
        let mark = v.schannel_truncation.expect("warning");
        assert_eq!((mark.under_by, mark.largest_name), (2, 102));
        assert_eq!(v.names.last().map(|r| r.running_total), Some(v.list_bytes));
        assert!(v.marks.iter().all(|m| !m.over));
        let ca = vec![("--issuer".to_owned(), vec![0x30, 1, 2])];
        let refused = own(false, ServerAnswer::Refused("alert".into()));
        for name in ["schannel", "java17", "go"] {
            let o = judge(&profile(name), &seen, &ca, &refused);
            assert_eq!(
                o,
                Outcome::Withholds {
                    server_refuses: Some(true)
                },
                "{name}"
            );
            assert!(o.fails());
        }
        let lenient = judge(&profile("lenient"), &seen, &ca, &refused);
        assert_eq!(
            lenient,
            Outcome::Delivers {
                assumed_listed: false
            }
        );
        // Record rules: two records break one-record; a server that took a
        // handshake without a certificate lets withholding clients pass.
        let legacy = judge(&profile("mbedtls-3.6.2"), &seen, &ca, &refused);
        assert!(
            matches!(legacy, Outcome::Fails { rule: Some(Rule::OneRecord), ref error } if error.contains("-0x7080"))
        );
        let took = own(false, ServerAnswer::Accepted);
        assert!(!judge(&profile("java17"), &seen, &ca, &took).fails());
    }

    #[test]
    fn body_limits_quote_the_stack() {
        let names: Vec<Vec<u8>> = (0..330).map(|_| vec![0x30; 100]).collect();
        let seen = wire(names, vec![]);
        let v = view(&seen);
        assert!(v.schannel_truncation.is_none());
        assert!(
            v.marks
                .iter()
                .find(|m| m.bytes == 32_768)
                .is_some_and(|m| m.over)
        );
        let ca = vec![("--issuer".to_owned(), vec![0x30; 100])];
        let o = judge(
            &profile("java17"),
            &seen,
            &ca,
            &own(true, ServerAnswer::Accepted),
        );
        let body = 1 + 2 + 2 + 18 + 2 + 330 * 102;
        assert_eq!(
            o,
            Outcome::Fails {
                rule: Some(Rule::MaxBody(32_768)),
                error: format!(
                    "The size of the handshake message ({body}) exceeds the maximum allowed size (32768)"
                )
            }
        );
        let go = judge(
            &profile("go"),
            &seen,
            &ca,
            &own(true, ServerAnswer::Accepted),
        );
        assert_eq!(
            go,
            Outcome::Delivers {
                assumed_listed: false
            }
        );
        // Without issuers, withholding stacks are assumed to find theirs.
        let o = judge(
            &profile("go"),
            &seen,
            &[],
            &own(false, ServerAnswer::Accepted),
        );
        assert_eq!(
            o,
            Outcome::Delivers {
                assumed_listed: true
            }
        );
        // The server refused the certificate the probe presented.
        let o = judge(
            &profile("lenient"),
            &seen,
            &ca,
            &own(true, ServerAnswer::Refused("bad_certificate".into())),
        );
        assert!(o.fails());
    }

    #[test]
    fn tls13_judges_what_it_can() {
        let names: Vec<Vec<u8>> = (0..10).map(|_| vec![0x30; 50]).collect();
        let seen = Seen::Resolver {
            names: names.clone(),
            schemes: vec![0x0403; 9],
            why: "a HelloRetryRequest".into(),
        };
        let v = view(&seen);
        assert_eq!(v.body_bytes, None);
        assert_eq!(v.body_bytes_at_least, Some(3 + 4 + 2 + 18 + 4 + 2 + 520));
        assert!(
            v.unobserved
                .as_deref()
                .is_some_and(|u| u.contains("a HelloRetryRequest"))
        );
        let ca = vec![("--issuer".to_owned(), names[3].clone())];
        let ok = own(true, ServerAnswer::Accepted);
        assert!(matches!(
            judge(&profile("mbedtls-3.6.2"), &seen, &ca, &ok),
            Outcome::Unknown { .. }
        ));
        assert_eq!(
            judge(&profile("java17"), &seen, &ca, &ok),
            Outcome::Delivers {
                assumed_listed: false
            }
        );
        let small = profile("max-body=100");
        assert!(judge(&small, &seen, &ca, &ok).fails());
    }

    /// A decrypted TLS 1.3 request is judged on its exact figures, as TLS
    /// 1.2's: nothing is unknown.
    #[test]
    fn tls13_decrypted_judges_the_exact_body() {
        let names: Vec<Vec<u8>> = (0..330).map(|_| vec![0x30; 100]).collect();
        let list = 330 * 102;
        let body = 1 + 2 + (4 + 2 + 18) + (4 + 2 + list);
        let records = vec![
            RecordSpan {
                record_bytes: 5 + 16_384 + 1 + 16,
                request_bytes: 16_000,
            },
            RecordSpan {
                record_bytes: 5 + 16_384 + 1 + 16,
                request_bytes: 16_384,
            },
            RecordSpan {
                record_bytes: 5 + 2_000 + 1 + 16,
                request_bytes: body + 4 - 32_384,
            },
        ];
        let seen = Seen::Decrypted {
            request: CertificateRequest13 {
                context: Vec::new(),
                sig_schemes: vec![0x0403; 9],
                ca_names: names.clone(),
                extensions: vec![(13, 20), (47, 2 + list)],
            },
            body_bytes: body,
            records,
            buffered_bytes: 5 + 16_384 + 1 + 16 + 16_000,
        };
        let v = view(&seen);
        assert_eq!(v.layer, Layer::Decrypted);
        assert_eq!(v.body_bytes, Some(body));
        assert_eq!(v.body_bytes_at_least, None);
        assert_eq!(v.unobserved, None);
        assert_eq!(
            v.extensions.iter().map(|e| e.bytes).sum::<usize>() + 3,
            body
        );
        assert_eq!(v.extensions[1].name, "certificate_authorities");
        let ca = vec![("--issuer".to_owned(), names[3].clone())];
        let ok = own(true, ServerAnswer::Accepted);
        let java = judge(&profile("java17"), &seen, &ca, &ok);
        assert_eq!(
            java,
            Outcome::Fails {
                rule: Some(Rule::MaxBody(32_768)),
                error: format!(
                    "The size of the handshake message ({body}) exceeds the maximum allowed size (32768)"
                )
            }
        );
        // Record rules are judged too: three protected records.
        assert!(matches!(
            judge(&profile("mbedtls-3.6.2"), &seen, &ca, &ok),
            Outcome::Fails {
                rule: Some(Rule::OneRecord),
                ..
            }
        ));
        assert!(matches!(
            judge(&profile("mbedtls-3.6.3"), &seen, &ca, &ok),
            Outcome::Fails {
                rule: Some(Rule::MaxBuffer(16_752)),
                ..
            }
        ));
        assert_eq!(
            judge(&profile("go"), &seen, &ca, &ok),
            Outcome::Delivers {
                assumed_listed: false
            }
        );
        let unlisted = vec![("--issuer".to_owned(), vec![0x30, 1, 2])];
        assert!(judge(&profile("go"), &seen, &unlisted, &ok).fails());
        // Stacks without TLS 1.3 stay unknown, with the reason.
        assert!(matches!(
            judge(&profile("schannel-2008r2"), &seen, &ca, &ok),
            Outcome::Unknown { .. }
        ));
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(16_382), "16,382");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
