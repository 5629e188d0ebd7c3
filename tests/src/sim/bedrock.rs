//! AWS Bedrock Runtime Converse and ConverseStream (`POST /model/{modelId}/converse` and
//! `/converse-stream`), in Bedrock's wire shapes. Validation follows the real API where
//! gateways slip: only Converse's own top-level fields are accepted (an OpenAI `model` or
//! `stream` left in the body is a `ValidationException`), `messages` must be non-empty, start
//! with a user turn and alternate roles, and content is a list of blocks.
//!
//! ConverseStream answers in AWS event-stream frames (`application/vnd.amazon.eventstream`):
//! `messageStart`, `contentBlockDelta` (text blocks have no `contentBlockStart`, as on the real
//! service), `contentBlockStart`/`contentBlockDelta`/`contentBlockStop` for a tool use,
//! `messageStop`, then `metadata` with the usage. Every payload carries the real service's
//! `p` padding field.

use http::StatusCode;
use serde_json::{Value as Json, json};

use super::model::{self, Completion, Conversation, Finish, Overrides, ToolChoice, ToolDef};
use super::stream::{EventStream, Framing};
use super::{Dialect, Reply, SimRequest, text};

/// Converse's top-level request fields.
const FIELDS: &[&str] = &[
    "messages",
    "system",
    "inferenceConfig",
    "toolConfig",
    "guardrailConfig",
    "additionalModelRequestFields",
    "additionalModelResponseFieldPaths",
    "promptVariables",
    "requestMetadata",
    "performanceConfig",
];

/// Recognizes `.../model/{modelId}/converse[-stream]`; the id percent-decoded.
pub fn target(path: &str) -> Option<(String, bool)> {
    let (_, rest) = path.split_once("/model/")?;
    let (model, op) = rest.rsplit_once('/')?;
    let stream = match op {
        "converse" => false,
        "converse-stream" => true,
        _ => return None,
    };
    let model = percent_encoding::percent_decode_str(model)
        .decode_utf8()
        .ok()?
        .into_owned();
    Some((model, stream))
}

fn invalid(msg: impl Into<String>) -> Reply {
    Reply::error(Dialect::Aws, StatusCode::BAD_REQUEST, &msg.into())
}

/// Parses a Converse body into a conversation.
pub fn parse(body: &Json, model: &str) -> Result<Conversation, String> {
    let obj = body.as_object().ok_or("body must be an object")?;
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "Malformed input request: extraneous key [{k}] is not permitted, please reformat your input and try again."
        ));
    }
    let messages = body
        .get("messages")
        .and_then(Json::as_array)
        .filter(|m| !m.is_empty())
        .ok_or("A conversation must start with a user message. Try again with a conversation that starts with a user message.")?;
    let mut conv = Conversation {
        model: model.to_owned(),
        messages: messages.len() as u64,
        max_tokens: body
            .pointer("/inferenceConfig/maxTokens")
            .and_then(Json::as_u64),
        ..Conversation::default()
    };
    if let Some(system) = body.get("system") {
        let blocks = system.as_array().ok_or("system must be a list of blocks")?;
        conv.messages += 1;
        conv.prompt_texts.push(block_text(blocks));
    }
    let mut expect = "user";
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Json::as_str).unwrap_or_default();
        if role != expect {
            return Err(if i == 0 {
                "A conversation must start with a user message. Try again with a conversation that starts with a user message.".into()
            } else {
                "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.".into()
            });
        }
        expect = if role == "user" { "assistant" } else { "user" };
        let blocks = m
            .get("content")
            .and_then(Json::as_array)
            .filter(|b| !b.is_empty())
            .ok_or(format!(
                "messages.{i}.content must be a non-empty list of content blocks"
            ))?;
        for b in blocks {
            let kind = b
                .as_object()
                .and_then(|o| o.keys().next())
                .map(String::as_str);
            if !matches!(
                kind,
                Some(
                    "text"
                        | "image"
                        | "document"
                        | "toolUse"
                        | "toolResult"
                        | "reasoningContent"
                        | "cachePoint"
                        | "guardContent"
                )
            ) {
                return Err(format!("messages.{i}.content has an unknown block {b}"));
            }
        }
        let t = block_text(blocks);
        if role == "user" {
            conv.last_user = t.clone();
        }
        conv.prompt_texts.push(t);
    }
    if let Some(last) = messages.last().and_then(|m| m["content"].as_array())
        && let Some(r) = last.iter().find_map(|b| b.get("toolResult"))
    {
        conv.tool_result = Some(block_text(
            r.get("content")
                .and_then(Json::as_array)
                .map_or(&[][..], |v| v),
        ));
    }
    conv.tools = body
        .pointer("/toolConfig/tools")
        .and_then(Json::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| {
                    let spec = t.get("toolSpec")?;
                    Some(ToolDef {
                        name: spec.get("name")?.as_str()?.to_owned(),
                        parameters: spec
                            .pointer("/inputSchema/json")
                            .cloned()
                            .unwrap_or(json!({})),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    conv.tool_choice = match body.pointer("/toolConfig/toolChoice") {
        Some(c) if c.get("any").is_some() => ToolChoice::Required,
        Some(c) => match c.pointer("/tool/name").and_then(Json::as_str) {
            Some(n) => ToolChoice::Named(n.to_owned()),
            None => ToolChoice::Auto,
        },
        None => ToolChoice::Auto,
    };
    Ok(conv)
}

fn block_text(blocks: &[Json]) -> String {
    blocks
        .iter()
        .filter_map(|b| b.get("text").and_then(Json::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn converse(req: &SimRequest, model: &str, stream: bool) -> Reply {
    let body = match req.json_object(Dialect::Aws) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let conv = match parse(&body, model) {
        Ok(c) => c,
        Err(msg) => return invalid(msg),
    };
    let mut c = model::complete(
        &conv,
        &Overrides::from_headers(&req.headers),
        true,
        &req.body,
    );
    if let Some(call) = c.tool_call.as_mut() {
        call.id = text::id("tooluse_", &req.body);
    }
    if stream {
        Reply::Stream(converse_stream(&c))
    } else {
        Reply::ok(converse_response(&c))
    }
}

pub fn stop_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "end_turn",
        Finish::Length => "max_tokens",
        Finish::ToolCall => "tool_use",
    }
}

fn usage(c: &Completion) -> Json {
    let mut u = json!({
        "inputTokens": c.usage.input - c.usage.cached,
        "outputTokens": c.usage.output,
        "totalTokens": c.usage.input + c.usage.output,
    });
    if c.usage.cached > 0 {
        u["cacheReadInputTokens"] = json!(c.usage.cached);
        u["cacheWriteInputTokens"] = json!(0);
    }
    u
}

pub fn converse_response(c: &Completion) -> Json {
    let mut content = Vec::new();
    if !c.text.is_empty() {
        content.push(json!({"text": c.text}));
    }
    if let Some(call) = &c.tool_call {
        content.push(
            json!({"toolUse": {"toolUseId": call.id, "name": call.name, "input": call.arguments}}),
        );
    }
    json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason(c.finish),
        "usage": usage(c),
        "metrics": {"latencyMs": 42},
    })
}

/// Bedrock pads each stream payload with `p` (letters, varying length) against
/// length-based traffic analysis.
fn padded(mut v: Json, n: usize) -> Json {
    const ALPHABET: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    v["p"] = json!(&ALPHABET[..(n * 7) % ALPHABET.len() + 1]);
    v
}

pub fn converse_stream(c: &Completion) -> EventStream {
    let mut s = EventStream::new(Dialect::Aws, Framing::AwsEventStream);
    let mut n = 0;
    let mut push = |s: &mut EventStream, event: &str, v: Json| {
        n += 1;
        s.push(Some(event), &padded(v, n));
    };
    push(&mut s, "messageStart", json!({"role": "assistant"}));
    let mut index = 0;
    if !c.text.is_empty() {
        for piece in c.pieces() {
            push(
                &mut s,
                "contentBlockDelta",
                json!({"contentBlockIndex": index, "delta": {"text": piece}}),
            );
        }
        push(
            &mut s,
            "contentBlockStop",
            json!({"contentBlockIndex": index}),
        );
        index += 1;
    }
    if let Some(call) = &c.tool_call {
        push(
            &mut s,
            "contentBlockStart",
            json!({"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": call.id, "name": call.name}}}),
        );
        for piece in call.argument_pieces() {
            push(
                &mut s,
                "contentBlockDelta",
                json!({"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}}),
            );
        }
        push(
            &mut s,
            "contentBlockStop",
            json!({"contentBlockIndex": index}),
        );
    }
    push(
        &mut s,
        "messageStop",
        json!({"stopReason": stop_reason(c.finish)}),
    );
    push(
        &mut s,
        "metadata",
        json!({"usage": usage(c), "metrics": {"latencyMs": 42}}),
    );
    s
}

/// Bedrock's error type for a status (the `x-amzn-errortype` header).
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "ValidationException",
        401 | 403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        424 => "ModelErrorException",
        429 => "ThrottlingException",
        503 | 529 => "ServiceUnavailableException",
        _ => "InternalServerException",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> Json {
        json!({
            "system": [{"text": "Be brief."}],
            "messages": [{"role": "user", "content": [{"text": "hi there"}]}],
            "inferenceConfig": {"maxTokens": 64},
        })
    }

    #[test]
    fn routes_and_decodes_the_model() {
        assert_eq!(
            target("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream"),
            Some(("anthropic.claude-3-haiku-20240307-v1:0".into(), true))
        );
        assert_eq!(target("/model/m/invoke"), None);
    }

    #[test]
    fn refuses_what_converse_refuses() {
        let mut b = body();
        b["model"] = json!("x");
        assert!(
            parse(&b, "m")
                .unwrap_err()
                .contains("extraneous key [model]")
        );
        let b = json!({"messages": [{"role": "user", "content": [{"text": "a"}]},
            {"role": "user", "content": [{"text": "b"}]}]});
        assert!(parse(&b, "m").unwrap_err().contains("alternate"));
        let b = json!({"messages": [{"role": "user", "content": "plain string"}]});
        assert!(parse(&b, "m").is_err());
    }

    #[test]
    fn stream_ends_with_usage_metadata() {
        let conv = parse(&body(), "amazon.nova-lite-v1:0").expect("valid");
        let c = model::complete(&conv, &Overrides::default(), true, b"seed");
        let s = converse_stream(&c);
        assert_eq!(s.content_type, "application/vnd.amazon.eventstream");
        let all = s.concat();
        let text = String::from_utf8_lossy(&all);
        assert!(text.contains("messageStart") && text.contains("metadata"));
        assert!(text.contains("\"outputTokens\""));
    }
}
