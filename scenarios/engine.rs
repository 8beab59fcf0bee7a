//! Runs scenarios: for each store, the analytic prediction (encodings, policy,
//! client rules) beside the outcome measured over a real TCP connection with a
//! real TLS handshake, lab-server and um-sim meeting only on the wire. A
//! disagreement is an error, never resolved by picking one side.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use certgen::roots::{self, RootsSpec};
use certgen::{KeyAlg, Root, Store};
use lab_server::policy::{self, PolicyError, TlsVersion};
use lab_server::server::{Server, Settings};
use lab_server::shaper::Layout;
use lab_server::tls::{ClientAuth, message_shape};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Serialize;
use um_sim::client::{ClientSettings, FailureClass, Identity};
use um_sim::queue::{EnqueueSpec, Queue, enqueue};
use um_sim::submit::SubmitSettings;

use crate::model::{Resolved, Subjects};

/// A measured message body past which um-sim's own stack (rustls) fails in
/// the per-message layout (65,505 delivers, 65,515 fails; measured).
pub const OWN_STACK_BODY: usize = 65_510;

/// The lab's fixed parts: the PKI and the client's identity.
pub struct Lab {
    pki: certgen::pki::LabPki,
    ca: Root,
    identity: Identity,
    roots: Arc<rustls::RootCertStore>,
    synthetic: HashMap<(String, u64), Vec<Root>>,
}

/// How one store ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "class", rename_all = "kebab-case")]
pub enum Outcome {
    /// Every voicemail delivered.
    Delivered,
    /// Failed, with the failure class.
    Failed(String),
    /// lab-server refused to start (the list cannot be sent).
    Refused(String),
}

impl Outcome {
    /// `delivered`, `failed:CLASS` or `refused`.
    pub fn label(&self) -> String {
        match self {
            Outcome::Delivered => "delivered".into(),
            Outcome::Failed(c) => format!("failed:{c}"),
            Outcome::Refused(_) => "refused".into(),
        }
    }

    /// Whether delivery failed (refusal included).
    pub fn failed(&self) -> bool {
        !matches!(self, Outcome::Delivered)
    }

    /// Whether an expectation (`delivered`, `failed`, `failed:CLASS`, `refused`) holds.
    pub fn matches(&self, expected: &str) -> bool {
        expected == self.label() || (expected == "failed" && matches!(self, Outcome::Failed(_)))
    }
}

/// One store, predicted and measured.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    /// Roots in the store, the CA included (before any pruning).
    pub size: usize,
    /// The Hub's CA-list policy for this store.
    pub policy: String,
    /// Roots the remediation removed (`prune_to`), 0 otherwise.
    pub removed: usize,
    /// Seed of the synthetic subjects.
    pub seed: u64,
    /// Position of the CA in the store.
    pub ca_index: usize,
    /// TLS 1.2 certificate_authorities size of the whole store.
    pub store_list_bytes: usize,
    /// Bytes of names sent.
    pub list_bytes: usize,
    /// Names sent.
    pub names_sent: usize,
    /// Names dropped.
    pub names_dropped: usize,
    /// CertificateRequest body bytes (header excluded), predicted.
    pub body_bytes: usize,
    /// Records the request spans (per-message layout), predicted.
    pub records: usize,
    /// Whether the CA's name was sent.
    pub ca_listed: bool,
    /// The prediction.
    pub predicted: Outcome,
    /// The measurement.
    pub measured: Outcome,
    /// Events on the Hub's side (Schannel 36885, handshake results).
    pub server_events: Vec<String>,
    /// UM events (1423, 1082, 1185).
    pub um_events: Vec<u32>,
    /// Where prediction and measurement disagree (empty when they agree).
    pub disagreements: Vec<String>,
}

impl Lab {
    /// The lab PKI and client identity for a seed.
    pub fn new(seed: u64) -> anyhow::Result<Lab> {
        let pki = certgen::pki::generate(Some(seed), KeyAlg::EcdsaP256)?;
        let ca = pki.ca.root()?;
        let key = PrivateKeyDer::try_from(pki.um.key.pkcs8_der()?.to_vec())
            .map_err(|e| anyhow::anyhow!("UM key: {e}"))?;
        let identity = Identity::new(vec![CertificateDer::from(pki.um.cert_der.clone())], key)?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(pki.ca.cert_der.clone()))?;
        Ok(Lab {
            pki,
            ca,
            identity,
            roots: Arc::new(roots),
            synthetic: HashMap::new(),
        })
    }

    /// The store of `size` roots (the CA included) for a seed: a prefix of one
    /// generated list, cached per profile and seed, with the CA inserted.
    pub fn store(
        &mut self,
        r: &Resolved,
        size: usize,
        seed: u64,
    ) -> anyhow::Result<(Store, usize)> {
        let key = (r.profile.to_string(), seed);
        let need = size.saturating_sub(1);
        let have = self.synthetic.get(&key).map_or(0, Vec::len);
        match r.profile {
            Subjects::Synthetic(profile) if have < need => {
                let spec = RootsSpec {
                    count: need.max(have * 2).max(64) as u64,
                    seed: Some(seed),
                    profile,
                    key: KeyAlg::Ed25519,
                    dn_only: true,
                };
                let (store, _) = roots::generate(&spec, &|_| {})?;
                self.synthetic.insert(key.clone(), store.into_roots());
            }
            Subjects::Mozilla if !self.synthetic.contains_key(&key) => {
                let subjects = certgen::synth::mozilla_subjects();
                let store = roots::with_subjects(&subjects, seed, KeyAlg::Ed25519)?;
                self.synthetic.insert(key.clone(), store.into_roots());
            }
            _ => {}
        }
        let have = self.synthetic.get(&key).map_or(0, Vec::len);
        if have < need {
            anyhow::bail!("{} has only {have} roots; {size} asked for", r.profile);
        }
        let synthetic = self
            .synthetic
            .get(&key)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut store = Store::from_roots(synthetic.iter().take(need).cloned().collect());
        let at = store.insert(self.ca.clone(), r.ca);
        match r.scenario.store.prune_to {
            Some(budget) => {
                let pruned = remediate(&store, budget, &[at]);
                let kept = pruned.keep_store(&store);
                let at = kept
                    .roots()
                    .iter()
                    .position(|root| root.sha1() == self.ca.sha1())
                    .unwrap_or(0);
                Ok((kept, at))
            }
            None => Ok((store, at)),
        }
    }

    /// Prediction and measurement for one store under the scenario's first policy.
    pub async fn point(&mut self, r: &Resolved, size: usize, seed: u64) -> anyhow::Result<Point> {
        self.point_with(r, &r.policy, size, seed).await
    }

    /// Prediction and measurement for one store under `policy`.
    pub async fn point_with(
        &mut self,
        r: &Resolved,
        policy: &lab_server::policy::Settings,
        size: usize,
        seed: u64,
    ) -> anyhow::Result<Point> {
        let (store, ca_index) = self.store(r, size, seed)?;
        let mut point = predict(r, policy, &store, ca_index, seed, self.ca.subject_der());
        point.removed = size.saturating_sub(store.len());
        point.size = size;
        point.measured = self.measure(r, policy, store, ca_index, &mut point).await?;
        compare(&mut point);
        Ok(point)
    }

    async fn measure(
        &self,
        r: &Resolved,
        policy: &lab_server::policy::Settings,
        store: Store,
        ca_index: usize,
        point: &mut Point,
    ) -> anyhow::Result<Outcome> {
        let chain = vec![CertificateDer::from(self.pki.hub.cert_der.clone())];
        let key = PrivateKeyDer::try_from(self.pki.hub.key.pkcs8_der()?.to_vec())
            .map_err(|e| anyhow::anyhow!("hub key: {e}"))?;
        let dir = tempfile::tempdir()?;
        let mut settings = Settings::new(store, chain, key, dir.path().join("maildir"));
        settings.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        settings.named = vec![("enterprise CA".into(), ca_index)];
        settings.policy = *policy;
        settings.tls_version = r.tls;
        settings.max_fragment = r.scenario.server.max_fragment;
        settings.layout = r.layout;
        settings.client_auth = r.client_auth;
        let server = match Server::start(settings).await {
            Ok(s) => s,
            Err(lab_server::server::StartError::Policy(e)) => {
                point.server_events.push(format!("refused at start: {e}"));
                return Ok(Outcome::Refused(e.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        point.server_events.extend(
            server
                .startup_log()
                .iter()
                .filter(|l| l.contains("36885"))
                .map(|_| "36885".to_owned()),
        );
        let mut events = server.subscribe();
        let queue = Queue::open(&dir.path().join("queue"))?;
        let spec = EnqueueSpec {
            count: r.scenario.client.voicemails,
            seconds: 1,
            to: "user@lab.test".into(),
            seed: point.seed ^ point.size as u64,
            sample_rate: 8_000,
        };
        enqueue(&queue, &spec)?;
        let settings = SubmitSettings {
            client: ClientSettings {
                server: server.local_addr().to_string(),
                server_name: ServerName::try_from("localhost")?,
                server_roots: self.roots.clone(),
                helo: "um.lab.test".into(),
                from: "um@um.lab.test".into(),
                connect_timeout: Duration::from_secs(10),
                io_timeout: Duration::from_secs(10),
            },
            identity: self.identity.clone(),
            profile: r.client.clone(),
            max_attempts: 1,
            retry_delay: Duration::ZERO,
            concurrency: 1,
            events_file: None,
        };
        let (items, _) = queue.scan()?;
        let mut outcome = Outcome::Delivered;
        for item in items {
            let attempt = um_sim::submit::attempt(&queue, &settings, &item).await??;
            if let Some(ev) =
                um_sim::events::for_attempt(&item.header_path, &settings.client.server, &attempt)
            {
                point.um_events.push(ev.id);
            }
            match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
                Ok(Ok(ev)) => point.server_events.push(match &ev.handshake {
                    Some(h) if h.outcome == "ok" => {
                        format!("handshake ok, {} stored", ev.stored.len())
                    }
                    Some(h) => format!(
                        "handshake failed ({})",
                        h.alert.as_deref().unwrap_or("no alert")
                    ),
                    None => "no TLS".to_owned(),
                }),
                _ => point.server_events.push("no event".to_owned()),
            }
            if let (TlsVersion::Tls12, Some(seen)) = (r.tls, &attempt.certificate_request)
                && seen.complete
                && seen.body_bytes != point.body_bytes
            {
                point.disagreements.push(format!(
                    "CertificateRequest body: predicted {} bytes, the tap saw {}",
                    point.body_bytes, seen.body_bytes
                ));
            }
            if !attempt.delivered {
                let class = attempt.failure.map_or("unknown".to_owned(), class_name);
                outcome = Outcome::Failed(class);
            }
        }
        server.shutdown(Duration::from_secs(5)).await;
        Ok(outcome)
    }
}

/// The failure class as the JSON and the scenario files spell it.
pub fn class_name(c: FailureClass) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{c:?}"))
}

/// The analytic prediction, from the encodings, the policy and the client's rules.
pub fn predict(
    r: &Resolved,
    settings: &lab_server::policy::Settings,
    store: &Store,
    ca_index: usize,
    seed: u64,
    ca_subject: &[u8],
) -> Point {
    let shape = message_shape(r.tls);
    let entries = policy::entries(store);
    let max_fragment = r.scenario.server.max_fragment;
    let mut point = Point {
        size: store.len(),
        policy: settings.policy.to_string(),
        removed: 0,
        seed,
        ca_index,
        store_list_bytes: store.ca_list_bytes(),
        list_bytes: 0,
        names_sent: 0,
        names_dropped: 0,
        body_bytes: 0,
        records: 0,
        ca_listed: false,
        predicted: Outcome::Delivered,
        measured: Outcome::Delivered,
        server_events: Vec::new(),
        um_events: Vec::new(),
        disagreements: Vec::new(),
    };
    let plan = match policy::plan(&entries, settings, &shape, max_fragment, &[]) {
        Ok(p) => p,
        Err(e @ PolicyError::OverProtocolLimit { .. })
        | Err(e @ PolicyError::BudgetTooSmall { .. }) => {
            point.predicted = Outcome::Refused(e.to_string());
            return point;
        }
    };
    let sent: Vec<&[u8]> = plan
        .sent
        .iter()
        .filter_map(|&i| store.roots().get(i).map(Root::subject_der))
        .collect();
    point.list_bytes = plan.report.list_bytes;
    point.names_sent = plan.report.kept;
    point.names_dropped = plan.report.dropped;
    point.body_bytes = shape.body_len(plan.report.list_bytes);
    point.records = plan.report.records;
    point.ca_listed = sent.contains(&ca_subject);
    if r.client_auth == ClientAuth::None {
        return point;
    }
    let profile = &r.client;
    if r.tls == TlsVersion::Tls12 {
        let records = match r.layout {
            Layout::PerMessage => point.records,
            // The request shares records with the messages before it: it spans
            // at least this many, and for a one-record rule at least two.
            Layout::Coalesced => point.records.max(2),
        };
        if r.layout == Layout::PerMessage && point.body_bytes > OWN_STACK_BODY {
            point.predicted = Outcome::Failed(class_name(FailureClass::OwnStackLimit));
            return point;
        }
        if profile.violated(point.body_bytes, records, true).is_some() {
            point.predicted = Outcome::Failed(class_name(FailureClass::ProfileRule));
            return point;
        }
    }
    let presents = profile.presents_certificate(&sent, ca_subject);
    if !presents && r.client_auth == ClientAuth::Required {
        point.predicted = Outcome::Failed(class_name(FailureClass::NoAcceptableCertificate));
    }
    point
}

fn compare(point: &mut Point) {
    if point.predicted != point.measured {
        // A refusal's text is the same error on both sides; compare kinds.
        let same_kind = matches!(
            (&point.predicted, &point.measured),
            (Outcome::Refused(_), Outcome::Refused(_))
        );
        if !same_kind {
            point.disagreements.push(format!(
                "predicted {}, measured {}",
                point.predicted.label(),
                point.measured.label()
            ));
        }
    }
}

/// The smallest failing size in `from..=to`, by bisection on measurements,
/// with the two stores either side measured.
#[derive(Clone, Debug, Serialize)]
pub struct BreakPoint {
    /// Smallest size that fails.
    pub size: usize,
    /// The largest delivering store.
    pub below: Point,
    /// The smallest failing store.
    pub at: Point,
    /// Stores measured by the search.
    pub probes: usize,
}

/// Searches the break point of a monotone setup.
pub async fn break_point(
    lab: &mut Lab,
    r: &Resolved,
    from: usize,
    to: usize,
    seed: u64,
) -> anyhow::Result<Result<BreakPoint, String>> {
    let mut probes = 2;
    let low = lab.point(r, from, seed).await?;
    if low.measured.failed() {
        return Ok(Err(format!("already fails at {from} roots")));
    }
    let high = lab.point(r, to, seed).await?;
    if !high.measured.failed() {
        return Ok(Err(format!("still delivers at {to} roots")));
    }
    let (mut lo, mut hi) = ((from, low), (to, high));
    while hi.0 - lo.0 > 1 {
        let mid = lo.0 + (hi.0 - lo.0) / 2;
        probes += 1;
        let p = lab.point(r, mid, seed).await?;
        if p.measured.failed() {
            hi = (mid, p);
        } else {
            lo = (mid, p);
        }
    }
    Ok(Ok(BreakPoint {
        size: hi.0,
        below: lo.1,
        at: hi.1,
        probes,
    }))
}

/// Failure rate per size over seeds (thumbprint-order lottery).
#[derive(Clone, Debug, Serialize)]
pub struct Lottery {
    /// Store size.
    pub size: usize,
    /// Stores measured.
    pub runs: usize,
    /// Measured failures.
    pub failures: usize,
    /// Predicted failures.
    pub predicted_failures: usize,
}

/// The fewest roots to remove so the list fits a budget, never removing the
/// roots that must stay: the largest subjects go first, which minimises the
/// count (any k removals free at most the k largest sizes).
#[derive(Clone, Debug, Serialize)]
pub struct Remediation {
    /// Budget in bytes of names.
    pub budget: usize,
    /// Store indices to remove, largest subject first.
    pub remove: Vec<usize>,
    /// List bytes after removal.
    pub list_bytes_after: usize,
    /// Whether the list fits after removal (false when the kept roots alone
    /// exceed the budget).
    pub fits: bool,
}

impl Remediation {
    /// The store without the removed roots, order kept.
    pub fn keep_store(&self, store: &Store) -> Store {
        Store::from_roots(
            store
                .roots()
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.remove.contains(i))
                .map(|(_, r)| r.clone())
                .collect(),
        )
    }
}

/// Computes the remediation for a store.
pub fn remediate(store: &Store, budget: usize, keep: &[usize]) -> Remediation {
    let mut total = store.ca_list_bytes();
    let mut candidates: Vec<(usize, usize)> = store
        .roots()
        .iter()
        .enumerate()
        .filter(|(i, _)| !keep.contains(i))
        .map(|(i, r)| (2 + r.subject_der().len(), i))
        .collect();
    candidates.sort_by(|a, b| b.cmp(a));
    let mut remove = Vec::new();
    for (cost, i) in candidates {
        if total <= budget {
            break;
        }
        total -= cost;
        remove.push(i);
    }
    Remediation {
        budget,
        remove,
        list_bytes_after: total,
        fits: total <= budget,
    }
}
