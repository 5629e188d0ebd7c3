//! `policies.basicAuth` (agentgateway's `LocalBasicAuth`): users and passwords from an
//! htpasswd file or inline text.
//!
//! `mode` is `strict` or `optional` (default: credentials are checked when present);
//! `realm` (default `Restricted`) goes in the `WWW-Authenticate: Basic realm="..."` of every
//! 401. Password hashes: bcrypt (`$2y$`, `$2b$`, `$2a$`, via the `bcrypt` crate), Apache MD5
//! (`$apr1$`, the algorithm of apr_md5.c over the `md-5` crate: no maintained crate verifies
//! it) and `{SHA}`. DES `crypt` and plain-text entries are refused at load, naming the line:
//! they are too weak to accept silently. A verified credential is removed before the request
//! goes upstream; the user is `basicAuth.username` in CEL and `basicauth.user` on the span
//! and in the log.

use std::collections::HashMap;

use base64::Engine;
use serde_json::Value;

use super::Location;

type Problem = (String, String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Strict,
    Optional,
}

#[derive(Debug)]
enum Hash {
    Bcrypt(String),
    Apr1 { salt: String, hash: String },
    Sha1([u8; 20]),
}

impl Hash {
    fn parse(h: &str) -> Result<Hash, String> {
        if ["$2y$", "$2b$", "$2a$", "$2x$"]
            .iter()
            .any(|p| h.starts_with(p))
        {
            return Ok(Hash::Bcrypt(h.to_owned()));
        }
        if let Some(rest) = h.strip_prefix("$apr1$") {
            let (salt, hash) = rest
                .split_once('$')
                .ok_or("an $apr1$ hash needs `$apr1$salt$hash`")?;
            return Ok(Hash::Apr1 {
                salt: salt.chars().take(8).collect(),
                hash: hash.to_owned(),
            });
        }
        if let Some(b) = h.strip_prefix("{SHA}") {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| format!("{{SHA}} hash is not base64: {e}"))?;
            return raw
                .try_into()
                .map(Hash::Sha1)
                .map_err(|_| "{SHA} hash is not 20 bytes".into());
        }
        Err("unsupported hash (bcrypt `$2y$`, `$apr1$` or `{SHA}`; crypt and plain text are refused)".into())
    }

    fn verify(&self, password: &str) -> bool {
        match self {
            Hash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            Hash::Apr1 { salt, hash } => {
                let mine = apr1(password.as_bytes(), salt.as_bytes());
                same(mine.as_bytes(), hash.as_bytes())
            }
            Hash::Sha1(want) => {
                let got = ring::digest::digest(
                    &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                    password.as_bytes(),
                );
                same(got.as_ref(), want)
            }
        }
    }
}

/// Compares digests of both sides, so the time taken says nothing about where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    let d = |x: &[u8]| ring::digest::digest(&ring::digest::SHA256, x);
    d(a).as_ref() == d(b).as_ref()
}

pub struct BasicAuth {
    users: HashMap<String, Hash>,
    pub mode: Mode,
    pub realm: String,
    location: Location,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.len())
            .field("mode", &self.mode)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Missing,
    Invalid,
}

impl Refused {
    pub fn message(&self) -> &'static str {
        match self {
            Refused::Missing => {
                "basic authentication failure: no basic authentication credentials found"
            }
            Refused::Invalid => "basic authentication failure: invalid credentials",
        }
    }
}

impl BasicAuth {
    pub fn parse(v: &Value, path: &str) -> Result<BasicAuth, Problem> {
        let o = v
            .as_object()
            .ok_or_else(|| (path.to_owned(), format!("expected a mapping, got {v}")))?;
        if let Some(k) = o.keys().find(|k| {
            !matches!(
                k.as_str(),
                "htpasswd" | "realm" | "mode" | "authorizationLocation"
            )
        }) {
            return Err((format!("{path}.{k}"), "unknown field".into()));
        }
        let hp = format!("{path}.htpasswd");
        let text = match o.get("htpasswd") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Object(f)) if f.get("file").is_some_and(Value::is_string) => {
                let file = f["file"].as_str().unwrap_or_default();
                std::fs::read_to_string(file)
                    .map_err(|e| (format!("{hp}.file"), format!("{file}: {e}")))?
            }
            Some(other) => {
                return Err((
                    hp,
                    format!("expected htpasswd text or `{{file: path}}`, got {other}"),
                ));
            }
            None => return Err((hp, "required".into())),
        };
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("{hp} (line {})", n + 1);
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| (at.clone(), "expected `user:hash`".into()))?;
            let hash = Hash::parse(hash).map_err(|e| (at, format!("user {user:?}: {e}")))?;
            users.insert(user.to_owned(), hash);
        }
        let mode = match o.get("mode").map(|m| m.as_str()) {
            None | Some(Some("optional")) => Mode::Optional,
            Some(Some("strict")) => Mode::Strict,
            Some(_) => {
                return Err((
                    format!("{path}.mode"),
                    format!("{}: expected `strict` or `optional`", o["mode"]),
                ));
            }
        };
        let realm = match o.get("realm") {
            None | Some(Value::Null) => "Restricted".to_owned(),
            Some(Value::String(r)) if !r.contains('"') && !r.chars().any(char::is_control) => {
                r.clone()
            }
            Some(other) => {
                return Err((
                    format!("{path}.realm"),
                    format!("{other}: expected text without quotes"),
                ));
            }
        };
        let location = match o.get("authorizationLocation") {
            None => Location::Header {
                name: http::header::AUTHORIZATION,
                prefix: Some("Basic ".into()),
            },
            Some(l) => super::location(l, &format!("{path}.authorizationLocation"))?,
        };
        Ok(BasicAuth {
            users,
            mode,
            realm,
            location,
        })
    }

    /// `WWW-Authenticate` for a 401.
    pub fn challenge(&self) -> String {
        format!("Basic realm=\"{}\"", self.realm)
    }

    /// Checks the request's credentials; on success removes them and returns the user.
    pub fn verify(
        &self,
        headers: &mut http::HeaderMap,
        uri: &mut http::Uri,
    ) -> Result<Option<String>, Refused> {
        let Some(cred) = self.location.credential(headers, uri) else {
            return match self.mode {
                Mode::Strict => Err(Refused::Missing),
                Mode::Optional => Ok(None),
            };
        };
        let (user, password) = base64::engine::general_purpose::STANDARD
            .decode(cred.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .and_then(|d| d.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
            .ok_or(Refused::Invalid)?;
        match self.users.get(&user) {
            Some(h) if h.verify(&password) => {
                self.location.remove(headers, uri);
                Ok(Some(user))
            }
            _ => Err(Refused::Invalid),
        }
    }
}

/// Apache's MD5 crypt (`$apr1$`), as apr_md5.c computes it: the 22-character hash part.
fn apr1(pw: &[u8], salt: &[u8]) -> String {
    use md5::{Digest, Md5};
    const MAGIC: &[u8] = b"$apr1$";
    let mut ctx = Md5::new();
    ctx.update(pw);
    ctx.update(MAGIC);
    ctx.update(salt);
    let alt: [u8; 16] = Md5::new()
        .chain_update(pw)
        .chain_update(salt)
        .chain_update(pw)
        .finalize()
        .into();
    let mut left = pw.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alt[..n]);
        left -= n;
    }
    let mut i = pw.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&pw[..1]);
        }
        i >>= 1;
    }
    let mut fin: [u8; 16] = ctx.finalize().into();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(pw);
        } else {
            c.update(fin);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(pw);
        }
        if round & 1 == 1 {
            c.update(fin);
        } else {
            c.update(pw);
        }
        fin = c.finalize().into();
    }
    const ITOA64: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(22);
    let mut put = |mut v: u32, n: usize| {
        for _ in 0..n {
            out.push(ITOA64[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    let f = |i: usize| u32::from(fin[i]);
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put((f(a) << 16) | (f(b) << 8) | f(c), 4);
    }
    put(f(11), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Made with `openssl passwd -apr1` and `htpasswd -nbB` (bcrypt, cost 5).
    const FILE: &str = "\
# comment
alice:$apr1$lZL6V/ci$eIMz/iKDkbtys/uU7LEK00
long:$apr1$7/CTEZag$qsdZfeDUtUScUUqFFRHVu/
sha:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=
bob:$2y$05$nC6nErr9XZJuMJ57WyCob.EuZEjylDt2KaHfbfOtyb.EgL1I2jCVa
";

    fn basic(user: &str, pw: &str) -> String {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        format!("Basic {b}")
    }

    fn run(a: &BasicAuth, auth: Option<String>) -> Result<Option<String>, Refused> {
        let mut h = http::HeaderMap::new();
        if let Some(v) = auth {
            h.insert("authorization", v.parse().unwrap());
        }
        let mut uri: http::Uri = "/".parse().unwrap();
        let r = a.verify(&mut h, &mut uri);
        if matches!(r, Ok(Some(_))) {
            assert!(h.get("authorization").is_none());
        }
        r
    }

    #[test]
    fn apr1_matches_openssl() {
        assert_eq!(apr1(b"password", b"lZL6V/ci"), "eIMz/iKDkbtys/uU7LEK00");
        assert_eq!(
            apr1(
                "pässwörd with spaces and a long tail 0123456789".as_bytes(),
                b"7/CTEZag"
            ),
            "qsdZfeDUtUScUUqFFRHVu/"
        );
    }

    #[test]
    fn every_hash_kind_and_both_modes() {
        let a = BasicAuth::parse(&json!({"htpasswd": FILE, "mode": "strict"}), "p").unwrap();
        assert_eq!(
            run(&a, Some(basic("alice", "password"))).unwrap().unwrap(),
            "alice"
        );
        assert_eq!(
            run(&a, Some(basic("sha", "password"))).unwrap().unwrap(),
            "sha"
        );
        assert_eq!(
            run(&a, Some(basic("bob", "password"))).unwrap().unwrap(),
            "bob"
        );
        assert_eq!(
            run(
                &a,
                Some(basic(
                    "long",
                    "pässwörd with spaces and a long tail 0123456789"
                ))
            )
            .unwrap()
            .unwrap(),
            "long"
        );
        assert_eq!(
            run(&a, Some(basic("alice", "wrong"))),
            Err(Refused::Invalid)
        );
        assert_eq!(
            run(&a, Some(basic("nobody", "password"))),
            Err(Refused::Invalid)
        );
        assert_eq!(run(&a, Some("Basic !!!".into())), Err(Refused::Invalid));
        assert_eq!(run(&a, None), Err(Refused::Missing));
        assert_eq!(a.challenge(), "Basic realm=\"Restricted\"");
        let o = BasicAuth::parse(&json!({"htpasswd": FILE, "realm": "llm"}), "p").unwrap();
        assert_eq!(run(&o, None), Ok(None));
        assert_eq!(o.challenge(), "Basic realm=\"llm\"");
    }

    #[test]
    fn weak_or_broken_entries_are_load_errors() {
        let e = BasicAuth::parse(&json!({"htpasswd": "u:plaintext"}), "p").unwrap_err();
        assert_eq!(e.0, "p.htpasswd (line 1)");
        let e = BasicAuth::parse(
            &json!({"htpasswd": "ok:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\nnocolon"}),
            "p",
        )
        .unwrap_err();
        assert_eq!(e.0, "p.htpasswd (line 2)");
        let e = BasicAuth::parse(&json!({"htpasswd": {"file": "/nonexistent"}}), "p").unwrap_err();
        assert_eq!(e.0, "p.htpasswd.file");
        let e = BasicAuth::parse(&json!({"htpasswd": "", "mode": "permissive"}), "p").unwrap_err();
        assert_eq!(e.0, "p.mode");
    }
}
