//! The prewarmer function. Everything it does is in the shared crates; see `handlers::prewarmer`.

#[tokio::main]
async fn main() -> Result<(), serve::Error> {
    serve::start::<handlers::prewarmer::Prewarmer>().await
}
