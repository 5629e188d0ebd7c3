//! Prompt guards (agentgateway's `promptGuard`): checks on the text of LLM requests and
//! responses that allow, mask, or reject, each outcome recorded for spans, metrics and logs.
//!
//! ```text
//! proxy::llm  parse ──► guard::request::check ──► translate_request ... call_upstream
//!                        (regex, webhook, openAIModeration over the client's text)
//!             respond ─► guard::response::check (JSON body)
//!                      └ guard::stream::StreamGuard (SSE events, masked as they pass)
//! ```
//!
//! - `scan`: the regex engine (one pass for all rules; stream masking equal to whole-text).
//! - `builtins`: agentgateway's PII builtins plus credential-leak and prompt-injection ones.
//! - `text`: where the guarded text sits in each API shape (OpenAI chat and Responses,
//!   Anthropic messages, Gemini).
//! - `webhook`, `moderation`: the remote guards, called through the proxy's `Transport`.
//! - `outcome`: what happened, into `ctx::GuardInfo`.
//!
//! This module never imports `proxy`: the proxy hands it a `Transport` for remote calls.

pub mod builtins;
pub mod config;
pub mod outcome;
pub mod request;
pub mod response;
pub mod scan;
pub mod stream;
pub mod text;
pub mod webhook;
pub mod window;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::cel::Expression;
use crate::ctx::redact::Secret;

/// One `promptGuard` block, compiled.
#[derive(Debug, Default)]
pub struct PromptGuard {
    /// Response guards apply to streams (`streaming: Enabled`, the default).
    pub streaming: bool,
    pub request: Vec<Guard>,
    pub response: Vec<Guard>,
}

/// One guard of a phase.
#[derive(Debug)]
pub struct Guard {
    /// Its index in the phase's list (reported in telemetry).
    pub index: usize,
    pub kind: GuardKind,
    pub rejection: Rejection,
    /// Request guards: which parts of the request are inspected.
    pub scope: Scope,
}

#[derive(Debug)]
pub enum GuardKind {
    Regex {
        action: Action,
        rules: Arc<scan::RuleSet>,
    },
    Webhook(Arc<Webhook>),
    Moderation(Arc<Moderation>),
}

impl GuardKind {
    /// The guard type, as telemetry names it.
    pub fn name(&self) -> &'static str {
        match self {
            GuardKind::Regex { .. } => "regex",
            GuardKind::Webhook(_) => "webhook",
            GuardKind::Moderation(_) => "openAIModeration",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Mask,
    Reject,
}

/// The parts of a request a guard inspects (agentgateway's `ContentScope`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scope(u8);

impl Scope {
    pub const NONE: Scope = Scope(0);
    pub const SYSTEM_PROMPT: Scope = Scope(1);
    pub const MESSAGES: Scope = Scope(2);
    pub const TOOL_OUTPUT: Scope = Scope(4);
    pub const TOOL_INPUT: Scope = Scope(8);
    /// agentgateway's default: the system prompt and the messages.
    pub const DEFAULT: Scope = Scope(1 | 2);

    pub fn with(self, o: Scope) -> Scope {
        Scope(self.0 | o.0)
    }
    pub fn has(self, o: Scope) -> bool {
        self.0 & o.0 != 0
    }
}

/// What a rejected client gets.
#[derive(Clone, Debug)]
pub struct Rejection {
    pub status: u16,
    pub body: Arc<[u8]>,
    pub headers: config::HeaderEdits,
}

impl Default for Rejection {
    fn default() -> Self {
        Rejection {
            status: 403,
            body: Arc::from(config::DEFAULT_REJECTION_BODY.as_bytes()),
            headers: (Vec::new(), Vec::new()),
        }
    }
}

/// A `webhook` guard.
#[derive(Debug)]
pub struct Webhook {
    /// `host:port`.
    pub authority: String,
    pub tls: bool,
    pub headers: Vec<WebhookHeader>,
    /// Client request headers forwarded to the webhook.
    pub forward: Vec<(http::HeaderName, HeaderValueMatch)>,
    pub fail_open: bool,
    pub timeout: Duration,
}

/// A header of the webhook call, computed by CEL.
#[derive(Debug)]
pub struct WebhookHeader {
    /// As configured (a header name, or `:path` / `:method` / `:authority`).
    pub name: String,
    /// `None` for the pseudo-headers.
    pub header: Option<http::HeaderName>,
    pub expr: Arc<Expression>,
}

#[derive(Debug)]
pub enum HeaderValueMatch {
    Exact(String),
    Regex(regex::Regex),
}

impl HeaderValueMatch {
    pub fn matches(&self, v: &str) -> bool {
        match self {
            HeaderValueMatch::Exact(e) => e == v,
            HeaderValueMatch::Regex(r) => r.is_match(v),
        }
    }
}

/// An `openAIModeration` guard.
#[derive(Debug)]
pub struct Moderation {
    pub authority: String,
    pub tls: bool,
    pub model: String,
    pub key: Option<Secret>,
    pub headers: config::HeaderEdits,
    pub timeout: Duration,
}

/// How remote guards reach their endpoint: implemented by the proxy over its upstream client
/// pool (so eBPF timing, TLS and connection reuse are the same as for providers).
pub trait Transport: Send + Sync {
    /// Sends `req` to `authority` (TLS when `tls`), bounded by `timeout`; the response status,
    /// headers and whole body (bounded by the implementation).
    fn call(
        &self,
        authority: &str,
        tls: bool,
        req: http::Request<Bytes>,
        timeout: Duration,
    ) -> futures_util::future::BoxFuture<'_, Result<(http::StatusCode, Bytes), String>>;
}
