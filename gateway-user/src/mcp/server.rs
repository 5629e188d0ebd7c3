//! The client-facing transports: streamable HTTP (POST/GET/DELETE with `Mcp-Session-Id`) and
//! legacy HTTP+SSE (`GET .../sse`, then `POST .../message?sessionId=`).
//!
//! A client request runs in its own task that sends everything for the client (related
//! notifications, target-to-client requests, and finally the response) into a channel. If the
//! response comes first, the client gets plain JSON and the request log gets the full result.
//! If anything else comes first, the client gets an SSE stream at once (a sampling or
//! elicitation request needs the client to answer before the tool can finish); the request log
//! then holds what was known when streaming began.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;

use super::jsonrpc::{self, INVALID_REQUEST, Message, RpcError};
use super::relay::{self, Rcx};
use super::session::{LATEST_VERSION, Session, SessionMap};
use super::upstream::http::SESSION_HEADER;
use crate::body::{self, Body, BoxError};
use crate::sse::SseEvent;

/// Interval of SSE comment lines on otherwise idle client streams.
const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// MCP's "session not found" code used by several SDKs alongside HTTP 404.
const SESSION_NOT_FOUND: i64 = -32001;

/// What a client request produced by the time `serve` must answer.
pub enum Exchange {
    /// The response (last) and any related messages that came before it.
    Complete(Vec<Json>),
    /// Related messages so far; the rest (ending with the response) follow on the receiver.
    Streaming(Vec<Json>, mpsc::Receiver<Json>, tokio::task::JoinHandle<()>),
}

/// Runs one client request as described in the module docs.
pub async fn run_request(
    session: Arc<Session>,
    id: Json,
    method: String,
    params: Option<Json>,
    mut rcx: Rcx,
) -> Exchange {
    rcx.request_id = Some(id.clone());
    let (tx, mut rx) = mpsc::channel::<Json>(64);
    let task = tokio::spawn(async move {
        let _busy = session.busy();
        let out = relay::handle(&session, &method, params, tx.clone(), &rcx).await;
        if rcx.cancelled.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let msg = match out {
            Ok(result) => jsonrpc::response(id, result),
            Err(e) => jsonrpc::error_response(id, &e),
        };
        let _ = tx.send(msg).await;
    });
    let mut seen = Vec::new();
    match rx.recv().await {
        Some(m) if m.get("method").is_none() => {
            seen.push(m);
            Exchange::Complete(seen)
        }
        Some(m) => {
            seen.push(m);
            Exchange::Streaming(seen, rx, task)
        }
        // Cancelled by the client: nothing to answer.
        None => Exchange::Complete(Vec::new()),
    }
}

/// A JSON body response.
pub fn json_response(status: StatusCode, v: &Json) -> Response<Body> {
    let mut r = Response::new(body::json(v));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// An HTTP error carrying a JSON-RPC error body.
pub fn rpc_error(
    status: StatusCode,
    id: Json,
    code: i64,
    message: impl Into<String>,
) -> Response<Body> {
    json_response(
        status,
        &jsonrpc::error_response(id, &RpcError::new(code, message)),
    )
}

pub fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = status;
    r
}

/// An SSE response: `first` events, then every message from `rx` as a `message` event.
/// `on_end` runs when the stream is dropped (client gone or stream finished).
pub fn sse_response(
    first: Vec<Bytes>,
    rx: Option<mpsc::Receiver<Json>>,
    on_end: Option<Box<dyn FnOnce() + Send>>,
) -> Response<Body> {
    struct Guard(Option<Box<dyn FnOnce() + Send>>);
    impl Drop for Guard {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    let head = futures_util::stream::iter(first);
    let tail = futures_util::stream::unfold((rx, Guard(on_end)), |(rx, guard)| async move {
        let mut rx = rx?;
        let chunk = tokio::select! {
            msg = rx.recv() => {
                let data = serde_json::to_string(&msg?).unwrap_or_default();
                SseEvent::frame("message", &data)
            }
            // Idle streams get a comment now and then, so intermediaries keep them open and a
            // vanished client is noticed (the write fails and the stream is dropped).
            () = tokio::time::sleep(KEEPALIVE) => Bytes::from_static(b": keepalive\n\n"),
        };
        Some((chunk, (Some(rx), guard)))
    });
    let frames = head.chain(tail).map(|b| Ok::<_, BoxError>(Frame::data(b)));
    let mut r = Response::new(StreamBody::new(frames).boxed_unsync());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn encode_all(msgs: &[Json]) -> Vec<Bytes> {
    msgs.iter()
        .map(|m| SseEvent::frame("message", &serde_json::to_string(m).unwrap_or_default()))
        .collect()
}

/// Handles a client notification on an initialized session.
async fn notification(session: &Session, method: &str, params: Option<Json>) {
    match method {
        // The gateway finished each target's handshake itself during `initialize`.
        "notifications/initialized" => {}
        "notifications/cancelled" => session.cancel(params).await,
        _ => {
            session
                .broadcast(jsonrpc::notification(method, params))
                .await
        }
    }
}

/// Everything `serve` hands the transport handlers.
pub struct Req<'a> {
    pub sessions: &'a Arc<SessionMap>,
    pub shared: &'a Arc<super::Shared>,
    pub method: Method,
    pub headers: &'a http::HeaderMap,
    pub path: &'a str,
    pub body: Bytes,
    pub rcx: Rcx,
}

impl Req<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn accepts_sse(&self) -> bool {
        self.header("accept")
            .is_none_or(|a| a.contains("text/event-stream") || a.contains("*/*"))
    }
}

/// Streamable HTTP: POST a message, GET the standalone stream, DELETE the session.
pub async fn streamable(r: Req<'_>) -> Response<Body> {
    match r.method {
        Method::POST => streamable_post(r).await,
        Method::GET if r.shared.stateful => {
            let Some(session) = r.header(SESSION_HEADER).and_then(|id| r.sessions.get(id)) else {
                return missing_session(&r);
            };
            if !r.accepts_sse() {
                return rpc_error(
                    StatusCode::NOT_ACCEPTABLE,
                    Json::Null,
                    INVALID_REQUEST,
                    "Not Acceptable: the GET stream needs Accept: text/event-stream",
                );
            }
            session.touch();
            let (tx, rx) = mpsc::channel(64);
            session.set_stream(tx);
            sse_response(Vec::new(), Some(rx), None)
        }
        Method::DELETE if r.shared.stateful => {
            let Some(id) = r.header(SESSION_HEADER) else {
                return missing_session(&r);
            };
            match r.sessions.remove(id) {
                Some(s) => {
                    s.close().await;
                    empty(StatusCode::OK)
                }
                None => missing_session(&r),
            }
        }
        _ => {
            let mut resp = rpc_error(
                StatusCode::METHOD_NOT_ALLOWED,
                Json::Null,
                INVALID_REQUEST,
                "Method Not Allowed",
            );
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            resp
        }
    }
}

fn missing_session(r: &Req<'_>) -> Response<Body> {
    match r.header(SESSION_HEADER) {
        None => rpc_error(
            StatusCode::BAD_REQUEST,
            Json::Null,
            INVALID_REQUEST,
            "Bad Request: Mcp-Session-Id header is required",
        ),
        Some(_) => rpc_error(
            StatusCode::NOT_FOUND,
            Json::Null,
            SESSION_NOT_FOUND,
            "Session not found",
        ),
    }
}

async fn streamable_post(r: Req<'_>) -> Response<Body> {
    let msg = match jsonrpc::parse(&r.body) {
        Ok(m) => m,
        Err(rej) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &jsonrpc::error_response(rej.id, &rej.error),
            );
        }
    };
    record_message(&r.rcx, &msg);
    if let Message::Request { id, method, params } = &msg {
        // Modern (2026-07-28) clients probe with server/discover; -32601 makes them fall back
        // to `initialize`, which is the protocol era this gateway speaks.
        if method == "server/discover" {
            let err = RpcError::new(
                jsonrpc::METHOD_NOT_FOUND,
                "Method not found: server/discover",
            );
            return json_response(StatusCode::OK, &jsonrpc::error_response(id.clone(), &err));
        }
        if method == "initialize" {
            return initialize(&r, id.clone(), params.clone().unwrap_or_else(|| json!({}))).await;
        }
    }
    let (session, ephemeral) = if r.shared.stateful {
        let Some(s) = r.header(SESSION_HEADER).and_then(|id| r.sessions.get(id)) else {
            return missing_session(&r);
        };
        (s, false)
    } else {
        match ephemeral_session(&r).await {
            Ok(s) => (s, true),
            Err(e) => {
                return json_response(StatusCode::OK, &jsonrpc::error_response(msg_id(&msg), &e));
            }
        }
    };
    session.touch();
    r.rcx
        .tel
        .update(|i| i.session_id = Some(session.id.clone()));
    let resp = match msg {
        Message::Request { id, method, params } => {
            let accepts_sse = r.accepts_sse();
            let ex = run_request(session.clone(), id, method, params, r.rcx.clone()).await;
            match ex {
                Exchange::Complete(mut msgs)
                    if msgs.len() == 1 || (!accepts_sse && !msgs.is_empty()) =>
                {
                    let last = msgs.pop().unwrap_or(Json::Null);
                    if ephemeral {
                        session.close().await;
                    }
                    json_response(StatusCode::OK, &last)
                }
                Exchange::Complete(msgs) => {
                    if ephemeral {
                        session.close().await;
                    }
                    sse_response(encode_all(&msgs), None, None)
                }
                Exchange::Streaming(msgs, rx, task) => {
                    if ephemeral {
                        let s = session.clone();
                        tokio::spawn(async move {
                            let _ = task.await;
                            s.close().await;
                        });
                    }
                    sse_response(encode_all(&msgs), Some(rx), None)
                }
            }
        }
        Message::Notification { method, params } => {
            notification(&session, &method, params).await;
            empty(StatusCode::ACCEPTED)
        }
        Message::Response { ref id, .. } | Message::Error { ref id, .. } => {
            let id = id.clone();
            match session.answer_server_request(&id, msg.to_json()).await {
                Ok(()) => empty(StatusCode::ACCEPTED),
                Err(e) => json_response(StatusCode::BAD_REQUEST, &jsonrpc::error_response(id, &e)),
            }
        }
    };
    if ephemeral && resp.status() == StatusCode::ACCEPTED {
        session.close().await;
    }
    resp
}

fn msg_id(msg: &Message) -> Json {
    match msg {
        Message::Request { id, .. } | Message::Response { id, .. } | Message::Error { id, .. } => {
            id.clone()
        }
        Message::Notification { .. } => Json::Null,
    }
}

fn record_message(rcx: &Rcx, msg: &Message) {
    rcx.tel.update(|i| {
        if let Some(m) = msg.method() {
            i.method = Some(m.to_string());
        }
        if let Message::Request { id, .. } = msg {
            i.request_id = Some(id.clone());
        }
    });
}

async fn initialize(r: &Req<'_>, id: Json, params: Json) -> Response<Body> {
    let session = Session::new(r.shared.clone());
    r.rcx
        .tel
        .update(|i| i.session_id = Some(session.id.clone()));
    match session.initialize(params, &r.rcx.tel).await {
        Ok(result) => {
            let mut resp = json_response(StatusCode::OK, &jsonrpc::response(id, result));
            if r.shared.stateful {
                if let Ok(v) = HeaderValue::from_str(&session.id) {
                    resp.headers_mut().insert(SESSION_HEADER, v);
                }
                // Idle time counts from the end of the handshake, not from spawning targets.
                session.touch();
                r.sessions.insert(session);
            } else {
                session.close().await;
            }
            resp
        }
        Err(e) => {
            session.close().await;
            r.rcx
                .tel
                .update(|i| i.error_type = Some(relay::error_type::TARGET_UNAVAILABLE.into()));
            json_response(StatusCode::OK, &jsonrpc::error_response(id, &e))
        }
    }
}

/// `statefulMode: stateless`: a throwaway session with a gateway-made handshake.
async fn ephemeral_session(r: &Req<'_>) -> Result<Arc<Session>, RpcError> {
    let version = r
        .header("mcp-protocol-version")
        .unwrap_or(LATEST_VERSION)
        .to_string();
    let params = json!({
        "protocolVersion": version,
        "capabilities": {},
        "clientInfo": {"name": "gateway", "version": env!("CARGO_PKG_VERSION")},
    });
    let session = Session::new(r.shared.clone());
    session.initialize(params, &r.rcx.tel).await?;
    Ok(session)
}

/// Legacy `GET .../sse`: opens a session whose every message goes down this stream.
pub fn legacy_open(r: &Req<'_>) -> Response<Body> {
    let session = Session::new(r.shared.clone());
    let (tx, rx) = mpsc::channel(64);
    session.set_stream(tx);
    let prefix = r.path.strip_suffix("/sse").unwrap_or("");
    let endpoint = format!("{prefix}/message?sessionId={}", session.id);
    r.rcx
        .tel
        .update(|i| i.session_id = Some(session.id.clone()));
    let sessions = r.sessions.clone();
    let id = session.id.clone();
    r.sessions.insert(session);
    let on_end: Box<dyn FnOnce() + Send> = Box::new(move || {
        if let Some(s) = sessions.remove(&id)
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move { s.close().await });
        }
    });
    sse_response(
        vec![SseEvent::frame("endpoint", &endpoint)],
        Some(rx),
        Some(on_end),
    )
}

/// Legacy `POST ...?sessionId=`: the answer goes down the session's SSE stream; HTTP says 202.
pub async fn legacy_post(r: Req<'_>, session_id: &str) -> Response<Body> {
    let Some(session) = r.sessions.get(session_id) else {
        return rpc_error(
            StatusCode::NOT_FOUND,
            Json::Null,
            SESSION_NOT_FOUND,
            "Session not found",
        );
    };
    session.touch();
    r.rcx
        .tel
        .update(|i| i.session_id = Some(session.id.clone()));
    let msg = match jsonrpc::parse(&r.body) {
        Ok(m) => m,
        Err(rej) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &jsonrpc::error_response(rej.id, &rej.error),
            );
        }
    };
    record_message(&r.rcx, &msg);
    let Some(stream) = session.stream_sender() else {
        return rpc_error(
            StatusCode::GONE,
            Json::Null,
            SESSION_NOT_FOUND,
            "SSE stream closed",
        );
    };
    match msg {
        Message::Request { id, method, params } if method == "initialize" => {
            let out = session
                .initialize(params.unwrap_or_else(|| json!({})), &r.rcx.tel)
                .await;
            let reply = match out {
                Ok(result) => jsonrpc::response(id, result),
                Err(e) => jsonrpc::error_response(id, &e),
            };
            let _ = stream.send(reply).await;
        }
        Message::Request { id, .. } if !session.is_initialized() => {
            let err = RpcError::new(INVALID_REQUEST, "session is not initialized");
            let _ = stream.send(jsonrpc::error_response(id, &err)).await;
        }
        Message::Request { id, method, params } => {
            match run_request(session.clone(), id, method, params, r.rcx.clone()).await {
                Exchange::Complete(msgs) => {
                    for m in msgs {
                        let _ = stream.send(m).await;
                    }
                }
                Exchange::Streaming(msgs, mut rx, _task) => {
                    for m in msgs {
                        let _ = stream.send(m).await;
                    }
                    tokio::spawn(async move {
                        while let Some(m) = rx.recv().await {
                            if stream.send(m).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            }
        }
        Message::Notification { method, params } => notification(&session, &method, params).await,
        Message::Response { ref id, .. } | Message::Error { ref id, .. } => {
            let id = id.clone();
            if let Err(e) = session.answer_server_request(&id, msg.to_json()).await {
                return json_response(StatusCode::BAD_REQUEST, &jsonrpc::error_response(id, &e));
            }
        }
    }
    empty(StatusCode::ACCEPTED)
}
