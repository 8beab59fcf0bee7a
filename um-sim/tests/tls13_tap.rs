//! The record tap in TLS 1.3: a server flight protected under a known
//! handshake secret, fed as it would come off the wire. The tap holds the
//! protected records until it has the secret, then judges the decrypted
//! CertificateRequest exactly as it judges TLS 1.2's plaintext one.

use certgen::wire::{RecordHeader, write_ca_list};
use proptest::prelude::*;
use um_sim::profile::{Profile, Rule};
use um_sim::tap::Tap;
use um_sim::tls13::{CertificateRequest13, RecordKeys, Suite};

const SERVER_SECRET: [u8; 32] = [0x5e; 32];
const CLIENT_SECRET: [u8; 32] = [0xc1; 32];
/// The change_cipher_spec record after the ServerHello (middlebox
/// compatibility): it passes unjudged.
const CCS: usize = 6;

/// A ServerHello record choosing TLS 1.3 with `suite`.
fn server_hello(suite: u16) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x42; 32]);
    body.push(0);
    body.extend_from_slice(&suite.to_be_bytes());
    body.push(0);
    // supported_versions = 0x0304
    let exts = [0u8, 43, 0, 2, 3, 4];
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut msg = vec![2, 0, 0, body.len() as u8];
    msg.extend_from_slice(&body);
    let mut rec = Vec::new();
    RecordHeader::write(&mut rec, 22, [3, 3], msg.len());
    rec.extend_from_slice(&msg);
    rec
}

/// A TLS 1.3 CertificateRequest message with `names`, and its body length.
fn request(names: &[Vec<u8>]) -> (Vec<u8>, usize) {
    let mut ca = Vec::new();
    write_ca_list(&mut ca, names).unwrap();
    let mut exts = vec![0, 13, 0, 6, 0, 4, 4, 3, 8, 4, 0, 47];
    exts.extend_from_slice(&(ca.len() as u16).to_be_bytes());
    exts.extend_from_slice(&ca);
    let mut body = vec![0];
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let n = body.len();
    let mut msg = vec![13, (n >> 16) as u8, (n >> 8) as u8, n as u8];
    msg.extend_from_slice(&body);
    (msg, n)
}

/// The whole server flight: ServerHello, change_cipher_spec, then
/// EncryptedExtensions, the request and a Finished protected in records of
/// at most `chunk` bytes of plaintext; with the ServerHello's record length.
fn flight(names: &[Vec<u8>], chunk: usize) -> (Vec<u8>, usize, usize) {
    let mut wire = server_hello(0x1301);
    let sh = wire.len();
    wire.extend_from_slice(&[20, 3, 3, 0, 1, 1]);
    let mut plain = vec![8, 0, 0, 2, 0, 0];
    let (req, body) = request(names);
    plain.extend_from_slice(&req);
    plain.extend_from_slice(&[20, 0, 0, 32]);
    plain.extend_from_slice(&[0xf1; 32]);
    let mut keys = RecordKeys::new(Suite::Aes128GcmSha256, &SERVER_SECRET).unwrap();
    for part in plain.chunks(chunk) {
        wire.extend_from_slice(&keys.seal(22, part).unwrap());
    }
    // What follows the flight (application data) is none of the tap's business.
    wire.extend_from_slice(&keys.seal(23, b"220 after").unwrap());
    (wire, sh, body)
}

fn names(count: usize, len: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let mut n = vec![0x30, (len - 2) as u8];
            n.extend(std::iter::repeat_n(i as u8, len - 2));
            n
        })
        .collect()
}

#[test]
fn protected_records_wait_for_the_secret_then_the_request_is_judged() {
    // 400 names of 100 bytes: a body over Java's 32,768.
    let (wire, sh, body) = flight(&names(400, 100), 16_384);
    assert!(body > 32_768);
    let mut tap = Tap::new("java17".parse().unwrap());
    assert_eq!(tap.feed(&wire), Ok(()), "nothing judged without the secret");
    assert_eq!(
        tap.releasable(),
        Some(sh + CCS),
        "only the ServerHello and change_cipher_spec may pass"
    );
    assert!(tap.wants_secrets());
    assert_eq!(
        tap.set_secrets(&SERVER_SECRET, Some(&CLIENT_SECRET)),
        Err(Rule::MaxBody(32_768))
    );
    let seen = tap.seen();
    assert!(seen.tls13);
    let req = seen.request.expect("the request, judged on its header");
    assert_eq!(
        (req.body_bytes, req.complete, req.encrypted),
        (body, false, true)
    );
    // The alert goes out protected under the client's handshake key.
    let alert = tap.alert_record(Rule::MaxBody(32_768)).unwrap();
    let mut client = RecordKeys::new(Suite::Aes128GcmSha256, &CLIENT_SECRET).unwrap();
    let (h, p) = alert.split_at(5);
    assert_eq!(
        client.open(h, p).unwrap(),
        (21, vec![2, 10]),
        "unexpected_message"
    );
}

#[test]
fn a_request_within_the_limit_is_measured_like_tls12() {
    let list = names(200, 100);
    let (wire, _, body) = flight(&list, 16_384);
    let mut tap = Tap::new("java17".parse().unwrap());
    tap.feed(&wire).unwrap();
    tap.set_secrets(&SERVER_SECRET, None).unwrap();
    let seen = tap.seen();
    let req = seen.request.expect("request");
    assert_eq!(req.body_bytes, body);
    assert!(req.complete && req.encrypted);
    assert_eq!(req.ca_names, list);
    assert_eq!(req.records, 2, "6 + 4 + body bytes in 16 KB records");
    assert_eq!(
        tap.releasable(),
        None,
        "after the Finished every byte passes"
    );
    assert!(tap.is_done());
}

#[test]
fn one_record_and_max_buffer_count_protected_records() {
    let list = names(200, 100);
    let (wire, _, _) = flight(&list, 16_384);
    let mut legacy = Tap::new("one-record".parse().unwrap());
    legacy.feed(&wire).unwrap();
    assert_eq!(
        legacy.set_secrets(&SERVER_SECRET, None),
        Err(Rule::OneRecord)
    );
    // A body of 16,000 in one record: its record costs header + plaintext +
    // content type + tag.
    let small = names(160, 98);
    let (wire, _, body) = flight(&small, 16_384);
    let mut tap = Tap::new("max-buffer=100000".parse().unwrap());
    tap.feed(&wire).unwrap();
    tap.set_secrets(&SERVER_SECRET, None).unwrap();
    let req = tap.seen().request.unwrap();
    assert_eq!(req.records, 1);
    assert_eq!(req.buffered_bytes, 5 + 6 + 4 + body + 4 + 32 + 1 + 16);
}

#[test]
fn a_wrong_secret_leaves_the_tap_blind_not_stuck() {
    let (wire, _, _) = flight(&names(10, 100), 16_384);
    let mut tap = Tap::new("java17".parse().unwrap());
    tap.feed(&wire).unwrap();
    tap.set_secrets(&CLIENT_SECRET, None).unwrap();
    assert!(tap.is_done());
    assert_eq!(tap.releasable(), None);
    let seen = tap.seen();
    assert!(seen.request.is_none());
    assert!(seen.blind.unwrap().contains("does not decrypt"));
}

#[test]
fn the_decrypted_names_parse_as_rfc_8446_says() {
    let list = names(3, 40);
    let (msg, body) = request(&list);
    let req = CertificateRequest13::parse(&msg[4..]).unwrap();
    assert_eq!(req.ca_names, list);
    assert_eq!(msg.len(), body + 4);
}

proptest! {
    /// However the wire is cut, the tap reaches the same verdict and the
    /// same facts, and it never lets a protected byte pass unjudged.
    #[test]
    fn verdicts_do_not_depend_on_how_the_bytes_arrive(
        count in 1usize..400,
        chunk in 64usize..16_385,
        cuts in prop::collection::vec(1usize..5000, 1..40),
    ) {
        let list = names(count, 100);
        let (wire, sh, body) = flight(&list, chunk);
        let profile: Profile = "java17".parse().unwrap();
        let mut tap = Tap::new(profile.clone());
        let mut at = 0;
        let mut verdict = Ok(());
        let mut keyed = false;
        for cut in cuts.iter().cycle() {
            if at >= wire.len() || verdict.is_err() {
                break;
            }
            let end = (at + cut).min(wire.len());
            verdict = tap.feed(&wire[at..end]);
            at = end;
            // None: every byte fed may pass (before the ServerHello is
            // whole, all of them are its own).
            let allowed = tap.releasable().unwrap_or(at);
            prop_assert!(keyed || allowed <= sh + CCS, "{} of {}", allowed, sh);
            if !keyed && at >= sh && verdict.is_ok() {
                keyed = true;
                verdict = tap.set_secrets(&SERVER_SECRET, None);
            }
        }
        let over = body > 32_768;
        prop_assert_eq!(verdict.is_err(), over);
        let req = tap.seen().request.expect("request seen");
        prop_assert_eq!(req.body_bytes, body);
        if !over {
            prop_assert_eq!(req.ca_names, list);
        }
    }
}
