/// Errors of the arenas and the tournament.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Trace(#[from] traces::TraceError),
    #[error(transparent)]
    Prices(#[from] cost_model::PriceError),
    #[error(transparent)]
    Model(#[from] latency_model::ModelError),
    #[error(transparent)]
    Control(#[from] control::ControlError),
    #[error("invalid arena configuration: {0}")]
    Config(String),
    #[error("timeline.svg: {0}")]
    Plot(String),
    #[error("unknown policy `{name}` for the {arena} arena (known: {known})")]
    UnknownPolicy { name: String, arena: &'static str, known: String },
    // The I/O error in the message only: as a `source` too, a chain printer would say it twice.
    #[error("cannot write {path}: {error}")]
    Write { path: std::path::PathBuf, error: std::io::Error },
}
