//! The meta-weights function. Everything it does is in the shared crates; see `handlers::meta_weights`.

#[tokio::main]
async fn main() -> Result<(), serve::Error> {
    serve::start::<handlers::meta_weights::MetaWeights>().await
}
