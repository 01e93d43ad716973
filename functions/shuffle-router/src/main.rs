//! The shuffle-router function. Everything it does is in the shared crates; see `handlers::shuffle_router`.

#[tokio::main]
async fn main() -> Result<(), serve::Error> {
    serve::start::<handlers::shuffle_router::ShuffleRouter>().await
}
