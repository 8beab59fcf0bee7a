//! Client profiles: how the client reacts to the server's CertificateRequest.
//!
//! A profile is a set of rules, each a fact about a real TLS stack
//! (shared/DESIGN.md section 2):
//! - `issuer-listed`: send the certificate only when its issuer's DN is in the
//!   list, or the list is empty (Schannel, Exchange, Lync, Java's SunX509);
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

    /// Whether to present the certificate, given the names the server sent.
    pub fn presents_certificate(&self, names: &[&[u8]], issuer: &[u8]) -> bool {
        !self.issuer_listed() || names.is_empty() || names.contains(&issuer)
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
        let java: Profile = "java17".parse().unwrap();
        assert_eq!(java.violated(32_768, 3, true), None);
        assert_eq!(java.violated(32_769, 1, false), Some(Rule::MaxBody(32_768)));
        let legacy: Profile = "legacy-schannel".parse().unwrap();
        assert_eq!(legacy.violated(100, 1, true), None);
        assert_eq!(legacy.violated(20_000, 1, false), Some(Rule::OneRecord));
        assert_eq!(legacy.violated(100, 2, true), Some(Rule::OneRecord));
    }
}
