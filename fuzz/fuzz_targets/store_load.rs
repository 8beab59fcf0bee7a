//! certgen's store file reader, `store::parse_file`, on PEM bundles, DER
//! certificates and PKCS #7 (.p7b) bundles.
//!
//! Input: the first byte picks the file name's extension (.pem, .crt, .der,
//! .cer, .p7b, .p7c, .sst), the rest is the file.
//!
//! Asserts: an accepted file gives at least one root; each root's DER parses
//! again to the same root; writing the roots as a PEM bundle and reading it
//! back gives the same roots in the same order; a refused file gets a
//! one-line error naming the file.
//!
//! certgen's .sst reader (`sst::read`): a store it reads, written again with
//! `sst::Writer`, reads back with the same certificates and friendly names;
//! accepted roots written as .sst (`Store::to_sst`) load back identical.
//!
//! certgen's strict PEM reader (`bundle::blocks`, `Block::decode`) on the same
//! bytes: a bundle it accepts, cut anywhere inside one of its blocks, is
//! refused (a cut bundle never loads as a smaller store), and cut right after
//! a block's END line gives exactly the blocks up to that one; a block that
//! decodes holds canonical base64 (its body, whitespace aside, is the
//! standard encoding of what it decodes to); every refusal is one line.

#![no_main]

use std::path::Path;

use certgen::bundle;
use certgen::sst;
use certgen::store::{Root, Store, parse_file};
use libfuzzer_sys::fuzz_target;

const EXTENSIONS: [&str; 7] = ["pem", "crt", "der", "cer", "p7b", "p7c", "sst"];

fn base64(data: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
    out
}

fn one_line(e: &impl std::fmt::Display) {
    let msg = e.to_string();
    assert!(!msg.is_empty() && !msg.contains(['\n', '\r']), "{msg:?}");
}

fn check_bundle(text: &[u8], pick: u8) {
    let blocks = match bundle::blocks(text) {
        Ok(b) => b,
        Err(e) => return one_line(&e),
    };
    // Where each line starts ('\n'-separated, as the reader splits).
    let mut starts = vec![0];
    starts.extend(
        text.iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i + 1),
    );
    let line = |n: usize| {
        let from = starts[n - 1];
        let to = starts.get(n).map_or(text.len(), |s| s - 1);
        (from, &text[from..to])
    };
    for (i, block) in blocks.iter().enumerate().take(4) {
        let (from, begin) = line(block.line);
        let begin_at = from + begin.iter().take_while(|b| b.is_ascii_whitespace()).count();
        // Its END line: the first line after BEGIN that starts with -----END.
        let end_line = (block.line + 1..=starts.len())
            .find(|&n| line(n).1.trim_ascii().starts_with(b"-----END"))
            .expect("an accepted block has its END line");
        let (from, end) = line(end_line);
        let end_at = from + end.len() - (end.len() - end.trim_ascii_end().len());
        if end_at - begin_at >= 2 {
            let cut = begin_at + 1 + (usize::from(pick) * 131 + i * 17) % (end_at - begin_at - 1);
            match bundle::blocks(&text[..cut]) {
                Err(e) => one_line(&e),
                Ok(b) => panic!(
                    "cut at {cut}, inside block {} ({begin_at}..{end_at}), loads {} blocks",
                    block.index,
                    b.len()
                ),
            }
        }
        let upto = bundle::blocks(&text[..end_at]).expect("cut after an END line loads");
        assert_eq!(upto.len(), i + 1, "cut after block {}", block.index);
        assert!(
            upto.iter()
                .zip(&blocks)
                .all(|(a, b)| a.label == b.label && a.line == b.line)
        );
        match block.decode() {
            Ok(der) => {
                let body: Vec<u8> = (block.line + 1..end_line)
                    .flat_map(|n| line(n).1.iter().copied())
                    .filter(|b| !b.is_ascii_whitespace())
                    .collect();
                assert_eq!(
                    body,
                    base64(&der),
                    "block {}: base64 not canonical",
                    block.index
                );
            }
            Err(e) => one_line(&e),
        }
    }
}

/// certgen's .sst reader: what it reads, written again with its writer,
/// reads back the same (certificates and friendly names, in order).
fn check_sst(bytes: &[u8]) {
    let certs = match sst::read(bytes) {
        Ok(c) => c,
        Err(e) => return one_line(&e),
    };
    let mut w = sst::Writer::new();
    for c in &certs {
        if let Some(name) = &c.friendly_name {
            w.friendly_name(name).expect("a name read writes again");
        }
        w.certificate(&c.der)
            .expect("a certificate read writes again");
    }
    let again = sst::read(&w.finish()).expect("what the writer wrote reads");
    assert_eq!(again.len(), certs.len());
    for (a, b) in again.iter().zip(&certs) {
        assert_eq!(a.der, b.der);
        assert_eq!(a.friendly_name, b.friendly_name);
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&pick, bytes)) = input.split_first() else {
        return;
    };
    check_bundle(bytes, pick);
    check_sst(bytes);
    let name = format!("fuzz.{}", EXTENSIONS[usize::from(pick) % EXTENSIONS.len()]);
    let path = Path::new(&name);
    match parse_file(path, bytes) {
        Ok(roots) => {
            assert!(!roots.is_empty(), "{name}: accepted with no roots");
            let mut bundle = String::new();
            for root in &roots {
                let again =
                    Root::from_der(root.der().to_vec()).expect("a loaded root's DER parses");
                assert!(again == *root, "DER round trip changed the root");
                assert!(!root.subject_der().is_empty());
                let _ = root.subject_text();
                bundle.push_str(&root.to_pem());
            }
            let reloaded = parse_file(Path::new("bundle.pem"), bundle.as_bytes())
                .expect("the roots written as PEM load again");
            assert!(reloaded == roots, "PEM round trip changed the roots");
            let store = Store::from_roots(roots.clone());
            let sst = store.to_sst().expect("loaded roots write as .sst");
            let reloaded = parse_file(Path::new("store.sst"), &sst).expect("the .sst loads again");
            assert!(reloaded == roots, ".sst round trip changed the roots");
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with(&name),
                "error does not name the file: {msg:?}"
            );
            assert!(!msg.contains(['\n', '\r']), "multi-line error: {msg:?}");
        }
    }
});
