//! Fault injection: which failure a request asks for, and provider-shaped error bodies.
//!
//! Faults are selected by the `x-sim-fault` header (comma-separated, e.g. `slow,500`) or by
//! a model name starting with `fault-` (`fault-429`, `fault-slow+truncate-gpt-4o`: the part
//! between `fault-` and the next `-`, `+`-separated). Kinds:
//! - a status code `400`..`599`: the provider's error body with that status (`429` adds
//!   `retry-after`, seconds from `x-sim-retry-after`, default 1);
//! - `slow`: wait `x-sim-delay-ms` (default 2000) before sending headers;
//! - `stall`: send half of the stream (or body), then nothing until the client goes away;
//! - `truncate`: send half of the stream, then end it cleanly without the terminal event;
//! - `malformed`: replace the middle event (or the whole JSON body) with invalid JSON;
//! - `reset`: send half of the stream, then abort the connection;
//! - `midstream-error`: send half of the stream, then the provider's in-stream error event.
//!
//! `x-sim-chunk-delay-ms` sleeps between stream events. `x-sim-fault-times: N` applies the
//! fault only to the first N requests carrying the same fault spec (for retry tests).

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use serde_json::{Value as Json, json};

use super::Dialect;

/// Default delay of the `slow` fault.
pub const DEFAULT_SLOW: Duration = Duration::from_millis(2000);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FaultError {
    #[error(
        "unknown fault {0:?} (want a status code, slow, stall, truncate, malformed, reset or midstream-error)"
    )]
    Unknown(String),
    #[error("header {name} is not a number: {value:?}")]
    NotANumber { name: &'static str, value: String },
}

/// A failure that happens after the response headers went out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFault {
    Stall,
    Truncate,
    Malformed,
    Reset,
    MidstreamError,
}

/// Everything a request asked to go wrong.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// The spec as given, used to count `x-sim-fault-times`.
    pub spec: String,
    pub status: Option<StatusCode>,
    pub delay: Option<Duration>,
    pub body: Option<BodyFault>,
    pub chunk_delay: Option<Duration>,
    pub retry_after_secs: u64,
    /// Only the first N requests with this spec fail.
    pub times: Option<u64>,
}

impl Faults {
    /// Reads faults from the headers and, failing that, from a `fault-` model name.
    pub fn parse(headers: &HeaderMap, model: &str) -> Result<Faults, FaultError> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let millis = |name: &'static str| -> Result<Option<Duration>, FaultError> {
            header(name)
                .map(|v| {
                    v.parse::<u64>().map(Duration::from_millis).map_err(|_| {
                        FaultError::NotANumber {
                            name,
                            value: v.to_string(),
                        }
                    })
                })
                .transpose()
        };
        let number = |name: &'static str| -> Result<Option<u64>, FaultError> {
            header(name)
                .map(|v| {
                    v.parse::<u64>().map_err(|_| FaultError::NotANumber {
                        name,
                        value: v.to_string(),
                    })
                })
                .transpose()
        };

        let spec = match header("x-sim-fault") {
            Some(spec) if !spec.is_empty() => spec.to_string(),
            _ => model_fault(model).unwrap_or_default(),
        };
        let mut faults = Faults {
            chunk_delay: millis("x-sim-chunk-delay-ms")?,
            retry_after_secs: number("x-sim-retry-after")?.unwrap_or(1),
            times: number("x-sim-fault-times")?,
            ..Faults::default()
        };
        for kind in spec
            .split([',', '+'])
            .map(str::trim)
            .filter(|k| !k.is_empty())
        {
            match kind.to_ascii_lowercase().as_str() {
                "slow" => faults.delay = Some(millis("x-sim-delay-ms")?.unwrap_or(DEFAULT_SLOW)),
                "stall" => faults.body = Some(BodyFault::Stall),
                "truncate" => faults.body = Some(BodyFault::Truncate),
                "malformed" => faults.body = Some(BodyFault::Malformed),
                "reset" => faults.body = Some(BodyFault::Reset),
                "midstream-error" | "midstream_error" => {
                    faults.body = Some(BodyFault::MidstreamError)
                }
                code => {
                    let status = code
                        .parse::<u16>()
                        .ok()
                        .filter(|c| (400..=599).contains(c))
                        .and_then(|c| StatusCode::from_u16(c).ok())
                        .ok_or_else(|| FaultError::Unknown(kind.to_string()))?;
                    faults.status = Some(status);
                }
            }
        }
        faults.spec = spec;
        Ok(faults)
    }

    pub fn is_empty(&self) -> bool {
        self.status.is_none() && self.delay.is_none() && self.body.is_none()
    }

    /// Keeps only the knobs that are not faults (chunk delay), for requests past `times`.
    pub fn disarmed(&self) -> Faults {
        Faults {
            chunk_delay: self.chunk_delay,
            ..Faults::default()
        }
    }
}

fn model_fault(model: &str) -> Option<String> {
    let model = model.rsplit('/').next().unwrap_or(model);
    let rest = model.strip_prefix("fault-")?;
    Some(rest.split('-').next().unwrap_or(rest).to_string())
}

/// The provider's error `type`/`status` string for an HTTP status.
pub fn error_kind(dialect: Dialect, status: StatusCode) -> &'static str {
    let code = status.as_u16();
    match dialect {
        Dialect::OpenAi => match code {
            403 => "permission_denied",
            429 => "requests",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        },
        Dialect::Anthropic => match code {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            529 => "overloaded_error",
            400..=499 => "invalid_request_error",
            _ => "api_error",
        },
        Dialect::Google => match code {
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            409 => "ABORTED",
            429 => "RESOURCE_EXHAUSTED",
            499 => "CANCELLED",
            501 => "NOT_IMPLEMENTED",
            503 => "UNAVAILABLE",
            504 => "DEADLINE_EXCEEDED",
            400 | 402 | 405..=408 | 410..=428 | 430..=498 => "INVALID_ARGUMENT",
            _ => "INTERNAL",
        },
        Dialect::Aws => super::bedrock::error_type(status),
    }
}

/// The error body a provider sends with `status`.
pub fn error_body(dialect: Dialect, status: StatusCode, message: &str) -> Json {
    let kind = error_kind(dialect, status);
    match dialect {
        Dialect::OpenAi => {
            let code = match status.as_u16() {
                401 => json!("invalid_api_key"),
                404 => json!("model_not_found"),
                429 => json!("rate_limit_exceeded"),
                _ => Json::Null,
            };
            json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
        }
        Dialect::Anthropic => json!({
            "type": "error",
            "error": {"type": kind, "message": message},
        }),
        Dialect::Google => json!({
            "error": {"code": status.as_u16(), "message": message, "status": kind},
        }),
        Dialect::Aws => json!({"message": message}),
    }
}

/// The message the simulator uses for an injected status.
pub fn injected_message(status: StatusCode) -> String {
    match status.as_u16() {
        401 => "Incorrect API key provided (simulated).".into(),
        429 => "Rate limit reached (simulated).".into(),
        500 => "The server had an error while processing your request (simulated).".into(),
        503 | 529 => "Overloaded (simulated).".into(),
        code => format!("Simulated error {code}."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("header value"));
        }
        h
    }

    #[test]
    fn parses_header_specs() {
        let f = Faults::parse(
            &headers(&[("x-sim-fault", "slow, 429"), ("x-sim-delay-ms", "150")]),
            "",
        )
        .expect("parse");
        assert_eq!(f.status, Some(StatusCode::TOO_MANY_REQUESTS));
        assert_eq!(f.delay, Some(Duration::from_millis(150)));
        assert_eq!(f.body, None);

        let f = Faults::parse(&headers(&[("x-sim-fault", "truncate")]), "").expect("parse");
        assert_eq!(f.body, Some(BodyFault::Truncate));
        assert!(
            Faults::parse(&HeaderMap::new(), "gpt-4o")
                .expect("parse")
                .is_empty()
        );
    }

    #[test]
    fn parses_model_specs() {
        let f = Faults::parse(&HeaderMap::new(), "fault-500").expect("parse");
        assert_eq!(f.status, Some(StatusCode::INTERNAL_SERVER_ERROR));
        let f = Faults::parse(&HeaderMap::new(), "fault-slow+reset-gpt-4o").expect("parse");
        assert_eq!(f.delay, Some(DEFAULT_SLOW));
        assert_eq!(f.body, Some(BodyFault::Reset));
        let f = Faults::parse(&HeaderMap::new(), "models/fault-stall").expect("parse");
        assert_eq!(f.body, Some(BodyFault::Stall));
    }

    #[test]
    fn rejects_bad_specs() {
        assert_eq!(
            Faults::parse(&headers(&[("x-sim-fault", "explode")]), ""),
            Err(FaultError::Unknown("explode".into()))
        );
        assert_eq!(
            Faults::parse(&headers(&[("x-sim-fault", "200")]), ""),
            Err(FaultError::Unknown("200".into()))
        );
        assert!(matches!(
            Faults::parse(
                &headers(&[("x-sim-fault", "slow"), ("x-sim-delay-ms", "soon")]),
                ""
            ),
            Err(FaultError::NotANumber { .. })
        ));
    }

    #[test]
    fn error_bodies_have_provider_shapes() {
        let s = StatusCode::TOO_MANY_REQUESTS;
        assert_eq!(
            error_body(Dialect::OpenAi, s, "m"),
            json!({"error": {"message": "m", "type": "requests", "param": null, "code": "rate_limit_exceeded"}})
        );
        assert_eq!(
            error_body(Dialect::Anthropic, s, "m"),
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "m"}})
        );
        assert_eq!(
            error_body(Dialect::Google, s, "m"),
            json!({"error": {"code": 429, "message": "m", "status": "RESOURCE_EXHAUSTED"}})
        );
    }
}
