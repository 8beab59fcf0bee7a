//! `umlab probe`'s parsers of what a server sends: the first flight read as
//! it arrives (`FirstFlight`), and the LDAP StartTLS response in BER.
//!
//! Input: 3 bytes of settings, then the server's bytes.
//!   [0] which parser: even = the TLS flight, odd = LDAP
//!   [1..3] two cut points (value * len / 256) where the bytes are split
//!
//! Asserts: no panic; the flight reads the same however the bytes are cut;
//! it never counts more bytes than it was given; the names of a
//! CertificateRequest it parses fit in the body it measured. For LDAP,
//! `element_len` never claims an element longer than it can see once it says
//! the header is whole, and a response that parses does so from exactly
//! that element.

#![no_main]

use libfuzzer_sys::fuzz_target;
use umlab::probe::ldap::{ExtendedResponse, element_len};
use umlab::probe::wire::FirstFlight;

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
        "{} {} {:?} {:?} {} {:?}",
        f.done(),
        f.complete(),
        f.error().map(|e| e.to_string()),
        f.server_hello().map(|h| (h.version, h.cipher_suite, h.hello_retry)),
        f.messages().len(),
        f.request()
            .map(|r| (r.body_bytes, r.records.len(), r.buffered_bytes, r.parsed.is_ok())),
    )
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
        if let Some(Ok(cr)) = whole.request().map(|r| &r.parsed) {
            let list: usize = cr.ca_names.iter().map(|n| 2 + n.len()).sum();
            assert!(list <= whole.request().map_or(0, |r| r.body_bytes));
        }
    } else {
        if let Ok(Some(n)) = element_len(data) {
            if n <= data.len() {
                let _ = ExtendedResponse::parse(&data[..n]);
            }
        }
        let _ = ExtendedResponse::parse(data);
    }
});
