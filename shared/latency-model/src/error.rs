use std::path::PathBuf;

/// Why a latency or compression model file could not be used.
#[derive(Debug, thiserror::Error)]
// I/O errors are in the message only: as a `source` too, a chain printer would repeat them.
pub enum ModelError {
    #[error("cannot read {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Parse { path: PathBuf, line: usize, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("compression: {0}")]
    Codec(String),
}

impl ModelError {
    /// Turn a toml error into one naming the file and line.
    pub(crate) fn from_toml(path: &std::path::Path, text: &str, err: toml::de::Error) -> Self {
        let line = err.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1)).unwrap_or(0);
        ModelError::Parse { path: path.to_path_buf(), line, message: err.message().to_string() }
    }
}
