//! Builds the CEL variables (`request`, `response`, `llm`, `source`, `backend`, `mcp`, `env`)
//! from a `RequestLog`. Only variables named in `Refs` are built; `llm.prompt`,
//! `llm.completion` and the header maps only when an expression mentions them.
//!
//! Credentials never reach CEL: header values whose name `ctx::redact::is_sensitive`
//! flags are replaced by `<redacted>`, even if the proxy forgot to strip them.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::UNIX_EPOCH;

use cel::Context;
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt,
};
use cel::common::value::Val;

use super::Refs;
use crate::ctx::RequestLog;
use crate::ctx::redact::{REDACTED, is_sensitive};

/// A CEL value as the interpreter holds it. Variables are built in this form directly: going
/// through `cel::Value` would copy every string and map once more per request.
type V = Box<dyn Val>;

/// Map under construction; each field may be inserted under two spellings. Field names are
/// `'static` and borrowed, not copied.
struct Obj(HashMap<CelMapKey<'static>, V>);

impl Obj {
    fn new() -> Obj {
        Obj(HashMap::new())
    }
    fn set(&mut self, k: &'static str, v: V) {
        self.0.insert(CelMapKey::from(k), v);
    }
    /// Inserts under the camelCase name and, when different, the snake_case alias.
    fn set2(&mut self, camel: &'static str, snake: &'static str, v: V) {
        if camel != snake {
            self.set(snake, v.clone_as_boxed());
        }
        self.set(camel, v);
    }
    fn done(self) -> V {
        Box::new(CelMap::from(self.0))
    }
}

fn s(v: &str) -> V {
    Box::new(CelString::from(v.to_owned()))
}

fn int(v: u64) -> V {
    Box::new(CelInt::from(i64::try_from(v).unwrap_or(i64::MAX)))
}

fn list(items: Vec<V>) -> V {
    Box::new(CelList::from(items))
}

/// JSON as a CEL value, like `super::from_json` but in the interpreter's form.
fn json(j: &serde_json::Value) -> V {
    use serde_json::Value as J;
    match j {
        J::Null => Box::new(CelNull),
        J::Bool(b) => Box::new(CelBool::from(*b)),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Box::new(CelInt::from(i))
            } else if let Some(u) = n.as_u64() {
                Box::new(CelUInt::from(u))
            } else {
                Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        J::String(v) => s(v),
        J::Array(a) => list(a.iter().map(json).collect()),
        J::Object(o) => Box::new(CelMap::from(
            o.iter()
                .map(|(k, v)| (CelMapKey::from(k.clone()), json(v)))
                .collect::<HashMap<_, _>>(),
        )),
    }
}

pub(super) fn populate(ctx: &mut Context<'_, 'static>, log: &RequestLog, refs: Refs) {
    if refs.request {
        ctx.add_variable_as_val("request", request(log, refs.request_headers));
    }
    if refs.response
        && let Some(resp) = response(log, refs.response_headers)
    {
        ctx.add_variable_as_val("response", resp);
    }
    if refs.llm
        && let Some(llm) = llm(log, refs)
    {
        ctx.add_variable_as_val("llm", llm);
    }
    if refs.source
        && let Some(addr) = log.src_addr
    {
        let mut o = Obj::new();
        o.set("address", s(&addr.ip().to_string()));
        o.set("port", Box::new(CelInt::from(i64::from(addr.port()))));
        ctx.add_variable_as_val("source", o.done());
    }
    if refs.backend
        && let Some(b) = &log.backend
    {
        let mut o = Obj::new();
        o.set("name", s(b));
        ctx.add_variable_as_val("backend", o.done());
    }
    if refs.mcp
        && let Some(m) = mcp(log)
    {
        ctx.add_variable_as_val("mcp", m);
    }
    if refs.env {
        ctx.add_variable_as_val("env", env(log));
    }
    if refs.guardrails
        && let Some(g) = &log.guard
    {
        ctx.add_variable_as_val("guardrails", guardrails(g));
    }
    // `apiKey`: the key's metadata flattened (`apiKey.team`), `key` redacted, `id` the stable
    // key id; absent without an authenticated key.
    if refs.api_key
        && let Some(i) = &log.identity
    {
        let mut m: HashMap<CelMapKey<'static>, V> = HashMap::new();
        if let serde_json::Value::Object(o) = &i.metadata {
            for (k, v) in o {
                m.insert(CelMapKey::from(k.clone()), json(v));
            }
        }
        m.insert(CelMapKey::from("key"), s(crate::ctx::redact::REDACTED));
        m.insert(CelMapKey::from("id"), s(&i.key_id));
        ctx.add_variable_as_val("apiKey", Box::new(CelMap::from(m)) as V);
    }
    // `jwt`: the verified token's claims (`jwt.sub`, `jwt.team`); absent without one.
    if refs.jwt
        && let Some(claims) = &log.jwt
    {
        ctx.add_variable_as_val("jwt", json(claims));
    }
    // `basicAuth.username`: the user basic auth verified.
    if refs.basic_auth
        && let Some(u) = &log.basic_user
    {
        let mut m: HashMap<CelMapKey<'static>, V> = HashMap::new();
        m.insert(CelMapKey::from("username"), s(u));
        ctx.add_variable_as_val("basicAuth", Box::new(CelMap::from(m)) as V);
    }
}

/// `guardrails.request` / `guardrails.response`: `action` (`allow`, `mask`, `reject`,
/// `failopen`), `rules` (rule type → matches), `masked`, `rejectedBy` (`rejected_by`).
fn guardrails(g: &crate::ctx::GuardInfo) -> V {
    let mut o = Obj::new();
    for (name, phase) in [("request", &g.request), ("response", &g.response)] {
        let Some(p) = phase else { continue };
        let mut po = Obj::new();
        po.set("action", s(p.action.as_str()));
        let rules: HashMap<CelMapKey<'static>, V> = p
            .rules
            .iter()
            .map(|(r, n)| (CelMapKey::from(r.clone()), int(u64::from(*n))))
            .collect();
        po.set("rules", Box::new(CelMap::from(rules)));
        po.set("masked", int(u64::from(p.masked)));
        if let Some(r) = &p.rejected_by {
            po.set2("rejectedBy", "rejected_by", s(r));
        }
        o.set(name, po.done());
    }
    o.done()
}

fn headers(pairs: &[(String, String)]) -> V {
    // Values per lowercased name, in order; sensitive ones redacted.
    let mut by_name: HashMap<String, Vec<&str>> = HashMap::with_capacity(pairs.len());
    for (k, v) in pairs {
        let name = k.to_ascii_lowercase();
        let v = if is_sensitive(&name) {
            REDACTED
        } else {
            v.as_str()
        };
        by_name.entry(name).or_default().push(v);
    }
    // One value → string; repeated header → list of its values (agentgateway's shape).
    let map: HashMap<CelMapKey<'static>, V> = by_name
        .into_iter()
        .map(|(name, values)| {
            let v = match values.as_slice() {
                [one] => s(one),
                many => list(many.iter().map(|v| s(v)).collect()),
            };
            (CelMapKey::from(name), v)
        })
        .collect();
    Box::new(CelMap::from(map))
}

fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    crate::time::format_timestamp(d)
}

fn request(log: &RequestLog, with_headers: bool) -> V {
    let mut o = Obj::new();
    o.set("method", s(&log.method));
    o.set("path", s(&log.path));
    o.set("host", s(&log.host));
    o.set("scheme", s(log.scheme));
    o.set("uri", s(&log.uri));
    let pq = path_and_query(&log.uri).unwrap_or(&log.path);
    o.set2("pathAndQuery", "path_and_query", s(pq));
    o.set("version", s(log.version));
    o.set2("startTime", "start_time", s(&rfc3339(log.start_time)));
    if let Some(end) = log.end {
        let end_time = log.start_time + end.saturating_duration_since(log.start);
        o.set2("endTime", "end_time", s(&rfc3339(end_time)));
    }
    if with_headers {
        o.set("headers", headers(&log.request_headers));
    }
    o.done()
}

/// `/p?q` from either an origin-form or an absolute URI.
fn path_and_query(uri: &str) -> Option<&str> {
    if uri.starts_with('/') {
        return Some(uri);
    }
    let rest = uri.split_once("://")?.1;
    Some(rest.find('/').map_or("/", |i| &rest[i..]))
}

fn response(log: &RequestLog, with_headers: bool) -> Option<V> {
    let code = log.status?;
    let mut o = Obj::new();
    o.set("code", Box::new(CelInt::from(i64::from(code))));
    if with_headers {
        o.set("headers", headers(&log.response_headers));
    }
    Some(o.done())
}

fn llm(log: &RequestLog, refs: Refs) -> Option<V> {
    let l = log.llm.as_ref()?;
    let mut o = Obj::new();
    o.set("provider", s(&l.provider));
    if !l.operation.is_empty() {
        o.set2("operationName", "operation_name", s(l.operation));
    }
    if let Some(m) = &l.request_model {
        o.set2("requestModel", "request_model", s(m));
    }
    if let Some(m) = &l.response_model {
        o.set2("responseModel", "response_model", s(m));
    }
    if let Some(t) = l.input_tokens {
        o.set2("inputTokens", "input_tokens", int(t));
    }
    if let Some(t) = l.output_tokens {
        o.set2("outputTokens", "output_tokens", int(t));
    }
    let total = l.total_tokens.or(match (l.input_tokens, l.output_tokens) {
        (Some(i), Some(o)) => Some(i.saturating_add(o)),
        _ => None,
    });
    if let Some(t) = total {
        o.set2("totalTokens", "total_tokens", int(t));
    }
    if let Some(t) = l.cached_input_tokens {
        o.set2("cachedInputTokens", "cached_input_tokens", int(t));
    }
    if let Some(t) = l.reasoning_tokens {
        o.set2("reasoningTokens", "reasoning_tokens", int(t));
    }
    // `llm.cost.total`, `.input`, `.cacheRead`, ... in USD (doubles, as agentgateway's CEL).
    if let Some(lines) = l.cost.as_ref().and_then(|c| c.lines.as_ref()) {
        use rust_decimal::prelude::ToPrimitive;
        const SNAKE: [&str; 8] = [
            "total",
            "input",
            "output",
            "cache_read",
            "cache_write",
            "reasoning",
            "input_audio",
            "output_audio",
        ];
        let mut c = Obj::new();
        for ((k, v), snake) in lines.iter().zip(SNAKE) {
            c.set2(
                k,
                snake,
                Box::new(CelDouble::from(v.to_f64().unwrap_or(0.0))),
            );
        }
        o.set("cost", c.done());
    }
    o.set("streaming", Box::new(CelBool::from(l.streaming)));
    if let Some(ttft) = l.first_token {
        o.set2(
            "timeToFirstToken",
            "time_to_first_token",
            s(&format!("{}ms", ttft.as_millis())),
        );
    }
    if refs.llm_prompt
        && let Some(p) = &l.prompt
    {
        o.set("prompt", json(p));
    }
    if refs.llm_completion
        && let Some(c) = &l.completion
    {
        o.set("completion", list(c.iter().map(|t| s(t)).collect()));
    }
    let params: HashMap<CelMapKey<'static>, V> = l
        .params
        .iter()
        .map(|(k, v)| (CelMapKey::from(k.clone()), json(v)))
        .collect();
    o.set("params", Box::new(CelMap::from(params)));
    if !l.finish_reasons.is_empty() {
        o.set2(
            "finishReasons",
            "finish_reasons",
            list(l.finish_reasons.iter().map(|r| s(r)).collect()),
        );
    }
    if !l.tool_calls.is_empty() {
        let calls = l
            .tool_calls
            .iter()
            .map(|name| {
                let mut c = Obj::new();
                c.set("name", s(name));
                c.done()
            })
            .collect();
        o.set2("toolCalls", "tool_calls", list(calls));
    }
    Some(o.done())
}

fn mcp(log: &RequestLog) -> Option<V> {
    let m = log.mcp.as_ref()?;
    let mut o = Obj::new();
    if let Some(v) = &m.method {
        o.set2("methodName", "method_name", s(v));
    }
    if let Some(v) = &m.session_id {
        o.set2("sessionId", "session_id", s(v));
    }
    if let Some(v) = &m.request_id {
        o.set2("requestId", "request_id", json(v));
    }
    if m.tool_name.is_some() || m.tool_arguments.is_some() {
        let mut t = Obj::new();
        if let Some(v) = &m.tool_name {
            t.set("name", s(v));
        }
        if let Some(v) = &m.target {
            t.set("target", s(v));
        }
        if let Some(v) = &m.tool_arguments {
            t.set("arguments", json(v));
        }
        if let Some(v) = &m.tool_result {
            t.set("result", json(v));
        }
        if let Some(v) = &m.tool_error {
            t.set("error", json(v));
        }
        o.set("tool", t.done());
    }
    if let Some(v) = &m.resource {
        let mut r = Obj::new();
        r.set("name", s(v));
        if let Some(t) = &m.target {
            r.set("target", s(t));
        }
        o.set("resource", r.done());
    }
    if let Some(v) = &m.prompt_name {
        let mut p = Obj::new();
        p.set("name", s(v));
        if let Some(t) = &m.target {
            p.set("target", s(t));
        }
        o.set("prompt", p.done());
    }
    if let Some(v) = &m.error_type {
        o.set2("errorType", "error_type", s(v));
    }
    Some(o.done())
}

/// Well-known process attributes (not raw environment variables), read once.
static ENV: LazyLock<Vec<(&'static str, String)>> = LazyLock::new(|| {
    [
        ("podName", "POD_NAME"),
        ("namespace", "POD_NAMESPACE"),
        ("nodeName", "NODE_NAME"),
    ]
    .into_iter()
    .filter_map(|(k, var)| std::env::var(var).ok().map(|v| (k, v)))
    .collect()
});

fn env(log: &RequestLog) -> V {
    let mut o = Obj::new();
    for (k, v) in ENV.iter() {
        o.set(k, s(v));
    }
    o.set("gateway", s(&log.gateway));
    o.done()
}
