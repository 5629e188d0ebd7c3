//! CEL table tests against one fixture request: both field spellings, the context variables,
//! the gateway functions, missing data, and reference scanning. The seed documents' `fields.add`
//! lists, evaluated through `telemetry::fields`, are tested in `telemetry::tests::seeds`.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::ctx::{LlmInfo, McpInfo};

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
