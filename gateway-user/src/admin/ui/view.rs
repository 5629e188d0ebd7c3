//! What the viewer's JSON API says about kept requests: a row per request, a request's detail
//! (its spans as exported over OTLP), the filters of the request list, and the overview.
//!
//! Everything here runs on the admin server, on demand; nothing runs per proxied request.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use serde_json::{Map, Value, json};

use super::ring::{Entry, MINUTES, Minute, ToolCalls, Totals, is_error, route_of};
use crate::ctx::RequestLog;

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

fn unix_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map_or(0.0, ms)
}

/// What kind of traffic a request was.
pub fn kind(log: &RequestLog) -> &'static str {
    if log.llm.is_some() {
        "llm"
    } else if log.mcp.is_some() {
        "mcp"
    } else {
        "http"
    }
}

/// Who sent the request: the authenticated caller (a JWT's `sub`, a basic-auth user, an API
/// key's id, never the key), else the client's address.
pub fn caller(log: &RequestLog) -> String {
    if let Some(sub) = log
        .jwt
        .as_ref()
        .and_then(|j| j.get("sub"))
        .and_then(Value::as_str)
    {
        return format!("jwt:{sub}");
    }
    if let Some(u) = &log.basic_user {
        return format!("user:{u}");
    }
    if let Some(i) = &log.identity {
        return format!("key:{}", i.key_id);
    }
    log.src_addr.map(|a| a.ip().to_string()).unwrap_or_default()
}

fn trace_id(log: &RequestLog) -> Value {
    if log.trace.trace_id == [0; 16] {
        Value::Null
    } else {
        json!(log.trace.trace_id_hex())
    }
}

/// One row of the request list.
pub fn row(e: &Entry) -> Value {
    let log = &e.log;
    let mut r = json!({
        "id": e.id,
        "time": unix_ms(log.start_time),
        "kind": kind(log),
        "route": log.route,
        "method": log.method,
        "path": log.path,
        "status": log.status,
        "durationMs": ms(log.duration()),
        "caller": caller(log),
        "traceId": trace_id(log),
        "sampled": log.trace.sampled,
        "error": log.error,
    });
    let Value::Object(m) = &mut r else {
        return r;
    };
    if let Some(l) = &log.llm {
        m.insert("provider".into(), json!(l.provider));
        m.insert("operation".into(), json!(l.operation));
        m.insert("requestModel".into(), json!(l.request_model));
        m.insert("responseModel".into(), json!(l.response_model));
        m.insert("inputTokens".into(), json!(l.input_tokens));
        m.insert("outputTokens".into(), json!(l.output_tokens));
        m.insert("streaming".into(), json!(l.streaming));
        m.insert("ttftMs".into(), json!(l.first_token.map(ms)));
        // A decimal string, as in the access log (exact, no float rounding).
        if let Some(c) = l.cost.as_ref().and_then(|c| c.total()) {
            m.insert("costUsd".into(), json!(c.normalize().to_string()));
        }
    }
    if let Some(r) = &log.rate_limit {
        m.insert("rateLimitRemaining".into(), json!(r.remaining));
    }
    if let Some(b) = &log.budget {
        m.insert("budget".into(), json!(b.tightest));
        if !b.exceeded.is_empty() {
            m.insert("budgetExceeded".into(), json!(b.exceeded));
        }
    }
    if let Some(g) = &log.guard {
        // Outcomes only (rule types and counts): matched text is never kept.
        let phase = |p: &Option<crate::ctx::PhaseOutcome>| {
            p.as_ref().map(|p| {
                json!({
                    "action": p.action.as_str(),
                    "rules": p.rules_summary(),
                    "masked": p.masked,
                    "rejectedBy": p.rejected_by,
                })
            })
        };
        m.insert(
            "guard".into(),
            json!({"request": phase(&g.request), "response": phase(&g.response)}),
        );
    }
    if let Some(mcp) = &log.mcp {
        m.insert("mcpMethod".into(), json!(mcp.method));
        m.insert("tool".into(), json!(mcp.tool_name));
        m.insert("mcpTarget".into(), json!(mcp.target));
        m.insert("mcpSession".into(), json!(mcp.session_id));
    }
    r
}

// === filters ===

/// `status=`: a class (`2xx`, `4xx`, `5xx`), `error` (`ring::is_error`), or one code.
#[derive(Debug, PartialEq)]
enum StatusFilter {
    Class(u16),
    Error,
    Code(u16),
}

/// The request list's filters, from the query string. Every one is optional; text matches
/// are case-insensitive.
#[derive(Debug, Default, PartialEq)]
pub struct Filter {
    route: Option<String>,
    model: Option<String>,
    status: Option<StatusFilter>,
    caller: Option<String>,
    kind: Option<String>,
    text: Option<String>,
    /// Only requests with a larger id (for polling).
    pub since: Option<u64>,
    pub limit: usize,
}

/// Default and largest number of rows one call returns.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// Decodes `%XX` and `+` in a query-string value.
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hexval = |c: u8| (c as char).to_digit(16);
                match (hexval(b[i + 1]), hexval(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query string's `key=value` pairs, decoded.
pub fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(kv), String::new()),
        })
        .collect()
}

impl Filter {
    /// Parses the list's query string; an unknown key or a bad value is an error naming it.
    pub fn parse(q: Option<&str>) -> Result<Filter, String> {
        let mut f = Filter {
            limit: DEFAULT_LIMIT,
            ..Filter::default()
        };
        for (k, v) in query_pairs(q) {
            let text = || (!v.is_empty()).then(|| v.to_lowercase());
            match k.as_str() {
                "route" => f.route = text(),
                "model" => f.model = text(),
                "caller" => f.caller = text(),
                "kind" => f.kind = text(),
                "q" => f.text = text(),
                "status" => {
                    f.status = match v.to_ascii_lowercase().as_str() {
                        "" => None,
                        "error" | "errors" => Some(StatusFilter::Error),
                        c if c.len() == 3 && c.ends_with("xx") => match c[..1].parse::<u16>() {
                            Ok(d @ 1..=5) => Some(StatusFilter::Class(d)),
                            _ => return Err(format!("status: bad class {v:?}")),
                        },
                        c => match c.parse::<u16>() {
                            Ok(n @ 100..=599) => Some(StatusFilter::Code(n)),
                            _ => {
                                return Err(format!(
                                    "status: {v:?} is not a code, a class such as 5xx, or error"
                                ));
                            }
                        },
                    }
                }
                "since" => {
                    f.since = Some(
                        v.parse()
                            .map_err(|_| format!("since: {v:?} is not an id"))?,
                    )
                }
                "limit" => {
                    let n: usize = v
                        .parse()
                        .map_err(|_| format!("limit: {v:?} is not a number"))?;
                    f.limit = n.clamp(1, MAX_LIMIT);
                }
                other => {
                    return Err(format!(
                        "unknown filter {other:?}; use route, model, status, caller, kind, q, since, limit"
                    ));
                }
            }
        }
        Ok(f)
    }

    pub fn matches(&self, e: &Entry) -> bool {
        let log = &e.log;
        if self.since.is_some_and(|s| e.id <= s) {
            return false;
        }
        let has = |hay: &str, needle: &str| hay.to_lowercase().contains(needle);
        if let Some(r) = &self.route
            && !route_of(log).eq_ignore_ascii_case(r)
        {
            return false;
        }
        if let Some(m) = &self.model {
            let l = log.llm.as_ref();
            let ok = [
                l.and_then(|l| l.request_model.as_deref()),
                l.and_then(|l| l.response_model.as_deref()),
            ]
            .into_iter()
            .flatten()
            .any(|x| x.eq_ignore_ascii_case(m));
            if !ok {
                return false;
            }
        }
        if let Some(s) = &self.status {
            let code = log.status.unwrap_or(0);
            let ok = match s {
                StatusFilter::Class(d) => code / 100 == *d,
                StatusFilter::Code(c) => code == *c,
                StatusFilter::Error => is_error(log),
            };
            if !ok {
                return false;
            }
        }
        if let Some(c) = &self.caller
            && !has(&caller(log), c)
        {
            return false;
        }
        if let Some(k) = &self.kind
            && kind(log) != k
        {
            return false;
        }
        if let Some(t) = &self.text {
            let l = log.llm.as_ref();
            let m = log.mcp.as_ref();
            let fields = [
                log.route.as_deref(),
                Some(log.path.as_str()),
                Some(log.method.as_str()),
                Some(log.host.as_str()),
                log.error.as_deref(),
                l.map(|l| l.provider.as_str()),
                l.and_then(|l| l.request_model.as_deref()),
                l.and_then(|l| l.response_model.as_deref()),
                m.and_then(|m| m.method.as_deref()),
                m.and_then(|m| m.tool_name.as_deref()),
                m.and_then(|m| m.target.as_deref()),
            ];
            let ids = [caller(log), log.trace.trace_id_hex()];
            if !fields.into_iter().flatten().any(|f| has(f, t)) && !ids.iter().any(|f| has(f, t)) {
                return false;
            }
        }
        true
    }
}

// === detail ===

/// An OTLP attribute value as JSON.
fn any_value(v: Option<&AnyValue>) -> Value {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    match v.and_then(|v| v.value.as_ref()) {
        None => Value::Null,
        Some(V::BoolValue(b)) => json!(b),
        Some(V::IntValue(i)) => json!(i),
        Some(V::DoubleValue(f)) => json!(f),
        Some(V::StringValue(s)) => json!(s),
        Some(V::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(|v| any_value(Some(v))).collect())
        }
        Some(V::KvlistValue(l)) => Value::Object(
            l.values
                .iter()
                .map(|kv| (kv.key.clone(), any_value(kv.value.as_ref())))
                .collect(),
        ),
        Some(V::BytesValue(b)) => json!(format!("{} bytes", b.len())),
        Some(other) => json!(format!("{other:?}")),
    }
}

fn kind_name(k: i32) -> &'static str {
    match span::SpanKind::try_from(k) {
        Ok(span::SpanKind::Server) => "SERVER",
        Ok(span::SpanKind::Client) => "CLIENT",
        Ok(span::SpanKind::Internal) => "INTERNAL",
        Ok(span::SpanKind::Producer) => "PRODUCER",
        Ok(span::SpanKind::Consumer) => "CONSUMER",
        _ => "UNSPECIFIED",
    }
}

/// A span as the viewer draws it (the OTLP span exactly as exported): times relative to the
/// request's start.
pub fn span(s: &Span, origin: SystemTime) -> Value {
    let origin_ns = origin
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let rel = |t: u64| t.saturating_sub(origin_ns) as f64 / 1e6;
    let (code, message) = match s.status.as_ref().map(|st| (st.code, st.message.as_str())) {
        Some((c, m)) if c == status::StatusCode::Error as i32 => ("ERROR", Some(m.to_owned())),
        Some((c, _)) if c == status::StatusCode::Ok as i32 => ("OK", None),
        _ => ("UNSET", None),
    };
    let attrs: Map<String, Value> = s
        .attributes
        .iter()
        .map(|kv| (kv.key.clone(), any_value(kv.value.as_ref())))
        .collect();
    let parent = (!s.parent_span_id.is_empty()).then(|| crate::ctx::hex(&s.parent_span_id));
    json!({
        "spanId": crate::ctx::hex(&s.span_id),
        "parentSpanId": parent,
        "parentIsRemote": s.flags & 0x200 != 0,
        "name": s.name,
        "kind": kind_name(s.kind),
        "startMs": rel(s.start_time_unix_nano),
        "endMs": rel(s.end_time_unix_nano),
        "durationMs": s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) as f64 / 1e6,
        "status": {"code": code, "message": message},
        "attributes": attrs,
    })
}

/// A request's detail: its row, its spans, and the prompt and completion when the config
/// records them (they are in the record only then).
pub fn detail(e: &Entry, spans: &[Span]) -> Value {
    let log = &e.log;
    let mut d = row(e);
    if let Value::Object(m) = &mut d {
        m.insert("host".into(), json!(log.host));
        m.insert("listener".into(), json!(log.listener));
        m.insert("endpoint".into(), json!(log.endpoint));
        m.insert(
            "originalDst".into(),
            json!(log.original_dst.map(|a| a.to_string())),
        );
        m.insert(
            "spans".into(),
            Value::Array(spans.iter().map(|s| span(s, log.start_time)).collect()),
        );
        // Captured only when a configured expression reads them, credentials and
        // `sensitiveHeaders` already left out.
        let headers = |h: &[(String, String)]| -> Value {
            h.iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect::<Map<_, _>>()
                .into()
        };
        if !log.request_headers.is_empty() {
            m.insert("requestHeaders".into(), headers(&log.request_headers));
        }
        if !log.response_headers.is_empty() {
            m.insert("responseHeaders".into(), headers(&log.response_headers));
        }
        if let Some(l) = &log.llm {
            m.insert("prompt".into(), l.prompt.clone().unwrap_or(Value::Null));
            m.insert("completion".into(), json!(l.completion));
            m.insert("finishReasons".into(), json!(l.finish_reasons));
            m.insert("toolCalls".into(), json!(l.tool_calls));
        }
        if let Some(mcp) = &log.mcp {
            m.insert(
                "mcpRequestId".into(),
                mcp.request_id.clone().unwrap_or(Value::Null),
            );
        }
    }
    d
}

/// A copy of the record with span ids for a request that was not traced, so its spans can be
/// drawn. Its trace id stays empty: there is nothing to look up in a tracing backend.
pub fn with_view_ids(log: &RequestLog) -> RequestLog {
    let mut l = log.clone();
    if l.trace.span_id == [0; 8] {
        l.trace.span_id = local_id(1);
    }
    if l.upstream_span_id.is_none() && l.upstream_start.is_some() {
        l.upstream_span_id = Some(local_id(2));
    }
    l
}

/// A span id for drawing only (never exported): distinct within a request.
fn local_id(n: u8) -> [u8; 8] {
    [0, 0, 0, 0, 0, 0, 0, n]
}

// === overview ===

/// Totals for the overview over the last `minutes` minutes ending at `now_minute`.
pub fn overview_totals(
    ms: &std::collections::VecDeque<Minute>,
    now_minute: u64,
    minutes: u64,
) -> Value {
    let from = now_minute.saturating_sub(minutes.saturating_sub(1));
    let window = || {
        ms.iter()
            .filter(|m| m.minute >= from && m.minute <= now_minute)
    };
    let mut by_route: Vec<(String, Totals)> = Vec::new();
    let mut by_model: Vec<(String, Totals)> = Vec::new();
    let mut by_pair: Vec<(String, String, Totals)> = Vec::new();
    let mut tools: Vec<(String, String, ToolCalls)> = Vec::new();
    let mut all = Totals::default();
    let mut per_minute = Vec::new();
    for m in window() {
        let mut t = Totals::default();
        for (r, model, x) in &m.by_route_model {
            t.add(x);
            add_to(&mut by_route, r, x);
            add_to(&mut by_model, model, x);
            match by_pair
                .iter_mut()
                .find(|(a, b, _)| a == &**r && b == &**model)
            {
                Some(p) => p.2.add(x),
                None => by_pair.push((r.to_string(), model.to_string(), x.clone())),
            }
        }
        for (r, tool, c) in &m.tools {
            match tools.iter_mut().find(|(a, b, _)| a == &**r && b == &**tool) {
                Some(p) => {
                    p.2.calls += c.calls;
                    p.2.errors += c.errors;
                }
                None => tools.push((r.to_string(), tool.to_string(), c.clone())),
            }
        }
        all.add(&t);
        per_minute.push(json!({"minute": m.minute * 60_000, "totals": totals(&t)}));
    }
    let named = |v: Vec<(String, Totals)>, key: &str| -> Value {
        let mut v = v;
        v.sort_by_key(|b| std::cmp::Reverse(b.1.requests));
        Value::Array(
            v.into_iter()
                .map(|(n, t)| {
                    let mut o = totals(&t);
                    o[key] = json!(n);
                    o
                })
                .collect(),
        )
    };
    by_pair.sort_by_key(|b| std::cmp::Reverse(b.2.requests));
    tools.sort_by_key(|b| std::cmp::Reverse(b.2.calls));
    json!({
        "minutes": minutes.min(MINUTES as u64),
        "from": from * 60_000,
        "totals": totals(&all),
        "byRoute": named(by_route, "route"),
        "byModel": named(by_model, "model"),
        "byRouteModel": by_pair.into_iter().map(|(r, m, t)| {
            let mut o = totals(&t);
            o["route"] = json!(r);
            o["model"] = json!(m);
            o
        }).collect::<Vec<_>>(),
        "perMinute": per_minute,
        "tools": tools.into_iter().map(|(r, t, c)| json!({
            "route": r, "tool": t, "calls": c.calls, "errors": c.errors,
        })).collect::<Vec<_>>(),
    })
}

fn add_to(v: &mut Vec<(String, Totals)>, key: &str, t: &Totals) {
    match v.iter_mut().find(|(k, _)| k == key) {
        Some(p) => p.1.add(t),
        None => v.push((key.to_owned(), t.clone())),
    }
}

fn totals(t: &Totals) -> Value {
    json!({
        "requests": t.requests,
        "errors": t.errors,
        "clientErrors": t.client_errors,
        "inputTokens": t.input_tokens,
        "outputTokens": t.output_tokens,
        // `null` when nothing in the group was priced (no catalog entry), not a false zero.
        "costUsd": (t.priced > 0).then(|| t.cost_usd.normalize().to_string()),
        "avgDurationMs": if t.requests > 0 { (t.duration_ms / t.requests as f64 * 1000.0).round() / 1000.0 } else { 0.0 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_reject_what_they_cannot_honour() {
        let f = Filter::parse(Some(
            "route=openai&model=GPT-4o&status=5xx&q=hello%20world&limit=5000",
        ))
        .expect("valid");
        assert_eq!(f.route.as_deref(), Some("openai"));
        assert_eq!(f.model.as_deref(), Some("gpt-4o"));
        assert_eq!(f.status, Some(StatusFilter::Class(5)));
        assert_eq!(f.text.as_deref(), Some("hello world"));
        assert_eq!(f.limit, MAX_LIMIT);
        assert_eq!(
            Filter::parse(Some("status=404")).expect("code").status,
            Some(StatusFilter::Code(404))
        );
        for bad in [
            "status=9xx",
            "status=abc",
            "since=x",
            "limit=-1",
            "colour=red",
        ] {
            assert!(Filter::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(decode("a%2Fb+c%zz%4"), "a/b c%zz%4");
        assert_eq!(
            query_pairs(Some("q=x%3Dy&flag")),
            vec![("q".into(), "x=y".into()), ("flag".into(), String::new())]
        );
    }
}
