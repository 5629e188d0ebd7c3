//! JSON-RPC 2.0 framing for MCP: classify one message, build responses and errors.
//!
//! Messages are kept as `serde_json::Value` payloads so that fields the gateway does not know
//! (new MCP revisions, `_meta`) pass through untouched.

use serde_json::{Map, Value as Json, json};

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist or is not available.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters (also: unknown or unauthorized tool, as agentgateway does).
pub const INVALID_PARAMS: i64 = -32602;
/// Internal error, including a failed or timed-out target.
pub const INTERNAL_ERROR: i64 = -32603;

/// A JSON-RPC error object.
#[derive(Clone, Debug, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Json>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn to_json(&self) -> Json {
        let mut o = Map::new();
        o.insert("code".into(), self.code.into());
        o.insert("message".into(), self.message.clone().into());
        if let Some(d) = &self.data {
            o.insert("data".into(), d.clone());
        }
        Json::Object(o)
    }

    /// Parses an error object received from a target; malformed ones become internal errors.
    pub fn from_json(v: &Json) -> Self {
        RpcError {
            code: v
                .get("code")
                .and_then(Json::as_i64)
                .unwrap_or(INTERNAL_ERROR),
            message: v
                .get("message")
                .and_then(Json::as_str)
                .unwrap_or("error without message")
                .to_string(),
            data: v.get("data").cloned(),
        }
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// One classified JSON-RPC message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Request {
        id: Json,
        method: String,
        params: Option<Json>,
    },
    Notification {
        method: String,
        params: Option<Json>,
    },
    Response {
        id: Json,
        result: Json,
    },
    Error {
        id: Json,
        error: RpcError,
    },
}

/// Why a client body could not be turned into a message; carries the error to answer with.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    /// The request id when it could be recovered, else `null`.
    pub id: Json,
    pub error: RpcError,
}

/// Parses bytes into one message: invalid JSON is -32700, anything that is not a JSON-RPC 2.0
/// object (including batches, removed in MCP 2025-06-18) is -32600.
pub fn parse(bytes: &[u8]) -> Result<Message, Box<Rejected>> {
    let v: Json = serde_json::from_slice(bytes).map_err(|e| {
        Box::new(Rejected {
            id: Json::Null,
            error: RpcError::new(PARSE_ERROR, format!("Parse error: {e}")),
        })
    })?;
    classify(v)
}

/// Classifies an already-parsed value.
pub fn classify(v: Json) -> Result<Message, Box<Rejected>> {
    let invalid = |id: Json, why: &str| {
        Box::new(Rejected {
            id,
            error: RpcError::new(INVALID_REQUEST, format!("Invalid Request: {why}")),
        })
    };
    let Json::Object(mut o) = v else {
        let why = if v.is_array() {
            "batches are not supported"
        } else {
            "expected a JSON object"
        };
        return Err(invalid(Json::Null, why));
    };
    let id = o.remove("id");
    if let Some(id) = &id
        && !(id.is_string() || id.is_i64() || id.is_u64())
    {
        return Err(invalid(Json::Null, "id must be a string or an integer"));
    }
    if o.get("jsonrpc").and_then(Json::as_str) != Some("2.0") {
        return Err(invalid(id.unwrap_or(Json::Null), "jsonrpc must be \"2.0\""));
    }
    let params = o.remove("params");
    if let Some(p) = &params
        && !(p.is_object() || p.is_array())
    {
        return Err(invalid(
            id.unwrap_or(Json::Null),
            "params must be an object or an array",
        ));
    }
    // MCP reserves `params._meta` for an object; the gateway writes the trace context into it.
    if let Some(Json::Object(p)) = &params
        && p.get("_meta").is_some_and(|m| !m.is_object())
    {
        return Err(invalid(
            id.unwrap_or(Json::Null),
            "params._meta must be an object",
        ));
    }
    match (o.remove("method"), id) {
        (Some(Json::String(method)), Some(id)) => Ok(Message::Request { id, method, params }),
        (Some(Json::String(method)), None) => Ok(Message::Notification { method, params }),
        (Some(_), id) => Err(invalid(id.unwrap_or(Json::Null), "method must be a string")),
        (None, Some(id)) => match (o.remove("result"), o.remove("error")) {
            (Some(result), None) => Ok(Message::Response { id, result }),
            (None, Some(error)) if error.is_object() => Ok(Message::Error {
                id,
                error: RpcError::from_json(&error),
            }),
            _ => Err(invalid(
                id,
                "a response needs exactly one of result or error",
            )),
        },
        (None, None) => Err(invalid(Json::Null, "missing method")),
    }
}

impl Message {
    pub fn to_json(&self) -> Json {
        match self {
            Message::Request { id, method, params } => request(id.clone(), method, params.clone()),
            Message::Notification { method, params } => notification(method, params.clone()),
            Message::Response { id, result } => response(id.clone(), result.clone()),
            Message::Error { id, error } => error_response(id.clone(), error),
        }
    }

    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method, .. } => Some(method),
            _ => None,
        }
    }
}

pub fn request(id: Json, method: &str, params: Option<Json>) -> Json {
    let mut o = Map::new();
    o.insert("jsonrpc".into(), "2.0".into());
    o.insert("id".into(), id);
    o.insert("method".into(), method.into());
    if let Some(p) = params {
        o.insert("params".into(), p);
    }
    Json::Object(o)
}

pub fn notification(method: &str, params: Option<Json>) -> Json {
    let mut o = Map::new();
    o.insert("jsonrpc".into(), "2.0".into());
    o.insert("method".into(), method.into());
    if let Some(p) = params {
        o.insert("params".into(), p);
    }
    Json::Object(o)
}

pub fn response(id: Json, result: Json) -> Json {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

pub fn error_response(id: Json, error: &RpcError) -> Json {
    json!({"jsonrpc": "2.0", "id": id, "error": error.to_json()})
}

/// Sets `params._meta.<key>` on a request or notification value, creating objects as needed.
/// Array params (not used by MCP) are left alone.
pub fn set_meta(msg: &mut Json, key: &str, value: Json) {
    let Some(o) = msg.as_object_mut() else { return };
    let params = o
        .entry("params")
        .or_insert_with(|| Json::Object(Map::new()));
    let Some(p) = params.as_object_mut() else {
        return;
    };
    let meta = p.entry("_meta").or_insert_with(|| Json::Object(Map::new()));
    if let Some(m) = meta.as_object_mut() {
        m.insert(key.to_string(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_messages() {
        let cases: Vec<(&str, Result<Message, i64>)> = vec![
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
                Ok(Message::Request {
                    id: json!(1),
                    method: "tools/list".into(),
                    params: None,
                }),
            ),
            (
                r#"{"jsonrpc":"2.0","id":"a","method":"x","params":{"k":1}}"#,
                Ok(Message::Request {
                    id: json!("a"),
                    method: "x".into(),
                    params: Some(json!({"k":1})),
                }),
            ),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                Ok(Message::Notification {
                    method: "notifications/initialized".into(),
                    params: None,
                }),
            ),
            (
                r#"{"jsonrpc":"2.0","id":7,"result":{}}"#,
                Ok(Message::Response {
                    id: json!(7),
                    result: json!({}),
                }),
            ),
            (
                r#"{"jsonrpc":"2.0","id":7,"error":{"code":-1,"message":"m"}}"#,
                Ok(Message::Error {
                    id: json!(7),
                    error: RpcError::new(-1, "m"),
                }),
            ),
            ("{not json", Err(PARSE_ERROR)),
            ("", Err(PARSE_ERROR)),
            ("[]", Err(INVALID_REQUEST)),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":"x"}}"#,
                Err(INVALID_REQUEST),
            ),
            ("3", Err(INVALID_REQUEST)),
            (r#"{"id":1,"method":"x"}"#, Err(INVALID_REQUEST)),
            (
                r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
                Err(INVALID_REQUEST),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#,
                Err(INVALID_REQUEST),
            ),
            (
                r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#,
                Err(INVALID_REQUEST),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":3}"#,
                Err(INVALID_REQUEST),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"x","params":"s"}"#,
                Err(INVALID_REQUEST),
            ),
            (r#"{"jsonrpc":"2.0","id":1}"#, Err(INVALID_REQUEST)),
            (r#"{"jsonrpc":"2.0"}"#, Err(INVALID_REQUEST)),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#,
                Err(INVALID_REQUEST),
            ),
        ];
        for (input, want) in cases {
            let got = parse(input.as_bytes()).map_err(|r| r.error.code);
            assert_eq!(got, want, "input {input}");
        }
    }

    /// Arbitrary bytes (deterministic pseudo-random, biased towards JSON punctuation) never
    /// panic and always classify or reject with -32700 / -32600.
    #[test]
    fn arbitrary_input_never_panics() {
        let alphabet = br#"{}[]":,0123456789.-eEtrufalsn \ujsonrpcidmethodparamsresulterror2"#;
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| alphabet[((x >> (i % 56)) as usize + i) % alphabet.len()])
                .collect();
            if let Err(r) = parse(&bytes) {
                assert!(matches!(r.error.code, PARSE_ERROR | INVALID_REQUEST));
            }
        }
    }

    #[test]
    fn invalid_request_keeps_recoverable_id() {
        let r = parse(br#"{"jsonrpc":"1.0","id":"x","method":"m"}"#).expect_err("invalid");
        assert_eq!(r.id, json!("x"));
        let wire = error_response(r.id, &r.error);
        assert_eq!(wire["error"]["code"], json!(INVALID_REQUEST));
        assert_eq!(wire["jsonrpc"], json!("2.0"));
    }

    #[test]
    fn round_trips_and_sets_meta() {
        let mut req = request(json!(3), "tools/call", Some(json!({"name": "echo"})));
        set_meta(&mut req, "traceparent", json!("00-a-b-01"));
        assert_eq!(req["params"]["_meta"]["traceparent"], json!("00-a-b-01"));
        assert_eq!(req["params"]["name"], json!("echo"));
        let mut bare = notification("notifications/initialized", None);
        set_meta(&mut bare, "k", json!(1));
        assert_eq!(bare["params"]["_meta"]["k"], json!(1));
        let msg = classify(req.clone()).expect("valid");
        assert_eq!(msg.to_json(), req);
        assert_eq!(msg.method(), Some("tools/call"));
    }
}
