//! Telemetry behaviour: golden access-log lines, sampling and propagation, span shape, config
//! errors, the seed documents' CEL fields (`seeds`), and export to real receivers (rotel over
//! gRPC and HTTP, a fake Langfuse-style HTTP endpoint, a dead and a stalled collector).

use std::sync::mpsc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use opentelemetry_proto::tonic::trace::v1::span;

use super::*;
use crate::cel::tests::fixture;
use crate::config::telemetry::RawTracing;
use crate::ctx::{McpInfo, TargetCall};

mod export;
mod reload;
mod seeds;

type Lines = mpsc::Receiver<String>;

fn no_env(_: &str) -> Option<String> {
    None
}

fn build_with(
    tracing: Option<&RawTracing>,
    logging: Option<&RawLogging>,
    policy: Option<&RawFrontendTracing>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Arc<Telemetry>, Arc<Metrics>, Lines), TelemetryError> {
    let metrics = Metrics::new();
    let (tx, rx) = mpsc::channel();
    let cfg = TelemetryConfig {
        otlp_logs: None,
        tracing,
        logging,
        frontend_tracing: policy,
        gateway_name: "default/agentgateway",
    };
    let t = Telemetry::build(cfg, metrics.clone(), Sink::Capture(tx), env, None)?;
    Ok((t, metrics, rx))
}

/// The request's spans as the telemetry thread builds them for export (`None`: not sampled,
/// filtered out, or shed).
fn spans_of(t: &Telemetry, log: &RequestLog) -> Option<Vec<super::Span>> {
    let p = t.policy.load();
    let exec = Executor::new(log, p.refs);
    let tracer = p.tracer.as_ref().expect("tracing on");
    assert!(!t.queues.is_empty(), "an exporter");
    if !log.trace.sampled || tracer.filter.as_ref().is_some_and(|f| !exec.eval_bool(f)) {
        return None;
    }
    let recs = t.build_spans(
        &tracer.fields,
        RawConvention::GenAi,
        log,
        &exec,
        &attrs::base(log),
    );
    Some(recs.iter().map(super::SpanRec::to_proto).collect())
}

fn yaml<T: serde::de::DeserializeOwned>(s: &str) -> T {
    yaml_serde::from_str(s).expect("test yaml parses")
}

/// A loopback port with nothing listening on it.
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The seed 000 Gemini request, ending at 2025-09-12T18:23:54.661414Z after 3165ms.
fn gemini_log() -> RequestLog {
    let mut log = fixture();
    log.route = Some("default/google".into());
    log.endpoint = Some("generativelanguage.googleapis.com:443".into());
    log.path = "/gemini".into();
    let end = UNIX_EPOCH + Duration::new(1_757_701_434, 661_414_000);
    log.start_time = end - Duration::from_millis(3165);
    log.end = Some(log.start + Duration::from_millis(3165));
    log.trace.trace_id = [
        0xd6, 0x5e, 0x4e, 0xeb, 0x98, 0x3e, 0x2d, 0x96, 0x4e, 0x71, 0xe8, 0xdc, 0x8c, 0x40, 0x5f,
        0x97,
    ];
    log.trace.span_id = [0xb8, 0x36, 0xe1, 0xb1, 0xd5, 0x1b, 0x3e, 0x74];
    if let Some(l) = log.llm.as_mut() {
        l.provider = "gemini".into();
        l.request_model = None;
        l.response_model = Some("gemini-1.5-flash-latest".into());
    }
    log
}

#[test]
fn golden_text_line_seed_000() {
    let (t, _, lines) = build_with(None, None, None, &no_env).expect("builds");
    t.finish(gemini_log());
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(1)).expect("a line"),
        "2025-09-12T18:23:54.661414Z\tinfo\trequest\tgateway=default/agentgateway listener=http \
         route=default/google endpoint=generativelanguage.googleapis.com:443 \
         src.addr=127.0.0.1:49576 http.method=POST http.host=localhost http.path=/gemini \
         http.version=HTTP/1.1 http.status=200 trace.id=d65e4eeb983e2d964e71e8dc8c405f97 \
         span.id=b836e1b1d51b3e74 llm.provider=gemini llm.request.tokens=8 \
         llm.response.model=gemini-1.5-flash-latest llm.response.tokens=313 duration=3165ms"
    );
    assert!(!t.tracing_enabled());
    assert_eq!(t.capture(), Capture::default());
}

#[test]
fn json_log_with_fields_and_filter() {
    let logging: RawLogging = yaml(
        r#"
format: json
filter: 'response.code < 500'
fields:
  add:
    user_agent: 'request.headers["user-agent"]'
    auth: 'request.headers.authorization'
    gen_ai.request: 'flatten(llm.params)'
    broken: '1 + "a"'
  remove: [src.addr]
"#,
    );
    let (t, metrics, lines) = build_with(None, Some(&logging), None, &no_env).expect("builds");
    assert!(t.capture().request_headers && !t.capture().prompt);
    t.finish(gemini_log());
    let line = lines.recv_timeout(Duration::from_secs(1)).expect("a line");
    let v: serde_json::Value = serde_json::from_str(&line).expect("json");
    assert_eq!(v["http.status"], 200);
    assert_eq!(v["user_agent"], "OpenAI/Python 3.54.0");
    assert_eq!(v["auth"], "<redacted>");
    assert_eq!(v["gen_ai.request.max_tokens"], 100);
    assert_eq!(v["timestamp"], "2025-09-12T18:23:54.661414Z");
    assert!(
        v.get("src.addr").is_none() && v.get("broken").is_none(),
        "{line}"
    );
    assert!(!line.contains("sk-secret"));
    assert_eq!(metrics.cel_errors.with_label_values(&["logging"]).get(), 1);

    let mut failed = gemini_log();
    failed.status = Some(502);
    t.finish(failed);
    assert!(
        lines.recv_timeout(Duration::from_millis(200)).is_err(),
        "filtered out"
    );
}

#[test]
fn warn_level_disables_access_log() {
    let logging: RawLogging = yaml("level: warn,gateway=debug");
    let (t, metrics, lines) = build_with(None, Some(&logging), None, &no_env).expect("builds");
    t.finish(gemini_log());
    assert!(lines.recv_timeout(Duration::from_millis(100)).is_err());
    // Metrics still count the request.
    assert!(metrics.encode().contains("agentgateway_requests_total{"));
}

#[test]
fn config_errors_name_path_and_value() {
    let bad: RawTracing = yaml(
        "otlpEndpoint: http://127.0.0.1:4317\nfields:\n  add:\n    gen_ai.request: 'flatten(llm.params'\n",
    );
    let err = build_with(Some(&bad), None, None, &no_env)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(r#"config.tracing.fields.add["gen_ai.request"]: invalid CEL expression "flatten(llm.params""#),
        "{err}"
    );
    let bad: RawLogging = yaml("format: xml");
    let err = build_with(None, Some(&bad), None, &no_env)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        r#"config.logging.format: must be `text` or `json` (got "xml")"#
    );
    let bad: RawTracing =
        yaml("otlpEndpoint: http://127.0.0.1:4317\nrandomSampling: 'request.path =='");
    let err = build_with(Some(&bad), None, None, &no_env)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("config.tracing.randomSampling: "), "{err}");
}

/// Over-long and over-deep expressions are refused before parsing, with the field's path, the
/// bound, and the start of the value.
#[test]
fn cel_bounds_name_the_field() {
    let fuzz = include_str!("../../fuzz/regressions/cel/parser-memory-blowup");
    let deep = include_str!("../../fuzz/regressions/cel/parser-memory-blowup-cel-chars");
    let long = format!("'{}'", "x".repeat(11998));
    for (expr, start, end) in [
        (
            long.as_str(),
            r#"config.tracing.fields.add["x"]: CEL expression "'xxxxxxxx"#,
            "… is 12000 bytes; the limit is 4096".to_owned(),
        ),
        (
            fuzz,
            r#"config.tracing.fields.add["x"]: CEL expression "o+[[Y[--(--[[,--;;;("#,
            "has ';' at byte 16, which starts no CEL token".to_owned(),
        ),
        (
            // The same without its `;` and `\`: 66 brackets deep.
            deep,
            r#"config.tracing.fields.add["x"]: CEL expression "o+[[Y[--(--[[,--("#,
            format!("; the limit is {}", crate::cel::MAX_DEPTH),
        ),
    ] {
        // JSON is YAML: the expression as a JSON string needs no further quoting.
        let bad: RawTracing = yaml(&format!(
            "otlpEndpoint: http://127.0.0.1:4317\nfields: {{add: {{x: {}}}}}",
            serde_json::json!(expr)
        ));
        let t0 = Instant::now();
        let err = build_with(Some(&bad), None, None, &no_env)
            .unwrap_err()
            .to_string();
        assert!(t0.elapsed() < Duration::from_secs(1), "{err}");
        assert!(err.starts_with(start) && err.ends_with(&end), "{err}");
        assert!(err.len() < 400, "{err}");
    }
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            http::header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    h
}

#[tokio::test]
async fn sampling_and_propagation() {
    let tracing: RawTracing = yaml(&format!("otlpEndpoint: http://127.0.0.1:{}", dead_port()));
    let (t, _, _lines) = build_with(Some(&tracing), None, None, &no_env).expect("builds");

    // No incoming trace, randomSampling defaults to false: no ids, nothing injected.
    let mut log = fixture();
    t.start(&headers(&[]), &mut log);
    assert_eq!(log.trace, TraceIds::default());
    let mut up = HeaderMap::new();
    t.inject_upstream(&mut log, &mut up);
    assert!(up.get("traceparent").is_none() && log.upstream_span_id.is_none());
    assert_eq!(t.traceparent_for(&log, [1; 8]), None);

    // Incoming trace, clientSampling defaults to true: it becomes the parent.
    let mut log = fixture();
    t.start(
        &headers(&[("traceparent", TRACEPARENT), ("tracestate", "congo=t61")]),
        &mut log,
    );
    assert_eq!(log.trace.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        log.trace.parent_span_id,
        Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
    );
    assert!(log.trace.sampled);
    assert_ne!(log.trace.span_id, [0; 8]);
    let mut up = headers(&[("tracestate", "congo=t61")]);
    t.inject_upstream(&mut log, &mut up);
    let id = log.upstream_span_id.expect("client span id");
    assert_ne!(id, log.trace.span_id);
    assert_eq!(
        up["traceparent"],
        format!(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01",
            crate::ctx::hex(&id)
        )
    );
    assert_eq!(up["tracestate"], "congo=t61");
    assert_eq!(
        t.traceparent_for(&log, [0xab; 8]).as_deref(),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-abababababababab-01")
    );

    // A malformed traceparent counts as no trace.
    let mut log = fixture();
    t.start(&headers(&[("traceparent", "garbage")]), &mut log);
    assert_eq!(log.trace, TraceIds::default());
}

#[tokio::test]
async fn sampling_expressions_from_config() {
    let tracing: RawTracing = yaml(&format!(
        "otlpEndpoint: http://127.0.0.1:{}\nrandomSampling: 'request.headers[\"x-trace-me\"] == \"yes\"'\nclientSampling: false",
        dead_port()
    ));
    let (t, _, _lines) = build_with(Some(&tracing), None, None, &no_env).expect("builds");
    assert!(t.capture().request_headers);
    let mut log = fixture();
    log.request_headers.clear();
    t.start(
        &headers(&[("x-trace-me", "yes"), ("authorization", "Bearer k")]),
        &mut log,
    );
    assert!(log.trace.sampled && log.trace.parent_span_id.is_none());
    assert!(
        log.request_headers
            .iter()
            .all(|(k, _)| k != "authorization")
    );
    let mut log = fixture();
    t.start(&headers(&[("traceparent", TRACEPARENT)]), &mut log);
    assert!(!log.trace.sampled, "clientSampling: false");
    assert_eq!(log.trace.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
}

#[tokio::test]
async fn env_only_tracing_samples_everything() {
    let port = dead_port();
    let env = move |k: &str| match k {
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some(format!("http://127.0.0.1:{port}")),
        "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("grpc".into()),
        _ => None,
    };
    let (t, _, _lines) = build_with(None, None, None, &env).expect("builds");
    assert!(t.tracing_enabled());
    let mut log = fixture();
    t.start(&headers(&[]), &mut log);
    assert!(log.trace.sampled && log.trace.trace_id != [0; 16]);
}

#[tokio::test]
async fn langfuse_config_captures_prompt_and_completion() {
    let tracing: RawTracing = yaml(&format!(
        r#"
otlpEndpoint: http://127.0.0.1:{}/api/public/otel
otlpProtocol: http
headers:
  Authorization: "Basic abc"
randomSampling: true
fields:
  add:
    gen_ai.prompt: "llm.prompt"
    gen_ai.completion: 'llm.completion.map(c, {{"role":"assistant", "content": c}})'
"#,
        dead_port()
    ));
    let (t, _, _lines) = build_with(Some(&tracing), None, None, &no_env).expect("builds");
    let c = t.capture();
    assert!(c.prompt && c.completion && !c.request_headers && !c.response_headers);
}

/// An attribute of an exported span, as an API value (what the tests compare with).
fn attr(s: &super::Span, k: &str) -> Option<opentelemetry::Value> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    let kv = s.attributes.iter().find(|kv| kv.key == k)?;
    Some(match kv.value.as_ref()?.value.as_ref()? {
        V::StringValue(s) => s.clone().into(),
        V::IntValue(i) => opentelemetry::Value::I64(*i),
        V::DoubleValue(f) => opentelemetry::Value::F64(*f),
        V::BoolValue(b) => opentelemetry::Value::Bool(*b),
        other => format!("{other:?}").into(),
    })
}

/// The span's status code (0 unset, 1 ok, 2 error).
fn status_code(s: &super::Span) -> i32 {
    s.status.as_ref().map_or(0, |st| st.code)
}

/// Every span a rich request makes (SERVER with custom fields, upstream CLIENT, MCP target
/// calls, guard checks, error statuses) goes on the wire exactly as prost would encode the
/// `opentelemetry-proto` message.
#[tokio::test]
async fn request_spans_on_the_wire_are_prosts_encoding() {
    use crate::ctx::{GuardAction, GuardCheck, GuardHttp, GuardInfo, GuardPhase};
    let tracing: RawTracing = yaml(&format!(
        "otlpEndpoint: http://127.0.0.1:{}\nrandomSampling: true\nfields:\n  add:\n    gen_ai.request: flatten(llm.params)\n    n: 1 + 2\n",
        dead_port()
    ));
    let (t, _, _lines) = build_with(Some(&tracing), None, None, &no_env).expect("builds");
    let mut log = fixture();
    t.start(&headers(&[("traceparent", TRACEPARENT)]), &mut log);
    t.inject_upstream(&mut log, &mut HeaderMap::new());
    log.status = Some(502);
    log.error = Some("upstream reset".into());
    log.mcp = Some(McpInfo {
        method: Some("tools/call".into()),
        tool_name: Some("echo".into()),
        target_calls: vec![TargetCall {
            target: "everything".into(),
            span_id: [7; 8],
            start: log.start,
            end: None,
            error: Some("connection refused".into()),
        }],
        ..Default::default()
    });
    let check = |kind, http| GuardCheck {
        phase: GuardPhase::Request,
        kind,
        index: 0,
        span_id: [9; 8],
        start: log.start,
        end: log.start + Duration::from_millis(2),
        busy: Duration::from_micros(40),
        action: GuardAction::Reject,
        rules: vec![("email".into(), 2)],
        masked: 1,
        error: None,
        http,
    };
    log.guard = Some(Box::new(GuardInfo {
        checks: vec![
            check("regex", None),
            check(
                "webhook",
                Some(GuardHttp {
                    method: "POST",
                    url: "http://127.0.0.1:9/check".into(),
                    authority: "127.0.0.1:9".into(),
                    status: Some(200),
                }),
            ),
        ],
        ..Default::default()
    }));
    let p = t.policy.load();
    let exec = Executor::new(&log, p.refs);
    let tracer = p.tracer.as_ref().expect("tracing on");
    let recs = t.build_spans(
        &tracer.fields,
        RawConvention::GenAi,
        &log,
        &exec,
        &attrs::base(&log),
    );
    assert_eq!(
        recs.len(),
        5,
        "SERVER, upstream CLIENT, target call, two guards"
    );
    let (mut scratch, mut direct, mut want) = (Vec::new(), Vec::new(), Vec::new());
    for r in &recs {
        wire::append_span(r, &mut direct, &mut scratch);
        prost::encoding::message::encode(2, &r.to_proto(), &mut want);
    }
    assert_eq!(direct, want);
}

#[tokio::test]
async fn span_shape_server_client_and_mcp_children() {
    let tracing: RawTracing = yaml(&format!(
        "otlpEndpoint: http://127.0.0.1:{}\nrandomSampling: true\nfields:\n  add:\n    gen_ai.request: flatten(llm.params)\n    llm.is_streaming: llm.streaming\n  remove: [http.host]\n",
        dead_port()
    ));
    let (t, _, _lines) = build_with(Some(&tracing), None, None, &no_env).expect("builds");
    let mut log = fixture();
    t.start(&headers(&[("traceparent", TRACEPARENT)]), &mut log);
    t.inject_upstream(&mut log, &mut HeaderMap::new());
    log.upstream_start = Some(log.start + Duration::from_millis(5));
    log.upstream_end = Some(log.start + Duration::from_millis(3000));
    log.mcp = Some(McpInfo {
        method: Some("tools/list".into()),
        target_calls: vec![TargetCall {
            target: "everything".into(),
            span_id: [7; 8],
            start: log.start,
            end: Some(log.start + Duration::from_millis(10)),
            error: Some("connection refused".into()),
        }],
        ..Default::default()
    });
    let spans = spans_of(&t, &log).expect("sampled");
    assert_eq!(spans.len(), 3);
    let server = &spans[0];
    assert_eq!(server.name, "tools/list", "MCP method names the span");
    assert_eq!(server.kind, span::SpanKind::Server as i32);
    assert!(server.flags & 0x200 != 0, "the parent is remote");
    assert_eq!(
        server.parent_span_id,
        [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
    );
    assert_eq!(status_code(server), 0);
    assert_eq!(
        attr(server, "http.status"),
        Some(opentelemetry::Value::I64(200))
    );
    assert_eq!(
        attr(server, "gen_ai.request.model"),
        Some("gpt-4o-mini".into())
    );
    assert_eq!(
        attr(server, "gen_ai.usage.output_tokens"),
        Some(opentelemetry::Value::I64(313))
    );
    assert_eq!(
        attr(server, "gen_ai.request.temperature"),
        Some(opentelemetry::Value::F64(0.7))
    );
    assert_eq!(attr(server, "network.protocol.version"), Some("1.1".into()));
    assert_eq!(
        attr(server, "llm.is_streaming"),
        Some(opentelemetry::Value::Bool(false))
    );
    assert_eq!(attr(server, "http.host"), None);
    assert_eq!(
        attr(server, "gen_ai.prompt"),
        None,
        "prompt only when a field asks"
    );
    let dupes = server
        .attributes
        .iter()
        .filter(|kv| kv.key == "gen_ai.request.temperature")
        .count();
    assert_eq!(dupes, 1);

    let client = &spans[1];
    assert_eq!(client.kind, span::SpanKind::Client as i32);
    assert_eq!(client.name, "chat gpt-4o-mini");
    assert_eq!(client.span_id, log.upstream_span_id.expect("id"));
    assert_eq!(client.parent_span_id, log.trace.span_id);
    assert_eq!(
        attr(client, "server.address"),
        Some("api.openai.com".into())
    );
    // The CLIENT span names the call; usage and parameters are counted on the SERVER span only.
    assert_eq!(
        attr(client, "gen_ai.request.model"),
        Some("gpt-4o-mini".into())
    );
    assert_eq!(attr(client, "gen_ai.usage.output_tokens"), None);
    assert_eq!(attr(client, "gen_ai.request.temperature"), None);
    assert_eq!(
        Duration::from_nanos(client.end_time_unix_nano - client.start_time_unix_nano),
        Duration::from_millis(2995)
    );

    let mcp = &spans[2];
    assert_eq!(mcp.name, "tools/list everything");
    assert_eq!(mcp.span_id, [7; 8]);
    assert_eq!(status_code(mcp), 2);

    // span.name renames; errors mark the server span.
    let tracing: RawTracing = yaml(&format!(
        "otlpEndpoint: http://127.0.0.1:{}\nrandomSampling: true\nfields:\n  add:\n    span.name: '\"openai.chat\"'\n",
        dead_port()
    ));
    let (t, _, _lines) = build_with(Some(&tracing), None, None, &no_env).expect("builds");
    let mut log = fixture();
    t.start(&headers(&[]), &mut log);
    log.status = Some(503);
    let spans = spans_of(&t, &log).expect("sampled");
    assert_eq!(spans[0].name, "openai.chat");
    assert_eq!(status_code(&spans[0]), 2);
    assert_eq!(attr(&spans[0], "error.type"), Some("503".into()));
    assert_eq!(attr(&spans[0], "span.name"), None);
}

#[tokio::test]
async fn policy_form_filter_drops_spans() {
    let policy: RawFrontendTracing = yaml(&format!(
        "host: 127.0.0.1:{}\nrandomSampling: true\nfilter: 'request.path == \"/keep\"'\nattributes:\n  add:\n  - name: request.host\n    expression: request.host\n",
        dead_port()
    ));
    let (t, _, _lines) = build_with(None, None, Some(&policy), &no_env).expect("builds");
    let mut log = fixture();
    t.start(&headers(&[]), &mut log);
    assert!(spans_of(&t, &log).is_none());
    log.path = "/keep".into();
    let spans = spans_of(&t, &log).expect("kept");
    assert_eq!(attr(&spans[0], "request.host"), Some("localhost".into()));
}

#[test]
fn tracing_runs_its_export_on_its_own_thread_without_the_callers_runtime() {
    // Export has its own runtime and thread, so it needs nothing from the caller (and never
    // takes a turn on the proxy's workers).
    let tracing: RawTracing = yaml("otlpEndpoint: http://127.0.0.1:4317");
    let (t, _, _) = build_with(Some(&tracing), None, None, &no_env).expect("tracing starts");
    assert!(t.tracing_enabled());
    // Its own thread, running (not a task on the caller's runtime, of which there is none).
    let q = t.queues.first().expect("an exporter");
    assert_eq!(q.thread(), Some("otlp"));
}

#[test]
fn finish_records_metrics_once() {
    let (t, metrics, _lines) = build_with(None, None, None, &no_env).expect("builds");
    let mut log = fixture();
    log.end = None;
    let started = Instant::now();
    t.finish(log);
    assert!(started.elapsed() < Duration::from_secs(1));
    let text = metrics.encode();
    assert!(text.contains(r#"status="200"} 1"#), "{text}");
}

#[tokio::test]
async fn kernel_flow_timing_reaches_log_and_spans() {
    use crate::ctx::FlowTiming;
    let tracing: RawTracing = yaml(&format!(
        "otlpEndpoint: http://127.0.0.1:{}\nrandomSampling: true",
        dead_port()
    ));
    let (t, _, lines) = build_with(Some(&tracing), None, None, &no_env).expect("builds");
    let mut log = fixture();
    t.start(&headers(&[]), &mut log);
    t.inject_upstream(&mut log, &mut HeaderMap::new());
    log.downstream_flow = Some(FlowTiming {
        srtt: Some(Duration::from_micros(150)),
        retransmits: Some(0),
        ..Default::default()
    });
    log.upstream_flow = Some(FlowTiming {
        connect: Some(Duration::from_micros(2500)),
        srtt: Some(Duration::from_micros(900)),
        retransmits: Some(2),
        bytes_sent: Some(512),
        bytes_received: Some(4096),
    });
    let spans = spans_of(&t, &log).expect("sampled");
    assert_eq!(
        attr(&spans[0], "network.tcp.rtt_us"),
        Some(opentelemetry::Value::I64(150))
    );
    assert_eq!(
        attr(&spans[1], "network.tcp.rtt_us"),
        Some(opentelemetry::Value::I64(900))
    );
    assert_eq!(
        attr(&spans[1], "network.tcp.connect_duration_ms"),
        Some(opentelemetry::Value::F64(2.5))
    );
    assert_eq!(
        attr(&spans[1], "network.tcp.retransmits"),
        Some(opentelemetry::Value::I64(2))
    );
    t.finish(log);
    let line = lines.recv_timeout(Duration::from_secs(1)).expect("a line");
    assert!(
        line.ends_with(
            " downstream.tcp.rtt_us=150 downstream.tcp.retransmits=0 upstream.tcp.connect_ms=2 \
             upstream.tcp.rtt_us=900 upstream.tcp.retransmits=2"
        ),
        "{line}"
    );
}
