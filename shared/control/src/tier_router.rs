//! Temperature-based shuffle placement (thesis, chapter 5.3): a block's temperature mixes how often it
//! is read with how recently it was written; hot blocks go to Redis, warm ones to local NVMe, cold ones
//! to S3 and archived ones to S3 with a Glacier storage class. During a burst everything new goes hot,
//! because the reducers that read it are about to be scheduled.

use crate::ControlError;
use latency_model::{Compression, Tier};
use serde::{Deserialize, Serialize};

/// Weights and thresholds of a [`TierRouter`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TierRouterConfig {
    /// Weight of access frequency (w1).
    pub w_frequency: f64,
    /// Weight of recency, 1/age (w2).
    pub w_recency: f64,
    /// Reads per minute at which the frequency term reaches about 0.63 (1 - 1/e).
    pub reads_per_minute_scale: f64,
    /// Age in seconds at which the recency term is 1/2.
    pub age_half_s: f64,
    /// Above this temperature a block is hot (Redis).
    pub hot: f64,
    /// Above this temperature a block is warm (NVMe).
    pub warm: f64,
}

impl Default for TierRouterConfig {
    fn default() -> Self {
        Self {
            w_frequency: 0.6,
            w_recency: 0.4,
            reads_per_minute_scale: 2.0,
            age_half_s: 60.0,
            hot: 0.8,
            warm: 0.3,
        }
    }
}

/// What the router knows of a block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockStats {
    pub access_count: u64,
    pub age_s: f64,
    /// Written during a burst.
    pub burst: bool,
    /// Marked for archival by its producer (finished job, audit copy).
    pub archival: bool,
}

/// Where a block goes, and how it is compressed there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub tier: Tier,
    pub compression: Compression,
}

/// Routes shuffle blocks to storage tiers by temperature.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TierRouter {
    config: TierRouterConfig,
}

impl TierRouter {
    pub fn new(config: TierRouterConfig) -> Result<Self, ControlError> {
        let c = &config;
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        if !(ok(c.w_frequency) && ok(c.w_recency) && c.w_frequency + c.w_recency > 0.0) {
            return Err(ControlError::Router(format!(
                "weights {} and {} must be non-negative, not both zero",
                c.w_frequency, c.w_recency
            )));
        }
        if !(c.reads_per_minute_scale > 0.0
            && c.age_half_s > 0.0
            && c.reads_per_minute_scale.is_finite()
            && c.age_half_s.is_finite())
        {
            return Err(ControlError::Router(
                "reads_per_minute_scale and age_half_s must be positive".into(),
            ));
        }
        if !(0.0 <= c.warm && c.warm < c.hot && c.hot <= 1.0) {
            return Err(ControlError::Router(format!(
                "thresholds need 0 <= warm ({}) < hot ({}) <= 1",
                c.warm, c.hot
            )));
        }
        Ok(Self { config })
    }

    pub fn config(&self) -> &TierRouterConfig {
        &self.config
    }

    /// T = w1 * f + w2 * r over w1 + w2, in 0..1: f = 1 - exp(-reads per minute / scale) saturates
    /// the access frequency, r = h / (h + age) is 1/age normalised so that a new block scores 1.
    pub fn temperature(&self, stats: &BlockStats) -> f64 {
        let c = &self.config;
        let age = if stats.age_s.is_finite() { stats.age_s.max(0.0) } else { f64::MAX };
        let per_minute = stats.access_count as f64 * 60.0 / age.max(1.0);
        let frequency = 1.0 - (-per_minute / c.reads_per_minute_scale).exp();
        let recency = c.age_half_s / (c.age_half_s + age);
        ((c.w_frequency * frequency + c.w_recency * recency) / (c.w_frequency + c.w_recency)).clamp(0.0, 1.0)
    }

    /// Archival -> Glacier; burst or T > hot -> Redis; T > warm -> NVMe; otherwise S3. Hot tiers use
    /// LZ4 (fast to decode, on the read path); S3 and Glacier use ZSTD (bytes cost money and time there).
    pub fn place(&self, stats: &BlockStats) -> Placement {
        let tier = if stats.archival {
            Tier::Glacier
        } else if stats.burst {
            Tier::Redis
        } else {
            let t = self.temperature(stats);
            if t > self.config.hot {
                Tier::Redis
            } else if t > self.config.warm {
                Tier::Nvme
            } else {
                Tier::S3
            }
        };
        Placement { tier, compression: Self::codec_for(tier) }
    }

    /// [`place`](Self::place), with the tier the scaling decision in force picked for the job's
    /// working blocks: what the temperature rule would keep on a fast tier (Redis or NVMe: hot state
    /// and intermediate blocks the next stages read) goes to the decided tier instead; archival and
    /// cold blocks stay where the rule puts them. A decided Glacier means S3 here: a reducer cannot
    /// wait hours for a restore.
    pub fn place_following(&self, stats: &BlockStats, decided: Option<Tier>) -> Placement {
        let own = self.place(stats);
        match (own.tier, decided) {
            (Tier::Redis | Tier::Nvme, Some(d)) => {
                let tier = if d == Tier::Glacier { Tier::S3 } else { d };
                Placement { tier, compression: Self::codec_for(tier) }
            }
            _ => own,
        }
    }

    /// The codec a tier stores blocks with.
    pub fn codec_for(tier: Tier) -> Compression {
        match tier {
            Tier::Redis | Tier::Nvme | Tier::Hdd => Compression::Lz4,
            Tier::S3 | Tier::Glacier => Compression::Zstd,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(access_count: u64, age_s: f64) -> BlockStats {
        BlockStats { access_count, age_s, burst: false, archival: false }
    }

    #[test]
    fn hot_warm_cold_and_archival_land_where_the_thesis_says() {
        let r = TierRouter::default();
        assert_eq!(r.place(&stats(20, 5.0)).tier, Tier::Redis);
        assert_eq!(r.place(&stats(2, 60.0)).tier, Tier::Nvme);
        assert_eq!(r.place(&stats(0, 86_400.0)).tier, Tier::S3);
        assert_eq!(r.place(&BlockStats { archival: true, ..stats(50, 1.0) }).tier, Tier::Glacier);
        assert_eq!(
            r.place(&BlockStats { burst: true, ..stats(0, 86_400.0) }),
            Placement { tier: Tier::Redis, compression: Compression::Lz4 }
        );
        assert_eq!(r.place(&stats(0, 86_400.0)).compression, Compression::Zstd);
    }

    #[test]
    fn the_decided_tier_takes_the_working_blocks_and_leaves_cold_and_archival_ones() {
        let r = TierRouter::default();
        let (hot, warm, cold) = (stats(20, 5.0), stats(2, 60.0), stats(0, 86_400.0));
        let archival = BlockStats { archival: true, ..hot };
        for decided in Tier::CHOICES {
            let expect = if decided == Tier::Glacier { Tier::S3 } else { decided };
            assert_eq!(r.place_following(&hot, Some(decided)).tier, expect);
            assert_eq!(r.place_following(&warm, Some(decided)).tier, expect);
            assert_eq!(r.place_following(&cold, Some(decided)), r.place(&cold));
            assert_eq!(r.place_following(&archival, Some(decided)).tier, Tier::Glacier);
        }
        assert_eq!(r.place_following(&hot, None), r.place(&hot));
    }

    #[test]
    fn temperature_is_bounded_and_monotone() {
        let r = TierRouter::default();
        let mut last = f64::MAX;
        for age in [0.0, 1.0, 10.0, 100.0, 1e4, 1e9, f64::INFINITY, f64::NAN] {
            let t = r.temperature(&stats(3, age));
            assert!((0.0..=1.0).contains(&t), "{age}: {t}");
            if !age.is_nan() {
                assert!(t <= last, "older must not be hotter");
                last = t;
            }
        }
        assert!(r.temperature(&stats(10, 60.0)) > r.temperature(&stats(1, 60.0)));
    }

    #[test]
    fn bad_thresholds_are_refused() {
        let e = TierRouter::new(TierRouterConfig { hot: 0.2, warm: 0.5, ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("warm (0.5) < hot (0.2)"), "{e}");
    }
}
