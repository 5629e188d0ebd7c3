//! One rate-limit spec as written (agentgateway's `RateLimitSpec`), shared by
//! `localRateLimit` and `globalRateLimit`, with our `descriptors` extension: CEL entries
//! whose values key the bucket, so each caller (API key, JWT claim, header, model) gets its
//! own, like the descriptors of agentgateway's `remoteRateLimit`.

use std::time::Duration;

use serde_json::Value;

use crate::cel::{Executor, Expression, Refs};
use crate::ctx::RequestLog;

/// What a bucket counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Requests,
    Tokens,
}

/// When a spec is charged. Request limits are charged as the route is chosen (before the body
/// is read), unless their descriptors read `llm.*`: those, and every token limit, are charged
/// once the LLM request is parsed. A route that is not an LLM route has no LLM phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Route,
    Llm,
}

#[derive(Debug)]
pub struct Descriptor {
    pub key: String,
    pub value: Expression,
}

#[derive(Debug)]
pub struct Spec {
    pub kind: Kind,
    pub max: u64,
    pub per_fill: u64,
    pub interval: Duration,
    pub descriptors: Vec<Descriptor>,
    refs: Refs,
    /// `conditional` form: applies when this holds (`None`: always, or the fallback).
    pub condition: Option<Expression>,
    /// Charged in the LLM phase whatever it reads (set for every entry of a conditional list
    /// when one reads `llm.*`, so the choice is made once, with the same facts).
    pub force_llm: bool,
    /// A stable name for the spec's shared state: its YAML path and settings, hashed (two
    /// gateways with the same config share it; changing the limit starts a new one).
    pub id: String,
}

pub type ParseError = (String, String);

impl Spec {
    /// Parses one spec at `p`. `extra` lists further keys the caller handles.
    pub fn parse(spec: &Value, p: &str) -> Result<Spec, ParseError> {
        Spec::parse_with(spec, p, false)
    }

    /// `conditional`: the entry may carry a `condition`.
    pub fn parse_with(spec: &Value, p: &str, conditional: bool) -> Result<Spec, ParseError> {
        let o = spec
            .as_object()
            .ok_or_else(|| (p.to_owned(), format!("expected a mapping, got {spec}")))?;
        let num = |k: &str| -> Result<u64, ParseError> {
            match o.get(k) {
                None => Ok(0),
                Some(v) => v.as_u64().ok_or_else(|| {
                    (
                        format!("{p}.{k}"),
                        format!("expected a whole number, got {v}"),
                    )
                }),
            }
        };
        let max = num("maxTokens")?;
        let per_fill = num("tokensPerFill")?;
        let interval = match o.get("fillInterval") {
            Some(Value::String(s)) => {
                crate::time::parse_duration(s).map_err(|e| (format!("{p}.fillInterval"), e))?
            }
            Some(other) => {
                return Err((
                    format!("{p}.fillInterval"),
                    format!("expected a duration such as \"1s\", got {other}"),
                ));
            }
            None => return Err((format!("{p}.fillInterval"), "required".into())),
        };
        if interval.is_zero() {
            return Err((
                format!("{p}.fillInterval"),
                "must be longer than zero".into(),
            ));
        }
        if max == 0 {
            return Err((
                format!("{p}.maxTokens"),
                "must be at least 1 (a bucket of 0 refuses everything)".into(),
            ));
        }
        if max < per_fill {
            return Err((
                format!("{p}.maxTokens"),
                format!("{max} is less than tokensPerFill ({per_fill})"),
            ));
        }
        let kind = match o.get("type").and_then(Value::as_str) {
            None | Some("requests") => Kind::Requests,
            Some("tokens") => Kind::Tokens,
            Some(other) => {
                return Err((
                    format!("{p}.type"),
                    format!("{other:?}: expected `requests` or `tokens`"),
                ));
            }
        };
        if let Some(k) = o.keys().find(|k| {
            let known = matches!(
                k.as_str(),
                "maxTokens" | "tokensPerFill" | "fillInterval" | "type" | "descriptors"
            );
            !known && (!conditional || k.as_str() != "condition")
        }) {
            return Err((format!("{p}.{k}"), "unknown field".into()));
        }
        let (descriptors, mut refs) = match o.get("descriptors") {
            Some(d) => parse_descriptors(d, &format!("{p}.descriptors"))?,
            None => (Vec::new(), Refs::default()),
        };
        let condition = match o.get("condition") {
            None | Some(Value::Null) => None,
            Some(Value::String(c)) => {
                let e = Expression::compile(c)
                    .map_err(|e| (format!("{p}.condition"), e.to_string()))?;
                refs = refs.union(e.references());
                Some(e)
            }
            Some(other) => {
                return Err((
                    format!("{p}.condition"),
                    format!("expected a CEL expression, got {other}"),
                ));
            }
        };
        let id = {
            let d = ring::digest::digest(&ring::digest::SHA256, format!("{p}\0{spec}").as_bytes());
            crate::ctx::hex(&d.as_ref()[..8])
        };
        Ok(Spec {
            kind,
            max,
            per_fill,
            interval,
            descriptors,
            refs,
            condition,
            force_llm: false,
            id,
        })
    }

    pub fn phase(&self) -> Phase {
        if self.kind == Kind::Tokens || self.refs.llm || self.force_llm {
            Phase::Llm
        } else {
            Phase::Route
        }
    }

    pub fn references(&self) -> Refs {
        self.refs
    }

    /// The bucket key for this request: the descriptors' values in order (empty without
    /// descriptors). `None` when one does not evaluate to a value (a missing header or claim):
    /// the spec does not apply to this request, as agentgateway skips such descriptors.
    pub fn key(&self, exec: &Executor) -> Option<Vec<String>> {
        key_of(&self.descriptors, exec)
    }
}

/// Parses `descriptors: [{key, value}]` at `path` (CEL values compiled now).
pub fn parse_descriptors(d: &Value, path: &str) -> Result<(Vec<Descriptor>, Refs), ParseError> {
    let list = d.as_array().ok_or_else(|| {
        (
            path.to_owned(),
            format!("expected a list of {{key, value}} entries, got {d}"),
        )
    })?;
    let mut descriptors = Vec::new();
    let mut refs = Refs::default();
    for (i, e) in list.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let (key, value) = match (e.get("key"), e.get("value")) {
            (Some(Value::String(k)), Some(Value::String(v))) => (k, v),
            _ => {
                return Err((
                    at,
                    format!("expected {{key: name, value: CEL expression}}, got {e}"),
                ));
            }
        };
        if let Some(k) = e
            .as_object()
            .and_then(|m| m.keys().find(|k| !matches!(k.as_str(), "key" | "value")))
        {
            return Err((format!("{at}.{k}"), "unknown field".into()));
        }
        let value =
            Expression::compile(value).map_err(|e| (format!("{at}.value"), e.to_string()))?;
        refs = refs.union(value.references());
        descriptors.push(Descriptor {
            key: key.clone(),
            value,
        });
    }
    Ok((descriptors, refs))
}

/// The descriptors' values in order; `None` when one has no value.
pub fn key_of(descriptors: &[Descriptor], exec: &Executor) -> Option<Vec<String>> {
    descriptors
        .iter()
        .map(|d| {
            exec.eval(&d.value)
                .ok()
                .and_then(|v| crate::cel::display(&v))
        })
        .collect()
}

/// Executor over `log` for specs that need one (`None` when no spec has descriptors).
pub fn executor<'a>(specs: impl Iterator<Item = &'a Spec>, log: &RequestLog) -> Option<Executor> {
    let mut refs = Refs::default();
    let mut any = false;
    for s in specs {
        if !s.descriptors.is_empty() || s.condition.is_some() {
            any = true;
            refs = refs.union(s.refs);
        }
    }
    any.then(|| Executor::new(log, refs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_errors_name_the_path() {
        let p = "policies.localRateLimit[0]";
        let e = Spec::parse(&json!({"maxTokens": 1, "fillInterval": "0s"}), p).unwrap_err();
        assert_eq!(e.0, "policies.localRateLimit[0].fillInterval");
        let e = Spec::parse(
            &json!({"maxTokens": 1, "tokensPerFill": 2, "fillInterval": "1s"}),
            p,
        )
        .unwrap_err();
        assert_eq!(e.0, "policies.localRateLimit[0].maxTokens");
        let e = Spec::parse(
            &json!({"maxTokens": 1, "fillInterval": "1s", "type": "bytes"}),
            p,
        )
        .unwrap_err();
        assert_eq!(e.0, "policies.localRateLimit[0].type");
        let e = Spec::parse(&json!({"maxTokens": "x", "fillInterval": "1s"}), p).unwrap_err();
        assert_eq!(e.0, "policies.localRateLimit[0].maxTokens");
        let e = Spec::parse(
            &json!({"maxTokens": 1, "fillInterval": "1s", "descriptors": [{"key": "k", "value": "1 +"}]}),
            p,
        )
        .unwrap_err();
        assert_eq!(e.0, "policies.localRateLimit[0].descriptors[0].value");
        let e = Spec::parse(
            &json!({"maxTokens": 1, "fillInterval": "1s", "descriptors": [{"key": "k"}]}),
            p,
        )
        .unwrap_err();
        assert_eq!(e.0, "policies.localRateLimit[0].descriptors[0]");
    }

    #[test]
    fn phases_and_keys() {
        let s = Spec::parse(
            &json!({"maxTokens": 1, "fillInterval": "1s",
                    "descriptors": [{"key": "m", "value": "llm.requestModel"}]}),
            "p",
        )
        .unwrap();
        assert_eq!(s.phase(), Phase::Llm);
        let s = Spec::parse(
            &json!({"maxTokens": 1, "fillInterval": "1s",
                    "descriptors": [{"key": "p", "value": "request.path"},
                                    {"key": "h", "value": "request.headers['x-team']"}]}),
            "p",
        )
        .unwrap();
        assert_eq!(s.phase(), Phase::Route);
        let mut log = RequestLog::new("gw".into(), "l".into());
        log.path = "/v1".into();
        let exec = executor(std::iter::once(&s), &log).unwrap();
        assert_eq!(
            s.key(&exec),
            None,
            "a missing header: the spec does not apply"
        );
        log.request_headers = vec![("x-team".into(), "red".into())];
        let exec = executor(std::iter::once(&s), &log).unwrap();
        assert_eq!(s.key(&exec), Some(vec!["/v1".into(), "red".into()]));
    }
}
