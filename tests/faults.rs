//! um-sim against lab-server with faults injected: the retry, badvoicemail
//! and event paths of the submitter (a 4yz reply and a broken handshake are
//! retried, a 5yz reply moves the item to badvoicemail/ at once), @p faults
//! firing exactly as the pure decision says for a fixed seed, and a real
//! one-record client (Mbed TLS 2.28) failing on a fragmented
//! CertificateRequest that OpenSSL reassembles.

mod common;
#[allow(dead_code)]
#[path = "clients/probe.rs"]
mod probe;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certgen::Profile;
use common::{EVENT_TIMEOUT, Lab, start_server_for, store_with};
use lab_server::faults::{self, Scope};
use serde_json::Value;
use um_sim::header::Header;
use um_sim::queue::{EnqueueSpec, Queue};
use um_sim::submit::{Report, SubmitSettings, Summary};

/// lab-server with `specs` injected (seed `seed`) and a store of 5 roots.
async fn lab_with(specs: &[&str], seed: u64) -> Lab {
    let (store, ca) = store_with(5, Profile::Realistic);
    let faults = faults::parse_all(specs).expect("fault specs");
    start_server_for(common::pki(), store, ca, move |s| {
        s.faults = faults;
        s.fault_seed = Some(seed);
    })
    .await
    .expect("lab-server")
}

/// A queue of `count` voicemails and the submitter's settings for `lab`:
/// no wait between passes, attempts recorded in `events.jsonl`.
struct Submitter {
    queue: Queue,
    settings: Arc<SubmitSettings>,
    cooling: HashMap<String, std::time::Instant>,
    reports: Arc<Mutex<Vec<String>>>,
    dir: PathBuf,
}

impl Submitter {
    fn new(lab: &Lab, count: u64, tweak: impl FnOnce(&mut SubmitSettings)) -> Submitter {
        let dir = lab.dir.path().join("um");
        let queue = Queue::open(&dir.join("q")).expect("queue");
        let spec = EnqueueSpec {
            count,
            seconds: 1,
            to: "user@lab.test".into(),
            seed: 11,
            sample_rate: 8_000,
        };
        um_sim::queue::enqueue(&queue, &spec).expect("enqueue");
        let mut settings = lab.submit_settings("schannel", 1);
        settings.retry_delay = Duration::ZERO;
        settings.events_file = Some(dir.join("events.jsonl"));
        tweak(&mut settings);
        Submitter {
            queue,
            settings: Arc::new(settings),
            cooling: HashMap::new(),
            reports: Arc::new(Mutex::new(Vec::new())),
            dir,
        }
    }

    /// One `um-sim submit` pass over the queue.
    async fn pass(&mut self) -> Summary {
        let reports = self.reports.clone();
        let report: Report = Arc::new(move |line| reports.lock().unwrap().push(line));
        self.cooling.clear();
        um_sim::submit::pass(
            &self.queue,
            &self.settings,
            &mut self.cooling,
            &report,
            &|_| {},
        )
        .await
        .expect("a pass over the queue")
    }

    /// The attempt records so far.
    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON record"))
            .collect()
    }

    fn folder(&self, sub: &str) -> PathBuf {
        self.queue.dir().join(sub)
    }

    fn reasons(&self) -> Vec<String> {
        common::files_in(&self.folder("badvoicemail"))
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".reason.txt"))
            .map(|p| std::fs::read_to_string(p).expect("reason"))
            .collect()
    }
}

fn header_in(dir: &Path) -> Header {
    let file = common::files_in(dir)
        .into_iter()
        .find(|p| {
            p.extension().is_some_and(|x| x == "txt") && !p.to_string_lossy().contains(".reason")
        })
        .expect("a header file");
    Header::parse(&std::fs::read_to_string(file).expect("header")).expect("a header")
}

/// Checks a failed first attempt (queued, `class`, `event`), then a second
/// pass that delivers with attempt number 2.
async fn retried_then_delivered(
    mut lab: Lab,
    class: &str,
    event: u64,
    reply: Option<u16>,
) -> Vec<Value> {
    let mut um = Submitter::new(&lab, 1, |_| {});
    retried_then_delivered_with(&mut lab, &mut um, class, event, reply).await
}

async fn retried_then_delivered_with(
    lab: &mut Lab,
    um: &mut Submitter,
    class: &str,
    event: u64,
    reply: Option<u16>,
) -> Vec<Value> {
    let first = um.pass().await;
    assert_eq!(
        first,
        Summary {
            delivered: 0,
            queued: 1,
            bad: 0
        },
        "{:?}",
        um.records()
    );
    let r = um.records();
    assert_eq!(r[0]["failure"], class, "{:?}", r[0]);
    assert_eq!(r[0]["event_id"], event);
    assert_eq!(r[0]["disposition"], "queued");
    assert_eq!(r[0]["reply_code"], serde_json::json!(reply));
    let printed = um.reports.lock().unwrap().join("\n");
    assert!(
        printed.contains(&format!("Event ID:      {event}")),
        "{printed}"
    );
    assert!(printed.contains("will be retried"), "{printed}");
    assert_eq!(header_in(&um.folder("")).attempts, 1);
    let ev = lab.next_event(EVENT_TIMEOUT).await.expect("server event");
    assert_eq!(ev.faults.len(), 1, "{:?}", ev.faults);

    let second = um.pass().await;
    assert_eq!(
        second,
        Summary {
            delivered: 1,
            queued: 0,
            bad: 0
        }
    );
    let r = um.records();
    assert_eq!(r[1]["attempt_number"], 2);
    assert_eq!(r[1]["disposition"], "sent");
    // The failed attempt is in the delivered item's header.
    assert_eq!(header_in(&um.folder("sent")).attempts, 1);
    let ev = lab.next_event(EVENT_TIMEOUT).await.expect("server event");
    assert!(ev.faults.is_empty(), "{:?}", ev.faults);
    assert_eq!(ev.stored.len(), 1);
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn a_451_at_data_is_queued_with_1185_and_the_retry_delivers() {
    let lab = lab_with(&["smtp:data:451@nth=1"], 1).await;
    let r = retried_then_delivered(lab, "smtp-reply", 1185, Some(451)).await;
    let error = r[0]["error"].as_str().unwrap();
    assert!(error.contains("451 4.3.0"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_421_at_mail_is_retried() {
    let lab = lab_with(&["smtp:mail:421@nth=1"], 1).await;
    let r = retried_then_delivered(lab, "smtp-reply", 1185, Some(421)).await;
    let error = r[0]["error"].as_str().unwrap();
    assert!(error.contains("MAIL answered 421 4.3.2"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_550_at_rcpt_goes_to_badvoicemail_at_once_with_the_reply() {
    let mut lab = lab_with(&["smtp:rcpt:550"], 1).await;
    let mut um = Submitter::new(&lab, 1, |s| s.max_attempts = 10);
    let first = um.pass().await;
    assert_eq!(
        first,
        Summary {
            delivered: 0,
            queued: 0,
            bad: 1
        }
    );
    let r = um.records();
    assert_eq!(r[0]["disposition"], "badvoicemail");
    assert_eq!(r[0]["event_id"], 1185);
    assert_eq!(r[0]["reply_code"], 550);
    let reasons = um.reasons();
    assert_eq!(reasons.len(), 1);
    assert!(
        reasons[0].starts_with(um_sim::submit::PERMANENT)
            && reasons[0].contains("RCPT answered 550 5.7.1"),
        "{reasons:?}"
    );
    let printed = um.reports.lock().unwrap().join("\n");
    assert!(printed.contains("will not be retried"), "{printed}");
    assert_eq!(header_in(&um.folder("badvoicemail")).attempts, 1);
    assert!(
        common::files_in(&um.folder("")).is_empty(),
        "left in the queue"
    );
    let ev = lab.next_event(EVENT_TIMEOUT).await.expect("server event");
    assert_eq!(ev.faults, ["smtp:rcpt:550 at RCPT, message 1"]);
    assert!(ev.stored.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn close_after_request_is_a_tls_failure_and_retried() {
    let lab = lab_with(&["tls:close-after-request@nth=1"], 1).await;
    let r = retried_then_delivered(lab, "tls", 1423, None).await;
    assert_eq!(r[0]["handshake"], "failed");
    // The client read the request before the close.
    assert!(r[0]["certificate_request"].is_object(), "{:?}", r[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delay_past_the_client_timeout_is_a_tls_failure_and_retried() {
    let mut lab = lab_with(&["tls:delay-before-done=2500@nth=1"], 1).await;
    let mut um = Submitter::new(&lab, 1, |s| {
        s.client.io_timeout = Duration::from_millis(1_000);
    });
    let r = retried_then_delivered_with(&mut lab, &mut um, "tls", 1423, None).await;
    let error = r[0]["error"].as_str().unwrap();
    assert!(error.contains("no progress within 1s"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn p_faults_fire_as_the_pure_decision_says_for_a_fixed_seed() {
    const N: u64 = 12;
    const SEED: u64 = 20_261_130;
    let specs = ["smtp:data:451@p=0.5"];
    let set = faults::parse_all(&specs).unwrap();
    let expected: Vec<u64> = (1..=N)
        .filter(|&n| {
            !faults::decide(&set, Scope::Message, n, |i| {
                faults::draw(SEED, Scope::Message, n, i)
            })
            .is_empty()
        })
        .collect();
    let fired = expected.len();
    eprintln!("seed {SEED}: smtp:data:451@p=0.5 fires at messages {expected:?} of 1..={N}");
    assert!(
        (1..N as usize).contains(&fired),
        "seed {SEED} fires {fired} of {N}: pick a seed that tells the cases apart"
    );
    let lab = lab_with(&specs, SEED).await;
    let mut um = Submitter::new(&lab, N, |_| {});
    let summary = um.pass().await;
    assert_eq!(
        summary,
        Summary {
            delivered: N as usize - fired,
            queued: fired,
            bad: 0
        },
        "expected fired at messages {expected:?}"
    );
    let view = lab.server.faults().lock().view();
    assert_eq!(view.messages, N);
    assert_eq!(view.faults[0].fired, fired as u64);
    let failed = um
        .records()
        .iter()
        .filter(|r| r["reply_code"] == 451)
        .count();
    assert_eq!(failed, fired);
}

/// Runs the probe of `stack` against `lab` with the UM's files; `None` when
/// the tool is missing outside CI (the reason printed).
async fn probe_run(
    lab: &mut Lab,
    stack: &str,
) -> Option<(probe::Report, lab_server::events::ConnectionEvent)> {
    let script = match probe::ready(stack) {
        Ok(s) => s,
        Err(probe::Unavailable::Missing(why)) if !probe::under_ci() => {
            eprintln!("skipped the {stack} probe: {why}");
            return None;
        }
        Err(probe::Unavailable::Missing(why) | probe::Unavailable::Broken(why)) => {
            panic!("the {stack} probe cannot run: {why}")
        }
    };
    let dir = lab.dir.path().join("pki");
    lab.pki.save(&dir).expect("PKI files");
    let port = lab.addr().port();
    let report = tokio::task::spawn_blocking(move || {
        let files = probe::Files {
            chain: &dir.join("um.pem"),
            key: &dir.join("um.key"),
            ca: &dir.join("ca.pem"),
        };
        probe::run(&script, port, &files, "1.2")
    })
    .await
    .expect("probe thread")
    .unwrap_or_else(|e| panic!("{stack} probe: {e}"));
    let event = lab.next_event(EVENT_TIMEOUT).await.expect("server event");
    Some((report, event))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fragmented_request_breaks_mbedtls_2_28_and_openssl_reassembles_it() {
    let (store, ca) = store_with(10, Profile::Realistic);
    let mut lab = start_server_for(common::pki(), store, ca, |_| {})
        .await
        .expect("lab-server");
    let size = lab.server.report().message_bytes;
    assert!(
        size > 512,
        "the request ({size} bytes) must span records of 512"
    );
    eprintln!(
        "CertificateRequest {size} bytes: {} records of at most 512",
        size.div_ceil(512)
    );
    // Without the fault the request is one record, and Mbed TLS takes it.
    if let Some((report, ev)) = probe_run(&mut lab, "mbedtls").await {
        assert_eq!(report.outcome, "delivered", "{report:?}");
        assert_eq!(ev.certificate_request.map(|c| c.records), Some(1));
    }
    lab.server
        .faults()
        .lock()
        .replace(faults::parse_all(&["tls:fragment-request=512"]).unwrap())
        .expect("an applicable fault");

    if let Some((report, ev)) = probe_run(&mut lab, "mbedtls").await {
        eprintln!("mbedtls: {report:?}");
        assert_eq!(report.outcome, "tls_failed", "{report:?}");
        assert!(report.error.contains("-0x7080"), "{report:?}");
        let info = ev.certificate_request.expect("request info");
        assert_eq!(info.records, size.div_ceil(512));
        assert_eq!(ev.faults, ["tls:fragment-request=512 at handshake 2"]);
        assert_eq!(ev.handshake.map(|h| h.outcome), Some("failed"));
    }
    if let Some((report, ev)) = probe_run(&mut lab, "openssl").await {
        eprintln!("openssl: {report:?}");
        assert_eq!(report.outcome, "delivered", "{report:?}");
        let info = ev.certificate_request.expect("request info");
        assert_eq!(info.records, size.div_ceil(512));
        assert!(
            ev.faults
                .iter()
                .all(|f| f.starts_with("tls:fragment-request=512"))
        );
        assert_eq!(ev.stored.len(), 1);
    }
}
