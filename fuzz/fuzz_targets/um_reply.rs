//! um-sim's SMTP reply parsing: `client::parse_reply_line` on every line of
//! the input, the way the client reads a server's reply lines.
//!
//! Asserts: a line parses exactly when it starts with three digits forming a
//! code in 200..=599 followed by nothing, a space or a hyphen; the result is
//! that code, "last line" for a space or nothing, and the text after the
//! separator; the line is rebuilt exactly from the result.

#![no_main]

use libfuzzer_sys::fuzz_target;
use um_sim::client::parse_reply_line;

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

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    // Each line as the client sees it: up to LF, trailing whitespace trimmed.
    for raw in text.split_inclusive('\n') {
        check_line(raw.trim_end());
        check_line(raw);
    }
});
