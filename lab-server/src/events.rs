//! What happened, for operators and for programs: a human log in the Windows
//! event style and one JSON line per connection.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::maildir::VoicemailCheck;
use crate::policy::Report;

/// The CertificateRequest as it left the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertRequestInfo {
    /// Handshake message bytes, header included.
    pub bytes: usize,
    /// Records it spanned.
    pub records: usize,
    /// CA names it carried.
    pub ca_names: usize,
    /// `wire` when read from the bytes sent (TLS 1.2); `encoding` when computed
    /// from the lab's own encoding (TLS 1.3: encrypted, not observable).
    pub source: &'static str,
    /// Body bytes besides the names (types, schemes, length fields).
    pub overhead: usize,
    /// The same for the modeled real server, when known here.
    pub real_overhead: Option<usize>,
    /// Where the request differs from the modeled server's.
    pub difference: String,
}

/// The client's certificate, when it presented one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClientCert {
    /// Subject as text.
    pub subject: String,
    /// Issuer as text.
    pub issuer: String,
}

/// One certificate of the chain the client sent, judged against the CA list
/// the server advertised on that connection (names compared as DER, the way
/// a client's selection compares them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainCert {
    /// Subject as text (empty when the certificate does not parse).
    pub subject: String,
    /// Issuer as text (empty when the certificate does not parse).
    pub issuer: String,
    /// Whether its issuer's name was in the advertised list.
    pub issuer_listed: bool,
    /// Whether its own subject was in the advertised list.
    pub listed: bool,
    /// Why it could not be read, when it does not parse as X.509.
    pub error: Option<String>,
}

/// How the TLS handshake ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Handshake {
    /// `ok` or `failed`.
    pub outcome: &'static str,
    /// The error, when it failed.
    pub error: Option<String>,
    /// The alert involved, when the error names one.
    pub alert: Option<String>,
}

/// One command and the reply it got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Exchange {
    /// The command line (a placeholder for message data).
    pub command: String,
    /// Reply code.
    pub code: u16,
    /// First reply line.
    pub reply: String,
}

/// One stored message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stored {
    /// Path in the Maildir's `new/`.
    pub path: String,
    /// Size in octets.
    pub bytes: usize,
    /// Envelope sender.
    pub from: String,
    /// Envelope recipients.
    pub to: Vec<String>,
    /// The voicemail markers found.
    pub voicemail: VoicemailCheck,
}

/// Everything about one connection: a JSON line when it ends.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConnectionEvent {
    /// Sequence number within this server's run.
    pub id: u64,
    /// Peer address.
    pub peer: String,
    /// The persona the server models.
    pub persona: String,
    /// Start time, RFC 3339.
    pub started: String,
    /// Negotiated TLS version.
    pub tls_version: Option<String>,
    /// Negotiated cipher suite.
    pub cipher_suite: Option<String>,
    /// The CertificateRequest sent.
    pub certificate_request: Option<CertRequestInfo>,
    /// The client certificate presented, if any (the leaf of
    /// `client_chain`, kept for the programs that read it).
    pub client_certificate: Option<ClientCert>,
    /// The whole chain the client sent, leaf first, as sent: from the TLS
    /// library when the handshake completed; read off the wire when it failed
    /// in TLS 1.2 (the client's Certificate is plaintext there); empty when
    /// it failed in TLS 1.3 (encrypted there: see `client_chain_note`).
    pub client_chain: Vec<ChainCert>,
    /// The client's Certificate message: `none` (it sent none: no
    /// certificate was requested, or the handshake ended before the client's
    /// second flight), `empty` (an empty list: the client withheld its
    /// certificate, as Schannel and Java do when no issuer of theirs is
    /// listed), `sent` (a certificate list), or `encrypted` (a TLS 1.3
    /// handshake that failed: the message, if any, was encrypted and is not
    /// known here). `None` when no TLS handshake ran.
    pub client_certificate_message: Option<&'static str>,
    /// Where `client_chain` came from or why it is empty, when that is not
    /// the plain case (a completed handshake): read off the wire after a
    /// failure, encrypted (TLS 1.3), too large to keep, not decodable, or
    /// the wire and the TLS library disagreeing.
    pub client_chain_note: Option<String>,
    /// The TLS handshake, if STARTTLS was issued.
    pub handshake: Option<Handshake>,
    /// Plaintext bytes received after STARTTLS and discarded (CVE-2011-0411 class).
    pub plaintext_discarded: usize,
    /// The first [`SMTP_LOG_FIRST`] commands and their replies, in order; a
    /// session of a million NOOPs must not hold a million entries.
    pub smtp: Vec<Exchange>,
    /// Commands (and message transfers) in the whole session.
    pub smtp_total: u64,
    /// Commands by verb over the whole session; verbs the server does not
    /// know are counted together, so a peer cannot grow this map.
    pub smtp_verbs: BTreeMap<&'static str, u64>,
    /// Messages stored.
    pub stored: Vec<Stored>,
    /// Faults injected in this connection (`--fault`, the API), each as its
    /// spec and where it fired: `smtp:data:451@nth=1 at the end of DATA,
    /// message 1`.
    pub faults: Vec<String>,
    /// The names this connection was sent when a fault cut the planned list
    /// (`tls:cut-list-at`): the inspector decodes the request from them.
    /// `None` when the connection got the planned list. Not in the JSON line:
    /// the event there carries the count (`certificate_request.ca_names`).
    #[serde(skip)]
    pub cut_list: Option<std::sync::Arc<Vec<Vec<u8>>>>,
    /// Why the connection ended.
    pub end: String,
}

/// Exchanges kept verbatim in a connection's event.
pub const SMTP_LOG_FIRST: usize = 100;

impl ConnectionEvent {
    /// Records one exchange: kept verbatim while the first
    /// [`SMTP_LOG_FIRST`] last, always counted.
    pub fn record(&mut self, exchange: Exchange) {
        self.smtp_total += 1;
        *self
            .smtp_verbs
            .entry(verb_of(&exchange.command))
            .or_default() += 1;
        if self.smtp.len() < SMTP_LOG_FIRST {
            self.smtp.push(exchange);
        }
    }
}

/// The counting key of a logged command: its verb when the server knows it.
fn verb_of(command: &str) -> &'static str {
    const VERBS: [&str; 10] = [
        "EHLO", "HELO", "STARTTLS", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "VRFY", "QUIT",
    ];
    if command.starts_with("<message") {
        return "(message)";
    }
    if command.starts_with("<line over") {
        return "(line too long)";
    }
    let word = command.split(' ').next().unwrap_or_default();
    VERBS
        .iter()
        .find(|v| v.eq_ignore_ascii_case(word))
        .copied()
        .unwrap_or("(unrecognized)")
}

/// Schannel's text for event 36885 (System log, Warning).
pub const EVENT_36885_TEXT: &str = "When asking for client authentication, this server sends a \
list of trusted certificate authorities to the client. The client uses this list to choose a \
client certificate that is trusted by the server. Currently, this server trusts so many \
certificate authorities that the list has grown too long. This list has thus been truncated. \
The administrator of this machine should review the certificate authorities trusted for client \
authentication and remove those that do not really need to be trusted.";

/// Event 36885 in the Windows event-viewer layout, with the lab's figures.
pub fn event_36885(report: &Report, when: &str) -> String {
    format!(
        "Log Name:      System\nSource:        Schannel\nDate:          {when}\n\
Event ID:      36885\nTask Category: None\nLevel:         Warning\nKeywords:      Classic\n\
Description:\n{EVENT_36885_TEXT}\n\
Figures: roots in store {roots}; CA list {list} of {store_list} bytes; kept {kept}; \
dropped {dropped}; budget {budget} bytes ({accounting}); CertificateRequest {msg} bytes \
in {records} record(s).\n",
        roots = report.roots,
        list = report.list_bytes,
        store_list = report.store_list_bytes,
        kept = report.kept,
        dropped = report.dropped,
        budget = report.settings.budget,
        accounting = report.settings.accounting,
        msg = report.message_bytes,
        records = report.records,
    )
}

/// The current time, RFC 3339 (UTC).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
