//! The scaling-decision function. Everything it does is in the shared crates; see `handlers::scaling_decision`.

#[tokio::main]
async fn main() -> Result<(), serve::Error> {
    serve::start::<handlers::scaling_decision::ScalingDecision>().await
}
