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
    /// AWS Bedrock's Converse API (`/model/{id}/converse`): OpenAI chat translated to and from
    /// Converse at the edge (`llm::translate::chat_bedrock`), so past it the provider reads as
    /// OpenAI chat.
    Bedrock {
        region: String,
        /// `guardrailConfig`: identifier and version.
        guardrail: Option<(String, String)>,
    },
    /// Vertex AI: Gemini models (`publishers/google`, generateContent) and Anthropic models
    /// (`publishers/anthropic`, rawPredict).
    Vertex {
        project: String,
        region: String,
    },
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
            Provider::Bedrock { .. } => "aws.bedrock",
            Provider::Vertex { .. } => "gcp.vertex_ai",
        }
    }

    /// The format requests for `model` travel in (past Bedrock's edge translation).
    pub fn wire(&self, model: &str) -> Wire {
        match self {
            Provider::Anthropic => Wire::Anthropic,
            Provider::Gemini => Wire::Gemini,
            Provider::Vertex { .. } if vertex_anthropic(model).is_some() => Wire::Anthropic,
            Provider::Vertex { .. } => Wire::Gemini,
            _ => Wire::OpenAi,
        }
    }

    pub fn is_bedrock(&self) -> bool {
        matches!(self, Provider::Bedrock { .. })
    }

    /// Where Gemini's `models/{m}:{method}` paths are rooted.
    pub fn gemini_base(&self, prefix: Option<&str>) -> String {
        match self {
            Provider::Vertex { project, region } => format!(
                "{}/projects/{project}/locations/{region}/publishers/google",
                prefix.unwrap_or("/v1")
            ),
            _ => prefix.unwrap_or("/v1beta").to_owned(),
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
            Provider::Bedrock { region, .. } => {
                (format!("bedrock-runtime.{region}.amazonaws.com"), 443, true)
            }
            Provider::Vertex { region, .. } => (vertex_host(region), 443, true),
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
            Provider::Bedrock { .. } => {
                let op = if stream {
                    "converse-stream"
                } else {
                    "converse"
                };
                format!(
                    "{}/model/{}/{op}",
                    prefix.unwrap_or(""),
                    path_segment(model)
                )
            }
            Provider::Vertex { project, region } if vertex_anthropic(model).is_some() => {
                let base = format!(
                    "{}/projects/{project}/locations/{region}/publishers/anthropic/models",
                    prefix.unwrap_or("/v1")
                );
                match route {
                    RouteType::CountTokens => format!("{base}/count-tokens:rawPredict"),
                    _ => {
                        let m = path_segment(vertex_anthropic(model).unwrap_or(model));
                        let method = if stream {
                            "streamRawPredict"
                        } else {
                            "rawPredict"
                        };
                        format!("{base}/{m}:{method}")
                    }
                }
            }
            Provider::Gemini | Provider::Vertex { .. } => {
                let base = self.gemini_base(prefix);
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

/// Vertex AI's host for `region`: `global` is the global endpoint, `us` and `eu` the
/// multi-region ones, anything else a regional location.
pub fn vertex_host(region: &str) -> String {
    match region {
        "global" => "aiplatform.googleapis.com".into(),
        "us" | "eu" => format!("aiplatform.{region}.rep.googleapis.com"),
        r => format!("{r}-aiplatform.googleapis.com"),
    }
}

/// The Claude model id of a Vertex request (`claude-…@date`, also written with its publisher
/// path), or `None` for Google's own models.
pub fn vertex_anthropic(model: &str) -> Option<&str> {
    let m = model
        .rsplit_once("publishers/anthropic/models/")
        .map(|(_, m)| m)
        .or_else(|| model.strip_prefix("anthropic/"))
        .unwrap_or(model);
    m.starts_with("claude").then_some(m)
}

/// `s` as one path segment: everything but unreserved characters percent-encoded (Bedrock
/// model ids carry `:`, inference profile ARNs `/`).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
        let bedrock = Provider::Bedrock {
            region: "us-east-1".into(),
            guardrail: None,
        };
        assert_eq!(
            bedrock.path(
                RouteType::Completions,
                "anthropic.claude-3-haiku-v1:0",
                true,
                None
            ),
            "/model/anthropic.claude-3-haiku-v1%3A0/converse-stream"
        );
        assert_eq!(
            bedrock.default_endpoint().0,
            "bedrock-runtime.us-east-1.amazonaws.com"
        );
        let vertex = Provider::Vertex {
            project: "p".into(),
            region: "us-east5".into(),
        };
        assert_eq!(
            vertex.path(RouteType::Messages, "claude-sonnet-4@20250514", true, None),
            "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4@20250514:streamRawPredict"
        );
        assert_eq!(
            vertex.path(RouteType::Completions, "gemini-2.5-flash", false, None),
            "/v1/projects/p/locations/us-east5/publishers/google/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(vertex.wire("claude-3-haiku@20240307"), Wire::Anthropic);
        assert_eq!(vertex.wire("gemini-2.5-flash"), Wire::Gemini);
        assert_eq!(
            vertex.default_endpoint().0,
            "us-east5-aiplatform.googleapis.com"
        );
        assert_eq!(vertex_host("global"), "aiplatform.googleapis.com");
        assert_eq!(vertex_host("eu"), "aiplatform.eu.rep.googleapis.com");
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
