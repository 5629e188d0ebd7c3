//! Steering for `proxy::llm::forward`: which targets one request's attempts use
//! (`llm::route` plans virtual models), and after each attempt whether another one is made.
//! Health is recorded here, attempt by attempt; what happened goes into the request's
//! `RoutingInfo` for spans, the access log and metrics.

use std::time::Instant;

use http::Response;
use hyper::body::Incoming;
use serde_json::Value;

use super::error::ProxyError;
use crate::cel::Executor;
use crate::config::snapshot::{AiBackend, Backend, BackendKind, ModelTable, Policies, Route};
use crate::ctx::{Attempt, RequestLog, RoutingInfo};
use crate::llm::route::health::Verdict;
use crate::llm::route::{Abandon, Attempts, VirtualModel};

/// A backend one attempt may go to; `model` names a virtual model's target (sent as the
/// request's model); `policies` are the route's merged with that backend's (its credential).
pub(super) struct Candidate<'a> {
    pub ai: &'a AiBackend,
    pub model: Option<&'a str>,
    pub policies: Option<&'a Policies>,
}

/// One request's candidates, in the order its attempts use them.
pub(super) struct Targets<'a> {
    pub list: Vec<Candidate<'a>>,
    pub virtual_model: Option<&'a VirtualModel>,
}

impl<'a> Targets<'a> {
    pub fn one(ai: &'a AiBackend) -> Self {
        Targets {
            list: vec![Candidate {
                ai,
                model: None,
                policies: None,
            }],
            virtual_model: None,
        }
    }

    /// A route's `ai` backends: the one the weighted choice took, then the others (live before
    /// ejected, heavier first), for the retries of `policies.retry` to move through. Without a
    /// retry policy allowing a second attempt only the chosen one: the request path then reads
    /// no other backend's health.
    pub fn route(route: &'a Route, chosen: &'a Backend, ai: &'a AiBackend) -> Self {
        let one = Candidate {
            ai,
            model: None,
            policies: Some(&chosen.policies),
        };
        if chosen
            .policies
            .retry
            .as_ref()
            .is_none_or(|r| r.attempts < 2)
            || route.backends.len() < 2
        {
            return Targets {
                list: vec![one],
                virtual_model: None,
            };
        }
        let now = Instant::now();
        let mut others: Vec<(bool, u32, &'a AiBackend, &'a Policies)> = route
            .backends
            .iter()
            .filter(|b| !std::ptr::eq(*b, chosen) && b.weight > 0)
            .filter_map(|b| match &b.kind {
                BackendKind::Ai(a) => Some((
                    a.health.standing(&a.health_policy, now).ejected,
                    b.weight,
                    a.as_ref(),
                    &b.policies,
                )),
                _ => None,
            })
            .collect();
        others.sort_by_key(|(ejected, w, _, _)| (*ejected, std::cmp::Reverse(*w)));
        let mut list = vec![one];
        list.extend(others.into_iter().map(|(_, _, ai, p)| Candidate {
            ai,
            model: None,
            policies: Some(p),
        }));
        Targets {
            list,
            virtual_model: None,
        }
    }

    /// The `llm:` shorthand: a virtual model's plan, or the model entry the name selects.
    /// `None`: no model of that name (internal models only answer through a virtual model).
    pub fn for_model(
        table: &'a ModelTable,
        model: &str,
        body: Option<&Value>,
        log: &RequestLog,
    ) -> Option<Self> {
        if let Some(vm) = table.virtual_models.iter().find(|v| v.name == model) {
            let now = Instant::now();
            let plan = vm.plan(
                |i| {
                    let b = &table.entries[i].backend;
                    b.health.standing(&b.health_policy, now)
                },
                || {
                    let mut ex = Executor::new(log, vm.refs);
                    if let Some(b) = body {
                        ex.set_json("llmRequest", b);
                    }
                    ex
                },
            );
            let list = plan
                .into_iter()
                .map(|t| Candidate {
                    ai: &table.entries[t.entry].backend,
                    model: Some(t.model.as_str()),
                    policies: None,
                })
                .collect();
            return Some(Targets {
                list,
                virtual_model: Some(vm),
            });
        }
        let entry = table.entries.iter().find(|m| m.matches(model))?;
        (!entry.internal).then(|| Targets::one(&entry.backend))
    }

    /// The attempt budget: the retry policy (when its precondition holds), and each target of
    /// a weighted or failover virtual model once.
    pub fn attempts<'p>(&self, policies: &'p Policies, log: &RequestLog) -> Attempts<'p> {
        let retry = policies.retry.as_deref();
        let allowed = retry.and_then(|r| r.precondition.as_ref()).is_none_or(|p| {
            p.eval(log)
                .is_ok_and(|v| v == crate::cel::Value::Bool(true))
        });
        let fail_over = self.virtual_model.is_some_and(|v| v.fails_over());
        Attempts::new(retry, allowed, fail_over, self.list.len())
    }
}

/// What follows an attempt.
pub(super) enum Next {
    Respond(Response<Incoming>),
    Fail(ProxyError),
    Retry(Abandon),
}

/// Records the attempt's outcome in the backend's health and decides what follows it.
/// `more`: the budget allows another attempt.
pub(super) fn judge(
    cand: &Candidate<'_>,
    sent: Result<Response<Incoming>, ProxyError>,
    attempts: &Attempts<'_>,
    more: bool,
    log: &mut RequestLog,
) -> Next {
    let ai = cand.ai;
    let latency = match (log.upstream_start, log.upstream_end) {
        (Some(s), Some(e)) => Some(e.saturating_duration_since(s)),
        _ => None,
    };
    let (unhealthy, abandon) = match &sent {
        Ok(resp) => {
            let code = resp.status().as_u16();
            // Expressions read `response.code`: the status is the log's while they run.
            let prior = log.status.replace(code);
            let unhealthy = match &ai.health_policy.unhealthy_expression {
                Some(e) => matches!(e.eval(log), Ok(crate::cel::Value::Bool(true))),
                None => code == 429 || code >= 500,
            };
            let retry = attempts.retry_status(code, |c| {
                matches!(c.eval(log), Ok(crate::cel::Value::Bool(true)))
            });
            log.status = prior;
            (unhealthy, retry.then_some(Abandon::Status(code)))
        }
        Err(ProxyError::UpstreamUnreachable(..)) => (true, Some(Abandon::Unreachable)),
        Err(ProxyError::UpstreamTimeout(..)) => (true, Some(Abandon::Timeout)),
        Err(ProxyError::UpstreamProtocol(_)) => (true, Some(Abandon::Broken)),
        Err(_) => (true, None),
    };
    let verdict = ai
        .health
        .record(&ai.health_policy, unhealthy, latency, Instant::now());
    if let Verdict::Ejected(d) = verdict {
        tracing::warn!(backend = %ai.name, for_secs = d.as_secs_f64(), "backend ejected after failing");
        routing(log).ejected.push(ai.name.clone());
    }
    match (sent, abandon) {
        (_, Some(a)) if more => Next::Retry(a),
        (Ok(resp), _) => Next::Respond(resp),
        (Err(e), _) => Next::Fail(e),
    }
}

/// The request's routing record, created on first use.
pub(super) fn routing(log: &mut RequestLog) -> &mut RoutingInfo {
    log.llm
        .get_or_insert_with(Default::default)
        .routing
        .get_or_insert_with(Default::default)
}

/// An attempt given up for the next: its span, timing and reason kept; the log's upstream
/// fields free for the next attempt.
pub(super) fn abandon(cand: &Candidate<'_>, why: Abandon, log: &mut RequestLog) {
    let now = Instant::now();
    let a = Attempt {
        target: cand.model.unwrap_or(&cand.ai.name).to_owned(),
        backend: cand.ai.name.clone(),
        endpoint: cand.ai.upstream.authority.clone(),
        span_id: log.upstream_span_id.take(),
        start: log.upstream_start.take().unwrap_or(now),
        end: log.upstream_end.take().unwrap_or(now),
        reason: why.reason(),
    };
    log.upstream_cookie = None;
    routing(log).abandoned.push(a);
}

/// After the last attempt: which target served, how many attempts it took. Nothing is
/// recorded for a plain single-attempt request.
pub(super) fn finish(targets: &Targets<'_>, cand: &Candidate<'_>, n: usize, log: &mut RequestLog) {
    if targets.virtual_model.is_none()
        && n == 0
        && log.llm.as_ref().is_none_or(|l| l.routing.is_none())
    {
        return;
    }
    let r = routing(log);
    if let Some(vm) = targets.virtual_model {
        r.virtual_model = Some(vm.name.clone());
        r.kind = Some(vm.kind());
    }
    r.target = cand.model.unwrap_or(&cand.ai.name).to_owned();
    r.attempts = n as u32 + 1;
}

/// `x-gateway-virtual-model` (the name the client asked for) and `x-gateway-target` (the model
/// of `llm.models` that answered) on a virtual model's response; `x-gateway-attempts` when it
/// took more than one.
pub(super) fn headers(log: &RequestLog, h: &mut http::HeaderMap) {
    let Some(r) = log.llm.as_ref().and_then(|l| l.routing.as_deref()) else {
        return;
    };
    let mut set = |name: &'static str, v: &str| {
        if let Ok(v) = http::HeaderValue::from_str(v) {
            h.insert(http::HeaderName::from_static(name), v);
        }
    };
    if let Some(vm) = &r.virtual_model {
        set("x-gateway-virtual-model", vm);
        set("x-gateway-target", &r.target);
    }
    if r.attempts > 1 {
        set("x-gateway-attempts", &r.attempts.to_string());
    }
}
