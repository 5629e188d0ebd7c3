//! Anthropic Messages client → OpenAI Chat Completions provider: request, response, stream.

use std::collections::BTreeMap;

use bytes::BytesMut;
use serde_json::{Map, Value, json};

use super::new_id;
use crate::ctx::LlmInfo;
use crate::llm::anthropic::content_text;
use crate::llm::openai;
use crate::llm::stream::StreamHandler;
use crate::sse::SseEvent;

/// Messages request → Chat Completions request. `max_completion_tokens` is used for OpenAI
/// itself (newer models reject `max_tokens`), `max_tokens` for compatible servers.
pub fn request(msg: &Value, use_max_completion_tokens: bool) -> Value {
    let mut out = Map::new();
    out.insert(
        "model".into(),
        msg.get("model").cloned().unwrap_or(json!("")),
    );
    out.insert("messages".into(), Value::Array(chat_messages(msg)));
    if let Some(max) = msg.get("max_tokens") {
        let key = if use_max_completion_tokens {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        out.insert(key.into(), max.clone());
    }
    for k in ["temperature", "top_p"] {
        if let Some(v) = msg.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    if let Some(s) = msg.get("stop_sequences") {
        out.insert("stop".into(), s.clone());
    }
    if msg.get("stream").and_then(Value::as_bool) == Some(true) {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(u) = msg.pointer("/metadata/user_id") {
        out.insert("user".into(), u.clone());
    }
    insert_tools(msg, &mut out);
    Value::Object(out)
}

/// `system` and `messages` → chat messages. A user turn's tool results become `tool`
/// messages, ahead of the turn's own text and images.
fn chat_messages(msg: &Value) -> Vec<Value> {
    let mut messages = Vec::new();
    if let Some(system) = msg.get("system") {
        let t = content_text(system);
        if !t.is_empty() {
            messages.push(json!({"role": "system", "content": t}));
        }
    }
    for m in msg
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let content = m.get("content").unwrap_or(&Value::Null);
        let blocks: Vec<Value> = match content {
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            Value::Array(b) => b.clone(),
            _ => Vec::new(),
        };
        if role == "assistant" {
            messages.push(assistant_message(&blocks));
        } else {
            push_user_blocks(role, &blocks, &mut messages);
        }
    }
    messages
}

/// Assistant text and tool_use blocks → one assistant message with `tool_calls`.
fn assistant_message(blocks: &[Value]) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or_default()),
            Some("tool_use") => calls.push(json!({
                "id": b.get("id"),
                "type": "function",
                "function": {"name": b.get("name"), "arguments": b.get("input").map(|i| i.to_string()).unwrap_or_else(|| "{}".into())},
            })),
            _ => {}
        }
    }
    let mut out = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
    if !calls.is_empty() {
        out["tool_calls"] = Value::Array(calls);
    }
    out
}

/// A non-assistant turn: each tool_result → a `tool` message; text and images → one message
/// of `role` (plain text when it is only text), when there are any.
fn push_user_blocks(role: &str, blocks: &[Value], messages: &mut Vec<Value>) {
    let mut parts = Vec::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("tool_result") => {
                let c = b.get("content").map(content_text).unwrap_or_default();
                messages.push(
                    json!({"role": "tool", "tool_call_id": b.get("tool_use_id"), "content": c}),
                );
            }
            Some("text") => parts.push(json!({"type": "text", "text": b.get("text")})),
            Some("image") => {
                let url = image_url(b.get("source").unwrap_or(&Value::Null));
                parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            _ => {}
        }
    }
    if !parts.is_empty() {
        let only_text = parts.iter().all(|p| p["type"] == "text");
        let content = if only_text {
            json!(
                parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("")
            )
        } else {
            Value::Array(parts)
        };
        messages.push(json!({"role": role, "content": content}));
    }
}

/// An image block's `source` → an image URL (a `data:` URL for base64 data).
fn image_url(src: &Value) -> String {
    match src.get("type").and_then(Value::as_str) {
        Some("base64") => format!(
            "data:{};base64,{}",
            src.get("media_type")
                .and_then(Value::as_str)
                .unwrap_or("image/png"),
            src.get("data").and_then(Value::as_str).unwrap_or_default()
        ),
        _ => src
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    }
}

/// `tools` (those with an input schema) and `tool_choice` → their Chat Completions forms.
fn insert_tools(msg: &Value, out: &mut Map<String, Value>) {
    if let Some(tools) = msg.get("tools").and_then(Value::as_array) {
        let tools: Vec<Value> = tools
            .iter()
            .filter(|t| t.get("input_schema").is_some())
            .map(|t| json!({"type": "function", "function": {
                "name": t.get("name"), "description": t.get("description").cloned().unwrap_or(json!("")),
                "parameters": t.get("input_schema")}}))
            .collect();
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(tools));
        }
    }
    if let Some(tc) = msg.get("tool_choice") {
        let choice = match tc.get("type").and_then(Value::as_str) {
            Some("any") => Some(json!("required")),
            Some("auto") => Some(json!("auto")),
            Some("none") => Some(json!("none")),
            Some("tool") => Some(json!({"type": "function", "function": {"name": tc.get("name")}})),
            _ => None,
        };
        if let Some(c) = choice {
            out.insert("tool_choice".into(), c);
        }
        if tc.get("disable_parallel_tool_use") == Some(&json!(true)) {
            out.insert("parallel_tool_calls".into(), json!(false));
        }
    }
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`.
pub fn stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// Chat Completions response → Messages response.
pub fn response(chat: &Value, fallback_model: &str) -> Value {
    let choice = chat.pointer("/choices/0").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    if let Some(t) = choice.pointer("/message/content").and_then(Value::as_str)
        && !t.is_empty()
    {
        content.push(json!({"type": "text", "text": t}));
    }
    for call in choice
        .pointer("/message/tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        content.push(json!({
            "type": "tool_use",
            "id": call.get("id"),
            "name": call.pointer("/function/name"),
            "input": super::parse_arguments(call.pointer("/function/arguments").unwrap_or(&Value::Null)),
        }));
    }
    let mut info = LlmInfo::default();
    if let Some(u) = chat.get("usage") {
        openai::observe_usage(u, &mut info);
    }
    let mut usage = json!({
        "input_tokens": info.input_tokens.unwrap_or(0) - info.cached_input_tokens.unwrap_or(0).min(info.input_tokens.unwrap_or(0)),
        "output_tokens": info.output_tokens.unwrap_or(0),
    });
    if let Some(c) = info.cached_input_tokens {
        usage["cache_read_input_tokens"] = json!(c);
    }
    let finish = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .unwrap_or("stop");
    json!({
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": chat.get("model").and_then(Value::as_str).unwrap_or(fallback_model),
        "content": content,
        "stop_reason": stop_reason(finish),
        "stop_sequence": null,
        "usage": usage,
    })
}

#[derive(PartialEq)]
enum Block {
    None,
    Text(usize),
    Tool(usize),
}

/// OpenAI chat chunks → Anthropic SSE events.
pub struct Stream {
    model: String,
    started: bool,
    next_index: usize,
    open: Block,
    /// OpenAI tool_calls index → Anthropic block index.
    tools: BTreeMap<u64, usize>,
    stop: Option<&'static str>,
    done: bool,
}

impl Stream {
    pub fn new(model: &str) -> Self {
        Stream {
            model: model.to_owned(),
            started: false,
            next_index: 0,
            open: Block::None,
            tools: BTreeMap::new(),
            stop: None,
            done: false,
        }
    }

    fn event(out: &mut BytesMut, kind: &str, v: Value) {
        SseEvent::encode(Some(kind), &v.to_string(), out);
    }

    fn start(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        Self::event(
            out,
            "message_start",
            json!({"type": "message_start", "message": {
            "id": new_id("msg_"), "type": "message", "role": "assistant", "content": [],
            "model": self.model, "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0}}}),
        );
    }

    fn close_block(&mut self, out: &mut BytesMut) {
        match self.open {
            Block::Text(i) | Block::Tool(i) => {
                Self::event(
                    out,
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": i}),
                );
            }
            Block::None => {}
        }
        self.open = Block::None;
    }

    fn finish(&mut self, out: &mut BytesMut, info: &LlmInfo) {
        if self.done {
            return;
        }
        self.start(out);
        self.close_block(out);
        self.done = true;
        let input = info.input_tokens.unwrap_or(0);
        let cached = info.cached_input_tokens.unwrap_or(0).min(input);
        let mut usage = json!({"input_tokens": input - cached, "output_tokens": info.output_tokens.unwrap_or(0)});
        if cached > 0 {
            usage["cache_read_input_tokens"] = json!(cached);
        }
        Self::event(
            out,
            "message_delta",
            json!({"type": "message_delta",
            "delta": {"stop_reason": self.stop.unwrap_or("end_turn"), "stop_sequence": null},
            "usage": usage}),
        );
        Self::event(out, "message_stop", json!({"type": "message_stop"}));
    }
}

impl StreamHandler for Stream {
    fn on_event(&mut self, ev: &SseEvent, out: &mut BytesMut, info: &mut LlmInfo) {
        if ev.data == "[DONE]" {
            self.finish(out, info);
            return;
        }
        let Some(chunk) = ev.json() else {
            super::malformed_event(Some("error"), &ev.data, out);
            return;
        };
        if let Some(err) = chunk.get("error") {
            Self::event(
                out,
                "error",
                json!({"type": "error", "error": {
                "type": "api_error", "message": err.get("message").cloned().unwrap_or(json!("upstream stream error"))}}),
            );
            return;
        }
        openai::observe_chat_chunk(chunk, info);
        if let Some(m) = chunk.get("model").and_then(Value::as_str)
            && !self.started
        {
            self.model = m.to_owned();
        }
        self.start(out);
        let Some(c) = chunk.pointer("/choices/0") else {
            return;
        };
        if let Some(t) = c.pointer("/delta/content").and_then(Value::as_str)
            && !t.is_empty()
        {
            if !matches!(self.open, Block::Text(_)) {
                self.close_block(out);
                let i = self.next_index;
                self.next_index += 1;
                self.open = Block::Text(i);
                Self::event(
                    out,
                    "content_block_start",
                    json!({"type": "content_block_start", "index": i,
                    "content_block": {"type": "text", "text": ""}}),
                );
            }
            if let Block::Text(i) = self.open {
                Self::event(
                    out,
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": i,
                    "delta": {"type": "text_delta", "text": t}}),
                );
            }
        }
        for call in c
            .pointer("/delta/tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let oi = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            let block = match self.tools.get(&oi) {
                Some(b) => *b,
                None => {
                    self.close_block(out);
                    let i = self.next_index;
                    self.next_index += 1;
                    self.tools.insert(oi, i);
                    self.open = Block::Tool(i);
                    Self::event(
                        out,
                        "content_block_start",
                        json!({"type": "content_block_start", "index": i,
                        "content_block": {"type": "tool_use", "id": call.get("id").cloned().unwrap_or_else(|| json!(new_id("toolu_"))),
                            "name": call.pointer("/function/name").cloned().unwrap_or(json!("")), "input": {}}}),
                    );
                    i
                }
            };
            if let Some(args) = call.pointer("/function/arguments").and_then(Value::as_str)
                && !args.is_empty()
            {
                Self::event(
                    out,
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": block,
                    "delta": {"type": "input_json_delta", "partial_json": args}}),
                );
            }
        }
        if let Some(f) = c.get("finish_reason").and_then(Value::as_str) {
            self.stop = Some(stop_reason(f));
        }
    }

    fn on_end(&mut self, out: &mut BytesMut, info: &mut LlmInfo) {
        // Some compatible servers end without `[DONE]` after a finish_reason: still close the
        // message properly. A stream cut before any finish is left open (the client sees the
        // truncation).
        if self.stop.is_some() {
            self.finish(out, info);
        }
    }

    fn completed(&self) -> bool {
        self.done
    }
}
