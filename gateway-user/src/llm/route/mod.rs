//! Steering LLM requests: virtual models (agentgateway's `llm.virtualModels`: weighted,
//! failover and conditional routing over `llm.models`), retries (`policies.retry`) and passive
//! health with ejection (`health`, see `health.rs`).
//!
//! The proxy asks `VirtualModel::plan` for the order in which one request's attempts use the
//! targets, then `Attempts` decides, after each attempt, whether another one is made:
//!
//! ```text
//! plan        weighted:    one target drawn by weight among the non-ejected, the others after
//!   │         failover:    non-ejected first, then by priority, score (degraded last), latency
//!   │         conditional: the first target whose `when` holds (the last one otherwise)
//! attempt n   the proxy sends to plan[n % len]; a stream only before its first byte
//!   │
//! next?       refused or broken connection, or timeout; or a status in `retry.codes` / `condition`;
//!             without a retry policy, a virtual model moves on after a 5xx or 429
//! ```
//!
//! Nothing here imports `proxy`; the proxy calls in.

pub mod config;
pub mod health;

use std::time::Duration;

use rand::Rng;

use crate::cel::{Executor, Expression};
use health::Standing;

/// A model of `llm.models` a virtual model routes to: the name it is addressed by (sent as the
/// request's model) and the entry that name selects.
#[derive(Clone, Debug)]
pub struct Target {
    pub model: String,
    pub entry: usize,
}

#[derive(Debug)]
pub enum Routing {
    Weighted(Vec<(Target, u32)>),
    /// Sorted by ascending priority.
    Failover(Vec<(u32, Target)>),
    /// In order; the last one has no condition.
    Conditional(Vec<(Option<Expression>, Target)>),
}

/// `llm.virtualModels[]` (compiled).
#[derive(Debug)]
pub struct VirtualModel {
    pub name: String,
    pub routing: Routing,
    /// What the conditions read of the request record (besides `llmRequest`).
    pub refs: crate::cel::Refs,
}

impl VirtualModel {
    pub fn kind(&self) -> &'static str {
        match self.routing {
            Routing::Weighted(_) => "weighted",
            Routing::Failover(_) => "failover",
            Routing::Conditional(_) => "conditional",
        }
    }

    /// Whether a failed attempt may move to another target without a retry policy.
    pub fn fails_over(&self) -> bool {
        !matches!(self.routing, Routing::Conditional(_))
    }

    /// The targets in the order attempts use them. `standing` reads a model entry's health;
    /// `cel` evaluates conditions (with `llmRequest` set).
    pub fn plan(
        &self,
        standing: impl Fn(usize) -> Standing,
        cel: impl FnOnce() -> Executor,
    ) -> Vec<&Target> {
        match &self.routing {
            Routing::Weighted(ts) => weighted(ts, &standing, &mut rand::rng()),
            Routing::Failover(ts) => failover(ts, &standing),
            Routing::Conditional(ts) => {
                let ex = cel();
                let t = ts
                    .iter()
                    .find(|(when, _)| when.as_ref().is_none_or(|w| ex.eval_bool(w)))
                    .or(ts.last())
                    .map(|(_, t)| t);
                t.into_iter().collect()
            }
        }
    }
}

/// One target drawn by weight among the non-ejected (among all when every one is ejected: a
/// probe is better than no answer), then the rest by weight.
fn weighted<'a>(
    ts: &'a [(Target, u32)],
    standing: &impl Fn(usize) -> Standing,
    rng: &mut impl Rng,
) -> Vec<&'a Target> {
    let ejected: Vec<bool> = ts.iter().map(|(t, _)| standing(t.entry).ejected).collect();
    let pool_all = ejected.iter().all(|e| *e);
    let eligible = |i: usize| (pool_all || !ejected[i]) && ts[i].1 > 0;
    let total: u64 = (0..ts.len())
        .filter(|&i| eligible(i))
        .map(|i| u64::from(ts[i].1))
        .sum();
    let mut first = None;
    if total > 0 {
        let mut pick = rng.random_range(0..total);
        for i in (0..ts.len()).filter(|&i| eligible(i)) {
            let w = u64::from(ts[i].1);
            if pick < w {
                first = Some(i);
                break;
            }
            pick -= w;
        }
    }
    let mut rest: Vec<usize> = (0..ts.len()).filter(|&i| Some(i) != first).collect();
    rest.sort_by_key(|&i| (ejected[i], std::cmp::Reverse(ts[i].1)));
    first.into_iter().chain(rest).map(|i| &ts[i].0).collect()
}

/// Non-ejected before ejected; then by priority; within a priority, healthy before degraded,
/// then the lower average latency (ties keep config order).
fn failover<'a>(ts: &'a [(u32, Target)], standing: &impl Fn(usize) -> Standing) -> Vec<&'a Target> {
    let st: Vec<Standing> = ts.iter().map(|(_, t)| standing(t.entry)).collect();
    let degraded = |i: usize| st[i].score < health::DEGRADED;
    // A priority whose every non-ejected target is degraded yields to the next one.
    let yields = |p: u32| {
        (0..ts.len())
            .filter(|&i| ts[i].0 == p && !st[i].ejected)
            .all(degraded)
    };
    let mut idx: Vec<usize> = (0..ts.len()).collect();
    idx.sort_by_key(|&i| {
        (
            st[i].ejected,
            yields(ts[i].0),
            ts[i].0,
            degraded(i),
            (st[i].latency_ms * 1000.0) as u64,
            i,
        )
    });
    idx.into_iter().map(|i| &ts[i].1).collect()
}

/// `policies.retry` (compiled).
#[derive(Debug)]
pub struct RetryPolicy {
    /// Total attempts, the first included.
    pub attempts: u8,
    pub backoff: Option<Duration>,
    pub codes: Vec<u16>,
    pub precondition: Option<Expression>,
    pub condition: Option<Expression>,
}

/// Why an attempt was abandoned for another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abandon {
    Status(u16),
    Unreachable,
    Timeout,
    /// The connection failed after the request went out, before a response head came back
    /// (reset, closed early, malformed head).
    Broken,
}

impl Abandon {
    pub fn reason(&self) -> String {
        match self {
            Abandon::Status(s) => format!("status {s}"),
            Abandon::Unreachable => "connection failed".into(),
            Abandon::Timeout => "timeout".into(),
            Abandon::Broken => "connection error".into(),
        }
    }
}

/// The attempt budget of one request.
#[derive(Debug)]
pub struct Attempts<'a> {
    retry: Option<&'a RetryPolicy>,
    /// Whether a virtual model may move to its next target without a retry policy.
    fail_over: bool,
    /// How many targets the plan has.
    targets: usize,
    /// Attempts allowed in all.
    pub budget: usize,
}

impl<'a> Attempts<'a> {
    /// `allowed`: the retry policy's precondition held (or there is none).
    pub fn new(
        retry: Option<&'a RetryPolicy>,
        allowed: bool,
        fail_over: bool,
        targets: usize,
    ) -> Self {
        let retry = retry.filter(|_| allowed);
        let by_retry = retry.map_or(1, |r| usize::from(r.attempts));
        let by_targets = if fail_over { targets.max(1) } else { 1 };
        Attempts {
            retry,
            fail_over,
            targets: targets.max(1),
            budget: by_retry.max(by_targets),
        }
    }

    /// The plan index attempt `n` (from 0) uses.
    pub fn target_of(&self, n: usize) -> usize {
        n % self.targets
    }

    /// Whether an attempt that ended with `status` is abandoned for another (if the budget
    /// allows). `condition` evaluates the retry policy's `condition` on this response.
    pub fn retry_status(&self, status: u16, condition: impl FnOnce(&Expression) -> bool) -> bool {
        match self.retry {
            Some(r) => r.codes.contains(&status) || r.condition.as_ref().is_some_and(condition),
            None => self.fail_over && (status == 429 || status >= 500),
        }
    }

    /// The pause before attempt `n` (n ≥ 1).
    pub fn backoff(&self) -> Option<Duration> {
        self.retry.and_then(|r| r.backoff)
    }
}

#[cfg(test)]
mod tests;
