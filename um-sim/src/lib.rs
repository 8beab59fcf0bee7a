//! um-sim: the Exchange UM stand-in of umlab.
//!
//! It holds voicemail in a queue folder as header + audio files and submits
//! each one over SMTP + STARTTLS with a client certificate, reacting to the
//! server's CertificateRequest the way a given TLS client stack does. It learns
//! what the server advertised only from the bytes it received.
//!
//! Parts: the header format ([`header`]), the audio check ([`audio`]), the
//! queue folder ([`queue`]), the voicemail message ([`message`]), client
//! profiles ([`profile`]) and the presets of real stacks ([`presets`]), the record tap ([`tap`]) and its TLS 1.3 decryption ([`tls13`]), the SMTP client
//! ([`client`]), the submitter ([`submit`]) and UM events ([`events`]).

pub mod audio;
pub mod client;
pub mod events;
pub mod header;
pub mod message;
pub mod presets;
pub mod profile;
pub mod queue;
pub mod submit;
pub mod tap;
pub mod tls13;
