//! Durable capture: each accepted message becomes a file in a Maildir, written
//! to `tmp/`, fsynced, renamed into `new/`, and the folder fsynced, before the
//! 250 reply to DATA. A connection lost mid-DATA never reaches this code, so it
//! leaves nothing in `new/`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use mail_parser::{MessageParser, MimeHeaders};
use serde::Serialize;

/// A Maildir (`tmp/`, `new/`, `cur/`).
#[derive(Clone, Debug)]
pub struct Maildir {
    root: PathBuf,
    host: String,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl Maildir {
    /// Opens `root`, creating the three folders if needed.
    pub fn create(root: &Path, host: &str) -> std::io::Result<Maildir> {
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        Ok(Maildir {
            root: root.to_owned(),
            host: host.replace(['/', ':'], "_"),
        })
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stores a message durably and returns its path in `new/`. Blocking: call
    /// from a blocking thread.
    pub fn deliver(&self, message: &[u8]) -> std::io::Result<PathBuf> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let name = format!(
            "{}.M{}P{}Q{}.{}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            self.host
        );
        let tmp = self.root.join("tmp").join(&name);
        let new = self.root.join("new").join(&name);
        let result = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            file.write_all(message)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &new)?;
            std::fs::File::open(self.root.join("new"))?.sync_all()
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(new)
    }
}

/// Whether a stored message is a well-formed UM voicemail (MS-OXCMAIL
/// 2.2.3.2.23, MS-OXOUM): Content-Class `voice-ca`, an audio attachment and an
/// X-CallID header.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VoicemailCheck {
    /// The message parsed as MIME.
    pub parsed: bool,
    /// Value of Content-Class, if any.
    pub content_class: Option<String>,
    /// Number of audio/* attachments.
    pub audio_attachments: usize,
    /// Value of X-CallID, if any.
    pub call_id: Option<String>,
    /// All three present.
    pub well_formed_voicemail: bool,
}

/// Parses a message with mail-parser and checks the voicemail markers.
pub fn check_voicemail(message: &[u8]) -> VoicemailCheck {
    let Some(parsed) = MessageParser::default().parse(message) else {
        return VoicemailCheck::default();
    };
    let header = |name: &str| parsed.header_raw(name).map(|v| v.trim().to_owned());
    let content_class = header("Content-Class");
    let call_id = header("X-CallID");
    let audio_attachments = parsed
        .attachments()
        .filter(|part| {
            part.content_type()
                .is_some_and(|ct| ct.ctype().eq_ignore_ascii_case("audio"))
        })
        .count();
    let well_formed_voicemail = content_class
        .as_deref()
        .is_some_and(|c| c.eq_ignore_ascii_case("voice-ca"))
        && audio_attachments > 0
        && call_id.as_deref().is_some_and(|c| !c.is_empty());
    VoicemailCheck {
        parsed: true,
        content_class,
        audio_attachments,
        call_id,
        well_formed_voicemail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_into_new_and_checks_voicemail() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::create(dir.path(), "hub.lab.test").unwrap();
        let voicemail = b"Content-Class: voice-ca\r\nX-CallID: 42\r\nSubject: vm\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
--b\r\nContent-Type: audio/wav\r\nContent-Disposition: attachment; filename=a.wav\r\n\
Content-Transfer-Encoding: base64\r\n\r\nUklGRg==\r\n--b--\r\n";
        let path = md.deliver(voicemail).unwrap();
        assert_eq!(path.parent().unwrap(), dir.path().join("new"));
        assert_eq!(std::fs::read(&path).unwrap(), voicemail);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
        let check = check_voicemail(voicemail);
        assert!(check.well_formed_voicemail, "{check:?}");
        assert_eq!(check.audio_attachments, 1);
        let plain = check_voicemail(b"Subject: hi\r\n\r\nbody\r\n");
        assert!(plain.parsed && !plain.well_formed_voicemail);
        assert_eq!(plain.audio_attachments, 0);
    }
}
