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

pub mod global;
pub mod spec;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::ctx::{LlmInfo, RequestLog, Settle};
pub use spec::{Kind, Phase, Spec};

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

    /// Full after refilling: an idle bucket that can be dropped and made again.
    fn is_full(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.refill(&mut s, Instant::now());
        s.available >= self.max
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

/// Buckets per spec: one shared bucket, or one per descriptor value.
#[derive(Debug)]
struct Local {
    spec: Spec,
    shared: Option<Arc<Bucket>>,
    keyed: Mutex<HashMap<Vec<String>, Arc<Bucket>>>,
}

/// At most this many keyed buckets per spec; past it, full (idle) buckets are dropped, then
/// the oldest-looking ones, so a flood of new callers cannot grow memory without bound.
const MAX_KEYS: usize = 100_000;

impl Local {
    fn bucket(&self, key: Option<Vec<String>>) -> Option<Arc<Bucket>> {
        if let Some(b) = &self.shared {
            return Some(b.clone());
        }
        let key = key?;
        let mut m = self.keyed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = m.get(&key) {
            return Some(b.clone());
        }
        if m.len() >= MAX_KEYS {
            m.retain(|_, b| !b.is_full());
            if m.len() >= MAX_KEYS {
                let drop: Vec<_> = m.keys().take(MAX_KEYS / 10).cloned().collect();
                for k in drop {
                    m.remove(&k);
                }
            }
        }
        let s = &self.spec;
        let b = Arc::new(Bucket::new(s.kind, s.max, s.per_fill, s.interval));
        m.insert(key, b.clone());
        Some(b)
    }
}

/// A route policy's buckets (`localRateLimit`).
#[derive(Debug, Default)]
pub struct LocalLimits {
    specs: Vec<Local>,
    /// agentgateway's `conditional` form: only the first entry whose `condition` holds (or
    /// the final fallback) applies.
    conditional: bool,
}

/// Over the limit: the refusing bucket's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exceeded(pub Status);

/// What a charge took: the most constrained bucket's state and, for token buckets, the
/// buckets to settle.
#[derive(Debug, Default)]
pub struct Taken {
    pub status: Option<Status>,
    buckets: Vec<Arc<Bucket>>,
}

impl LocalLimits {
    /// Parses `localRateLimit` as written (a list of specs). Errors name the path below `path`.
    pub fn parse(v: &Value, path: &str) -> Result<LocalLimits, (String, String)> {
        let conditional = matches!(v, Value::Object(o) if o.contains_key("conditional"));
        let specs = parse_list(v, path)?
            .into_iter()
            .map(|spec| Local {
                shared: spec.descriptors.is_empty().then(|| {
                    Arc::new(Bucket::new(
                        spec.kind,
                        spec.max,
                        spec.per_fill,
                        spec.interval,
                    ))
                }),
                keyed: Mutex::new(HashMap::new()),
                spec,
            })
            .collect();
        Ok(LocalLimits { specs, conditional })
    }

    /// Whether any spec of `kind` is charged in `phase`.
    pub fn has(&self, kind: Kind, phase: Phase) -> bool {
        self.specs
            .iter()
            .any(|l| l.spec.kind == kind && l.spec.phase() == phase)
    }

    /// What the specs' descriptors read.
    pub fn references(&self) -> crate::cel::Refs {
        self.specs.iter().fold(crate::cel::Refs::default(), |r, l| {
            r.union(l.spec.references())
        })
    }

    /// Charges every spec of `kind` charged in `phase` `n` units, in order; the first refusal
    /// stops (earlier buckets stay charged, as in agentgateway).
    pub fn take(
        &self,
        kind: Kind,
        phase: Phase,
        n: u64,
        log: &RequestLog,
    ) -> Result<Taken, Exceeded> {
        let mine = || {
            self.specs
                .iter()
                .filter(move |l| l.spec.kind == kind && l.spec.phase() == phase)
        };
        let exec = spec::executor(self.specs.iter().map(|l| &l.spec), log);
        let chosen = self.conditional.then(|| {
            self.specs.iter().position(|l| match &l.spec.condition {
                None => true,
                Some(c) => exec.as_ref().is_some_and(|e| e.eval_bool(c)),
            })
        });
        let mut taken = Taken::default();
        for l in mine() {
            if let Some(chosen) = chosen
                && chosen.is_none_or(|i| !std::ptr::eq(&self.specs[i], l))
            {
                continue;
            }
            let key = exec.as_ref().and_then(|e| l.spec.key(e));
            let Some(b) = l.bucket(key) else { continue };
            let s = b.take(n).map_err(Exceeded)?;
            if taken.status.is_none_or(|t| s.remaining < t.remaining) {
                taken.status = Some(s);
            }
            if kind == Kind::Tokens {
                taken.buckets.push(b);
            }
        }
        Ok(taken)
    }
}

impl Taken {
    /// Settles a token pre-charge of `estimate` with the real usage, when there is one.
    pub fn settlement(self, estimate: u64) -> Option<Arc<dyn Settle>> {
        (!self.buckets.is_empty()).then(|| {
            Arc::new(TokenSettle {
                buckets: self.buckets,
                estimate,
            }) as Arc<dyn Settle>
        })
    }
}

/// Parses a list of specs at `path`.
pub(crate) fn parse_list(v: &Value, path: &str) -> Result<Vec<Spec>, (String, String)> {
    let (list, conditional, at) = match v {
        Value::Array(a) => (a, false, path.to_owned()),
        Value::Object(o) if o.contains_key("conditional") => {
            if let Some(k) = o.keys().find(|k| *k != "conditional") {
                return Err((format!("{path}.{k}"), "unknown field".into()));
            }
            let at = format!("{path}.conditional");
            match &o["conditional"] {
                Value::Array(a) => (a, true, at),
                other => return Err((at, format!("expected a list of limits, got {other}"))),
            }
        }
        other => {
            return Err((
                path.into(),
                format!("expected a list of limits, got {other}"),
            ));
        }
    };
    let mut specs = list
        .iter()
        .enumerate()
        .map(|(i, spec)| Spec::parse_with(spec, &format!("{at}[{i}]"), conditional))
        .collect::<Result<Vec<_>, _>>()?;
    if conditional {
        if let Some(i) = specs
            .iter()
            .position(|s| s.condition.is_none())
            .filter(|i| *i + 1 != specs.len())
        {
            return Err((
                format!("{at}[{i}]"),
                "an entry without `condition` is the fallback and must be the last".into(),
            ));
        }
        if specs.iter().any(|s| s.references().llm) {
            for s in &mut specs {
                s.force_llm = true;
            }
        }
    }
    Ok(specs)
}

/// Settles a token pre-charge with the real usage.
#[derive(Debug)]
struct TokenSettle {
    buckets: Vec<Arc<Bucket>>,
    estimate: u64,
}

impl Settle for TokenSettle {
    fn settle(&self, llm: Option<&LlmInfo>) {
        let delta = settle_delta(llm, self.estimate);
        for b in &self.buckets {
            b.adjust(delta);
        }
    }
}

/// Real usage minus the estimate charged up front.
pub(crate) fn settle_delta(llm: Option<&LlmInfo>, estimate: u64) -> i64 {
    let used = llm.map_or(0, |l| {
        l.input_tokens
            .unwrap_or(0)
            .saturating_add(l.output_tokens.unwrap_or(0))
    });
    i64::try_from(used).unwrap_or(i64::MAX) - i64::try_from(estimate).unwrap_or(i64::MAX)
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

    fn log() -> RequestLog {
        RequestLog::new("gw".into(), "l".into())
    }

    #[test]
    fn list_parses_and_splits_by_phase() {
        let l = LocalLimits::parse(
            &json!([{"maxTokens": 5, "tokensPerFill": 1, "fillInterval": "1s"},
                    {"maxTokens": 100, "tokensPerFill": 100, "fillInterval": "1m", "type": "tokens"}]),
            "p",
        )
        .unwrap();
        assert!(l.has(Kind::Requests, Phase::Route) && l.has(Kind::Tokens, Phase::Llm));
        assert!(!l.has(Kind::Requests, Phase::Llm));
        let e = LocalLimits::parse(
            &json!({"conditional": [{"maxTokens": 1, "fillInterval": "1s"},
                                    {"condition": "true", "maxTokens": 1, "fillInterval": "1s"}]}),
            "p",
        )
        .unwrap_err();
        assert_eq!(e.0, "p.conditional[0]");
        let e = LocalLimits::parse(
            &json!([{"condition": "true", "maxTokens": 1, "fillInterval": "1s"}]),
            "p",
        )
        .unwrap_err();
        assert_eq!(
            e.0, "p[0].condition",
            "only the conditional form has conditions"
        );
        let e = LocalLimits::parse(&json!([{"maxTokens": 1}]), "p").unwrap_err();
        assert_eq!(e.0, "p[0].fillInterval");
    }

    #[test]
    fn token_charges_settle_with_real_usage() {
        let l = LocalLimits::parse(
            &json!([{"maxTokens": 100, "tokensPerFill": 1, "fillInterval": "1h", "type": "tokens"}]),
            "p",
        )
        .unwrap();
        let t = l.take(Kind::Tokens, Phase::Llm, 10, &log()).unwrap();
        assert_eq!(t.status.unwrap().remaining, 90);
        let usage = LlmInfo {
            input_tokens: Some(30),
            output_tokens: Some(20),
            ..LlmInfo::default()
        };
        t.settlement(10).unwrap().settle(Some(&usage));
        // 50 used in all: 40 more than the estimate.
        let t = l.take(Kind::Tokens, Phase::Llm, 1, &log()).unwrap();
        assert_eq!(t.status.unwrap().remaining, 49);
        assert!(
            l.take(Kind::Requests, Phase::Route, 1, &log())
                .unwrap()
                .status
                .is_none(),
            "no request buckets"
        );
    }

    #[test]
    fn conditional_form_applies_the_first_entry_that_holds() {
        let l = LocalLimits::parse(
            &json!({"conditional": [
                {"condition": "request.path.startsWith('/big')", "maxTokens": 3, "tokensPerFill": 1, "fillInterval": "1h"},
                {"maxTokens": 1, "tokensPerFill": 1, "fillInterval": "1h"}]}),
            "p",
        )
        .unwrap();
        let at = |path: &str| {
            let mut g = log();
            g.path = path.into();
            g
        };
        for _ in 0..3 {
            assert_eq!(
                l.take(Kind::Requests, Phase::Route, 1, &at("/big"))
                    .unwrap()
                    .status
                    .unwrap()
                    .limit,
                3
            );
        }
        assert!(
            l.take(Kind::Requests, Phase::Route, 1, &at("/big"))
                .is_err()
        );
        // Everything else falls back to the last entry, which has its own bucket.
        assert!(
            l.take(Kind::Requests, Phase::Route, 1, &at("/small"))
                .is_ok()
        );
        assert!(
            l.take(Kind::Requests, Phase::Route, 1, &at("/small"))
                .is_err()
        );
    }

    #[test]
    fn descriptors_give_each_caller_a_bucket() {
        let l = LocalLimits::parse(
            &json!([{"maxTokens": 1, "tokensPerFill": 1, "fillInterval": "1h",
                     "descriptors": [{"key": "team", "value": "request.headers['x-team']"}]}]),
            "p",
        )
        .unwrap();
        let with = |team: &str| {
            let mut g = log();
            g.request_headers = vec![("x-team".into(), team.into())];
            g
        };
        assert!(
            l.take(Kind::Requests, Phase::Route, 1, &with("red"))
                .is_ok()
        );
        assert!(
            l.take(Kind::Requests, Phase::Route, 1, &with("red"))
                .is_err()
        );
        assert!(
            l.take(Kind::Requests, Phase::Route, 1, &with("blue"))
                .is_ok(),
            "another caller, another bucket"
        );
        let t = l.take(Kind::Requests, Phase::Route, 1, &log()).unwrap();
        assert!(t.status.is_none(), "no header: the limit does not apply");
    }
}
