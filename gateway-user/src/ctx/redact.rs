//! Which headers carry credentials. The proxy strips these from `RequestLog.request_headers`
//! (and telemetry when it captures headers itself), and CEL shows them as `<redacted>`, so no
//! key ever reaches a log line or a span. It lives with the request record it guards, below
//! `proxy`, `cel` and `telemetry`, which all use it.

use std::fmt;

/// The value shown in place of a credential.
pub const REDACTED: &str = "<redacted>";

const SENSITIVE: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "cookie",
    "set-cookie",
];

/// True when `name` (any case) is a header that carries a credential.
pub fn is_sensitive(name: &str) -> bool {
    SENSITIVE.iter().any(|s| s.eq_ignore_ascii_case(name))
}

/// A secret value: never printed by `Debug`/`Display`, redacted in `/config_dump`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_sensitive_in_any_case() {
        for h in [
            "Authorization",
            "x-api-key",
            "API-KEY",
            "x-goog-api-key",
            "Cookie",
            "set-cookie",
        ] {
            assert!(is_sensitive(h), "{h}");
        }
        for h in [
            "content-type",
            "x-request-id",
            "authorization-hint",
            "user-agent",
        ] {
            assert!(!is_sensitive(h), "{h}");
        }
    }
}
