//! Measurement: lab-server in-process on an ephemeral 127.0.0.1 port and
//! um-sim submitting queued voicemail to it over real TCP and TLS. The two
//! ends meet only on the wire; what um-sim's tap saw is checked against the
//! prediction.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use certgen::pki::Shape;
use certgen::roots::{self, RootsSpec};
use certgen::{KeyAlg, Position, Root, Store};
use lab_server::policy::TlsVersion;
use lab_server::server::{Server, Settings};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use um_sim::client::{ClientSettings, Identity};
use um_sim::queue::{EnqueueSpec, Item, Queue, enqueue};
use um_sim::submit::SubmitSettings;

use super::predict::{CLIENT_AUTH_BROKEN, EVERY_HANDSHAKE, Setup, class_name, predict};
use super::remediate::remediate;
use super::{Outcome, Point, compare};
use crate::model::{Resolved, Subjects};
use crate::{Error, Result};

/// The lab's fixed parts: the PKI and the client's identity, and the
/// synthetic roots generated so far (stores of one profile and seed are
/// prefixes of one list, so a sweep generates it once).
pub struct Lab {
    seed: u64,
    pki: certgen::pki::LabPki,
    ca: Root,
    identity: Identity,
    roots: Arc<rustls::RootCertStore>,
    synthetic: HashMap<(String, u64), Arc<Vec<Root>>>,
}

/// A store and the enterprise CA's index in it.
type StoreAt = (Store, usize);

/// Building one store, moved whole onto the blocking pool.
struct StoreJob {
    subjects: Subjects,
    seed: u64,
    size: usize,
    ca: Root,
    at: Position,
    prune_to: Option<usize>,
    cached: Option<Arc<Vec<Root>>>,
}

impl StoreJob {
    /// The (perhaps longer) synthetic list to cache, the store and the CA's
    /// index in it.
    fn run(self) -> Result<(Arc<Vec<Root>>, StoreAt)> {
        let need = self.size.saturating_sub(1);
        let have = self.cached.as_ref().map_or(0, |l| l.len());
        let list = match (self.subjects, self.cached) {
            (_, Some(list)) if list.len() >= need => list,
            (Subjects::Synthetic(profile), _) => {
                // Grow geometrically: a sweep's stores are prefixes of one list.
                let spec = RootsSpec {
                    count: need.max(have * 2).max(64) as u64,
                    seed: Some(self.seed),
                    profile,
                    key: KeyAlg::Ed25519,
                    dn_only: true,
                };
                let (store, _) = roots::generate(&spec, &|_| {})?;
                Arc::new(store.into_roots())
            }
            (real, _) => {
                // Root i depends only on (seed, i, subject i): the roots of a
                // prefix are those of the whole list.
                let subjects = real
                    .real_list()
                    .unwrap_or(Ok(&[]))
                    .map_err(Error::Invalid)?;
                let take = subjects.get(..need).unwrap_or(subjects);
                let store = roots::with_subjects(take, self.seed, KeyAlg::Ed25519)?;
                Arc::new(store.into_roots())
            }
        };
        if list.len() < need {
            return Err(Error::Invalid(format!(
                "{} has only {} roots; {} asked for",
                self.subjects,
                list.len(),
                self.size
            )));
        }
        let mut store = Store::from_roots(list.iter().take(need).cloned().collect());
        let at = store.insert(self.ca.clone(), self.at);
        let built = match self.prune_to {
            Some(budget) => {
                let pruned = remediate(&store, budget, &[at]);
                let kept = pruned.keep_store(&store);
                let at = kept
                    .roots()
                    .iter()
                    .position(|root| root.sha1() == self.ca.sha1())
                    .unwrap_or(0);
                (kept, at)
            }
            None => (store, at),
        };
        Ok((list, built))
    }
}

impl Lab {
    /// The enterprise CA: the root the Hub's store must list for the UM.
    pub fn ca(&self) -> &Root {
        &self.ca
    }

    /// The one-tier lab PKI and client identity for a seed.
    pub fn new(seed: u64) -> Result<Lab> {
        Lab::with_shape(seed, Shape::OneTier)
    }

    /// The lab PKI of `shape` and the client identity for a seed: the UM
    /// presents its whole chain (leaf, then the issuing CA in the two-tier
    /// shape), and the store gets what the Hub must trust ([`LabPki::ca`]).
    ///
    /// [`LabPki::ca`]: certgen::pki::LabPki::ca
    pub fn with_shape(seed: u64, shape: Shape) -> Result<Lab> {
        let pki = certgen::pki::generate_shape(Some(seed), KeyAlg::EcdsaP256, shape)?;
        let ca = pki.ca.root()?;
        let key = PrivateKeyDer::try_from(pki.um.key.pkcs8_der()?.to_vec())
            .map_err(|e| Error::Tls(format!("UM key: {e}")))?;
        let chain = pki
            .um_chain()
            .into_iter()
            .map(|der| CertificateDer::from(der.to_vec()))
            .collect();
        let identity = Identity::new(chain, key)?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(pki.hub_anchor().to_vec()))?;
        Ok(Lab {
            seed,
            pki,
            ca,
            identity,
            roots: Arc::new(roots),
            synthetic: HashMap::new(),
        })
    }

    /// The seed its PKI was issued from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The shape of this lab's PKI.
    pub fn shape(&self) -> Shape {
        self.pki.shape
    }

    /// The store of `size` roots (the CA included) for a seed: a prefix of one
    /// generated list, cached per profile and seed, with the CA inserted.
    /// Generation runs on the blocking pool, never on a runtime worker.
    pub async fn store(&mut self, r: &Resolved, size: usize, seed: u64) -> Result<(Store, usize)> {
        let key = (r.profile.to_string(), seed);
        let job = StoreJob {
            subjects: r.profile,
            seed,
            size,
            ca: self.ca.clone(),
            at: r.ca,
            prune_to: r.scenario.store.prune_to,
            cached: self.synthetic.get(&key).cloned(),
        };
        let (list, built) = tokio::task::spawn_blocking(move || job.run()).await??;
        self.synthetic.insert(key, list);
        Ok(built)
    }

    /// The prediction's setup for a scenario, with its persona's stores: the
    /// Client Authentication Issuers store (the enterprise CA) and the
    /// system trust store, built once per scenario and seed.
    pub async fn setup(&mut self, r: &Resolved) -> Result<Setup> {
        let mut setup = Setup::of(r);
        if r.issuers_ca {
            setup.issuers = Some(Store::from_roots(vec![self.ca.clone()]));
        }
        if let Some((subjects, size, seed)) = r.system_store {
            let key = (format!("system:{subjects}:{size}"), seed);
            let list = match self.synthetic.get(&key) {
                Some(list) => list.clone(),
                None => {
                    let list =
                        tokio::task::spawn_blocking(move || system_roots(subjects, size, seed))
                            .await??;
                    self.synthetic.insert(key, list.clone());
                    list
                }
            };
            setup.system = Some(Store::from_roots(list.to_vec()));
        }
        Ok(setup)
    }

    /// Prediction and measurement for one store under the scenario's first policy.
    pub async fn point(&mut self, r: &Resolved, size: usize, seed: u64) -> Result<Point> {
        self.point_with(r, &r.policy, size, seed).await
    }

    /// Prediction and measurement for one store under `policy`.
    pub async fn point_with(
        &mut self,
        r: &Resolved,
        policy: &lab_server::policy::Settings,
        size: usize,
        seed: u64,
    ) -> Result<Point> {
        let (store, ca_index) = self.store(r, size, seed).await?;
        let setup = self.setup(r).await?;
        let prediction = predict(&setup, policy, &store, Some(&self.identity.chain_issuers));
        let mut point = Point::predicted(policy, seed, ca_index, &store, prediction);
        point.persona = r.persona.name.to_string();
        point.removed = size.saturating_sub(store.len());
        point.size = size;
        point.measured = self
            .measure(r, &setup, policy, store, ca_index, &mut point)
            .await?;
        compare(&mut point);
        Ok(point)
    }

    /// Serves `store` and submits to it, in a temporary folder created and
    /// removed on the blocking pool.
    async fn measure(
        &self,
        r: &Resolved,
        setup: &Setup,
        policy: &lab_server::policy::Settings,
        store: Store,
        ca_index: usize,
        point: &mut Point,
    ) -> Result<Outcome> {
        let dir = tokio::task::spawn_blocking(tempfile::tempdir).await??;
        let outcome = self
            .measure_in(dir.path(), r, setup, policy, store, ca_index, point)
            .await;
        tokio::task::spawn_blocking(move || dir.close()).await??;
        outcome
    }

    #[allow(clippy::too_many_arguments)]
    async fn measure_in(
        &self,
        dir: &Path,
        r: &Resolved,
        setup: &Setup,
        policy: &lab_server::policy::Settings,
        store: Store,
        ca_index: usize,
        point: &mut Point,
    ) -> Result<Outcome> {
        let chain = self
            .pki
            .hub_chain()
            .into_iter()
            .map(|der| CertificateDer::from(der.to_vec()))
            .collect();
        let key = PrivateKeyDer::try_from(self.pki.hub.key.pkcs8_der()?.to_vec())
            .map_err(|e| Error::Tls(format!("hub key: {e}")))?;
        let mut settings = Settings::new(store, chain, key, dir.join("maildir"));
        settings.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        settings.named = vec![("enterprise CA".into(), ca_index)];
        settings.policy = *policy;
        settings.tls_version = r.tls;
        settings.max_fragment = r.scenario.server.max_fragment;
        settings.layout = r.layout;
        settings.client_auth = r.client_auth;
        settings.persona = setup.persona;
        settings.trust_mode = setup.trust_mode;
        settings.issuers = setup.issuers.clone();
        settings.system_store = setup.system.clone();
        let server = match Server::start(settings).await {
            Ok(s) => s,
            Err(
                e @ (lab_server::server::StartError::Policy(_)
                | lab_server::server::StartError::Persona(_)),
            ) => {
                point.server_events.push(format!("refused at start: {e}"));
                return Ok(Outcome::Refused(e.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        if server.persona_report().fails_each_handshake {
            point
                .server_events
                .push("started; fails each handshake past the limit".to_owned());
        }
        point.server_events.extend(
            server
                .startup_log()
                .iter()
                .filter(|l| l.contains("36885"))
                .map(|_| "36885".to_owned()),
        );
        let mut events = server.subscribe();
        let spec = EnqueueSpec {
            count: r.scenario.client.voicemails,
            seconds: 1,
            to: "user@lab.test".into(),
            seed: point.seed ^ point.size as u64,
            sample_rate: 8_000,
        };
        let (queue, items) = prepare_queue(dir.join("queue"), spec).await?;
        let settings = SubmitSettings {
            client: ClientSettings {
                server: server.local_addr().to_string(),
                server_name: ServerName::try_from("localhost")
                    .map_err(|e| Error::Tls(format!("server name: {e}")))?,
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
        let mut outcome = Outcome::Delivered;
        for item in items {
            let attempt = um_sim::submit::attempt(&queue, &settings, &item)
                .await?
                .map_err(|e| Error::Voicemail(e.to_string()))?;
            if let Some(ev) =
                um_sim::events::for_attempt(&item.header_path, &settings.client.server, &attempt)
            {
                point.um_events.push(ev.id);
            }
            let mut server_error = String::new();
            match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
                Ok(Ok(ev)) => point.server_events.push(match &ev.handshake {
                    Some(h) if h.outcome == "ok" => {
                        format!("handshake ok, {} stored", ev.stored.len())
                    }
                    Some(h) => {
                        server_error = h.error.clone().unwrap_or_default();
                        format!(
                            "handshake failed ({})",
                            h.alert.as_deref().unwrap_or("no alert")
                        )
                    }
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
                outcome = Outcome::Failed(measured_class(&attempt, &server_error));
            }
        }
        server.shutdown(Duration::from_secs(5)).await;
        Ok(outcome)
    }
}

/// The failure class measured: um-sim's, refined where the two ends show a
/// server-side cause the prediction names (`every-handshake`: the client got
/// a fatal internal_error and never saw a CertificateRequest;
/// `client-auth-broken`: lab-server rejected the certificate for KB 2880390).
fn measured_class(attempt: &um_sim::client::Attempt, server_error: &str) -> String {
    use um_sim::client::FailureClass;
    let Some(class) = attempt.failure else {
        return "unknown".to_owned();
    };
    if class == FailureClass::Tls {
        let error = attempt.error.as_deref().unwrap_or_default();
        if attempt.certificate_request.is_none() && error.contains("InternalError") {
            return EVERY_HANDSHAKE.to_owned();
        }
        if server_error.contains("KB 2880390") {
            return CLIENT_AUTH_BROKEN.to_owned();
        }
    }
    class_name(class)
}

/// The roots of a system trust store: `size` synthetic or real subjects.
fn system_roots(subjects: Subjects, size: usize, seed: u64) -> Result<Arc<Vec<Root>>> {
    let store = match subjects.real_list() {
        None => {
            let Subjects::Synthetic(profile) = subjects else {
                return Err(Error::Invalid("no subjects for the system store".into()));
            };
            let spec = RootsSpec {
                count: size as u64,
                seed: Some(seed),
                profile,
                key: KeyAlg::Ed25519,
                dn_only: true,
            };
            roots::generate(&spec, &|_| {})?.0
        }
        Some(list) => {
            let list = list.map_err(Error::Invalid)?;
            let take = list.get(..size).ok_or_else(|| {
                Error::Invalid(format!(
                    "system store: {subjects} has {} roots, {size} asked for",
                    list.len()
                ))
            })?;
            roots::with_subjects(take, seed, KeyAlg::Ed25519)?
        }
    };
    Ok(Arc::new(store.into_roots()))
}

/// A queue folder holding `spec`'s voicemails, and its items: files written
/// and synced on the blocking pool.
async fn prepare_queue(dir: PathBuf, spec: EnqueueSpec) -> Result<(Queue, Vec<Item>)> {
    tokio::task::spawn_blocking(move || {
        let queue = Queue::open(&dir)?;
        enqueue(&queue, &spec)?;
        let (items, _) = queue.scan()?;
        Ok((queue, items))
    })
    .await?
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::*;

    /// Runs `make()` on a one-thread runtime beside a task that counts its
    /// turns: work done inline on the runtime's thread leaves it no turn.
    fn turns_of_others<F: Future>(make: impl FnOnce() -> F) -> (F::Output, u64) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let turns = Arc::new(AtomicU64::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let (t, s) = (turns.clone(), stop.clone());
            let ticker = tokio::spawn(async move {
                while !s.load(Ordering::Relaxed) {
                    t.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            });
            tokio::task::yield_now().await;
            let before = turns.load(Ordering::Relaxed);
            let out = make().await;
            let during = turns.load(Ordering::Relaxed) - before;
            stop.store(true, Ordering::Relaxed);
            let _ = ticker.await;
            (out, during)
        })
    }

    fn scenario() -> Resolved {
        let text = "name = \"t\"\ndescription = \"d\"\n[store]\nsizes = [11]\n";
        let s: crate::model::Scenario = toml::from_str(text).expect("scenario");
        Resolved::new(s).expect("resolved")
    }

    #[test]
    fn store_building_runs_on_the_blocking_pool() {
        let mut lab = Lab::new(1).expect("lab");
        let r = scenario();
        let (store, turns) = turns_of_others(|| lab.store(&r, 2_000, 7));
        let (store, _) = store.expect("store");
        assert_eq!(store.len(), 2_000);
        assert!(
            turns > 0,
            "2,000 roots were generated on the runtime's thread"
        );
    }

    #[test]
    fn queue_files_are_written_on_the_blocking_pool() {
        let dir = tempfile::tempdir().expect("temp dir");
        let spec = EnqueueSpec {
            count: 20,
            seconds: 1,
            to: "user@lab.test".into(),
            seed: 1,
            sample_rate: 8_000,
        };
        let (queued, turns) = turns_of_others(|| prepare_queue(dir.path().join("q"), spec));
        let (_, items) = queued.expect("queue");
        assert_eq!(items.len(), 20);
        assert!(
            turns > 0,
            "20 voicemails were written and synced on the runtime's thread"
        );
    }
}
