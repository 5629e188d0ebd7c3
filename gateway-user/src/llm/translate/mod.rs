//! Translation between client and provider formats: OpenAI Chat Completions ⇄ Anthropic
//! Messages, and OpenAI Chat Completions → Gemini generateContent, for requests, responses,
//! streams and errors. Everything works on `serde_json::Value` so fields a translation does not
//! know are dropped deliberately rather than failing the request.

pub mod chat_anthropic;
pub mod chat_bedrock;
pub mod chat_gemini;
pub mod messages_chat;

use serde_json::{Value, json};

use super::provider::Wire;

/// Random id with a provider-style prefix (`chatcmpl-…`, `msg_…`).
pub fn new_id(prefix: &str) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let n: u128 = rng.random();
    format!("{prefix}{:024x}", n & ((1u128 << 96) - 1))
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The human message of an upstream error body in any provider's shape.
pub fn error_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let Some(e) = v.get("error") else {
        // AWS: `{"message": ...}` (or `Message`), the type in `x-amzn-errortype`.
        return ["message", "Message"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str))
            .map(str::to_owned);
    };
    match e {
        Value::String(s) => Some(s.clone()),
        _ => e.get("message").and_then(Value::as_str).map(str::to_owned),
    }
}

/// Re-shapes an upstream error body for a client that speaks another format. The status is
/// kept by the caller.
pub fn error_body(client: Wire, upstream: Wire, status: http::StatusCode, body: &[u8]) -> Value {
    if client == upstream
        && let Ok(v) = serde_json::from_slice::<Value>(body)
    {
        return v;
    }
    super::error_body(client, status, &error_text(status, body))
}

/// The message of an upstream error body: its `message` when it has one, else its text (the
/// first 1 KiB), else the status.
pub fn error_text(status: http::StatusCode, body: &[u8]) -> String {
    error_message(body).unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            format!("upstream returned {status}")
        } else {
            text.chars().take(1024).collect()
        }
    })
}

/// OpenAI `stop` (string or list) as a list.
pub fn stop_list(v: &Value) -> Option<Value> {
    match v {
        Value::String(s) => Some(json!([s])),
        Value::Array(_) => Some(v.clone()),
        _ => None,
    }
}

/// Text of OpenAI message content (string or parts).
pub fn chat_content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// Parses tool-call arguments; a model's malformed JSON is kept as a string value.
pub fn parse_arguments(args: &Value) -> Value {
    match args {
        Value::String(s) if s.trim().is_empty() => json!({}),
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| json!({"arguments": s})),
        Value::Null => json!({}),
        other => other.clone(),
    }
}

/// `data:` line of an OpenAI chat chunk.
pub fn chat_chunk(
    id: &str,
    model: &str,
    created: u64,
    choices: Value,
    usage: Option<Value>,
) -> Value {
    let mut c = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
    });
    if let Some(u) = usage {
        c["usage"] = u;
    }
    c
}

/// Writes the OpenAI chat chunks of a translated stream: one id, model and creation time for
/// the whole stream, and the closing sequence (finish chunk, optional usage chunk, `[DONE]`).
pub struct ChunkWriter {
    id: String,
    /// The response model; updated when the provider names it.
    pub model: String,
    created: u64,
    include_usage: bool,
}

impl ChunkWriter {
    pub fn new(model: &str, include_usage: bool) -> Self {
        ChunkWriter {
            id: new_id("chatcmpl-"),
            model: model.to_owned(),
            created: unix_now(),
            include_usage,
        }
    }

    /// One chunk with a delta for choice 0.
    pub fn delta(&self, out: &mut bytes::BytesMut, delta: Value, finish: Option<&str>) {
        let chunk = chat_chunk(
            &self.id,
            &self.model,
            self.created,
            json!([{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}]),
            None,
        );
        crate::sse::SseEvent::encode(None, &chunk.to_string(), out);
    }

    /// The end of the stream: finish reason, the usage chunk if the client asked for it, `[DONE]`.
    pub fn close(&self, out: &mut bytes::BytesMut, finish: &str, info: &crate::ctx::LlmInfo) {
        self.delta(out, json!({}), Some(finish));
        if self.include_usage {
            let usage = chat_usage(
                info.input_tokens.unwrap_or(0),
                info.output_tokens.unwrap_or(0),
                info.cached_input_tokens,
            );
            let chunk = chat_chunk(&self.id, &self.model, self.created, json!([]), Some(usage));
            crate::sse::SseEvent::encode(None, &chunk.to_string(), out);
        }
        crate::sse::SseEvent::encode(None, "[DONE]", out);
    }
}

/// The state of a provider stream being written as OpenAI chat chunks: the writer, which
/// provider content block is which `tool_calls` index, the finish reason once known, and
/// whether the closing sequence went out.
pub struct ToolChunks {
    pub w: ChunkWriter,
    tool_index: std::collections::HashMap<u64, usize>,
    pub finish: Option<&'static str>,
    done: bool,
}

impl ToolChunks {
    pub fn new(model: &str, include_usage: bool) -> Self {
        ToolChunks {
            w: ChunkWriter::new(model, include_usage),
            tool_index: Default::default(),
            finish: None,
            done: false,
        }
    }

    /// Provider content block `block` starts a tool call: its `tool_calls` entry, arguments
    /// to follow.
    pub fn tool_start(&mut self, out: &mut bytes::BytesMut, block: u64, id: &Value, name: &Value) {
        let n = self.tool_index.len();
        self.tool_index.insert(block, n);
        self.w.delta(
            out,
            json!({"tool_calls": [{"index": n, "id": id, "type": "function",
                "function": {"name": name, "arguments": ""}}]}),
            None,
        );
    }

    /// A piece of the arguments of the tool call started by `block` (ignored for a block that
    /// started none).
    pub fn tool_args(&mut self, out: &mut bytes::BytesMut, block: u64, part: &Value) {
        if let Some(n) = self.tool_index.get(&block) {
            self.w.delta(
                out,
                json!({"tool_calls": [{"index": n, "function": {"arguments": part}}]}),
                None,
            );
        }
    }

    /// The closing sequence, once.
    pub fn close(&mut self, out: &mut bytes::BytesMut, info: &crate::ctx::LlmInfo) {
        if !self.done {
            self.done = true;
            self.w.close(out, self.finish.unwrap_or("stop"), info);
        }
    }

    pub fn done(&self) -> bool {
        self.done
    }
}

/// Tells the client of a translated stream that the provider sent an event that is not JSON:
/// an OpenAI-style `{"error": ...}` chunk, or an Anthropic `event: error` when `event` is set.
/// Keep-alive blocks (no data) are not errors.
pub fn malformed_event(event: Option<&str>, data: &str, out: &mut bytes::BytesMut) {
    if data.trim().is_empty() {
        return;
    }
    let msg = "the provider sent a malformed stream event";
    let body = match event {
        Some(_) => json!({"type": "error", "error": {"type": "api_error", "message": msg}}),
        None => json!({"error": {"type": "upstream_error", "message": msg}}),
    };
    crate::sse::SseEvent::encode(event, &body.to_string(), out);
}

/// An OpenAI `tool_calls` entry: the provider's call id, tool name and input object (sent as
/// the JSON string OpenAI's `arguments` is; `{}` when there is none).
pub fn function_call(id: Option<&Value>, name: Option<&Value>, input: Option<&Value>) -> Value {
    json!({
        "id": id.cloned().unwrap_or(json!("")),
        "type": "function",
        "function": {
            "name": name.cloned().unwrap_or(json!("")),
            "arguments": input.map(|i| i.to_string()).unwrap_or_else(|| "{}".into()),
        }
    })
}

/// An OpenAI assistant `message`: its text (`null` when there is only tool calls) and calls.
pub fn assistant_message(text: String, calls: Vec<Value>) -> Value {
    let content = if text.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        json!(text)
    };
    let mut message = json!({"role": "assistant", "content": content});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    message
}

/// OpenAI usage object from token counts.
pub fn chat_usage(input: u64, output: u64, cached: Option<u64>) -> Value {
    let mut u = json!({
        "prompt_tokens": input,
        "completion_tokens": output,
        "total_tokens": input.saturating_add(output),
    });
    if let Some(c) = cached {
        u["prompt_tokens_details"] = json!({"cached_tokens": c});
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reshaped_across_formats() {
        let body = br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#;
        let v = error_body(
            Wire::OpenAi,
            Wire::Anthropic,
            http::StatusCode::TOO_MANY_REQUESTS,
            body,
        );
        assert_eq!(v["error"]["message"], "slow down");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        let v = error_body(
            Wire::Anthropic,
            Wire::Anthropic,
            http::StatusCode::TOO_MANY_REQUESTS,
            body,
        );
        assert_eq!(v["type"], "error");
        let v = error_body(
            Wire::Anthropic,
            Wire::Gemini,
            http::StatusCode::BAD_GATEWAY,
            b"oops",
        );
        assert_eq!(v["error"]["message"], "oops");
    }
}
