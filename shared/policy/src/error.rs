use std::path::PathBuf;

/// Why a policy model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    // The I/O error is in the message and not a `source` too, or a chain printer says it twice.
    #[error("cannot read model {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("model {path} is not a valid {format} model: {message}")]
    Corrupt { path: PathBuf, format: &'static str, message: String },
    #[error("model {path}: {what} is {found}, expected {expected}")]
    Shape { path: PathBuf, what: &'static str, found: String, expected: String },
    #[error("model {path}: {message}")]
    Unsupported { path: PathBuf, message: String },
    #[error("model {path}: unknown format (expected an .onnx file)")]
    UnknownFormat { path: PathBuf },
    #[error("running model {path}: {message}")]
    Run { path: PathBuf, message: String },
    #[error("input has {found} values, the model takes {expected}")]
    InputLength { found: usize, expected: usize },
    #[error(transparent)]
    Action(#[from] control::ControlError),
}
