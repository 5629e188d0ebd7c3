//! Turns a finished `RequestLog` into OTLP spans (the wire types of `opentelemetry-proto`,
//! see `wire`): one SERVER span for the request, one CLIENT span for the upstream call, one
//! CLIENT span per MCP target call, and one span per guard that ran.

use std::borrow::Cow;
use std::time::{Instant, SystemTime};

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Array, KeyValue, StringValue, Value};
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};

use super::attrs;
use super::fields::{AttrValue, Attrs};
use crate::ctx::{GuardCheck, McpInfo, RequestLog, TargetCall};

pub fn to_kv(k: super::fields::AttrKey, v: AttrValue) -> KeyValue {
    let v = match v {
        AttrValue::Str(s) => Value::String(s.into_owned().into()),
        AttrValue::Int(i) => Value::I64(i),
        AttrValue::F64(f) => Value::F64(f),
        AttrValue::Bool(b) => Value::Bool(b),
        AttrValue::StrList(l) => Value::Array(Array::String(
            l.into_iter()
                .map(|s| StringValue::from(std::sync::Arc::<str>::from(s)))
                .collect(),
        )),
    };
    let key = match k {
        Cow::Borrowed(s) => opentelemetry::Key::from_static_str(s),
        Cow::Owned(s) => opentelemetry::Key::new(s),
    };
    KeyValue::new(key, v)
}

/// Wall-clock time of `at`, anchored on the request's start.
fn wall(log: &RequestLog, at: Instant) -> SystemTime {
    log.start_time + at.saturating_duration_since(log.start)
}

/// One span to emit, before it is tied to the request's trace.
struct Spec<'a> {
    id: [u8; 8],
    /// Parent span id and whether it is remote.
    parent: Option<([u8; 8], bool)>,
    kind: SpanKind,
    name: String,
    start: SystemTime,
    end: SystemTime,
    attrs: Attrs<'a>,
    status: Status,
}

/// OTLP `SpanFlags`: the W3C trace flags in the low byte, then "whether the parent is remote
/// is known" and "the parent is remote" (as opentelemetry-otlp sets them).
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// One span of a request, ready to encode: the OTLP `Span` fields the gateway sets. The
/// exporter writes it straight to the wire (`wire::append_span`); the viewer turns it into the
/// proto message (`to_proto`). Both give the same bytes (a `wire` test checks).
#[derive(Clone, Debug)]
pub struct SpanRec<'a> {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub flags: u32,
    pub name: String,
    pub kind: span::SpanKind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attrs: Attrs<'a>,
    pub status: status::StatusCode,
    pub status_message: String,
}

impl SpanRec<'_> {
    /// The `opentelemetry-proto` message.
    pub fn to_proto(&self) -> Span {
        Span {
            trace_id: self.trace_id.to_vec(),
            span_id: self.span_id.to_vec(),
            trace_state: String::new(),
            parent_span_id: self.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
            flags: self.flags,
            name: self.name.clone(),
            kind: self.kind as i32,
            start_time_unix_nano: self.start_unix_nano,
            end_time_unix_nano: self.end_unix_nano,
            attributes: self
                .attrs
                .iter()
                .map(|(k, v)| super::wire::kv(k.clone(), v.clone()))
                .collect(),
            dropped_attributes_count: 0,
            events: Vec::new(),
            dropped_events_count: 0,
            links: Vec::new(),
            dropped_links_count: 0,
            status: Some(opentelemetry_proto::tonic::trace::v1::Status {
                message: self.status_message.clone(),
                code: self.status as i32,
            }),
        }
    }
}

fn span<'a>(log: &RequestLog, spec: Spec<'a>) -> SpanRec<'a> {
    let Spec {
        id,
        parent,
        kind,
        name,
        start,
        end,
        attrs,
        status,
    } = spec;
    let mut flags = u32::from(log.trace.sampled) | HAS_IS_REMOTE;
    if parent.is_some_and(|(_, remote)| remote) {
        flags |= IS_REMOTE;
    }
    let kind = match kind {
        SpanKind::Server => span::SpanKind::Server,
        SpanKind::Client => span::SpanKind::Client,
        SpanKind::Internal => span::SpanKind::Internal,
        SpanKind::Producer => span::SpanKind::Producer,
        SpanKind::Consumer => span::SpanKind::Consumer,
    };
    let (status, status_message) = match status {
        Status::Unset => (status::StatusCode::Unset, String::new()),
        Status::Ok => (status::StatusCode::Ok, String::new()),
        Status::Error { description } => (status::StatusCode::Error, description.into_owned()),
    };
    SpanRec {
        trace_id: log.trace.trace_id,
        span_id: id,
        parent_span_id: parent.map(|(p, _)| p),
        flags,
        name,
        kind,
        start_unix_nano: nanos(start),
        end_unix_nano: nanos(end.max(start)),
        attrs,
        status,
        status_message,
    }
}

fn server_failed(log: &RequestLog) -> Option<String> {
    if let Some(e) = &log.error {
        return Some(e.clone());
    }
    log.status
        .filter(|s| *s >= 500)
        .map(|s| format!("HTTP status {s}"))
}

/// The GenAI attributes the upstream CLIENT span repeats from the SERVER span: what names the
/// call. Usage, parameters and finish reasons stay on the SERVER span only, so backends that
/// add up token usage over a trace's spans (Langfuse, Phoenix) count each call once.
const CLIENT_GENAI: &[&str] = &[
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
];

/// How many spans `build` makes for the request.
pub fn count(log: &RequestLog) -> usize {
    1 + usize::from(log.upstream_span_id.is_some())
        + routing(log).map_or(0, |r| r.abandoned.len())
        + log.mcp.as_ref().map_or(0, |m| m.target_calls.len())
        + log.guard.as_ref().map_or(0, |g| g.checks.len())
}

/// Builds every span of the request. `server_attrs` are the SERVER span's attributes, already
/// including custom fields; `genai` the request's GenAI attributes (the CLIENT span repeats
/// those in `CLIENT_GENAI`);
/// `name` overrides the default (`METHOD path`, or for MCP `method target` such as
/// `tools/call echo`).
pub fn build<'a>(
    log: &'a RequestLog,
    server_attrs: Attrs<'a>,
    genai: &Attrs<'a>,
    name: Option<String>,
) -> Vec<SpanRec<'a>> {
    let end = log.end.unwrap_or_else(Instant::now);
    let mut out = Vec::with_capacity(count(log));
    let name = name.unwrap_or_else(|| server_span_name(log));
    let status = server_failed(log).map_or(Status::Unset, Status::error);
    out.push(span(
        log,
        Spec {
            id: log.trace.span_id,
            parent: log.trace.parent_span_id.map(|p| (p, true)),
            kind: SpanKind::Server,
            name,
            start: log.start_time,
            end: wall(log, end),
            attrs: server_attrs,
            status,
        },
    ));
    if let Some(r) = routing(log) {
        for (i, a) in r.abandoned.iter().enumerate() {
            if let Some(id) = a.span_id {
                out.push(attempt_span(log, a, i + 1, id));
            }
        }
    }
    if let Some(id) = log.upstream_span_id {
        out.push(upstream_span(log, genai, id, end));
    }
    if let Some(m) = &log.mcp {
        for call in &m.target_calls {
            out.push(target_call_span(log, m, call, end));
        }
    }
    if let Some(g) = &log.guard {
        for c in &g.checks {
            out.push(guard_span(log, c));
        }
    }
    out
}

/// One guard that ran: INTERNAL for a regex pass, CLIENT for a webhook or moderation call.
fn guard_span<'a>(log: &RequestLog, c: &'a GuardCheck) -> SpanRec<'a> {
    let mut a: Attrs = vec![
        ("guardrail.phase".into(), c.phase.as_str().into()),
        ("guardrail.type".into(), c.kind.into()),
        ("guardrail.index".into(), AttrValue::Int(c.index as i64)),
        ("guardrail.action".into(), c.action.as_str().into()),
    ];
    if !c.rules.is_empty() {
        a.push((
            "guardrail.rules".into(),
            crate::ctx::rules_summary(&c.rules).into(),
        ));
    }
    if c.masked > 0 {
        a.push((
            "guardrail.masked".into(),
            AttrValue::Int(i64::from(c.masked)),
        ));
    }
    a.push((
        "guardrail.busy_us".into(),
        AttrValue::Int(c.busy.as_micros() as i64),
    ));
    let mut kind = SpanKind::Internal;
    if let Some(h) = &c.http {
        kind = SpanKind::Client;
        a.push(("http.request.method".into(), h.method.into()));
        a.push(("url.full".into(), h.url.as_str().into()));
        let (host, port) = match h.authority.rsplit_once(':') {
            Some((host, p)) => (host, p.parse::<i64>().ok()),
            None => (h.authority.as_str(), None),
        };
        a.push(("server.address".into(), host.into()));
        if let Some(p) = port {
            a.push(("server.port".into(), AttrValue::Int(p)));
        }
        if let Some(s) = c.status_code() {
            a.push((
                "http.response.status_code".into(),
                AttrValue::Int(i64::from(s)),
            ));
        }
    }
    let status = match &c.error {
        Some(e) => {
            a.push(("error.type".into(), "guardrail_unavailable".into()));
            Status::error(e.clone())
        }
        None if c.action == crate::ctx::GuardAction::Reject => {
            Status::error(format!("rejected by {}[{}]", c.kind, c.index))
        }
        None => Status::Unset,
    };
    span(
        log,
        Spec {
            id: c.span_id,
            parent: Some((log.trace.span_id, false)),
            kind,
            name: format!("guardrail {} {}", c.phase.as_str(), c.kind),
            start: wall(log, c.start),
            end: wall(log, c.end),
            attrs: a,
            status,
        },
    )
}

/// The SERVER span's default name: `METHOD path`, or for MCP `method target`.
fn server_span_name(log: &RequestLog) -> String {
    // MCP semconv: `{mcp.method.name} {target}` (tool, prompt or resource name).
    if let Some(m) = &log.mcp
        && let Some(method) = &m.method
    {
        return match m.tool_name.as_ref().or(m.resource.as_ref()) {
            Some(t) => format!("{method} {t}"),
            None => method.clone(),
        };
    }
    if log.method.is_empty() {
        "unknown".to_owned()
    } else {
        format!("{} {}", log.method, log.path)
    }
}

/// The CLIENT span of the call to the upstream (the provider, or the host backend).
fn upstream_span<'a>(
    log: &'a RequestLog,
    genai: &Attrs<'a>,
    id: [u8; 8],
    end: Instant,
) -> SpanRec<'a> {
    let mut a = Attrs::new();
    if !log.method.is_empty() {
        a.push(("http.request.method".into(), attrs::method(&log.method)));
    }
    if let Some(ep) = &log.endpoint {
        server_address(ep, &mut a);
    }
    if let Some(s) = log.status {
        a.push((
            "http.response.status_code".into(),
            AttrValue::Int(i64::from(s)),
        ));
    }
    let name = match &log.llm {
        Some(l) => {
            a.extend(
                genai
                    .iter()
                    .filter(|(k, _)| CLIENT_GENAI.contains(&k.as_ref()))
                    .cloned(),
            );
            match (&l.request_model, l.operation) {
                (Some(m), op) if !op.is_empty() => format!("{op} {m}"),
                _ => l.provider.clone(),
            }
        }
        None => log.method.clone(),
    };
    if let Some(r) = routing(log) {
        a.push((
            "llm.attempt".into(),
            AttrValue::Int(i64::from(r.attempts.max(1))),
        ));
        a.push(("llm.target".into(), r.target.as_str().into()));
    }
    if let Some(f) = &log.upstream_flow {
        attrs::flow(f, &mut a);
    }
    let upstream_failed = log.status.is_some_and(|s| s >= 500)
        || (log.error.is_some() && log.blame == Some(crate::ctx::Blame::Upstream));
    let status = if upstream_failed {
        Status::error(log.error.clone().unwrap_or_else(|| "upstream error".into()))
    } else {
        Status::Unset
    };
    let start = log.upstream_start.map_or(log.start_time, |t| wall(log, t));
    let stop = wall(log, log.upstream_end.unwrap_or(end));
    span(
        log,
        Spec {
            id,
            parent: Some((log.trace.span_id, false)),
            kind: SpanKind::Client,
            name,
            start,
            end: stop,
            attrs: a,
            status,
        },
    )
}

/// `server.address` and `server.port` of an upstream `host:port`.
fn server_address<'a>(ep: &'a str, a: &mut Attrs<'a>) {
    let (host, port) = match ep.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h, p.parse::<i64>().ok()),
        _ => (ep, None),
    };
    a.push(("server.address".into(), host.into()));
    if let Some(p) = port {
        a.push(("server.port".into(), AttrValue::Int(p)));
    }
}

fn routing(log: &RequestLog) -> Option<&crate::ctx::RoutingInfo> {
    log.llm.as_ref().and_then(|l| l.routing.as_deref())
}

/// The CLIENT span of an LLM attempt a retry or failover moved on from: attempt number,
/// target, why it was abandoned.
fn attempt_span<'a>(
    log: &'a RequestLog,
    a: &'a crate::ctx::Attempt,
    n: usize,
    id: [u8; 8],
) -> SpanRec<'a> {
    let mut at = Attrs::new();
    at.push(("llm.attempt".into(), AttrValue::Int(n as i64)));
    at.push(("llm.target".into(), a.target.as_str().into()));
    at.push(("llm.backend".into(), a.backend.as_str().into()));
    server_address(&a.endpoint, &mut at);
    if let Some(code) = a
        .reason
        .strip_prefix("status ")
        .and_then(|c| c.parse::<i64>().ok())
    {
        at.push(("http.response.status_code".into(), AttrValue::Int(code)));
    }
    at.push(("error.type".into(), a.reason.as_str().into()));
    let name = match log.llm.as_ref().map(|l| l.operation) {
        Some(op) if !op.is_empty() => format!("{op} {}", a.target),
        _ => a.target.clone(),
    };
    span(
        log,
        Spec {
            id,
            parent: Some((log.trace.span_id, false)),
            kind: SpanKind::Client,
            name,
            start: wall(log, a.start),
            end: wall(log, a.end),
            attrs: at,
            status: Status::error(format!("abandoned: {}", a.reason)),
        },
    )
}

/// The CLIENT span of one call to an MCP target.
fn target_call_span<'a>(
    log: &RequestLog,
    m: &'a McpInfo,
    call: &'a TargetCall,
    end: Instant,
) -> SpanRec<'a> {
    let mut a = Attrs::new();
    if let Some(method) = &m.method {
        a.push(("mcp.method.name".into(), method.as_str().into()));
    }
    a.push(("mcp.target".into(), call.target.as_str().into()));
    if let Some(t) = &m.tool_name {
        a.push(("gen_ai.tool.name".into(), t.as_str().into()));
    }
    let status = match &call.error {
        Some(e) => {
            a.push(("error.type".into(), e.as_str().into()));
            Status::error(e.clone())
        }
        None => Status::Unset,
    };
    let name = match &m.method {
        Some(method) => format!("{method} {}", call.target),
        None => call.target.clone(),
    };
    span(
        log,
        Spec {
            id: call.span_id,
            parent: Some((log.trace.span_id, false)),
            kind: SpanKind::Client,
            name,
            start: wall(log, call.start),
            end: wall(log, call.end.unwrap_or(end)),
            attrs: a,
            status,
        },
    )
}
