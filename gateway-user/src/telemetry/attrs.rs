//! Default fields of a finished request: the access-log set (agentgateway's names and order)
//! and the extra span attributes (URL/protocol semconv, OpenTelemetry GenAI and MCP semconv,
//! kernel-measured TCP timing).
//!
//! Kernel flow attributes (from `RequestLog.downstream_flow` on the SERVER span and
//! `upstream_flow` on the upstream CLIENT span): `network.tcp.connect_duration_ms`,
//! `network.tcp.rtt_us`, `network.tcp.retransmits`, `network.tcp.bytes_sent`,
//! `network.tcp.bytes_received`. The access log carries them prefixed `downstream.` /
//! `upstream.` (e.g. `upstream.tcp.rtt_us`).

use std::time::Duration;

use crate::ctx::{FlowTiming, RequestLog};

use super::fields::{AttrValue, Attrs};

fn push<'a>(out: &mut Attrs<'a>, k: &'static str, v: impl Into<AttrValue<'a>>) {
    out.push((std::borrow::Cow::Borrowed(k), v.into()));
}

/// A value known at compile time (HTTP version, scheme, operation): not copied per request.
fn push_static(out: &mut Attrs<'_>, k: &'static str, v: &'static str) {
    out.push((std::borrow::Cow::Borrowed(k), AttrValue::static_str(v)));
}

/// An HTTP method as a value: the standard ones are static strings.
pub fn method(m: &str) -> AttrValue<'_> {
    match m {
        "GET" => AttrValue::static_str("GET"),
        "POST" => AttrValue::static_str("POST"),
        "PUT" => AttrValue::static_str("PUT"),
        "DELETE" => AttrValue::static_str("DELETE"),
        "PATCH" => AttrValue::static_str("PATCH"),
        "HEAD" => AttrValue::static_str("HEAD"),
        "OPTIONS" => AttrValue::static_str("OPTIONS"),
        other => other.into(),
    }
}

/// `3165ms`, agentgateway's duration rendering.
pub fn duration_ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Fields shared by the access log and the SERVER span, in agentgateway's order.
pub fn base(log: &RequestLog) -> Attrs<'_> {
    let mut out = Attrs::with_capacity(24);
    if !log.gateway.is_empty() {
        push(&mut out, "gateway", log.gateway.as_str());
    }
    if !log.listener.is_empty() {
        push(&mut out, "listener", log.listener.as_str());
    }
    if let Some(r) = &log.route {
        push(&mut out, "route", r.as_str());
    }
    if let Some(e) = &log.endpoint {
        push(&mut out, "endpoint", e.as_str());
    }
    if let Some(a) = log.src_addr {
        push(&mut out, "src.addr", a.to_string());
    }
    if !log.method.is_empty() {
        out.push(("http.method".into(), method(&log.method)));
    }
    if !log.host.is_empty() {
        push(&mut out, "http.host", log.host.as_str());
    }
    if !log.path.is_empty() {
        push(&mut out, "http.path", log.path.as_str());
    }
    push_static(&mut out, "http.version", log.version);
    if let Some(s) = log.status {
        out.push(("http.status".into(), AttrValue::Int(i64::from(s))));
    }
    if log.trace.trace_id != [0; 16] {
        push(&mut out, "trace.id", log.trace.trace_id_hex());
        push(&mut out, "span.id", log.trace.span_id_hex());
    }
    if let Some(i) = &log.identity {
        push(&mut out, "apikey.id", i.key_id.as_str());
    }
    if let Some(j) = &log.jwt {
        for (claim, name) in [("sub", "jwt.sub"), ("iss", "jwt.iss")] {
            if let Some(v) = j.get(claim).and_then(serde_json::Value::as_str) {
                push(&mut out, name, v);
            }
        }
    }
    if let Some(u) = &log.basic_user {
        push(&mut out, "basicauth.user", u.as_str());
    }
    if let Some(r) = &log.rate_limit {
        push(&mut out, "ratelimit.remaining", r.remaining);
    }
    if let Some(f) = log.store_failure {
        push(&mut out, "redis.failure", f);
    }
    if let Some(b) = &log.budget {
        if let Some(t) = &b.tightest {
            push(&mut out, "budget.remaining", t.as_str());
        }
        if !b.exceeded.is_empty() {
            push(&mut out, "budget.exceeded", b.exceeded.join(","));
        }
    }
    if let Some(l) = &log.llm {
        push(&mut out, "llm.provider", l.provider.as_str());
        if let Some(m) = &l.request_model {
            push(&mut out, "llm.request.model", m.as_str());
        }
        if let Some(t) = l.input_tokens {
            push(&mut out, "llm.request.tokens", t);
        }
        if let Some(m) = &l.response_model {
            push(&mut out, "llm.response.model", m.as_str());
        }
        if let Some(t) = l.output_tokens {
            push(&mut out, "llm.response.tokens", t);
        }
        // agentgateway's name; a decimal string, so the log line's sum is exact.
        if let Some(total) = l.cost.as_ref().and_then(|c| c.total()) {
            push(&mut out, "agw.ai.usage.cost.total", total.to_string());
        }
    }
    if let Some(m) = &log.mcp {
        if let Some(v) = &m.method {
            push(&mut out, "mcp.method.name", v.as_str());
        }
        if let Some(v) = &m.target {
            push(&mut out, "mcp.target", v.as_str());
        }
        if let Some(v) = &m.tool_name {
            push(&mut out, "gen_ai.tool.name", v.as_str());
        }
        if let Some(v) = &m.resource {
            push(&mut out, "mcp.resource.uri", v.as_str());
        }
        if let Some(v) = &m.session_id {
            push(&mut out, "mcp.session.id", v.as_str());
        }
    }
    if let Some(g) = &log.guard {
        guard(g, &mut out);
    }
    if let Some(r) = log.llm.as_ref().and_then(|l| l.routing.as_deref()) {
        routing(r, &mut out);
    }
    if let Some(e) = &log.error {
        push(&mut out, "error", e.as_str());
    }
    push(&mut out, "duration", duration_ms(log.duration()));
    out
}

/// Steering (`llm::route`): `llm.virtual_model` and `llm.routing` (its kind), `llm.target`
/// (the model that served), `llm.attempts`, `llm.retried` (`target: reason` per abandoned
/// attempt), `llm.ejected` (backends this request's failures ejected).
fn routing<'a>(r: &'a crate::ctx::RoutingInfo, out: &mut Attrs<'a>) {
    if let Some(v) = &r.virtual_model {
        push(out, "llm.virtual_model", v.as_str());
    }
    if let Some(k) = r.kind {
        push_static(out, "llm.routing", k);
    }
    if !r.target.is_empty() {
        push(out, "llm.target", r.target.as_str());
    }
    push(out, "llm.attempts", u64::from(r.attempts));
    if !r.abandoned.is_empty() {
        let s: Vec<String> = r
            .abandoned
            .iter()
            .map(|a| format!("{}: {}", a.target, a.reason))
            .collect();
        push(out, "llm.retried", s.join(", "));
    }
    if !r.ejected.is_empty() {
        push(out, "llm.ejected", r.ejected.join(","));
    }
}

/// Guard outcomes per phase: `guardrail.request.action` (`allow`, `mask`, `reject`,
/// `failopen`), `.rules` (rule types with counts, `ssn=2,email=1`), `.masked`, `.rejected_by`.
fn guard<'a>(g: &'a crate::ctx::GuardInfo, out: &mut Attrs<'a>) {
    const KEYS: [[&str; 4]; 2] = [
        [
            "guardrail.request.action",
            "guardrail.request.rules",
            "guardrail.request.masked",
            "guardrail.request.rejected_by",
        ],
        [
            "guardrail.response.action",
            "guardrail.response.rules",
            "guardrail.response.masked",
            "guardrail.response.rejected_by",
        ],
    ];
    for (keys, phase) in KEYS.iter().zip([&g.request, &g.response]) {
        let Some(p) = phase else { continue };
        push_static(out, keys[0], p.action.as_str());
        if !p.rules.is_empty() {
            push(out, keys[1], p.rules_summary());
        }
        if p.masked > 0 {
            push(out, keys[2], u64::from(p.masked));
        }
        if let Some(r) = &p.rejected_by {
            push(out, keys[3], r.as_str());
        }
    }
}

/// Access-log-only additions (kernel timing, prefixed by side).
pub fn log_extra<'a>(log: &'a RequestLog, out: &mut Attrs<'a>) {
    for (keys, flow) in [
        (
            [
                "downstream.tcp.connect_ms",
                "downstream.tcp.rtt_us",
                "downstream.tcp.retransmits",
            ],
            &log.downstream_flow,
        ),
        (
            [
                "upstream.tcp.connect_ms",
                "upstream.tcp.rtt_us",
                "upstream.tcp.retransmits",
            ],
            &log.upstream_flow,
        ),
    ] {
        if let Some(f) = flow {
            if let Some(c) = f.connect {
                push(out, keys[0], c.as_millis() as u64);
            }
            if let Some(r) = f.srtt {
                push(out, keys[1], r.as_micros() as u64);
            }
            if let Some(r) = f.retransmits {
                push(out, keys[2], u64::from(r));
            }
        }
    }
}

/// Kernel TCP timing of one connection as span attributes.
pub fn flow<'a>(f: &'a FlowTiming, out: &mut Attrs<'a>) {
    if let Some(c) = f.connect {
        out.push((
            "network.tcp.connect_duration_ms".into(),
            AttrValue::F64(c.as_secs_f64() * 1000.0),
        ));
    }
    if let Some(r) = f.srtt {
        push(out, "network.tcp.rtt_us", r.as_micros() as u64);
    }
    if let Some(r) = f.retransmits {
        push(out, "network.tcp.retransmits", u64::from(r));
    }
    if let Some(b) = f.bytes_sent {
        push(out, "network.tcp.bytes_sent", b);
    }
    if let Some(b) = f.bytes_received {
        push(out, "network.tcp.bytes_received", b);
    }
}

/// Request parameters mapped to GenAI semconv `gen_ai.request.*` names.
const PARAMS: &[(&str, &str)] = &[
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
    ("top_k", "gen_ai.request.top_k"),
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("max_completion_tokens", "gen_ai.request.max_tokens"),
    ("max_output_tokens", "gen_ai.request.max_tokens"),
    ("frequency_penalty", "gen_ai.request.frequency_penalty"),
    ("presence_penalty", "gen_ai.request.presence_penalty"),
    ("seed", "gen_ai.request.seed"),
    ("n", "gen_ai.request.choice.count"),
    ("dimensions", "gen_ai.embeddings.dimension.count"),
];

fn json_attr(v: &serde_json::Value) -> Option<AttrValue<'_>> {
    Some(match v {
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => AttrValue::Int(i),
            None => AttrValue::F64(n.as_f64()?),
        },
        serde_json::Value::String(s) => s.as_str().into(),
        serde_json::Value::Bool(b) => AttrValue::Bool(*b),
        serde_json::Value::Array(a) => AttrValue::StrList(
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => return None,
    })
}

/// SERVER span attributes beyond `base`; `genai` is `genai(log.llm)`, built once for the
/// SERVER and the upstream CLIENT span.
pub fn span_extra<'a>(log: &'a RequestLog, genai: &Attrs<'a>, out: &mut Attrs<'a>) {
    push_static(out, "url.scheme", log.scheme);
    match log.version {
        "HTTP/1.1" => push_static(out, "network.protocol.version", "1.1"),
        "HTTP/1.0" => push_static(out, "network.protocol.version", "1.0"),
        "HTTP/2" | "HTTP/2.0" => push_static(out, "network.protocol.version", "2"),
        "HTTP/3" | "HTTP/3.0" => push_static(out, "network.protocol.version", "3"),
        _ => {}
    }
    out.extend(genai.iter().cloned());
    if let Some(m) = &log.mcp {
        if m.tool_name.is_some() && log.llm.is_none() {
            push_static(out, "gen_ai.operation.name", "execute_tool");
        }
        if let Some(id) = &m.request_id {
            let id = match id {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            push(out, "jsonrpc.request.id", id);
        }
        if let Some(e) = &m.error_type {
            push(out, "error.type", e.as_str());
        }
    }
    if let Some(f) = &log.downstream_flow {
        flow(f, out);
    }
    if log.error.is_some() || log.status.is_some_and(|s| s >= 500) {
        let has_type = out.iter().any(|(k, _)| k == "error.type");
        if !has_type {
            let t = match (log.status, log.blame) {
                (Some(s), _) if s >= 500 => s.to_string(),
                (_, Some(b)) => format!("{b:?}").to_lowercase(),
                _ => "_OTHER".to_owned(),
            };
            push(out, "error.type", t);
        }
    }
}

/// OpenTelemetry GenAI semantic-convention attributes.
pub fn genai<'a>(l: &'a crate::ctx::LlmInfo, out: &mut Attrs<'a>) {
    if !l.operation.is_empty() {
        push_static(out, "gen_ai.operation.name", l.operation);
    }
    push(out, "gen_ai.provider.name", l.provider.as_str());
    if let Some(m) = &l.request_model {
        push(out, "gen_ai.request.model", m.as_str());
    }
    if let Some(m) = &l.response_model {
        push(out, "gen_ai.response.model", m.as_str());
    }
    if let Some(t) = l.input_tokens {
        push(out, "gen_ai.usage.input_tokens", t);
    }
    if let Some(t) = l.output_tokens {
        push(out, "gen_ai.usage.output_tokens", t);
    }
    if let Some(t) = l.cached_input_tokens {
        push(out, "gen_ai.usage.cache_read.input_tokens", t);
    }
    if let Some(t) = l.reasoning_tokens {
        push(out, "gen_ai.usage.reasoning_tokens", t);
    }
    // The cost breakdown (span only), decimal strings under agentgateway's names.
    if let Some(lines) = l.cost.as_ref().and_then(|c| c.lines.as_ref()) {
        const KEYS: [&str; 7] = [
            "agw.ai.usage.cost.input",
            "agw.ai.usage.cost.output",
            "agw.ai.usage.cost.cache_read",
            "agw.ai.usage.cost.cache_write",
            "agw.ai.usage.cost.reasoning",
            "agw.ai.usage.cost.input_audio",
            "agw.ai.usage.cost.output_audio",
        ];
        for (key, (_, v)) in KEYS.iter().zip(&lines[1..]) {
            push(out, key, v.to_string());
        }
    }
    for (param, name) in PARAMS {
        if let Some(v) = l.params.get(*param).and_then(json_attr)
            && !out.iter().any(|(k, _)| k == name)
        {
            push(out, name, v);
        }
    }
    if let Some(stop) = l.params.get("stop") {
        let list = match stop {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        if !list.is_empty() {
            push(
                out,
                "gen_ai.request.stop_sequences",
                AttrValue::StrList(list),
            );
        }
    }
    if !l.finish_reasons.is_empty() {
        push(
            out,
            "gen_ai.response.finish_reasons",
            AttrValue::StrList(l.finish_reasons.clone()),
        );
    }
    if l.streaming {
        out.push(("gen_ai.request.stream".into(), AttrValue::Bool(true)));
    }
    if let Some(t) = l.first_token {
        out.push((
            "gen_ai.server.time_to_first_token".into(),
            AttrValue::F64(t.as_secs_f64()),
        ));
    }
}

/// The OpenInference attribute names (Arize Phoenix and Arize read them) for a request's
/// SERVER span, added by `convention: openinference` on a trace destination: what the seeds'
/// Phoenix `fields` block spells out by hand, and more (invocation parameters, cached and
/// reasoning tokens). Message text appears only when the config already captures it (a field
/// or filter that reads `llm.prompt` / `llm.completion`): the convention never turns on
/// recording of prompts by itself.
pub fn openinference<'a>(log: &'a RequestLog, out: &mut Attrs<'a>) {
    let Some(l) = &log.llm else {
        let kind = match &log.mcp {
            Some(m) if m.tool_name.is_some() => "TOOL",
            _ => "CHAIN",
        };
        push_static(out, "openinference.span.kind", kind);
        if let Some(t) = log.mcp.as_ref().and_then(|m| m.tool_name.as_ref()) {
            push(out, "tool.name", t.as_str());
        }
        return;
    };
    push_static(out, "openinference.span.kind", "LLM");
    push(out, "llm.system", l.provider.as_str());
    push(out, "llm.provider", l.provider.as_str());
    if let Some(m) = l.response_model.as_ref().or(l.request_model.as_ref()) {
        push(out, "llm.model_name", m.as_str());
    }
    for (k, v) in [
        ("llm.token_count.prompt", l.input_tokens),
        ("llm.token_count.completion", l.output_tokens),
        ("llm.token_count.total", l.total_tokens),
        (
            "llm.token_count.prompt_details.cache_read",
            l.cached_input_tokens,
        ),
        (
            "llm.token_count.completion_details.reasoning",
            l.reasoning_tokens,
        ),
    ] {
        if let Some(v) = v {
            push(out, k, v);
        }
    }
    if !l.params.is_empty()
        && let Ok(json) = serde_json::to_string(&l.params)
    {
        push(out, "llm.invocation_parameters", json);
    }
    if let Some(serde_json::Value::Array(msgs)) = &l.prompt {
        for (i, m) in msgs.iter().enumerate() {
            for part in ["role", "content"] {
                let text = match m.get(part) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(serde_json::Value::Null) | None => continue,
                    Some(other) => other.to_string(),
                };
                out.push((
                    format!("llm.input_messages.{i}.message.{part}").into(),
                    text.into(),
                ));
            }
        }
    }
    if let Some(c) = &l.completion {
        for (i, text) in c.iter().enumerate() {
            out.push((
                format!("llm.output_messages.{i}.message.role").into(),
                AttrValue::static_str("assistant"),
            ));
            out.push((
                format!("llm.output_messages.{i}.message.content").into(),
                text.as_str().into(),
            ));
        }
    }
}
