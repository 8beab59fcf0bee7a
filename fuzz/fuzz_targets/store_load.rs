//! certgen's store file reader, `store::parse_file`, on PEM bundles, DER
//! certificates and PKCS #7 (.p7b) bundles.
//!
//! Input: the first byte picks the file name's extension (.pem, .crt, .der,
//! .cer, .p7b, .p7c), the rest is the file.
//!
//! Asserts: an accepted file gives at least one root; each root's DER parses
//! again to the same root; writing the roots as a PEM bundle and reading it
//! back gives the same roots in the same order; a refused file gets a
//! one-line error naming the file.

#![no_main]

use std::path::Path;

use certgen::store::{Root, parse_file};
use libfuzzer_sys::fuzz_target;

const EXTENSIONS: [&str; 6] = ["pem", "crt", "der", "cer", "p7b", "p7c"];

fuzz_target!(|input: &[u8]| {
    let Some((&pick, bytes)) = input.split_first() else {
        return;
    };
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
