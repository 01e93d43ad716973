//! The meta-controller's view: business scenario, budget and recent history, turned into the seven
//! features the meta policy reads. Shared by the simulator and the meta-weights function.

use serde::{Deserialize, Serialize};

/// The thesis's business scenarios and their (cost, latency) weights (seed-env.md, section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    HealthcareCritical,
    IndustrialHighThroughput,
    SmartCityBudget,
    Balanced,
}

impl Scenario {
    pub const ALL: [Scenario; 4] = [
        Scenario::HealthcareCritical,
        Scenario::IndustrialHighThroughput,
        Scenario::SmartCityBudget,
        Scenario::Balanced,
    ];

    /// (alpha cost, beta latency, gamma throughput).
    pub fn weights(self) -> [f64; 3] {
        match self {
            Scenario::HealthcareCritical => [0.1, 0.8, 0.1],
            Scenario::IndustrialHighThroughput => [0.2, 0.3, 0.5],
            Scenario::SmartCityBudget => [0.9, 0.05, 0.05],
            Scenario::Balanced => [0.33, 0.33, 0.33],
        }
    }

    /// The share of the weights on latency, beta / (alpha + beta), the scenario's runs stay within,
    /// whatever the meta-controller asks for: healthcare never below 0.75, smart city never above
    /// 0.25, industrial and balanced between. The controller moves the weights with the budget and
    /// the recent violations, but a budget scenario must not end up more cautious than the critical
    /// one, nor the critical one cheaper than the budget one: the order is what a user picks a
    /// scenario for. Each band holds the scenario's own weights ([`Scenario::weights`]); the scaling
    /// policy's headroom rises with this share ([`crate::reference_rule::teacher_headroom`]), so
    /// disjoint bands keep healthcare the most cautious and smart city the cheapest. On aws-elb, a
    /// trace no training trace resembles, the controller without bands gave industrial a lower cost
    /// than smart city (`models/meta-td3.md`).
    pub fn latency_share_band(self) -> (f64, f64) {
        match self {
            Scenario::HealthcareCritical => (0.75, 1.0),
            Scenario::IndustrialHighThroughput | Scenario::Balanced => (0.25, 0.75),
            Scenario::SmartCityBudget => (0.0, 0.25),
        }
    }

    /// Weights (alpha, beta) brought within the scenario's [band](Self::latency_share_band): weights
    /// inside it unchanged, others with the same sum and the latency share clamped into the band.
    /// Weights that are not numbers, negative or both zero give the scenario's own.
    pub fn bounded_weights(self, alpha: f64, beta: f64) -> (f64, f64) {
        let sum = alpha + beta;
        if !(alpha.is_finite() && beta.is_finite() && alpha >= 0.0 && beta >= 0.0 && sum > 0.0) {
            let [a, b, _] = self.weights();
            return (a, b);
        }
        let (low, high) = self.latency_share_band();
        let share = beta / sum;
        if (low..=high).contains(&share) {
            // Untouched, bit for bit: the trainer's paired reward compares runs under equal weights.
            return (alpha, beta);
        }
        let share = share.clamp(low, high);
        (sum * (1.0 - share), sum * share)
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::HealthcareCritical => "healthcare_critical",
            Scenario::IndustrialHighThroughput => "industrial_high_throughput",
            Scenario::SmartCityBudget => "smart_city_budget",
            Scenario::Balanced => "balanced",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Number of meta-controller features.
pub const META_FEATURES: usize = 7;

/// What the meta-controller knows of the run it steers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetaContext {
    pub scenario: Scenario,
    /// Dollars available for the whole horizon.
    pub budget_usd: f64,
    /// Seconds the budget must last.
    pub horizon_s: f64,
}

/// What the meta-controller reads of the recent decisions, each given as (latency over the SLA,
/// spend rate in $/s): the share over the SLA and the mean spend rate. Zeros without decisions. The
/// meta-weights function computes it from its decision log, the arena from the decisions it ran.
pub fn recent_summary(decisions: impl IntoIterator<Item = (bool, f64)>) -> (f64, f64) {
    let (mut n, mut slow, mut spend) = (0usize, 0usize, 0.0);
    for (over_sla, rate) in decisions {
        n += 1;
        slow += usize::from(over_sla);
        spend += rate;
    }
    if n == 0 {
        return (0.0, 0.0);
    }
    (slow as f64 / n as f64, spend / n as f64)
}

impl MetaContext {
    /// Features in order: scenario one-hot (4); budget remaining as a share of the budget; share of
    /// recent decisions whose latency exceeded the SLA; recent spend rate over the budget's even rate,
    /// divided by 3 and capped at 1.
    pub fn features(
        &self,
        spent_usd: f64,
        recent_violation_share: f64,
        recent_cost_per_s: f64,
    ) -> [f32; META_FEATURES] {
        let mut f = [0.0f32; META_FEATURES];
        f[self.scenario.index()] = 1.0;
        let budget = self.budget_usd.max(1e-9);
        f[4] = ((budget - spent_usd.max(0.0)) / budget).clamp(-1.0, 1.0) as f32;
        f[5] = recent_violation_share.clamp(0.0, 1.0) as f32;
        let even_rate = budget / self.horizon_s.max(1.0);
        f[6] = (recent_cost_per_s.max(0.0) / even_rate / 3.0).min(1.0) as f32;
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_weights_keep_each_scenario_in_its_band_and_its_own_weights_untouched() {
        for s in Scenario::ALL {
            let [a, b, _] = s.weights();
            let (x, y) = s.bounded_weights(a, b);
            assert!((x - a).abs() < 1e-12 && (y - b).abs() < 1e-12, "{s:?} moved its own weights");
            let (low, high) = s.latency_share_band();
            for (a, b) in [(1.0, 0.0), (0.0, 1.0), (0.5, 0.5), (0.9, 0.3), (0.01, 0.02)] {
                let (x, y) = s.bounded_weights(a, b);
                let share = y / (x + y);
                assert!(share >= low - 1e-12 && share <= high + 1e-12, "{s:?} ({a}, {b}) -> {share}");
                assert!((x + y - (a + b)).abs() < 1e-12);
            }
            assert_eq!(s.bounded_weights(f64::NAN, 0.5), (a, b));
            assert_eq!(s.bounded_weights(0.0, 0.0), (a, b));
            assert_eq!(s.bounded_weights(-1.0, 0.5), (a, b));
        }
        // Healthcare asked for the cheapest weights stays the most cautious of the four.
        let (x, y) = Scenario::HealthcareCritical.bounded_weights(1.0, 0.0);
        assert_eq!((x, y), (0.25, 0.75));
        let (x, y) = Scenario::SmartCityBudget.bounded_weights(0.0, 1.0);
        assert_eq!((x, y), (0.75, 0.25));
    }

    #[test]
    fn scenario_names_round_trip_and_features_are_bounded() {
        for s in Scenario::ALL {
            assert_eq!(Scenario::from_name(s.name()), Some(s));
        }
        let ctx = MetaContext { scenario: Scenario::SmartCityBudget, budget_usd: 10.0, horizon_s: 3_600.0 };
        let f = ctx.features(2.5, 0.1, 0.01);
        assert_eq!(&f[..4], &[0.0, 0.0, 1.0, 0.0]);
        assert!((f[4] - 0.75).abs() < 1e-6);
        assert!(ctx.features(50.0, 2.0, 1e9).iter().all(|v| (-1.0..=1.0).contains(v)));
    }
}
