//! Request metrics pushed over OTLP, when the standard environment says so
//! (`OTEL_METRICS_EXPORTER=otlp`; agentgateway has no OTLP metrics). Prometheus `/metrics` is
//! unchanged; this is the same story under the OpenTelemetry names, for collectors that take
//! pushes rather than scrape.
//!
//! The OpenTelemetry SDK aggregates (cumulative temporality, explicit histogram buckets from
//! the GenAI and HTTP semantic conventions) and opentelemetry-otlp exports: gRPC through tonic,
//! or protobuf over HTTP through our hyper-rustls client, every `OTEL_METRIC_EXPORT_INTERVAL`
//! (default 60 s). Endpoint, headers and timeout come from `OTEL_EXPORTER_OTLP_[METRICS_]*`,
//! read by opentelemetry-otlp itself; the protocol from `..._PROTOCOL` (`grpc` or
//! `http/protobuf`). Instruments are recorded on the `telemetry` thread, never on a proxy
//! worker. The exporter's I/O runs on its own thread (`otlp-metrics`); a collector that is
//! down costs a failed export (logged by the SDK), never a request.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};

use super::TelemetryError;
use super::settings::{Env, env_nonempty, protocol_from_env};
use crate::config::telemetry::RawProtocol;
use crate::ctx::{GuardAction, GuardPhase, RequestLog};

/// `gen_ai.client.token.usage` buckets (GenAI semantic conventions).
const TOKEN_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
/// `gen_ai.client.operation.duration` buckets, seconds.
const OPERATION_BUCKETS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// `gen_ai.server.time_to_first_token` buckets, seconds.
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// `gen_ai.server.time_per_output_token` buckets, seconds.
const TPOT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
];
/// `http.server.request.duration` and MCP duration buckets, seconds (HTTP semconv).
const HTTP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// Guard check time, seconds.
const GUARD_BUCKETS: &[f64] = &[
    0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0,
];

/// The instruments, and the provider that exports them.
pub struct OtlpMetrics {
    provider: SdkMeterProvider,
    /// Keeps the exporter's I/O runtime alive until shutdown.
    _io: std::thread::JoinHandle<()>,
    stop_io: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    http_duration: Histogram<f64>,
    token_usage: Histogram<u64>,
    operation_duration: Histogram<f64>,
    ttft: Histogram<f64>,
    tpot: Histogram<f64>,
    cost: Counter<f64>,
    mcp_duration: Histogram<f64>,
    guard_checks: Counter<u64>,
    guard_duration: Histogram<f64>,
}

impl std::fmt::Debug for OtlpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtlpMetrics")
    }
}

/// An HTTP client for opentelemetry-otlp whose requests run on the `otlp-metrics` runtime: the
/// SDK's reader thread only waits for them.
#[derive(Debug)]
struct OnRuntime {
    handle: tokio::runtime::Handle,
    client: Arc<opentelemetry_http::hyper::HyperClient<super::otlp::HttpsConnector>>,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OnRuntime {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        self.handle
            .spawn(async move { client.send_bytes(request).await })
            .await
            .map_err(|e| Box::new(e) as opentelemetry_http::HttpError)?
    }
}

/// Whether `OTEL_METRICS_EXPORTER` asks for OTLP. Errors name the variable and value.
fn wanted(env: Env) -> Result<bool, TelemetryError> {
    let Some(exporters) = env_nonempty(env, "OTEL_METRICS_EXPORTER") else {
        return Ok(false);
    };
    let names: Vec<&str> = exporters.split(',').map(str::trim).collect();
    if let Some(bad) = names
        .iter()
        .find(|n| !matches!(**n, "otlp" | "none" | "prometheus"))
    {
        return Err(TelemetryError::Invalid {
            path: "OTEL_METRICS_EXPORTER".into(),
            value: (*bad).into(),
            msg: "supported: `otlp` (push), `prometheus` and `none` (`/metrics` is always served)"
                .into(),
        });
    }
    Ok(names.contains(&"otlp"))
}

/// The metrics exporter for the protocol the environment names; its I/O belongs to `rt`.
fn exporter(
    env: Env,
    rt: &tokio::runtime::Runtime,
    http: bool,
) -> Result<opentelemetry_otlp::MetricExporter, String> {
    // tonic's lazy channel spawns its worker on the runtime entered here.
    let _guard = rt.enter();
    let built = if http {
        let client = opentelemetry_http::hyper::HyperClient::new(
            super::otlp::https_connector(),
            Duration::from_secs(10),
            None,
        );
        opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_http_client(OnRuntime {
                handle: rt.handle().clone(),
                client: Arc::new(client),
            })
            .with_temporality(Temporality::Cumulative)
            .build()
    } else {
        let mut b = opentelemetry_otlp::MetricExporter::builder().with_tonic();
        // A bare `host:port` (as our other OTLP settings accept) gets a scheme.
        if let Some(e) = endpoint(env)
            && !e.contains("://")
        {
            b = b.with_endpoint(format!("http://{e}"));
        }
        b.with_temporality(Temporality::Cumulative).build()
    };
    built.map_err(|e| e.to_string())
}

fn endpoint(env: Env) -> Option<String> {
    env_nonempty(env, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        .or_else(|| env_nonempty(env, "OTEL_EXPORTER_OTLP_ENDPOINT"))
}

impl OtlpMetrics {
    /// `Some` when `OTEL_METRICS_EXPORTER` names `otlp`. Errors name the variable and value.
    pub fn from_env(
        env: Env,
        resource: opentelemetry_sdk::Resource,
    ) -> Result<Option<OtlpMetrics>, TelemetryError> {
        if !wanted(env)? {
            return Ok(None);
        }
        let http = protocol_from_env(env, "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")?
            == Some(RawProtocol::Http);
        let fail = |msg: String| TelemetryError::Exporter {
            endpoint: endpoint(env).unwrap_or_else(|| "the default OTLP endpoint".into()),
            msg,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail(format!("starting the metrics export runtime: {e}")))?;
        let exporter = exporter(env, &rt, http).map_err(fail)?;
        let (stop_io, stopped) = tokio::sync::oneshot::channel::<()>();
        let io = std::thread::Builder::new()
            .name("otlp-metrics".into())
            .spawn(move || {
                super::lower_thread_priority();
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })
            .map_err(|e| fail(format!("starting the metrics export thread: {e}")))?;
        // The reader reads OTEL_METRIC_EXPORT_INTERVAL (default 60 s) itself.
        let reader = PeriodicReader::builder(exporter).build();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource)
            .build();
        Ok(Some(Self::instruments(provider, io, stop_io)))
    }

    /// The instruments, under the semantic conventions' names, units and buckets.
    fn instruments(
        provider: SdkMeterProvider,
        io: std::thread::JoinHandle<()>,
        stop_io: tokio::sync::oneshot::Sender<()>,
    ) -> OtlpMetrics {
        let m = provider.meter("gateway");
        let f64_hist = |name: &'static str, unit: &'static str, desc: &'static str, b: &[f64]| {
            m.f64_histogram(name)
                .with_unit(unit)
                .with_description(desc)
                .with_boundaries(b.to_vec())
                .build()
        };
        OtlpMetrics {
            http_duration: f64_hist(
                "http.server.request.duration",
                "s",
                "Duration of HTTP server requests",
                HTTP_BUCKETS,
            ),
            token_usage: m
                .u64_histogram("gen_ai.client.token.usage")
                .with_unit("{token}")
                .with_description("Number of input and output tokens used")
                .with_boundaries(TOKEN_BUCKETS.to_vec())
                .build(),
            operation_duration: f64_hist(
                "gen_ai.client.operation.duration",
                "s",
                "GenAI operation duration",
                OPERATION_BUCKETS,
            ),
            ttft: f64_hist(
                "gen_ai.server.time_to_first_token",
                "s",
                "Time to generate the first token for successful responses",
                TTFT_BUCKETS,
            ),
            tpot: f64_hist(
                "gen_ai.server.time_per_output_token",
                "s",
                "Time per output token generated after the first token",
                TPOT_BUCKETS,
            ),
            cost: m
                .f64_counter("gen_ai.client.cost")
                .with_unit("USD")
                .with_description("Priced cost of GenAI requests (the gateway's model catalog)")
                .build(),
            mcp_duration: f64_hist(
                "mcp.server.operation.duration",
                "s",
                "Duration of MCP requests as the gateway served them",
                HTTP_BUCKETS,
            ),
            guard_checks: m
                .u64_counter("gateway.guardrail.checks")
                .with_unit("{check}")
                .with_description("Prompt guard checks by phase, type and outcome")
                .build(),
            guard_duration: f64_hist(
                "gateway.guardrail.duration",
                "s",
                "Time spent in prompt guard checks",
                GUARD_BUCKETS,
            ),
            provider,
            _io: io,
            stop_io: std::sync::Mutex::new(Some(stop_io)),
        }
    }

    /// Records one finished request (on the `telemetry` thread).
    pub fn record(&self, log: &RequestLog) {
        let duration = log.duration().as_secs_f64();
        let mut http = Vec::with_capacity(4);
        if !log.method.is_empty() {
            http.push(KeyValue::new("http.request.method", log.method.clone()));
        }
        if let Some(s) = log.status {
            http.push(KeyValue::new("http.response.status_code", i64::from(s)));
        }
        if let Some(r) = &log.route {
            http.push(KeyValue::new("http.route", r.clone()));
        }
        self.http_duration.record(duration, &http);
        if let Some(l) = &log.llm {
            let mut a = Vec::with_capacity(5);
            if !l.operation.is_empty() {
                a.push(KeyValue::new("gen_ai.operation.name", l.operation));
            }
            a.push(KeyValue::new("gen_ai.provider.name", l.provider.clone()));
            if let Some(m) = &l.request_model {
                a.push(KeyValue::new("gen_ai.request.model", m.clone()));
            }
            if let Some(m) = &l.response_model {
                a.push(KeyValue::new("gen_ai.response.model", m.clone()));
            }
            if log.status.is_some_and(|s| s >= 400) || log.error.is_some() {
                let e = log.status.map_or_else(|| "error".into(), |s| s.to_string());
                a.push(KeyValue::new("error.type", e));
            }
            self.operation_duration.record(duration, &a);
            for (kind, n) in [("input", l.input_tokens), ("output", l.output_tokens)] {
                if let Some(n) = n {
                    let mut t = a.clone();
                    t.push(KeyValue::new("gen_ai.token.type", kind));
                    self.token_usage.record(n, &t);
                }
            }
            if let Some(ttft) = l.first_token {
                self.ttft.record(ttft.as_secs_f64(), &a);
            }
            if let Some(out) = l.output_tokens.filter(|n| *n > 0) {
                let gen_time = duration - l.first_token.map_or(0.0, |t| t.as_secs_f64());
                self.tpot.record(gen_time.max(0.0) / out as f64, &a);
            }
            if let Some(total) = l.cost.as_ref().and_then(|c| c.total()) {
                use rust_decimal::prelude::ToPrimitive;
                self.cost.add(total.to_f64().unwrap_or(0.0), &a);
            }
        }
        if let Some(m) = &log.mcp {
            let mut a = Vec::with_capacity(3);
            if let Some(v) = &m.method {
                a.push(KeyValue::new("mcp.method.name", v.clone()));
            }
            if let Some(v) = &m.tool_name {
                a.push(KeyValue::new("gen_ai.tool.name", v.clone()));
            }
            if let Some(v) = &m.error_type {
                a.push(KeyValue::new("error.type", v.clone()));
            }
            self.mcp_duration.record(duration, &a);
        }
        if let Some(g) = &log.guard {
            for c in &g.checks {
                let phase = match c.phase {
                    GuardPhase::Request => "request",
                    GuardPhase::Response => "response",
                };
                let action = match c.action {
                    GuardAction::Allow => "allow",
                    GuardAction::Mask => "mask",
                    GuardAction::FailOpen => "fail_open",
                    GuardAction::Reject => "reject",
                };
                let a = [
                    KeyValue::new("guardrail.phase", phase),
                    KeyValue::new("guardrail.type", c.kind),
                    KeyValue::new("guardrail.action", action),
                ];
                self.guard_checks.add(1, &a);
                self.guard_duration.record(c.busy.as_secs_f64(), &a[..2]);
            }
        }
    }

    /// Exports what is recorded and stops (blocking, bounded by the SDK's own timeout).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!(error = %e, "OTLP metrics shutdown");
        }
        if let Some(stop) = self.stop_io.lock().ok().and_then(|mut s| s.take()) {
            let _ = stop.send(());
        }
    }
}
