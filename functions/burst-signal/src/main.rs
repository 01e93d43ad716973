//! The burst-signal function. Everything it does is in the shared crates; see `handlers::build`.

#[tokio::main]
async fn main() -> Result<(), serve::Error> {
    serve::start("burst-signal").await
}
