//! Built-in trace generators. Each shape is deterministic for a seed; the seed moves burst times and
//! the noise, never the shape's defining figures.

use crate::{Trace, TracePoint};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rand_xoshiro::Xoshiro256PlusPlus;

/// The built-in trace shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinTrace {
    StepBurst,
    Burst4x,
    RushHour,
    SlowRamp,
    FlashCrowd,
    /// A spike beyond every training trace: what the backlog safety net is for.
    Spike30x,
}

/// Name and one-line description of every built-in, in listing order.
pub const BUILTINS: &[(&str, &str)] = &[
    (
        "step-burst",
        "thesis 1.1: 1,000 -> 5,000 events/s step for 5 min, 100 KB events (500 MB/s at the peak, thesis 1.3); 15 min",
    ),
    ("burst-4x", "1,200 events/s with four 4x bursts of 1-3 min at seeded times, 2.5 KB events; 40 min"),
    ("rush-hour", "periodic: two rush peaks (3.5x and 2.5x) every 20 min over a 600 events/s floor, 2.5 KB events; 60 min"),
    ("slow-ramp", "500 -> 4,000 events/s linear ramp over 30 min, then flat, 8 KB events; 40 min"),
    ("flash-crowd", "1,000 events/s, an 8x flash crowd at a seeded time decaying with a 2 min half-life, 2.5 KB events; 30 min"),
    ("spike-30x", "1,200 events/s, rising to 30x within a minute at a seeded time, held 5-10 min, back down over 5 min, 2.5 KB events; 40 min (beyond every training trace)"),
];

impl BuiltinTrace {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "step-burst" => Self::StepBurst,
            "burst-4x" => Self::Burst4x,
            "rush-hour" => Self::RushHour,
            "slow-ramp" => Self::SlowRamp,
            "flash-crowd" => Self::FlashCrowd,
            "spike-30x" => Self::Spike30x,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::StepBurst => "step-burst",
            Self::Burst4x => "burst-4x",
            Self::RushHour => "rush-hour",
            Self::SlowRamp => "slow-ramp",
            Self::FlashCrowd => "flash-crowd",
            Self::Spike30x => "spike-30x",
        }
    }

    pub fn all() -> [Self; 6] {
        [Self::StepBurst, Self::Burst4x, Self::RushHour, Self::SlowRamp, Self::FlashCrowd, Self::Spike30x]
    }
}

/// Relative noise on every built-in: AR(1) with this standard deviation and correlation, so noise
/// looks like real jitter rather than white static.
const NOISE_STD: f64 = 0.05;
const NOISE_RHO: f64 = 0.7;

/// Generate a built-in trace for `seed`.
pub fn builtin(kind: BuiltinTrace, seed: u64) -> Trace {
    // Mix the shape into the seed so different shapes never share a noise stream.
    let mut rng =
        Xoshiro256PlusPlus::seed_from_u64(seed ^ (kind as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let (base, bytes): (Vec<f64>, f64) = match kind {
        BuiltinTrace::StepBurst => {
            let shape = (0..900).map(|t| if (300..600).contains(&t) { 5_000.0 } else { 1_000.0 }).collect();
            (shape, 100_000.0)
        }
        BuiltinTrace::Burst4x => {
            let len = 2_400;
            let mut shape = vec![1_200.0; len];
            // Four bursts, one per 10-minute slot, each starting at a seeded offset in its slot.
            for slot in 0..4 {
                let dur = rng.random_range(60..=180);
                let start = slot * 600 + rng.random_range(60..(600 - dur));
                for v in &mut shape[start..start + dur] {
                    *v = 4_800.0;
                }
            }
            (shape, 2_500.0)
        }
        BuiltinTrace::RushHour => {
            let period = 1_200.0;
            let shape = (0..3_600)
                .map(|t| {
                    let phase = (t as f64 % period) / period;
                    let peak = |centre: f64, width: f64, height: f64| {
                        height * (-((phase - centre) / width).powi(2)).exp()
                    };
                    600.0 * (1.0 + peak(0.3, 0.06, 2.5) + peak(0.75, 0.07, 1.5))
                })
                .collect();
            (shape, 2_500.0)
        }
        BuiltinTrace::SlowRamp => {
            let shape = (0..2_400).map(|t| 500.0 + 3_500.0 * (t as f64 / 1_800.0).min(1.0)).collect();
            (shape, 8_000.0)
        }
        BuiltinTrace::FlashCrowd => {
            let start = rng.random_range(400..1_000);
            let half_life = 120.0;
            let shape = (0..1_800)
                .map(|t| {
                    if t < start {
                        1_000.0
                    } else {
                        let age = (t - start) as f64;
                        1_000.0 * (1.0 + 7.0 * (-(age * std::f64::consts::LN_2 / half_life)).exp())
                    }
                })
                .collect();
            (shape, 2_500.0)
        }
        BuiltinTrace::Spike30x => {
            let start = rng.random_range(600..1_200);
            let hold = rng.random_range(300..=600);
            let (rise, fall, base) = (60.0, 300.0, 1_200.0);
            let shape = (0..2_400)
                .map(|t| {
                    let since = t as f64 - start as f64;
                    let level = if since < 0.0 {
                        1.0
                    } else if since < rise {
                        1.0 + 29.0 * since / rise
                    } else if since < rise + hold as f64 {
                        30.0
                    } else {
                        30.0 - 29.0 * ((since - rise - hold as f64) / fall).min(1.0)
                    };
                    base * level
                })
                .collect();
            (shape, 2_500.0)
        }
    };
    let normal = Normal::new(0.0, NOISE_STD * (1.0 - NOISE_RHO * NOISE_RHO).sqrt()).expect("valid normal");
    let mut noise = 0.0;
    let points = base
        .into_iter()
        .map(|rate| {
            noise = NOISE_RHO * noise + normal.sample(&mut rng);
            TracePoint { events_per_s: rate * (1.0 + noise).max(0.0), bytes_per_event: bytes }
        })
        .collect();
    Trace::new(kind.name(), points)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_has_a_description_and_round_trips_its_name() {
        for kind in BuiltinTrace::all() {
            assert_eq!(BuiltinTrace::from_name(kind.name()), Some(kind));
            assert!(BUILTINS.iter().any(|(n, _)| *n == kind.name()));
        }
    }

    #[test]
    fn same_seed_same_trace_other_seed_other_noise() {
        for kind in BuiltinTrace::all() {
            assert_eq!(builtin(kind, 3), builtin(kind, 3));
            assert_ne!(builtin(kind, 3), builtin(kind, 4));
        }
    }

    #[test]
    fn step_burst_follows_the_thesis() {
        let t = builtin(BuiltinTrace::StepBurst, 1);
        let mean = |a: usize, b: usize| {
            t.points()[a..b].iter().map(|p| p.events_per_s).sum::<f64>() / (b - a) as f64
        };
        assert!((mean(0, 300) - 1_000.0).abs() < 50.0);
        assert!((mean(300, 600) - 5_000.0).abs() < 250.0);
        // 5,000 events/s of 100 KB = 500 MB/s, the thesis's burst data rate.
        assert!((t.at(450).mb_per_s() - 500.0).abs() < 100.0);
    }

    #[test]
    fn burst_4x_has_four_bursts_of_four_times_the_base() {
        let t = builtin(BuiltinTrace::Burst4x, 9);
        let high = t.points().iter().filter(|p| p.events_per_s > 3_000.0).count();
        assert!((240..=720).contains(&high), "{high} burst seconds");
        let edges = t
            .points()
            .windows(2)
            .filter(|w| w[0].events_per_s < 3_000.0 && w[1].events_per_s > 3_000.0)
            .count();
        assert_eq!(edges, 4);
    }
}
