//! What the AWS adapters share: the SDK configuration every client is built from, and errors.

use handlers::ports::PortError;

/// Turn an SDK error into the port's error, with the whole cause chain (service error code and
/// message, or the dispatch failure) in the text.
#[cfg(any(feature = "emr", feature = "elasticache", feature = "s3"))]
pub(crate) fn sdk_err<E: std::error::Error + 'static>(
    backend: &'static str,
    op: &'static str,
) -> impl Fn(
    aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> PortError {
    move |e| PortError::new(backend, op, aws_smithy_types::error::display::DisplayErrorContext(&e))
}

/// Time limits on every AWS call. The functions' timeout is 60 s and a decision makes two or three
/// calls; without an operation timeout a call to an endpoint that accepts and never answers would
/// use all of it.
pub fn aws_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .operation_attempt_timeout(std::time::Duration::from_secs(5))
        .operation_timeout(std::time::Duration::from_secs(15))
        .build()
}

/// Throttling and 5xx answers are retried with the SDK's standard back-off, three attempts at most
/// (inside [`aws_timeouts`]' operation timeout).
pub fn aws_retries() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard().with_max_attempts(3)
}

/// The shared SDK configuration: region and credentials from the usual chain, endpoints from
/// `AWS_ENDPOINT_URL[_<SERVICE>]`, and the time limits and retries above.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(aws_timeouts())
        .retry_config(aws_retries())
        .load()
        .await
}
