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

/// Charges `n` units of `kind` against the local, then the global limits charged in `phase`.
async fn charge(
    px: &Proxy,
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
    if let Some(g) = policies
        .global_rate_limit
        .as_ref()
        .filter(|g| g.has(kind, phase))
    {
        let taken = match g.take(&px.store, kind, phase, n, log).await {
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
    }
    Ok(())
}

/// Keeps the most constrained bucket for the `x-ratelimit-*` headers and the span.
fn note(log: &mut RequestLog, s: Option<crate::ctx::RateLimitStatus>) {
    if let Some(s) = s
        && log.rate_limit.is_none_or(|r| s.remaining < r.remaining)
    {
        log.rate_limit = Some(s);
    }
}

/// The route phase: one request against the request limits that need no LLM facts.
pub(crate) async fn route_phase(
    px: &Proxy,
    policies: &Policies,
    log: &mut RequestLog,
) -> Result<(), ProxyError> {
    charge(px, policies, Kind::Requests, Phase::Route, 1, log).await
}

/// The LLM phase: model-keyed request limits, token limits (an estimate of the prompt from
/// its size, settled later), then budgets.
pub(crate) async fn llm_phase(
    px: &Proxy,
    policies: &Policies,
    body_len: usize,
    log: &mut RequestLog,
) -> Result<(), ProxyError> {
    charge(px, policies, Kind::Requests, Phase::Llm, 1, log).await?;
    let estimate = crate::limit::estimate_tokens(body_len);
    charge(px, policies, Kind::Tokens, Phase::Llm, estimate, log).await?;
    if let Some(b) = &policies.budgets {
        px.ledger.check(b, log).await.map_err(|r| match r {
            crate::spend::budget::Refused::Exceeded(name) => ProxyError::BudgetExceeded(name),
            crate::spend::budget::Refused::Unavailable(f) => {
                ProxyError::LimitUnavailable(f.as_str())
            }
        })?;
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
