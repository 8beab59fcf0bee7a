//! um-sim: the Exchange UM stand-in (voicemail queue, SMTP submitter, client
//! profiles). Not built yet: this crate is a placeholder in the workspace
//! until its issue lands, and exposes nothing.
