//! OpenAI Chat Completions client → AWS Bedrock Converse provider: the request and the
//! response, plain (`response`) or streamed (`Stream`). The model goes in the path (`/model/{modelId}/converse`), not the
//! body. ConverseStream's binary event-stream framing is decoded by `llm::eventstream`.
//!
//! Converse has no equivalent for some Chat Completions inputs; `request` refuses them with a
//! message for a 400 rather than dropping them: a remote `image_url` (Converse takes image
//! bytes only) and `n` above 1.

use bytes::BytesMut;
use serde_json::{Map, Value, json};

use super::{
    ToolChunks, assistant_message, chat_content_text, chat_usage, function_call, new_id,
    parse_arguments, stop_list, unix_now,
};
use crate::ctx::LlmInfo;
use crate::llm::stream::StreamHandler;
use crate::sse::SseEvent;

/// Chat Completions request → Converse request.
pub fn request(chat: &Value) -> Result<Value, String> {
    if chat.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err("Bedrock Converse returns one choice: `n` above 1 is not supported".into());
    }
    let (system, messages) = messages(chat)?;
    let mut out = Map::new();
    out.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        let blocks: Vec<Value> = system.into_iter().map(|t| json!({"text": t})).collect();
        out.insert("system".into(), Value::Array(blocks));
    }
    let mut inference = Map::new();
    if let Some(max) = chat
        .get("max_completion_tokens")
        .or_else(|| chat.get("max_tokens"))
        .and_then(Value::as_u64)
    {
        inference.insert("maxTokens".into(), json!(max));
    }
    for (from, to) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(v) = chat.get(from).filter(|v| v.is_number()) {
            inference.insert(to.into(), v.clone());
        }
    }
    if let Some(s) = chat.get("stop").and_then(stop_list) {
        inference.insert("stopSequences".into(), s);
    }
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if let Some(t) = tool_config(chat, &out) {
        out.insert("toolConfig".into(), t);
    }
    Ok(Value::Object(out))
}

/// `messages` → (system texts, Converse messages with alternating roles).
fn messages(chat: &Value) -> Result<(Vec<String>, Vec<Value>), String> {
    let mut system = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    for m in chat
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match m.get("role").and_then(Value::as_str).unwrap_or("user") {
            "system" | "developer" => {
                let t = m.get("content").map(chat_content_text).unwrap_or_default();
                if !t.is_empty() {
                    system.push(t);
                }
            }
            "tool" | "function" => {
                let id = m.get("tool_call_id").cloned().unwrap_or(json!(""));
                let text = m.get("content").map(chat_content_text).unwrap_or_default();
                let block = json!({"toolResult": {"toolUseId": id, "content": [{"text": text}]}});
                push(&mut out, "user", vec![block]);
            }
            "assistant" => {
                let blocks = assistant_blocks(m);
                if !blocks.is_empty() {
                    push(&mut out, "assistant", blocks);
                }
            }
            _ => {
                let blocks = user_blocks(m.get("content").unwrap_or(&Value::Null))?;
                push(&mut out, "user", blocks);
            }
        }
    }
    Ok((system, out))
}

fn assistant_blocks(m: &Value) -> Vec<Value> {
    let mut blocks = Vec::new();
    let text = m.get("content").map(chat_content_text).unwrap_or_default();
    if !text.is_empty() {
        blocks.push(json!({"text": text}));
    }
    for call in m
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        blocks.push(json!({"toolUse": {
            "toolUseId": call.get("id").cloned().unwrap_or_else(|| json!(new_id("tooluse_"))),
            "name": call.pointer("/function/name").cloned().unwrap_or(json!("")),
            "input": parse_arguments(call.pointer("/function/arguments").unwrap_or(&Value::Null)),
        }}));
    }
    blocks
}

fn user_blocks(content: &Value) -> Result<Vec<Value>, String> {
    let parts = match content {
        Value::String(s) => return Ok(vec![json!({"text": s})]),
        Value::Array(parts) => parts,
        _ => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    for p in parts {
        match p.get("type").and_then(Value::as_str) {
            Some("text") => {
                out.push(json!({"text": p.get("text").cloned().unwrap_or(json!(""))}));
            }
            Some("image_url") => {
                let url = p
                    .pointer("/image_url/url")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                out.push(image_block(url)?);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A `data:` URL → a Converse image block (`format` from the media type).
fn image_block(url: &str) -> Result<Value, String> {
    let bad = || {
        "Bedrock Converse takes images as data: URLs (base64 png, jpeg, gif or webp); \
         remote image URLs are not supported"
            .to_owned()
    };
    let rest = url.strip_prefix("data:").ok_or_else(bad)?;
    let (meta, data) = rest.split_once(',').ok_or_else(bad)?;
    let media = meta.strip_suffix(";base64").ok_or_else(bad)?;
    let format = match media {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        _ => return Err(bad()),
    };
    Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
}

/// Appends blocks, merging with the previous message of the same role (Converse expects
/// alternating roles, and one turn's tool results in one user message).
fn push(messages: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    if let Some(last) = messages.last_mut()
        && last.get("role").and_then(Value::as_str) == Some(role)
        && let Some(Value::Array(existing)) = last.get_mut("content")
    {
        existing.extend(blocks);
        return;
    }
    messages.push(json!({"role": role, "content": blocks}));
}

/// `tools` and `tool_choice` → `toolConfig`. `tool_choice: "none"` has no Converse form: the
/// tools are left out, unless the conversation already holds tool blocks (Converse then needs
/// the tool definitions), in which case they are sent without a choice.
fn tool_config(chat: &Value, out: &Map<String, Value>) -> Option<Value> {
    let tools: Vec<Value> = chat
        .get("tools")
        .and_then(Value::as_array)?
        .iter()
        .filter_map(|t| t.get("function"))
        .map(|f| {
            let mut spec = json!({
                "name": f.get("name").cloned().unwrap_or(json!("")),
                "inputSchema": {"json": f.get("parameters").cloned().unwrap_or(json!({"type": "object"}))},
            });
            if let Some(d) = f.get("description").filter(|d| d.is_string()) {
                spec["description"] = d.clone();
            }
            json!({"toolSpec": spec})
        })
        .collect();
    if tools.is_empty() {
        return None;
    }
    let choice = match chat.get("tool_choice") {
        Some(Value::String(s)) if s == "none" => {
            let history = out
                .get("messages")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|m| m.get("content").and_then(Value::as_array))
                .flatten()
                .any(|b| b.get("toolUse").is_some() || b.get("toolResult").is_some());
            if !history {
                return None;
            }
            None
        }
        Some(Value::String(s)) if s == "required" => Some(json!({"any": {}})),
        Some(Value::String(s)) if s == "auto" => Some(json!({"auto": {}})),
        Some(Value::Object(o)) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .map(|n| json!({"tool": {"name": n}})),
        _ => None,
    };
    let mut config = json!({"tools": tools});
    if let Some(c) = choice {
        config["toolChoice"] = c;
    }
    Some(config)
}

/// Converse `stopReason` → OpenAI `finish_reason`.
pub fn finish_reason(stop: &str) -> &'static str {
    match stop {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        _ => "stop",
    }
}

/// Converse response → Chat Completions response (`model`: the model id the request named).
pub fn response(resp: &Value, model: &str) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in resp
        .pointer("/output/message/content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(t) = b.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(u) = b.get("toolUse") {
            calls.push(function_call(
                u.get("toolUseId"),
                u.get("name"),
                u.get("input"),
            ));
        }
    }
    let message = assistant_message(text, calls);
    let stop = resp
        .get("stopReason")
        .and_then(Value::as_str)
        .unwrap_or("end_turn");
    let n = |k: &str| resp.pointer(&format!("/usage/{k}")).and_then(Value::as_u64);
    json!({
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(stop), "logprobs": null}],
        "usage": chat_usage(
            n("inputTokens").unwrap_or(0),
            n("outputTokens").unwrap_or(0),
            n("cacheReadInputTokens"),
        ),
    })
}

/// Converse usage into the request's record.
pub fn observe_usage(u: &Value, info: &mut LlmInfo) {
    let n = |k: &str| u.get(k).and_then(Value::as_u64);
    info.input_tokens = n("inputTokens").or(info.input_tokens);
    info.output_tokens = n("outputTokens").or(info.output_tokens);
    info.total_tokens = n("totalTokens").or(info.total_tokens);
    info.cached_input_tokens = n("cacheReadInputTokens").or(info.cached_input_tokens);
    info.cache_write_tokens = n("cacheWriteInputTokens").or(info.cache_write_tokens);
}

/// A Bedrock error (`x-amzn-errortype` header `ValidationException:http://…`, body
/// `{"message": …}`) in the client's error shape; the status is kept by the caller.
pub fn error_body(
    client: crate::llm::provider::Wire,
    status: http::StatusCode,
    kind: Option<&str>,
    body: &[u8],
) -> Value {
    let msg = super::error_text(status, body);
    let from_body = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("__type").and_then(Value::as_str).map(str::to_owned));
    // `ValidationException:http://internal.amazon.com/...` or `com.amazon...#ThrottlingException`.
    let kind = kind.or(from_body.as_deref()).map(|k| {
        let k = k.split(':').next().unwrap_or(k);
        k.rsplit('#').next().unwrap_or(k)
    });
    let msg = match kind {
        Some(k) => format!("{k}: {msg}"),
        None => msg,
    };
    crate::llm::error_body(client, status, &msg)
}

/// ConverseStream events (decoded from event-stream frames by `llm::eventstream`) → OpenAI chat
/// chunks. The stream ends after `metadata` (which carries the usage, after `messageStop`).
pub struct Stream(ToolChunks);

impl Stream {
    pub fn new(model: &str, include_usage: bool) -> Self {
        Stream(ToolChunks::new(model, include_usage))
    }
}

impl StreamHandler for Stream {
    fn on_event(&mut self, ev: &SseEvent, out: &mut BytesMut, info: &mut LlmInfo) {
        let Some(v) = ev.json() else {
            super::malformed_event(None, &ev.data, out);
            return;
        };
        let s = &mut self.0;
        let block = v
            .get("contentBlockIndex")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        match ev.event.as_deref().unwrap_or_default() {
            "messageStart" => {
                s.w.delta(out, json!({"role": "assistant", "content": ""}), None);
            }
            "contentBlockStart" => {
                if let Some(t) = v.pointer("/start/toolUse") {
                    let none = Value::Null;
                    let id = t.get("toolUseId").unwrap_or(&none);
                    s.tool_start(out, block, id, t.get("name").unwrap_or(&none));
                }
            }
            "contentBlockDelta" => {
                let delta = v.get("delta").unwrap_or(&Value::Null);
                if let Some(t) = delta.get("text") {
                    s.w.delta(out, json!({"content": t}), None);
                } else if let Some(input) = delta.pointer("/toolUse/input") {
                    s.tool_args(out, block, input);
                }
            }
            "messageStop" => {
                let r = v
                    .get("stopReason")
                    .and_then(Value::as_str)
                    .unwrap_or("end_turn");
                s.finish = Some(finish_reason(r));
                info.finish_reasons = vec![finish_reason(r).to_owned()];
            }
            "metadata" => {
                if let Some(u) = v.get("usage") {
                    observe_usage(u, info);
                }
                s.close(out, info);
            }
            "exception" => {
                let err = json!({"error": {
                    "message": v.get("message").cloned().unwrap_or(json!("upstream stream error")),
                    "type": v.get("type").cloned().unwrap_or(json!("api_error")),
                }});
                SseEvent::encode(None, &err.to_string(), out);
            }
            _ => {}
        }
    }

    fn completed(&self) -> bool {
        self.0.done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_the_aws_error_type() {
        use crate::llm::provider::Wire;
        let st = http::StatusCode::TOO_MANY_REQUESTS;
        let v = error_body(
            Wire::OpenAi,
            st,
            Some("ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            br#"{"message":"Too many requests, please wait before trying again."}"#,
        );
        assert_eq!(
            v["error"]["message"],
            "ThrottlingException: Too many requests, please wait before trying again."
        );
        let v = error_body(
            Wire::Anthropic,
            http::StatusCode::BAD_REQUEST,
            None,
            br#"{"__type":"com.amazon.coral.validate#ValidationException","message":"bad"}"#,
        );
        assert_eq!(v["error"]["message"], "ValidationException: bad");
        assert_eq!(v["type"], "error");
    }

    #[test]
    fn chat_request_becomes_converse() {
        let chat = json!({
            "model": "anthropic.claude-3-5-sonnet",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "t1", "type": "function",
                    "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
                {"role": "user", "content": "Thanks"},
            ],
            "max_tokens": 100, "temperature": 0.2, "top_p": 0.9, "stop": "END",
            "tools": [{"type": "function", "function": {"name": "weather", "description": "w",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": "required",
        });
        let c = request(&chat).expect("translatable");
        assert!(c.get("model").is_none(), "the model goes in the path");
        assert_eq!(c["system"], json!([{"text": "Be brief."}]));
        assert_eq!(
            c["inferenceConfig"],
            json!({"maxTokens": 100, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]})
        );
        let m = c["messages"].as_array().expect("messages");
        let roles: Vec<&str> = m.iter().map(|x| x["role"].as_str().unwrap_or("")).collect();
        // The tool result and the next user text merge into one user turn.
        assert_eq!(roles, ["user", "assistant", "user"]);
        assert_eq!(
            m[0]["content"][1],
            json!({"image": {"format": "png", "source": {"bytes": "AAAA"}}})
        );
        assert_eq!(
            m[1]["content"][0],
            json!({"toolUse": {"toolUseId": "t1", "name": "weather", "input": {"city": "Paris"}}})
        );
        assert_eq!(
            m[2]["content"],
            json!([{"toolResult": {"toolUseId": "t1", "content": [{"text": "sunny"}]}}, {"text": "Thanks"}])
        );
        assert_eq!(c["toolConfig"]["toolChoice"], json!({"any": {}}));
        assert_eq!(
            c["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["properties"]["city"],
            json!({"type": "string"})
        );
    }

    #[test]
    fn what_converse_cannot_take_is_refused() {
        let remote = json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]});
        assert!(
            request(&remote)
                .expect_err("remote image")
                .contains("data: URLs")
        );
        let n = json!({"n": 2, "messages": [{"role": "user", "content": "hi"}]});
        assert!(request(&n).expect_err("n").contains("`n`"));
        // tool_choice none without tool history: no tools offered at all.
        let none = json!({"messages": [{"role": "user", "content": "hi"}], "tool_choice": "none",
            "tools": [{"type": "function", "function": {"name": "f"}}]});
        assert!(request(&none).expect("ok").get("toolConfig").is_none());
        // With tool blocks in the history Converse needs the definitions: sent, no choice.
        let mut with_history = none.clone();
        with_history["messages"] = json!([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "a", "content": "ok"}]);
        let c = request(&with_history).expect("ok");
        assert!(c["toolConfig"]["tools"].is_array() && c["toolConfig"].get("toolChoice").is_none());
    }

    #[test]
    fn converse_response_becomes_chat() {
        let resp = json!({
            "output": {"message": {"role": "assistant", "content": [
                {"text": "Checking."},
                {"toolUse": {"toolUseId": "tu1", "name": "weather", "input": {"city": "Oslo"}}}]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 12, "outputTokens": 7, "totalTokens": 19, "cacheReadInputTokens": 4},
            "metrics": {"latencyMs": 321},
        });
        let c = response(&resp, "anthropic.claude-3-5-sonnet");
        assert_eq!(c["model"], "anthropic.claude-3-5-sonnet");
        assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(c["choices"][0]["message"]["content"], "Checking.");
        let call = &c["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["id"], "tu1");
        assert_eq!(call["function"]["arguments"], "{\"city\":\"Oslo\"}");
        assert_eq!(c["usage"]["prompt_tokens"], 12);
        assert_eq!(c["usage"]["completion_tokens"], 7);
        assert_eq!(c["usage"]["total_tokens"], 19);
        assert_eq!(c["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("guardrail_intervened", "content_filter"),
            ("content_filtered", "content_filter"),
        ] {
            assert_eq!(finish_reason(stop), finish);
        }
    }

    #[test]
    fn converse_stream_becomes_chat_chunks() {
        use crate::llm::eventstream::{Decoder, tests::frame};
        let mut wire = Vec::new();
        for (name, payload) in [
            ("messageStart", r#"{"role":"assistant"}"#),
            (
                "contentBlockDelta",
                r#"{"delta":{"text":"Hel"},"contentBlockIndex":0}"#,
            ),
            (
                "contentBlockDelta",
                r#"{"delta":{"text":"lo"},"contentBlockIndex":0}"#,
            ),
            ("contentBlockStop", r#"{"contentBlockIndex":0}"#),
            (
                "contentBlockStart",
                r#"{"start":{"toolUse":{"toolUseId":"tu1","name":"f"}},"contentBlockIndex":1}"#,
            ),
            (
                "contentBlockDelta",
                r#"{"delta":{"toolUse":{"input":"{\"a\":"}},"contentBlockIndex":1}"#,
            ),
            (
                "contentBlockDelta",
                r#"{"delta":{"toolUse":{"input":"1}"}},"contentBlockIndex":1}"#,
            ),
            ("messageStop", r#"{"stopReason":"tool_use"}"#),
            (
                "metadata",
                r#"{"usage":{"inputTokens":9,"outputTokens":4,"totalTokens":13},"metrics":{"latencyMs":50}}"#,
            ),
        ] {
            wire.extend(frame("event", name, payload));
        }
        let mut events = Vec::new();
        let mut d = Decoder::new();
        for chunk in wire.chunks(5) {
            d.push(chunk, &mut events).expect("valid");
        }
        let mut s = Stream::new("anthropic.claude-3-haiku", true);
        let mut info = LlmInfo::default();
        let mut out = BytesMut::new();
        for ev in &events {
            assert!(!s.completed());
            s.on_event(ev, &mut out, &mut info);
        }
        assert!(s.completed());
        let text = String::from_utf8(out.to_vec()).expect("utf-8");
        let chunks: Vec<Value> = text
            .split("\n\n")
            .filter_map(|b| b.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).expect("chunk JSON"))
            .collect();
        let content: String = chunks
            .iter()
            .filter_map(|c| {
                c.pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
            })
            .collect();
        assert_eq!(content, "Hello");
        let args: String = chunks
            .iter()
            .filter_map(|c| {
                c.pointer("/choices/0/delta/tool_calls/0/function/arguments")
                    .and_then(Value::as_str)
            })
            .collect();
        assert_eq!(args, "{\"a\":1}");
        let finish: Vec<&str> = chunks
            .iter()
            .filter_map(|c| {
                c.pointer("/choices/0/finish_reason")
                    .and_then(Value::as_str)
            })
            .collect();
        assert_eq!(finish, ["tool_calls"]);
        let usage = chunks
            .iter()
            .find_map(|c| c.get("usage"))
            .expect("usage chunk");
        assert_eq!(
            (
                usage["prompt_tokens"].as_u64(),
                usage["completion_tokens"].as_u64()
            ),
            (Some(9), Some(4))
        );
        assert_eq!(
            (info.input_tokens, info.output_tokens, info.total_tokens),
            (Some(9), Some(4), Some(13))
        );
        assert!(text.ends_with("data: [DONE]\n\n"));
    }
}
