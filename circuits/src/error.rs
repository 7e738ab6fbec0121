//! The error type of the circuits crate.

use std::path::PathBuf;

/// Everything that can go wrong while building, proving or verifying circuits.
#[derive(Debug, thiserror::Error)]
pub enum CircuitError {
    /// The model engine rejected the input.
    #[error(transparent)]
    Model(#[from] zkaudit_model::ModelError),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file has the wrong format or is corrupt.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The witness does not satisfy the circuit (the statement is false).
    #[error("the witness does not satisfy the circuit: {0}")]
    Unsatisfied(String),
    /// A proof failed verification.
    #[error("proof verification failed: {0}")]
    Verification(String),
    /// The circuit does not fit the chosen parameters.
    #[error("circuit shape: {0}")]
    Shape(String),
    /// The SRS is missing or unusable.
    #[error("SRS: {0}")]
    Srs(String),
}

/// Result alias of the circuits crate.
pub type Result<T, E = CircuitError> = std::result::Result<T, E>;

impl CircuitError {
    /// Whether the failure lies in this machine's own files (its SRS, its
    /// key cache) rather than in the task: another machine may succeed.
    pub fn is_local_setup(&self) -> bool {
        matches!(
            self,
            CircuitError::Srs(_) | CircuitError::Io { .. } | CircuitError::Format { .. }
        )
    }

    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CircuitError::Io {
            path: path.into(),
            source,
        }
    }
}
