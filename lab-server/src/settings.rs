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

/// The real server family lab-server behaves as (see [`crate::persona`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PersonaName {
    /// Schannel, Windows Server 2003 (KB 933430) / 2008 / 2008 R2: the
    /// default, lab-server's behaviour before personas existed.
    Schannel2008R2,
    /// Schannel, Windows Server 2012 and later.
    Schannel2012,
    /// OpenSSL 3.0 (s_server, HAProxy, nginx, Envoy, gRPC C++).
    Openssl,
    /// Postfix 3.7 smtpd with `smtpd_tls_req_ccert = yes`.
    Postfix,
    /// s2n-tls.
    S2n,
    /// .NET on Linux.
    DotnetLinux,
    /// AWS Application Load Balancer mutual TLS.
    AwsAlb,
}

impl PersonaName {
    /// Every persona, in the table's order.
    pub const ALL: &'static [PersonaName] = &[
        PersonaName::Schannel2008R2,
        PersonaName::Schannel2012,
        PersonaName::Openssl,
        PersonaName::Postfix,
        PersonaName::S2n,
        PersonaName::DotnetLinux,
        PersonaName::AwsAlb,
    ];
}

parse_enum!(PersonaName, "persona",
    "schannel-2008r2" => PersonaName::Schannel2008R2,
    "schannel-2012" => PersonaName::Schannel2012,
    "openssl" => PersonaName::Openssl,
    "postfix" => PersonaName::Postfix,
    "s2n" => PersonaName::S2n,
    "dotnet-linux" => PersonaName::DotnetLinux,
    "aws-alb" => PersonaName::AwsAlb);

/// Schannel's `ClientAuthTrustMode` (Windows Server 2012 and later): which
/// certificates a client chain may end at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrustMode {
    /// 0, Machine Trust (default): the Trusted Root store.
    MachineTrust,
    /// 1, Exclusive Root Trust: only the root certificates of the Client
    /// Authentication Issuers store.
    ExclusiveRoot,
    /// 2, Exclusive CA Trust: every certificate (root or intermediate) of the
    /// Client Authentication Issuers store.
    ExclusiveCa,
}

parse_enum!(TrustMode, "ClientAuthTrustMode",
    "0" => TrustMode::MachineTrust,
    "1" => TrustMode::ExclusiveRoot,
    "2" => TrustMode::ExclusiveCa);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_persona_spelling_round_trips() {
        for p in PersonaName::ALL {
            assert_eq!(p.to_string().parse::<PersonaName>(), Ok(*p));
        }
        let err = "iis".parse::<PersonaName>().unwrap_err();
        assert!(
            err.contains("schannel-2012") && err.contains("aws-alb"),
            "{err}"
        );
        assert_eq!("2".parse::<TrustMode>(), Ok(TrustMode::ExclusiveCa));
    }
}
