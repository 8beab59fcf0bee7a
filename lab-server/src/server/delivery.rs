//! Delivery of an accepted message: the Received header, the durable Maildir
//! write and the voicemail check, all on the blocking pool (fsync and a full
//! MIME and WAV parse must not stall the tokio workers serving other
//! sessions).

use super::Shared;
use crate::events::{ConnectionEvent, Stored};
use crate::maildir::check_voicemail;
use crate::smtp::Envelope;

/// Stores `body` for `envelope`; on success records it in the event and
/// returns the queue id for the 250 reply, else the reason for a 451.
pub(super) async fn deliver(
    shared: &Shared,
    event: &mut ConnectionEvent,
    tls_active: bool,
    envelope: Envelope,
    body: &[u8],
) -> Result<String, String> {
    let message = with_received_header(shared, event, tls_active, &envelope.helo, body);
    let maildir = shared.maildir.clone();
    let stored = tokio::task::spawn_blocking(move || {
        let path = maildir.deliver(&message)?;
        let check = check_voicemail(&message);
        Ok::<_, std::io::Error>((path, message.len(), check))
    })
    .await;
    match stored {
        Ok(Ok((path, bytes, voicemail))) => {
            let id = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            event.stored.push(Stored {
                path: path.display().to_string(),
                bytes,
                from: envelope.from,
                to: envelope.to,
                voicemail,
            });
            Ok(id)
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Prepends a Received header (RFC 5321 4.4) naming the TLS session.
fn with_received_header(
    shared: &Shared,
    event: &ConnectionEvent,
    tls_active: bool,
    helo: &str,
    body: &[u8],
) -> Vec<u8> {
    let tls = match (&event.tls_version, &event.client_certificate) {
        (Some(v), Some(c)) => format!(
            " ({v}, client certificate {})",
            super::session::printable(c.subject.as_bytes())
        ),
        (Some(v), None) => format!(" ({v}, no client certificate)"),
        _ => String::new(),
    };
    let with = if tls_active { "ESMTPS" } else { "ESMTP" };
    let header = format!(
        "Received: from {} ({})\r\n\tby {} (umlab lab-server) with {with}{tls};\r\n\t{}\r\n",
        super::session::printable(helo.as_bytes()),
        event.peer,
        shared.session.hostname,
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap_or_default()
    );
    let mut out = Vec::with_capacity(header.len() + body.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(body);
    out
}
