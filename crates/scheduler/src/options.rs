//! Scheduler tunables.

use std::time::Duration;

/// How hosts that can all take an instance are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Least loaded first: instances spread over the fleet (Cloudpods'
    /// default behaviour).
    #[default]
    Spread,
    /// Most loaded host that still fits first: hosts fill up one after the
    /// other and whole hosts stay free.
    Pack,
}

impl Policy {
    pub fn parse(s: &str) -> Result<Policy, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "spread" | "balance" => Ok(Policy::Spread),
            "pack" | "binpack" | "bin-pack" => Ok(Policy::Pack),
            other => Err(format!("policy must be spread or pack, got {other:?}")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Spread => "spread",
            Policy::Pack => "pack",
        }
    }
}

/// Weights of the normal (non-tag) priorities; each priority scores 0–1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weights {
    pub load: i64,
    pub capacity: i64,
    pub creating: i64,
}

impl Weights {
    /// Spread penalises hosts with creations in flight; pack must not, or a
    /// batch would never fill one host.
    pub fn default_for(policy: Policy) -> Weights {
        match policy {
            Policy::Spread => Weights {
                load: 2,
                capacity: 1,
                creating: 1,
            },
            Policy::Pack => Weights {
                load: 2,
                capacity: 1,
                creating: 0,
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    pub policy: Policy,
    /// `None`: the policy's defaults.
    pub weights: Option<Weights>,
    /// Full rebuild of the cache from the database (Cloudpods
    /// `HostCandidateCachePeriod`).
    pub refresh_interval: Duration,
    /// A placement not confirmed by `completed` is released after this.
    pub reservation_ttl: Duration,
    /// A confirmed placement whose guest is still being created (disks and
    /// NICs not written yet) is kept at most this long.
    pub committed_ttl: Duration,
    /// A confirmed placement is replaced by the database's numbers only on
    /// a reload that started this long after the confirmation, so a caller
    /// that confirms just before its commit lands is still covered.
    pub commit_grace: Duration,
    /// Released addresses are not handed out again for this long (the
    /// region's `ip_reuse_after`); they do not count as free.
    pub ip_reuse_after: Duration,
    /// Sessions kept for `/scheduler/history-*`.
    pub history_size: usize,
    /// Per-host reasons kept per history entry.
    pub history_hosts: usize,
    /// Largest `count` of one request.
    pub max_count: i64,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            policy: Policy::Spread,
            weights: None,
            refresh_interval: Duration::from_secs(30),
            reservation_ttl: Duration::from_secs(60),
            committed_ttl: Duration::from_secs(600),
            commit_grace: Duration::from_secs(2),
            ip_reuse_after: Duration::from_secs(30),
            history_size: 200,
            history_hosts: 50,
            max_count: 10_000,
        }
    }
}

impl SchedulerOptions {
    pub fn weights(&self) -> Weights {
        self.weights
            .unwrap_or_else(|| Weights::default_for(self.policy))
    }
}
