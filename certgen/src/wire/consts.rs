//! The TLS wire constants of the lab, in one place: both ends of the lab,
//! the policy arithmetic and the reports compute with these, so a size on one
//! side can never drift from the same size on the other.

// ---------------------------------------------------------------------------
// Framing

/// Bytes of a record header: content type, legacy version, u16 length.
pub const RECORD_HEADER_LEN: usize = 5;
/// Bytes of a handshake message header: type and u24 body length.
pub const HANDSHAKE_HEADER_LEN: usize = 4;
/// Bytes of the length prefix of each DistinguishedName in
/// certificate_authorities: every name costs this plus its DER length.
pub const NAME_LEN_PREFIX: usize = 2;
/// Largest record plaintext, 2^14 (RFC 5246 6.2.1): a handshake message
/// longer than this is split across records.
pub const MAX_PLAINTEXT: usize = 1 << 14;
/// Largest ciphertext a record may carry (RFC 5246 6.2.3: 2^14 + 2048).
pub const MAX_RECORD_PAYLOAD: usize = MAX_PLAINTEXT + 2048;
/// Largest record, header included: the upper bound of rustls's
/// `max_fragment_size` (16,389).
pub const MAX_FRAGMENT: usize = RECORD_HEADER_LEN + MAX_PLAINTEXT;
/// Smallest `max_fragment_size` rustls accepts, header included.
pub const MIN_FRAGMENT: usize = 32;

// ---------------------------------------------------------------------------
// Length fields

/// Largest value of a u16 length, 2^16 - 1 = 65,535: the bound of
/// certificate_authorities and of each name in TLS 1.2, and of the extensions
/// block in TLS 1.3.
pub const U16_MAX: usize = 0xffff;
/// Largest value of a u24 handshake length, 2^24 - 1: what a peer can claim.
pub const U24_MAX: usize = 0xff_ffff;
/// Largest handshake message body the lab's readers assemble, 2^18 =
/// 262,144 bytes. Above the largest TLS 1.2 CertificateRequest possible
/// (131,329 bytes, every vector full) and the largest message any client of
/// DESIGN.md section 2a accepts (NSS, 131,071), so no real flight is cut; far
/// below the 16 MB a u24 can claim, so a hostile claim cannot make a reader
/// buffer it.
pub const MAX_HANDSHAKE_LEN: usize = 1 << 18;

// The cap holds the largest TLS 1.2 CertificateRequest body (types, schemes
// and names each at their vector bound) and stays below what a u24 can claim.
const _: () = assert!(1 + 255 + 2 + 65_534 + 2 + U16_MAX < MAX_HANDSHAKE_LEN);
const _: () = assert!(MAX_HANDSHAKE_LEN < U24_MAX);

// ---------------------------------------------------------------------------
// The CA-list marks (DESIGN.md section 2)

/// 16 KB: Schannel's cap on the list (KB 933430).
pub const SCHANNEL_LIMIT: usize = 16_384;
/// 32 KB: Java's default `jdk.tls.maxHandshakeMessageSize` (and Schannel's
/// default `MessageLimitClient`).
pub const JAVA_LIMIT: usize = 32_768;
/// 64 KB: the TLS 1.2 vector bound, 2^16 - 1.
pub const TLS12_LIMIT: usize = U16_MAX;

// ---------------------------------------------------------------------------
// Content, handshake and alert code points

/// Record content type: change_cipher_spec.
pub const CONTENT_CCS: u8 = 20;
/// Record content type: alert.
pub const CONTENT_ALERT: u8 = 21;
/// Record content type: handshake.
pub const CONTENT_HANDSHAKE: u8 = 22;
/// The record content types TLS defines (change_cipher_spec .. heartbeat).
pub const CONTENT_TYPES: std::ops::RangeInclusive<u8> = 20..=24;
/// Handshake type: server_hello.
pub const HS_SERVER_HELLO: u8 = 2;
/// Handshake type: certificate (the client's, in its second flight; in
/// plaintext in TLS 1.2 only).
pub const HS_CERTIFICATE: u8 = 11;
/// Handshake type: certificate_request.
pub const HS_CERTIFICATE_REQUEST: u8 = 13;
/// Handshake type: server_hello_done.
pub const HS_SERVER_HELLO_DONE: u8 = 14;
/// Extension `supported_versions` (RFC 8446 4.2.1): in a ServerHello, the
/// version the server selected when it is TLS 1.3.
pub const EXT_SUPPORTED_VERSIONS: u16 = 43;
/// The TLS 1.3 version code point, 0x0304.
pub const TLS13_VERSION: u16 = 0x0304;
/// Largest Certificate message body the lab keeps, 2^18 = 262,144 bytes
/// ([`MAX_HANDSHAKE_LEN`]): a client chain is a few KB; TLS 1.2 lets one claim
/// 16 MB, which no reader of the lab buffers.
pub const MAX_CERTIFICATE_LEN: usize = MAX_HANDSHAKE_LEN;
/// Alert level: fatal.
pub const ALERT_FATAL: u8 = 2;
/// Alert description: unexpected_message (what Java sends for an oversized
/// handshake message).
pub const ALERT_UNEXPECTED_MESSAGE: u8 = 10;
/// Alert description: illegal_parameter (what OpenSSL and BoringSSL send for
/// a handshake message over `max_cert_list`).
pub const ALERT_ILLEGAL_PARAMETER: u8 = 47;
/// Alert description: decode_error (what rustls sends for a handshake
/// message over 65,535 bytes).
pub const ALERT_DECODE_ERROR: u8 = 50;
/// Alert description: internal_error (what Go sends for a handshake message
/// over its maximum).
pub const ALERT_INTERNAL_ERROR: u8 = 80;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_the_documented_values() {
        assert_eq!(MAX_PLAINTEXT, 16_384);
        assert_eq!(MAX_FRAGMENT, 16_389);
        assert_eq!(U16_MAX, usize::from(u16::MAX));
        assert_eq!(U24_MAX, (1 << 24) - 1);
        assert_eq!(MAX_HANDSHAKE_LEN, 262_144);
    }
}
