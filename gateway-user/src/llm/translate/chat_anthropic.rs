//! OpenAI Chat Completions client → Anthropic Messages provider: request, response, stream.

use bytes::BytesMut;
use serde_json::{Map, Value, json};

use super::{
    ToolChunks, assistant_message, chat_content_text, chat_usage, function_call, new_id,
    parse_arguments, stop_list, unix_now,
};
use crate::ctx::LlmInfo;
use crate::llm::anthropic;
use crate::llm::stream::StreamHandler;
use crate::sse::SseEvent;

/// Anthropic requires `max_tokens`; used when the client sent none.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Chat Completions request → Messages request.
pub fn request(chat: &Value) -> Value {
    let (system, messages) = messages(chat);
    let mut out = Map::new();
    out.insert(
        "model".into(),
        chat.get("model").cloned().unwrap_or(json!("")),
    );
    out.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        out.insert("system".into(), json!(system.join("\n")));
    }
    let max = chat
        .get("max_completion_tokens")
        .or_else(|| chat.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".into(), json!(max));
    for k in ["temperature", "top_p", "stream"] {
        if let Some(v) = chat.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    if let Some(s) = chat.get("stop").and_then(stop_list) {
        out.insert("stop_sequences".into(), s);
    }
    if let Some(u) = chat.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({"user_id": u}));
    }
    insert_tools(chat, &mut out);
    Value::Object(out)
}

/// `messages` → (system texts, Messages `messages` with alternating roles).
fn messages(chat: &Value) -> (Vec<String>, Vec<Value>) {
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for m in chat
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        match role {
            "system" | "developer" => {
                let t = m.get("content").map(chat_content_text).unwrap_or_default();
                if !t.is_empty() {
                    system.push(t);
                }
            }
            "tool" | "function" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let content = m.get("content").map(chat_content_text).unwrap_or_default();
                let block = json!({"type": "tool_result", "tool_use_id": id, "content": content});
                push_blocks(&mut messages, "user", vec![block]);
            }
            "assistant" => {
                let blocks = assistant_blocks(m);
                if !blocks.is_empty() {
                    push_blocks(&mut messages, "assistant", blocks);
                }
            }
            _ => {
                let blocks = user_blocks(m.get("content").unwrap_or(&Value::Null));
                push_blocks(&mut messages, "user", blocks);
            }
        }
    }
    (system, messages)
}

/// An assistant message → text and tool_use blocks.
fn assistant_blocks(m: &Value) -> Vec<Value> {
    let mut blocks = Vec::new();
    let text = m.get("content").map(chat_content_text).unwrap_or_default();
    if !text.is_empty() {
        blocks.push(json!({"type": "text", "text": text}));
    }
    for call in m
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        blocks.push(json!({
            "type": "tool_use",
            "id": call.get("id").cloned().unwrap_or_else(|| json!(new_id("toolu_"))),
            "name": call.pointer("/function/name").cloned().unwrap_or(json!("")),
            "input": parse_arguments(call.pointer("/function/arguments").unwrap_or(&Value::Null)),
        }));
    }
    blocks
}

/// `tools` → Messages tools; `tool_choice` and `parallel_tool_calls: false` → `tool_choice`.
fn insert_tools(chat: &Value, out: &mut Map<String, Value>) {
    if let Some(tools) = chat.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .filter_map(|t| t.get("function"))
            .map(|f| {
                json!({
                    "name": f.get("name").cloned().unwrap_or(json!("")),
                    "description": f.get("description").cloned().unwrap_or(json!("")),
                    "input_schema": f.get("parameters").cloned().unwrap_or(json!({"type": "object"})),
                })
            })
            .collect();
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(tools));
        }
    }
    let parallel_off = chat.get("parallel_tool_calls") == Some(&Value::Bool(false));
    let choice = match chat.get("tool_choice") {
        Some(Value::String(s)) if s == "none" => Some(json!({"type": "none"})),
        Some(Value::String(s)) if s == "required" => Some(json!({"type": "any"})),
        Some(Value::String(s)) if s == "auto" => Some(json!({"type": "auto"})),
        Some(Value::Object(o)) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .map(|n| json!({"type": "tool", "name": n})),
        _ => None,
    };
    match (choice, parallel_off) {
        (Some(mut c), true) => {
            c["disable_parallel_tool_use"] = json!(true);
            out.insert("tool_choice".into(), c);
        }
        (Some(c), false) => {
            out.insert("tool_choice".into(), c);
        }
        (None, true) if out.contains_key("tools") => {
            out.insert(
                "tool_choice".into(),
                json!({"type": "auto", "disable_parallel_tool_use": true}),
            );
        }
        _ => {}
    }
}

/// Appends blocks, merging with the previous message of the same role (Anthropic expects
/// alternating roles, and tool results for one turn in one user message).
fn push_blocks(messages: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    if let Some(last) = messages.last_mut()
        && last.get("role").and_then(Value::as_str) == Some(role)
        && let Some(Value::Array(existing)) = last.get_mut("content")
    {
        existing.extend(blocks);
        return;
    }
    messages.push(json!({"role": role, "content": blocks}));
}

fn user_blocks(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => Some(
                    json!({"type": "text", "text": p.get("text").cloned().unwrap_or(json!(""))}),
                ),
                Some("image_url") => {
                    let url = p
                        .pointer("/image_url/url")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    Some(image_block(url))
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn image_block(url: &str) -> Value {
    if let Some(rest) = url.strip_prefix("data:")
        && let Some((meta, data)) = rest.split_once(',')
    {
        let media = meta.trim_end_matches(";base64");
        return json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}});
    }
    json!({"type": "image", "source": {"type": "url", "url": url}})
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub fn finish_reason(stop: &str) -> &'static str {
    match stop {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// Messages response → Chat Completions response.
pub fn response(msg: &Value, fallback_model: &str) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in msg
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => {
                text.push_str(b.get("text").and_then(Value::as_str).unwrap_or_default())
            }
            Some("tool_use") => {
                calls.push(function_call(b.get("id"), b.get("name"), b.get("input")))
            }
            _ => {}
        }
    }
    let message = assistant_message(text, calls);
    let stop = msg
        .get("stop_reason")
        .and_then(Value::as_str)
        .unwrap_or("end_turn");
    let mut usage_info = LlmInfo::default();
    if let Some(u) = msg.get("usage") {
        anthropic::observe_usage(u, &mut usage_info);
    }
    json!({
        "id": msg.get("id").and_then(Value::as_str).map(|s| format!("chatcmpl-{s}")).unwrap_or_else(|| new_id("chatcmpl-")),
        "object": "chat.completion",
        "created": unix_now(),
        "model": msg.get("model").and_then(Value::as_str).unwrap_or(fallback_model),
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(stop), "logprobs": null}],
        "usage": chat_usage(
            usage_info.input_tokens.unwrap_or(0),
            usage_info.output_tokens.unwrap_or(0),
            usage_info.cached_input_tokens,
        ),
    })
}

/// Anthropic SSE → OpenAI chat chunks.
pub struct Stream(ToolChunks);

impl Stream {
    pub fn new(model: &str, include_usage: bool) -> Self {
        Stream(ToolChunks::new(model, include_usage))
    }
}

impl StreamHandler for Stream {
    fn on_event(&mut self, ev: &SseEvent, out: &mut BytesMut, info: &mut LlmInfo) {
        let Some(v) = ev.json() else {
            // Dropping it would hand the client a silently shortened answer marked complete.
            super::malformed_event(None, &ev.data, out);
            return;
        };
        let kind = ev
            .event
            .clone()
            .or_else(|| v.get("type").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        let observed = anthropic::observe_event(&kind, v, info);
        let s = &mut self.0;
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        match kind.as_str() {
            "message_start" => {
                if let Some(m) = v.pointer("/message/model").and_then(Value::as_str) {
                    s.w.model = m.to_owned();
                }
                s.w.delta(out, json!({"role": "assistant", "content": ""}), None);
            }
            "content_block_start" => {
                let block = v.get("content_block").unwrap_or(&Value::Null);
                if block.get("type").and_then(Value::as_str) == Some("tool_use") {
                    let none = Value::Null;
                    let id = block.get("id").unwrap_or(&none);
                    s.tool_start(out, index, id, block.get("name").unwrap_or(&none));
                }
            }
            "content_block_delta" => {
                let delta = v.get("delta").unwrap_or(&Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let t = delta.get("text").cloned().unwrap_or(json!(""));
                        s.w.delta(out, json!({"content": t}), None);
                    }
                    Some("input_json_delta") => {
                        let part = delta.get("partial_json").cloned().unwrap_or(json!(""));
                        s.tool_args(out, index, &part);
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(r) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    s.finish = Some(finish_reason(r));
                }
            }
            "error" => {
                let err = json!({"error": {
                    "message": v.pointer("/error/message").cloned().unwrap_or(json!("upstream stream error")),
                    "type": v.pointer("/error/type").cloned().unwrap_or(json!("api_error")),
                }});
                SseEvent::encode(None, &err.to_string(), out);
            }
            _ => {}
        }
        if observed {
            s.close(out, info);
        }
    }

    fn completed(&self) -> bool {
        self.0.done()
    }
}

#[cfg(test)]
mod tests;
