//! The shuffle-router function. Everything it does is in the shared crates; see `handlers::build`.

#[tokio::main]
async fn main() -> Result<(), serve::Error> {
    serve::start("shuffle-router").await
}
