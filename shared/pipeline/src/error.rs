use thiserror::Error;

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Sim(#[from] sim::SimError),
    // The handler's error in the message only: as a `source` too, a chain printer would repeat it.
    #[error("{function}: {error}")]
    Handler { function: &'static str, error: handlers::HandlerError },
    #[error(transparent)]
    Build(#[from] handlers::HandlerError),
    #[error("kafka: {0}")]
    Kafka(String),
    #[error(transparent)]
    Bridge(#[from] bridge::BridgeError),
    #[error(transparent)]
    Adapter(#[from] adapters::AdapterError),
    #[error("{0}")]
    Protocol(String),
    #[error("timed out: {0}")]
    Timeout(String),
}
