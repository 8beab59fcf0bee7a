//! The record of one submission attempt, in the terms UM's events use.

use serde::Serialize;

use crate::profile::Rule;
use crate::tap::SeenRequest;

use super::tls::CertDecision;

/// How an attempt failed, by the event UM would log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureClass {
    /// No server answered (UM event 1082).
    NoServer,
    /// The TLS handshake failed with no acceptable certificate to send: the
    /// incident (event 1423, TlsApiFailureException).
    NoAcceptableCertificate,
    /// A record rule of the profile stopped the handshake (event 1423).
    ProfileRule,
    /// um-sim's own stack (rustls) could not take the server's flight: a
    /// handshake message over 65,535 bytes, or tokio-rustls's 64 KB buffer.
    OwnStackLimit,
    /// Any other TLS failure (event 1423).
    Tls,
    /// An unexpected SMTP reply (event 1185).
    SmtpReply,
    /// The connection broke or timed out mid-session.
    Connection,
}

impl FailureClass {
    /// Every class, in declaration order: for reports that list them all.
    pub const ALL: [FailureClass; 7] = [
        FailureClass::NoServer,
        FailureClass::NoAcceptableCertificate,
        FailureClass::ProfileRule,
        FailureClass::OwnStackLimit,
        FailureClass::Tls,
        FailureClass::SmtpReply,
        FailureClass::Connection,
    ];

    /// The kebab-case name, as the JSON records and scenario files spell it
    /// (the same string serde writes), without a JSON round trip.
    pub fn as_str(&self) -> &'static str {
        match self {
            FailureClass::NoServer => "no-server",
            FailureClass::NoAcceptableCertificate => "no-acceptable-certificate",
            FailureClass::ProfileRule => "profile-rule",
            FailureClass::OwnStackLimit => "own-stack-limit",
            FailureClass::Tls => "tls",
            FailureClass::SmtpReply => "smtp-reply",
            FailureClass::Connection => "connection",
        }
    }
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One exchange on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Exchange {
    /// What was sent (a placeholder for message data).
    pub command: String,
    /// Reply code.
    pub code: u16,
    /// Reply text, lines joined.
    pub reply: String,
}

/// Everything about one submission attempt.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Attempt {
    /// The CertificateRequest as the tap saw it on the wire (TLS 1.2).
    pub certificate_request: Option<SeenRequest>,
    /// TLS version negotiated.
    pub tls_version: Option<String>,
    /// What the client did about its certificate.
    pub certificate: Option<CertDecision>,
    /// `ok` or `failed`, once a handshake was tried.
    pub handshake: Option<String>,
    /// The rule that stopped the handshake, if one did.
    pub rule: Option<Rule>,
    /// What the modeled stack would print for this failure (DESIGN.md 2a),
    /// when recorded: set for a rule of a preset, and for um-sim's own limit
    /// under `rustls023`, whose stack um-sim is.
    pub stack_error: Option<String>,
    /// SMTP exchanges.
    pub smtp: Vec<Exchange>,
    /// Set when the message was accepted (250 to DATA).
    pub delivered: bool,
    /// Failure class.
    pub failure: Option<FailureClass>,
    /// Failure detail.
    pub error: Option<String>,
    /// The code of the SMTP reply that ended a failed attempt, when a reply
    /// did (none for a broken connection or a TLS failure).
    pub reply_code: Option<u16>,
    /// Why the profile's record rules could not be judged, when the tap lost
    /// the server's TLS 1.3 flight (a HelloRetryRequest, an unknown suite,
    /// no secret): then a delivery says nothing about the modeled stack's
    /// limits, and the record must say so rather than pass for a verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unjudged: Option<String>,
}

impl Attempt {
    /// Whether the attempt ended on a permanent reply (5yz, RFC 5321 4.2.1:
    /// "the SMTP client SHOULD NOT repeat the exact request"): the item is
    /// not retried. 4yz replies and broken connections are transient.
    pub fn permanent(&self) -> bool {
        !self.delivered && self.reply_code.is_some_and(|c| (500..600).contains(&c))
    }

    /// Closes the attempt as failed.
    pub(super) fn fail(mut self, class: FailureClass, error: impl Into<String>) -> Attempt {
        self.failure = Some(class);
        self.error = Some(error.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new variant must be added to ALL: this match stops compiling otherwise.
    fn position(c: FailureClass) -> usize {
        match c {
            FailureClass::NoServer => 0,
            FailureClass::NoAcceptableCertificate => 1,
            FailureClass::ProfileRule => 2,
            FailureClass::OwnStackLimit => 3,
            FailureClass::Tls => 4,
            FailureClass::SmtpReply => 5,
            FailureClass::Connection => 6,
        }
    }

    #[test]
    fn only_a_5yz_reply_is_permanent() {
        let ended = |code: Option<u16>, delivered: bool| Attempt {
            reply_code: code,
            delivered,
            ..Attempt::default()
        };
        assert!(ended(Some(550), false).permanent());
        assert!(ended(Some(554), false).permanent());
        assert!(!ended(Some(451), false).permanent());
        assert!(!ended(Some(421), false).permanent());
        assert!(!ended(None, false).permanent(), "a broken connection");
        assert!(!ended(Some(550), true).permanent());
    }

    #[test]
    fn as_str_is_the_serde_name_of_every_class() {
        for (i, class) in FailureClass::ALL.into_iter().enumerate() {
            assert_eq!(position(class), i, "{class:?} out of place in ALL");
            let serde_name = serde_json::to_value(class).unwrap();
            assert_eq!(serde_name.as_str(), Some(class.as_str()), "{class:?}");
            assert_eq!(class.to_string(), class.as_str());
        }
    }
}
