//! The built-in viewer on the admin port: `/ui` (a page compiled into the binary, no outside
//! assets) and the JSON API it reads, which is useful on its own:
//!
//! ```text
//! GET /api/requests?limit=&since=&route=&model=&status=&caller=&kind=&q=
//!                              recent finished requests, newest first (rows)
//! GET /api/requests/{id}       one request: row, spans as exported over OTLP, prompt and
//!                              completion when the config records them
//! GET /api/overview?minutes=15 totals by route and model, MCP sessions and tools, eBPF
//!                              status, the config's routes, the ring's size and memory
//! ```
//!
//! Requests come from `ring::Recent`, fed by the `telemetry` thread; spans are rebuilt on
//! demand by `Telemetry::view_spans`, so they carry the same attributes (and the same
//! redaction) as the exported ones. Nothing here runs on the proxy's request path.

pub mod ring;
pub mod view;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method, Response, StatusCode, header};
use serde_json::{Value, json};

use self::ring::Recent;
use self::view::Filter;
use super::{AdminState, json_resp};
use crate::body::Body;
use crate::telemetry::Telemetry;

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Only the page's own files: no script, style, font or connection may leave the admin port.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What the viewer reads.
pub struct Ui {
    /// `None` when `config.ui.recentRequests` is 0: the page then says recording is off.
    pub recent: Option<Arc<Recent>>,
    pub telemetry: Arc<Telemetry>,
    pub state: Arc<dyn AdminState>,
}

fn asset(body: &'static str, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(crate::body::full(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn api(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = json_resp(status, v);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn bad_request(msg: impl Into<String>) -> Response<Body> {
    api(StatusCode::BAD_REQUEST, &json!({"error": msg.into()}))
}

impl Ui {
    /// Serves the viewer's paths; `None` for any other path.
    pub fn handle(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
    ) -> Option<Response<Body>> {
        let is_ours = path == "/ui" || path.starts_with("/ui/") || path.starts_with("/api/");
        if !is_ours {
            return None;
        }
        if method != Method::GET && method != Method::HEAD {
            return Some(api(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"error": format!("{method} is not allowed here; the viewer's API is read-only (GET)")}),
            ));
        }
        Some(match path {
            "/ui" | "/ui/" | "/ui/index.html" => asset(INDEX, "text/html; charset=utf-8"),
            "/ui/app.js" => asset(APP_JS, "text/javascript; charset=utf-8"),
            "/ui/app.css" => asset(APP_CSS, "text/css; charset=utf-8"),
            "/api/requests" => self.requests(query),
            "/api/overview" => self.overview(query),
            p => match p.strip_prefix("/api/requests/") {
                Some(id) => self.request(id),
                None => api(
                    StatusCode::NOT_FOUND,
                    &json!({"error": format!("no such viewer path {p:?}; try /ui, /api/requests, /api/requests/{{id}}, /api/overview")}),
                ),
            },
        })
    }

    fn requests(&self, query: Option<&str>) -> Response<Body> {
        let f = match Filter::parse(query) {
            Ok(f) => f,
            Err(e) => return bad_request(e),
        };
        let Some(recent) = &self.recent else {
            return api(
                StatusCode::OK,
                &json!({"recording": false, "capacity": 0, "next": 0, "requests": []}),
            );
        };
        let (entries, next) = recent.snapshot();
        let rows: Vec<Value> = entries
            .iter()
            .filter(|e| f.matches(e))
            .take(f.limit)
            .map(|e| view::row(e))
            .collect();
        api(
            StatusCode::OK,
            &json!({
                "recording": true,
                "capacity": recent.capacity(),
                "kept": entries.len(),
                "next": next,
                "requests": rows,
            }),
        )
    }

    fn request(&self, id: &str) -> Response<Body> {
        let Ok(id) = id.parse::<u64>() else {
            return bad_request(format!("{id:?} is not a request id"));
        };
        let Some(e) = self.recent.as_ref().and_then(|r| r.get(id)) else {
            return api(
                StatusCode::NOT_FOUND,
                &json!({"error": format!("request {id} is not kept (the ring holds the most recent requests only)")}),
            );
        };
        let log = view::with_view_ids(&e.log);
        let spans = self.telemetry.view_spans(&log);
        api(StatusCode::OK, &view::detail(&e, &spans))
    }

    fn overview(&self, query: Option<&str>) -> Response<Body> {
        let mut minutes = 15;
        for (k, v) in view::query_pairs(query) {
            match k.as_str() {
                "minutes" => match v.parse::<u64>() {
                    Ok(n) if (1..=ring::MINUTES as u64).contains(&n) => minutes = n,
                    _ => {
                        return bad_request(format!(
                            "minutes: {v:?} must be a whole number from 1 to {}",
                            ring::MINUTES
                        ));
                    }
                },
                other => return bad_request(format!("unknown parameter {other:?}; use minutes")),
            }
        }
        let now_minute = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 60);
        let (traffic, ring) = match &self.recent {
            Some(r) => {
                let traffic = r
                    .minutes(|ms| view::overview_totals(ms, now_minute, minutes))
                    .unwrap_or(Value::Null);
                let (entries, next) = r.snapshot();
                let bytes: usize = entries.iter().map(|e| ring::approx_bytes(&e.log)).sum();
                let ring = json!({
                    "recording": true,
                    "capacity": r.capacity(),
                    "kept": entries.len(),
                    "recorded": next,
                    "approxBytes": bytes,
                });
                (traffic, ring)
            }
            None => (
                Value::Null,
                json!({"recording": false, "capacity": 0, "kept": 0, "recorded": 0, "approxBytes": 0}),
            ),
        };
        let mut v = self.state.overview();
        if let Value::Object(m) = &mut v {
            m.insert("traffic".into(), traffic);
            m.insert("ring".into(), ring);
            m.insert("tracing".into(), json!(self.telemetry.tracing_enabled()));
            m.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
        }
        api(StatusCode::OK, &v)
    }
}
