//! Gemini generateContent: response observation and the pass-through stream handler.

use bytes::BytesMut;
use serde_json::Value;

use super::stream::{StreamHandler, push_completion};
use crate::ctx::LlmInfo;
use crate::sse::SseEvent;

/// Reads `usageMetadata`.
pub fn observe_usage(usage: &Value, info: &mut LlmInfo) {
    let get = |k: &str| usage.get(k).and_then(Value::as_u64);
    if let Some(n) = get("promptTokenCount") {
        info.input_tokens = Some(n);
    }
    let out = get("candidatesTokenCount");
    let thoughts = get("thoughtsTokenCount");
    if out.is_some() || thoughts.is_some() {
        info.output_tokens = Some(out.unwrap_or(0).saturating_add(thoughts.unwrap_or(0)));
    }
    if let Some(n) = thoughts {
        info.reasoning_tokens = Some(n);
    }
    if let Some(n) = get("cachedContentTokenCount") {
        info.cached_input_tokens = Some(n);
    }
    if let Some(n) = get("totalTokenCount") {
        info.total_tokens = Some(n);
    }
}

/// `systemInstruction` + `contents` as `[{role, content}]` with text content, for `llm.prompt`.
pub fn prompt_messages(body: &Value) -> Value {
    let text = |c: &Value| -> String {
        c.get("parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect()
    };
    let mut out = Vec::new();
    if let Some(s) = body.get("systemInstruction") {
        out.push(serde_json::json!({"role": "system", "content": text(s)}));
    }
    for c in body
        .get("contents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let role = match c.get("role").and_then(Value::as_str) {
            Some("model") => "assistant",
            _ => "user",
        };
        out.push(serde_json::json!({"role": role, "content": text(c)}));
    }
    Value::Array(out)
}

/// Model and streaming flag from a native path `.../models/{model}:{method}`.
pub fn path_model(path: &str) -> Option<(String, bool)> {
    let (before, method) = path.rsplit_once(':')?;
    let model = before.rsplit_once("/models/").map(|(_, m)| m)?;
    Some((
        model.to_owned(),
        method.starts_with("streamGenerateContent"),
    ))
}

/// Text of candidate `i`'s parts.
pub fn candidate_text(c: &Value) -> String {
    c.pointer("/content/parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| !p.get("thought").and_then(Value::as_bool).unwrap_or(false))
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect()
}

/// Observes a generateContent response (or one streamed chunk of it).
pub fn observe_response(body: &Value, info: &mut LlmInfo) {
    if let Some(m) = body.get("modelVersion").and_then(Value::as_str) {
        info.response_model = Some(m.to_owned());
    }
    if let Some(u) = body.get("usageMetadata") {
        observe_usage(u, info);
    }
    for (i, c) in body
        .get("candidates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let idx = c
            .get("index")
            .and_then(Value::as_u64)
            .map_or(i, |x| x as usize);
        let text = candidate_text(c);
        if !text.is_empty() {
            push_completion(info, idx, &text);
        }
        for p in c
            .pointer("/content/parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(n) = p.pointer("/functionCall/name").and_then(Value::as_str) {
                info.tool_calls.push(n.to_owned());
            }
        }
        if let Some(r) = c.get("finishReason").and_then(Value::as_str) {
            info.finish_reasons.push(r.to_owned());
        }
    }
}

/// Native Gemini SSE stream, observed and passed through.
#[derive(Default)]
pub struct GenerateStream {
    finished: bool,
}

impl StreamHandler for GenerateStream {
    fn on_event(&mut self, ev: &SseEvent, out: &mut BytesMut, info: &mut LlmInfo) {
        out.extend_from_slice(&ev.raw);
        if let Some(v) = ev.json() {
            observe_response(v, info);
            if v.pointer("/candidates/0/finishReason").is_some() {
                self.finished = true;
            }
        }
    }

    fn completed(&self) -> bool {
        self.finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_and_text() {
        let mut info = LlmInfo::default();
        observe_response(
            &serde_json::json!({
                "candidates": [{"content": {"parts": [{"text": "a"}, {"text": "b"}], "role": "model"},
                                "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5},
                "modelVersion": "gemini-2.0-flash-001"
            }),
            &mut info,
        );
        assert_eq!(info.input_tokens, Some(3));
        assert_eq!(info.output_tokens, Some(2));
        assert_eq!(info.total_tokens, Some(5));
        assert_eq!(info.response_model.as_deref(), Some("gemini-2.0-flash-001"));
        assert_eq!(info.completion.as_deref(), Some(&["ab".to_owned()][..]));
    }
}
