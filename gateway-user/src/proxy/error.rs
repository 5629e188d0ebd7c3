//! The one error type at the HTTP boundary: each variant knows its status, who is to blame, and
//! renders a JSON body in the caller's API shape.

use http::StatusCode;

use crate::body::Body;
use crate::ctx::Blame;
use crate::llm::provider::Wire;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route matches {method} {path}")]
    NoRoute { method: String, path: String },
    #[error("invalid request body: {0}")]
    BadRequest(String),
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("reading the request body: {0}")]
    ClientBody(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("upstream {0} is unreachable: {1}")]
    UpstreamUnreachable(String, String),
    #[error("upstream {0} did not answer within {1:?}")]
    UpstreamTimeout(String, std::time::Duration),
    #[error("upstream response: {0}")]
    UpstreamProtocol(String),
    #[error("upstream response larger than {0} bytes")]
    UpstreamTooLarge(usize),
    #[error("upstream response body stalled for {0:?} (config.limits.streamIdleTimeout)")]
    UpstreamIdle(std::time::Duration),
    #[error("{} rejected by guard {}", if .0.1 { "response" } else { "request" }, .0.0.by)]
    Guarded(Box<(crate::guard::request::Rejected, bool)>),
    /// 401; the second field is a `WWW-Authenticate` challenge (basic auth).
    #[error("{0}")]
    Unauthenticated(String, Option<String>),
    #[error("authorization failed")]
    Denied,
    #[error("model `{0}` is not allowed for this API key")]
    ModelNotAllowed(String),
    #[error("rate limit exceeded")]
    RateLimited(crate::ctx::RateLimitStatus),
    #[error("budget `{0}` exceeded")]
    BudgetExceeded(String),
    #[error("rate limit service unavailable ({0})")]
    LimitUnavailable(&'static str),
    /// No credential for a cloud provider (AWS, Google): the gateway cannot authenticate.
    #[error("no credentials for the provider: {0}")]
    Credentials(String),
    #[error("{0}")]
    Internal(String),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ProxyError::BadRequest(_) | ProxyError::ClientBody(_) | ProxyError::Unsupported(_) => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::UpstreamUnreachable(..)
            | ProxyError::UpstreamProtocol(_)
            | ProxyError::UpstreamTooLarge(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout(..) | ProxyError::UpstreamIdle(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::Guarded(g) => {
                StatusCode::from_u16(g.0.status).unwrap_or(StatusCode::FORBIDDEN)
            }
            ProxyError::RateLimited(_) | ProxyError::BudgetExceeded(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ProxyError::LimitUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Unauthenticated(..) => StatusCode::UNAUTHORIZED,
            ProxyError::ModelNotAllowed(_) | ProxyError::Denied => StatusCode::FORBIDDEN,
            ProxyError::Internal(_) | ProxyError::Credentials(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    pub fn blame(&self) -> Blame {
        match self {
            ProxyError::NoRoute { .. }
            | ProxyError::BadRequest(_)
            | ProxyError::BodyTooLarge(_)
            | ProxyError::ClientBody(_)
            | ProxyError::Unsupported(_)
            | ProxyError::Guarded(_)
            | ProxyError::RateLimited(_)
            | ProxyError::BudgetExceeded(_)
            | ProxyError::Unauthenticated(..)
            | ProxyError::ModelNotAllowed(_)
            | ProxyError::Denied => Blame::Client,
            ProxyError::UpstreamUnreachable(..)
            | ProxyError::UpstreamTimeout(..)
            | ProxyError::UpstreamIdle(_)
            | ProxyError::UpstreamProtocol(_)
            | ProxyError::UpstreamTooLarge(_) => Blame::Upstream,
            ProxyError::Internal(_)
            | ProxyError::Credentials(_)
            | ProxyError::LimitUnavailable(_) => Blame::Internal,
        }
    }

    /// JSON error response in the client's API shape.
    pub fn into_response(&self, wire: Wire) -> http::Response<Body> {
        if let ProxyError::Guarded(g) = self {
            return rejection_response(&g.0, wire);
        }
        let status = self.status();
        let body = crate::llm::error_body(wire, status, &self.to_string());
        let mut resp = json_response(status, &body);
        if let ProxyError::RateLimited(s) = self {
            crate::limit::headers(s, resp.headers_mut());
        }
        if let ProxyError::Unauthenticated(_, Some(c)) = self
            && let Ok(v) = http::HeaderValue::from_str(c)
        {
            resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}

pub fn json_response(status: StatusCode, body: &serde_json::Value) -> http::Response<Body> {
    let mut resp = http::Response::new(crate::body::json(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// A guard's rejection. The configured body goes out as written when it is JSON or the
/// rejection sets its own `content-type` (agentgateway's examples do both); plain text is
/// wrapped in the client's error shape, so SDKs raise their usual error with it as message.
fn rejection_response(r: &crate::guard::request::Rejected, wire: Wire) -> http::Response<Body> {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN);
    let sets_type = r
        .headers
        .0
        .iter()
        .any(|(n, _, _)| n == http::header::CONTENT_TYPE);
    let mut resp = if sets_type || serde_json::from_slice::<serde_json::Value>(&r.body).is_ok() {
        let mut resp = http::Response::new(crate::body::full(r.body.clone()));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        resp
    } else {
        let text = String::from_utf8_lossy(&r.body);
        json_response(status, &crate::llm::error_body(wire, status, text.trim()))
    };
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    for (name, value, append) in &r.headers.0 {
        if *append {
            h.append(name.clone(), value.clone());
        } else {
            h.insert(name.clone(), value.clone());
        }
    }
    for name in &r.headers.1 {
        h.remove(name);
    }
    resp
}
