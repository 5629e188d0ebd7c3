//! `frontendPolicies.accessLog.otlp` (agentgateway's `OtlpLoggingConfig`): one OTLP log
//! record per request, with the trace and span ids and the access-log fields as attributes
//! (or the block's own `fields`), sent through the same bounded queue and framing as spans
//! (`otlp::Signal::Logs`, `LogsService/Export` or `POST /v1/logs`). Built at start-up.

use std::time::{Duration, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};

use super::TelemetryError;
use super::fields::{Attrs, Fields};
use super::otlp::{Signal, SpanQueue};
use super::settings::Export;
use crate::cel::{Executor, Expression, Refs};
use crate::config::telemetry::{RawOtlpLogging, RawProtocol};
use crate::ctx::RequestLog;
use crate::metrics::Metrics;

const P: &str = "frontendPolicies.accessLog.otlp";

/// The OTLP log export: where, which requests, which fields.
pub struct LogExport {
    pub queue: SpanQueue,
    pub filter: Option<Expression>,
    /// `None`: the access log's own fields.
    pub fields: Option<Fields>,
}

impl std::fmt::Debug for LogExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogExport").finish_non_exhaustive()
    }
}

impl LogExport {
    /// Validates the block and starts its exporter.
    pub fn start(
        raw: &RawOtlpLogging,
        resource: opentelemetry_sdk::Resource,
        metrics: std::sync::Arc<Metrics>,
    ) -> Result<LogExport, TelemetryError> {
        let invalid = |field: &str, value: String, msg: &str| TelemetryError::Invalid {
            path: format!("{P}.{field}"),
            value,
            msg: msg.into(),
        };
        for (field, set) in [
            ("service", raw.service.is_some()),
            ("backend", raw.backend.is_some()),
            ("policies", raw.policies.is_some()),
        ] {
            if set {
                return Err(invalid(
                    field,
                    "set".into(),
                    "not supported by this gateway: give the collector as `host`",
                ));
            }
        }
        let host = raw.host.as_deref().ok_or_else(|| {
            invalid(
                "host",
                "missing".into(),
                "required: the collector's host:port",
            )
        })?;
        let base = if host.contains("://") {
            host.trim_end_matches('/').to_owned()
        } else {
            format!("http://{host}")
        };
        let protocol = raw.protocol.unwrap_or_default();
        let url = match protocol {
            RawProtocol::Grpc => base,
            RawProtocol::Http => {
                let path = raw.path.as_deref().unwrap_or("/v1/logs");
                if !path.starts_with('/') {
                    return Err(invalid("path", path.into(), "must start with `/`"));
                }
                format!("{base}{path}")
            }
        };
        if url.parse::<http::Uri>().is_err() {
            return Err(invalid("host", host.into(), "not a host:port or URL"));
        }
        let filter = raw
            .filter
            .as_ref()
            .map(|f| {
                Expression::compile(f).map_err(|source| TelemetryError::Cel {
                    path: format!("{P}.filter"),
                    source,
                })
            })
            .transpose()?;
        let fields = raw
            .fields
            .as_ref()
            .map(|f| Fields::compile(&f.add, &f.remove, &format!("{P}.fields.add")))
            .transpose()?;
        let export = Export {
            protocol,
            url,
            headers: Vec::new(),
        };
        let queue = SpanQueue::start(Signal::Logs, "logs", &export, resource, metrics)?;
        Ok(LogExport {
            queue,
            filter,
            fields,
        })
    }

    /// What its filter and fields read.
    pub fn references(&self) -> Refs {
        let mut r = self.fields.as_ref().map_or(Refs::default(), Fields::refs);
        if let Some(f) = &self.filter {
            r = r.union(f.references());
        }
        r
    }
}

/// The record for one request: `attrs` (the fields, already evaluated) as attributes, the
/// text line as its body, the request's end as its time, INFO severity.
pub fn record(log: &RequestLog, attrs: Attrs<'_>, line: String) -> LogRecord {
    let ts = log
        .start_time
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        + log
            .end
            .map_or(Duration::ZERO, |e| e.saturating_duration_since(log.start));
    let nanos = u64::try_from(ts.as_nanos()).unwrap_or(u64::MAX);
    let traced = log.trace.trace_id != [0; 16];
    LogRecord {
        time_unix_nano: nanos,
        observed_time_unix_nano: nanos,
        severity_number: SeverityNumber::Info as i32,
        severity_text: "INFO".into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(line)),
        }),
        attributes: attrs
            .into_iter()
            .map(|(k, v)| super::wire::kv(k, v))
            .collect(),
        flags: u32::from(log.trace.sampled),
        trace_id: if traced {
            log.trace.trace_id.to_vec()
        } else {
            Vec::new()
        },
        span_id: if traced {
            log.trace.span_id.to_vec()
        } else {
            Vec::new()
        },
        ..LogRecord::default()
    }
}

/// Whether the block's filter keeps the request.
pub fn keeps(e: &LogExport, exec: &Executor) -> bool {
    e.filter.as_ref().is_none_or(|f| exec.eval_bool(f))
}
