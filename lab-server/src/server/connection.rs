//! Line framing over the connection's byte stream, plaintext or TLS, and the
//! count of bytes the session has read (its transfer budget).

use std::time::Duration;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};

use crate::smtp::{Line, LineFramer, Reply};

/// How long, and how many bytes, a closing session reads and drops so its
/// last reply is not destroyed by a reset.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1024 * 1024;

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
    /// too long. `None` when the peer closed the stream (a partial last line
    /// is dropped).
    pub(super) async fn read_line(&mut self, max: usize) -> std::io::Result<Option<Line>> {
        let (line, consumed) = read_line(&mut self.io, max).await?;
        self.received = self.received.saturating_add(consumed);
        Ok(line)
    }
}

/// [`Framed::read_line`] on any buffered reader; returns the line and the
/// bytes consumed.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
) -> std::io::Result<(Option<Line>, u64)> {
    let mut framer = LineFramer::new(max);
    let mut consumed = 0u64;
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok((None, consumed));
        }
        let (take, line) = framer.feed(chunk);
        r.consume(take);
        consumed += take as u64;
        if line.is_some() {
            return Ok((line, consumed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize, chunk: usize) -> Vec<Option<Line>> {
        let mut r = tokio::io::BufReader::with_capacity(chunk, input);
        let mut out = Vec::new();
        loop {
            let (line, _) = read_line(&mut r, max).await.unwrap();
            let eof = line.is_none();
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
                vec![Some(Line::TooLong(false)), None],
                "bare LF, chunk {chunk}"
            );
            let long = [vec![b'x'; 20], b"\r\n".to_vec()].concat();
            assert_eq!(
                lines(&long, 10, chunk).await,
                vec![Some(Line::TooLong(true)), None],
                "CRLF, chunk {chunk}"
            );
            assert_eq!(
                lines(b"ab\r\ncd\n\nef", 10, chunk).await,
                vec![
                    Some(Line::Text(b"ab".to_vec(), true)),
                    Some(Line::Text(b"cd".to_vec(), false)),
                    Some(Line::Text(b"".to_vec(), false)),
                    None
                ],
                "chunk {chunk}"
            );
        }
    }
}
