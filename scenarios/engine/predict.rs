//! The analytic prediction: from the encodings, the server's CA-list policy and
//! the client profile's rules, what a store should do. Pure (no I/O), so the
//! engine, `umlab analyze` and tests share one model of the failure.

use certgen::{Root, Store};
use lab_server::policy::{self, TlsVersion};
use lab_server::shaper::Layout;
use lab_server::tls::ClientAuth;
use um_sim::client::FailureClass;
use um_sim::profile::{Profile, RequestFacts, Rule, buffered_bytes, listed_in_chain};

use super::Outcome;
use crate::model::Resolved;

/// A measured message body past which um-sim's own stack (rustls) fails in
/// the per-message layout (65,505 delivers, 65,515 fails; measured): the
/// prediction must include it, since every measurement goes through it.
pub const OWN_STACK_BODY: usize = 65_510;

/// What the prediction needs of a setup beside the store and the policy: the
/// server's TLS shape and the client's profile.
#[derive(Clone, Debug)]
pub struct Setup {
    /// TLS version.
    pub tls: TlsVersion,
    /// Record layout of the server's flight.
    pub layout: Layout,
    /// Record size, 5-byte header included.
    pub max_fragment: usize,
    /// Whether the server asks for (and requires) a client certificate.
    pub client_auth: ClientAuth,
    /// The client profile whose rules decide.
    pub client: Profile,
}

impl Setup {
    /// The setup of a scenario.
    pub fn of(r: &Resolved) -> Setup {
        Setup {
            tls: r.tls,
            layout: r.layout,
            max_fragment: r.scenario.server.max_fragment,
            client_auth: r.client_auth,
            client: r.client.clone(),
        }
    }
}

/// What one store should do under one policy and setup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prediction {
    /// Store indices of the names sent, in the order sent.
    pub sent: Vec<usize>,
    /// Bytes of names sent (sum of 2 + DER length).
    pub list_bytes: usize,
    /// Names sent.
    pub names_sent: usize,
    /// Names dropped by the policy.
    pub names_dropped: usize,
    /// Whether the policy dropped names (Schannel logs event 36885).
    pub truncated: bool,
    /// CertificateRequest body bytes, handshake header excluded.
    pub body_bytes: usize,
    /// Records the request spans in the per-message layout.
    pub records: usize,
    /// Whether the client's issuer is among the names sent (`None` when no
    /// issuer was given).
    pub issuer_listed: Option<bool>,
    /// The profile rule that stops the handshake, if one does.
    pub rule: Option<Rule>,
    /// The predicted outcome.
    pub outcome: Outcome,
}

/// The failure class as the JSON and the scenario files spell it.
pub fn class_name(c: FailureClass) -> String {
    c.as_str().to_owned()
}

/// The most a reassembling client holds of the request (`max-buffer`) when
/// it starts a record of its own and fills each record: the per-message
/// layout. In the coalesced layout the offsets depend on the messages before
/// it, so this is the per-message figure there too (scenarios/README.md).
fn buffered(body_bytes: usize, max_fragment: usize) -> usize {
    let message = certgen::wire::HANDSHAKE_HEADER_LEN + body_bytes;
    let payload = max_fragment
        .saturating_sub(certgen::wire::RECORD_HEADER_LEN)
        .max(1);
    let records = (0..message)
        .step_by(payload)
        .map(|start| start..(start + payload).min(message));
    buffered_bytes(0..message, records)
}

/// Predicts one store. `chain_issuers` holds the issuer (DER Name) of each
/// certificate the client would send, leaf first: `issuer-listed` stacks walk
/// the whole chain (DESIGN.md 2a). Without it the rule is not judged (the
/// outcome assumes the certificate is sent).
pub fn predict<I: AsRef<[u8]>>(
    setup: &Setup,
    settings: &policy::Settings,
    store: &Store,
    chain_issuers: Option<&[I]>,
) -> Prediction {
    let mut p = Prediction {
        sent: Vec::new(),
        list_bytes: 0,
        names_sent: 0,
        names_dropped: 0,
        truncated: false,
        body_bytes: 0,
        records: 0,
        issuer_listed: None,
        rule: None,
        outcome: Outcome::Delivered,
    };
    let plan = match policy::plan_store(store, settings, setup.tls, setup.max_fragment, &[]) {
        Ok(plan) => plan,
        Err(e) => {
            p.outcome = Outcome::Refused(e.to_string());
            return p;
        }
    };
    let names: Vec<&[u8]> = plan
        .sent
        .iter()
        .filter_map(|&i| store.roots().get(i).map(Root::subject_der))
        .collect();
    p.list_bytes = plan.report.list_bytes;
    p.names_sent = plan.report.kept;
    p.names_dropped = plan.report.dropped;
    p.truncated = plan.report.truncated;
    p.body_bytes = plan.report.shape.body_len(plan.report.list_bytes);
    p.records = plan.report.records;
    p.issuer_listed = chain_issuers.map(|c| listed_in_chain(&names, c).is_some());
    p.sent = plan.sent;
    if setup.client_auth == ClientAuth::None {
        return p;
    }
    let profile = &setup.client;
    if setup.tls == TlsVersion::Tls12 {
        let records = match setup.layout {
            Layout::PerMessage => p.records,
            // The request shares records with the messages before it: it spans
            // at least this many, and for a one-record rule at least two.
            Layout::Coalesced => p.records.max(2),
        };
        if setup.layout == Layout::PerMessage && p.body_bytes > OWN_STACK_BODY {
            p.outcome = Outcome::Failed(class_name(FailureClass::OwnStackLimit));
            return p;
        }
        let facts = RequestFacts {
            body_len: p.body_bytes,
            records,
            complete: true,
            buffered: buffered(p.body_bytes, setup.max_fragment),
        };
        if let Some(rule) = profile.judge(&facts) {
            p.rule = Some(rule);
            p.outcome = Outcome::Failed(class_name(FailureClass::ProfileRule));
            return p;
        }
    }
    let presents = chain_issuers.is_none_or(|c| profile.presents_chain(&names, c));
    if !presents && setup.client_auth == ClientAuth::Required {
        p.rule = Some(Rule::IssuerListed);
        p.outcome = Outcome::Failed(class_name(FailureClass::NoAcceptableCertificate));
    }
    p
}
