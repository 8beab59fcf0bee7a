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
//!   at most N bytes (Java 17: 32,768; BoringSSL: 16,384).

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
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::IssuerListed => f.write_str("issuer-listed"),
            Rule::OneRecord => f.write_str("one-record"),
            Rule::MaxBody(n) => write!(f, "max-body={n}"),
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
                let n = s
                    .strip_prefix("max-handshake=")
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|&n| n > 0)
                    .ok_or_else(|| {
                        format!(
                            "unknown profile {s:?}: expected schannel, legacy-schannel, java17, \
                             boringssl, lenient or max-handshake=N"
                        )
                    })?;
                return Ok(Profile {
                    name: s.to_owned(),
                    stack: format!("a client with a {n}-byte handshake message limit"),
                    rules: vec![Rule::MaxBody(n)],
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

    /// The record rule a request breaks, seen as it arrives: `body_len` from
    /// the handshake header, `records` spanned so far, `complete` once the whole
    /// message is in. The body rule fires on the header alone, as Java does.
    pub fn violated(&self, body_len: usize, records: usize, complete: bool) -> Option<Rule> {
        if let Some(n) = self.max_body()
            && body_len > n
        {
            return Some(Rule::MaxBody(n));
        }
        let spans = records > 1 || (!complete && records >= 1);
        (self.one_record() && spans).then_some(Rule::OneRecord)
    }
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
    }
}
