//! SMTP replies (RFC 5321 4.2): the pure line parser, the assembler that
//! builds a multi-line reply under caps, and the reader that feeds it.
//!
//! The caps keep a hostile or broken server (one that never sends the last
//! line of a reply, or a line without end) from growing the client without
//! bound: the attempt fails with a [`ReplyError`] naming the cap instead.
//! smtp-proto caps a reply the same way (4,096 bytes of text); um-sim's caps
//! are looser, as a lab client must not refuse an honest if verbose server.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// Most bytes of one reply line, line ending included: 4,096, eight times the
/// 512 octets RFC 5321 4.5.3.1.5 allows.
pub const MAX_REPLY_LINE: usize = 4096;

/// Most lines of one reply: 100. An EHLO reply listing every registered
/// extension has about 30.
pub const MAX_REPLY_LINES: usize = 100;

/// Most bytes of one reply, all lines and line endings together: 64 KiB.
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// A reply: code and lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Code.
    pub code: u16,
    /// Text of each line.
    pub lines: Vec<String>,
}

/// Why no reply could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    /// The connection failed or closed (the text is the operating system's).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A line that is not an SMTP reply line.
    #[error("not an SMTP reply: {0:?}")]
    Malformed(String),
    /// A line longer than [`MAX_REPLY_LINE`].
    #[error("a reply line passed {MAX_REPLY_LINE} bytes without ending, um-sim's cap on one line")]
    LineTooLong,
    /// A reply of more than [`MAX_REPLY_LINES`] lines.
    #[error(
        "the reply passed {MAX_REPLY_LINES} lines without a last line, um-sim's cap on one reply"
    )]
    TooManyLines,
    /// A reply of more than [`MAX_REPLY_BYTES`] bytes.
    #[error("the reply passed {MAX_REPLY_BYTES} bytes, um-sim's cap on one reply")]
    TooLarge,
    /// A multi-line reply whose lines carry different codes, which RFC 5321
    /// 4.2.1 forbids: which code is the reply cannot be told.
    #[error("a multi-line reply changed its code from {first} to {then} (RFC 5321 4.2.1)")]
    CodeChanged {
        /// The code of the reply's first line.
        first: u16,
        /// The code of the line that differed.
        then: u16,
    },
}

impl ReplyError {
    /// Whether one of um-sim's caps stopped the reply: the server spoke, but
    /// not SMTP as a client can follow it.
    pub fn is_over_cap(&self) -> bool {
        matches!(
            self,
            ReplyError::LineTooLong | ReplyError::TooManyLines | ReplyError::TooLarge
        )
    }

    /// Whether the server sent reply lines at all (over a cap, or with
    /// changing codes): it answered, so the session got that far, but not in
    /// SMTP a client can follow (UM's event 1185).
    pub fn server_replied(&self) -> bool {
        self.is_over_cap() || matches!(self, ReplyError::CodeChanged { .. })
    }
}

/// Parses one reply line: code, whether it is the last line, the text.
pub fn parse_reply_line(line: &str) -> Option<(u16, bool, &str)> {
    let code: u16 = line.get(..3)?.parse().ok()?;
    if !(200..600).contains(&code) {
        return None;
    }
    match line.as_bytes().get(3) {
        None => Some((code, true, "")),
        Some(b' ') => Some((code, true, line.get(4..).unwrap_or_default())),
        Some(b'-') => Some((code, false, line.get(4..).unwrap_or_default())),
        Some(_) => None,
    }
}

/// Builds one reply from its lines, enforcing the caps. Pure: the reader
/// below is its only I/O.
#[derive(Clone, Debug, Default)]
pub struct ReplyAssembler {
    lines: Vec<String>,
    bytes: usize,
    code: Option<u16>,
}

impl ReplyAssembler {
    /// Takes one line as received, line ending included. Returns the reply
    /// once its last line came, `None` while more lines are due.
    pub fn push(&mut self, raw: &[u8]) -> Result<Option<Reply>, ReplyError> {
        if raw.len() > MAX_REPLY_LINE {
            return Err(ReplyError::LineTooLong);
        }
        self.bytes = self.bytes.saturating_add(raw.len());
        if self.bytes > MAX_REPLY_BYTES {
            return Err(ReplyError::TooLarge);
        }
        if self.lines.len() >= MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines);
        }
        let text = String::from_utf8_lossy(raw);
        let text = text.trim_end();
        let (code, last, rest) =
            parse_reply_line(text).ok_or_else(|| ReplyError::Malformed(text.to_owned()))?;
        match self.code {
            Some(first) if first != code => {
                return Err(ReplyError::CodeChanged { first, then: code });
            }
            _ => self.code = Some(code),
        }
        self.lines.push(rest.to_owned());
        if !last {
            return Ok(None);
        }
        self.code = None;
        self.bytes = 0;
        Ok(Some(Reply {
            code,
            lines: std::mem::take(&mut self.lines),
        }))
    }
}

/// Reads one whole reply, holding at most [`MAX_REPLY_LINE`] bytes of a line
/// and [`MAX_REPLY_BYTES`] of the reply.
pub(crate) async fn read_reply<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Reply, ReplyError> {
    let mut reply = ReplyAssembler::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        // One byte past the cap tells a line that is too long from one that fits.
        let n = (&mut *r)
            .take(MAX_REPLY_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        if let Some(done) = reply.push(&line)? {
            return Ok(done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines() {
        assert_eq!(
            parse_reply_line("250-PIPELINING"),
            Some((250, false, "PIPELINING"))
        );
        assert_eq!(parse_reply_line("250 OK"), Some((250, true, "OK")));
        assert_eq!(parse_reply_line("221"), Some((221, true, "")));
        assert_eq!(parse_reply_line("2500"), None);
        assert_eq!(parse_reply_line("abc"), None);
        assert_eq!(parse_reply_line("999 x"), None);
    }

    /// Reads one reply from `bytes` (an in-memory server).
    fn read(bytes: Vec<u8>) -> Result<Reply, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut r = tokio::io::BufReader::new(std::io::Cursor::new(bytes));
            read_reply(&mut r).await.map_err(|e| e.to_string())
        })
    }

    fn lines(n: usize, text: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.extend_from_slice(format!("250-{text}\r\n").as_bytes());
        }
        v.extend_from_slice(b"250 end\r\n");
        v
    }

    #[test]
    fn a_reply_of_too_many_lines_is_refused() {
        // 100 lines pass (99 continuation lines and the last).
        assert_eq!(read(lines(99, "x")).unwrap().lines.len(), 100);
        let err = read(lines(1_000, "x")).expect_err("1,001 lines");
        assert!(err.contains("100 lines"), "{err}");
    }

    #[test]
    fn a_reply_of_too_many_bytes_is_refused() {
        // 40 lines of 2,000 bytes: under the line cap, over 64 KiB in all.
        let err = read(lines(40, &"x".repeat(2_000))).expect_err("80 KB");
        assert!(err.contains("65536 bytes"), "{err}");
        // 30 of them (60 KB) pass.
        assert_eq!(read(lines(30, &"x".repeat(2_000))).unwrap().lines.len(), 31);
    }

    #[test]
    fn a_reply_line_too_long_is_refused() {
        let mut long = b"250 ".to_vec();
        long.extend(std::iter::repeat_n(b'x', 10_000));
        long.extend_from_slice(b"\r\n");
        let err = read(long).expect_err("a 10,006-byte line");
        assert!(err.contains("4096 bytes"), "{err}");
        // A line of exactly 4,096 bytes, CRLF included, passes.
        let mut edge = b"250 ".to_vec();
        edge.extend(std::iter::repeat_n(b'x', 4_096 - 6));
        edge.extend_from_slice(b"\r\n");
        assert_eq!(read(edge).unwrap().lines[0].len(), 4_096 - 6);
    }

    #[test]
    fn a_reply_that_changes_its_code_is_refused() {
        let err = read(b"250-first\r\n550 second\r\n".to_vec()).expect_err("250 then 550");
        assert!(err.contains("from 250 to 550"), "{err}");
        // The same code on every line is one reply.
        let ok = read(b"250-first\r\n250 second\r\n".to_vec()).unwrap();
        assert_eq!((ok.code, ok.lines.len()), (250, 2));
    }
}
