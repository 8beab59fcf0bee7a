//! um-sim's voicemail header file (`<GUID>.txt`): `Header::parse` on any
//! text, and the round trip through `render`.
//!
//! Input: the file's bytes; the first byte picks how they become text (bit 0
//! set: UTF-8 with invalid sequences replaced, as a lossy reader would;
//! clear: only valid UTF-8 is parsed, as `queue` reads it).
//!
//! Asserts: a header that parses renders to text that parses again to the
//! same header, except for what `render` documents it changes (a line break
//! inside a value becomes a space); rendering is then a fixed point; a parse
//! error names a line within the file and is one line of text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use um_sim::header::Header;

/// What `render` does to a value: line breaks become spaces, trailing
/// whitespace goes (as parse trims it).
fn one_line(v: &str) -> String {
    v.replace(['\r', '\n'], " ").trim_end().to_owned()
}

/// The header `render` describes: every text value on one line.
fn rendered_form(h: &Header) -> Header {
    let opt = |v: &Option<String>| v.as_deref().map(one_line).filter(|v| !v.is_empty());
    Header {
        recipient: one_line(&h.recipient),
        caller_id: opt(&h.caller_id),
        caller_name: opt(&h.caller_name),
        call_id: one_line(&h.call_id),
        audio_file: opt(&h.audio_file),
        audio_codec: opt(&h.audio_codec),
        received_time: one_line(&h.received_time),
        subject: opt(&h.subject),
        last_error: one_line(&h.last_error),
        extra: h
            .extra
            .iter()
            .map(|(k, v)| (k.clone(), one_line(v)))
            .collect(),
        ..h.clone()
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, bytes)) = input.split_first() else {
        return;
    };
    let text = if mode & 1 == 1 {
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        match std::str::from_utf8(bytes) {
            Ok(t) => t.to_owned(),
            Err(_) => return,
        }
    };
    let header = match Header::parse(&text) {
        Ok(h) => h,
        Err(e) => {
            assert!(
                e.line <= text.lines().count(),
                "error line {} past the end",
                e.line
            );
            let msg = e.to_string();
            assert!(!msg.contains(['\n', '\r']), "multi-line error: {msg:?}");
            return;
        }
    };
    let rendered = header.render();
    let again = match Header::parse(&rendered) {
        Ok(h) => h,
        Err(e) => panic!(
            "rendered header does not parse: {e}\n--- input\n{text:?}\n--- rendered\n{rendered}"
        ),
    };
    assert_eq!(
        again,
        rendered_form(&header),
        "round trip\n--- rendered\n{rendered}"
    );
    assert_eq!(again.render(), rendered, "render is not a fixed point");
    // Without line breaks in values the round trip is exact.
    if rendered_form(&header) == header {
        assert_eq!(again, header);
    }
    let _ = header.subject_line();
});
