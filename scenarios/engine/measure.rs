//! Measurement: lab-server in-process on an ephemeral 127.0.0.1 port and
//! um-sim submitting queued voicemail to it over real TCP and TLS. The two
//! ends meet only on the wire; what um-sim's tap saw is checked against the
//! prediction.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use certgen::roots::{self, RootsSpec};
use certgen::{KeyAlg, Root, Store};
use lab_server::policy::TlsVersion;
use lab_server::server::{Server, Settings};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use um_sim::client::{ClientSettings, Identity};
use um_sim::queue::{EnqueueSpec, Queue, enqueue};
use um_sim::submit::SubmitSettings;

use super::predict::{Setup, class_name, predict};
use super::remediate::remediate;
use super::{Outcome, Point, compare};
use crate::model::{Resolved, Subjects};

/// The lab's fixed parts: the PKI and the client's identity, and the
/// synthetic roots generated so far (stores of one profile and seed are
/// prefixes of one list, so a sweep generates it once).
pub struct Lab {
    pki: certgen::pki::LabPki,
    ca: Root,
    identity: Identity,
    roots: Arc<rustls::RootCertStore>,
    synthetic: HashMap<(String, u64), Vec<Root>>,
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
        let prediction = predict(&Setup::of(r), policy, &store, Some(self.ca.subject_der()));
        let mut point = Point::predicted(policy, seed, ca_index, &store, prediction);
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
