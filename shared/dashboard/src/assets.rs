//! The page and its scripts, compiled into the binary: the dashboard needs no network and no files
//! beside the executable.

pub const INDEX_HTML: &str = include_str!("../assets/index.html");
pub const APP_JS: &str = include_str!("../assets/app.js");
pub const STYLE_CSS: &str = include_str!("../assets/style.css");
/// uPlot 1.6.32 (MIT), see `assets/vendor/uplot/README.md`.
pub const UPLOT_JS: &str = include_str!("../assets/vendor/uplot/uPlot.iife.min.js");
pub const UPLOT_CSS: &str = include_str!("../assets/vendor/uplot/uPlot.min.css");
