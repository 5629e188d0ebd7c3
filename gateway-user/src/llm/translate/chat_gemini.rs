//! OpenAI Chat Completions client → Gemini generateContent provider: request, response, stream.

use std::collections::HashMap;

use bytes::BytesMut;
use serde_json::{Map, Value, json};

use super::{
    ChunkWriter, assistant_message, chat_content_text, chat_usage, new_id, parse_arguments,
    stop_list, unix_now,
};
use crate::ctx::LlmInfo;
use crate::llm::gemini;
use crate::llm::stream::StreamHandler;
use crate::sse::SseEvent;

/// Chat Completions request → generateContent request (the model goes in the URL path).
pub fn request(chat: &Value) -> Value {
    let (system, contents) = contents(chat);
    let mut out = Map::new();
    out.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({"parts": system}));
    }
    let generation = generation_config(chat);
    if !generation.is_empty() {
        out.insert("generationConfig".into(), Value::Object(generation));
    }
    if let Some(decls) = function_declarations(chat) {
        out.insert("tools".into(), json!([{"functionDeclarations": decls}]));
    }
    if let Some(m) = function_calling_mode(chat) {
        out.insert("toolConfig".into(), json!({"functionCallingConfig": m}));
    }
    Value::Object(out)
}

/// `messages` → (system instruction parts, `contents`).
fn contents(chat: &Value) -> (Vec<Value>, Vec<Value>) {
    let mut system = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    // tool_call_id → function name, for functionResponse parts.
    let mut call_names: HashMap<String, String> = HashMap::new();
    for m in chat
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => system.push(json!({"text": chat_content_text(content)})),
            "assistant" => {
                if let Some(turn) = model_turn(m, content, &mut call_names) {
                    contents.push(turn);
                }
            }
            "tool" | "function" => contents.push(function_response(m, content, &call_names)),
            _ => contents.push(json!({"role": "user", "parts": user_parts(content)})),
        }
    }
    (system, contents)
}

/// An assistant message → a `model` turn (text and functionCall parts), remembering each tool
/// call's function name by id. `None` when it has neither.
fn model_turn(
    m: &Value,
    content: &Value,
    call_names: &mut HashMap<String, String>,
) -> Option<Value> {
    let mut parts = Vec::new();
    let t = chat_content_text(content);
    if !t.is_empty() {
        parts.push(json!({"text": t}));
    }
    for call in m
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Some(id) = call.get("id").and_then(Value::as_str) {
            call_names.insert(id.to_owned(), name.to_owned());
        }
        parts.push(json!({"functionCall": {"name": name,
            "args": parse_arguments(call.pointer("/function/arguments").unwrap_or(&Value::Null))}}));
    }
    (!parts.is_empty()).then(|| json!({"role": "model", "parts": parts}))
}

/// A tool result → a `user` turn with a functionResponse part, named after the call it answers.
fn function_response(m: &Value, content: &Value, call_names: &HashMap<String, String>) -> Value {
    let id = m
        .get("tool_call_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = call_names
        .get(id)
        .cloned()
        .or_else(|| m.get("name").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    let text = chat_content_text(content);
    let response = serde_json::from_str::<Value>(&text)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({"content": text}));
    json!({"role": "user", "parts": [{"functionResponse": {"name": name, "response": response}}]})
}

/// User content (a string, or text and image_url parts) → Gemini parts.
fn user_parts(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) => vec![json!({"text": s})],
        Value::Array(ps) => ps
            .iter()
            .filter_map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => Some(json!({"text": p.get("text")})),
                Some("image_url") => {
                    let url = p.pointer("/image_url/url").and_then(Value::as_str).unwrap_or_default();
                    url.strip_prefix("data:")
                        .and_then(|r| r.split_once(','))
                        .map(|(meta, data)| json!({"inlineData": {"mimeType": meta.trim_end_matches(";base64"), "data": data}}))
                        .or_else(|| Some(json!({"fileData": {"fileUri": url}})))
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Sampling parameters, token limit, stop sequences and JSON mode → `generationConfig`.
fn generation_config(chat: &Value) -> Map<String, Value> {
    let mut generation = Map::new();
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("n", "candidateCount"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(v) = chat.get(from).filter(|v| !v.is_null()) {
            generation.insert(to.into(), v.clone());
        }
    }
    if let Some(v) = chat
        .get("max_completion_tokens")
        .or_else(|| chat.get("max_tokens"))
        .filter(|v| !v.is_null())
    {
        generation.insert("maxOutputTokens".into(), v.clone());
    }
    if let Some(s) = chat.get("stop").and_then(stop_list) {
        generation.insert("stopSequences".into(), s);
    }
    if let Some(t) = chat
        .pointer("/response_format/type")
        .and_then(Value::as_str)
        && (t == "json_object" || t == "json_schema")
    {
        generation.insert("responseMimeType".into(), json!("application/json"));
    }
    generation
}

/// `tools` → functionDeclarations; `None` when there are none.
fn function_declarations(chat: &Value) -> Option<Vec<Value>> {
    let tools = chat.get("tools").and_then(Value::as_array)?;
    let decls: Vec<Value> = tools
        .iter()
        .filter_map(|t| t.get("function"))
        .map(|f| {
            let mut d = json!({"name": f.get("name"), "description": f.get("description").cloned().unwrap_or(json!(""))});
            if let Some(p) = f.get("parameters") {
                d["parameters"] = p.clone();
            }
            d
        })
        .collect();
    (!decls.is_empty()).then_some(decls)
}

/// `tool_choice` → functionCallingConfig.
fn function_calling_mode(chat: &Value) -> Option<Value> {
    match chat.get("tool_choice") {
        Some(Value::String(s)) if s == "none" => Some(json!({"mode": "NONE"})),
        Some(Value::String(s)) if s == "required" => Some(json!({"mode": "ANY"})),
        Some(Value::String(s)) if s == "auto" => Some(json!({"mode": "AUTO"})),
        Some(Value::Object(o)) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .map(|n| json!({"mode": "ANY", "allowedFunctionNames": [n]})),
        _ => None,
    }
}

/// OpenAI embeddings request (`input`: string or list of strings) → `batchEmbedContents`.
pub fn embeddings_request(body: &Value) -> Value {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let model = if model.starts_with("models/") {
        model.to_owned()
    } else {
        format!("models/{model}")
    };
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let mut requests: Vec<Value> = inputs
        .iter()
        .map(|t| json!({"model": model, "content": {"parts": [{"text": t}]}}))
        .collect();
    if let Some(d) = body.get("dimensions") {
        for r in &mut requests {
            r["outputDimensionality"] = d.clone();
        }
    }
    json!({"requests": requests})
}

/// `batchEmbedContents` (or `embedContent`) response → OpenAI embeddings list.
pub fn embeddings_response(g: &Value, model: &str) -> Value {
    let list: Vec<&Value> = match g.get("embeddings").and_then(Value::as_array) {
        Some(a) => a.iter().collect(),
        None => g.get("embedding").into_iter().collect(),
    };
    let data: Vec<Value> = list
        .iter()
        .enumerate()
        .map(|(i, e)| json!({"object": "embedding", "index": i, "embedding": e.get("values").cloned().unwrap_or(json!([]))}))
        .collect();
    json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": 0, "total_tokens": 0}})
}

/// Gemini `finishReason` → OpenAI `finish_reason`.
pub fn finish_reason(r: &str, has_tool_calls: bool) -> &'static str {
    if has_tool_calls {
        return "tool_calls";
    }
    match r {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" => "content_filter",
        _ => "stop",
    }
}

fn tool_calls(c: &Value, offset: usize) -> Vec<Value> {
    c.pointer("/content/parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("functionCall"))
        .enumerate()
        .map(|(i, f)| json!({"index": offset + i, "id": new_id("call_"), "type": "function",
            "function": {"name": f.get("name"), "arguments": f.get("args").map(|a| a.to_string()).unwrap_or_else(|| "{}".into())}}))
        .collect()
}

/// generateContent response → Chat Completions response.
pub fn response(g: &Value, request_model: &str) -> Value {
    let mut choices = Vec::new();
    for (i, c) in g
        .get("candidates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let text = gemini::candidate_text(c);
        let mut calls = tool_calls(c, 0);
        for call in &mut calls {
            if let Some(o) = call.as_object_mut() {
                o.remove("index");
            }
        }
        let has_calls = !calls.is_empty();
        let message = assistant_message(text, calls);
        let fr = c
            .get("finishReason")
            .and_then(Value::as_str)
            .unwrap_or("STOP");
        choices.push(json!({"index": i, "message": message, "finish_reason": finish_reason(fr, has_calls), "logprobs": null}));
    }
    let mut info = LlmInfo::default();
    if let Some(u) = g.get("usageMetadata") {
        gemini::observe_usage(u, &mut info);
    }
    let mut usage = chat_usage(
        info.input_tokens.unwrap_or(0),
        info.output_tokens.unwrap_or(0),
        info.cached_input_tokens,
    );
    if let Some(r) = info.reasoning_tokens {
        usage["completion_tokens_details"] = json!({"reasoning_tokens": r});
    }
    json!({
        "id": g.get("responseId").and_then(Value::as_str).map(|s| format!("chatcmpl-{s}")).unwrap_or_else(|| new_id("chatcmpl-")),
        "object": "chat.completion",
        "created": unix_now(),
        "model": g.get("modelVersion").and_then(Value::as_str).unwrap_or(request_model),
        "choices": choices,
        "usage": usage,
    })
}

/// Gemini SSE (`alt=sse`) → OpenAI chat chunks.
pub struct Stream {
    w: ChunkWriter,
    sent_role: bool,
    tools_sent: usize,
    finish: Option<&'static str>,
    done: bool,
}

impl Stream {
    pub fn new(model: &str, include_usage: bool) -> Self {
        Stream {
            w: ChunkWriter::new(model, include_usage),
            sent_role: false,
            tools_sent: 0,
            finish: None,
            done: false,
        }
    }

    fn close(&mut self, out: &mut BytesMut, info: &LlmInfo) {
        if self.done {
            return;
        }
        self.done = true;
        self.w.close(out, self.finish.unwrap_or("stop"), info);
    }
}

impl StreamHandler for Stream {
    fn on_event(&mut self, ev: &SseEvent, out: &mut BytesMut, info: &mut LlmInfo) {
        let Some(v) = ev.json() else {
            // Dropping it would hand the client a silently shortened answer marked complete.
            super::malformed_event(None, &ev.data, out);
            return;
        };
        if let Some(err) = v.get("error") {
            let e = json!({"error": {"message": err.get("message").cloned().unwrap_or(json!("upstream stream error")), "type": "api_error"}});
            SseEvent::encode(None, &e.to_string(), out);
            return;
        }
        gemini::observe_response(v, info);
        if let Some(m) = v.get("modelVersion").and_then(Value::as_str) {
            self.w.model = m.to_owned();
        }
        if !self.sent_role {
            self.sent_role = true;
            self.w
                .delta(out, json!({"role": "assistant", "content": ""}), None);
        }
        let Some(c) = v.pointer("/candidates/0") else {
            return;
        };
        let text = gemini::candidate_text(c);
        if !text.is_empty() {
            self.w.delta(out, json!({"content": text}), None);
        }
        let calls = tool_calls(c, self.tools_sent);
        if !calls.is_empty() {
            self.tools_sent += calls.len();
            self.w.delta(out, json!({"tool_calls": calls}), None);
        }
        if let Some(fr) = c.get("finishReason").and_then(Value::as_str) {
            self.finish = Some(finish_reason(fr, self.tools_sent > 0));
        }
    }

    fn on_end(&mut self, out: &mut BytesMut, info: &mut LlmInfo) {
        // Gemini has no end sentinel: the HTTP body ending after a finishReason is the end.
        if self.finish.is_some() {
            self.close(out, info);
        }
    }

    fn completed(&self) -> bool {
        self.finish.is_some()
    }
}
