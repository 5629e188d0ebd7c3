//! Request telemetry: OTLP spans, the access log, and the request metrics, all produced once per
//! request from the finished `RequestLog`.
//!
//! Request phases that touch telemetry (the proxy calls exactly these):
//! ```text
//! start(headers, log)          traceparent → parent; sampling; ids into log.trace
//! inject_upstream(log, hdrs)   CLIENT span id → log.upstream_span_id; traceparent upstream
//! traceparent_for(log, id)     child context for MCP target calls
//! submit(log)                  metrics now; access log line and spans on the telemetry
//!                              thread (never blocks; inline when that thread falls behind)
//! finish(log)                  metrics, access log line and spans, all inline
//! shutdown()                   flush queued logs and spans, bounded by a deadline
//! ```
//! The proxy calls `submit` as the response ends: only the metric update (a few counter and
//! histogram increments) runs on the request's worker thread, so `/metrics` reflects a request
//! as soon as its client has the response. Evaluating CEL fields, formatting the access-log
//! line and building spans happen on a dedicated `telemetry` thread, and OTLP export on its own
//! thread (`otlp`), so none of that delays responses or competes with the proxy's tokio workers.
//! Tracing is configured once at startup (`config.tracing`, `frontendPolicies.tracing`, or
//! `OTEL_*` env vars; see `settings`). Every CEL expression is compiled in `Telemetry::new`;
//! `capture()` tells the proxy which optional request data any of them reads.

pub mod accesslog;
pub mod attrs;
pub mod fields;
pub mod logs;
pub mod meters;
mod otlp;
mod policy;
pub mod sampling;
pub mod settings;
mod spans;
#[cfg(test)]
mod tests;
pub mod traceparent;
pub mod wire;

use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue};
use opentelemetry::KeyValue;
pub use opentelemetry_proto::tonic::trace::v1::Span;

use arc_swap::ArcSwap;

use crate::cel::{CelError, Executor, Expression};
use crate::config::restart::Pending;
use crate::config::telemetry::{RawConvention, RawFrontendTracing, RawLogging, RawTracing};
use crate::ctx::redact;
use crate::ctx::{RequestLog, TraceIds};
use crate::metrics::Metrics;

use accesslog::{Format, Sink};
use fields::{AttrValue, Attrs, FieldOutcome, Fields};
use policy::{ExporterId, Policy, TracePolicy};
use spans::SpanRec;

/// Configuration errors. Each names the YAML path (or env var) and the bad value.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("{path}: {source}")]
    Cel {
        path: String,
        #[source]
        source: CelError,
    },
    #[error("{path}: {msg} (got {value:?})")]
    Invalid {
        path: String,
        value: String,
        msg: String,
    },
    #[error("OTLP exporter for {endpoint}: {msg}")]
    Exporter { endpoint: String, msg: String },
    #[error("starting the access log writer: {0}")]
    Io(#[from] std::io::Error),
}

/// The raw config sections telemetry reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct TelemetryConfig<'a> {
    pub tracing: Option<&'a RawTracing>,
    /// `frontendPolicies.accessLog.otlp`.
    pub otlp_logs: Option<&'a crate::config::telemetry::RawOtlpLogging>,
    pub logging: Option<&'a RawLogging>,
    pub frontend_tracing: Option<&'a RawFrontendTracing>,
    pub gateway_name: &'a str,
}

/// Optional request data that some configured expression reads; the proxy captures only these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capture {
    pub prompt: bool,
    pub completion: bool,
    pub request_headers: bool,
    pub response_headers: bool,
}

/// A compiled telemetry config a reload swaps in: `Telemetry::prepare`, then `apply`.
pub struct Prepared {
    policy: Policy,
    /// Telemetry settings that changed but wait for a restart (the tracing exporter).
    pub restart: Vec<Pending>,
}

/// Where finished requests go once their log line and spans are written: the built-in
/// viewer's ring of recent requests (`admin::ui`). Called on the `telemetry` thread (inline
/// only when that thread is behind), never on a proxy worker's response path; it takes the
/// record itself, so keeping it costs no copy.
pub trait RequestSink: Send + Sync {
    fn record(&self, log: Box<RequestLog>);
}

/// Per-process telemetry, shared by every request.
pub struct Telemetry {
    gateway_name: String,
    /// Fields, filters and sampling: swapped whole by a reload.
    policy: ArcSwap<Policy>,
    /// One span exporter per trace destination, in `TracePolicy::dests` order, and what they
    /// were built from (start-up only).
    queues: Vec<otlp::SpanQueue>,
    exporter: Option<ExporterId>,
    /// The access log's format and writer (start-up only).
    format: Format,
    log_sink: Sink,
    metrics: Arc<Metrics>,
    /// Access-log records over OTLP (start-up only).
    log_export: Option<logs::LogExport>,
    /// Request metrics pushed over OTLP (`OTEL_METRICS_EXPORTER=otlp`; start-up only).
    meters: Option<Arc<meters::OtlpMetrics>>,
    /// The `telemetry` thread's queue; `None` in unit tests, which finish inline.
    worker: Option<SyncSender<Job>>,
    /// The viewer's ring, when the admin server serves `/ui` and its ring is not size 0.
    sink: OnceLock<Arc<dyn RequestSink>>,
}

/// Finished requests that may wait for the `telemetry` thread; past this, `submit` does the
/// work inline (slower responses rather than lost log lines or spans).
const WORKER_QUEUE: usize = 4096;

enum Job {
    Emit(Box<RequestLog>),
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("gateway", &self.gateway_name)
            .field("tracing", &self.queues.len())
            .field("capture", &self.policy.load().capture)
            .finish_non_exhaustive()
    }
}

// === impl Telemetry ===

impl Telemetry {
    /// Builds exporters and compiles every CEL expression. Errors name the YAML path + bad value.
    pub fn new(
        cfg: TelemetryConfig<'_>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Telemetry>, TelemetryError> {
        let sink = Sink::stdout()?;
        let (tx, rx) = std::sync::mpsc::sync_channel(WORKER_QUEUE);
        let t = Self::build(cfg, metrics, sink, &|k| std::env::var(k).ok(), Some(tx))?;
        let weak = Arc::downgrade(&t);
        std::thread::Builder::new()
            .name("telemetry".into())
            .spawn(move || work_loop(weak, rx))?;
        Ok(t)
    }

    fn build(
        cfg: TelemetryConfig<'_>,
        metrics: Arc<Metrics>,
        sink: Sink,
        env: &dyn Fn(&str) -> Option<String>,
        worker: Option<SyncSender<Job>>,
    ) -> Result<Arc<Telemetry>, TelemetryError> {
        let format = access_log_format(cfg.logging)?;
        let settings = settings::resolve(cfg.tracing, cfg.frontend_tracing, env)?;
        let tracer = settings.as_ref().map(TracePolicy::compile).transpose()?;
        let policy = Policy::compile(cfg.logging, tracer)?;
        let log_export = cfg
            .otlp_logs
            .map(|raw| logs::LogExport::start(raw, otlp::resource(Vec::new()), metrics.clone()))
            .transpose()?;
        let meters = {
            let (attrs, name) = settings::env_resource(env);
            meters::OtlpMetrics::from_env(
                env,
                otlp::resource(resource_kvs(&attrs, name.as_deref())),
            )?
            .map(Arc::new)
        };
        let (queues, exporter) = match &settings {
            Some(s) => (
                Self::start_exporters(s, metrics.clone())?,
                Some(ExporterId::of(s)),
            ),
            None => (Vec::new(), None),
        };
        Ok(Arc::new(Telemetry {
            gateway_name: cfg.gateway_name.to_owned(),
            policy: ArcSwap::from_pointee(policy),
            queues,
            exporter,
            format,
            log_sink: sink,
            metrics,
            log_export,
            meters,
            worker,
            sink: OnceLock::new(),
        }))
    }

    /// On reload: compiles the new config's fields, filters and sampling (every error names
    /// its YAML path; nothing changes until `apply`), and names the telemetry settings that
    /// wait for a restart. A changed exporter keeps the running tracing block whole.
    pub fn prepare(&self, cfg: TelemetryConfig<'_>) -> Result<Prepared, TelemetryError> {
        self.prepare_with(cfg, &|k| std::env::var(k).ok())
    }

    fn prepare_with(
        &self,
        cfg: TelemetryConfig<'_>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Prepared, TelemetryError> {
        access_log_format(cfg.logging)?;
        let settings = settings::resolve(cfg.tracing, cfg.frontend_tracing, env)?;
        let wanted = settings.as_ref().map(ExporterId::of);
        let mut restart = Vec::new();
        let tracer = if wanted == self.exporter {
            settings.as_ref().map(TracePolicy::compile).transpose()?
        } else {
            restart.push(Pending {
                path: "config.tracing (exporter)".into(),
                running: ExporterId::describe(self.exporter.as_ref()),
                configured: ExporterId::describe(wanted.as_ref()),
            });
            self.policy.load().tracer.clone()
        };
        Ok(Prepared {
            policy: Policy::compile(cfg.logging, tracer)?,
            restart,
        })
    }

    /// Swaps in a prepared config: the next request uses it.
    pub fn apply(&self, p: Prepared) {
        self.policy.store(Arc::new(p.policy));
    }

    /// One exporter per destination, each with its own queue and thread.
    fn start_exporters(
        s: &settings::TracingSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Vec<otlp::SpanQueue>, TelemetryError> {
        // Resource: OTEL_RESOURCE_ATTRIBUTES < OTEL_SERVICE_NAME < policy `resources`.
        let mut res = resource_kvs(&s.env_resources, s.service_name.as_deref());
        let exec = Executor::empty();
        for (name, src) in &s.resources {
            let path = format!("frontendPolicies.tracing.resources[{name:?}]");
            let expr = Expression::compile(src).map_err(|source| TelemetryError::Cel {
                path: path.clone(),
                source,
            })?;
            let v = exec
                .eval(&expr)
                .map_err(|source| TelemetryError::Cel { path, source })?;
            if let Some(a) = fields::to_attr(&v) {
                res.push(spans::to_kv(name.clone().into(), a));
            }
        }
        let resource = otlp::resource(res);
        s.dests
            .iter()
            .map(|d| {
                otlp::SpanQueue::start(
                    otlp::Signal::Traces,
                    &d.name,
                    &d.export,
                    resource.clone(),
                    metrics.clone(),
                )
            })
            .collect()
    }

    /// Which optional request data the config needs captured.
    pub fn capture(&self) -> Capture {
        let mut c = self.policy.load().capture;
        let mut m = self.metrics.references();
        if let Some(e) = &self.log_export {
            m = m.union(e.references());
        }
        c.request_headers |= m.request_headers;
        c.response_headers |= m.response_headers;
        c.prompt |= m.llm_prompt;
        c.completion |= m.llm_completion;
        c
    }

    /// Whether spans are exported at all.
    pub fn tracing_enabled(&self) -> bool {
        !self.queues.is_empty()
    }

    /// At request start: parse traceparent/tracestate from headers, decide sampling, assign ids
    /// into `log.trace`. Also fills `log.request_headers` (credentials skipped) when a
    /// configured expression reads them and the proxy has not.
    pub fn start(&self, headers: &HeaderMap, log: &mut RequestLog) {
        let policy = self.policy.load();
        if self.capture().request_headers && log.request_headers.is_empty() {
            log.request_headers = headers
                .iter()
                .filter(|(k, _)| !redact::is_sensitive(k.as_str()))
                .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect();
        }
        let Some(t) = &policy.tracer else { return };
        let incoming = headers
            .get(http::header::HeaderName::from_static("traceparent"))
            .and_then(|v| v.to_str().ok())
            .and_then(traceparent::parse);
        let sampler = if incoming.is_some() {
            &t.client
        } else {
            &t.random
        };
        let sampled = sampler.sample(log).unwrap_or_else(|e| {
            if !matches!(e, CelError::Missing(_)) {
                self.metrics
                    .cel_errors
                    .with_label_values(&["sampling"])
                    .inc();
            }
            false
        });
        log.trace = match incoming {
            Some(tp) => TraceIds {
                trace_id: tp.trace_id,
                span_id: traceparent::new_span_id(),
                parent_span_id: Some(tp.span_id),
                sampled,
            },
            None if sampled => TraceIds {
                trace_id: traceparent::new_trace_id(),
                span_id: traceparent::new_span_id(),
                parent_span_id: None,
                sampled: true,
            },
            None => TraceIds::default(),
        };
    }

    /// Before the upstream call: allocate the CLIENT span id (`log.upstream_span_id`) and write
    /// `traceparent` into `headers`. An incoming `tracestate` is vendor data for the trace and
    /// is forwarded unchanged (the gateway adds no entry of its own), so it is left in place.
    pub fn inject_upstream(&self, log: &mut RequestLog, headers: &mut HeaderMap) {
        if log.trace.trace_id == [0; 16] {
            return;
        }
        let id = traceparent::new_span_id();
        log.upstream_span_id = Some(id);
        let tp = traceparent::format(&log.trace.trace_id, &id, log.trace.sampled);
        if let Ok(v) = HeaderValue::from_str(&tp) {
            headers.insert(http::header::HeaderName::from_static("traceparent"), v);
        }
        if let Some(ts) = headers.get("tracestate")
            && ts
                .to_str()
                .ok()
                .and_then(traceparent::sanitize_tracestate)
                .is_none()
        {
            headers.remove("tracestate");
        }
    }

    /// W3C traceparent string for a child span of this request (MCP helper uses it for
    /// `params._meta` / target headers).
    pub fn traceparent_for(&self, log: &RequestLog, span_id: [u8; 8]) -> Option<String> {
        (log.trace.trace_id != [0; 16])
            .then(|| traceparent::format(&log.trace.trace_id, &span_id, log.trace.sampled))
    }

    /// At request end, on the proxy's path: records the metrics now and hands the rest (access
    /// log line, spans) to the `telemetry` thread. Never blocks: when that thread's queue is
    /// full the work is done here instead, so nothing is dropped.
    pub fn submit(&self, mut log: RequestLog) {
        if log.end.is_none() {
            log.end = Some(Instant::now());
        }
        self.metrics.record(&log);
        let idle = {
            let p = self.policy.load();
            !p.log.enabled && p.tracer.is_none() && self.meters.is_none()
        };
        if idle && self.sink.get().is_none() {
            return;
        }
        let log = Box::new(log);
        let Some(tx) = &self.worker else {
            return self.emit(log);
        };
        match tx.try_send(Job::Emit(log)) {
            Ok(()) => {}
            Err(
                TrySendError::Full(Job::Emit(log)) | TrySendError::Disconnected(Job::Emit(log)),
            ) => self.emit(log),
            Err(_) => {}
        }
    }

    /// Keeps every finished request in `sink` too (the viewer's ring). Set once, at start-up.
    pub fn record_to(&self, sink: Arc<dyn RequestSink>) {
        let _ = self.sink.set(sink);
    }

    /// Hands a finished request, whose log line and spans are written, to the viewer's ring.
    fn keep(&self, log: Box<RequestLog>) {
        if let Some(s) = self.sink.get() {
            s.record(log);
        }
    }

    /// At request end, all inline: metrics, access log line, spans.
    pub fn finish(&self, mut log: RequestLog) {
        if log.end.is_none() {
            log.end = Some(Instant::now());
        }
        self.metrics.record(&log);
        self.emit(Box::new(log));
    }

    /// The access log line and the spans of a finished request, written out at once; then
    /// the request goes to the viewer's ring.
    fn emit(&self, log: Box<RequestLog>) {
        let mut out = Batch::default();
        self.emit_into(&log, &mut out);
        self.flush_batch(&mut out, true);
        self.keep(log);
    }

    /// The access log line and the spans of a finished request, added to `out`.
    fn emit_into(&self, log: &RequestLog, out: &mut Batch) {
        let p = self.policy.load();
        let refs = match &self.log_export {
            Some(e) => p.refs.union(e.references()),
            None => p.refs,
        };
        if let Some(m) = &self.meters {
            m.record(log);
        }
        let exec = Executor::new(log, refs);
        let base = attrs::base(log);
        if p.log.enabled && p.log.filter.as_ref().is_none_or(|f| exec.eval_bool(f)) {
            self.write_log(&p.log.fields, log, &exec, &base, out);
        }
        if let Some(e) = &self.log_export
            && logs::keeps(e, &exec)
        {
            let fields = e.fields.as_ref().unwrap_or(&p.log.fields);
            let a = self.log_fields(fields, log, &exec, &base);
            let line = accesslog::format_text(log_time(log), &a);
            let rec = logs::record(log, a, line);
            wire::append_record(&rec, &mut out.logs);
            out.log_count += 1;
        }
        if let Some(t) = &p.tracer
            && !self.queues.is_empty()
            && log.trace.sampled
            && log.trace.trace_id != [0; 16]
            && t.filter.as_ref().is_none_or(|f| exec.eval_bool(f))
        {
            self.trace_into(t, log, &exec, &base, out);
        }
    }

    /// Encodes the request's spans, once, for every destination that keeps them (the
    /// exporters only frame batches). Destinations that send the block's own fields share one
    /// encoding; one whose exporter is behind is skipped and its spans counted as dropped
    /// (that work is shed first).
    fn trace_into(
        &self,
        t: &TracePolicy,
        log: &RequestLog,
        exec: &Executor,
        base: &Attrs,
        out: &mut Batch,
    ) {
        let n = spans::count(log);
        out.size_for(self.queues.len());
        out.shared.clear();
        for (i, (d, q)) in t.dests.iter().zip(&self.queues).enumerate() {
            if !d.keeps(&log.trace.trace_id, exec) {
                continue;
            }
            if !q.has_room(n) {
                q.dropped(n);
                continue;
            }
            if d.is_plain() && t.shared_encoding {
                if out.shared.is_empty() {
                    for s in self.build_spans(&t.fields, RawConvention::GenAi, log, exec, base) {
                        wire::append_span(&s, &mut out.shared, &mut out.scratch);
                    }
                }
                out.spans[i].extend_from_slice(&out.shared);
            } else {
                let fields = d.fields.as_ref().unwrap_or(&t.fields);
                for s in self.build_spans(fields, d.convention, log, exec, base) {
                    wire::append_span(&s, &mut out.spans[i], &mut out.scratch);
                }
            }
            out.span_count[i] += n;
        }
    }

    /// Hands a batch's lines to the access-log writer and, with `export`, its spans and OTLP
    /// log records to their exporters: one message (and at most one wake-up) each, however
    /// many requests it holds.
    fn flush_batch(&self, out: &mut Batch, export: bool) {
        if out.lines > 0 {
            let text = std::mem::take(&mut out.text);
            if !self.log_sink.send(text) {
                self.metrics.access_log_dropped.inc_by(out.lines);
            }
            out.lines = 0;
        }
        if !export {
            return;
        }
        if let Some(e) = &self.log_export
            && out.log_count > 0
        {
            e.queue.push(std::mem::take(&mut out.logs), out.log_count);
            out.log_count = 0;
        }
        for (i, q) in self.queues.iter().enumerate() {
            if let Some(n) = out.span_count.get_mut(i)
                && *n > 0
            {
                q.push(std::mem::take(&mut out.spans[i]), *n);
                *n = 0;
            }
        }
    }

    /// Every span of the request with its attributes: the default set, minus `remove`, plus
    /// the custom `fields`.
    fn build_spans<'a>(
        &self,
        fields: &Fields,
        convention: RawConvention,
        log: &'a RequestLog,
        exec: &Executor,
        base: &Attrs<'a>,
    ) -> Vec<SpanRec<'a>> {
        let mut a: Attrs<'a> = base
            .iter()
            .filter(|(k, _)| !fields.drops(k))
            .cloned()
            .collect();
        let mut genai = Attrs::new();
        if let Some(l) = &log.llm {
            attrs::genai(l, &mut genai);
        }
        let mut extra = Attrs::new();
        attrs::span_extra(log, &genai, &mut extra);
        a.extend(extra.into_iter().filter(|(k, _)| !fields.drops(k)));
        if convention == RawConvention::OpenInference {
            attrs::openinference(log, &mut a);
        }
        fields.eval_into(exec, &mut a, |_, o| self.count(o, "tracing"));
        let name = a
            .iter()
            .position(|(k, _)| k == "span.name")
            .map(|i| match a.remove(i).1 {
                AttrValue::Str(s) => s.into_owned(),
                other => other.to_string(),
            });
        spans::build(log, a, &genai, name)
    }

    /// The spans of a finished request exactly as they are (or, for a request that was not
    /// sampled, would be) exported over OTLP, custom `fields` included: for the viewer, built
    /// on demand from the kept record rather than kept for every request.
    pub fn view_spans(&self, log: &RequestLog) -> Vec<Span> {
        let p = self.policy.load();
        let exec = Executor::new(log, p.refs);
        let none = Fields::default();
        let fields = p.tracer.as_ref().map_or(&none, |t| &t.fields);
        self.build_spans(fields, RawConvention::GenAi, log, &exec, &attrs::base(log))
            .iter()
            .map(SpanRec::to_proto)
            .collect()
    }

    fn count(&self, o: FieldOutcome, source: &str) {
        if let FieldOutcome::Error(e) = o {
            tracing::debug!(error = %e, source, "telemetry field evaluation failed");
            self.metrics.cel_errors.with_label_values(&[source]).inc();
        }
    }

    fn write_log(
        &self,
        f: &Fields,
        log: &RequestLog,
        exec: &Executor,
        base: &Attrs,
        out: &mut Batch,
    ) {
        let ts = log_time(log);
        let line = if f.is_empty() && self.format == Format::Text {
            // The default line: written straight from the shared fields, no copy of them.
            let mut extra = Attrs::new();
            attrs::log_extra(log, &mut extra);
            accesslog::format_text_iter(ts, base.iter().chain(&extra).map(|(k, v)| (k.as_ref(), v)))
        } else {
            let a = self.log_fields(f, log, exec, base);
            match self.format {
                Format::Text => accesslog::format_text(ts, &a),
                Format::Json => accesslog::format_json(ts, &a),
            }
        };
        if out.lines > 0 {
            out.text.push('\n');
        }
        out.text.push_str(&line);
        out.lines += 1;
    }

    /// An access-log record's fields: the defaults less `remove`, then `add`.
    fn log_fields<'a>(
        &self,
        f: &Fields,
        log: &'a RequestLog,
        exec: &Executor,
        base: &Attrs<'a>,
    ) -> Attrs<'a> {
        let mut extra = Attrs::new();
        attrs::log_extra(log, &mut extra);
        let mut a: Attrs = base.iter().filter(|(k, _)| !f.drops(k)).cloned().collect();
        a.extend(extra.into_iter().filter(|(k, _)| !f.drops(k)));
        f.eval_into(exec, &mut a, |_, o| self.count(o, "logging"));
        a
    }

    /// Flush queued log lines and spans on shutdown (bounded by a deadline).
    pub async fn shutdown(&self) {
        if let Some(tx) = &self.worker {
            flush_channel(tx, Job::Flush, Duration::from_secs(2)).await;
        }
        // Every destination at once: a dead one costs its own deadline, not the others'.
        futures_util::future::join_all(self.queues.iter().map(|q| q.flush(Duration::from_secs(5))))
            .await;
        if let Some(e) = &self.log_export {
            e.queue.flush(Duration::from_secs(5)).await;
        }
        if let Some(m) = self.meters.clone() {
            // The SDK's final export may wait for a dead collector: bounded like the spans.
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::task::spawn_blocking(move || m.shutdown()),
            )
            .await;
        }
        self.log_sink.flush(Duration::from_secs(1)).await;
    }
}

/// Sends a flush marker (built by `marker` around an ack) into a bounded channel served by a
/// thread, then waits for that thread to ack it, i.e. to have handled everything queued
/// before it. Retries while the channel is full; gives up at `deadline`. For shutdown.
pub(crate) async fn flush_channel<T>(
    tx: &SyncSender<T>,
    marker: impl FnOnce(tokio::sync::oneshot::Sender<()>) -> T,
    deadline: Duration,
) {
    let (ack, done) = tokio::sync::oneshot::channel();
    let mut msg = marker(ack);
    let _ = tokio::time::timeout(deadline, async move {
        loop {
            match tx.try_send(msg) {
                Ok(()) => {
                    let _ = done.await;
                    return;
                }
                Err(TrySendError::Full(back)) => {
                    msg = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    })
    .await;
}

/// Resource attributes from the environment's (`settings::env_resource`), in increasing
/// precedence: `OTEL_RESOURCE_ATTRIBUTES`, then `OTEL_SERVICE_NAME`.
fn resource_kvs(attrs: &[(String, String)], service_name: Option<&str>) -> Vec<KeyValue> {
    let mut res: Vec<KeyValue> = attrs
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    if let Some(n) = service_name {
        res.push(KeyValue::new("service.name", n.to_owned()));
    }
    res
}

/// `config.logging.format`: the access log's (and the process log's) format.
fn access_log_format(raw: Option<&RawLogging>) -> Result<Format, TelemetryError> {
    match raw.and_then(|l| l.format.as_deref()) {
        None | Some("text") => Ok(Format::Text),
        Some("json") => Ok(Format::Json),
        Some(other) => Err(TelemetryError::Invalid {
            path: "config.logging.format".into(),
            value: other.to_owned(),
            msg: "must be `text` or `json`".into(),
        }),
    }
}

/// What the `telemetry` thread has produced since it last wrote out.
#[derive(Default)]
struct Batch {
    /// Access-log lines, `\n`-separated.
    text: String,
    lines: u64,
    /// Per destination: encoded `ScopeSpans.spans` entries (`wire::append_span`), and how many.
    spans: Vec<Vec<u8>>,
    span_count: Vec<usize>,
    /// One request's spans when several destinations send the same encoding.
    shared: Vec<u8>,
    /// One span's body while it is encoded (`wire::append_span`), reused.
    scratch: Vec<u8>,
    /// Encoded `ScopeLogs.log_records` entries, and how many.
    logs: Vec<u8>,
    log_count: usize,
}

impl Batch {
    /// Room for `n` destinations' spans.
    fn size_for(&mut self, n: usize) {
        if self.spans.len() < n {
            self.spans.resize_with(n, Vec::new);
            self.span_count.resize(n, 0);
        }
    }

    /// Spans and OTLP log records not yet handed to an exporter.
    fn pending(&self) -> usize {
        self.span_count.iter().sum::<usize>() + self.log_count
    }
}

/// When a request's access-log record is stamped: its end.
fn log_time(log: &RequestLog) -> Duration {
    log.start_time
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        + log
            .end
            .map_or(Duration::ZERO, |e| e.saturating_duration_since(log.start))
}

/// Most requests the `telemetry` thread handles before writing out.
const MAX_BATCH: usize = 512;
/// After a batch, the `telemetry` thread lets the next requests gather for this long: under
/// load it wakes (and wakes the access-log writer) a couple of hundred times a second rather
/// than once per request. Log lines are this much later; responses are not.
const BATCH_PAUSE: Duration = Duration::from_millis(5);
/// Spans and OTLP log records wait on the `telemetry` thread until this many are ready or the
/// oldest has waited `EXPORT_HOLD`, so the exporters wake a few times a second at moderate
/// load instead of after every batch (each wake-up costs more than framing the spans).
const EXPORT_PUSH: usize = 512;
const EXPORT_HOLD: Duration = Duration::from_millis(200);

/// The `telemetry` thread: emits finished requests' log lines and spans in batches, at a
/// lower CPU priority than the proxy's workers. Ends when its `Telemetry` is dropped.
fn work_loop(t: Weak<Telemetry>, rx: std::sync::mpsc::Receiver<Job>) {
    use std::sync::mpsc::RecvTimeoutError;
    lower_thread_priority();
    let mut out = Batch::default();
    let mut acks = Vec::new();
    // When the oldest span or log record not yet handed to an exporter was made.
    let mut held: Option<Instant> = None;
    loop {
        let first = match held {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(since) => rx.recv_timeout(EXPORT_HOLD.saturating_sub(since.elapsed())),
        };
        let Some(t) = t.upgrade() else { return };
        let first = match first {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                t.flush_batch(&mut out, true);
                held = None;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return t.flush_batch(&mut out, true),
        };
        let mut next = Some(first);
        let mut n = 0;
        while let Some(job) = next.take() {
            match job {
                Job::Emit(log) => {
                    t.emit_into(&log, &mut out);
                    t.keep(log);
                }
                Job::Flush(ack) => acks.push(ack),
            }
            n += 1;
            if n < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        let pending = out.pending();
        if pending > 0 && held.is_none() {
            held = Some(Instant::now());
        }
        let export = !acks.is_empty()
            || pending >= EXPORT_PUSH
            || held.is_some_and(|h| h.elapsed() >= EXPORT_HOLD);
        t.flush_batch(&mut out, export);
        if export {
            held = None;
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
        drop(t);
        std::thread::sleep(BATCH_PAUSE);
    }
}

/// Telemetry threads run at nice 10: when the cores are busy, forwarding traffic comes first
/// and telemetry catches up later (its queues are bounded; overflow is counted, never waited
/// for). Linux sets nice per thread.
pub(crate) fn lower_thread_priority() {
    // SAFETY: plain syscalls on the calling thread, no memory passed.
    let rc = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10)
    };
    if rc != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "could not lower the telemetry thread's priority"
        );
    }
}
