//! Config of routing: agentgateway's `LocalLLMVirtualModel`, `LocalHealthPolicy` and
//! `RetryPolicy`, as written in YAML, and their compilation. Errors name the YAML path and the
//! value.

use std::time::Duration;

use serde::Deserialize;

use super::health::{Eviction, HealthPolicy};
use super::{RetryPolicy, Routing, Target, VirtualModel};
use crate::cel::Expression;

/// A load error: the YAML path and what is wrong there.
pub type ConfigError = (String, String);

/// `llm.virtualModels[]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawVirtualModel {
    pub name: String,
    pub routing: RawRouting,
}

/// `routing`: exactly one of the three.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawRouting {
    pub weighted: Option<RawTargets<RawWeighted>>,
    pub failover: Option<RawTargets<RawFailover>>,
    pub conditional: Option<RawTargets<RawConditional>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTargets<T> {
    pub targets: Vec<T>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeighted {
    pub model: String,
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFailover {
    pub model: String,
    pub priority: u32,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConditional {
    pub when: Option<String>,
    pub model: String,
}

/// `health` (agentgateway's `LocalHealthPolicy`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawHealth {
    pub unhealthy_expression: Option<String>,
    pub eviction: Option<RawEviction>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawEviction {
    pub duration: Option<String>,
    pub restore_health: Option<f64>,
    pub consecutive_failures: Option<i64>,
    pub health_threshold: Option<f64>,
}

/// `policies.retry` (agentgateway's `RetryPolicy`).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawRetry {
    #[serde(default = "one_u64")]
    pub attempts: u64,
    pub backoff: Option<String>,
    pub codes: Vec<u64>,
    pub precondition: Option<String>,
    pub condition: Option<String>,
}

fn one_u64() -> u64 {
    1
}

fn expression(src: &str, path: &str) -> Result<Expression, ConfigError> {
    Expression::compile(src).map_err(|e| (path.to_owned(), e.to_string()))
}

fn duration(s: &str, path: &str) -> Result<Duration, ConfigError> {
    crate::time::parse_duration(s).map_err(|e| (path.to_owned(), format!("{s:?}: {e}")))
}

/// Compiles `health` at `path`; `None` is the default policy.
pub fn health(raw: Option<&RawHealth>, path: &str) -> Result<HealthPolicy, ConfigError> {
    let Some(raw) = raw else {
        return Ok(HealthPolicy::default());
    };
    let unhealthy_expression = match &raw.unhealthy_expression {
        Some(src) => Some(expression(src, &format!("{path}.unhealthyExpression"))?),
        None => None,
    };
    let mut eviction = Eviction::default();
    if let Some(ev) = &raw.eviction {
        let p = format!("{path}.eviction");
        if let Some(d) = &ev.duration {
            eviction.duration = duration(d, &format!("{p}.duration"))?;
            if eviction.duration.is_zero() {
                return Err((
                    format!("{p}.duration"),
                    format!("{d:?}: must be above zero"),
                ));
            }
        }
        let score = |v: Option<f64>, key: &str| match v {
            Some(x) if !(0.0..=1.0).contains(&x) => Err((
                format!("{p}.{key}"),
                format!("{x}: a health score is between 0.0 and 1.0"),
            )),
            v => Ok(v),
        };
        eviction.restore_health = score(ev.restore_health, "restoreHealth")?;
        eviction.health_threshold = score(ev.health_threshold, "healthThreshold")?;
        // Setting either threshold replaces the default count, as in agentgateway.
        eviction.consecutive_failures = match ev.consecutive_failures {
            Some(n) if n < 1 || n > i64::from(u32::MAX) => {
                return Err((
                    format!("{p}.consecutiveFailures"),
                    format!("{n}: must be at least 1"),
                ));
            }
            Some(n) => Some(n as u32),
            None if ev.health_threshold.is_some() => None,
            None => eviction.consecutive_failures,
        };
    }
    Ok(HealthPolicy {
        unhealthy_expression,
        eviction,
    })
}

/// Compiles `policies.retry` at `path`.
pub fn retry(raw: &RawRetry, path: &str) -> Result<RetryPolicy, ConfigError> {
    if !(1..=255).contains(&raw.attempts) {
        return Err((
            format!("{path}.attempts"),
            format!(
                "{}: the total number of attempts (the first included) is 1 to 255",
                raw.attempts
            ),
        ));
    }
    let mut codes = Vec::with_capacity(raw.codes.len());
    for (i, &c) in raw.codes.iter().enumerate() {
        match u16::try_from(c).ok().filter(|c| (100..=599).contains(c)) {
            Some(c) => codes.push(c),
            None => {
                return Err((
                    format!("{path}.codes[{i}]"),
                    format!("{c}: not an HTTP status code"),
                ));
            }
        }
    }
    let backoff = match &raw.backoff {
        Some(b) => Some(duration(b, &format!("{path}.backoff"))?),
        None => None,
    };
    let precondition = match &raw.precondition {
        Some(src) => Some(expression(src, &format!("{path}.precondition"))?),
        None => None,
    };
    let condition = match &raw.condition {
        Some(src) => Some(expression(src, &format!("{path}.condition"))?),
        None => None,
    };
    Ok(RetryPolicy {
        attempts: raw.attempts as u8,
        backoff,
        codes,
        precondition,
        condition,
    })
}

/// Compiles `llm.virtualModels[i]`; `resolve` finds the model entry a target name selects
/// (the same matching as a client's model).
pub fn virtual_model(
    raw: &RawVirtualModel,
    path: &str,
    resolve: impl Fn(&str) -> Option<usize>,
) -> Result<VirtualModel, ConfigError> {
    if raw.name.is_empty() {
        return Err((format!("{path}.name"), "must not be empty".into()));
    }
    let r = &raw.routing;
    let p = format!("{path}.routing");
    let resolve = &resolve;
    let routing = match (&r.weighted, &r.failover, &r.conditional) {
        (Some(w), None, None) => weighted(&w.targets, &format!("{p}.weighted"), resolve)?,
        (None, Some(f), None) => failover(&f.targets, &format!("{p}.failover"), resolve)?,
        (None, None, Some(c)) => conditional(&c.targets, &format!("{p}.conditional"), resolve)?,
        _ => {
            return Err((
                p,
                "set exactly one of weighted, failover or conditional".into(),
            ));
        }
    };
    let refs = match &routing {
        Routing::Conditional(ts) => ts
            .iter()
            .filter_map(|(w, _)| w.as_ref())
            .fold(crate::cel::Refs::default(), |r, e| r.union(e.references())),
        _ => crate::cel::Refs::default(),
    };
    Ok(VirtualModel {
        name: raw.name.clone(),
        routing,
        refs,
    })
}

/// A target by name, at YAML path `at`.
fn target(
    model: &str,
    at: String,
    resolve: &impl Fn(&str) -> Option<usize>,
) -> Result<Target, ConfigError> {
    match resolve(model) {
        Some(entry) => Ok(Target {
            model: model.to_owned(),
            entry,
        }),
        None => Err((
            at,
            format!("{model:?} is not a model of llm.models (a virtual model routes to those)"),
        )),
    }
}

fn no_targets(p: &str) -> ConfigError {
    (format!("{p}.targets"), "has no targets".to_owned())
}

fn weighted(
    ts: &[RawWeighted],
    p: &str,
    resolve: &impl Fn(&str) -> Option<usize>,
) -> Result<Routing, ConfigError> {
    if ts.is_empty() {
        return Err(no_targets(p));
    }
    let mut out = Vec::new();
    for (i, t) in ts.iter().enumerate() {
        let at = format!("{p}.targets[{i}].model");
        out.push((target(&t.model, at, resolve)?, t.weight));
    }
    if out.iter().all(|(_, w)| *w == 0) {
        return Err((
            format!("{p}.targets"),
            "the weights add up to 0: no target could ever be chosen".into(),
        ));
    }
    Ok(Routing::Weighted(out))
}

fn failover(
    ts: &[RawFailover],
    p: &str,
    resolve: &impl Fn(&str) -> Option<usize>,
) -> Result<Routing, ConfigError> {
    if ts.is_empty() {
        return Err(no_targets(p));
    }
    let mut out: Vec<(u32, Target)> = Vec::new();
    for (i, t) in ts.iter().enumerate() {
        let at = format!("{p}.targets[{i}].model");
        out.push((t.priority, target(&t.model, at, resolve)?));
    }
    out.sort_by_key(|(prio, _)| *prio);
    Ok(Routing::Failover(out))
}

/// Every target but the last has a `when`; the last, the fallback, has none.
fn conditional(
    ts: &[RawConditional],
    p: &str,
    resolve: &impl Fn(&str) -> Option<usize>,
) -> Result<Routing, ConfigError> {
    if ts.is_empty() {
        return Err(no_targets(p));
    }
    let last = ts.len() - 1;
    let mut out = Vec::new();
    for (i, t) in ts.iter().enumerate() {
        let tp = format!("{p}.targets[{i}]");
        let when = match (&t.when, i == last) {
            (Some(src), false) => Some(expression(src, &format!("{tp}.when"))?),
            (Some(src), true) => {
                return Err((
                    format!("{tp}.when"),
                    format!(
                        "{src:?}: the last target is the fallback and has no `when` \
                         (a request no condition matched would have nowhere to go)"
                    ),
                ));
            }
            (None, false) => {
                return Err((
                    format!("{tp}.when"),
                    "missing: only the last target (the fallback) may omit `when`".into(),
                ));
            }
            (None, true) => None,
        };
        out.push((when, target(&t.model, format!("{tp}.model"), resolve)?));
    }
    Ok(Routing::Conditional(out))
}
