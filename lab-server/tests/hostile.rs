//! Hostile peers: SMTP smuggling in every dot variant, sessions that try to
//! grow without bound or outlive their welcome, slowloris, pipelined
//! recipient floods, and broken audio. Each case pins a behaviour that was
//! wrong once.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Lab, Smtp, assert_still_serving, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A small store, plaintext mail allowed: these tests are about SMTP.
async fn lab(tweak: impl FnOnce(&mut lab_server::server::Settings)) -> Lab {
    start(8, |s| {
        s.require_tls = false;
        tweak(s);
    })
    .await
}

async fn open_transaction(s: &mut Smtp<TcpStream>) {
    assert_eq!(s.cmd("EHLO um.lab.test").await.code, 250);
    assert_eq!(s.cmd("MAIL FROM:<um@lab.test>").await.code, 250);
    assert_eq!(s.cmd("RCPT TO:<hub@lab.test>").await.code, 250);
    assert_eq!(s.cmd("DATA").await.code, 354);
}

/// Only `<CRLF>.<CRLF>` ends DATA (RFC 5321 4.1.1.4), whatever came before
/// it, a line cut for length included. Every near-miss of the end marker is
/// followed by a forged transaction; the forged text must stay content, the
/// server must answer once, and the session must go on.
#[tokio::test(flavor = "multi_thread")]
async fn no_dot_variant_ends_data_early() {
    let mut lab = lab(|_| {}).await;
    let variants: [(&str, &[u8]); 7] = [
        ("bare LF before and after", b"\n.\n"),
        ("bare LF before", b"\n.\r\n"),
        ("bare LF after", b"\r\n.\n"),
        ("bare CR before", b"\r.\r\n"),
        ("bare CR around", b"\r.\r"),
        ("CR CR LF after", b"\r\n.\r\r\n"),
        ("CR CR LF before", b"\r\r.\r\n"),
    ];
    let forged: &[u8] = b"MAIL FROM:<forged@evil.test>\r\nRCPT TO:<hub@lab.test>\r\nDATA\r\n\
forged body\r\n.\r\n";
    let mut expect_stored = 0;
    for (name, variant) in variants {
        for over_long in [false, true] {
            let what = format!(
                "{name}, after {} line",
                if over_long {
                    "an over-long"
                } else {
                    "a normal"
                }
            );
            let mut s = Smtp::greeted(lab.addr()).await;
            open_transaction(&mut s).await;
            let before = if over_long {
                vec![b'A'; 1500]
            } else {
                b"normal line".to_vec()
            };
            let message = [b"Subject: x\r\n\r\n".as_slice(), &before, variant, forged].concat();
            s.send(&message).await;
            let r = s.reply().await.expect("one reply to the message");
            if over_long {
                assert_eq!(r.first(), "500 5.5.2 Message line too long", "{what}");
            } else {
                assert_eq!(r.code, 250, "{what}: {r:?}");
                expect_stored += 1;
            }
            // Exactly one reply: the next one answers QUIT.
            assert_eq!(s.cmd("QUIT").await.first(), "221 2.0.0 Bye", "{what}");
            let ev = lab.event_for(s.local).await;
            assert!(
                !ev.smtp.iter().any(|x| x.command.contains("forged")),
                "{what}: forged text ran as a command: {:#?}",
                ev.smtp
            );
            let stored = lab.maildir_files("new");
            assert_eq!(stored.len(), expect_stored, "{what}");
            if !over_long {
                let text = std::fs::read(stored.last().unwrap()).unwrap();
                let text = String::from_utf8_lossy(&text);
                assert!(
                    text.contains("MAIL FROM:<forged@evil.test>"),
                    "{what}: {text}"
                );
            }
        }
    }
}

/// A million NOOPs once kept a million entries in the event (+114 MB, one
/// 49 MB JSON line). The event keeps the first 100 and counts the rest.
#[tokio::test(flavor = "multi_thread")]
async fn a_noop_flood_leaves_a_bounded_event() {
    let dir = tempfile::tempdir().unwrap();
    let events_file = dir.path().join("events.jsonl");
    let path = events_file.clone();
    let mut lab = lab(move |s| s.events_file = Some(path)).await;
    let mut s = Smtp::greeted(lab.addr()).await;
    const N: usize = 200_000;
    let flood = "NOOP\r\n".repeat(N);
    let (mut rd, mut wr) = s.into_tcp().into_split();
    let writer = tokio::spawn(async move {
        wr.write_all(flood.as_bytes()).await.unwrap();
        wr.write_all(b"QUIT\r\n").await.unwrap();
        wr
    });
    let mut replies = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), rd.read_to_end(&mut replies))
        .await
        .expect("the flood is answered")
        .unwrap();
    let _wr = writer.await.unwrap();
    let text = String::from_utf8_lossy(&replies);
    assert_eq!(text.matches("250 2.0.0 OK\r\n").count(), N);
    assert!(text.ends_with("221 2.0.0 Bye\r\n"));
    s = Smtp::greeted(lab.addr()).await;
    let local = rd.local_addr().unwrap();
    let ev = lab.event_for(local).await;
    assert_eq!(ev.smtp.len(), lab_server::events::SMTP_LOG_FIRST);
    assert_eq!(ev.smtp_total, N as u64 + 1);
    assert_eq!(ev.smtp_verbs.get("NOOP"), Some(&(N as u64)));
    assert_eq!(ev.smtp_verbs.get("QUIT"), Some(&1));
    assert_eq!(s.cmd("QUIT").await.code, 221);
    // Shutdown returns only once the events file holds every connection.
    let Lab { server, .. } = lab;
    server.shutdown(Duration::from_secs(5)).await;
    let lines = std::fs::read_to_string(&events_file).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 2, "both connections' events are in the file");
    let longest = lines.iter().map(|l| l.len()).max().unwrap();
    assert!(longest < 32 * 1024, "an event line of {longest} bytes");
    let flood_event: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(flood_event["smtp_total"], N as u64 + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_past_its_byte_budget_gets_451_4_7_28() {
    let mut lab = lab(|s| {
        s.limits.max_message = 4_000;
        s.max_session_bytes = Some(10_000);
    })
    .await;
    let mut s = Smtp::greeted(lab.addr()).await;
    s.send("NOOP\r\n".repeat(3_000).as_bytes()).await;
    let mut quota = None;
    while let Some(r) = s.reply().await {
        if r.code != 250 {
            quota = Some(r);
            break;
        }
    }
    let r = quota.expect("a reply past the budget");
    assert_eq!(r.first(), "451 4.7.28 Session exceeded transfer quota");
    s.until_closed(Duration::from_secs(2)).await;
    assert_eq!(
        lab.event_for(s.local).await.end,
        "session byte budget exceeded"
    );
    assert_still_serving(lab.addr()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_past_its_lifetime_gets_421() {
    let mut lab = lab(|s| s.session_lifetime = Duration::from_secs(1)).await;
    let mut s = Smtp::greeted(lab.addr()).await;
    let t = Instant::now();
    // Busy, never idle: a NOOP every 200 ms.
    let r = loop {
        let r = s.cmd("NOOP").await;
        if r.code != 250 {
            break r;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the session outlived its lifetime"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        r.first(),
        "421 4.4.2 Session time limit exceeded, closing connection"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        lab.event_for(s.local).await.end,
        "session lifetime exceeded"
    );
}

async fn connect_from(source: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((source, 0)))
        .expect("bind a loopback source address");
    socket.connect(to).await.expect("connect")
}

/// Slowloris: 100 connections from one address, each sending a byte every
/// 3 s, once held every slot (a new client got 421 for as long as they
/// stayed). With the defaults, a client from another address is served at
/// once, and the slow address gets only its share.
#[tokio::test(flavor = "multi_thread")]
async fn slow_connections_from_one_address_do_not_lock_out_others() {
    let lab = start(8, |_| {}).await;
    let addr = lab.addr();
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut tcp = connect_from([127, 0, 0, 1], addr).await;
        let mut first = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut first))
            .await
            .expect("a greeting or a refusal")
            .unwrap();
        slow.push((tcp, String::from_utf8_lossy(&first[..n]).into_owned()));
    }
    let greeted = slow.iter().filter(|(_, g)| g.starts_with("220 ")).count();
    let refused = slow
        .iter()
        .filter(|(_, g)| g.starts_with("421 4.7.0 Too many connections from your address"))
        .count();
    assert_eq!((greeted, refused), (20, 80), "default share per address");
    let trickle = tokio::spawn(async move {
        for _ in 0..3 {
            for (tcp, _) in &mut slow {
                let _ = tcp.write_all(b"N").await;
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        slow
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    let tcp = connect_from([127, 0, 0, 2], addr).await;
    let local = tcp.local_addr().unwrap();
    let mut fresh = common::Smtp::from_tcp(tcp, local);
    let greeting = fresh.reply().await.expect("a greeting");
    assert_eq!(greeting.code, 220, "{greeting:?}");
    assert_eq!(fresh.cmd("EHLO fresh.lab.test").await.code, 250);
    assert_eq!(fresh.cmd("QUIT").await.code, 221);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "served in {:?}",
        t.elapsed()
    );
    trickle.abort();
}

/// 150 pipelined recipients: the excess get 452 and the transaction goes on
/// (RFC 5321 4.5.3.1.10); it used to end in 421 and a closed session.
#[tokio::test(flavor = "multi_thread")]
async fn pipelined_recipient_flood_gets_452_and_delivers() {
    let mut lab = lab(|_| {}).await;
    let mut s = Smtp::greeted(lab.addr()).await;
    assert_eq!(s.cmd("EHLO um.lab.test").await.code, 250);
    let mut batch = String::from("MAIL FROM:<um@lab.test> SIZE=99999999999999999999\r\n");
    batch.push_str("MAIL FROM:<um@lab.test> SIZE=1000\r\n");
    for i in 0..150 {
        batch.push_str(&format!("RCPT TO:<r{i}@lab.test>\r\n"));
    }
    batch.push_str("DATA\r\n");
    s.send(batch.as_bytes()).await;
    let r = s.reply().await.unwrap();
    assert_eq!(r.first(), "552 5.3.4 Message size exceeds fixed limit");
    assert_eq!(s.reply().await.unwrap().code, 250);
    let mut codes = Vec::new();
    for _ in 0..150 {
        codes.push(s.reply().await.expect("a reply per recipient").code);
    }
    assert_eq!(codes.iter().filter(|&&c| c == 250).count(), 100);
    assert_eq!(codes.iter().filter(|&&c| c == 452).count(), 50);
    assert_eq!(s.reply().await.unwrap().code, 354);
    s.send(b"Subject: many\r\n\r\nhello\r\n.\r\n").await;
    assert_eq!(s.reply().await.unwrap().code, 250);
    assert_eq!(s.cmd("QUIT").await.code, 221);
    let ev = lab.event_for(s.local).await;
    assert_eq!(ev.stored.len(), 1);
    assert_eq!(ev.stored[0].to.len(), 100);
}

/// A voicemail whose WAV is cut short, or is noise, is stored (the server
/// stores what it accepted) but its event says it is not a well-formed
/// voicemail, and why.
#[tokio::test(flavor = "multi_thread")]
async fn broken_audio_is_named_in_the_event() {
    let mut lab = lab(|_| {}).await;
    let mut wav = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(&mut wav, spec).unwrap();
    for i in 0..16_000 {
        w.write_sample((i % 300) as i16).unwrap();
    }
    w.finalize().unwrap();
    let wav = wav.into_inner();
    let noise: Vec<u8> = (0..8_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    for (audio, problem) in [
        (wav.clone(), None),
        (wav[..wav.len() / 3].to_vec(), Some("data cut short")),
        (noise, Some("not a WAV file")),
    ] {
        let mut s = Smtp::greeted(lab.addr()).await;
        open_transaction(&mut s).await;
        let message = format!(
            "Content-Class: voice-ca\r\nX-CallID: 42\r\nX-VoiceMessageDuration: 2\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nvoicemail\r\n\
--b\r\nContent-Type: audio/wav\r\nContent-Disposition: attachment; filename=a.wav\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n.\r\n",
            common::base64(&audio)
                .as_bytes()
                .chunks(76)
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect::<Vec<_>>()
                .join("\r\n")
        );
        s.send(message.as_bytes()).await;
        assert_eq!(s.reply().await.unwrap().code, 250);
        assert_eq!(s.cmd("QUIT").await.code, 221);
        let ev = lab.event_for(s.local).await;
        let check = &ev.stored[0].voicemail;
        let audio = check.audio.as_ref().expect("the audio was checked");
        match problem {
            None => {
                assert!(check.well_formed_voicemail, "{check:?}");
                assert_eq!(audio.duration_ms, Some(2000));
            }
            Some(p) => {
                assert!(!check.well_formed_voicemail, "{check:?}");
                let got = audio.problem.as_deref().unwrap_or_default();
                assert!(got.starts_with(p), "{got}");
            }
        }
    }
}
