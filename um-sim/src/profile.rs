//! Client profiles: how the client reacts to the server's CertificateRequest.
//!
//! A profile is a set of rules, each a fact about a real TLS stack
//! (shared/DESIGN.md section 2):
//! - `issuer-listed`: send the certificate only when the issuer DN of some
//!   certificate of the chain it would send (leaf, then each intermediate) is
//!   in the list, or the list is empty (Schannel, Exchange, Lync, Java's SunX509);
//! - `one-record`: the CertificateRequest must not span records (Schannel
//!   clients before the 2008 fragmentation update);
//! - `max-body=N`: the CertificateRequest body, 4-byte header excluded, must be
//!   at most N bytes (Java 17: 32,768);
//! - `max-buffer=N`: the client's reassembly buffer, which depends on the
//!   record layout (mbedTLS >= 3.6.3): see [`buffered_bytes`].

use std::fmt;
use std::str::FromStr;

/// One rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "rule", content = "limit", rename_all = "kebab-case")]
pub enum Rule {
    /// Present the certificate only if its issuer is listed (or the list is empty).
    IssuerListed,
    /// Abort when the CertificateRequest spans more than one record.
    OneRecord,
    /// Abort when the CertificateRequest body exceeds N bytes.
    MaxBody(usize),
    /// Abort when a record carrying the CertificateRequest would make the
    /// client hold more than N bytes ([`buffered_bytes`]).
    MaxBuffer(usize),
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::IssuerListed => f.write_str("issuer-listed"),
            Rule::OneRecord => f.write_str("one-record"),
            Rule::MaxBody(n) => write!(f, "max-body={n}"),
            Rule::MaxBuffer(n) => write!(f, "max-buffer={n}"),
        }
    }
}

/// A named set of rules and the stack it models.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Profile {
    /// The name given on the command line.
    pub name: String,
    /// The stack the profile models, for messages.
    pub stack: String,
    /// The rules.
    pub rules: Vec<Rule>,
}

impl FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Profile, String> {
        let (stack, rules): (&str, Vec<Rule>) = match s {
            "schannel" => (
                "Schannel client (Exchange UM, Lync)",
                vec![Rule::IssuerListed],
            ),
            "legacy-schannel" => (
                "Schannel client before the record-fragmentation update (XP, 2003, Vista, 2008)",
                vec![Rule::IssuerListed, Rule::OneRecord],
            ),
            "java17" => (
                "Java 17 (SunX509, jdk.tls.maxHandshakeMessageSize 32768)",
                vec![Rule::IssuerListed, Rule::MaxBody(32_768)],
            ),
            "boringssl" => (
                "BoringSSL (16 KB handshake message limit)",
                vec![Rule::MaxBody(16_384)],
            ),
            "lenient" => ("OpenSSL, GnuTLS, Python ssl", Vec::new()),
            _ => {
                let limit = |prefix: &str| {
                    s.strip_prefix(prefix)
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|&n| n > 0)
                };
                let (stack, rule) = if let Some(n) = limit("max-handshake=") {
                    (
                        format!("a client with a {n}-byte handshake message limit"),
                        Rule::MaxBody(n),
                    )
                } else if let Some(n) = limit("max-buffer=") {
                    (
                        format!("a client with a {n}-byte reassembly buffer"),
                        Rule::MaxBuffer(n),
                    )
                } else {
                    return Err(format!(
                        "unknown profile {s:?}: expected schannel, legacy-schannel, java17, \
                         boringssl, lenient, max-handshake=N or max-buffer=N"
                    ));
                };
                return Ok(Profile {
                    name: s.to_owned(),
                    stack,
                    rules: vec![rule],
                });
            }
        };
        Ok(Profile {
            name: s.to_owned(),
            stack: stack.to_owned(),
            rules,
        })
    }
}

impl Profile {
    /// The body limit, if the profile has one.
    pub fn max_body(&self) -> Option<usize> {
        self.rules.iter().find_map(|r| match r {
            Rule::MaxBody(n) => Some(*n),
            _ => None,
        })
    }

    /// Whether the profile refuses a request spanning records.
    pub fn one_record(&self) -> bool {
        self.rules.contains(&Rule::OneRecord)
    }

    /// Whether the certificate is sent only when its issuer is listed.
    pub fn issuer_listed(&self) -> bool {
        self.rules.contains(&Rule::IssuerListed)
    }

    /// Whether to present a one-certificate chain whose issuer is `issuer`,
    /// given the names the server sent: [`Profile::presents_chain`] for a
    /// chain of one.
    pub fn presents_certificate(&self, names: &[&[u8]], issuer: &[u8]) -> bool {
        self.presents_chain(names, &[issuer])
    }

    /// Whether to present the chain, given the names the server sent and the
    /// issuer DN of each certificate of the chain as it would be sent (leaf,
    /// then each intermediate). Every stack that withholds matches over the
    /// whole chain (DESIGN.md 2a): a two-tier PKI whose root alone is listed
    /// passes, because the issuing CA's issuer is the root.
    pub fn presents_chain<I: AsRef<[u8]>>(&self, names: &[&[u8]], chain_issuers: &[I]) -> bool {
        !self.issuer_listed() || names.is_empty() || listed_in_chain(names, chain_issuers).is_some()
    }

    /// The reassembly buffer limit, if the profile has one.
    pub fn max_buffer(&self) -> Option<usize> {
        self.rules.iter().find_map(|r| match r {
            Rule::MaxBuffer(n) => Some(*n),
            _ => None,
        })
    }

    /// The record rule a request breaks, seen as it arrives: `body_len` from
    /// the handshake header, `records` spanned so far, `complete` once the whole
    /// message is in. The body rule fires on the header alone, as Java does.
    /// `max-buffer` needs the record layout: see [`Profile::judge`].
    pub fn violated(&self, body_len: usize, records: usize, complete: bool) -> Option<Rule> {
        self.judge(&RequestFacts {
            body_len,
            records,
            complete,
            buffered: 0,
        })
    }

    /// The record rule a request breaks, in the order a client meets them:
    /// `max-body` on the handshake header, `one-record` when the first record
    /// ends inside the message, `max-buffer` on a record that continues it.
    pub fn judge(&self, facts: &RequestFacts) -> Option<Rule> {
        if let Some(n) = self.max_body()
            && facts.body_len > n
        {
            return Some(Rule::MaxBody(n));
        }
        let spans = facts.records > 1 || (!facts.complete && facts.records >= 1);
        if self.one_record() && spans {
            return Some(Rule::OneRecord);
        }
        match self.max_buffer() {
            Some(n) if facts.buffered > n => Some(Rule::MaxBuffer(n)),
            _ => None,
        }
    }
}

/// What is known of a CertificateRequest when the record rules are judged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestFacts {
    /// Body bytes, from the handshake header.
    pub body_len: usize,
    /// Records the message has spanned so far.
    pub records: usize,
    /// Whether the whole message is in.
    pub complete: bool,
    /// The most the client held at once, by [`buffered_bytes`].
    pub buffered: usize,
}

/// The bytes a client holds, by the measure of `max-buffer`, while a handshake
/// message arrives in records: for each record carrying bytes of the message,
/// the record's 5-byte header + the message's bytes (handshake header
/// included) that came in earlier records + the record's whole payload (bytes
/// of other messages in it included); the largest of these.
///
/// This is mbedTLS's reassembly (3.6.3 and later, `ssl_msg.c`): the bytes
/// of the message received so far sit at a fixed offset of the input buffer
/// (13 bytes in: an 8-byte sequence counter and the 5-byte header), the next
/// record is fetched right after them, and `mbedtls_ssl_fetch_input` refuses
/// a record whose header and payload do not fit ("requesting more data than
/// fits", -0x7100). So a client with an input buffer of B bytes has
/// `max-buffer=B-13`. In the default configuration B is
/// `MBEDTLS_SSL_IN_BUFFER_LEN` = 13 + 16,384 + 336 (IV, MAC, CBC padding, CID
/// padding) + 32 (CID) = 16,765, so `max-buffer=16752`: with 16 KB records
/// and the request starting a record of its own, a body of 16,743 bytes fits
/// and 16,744 does not, the figure measured against mbedTLS 3.6.6.
///
/// `message` is the message's range in the handshake stream (the payloads of
/// the flight's records, concatenated), header included; `records` the ranges
/// of the records, in order.
pub fn buffered_bytes(
    message: std::ops::Range<usize>,
    records: impl IntoIterator<Item = std::ops::Range<usize>>,
) -> usize {
    records
        .into_iter()
        .filter(|r| r.start < message.end && message.start < r.end)
        .map(|r| {
            let earlier = r.start.saturating_sub(message.start);
            certgen::wire::RECORD_HEADER_LEN + earlier + r.len()
        })
        .max()
        .unwrap_or(0)
}

/// The position in the chain (0 = leaf) of the first certificate whose
/// issuer is among `names`, as a withholding stack walks the chain.
pub fn listed_in_chain<I: AsRef<[u8]>>(names: &[&[u8]], chain_issuers: &[I]) -> Option<usize> {
    chain_issuers
        .iter()
        .position(|issuer| names.contains(&issuer.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets() {
        let p: Profile = "legacy-schannel".parse().unwrap();
        assert_eq!(p.rules, [Rule::IssuerListed, Rule::OneRecord]);
        let p: Profile = "java17".parse().unwrap();
        assert_eq!(p.max_body(), Some(32_768));
        let p: Profile = "max-handshake=1000".parse().unwrap();
        assert_eq!(p.rules, [Rule::MaxBody(1000)]);
        assert!("max-handshake=0".parse::<Profile>().is_err());
        let p: Profile = "max-buffer=16752".parse().unwrap();
        assert_eq!(p.rules, [Rule::MaxBuffer(16_752)]);
        assert_eq!(p.max_buffer(), Some(16_752));
        assert!("max-buffer=".parse::<Profile>().is_err());
        assert!("openssl".parse::<Profile>().is_err());
    }

    #[test]
    fn decisions() {
        let schannel: Profile = "schannel".parse().unwrap();
        let issuer = b"ca".as_slice();
        assert!(schannel.presents_certificate(&[], issuer));
        assert!(schannel.presents_certificate(&[b"x", issuer], issuer));
        assert!(!schannel.presents_certificate(&[b"x"], issuer));
        let lenient: Profile = "lenient".parse().unwrap();
        assert!(lenient.presents_certificate(&[b"x"], issuer));
        // A two-tier chain: the leaf issued by the issuing CA, the issuing CA
        // by the root. The root alone listed is enough; neither is not.
        let chain: [&[u8]; 2] = [b"issuing", b"root"];
        assert!(schannel.presents_chain(&[b"x", b"root"], &chain));
        assert!(schannel.presents_chain(&[b"issuing"], &chain));
        assert!(!schannel.presents_chain(&[b"x", b"leaf"], &chain));
        assert!(
            schannel.presents_chain::<&[u8]>(&[], &[]),
            "an empty list matches all"
        );
        assert!(!schannel.presents_chain::<&[u8]>(&[b"x"], &[]));
        assert_eq!(listed_in_chain(&[b"root"], &chain), Some(1));
        assert_eq!(listed_in_chain(&[b"root", b"issuing"], &chain), Some(0));
        let java: Profile = "java17".parse().unwrap();
        assert_eq!(java.violated(32_768, 3, true), None);
        assert_eq!(java.violated(32_769, 1, false), Some(Rule::MaxBody(32_768)));
        let legacy: Profile = "legacy-schannel".parse().unwrap();
        assert_eq!(legacy.violated(100, 1, true), None);
        assert_eq!(legacy.violated(20_000, 1, false), Some(Rule::OneRecord));
        assert_eq!(legacy.violated(100, 2, true), Some(Rule::OneRecord));
        let mbedtls: Profile = "max-buffer=16752".parse().unwrap();
        let facts = |buffered| RequestFacts {
            body_len: 20_000,
            records: 2,
            complete: true,
            buffered,
        };
        assert_eq!(mbedtls.judge(&facts(16_752)), None);
        assert_eq!(mbedtls.judge(&facts(16_753)), Some(Rule::MaxBuffer(16_752)));
        assert_eq!(
            mbedtls.violated(20_000, 2, true),
            None,
            "no layout, no buffer verdict"
        );
        assert_eq!(
            java.judge(&facts(1 << 20)),
            None,
            "a body limit ignores the buffer"
        );
    }

    #[test]
    fn buffer_arithmetic() {
        // A message at 100..20_104 in records of 16 KB from 100: the second
        // record holds the rest.
        let records = [0..100, 100..16_484, 16_484..20_104, 20_104..20_108];
        assert_eq!(
            buffered_bytes(100..20_104, records.clone()),
            5 + 16_384 + 3_620
        );
        // Only records carrying the message count; none, nothing.
        assert_eq!(buffered_bytes(0..100, records.clone()), 105);
        assert_eq!(buffered_bytes(30_000..30_010, records), 0);
    }
}
