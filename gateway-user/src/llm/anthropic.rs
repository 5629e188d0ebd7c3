//! Anthropic Messages: prompt extraction, response observation, and the pass-through stream
//! handler.

use bytes::BytesMut;
use serde_json::{Value, json};

use super::stream::{StreamHandler, push_completion};
use crate::ctx::LlmInfo;
use crate::sse::SseEvent;

/// `anthropic-version` sent when the client did not send one.
pub const DEFAULT_VERSION: &str = "2023-06-01";
/// The `anthropic_version` body field Claude on Vertex AI takes instead of the header.
pub const VERTEX_VERSION: &str = "vertex-2023-10-16";

/// Anthropic error `type` for a status.
pub fn error_type(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        529 | 503 => "overloaded_error",
        _ => "api_error",
    }
}

/// Flattens Anthropic content (string or blocks) into text.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// `system` + `messages` as `[{role, content}]` with text content, for `llm.prompt`.
pub fn prompt_messages(body: &Value) -> Value {
    let mut out = Vec::new();
    if let Some(system) = body.get("system") {
        out.push(json!({"role": "system", "content": content_text(system)}));
    }
    for m in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
        let content = m.get("content").map(content_text).unwrap_or_default();
        out.push(json!({"role": role, "content": content}));
    }
    Value::Array(out)
}

/// Reads an Anthropic `usage` object. Input tokens include cache reads and writes, so that
/// `input_tokens` means the same across providers.
pub fn observe_usage(usage: &Value, info: &mut LlmInfo) {
    let get = |k: &str| usage.get(k).and_then(Value::as_u64);
    let cache_read = get("cache_read_input_tokens");
    let cache_write = get("cache_creation_input_tokens");
    if let Some(n) = get("input_tokens") {
        info.input_tokens = Some(
            n.saturating_add(cache_read.unwrap_or(0))
                .saturating_add(cache_write.unwrap_or(0)),
        );
    }
    if let Some(n) = cache_read {
        info.cached_input_tokens = Some(n);
    }
    if let Some(n) = cache_write {
        info.cache_write_tokens = Some(n);
    }
    if let Some(n) = get("output_tokens") {
        info.output_tokens = Some(n);
    }
    if let (Some(i), Some(o)) = (info.input_tokens, info.output_tokens) {
        info.total_tokens = Some(i.saturating_add(o));
    }
}

/// Observes a non-streamed Messages response.
pub fn observe_response(body: &Value, info: &mut LlmInfo) {
    if let Some(m) = body.get("model").and_then(Value::as_str) {
        info.response_model = Some(m.to_owned());
    }
    if let Some(u) = body.get("usage") {
        observe_usage(u, info);
    }
    for block in body
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                if let Some(t) = block.get("text").and_then(Value::as_str) {
                    push_completion(info, 0, t);
                }
            }
            Some("tool_use") => {
                if let Some(n) = block.get("name").and_then(Value::as_str) {
                    info.tool_calls.push(n.to_owned());
                }
            }
            _ => {}
        }
    }
    if let Some(r) = body.get("stop_reason").and_then(Value::as_str) {
        info.finish_reasons.push(r.to_owned());
    }
}

/// Observes one Messages stream event. Returns true on `message_stop`.
pub fn observe_event(kind: &str, v: &Value, info: &mut LlmInfo) -> bool {
    match kind {
        "message_start" => {
            if let Some(m) = v.pointer("/message/model").and_then(Value::as_str) {
                info.response_model = Some(m.to_owned());
            }
            if let Some(u) = v.pointer("/message/usage") {
                observe_usage(u, info);
            }
        }
        "content_block_start" => {
            if v.pointer("/content_block/type").and_then(Value::as_str) == Some("tool_use")
                && let Some(n) = v.pointer("/content_block/name").and_then(Value::as_str)
            {
                info.tool_calls.push(n.to_owned());
            }
        }
        "content_block_delta" => {
            if let Some(t) = v.pointer("/delta/text").and_then(Value::as_str) {
                push_completion(info, 0, t);
            }
        }
        "message_delta" => {
            if let Some(u) = v.get("usage") {
                // message_delta usage is cumulative output (and, newer APIs, input) tokens.
                let mut merged = LlmInfo {
                    input_tokens: info.input_tokens,
                    cached_input_tokens: info.cached_input_tokens,
                    ..Default::default()
                };
                observe_usage(u, &mut merged);
                if u.get("input_tokens").is_some() {
                    info.input_tokens = merged.input_tokens;
                }
                info.output_tokens = merged.output_tokens.or(info.output_tokens);
                if let (Some(i), Some(o)) = (info.input_tokens, info.output_tokens) {
                    info.total_tokens = Some(i.saturating_add(o));
                }
            }
            if let Some(r) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                info.finish_reasons.push(r.to_owned());
            }
        }
        "message_stop" => return true,
        _ => {}
    }
    false
}

/// Messages stream, client and upstream both Anthropic.
#[derive(Default)]
pub struct MessagesStream {
    done: bool,
}

impl StreamHandler for MessagesStream {
    fn on_event(&mut self, ev: &SseEvent, out: &mut BytesMut, info: &mut LlmInfo) {
        out.extend_from_slice(&ev.raw);
        if let Some(v) = ev.json() {
            let kind = ev
                .event
                .as_deref()
                .or_else(|| v.get("type").and_then(Value::as_str))
                .unwrap_or("");
            if observe_event(kind, v, info) {
                self.done = true;
            }
        }
    }

    fn completed(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::stream::SseTransform;
    use std::time::Instant;

    #[test]
    fn stream_usage_and_text() {
        let s = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-x\",\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":4,\"output_tokens\":1}}}\n\n\
            event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
            event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n\
            event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":6}}\n\n\
            event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let mut t = SseTransform::new(Box::new(MessagesStream::default()), Instant::now(), true);
        let mut info = LlmInfo::default();
        let out = t.data(s.as_bytes(), &mut info).expect("data");
        assert_eq!(&out[..], s.as_bytes());
        t.end(&mut info);
        assert!(t.completed());
        assert_eq!(info.response_model.as_deref(), Some("claude-x"));
        assert_eq!(info.input_tokens, Some(14));
        assert_eq!(info.cached_input_tokens, Some(4));
        assert_eq!(info.output_tokens, Some(6));
        assert_eq!(info.total_tokens, Some(20));
        assert_eq!(info.finish_reasons, vec!["end_turn".to_owned()]);
    }

    #[test]
    fn usage_saturates_instead_of_overflowing() {
        let mut info = LlmInfo::default();
        observe_usage(
            &json!({"input_tokens": 1, "cache_read_input_tokens": u64::MAX, "output_tokens": 2}),
            &mut info,
        );
        assert_eq!(info.input_tokens, Some(u64::MAX));
        assert_eq!(info.total_tokens, Some(u64::MAX));
    }

    #[test]
    fn prompt_includes_system() {
        let p = prompt_messages(&json!({"system": [{"type":"text","text":"be brief"}],
            "messages": [{"role":"user","content":[{"type":"text","text":"hi"}]}]}));
        assert_eq!(p[0]["role"], "system");
        assert_eq!(p[0]["content"], "be brief");
        assert_eq!(p[1]["content"], "hi");
    }
}
