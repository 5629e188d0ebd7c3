//! LLM provider simulator: OpenAI (chat, embeddings, models, responses), Azure OpenAI,
//! Anthropic messages, Gemini generateContent, AWS Bedrock Converse (SigV4-verified, with a
//! simulated STS) and Vertex AI (Gemini and Claude, with a simulated token endpoint), with deterministic replies, fault
//! injection and request introspection. Runs as the `provider-sim` binary or in-process
//! through [`Simulator`].
//!
//! Module map: `server` accepts connections, records requests and routes by path suffix;
//! `openai`, `responses`, `anthropic` and `gemini` parse their provider's request into a
//! [`model::Conversation`] and render the [`model::Completion`] in the provider's shape;
//! `fault` and `stream` decide and perform what goes wrong; `text` holds the deterministic
//! building blocks.

pub mod anthropic;
pub mod bedrock;
pub mod cloud;
pub mod fault;
pub mod gemini;
pub mod model;
pub mod openai;
pub mod record;
pub mod responses;
pub mod server;
pub mod stream;
pub mod text;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::Value as Json;

pub use record::RecordedRequest;
pub use server::{SimError, Simulator};
use stream::EventStream;

/// Which provider's wire conventions (error shape, auth headers) an endpoint follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAI and Azure OpenAI.
    OpenAi,
    Anthropic,
    /// Gemini (Google AI Studio and Vertex AI).
    Google,
    /// AWS (Bedrock): `{"message": ...}` bodies, the type in `x-amzn-errortype`.
    Aws,
}

/// Simulator settings.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Address to bind; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Reject requests without the provider's credential header with 401, like the real
    /// providers. Tests that call the simulator directly without a key turn this off.
    pub require_auth: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            require_auth: true,
        }
    }
}

/// A request as the provider handlers see it.
#[derive(Clone, Debug)]
pub struct SimRequest {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl SimRequest {
    /// A POST with a JSON body, for tests and in-process use.
    pub fn post_json(path: &str, body: &Json) -> Self {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (path.to_string(), None),
        };
        SimRequest {
            method: Method::POST,
            path,
            query,
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_string()),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A query parameter's raw value.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then_some(v)
        })
    }

    /// The body as a JSON object, or the provider's 400 error.
    pub fn json_object(&self, dialect: Dialect) -> Result<Json, Reply> {
        let parsed: Json = serde_json::from_slice(&self.body).map_err(|e| {
            Reply::error(
                dialect,
                StatusCode::BAD_REQUEST,
                &format!("We could not parse the JSON body of your request: {e}"),
            )
        })?;
        if !parsed.is_object() {
            return Err(Reply::error(
                dialect,
                StatusCode::BAD_REQUEST,
                "The request body must be a JSON object.",
            ));
        }
        Ok(parsed)
    }
}

/// What a handler answers.
#[derive(Clone, Debug)]
pub enum Reply {
    Json {
        status: StatusCode,
        headers: Vec<(HeaderName, HeaderValue)>,
        body: Json,
    },
    Stream(EventStream),
}

impl Reply {
    pub fn ok(body: Json) -> Self {
        Reply::Json {
            status: StatusCode::OK,
            headers: Vec::new(),
            body,
        }
    }

    /// The provider's error body with `status`.
    pub fn error(dialect: Dialect, status: StatusCode, message: &str) -> Self {
        let mut headers = Vec::new();
        if dialect == Dialect::Aws {
            Self::aws_type(&mut headers, bedrock::error_type(status));
        }
        Reply::Json {
            status,
            headers,
            body: fault::error_body(dialect, status, message),
        }
    }

    /// An AWS error of a given type (`InvalidSignatureException`, ...).
    pub fn aws_error(status: StatusCode, kind: &str, message: &str) -> Self {
        let mut headers = Vec::new();
        Self::aws_type(&mut headers, kind);
        Reply::Json {
            status,
            headers,
            body: serde_json::json!({"message": message}),
        }
    }

    fn aws_type(headers: &mut Vec<(HeaderName, HeaderValue)>, kind: &str) {
        let v = format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/");
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.push((HeaderName::from_static("x-amzn-errortype"), v));
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Reply::Json { status, .. } => *status,
            Reply::Stream(_) => StatusCode::OK,
        }
    }

    /// The JSON body, for tests.
    pub fn json(&self) -> Option<&Json> {
        match self {
            Reply::Json { body, .. } => Some(body),
            Reply::Stream(_) => None,
        }
    }

    /// The streamed bytes, for tests.
    pub fn stream_text(&self) -> Option<String> {
        match self {
            Reply::Stream(s) => Some(String::from_utf8_lossy(&s.concat()).into_owned()),
            Reply::Json { .. } => None,
        }
    }
}

/// Shared, cheaply clonable simulator state.
pub type Shared = Arc<server::State>;

#[cfg(test)]
mod golden;
#[cfg(test)]
mod tests;
