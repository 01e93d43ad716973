use crate::ports::PortError;

/// Why a handler could not complete an invocation. Problems with single records are not errors of
/// the invocation: they are reported per record in the handler's result and the batch goes on.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("bad event: {0}")]
    BadEvent(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Another invocation holds what this one needs (the decision lease): deliver the event again.
    #[error("busy: {0}")]
    Busy(String),
    #[error("stored state: {0}")]
    State(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Port(#[from] PortError),
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    #[error(transparent)]
    Control(#[from] control::ControlError),
}
