//! lab-server: the Hub Transport stand-in (SMTP + STARTTLS, Schannel-style
//! CA-list policy). Not built yet: this crate is a placeholder in the workspace
//! until its issue lands, and exposes nothing.
