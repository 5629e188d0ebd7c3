//! OpenAI formats (Chat Completions, Responses, Embeddings): response observation and the
//! pass-through stream handler.

use bytes::BytesMut;
use serde_json::Value;

use super::stream::{StreamHandler, push_completion};
use crate::ctx::LlmInfo;
use crate::sse::SseEvent;

/// OpenAI error `type` for a status.
pub fn error_type(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 404 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        502..=504 => "upstream_error",
        _ => "server_error",
    }
}

/// Responses API `input` as `[{role, content}]`.
pub fn responses_prompt(body: &Value) -> Value {
    let mut msgs = Vec::new();
    if let Some(instr) = body.get("instructions").and_then(Value::as_str) {
        msgs.push(serde_json::json!({"role": "system", "content": instr}));
    }
    match body.get("input") {
        Some(Value::String(s)) => msgs.push(serde_json::json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => msgs.extend(items.iter().cloned()),
        _ => {}
    }
    Value::Array(msgs)
}

fn u64_at(v: &Value, path: &[&str]) -> Option<u64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_u64()
}

/// Reads an OpenAI `usage` object (chat, embeddings or responses flavour).
pub fn observe_usage(usage: &Value, info: &mut LlmInfo) {
    if let Some(n) = u64_at(usage, &["prompt_tokens"]).or_else(|| u64_at(usage, &["input_tokens"]))
    {
        info.input_tokens = Some(n);
    }
    if let Some(n) =
        u64_at(usage, &["completion_tokens"]).or_else(|| u64_at(usage, &["output_tokens"]))
    {
        info.output_tokens = Some(n);
    }
    if let Some(n) = u64_at(usage, &["total_tokens"]) {
        info.total_tokens = Some(n);
    }
    if let Some(n) = u64_at(usage, &["prompt_tokens_details", "cached_tokens"])
        .or_else(|| u64_at(usage, &["input_tokens_details", "cached_tokens"]))
    {
        info.cached_input_tokens = Some(n);
    }
    if let Some(n) = u64_at(usage, &["completion_tokens_details", "reasoning_tokens"])
        .or_else(|| u64_at(usage, &["output_tokens_details", "reasoning_tokens"]))
    {
        info.reasoning_tokens = Some(n);
    }
    if info.total_tokens.is_none()
        && let (Some(i), Some(o)) = (info.input_tokens, info.output_tokens)
    {
        info.total_tokens = Some(i.saturating_add(o));
    }
}

/// Observes a non-streamed Chat Completions / Responses / Embeddings body.
pub fn observe_response(body: &Value, info: &mut LlmInfo) {
    if let Some(m) = body.get("model").and_then(Value::as_str) {
        info.response_model = Some(m.to_owned());
    }
    if let Some(u) = body.get("usage") {
        observe_usage(u, info);
    }
    if let Some(choices) = body.get("choices").and_then(Value::as_array) {
        for (i, c) in choices.iter().enumerate() {
            let idx = c
                .get("index")
                .and_then(Value::as_u64)
                .map_or(i, |x| x as usize);
            if let Some(text) = c.pointer("/message/content").and_then(Value::as_str) {
                push_completion(info, idx, text);
            }
            if let Some(r) = c.get("finish_reason").and_then(Value::as_str) {
                info.finish_reasons.push(r.to_owned());
            }
            observe_tool_calls(c.pointer("/message/tool_calls"), info);
        }
    }
    // Responses API.
    if let Some(output) = body.get("output").and_then(Value::as_array) {
        for item in output {
            match item.get("type").and_then(Value::as_str) {
                Some("message") => {
                    for part in item
                        .get("content")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(t) = part.get("text").and_then(Value::as_str) {
                            push_completion(info, 0, t);
                        }
                    }
                }
                Some("function_call") => {
                    if let Some(n) = item.get("name").and_then(Value::as_str) {
                        info.tool_calls.push(n.to_owned());
                    }
                }
                _ => {}
            }
        }
        if let Some(s) = body.get("status").and_then(Value::as_str) {
            info.finish_reasons.push(s.to_owned());
        }
    }
}

fn observe_tool_calls(calls: Option<&Value>, info: &mut LlmInfo) {
    for call in calls.and_then(Value::as_array).into_iter().flatten() {
        if let Some(n) = call.pointer("/function/name").and_then(Value::as_str) {
            info.tool_calls.push(n.to_owned());
        }
    }
}

/// Chat Completions stream, client and upstream both OpenAI.
pub struct ChatStream {
    /// The gateway asked upstream for usage the client did not ask for: drop that chunk.
    pub strip_usage_chunk: bool,
    done: bool,
}

impl ChatStream {
    pub fn new(strip_usage_chunk: bool) -> Self {
        ChatStream {
            strip_usage_chunk,
            done: false,
        }
    }
}

/// Observes one chat chunk; returns true when it is a usage-only chunk (`choices: []`).
pub fn observe_chat_chunk(chunk: &Value, info: &mut LlmInfo) -> bool {
    // Azure's first chunk (prompt filter results) carries an empty model: skip it.
    if info.response_model.is_none()
        && let Some(m) = chunk
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
    {
        info.response_model = Some(m.to_owned());
    }
    if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
        observe_usage(u, info);
    }
    let choices = chunk.get("choices").and_then(Value::as_array);
    for (i, c) in choices.into_iter().flatten().enumerate() {
        let idx = c
            .get("index")
            .and_then(Value::as_u64)
            .map_or(i, |x| x as usize);
        if let Some(t) = c.pointer("/delta/content").and_then(Value::as_str) {
            push_completion(info, idx, t);
        }
        if let Some(r) = c.get("finish_reason").and_then(Value::as_str) {
            info.finish_reasons.push(r.to_owned());
        }
        for call in c
            .pointer("/delta/tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(n) = call.pointer("/function/name").and_then(Value::as_str) {
                info.tool_calls.push(n.to_owned());
            }
        }
    }
    choices.is_some_and(|c| c.is_empty()) && chunk.get("usage").is_some_and(|u| !u.is_null())
}

impl StreamHandler for ChatStream {
    fn on_event(&mut self, ev: &SseEvent, out: &mut BytesMut, info: &mut LlmInfo) {
        if ev.data == "[DONE]" {
            self.done = true;
            out.extend_from_slice(&ev.raw);
            return;
        }
        if let Some(chunk) = ev.json() {
            let usage_only = observe_chat_chunk(chunk, info);
            if usage_only && self.strip_usage_chunk {
                return;
            }
            if self.strip_usage_chunk && chunk.get("usage").is_some_and(|u| !u.is_null()) {
                // Usage riding on a content chunk (some compatible servers): keep the content,
                // remove the usage the client did not ask for.
                let mut c = chunk.clone();
                if let Some(o) = c.as_object_mut() {
                    o.remove("usage");
                }
                crate::sse::SseEvent::encode(ev.event.as_deref(), &c.to_string(), out);
                return;
            }
        }
        out.extend_from_slice(&ev.raw);
    }

    fn completed(&self) -> bool {
        self.done
    }
}

/// Responses API stream (pass-through, observed).
#[derive(Default)]
pub struct ResponsesStream {
    done: bool,
}

impl StreamHandler for ResponsesStream {
    fn on_event(&mut self, ev: &SseEvent, out: &mut BytesMut, info: &mut LlmInfo) {
        out.extend_from_slice(&ev.raw);
        let Some(v) = ev.json() else {
            return;
        };
        let kind = ev
            .event
            .as_deref()
            .or_else(|| v.get("type").and_then(Value::as_str))
            .unwrap_or("");
        match kind {
            "response.output_text.delta" => {
                if let Some(d) = v.get("delta").and_then(Value::as_str) {
                    push_completion(info, 0, d);
                }
            }
            "response.created" => {
                if let Some(m) = v.pointer("/response/model").and_then(Value::as_str) {
                    info.response_model = Some(m.to_owned());
                }
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                self.done = true;
                if let Some(r) = v.get("response") {
                    if let Some(m) = r.get("model").and_then(Value::as_str) {
                        info.response_model = Some(m.to_owned());
                    }
                    if let Some(u) = r.get("usage") {
                        observe_usage(u, info);
                    }
                    if let Some(s) = r.get("status").and_then(Value::as_str) {
                        info.finish_reasons.push(s.to_owned());
                    }
                }
            }
            _ => {}
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
    fn usage_variants() {
        let mut info = LlmInfo::default();
        observe_usage(
            &serde_json::json!({"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12,
                "prompt_tokens_details": {"cached_tokens": 2},
                "completion_tokens_details": {"reasoning_tokens": 3}}),
            &mut info,
        );
        assert_eq!(
            (info.input_tokens, info.output_tokens, info.total_tokens),
            (Some(5), Some(7), Some(12))
        );
        assert_eq!(
            (info.cached_input_tokens, info.reasoning_tokens),
            (Some(2), Some(3))
        );
        let mut info = LlmInfo::default();
        observe_usage(
            &serde_json::json!({"input_tokens": 1, "output_tokens": 2}),
            &mut info,
        );
        assert_eq!(info.total_tokens, Some(3));
    }

    #[test]
    fn strips_usage_chunk_only_when_asked() {
        let stream = "data: {\"model\":\"m-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n\
            data: {\"model\":\"m-1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
            data: {\"model\":\"m-1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n\
            data: [DONE]\n\n";
        for strip in [true, false] {
            let mut t = SseTransform::new(Box::new(ChatStream::new(strip)), Instant::now(), true);
            let mut info = LlmInfo::default();
            let out = t.data(stream.as_bytes(), &mut info).expect("data");
            t.end(&mut info);
            let out = String::from_utf8(out.to_vec()).expect("utf8");
            assert_eq!(out.contains("\"usage\""), !strip);
            assert!(out.ends_with("data: [DONE]\n\n"));
            assert_eq!(info.input_tokens, Some(3));
            assert_eq!(info.response_model.as_deref(), Some("m-1"));
            assert_eq!(info.completion.as_deref(), Some(&["Hi".to_owned()][..]));
            assert_eq!(info.finish_reasons, vec!["stop".to_owned()]);
            assert!(t.completed());
        }
    }
}
