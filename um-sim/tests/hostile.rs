//! The `um-sim` binary against hostile peers and files: a server that never
//! ends its reply, headers and audio that cannot be delivered. Each case must
//! end in a clear error, with the item queued or in badvoicemail/, never in a
//! panic or a process that grows without bound.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use um_sim::header::Header;

mod common;

use common::{files, um_sim};

/// A temporary folder with a lab PKI in `lab/` and a queue `q/` of `count`
/// voicemails of 2 s.
struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    fn new(count: u32) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        certgen::pki::generate(Some(3), certgen::KeyAlg::EcdsaP256)
            .unwrap()
            .save(&dir.path().join("lab"))
            .unwrap();
        let lab = Lab { dir };
        if count > 0 {
            let out = um_sim(&[
                "enqueue",
                "--queue",
                &lab.s("q"),
                "--count",
                &count.to_string(),
                "--seconds",
                "2",
                "--seed",
                "9",
            ]);
            assert!(out.status.success(), "{out:?}");
        }
        lab
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn s(&self, rel: &str) -> String {
        self.path(rel).to_string_lossy().into_owned()
    }

    /// `um-sim submit` to `server`, events in `ev.jsonl`.
    fn submit(&self, server: &str, extra: &[&str]) -> Output {
        self.submit_cmd(server, &self.s("ev.jsonl"), extra)
            .output()
            .expect("um-sim runs")
    }

    /// The `um-sim submit` command, events in `events`.
    fn submit_cmd(&self, server: &str, events: &str, extra: &[&str]) -> Command {
        let mut args = vec![
            "submit".to_owned(),
            "--queue".to_owned(),
            self.s("q"),
            "--server".to_owned(),
            server.to_owned(),
            "--cert".to_owned(),
            self.s("lab/um.pem"),
            "--key".to_owned(),
            self.s("lab/um.key"),
            "--server-ca".to_owned(),
            self.s("lab/ca.pem"),
            "--events".to_owned(),
            events.to_owned(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_um-sim"));
        cmd.args(args).env_remove("RUST_LOG");
        cmd
    }

    fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path("ev.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn reasons(&self) -> Vec<String> {
        let bad = self.path("q/badvoicemail");
        files(&bad, ".reason.txt")
            .iter()
            .map(|f| std::fs::read_to_string(bad.join(f)).unwrap())
            .collect()
    }

    fn headers(&self) -> Vec<String> {
        files(&self.path("q"), ".txt")
    }
}

/// A port nobody listens on.
fn dead_server() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// A server that greets, then answers EHLO with "250-x" lines and never the
/// last one, until the client hangs up. Returns its address and a handle that
/// yields the bytes it wrote.
fn endless_reply_server() -> (String, std::thread::JoinHandle<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return 0;
        };
        let mut out = stream.try_clone().unwrap();
        let _ = out.write_all(b"220 endless.lab.test ESMTP\r\n");
        let mut line = String::new();
        let _ = BufReader::new(stream).read_line(&mut line);
        let chunk = b"250-x\r\n".repeat(1_000);
        let mut written = 0u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline && out.write_all(&chunk).is_ok() {
            written += chunk.len() as u64;
        }
        written
    });
    (addr, handle)
}

#[test]
fn a_server_that_never_ends_its_reply_fails_the_attempt() {
    let lab = Lab::new(1);
    let (server, written) = endless_reply_server();
    let started = Instant::now();
    let out = lab.submit(&server, &["--timeout", "10"]);
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let ev = lab.events();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["failure"], "smtp-reply", "{:?}", ev[0]);
    assert_eq!(ev[0]["event_id"], 1185);
    let error = ev[0]["error"].as_str().unwrap();
    assert!(
        error.contains("EHLO") && error.contains("100 lines"),
        "{error}"
    );
    // Cut at the cap, not at the 10 s timeout.
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
    // The item stays queued with its attempt recorded.
    let headers = lab.headers();
    assert_eq!(headers.len(), 1);
    let h =
        Header::parse(&std::fs::read_to_string(lab.path("q").join(&headers[0])).unwrap()).unwrap();
    assert_eq!(h.attempts, 1);
    assert!(h.last_error.contains("100 lines"), "{}", h.last_error);
    let _ = written.join();
}

#[test]
fn malformed_items_are_counted_and_exit_1() {
    let lab = Lab::new(1);
    let header = lab.path("q").join(&lab.headers()[0]);
    std::fs::write(&header, "ContentType voicemail\n").unwrap();
    let out = lab.submit(&dead_server(), &["--timeout", "5"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("delivered 0, still queued 0, moved to badvoicemail/ 1"),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let reasons = lab.reasons();
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].contains("malformed header"), "{reasons:?}");
}

/// Sets `key` in a header file (replacing its line).
fn set_header(path: &Path, key: &str, value: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        if line.split_once(':').is_some_and(|(k, _)| k == key) {
            out.push_str(&format!("{key}: {value}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn a_received_time_lettre_cannot_write_goes_to_badvoicemail() {
    let lab = Lab::new(3);
    let headers = lab.headers();
    let q = lab.path("q");
    // Before 1970, and after 9999 once the offset is applied.
    set_header(&q.join(&headers[0]), "ReceivedTime", "1969-12-31T23:59:59Z");
    set_header(
        &q.join(&headers[1]),
        "ReceivedTime",
        "9999-12-31T23:59:59-23:59",
    );
    for run in 0..2 {
        let out = lab.submit(&dead_server(), &["--timeout", "5"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "run {run}: {stderr}");
        assert_eq!(out.status.code(), Some(1), "run {run}: {stdout}");
        // The run went on with the good item: one attempt per run.
        assert_eq!(lab.headers(), [headers[2].clone()], "run {run}");
        let h = Header::parse(&std::fs::read_to_string(q.join(&headers[2])).unwrap()).unwrap();
        assert_eq!(h.attempts, run + 1);
        if run == 0 {
            assert!(stdout.contains("moved to badvoicemail/ 2"), "{stdout}");
        }
    }
    let reasons = lab.reasons();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .all(|r| r.contains("ReceivedTime") && r.contains("1970")),
        "{reasons:?}"
    );
    let bad = lab.path("q/badvoicemail");
    assert_eq!(files(&bad, ".txt").len() - reasons.len(), 2);
    assert_eq!(files(&bad, ".wav").len(), 2);
}

/// A WAV file written with hound.
fn write_wav(path: &Path, spec: hound::WavSpec, frames: u32) {
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for n in 0..frames * u32::from(spec.channels) {
        match spec.sample_format {
            hound::SampleFormat::Float => w.write_sample((n as f32 * 0.01).sin()).unwrap(),
            hound::SampleFormat::Int => w.write_sample((n % 1000) as i16).unwrap(),
        }
    }
    w.finalize().unwrap();
}

#[test]
fn broken_audio_goes_to_badvoicemail_with_the_reason() {
    let lab = Lab::new(6);
    let q = lab.path("q");
    let headers = lab.headers();
    let audio = |i: usize| {
        let h = Header::parse(&std::fs::read_to_string(q.join(&headers[i])).unwrap()).unwrap();
        q.join(h.audio_file.unwrap())
    };
    // 0: truncated, as a copy cut short leaves it.
    let bytes = std::fs::read(audio(0)).unwrap();
    std::fs::write(audio(0), &bytes[..bytes.len() / 2]).unwrap();
    // 1: random bytes.
    std::fs::write(
        audio(1),
        (0..4_000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    // 2: a sound WAV, but the header claims 30 s of the 2 s recorded.
    set_header(&q.join(&headers[2]), "Duration", "30");
    // 3: IEEE float samples, not PCM.
    let float = hound::WavSpec {
        channels: 1,
        sample_rate: 8_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    write_wav(&audio(3), float, 16_000);
    // 4: a recorder that never finished: the data chunk still says 0 bytes.
    let mut unfinished = std::fs::read(audio(4)).unwrap();
    unfinished[40..44].copy_from_slice(&[0, 0, 0, 0]);
    std::fs::write(audio(4), unfinished).unwrap();
    // 5 stays sound: it is tried and stays queued (no server).

    let out = lab.submit(&dead_server(), &["--timeout", "5"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("moved to badvoicemail/ 5"), "{stdout}");
    assert_eq!(lab.headers(), [headers[5].clone()]);
    let bad = lab.path("q/badvoicemail");
    let reason = |i: usize| {
        let guid = headers[i].trim_end_matches(".txt");
        std::fs::read_to_string(bad.join(format!("{guid}.reason.txt"))).unwrap()
    };
    for (i, needle) in [
        (0, "truncated"),
        (1, "not a WAV file"),
        (2, "Duration 30"),
        (3, "not PCM"),
        (4, "never finished"),
    ] {
        let r = reason(i);
        assert!(r.contains(needle), "item {i}: {r}");
        assert!(r.contains(".wav"), "item {i} names the file: {r}");
    }
    // Only the sound item was tried.
    assert_eq!(lab.events().len(), 1);
    assert_eq!(files(&bad, ".wav").len(), 5);
}

#[test]
fn oversized_header_and_audio_go_to_badvoicemail() {
    let lab = Lab::new(2);
    let q = lab.path("q");
    let headers = lab.headers();
    // A header of 1.5 MB (a valid one, padded by an unknown key).
    let h0 = q.join(&headers[0]);
    let mut text = std::fs::read_to_string(&h0).unwrap();
    text.push_str(&format!("X-Pad: {}\n", "p".repeat(1_500_000)));
    std::fs::write(&h0, text).unwrap();
    // A WAV one byte over the cap (sparse: nothing is written).
    let h1 = Header::parse(&std::fs::read_to_string(q.join(&headers[1])).unwrap()).unwrap();
    let wav = std::fs::OpenOptions::new()
        .write(true)
        .open(q.join(h1.audio_file.unwrap()))
        .unwrap();
    wav.set_len(um_sim::audio::MAX_WAV_FILE + 1).unwrap();
    drop(wav);

    let out = lab.submit(&dead_server(), &["--timeout", "5"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(lab.headers().is_empty(), "{stdout}");
    let reasons = lab.reasons();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("larger than 1048576 bytes")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains(&format!(
            "larger than {} bytes",
            um_sim::audio::MAX_WAV_FILE
        ))),
        "{reasons:?}"
    );
    assert!(lab.events().is_empty());
}

#[cfg(target_os = "linux")]
#[test]
fn an_events_file_that_cannot_be_written_is_logged_on_stderr() {
    let lab = Lab::new(1);
    // Every write to /dev/full fails with ENOSPC.
    let out = lab
        .submit_cmd(&dead_server(), "/dev/full", &["--timeout", "5"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("/dev/full") && stderr.contains("No space left on device"),
        "{stderr}"
    );
    // RUST_LOG decides what is logged: off means nothing.
    let out = lab
        .submit_cmd(&dead_server(), "/dev/full", &["--timeout", "5"])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn a_closed_stdout_is_logged_not_a_panic() {
    let lab = Lab::new(2);
    // A pipe nobody reads: every write to it fails (EPIPE).
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = lab
        .submit_cmd(&dead_server(), &lab.s("ev.jsonl"), &["--timeout", "5"])
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("stdout"), "{stderr}");
    // Both attempts were recorded all the same.
    assert_eq!(lab.events().len(), 2);
}
