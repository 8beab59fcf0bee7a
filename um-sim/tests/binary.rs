//! The `um-sim` binary without a server: enqueue writes real WAV audio and
//! valid headers; unusable items move to badvoicemail/; no server means event
//! 1082 and exit 1; bad usage means exit 2.

use um_sim::header::Header;

mod common;

use common::{files, um_sim};

#[test]
fn enqueue_writes_real_audio_and_valid_headers() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q");
    let q_str = q.to_str().unwrap();
    let out = um_sim(&[
        "enqueue",
        "--queue",
        q_str,
        "--count",
        "4",
        "--seconds",
        "3",
        "--seed",
        "11",
        "--to",
        "vm@lab.test",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let headers = files(&q, ".txt");
    assert_eq!(headers.len(), 4);
    for name in &headers {
        let h = Header::parse(&std::fs::read_to_string(q.join(name)).unwrap()).unwrap();
        assert_eq!(h.recipient, "vm@lab.test");
        assert_eq!(h.duration, Some(3));
        assert_eq!(h.attempts, 0);
        let wav = q.join(h.audio_file.as_deref().unwrap());
        let reader = hound::WavReader::open(&wav).expect("a real WAV file");
        let spec = reader.spec();
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (1, 8_000, 16)
        );
        assert_eq!(reader.duration(), 3 * 8_000, "3 s of 8 kHz samples");
        let peak = hound::WavReader::open(&wav)
            .unwrap()
            .into_samples::<i16>()
            .map(|s| s.unwrap().unsigned_abs())
            .max()
            .unwrap();
        assert!(peak > 1_000, "audible audio, peak {peak}");
        // The GUID names both files.
        assert_eq!(
            name.trim_end_matches(".txt"),
            h.audio_file.unwrap().trim_end_matches(".wav")
        );
    }
    // No temporary files left behind.
    assert!(files(&q, ".tmp").is_empty());
    // The same seed again would overwrite items: refused.
    let again = um_sim(&["enqueue", "--queue", q_str, "--count", "1", "--seed", "11"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[test]
fn unusable_items_go_to_badvoicemail_and_no_server_is_1082() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let q = d.join("q");
    let q_str = q.to_str().unwrap();
    assert!(
        um_sim(&["enqueue", "--queue", q_str, "--count", "3", "--seed", "2"])
            .status
            .success()
    );
    let headers = files(&q, ".txt");
    // Break one header, remove another's audio.
    std::fs::write(q.join(&headers[0]), "ContentType voicemail\n").unwrap();
    let h1 = Header::parse(&std::fs::read_to_string(q.join(&headers[1])).unwrap()).unwrap();
    std::fs::remove_file(q.join(h1.audio_file.unwrap())).unwrap();
    let lab = certgen::pki::generate(Some(1), certgen::KeyAlg::EcdsaP256).unwrap();
    lab.save(&d.join("lab")).unwrap();
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("127.0.0.1:{port}");
    let lab_file = |f: &str| d.join("lab").join(f).to_string_lossy().into_owned();
    let events = d.join("ev.jsonl");
    let out = um_sim(&[
        "submit",
        "--queue",
        q_str,
        "--server",
        &server,
        "--cert",
        &lab_file("um.pem"),
        "--key",
        &lab_file("um.key"),
        "--server-ca",
        &lab_file("ca.pem"),
        "--timeout",
        "5",
        "--events",
        events.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("Event ID:      1082"), "{stdout}");
    assert!(
        stdout.contains("no Hub Transport server answered"),
        "{stdout}"
    );
    // The two broken items are in badvoicemail/ with reasons; the good one stays queued.
    let bad = q.join("badvoicemail");
    let reasons: Vec<String> = files(&bad, ".reason.txt")
        .iter()
        .map(|f| std::fs::read_to_string(bad.join(f)).unwrap())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("malformed header: line 1")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("is missing")),
        "{reasons:?}"
    );
    assert_eq!(files(&q, ".txt"), [headers[2].clone()]);
    let h = Header::parse(&std::fs::read_to_string(q.join(&headers[2])).unwrap()).unwrap();
    assert_eq!(h.attempts, 1);
    assert!(h.last_error.contains(&server), "{}", h.last_error);
    let record: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&events)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(record["event_id"], 1082);
    assert_eq!(record["failure"], "no-server");
    assert_eq!(record["disposition"], "queued");
    // The default profile, schannel, is an alias of its preset.
    assert_eq!(record["profile"], "schannel");
    assert_eq!(record["preset"], "schannel-2008r2");

    // --retries 2: the second failure moves it to badvoicemail/.
    let out = um_sim(&[
        "submit",
        "--queue",
        q_str,
        "--server",
        &server,
        "--cert",
        &lab_file("um.pem"),
        "--key",
        &lab_file("um.key"),
        "--server-ca",
        &lab_file("ca.pem"),
        "--timeout",
        "5",
        "--retries",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(files(&q, ".txt").is_empty());
    assert_eq!(files(&bad, ".reason.txt").len(), 3);
    // Nothing was deleted: every header and audio file still exists somewhere.
    assert_eq!(
        files(&bad, ".wav").len() + files(&q.join("sent"), ".wav").len(),
        2
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = um_sim(&[
        "submit",
        "--queue",
        "/tmp/x",
        "--server",
        "127.0.0.1:1",
        "--cert",
        "/nonexistent.pem",
        "--key",
        "k",
        "--server-ca",
        "c",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent.pem") && err.trim().lines().count() == 1,
        "{err}"
    );
    let out = um_sim(&[
        "submit",
        "--queue",
        "q",
        "--server",
        "x",
        "--cert",
        "c",
        "--key",
        "k",
        "--server-ca",
        "c",
        "--profile",
        "openssl",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown profile"));
}

/// `um-sim profiles` prints the preset table, and um-sim's README shows the
/// very same table; `--json` gives one row per preset with the documented keys.
#[test]
fn profiles_prints_the_table_the_readme_shows() {
    let out = um_sim(&["profiles"]);
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8(out.stdout).expect("UTF-8");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines.len(),
        2 + 16,
        "header, rule and one row per preset:\n{table}"
    );
    for name in [
        "`schannel-2008r2` (alias `schannel`)",
        "`go`",
        "`mbedtls-3.6.3`",
        "`wolfssl5`",
    ] {
        assert!(table.contains(name), "{name}");
    }
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    assert!(
        readme.contains(table.trim_end()),
        "README.md does not hold the table `um-sim profiles` prints; paste it:\n{table}"
    );
    let out = um_sim(&["profiles", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(rows.len(), 16);
    let go = rows.iter().find(|r| r["profile"] == "go").expect("go");
    assert_eq!(
        go["rules"],
        serde_json::json!(["issuer-listed", "max-body=65536"])
    );
    assert_eq!(go["reach"], "beyond-own-stack");
    assert_eq!(go["unlisted_issuer"], "withholds");
    for key in [
        "stack", "limit", "prints", "alert", "source", "verified", "aliases",
    ] {
        assert!(go.get(key).is_some(), "{key}");
    }
}
