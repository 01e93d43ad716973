use std::path::PathBuf;

/// Why a trace could not be built or read.
#[derive(Debug, thiserror::Error)]
// I/O errors are in the message only: as a `source` too, a chain printer would repeat them.
pub enum TraceError {
    #[error("cannot read trace file {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Malformed { path: PathBuf, line: usize, message: String },
    #[error("{path}: the trace has no data rows")]
    Empty { path: PathBuf },
    #[error("unknown trace `{0}`: not a built-in (see `sparkpilot traces`) and no such file")]
    Unknown(String),
}
