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

use crate::cel::{Executor, Expression, Refs};
use crate::ctx::RequestLog;

/// `config.metrics` (agentgateway's `RawMetrics`): families to leave out of `/metrics`, and
/// labels added to every per-request family, each computed by CEL. Applied at start-up.
#[derive(Debug, Default)]
pub struct MetricsConfig {
    /// Family names as exposed (`agentgateway_requests_total`), also accepted without the
    /// `_total` suffix or the `agentgateway_` prefix.
    pub remove: Vec<String>,
    /// `fields.add`: label name and expression, in the order written.
    pub fields: Vec<(String, Expression)>,
}

/// A label value is cut at this many bytes (a runaway expression cannot blow up a series).
const MAX_LABEL_VALUE: usize = 128;

impl MetricsConfig {
    /// Parses `config.metrics`; errors name the path.
    pub fn parse(v: &serde_json::Value, path: &str) -> Result<MetricsConfig, (String, String)> {
        use serde_json::Value;
        let o = v
            .as_object()
            .ok_or_else(|| (path.to_owned(), format!("expected a mapping, got {v}")))?;
        if let Some(k) = o
            .keys()
            .find(|k| !matches!(k.as_str(), "remove" | "fields"))
        {
            return Err((format!("{path}.{k}"), "unknown field".into()));
        }
        let mut cfg = MetricsConfig::default();
        match o.get("remove") {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) => {
                for (i, n) in a.iter().enumerate() {
                    let n = n.as_str().ok_or_else(|| {
                        (
                            format!("{path}.remove[{i}]"),
                            format!("expected a metric name, got {n}"),
                        )
                    })?;
                    cfg.remove.push(n.to_owned());
                }
            }
            Some(other) => {
                return Err((
                    format!("{path}.remove"),
                    format!("expected a list of metric names, got {other}"),
                ));
            }
        }
        let add = match o.get("fields") {
            None | Some(Value::Null) => return Ok(cfg),
            Some(Value::Object(f)) => {
                if let Some(k) = f.keys().find(|k| *k != "add") {
                    return Err((format!("{path}.fields.{k}"), "unknown field".into()));
                }
                f.get("add")
            }
            Some(other) => {
                return Err((
                    format!("{path}.fields"),
                    format!("expected `add: {{label: expression}}`, got {other}"),
                ));
            }
        };
        let Some(add) = add else { return Ok(cfg) };
        let add = add.as_object().ok_or_else(|| {
            (
                format!("{path}.fields.add"),
                format!("expected a mapping of label name to CEL expression, got {add}"),
            )
        })?;
        let taken: Vec<&str> = HTTP_LABELS
            .iter()
            .chain(TOKEN_LABELS)
            .chain(MCP_LABELS)
            .chain(COST_LOOKUP_LABELS.iter())
            .chain(&["server", "tool"])
            .copied()
            .collect();
        for (name, src) in add {
            let at = format!("{path}.fields.add.{name}");
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with("__");
            if !valid {
                return Err((
                    at,
                    "not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)".into(),
                ));
            }
            if taken.contains(&name.as_str()) {
                return Err((at, "a label the gateway already sets".into()));
            }
            let src = src
                .as_str()
                .ok_or_else(|| (at.clone(), format!("expected a CEL expression, got {src}")))?;
            let e = Expression::compile(src).map_err(|e| (at, e.to_string()))?;
            cfg.fields.push((name.clone(), e));
        }
        Ok(cfg)
    }

    /// What the label expressions read (the proxy captures it for them).
    pub fn references(&self) -> Refs {
        self.fields
            .iter()
            .fold(Refs::default(), |r, (_, e)| r.union(e.references()))
    }

    fn removes(&self, family: &str) -> bool {
        self.remove.iter().any(|n| {
            let bare = family.strip_prefix("agentgateway_").unwrap_or(family);
            [
                family,
                family.trim_end_matches("_total"),
                bare,
                bare.trim_end_matches("_total"),
            ]
            .contains(&n.as_str())
        })
    }
}

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
    /// `config.metrics` as the process started with it.
    config: Arc<MetricsConfig>,
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
    /// LLM attempts abandoned for another (retry or failover), by the `backend` given up on
    /// and `reason` (`status 503`, `connection failed`, `timeout`).
    pub upstream_retries: IntCounterVec,
    /// Moves from one virtual-model target to another, by `virtual_model`, `from`, `to`.
    pub llm_failovers: IntCounterVec,
    /// Backends ejected by their health policy, by `backend`.
    pub upstream_ejections: IntCounterVec,
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
        Self::with_config(Arc::new(MetricsConfig::default()))
    }

    /// The families, with `config`'s labels on every per-request one.
    pub fn with_config(config: Arc<MetricsConfig>) -> Result<Metrics, MetricsError> {
        let r = Registry::new();
        let genai_ops = "Duration of generative AI request (seconds)";
        let extra: Vec<&str> = config.fields.iter().map(|(n, _)| n.as_str()).collect();
        let with = |base: &[&'static str]| -> Vec<&str> {
            base.iter().copied().chain(extra.iter().copied()).collect()
        };
        let (http_l, token_l, genai_l, mcp_l, cost_l) = (
            with(HTTP_LABELS),
            with(TOKEN_LABELS),
            with(GENAI_LABELS),
            with(MCP_LABELS),
            with(&COST_LOOKUP_LABELS),
        );
        let mcp_op_l = with(&["method", "server", "tool", "gateway", "listener", "route"]);
        Ok(Metrics {
            requests: counter(
                &r,
                "agentgateway_requests_total",
                "The total number of HTTP requests sent",
                &http_l,
            )?,
            request_duration: histogram(
                &r,
                "agentgateway_request_duration_seconds",
                "Duration of HTTP requests (seconds)",
                HTTP_DURATION_BUCKETS,
                &http_l,
            )?,
            gen_ai_token_usage: histogram(
                &r,
                "agentgateway_gen_ai_client_token_usage",
                "Number of tokens used per request",
                TOKEN_USAGE_BUCKETS,
                &token_l,
            )?,
            gen_ai_request_duration: histogram(
                &r,
                "agentgateway_gen_ai_server_request_duration",
                genai_ops,
                GENAI_DURATION_BUCKETS,
                &genai_l,
            )?,
            gen_ai_time_to_first_token: histogram(
                &r,
                "agentgateway_gen_ai_server_time_to_first_token",
                "Time to generate the first token for a given request (seconds)",
                FIRST_TOKEN_BUCKETS,
                &genai_l,
            )?,
            gen_ai_time_per_output_token: histogram(
                &r,
                "agentgateway_gen_ai_server_time_per_output_token",
                "Time to generate each output token for a given request (seconds)",
                PER_OUTPUT_TOKEN_BUCKETS,
                &genai_l,
            )?,
            mcp_requests: counter(
                &r,
                "agentgateway_mcp_requests_total",
                "Total number of MCP requests",
                &mcp_l,
            )?,
            mcp_operation_duration: histogram(
                &r,
                "agentgateway_mcp_operation_duration_seconds",
                "Duration of MCP requests by method and tool (seconds)",
                HTTP_DURATION_BUCKETS,
                &mcp_op_l,
            )?,
            spans_dropped: counter(
                &r,
                "agentgateway_tracing_spans_dropped_total",
                "Spans that were not exported, by trace destination and reason",
                &["destination", "reason"],
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
                    &genai_l,
                )?;
                r.register(Box::new(c.clone()))?;
                c
            },
            cost_catalog_lookups: counter(
                &r,
                "agentgateway_cost_catalog_lookups_total",
                "Total number of model cost catalog lookups by resolution status",
                &cost_l,
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
            upstream_retries: counter(
                &r,
                "agentgateway_upstream_retries_total",
                "LLM attempts abandoned for another attempt (retry or failover), by backend and reason",
                &["backend", "reason"],
            )?,
            llm_failovers: counter(
                &r,
                "agentgateway_llm_failovers_total",
                "Requests of a virtual model that moved from one target to another",
                &["virtual_model", "from", "to"],
            )?,
            upstream_ejections: counter(
                &r,
                "agentgateway_upstream_ejections_total",
                "Backends ejected by their health policy after failing",
                &["backend"],
            )?,
            registry: r,
            config,
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// What `config.metrics.fields` read: the proxy captures it for them.
    pub fn references(&self) -> Refs {
        self.config.references()
    }

    /// Prometheus text exposition of every registered family (less `config.metrics.remove`).
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        let mut families = self.registry.gather();
        if !self.config.remove.is_empty() {
            families.retain(|f| !self.config.removes(f.name()));
        }
        // Encoding into a Vec only fails on invalid families, which `register` rejects.
        let _ = TextEncoder::new().encode(&families, &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// The values of `config.metrics.fields` for `log` (a missing value is `unknown`).
    fn field_values(&self, log: &RequestLog) -> Vec<String> {
        if self.config.fields.is_empty() {
            return Vec::new();
        }
        let exec = Executor::new(log, self.config.references());
        self.config
            .fields
            .iter()
            .map(|(_, e)| {
                let mut v = exec
                    .eval(e)
                    .ok()
                    .and_then(|v| crate::cel::display(&v))
                    .unwrap_or_else(|| "unknown".into());
                if v.len() > MAX_LABEL_VALUE {
                    let mut end = MAX_LABEL_VALUE;
                    while !v.is_char_boundary(end) {
                        end -= 1;
                    }
                    v.truncate(end);
                }
                v
            })
            .collect()
    }

    /// Retries, failovers and ejections of one steered LLM request.
    fn record_routing(&self, r: &crate::ctx::RoutingInfo) {
        for a in &r.abandoned {
            self.upstream_retries
                .with_label_values(&[a.backend.as_str(), a.reason.as_str()])
                .inc();
        }
        if let Some(vm) = &r.virtual_model {
            let served = std::iter::once(r.target.as_str());
            let seq: Vec<&str> = r
                .abandoned
                .iter()
                .map(|a| a.target.as_str())
                .chain(served)
                .collect();
            for w in seq.windows(2).filter(|w| w[0] != w[1]) {
                self.llm_failovers
                    .with_label_values(&[vm.as_str(), w[0], w[1]])
                    .inc();
            }
        }
        for b in &r.ejected {
            self.upstream_ejections
                .with_label_values(&[b.as_str()])
                .inc();
        }
    }

    /// Records one finished request.
    pub fn record(&self, log: &RequestLog) {
        let fields = self.field_values(log);
        let extra: Vec<&str> = fields.iter().map(String::as_str).collect();
        let extra = extra.as_slice();
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
        let http = join(&http, extra);
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
            let genai = join(
                &[op, system, req_model, resp_model, gateway, listener, route],
                extra,
            );
            for (kind, n) in [("input", l.input_tokens), ("output", l.output_tokens)] {
                if let Some(n) = n {
                    let labels = join(
                        &[
                            kind, op, system, req_model, resp_model, gateway, listener, route,
                        ],
                        extra,
                    );
                    self.gen_ai_token_usage
                        .with_label_values(&labels)
                        .observe(n as f64);
                }
            }
            self.gen_ai_request_duration
                .with_label_values(&genai)
                .observe(duration);
            if let Some(r) = &l.routing {
                self.record_routing(r);
            }
            if let Some(c) = &l.cost {
                let mut labels = Vec::with_capacity(genai.len() + 1);
                labels.push(c.status);
                labels.extend_from_slice(&genai);
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
                .with_label_values(&join(
                    &[method, rtype, server, resource, gateway, listener, route],
                    extra,
                ))
                .inc();
            let tool = m.tool_name.as_deref().unwrap_or("");
            self.mcp_operation_duration
                .with_label_values(&join(
                    &[method, server, tool, gateway, listener, route],
                    extra,
                ))
                .observe(duration);
        }
    }
}

/// `base` labels then the configured ones.
fn join<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = Vec::with_capacity(base.len() + extra.len());
    v.extend_from_slice(base);
    v.extend_from_slice(extra);
    v
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() { "unknown" } else { s }
}

#[cfg(test)]
mod tests;
