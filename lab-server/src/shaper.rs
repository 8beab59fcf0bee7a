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
//!
//! Two persona behaviours live here too, both on plaintext records only, so no
//! transcript hash changes ([`Rewrite`]): OpenSSL past its list limit (the
//! flight ends after ServerKeyExchange with a fatal internal_error alert, and
//! nothing more leaves), and the alert a server sends in TLS 1.2 when no client
//! certificate comes (rustls writes certificate_required, 116; OpenSSL writes
//! handshake_failure, 40).
//!
//! The framing faults of [`crate::faults`] live here too, for the same reason:
//! stop the flight right after the CertificateRequest, hold the
//! ServerHelloDone back (the stream releases it after its delay; the shaper
//! only holds), or cut the CertificateRequest into small records. Any of them
//! frames the flight one message per record, whatever the layout: the
//! coalesced layout shares records between messages, so it cannot stop or
//! split at a message's edge.

use certgen::wire::{
    ALERT_FATAL, ALERT_INTERNAL_ERROR, CONTENT_ALERT, CONTENT_HANDSHAKE, CertificateRequest12,
    FlightReader, FlightSink, HANDSHAKE_HEADER_LEN, HS_CERTIFICATE_REQUEST, HS_SERVER_HELLO,
    HS_SERVER_HELLO_DONE, MAX_PLAINTEXT, RECORD_HEADER_LEN, RecordHeader, server_hello_version,
};

/// Alert description certificate_required (116): what rustls sends when a
/// required client certificate does not come.
const ALERT_CERTIFICATE_REQUIRED: u8 = 116;

/// What a persona changes in the plaintext records, beyond their layout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// End the flight after ServerKeyExchange: where the CertificateRequest
    /// would start, send a fatal internal_error alert instead and let nothing
    /// more out (OpenSSL past its list limit). The flight is then framed one
    /// message per record, as OpenSSL frames it, whatever the layout.
    pub fail_before_request: bool,
    /// The description a plaintext fatal certificate_required alert is
    /// rewritten to (handshake_failure, 40, for OpenSSL in TLS 1.2).
    pub no_cert_alert: Option<u8>,
    /// Fault: let nothing out after the CertificateRequest (the
    /// ServerHelloDone never leaves); [`Shaper::closed`] turns true.
    pub close_after_request: bool,
    /// Fault: hold the ServerHelloDone and everything after it until
    /// [`Shaper::release`].
    pub hold_done: bool,
    /// Fault: the CertificateRequest in records of at most this many bytes of
    /// payload (at least 1; capped by the record size).
    pub fragment_request: Option<usize>,
}

impl Rewrite {
    /// Whether a rewrite forces one message per record.
    fn per_message(&self) -> bool {
        self.fail_before_request
            || self.close_after_request
            || self.hold_done
            || self.fragment_request.is_some()
    }
}

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
    no_cert_alert: Option<u8>,
    /// Output held back (the ServerHelloDone and what follows it).
    held: Vec<u8>,
    holding: bool,
}

/// The [`FlightSink`] half: where the flight's records and messages go.
#[derive(Clone, Debug)]
struct Emit {
    layout: Layout,
    max_payload: usize,
    out: Vec<u8>,
    observed: Option<Observed>,
    server_hello: bool,
    /// The version the ServerHello selected, when it parsed.
    version: Option<u16>,
    fail_before_request: bool,
    aborted: bool,
    rewrite: Rewrite,
    /// Close-after-request fired: nothing more leaves.
    closed: bool,
    /// Where in `out` the held ServerHelloDone starts, once framed.
    hold_from: Option<usize>,
    /// The hold is one-shot.
    held_once: bool,
}

impl FlightSink for Emit {
    fn record(&mut self, raw: &[u8]) {
        if self.layout == Layout::Coalesced && !self.rewrite.per_message() {
            self.out.extend_from_slice(raw);
        }
    }

    fn message(&mut self, message: &[u8], records: usize, version: [u8; 2]) {
        if self.aborted || self.closed {
            return;
        }
        if self.fail_before_request
            && matches!(
                message.first(),
                Some(&HS_CERTIFICATE_REQUEST | &HS_SERVER_HELLO_DONE)
            )
        {
            RecordHeader::write(&mut self.out, CONTENT_ALERT, version, 2);
            self.out
                .extend_from_slice(&[ALERT_FATAL, ALERT_INTERNAL_ERROR]);
            self.aborted = true;
            return;
        }
        let layout = if self.rewrite.per_message() {
            Layout::PerMessage
        } else {
            self.layout
        };
        let request = message.first() == Some(&HS_CERTIFICATE_REQUEST);
        let max_payload = match self.rewrite.fragment_request {
            Some(n) if request => n.clamp(1, self.max_payload),
            _ => self.max_payload,
        };
        if self.rewrite.hold_done
            && !self.held_once
            && message.first() == Some(&HS_SERVER_HELLO_DONE)
        {
            self.hold_from = Some(self.out.len());
            self.held_once = true;
        }
        let records = match layout {
            Layout::PerMessage => {
                frame(&mut self.out, version, message, max_payload);
                message.len().div_ceil(max_payload).max(1)
            }
            Layout::Coalesced => records,
        };
        self.closed = request && self.rewrite.close_after_request;
        if message.first() == Some(&HS_SERVER_HELLO) && !self.server_hello {
            self.server_hello = true;
            self.version = message
                .get(HANDSHAKE_HEADER_LEN..)
                .and_then(|body| server_hello_version(body).ok());
        }
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
        Shaper::with_rewrite(layout, max_fragment, Rewrite::default())
    }

    /// A shaper that also applies a persona's [`Rewrite`].
    pub fn with_rewrite(layout: Layout, max_fragment: usize, rewrite: Rewrite) -> Shaper {
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
                version: None,
                fail_before_request: rewrite.fail_before_request,
                aborted: false,
                rewrite,
                closed: false,
                hold_from: None,
                held_once: false,
            },
            alert: None,
            no_cert_alert: rewrite.no_cert_alert,
            held: Vec::new(),
            holding: false,
        }
    }

    /// Whether close-after-request fired: the CertificateRequest went out,
    /// nothing more will, and the connection must close.
    pub fn closed(&self) -> bool {
        self.emit.closed
    }

    /// Whether output is held back (the ServerHelloDone, by hold-done) until
    /// [`Shaper::release`].
    pub fn holding(&self) -> bool {
        self.holding
    }

    /// Ends the hold: returns the held bytes, to go out now; from here output
    /// flows again. Empty when nothing was held.
    pub fn release(&mut self) -> Vec<u8> {
        self.holding = false;
        std::mem::take(&mut self.held)
    }

    /// Whether the flight was cut after ServerKeyExchange with an
    /// internal_error alert ([`Rewrite::fail_before_request`]): nothing more
    /// leaves, and the connection must end.
    pub fn aborted(&self) -> bool {
        self.emit.aborted
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

    /// The version the ServerHello selected (its supported_versions in TLS
    /// 1.3, else its version field), when one went out and parsed: in TLS 1.3
    /// what follows the ServerHello, the client's Certificate included, is
    /// encrypted.
    pub fn server_hello_version(&self) -> Option<u16> {
        self.emit.version
    }

    /// Whether shaping is over and bytes now pass unchanged.
    pub fn is_passthrough(&self) -> bool {
        self.reader.ended()
    }

    /// Consumes `input`, appending the shaped bytes that are ready to `out`
    /// (while [`Shaper::holding`], they are held instead).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if self.holding {
            let mut later = Vec::new();
            self.feed_now(input, &mut later);
            self.held.append(&mut later);
            return;
        }
        let start = out.len();
        self.feed_now(input, out);
        if let Some(from) = self.emit.hold_from.take() {
            // `from` counts from the start of this call's emitted bytes.
            let at = (start + from).min(out.len());
            self.held = out.split_off(at);
            self.holding = true;
        }
    }

    fn feed_now(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if self.emit.aborted || self.emit.closed {
            return;
        }
        if self.reader.ended() {
            out.extend_from_slice(input);
            return;
        }
        let rest = self.reader.feed(input, &mut self.emit);
        out.append(&mut self.emit.out);
        if self.emit.aborted {
            self.alert = Some([ALERT_FATAL, ALERT_INTERNAL_ERROR]);
            return;
        }
        if let Some(mut rest) = rest {
            if let (Some(to), [CONTENT_ALERT, _, _, 0, 2, ALERT_FATAL, description, ..]) =
                (self.no_cert_alert, &mut rest[..])
                && *description == ALERT_CERTIFICATE_REQUIRED
            {
                *description = to;
            }
            // The plaintext flight is over: a message cut short is framed as
            // it is (per-message; coalesced already passed its records on),
            // then everything passes unchanged.
            if let [CONTENT_ALERT, _, _, 0, 2, level, description, ..] = rest[..] {
                self.alert = Some([level, description]);
            }
            let (partial, version) = self.reader.take_partial();
            let per_message =
                self.emit.layout == Layout::PerMessage || self.emit.rewrite.per_message();
            if per_message && !partial.is_empty() {
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
