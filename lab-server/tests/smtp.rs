//! The SMTP state machine: dialogues with exact reply codes, and properties.

use lab_server::smtp::{DataReader, Limits, Next, Session, SessionConfig};
use proptest::prelude::*;

fn session(require_tls: bool) -> Session {
    Session::new(SessionConfig {
        hostname: "hub.lab.test".into(),
        tls_offered: true,
        require_tls,
        limits: Limits::default(),
    })
}

/// Runs commands and returns (code, first line, next) per reply.
fn dialogue(s: &mut Session, lines: &[&str]) -> Vec<(u16, String, Next)> {
    lines
        .iter()
        .map(|l| {
            let (r, n) = s.command(l.as_bytes());
            (r.code, r.lines.first().cloned().unwrap_or_default(), n)
        })
        .collect()
}

fn codes(s: &mut Session, lines: &[&str]) -> Vec<u16> {
    dialogue(s, lines).into_iter().map(|(c, _, _)| c).collect()
}

#[test]
fn tls_required_by_default_flow() {
    let mut s = session(true);
    assert_eq!(
        s.greeting().to_string(),
        "220 hub.lab.test ESMTP umlab lab-server\r\n"
    );
    let (ehlo, _) = s.command(b"EHLO um.lab.test");
    let text = ehlo.to_string();
    for ext in [
        "PIPELINING",
        "SIZE 26214400",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "STARTTLS",
    ] {
        assert!(
            text.contains(&format!("250-{ext}\r\n")) || text.contains(&format!("250 {ext}\r\n")),
            "{text}"
        );
    }
    assert!(
        text.ends_with("250 STARTTLS\r\n"),
        "last line has a space: {text}"
    );
    let d = dialogue(&mut s, &["MAIL FROM:<um@lab.test>"]);
    assert_eq!(
        (d[0].0, d[0].1.as_str()),
        (530, "5.7.0 Must issue a STARTTLS command first")
    );
    assert_eq!(dialogue(&mut s, &["STARTTLS"])[0].2, Next::StartTls);
    s.tls_established();
    // State resets: EHLO again is required, and STARTTLS is no longer offered.
    assert_eq!(codes(&mut s, &["MAIL FROM:<a@b>"]), [503]);
    let (ehlo, _) = s.command(b"EHLO um.lab.test");
    assert!(!ehlo.to_string().contains("STARTTLS"));
    assert_eq!(
        codes(
            &mut s,
            &[
                "MAIL FROM:<um@lab.test> SIZE=1000 BODY=8BITMIME",
                "RCPT TO:<hub@lab.test>",
                "STARTTLS"
            ]
        ),
        [250, 250, 503]
    );
    let d = dialogue(&mut s, &["DATA"]);
    assert_eq!((d[0].0, d[0].2), (354, Next::Data));
    let mut data = DataReader::new(Limits::default().max_message);
    for line in [&b"Subject: hi"[..], b"", b"..dotted", b"."] {
        data.line(line, true, false);
    }
    let env = s.data_received(&data).expect("accepted");
    assert_eq!(env.from, "um@lab.test");
    assert_eq!(env.to, ["hub@lab.test"]);
    assert_eq!(data.body(), b"Subject: hi\r\n\r\n.dotted\r\n");
    assert_eq!(
        s.stored(Ok("abc")).to_string(),
        "250 2.0.0 OK queued as abc\r\n"
    );
    assert_eq!(s.stored(Err("disk full")).code, 451);
    // The transaction ended: a new one starts with MAIL.
    assert_eq!(codes(&mut s, &["RCPT TO:<x@y>", "QUIT"]), [503, 221]);
}

#[test]
fn commands_and_errors() {
    let mut s = session(false);
    let script = [
        ("HELO", 501),
        ("EHLO", 501),
        ("helo um", 250),
        ("NOOP", 250),
        ("VRFY someone", 252),
        ("BOGUS", 500),
        ("RCPT TO:<a@b>", 503),
        ("DATA", 503),
        ("MAIL FROM:<>", 250),
        ("MAIL FROM:<a@b>", 503),
        ("RCPT TO:<>", 501),
        ("RCPT TO:x@y", 250),
        ("DATA extra", 501),
        ("RSET", 250),
        ("DATA", 503),
    ];
    let (cmds, want): (Vec<&str>, Vec<u16>) = script.into_iter().unzip();
    assert_eq!(codes(&mut s, &cmds), want);
    // A fresh session: the one above has used most of its error allowance.
    let mut s = session(false);
    let script = [
        ("EHLO a", 250),
        ("MAIL FROM:<a@b> SIZE=99999999999", 552),
        ("MAIL FROM:<a@b> SIZE=x", 501),
        ("MAIL FROM:<a@b> FOO=1", 555),
        ("MAIL FROM a@b", 501),
        ("STARTTLS now", 501),
        ("mail from: <a@b> size=10", 250),
    ];
    let (cmds, want): (Vec<&str>, Vec<u16>) = script.into_iter().unzip();
    assert_eq!(codes(&mut s, &cmds), want);
    assert_eq!(s.command(b"EHLO\0x").0.code, 500);
    assert_eq!(s.line_too_long().0.lines[0], "5.5.2 Line too long");
}

#[test]
fn too_many_recipients_get_452_and_the_transaction_goes_on() {
    let mut s = session(false);
    assert_eq!(codes(&mut s, &["EHLO a", "MAIL FROM:<a@b>"]), [250, 250]);
    for i in 0..100 {
        assert_eq!(
            s.command(format!("RCPT TO:<r{i}@b>").as_bytes()).0.code,
            250
        );
    }
    // RFC 5321 4.5.3.1.10: 50 more get 452 and the session stays open (they
    // used to count as errors and close it with 421 after the tenth).
    for i in 100..150 {
        let (r, n) = s.command(format!("RCPT TO:<r{i}@b>").as_bytes());
        assert_eq!((r.code, n), (452, Next::Command), "recipient {i}");
        assert_eq!(r.lines[0], "4.5.3 Too many recipients");
    }
    assert_eq!(s.command(b"DATA").0.code, 354);
    let mut d = DataReader::new(1000);
    assert!(d.line(b".", true, false));
    let envelope = s.data_received(&d).unwrap();
    assert_eq!(envelope.to.len(), 100);
    // Eleven real errors still end the session.
    for _ in 0..10 {
        assert_eq!(s.command(b"BOGUS").1, Next::Command);
    }
    let (r, n) = s.command(b"BOGUS");
    assert_eq!((r.code, n), (421, Next::Close));
}

#[test]
fn an_oversized_size_parameter_gets_552_not_501() {
    let mut s = session(false);
    assert_eq!(s.command(b"EHLO a").0.code, 250);
    for (args, code) in [
        ("SIZE=99999999999999999999", 552),
        ("SIZE=18446744073709551616", 552),
        ("SIZE=26214401", 552),
        ("SIZE=999999999999999999999", 501),
        ("SIZE=12x", 501),
        ("SIZE=", 501),
        ("SIZE=-1", 501),
    ] {
        let line = format!("MAIL FROM:<a@b> {args}");
        let r = s.command(line.as_bytes()).0;
        assert_eq!(r.code, code, "{line}: {r:?}");
        if code == 552 {
            assert_eq!(r.lines[0], "5.3.4 Message size exceeds fixed limit");
        }
    }
    assert_eq!(s.command(b"MAIL FROM:<a@b> SIZE=26214400").0.code, 250);
}

#[test]
fn data_limits() {
    let mut s = session(false);
    let mut drive = |lines: &[(&[u8], bool)], max: usize| {
        codes(
            &mut s,
            &["EHLO a", "MAIL FROM:<a@b>", "RCPT TO:<c@d>", "DATA"],
        );
        let mut d = DataReader::new(max);
        for (l, long) in lines {
            d.line(l, true, *long);
        }
        assert!(d.line(b".", true, false), "end marker");
        s.data_received(&d).map(|_| d.size()).map_err(|r| r.code)
    };
    assert_eq!(drive(&[(b"0123456789", false)], 12), Ok(12));
    assert_eq!(
        drive(&[(b"0123456789", false), (b"x", false)], 12),
        Err(552)
    );
    assert_eq!(drive(&[(b"abc", true)], 100), Err(500));
}

#[test]
fn only_crlf_dot_crlf_ends_data() {
    let mut d = DataReader::new(1 << 20);
    // "body<LF>.<LF>MAIL ..." : the bare-LF dot line is content, not the end.
    assert!(!d.line(b"body", false, false));
    assert!(!d.line(b".", false, false));
    assert!(!d.line(b"MAIL FROM:<smuggled@x>", true, false));
    // A dot line after a bare LF, even if it ends in CRLF, is content too.
    assert!(!d.line(b"x", false, false));
    assert!(!d.line(b".", true, false));
    assert!(d.line(b".", true, false), "<CRLF>.<CRLF> ends it");
    assert_eq!(
        d.body(),
        b"body\r\n\r\nMAIL FROM:<smuggled@x>\r\nx\r\n\r\n".as_slice()
    );
}

#[test]
fn a_dot_right_after_a_bare_lf_data_command_is_content() {
    // "DATA<LF>.<CRLF>": no <CRLF> before the dot, so no end marker.
    let mut d = DataReader::after_command(1 << 20, false);
    assert!(!d.line(b".", true, false));
    assert!(d.line(b".", true, false), "<CRLF>.<CRLF> ends it");
    assert_eq!(d.body(), b"\r\n".as_slice());
    // After "DATA<CRLF>" the same dot ends the (empty) message.
    let mut d = DataReader::after_command(1 << 20, true);
    assert!(d.line(b".", true, false));
    assert_eq!(d.body(), b"".as_slice());
}

proptest! {
    #[test]
    fn arbitrary_lines_never_panic(lines in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 0..30)) {
        let mut s = session(true);
        for l in &lines {
            let (r, _) = s.command(l);
            prop_assert!((200..600).contains(&r.code));
            prop_assert!(r.to_string().ends_with("\r\n"));
        }
    }

    #[test]
    fn dot_stuffing_round_trips(body_lines in prop::collection::vec("[ -~]{0,60}", 0..40)) {
        let mut d = DataReader::new(1 << 20);
        for l in &body_lines {
            // The client stuffs a leading dot.
            let stuffed = if l.starts_with('.') { format!(".{l}") } else { l.clone() };
            prop_assert!(!d.line(stuffed.as_bytes(), true, false));
        }
        prop_assert!(d.line(b".", true, false));
        let want: String = body_lines.iter().map(|l| format!("{l}\r\n")).collect();
        prop_assert_eq!(d.body(), want.as_bytes());
    }
}

mod framing {
    use lab_server::smtp::{DataReader, Line, LineFramer};
    use proptest::prelude::*;

    /// Frames `input` fed in pieces of the given sizes; the trailing partial
    /// line, if any, is dropped (as at end of stream).
    fn frame(input: &[u8], max: usize, pieces: &[usize]) -> Vec<Line> {
        let mut framer = LineFramer::new(max);
        let mut lines = Vec::new();
        let mut rest = input;
        let mut sizes = pieces.iter().cycle();
        while !rest.is_empty() {
            let size = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
            let mut piece = &rest[..size];
            while !piece.is_empty() {
                let (used, line) = framer.feed(piece);
                assert!(used >= 1 && used <= piece.len());
                piece = &piece[used..];
                lines.extend(line);
            }
            rest = &rest[size..];
        }
        lines
    }

    fn smtp_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop::sample::select(vec![b'a', b'.', b'\r', b'\n', b'\n', b'.']),
            0..200,
        )
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_lines(
            input in smtp_bytes(),
            max in 1usize..12,
            pieces in prop::collection::vec(1usize..9, 1..6),
        ) {
            prop_assert_eq!(frame(&input, max, &pieces), frame(&input, max, &[input.len().max(1)]));
        }

        /// DATA ends exactly at the first <CRLF>.<CRLF> of the stream (the
        /// CRLF of the DATA command counts), and nowhere else, whatever the
        /// line lengths: the smuggling rule.
        #[test]
        fn data_ends_only_at_crlf_dot_crlf(
            input in smtp_bytes(),
            max in 3usize..12,
        ) {
            let lines = frame(&input, max, &[7]);
            let mut data = DataReader::new(1 << 20);
            let mut consumed = 0usize;
            let mut ended_at = None;
            // Reconstruct the offset each line ends at.
            let mut offsets = Vec::new();
            for (i, b) in input.iter().enumerate() {
                if *b == b'\n' {
                    offsets.push(i + 1);
                }
            }
            for (line, end) in lines.iter().zip(offsets) {
                let done = match line {
                    Line::Text(t, crlf) => data.line(t, *crlf, false),
                    Line::TooLong(crlf) => data.line(b"", *crlf, true),
                };
                consumed = end;
                if done {
                    ended_at = Some(consumed);
                    break;
                }
            }
            let stream = [b"\r\n".as_slice(), &input].concat();
            let marker = stream
                .windows(5)
                .position(|w| w == b"\r\n.\r\n")
                .map(|i| i + 5 - 2);
            match ended_at {
                Some(at) => prop_assert_eq!(Some(at), marker),
                None => prop_assert!(marker.is_none() || marker.unwrap() > consumed),
            }
        }
    }
}
