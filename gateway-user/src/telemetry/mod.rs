//! Request telemetry: OTLP spans, the access log, and the request metrics, all produced once per
//! request from the finished `RequestLog`.
//!
//! Placeholder until the telemetry subsystem lands: access log line only, no spans.

use std::sync::Arc;

use crate::config::telemetry::{RawFrontendTracing, RawLogging, RawTracing};
use crate::ctx::RequestLog;
use crate::metrics::Metrics;

pub mod redact {
    //! Which headers carry secrets.
    pub fn is_sensitive(name: &str) -> bool {
        matches!(
            name.to_ascii_lowercase().as_str(),
            "authorization"
                | "proxy-authorization"
                | "x-api-key"
                | "api-key"
                | "x-goog-api-key"
                | "cookie"
                | "set-cookie"
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("{path}: {message}")]
    Config { path: String, message: String },
}

pub struct TelemetryConfig<'a> {
    pub tracing: Option<&'a RawTracing>,
    pub logging: Option<&'a RawLogging>,
    pub frontend_tracing: Option<&'a RawFrontendTracing>,
    pub gateway_name: &'a str,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Capture {
    pub prompt: bool,
    pub completion: bool,
    pub request_headers: bool,
    pub response_headers: bool,
}

pub struct Telemetry {
    metrics: Arc<Metrics>,
}

impl Telemetry {
    pub fn new(
        _cfg: TelemetryConfig<'_>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Telemetry>, TelemetryError> {
        Ok(Arc::new(Telemetry { metrics }))
    }
    pub fn start(&self, _headers: &http::HeaderMap, _log: &mut RequestLog) {}
    pub fn inject_upstream(&self, _log: &mut RequestLog, _headers: &mut http::HeaderMap) {}
    pub fn traceparent_for(&self, _log: &RequestLog, _span_id: [u8; 8]) -> Option<String> {
        None
    }
    pub fn capture(&self) -> Capture {
        Capture::default()
    }
    pub fn finish(&self, log: RequestLog) {
        let status = log.status.unwrap_or(0).to_string();
        self.metrics
            .requests
            .with_label_values(&[log.route.as_deref().unwrap_or(""), &status])
            .inc();
        let llm = log.llm.as_ref();
        println!(
            "info\trequest\tgateway={} listener={} route={} endpoint={} http.method={} http.path={} http.status={} llm.provider={} llm.request.model={} llm.request.tokens={} llm.response.model={} llm.response.tokens={} duration={}ms{}",
            log.gateway,
            log.listener,
            log.route.as_deref().unwrap_or(""),
            log.endpoint.as_deref().unwrap_or(""),
            log.method,
            log.path,
            status,
            llm.map(|l| l.provider.as_str()).unwrap_or(""),
            llm.and_then(|l| l.request_model.as_deref()).unwrap_or(""),
            llm.and_then(|l| l.input_tokens)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            llm.and_then(|l| l.response_model.as_deref()).unwrap_or(""),
            llm.and_then(|l| l.output_tokens)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            log.duration().as_millis(),
            log.error
                .as_deref()
                .map(|e| format!(" error={e:?}"))
                .unwrap_or_default(),
        );
    }
    pub async fn shutdown(&self) {}
}
