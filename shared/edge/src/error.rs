/// Why the edge agent could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("edge agent configuration: {0}")]
    Config(String),
    #[error("edge agent stopped: {0}")]
    Stopped(String),
}
