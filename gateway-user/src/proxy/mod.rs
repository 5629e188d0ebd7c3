//! The L7 proxy: listeners, routing, upstream calls, and the request phases.
//!
//! Every request runs the same named phases over one `RequestLog`:
//!
//! ```text
//! request_filter ─▶ route ─▶ upstream_request ─▶ response_filter ─▶ logging
//!  (log fields,     (bind → listener →  (host: forward;      (header        (ObservedBody: at
//!   trace context)   route → backend)    ai: llm.rs;          modifiers,     end of stream, on
//!                                        mcp: mcp::serve)     CORS)          error or on drop)
//! ```
//!
//! The config snapshot is loaded once per request, so a reload never changes a request midway.

pub mod body;
pub mod error;
pub(crate) mod guard;
pub mod http_backend;
pub(crate) mod limits;
pub mod llm;
pub mod route;
pub mod server;
mod steer;
pub mod upstream;
pub mod workers;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;

use self::body::{Finisher, ObservedBody};
use self::error::ProxyError;
use crate::body::Body;
use crate::config::Snapshot;
use crate::config::snapshot::{BackendKind, Policies};
use crate::ctx::{FlowTiming, RequestLog};
use crate::llm::provider::Wire;
use crate::metrics::Metrics;
use crate::telemetry::Telemetry;

/// Per-connection facts, shared by the requests on that connection.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub bind_port: u16,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
    /// Kernel timing of the client's connection, when eBPF is on.
    pub flow: Option<FlowTiming>,
    /// Where the client meant to connect, when the kernel steered it here.
    pub original_dst: Option<SocketAddr>,
}

pub struct Proxy {
    snapshot: ArcSwap<Snapshot>,
    pub telemetry: Arc<Telemetry>,
    pub metrics: Arc<Metrics>,
    clients: upstream::Clients,
    finisher: Finisher,
    /// Model prices (`config.modelCatalog`), kept across reloads.
    pub prices: Arc<crate::spend::Prices>,
    /// The shared store (`config.redis`), kept across reloads.
    pub store: Arc<crate::store::Shared>,
    /// Budget state (local windows, or the store's).
    pub ledger: Arc<crate::spend::budget::Ledger>,
}

impl Proxy {
    pub fn new(
        snapshot: Arc<Snapshot>,
        telemetry: Arc<Telemetry>,
        metrics: Arc<Metrics>,
        ebpf: Option<Arc<crate::ebpf::Ebpf>>,
    ) -> Arc<Proxy> {
        let prices = crate::spend::Prices::new();
        prices.configure(snapshot.global.model_catalog.as_ref());
        let finisher = body::finisher(telemetry.clone(), ebpf, prices.clone());
        let store = crate::store::Shared::new(metrics.redis_failures.clone());
        store.configure(snapshot.global.redis.as_ref());
        let ledger = crate::spend::budget::Ledger::new(
            store.clone(),
            metrics.budget_remaining.clone(),
            metrics.budget_exceeded.clone(),
        );
        Arc::new(Proxy {
            snapshot: ArcSwap::new(snapshot),
            telemetry,
            metrics,
            clients: upstream::Clients::default(),
            finisher,
            prices,
            store,
            ledger,
        })
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Swaps in a new config; requests already running keep the one they started with.
    pub fn swap(&self, snap: Arc<Snapshot>) {
        self.prices.configure(snap.global.model_catalog.as_ref());
        self.store.configure(snap.global.redis.as_ref());
        self.snapshot.store(snap);
    }

    /// Serves one request through all phases. Never fails: errors become responses.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> Response<Body> {
        let snap = self.snapshot.load_full();
        let mut log = RequestLog::new(snap.global.gateway_name.clone(), String::new());
        self.request_filter(&req, &conn, &snap, &mut log);
        let (resp, transform) = match self.route_and_forward(req, &conn, &snap, &mut log).await {
            Ok(r) => r,
            Err((e, wire)) => {
                log.error = Some(e.to_string());
                log.blame = Some(e.blame());
                let mut resp = e.into_response(wire);
                limits::budget_header(&log, resp.headers_mut());
                (resp, None)
            }
        };
        let idle = snap.global.limits.stream_idle_timeout;
        self.logging(resp, log, transform, idle)
    }

    /// Phase 1: fill the log from the request and start the trace.
    fn request_filter(
        &self,
        req: &Request<Incoming>,
        conn: &ConnInfo,
        snap: &Snapshot,
        log: &mut RequestLog,
    ) {
        log.src_addr = Some(conn.peer);
        log.method = req.method().as_str().to_owned();
        log.host = host_of(req).to_owned();
        log.path = req.uri().path().to_owned();
        log.uri = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        log.scheme = if conn.tls { "https" } else { "http" };
        log.version = version_str(req.version());
        log.downstream_flow = conn.flow;
        log.original_dst = conn.original_dst;
        let capture = self.telemetry.capture();
        if capture.request_headers {
            log.request_headers = loggable_headers(req.headers(), snap);
        }
        self.telemetry.start(req.headers(), log);
    }

    /// Phases 2–4: route, then forward to the chosen backend.
    async fn route_and_forward(
        &self,
        req: Request<Incoming>,
        conn: &ConnInfo,
        snap: &Snapshot,
        log: &mut RequestLog,
    ) -> Result<(Response<Body>, Option<crate::llm::stream::SseTransform>), (ProxyError, Wire)>
    {
        let wire = crate::llm::RouteType::detect(req.uri().path()).client_wire();
        let no_route = || ProxyError::NoRoute {
            method: req.method().to_string(),
            path: req.uri().path().to_owned(),
        };
        let Some(bind) = snap.binds.iter().find(|b| b.port == conn.bind_port) else {
            return Err((no_route(), wire));
        };
        let host = host_of(&req).to_owned();
        let Some(listener) = route::listener(bind, &host) else {
            return Err((no_route(), wire));
        };
        log.listener = listener.name.clone();
        let Some(rt) = route::route(
            listener,
            &host,
            req.method(),
            req.uri().path(),
            req.uri().query(),
            req.headers(),
        ) else {
            return Err((no_route(), wire));
        };
        log.route = Some(rt.name.clone());
        let Some(backend) = route::backend(&rt) else {
            return Err((no_route(), wire));
        };
        let policies = &backend.policies;
        let req = authenticate(policies, req, log).map_err(|e| (e, wire))?;
        let reads_headers = policies
            .authorization
            .as_ref()
            .is_some_and(|r| r.references().request_headers)
            || limits::references(policies).request_headers;
        if reads_headers && log.request_headers.is_empty() {
            log.request_headers = loggable_headers(req.headers(), snap);
        }
        if let Some(rules) = &policies.authorization
            && !rules.allows(log)
        {
            return Err((ProxyError::Denied, wire));
        }
        let llm_route = matches!(backend.kind, BackendKind::Ai(_) | BackendKind::Models(_));
        limits::route_phase(self, policies, llm_route, log)
            .await
            .map_err(|e| (e, wire))?;
        if let Some(cors) = &policies.cors
            && req.method() == http::Method::OPTIONS
            && req.headers().contains_key(http::header::ORIGIN)
        {
            return Ok((http_backend::cors_preflight(cors, req.headers()), None));
        }
        let origin = req.headers().get(http::header::ORIGIN).cloned();
        let (mut resp, transform) = match &backend.kind {
            BackendKind::Host(up) => {
                log.endpoint = Some(up.authority.clone());
                let client = self.clients.get(up);
                let idle = snap.global.limits.stream_idle_timeout;
                let resp =
                    http_backend::forward(&self.telemetry, &client, up, policies, req, log, idle)
                        .await
                        .map_err(|e| (e, wire))?;
                (resp, None)
            }
            BackendKind::Ai(ai) => {
                let targets = steer::Targets::route(&rt, backend, ai);
                llm::handle(self, targets, policies, req, log, snap).await?
            }
            BackendKind::Models(models) => {
                llm::handle_models(self, models, policies, req, log, snap).await?
            }
            BackendKind::Mcp(mcp) => (mcp.serve(req, log).await, None),
        };
        self.response_filter(&mut resp, policies, origin.as_ref());
        if let Some(s) = &log.rate_limit {
            crate::limit::headers(s, resp.headers_mut());
        }
        limits::budget_header(log, resp.headers_mut());
        Ok((resp, transform))
    }

    pub(crate) fn client_for(
        &self,
        up: &crate::config::snapshot::Upstream,
    ) -> upstream::HttpClient {
        self.clients.get(up)
    }

    /// Phase 5: header modifiers and CORS on the way out.
    fn response_filter(
        &self,
        resp: &mut Response<Body>,
        policies: &Policies,
        origin: Option<&HeaderValue>,
    ) {
        if let Some(m) = &policies.response_headers {
            http_backend::apply_modifier(m, resp.headers_mut());
        }
        if let (Some(cors), Some(origin)) = (&policies.cors, origin) {
            http_backend::cors_headers(cors, origin, resp.headers_mut());
        }
    }

    /// Phase 6: wrap the body so the log is finished when the response really ends.
    fn logging(
        &self,
        mut resp: Response<Body>,
        mut log: RequestLog,
        transform: Option<crate::llm::stream::SseTransform>,
        idle: std::time::Duration,
    ) -> Response<Body> {
        log.status = Some(resp.status().as_u16());
        if resp.status().is_server_error() && log.error.is_none() {
            log.error = Some(format!("upstream returned {}", resp.status()));
            log.blame = Some(crate::ctx::Blame::Upstream);
        }
        if self.telemetry.capture().response_headers {
            log.response_headers = resp
                .headers()
                .iter()
                .filter(|(k, _)| !crate::ctx::redact::is_sensitive(k.as_str()))
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
        }
        let body = std::mem::replace(resp.body_mut(), crate::body::empty());
        // A stream is ended after `streamIdleTimeout` of silence (plain `host` bodies are
        // wrapped the same way in `http_backend::forward`; MCP streams are not).
        let body = if transform.is_some() {
            http_body_util::BodyExt::boxed_unsync(body::IdleTimeout::new(body, idle))
        } else {
            body
        };
        let observed = ObservedBody::new(body, log, self.finisher.clone(), transform);
        *resp.body_mut() = http_body_util::BodyExt::boxed_unsync(observed);
        resp
    }
}

pub fn host_of<B>(req: &Request<B>) -> &str {
    req.headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
}

pub fn version_str(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// A plain JSON response for gateway-generated answers.
pub fn simple(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    error::json_response(status, &body)
}

/// The client's headers as the record keeps them: credentials and `config.sensitiveHeaders`
/// left out.
/// The authentication phase: `jwtAuth`, `basicAuth`, then `apiKey`, each removing the
/// credential it accepted and recording the caller in the log.
fn authenticate(
    policies: &Policies,
    req: Request<Incoming>,
    log: &mut RequestLog,
) -> Result<Request<Incoming>, ProxyError> {
    if policies.jwt_auth.is_none() && policies.basic_auth.is_none() && policies.api_key.is_none() {
        return Ok(req);
    }
    let (mut parts, body) = req.into_parts();
    let before = parts.uri.clone();
    if let Some(j) = &policies.jwt_auth {
        let claims = j
            .verify(&mut parts.headers, &mut parts.uri)
            .map_err(|e| ProxyError::Unauthenticated(e.message(), None))?;
        log.jwt = claims.map(Box::new);
    }
    if let Some(b) = &policies.basic_auth {
        log.basic_user = b
            .verify(&mut parts.headers, &mut parts.uri)
            .map_err(|e| ProxyError::Unauthenticated(e.message().into(), Some(b.challenge())))?;
    }
    if let Some(keys) = &policies.api_key {
        let id = keys
            .verify(&mut parts.headers, &mut parts.uri)
            .map_err(|e| ProxyError::Unauthenticated(e.message().into(), None))?;
        log.identity = id.map(Box::new);
    }
    if parts.uri != before {
        // A credential in the query is gone from the URI: keep it out of the record too (CEL
        // `request.uri`, the viewer).
        log.uri = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
    }
    Ok(Request::from_parts(parts, body))
}

fn loggable_headers(headers: &http::HeaderMap, snap: &Snapshot) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| {
            !crate::ctx::redact::is_sensitive(k.as_str())
                && !snap
                    .global
                    .sensitive_headers
                    .iter()
                    .any(|s| s == k.as_str())
        })
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}
