//! CEL table tests: every seed document's `fields.add` list against one fixture request, both
//! field spellings, the gateway functions, and reference scanning.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::config::telemetry::OrderedExprMap;
use crate::ctx::{LlmInfo, McpInfo};
use crate::telemetry::fields::{AttrValue, Attrs, FieldOutcome, Fields};

pub(crate) fn fixture() -> RequestLog {
    let mut log = RequestLog::new("default/agentgateway".into(), "http".into());
    log.route = Some("default/openai".into());
    log.endpoint = Some("api.openai.com:443".into());
    log.backend = Some("openai".into());
    log.src_addr = Some(SocketAddr::from(([127, 0, 0, 1], 49576)));
    log.method = "POST".into();
    log.host = "localhost".into();
    log.path = "/v1/chat/completions".into();
    log.uri = "/v1/chat/completions?x=1".into();
    log.status = Some(200);
    log.end = Some(log.start + Duration::from_millis(3165));
    log.request_headers = vec![
        ("user-agent".into(), "OpenAI/Python 3.54.0".into()),
        ("authorization".into(), "Bearer sk-secret".into()),
        ("x-multi".into(), "a".into()),
        ("X-Multi".into(), "b".into()),
    ];
    log.response_headers = vec![("content-type".into(), "application/json".into())];
    let mut params = serde_json::Map::new();
    params.insert("temperature".into(), json!(0.7));
    params.insert("max_tokens".into(), json!(100));
    log.llm = Some(LlmInfo {
        provider: "openai".into(),
        operation: "chat",
        request_model: Some("gpt-4o-mini".into()),
        response_model: Some("gpt-4o-mini-2024-07-18".into()),
        input_tokens: Some(8),
        output_tokens: Some(313),
        streaming: false,
        prompt: Some(json!([
            {"role": "system", "content": "Be brief"},
            {"role": "user", "content": "hi"}
        ])),
        completion: Some(vec!["Hello!".into()]),
        params,
        ..Default::default()
    });
    log
}

fn eval_fields(pairs: &[(&str, &str)], log: &RequestLog) -> (Attrs, usize) {
    let add = OrderedExprMap(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let f = Fields::compile(&add, &[], "config.tracing.fields.add").expect("seed fields compile");
    let exec = Executor::new(log, f.refs());
    let mut out = Attrs::new();
    let mut errors = 0;
    f.eval_into(&exec, &mut out, |_, o| {
        if let FieldOutcome::Error(_) = o {
            errors += 1
        }
    });
    (out, errors)
}

fn s(v: &str) -> AttrValue {
    AttrValue::from(v)
}

fn check(name: &str, pairs: &[(&str, &str)], want: &[(&str, AttrValue)]) {
    let (got, errors) = eval_fields(pairs, &fixture());
    assert_eq!(errors, 0, "{name}: evaluation errors; got {got:?}");
    let want: Attrs = want
        .iter()
        .map(|(k, v)| (k.to_string().into(), v.clone()))
        .collect();
    assert_eq!(got, want, "{name}");
}

#[test]
fn seed_000_gemini_camel_case() {
    check(
        "seed 000",
        &[
            ("gen_ai.operation.name", r#""chat""#),
            ("gen_ai.system", "llm.provider"),
            ("gen_ai.request.model", "llm.requestModel"),
            ("gen_ai.response.model", "llm.responseModel"),
            ("gen_ai.usage.completion_tokens", "llm.outputTokens"),
            ("gen_ai.usage.prompt_tokens", "llm.inputTokens"),
        ],
        &[
            ("gen_ai.operation.name", s("chat")),
            ("gen_ai.system", s("openai")),
            ("gen_ai.request.model", s("gpt-4o-mini")),
            ("gen_ai.response.model", s("gpt-4o-mini-2024-07-18")),
            ("gen_ai.usage.completion_tokens", AttrValue::Int(313)),
            ("gen_ai.usage.prompt_tokens", AttrValue::Int(8)),
        ],
    );
}

#[test]
fn seed_001_jaeger_snake_case() {
    check(
        "seed 001 jaeger",
        &[
            ("gen_ai.operation.name", r#""chat""#),
            ("gen_ai.system", "llm.provider"),
            ("gen_ai.request.model", "llm.request_model"),
            ("gen_ai.response.model", "llm.response_model"),
            ("gen_ai.usage.completion_tokens", "llm.output_tokens"),
            ("gen_ai.usage.prompt_tokens", "llm.input_tokens"),
        ],
        &[
            ("gen_ai.operation.name", s("chat")),
            ("gen_ai.system", s("openai")),
            ("gen_ai.request.model", s("gpt-4o-mini")),
            ("gen_ai.response.model", s("gpt-4o-mini-2024-07-18")),
            ("gen_ai.usage.completion_tokens", AttrValue::Int(313)),
            ("gen_ai.usage.prompt_tokens", AttrValue::Int(8)),
        ],
    );
}

#[test]
fn seed_langfuse_prompt_json_completion_map_and_flatten() {
    check(
        "langfuse",
        &[
            ("gen_ai.operation.name", r#""chat""#),
            ("gen_ai.system", "llm.provider"),
            ("gen_ai.prompt", "llm.prompt"),
            (
                "gen_ai.completion",
                r#"llm.completion.map(c, {"role":"assistant", "content": c})"#,
            ),
            ("gen_ai.usage.completion_tokens", "llm.output_tokens"),
            ("gen_ai.usage.prompt_tokens", "llm.input_tokens"),
            ("gen_ai.request.model", "llm.request_model"),
            ("gen_ai.response.model", "llm.response_model"),
            ("gen_ai.request", "flatten(llm.params)"),
        ],
        &[
            ("gen_ai.operation.name", s("chat")),
            ("gen_ai.system", s("openai")),
            (
                "gen_ai.prompt",
                s(r#"[{"content":"Be brief","role":"system"},{"content":"hi","role":"user"}]"#),
            ),
            (
                "gen_ai.completion",
                s(r#"[{"content":"Hello!","role":"assistant"}]"#),
            ),
            ("gen_ai.usage.completion_tokens", AttrValue::Int(313)),
            ("gen_ai.usage.prompt_tokens", AttrValue::Int(8)),
            ("gen_ai.request.model", s("gpt-4o-mini")),
            ("gen_ai.response.model", s("gpt-4o-mini-2024-07-18")),
            ("gen_ai.request.max_tokens", AttrValue::Int(100)),
            ("gen_ai.request.temperature", AttrValue::F64(0.7)),
        ],
    );
}

#[test]
fn seed_phoenix_openinference_messages() {
    check(
        "phoenix",
        &[
            ("span.name", r#""openai.chat""#),
            ("openinference.span.kind", r#""LLM""#),
            ("llm.system", "llm.provider"),
            (
                "llm.input_messages",
                r#"flatten_recursive(llm.prompt.map(c, {"message": c}))"#,
            ),
            (
                "llm.output_messages",
                r#"flatten_recursive(llm.completion.map(c, {"role":"assistant", "content": c}))"#,
            ),
            ("llm.token_count.completion", "llm.output_tokens"),
            ("llm.token_count.prompt", "llm.input_tokens"),
            ("llm.token_count.total", "llm.total_tokens"),
        ],
        &[
            ("span.name", s("openai.chat")),
            ("openinference.span.kind", s("LLM")),
            ("llm.system", s("openai")),
            ("llm.input_messages.0.message.content", s("Be brief")),
            ("llm.input_messages.0.message.role", s("system")),
            ("llm.input_messages.1.message.content", s("hi")),
            ("llm.input_messages.1.message.role", s("user")),
            ("llm.output_messages.0.content", s("Hello!")),
            ("llm.output_messages.0.role", s("assistant")),
            ("llm.token_count.completion", AttrValue::Int(313)),
            ("llm.token_count.prompt", AttrValue::Int(8)),
            ("llm.token_count.total", AttrValue::Int(321)),
        ],
    );
}

#[test]
fn seed_openllmetry_flattened_prompt_and_streaming() {
    check(
        "openllmetry",
        &[
            ("span.name", r#""openai.chat""#),
            ("gen_ai.operation.name", r#""chat""#),
            ("gen_ai.system", "llm.provider"),
            ("gen_ai.prompt", "flatten_recursive(llm.prompt)"),
            (
                "gen_ai.completion",
                r#"flatten_recursive(llm.completion.map(c, {"role":"assistant", "content": c}))"#,
            ),
            ("gen_ai.usage.completion_tokens", "llm.output_tokens"),
            ("gen_ai.usage.prompt_tokens", "llm.input_tokens"),
            ("gen_ai.request.model", "llm.request_model"),
            ("gen_ai.response.model", "llm.response_model"),
            ("gen_ai.request", "flatten(llm.params)"),
            ("llm.is_streaming", "llm.streaming"),
        ],
        &[
            ("span.name", s("openai.chat")),
            ("gen_ai.operation.name", s("chat")),
            ("gen_ai.system", s("openai")),
            ("gen_ai.prompt.0.content", s("Be brief")),
            ("gen_ai.prompt.0.role", s("system")),
            ("gen_ai.prompt.1.content", s("hi")),
            ("gen_ai.prompt.1.role", s("user")),
            ("gen_ai.completion.0.content", s("Hello!")),
            ("gen_ai.completion.0.role", s("assistant")),
            ("gen_ai.usage.completion_tokens", AttrValue::Int(313)),
            ("gen_ai.usage.prompt_tokens", AttrValue::Int(8)),
            ("gen_ai.request.model", s("gpt-4o-mini")),
            ("gen_ai.response.model", s("gpt-4o-mini-2024-07-18")),
            ("gen_ai.request.max_tokens", AttrValue::Int(100)),
            ("gen_ai.request.temperature", AttrValue::F64(0.7)),
            ("llm.is_streaming", AttrValue::Bool(false)),
        ],
    );
}

#[test]
fn seed_002_policy_attribute_request_host() {
    check(
        "seed 002",
        &[("request.host", "request.host")],
        &[("request.host", s("localhost"))],
    );
}

#[test]
fn seed_004_enterprise_fields() {
    check(
        "seed 004",
        &[
            ("gen_ai.operation.name", r#""chat""#),
            ("gen_ai.system", "llm.provider"),
            ("gen_ai.request.model", "llm.requestModel"),
            ("gen_ai.response.model", "llm.responseModel"),
            ("gen_ai.usage.prompt_tokens", "llm.inputTokens"),
            ("gen_ai.usage.completion_tokens", "llm.outputTokens"),
            ("gen_ai.usage.total_tokens", "llm.totalTokens"),
            ("gen_ai.request.temperature", "llm.params.temperature"),
            ("gen_ai.prompt", "llm.prompt"),
            ("gen_ai.completion", "llm.completion"),
        ],
        &[
            ("gen_ai.operation.name", s("chat")),
            ("gen_ai.system", s("openai")),
            ("gen_ai.request.model", s("gpt-4o-mini")),
            ("gen_ai.response.model", s("gpt-4o-mini-2024-07-18")),
            ("gen_ai.usage.prompt_tokens", AttrValue::Int(8)),
            ("gen_ai.usage.completion_tokens", AttrValue::Int(313)),
            ("gen_ai.usage.total_tokens", AttrValue::Int(321)),
            ("gen_ai.request.temperature", AttrValue::F64(0.7)),
            (
                "gen_ai.prompt",
                s(r#"[{"content":"Be brief","role":"system"},{"content":"hi","role":"user"}]"#),
            ),
            ("gen_ai.completion", s(r#"["Hello!"]"#)),
        ],
    );
}

#[test]
fn both_spellings_agree() {
    let log = fixture();
    for (camel, snake) in [
        ("llm.requestModel", "llm.request_model"),
        ("llm.responseModel", "llm.response_model"),
        ("llm.inputTokens", "llm.input_tokens"),
        ("llm.outputTokens", "llm.output_tokens"),
        ("llm.totalTokens", "llm.total_tokens"),
        ("request.pathAndQuery", "request.path_and_query"),
        ("request.startTime", "request.start_time"),
    ] {
        let a = Expression::compile(camel).expect("compiles").eval(&log);
        let b = Expression::compile(snake).expect("compiles").eval(&log);
        let (a, b) = (a.expect(camel), b.expect(snake));
        assert_eq!(to_json(&a), to_json(&b), "{camel} vs {snake}");
    }
}

#[test]
fn context_table() {
    let mut log = fixture();
    log.mcp = Some(McpInfo {
        method: Some("tools/call".into()),
        session_id: Some("s-1".into()),
        target: Some("everything".into()),
        tool_name: Some("echo".into()),
        tool_arguments: Some(json!({"message": "hi"})),
        tool_result: Some(json!({"content": [{"type": "text", "text": "hi"}]})),
        ..Default::default()
    });
    for (src, want) in [
        ("request.method", json!("POST")),
        ("request.path", json!("/v1/chat/completions")),
        ("request.pathAndQuery", json!("/v1/chat/completions?x=1")),
        ("request.scheme", json!("http")),
        ("request.version", json!("HTTP/1.1")),
        (
            r#"request.headers["user-agent"]"#,
            json!("OpenAI/Python 3.54.0"),
        ),
        (r#"request.headers["x-multi"]"#, json!(["a", "b"])),
        ("request.headers.authorization", json!("<redacted>")),
        ("response.code", json!(200)),
        (
            r#"response.headers["content-type"]"#,
            json!("application/json"),
        ),
        ("source.address", json!("127.0.0.1")),
        ("source.port", json!(49576)),
        ("backend.name", json!("openai")),
        ("env.gateway", json!("default/agentgateway")),
        ("llm.streaming", json!(false)),
        ("llm.params.max_tokens", json!(100)),
        ("llm.prompt[1].content", json!("hi")),
        ("mcp.methodName", json!("tools/call")),
        ("mcp.session_id", json!("s-1")),
        ("mcp.tool.name", json!("echo")),
        ("mcp.tool.target", json!("everything")),
        ("mcp.tool.arguments.message", json!("hi")),
        ("mcp.tool.result.content[0].text", json!("hi")),
        (
            r#"default(request.headers["missing"], "fallback")"#,
            json!("fallback"),
        ),
        (r#"default(llm.nope, 7)"#, json!(7)),
        (r#"default(llm.provider, "x")"#, json!("openai")),
        (r#"json('{"a": [1, 2]}').a[1]"#, json!(2)),
        (r#"toJson({"b": 1, "a": "x"})"#, json!(r#"{"a":"x","b":1}"#)),
        (r#"base64.encode("hello")"#, json!("aGVsbG8=")),
        (r#"string(base64.decode("aGVsbG8="))"#, json!("hello")),
        ("llm.completion.map(c, size(c))", json!([6])),
    ] {
        let v = Expression::compile(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .eval(&log)
            .unwrap_or_else(|e| panic!("{src}: {e}"));
        assert_eq!(to_json(&v), want, "{src}");
    }
}

#[test]
fn absent_data_is_missing_not_an_error() {
    let mut log = fixture();
    log.llm = None;
    log.status = None;
    for src in [
        "llm.provider",
        "response.code",
        "mcp.methodName",
        "llm.request_model",
    ] {
        let r = Expression::compile(src).expect("compiles").eval(&log);
        assert!(matches!(r, Err(CelError::Missing(_))), "{src}: {r:?}");
    }
    let r = Expression::compile("1 + 'a'").expect("compiles").eval(&log);
    assert!(matches!(r, Err(CelError::Eval(_))), "{r:?}");
}

#[test]
fn parse_errors_are_reported() {
    let e = Expression::compile("flatten(llm.params").unwrap_err();
    assert!(matches!(e, CelError::Parse { .. }), "{e}");
}

#[test]
fn references_drive_capture() {
    let r = Expression::compile("llm.prompt").expect("ok").references();
    assert!(r.llm && r.llm_prompt && !r.llm_completion && !r.request);
    let r = Expression::compile(r#"llm.completion.map(c, {"role": "assistant", "content": c})"#)
        .expect("ok")
        .references();
    assert!(r.llm_completion && !r.llm_prompt);
    let r = Expression::compile(r#"request.headers["x"]"#)
        .expect("ok")
        .references();
    assert!(r.request_headers && !r.response_headers);
    let r = Expression::compile("llm.provider")
        .expect("ok")
        .references();
    assert!(r.llm && !r.llm_prompt && !r.llm_completion);
    // Not captured: the prompt is absent even though the log has it.
    let log = fixture();
    let exec = Executor::new(&log, r);
    let p = Expression::compile("llm.prompt").expect("ok");
    assert!(matches!(exec.eval(&p), Err(CelError::Missing(_))));
}

#[test]
fn interpreter_panics_become_errors() {
    let log = fixture();
    match Expression::compile("Msg{a: 1}") {
        Ok(e) => assert!(matches!(e.eval(&log), Err(CelError::Eval(_)))),
        Err(CelError::Parse { .. }) => {}
        Err(other) => panic!("unexpected {other}"),
    }
}
