//! The operator's fix, per Windows version: the choices that make a Hub
//! accept the UM server again, what each one changes besides, and the files
//! an administrator reviews and applies (`umlab analyze --emit DIR`): a `.reg`
//! file for a registry choice and PowerShell scripts that back up every root
//! before removing exactly the listed thumbprints. Pure: the file contents are
//! built here, written by the caller.
//!
//! Facts (DESIGN.md 2b): Windows Server 2008 R2 sends the Trusted Root store
//! cut at 16 KB (`SendTrustedIssuerList` 1 by default, KB 933430); 2012 and
//! later send no list by default, but a Root store past 16 KB breaks client
//! authentication whatever `SendTrustedIssuerList` says (KB 2880390), and
//! `ClientAuthTrustMode` 2 trusts (and lists) only the Client Authentication
//! Issuers store. None of it can run on this machine: the lab applies the
//! equivalent (no list, or the pruned store) and shows the delivery.

use std::fmt;
use std::str::FromStr;

use certgen::Root;
use certgen::store::hex;

/// The Schannel registry key both settings live under.
pub const SCHANNEL_KEY: &str =
    r"HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Control\SecurityProviders\SCHANNEL";

/// The PowerShell path of the machine's Trusted Root store.
pub const ROOT_STORE: &str = r"Cert:\LocalMachine\Root";

/// The PowerShell path of the machine's Client Authentication Issuers store.
pub const CLIENT_AUTH_ISSUER_STORE: &str = r"Cert:\LocalMachine\ClientAuthIssuer";

/// The Hub's Windows version, which decides the fixes that apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Windows {
    /// Windows Server 2008 R2 (and 2008, 2003 with KB 933430): the list is
    /// sent and cut at 16 KB.
    #[default]
    Server2008R2,
    /// Windows Server 2012 and later.
    Server2012,
}

impl fmt::Display for Windows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Windows::Server2008R2 => "2008r2",
            Windows::Server2012 => "2012",
        })
    }
}

impl FromStr for Windows {
    type Err = String;

    fn from_str(s: &str) -> Result<Windows, String> {
        match s {
            "2008r2" | "2008" | "2003" => Ok(Windows::Server2008R2),
            "2012" | "2012r2" | "2016" | "2019" | "2022" | "2025" => Ok(Windows::Server2012),
            _ => Err(format!(
                "unknown Windows version {s:?}: expected 2008r2 or 2012 (2012 stands for 2012 \
                 and later)"
            )),
        }
    }
}

/// A file the operator reviews and applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixFile {
    /// Its name in the `--emit` folder.
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// One way to fix the Hub.
#[derive(Clone, Debug)]
pub struct FixOption {
    /// What to do, one line.
    pub title: String,
    /// Why it lets the UM server authenticate.
    pub effect: String,
    /// What else it changes.
    pub changes: String,
    /// Whether it is enough on its own (a pruning that cannot fit the budget
    /// is not).
    pub sufficient: bool,
    /// Store indices of the roots it removes (empty for a registry change).
    pub remove: Vec<usize>,
    /// Its files.
    pub files: Vec<FixFile>,
}

/// Everything the fix needs from the analysis.
#[derive(Clone, Debug)]
pub struct FixInput<'a> {
    /// The Hub's version.
    pub windows: Windows,
    /// The store, in its order.
    pub roots: &'a [Root],
    /// Schannel's budget in bytes of names.
    pub budget: usize,
    /// The store's TLS 1.2 list size.
    pub list_bytes: usize,
    /// Store indices of the client's issuers (`--issuer`).
    pub issuers: &'a [usize],
    /// The fewest roots to remove to fit the budget (the remediation), and
    /// whether that fits.
    pub fewest: (&'a [usize], bool),
}

/// The fixes for a store, in the order to consider them; none when the
/// store's list fits the budget (nothing is cut, and on 2012 the Root store
/// is under 16 KB).
pub fn plan(input: &FixInput<'_>) -> Vec<FixOption> {
    let mut out = Vec::new();
    let over = input.list_bytes > input.budget;
    if !over {
        return out;
    }
    match input.windows {
        Windows::Server2008R2 => {
            out.push(FixOption {
                title: "set SendTrustedIssuerList = 0 (registry; no restart of the Hub needed \
                        beyond new TLS sessions)"
                    .into(),
                effect: "the Hub's CertificateRequest carries no CA names; an empty list \
                         matches every certificate, so Schannel clients (the UM server) send \
                         theirs"
                    .into(),
                changes: "every client-authenticating client on this server sees an empty \
                          list: one with several certificates may offer another; nothing is \
                          removed from the store"
                    .into(),
                sufficient: true,
                remove: Vec::new(),
                files: vec![reg_file(
                    "SendTrustedIssuerList-0.reg",
                    &[
                        "Schannel sends no trusted-issuer list in its CertificateRequest",
                        "(KB 933430; the 2008 R2 default is 1). Delete the value to undo.",
                    ],
                    &[("SendTrustedIssuerList", 0)],
                )],
            });
            out.push(fewest_roots(input, false));
            let unneeded: Vec<usize> = input
                .roots
                .iter()
                .enumerate()
                .filter(|(i, r)| !input.issuers.contains(i) && !r.serves_client_auth())
                .map(|(i, _)| i)
                .collect();
            if !unneeded.is_empty() {
                let freed: usize = unneeded
                    .iter()
                    .filter_map(|&i| input.roots.get(i))
                    .map(|r| 2 + r.subject_der().len())
                    .sum();
                let after = input.list_bytes - freed;
                out.push(FixOption {
                    title: format!(
                        "remove the {} root(s) whose extended key usage excludes client \
                         authentication ({after} bytes of names after)",
                        unneeded.len()
                    ),
                    effect: "those roots can never anchor a client certificate, so removing \
                             them changes no client-authentication decision"
                        .into(),
                    changes: "the machine stops trusting them for their own purposes (server \
                              authentication, code signing, ...) unless Automatic Root \
                              Certificates Update brings them back"
                        .into(),
                    sufficient: after <= input.budget,
                    files: vec![remove_script(
                        "remove-non-client-auth-roots.ps1",
                        input.roots,
                        &unneeded,
                    )],
                    remove: unneeded,
                });
            }
        }
        Windows::Server2012 => {
            if input.issuers.is_empty() {
                out.push(FixOption {
                    title: "set ClientAuthTrustMode = 2 with the enterprise CA in the Client \
                            Authentication Issuers store (give --issuer to emit it)"
                        .into(),
                    effect: "Schannel trusts, and lists, only that store's CAs for client \
                             authentication"
                        .into(),
                    changes: "client certificates from any other CA are refused".into(),
                    sufficient: false,
                    remove: Vec::new(),
                    files: Vec::new(),
                });
            } else {
                let cas: Vec<&Root> = input
                    .issuers
                    .iter()
                    .filter_map(|&i| input.roots.get(i))
                    .collect();
                let mut files = vec![
                    reg_file(
                        "ClientAuthTrustMode-2.reg",
                        &[
                            "Exclusive CA trust: Schannel accepts client certificates only",
                            "from CAs in the Client Authentication Issuers store (Windows",
                            "Server 2012 and later). Delete the value to undo (default 0).",
                        ],
                        &[("ClientAuthTrustMode", 2)],
                    ),
                    import_script("client-auth-issuers.ps1", &cas),
                ];
                files.extend(cas.iter().enumerate().map(|(k, r)| FixFile {
                    name: format!("enterprise-ca-{}.cer", k + 1),
                    bytes: r.der().to_vec(),
                }));
                out.push(FixOption {
                    title: format!(
                        "set ClientAuthTrustMode = 2 and put the {} enterprise CA(s) in the \
                         Client Authentication Issuers store",
                        cas.len()
                    ),
                    effect: "client authentication no longer walks the Trusted Root store, \
                             so its size stops mattering; a list, when sent, holds only the \
                             enterprise CA(s)"
                        .into(),
                    changes: "client certificates from any CA outside that store are refused, \
                              even when the Root store trusts it (partner or device \
                              certificates: add their CAs too)"
                        .into(),
                    sufficient: true,
                    remove: Vec::new(),
                    files,
                });
            }
            out.push(fewest_roots(input, true));
        }
    }
    out
}

/// The fewest roots to remove to fit the budget (largest subjects first).
fn fewest_roots(input: &FixInput<'_>, kb2880390: bool) -> FixOption {
    let (remove, fits) = input.fewest;
    let after = input.list_bytes
        - remove
            .iter()
            .filter_map(|&i| input.roots.get(i))
            .map(|r| 2 + r.subject_der().len())
            .sum::<usize>();
    FixOption {
        title: format!(
            "remove the fewest roots: {} of {} ({after} bytes of names after, budget {})",
            remove.len(),
            input.roots.len(),
            input.budget
        ),
        effect: if kb2880390 {
            "the Root store falls under 16 KB, where KB 2880390's failure stops".into()
        } else {
            "the whole list fits 16 KB, so Schannel cuts nothing and the enterprise CA is \
             listed"
                .into()
        },
        changes: "the machine stops trusting the removed roots; Automatic Root Certificates \
                  Update may bring Microsoft-program roots back when a chain needs them \
                  (watch the store's size, or turn the update off by policy)"
            .into(),
        sufficient: fits,
        remove: remove.to_vec(),
        files: vec![remove_script(
            "remove-fewest-roots.ps1",
            input.roots,
            remove,
        )],
    }
}

/// One line of a comment: no line breaks or other control characters.
fn comment(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A Windows thumbprint: the SHA-1 of the certificate, upper-case hex.
pub fn thumbprint(root: &Root) -> String {
    hex(root.sha1()).to_ascii_uppercase()
}

/// A `.reg` file (regedit's format 5.00: UTF-16LE with a byte-order mark,
/// CRLF lines) setting DWORD values under [`SCHANNEL_KEY`].
pub fn reg_file(name: &str, notes: &[&str], values: &[(&str, u32)]) -> FixFile {
    let mut text = String::from("Windows Registry Editor Version 5.00\r\n\r\n");
    text.push_str("; Written by umlab analyze. Review before applying:\r\n");
    text.push_str(
        ";   reg import <this file>   (or double-click), then new TLS sessions use it.\r\n",
    );
    for n in notes {
        text.push_str(&format!("; {}\r\n", comment(n)));
    }
    text.push_str(&format!("\r\n[{SCHANNEL_KEY}]\r\n"));
    for (value, data) in values {
        text.push_str(&format!("\"{value}\"=dword:{data:08x}\r\n"));
    }
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    FixFile {
        name: name.to_owned(),
        bytes,
    }
}

/// UTF-8 with a byte-order mark and CRLF lines: what Windows PowerShell 5.1
/// reads as UTF-8 (without the mark it assumes the ANSI code page).
fn powershell(lines: &[String]) -> Vec<u8> {
    let mut bytes = vec![0xEF, 0xBB, 0xBF];
    for l in lines {
        bytes.extend_from_slice(l.as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
    bytes
}

/// A script that exports every listed root to `backup-roots\` next to the
/// script, stops if any export fails, then removes exactly those
/// thumbprints from [`ROOT_STORE`]; each thumbprint's line names its subject.
pub fn remove_script(name: &str, roots: &[Root], remove: &[usize]) -> FixFile {
    let mut l = vec![
        "# Written by umlab analyze. Review every line before running it, as an".to_owned(),
        format!(
            "# administrator, on the Hub. It removes {} root(s) from {ROOT_STORE}.",
            remove.len()
        ),
        "# Step 1 exports each one to .\\backup-roots\\<thumbprint>.cer and stops on any"
            .to_owned(),
        "# error; step 2 removes them. To undo: Import-Certificate -CertStoreLocation".to_owned(),
        format!("#   {ROOT_STORE} -FilePath .\\backup-roots\\<thumbprint>.cer"),
        "#Requires -RunAsAdministrator".to_owned(),
        "$ErrorActionPreference = 'Stop'".to_owned(),
        "$thumbprints = @(".to_owned(),
    ];
    for &i in remove {
        if let Some(r) = roots.get(i) {
            l.push(format!(
                "    '{}'  # {}",
                thumbprint(r),
                comment(&r.subject_text())
            ));
        }
    }
    l.extend(
        [
            ")",
            "$backup = Join-Path $PSScriptRoot 'backup-roots'",
            "New-Item -ItemType Directory -Force -Path $backup | Out-Null",
            "# Step 1: back up every root first (nothing is removed if one is missing).",
            "foreach ($t in $thumbprints) {",
            "    $cert = Get-Item -Path \"Cert:\\LocalMachine\\Root\\$t\"",
            "    Export-Certificate -Cert $cert -FilePath (Join-Path $backup \"$t.cer\") | Out-Null",
            "}",
            "# Step 2: remove exactly these thumbprints.",
            "foreach ($t in $thumbprints) {",
            "    Remove-Item -Path \"Cert:\\LocalMachine\\Root\\$t\"",
            "}",
            "Write-Output \"Removed $($thumbprints.Count) root(s); backups in $backup\"",
        ]
        .map(str::to_owned),
    );
    FixFile {
        name: name.to_owned(),
        bytes: powershell(&l),
    }
}

/// A script that imports the enterprise CA files written beside it
/// (`enterprise-ca-N.cer`) into [`CLIENT_AUTH_ISSUER_STORE`].
pub fn import_script(name: &str, cas: &[&Root]) -> FixFile {
    let mut l = vec![
        "# Written by umlab analyze. Review before running it, as an administrator, on".to_owned(),
        format!("# the Hub: it imports the enterprise CA(s) into {CLIENT_AUTH_ISSUER_STORE},"),
        "# the store ClientAuthTrustMode = 2 trusts for client authentication.".to_owned(),
        "#Requires -RunAsAdministrator".to_owned(),
        "$ErrorActionPreference = 'Stop'".to_owned(),
    ];
    for (k, r) in cas.iter().enumerate() {
        l.push(format!(
            "# {} (thumbprint {})",
            comment(&r.subject_text()),
            thumbprint(r)
        ));
        l.push(format!(
            "Import-Certificate -FilePath (Join-Path $PSScriptRoot 'enterprise-ca-{}.cer') \
             -CertStoreLocation {CLIENT_AUTH_ISSUER_STORE} | Out-Null",
            k + 1
        ));
    }
    FixFile {
        name: name.to_owned(),
        bytes: powershell(&l),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_versions_parse_and_print() {
        assert_eq!("2008r2".parse(), Ok(Windows::Server2008R2));
        assert_eq!("2019".parse(), Ok(Windows::Server2012));
        assert!("xp".parse::<Windows>().is_err());
        assert_eq!(Windows::Server2012.to_string(), "2012");
    }

    /// A self-signed root; `eku` empty: no extended key usage extension.
    fn root(cn: &str, eku: Vec<rcgen::ExtendedKeyUsagePurpose>) -> Root {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.extended_key_usages = eku;
        let cert = p.self_signed(&key).expect("certificate");
        Root::from_der(cert.der().to_vec()).expect("root")
    }

    #[test]
    fn roots_that_cannot_anchor_client_auth_are_a_separate_fix() {
        use rcgen::ExtendedKeyUsagePurpose as Eku;
        let long = "x".repeat(200);
        let mut roots = Vec::new();
        for k in 0..60 {
            roots.push(root(&format!("{long} any {k}"), Vec::new()));
            roots.push(root(&format!("{long} server {k}"), vec![Eku::ServerAuth]));
            roots.push(root(
                &format!("{long} client {k}"),
                vec![Eku::ServerAuth, Eku::ClientAuth],
            ));
        }
        let issuer = roots.len() - 1;
        let list_bytes: usize = roots.iter().map(|r| 2 + r.subject_der().len()).sum();
        let fewest: Vec<usize> = Vec::new();
        let fixes = plan(&FixInput {
            windows: Windows::Server2008R2,
            roots: &roots,
            budget: 16_384,
            list_bytes,
            issuers: &[issuer],
            fewest: (&fewest, false),
        });
        let option = fixes
            .iter()
            .find(|o| o.title.contains("excludes client authentication"))
            .expect("the EKU option");
        let removed: Vec<&Root> = option.remove.iter().filter_map(|&i| roots.get(i)).collect();
        assert_eq!(removed.len(), 60);
        assert!(
            removed
                .iter()
                .all(|r| r.subject_text().contains(" server "))
        );
        assert!(
            roots
                .iter()
                .filter(|r| !r.subject_text().contains(" server "))
                .all(Root::serves_client_auth)
        );
        // 60 of 180 long names leave about 2/3 of the list: still over 16 KB.
        assert!(!option.sufficient, "{}", option.title);
        assert_eq!(option.files.len(), 1);
    }

    #[test]
    fn a_reg_file_is_utf16_with_its_values() {
        let f = reg_file("x.reg", &["a\nb"], &[("SendTrustedIssuerList", 0)]);
        assert_eq!(f.bytes.get(..2), Some(&[0xFF, 0xFE][..]));
        let units: Vec<u16> = f
            .bytes
            .get(2..)
            .unwrap_or_default()
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let text = String::from_utf16(&units).expect("UTF-16");
        assert!(text.starts_with("Windows Registry Editor Version 5.00\r\n"));
        assert!(text.contains(&format!("[{SCHANNEL_KEY}]\r\n")));
        assert!(text.contains("\"SendTrustedIssuerList\"=dword:00000000\r\n"));
        assert!(
            text.contains("; a b\r\n"),
            "a note's line break is flattened"
        );
        assert!(!text.replace("\r\n", "").contains('\n'));
    }
}
