//! The TLS 1.2 plaintext flight codecs: certgen's record and handshake
//! headers, its CertificateRequest parser and `FlightReader`, and
//! lab-server's record shaper built on them.
//!
//! Input: 6 bytes of settings, then a server's outbound byte stream.
//!   [0] bit 0: shaper layout coalesced (else per-message)
//!   [1..3] max_fragment, big-endian (the shaper clamps it)
//!   [3..6] three cut points (value * len / 256) where the stream is split
//!
//! Asserts, against an independent walk of the stream's records: the reader
//! reports exactly the stream's leading plaintext handshake records, the
//! complete handshake messages they carry, and the bytes after the flight;
//! the shaper's handshake bytes out equal the handshake bytes in, each
//! message starting a record of at most max_fragment bytes (per-message) or
//! the records passing unchanged (coalesced), and everything after the
//! flight passing unchanged; chunking never changes either output; a
//! CertificateRequest that parses encodes back to the same bytes.

#![no_main]

use certgen::wire::{
    CertificateRequest12, ClientCertificate, ClientFlightReader, DecodeError, Field,
    FlightReader, FlightSink, HandshakeHeader, MAX_CERTIFICATE_LEN, MAX_HANDSHAKE_LEN,
    MAX_RECORD_PAYLOAD, RecordHeader, parse_certificate_list, write_ca_list,
};
use lab_server::shaper::{Layout, Shaper};
use libfuzzer_sys::fuzz_target;
use um_sim::tap::Tap;

const HANDSHAKE: u8 = 22;
const CERTIFICATE_REQUEST: u8 = 13;

/// The stream walked by hand: the leading complete plaintext handshake
/// records, where they end, and whether something that is not one follows.
struct Model {
    /// Payloads of the flight's records, in order.
    handshake: Vec<u8>,
    /// Offset after the flight's last complete handshake record.
    flight_end: usize,
    /// The flight ended: a whole record header that is not a plausible
    /// handshake record follows, or a message claims more than the cap.
    ended: bool,
    /// It ended on malformed input (not TLS, or a length over a cap) rather
    /// than on a record of another content type.
    malformed: bool,
    /// Complete messages in `handshake`, as ranges.
    messages: Vec<(usize, usize)>,
    /// Records of the flight.
    records: usize,
}

/// The handshake messages of `hs`: the complete ones, and whether the first
/// incomplete one claims more than the cap.
fn messages(hs: &[u8]) -> (Vec<(usize, usize)>, bool) {
    let mut out = Vec::new();
    let mut m = 0;
    while let Some(h) = hs.get(m..m + 4) {
        let len = usize::from(h[1]) << 16 | usize::from(h[2]) << 8 | usize::from(h[3]);
        if len > MAX_HANDSHAKE_LEN {
            return (out, true);
        }
        if m + 4 + len > hs.len() {
            break;
        }
        out.push((m, m + 4 + len));
        m += 4 + len;
    }
    (out, false)
}

fn model(stream: &[u8]) -> Model {
    let mut at = 0;
    let mut handshake = Vec::new();
    let mut records = 0;
    let (ended, malformed) = loop {
        let Some(h) = stream.get(at..at + 5) else {
            break (false, false);
        };
        let (ty, v0) = (h[0], h[1]);
        let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
        if !(20..=24).contains(&ty) || v0 != 3 || len > 16_384 + 2048 {
            break (true, true);
        }
        if ty != HANDSHAKE {
            break (true, false);
        }
        let Some(payload) = stream.get(at + 5..at + 5 + len) else {
            break (false, false);
        };
        handshake.extend_from_slice(payload);
        at += 5 + len;
        records += 1;
        if messages(&handshake).1 {
            break (true, true);
        }
    };
    Model {
        messages: messages(&handshake).0,
        handshake,
        flight_end: at,
        ended,
        malformed,
        records,
    }
}

/// Everything a [`FlightReader`] told its sink.
#[derive(Default, PartialEq, Debug)]
struct Seen {
    records: Vec<Vec<u8>>,
    messages: Vec<(Vec<u8>, usize, [u8; 2])>,
}

impl FlightSink for Seen {
    fn record(&mut self, raw: &[u8]) {
        self.records.push(raw.to_vec());
    }
    fn message(&mut self, message: &[u8], records: usize, version: [u8; 2]) {
        self.messages.push((message.to_vec(), records, version));
    }
}

/// The stream cut at `cuts` (sorted offsets; those past the end cut at it).
fn pieces<'a>(stream: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut from = 0;
    for &c in cuts.iter().chain([&stream.len()]) {
        let c = c.clamp(from, stream.len());
        out.push(&stream[from..c]);
        from = c;
    }
    out
}

fn read_flight(stream: &[u8], cuts: &[usize]) -> (FlightReader, Seen, Vec<u8>) {
    let mut reader = FlightReader::new();
    let mut seen = Seen::default();
    let mut after = Vec::new();
    let mut returned = 0;
    for piece in pieces(stream, cuts) {
        if let Some(rest) = reader.feed(piece, &mut seen) {
            after.extend_from_slice(&rest);
            returned += 1;
        }
        assert_eq!(reader.ended(), returned > 0);
    }
    (reader, seen, after)
}

fn shape(layout: Layout, max_fragment: usize, stream: &[u8], cuts: &[usize]) -> (Shaper, Vec<u8>) {
    let mut shaper = Shaper::new(layout, max_fragment);
    let mut out = Vec::new();
    for piece in pieces(stream, cuts) {
        shaper.feed(piece, &mut out);
    }
    (shaper, out)
}

/// A CertificateRequest body that parses encodes back to the same bytes.
fn check_certificate_request(body: &[u8]) -> Option<CertificateRequest12> {
    let cr = match CertificateRequest12::parse(body) {
        Ok(cr) => cr,
        Err(e) => {
            let field_ok = match e.field() {
                Field::CertificateTypes
                | Field::SignatureAlgorithms
                | Field::CertificateAuthorities => true,
                Field::DistinguishedName(n) => n >= 1,
                _ => false,
            };
            assert!(field_ok, "CertificateRequest error about {:?}", e.field());
            check_error(&e);
            return None;
        }
    };
    let mut again = vec![u8::try_from(cr.cert_types.len()).expect("u8 vector")];
    again.extend_from_slice(&cr.cert_types);
    let schemes: Vec<u8> = cr
        .sig_schemes
        .iter()
        .flat_map(|s| s.to_be_bytes())
        .collect();
    again.extend_from_slice(
        &u16::try_from(schemes.len())
            .expect("u16 vector")
            .to_be_bytes(),
    );
    again.extend_from_slice(&schemes);
    write_ca_list(&mut again, &cr.ca_names).expect("a parsed list encodes");
    assert_eq!(again, body, "CertificateRequest round trip");
    Some(cr)
}

/// A decode error is one line, and says how much was missing when it was.
fn check_error(e: &DecodeError) {
    let text = e.to_string();
    assert!(!text.is_empty() && !text.contains('\n'), "{text:?}");
    if let DecodeError::Missing {
        needed, available, ..
    } = e
    {
        assert!(needed > available, "{text}");
    }
}

fn check_headers(bytes: &[u8]) {
    match RecordHeader::parse(bytes) {
        Ok(h) => {
            let mut out = Vec::new();
            RecordHeader::write(&mut out, h.content_type, h.version, h.len);
            assert_eq!(out, bytes[..5]);
            let plausible = (20..=24).contains(&h.content_type)
                && h.version[0] == 3
                && h.len <= MAX_RECORD_PAYLOAD;
            assert_eq!(h.check().is_ok(), plausible);
            assert_eq!(h.is_plausible(), plausible);
            if let Err(e) = h.check() {
                assert_eq!(
                    e.field(),
                    if matches!(e, DecodeError::TooLong { .. }) {
                        Field::RecordLength
                    } else {
                        Field::RecordHeader
                    }
                );
                check_error(&e);
            }
        }
        Err(e) => {
            assert!(bytes.len() < 5);
            assert_eq!(e.field(), Field::RecordHeader);
            check_error(&e);
        }
    }
    match HandshakeHeader::parse(bytes) {
        Ok(h) => {
            assert_eq!(h.msg_type, bytes[0]);
            assert!(h.len <= MAX_HANDSHAKE_LEN);
            assert_eq!(h.len.to_be_bytes()[5..], bytes[1..4]);
        }
        Err(e) => {
            let claim = bytes
                .get(1..4)
                .map(|l| usize::from(l[0]) << 16 | usize::from(l[1]) << 8 | usize::from(l[2]));
            match claim {
                None => assert_eq!(e.field(), Field::HandshakeHeader),
                Some(len) => {
                    assert!(len > MAX_HANDSHAKE_LEN);
                    assert_eq!(e.field(), Field::HandshakeLength);
                }
            }
            check_error(&e);
        }
    }
}

/// lab-server's reader of the client's plaintext flight, on the same stream
/// read as a client's: chunking never changes what it finds, and what it
/// finds is the first complete Certificate message of the flight, decoded.
fn check_client_flight(stream: &[u8], cuts: &[usize], messages: &[&[u8]]) {
    let read = |pieces: Vec<&[u8]>| {
        let mut r = ClientFlightReader::new();
        for p in pieces {
            r.feed(p);
        }
        r
    };
    let whole = read(vec![stream]);
    let cut = read(pieces(stream, cuts));
    assert_eq!(whole.certificate(), cut.certificate(), "chunking");
    assert_eq!(whole.messages(), cut.messages(), "chunking");
    assert_eq!(whole.ended(), cut.ended(), "chunking");
    assert_eq!(whole.error(), cut.error(), "chunking");
    if let Some(msg) = messages.iter().find(|m| m.first() == Some(&11)) {
        let body = &msg[4..];
        let want = if body.len() > MAX_CERTIFICATE_LEN {
            ClientCertificate::TooLarge { claimed: body.len() }
        } else {
            match parse_certificate_list(body) {
                Ok(certs) if certs.is_empty() => ClientCertificate::Empty,
                Ok(certs) => ClientCertificate::Sent(certs),
                Err(e) => ClientCertificate::Malformed(e),
            }
        };
        assert_eq!(whole.certificate(), &want, "the first Certificate");
    }
}

fuzz_target!(|input: &[u8]| {
    check_headers(input);
    check_certificate_request(input);
    let Some((head, stream)) = input.split_first_chunk::<6>() else {
        return;
    };
    let layout = if head[0] & 1 == 1 {
        Layout::Coalesced
    } else {
        Layout::PerMessage
    };
    let max_fragment = usize::from(u16::from_be_bytes([head[1], head[2]]));
    let mut cuts: Vec<usize> = head[3..]
        .iter()
        .map(|&b| usize::from(b) * stream.len() / 256)
        .collect();
    cuts.sort_unstable();

    let m = model(stream);
    let hs = &m.handshake;
    let complete = m.messages.last().map_or(0, |r| r.1);

    // FlightReader, whole and in pieces.
    let (mut reader, seen, after) = read_flight(stream, &[]);
    let (_, seen_cut, after_cut) = read_flight(stream, &cuts);
    assert_eq!(seen, seen_cut, "chunking changed what the reader saw");
    assert_eq!(
        after, after_cut,
        "chunking changed the bytes after the flight"
    );
    assert_eq!(reader.ended(), m.ended);
    assert_eq!(
        reader.error().is_some(),
        m.malformed,
        "error: {:?}",
        reader.error()
    );
    if let Some(e) = reader.error() {
        check_error(e);
    }
    assert_eq!(seen.records.concat(), stream[..m.flight_end], "records");
    let messages: Vec<&[u8]> = m.messages.iter().map(|&(a, b)| &hs[a..b]).collect();
    check_client_flight(stream, &cuts, &messages);
    let got: Vec<&[u8]> = seen.messages.iter().map(|(msg, _, _)| &msg[..]).collect();
    assert_eq!(got, messages, "messages");
    for (msg, records, _) in &seen.messages {
        assert!(*records >= 1 && *records <= seen.records.len().max(1));
        if msg[0] == CERTIFICATE_REQUEST {
            check_certificate_request(&msg[4..]);
        }
    }
    if m.ended {
        assert_eq!(after, stream[m.flight_end..], "bytes after the flight");
        assert_eq!(reader.take_partial().0, hs[complete..], "partial message");
    } else {
        assert!(after.is_empty());
        let progress = reader.in_progress().map(|(h, _)| (h.msg_type, h.len));
        let claim = hs.get(complete..complete + 4).map(|h| {
            (
                h[0],
                usize::from(h[1]) << 16 | usize::from(h[2]) << 8 | usize::from(h[3]),
            )
        });
        assert_eq!(progress, claim, "message in progress");
    }

    // The shaper.
    let (shaper, out) = shape(layout, max_fragment, stream, &[]);
    let (_, out_cut) = shape(layout, max_fragment, stream, &cuts);
    assert_eq!(out, out_cut, "chunking changed the shaped stream");
    assert_eq!(shaper.is_passthrough(), m.ended);
    match layout {
        Layout::Coalesced => {
            let want = if m.ended {
                stream
            } else {
                &stream[..m.flight_end]
            };
            assert_eq!(out, want, "coalesced changes nothing");
        }
        Layout::PerMessage => {
            let max_payload = max_fragment.saturating_sub(5).clamp(1, 16_384);
            // Handshake bytes out = handshake bytes in (all of them once the
            // flight ended, the complete messages until then), framed in
            // handshake records within the fragment size, then the bytes
            // after the flight unchanged.
            let want = if m.ended { &hs[..] } else { &hs[..complete] };
            let tail = &stream[if m.ended { m.flight_end } else { stream.len() }..];
            let mut got = Vec::new();
            let mut starts = vec![0usize];
            let mut at = 0;
            while got.len() < want.len() {
                let h = out.get(at..at + 5).expect("a record header");
                assert_eq!(h[0], HANDSHAKE, "a handshake record");
                let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
                assert!(
                    len >= 1 && len <= max_payload,
                    "record of {len} > {max_payload}"
                );
                got.extend_from_slice(out.get(at + 5..at + 5 + len).expect("a whole record"));
                starts.push(got.len());
                at += 5 + len;
            }
            assert_eq!(got, want, "handshake bytes changed");
            assert_eq!(&out[at..], tail, "bytes after the flight changed");
            for &(a, _) in &m.messages {
                assert!(starts.contains(&a), "message at {a} starts mid-record");
            }
        }
    }
    let last_cr = m
        .messages
        .iter()
        .rev()
        .map(|&(a, b)| &hs[a..b])
        .find(|msg| msg[0] == CERTIFICATE_REQUEST);
    match (shaper.observed(), last_cr) {
        (None, None) => {}
        (Some(o), Some(msg)) => {
            assert_eq!(o.message_bytes, msg.len());
            assert_eq!(
                o.ca_names,
                CertificateRequest12::parse(&msg[4..])
                    .ok()
                    .map(|cr| cr.ca_names)
            );
        }
        (o, msg) => panic!(
            "observed {o:?}, CertificateRequest in the flight: {}",
            msg.is_some()
        ),
    }
    let alert = match stream.get(m.flight_end..) {
        Some([21, _, _, 0, 2, level, description, ..]) if m.ended => Some([*level, *description]),
        _ => None,
    };
    assert_eq!(shaper.alert(), alert);
    // Past the flight, bytes pass unchanged.
    if m.ended {
        let mut shaper = shaper.clone();
        let mut more = Vec::new();
        shaper.feed(b"\x17\x03\x03\x00\x01x", &mut more);
        assert_eq!(more, b"\x17\x03\x03\x00\x01x");
    }

    // um-sim's record tap reading what the shaper sent, as the client does:
    // it sees the CertificateRequest the shaper says went out.
    let shaped = model(&out);
    let mut tap = Tap::new("lenient".parse().expect("a preset"));
    for piece in pieces(&out, &cuts) {
        assert_eq!(tap.feed(piece), Ok(()), "lenient never refuses");
    }
    let seen = tap.seen();
    if let Some(why) = &seen.blind {
        // The tap stopped following (a ServerHello with the
        // HelloRetryRequest random, as rustls reads it too): it read no
        // more than the flight, and says why.
        assert!(seen.handshake_records <= shaped.records, "{why}");
        assert!(why.contains("not observed"), "{why}");
    } else {
        assert_eq!(
            seen.handshake_records, shaped.records,
            "records the tap read"
        );
        match (shaper.observed(), &seen.request) {
            (None, None) => {}
            (Some(o), Some(r)) => {
                assert_eq!(r.body_bytes + 4, o.message_bytes);
                assert_eq!(r.records, o.records, "records the request spanned");
                assert_eq!(&r.ca_names, o.ca_names.as_ref().unwrap_or(&Vec::new()));
                assert!(r.complete);
            }
            (o, r) => panic!("shaper observed {o:?}, tap saw {r:?}"),
        }
    }
    // A body limit fires only on a CertificateRequest claiming more.
    let limit = 1 + usize::from(head[3]) * 64;
    let mut tap = Tap::new(format!("max-handshake={limit}").parse().expect("a profile"));
    let verdict = pieces(&out, &cuts)
        .into_iter()
        .map(|p| tap.feed(p))
        .find(Result::is_err);
    if let Some(Err(rule)) = verdict {
        assert_eq!(rule, um_sim::profile::Rule::MaxBody(limit));
        let seen = tap.seen();
        let request = seen.request.as_ref().expect("the request that broke it");
        assert!(request.body_bytes > limit);
    }
});
