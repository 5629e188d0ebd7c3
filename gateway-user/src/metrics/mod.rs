//! Prometheus registry and the gateway's metric families.
//!
//! Names and labels follow agentgateway (`agentgateway_` prefix; OpenTelemetry GenAI histogram
//! buckets) so existing dashboards work. Other subsystems register their own families on
//! `Metrics::registry()`. `record` is called once per finished request by telemetry; streamed
//! and non-streamed requests are recorded the same way, from the same `RequestLog` fields.

use std::sync::Arc;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

use crate::ctx::RequestLog;

/// Errors building the metric families (only possible through a programming error, such as a
/// duplicate name registered by another subsystem).
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("registering metric family: {0}")]
    Register(#[from] prometheus::Error),
}

// https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-metrics/
const TOKEN_USAGE_BUCKETS: &[f64] = &[
    1., 4., 16., 64., 256., 1024., 4096., 16384., 65536., 262144., 1048576., 4194304., 16777216.,
    67108864.,
];
const GENAI_DURATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
// The spec's lowest bucket (0.01) is too coarse for fast models; 0.001 is added.
const PER_OUTPUT_TOKEN_BUCKETS: &[f64] = &[
    0.001, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];
const FIRST_TOKEN_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
const HTTP_DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 80.0,
];

const HTTP_LABELS: &[&str] = &[
    "gateway", "listener", "route", "backend", "protocol", "method", "status",
];
/// `status` then the GenAI labels.
const COST_LOOKUP_LABELS: [&str; 8] = [
    "status",
    "gen_ai_operation_name",
    "gen_ai_system",
    "gen_ai_request_model",
    "gen_ai_response_model",
    "gateway",
    "listener",
    "route",
];

const GENAI_LABELS: &[&str] = &[
    "gen_ai_operation_name",
    "gen_ai_system",
    "gen_ai_request_model",
    "gen_ai_response_model",
    "gateway",
    "listener",
    "route",
];
const TOKEN_LABELS: &[&str] = &[
    "gen_ai_token_type",
    "gen_ai_operation_name",
    "gen_ai_system",
    "gen_ai_request_model",
    "gen_ai_response_model",
    "gateway",
    "listener",
    "route",
];
const MCP_LABELS: &[&str] = &[
    "method",
    "resource_type",
    "server",
    "resource",
    "gateway",
    "listener",
    "route",
];

/// The gateway's metric families.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub gen_ai_token_usage: HistogramVec,
    pub gen_ai_request_duration: HistogramVec,
    pub gen_ai_time_to_first_token: HistogramVec,
    pub gen_ai_time_per_output_token: HistogramVec,
    pub mcp_requests: IntCounterVec,
    pub mcp_operation_duration: HistogramVec,
    /// Spans not exported, by `reason` (`queue_full`, `export_failed`).
    pub spans_dropped: IntCounterVec,
    /// CEL evaluation failures in telemetry fields, by `source` (`tracing`, `logging`, `sampling`).
    pub cel_errors: IntCounterVec,
    pub access_log_dropped: IntCounter,
    /// One per guard that ran, by `phase` and `action` (agentgateway's label values).
    pub guardrail_checks: IntCounterVec,
    /// Time spent in each guard, by `type` and `phase` (for a stream: summed over its events).
    pub guardrail_duration: HistogramVec,
    /// USD spent, by the GenAI labels (agentgateway's `gen_ai_client_cost`, unit `usd`).
    pub gen_ai_cost: prometheus::CounterVec,
    /// Price lookups by `status` (`Exact`, `Unpriced`, `Missing`, `NoCatalog`) and GenAI labels.
    pub cost_catalog_lookups: IntCounterVec,
    /// Shared-store (Redis) calls that failed, by `operation` and `reason`.
    pub redis_failures: IntCounterVec,
    /// What each budget had left at its last check, by `budget` and `key` (the descriptor
    /// values the config chose; empty for a route-wide budget). USD or tokens.
    pub budget_remaining: prometheus::GaugeVec,
    /// Requests that found a budget spent, by `budget` and `action` (`block`, `audit`).
    pub budget_exceeded: IntCounterVec,
}

/// Guard durations: a regex pass is microseconds, a webhook call milliseconds to seconds.
const GUARDRAIL_BUCKETS: &[f64] = &[
    0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
];

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn counter(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, MetricsError> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
    labels: &[&str],
) -> Result<HistogramVec, MetricsError> {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )?;
    r.register(Box::new(h.clone()))?;
    Ok(h)
}

// === impl Metrics ===

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        // Families are fixed and distinct; a failure here is a bug caught by every test run.
        #[allow(clippy::expect_used)]
        Arc::new(Self::try_new().expect("metric families are valid and distinct"))
    }

    pub fn try_new() -> Result<Metrics, MetricsError> {
        let r = Registry::new();
        let genai_ops = "Duration of generative AI request (seconds)";
        Ok(Metrics {
            requests: counter(
                &r,
                "agentgateway_requests_total",
                "The total number of HTTP requests sent",
                HTTP_LABELS,
            )?,
            request_duration: histogram(
                &r,
                "agentgateway_request_duration_seconds",
                "Duration of HTTP requests (seconds)",
                HTTP_DURATION_BUCKETS,
                HTTP_LABELS,
            )?,
            gen_ai_token_usage: histogram(
                &r,
                "agentgateway_gen_ai_client_token_usage",
                "Number of tokens used per request",
                TOKEN_USAGE_BUCKETS,
                TOKEN_LABELS,
            )?,
            gen_ai_request_duration: histogram(
                &r,
                "agentgateway_gen_ai_server_request_duration",
                genai_ops,
                GENAI_DURATION_BUCKETS,
                GENAI_LABELS,
            )?,
            gen_ai_time_to_first_token: histogram(
                &r,
                "agentgateway_gen_ai_server_time_to_first_token",
                "Time to generate the first token for a given request (seconds)",
                FIRST_TOKEN_BUCKETS,
                GENAI_LABELS,
            )?,
            gen_ai_time_per_output_token: histogram(
                &r,
                "agentgateway_gen_ai_server_time_per_output_token",
                "Time to generate each output token for a given request (seconds)",
                PER_OUTPUT_TOKEN_BUCKETS,
                GENAI_LABELS,
            )?,
            mcp_requests: counter(
                &r,
                "agentgateway_mcp_requests_total",
                "Total number of MCP requests",
                MCP_LABELS,
            )?,
            mcp_operation_duration: histogram(
                &r,
                "agentgateway_mcp_operation_duration_seconds",
                "Duration of MCP requests by method and tool (seconds)",
                HTTP_DURATION_BUCKETS,
                &["method", "server", "tool", "gateway", "listener", "route"],
            )?,
            spans_dropped: counter(
                &r,
                "agentgateway_tracing_spans_dropped_total",
                "Spans that were not exported, by reason",
                &["reason"],
            )?,
            cel_errors: counter(
                &r,
                "agentgateway_cel_evaluation_errors_total",
                "Telemetry CEL expressions that failed to evaluate (the field is omitted)",
                &["source"],
            )?,
            gen_ai_cost: {
                let c = prometheus::CounterVec::new(
                    Opts::new(
                        "agentgateway_gen_ai_client_cost_usd_total",
                        "Cumulative USD cost of generative AI requests",
                    ),
                    GENAI_LABELS,
                )?;
                r.register(Box::new(c.clone()))?;
                c
            },
            cost_catalog_lookups: counter(
                &r,
                "agentgateway_cost_catalog_lookups_total",
                "Total number of model cost catalog lookups by resolution status",
                &COST_LOOKUP_LABELS,
            )?,
            guardrail_checks: counter(
                &r,
                "agentgateway_guardrail_checks_total",
                "Total number of guardrail checks",
                &["phase", "action"],
            )?,
            guardrail_duration: histogram(
                &r,
                "agentgateway_guardrail_duration_seconds",
                "Time spent in one guardrail check (seconds)",
                GUARDRAIL_BUCKETS,
                &["type", "phase"],
            )?,
            access_log_dropped: {
                let c = IntCounter::new(
                    "agentgateway_access_log_dropped_total",
                    "Access log lines dropped because the writer fell behind",
                )?;
                r.register(Box::new(c.clone()))?;
                c
            },
            redis_failures: counter(
                &r,
                "agentgateway_redis_failures_total",
                "Shared-store (Redis) calls that failed or timed out",
                &["operation", "reason"],
            )?,
            budget_remaining: {
                let g = prometheus::GaugeVec::new(
                    Opts::new(
                        "agentgateway_budget_remaining",
                        "Budget left at its last check (USD or tokens)",
                    ),
                    &["budget", "key"],
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            budget_exceeded: counter(
                &r,
                "agentgateway_budget_exceeded_total",
                "Requests that found a budget spent",
                &["budget", "action"],
            )?,
            registry: r,
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Prometheus text exposition of every registered family.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on invalid families, which `register` rejects.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Records one finished request.
    pub fn record(&self, log: &RequestLog) {
        let gateway = or_unknown(&log.gateway);
        let listener = or_unknown(&log.listener);
        let route = log.route.as_deref().map_or("unknown", or_unknown);
        let backend = log.backend.as_deref().map_or("unknown", or_unknown);
        let protocol = if log.llm.is_some() {
            "llm"
        } else if log.mcp.is_some() {
            "mcp"
        } else {
            "http"
        };
        let status = log
            .status
            .map_or_else(|| "unknown".to_owned(), |s| s.to_string());
        let method = or_unknown(&log.method);
        let http = [
            gateway,
            listener,
            route,
            backend,
            protocol,
            method,
            status.as_str(),
        ];
        let duration = log.duration().as_secs_f64();
        self.requests.with_label_values(&http).inc();
        self.request_duration
            .with_label_values(&http)
            .observe(duration);

        if let Some(l) = &log.llm {
            let op = if l.operation.is_empty() {
                "unknown"
            } else {
                l.operation
            };
            let req_model = l.request_model.as_deref().map_or("unknown", or_unknown);
            let resp_model = l.response_model.as_deref().map_or("unknown", or_unknown);
            let system = or_unknown(&l.provider);
            let genai = [op, system, req_model, resp_model, gateway, listener, route];
            for (kind, n) in [("input", l.input_tokens), ("output", l.output_tokens)] {
                if let Some(n) = n {
                    let labels = [
                        kind, op, system, req_model, resp_model, gateway, listener, route,
                    ];
                    self.gen_ai_token_usage
                        .with_label_values(&labels)
                        .observe(n as f64);
                }
            }
            self.gen_ai_request_duration
                .with_label_values(&genai)
                .observe(duration);
            if let Some(c) = &l.cost {
                let mut labels = [c.status; 8];
                labels[1..].copy_from_slice(&genai);
                self.cost_catalog_lookups.with_label_values(&labels).inc();
                if let Some(total) = c.total() {
                    use rust_decimal::prelude::ToPrimitive;
                    self.gen_ai_cost
                        .with_label_values(&genai)
                        .inc_by(total.to_f64().unwrap_or(0.0));
                }
            }
            if let Some(ttft) = l.first_token {
                self.gen_ai_time_to_first_token
                    .with_label_values(&genai)
                    .observe(ttft.as_secs_f64());
            }
            if let Some(out) = l.output_tokens.filter(|n| *n > 0) {
                // After the first token, the rest of the response is generation time.
                let gen_time = duration - l.first_token.map_or(0.0, |t| t.as_secs_f64());
                let per = gen_time.max(0.0) / out as f64;
                self.gen_ai_time_per_output_token
                    .with_label_values(&genai)
                    .observe(per);
            }
        }

        if let Some(g) = &log.guard {
            for c in &g.checks {
                // agentgateway's label values (its enums' variant names).
                let phase = match c.phase {
                    crate::ctx::GuardPhase::Request => "Request",
                    crate::ctx::GuardPhase::Response => "Response",
                };
                let action = match c.action {
                    crate::ctx::GuardAction::Allow => "Allow",
                    crate::ctx::GuardAction::Mask => "Mask",
                    crate::ctx::GuardAction::FailOpen => "FailOpen",
                    crate::ctx::GuardAction::Reject => "Reject",
                };
                self.guardrail_checks
                    .with_label_values(&[phase, action])
                    .inc();
                self.guardrail_duration
                    .with_label_values(&[c.kind, phase])
                    .observe(c.busy.as_secs_f64());
            }
        }

        if let Some(m) = &log.mcp {
            let method = m.method.as_deref().map_or("unknown", or_unknown);
            let server = m.target.as_deref().map_or("unknown", or_unknown);
            let (rtype, resource) = if let Some(t) = &m.tool_name {
                ("tool", t.as_str())
            } else if let Some(r) = &m.resource {
                ("resource", r.as_str())
            } else {
                ("unknown", "unknown")
            };
            self.mcp_requests
                .with_label_values(&[method, rtype, server, resource, gateway, listener, route])
                .inc();
            let tool = m.tool_name.as_deref().unwrap_or("");
            self.mcp_operation_duration
                .with_label_values(&[method, server, tool, gateway, listener, route])
                .observe(duration);
        }
    }
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() { "unknown" } else { s }
}

#[cfg(test)]
mod tests;
