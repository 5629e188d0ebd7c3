//! Caller identity: `policies.apiKey` (agentgateway's `LocalAPIKeys`).
//!
//! Keys are kept as SHA-256 digests (`key` entries are hashed at load; `keyHash` is
//! `sha256:<hex>`). A request's credential is read from its `location` (default
//! `Authorization: Bearer <key>`), hashed and looked up; a match is removed from the request
//! before it goes upstream and the caller is recorded in `ctx::Identity`: a stable key id
//! (`sha256:` and 12 hex digits of the digest), never the key, and the key's metadata, which
//! CEL reads as `apiKey.<field>` (flattened, as agentgateway does) for fields, authorization and
//! rate limits. `allowedModels` (exact names, `prefix*`, `*suffix`, `*`; `[]` allows none)
//! is enforced on every LLM route.

pub mod authz;
pub mod basic;
pub mod jwt;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::ctx::Identity;

/// `mode`: what a missing or unknown key does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Both are refused (401).
    Strict,
    /// A missing key passes without identity; an unknown one is refused (default).
    Optional,
    /// Both pass without identity (the credential stays on the request).
    Permissive,
}

/// Where the credential is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A header, with an optional prefix (compared ignoring ASCII case) removed.
    Header {
        name: http::HeaderName,
        prefix: Option<String>,
    },
    /// A URL query parameter.
    Query(String),
}

#[derive(Clone, Debug)]
struct Key {
    id: String,
    metadata: Value,
    allowed: Option<Arc<Vec<String>>>,
}

#[derive(Debug)]
pub struct ApiKeys {
    keys: HashMap<[u8; 32], Key>,
    pub mode: Mode,
    pub location: Location,
}

/// Why a request was refused (401).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Missing,
    Invalid,
}

impl Refused {
    pub fn message(self) -> &'static str {
        match self {
            Refused::Missing => "api key authentication failure: no API Key found",
            Refused::Invalid => "api key authentication failure: invalid credentials",
        }
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

type Problem = (String, String);

impl ApiKeys {
    /// Parses `apiKey` as written; errors name the path below `path`.
    pub fn parse(v: &Value, path: &str) -> Result<ApiKeys, Problem> {
        let o = v
            .as_object()
            .ok_or_else(|| (path.to_owned(), format!("expected a mapping, got {v}")))?;
        if let Some(k) = o
            .keys()
            .find(|k| !matches!(k.as_str(), "keys" | "mode" | "location"))
        {
            return Err((format!("{path}.{k}"), "unknown field".into()));
        }
        let mode = match o.get("mode").and_then(Value::as_str) {
            None | Some("optional") => Mode::Optional,
            Some("strict") => Mode::Strict,
            Some("permissive") => Mode::Permissive,
            Some(other) => {
                return Err((
                    format!("{path}.mode"),
                    format!("{other:?}: expected strict, optional or permissive"),
                ));
            }
        };
        let location = match o.get("location") {
            None => Location::Header {
                name: http::header::AUTHORIZATION,
                prefix: Some("Bearer ".into()),
            },
            Some(l) => location(l, &format!("{path}.location"))?,
        };
        let list = o
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| (format!("{path}.keys"), "required: a list of keys".into()))?;
        let mut keys = HashMap::new();
        for (i, k) in list.iter().enumerate() {
            let p = format!("{path}.keys[{i}]");
            let ko = k
                .as_object()
                .ok_or_else(|| (p.clone(), format!("expected a mapping, got {k}")))?;
            if let Some(f) = ko
                .keys()
                .find(|f| !matches!(f.as_str(), "key" | "keyHash" | "metadata" | "allowedModels"))
            {
                return Err((format!("{p}.{f}"), "unknown field".into()));
            }
            let digest = match (ko.get("key"), ko.get("keyHash")) {
                (Some(Value::String(s)), None) if !s.is_empty() => sha256(s.as_bytes()),
                (None, Some(Value::String(h))) => {
                    key_hash(h).map_err(|e| (format!("{p}.keyHash"), e))?
                }
                _ => {
                    return Err((
                        p,
                        "set exactly one of `key` (the key) or `keyHash` (sha256:<hex>)".into(),
                    ));
                }
            };
            let allowed = match ko.get("allowedModels") {
                None | Some(Value::Null) => None,
                Some(a) => Some(Arc::new(
                    allowed_models(a).map_err(|e| (format!("{p}.allowedModels"), e))?,
                )),
            };
            let metadata = ko.get("metadata").cloned().unwrap_or(Value::Null);
            let id = format!("sha256:{}", &crate::ctx::hex(&digest)[..12]);
            keys.insert(
                digest,
                Key {
                    id,
                    metadata,
                    allowed,
                },
            );
        }
        Ok(ApiKeys {
            keys,
            mode,
            location,
        })
    }

    /// Checks the request's credential; on a match removes it and returns the caller.
    /// `Ok(None)`: no identity, allowed by the mode.
    pub fn verify(
        &self,
        headers: &mut http::HeaderMap,
        uri: &mut http::Uri,
    ) -> Result<Option<Identity>, Refused> {
        let Some(cred) = self.location.credential(headers, uri) else {
            return match self.mode {
                Mode::Strict => Err(Refused::Missing),
                _ => Ok(None),
            };
        };
        match self.keys.get(&sha256(cred.as_bytes())) {
            Some(k) => {
                self.location.remove(headers, uri);
                Ok(Some(Identity {
                    key_id: k.id.clone(),
                    metadata: k.metadata.clone(),
                    allowed_models: k.allowed.clone(),
                }))
            }
            None if self.mode == Mode::Permissive => Ok(None),
            None => Err(Refused::Invalid),
        }
    }
}

impl Location {
    /// The credential at this location, the prefix removed.
    pub(crate) fn credential(&self, headers: &http::HeaderMap, uri: &http::Uri) -> Option<String> {
        match self {
            Location::Header { name, prefix } => {
                let v = headers.get(name)?.to_str().ok()?;
                match prefix {
                    None => Some(v.to_owned()),
                    Some(p) => {
                        let head = v.get(..p.len())?;
                        head.eq_ignore_ascii_case(p)
                            .then(|| v[p.len()..].to_owned())
                    }
                }
            }
            Location::Query(name) => {
                let q = uri.query()?;
                q.split('&').find_map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (k == name).then(|| percent_decode(v))
                })
            }
        }
    }

    /// Removes the credential from the request (after it was accepted).
    pub(crate) fn remove(&self, headers: &mut http::HeaderMap, uri: &mut http::Uri) {
        match self {
            Location::Header { name, .. } => {
                headers.remove(name);
            }
            Location::Query(name) => {
                let Some(q) = uri.query() else { return };
                let kept: Vec<&str> = q
                    .split('&')
                    .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k) != name)
                    .collect();
                let path = uri.path();
                let pq = if kept.is_empty() {
                    path.to_owned()
                } else {
                    format!("{path}?{}", kept.join("&"))
                };
                let mut b = http::Uri::builder();
                if let Some(s) = uri.scheme() {
                    b = b.scheme(s.clone());
                }
                if let Some(a) = uri.authority() {
                    b = b.authority(a.clone());
                }
                if let Ok(u) = b.path_and_query(pq).build() {
                    *uri = u;
                }
            }
        }
    }
}

pub(crate) fn location(v: &Value, path: &str) -> Result<Location, Problem> {
    if let Some(h) = v.get("header") {
        let name = h
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| (format!("{path}.header.name"), "required".into()))?;
        let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            (
                format!("{path}.header.name"),
                format!("{name:?} is not a header name"),
            )
        })?;
        let prefix = h.get("prefix").and_then(Value::as_str).map(str::to_owned);
        return Ok(Location::Header { name, prefix });
    }
    if let Some(q) = v.get("queryParameter") {
        let name = q
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| (format!("{path}.queryParameter.name"), "required".into()))?;
        return Ok(Location::Query(name.to_owned()));
    }
    Err((
        path.to_owned(),
        "supported: `header: {name, prefix}` or `queryParameter: {name}` (cookie and expression locations are not yet)".into(),
    ))
}

fn key_hash(h: &str) -> Result<[u8; 32], String> {
    let hexpart = h
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("{h:?}: expected sha256:<64 hex digits>"))?;
    if hexpart.len() != 64 || !hexpart.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("expected sha256:<64 hex digits>".into());
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hexpart[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn allowed_models(v: &Value) -> Result<Vec<String>, String> {
    let list = v
        .as_array()
        .ok_or_else(|| format!("expected a list of model names, got {v}"))?;
    let mut out: Vec<String> = Vec::new();
    for m in list {
        let s = m
            .as_str()
            .ok_or_else(|| format!("expected a model name, got {m}"))?;
        let stars = s.matches('*').count();
        let ok = !s.is_empty()
            && (stars == 0 || (stars == 1 && (s.starts_with('*') || s.ends_with('*'))));
        if !ok {
            return Err(format!("{s:?}: a model name, `prefix*`, `*suffix` or `*`"));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    if out.len() > 1 && out.iter().any(|o| o == "*") {
        return Err("`*` allows every model: list it alone".into());
    }
    Ok(out)
}

/// Whether `model` matches one of `allowed` (case-sensitive).
pub fn model_allowed(allowed: &[String], model: &str) -> bool {
    allowed.iter().any(|p| {
        if p == "*" {
            true
        } else if let Some(pre) = p.strip_suffix('*') {
            model.starts_with(pre)
        } else if let Some(suf) = p.strip_prefix('*') {
            model.ends_with(suf)
        } else {
            p == model
        }
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex_pair = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex_pair) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parts(auth: Option<&str>, uri: &str) -> http::request::Parts {
        let mut b = http::Request::builder().uri(uri);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn keys_hashes_modes_and_removal() {
        let digest = crate::ctx::hex(&sha256(b"k2"));
        let k = ApiKeys::parse(
            &json!({"mode": "strict", "keys": [
                {"key": "k1", "metadata": {"team": "red"}, "allowedModels": ["gpt-4o*"]},
                {"keyHash": format!("sha256:{}", digest.to_uppercase())}]}),
            "p",
        )
        .unwrap();
        let mut p = parts(Some("Bearer k1"), "/v1/chat/completions");
        let id = k.verify(&mut p.headers, &mut p.uri).unwrap().unwrap();
        assert_eq!(id.metadata, json!({"team": "red"}));
        assert!(id.key_id.starts_with("sha256:") && !id.key_id.contains("k1"));
        assert!(
            p.headers.get("authorization").is_none(),
            "credential removed"
        );
        assert!(
            k.verify(
                &mut parts(Some("bearer k2"), "/").headers,
                &mut http::Uri::default()
            )
            .unwrap()
            .is_some()
        );
        assert_eq!(
            k.verify(
                &mut parts(Some("Bearer nope"), "/").headers,
                &mut http::Uri::default()
            )
            .unwrap_err(),
            Refused::Invalid
        );
        assert_eq!(
            k.verify(&mut parts(None, "/").headers, &mut http::Uri::default())
                .unwrap_err(),
            Refused::Missing
        );
        let opt = ApiKeys::parse(&json!({"keys": [{"key": "k1"}]}), "p").unwrap();
        assert!(
            opt.verify(&mut parts(None, "/").headers, &mut http::Uri::default())
                .unwrap()
                .is_none()
        );
        assert!(
            opt.verify(
                &mut parts(Some("Bearer x"), "/").headers,
                &mut http::Uri::default()
            )
            .is_err()
        );
        let perm =
            ApiKeys::parse(&json!({"mode": "permissive", "keys": [{"key": "k1"}]}), "p").unwrap();
        let mut p = parts(Some("Bearer x"), "/");
        assert!(perm.verify(&mut p.headers, &mut p.uri).unwrap().is_none());
        assert!(
            p.headers.get("authorization").is_some(),
            "an unknown key stays"
        );
    }

    #[test]
    fn query_location() {
        let k = ApiKeys::parse(
            &json!({"keys": [{"key": "a b"}], "location": {"queryParameter": {"name": "key"}}}),
            "p",
        )
        .unwrap();
        let mut p = parts(None, "http://h/x?x=1&key=a%20b&y=2");
        assert!(k.verify(&mut p.headers, &mut p.uri).unwrap().is_some());
        assert_eq!(p.uri.path_and_query().unwrap().as_str(), "/x?x=1&y=2");
    }

    #[test]
    fn bad_config_names_the_path() {
        let e = ApiKeys::parse(&json!({"keys": [{"keyHash": "md5:00"}]}), "p").unwrap_err();
        assert_eq!(e.0, "p.keys[0].keyHash");
        let e = ApiKeys::parse(
            &json!({"keys": [{"key": "a", "allowedModels": ["a*b"]}]}),
            "p",
        )
        .unwrap_err();
        assert_eq!(e.0, "p.keys[0].allowedModels");
        let e = ApiKeys::parse(&json!({"keys": [{"key": "a", "keyHash": "x"}]}), "p").unwrap_err();
        assert_eq!(e.0, "p.keys[0]");
        let e = ApiKeys::parse(&json!({"keys": [], "mode": "lenient"}), "p").unwrap_err();
        assert_eq!(e.0, "p.mode");
    }

    #[test]
    fn model_patterns() {
        let a = allowed_models(&json!(["gpt-4o*", "*-mini", "claude-sonnet-4-5"])).unwrap();
        assert!(model_allowed(&a, "gpt-4o-2024"));
        assert!(model_allowed(&a, "o3-mini"));
        assert!(model_allowed(&a, "claude-sonnet-4-5"));
        assert!(!model_allowed(&a, "claude-opus-4"));
        assert!(!model_allowed(&[], "gpt-4o"));
        assert!(allowed_models(&json!(["*", "a"])).is_err());
    }
}
