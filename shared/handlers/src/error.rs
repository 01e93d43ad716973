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
    /// The policy model failed (loading or running); only the functions built with the `policy`
    /// feature have one.
    #[error("policy: {0}")]
    Policy(String),
    #[error(transparent)]
    Control(#[from] control::ControlError),
}

#[cfg(feature = "policy")]
impl From<policy::PolicyError> for HandlerError {
    fn from(e: policy::PolicyError) -> Self {
        HandlerError::Policy(e.to_string())
    }
}
