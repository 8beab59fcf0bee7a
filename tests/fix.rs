//! The operator's fix, applied in the lab: `umlab analyze` on the incident's
//! store (354 realistic roots, the enterprise CA last) plans the fixes for a
//! 2008 R2 Hub; the PowerShell script removes exactly the planned
//! thumbprints, each backed up first, and the store without them delivers
//! under the Schannel policy where the whole store failed; the `.reg` file's
//! SendTrustedIssuerList = 0 is the `omit` policy, which delivers too. The
//! Windows side (regedit, PowerShell, Schannel) is not verified here: no
//! Windows on this machine.

mod common;

use std::collections::BTreeSet;

use certgen::Profile;
use common::{pki, start_server, store_with, submit_one};
use lab_server::policy::Policy;
use umlab::analyze::{Analysis, Request, analyze};
use umlab::fix::{FixFile, Windows};

/// The incident's store and its analysis for `windows`.
fn incident(windows: Windows) -> (certgen::Store, usize, Analysis, tempfile::TempDir) {
    let (store, ca) = store_with(354, Profile::Realistic);
    let dir = tempfile::tempdir().expect("temp dir");
    let bundle: String = store.roots().iter().map(|r| r.to_pem()).collect();
    let (path, issuer) = (dir.path().join("roots.pem"), dir.path().join("ca.pem"));
    std::fs::write(&path, bundle).expect("store file");
    std::fs::write(&issuer, pki().ca.root().expect("CA").to_pem()).expect("issuer file");
    let a = analyze(&Request {
        store: path,
        issuer: Some(issuer),
        must_keep: Vec::new(),
        budget: certgen::wire::SCHANNEL_LIMIT,
        windows,
    })
    .expect("analysis");
    (store, ca, a, dir)
}

fn file<'a>(a: &'a Analysis, name: &str) -> &'a FixFile {
    a.fixes
        .iter()
        .flat_map(|o| &o.files)
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no {name} among the fix's files"))
}

/// The script as PowerShell reads it: UTF-8 after its byte-order mark.
fn script_text(f: &FixFile) -> String {
    let body = f
        .bytes
        .strip_prefix(&[0xEF, 0xBB, 0xBF][..])
        .expect("a UTF-8 BOM");
    String::from_utf8(body.to_vec()).expect("UTF-8")
}

/// The thumbprints in the script's `$thumbprints = @( ... )` block, each
/// with the comment on its line.
fn listed(script: &str) -> Vec<(String, String)> {
    let start = script.find("$thumbprints = @(").expect("the list");
    let end = start + script[start..].find("\r\n)\r\n").expect("its end");
    script[start..end]
        .split("\r\n")
        .skip(1)
        .map(|line| {
            let line = line.trim();
            let (quoted, comment) = line.split_once("  # ").expect("a comment on each line");
            let t = quoted.trim_matches('\'');
            assert!(
                t.len() == 40
                    && t.chars()
                        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()),
                "{line}"
            );
            (t.to_owned(), comment.to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_script_removes_exactly_the_plan_and_the_pruned_store_delivers() {
    let (store, ca, a, _dir) = incident(Windows::Server2008R2);
    // Before: the incident.
    let lab = start_server(store.clone(), ca, |s| s.policy.policy = Policy::Schannel)
        .await
        .expect("lab-server");
    let before = submit_one(&lab, "schannel-2008r2").await;
    assert!(!before.delivered, "{before:#?}");
    lab.server.shutdown(std::time::Duration::from_secs(1)).await;

    let option = a
        .fixes
        .iter()
        .find(|o| o.files.iter().any(|f| f.name == "remove-fewest-roots.ps1"))
        .expect("the fewest-roots option");
    assert!(option.sufficient);
    let script = script_text(file(&a, "remove-fewest-roots.ps1"));
    let lines = listed(&script);
    // Exactly the plan's thumbprints, each once, each named by its subject.
    let plan: BTreeSet<String> = option
        .remove
        .iter()
        .map(|&i| umlab::fix::thumbprint(&store.roots()[i]))
        .collect();
    let got: BTreeSet<String> = lines.iter().map(|(t, _)| t.clone()).collect();
    assert_eq!(got.len(), lines.len(), "a thumbprint listed twice");
    assert_eq!(got, plan);
    for (t, subject) in &lines {
        let root = store
            .roots()
            .iter()
            .find(|r| certgen::store::hex(r.sha1()).eq_ignore_ascii_case(t))
            .expect("a thumbprint of the store");
        assert_eq!(subject, &root.subject_text());
    }
    assert!(
        !got.contains(&umlab::fix::thumbprint(&store.roots()[ca])),
        "the CA stays"
    );
    // Every root is exported before anything is removed.
    let export = script.find("Export-Certificate").expect("a backup step");
    let remove = script.find("Remove-Item").expect("a removal step");
    assert!(export < remove);
    assert_eq!(script.matches("Remove-Item").count(), 1, "one removal loop");

    // After: the store without the script's thumbprints delivers.
    let pruned = certgen::Store::from_roots(
        store
            .roots()
            .iter()
            .filter(|r| !got.contains(&certgen::store::hex(r.sha1()).to_ascii_uppercase()))
            .cloned()
            .collect(),
    );
    assert_eq!(pruned.len(), store.len() - plan.len());
    let at = pruned.len() - 1;
    let lab = start_server(pruned, at, |s| s.policy.policy = Policy::Schannel)
        .await
        .expect("lab-server");
    assert!(!lab.server.report().truncated, "{:?}", lab.server.report());
    let after = submit_one(&lab, "schannel-2008r2").await;
    assert!(after.delivered, "{after:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reg_file_sets_send_trusted_issuer_list_0_which_delivers() {
    let (store, ca, a, _dir) = incident(Windows::Server2008R2);
    let reg = file(&a, "SendTrustedIssuerList-0.reg");
    let units: Vec<u16> = reg.bytes[2..]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(&reg.bytes[..2], &[0xFF, 0xFE]);
    let text = String::from_utf16(&units).expect("UTF-16LE");
    // regedit's lines end in CRLF.
    assert!(!text.replace("\r\n", "").contains('\n'), "{text}");
    let key = text
        .split("\r\n")
        .find(|l| l.starts_with('['))
        .expect("a key line");
    assert_eq!(
        key,
        r"[HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Control\SecurityProviders\SCHANNEL]"
    );
    let values: Vec<&str> = text.split("\r\n").filter(|l| l.starts_with('"')).collect();
    assert_eq!(values, ["\"SendTrustedIssuerList\"=dword:00000000"]);
    // SendTrustedIssuerList = 0 is lab-server's `omit`.
    let lab = start_server(store, ca, |s| s.policy.policy = Policy::Omit)
        .await
        .expect("lab-server");
    let a = submit_one(&lab, "schannel-2008r2").await;
    assert!(a.delivered, "{a:#?}");
}

#[test]
fn windows_2012_puts_the_enterprise_ca_in_the_client_auth_issuers_store() {
    let (_, _, a, _dir) = incident(Windows::Server2012);
    let reg = file(&a, "ClientAuthTrustMode-2.reg");
    let units: Vec<u16> = reg.bytes[2..]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let text = String::from_utf16(&units).expect("UTF-16LE");
    assert!(
        text.contains("\"ClientAuthTrustMode\"=dword:00000002\r\n"),
        "{text}"
    );
    assert_eq!(file(&a, "enterprise-ca-1.cer").bytes, pki().ca.cert_der);
    let import = script_text(file(&a, "client-auth-issuers.ps1"));
    assert_eq!(
        import
            .lines()
            .filter(|l| l.starts_with("Import-Certificate"))
            .count(),
        1
    );
    assert!(import.contains(r"-CertStoreLocation Cert:\LocalMachine\ClientAuthIssuer"));
    assert!(a.to_string().contains("KB 2880390"));
    // A store that fits needs no fix on either version.
    let (small, _) = store_with(50, Profile::Realistic);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("small.pem");
    let pem: String = small.roots().iter().map(|r| r.to_pem()).collect();
    std::fs::write(&path, pem).expect("write");
    for windows in [Windows::Server2008R2, Windows::Server2012] {
        let a = analyze(&Request {
            store: path.clone(),
            issuer: None,
            must_keep: Vec::new(),
            budget: certgen::wire::SCHANNEL_LIMIT,
            windows,
        })
        .expect("analysis");
        assert!(a.fixes.is_empty(), "{windows}: {:?}", a.fixes);
    }
}
