//! Legacy HTTP+SSE targets (MCP 2024-11-05): a GET opens the event stream, whose first
//! `endpoint` event names the URL to POST messages to; every answer comes back on the stream.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use serde_json::Value as Json;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::http::{HttpClient, error_chain, event_message, status_error};
use super::{CallCtx, ConnectArgs, Inbound, Limits, Pending, UpstreamError, lock};
use crate::mcp::jsonrpc::RpcError;
use crate::sse::SseParser;

/// One SSE session with a target.
#[derive(Debug)]
pub struct SseConn {
    post_url: Uri,
    client: HttpClient,
    pending: Arc<Pending>,
    limits: Limits,
    reader: Mutex<Option<JoinHandle<()>>>,
}

impl SseConn {
    pub async fn connect(url: Uri, a: &ConnectArgs<'_>) -> Result<Self, UpstreamError> {
        let req = Request::builder()
            .method(Method::GET)
            .uri(url.clone())
            .header(header::ACCEPT, "text/event-stream")
            .body(Full::new(Bytes::new()))
            .map_err(|e| UpstreamError::Http(e.to_string()))?;
        let resp = a
            .client
            .request(req)
            .await
            .map_err(|e| UpstreamError::Http(error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(status_error(resp, a.limits.max_message_bytes).await);
        }
        let pending = Arc::new(Pending::default());
        let (endpoint_tx, endpoint_rx) = oneshot::channel();
        let reader = tokio::spawn(read_stream(
            resp.into_body(),
            endpoint_tx,
            a.idx,
            a.limits.max_message_bytes,
            pending.clone(),
            a.inbound.clone(),
        ));
        let endpoint = match endpoint_rx.await {
            Ok(e) => e,
            Err(_) => {
                reader.abort();
                return Err(UpstreamError::Closed(
                    "SSE stream ended before the endpoint event".into(),
                ));
            }
        };
        let post_url = resolve(&url, &endpoint)?;
        Ok(SseConn {
            post_url,
            client: a.client.clone(),
            pending,
            limits: a.limits,
            reader: Mutex::new(Some(reader)),
        })
    }

    pub async fn request(
        &self,
        method: &str,
        params: Option<Json>,
        ctx: &CallCtx,
    ) -> Result<Result<Json, RpcError>, UpstreamError> {
        self.pending
            .call(method, params, ctx, |req| async move {
                self.post(&req, Some(&ctx.traceparent)).await
            })
            .await
    }

    pub async fn send(&self, msg: Json) -> Result<(), UpstreamError> {
        self.post(&msg, None).await
    }

    async fn post(&self, msg: &Json, traceparent: Option<&str>) -> Result<(), UpstreamError> {
        let body = serde_json::to_vec(msg).map_err(|e| UpstreamError::Protocol(e.to_string()))?;
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(self.post_url.clone())
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(tp) = traceparent {
            b = b.header("traceparent", tp);
        }
        let req = b
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| UpstreamError::Http(e.to_string()))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| UpstreamError::Http(error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(status_error(resp, self.limits.max_message_bytes).await);
        }
        // Drain so the connection can be reused.
        let _ = resp.into_body().collect().await;
        Ok(())
    }

    pub fn close(&self) {
        self.pending.close("session closed".into());
        if let Some(r) = lock(&self.reader).take() {
            r.abort();
        }
    }
}

async fn read_stream(
    mut body: hyper::body::Incoming,
    endpoint_tx: oneshot::Sender<String>,
    idx: usize,
    limit: usize,
    pending: Arc<Pending>,
    inbound: mpsc::Sender<Inbound>,
) {
    let mut endpoint_tx = Some(endpoint_tx);
    let mut parser = SseParser::new(limit);
    let why = loop {
        let frame = match body.frame().await {
            Some(Ok(f)) => f,
            Some(Err(e)) => break format!("SSE stream error: {e}"),
            None => break "SSE stream closed by target".to_string(),
        };
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        let events = match parser.events(&chunk) {
            Ok(e) => e,
            Err(e) => break e.to_string(),
        };
        for ev in events {
            if ev.event.as_deref() == Some("endpoint") {
                if let Some(tx) = endpoint_tx.take() {
                    let _ = tx.send(ev.data.trim().to_string());
                }
                continue;
            }
            if let Some(msg) = event_message(&ev) {
                pending.dispatch(msg, idx, &inbound).await;
            }
        }
    };
    tracing::debug!(target_idx = idx, "{why}");
    pending.close(why);
}

/// Resolves the `endpoint` event (absolute URL, absolute path, or relative path) against the
/// stream URL.
pub fn resolve(base: &Uri, endpoint: &str) -> Result<Uri, UpstreamError> {
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        return endpoint
            .parse()
            .map_err(|e| UpstreamError::Protocol(format!("bad endpoint {endpoint:?}: {e}")));
    }
    let path_and_query = if endpoint.starts_with('/') {
        endpoint.to_string()
    } else {
        let dir = base.path().rsplit_once('/').map_or("", |(d, _)| d);
        format!("{dir}/{endpoint}")
    };
    let mut parts = base.clone().into_parts();
    parts.path_and_query = Some(
        path_and_query
            .parse()
            .map_err(|e| UpstreamError::Protocol(format!("bad endpoint {endpoint:?}: {e}")))?,
    );
    Uri::from_parts(parts).map_err(|e| UpstreamError::Protocol(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_endpoint_forms() {
        let base: Uri = "http://127.0.0.1:9000/a/sse".parse().expect("uri");
        let cases = [
            (
                "/messages?sessionId=1",
                "http://127.0.0.1:9000/messages?sessionId=1",
            ),
            ("messages?s=2", "http://127.0.0.1:9000/a/messages?s=2"),
            ("http://other:1/m", "http://other:1/m"),
        ];
        for (ep, want) in cases {
            assert_eq!(
                resolve(&base, ep).expect("resolves").to_string(),
                want,
                "{ep}"
            );
        }
    }
}
