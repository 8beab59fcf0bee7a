//! SMTP replies (RFC 5321 4.2): the pure line parser and the reader that
//! assembles a multi-line reply.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// A reply: code and lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Code.
    pub code: u16,
    /// Text of each line.
    pub lines: Vec<String>,
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

/// Reads one whole reply.
pub(crate) async fn read_reply<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Reply> {
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        // Replies are short; a server sending megabytes without a newline is broken.
        let n = (&mut *r).take(4096).read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        let (code, last, rest) = parse_reply_line(text).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not an SMTP reply: {text:?}"),
            )
        })?;
        lines.push(rest.to_owned());
        if last {
            return Ok(Reply { code, lines });
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
}
