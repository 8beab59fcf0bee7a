//! The TLS 1.3 side of the record tap, pure: in TLS 1.3 the server's
//! CertificateRequest travels encrypted under the server handshake traffic
//! secret, so to judge it as a real client stack would, the tap decrypts the
//! server's handshake records with that secret (rustls hands it over through
//! its `KeyLog`).
//!
//! - the key schedule's last step (RFC 8446 7.1 HKDF-Expand-Label, 7.3 key
//!   and iv) for the three TLS 1.3 suites rustls offers;
//! - record protection (5.2 inner plaintext: content, content type, zero
//!   padding; 5.3 per-record nonce), both ways: decrypting the server's
//!   records, and encrypting the alert the modeled stack sends;
//! - the ServerHello (is it TLS 1.3, which suite, a HelloRetryRequest?) and
//!   the TLS 1.3 CertificateRequest (4.3.2; `certificate_authorities`, 4.2.4).
//!
//! Everything is total on any input: a typed [`Tls13Error`], never a panic.
//! The crypto is `ring`'s, the project's one provider.

use ring::hkdf::KeyType;
use ring::{aead, hkdf};

/// TLS 1.3's `supported_versions` value.
pub const TLS13: u16 = 0x0304;
/// Record content type application_data: what every TLS 1.3 protected record
/// says on the outside.
pub const CONTENT_APPLICATION_DATA: u8 = 23;
/// Extension `supported_versions`.
const EXT_SUPPORTED_VERSIONS: u16 = 43;
/// Extension `certificate_authorities` (RFC 8446 4.2.4).
const EXT_CERTIFICATE_AUTHORITIES: u16 = 47;
/// Extension `signature_algorithms`.
const EXT_SIGNATURE_ALGORITHMS: u16 = 13;
/// The random of a HelloRetryRequest (RFC 8446 4.1.3): SHA-256 of
/// "HelloRetryRequest".
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];
/// AEAD tag length of every TLS 1.3 suite.
pub const TAG_LEN: usize = 16;
/// Per-record nonce length (RFC 8446 5.3: iv_length).
const IV_LEN: usize = 12;
/// Largest TLS 1.3 ciphertext (RFC 8446 5.2: 2^14 + 256).
pub const MAX_CIPHERTEXT: usize = (1 << 14) + 256;

/// What went wrong; each variant says where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Tls13Error {
    /// A cipher suite this tap cannot decrypt.
    #[error("cipher suite 0x{0:04x} is no TLS 1.3 suite the tap knows")]
    UnknownSuite(u16),
    /// A secret of the wrong length for the suite's hash.
    #[error("a {got}-byte traffic secret for a suite whose hash gives {want}")]
    SecretLength {
        /// bytes given
        got: usize,
        /// bytes the suite's hash gives
        want: usize,
    },
    /// ring refused a key or an expansion (cannot happen with valid lengths).
    #[error("key derivation failed")]
    Derive,
    /// The record does not authenticate under the key: the wrong secret, or
    /// bytes changed on the way.
    #[error("record {seq} does not decrypt under the server handshake key")]
    Decrypt {
        /// its sequence number
        seq: u64,
    },
    /// A record shorter than its tag, or longer than TLS 1.3 allows.
    #[error("record {seq}: a protected record of {len} bytes")]
    RecordLength {
        /// its sequence number
        seq: u64,
        /// its payload length
        len: usize,
    },
    /// The inner plaintext is all zeros: no content type (RFC 8446 5.4).
    #[error("record {seq}: inner plaintext without a content type")]
    NoContentType {
        /// its sequence number
        seq: u64,
    },
    /// The message is cut short or has bytes left over.
    #[error("{what}: malformed ({why})")]
    Malformed {
        /// the message or field
        what: &'static str,
        /// what is wrong
        why: String,
    },
}

/// The three TLS 1.3 cipher suites (RFC 8446 B.4) rustls 0.23 offers with ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// TLS_AES_128_GCM_SHA256 (0x1301).
    Aes128GcmSha256,
    /// TLS_AES_256_GCM_SHA384 (0x1302).
    Aes256GcmSha384,
    /// TLS_CHACHA20_POLY1305_SHA256 (0x1303).
    Chacha20Poly1305Sha256,
}

impl Suite {
    /// The suite of a ServerHello's `cipher_suite`.
    pub fn from_code(code: u16) -> Result<Suite, Tls13Error> {
        match code {
            0x1301 => Ok(Suite::Aes128GcmSha256),
            0x1302 => Ok(Suite::Aes256GcmSha384),
            0x1303 => Ok(Suite::Chacha20Poly1305Sha256),
            other => Err(Tls13Error::UnknownSuite(other)),
        }
    }

    fn hkdf(self) -> hkdf::Algorithm {
        match self {
            Suite::Aes256GcmSha384 => hkdf::HKDF_SHA384,
            Suite::Aes128GcmSha256 | Suite::Chacha20Poly1305Sha256 => hkdf::HKDF_SHA256,
        }
    }

    fn aead(self) -> &'static aead::Algorithm {
        match self {
            Suite::Aes128GcmSha256 => &aead::AES_128_GCM,
            Suite::Aes256GcmSha384 => &aead::AES_256_GCM,
            Suite::Chacha20Poly1305Sha256 => &aead::CHACHA20_POLY1305,
        }
    }

    /// Bytes of a traffic secret: the hash's output length.
    pub fn secret_len(self) -> usize {
        self.hkdf().len()
    }
}

/// An output length for ring's HKDF.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label(secret, label, context, length) (RFC 8446 7.1): the
/// label is prefixed with "tls13 ".
pub fn expand_label(
    suite: Suite,
    secret: &[u8],
    label: &[u8],
    context: &[u8],
    len: usize,
) -> Result<Vec<u8>, Tls13Error> {
    if secret.len() != suite.secret_len() {
        return Err(Tls13Error::SecretLength {
            got: secret.len(),
            want: suite.secret_len(),
        });
    }
    let full_label_len = u8::try_from(6 + label.len()).map_err(|_| Tls13Error::Derive)?;
    let context_len = u8::try_from(context.len()).map_err(|_| Tls13Error::Derive)?;
    let out_len = u16::try_from(len)
        .map_err(|_| Tls13Error::Derive)?
        .to_be_bytes();
    let info: [&[u8]; 6] = [
        &out_len,
        &[full_label_len],
        b"tls13 ",
        label,
        &[context_len],
        context,
    ];
    let prk = hkdf::Prk::new_less_safe(suite.hkdf(), secret);
    let okm = prk
        .expand(&info, Len(len))
        .map_err(|_| Tls13Error::Derive)?;
    let mut out = vec![0; len];
    okm.fill(&mut out).map_err(|_| Tls13Error::Derive)?;
    Ok(out)
}

/// The record protection of one direction: key, iv and the next sequence
/// number (RFC 8446 5.3, 7.3).
pub struct RecordKeys {
    key: aead::LessSafeKey,
    iv: [u8; IV_LEN],
    seq: u64,
}

impl std::fmt::Debug for RecordKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordKeys")
            .field("seq", &self.seq)
            .finish()
    }
}

impl RecordKeys {
    /// The keys of a traffic secret: `key` and `iv` by HKDF-Expand-Label.
    pub fn new(suite: Suite, secret: &[u8]) -> Result<RecordKeys, Tls13Error> {
        let alg = suite.aead();
        let key = expand_label(suite, secret, b"key", b"", alg.key_len())?;
        let iv_bytes = expand_label(suite, secret, b"iv", b"", IV_LEN)?;
        let mut iv = [0; IV_LEN];
        iv.copy_from_slice(&iv_bytes);
        let unbound = aead::UnboundKey::new(alg, &key).map_err(|_| Tls13Error::Derive)?;
        Ok(RecordKeys {
            key: aead::LessSafeKey::new(unbound),
            iv,
            seq: 0,
        })
    }

    /// The sequence number of the next record.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The per-record nonce: the iv XOR the sequence number, left-padded.
    fn nonce(&self) -> aead::Nonce {
        let mut n = self.iv;
        for (b, s) in n.iter_mut().rev().zip(self.seq.to_be_bytes().iter().rev()) {
            *b ^= s;
        }
        aead::Nonce::assume_unique_for_key(n)
    }

    /// Decrypts one protected record (`header`: its 5 bytes, the AAD;
    /// `payload`: the ciphertext with its tag). Returns the inner content type
    /// and the content, padding removed. The sequence number advances only
    /// when the record authenticates.
    pub fn open(&mut self, header: &[u8], payload: &[u8]) -> Result<(u8, Vec<u8>), Tls13Error> {
        let seq = self.seq;
        if payload.len() < TAG_LEN + 1 || payload.len() > MAX_CIPHERTEXT {
            return Err(Tls13Error::RecordLength {
                seq,
                len: payload.len(),
            });
        }
        let mut buf = payload.to_vec();
        let plain_len = self
            .key
            .open_in_place(self.nonce(), aead::Aad::from(header), &mut buf)
            .map_err(|_| Tls13Error::Decrypt { seq })?
            .len();
        self.seq += 1;
        buf.truncate(plain_len);
        let end = buf
            .iter()
            .rposition(|&b| b != 0)
            .ok_or(Tls13Error::NoContentType { seq })?;
        let content_type = buf.get(end).copied().unwrap_or_default();
        buf.truncate(end);
        Ok((content_type, buf))
    }

    /// Protects `content` of `content_type` as one record, header included
    /// (no padding).
    pub fn seal(&mut self, content_type: u8, content: &[u8]) -> Result<Vec<u8>, Tls13Error> {
        let mut inner = Vec::with_capacity(content.len() + 1 + TAG_LEN);
        inner.extend_from_slice(content);
        inner.push(content_type);
        let len = u16::try_from(inner.len() + TAG_LEN).map_err(|_| Tls13Error::Derive)?;
        let mut header = vec![CONTENT_APPLICATION_DATA, 3, 3];
        header.extend_from_slice(&len.to_be_bytes());
        let aad: [u8; 5] = [header[0], header[1], header[2], header[3], header[4]];
        self.key
            .seal_in_place_append_tag(self.nonce(), aead::Aad::from(aad), &mut inner)
            .map_err(|_| Tls13Error::Derive)?;
        self.seq += 1;
        header.extend_from_slice(&inner);
        Ok(header)
    }
}

/// What the tap needs of a ServerHello body (handshake header excluded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerHello {
    /// Whether it selects TLS 1.3 (`supported_versions` = 0x0304).
    pub tls13: bool,
    /// Whether it is a HelloRetryRequest.
    pub retry: bool,
    /// Its cipher suite.
    pub suite: u16,
}

/// A cursor whose every read is checked.
struct Cursor<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8], what: &'static str) -> Cursor<'a> {
        Cursor { bytes, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Tls13Error> {
        let (head, rest) = self
            .bytes
            .split_at_checked(n)
            .ok_or_else(|| Tls13Error::Malformed {
                what: self.what,
                why: format!("{n} bytes needed, {} left", self.bytes.len()),
            })?;
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Tls13Error> {
        Ok(self.take(1)?.first().copied().unwrap_or_default())
    }

    fn u16(&mut self) -> Result<u16, Tls13Error> {
        match self.take(2)? {
            [a, b] => Ok(u16::from_be_bytes([*a, *b])),
            _ => Ok(0),
        }
    }

    fn vec_u8(&mut self) -> Result<&'a [u8], Tls13Error> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    fn vec_u16(&mut self) -> Result<&'a [u8], Tls13Error> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    fn finish(self) -> Result<(), Tls13Error> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(Tls13Error::Malformed {
                what: self.what,
                why: format!("{} bytes left over", self.bytes.len()),
            })
        }
    }
}

/// Extensions as (type, data), in order.
fn extensions<'a>(block: &'a [u8], what: &'static str) -> Result<Vec<(u16, &'a [u8])>, Tls13Error> {
    let mut c = Cursor::new(block, what);
    let mut out = Vec::new();
    while !c.bytes.is_empty() {
        let t = c.u16()?;
        out.push((t, c.vec_u16()?));
    }
    Ok(out)
}

impl ServerHello {
    /// Parses a ServerHello body (RFC 8446 4.1.3).
    pub fn parse(body: &[u8]) -> Result<ServerHello, Tls13Error> {
        let mut c = Cursor::new(body, "ServerHello");
        c.take(2)?;
        let random = c.take(32)?;
        c.vec_u8()?;
        let suite = c.u16()?;
        c.u8()?;
        // A TLS 1.2 ServerHello may end here (no extensions).
        let exts = if c.bytes.is_empty() {
            Vec::new()
        } else {
            let block = c.vec_u16()?;
            c.finish()?;
            extensions(block, "ServerHello extensions")?
        };
        let tls13 = exts
            .iter()
            .any(|(t, d)| *t == EXT_SUPPORTED_VERSIONS && *d == TLS13.to_be_bytes());
        Ok(ServerHello {
            tls13,
            retry: random == HRR_RANDOM,
            suite,
        })
    }
}

/// A TLS 1.3 CertificateRequest body (RFC 8446 4.3.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificateRequest13 {
    /// certificate_request_context (empty in a handshake).
    pub context: Vec<u8>,
    /// signature_algorithms, as u16 code points.
    pub sig_schemes: Vec<u16>,
    /// certificate_authorities: the DER Names, in order (empty when the
    /// extension is absent).
    pub ca_names: Vec<Vec<u8>>,
    /// Every extension as (type, bytes of its data), in order: so a reader
    /// (`umlab probe`) can account for each byte of the body, including
    /// extensions the tap does not decode.
    pub extensions: Vec<(u16, usize)>,
}

impl CertificateRequest13 {
    /// Parses a body (handshake header excluded).
    pub fn parse(body: &[u8]) -> Result<CertificateRequest13, Tls13Error> {
        let mut c = Cursor::new(body, "CertificateRequest");
        let context = c.vec_u8()?.to_vec();
        let block = c.vec_u16()?;
        c.finish()?;
        let mut req = CertificateRequest13 {
            context,
            ..CertificateRequest13::default()
        };
        for (t, data) in extensions(block, "CertificateRequest extensions")? {
            req.extensions.push((t, data.len()));
            match t {
                EXT_CERTIFICATE_AUTHORITIES => {
                    let mut e = Cursor::new(data, "certificate_authorities");
                    let mut list = Cursor::new(e.vec_u16()?, "certificate_authorities");
                    e.finish()?;
                    while !list.bytes.is_empty() {
                        req.ca_names.push(list.vec_u16()?.to_vec());
                    }
                }
                EXT_SIGNATURE_ALGORITHMS => {
                    let mut e = Cursor::new(data, "signature_algorithms");
                    let mut list = Cursor::new(e.vec_u16()?, "signature_algorithms");
                    e.finish()?;
                    while !list.bytes.is_empty() {
                        req.sig_schemes.push(list.u16()?);
                    }
                }
                _ => {}
            }
        }
        Ok(req)
    }
}

/// The ClientHello's random, from the first bytes the client wrote (record
/// header, handshake header, legacy_version, random): `None` until 43 bytes
/// are in or when they are no ClientHello record.
pub fn client_random(first: &[u8]) -> Option<[u8; 32]> {
    let (&[22, 3, _, _, _, 1, _, _, _, _, _], rest) = first.split_first_chunk::<11>()? else {
        return None;
    };
    rest.first_chunk::<32>().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // RFC 8448 section 3, "Simple 1-RTT Handshake".
    const SERVER_HS_SECRET: &str =
        "b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38";
    const CLIENT_HS_SECRET: &str =
        "b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21";
    const SERVER_HELLO_RECORD: &str = "160303005a020000560303a6af06a4121860dc5e6e60249cd34c95930c8a\
c5cb1434dac155772ed3e2692800130100002e00330024001d0020c9828876112095fe66762bdbf7c672e156d6cc25\
3b833df1dd69b1b04e751f0f002b00020304";
    const CLIENT_HELLO_RECORD_START: &str =
        "16030100c4010000c00303cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d9912ec18a2ef6283024dece7";
    /// The server's encrypted flight: EncryptedExtensions, Certificate,
    /// CertificateVerify, Finished in one record.
    const SERVER_FLIGHT_RECORD: &str = "17030302a2d1ff334a56f5bff6594a07cc87b580233f500f45e489e7f33af\
35edf7869fcf40aa40aa2b8ea73f848a7ca07612ef9f945cb960b4068905123ea78b111b429ba9191cd05d2a389280\
f526134aadc7fc78c4b729df828b5ecf7b13bd9aefb0e57f271585b8ea9bb355c7c79020716cfb9b1183ef3ab20e37d\
57a6b9d7477609aee6e122a4cf51427325250c7d0e509289444c9b3a648f1d71035d2ed65b0e3cdd0cbae8bf2d0b227\
812cbb360987255cc744110c453baa4fcd610928d809810e4b7ed1a8fd991f06aa6248204797e36a6a73b70a2559c09\
ead686945ba246ab66e5edd8044b4c6de3fcf2a89441ac66272fd8fb330ef8190579b3684596c960bd596eea520a56a\
8d650f563aad27409960dca63d3e688611ea5e22f4415cf9538d51a200c27034272968a264ed6540c84838d89f72c24\
461aad6d26f59ecaba9acbbb317b66d902f4f292a36ac1b639c637ce343117b659622245317b49eeda0c6258f100d7d\
961ffb138647e92ea330faeea6dfa31c7a84dc3bd7e1b7a6c7178af36879018e3f252107f243d243dc7339d5684c8b0\
378bf30244da8c87c843f5e56eb4c5e8280a2b48052cf93b16499a66db7cca71e4599426f7d461e66f99882bd89fc50\
800becca62d6c74116dbd2972fda1fa80f85df881edbe5a37668936b335583b599186dc5c6918a396fa48a181d6b6fa\
4f9d62d513afbb992f2b992f67f8afe67f76913fa388cb5630c8ca01e0c65d11c66a1e2ac4c85977b7c7a6999bbf10d\
c35ae69f5515614636c0b9b68c19ed2e31c0b3b66763038ebba42f3b38edc0399f3a9f23faa63978c317fc9fa66a73f\
60f0504de93b5b845e275592c12335ee340bbc4fddd502784016e4b3be7ef04dda49f4b440a30cb5d2af939828fd4ae\
3794e44f94df5a631ede42c1719bfdabf0253fe5175be898e750edc53370d2b";
    /// The start of that flight's plaintext: EncryptedExtensions (40 bytes),
    /// then the Certificate's header.
    const SERVER_FLIGHT_START: &str =
        "080000240022000a00140012001d00170018001901000101010201030104001c00024001000000000b0001b9";
    /// Its end: the server Finished.
    const SERVER_FINISHED: &str =
        "140000209b9b141d906337fbd2cbdce71df4deda4ab42c309572cb7fffee5454b78f0718";
    const CLIENT_FINISHED: &str =
        "14000020a8ec436d677634ae525ac1fcebe11a039ec17694fac6e98527b642f2edd5ce61";
    const CLIENT_FINISHED_RECORD: &str = "170303003575ec4dc238cce60b298044a71e219c56cc77b0517fe9b93c7a4\
bfc44d87f38f80338ac98fc46deb384bd1caeacab6867d726c40546";

    #[test]
    fn rfc8448_key_and_iv() {
        let secret = hex(SERVER_HS_SECRET);
        let s = Suite::Aes128GcmSha256;
        assert_eq!(
            expand_label(s, &secret, b"key", b"", 16).unwrap(),
            hex("3fce516009c21727d0f2e4e86ee403bc")
        );
        assert_eq!(
            expand_label(s, &secret, b"iv", b"", 12).unwrap(),
            hex("5d313eb2671276ee13000b30")
        );
        assert_eq!(
            expand_label(s, &secret[..31], b"iv", b"", 12),
            Err(Tls13Error::SecretLength { got: 31, want: 32 })
        );
    }

    #[test]
    fn rfc8448_server_flight_decrypts() {
        let mut keys = RecordKeys::new(Suite::Aes128GcmSha256, &hex(SERVER_HS_SECRET)).unwrap();
        let record = hex(SERVER_FLIGHT_RECORD);
        let (header, payload) = record.split_at(5);
        let (content_type, plain) = keys.open(header, payload).unwrap();
        assert_eq!(content_type, 22, "handshake");
        assert!(plain.starts_with(&hex(SERVER_FLIGHT_START)));
        assert!(plain.ends_with(&hex(SERVER_FINISHED)));
        assert_eq!(plain.len(), payload.len() - TAG_LEN - 1);
        assert_eq!(keys.seq(), 1);
        // The same record again is record 1 now: it does not authenticate,
        // nor does a changed byte.
        assert_eq!(
            keys.open(header, payload),
            Err(Tls13Error::Decrypt { seq: 1 })
        );
        let mut fresh = RecordKeys::new(Suite::Aes128GcmSha256, &hex(SERVER_HS_SECRET)).unwrap();
        let mut bent = payload.to_vec();
        bent[10] ^= 1;
        assert_eq!(
            fresh.open(header, &bent),
            Err(Tls13Error::Decrypt { seq: 0 })
        );
        // The wrong secret (the client's) does not open it either.
        let mut wrong = RecordKeys::new(Suite::Aes128GcmSha256, &hex(CLIENT_HS_SECRET)).unwrap();
        assert!(wrong.open(header, payload).is_err());
    }

    #[test]
    fn rfc8448_client_finished_seals() {
        // The client's first protected record: what the tap's alert uses.
        let mut keys = RecordKeys::new(Suite::Aes128GcmSha256, &hex(CLIENT_HS_SECRET)).unwrap();
        let record = keys.seal(22, &hex(CLIENT_FINISHED)).unwrap();
        assert_eq!(record, hex(CLIENT_FINISHED_RECORD));
    }

    #[test]
    fn round_trip_every_suite_with_padding() {
        for (suite, len) in [
            (Suite::Aes128GcmSha256, 32),
            (Suite::Aes256GcmSha384, 48),
            (Suite::Chacha20Poly1305Sha256, 32),
        ] {
            let secret = vec![7; len];
            let mut tx = RecordKeys::new(suite, &secret).unwrap();
            let mut rx = RecordKeys::new(suite, &secret).unwrap();
            for seq in 0..3u8 {
                let record = tx.seal(21, &[2, seq]).unwrap();
                let (h, p) = record.split_at(5);
                assert_eq!(rx.open(h, p).unwrap(), (21, vec![2, seq]), "{suite:?}");
            }
            // Zero padding after the content type is removed (RFC 8446 5.4).
            let mut tx = RecordKeys::new(suite, &secret).unwrap();
            let mut rx = RecordKeys::new(suite, &secret).unwrap();
            let record = tx.seal(0, &[9, 22, 0, 0, 0]).unwrap();
            let (h, p) = record.split_at(5);
            assert_eq!(rx.open(h, p).unwrap(), (22, vec![9]));
            // All zeros: no content type.
            let mut tx = RecordKeys::new(suite, &secret).unwrap();
            let mut rx = RecordKeys::new(suite, &secret).unwrap();
            let record = tx.seal(0, &[0, 0]).unwrap();
            let (h, p) = record.split_at(5);
            assert_eq!(rx.open(h, p), Err(Tls13Error::NoContentType { seq: 0 }));
        }
        assert_eq!(
            Suite::from_code(0x1304),
            Err(Tls13Error::UnknownSuite(0x1304))
        );
        let mut k = RecordKeys::new(Suite::Aes128GcmSha256, &[1; 32]).unwrap();
        assert!(matches!(
            k.open(&[23, 3, 3, 0, 3], &[1, 2, 3]),
            Err(Tls13Error::RecordLength { .. })
        ));
    }

    #[test]
    fn rfc8448_server_hello_and_client_random() {
        let record = hex(SERVER_HELLO_RECORD);
        let sh = ServerHello::parse(&record[9..]).unwrap();
        assert_eq!(
            sh,
            ServerHello {
                tls13: true,
                retry: false,
                suite: 0x1301
            }
        );
        assert!(ServerHello::parse(&record[9..40]).is_err());
        let ch = hex(CLIENT_HELLO_RECORD_START);
        assert_eq!(
            client_random(&ch).map(|r| r.to_vec()),
            Some(hex(
                "cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d9912ec18a2ef6283024dece7"
            ))
        );
        assert_eq!(client_random(&ch[..42]), None, "not all in yet");
        assert_eq!(
            client_random(b"EHLO x\r\n0123456789012345678901234567890123"),
            None
        );
        // A TLS 1.2 ServerHello: no supported_versions.
        let mut sh12 = vec![3, 3];
        sh12.extend_from_slice(&[1; 32]);
        sh12.extend_from_slice(&[0, 0xc0, 0x2f, 0]);
        assert!(!ServerHello::parse(&sh12).unwrap().tls13);
    }

    #[test]
    fn certificate_request_13() {
        // context "", signature_algorithms [0x0403, 0x0804],
        // certificate_authorities [30 00, 30 01 07].
        let mut exts = Vec::new();
        exts.extend_from_slice(&[0, 13, 0, 6, 0, 4, 4, 3, 8, 4]);
        exts.extend_from_slice(&[0, 47, 0, 11, 0, 9, 0, 2, 0x30, 0, 0, 3, 0x30, 1, 7]);
        let mut body = vec![0];
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let req = CertificateRequest13::parse(&body).unwrap();
        assert_eq!(req.sig_schemes, [0x0403, 0x0804]);
        assert_eq!(req.ca_names, [vec![0x30, 0], vec![0x30, 1, 7]]);
        assert_eq!(req.extensions, [(13, 6), (47, 11)]);
        assert!(req.context.is_empty());
        body.push(0);
        assert!(CertificateRequest13::parse(&body).is_err(), "trailing byte");
        assert!(
            CertificateRequest13::parse(&body[..body.len() - 3]).is_err(),
            "cut short"
        );
    }
}
