//! A tournament's (or a replay's) output directory: `results.csv` and `timeline.svg`.

use crate::DashboardError;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// `results.csv` as a table: one row per policy, the columns as the file names them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultsTable {
    pub dir: PathBuf,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Whether `timeline.svg` is there to show.
    pub timeline: bool,
}

/// Read `dir/results.csv`; a missing file or a row of another width is an error naming the file
/// (and the row).
pub fn read(dir: &Path) -> Result<ResultsTable, DashboardError> {
    let path = dir.join("results.csv");
    let err = |message: String| DashboardError::Results { path: path.clone(), message };
    let mut reader =
        csv::ReaderBuilder::new().has_headers(true).from_path(&path).map_err(|e| err(e.to_string()))?;
    let columns: Vec<String> =
        reader.headers().map_err(|e| err(e.to_string()))?.iter().map(str::to_string).collect();
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| err(format!("row {}: {e}", i + 1)))?;
        rows.push(record.iter().map(str::to_string).collect());
    }
    Ok(ResultsTable { dir: dir.to_path_buf(), columns, rows, timeline: dir.join("timeline.svg").is_file() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_columns_and_rows_and_names_a_bad_row() {
        let dir = std::env::temp_dir().join(format!("dashboard-results-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("results.csv"), "policy,cost_usd\nrl,1.5\nstatic,2\n").unwrap();
        let t = read(&dir).unwrap();
        assert_eq!(t.columns, ["policy", "cost_usd"]);
        assert_eq!(t.rows, [["rl", "1.5"], ["static", "2"]]);
        assert!(!t.timeline);
        std::fs::write(dir.join("results.csv"), "policy,cost_usd\nrl,1.5,extra\n").unwrap();
        let e = read(&dir).unwrap_err().to_string();
        assert!(e.contains("results.csv") && e.contains("row 1"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(read(&dir).unwrap_err().to_string().contains("results.csv"));
    }
}
