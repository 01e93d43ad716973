//! The processing figures of a real Structured Streaming job, fitted from its micro-batches.
//!
//! `latency.toml` assumes a micro-batch costs a fixed overhead plus, per event, a fixed part and a
//! part per MB, shared over the executors' cores. Given batches the job really ran (rows, cores,
//! event size, duration), a least-squares fit of
//!
//! ```text
//! duration_ms = batch_overhead_ms + rows / cores x (per_event_cpu_ms + per_mb_cpu_ms x MB per event)
//! ```
//!
//! gives the same three figures for that job on that machine, so the assumptions can be set beside
//! what was measured. With a single event size the per-MB part cannot be told from the per-event
//! part, and only the first two are fitted.
//!
//! ```
//! use latency_model::job_fit::{fit, BatchSample};
//! let batches: Vec<BatchSample> = [(100.0, 250.0), (2_000.0, 250.0), (500.0, 20_000.0), (1_500.0, 20_000.0)]
//!     .iter()
//!     .map(|&(rows, bytes)| BatchSample { rows, cores: 1.0, bytes_per_event: bytes, duration_ms: 300.0 + rows * (0.1 + 2.0 * bytes / 1e6) })
//!     .collect();
//! let f = fit(&batches).unwrap();
//! assert!((f.batch_overhead_ms - 300.0).abs() < 1e-6 && (f.per_event_cpu_ms - 0.1).abs() < 1e-9);
//! assert!((f.per_mb_cpu_ms.unwrap() - 2.0).abs() < 1e-6);
//! ```

/// One micro-batch as the job ran it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchSample {
    /// Events the batch processed.
    pub rows: f64,
    /// Executor cores that ran it.
    pub cores: f64,
    pub bytes_per_event: f64,
    pub duration_ms: f64,
}

/// The fitted figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobFit {
    pub batch_overhead_ms: f64,
    /// CPU ms one core spends per event, before the per-MB part.
    pub per_event_cpu_ms: f64,
    /// CPU ms one core spends per MB of events; `None` when every batch had the same event size.
    pub per_mb_cpu_ms: Option<f64>,
    pub samples: usize,
    /// Share of the batch durations' variance the fit explains.
    pub r_squared: f64,
}

/// Least squares over `samples`; batches without rows, cores or a finite duration are left out.
pub fn fit(samples: &[BatchSample]) -> Result<JobFit, String> {
    let good: Vec<&BatchSample> = samples
        .iter()
        .filter(|s| {
            s.rows > 0.0
                && s.cores > 0.0
                && s.duration_ms.is_finite()
                && s.duration_ms >= 0.0
                && s.bytes_per_event.is_finite()
                && s.bytes_per_event >= 0.0
        })
        .collect();
    if good.len() < 3 {
        return Err(format!(
            "{} usable batches (with rows, cores and a duration); at least 3 are needed",
            good.len()
        ));
    }
    let first = good[0].bytes_per_event;
    let sizes_vary = good.iter().any(|s| (s.bytes_per_event - first).abs() > 1e-9 * first.max(1.0));
    let row = |s: &BatchSample| -> Vec<f64> {
        let per_core = s.rows / s.cores;
        if sizes_vary {
            vec![1.0, per_core, per_core * s.bytes_per_event / 1e6]
        } else {
            vec![1.0, per_core]
        }
    };
    let k = if sizes_vary { 3 } else { 2 };
    // Normal equations X'X b = X'y.
    let mut a = vec![vec![0.0; k]; k];
    let mut b = vec![0.0; k];
    for s in &good {
        let x = row(s);
        for i in 0..k {
            b[i] += x[i] * s.duration_ms;
            for j in 0..k {
                a[i][j] += x[i] * x[j];
            }
        }
    }
    let coef = solve(a, b).ok_or("the batches do not separate overhead from per-event cost: vary the load (rows per batch) and run again")?;
    let mean = good.iter().map(|s| s.duration_ms).sum::<f64>() / good.len() as f64;
    let (mut ss_res, mut ss_tot) = (0.0, 0.0);
    for s in &good {
        let predicted: f64 = row(s).iter().zip(&coef).map(|(x, c)| x * c).sum();
        ss_res += (s.duration_ms - predicted).powi(2);
        ss_tot += (s.duration_ms - mean).powi(2);
    }
    Ok(JobFit {
        batch_overhead_ms: coef[0],
        per_event_cpu_ms: coef[1],
        per_mb_cpu_ms: sizes_vary.then(|| coef[2]),
        samples: good.len(),
        r_squared: if ss_tot > 0.0 { 1.0 - ss_res / ss_tot } else { 1.0 },
    })
}

/// Gaussian elimination with partial pivoting; `None` if the system is singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        let scale = a.iter().map(|r| r[col].abs()).fold(0.0, f64::max);
        if a[pivot][col].abs() <= 1e-12 * scale.max(1e-300) {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for i in col + 1..n {
            let f = a[i][col] / a[col][col];
            let (pivot_rows, rest) = a.split_at_mut(i);
            for (x, p) in rest[0][col..n].iter_mut().zip(&pivot_rows[col][col..n]) {
                *x -= f * p;
            }
            b[i] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|j| a[i][j] * x[j]).sum();
        x[i] = (b[i] - s) / a[i][i];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noisy_batches_give_back_the_figures_they_were_drawn_from() {
        // A deterministic wobble of +-10 ms on every batch.
        let batches: Vec<BatchSample> = (0..200)
            .map(|i| {
                let rows = 50.0 + 37.0 * (i % 40) as f64;
                let bytes = if i % 2 == 0 { 300.0 } else { 30_000.0 };
                let cores = 1.0 + (i % 3) as f64;
                let wobble = 10.0 * ((i * 7919) % 21) as f64 / 10.0 - 10.0;
                BatchSample {
                    rows,
                    cores,
                    bytes_per_event: bytes,
                    duration_ms: 250.0 + rows / cores * (0.4 + 30.0 * bytes / 1e6) + wobble,
                }
            })
            .collect();
        let f = fit(&batches).unwrap();
        assert!((f.batch_overhead_ms - 250.0).abs() < 5.0, "{f:?}");
        assert!((f.per_event_cpu_ms - 0.4).abs() < 0.02, "{f:?}");
        assert!((f.per_mb_cpu_ms.unwrap() - 30.0).abs() < 1.0, "{f:?}");
        assert!(f.r_squared > 0.99);
    }

    #[test]
    fn one_event_size_fits_two_figures_and_too_little_data_is_refused_clearly() {
        let batches: Vec<BatchSample> = [10.0, 100.0, 1_000.0]
            .iter()
            .map(|&rows| BatchSample {
                rows,
                cores: 2.0,
                bytes_per_event: 500.0,
                duration_ms: 100.0 + rows / 2.0,
            })
            .collect();
        let f = fit(&batches).unwrap();
        assert_eq!(f.per_mb_cpu_ms, None);
        assert!((f.per_event_cpu_ms - 1.0).abs() < 1e-9 && (f.batch_overhead_ms - 100.0).abs() < 1e-6);
        let idle = BatchSample { rows: 0.0, cores: 1.0, bytes_per_event: 500.0, duration_ms: 5.0 };
        assert!(fit(&[idle, idle, idle, batches[0]]).unwrap_err().contains("1 usable"));
        let same = vec![batches[1]; 5];
        assert!(fit(&same).unwrap_err().contains("vary the load"));
    }
}
