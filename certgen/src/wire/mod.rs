//! TLS wire formats shared by both ends of the lab: the `certificate_authorities`
//! vector (RFC 5246 7.4.4), record and handshake headers, the TLS 1.2
//! CertificateRequest, the reading of a plaintext handshake flight, the
//! version a ServerHello selects, and the client's TLS 1.2 Certificate read
//! off its plaintext flight.
//! lab-server frames what it sends with these, um-sim reads what it receives
//! with them; neither depends on the other.
//!
//! - [`consts`]: every wire size and code point the lab computes with (record
//!   and handshake header lengths, 2^14, the u16 and u24 bounds, the 16 KB /
//!   32 KB / 64 KB marks).
//! - the codec: [`RecordHeader`], [`HandshakeHeader`], [`CertificateRequest12`],
//!   [`FlightReader`], [`server_hello_version`], [`ClientFlightReader`] (the
//!   client's Certificate, read even when the handshake then fails).
//!   Decoders are total: any input gives a value or a [`DecodeError`] naming
//!   the field, never a panic; a u24 handshake length is capped at
//!   [`MAX_HANDSHAKE_LEN`], so no claim makes a reader buffer 16 MB.
//! - the encoder of the CA list: [`write_ca_list`], [`ca_list_len`].
//!
//! Every name is re-exported here: `certgen::wire::NAME` is the path to use.

mod ca_list;
mod client;
pub mod consts;
mod error;
mod flight;
mod headers;
mod hello;
mod reader;
mod request;

pub use ca_list::{WireError, ca_list_len, write_ca_list};
pub use client::{ClientCertificate, ClientFlightReader, parse_certificate_list};
pub use consts::*;
pub use error::{DecodeError, Field};
pub use flight::{FlightReader, FlightSink};
pub use headers::{HandshakeHeader, RecordHeader};
pub use hello::{server_hello_is_tls13, server_hello_version};
pub use request::CertificateRequest12;
