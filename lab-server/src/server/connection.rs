//! Line framing over the connection's byte stream, plaintext or TLS, and the
//! count of bytes the session has read (its transfer budget).

use std::time::Duration;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};

use crate::smtp::Reply;

/// How long, and how many bytes, a closing session reads and drops so its
/// last reply is not destroyed by a reset.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1024 * 1024;

/// A line read with a length limit.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Line {
    /// The line without its line end, and whether that end was CRLF (not a
    /// bare LF).
    Text(Vec<u8>, bool),
    /// A line over the limit, consumed to its end and dropped; whether its
    /// end was CRLF. Only `<CRLF>.<CRLF>` ends DATA, so a cut line's ending
    /// matters as much as a whole one's.
    TooLong(bool),
    /// The peer closed the stream.
    Eof,
}

/// A buffered stream that reads lines and counts every byte consumed.
pub(super) struct Framed<S> {
    io: BufReader<S>,
    received: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Framed<S> {
    /// Wraps a stream; `received` carries the count over from an earlier
    /// stage of the same session (plaintext before STARTTLS).
    pub(super) fn new(stream: S, received: u64) -> Framed<S> {
        Framed {
            io: BufReader::new(stream),
            received,
        }
    }

    /// Bytes consumed so far in the session.
    pub(super) fn received(&self) -> u64 {
        self.received
    }

    /// Bytes read from the socket but not consumed as lines.
    pub(super) fn buffered(&self) -> usize {
        self.io.buffer().len()
    }

    /// The stream, dropping anything buffered.
    pub(super) fn into_inner(self) -> S {
        self.io.into_inner()
    }

    /// The stream, for shutdown.
    pub(super) fn get_mut(&mut self) -> &mut S {
        self.io.get_mut()
    }

    /// Writes one reply and flushes it.
    pub(super) async fn send(&mut self, reply: &Reply) -> std::io::Result<()> {
        let stream = self.io.get_mut();
        stream.write_all(reply.to_string().as_bytes()).await?;
        stream.flush().await
    }

    /// Closes after a final reply so the client can read it: sends FIN, then
    /// reads and drops what the client still sends for a moment. Closing a
    /// socket with unread input sends a reset, and a reset can destroy the
    /// reply before the client reads it.
    pub(super) async fn linger(&mut self) {
        let _ = self.io.get_mut().shutdown().await;
        let drain = async {
            let mut sink = [0u8; 4096];
            let mut left = LINGER_BYTES;
            while left > 0 {
                match self.io.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drain).await;
    }

    /// Reads one line (LF-terminated; CRLF stripped) keeping at most `max`
    /// bytes in memory: a longer line is consumed to its end and reported as
    /// too long.
    pub(super) async fn read_line(&mut self, max: usize) -> std::io::Result<Line> {
        let (line, consumed) = read_line(&mut self.io, max).await?;
        self.received = self.received.saturating_add(consumed);
        Ok(line)
    }
}

/// [`Framed::read_line`] on any buffered reader; returns the line and the
/// bytes consumed.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, max: usize) -> std::io::Result<(Line, u64)> {
    let mut line = Vec::new();
    let mut too_long = false;
    let mut consumed = 0u64;
    // The byte before the LF, which may sit at the end of an earlier chunk.
    let mut last: Option<u8> = None;
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok((Line::Eof, consumed));
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let piece = chunk.get(..take).unwrap_or_default();
        let before_lf = if done {
            piece.len().checked_sub(2).and_then(|i| piece.get(i))
        } else {
            piece.last()
        };
        if done && take == 1 {
            // The LF opens this chunk: the byte before it is the last one seen.
        } else if let Some(&b) = before_lf {
            last = Some(b);
        }
        if !too_long {
            line.extend_from_slice(piece);
            if line.len() > max {
                too_long = true;
                line = Vec::new();
            }
        }
        r.consume(take);
        consumed += take as u64;
        if done {
            break;
        }
    }
    if too_long {
        return Ok((Line::TooLong(last == Some(b'\r')), consumed));
    }
    if line.ends_with(b"\n") {
        line.pop();
    }
    let crlf = line.ends_with(b"\r");
    if crlf {
        line.pop();
    }
    Ok((Line::Text(line, crlf), consumed))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize, chunk: usize) -> Vec<Line> {
        let mut r = tokio::io::BufReader::with_capacity(chunk, input);
        let mut out = Vec::new();
        loop {
            let (line, _) = read_line(&mut r, max).await.unwrap();
            let eof = line == Line::Eof;
            out.push(line);
            if eof {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn an_over_long_line_keeps_its_ending() {
        for chunk in [1, 2, 3, 7, 64, 4096] {
            let long = [vec![b'x'; 20], b"\n".to_vec()].concat();
            assert_eq!(
                lines(&long, 10, chunk).await,
                vec![Line::TooLong(false), Line::Eof],
                "bare LF, chunk {chunk}"
            );
            let long = [vec![b'x'; 20], b"\r\n".to_vec()].concat();
            assert_eq!(
                lines(&long, 10, chunk).await,
                vec![Line::TooLong(true), Line::Eof],
                "CRLF, chunk {chunk}"
            );
            assert_eq!(
                lines(b"ab\r\ncd\nef", 10, chunk).await,
                vec![
                    Line::Text(b"ab".to_vec(), true),
                    Line::Text(b"cd".to_vec(), false),
                    Line::Eof
                ],
                "chunk {chunk}"
            );
        }
    }
}
