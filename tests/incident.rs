//! The incident, end to end over real TCP and TLS: a Hub whose store holds 355
//! realistic roots with the enterprise CA enumerated last, under the Schannel
//! policy, leaves every voicemail queued with UM event 1423 and Schannel event
//! 36885; SendTrustedIssuerList = 0 (`omit`) delivers them all, each stored
//! message carrying its audio and the voicemail headers. Each runs in the
//! three lab PKI shapes: one-tier, two-tier (the store holds the root, the UM
//! sends leaf + issuing CA) and self-signed (the store holds the UM's own
//! certificate).

mod common;

use std::sync::{Arc, Mutex};

use certgen::Profile;
use certgen::pki::Shape;
use common::{EVENT_TIMEOUT, files_in, pki_of, start_server_for, store_for};
use lab_server::policy::Policy;
use um_sim::queue::{EnqueueSpec, Queue, enqueue};
use um_sim::submit::{self, Summary};

const VOICEMAILS: u64 = 4;

/// What um-sim's submitter did: its summary and the lines it reported (the
/// UM events a `um-sim submit` run prints).
struct Submitted {
    summary: Summary,
    lines: Vec<String>,
}

impl Submitted {
    fn text(&self) -> String {
        self.lines.join("\n")
    }
}

async fn run(policy: Policy, shape: Shape) -> (common::Lab, Submitted, tempfile::TempDir) {
    // 354 realistic roots + the enterprise anchor last = the incident's 355.
    let pki = pki_of(shape);
    let (store, ca) = store_for(pki, 354, Profile::Realistic);
    assert_eq!(store.len(), 355);
    let lab = start_server_for(pki, store, ca, |s| s.policy.policy = policy)
        .await
        .expect("lab-server starts");
    let q = tempfile::tempdir().expect("queue dir");
    let queue_dir = q.path().join("vm");
    let queue = tokio::task::spawn_blocking(move || {
        let queue = Queue::open(&queue_dir).expect("queue");
        let spec = EnqueueSpec {
            count: VOICEMAILS,
            seconds: 2,
            to: "user@lab.test".into(),
            seed: 1423,
            sample_rate: 8_000,
        };
        enqueue(&queue, &spec).expect("enqueue");
        queue
    })
    .await
    .expect("enqueue thread");
    let settings = Arc::new(lab.submit_settings("schannel", 1));
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let report: submit::Report = Arc::new(move |line: String| {
        if let Ok(mut l) = sink.lock() {
            l.push(line);
        }
    });
    let mut cooling = std::collections::HashMap::new();
    let summary = submit::pass(&queue, &settings, &mut cooling, &report, &|_| {})
        .await
        .expect("a pass over the queue");
    let lines = lines.lock().map(|l| l.clone()).unwrap_or_default();
    (lab, Submitted { summary, lines }, q)
}

fn count(dir: &std::path::Path, ext: &str) -> usize {
    files_in(dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn schannel_policy_leaves_every_voicemail_queued_with_1423() {
    for shape in Shape::ALL {
        schannel_policy_in(shape).await;
    }
}

async fn schannel_policy_in(shape: Shape) {
    let (mut lab, submit, q) = run(Policy::Schannel, shape).await;
    let queue = q.path().join("vm");
    let report = lab.server.report().clone();
    assert!(
        report.truncated && report.list_bytes <= 16_384,
        "{report:?}"
    );
    assert_eq!(report.named, [("ca".to_owned(), None)], "the CA is dropped");
    assert!(
        lab.server
            .startup_log()
            .iter()
            .any(|l| l.contains("Event ID:      36885"))
    );
    let text = submit.text();
    assert_eq!(
        (submit.summary.delivered, submit.summary.queued),
        (0, VOICEMAILS as usize),
        "{shape}: {text}"
    );
    assert_eq!(
        text.matches("Event ID:      1423").count(),
        VOICEMAILS as usize,
        "{shape}: {text}"
    );
    assert!(
        text.contains("TlsApiFailureException: A TLS API failure occurred. Error = 0x80090301"),
        "{shape}: {text}"
    );
    assert_eq!(
        count(&queue, "txt"),
        VOICEMAILS as usize,
        "all still queued"
    );
    assert_eq!(count(&queue, "wav"), VOICEMAILS as usize);
    assert_eq!(count(&queue.join("sent"), "txt"), 0);
    for _ in 0..VOICEMAILS {
        let ev = lab.next_event(EVENT_TIMEOUT).await.expect("a server event");
        let hs = ev.handshake.as_ref().expect("handshake");
        assert_eq!(hs.outcome, "failed", "{ev:#?}");
        assert!(ev.client_certificate.is_none() && ev.stored.is_empty());
        let cr = ev.certificate_request.as_ref().expect("the request sent");
        assert_eq!((cr.ca_names, cr.bytes), (report.kept, report.message_bytes));
    }
    assert!(files_in(&lab.maildir().join("new")).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn omit_delivers_every_voicemail_with_audio_and_headers() {
    for shape in Shape::ALL {
        omit_in(shape).await;
    }
}

async fn omit_in(shape: Shape) {
    let (mut lab, submit, q) = run(Policy::Omit, shape).await;
    let queue = q.path().join("vm");
    assert_eq!(lab.server.report().kept, 0);
    assert!(
        lab.server.startup_log().is_empty(),
        "no 36885 without truncation"
    );
    let text = submit.text();
    assert_eq!(
        (
            submit.summary.delivered,
            submit.summary.queued,
            submit.summary.bad
        ),
        (VOICEMAILS as usize, 0, 0),
        "{shape}: {text}"
    );
    assert!(!text.contains("Event ID:"), "{text}");
    assert_eq!(count(&queue, "txt"), 0);
    assert_eq!(count(&queue.join("sent"), "txt"), VOICEMAILS as usize);
    for _ in 0..VOICEMAILS {
        let ev = lab.next_event(EVENT_TIMEOUT).await.expect("a server event");
        assert_eq!(ev.stored.len(), 1, "{ev:#?}");
        let vm = &ev.stored[0].voicemail;
        assert!(vm.well_formed_voicemail, "{vm:?}");
        assert_eq!(vm.content_class.as_deref(), Some("voice-ca"));
        assert_eq!(vm.audio_attachments, 1);
        assert!(
            ev.client_certificate
                .as_ref()
                .is_some_and(|c| c.subject.contains("um.lab.test"))
        );
    }
    let stored = files_in(&lab.maildir().join("new"));
    assert_eq!(stored.len(), VOICEMAILS as usize);
    for f in stored {
        let text = std::fs::read_to_string(&f).expect("stored message");
        for header in [
            "X-CallingTelephoneNumber:",
            "X-VoiceMessageSenderName:",
            "X-CallID:",
            "X-VoiceMessageDuration: 2",
            "X-AttachmentOrder:",
            "Content-Type: audio/wav",
        ] {
            assert!(text.contains(header), "{header} missing in {}", f.display());
        }
    }
}
