//! Remote guards: agentgateway's guardrail webhook protocol, and OpenAI's moderation API.
//!
//! Webhook: `POST /request` with `{"body": {"messages": [{"role", "content"}]}}`, or
//! `POST /response` with `{"body": {"choices": [{"message": {"role", "content"}}]}}`. The
//! answer's `action` is one of
//! - pass: `{}` or `{"reason": ...}`;
//! - mask: `{"body": {"messages"|"choices": [...]}, "reason"?}`, the same list with the
//!   content replaced (same length and order);
//! - reject: `{"body": "text", "status_code": 4xx, "reason"?}`.
//!
//! A call that fails (connect, timeout, non-2xx, an answer that is none of these) is an error:
//! `failClosed` (default) rejects the request with 503, `failOpen` lets it through and records
//! `failopen`.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request};
use serde_json::{Value, json};

use super::{Moderation, Transport, Webhook};
use crate::ctx::{GuardHttp, RequestLog};

/// What a remote guard said.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Pass,
    /// Replacement texts, one per text sent, in order.
    Mask(Vec<String>),
    Reject {
        status: u16,
        body: String,
        reason: Option<String>,
    },
    /// Flagged by moderation: the categories that fired.
    Flagged(Vec<String>),
}

/// The outcome of one call: the verdict or why it failed, and the HTTP facts for the span.
pub struct Called {
    pub result: Result<Verdict, String>,
    pub http: GuardHttp,
}

fn url(tls: bool, authority: &str, path: &str) -> String {
    format!("{}://{authority}{path}", if tls { "https" } else { "http" })
}

/// A webhook call's request line and headers, computed once from the client's request
/// (CEL `headers`, `forwardHeaderMatches`): a stream reuses it for every window it checks.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub path: String,
    pub method: Method,
    pub headers: HeaderMap,
}

/// Evaluates the webhook's headers against the client's request. `:authority` sets the `Host`
/// header (the connection still goes to `target`).
pub fn prepare(
    w: &Webhook,
    log: &RequestLog,
    client_headers: &HeaderMap,
    request_phase: bool,
) -> Prepared {
    let mut path = if request_phase {
        "/request"
    } else {
        "/response"
    }
    .to_owned();
    let mut method = Method::POST;
    let mut headers = HeaderMap::new();
    // The record holds the client's headers only when telemetry reads them; these
    // expressions may too (credentials stay out, as everywhere in CEL).
    let filled;
    let log = if !w.headers.is_empty() && log.request_headers.is_empty() {
        let mut l = log.clone();
        l.request_headers = client_headers
            .iter()
            .filter(|(k, _)| !crate::ctx::redact::is_sensitive(k.as_str()))
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        filled = l;
        &filled
    } else {
        log
    };
    for (name, m) in &w.forward {
        for v in client_headers.get_all(name) {
            if v.to_str().is_ok_and(|s| m.matches(s)) {
                headers.append(name.clone(), v.clone());
            }
        }
    }
    for h in &w.headers {
        // An expression that fails leaves the header unset (and the default path), as
        // agentgateway does; the guard itself still runs.
        let Ok(v) = h.expr.eval(log) else { continue };
        let Some(s) = cel_string(&v) else { continue };
        match (h.name.as_str(), &h.header) {
            (":path", _) if s.starts_with('/') => path = s,
            (":method", _) => {
                if let Ok(m) = Method::from_bytes(s.as_bytes()) {
                    method = m;
                }
            }
            (":authority", _) => {
                if let Ok(v) = HeaderValue::from_str(&s) {
                    headers.insert(http::header::HOST, v);
                }
            }
            (_, Some(name)) => {
                if let Ok(v) = HeaderValue::from_str(&s) {
                    headers.insert(name.clone(), v);
                }
            }
            _ => {}
        }
    }
    Prepared {
        path,
        method,
        headers,
    }
}

/// Calls the webhook with `texts` (role, content) for the `request` or `response` phase.
pub async fn call_webhook(
    w: &Webhook,
    transport: &dyn Transport,
    log: &RequestLog,
    client_headers: &HeaderMap,
    request_phase: bool,
    texts: &[(String, String)],
) -> Called {
    let p = prepare(w, log, client_headers, request_phase);
    send_webhook(w, &p, transport, request_phase, texts).await
}

/// Sends one prepared webhook call.
pub async fn send_webhook(
    w: &Webhook,
    p: &Prepared,
    transport: &dyn Transport,
    request_phase: bool,
    texts: &[(String, String)],
) -> Called {
    let body = if request_phase {
        let messages: Vec<Value> = texts
            .iter()
            .map(|(r, c)| json!({"role": r, "content": c}))
            .collect();
        json!({"body": {"messages": messages}})
    } else {
        let choices: Vec<Value> = texts
            .iter()
            .map(|(r, c)| json!({"message": {"role": r, "content": c}}))
            .collect();
        json!({"body": {"choices": choices}})
    };
    let http = GuardHttp {
        method: if p.method == Method::POST {
            "POST"
        } else {
            "OTHER"
        },
        url: url(w.tls, &w.authority, &p.path),
        authority: w.authority.clone(),
        status: None,
    };
    let n = texts.len();
    let parse = move |v: &Value| parse_webhook(v, request_phase, n);
    send(
        transport,
        &w.authority,
        w.tls,
        p.method.clone(),
        &p.path,
        p.headers.clone(),
        &body,
        w.timeout,
        http,
        parse,
    )
    .await
}

fn cel_string(v: &crate::cel::Value) -> Option<String> {
    match crate::cel::to_json(v) {
        Value::String(s) => Some(s),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn send(
    transport: &dyn Transport,
    authority: &str,
    tls: bool,
    method: Method,
    path: &str,
    mut headers: HeaderMap,
    body: &Value,
    timeout: Duration,
    mut http: GuardHttp,
    parse: impl Fn(&Value) -> Result<Verdict, String>,
) -> Called {
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let mut req = Request::new(Bytes::from(body.to_string()));
    *req.method_mut() = method;
    *req.headers_mut() = headers;
    match path.parse::<http::Uri>() {
        Ok(u) => *req.uri_mut() = u,
        Err(e) => {
            return Called {
                result: Err(format!("invalid path {path:?}: {e}")),
                http,
            };
        }
    }
    let result = match transport.call(authority, tls, req, timeout).await {
        Err(e) => Err(e),
        Ok((status, bytes)) => {
            http.status = Some(status.as_u16());
            if !status.is_success() {
                Err(format!("guard endpoint returned {status}"))
            } else {
                serde_json::from_slice::<Value>(&bytes)
                    .map_err(|e| format!("guard endpoint answered with invalid JSON: {e}"))
                    .and_then(|v| parse(&v))
            }
        }
    };
    Called { result, http }
}

/// Reads a webhook answer; `n` texts were sent.
pub fn parse_webhook(v: &Value, request_phase: bool, n: usize) -> Result<Verdict, String> {
    let Some(action) = v.get("action").and_then(Value::as_object) else {
        return Err("webhook answer has no `action` object".into());
    };
    match action.get("body") {
        None | Some(Value::Null) => Ok(Verdict::Pass),
        Some(Value::String(body)) => {
            let status = action
                .get("status_code")
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok())
                .filter(|s| (100..=599).contains(s))
                .ok_or("webhook reject has no valid `status_code`")?;
            Ok(Verdict::Reject {
                status,
                body: body.clone(),
                reason: action
                    .get("reason")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            })
        }
        Some(Value::Object(b)) => {
            let (key, items) = if request_phase {
                ("messages", b.get("messages"))
            } else {
                ("choices", b.get("choices"))
            };
            let items = items
                .and_then(Value::as_array)
                .ok_or_else(|| format!("webhook mask body has no `{key}` list"))?;
            if items.len() != n {
                return Err(format!(
                    "webhook mask returned {} {key} for {n} sent",
                    items.len()
                ));
            }
            let texts: Option<Vec<String>> = items
                .iter()
                .map(|it| {
                    let c = if request_phase {
                        it.get("content")
                    } else {
                        it.pointer("/message/content")
                    };
                    c.and_then(Value::as_str).map(str::to_owned)
                })
                .collect();
            texts
                .map(Verdict::Mask)
                .ok_or_else(|| format!("webhook mask {key} lack string content"))
        }
        Some(_) => Err("webhook `action.body` is neither a string nor an object".into()),
    }
}

/// Calls the moderation endpoint with the request's texts.
pub async fn call_moderation(
    m: &Moderation,
    transport: &dyn Transport,
    texts: &[(String, String)],
) -> Called {
    let input: Vec<&str> = texts.iter().map(|(_, c)| c.as_str()).collect();
    let body = json!({"model": m.model, "input": input});
    let mut headers = HeaderMap::new();
    if let Some(k) = &m.key
        && let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", k.expose()))
    {
        headers.insert(http::header::AUTHORIZATION, v);
    }
    for (name, value, append) in &m.headers.0 {
        if *append {
            headers.append(name.clone(), value.clone());
        } else {
            headers.insert(name.clone(), value.clone());
        }
    }
    for name in &m.headers.1 {
        headers.remove(name);
    }
    let path = "/v1/moderations";
    let http = GuardHttp {
        method: "POST",
        url: url(m.tls, &m.authority, path),
        authority: m.authority.clone(),
        status: None,
    };
    send(
        transport,
        &m.authority,
        m.tls,
        Method::POST,
        path,
        headers,
        &body,
        m.timeout,
        http,
        parse_moderation,
    )
    .await
}

/// Flagged when any result is flagged; the categories are those set to true.
pub fn parse_moderation(v: &Value) -> Result<Verdict, String> {
    let results = v
        .get("results")
        .and_then(Value::as_array)
        .ok_or("moderation answer has no `results` list")?;
    let mut flagged = false;
    let mut cats: Vec<String> = Vec::new();
    for r in results {
        if r.get("flagged").and_then(Value::as_bool) == Some(true) {
            flagged = true;
            for (k, on) in r
                .get("categories")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                if on.as_bool() == Some(true) && !cats.contains(k) {
                    cats.push(k.clone());
                }
            }
        }
    }
    Ok(if flagged {
        Verdict::Flagged(cats)
    } else {
        Verdict::Pass
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_answers() {
        assert_eq!(
            parse_webhook(&json!({"action": {}}), true, 1),
            Ok(Verdict::Pass)
        );
        assert_eq!(
            parse_webhook(&json!({"action": {"reason": "ok"}}), true, 1),
            Ok(Verdict::Pass)
        );
        assert_eq!(
            parse_webhook(
                &json!({"action": {"body": {"messages": [{"role": "user", "content": "x"}]}}}),
                true,
                1
            ),
            Ok(Verdict::Mask(vec!["x".into()]))
        );
        assert_eq!(
            parse_webhook(
                &json!({"action": {"body": {"choices": [{"message": {"role": "assistant", "content": "y"}}]}}}),
                false,
                1
            ),
            Ok(Verdict::Mask(vec!["y".into()]))
        );
        assert!(matches!(
            parse_webhook(
                &json!({"action": {"body": "no", "status_code": 422}}),
                true,
                1
            ),
            Ok(Verdict::Reject { status: 422, .. })
        ));
        assert!(parse_webhook(&json!({"action": {"body": "no"}}), true, 1).is_err());
        assert!(parse_webhook(&json!({"nope": 1}), true, 1).is_err());
        assert!(
            parse_webhook(&json!({"action": {"body": {"messages": []}}}), true, 1).is_err(),
            "a mask must answer every message"
        );
    }

    #[test]
    fn moderation_answers() {
        let v = json!({"results": [{"flagged": true, "categories": {"violence": true, "hate": false}}]});
        assert_eq!(
            parse_moderation(&v),
            Ok(Verdict::Flagged(vec!["violence".into()]))
        );
        assert_eq!(
            parse_moderation(&json!({"results": [{"flagged": false}]})),
            Ok(Verdict::Pass)
        );
    }
}
