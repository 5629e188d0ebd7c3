//! Gemini `generateContent` / `streamGenerateContent` (Google AI Studio `/v1beta/models/...`
//! and Vertex AI `/v1/projects/.../publishers/google/models/...`), `embedContent` /
//! `batchEmbedContents`, and `GET /v1beta/models`.
//!
//! As on the real API, `alt=sse` streams `data: {...}\r\n\r\n` events (CRLF), and without it
//! the stream is one JSON array sent element by element. Every chunk carries `usageMetadata`
//! (counts so far); the last one carries `finishReason`. `candidatesTokenCount` excludes
//! thinking tokens, which are reported as `thoughtsTokenCount`.

use http::StatusCode;
use serde_json::{Map, Value as Json, json};

use super::model::{self, Completion, Conversation, Finish, Overrides, ToolChoice, ToolDef};
use super::stream::{EventStream, Framing};
use super::{Dialect, Reply, SimRequest, text};

/// Words per streamed chunk (Gemini streams a few words at a time).
pub const WORDS_PER_CHUNK: usize = 3;
/// Models listed by `GET /v1beta/models`.
pub const MODELS: &[&str] = &["gemini-2.0-flash", "gemini-2.5-flash", "gemini-2.5-pro"];

/// Which Gemini operation a path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub model: String,
    pub stream: bool,
}

/// Recognizes `.../models/{model}:generateContent` and `:streamGenerateContent`.
pub fn target(path: &str) -> Option<Target> {
    let (before, op) = path.rsplit_once(':')?;
    let stream = match op {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => return None,
    };
    let (_, model) = before.rsplit_once("/models/")?;
    Some(Target {
        model: model.to_string(),
        stream,
    })
}

/// Parses a generateContent body.
pub fn parse(body: &Json, model_name: &str) -> Result<Conversation, String> {
    let contents = body
        .get("contents")
        .and_then(Json::as_array)
        .filter(|c| !c.is_empty())
        .ok_or("* GenerateContentRequest.contents: contents is not specified")?;
    let mut conv = Conversation {
        model: model_name.to_string(),
        messages: contents.len() as u64,
        max_tokens: body
            .pointer("/generationConfig/maxOutputTokens")
            .or_else(|| body.pointer("/generation_config/max_output_tokens"))
            .and_then(Json::as_u64),
        ..Conversation::default()
    };
    if let Some(system) = body
        .get("systemInstruction")
        .or_else(|| body.get("system_instruction"))
    {
        // Counted like OpenAI's system message so translated prompts cost the same.
        conv.messages += 1;
        conv.prompt_texts.push(parts_text(system));
    }
    for (i, c) in contents.iter().enumerate() {
        let role = c.get("role").and_then(Json::as_str).unwrap_or("user");
        if !matches!(role, "user" | "model" | "function") {
            return Err(format!(
                "* GenerateContentRequest.contents[{i}].role: Please use a valid role: user, model."
            ));
        }
        let text = parts_text(c);
        if role == "user" {
            conv.last_user = text.clone();
        }
        conv.prompt_texts.push(text);
    }
    if let Some(parts) = contents
        .last()
        .and_then(|c| c.get("parts"))
        .and_then(Json::as_array)
        && let Some(resp) = parts.iter().find_map(|p| {
            p.get("functionResponse")
                .or_else(|| p.get("function_response"))
        })
    {
        conv.tool_result = Some(
            resp.get("response")
                .map(Json::to_string)
                .unwrap_or_default(),
        );
    }
    conv.tools = body
        .get("tools")
        .and_then(Json::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| {
                    t.get("functionDeclarations")
                        .or_else(|| t.get("function_declarations"))
                        .and_then(Json::as_array)
                })
                .flatten()
                .filter_map(|f| {
                    Some(ToolDef {
                        name: f.get("name")?.as_str()?.to_string(),
                        parameters: f
                            .get("parameters")
                            .or_else(|| f.get("parametersJsonSchema"))
                            .cloned()
                            .unwrap_or(json!({})),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let calling = body.pointer("/toolConfig/functionCallingConfig");
    conv.tool_choice = match calling.and_then(|c| c.get("mode")).and_then(Json::as_str) {
        Some("ANY") => calling
            .and_then(|c| c.pointer("/allowedFunctionNames/0"))
            .and_then(Json::as_str)
            .map(|n| ToolChoice::Named(n.to_string()))
            .unwrap_or(ToolChoice::Required),
        Some("NONE") => ToolChoice::None,
        _ => ToolChoice::Auto,
    };
    Ok(conv)
}

fn parts_text(content: &Json) -> String {
    content
        .get("parts")
        .and_then(Json::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Json::as_str))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// `POST .../models/{model}:generateContent` and `:streamGenerateContent`.
pub fn generate(req: &SimRequest, t: &Target) -> Reply {
    let body = match req.json_object(Dialect::Google) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let mut conv = match parse(&body, &t.model) {
        Ok(c) => c,
        Err(msg) => return Reply::error(Dialect::Google, StatusCode::BAD_REQUEST, &msg),
    };
    conv.model = text::response_model(&conv.model, "gemini-2.0-flash");
    let c = model::complete(
        &conv,
        &Overrides::from_headers(&req.headers),
        false,
        &req.body,
    );
    let id = text::id("", &req.body);
    if t.stream {
        let framing = if req.query_param("alt") == Some("sse") {
            Framing::SseCrlf
        } else {
            Framing::JsonArray
        };
        Reply::Stream(stream(&c, &id, framing))
    } else {
        Reply::ok(response(&c, &id))
    }
}

fn usage_metadata(c: &Completion, candidates_so_far: u64) -> Json {
    let thoughts = c.usage.reasoning;
    let mut m = Map::new();
    m.insert("promptTokenCount".into(), json!(c.usage.input));
    m.insert("candidatesTokenCount".into(), json!(candidates_so_far));
    m.insert(
        "totalTokenCount".into(),
        json!(c.usage.input + candidates_so_far + thoughts),
    );
    if c.usage.cached > 0 {
        m.insert("cachedContentTokenCount".into(), json!(c.usage.cached));
    }
    if thoughts > 0 {
        m.insert("thoughtsTokenCount".into(), json!(thoughts));
    }
    Json::Object(m)
}

fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Length => "MAX_TOKENS",
        Finish::Stop | Finish::ToolCall => "STOP",
    }
}

fn candidate(parts: Vec<Json>, finish: Option<Finish>) -> Json {
    let mut c = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
    if let Some(f) = finish {
        c["finishReason"] = json!(finish_reason(f));
    }
    c
}

fn chunk(c: &Completion, id: &str, parts: Vec<Json>, finish: Option<Finish>, so_far: u64) -> Json {
    json!({
        "candidates": [candidate(parts, finish)],
        "usageMetadata": usage_metadata(c, so_far),
        "modelVersion": c.model,
        "responseId": id,
    })
}

fn function_part(c: &Completion) -> Option<Json> {
    c.tool_call
        .as_ref()
        .map(|call| json!({"functionCall": {"name": call.name, "args": call.arguments}}))
}

/// A non-streaming response.
pub fn response(c: &Completion, id: &str) -> Json {
    let mut parts = Vec::new();
    if !c.text.is_empty() {
        parts.push(json!({"text": c.text}));
    }
    parts.extend(function_part(c));
    chunk(
        c,
        id,
        parts,
        Some(c.finish),
        c.usage.output - c.usage.reasoning,
    )
}

/// A streamed response: text in chunks of [`WORDS_PER_CHUNK`] words, the last chunk with
/// `finishReason`.
pub fn stream(c: &Completion, id: &str, framing: Framing) -> EventStream {
    let mut s = EventStream::new(Dialect::Google, framing);
    let visible = c.usage.output - c.usage.reasoning;
    let pieces = c.pieces();
    let groups: Vec<String> = pieces.chunks(WORDS_PER_CHUNK).map(|g| g.concat()).collect();
    let mut so_far = 0u64;
    let last_text = groups.len().saturating_sub(1);
    for (i, group) in groups.iter().enumerate() {
        so_far += group.split_whitespace().count() as u64;
        let done = i == last_text && c.tool_call.is_none();
        let counted = if done { visible } else { so_far };
        s.push(
            None,
            &chunk(
                c,
                id,
                vec![json!({"text": group})],
                done.then_some(c.finish),
                counted,
            ),
        );
    }
    if let Some(part) = function_part(c) {
        s.push(None, &chunk(c, id, vec![part], Some(c.finish), visible));
    }
    s.finish();
    s
}

/// Recognizes `.../models/{model}:embedContent` (`false`) and `:batchEmbedContents` (`true`).
pub fn embed_target(path: &str) -> Option<(String, bool)> {
    let (before, op) = path.rsplit_once(':')?;
    let batch = match op {
        "embedContent" => false,
        "batchEmbedContents" => true,
        _ => return None,
    };
    let (_, model) = before.rsplit_once("/models/")?;
    Some((model.to_string(), batch))
}

/// `POST .../models/{model}:embedContent` and `:batchEmbedContents`: one vector per content,
/// `outputDimensionality` honoured (default [`text::DEFAULT_EMBEDDING_DIMS`]).
pub fn embed(req: &SimRequest, batch: bool) -> Reply {
    let body = match req.json_object(Dialect::Google) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let requests: Vec<&Json> = if batch {
        match body.get("requests").and_then(Json::as_array) {
            Some(r) if !r.is_empty() => r.iter().collect(),
            _ => {
                return Reply::error(
                    Dialect::Google,
                    StatusCode::BAD_REQUEST,
                    "* BatchEmbedContentsRequest.requests: requests is not specified",
                );
            }
        }
    } else {
        vec![&body]
    };
    let mut vectors = Vec::with_capacity(requests.len());
    for r in requests {
        let Some(content) = r.get("content") else {
            return Reply::error(
                Dialect::Google,
                StatusCode::BAD_REQUEST,
                "* EmbedContentRequest.content: content is not specified",
            );
        };
        let dims = r
            .get("outputDimensionality")
            .and_then(Json::as_u64)
            .map(|d| d as usize)
            .unwrap_or(text::DEFAULT_EMBEDDING_DIMS);
        vectors.push(json!({"values": text::embedding(&parts_text(content), dims)}));
    }
    if batch {
        Reply::ok(json!({"embeddings": vectors}))
    } else {
        Reply::ok(json!({"embedding": vectors.into_iter().next()}))
    }
}

/// `GET /v1beta/models`.
pub fn models() -> Reply {
    let models: Vec<Json> = MODELS
        .iter()
        .map(|m| {
            json!({
                "name": format!("models/{m}"),
                "displayName": m,
                "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
            })
        })
        .collect();
    Reply::ok(json!({"models": models}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> Json {
        json!({
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [{"role": "user", "parts": [{"text": "hi there"}]}],
        })
    }

    #[test]
    fn targets() {
        assert_eq!(
            target("/v1beta/models/gemini-2.0-flash:streamGenerateContent"),
            Some(Target {
                model: "gemini-2.0-flash".into(),
                stream: true
            })
        );
        assert_eq!(
            target("/v1/projects/p/locations/l/publishers/google/models/g:generateContent")
                .map(|t| t.model),
            Some("g".into())
        );
        assert_eq!(target("/v1beta/models/g:countTokens"), None);
        assert_eq!(target("/v1/chat/completions"), None);
    }

    #[test]
    fn response_shape() {
        let t = target("/v1beta/models/gemini-2.0-flash:generateContent").expect("target");
        let reply = generate(&SimRequest::post_json("/x", &body()), &t);
        let v = reply.json().expect("json");
        let cand = &v["candidates"][0];
        assert_eq!(
            cand["content"]["parts"][0]["text"],
            "Hello from the simulator. You said: hi there"
        );
        assert_eq!(cand["content"]["role"], "model");
        assert_eq!(cand["finishReason"], "STOP");
        assert_eq!(v["usageMetadata"]["promptTokenCount"], 10);
        assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 8);
        assert_eq!(v["usageMetadata"]["totalTokenCount"], 18);
        assert_eq!(v["modelVersion"], "gemini-2.0-flash-sim-2024");
    }

    #[test]
    fn sse_stream_uses_crlf_and_finishes() {
        let t = target("/v1beta/models/gemini-2.0-flash:streamGenerateContent").expect("target");
        let s = generate(&SimRequest::post_json("/x?alt=sse", &body()), &t)
            .stream_text()
            .expect("stream");
        let chunks: Vec<Json> = s
            .split("\r\n\r\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).expect("json"))
            .collect();
        assert_eq!(chunks.len(), 3);
        let text: String = chunks
            .iter()
            .filter_map(|c| {
                c.pointer("/candidates/0/content/parts/0/text")
                    .and_then(Json::as_str)
            })
            .collect();
        assert_eq!(text, "Hello from the simulator. You said: hi there");
        let last = chunks.last().expect("chunk");
        assert_eq!(last["candidates"][0]["finishReason"], "STOP");
        assert_eq!(last["usageMetadata"]["candidatesTokenCount"], 8);
        assert!(chunks[0]["candidates"][0].get("finishReason").is_none());
    }

    #[test]
    fn json_array_stream_parses_as_array() {
        let t = target("/v1beta/models/g:streamGenerateContent").expect("target");
        let s = generate(&SimRequest::post_json("/x", &body()), &t)
            .stream_text()
            .expect("stream");
        let arr: Json = serde_json::from_str(&s).expect("array");
        assert_eq!(arr.as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn function_call() {
        let mut b = body();
        b["contents"] = json!([{"role": "user", "parts": [{"text": "weather in Paris"}]}]);
        b["tools"] = json!([{"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "OBJECT", "properties": {"location": {"type": "STRING"}}}}]}]);
        let t = target("/v1beta/models/g:generateContent").expect("target");
        let reply = generate(&SimRequest::post_json("/x", &b), &t);
        let v = reply.json().expect("json");
        assert_eq!(
            v["candidates"][0]["content"]["parts"][0]["functionCall"],
            json!({"name": "get_weather", "args": {"location": "Paris"}})
        );
    }

    #[test]
    fn embeddings() {
        assert_eq!(
            embed_target("/v1beta/models/text-embedding-004:embedContent"),
            Some(("text-embedding-004".into(), false))
        );
        assert_eq!(
            embed_target("/v1beta/models/e:batchEmbedContents"),
            Some(("e".into(), true))
        );
        let one = embed(
            &SimRequest::post_json(
                "/x",
                &json!({"content": {"parts": [{"text": "hi"}]}, "outputDimensionality": 4}),
            ),
            false,
        );
        assert_eq!(
            one.json().expect("json")["embedding"]["values"]
                .as_array()
                .map(Vec::len),
            Some(4)
        );
        let many = embed(
            &SimRequest::post_json(
                "/x",
                &json!({"requests": [
                    {"model": "models/e", "content": {"parts": [{"text": "a"}]}},
                    {"model": "models/e", "content": {"parts": [{"text": "b"}]}}
                ]}),
            ),
            true,
        );
        let v = many.json().expect("json");
        assert_eq!(v["embeddings"].as_array().map(Vec::len), Some(2));
        assert_ne!(v["embeddings"][0], v["embeddings"][1]);
        let bad = embed(&SimRequest::post_json("/x", &json!({})), false);
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn missing_contents_is_google_400() {
        let t = target("/v1beta/models/g:generateContent").expect("target");
        let reply = generate(&SimRequest::post_json("/x", &json!({})), &t);
        assert_eq!(reply.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            reply.json().expect("json")["error"]["status"],
            "INVALID_ARGUMENT"
        );
    }
}
