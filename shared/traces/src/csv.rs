//! CSV traces: `time_s,events_per_s[,bytes_per_event]` with a header line.
//!
//! Rows may be spaced irregularly (every 10 s, say); the trace is resampled onto whole seconds by
//! linear interpolation, starting at the first row's time. A trace spans at most [`MAX_SPAN_S`]
//! (one point per second is held in memory); a row beyond it is an error naming its line. A UTF-8
//! byte-order mark before the header is ignored.

use crate::{Trace, TraceError, TracePoint};
use std::path::{Path, PathBuf};

/// Event size used when a CSV has no `bytes_per_event` column: the size of the real-shaped traces
/// shipped with the project (a JSON sensor record of a few kilobytes).
pub const DEFAULT_BYTES_PER_EVENT: f64 = 2_500.0;

/// Longest trace accepted, seconds from its first row to its last: a week, 604,800 points of one
/// second (about 10 MB). A mistyped time (milliseconds, or 1e12) would otherwise ask for terabytes.
pub const MAX_SPAN_S: f64 = 7.0 * 86_400.0;

/// Read a CSV trace from a file; errors name the file and the line.
pub fn load_csv(path: &Path) -> Result<Trace, TraceError> {
    let text =
        std::fs::read_to_string(path).map_err(|error| TraceError::Io { path: path.to_path_buf(), error })?;
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("trace").to_string();
    parse_csv(&name, path, &text)
}

/// Parse CSV text; `path` is only used in error messages.
///
/// Read with the `csv` crate: quoted fields, CRLF line ends and a leading byte-order mark are
/// handled; lines starting with `#` are comments. Columns are found by their header names, so
/// their order does not matter and other columns are ignored.
pub fn parse_csv(name: &str, path: &Path, text: &str) -> Result<Trace, TraceError> {
    let bad =
        |line: usize, message: String| TraceError::Malformed { path: PathBuf::from(path), line, message };
    // The csv crate skips a BOM itself; stripping it here keeps the header message free of it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(::csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let mut rows: Vec<(f64, f64, f64)> = Vec::new();
    // (time, rate, bytes) column indices and the header's width, once the header is read.
    let mut layout: Option<(usize, usize, Option<usize>, usize)> = None;
    let mut record = ::csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                return Err(bad(line, format!("unreadable CSV: {e}")));
            }
        }
        let line_no = record.position().map_or(0, |p| p.line() as usize);
        if record.iter().all(str::is_empty) {
            continue;
        }
        let Some((ti, ri, bi, width)) = layout else {
            let column = |want: &str| record.iter().position(|f| f == want);
            match (column("time_s"), column("events_per_s")) {
                (Some(t), Some(r)) => layout = Some((t, r, column("bytes_per_event"), record.len())),
                _ => {
                    let found: Vec<&str> = record.iter().collect();
                    return Err(bad(
                        line_no,
                        format!(
                            "expected the header `time_s,events_per_s[,bytes_per_event]`, found `{}`",
                            found.join(",")
                        ),
                    ));
                }
            }
            continue;
        };
        if record.len() != width {
            return Err(bad(line_no, format!("expected {width} fields, found {}", record.len())));
        }
        let number = |i: usize, what: &str| -> Result<f64, TraceError> {
            let field = &record[i];
            let v: f64 =
                field.parse().map_err(|_| bad(line_no, format!("{what} `{field}` is not a number")))?;
            if !v.is_finite() {
                return Err(bad(line_no, format!("{what} `{field}` is not finite")));
            }
            Ok(v)
        };
        let t = number(ti, "time_s")?;
        let rate = number(ri, "events_per_s")?;
        if rate < 0.0 {
            return Err(bad(line_no, format!("events_per_s {rate} is negative")));
        }
        let bytes = match bi {
            Some(i) => number(i, "bytes_per_event")?,
            None => DEFAULT_BYTES_PER_EVENT,
        };
        if bytes <= 0.0 {
            return Err(bad(line_no, format!("bytes_per_event {bytes} must be positive")));
        }
        if let Some(&(prev, _, _)) = rows.last() {
            if t <= prev {
                return Err(bad(line_no, format!("time_s {t} does not increase (previous row {prev})")));
            }
        }
        if let Some(&(first, _, _)) = rows.first() {
            if (t - first).is_nan() || t - first > MAX_SPAN_S {
                return Err(bad(
                    line_no,
                    format!("time_s `{}` is more than {MAX_SPAN_S:.0} s (7 days) after the first row's; a trace spans at most that, one point per second (is the time in milliseconds?)", &record[ti]),
                ));
            }
        }
        rows.push((t, rate, bytes));
    }
    if rows.is_empty() {
        return Err(TraceError::Empty { path: PathBuf::from(path) });
    }
    Ok(Trace::new(name, resample(&rows)))
}

/// Linear interpolation onto whole seconds from the first row's time to the last's. The span is at
/// most [`MAX_SPAN_S`] (checked by the parser); times are taken relative to the first row, so a
/// large absolute time (1e20) loses no precision in the one-second steps.
fn resample(rows: &[(f64, f64, f64)]) -> Vec<TracePoint> {
    let t0 = rows[0].0;
    let span = rows[rows.len() - 1].0 - t0;
    debug_assert!((0.0..=MAX_SPAN_S).contains(&span));
    let n = span.clamp(0.0, MAX_SPAN_S).floor() as usize + 1;
    let rel = |i: usize| rows[i].0 - t0;
    let mut out = Vec::with_capacity(n);
    let mut j = 0;
    for s in 0..n {
        let t = s as f64;
        while j + 1 < rows.len() && rel(j + 1) <= t {
            j += 1;
        }
        let (_, ra, ba) = rows[j];
        let ta = rel(j);
        let point = if j + 1 < rows.len() {
            let (_, rb, bb) = rows[j + 1];
            let tb = rel(j + 1);
            let w = (t - ta) / (tb - ta);
            TracePoint { events_per_s: ra + w * (rb - ra), bytes_per_event: ba + w * (bb - ba) }
        } else {
            TracePoint { events_per_s: ra, bytes_per_event: ba }
        };
        out.push(point);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Trace, TraceError> {
        parse_csv("t", Path::new("t.csv"), text)
    }

    #[test]
    fn reads_three_columns_and_resamples_gaps() {
        let trace = parse("time_s,events_per_s,bytes_per_event\n0,100,1000\n10,200,3000\n").unwrap();
        assert_eq!(trace.len(), 11);
        assert_eq!(trace.at(5).events_per_s, 150.0);
        assert_eq!(trace.at(5).bytes_per_event, 2000.0);
        assert_eq!(trace.at(10).events_per_s, 200.0);
    }

    #[test]
    fn third_column_is_optional() {
        let trace = parse("time_s,events_per_s\n0,5\n1,6\n").unwrap();
        assert_eq!(trace.at(1).bytes_per_event, DEFAULT_BYTES_PER_EVENT);
    }

    #[test]
    fn errors_name_file_and_line() {
        let err = parse("time_s,events_per_s\n0,5\n1,abc\n").unwrap_err().to_string();
        assert!(err.starts_with("t.csv:3:"), "{err}");
        assert!(err.contains("abc"), "{err}");
        let err = parse("time_s,events_per_s\n0,5\n0,6\n").unwrap_err().to_string();
        assert!(err.contains("t.csv:3") && err.contains("does not increase"), "{err}");
        let err = parse("time,rate\n0,5\n").unwrap_err().to_string();
        assert!(err.contains("t.csv:1") && err.contains("header"), "{err}");
        let err = parse("time_s,events_per_s\n0,-5\n").unwrap_err().to_string();
        assert!(err.contains("negative"), "{err}");
        let err = parse("time_s,events_per_s,bytes_per_event\n0,5\n").unwrap_err().to_string();
        assert!(err.contains("t.csv:2") && err.contains("expected 3 fields"), "{err}");
        assert!(matches!(parse("time_s,events_per_s\n"), Err(TraceError::Empty { .. })));
    }

    #[test]
    fn a_huge_time_span_is_an_error_naming_the_line_not_an_allocation() {
        // 1e12 tried to allocate 16 TB, 1e9 grew to 15 GB, 1e20 and 1e300 wrapped to an empty trace.
        for big in ["1e12", "1e9", "1e20", "1e300", "604801"] {
            let err = parse(&format!("time_s,events_per_s\n0,5\n10,6\n{big},7\n")).unwrap_err().to_string();
            assert!(err.starts_with("t.csv:4:") && err.contains("604800 s (7 days)"), "{big}: {err}");
            assert!(err.contains(&format!("time_s `{big}`")) && err.len() < 200, "{big}: {err}");
        }
        // Exactly a week is accepted.
        assert_eq!(parse("time_s,events_per_s\n0,5\n604800,6\n").unwrap().len(), 604_801);
        // A large absolute start with a short span is fine, and resampled relative to it.
        let trace = parse("time_s,events_per_s\n1e15,100\n1.00000000000001e15,200\n").unwrap();
        assert_eq!(trace.len(), 11);
        assert_eq!(trace.at(5).events_per_s, 150.0);
        // NaN and infinity never reach the span check.
        for t in ["nan", "inf"] {
            let err = parse(&format!("time_s,events_per_s\n0,5\n{t},6\n")).unwrap_err().to_string();
            assert!(err.contains("t.csv:3") && err.contains("not finite"), "{t}: {err}");
        }
    }

    #[test]
    fn a_byte_order_mark_before_the_header_is_ignored() {
        let trace = parse("\u{feff}time_s,events_per_s\n0,5\n2,7\n").unwrap();
        assert_eq!(trace.len(), 3);
        assert_eq!(trace.at(1).events_per_s, 6.0);
        let trace = parse("\u{feff}time_s,events_per_s,bytes_per_event\r\n0,5,100\r\n1,6,100\r\n").unwrap();
        assert_eq!(trace.len(), 2);
    }

    #[test]
    fn quoted_fields_reordered_and_extra_columns_are_read() {
        let trace =
            parse("\"events_per_s\",\"time_s\",\"note\"\n\"100\",\"0\",\"a, b\"\n200,2,\"\"\n").unwrap();
        assert_eq!(trace.len(), 3);
        assert_eq!(trace.at(1).events_per_s, 150.0);
        assert_eq!(trace.at(1).bytes_per_event, DEFAULT_BYTES_PER_EVENT);
        // A comment line and a blank line between rows.
        let trace = parse("time_s,events_per_s\n0,5\n# a pause\n\n1,6\n").unwrap();
        assert_eq!(trace.len(), 2);
        let err = parse("time_s,events_per_s\n0,5\n1,\"6 x\"\n").unwrap_err().to_string();
        assert!(err.starts_with("t.csv:3:") && err.contains("`6 x` is not a number"), "{err}");
    }

    #[test]
    fn missing_file_is_an_error_not_a_panic() {
        let err = load_csv(Path::new("/nonexistent/trace.csv")).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/trace.csv"), "{err}");
    }
}
