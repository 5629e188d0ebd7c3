//! OTLP export through a bounded queue.
//!
//! The `telemetry` thread hands encoded spans (or log records) to `SpanQueue::push`, which
//! never waits: what does not fit in the queue is dropped and counted
//! (`agentgateway_tracing_spans_dropped_total{reason="queue_full"}`). One background task, on
//! its own thread, gathers them into batches (`MAX_BATCH` spans, or whatever is there every
//! `FLUSH_EVERY`), frames each as an `ExportTraceServiceRequest` (`wire::Envelope`) and sends
//! it: gRPC through tonic (`TraceService/Export`, the bytes passed through a codec that does not
//! re-encode them) or protobuf over HTTP through our hyper-rustls client, with a deadline. Up
//! to `IN_FLIGHT` exports are on their way at once, so the collector's round trips do not
//! hold up the queue; only a collector slower than the gateway (or down) makes it overflow.
//! Failed batches are counted as `export_failed`, spans a collector reports as rejected
//! (`partial_success`) as `rejected`. A slow or dead collector therefore only ever costs
//! dropped spans, never request latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use http_body_util::BodyExt;
use opentelemetry::KeyValue;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_sdk::Resource;
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::TelemetryError;
use super::settings::Export;
use super::wire::Envelope;
use crate::config::telemetry::RawProtocol;
use crate::metrics::Metrics;

/// Spans that may wait for export before new ones are dropped (about 4,000 requests' worth).
pub const QUEUE: usize = 8192;
pub(crate) const MAX_BATCH: usize = 512;
/// Export requests on their way at once: a collector's round trip does not hold up the next
/// batch (the same connection carries them, multiplexed over HTTP/2 for gRPC).
pub(crate) const IN_FLIGHT: usize = 4;
const FLUSH_EVERY: Duration = Duration::from_secs(1);
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a queue exports: spans, or access-log records (`frontendPolicies.accessLog.otlp`).
/// Both requests have the same shape (resource, scope, entries under field 2 of field 2 of
/// field 1), so one framing serves both; the service path and the drop counter differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Logs,
}

impl Signal {
    fn grpc_path(self) -> &'static str {
        match self {
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        }
    }

    /// Counts `n` entries that never reached the collector `dest`.
    fn drop(self, metrics: &Metrics, dest: &str, reason: &str, n: u64) {
        match self {
            Signal::Traces => metrics
                .spans_dropped
                .with_label_values(&[dest, reason])
                .inc_by(n),
            Signal::Logs => metrics.access_log_dropped.inc_by(n),
        }
    }
}

enum Msg {
    /// Encoded `ScopeSpans.spans` entries and how many spans they hold.
    Spans(Vec<u8>, usize),
    Flush(oneshot::Sender<()>),
}

/// Handle to the export task.
#[derive(Debug)]
pub struct SpanQueue {
    signal: Signal,
    /// The trace destination's name (`settings::PRIMARY` for the block's own collector).
    dest: String,
    tx: mpsc::Sender<Msg>,
    /// The export thread.
    thread: std::thread::JoinHandle<()>,
    /// Spans sent to the export task and not yet taken into a batch. Messages carry a whole
    /// batch of requests' spans, so the bound is kept in spans, not messages.
    queued: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

/// gRPC codec for a request already encoded: its bytes go out as they are; the response is
/// decoded for `partial_success`.
#[derive(Clone, Copy, Debug, Default)]
struct Preencoded;

struct RawEncoder;
struct ResponseDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl tonic::codec::Decoder for ResponseDecoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// `partial_success.rejected_*` of an export response. The trace and logs responses have the
/// same layout, so the trace type reads both.
fn rejected(body: Bytes) -> i64 {
    ExportTraceServiceResponse::decode(body)
        .ok()
        .and_then(|r| r.partial_success)
        .map_or(0, |p| p.rejected_spans)
}

impl tonic::codec::Codec for Preencoded {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

/// The TLS-capable HTTP/1 connector every OTLP/HTTP exporter uses (webpki roots).
pub(super) type HttpsConnector =
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

pub(super) fn https_connector() -> HttpsConnector {
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build()
}

type HttpClient = hyper_util::client::legacy::Client<HttpsConnector, http_body_util::Full<Bytes>>;

/// Either transport, behind one `export` call. Cloning shares the connection.
#[derive(Clone)]
enum Exporter {
    Grpc {
        grpc: Box<tonic::client::Grpc<tonic::transport::Channel>>,
        metadata: tonic::metadata::MetadataMap,
        path: &'static str,
    },
    Http(Box<HttpTarget>),
}

#[derive(Clone)]
struct HttpTarget {
    client: HttpClient,
    url: http::Uri,
    headers: http::HeaderMap,
}

fn build_exporter(
    signal: Signal,
    export: &Export,
    timeout: Duration,
) -> Result<Exporter, TelemetryError> {
    let err = |e: &dyn std::fmt::Display| TelemetryError::Exporter {
        endpoint: export.url.clone(),
        msg: e.to_string(),
    };
    let mut headers = http::HeaderMap::new();
    for (k, v) in &export.headers {
        let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(|e| err(&e))?;
        let value = http::HeaderValue::from_str(v).map_err(|e| err(&e))?;
        headers.append(name, value);
    }
    match export.protocol {
        RawProtocol::Grpc => {
            let mut endpoint = tonic::transport::Endpoint::from_shared(export.url.clone())
                .map_err(|e| err(&e))?
                .timeout(timeout)
                .connect_timeout(timeout);
            if export.url.starts_with("https://") {
                endpoint = endpoint
                    .tls_config(tonic::transport::ClientTlsConfig::new().with_webpki_roots())
                    .map_err(|e| err(&e))?;
            }
            Ok(Exporter::Grpc {
                grpc: Box::new(tonic::client::Grpc::new(endpoint.connect_lazy())),
                metadata: tonic::metadata::MetadataMap::from_headers(headers),
                path: signal.grpc_path(),
            })
        }
        RawProtocol::Http => {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build(https_connector());
            let url: http::Uri = export.url.parse().map_err(|e| err(&e))?;
            Ok(Exporter::Http(Box::new(HttpTarget {
                client,
                url,
                headers,
            })))
        }
    }
}

impl Exporter {
    /// Sends one framed request; `Ok` carries the spans the collector says it rejected.
    async fn export(&mut self, body: Bytes) -> Result<i64, String> {
        match self {
            Exporter::Grpc {
                grpc,
                metadata,
                path,
            } => {
                grpc.ready().await.map_err(|e| e.to_string())?;
                let mut req = tonic::Request::new(body);
                *req.metadata_mut() = metadata.clone();
                let path = http::uri::PathAndQuery::from_static(path);
                let resp = grpc
                    .unary(req, path, Preencoded)
                    .await
                    .map_err(|s| format!("{}: {}", s.code(), s.message()))?;
                Ok(rejected(resp.into_inner()))
            }
            Exporter::Http(h) => {
                let HttpTarget {
                    client,
                    url,
                    headers,
                } = &**h;
                let mut req = http::Request::post(url.clone())
                    .body(http_body_util::Full::new(body))
                    .map_err(|e| e.to_string())?;
                *req.headers_mut() = headers.clone();
                req.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/x-protobuf"),
                );
                let resp = client.request(req).await.map_err(|e| e.to_string())?;
                let status = resp.status();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?
                    .to_bytes();
                if !status.is_success() {
                    return Err(format!("HTTP {status}"));
                }
                Ok(rejected(body))
            }
        }
    }
}

// === impl SpanQueue ===

impl SpanQueue {
    /// Builds the exporter and starts the export task on its own thread (`otlp`, a
    /// single-threaded tokio runtime): framing and sending batches never takes a turn on the
    /// proxy's workers.
    pub fn start(
        signal: Signal,
        dest: &str,
        export: &Export,
        resource: Resource,
        metrics: Arc<Metrics>,
    ) -> Result<SpanQueue, TelemetryError> {
        let fail = |msg: String| TelemetryError::Exporter {
            endpoint: export.url.clone(),
            msg,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail(format!("starting the export runtime: {e}")))?;
        // gRPC's lazy channel needs the runtime entered while it is built.
        let exporter = {
            let _guard = rt.enter();
            build_exporter(signal, export, EXPORT_TIMEOUT)?
        };
        let scope = InstrumentationScope {
            name: "gateway".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            ..InstrumentationScope::default()
        };
        let envelope = Envelope::new(&super::wire::resource(&resource), &scope);
        let (tx, rx) = mpsc::channel(QUEUE);
        let queued = Arc::new(AtomicUsize::new(0));
        let (m, url, q) = (metrics.clone(), export.url.clone(), queued.clone());
        let d = dest.to_owned();
        let name = match signal {
            Signal::Traces => "otlp",
            Signal::Logs => "otlp-logs",
        };
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                super::lower_thread_priority();
                rt.block_on(run(signal, d, exporter, envelope, rx, q, m, url))
            })
            .map_err(|e| fail(format!("starting the export thread: {e}")))?;
        Ok(SpanQueue {
            signal,
            dest: dest.to_owned(),
            tx,
            thread,
            queued,
            metrics,
        })
    }

    /// Enqueues `n` encoded spans (one or more requests'). Never waits: what does not fit is
    /// dropped and counted.
    pub fn push(&self, spans: Vec<u8>, n: usize) {
        if n == 0 {
            return;
        }
        let fits = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q + n <= QUEUE).then_some(q + n)
            })
            .is_ok();
        if !fits {
            return self.dropped(n);
        }
        if self.tx.try_send(Msg::Spans(spans, n)).is_err() {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            self.dropped(n);
        }
    }

    /// The export thread's name, while it runs.
    pub fn thread(&self) -> Option<&str> {
        (!self.thread.is_finished())
            .then(|| self.thread.thread().name())
            .flatten()
    }

    /// Whether `n` more spans would fit now. Lets the caller skip building spans that `push`
    /// would drop: when the exporter falls behind, that work is shed first.
    pub fn has_room(&self, n: usize) -> bool {
        self.queued.load(Ordering::Acquire) + n <= QUEUE
    }

    pub fn dropped(&self, n: usize) {
        self.signal
            .drop(&self.metrics, &self.dest, "queue_full", n as u64);
    }

    /// Exports everything queued so far, waiting at most `deadline`.
    pub async fn flush(&self, deadline: Duration) {
        let (ack_tx, ack_rx) = oneshot::channel();
        let _ = tokio::time::timeout(deadline, async {
            if self.tx.send(Msg::Flush(ack_tx)).await.is_ok() {
                let _ = ack_rx.await;
            }
        })
        .await;
    }
}

/// The export task's state between batches.
struct Batcher {
    signal: Signal,
    dest: String,
    exporter: Exporter,
    envelope: Envelope,
    /// Encoded spans gathered so far, and how many.
    spans: Vec<u8>,
    count: usize,
    /// Exports on their way, each with the number of spans it carries.
    inflight: JoinSet<(u64, Result<i64, String>)>,
    metrics: Arc<Metrics>,
    url: String,
    failing: bool,
}

#[allow(clippy::too_many_arguments)]
async fn run(
    signal: Signal,
    dest: String,
    exporter: Exporter,
    envelope: Envelope,
    mut rx: mpsc::Receiver<Msg>,
    queued: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
    url: String,
) {
    let mut b = Batcher {
        signal,
        dest,
        exporter,
        envelope,
        spans: Vec::with_capacity(1 << 20),
        count: 0,
        inflight: JoinSet::new(),
        metrics,
        url,
        failing: false,
    };
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // A full batch waits for a free export slot; meanwhile new spans stay in the queue
        // (where, if the collector stays slower than the gateway, they are dropped and counted).
        let full = b.count >= MAX_BATCH;
        if full && b.inflight.len() < IN_FLIGHT {
            b.send();
            continue;
        }
        let msg = tokio::select! {
            biased;
            Some(done) = b.inflight.join_next(), if !b.inflight.is_empty() => {
                b.settle(done);
                continue;
            }
            m = rx.recv(), if !full => m,
            _ = tick.tick() => {
                if b.inflight.len() < IN_FLIGHT {
                    b.send();
                }
                continue;
            }
        };
        match msg {
            Some(Msg::Spans(spans, n)) => {
                queued.fetch_sub(n, Ordering::AcqRel);
                b.spans.extend_from_slice(&spans);
                b.count += n;
            }
            Some(Msg::Flush(ack)) => {
                b.drain().await;
                let _ = ack.send(());
            }
            None => {
                b.drain().await;
                return;
            }
        }
    }
}

impl Batcher {
    /// Frames the gathered spans as one request and starts exporting it.
    fn send(&mut self) {
        if self.count == 0 {
            return;
        }
        let n = std::mem::take(&mut self.count) as u64;
        let mut out = Vec::with_capacity(self.spans.len() + 256);
        self.envelope.request(&self.spans, &mut out);
        self.spans.clear();
        let mut exporter = self.exporter.clone();
        self.inflight.spawn(async move {
            let r = match tokio::time::timeout(EXPORT_TIMEOUT, exporter.export(Bytes::from(out)))
                .await
            {
                Ok(r) => r,
                Err(_) => Err("timed out".to_owned()),
            };
            (n, r)
        });
    }

    /// Sends what is gathered and waits for every export on its way (flush and shutdown).
    async fn drain(&mut self) {
        self.send();
        while let Some(done) = self.inflight.join_next().await {
            self.settle(done);
        }
    }

    /// Counts a finished export's outcome.
    fn settle(&mut self, done: Result<(u64, Result<i64, String>), tokio::task::JoinError>) {
        let (n, result) = match done {
            Ok(d) => d,
            Err(e) => (0, Err(e.to_string())),
        };
        match result {
            Ok(rejected) => {
                if rejected > 0 {
                    self.signal.drop(
                        &self.metrics,
                        &self.dest,
                        "rejected",
                        u64::try_from(rejected).unwrap_or(0),
                    );
                }
                if self.failing {
                    tracing::info!(
                        destination = self.dest,
                        endpoint = self.url,
                        "OTLP export recovered"
                    );
                    self.failing = false;
                }
            }
            Err(e) => {
                self.signal
                    .drop(&self.metrics, &self.dest, "export_failed", n);
                // Log the transition only, not every failed batch.
                if !self.failing {
                    tracing::warn!(destination = self.dest, endpoint = self.url, error = %e, "OTLP export failed; dropping what it carried");
                    self.failing = true;
                }
            }
        }
    }
}

/// The OTel resource from `attrs` in increasing precedence (a later key wins), plus
/// `service.version`; `service.name` defaults to `agentgateway` for dashboard compatibility.
pub fn resource(attrs: Vec<KeyValue>) -> Resource {
    let mut name = "agentgateway".to_owned();
    let mut kvs: Vec<KeyValue> = Vec::with_capacity(attrs.len() + 1);
    for kv in attrs {
        if kv.key.as_str() == "service.name" {
            name = kv.value.as_str().into_owned();
            continue;
        }
        kvs.retain(|k| k.key != kv.key);
        kvs.push(kv);
    }
    kvs.push(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    Resource::builder_empty()
        .with_service_name(name)
        .with_attributes(kvs)
        .build()
}
