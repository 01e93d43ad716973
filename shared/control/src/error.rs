/// Invalid configuration of a control component.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ControlError {
    #[error("burst detector: {0}")]
    Detector(String),
    #[error("policy action: {0}")]
    Action(String),
}
