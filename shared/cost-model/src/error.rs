use std::path::PathBuf;

/// Why a price file could not be used.
#[derive(Debug, thiserror::Error)]
// I/O errors are in the message only: as a `source` too, a chain printer would repeat them.
pub enum PriceError {
    #[error("cannot read price file {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Parse { path: PathBuf, line: usize, message: String },
    #[error("{path}: no prices for region `{region}` (regions in the file: {available})")]
    UnknownRegion { path: PathBuf, region: String, available: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("no price for ElastiCache node type `{0}`")]
    UnknownNode(String),
}
