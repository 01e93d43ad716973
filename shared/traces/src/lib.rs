//! Load traces for the sparkpilot arenas.
//!
//! A [`Trace`] is one sample per simulated second: the event rate arriving from the edge and the mean
//! size of an event. Traces come from the built-in generators ([`builtin`], listed by [`BUILTINS`]) or
//! from a CSV file ([`load_csv`]) with the header `time_s,events_per_s,bytes_per_event` (the last
//! column optional). [`resolve`] accepts either a built-in name or a path.
//!
//! ```
//! let trace = traces::resolve("step-burst", 7).unwrap();
//! assert!(trace.len() > 600);
//! let peak = trace.points().iter().map(|p| p.events_per_s).fold(0.0, f64::max);
//! assert!(peak > 4_000.0);
//! ```

mod builtin;
mod csv;
mod error;

pub use builtin::{builtin, BuiltinTrace, BUILTINS};
pub use csv::{load_csv, parse_csv, DEFAULT_BYTES_PER_EVENT, MAX_SPAN_S};
pub use error::TraceError;

use std::path::Path;

/// Load at one simulated second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TracePoint {
    /// Events arriving per second.
    pub events_per_s: f64,
    /// Mean size of one event in bytes.
    pub bytes_per_event: f64,
}

impl TracePoint {
    /// Megabytes per second carried by this point.
    pub fn mb_per_s(&self) -> f64 {
        self.events_per_s * self.bytes_per_event / 1e6
    }
}

/// A load trace sampled once per second.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    name: String,
    points: Vec<TracePoint>,
}

impl Trace {
    /// Build a trace from per-second points. Negative or non-finite values are clamped to zero.
    pub fn new(name: impl Into<String>, points: Vec<TracePoint>) -> Self {
        let points = points
            .into_iter()
            .map(|p| TracePoint {
                events_per_s: finite_non_negative(p.events_per_s),
                bytes_per_event: finite_non_negative(p.bytes_per_event),
            })
            .collect();
        Self { name: name.into(), points }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn points(&self) -> &[TracePoint] {
        &self.points
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The point at second `t`; past the end the last point holds (a trace does not fall to zero).
    pub fn at(&self, t: usize) -> TracePoint {
        match self.points.get(t) {
            Some(p) => *p,
            None => {
                self.points.last().copied().unwrap_or(TracePoint { events_per_s: 0.0, bytes_per_event: 0.0 })
            }
        }
    }

    /// Mean arrival rate over the whole trace (events/s).
    pub fn mean_events_per_s(&self) -> f64 {
        if self.points.is_empty() {
            return 0.0;
        }
        self.points.iter().map(|p| p.events_per_s).sum::<f64>() / self.points.len() as f64
    }

    /// Event-weighted mean event size (bytes).
    pub fn mean_bytes_per_event(&self) -> f64 {
        let events: f64 = self.points.iter().map(|p| p.events_per_s).sum();
        if events <= 0.0 {
            return self.points.first().map_or(0.0, |p| p.bytes_per_event);
        }
        self.points.iter().map(|p| p.events_per_s * p.bytes_per_event).sum::<f64>() / events
    }

    /// A window of this trace, `[start, start + len)`, clipped to its end.
    pub fn window(&self, start: usize, len: usize) -> Trace {
        let end = (start + len).min(self.points.len());
        let start = start.min(end);
        Trace { name: self.name.clone(), points: self.points[start..end].to_vec() }
    }
}

fn finite_non_negative(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 {
        x
    } else {
        0.0
    }
}

/// A built-in name (generated with `seed`) or a CSV path.
pub fn resolve(name_or_path: &str, seed: u64) -> Result<Trace, TraceError> {
    if let Some(kind) = BuiltinTrace::from_name(name_or_path) {
        return Ok(builtin(kind, seed));
    }
    let path = Path::new(name_or_path);
    if path.exists() {
        return load_csv(path);
    }
    Err(TraceError::Unknown(name_or_path.to_string()))
}

/// Whether a trace name or path names a built-in generator (whose shape changes with the seed).
pub fn is_builtin(name_or_path: &str) -> bool {
    BuiltinTrace::from_name(name_or_path).is_some()
}
