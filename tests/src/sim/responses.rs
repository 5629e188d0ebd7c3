//! OpenAI Responses API (`POST .../responses`): the response object and the streamed event
//! sequence (`response.created`, `response.in_progress`, `response.output_item.added`,
//! `response.content_part.added`, `response.output_text.delta`..., `...done`,
//! `response.completed`), each event carrying `type` and `sequence_number`.

use http::StatusCode;
use serde_json::{Value as Json, json};

use super::model::{self, Completion, Conversation, Finish, Overrides, ToolChoice, ToolDef};
use super::openai::str_field;
use super::stream::{EventStream, Framing};
use super::{Dialect, Reply, SimRequest, text};

/// Parses a Responses request into a conversation and the stream flag.
pub fn parse(body: &Json) -> Result<(Conversation, bool), String> {
    let mut conv = Conversation {
        model: str_field(body, "model"),
        max_tokens: body.get("max_output_tokens").and_then(Json::as_u64),
        ..Conversation::default()
    };
    if let Some(instructions) = body.get("instructions").and_then(Json::as_str) {
        conv.prompt_texts.push(instructions.to_string());
    }
    match body.get("input") {
        Some(Json::String(s)) => {
            conv.messages = 1;
            conv.last_user = s.clone();
            conv.prompt_texts.push(s.clone());
        }
        Some(Json::Array(items)) if !items.is_empty() => {
            conv.messages = items.len() as u64;
            for item in items {
                let kind = item.get("type").and_then(Json::as_str).unwrap_or("message");
                match kind {
                    "function_call_output" => {
                        let out = item
                            .get("output")
                            .map(model::content_text)
                            .unwrap_or_default();
                        conv.prompt_texts.push(out.clone());
                        conv.tool_result = Some(out);
                        continue;
                    }
                    "function_call" => continue,
                    _ => {}
                }
                let content = model::content_text(item.get("content").unwrap_or(&Json::Null));
                if item.get("role").and_then(Json::as_str) == Some("user") {
                    conv.last_user = content.clone();
                    conv.tool_result = None;
                }
                conv.prompt_texts.push(content);
            }
        }
        _ => return Err("Missing required parameter: 'input'.".into()),
    }
    conv.tools = body
        .get("tools")
        .and_then(Json::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter(|t| t.get("type").and_then(Json::as_str) == Some("function"))
                .filter_map(|t| {
                    Some(ToolDef {
                        name: t.get("name")?.as_str()?.to_string(),
                        parameters: t.get("parameters").cloned().unwrap_or(json!({})),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    conv.tool_choice = match body.get("tool_choice") {
        Some(Json::String(s)) if s == "none" => ToolChoice::None,
        Some(Json::String(s)) if s == "required" => ToolChoice::Required,
        Some(Json::Object(o)) => o
            .get("name")
            .and_then(Json::as_str)
            .map(|n| ToolChoice::Named(n.to_string()))
            .unwrap_or(ToolChoice::Required),
        _ => ToolChoice::Auto,
    };
    let stream = body.get("stream").and_then(Json::as_bool).unwrap_or(false);
    Ok((conv, stream))
}

/// `POST .../responses`.
pub fn handle(req: &SimRequest) -> Reply {
    let body = match req.json_object(Dialect::OpenAi) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let (mut conv, stream) = match parse(&body) {
        Ok(p) => p,
        Err(msg) => return Reply::error(Dialect::OpenAi, StatusCode::BAD_REQUEST, &msg),
    };
    conv.model = text::response_model(&conv.model, "gpt-4o-mini");
    let c = model::complete(
        &conv,
        &Overrides::from_headers(&req.headers),
        false,
        &req.body,
    );
    let ids = Ids::new(&req.body);
    if stream {
        Reply::Stream(stream_events(&c, &ids, &body))
    } else {
        Reply::ok(response_object(&c, &ids, &body, true))
    }
}

/// Stable ids of one response and its output items.
#[derive(Clone, Debug)]
pub struct Ids {
    pub response: String,
    pub message: String,
    pub function_call: String,
}

impl Ids {
    pub fn new(seed: &[u8]) -> Self {
        Ids {
            response: text::id("resp_", seed),
            message: text::id("msg_", seed),
            function_call: text::id("fc_", seed),
        }
    }
}

fn message_item(c: &Completion, ids: &Ids, done: bool) -> Json {
    let content = if done {
        json!([{"type": "output_text", "text": c.text, "annotations": [], "logprobs": []}])
    } else {
        json!([])
    };
    json!({
        "id": ids.message,
        "type": "message",
        "status": if done { "completed" } else { "in_progress" },
        "role": "assistant",
        "content": content,
    })
}

fn function_item(c: &Completion, ids: &Ids, done: bool) -> Option<Json> {
    let call = c.tool_call.as_ref()?;
    Some(json!({
        "id": ids.function_call,
        "type": "function_call",
        "status": if done { "completed" } else { "in_progress" },
        "call_id": call.id,
        "name": call.name,
        "arguments": if done { call.arguments_string() } else { String::new() },
    }))
}

/// The response object; `done` false gives the in-progress snapshot of `response.created`.
pub fn response_object(c: &Completion, ids: &Ids, request: &Json, done: bool) -> Json {
    let output: Vec<Json> = if !done {
        Vec::new()
    } else if let Some(item) = function_item(c, ids, true) {
        vec![item]
    } else {
        vec![message_item(c, ids, true)]
    };
    let (status, incomplete) = match (done, c.finish) {
        (false, _) => ("in_progress", Json::Null),
        (true, Finish::Length) => ("incomplete", json!({"reason": "max_output_tokens"})),
        (true, _) => ("completed", Json::Null),
    };
    let usage = if done {
        json!({
            "input_tokens": c.usage.input,
            "input_tokens_details": {"cached_tokens": c.usage.cached},
            "output_tokens": c.usage.output,
            "output_tokens_details": {"reasoning_tokens": c.usage.reasoning},
            "total_tokens": c.usage.total(),
        })
    } else {
        Json::Null
    };
    json!({
        "id": ids.response,
        "object": "response",
        "created_at": text::CREATED,
        "status": status,
        "error": null,
        "incomplete_details": incomplete,
        "instructions": request.get("instructions").cloned().unwrap_or(Json::Null),
        "max_output_tokens": request.get("max_output_tokens").cloned().unwrap_or(Json::Null),
        "model": c.model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null},
        "store": true,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice").cloned().unwrap_or(json!("auto")),
        "tools": request.get("tools").cloned().unwrap_or(json!([])),
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": null,
        "metadata": {},
    })
}

/// The streamed event sequence.
pub fn stream_events(c: &Completion, ids: &Ids, request: &Json) -> EventStream {
    let mut s = EventStream::new(Dialect::OpenAi, Framing::Sse);
    let mut seq = 0u64;
    let mut push = |s: &mut EventStream, kind: &str, mut data: Json| {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(seq);
        seq += 1;
        s.push(Some(kind), &data);
    };
    let snapshot = response_object(c, ids, request, false);
    push(&mut s, "response.created", json!({"response": snapshot}));
    push(
        &mut s,
        "response.in_progress",
        json!({"response": snapshot}),
    );
    if let (Some(call), Some(item)) = (&c.tool_call, function_item(c, ids, false)) {
        push(
            &mut s,
            "response.output_item.added",
            json!({"output_index": 0, "item": item}),
        );
        for piece in call.argument_pieces() {
            push(
                &mut s,
                "response.function_call_arguments.delta",
                json!({"item_id": ids.function_call, "output_index": 0, "delta": piece}),
            );
        }
        push(
            &mut s,
            "response.function_call_arguments.done",
            json!({"item_id": ids.function_call, "output_index": 0, "arguments": call.arguments_string()}),
        );
        push(
            &mut s,
            "response.output_item.done",
            json!({"output_index": 0, "item": function_item(c, ids, true)}),
        );
    } else {
        let part_at = |text: &str| json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
        push(
            &mut s,
            "response.output_item.added",
            json!({"output_index": 0, "item": message_item(c, ids, false)}),
        );
        push(
            &mut s,
            "response.content_part.added",
            json!({"item_id": ids.message, "output_index": 0, "content_index": 0, "part": part_at("")}),
        );
        for piece in c.pieces() {
            push(
                &mut s,
                "response.output_text.delta",
                json!({"item_id": ids.message, "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []}),
            );
        }
        push(
            &mut s,
            "response.output_text.done",
            json!({"item_id": ids.message, "output_index": 0, "content_index": 0, "text": c.text, "logprobs": []}),
        );
        push(
            &mut s,
            "response.content_part.done",
            json!({"item_id": ids.message, "output_index": 0, "content_index": 0, "part": part_at(&c.text)}),
        );
        push(
            &mut s,
            "response.output_item.done",
            json!({"output_index": 0, "item": message_item(c, ids, true)}),
        );
    }
    let terminal = if c.finish == Finish::Length {
        "response.incomplete"
    } else {
        "response.completed"
    };
    push(
        &mut s,
        terminal,
        json!({"response": response_object(c, ids, request, true)}),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(s: &str) -> Vec<Json> {
        s.split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(|d| serde_json::from_str(d).expect("event json"))
            .collect()
    }

    #[test]
    fn non_stream_shape() {
        let req = SimRequest::post_json(
            "/v1/responses",
            &json!({"model": "gpt-4o", "input": "say hi", "instructions": "Be nice."}),
        );
        let reply = handle(&req);
        let v = reply.json().expect("json");
        assert_eq!(v["object"], "response");
        assert_eq!(v["status"], "completed");
        assert_eq!(v["model"], "gpt-4o-sim-2024");
        assert_eq!(
            v["output"][0]["content"][0]["text"],
            "Hello from the simulator. You said: say hi"
        );
        // 2 + 2 words, 1 message.
        assert_eq!(v["usage"]["input_tokens"], 7);
        assert_eq!(v["usage"]["output_tokens"], 8);
    }

    #[test]
    fn stream_event_sequence() {
        let req = SimRequest::post_json(
            "/v1/responses",
            &json!({"model": "gpt-4o", "stream": true, "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]}),
        );
        let text = handle(&req).stream_text().expect("stream");
        let evs = events(&text);
        let kinds: Vec<&str> = evs.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(kinds.first(), Some(&"response.created"));
        assert_eq!(kinds.last(), Some(&"response.completed"));
        assert!(kinds.contains(&"response.output_text.delta"));
        let seqs: Vec<u64> = evs
            .iter()
            .filter_map(|e| e["sequence_number"].as_u64())
            .collect();
        assert_eq!(seqs, (0..evs.len() as u64).collect::<Vec<_>>());
        let deltas: String = evs
            .iter()
            .filter(|e| e["type"] == "response.output_text.delta")
            .filter_map(|e| e["delta"].as_str())
            .collect();
        assert_eq!(deltas, "Hello from the simulator. You said: hi");
        let done = evs.last().expect("event");
        assert_eq!(done["response"]["usage"]["output_tokens"], 7);
        assert!(text.contains("event: response.completed\n"));
    }

    #[test]
    fn missing_input_is_400() {
        let reply = handle(&SimRequest::post_json(
            "/v1/responses",
            &json!({"model": "x"}),
        ));
        assert_eq!(reply.status(), StatusCode::BAD_REQUEST);
    }
}
