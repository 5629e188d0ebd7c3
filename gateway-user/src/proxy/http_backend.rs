//! Plain HTTP backends (`host:`), header modifiers, CORS, and bounded body reads shared by the
//! LLM path.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::error::ProxyError;
use super::upstream::{self, HttpClient};
use crate::body::Body;
use crate::config::raw::{RawCors, RawHeaderModifier};
use crate::config::snapshot::{PathRewrite, Policies, Upstream};
use crate::ctx::RequestLog;
use crate::telemetry::Telemetry;

/// Reads a whole body, failing once it exceeds `limit` bytes.
pub async fn read_limited<B>(
    body: B,
    limit: usize,
    upstream_side: bool,
) -> Result<Bytes, ProxyError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(if upstream_side {
                    ProxyError::UpstreamTooLarge(limit)
                } else {
                    ProxyError::BodyTooLarge(limit)
                })
            } else if upstream_side {
                Err(ProxyError::UpstreamProtocol(e.to_string()))
            } else {
                Err(ProxyError::ClientBody(e.to_string()))
            }
        }
    }
}

/// Reads a whole upstream body, failing once it exceeds `limit` bytes or when no data arrives
/// for `idle` (a provider that stalls mid-body must not hold the client forever: the route's
/// request timeout only covers the wait for response headers).
pub async fn read_upstream<B>(body: B, limit: usize, idle: Duration) -> Result<Bytes, ProxyError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(http_body_util::Limited::new(body, limit));
    let mut buf = bytes::BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(ProxyError::UpstreamIdle(idle)),
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(f)) => f,
        };
        match frame {
            Ok(f) => {
                if let Ok(d) = f.into_data() {
                    buf.extend_from_slice(&d);
                }
            }
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return Err(ProxyError::UpstreamTooLarge(limit));
            }
            Err(e) => return Err(ProxyError::UpstreamProtocol(e.to_string())),
        }
    }
}

pub fn apply_modifier(m: &RawHeaderModifier, headers: &mut HeaderMap) {
    for name in &m.remove {
        headers.remove(name.as_str());
    }
    for (k, v) in &m.set {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.insert(n, v);
        }
    }
    for (k, v) in &m.add {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.append(n, v);
        }
    }
}

fn origin_allowed(cors: &RawCors, origin: &str) -> bool {
    cors.allow_origins.iter().any(|o| {
        o == "*"
            || o == origin
            || o.strip_prefix("*.")
                .is_some_and(|s| origin.ends_with(&format!(".{s}")))
    })
}

/// Answers a CORS preflight.
pub fn cors_preflight(cors: &RawCors, headers: &HeaderMap) -> Response<Body> {
    let mut resp = Response::new(crate::body::empty());
    *resp.status_mut() = StatusCode::OK;
    if let Some(origin) = headers.get(http::header::ORIGIN) {
        cors_headers(cors, origin, resp.headers_mut());
        let h = resp.headers_mut();
        if !cors.allow_methods.is_empty()
            && let Ok(v) = HeaderValue::from_str(&cors.allow_methods.join(","))
        {
            h.insert(http::header::ACCESS_CONTROL_ALLOW_METHODS, v);
        }
        if !cors.allow_headers.is_empty()
            && let Ok(v) = HeaderValue::from_str(&cors.allow_headers.join(","))
        {
            h.insert(http::header::ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        if let Some(age) = &cors.max_age {
            let secs = match age {
                yaml_serde::Value::Number(n) => n.to_string(),
                yaml_serde::Value::String(s) => crate::time::parse_duration(s)
                    .map(|d| d.as_secs().to_string())
                    .unwrap_or_default(),
                _ => String::new(),
            };
            if let Ok(v) = HeaderValue::from_str(&secs) {
                h.insert(http::header::ACCESS_CONTROL_MAX_AGE, v);
            }
        }
    }
    resp
}

/// CORS headers for an actual (non-preflight) response.
pub fn cors_headers(cors: &RawCors, origin: &HeaderValue, out: &mut HeaderMap) {
    let Ok(o) = origin.to_str() else { return };
    if !origin_allowed(cors, o) {
        return;
    }
    out.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    if cors.allow_credentials {
        out.insert(
            http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if !cors.expose_headers.is_empty()
        && let Ok(v) = HeaderValue::from_str(&cors.expose_headers.join(","))
    {
        out.insert(http::header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
    }
}

/// Rewrites the path per `urlRewrite` (prefix replaces the matched route prefix; here the
/// first path segment run that matched is not known, so `prefix` replaces the whole path's
/// leading `/`-segment match of the rewrite's own semantics: `prefix` is prepended).
pub fn rewrite_path(rw: Option<&PathRewrite>, path_and_query: &str) -> String {
    match rw {
        Some(PathRewrite::Full(f)) => {
            let q = path_and_query
                .split_once('?')
                .map(|(_, q)| format!("?{q}"))
                .unwrap_or_default();
            format!("{f}{q}")
        }
        Some(PathRewrite::Prefix(p)) => format!("{}{}", p.trim_end_matches('/'), path_and_query),
        None => path_and_query.to_owned(),
    }
}

/// Reverse-proxies a request to a plain HTTP upstream, streaming both bodies. A response body
/// that stays silent for `idle` (`config.limits.streamIdleTimeout`) is ended with an error.
pub async fn forward(
    telemetry: &Telemetry,
    client: &HttpClient,
    up: &Upstream,
    policies: &Policies,
    req: Request<Incoming>,
    log: &mut RequestLog,
    idle: std::time::Duration,
) -> Result<Response<Body>, ProxyError> {
    let (parts, body) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let path = rewrite_path(policies.path_rewrite.as_ref(), pq);
    let uri: http::Uri = format!("{}://{}{}", up.scheme(), up.authority, path)
        .parse()
        .map_err(|e| ProxyError::BadRequest(format!("invalid upstream URI: {e}")))?;
    let mut out = Request::builder().method(parts.method).uri(uri);
    let headers = out
        .headers_mut()
        .ok_or_else(|| ProxyError::Internal("request builder".into()))?;
    upstream::copy_headers(&parts.headers, headers);
    headers.remove(http::header::HOST);
    if let Some(crate::config::snapshot::BackendAuth::Key(k)) = &policies.backend_auth {
        for h in crate::llm::provider::CREDENTIAL_HEADERS {
            headers.remove(*h);
        }
        if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {}", k.expose())) {
            v.set_sensitive(true);
            headers.insert(http::header::AUTHORIZATION, v);
        }
    }
    if let Some(m) = &policies.request_headers {
        apply_modifier(m, headers);
    }
    telemetry.inject_upstream(log, headers);
    let req = out
        .body(body.map_err(Into::into).boxed_unsync())
        .map_err(|e| ProxyError::Internal(e.to_string()))?;
    log.upstream_start = Some(std::time::Instant::now());
    let timeout = policies
        .backend_request_timeout
        .or(policies.request_timeout);
    let resp = upstream::send(client, req, &up.authority, timeout).await;
    log.upstream_end = Some(std::time::Instant::now());
    let resp = resp?;
    log.upstream_cookie = resp
        .extensions()
        .get::<crate::ebpf::UpstreamCookie>()
        .map(|c| c.0);
    let (mut parts, body) = resp.into_parts();
    let mut headers = HeaderMap::new();
    upstream::copy_headers(&parts.headers, &mut headers);
    parts.headers = headers;
    Ok(Response::from_parts(
        parts,
        super::body::IdleTimeout::new(body.map_err(Into::into).boxed_unsync(), idle).boxed_unsync(),
    ))
}
