//! Property tests for um-sim's pure parts: the header format and the tap.

use certgen::wire::{RecordHeader, write_ca_list};
use proptest::prelude::*;
use um_sim::header::{ContentType, Header, Importance};
use um_sim::profile::{Profile, Rule};
use um_sim::tap::Tap;

fn value() -> impl Strategy<Value = String> {
    // One-line text without leading/trailing whitespace (the format trims).
    "[^\r\n:]{0,40}".prop_map(|s| s.trim().to_owned())
}

fn header() -> impl Strategy<Value = Header> {
    (
        prop::bool::ANY,
        "[a-z]{1,10}@[a-z]{1,10}\\.test",
        prop::option::of("\\+[1-9][0-9]{0,14}"),
        prop::option::of(value().prop_filter("non-empty", |v| !v.is_empty())),
        "[0-9a-f]{32}",
        0u32..100_000,
        prop::sample::select(vec![Importance::Low, Importance::Normal, Importance::High]),
        0u32..1000,
        value(),
        prop::collection::vec(("X-[A-Za-z]{1,8}", value()), 0..3),
    )
        .prop_map(
            |(
                vm,
                recipient,
                caller_id,
                caller_name,
                call_id,
                n,
                importance,
                attempts,
                last_error,
                extra,
            )| {
                let mut seen = std::collections::HashSet::new();
                Header {
                    content_type: if vm {
                        ContentType::Voicemail
                    } else {
                        ContentType::MissedCall
                    },
                    recipient,
                    caller_id,
                    caller_name,
                    call_id: call_id.clone(),
                    duration: vm.then_some(n),
                    audio_file: vm.then(|| format!("{call_id}.wav")),
                    audio_codec: None,
                    received_time: "2026-11-25T17:00:00Z".to_owned(),
                    subject: None,
                    importance,
                    attempts,
                    last_error,
                    extra: extra
                        .into_iter()
                        .filter(|(k, _)| seen.insert(k.clone()))
                        .collect(),
                }
            },
        )
}

proptest! {
    #[test]
    fn header_round_trips(h in header()) {
        let text = h.render();
        prop_assert_eq!(Header::parse(&text), Ok(h));
    }

    #[test]
    fn header_parser_is_total(text in "(?s).{0,400}") {
        let _ = Header::parse(&text);
    }

    #[test]
    fn tap_is_total(bytes in prop::collection::vec(any::<u8>(), 0..3000), cut in any::<usize>()) {
        for profile in ["schannel", "legacy-schannel", "java17", "lenient", "max-buffer=100"] {
            let mut tap = Tap::new(profile.parse().unwrap());
            let cut = cut % (bytes.len() + 1);
            let _ = tap.feed(&bytes[..cut]);
            let _ = tap.feed(&bytes[cut..]);
        }
    }

    /// A flight with a CertificateRequest of `n` 100-byte names cut into
    /// records of `record` bytes: the tap measures it and the rules fire
    /// exactly when the arithmetic says.
    #[test]
    fn rules_fire_as_the_arithmetic_predicts(
        n in 0usize..400,
        record in prop::sample::select(vec![1_000usize, 4_091, 16_384]),
        per_message in any::<bool>(),
        pieces in 1usize..5,
    ) {
        let mut body = vec![2, 1, 64, 0, 2, 4, 3];
        write_ca_list(&mut body, &vec![vec![0x30u8; 100]; n]).unwrap();
        let mut msg = vec![13];
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend_from_slice(&body);
        let mut stream = vec![2, 0, 0, 60];
        stream.extend([7u8; 60]);
        let cr_start = stream.len();
        stream.extend_from_slice(&msg);
        stream.extend([14, 0, 0, 0]);
        // Records: per-message starts the request on a record; coalesced does not.
        let mut cuts: Vec<usize> = if per_message {
            let mut c: Vec<usize> = vec![cr_start];
            c.extend((cr_start..cr_start + msg.len()).step_by(record).skip(1));
            c.push(cr_start + msg.len());
            c
        } else {
            (record..stream.len()).step_by(record).collect()
        };
        cuts.push(stream.len());
        let mut wire = Vec::new();
        let mut from = 0;
        for c in cuts {
            if c > from {
                RecordHeader::write(&mut wire, 22, [3, 3], c - from);
                wire.extend_from_slice(&stream[from..c]);
                from = c;
            }
        }
        let spans = {
            let (a, b) = (cr_start, cr_start + msg.len());
            let mut starts = vec![];
            let mut pos = 0;
            let mut at = 0;
            while at < wire.len() {
                let len = RecordHeader::parse(&wire[at..]).unwrap().len;
                starts.push((pos, pos + len));
                pos += len;
                at += 5 + len;
            }
            starts.iter().filter(|(s, e)| *s < b && a < *e).count()
        };
        for (name, want) in [
            ("lenient", None),
            ("openssl3", None),
            ("boringssl", None),
            ("schannel", (body.len() > 32_768).then_some(Rule::MaxBody(32_768))),
            ("legacy-schannel", (spans > 1).then_some(Rule::OneRecord)),
            ("mbedtls-3.6.2", (spans > 1).then_some(Rule::OneRecord)),
            ("java17", (body.len() > 32_768).then_some(Rule::MaxBody(32_768))),
            ("wolfssl5", (body.len() > 18_462).then_some(Rule::MaxBody(18_462))),
            ("max-handshake=16384", (body.len() > 16_384).then_some(Rule::MaxBody(16_384))),
        ] {
            let profile: Profile = name.parse().unwrap();
            let mut tap = Tap::new(profile);
            let step = wire.len().div_ceil(pieces).max(1);
            let verdict = wire.chunks(step).map(|c| tap.feed(c)).find(Result::is_err);
            prop_assert_eq!(verdict.map(|r| r.unwrap_err()), want, "{} n={} spans={}", name, n, spans);
            let seen = tap.seen().request.clone().expect("request seen");
            prop_assert_eq!(seen.body_bytes, body.len());
            if want.is_none() {
                prop_assert_eq!(seen.records, spans);
                prop_assert_eq!(seen.ca_name_count, n);
            }
        }
    }
}

#[test]
fn malformed_headers_name_the_line() {
    let good = "ContentType: voicemail\nRecipient: a@b.test\nCallId: 1\nDuration: 5\n\
AudioFile: x.wav\nReceivedTime: 2026-11-25T17:00:00Z\n";
    assert!(Header::parse(good).is_ok());
    for (bad, line, needle) in [
        ("ContentType voicemail\n", 1, "Key: Value"),
        (
            &good.replace("Duration: 5", "Duration: five") as &str,
            4,
            "whole number",
        ),
        (
            &good.replace(
                "ReceivedTime: 2026-11-25T17:00:00Z",
                "ReceivedTime: yesterday",
            ),
            6,
            "RFC 3339",
        ),
        (
            &good.replace("2026-11-25T17:00:00Z", "1969-12-31T23:59:59Z"),
            6,
            "between 1970-01-01 and 9999-12-31",
        ),
        (
            &good.replace("2026-11-25T17:00:00Z", "1970-01-01T00:30:00+01:00"),
            6,
            "between 1970-01-01 and 9999-12-31",
        ),
        (
            &good.replace("2026-11-25T17:00:00Z", "9999-12-31T23:59:59-00:01"),
            6,
            "between 1970-01-01 and 9999-12-31",
        ),
        (&format!("{good}CallerId: 0800\n"), 7, "E.164"),
        (&format!("{good}CallId: 2\n"), 7, "twice"),
        (
            &good.replace("AudioFile: x.wav", "AudioFile: ../etc/passwd"),
            5,
            "plain file name",
        ),
        (
            &good.replace("Recipient: a@b.test\n", ""),
            0,
            "Recipient is missing",
        ),
        (
            &good.replace("AudioFile: x.wav\n", ""),
            0,
            "AudioFile is missing",
        ),
    ] {
        let e = Header::parse(bad).expect_err(bad);
        assert_eq!(e.line, line, "{bad}: {e}");
        assert!(e.to_string().contains(needle), "{bad}: {e}");
    }
    // The edges themselves are fine.
    for edge in [
        "1970-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59+05:00",
    ] {
        let text = good.replace("2026-11-25T17:00:00Z", edge);
        assert!(Header::parse(&text).is_ok(), "{edge}");
    }
    // A missed call needs no audio.
    let missed = "ContentType: missedcall\nRecipient: a@b.test\nCallId: 1\nReceivedTime: 2026-11-25T17:00:00Z\n";
    let h = Header::parse(missed).unwrap();
    assert_eq!(h.subject_line(), "Missed call from Unknown caller");
}

proptest! {
    /// Any sequence of lines: the assembler never panics, and a reply it
    /// returns is within the caps.
    #[test]
    fn reply_assembler_is_total_and_capped(
        lines in prop::collection::vec(
            prop_oneof![
                "25[0-9][ -][ -~]{0,60}\r\n".prop_map(String::into_bytes),
                (0usize..3000).prop_map(|n| format!("250-{}\r\n", "x".repeat(n)).into_bytes()),
                (0usize..5000, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
                prop::collection::vec(any::<u8>(), 0..40),
            ],
            0..130,
        )
    ) {
        use um_sim::client::reply::{MAX_REPLY_BYTES, MAX_REPLY_LINES, ReplyAssembler};
        let mut asm = ReplyAssembler::default();
        let mut held = 0usize;
        for line in &lines {
            held += line.len();
            match asm.push(line) {
                Ok(Some(reply)) => {
                    prop_assert!(reply.lines.len() <= MAX_REPLY_LINES);
                    prop_assert!(held <= MAX_REPLY_BYTES);
                    break;
                }
                Ok(None) => prop_assert!(held <= MAX_REPLY_BYTES),
                Err(_) => break,
            }
        }
    }
}

/// A 0.1 s WAV as `enqueue` writes it (PCM 16-bit 8 kHz mono).
fn small_wav() -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
    for n in 0..800i16 {
        w.write_sample(n).unwrap();
    }
    w.finalize().unwrap();
    out.into_inner()
}

proptest! {
    /// The audio check is total: random bytes behind a RIFF/WAVE header, and
    /// a sound WAV with bytes changed or cut, give facts or an error, and
    /// facts only when the declared data is all there.
    #[test]
    fn audio_check_is_total(
        tail in prop::collection::vec(any::<u8>(), 0..200),
        edits in prop::collection::vec((0usize..1700, any::<u8>()), 0..6),
        cut in 0usize..1700,
        claimed in prop::option::of(0u32..5),
    ) {
        let mut random = b"RIFF\0\0\0\0WAVE".to_vec();
        random.extend_from_slice(&tail);
        let _ = um_sim::audio::check(&random, claimed);
        let mut wav = small_wav();
        for (at, b) in edits {
            if let Some(x) = wav.get_mut(at) {
                *x = b;
            }
        }
        wav.truncate(cut.max(1));
        if let Ok(facts) = um_sim::audio::check(&wav, claimed) {
            prop_assert!(facts.data_bytes as usize <= wav.len());
        }
    }
}

proptest! {
    /// Whatever ReceivedTime a header carries, a header that parses builds a
    /// message or names why not: lettre's date formatting never panics.
    #[test]
    fn a_parsed_header_never_panics_the_message_builder(
        h in header(),
        year in 0u32..=9999,
        day in 1u32..=28,
        second in 0u32..60,
        offset in prop::sample::select(vec!["Z", "+23:59", "-23:59", "+01:00", "-00:01"]),
    ) {
        let mut text = h.render();
        text = text.replace(
            "2026-11-25T17:00:00Z",
            &format!("{year:04}-12-{day:02}T23:59:{second:02}{offset}"),
        );
        if let Ok(parsed) = Header::parse(&text) {
            let audio = parsed.content_type == ContentType::Voicemail;
            let wav = small_wav();
            let _ = um_sim::message::build(
                &parsed,
                "guid",
                "um@um.lab.test",
                audio.then_some(wav.as_slice()),
            );
        }
    }
}

proptest! {
    /// `issuer-listed` over a chain: the certificate goes out exactly when the
    /// list is empty or holds the issuer of some chain certificate; a profile
    /// without the rule always sends.
    #[test]
    fn issuer_listed_walks_the_whole_chain(
        names in prop::collection::vec(prop::collection::vec(0u8..6, 1..3), 0..5),
        chain in prop::collection::vec(prop::collection::vec(0u8..6, 1..3), 1..4),
    ) {
        let refs: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
        let listed = chain.iter().position(|i| names.contains(i));
        prop_assert_eq!(um_sim::profile::listed_in_chain(&refs, &chain), listed);
        let schannel: Profile = "schannel".parse().unwrap();
        prop_assert_eq!(schannel.presents_chain(&refs, &chain), names.is_empty() || listed.is_some());
        let lenient: Profile = "lenient".parse().unwrap();
        prop_assert!(lenient.presents_chain(&refs, &chain));
        // The one-issuer form is the chain of one.
        prop_assert_eq!(
            schannel.presents_certificate(&refs, &chain[0]),
            schannel.presents_chain(&refs, &chain[..1])
        );
    }
}

/// A server flight: a 64-byte ServerHello, a CertificateRequest whose body is
/// `body` bytes (types, schemes, then names filling the rest), and a
/// ServerHelloDone. Returns the handshake stream and the request's range in it.
fn flight(body_len: usize) -> (Vec<u8>, std::ops::Range<usize>) {
    let mut body = vec![1, 64, 0, 2, 4, 3];
    let names = body_len - body.len() - 2;
    body.extend_from_slice(&(names as u16).to_be_bytes());
    // One name of 2 + DER bytes, or several when one cannot hold them all.
    let mut left = names;
    while left > 0 {
        let der = (left - 2).min(60_000);
        body.extend_from_slice(&(der as u16).to_be_bytes());
        body.extend(std::iter::repeat_n(0x30u8, der));
        left -= 2 + der;
    }
    assert_eq!(body.len(), body_len);
    let mut stream = vec![2, 0, 0, 60];
    stream.extend([7u8; 60]);
    let start = stream.len();
    stream.push(13);
    stream.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    stream.extend_from_slice(&body);
    let end = stream.len();
    stream.extend([14, 0, 0, 0]);
    (stream, start..end)
}

/// Cuts a handshake stream into records at `cuts` (stream offsets), and
/// wherever a record would pass 2^14 bytes of plaintext.
fn records(stream: &[u8], cuts: &[usize]) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
    let mut bounds: Vec<usize> = cuts
        .iter()
        .copied()
        .filter(|&c| c > 0 && c < stream.len())
        .collect();
    bounds.push(stream.len());
    bounds.sort_unstable();
    bounds.dedup();
    let (mut wire, mut ranges, mut from) = (Vec::new(), Vec::new(), 0);
    for b in bounds {
        while from < b {
            let end = b.min(from + 16_384);
            RecordHeader::write(&mut wire, 22, [3, 3], end - from);
            wire.extend_from_slice(&stream[from..end]);
            ranges.push(from..end);
            from = end;
        }
    }
    (wire, ranges)
}

/// mbedTLS's arithmetic, restated from `ssl_msg.c` as its pointers move: the
/// request's bytes received so far sit 13 bytes into the input buffer, each
/// further record is fetched right after them, and a fetch of header +
/// payload that does not fit the buffer's end fails. Returns whether a buffer
/// of `buffer_len` bytes takes the flight.
fn mbedtls_takes(
    buffer_len: usize,
    request: &std::ops::Range<usize>,
    records: &[std::ops::Range<usize>],
) -> bool {
    let mut in_hdr = 8; // the first record header goes after the sequence counter
    for r in records {
        if r.end <= request.start || r.start >= request.end {
            continue;
        }
        let nb_want = 5 + r.len();
        if nb_want > buffer_len - in_hdr {
            return false;
        }
        // Received so far: moved to in_buf + 13, the next header right after.
        in_hdr = 13 + (r.end.min(request.end) - request.start);
    }
    true
}

/// mbedTLS's default input buffer, `MBEDTLS_SSL_IN_BUFFER_LEN` (3.6).
const MBEDTLS_IN_BUFFER_LEN: usize = 16_765;

#[test]
fn max_buffer_gives_the_mbedtls_figures() {
    let mbedtls: Profile = format!("max-buffer={}", MBEDTLS_IN_BUFFER_LEN - 13)
        .parse()
        .unwrap();
    // (body, per-message layout, fits): a request starting its own 16 KB
    // record fits up to a 16,743-byte body (DESIGN.md 2a, measured); sharing
    // records (coalesced) the ServerHelloDone rides in its last record.
    for (body, per_message, fits) in [
        (16_743, true, true),
        (16_744, true, false),
        (16_739, false, true),
        (16_740, false, false),
        (10_000, true, true),
        (40_000, true, false),
    ] {
        let (stream, request) = flight(body);
        let cuts: Vec<usize> = if per_message {
            let mut c = vec![request.start, request.end];
            c.extend((request.start..request.end).step_by(16_384));
            c
        } else {
            (16_384..stream.len()).step_by(16_384).collect()
        };
        let (wire, ranges) = records(&stream, &cuts);
        assert_eq!(
            mbedtls_takes(MBEDTLS_IN_BUFFER_LEN, &request, &ranges),
            fits,
            "{body}"
        );
        let mut tap = Tap::new(mbedtls.clone());
        let verdict = tap.feed(&wire);
        assert_eq!(
            verdict.is_ok(),
            fits,
            "{body} per_message={per_message}: {verdict:?}"
        );
        if !fits {
            assert_eq!(verdict, Err(Rule::MaxBuffer(16_752)));
        }
        let seen = tap.seen().request.clone().expect("request seen");
        assert_eq!(seen.body_bytes, body);
        assert_eq!(
            seen.buffered_bytes,
            um_sim::profile::buffered_bytes(request.clone(), ranges.clone()),
        );
    }
}

proptest! {
    /// Any record layout, any delivery in pieces: the tap's buffer figure is
    /// the arithmetic's, the rule fires exactly when it exceeds N, and it
    /// agrees with mbedTLS's own pointer arithmetic for a buffer of N + 13.
    #[test]
    fn max_buffer_follows_the_record_layout(
        body in 12usize..40_000,
        cuts in prop::collection::vec(0usize..40_200, 0..12),
        slack in 0usize..3_000,
        pieces in 1usize..6,
    ) {
        let (stream, request) = flight(body);
        let (wire, ranges) = records(&stream, &cuts);
        let want = um_sim::profile::buffered_bytes(request.clone(), ranges.clone());
        let n = (want + slack).saturating_sub(1_500).max(1); // around the figure, both sides
        let profile: Profile = format!("max-buffer={n}").parse().unwrap();
        let mut tap = Tap::new(profile);
        let step = wire.len().div_ceil(pieces).max(1);
        let verdict = wire.chunks(step).map(|c| tap.feed(c)).find(Result::is_err);
        let fires = want > n;
        prop_assert_eq!(verdict.map(|r| r.unwrap_err()), fires.then_some(Rule::MaxBuffer(n)));
        prop_assert_eq!(mbedtls_takes(n + 13, &request, &ranges), !fires);
        let seen = tap.seen().request.clone().expect("request seen");
        if !fires {
            prop_assert_eq!(seen.buffered_bytes, want);
            prop_assert!(seen.complete);
        } else {
            prop_assert!(seen.buffered_bytes > n);
        }
    }
}
