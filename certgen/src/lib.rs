//! certgen: the trust stores and PKI of the umlab lab.
//!
//! Every umlab scenario starts from a trust store, an ordered list of root CAs
//! whose subject DNs, encoded in the TLS CertificateRequest, decide whether the
//! list fits Schannel's 16 KB, Java's 32 KB or TLS 1.2's 65,535 bytes. This
//! crate models and encodes X.509 Names ([`name`]), draws seeded synthetic
//! subjects ([`synth`]), mass-produces roots ([`roots`]), issues the lab PKI
//! ([`pki`]), loads and saves stores ([`store`], PEM bundles read strictly by [`bundle`],
//! Windows serialized stores by [`sst`], lists of subject names by [`dnlist`]) and reports their sizes
//! ([`inspect`], [`wire`]).

pub mod bundle;
pub mod dnlist;
pub mod error;
pub mod fsutil;
pub mod inspect;
pub mod keys;
pub mod name;
pub mod pki;
pub mod progress;
pub mod roots;
pub mod sst;
pub mod store;
pub mod synth;
pub mod wire;

pub use error::Error;
pub use keys::{KeyAlg, LabKey};
pub use name::{AttrType, Attribute, Name, StringKind};
pub use store::{Position, Root, Store};
pub use synth::Profile;
