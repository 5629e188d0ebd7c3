//! What telemetry does per request, compiled from config: the access log's fields, filter and
//! level, and tracing's fields, filter and sampling. A `Policy` is immutable; a reload compiles
//! a new one (`Telemetry::prepare`) and swaps it in (`Telemetry::apply`), so the next request
//! sees every changed expression and a request never sees half of each.
//!
//! What a policy does not hold waits for a restart: the OTLP exporter (its identity is
//! `ExporterId`), the access-log writer and its format.

use std::sync::Arc;

use crate::cel::{Expression, Refs};
use crate::config::telemetry::{RawConvention, RawLogging};

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
    /// What each destination keeps, in the order of `Telemetry::queues`.
    pub dests: Vec<DestPolicy>,
    /// Whether more than one destination sends the block's own fields (`DestPolicy::is_plain`):
    /// they then share one encoding of each span.
    pub shared_encoding: bool,
}

/// One destination's own choices (`config.tracing.destinations[]`).
pub(super) struct DestPolicy {
    /// Its own attributes, else the block's `fields`.
    pub fields: Option<Fields>,
    pub filter: Option<Expression>,
    /// Keeps a traced request when the low 64 bits of its trace id are at most this (a share
    /// of traces chosen by id, so every span of a trace goes or none does).
    pub bound: Option<u64>,
    pub convention: RawConvention,
}

impl DestPolicy {
    /// Whether this destination takes the request's spans.
    pub fn keeps(&self, trace_id: &[u8; 16], exec: &crate::cel::Executor) -> bool {
        if let Some(b) = self.bound {
            let mut low = [0u8; 8];
            low.copy_from_slice(&trace_id[8..]);
            if u64::from_be_bytes(low) > b {
                return false;
            }
        }
        self.filter.as_ref().is_none_or(|f| exec.eval_bool(f))
    }

    /// Whether it sends exactly what the block's fields make (so one encoding serves both).
    pub fn is_plain(&self) -> bool {
        self.fields.is_none() && self.convention == RawConvention::GenAi
    }
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

/// What makes the OTLP exporters: changing any of it needs new exporters, so a restart.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct ExporterId {
    /// Each destination's name and target.
    pub exports: Vec<(String, Export)>,
    pub resources: Vec<(String, String)>,
    pub service_name: Option<String>,
    pub env_resources: Vec<(String, String)>,
}

impl ExporterId {
    pub fn of(s: &TracingSettings) -> ExporterId {
        ExporterId {
            exports: s
                .dests
                .iter()
                .map(|d| (d.name.clone(), d.export.clone()))
                .collect(),
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
        let mut parts = Vec::new();
        for (name, e) in &id.exports {
            let protocol = format!("{:?}", e.protocol).to_lowercase();
            let mut s = format!("{protocol} {}", e.url);
            if name != super::settings::PRIMARY {
                s = format!("{name}: {s}");
            }
            if !e.headers.is_empty() {
                let names: Vec<&str> = e.headers.iter().map(|(k, _)| k.as_str()).collect();
                s.push_str(&format!(" (headers: {})", names.join(", ")));
            }
            parts.push(s);
        }
        let mut s = parts.join("; ");
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
            for d in &t.dests {
                if let Some(f) = &d.fields {
                    refs = refs.union(f.refs());
                }
                if let Some(f) = &d.filter {
                    refs = refs.union(f.references());
                }
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
        let dests = s
            .dests
            .iter()
            .map(|d| {
                let fields = d
                    .fields
                    .as_ref()
                    .map(|(path, f)| Fields::compile(&f.add, &f.remove, path))
                    .transpose()?;
                Ok(DestPolicy {
                    fields,
                    filter: compile_opt(d.filter.as_ref())?,
                    // `r` of the u64 range: 1.0 keeps every trace id.
                    bound: d
                        .sampling
                        .filter(|r| *r < 1.0)
                        .map(|r| (r * u64::MAX as f64) as u64),
                    convention: d.convention,
                })
            })
            .collect::<Result<Vec<_>, TelemetryError>>()?;
        let shared_encoding = dests.iter().filter(|d| d.is_plain()).count() > 1;
        Ok(Arc::new(TracePolicy {
            fields,
            random,
            client,
            filter: compile_opt(s.filter.as_ref())?,
            dests,
            shared_encoding,
        }))
    }
}
