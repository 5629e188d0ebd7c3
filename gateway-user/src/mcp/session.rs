//! Client sessions: one per `Mcp-Session-Id` (or legacy SSE stream), each holding one upstream
//! connection per target, the routes for messages targets send on their own, and the id map
//! for target-to-client requests (sampling, elicitation, roots).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json, json};
use tokio::sync::mpsc;

use super::Shared;
use super::jsonrpc::{self, INTERNAL_ERROR, RpcError};
use super::upstream::{CallCtx, Conn, ConnectArgs, Inbound, UpstreamError, lock};
use crate::ctx::{McpInfo, TargetCall};

/// MCP revisions reachable through `initialize`, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
pub const LATEST_VERSION: &str = "2025-11-25";

/// Per-request telemetry and trace context handed to every upstream call.
#[derive(Clone, Debug)]
pub struct Telemetry {
    pub info: Arc<Mutex<McpInfo>>,
    pub trace_id: [u8; 16],
}

impl Telemetry {
    pub fn update(&self, f: impl FnOnce(&mut McpInfo)) {
        f(&mut lock(&self.info));
    }
}

/// A request in flight to one target: where that target's unsolicited messages go meanwhile.
#[derive(Debug)]
struct Inflight {
    seq: u64,
    target: usize,
    progress_token: Option<Json>,
    sink: mpsc::Sender<Json>,
    /// The client's request id (as JSON text), to map `notifications/cancelled`.
    client_id: Option<String>,
    /// The id the transport gave the upstream request (0 until sent).
    upstream_id: Arc<AtomicU64>,
    cancelled: Arc<tokio::sync::Notify>,
}

/// Removes an in-flight entry when the call ends, however it ends.
pub struct InflightGuard {
    session: Arc<Session>,
    seq: u64,
    sink: mpsc::Sender<Json>,
    upstream_id: Arc<AtomicU64>,
    cancelled: Arc<tokio::sync::Notify>,
}

impl InflightGuard {
    /// Resolves when the client cancels this request.
    pub async fn cancelled(&self) {
        self.cancelled.notified().await;
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        lock(&self.session.inflight).retain(|f| f.seq != self.seq);
    }
}

/// One client session.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    shared: Arc<Shared>,
    conns: Mutex<Vec<Option<Arc<Conn>>>>,
    initialized: AtomicBool,
    closed: AtomicBool,
    inbound_tx: Mutex<Option<mpsc::Sender<Inbound>>>,
    /// The client's standalone stream: the GET stream (streamable HTTP) or the SSE stream.
    stream: Mutex<Option<mpsc::Sender<Json>>>,
    inflight: Mutex<Vec<Inflight>>,
    /// Client-facing id of a target's request → (target, the target's id).
    server_requests: Mutex<HashMap<String, (usize, Json)>>,
    /// `prefixMode: never`: which target serves a tool/prompt name, from the last listing.
    pub(crate) owners: Mutex<HashMap<(bool, String), usize>>,
    next: AtomicU64,
    last_used: Mutex<Instant>,
    /// Client requests being handled; a busy session is never idle.
    active: std::sync::atomic::AtomicUsize,
}

/// Marks a session busy while a client request runs; touches it when done.
pub struct BusyGuard(Arc<Session>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}

impl Session {
    pub fn new(shared: Arc<Shared>) -> Arc<Session> {
        let (tx, mut rx) = mpsc::channel::<Inbound>(64);
        let s = Arc::new(Session {
            id: crate::ctx::hex(&rand::random::<[u8; 16]>()),
            conns: Mutex::new(Vec::new()),
            shared,
            initialized: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            inbound_tx: Mutex::new(Some(tx)),
            stream: Mutex::new(None),
            inflight: Mutex::new(Vec::new()),
            server_requests: Mutex::new(HashMap::new()),
            owners: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            last_used: Mutex::new(Instant::now()),
            active: std::sync::atomic::AtomicUsize::new(0),
        });
        let weak: Weak<Session> = Arc::downgrade(&s);
        tokio::spawn(async move {
            while let Some(mut ib) = rx.recv().await {
                if let Some(ack) = ib.barrier.take() {
                    let _ = ack.send(());
                    continue;
                }
                let Some(s) = weak.upgrade() else { break };
                s.route_inbound(ib).await;
            }
        });
        s
    }

    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    pub fn touch(&self) {
        *lock(&self.last_used) = Instant::now();
    }

    pub fn idle_for(&self) -> Duration {
        lock(&self.last_used).elapsed()
    }

    /// Marks the session busy until the guard drops.
    pub fn busy(self: &Arc<Self>) -> BusyGuard {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.touch();
        BusyGuard(self.clone())
    }

    fn is_busy(&self) -> bool {
        self.active.load(Ordering::Acquire) > 0
    }

    pub fn stream_sender(&self) -> Option<mpsc::Sender<Json>> {
        lock(&self.stream).clone()
    }

    /// Whether the client holds a standalone stream open (it is not idle then).
    pub fn has_live_stream(&self) -> bool {
        lock(&self.stream).as_ref().is_some_and(|s| !s.is_closed())
    }

    pub fn is_initialized(&self) -> bool {
        self.initialized.load(Ordering::Acquire)
    }

    /// Installs the client's standalone stream, replacing (and so ending) an earlier one.
    pub fn set_stream(&self, tx: mpsc::Sender<Json>) {
        *lock(&self.stream) = Some(tx);
    }

    pub fn conn(&self, idx: usize) -> Option<Arc<Conn>> {
        lock(&self.conns).get(idx).cloned().flatten()
    }

    /// Indexes of the targets this session is connected to.
    pub fn live_targets(&self) -> Vec<usize> {
        lock(&self.conns)
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|_| i))
            .collect()
    }

    /// Child process ids of stdio targets (for diagnostics and tests).
    pub fn pids(&self) -> Vec<u32> {
        lock(&self.conns)
            .iter()
            .flatten()
            .filter_map(|c| c.pid())
            .collect()
    }

    /// Connects every target and runs the MCP handshake with each, forwarding the client's
    /// `initialize` params. Returns the merged result for the client.
    pub async fn initialize(&self, params: Json, tel: &Telemetry) -> Result<Json, RpcError> {
        let Some(inbound) = lock(&self.inbound_tx).clone() else {
            return Err(RpcError::new(INTERNAL_ERROR, "session closed"));
        };
        let shared = &self.shared;
        let attempts = shared.targets.iter().enumerate().map(|(idx, t)| {
            let inbound = inbound.clone();
            let params = params.clone();
            async move {
                let r = async {
                    let conn = Conn::connect(ConnectArgs {
                        idx,
                        name: &t.name,
                        transport: &t.transport,
                        inbound,
                        limits: shared.limits,
                        client: &shared.client,
                    })
                    .await?;
                    let out = call(
                        &conn,
                        &t.name,
                        "initialize",
                        Some(params),
                        None,
                        tel,
                        shared,
                    )
                    .await;
                    match out {
                        Ok(Ok(result)) => {
                            conn.handshake_done(&result).await?;
                            Ok((conn, Ok(result)))
                        }
                        Ok(Err(e)) => Ok((conn, Err(e))),
                        Err(e) => {
                            conn.close().await;
                            Err(e)
                        }
                    }
                }
                .await;
                (idx, r)
            }
        });
        let results = futures_util::future::join_all(attempts).await;
        let mut conns: Vec<Option<Arc<Conn>>> = vec![None; shared.targets.len()];
        let mut infos = Vec::new();
        let mut failures = Vec::new();
        for (idx, r) in results {
            let name = &shared.targets[idx].name;
            match r {
                Ok((conn, Ok(result))) => {
                    conns[idx] = Some(Arc::new(conn));
                    infos.push((idx, result));
                }
                Ok((conn, Err(e))) => {
                    conn.close().await;
                    failures.push(format!("target '{name}' rejected initialize: {e}"));
                }
                Err(e) => failures.push(format!("target '{name}' failed to initialize: {e}")),
            }
        }
        if infos.is_empty() || (!failures.is_empty() && !shared.fail_open) {
            for c in conns.into_iter().flatten() {
                c.close().await;
            }
            return Err(RpcError::new(INTERNAL_ERROR, failures.join("; ")));
        }
        for f in &failures {
            tracing::warn!(backend = %shared.name, "{f}; continuing without it (failOpen)");
        }
        *lock(&self.conns) = conns;
        self.initialized.store(true, Ordering::Release);
        Ok(merge_initialize(&self.shared, &params, &infos))
    }

    /// Registers a call to `target` so the target's unsolicited messages reach `sink`.
    pub fn track(
        self: &Arc<Self>,
        target: usize,
        params: Option<&Json>,
        client_id: Option<&Json>,
        sink: mpsc::Sender<Json>,
    ) -> InflightGuard {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let progress_token = params
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get("progressToken"))
            .cloned();
        let upstream_id = Arc::new(AtomicU64::new(0));
        let cancelled = Arc::new(tokio::sync::Notify::new());
        lock(&self.inflight).push(Inflight {
            seq,
            target,
            progress_token,
            sink: sink.clone(),
            client_id: client_id.map(Json::to_string),
            upstream_id: upstream_id.clone(),
            cancelled: cancelled.clone(),
        });
        InflightGuard {
            session: self.clone(),
            seq,
            sink,
            upstream_id,
            cancelled,
        }
    }

    /// The client's `notifications/cancelled`: tells the target serving that request, with the
    /// target's own request id. Unknown ids (already answered) are ignored, as MCP allows.
    pub async fn cancel(&self, params: Option<Json>) {
        let Some(params) = params else { return };
        let Some(key) = params.get("requestId").map(Json::to_string) else {
            return;
        };
        let found = lock(&self.inflight)
            .iter()
            .find(|f| f.client_id.as_deref() == Some(key.as_str()))
            .map(|f| {
                // Stored permit: the waiting call sees it even if it is not polling right now.
                f.cancelled.notify_one();
                (f.target, f.upstream_id.load(Ordering::Acquire))
            });
        let Some((target, upstream)) = found.filter(|(_, id)| *id != 0) else {
            return;
        };
        let mut p = params;
        p["requestId"] = Json::from(upstream);
        let note = jsonrpc::notification("notifications/cancelled", Some(p));
        if let Some(c) = self.conn(target)
            && let Err(e) = c.send(note, None).await
        {
            tracing::debug!(session = %self.id, "forwarding cancel failed: {e}");
        }
    }

    /// Waits until every target message queued so far has been routed, so that a call's
    /// progress notifications reach its stream before its response does (stdio and SSE
    /// targets deliver both on one stream, routed by different tasks).
    pub async fn flush_inbound(&self) {
        let Some(tx) = lock(&self.inbound_tx).clone() else {
            return;
        };
        let (ack, done) = tokio::sync::oneshot::channel();
        let marker = Inbound {
            target: usize::MAX,
            msg: Json::Null,
            barrier: Some(ack),
        };
        if tx.send(marker).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), done).await;
        }
    }

    /// Delivers a message a target sent on its own to the right client stream.
    async fn route_inbound(&self, ib: Inbound) {
        let mut msg = ib.msg;
        let is_request = msg.get("id").is_some();
        if is_request {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let down = format!("gw-{}-{n}", ib.target);
            let orig = msg.get("id").cloned().unwrap_or(Json::Null);
            lock(&self.server_requests).insert(down.clone(), (ib.target, orig));
            msg["id"] = Json::String(down);
        } else {
            self.rewrite_notification(ib.target, &mut msg);
        }
        let token = (msg.get("method").and_then(Json::as_str) == Some("notifications/progress"))
            .then(|| {
                msg.get("params")
                    .and_then(|p| p.get("progressToken"))
                    .cloned()
            })
            .flatten();
        let sink = {
            let inflight = lock(&self.inflight);
            let by_token = token.as_ref().and_then(|t| {
                inflight
                    .iter()
                    .find(|f| f.progress_token.as_ref() == Some(t))
            });
            by_token
                .or_else(|| inflight.iter().rev().find(|f| f.target == ib.target))
                .map(|f| f.sink.clone())
        }
        .or_else(|| lock(&self.stream).clone());
        let delivered = match sink {
            Some(s) => s.send(msg.clone()).await.is_ok(),
            None => false,
        };
        if !delivered && is_request {
            // A target waiting on a client that cannot hear it would hang; answer for it.
            let id = msg.get("id").and_then(Json::as_str).map(str::to_string);
            if let Some((target, orig)) = id.and_then(|d| lock(&self.server_requests).remove(&d)) {
                let err =
                    RpcError::new(INTERNAL_ERROR, "no client stream to deliver the request to");
                if let Some(c) = self.conn(target) {
                    let _ = c.send(jsonrpc::error_response(orig, &err), None).await;
                }
            }
        } else if !delivered {
            tracing::debug!(session = %self.id, "no client stream; target notification dropped");
        }
    }

    fn rewrite_notification(&self, target: usize, msg: &mut Json) {
        if msg.get("method").and_then(Json::as_str) == Some("notifications/resources/updated")
            && let Some(uri) = msg.pointer_mut("/params/uri")
            && let Some(u) = uri.as_str()
        {
            *uri = Json::String(self.shared.naming.expose_uri(target, u));
        }
    }

    /// Forwards the client's answer to a target's request, restoring the target's id.
    pub async fn answer_server_request(&self, id: &Json, mut msg: Json) -> Result<(), RpcError> {
        let key = id.as_str().unwrap_or_default().to_string();
        let Some((target, orig)) = lock(&self.server_requests).remove(&key) else {
            return Err(RpcError::new(
                jsonrpc::INVALID_REQUEST,
                format!("no pending server request with id {id}"),
            ));
        };
        msg["id"] = orig;
        let conn = self
            .conn(target)
            .ok_or_else(|| RpcError::new(INTERNAL_ERROR, "target is not connected"))?;
        conn.send(msg, None)
            .await
            .map_err(|e| upstream_rpc_error(&self.shared.targets[target].name, &e))
    }

    /// Sends a client notification to every connected target.
    pub async fn broadcast(&self, msg: Json) {
        let conns: Vec<_> = lock(&self.conns).iter().flatten().cloned().collect();
        for c in conns {
            if let Err(e) = c.send(msg.clone(), None).await {
                tracing::debug!(session = %self.id, "notification to target failed: {e}");
            }
        }
    }

    /// Closes every upstream connection (kills stdio children, deletes HTTP sessions).
    pub async fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        lock(&self.inbound_tx).take();
        lock(&self.stream).take();
        let conns: Vec<_> = lock(&self.conns).drain(..).flatten().collect();
        futures_util::future::join_all(conns.iter().map(|c| c.close())).await;
        tracing::debug!(session = %self.id, "MCP session closed");
    }
}

/// One upstream request with telemetry: a `TargetCall` with a fresh span id, whose traceparent
/// goes into the HTTP header and `params._meta.traceparent`.
pub async fn call(
    conn: &Conn,
    target: &str,
    method: &str,
    params: Option<Json>,
    inflight: Option<&InflightGuard>,
    tel: &Telemetry,
    shared: &Shared,
) -> Result<Result<Json, RpcError>, UpstreamError> {
    let span_id: [u8; 8] = rand::random();
    let traceparent = format!(
        "00-{}-{}-01",
        crate::ctx::hex(&tel.trace_id),
        crate::ctx::hex(&span_id)
    );
    let slot = {
        let mut info = lock(&tel.info);
        info.target_calls.push(TargetCall {
            target: target.to_string(),
            span_id,
            start: Instant::now(),
            end: None,
            error: None,
        });
        info.target_calls.len() - 1
    };
    let ctx = CallCtx {
        traceparent,
        sink: inflight.map(|g| g.sink.clone()),
        upstream_id: inflight.map(|g| g.upstream_id.clone()),
    };
    let out = conn
        .request(method, params, &ctx, shared.limits.request_timeout)
        .await;
    let error = match &out {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.message.clone()),
        Err(e) => Some(e.to_string()),
    };
    if let Some(tc) = lock(&tel.info).target_calls.get_mut(slot) {
        tc.end = Some(Instant::now());
        tc.error = error;
    }
    out
}

/// A transport failure as the JSON-RPC error the client sees.
pub fn upstream_rpc_error(target: &str, e: &UpstreamError) -> RpcError {
    let mut err = RpcError::new(INTERNAL_ERROR, format!("MCP target '{target}' failed: {e}"));
    err.data = Some(json!({"target": target}));
    err
}

fn merge_initialize(shared: &Shared, params: &Json, infos: &[(usize, Json)]) -> Json {
    let requested = params.get("protocolVersion").and_then(Json::as_str);
    let version = match (infos, requested) {
        ([(_, only)], _) if !shared.naming.multiplexing() => only
            .get("protocolVersion")
            .and_then(Json::as_str)
            .unwrap_or(LATEST_VERSION),
        (_, Some(v)) if SUPPORTED_VERSIONS.contains(&v) => v,
        _ => LATEST_VERSION,
    };
    let has = |cap: &str| {
        infos
            .iter()
            .any(|(_, r)| r.pointer(&format!("/capabilities/{cap}")).is_some())
    };
    let mut caps = Map::new();
    caps.insert("tools".into(), json!({"listChanged": true}));
    caps.insert("prompts".into(), json!({"listChanged": true}));
    let subscribe = infos
        .iter()
        .any(|(_, r)| r.pointer("/capabilities/resources/subscribe") == Some(&Json::Bool(true)));
    caps.insert(
        "resources".into(),
        json!({"listChanged": true, "subscribe": subscribe}),
    );
    for extra in ["logging", "completions"] {
        if has(extra) {
            caps.insert(extra.into(), json!({}));
        }
    }
    let mut instructions = String::from(
        "MCP gateway: the tools, prompts and resources below come from several MCP servers, \
         and calls are routed to the server that provides them.",
    );
    for (idx, r) in infos {
        if let Some(i) = r.get("instructions").and_then(Json::as_str) {
            instructions.push_str(&format!("\n\n[{}]\n{i}", shared.targets[*idx].name));
        }
    }
    json!({
        "protocolVersion": version,
        "capabilities": caps,
        "serverInfo": {"name": "gateway", "version": env!("CARGO_PKG_VERSION")},
        "instructions": instructions,
    })
}

/// Live sessions of one backend.
#[derive(Debug, Default)]
pub struct SessionMap {
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

impl SessionMap {
    pub fn insert(&self, s: Arc<Session>) {
        lock(&self.sessions).insert(s.id.clone(), s);
    }

    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.sessions).get(id).cloned()
    }

    pub fn remove(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.sessions).remove(id)
    }

    pub fn len(&self) -> usize {
        lock(&self.sessions).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn drain(&self) -> Vec<Arc<Session>> {
        lock(&self.sessions).drain().map(|(_, s)| s).collect()
    }

    /// Removes sessions idle for longer than `ttl`; the caller closes them.
    pub fn take_idle(&self, ttl: Duration) -> Vec<Arc<Session>> {
        let mut map = lock(&self.sessions);
        let idle: Vec<String> = map
            .iter()
            .filter(|(_, s)| s.idle_for() > ttl && !s.has_live_stream() && !s.is_busy())
            .map(|(k, _)| k.clone())
            .collect();
        idle.iter().filter_map(|k| map.remove(k)).collect()
    }
}
