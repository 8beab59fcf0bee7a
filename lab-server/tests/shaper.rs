//! The record shaper on arbitrary input and on realistic flights.

use certgen::wire::{HandshakeHeader, RecordHeader};
use lab_server::shaper::{Layout, Rewrite, Shaper};
use proptest::prelude::*;

/// Feeds `input` in pieces cut at `cuts` (positions, any order).
fn shape_in_pieces(layout: Layout, max_fragment: usize, input: &[u8], cuts: &[usize]) -> Vec<u8> {
    shaper_after(layout, max_fragment, input, cuts).1
}

fn shaper_after(
    layout: Layout,
    max_fragment: usize,
    input: &[u8],
    cuts: &[usize],
) -> (Shaper, Vec<u8>) {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut shaper = Shaper::new(layout, max_fragment);
    let mut out = Vec::new();
    let mut from = 0;
    for c in cuts.into_iter().chain([input.len()]) {
        shaper.feed(&input[from..c], &mut out);
        from = c;
    }
    (shaper, out)
}

/// Splits a stream into records: (type, payload). Stops at the first partial one.
fn records(stream: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Ok(h) = RecordHeader::parse(&stream[at..]) {
        let Some(payload) = stream.get(at + 5..at + 5 + h.len) else {
            break;
        };
        out.push((h.content_type, payload));
        at += 5 + h.len;
    }
    out
}

/// A flight: handshake messages of the given body sizes, cut into records at
/// `record_size` regardless of message boundaries (as rustls does), then a
/// ChangeCipherSpec record and `tail` bytes.
fn flight(bodies: &[usize], record_size: usize, tail: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut stream = Vec::new();
    for (i, &len) in bodies.iter().enumerate() {
        stream.push(i as u8 + 1);
        stream.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        stream.extend((0..len).map(|k| (k * 7 + i) as u8));
    }
    let mut wire = Vec::new();
    for chunk in stream.chunks(record_size) {
        RecordHeader::write(&mut wire, 22, [3, 3], chunk.len());
        wire.extend_from_slice(chunk);
    }
    wire.extend_from_slice(&[20, 3, 3, 0, 1, 1]);
    wire.extend_from_slice(tail);
    (stream, wire)
}

#[test]
fn certificate_request_starts_its_own_record() {
    // ServerHello 80, Certificate 1,500, ServerKeyExchange 140,
    // CertificateRequest 36,000 (type 4 in this synthetic flight, see
    // `observes_the_certificate_request` for type 13), ServerHelloDone 0;
    // rustls cuts at 16,384.
    let bodies = [80, 1_500, 140, 36_000, 0];
    let (_, wire) = flight(&bodies, 16_384, b"");
    let out = shape_in_pieces(Layout::PerMessage, 16_389, &wire, &[]);
    let recs = records(&out);
    let sizes: Vec<usize> = recs.iter().map(|(_, p)| p.len()).collect();
    // 84 | 1,504 | 144 | 16,384 + 16,384 + 3,236 | 4 | CCS 1
    assert_eq!(sizes, [84, 1_504, 144, 16_384, 16_384, 3_236, 4, 1]);
    let coalesced = shape_in_pieces(Layout::Coalesced, 16_389, &wire, &[]);
    assert_eq!(coalesced, wire, "coalesced leaves rustls's framing alone");
    // A smaller fragment: payload 4,091 per record.
    let out = shape_in_pieces(Layout::PerMessage, 4_096, &wire, &[3, 77, 20_000]);
    let cr_records = records(&out)
        .iter()
        .skip(3)
        .take_while(|(_, p)| p.len() == 4_091 || p.len() == 36_004 % 4_091)
        .count();
    assert_eq!(cr_records, 36_004usize.div_ceil(4_091));
}

/// A real TLS 1.2 CertificateRequest body with `n` names of 100 bytes.
fn certificate_request(n: usize) -> Vec<u8> {
    let mut body = vec![2, 1, 64, 0, 4, 4, 3, 8, 7];
    let names = vec![vec![0x30u8; 100]; n];
    certgen::wire::write_ca_list(&mut body, &names).unwrap();
    let mut msg = vec![13];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend_from_slice(&body);
    msg
}

#[test]
fn observes_the_certificate_request() {
    // ServerHello (2) 70 bytes, then a 200-name CertificateRequest, then
    // ServerHelloDone, coalesced into 16,384-byte records as rustls does.
    let mut stream = vec![2, 0, 0, 70];
    stream.extend([0u8; 70]);
    let cr = certificate_request(200);
    stream.extend_from_slice(&cr);
    stream.extend([14, 0, 0, 0]);
    let mut wire = Vec::new();
    for chunk in stream.chunks(16_384) {
        RecordHeader::write(&mut wire, 22, [3, 3], chunk.len());
        wire.extend_from_slice(chunk);
    }
    wire.extend_from_slice(&[20, 3, 3, 0, 1, 1]);
    // 74 + 20,415 bytes: the message straddles records 1 and 2 when coalesced.
    let (coalesced, out) = shaper_after(Layout::Coalesced, 16_389, &wire, &[100, 17_000]);
    assert_eq!(out, wire);
    let seen = coalesced.observed().expect("seen");
    assert_eq!(seen.message_bytes, cr.len());
    assert_eq!(seen.records, 2);
    assert_eq!(seen.ca_names.as_ref().map(Vec::len), Some(200));
    let (per_message, _) = shaper_after(Layout::PerMessage, 4_096, &wire, &[]);
    let seen = per_message.observed().expect("seen");
    assert_eq!(seen.records, cr.len().div_ceil(4_091));
    assert!(per_message.is_passthrough());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn total_on_arbitrary_bytes(
        input in prop::collection::vec(any::<u8>(), 0..3_000),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        max_fragment in 0usize..20_000,
        coalesced in any::<bool>(),
    ) {
        let layout = if coalesced { Layout::Coalesced } else { Layout::PerMessage };
        let out = shape_in_pieces(layout, max_fragment, &input, &cuts);
        // Nothing is invented: output never exceeds input plus record headers.
        prop_assert!(out.len() <= input.len() + 5 * (input.len() + 1));
    }

    #[test]
    fn reframes_without_changing_a_handshake_byte(
        bodies in prop::collection::vec(0usize..40_000, 1..7),
        record_size in 1usize..=16_384,
        max_fragment in 32usize..=16_389,
        tail in prop::collection::vec(any::<u8>(), 0..200),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let (stream, wire) = flight(&bodies, record_size, &tail);
        let out = shape_in_pieces(Layout::PerMessage, max_fragment, &wire, &cuts);
        // Chunking does not matter.
        prop_assert_eq!(&out, &shape_in_pieces(Layout::PerMessage, max_fragment, &wire, &[]));
        let recs = records(&out);
        let hs: Vec<&[u8]> = recs.iter().filter(|(t, _)| *t == 22).map(|(_, p)| *p).collect();
        // Same handshake bytes, in order.
        prop_assert_eq!(hs.concat(), stream.clone());
        // Every record within the fragment size; every message starts a record.
        let max_payload = max_fragment - 5;
        let mut starts = std::collections::BTreeSet::new();
        let mut pos = 0;
        for p in &hs {
            prop_assert!(p.len() <= max_payload && !p.is_empty());
            starts.insert(pos);
            pos += p.len();
        }
        let mut at = 0;
        while let Ok(h) = HandshakeHeader::parse(&stream[at..]) {
            prop_assert!(starts.contains(&at), "message at {} starts mid-record", at);
            at += 4 + h.len;
        }
        // After the ChangeCipherSpec, bytes pass unchanged.
        let ccs_and_tail = [&[20u8, 3, 3, 0, 1, 1][..], &tail].concat();
        prop_assert!(out.ends_with(&ccs_and_tail));
    }
}

/// A TLS 1.2 server flight with real message types: ServerHello (2),
/// Certificate (11), ServerKeyExchange (12), CertificateRequest (13) of
/// `cr` body bytes, ServerHelloDone (14); cut into records of `record_size`
/// as rustls does. Returns the handshake stream and the wire.
fn typed_flight(cr: usize, record_size: usize) -> (Vec<u8>, Vec<u8>) {
    let mut stream = Vec::new();
    for (kind, len) in [(2u8, 70usize), (11, 900), (12, 140), (13, cr), (14, 0)] {
        stream.push(kind);
        stream.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        stream.extend((0..len).map(|k| (k * 13 + usize::from(kind)) as u8));
    }
    let mut wire = Vec::new();
    for chunk in stream.chunks(record_size) {
        RecordHeader::write(&mut wire, 22, [3, 3], chunk.len());
        wire.extend_from_slice(chunk);
    }
    (stream, wire)
}

fn fault_shaper(
    layout: Layout,
    rewrite: Rewrite,
    wire: &[u8],
    cuts: &[usize],
) -> (Shaper, Vec<u8>) {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    cuts.sort_unstable();
    let mut shaper = Shaper::with_rewrite(layout, 16_389, rewrite);
    let mut out = Vec::new();
    let mut from = 0;
    for c in cuts.into_iter().chain([wire.len()]) {
        shaper.feed(&wire[from..c], &mut out);
        from = c;
    }
    (shaper, out)
}

fn payloads(out: &[u8]) -> Vec<u8> {
    records(out).iter().flat_map(|(_, p)| p.to_vec()).collect()
}

proptest! {
    #[test]
    fn framing_faults_change_only_the_framing(
        cr in 1usize..5_000,
        record_size in 64usize..16_384,
        n in 1usize..700,
        coalesced in any::<bool>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let layout = if coalesced { Layout::Coalesced } else { Layout::PerMessage };
        let (stream, wire) = typed_flight(cr, record_size);
        let cr_at = 70 + 4 + 900 + 4 + 140 + 4;
        let cr_end = cr_at + 4 + cr;
        // Fragment: the same bytes; the request alone in records of <= n.
        let fragment = Rewrite { fragment_request: Some(n), ..Rewrite::default() };
        let (_, out) = fault_shaper(layout, fragment, &wire, &cuts);
        prop_assert_eq!(payloads(&out), stream.clone());
        let mut at = 0;
        let mut cr_records = 0;
        for (_, p) in records(&out) {
            if at >= cr_at && at < cr_end {
                prop_assert!(p.len() <= n);
                prop_assert!(at + p.len() <= cr_end, "a record crosses the request's end");
                cr_records += 1;
            }
            at += p.len();
        }
        prop_assert_eq!(cr_records, (cr + 4).div_ceil(n));
        // Close: everything up to the request's end, nothing after; closed.
        let close = Rewrite { close_after_request: true, ..Rewrite::default() };
        let (shaper, out) = fault_shaper(layout, close, &wire, &cuts);
        prop_assert!(shaper.closed());
        prop_assert_eq!(payloads(&out), stream[..cr_end].to_vec());
        // Hold: the ServerHelloDone waits for release, then comes whole.
        let hold = Rewrite { hold_done: true, ..Rewrite::default() };
        let (mut shaper, mut out) = fault_shaper(layout, hold, &wire, &cuts);
        prop_assert!(shaper.holding());
        prop_assert_eq!(payloads(&out), stream[..cr_end].to_vec());
        out.extend(shaper.release());
        prop_assert!(!shaper.holding());
        prop_assert_eq!(payloads(&out), stream.clone());
        let mut later = Vec::new();
        shaper.feed(&[20, 3, 3, 0, 1, 1], &mut later);
        prop_assert_eq!(later, vec![20, 3, 3, 0, 1, 1], "after the hold, bytes flow");
    }
}
