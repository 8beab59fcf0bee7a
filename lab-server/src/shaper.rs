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
    CONTENT_ALERT, CONTENT_HANDSHAKE, CertificateRequest12, FlightReader, FlightSink,
    HANDSHAKE_HEADER_LEN, HS_CERTIFICATE_REQUEST, HS_SERVER_HELLO, MAX_PLAINTEXT,
    RECORD_HEADER_LEN, RecordHeader,
};

pub use crate::settings::Layout;

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
    reader: FlightReader,
    emit: Emit,
    alert: Option<[u8; 2]>,
}

/// The [`FlightSink`] half: where the flight's records and messages go.
#[derive(Clone, Debug)]
struct Emit {
    layout: Layout,
    max_payload: usize,
    out: Vec<u8>,
    observed: Option<Observed>,
    server_hello: bool,
}

impl FlightSink for Emit {
    fn record(&mut self, raw: &[u8]) {
        if self.layout == Layout::Coalesced {
            self.out.extend_from_slice(raw);
        }
    }

    fn message(&mut self, message: &[u8], records: usize, version: [u8; 2]) {
        let records = match self.layout {
            Layout::PerMessage => {
                frame(&mut self.out, version, message, self.max_payload);
                message.len().div_ceil(self.max_payload).max(1)
            }
            Layout::Coalesced => records,
        };
        self.server_hello |= message.first() == Some(&HS_SERVER_HELLO);
        if message.first() == Some(&HS_CERTIFICATE_REQUEST) {
            self.observed = Some(Observed {
                message_bytes: message.len(),
                records,
                ca_names: message
                    .get(HANDSHAKE_HEADER_LEN..)
                    .and_then(|body| CertificateRequest12::parse(body).ok())
                    .map(|cr| cr.ca_names),
            });
        }
    }
}

impl Shaper {
    /// A shaper for `layout`; `max_fragment` counts the 5-byte record header
    /// (valid 32..=16,389, clamped).
    pub fn new(layout: Layout, max_fragment: usize) -> Shaper {
        Shaper {
            reader: FlightReader::new(),
            emit: Emit {
                layout,
                max_payload: max_fragment
                    .saturating_sub(RECORD_HEADER_LEN)
                    .clamp(1, MAX_PLAINTEXT),
                out: Vec::new(),
                observed: None,
                server_hello: false,
            },
            alert: None,
        }
    }

    /// The plaintext alert (level, description) that ended the flight, if one
    /// did: what the server told a client it refused.
    pub fn alert(&self) -> Option<[u8; 2]> {
        self.alert
    }

    /// The CertificateRequest seen in the plaintext flight, if one went by.
    pub fn observed(&self) -> Option<&Observed> {
        self.emit.observed.as_ref()
    }

    /// Whether a ServerHello went out (in TLS 1.3, the encrypted rest of the
    /// flight, CertificateRequest included, follows it).
    pub fn server_hello_sent(&self) -> bool {
        self.emit.server_hello
    }

    /// Whether shaping is over and bytes now pass unchanged.
    pub fn is_passthrough(&self) -> bool {
        self.reader.ended()
    }

    /// Consumes `input`, appending the shaped bytes that are ready to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if self.reader.ended() {
            out.extend_from_slice(input);
            return;
        }
        let rest = self.reader.feed(input, &mut self.emit);
        out.append(&mut self.emit.out);
        if let Some(rest) = rest {
            // The plaintext flight is over: a message cut short is framed as
            // it is (per-message; coalesced already passed its records on),
            // then everything passes unchanged.
            if let [CONTENT_ALERT, _, _, 0, 2, level, description, ..] = rest[..] {
                self.alert = Some([level, description]);
            }
            let (partial, version) = self.reader.take_partial();
            if self.emit.layout == Layout::PerMessage && !partial.is_empty() {
                frame(out, version, &partial, self.emit.max_payload);
            }
            out.extend_from_slice(&rest);
        }
    }
}

/// Writes `data` as handshake records of at most `max_payload` bytes each.
fn frame(out: &mut Vec<u8>, version: [u8; 2], data: &[u8], max_payload: usize) {
    for chunk in data.chunks(max_payload.max(1)) {
        RecordHeader::write(out, CONTENT_HANDSHAKE, version, chunk.len());
        out.extend_from_slice(chunk);
    }
}
