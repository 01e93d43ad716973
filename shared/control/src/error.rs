/// Invalid configuration of a control component.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ControlError {
    #[error("burst detector: {0}")]
    Detector(String),
    #[error("policy action: {0}")]
    Action(String),
    #[error("guardrails: {0}")]
    Guardrail(String),
    #[error("tier router: {0}")]
    Router(String),
    #[error("forecaster: {0}")]
    Forecast(String),
}
