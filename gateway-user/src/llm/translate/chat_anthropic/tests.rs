//! Table and golden-fixture tests for every translation direction (fixtures in
//! `gateway-user/testdata/translate/`).

use std::time::Instant;

use serde_json::{Value, json};

use crate::ctx::LlmInfo;
use crate::llm::stream::{SseTransform, StreamHandler};
use crate::llm::translate::{chat_anthropic, chat_gemini, messages_chat};
use crate::sse::SseParser;

fn fixture(name: &str) -> String {
    let p = format!("{}/testdata/translate/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn json_fixture(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).expect("fixture json")
}

/// Runs a stream through a handler, splitting the input at every `step` bytes to exercise
/// partial events, and returns the parsed output events (event name, data JSON or text).
fn run(
    handler: Box<dyn StreamHandler>,
    input: &str,
    step: usize,
) -> (Vec<(Option<String>, String)>, LlmInfo, bool) {
    let mut t = SseTransform::new(handler, Instant::now(), true);
    let mut info = LlmInfo::default();
    let mut out = Vec::new();
    for chunk in input.as_bytes().chunks(step) {
        out.extend_from_slice(&t.data(chunk, &mut info).expect("data"));
    }
    out.extend_from_slice(&t.end(&mut info));
    let mut p = SseParser::default();
    p.push(&out);
    let mut evs = Vec::new();
    while let Some(e) = p.next_event().expect("parse") {
        evs.push((e.event, e.data));
    }
    (evs, info, t.completed())
}

#[test]
fn chat_request_to_anthropic_golden() {
    let got = chat_anthropic::request(&json_fixture("chat_tools_request.json"));
    assert_eq!(got, json_fixture("chat_tools_request.anthropic.json"));
}

#[test]
fn chat_request_defaults() {
    let got = chat_anthropic::request(
        &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(got["max_tokens"], chat_anthropic::DEFAULT_MAX_TOKENS);
    assert!(got.get("system").is_none());
    assert_eq!(got["messages"][0]["content"][0]["text"], "hi");
}

#[test]
fn tool_choice_table() {
    let cases = [
        (json!("auto"), json!({"type": "auto"})),
        (json!("none"), json!({"type": "none"})),
        (json!("required"), json!({"type": "any"})),
        (
            json!({"type": "function", "function": {"name": "f"}}),
            json!({"type": "tool", "name": "f"}),
        ),
    ];
    for (oai, want) in cases {
        let got = chat_anthropic::request(
            &json!({"model": "m", "messages": [], "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": oai}),
        );
        assert_eq!(got["tool_choice"], want);
    }
}

#[test]
fn anthropic_response_to_chat() {
    let msg = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "text", "text": "Let me check."}, {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 7}});
    let chat = chat_anthropic::response(&msg, "req-model");
    assert_eq!(chat["object"], "chat.completion");
    assert_eq!(chat["model"], "claude-x");
    assert_eq!(chat["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chat["choices"][0]["message"]["content"], "Let me check.");
    let call = &chat["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().expect("args"))
            .expect("json"),
        json!({"city": "Paris"})
    );
    assert_eq!(
        chat["usage"],
        json!({"prompt_tokens": 15, "completion_tokens": 7, "total_tokens": 22, "prompt_tokens_details": {"cached_tokens": 5}})
    );
}

#[test]
fn stop_reason_tables() {
    for (a, o) in [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("stop_sequence", "stop"),
        ("refusal", "content_filter"),
    ] {
        assert_eq!(chat_anthropic::finish_reason(a), o);
    }
    for (o, a) in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
    ] {
        assert_eq!(messages_chat::stop_reason(o), a);
    }
}

#[test]
fn anthropic_stream_to_chat_chunks() {
    for step in [1, 7, 4096] {
        let (evs, info, done) = run(
            Box::new(chat_anthropic::Stream::new("claude-sonnet-4-5", true)),
            &fixture("anthropic_tool_stream.sse"),
            step,
        );
        assert!(done);
        assert_eq!(evs.last().map(|e| e.1.as_str()), Some("[DONE]"));
        let chunks: Vec<Value> = evs
            .iter()
            .filter(|e| e.1 != "[DONE]")
            .map(|e| serde_json::from_str(&e.1).expect("chunk"))
            .collect();
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Checking");
        let args: String = chunks
            .iter()
            .filter_map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
            })
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&args).expect("args"),
            json!({"city": "Paris"})
        );
        assert!(
            chunks
                .iter()
                .any(|c| c["choices"][0]["finish_reason"] == "tool_calls")
        );
        let usage = chunks
            .iter()
            .find(|c| c["choices"].as_array().is_some_and(|a| a.is_empty()))
            .expect("usage chunk");
        assert_eq!(usage["usage"]["prompt_tokens"], 42);
        assert_eq!(usage["usage"]["completion_tokens"], 17);
        assert_eq!(info.input_tokens, Some(42));
        assert_eq!(info.output_tokens, Some(17));
        assert_eq!(
            info.response_model.as_deref(),
            Some("claude-sonnet-4-5-20250929")
        );
        assert_eq!(info.tool_calls, vec!["get_weather".to_owned()]);
    }
}

#[test]
fn anthropic_stream_without_usage_request_has_no_usage_chunk() {
    let (evs, _, _) = run(
        Box::new(chat_anthropic::Stream::new("m", false)),
        &fixture("anthropic_tool_stream.sse"),
        64,
    );
    assert!(!evs.iter().any(|e| e.1.contains("\"usage\"")));
}

#[test]
fn openai_stream_to_anthropic_events() {
    for step in [1, 13, 4096] {
        let (evs, info, done) = run(
            Box::new(messages_chat::Stream::new("gpt-4o")),
            &fixture("openai_tool_stream.sse"),
            step,
        );
        assert!(done);
        let names: Vec<&str> = evs.iter().filter_map(|e| e.0.as_deref()).collect();
        assert_eq!(
            names,
            vec![
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let delta: Value = serde_json::from_str(&evs[7].1).expect("message_delta");
        assert_eq!(delta["delta"]["stop_reason"], "tool_use");
        assert_eq!(
            delta["usage"],
            json!({"input_tokens": 20, "output_tokens": 12, "cache_read_input_tokens": 10})
        );
        let tool_start: Value = serde_json::from_str(&evs[4].1).expect("tool start");
        assert_eq!(tool_start["content_block"]["name"], "get_weather");
        assert_eq!(info.input_tokens, Some(30));
    }
}

#[test]
fn messages_request_to_chat() {
    let msg = json!({"model": "gpt-4o", "system": "be nice", "max_tokens": 100, "stream": true,
        "messages": [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}],
        "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any"}});
    let chat = messages_chat::request(&msg, true);
    assert_eq!(
        chat["messages"][0],
        json!({"role": "system", "content": "be nice"})
    );
    assert_eq!(
        chat["messages"][1],
        json!({"role": "user", "content": "hi"})
    );
    assert_eq!(
        chat["messages"][2]["tool_calls"][0]["function"]["name"],
        "f"
    );
    assert_eq!(
        chat["messages"][3],
        json!({"role": "tool", "tool_call_id": "t1", "content": "ok"})
    );
    assert_eq!(chat["max_completion_tokens"], 100);
    assert_eq!(chat["stream_options"]["include_usage"], true);
    assert_eq!(chat["tool_choice"], "required");
    assert_eq!(
        chat["tools"][0]["function"]["parameters"],
        json!({"type": "object"})
    );
}

#[test]
fn chat_response_to_messages() {
    let chat = json!({"model": "gpt-4o", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}});
    let m = messages_chat::response(&chat, "x");
    assert_eq!(m["type"], "message");
    assert_eq!(m["content"], json!([{"type": "text", "text": "hi"}]));
    assert_eq!(m["stop_reason"], "max_tokens");
    assert_eq!(m["usage"], json!({"input_tokens": 5, "output_tokens": 2}));
}

#[test]
fn chat_request_to_gemini() {
    let g = chat_gemini::request(&json_fixture("chat_tools_request.json"));
    assert_eq!(g["systemInstruction"]["parts"][0]["text"], "You are terse.");
    assert_eq!(
        g["contents"][0],
        json!({"role": "user", "parts": [{"text": "What is the weather in Paris?"}]})
    );
    assert_eq!(g["contents"][1]["role"], "model");
    assert_eq!(
        g["contents"][1]["parts"][0]["functionCall"],
        json!({"name": "get_weather", "args": {"city": "Paris"}})
    );
    assert_eq!(
        g["contents"][2]["parts"][0]["functionResponse"],
        json!({"name": "get_weather", "response": {"temp_c": 21}})
    );
    assert_eq!(
        g["contents"][3]["parts"][1]["inlineData"],
        json!({"mimeType": "image/png", "data": "AAAA"})
    );
    assert_eq!(
        g["generationConfig"],
        json!({"temperature": 0.3, "maxOutputTokens": 256, "stopSequences": ["END"]})
    );
    assert_eq!(
        g["tools"][0]["functionDeclarations"][0]["name"],
        "get_weather"
    );
    assert_eq!(g["toolConfig"]["functionCallingConfig"]["mode"], "ANY");
}

#[test]
fn gemini_response_and_stream_to_chat() {
    let g = json!({"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": {"x": 1}}}], "role": "model"}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 3, "totalTokenCount": 7}, "modelVersion": "gemini-2.0-flash-001"});
    let c = chat_gemini::response(&g, "gemini-2.0-flash");
    assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        c["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        "{\"x\":1}"
    );
    assert_eq!(c["usage"]["total_tokens"], 7);
    for step in [1, 4096] {
        let (evs, info, done) = run(
            Box::new(chat_gemini::Stream::new("gemini-2.0-flash", true)),
            &fixture("gemini_stream.sse"),
            step,
        );
        assert!(done);
        assert_eq!(evs.last().map(|e| e.1.as_str()), Some("[DONE]"));
        let text: String = evs
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(&e.1).ok())
            .filter_map(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(text, "Hello there");
        assert!(evs.iter().any(|e| e.1.contains("\"completion_tokens\":3")));
        assert_eq!(info.output_tokens, Some(3));
    }
}

#[test]
fn truncated_anthropic_stream_is_not_completed() {
    let full = fixture("anthropic_tool_stream.sse");
    let cut = &full[..full.find("event: message_delta").expect("delta")];
    let (evs, _, done) = run(Box::new(chat_anthropic::Stream::new("m", false)), cut, 50);
    assert!(!done);
    assert!(!evs.iter().any(|e| e.1 == "[DONE]"));
}
