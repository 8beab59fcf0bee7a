//! um-sim's own SMTP client on tokio + tokio-rustls (lettre's transport cannot
//! take a custom rustls client configuration): EHLO, STARTTLS, EHLO, MAIL,
//! RCPT, DATA, QUIT, with TLS client authentication decided by the profile.
//!
//! Parts: reply parsing ([`reply`], pure), the TLS identity and configuration
//! (`tls`: what the client presents and when), the attempt record (`attempt`:
//! what one submission did, in the terms UM's events use) and the dialogue
//! (`dialogue`: [`submit`]). Everything callers use is re-exported here, so
//! `um_sim::client::{ClientSettings, Identity, Attempt, FailureClass, submit}`
//! is the one path to name.

mod attempt;
mod dialogue;
pub mod reply;
mod tls;

pub use attempt::{Attempt, Exchange, FailureClass};
pub use dialogue::{ClientSettings, dot_stuff, submit};
pub use reply::{Reply, parse_reply_line};
pub use tls::{CertDecision, Identity, SetupError};
