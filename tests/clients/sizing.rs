//! Stores whose CertificateRequest body is exactly a given number of bytes,
//! and where a preset's limit lies in bodies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use certgen::roots::RootsSpec;
use certgen::wire::RECORD_HEADER_LEN;
use certgen::{KeyAlg, Position, Profile as Subjects, Root, Store};
use lab_server::policy::{MessageShape, TlsVersion, records_for};
use um_sim::profile::{Profile, RequestFacts, buffered_bytes};

use crate::common::STORE_SEED;

/// lab-server's default record size, header included (16 KB of plaintext).
pub const DEFAULT_FRAGMENT: usize = 16_389;

/// The server's CertificateRequest shape for `tls`.
pub fn shape(tls: TlsVersion) -> MessageShape {
    lab_server::tls::message_shape(tls)
}

/// Bytes of names (sum of 2 + DER length) that make a body of `body` bytes.
pub fn list_for(shape: &MessageShape, body: usize) -> Option<usize> {
    // The fixed part, for a non-empty list (TLS 1.3 adds the extension then).
    let fixed = shape.body_len(100) - 100;
    body.checked_sub(fixed).filter(|&l| l > 0)
}

/// The largest body lab-server can send: the longest list the protocol carries.
pub fn max_body(shape: &MessageShape) -> usize {
    shape.body_len(shape.max_list())
}

/// What the client knows of a request of `body` bytes when it judges it:
/// lab-server's `per-message` layout starts the message on a record of its
/// own and cuts it at the record size.
pub fn facts(body: usize) -> RequestFacts {
    let message = body + certgen::wire::HANDSHAKE_HEADER_LEN;
    let payload = DEFAULT_FRAGMENT - RECORD_HEADER_LEN;
    let records: Vec<std::ops::Range<usize>> = (0..message)
        .step_by(payload)
        .map(|at| at..(at + payload).min(message))
        .collect();
    RequestFacts {
        body_len: body,
        records: records_for(message, DEFAULT_FRAGMENT),
        complete: true,
        buffered: buffered_bytes(0..message, records),
    }
}

/// The largest body in `lo..=hi` the profile's record rules let through
/// (they are monotone in the body), or `None` when even `lo` breaks one.
pub fn threshold(profile: &Profile, lo: usize, hi: usize) -> Option<usize> {
    let ok = |b: usize| profile.judge(&facts(b)).is_none();
    if !ok(lo) {
        return None;
    }
    let (mut good, mut bad) = (lo, hi + 1);
    if ok(hi) {
        return Some(hi);
    }
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        if ok(mid) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Some(good)
}

/// Subject lengths `fixed:LEN` can take, closest to 100 first.
fn lens() -> Vec<usize> {
    let mut v: Vec<usize> = (64..=1000)
        .filter(|&l| certgen::synth::der_len_exists(l))
        .collect();
    v.sort_by_key(|l| (l.abs_diff(100), *l));
    v
}

/// `n` roots of `fixed:len` and perhaps one of `fixed:filler` whose names
/// cost exactly `avail` bytes.
fn split(avail: usize) -> Option<(usize, usize, Option<usize>)> {
    let lens = lens();
    if let Some(&len) = lens.iter().find(|&&len| avail.is_multiple_of(len + 2)) {
        return Some((len, avail / (len + 2), None));
    }
    for &len in &lens {
        let cost = len + 2;
        let top = avail.saturating_sub(66) / cost;
        for n in (top.saturating_sub(12)..=top).rev() {
            let filler = avail - n * cost - 2;
            if (64..=1000).contains(&filler) && certgen::synth::der_len_exists(filler) {
                return Some((len, n, Some(filler)));
            }
        }
    }
    None
}

fn roots(count: usize, len: usize, seed: u64) -> Vec<Root> {
    if count == 0 {
        return Vec::new();
    }
    let spec = RootsSpec {
        count: count as u64,
        seed: Some(seed),
        profile: Subjects::Fixed(len),
        key: KeyAlg::Ed25519,
        dn_only: true,
    };
    let (store, _) = certgen::roots::generate(&spec, &|_| {}).expect("synthetic roots");
    store.into_roots()
}

/// A store whose names cost exactly `list` bytes, `ca` last; returns it with
/// the CA's index. Stores are generated once per size and CA.
pub fn store(list: usize, ca: &Root) -> (Store, usize) {
    type Key = (usize, Vec<u8>);
    type Cache = HashMap<Key, Arc<(Store, usize)>>;
    static CACHE: Mutex<Option<Cache>> = Mutex::new(None);
    let key = (list, ca.der().to_vec());
    let hit = CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|m| m.get(&key).cloned());
    if let Some(hit) = hit {
        return (hit.0.clone(), hit.1);
    }
    let ca_cost = 2 + ca.subject_der().len();
    let avail = list
        .checked_sub(ca_cost)
        .unwrap_or_else(|| panic!("a list of {list} bytes cannot hold the CA ({ca_cost})"));
    let (len, n, filler) =
        split(avail).unwrap_or_else(|| panic!("no fixed:LEN split for {avail} bytes of names"));
    let mut all = roots(n, len, STORE_SEED);
    if let Some(f) = filler {
        all.extend(roots(1, f, STORE_SEED + 1));
    }
    let mut store = Store::from_roots(all);
    let at = store.insert(ca.clone(), Position::Last);
    let got: usize = store
        .roots()
        .iter()
        .map(|r| 2 + r.subject_der().len())
        .sum();
    assert_eq!(got, list, "store of {n} x fixed:{len} + {filler:?} + CA");
    assert_eq!(at, store.len() - 1, "the CA is last");
    CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(key, Arc::new((store.clone(), at)));
    (store, at)
}

/// A small store: 20 roots of 100 bytes of DER, then `ca`.
pub fn small_store(ca: &Root) -> (Store, usize) {
    store(20 * 102 + 2 + ca.subject_der().len(), ca)
}

/// Bytes of names of the 20 roots of [`small_store`] before the CA.
pub const SMALL_BEFORE_CA: usize = 20 * 102;

/// TLS 1.2 unless the row says otherwise.
pub fn tls_arg(v: TlsVersion) -> &'static str {
    match v {
        TlsVersion::Tls12 => "1.2",
        TlsVersion::Tls13 => "1.3",
    }
}
