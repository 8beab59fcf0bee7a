//! lab-server's SMTP input path as the server runs it: the line framer over a
//! byte stream cut into fuzzed pieces, the session state machine, and the
//! DATA reader, following each `Next` the way `server::session` does.
//!
//! Input: 8 bytes of settings, then the client's byte stream.
//!   [0] flags: bit 0 STARTTLS offered, bit 1 TLS required, bit 2 the bytes
//!       of the piece holding STARTTLS were read with it (and are dropped)
//!   [1] max_line: 0xff = 1000, else 3 + value
//!   [2] max_message: 0xff = 1 MiB, else 8 * value
//!   [3] max_recipients: value % 8
//!   [4] max_errors: value % 16
//!   [5..8] piece sizes (1 + value % 97), cycled, for what each read returns
//!
//! Asserts: every reply is well formed on the wire; each `Next` comes with
//! its reply code; no mail transaction before TLS when TLS is required; DATA
//! ends exactly where the stream holds <CRLF>.<CRLF> (the DATA command's own
//! line end counting as the first CRLF), and the body is the unstuffed lines.

#![no_main]

use lab_server::smtp::{DataReader, Limits, Line, LineFramer, Next, Reply, Session, SessionConfig};
use libfuzzer_sys::fuzz_target;

/// A reply as it goes on the wire: lines "<code>-text" then "<code> text",
/// each CRLF-terminated, nothing else.
fn check_reply(reply: &Reply) {
    assert!((200..=599).contains(&reply.code), "code {}", reply.code);
    let wire = reply.to_string();
    assert!(!wire.is_empty());
    assert!(wire.ends_with("\r\n"), "not CRLF-terminated: {wire:?}");
    let code = reply.code.to_string();
    let lines: Vec<&str> = wire
        .strip_suffix("\r\n")
        .unwrap_or_default()
        .split("\r\n")
        .collect();
    for (i, line) in lines.iter().enumerate() {
        assert!(line.starts_with(&code), "line without its code: {wire:?}");
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        assert_eq!(line.chars().nth(3), Some(sep), "separator: {wire:?}");
        assert!(
            !line.contains(['\r', '\n']),
            "line break inside a line: {wire:?}"
        );
    }
}

fn check_next(reply: &Reply, next: Next) {
    match next {
        Next::Command => {}
        Next::StartTls => assert_eq!(reply.code, 220),
        Next::Data => assert_eq!(reply.code, 354),
        Next::Close => assert!(
            matches!(reply.code, 221 | 421),
            "close after {}",
            reply.code
        ),
    }
}

/// The message being read, with what the fuzzer expects of it.
struct Data {
    reader: DataReader,
    /// Stream offset of the first byte after the DATA command's line end.
    start: usize,
    /// The unstuffed body expected, while under the size limit.
    body: Vec<u8>,
}

fuzz_target!(|input: &[u8]| {
    let Some((head, stream)) = input.split_first_chunk::<8>() else {
        return;
    };
    let max_line = if head[1] == 0xff {
        1000
    } else {
        3 + usize::from(head[1])
    };
    let max_message = if head[2] == 0xff {
        1 << 20
    } else {
        8 * usize::from(head[2])
    };
    let cfg = SessionConfig {
        hostname: "hub.lab.test".into(),
        tls_offered: head[0] & 1 != 0,
        require_tls: head[0] & 2 != 0,
        limits: Limits {
            max_line,
            max_message,
            max_recipients: usize::from(head[3] % 8),
            max_errors: u32::from(head[4] % 16),
        },
    };
    let pieces: Vec<usize> = head[5..].iter().map(|b| 1 + usize::from(b % 97)).collect();
    let require_tls = cfg.require_tls;
    let drop_buffered = head[0] & 4 != 0;
    let mut session = Session::new(cfg);
    check_reply(&session.greeting());

    let mut framer = LineFramer::new(max_line);
    // Offset in `stream` where the current byte stream (plaintext, then the
    // TLS plaintext after STARTTLS) starts.
    let mut stream_start = 0usize;
    let mut data: Option<Data> = None;
    let mut at = 0usize;
    let mut sizes = pieces.iter().cycle();
    'read: while at < stream.len() {
        let size = (*sizes.next().unwrap_or(&1)).min(stream.len() - at);
        let piece_end = at + size;
        while at < piece_end {
            let (used, line) = framer.feed(&stream[at..piece_end]);
            assert!(
                used >= 1 && used <= piece_end - at,
                "framer consumed {used}"
            );
            at += used;
            let Some(line) = line else { continue };
            assert_eq!(stream[at - 1], b'\n', "a line ends at an LF");
            if let Line::Text(text, crlf) = &line {
                let end = if *crlf { 2 } else { 1 };
                assert!(
                    text.len() + end <= max_line,
                    "line over the limit delivered"
                );
                assert!(at - stream_start >= text.len() + end);
                assert_eq!(&stream[at - end - text.len()..at - end], &text[..]);
                assert_eq!(*crlf, at - stream_start >= 2 && stream[at - 2] == b'\r');
            }
            if let Some(d) = &mut data {
                let done = match &line {
                    Line::Text(text, crlf) => {
                        let done = d.reader.line(text, *crlf, false);
                        if !done {
                            d.body
                                .extend_from_slice(text.strip_prefix(b".").unwrap_or(text));
                            d.body.extend_from_slice(b"\r\n");
                        }
                        done
                    }
                    Line::TooLong(crlf) => {
                        let done = d.reader.line(b"", *crlf, true);
                        d.body.extend_from_slice(b"\r\n");
                        done
                    }
                };
                // <CRLF>.<CRLF>, the first CRLF possibly the DATA command's.
                let marker = at >= 5
                    && at - 5 + 2 >= d.start
                    && at - 5 >= stream_start
                    && &stream[at - 5..at] == b"\r\n.\r\n";
                assert_eq!(
                    done,
                    marker,
                    "DATA end at offset {at}: reader says {done}, stream {:?}",
                    String::from_utf8_lossy(&stream[d.start.saturating_sub(2)..at])
                );
                if !done {
                    continue;
                }
                let d = data.take().unwrap_or_else(|| unreachable!());
                if !d.reader.too_big() {
                    assert_eq!(d.reader.body(), &d.body[..], "unstuffed body");
                    assert!(d.reader.size() <= max_message);
                } else {
                    assert!(d.reader.size() > max_message);
                    assert!(d.reader.body().is_empty());
                }
                assert_eq!(d.reader.size(), d.body.len());
                match session.data_received(&d.reader) {
                    Ok(envelope) => {
                        assert!(!envelope.to.is_empty(), "a message without recipients");
                        assert!(!d.reader.too_big() && !d.reader.line_too_long());
                        let reply = session.stored(Ok("id"));
                        check_reply(&reply);
                        assert_eq!(reply.code, 250);
                    }
                    Err(reply) => {
                        check_reply(&reply);
                        assert!(
                            matches!(reply.code, 500 | 552),
                            "refused with {}",
                            reply.code
                        );
                    }
                }
                continue;
            }
            let (reply, next) = match &line {
                Line::TooLong(_) => session.line_too_long(),
                Line::Text(text, _) => session.command(text),
            };
            check_reply(&reply);
            check_next(&reply, next);
            if let Line::Text(text, _) = &line {
                let verb = text.get(..4).map(|v| v.to_ascii_uppercase());
                if require_tls && !session.tls_active() && verb.as_deref() == Some(&b"MAIL"[..]) {
                    assert_ne!(reply.code, 250, "MAIL accepted before the required TLS");
                }
                if session.tls_active() && verb.as_deref() == Some(&b"EHLO"[..]) {
                    assert!(
                        !reply.lines.iter().skip(1).any(|l| l == "STARTTLS"),
                        "STARTTLS offered inside TLS"
                    );
                }
            }
            match next {
                Next::Command => {}
                Next::Close => break 'read,
                Next::Data => {
                    assert!(
                        session.tls_active() || !require_tls,
                        "DATA before the required TLS"
                    );
                    let crlf = matches!(line, Line::Text(_, true));
                    data = Some(Data {
                        reader: DataReader::after_command(max_message, crlf),
                        start: at,
                        body: Vec::new(),
                    });
                }
                Next::StartTls => {
                    assert!(!session.tls_active(), "STARTTLS inside TLS");
                    // Bytes buffered behind STARTTLS are dropped; the handshake
                    // succeeds and the rest is the TLS plaintext.
                    if drop_buffered {
                        at = piece_end;
                    }
                    stream_start = at;
                    framer = LineFramer::new(max_line);
                    session.tls_established();
                    assert!(session.tls_active());
                }
            }
        }
    }
});
