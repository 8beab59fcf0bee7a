//! The voicemail message as Exchange UM submits it, built with lettre
//! (MS-OXCMAIL 2.1.3.2.2 and 2.2.3.2.23, MS-OXOUM).

use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};

use crate::header::{self, Header, Importance};

/// Errors building a message.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// An address lettre refuses.
    #[error("address {0:?}: {1}")]
    Address(String, lettre::address::AddressError),
    /// lettre refused the message.
    #[error("message: {0}")]
    Build(#[from] lettre::error::Error),
    /// A ReceivedTime that cannot be the message's Date.
    #[error("{0}")]
    Date(String),
    /// A content type lettre refuses.
    #[error("content type: {0}")]
    ContentType(#[from] lettre::message::header::ContentTypeErr),
}

fn raw(name: &'static str, value: impl Into<String>) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value.into())
}

/// The Message-ID of an item: derived from its queue GUID, so a duplicate
/// submission after a crash is recognisable.
pub fn message_id(guid: &str, domain: &str) -> String {
    format!("<{guid}@{domain}>")
}

/// Builds the RFC 5322 message for an item. `audio` is the WAV file's bytes
/// (`None` for a missed call).
pub fn build(
    header: &Header,
    guid: &str,
    from: &str,
    audio: Option<&[u8]>,
) -> Result<Vec<u8>, MessageError> {
    let parse = |a: &str| -> Result<Mailbox, MessageError> {
        a.parse()
            .map_err(|e| MessageError::Address(a.to_owned(), e))
    };
    let from_box = parse(from)?;
    let domain = from.rsplit_once('@').map_or("um.lab.test", |(_, d)| d);
    let caller = header
        .caller_name
        .clone()
        .or_else(|| header.caller_id.clone())
        .unwrap_or_else(|| "Unknown caller".to_owned());
    // Checked again here (Header::parse checks it too): lettre panics on a
    // date it cannot write, and a Header can be built without parse.
    let date = header::message_date(&header.received_time).map_err(MessageError::Date)?;
    let mut builder = Message::builder()
        .from(from_box)
        .to(parse(&header.recipient)?)
        .subject(header.subject_line())
        .date(date)
        .message_id(Some(message_id(guid, domain)))
        .raw_header(raw(
            "Content-Class",
            match header.content_type {
                header::ContentType::Voicemail => "voice-ca",
                header::ContentType::MissedCall => "missedcall",
            },
        ))
        .raw_header(raw("X-CallID", header.call_id.clone()));
    if let Some(number) = &header.caller_id {
        builder = builder.raw_header(raw("X-CallingTelephoneNumber", number.clone()));
    }
    if let Some(name) = &header.caller_name {
        builder = builder.raw_header(raw("X-VoiceMessageSenderName", name.clone()));
    }
    if header.importance != Importance::Normal {
        builder = builder.raw_header(raw("Importance", header.importance.to_string()));
    }
    let text = match header.content_type {
        header::ContentType::Voicemail => format!(
            "You received a voice mail from {caller}.\r\nLength: {} seconds.\r\n",
            header.duration.unwrap_or(0)
        ),
        header::ContentType::MissedCall => format!("You missed a call from {caller}.\r\n"),
    };
    let message = match (audio, &header.audio_file) {
        (Some(bytes), Some(name)) => {
            let seconds = header.duration.unwrap_or(0);
            builder
                .raw_header(raw("X-VoiceMessageDuration", seconds.to_string()))
                .raw_header(raw("X-AttachmentOrder", name.clone()))
                .multipart(
                    MultiPart::mixed()
                        .singlepart(SinglePart::plain(text))
                        .singlepart(
                            Attachment::new(name.clone())
                                .body(bytes.to_vec(), ContentType::parse("audio/wav")?),
                        ),
                )?
        }
        _ => builder.singlepart(SinglePart::plain(text))?,
    };
    Ok(message.formatted())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(received: &str) -> Header {
        Header::parse(
            "ContentType: missedcall\nRecipient: a@b.test\nCallId: 1\n\
             ReceivedTime: 2026-11-25T17:00:00Z\n",
        )
        .map(|h| Header {
            received_time: received.to_owned(),
            ..h
        })
        .unwrap()
    }

    #[test]
    fn a_date_lettre_cannot_write_is_an_error_not_a_panic() {
        for bad in [
            "1969-12-31T23:59:59Z",
            "1969-12-31T23:59:59.999Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59-23:59",
        ] {
            let built = std::panic::catch_unwind(|| {
                build(&header(bad), "g", "um@um.lab.test", None).map(|_| ())
            });
            match built {
                Ok(Err(e)) => assert!(e.to_string().contains("ReceivedTime"), "{bad}: {e}"),
                Ok(Ok(())) => panic!("{bad}: built"),
                Err(_) => panic!("{bad}: build panicked"),
            }
        }
        for good in ["1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z"] {
            assert!(
                build(&header(good), "g", "um@um.lab.test", None).is_ok(),
                "{good}"
            );
        }
    }
}
