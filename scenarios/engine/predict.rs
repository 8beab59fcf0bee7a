//! The analytic prediction: from the encodings, the server's CA-list policy and
//! the client profile's rules, what a store should do. Pure (no I/O), so the
//! engine, `umlab analyze` and tests share one model of the failure.

use certgen::Store;
use lab_server::persona::{self, ListSource, Persona, PersonaName, TrustMode, WithoutCert};
use lab_server::policy::{self, TlsVersion};
use lab_server::shaper::Layout;
use lab_server::tls::ClientAuth;
use um_sim::client::FailureClass;
use um_sim::presets::Version;
use um_sim::profile::{Profile, RequestFacts, Rule, buffered_bytes, listed_in_chain};

use super::Outcome;
use crate::model::Resolved;

/// A measured message body past which um-sim's own stack (rustls) fails in
/// the per-message layout (65,505 delivers, 65,515 fails; measured): the
/// prediction must include it, since every measurement goes through it.
pub const OWN_STACK_BODY: usize = 65_510;

/// The engine's class for a server that ends every handshake before its
/// CertificateRequest (OpenSSL past 65,535 bytes of names: fatal
/// internal_error after ServerKeyExchange, the server keeps serving).
/// Measured when the client received internal_error and never saw a
/// CertificateRequest.
pub const EVERY_HANDSHAKE: &str = "every-handshake";

/// The engine's class for KB 2880390: the server rejects every client
/// certificate (a Schannel 2012+ Trusted Root store past 16 KB). Measured
/// when the client's TLS failed and lab-server's event names KB 2880390.
pub const CLIENT_AUTH_BROKEN: &str = "client-auth-broken";

/// What the prediction needs of a setup beside the store and the policy: the
/// server's persona and TLS shape, and the client's profile.
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
    /// The real server family modeled.
    pub persona: Persona,
    /// Schannel 2012+: ClientAuthTrustMode.
    pub trust_mode: TrustMode,
    /// Schannel 2012+: the Client Authentication Issuers store.
    pub issuers: Option<Store>,
    /// The system trust store (dotnet-linux).
    pub system: Option<Store>,
}

impl Setup {
    /// The setup of a scenario, without its persona's extra stores (the
    /// engine's [`crate::engine::Lab::setup`] adds them).
    pub fn of(r: &Resolved) -> Setup {
        Setup {
            tls: r.tls,
            layout: r.layout,
            max_fragment: r.scenario.server.max_fragment,
            client_auth: r.client_auth,
            client: r.client.clone(),
            persona: r.persona,
            trust_mode: r.trust_mode,
            issuers: None,
            system: None,
        }
    }

    /// A TLS 1.2 server of `persona` with its own settings and 16 KB
    /// records, in the per-message layout, for one client profile.
    pub fn persona(name: PersonaName, client: Profile) -> Setup {
        let persona = Persona::get(name);
        Setup {
            tls: TlsVersion::Tls12,
            layout: Layout::PerMessage,
            max_fragment: certgen::wire::MAX_FRAGMENT,
            client_auth: persona.client_auth,
            client,
            persona,
            trust_mode: TrustMode::MachineTrust,
            issuers: None,
            system: None,
        }
    }
}

/// What the server itself did that decided the outcome, beside the client's
/// rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerCause {
    /// Each handshake ends before the CertificateRequest (OpenSSL past the
    /// limit).
    FailsEachHandshake,
    /// KB 2880390: every client certificate is rejected.
    ClientAuthBroken,
    /// The client's chain ends at none of the persona's trust anchors.
    Untrusted,
    /// Postfix: TLS completes without a (trusted) certificate, then 421.
    Reply421,
    /// The server and the client share no TLS version (a TLS 1.2 server, a
    /// preset whose stack offers TLS 1.3 only): protocol_version.
    NoCommonVersion,
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
    /// What the server did that decided the outcome, if anything.
    pub server: Option<ServerCause>,
    /// The TLS version the handshake runs.
    pub tls: TlsVersion,
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

/// The TLS version a server offering `server` (a lab TLS 1.3 server also
/// takes TLS 1.2 when `tls12_beside_tls13`, as its persona says) and a
/// client offering `client` agree on; `None` when they share none (the
/// handshake fails with protocol_version).
pub fn negotiated(
    server: TlsVersion,
    tls12_beside_tls13: bool,
    client: &[Version],
) -> Option<TlsVersion> {
    let offers = |v| client.contains(&v);
    match server {
        TlsVersion::Tls13 if offers(Version::Tls13) => Some(TlsVersion::Tls13),
        TlsVersion::Tls13 if !tls12_beside_tls13 => None,
        _ if offers(Version::Tls12) => Some(TlsVersion::Tls12),
        _ => None,
    }
}

/// Bytes of the EncryptedExtensions lab-server's rustls sends before the
/// request in TLS 1.3 (no extension: a 4-byte header and an empty block).
pub const TLS13_ENCRYPTED_EXTENSIONS: usize = 6;

/// What a client's record rules see of a TLS 1.3 request of `body_bytes`:
/// rustls 0.23 sends the server's protected flight as one stream
/// (EncryptedExtensions, CertificateRequest, Certificate, ...) cut into
/// records of `max_fragment` - 5 bytes of plaintext, so the request starts
/// [`TLS13_ENCRYPTED_EXTENSIONS`] bytes into the first record; each record
/// costs a client's buffer its plaintext + the content type + the 16-byte
/// tag. The records after the request hold other messages: a record it
/// ends in is counted whole, as in TLS 1.2.
pub fn tls13_facts(body_bytes: usize, max_fragment: usize) -> RequestFacts {
    let start = TLS13_ENCRYPTED_EXTENSIONS;
    let message = start..start + certgen::wire::HANDSHAKE_HEADER_LEN + body_bytes;
    let payload = max_fragment
        .saturating_sub(certgen::wire::RECORD_HEADER_LEN)
        .max(1);
    // The plaintext stream is longer than the request (the Certificate and
    // the rest follow): records are full until past it.
    let records: Vec<std::ops::Range<usize>> = (0..message.end)
        .step_by(payload)
        .map(|at| at..at + payload)
        .collect();
    let protected = 1 + um_sim::tls13::TAG_LEN;
    let buffered = buffered_bytes(message.clone(), records.iter().cloned());
    RequestFacts {
        body_len: body_bytes,
        records: records.len(),
        complete: true,
        buffered: if buffered == 0 {
            0
        } else {
            buffered + protected
        },
    }
}

/// Predicts one store. `chain_issuers` holds the issuer (DER Name) of each
/// certificate the client would send, leaf first: `issuer-listed` stacks walk
/// the whole chain (DESIGN.md 2a). Without it the rule is not judged (the
/// outcome assumes the certificate is sent and trusted). The list and what
/// the server does with it come from lab-server's own planner
/// ([`persona::plan`]), the one Server::start runs.
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
        server: None,
        tls: setup.tls,
        outcome: Outcome::Delivered,
    };
    let planned = match persona::plan(&persona::PlanInputs {
        persona: &setup.persona,
        stores: persona::Stores {
            store,
            issuers: setup.issuers.as_ref(),
            system: setup.system.as_ref(),
            trust_mode: setup.trust_mode,
        },
        policy: *settings,
        version: setup.tls,
        max_fragment: setup.max_fragment,
        named: &[],
    }) {
        Ok(plan) => plan,
        Err(e) => {
            p.outcome = Outcome::Refused(e.to_string());
            return p;
        }
    };
    let plan = &planned.plan;
    let names: Vec<&[u8]> = planned.advertised.iter().map(Vec::as_slice).collect();
    p.list_bytes = plan.report.list_bytes;
    p.names_sent = plan.report.kept;
    p.names_dropped = plan.report.dropped;
    p.truncated = plan.report.truncated;
    p.body_bytes = plan.report.shape.body_len(plan.report.list_bytes);
    p.records = plan.report.records;
    p.issuer_listed = chain_issuers.map(|c| listed_in_chain(&names, c).is_some());
    // Store indices: the persona's list may hold other roots (the system
    // store) or come from another store (the issuers store).
    p.sent = if setup.persona.list == ListSource::Store {
        plan.sent.clone()
    } else {
        plan.sent
            .iter()
            .filter_map(|&i| planned.resolved.list.roots().get(i))
            .filter_map(|r| store.roots().iter().position(|s| s.sha1() == r.sha1()))
            .collect()
    };
    let profile = &setup.client;
    // The version the handshake runs: the client offers its stack's
    // versions; a TLS 1.3 server of the lab also takes TLS 1.2.
    let Some(tls) = negotiated(
        setup.tls,
        setup.persona.takes_tls12_beside_tls13(),
        profile.versions(),
    ) else {
        p.server = Some(ServerCause::NoCommonVersion);
        p.outcome = Outcome::Failed(class_name(FailureClass::Tls));
        return p;
    };
    p.tls = tls;
    if tls != setup.tls {
        // A TLS 1.3 server meeting a client without TLS 1.3: the same list
        // in a plaintext TLS 1.2 request, with the verifier's schemes that
        // TLS 1.2 can use.
        let shape = lab_server::tls::message_shape_with(tls, setup.persona.schemes_tls13);
        p.body_bytes = shape.body_len(p.list_bytes);
        p.records = policy::records_for(shape.message_len(p.list_bytes), setup.max_fragment);
    }
    if setup.client_auth == ClientAuth::None {
        return p;
    }
    if planned.fails_each_handshake {
        p.server = Some(ServerCause::FailsEachHandshake);
        p.outcome = Outcome::Failed(EVERY_HANDSHAKE.to_owned());
        return p;
    }
    if tls == TlsVersion::Tls13 {
        // The tap decrypts the request and judges it as in TLS 1.2, over
        // rustls's TLS 1.3 layout (`tls13_facts`).
        // Before rustls sees a byte of the request: the rules come first.
        if let Some(rule) = profile.judge(&tls13_facts(p.body_bytes, setup.max_fragment)) {
            p.rule = Some(rule);
            p.outcome = Outcome::Failed(class_name(FailureClass::ProfileRule));
            return p;
        }
        if p.body_bytes > OWN_STACK_BODY {
            p.outcome = Outcome::Failed(class_name(FailureClass::OwnStackLimit));
            return p;
        }
    }
    if tls == TlsVersion::Tls12 {
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
    let postfix = setup.persona.without_cert == WithoutCert::Reply421;
    if !presents {
        if postfix {
            p.server = Some(ServerCause::Reply421);
            p.outcome = Outcome::Failed(class_name(FailureClass::SmtpReply));
        } else if setup.client_auth == ClientAuth::Required {
            p.rule = Some(Rule::IssuerListed);
            p.outcome = Outcome::Failed(class_name(FailureClass::NoAcceptableCertificate));
        }
        return p;
    }
    if planned.resolved.broken.is_some() {
        p.server = Some(ServerCause::ClientAuthBroken);
        p.outcome = Outcome::Failed(CLIENT_AUTH_BROKEN.to_owned());
        return p;
    }
    let anchors = planned.resolved.anchor_subjects();
    let trusted = chain_issuers.is_none_or(|c| {
        c.iter()
            .any(|i| anchors.iter().any(|a| a.as_slice() == i.as_ref()))
    });
    if !trusted {
        p.server = Some(if postfix {
            ServerCause::Reply421
        } else {
            ServerCause::Untrusted
        });
        p.outcome = Outcome::Failed(class_name(if postfix {
            FailureClass::SmtpReply
        } else {
            FailureClass::Tls
        }));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls13_server_takes_tls12_only_where_its_persona_allows() {
        use um_sim::presets::Version::{Tls12, Tls13};
        let schannel = [Tls12];
        assert_eq!(
            negotiated(TlsVersion::Tls13, true, &schannel),
            Some(TlsVersion::Tls12)
        );
        assert_eq!(negotiated(TlsVersion::Tls13, false, &schannel), None);
        assert_eq!(
            negotiated(TlsVersion::Tls13, false, &[Tls12, Tls13]),
            Some(TlsVersion::Tls13)
        );
        assert_eq!(negotiated(TlsVersion::Tls12, false, &[Tls13]), None);
    }
}
