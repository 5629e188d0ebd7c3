//! Admin, stats (`/metrics`) and readiness servers, and the start-up task registry behind
//! readiness: `/healthz/ready` turns 200 only once every registered task said it is done, and
//! 503 again as soon as draining starts. The admin server also serves the built-in viewer
//! (`ui`: `/ui` and its JSON API under `/api/`).

pub mod ui;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

use crate::body::Body;
use crate::metrics::Metrics;

/// Start-up tasks and the draining flag.
#[derive(Default)]
pub struct Readiness {
    tasks: Mutex<BTreeMap<String, bool>>,
    draining: std::sync::atomic::AtomicBool,
}

impl Readiness {
    pub fn new() -> Arc<Readiness> {
        Arc::new(Readiness::default())
    }

    /// Registers a task that must finish before the gateway is ready.
    pub fn register(&self, name: &str) {
        if let Ok(mut t) = self.tasks.lock() {
            t.insert(name.to_owned(), false);
        }
    }

    pub fn done(&self, name: &str) {
        if let Ok(mut t) = self.tasks.lock() {
            t.insert(name.to_owned(), true);
        }
    }

    pub fn set_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        !self.draining.load(std::sync::atomic::Ordering::SeqCst)
            && self
                .tasks
                .lock()
                .map(|t| t.values().all(|d| *d))
                .unwrap_or(false)
    }

    pub fn detail(&self) -> Value {
        let tasks = self.tasks.lock().map(|t| t.clone()).unwrap_or_default();
        json!({
            "ready": self.is_ready(),
            "draining": self.draining.load(std::sync::atomic::Ordering::SeqCst),
            "tasks": tasks.iter().map(|(k, v)| (k.clone(), json!(if *v { "done" } else { "pending" }))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

/// What the admin endpoints need from the rest of the process.
pub trait AdminState: Send + Sync + 'static {
    /// Current config as JSON with secrets redacted.
    fn config_dump(&self) -> Value;
    /// Current log filter.
    fn log_level(&self) -> String;
    /// Changes the log filter (`info`, `debug,gateway::proxy=trace`, ...).
    fn set_log_level(&self, filter: &str) -> Result<(), String>;
    /// The viewer's overview of the process: `ebpf` (`enabled`, `reason`), the config's
    /// `routes`, and `mcp` (live sessions and targets per MCP backend). No secrets.
    fn overview(&self) -> Value;
}

fn text(status: StatusCode, s: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(crate::body::full(s.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json_resp(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(crate::body::json(v));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

async fn serve<F, Fut>(
    addr: SocketAddr,
    name: &'static str,
    handler: F,
) -> std::io::Result<SocketAddr>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(%local, "{name} server listening");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let h = handler.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let h = h.clone();
                    async move { Ok::<_, std::convert::Infallible>(h(req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(local)
}

/// `statsAddr`: Prometheus text at `/metrics`.
pub async fn serve_stats(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    serve(addr, "stats", move |req: Request<Incoming>| {
        let metrics = metrics.clone();
        async move {
            if req.uri().path() == "/metrics" || req.uri().path() == "/stats/prometheus" {
                let mut r = text(StatusCode::OK, metrics.encode());
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                r
            } else {
                text(StatusCode::NOT_FOUND, "not found: try /metrics\n")
            }
        }
    })
    .await
}

/// `readinessAddr`: `/healthz/ready`.
pub async fn serve_readiness(
    addr: SocketAddr,
    ready: Arc<Readiness>,
) -> std::io::Result<SocketAddr> {
    serve(addr, "readiness", move |req: Request<Incoming>| {
        let ready = ready.clone();
        async move {
            match req.uri().path() {
                "/healthz/ready" => {
                    if ready.is_ready() {
                        text(StatusCode::OK, "ready\n")
                    } else {
                        text(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {}\n", ready.detail()),
                        )
                    }
                }
                "/healthz/live" | "/healthz" => text(StatusCode::OK, "alive\n"),
                _ => text(StatusCode::NOT_FOUND, "not found: try /healthz/ready\n"),
            }
        }
    })
    .await
}

/// `adminAddr`: `/config_dump`, `/logging`, `/readiness`, and the viewer (`/ui`, `/api/`).
pub async fn serve_admin(
    addr: SocketAddr,
    state: Arc<dyn AdminState>,
    ready: Arc<Readiness>,
    ui: Arc<ui::Ui>,
) -> std::io::Result<SocketAddr> {
    serve(addr, "admin", move |req: Request<Incoming>| {
        let state = state.clone();
        let ready = ready.clone();
        let ui = ui.clone();
        async move {
            if let Some(r) = ui.handle(req.method(), req.uri().path(), req.uri().query()) {
                return r;
            }
            match (req.method(), req.uri().path()) {
                (&Method::GET, "/config_dump") => json_resp(StatusCode::OK, &state.config_dump()),
                (&Method::GET, "/readiness") => json_resp(StatusCode::OK, &ready.detail()),
                (&Method::GET, "/logging") => {
                    json_resp(StatusCode::OK, &json!({"level": state.log_level()}))
                }
                (&Method::POST, "/logging") => {
                    let level = req
                        .uri()
                        .query()
                        .unwrap_or("")
                        .split('&')
                        .find_map(|kv| kv.strip_prefix("level="))
                        .map(|s| s.replace("%2C", ",").replace("%3D", "="));
                    match level {
                        Some(l) => match state.set_log_level(&l) {
                            Ok(()) => {
                                json_resp(StatusCode::OK, &json!({"level": state.log_level()}))
                            }
                            Err(e) => json_resp(StatusCode::BAD_REQUEST, &json!({"error": e})),
                        },
                        None => json_resp(
                            StatusCode::BAD_REQUEST,
                            &json!({"error": "use POST /logging?level=debug"}),
                        ),
                    }
                }
                (_, "/") => json_resp(
                    StatusCode::OK,
                    &json!({"endpoints": ["/ui", "/api/requests", "/api/overview", "/config_dump", "/logging", "/readiness"]}),
                ),
                _ => json_resp(StatusCode::NOT_FOUND, &json!({"error": "not found"})),
            }
        }
    })
    .await
}

/// Keys whose values are secrets in a config dump.
fn is_secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    [
        "key",
        "token",
        "secret",
        "password",
        "authorization",
        "apikey",
        "credential",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// Redacts secret values (and every value under `headers`) in a config tree.
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if k.eq_ignore_ascii_case("headers") {
                    if let Value::Object(h) = val {
                        for hv in h.values_mut() {
                            *hv = json!("<redacted>");
                        }
                    }
                } else if is_secret_key(k)
                    && !matches!(val, Value::Object(_) | Value::Array(_) | Value::Bool(_))
                {
                    *val = json!("<redacted>");
                } else if is_secret_key(k) {
                    redact_all_strings(val);
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

fn redact_all_strings(v: &mut Value) {
    match v {
        Value::String(_) => *v = json!("<redacted>"),
        Value::Object(m) => m.values_mut().for_each(redact_all_strings),
        Value::Array(a) => a.iter_mut().for_each(redact_all_strings),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction() {
        let mut v = json!({"config": {"tracing": {"headers": {"Authorization": "Basic abc"}}},
            "binds": [{"policies": {"backendAuth": {"key": "sk-1"}}, "name": "x"}],
            "llm": {"models": [{"params": {"apiKey": {"file": "/k"}}}]}});
        redact(&mut v);
        let s = v.to_string();
        assert!(
            !s.contains("sk-1") && !s.contains("Basic abc") && !s.contains("/k"),
            "{s}"
        );
        assert!(s.contains("\"name\":\"x\""));
    }

    #[test]
    fn readiness_waits_for_all_tasks() {
        let r = Readiness::new();
        r.register("a");
        r.register("b");
        assert!(!r.is_ready());
        r.done("a");
        assert!(!r.is_ready());
        r.done("b");
        assert!(r.is_ready());
        r.set_draining();
        assert!(!r.is_ready());
    }
}
