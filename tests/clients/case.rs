//! One case of one row: lab-server in-process with a store sized for the
//! case, the real client (its probe), the preset's prediction, and um-sim
//! run in-process with that preset against the same server.

use std::fmt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use certgen::KeyAlg;
use certgen::pki::{LabPki, Shape};
use certgen::{Root, Store};
use lab_server::events::ConnectionEvent;
use lab_server::policy::{Policy, PolicyError, TlsVersion};
use lab_server::server::StartError;
use um_sim::client::{Attempt, FailureClass};
use um_sim::presets::{self, AlertFact, Preset, Reach};
use um_sim::profile::{Profile, Rule};

use crate::common::{self, EVENT_TIMEOUT, Lab};
use crate::probe;
use crate::sizing;

/// One client stack: its probe (`peers/<stack>/run`), the um-sim preset it
/// verifies, and the TLS version the cases run.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    /// `peers/<stack>`.
    pub stack: &'static str,
    /// The preset of um-sim/src/presets.rs.
    pub preset: &'static str,
    /// TLS version of lab-server and the probe.
    pub tls: TlsVersion,
}

impl Row {
    /// The trials' name part: the stack, with `-tls13` for a TLS 1.3 row.
    pub fn name(&self) -> String {
        match self.tls {
            TlsVersion::Tls12 => self.stack.to_owned(),
            TlsVersion::Tls13 => format!("{}-tls13", self.stack),
        }
    }
}

/// The cases every row runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// The largest body the preset lets through (capped by the largest list
    /// lab-server can send), the client's CA listed.
    Threshold,
    /// One byte more, or, where the threshold is the protocol's own bound,
    /// proof that lab-server cannot send one byte more.
    Over,
    /// A small list naming the client's CA.
    Listed,
    /// A small list without it (Schannel-style truncation drops the CA; the
    /// server still trusts it).
    Unlisted,
    /// The two-tier PKI: the client presents leaf + issuing CA, the list
    /// names only the root.
    TwoTier,
}

impl Case {
    /// Every case, in the order the trials list them.
    pub const ALL: [Case; 5] = [
        Case::Threshold,
        Case::Over,
        Case::Listed,
        Case::Unlisted,
        Case::TwoTier,
    ];

    /// The trial's name part.
    pub fn name(self) -> &'static str {
        match self {
            Case::Threshold => "threshold",
            Case::Over => "over",
            Case::Listed => "listed",
            Case::Unlisted => "unlisted",
            Case::TwoTier => "two_tier",
        }
    }
}

/// With per-message records um-sim's own rustls client delivers up to 65,480
/// bytes of names and fails from 65,490 (um-sim README, measured).
const OWN_STACK_DELIVERS: usize = 65_480;
/// From here um-sim's own stack certainly gives up.
const OWN_STACK_FAILS: usize = 65_490;

/// What a client does with one CertificateRequest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The message was delivered.
    Delivered,
    /// It sent an empty Certificate (no listed issuer in its chain); the
    /// server, which requires one, ended the handshake.
    Withheld,
    /// It gave up on the CertificateRequest for this rule of the preset.
    Limit(Rule),
    /// um-sim only: its own rustls stack could not take the flight.
    OwnStack,
    /// Anything else, described.
    Other(String),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Delivered => f.write_str("delivered"),
            Verdict::Withheld => f.write_str("withheld its certificate"),
            Verdict::Limit(rule) => write!(f, "failed on {rule}"),
            Verdict::OwnStack => f.write_str("own-stack-limit"),
            Verdict::Other(s) => write!(f, "other: {s}"),
        }
    }
}

/// The lab PKI in `shape` (one-tier: the root tests' own).
pub fn pki(shape: Shape) -> &'static LabPki {
    static TWO: OnceLock<LabPki> = OnceLock::new();
    match shape {
        Shape::TwoTier => TWO.get_or_init(|| {
            certgen::pki::generate_shape(Some(common::PKI_SEED), KeyAlg::EcdsaP256, Shape::TwoTier)
                .expect("two-tier PKI")
        }),
        _ => common::pki(),
    }
}

/// The root of `pki` as a store entry.
pub fn ca_root(pki: &LabPki) -> Root {
    pki.ca.root().expect("the CA as a root")
}

/// lab-server with `pki`'s Hub chain, `store`, the policy and TLS version.
pub async fn start(
    pki: &'static LabPki,
    store: Store,
    ca_index: usize,
    policy: Policy,
    budget: Option<usize>,
    tls: TlsVersion,
) -> Result<Lab, StartError> {
    common::start_server_for(pki, store, ca_index, move |s| {
        s.policy.policy = policy;
        if let Some(b) = budget {
            s.policy.budget = b;
        }
        s.tls_version = tls;
    })
    .await
}

/// One run of the real client: its report and the server's event.
pub struct RealRun {
    pub report: probe::Report,
    pub event: Option<ConnectionEvent>,
}

/// Saves `pki`'s files into the lab's folder and runs the probe.
pub async fn run_probe(
    lab: &mut Lab,
    script: &Path,
    pki: &LabPki,
    tls: TlsVersion,
) -> Result<RealRun, String> {
    let dir = lab.dir.path().join("pki");
    pki.save(&dir).map_err(|e| format!("saving the PKI: {e}"))?;
    let port = lab.addr().port();
    let script = script.to_owned();
    let report = tokio::task::spawn_blocking(move || {
        let files = probe::Files {
            chain: &dir.join("um.pem"),
            key: &dir.join("um.key"),
            ca: &dir.join("ca.pem"),
        };
        probe::run(&script, port, &files, sizing::tls_arg(tls))
    })
    .await
    .map_err(|e| format!("probe thread: {e}"))??;
    let event = lab.next_event(EVENT_TIMEOUT).await;
    Ok(RealRun { report, event })
}

/// um-sim with `profile` against the lab, as `um-sim submit` runs one item,
/// and the server's event for it.
pub async fn run_um_sim(lab: &mut Lab, profile: &str) -> (Attempt, Option<ConnectionEvent>) {
    let attempt = common::submit_one(lab, profile).await;
    let event = lab.next_event(EVENT_TIMEOUT).await;
    (attempt, event)
}

/// um-sim's verdict.
pub fn sim_verdict(a: &Attempt) -> Verdict {
    if a.delivered {
        return Verdict::Delivered;
    }
    match (a.failure, a.rule) {
        (Some(FailureClass::NoAcceptableCertificate), _) => Verdict::Withheld,
        (Some(FailureClass::ProfileRule), Some(rule)) => Verdict::Limit(rule),
        (Some(FailureClass::OwnStackLimit), _) => Verdict::OwnStack,
        (failure, rule) => Verdict::Other(format!(
            "{failure:?} (rule {rule:?}): {}",
            a.error.as_deref().unwrap_or("")
        )),
    }
}

/// The preset's prediction for a request of `body` bytes carrying `names`,
/// for a client whose chain has these issuers: its record rules as the
/// client meets them (`judge`), then its issuer rule.
pub fn predict(profile: &Profile, body: usize, names: &[&[u8]], issuers: &[Vec<u8>]) -> Verdict {
    match profile.judge(&sizing::facts(body)) {
        Some(rule) => Verdict::Limit(rule),
        None if !profile.presents_chain(names, issuers) => Verdict::Withheld,
        None => Verdict::Delivered,
    }
}

/// What um-sim must report, given the prediction: its tap judges the
/// preset's record rules on the handshake header, before its own rustls
/// sees the message; past that, near 64 KB of names its own stack gives up
/// first, and it must say so (own-stack-limit).
pub fn sim_expected(predicted: &Verdict, list: usize) -> Vec<Verdict> {
    match predicted {
        Verdict::Limit(_) => vec![predicted.clone()],
        _ if list >= OWN_STACK_FAILS => vec![Verdict::OwnStack],
        _ if list > OWN_STACK_DELIVERS => vec![predicted.clone(), Verdict::OwnStack],
        _ => vec![predicted.clone()],
    }
}

/// Case-, space- and underscore-insensitive containment: OpenSSL's reason
/// `EXCESSIVE_MESSAGE_SIZE` prints as "excessive message size".
fn mentions(haystack: &str, needle: &str) -> bool {
    let norm = |s: &str| s.to_lowercase().replace('_', " ");
    norm(haystack).contains(&norm(needle))
}

/// How the server saw the real client's handshake end, for messages.
fn server_end(ev: &ConnectionEvent) -> String {
    ev.handshake.as_ref().map_or("no handshake".into(), |h| {
        format!(
            "{} ({}; alert {})",
            h.outcome,
            h.error.as_deref().unwrap_or("-"),
            h.alert.as_deref().unwrap_or("-")
        )
    })
}

/// Compares the real client with the prediction; returns the problems.
pub fn check_real(
    preset: &Preset,
    profile: &Profile,
    predicted: &Verdict,
    body: usize,
    real: &RealRun,
    tls: TlsVersion,
) -> Vec<String> {
    let mut problems = Vec::new();
    let r = &real.report;
    let Some(ev) = &real.event else {
        return vec!["no server event for the real client's connection".into()];
    };
    let hs_failed = ev.handshake.as_ref().is_some_and(|h| h.outcome == "failed");
    match &ev.certificate_request {
        Some(cr) if cr.bytes == body + 4 && (cr.source == "wire" || tls == TlsVersion::Tls13) => {}
        other => problems.push(format!(
            "the server's event says it sent {other:?}, not a {}-byte CertificateRequest",
            body + 4
        )),
    }
    match predicted {
        Verdict::Delivered => {
            if r.outcome != "delivered" || r.stage != "done" {
                problems.push(format!(
                    "predicted delivered, the real client: {} at {} ({})",
                    r.outcome, r.stage, r.error
                ));
            }
            if r.certificate_sent == Some(false) {
                problems.push("the real client says it sent no certificate".into());
            }
            if ev.stored.len() != 1 || ev.client_certificate.is_none() {
                problems.push(format!(
                    "the server stored {} message(s), client certificate {:?}",
                    ev.stored.len(),
                    ev.client_certificate
                ));
            }
        }
        Verdict::Withheld => {
            if r.outcome != "tls_failed" || r.certificate_sent == Some(true) {
                problems.push(format!(
                    "predicted: withholds its certificate; the real client: {} at {}, \
                     certificate sent {:?} ({})",
                    r.outcome, r.stage, r.certificate_sent, r.error
                ));
            }
            if tls == TlsVersion::Tls12 && r.certificate_sent.is_none() {
                problems.push(
                    "TLS 1.2: the probe must see its Certificate message (certificate_sent null)"
                        .into(),
                );
            }
            if ev.client_certificate.is_some() || !hs_failed {
                problems.push(format!(
                    "the server got certificate {:?}, handshake {}",
                    ev.client_certificate,
                    server_end(ev)
                ));
            }
        }
        Verdict::Limit(rule) => {
            if r.outcome != "tls_failed" || r.stage != "handshake" || r.certificate_sent.is_some() {
                problems.push(format!(
                    "predicted: fails on {rule} before its Certificate; the real client: {} at \
                     {}, certificate sent {:?} ({})",
                    r.outcome, r.stage, r.certificate_sent, r.error
                ));
            }
            if let Some(text) = profile.prints(*rule, body)
                && !mentions(&r.error, &text)
            {
                problems.push(format!(
                    "the preset says {} prints {text:?}; it printed {:?}",
                    r.stack, r.error
                ));
            }
            if !hs_failed {
                problems.push(format!("the server's handshake: {}", server_end(ev)));
            }
            let alert = ev.handshake.as_ref().and_then(|h| h.alert.clone());
            match preset.alert {
                AlertFact::Sends(name, code) => {
                    let want = format!("received {:?}", rustls::AlertDescription::from(code));
                    // In TLS 1.3 the server writes its whole protected flight
                    // at once; a client that stops reading at the request's
                    // header may close before the server has written it all,
                    // and the server's write then fails before it could read
                    // the (encrypted) alert. Then the alert is not observed
                    // in this run; the real client's own verdict still is.
                    let write_failed = ev.handshake.as_ref().is_some_and(|h| {
                        h.error.as_deref().is_some_and(|e| {
                            e.contains("Broken pipe") || e.contains("Connection reset")
                        })
                    });
                    if alert.is_none() && tls == TlsVersion::Tls13 && write_failed {
                        eprintln!(
                            "  - {}'s {name} not observed: the server was still writing its \
                             flight when the client closed ({})",
                            r.stack,
                            server_end(ev)
                        );
                    } else if alert.as_deref() != Some(want.as_str()) {
                        problems.push(format!(
                            "the preset says {} sends {name}; the server: {}",
                            r.stack,
                            server_end(ev)
                        ));
                    }
                }
                AlertFact::NoAlert => {
                    if alert.as_deref().is_some_and(|a| a.starts_with("received")) {
                        problems.push(format!(
                            "the preset says {} sends no alert; the server: {}",
                            r.stack,
                            server_end(ev)
                        ));
                    }
                }
                AlertFact::NotRecorded => {}
            }
        }
        Verdict::OwnStack | Verdict::Other(_) => {
            problems.push(format!("no prediction for {predicted}"));
        }
    }
    problems
}

/// Compares um-sim's run with what it must report.
pub fn check_sim(
    profile: &Profile,
    expected: &[Verdict],
    body: usize,
    attempt: &Attempt,
    event: Option<&ConnectionEvent>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let got = sim_verdict(attempt);
    if !expected.contains(&got) {
        problems.push(format!(
            "um-sim: {got}, want {}",
            expected
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" or ")
        ));
    }
    if let Verdict::Limit(rule) = got {
        let want = profile.prints(rule, body);
        if attempt.stack_error != want {
            problems.push(format!(
                "um-sim quotes {:?}, the preset {want:?}",
                attempt.stack_error
            ));
        }
    }
    if got == Verdict::OwnStack
        && !matches!(profile.reach(), Reach::BeyondOwnStack | Reach::NoLimit)
    {
        problems.push(format!(
            "um-sim hit its own limit although the preset's reach is {:?}",
            profile.reach()
        ));
    }
    if event.is_none() {
        problems.push("no server event for um-sim's connection".into());
    }
    problems
}

/// Runs one case of one row.
pub async fn run(row: Row, case: Case, script: &Path) -> Result<String, String> {
    let preset = presets::find(row.preset).ok_or_else(|| format!("no preset {}", row.preset))?;
    let profile: Profile = row.preset.parse()?;
    let shape = sizing::shape(row.tls);
    let one = pki(Shape::OneTier);
    let (pki, store, ca_index, policy, budget, body) = match case {
        Case::Threshold | Case::Over => {
            let max = sizing::max_body(&shape);
            let lo = shape.body_len(sizing::SMALL_BEFORE_CA);
            let t = sizing::threshold(&profile, lo, max)
                .ok_or_else(|| format!("{} breaks its rules on a {lo}-byte body", row.preset))?;
            let body = match case {
                Case::Over if t == max => return over_impossible(row, &shape, one).await,
                Case::Over => t + 1,
                _ => t,
            };
            let list = sizing::list_for(&shape, body).ok_or("body below the fixed part")?;
            let (store, at) = sizing::store(list, &ca_root(one));
            (one, store, at, Policy::Full, None, body)
        }
        Case::Listed | Case::Unlisted => {
            let (store, at) = sizing::small_store(&ca_root(one));
            let (policy, budget) = if case == Case::Unlisted {
                (Policy::Schannel, Some(sizing::SMALL_BEFORE_CA))
            } else {
                (Policy::Full, None)
            };
            let list = if case == Case::Unlisted {
                sizing::SMALL_BEFORE_CA
            } else {
                store.ca_list_bytes()
            };
            (one, store, at, policy, budget, shape.body_len(list))
        }
        Case::TwoTier => {
            let two = pki(Shape::TwoTier);
            let (store, at) = sizing::small_store(&ca_root(two));
            let body = shape.body_len(store.ca_list_bytes());
            (two, store, at, Policy::Full, None, body)
        }
    };
    let names_store = store.clone();
    let mut lab = start(pki, store, ca_index, policy, budget, row.tls)
        .await
        .map_err(|e| format!("lab-server: {e}"))?;
    let report = lab.server.report().clone();
    let mut problems = Vec::new();
    if report.message_bytes != body + 4 {
        problems.push(format!(
            "lab-server plans a {}-byte message, the case wants a {body}-byte body",
            report.message_bytes
        ));
    }
    let ca_listed = report.named.first().and_then(|(_, at)| *at).is_some();
    if ca_listed == (case == Case::Unlisted) {
        problems.push(format!("the CA's place in the list: {:?}", report.named));
    }
    let names: Vec<&[u8]> = names_store
        .roots()
        .iter()
        .take(report.kept)
        .map(Root::subject_der)
        .collect();
    let issuers = common::um_identity(pki).chain_issuers;
    let predicted = predict(&profile, body, &names, &issuers);
    let facts = sizing::facts(body);
    if facts.records != report.records {
        problems.push(format!(
            "records: predicted {}, lab-server {}",
            facts.records, report.records
        ));
    }

    let real = run_probe(&mut lab, script, pki, row.tls).await?;
    problems.extend(check_real(
        preset, &profile, &predicted, body, &real, row.tls,
    ));
    let expected = sim_expected(&predicted, report.list_bytes);
    let (attempt, sim_event) = run_um_sim(&mut lab, row.preset).await;
    problems.extend(check_sim(
        &profile,
        &expected,
        body,
        &attempt,
        sim_event.as_ref(),
    ));
    lab.server.shutdown(Duration::from_secs(1)).await;

    let sim = sim_verdict(&attempt);
    let r = &real.report;
    let summary = format!(
        "{} {} ({}): body {body} ({} names, {} bytes, {} record(s)): real {} at {} (certificate \
         sent {:?}{}); predicted {predicted}; um-sim {sim}{}; server {}",
        row.name(),
        case.name(),
        r.version,
        report.kept,
        report.list_bytes,
        report.records,
        r.outcome,
        r.stage,
        r.certificate_sent,
        if r.error.is_empty() {
            String::new()
        } else {
            format!(", error {:?}", r.error)
        },
        if sim == Verdict::OwnStack {
            " (the lab's own rustls limit comes first: the preset's reach says so)"
        } else {
            ""
        },
        real.event.as_ref().map_or("no event".into(), server_end),
    );
    if problems.is_empty() {
        Ok(summary)
    } else {
        Err(format!(
            "{summary}\n  - {}\nattempt: {}",
            problems.join("\n  - "),
            serde_json::to_string(&attempt).unwrap_or_default()
        ))
    }
}

/// The preset's limit lies past the largest list the protocol carries: the
/// threshold case already runs the largest body lab-server can send; one
/// byte more cannot be sent, and lab-server refuses to start with it.
async fn over_impossible(
    row: Row,
    shape: &lab_server::policy::MessageShape,
    pki: &'static LabPki,
) -> Result<String, String> {
    let list = shape.max_list() + 1;
    let (store, at) = sizing::store(list, &ca_root(pki));
    match start(pki, store, at, Policy::Full, None, row.tls).await {
        Err(StartError::Policy(PolicyError::OverProtocolLimit { list: l, max, .. }))
            if l == list && max == shape.max_list() =>
        {
            Ok(format!(
                "{} over: impossible: the preset's limit lies beyond the protocol; a list of \
                 {list} bytes (body {}) is refused by lab-server: TLS carries at most {max} \
                 bytes of names",
                row.name(),
                shape.body_len(list)
            ))
        }
        Err(e) => Err(format!(
            "lab-server refused a {list}-byte list otherwise: {e}"
        )),
        Ok(lab) => {
            lab.server.shutdown(Duration::from_secs(1)).await;
            Err(format!("lab-server started with a {list}-byte list"))
        }
    }
}
