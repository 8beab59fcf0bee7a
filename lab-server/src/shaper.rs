//! The record shaper: re-frames the server's plaintext handshake flight the
//! way Schannel and OpenSSL write it. Pure codec over bytes.
//!
//! rustls encodes the whole first flight (ServerHello .. ServerHelloDone) as one
//! stream and cuts it into records, so the CertificateRequest does not start a
//! record of its own. Schannel and OpenSSL start each handshake message on a new
//! record. Whether an old client can read the CertificateRequest depends on that
//! layout, so lab-server re-frames below rustls: each handshake message starts a
//! new record, with at most `max_fragment - 5` bytes of payload per record. Only
//! the framing changes, never a handshake byte, so no transcript hash changes.
//! The first record that is not a plaintext handshake record (ChangeCipherSpec,
//! alert, application data) ends shaping; from there bytes pass unchanged.

use certgen::wire::{
    CONTENT_HANDSHAKE, HANDSHAKE_HEADER_LEN, HandshakeHeader, MAX_PLAINTEXT, RECORD_HEADER_LEN,
    RecordHeader,
};

/// How the first flight is laid out in records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// Each handshake message starts a new record (Schannel, OpenSSL).
    PerMessage,
    /// rustls as is: the flight is one stream cut into records.
    Coalesced,
}

impl std::str::FromStr for Layout {
    type Err = String;

    fn from_str(s: &str) -> Result<Layout, String> {
        match s {
            "per-message" => Ok(Layout::PerMessage),
            "coalesced" => Ok(Layout::Coalesced),
            _ => Err(format!(
                "unknown record layout {s:?}: expected per-message or coalesced"
            )),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading plaintext handshake records and re-framing their messages.
    Handshake,
    /// Everything passes unchanged.
    Passthrough,
}

/// Re-frames an outbound TLS byte stream. Feed it whatever the TLS library
/// writes, in any pieces; it emits the shaped stream.
#[derive(Clone, Debug)]
pub struct Shaper {
    state: State,
    max_payload: usize,
    /// Input not yet forming a whole record.
    pending: Vec<u8>,
    /// Handshake bytes not yet forming a whole message.
    messages: Vec<u8>,
    /// Record version of the handshake bytes in `messages`.
    version: [u8; 2],
}

impl Shaper {
    /// A shaper for `layout`; `max_fragment` counts the 5-byte record header
    /// (valid 32..=16,389, clamped).
    pub fn new(layout: Layout, max_fragment: usize) -> Shaper {
        Shaper {
            state: match layout {
                Layout::PerMessage => State::Handshake,
                Layout::Coalesced => State::Passthrough,
            },
            max_payload: max_fragment
                .saturating_sub(RECORD_HEADER_LEN)
                .clamp(1, MAX_PLAINTEXT),
            pending: Vec::new(),
            messages: Vec::new(),
            version: [3, 3],
        }
    }

    /// Whether shaping is over and bytes now pass unchanged.
    pub fn is_passthrough(&self) -> bool {
        self.state == State::Passthrough
    }

    /// Consumes `input`, appending the shaped bytes that are ready to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if self.state == State::Passthrough {
            out.extend_from_slice(input);
            return;
        }
        self.pending.extend_from_slice(input);
        let mut at = 0;
        loop {
            let Some(header) = self.pending.get(at..).and_then(RecordHeader::parse) else {
                // Fewer than five bytes: wait for the rest of the header.
                self.pending.drain(..at);
                return;
            };
            if !header.is_plausible() || header.content_type != CONTENT_HANDSHAKE {
                break;
            }
            let start = at + RECORD_HEADER_LEN;
            let Some(payload) = self.pending.get(start..start + header.len) else {
                // Incomplete record: wait for the rest of it.
                self.pending.drain(..at);
                return;
            };
            if self.messages.is_empty() {
                self.version = header.version;
            }
            self.messages.extend_from_slice(payload);
            at = start + header.len;
            self.emit_whole_messages(out);
        }
        // Not a plaintext handshake record (or not a record at all): the
        // plaintext flight is over. Release what is held, unchanged.
        let rest = self.pending.split_off(at);
        self.pending.clear();
        self.finish(out);
        out.extend_from_slice(&rest);
    }

    /// Frames every complete handshake message held.
    fn emit_whole_messages(&mut self, out: &mut Vec<u8>) {
        let mut at = 0;
        while let Some(h) = self.messages.get(at..).and_then(HandshakeHeader::parse) {
            let end = at + HANDSHAKE_HEADER_LEN + h.len;
            let Some(message) = self.messages.get(at..end) else {
                break;
            };
            frame(out, self.version, message, self.max_payload);
            at = end;
        }
        self.messages.drain(..at);
    }

    /// Ends shaping: a partial message still held is framed as it is.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.messages.is_empty() {
            let held = std::mem::take(&mut self.messages);
            frame(out, self.version, &held, self.max_payload);
        }
        self.state = State::Passthrough;
    }
}

/// Writes `data` as handshake records of at most `max_payload` bytes each.
fn frame(out: &mut Vec<u8>, version: [u8; 2], data: &[u8], max_payload: usize) {
    for chunk in data.chunks(max_payload.max(1)) {
        RecordHeader::write(out, CONTENT_HANDSHAKE, version, chunk.len());
        out.extend_from_slice(chunk);
    }
}
