//! What telemetry does per request, compiled from config: the access log's fields, filter and
//! level, and tracing's fields, filter and sampling. A `Policy` is immutable; a reload compiles
//! a new one (`Telemetry::prepare`) and swaps it in (`Telemetry::apply`), so the next request
//! sees every changed expression and a request never sees half of each.
//!
//! What a policy does not hold waits for a restart: the OTLP exporter (its identity is
//! `ExporterId`), the access-log writer and its format.

use std::sync::Arc;

use crate::cel::{Expression, Refs};
use crate::config::telemetry::RawLogging;

use super::fields::Fields;
use super::sampling::Sampler;
use super::settings::{Export, TracingSettings};
use super::{Capture, TelemetryError};

/// Tracing's per-request part.
pub(super) struct TracePolicy {
    pub fields: Fields,
    pub random: Sampler,
    pub client: Sampler,
    pub filter: Option<Expression>,
}

/// The access log's per-request part.
pub(super) struct LogPolicy {
    /// `false` when the level hides `info` (agentgateway's behaviour).
    pub enabled: bool,
    pub fields: Fields,
    pub filter: Option<Expression>,
}

pub(super) struct Policy {
    /// `None` when no exporter runs. Shared with the next policy when a reload changed the
    /// exporter (the running tracing block then stays whole until the restart).
    pub tracer: Option<Arc<TracePolicy>>,
    pub log: LogPolicy,
    /// Variables the telemetry thread builds per request (union over fields and filters).
    pub refs: Refs,
    /// Request data the proxy captures for them (and for sampling).
    pub capture: Capture,
}

/// What makes one OTLP exporter: changing any of it needs a new exporter, so a restart.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct ExporterId {
    pub export: Export,
    pub resources: Vec<(String, String)>,
    pub service_name: Option<String>,
    pub env_resources: Vec<(String, String)>,
}

impl ExporterId {
    pub fn of(s: &TracingSettings) -> ExporterId {
        ExporterId {
            export: s.export.clone(),
            resources: s.resources.clone(),
            service_name: s.service_name.clone(),
            env_resources: s.env_resources.clone(),
        }
    }

    /// For the reload report: where spans go, never header values (they carry credentials).
    pub fn describe(id: Option<&ExporterId>) -> String {
        let Some(id) = id else {
            return "off".into();
        };
        let protocol = format!("{:?}", id.export.protocol).to_lowercase();
        let mut s = format!("{protocol} {}", id.export.url);
        if !id.export.headers.is_empty() {
            let names: Vec<&str> = id.export.headers.iter().map(|(k, _)| k.as_str()).collect();
            s.push_str(&format!(" (headers: {})", names.join(", ")));
        }
        if !id.resources.is_empty() || id.service_name.is_some() {
            s.push_str(" (resource attributes)");
        }
        s
    }
}

pub(super) fn compile_opt(
    src: Option<&(String, String)>,
) -> Result<Option<Expression>, TelemetryError> {
    src.map(|(path, s)| {
        Expression::compile(s).map_err(|source| TelemetryError::Cel {
            path: path.clone(),
            source,
        })
    })
    .transpose()
}

/// `warn`, `error` or `off` as the default level hides `info` access lines, as in agentgateway.
fn level_allows_info(level: Option<&str>) -> bool {
    let Some(level) = level else { return true };
    let default = level
        .split(',')
        .map(str::trim)
        .find(|d| !d.contains('='))
        .unwrap_or("info");
    !matches!(
        default.to_ascii_lowercase().as_str(),
        "warn" | "warning" | "error" | "off"
    )
}

impl Policy {
    /// Compiles the access log's expressions and joins them with `tracer` (compiled by
    /// `TracePolicy::compile`). Errors name the YAML path and the bad value.
    pub fn compile(
        logging: Option<&RawLogging>,
        tracer: Option<Arc<TracePolicy>>,
    ) -> Result<Policy, TelemetryError> {
        let log = LogPolicy::compile(logging)?;
        let mut refs = log.fields.refs();
        let mut start_refs = Refs::default();
        if let Some(f) = &log.filter {
            refs = refs.union(f.references());
        }
        if let Some(t) = &tracer {
            refs = refs.union(t.fields.refs());
            if let Some(f) = &t.filter {
                refs = refs.union(f.references());
            }
            start_refs = t.random.refs().union(t.client.refs());
        }
        let all = refs.union(start_refs);
        let capture = Capture {
            prompt: all.llm_prompt,
            completion: all.llm_completion,
            request_headers: all.request_headers,
            response_headers: all.response_headers,
        };
        Ok(Policy {
            tracer,
            log,
            refs,
            capture,
        })
    }
}

impl LogPolicy {
    fn compile(raw: Option<&RawLogging>) -> Result<LogPolicy, TelemetryError> {
        const L: &str = "config.logging";
        let fields = match raw.and_then(|l| l.fields.as_ref()) {
            Some(f) => Fields::compile(&f.add, &f.remove, &format!("{L}.fields.add"))?,
            None => Fields::default(),
        };
        let filter = raw
            .and_then(|l| l.filter.clone())
            .map(|f| (format!("{L}.filter"), f));
        Ok(LogPolicy {
            enabled: level_allows_info(raw.and_then(|l| l.level.as_deref())),
            fields,
            filter: compile_opt(filter.as_ref())?,
        })
    }
}

impl TracePolicy {
    pub fn compile(s: &TracingSettings) -> Result<Arc<TracePolicy>, TelemetryError> {
        let mut fields = Fields::compile(&Default::default(), &s.remove, "")?;
        for (path, add) in &s.add {
            fields.extend(Fields::compile(add, &[], path)?);
        }
        let random = match &s.random {
            Some((path, v)) => Sampler::compile(v, path)?,
            None => Sampler::Always(false),
        };
        let client = match &s.client {
            Some((path, v)) => Sampler::compile(v, path)?,
            None => Sampler::Always(true),
        };
        Ok(Arc::new(TracePolicy {
            fields,
            random,
            client,
            filter: compile_opt(s.filter.as_ref())?,
        }))
    }
}
