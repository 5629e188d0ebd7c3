//! MCP method handling for an initialized session: list fan-out and merge (with prefixes and
//! authorization filtering), and routing of named calls back to their target.

use std::sync::Arc;

use serde_json::{Map, Value as Json, json};
use tokio::sync::mpsc;

use super::authz::{Kind, Subject};
use super::jsonrpc::{INTERNAL_ERROR, INVALID_PARAMS, METHOD_NOT_FOUND, RpcError};
use super::names::Route;
use super::session::{Session, Telemetry, call, upstream_rpc_error};
use super::upstream::lock;
use crate::ctx::RequestLog;

/// Code used internally for a cancelled request (never sent: cancelled requests get no answer).
const REQUEST_CANCELLED: i64 = -32800;

/// Listing pages fetched per target before giving up on a target that never ends its cursor.
const MAX_PAGES: usize = 64;

/// `error.type` values recorded in `McpInfo.error_type`.
pub mod error_type {
    /// A tool ran and returned `isError: true`.
    pub const TOOL_ERROR: &str = "tool_error";
    /// The target answered with a JSON-RPC error.
    pub const TARGET_ERROR: &str = "target_error";
    /// The target could not be reached, crashed or timed out.
    pub const TARGET_UNAVAILABLE: &str = "target_unavailable";
    /// `mcpAuthorization` denied the call.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// The client sent something the gateway rejected (unknown tool, bad params, method).
    pub const INVALID_REQUEST: &str = "invalid_request";
    /// The client cancelled the request (`notifications/cancelled`).
    pub const CANCELLED: &str = "cancelled";
}

/// Per-request inputs to method handling.
#[derive(Clone, Debug)]
pub struct Rcx {
    pub tel: Telemetry,
    /// Request snapshot for authorization rules (`request.*`).
    pub log: Arc<RequestLog>,
    /// The client's JSON-RPC id for the request being handled.
    pub request_id: Option<Json>,
    /// Set when the client cancelled the request: no response is sent.
    pub cancelled: Arc<std::sync::atomic::AtomicBool>,
}

impl Rcx {
    /// Checks `mcpAuthorization` for a call on `subject`. A denial is recorded on the span and
    /// answered as `Unauthorized: <item> is not allowed by mcpAuthorization`.
    fn authorize(
        &self,
        shared: &super::Shared,
        subject: &Subject<'_>,
        item: impl FnOnce() -> String,
    ) -> Result<(), RpcError> {
        if shared.authz.is_empty() || shared.authz.allows(subject, &mut (*self.log).clone()) {
            return Ok(());
        }
        self.tel
            .update(|i| i.error_type = Some(error_type::UNAUTHORIZED.into()));
        Err(RpcError::new(
            INVALID_PARAMS,
            format!(
                "Unauthorized: {} is not allowed by mcpAuthorization",
                item()
            ),
        ))
    }
}

/// The listing methods and where their items and names live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListKind {
    Tools,
    Prompts,
    Resources,
    Templates,
}

impl ListKind {
    fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::Templates => "resources/templates/list",
        }
    }
    fn key(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::Templates => "resourceTemplates",
        }
    }
    fn name_field(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::Templates => "uriTemplate",
        }
    }
    fn authz_kind(self) -> Kind {
        match self {
            ListKind::Tools => Kind::Tool,
            ListKind::Prompts => Kind::Prompt,
            ListKind::Resources | ListKind::Templates => Kind::Resource,
        }
    }
}

/// Handles one client request on an initialized session; returns its result or error.
pub async fn handle(
    session: &Arc<Session>,
    method: &str,
    params: Option<Json>,
    sink: mpsc::Sender<Json>,
    rcx: &Rcx,
) -> Result<Json, RpcError> {
    let out = match method {
        "ping" => Ok(json!({})),
        "tools/list" => list(session, ListKind::Tools, rcx).await,
        "prompts/list" => list(session, ListKind::Prompts, rcx).await,
        "resources/list" => list(session, ListKind::Resources, rcx).await,
        "resources/templates/list" => list(session, ListKind::Templates, rcx).await,
        "tools/call" => named_call(session, Kind::Tool, method, params, sink, rcx).await,
        "prompts/get" => named_call(session, Kind::Prompt, method, params, sink, rcx).await,
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            uri_call(session, method, params, sink, rcx).await
        }
        "completion/complete" => complete(session, params, sink, rcx).await,
        "logging/setLevel" => set_level(session, params, rcx).await,
        _ => Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("Method not found: {method}"),
        )),
    };
    if let Err(e) = &out {
        rcx.tel.update(|i| {
            i.error_type.get_or_insert_with(|| match e.code {
                METHOD_NOT_FOUND | INVALID_PARAMS => error_type::INVALID_REQUEST.into(),
                _ => error_type::TARGET_ERROR.into(),
            });
        });
    }
    out
}

/// Fetches every page of one listing from one target.
async fn list_target(
    session: &Arc<Session>,
    idx: usize,
    kind: ListKind,
    rcx: &Rcx,
) -> Result<Vec<Json>, RpcError> {
    let shared = session.shared();
    let name = &shared.targets[idx].name;
    let conn = session.conn(idx).ok_or_else(|| {
        RpcError::new(INTERNAL_ERROR, format!("target '{name}' is not connected"))
    })?;
    let mut items = Vec::new();
    let mut cursor: Option<Json> = None;
    for _ in 0..MAX_PAGES {
        let params = cursor.take().map(|c| json!({ "cursor": c }));
        let result = call(&conn, name, kind.method(), params, None, &rcx.tel, shared)
            .await
            .map_err(|e| upstream_rpc_error(name, &e))??;
        if let Some(Json::Array(page)) = result.get(kind.key()) {
            items.extend(page.iter().cloned());
        }
        match result.get("nextCursor") {
            Some(c) if !c.is_null() => cursor = Some(c.clone()),
            _ => return Ok(items),
        }
    }
    tracing::warn!(target_name = %name, "listing stopped after {MAX_PAGES} pages");
    Ok(items)
}

async fn list(session: &Arc<Session>, kind: ListKind, rcx: &Rcx) -> Result<Json, RpcError> {
    let shared = session.shared();
    let targets = session.live_targets();
    let results = futures_util::future::join_all(
        targets
            .iter()
            .map(|&idx| list_target(session, idx, kind, rcx)),
    )
    .await;
    let mut merged = Vec::new();
    let mut failures = Vec::new();
    let mut owners = Vec::new();
    // With `prefixMode: never`, two targets may list the same name; the first one serves it.
    let mut seen = std::collections::HashSet::new();
    let mut scratch: Option<RequestLog> = None;
    let session_id = session.id.as_str();
    for (&idx, r) in targets.iter().zip(results) {
        let items = match r {
            Ok(items) => items,
            Err(e) if shared.fail_open => {
                tracing::warn!(target_name = %shared.targets[idx].name, "skipping target: {e}");
                failures.push(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        let target = shared.targets[idx].name.as_str();
        for mut item in items {
            let Some(name) = item.get(kind.name_field()).and_then(Json::as_str) else {
                continue;
            };
            let subject = Subject {
                kind: kind.authz_kind(),
                target,
                name,
                arguments: None,
                method: kind.method(),
                session_id: Some(session_id),
            };
            let allowed = shared.authz.is_empty()
                || shared
                    .authz
                    .allows(&subject, scratch.get_or_insert_with(|| (*rcx.log).clone()));
            if !allowed {
                continue;
            }
            let exposed = match kind {
                ListKind::Tools | ListKind::Prompts => shared.naming.expose(idx, name),
                ListKind::Resources | ListKind::Templates => shared.naming.expose_uri(idx, name),
            };
            if !seen.insert(exposed.clone()) {
                tracing::debug!(name = %exposed, target, "duplicate name hidden");
                continue;
            }
            if matches!(kind, ListKind::Tools | ListKind::Prompts) {
                owners.push(((kind == ListKind::Tools, exposed.clone()), idx));
            }
            item[kind.name_field()] = Json::String(exposed);
            merged.push(item);
        }
    }
    // failOpen still fails when every target failed.
    if failures.len() == targets.len()
        && let Some(e) = failures.into_iter().next()
    {
        return Err(e);
    }
    if !owners.is_empty() {
        let mut map = lock(&session.owners);
        for (k, v) in owners {
            map.entry(k).or_insert(v);
        }
    }
    let mut out = Map::new();
    out.insert(kind.key().into(), Json::Array(merged));
    Ok(Json::Object(out))
}

/// Resolves a client-facing tool/prompt name to `(target, original name)`.
async fn resolve_name(
    session: &Arc<Session>,
    kind: Kind,
    exposed: &str,
    rcx: &Rcx,
) -> Option<(usize, String)> {
    match session.shared().naming.route(exposed) {
        Route::Target(i, orig) => Some((i, orig.to_string())),
        Route::Unknown => None,
        Route::Lookup(name) => {
            let key = (kind == Kind::Tool, name.to_string());
            if let Some(&i) = lock(&session.owners).get(&key) {
                return Some((i, name.to_string()));
            }
            let lk = if kind == Kind::Tool {
                ListKind::Tools
            } else {
                ListKind::Prompts
            };
            list(session, lk, rcx).await.ok()?;
            lock(&session.owners)
                .get(&key)
                .map(|&i| (i, name.to_string()))
        }
    }
}

/// `tools/call` and `prompts/get`: route by name, authorize, forward with the original name.
async fn named_call(
    session: &Arc<Session>,
    kind: Kind,
    method: &str,
    params: Option<Json>,
    sink: mpsc::Sender<Json>,
    rcx: &Rcx,
) -> Result<Json, RpcError> {
    let shared = session.shared();
    let mut params = params.unwrap_or_else(|| json!({}));
    let what = if kind == Kind::Tool { "tool" } else { "prompt" };
    let Some(exposed) = params
        .get("name")
        .and_then(Json::as_str)
        .map(str::to_string)
    else {
        return Err(RpcError::new(
            INVALID_PARAMS,
            format!("{method}: params.name (string) is required"),
        ));
    };
    let arguments = params.get("arguments").cloned();
    rcx.tel.update(|i| {
        if kind == Kind::Tool {
            i.tool_name = Some(exposed.clone());
            i.tool_arguments = arguments.clone();
        } else {
            i.resource = Some(exposed.clone());
        }
    });
    let Some((idx, orig)) = resolve_name(session, kind, &exposed, rcx).await else {
        return Err(RpcError::new(
            INVALID_PARAMS,
            format!("Unknown {what}: {exposed}"),
        ));
    };
    let target = shared.targets[idx].name.as_str();
    rcx.tel.update(|i| {
        i.target = Some(target.to_string());
        if kind == Kind::Tool {
            i.tool_name = Some(orig.clone());
        } else {
            i.resource = Some(orig.clone());
            i.prompt_name = Some(orig.clone());
        }
    });
    let subject = Subject {
        kind,
        target,
        name: &orig,
        arguments: arguments.as_ref(),
        method,
        session_id: Some(&session.id),
    };
    rcx.authorize(shared, &subject, || format!("{what} '{exposed}'"))?;
    params["name"] = Json::String(orig);
    let result = forward(session, idx, method, params, sink, rcx).await?;
    if kind == Kind::Tool {
        let is_error = result.get("isError").and_then(Json::as_bool) == Some(true);
        rcx.tel.update(|i| {
            if is_error {
                i.error_type = Some(error_type::TOOL_ERROR.into());
                i.tool_error = result.get("content").cloned();
            }
            i.tool_result = Some(result.clone());
        });
    }
    Ok(result)
}

/// Forwards one request to target `idx`, relaying its messages to `sink` meanwhile.
async fn forward(
    session: &Arc<Session>,
    idx: usize,
    method: &str,
    params: Json,
    sink: mpsc::Sender<Json>,
    rcx: &Rcx,
) -> Result<Json, RpcError> {
    let shared = session.shared();
    let target = shared.targets[idx].name.as_str();
    let conn = session.conn(idx).ok_or_else(|| {
        RpcError::new(
            INTERNAL_ERROR,
            format!("target '{target}' is not connected"),
        )
    })?;
    let inflight = session.track(idx, Some(&params), rcx.request_id.as_ref(), sink);
    let outcome = tokio::select! {
        r = call(&conn, target, method, Some(params), Some(&inflight), &rcx.tel, shared) => {
            session.flush_inbound().await;
            r
        }
        () = inflight.cancelled() => {
            // MCP: a cancelled request gets no response; the transport sees `cancelled`.
            rcx.cancelled.store(true, std::sync::atomic::Ordering::Release);
            rcx.tel.update(|i| i.error_type = Some(error_type::CANCELLED.into()));
            return Err(RpcError::new(REQUEST_CANCELLED, "request cancelled by the client"));
        }
    };
    match outcome {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(e)) => {
            rcx.tel.update(|i| {
                i.error_type = Some(error_type::TARGET_ERROR.into());
                if method == "tools/call" {
                    i.tool_error = Some(e.to_json());
                }
            });
            Err(e)
        }
        Err(e) => {
            rcx.tel
                .update(|i| i.error_type = Some(error_type::TARGET_UNAVAILABLE.into()));
            Err(upstream_rpc_error(target, &e))
        }
    }
}

/// `resources/read|subscribe|unsubscribe`: route by the namespaced URI.
async fn uri_call(
    session: &Arc<Session>,
    method: &str,
    params: Option<Json>,
    sink: mpsc::Sender<Json>,
    rcx: &Rcx,
) -> Result<Json, RpcError> {
    let shared = session.shared();
    let mut params = params.unwrap_or_else(|| json!({}));
    let Some(uri) = params.get("uri").and_then(Json::as_str).map(str::to_string) else {
        return Err(RpcError::new(
            INVALID_PARAMS,
            format!("{method}: params.uri (string) is required"),
        ));
    };
    rcx.tel.update(|i| i.resource = Some(uri.clone()));
    let Some((idx, orig)) = shared.naming.route_uri(&uri) else {
        return Err(RpcError::new(
            INVALID_PARAMS,
            format!("Unknown resource: {uri}"),
        ));
    };
    let orig = orig.to_string();
    let target = shared.targets[idx].name.as_str();
    rcx.tel.update(|i| {
        i.target = Some(target.to_string());
        i.resource = Some(orig.clone());
    });
    let subject = Subject {
        kind: Kind::Resource,
        target,
        name: &orig,
        arguments: None,
        method,
        session_id: Some(&session.id),
    };
    rcx.authorize(shared, &subject, || format!("resource '{uri}'"))?;
    params["uri"] = Json::String(orig);
    let mut result = forward(session, idx, method, params, sink, rcx).await?;
    if let Some(Json::Array(contents)) = result.get_mut("contents") {
        for c in contents {
            if let Some(u) = c.get("uri").and_then(Json::as_str) {
                let exposed = shared.naming.expose_uri(idx, u);
                c["uri"] = Json::String(exposed);
            }
        }
    }
    Ok(result)
}

/// `completion/complete`: the `ref` names a prompt or a resource template.
async fn complete(
    session: &Arc<Session>,
    params: Option<Json>,
    sink: mpsc::Sender<Json>,
    rcx: &Rcx,
) -> Result<Json, RpcError> {
    let shared = session.shared();
    let mut params = params.unwrap_or_else(|| json!({}));
    let r#ref = params.get("ref").cloned().unwrap_or(Json::Null);
    let (idx, field, orig) = match r#ref.get("type").and_then(Json::as_str) {
        Some("ref/prompt") => {
            let name = r#ref.get("name").and_then(Json::as_str).unwrap_or_default();
            let (i, o) = resolve_name(session, Kind::Prompt, name, rcx)
                .await
                .ok_or_else(|| RpcError::new(INVALID_PARAMS, format!("Unknown prompt: {name}")))?;
            (i, "name", o)
        }
        Some("ref/resource") => {
            let uri = r#ref.get("uri").and_then(Json::as_str).unwrap_or_default();
            let (i, o) = shared
                .naming
                .route_uri(uri)
                .ok_or_else(|| RpcError::new(INVALID_PARAMS, format!("Unknown resource: {uri}")))?;
            (i, "uri", o.to_string())
        }
        _ => {
            return Err(RpcError::new(
                INVALID_PARAMS,
                "completion/complete: params.ref.type must be ref/prompt or ref/resource",
            ));
        }
    };
    params["ref"][field] = Json::String(orig);
    forward(session, idx, "completion/complete", params, sink, rcx).await
}

/// `logging/setLevel` applies to every target that supports logging.
async fn set_level(
    session: &Arc<Session>,
    params: Option<Json>,
    rcx: &Rcx,
) -> Result<Json, RpcError> {
    let shared = session.shared();
    for idx in session.live_targets() {
        let Some(conn) = session.conn(idx) else {
            continue;
        };
        let name = &shared.targets[idx].name;
        match call(
            &conn,
            name,
            "logging/setLevel",
            params.clone(),
            None,
            &rcx.tel,
            shared,
        )
        .await
        {
            Ok(Ok(_)) => {}
            // Targets without the logging capability answer -32601; that is fine.
            Ok(Err(e)) => tracing::debug!(target_name = %name, "logging/setLevel: {e}"),
            Err(e) => return Err(upstream_rpc_error(name, &e)),
        }
    }
    Ok(json!({}))
}
