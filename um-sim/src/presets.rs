//! Named client presets: one per row of DESIGN.md section 2a, each a real TLS
//! client stack and version with its rules, the source of each fact, and what
//! the stack prints when the CertificateRequest breaks its limit.
//!
//! The rules are the mechanism ([`crate::profile`]); a preset is data. Where
//! a stack's limit lies beyond what um-sim's own TLS stack (rustls 0.23) can
//! take, the preset says the lab cannot observe it ([`Reach`]).

use certgen::wire::{
    ALERT_DECODE_ERROR, ALERT_ILLEGAL_PARAMETER, ALERT_INTERNAL_ERROR, ALERT_UNEXPECTED_MESSAGE,
};
use serde::Serialize;

use crate::profile::Rule;

/// Bytes of CA names um-sim's own client (rustls 0.23 under tokio-rustls)
/// takes under every record layout lab-server offers: measured, it delivers
/// 65,480 with `per-message` records and 64,700 with `coalesced` ones, and
/// gives up from 64,800 to 65,490 (um-sim README; DESIGN.md 2b gives 65,463
/// to 65,486). A request body is larger than its names, so a body limit
/// below this is met before um-sim's own: the lab can show the stack's
/// failure above it and its success at it.
pub const OWN_STACK_NAMES: usize = 64_700;

/// What a client stack does when no certificate of its chain was issued by a
/// listed CA (an empty list matches everything).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unlisted {
    /// Sends an empty Certificate (rule `issuer-listed`).
    Withholds,
    /// Presents its certificate anyway.
    Sends,
}

impl Unlisted {
    /// As the table says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Unlisted::Withholds => "withholds",
            Unlisted::Sends => "sends",
        }
    }
}

/// The alert a stack sends when a request breaks its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "alert")]
pub enum AlertFact {
    /// This fatal alert (description name, code).
    Sends(&'static str, u8),
    /// None: the stack fails its read without an alert (recorded).
    NoAlert,
    /// DESIGN.md 2a records none; um-sim sends none.
    NotRecorded,
}

impl AlertFact {
    /// The alert description code to send, if any.
    pub fn code(self) -> Option<u8> {
        match self {
            AlertFact::Sends(_, code) => Some(code),
            AlertFact::NoAlert | AlertFact::NotRecorded => None,
        }
    }

    /// For the table.
    pub fn describe(self) -> String {
        match self {
            AlertFact::Sends(name, code) => format!("{name} ({code})"),
            AlertFact::NoAlert => "none".to_owned(),
            AlertFact::NotRecorded => "not recorded (um-sim sends none)".to_owned(),
        }
    }
}

/// Whether the lab can show a limit at work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reach {
    /// Below um-sim's own limit: the lab shows the stack failing above it
    /// and succeeding at it.
    Observable,
    /// At or past um-sim's own limit: from about 64,800 bytes of names
    /// um-sim may fail (class own-stack-limit) where this stack goes on.
    BeyondOwnStack,
    /// The stack is um-sim's own (rustls 0.23): its limit is what class
    /// own-stack-limit reports.
    OwnStack,
    /// No limit modeled: um-sim's own limit is the only one.
    NoLimit,
}

impl Reach {
    /// For the table.
    pub fn describe(self) -> &'static str {
        match self {
            Reach::Observable => "observable here",
            Reach::BeyondOwnStack => {
                "not observable here: um-sim's own rustls client gives up first, below 65,536 \
                 bytes of names (own-stack-limit)"
            }
            Reach::OwnStack => "um-sim's own stack: reported as own-stack-limit",
            Reach::NoLimit => "no limit modeled; um-sim's own (own-stack-limit) applies",
        }
    }
}

/// A TLS version a client stack can negotiate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Version {
    /// TLS 1.2.
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3.
    #[serde(rename = "1.3")]
    Tls13,
}

impl Version {
    /// As `um-sim profiles` and the JSON spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Tls12 => "1.2",
            Version::Tls13 => "1.3",
        }
    }
}

/// TLS 1.2 and 1.3.
pub const BOTH: &[Version] = &[Version::Tls12, Version::Tls13];
/// TLS 1.2 at most.
const TLS12_ONLY: &[Version] = &[Version::Tls12];
/// Windows before Server 2022 / Windows 11 has no TLS 1.3 in Schannel.
const SCHANNEL_VERSIONS: &str = "Microsoft, Protocols in TLS/SSL (Schannel SSP): TLS 1.3 from \
Windows Server 2022 and Windows 11 on; TLS 1.2 at most before, and the preset models the 2008 R2 \
client of the incident (Exchange 2010 UM)";
/// Java 17: TLS 1.3 by default.
const JAVA13: &str = "Java 17 offers TLS 1.3 by default (JDK 11 on, JEP 332); TLS 1.3: measured \
here, see verified";
/// Go: TLS 1.3 by default since Go 1.13.
const GO13: &str = "crypto/tls offers TLS 1.3 by default (Go 1.13 on); TLS 1.3: measured here, \
see verified";

/// One row of DESIGN.md 2a.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Preset {
    /// The name: the stack and its version.
    pub name: &'static str,
    /// Earlier names that resolve to this preset.
    pub aliases: &'static [&'static str],
    /// The stack, for messages.
    pub stack: &'static str,
    /// Its rules.
    pub rules: &'static [Rule],
    /// The limit, as DESIGN.md 2a states it.
    pub limit: &'static str,
    /// What it does when its issuer is not listed.
    pub unlisted: Unlisted,
    /// What the stack prints when a request breaks its limit, as DESIGN.md 2a
    /// quotes it; `{N}` is the body length from the handshake header, `{MAX}`
    /// the limit. `None` where the table records nothing.
    pub prints: Option<&'static str>,
    /// The alert it sends then.
    pub alert: AlertFact,
    /// Where each fact comes from, as DESIGN.md 2a gives it: (fact, source).
    pub sources: &'static [(&'static str, &'static str)],
    /// What this repository's tests prove against the real stack.
    pub verified: &'static str,
    /// The TLS versions the stack negotiates: um-sim offers exactly these.
    pub versions: &'static [Version],
    /// Where that comes from, and what is known of its limit in TLS 1.3.
    pub versions_source: &'static str,
}

/// The presets whose TLS 1.3 behaviour a real-peer test proves here
/// (tests/clients' java-tls13 and go-tls13 rows, at the threshold and one
/// byte over): an explicit list, so a row is never taken as proven over TLS
/// 1.3 because its text forgot to say otherwise.
pub const VERIFIED_OVER_TLS13: &[&str] = &["java17", "go"];

/// Not verified against the real stack in this repository.
const PENDING: &str = "not verified here: real-peer test pending";

/// The presets, in DESIGN.md 2a's order.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "schannel-2008r2",
        aliases: &["schannel"],
        stack: "Schannel client, Windows 7 / Server 2008 R2 and later (Exchange 2010 UM, Lync, \
                IIS as client)",
        rules: &[Rule::IssuerListed, Rule::MaxBody(32_768)],
        limit: "fragmented handshake messages up to MessageLimitClient, default 32,768 (body)",
        unlisted: Unlisted::Withholds,
        prints: Some("SEC_E_ILLEGAL_MESSAGE 0x80090326"),
        alert: AlertFact::NotRecorded,
        sources: &[
            (
                "limit",
                "tls-registry-settings (Messaging, fragment parsing: MessageLimitClient)",
            ),
            ("withholds", "KB 2464556 (automatic credential selection)"),
        ],
        verified: PENDING,
        versions: TLS12_ONLY,
        versions_source: SCHANNEL_VERSIONS,
    },
    Preset {
        name: "schannel-legacy",
        aliases: &["legacy-schannel"],
        stack: "Schannel client on XP / 2003 / Vista / 2008 before KB 2541763",
        rules: &[Rule::IssuerListed, Rule::OneRecord],
        limit: "the request must fit one record (body <= 16,380 with 16 KB records)",
        unlisted: Unlisted::Withholds,
        prints: Some("cannot parse fragmented messages"),
        alert: AlertFact::NotRecorded,
        sources: &[("all", "KB 2541763")],
        verified: PENDING,
        versions: TLS12_ONLY,
        versions_source: "TLS 1.2 at most (Schannel before Windows Server 2022 has no TLS 1.3; these systems negotiate TLS 1.0 by default, the lab offers TLS 1.2): Microsoft, Protocols in TLS/SSL (Schannel SSP)",
    },
    Preset {
        name: "dotnet-windows",
        aliases: &[],
        stack: ".NET SslStream on Windows (Schannel)",
        rules: &[Rule::IssuerListed, Rule::MaxBody(32_768)],
        limit: "Schannel's MessageLimitClient, default 32,768 (body)",
        unlisted: Unlisted::Withholds,
        prints: Some("0x80090326"),
        alert: AlertFact::NotRecorded,
        sources: &[
            ("limit", "Schannel's (tls-registry-settings)"),
            (
                "withholds",
                "dotnet/runtime SslStream.Protocol.cs (no selection callback: chain issuers \
                 compared with the list)",
            ),
        ],
        verified: PENDING,
        versions: TLS12_ONLY,
        versions_source: "SslStream negotiates what Schannel offers: TLS 1.2 at most on Windows before Server 2022 / Windows 11 (Microsoft, Protocols in TLS/SSL (Schannel SSP)); on 2022 and later TLS 1.3 is not modeled here",
    },
    Preset {
        name: "java17",
        aliases: &[],
        stack: "Java 17 (SunX509)",
        rules: &[Rule::IssuerListed, Rule::MaxBody(32_768)],
        limit: "jdk.tls.maxHandshakeMessageSize, default 32,768 (body); \
                java17:maxHandshakeMessageSize=N sets it",
        unlisted: Unlisted::Withholds,
        prints: Some(
            "The size of the handshake message ({N}) exceeds the maximum allowed size ({MAX})",
        ),
        alert: AlertFact::Sends("unexpected_message", ALERT_UNEXPECTED_MESSAGE),
        sources: &[("all", "measured (DESIGN.md 2a)")],
        verified: "verified here: tests/clients (OpenJDK 17.0.15, the default SunX509 key \
                   manager): a 32,768-byte body delivers, 32,769 fails with \
                   `javax.net.ssl.SSLProtocolException: The size of the handshake message \
                   (32769) exceeds the maximum allowed size (32768)` and alert \
                   unexpected_message; it withholds its certificate when its CA is not listed \
                   and presents leaf + issuing CA when only the two-tier root is listed (chain \
                   walk); its `measure` mode bisects to 32,768 / 32,769. Over TLS 1.3 \
                   (tests/clients java-tls13) the same limit: a 32,768-byte body delivers, \
                   32,769 fails with the same text and alert unexpected_message, and um-sim, \
                   decrypting the request, stops at the same byte",
        versions: BOTH,
        versions_source: JAVA13,
    },
    Preset {
        name: "go",
        aliases: &[],
        stack: "Go crypto/tls client (1.19 measured; the same constant today)",
        rules: &[Rule::IssuerListed, Rule::MaxBody(65_536)],
        limit: "65,536 (body)",
        unlisted: Unlisted::Withholds,
        prints: Some("tls: handshake message of length {N} bytes exceeds maximum of {MAX} bytes"),
        alert: AlertFact::Sends("internal_error", ALERT_INTERNAL_ERROR),
        sources: &[
            ("limit, text, alert", "measured (DESIGN.md 2a, Go 1.19)"),
            ("withholds", "crypto/tls SupportsCertificate"),
        ],
        verified: "verified here: tests/clients (Go 1.19.8, tls.Config.Certificates): a \
                   65,536-byte body delivers, 65,537 fails with `tls: handshake message of \
                   length 65537 bytes exceeds maximum of 65536 bytes` and alert internal_error; \
                   it withholds its certificate when its CA is not listed and presents leaf + \
                   issuing CA when only the two-tier root is listed; its `measure` mode bisects \
                   to 65,536 / 65,537. At 65,536 um-sim itself stops first (own-stack-limit); \
                   above it um-sim reports this limit, judged on the handshake header. Over \
                   TLS 1.3 (tests/clients go-tls13) the same limit, reachable there: lab-server's \
                   largest TLS 1.3 request has a 65,538-byte body (65,505 bytes of names, \
                   rustls's 9 schemes); 65,536 delivers (um-sim: own-stack-limit), 65,537 fails \
                   with `tls: handshake message of length 65537 bytes exceeds maximum of 65536 \
                   bytes` and alert internal_error, and um-sim, decrypting the request, \
                   reports this limit",
        versions: BOTH,
        versions_source: GO13,
    },
    Preset {
        name: "nss",
        aliases: &[],
        stack: "NSS / Firefox client (no nickname)",
        rules: &[Rule::IssuerListed, Rule::MaxBody(131_071)],
        limit: "131,071 (body)",
        unlisted: Unlisted::Withholds,
        prints: None,
        alert: AlertFact::NotRecorded,
        sources: &[("all", "nss lib/ssl/authcert.c (chain walk)")],
        verified: "partly: NSS 3.87.1 (Debian 12; peers/nss, tests/clients, \
                   NSS_GetClientAuthData with no nickname) withholds its certificate when no \
                   issuer of its chain is listed and presents leaf + issuing CA when only the \
                   two-tier root is listed; it takes the largest request lab-server sends \
                   (body 65,560); the 131,071 limit lies beyond what TLS 1.2 can carry",
        versions: BOTH,
        versions_source: "NSS offers TLS 1.3 by default (3.39 on); TLS 1.3: the limit is applied to the decrypted CertificateRequest as in TLS 1.2; not verified here against the real stack",
    },
    Preset {
        name: "erlang-tls12",
        aliases: &[],
        stack: "Erlang/OTP ssl client, TLS 1.2",
        rules: &[Rule::MaxBody(131_072)],
        limit: "131,072 (body)",
        unlisted: Unlisted::Sends,
        prints: None,
        alert: AlertFact::NotRecorded,
        sources: &[("all", "otp lib/ssl")],
        verified: "partly: OTP 25 (ssl 10.8.7; peers/erlang, tests/clients) over TLS 1.2 \
                   sends its certificate when its CA is not listed, takes the largest request \
                   lab-server sends (body 65,560) and the two-tier PKI delivers; the 131,072 \
                   limit lies beyond what TLS 1.2 can carry. Not modeled: it refuses \
                   (decode_error) a list holding a name whose CN passes 128 characters",
        versions: TLS12_ONLY,
        versions_source: "as its name says: OTP's TLS 1.2 behaviour (it sends when unlisted); OTP offers TLS 1.3 too, modeled by erlang-tls13",
    },
    Preset {
        name: "erlang-tls13",
        aliases: &[],
        stack: "Erlang/OTP ssl client, TLS 1.3",
        rules: &[Rule::IssuerListed, Rule::MaxBody(131_072)],
        limit: "131,072 (body)",
        unlisted: Unlisted::Withholds,
        prints: None,
        alert: AlertFact::NotRecorded,
        sources: &[("all", "otp lib/ssl")],
        verified: "partly: OTP 25 (ssl 10.8.7; peers/erlang, tests/clients) over TLS 1.3 \
                   withholds its certificate when its CA is not listed (certificate_required), \
                   takes the largest request lab-server sends and the two-tier PKI delivers; \
                   the 131,072 limit lies beyond what TLS 1.3 can carry. Not modeled: it \
                   refuses (decode_error) a list holding a name whose CN passes 128 characters",
        versions: &[Version::Tls13],
        versions_source: "as its name says: OTP's TLS 1.3 behaviour (it withholds when unlisted); against a TLS 1.2 server OTP falls back, modeled by erlang-tls12; the 131,072 limit lies beyond what TLS 1.3 carries",
    },
    Preset {
        name: "openssl3",
        aliases: &[],
        stack: "OpenSSL 3.0 client (s_client, Python ssl, Node, curl, .NET on Linux)",
        rules: &[Rule::MaxBody(102_400)],
        limit: "max_cert_list 102,400 (body)",
        unlisted: Unlisted::Sends,
        prints: Some("EXCESSIVE_MESSAGE_SIZE"),
        alert: AlertFact::Sends("illegal_parameter", ALERT_ILLEGAL_PARAMETER),
        sources: &[("all", "measured (DESIGN.md 2a)")],
        verified: "partly: tests/clients runs openssl s_client (OpenSSL 3.0.22), Python \
                   3.11.7 ssl (OpenSSL 3.0.22) and Node 20.20.2 (its bundled OpenSSL 3.0.19): \
                   each presents its certificate when its CA is not listed and presents leaf + \
                   issuing CA in the two-tier PKI, and each delivers at a 65,560-byte body \
                   (65,535 bytes of names, the largest list TLS 1.2 carries; um-sim stops \
                   there first, own-stack-limit); the 102,400 limit lies beyond any list \
                   lab-server can send and is not tested (lab-server/tests/peers.rs shows \
                   s_client sending under the schannel and omit policies too)",
        versions: BOTH,
        versions_source: "OpenSSL 3.0 offers TLS 1.2 and 1.3 by default; TLS 1.3: max_cert_list applies to the decrypted CertificateRequest as in TLS 1.2; not verified here against the real stack (the limit lies beyond what TLS 1.3 carries)",
    },
    Preset {
        name: "gnutls37",
        aliases: &[],
        stack: "GnuTLS 3.7 client",
        rules: &[Rule::MaxBody(131_072)],
        limit: "128 KB = 131,072 (body)",
        unlisted: Unlisted::Sends,
        prints: Some("GNUTLS_E_HANDSHAKE_TOO_LARGE"),
        alert: AlertFact::NotRecorded,
        sources: &[("all", "measured (DESIGN.md 2a)")],
        verified: "partly: tests/clients runs gnutls-cli 3.7.9: it presents its certificate \
                   when its CA is not listed and leaf + issuing CA in the two-tier PKI, and \
                   delivers at a 65,560-byte body (65,535 bytes of names, the largest list TLS \
                   1.2 carries; um-sim stops there first, own-stack-limit); the 131,072 limit \
                   lies beyond any list lab-server can send and is not tested. `sends` is \
                   gnutls-cli's own choice (its retrieve callback returns the loaded chain); a \
                   program that leaves the choice to the library gets GnuTLS's built-in \
                   matching of the chain's issuers (lib/auth/cert.c find_x509_client_cert), \
                   not verified here",
        versions: BOTH,
        versions_source: "GnuTLS 3.7 offers TLS 1.3 by default (NORMAL priority); TLS 1.3: not verified here against the real stack (the limit lies beyond what TLS 1.3 carries)",
    },
    Preset {
        name: "boringssl",
        aliases: &[],
        stack: "BoringSSL client",
        rules: &[Rule::MaxBody(102_400)],
        limit: "max_cert_list 102,400 (body); its 16,384 cap applies only to a server that \
                asks no certificate",
        unlisted: Unlisted::Sends,
        prints: Some("EXCESSIVE_MESSAGE_SIZE"),
        alert: AlertFact::Sends("illegal_parameter", ALERT_ILLEGAL_PARAMETER),
        sources: &[("all", "boringssl ssl/handshake.cc")],
        verified: PENDING,
        versions: BOTH,
        versions_source: "BoringSSL offers TLS 1.2 and 1.3 by default; TLS 1.3: not verified here against the real stack",
    },
    Preset {
        name: "rustls023",
        aliases: &[],
        stack: "rustls 0.23 client, default resolver (um-sim's own stack)",
        rules: &[],
        limit: "65,511 with 16 KB records (\"message buffer full\"), always < 65,536 \
                (HandshakePayloadTooLarge); depends on the record layout",
        unlisted: Unlisted::Sends,
        prints: Some("message buffer full / HandshakePayloadTooLarge"),
        alert: AlertFact::Sends("decode_error", ALERT_DECODE_ERROR),
        sources: &[("all", "measured (DESIGN.md 2a, 2b); rustls#3176")],
        verified: "partly: um-sim is itself a rustls 0.23 client (0.23.46 as locked), so its \
                   own limit is what class own-stack-limit reports; um-sim/tests/aiosmtpd.rs \
                   shows it presenting its certificate to an OpenSSL server whose request lists \
                   no names; sending when unlisted is not tested against a real peer",
        versions: BOTH,
        versions_source: "rustls 0.23 offers TLS 1.2 and 1.3 (with_safe_default_protocol_versions); its own limit in TLS 1.3 is what class own-stack-limit reports",
    },
    Preset {
        name: "s2n",
        aliases: &[],
        stack: "s2n-tls client",
        rules: &[Rule::MaxBody(65_536)],
        limit: "65,536 (body)",
        unlisted: Unlisted::Sends,
        prints: Some("S2N_ERR_BAD_MESSAGE"),
        alert: AlertFact::NotRecorded,
        sources: &[("all", "s2n tls/s2n_handshake_io.c")],
        verified: PENDING,
        versions: BOTH,
        versions_source: "s2n-tls default policy offers TLS 1.3; TLS 1.3: not verified here against the real stack",
    },
    Preset {
        name: "mbedtls-3.6.2",
        aliases: &[],
        stack: "Mbed TLS 3.6.2 and earlier (and 2.28) client",
        rules: &[Rule::OneRecord],
        limit: "one record: body <= 16,380",
        unlisted: Unlisted::Sends,
        prints: Some("-0x7080 SSL - The requested feature is not available"),
        alert: AlertFact::NoAlert,
        sources: &[
            ("limit", "measured (DESIGN.md 2a, 3.6.2; 2.28.3 here)"),
            (
                "text",
                "mbedtls_strerror(-0x7080), measured with 2.28.3; 3.6.2's debug log adds \
                 \"TLS handshake fragmentation not supported\"",
            ),
        ],
        verified: "verified here with Mbed TLS 2.28.3 (Debian 12; peers/mbedtls, \
                   tests/clients; 2.28 has no TLS 1.3 client): a 16,380-byte body in one \
                   record delivers, 16,381 in two records fails with -0x7080 (SSL - The \
                   requested feature is not available) and no alert; it sends its certificate \
                   when its CA is not listed; the two-tier PKI delivers. 3.6.0 to 3.6.2 are not \
                   installable here",
        versions: BOTH,
        versions_source: "Mbed TLS 3.6 enables its TLS 1.3 client by default (MBEDTLS_SSL_PROTO_TLS1_3; 2.28 has none); TLS 1.3: one-record applies to the protected records, whose plaintext Mbed TLS reassembles per record after decryption; not verified here (2.28 is what Debian 12 ships)",
    },
    Preset {
        name: "mbedtls-3.6.3",
        aliases: &[],
        stack: "Mbed TLS 3.6.3 and later client (default configuration)",
        rules: &[Rule::MaxBuffer(16_752)],
        limit: "16,743 (body, with 16 KB records: an input buffer of 16,765 bytes, \
                max-buffer=16752)",
        unlisted: Unlisted::Sends,
        prints: Some("-0x7100 \"requesting more data than fits\""),
        alert: AlertFact::NoAlert,
        sources: &[
            ("limit, text, no alert", "measured (DESIGN.md 2a, 3.6.6)"),
            (
                "buffer arithmetic",
                "mbedtls library/ssl_msg.c (mbedtls_ssl_fetch_input, \
                 mbedtls_ssl_prepare_handshake_record), library/ssl_misc.h \
                 (MBEDTLS_SSL_IN_BUFFER_LEN)",
            ),
        ],
        verified: "not verified here: Debian 12 ships Mbed TLS 2.28 only",
        versions: BOTH,
        versions_source: "Mbed TLS 3.6 enables its TLS 1.3 client by default (MBEDTLS_SSL_PROTO_TLS1_3); TLS 1.3: max-buffer counts each protected record whole (its ciphertext and tag are read into the input buffer before decryption); not verified here",
    },
    Preset {
        name: "wolfssl5",
        aliases: &[],
        stack: "wolfSSL 5.x client (default build)",
        rules: &[Rule::MaxBody(18_462)],
        limit: "MAX_HANDSHAKE_SZ 18,462 (body)",
        unlisted: Unlisted::Sends,
        prints: Some("-404 Handshake message too large Error"),
        alert: AlertFact::NoAlert,
        sources: &[
            ("limit", "wolfssl internal.h"),
            (
                "text, no alert",
                "measured here (5.5.4, HANDSHAKE_SIZE_ERROR)",
            ),
        ],
        verified: "verified here with wolfSSL 5.5.4 (Debian 12; peers/wolfssl, tests/clients) \
                   over TLS 1.2: an 18,462-byte body delivers, 18,463 fails with -404 \
                   (Handshake message too large Error) and no alert; it sends its certificate \
                   when its CA is not listed; the two-tier PKI delivers. Over TLS 1.3 it fails \
                   after the handshake against lab-server (-425), not modeled",
        versions: BOTH,
        versions_source: "wolfSSL 5 offers TLS 1.3 by default; TLS 1.3: not verified here against the real stack (over TLS 1.3 it fails after the handshake against lab-server, -425, not modeled)",
    },
];

/// The preset named `name`, by its name or an alias.
pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS
        .iter()
        .find(|p| p.name == name || p.aliases.contains(&name))
}

impl Preset {
    /// Whether the lab can show this preset's limit at work.
    pub fn reach(&self) -> Reach {
        reach_of(self.name, self.rules)
    }

    /// Whether a real-peer test in this repository proves the row (its
    /// `verified` text starts with "verified here"); anything the lab prints
    /// from an unproven row says "not verified here".
    pub fn is_verified(&self) -> bool {
        self.verified.starts_with("verified here")
    }

    /// Whether the row is proven for a request received over TLS `version`:
    /// [`Preset::is_verified`], and for TLS 1.3 also listed in
    /// [`VERIFIED_OVER_TLS13`]. `umlab probe` judges decrypted TLS 1.3
    /// requests, and must not call a TLS 1.3 verdict proven on TLS 1.2
    /// evidence alone.
    pub fn is_verified_over(&self, version: Version) -> bool {
        self.is_verified()
            && (version == Version::Tls12 || VERIFIED_OVER_TLS13.contains(&self.name))
    }

    /// The sources, one line.
    pub fn sources_text(&self) -> String {
        self.sources
            .iter()
            .map(|(fact, source)| {
                if *fact == "all" {
                    (*source).to_owned()
                } else {
                    format!("{fact}: {source}")
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// One row of `um-sim profiles`: a preset as the table shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The preset's name.
    pub profile: &'static str,
    /// Its aliases.
    pub aliases: Vec<&'static str>,
    /// The stack.
    pub stack: &'static str,
    /// The rules, as `--profile` rule lists spell them.
    pub rules: Vec<String>,
    /// The limit, as DESIGN.md 2a states it.
    pub limit: &'static str,
    /// Whether the lab can show it.
    pub reach: Reach,
    /// `withholds` or `sends`.
    pub unlisted_issuer: Unlisted,
    /// What the stack prints (`{N}`: body bytes, `{MAX}`: the limit).
    pub prints: Option<&'static str>,
    /// The alert it sends.
    pub alert: AlertFact,
    /// The sources, one line.
    pub source: String,
    /// What this repository's tests prove against the real stack.
    pub verified: &'static str,
    /// The TLS versions it negotiates (um-sim offers these).
    pub versions: Vec<Version>,
    /// Their source, and what is known of the limit in TLS 1.3.
    pub versions_source: &'static str,
}

/// Every preset as a row of the table.
pub fn rows() -> Vec<Row> {
    PRESETS
        .iter()
        .map(|p| Row {
            profile: p.name,
            aliases: p.aliases.to_vec(),
            stack: p.stack,
            rules: p.rules.iter().map(Rule::to_string).collect(),
            limit: p.limit,
            reach: p.reach(),
            unlisted_issuer: p.unlisted,
            prints: p.prints,
            alert: p.alert,
            source: p.sources_text(),
            verified: p.verified,
            versions: p.versions.to_vec(),
            versions_source: p.versions_source,
        })
        .collect()
}

/// The table as Markdown: what `um-sim profiles` prints and um-sim's README
/// shows (a test keeps them equal).
pub fn markdown() -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let mut out = String::from(
        "| profile | stack | TLS | rules | limit | unlisted issuer | what the stack prints | alert | \
         source | verified here |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in rows() {
        let name = match r.aliases.as_slice() {
            [] => format!("`{}`", r.profile),
            a => format!(
                "`{}` (alias {})",
                r.profile,
                a.iter()
                    .map(|x| format!("`{x}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let rules = if r.rules.is_empty() {
            "none".to_owned()
        } else {
            r.rules.join(", ")
        };
        let versions = r
            .versions
            .iter()
            .map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let line = [
            name,
            cell(r.stack),
            format!("{versions} ({})", cell(r.versions_source)),
            rules,
            format!("{}; {}", cell(r.limit), r.reach.describe()),
            r.unlisted_issuer.as_str().to_owned(),
            r.prints
                .map_or("not recorded".to_owned(), |p| format!("`{}`", cell(p))),
            r.alert.describe(),
            cell(&r.source),
            cell(r.verified),
        ]
        .join(" | ");
        out.push_str(&format!("| {line} |\n"));
    }
    out
}

/// [`Reach`] of a set of rules (of the preset named, if any).
pub(crate) fn reach_of(preset: &str, rules: &[Rule]) -> Reach {
    if preset == "rustls023" {
        return Reach::OwnStack;
    }
    let limit = rules.iter().find_map(|r| match r {
        Rule::MaxBody(n) => Some(*n),
        // A one-record client fails above one record; mbedTLS's buffer above
        // 16 KB: both far below um-sim's own limit.
        Rule::OneRecord => Some(0),
        Rule::MaxBuffer(n) => Some(*n),
        Rule::IssuerListed => None,
    });
    match limit {
        Some(n) if n < OWN_STACK_NAMES => Reach::Observable,
        Some(_) => Reach::BeyondOwnStack,
        None => Reach::NoLimit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls13_verdicts_are_proven_only_where_tls13_was_measured() {
        let wolf = find("wolfssl5").unwrap();
        for name in VERIFIED_OVER_TLS13 {
            let p = find(name).expect("a preset");
            assert!(
                p.is_verified() && p.versions.contains(&Version::Tls13),
                "{name}"
            );
            assert!(!p.versions_source.contains("not verified here"), "{name}");
        }
        assert!(wolf.is_verified_over(Version::Tls12));
        assert!(!wolf.is_verified_over(Version::Tls13));
        let java = find("java17").unwrap();
        assert!(java.is_verified_over(Version::Tls12) && java.is_verified_over(Version::Tls13));
        let nss = find("nss").unwrap();
        assert!(!nss.is_verified_over(Version::Tls12) && !nss.is_verified_over(Version::Tls13));
    }

    #[test]
    fn names_and_aliases_are_unique() {
        let mut all: Vec<&str> = PRESETS
            .iter()
            .flat_map(|p| std::iter::once(p.name).chain(p.aliases.iter().copied()))
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "a name or alias used twice");
        assert_eq!(PRESETS.len(), 16, "one preset per row of DESIGN.md 2a");
    }

    #[test]
    fn each_preset_is_consistent() {
        for p in PRESETS {
            assert_eq!(
                p.rules.contains(&Rule::IssuerListed),
                p.unlisted == Unlisted::Withholds,
                "{}: issuer-listed exactly when it withholds",
                p.name
            );
            assert!(!p.sources.is_empty(), "{}: no source", p.name);
            assert!(!p.verified.is_empty(), "{}", p.name);
            if let Some(text) = p.prints {
                assert!(
                    !text.contains("{N}") || p.rules.iter().any(|r| matches!(r, Rule::MaxBody(_)))
                );
            }
        }
        assert_eq!(find("schannel").map(|p| p.name), Some("schannel-2008r2"));
        assert_eq!(
            find("legacy-schannel").map(|p| p.name),
            Some("schannel-legacy")
        );
        assert!(find("lenient").is_none(), "lenient is no stack");
    }

    #[test]
    fn reach_follows_um_sims_own_limit() {
        let reach = |name: &str| find(name).map(Preset::reach);
        assert_eq!(reach("java17"), Some(Reach::Observable));
        assert_eq!(reach("wolfssl5"), Some(Reach::Observable));
        assert_eq!(reach("mbedtls-3.6.3"), Some(Reach::Observable));
        assert_eq!(reach("mbedtls-3.6.2"), Some(Reach::Observable));
        for beyond in [
            "go",
            "s2n",
            "openssl3",
            "boringssl",
            "nss",
            "gnutls37",
            "erlang-tls12",
        ] {
            assert_eq!(reach(beyond), Some(Reach::BeyondOwnStack), "{beyond}");
        }
        assert_eq!(reach("rustls023"), Some(Reach::OwnStack));
        assert_eq!(reach_of("", &[Rule::IssuerListed]), Reach::NoLimit);
        assert_eq!(reach_of("", &[Rule::MaxBody(64_699)]), Reach::Observable);
        assert_eq!(
            reach_of("", &[Rule::MaxBody(64_700)]),
            Reach::BeyondOwnStack
        );
    }
}
