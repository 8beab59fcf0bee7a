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
//!
//! In both layouts the shaper reads the flight and records what the
//! CertificateRequest looked like on the wire: its size, the records it
//! spanned and the names it carried.

use certgen::wire::{
    CONTENT_HANDSHAKE, CertificateRequest12, HANDSHAKE_HEADER_LEN, HS_CERTIFICATE_REQUEST,
    HandshakeHeader, MAX_PLAINTEXT, RECORD_HEADER_LEN, RecordHeader,
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
    /// Reading plaintext handshake records (and re-framing their messages
    /// in the per-message layout).
    Handshake,
    /// Everything passes unchanged.
    Passthrough,
}

/// The CertificateRequest as it went out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// Handshake message bytes, header included.
    pub message_bytes: usize,
    /// Records the message spanned.
    pub records: usize,
    /// The CA names, when the body parsed as a TLS 1.2 CertificateRequest.
    pub ca_names: Option<Vec<Vec<u8>>>,
}

/// Re-frames an outbound TLS byte stream. Feed it whatever the TLS library
/// writes, in any pieces; it emits the shaped stream.
#[derive(Clone, Debug)]
pub struct Shaper {
    state: State,
    layout: Layout,
    max_payload: usize,
    /// Input not yet forming a whole record.
    pending: Vec<u8>,
    /// Handshake bytes not yet forming a whole message.
    messages: Vec<u8>,
    /// Record version of the handshake bytes in `messages`.
    version: [u8; 2],
    /// Handshake-stream offset of `messages[0]`.
    offset: usize,
    /// Handshake-stream ranges of the records read (for the coalesced count).
    record_ranges: Vec<(usize, usize)>,
    observed: Option<Observed>,
}

impl Shaper {
    /// A shaper for `layout`; `max_fragment` counts the 5-byte record header
    /// (valid 32..=16,389, clamped).
    pub fn new(layout: Layout, max_fragment: usize) -> Shaper {
        Shaper {
            state: State::Handshake,
            layout,
            max_payload: max_fragment
                .saturating_sub(RECORD_HEADER_LEN)
                .clamp(1, MAX_PLAINTEXT),
            pending: Vec::new(),
            messages: Vec::new(),
            version: [3, 3],
            offset: 0,
            record_ranges: Vec::new(),
            observed: None,
        }
    }

    /// The CertificateRequest seen in the plaintext flight, if one went by.
    pub fn observed(&self) -> Option<&Observed> {
        self.observed.as_ref()
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
            let from = self.offset + self.messages.len();
            self.record_ranges.push((from, from + payload.len()));
            self.messages.extend_from_slice(payload);
            if self.layout == Layout::Coalesced
                && let Some(raw) = self.pending.get(at..start + header.len)
            {
                out.extend_from_slice(raw);
            }
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
            let records = match self.layout {
                Layout::PerMessage => {
                    frame(out, self.version, message, self.max_payload);
                    message.len().div_ceil(self.max_payload).max(1)
                }
                Layout::Coalesced => {
                    let (a, b) = (self.offset + at, self.offset + end);
                    self.record_ranges
                        .iter()
                        .filter(|&&(s, e)| s < b && a < e)
                        .count()
                }
            };
            if h.msg_type == HS_CERTIFICATE_REQUEST {
                self.observed = Some(Observed {
                    message_bytes: message.len(),
                    records,
                    ca_names: message
                        .get(HANDSHAKE_HEADER_LEN..)
                        .and_then(CertificateRequest12::parse)
                        .map(|cr| cr.ca_names),
                });
            }
            at = end;
        }
        self.messages.drain(..at);
        self.offset += at;
    }

    /// Ends shaping: a partial message still held is framed as it is.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.layout == Layout::PerMessage && !self.messages.is_empty() {
            let held = std::mem::take(&mut self.messages);
            frame(out, self.version, &held, self.max_payload);
        }
        self.messages = Vec::new();
        self.record_ranges = Vec::new();
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
