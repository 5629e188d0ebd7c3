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
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn blame(&self) -> Blame {
        match self {
            ProxyError::NoRoute { .. }
            | ProxyError::BadRequest(_)
            | ProxyError::BodyTooLarge(_)
            | ProxyError::ClientBody(_)
            | ProxyError::Unsupported(_) => Blame::Client,
            ProxyError::UpstreamUnreachable(..)
            | ProxyError::UpstreamTimeout(..)
            | ProxyError::UpstreamIdle(_)
            | ProxyError::UpstreamProtocol(_)
            | ProxyError::UpstreamTooLarge(_) => Blame::Upstream,
            ProxyError::Internal(_) => Blame::Internal,
        }
    }

    /// JSON error response in the client's API shape.
    pub fn into_response(&self, wire: Wire) -> http::Response<Body> {
        let status = self.status();
        let body = crate::llm::error_body(wire, status, &self.to_string());
        json_response(status, &body)
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
