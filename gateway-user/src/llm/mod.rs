//! LLM providers: request/response formats, translation between them, and stream parsing.
//!
//! Where does an Anthropic stream get its tokens counted? `stream.rs` feeds each SSE event to
//! the client format's observer (`anthropic.rs`, `openai.rs`, `gemini.rs`), which records usage
//! into the request's `LlmInfo`; `translate.rs` rewrites events when the client and the provider
//! speak different formats.

pub mod anthropic;
pub mod chain;
pub mod eventstream;
pub mod gemini;
pub mod openai;
pub mod provider;
pub mod route;
pub mod stream;
pub mod translate;

use serde_json::Value;

use crate::ctx::LlmInfo;

/// The HTTP endpoint class a request targets (agentgateway's `RouteType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteType {
    /// OpenAI `/v1/chat/completions`.
    Completions,
    /// Anthropic `/v1/messages`.
    Messages,
    /// OpenAI `/v1/responses`.
    Responses,
    /// OpenAI `/v1/embeddings`.
    Embeddings,
    /// `/v1/models`.
    Models,
    /// Anthropic `/v1/messages/count_tokens`.
    CountTokens,
    /// Gemini-native `models/{model}:generateContent` / `:streamGenerateContent` (path kept).
    GenerateContent,
    /// Forwarded unchanged (path kept), observed where possible.
    Passthrough,
}

impl RouteType {
    /// Whether requests of this type carry a JSON body (all but model listing and
    /// pass-through).
    pub fn needs_body(self) -> bool {
        !matches!(self, RouteType::Models | RouteType::Passthrough)
    }

    pub fn parse(s: &str) -> Option<RouteType> {
        Some(match s {
            "completions" => RouteType::Completions,
            "messages" => RouteType::Messages,
            "responses" => RouteType::Responses,
            "embeddings" => RouteType::Embeddings,
            "models" => RouteType::Models,
            "anthropicTokenCount" | "countTokens" => RouteType::CountTokens,
            "passthrough" => RouteType::Passthrough,
            _ => return None,
        })
    }

    /// Detects the route type from the request path suffix. Unknown paths are treated as chat
    /// completions, as agentgateway does for AI backends.
    pub fn detect(path: &str) -> RouteType {
        let p = path.trim_end_matches('/');
        if p.contains(":generateContent") || p.contains(":streamGenerateContent") {
            RouteType::GenerateContent
        } else if p.ends_with("/chat/completions") {
            RouteType::Completions
        } else if p.ends_with("/messages/count_tokens") {
            RouteType::CountTokens
        } else if p.ends_with("/messages") {
            RouteType::Messages
        } else if p.ends_with("/responses") {
            RouteType::Responses
        } else if p.ends_with("/embeddings") {
            RouteType::Embeddings
        } else if p.ends_with("/models") {
            RouteType::Models
        } else {
            RouteType::Completions
        }
    }

    /// OTel GenAI operation name.
    pub fn operation(self) -> &'static str {
        match self {
            RouteType::Completions | RouteType::Messages | RouteType::GenerateContent => "chat",
            RouteType::Responses => "generate_content",
            RouteType::Embeddings => "embeddings",
            RouteType::Models => "models",
            RouteType::CountTokens => "count_tokens",
            RouteType::Passthrough => "passthrough",
        }
    }

    /// The error body shape owed to the client.
    pub fn client_wire(self) -> provider::Wire {
        match self {
            RouteType::Messages | RouteType::CountTokens => provider::Wire::Anthropic,
            _ => provider::Wire::OpenAi,
        }
    }
}

/// Parameters recorded as `llm.params.*` / `gen_ai.request.*`.
const PARAM_KEYS: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "stop",
    "stop_sequences",
    "n",
    "reasoning_effort",
];

/// Fills `info` from a parsed client request body (any client format).
pub fn observe_request(route: RouteType, body: &Value, info: &mut LlmInfo, capture_prompt: bool) {
    info.request_model = body.get("model").and_then(Value::as_str).map(str::to_owned);
    info.streaming = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    for key in PARAM_KEYS {
        if let Some(v) = body.get(*key).filter(|v| !v.is_null()) {
            // Normalise to OTel names: max_tokens covers the provider-specific variants.
            let name = match *key {
                "max_completion_tokens" | "max_output_tokens" => "max_tokens",
                "stop_sequences" => "stop",
                k => k,
            };
            info.params.insert(name.to_owned(), v.clone());
        }
    }
    if capture_prompt {
        info.prompt = prompt_of(route, body);
    }
}

/// The prompt recorded for a client request body (`llm.prompt`, `gen_ai.prompt`).
pub fn prompt_of(route: RouteType, body: &Value) -> Option<Value> {
    match route {
        RouteType::Messages => Some(anthropic::prompt_messages(body)),
        RouteType::Responses => Some(openai::responses_prompt(body)),
        RouteType::Embeddings => body.get("input").cloned(),
        RouteType::GenerateContent => Some(gemini::prompt_messages(body)),
        _ => body.get("messages").cloned(),
    }
}

/// Error body in the client's API shape.
pub fn error_body(wire: provider::Wire, status: http::StatusCode, message: &str) -> Value {
    match wire {
        provider::Wire::Anthropic => serde_json::json!({
            "type": "error",
            "error": {"type": anthropic::error_type(status), "message": message},
        }),
        _ => serde_json::json!({
            "error": {
                "message": message,
                "type": openai::error_type(status),
                "param": null,
                "code": null,
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_route_types() {
        let cases = [
            ("/v1/chat/completions", RouteType::Completions),
            ("/openai/v1/chat/completions/", RouteType::Completions),
            ("/v1/messages", RouteType::Messages),
            (
                "/anthropic/v1/messages/count_tokens",
                RouteType::CountTokens,
            ),
            ("/v1/responses", RouteType::Responses),
            ("/v1/embeddings", RouteType::Embeddings),
            ("/v1/models", RouteType::Models),
            (
                "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
                RouteType::GenerateContent,
            ),
            ("/gemini", RouteType::Completions),
        ];
        for (path, want) in cases {
            assert_eq!(RouteType::detect(path), want, "{path}");
        }
    }

    #[test]
    fn observe_request_params_and_prompt() {
        let body = serde_json::json!({
            "model": "gpt-4o", "stream": true, "temperature": 0.2, "max_completion_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}]
        });
        let mut info = LlmInfo::default();
        observe_request(RouteType::Completions, &body, &mut info, true);
        assert_eq!(info.request_model.as_deref(), Some("gpt-4o"));
        assert!(info.streaming);
        assert_eq!(info.params["temperature"], 0.2);
        assert_eq!(info.params["max_tokens"], 10);
        assert_eq!(info.prompt.as_ref().expect("prompt")[0]["content"], "hi");
        let mut info = LlmInfo::default();
        observe_request(RouteType::Completions, &body, &mut info, false);
        assert!(info.prompt.is_none());
    }
}
