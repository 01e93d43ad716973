use std::path::PathBuf;

/// What can go wrong serving the dashboard.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("cannot listen on {addr}: {error}")]
    Bind { addr: String, error: std::io::Error },
    #[error("the dashboard server stopped: {0}")]
    Serve(std::io::Error),
    #[error("{}: {message}", path.display())]
    Results { path: PathBuf, message: String },
}
