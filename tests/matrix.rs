//! Every client profile x CA-list policy pair, on stores of `fixed:LEN`
//! subjects sized to straddle each limit, gives the outcome the arithmetic
//! predicts, measured over a real TCP connection and TLS 1.2 handshake.
//!
//! Prediction (from the encodings only, never from lab-server's report):
//! - list bytes L = sum(2 + DER length) of the names the policy sends
//!   (`schannel`: the longest store-order prefix with L <= 16,384; `full`:
//!   all; `omit`: none);
//! - CertificateRequest body B = 1 + 2 (certificate types: rustls writes
//!   rsa_sign and ecdsa_sign) + 2 + 2 x S + 2 + L, where S, the number of
//!   signature schemes, is the server's own configuration
//!   (`lab_server::tls::message_shape(Tls12).sig_schemes`), used for this fixed
//!   part only; the message is B + 4 bytes and, each handshake message starting
//!   a record of its own (`per-message`), spans ceil((B + 4) / (max_fragment - 5))
//!   records (16,384 bytes of plaintext per record by default);
//! - the profiles' rules (shared/DESIGN.md section 4), in the order the client
//!   meets them: `max-body=N` on the handshake header, `one-record` when the
//!   first record of the message is in, then um-sim's own stack (rustls refuses
//!   a body over 65,535 bytes; near 64,900 bytes of names tokio-rustls's buffer
//!   gives up: between 60,000 and 65,535 either outcome is accepted), then
//!   `issuer-listed` (no certificate unless the enterprise CA, last in the
//!   store, is listed or the list is empty).
//!
//! Measurement: lab-server in-process (one server per store and policy),
//! um-sim's library submitting one queued voicemail per profile over TCP
//! (`um_sim::submit::attempt`, what `um-sim submit` runs per item), its
//! attempt record (outcome, failure class, rule, the tap's view of the
//! CertificateRequest, the certificate decision) and the server's connection
//! event. Any disagreement fails the test with prediction and measurement.

mod common;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use certgen::Store;
use certgen::pki::{LabPki, Shape};
use common::{Lab, anchor_subject, fixed_store_for, pki, pki_of, start_server_for};
use lab_server::events::ConnectionEvent;
use lab_server::policy::{Policy, PolicyError, TlsVersion};
use lab_server::server::StartError;
use tokio::sync::Semaphore;
use um_sim::client::{Attempt, FailureClass};
use um_sim::profile::Rule;
use um_sim::queue::{EnqueueSpec, Queue, enqueue};

/// Schannel's budget: bytes of names (KB 933430).
const SCHANNEL_LIST: usize = 16_384;
/// Largest record plaintext, 2^14.
const RECORD_PLAINTEXT: usize = 16_384;
/// Record header bytes.
const RECORD_HEADER: usize = 5;
/// Handshake header bytes.
const HANDSHAKE_HEADER: usize = 4;
/// Java 17's default jdk.tls.maxHandshakeMessageSize (body bytes).
const JAVA_BODY: usize = 32_768;
/// BoringSSL's client limit, `max_cert_list` (body bytes): beyond what
/// um-sim's own stack can receive, so never the failure here.
const BORINGSSL_BODY: usize = 102_400;
/// Schannel's MessageLimitClient (Windows 7 / 2008 R2 and later, body bytes).
const SCHANNEL_CLIENT_BODY: usize = 32_768;
/// A 16 KB handshake limit (`max-handshake=16384`), the limit of embedded
/// stacks that read one record.
const ONE_RECORD_BODY: usize = 16_384;
/// TLS 1.2 certificate_authorities<0..2^16-1>.
const TLS12_LIST: usize = 65_535;
/// lab-server's default record size, header included.
const DEFAULT_FRAGMENT: usize = 16_389;
/// rustls refuses a handshake body over this: um-sim's own stack, certain.
const OWN_STACK_HARD: usize = 65_535;
/// Below this body size um-sim's own stack certainly copes.
const OWN_STACK_SAFE: usize = 60_000;
/// certificate_types rustls 0.23 writes in a TLS 1.2 CertificateRequest.
const CERT_TYPES: usize = 2;
/// A fixed `max-handshake=N` profile run on every store.
const MAX_HANDSHAKE_N: usize = 20_000;
/// Servers (store x policy) measured at once.
const PARALLEL: usize = 2;

/// The fixed part of the CertificateRequest body.
#[derive(Clone, Copy, Debug)]
struct Fixed {
    sig_schemes: usize,
}

impl Fixed {
    /// The server's configuration, used for the fixed part only.
    fn of_server() -> Fixed {
        Fixed {
            sig_schemes: lab_server::tls::message_shape(TlsVersion::Tls12).sig_schemes,
        }
    }

    fn body(self, list: usize) -> usize {
        1 + CERT_TYPES + 2 + 2 * self.sig_schemes + 2 + list
    }
}

/// One store: `roots` subjects of `fixed:LEN`, perhaps one `fixed:FILLER`
/// root to hit an exact size, then the enterprise CA.
struct StoreCase {
    label: String,
    /// The lab PKI: its anchor is the store's last root, its UM chain the
    /// client's certificate.
    pki: &'static LabPki,
    len: usize,
    roots: u64,
    filler: Option<usize>,
    store: Store,
    ca_index: usize,
    /// 2 + DER length of each root's subject, in store order.
    costs: Vec<usize>,
}

impl StoreCase {
    fn build(
        label: &str,
        pki: &'static LabPki,
        (len, roots, filler): (usize, u64, Option<usize>),
    ) -> StoreCase {
        let (store, ca_index) = fixed_store_for(pki, roots, len, filler);
        let anchor = anchor_subject(pki);
        let subjects: Vec<&[u8]> = store.roots().iter().map(|r| r.subject_der()).collect();
        for (i, s) in subjects.iter().enumerate() {
            let want = match i as u64 {
                i if i < roots => len,
                i if i == roots && filler.is_some() => filler.unwrap_or(len),
                _ => anchor.len(),
            };
            assert_eq!(s.len(), want, "{label}: subject {i}");
        }
        assert_eq!(ca_index, subjects.len() - 1, "the CA is last");
        assert_eq!(subjects.get(ca_index).copied(), Some(anchor.as_slice()));
        StoreCase {
            label: label.to_owned(),
            pki,
            len,
            roots,
            filler,
            costs: subjects.iter().map(|s| 2 + s.len()).collect(),
            store,
            ca_index,
        }
    }

    fn total(&self) -> usize {
        self.costs.iter().sum()
    }

    /// `LEN` or `LEN+F` (one filler root of F bytes).
    fn len_text(&self) -> String {
        match self.filler {
            Some(f) => format!("{}+{f}", self.len),
            None => self.len.to_string(),
        }
    }
}

/// Lengths `fixed:LEN` can take here, closest to 100 first.
fn lens() -> Vec<usize> {
    let mut v: Vec<usize> = (64..=1000)
        .filter(|&l| certgen::synth::der_len_exists(l))
        .collect();
    v.sort_by_key(|l| (l.abs_diff(100), *l));
    v
}

/// Finds `fixed:LEN`, a root count and perhaps one filler root whose list
/// (with the CA last) is exactly `target` bytes: one LEN alone when some LEN
/// divides the room, else one filler root of another length. Failing both
/// (never seen), the nearest size on the asked side.
fn find_size(target: usize, ca_cost: usize, at_most: bool) -> (usize, u64, Option<usize>) {
    let avail = target - ca_cost;
    let lens = lens();
    for &len in &lens {
        if avail.is_multiple_of(len + 2) {
            return (len, (avail / (len + 2)) as u64, None);
        }
    }
    for &len in &lens {
        let cost = len + 2;
        let top = avail.saturating_sub(66) / cost;
        for n in (top.saturating_sub(12)..=top).rev().filter(|&n| n > 0) {
            let filler = avail - n * cost - 2;
            if (64..=1000).contains(&filler) && certgen::synth::der_len_exists(filler) {
                return (len, n as u64, Some(filler));
            }
        }
    }
    let len = lens[0];
    let n = if at_most {
        avail / (len + 2)
    } else {
        avail.div_ceil(len + 2)
    };
    (len, n as u64, None)
}

/// What the policy sends and what that costs.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Names sent (a store-order prefix for every policy here).
    names: usize,
    /// Bytes of names.
    list: usize,
    /// CertificateRequest body.
    body: usize,
    /// Records the message spans.
    records: usize,
    /// Whether the enterprise CA is among the names.
    ca_sent: bool,
    /// Whether anything was dropped by `schannel`.
    truncated: bool,
}

/// The plan, or `Err(list)` when `full` cannot be sent (over 65,535 bytes).
fn plan(
    case: &StoreCase,
    policy: Policy,
    fixed: Fixed,
    max_fragment: usize,
) -> Result<Plan, usize> {
    let names = match policy {
        Policy::Omit => 0,
        Policy::Full => {
            if case.total() > TLS12_LIST {
                return Err(case.total());
            }
            case.costs.len()
        }
        Policy::Schannel => {
            let mut sum = 0;
            case.costs
                .iter()
                .take_while(|&&c| {
                    sum += c;
                    sum <= SCHANNEL_LIST
                })
                .count()
        }
    };
    let list: usize = case.costs.iter().take(names).sum();
    let body = fixed.body(list);
    let payload = (max_fragment - RECORD_HEADER).min(RECORD_PLAINTEXT);
    Ok(Plan {
        names,
        list,
        body,
        records: (body + HANDSHAKE_HEADER).div_ceil(payload),
        ca_sent: case.ca_index < names,
        truncated: policy == Policy::Schannel && names < case.costs.len(),
    })
}

/// A client profile as shared/DESIGN.md section 4 defines the presets.
#[derive(Clone, Debug)]
struct Client {
    issuer_listed: bool,
    one_record: bool,
    max_body: Option<usize>,
}

fn client(name: &str) -> Client {
    let (issuer_listed, one_record, max_body) = match name {
        "schannel" => (true, false, Some(SCHANNEL_CLIENT_BODY)),
        "legacy-schannel" => (true, true, None),
        "java17" => (true, false, Some(JAVA_BODY)),
        "boringssl" => (false, false, Some(BORINGSSL_BODY)),
        "lenient" => (false, false, None),
        _ => {
            let n = name
                .strip_prefix("max-handshake=")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unknown profile {name}"));
            (false, false, Some(n))
        }
    };
    Client {
        issuer_listed,
        one_record,
        max_body,
    }
}

/// How one submission ends.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Delivered,
    /// FailureClass::NoAcceptableCertificate (issuer not listed).
    NoCertificate,
    /// FailureClass::ProfileRule, Rule::OneRecord.
    OneRecord,
    /// FailureClass::ProfileRule, Rule::MaxBody(N).
    MaxBody(usize),
    /// FailureClass::OwnStackLimit.
    OwnStack,
    /// Anything else, as um-sim reported it.
    Other(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Delivered => f.write_str("ok"),
            Outcome::NoCertificate => f.write_str("no-cert"),
            Outcome::OneRecord => f.write_str("1-record"),
            Outcome::MaxBody(n) => write!(f, "body>{n}"),
            Outcome::OwnStack => f.write_str("own-stack"),
            Outcome::Other(s) => write!(f, "other({s})"),
        }
    }
}

/// The outcomes the arithmetic allows, the likeliest first.
fn predict(c: &Client, p: &Plan) -> Vec<Outcome> {
    if let Some(n) = c.max_body
        && p.body > n
    {
        return vec![Outcome::MaxBody(n)];
    }
    if c.one_record && p.records > 1 {
        return vec![Outcome::OneRecord];
    }
    if p.body > OWN_STACK_HARD {
        return vec![Outcome::OwnStack];
    }
    let next = if c.issuer_listed && p.names > 0 && !p.ca_sent {
        Outcome::NoCertificate
    } else {
        Outcome::Delivered
    };
    if p.body > OWN_STACK_SAFE {
        vec![next, Outcome::OwnStack]
    } else {
        vec![next]
    }
}

/// One profile on one server: prediction, measurement, disagreements.
struct Cell {
    profile: String,
    expect: Vec<Outcome>,
    measured: Outcome,
    problems: Vec<String>,
    /// How the server saw the handshake end: error and alert.
    server_end: String,
}

/// One store x policy (x record size).
struct Row {
    store: Arc<StoreCase>,
    policy: Policy,
    max_fragment: usize,
    plan: Result<Plan, usize>,
    /// What happened at start (the refusal's text, or problems with the report).
    start: Vec<String>,
    cells: Vec<Cell>,
    elapsed: Duration,
}

/// The one voicemail every run submits: a template queued once, copied into a
/// fresh queue folder per run.
struct Template {
    _dir: tempfile::TempDir,
    files: Vec<PathBuf>,
}

fn template() -> Template {
    let dir = tempfile::tempdir().expect("temp dir");
    let q = Queue::open(dir.path()).expect("queue");
    enqueue(
        &q,
        &EnqueueSpec {
            count: 1,
            seconds: 1,
            to: "user@lab.test".into(),
            seed: 7,
            sample_rate: 8_000,
        },
    )
    .expect("enqueue");
    let files = common::files_in(dir.path());
    assert_eq!(files.len(), 2, "header + wav: {files:?}");
    Template { _dir: dir, files }
}

/// Runs every profile against one server and compares.
async fn run_row(
    store: Arc<StoreCase>,
    policy: Policy,
    max_fragment: usize,
    profiles: Vec<String>,
    fixed: Fixed,
    tpl: Arc<Template>,
) -> Row {
    let started = Instant::now();
    let predicted = plan(&store, policy, fixed, max_fragment);
    let mut row = Row {
        store: store.clone(),
        policy,
        max_fragment,
        plan: predicted,
        start: Vec::new(),
        cells: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let started_server = start_server_for(store.pki, store.store.clone(), store.ca_index, |s| {
        s.policy.policy = policy;
        s.max_fragment = max_fragment;
    })
    .await;
    let (mut lab, p) = match (started_server, predicted) {
        (Err(StartError::Policy(PolicyError::OverProtocolLimit { list, max, .. })), Err(total)) => {
            if list != total || max != TLS12_LIST {
                row.start.push(format!(
                    "refused with list {list} / max {max}; predicted list {total} / max {TLS12_LIST}"
                ));
            }
            row.elapsed = started.elapsed();
            return row;
        }
        (Err(e), _) => {
            row.start
                .push(format!("start failed: {e}; predicted {predicted:?}"));
            row.elapsed = started.elapsed();
            return row;
        }
        (Ok(_), Err(total)) => {
            row.start.push(format!(
                "started, but the full list is {total} bytes (> {TLS12_LIST}): predicted a refusal"
            ));
            row.elapsed = started.elapsed();
            return row;
        }
        (Ok(lab), Ok(p)) => (lab, p),
    };
    check_report(&lab, &p, &mut row.start);
    for profile in profiles {
        let cell = run_cell(&mut lab, &store, &p, &profile, &tpl).await;
        row.cells.push(cell);
    }
    lab.server.shutdown(Duration::from_secs(1)).await;
    row.elapsed = started.elapsed();
    row
}

/// The server's own report must agree (checked, never used to predict).
fn check_report(lab: &Lab, p: &Plan, problems: &mut Vec<String>) {
    let r = lab.server.report();
    let got = (
        r.kept,
        r.list_bytes,
        r.message_bytes,
        r.records,
        r.truncated,
    );
    let want = (
        p.names,
        p.list,
        p.body + HANDSHAKE_HEADER,
        p.records,
        p.truncated,
    );
    if got != want {
        problems.push(format!(
            "server report (kept, list, message, records, truncated) = {got:?}, predicted {want:?}"
        ));
    }
    let logged = lab
        .server
        .startup_log()
        .iter()
        .any(|l| l.contains("Event ID:      36885"));
    if logged != p.truncated {
        problems.push(format!(
            "event 36885 logged: {logged}, predicted truncation: {}",
            p.truncated
        ));
    }
}

/// What um-sim's attempt says.
struct Measured {
    outcome: Outcome,
    attempt: Attempt,
}

fn outcome_of(a: &Attempt) -> Outcome {
    if a.delivered {
        return Outcome::Delivered;
    }
    match (a.failure, a.rule) {
        (Some(FailureClass::NoAcceptableCertificate), _) => Outcome::NoCertificate,
        (Some(FailureClass::OwnStackLimit), _) => Outcome::OwnStack,
        (Some(FailureClass::ProfileRule), Some(Rule::OneRecord)) => Outcome::OneRecord,
        (Some(FailureClass::ProfileRule), Some(Rule::MaxBody(n))) => Outcome::MaxBody(n),
        (failure, rule) => Outcome::Other(format!(
            "{failure:?} (rule {rule:?}): {}",
            a.error.as_deref().unwrap_or("")
        )),
    }
}

async fn submit_once(lab: &Lab, profile: &str, tpl: &Template) -> (Measured, String) {
    let work = tempfile::tempdir_in(lab.dir.path()).expect("run dir");
    let dir = work.path().join("queue");
    let files = tpl.files.clone();
    let (queue, item) = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).expect("queue dir");
        for f in &files {
            std::fs::copy(f, dir.join(f.file_name().expect("file name"))).expect("copy item");
        }
        let queue = Queue::open(&dir).expect("queue");
        let (mut items, rejected) = queue.scan().expect("scan");
        assert!(rejected.is_empty() && items.len() == 1, "{rejected:?}");
        let item = items.pop().expect("the item");
        (queue, item)
    })
    .await
    .expect("queue thread");
    let settings = lab.submit_settings(profile, 1);
    let attempt = um_sim::submit::attempt(&queue, &settings, &item)
        .await
        .expect("queue I/O")
        .expect("the message builds");
    let dump = format!(
        "attempt: {}",
        serde_json::to_string(&attempt).unwrap_or_default()
    );
    (
        Measured {
            outcome: outcome_of(&attempt),
            attempt,
        },
        dump,
    )
}

async fn run_cell(
    lab: &mut Lab,
    store: &StoreCase,
    p: &Plan,
    profile: &str,
    tpl: &Template,
) -> Cell {
    let c = client(profile);
    let expect = predict(&c, p);
    let (m, dump) = submit_once(lab, profile, tpl).await;
    let server = lab.next_event(common::EVENT_TIMEOUT).await;
    let mut problems = Vec::new();
    if !expect.contains(&m.outcome) {
        problems.push(format!(
            "outcome: predicted {}, measured {}",
            expect
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" or "),
            m.outcome
        ));
    }
    let delivered = m.outcome == Outcome::Delivered;
    check_tap(&m, p, &mut problems);
    check_decision(&m, p, &c, &mut problems);
    match &server {
        None => problems.push("no server event for the connection".into()),
        Some(ev) => check_server(ev, p, delivered, &mut problems),
    }
    if !problems.is_empty() {
        problems.push(format!(
            "context: store {} ({} x fixed:{} + CA), plan {p:?}\n{dump}\nserver event: {server:?}",
            store.label,
            store.roots,
            store.len_text()
        ));
    }
    let server_end =
        server
            .as_ref()
            .and_then(|ev| ev.handshake.as_ref())
            .map_or("no handshake".into(), |h| {
                format!(
                    "{}: {} / alert {}",
                    h.outcome,
                    h.error.as_deref().unwrap_or("-"),
                    h.alert.as_deref().unwrap_or("-")
                )
            });
    Cell {
        profile: profile.to_owned(),
        expect,
        measured: m.outcome,
        problems,
        server_end,
    }
}

/// The record tap's view of the CertificateRequest.
fn check_tap(m: &Measured, p: &Plan, problems: &mut Vec<String>) {
    let Some(cr) = &m.attempt.certificate_request else {
        // um-sim's own stack may stop reading before the message is whole.
        if m.outcome != Outcome::OwnStack {
            problems.push("the tap saw no CertificateRequest".into());
        }
        return;
    };
    if cr.body_bytes != p.body {
        problems.push(format!(
            "tap body_bytes {}, predicted B = {}",
            cr.body_bytes, p.body
        ));
    }
    if cr.complete {
        if cr.records != p.records {
            problems.push(format!(
                "tap records {}, predicted {}",
                cr.records, p.records
            ));
        }
        if cr.ca_name_count != p.names {
            problems.push(format!(
                "tap ca_name_count {}, predicted {}",
                cr.ca_name_count, p.names
            ));
        }
    } else {
        // Stopped by a rule: the records read so far.
        let stopped = matches!(m.outcome, Outcome::OneRecord | Outcome::MaxBody(_));
        if !stopped || cr.records == 0 || cr.records > p.records {
            problems.push(format!(
                "tap saw an incomplete request ({} records of {}) with outcome {}",
                cr.records, p.records, m.outcome
            ));
        }
    }
}

/// What the certificate resolver decided, once rustls got that far.
fn check_decision(m: &Measured, p: &Plan, c: &Client, problems: &mut Vec<String>) {
    let reached = matches!(m.outcome, Outcome::Delivered | Outcome::NoCertificate);
    let Some(d) = &m.attempt.certificate else {
        if reached {
            problems.push("no certificate decision recorded".into());
        }
        return;
    };
    let got = (d.names, d.issuer_listed, d.certificate_sent);
    let sent = !c.issuer_listed || p.names == 0 || p.ca_sent;
    let want = (p.names, p.ca_sent, sent);
    if got != want {
        problems.push(format!(
            "certificate decision (names, issuer_listed, sent) = {got:?}, predicted {want:?}"
        ));
    }
}

/// The server's connection event.
fn check_server(ev: &ConnectionEvent, p: &Plan, delivered: bool, problems: &mut Vec<String>) {
    let ok = ev.handshake.as_ref().map(|h| h.outcome);
    let want = Some(if delivered { "ok" } else { "failed" });
    if ok != want {
        problems.push(format!("server handshake {ok:?}, expected {want:?}"));
    }
    match (&ev.client_certificate, delivered) {
        (Some(cert), true) if cert.subject.contains(certgen::pki::UM_DNS) => {}
        (None, false) => {}
        (cert, _) => problems.push(format!(
            "server saw client certificate {cert:?} (delivered: {delivered})"
        )),
    }
    let stored = ev.stored.len();
    if stored != usize::from(delivered) {
        problems.push(format!("server stored {stored} messages"));
    }
    match &ev.certificate_request {
        Some(cr) => {
            let got = (cr.bytes, cr.records, cr.ca_names, cr.source);
            let want = (p.body + HANDSHAKE_HEADER, p.records, p.names, "wire");
            if got != want {
                problems.push(format!(
                    "server certificate_request (bytes, records, ca_names, source) = {got:?}, \
                     predicted {want:?}"
                ));
            }
        }
        // The server's flight went out before any client reacted, so even a
        // failed handshake's event says what was sent.
        None => problems.push("server event has no certificate_request".into()),
    }
}

fn profiles_for(p: &Result<Plan, usize>) -> Vec<String> {
    let mut v: Vec<String> = [
        "schannel",
        "legacy-schannel",
        "java17",
        "boringssl",
        "lenient",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    v.push(format!("max-handshake={ONE_RECORD_BODY}"));
    v.push(format!("max-handshake={MAX_HANDSHAKE_N}"));
    if let Ok(p) = p {
        // The exact boundary: a limit equal to B passes, B - 1 fails.
        v.push(format!("max-handshake={}", p.body));
        v.push(format!("max-handshake={}", p.body - 1));
    }
    v
}

/// Runs the rows (PARALLEL servers at once), prints the table, and fails on
/// any disagreement.
async fn run_rows(
    title: &str,
    jobs: Vec<(Arc<StoreCase>, Policy, usize)>,
    fixed: Fixed,
) -> Vec<Row> {
    let tpl = Arc::new(
        tokio::task::spawn_blocking(template)
            .await
            .expect("template"),
    );
    let limit = Arc::new(Semaphore::new(PARALLEL));
    let mut handles = Vec::new();
    for (store, policy, max_fragment) in jobs {
        let profiles = profiles_for(&plan(&store, policy, fixed, max_fragment));
        let (limit, tpl) = (limit.clone(), tpl.clone());
        handles.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await.expect("semaphore");
            run_row(store, policy, max_fragment, profiles, fixed, tpl).await
        }));
    }
    let mut rows = Vec::new();
    for h in handles {
        rows.push(h.await.expect("row task"));
    }
    print_table(title, &rows, fixed);
    let mut failures = Vec::new();
    for r in &rows {
        for s in &r.start {
            failures.push(format!(
                "[{} / {} / frag {}] {s}",
                r.store.label, r.policy, r.max_fragment
            ));
        }
        for c in &r.cells {
            for p in &c.problems {
                failures.push(format!(
                    "[{} / {} / frag {} / {}] {p}",
                    r.store.label, r.policy, r.max_fragment, c.profile
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreement(s) between prediction and measurement:\n{}",
        failures.len(),
        failures.join("\n")
    );
    rows
}

fn short(profile: &str, p: &Result<Plan, usize>) -> String {
    match (profile.strip_prefix("max-handshake="), p) {
        (Some(n), Ok(p)) if n == p.body.to_string() => "mh=B".into(),
        (Some(n), Ok(p)) if n == (p.body - 1).to_string() => "mh=B-1".into(),
        (Some(n), _) => format!("mh={n}"),
        (None, _) => profile.replace("legacy-schannel", "legacy"),
    }
}

fn print_table(title: &str, rows: &[Row], fixed: Fixed) {
    let mut out = String::new();
    out.push_str(&format!(
        "\n{title}\nS = {} signature schemes (server configuration); B = {} + L; \
         cell = predicted outcome, `P≠M!` when the measurement differs, `*` = either allowed\n",
        fixed.sig_schemes,
        fixed.body(0)
    ));
    let profile_cols = [
        "schannel",
        "legacy",
        "java17",
        "boringssl",
        "lenient",
        "mh=16384",
        "mh=20000",
        "mh=B",
        "mh=B-1",
    ];
    out.push_str(&format!(
        "{:<16} {:>5} {:>7} {:<8} {:>5} {:>6} {:>6} {:>3} {:>5}",
        "store", "roots", "LEN", "policy", "frag", "L", "B", "rec", "names"
    ));
    for c in profile_cols {
        out.push_str(&format!(" {c:>10}"));
    }
    out.push_str("   time\n");
    for r in rows {
        let (l, b, rec, names) = match &r.plan {
            Ok(p) => (
                p.list.to_string(),
                p.body.to_string(),
                p.records.to_string(),
                format!(
                    "{}{}",
                    p.names,
                    if p.ca_sent || p.names == 0 { "" } else { "-" }
                ),
            ),
            Err(total) => (total.to_string(), "-".into(), "-".into(), "-".into()),
        };
        out.push_str(&format!(
            "{:<16} {:>5} {:>7} {:<8} {:>5} {:>6} {:>6} {:>3} {:>5}",
            r.store.label,
            r.store.store.len(),
            r.store.len_text(),
            r.policy.to_string(),
            r.max_fragment,
            l,
            b,
            rec,
            names
        ));
        if r.plan.is_err() {
            out.push_str(&format!(
                "  refused at start (list {} > {TLS12_LIST}){}",
                r.store.total(),
                if r.start.is_empty() {
                    ", as predicted"
                } else {
                    ""
                }
            ));
        }
        for col in profile_cols {
            let Some(c) = r.cells.iter().find(|c| short(&c.profile, &r.plan) == col) else {
                if r.plan.is_ok() {
                    out.push_str(&format!(" {:>10}", "."));
                }
                continue;
            };
            let first = c
                .expect
                .first()
                .map(ToString::to_string)
                .unwrap_or_default();
            let text = if !c.expect.contains(&c.measured) {
                format!("{first}≠{}!", c.measured)
            } else if c.expect.len() > 1 {
                format!("{}*", c.measured)
            } else {
                first
            };
            out.push_str(&format!(" {text:>10}"));
        }
        out.push_str(&format!("  {:>5.1}s\n", r.elapsed.as_secs_f64()));
    }
    out.push_str(
        "names: names sent (`-` suffix: the enterprise CA is not among them); \
         roots include the CA; LEN `a+b`: one filler root of fixed:b before the CA\n",
    );
    let mut ends: Vec<(String, String)> = rows
        .iter()
        .flat_map(|r| &r.cells)
        .map(|c| {
            let class = match c.measured {
                Outcome::MaxBody(_) => "body>N".to_owned(),
                ref o => o.to_string(),
            };
            (class, c.server_end.clone())
        })
        .collect();
    ends.sort();
    ends.dedup();
    out.push_str("how the server saw each client outcome end:\n");
    for (outcome, end) in ends {
        out.push_str(&format!("  {outcome:<12} server handshake {end}\n"));
    }
    eprintln!("{out}");
}

/// Builds the stores whose full list sits at and just past each limit.
fn stores(fixed: Fixed, pki: &'static LabPki, only: &[&str]) -> Vec<Arc<StoreCase>> {
    let ca_cost = 2 + anchor_subject(pki).len();
    let one_record = RECORD_PLAINTEXT - HANDSHAKE_HEADER - fixed.body(0);
    let sixteen_k = ONE_RECORD_BODY - fixed.body(0);
    let java = JAVA_BODY - fixed.body(0);
    let targets: Vec<(&str, usize, bool)> = vec![
        ("small", 4_000, true),
        ("1-record at", one_record, true),
        ("1-record above", one_record + 1, false),
        ("16k body at", sixteen_k, true),
        ("16k body above", sixteen_k + 1, false),
        ("schannel at", SCHANNEL_LIST, true),
        ("schannel above", SCHANNEL_LIST + 1, false),
        ("java at", java, true),
        ("java above", java + 1, false),
        ("tls-cap at", TLS12_LIST, true),
        ("tls-cap above", TLS12_LIST + 1, false),
    ];
    targets
        .into_iter()
        .filter(|(label, ..)| only.is_empty() || only.contains(label))
        .map(|(label, target, at_most)| {
            let case = StoreCase::build(label, pki, find_size(target, ca_cost, at_most));
            let ok = if at_most {
                case.total() <= target
            } else {
                case.total() >= target
            };
            assert!(ok, "{label}: list {} misses target {target}", case.total());
            if case.total() != target {
                eprintln!(
                    "note: {label}: no fixed:LEN store hits {target} exactly; using {}",
                    case.total()
                );
            }
            Arc::new(case)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_profile_and_policy_gives_the_predicted_outcome() {
    let started = Instant::now();
    let fixed = Fixed::of_server();
    let stores = tokio::task::spawn_blocking(move || stores(fixed, pki(), &[]))
        .await
        .expect("stores");
    let built = started.elapsed();
    // The stores must straddle the limits they are named after.
    for s in &stores {
        let full = fixed.body(s.total());
        eprintln!(
            "store {:<16} {:>4} x fixed:{:<4}{} + CA: list {:>6}, full body {:>6}",
            s.label,
            s.roots,
            s.len,
            s.filler
                .map_or(String::new(), |f| format!(" + 1 x fixed:{f}")),
            s.total(),
            full
        );
    }
    let mut jobs = Vec::new();
    for s in &stores {
        for policy in [Policy::Full, Policy::Schannel, Policy::Omit] {
            jobs.push((s.clone(), policy, DEFAULT_FRAGMENT));
        }
    }
    let rows = run_rows(
        "profile x policy matrix (TLS 1.2, per-message layout, 16,389-byte records)",
        jobs,
        fixed,
    )
    .await;
    let cells: usize = rows.iter().map(|r| r.cells.len()).sum();
    let refused = rows.iter().filter(|r| r.plan.is_err()).count();
    eprintln!(
        "{cells} submissions and {refused} refused start(s) matched the prediction; \
         stores built in {:.1}s, total {:.1}s",
        built.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    // Every outcome class the matrix is about occurred at least once.
    let seen = |o: &Outcome| rows.iter().flat_map(|r| &r.cells).any(|c| &c.measured == o);
    for o in [
        Outcome::Delivered,
        Outcome::NoCertificate,
        Outcome::OneRecord,
        Outcome::MaxBody(JAVA_BODY),
        Outcome::MaxBody(ONE_RECORD_BODY),
        Outcome::MaxBody(SCHANNEL_CLIENT_BODY),
        Outcome::OwnStack,
    ] {
        assert!(seen(&o), "no cell measured {o}");
    }
    assert!(
        refused >= 1,
        "the full list past 65,535 bytes was never refused"
    );
}

/// The stores where the issuer decision turns (a small list, and the
/// Schannel cut just keeping and just dropping the anchor), in the two other
/// PKI shapes: two-tier (the store holds the root, the UM sends leaf +
/// issuing CA; issuer-listed clients walk the chain to the root) and
/// self-signed (the store holds the UM's own certificate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issuer_decision_holds_in_every_pki_shape() {
    let fixed = Fixed::of_server();
    for shape in [Shape::TwoTier, Shape::SelfSigned] {
        let lab = pki_of(shape);
        let stores = tokio::task::spawn_blocking(move || {
            stores(fixed, lab, &["small", "schannel at", "schannel above"])
        })
        .await
        .expect("stores");
        assert_eq!(stores.len(), 3, "{shape}");
        let jobs = stores
            .iter()
            .flat_map(|s| {
                [Policy::Full, Policy::Schannel, Policy::Omit]
                    .map(|policy| (s.clone(), policy, DEFAULT_FRAGMENT))
            })
            .collect();
        let rows = run_rows(&format!("{shape} PKI: issuer decision"), jobs, fixed).await;
        let cells: Vec<&Outcome> = rows
            .iter()
            .flat_map(|r| &r.cells)
            .map(|c| &c.measured)
            .collect();
        assert!(cells.contains(&&Outcome::Delivered), "{shape}");
        assert!(cells.contains(&&Outcome::NoCertificate), "{shape}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_fragment_4096_splits_the_request_for_legacy_schannel() {
    const FRAGMENT: usize = 4_096;
    let fixed = Fixed::of_server();
    let ca_cost = 2 + anchor_subject(pki()).len();
    // A message of exactly 4,091 bytes fills one 4,096-byte record; 4,092 needs two.
    let at = FRAGMENT - RECORD_HEADER - HANDSHAKE_HEADER - fixed.body(0);
    let stores = tokio::task::spawn_blocking(move || {
        [
            ("frag-4096 at", at, true),
            ("frag-4096 above", at + 1, false),
        ]
        .into_iter()
        .map(|(label, target, at_most)| {
            Arc::new(StoreCase::build(
                label,
                pki(),
                find_size(target, ca_cost, at_most),
            ))
        })
        .collect::<Vec<_>>()
    })
    .await
    .expect("stores");
    let jobs = stores
        .iter()
        .flat_map(|s| {
            [
                (s.clone(), Policy::Full, FRAGMENT),
                (s.clone(), Policy::Full, DEFAULT_FRAGMENT),
            ]
        })
        .collect();
    let rows = run_rows("--max-fragment 4096 (per-message layout)", jobs, fixed).await;
    let legacy = |label: &str, frag: usize| {
        let row = rows
            .iter()
            .find(|r| r.store.label == label && r.max_fragment == frag)
            .expect("row");
        let cell = row
            .cells
            .iter()
            .find(|c| c.profile == "legacy-schannel")
            .expect("legacy cell");
        (
            row.plan.map(|p| p.body + HANDSHAKE_HEADER),
            cell.measured.clone(),
        )
    };
    let (msg_at, at_outcome) = legacy("frag-4096 at", FRAGMENT);
    let (msg_above, above_outcome) = legacy("frag-4096 above", FRAGMENT);
    assert_eq!(msg_at, Ok(4_091), "the `at` store's message");
    assert_eq!(at_outcome, Outcome::Delivered);
    assert!(msg_above.is_ok_and(|m| m > 4_091), "{msg_above:?}");
    assert_eq!(above_outcome, Outcome::OneRecord);
    assert_eq!(
        legacy("frag-4096 above", DEFAULT_FRAGMENT).1,
        Outcome::Delivered
    );
}
