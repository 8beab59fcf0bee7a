//! um-sim's SMTP reply reading: `client::parse_reply_line` on every line of
//! the input, and the capped multi-line reader (`client::reply::ReplyAssembler`
//! fed the way the client's reader feeds it: lines read from a tokio byte
//! reader with `take(MAX_REPLY_LINE + 1).read_until(b'\n')`, on a
//! current-thread runtime built once).
//!
//! Input: the server's byte stream.
//!
//! Asserts: a line parses exactly when it starts with three digits forming a
//! code in 200..=599 followed by nothing, a space or a hyphen (an independent
//! reading of RFC 5321's grammar), and is rebuilt exactly from the result;
//! the assembler's replies are made of the lines read (continuation lines,
//! then one last line, text as parsed), within the caps of 4,096 bytes a
//! line, 100 lines and 64 KiB a reply; each refusal is the right one (the
//! line over the cap, the 101st line, the byte past 64 KiB, a line that does
//! not parse) and is one line of text; nothing is accepted past a refusal.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use um_sim::client::parse_reply_line;
use um_sim::client::reply::{
    MAX_REPLY_BYTES, MAX_REPLY_LINE, MAX_REPLY_LINES, Reply, ReplyAssembler, ReplyError,
};

/// The grammar, written out independently: Reply-code [ SP / "-" ] text.
fn expected(line: &str) -> Option<(u16, bool, &str)> {
    let b = line.as_bytes();
    let digits = b.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if !(200..=599).contains(&code) {
        return None;
    }
    match b.get(3) {
        None => Some((code, true, "")),
        Some(b' ') => Some((code, true, &line[4..])),
        Some(b'-') => Some((code, false, &line[4..])),
        Some(_) => None,
    }
}

fn check_line(line: &str) {
    let got = parse_reply_line(line);
    assert_eq!(got, expected(line), "line {line:?}");
    if let Some((code, last, text)) = got {
        let rebuilt = if line.len() == 3 {
            code.to_string()
        } else {
            format!("{code}{}{text}", if last { ' ' } else { '-' })
        };
        assert_eq!(rebuilt, line);
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    })
}

/// One line as the client's reader takes it: at most one byte past the cap,
/// up to and including LF.
async fn next_line(r: &mut &[u8]) -> Vec<u8> {
    let mut line = Vec::new();
    let _ = (&mut *r)
        .take(MAX_REPLY_LINE as u64 + 1)
        .read_until(b'\n', &mut line)
        .await;
    line
}

/// Reads replies until the stream ends or a reply is refused, checking each.
async fn read_replies(mut r: &[u8]) {
    'replies: while !r.is_empty() {
        let mut assembler = ReplyAssembler::default();
        // The raw lines of this reply so far, and their bytes.
        let mut raws: Vec<Vec<u8>> = Vec::new();
        let mut bytes = 0usize;
        loop {
            let raw = next_line(&mut r).await;
            if raw.is_empty() {
                break 'replies;
            }
            assert!(raw.len() <= MAX_REPLY_LINE + 1);
            bytes += raw.len();
            let text = String::from_utf8_lossy(&raw).trim_end().to_owned();
            let parsed = parse_reply_line(&text).map(|(c, l, t)| (c, l, t.to_owned()));
            match assembler.push(&raw) {
                Ok(None) => {
                    assert!(raw.len() <= MAX_REPLY_LINE && bytes <= MAX_REPLY_BYTES);
                    assert!(raws.len() < MAX_REPLY_LINES);
                    assert!(matches!(parsed, Some((_, false, _))), "{text:?} continues");
                    raws.push(raw);
                }
                Ok(Some(reply)) => {
                    assert!(raw.len() <= MAX_REPLY_LINE && bytes <= MAX_REPLY_BYTES);
                    assert!(raws.len() < MAX_REPLY_LINES);
                    let Some((code, true, last_text)) = parsed else {
                        panic!("{text:?} ended a reply")
                    };
                    raws.push(raw);
                    check_reply(&reply, &raws, code, &last_text);
                    continue 'replies;
                }
                Err(e) => {
                    let first = raws.first().and_then(|f| {
                        parse_reply_line(String::from_utf8_lossy(f).trim_end()).map(|(c, _, _)| c)
                    });
                    let code = parsed.as_ref().map(|(c, _, _)| *c);
                    check_refusal(&e, &raw, bytes, raws.len(), code, first);
                    break 'replies;
                }
            }
        }
    }
}

fn check_reply(reply: &Reply, raws: &[Vec<u8>], code: u16, last_text: &str) {
    assert_eq!(reply.code, code);
    assert!((200..=599).contains(&reply.code));
    assert_eq!(reply.lines.len(), raws.len());
    assert!(!reply.lines.is_empty() && reply.lines.len() <= MAX_REPLY_LINES);
    assert_eq!(reply.lines.last().map(String::as_str), Some(last_text));
    for (raw, text) in raws.iter().zip(&reply.lines) {
        let line = String::from_utf8_lossy(raw);
        let (each, _, want) =
            parse_reply_line(line.trim_end()).expect("a line of the reply parses");
        assert_eq!(text, want);
        assert_eq!(each, code, "every line of a reply carries its code");
    }
}

fn check_refusal(
    e: &ReplyError,
    raw: &[u8],
    bytes: usize,
    lines: usize,
    code: Option<u16>,
    first: Option<u16>,
) {
    let msg = e.to_string();
    assert!(!msg.is_empty() && !msg.contains(['\n', '\r']), "{msg:?}");
    match e {
        ReplyError::LineTooLong => assert!(raw.len() > MAX_REPLY_LINE),
        ReplyError::TooLarge => {
            assert!(raw.len() <= MAX_REPLY_LINE && bytes > MAX_REPLY_BYTES)
        }
        ReplyError::TooManyLines => {
            assert!(bytes <= MAX_REPLY_BYTES && lines >= MAX_REPLY_LINES)
        }
        ReplyError::Malformed(_) => {
            assert!(raw.len() <= MAX_REPLY_LINE && bytes <= MAX_REPLY_BYTES);
            assert!(lines < MAX_REPLY_LINES && code.is_none());
        }
        ReplyError::CodeChanged { first: f, then } => {
            assert!(raw.len() <= MAX_REPLY_LINE && bytes <= MAX_REPLY_BYTES);
            assert!(lines < MAX_REPLY_LINES);
            assert_eq!((Some(*f), Some(*then)), (first, code));
            assert_ne!(f, then);
        }
        ReplyError::Io(io) => panic!("I/O error from a slice: {io}"),
    }
    assert_eq!(
        e.is_over_cap(),
        !matches!(e, ReplyError::Malformed(_) | ReplyError::CodeChanged { .. })
    );
}

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    // Each line as the client sees it: up to LF, trailing whitespace trimmed.
    for raw in text.split_inclusive('\n') {
        check_line(raw.trim_end());
        check_line(raw);
    }
    runtime().block_on(read_replies(input));
});
