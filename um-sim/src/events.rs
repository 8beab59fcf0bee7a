//! UM application-log events for operators, and one JSON line per attempt for
//! programs.

use std::path::Path;

use serde::Serialize;

use crate::client::{Attempt, FailureClass};

/// The incident's exception text (Application event 1423).
pub const TLS_API_FAILURE: &str = "Microsoft.Exchange.Net.ExSmtpClient.TlsApiFailureException: \
A TLS API failure occurred. Error = 0x80090301";

/// An event in the UM application log's terms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UmEvent {
    /// Event ID: 1423, 1082 or 1185.
    pub id: u32,
    /// Level.
    pub level: &'static str,
    /// Description.
    pub text: String,
}

/// The event UM logs for a failed attempt (none for a delivery).
pub fn for_attempt(header: &Path, server: &str, attempt: &Attempt) -> Option<UmEvent> {
    let class = attempt.failure?;
    let detail = attempt.error.clone().unwrap_or_default();
    let file = header.display();
    Some(match class {
        FailureClass::NoServer => UmEvent {
            id: 1082,
            level: "Error",
            text: format!(
                "The Unified Messaging server could not submit the voice message in file \"{file}\": \
                 no Hub Transport server answered at {server}. The message stays in the voice mail \
                 folder and will be retried. Details: {detail}"
            ),
        },
        FailureClass::SmtpReply | FailureClass::Connection => UmEvent {
            id: 1185,
            level: "Error",
            text: format!(
                "The Hub Transport server {server} gave an unexpected response while the Unified \
                 Messaging server submitted the voice message in file \"{file}\". {} Details: \
                 {detail}",
                if attempt.permanent() {
                    // um-sim's rule (RFC 5321 4.2.1); UM's own is not verified here.
                    "The response is permanent (5yz): the message was moved to the badvoicemail \
                     folder and will not be retried (um-sim's rule, RFC 5321 4.2.1; Exchange \
                     UM's own handling is not verified here)."
                } else {
                    "The message will be retried."
                }
            ),
        },
        FailureClass::NoAcceptableCertificate
        | FailureClass::ProfileRule
        | FailureClass::OwnStackLimit
        | FailureClass::Tls => UmEvent {
            id: 1423,
            level: "Error",
            text: format!(
                "An error occurred while the Unified Messaging server submitted the voice message in \
                 file \"{file}\" to the Hub Transport server {server}. The message will be retried. \
                 Details: {TLS_API_FAILURE}\numlab: {}: {detail}",
                match class {
                    FailureClass::NoAcceptableCertificate => "no acceptable client certificate",
                    FailureClass::ProfileRule => "a rule of the client profile",
                    FailureClass::OwnStackLimit => "the lab client's own TLS limit",
                    _ => "TLS failure",
                }
            ),
        },
    })
}

/// The event in the Windows event-viewer layout.
pub fn render(event: &UmEvent, when: &str) -> String {
    format!(
        "Log Name:      Application\nSource:        MSExchange Unified Messaging\nDate:          {when}\n\
Event ID:      {}\nTask Category: UMCore\nLevel:         {}\nDescription:\n{}\n",
        event.id, event.level, event.text
    )
}

/// One JSON line per attempt.
#[derive(Clone, Debug, Serialize)]
pub struct AttemptRecord<'a> {
    /// When, RFC 3339.
    pub time: String,
    /// Queue GUID.
    pub item: &'a str,
    /// Header file path at the time of the attempt.
    pub header: String,
    /// Attempt number for this item (1-based, across runs).
    pub attempt_number: u32,
    /// Server address.
    pub server: &'a str,
    /// Client profile, as given.
    pub profile: &'a str,
    /// The preset it resolved to (an alias resolves to its preset's name).
    pub preset: Option<&'static str>,
    /// `delivered` or `failed`.
    pub outcome: &'static str,
    /// The UM event logged, if any.
    pub event_id: Option<u32>,
    /// Where the item went: `sent`, `queued` or `badvoicemail`.
    pub disposition: &'static str,
    /// Everything about the attempt.
    #[serde(flatten)]
    pub attempt: &'a Attempt,
}

/// The current time, RFC 3339 (UTC).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
