//! Raw (serde) types for agentgateway's standalone config format, as far as this gateway
//! implements it. Names follow agentgateway's `schema/config.json`; every struct rejects unknown
//! fields so a typo is an error that names its YAML path instead of a silently ignored setting.
//!
//! "Exactly one of" choices (backends, path matches, providers) are structs of optional fields
//! checked in `compile`, because serde's untagged enums only say "did not match any variant".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ebpf::RawEbpf;
use super::telemetry::{RawFrontendTracing, RawLogging, RawTracing};
use crate::mcp::config::{RawMcpAuthorization, RawMcpBackend};

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawRoot {
    /// Process-wide settings, applied at start-up.
    #[serde(default)]
    pub config: Option<RawGlobal>,
    /// Ports the gateway listens on and everything routed through them.
    #[serde(default)]
    pub binds: Vec<RawBind>,
    /// Policies applied to all incoming traffic.
    #[serde(default)]
    pub frontend_policies: Option<RawFrontendPolicies>,
    /// The `llm:` shorthand: models served under the standard OpenAI/Anthropic paths.
    #[serde(default)]
    pub llm: Option<RawLlm>,
    /// The `mcp:` shorthand: MCP targets served as one virtual server at `/mcp` and `/sse`.
    #[serde(default)]
    pub mcp: Option<RawSimpleMcp>,
}

/// `config:`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawGlobal {
    /// Admin server (`/config_dump`, `/logging`, readiness detail). `ip:port`, `localhost:port`
    /// or `off`. Default `localhost:15000`.
    pub admin_addr: Option<String>,
    /// Prometheus `/metrics`. Default `0.0.0.0:15020`.
    pub stats_addr: Option<String>,
    /// `/healthz/ready`. Default `0.0.0.0:15021`.
    pub readiness_addr: Option<String>,
    pub logging: Option<RawLogging>,
    pub tracing: Option<RawTracing>,
    /// Metric customisation (accepted for compatibility; `remove` drops families).
    pub metrics: Option<yaml_serde::Value>,
    /// Kernel side: steering and flow timing.
    pub ebpf: Option<RawEbpf>,
    /// How long in-flight requests may drain on shutdown, e.g. `30s`. Default `30s`.
    pub connection_termination_deadline: Option<String>,
    /// Minimum time listeners keep accepting after SIGTERM (lets endpoints deregister). Default `0s`.
    pub connection_min_termination_deadline: Option<String>,
    /// Gateway name used in logs and spans (`gateway=` field). Default: the host name.
    pub gateway: Option<String>,
    /// Namespace prefix for the gateway name, as in `namespace/gateway`.
    pub namespace: Option<String>,
    /// Tokio worker threads. Default: number of CPUs.
    pub worker_threads: Option<usize>,
    /// Accepted for compatibility; IPv6 is always enabled.
    pub enable_ipv6: Option<bool>,
    /// Extra header names treated as secrets (never logged, never in spans).
    #[serde(default)]
    pub sensitive_headers: Vec<String>,
    /// Request limits (this gateway's extension; see `RawLimits`).
    pub limits: Option<RawLimits>,
    /// Model prices (agentgateway's `ModelCatalogSource` list): `{file}`, `{inline: "<json>"}`
    /// or `{inline: {providers: ...}}`; later entries win.
    pub model_catalog: Option<Vec<yaml_serde::Value>>,
    /// The shared store for `globalRateLimit` and `budgets` (this gateway's extension; see
    /// `store`).
    pub redis: Option<yaml_serde::Value>,
    /// The built-in viewer at `adminAddr`'s `/ui` (this gateway's extension; see `RawUi`).
    pub ui: Option<RawUi>,
}

/// `config.ui`: the built-in request viewer served on the admin port (`/ui`, `/api/...`).
/// Applied at start-up.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawUi {
    /// How many recent finished requests the viewer keeps in memory (a ring: the oldest goes
    /// first). Each costs about 3 KiB (more when the config records prompts and
    /// completions: their text is kept too). `0` keeps none and adds no work per request.
    /// Default 1000, at most 100000.
    pub recent_requests: Option<usize>,
}

/// `config.limits`: protection against abusive or broken clients.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawLimits {
    /// Largest request body the gateway buffers for LLM/MCP parsing, bytes. Default 16 MiB.
    pub max_request_body_bytes: Option<usize>,
    /// Largest non-streamed LLM response buffered for translation/usage, bytes. Default 64 MiB.
    pub max_response_body_bytes: Option<usize>,
    /// Time allowed to receive request headers, e.g. `10s`. Default `10s`.
    pub header_read_timeout: Option<String>,
    /// A streamed LLM response with no event, or a plain upstream response body with no data,
    /// for this long is ended with an error, e.g. `5m`. Default `5m`. (MCP streams are exempt.)
    pub stream_idle_timeout: Option<String>,
    /// Maximum concurrent connections per bind. Default 10000. A reload applies a new value
    /// to the next connections; open ones are never cut.
    pub max_connections: Option<usize>,
    /// Maximum number of request headers. Default 100.
    pub max_headers: Option<usize>,
}

/// `frontendPolicies:`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawFrontendPolicies {
    pub http: Option<RawFrontendHttp>,
    pub tracing: Option<RawFrontendTracing>,
    /// Access-log policy: `filter`, `add`, `remove`; merged over `config.logging`.
    pub access_log: Option<RawAccessLog>,
    /// Alias of `accessLog`.
    pub logging: Option<RawAccessLog>,
}

/// `frontendPolicies.accessLog` (agentgateway's `LoggingPolicy`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawAccessLog {
    /// CEL keep-filter: only requests where it is `true` are logged.
    pub filter: Option<String>,
    /// Field name → CEL expression, in order.
    #[serde(default)]
    pub add: super::telemetry::OrderedExprMap,
    /// Default field names to drop.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Access-log records over OTLP as well (see `telemetry::logs`).
    pub otlp: Option<super::telemetry::RawOtlpLogging>,
}

/// `frontendPolicies.http`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawFrontendHttp {
    /// Largest request body buffered, bytes (agentgateway's name for `limits.maxRequestBodyBytes`).
    pub max_buffer_size: Option<usize>,
    pub http1_max_headers: Option<usize>,
    pub http1_idle_timeout: Option<String>,
    pub http2_window_size: Option<u32>,
    pub http2_connection_window_size: Option<u32>,
    pub http2_frame_size: Option<u32>,
    pub http2_keepalive_interval: Option<String>,
    pub http2_keepalive_timeout: Option<String>,
    pub http2_max_header_size: Option<u32>,
    pub http1_header_case: Option<yaml_serde::Value>,
    pub max_connection_duration: Option<String>,
}

/// `binds[]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawBind {
    pub port: u16,
    /// Address to bind; default `0.0.0.0` (and `[::]` when available). This gateway's extension.
    pub address: Option<String>,
    #[serde(default)]
    pub listeners: Vec<RawListener>,
}

/// `binds[].listeners[]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawListener {
    pub name: Option<String>,
    pub namespace: Option<String>,
    /// Host the listener serves; `*.example.com` wildcards allowed. Default: any.
    pub hostname: Option<String>,
    /// `HTTP` (default) or `HTTPS` (needs `tls`).
    pub protocol: Option<String>,
    pub tls: Option<RawListenerTls>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

/// `listeners[].tls`: server certificate.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawListenerTls {
    pub cert: String,
    pub key: String,
}

/// `routes[]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub rule_name: Option<String>,
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Default: one match on path prefix `/`.
    pub matches: Option<Vec<RawMatch>>,
    pub policies: Option<RawPolicies>,
    #[serde(default)]
    pub backends: Vec<RawBackend>,
}

/// `routes[].matches[]`: all given conditions must hold.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawMatch {
    #[serde(default)]
    pub headers: Vec<RawHeaderMatch>,
    pub path: Option<RawPathMatch>,
    pub method: Option<String>,
    #[serde(default)]
    pub query: Vec<RawHeaderMatch>,
}

/// Exactly one of `exact`, `pathPrefix`, `regex`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawPathMatch {
    pub exact: Option<String>,
    pub path_prefix: Option<String>,
    pub regex: Option<String>,
}

/// A header or query-parameter match.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawHeaderMatch {
    pub name: String,
    pub value: RawValueMatch,
}

/// Exactly one of `exact`, `regex`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawValueMatch {
    pub exact: Option<String>,
    pub regex: Option<String>,
}

/// `routes[].backends[]`: exactly one of `host`, `ai`, `mcp`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawBackend {
    /// Relative weight between backends of a route. Default 1.
    pub weight: Option<u32>,
    pub policies: Option<RawPolicies>,
    /// A plain HTTP upstream: `host:port` (or an `http(s)://host:port` URL).
    pub host: Option<String>,
    pub ai: Option<RawAiBackend>,
    pub mcp: Option<RawMcpBackend>,
}

/// `backends[].ai`: one LLM provider (agentgateway's `LocalNamedAIProvider`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawAiBackend {
    pub name: Option<String>,
    pub provider: Option<RawAiProvider>,
    /// Upstream `host:port` instead of the provider's default host.
    pub host_override: Option<String>,
    /// Upstream path instead of the one derived from the request type.
    pub path_override: Option<String>,
    /// Base path prefix instead of the provider's default (e.g. `/v1`).
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub tokenize: bool,
    pub policies: Option<RawPolicies>,
}

/// `ai.provider`: exactly one key. Besides agentgateway's providers, OpenAI-compatible presets
/// (`xai`, `ollama`, `groq`, ...) are accepted as keys here too; any other key is rejected in
/// `compile` (serde cannot combine `flatten` with `deny_unknown_fields`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RawAiProvider {
    #[serde(rename = "openAI", alias = "openai")]
    pub open_ai: Option<RawModelOnly>,
    pub anthropic: Option<RawModelOnly>,
    pub gemini: Option<RawModelOnly>,
    pub azure: Option<RawAzure>,
    #[serde(rename = "azureOpenAI")]
    pub azure_open_ai: Option<RawAzure>,
    pub bedrock: Option<RawBedrock>,
    pub vertex: Option<RawVertex>,
    #[serde(flatten)]
    pub presets: BTreeMap<String, Option<RawModelOnly>>,
}

/// `{model?}` of a provider.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawModelOnly {
    /// Model sent upstream, overriding the client's.
    pub model: Option<String>,
}

/// `provider.bedrock` (agentgateway's `BedrockProvider`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawBedrock {
    pub model: Option<String>,
    pub region: String,
    pub guardrail_identifier: Option<String>,
    pub guardrail_version: Option<String>,
}

/// `provider.vertex` (agentgateway's `VertexProvider`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawVertex {
    pub model: Option<String>,
    /// Default `global`.
    pub region: Option<String>,
    pub project_id: String,
}

/// `provider.azure` / `provider.azureOpenAI`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawAzure {
    pub model: Option<String>,
    /// `{resourceName}.openai.azure.com`.
    pub resource_name: Option<String>,
    /// `openAI` (default) or `foundry` / `aiServices`.
    pub resource_type: Option<String>,
    /// `api-version` query parameter. Default `2024-10-21`.
    pub api_version: Option<String>,
    pub project_name: Option<String>,
    /// Legacy host form (`host: myres.openai.azure.com`).
    pub host: Option<String>,
}

/// Route / backend policies (agentgateway's `FilterOrPolicy`, the implemented subset).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawPolicies {
    pub backend_auth: Option<RawBackendAuth>,
    #[serde(rename = "backendTLS")]
    pub backend_tls: Option<RawBackendTls>,
    pub timeout: Option<RawTimeout>,
    pub request_header_modifier: Option<RawHeaderModifier>,
    pub response_header_modifier: Option<RawHeaderModifier>,
    pub mcp_authorization: Option<RawMcpAuthorization>,
    pub ai: Option<RawAiPolicy>,
    pub url_rewrite: Option<RawUrlRewrite>,
    /// Accepted for compatibility with agentgateway examples; CORS headers are added as given.
    pub cors: Option<RawCors>,
    /// agentgateway's `Authorization` rule set (see `auth::authz`).
    pub authorization: Option<yaml_serde::Value>,
    /// agentgateway's `LocalAPIKeys` (see `auth`).
    pub api_key: Option<yaml_serde::Value>,
    /// agentgateway's `LocalJwtConfig` (see `auth::jwt`).
    pub jwt_auth: Option<yaml_serde::Value>,
    /// agentgateway's `LocalBasicAuth` (see `auth::basic`).
    pub basic_auth: Option<yaml_serde::Value>,
    /// agentgateway's `RateLimitSpec[]` (see `limit`).
    pub local_rate_limit: Option<yaml_serde::Value>,
    /// Rate limits shared through `config.redis` (this gateway's extension; see
    /// `limit::global`).
    pub global_rate_limit: Option<yaml_serde::Value>,
    /// Spend limits per window (this gateway's extension; see `spend::budget`).
    pub budgets: Option<yaml_serde::Value>,
    /// agentgateway's `RetryPolicy` (see `llm::route`).
    pub retry: Option<crate::llm::route::config::RawRetry>,
    /// agentgateway's `LocalHealthPolicy`, for `ai` backends (see `llm::route::health`).
    pub health: Option<crate::llm::route::config::RawHealth>,
}

/// `backendAuth`: `{key: "secret"}`, `{key: {file: path}}`, `{key: {value, location}}`, or
/// `{passthrough: {}}` (forward the client's own credential).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawBackendAuth {
    pub key: Option<RawSecretRef>,
    pub passthrough: Option<yaml_serde::Value>,
    pub aws: Option<RawAwsAuth>,
    pub gcp: Option<RawGcpAuth>,
}

/// `backendAuth.aws` (agentgateway's `AwsAuth`): explicit keys, or `{}` for the standard AWS
/// credential sources.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawAwsAuth {
    pub access_key_id: Option<RawSecretRef>,
    pub secret_access_key: Option<RawSecretRef>,
    pub session_token: Option<RawSecretRef>,
    pub region: Option<String>,
    pub service_name: Option<String>,
    /// Not supported: a load error.
    pub assume_role: Option<yaml_serde::Value>,
}

/// `backendAuth.gcp` (agentgateway's `GcpAuth`): an access token from a service-account key
/// (`credential`) or the ambient sources.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawGcpAuth {
    /// `accessToken` (default); `idToken` is not supported (a load error).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub audience: Option<String>,
    pub credential: Option<RawSecretRef>,
}

/// A secret inline, from a file, or `{value, location}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum RawSecretRef {
    Inline(String),
    File {
        file: String,
    },
    Located {
        value: Box<RawSecretRef>,
        location: Option<yaml_serde::Value>,
    },
}

/// `backendTLS`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawBackendTls {
    /// Client certificate (PEM file) for mTLS.
    pub cert: Option<String>,
    pub key: Option<String>,
    /// CA bundle (PEM file) that signs the backend's certificate; default: webpki roots.
    pub root: Option<String>,
    /// SNI and verification name; default: the upstream host.
    pub hostname: Option<String>,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub insecure_host: bool,
    pub alpn: Option<Vec<String>>,
}

/// `timeout`: durations like `30s`, `500ms`, `2m`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawTimeout {
    /// Whole request, downstream view (until response headers).
    pub request_timeout: Option<String>,
    /// Upstream call only (until response headers).
    pub backend_request_timeout: Option<String>,
}

/// `requestHeaderModifier` / `responseHeaderModifier`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawHeaderModifier {
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `urlRewrite`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawUrlRewrite {
    pub authority: Option<yaml_serde::Value>,
    pub path: Option<RawPathRewrite>,
}

/// `urlRewrite.path`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawPathRewrite {
    pub full: Option<String>,
    pub prefix: Option<String>,
}

/// `cors`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawCors {
    #[serde(default)]
    pub allow_credentials: bool,
    #[serde(default)]
    pub allow_headers: Vec<String>,
    #[serde(default)]
    pub allow_methods: Vec<String>,
    #[serde(default)]
    pub allow_origins: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    pub max_age: Option<yaml_serde::Value>,
}

/// `policies.ai`: LLM request shaping.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawAiPolicy {
    /// Body fields set when the client did not send them.
    pub defaults: Option<serde_json::Map<String, serde_json::Value>>,
    /// Body fields that replace the client's.
    pub overrides: Option<serde_json::Map<String, serde_json::Value>>,
    /// Requested model name → model sent upstream.
    #[serde(default)]
    pub model_aliases: BTreeMap<String, String>,
    /// Path suffix → route type (`completions`, `messages`, `models`, `embeddings`,
    /// `responses`, `passthrough`).
    #[serde(default)]
    pub routes: BTreeMap<String, String>,
    /// Guards on request and response text (see `guard`).
    pub prompt_guard: Option<crate::guard::config::RawPromptGuard>,
}

/// `llm:` shorthand.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawLlm {
    /// Port for the LLM routes. Default 4000.
    pub port: Option<u16>,
    #[serde(default)]
    pub models: Vec<RawLlmModel>,
    /// Public names that route to `models` (weighted, failover, conditional).
    #[serde(default)]
    pub virtual_models: Vec<crate::llm::route::config::RawVirtualModel>,
    pub policies: Option<RawLlmPolicies>,
}

/// `llm.policies` (agentgateway's `LocalLLMPolicy`). `guardrails` is implemented; the other
/// keys of agentgateway's schema are recognised and refused at load until they are.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawLlmPolicies {
    /// Guards applied to every model (a model's own `guardrails` replaces them).
    pub guardrails: Option<crate::guard::config::RawPromptGuard>,
    /// Caller identity and limits, as on a route (see `RawPolicies`).
    pub api_key: Option<yaml_serde::Value>,
    pub jwt_auth: Option<yaml_serde::Value>,
    pub basic_auth: Option<yaml_serde::Value>,
    pub authorization: Option<yaml_serde::Value>,
    pub local_rate_limit: Option<yaml_serde::Value>,
    pub global_rate_limit: Option<yaml_serde::Value>,
    pub budgets: Option<yaml_serde::Value>,
    /// Retries of every model's requests (this gateway's extension: agentgateway has `retry`
    /// on routes only).
    pub retry: Option<crate::llm::route::config::RawRetry>,
    /// `requestTimeout` / `backendRequestTimeout` for every model, as on a route (this
    /// gateway's extension: a stalled target then fails over).
    pub timeout: Option<RawTimeout>,
    #[serde(flatten)]
    pub unsupported: BTreeMap<String, yaml_serde::Value>,
}

/// `llm.models[]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawLlmModel {
    /// Model name matched against the request's `model`; `*` globs allowed (`anthropic/*`).
    pub name: String,
    /// `openAI`, `anthropic`, `gemini`, `azure`, or a preset (`xai`, `ollama`, ...).
    pub provider: String,
    #[serde(default)]
    pub params: RawLlmParams,
    pub defaults: Option<serde_json::Map<String, serde_json::Value>>,
    pub overrides: Option<serde_json::Map<String, serde_json::Value>>,
    /// Accepted for compatibility; CEL body transformations are not applied yet except
    /// `model: llmRequest.model.stripPrefix("...")`.
    pub transformation: Option<BTreeMap<String, String>>,
    /// Guards for this model, replacing `llm.policies.guardrails`.
    pub guardrails: Option<crate::guard::config::RawPromptGuard>,
    /// `internal`: reachable only through a virtual model.
    pub visibility: Option<RawVisibility>,
    /// Passive health and ejection (agentgateway's `LocalHealthPolicy`).
    pub health: Option<crate::llm::route::config::RawHealth>,
}

/// `llm.models[].visibility`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RawVisibility {
    #[default]
    Public,
    Internal,
}

/// `llm.models[].params`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawLlmParams {
    pub model: Option<String>,
    pub api_key: Option<RawSecretRef>,
    /// `https://host[:port]/prefix`: expands to host override, path prefix and TLS.
    pub base_url: Option<String>,
    pub host_override: Option<String>,
    pub path_override: Option<String>,
    pub path_prefix: Option<String>,
    pub azure_resource_name: Option<String>,
    pub azure_resource_type: Option<String>,
    pub azure_api_version: Option<String>,
    pub azure_project_name: Option<String>,
    /// Bedrock: the AWS region (required).
    pub aws_region: Option<String>,
    /// Vertex AI: the Google Cloud project (required) and region (default `global`).
    pub vertex_project: Option<String>,
    pub vertex_region: Option<String>,
}

/// `mcp:` shorthand (agentgateway's `LocalSimpleMcpConfig`). Unknown keys are rejected by the
/// flattened `RawMcpBackend`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawSimpleMcp {
    /// Port for `/mcp` and `/sse`. Default 3000.
    pub port: Option<u16>,
    pub policies: Option<RawPolicies>,
    #[serde(flatten)]
    pub backend: RawMcpBackend,
}
