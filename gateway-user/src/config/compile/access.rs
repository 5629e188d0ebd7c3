//! The JSON-shaped route policies: caller identity (`apiKey`, `jwtAuth`, `basicAuth`,
//! `authorization`) and limits (`localRateLimit`, `globalRateLimit`, `budgets`). Each parser
//! lives with its subsystem and names its own error paths.

use super::*;

/// Compiles the identity and limit policies of `raw` into `p`.
pub(super) fn compile(cx: &mut Ctx, raw: &RawPolicies, path: &str, p: &mut Policies) {
    if let Some(v) = &raw.api_key {
        p.api_key = json_policy(
            cx,
            v,
            &format!("{path}.apiKey"),
            crate::auth::ApiKeys::parse,
        )
        .map(Arc::new);
    }
    if let Some(v) = &raw.jwt_auth {
        p.jwt_auth = json_policy(
            cx,
            v,
            &format!("{path}.jwtAuth"),
            crate::auth::jwt::JwtAuth::parse,
        )
        .map(Arc::new);
    }
    if let Some(v) = &raw.basic_auth {
        p.basic_auth = json_policy(
            cx,
            v,
            &format!("{path}.basicAuth"),
            crate::auth::basic::BasicAuth::parse,
        )
        .map(Arc::new);
    }
    if let Some(v) = &raw.authorization {
        p.authorization = json_policy(
            cx,
            v,
            &format!("{path}.authorization"),
            crate::auth::authz::Rules::parse,
        )
        .map(Arc::new);
    }
    if let Some(v) = &raw.local_rate_limit {
        p.local_rate_limit = json_policy(
            cx,
            v,
            &format!("{path}.localRateLimit"),
            crate::limit::LocalLimits::parse,
        )
        .map(Arc::new);
    }
    if let Some(v) = &raw.global_rate_limit {
        if !cx.has_redis {
            cx.err(
                format!("{path}.globalRateLimit"),
                "needs a shared store: set `config.redis.url` (use localRateLimit for a \
                 per-gateway limit)",
            );
        }
        p.global_rate_limit = json_policy(
            cx,
            v,
            &format!("{path}.globalRateLimit"),
            crate::limit::global::GlobalLimits::parse,
        )
        .map(Arc::new);
    }
    if let Some(v) = &raw.budgets {
        p.budgets = json_policy(
            cx,
            v,
            &format!("{path}.budgets"),
            crate::spend::budget::Budgets::parse,
        )
        .map(Arc::new);
    }
    if let Some(r) = &raw.retry {
        match crate::llm::route::config::retry(r, &format!("{path}.retry")) {
            Ok(r) => p.retry = Some(Arc::new(r)),
            Err((at, msg)) => cx.err(at, msg),
        }
    }
}

/// Parses a policy from JSON at a YAML path; errors carry the path they are at.
pub(super) type JsonParser<T> = fn(&serde_json::Value, &str) -> Result<T, (String, String)>;

/// A policy whose parser reads JSON and names its own error paths.
pub(super) fn json_policy<T>(
    cx: &mut Ctx,
    v: &yaml_serde::Value,
    at: &str,
    parse: JsonParser<T>,
) -> Option<T> {
    let parsed = serde_json::to_value(v)
        .map_err(|e| (at.to_owned(), e.to_string()))
        .and_then(|j| parse(&j, at));
    parsed.map_err(|(path, msg)| cx.err(path, msg)).ok()
}
