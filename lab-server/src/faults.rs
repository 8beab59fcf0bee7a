//! Fault injection, pure: the fault grammar (one spec string, the same for
//! `--fault`, the TOML `fault = [...]` list and the inspector's JSON), the
//! replies an SMTP fault sends, the decision which faults fire for a message
//! or a handshake, and the cut of a CA list at a byte. No I/O here: the
//! server ([`crate::server`]) applies what this module decides, the record
//! shaper ([`crate::shaper`]) does the framing, and rustls is handed a cut
//! list (the CertificateRequest is in the transcript, so its bytes are never
//! rewritten under rustls).
//!
//! Grammar: `SPEC[@TRIGGER]`.
//! - `smtp:mail:CODE`, `smtp:rcpt:CODE`, `smtp:data:CODE` (data = the reply at
//!   the end of DATA); CODE one of [`SMTP_CODES`].
//! - `tls:close-after-request`, `tls:delay-before-done=MS`,
//!   `tls:fragment-request=N` (N >= 1), `tls:cut-list-at=N`.
//! - TRIGGER: `p=F` (probability per message or handshake, 0 <= F <= 1) or
//!   `nth=N` (only the Nth of the server's run, 1-based); none = every one.
//!
//! SMTP faults count MAIL transactions (a MAIL command the server would
//! accept); TLS faults count handshakes (STARTTLS commands answered 220).

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use certgen::wire::NAME_LEN_PREFIX;

/// The SMTP reply codes a fault may send: the transient and permanent
/// failures servers give at MAIL, RCPT and the end of DATA (RFC 5321 4.2.3
/// defines them; its 4.3.2 does not list 554 for MAIL or RCPT, which servers
/// send in practice).
pub const SMTP_CODES: [u16; 5] = [421, 451, 452, 550, 554];

/// Where in a transaction an SMTP fault answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// The reply to MAIL FROM.
    Mail,
    /// The reply to each RCPT TO of the message.
    Rcpt,
    /// The reply after the message's end marker.
    Data,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Mail => "mail",
            Stage::Rcpt => "rcpt",
            Stage::Data => "data",
        }
    }

    fn place(self) -> &'static str {
        match self {
            Stage::Mail => "at MAIL",
            Stage::Rcpt => "at RCPT",
            Stage::Data => "at the end of DATA",
        }
    }
}

/// What a fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Answer `code` at `stage` instead of the server's own reply.
    Smtp {
        /// Where.
        stage: Stage,
        /// One of [`SMTP_CODES`].
        code: u16,
    },
    /// Stop the first flight right after the CertificateRequest and close:
    /// the ServerHelloDone never leaves.
    CloseAfterRequest,
    /// Hold the ServerHelloDone this many milliseconds.
    DelayBeforeDone {
        /// Milliseconds.
        ms: u64,
    },
    /// Send the CertificateRequest in records of at most this many bytes of
    /// payload (valid framing: a client that reassembles still succeeds).
    FragmentRequest {
        /// Payload bytes per record, at least 1.
        bytes: usize,
    },
    /// Advertise the CA list cut at this byte of its TLS 1.2 encoding
    /// ([`cut_ca_list`]).
    CutListAt {
        /// Bytes of the encoded list kept.
        bytes: usize,
    },
}

impl Action {
    /// Whether the fault belongs to a handshake (else to a message).
    pub fn is_tls(&self) -> bool {
        !matches!(self, Action::Smtp { .. })
    }

    /// Whether the fault changes record framing (impossible below rustls in
    /// TLS 1.3, where the records are encrypted).
    pub fn is_framing(&self) -> bool {
        matches!(
            self,
            Action::CloseAfterRequest
                | Action::DelayBeforeDone { .. }
                | Action::FragmentRequest { .. }
        )
    }
}

/// When a fault fires.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Trigger {
    /// Every message (or handshake).
    Every,
    /// Each one with this probability, drawn from the fault seed.
    Probability(f64),
    /// Only the Nth of the server's run (1-based).
    Nth(u64),
}

/// One fault: what and when.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fault {
    /// What it does.
    pub action: Action,
    /// When it fires.
    pub trigger: Trigger,
}

/// Why a fault spec was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    /// Neither `smtp:` nor `tls:`.
    #[error(
        "fault {0:?}: expected smtp:mail|rcpt|data:CODE or tls:close-after-request, \
         tls:delay-before-done=MS, tls:fragment-request=N, tls:cut-list-at=N, \
         optionally followed by @p=F or @nth=N"
    )]
    Unknown(String),
    /// An SMTP stage other than mail, rcpt, data.
    #[error("fault {0:?}: unknown SMTP stage: expected mail, rcpt or data")]
    Stage(String),
    /// A code outside [`SMTP_CODES`].
    #[error(
        "fault {spec:?}: code {code:?} is not offered: expected one of 421, 451, 452, 550, 554"
    )]
    Code {
        /// The spec.
        spec: String,
        /// The code given.
        code: String,
    },
    /// A TLS fault's number missing or out of range.
    #[error("fault {spec:?}: {why}")]
    Value {
        /// The spec.
        spec: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A trigger other than `p=F` or `nth=N`.
    #[error(
        "fault {0:?}: bad trigger: expected @p=F (0 <= F <= 1, per message or handshake) \
         or @nth=N (N >= 1)"
    )]
    Trigger(String),
    /// A framing fault in TLS 1.3.
    #[error(
        "fault {0}: cannot be applied in TLS 1.3, where the CertificateRequest and the \
         ServerHelloDone's place are encrypted records below rustls; the lab does not fake it \
         (use --tls 1.2, or tls:cut-list-at, which rustls itself sends)"
    )]
    Tls13(String),
    /// A TLS fault on a server that sends no CertificateRequest.
    #[error("fault {0}: the server sends no CertificateRequest (--client-auth none)")]
    NoRequest(String),
}

impl FromStr for Fault {
    type Err = FaultError;

    fn from_str(s: &str) -> Result<Fault, FaultError> {
        let spec = s.trim();
        let (what, trigger) = match spec.split_once('@') {
            Some((w, t)) => (w, Some(t)),
            None => (spec, None),
        };
        let trigger = match trigger {
            None => Trigger::Every,
            Some(t) => parse_trigger(t).ok_or_else(|| FaultError::Trigger(spec.to_owned()))?,
        };
        let action = if let Some(rest) = what.strip_prefix("smtp:") {
            let (stage, code) = rest
                .split_once(':')
                .ok_or_else(|| FaultError::Unknown(spec.to_owned()))?;
            let stage = match stage {
                "mail" => Stage::Mail,
                "rcpt" => Stage::Rcpt,
                "data" => Stage::Data,
                _ => return Err(FaultError::Stage(spec.to_owned())),
            };
            let code_err = || FaultError::Code {
                spec: spec.to_owned(),
                code: code.to_owned(),
            };
            let code: u16 = code.parse().map_err(|_| code_err())?;
            if !SMTP_CODES.contains(&code) {
                return Err(code_err());
            }
            Action::Smtp { stage, code }
        } else if let Some(rest) = what.strip_prefix("tls:") {
            let (name, value) = match rest.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (rest, None),
            };
            let number = |why: &'static str| -> Result<u64, FaultError> {
                value
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or(FaultError::Value {
                        spec: spec.to_owned(),
                        why,
                    })
            };
            let size = |why: &'static str| -> Result<usize, FaultError> {
                usize::try_from(number(why)?).map_err(|_| FaultError::Value {
                    spec: spec.to_owned(),
                    why,
                })
            };
            match name {
                "close-after-request" if value.is_none() => Action::CloseAfterRequest,
                "close-after-request" => {
                    return Err(FaultError::Value {
                        spec: spec.to_owned(),
                        why: "tls:close-after-request takes no value",
                    });
                }
                "delay-before-done" => Action::DelayBeforeDone {
                    ms: number("tls:delay-before-done=MS needs milliseconds, e.g. =2000")?,
                },
                "fragment-request" => {
                    let bytes = size("tls:fragment-request=N needs N >= 1 bytes per record")?;
                    if bytes == 0 {
                        return Err(FaultError::Value {
                            spec: spec.to_owned(),
                            why: "tls:fragment-request=N needs N >= 1 bytes per record",
                        });
                    }
                    Action::FragmentRequest { bytes }
                }
                "cut-list-at" => Action::CutListAt {
                    bytes: size("tls:cut-list-at=N needs a byte count N >= 0")?,
                },
                _ => return Err(FaultError::Unknown(spec.to_owned())),
            }
        } else {
            return Err(FaultError::Unknown(spec.to_owned()));
        };
        Ok(Fault { action, trigger })
    }
}

fn parse_trigger(t: &str) -> Option<Trigger> {
    if let Some(p) = t.strip_prefix("p=") {
        let p: f64 = p.parse().ok()?;
        return (0.0..=1.0).contains(&p).then_some(Trigger::Probability(p));
    }
    let n: u64 = t.strip_prefix("nth=")?.parse().ok()?;
    (n >= 1).then_some(Trigger::Nth(n))
}

impl fmt::Display for Fault {
    /// The spec, in the grammar it parses from.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.action {
            Action::Smtp { stage, code } => write!(f, "smtp:{}:{code}", stage.name())?,
            Action::CloseAfterRequest => f.write_str("tls:close-after-request")?,
            Action::DelayBeforeDone { ms } => write!(f, "tls:delay-before-done={ms}")?,
            Action::FragmentRequest { bytes } => write!(f, "tls:fragment-request={bytes}")?,
            Action::CutListAt { bytes } => write!(f, "tls:cut-list-at={bytes}")?,
        }
        match self.trigger {
            Trigger::Every => Ok(()),
            Trigger::Probability(p) => write!(f, "@p={p}"),
            Trigger::Nth(n) => write!(f, "@nth={n}"),
        }
    }
}

/// Parses a list of specs; the first bad one is the error.
pub fn parse_all<S: AsRef<str>>(specs: &[S]) -> Result<Vec<Fault>, FaultError> {
    specs.iter().map(|s| s.as_ref().parse()).collect()
}

/// The reply an SMTP fault sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmtpReply {
    /// Reply code.
    pub code: u16,
    /// Enhanced status code (RFC 3463).
    pub enhanced: &'static str,
    /// Text (the server appends which fault sent it).
    pub text: &'static str,
    /// Whether the server closes the connection after it (421: RFC 5321
    /// 3.8, the server closes the transmission channel).
    pub closes: bool,
}

/// The reply `code` at `stage`, with the enhanced status code and text a
/// real server sends for it.
pub fn smtp_reply(stage: Stage, code: u16) -> SmtpReply {
    let (enhanced, text) = match (code, stage) {
        (421, _) => (
            "4.3.2",
            "Service not available, closing transmission channel",
        ),
        (451, _) => (
            "4.3.0",
            "Requested action aborted: local error in processing",
        ),
        (452, _) => ("4.3.1", "Insufficient system storage"),
        (550, Stage::Rcpt) => ("5.7.1", "Delivery not authorized, message refused"),
        (550, _) => ("5.7.1", "Requested action not taken: message refused"),
        (554, Stage::Data) => ("5.6.0", "Transaction failed: message content refused"),
        (554, _) => ("5.7.1", "Transaction failed"),
        _ => ("4.3.0", "Requested action aborted"),
    };
    SmtpReply {
        code,
        enhanced,
        text,
        closes: code == 421,
    }
}

/// What a fault's count runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// MAIL transactions.
    Message,
    /// TLS handshakes.
    Handshake,
}

/// The random draw in `[0, 1)` for fault `index` at the `n`th event of
/// `scope` under `seed`: a hash (splitmix64), so the draws do not depend on
/// the order in which concurrent connections ask, and a test can compute
/// them.
pub fn draw(seed: u64, scope: Scope, n: u64, index: usize) -> f64 {
    let tag = match scope {
        Scope::Message => 0x6d73_6700,
        Scope::Handshake => 0x746c_7300,
    };
    let mut x = seed
        ^ tag
        ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (index as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    for _ in 0..2 {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
    }
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether `trigger` fires for the `n`th event given the draw `r` in [0, 1).
pub fn fires(trigger: Trigger, n: u64, r: f64) -> bool {
    match trigger {
        Trigger::Every => true,
        Trigger::Probability(p) => r < p,
        Trigger::Nth(k) => n == k,
    }
}

/// The faults of `scope` that fire for its `n`th event (1-based), by index
/// in `faults`, in order; `draw(i)` is fault i's random draw.
pub fn decide(faults: &[Fault], scope: Scope, n: u64, draw: impl Fn(usize) -> f64) -> Vec<usize> {
    faults
        .iter()
        .enumerate()
        .filter(|(_, f)| f.action.is_tls() == (scope == Scope::Handshake))
        .filter(|(i, f)| fires(f.trigger, n, draw(*i)))
        .map(|(i, _)| i)
        .collect()
}

/// The CA list (subject DERs in order) cut at byte `at` of its TLS 1.2
/// encoding (each name a 2-byte length and its DER; the list's own 2-byte
/// length not counted): names wholly before `at` are kept; a name straddling
/// `at` is kept truncated to its bytes before `at` (a malformed DN in valid
/// framing: its length prefix says the truncated length); a cut inside a
/// length prefix, or right after one, drops that name (a DN has at least one
/// byte). The result's encoding is never longer than `at`.
pub fn cut_ca_list(names: &[Vec<u8>], at: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut offset = 0usize;
    for name in names {
        let end = offset + NAME_LEN_PREFIX + name.len();
        if end <= at {
            out.push(name.clone());
            offset = end;
            continue;
        }
        let room = at.saturating_sub(offset + NAME_LEN_PREFIX);
        if let Some(head) = name.get(..room).filter(|h| !h.is_empty()) {
            out.push(head.to_vec());
        }
        break;
    }
    out
}

/// What the server can apply: framing faults need TLS 1.2, TLS faults need a
/// CertificateRequest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applicable {
    /// The server speaks TLS 1.3.
    pub tls13: bool,
    /// The server sends no CertificateRequest.
    pub no_request: bool,
}

impl Applicable {
    /// Refuses a fault this server cannot apply, with the reason.
    pub fn check(&self, fault: &Fault) -> Result<(), FaultError> {
        if fault.action.is_tls() && self.no_request {
            return Err(FaultError::NoRequest(fault.to_string()));
        }
        if fault.action.is_framing() && self.tls13 {
            return Err(FaultError::Tls13(fault.to_string()));
        }
        Ok(())
    }
}

/// A fault that fired, for the event and the counts.
#[derive(Clone, Debug, PartialEq)]
pub struct Fired {
    /// Its index in the set it came from.
    pub index: usize,
    /// The set's generation (replacing the set starts a new one).
    pub generation: u64,
    /// The fault.
    pub fault: Fault,
    /// The message or handshake number it fired at.
    pub n: u64,
}

impl Fired {
    /// `SPEC at PLACE, message N` (or `handshake N`): what the connection's
    /// event records.
    pub fn describe(&self) -> String {
        match self.fault.action {
            Action::Smtp { stage, .. } => {
                format!("{} {}, message {}", self.fault, stage.place(), self.n)
            }
            _ => format!("{} at handshake {}", self.fault, self.n),
        }
    }
}

/// The faults decided for one message: at most one per stage, the first of
/// the set that fires.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MessagePlan {
    /// The message's number in the server's run.
    pub n: u64,
    /// The fault answering MAIL.
    pub mail: Option<Fired>,
    /// The fault answering each RCPT.
    pub rcpt: Option<Fired>,
    /// The fault answering the end of DATA.
    pub data: Option<Fired>,
}

/// The faults decided for one handshake: at most one of each kind, the first
/// of the set that fires.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HandshakePlan {
    /// The handshake's number in the server's run.
    pub n: u64,
    /// Close after the CertificateRequest.
    pub close: Option<Fired>,
    /// Hold the ServerHelloDone (milliseconds in the fault).
    pub delay: Option<Fired>,
    /// Fragment the CertificateRequest.
    pub fragment: Option<Fired>,
    /// Advertise a cut list.
    pub cut: Option<Fired>,
}

impl HandshakePlan {
    /// Every fault of the plan.
    pub fn all(&self) -> impl Iterator<Item = &Fired> {
        [&self.close, &self.delay, &self.fragment, &self.cut]
            .into_iter()
            .flatten()
    }
}

/// One fault of the set with how often it fired, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FaultCount {
    /// The spec.
    pub spec: String,
    /// Times it fired since it was set.
    pub fired: u64,
}

/// The fault set as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FaultsView {
    /// The faults, in order, with their counts.
    pub faults: Vec<FaultCount>,
    /// The seed of the probability draws.
    pub seed: u64,
    /// MAIL transactions counted so far in the server's run.
    pub messages: u64,
    /// Handshakes counted so far.
    pub handshakes: u64,
}

/// The fault set with its counters: the server's run's message and
/// handshake counts (never reset), and each fault's fired count (reset when
/// the set is replaced).
#[derive(Clone, Debug)]
pub struct FaultState {
    faults: Vec<Fault>,
    fired: Vec<u64>,
    generation: u64,
    seed: u64,
    messages: u64,
    handshakes: u64,
    applicable: Applicable,
}

impl FaultState {
    /// A set checked against what the server can apply.
    pub fn new(
        faults: Vec<Fault>,
        seed: u64,
        applicable: Applicable,
    ) -> Result<FaultState, FaultError> {
        let mut state = FaultState {
            faults: Vec::new(),
            fired: Vec::new(),
            generation: 0,
            seed,
            messages: 0,
            handshakes: 0,
            applicable,
        };
        state.replace(faults)?;
        Ok(state)
    }

    /// Replaces the set (all or nothing); fired counts start again.
    pub fn replace(&mut self, faults: Vec<Fault>) -> Result<(), FaultError> {
        for f in &faults {
            self.applicable.check(f)?;
        }
        self.fired = vec![0; faults.len()];
        self.faults = faults;
        self.generation += 1;
        Ok(())
    }

    /// The set.
    pub fn faults(&self) -> &[Fault] {
        &self.faults
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    fn first(&self, fired: &[usize], n: u64, pick: impl Fn(&Action) -> bool) -> Option<Fired> {
        fired.iter().find_map(|&i| {
            let fault = *self.faults.get(i)?;
            pick(&fault.action).then_some(Fired {
                index: i,
                generation: self.generation,
                fault,
                n,
            })
        })
    }

    /// Counts a new MAIL transaction and decides its faults.
    pub fn next_message(&mut self) -> MessagePlan {
        self.messages += 1;
        let (n, seed) = (self.messages, self.seed);
        let fired = decide(&self.faults, Scope::Message, n, |i| {
            draw(seed, Scope::Message, n, i)
        });
        let at =
            |s: Stage| move |a: &Action| matches!(a, Action::Smtp { stage, .. } if *stage == s);
        MessagePlan {
            n,
            mail: self.first(&fired, n, at(Stage::Mail)),
            rcpt: self.first(&fired, n, at(Stage::Rcpt)),
            data: self.first(&fired, n, at(Stage::Data)),
        }
    }

    /// Counts a new handshake and decides its faults.
    pub fn next_handshake(&mut self) -> HandshakePlan {
        self.handshakes += 1;
        let (n, seed) = (self.handshakes, self.seed);
        let fired = decide(&self.faults, Scope::Handshake, n, |i| {
            draw(seed, Scope::Handshake, n, i)
        });
        HandshakePlan {
            n,
            close: self.first(&fired, n, |a| matches!(a, Action::CloseAfterRequest)),
            delay: self.first(&fired, n, |a| matches!(a, Action::DelayBeforeDone { .. })),
            fragment: self.first(&fired, n, |a| matches!(a, Action::FragmentRequest { .. })),
            cut: self.first(&fired, n, |a| matches!(a, Action::CutListAt { .. })),
        }
    }

    /// Counts a fault that was applied (ignored when the set was replaced
    /// since it was decided).
    pub fn applied(&mut self, fired: &Fired) {
        if fired.generation == self.generation
            && let Some(c) = self.fired.get_mut(fired.index)
        {
            *c += 1;
        }
    }

    /// The set with its counts.
    pub fn view(&self) -> FaultsView {
        FaultsView {
            faults: self
                .faults
                .iter()
                .zip(&self.fired)
                .map(|(f, &fired)| FaultCount {
                    spec: f.to_string(),
                    fired,
                })
                .collect(),
            seed: self.seed,
            messages: self.messages,
            handshakes: self.handshakes,
        }
    }
}

/// The fault set shared by the server's connections and the inspector's API.
#[derive(Clone, Debug)]
pub struct FaultHandle(Arc<Mutex<FaultState>>);

impl FaultHandle {
    /// Shares `state`.
    pub fn new(state: FaultState) -> FaultHandle {
        FaultHandle(Arc::new(Mutex::new(state)))
    }

    /// The state, locked (a panic while it was held left plain data: go on).
    pub fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(names: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for n in names {
            out.extend_from_slice(&(n.len() as u16).to_be_bytes());
            out.extend_from_slice(n);
        }
        out
    }

    /// Parses an encoded list the way a TLS 1.2 client does.
    fn parse_list(mut b: &[u8]) -> Option<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let len = usize::from(u16::from_be_bytes([*b.first()?, *b.get(1)?]));
            if len == 0 {
                return None;
            }
            out.push(b.get(2..2 + len)?.to_vec());
            b = b.get(2 + len..)?;
        }
        Some(out)
    }

    #[test]
    fn every_spec_round_trips() {
        for spec in [
            "smtp:mail:421",
            "smtp:rcpt:550@nth=3",
            "smtp:data:554@p=0.25",
            "smtp:data:451@p=1",
            "smtp:rcpt:452@p=0",
            "tls:close-after-request",
            "tls:delay-before-done=2500@nth=1",
            "tls:fragment-request=512",
            "tls:cut-list-at=0@p=0.5",
        ] {
            let f: Fault = spec.parse().unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert_eq!(f.to_string(), spec);
            assert_eq!(f.to_string().parse::<Fault>(), Ok(f));
        }
        let f: Fault = "smtp:rcpt:452".parse().unwrap();
        assert_eq!(
            f.action,
            Action::Smtp {
                stage: Stage::Rcpt,
                code: 452
            }
        );
        assert_eq!(f.trigger, Trigger::Every);
    }

    #[test]
    fn bad_specs_say_what_is_allowed() {
        let err = "smtp:data:500".parse::<Fault>().unwrap_err();
        assert!(
            matches!(err, FaultError::Code { .. })
                && err.to_string().contains("421, 451, 452, 550, 554"),
            "{err}"
        );
        for (spec, want) in [
            ("", "expected smtp"),
            ("smtp:quit:421", "unknown SMTP stage"),
            ("smtp:data", "expected smtp"),
            ("smtp:data:abc", "not offered"),
            ("tls:fragment-request=0", "N >= 1"),
            ("tls:fragment-request", "N >= 1"),
            ("tls:delay-before-done=-5", "milliseconds"),
            ("tls:close-after-request=1", "no value"),
            ("tls:cut-list-at", "N >= 0"),
            ("tls:explode", "expected smtp"),
            ("smtp:data:451@p=1.5", "bad trigger"),
            ("smtp:data:451@p=NaN", "bad trigger"),
            ("smtp:data:451@nth=0", "bad trigger"),
            ("smtp:data:451@sometimes", "bad trigger"),
        ] {
            let err = spec.parse::<Fault>().expect_err(spec).to_string();
            assert!(err.contains(want), "{spec}: {err}");
        }
    }

    #[test]
    fn framing_faults_are_refused_in_tls13_and_tls_faults_without_a_request() {
        let tls13 = Applicable {
            tls13: true,
            no_request: false,
        };
        for spec in [
            "tls:close-after-request",
            "tls:fragment-request=9",
            "tls:delay-before-done=1",
        ] {
            let err = tls13.check(&spec.parse().unwrap()).unwrap_err();
            assert!(err.to_string().contains("TLS 1.3"), "{err}");
        }
        tls13.check(&"tls:cut-list-at=10".parse().unwrap()).unwrap();
        tls13.check(&"smtp:mail:451".parse().unwrap()).unwrap();
        let none = Applicable {
            tls13: false,
            no_request: true,
        };
        assert!(none.check(&"tls:cut-list-at=10".parse().unwrap()).is_err());
        let mut state = FaultState::new(Vec::new(), 1, tls13).unwrap();
        let bad = parse_all(&["smtp:mail:451", "tls:close-after-request"]).unwrap();
        assert!(state.replace(bad).is_err());
        assert!(state.faults().is_empty(), "all or nothing");
    }

    #[test]
    fn nth_fires_once_and_every_fires_always() {
        let faults =
            parse_all(&["smtp:data:451@nth=3", "smtp:mail:421", "tls:cut-list-at=5"]).unwrap();
        let fired: Vec<Vec<usize>> = (1..=4)
            .map(|n| decide(&faults, Scope::Message, n, |_| 0.99))
            .collect();
        assert_eq!(fired, vec![vec![1], vec![1], vec![0, 1], vec![1]]);
        assert_eq!(decide(&faults, Scope::Handshake, 7, |_| 0.0), vec![2]);
    }

    #[test]
    fn probability_compares_the_draw() {
        let faults = parse_all(&["smtp:rcpt:550@p=0.25"]).unwrap();
        assert_eq!(decide(&faults, Scope::Message, 1, |_| 0.2499), vec![0]);
        assert!(decide(&faults, Scope::Message, 1, |_| 0.25).is_empty());
        // The draws are uniform enough that 0.5 fires about half the time,
        // and a seed decides them.
        let hits = (1..=10_000)
            .filter(|&n| draw(42, Scope::Message, n, 0) < 0.5)
            .count();
        assert!((4_700..5_300).contains(&hits), "{hits}");
        assert_eq!(
            draw(42, Scope::Message, 9, 0),
            draw(42, Scope::Message, 9, 0)
        );
        assert_ne!(
            draw(42, Scope::Message, 9, 0),
            draw(43, Scope::Message, 9, 0)
        );
        assert_ne!(
            draw(42, Scope::Message, 9, 0),
            draw(42, Scope::Handshake, 9, 0)
        );
    }

    #[test]
    fn the_state_counts_messages_and_applied_faults() {
        let faults = parse_all(&[
            "smtp:data:451@nth=2",
            "smtp:data:554",
            "tls:close-after-request@nth=1",
        ])
        .unwrap();
        let mut s = FaultState::new(faults, 7, Applicable::default()).unwrap();
        let m1 = s.next_message();
        assert_eq!(m1.n, 1);
        assert_eq!(m1.data.as_ref().map(|f| f.index), Some(1));
        assert!(m1.mail.is_none() && m1.rcpt.is_none());
        let m2 = s.next_message();
        assert_eq!(
            m2.data.as_ref().map(|f| f.index),
            Some(0),
            "first of the set wins"
        );
        s.applied(m2.data.as_ref().unwrap());
        let h1 = s.next_handshake();
        assert_eq!(
            h1.close.as_ref().map(|f| f.describe()),
            Some("tls:close-after-request@nth=1 at handshake 1".to_owned())
        );
        assert!(s.next_handshake().close.is_none());
        let view = s.view();
        assert_eq!((view.messages, view.handshakes), (2, 2));
        assert_eq!(
            view.faults.iter().map(|c| c.fired).collect::<Vec<_>>(),
            vec![1, 0, 0]
        );
        // A fault decided before the set changed is not counted against the new set.
        s.replace(parse_all(&["smtp:mail:421"]).unwrap()).unwrap();
        s.applied(m1.data.as_ref().unwrap());
        assert_eq!(
            s.view().faults,
            vec![FaultCount {
                spec: "smtp:mail:421".into(),
                fired: 0
            }]
        );
        assert_eq!(s.next_message().n, 3, "the run's count goes on");
        assert_eq!(
            m2.data.unwrap().describe(),
            "smtp:data:451@nth=2 at the end of DATA, message 2"
        );
    }

    #[test]
    fn replies_carry_realistic_status_codes() {
        let r = smtp_reply(Stage::Mail, 421);
        assert_eq!((r.code, r.enhanced, r.closes), (421, "4.3.2", true));
        assert_eq!(smtp_reply(Stage::Data, 451).enhanced, "4.3.0");
        assert_eq!(
            smtp_reply(Stage::Rcpt, 452).text,
            "Insufficient system storage"
        );
        assert_eq!(smtp_reply(Stage::Rcpt, 550).enhanced, "5.7.1");
        assert_eq!(smtp_reply(Stage::Data, 554).enhanced, "5.6.0");
        for code in SMTP_CODES {
            for stage in [Stage::Mail, Stage::Rcpt, Stage::Data] {
                let r = smtp_reply(stage, code);
                assert_eq!(r.code, code);
                assert_eq!(r.enhanced.as_bytes()[0], b'0' + (code / 100) as u8, "{r:?}");
                assert_eq!(r.closes, code == 421);
            }
        }
    }

    fn names() -> Vec<Vec<u8>> {
        vec![vec![1; 10], vec![2; 20], vec![3; 5]]
    }

    #[test]
    fn cut_at_zero_keeps_nothing() {
        assert!(cut_ca_list(&names(), 0).is_empty());
    }

    #[test]
    fn a_cut_inside_a_length_prefix_or_right_after_it_drops_the_name() {
        // The first name ends at 12; the second's prefix is bytes 12 and 13.
        assert_eq!(cut_ca_list(&names(), 12), vec![vec![1; 10]]);
        assert_eq!(cut_ca_list(&names(), 13), vec![vec![1; 10]]);
        assert_eq!(cut_ca_list(&names(), 14), vec![vec![1; 10]]);
        assert_eq!(cut_ca_list(&names(), 1), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn a_cut_mid_name_keeps_its_head_with_a_matching_prefix() {
        let cut = cut_ca_list(&names(), 20);
        assert_eq!(cut, vec![vec![1; 10], vec![2; 6]]);
        let wire = enc(&cut);
        assert_eq!(wire.len(), 20);
        assert_eq!(&wire[12..14], &[0, 6]);
    }

    #[test]
    fn a_cut_past_the_end_keeps_every_name() {
        let all = enc(&names()).len();
        assert_eq!(all, 41);
        assert_eq!(cut_ca_list(&names(), all), names());
        assert_eq!(cut_ca_list(&names(), 10_000), names());
        assert_eq!(
            cut_ca_list(&names(), all - 1),
            vec![vec![1; 10], vec![2; 20], vec![3; 4]]
        );
    }

    proptest! {
        #[test]
        fn the_cut_always_parses_and_never_passes_n(
            names in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..20),
            at in 0usize..7000,
        ) {
            let cut = cut_ca_list(&names, at);
            let wire = enc(&cut);
            prop_assert!(wire.len() <= at);
            let parsed = parse_list(&wire);
            prop_assert_eq!(parsed.as_ref(), Some(&cut));
            // Every name but the last is whole and in order.
            for (i, n) in cut.iter().enumerate() {
                let orig = &names[i];
                if i + 1 < cut.len() {
                    prop_assert_eq!(n, orig);
                } else {
                    prop_assert!(orig.starts_with(n));
                }
            }
            // Nothing is lost that fitted.
            let whole = enc(&names).len();
            if at >= whole {
                prop_assert_eq!(&cut, &names);
            } else {
                // Short of `at` only by a cut inside a length prefix.
                prop_assert!(wire.len() + 2 >= at, "{} of {}", wire.len(), at);
            }
        }
    }
}
