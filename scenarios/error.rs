//! The one error type of the umlab library: why a scenario run, a
//! measurement or a report could not be completed. A store that fails to
//! deliver is an outcome, not an error; these are the lab itself failing.

use crate::model::ScenarioError;

/// Why the lab could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A scenario file that cannot run.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// A scenario setting the run cannot honour (the message says which).
    #[error("{0}")]
    Invalid(String),
    /// certgen: generating roots or the lab PKI, or writing a report file.
    #[error(transparent)]
    Certgen(#[from] certgen::Error),
    /// lab-server would not start (a policy refusal is an outcome instead).
    #[error("lab-server: {0}")]
    Server(#[from] lab_server::server::StartError),
    /// um-sim's queue folder.
    #[error(transparent)]
    Queue(#[from] um_sim::queue::QueueError),
    /// um-sim could not submit a queued voicemail at all (its files cannot
    /// make a message); um-sim's own error, as text.
    #[error("voicemail: {0}")]
    Voicemail(String),
    /// um-sim's client identity.
    #[error("um-sim: {0}")]
    Identity(#[from] um_sim::client::SetupError),
    /// A TLS key, trust anchor or server name of the lab.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// A temporary folder could not be created or removed.
    #[error("temporary folder: {0}")]
    TempDir(#[from] std::io::Error),
    /// Work moved to the blocking pool panicked or was cancelled.
    #[error("background task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// `report.json` could not be encoded.
    #[error("report.json: {0}")]
    Json(#[from] serde_json::Error),
    /// A chart could not be drawn.
    #[error("chart of {name}: {reason}")]
    Chart {
        /// The scenario.
        name: String,
        /// What plotters said.
        reason: String,
    },
}

impl From<rustls::Error> for Error {
    fn from(e: rustls::Error) -> Error {
        Error::Tls(e.to_string())
    }
}

/// The library's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
