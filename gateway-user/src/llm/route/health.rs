//! Passive health of one model backend (agentgateway's `LocalHealthPolicy`): every answered or
//! failed attempt updates a health score and a consecutive-failure count; a backend that keeps
//! failing is ejected for a growing interval, then probed back by the next request that picks
//! it once the interval is over.
//!
//! ```text
//!   healthy ──unhealthy × consecutiveFailures, or score < healthThreshold──▶ ejected
//!      ▲                                                                      │ duration × n
//!      └────────────── probe succeeds ◀── eligible again (restoreHealth) ◀────┘ (n: times ejected)
//! ```
//!
//! A backend back from ejection is on probation: its score is set to `restoreHealth` (by default
//! `DEGRADED`, so failover tries it again), and the first outcome decides: a failure ejects it
//! again at once for a longer interval, a success ends the probation. A degraded backend that
//! has not failed for `RECOVER_AFTER` counts as `DEGRADED` again, so a priority that yielded is
//! probed back too.
//!
//! Unhealthy means the `unhealthyExpression` (CEL over `response.*`, `backend.*`, `llm.*`) is
//! true, or, without one: a 5xx, a 429, a refused connection or a timeout.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cel::Expression;

/// Eviction when no `eviction` block says otherwise (this gateway's default; agentgateway only
/// lowers the score): three consecutive unhealthy answers eject for 3 s, growing linearly with
/// each ejection in a row, at most `MAX_EJECTION`.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 3;
pub const DEFAULT_EJECTION: Duration = Duration::from_secs(3);
/// Upper bound of a growing ejection (this gateway's; agentgateway's has none).
pub const MAX_EJECTION: Duration = Duration::from_secs(300);
/// Weight of the newest outcome in the health score and of the newest latency in its average.
const SCORE_ALPHA: f64 = 0.3;
const LATENCY_ALPHA: f64 = 0.2;
/// Below this score a backend counts as degraded: failover prefers other targets of its
/// priority, and moves on when all are.
pub const DEGRADED: f64 = 0.5;
/// How long after its last failure a degraded backend is tried again.
pub const RECOVER_AFTER: Duration = Duration::from_secs(10);

/// `health` of a model (compiled).
#[derive(Debug, Default)]
pub struct HealthPolicy {
    pub unhealthy_expression: Option<Expression>,
    pub eviction: Eviction,
}

/// `health.eviction` (compiled, defaults applied).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Eviction {
    pub duration: Duration,
    pub restore_health: Option<f64>,
    pub consecutive_failures: Option<u32>,
    pub health_threshold: Option<f64>,
}

impl Default for Eviction {
    fn default() -> Self {
        Eviction {
            duration: DEFAULT_EJECTION,
            restore_health: None,
            consecutive_failures: Some(DEFAULT_CONSECUTIVE_FAILURES),
            health_threshold: None,
        }
    }
}

/// What one attempt's outcome did to the backend's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    Unhealthy,
    /// Unhealthy, and ejected for this long.
    Ejected(Duration),
}

/// A backend's health, shared by every request that routes to it (until the next reload).
#[derive(Debug, Default)]
pub struct Health {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    score: f64,
    consecutive: u32,
    ejected_until: Option<Instant>,
    times_ejected: u32,
    /// Back from ejection, until its next outcome.
    probation: bool,
    last_failure: Option<Instant>,
    /// Average time to response headers, in milliseconds; `None` before the first answer.
    latency_ms: Option<f64>,
}

impl Default for State {
    fn default() -> Self {
        State {
            score: 1.0,
            consecutive: 0,
            ejected_until: None,
            times_ejected: 0,
            probation: false,
            last_failure: None,
            latency_ms: None,
        }
    }
}

/// A backend's standing when attempts are ordered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Standing {
    pub ejected: bool,
    pub score: f64,
    pub latency_ms: f64,
}

// === impl Health ===

impl Health {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the numbers inconsistent in a way that
        // matters more than losing health tracking.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How the backend stands now (`policy` gives the score of a backend back from ejection).
    pub fn standing(&self, policy: &HealthPolicy, now: Instant) -> Standing {
        let mut s = self.lock();
        let ejected = match s.ejected_until {
            Some(t) if t > now => true,
            Some(_) => {
                // Back from ejection: eligible again; the next outcome is the probe.
                s.ejected_until = None;
                s.probation = true;
                s.score = policy.eviction.restore_health.unwrap_or(DEGRADED);
                // The quiet period that lifts a low score counts from the return.
                s.last_failure = Some(now);
                false
            }
            None => false,
        };
        if s.score < DEGRADED
            && s.last_failure
                .is_some_and(|t| now.saturating_duration_since(t) >= RECOVER_AFTER)
        {
            s.score = DEGRADED;
        }
        Standing {
            ejected,
            score: s.score,
            latency_ms: s.latency_ms.unwrap_or(0.0),
        }
    }

    /// Records one attempt's outcome.
    pub fn record(
        &self,
        policy: &HealthPolicy,
        unhealthy: bool,
        latency: Option<Duration>,
        now: Instant,
    ) -> Verdict {
        let mut s = self.lock();
        if let Some(l) = latency {
            let ms = l.as_secs_f64() * 1000.0;
            s.latency_ms = Some(match s.latency_ms {
                Some(avg) => avg + LATENCY_ALPHA * (ms - avg),
                None => ms,
            });
        }
        let before = s.score;
        s.score = before + SCORE_ALPHA * (if unhealthy { 0.0 } else { 1.0 } - before);
        let probation = std::mem::take(&mut s.probation);
        if !unhealthy {
            s.consecutive = 0;
            s.times_ejected = 0;
            return Verdict::Healthy;
        }
        s.consecutive += 1;
        s.last_failure = Some(now);
        let ev = &policy.eviction;
        let by_count = ev
            .consecutive_failures
            .is_some_and(|n| n > 0 && s.consecutive >= n);
        let by_score = ev.health_threshold.is_some_and(|t| before < t);
        let evict =
            if probation || (ev.consecutive_failures.is_none() && ev.health_threshold.is_none()) {
                true
            } else {
                by_count || by_score
            };
        if !evict {
            return Verdict::Unhealthy;
        }
        s.times_ejected = s.times_ejected.saturating_add(1);
        let d = ev
            .duration
            .saturating_mul(s.times_ejected)
            .min(MAX_EJECTION.max(ev.duration));
        s.ejected_until = Some(now + d);
        s.consecutive = 0;
        Verdict::Ejected(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(ev: Eviction) -> HealthPolicy {
        HealthPolicy {
            unhealthy_expression: None,
            eviction: ev,
        }
    }

    #[test]
    fn ejects_after_consecutive_failures_for_a_growing_interval() {
        let h = Health::default();
        let p = HealthPolicy::default();
        let t0 = Instant::now();
        assert_eq!(h.record(&p, true, None, t0), Verdict::Unhealthy);
        assert_eq!(h.record(&p, true, None, t0), Verdict::Unhealthy);
        assert_eq!(
            h.record(&p, true, None, t0),
            Verdict::Ejected(DEFAULT_EJECTION)
        );
        assert!(h.standing(&p, t0 + Duration::from_secs(1)).ejected);
        // Back after the interval, on probation: the probe fails, it is out again at once for
        // twice as long.
        let t1 = t0 + DEFAULT_EJECTION + Duration::from_millis(1);
        let back = h.standing(&p, t1);
        assert!(!back.ejected && back.score == DEGRADED, "{back:?}");
        assert_eq!(
            h.record(&p, true, None, t1),
            Verdict::Ejected(2 * DEFAULT_EJECTION)
        );
        // A success resets the count and the growth.
        let t2 = t1 + 2 * DEFAULT_EJECTION + Duration::from_millis(1);
        assert!(!h.standing(&p, t2).ejected);
        assert_eq!(h.record(&p, false, None, t2), Verdict::Healthy);
        h.record(&p, true, None, t2);
        h.record(&p, true, None, t2);
        assert_eq!(
            h.record(&p, true, None, t2),
            Verdict::Ejected(DEFAULT_EJECTION)
        );
    }

    #[test]
    fn without_thresholds_one_failure_ejects_and_growth_is_capped() {
        let h = Health::default();
        let p = policy(Eviction {
            duration: Duration::from_secs(100),
            restore_health: Some(0.2),
            consecutive_failures: None,
            health_threshold: None,
        });
        let mut t = Instant::now();
        let mut last = Duration::ZERO;
        for _ in 0..5 {
            match h.record(&p, true, None, t) {
                Verdict::Ejected(d) => last = d,
                v => panic!("expected an ejection, got {v:?}"),
            }
            t += last + Duration::from_millis(1);
            let s = h.standing(&p, t);
            assert!(!s.ejected);
            assert!((s.score - 0.2).abs() < 1e-9, "restoreHealth applied");
        }
        assert_eq!(last, MAX_EJECTION);
    }

    #[test]
    fn health_threshold_evicts_only_below_it() {
        let h = Health::default();
        let p = policy(Eviction {
            duration: Duration::from_secs(1),
            restore_health: None,
            consecutive_failures: None,
            health_threshold: Some(0.5),
        });
        let t = Instant::now();
        // 1.0 → 0.7 → 0.49: the third failure sees 0.49 < 0.5.
        assert_eq!(h.record(&p, true, None, t), Verdict::Unhealthy);
        assert_eq!(h.record(&p, true, None, t), Verdict::Unhealthy);
        assert!(matches!(h.record(&p, true, None, t), Verdict::Ejected(_)));
    }

    #[test]
    fn a_degraded_backend_is_tried_again_after_a_quiet_while() {
        let h = Health::default();
        let p = policy(Eviction {
            duration: Duration::from_secs(1),
            restore_health: None,
            consecutive_failures: Some(100),
            health_threshold: None,
        });
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(h.record(&p, true, None, t), Verdict::Unhealthy);
        }
        assert!(h.standing(&p, t).score < DEGRADED);
        assert!(h.standing(&p, t + RECOVER_AFTER / 2).score < DEGRADED);
        assert_eq!(h.standing(&p, t + RECOVER_AFTER).score, DEGRADED);
    }

    #[test]
    fn latency_is_averaged() {
        let h = Health::default();
        let p = HealthPolicy::default();
        let t = Instant::now();
        h.record(&p, false, Some(Duration::from_millis(100)), t);
        assert_eq!(h.standing(&p, t).latency_ms, 100.0);
        h.record(&p, false, Some(Duration::from_millis(200)), t);
        assert!((h.standing(&p, t).latency_ms - 120.0).abs() < 1e-9);
    }
}
