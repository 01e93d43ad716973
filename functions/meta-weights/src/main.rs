//! The meta-weights function. Everything it does is in the shared crates; see `handlers::build`.

#[tokio::main]
async fn main() -> Result<(), serve::Error> {
    serve::start("meta-weights").await
}
