//! `policies.jwtAuth` (agentgateway's `LocalJwtConfig`): bearer JWTs verified against the
//! keys of one or more trusted issuers.
//!
//! Either form is accepted: `{issuer, audiences, jwks, jwtValidationOptions}` or
//! `{providers: [...]}`, with `mode` (`strict`, `optional` (default), `permissive`) and
//! `location` (default `Authorization: Bearer`). `jwks` is a file (`{file: path}`) or inline
//! (a JSON string or the set itself); every key needs a `kid`, and a token must name one in its
//! header. RSA (RS256/384/512, PS256/384/512), EC (ES256/384) and Ed25519 keys are accepted;
//! the algorithm is the key's (`alg`, else the one its type and curve imply), never the
//! token's choice. `iss` must match, `aud` must when `audiences` is set, `exp` is required
//! unless `jwtValidationOptions.requiredClaims` says otherwise (60 s leeway).
//!
//! A verified token is removed from the request before it goes upstream and its claims are
//! the caller: CEL reads them as `jwt.<claim>` (`jwt.sub`, `jwt.team`); the span and the log
//! carry `jwt.sub` and `jwt.iss`, never the token. Failures are 401 in the client's shape with
//! agentgateway's message (`authentication failure: no bearer token found`, ...).
//! Remote JWKS (`jwks: {url}`) are not fetched yet: a load error.

use std::collections::HashMap;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::Location;

type Problem = (String, String);

/// agentgateway's `Mode` for JWTs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A valid token is required.
    Strict,
    /// A token, when present, must be valid (default).
    Optional,
    /// Invalid or missing tokens pass without claims.
    Permissive,
}

struct Provider {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    validation: Vec<(Algorithm, Validation)>,
}

impl Provider {
    fn validation(&self, alg: Algorithm) -> Option<&Validation> {
        self.validation
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, v)| v)
    }
}

pub struct JwtAuth {
    pub mode: Mode,
    location: Location,
    providers: Vec<Provider>,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("mode", &self.mode)
            .field("providers", &self.providers.len())
            .finish_non_exhaustive()
    }
}

/// Why a token was refused (agentgateway's messages).
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Missing,
    MalformedHeader,
    MissingKeyId,
    UnknownKey(String),
    Invalid(String),
}

impl Refused {
    pub fn message(&self) -> String {
        let why = match self {
            Refused::Missing => "no bearer token found".to_owned(),
            Refused::MalformedHeader => "the token header is malformed".to_owned(),
            Refused::MissingKeyId => "the token header does not specify a `kid`".to_owned(),
            Refused::UnknownKey(k) => format!("token uses the unknown key {k:?}"),
            Refused::Invalid(e) => format!("the token is invalid or malformed: {e}"),
        };
        // agentgateway's wording, so clients that match on it keep working.
        format!("authentication failure: {why}")
    }
}

impl JwtAuth {
    /// Parses `jwtAuth`; `base` resolves relative JWKS file paths. Errors name the path.
    pub fn parse(v: &Value, path: &str) -> Result<JwtAuth, Problem> {
        let o = v
            .as_object()
            .ok_or_else(|| (path.to_owned(), format!("expected a mapping, got {v}")))?;
        let mode = match o.get("mode").map(|m| m.as_str()) {
            None | Some(Some("optional")) => Mode::Optional,
            Some(Some("strict")) => Mode::Strict,
            Some(Some("permissive")) => Mode::Permissive,
            Some(_) => {
                return Err((
                    format!("{path}.mode"),
                    format!(
                        "{}: expected `strict`, `optional` or `permissive`",
                        o["mode"]
                    ),
                ));
            }
        };
        let location = match o.get("location") {
            None => Location::Header {
                name: http::header::AUTHORIZATION,
                prefix: Some("Bearer ".into()),
            },
            Some(l) => super::location(l, &format!("{path}.location"))?,
        };
        let providers = if let Some(list) = o.get("providers") {
            if let Some(k) = o
                .keys()
                .find(|k| !matches!(k.as_str(), "mode" | "location" | "providers"))
            {
                return Err((
                    format!("{path}.{k}"),
                    "unknown field (with `providers`, issuers go in the list)".into(),
                ));
            }
            let list = list.as_array().ok_or_else(|| {
                (
                    format!("{path}.providers"),
                    format!("expected a list, got {list}"),
                )
            })?;
            if list.is_empty() {
                return Err((
                    format!("{path}.providers"),
                    "empty: no issuer to trust".into(),
                ));
            }
            list.iter()
                .enumerate()
                .map(|(i, p)| provider(p, &format!("{path}.providers[{i}]"), &[]))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            vec![provider(v, path, &["mode", "location"])?]
        };
        Ok(JwtAuth {
            mode,
            location,
            providers,
        })
    }

    /// Checks the request's token; on success removes it and returns the claims.
    /// `Ok(None)`: no claims, allowed by the mode.
    pub fn verify(
        &self,
        headers: &mut http::HeaderMap,
        uri: &mut http::Uri,
    ) -> Result<Option<Value>, Refused> {
        let Some(token) = self.location.credential(headers, uri) else {
            return match self.mode {
                Mode::Strict => Err(Refused::Missing),
                _ => Ok(None),
            };
        };
        match self.check(token.trim()) {
            Ok(claims) => {
                self.location.remove(headers, uri);
                Ok(Some(claims))
            }
            Err(_) if self.mode == Mode::Permissive => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn check(&self, token: &str) -> Result<Value, Refused> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refused::MalformedHeader)?;
        let kid = header.kid.as_deref().ok_or(Refused::MissingKeyId)?;
        let (provider, key, alg) = self
            .providers
            .iter()
            .find_map(|p| p.keys.get(kid).map(|(k, a)| (p, k, *a)))
            .ok_or_else(|| Refused::UnknownKey(kid.to_owned()))?;
        let validation = provider
            .validation(alg)
            .ok_or_else(|| Refused::Invalid("unsupported algorithm".into()))?;
        jsonwebtoken::decode::<Value>(token, key, validation)
            .map(|d| d.claims)
            .map_err(|e| Refused::Invalid(e.to_string()))
    }
}

fn provider(v: &Value, path: &str, also: &[&str]) -> Result<Provider, Problem> {
    let o = v
        .as_object()
        .ok_or_else(|| (path.to_owned(), format!("expected a mapping, got {v}")))?;
    if let Some(k) = o.keys().find(|k| {
        !matches!(
            k.as_str(),
            "issuer" | "audiences" | "jwks" | "jwtValidationOptions"
        ) && !also.contains(&k.as_str())
    }) {
        return Err((format!("{path}.{k}"), "unknown field".into()));
    }
    let issuer = o.get("issuer").and_then(Value::as_str).ok_or_else(|| {
        (
            format!("{path}.issuer"),
            "required: the token issuer".into(),
        )
    })?;
    let audiences: Vec<String> = match o.get("audiences") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                (
                    format!("{path}.audiences"),
                    "expected a list of strings".into(),
                )
            })?,
        Some(other) => {
            return Err((
                format!("{path}.audiences"),
                format!("expected a list of strings, got {other}"),
            ));
        }
    };
    let required: Vec<String> = match o
        .get("jwtValidationOptions")
        .and_then(|j| j.get("requiredClaims"))
    {
        None => vec!["exp".into()],
        Some(Value::Array(a)) => {
            let mut out = Vec::new();
            for (i, c) in a.iter().enumerate() {
                match c.as_str() {
                    Some(s @ ("exp" | "nbf" | "aud" | "iss" | "sub")) => out.push(s.to_owned()),
                    _ => {
                        return Err((
                            format!("{path}.jwtValidationOptions.requiredClaims[{i}]"),
                            format!("{c}: expected one of exp, nbf, aud, iss, sub"),
                        ));
                    }
                }
            }
            out
        }
        Some(other) => {
            return Err((
                format!("{path}.jwtValidationOptions.requiredClaims"),
                format!("expected a list, got {other}"),
            ));
        }
    };
    let jwks_path = format!("{path}.jwks");
    let set = load_jwks(
        o.get("jwks")
            .ok_or_else(|| (jwks_path.clone(), "required".into()))?,
        &jwks_path,
    )?;
    let mut keys = HashMap::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let at = format!("{jwks_path}.keys[{i}]");
        let kid = jwk
            .common
            .key_id
            .clone()
            .ok_or_else(|| (at.clone(), "the key is missing the `kid` attribute".into()))?;
        let alg = algorithm(jwk).map_err(|e| (at.clone(), e))?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| {
            (
                at.clone(),
                format!("could not construct a decoding key: {e}"),
            )
        })?;
        keys.insert(kid, (key, alg));
    }
    if keys.is_empty() {
        return Err((jwks_path, "the key set has no keys".into()));
    }
    let mut algs: Vec<Algorithm> = keys.values().map(|(_, a)| *a).collect();
    algs.dedup();
    let validation = algs
        .into_iter()
        .map(|alg| {
            let mut v = Validation::new(alg);
            v.set_issuer(&[issuer]);
            let mut req = required.clone();
            req.push("iss".into());
            if audiences.is_empty() {
                v.validate_aud = false;
            } else {
                v.set_audience(&audiences);
                req.push("aud".into());
            }
            v.set_required_spec_claims(&req);
            (alg, v)
        })
        .collect();
    Ok(Provider { keys, validation })
}

/// `jwks`: `{file: path}`, an inline JSON string, or the set written out.
fn load_jwks(v: &Value, path: &str) -> Result<JwkSet, Problem> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Object(o) if o.contains_key("file") => {
            let f = o
                .get("file")
                .and_then(Value::as_str)
                .ok_or_else(|| (format!("{path}.file"), "expected a file path".into()))?;
            std::fs::read_to_string(f).map_err(|e| (format!("{path}.file"), format!("{f}: {e}")))?
        }
        Value::Object(o) if o.contains_key("url") => {
            return Err((
                format!("{path}.url"),
                "remote JWKS are not fetched yet: use `file` or inline keys".into(),
            ));
        }
        Value::Object(o) if o.contains_key("keys") => v.to_string(),
        other => {
            return Err((
                path.to_owned(),
                format!("expected `{{file: path}}` or an inline key set, got {other}"),
            ));
        }
    };
    serde_json::from_str(&text).map_err(|e| (path.to_owned(), format!("failed to parse JWKS: {e}")))
}

/// The algorithm a key verifies: its `alg`, else the one its type implies.
fn algorithm(jwk: &Jwk) -> Result<Algorithm, String> {
    if let Some(a) = &jwk.common.key_algorithm {
        let alg: Algorithm = a
            .to_string()
            .parse()
            .map_err(|_| format!("unsupported algorithm {a}"))?;
        if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Err("shared-secret (HS*) keys are not accepted".into());
        }
        return Ok(alg);
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Ok(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Ok(Algorithm::ES256),
            EllipticCurve::P384 => Ok(Algorithm::ES384),
            ref c => Err(format!("unsupported curve {c:?}")),
        },
        AlgorithmParameters::OctetKeyPair(_) => Ok(Algorithm::EdDSA),
        AlgorithmParameters::OctetKey(_) => Err("shared-secret (oct) keys are not accepted".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use serde_json::json;

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    struct Signer(EcdsaKeyPair, ring::rand::SystemRandom);

    impl Signer {
        fn new() -> Signer {
            let rng = ring::rand::SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let kp =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .unwrap();
            Signer(kp, rng)
        }

        fn jwks(&self, kid: &str) -> Value {
            let p = self.0.public_key().as_ref();
            json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": kid,
                             "x": b64(&p[1..33]), "y": b64(&p[33..65])}]})
        }

        fn token(&self, header: Value, claims: Value) -> String {
            let input = format!(
                "{}.{}",
                b64(header.to_string().as_bytes()),
                b64(claims.to_string().as_bytes())
            );
            let sig = self.0.sign(&self.1, input.as_bytes()).unwrap();
            format!("{input}.{}", b64(sig.as_ref()))
        }
    }

    fn far() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600
    }

    fn run(
        auth: &JwtAuth,
        token: Option<&str>,
    ) -> (Result<Option<Value>, Refused>, http::HeaderMap) {
        let mut h = http::HeaderMap::new();
        if let Some(t) = token {
            h.insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        let mut uri: http::Uri = "/v1/chat/completions".parse().unwrap();
        let r = auth.verify(&mut h, &mut uri);
        (r, h)
    }

    #[test]
    fn verifies_es256_checks_claims_and_removes_the_token() {
        let s = Signer::new();
        let auth = JwtAuth::parse(
            &json!({"mode": "strict", "issuer": "https://idp", "audiences": ["gw"],
                    "jwks": s.jwks("k1")}),
            "p",
        )
        .unwrap();
        let hdr = json!({"alg": "ES256", "kid": "k1", "typ": "JWT"});
        let good = s.token(
            hdr.clone(),
            json!({"iss": "https://idp", "aud": "gw", "sub": "alice", "team": "red", "exp": far()}),
        );
        let (r, h) = run(&auth, Some(&good));
        assert_eq!(r.unwrap().unwrap()["team"], "red");
        assert!(h.get("authorization").is_none(), "the token is removed");
        let (r, _) = run(&auth, None);
        assert_eq!(r.unwrap_err(), Refused::Missing);
        let wrong_aud = s.token(
            hdr.clone(),
            json!({"iss": "https://idp", "aud": "other", "exp": far()}),
        );
        assert!(matches!(
            run(&auth, Some(&wrong_aud)).0,
            Err(Refused::Invalid(_))
        ));
        let expired = s.token(
            hdr.clone(),
            json!({"iss": "https://idp", "aud": "gw", "exp": 1000}),
        );
        assert!(matches!(
            run(&auth, Some(&expired)).0,
            Err(Refused::Invalid(_))
        ));
        let no_kid = s.token(json!({"alg": "ES256"}), json!({"iss": "https://idp"}));
        assert_eq!(
            run(&auth, Some(&no_kid)).0.unwrap_err(),
            Refused::MissingKeyId
        );
        let other_kid = s.token(json!({"alg": "ES256", "kid": "k9"}), json!({}));
        assert_eq!(
            run(&auth, Some(&other_kid)).0.unwrap_err(),
            Refused::UnknownKey("k9".into())
        );
        // Signed by another key under the same kid.
        let forged = Signer::new().token(
            hdr,
            json!({"iss": "https://idp", "aud": "gw", "exp": far()}),
        );
        assert!(matches!(
            run(&auth, Some(&forged)).0,
            Err(Refused::Invalid(_))
        ));
        assert_eq!(
            run(&auth, Some("not-a-jwt")).0.unwrap_err(),
            Refused::MalformedHeader
        );
    }

    #[test]
    fn modes() {
        let s = Signer::new();
        let optional = JwtAuth::parse(&json!({"issuer": "i", "jwks": s.jwks("k")}), "p").unwrap();
        assert_eq!(run(&optional, None).0.unwrap(), None);
        assert!(run(&optional, Some("garbage")).0.is_err());
        let permissive = JwtAuth::parse(
            &json!({"mode": "permissive", "issuer": "i", "jwks": s.jwks("k")}),
            "p",
        )
        .unwrap();
        let (r, h) = run(&permissive, Some("garbage"));
        assert_eq!(r.unwrap(), None);
        assert!(h.get("authorization").is_some(), "kept when not verified");
    }

    #[test]
    fn bad_config_names_the_path() {
        let s = Signer::new();
        let e = JwtAuth::parse(&json!({"jwks": s.jwks("k")}), "p").unwrap_err();
        assert_eq!(e.0, "p.issuer");
        let e =
            JwtAuth::parse(&json!({"issuer": "i", "jwks": {"url": "https://x"}}), "p").unwrap_err();
        assert_eq!(e.0, "p.jwks.url");
        let mut no_kid = s.jwks("k");
        no_kid["keys"][0].as_object_mut().unwrap().remove("kid");
        let e = JwtAuth::parse(&json!({"issuer": "i", "jwks": no_kid}), "p").unwrap_err();
        assert_eq!(e.0, "p.jwks.keys[0]");
        let e = JwtAuth::parse(
            &json!({"providers": [{"issuer": "i", "jwks": "{not json"}]}),
            "p",
        )
        .unwrap_err();
        assert_eq!(e.0, "p.providers[0].jwks");
        let e = JwtAuth::parse(
            &json!({"issuer": "i", "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}}),
            "p",
        )
        .unwrap_err();
        assert_eq!(e.0, "p.jwks.keys[0]");
        let e = JwtAuth::parse(
            &json!({"issuer": "i", "jwks": s.jwks("k"), "mode": "lax"}),
            "p",
        )
        .unwrap_err();
        assert_eq!(e.0, "p.mode");
    }
}
