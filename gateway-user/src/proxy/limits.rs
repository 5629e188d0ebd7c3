//! The proxy's limit phases: local and global rate limits, then budgets.
//!
//! The route phase (before the body is read) charges request limits whose descriptors do not
//! read `llm.*`; the LLM phase (the request parsed, the caller's model checked) charges the
//! rest: token limits with an estimate of the prompt, model-keyed request limits, and checks
//! budgets. Token charges and budgets are settled in `body::finisher` with the real usage.

use crate::ctx::RequestLog;
use crate::limit::global::Refused;
use crate::limit::{Exceeded, Kind, Phase};

use super::Proxy;
use super::error::ProxyError;
use crate::config::snapshot::Policies;

/// What any limit policy's CEL reads.
pub(crate) fn references(policies: &Policies) -> crate::cel::Refs {
    let mut r = crate::cel::Refs::default();
    if let Some(l) = &policies.local_rate_limit {
        r = r.union(l.references());
    }
    if let Some(g) = &policies.global_rate_limit {
        r = r.union(g.references());
    }
    if let Some(b) = &policies.budgets {
        r = r.union(b.references());
    }
    r
}

/// Charges `n` units of `kind` against the local limits charged in `phase`.
fn charge_local(
    policies: &Policies,
    kind: Kind,
    phase: Phase,
    n: u64,
    log: &mut RequestLog,
) -> Result<(), ProxyError> {
    if let Some(l) = policies
        .local_rate_limit
        .as_ref()
        .filter(|l| l.has(kind, phase))
    {
        let taken = l
            .take(kind, phase, n, log)
            .map_err(|Exceeded(s)| ProxyError::RateLimited(s))?;
        note(log, taken.status);
        if let Some(s) = taken.settlement(n) {
            log.settle.push(s);
        }
    }
    Ok(())
}

/// Records a global charge's outcome.
fn global_outcome(
    log: &mut RequestLog,
    r: Result<crate::limit::global::GlobalTaken, Refused>,
) -> Result<(), ProxyError> {
    let taken = match r {
        Ok(t) => t,
        Err(Refused::Exceeded(Exceeded(s))) => return Err(ProxyError::RateLimited(s)),
        Err(Refused::Unavailable(f)) => {
            log.store_failure = Some(f.as_str());
            return Err(ProxyError::LimitUnavailable(f.as_str()));
        }
    };
    if let Some(f) = taken.failed_open {
        log.store_failure = Some(f.as_str());
    }
    note(log, taken.status);
    if let Some(s) = taken.settlement() {
        log.settle.push(s);
    }
    Ok(())
}

fn budget_outcome(r: Result<(), crate::spend::budget::Refused>) -> Result<(), ProxyError> {
    r.map_err(|r| match r {
        crate::spend::budget::Refused::Exceeded(name) => ProxyError::BudgetExceeded(name),
        crate::spend::budget::Refused::Unavailable(f) => ProxyError::LimitUnavailable(f.as_str()),
    })
}

/// Keeps the most constrained bucket for the `x-ratelimit-*` headers and the span.
fn note(log: &mut RequestLog, s: Option<crate::ctx::RateLimitStatus>) {
    if let Some(s) = s
        && log.rate_limit.is_none_or(|r| s.remaining < r.remaining)
    {
        log.rate_limit = Some(s);
    }
}

/// The route phase: one request against the request limits that need no LLM facts. On an
/// LLM route (`llm_route`) the shared (Redis) ones wait for the LLM phase, so a request
/// makes one round trip to Redis in all.
pub(crate) async fn route_phase(
    px: &Proxy,
    policies: &Policies,
    llm_route: bool,
    log: &mut RequestLog,
) -> Result<(), ProxyError> {
    charge_local(policies, Kind::Requests, Phase::Route, 1, log)?;
    if llm_route {
        return Ok(());
    }
    if let Some(g) = &policies.global_rate_limit {
        let r = g.take(&px.store, &[Phase::Route], None, log).await;
        global_outcome(log, r)?;
    }
    Ok(())
}

/// The LLM phase: local model-keyed request limits and token limits (an estimate of the
/// prompt from its size, settled later), then every shared limit and budget of the request in
/// one pipelined Redis round trip.
pub(crate) async fn llm_phase(
    px: &Proxy,
    policies: &Policies,
    body_len: usize,
    log: &mut RequestLog,
) -> Result<(), ProxyError> {
    let estimate = crate::limit::estimate_tokens(body_len);
    charge_local(policies, Kind::Requests, Phase::Llm, 1, log)?;
    charge_local(policies, Kind::Tokens, Phase::Llm, estimate, log)?;
    let prefix = px.store.key_prefix().unwrap_or_default();
    let charge = policies.global_rate_limit.as_ref().and_then(|g| {
        g.prepare(&prefix, &[Phase::Route, Phase::Llm], Some(estimate), log)
            .map(|c| (g, c))
    });
    let check = policies
        .budgets
        .as_ref()
        .and_then(|b| px.ledger.prepare(b, log));
    let mut calls = Vec::with_capacity(2);
    if let Some((_, c)) = &charge {
        calls.push(crate::store::Call {
            script: &crate::limit::global::SCRIPT,
            keys: &c.keys,
            args: &c.args,
        });
    }
    if let Some(call) = check.as_ref().and_then(|c| c.call()) {
        calls.push(call);
    }
    let mut answers = if calls.is_empty() {
        Ok(Vec::new())
    } else {
        px.store.run_batch("rate_limit", &calls).await
    };
    drop(calls);
    let mut next = || match &mut answers {
        Ok(v) if !v.is_empty() => Ok(v.remove(0)),
        Ok(_) => Err(crate::store::Failure::Error),
        Err(f) => Err(*f),
    };
    if let Some((g, c)) = charge {
        let r = g.finish(&px.store, c, next());
        global_outcome(log, r)?;
    }
    if let Some(c) = check {
        let result = c.call().is_some().then(&mut next);
        budget_outcome(px.ledger.finish(c, result, log))?;
    }
    Ok(())
}

/// `x-gateway-budget-remaining`: `name=remaining` for every budget the request was checked
/// against (before its own spend), most constrained first.
pub const BUDGET_HEADER: &str = "x-gateway-budget-remaining";

pub(crate) fn budget_header(log: &RequestLog, h: &mut http::HeaderMap) {
    let Some(b) = &log.budget else { return };
    let mut parts: Vec<&str> = Vec::with_capacity(b.remaining.len());
    if let Some(t) = &b.tightest {
        parts.push(t);
    }
    parts.extend(
        b.remaining
            .iter()
            .map(String::as_str)
            .filter(|r| Some(*r) != b.tightest.as_deref()),
    );
    if let Ok(v) = http::HeaderValue::from_str(&parts.join(", ")) {
        h.insert(http::HeaderName::from_static(BUDGET_HEADER), v);
    }
}
