//! The compiled, immutable runtime config. The proxy holds one `Arc<Snapshot>` per request; a
//! reload builds a new one and swaps it in atomically.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use regex::Regex;

use super::raw::{RawCors, RawHeaderModifier, RawRoot};
use super::{Secret, Source};
use crate::llm::provider::Provider;
use crate::mcp::McpBackend;

/// Everything the proxy needs, compiled.
pub struct Snapshot {
    pub global: Global,
    pub binds: Vec<Bind>,
    /// The parsed file, for start-up-only settings (tracing, logging, eBPF) and `/config_dump`.
    pub raw: Arc<RawRoot>,
    pub source: Source,
    /// The file text as loaded (after no expansion), for `/config_dump` with secrets redacted.
    pub text: String,
    /// `config.logging` with `frontendPolicies.accessLog` merged over it.
    pub logging: Option<crate::config::telemetry::RawLogging>,
    /// Endpoints of remote guards (webhooks, moderation), keyed by `guard_key`.
    pub guard_upstreams: std::collections::HashMap<String, Upstream>,
}

/// The key of a remote guard's endpoint in `Snapshot::guard_upstreams`.
pub fn guard_key(authority: &str, tls: bool) -> String {
    format!("{}://{authority}", if tls { "https" } else { "http" })
}

/// Process-wide settings.
#[derive(Clone, Debug)]
pub struct Global {
    pub gateway_name: String,
    pub admin_addr: Option<SocketAddr>,
    pub stats_addr: Option<SocketAddr>,
    pub readiness_addr: Option<SocketAddr>,
    pub drain_deadline: Duration,
    pub min_drain: Duration,
    pub worker_threads: Option<usize>,
    pub limits: Limits,
    /// Lower-cased header names never logged nor exported.
    pub sensitive_headers: Vec<String>,
    /// `config.ui.recentRequests`: requests the viewer keeps (0: none).
    pub ui_recent_requests: usize,
    /// `config.modelCatalog`, compiled (files are read again by `spend::Prices`).
    pub model_catalog: Option<crate::spend::CatalogConfig>,
    /// `config.metrics`: removed families and CEL labels (applied at start-up).
    pub metrics: Option<Arc<crate::metrics::MetricsConfig>>,
    /// `config.redis`: where shared limits and budgets live.
    pub redis: Option<crate::store::RedisConfig>,
}

/// Request limits; see `raw::RawLimits` for units and defaults.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_request_body: usize,
    pub max_response_body: usize,
    pub header_read_timeout: Duration,
    pub stream_idle_timeout: Duration,
    pub max_connections: usize,
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_body: 16 << 20,
            max_response_body: 64 << 20,
            header_read_timeout: Duration::from_secs(10),
            stream_idle_timeout: Duration::from_secs(300),
            max_connections: 10_000,
            max_headers: 100,
        }
    }
}

/// One listening port.
pub struct Bind {
    pub port: u16,
    pub address: std::net::IpAddr,
    pub listeners: Vec<Listener>,
    /// Name for logs and metrics: `bind/PORT`.
    pub name: String,
}

pub struct Listener {
    pub name: String,
    /// `None` serves any host.
    pub hostname: Option<HostMatch>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub routes: Vec<Arc<Route>>,
}

/// Exact or `*.suffix` host match.
#[derive(Clone, Debug)]
pub enum HostMatch {
    Exact(String),
    Suffix(String),
}

impl HostMatch {
    pub fn parse(s: &str) -> HostMatch {
        match s.strip_prefix("*.") {
            Some(suffix) => HostMatch::Suffix(format!(".{}", suffix.to_ascii_lowercase())),
            None => HostMatch::Exact(s.to_ascii_lowercase()),
        }
    }
    pub fn matches(&self, host: &str) -> bool {
        let host = host.split(':').next().unwrap_or(host);
        match self {
            HostMatch::Exact(h) => host.eq_ignore_ascii_case(h),
            HostMatch::Suffix(s) => {
                host.len() > s.len() && host.to_ascii_lowercase().ends_with(s.as_str())
            }
        }
    }
}

pub struct Route {
    /// `namespace/name` or `name`, as in access logs.
    pub name: String,
    pub hostnames: Vec<HostMatch>,
    pub matches: Vec<Match>,
    pub backends: Vec<Backend>,
    pub policies: Policies,
}

#[derive(Debug)]
pub struct Match {
    pub path: PathMatch,
    pub method: Option<http::Method>,
    pub headers: Vec<(HeaderName, ValueMatch)>,
    pub query: Vec<(String, ValueMatch)>,
}

#[derive(Debug)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug)]
pub enum ValueMatch {
    Exact(String),
    Regex(Regex),
}

impl ValueMatch {
    pub fn matches(&self, v: &str) -> bool {
        match self {
            ValueMatch::Exact(e) => e == v,
            ValueMatch::Regex(r) => r.is_match(v),
        }
    }
}

impl PathMatch {
    /// Gateway API semantics: a prefix matches whole path segments (`/foo` matches `/foo/bar`,
    /// not `/foobar`).
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => {
                let p = p.trim_end_matches('/');
                p.is_empty()
                    || (path.starts_with(p)
                        && (path.len() == p.len() || path.as_bytes()[p.len()] == b'/'))
            }
            PathMatch::Regex(r) => r.is_match(path),
        }
    }

    /// Longer, more specific matches win, as in Gateway API.
    pub fn specificity(&self) -> (u8, usize) {
        match self {
            PathMatch::Exact(p) => (3, p.len()),
            PathMatch::Regex(r) => (2, r.as_str().len()),
            PathMatch::Prefix(p) => (1, p.len()),
        }
    }
}

/// Route-level policies merged with backend-level ones at compile time.
#[derive(Clone, Default)]
pub struct Policies {
    pub backend_auth: Option<BackendAuth>,
    pub request_timeout: Option<Duration>,
    pub backend_request_timeout: Option<Duration>,
    pub request_headers: Option<RawHeaderModifier>,
    pub response_headers: Option<RawHeaderModifier>,
    pub cors: Option<Arc<RawCors>>,
    pub ai: Option<Arc<AiPolicy>>,
    pub path_rewrite: Option<PathRewrite>,
    /// `authorization`: CEL allow/deny/require rules.
    pub authorization: Option<Arc<crate::auth::authz::Rules>>,
    /// `apiKey`: the keys callers authenticate with.
    pub api_key: Option<Arc<crate::auth::ApiKeys>>,
    /// `jwtAuth`: trusted token issuers.
    pub jwt_auth: Option<Arc<crate::auth::jwt::JwtAuth>>,
    /// `basicAuth`: htpasswd users.
    pub basic_auth: Option<Arc<crate::auth::basic::BasicAuth>>,
    /// `localRateLimit` buckets, shared by every request of the policy.
    pub local_rate_limit: Option<Arc<crate::limit::LocalLimits>>,
    /// `globalRateLimit`: buckets in Redis, shared by every gateway.
    pub global_rate_limit: Option<Arc<crate::limit::global::GlobalLimits>>,
    /// `budgets`: spend limits per window.
    pub budgets: Option<Arc<crate::spend::budget::Budgets>>,
    /// `retry` (see `llm::route`).
    pub retry: Option<Arc<crate::llm::route::RetryPolicy>>,
}

#[derive(Clone, Debug)]
pub enum PathRewrite {
    Full(String),
    Prefix(String),
}

#[derive(Clone, Debug)]
pub enum BackendAuth {
    /// Send this key in the provider's auth header; drop the client's own credentials.
    Key(Secret),
    /// Forward the client's credential unchanged.
    Passthrough,
    /// Sign with AWS SigV4, or send a Google access token (`ai` backends only).
    Cloud(crate::cloud::CloudAuth),
}

/// `policies.ai`, compiled.
#[derive(Clone, Debug, Default)]
pub struct AiPolicy {
    pub defaults: serde_json::Map<String, serde_json::Value>,
    pub overrides: serde_json::Map<String, serde_json::Value>,
    pub model_aliases: Vec<(String, String)>,
    pub routes: Vec<(String, crate::llm::RouteType)>,
    pub prompt_guard: Option<Arc<crate::guard::PromptGuard>>,
}

/// The `llm:` shorthand's models and the virtual models routing to them.
#[derive(Default)]
pub struct ModelTable {
    pub entries: Vec<ModelEntry>,
    pub virtual_models: Vec<crate::llm::route::VirtualModel>,
}

impl ModelTable {
    /// The entry a client's (or a virtual model target's) model name selects.
    pub fn resolve(&self, model: &str) -> Option<usize> {
        self.entries.iter().position(|m| m.matches(model))
    }
}

pub struct Backend {
    pub weight: u32,
    pub kind: BackendKind,
    /// Backend-level policies override the route's.
    pub policies: Policies,
}

pub enum BackendKind {
    /// Plain HTTP reverse proxy.
    Host(Upstream),
    /// One LLM provider.
    Ai(Arc<AiBackend>),
    /// The `llm:` shorthand: the model in the request picks the provider.
    Models(Arc<ModelTable>),
    Mcp(Arc<McpBackend>),
}

/// Where and how to connect upstream.
#[derive(Clone)]
pub struct Upstream {
    /// `host:port` for the connection and the `Host` header.
    pub authority: String,
    pub host: String,
    pub port: u16,
    /// `None` for plain HTTP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Name used for SNI and certificate verification.
    pub server_name: String,
}

impl Upstream {
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

/// An LLM provider backend.
pub struct AiBackend {
    pub name: String,
    pub provider: Provider,
    pub upstream: Upstream,
    /// Model sent upstream regardless of the client's.
    pub model_override: Option<String>,
    pub path_override: Option<String>,
    pub path_prefix: Option<String>,
    /// Key from `llm.models[].params.apiKey` (route `backendAuth` takes precedence).
    pub api_key: Option<Secret>,
    /// Bedrock's SigV4 signing and Vertex AI's access tokens from the ambient sources, when
    /// no key is configured (route `backendAuth` takes precedence).
    pub cloud: Option<crate::cloud::CloudAuth>,
    pub defaults: serde_json::Map<String, serde_json::Value>,
    pub overrides: serde_json::Map<String, serde_json::Value>,
    /// `stripPrefix` transformation of the `llm:` shorthand.
    pub strip_model_prefix: Option<String>,
    /// `llm:` shorthand guards (the model's, or `llm.policies.guardrails`). Route
    /// `policies.ai.promptGuard` takes precedence.
    pub prompt_guard: Option<Arc<crate::guard::PromptGuard>>,
    /// `health` (the `llm:` model's; the default policy elsewhere) and the state it judges.
    pub health_policy: Arc<crate::llm::route::health::HealthPolicy>,
    pub health: crate::llm::route::health::Health,
}

/// `llm.models[]` entry.
pub struct ModelEntry {
    /// Glob on the requested model (`*` matches any run of characters).
    pub pattern: String,
    pub backend: Arc<AiBackend>,
    /// `visibility: internal`: only through a virtual model.
    pub internal: bool,
}

impl ModelEntry {
    pub fn matches(&self, model: &str) -> bool {
        glob_match(&self.pattern, model)
    }
}

/// `*` matches any run of characters (including `/`); everything else literally.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let mut rest = s;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(idx) => rest = &rest[idx + part.len()..],
                None => return false,
            }
        }
    }
    true
}
