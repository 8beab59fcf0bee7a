//! lab-server: the Hub Transport stand-in of umlab.
//!
//! Its one job no existing server does: send, in the TLS CertificateRequest,
//! exactly the CA list a given Windows server would send for a given trust
//! store. The pure parts are the CA-list policy ([`policy`], planned through
//! [`policy::plan_store`]), the record shaper ([`shaper`]), the SMTP state
//! machine ([`smtp`]) and the settings ([`settings`]); the I/O edge is the
//! server ([`server`]) with its shaped TLS stream ([`shaped`]), Maildir capture
//! ([`maildir`]) and events ([`events`]).

pub mod events;
pub mod faults;
pub mod inspector;
pub mod maildir;
pub mod persona;
pub mod policy;
pub mod server;
pub mod settings;
pub mod shaped;
pub mod shaper;
pub mod smtp;
pub mod tls;
