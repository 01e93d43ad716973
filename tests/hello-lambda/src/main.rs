//! Echoes its event. Built and started the same way as the five functions, it measures what a Lambda
//! binary's init costs before any sparkpilot code runs.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let echo = |event: lambda_runtime::LambdaEvent<serde_json::Value>| async move {
        Ok::<_, lambda_runtime::Error>(event.payload)
    };
    lambda_runtime::run(lambda_runtime::service_fn(echo)).await
}
