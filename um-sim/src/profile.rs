//! Client profiles: how the client reacts to the server's CertificateRequest.
//!
//! A profile is a set of rules, each a fact about a real TLS stack
//! (shared/DESIGN.md sections 2a and 4); the named presets that combine them
//! for each stack, with what the stack prints, are in [`crate::presets`]:
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

use crate::presets::{self, Preset, Reach, Version};

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
    /// The preset the name resolved to (by its name or an alias), with the
    /// stack's facts: what it prints, its alert, its sources. `None` for
    /// `lenient` and for rule lists. Serialized as the preset's name.
    #[serde(serialize_with = "preset_name")]
    pub preset: Option<&'static Preset>,
}

fn preset_name<S: serde::Serializer>(
    preset: &Option<&'static Preset>,
    out: S,
) -> Result<S::Ok, S::Error> {
    match preset {
        Some(p) => out.serialize_str(p.name),
        None => out.serialize_none(),
    }
}

/// `lenient`: no rule at all.
const LENIENT_STACK: &str = "a client with no rule: it sends its certificate and takes any \
request (OpenSSL, GnuTLS, Python ssl below their own limits)";

/// Java's knob on its preset, as `java17:maxHandshakeMessageSize=N`.
const JAVA_KNOB: &str = "java17:maxHandshakeMessageSize=";

impl FromStr for Profile {
    type Err = String;

    /// A preset's name or alias (`um-sim profiles`), `lenient`,
    /// `java17:maxHandshakeMessageSize=N`, or rules joined by `+`
    /// (`issuer-listed`, `one-record`, `max-body=N`, `max-handshake=N`,
    /// `max-buffer=N`).
    fn from_str(s: &str) -> Result<Profile, String> {
        let named = |stack: String, rules: Vec<Rule>, preset| Profile {
            name: s.to_owned(),
            stack,
            rules,
            preset,
        };
        if let Some(p) = presets::find(s) {
            return Ok(named(p.stack.to_owned(), p.rules.to_vec(), Some(p)));
        }
        if s == "lenient" {
            return Ok(named(LENIENT_STACK.to_owned(), Vec::new(), None));
        }
        if let Some(n) = s.strip_prefix(JAVA_KNOB) {
            let java = presets::find("java17").ok_or("the java17 preset is missing")?;
            let n = positive(n).ok_or_else(|| {
                format!("profile {s:?}: maxHandshakeMessageSize must be a positive number")
            })?;
            let stack = format!("{} with jdk.tls.maxHandshakeMessageSize={n}", java.stack);
            return Ok(named(
                stack,
                vec![Rule::IssuerListed, Rule::MaxBody(n)],
                Some(java),
            ));
        }
        let rules = parse_rules(s).map_err(|why| {
            let names: Vec<String> = presets::PRESETS
                .iter()
                .map(|p| match p.aliases {
                    [] => p.name.to_owned(),
                    aliases => format!("{} ({})", p.name, aliases.join(", ")),
                })
                .collect();
            format!(
                "unknown profile {s:?} ({why}): expected a preset ({}), lenient, \
                 {JAVA_KNOB}N, or rules joined by + (issuer-listed, one-record, max-body=N, \
                 max-handshake=N, max-buffer=N); `um-sim profiles` describes the presets",
                names.join(", ")
            )
        })?;
        let stack = match rules.as_slice() {
            [Rule::MaxBody(n)] => format!("a client with a {n}-byte handshake message limit"),
            [Rule::MaxBuffer(n)] => format!("a client with a {n}-byte reassembly buffer"),
            _ => format!("a client with the rules {s}"),
        };
        Ok(named(stack, rules, None))
    }
}

/// A positive decimal number.
fn positive(n: &str) -> Option<usize> {
    n.parse::<usize>().ok().filter(|&n| n > 0)
}

/// Rules joined by `+`, each kind at most once.
fn parse_rules(s: &str) -> Result<Vec<Rule>, String> {
    let mut rules: Vec<Rule> = Vec::new();
    for token in s.split('+') {
        let limit = |prefix: &str| token.strip_prefix(prefix).map(positive);
        let rule = match token {
            "issuer-listed" => Rule::IssuerListed,
            "one-record" => Rule::OneRecord,
            _ => match (
                limit("max-body=").or_else(|| limit("max-handshake=")),
                limit("max-buffer="),
            ) {
                (Some(Some(n)), _) => Rule::MaxBody(n),
                (_, Some(Some(n))) => Rule::MaxBuffer(n),
                (Some(None), _) | (_, Some(None)) => {
                    return Err(format!("{token:?}: N must be a positive number"));
                }
                (None, None) => return Err(format!("{token:?} is no preset or rule")),
            },
        };
        if rules
            .iter()
            .any(|r| std::mem::discriminant(r) == std::mem::discriminant(&rule))
        {
            return Err(format!("{token:?}: that rule is given twice"));
        }
        rules.push(rule);
    }
    Ok(rules)
}

impl Profile {
    /// The TLS versions the client offers: its preset's (a Schannel of 2008
    /// R2 has no TLS 1.3), TLS 1.2 and 1.3 for `lenient` and rule lists.
    pub fn versions(&self) -> &'static [Version] {
        self.preset.map_or(presets::BOTH, |p| p.versions)
    }

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

    /// What the modeled stack prints when a request breaks `rule`, with the
    /// body length from the handshake header filled in; `None` for
    /// `issuer-listed`, for a profile that is no preset, and where DESIGN.md
    /// 2a records nothing.
    pub fn prints(&self, rule: Rule, body_len: usize) -> Option<String> {
        let limit = match rule {
            Rule::IssuerListed => return None,
            Rule::OneRecord => 0,
            Rule::MaxBody(n) | Rule::MaxBuffer(n) => n,
        };
        let text = self.preset?.prints?;
        Some(
            text.replace("{N}", &body_len.to_string())
                .replace("{MAX}", &limit.to_string()),
        )
    }

    /// The fatal alert (description code) the stack sends when a request
    /// breaks `rule`: the preset's; for a profile that is no preset,
    /// unexpected_message on a body limit (as `max-handshake=N` always did)
    /// and none otherwise.
    pub fn alert(&self, rule: Rule) -> Option<u8> {
        match (rule, self.preset) {
            (Rule::IssuerListed, _) => None,
            (_, Some(p)) => p.alert.code(),
            (Rule::MaxBody(_), None) => Some(certgen::wire::ALERT_UNEXPECTED_MESSAGE),
            (_, None) => None,
        }
    }

    /// Whether the lab can show this profile's limit at work.
    pub fn reach(&self) -> Reach {
        presets::reach_of(self.preset.map_or("", |p| p.name), &self.rules)
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
    fn every_preset_and_alias_parses_to_its_rules() {
        for preset in presets::PRESETS {
            for name in std::iter::once(preset.name).chain(preset.aliases.iter().copied()) {
                let p: Profile = name.parse().unwrap();
                assert_eq!(p.rules, preset.rules, "{name}");
                assert_eq!(p.preset.map(|x| x.name), Some(preset.name), "{name}");
                assert_eq!(p.name, name);
            }
        }
        // Today's names keep working.
        let p: Profile = "schannel".parse().unwrap();
        assert_eq!(p.rules, [Rule::IssuerListed, Rule::MaxBody(32_768)]);
        let p: Profile = "boringssl".parse().unwrap();
        assert_eq!(
            p.rules,
            [Rule::MaxBody(102_400)],
            "corrected: max_cert_list, sends"
        );
        let p: Profile = "lenient".parse().unwrap();
        assert!(p.rules.is_empty() && p.preset.is_none());
        assert_eq!(p.reach(), Reach::NoLimit);
    }

    #[test]
    fn java_knob_and_rule_lists() {
        let p: Profile = "java17:maxHandshakeMessageSize=65000".parse().unwrap();
        assert_eq!(p.rules, [Rule::IssuerListed, Rule::MaxBody(65_000)]);
        assert_eq!(
            p.prints(Rule::MaxBody(65_000), 70_000).as_deref(),
            Some(
                "The size of the handshake message (70000) exceeds the maximum allowed size (65000)"
            )
        );
        assert!(
            p.stack.contains("maxHandshakeMessageSize=65000"),
            "{}",
            p.stack
        );
        assert!(
            "java17:maxHandshakeMessageSize=0"
                .parse::<Profile>()
                .is_err()
        );
        let p: Profile = "issuer-listed+max-buffer=16752".parse().unwrap();
        assert_eq!(p.rules, [Rule::IssuerListed, Rule::MaxBuffer(16_752)]);
        assert!(p.preset.is_none());
        let p: Profile = "one-record+issuer-listed".parse().unwrap();
        assert_eq!(p.rules, [Rule::OneRecord, Rule::IssuerListed]);
        for bad in [
            "max-body=1+max-handshake=2",
            "issuer-listed+",
            "max-body=x",
            "+one-record",
        ] {
            let err = bad.parse::<Profile>().unwrap_err();
            assert!(err.starts_with("unknown profile"), "{bad}: {err}");
        }
        let err = "schanel".parse::<Profile>().unwrap_err();
        assert!(
            err.contains("schannel-2008r2 (schannel)") && err.contains("mbedtls-3.6.3"),
            "{err}"
        );
    }

    #[test]
    fn serializes_the_preset_by_name() {
        let p: Profile = "schannel".parse().unwrap();
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["preset"], "schannel-2008r2");
        assert_eq!(v["name"], "schannel");
        let v = serde_json::to_value("lenient".parse::<Profile>().unwrap()).unwrap();
        assert!(v["preset"].is_null());
    }

    #[test]
    fn prints_and_alerts() {
        let go: Profile = "go".parse().unwrap();
        assert_eq!(
            go.prints(Rule::MaxBody(65_536), 65_540).as_deref(),
            Some("tls: handshake message of length 65540 bytes exceeds maximum of 65536 bytes")
        );
        assert_eq!(go.alert(Rule::MaxBody(65_536)), Some(80));
        assert_eq!(go.prints(Rule::IssuerListed, 1), None);
        let mbedtls: Profile = "mbedtls-3.6.3".parse().unwrap();
        assert_eq!(mbedtls.alert(Rule::MaxBuffer(16_752)), None, "no alert");
        assert_eq!(
            mbedtls.prints(Rule::MaxBuffer(16_752), 20_000).as_deref(),
            Some("-0x7100 \"requesting more data than fits\"")
        );
        let openssl: Profile = "openssl3".parse().unwrap();
        assert_eq!(openssl.alert(Rule::MaxBody(102_400)), Some(47));
        assert_eq!(openssl.reach(), Reach::BeyondOwnStack);
        let nss: Profile = "nss".parse().unwrap();
        assert_eq!(
            nss.prints(Rule::MaxBody(131_071), 1),
            None,
            "nothing recorded"
        );
        let adhoc: Profile = "max-handshake=100".parse().unwrap();
        assert_eq!(adhoc.alert(Rule::MaxBody(100)), Some(10), "as before");
        assert_eq!(adhoc.prints(Rule::MaxBody(100), 200), None);
        let java: Profile = "java17".parse().unwrap();
        assert_eq!(java.reach(), Reach::Observable);
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
