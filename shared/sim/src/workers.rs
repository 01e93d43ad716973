//! EMR Serverless workers as the arena bills them: requested workers become ready after a cold start,
//! run until released, and are billed per second from ready to release with a one-minute minimum.

use cost_model::{PriceBook, WorkerSpec};

#[derive(Debug, Clone, Copy, PartialEq)]
struct Group {
    count: u32,
    memory_gb: u32,
    /// Second at which the group becomes ready.
    ready_at: f64,
}

/// The workers of one application.
#[derive(Debug, Clone, Default)]
pub struct WorkerPool {
    groups: Vec<Group>,
}

/// What a reconciliation released, for billing the one-minute minimum.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Released {
    /// Dollars owed for released workers that ran less than the minimum.
    pub minimum_charge: f64,
}

impl WorkerPool {
    /// Workers ready at `t`.
    pub fn running(&self, t: f64) -> u32 {
        self.groups.iter().filter(|g| g.ready_at <= t).map(|g| g.count).sum()
    }

    /// Workers requested but not yet ready at `t`.
    pub fn pending(&self, t: f64) -> u32 {
        self.groups.iter().filter(|g| g.ready_at > t).map(|g| g.count).sum()
    }

    /// Sum over running workers of their memory, GB.
    pub fn running_memory_gb(&self, t: f64) -> f64 {
        self.groups.iter().filter(|g| g.ready_at <= t).map(|g| g.count as f64 * g.memory_gb as f64).sum()
    }

    /// Dollars per second for the running workers.
    pub fn rate_per_second(&self, t: f64, vcpu: f64, disk_gb: f64, prices: &PriceBook) -> f64 {
        self.groups
            .iter()
            .filter(|g| g.ready_at <= t)
            .map(|g| {
                g.count as f64
                    * prices.emr_rate_per_second(&WorkerSpec { vcpu, memory_gb: g.memory_gb as f64, disk_gb })
            })
            .sum()
    }

    /// Start `count` workers at once (pre-initialised capacity at the start of an episode).
    pub fn start_ready(&mut self, count: u32, memory_gb: u32, t: f64) {
        if count > 0 {
            // Warm from before the episode: they have already served their minimum.
            self.groups.push(Group { count, memory_gb, ready_at: t - 3_600.0 });
        }
    }

    /// Move towards `target` workers of `memory_gb` at time `t`. New workers become ready after
    /// `cold_start` seconds. Workers of another size are replaced make-before-break: they keep
    /// serving until enough new-size workers are ready. Pending workers are cancelled before running
    /// ones are released, newest first.
    pub fn reconcile(
        &mut self,
        target: u32,
        memory_gb: u32,
        t: f64,
        cold_start: f64,
        bill: impl Fn(u32, f64) -> f64,
    ) -> Released {
        let mut released = Released::default();
        // Cancel pending workers of another size: they have not started billing.
        self.groups.retain(|g| g.ready_at <= t || g.memory_gb == memory_gb);
        let ready_right: u32 =
            self.groups.iter().filter(|g| g.memory_gb == memory_gb && g.ready_at <= t).map(|g| g.count).sum();
        let pending_right: u32 =
            self.groups.iter().filter(|g| g.memory_gb == memory_gb && g.ready_at > t).map(|g| g.count).sum();
        let have = ready_right + pending_right;
        if have < target {
            self.groups.push(Group { count: target - have, memory_gb, ready_at: t + cold_start.max(0.0) });
        } else if have > target {
            let mut excess = have - target;
            // Newest first: pending groups sit at the end, so walk backwards.
            for i in (0..self.groups.len()).rev() {
                if excess == 0 {
                    break;
                }
                let g = self.groups[i];
                if g.memory_gb != memory_gb {
                    continue;
                }
                let take = excess.min(g.count);
                if g.ready_at <= t {
                    released.minimum_charge += bill(memory_gb, t - g.ready_at) * take as f64;
                }
                self.groups[i].count -= take;
                excess -= take;
            }
        }
        // Release workers of another size once the right-sized ones can carry the target.
        let mut wrong_keep = target.saturating_sub(ready_right.min(target));
        for g in self.groups.iter_mut().filter(|g| g.memory_gb != memory_gb) {
            let keep = wrong_keep.min(g.count);
            let drop = g.count - keep;
            if drop > 0 {
                released.minimum_charge += bill(g.memory_gb, t - g.ready_at) * drop as f64;
            }
            g.count = keep;
            wrong_keep -= keep;
        }
        self.groups.retain(|g| g.count > 0);
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Owed for a worker released after running `age` seconds with a 60 s minimum, at $1/s.
    fn owed(_mem: u32, age: f64) -> f64 {
        (60.0 - age.max(0.0)).max(0.0)
    }

    #[test]
    fn new_workers_wait_for_the_cold_start() {
        let mut p = WorkerPool::default();
        p.reconcile(4, 16, 0.0, 50.0, owed);
        assert_eq!((p.running(49.0), p.pending(49.0)), (0, 4));
        assert_eq!((p.running(50.0), p.pending(50.0)), (4, 0));
    }

    #[test]
    fn scale_down_cancels_pending_first_and_bills_the_minimum() {
        let mut p = WorkerPool::default();
        p.reconcile(2, 16, 0.0, 10.0, owed);
        p.reconcile(5, 16, 20.0, 10.0, owed); // 2 ready, 3 pending
        let r = p.reconcile(1, 16, 25.0, 10.0, owed);
        assert_eq!((p.running(25.0), p.pending(25.0)), (1, 0));
        // One ready worker released after 15 s owes 45 s more; cancelled pending owe nothing.
        assert_eq!(r.minimum_charge, 45.0);
    }

    #[test]
    fn memory_change_is_make_before_break() {
        let mut p = WorkerPool::default();
        p.start_ready(3, 16, 0.0);
        p.reconcile(3, 24, 0.0, 30.0, owed);
        // Old workers keep serving while the new ones boot.
        assert_eq!(p.running(10.0), 3);
        assert_eq!(p.pending(10.0), 3);
        p.reconcile(3, 24, 30.0, 30.0, owed);
        assert_eq!(p.running(30.0), 3);
        assert_eq!(p.running_memory_gb(30.0), 72.0);
    }
}
