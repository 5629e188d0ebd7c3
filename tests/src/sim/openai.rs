//! OpenAI Chat Completions, Embeddings and Models (and Azure OpenAI's deployment flavour of
//! the same), in OpenAI's exact wire shapes, including the streaming conventions: a role
//! delta first, one content delta per word, a finish chunk, and the `choices: []` usage chunk
//! only when `stream_options.include_usage` is true (with `"usage": null` on every other
//! chunk in that case).

use http::StatusCode;
use serde_json::{Map, Value as Json, json};

use super::model::{self, Completion, Conversation, Finish, Overrides, ToolChoice, ToolDef};
use super::stream::{EventStream, Framing};
use super::{Dialect, Reply, SimRequest, text};

/// Models listed by `GET /v1/models`.
pub const MODELS: &[&str] = &["gpt-4o-mini", "gpt-4o", "o3-mini", "text-embedding-3-small"];

/// Stream options of a chat request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChatOptions {
    pub stream: bool,
    pub include_usage: bool,
}

/// Parses a chat completions body. Errors are OpenAI-style 400 messages.
pub fn parse_chat(body: &Json) -> Result<(Conversation, ChatOptions), String> {
    let messages = body
        .get("messages")
        .and_then(Json::as_array)
        .ok_or("Missing required parameter: 'messages'.")?;
    if messages.is_empty() {
        return Err("[] is too short - 'messages'".into());
    }
    let mut conv = Conversation {
        model: str_field(body, "model"),
        messages: messages.len() as u64,
        max_tokens: body
            .get("max_completion_tokens")
            .or_else(|| body.get("max_tokens"))
            .and_then(Json::as_u64),
        ..Conversation::default()
    };
    for (i, m) in messages.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Json::as_str)
            .ok_or_else(|| format!("Missing required parameter: 'messages[{i}].role'."))?;
        let content = model::content_text(m.get("content").unwrap_or(&Json::Null));
        match role {
            "user" => conv.last_user = content.clone(),
            "system" | "developer" | "assistant" | "tool" | "function" => {}
            other => {
                return Err(format!(
                    "Invalid value: '{other}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."
                ));
            }
        }
        conv.prompt_texts.push(content);
    }
    if let Some(last) = messages.last()
        && matches!(
            last.get("role").and_then(Json::as_str),
            Some("tool" | "function")
        )
    {
        conv.tool_result = Some(model::content_text(
            last.get("content").unwrap_or(&Json::Null),
        ));
    }
    conv.tools = body
        .get("tools")
        .and_then(Json::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| {
                    let f = t.get("function")?;
                    Some(ToolDef {
                        name: f.get("name")?.as_str()?.to_string(),
                        parameters: f.get("parameters").cloned().unwrap_or(json!({})),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    conv.tool_choice = match body.get("tool_choice") {
        Some(Json::String(s)) if s == "none" => ToolChoice::None,
        Some(Json::String(s)) if s == "required" => ToolChoice::Required,
        Some(Json::Object(o)) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Json::as_str)
            .map(|n| ToolChoice::Named(n.to_string()))
            .unwrap_or(ToolChoice::Required),
        _ => ToolChoice::Auto,
    };
    let opts = ChatOptions {
        stream: body.get("stream").and_then(Json::as_bool).unwrap_or(false),
        include_usage: body
            .pointer("/stream_options/include_usage")
            .and_then(Json::as_bool)
            .unwrap_or(false),
    };
    Ok((conv, opts))
}

/// `POST .../chat/completions`, and Azure's `POST /openai/deployments/{d}/chat/completions`
/// when `deployment` is set (the deployment then names the model).
pub fn chat(req: &SimRequest, deployment: Option<&str>) -> Reply {
    let body = match req.json_object(Dialect::OpenAi) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let (mut conv, opts) = match parse_chat(&body) {
        Ok(parsed) => parsed,
        Err(msg) => return Reply::error(Dialect::OpenAi, StatusCode::BAD_REQUEST, &msg),
    };
    if let Some(d) = deployment {
        conv.model = d.to_string();
    }
    conv.model = text::response_model(&conv.model, "gpt-4o-mini");
    let completion = model::complete(
        &conv,
        &Overrides::from_headers(&req.headers),
        false,
        &req.body,
    );
    let id = text::id("chatcmpl-", &req.body);
    let azure = deployment.is_some();
    if opts.stream {
        Reply::Stream(chat_stream(&completion, &id, opts.include_usage, azure))
    } else {
        Reply::ok(chat_response(&completion, &id, azure))
    }
}

/// The `usage` object of a chat completion.
pub fn chat_usage(c: &Completion) -> Json {
    json!({
        "prompt_tokens": c.usage.input,
        "completion_tokens": c.usage.output,
        "total_tokens": c.usage.total(),
        "prompt_tokens_details": {"cached_tokens": c.usage.cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": c.usage.reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0
        }
    })
}

pub fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "stop",
        Finish::Length => "length",
        Finish::ToolCall => "tool_calls",
    }
}

/// A non-streaming chat completion.
pub fn chat_response(c: &Completion, id: &str, azure: bool) -> Json {
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    message.insert(
        "content".into(),
        if c.text.is_empty() {
            Json::Null
        } else {
            json!(c.text)
        },
    );
    message.insert("refusal".into(), Json::Null);
    message.insert("annotations".into(), json!([]));
    if let Some(call) = &c.tool_call {
        message.insert(
            "tool_calls".into(),
            json!([{
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_string()}
            }]),
        );
    }
    let mut choice = json!({
        "index": 0,
        "message": message,
        "logprobs": null,
        "finish_reason": finish_reason(c.finish),
    });
    let mut out = json!({
        "id": id,
        "object": "chat.completion",
        "created": text::CREATED,
        "model": c.model,
        "choices": [],
        "usage": chat_usage(c),
        "service_tier": "default",
        "system_fingerprint": "fp_sim",
    });
    if azure {
        choice["content_filter_results"] = content_filter_results();
        out["prompt_filter_results"] =
            json!([{"prompt_index": 0, "content_filter_results": content_filter_results()}]);
    }
    out["choices"] = json!([choice]);
    out
}

fn content_filter_results() -> Json {
    let safe = json!({"filtered": false, "severity": "safe"});
    json!({"hate": safe, "self_harm": safe, "sexual": safe, "violence": safe})
}

/// A streamed chat completion.
pub fn chat_stream(c: &Completion, id: &str, include_usage: bool, azure: bool) -> EventStream {
    let mut s = EventStream::new(Dialect::OpenAi, Framing::Sse);
    let chunk = |delta: Json, finish: Option<&str>| {
        let mut v = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": text::CREATED,
            "model": c.model,
            "service_tier": "default",
            "system_fingerprint": "fp_sim",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if include_usage {
            v["usage"] = Json::Null;
        }
        v
    };
    if azure {
        // Azure's first chunk carries only prompt filter results and no choices.
        s.push(
            None,
            &json!({
                "choices": [], "created": 0, "id": "", "model": "", "object": "",
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": content_filter_results()}]
            }),
        );
    }
    match &c.tool_call {
        Some(call) => {
            s.push(
                None,
                &chunk(
                    json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [{
                        "index": 0, "id": call.id, "type": "function",
                        "function": {"name": call.name, "arguments": ""}
                    }]}),
                    None,
                ),
            );
            for piece in call.argument_pieces() {
                s.push(
                    None,
                    &chunk(
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                        None,
                    ),
                );
            }
        }
        None => {
            s.push(
                None,
                &chunk(
                    json!({"role": "assistant", "content": "", "refusal": null}),
                    None,
                ),
            );
            for piece in c.pieces() {
                s.push(None, &chunk(json!({"content": piece}), None));
            }
        }
    }
    s.push(None, &chunk(json!({}), Some(finish_reason(c.finish))));
    if include_usage {
        let mut usage = chunk(json!({}), None);
        usage["choices"] = json!([]);
        usage["usage"] = chat_usage(c);
        s.push(None, &usage);
    }
    s.push_raw("[DONE]");
    s
}

/// `POST .../embeddings`.
pub fn embeddings(req: &SimRequest, deployment: Option<&str>) -> Reply {
    let body = match req.json_object(Dialect::OpenAi) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let texts: Vec<String> = match body.get("input") {
        Some(Json::String(s)) => vec![s.clone()],
        Some(Json::Array(items)) if !items.is_empty() => {
            if items.iter().all(Json::is_number) {
                // One pre-tokenized input.
                vec![
                    items
                        .iter()
                        .map(Json::to_string)
                        .collect::<Vec<_>>()
                        .join(" "),
                ]
            } else {
                items
                    .iter()
                    .map(|i| match i {
                        Json::String(s) => s.clone(),
                        Json::Array(tokens) => tokens
                            .iter()
                            .map(Json::to_string)
                            .collect::<Vec<_>>()
                            .join(" "),
                        other => other.to_string(),
                    })
                    .collect()
            }
        }
        _ => {
            return Reply::error(
                Dialect::OpenAi,
                StatusCode::BAD_REQUEST,
                "'input' is a required property and must be a non-empty string or array.",
            );
        }
    };
    let dims = body
        .get("dimensions")
        .and_then(Json::as_u64)
        .map(|d| d as usize)
        .unwrap_or(text::DEFAULT_EMBEDDING_DIMS);
    let base64 = body.get("encoding_format").and_then(Json::as_str) == Some("base64");
    let data: Vec<Json> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let v = text::embedding(t, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(text::base64(&bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let tokens: u64 = texts.iter().map(|t| text::words(t)).sum();
    let model = deployment
        .map(str::to_string)
        .unwrap_or_else(|| str_field(&body, "model"));
    Reply::ok(json!({
        "object": "list",
        "data": data,
        "model": text::response_model(&model, "text-embedding-3-small"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
}

/// `GET .../models` in OpenAI's shape.
pub fn models() -> Reply {
    let data: Vec<Json> = MODELS
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": text::CREATED, "owned_by": "sim"}))
        .collect();
    Reply::ok(json!({"object": "list", "data": data}))
}

pub(crate) fn str_field(body: &Json, name: &str) -> String {
    body.get(name)
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather_request(stream: bool) -> Json {
        json!({
            "model": "gpt-4o-mini",
            "stream": stream,
            "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
            "tools": [{"type": "function", "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
            }}]
        })
    }

    #[test]
    fn parse_rejects_missing_messages() {
        assert!(parse_chat(&json!({"model": "x"})).is_err());
        assert!(parse_chat(&json!({"model": "x", "messages": []})).is_err());
        assert!(parse_chat(&json!({"messages": [{"role": "wizard", "content": "x"}]})).is_err());
    }

    #[test]
    fn chat_plain_shape() {
        let req = SimRequest::post_json(
            "/v1/chat/completions",
            &json!({"model": "gpt-4o-mini", "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "hi there"}]}
            ]}),
        );
        let reply = chat(&req, None);
        let v = reply.json().expect("json");
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "gpt-4o-mini-sim-2024");
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "Hello from the simulator. You said: hi there"
        );
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["prompt_tokens"], 10);
        assert_eq!(v["usage"]["completion_tokens"], 8);
        assert_eq!(v["usage"]["total_tokens"], 18);
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
        assert!(v.get("prompt_filter_results").is_none());
    }

    #[test]
    fn chat_tool_call_shape() {
        let reply = chat(
            &SimRequest::post_json("/v1/chat/completions", &weather_request(false)),
            None,
        );
        let v = reply.json().expect("json");
        let msg = &v["choices"][0]["message"];
        assert_eq!(msg["content"], Json::Null);
        assert_eq!(msg["tool_calls"][0]["function"]["name"], "get_weather");
        assert_eq!(
            msg["tool_calls"][0]["function"]["arguments"],
            r#"{"location":"Paris"}"#
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    }

    /// Parses `data:` lines of an OpenAI stream.
    fn data_lines(stream: &str) -> Vec<String> {
        stream
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn chat_stream_usage_only_when_asked() {
        let body =
            json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
        let plain = chat(&SimRequest::post_json("/v1/chat/completions", &body), None)
            .stream_text()
            .expect("stream");
        let lines = data_lines(&plain);
        assert_eq!(lines.last().map(String::as_str), Some("[DONE]"));
        assert!(!plain.contains("\"usage\""), "{plain}");
        let first: Json = serde_json::from_str(&lines[0]).expect("json");
        assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
        let text: String = lines[..lines.len() - 1]
            .iter()
            .filter_map(|l| serde_json::from_str::<Json>(l).ok())
            .filter_map(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        assert_eq!(text, "Hello from the simulator. You said: hi");

        let mut with = body.clone();
        with["stream_options"] = json!({"include_usage": true});
        let s = chat(&SimRequest::post_json("/v1/chat/completions", &with), None)
            .stream_text()
            .expect("stream");
        let lines = data_lines(&s);
        let usage: Json = serde_json::from_str(&lines[lines.len() - 2]).expect("json");
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["completion_tokens"], 7);
        let finish: Json = serde_json::from_str(&lines[lines.len() - 3]).expect("json");
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        assert_eq!(finish["usage"], Json::Null);
    }

    #[test]
    fn chat_stream_tool_call_pieces() {
        let s = chat(
            &SimRequest::post_json("/v1/chat/completions", &weather_request(true)),
            None,
        )
        .stream_text()
        .expect("stream");
        let chunks: Vec<Json> = data_lines(&s)
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let args: String = chunks
            .iter()
            .filter_map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
            })
            .collect();
        assert_eq!(args, r#"{"location":"Paris"}"#);
        assert!(chunks.len() > 3, "arguments must come in pieces");
        assert_eq!(
            chunks.last().expect("chunk")["choices"][0]["finish_reason"],
            "tool_calls"
        );
    }

    #[test]
    fn azure_adds_filter_results() {
        let body = json!({"messages": [{"role": "user", "content": "hi"}], "stream": true});
        let s = chat(
            &SimRequest::post_json("/openai/deployments/dep1/chat/completions", &body),
            Some("dep1"),
        )
        .stream_text()
        .expect("stream");
        let first: Json = serde_json::from_str(&data_lines(&s)[0]).expect("json");
        assert_eq!(first["choices"], json!([]));
        assert!(first["prompt_filter_results"].is_array());
        assert!(s.contains("\"model\":\"dep1-sim-2024\""));
    }

    #[test]
    fn embeddings_float_and_base64() {
        let float = embeddings(
            &SimRequest::post_json(
                "/v1/embeddings",
                &json!({"model": "e", "input": ["a b", "c"], "dimensions": 4}),
            ),
            None,
        );
        let v = float.json().expect("json");
        assert_eq!(v["data"].as_array().map(Vec::len), Some(2));
        assert_eq!(v["data"][0]["embedding"].as_array().map(Vec::len), Some(4));
        assert_eq!(v["usage"]["prompt_tokens"], 3);
        let b64 = embeddings(
            &SimRequest::post_json(
                "/v1/embeddings",
                &json!({"model": "e", "input": "x", "encoding_format": "base64"}),
            ),
            None,
        );
        let s = b64.json().expect("json")["data"][0]["embedding"]
            .as_str()
            .map(str::len);
        // 16 floats * 4 bytes = 64 bytes -> 88 base64 chars.
        assert_eq!(s, Some(88));
        let bad = embeddings(
            &SimRequest::post_json("/v1/embeddings", &json!({"model": "e"})),
            None,
        );
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    }
}
