//! Anthropic Messages API (`POST .../messages`, `.../messages/count_tokens`, `GET
//! /v1/models`), in Anthropic's wire shapes. Validation follows the real API where gateways
//! tend to slip: `model`, `max_tokens` and a non-empty `messages` are required, and the
//! `anthropic-version` header must be present (checked by the server).
//!
//! Like the real API, `usage.input_tokens` excludes cached tokens: the full prompt is
//! `input_tokens + cache_creation_input_tokens + cache_read_input_tokens`. A stream reports
//! input tokens in `message_start` and output tokens in `message_delta`.

use http::StatusCode;
use serde_json::{Value as Json, json};

use super::model::{self, Completion, Conversation, Finish, Overrides, ToolChoice, ToolDef};
use super::openai::str_field;
use super::stream::{EventStream, Framing};
use super::{Dialect, Reply, SimRequest, text};

/// Models listed by `GET /v1/models` with an `anthropic-version` header.
pub const MODELS: &[&str] = &["claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"];

/// Parses a messages body into a conversation and the stream flag.
pub fn parse(body: &Json) -> Result<(Conversation, bool), String> {
    let model = str_field(body, "model");
    if model.is_empty() {
        return Err("model: Field required".into());
    }
    let max_tokens = body
        .get("max_tokens")
        .and_then(Json::as_u64)
        .ok_or("max_tokens: Field required")?;
    let messages = body
        .get("messages")
        .and_then(Json::as_array)
        .filter(|m| !m.is_empty())
        .ok_or("messages: at least one message is required")?;
    let mut conv = Conversation {
        model,
        max_tokens: Some(max_tokens),
        messages: messages.len() as u64,
        ..Conversation::default()
    };
    match body.get("system") {
        Some(system @ (Json::String(_) | Json::Array(_))) => {
            // Counted like OpenAI's system message so translated prompts cost the same.
            conv.messages += 1;
            conv.prompt_texts.push(model::content_text(system));
        }
        None | Some(Json::Null) => {}
        Some(_) => return Err("system: Input should be a valid string or list of blocks".into()),
    }
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Json::as_str).unwrap_or_default();
        if role != "user" && role != "assistant" {
            return Err(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            ));
        }
        let content = m.get("content").unwrap_or(&Json::Null);
        let text = model::content_text(content);
        if role == "user" {
            conv.last_user = text.clone();
        }
        conv.prompt_texts.push(text);
    }
    if let Some(last) = messages.last()
        && let Some(blocks) = last.get("content").and_then(Json::as_array)
        && let Some(result) = blocks
            .iter()
            .find(|b| b.get("type").and_then(Json::as_str) == Some("tool_result"))
    {
        conv.tool_result = Some(model::content_text(
            result.get("content").unwrap_or(&Json::Null),
        ));
    }
    conv.tools = body
        .get("tools")
        .and_then(Json::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| {
                    Some(ToolDef {
                        name: t.get("name")?.as_str()?.to_string(),
                        parameters: t.get("input_schema").cloned().unwrap_or(json!({})),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    conv.tool_choice = match body.pointer("/tool_choice/type").and_then(Json::as_str) {
        Some("any") => ToolChoice::Required,
        Some("none") => ToolChoice::None,
        Some("tool") => body
            .pointer("/tool_choice/name")
            .and_then(Json::as_str)
            .map(|n| ToolChoice::Named(n.to_string()))
            .unwrap_or(ToolChoice::Required),
        _ => ToolChoice::Auto,
    };
    let stream = body.get("stream").and_then(Json::as_bool).unwrap_or(false);
    Ok((conv, stream))
}

/// `POST .../messages`.
pub fn messages(req: &SimRequest) -> Reply {
    let body = match req.json_object(Dialect::Anthropic) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let (mut conv, stream) = match parse(&body) {
        Ok(p) => p,
        Err(msg) => return Reply::error(Dialect::Anthropic, StatusCode::BAD_REQUEST, &msg),
    };
    conv.model = text::response_model(&conv.model, "claude");
    let mut c = model::complete(
        &conv,
        &Overrides::from_headers(&req.headers),
        true,
        &req.body,
    );
    if let Some(call) = c.tool_call.as_mut() {
        call.id = text::id("toolu_", &req.body);
    }
    let id = text::id("msg_", &req.body);
    if stream {
        Reply::Stream(message_stream(&c, &id))
    } else {
        Reply::ok(message_response(&c, &id))
    }
}

/// `POST .../messages/count_tokens`.
pub fn count_tokens(req: &SimRequest) -> Reply {
    let mut body = match req.json_object(Dialect::Anthropic) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    // count_tokens takes no max_tokens; reuse the messages parser with a placeholder.
    body["max_tokens"] = json!(1);
    match parse(&body) {
        Ok((conv, _)) => {
            let c = model::complete(&conv, &Overrides::default(), true, &req.body);
            Reply::ok(json!({"input_tokens": c.usage.input}))
        }
        Err(msg) => Reply::error(Dialect::Anthropic, StatusCode::BAD_REQUEST, &msg),
    }
}

pub fn stop_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "end_turn",
        Finish::Length => "max_tokens",
        Finish::ToolCall => "tool_use",
    }
}

fn usage(c: &Completion, output: u64) -> Json {
    json!({
        "input_tokens": c.usage.input - c.usage.cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": c.usage.cached,
        "output_tokens": output,
        "service_tier": "standard",
    })
}

/// A non-streaming message.
pub fn message_response(c: &Completion, id: &str) -> Json {
    let mut content = Vec::new();
    if !c.text.is_empty() {
        content.push(json!({"type": "text", "text": c.text}));
    }
    if let Some(call) = &c.tool_call {
        content.push(
            json!({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}),
        );
    }
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": c.model,
        "content": content,
        "stop_reason": stop_reason(c.finish),
        "stop_sequence": null,
        "usage": usage(c, c.usage.output),
    })
}

/// The full streamed event sequence.
pub fn message_stream(c: &Completion, id: &str) -> EventStream {
    let mut s = EventStream::new(Dialect::Anthropic, Framing::Sse);
    s.push(
        Some("message_start"),
        &json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": c.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": usage(c, 1),
        }}),
    );
    let mut index = 0;
    if !c.text.is_empty() {
        s.push(
            Some("content_block_start"),
            &json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
        );
        s.push(Some("ping"), &json!({"type": "ping"}));
        for piece in c.pieces() {
            s.push(
                Some("content_block_delta"),
                &json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}),
            );
        }
        s.push(
            Some("content_block_stop"),
            &json!({"type": "content_block_stop", "index": index}),
        );
        index += 1;
    }
    if let Some(call) = &c.tool_call {
        s.push(
            Some("content_block_start"),
            &json!({"type": "content_block_start", "index": index, "content_block": {
                "type": "tool_use", "id": call.id, "name": call.name, "input": {}
            }}),
        );
        for piece in call.argument_pieces() {
            s.push(
                Some("content_block_delta"),
                &json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}}),
            );
        }
        s.push(
            Some("content_block_stop"),
            &json!({"type": "content_block_stop", "index": index}),
        );
    }
    s.push(
        Some("message_delta"),
        &json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason(c.finish), "stop_sequence": null},
            "usage": {"output_tokens": c.usage.output}}),
    );
    s.push(Some("message_stop"), &json!({"type": "message_stop"}));
    s
}

/// `GET /v1/models` in Anthropic's shape.
pub fn models() -> Reply {
    let data: Vec<Json> = MODELS
        .iter()
        .map(|m| json!({"type": "model", "id": m, "display_name": m, "created_at": "2025-09-29T00:00:00Z"}))
        .collect();
    Reply::ok(json!({
        "data": data,
        "has_more": false,
        "first_id": MODELS.first(),
        "last_id": MODELS.last(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(stream: bool) -> Json {
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 256,
            "stream": stream,
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [{"role": "user", "content": "hi there"}],
        })
    }

    fn events(s: &str) -> Vec<(String, Json)> {
        s.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let name = e
                    .lines()
                    .find_map(|l| l.strip_prefix("event: "))
                    .unwrap_or_default()
                    .to_string();
                let data = e
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap_or("null");
                (name, serde_json::from_str(data).expect("json"))
            })
            .collect()
    }

    #[test]
    fn validation_matches_the_api() {
        let mut b = base(false);
        b.as_object_mut().map(|o| o.remove("max_tokens"));
        assert_eq!(
            parse(&b).err().as_deref(),
            Some("max_tokens: Field required")
        );
        let mut b = base(false);
        b["messages"] = json!([]);
        assert!(parse(&b).is_err());
        let mut b = base(false);
        b["messages"] = json!([{"role": "system", "content": "x"}]);
        assert!(parse(&b).is_err());
    }

    #[test]
    fn message_shape() {
        let reply = messages(&SimRequest::post_json("/v1/messages", &base(false)));
        let v = reply.json().expect("json");
        assert_eq!(v["type"], "message");
        assert_eq!(v["model"], "claude-sonnet-4-5-sim-2024");
        assert_eq!(
            v["content"][0]["text"],
            "Hello from the simulator. You said: hi there"
        );
        assert_eq!(v["stop_reason"], "end_turn");
        assert_eq!(v["usage"]["input_tokens"], 10);
        assert_eq!(v["usage"]["output_tokens"], 8);
    }

    #[test]
    fn cached_tokens_are_split_out() {
        let mut req = SimRequest::post_json("/v1/messages", &base(false));
        req.headers
            .insert("x-sim-cached-tokens", http::HeaderValue::from_static("4"));
        let reply = messages(&req);
        let v = reply.json().expect("json");
        assert_eq!(v["usage"]["input_tokens"], 6);
        assert_eq!(v["usage"]["cache_read_input_tokens"], 4);
    }

    #[test]
    fn stream_event_sequence() {
        let text = messages(&SimRequest::post_json("/v1/messages", &base(true)))
            .stream_text()
            .expect("stream");
        let evs = events(&text);
        let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[..3], ["message_start", "content_block_start", "ping"]);
        assert_eq!(
            names[names.len() - 3..],
            ["content_block_stop", "message_delta", "message_stop"]
        );
        for (name, data) in &evs {
            assert_eq!(data["type"], name.as_str());
        }
        assert_eq!(evs[0].1["message"]["usage"]["input_tokens"], 10);
        let delta = &evs[evs.len() - 2].1;
        assert_eq!(delta["delta"]["stop_reason"], "end_turn");
        assert_eq!(delta["usage"]["output_tokens"], 8);
        let text: String = evs
            .iter()
            .filter_map(|(_, d)| d.pointer("/delta/text").and_then(Json::as_str))
            .collect();
        assert_eq!(text, "Hello from the simulator. You said: hi there");
    }

    #[test]
    fn tool_use_stream() {
        let mut b = base(true);
        b["messages"] = json!([{"role": "user", "content": "weather in Paris?"}]);
        b["tools"] = json!([{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]);
        let text = messages(&SimRequest::post_json("/v1/messages", &b))
            .stream_text()
            .expect("stream");
        let evs = events(&text);
        let json_args: String = evs
            .iter()
            .filter_map(|(_, d)| d.pointer("/delta/partial_json").and_then(Json::as_str))
            .collect();
        assert_eq!(json_args, r#"{"city":"Paris"}"#);
        let starts: Vec<&Json> = evs
            .iter()
            .filter(|(n, _)| n == "content_block_start")
            .map(|(_, d)| d)
            .collect();
        assert_eq!(starts[1]["content_block"]["type"], "tool_use");
        assert_eq!(starts[1]["index"], 1);
        assert!(text.contains("\"stop_reason\":\"tool_use\""));
    }

    #[test]
    fn tool_result_answers() {
        let mut b = base(false);
        b["messages"] = json!([
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]}
        ]);
        b["tools"] = json!([{"name": "get_weather", "input_schema": {}}]);
        let reply = messages(&SimRequest::post_json("/v1/messages", &b));
        let v = reply.json().expect("json");
        assert_eq!(
            v["content"][0]["text"],
            "Hello from the simulator. The tool said: sunny"
        );
    }

    #[test]
    fn count_tokens_matches_messages() {
        let mut b = base(false);
        b.as_object_mut().map(|o| o.remove("max_tokens"));
        let reply = count_tokens(&SimRequest::post_json("/v1/messages/count_tokens", &b));
        assert_eq!(reply.json().expect("json")["input_tokens"], 10);
    }
}
