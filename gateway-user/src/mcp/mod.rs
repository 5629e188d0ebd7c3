//! MCP gateway: one endpoint multiplexing stdio, SSE and streamable-HTTP targets.
//!
//! ```text
//! client ──streamable HTTP (POST/GET/DELETE /mcp) or legacy SSE (GET /sse, POST /message)──▶
//!   server.rs   transport, sessions by Mcp-Session-Id, JSON vs SSE answers
//!   relay.rs    method handling: list fan-out + merge + prefix + authz filter; call routing
//!   session.rs  one upstream connection per target per client session; target→client routing
//!   upstream/   stdio (child per session), streamable HTTP, legacy SSE clients
//!   config.rs   raw YAML types (backends, `mcpAuthorization`); `config::raw` embeds them
//! ```
//!
//! Names: with several targets, tools and prompts are `${target}_${name}` and resource URIs
//! `${target}+${uri}` (see `names.rs`). Authorization: `authz.rs`. Every upstream call is
//! recorded in `RequestLog.mcp.target_calls` with the span id whose W3C `traceparent` went to
//! the target (HTTP header, and `params._meta.traceparent`, the only carrier stdio has).
//!
//! Lifecycle: stdio targets are spawned per client session and killed when it ends (DELETE,
//! legacy SSE stream closed, `sessionIdleTimeout`, or [`McpBackend::shutdown`]).

pub mod authz;
pub mod config;
pub mod jsonrpc;
pub mod names;
pub mod relay;
pub mod server;
pub mod session;
pub mod upstream;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};

use crate::body::Body;
use crate::ctx::{McpInfo, RequestLog};
use authz::{Authorizer, AuthzError};
use config::{
    RawMcpAuthorization, RawMcpBackend, RawMcpFailureMode, RawMcpHttpTarget, RawMcpPrefixMode,
    RawMcpStatefulMode, RawMcpTarget,
};
use jsonrpc::INVALID_REQUEST;
use names::Naming;
use relay::Rcx;
use session::{SessionMap, Telemetry};
use upstream::{Limits, Transport, UpstreamError};

/// Default `maxMessageBytes`: 4 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 4 * 1024 * 1024;
/// Default `requestTimeout`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `sessionIdleTimeout`.
pub const DEFAULT_SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Errors building an MCP backend from config. Each names the YAML path and the bad value.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("{path}: {message}")]
    Config { path: String, message: String },
    #[error(transparent)]
    Authz(#[from] AuthzError),
    #[error("{path}: cannot build the HTTP client: {source}")]
    Client { path: String, source: UpstreamError },
}

fn config_err(path: impl Into<String>, message: impl Into<String>) -> McpError {
    McpError::Config {
        path: path.into(),
        message: message.into(),
    }
}

/// One target as compiled from config.
#[derive(Clone, Debug)]
pub struct TargetDef {
    pub name: String,
    pub transport: Transport,
}

/// Immutable backend state shared by its sessions.
#[derive(Debug)]
pub struct Shared {
    pub name: String,
    pub targets: Vec<TargetDef>,
    pub naming: Naming,
    pub authz: Authorizer,
    pub limits: Limits,
    pub stateful: bool,
    pub fail_open: bool,
    pub dns_rebinding_protection: bool,
    pub idle_timeout: Duration,
    pub client: upstream::http::HttpClient,
}

/// An `mcp:` route backend.
#[derive(Debug)]
pub struct McpBackend {
    shared: Arc<Shared>,
    sessions: Arc<SessionMap>,
    reaper_started: AtomicBool,
    reaper: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

// === impl McpBackend ===

impl McpBackend {
    /// Validates and compiles the backend. `yaml_path` is where it sits in the config (for
    /// error messages, e.g. "binds[0].listeners[0].routes[1].backends[0].mcp"); `authz` is the
    /// route's `policies.mcpAuthorization`.
    pub fn new(
        name: &str,
        raw: &RawMcpBackend,
        authz: Option<&RawMcpAuthorization>,
        yaml_path: &str,
    ) -> Result<Arc<McpBackend>, McpError> {
        let targets = compile_targets(raw, yaml_path)?;
        let max = raw.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
        if max == 0 || max > u32::MAX as u64 {
            return Err(config_err(
                format!("{yaml_path}.maxMessageBytes"),
                format!("{max} is out of range (1..=4294967295)"),
            ));
        }
        let request_timeout = opt_duration(
            raw.request_timeout.as_deref(),
            DEFAULT_REQUEST_TIMEOUT,
            &format!("{yaml_path}.requestTimeout"),
        )?;
        let idle_timeout = opt_duration(
            raw.session_idle_timeout.as_deref(),
            DEFAULT_SESSION_IDLE_TIMEOUT,
            &format!("{yaml_path}.sessionIdleTimeout"),
        )?;
        let authz = Authorizer::compile(authz, &format!("{yaml_path}.policies.mcpAuthorization"))?;
        let client = upstream::http::new_client(request_timeout.min(Duration::from_secs(10)))
            .map_err(|source| McpError::Client {
                path: yaml_path.to_string(),
                source,
            })?;
        let naming = Naming::new(
            raw.prefix_mode.unwrap_or(RawMcpPrefixMode::Conditional),
            targets.iter().map(|t| t.name.clone()).collect(),
        );
        let shared = Shared {
            name: name.to_string(),
            targets,
            naming,
            authz,
            limits: Limits {
                max_message_bytes: max as usize,
                request_timeout,
            },
            stateful: raw.stateful_mode != Some(RawMcpStatefulMode::Stateless),
            fail_open: raw.failure_mode == Some(RawMcpFailureMode::FailOpen),
            dns_rebinding_protection: raw.dns_rebinding_protection.unwrap_or(false),
            idle_timeout,
            client,
        };
        Ok(Arc::new(McpBackend {
            shared: Arc::new(shared),
            sessions: Arc::new(SessionMap::default()),
            reaper_started: AtomicBool::new(false),
            reaper: Mutex::new(None),
        }))
    }

    /// The target names, in config order.
    pub fn target_names(&self) -> Vec<&str> {
        self.shared
            .targets
            .iter()
            .map(|t| t.name.as_str())
            .collect()
    }

    /// Number of live client sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Child process ids of the stdio targets of session `id` (diagnostics and tests).
    pub fn session_pids(&self, id: &str) -> Vec<u32> {
        self.sessions.get(id).map(|s| s.pids()).unwrap_or_default()
    }

    /// Serve one client HTTP request (any path under the route: /mcp, /sse, /message...).
    /// Never panics; protocol errors become JSON-RPC error bodies.
    pub async fn serve(
        &self,
        req: http::Request<hyper::body::Incoming>,
        log: &mut RequestLog,
    ) -> http::Response<Body> {
        self.start_reaper();
        let info = Arc::new(Mutex::new(log.mcp.take().unwrap_or_default()));
        let resp = self.serve_inner(req, log, &info).await;
        let info = upstream::lock(&info).clone();
        log.mcp = Some(info);
        resp
    }

    async fn serve_inner(
        &self,
        req: http::Request<hyper::body::Incoming>,
        log: &RequestLog,
        info: &Arc<Mutex<McpInfo>>,
    ) -> http::Response<Body> {
        let (parts, body) = req.into_parts();
        if self.shared.dns_rebinding_protection && !is_local(&parts.headers) {
            return server::rpc_error(
                StatusCode::FORBIDDEN,
                serde_json::Value::Null,
                INVALID_REQUEST,
                "Forbidden: Host and Origin must be localhost (dnsRebindingProtection)",
            );
        }
        let limit = self.shared.limits.max_message_bytes;
        let body = match read_body(body, limit).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        let trace_id = if log.trace.trace_id == [0; 16] {
            rand::random()
        } else {
            log.trace.trace_id
        };
        let authz_log = if self.shared.authz.is_empty() {
            Arc::new(RequestLog::new(String::new(), String::new()))
        } else {
            Arc::new(log.clone())
        };
        let rcx = Rcx {
            tel: Telemetry {
                info: info.clone(),
                trace_id,
            },
            log: authz_log,
            request_id: None,
            cancelled: Default::default(),
        };
        let path = parts.uri.path();
        let r = server::Req {
            sessions: &self.sessions,
            shared: &self.shared,
            method: parts.method.clone(),
            headers: &parts.headers,
            path,
            body,
            rcx,
        };
        let legacy_session = query_param(&parts.uri, "sessionId");
        match (&parts.method, legacy_session) {
            (&Method::POST, Some(id)) => server::legacy_post(r, &id).await,
            (&Method::GET, _) if path.ends_with("/sse") => server::legacy_open(&r),
            _ => server::streamable(r).await,
        }
    }

    /// Close all sessions and child processes (shutdown / config swap).
    pub async fn shutdown(&self) {
        if let Some(t) = upstream::lock(&self.reaper).take() {
            t.abort();
        }
        let sessions = self.sessions.drain();
        futures_util::future::join_all(sessions.iter().map(|s| s.close())).await;
    }

    /// Starts the idle-session reaper on first use (`new` may run outside a runtime).
    fn start_reaper(&self) {
        if self.reaper_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let sessions = Arc::downgrade(&self.sessions);
        let ttl = self.shared.idle_timeout;
        let every = (ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(map) = sessions.upgrade() else { break };
                for s in map.take_idle(ttl) {
                    tracing::debug!(session = %s.id, "closing idle MCP session");
                    s.close().await;
                }
            }
        });
        *upstream::lock(&self.reaper) = Some(task);
    }
}

impl Drop for McpBackend {
    fn drop(&mut self) {
        if let Some(t) = upstream::lock(&self.reaper).take() {
            t.abort();
        }
    }
}

/// Reads the client body, answering 413 with a JSON-RPC error past `limit`.
async fn read_body(
    body: hyper::body::Incoming,
    limit: usize,
) -> Result<Bytes, http::Response<Body>> {
    let too_large = || {
        server::rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            serde_json::Value::Null,
            INVALID_REQUEST,
            format!("message larger than maxMessageBytes ({limit} bytes)"),
        )
    };
    if http_body::Body::size_hint(&body)
        .exact()
        .is_some_and(|n| n > limit as u64)
    {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(server::rpc_error(
            StatusCode::BAD_REQUEST,
            serde_json::Value::Null,
            INVALID_REQUEST,
            format!("failed to read request body: {e}"),
        )),
    }
}

fn query_param(uri: &Uri, key: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key && !v.is_empty()).then(|| v.to_string())
    })
}

/// `dnsRebindingProtection`: Host (and Origin, when sent) must name a loopback host.
fn is_local(headers: &http::HeaderMap) -> bool {
    fn host_is_local(h: &str) -> bool {
        let host = if let Some(rest) = h.strip_prefix('[') {
            rest.split(']').next().unwrap_or("")
        } else {
            h.rsplit_once(':').map_or(h, |(host, _)| host)
        };
        matches!(host, "localhost" | "127.0.0.1" | "::1")
    }
    let get = |n: http::header::HeaderName| headers.get(n).and_then(|v| v.to_str().ok());
    let host_ok = get(http::header::HOST).is_some_and(host_is_local);
    let origin_ok = get(http::header::ORIGIN).is_none_or(|o| {
        let rest = o.split_once("://").map_or(o, |(_, r)| r);
        host_is_local(rest.split('/').next().unwrap_or(""))
    });
    host_ok && origin_ok
}

/// Builds a target URL from `{host}` (URL or `host:port`) or `{host, port, path}`.
/// `targets`: at least one, unique non-empty names, exactly one transport each.
fn compile_targets(raw: &RawMcpBackend, yaml_path: &str) -> Result<Vec<TargetDef>, McpError> {
    if raw.targets.is_empty() {
        return Err(config_err(
            format!("{yaml_path}.targets"),
            "at least one MCP target is required",
        ));
    }
    let mut targets: Vec<TargetDef> = Vec::with_capacity(raw.targets.len());
    for (i, t) in raw.targets.iter().enumerate() {
        let path = format!("{yaml_path}.targets[{i}]");
        if t.name.is_empty() {
            return Err(config_err(format!("{path}.name"), "must not be empty"));
        }
        if targets.iter().any(|d| d.name == t.name) {
            return Err(config_err(
                format!("{path}.name"),
                format!("duplicate target name {:?}", t.name),
            ));
        }
        if t.policies.is_some() {
            return Err(config_err(
                format!("{path}.policies"),
                "per-target policies are not supported; put mcpAuthorization on the route",
            ));
        }
        targets.push(TargetDef {
            name: t.name.clone(),
            transport: transport(t, &path)?,
        });
    }
    Ok(targets)
}

/// The one transport a target names (`stdio`, `mcp` or `sse`); `path` is the target's.
fn transport(t: &RawMcpTarget, path: &str) -> Result<Transport, McpError> {
    let set = [
        t.stdio.is_some(),
        t.sse.is_some(),
        t.mcp.is_some(),
        t.openapi.is_some(),
    ];
    if set.iter().filter(|b| **b).count() != 1 {
        return Err(config_err(
            path,
            format!("target {:?} needs exactly one of stdio, sse, mcp", t.name),
        ));
    }
    if let Some(s) = &t.stdio {
        if s.cmd.is_empty() {
            return Err(config_err(format!("{path}.stdio.cmd"), "must not be empty"));
        }
        Ok(Transport::Stdio(upstream::stdio::StdioSpec {
            cmd: s.cmd.clone(),
            args: s.args.clone(),
            env: s.env.clone(),
            clear_env: s.clear_env,
        }))
    } else if let Some(h) = &t.mcp {
        Ok(Transport::Streamable(target_url(
            h,
            "/mcp",
            &format!("{path}.mcp"),
        )?))
    } else if let Some(h) = &t.sse {
        Ok(Transport::LegacySse(target_url(
            h,
            "/sse",
            &format!("{path}.sse"),
        )?))
    } else {
        Err(config_err(
            format!("{path}.openapi"),
            "OpenAPI targets are not supported by this gateway",
        ))
    }
}

fn target_url(h: &RawMcpHttpTarget, default_path: &str, path: &str) -> Result<Uri, McpError> {
    if let Some(b) = &h.backend {
        return Err(config_err(
            format!("{path}.backend"),
            format!("backend references ({b:?}) are not supported; use host"),
        ));
    }
    let Some(host) = h.host.as_deref().filter(|s| !s.is_empty()) else {
        return Err(config_err(format!("{path}.host"), "is required"));
    };
    let url = if host.contains("://") {
        if h.port.is_some() || h.path.is_some() {
            return Err(config_err(
                path,
                format!("host {host:?} is a URL; do not also set port or path"),
            ));
        }
        let mut u = host.to_string();
        let after_scheme = host.split_once("://").map_or("", |(_, r)| r);
        if !after_scheme.contains('/') {
            u.push_str(default_path);
        }
        u
    } else {
        let (authority, port) = match h.port {
            Some(p) => (format!("{host}:{p}"), Some(p)),
            None => (
                host.to_string(),
                host.rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok()),
            ),
        };
        let scheme = if port == Some(443) { "https" } else { "http" };
        let p = h.path.as_deref().unwrap_or(default_path);
        let sep = if p.starts_with('/') { "" } else { "/" };
        format!("{scheme}://{authority}{sep}{p}")
    };
    let uri: Uri = url
        .parse()
        .map_err(|e| config_err(format!("{path}.host"), format!("invalid URL {url:?}: {e}")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") if uri.host().is_some() => Ok(uri),
        _ => Err(config_err(
            format!("{path}.host"),
            format!("{url:?} must be an http:// or https:// URL"),
        )),
    }
}

fn opt_duration(raw: Option<&str>, default: Duration, path: &str) -> Result<Duration, McpError> {
    match raw {
        None => Ok(default),
        Some(s) => match crate::time::parse_duration(s) {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => Err(config_err(
                path,
                format!("duration {s:?} must be greater than zero"),
            )),
            Err(e) => Err(config_err(path, e)),
        },
    }
}

#[cfg(test)]
mod tests;
