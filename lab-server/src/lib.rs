//! lab-server: the Hub Transport stand-in of umlab.
//!
//! Its one job no existing server does: send, in the TLS CertificateRequest,
//! exactly the CA list a given Windows server would send for a given trust
//! store. Built so far: the CA-list policy ([`policy`]) and the record shaper
//! ([`shaper`]). The SMTP + STARTTLS server, capture and events are not built yet.

pub mod events;
pub mod maildir;
pub mod policy;
pub mod server;
pub mod shaper;
pub mod smtp;
pub mod tls;
