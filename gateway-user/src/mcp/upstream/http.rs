//! Streamable HTTP targets (MCP 2025-03-26+): every message is a POST; the answer is JSON or an
//! SSE stream that may carry related notifications and requests before the response. A GET
//! stream carries unrelated server messages; DELETE ends the session.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value as Json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{
    CallCtx, ConnectArgs, Inbound, Limits, UpstreamError, build_request, into_outcome, lock,
};
use crate::mcp::jsonrpc::RpcError;
use crate::sse::{SseEvent, SseParser};

pub const SESSION_HEADER: &str = "mcp-session-id";
pub const PROTOCOL_HEADER: &str = "mcp-protocol-version";

/// The HTTP client every HTTP target of a backend shares (http and https, HTTP/1.1 and h2).
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

pub fn new_client(connect_timeout: std::time::Duration) -> Result<HttpClient, UpstreamError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// One streamable HTTP session with a target.
#[derive(Debug)]
pub struct StreamableConn {
    url: Uri,
    idx: usize,
    client: HttpClient,
    inbound: mpsc::Sender<Inbound>,
    limits: Limits,
    next_id: AtomicU64,
    session_id: Mutex<Option<HeaderValue>>,
    protocol_version: Mutex<Option<HeaderValue>>,
    get_stream: Mutex<Option<JoinHandle<()>>>,
    /// The `initialize` params as forwarded, to start a new session when the target answers
    /// 404 for this one (it restarted, or expired the session).
    init_params: Mutex<Option<Json>>,
    /// One re-initialisation at a time; calls that hit the same 404 wait for it.
    reinit: tokio::sync::Mutex<()>,
}

impl StreamableConn {
    pub fn new(url: Uri, a: &ConnectArgs<'_>) -> Self {
        StreamableConn {
            url,
            idx: a.idx,
            client: a.client.clone(),
            inbound: a.inbound.clone(),
            limits: a.limits,
            next_id: AtomicU64::new(0),
            session_id: Mutex::new(None),
            protocol_version: Mutex::new(None),
            get_stream: Mutex::new(None),
            init_params: Mutex::new(None),
            reinit: tokio::sync::Mutex::new(()),
        }
    }

    fn builder(&self, method: Method, traceparent: Option<&str>) -> http::request::Builder {
        let mut b = Request::builder()
            .method(method)
            .uri(self.url.clone())
            .header(header::ACCEPT, "application/json, text/event-stream");
        if let Some(s) = lock(&self.session_id).clone() {
            b = b.header(SESSION_HEADER, s);
        }
        if let Some(v) = lock(&self.protocol_version).clone() {
            b = b.header(PROTOCOL_HEADER, v);
        }
        if let Some(tp) = traceparent {
            b = b.header("traceparent", tp);
        }
        b
    }

    /// POSTs one message; also returns the session id it was sent under.
    async fn post(
        &self,
        msg: &Json,
        traceparent: Option<&str>,
    ) -> Result<(http::Response<hyper::body::Incoming>, Option<HeaderValue>), UpstreamError> {
        let body = serde_json::to_vec(msg).map_err(|e| UpstreamError::Protocol(e.to_string()))?;
        let session = lock(&self.session_id).clone();
        let req = self
            .builder(Method::POST, traceparent)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| UpstreamError::Http(e.to_string()))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| UpstreamError::Http(error_chain(&e)))?;
        Ok((resp, session))
    }

    pub async fn request(
        &self,
        method: &str,
        params: Option<Json>,
        ctx: &CallCtx,
    ) -> Result<Result<Json, RpcError>, UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        ctx.record_id(id);
        if method == "initialize" {
            *lock(&self.init_params) = params.clone();
        }
        let req = build_request(id, method, params, &ctx.traceparent);
        let (mut resp, session) = self.post(&req, Some(&ctx.traceparent)).await?;
        // MCP: a 404 to a request carrying a session id means the session is gone, and the
        // client must start a new one. The gateway is that client: it re-initialises the
        // target and sends the request again, so the client's own session carries on.
        if resp.status() == StatusCode::NOT_FOUND && session.is_some() && method != "initialize" {
            self.reinitialize(session, ctx).await?;
            resp = self.post(&req, Some(&ctx.traceparent)).await?.0;
        }
        self.read_response(resp, method, id, ctx).await
    }

    /// Starts a new session with the target after it answered 404 for `stale`: the stored
    /// `initialize`, then `notifications/initialized` and a new GET stream. A no-op when
    /// another call has already replaced `stale`.
    async fn reinitialize(
        &self,
        stale: Option<HeaderValue>,
        ctx: &CallCtx,
    ) -> Result<(), UpstreamError> {
        let _one = self.reinit.lock().await;
        if *lock(&self.session_id) != stale {
            return Ok(());
        }
        let params = lock(&self.init_params).clone();
        tracing::info!(url = %self.url, "MCP target no longer knows the session; starting a new one");
        if let Some(t) = lock(&self.get_stream).take() {
            t.abort();
        }
        *lock(&self.session_id) = None;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let init = build_request(id, "initialize", params, &ctx.traceparent);
        let (resp, _) = self.post(&init, Some(&ctx.traceparent)).await?;
        let result = self
            .read_response(resp, "initialize", id, ctx)
            .await?
            .map_err(|e| {
                UpstreamError::Protocol(format!("target rejected the new session: {e}"))
            })?;
        self.handshake_done(&result, Some(&ctx.traceparent)).await
    }

    /// The rest of the MCP handshake once `initialize` answered `result`:
    /// `notifications/initialized`, then the negotiated version on every later request and the
    /// GET stream.
    pub async fn handshake_done(
        &self,
        result: &Json,
        traceparent: Option<&str>,
    ) -> Result<(), UpstreamError> {
        self.send(super::initialized_note(), traceparent).await?;
        self.initialized(result.get("protocolVersion").and_then(Json::as_str));
        Ok(())
    }

    /// The target's answer to request `id`: a JSON body, or an SSE stream whose other
    /// messages are routed as related to the call.
    async fn read_response(
        &self,
        resp: http::Response<hyper::body::Incoming>,
        method: &str,
        id: u64,
        ctx: &CallCtx,
    ) -> Result<Result<Json, RpcError>, UpstreamError> {
        let status = resp.status();
        if !status.is_success() {
            return Err(status_error(resp, self.limits.max_message_bytes).await);
        }
        if let Some(sid) = resp.headers().get(SESSION_HEADER)
            && method == "initialize"
        {
            *lock(&self.session_id) = Some(sid.clone());
        }
        let is_sse = content_type(&resp).starts_with("text/event-stream");
        let body = resp.into_body();
        if !is_sse {
            let bytes = read_limited(body, self.limits.max_message_bytes).await?;
            let msg: Json = serde_json::from_slice(&bytes)
                .map_err(|e| UpstreamError::Protocol(format!("invalid JSON response: {e}")))?;
            return into_outcome(msg);
        }
        let mut parser = SseParser::new(self.limits.max_message_bytes);
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| UpstreamError::Http(e.to_string()))?;
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            let events = parser
                .events(&chunk)
                .map_err(|_| UpstreamError::TooLarge(self.limits.max_message_bytes))?;
            for ev in events {
                let Some(msg) = event_message(&ev) else {
                    continue;
                };
                if msg.get("method").is_some() {
                    self.route_related(msg, ctx).await;
                } else if msg.get("id").and_then(Json::as_u64) == Some(id) {
                    return into_outcome(msg);
                }
            }
        }
        Err(UpstreamError::Closed(
            "response stream ended without a response".into(),
        ))
    }

    async fn route_related(&self, msg: Json, ctx: &CallCtx) {
        if let Some(sink) = &ctx.sink
            && sink.send(msg.clone()).await.is_ok()
        {
            return;
        }
        let _ = self.inbound.send(Inbound::new(self.idx, msg)).await;
    }

    /// Notifications and responses: the target answers 202.
    pub async fn send(&self, msg: Json, traceparent: Option<&str>) -> Result<(), UpstreamError> {
        let (resp, _) = self.post(&msg, traceparent).await?;
        if !resp.status().is_success() {
            return Err(status_error(resp, self.limits.max_message_bytes).await);
        }
        Ok(())
    }

    /// Records the negotiated version and opens the GET stream for unrelated server messages.
    fn initialized(&self, protocol_version: Option<&str>) {
        if let Some(v) = protocol_version.and_then(|v| HeaderValue::from_str(v).ok()) {
            *lock(&self.protocol_version) = Some(v);
        }
        let req = match self
            .builder(Method::GET, None)
            .body(Full::new(Bytes::new()))
        {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("GET stream request: {e}");
                return;
            }
        };
        let client = self.client.clone();
        let inbound = self.inbound.clone();
        let idx = self.idx;
        let limit = self.limits.max_message_bytes;
        let task = tokio::spawn(async move {
            let resp = match client.request(req).await {
                Ok(r) if r.status() == StatusCode::OK => r,
                Ok(r) => {
                    // 405 is how a target says it has no GET stream.
                    tracing::debug!(status = %r.status(), "target offers no GET stream");
                    return;
                }
                Err(e) => {
                    tracing::debug!("GET stream: {e}");
                    return;
                }
            };
            let mut body = resp.into_body();
            let mut parser = SseParser::new(limit);
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(chunk) = frame.into_data() else {
                    continue;
                };
                let Ok(events) = parser.events(&chunk) else {
                    return;
                };
                for ev in events {
                    if let Some(msg) = event_message(&ev)
                        && inbound.send(Inbound::new(idx, msg)).await.is_err()
                    {
                        return;
                    }
                }
            }
        });
        *lock(&self.get_stream) = Some(task);
    }

    /// Stops the GET stream and deletes the target session.
    pub async fn close(&self) {
        if let Some(t) = lock(&self.get_stream).take() {
            t.abort();
        }
        if lock(&self.session_id).is_none() {
            return;
        }
        let Ok(req) = self
            .builder(Method::DELETE, None)
            .body(Full::new(Bytes::new()))
        else {
            return;
        };
        let del = tokio::time::timeout(self.limits.request_timeout, self.client.request(req)).await;
        if let Ok(Err(e)) = del {
            tracing::debug!("DELETE target session: {e}");
        }
    }
}

fn content_type<B>(resp: &http::Response<B>) -> &str {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The JSON-RPC message in an SSE `message` event, if it is one.
pub fn event_message(ev: &SseEvent) -> Option<Json> {
    if !matches!(ev.event.as_deref(), None | Some("message")) || ev.data.trim().is_empty() {
        return None;
    }
    match serde_json::from_str(&ev.data) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::debug!("non-JSON SSE message ignored: {e}");
            None
        }
    }
}

pub async fn read_limited(
    body: hyper::body::Incoming,
    limit: usize,
) -> Result<Bytes, UpstreamError> {
    Limited::new(body, limit)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                UpstreamError::TooLarge(limit)
            } else {
                UpstreamError::Http(e.to_string())
            }
        })
}

pub async fn status_error(
    resp: http::Response<hyper::body::Incoming>,
    limit: usize,
) -> UpstreamError {
    let status = resp.status().as_u16();
    let body = read_limited(resp.into_body(), limit.min(4096))
        .await
        .map(|b| String::from_utf8_lossy(&b).chars().take(200).collect())
        .unwrap_or_default();
    UpstreamError::Status { status, body }
}

/// hyper-util's client error hides the cause (refused, DNS) in its source chain.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
