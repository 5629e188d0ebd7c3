//! LLM providers: default endpoints, native wire format, upstream paths and auth headers.

use http::{HeaderName, HeaderValue};

use super::RouteType;

/// The wire format a provider speaks natively.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI Chat Completions (and Responses, Embeddings, Models).
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// Gemini generateContent.
    Gemini,
}

/// An OpenAI-compatible service with a known default endpoint.
#[derive(Debug)]
pub struct Preset {
    pub name: &'static str,
    pub host: &'static str,
    pub port: u16,
    pub tls: bool,
    /// Prefix before `/chat/completions` etc.
    pub base_path: &'static str,
}

/// OpenAI-compatible presets (agentgateway's `ProviderPreset` names).
pub static PRESETS: &[Preset] = &[
    preset("xai", "api.x.ai", "/v1"),
    Preset {
        name: "ollama",
        host: "localhost",
        port: 11434,
        tls: false,
        base_path: "/v1",
    },
    preset("groq", "api.groq.com", "/openai/v1"),
    preset("mistral", "api.mistral.ai", "/v1"),
    preset("deepseek", "api.deepseek.com", "/v1"),
    preset("openrouter", "openrouter.ai", "/api/v1"),
    preset("togetherai", "api.together.xyz", "/v1"),
    preset("fireworks", "api.fireworks.ai", "/inference/v1"),
    preset("cerebras", "api.cerebras.ai", "/v1"),
    preset("deepinfra", "api.deepinfra.com", "/v1/openai"),
    preset("huggingface", "router.huggingface.co", "/v1"),
    preset("cohere", "api.cohere.ai", "/compatibility/v1"),
    preset("baseten", "inference.baseten.co", "/v1"),
];

const fn preset(name: &'static str, host: &'static str, base_path: &'static str) -> Preset {
    Preset {
        name,
        host,
        port: 443,
        tls: true,
        base_path,
    }
}

pub fn find_preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

#[derive(Clone, Debug)]
pub enum Provider {
    OpenAi,
    Anthropic,
    Gemini,
    Azure {
        resource: Option<String>,
        api_version: String,
        /// Foundry project: paths become `/api/projects/{p}/openai/v1/...`.
        project: Option<String>,
        foundry: bool,
    },
    Compatible(&'static Preset),
}

/// Default Azure OpenAI data-plane API version.
pub const AZURE_API_VERSION: &str = "2024-10-21";

impl Provider {
    /// `llm.provider` / `gen_ai.provider.name` value.
    pub fn name(&self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Gemini => "gemini",
            Provider::Azure { .. } => "azure.openai",
            Provider::Compatible(p) => p.name,
        }
    }

    pub fn wire(&self) -> Wire {
        match self {
            Provider::Anthropic => Wire::Anthropic,
            Provider::Gemini => Wire::Gemini,
            _ => Wire::OpenAi,
        }
    }

    /// (host, port, tls) when no `hostOverride` is set.
    pub fn default_endpoint(&self) -> (String, u16, bool) {
        match self {
            Provider::OpenAi => ("api.openai.com".into(), 443, true),
            Provider::Anthropic => ("api.anthropic.com".into(), 443, true),
            Provider::Gemini => ("generativelanguage.googleapis.com".into(), 443, true),
            Provider::Azure {
                resource, foundry, ..
            } => {
                let r = resource.as_deref().unwrap_or("azure");
                if *foundry {
                    (format!("{r}.services.ai.azure.com"), 443, true)
                } else {
                    (format!("{r}.openai.azure.com"), 443, true)
                }
            }
            Provider::Compatible(p) => (p.host.into(), p.port, p.tls),
        }
    }

    /// Upstream path (with query) for a request of `route` type.
    pub fn path(
        &self,
        route: RouteType,
        model: &str,
        stream: bool,
        prefix: Option<&str>,
    ) -> String {
        let op = match route {
            RouteType::Completions => "/chat/completions",
            RouteType::Messages => "/messages",
            RouteType::Responses => "/responses",
            RouteType::Embeddings => "/embeddings",
            RouteType::Models => "/models",
            RouteType::CountTokens => "/messages/count_tokens",
            RouteType::Passthrough | RouteType::GenerateContent => "",
        };
        match self {
            Provider::OpenAi => format!("{}{op}", prefix.unwrap_or("/v1")),
            Provider::Anthropic => format!("{}{op}", prefix.unwrap_or("/v1")),
            Provider::Compatible(p) => format!("{}{op}", prefix.unwrap_or(p.base_path)),
            Provider::Gemini => {
                let base = prefix.unwrap_or("/v1beta");
                let model = model.strip_prefix("models/").unwrap_or(model);
                match route {
                    RouteType::Models => format!("{base}/models"),
                    RouteType::Embeddings => format!("{base}/models/{model}:batchEmbedContents"),
                    _ if stream => format!("{base}/models/{model}:streamGenerateContent?alt=sse"),
                    _ => format!("{base}/models/{model}:generateContent"),
                }
            }
            Provider::Azure {
                api_version,
                project,
                foundry,
                ..
            } => {
                if let Some(p) = project.as_ref().filter(|_| *foundry) {
                    format!("/api/projects/{p}/openai/v1{op}?api-version={api_version}")
                } else if let Some(prefix) = prefix {
                    format!("{prefix}{op}?api-version={api_version}")
                } else if route == RouteType::Models {
                    format!("/openai/models?api-version={api_version}")
                } else {
                    format!("/openai/deployments/{model}{op}?api-version={api_version}")
                }
            }
        }
    }

    /// The header carrying the API key.
    pub fn auth_header(&self, key: &str) -> Option<(HeaderName, HeaderValue)> {
        let (name, value) = match self {
            Provider::Anthropic => (HeaderName::from_static("x-api-key"), key.to_owned()),
            Provider::Gemini => (HeaderName::from_static("x-goog-api-key"), key.to_owned()),
            Provider::Azure { .. } => (HeaderName::from_static("api-key"), key.to_owned()),
            _ => (http::header::AUTHORIZATION, format!("Bearer {key}")),
        };
        let mut value = HeaderValue::from_str(&value).ok()?;
        value.set_sensitive(true);
        Some((name, value))
    }
}

/// Headers that carry a client's provider credential, for every provider.
pub const CREDENTIAL_HEADERS: &[&str] =
    &["authorization", "x-api-key", "api-key", "x-goog-api-key"];

/// The credential a client sent, whatever provider header it used.
pub fn client_credential(headers: &http::HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v);
        return Some(token.trim().to_owned());
    }
    ["x-api-key", "api-key", "x-goog-api-key"]
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .map(|s| s.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_per_provider() {
        assert_eq!(
            Provider::OpenAi.path(RouteType::Completions, "gpt", false, None),
            "/v1/chat/completions"
        );
        assert_eq!(
            Provider::Anthropic.path(RouteType::Messages, "c", true, None),
            "/v1/messages"
        );
        assert_eq!(
            Provider::Gemini.path(RouteType::Completions, "gemini-2.0-flash", true, None),
            "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
        );
        let azure = Provider::Azure {
            resource: Some("r".into()),
            api_version: "2024-10-21".into(),
            project: None,
            foundry: false,
        };
        assert_eq!(
            azure.path(RouteType::Completions, "dep", false, None),
            "/openai/deployments/dep/chat/completions?api-version=2024-10-21"
        );
        let groq = Provider::Compatible(find_preset("groq").expect("preset"));
        assert_eq!(
            groq.path(RouteType::Completions, "m", false, None),
            "/openai/v1/chat/completions"
        );
    }

    #[test]
    fn auth_headers() {
        let (n, v) = Provider::Anthropic.auth_header("k").expect("header");
        assert_eq!(n, "x-api-key");
        assert_eq!(v, "k");
        let (n, v) = Provider::OpenAi.auth_header("k").expect("header");
        assert_eq!(n, "authorization");
        assert_eq!(v, "Bearer k");
    }
}
