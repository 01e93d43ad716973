use thiserror::Error;

#[derive(Debug, Error)]
pub enum BridgeError {
    /// The bridge's own settings or routes cannot work.
    #[error("configuration: {0}")]
    Config(String),
    /// A broker refused a request (subscribe, commit, dead letter).
    #[error("kafka: {0}")]
    Kafka(String),
    /// A Kafka client could not be made.
    #[error(transparent)]
    Client(#[from] adapters::AdapterError),
}
