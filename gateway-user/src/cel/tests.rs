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

#[test]
fn default_macro_table() {
    let log = fixture();
    for (src, want) in [
        ("default(null, 1)", json!(1)),
        ("default(llm.provider, 'x')", json!("openai")),
        ("default(mcp.tool.name, 'none')", json!("none")),
        ("default(default(llm.nope, llm.nada), 3)", json!(3)),
        // Inside a string literal, `default(` is text.
        (
            r#"'default(' + string(default(llm.nope, 2))"#,
            json!("default(2"),
        ),
        // Comprehension variables are in scope in both arguments.
        (
            r#"[1, 2].map(x, default({"a": x}.b, x * 10))"#,
            json!([10, 20]),
        ),
        // Any evaluation error falls back, as in agentgateway ("cannot be resolved").
        ("default(1 + 'a', 5)", json!(5)),
        ("default(llm.params.max_tokens, 0)", json!(100)),
    ] {
        let v = Expression::compile(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .eval(&log)
            .unwrap_or_else(|e| panic!("{src}: {e}"));
        assert_eq!(to_json(&v), want, "{src}");
    }
    // Only the global two-argument call is the macro.
    let r = Expression::compile("default(1)")
        .expect("compiles")
        .eval(&log);
    assert!(matches!(r, Err(CelError::Missing(_))), "{r:?}");
}

#[test]
fn engine_functions_table() {
    let log = fixture();
    for (src, want) in [
        (r#"request.path.matches("^/v1/.*")"#, json!(true)),
        (r#"request.path.startsWith("/v1")"#, json!(true)),
        (r#"llm.provider.contains("open")"#, json!(true)),
        (r#"size(llm.completion)"#, json!(1)),
        (r#""A-b".lowerAscii()"#, json!("a-b")),
        (r#""a,b".split(",")"#, json!(["a", "b"])),
        (r#"has(llm.params.temperature)"#, json!(true)),
        (r#"has(llm.params.top_p)"#, json!(false)),
        (r#"[1, 2, 3].filter(x, x > 1)"#, json!([2, 3])),
        (r#"llm.prompt.exists(m, m.role == "system")"#, json!(true)),
        (r#"int(llm.params.max_tokens) + 1"#, json!(101)),
        (r#"[toJson(flatten({"a": 1}))]"#, json!([r#"{"a":1}"#])),
    ] {
        let v = Expression::compile(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .eval(&log)
            .unwrap_or_else(|e| panic!("{src}: {e}"));
        assert_eq!(to_json(&v), want, "{src}");
    }
}

/// The bounds of `limits.rs`: what is accepted, what is refused, and what the error says.
#[test]
fn limits_table() {
    let nested = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    let chained = |n: usize| format!("llm{}", ".a".repeat(n));
    let long = |n: usize| format!("'{}'", "x".repeat(n - 2));
    for src in [
        nested(MAX_DEPTH),
        chained(MAX_DEPTH),
        long(MAX_EXPRESSION_BYTES),
        format!("1{}", " + 1".repeat(MAX_DEPTH)),
        // `&&`, `||` and commas start a new operand.
        vec!["llm.a.b == 1"; 200].join(" || "),
        format!("[{}]", vec!["llm.a.b + 1"; 300].join(", ")),
        // Brackets in strings and comments are text.
        format!("'{}' // {}", "(".repeat(200), "[".repeat(200)),
        format!(r#"r"\" + '{}'"#, "(".repeat(100)),
        format!("'''{}'''", "{".repeat(100)),
        "flatten_recursive(llm.completion.map(c, {\"role\":\"assistant\", \"content\": c}))"
            .to_owned(),
    ] {
        if let Err(e) = Expression::compile(&src) {
            assert!(!matches!(e, CelError::Rejected { .. }), "{e}");
        }
    }
    for (src, want) in [
        (
            long(MAX_EXPRESSION_BYTES + 1),
            "is 4097 bytes; the limit is 4096".to_owned(),
        ),
        (nested(MAX_DEPTH + 1), format!("the limit is {MAX_DEPTH}")),
        (chained(MAX_DEPTH + 1), format!("the limit is {MAX_DEPTH}")),
        (
            format!("1{}", " == 1".repeat(MAX_DEPTH + 1)),
            format!("the limit is {MAX_DEPTH}"),
        ),
        (
            format!("1{}", " in x".repeat(MAX_DEPTH + 1)),
            format!("the limit is {MAX_DEPTH}"),
        ),
        (
            "a ; b".to_owned(),
            "has ';' at byte 2, which starts no CEL token".to_owned(),
        ),
        (
            "'é' + é".to_owned(),
            "has 'é' at byte 7, which starts no CEL token".to_owned(),
        ),
    ] {
        let e = Expression::compile(&src).expect_err("over a bound");
        let msg = e.to_string();
        assert!(matches!(e, CelError::Rejected { .. }), "{msg}");
        assert!(msg.contains(&want), "{msg}");
        // The value is quoted, cut short.
        let quoted = format!("CEL expression {:?}", &src[..src.len().min(80)]);
        assert!(msg.starts_with(quoted.trim_end_matches('"')), "{msg}");
        assert!(msg.len() < 400, "{msg}");
    }
}

/// The deepest expressions the bounds let through evaluate on a tokio worker's 2 MiB stack,
/// even in a debug build (about 40 KiB per level there, 1.6 KiB in release). Parsing runs on a
/// thread of its own (`parse`).
#[test]
fn deepest_accepted_expressions_evaluate_on_a_small_stack() {
    let log = fixture();
    let cases = [
        format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH)),
        format!("{}1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH)),
        format!(
            "{}1{}",
            "size([".repeat(MAX_DEPTH / 2),
            "])".repeat(MAX_DEPTH / 2)
        ),
        format!("1{}", " + 1".repeat(MAX_DEPTH)),
        format!("llm.params{}", ".a".repeat(MAX_DEPTH - 1)),
        format!("{}1", "-".repeat(MAX_DEPTH)),
        format!("{}true", "!".repeat(MAX_DEPTH)),
        format!("{}0", "true ? 1 : ".repeat(MAX_DEPTH)),
        vec!["llm.provider == 'x'"; 150].join(" || "),
    ];
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            for src in &cases {
                let e = Expression::compile(src).unwrap_or_else(|e| panic!("{e}"));
                let _ = e.eval(&log);
            }
        })
        .expect("spawn")
        .join()
        .expect("no stack overflow");
}
