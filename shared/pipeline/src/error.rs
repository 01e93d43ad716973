use thiserror::Error;

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Sim(#[from] sim::SimError),
    #[error("{function}: {source}")]
    Handler {
        function: &'static str,
        #[source]
        source: handlers::HandlerError,
    },
    #[error(transparent)]
    Build(#[from] handlers::HandlerError),
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("{0}")]
    Protocol(String),
    #[error("timed out: {0}")]
    Timeout(String),
}
