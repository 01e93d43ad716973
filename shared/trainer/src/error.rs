use std::path::PathBuf;

/// Why training or export failed.
#[derive(Debug, thiserror::Error)]
// I/O errors are in the message only: as a `source` too, a chain printer would repeat them.
pub enum TrainError {
    #[error("tensor: {0}")]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Sim(#[from] sim::SimError),
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    #[error(transparent)]
    Trace(#[from] traces::TraceError),
    #[error("cannot write {path}: {error}")]
    Write { path: PathBuf, error: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}
