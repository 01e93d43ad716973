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

/// The HTTPS client every SDK client here uses: the SDK's own hyper + rustls client, as its
/// `default-https-client` feature builds it (connector settings and sleep from the SDK, proxy from
/// `HTTPS_PROXY`/`NO_PROXY`), but with rustls on ring rather than aws-lc, so that a function
/// that also links librdkafka's OpenSSL carries one C crypto library, not two.
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::{proxy::ProxyConfig, tls, Builder, ConnectorBuilder};
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector = ConnectorBuilder::default()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

/// The shared SDK configuration: region and credentials from the usual chain, endpoints from
/// `AWS_ENDPOINT_URL[_<SERVICE>]`, the [`https_client`], and the time limits and retries above.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https_client())
        .timeout_config(aws_timeouts())
        .retry_config(aws_retries())
        .load()
        .await
}
