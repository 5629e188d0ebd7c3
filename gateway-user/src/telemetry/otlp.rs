//! OTLP span export through a bounded queue.
//!
//! `finish()` hands spans to `SpanQueue::push`, which never waits: when the queue is full the
//! spans are dropped and counted (`agentgateway_tracing_spans_dropped_total{reason="queue_full"}`).
//! One background task, on its own thread, batches spans (up to `MAX_BATCH`, or every `FLUSH_EVERY`) and calls
//! opentelemetry-otlp's exporter (gRPC through tonic, or protobuf over HTTP through our
//! hyper-rustls client) with a deadline; failed batches are counted as `export_failed`. A slow
//! or dead collector therefore only ever costs dropped spans, never request latency.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tokio::sync::{mpsc, oneshot};

use super::TelemetryError;
use super::settings::Export;
use crate::config::telemetry::RawProtocol;
use crate::metrics::Metrics;

/// Spans that may wait for export before new ones are dropped (about 4,000 requests' worth).
pub const QUEUE: usize = 8192;
const MAX_BATCH: usize = 512;
const FLUSH_EVERY: Duration = Duration::from_secs(1);
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

enum Msg {
    Spans(Vec<SpanData>),
    Flush(oneshot::Sender<()>),
}

/// Handle to the export task.
#[derive(Debug)]
pub struct SpanQueue {
    tx: mpsc::Sender<Msg>,
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

/// Either transport, behind one `export` call.
#[derive(Debug)]
enum Exporter {
    Grpc(opentelemetry_otlp::SpanExporter),
    Http(opentelemetry_otlp::SpanExporter),
}

fn build_exporter(export: &Export, timeout: Duration) -> Result<Exporter, TelemetryError> {
    let err = |e: &dyn std::fmt::Display| TelemetryError::Exporter {
        endpoint: export.url.clone(),
        msg: e.to_string(),
    };
    match export.protocol {
        RawProtocol::Grpc => {
            let mut headers = http::HeaderMap::new();
            for (k, v) in &export.headers {
                let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(|e| err(&e))?;
                let value = http::HeaderValue::from_str(v).map_err(|e| err(&e))?;
                headers.append(name, value);
            }
            let mut b = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(export.url.clone())
                .with_timeout(timeout)
                .with_metadata(
                    opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers),
                );
            if export.url.starts_with("https://") {
                b = b.with_tls_config(
                    opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new()
                        .with_webpki_roots(),
                );
            }
            b.build().map(Exporter::Grpc).map_err(|e| err(&e))
        }
        RawProtocol::Http => {
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_webpki_roots()
                .https_or_http()
                .enable_http1()
                .build();
            let client = opentelemetry_http::hyper::HyperClient::new(connector, timeout, None);
            let headers: HashMap<String, String> = export.headers.iter().cloned().collect();
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(export.url.clone())
                .with_timeout(timeout)
                .with_headers(headers)
                .build()
                .map(Exporter::Http)
                .map_err(|e| err(&e))
        }
    }
}

impl Exporter {
    async fn export(&self, batch: Vec<SpanData>) -> Result<(), String> {
        let r = match self {
            Exporter::Grpc(e) | Exporter::Http(e) => e.export(batch).await,
        };
        r.map_err(|e| e.to_string())
    }
    fn set_resource(&mut self, r: &Resource) {
        match self {
            Exporter::Grpc(e) | Exporter::Http(e) => e.set_resource(r),
        }
    }
}

// === impl SpanQueue ===

impl SpanQueue {
    /// Builds the exporter and starts the export task on its own thread (`otlp`, a
    /// single-threaded tokio runtime): encoding and sending batches never takes a turn on the
    /// proxy's workers.
    pub fn start(
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
        let mut exporter = {
            let _guard = rt.enter();
            build_exporter(export, EXPORT_TIMEOUT)?
        };
        exporter.set_resource(&resource);
        let (tx, rx) = mpsc::channel(QUEUE);
        let queued = Arc::new(AtomicUsize::new(0));
        let (m, url, q) = (metrics.clone(), export.url.clone(), queued.clone());
        std::thread::Builder::new()
            .name("otlp".into())
            .spawn(move || {
                super::lower_thread_priority();
                rt.block_on(run(exporter, rx, q, m, url))
            })
            .map_err(|e| fail(format!("starting the export thread: {e}")))?;
        Ok(SpanQueue {
            tx,
            queued,
            metrics,
        })
    }

    /// Enqueues spans (one or more requests'). Never waits: what does not fit is dropped and
    /// counted.
    pub fn push(&self, spans: Vec<SpanData>) {
        let n = spans.len();
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
        if self.tx.try_send(Msg::Spans(spans)).is_err() {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            self.dropped(n);
        }
    }

    /// Whether `n` more spans would fit now. Lets the caller skip building spans that `push`
    /// would drop: when the exporter falls behind, that work is shed first.
    pub fn has_room(&self, n: usize) -> bool {
        self.queued.load(Ordering::Acquire) + n <= QUEUE
    }

    pub fn dropped(&self, n: usize) {
        self.metrics
            .spans_dropped
            .with_label_values(&["queue_full"])
            .inc_by(n as u64);
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

async fn run(
    exporter: Exporter,
    mut rx: mpsc::Receiver<Msg>,
    queued: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
    url: String,
) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(MAX_BATCH);
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = tick.tick() => {
                if !batch.is_empty() {
                    send(&exporter, &mut batch, &metrics, &url, &mut failing).await;
                }
                continue;
            }
        };
        match msg {
            Some(Msg::Spans(spans)) => {
                queued.fetch_sub(spans.len(), Ordering::AcqRel);
                batch.extend(spans);
                if batch.len() >= MAX_BATCH {
                    send(&exporter, &mut batch, &metrics, &url, &mut failing).await;
                }
            }
            Some(Msg::Flush(ack)) => {
                send(&exporter, &mut batch, &metrics, &url, &mut failing).await;
                let _ = ack.send(());
            }
            None => {
                send(&exporter, &mut batch, &metrics, &url, &mut failing).await;
                return;
            }
        }
    }
}

async fn send(
    exporter: &Exporter,
    batch: &mut Vec<SpanData>,
    metrics: &Metrics,
    url: &str,
    failing: &mut bool,
) {
    while !batch.is_empty() {
        let chunk: Vec<SpanData> = batch.drain(..batch.len().min(MAX_BATCH)).collect();
        let n = chunk.len() as u64;
        let result = match tokio::time::timeout(EXPORT_TIMEOUT, exporter.export(chunk)).await {
            Ok(r) => r,
            Err(_) => Err("timed out".to_owned()),
        };
        match result {
            Ok(()) => {
                if *failing {
                    tracing::info!(endpoint = url, "span export recovered");
                    *failing = false;
                }
            }
            Err(e) => {
                metrics
                    .spans_dropped
                    .with_label_values(&["export_failed"])
                    .inc_by(n);
                // Log the transition only, not every failed batch.
                if !*failing {
                    tracing::warn!(endpoint = url, error = %e, "span export failed; dropping spans");
                    *failing = true;
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
