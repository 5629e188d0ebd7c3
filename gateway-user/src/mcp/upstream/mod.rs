//! Connections from the gateway to MCP targets: one [`Conn`] per target per client session,
//! over stdio (a child process), streamable HTTP, or legacy HTTP+SSE.
//!
//! Every transport offers the same operations: send a request and await its response, send a
//! notification, send a raw message (the client's answer to a target's request), close. Messages
//! a target sends on its own (notifications, sampling/elicitation requests) arrive as
//! [`Inbound`] on the session's channel, or on the per-call `sink` when the transport ties them
//! to a call (streamable HTTP POST streams).

pub mod http;
pub mod legacy_sse;
pub mod stdio;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value as Json;
use tokio::sync::{mpsc, oneshot};

use super::jsonrpc::{self, RpcError};

/// Upstream failures. They become JSON-RPC -32603 errors naming the target.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("failed to start `{cmd}`: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("target closed the connection: {0}")]
    Closed(String),
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("HTTP error: {0}")]
    Http(String),
    #[error("target answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("target sent an invalid message: {0}")]
    Protocol(String),
    #[error("target message larger than {0} bytes")]
    TooLarge(usize),
    #[error("write to target failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A message a target sent that is not the response to one of the gateway's requests.
#[derive(Debug)]
pub struct Inbound {
    pub target: usize,
    pub msg: Json,
    /// Set on a flush marker: acknowledged once everything queued before it was routed.
    pub barrier: Option<oneshot::Sender<()>>,
}

impl Inbound {
    pub fn new(target: usize, msg: Json) -> Self {
        Inbound {
            target,
            msg,
            barrier: None,
        }
    }
}

/// Per-call context.
#[derive(Clone, Debug)]
pub struct CallCtx {
    /// W3C traceparent for this upstream call (header and `params._meta.traceparent`).
    pub traceparent: String,
    /// Where messages tied to this call go (progress, sampling) when the transport can tell.
    pub sink: Option<mpsc::Sender<Json>>,
    /// Receives the id the transport gives the request, so a client cancel can name it.
    pub upstream_id: Option<std::sync::Arc<AtomicU64>>,
}

impl CallCtx {
    pub fn record_id(&self, id: u64) {
        if let Some(slot) = &self.upstream_id {
            slot.store(id, Ordering::Release);
        }
    }
}

/// Limits shared by every connection of a backend.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub request_timeout: Duration,
}

/// How to reach one target.
#[derive(Clone, Debug)]
pub enum Transport {
    Stdio(stdio::StdioSpec),
    Streamable(::http::Uri),
    LegacySse(::http::Uri),
}

/// One live connection to a target.
#[derive(Debug)]
pub enum Conn {
    Stdio(stdio::StdioConn),
    Streamable(Box<http::StreamableConn>),
    LegacySse(legacy_sse::SseConn),
}

/// Everything a connection needs to start.
pub struct ConnectArgs<'a> {
    pub idx: usize,
    pub name: &'a str,
    pub transport: &'a Transport,
    pub inbound: mpsc::Sender<Inbound>,
    pub limits: Limits,
    pub client: &'a http::HttpClient,
}

impl Conn {
    pub async fn connect(a: ConnectArgs<'_>) -> Result<Conn, UpstreamError> {
        let timeout = a.limits.request_timeout;
        let fut = async {
            Ok(match a.transport {
                Transport::Stdio(spec) => Conn::Stdio(stdio::StdioConn::spawn(spec, &a)?),
                Transport::Streamable(url) => {
                    Conn::Streamable(Box::new(http::StreamableConn::new(url.clone(), &a)))
                }
                Transport::LegacySse(url) => {
                    Conn::LegacySse(legacy_sse::SseConn::connect(url.clone(), &a).await?)
                }
            })
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| UpstreamError::Timeout(timeout))?
    }

    /// Sends `method` and waits (bounded by `request_timeout`) for the target's answer.
    pub async fn request(
        &self,
        method: &str,
        params: Option<Json>,
        ctx: &CallCtx,
        timeout: Duration,
    ) -> Result<Result<Json, RpcError>, UpstreamError> {
        let fut = async {
            match self {
                Conn::Stdio(c) => c.request(method, params, ctx).await,
                Conn::Streamable(c) => c.request(method, params, ctx).await,
                Conn::LegacySse(c) => c.request(method, params, ctx).await,
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| UpstreamError::Timeout(timeout))?
    }

    /// Sends a notification or a response (anything the target does not answer).
    pub async fn send(&self, msg: Json, traceparent: Option<&str>) -> Result<(), UpstreamError> {
        match self {
            Conn::Stdio(c) => c.send(msg).await,
            Conn::Streamable(c) => c.send(msg, traceparent).await,
            Conn::LegacySse(c) => c.send(msg).await,
        }
    }

    /// The rest of the MCP handshake once the target answered `initialize` with `result`:
    /// `notifications/initialized` (and, over streamable HTTP, the negotiated version and the
    /// GET stream).
    pub async fn handshake_done(&self, result: &Json) -> Result<(), UpstreamError> {
        match self {
            Conn::Streamable(c) => c.handshake_done(result, None).await,
            _ => self.send(initialized_note(), None).await,
        }
    }

    /// Ends the connection: closes stdin and reaps the child, or deletes the HTTP session.
    pub async fn close(&self) {
        match self {
            Conn::Stdio(c) => c.close().await,
            Conn::Streamable(c) => c.close().await,
            Conn::LegacySse(c) => c.close(),
        }
    }

    /// The child's process id, for stdio targets.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Conn::Stdio(c) => c.pid(),
            _ => None,
        }
    }
}

/// Request/response correlation for transports where responses arrive on a shared stream
/// (stdio, legacy SSE).
#[derive(Debug, Default)]
pub struct Pending {
    next: AtomicU64,
    waiters: Mutex<HashMap<u64, oneshot::Sender<Json>>>,
    closed: Mutex<Option<String>>,
}

impl Pending {
    /// Allocates an id and a receiver for its response, or fails when the stream is gone.
    pub fn register(&self) -> Result<(u64, oneshot::Receiver<Json>), UpstreamError> {
        if let Some(why) = lock(&self.closed).clone() {
            return Err(UpstreamError::Closed(why));
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        lock(&self.waiters).insert(id, tx);
        Ok((id, rx))
    }

    pub fn forget(&self, id: u64) {
        lock(&self.waiters).remove(&id);
    }

    /// One round trip on a shared-stream transport: registers an id, hands the built request
    /// to `send`, and waits for the response `dispatch` routes back to it.
    pub async fn call<F, Fut>(
        &self,
        method: &str,
        params: Option<Json>,
        ctx: &CallCtx,
        send: F,
    ) -> Result<Result<Json, RpcError>, UpstreamError>
    where
        F: FnOnce(Json) -> Fut,
        Fut: std::future::Future<Output = Result<(), UpstreamError>>,
    {
        let (id, rx) = self.register()?;
        ctx.record_id(id);
        let req = build_request(id, method, params, &ctx.traceparent);
        if let Err(e) = send(req).await {
            self.forget(id);
            return Err(e);
        }
        match rx.await {
            Ok(msg) => into_outcome(msg),
            Err(_) => Err(UpstreamError::Closed(self.closed_reason())),
        }
    }

    /// Routes a message read from the target: responses to their waiter, everything with a
    /// `method` to `inbound`. Responses nobody waits for are dropped.
    pub async fn dispatch(&self, msg: Json, idx: usize, inbound: &mpsc::Sender<Inbound>) {
        if msg.get("method").is_some() {
            if inbound.send(Inbound::new(idx, msg)).await.is_err() {
                tracing::debug!("session gone; dropping target message");
            }
            return;
        }
        let waiter = msg
            .get("id")
            .and_then(Json::as_u64)
            .and_then(|id| lock(&self.waiters).remove(&id));
        match waiter {
            Some(w) => {
                let _ = w.send(msg);
            }
            None => tracing::debug!(target_idx = idx, "response for an unknown id dropped"),
        }
    }

    /// Fails every waiter (their receivers see the sender dropped) and all future requests.
    pub fn close(&self, why: String) {
        lock(&self.closed).get_or_insert(why);
        lock(&self.waiters).clear();
    }

    pub fn closed_reason(&self) -> String {
        lock(&self.closed)
            .clone()
            .unwrap_or_else(|| "connection closed".to_string())
    }
}

/// Builds the wire request with the gateway's id and the trace context in `_meta`.
/// The notification a client sends once `initialize` succeeded.
fn initialized_note() -> Json {
    jsonrpc::notification("notifications/initialized", None)
}

pub fn build_request(id: u64, method: &str, params: Option<Json>, traceparent: &str) -> Json {
    let mut req = jsonrpc::request(Json::from(id), method, params);
    jsonrpc::set_meta(
        &mut req,
        "traceparent",
        Json::String(traceparent.to_string()),
    );
    req
}

/// Splits a target's response message into its result or error.
pub fn into_outcome(msg: Json) -> Result<Result<Json, RpcError>, UpstreamError> {
    match jsonrpc::classify(msg) {
        Ok(jsonrpc::Message::Response { result, .. }) => Ok(Ok(result)),
        Ok(jsonrpc::Message::Error { error, .. }) => Ok(Err(error)),
        Ok(other) => Err(UpstreamError::Protocol(format!(
            "expected a response, got {:?}",
            other.method()
        ))),
        Err(r) => Err(UpstreamError::Protocol(r.error.message)),
    }
}

/// Poison-tolerant lock: the guarded maps stay consistent even if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn pending_routes_responses_and_inbound() {
        let p = Pending::default();
        let (tx, mut rx) = mpsc::channel(4);
        let (id, waiter) = p.register().expect("open");
        p.dispatch(
            json!({"jsonrpc":"2.0","method":"notifications/progress"}),
            3,
            &tx,
        )
        .await;
        p.dispatch(
            json!({"jsonrpc":"2.0","id":id,"result":{"ok":true}}),
            3,
            &tx,
        )
        .await;
        let got = waiter.await.expect("answered");
        assert_eq!(
            into_outcome(got).expect("valid").expect("ok"),
            json!({"ok":true})
        );
        let inbound = rx.recv().await.expect("notification");
        assert_eq!(inbound.target, 3);
        assert_eq!(inbound.msg["method"], json!("notifications/progress"));
    }

    #[tokio::test]
    async fn close_fails_waiters_and_later_requests() {
        let p = Pending::default();
        let (_, waiter) = p.register().expect("open");
        p.close("child exited".into());
        assert!(waiter.await.is_err(), "waiter must see the close");
        match p.register() {
            Err(UpstreamError::Closed(why)) => assert_eq!(why, "child exited"),
            other => panic!("expected Closed, got {other:?}"),
        }
    }

    #[test]
    fn request_carries_traceparent_meta() {
        let r = build_request(5, "tools/call", Some(json!({"name":"x"})), "00-t-s-01");
        assert_eq!(r["id"], json!(5));
        assert_eq!(r["params"]["_meta"]["traceparent"], json!("00-t-s-01"));
    }
}
