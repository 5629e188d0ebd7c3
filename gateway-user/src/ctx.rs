//! Per-request record shared by every subsystem: the proxy fills it in phase by phase, and
//! telemetry (spans, access log, metrics) and CEL read it once the request ends.
//!
//! It lives low in the crate so that `llm`, `mcp`, `cel` and `telemetry` can depend on it
//! without depending on `proxy`.

pub mod redact;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value as Json;

/// Who is to blame for a failed request: used for span status, metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blame {
    Client,
    Upstream,
    Internal,
}

/// W3C trace identity of the gateway's server span.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceIds {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The caller's span, when the request carried a `traceparent`.
    pub parent_span_id: Option<[u8; 8]>,
    /// Whether this request is exported as a span.
    pub sampled: bool,
}

impl TraceIds {
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// What the gateway learned about an LLM exchange, in passing.
#[derive(Clone, Debug, Default)]
pub struct LlmInfo {
    /// Provider name as agentgateway reports it: `openai`, `anthropic`, `gemini`, `azure.openai`, ...
    pub provider: String,
    /// Operation per OTel GenAI: `chat`, `embeddings`, `responses`, `models`, `messages`.
    pub operation: &'static str,
    pub request_model: Option<String>,
    pub response_model: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
    pub cached_input_tokens: Option<u64>,
    /// Input tokens written to the provider's prompt cache (Anthropic), part of
    /// `input_tokens`.
    pub cache_write_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    pub streaming: bool,
    /// Request messages as `[{role, content}]`, captured only when config references them.
    pub prompt: Option<Json>,
    /// Completion texts (one per choice), captured only when config references them.
    pub completion: Option<Vec<String>>,
    /// Request parameters (temperature, max_tokens, top_p, ...).
    pub params: serde_json::Map<String, Json>,
    pub finish_reasons: Vec<String>,
    /// Time from request start to the first streamed token.
    pub first_token: Option<Duration>,
    /// Tool calls the model asked for (names).
    pub tool_calls: Vec<String>,
    /// The catalog lookup and, when priced, the cost (set once usage is final).
    pub cost: Option<Box<CostInfo>>,
    /// Virtual model, retries and failover: set only when the request was routed by a
    /// virtual model or took more than one attempt.
    pub routing: Option<Box<RoutingInfo>>,
}

/// How an LLM request was steered (`llm::route`).
#[derive(Clone, Debug, Default)]
pub struct RoutingInfo {
    /// The virtual model the client asked for, and its routing kind (`weighted`, ...).
    pub virtual_model: Option<String>,
    pub kind: Option<&'static str>,
    /// The model (target) that served the last attempt.
    pub target: String,
    /// Attempts made in all, the first included.
    pub attempts: u32,
    /// The attempts abandoned for another, in order.
    pub abandoned: Vec<Attempt>,
    /// Backends this request's outcomes ejected (`health`).
    pub ejected: Vec<String>,
}

/// One LLM attempt a retry or failover moved on from.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// Model (target) name and backend name.
    pub target: String,
    pub backend: String,
    pub endpoint: String,
    /// The CLIENT span id the attempt's trace context carried.
    pub span_id: Option<[u8; 8]>,
    pub start: Instant,
    pub end: Instant,
    /// Why it was abandoned: `status 503`, `connection failed`, `timeout`.
    pub reason: String,
}

/// A request's price lookup (`spend`): agentgateway's status label value, and the cost in
/// decimal USD per line (`total`, `input`, `output`, `cacheRead`, `cacheWrite`, `reasoning`,
/// `inputAudio`, `outputAudio`) when priced.
#[derive(Clone, Debug)]
pub struct CostInfo {
    pub status: &'static str,
    pub lines: Option<[(&'static str, rust_decimal::Decimal); 8]>,
}

impl CostInfo {
    pub fn total(&self) -> Option<rust_decimal::Decimal> {
        self.lines.as_ref().map(|l| l[0].1)
    }
}

/// What the gateway learned about an MCP exchange.
#[derive(Clone, Debug, Default)]
pub struct McpInfo {
    pub method: Option<String>,
    pub session_id: Option<String>,
    pub request_id: Option<Json>,
    pub target: Option<String>,
    pub tool_name: Option<String>,
    pub tool_arguments: Option<Json>,
    pub tool_result: Option<Json>,
    pub tool_error: Option<Json>,
    /// Resource or prompt name when the method is about one.
    pub resource: Option<String>,
    /// Prompt name when the method is about a prompt (`prompts/get`), for CEL `mcp.prompt.*`.
    pub prompt_name: Option<String>,
    pub error_type: Option<String>,
    /// One entry per call the gateway made to an MCP target for this request (a `tools/list`
    /// fans out to every target). Telemetry turns each into a CLIENT child span.
    pub target_calls: Vec<TargetCall>,
}

/// One upstream call to an MCP target.
#[derive(Clone, Debug)]
pub struct TargetCall {
    pub target: String,
    /// Span id the gateway put into the target's trace context (`traceparent` header or
    /// `params._meta`), so the target's spans hang under this call.
    pub span_id: [u8; 8],
    pub start: Instant,
    pub end: Option<Instant>,
    pub error: Option<String>,
}

/// What a guard, or a whole phase of guards, did. Ordered by how much an operator must know:
/// a phase reports its most severe guard outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum GuardAction {
    #[default]
    Allow,
    Mask,
    /// A remote guard failed and `failureMode: failOpen` let the request through unchecked.
    FailOpen,
    Reject,
}

impl GuardAction {
    pub fn as_str(self) -> &'static str {
        match self {
            GuardAction::Allow => "allow",
            GuardAction::Mask => "mask",
            GuardAction::FailOpen => "failopen",
            GuardAction::Reject => "reject",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardPhase {
    Request,
    Response,
}

impl GuardPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            GuardPhase::Request => "request",
            GuardPhase::Response => "response",
        }
    }
}

/// The outcome of one phase's guards. Never the matched text: rule types and counts only.
#[derive(Clone, Debug, Default)]
pub struct PhaseOutcome {
    pub action: GuardAction,
    /// Rule types that matched (`ssn`, `pattern`, `promptInjection:roleHijack`, or for remote
    /// guards their type) with how many times, in first-seen order.
    pub rules: Vec<(String, u32)>,
    /// Spans of text replaced.
    pub masked: u32,
    /// The guard that rejected: `regex`, `webhook` or `openAIModeration`, with its index.
    pub rejected_by: Option<String>,
}

impl PhaseOutcome {
    /// The rules as one string (`ssn=2,email=1`), for logs and span attributes.
    pub fn rules_summary(&self) -> String {
        rules_summary(&self.rules)
    }
}

/// `(rule, count)` pairs as `ssn=2,email=1`.
pub fn rules_summary(rules: &[(String, u32)]) -> String {
    let mut s = String::new();
    for (i, (r, n)) in rules.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(r);
        s.push('=');
        s.push_str(&n.to_string());
    }
    s
}

/// One guard that ran (a child span).
#[derive(Clone, Debug)]
pub struct GuardCheck {
    pub phase: GuardPhase,
    /// `regex`, `webhook`, `openAIModeration`.
    pub kind: &'static str,
    pub index: usize,
    pub span_id: [u8; 8],
    pub start: Instant,
    pub end: Instant,
    /// Time spent in the check itself; for a stream the sum over its events.
    pub busy: Duration,
    pub action: GuardAction,
    pub rules: Vec<(String, u32)>,
    pub masked: u32,
    pub error: Option<String>,
    /// Remote guards: the HTTP call.
    pub http: Option<GuardHttp>,
}

impl GuardCheck {
    pub fn status_code(&self) -> Option<u16> {
        self.http.as_ref().and_then(|h| h.status)
    }
}

/// The HTTP call of a remote guard, for its CLIENT span.
#[derive(Clone, Debug)]
pub struct GuardHttp {
    pub method: &'static str,
    /// `scheme://authority/path`, no query.
    pub url: String,
    pub authority: String,
    pub status: Option<u16>,
}

/// Prompt-guard outcomes of one request.
#[derive(Clone, Debug, Default)]
pub struct GuardInfo {
    pub request: Option<PhaseOutcome>,
    pub response: Option<PhaseOutcome>,
    pub checks: Vec<GuardCheck>,
}

/// Kernel-measured timing of a TCP flow, read from BPF maps.
#[derive(Clone, Copy, Debug, Default)]
pub struct FlowTiming {
    pub connect: Option<Duration>,
    pub srtt: Option<Duration>,
    pub retransmits: Option<u32>,
    pub bytes_sent: Option<u64>,
    pub bytes_received: Option<u64>,
}

/// The request record. Fields are filled by the phase that knows them.
#[derive(Clone, Debug)]
pub struct RequestLog {
    pub start: Instant,
    pub start_time: SystemTime,
    pub end: Option<Instant>,
    pub gateway: String,
    pub listener: String,
    pub route: Option<String>,
    pub endpoint: Option<String>,
    pub backend: Option<String>,
    pub src_addr: Option<SocketAddr>,
    pub method: String,
    pub host: String,
    pub path: String,
    pub uri: String,
    pub scheme: &'static str,
    pub version: &'static str,
    /// Request headers, minus credentials (see `redact`).
    pub request_headers: Vec<(String, String)>,
    pub status: Option<u16>,
    pub response_headers: Vec<(String, String)>,
    pub llm: Option<LlmInfo>,
    pub mcp: Option<McpInfo>,
    pub trace: TraceIds,
    /// Id of the CLIENT span for the upstream call, when there was one.
    pub upstream_span_id: Option<[u8; 8]>,
    pub upstream_start: Option<Instant>,
    pub upstream_end: Option<Instant>,
    pub error: Option<String>,
    pub blame: Option<Blame>,
    /// The client went away before the response finished.
    pub client_cancelled: bool,
    pub downstream_flow: Option<FlowTiming>,
    pub upstream_flow: Option<FlowTiming>,
    /// Socket cookie of the upstream connection that carried the response (eBPF flow key).
    pub upstream_cookie: Option<u64>,
    /// Where a kernel-steered client meant to connect.
    pub original_dst: Option<SocketAddr>,
    /// Prompt-guard outcomes, when the route has guards.
    pub guard: Option<Box<GuardInfo>>,
    /// The authenticated caller (`policies.apiKey`).
    pub identity: Option<Box<Identity>>,
    /// A verified JWT's claims (`policies.jwtAuth`).
    pub jwt: Option<Box<serde_json::Value>>,
    /// The user `policies.basicAuth` verified.
    pub basic_user: Option<String>,
    /// The most constrained local rate limit the request was charged against.
    pub rate_limit: Option<RateLimitStatus>,
    /// Charges to settle once usage is known (token rate limits, budgets).
    pub settle: Vec<std::sync::Arc<dyn Settle>>,
    /// Budgets checked for this request (`policies.budgets`).
    pub budget: Option<Box<BudgetStatus>>,
    /// The shared store failed and `failOpen` let the request through (the reason).
    pub store_failure: Option<&'static str>,
}

/// The budgets a request was checked against.
#[derive(Clone, Debug, Default)]
pub struct BudgetStatus {
    /// `name=remaining` per budget, before this request's spend.
    pub remaining: Vec<String>,
    /// The budget with the smallest share left, as `name=remaining`.
    pub tightest: Option<String>,
    /// Budgets already spent (blocked, or only audited).
    pub exceeded: Vec<String>,
}

/// Who sent the request: an API key's stable id (`sha256:` and 12 hex digits, never the key)
/// and its configured metadata.
#[derive(Clone, Debug)]
pub struct Identity {
    pub key_id: String,
    pub metadata: serde_json::Value,
    /// `allowedModels` patterns; `None` allows every model.
    pub allowed_models: Option<std::sync::Arc<Vec<String>>>,
}

/// A rate-limit bucket as the `x-ratelimit-*` headers report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitStatus {
    pub limit: u64,
    pub remaining: u64,
    /// Whole seconds until the next refill.
    pub reset: u64,
}

/// Corrects a charge made before the response (an estimate of tokens) with the real usage.
pub trait Settle: Send + Sync + std::fmt::Debug {
    /// `llm` is the finished exchange (usage and cost final), if any.
    fn settle(&self, llm: Option<&LlmInfo>);
}

impl RequestLog {
    pub fn new(gateway: String, listener: String) -> Self {
        RequestLog {
            start: Instant::now(),
            start_time: SystemTime::now(),
            end: None,
            gateway,
            listener,
            route: None,
            endpoint: None,
            backend: None,
            src_addr: None,
            method: String::new(),
            host: String::new(),
            path: String::new(),
            uri: String::new(),
            scheme: "http",
            version: "HTTP/1.1",
            request_headers: Vec::new(),
            status: None,
            response_headers: Vec::new(),
            llm: None,
            mcp: None,
            trace: TraceIds::default(),
            upstream_span_id: None,
            upstream_start: None,
            upstream_end: None,
            error: None,
            blame: None,
            client_cancelled: false,
            downstream_flow: None,
            upstream_flow: None,
            upstream_cookie: None,
            original_dst: None,
            guard: None,
            identity: None,
            rate_limit: None,
            settle: Vec::new(),
            jwt: None,
            basic_user: None,
            budget: None,
            store_failure: None,
        }
    }

    pub fn duration(&self) -> Duration {
        self.end.unwrap_or_else(Instant::now) - self.start
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.request_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
