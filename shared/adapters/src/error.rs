/// Why a backend could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("redis {url}: {message}")]
    Redis { url: String, message: String },
    #[error("kafka: {0}")]
    Kafka(String),
    #[error(transparent)]
    Port(#[from] handlers::ports::PortError),
}
