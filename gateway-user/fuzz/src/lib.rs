//! Fuzz harnesses: one function per cargo-fuzz target, shared by the fuzz binaries in
//! `fuzz_targets/` and the stable replay test `gateway-user/tests/fuzz_regressions.rs`, so a
//! crash file replays through exactly the code path that found it.
//!
//! Besides "must not panic", each harness asserts properties that hold for every input (named at
//! each `assert!`), so the fuzzer also reports wrong answers, not only crashes. Inputs that are
//! not even well-formed (non-UTF-8 config, non-JSON bodies) return early: those paths are
//! covered by the parsers' own error handling and add nothing here.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use gateway::cel::{CelError, Executor, Expression, MAX_EXPRESSION_BYTES};
use gateway::config::{self, Source};
use gateway::ctx::{LlmInfo, McpInfo, RequestLog};
use gateway::llm::provider::Wire;
use gateway::llm::stream::{MAX_COMPLETIONS, SseTransform, StreamHandler};
use gateway::llm::translate::{self, chat_anthropic, chat_gemini, messages_chat};
use gateway::llm::{self, RouteType, anthropic, gemini, openai};
use gateway::sse::{SseEvent, SseParser};
use serde_json::{Value, json};

/// A harness: takes the raw fuzz input, panics on a bug.
pub type Harness = fn(&[u8]);

/// Every target by name: the cargo-fuzz binary, `corpus/<name>/` and `regressions/<name>/`.
pub const TARGETS: &[(&str, Harness)] = &[
    ("sse_parser", sse_parser),
    ("llm_observe", llm_observe),
    ("llm_stream", llm_stream),
    ("translate", translate),
    ("config_load", config_load),
    ("cel", cel),
    ("mcp_jsonrpc", mcp_jsonrpc),
];

/// Splits `data` into chunks whose size the input chooses (`seed` 0 = one chunk), so chunk
/// boundaries fall at every offset across runs: SSE parsers must not care where TCP split.
fn chunks(seed: u8, data: &[u8]) -> Vec<&[u8]> {
    if seed == 0 || data.is_empty() {
        return vec![data];
    }
    let size = usize::from(seed % 64) + 1;
    data.chunks(size).collect()
}

fn drain(p: &mut SseParser, out: &mut Vec<SseEvent>) {
    // Inputs are far below the parser's 8 MiB event limit, so an error here is a bug.
    while let Some(ev) = p.next_event().expect("event within the size limit") {
        out.push(ev);
    }
}

/// What a stream left unparsed at the end must be: nothing, or whitespace `finish` drops.
fn assert_rest_is_whitespace(consumed: &[u8], input: &[u8]) {
    assert!(
        input.starts_with(consumed),
        "events' raw bytes are not the input in order"
    );
    assert!(
        input[consumed.len()..].iter().all(u8::is_ascii_whitespace),
        "non-whitespace input bytes were dropped"
    );
}

// === sse_parser ===

/// `[chunk seed][stream bytes]`: the same stream parsed whole and in chunks gives the same
/// events; the events' raw bytes are the input, in order; encode → parse round-trips.
pub fn sse_parser(data: &[u8]) {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let parse = |parts: Vec<&[u8]>| {
        let mut p = SseParser::default();
        let mut evs = Vec::new();
        for part in parts {
            p.push(part);
            drain(&mut p, &mut evs);
        }
        evs.extend(p.finish());
        assert!(p.pending().is_empty(), "finish left bytes behind");
        evs
    };
    let whole = parse(vec![body]);
    let split = parse(chunks(seed, body));
    assert_eq!(whole, split, "chunking changed the events");
    let consumed: Vec<u8> = whole.iter().flat_map(|e| e.raw.iter().copied()).collect();
    assert_rest_is_whitespace(&consumed, body);

    // A small size limit fails only while no event boundary is buffered.
    let limit = usize::from(seed);
    let mut p = SseParser::new(limit);
    p.push(body);
    loop {
        match p.next_event() {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                assert!(p.pending().len() > limit, "limit error below the limit");
                break;
            }
        }
    }

    // Round trip: any event name (one line) and data (no CR, which SSE treats as a newline).
    let text = String::from_utf8_lossy(body).replace('\r', "");
    let (name, payload) = text.split_once('\n').unwrap_or((&text, ""));
    let name = (seed & 1 == 1).then_some(name);
    let mut buf = BytesMut::new();
    SseEvent::encode(name, payload, &mut buf);
    let mut p = SseParser::default();
    p.push(&buf);
    let ev = p
        .next_event()
        .expect("encoded event within the limit")
        .expect("an encoded event is complete");
    assert_eq!(ev.event.as_deref(), name, "event name round trip");
    assert_eq!(ev.data, payload, "data round trip");
    assert_eq!(&ev.raw[..], &buf[..], "raw round trip");
    assert!(p.finish().is_none(), "bytes after an encoded event");
}

// === llm_observe ===

fn assert_completions_bounded(info: &LlmInfo) {
    let n = info.completion.as_ref().map_or(0, Vec::len);
    assert!(n <= MAX_COMPLETIONS, "{n} completion slots from one body");
}

/// A JSON body through every usage/model observer, as a request, a response and a stream
/// event of each provider.
pub fn llm_observe(data: &[u8]) {
    if let Ok(path) = std::str::from_utf8(data) {
        let _ = RouteType::detect(path);
        if let Some((model, _)) = gemini::path_model(path) {
            assert!(
                path.contains(&model),
                "model {model:?} not taken from the path"
            );
        }
    }
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    for route in [
        RouteType::Completions,
        RouteType::Messages,
        RouteType::Responses,
        RouteType::Embeddings,
        RouteType::GenerateContent,
        RouteType::Passthrough,
    ] {
        let mut info = LlmInfo::default();
        llm::observe_request(route, &v, &mut info, true);
        assert_eq!(
            info.request_model.as_deref(),
            v.get("model").and_then(Value::as_str),
            "request model"
        );
    }

    let mut info = LlmInfo::default();
    openai::observe_response(&v, &mut info);
    openai::observe_usage(&v, &mut info);
    openai::observe_chat_chunk(&v, &mut info);
    assert_completions_bounded(&info);
    let _ = openai::responses_prompt(&v);

    let mut info = LlmInfo::default();
    anthropic::observe_response(&v, &mut info);
    for kind in [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "message_delta",
        "message_stop",
        "error",
    ] {
        let stop = anthropic::observe_event(kind, &v, &mut info);
        assert_eq!(
            stop,
            kind == "message_stop",
            "only message_stop ends a stream"
        );
    }
    let mut usage = LlmInfo::default();
    anthropic::observe_usage(&v, &mut usage);
    if let (Some(i), Some(o), Some(t)) =
        (usage.input_tokens, usage.output_tokens, usage.total_tokens)
    {
        assert_eq!(t, i.saturating_add(o), "anthropic total = input + output");
    }
    let _ = anthropic::content_text(&v);
    let _ = anthropic::prompt_messages(&v);

    let mut info = LlmInfo::default();
    gemini::observe_response(&v, &mut info);
    gemini::observe_usage(&v, &mut info);
    assert_completions_bounded(&info);
    let _ = gemini::candidate_text(&v);
    let _ = gemini::prompt_messages(&v);
}

// === llm_stream ===

/// What a stream handler's output must look like.
#[derive(PartialEq)]
enum Output {
    /// Bytes out = bytes in (minus a whitespace tail).
    Passthrough,
    /// Forwarded, except usage-only chunks are dropped: no check beyond "no panic".
    Filtered,
    /// Re-encoded: whole events, each JSON or `[DONE]`.
    Rewritten,
}

fn stream_handler(sel: u8) -> (Box<dyn StreamHandler>, Output) {
    let include_usage = sel & 0x10 != 0;
    match sel % 8 {
        0 => (
            Box::new(openai::ChatStream::new(false)),
            Output::Passthrough,
        ),
        1 => (Box::new(openai::ChatStream::new(true)), Output::Filtered),
        2 => (
            Box::<openai::ResponsesStream>::default(),
            Output::Passthrough,
        ),
        3 => (
            Box::<anthropic::MessagesStream>::default(),
            Output::Passthrough,
        ),
        4 => (
            Box::<gemini::GenerateStream>::default(),
            Output::Passthrough,
        ),
        5 => (
            Box::new(chat_anthropic::Stream::new("m", include_usage)),
            Output::Rewritten,
        ),
        6 => (
            Box::new(chat_gemini::Stream::new("m", include_usage)),
            Output::Rewritten,
        ),
        _ => (Box::new(messages_chat::Stream::new("m")), Output::Rewritten),
    }
}

/// `[handler selector][chunk seed][upstream SSE bytes]` through `SseTransform` with each
/// provider's stream handler (selector % 8: 0 OpenAI chat, 1 OpenAI chat stripping usage,
/// 2 Responses, 3 Anthropic, 4 Gemini, 5 Anthropic→chat, 6 Gemini→chat, 7 chat→Messages).
pub fn llm_stream(data: &[u8]) {
    let [sel, seed, body @ ..] = data else {
        return;
    };
    let (handler, kind) = stream_handler(*sel);
    let capture = sel & 0x20 != 0;
    let mut t = SseTransform::new(handler, Instant::now(), capture);
    let mut info = LlmInfo::default();
    let mut out = Vec::new();
    for part in chunks(*seed, body) {
        let bytes = t
            .data(part, &mut info)
            .expect("input within the event limit");
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(&t.end(&mut info));
    if !capture {
        assert!(
            info.completion.is_none(),
            "completion kept though not captured"
        );
    }
    assert_completions_bounded(&info);
    match kind {
        Output::Passthrough => assert_rest_is_whitespace(&out, body),
        Output::Filtered => {}
        Output::Rewritten => {
            let mut p = SseParser::default();
            p.push(&out);
            let mut evs = Vec::new();
            drain(&mut p, &mut evs);
            assert!(p.pending().is_empty(), "rewritten stream ends mid-event");
            for ev in evs {
                assert!(
                    ev.data == "[DONE]" || serde_json::from_str::<Value>(&ev.data).is_ok(),
                    "rewritten event is not JSON: {:?}",
                    ev.data
                );
            }
        }
    }
}

// === translate ===

fn assert_alternating_roles(messages: &Value) {
    let roles: Vec<&str> = messages
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("role").and_then(Value::as_str))
        .collect();
    assert!(
        roles.windows(2).all(|w| w[0] != w[1]),
        "Anthropic messages must alternate roles: {roles:?}"
    );
}

/// A JSON body through every request/response translation (both directions, chained), and
/// the raw bytes through error re-shaping for every client/upstream pair.
pub fn translate(data: &[u8]) {
    for client in [Wire::OpenAi, Wire::Anthropic, Wire::Gemini] {
        for upstream in [Wire::OpenAi, Wire::Anthropic, Wire::Gemini] {
            let e = translate::error_body(client, upstream, http::StatusCode::BAD_GATEWAY, data);
            if client != upstream {
                assert!(
                    e.pointer("/error/message").is_some_and(Value::is_string),
                    "re-shaped error has no message: {e}"
                );
            }
        }
    }
    let _ = translate::error_message(data);
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };

    let to_anthropic = chat_anthropic::request(&v);
    assert!(to_anthropic["max_tokens"].is_u64(), "Anthropic max_tokens");
    assert_alternating_roles(&to_anthropic["messages"]);
    let _ = messages_chat::request(&to_anthropic, false);
    let _ = chat_anthropic::response(&v, "fallback");

    let to_gemini = chat_gemini::request(&v);
    assert!(to_gemini.is_object(), "Gemini request is an object");
    let _ = chat_gemini::response(&v, "fallback");

    for use_max_completion_tokens in [false, true] {
        let to_chat = messages_chat::request(&v, use_max_completion_tokens);
        let back = chat_anthropic::request(&to_chat);
        assert_alternating_roles(&back["messages"]);
    }
    let chat = messages_chat::response(&v, "fallback");
    let _ = chat_anthropic::response(&json!({"content": chat["content"]}), "fallback");
}

// === config_load ===

/// YAML text through the whole loader (parse, env expansion, validation, compile).
pub fn config_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errs) = config::load_str(text, Source::Embedded) {
        assert!(!errs.0.is_empty(), "a failed load names at least one error");
    }
}

// === cel ===

/// A request log with every variable family set, so evaluation reaches past "no such key".
static FULL_LOG: LazyLock<RequestLog> = LazyLock::new(|| {
    let mut log = RequestLog::new("default/gw".into(), "http".into());
    log.route = Some("default/r".into());
    log.backend = Some("b".into());
    log.method = "POST".into();
    log.host = "localhost".into();
    log.path = "/v1/chat/completions".into();
    log.uri = "/v1/chat/completions?x=1".into();
    log.status = Some(200);
    log.end = Some(log.start + Duration::from_millis(5));
    log.request_headers = vec![("x-a".into(), "1".into()), ("X-A".into(), "2".into())];
    log.response_headers = vec![("content-type".into(), "application/json".into())];
    log.llm = Some(LlmInfo {
        provider: "openai".into(),
        operation: "chat",
        request_model: Some("gpt".into()),
        input_tokens: Some(u64::MAX),
        output_tokens: Some(1),
        prompt: Some(json!([{"role": "user", "content": "hi"}])),
        completion: Some(vec!["hello".into()]),
        ..Default::default()
    });
    log.mcp = Some(McpInfo {
        method: Some("tools/call".into()),
        tool_name: Some("echo".into()),
        tool_arguments: Some(json!({"a": [1, 2]})),
        ..Default::default()
    });
    log
});

/// An expression compiled (anything over the length bound is refused before parsing), then
/// evaluated against an empty and a full request log, and the result converted for export.
pub fn cel(data: &[u8]) {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let expr = match Expression::compile(src) {
        Ok(expr) => expr,
        Err(e) => {
            if src.len() > MAX_EXPRESSION_BYTES {
                assert!(
                    matches!(e, CelError::Rejected { .. }),
                    "over the length bound, yet parsed: {e}"
                );
            }
            return;
        }
    };
    let empty = RequestLog::new("default/gw".into(), "http".into());
    for log in [&empty, &*FULL_LOG] {
        if let Ok(v) = expr.eval(log) {
            let _ = gateway::cel::to_json(&v);
        }
        let _ = Executor::new(log, expr.references()).eval_bool(&expr);
    }
}

// === mcp_jsonrpc ===

/// `[chunk seed][bytes]`: the bytes as one MCP client message (JSON-RPC classification, the
/// `_meta` rewrite the gateway applies to forwarded requests) and as a target's SSE stream.
pub fn mcp_jsonrpc(data: &[u8]) {
    use gateway::mcp::jsonrpc;
    use gateway::sse::{SseEvent, SseParser};

    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    match jsonrpc::parse(body) {
        Ok(msg) => {
            let mut v = msg.to_json();
            let again = jsonrpc::classify(v.clone()).map_err(|r| r.error);
            assert_eq!(again, Ok(msg.clone()), "to_json → classify round trip");
            jsonrpc::set_meta(&mut v, "traceparent", json!("00-x"));
            if msg.method().is_some() && v["params"].is_object() {
                assert_eq!(v["params"]["_meta"]["traceparent"], "00-x", "_meta set");
                let meta_again = jsonrpc::classify(v).map(|m| m.method().map(str::to_owned));
                assert_eq!(
                    meta_again.ok().flatten().as_deref(),
                    msg.method(),
                    "_meta keeps the message valid"
                );
            }
        }
        Err(r) => assert!(
            [jsonrpc::PARSE_ERROR, jsonrpc::INVALID_REQUEST].contains(&r.error.code),
            "client errors are parse or invalid-request: {:?}",
            r.error
        ),
    }

    // The same bytes as a target's SSE stream: chunking must not change the events.
    let limit = 1 << 20;
    let parse = |parts: Vec<&[u8]>| {
        let mut p = SseParser::new(limit);
        let mut evs = Vec::new();
        for part in parts {
            evs.extend(p.events(part).expect("input within the SSE limit"));
        }
        evs
    };
    assert_eq!(
        parse(vec![body]),
        parse(chunks(seed, body)),
        "chunking changed the MCP SSE events"
    );
    // Encode → parse round trip for any one-line event name and CR-free data.
    let text = String::from_utf8_lossy(body).replace('\r', "");
    let (name, payload) = text.split_once('\n').unwrap_or((&text, ""));
    let evs = parse(vec![&SseEvent::frame(name, payload)]);
    assert_eq!(evs.len(), 1, "one encoded event");
    assert_eq!(evs[0].event.as_deref(), Some(name), "event name round trip");
    assert_eq!(evs[0].data, payload, "data round trip");
}
