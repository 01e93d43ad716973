//! The burst-signal function. Everything it does is in the shared crates; see `handlers::burst_signal`.

#[tokio::main]
async fn main() -> Result<(), serve::Error> {
    serve::start::<handlers::burst_signal::BurstSignal>().await
}
