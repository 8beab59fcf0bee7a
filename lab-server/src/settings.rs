//! The settings enums of lab-server and their one parser: every choice a
//! flag, a TOML file or a scenario can name, spelled once, so parsing,
//! printing and the error's list of choices cannot drift apart.

use serde::Serialize;

/// Which names to advertise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Every name; TLS splits the message across records. Refused past the
    /// protocol limit.
    Full,
    /// Names in enumeration order while they fit the budget; the rest dropped.
    Schannel,
    /// No names at all (`SendTrustedIssuerList = 0`).
    Omit,
}

/// What the budget is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Accounting {
    /// Sum over kept names of 2 + DER length (KB 933430's "list").
    CaList,
    /// The whole CertificateRequest handshake message, header included, so a
    /// budget of 16,384 means "fits one record".
    Message,
}

/// Enumeration order of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// As loaded.
    Store,
    /// Ascending SHA-1 thumbprint: a model of registry enumeration order.
    Thumbprint,
    /// Ascending subject DER.
    Subject,
}

/// TLS version, which decides how the names are framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum TlsVersion {
    /// TLS 1.2: certificate_authorities is a field of the plaintext message.
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3: an extension of the encrypted message, sharing the u16
    /// extensions block with signature_algorithms.
    #[serde(rename = "1.3")]
    Tls13,
}

/// `FromStr` and `Display` for a settings enum from its spellings, so parsing,
/// printing and the error's list of choices cannot drift apart.
macro_rules! parse_enum {
    ($ty:ty, $what:literal, $($text:literal => $val:expr),+) => {
        impl std::str::FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($val),)+
                    _ => Err(format!(concat!("unknown ", $what, " {:?}: expected {}"), s,
                        [$($text),+].join(", "))),
                }
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                $(if *self == $val { return f.write_str($text); })+
                Ok(())
            }
        }
    };
}

parse_enum!(Policy, "policy", "full" => Policy::Full, "schannel" => Policy::Schannel, "omit" => Policy::Omit);
parse_enum!(Accounting, "accounting", "ca-list" => Accounting::CaList, "message" => Accounting::Message);
parse_enum!(Order, "order", "store" => Order::Store, "thumbprint" => Order::Thumbprint, "subject" => Order::Subject);
parse_enum!(TlsVersion, "TLS version", "1.2" => TlsVersion::Tls12, "1.3" => TlsVersion::Tls13);

/// Whether the Hub asks for a client certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAuth {
    /// Ask, and fail the handshake without one (the Hub's setting).
    Required,
    /// Ask, and accept a client without one.
    Optional,
    /// Do not ask (no CertificateRequest at all).
    None,
}

parse_enum!(ClientAuth, "client auth", "required" => ClientAuth::Required, "optional" => ClientAuth::Optional, "none" => ClientAuth::None);

/// How the first flight is laid out in records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// Each handshake message starts a new record (Schannel, OpenSSL).
    PerMessage,
    /// rustls as is: the flight is one stream cut into records.
    Coalesced,
}

parse_enum!(Layout, "record layout", "per-message" => Layout::PerMessage, "coalesced" => Layout::Coalesced);
