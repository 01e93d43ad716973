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
    #[error("unknown policy `{name}` for the {arena} arena (known: {known})")]
    UnknownPolicy { name: String, arena: &'static str, known: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}
