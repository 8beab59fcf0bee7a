//! The one error type of the certgen library.

use std::path::PathBuf;

/// What can go wrong while generating, loading or saving certificates and stores.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {cause}", path.display())]
    Io {
        /// the file or folder
        path: PathBuf,
        /// the operating system's reason
        cause: std::io::Error,
    },
    /// A file was read but its content is not what it should be.
    #[error("{}: {reason}", path.display())]
    Malformed {
        /// the file
        path: PathBuf,
        /// what is wrong, and where in the file
        reason: String,
    },
    /// A PEM file whose structure or base64 is broken (a bundle cut inside a
    /// block, a corrupt line): the reason names the line.
    #[error("{}: {problem}", path.display())]
    Pem {
        /// the file
        path: PathBuf,
        /// what is wrong, and on which line (not a `source`: the message
        /// already says it, and a one-line report must not repeat it)
        problem: crate::bundle::PemError,
    },
    /// A Windows serialized store (.sst) whose structure is broken: the
    /// problem names the byte offset.
    #[error("{}: serialized store: {problem}", path.display())]
    Sst {
        /// the file
        path: PathBuf,
        /// what is wrong, and at which offset (not a `source`, as for `Pem`)
        problem: crate::sst::SstError,
    },
    /// A DN list (subject names in hex) that cannot be read: the problem
    /// names the line.
    #[error("{}: DN list: {problem}", path.display())]
    DnList {
        /// the file
        path: PathBuf,
        /// what is wrong, and on which line (not a `source`, as for `Pem`)
        problem: crate::dnlist::DnListError,
    },
    /// An input file (or a folder read as one store) is larger than the lab
    /// reads (see [`crate::fsutil`]).
    #[error("{}: larger than {limit} bytes, the most read from such an input", path.display())]
    TooLarge {
        /// the file or folder
        path: PathBuf,
        /// the cap, in bytes
        limit: u64,
    },
    /// A Name could not be built, encoded or parsed.
    #[error(transparent)]
    Name(#[from] crate::name::NameError),
    /// rcgen refused to issue a certificate.
    #[error("certificate issuance: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A key could not be generated or encoded.
    #[error("{0}")]
    Crypto(String),
    /// An argument or setting is out of range.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            cause,
        }
    }

    /// Malformed content in `path`.
    pub fn malformed(path: impl Into<PathBuf>, reason: impl Into<String>) -> Error {
        Error::Malformed {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// An error message made safe for a one-line report: control characters
/// (line breaks, escape sequences, bytes quoted from a bad file) are escaped,
/// so the message stays on one line and nothing raw reaches the terminal.
pub fn one_line(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_line_escapes_controls() {
        assert_eq!(super::one_line("a\nb\u{1c}c é"), "a\\nb\\u{1c}c é");
    }
}
