//! `policies.localRateLimit` (agentgateway's `RateLimitSpec[]`): token buckets per route
//! policy, counting requests or LLM tokens.
//!
//! Each spec is one bucket, shared by every request the policy applies to, created full when
//! the config loads; it gains `tokensPerFill` every `fillInterval` (whole steps, refilled
//! lazily on access), up to `maxTokens`. A `requests` bucket takes one per request. A
//! `tokens` bucket is charged an estimate of the prompt before the request goes upstream
//! (about four bytes of request body per token) and settled with the real input and output
//! tokens when the response or stream ends; it never goes below zero. Over the limit, the
//! proxy answers 429 in the client's API shape with `x-ratelimit-limit`, `-remaining` and
//! `-reset` (seconds until the next refill); allowed responses carry the same headers for the
//! most constrained bucket.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::ctx::Settle;

/// What a bucket counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Requests,
    Tokens,
}

/// A bucket's state as the rate-limit headers report it.
pub type Status = crate::ctx::RateLimitStatus;

#[derive(Debug)]
struct State {
    available: u64,
    next_refill: Instant,
}

#[derive(Debug)]
pub struct Bucket {
    pub kind: Kind,
    pub max: u64,
    pub per_fill: u64,
    pub interval: Duration,
    state: Mutex<State>,
}

impl Bucket {
    pub fn new(kind: Kind, max: u64, per_fill: u64, interval: Duration) -> Bucket {
        Bucket {
            kind,
            max,
            per_fill,
            interval,
            state: Mutex::new(State {
                available: max,
                next_refill: Instant::now() + interval,
            }),
        }
    }

    fn refill(&self, s: &mut State, now: Instant) {
        if now >= s.next_refill {
            let steps = (now - s.next_refill).as_nanos() / self.interval.as_nanos().max(1) + 1;
            let add = u64::try_from(steps)
                .unwrap_or(u64::MAX)
                .saturating_mul(self.per_fill);
            s.available = s.available.saturating_add(add).min(self.max);
            let skip = self
                .interval
                .saturating_mul(u32::try_from(steps).unwrap_or(u32::MAX));
            s.next_refill += skip;
        }
    }

    fn status(&self, s: &State, now: Instant) -> Status {
        Status {
            limit: self.max,
            remaining: s.available,
            reset: s.next_refill.saturating_duration_since(now).as_secs(),
        }
    }

    /// Takes `n` (all or nothing). `Err` carries the state at refusal.
    pub fn take(&self, n: u64) -> Result<Status, Status> {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.refill(&mut s, now);
        if n == 0 || n > s.available {
            return Err(self.status(&s, now));
        }
        s.available -= n;
        Ok(self.status(&s, now))
    }

    /// Corrects a charge: `delta > 0` takes more (stopping at zero), `< 0` gives back (up to
    /// the bucket's size).
    pub fn adjust(&self, delta: i64) {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.refill(&mut s, now);
        if delta >= 0 {
            s.available = s.available.saturating_sub(delta as u64);
        } else {
            s.available = s
                .available
                .saturating_add(delta.unsigned_abs())
                .min(self.max);
        }
    }
}

/// A route policy's buckets.
#[derive(Debug, Default)]
pub struct LocalLimits {
    pub buckets: Vec<Arc<Bucket>>,
}

/// Over the limit: the refusing bucket's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exceeded(pub Status);

impl LocalLimits {
    /// Parses `localRateLimit` as written (a list of specs). Errors name the path below `path`.
    pub fn parse(v: &Value, path: &str) -> Result<LocalLimits, (String, String)> {
        let list = match v {
            Value::Array(a) => a,
            Value::Object(o) if o.contains_key("conditional") => {
                return Err((
                    format!("{path}.conditional"),
                    "the conditional form is not supported yet; use a list of limits".into(),
                ));
            }
            other => {
                return Err((
                    path.into(),
                    format!("expected a list of limits, got {other}"),
                ));
            }
        };
        let mut buckets = Vec::new();
        for (i, spec) in list.iter().enumerate() {
            let p = format!("{path}[{i}]");
            let o = spec
                .as_object()
                .ok_or_else(|| (p.clone(), format!("expected a mapping, got {spec}")))?;
            let num = |k: &str| -> Result<u64, (String, String)> {
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
                !matches!(
                    k.as_str(),
                    "maxTokens" | "tokensPerFill" | "fillInterval" | "type"
                )
            }) {
                return Err((format!("{p}.{k}"), "unknown field".into()));
            }
            buckets.push(Arc::new(Bucket::new(kind, max, per_fill, interval)));
        }
        Ok(LocalLimits { buckets })
    }

    pub fn has(&self, kind: Kind) -> bool {
        self.buckets.iter().any(|b| b.kind == kind)
    }

    /// Charges every bucket of `kind` `n` units, in order; the first refusal stops (earlier
    /// buckets stay charged, as in agentgateway). `Ok` has the most constrained bucket.
    pub fn take(&self, kind: Kind, n: u64) -> Result<Option<Status>, Exceeded> {
        let mut tightest: Option<Status> = None;
        for b in self.buckets.iter().filter(|b| b.kind == kind) {
            let s = b.take(n).map_err(Exceeded)?;
            if tightest.is_none_or(|t| s.remaining < t.remaining) {
                tightest = Some(s);
            }
        }
        Ok(tightest)
    }

    /// The `tokens` buckets, to settle once usage is known.
    pub fn token_settlement(&self, estimate: u64) -> Option<Arc<dyn Settle>> {
        let buckets: Vec<Arc<Bucket>> = self
            .buckets
            .iter()
            .filter(|b| b.kind == Kind::Tokens)
            .cloned()
            .collect();
        (!buckets.is_empty())
            .then(|| Arc::new(TokenSettle { buckets, estimate }) as Arc<dyn Settle>)
    }
}

/// Settles a token pre-charge with the real usage.
#[derive(Debug)]
struct TokenSettle {
    buckets: Vec<Arc<Bucket>>,
    estimate: u64,
}

impl Settle for TokenSettle {
    fn settle(&self, input: u64, output: u64) {
        let used = input.saturating_add(output);
        let delta = i64::try_from(used).unwrap_or(i64::MAX)
            - i64::try_from(self.estimate).unwrap_or(i64::MAX);
        for b in &self.buckets {
            b.adjust(delta);
        }
    }
}

/// Tokens a request body is charged up front: about four bytes per token, at least one.
pub fn estimate_tokens(body_len: usize) -> u64 {
    (body_len as u64).div_ceil(4).max(1)
}

/// The three headers for `s`.
pub fn headers(s: &Status, h: &mut http::HeaderMap) {
    for (name, v) in [
        ("x-ratelimit-limit", s.limit),
        ("x-ratelimit-remaining", s.remaining),
        ("x-ratelimit-reset", s.reset),
    ] {
        h.insert(
            http::HeaderName::from_static(name),
            http::HeaderValue::from(v),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bucket_starts_full_refills_in_steps_and_refuses_all_or_nothing() {
        let b = Bucket::new(Kind::Requests, 2, 1, Duration::from_millis(50));
        assert_eq!(b.take(1).unwrap().remaining, 1);
        assert_eq!(b.take(1).unwrap().remaining, 0);
        let e = b.take(1).unwrap_err();
        assert_eq!((e.limit, e.remaining), (2, 0));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.take(1).unwrap().remaining, 0);
        assert!(b.take(3).is_err(), "more than the bucket holds");
        b.adjust(-5);
        assert_eq!(
            b.take(2).unwrap().remaining,
            0,
            "refunds stop at the bucket size"
        );
        b.adjust(10);
        assert!(b.take(1).is_err(), "never below zero");
    }

    #[test]
    fn parse_errors_name_the_path() {
        let p = "policies.localRateLimit";
        let e =
            LocalLimits::parse(&json!([{"maxTokens": 1, "fillInterval": "0s"}]), p).unwrap_err();
        assert_eq!(e.0, "policies.localRateLimit[0].fillInterval");
        let e = LocalLimits::parse(
            &json!([{"maxTokens": 1, "tokensPerFill": 2, "fillInterval": "1s"}]),
            p,
        )
        .unwrap_err();
        assert_eq!(e.0, "policies.localRateLimit[0].maxTokens");
        let e = LocalLimits::parse(
            &json!([{"maxTokens": 1, "fillInterval": "1s", "type": "bytes"}]),
            p,
        )
        .unwrap_err();
        assert_eq!(e.0, "policies.localRateLimit[0].type");
        let e =
            LocalLimits::parse(&json!([{"maxTokens": "x", "fillInterval": "1s"}]), p).unwrap_err();
        assert_eq!(e.0, "policies.localRateLimit[0].maxTokens");
        let l = LocalLimits::parse(
            &json!([{"maxTokens": 5, "tokensPerFill": 1, "fillInterval": "1s"},
                    {"maxTokens": 100, "tokensPerFill": 100, "fillInterval": "1m", "type": "tokens"}]),
            p,
        )
        .unwrap();
        assert!(l.has(Kind::Requests) && l.has(Kind::Tokens));
    }

    #[test]
    fn token_charges_settle_with_real_usage() {
        let l = LocalLimits::parse(
            &json!([{"maxTokens": 100, "tokensPerFill": 1, "fillInterval": "1h", "type": "tokens"}]),
            "p",
        )
        .unwrap();
        assert_eq!(l.take(Kind::Tokens, 10).unwrap().unwrap().remaining, 90);
        l.token_settlement(10).unwrap().settle(30, 20);
        // 50 used in all: 40 more than the estimate.
        assert_eq!(l.take(Kind::Tokens, 1).unwrap().unwrap().remaining, 49);
        assert!(
            l.take(Kind::Requests, 1).unwrap().is_none(),
            "no request buckets"
        );
    }
}
