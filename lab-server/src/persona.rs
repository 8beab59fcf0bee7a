//! Server personas: what one real server family does with its CA list, as
//! data (DESIGN.md sections 2b and 4). Pure: no I/O.
//!
//! A persona feeds the existing settings (policy, budget, client
//! authentication) and names the behaviours that are not plain settings:
//! where the list comes from, what the server does past its limit, the
//! signature schemes of its CertificateRequest, the alert it sends when no
//! certificate comes, and what it does after a handshake without one. The
//! mechanisms stay the pure policy ([`crate::policy`]) and the shaper
//! ([`crate::shaper`]); each explicit setting still overrides the persona's.

use serde::Serialize;

use crate::settings::{ClientAuth, Policy};

pub use crate::settings::{PersonaName, TrustMode};

/// Where the advertised names come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ListSource {
    /// The trust store (`--store`), in its order.
    Store,
    /// Schannel 2012+: the Client Authentication Issuers store when one is
    /// given (`--client-auth-issuers`), else the Trusted Root store.
    IssuersElseStore,
    /// The store, then the system trust store (`--system-store`), a root in
    /// both listed once.
    StoreAndSystem,
}

/// Which certificates verify a client chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrustSource {
    /// Every root of the store.
    Store,
    /// The store and the system trust store.
    StoreAndSystem,
    /// Schannel 2012+: decided by `ClientAuthTrustMode` ([`TrustMode`]).
    ClientAuthTrustMode,
}

/// What the lab counts against a persona's limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Counted {
    /// Sum of 2 + DER length over the names (the list as TLS encodes it).
    CaList,
    /// Sum of the subject DER lengths.
    Subjects,
}

/// What the server does when its list does not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum PastLimit {
    /// The policy keeps what fits (Schannel; `--policy full` past the TLS
    /// limit is refused at start, as lab-server always did).
    Truncate,
    /// Starts, then every TLS 1.2 handshake ends after ServerKeyExchange with
    /// a fatal internal_error alert (OpenSSL's `construct_ca_names`); the
    /// server keeps serving.
    FailEachHandshake,
    /// Refuses the configuration when the names exceed `limit` bytes.
    Refuse {
        /// The limit in bytes.
        limit: usize,
        /// What is counted.
        counted: Counted,
        /// The real server's error.
        error: &'static str,
    },
    /// KB 2880390: a Trusted Root store whose list exceeds `limit` bytes
    /// breaks client authentication whatever SendTrustedIssuerList says
    /// (with ClientAuthTrustMode 0, where the Root store is what Schannel
    /// walks).
    BreakClientAuth {
        /// The limit in bytes of list (16 KB).
        limit: usize,
    },
}

/// What the server does after a handshake that brought no (trusted) client
/// certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WithoutCert {
    /// The handshake itself fails (client authentication `required`).
    FailHandshake,
    /// Postfix with `smtpd_tls_req_ccert = yes`: TLS completes whatever the
    /// client sent, then the session answers `421 4.7.1 <host> Error: No
    /// client certificate presented` (or `Client certificate not trusted`)
    /// and closes.
    Reply421,
}

/// One real server family: a row of [`PERSONAS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Persona {
    /// The name `--persona` takes.
    pub name: PersonaName,
    /// The real servers it stands for.
    pub models: &'static str,
    /// Where the advertised names come from.
    pub list: ListSource,
    /// Whether the names are advertised by default (SendTrustedIssuerList,
    /// AdvertiseTrustStoreCaNames).
    pub advertise: bool,
    /// The policy when advertising.
    pub advertise_policy: Policy,
    /// The policy's budget in bytes.
    pub budget: usize,
    /// Whether the names go out in TLS 1.2 too (s2n writes an empty
    /// certificate_authorities in TLS 1.2 and sends the names only in the
    /// TLS 1.3 extension).
    pub names_in_tls12: bool,
    /// Which certificates verify a client chain.
    pub trust: TrustSource,
    /// What happens when the list does not fit.
    pub past_limit: PastLimit,
    /// Client authentication at the TLS level.
    pub client_auth: ClientAuth,
    /// What happens after a handshake without a (trusted) certificate.
    pub without_cert: WithoutCert,
    /// The alert sent in TLS 1.2 when the client sends no certificate,
    /// `None` for rustls's own (certificate_required, 116).
    pub no_cert_alert_tls12: Option<u8>,
    /// The real server's TLS 1.2 certificate_types, `None` when not known here.
    pub cert_types_tls12: Option<&'static [u8]>,
    /// The real server's TLS 1.2 signature schemes in its order, `None` for
    /// rustls's own (the real list not known here).
    pub schemes_tls12: Option<&'static [u16]>,
    /// The real server's TLS 1.3 signature_algorithms in its order.
    pub schemes_tls13: Option<&'static [u16]>,
    /// Where each fact comes from: (aspect, source).
    pub sources: &'static [(&'static str, &'static str)],
}

/// OpenSSL 3.0's TLS 1.2 certificate_types: rsa_sign, dss_sign, ecdsa_sign
/// (measured: `openssl s_server -tls1_2 -Verify 1`, OpenSSL 3.0.22).
pub const OPENSSL_CERT_TYPES: &[u8] = &[1, 2, 64];

/// OpenSSL 3.0's TLS 1.2 CertificateRequest signature schemes, in its order
/// (measured as above: 20 schemes).
pub const OPENSSL_SCHEMES_TLS12: &[u16] = &[
    0x0403, 0x0503, 0x0603, 0x0807, 0x0808, 0x0809, 0x080a, 0x080b, 0x0804, 0x0805, 0x0806, 0x0401,
    0x0501, 0x0601, 0x0303, 0x0301, 0x0302, 0x0402, 0x0502, 0x0602,
];

/// OpenSSL 3.0's TLS 1.3 CertificateRequest signature_algorithms (measured:
/// `-tls1_3`; the TLS 1.2 list without the four DSA schemes). With them the
/// list limit is 65,491 bytes of names, as measured.
pub const OPENSSL_SCHEMES_TLS13: &[u16] = &[
    0x0403, 0x0503, 0x0603, 0x0807, 0x0808, 0x0809, 0x080a, 0x080b, 0x0804, 0x0805, 0x0806, 0x0401,
    0x0501, 0x0601, 0x0303, 0x0301,
];

/// Alert description handshake_failure (40).
pub const ALERT_HANDSHAKE_FAILURE: u8 = 40;
/// Alert description certificate_required (116), rustls's choice in TLS 1.2
/// and 1.3 alike.
pub const ALERT_CERTIFICATE_REQUIRED: u8 = 116;

const OPENSSL_SOURCES: &[(&str, &str)] = &[
    (
        "list",
        "the whole CA file in file order: measured here (openssl s_server 3.0)",
    ),
    (
        "past the limit",
        "TLS 1.2: ServerHello, Certificate, ServerKeyExchange, then fatal internal_error \
         (construct_ca_names) past 65,535 bytes; TLS 1.3 limit 65,491: measured here; \
         openssl#12436, haproxy#1011, envoy#14208",
    ),
    (
        "CertificateRequest",
        "3 certificate types, 20 schemes (TLS 1.2), 16 (TLS 1.3): measured here",
    ),
    (
        "no certificate",
        "TLS 1.2 handshake_failure (40), TLS 1.3 certificate_required (116): measured here",
    ),
];

/// The personas, one row each. The first is the default.
pub const PERSONAS: &[Persona] = &[
    Persona {
        name: PersonaName::Schannel2008R2,
        models: "Schannel on Windows Server 2003 (KB 933430) / 2008 / 2008 R2: the Exchange Hub",
        list: ListSource::Store,
        advertise: true,
        advertise_policy: Policy::Schannel,
        budget: certgen::wire::SCHANNEL_LIMIT,
        names_in_tls12: true,
        trust: TrustSource::Store,
        past_limit: PastLimit::Truncate,
        client_auth: ClientAuth::Required,
        without_cert: WithoutCert::FailHandshake,
        no_cert_alert_tls12: None,
        cert_types_tls12: None,
        schemes_tls12: None,
        schemes_tls13: None,
        sources: &[
            (
                "list",
                "Trusted Root store in enumeration order, SendTrustedIssuerList = 1: KB 933430",
            ),
            (
                "past the limit",
                "truncated at 16 KB, System event 36885: KB 933430, KB 2464556",
            ),
            (
                "CertificateRequest",
                "rustls's types and schemes: Schannel's own not verified here",
            ),
            (
                "no certificate",
                "handshake fails; the alert is rustls's (certificate_required): not verified here",
            ),
        ],
    },
    Persona {
        name: PersonaName::Schannel2012,
        models: "Schannel on Windows Server 2012 and later",
        list: ListSource::IssuersElseStore,
        advertise: false,
        advertise_policy: Policy::Schannel,
        budget: certgen::wire::SCHANNEL_LIMIT,
        names_in_tls12: true,
        trust: TrustSource::ClientAuthTrustMode,
        past_limit: PastLimit::BreakClientAuth {
            limit: certgen::wire::SCHANNEL_LIMIT,
        },
        client_auth: ClientAuth::Required,
        without_cert: WithoutCert::FailHandshake,
        no_cert_alert_tls12: None,
        cert_types_tls12: None,
        schemes_tls12: None,
        schemes_tls13: None,
        sources: &[
            (
                "list",
                "none by default (SendTrustedIssuerList = 0); when sent, the Client \
                 Authentication Issuers store, else Trusted Root: What's new in TLS/SSL \
                 (Windows Server 2012)",
            ),
            (
                "trust",
                "ClientAuthTrustMode 0 machine trust (Trusted Root), 1 exclusive root trust \
                 (the roots of the Client Authentication Issuers store), 2 exclusive CA trust \
                 (every certificate of that store): same page; not verified here",
            ),
            (
                "past the limit",
                "KB 2880390: a Trusted Root store past 16 KB breaks client authentication \
                 whatever SendTrustedIssuerList says; the lab rejects every client certificate \
                 then (the real alert not verified here)",
            ),
            (
                "CertificateRequest",
                "rustls's types and schemes: Schannel's own not verified here",
            ),
        ],
    },
    Persona {
        name: PersonaName::Openssl,
        models: "OpenSSL 3.0: s_server, HAProxy, nginx, Envoy, gRPC C++",
        list: ListSource::Store,
        advertise: true,
        advertise_policy: Policy::Full,
        budget: certgen::wire::SCHANNEL_LIMIT,
        names_in_tls12: true,
        trust: TrustSource::Store,
        past_limit: PastLimit::FailEachHandshake,
        client_auth: ClientAuth::Required,
        without_cert: WithoutCert::FailHandshake,
        no_cert_alert_tls12: Some(ALERT_HANDSHAKE_FAILURE),
        cert_types_tls12: Some(OPENSSL_CERT_TYPES),
        schemes_tls12: Some(OPENSSL_SCHEMES_TLS12),
        schemes_tls13: Some(OPENSSL_SCHEMES_TLS13),
        sources: OPENSSL_SOURCES,
    },
    Persona {
        name: PersonaName::Postfix,
        models: "Postfix 3.7 smtpd with smtpd_tls_req_ccert = yes (OpenSSL 3.0)",
        list: ListSource::Store,
        advertise: true,
        advertise_policy: Policy::Full,
        budget: certgen::wire::SCHANNEL_LIMIT,
        names_in_tls12: true,
        trust: TrustSource::Store,
        past_limit: PastLimit::FailEachHandshake,
        client_auth: ClientAuth::Optional,
        without_cert: WithoutCert::Reply421,
        no_cert_alert_tls12: Some(ALERT_HANDSHAKE_FAILURE),
        cert_types_tls12: Some(OPENSSL_CERT_TYPES),
        schemes_tls12: Some(OPENSSL_SCHEMES_TLS12),
        schemes_tls13: Some(OPENSSL_SCHEMES_TLS13),
        sources: &[
            (
                "list",
                "smtpd_tls_CAfile, whole, in file order, as OpenSSL: measured here",
            ),
            (
                "without a certificate",
                "TLS completes, then 421 4.7.1 <host> Error: No client certificate presented; \
                 an untrusted one: 421 4.7.1 <host> Error: Client certificate not trusted: \
                 measured here (Postfix 3.7)",
            ),
            (
                "past the limit",
                "as OpenSSL (internal_error after ServerKeyExchange)",
            ),
        ],
    },
    Persona {
        name: PersonaName::S2n,
        models: "s2n-tls server with s2n_config_set_cert_authorities_from_trust_store",
        list: ListSource::Store,
        advertise: true,
        advertise_policy: Policy::Full,
        budget: certgen::wire::SCHANNEL_LIMIT,
        names_in_tls12: false,
        trust: TrustSource::Store,
        past_limit: PastLimit::Refuse {
            limit: 20_000,
            counted: Counted::CaList,
            error: "S2N_ERR_TOO_MANY_CAS",
        },
        client_auth: ClientAuth::Required,
        without_cert: WithoutCert::FailHandshake,
        no_cert_alert_tls12: None,
        cert_types_tls12: None,
        schemes_tls12: None,
        schemes_tls13: None,
        sources: &[
            (
                "list",
                "the trust store's subjects, sent only in the TLS 1.3 certificate_authorities \
                 extension; TLS 1.2 writes an empty list: s2n tls/extensions/s2n_cert_authorities.c, \
                 tls/s2n_client_cert_request.c",
            ),
            (
                "past the limit",
                "configuration refused once the list (2 + DER per name) passes 20,000 bytes \
                 (S2N_CERT_AUTHORITIES_MAX_SIZE), S2N_ERR_TOO_MANY_CAS: same files",
            ),
            (
                "CertificateRequest",
                "rustls's types and schemes: s2n's own not verified here",
            ),
        ],
    },
    Persona {
        name: PersonaName::DotnetLinux,
        models: ".NET (Kestrel, SslStream) on Linux, OpenSSL underneath",
        list: ListSource::StoreAndSystem,
        advertise: true,
        advertise_policy: Policy::Full,
        budget: certgen::wire::SCHANNEL_LIMIT,
        names_in_tls12: true,
        trust: TrustSource::StoreAndSystem,
        past_limit: PastLimit::FailEachHandshake,
        client_auth: ClientAuth::Required,
        without_cert: WithoutCert::FailHandshake,
        no_cert_alert_tls12: Some(ALERT_HANDSHAKE_FAILURE),
        cert_types_tls12: Some(OPENSSL_CERT_TYPES),
        schemes_tls12: Some(OPENSSL_SCHEMES_TLS12),
        schemes_tls13: Some(OPENSSL_SCHEMES_TLS13),
        sources: &[
            (
                "list",
                "the whole system trust store is advertised: dotnet/corefx#23938; the lab sends \
                 the store, then the system store (--system-store); order not verified here",
            ),
            (
                "past the limit",
                "as OpenSSL, whose library it uses: not verified here with .NET",
            ),
        ],
    },
    Persona {
        name: PersonaName::AwsAlb,
        models: "AWS Application Load Balancer, mutual TLS in verify mode (s2n underneath)",
        list: ListSource::Store,
        advertise: false,
        advertise_policy: Policy::Full,
        budget: certgen::wire::SCHANNEL_LIMIT,
        names_in_tls12: true,
        trust: TrustSource::Store,
        past_limit: PastLimit::Refuse {
            limit: 10_000,
            counted: Counted::Subjects,
            error: "ALB quota \"CA certificate subject size per trust store\" (10,000)",
        },
        client_auth: ClientAuth::Required,
        without_cert: WithoutCert::FailHandshake,
        no_cert_alert_tls12: None,
        cert_types_tls12: None,
        schemes_tls12: None,
        schemes_tls13: None,
        sources: &[
            (
                "list",
                "the trust store's CA subjects when AdvertiseTrustStoreCaNames is on (off by \
                 default): ALB mutual TLS documentation",
            ),
            (
                "past the limit",
                "trust store refused past 10,000 bytes of CA subjects (ALB quotas; the lab counts \
                 subject DER bytes); the quota of 25 CA certificates per trust store is not \
                 modeled",
            ),
            (
                "CertificateRequest",
                "rustls's types and schemes: ALB's own not verified here",
            ),
        ],
    },
];

impl Persona {
    /// Whether a `--tls 1.3` server of this persona also takes TLS 1.2
    /// clients. The lab plans one list, for TLS 1.3; it may hand it to a
    /// TLS 1.2 client only where the real server sends the same names in
    /// both versions. s2n sends none in TLS 1.2, so there the lab's TLS 1.3
    /// server takes TLS 1.3 only rather than send names s2n would not.
    pub fn takes_tls12_beside_tls13(&self) -> bool {
        self.names_in_tls12
    }

    /// The row of `name`.
    pub fn get(name: PersonaName) -> Persona {
        PERSONAS
            .iter()
            .find(|p| p.name == name)
            .copied()
            .unwrap_or(PERSONAS[0])
    }

    /// The policy the persona applies: its advertising policy, or `omit`
    /// when it does not advertise.
    pub fn policy(&self, advertise: bool) -> Policy {
        if advertise {
            self.advertise_policy
        } else {
            Policy::Omit
        }
    }

    /// Body bytes of the real server's TLS 1.2 CertificateRequest besides
    /// the names, when its types and schemes are known.
    pub fn real_overhead_tls12(&self) -> Option<usize> {
        let types = self.cert_types_tls12?;
        let schemes = self.schemes_tls12?;
        Some(1 + types.len() + 2 + 2 * schemes.len() + 2)
    }

    /// The real server's limit on the list in bytes of names for TLS 1.3,
    /// when its schemes are known: the extensions block (u16) holds
    /// signature_algorithms and certificate_authorities.
    pub fn real_limit_tls13(&self) -> Option<usize> {
        let schemes = self.schemes_tls13?;
        Some(certgen::wire::U16_MAX - (4 + 2 + 2 * schemes.len()) - (4 + 2))
    }
}

/// Bytes of a list of names as `counted` counts them.
pub fn counted_bytes(subjects: &[&[u8]], counted: Counted) -> usize {
    subjects
        .iter()
        .map(|s| match counted {
            Counted::CaList => certgen::wire::NAME_LEN_PREFIX + s.len(),
            Counted::Subjects => s.len(),
        })
        .sum()
}

/// The table `lab-server personas` prints: each persona, its settings and
/// where each fact comes from.
pub fn table() -> String {
    let mut out = String::new();
    for p in PERSONAS {
        out.push_str(&format!("{}: {}\n", p.name, p.models));
        let past = match p.past_limit {
            PastLimit::Truncate => "keep what fits the budget".to_owned(),
            PastLimit::FailEachHandshake => {
                "start, then fail each TLS 1.2 handshake after ServerKeyExchange with \
                 internal_error"
                    .to_owned()
            }
            PastLimit::Refuse {
                limit,
                counted,
                error,
            } => format!(
                "refuse at start past {limit} bytes of {}: {error}",
                match counted {
                    Counted::CaList => "list (2 + DER per name)",
                    Counted::Subjects => "subject DER",
                }
            ),
            PastLimit::BreakClientAuth { limit } => {
                format!("client authentication fails once the Root store's list passes {limit}")
            }
        };
        let schemes =
            |s: Option<&[u16]>| s.map_or("rustls's own".to_owned(), |s| s.len().to_string());
        let rows = [
            (
                "settings",
                format!(
                    "policy {} (budget {}), client auth {}, advertise {}, names in TLS 1.2 {}",
                    p.advertise_policy,
                    p.budget,
                    p.client_auth,
                    if p.advertise { "on" } else { "off" },
                    if p.names_in_tls12 { "yes" } else { "no" },
                ),
            ),
            ("past the limit", past),
            (
                "CertificateRequest",
                format!(
                    "schemes TLS 1.2 {}, TLS 1.3 {}; real overhead (TLS 1.2) {}",
                    schemes(p.schemes_tls12),
                    schemes(p.schemes_tls13),
                    p.real_overhead_tls12()
                        .map_or("not known here".to_owned(), |o| format!("names + {o}")),
                ),
            ),
            (
                "no certificate",
                format!(
                    "{}; TLS 1.2 alert {}",
                    match p.without_cert {
                        WithoutCert::FailHandshake => "handshake fails",
                        WithoutCert::Reply421 => "TLS completes, then 421 4.7.1",
                    },
                    p.no_cert_alert_tls12
                        .map_or("rustls's (certificate_required, 116)".to_owned(), |a| {
                            format!("{a}")
                        }),
                ),
            ),
        ];
        for (what, value) in rows {
            out.push_str(&format!("  {what:<19} {value}\n"));
        }
        for (what, source) in p.sources {
            out.push_str(&format!("  source: {what:<11} {source}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_has_one_row_and_the_default_is_todays_server() {
        for name in PersonaName::ALL {
            assert_eq!(PERSONAS.iter().filter(|p| p.name == *name).count(), 1);
            assert_eq!(Persona::get(*name).name, *name);
        }
        let d = PERSONAS[0];
        assert_eq!(d.name, PersonaName::Schannel2008R2);
        assert_eq!(d.policy(d.advertise), Policy::Schannel);
        assert_eq!(d.client_auth, ClientAuth::Required);
        assert_eq!(d.past_limit, PastLimit::Truncate);
        assert_eq!((d.schemes_tls12, d.no_cert_alert_tls12), (None, None));
    }

    #[test]
    fn openssl_figures_are_the_measured_ones() {
        let p = Persona::get(PersonaName::Openssl);
        assert_eq!(p.real_overhead_tls12(), Some(48));
        assert_eq!(p.real_limit_tls13(), Some(65_491));
    }

    #[test]
    fn counted_bytes_counts_prefixes_only_for_the_list() {
        let names: [&[u8]; 2] = [&[0; 10], &[0; 5]];
        assert_eq!(counted_bytes(&names, Counted::CaList), 19);
        assert_eq!(counted_bytes(&names, Counted::Subjects), 15);
    }

    #[test]
    fn the_table_names_every_persona() {
        let t = table();
        for p in PERSONAS {
            assert!(t.contains(&format!("{}: ", p.name)), "{t}");
        }
        assert!(t.contains("S2N_ERR_TOO_MANY_CAS"));
    }
}

/// A persona that cannot start with these inputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PersonaError {
    /// The real server refuses this list at configuration.
    #[error(
        "persona {persona}: the CA list is {bytes} bytes of {what}, past the real server's limit \
         of {limit}: it refuses the configuration ({error})"
    )]
    Refused {
        /// the persona
        persona: PersonaName,
        /// bytes counted
        bytes: usize,
        /// what was counted
        what: &'static str,
        /// the limit
        limit: usize,
        /// the real server's error
        error: &'static str,
    },
    /// ClientAuthTrustMode 1 or 2 without a Client Authentication Issuers store.
    #[error(
        "ClientAuthTrustMode {0} trusts only the Client Authentication Issuers store: give it \
         with --client-auth-issuers"
    )]
    NeedsIssuers(TrustMode),
    /// No anchor left to verify clients with.
    #[error("persona {0}: no certificate to trust client chains with")]
    NoTrust(PersonaName),
    /// Past the TLS 1.3 limit the real server sends an encrypted alert the
    /// lab cannot write below rustls.
    #[error(
        "persona {persona}: the CA list is {bytes} bytes, past the TLS 1.3 limit of {limit}; \
         the real server fails each handshake with an encrypted internal_error, which the lab \
         cannot reproduce (use --tls 1.2, or a smaller store)"
    )]
    Tls13PastLimit {
        /// the persona
        persona: PersonaName,
        /// bytes of names
        bytes: usize,
        /// the limit
        limit: usize,
    },
}

/// What a persona makes of the stores: the ordered list to plan from, the
/// anchors that verify client chains, and whether client authentication is
/// broken outright (KB 2880390).
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The certificates whose subjects may be advertised, in order.
    pub list: certgen::Store,
    /// DER of every trust anchor.
    pub anchors: Vec<Vec<u8>>,
    /// Why every client certificate is rejected, when it is.
    pub broken: Option<String>,
    /// What the persona did, for the start report.
    pub notes: Vec<String>,
}

/// The stores a persona may read.
pub struct Stores<'a> {
    /// The trust store (`--store`; Schannel's Trusted Root store).
    pub store: &'a certgen::Store,
    /// Schannel 2012+: the Client Authentication Issuers store.
    pub issuers: Option<&'a certgen::Store>,
    /// The system trust store (dotnet-linux).
    pub system: Option<&'a certgen::Store>,
    /// Schannel 2012+: ClientAuthTrustMode.
    pub trust_mode: TrustMode,
}

fn union(a: &certgen::Store, b: Option<&certgen::Store>) -> certgen::Store {
    let mut roots = a.roots().to_vec();
    for r in b.map(certgen::Store::roots).unwrap_or_default() {
        if !roots.iter().any(|x| x.sha1() == r.sha1()) {
            roots.push(r.clone());
        }
    }
    certgen::Store::from_roots(roots)
}

fn self_signed(der: &[u8]) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    X509Certificate::from_der(der)
        .map(|(_, c)| c.issuer().as_raw() == c.subject().as_raw())
        .unwrap_or(false)
}

/// Applies a persona's list source, trust source and configuration limits.
pub fn resolve(p: &Persona, stores: &Stores<'_>) -> Result<Resolved, PersonaError> {
    let mut notes = Vec::new();
    let list = match p.list {
        ListSource::Store => stores.store.clone(),
        ListSource::IssuersElseStore => match stores.issuers {
            Some(i) => {
                notes.push(format!(
                    "names from the Client Authentication Issuers store ({} certificates)",
                    i.len()
                ));
                i.clone()
            }
            None if stores.trust_mode != TrustMode::MachineTrust => {
                return Err(PersonaError::NeedsIssuers(stores.trust_mode));
            }
            None => stores.store.clone(),
        },
        ListSource::StoreAndSystem => {
            let u = union(stores.store, stores.system);
            notes.push(format!(
                "names from the store ({}) and the system trust store ({}): {} certificates",
                stores.store.len(),
                stores.system.map_or(0, certgen::Store::len),
                u.len()
            ));
            u
        }
    };
    let ders = |s: &certgen::Store| s.roots().iter().map(|r| r.der().to_vec()).collect();
    let anchors: Vec<Vec<u8>> = match p.trust {
        TrustSource::Store => ders(stores.store),
        TrustSource::StoreAndSystem => ders(&union(stores.store, stores.system)),
        TrustSource::ClientAuthTrustMode => match (stores.trust_mode, stores.issuers) {
            (TrustMode::MachineTrust, _) => ders(stores.store),
            (mode, None) => return Err(PersonaError::NeedsIssuers(mode)),
            (TrustMode::ExclusiveRoot, Some(i)) => i
                .roots()
                .iter()
                .filter(|r| self_signed(r.der()))
                .map(|r| r.der().to_vec())
                .collect(),
            (TrustMode::ExclusiveCa, Some(i)) => ders(i),
        },
    };
    if anchors.is_empty() {
        return Err(PersonaError::NoTrust(p.name));
    }
    let subjects = |s: &certgen::Store| -> Vec<Vec<u8>> {
        s.roots().iter().map(|r| r.subject_der().to_vec()).collect()
    };
    let list_subjects = subjects(&list);
    let refs: Vec<&[u8]> = list_subjects.iter().map(Vec::as_slice).collect();
    let mut broken = None;
    match p.past_limit {
        PastLimit::Refuse {
            limit,
            counted,
            error,
        } => {
            let bytes = counted_bytes(&refs, counted);
            if bytes > limit {
                return Err(PersonaError::Refused {
                    persona: p.name,
                    bytes,
                    what: match counted {
                        Counted::CaList => "list (2 + DER per name)",
                        Counted::Subjects => "subject DER",
                    },
                    limit,
                    error,
                });
            }
        }
        PastLimit::BreakClientAuth { limit } if stores.trust_mode == TrustMode::MachineTrust => {
            let root = subjects(stores.store);
            let root_refs: Vec<&[u8]> = root.iter().map(Vec::as_slice).collect();
            let bytes = counted_bytes(&root_refs, Counted::CaList);
            if bytes > limit {
                let why = format!(
                    "KB 2880390: the Trusted Root store's list is {bytes} bytes, past {limit}; \
                     client authentication fails whatever SendTrustedIssuerList says"
                );
                notes.push(why.clone());
                broken = Some(why);
            }
        }
        _ => {}
    }
    Ok(Resolved {
        list,
        anchors,
        broken,
        notes,
    })
}

/// What the start report and every event say about the persona: the
/// CertificateRequest's overhead in the lab and in the real server, and where
/// the lab cannot match the real server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PersonaReport {
    /// The persona.
    pub name: String,
    /// Body bytes of the lab's CertificateRequest besides the names (TLS 1.2:
    /// types, schemes and the three length fields).
    pub overhead: usize,
    /// The same for the real server, when known here.
    pub real_overhead: Option<usize>,
    /// Where the lab's request differs from the real server's, or why it
    /// cannot be compared.
    pub difference: String,
    /// Whether each handshake fails after ServerKeyExchange (past the limit).
    pub fails_each_handshake: bool,
    /// What the persona did with the stores.
    pub notes: Vec<String>,
}

/// The difference between the lab's TLS 1.2 request and the real server's,
/// for the same names: `lab_schemes` are the schemes rustls writes.
pub fn difference_tls12(p: &Persona, lab_schemes: &[u16]) -> String {
    let (Some(types), Some(real)) = (p.cert_types_tls12, p.schemes_tls12) else {
        return "the real server's types and schemes are not known here: the lab sends rustls's \
                (not verified here)"
            .to_owned();
    };
    let missing: Vec<String> = real
        .iter()
        .filter(|s| !lab_schemes.contains(s))
        .map(|s| format!("{s:04x}"))
        .collect();
    let lab_types = 2;
    let real_len = 1 + types.len() + 2 + 2 * real.len() + 2;
    let lab_len = 1 + lab_types + 2 + 2 * lab_schemes.len() + 2;
    let mut parts = vec![format!(
        "certificate_types: {} sent, the real server sends {} (rustls writes rsa_sign and \
         ecdsa_sign only)",
        lab_types,
        types.len()
    )];
    if !missing.is_empty() {
        parts.push(format!(
            "{} of the real server's {} schemes are missing (rustls 0.23 writes only the schemes \
             it has a signature algorithm for in TLS 1.2): {}",
            missing.len(),
            real.len(),
            missing.join(" ")
        ));
    }
    format!(
        "body {} bytes shorter than the real server's for the same names (lab names + {lab_len}, \
         real names + {real_len}): {}",
        real_len.saturating_sub(lab_len),
        parts.join("; ")
    )
}

/// Everything the start planning reads: the stores, the persona and the
/// policy settings, the TLS version and the record size. Server::start and
/// umlab's prediction both plan through [`plan`], so they cannot disagree on
/// the list sent or on what the server does with it.
pub struct PlanInputs<'a> {
    /// The real server family modeled (after any explicit override).
    pub persona: &'a Persona,
    /// The stores it may read, and ClientAuthTrustMode.
    pub stores: Stores<'a>,
    /// The CA-list policy in effect (the persona's, or an explicit one).
    pub policy: crate::policy::Settings,
    /// The TLS version.
    pub version: crate::policy::TlsVersion,
    /// Record size, header included.
    pub max_fragment: usize,
    /// Roots whose fate the report states: (label, index in the trust store).
    pub named: &'a [(String, usize)],
}

/// What a persona does with a store, decided before the server binds.
#[derive(Clone, Debug)]
pub struct PersonaPlan {
    /// The list source, trust anchors and KB 2880390's verdict.
    pub resolved: Resolved,
    /// The list planned from `resolved.list` (indices into it) and its report.
    pub plan: crate::policy::Plan,
    /// The CertificateRequest's fixed part with the persona's schemes.
    pub shape: crate::policy::MessageShape,
    /// The schemes the verifier offers (`None`: the provider's own).
    pub schemes: Option<&'static [u16]>,
    /// The subject DERs handed to rustls, in order (empty when each
    /// handshake fails: nothing is ever sent).
    pub advertised: Vec<Vec<u8>>,
    /// Whether each TLS 1.2 handshake ends after ServerKeyExchange with
    /// internal_error (OpenSSL past the limit).
    pub fails_each_handshake: bool,
    /// What the start report and every event say about the persona.
    pub report: PersonaReport,
}

/// Why a persona's server does not start with these inputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The CA list cannot be sent.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// The modeled server refuses this configuration.
    #[error(transparent)]
    Persona(#[from] PersonaError),
}

/// Plans a persona's server: resolves the stores, applies the policy to the
/// resolved list with the persona's message shape, and decides what happens
/// past the limit (fail each handshake, refuse at start). Pure: no I/O.
pub fn plan(inputs: &PlanInputs<'_>) -> Result<PersonaPlan, PlanError> {
    use crate::policy::{self, Policy, PolicyError, TlsVersion};
    let p = inputs.persona;
    let version = inputs.version;
    let resolved = resolve(
        p,
        &Stores {
            store: inputs.stores.store,
            issuers: inputs.stores.issuers,
            system: inputs.stores.system,
            trust_mode: inputs.stores.trust_mode,
        },
    )?;
    let mut policy_settings = inputs.policy;
    let mut notes = resolved.notes.clone();
    if version == TlsVersion::Tls12 && !p.names_in_tls12 && policy_settings.policy != Policy::Omit {
        policy_settings.policy = Policy::Omit;
        notes.push(format!(
            "{} sends no names in TLS 1.2 (an empty certificate_authorities)",
            p.name
        ));
    }
    let schemes = match version {
        TlsVersion::Tls12 => p.schemes_tls12,
        TlsVersion::Tls13 => p.schemes_tls13,
    };
    let shape = crate::tls::message_shape_with(version, schemes);
    // Tracked CAs are named by their place in the store; find them in the
    // persona's list by thumbprint.
    let named: Vec<(String, usize)> = inputs
        .named
        .iter()
        .filter_map(|(label, i)| {
            let sha1 = inputs.stores.store.roots().get(*i)?.sha1();
            let at = resolved.list.roots().iter().position(|r| r.sha1() == sha1);
            Some((label.clone(), at.unwrap_or(usize::MAX)))
        })
        .collect();
    let entries = policy::entries(&resolved.list);
    let mut fails_each_handshake = false;
    let plan = match policy::plan(
        &entries,
        &policy_settings,
        &shape,
        inputs.max_fragment,
        &named,
    ) {
        Ok(plan) => plan,
        Err(PolicyError::OverProtocolLimit { list, max, .. })
            if p.past_limit == PastLimit::FailEachHandshake =>
        {
            if version == TlsVersion::Tls13 {
                return Err(PersonaError::Tls13PastLimit {
                    persona: p.name,
                    bytes: list,
                    limit: max,
                }
                .into());
            }
            fails_each_handshake = true;
            notes.push(format!(
                "the list is {list} bytes, past {max}: the server starts, and each \
                 handshake ends after ServerKeyExchange with fatal internal_error"
            ));
            policy::plan_whole(
                &entries,
                &policy_settings,
                &shape,
                inputs.max_fragment,
                &named,
            )
        }
        Err(e) => return Err(e.into()),
    };
    let advertised: Vec<Vec<u8>> = if fails_each_handshake {
        Vec::new()
    } else {
        plan.sent
            .iter()
            .filter_map(|&i| resolved.list.roots().get(i))
            .map(|r| r.subject_der().to_vec())
            .collect()
    };
    let lab_schemes: Vec<u16> = match schemes {
        Some(s) => crate::tls::schemes_on_wire(version, s),
        None => Vec::new(),
    };
    let report = PersonaReport {
        name: p.name.to_string(),
        overhead: shape.body_len(0),
        real_overhead: match version {
            TlsVersion::Tls12 => p.real_overhead_tls12(),
            TlsVersion::Tls13 => None,
        },
        difference: match (version, schemes) {
            (TlsVersion::Tls12, _) => difference_tls12(p, &lab_schemes),
            (TlsVersion::Tls13, Some(_)) => {
                "TLS 1.3: the real server's signature_algorithms in its order; the \
                 request is encrypted, sizes come from the lab's encoding"
                    .to_owned()
            }
            (TlsVersion::Tls13, None) => {
                "TLS 1.3: rustls's signature_algorithms; the real server's not known here"
                    .to_owned()
            }
        },
        fails_each_handshake,
        notes,
    };
    Ok(PersonaPlan {
        resolved,
        plan,
        shape,
        schemes,
        advertised,
        fails_each_handshake,
        report,
    })
}

impl Resolved {
    /// The subject DER of each trust anchor that parses, so a caller can
    /// tell by name whether a client chain ends at one of them.
    pub fn anchor_subjects(&self) -> Vec<Vec<u8>> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        self.anchors
            .iter()
            .filter_map(|der| X509Certificate::from_der(der).ok())
            .map(|(_, c)| c.subject().as_raw().to_vec())
            .collect()
    }
}

#[cfg(test)]
mod plan_tests {
    use super::*;
    use crate::policy::TlsVersion;

    fn store(n: usize, len: usize) -> certgen::Store {
        let spec = certgen::roots::RootsSpec {
            count: n as u64,
            seed: Some(1),
            profile: certgen::Profile::Fixed(len),
            key: certgen::KeyAlg::Ed25519,
            dn_only: true,
        };
        certgen::roots::generate(&spec, &|_| {}).expect("roots").0
    }

    fn plan_for(name: PersonaName, s: &certgen::Store) -> Result<PersonaPlan, PlanError> {
        let p = Persona::get(name);
        plan(&PlanInputs {
            persona: &p,
            stores: Stores {
                store: s,
                issuers: None,
                system: None,
                trust_mode: TrustMode::MachineTrust,
            },
            policy: crate::policy::Settings {
                policy: p.policy(p.advertise),
                budget: p.budget,
                ..crate::policy::Settings::default()
            },
            version: TlsVersion::Tls12,
            max_fragment: certgen::wire::MAX_FRAGMENT,
            named: &[],
        })
    }

    #[test]
    fn past_the_limit_each_persona_fails_refuses_or_truncates() {
        // 700 names of 2 + 100 bytes: 71,400 bytes of list.
        let big = store(700, 100);
        let openssl = plan_for(PersonaName::Openssl, &big).expect("openssl starts");
        assert!(openssl.fails_each_handshake && openssl.report.fails_each_handshake);
        assert!(openssl.advertised.is_empty());
        assert_eq!(openssl.plan.report.list_bytes, 700 * 102);
        let schannel = plan_for(PersonaName::Schannel2008R2, &big).expect("truncates");
        assert!(!schannel.fails_each_handshake && schannel.plan.report.truncated);
        assert_eq!(schannel.advertised.len(), 16_384 / 102);
        assert!(matches!(
            plan_for(PersonaName::S2n, &big),
            Err(PlanError::Persona(PersonaError::Refused { .. }))
        ));
        // 90 names of 100 bytes: 9,000 bytes of subjects, under ALB's quota,
        // and ALB does not advertise by default.
        let alb = plan_for(PersonaName::AwsAlb, &store(90, 100)).expect("under the quota");
        assert!(alb.advertised.is_empty());
        assert!(plan_for(PersonaName::AwsAlb, &store(101, 100)).is_err());
    }
}
