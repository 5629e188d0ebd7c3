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
    ("guard_scan", guard_scan),
    ("guard_stream", guard_stream),
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

// === guard_scan, guard_stream ===

/// Rule sets the guard harnesses pick from: agentgateway's builtins, the credential and
/// injection builtins, and custom patterns with alternation, repetition and boundaries.
static GUARD_RULES: LazyLock<Vec<gateway::guard::scan::RuleSet>> = LazyLock::new(|| {
    use gateway::guard::scan::{RuleSet, RuleSpec};
    let b = |n: &str| RuleSpec::Builtin(n.to_owned());
    let p = |n: &str| RuleSpec::Pattern(n.to_owned());
    let sets = [
        vec![
            b("ssn"),
            b("creditCard"),
            b("phoneNumber"),
            b("email"),
            b("caSin"),
        ],
        vec![
            b("awsAccessKey"),
            b("githubToken"),
            b("openAIApiKey"),
            b("anthropicApiKey"),
            b("privateKey"),
            b("jwt"),
            b("promptInjection"),
        ],
        vec![
            p(r"ab+c"),
            p(r"\bkey-[0-9]{2,}\b"),
            b("email"),
            p(r"x(?:yz)*y"),
        ],
        vec![p(r"[0-9]+"), p(r"é+")],
    ];
    sets.iter()
        .map(|s| RuleSet::compile(s).expect("harness rules compile"))
        .collect()
});

/// Cut points into `text` (on character boundaries) chosen by `cuts`.
fn cut_text<'a>(text: &'a str, cuts: &[u8]) -> Vec<&'a str> {
    let mut pieces = Vec::new();
    let mut at = 0;
    for c in cuts {
        if at >= text.len() {
            break;
        }
        let mut next = (at + usize::from(*c % 16)).min(text.len());
        while !text.is_char_boundary(next) {
            next += 1;
        }
        pieces.push(&text[at..next]);
        at = next;
    }
    pieces.push(&text[at..]);
    pieces
}

/// `[rule set][n cuts][cuts...][text]`: masking a text cut into any pieces gives exactly the
/// whole-text result; nothing is held back beyond the window; builtin masks are final
/// (masking again changes nothing).
pub fn guard_scan(data: &[u8]) {
    use gateway::guard::scan::{Masker, WINDOW};
    let [sel, n, rest @ ..] = data else {
        return;
    };
    let n = usize::from(*n % 32).min(rest.len());
    let (cuts, text) = rest.split_at(n);
    let text = String::from_utf8_lossy(text);
    let rules = &GUARD_RULES[usize::from(*sel) % GUARD_RULES.len()];
    let mut hits = Vec::new();
    let whole = rules
        .mask(&text, &mut hits)
        .unwrap_or_else(|| text.to_string());
    let mut m = Masker::new();
    let mut out = String::new();
    let mut stream_hits = Vec::new();
    for piece in cut_text(&text, cuts) {
        m.push(rules, piece, &mut out, &mut stream_hits);
        assert!(
            m.pending() <= WINDOW + 4,
            "held back {} bytes, past the window",
            m.pending()
        );
    }
    m.finish(rules, &mut out, &mut stream_hits);
    assert_eq!(
        out, whole,
        "streamed masking differs from whole-text masking"
    );
    assert_eq!(stream_hits.len(), hits.len(), "hit counts differ");
    if usize::from(*sel) % GUARD_RULES.len() < 2 {
        let mut again = Vec::new();
        assert!(
            rules.mask(&whole, &mut again).is_none(),
            "builtin masks are not final: {whole:?}"
        );
    }
}

/// `[format][n cuts][cuts...][text]`: the text streamed as provider SSE events (OpenAI chat,
/// Anthropic messages, Gemini, Responses) cut at the chosen points, through the stream guard:
/// the text the client reassembles equals the whole-text mask, and every event stays JSON.
pub fn guard_stream(data: &[u8]) {
    use gateway::guard::{Guard, GuardKind, PromptGuard, Rejection, Scope};
    let [sel, n, rest @ ..] = data else {
        return;
    };
    let n = usize::from(*n % 32).min(rest.len());
    let (cuts, text) = rest.split_at(n);
    let text = String::from_utf8_lossy(text).to_string();
    let set = usize::from(*sel >> 2) % 2;
    let rules = std::sync::Arc::new(
        gateway::guard::scan::RuleSet::compile(&match set {
            0 => vec![
                gateway::guard::scan::RuleSpec::Builtin("ssn".into()),
                gateway::guard::scan::RuleSpec::Builtin("creditCard".into()),
                gateway::guard::scan::RuleSpec::Builtin("email".into()),
            ],
            _ => vec![gateway::guard::scan::RuleSpec::Pattern(
                "ab+c|[0-9]{3,}".into(),
            )],
        })
        .expect("rules"),
    );
    let whole = rules
        .mask(&text, &mut Vec::new())
        .unwrap_or_else(|| text.clone());
    let pg = PromptGuard {
        streaming: true,
        request: Vec::new(),
        response: vec![Guard {
            index: 0,
            kind: GuardKind::Regex {
                action: gateway::guard::Action::Mask,
                rules,
            },
            rejection: Rejection::default(),
            scope: Scope::DEFAULT,
        }],
    };
    let pieces = cut_text(&text, cuts);
    let (wire, responses, route, events) = match sel % 4 {
        0 => (
            Wire::OpenAi,
            false,
            RouteType::Completions,
            chat_events(&pieces),
        ),
        1 => (
            Wire::Anthropic,
            false,
            RouteType::Messages,
            anthropic_events(&pieces),
        ),
        2 => (
            Wire::Gemini,
            false,
            RouteType::GenerateContent,
            gemini_events(&pieces),
        ),
        _ => (
            Wire::OpenAi,
            true,
            RouteType::Responses,
            responses_events(&pieces),
        ),
    };
    let g = gateway::guard::stream::StreamGuard::new(&pg, wire, responses, route, None)
        .expect("a response regex guard applies to streams");
    let handler: Box<dyn StreamHandler> = match sel % 4 {
        0 => Box::new(openai::ChatStream::new(false)),
        1 => Box::new(anthropic::MessagesStream::default()),
        2 => Box::<gemini::GenerateStream>::default(),
        _ => Box::<openai::ResponsesStream>::default(),
    };
    let mut t = SseTransform::new(handler, Instant::now(), true).with_filter(Box::new(g));
    let mut info = LlmInfo::default();
    let mut out = Vec::new();
    out.extend_from_slice(&t.data(events.as_bytes(), &mut info).expect("events"));
    out.extend_from_slice(&t.end(&mut info));
    let mut p = SseParser::default();
    p.push(&out);
    let mut evs = Vec::new();
    drain(&mut p, &mut evs);
    let mut got = String::new();
    for ev in &evs {
        if ev.data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(&ev.data).expect("guarded events stay JSON");
        let piece = match sel % 4 {
            0 => v.pointer("/choices/0/delta/content"),
            1 => v.pointer("/delta/text"),
            2 => v.pointer("/candidates/0/content/parts/0/text"),
            _ => (v.get("type").and_then(Value::as_str) == Some("response.output_text.delta"))
                .then(|| v.get("delta"))
                .flatten(),
        };
        if let Some(s) = piece.and_then(Value::as_str) {
            got.push_str(s);
        }
    }
    assert_eq!(got, whole, "client text differs from the whole-text mask");
    let recorded: String = info.completion.unwrap_or_default().concat();
    assert_eq!(recorded, whole, "telemetry saw other text than the client");
}

fn sse(out: &mut String, event: Option<&str>, v: &Value) {
    let mut b = BytesMut::new();
    SseEvent::encode(event, &v.to_string(), &mut b);
    out.push_str(std::str::from_utf8(&b).expect("utf-8"));
}

fn chat_events(pieces: &[&str]) -> String {
    let mut out = String::new();
    let chunk = |delta: Value, finish: Value| json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    sse(
        &mut out,
        None,
        &chunk(json!({"role": "assistant", "content": ""}), Value::Null),
    );
    for p in pieces {
        sse(&mut out, None, &chunk(json!({"content": p}), Value::Null));
    }
    sse(&mut out, None, &chunk(json!({}), json!("stop")));
    out.push_str("data: [DONE]\n\n");
    out
}

fn anthropic_events(pieces: &[&str]) -> String {
    let mut out = String::new();
    sse(
        &mut out,
        Some("message_start"),
        &json!({"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant", "content": [], "model": "m", "usage": {"input_tokens": 1, "output_tokens": 0}}}),
    );
    sse(
        &mut out,
        Some("content_block_start"),
        &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    for p in pieces {
        sse(
            &mut out,
            Some("content_block_delta"),
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}),
        );
    }
    sse(
        &mut out,
        Some("content_block_stop"),
        &json!({"type": "content_block_stop", "index": 0}),
    );
    sse(
        &mut out,
        Some("message_delta"),
        &json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}}),
    );
    sse(
        &mut out,
        Some("message_stop"),
        &json!({"type": "message_stop"}),
    );
    out
}

fn gemini_events(pieces: &[&str]) -> String {
    let mut out = String::new();
    let n = pieces.len();
    for (i, p) in pieces.iter().enumerate() {
        let mut c = json!({"content": {"role": "model", "parts": [{"text": p}]}, "index": 0});
        if i + 1 == n {
            c["finishReason"] = json!("STOP");
        }
        sse(
            &mut out,
            None,
            &json!({"candidates": [c], "modelVersion": "m"}),
        );
    }
    out
}

fn responses_events(pieces: &[&str]) -> String {
    let mut out = String::new();
    let full: String = pieces.concat();
    sse(
        &mut out,
        Some("response.created"),
        &json!({"type": "response.created", "response": {"id": "r", "status": "in_progress", "output": []}}),
    );
    for p in pieces {
        sse(
            &mut out,
            Some("response.output_text.delta"),
            &json!({"type": "response.output_text.delta", "item_id": "i", "output_index": 0, "content_index": 0, "delta": p}),
        );
    }
    sse(
        &mut out,
        Some("response.output_text.done"),
        &json!({"type": "response.output_text.done", "item_id": "i", "output_index": 0, "content_index": 0, "text": full}),
    );
    sse(
        &mut out,
        Some("response.completed"),
        &json!({"type": "response.completed", "response": {"id": "r", "status": "completed", "output": [{"type": "message", "content": [{"type": "output_text", "text": full}]}], "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}}}),
    );
    out
}
