//! `kill -9` of a submit never loses a voicemail.
//!
//! lab-server runs in-process with policy `omit` (so every delivery works);
//! a um-sim submitter (`concurrency 2`) drains a queue of voicemails of a few
//! seconds each and is killed with SIGKILL while it submits (after the
//! server reported a random-ish number of stored messages, plus a random-ish
//! delay), several rounds in a row; a last run drains the queue. After each
//! kill every voicemail is in the server's Maildir or still queued (header and
//! audio); at the end every one is in the Maildir and in `sent/`, the queue is
//! empty, and duplicates (the same Message-ID stored twice: delivered, then
//! killed before leaving the queue) are counted, never lost.
//!
//! The submitter must be a process of its own to be killed, yet the root
//! package cannot name um-sim's binary (`CARGO_BIN_EXE_*` covers only its own
//! binaries) and a test must not run a nested `cargo build`. So this test
//! binary (harness = false) re-executes itself with `UMLAB_CRASH_CHILD` set:
//! `main` then runs um-sim's library exactly as `um-sim submit` does (one
//! `submit::pass` over the queue, exit 0 when it is drained, 1 otherwise)
//! instead of the tests.
//!
//! `UMLAB_CRASH_SEED=N` replays the kill schedule of a run.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Lab, Rng, Running, files_in, start_server, store_with};
use lab_server::policy::Policy;
use libtest_mimic::{Arguments, Trial};
use um_sim::header::Header;
use um_sim::queue::{EnqueueSpec, Queue, enqueue};
use um_sim::submit;

/// Set in the environment of the re-executed test binary: be the submitter.
const CHILD_ENV: &str = "UMLAB_CRASH_CHILD";

/// Voicemails queued.
const ITEMS: u64 = 60;
/// Seconds of audio each (8 kHz, 16-bit: 64 KB of WAV, ~88 KB of message).
const SECONDS: u32 = 4;
/// Rounds ended by SIGKILL before the last run.
const KILL_ROUNDS: usize = 6;
/// Deadline for one round, and for the last run.
const ROUND_DEADLINE: Duration = Duration::from_secs(180);
/// Domain of the Message-IDs (um-sim's default sender is um@um.lab.test).
const MSGID_DOMAIN: &str = "um.lab.test";

/// What the Maildir holds: Message-ID -> stored copies, and the X-CallID of
/// each stored copy.
#[derive(Default)]
struct Stored {
    copies: BTreeMap<String, usize>,
    call_ids: BTreeMap<String, Vec<String>>,
    files: usize,
    unreadable: Vec<String>,
}

impl Stored {
    fn duplicates(&self) -> usize {
        self.copies.values().map(|n| n - 1).sum()
    }

    fn has(&self, guid: &str) -> bool {
        self.copies.contains_key(&message_id(guid))
    }
}

fn message_id(guid: &str) -> String {
    um_sim::message::message_id(guid, MSGID_DOMAIN)
}

/// A header's value in a stored message (unfolded, first occurrence).
fn header_value(head: &str, name: &str) -> Option<String> {
    let mut lines = head.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if !k.eq_ignore_ascii_case(name) {
            continue;
        }
        let mut value = v.trim().to_owned();
        while let Some(next) = lines.peek() {
            if next.starts_with([' ', '\t']) {
                value.push(' ');
                value.push_str(next.trim());
                lines.next();
            } else {
                break;
            }
        }
        return Some(value);
    }
    None
}

fn scan_maildir(maildir: &Path) -> Stored {
    let mut s = Stored::default();
    for sub in ["new", "cur"] {
        for f in files_in(&maildir.join(sub)) {
            s.files += 1;
            let bytes = std::fs::read(&f).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            let head = text.split("\r\n\r\n").next().unwrap_or_default();
            match header_value(head, "Message-ID") {
                Some(id) => {
                    *s.copies.entry(id.clone()).or_default() += 1;
                    if let Some(call) = header_value(head, "X-CallID") {
                        s.call_ids.entry(id).or_default().push(call);
                    }
                }
                None => s.unreadable.push(f.display().to_string()),
            }
        }
    }
    s
}

/// The queue folder as it stands.
struct QueueState {
    /// GUIDs with header and audio in the queue.
    queued: BTreeSet<String>,
    /// GUIDs with header and audio in sent/.
    sent: BTreeSet<String>,
    /// Files of the queue folder that are neither (e.g. audio whose header
    /// already moved to sent/).
    odd: Vec<String>,
    /// Temporary files (`.um-sim-*.tmp`) anywhere in the queue.
    tmp: Vec<String>,
    /// Files in badvoicemail/.
    bad: Vec<String>,
}

fn scan_queue(dir: &Path, guids: &[String]) -> QueueState {
    let has = |d: &Path, g: &str, ext: &str| d.join(format!("{g}.{ext}")).is_file();
    let sent_dir = dir.join(um_sim::queue::SENT);
    let bad_dir = dir.join(um_sim::queue::BAD);
    let queued: BTreeSet<String> = guids
        .iter()
        .filter(|g| has(dir, g, "txt") && has(dir, g, "wav"))
        .cloned()
        .collect();
    let sent = guids
        .iter()
        .filter(|g| has(&sent_dir, g, "txt") && has(&sent_dir, g, "wav"))
        .cloned()
        .collect();
    let name = |p: &PathBuf| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut tmp = Vec::new();
    let mut odd = Vec::new();
    for d in [dir.to_owned(), sent_dir, bad_dir.clone()] {
        for f in files_in(&d) {
            let n = name(&f);
            if n.ends_with(".tmp") || n.starts_with('.') {
                tmp.push(f.display().to_string());
            } else if d == dir {
                let stem = n.rsplit_once('.').map_or(n.as_str(), |(s, _)| s);
                if !queued.contains(stem) {
                    odd.push(n);
                }
            }
        }
    }
    QueueState {
        queued,
        sent,
        odd,
        tmp,
        bad: files_in(&bad_dir).iter().map(name).collect(),
    }
}

/// Events the server reported: stored messages, and any that are not a
/// well-formed voicemail.
#[derive(Default)]
struct Seen {
    stored: usize,
    malformed: Vec<String>,
}

async fn drain_events(lab: &mut Lab, seen: &mut Seen, wait: Duration) -> usize {
    let mut n = 0;
    while let Some(ev) = lab.next_event(wait).await {
        for s in &ev.stored {
            n += 1;
            if !s.voicemail.well_formed_voicemail {
                seen.malformed.push(format!("{s:?}"));
            }
        }
    }
    seen.stored += n;
    n
}

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        std::process::exit(child_submit());
    }
    let args = Arguments::from_args();
    let trials = vec![Trial::test(
        "kill_9_during_submit_never_loses_a_voicemail",
        || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| format!("runtime: {e}"))?;
            rt.block_on(kill_9_during_submit_never_loses_a_voicemail());
            Ok(())
        },
    )];
    libtest_mimic::run(&args, trials).exit();
}

/// The child: `QUEUE SERVER` on the command line; submits the queue once as
/// `um-sim submit --profile schannel --concurrency 2` does and exits 0 when
/// it is drained, 1 when items remain, 2 on an error.
fn child_submit() -> i32 {
    let mut args = std::env::args().skip(1);
    let (Some(queue), Some(server)) = (args.next(), args.next()) else {
        eprintln!("usage: {CHILD_ENV}=1 <test binary> QUEUE SERVER");
        return 2;
    };
    let run = async {
        let settings = Arc::new(common::submit_settings(&server, "schannel", 2));
        let q = Queue::open(Path::new(&queue))?;
        let report: submit::Report = Arc::new(|line: String| println!("{line}"));
        let summary = submit::pass(&q, &settings, &mut HashMap::new(), &report, &|_| {}).await?;
        let (left, _) = q.scan()?;
        println!(
            "delivered {}, still queued {}, moved to badvoicemail/ {}",
            summary.delivered,
            left.len(),
            summary.bad
        );
        Ok::<_, um_sim::queue::QueueError>(left.is_empty() && summary.bad == 0)
    };
    match tokio::runtime::Runtime::new().map(|rt| rt.block_on(run)) {
        Ok(Ok(true)) => 0,
        Ok(Ok(false)) => 1,
        Ok(Err(e)) => {
            eprintln!("submit: {e}");
            2
        }
        Err(e) => {
            eprintln!("runtime: {e}");
            2
        }
    }
}

/// Starts the submitter: this test binary again, as the child.
fn spawn_submit(lab: &Lab, queue: &Path) -> Running {
    let exe = std::env::current_exe().expect("the test binary's path");
    common::start(
        Command::new(exe)
            .env(CHILD_ENV, "1")
            .arg(queue)
            .arg(lab.addr().to_string()),
    )
}

fn seed() -> u64 {
    std::env::var("UMLAB_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

/// Every GUID is in the Maildir or still queued with header and audio.
fn assert_nothing_lost(when: &str, guids: &[String], stored: &Stored, q: &QueueState) {
    let lost: Vec<&String> = guids
        .iter()
        .filter(|g| !stored.has(g) && !q.queued.contains(*g))
        .collect();
    assert!(
        lost.is_empty(),
        "{when}: {} voicemail(s) neither stored nor queued: {lost:?}\nodd files in the queue: {:?}",
        lost.len(),
        q.odd
    );
}

async fn kill_9_during_submit_never_loses_a_voicemail() {
    let started = Instant::now();
    let seed = seed();
    eprintln!("kill schedule seed {seed} (replay with UMLAB_CRASH_SEED={seed})");
    let mut rng = Rng::new(seed);

    let (store, ca) = store_with(100, certgen::Profile::Realistic);
    let mut lab = start_server(store, ca, |s| s.policy.policy = Policy::Omit)
        .await
        .expect("lab-server starts");
    let work = tempfile::tempdir().expect("temp dir");
    let queue = work.path().join("queue");
    let q = Queue::open(&queue).expect("queue");
    let spec = EnqueueSpec {
        count: ITEMS,
        seconds: SECONDS,
        to: "user@lab.test".into(),
        seed: seed ^ 0x5eed,
        sample_rate: 8_000,
    };
    let written = tokio::task::spawn_blocking(move || enqueue(&q, &spec))
        .await
        .expect("enqueue thread")
        .expect("enqueue");
    let guids: Vec<String> = written
        .iter()
        .map(|p| p.file_stem().expect("stem").to_string_lossy().into_owned())
        .collect();
    let call_ids: BTreeMap<String, String> = written
        .iter()
        .zip(&guids)
        .map(|(p, g)| {
            let text = std::fs::read_to_string(p).expect("header");
            let h = Header::parse(&text).expect("header parses");
            (g.clone(), h.call_id)
        })
        .collect();
    let wav_bytes = std::fs::metadata(queue.join(format!("{}.wav", guids[0])))
        .expect("wav")
        .len();
    eprintln!(
        "queued {ITEMS} voicemails of {SECONDS} s ({wav_bytes} bytes of WAV each) in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let mut seen = Seen::default();
    let mut kills = 0;
    let mut log = Vec::new();
    for round in 1..=KILL_ROUNDS {
        let threshold = rng.range(2, 8) as usize;
        let delay = Duration::from_millis(rng.range(0, 40));
        let round_started = Instant::now();
        let mut child = spawn_submit(&lab, &queue);
        let mut stored_round = 0;
        let mut killed = false;
        let status = loop {
            if let Some(status) = child.try_status() {
                break status;
            }
            if stored_round >= threshold {
                tokio::time::sleep(delay).await;
                let status = child.kill();
                // It may have exited on its own just before the signal.
                killed = status.signal() == Some(9);
                break status;
            }
            assert!(
                round_started.elapsed() < ROUND_DEADLINE,
                "round {round}: um-sim made no progress within {ROUND_DEADLINE:?}"
            );
            if let Some(ev) = lab.next_event(Duration::from_millis(20)).await {
                for s in &ev.stored {
                    stored_round += 1;
                    if !s.voicemail.well_formed_voicemail {
                        seen.malformed.push(format!("{s:?}"));
                    }
                }
            }
        };
        seen.stored += stored_round;
        // Connections the kill cut off end now; count what they stored.
        stored_round += drain_events(&mut lab, &mut seen, Duration::from_millis(300)).await;
        if killed {
            kills += 1;
        } else {
            let run = child.finish(ROUND_DEADLINE);
            assert!(
                status.code().is_some_and(|c| c <= 1),
                "round {round}: the submitter ended with {status:?}: {}",
                run.dump()
            );
        }
        let stored = scan_maildir(&lab.maildir());
        let qs = scan_queue(&queue, &guids);
        assert_nothing_lost(&format!("after round {round}"), &guids, &stored, &qs);
        let line = format!(
            "round {round}: {} after {} stored (+{} ms), {stored_round} stored this round; \
             Maildir {} files / {} distinct, {} duplicate(s); queued {}, sent {}, \
             odd files {:?}, tmp {:?}; {:.1}s",
            if killed {
                "SIGKILL".to_owned()
            } else {
                format!("finished before the kill ({status:?})")
            },
            threshold,
            delay.as_millis(),
            stored.files,
            stored.copies.len(),
            stored.duplicates(),
            qs.queued.len(),
            qs.sent.len(),
            qs.odd,
            qs.tmp,
            round_started.elapsed().as_secs_f64()
        );
        eprintln!("{line}");
        log.push(line);
        if qs.queued.is_empty() {
            break;
        }
    }

    // The last run drains the queue.
    let final_started = Instant::now();
    let mut child = spawn_submit(&lab, &queue);
    loop {
        if child.try_status().is_some() {
            break;
        }
        if final_started.elapsed() > ROUND_DEADLINE {
            let run = child.finish(Duration::ZERO);
            panic!(
                "the last run did not finish within {ROUND_DEADLINE:?}: {}",
                run.dump()
            );
        }
        drain_events(&mut lab, &mut seen, Duration::from_millis(50)).await;
    }
    drain_events(&mut lab, &mut seen, Duration::from_millis(300)).await;
    let run = child.finish(ROUND_DEADLINE);
    assert_eq!(run.code, Some(0), "the last run failed: {}", run.dump());

    let stored = scan_maildir(&lab.maildir());
    let qs = scan_queue(&queue, &guids);
    assert_nothing_lost("at the end", &guids, &stored, &qs);
    let dup_ids: Vec<(&String, &usize)> = stored.copies.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "final run: {:.1}s, {}\n{kills} kill(s); {} message files for {} voicemails: \
         {} duplicate(s) {dup_ids:?}; server events reported {} stored; total {:.1}s",
        final_started.elapsed().as_secs_f64(),
        run.stdout.lines().last().unwrap_or_default(),
        stored.files,
        guids.len(),
        stored.duplicates(),
        seen.stored,
        started.elapsed().as_secs_f64()
    );
    assert!(kills >= 1, "no round was killed mid-submit: {log:#?}");
    // Every voicemail is stored, under its own Message-ID and X-CallID.
    let missing: Vec<&String> = guids.iter().filter(|g| !stored.has(g)).collect();
    assert!(missing.is_empty(), "not in the Maildir: {missing:?}");
    for g in &guids {
        let calls = stored
            .call_ids
            .get(&message_id(g))
            .cloned()
            .unwrap_or_default();
        assert!(
            !calls.is_empty() && calls.iter().all(|c| Some(c) == call_ids.get(g)),
            "{g}: stored X-CallID {calls:?}, queued CallId {:?}",
            call_ids.get(g)
        );
    }
    let foreign: Vec<&String> = stored
        .copies
        .keys()
        .filter(|id| !guids.iter().any(|g| &&message_id(g) == id))
        .collect();
    assert!(
        foreign.is_empty(),
        "unknown Message-IDs stored: {foreign:?}"
    );
    assert!(
        stored.unreadable.is_empty(),
        "no Message-ID: {:?}",
        stored.unreadable
    );
    assert_eq!(
        stored.files,
        guids.len() + stored.duplicates(),
        "files = voicemails + duplicates"
    );
    assert_eq!(
        seen.stored, stored.files,
        "the server's events and its Maildir agree"
    );
    assert!(
        seen.malformed.is_empty(),
        "malformed voicemail stored: {:?}",
        seen.malformed
    );
    // The queue is empty; sent/ holds every header + audio pair.
    assert!(
        qs.queued.is_empty() && qs.odd.is_empty(),
        "left in the queue: {:?} {:?}",
        qs.queued,
        qs.odd
    );
    let not_sent: Vec<&String> = guids.iter().filter(|g| !qs.sent.contains(*g)).collect();
    assert!(
        not_sent.is_empty(),
        "not in sent/ as header + wav: {not_sent:?}"
    );
    assert!(qs.bad.is_empty(), "badvoicemail/: {:?}", qs.bad);
    if !qs.tmp.is_empty() {
        eprintln!(
            "note: temporary files left in the queue (a writer killed mid-write): {:?}",
            qs.tmp
        );
    }
    assert!(
        qs.tmp.iter().all(|t| t.contains(".um-sim-")),
        "temporary files not from um-sim's writer: {:?}",
        qs.tmp
    );
    let maildir_tmp = files_in(&lab.maildir().join("tmp"));
    assert!(maildir_tmp.is_empty(), "Maildir tmp/: {maildir_tmp:?}");
    lab.server.shutdown(Duration::from_secs(1)).await;
}
