//! `umlab analyze`: the verdict on a user's own store, from the encodings
//! alone (serve the store with lab-server to see it on the wire). It uses the
//! engine's own prediction ([`crate::engine::predict`]) and um-sim's named
//! client presets ([`um_sim::profile::Profile`]), so the verdict and a
//! measured scenario can never disagree on a limit.

use std::fmt;
use std::path::{Path, PathBuf};

use certgen::Store;
use lab_server::persona::PersonaName;
use lab_server::policy::{self, Policy};
use um_sim::profile::Profile;

use crate::engine::{Outcome, Prediction, Remediation, Setup, predict, remediate};
use crate::fix::{FixInput, FixOption, Windows};

/// The client presets judged: every stack um-sim models
/// ([`um_sim::presets::PRESETS`]), then `lenient` (no limit at all);
/// `max-handshake=N` is left out, having no fixed N.
pub fn preset_names() -> Vec<&'static str> {
    um_sim::presets::PRESETS
        .iter()
        .map(|p| p.name)
        .chain(["lenient"])
        .collect()
}

/// Dropped roots listed by name before "... and N more".
const SHOW_DROPPED: usize = 10;
/// Roots to remove listed by name before "... and N more".
const SHOW_REMOVED: usize = 20;

/// Why a store cannot be analysed.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// A store or certificate file could not be read.
    #[error(transparent)]
    Load(#[from] certgen::Error),
    /// A certificate given with `--issuer` or `--must-keep` is not in the store.
    #[error("{}: {subject} is not in the store", file.display())]
    NotInStore {
        /// The file naming it.
        file: PathBuf,
        /// Its subject.
        subject: String,
    },
    /// A preset name um-sim does not know (a programming error, kept typed).
    #[error("client preset {0}")]
    Preset(String),
}

/// What to analyse.
#[derive(Clone, Debug)]
pub struct Request {
    /// PEM bundle, folder, .p7b or .sst.
    pub store: PathBuf,
    /// The client certificate's issuer (PEM); the first certificate decides
    /// whether issuer-listed clients send their certificate.
    pub issuer: Option<PathBuf>,
    /// CAs that must stay in any pruned store (PEM files).
    pub must_keep: Vec<PathBuf>,
    /// Schannel's budget in bytes of names.
    pub budget: usize,
    /// The Hub's Windows version: which fixes apply.
    pub windows: Windows,
}

/// One client preset's predicted fate.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The preset's name.
    pub preset: String,
    /// The stack it models.
    pub stack: String,
    /// Whether a real-peer test proves the preset here (`um-sim profiles`
    /// gives the reason when not).
    pub verified: bool,
    /// The prediction for the whole store.
    pub prediction: Prediction,
    /// The smallest part of the store at which this preset fails.
    pub breaks_at: Option<BreakAt>,
}

/// Where a preset starts failing as the store grows in its own order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakAt {
    /// Roots: the first ones of the store, the issuers always among them.
    pub roots: usize,
    /// Their TLS 1.2 certificate_authorities size (2 + DER each).
    pub list_bytes: usize,
}

/// The smallest store, grown in the store's own order with the issuers
/// always in it (at their place once reached, after the others until then),
/// at which `setup` fails under `settings`; `None` when the whole store
/// delivers. Found by bisection: every rule a preset has fails from a size
/// on, and a growing list only pushes a listed issuer later.
fn break_at<I: AsRef<[u8]>>(
    setup: &Setup,
    settings: &policy::Settings,
    store: &Store,
    issuers: &[usize],
    chain: Option<&[I]>,
) -> Option<BreakAt> {
    let roots = store.roots();
    let part = |k: usize| -> Store {
        let mut v: Vec<certgen::Root> = roots.iter().take(k).cloned().collect();
        v.extend(
            issuers
                .iter()
                .filter(|&&i| i >= k)
                .filter_map(|&i| roots.get(i).cloned()),
        );
        Store::from_roots(v)
    };
    let fails = |k: usize| predict(setup, settings, &part(k), chain).outcome.failed();
    if !fails(roots.len()) {
        return None;
    }
    let (mut lo, mut hi) = (0, roots.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if fails(mid) { hi = mid } else { lo = mid + 1 }
    }
    let s = part(lo);
    Some(BreakAt {
        roots: s.len(),
        list_bytes: s.ca_list_bytes(),
    })
}

/// The verdict on a store.
#[derive(Clone, Debug)]
pub struct Analysis {
    /// The store's path.
    pub path: PathBuf,
    /// Roots in the store.
    pub roots: usize,
    /// TLS 1.2 certificate_authorities size of the whole store.
    pub list_bytes: usize,
    /// Schannel's budget.
    pub budget: usize,
    /// Store index and subject of each root the Schannel server drops, in
    /// store order.
    pub dropped: Vec<(usize, String)>,
    /// Store index and subject of each `--issuer` certificate, and its
    /// position in the Schannel list (`None`: dropped).
    pub issuers: Vec<(usize, String, Option<usize>)>,
    /// Whether an issuer was given (without one, issuer-listed clients are
    /// assumed to send their certificate).
    pub issuer_given: bool,
    /// For each issuer: the exact probability that a Hub enumerating this
    /// store by thumbprint (uniformly random thumbprints) cuts it from the
    /// Schannel list ([`crate::engine::odds::store_curve`]).
    pub thumbprint_odds: Vec<f64>,
    /// Each preset against a Schannel server (the truncated list).
    pub schannel: Vec<Verdict>,
    /// Each preset against a full-list server (OpenSSL, rustls).
    pub full: Vec<Verdict>,
    /// The fewest roots to remove so the list fits the budget.
    pub remediation: Remediation,
    /// Store index, subject and DER length of each root to remove.
    pub remove: Vec<(usize, String, usize)>,
    /// Roots that must stay (issuers and `--must-keep`).
    pub kept: usize,
    /// The Hub's Windows version.
    pub windows: Windows,
    /// The fixes for that version, with their files (none when nothing is
    /// cut).
    pub fixes: Vec<FixOption>,
    /// Each server persona against each client preset at the store's size.
    pub table: crate::verdicts::Table,
}

/// The setup of a TLS 1.2 server asking for a certificate, as the Hub does,
/// with 16 KB records, for one client preset.
fn setup(client: Profile) -> Setup {
    Setup::persona(PersonaName::Schannel2008R2, client)
}

/// Analyses a store: which client presets fail against a Schannel server and
/// a full-list server, which roots Schannel drops, whether the issuer is one,
/// and the remediation.
pub fn analyze(req: &Request) -> Result<Analysis, AnalyzeError> {
    let store = Store::load(&req.store)?;
    let find = |file: &Path| -> Result<Vec<usize>, AnalyzeError> {
        let mut at = Vec::new();
        for root in Store::load(file)?.into_roots() {
            match store
                .roots()
                .iter()
                .position(|r| r.subject_der() == root.subject_der())
            {
                Some(i) => at.push(i),
                None => {
                    return Err(AnalyzeError::NotInStore {
                        file: file.to_owned(),
                        subject: root.subject_text(),
                    });
                }
            }
        }
        Ok(at)
    };
    let issuer_at = req
        .issuer
        .as_deref()
        .map(find)
        .transpose()?
        .unwrap_or_default();
    let mut keep = issuer_at.clone();
    for f in &req.must_keep {
        keep.extend(find(f)?);
    }
    let subject = |i: usize| {
        store
            .roots()
            .get(i)
            .map(|r| r.subject_text())
            .unwrap_or_default()
    };
    // The client's chain as issuer-listed stacks match it: the given issuer.
    let chain: Option<Vec<&[u8]>> = issuer_at
        .first()
        .and_then(|&i| store.roots().get(i))
        .map(|r| vec![r.subject_der()]);
    let schannel_policy = policy::Settings {
        policy: Policy::Schannel,
        budget: req.budget,
        ..policy::Settings::default()
    };
    let full_policy = policy::Settings {
        policy: Policy::Full,
        ..schannel_policy
    };
    let mut schannel = Vec::new();
    let mut full = Vec::new();
    for name in preset_names() {
        let profile: Profile = name.parse().map_err(|e: String| AnalyzeError::Preset(e))?;
        let stack = profile.stack.clone();
        let verified = um_sim::presets::find(name).is_some_and(|p| p.is_verified());
        let s = setup(profile);
        for (policy, out) in [(&schannel_policy, &mut schannel), (&full_policy, &mut full)] {
            out.push(Verdict {
                preset: name.to_owned(),
                stack: stack.clone(),
                verified,
                prediction: predict(&s, policy, &store, chain.as_deref()),
                breaks_at: break_at(&s, policy, &store, &issuer_at, chain.as_deref()),
            });
        }
    }
    let sent = schannel
        .first()
        .map(|v| v.prediction.sent.clone())
        .unwrap_or_default();
    let dropped = (0..store.len())
        .filter(|i| !sent.contains(i))
        .map(|i| (i, subject(i)))
        .collect();
    let issuers = issuer_at
        .iter()
        .map(|&i| (i, subject(i), sent.iter().position(|&s| s == i)))
        .collect();
    let entry = |r: &certgen::Root| 2 + r.subject_der().len();
    let thumbprint_odds = issuer_at
        .iter()
        .map(|&ca| {
            let others: Vec<usize> = store
                .roots()
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != ca)
                .map(|(_, r)| entry(r))
                .collect();
            let own = store.roots().get(ca).map_or(0, entry);
            crate::engine::odds::store_curve(&others, own, req.budget)
                .last()
                .copied()
                .unwrap_or(0.0)
        })
        .collect();
    let remediation = remediate(&store, req.budget, &keep);
    let remove = remediation
        .remove
        .iter()
        .filter_map(|&i| {
            store
                .roots()
                .get(i)
                .map(|r| (i, r.subject_text(), r.subject_der().len()))
        })
        .collect();
    let fixes = crate::fix::plan(&FixInput {
        windows: req.windows,
        roots: store.roots(),
        budget: req.budget,
        list_bytes: store.ca_list_bytes(),
        issuers: &issuer_at,
        fewest: (&remediation.remove, remediation.fits),
    });
    let table = crate::verdicts::table(&store, req.budget, chain.as_deref())
        .map_err(AnalyzeError::Preset)?;
    Ok(Analysis {
        table,
        windows: req.windows,
        fixes,
        path: req.store.clone(),
        roots: store.len(),
        list_bytes: store.ca_list_bytes(),
        budget: req.budget,
        dropped,
        issuers,
        issuer_given: req.issuer.is_some(),
        thumbprint_odds,
        schannel,
        full,
        remediation,
        remove,
        kept: keep.len(),
    })
}

/// One preset's line: `delivers` or what fails and by which rule.
fn verdict_line(f: &mut fmt::Formatter<'_>, v: &Verdict) -> fmt::Result {
    let p = &v.prediction;
    let what = match &p.outcome {
        Outcome::Delivered => "delivers".to_owned(),
        Outcome::Refused(why) => format!("cannot be served: {why}"),
        Outcome::Failed(class) => match (&p.rule, class.as_str()) {
            (Some(rule), _) => format!("FAILS: {class} ({rule})"),
            (None, "own-stack-limit") => format!(
                "FAILS in the lab: {class} (body {} bytes; um-sim's own rustls stack gives up \
                 near 65,510, so the lab cannot show what {} does)",
                p.body_bytes, v.preset
            ),
            (None, _) => format!("FAILS: {class}"),
        },
    };
    let grows = v.breaks_at.map_or(String::new(), |b| {
        format!(
            "; fails from {} roots ({} bytes of names)",
            b.roots, b.list_bytes
        )
    });
    let proof = if v.verified {
        ""
    } else {
        ", not verified here"
    };
    writeln!(
        f,
        "    {:<16} {what}{grows}   [{}{proof}]",
        v.preset, v.stack
    )
}

impl fmt::Display for Analysis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_verdict(f)?;
        writeln!(
            f,
            "verdict table at {} roots ({} bytes of names): server persona x client preset",
            self.roots, self.list_bytes
        )?;
        write!(f, "{}", self.table)
    }
}

impl Analysis {
    /// Everything before the table: the Schannel list, the presets against
    /// it and a full list, the remediation and the fixes.
    fn fmt_verdict(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let budget = self.budget;
        writeln!(
            f,
            "store: {} ({} roots, {} bytes of names in TLS 1.2)",
            self.path.display(),
            self.roots,
            self.list_bytes
        )?;
        let Some(sch) = self.schannel.first().map(|v| &v.prediction) else {
            return Ok(());
        };
        match &sch.outcome {
            Outcome::Refused(why) => writeln!(f, "Schannel server (cap {budget}): {why}")?,
            _ => writeln!(
                f,
                "Schannel server (cap {budget}): sends {} of {} names ({} bytes){}",
                sch.names_sent,
                self.roots,
                sch.list_bytes,
                if sch.truncated {
                    "; event 36885, the rest is dropped"
                } else {
                    "; nothing dropped"
                }
            )?,
        }
        if !self.dropped.is_empty() {
            writeln!(f, "  dropped ({}), in store order:", self.dropped.len())?;
            for (i, name) in self.dropped.iter().take(SHOW_DROPPED) {
                writeln!(f, "    {i:>5}: {name}")?;
            }
            if self.dropped.len() > SHOW_DROPPED {
                writeln!(f, "    ... and {} more", self.dropped.len() - SHOW_DROPPED)?;
            }
        }
        for (i, name, listed) in &self.issuers {
            match listed {
                Some(k) => writeln!(
                    f,
                    "  issuer {name}: listed at position {k}: clients that send only \
                     certificates from a listed issuer can authenticate"
                )?,
                None => writeln!(
                    f,
                    "  issuer {name}: DROPPED (store position {i}): Schannel, Exchange and Java \
                     clients send no certificate and fail (the incident)"
                )?,
            }
        }
        for ((_, name, _), p) in self.issuers.iter().zip(&self.thumbprint_odds) {
            writeln!(
                f,
                "  if the Hub enumerated its store by thumbprint instead: {name} is cut with \
                 probability {:.1}% (exact, thumbprints uniformly random)",
                p * 100.0
            )?;
        }
        if !self.issuer_given {
            writeln!(
                f,
                "  (no --issuer: clients that send only certificates from a listed issuer are \
                 assumed to find theirs)"
            )?;
        }
        writeln!(f, "  client presets against this list:")?;
        for v in &self.schannel {
            verdict_line(f, v)?;
        }
        let full = self.full.first().map(|v| &v.prediction);
        match full.map(|p| &p.outcome) {
            Some(Outcome::Refused(why)) => {
                writeln!(
                    f,
                    "full list (OpenSSL or rustls server): cannot be sent: {why}"
                )?;
            }
            Some(_) => {
                if let Some(p) = full {
                    writeln!(
                        f,
                        "full list (OpenSSL or rustls server): {} bytes of names, \
                         CertificateRequest body {} bytes in {} record(s)",
                        p.list_bytes, p.body_bytes, p.records
                    )?;
                }
                writeln!(f, "  client presets against this list:")?;
                for v in &self.full {
                    verdict_line(f, v)?;
                }
            }
            None => {}
        }
        if self.schannel.iter().any(|v| !v.verified) {
            writeln!(
                f,
                "  (\"not verified here\": no real-peer test of that stack on this machine; \
                 `um-sim profiles` gives the reason)"
            )?;
        }
        if self.windows == Windows::Server2012 {
            writeln!(
                f,
                "Windows Server 2012 and later: no list by default (SendTrustedIssuerList 0); \
                 the Root store holds {} bytes of names{}",
                self.list_bytes,
                if self.list_bytes > budget {
                    format!(
                        ", past {budget}: client authentication fails whatever \
                         SendTrustedIssuerList says (KB 2880390; not verified here: no Windows \
                         on this machine)"
                    )
                } else {
                    format!(", under {budget}")
                }
            )?;
        }
        let fix = &self.remediation;
        if !sch.truncated {
            return writeln!(
                f,
                "verdict: the whole list fits {budget} bytes; no Schannel truncation"
            );
        }
        if !fix.fits {
            writeln!(
                f,
                "remediation: the required roots alone exceed {budget} bytes; set \
                 SendTrustedIssuerList = 0"
            )?;
        } else {
            writeln!(
                f,
                "remediation: remove {} root(s) (largest subjects first{}) to fit {budget} bytes \
                 ({} after); or set SendTrustedIssuerList = 0",
                fix.remove.len(),
                if self.kept == 0 {
                    String::new()
                } else {
                    format!(", keeping {} required", self.kept)
                },
                fix.list_bytes_after
            )?;
            for (i, name, len) in self.remove.iter().take(SHOW_REMOVED) {
                writeln!(f, "  remove {i:>4}: {name} ({len} bytes)")?;
            }
            if self.remove.len() > SHOW_REMOVED {
                writeln!(f, "  ... and {} more", self.remove.len() - SHOW_REMOVED)?;
            }
        }
        writeln!(
            f,
            "fix for Windows Server {} (not verified here: no Windows on this machine; the lab \
             applies each fix's equivalent in its tests; --emit DIR writes the files):",
            match self.windows {
                Windows::Server2008R2 => "2008 R2",
                Windows::Server2012 => "2012 and later",
            }
        )?;
        for (k, o) in self.fixes.iter().enumerate() {
            writeln!(
                f,
                "  {}. {}{}",
                k + 1,
                o.title,
                if o.sufficient {
                    ""
                } else {
                    " (NOT enough on its own)"
                }
            )?;
            writeln!(f, "     why: {}", o.effect)?;
            writeln!(f, "     also: {}", o.changes)?;
            if !o.files.is_empty() {
                let names: Vec<&str> = o.files.iter().map(|x| x.name.as_str()).collect();
                writeln!(f, "     files: {}", names.join(", "))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certgen::roots::RootsSpec;
    use certgen::{KeyAlg, Profile as Subjects};
    use um_sim::profile::Rule;

    /// 355 realistic roots as a PEM bundle, the last one the client's issuer.
    fn incident_store(dir: &Path) -> (PathBuf, PathBuf, Store) {
        let spec = RootsSpec {
            count: 355,
            seed: Some(2013),
            profile: Subjects::Realistic,
            key: KeyAlg::Ed25519,
            dn_only: true,
        };
        let (store, _) = certgen::roots::generate(&spec, &|_| {}).expect("roots");
        let bundle: String = store.roots().iter().map(|r| r.to_pem()).collect();
        let issuer = store.roots().last().expect("a root").to_pem();
        let (b, i) = (dir.join("store.pem"), dir.join("issuer.pem"));
        std::fs::write(&b, bundle).expect("bundle");
        std::fs::write(&i, issuer).expect("issuer");
        (b, i, store)
    }

    fn verdict<'a>(list: &'a [Verdict], preset: &str) -> &'a Prediction {
        &list
            .iter()
            .find(|v| v.preset == preset)
            .unwrap_or_else(|| panic!("no verdict for {preset}"))
            .prediction
    }

    #[test]
    fn verdicts_are_the_engines_prediction_with_um_sims_presets() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (bundle, issuer, store) = incident_store(dir.path());
        let a = analyze(&Request {
            store: bundle,
            issuer: Some(issuer),
            must_keep: Vec::new(),
            budget: certgen::wire::SCHANNEL_LIMIT,
            windows: Windows::default(),
        })
        .expect("analysis");
        assert_eq!(a.roots, 355);
        assert_eq!(a.issuers.len(), 1);
        assert_eq!(a.issuers.first().map(|i| i.2), Some(None), "issuer dropped");
        // The incident: Schannel truncates, the Exchange client has no issuer.
        let schannel = verdict(&a.schannel, "schannel-2008r2");
        assert!(schannel.truncated);
        assert_eq!(schannel.rule, Some(Rule::IssuerListed));
        assert_eq!(schannel.outcome.label(), "failed:no-acceptable-certificate");
        assert_eq!(verdict(&a.schannel, "lenient").outcome, Outcome::Delivered);
        // Full list: every verdict is the engine's prediction for that preset.
        let full = policy::Settings {
            policy: Policy::Full,
            ..policy::Settings::default()
        };
        let ca = store.roots().last().map(|r| vec![r.subject_der()]);
        for name in preset_names() {
            let profile: Profile = name.parse().expect("preset");
            let want = predict(&setup(profile.clone()), &full, &store, ca.as_deref());
            assert_eq!(verdict(&a.full, name), &want, "{name}");
            if let Some(Rule::MaxBody(n)) = want.rule {
                assert_eq!(
                    Some(n),
                    profile.max_body(),
                    "{name}: the preset's own limit"
                );
            }
        }
        let java = verdict(&a.full, "java17");
        assert!(java.body_bytes > certgen::wire::JAVA_LIMIT, "{java:?}");
        assert_eq!(java.outcome.label(), "failed:profile-rule");
        let text = a.to_string();
        assert!(text.contains("DROPPED"), "{text}");
        assert!(text.contains("remediation: remove"), "{text}");
    }

    #[test]
    fn each_break_size_is_the_first_failing_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (bundle, issuer, store) = incident_store(dir.path());
        let a = analyze(&Request {
            store: bundle,
            issuer: Some(issuer),
            must_keep: Vec::new(),
            budget: certgen::wire::SCHANNEL_LIMIT,
            windows: Windows::default(),
        })
        .expect("analysis");
        assert_eq!(a.schannel.len(), um_sim::presets::PRESETS.len() + 1);
        let ca = store.roots().last().map(|r| vec![r.subject_der()]);
        let first = |n: usize| -> Store {
            // n - 1 roots in store order, then the issuer (the store's last).
            let mut v: Vec<certgen::Root> = store.roots().iter().take(n - 1).cloned().collect();
            v.extend(store.roots().last().cloned());
            Store::from_roots(v)
        };
        let schannel_policy = policy::Settings::default();
        let full = policy::Settings {
            policy: Policy::Full,
            ..schannel_policy
        };
        let mut seen = 0;
        for (settings, verdicts) in [(&schannel_policy, &a.schannel), (&full, &a.full)] {
            for v in verdicts {
                let s = setup(v.preset.parse().expect("preset"));
                let fails = |n| {
                    predict(&s, settings, &first(n), ca.as_deref())
                        .outcome
                        .failed()
                };
                match v.breaks_at {
                    Some(b) => {
                        seen += 1;
                        assert!(v.prediction.outcome.failed(), "{}", v.preset);
                        assert!(fails(b.roots), "{}: {b:?}", v.preset);
                        assert!(b.roots == 1 || !fails(b.roots - 1), "{}: {b:?}", v.preset);
                        assert_eq!(b.list_bytes, first(b.roots).ca_list_bytes());
                    }
                    None => assert!(!v.prediction.outcome.failed(), "{}", v.preset),
                }
            }
        }
        // The incident: the Exchange client fails once its issuer is pushed
        // past 16 KB, about 160 realistic roots.
        let schannel = a
            .schannel
            .iter()
            .find(|v| v.preset == "schannel-2008r2")
            .and_then(|v| v.breaks_at)
            .expect("schannel breaks");
        assert!((140..=180).contains(&schannel.roots), "{schannel:?}");
        assert!(seen >= 5, "{seen} presets break");
    }

    #[test]
    fn the_verdict_table_is_predict_for_each_persona_and_preset() {
        use crate::verdicts::{Server, code};
        let dir = tempfile::tempdir().expect("temp dir");
        let (bundle, issuer, store) = incident_store(dir.path());
        let a = analyze(&Request {
            store: bundle,
            issuer: Some(issuer),
            must_keep: Vec::new(),
            budget: certgen::wire::SCHANNEL_LIMIT,
            windows: Windows::default(),
        })
        .expect("analysis");
        let t = &a.table;
        let names = preset_names();
        assert_eq!(t.columns.len(), names.len());
        assert_eq!(t.rows.len(), Server::rows().len());
        assert!(t.rows.len() > lab_server::persona::PERSONAS.len());
        let ca = store.roots().last().map(|r| vec![r.subject_der()]);
        for (server, cells) in &t.rows {
            assert_eq!(cells.len(), names.len(), "{}", server.label());
            for ((cell, column), name) in cells.iter().zip(&t.columns).zip(&names) {
                assert_eq!(column.preset, *name);
                assert_eq!(
                    column.verified,
                    um_sim::presets::find(name).is_some_and(|p| p.is_verified())
                );
                let profile: Profile = name.parse().expect("preset");
                let want = predict(
                    &Setup::persona(server.persona, profile),
                    &server.settings(certgen::wire::SCHANNEL_LIMIT),
                    &store,
                    ca.as_deref(),
                );
                assert_eq!(cell, &want, "{} x {name}", server.label());
            }
        }
        let cell = |row: &str, preset: &str| -> &Prediction {
            let (_, cells) = t
                .rows
                .iter()
                .find(|(s, _)| s.label() == row)
                .unwrap_or_else(|| panic!("no row {row}"));
            let at = names.iter().position(|n| *n == preset).expect("column");
            &cells[at]
        };
        // The incident: the 2008 R2 Hub cuts the CA, the Exchange client
        // sends nothing.
        let incident = cell("schannel-2008r2", "schannel-2008r2");
        assert_eq!(incident.outcome.label(), "failed:no-acceptable-certificate");
        assert_eq!(code(incident), "NA");
        // The same store in full behind OpenSSL: Java's 32,768-byte body.
        let java = cell("openssl", "java17");
        assert_eq!(java.rule, Some(Rule::MaxBody(certgen::wire::JAVA_LIMIT)));
        assert_eq!(code(java), "MB");
        // SendTrustedIssuerList 0 sends no names: every client delivers,
        // but one whose preset offers TLS 1.3 only meets a TLS 1.2 Hub.
        for name in &names {
            let p: Profile = name.parse().expect("preset");
            let c = cell("schannel-2008r2 STIL=0", name);
            if p.versions().contains(&um_sim::presets::Version::Tls12) {
                assert_eq!(c.outcome, Outcome::Delivered, "{name}");
            } else {
                assert_eq!(code(c), "TV", "{name}");
            }
        }
        // A Root store past 16 KB on 2012+: KB 2880390, whoever the client.
        assert_eq!(code(cell("schannel-2012", "lenient")), "KB");
        // s2n and ALB refuse a store this size at configuration.
        assert_eq!(code(cell("s2n", "go")), "RF");
        assert_eq!(code(cell("aws-alb", "go")), "RF");
        let text = a.to_string();
        let table = text
            .split("verdict table at 355 roots")
            .nth(1)
            .expect("the table ends the analysis");
        assert!(table.contains("schannel-2008r2 STIL=0"), "{table}");
        for line in table.lines() {
            assert!(line.chars().count() <= 130, "too wide: {line}");
        }
    }

    #[test]
    fn thumbprint_odds_are_exact_for_the_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (bundle, issuer, store) = incident_store(dir.path());
        let a = analyze(&Request {
            store: bundle.clone(),
            issuer: Some(issuer.clone()),
            must_keep: Vec::new(),
            budget: certgen::wire::SCHANNEL_LIMIT,
            windows: Windows::default(),
        })
        .expect("analysis");
        let p = *a.thumbprint_odds.first().expect("odds for the issuer");
        // 355 realistic roots, about 34 KB: roughly half the orders cut the CA.
        assert!((0.3..0.7).contains(&p), "{p}");
        assert!(a.to_string().contains("cut with probability"));
        // A budget the whole store fits: never cut; one below any name: always.
        for (budget, want) in [(store.ca_list_bytes(), 0.0), (10, 1.0)] {
            let a = analyze(&Request {
                store: bundle.clone(),
                issuer: Some(issuer.clone()),
                must_keep: Vec::new(),
                budget,
                windows: Windows::default(),
            })
            .expect("analysis");
            let got = a.thumbprint_odds.first().copied().unwrap_or(f64::NAN);
            assert!((got - want).abs() < 1e-9, "budget {budget}: {got}");
        }
    }

    #[test]
    fn an_issuer_outside_the_store_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (bundle, _, _) = incident_store(dir.path());
        let spec = RootsSpec {
            count: 1,
            seed: Some(1),
            profile: Subjects::Fixed(100),
            key: KeyAlg::Ed25519,
            dn_only: true,
        };
        let (other, _) = certgen::roots::generate(&spec, &|_| {}).expect("root");
        let path = dir.path().join("other.pem");
        let pem: String = other.roots().iter().map(|r| r.to_pem()).collect();
        std::fs::write(&path, pem).expect("write");
        let err = analyze(&Request {
            store: bundle,
            issuer: Some(path.clone()),
            must_keep: Vec::new(),
            budget: certgen::wire::SCHANNEL_LIMIT,
            windows: Windows::default(),
        })
        .expect_err("not in the store");
        assert!(matches!(err, AnalyzeError::NotInStore { .. }), "{err}");
        assert!(err.to_string().contains("other.pem"), "{err}");
    }
}
