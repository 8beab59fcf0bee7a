//! The header file of a queued voicemail, `<GUID>.txt`: the project's own
//! documented text format, modeled on what the UM voicemail folder holds.
//!
//! ```text
//! ContentType: voicemail
//! Recipient: user@lab.test
//! CallerId: +14255550100
//! CallerName: Alice Example
//! CallId: 8f3c2a...
//! Duration: 12
//! AudioFile: 0b1e...wav
//! AudioCodec: PCM 16-bit 8000 Hz mono
//! ReceivedTime: 2026-11-25T17:00:00Z
//! Subject: Voice Mail from Alice Example (12 seconds)
//! Importance: normal
//! Attempts: 0
//! LastError:
//! ```
//!
//! One `Key: Value` per line, UTF-8. Keys are case-sensitive and appear at
//! most once; unknown keys are kept, in order. Required: ContentType,
//! Recipient, CallId, ReceivedTime, and for a voicemail AudioFile and Duration.

use std::fmt::{self, Write};
use std::str::FromStr;

/// What the item is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentType {
    /// A voicemail with audio.
    Voicemail,
    /// A missed-call notification: header only.
    MissedCall,
}

impl FromStr for ContentType {
    type Err = String;

    fn from_str(s: &str) -> Result<ContentType, String> {
        match s {
            "voicemail" => Ok(ContentType::Voicemail),
            "missedcall" => Ok(ContentType::MissedCall),
            _ => Err(format!(
                "ContentType {s:?}: expected voicemail or missedcall"
            )),
        }
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContentType::Voicemail => "voicemail",
            ContentType::MissedCall => "missedcall",
        })
    }
}

/// Message importance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Importance {
    /// low
    Low,
    /// normal
    #[default]
    Normal,
    /// high
    High,
}

impl FromStr for Importance {
    type Err = String;

    fn from_str(s: &str) -> Result<Importance, String> {
        match s {
            "low" => Ok(Importance::Low),
            "normal" => Ok(Importance::Normal),
            "high" => Ok(Importance::High),
            _ => Err(format!("Importance {s:?}: expected low, normal or high")),
        }
    }
}

impl fmt::Display for Importance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Importance::Low => "low",
            Importance::Normal => "normal",
            Importance::High => "high",
        })
    }
}

/// A parsed header file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// voicemail or missedcall.
    pub content_type: ContentType,
    /// Recipient's SMTP address.
    pub recipient: String,
    /// Caller's number, E.164 (`+` and 1 to 15 digits), if known.
    pub caller_id: Option<String>,
    /// Caller's display name, if known.
    pub caller_name: Option<String>,
    /// Call identifier.
    pub call_id: String,
    /// Length of the recording in seconds (voicemail).
    pub duration: Option<u32>,
    /// Audio file name, beside the header (voicemail).
    pub audio_file: Option<String>,
    /// Audio format, free text.
    pub audio_codec: Option<String>,
    /// When the call was received, RFC 3339.
    pub received_time: String,
    /// Subject line, if set.
    pub subject: Option<String>,
    /// Importance.
    pub importance: Importance,
    /// Submission attempts so far.
    pub attempts: u32,
    /// Last submission error, empty when none.
    pub last_error: String,
    /// Keys this version does not know, kept in order.
    pub extra: Vec<(String, String)>,
}

/// A header file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct HeaderError {
    /// 1-based line (0 for the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

fn err(line: usize, reason: impl Into<String>) -> HeaderError {
    HeaderError {
        line,
        reason: reason.into(),
    }
}

const KNOWN: [&str; 13] = [
    "ContentType",
    "Recipient",
    "CallerId",
    "CallerName",
    "CallId",
    "Duration",
    "AudioFile",
    "AudioCodec",
    "ReceivedTime",
    "Subject",
    "Importance",
    "Attempts",
    "LastError",
];

/// Whether `s` is an E.164 number: `+` then 1 to 15 digits, the first not 0.
pub fn is_e164(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|d| {
        (1..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

/// The first second a message's Date cannot carry: 10000-01-01T00:00:00Z.
/// lettre writes the Date header through httpdate, which panics outside
/// 1970-01-01T00:00:00Z ..= 9999-12-31T23:59:59Z (UTC); a header outside it is
/// refused here, so it goes to badvoicemail/ instead of panicking every run.
pub const DATE_LIMIT_UNIX: i64 = 253_402_300_800;

/// A `ReceivedTime` value as the message's Date: RFC 3339, and within the
/// dates a Date header can carry (1970-01-01 to 9999-12-31, UTC, after the
/// offset is applied). The error says which rule failed.
pub fn message_date(received_time: &str) -> Result<std::time::SystemTime, String> {
    let t = time::OffsetDateTime::parse(
        received_time,
        &time::format_description::well_known::Rfc3339,
    )
    .map_err(|_| format!("ReceivedTime {received_time:?} is not RFC 3339"))?;
    if t.unix_timestamp_nanos() < 0 || t.unix_timestamp() >= DATE_LIMIT_UNIX {
        return Err(format!(
            "ReceivedTime {received_time:?} is not between 1970-01-01 and 9999-12-31 (UTC), \
             the dates a message's Date header can carry"
        ));
    }
    Ok(std::time::SystemTime::from(t))
}

/// Whether a value can be written on one line.
fn single_line(v: &str) -> bool {
    !v.contains(['\r', '\n'])
}

impl Header {
    /// Parses a header file.
    pub fn parse(text: &str) -> Result<Header, HeaderError> {
        let mut fields: Vec<(usize, String, String)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            if raw.trim().is_empty() {
                continue;
            }
            let (key, value) = raw
                .split_once(':')
                .ok_or_else(|| err(line, "expected `Key: Value`"))?;
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(err(line, format!("bad key {key:?}")));
            }
            if fields.iter().any(|(_, k, _)| k == key) {
                return Err(err(line, format!("{key} appears twice")));
            }
            let value = value.strip_prefix(' ').unwrap_or(value).trim_end();
            fields.push((line, key.to_owned(), value.to_owned()));
        }
        let get = |k: &str| fields.iter().find(|(_, key, _)| key == k);
        let required = |k: &str| {
            get(k)
                .filter(|(_, _, v)| !v.is_empty())
                .ok_or_else(|| err(0, format!("{k} is missing")))
        };
        let optional = |k: &str| get(k).map(|(_, _, v)| v.clone()).filter(|v| !v.is_empty());
        let (l, _, v) = required("ContentType")?;
        let content_type: ContentType = v.parse().map_err(|e: String| err(*l, e))?;
        let recipient = required("Recipient")?.2.clone();
        if !recipient.contains('@') || recipient.contains(char::is_whitespace) {
            return Err(err(required("Recipient")?.0, "Recipient is not an address"));
        }
        let caller_id = optional("CallerId");
        if let Some(c) = &caller_id
            && !is_e164(c)
        {
            let line = get("CallerId").map_or(0, |f| f.0);
            return Err(err(line, format!("CallerId {c:?} is not E.164")));
        }
        let number = |k: &str| -> Result<Option<u32>, HeaderError> {
            match get(k).filter(|(_, _, v)| !v.is_empty()) {
                None => Ok(None),
                Some((l, _, v)) => v
                    .parse()
                    .map(Some)
                    .map_err(|_| err(*l, format!("{k} {v:?} is not a whole number"))),
            }
        };
        let duration = number("Duration")?;
        let attempts = number("Attempts")?.unwrap_or(0);
        let audio_file = optional("AudioFile");
        if let Some(f) = &audio_file
            && (f.contains(['/', '\\']) || f.starts_with('.'))
        {
            let line = get("AudioFile").map_or(0, |f| f.0);
            return Err(err(
                line,
                format!("AudioFile {f:?} must be a plain file name"),
            ));
        }
        if content_type == ContentType::Voicemail {
            required("AudioFile")?;
            required("Duration")?;
        }
        let (l, _, received_time) = required("ReceivedTime")?;
        message_date(received_time).map_err(|e| err(*l, e))?;
        let importance = match get("Importance").filter(|(_, _, v)| !v.is_empty()) {
            None => Importance::Normal,
            Some((l, _, v)) => v.parse().map_err(|e: String| err(*l, e))?,
        };
        Ok(Header {
            content_type,
            recipient,
            caller_id,
            caller_name: optional("CallerName"),
            call_id: required("CallId")?.2.clone(),
            duration,
            audio_file,
            audio_codec: optional("AudioCodec"),
            received_time: received_time.clone(),
            subject: optional("Subject"),
            importance,
            attempts,
            last_error: optional("LastError").unwrap_or_default(),
            extra: fields
                .into_iter()
                .filter(|(_, k, _)| !KNOWN.contains(&k.as_str()))
                .map(|(_, k, v)| (k, v))
                .collect(),
        })
    }

    /// Writes the header file. Values are kept on one line: line breaks in a
    /// value (say, an error text) become spaces.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut put = |k: &str, v: &str| {
            let v: String = if single_line(v) {
                v.to_owned()
            } else {
                v.replace(['\r', '\n'], " ")
            };
            let _ = writeln!(out, "{k}: {}", v.trim_end());
        };
        put("ContentType", &self.content_type.to_string());
        put("Recipient", &self.recipient);
        if let Some(c) = &self.caller_id {
            put("CallerId", c);
        }
        if let Some(c) = &self.caller_name {
            put("CallerName", c);
        }
        put("CallId", &self.call_id);
        if let Some(d) = self.duration {
            put("Duration", &d.to_string());
        }
        if let Some(a) = &self.audio_file {
            put("AudioFile", a);
        }
        if let Some(a) = &self.audio_codec {
            put("AudioCodec", a);
        }
        put("ReceivedTime", &self.received_time);
        if let Some(s) = &self.subject {
            put("Subject", s);
        }
        put("Importance", &self.importance.to_string());
        put("Attempts", &self.attempts.to_string());
        put("LastError", &self.last_error);
        for (k, v) in &self.extra {
            put(k, v);
        }
        out
    }

    /// The subject line UM writes: "Voice Mail from <caller> (<n> seconds)".
    pub fn subject_line(&self) -> String {
        if let Some(s) = &self.subject {
            return s.clone();
        }
        let caller = self
            .caller_name
            .as_deref()
            .or(self.caller_id.as_deref())
            .unwrap_or("Unknown caller");
        match self.content_type {
            ContentType::Voicemail => format!(
                "Voice Mail from {caller} ({} seconds)",
                self.duration.unwrap_or(0)
            ),
            ContentType::MissedCall => format!("Missed call from {caller}"),
        }
    }
}
