use std::time::Duration;

use rand::SeedableRng;
use serde_json::json;

use super::config::{self, RawHealth, RawRetry, RawVirtualModel};
use super::health::Standing;
use super::*;
use crate::cel::Executor;

const MODELS: &[&str] = &["a", "b", "c", "openai/*"];

fn resolve(name: &str) -> Option<usize> {
    MODELS.iter().position(|m| match m.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => *m == name,
    })
}

fn vm(yaml: &str) -> Result<VirtualModel, (String, String)> {
    let raw: RawVirtualModel = yaml_serde::from_str(yaml).expect("YAML");
    config::virtual_model(&raw, "llm.virtualModels[0]", resolve)
}

fn fine(_: usize) -> Standing {
    Standing {
        ejected: false,
        score: 1.0,
        latency_ms: 0.0,
    }
}

fn names(plan: &[&Target]) -> Vec<String> {
    plan.iter().map(|t| t.model.clone()).collect()
}

#[test]
fn weighted_draws_in_proportion_and_skips_the_ejected() {
    let v = vm("name: w\nrouting: {weighted: {targets: [{model: a, weight: 3}, {model: b}]}}")
        .expect("valid");
    let Routing::Weighted(ts) = &v.routing else {
        panic!("weighted")
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut first_a = 0;
    for _ in 0..4000 {
        let plan = weighted(ts, &fine, &mut rng);
        assert_eq!(plan.len(), 2, "the other target follows as a fallback");
        if plan[0].model == "a" {
            first_a += 1;
        }
    }
    // 3:1 → 3,000 of 4,000; binomial σ ≈ 27.
    assert!((2850..=3150).contains(&first_a), "a first {first_a} times");
    let a_ejected = |e: usize| Standing {
        ejected: e == 0,
        ..fine(e)
    };
    for _ in 0..50 {
        assert_eq!(names(&weighted(ts, &a_ejected, &mut rng)), ["b", "a"]);
    }
}

#[test]
fn failover_orders_by_ejection_priority_health_and_latency() {
    let v = vm("name: f\nrouting: {failover: {targets: [{model: c, priority: 2}, {model: a, priority: 1}, {model: b, priority: 1}]}}")
        .expect("valid");
    let cel = Executor::empty;
    assert_eq!(names(&v.plan(fine, cel)), ["a", "b", "c"]);
    // Within a priority the faster wins.
    let slow_a = |e: usize| Standing {
        latency_ms: if e == 0 { 900.0 } else { 100.0 },
        ..fine(e)
    };
    assert_eq!(names(&v.plan(slow_a, cel)), ["b", "a", "c"]);
    // Degraded goes after healthy in its priority; a priority all degraded yields.
    let degraded = |deg: &'static [usize]| {
        move |e: usize| Standing {
            score: if deg.contains(&e) { 0.2 } else { 1.0 },
            ..fine(e)
        }
    };
    assert_eq!(names(&v.plan(degraded(&[0]), cel)), ["b", "a", "c"]);
    assert_eq!(names(&v.plan(degraded(&[0, 1]), cel)), ["c", "a", "b"]);
    // Ejected go last, whatever their priority.
    let ejected = |e: usize| Standing {
        ejected: e == 0 || e == 1,
        ..fine(e)
    };
    assert_eq!(names(&v.plan(ejected, cel)), ["c", "a", "b"]);
}

#[test]
fn conditional_reads_llm_request_and_falls_back() {
    // agentgateway's examples/llm-cost-routing condition, verbatim.
    let v = vm(r#"
name: smart-model
routing:
  conditional:
    targets:
    - when: 'default(llmRequest.metadata.cost_tier, "") == "economy" || (default(llmRequest.metadata.cost_tier, "") == "" && default(llmRequest.max_tokens, 1024) <= 1024)'
      model: a
    - when: 'default(llmRequest.metadata.cost_tier, "") == "balanced" || (default(llmRequest.metadata.cost_tier, "") == "" && default(llmRequest.max_tokens, 1024) <= 4096)'
      model: b
    - model: c
"#)
    .expect("valid");
    let pick = |body: serde_json::Value| {
        let plan = v.plan(fine, || {
            let mut ex = Executor::empty();
            ex.set_json("llmRequest", &body);
            ex
        });
        names(&plan)
    };
    assert_eq!(pick(json!({"model": "smart-model"})), ["a"]);
    assert_eq!(pick(json!({"max_tokens": 2000})), ["b"]);
    assert_eq!(pick(json!({"max_tokens": 9000})), ["c"]);
    assert_eq!(
        pick(json!({"metadata": {"cost_tier": "economy"}, "max_tokens": 9000})),
        ["a"]
    );
    assert_eq!(pick(json!({"metadata": {"cost_tier": "premium"}})), ["c"]);
}

#[test]
fn bad_virtual_models_name_the_path() {
    let err = |yaml: &str| vm(yaml).expect_err("invalid");
    let (p, m) = err("name: x\nrouting: {weighted: {targets: [{model: nope}]}}");
    assert_eq!(p, "llm.virtualModels[0].routing.weighted.targets[0].model");
    assert!(m.contains("\"nope\""), "{m}");
    let (p, m) = err(
        "name: x\nrouting: {weighted: {targets: [{model: a, weight: 0}, {model: b, weight: 0}]}}",
    );
    assert_eq!(p, "llm.virtualModels[0].routing.weighted.targets");
    assert!(m.contains("add up to 0"), "{m}");
    let (p, _) = err(
        "name: x\nrouting: {conditional: {targets: [{when: 'true', model: a}, {when: 'false', model: b}]}}",
    );
    assert_eq!(
        p,
        "llm.virtualModels[0].routing.conditional.targets[1].when"
    );
    let (p, _) = err("name: x\nrouting: {conditional: {targets: [{model: a}, {model: b}]}}");
    assert_eq!(
        p,
        "llm.virtualModels[0].routing.conditional.targets[0].when"
    );
    let (p, _) = err("name: x\nrouting: {}");
    assert_eq!(p, "llm.virtualModels[0].routing");
    let (p, _) = err(
        "name: x\nrouting: {failover: {targets: [{model: a, priority: 1}]}, weighted: {targets: [{model: a}]}}",
    );
    assert_eq!(p, "llm.virtualModels[0].routing");
    // A wildcard entry resolves a concrete name.
    let v = vm("name: x\nrouting: {failover: {targets: [{model: openai/gpt-4o, priority: 0}]}}")
        .expect("wildcard target");
    assert_eq!(v.plan(fine, Executor::empty)[0].entry, 3);
}

#[test]
fn retry_and_health_config() {
    let r = |yaml: &str| {
        let raw: RawRetry = yaml_serde::from_str(yaml).expect("YAML");
        config::retry(&raw, "binds[0].listeners[0].routes[0].policies.retry")
    };
    let ok = r("{attempts: 3, backoff: 100ms, codes: [429, 503]}").expect("valid");
    assert_eq!(ok.attempts, 3);
    assert_eq!(ok.backoff, Some(Duration::from_millis(100)));
    let (p, m) = r("{attempts: 0, codes: [500]}").expect_err("0 attempts");
    assert!(
        p.ends_with("retry.attempts") && m.starts_with("0:"),
        "{p} {m}"
    );
    let (p, _) = r("{attempts: 2, codes: [500, 70000]}").expect_err("bad code");
    assert!(p.ends_with("retry.codes[1]"), "{p}");
    let (p, _) = r("{attempts: 2, codes: [500], backoff: soon}").expect_err("bad backoff");
    assert!(p.ends_with("retry.backoff"), "{p}");

    let h = |yaml: &str| {
        let raw: RawHealth = yaml_serde::from_str(yaml).expect("YAML");
        config::health(Some(&raw), "llm.models[0].health")
    };
    let p = h("{unhealthyExpression: 'response.code >= 500', eviction: {duration: 10s, healthThreshold: 0.4}}")
        .expect("valid");
    assert_eq!(
        p.eviction.consecutive_failures, None,
        "a threshold replaces the default count"
    );
    assert_eq!(p.eviction.duration, Duration::from_secs(10));
    let (path, _) = h("{eviction: {restoreHealth: 1.5}}").expect_err("score");
    assert_eq!(path, "llm.models[0].health.eviction.restoreHealth");
    let (path, _) = h("{eviction: {consecutiveFailures: 0}}").expect_err("count");
    assert_eq!(path, "llm.models[0].health.eviction.consecutiveFailures");
    let (path, _) = h("{unhealthyExpression: 'response.code >'}").expect_err("CEL");
    assert_eq!(path, "llm.models[0].health.unhealthyExpression");
}

#[test]
fn attempt_budget() {
    let retry = RetryPolicy {
        attempts: 3,
        backoff: None,
        codes: vec![503],
        precondition: None,
        condition: None,
    };
    // A retry policy: its codes only, its count.
    let a = Attempts::new(Some(&retry), true, false, 1);
    assert_eq!(a.budget, 3);
    assert!(a.retry_status(503, |_| false) && !a.retry_status(500, |_| false));
    assert_eq!(a.target_of(2), 0);
    // Precondition false: the first attempt only.
    assert_eq!(Attempts::new(Some(&retry), false, false, 1).budget, 1);
    // A failover virtual model without a policy: each target once, on 5xx and 429.
    let f = Attempts::new(None, true, true, 2);
    assert_eq!(f.budget, 2);
    assert!(f.retry_status(429, |_| false) && f.retry_status(502, |_| false));
    assert!(!f.retry_status(400, |_| false));
    assert_eq!(f.target_of(1), 1);
    // A plain model without a policy: one attempt.
    assert_eq!(Attempts::new(None, true, false, 1).budget, 1);
}
