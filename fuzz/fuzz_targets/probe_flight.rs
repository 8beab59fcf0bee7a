//! `umlab probe`'s parsers of what a server sends: the first flight read as
//! it arrives (`FirstFlight`), and the LDAP StartTLS response in BER.
//!
//! Input: 3 bytes of settings, then the server's bytes.
//!   [0] which parser: even = the TLS flight, 1 mod 4 = LDAP, 3 mod 4 = a
//!       TLS 1.3 flight: a ServerHello, then the bytes as the decrypted
//!       handshake stream, sealed into protected records under a known
//!       secret (cut at the two cut points), which the flight is given
//!   [1..3] two cut points (value * len / 256) where the bytes are split
//!
//! Asserts: no panic; the flight reads the same however the bytes are cut;
//! it never counts more bytes than it was given; the names of a
//! CertificateRequest it parses fit in the body it measured. In TLS 1.3,
//! the same whether the secret comes before the records or after, and the
//! request's records carry exactly its bytes. For LDAP,
//! `element_len` never claims an element longer than it can see once it says
//! the header is whole, and a response that parses does so from exactly
//! that element.

#![no_main]

use libfuzzer_sys::fuzz_target;
use umlab::probe::ldap::{ExtendedResponse, element_len};
use umlab::probe::wire::FirstFlight;
use um_sim::tls13::{RecordKeys, Suite};

const SECRET: [u8; 32] = [7; 32];

/// A TLS 1.3 ServerHello record choosing TLS_AES_128_GCM_SHA256.
fn server_hello13() -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[9; 32]);
    body.extend_from_slice(&[0, 0x13, 0x01, 0, 0, 6, 0, 43, 0, 2, 3, 4]);
    let mut msg = vec![2, 0, 0, body.len() as u8];
    msg.extend_from_slice(&body);
    let mut wire = vec![22, 3, 3, 0, msg.len() as u8];
    wire.extend_from_slice(&msg);
    wire
}

/// The handshake stream `parts`, each sealed as protected records of at
/// most 16,384 bytes.
fn sealed(parts: &[&[u8]]) -> Vec<u8> {
    let mut keys = RecordKeys::new(Suite::Aes128GcmSha256, &SECRET).expect("keys");
    let mut wire = server_hello13();
    for part in parts {
        for chunk in part.chunks(16_384) {
            wire.extend(keys.seal(22, chunk).expect("seal"));
        }
    }
    wire
}

fn cuts(data: &[u8], a: u8, b: u8) -> Vec<&[u8]> {
    let (mut x, mut y) = (
        usize::from(a) * data.len() / 256,
        usize::from(b) * data.len() / 256,
    );
    if x > y {
        std::mem::swap(&mut x, &mut y);
    }
    vec![&data[..x], &data[x..y], &data[y..]]
}

/// What a reading left, compared across chunkings.
fn summary(f: &FirstFlight) -> String {
    format!(
        "{} {} {:?} {:?} {} {:?} {:?} {}",
        f.done(),
        f.complete(),
        f.error().map(|e| e.to_string()),
        f.server_hello().map(|h| (h.version, h.cipher_suite, h.hello_retry)),
        f.messages().len(),
        f.request()
            .map(|r| (r.body_bytes, r.records.len(), r.buffered_bytes, r.parsed.is_ok())),
        f.unreadable(),
        f.decrypted_messages().len(),
    )
}

/// A parsed request's names fit in its body; its records carry it exactly.
fn check_request(f: &FirstFlight) {
    let Some(r) = f.request() else {
        return;
    };
    if let Ok(body) = &r.parsed {
        let list: usize = body.ca_names().iter().map(|n| 2 + n.len()).sum();
        assert!(list <= r.body_bytes);
    }
    let carried: usize = r.records.iter().map(|s| s.request_bytes).sum();
    assert_eq!(carried, r.body_bytes + 4);
}

fuzz_target!(|input: &[u8]| {
    let Some((&[which, a, b], data)) = input.split_first_chunk::<3>() else {
        return;
    };
    if which % 2 == 0 {
        let mut whole = FirstFlight::new();
        whole.feed(data);
        let mut parts = FirstFlight::new();
        for part in cuts(data, a, b) {
            parts.feed(part);
        }
        assert_eq!(summary(&whole), summary(&parts));
        assert!(whole.bytes() <= data.len());
        check_request(&whole);
    } else if which % 4 == 3 {
        let wire = sealed(&cuts(data, a, b));
        // The secret before any protected record, and after all of them.
        let mut early = FirstFlight::new();
        let hello = server_hello13().len();
        early.feed(&wire[..hello]);
        early.set_secret(&SECRET);
        early.feed(&wire[hello..]);
        let mut late = FirstFlight::new();
        for part in cuts(&wire, b, a) {
            late.feed(part);
        }
        late.set_secret(&SECRET);
        assert_eq!(summary(&early), summary(&late));
        assert!(early.bytes() <= wire.len());
        check_request(&early);
    } else {
        if let Ok(Some(n)) = element_len(data) {
            if n <= data.len() {
                let _ = ExtendedResponse::parse(&data[..n]);
            }
        }
        let _ = ExtendedResponse::parse(data);
    }
});
