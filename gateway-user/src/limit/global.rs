//! `policies.globalRateLimit` (our extension; agentgateway's `remoteRateLimit` needs an
//! Envoy rate-limit service): the same specs as `localRateLimit`, enforced across every
//! gateway sharing `config.redis`.
//!
//! ```yaml
//! globalRateLimit:
//!   failureMode: failClosed        # (the default, as agentgateway's) or failOpen
//!   limits:
//!   - maxTokens: 100
//!     tokensPerFill: 100
//!     fillInterval: 1m
//!     type: tokens
//!     descriptors: [{key: caller, value: apiKey.id}]
//! ```
//!
//! Each bucket is a Redis hash refilled and charged by one Lua script, so the check and the
//! charge are atomic across nodes and a request costs one round trip for all its specs (the
//! clock is Redis's `TIME`, so nodes' clocks need not agree). Token charges are settled with
//! the real usage after the response, off the request's path. When Redis is down, slow
//! (`config.redis.timeout`) or not yet connected, `failOpen` lets the request through and
//! `failClosed` answers 503; either way the failure is counted and marked on the span.

use std::sync::Arc;

use serde_json::Value;

use super::spec::{self, Kind, Phase, Spec};
use super::{Exceeded, Status};
use crate::ctx::{LlmInfo, RequestLog, Settle};
use crate::store::{Failure, Shared};

/// agentgateway's `failureMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureMode {
    FailOpen,
    FailClosed,
}

impl FailureMode {
    /// Both spellings agentgateway accepts (`failOpen`, `FailOpen`); `default` when absent.
    pub fn parse(
        v: Option<&Value>,
        path: &str,
        default: FailureMode,
    ) -> Result<FailureMode, (String, String)> {
        match v.map(|v| v.as_str()) {
            None => Ok(default),
            Some(Some("failOpen" | "FailOpen")) => Ok(FailureMode::FailOpen),
            Some(Some("failClosed" | "FailClosed")) => Ok(FailureMode::FailClosed),
            Some(_) => Err((
                path.to_owned(),
                format!(
                    "{}: expected `failOpen` or `failClosed`",
                    v.map(Value::to_string).unwrap_or_default()
                ),
            )),
        }
    }
}

/// Token bucket over a Redis hash (`a` = available, `r` = next refill, ms on Redis's clock).
/// ARGV: mode (1 take, 2 adjust), then per key: max, per-fill, interval-ms, n (the units to
/// take, or the correction). Returns `ok, available, ms-to-refill` per key, stopping after the
/// first refusal.
const BUCKET_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mode = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local b = 2 + (i - 1) * 4
  local max, per, iv = tonumber(ARGV[b]), tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  local n = tonumber(ARGV[b + 3])
  local s = redis.call('HMGET', key, 'a', 'r')
  local avail, nr = tonumber(s[1]), tonumber(s[2])
  if avail == nil or nr == nil then
    avail = max
    nr = now + iv
  end
  if now >= nr then
    local steps = math.floor((now - nr) / iv) + 1
    avail = math.min(max, avail + steps * per)
    nr = nr + steps * iv
  end
  local ok = 1
  if mode == 1 then
    if n <= 0 or n > avail then ok = 0 else avail = avail - n end
  else
    avail = math.max(0, math.min(max, avail - n))
  end
  redis.call('HSET', key, 'a', avail, 'r', nr)
  if per > 0 then
    local ttl = (math.ceil((max - avail) / per) + 1) * iv + (nr - now)
    redis.call('PEXPIRE', key, math.min(ttl, 31536000000))
  end
  out[#out + 1] = ok
  out[#out + 1] = avail
  out[#out + 1] = nr - now
  if ok == 0 then return out end
end
return out
";

pub static SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(BUCKET_LUA));

#[derive(Debug)]
pub struct GlobalLimits {
    pub failure_mode: FailureMode,
    specs: Vec<Spec>,
    /// `limits: {conditional: [...]}`: only the first entry that holds applies.
    conditional: bool,
}

/// Why a global charge refused the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Exceeded(Exceeded),
    /// The store failed and `failureMode` is `failClosed`.
    Unavailable(Failure),
}

/// What a global charge took.
#[derive(Debug, Default)]
pub struct GlobalTaken {
    pub status: Option<Status>,
    /// The store failed and `failOpen` let the request through.
    pub failed_open: Option<Failure>,
    settle: Option<GlobalSettle>,
}

impl GlobalLimits {
    /// Parses `{failureMode, limits: [...]}`; errors name the path.
    pub fn parse(v: &Value, path: &str) -> Result<GlobalLimits, (String, String)> {
        let o = v.as_object().ok_or_else(|| {
            (
                path.to_owned(),
                format!("expected `{{limits: [...], failureMode}}`, got {v}"),
            )
        })?;
        if let Some(k) = o
            .keys()
            .find(|k| !matches!(k.as_str(), "limits" | "failureMode"))
        {
            return Err((format!("{path}.{k}"), "unknown field".into()));
        }
        // agentgateway's remoteRateLimit fails closed by default; so does this.
        let failure_mode = FailureMode::parse(
            o.get("failureMode"),
            &format!("{path}.failureMode"),
            FailureMode::FailClosed,
        )?;
        let (specs, conditional) = match o.get("limits") {
            Some(l) => (
                super::parse_list(l, &format!("{path}.limits"))?,
                l.get("conditional").is_some(),
            ),
            None => return Err((format!("{path}.limits"), "required".into())),
        };
        Ok(GlobalLimits {
            failure_mode,
            specs,
            conditional,
        })
    }

    pub fn has(&self, kind: Kind, phase: Phase) -> bool {
        self.specs
            .iter()
            .any(|s| s.kind == kind && s.phase() == phase)
    }

    pub fn references(&self) -> crate::cel::Refs {
        self.specs
            .iter()
            .fold(crate::cel::Refs::default(), |r, s| r.union(s.references()))
    }

    /// The script call that charges this request: one unit to every request bucket charged
    /// in one of `phases`, and `tokens` (when given) to every token bucket. `None` when no
    /// bucket applies.
    pub fn prepare(
        &self,
        prefix: &str,
        phases: &[Phase],
        tokens: Option<u64>,
        log: &RequestLog,
    ) -> Option<Charge> {
        let exec = spec::executor(self.specs.iter(), log);
        let chosen = self.conditional.then(|| {
            self.specs.iter().position(|s| match &s.condition {
                None => true,
                Some(c) => exec.as_ref().is_some_and(|e| e.eval_bool(c)),
            })
        });
        let mut c = Charge {
            keys: Vec::new(),
            args: vec![1],
            estimate: tokens.unwrap_or(0),
            tokens: Vec::new(),
        };
        for (i, s) in self.specs.iter().enumerate() {
            if chosen.is_some_and(|c| c != Some(i)) {
                continue;
            }
            let n = match s.kind {
                Kind::Requests if phases.contains(&s.phase()) => 1,
                Kind::Tokens => match tokens {
                    Some(n) => n,
                    None => continue,
                },
                Kind::Requests => continue,
            };
            let values = if s.descriptors.is_empty() {
                Vec::new()
            } else {
                match exec.as_ref().and_then(|e| s.key(e)) {
                    Some(v) => v,
                    None => continue,
                }
            };
            let mut parts: Vec<&str> = vec![s.id.as_str()];
            parts.extend(values.iter().map(String::as_str));
            c.keys.push(crate::store::key(prefix, "rl", &parts));
            push_params(&mut c.args, s, n);
            c.tokens.push(s.kind == Kind::Tokens);
        }
        (!c.keys.is_empty()).then_some(c)
    }

    /// What the script answered for `charge` (or the store's failure), as the policy decides.
    pub fn finish(
        &self,
        store: &Arc<Shared>,
        charge: Charge,
        result: Result<Vec<i64>, Failure>,
    ) -> Result<GlobalTaken, Refused> {
        let out = match result {
            Ok(v) => v,
            Err(f) => {
                return match self.failure_mode {
                    FailureMode::FailOpen => Ok(GlobalTaken {
                        failed_open: Some(f),
                        ..GlobalTaken::default()
                    }),
                    FailureMode::FailClosed => Err(Refused::Unavailable(f)),
                };
            }
        };
        let mut taken = GlobalTaken::default();
        for (i, c) in out.chunks_exact(3).enumerate() {
            let max = u64::try_from(charge.args[1 + i * 4]).unwrap_or(0);
            let status = Status {
                limit: max,
                remaining: u64::try_from(c[1]).unwrap_or(0),
                reset: u64::try_from(c[2]).unwrap_or(0).div_ceil(1000),
            };
            if c[0] == 0 {
                return Err(Refused::Exceeded(Exceeded(status)));
            }
            if taken.status.is_none_or(|t| status.remaining < t.remaining) {
                taken.status = Some(status);
            }
        }
        if out.len() != charge.keys.len() * 3 {
            // Stopped early without a refusal: nothing this script returns.
            return match self.failure_mode {
                FailureMode::FailOpen => Ok(GlobalTaken {
                    failed_open: Some(Failure::Error),
                    ..GlobalTaken::default()
                }),
                FailureMode::FailClosed => Err(Refused::Unavailable(Failure::Error)),
            };
        }
        if charge.tokens.iter().any(|t| *t) {
            taken.settle = Some(GlobalSettle {
                store: store.clone(),
                charge,
            });
        }
        Ok(taken)
    }

    /// `prepare`, one script call, `finish`.
    pub async fn take(
        &self,
        store: &Arc<Shared>,
        phases: &[Phase],
        tokens: Option<u64>,
        log: &RequestLog,
    ) -> Result<GlobalTaken, Refused> {
        let prefix = store.key_prefix().unwrap_or_default();
        let Some(charge) = self.prepare(&prefix, phases, tokens, log) else {
            return Ok(GlobalTaken::default());
        };
        let r = store
            .run("rate_limit", &SCRIPT, &charge.keys, &charge.args)
            .await;
        self.finish(store, charge, r)
    }
}

/// One request's charge: the buckets' keys and the script's arguments.
#[derive(Debug)]
pub struct Charge {
    pub keys: Vec<String>,
    pub args: Vec<i64>,
    estimate: u64,
    /// Per key: a token bucket (settled later).
    tokens: Vec<bool>,
}

fn push_params(args: &mut Vec<i64>, s: &Spec, n: u64) {
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    args.push(clamp(s.max));
    args.push(clamp(s.per_fill));
    args.push(i64::try_from(s.interval.as_millis().max(1)).unwrap_or(i64::MAX));
    args.push(clamp(n));
}

impl GlobalTaken {
    pub fn settlement(self) -> Option<Arc<dyn Settle>> {
        self.settle.map(|s| Arc::new(s) as Arc<dyn Settle>)
    }
}

/// Settles a global token pre-charge: one script call, spawned off the request's path.
#[derive(Debug)]
struct GlobalSettle {
    store: Arc<Shared>,
    charge: Charge,
}

impl Settle for GlobalSettle {
    fn settle(&self, llm: Option<&LlmInfo>) {
        let delta = super::settle_delta(llm, self.charge.estimate);
        if delta == 0 {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // Only the token buckets, corrected by the difference.
        let mut keys = Vec::new();
        let mut args = vec![2];
        for (i, k) in self.charge.keys.iter().enumerate() {
            if self.charge.tokens[i] {
                keys.push(k.clone());
                args.extend_from_slice(&self.charge.args[1 + i * 4..4 + i * 4]);
                args.push(delta);
            }
        }
        let store = self.store.clone();
        rt.spawn(async move {
            let _: Result<Vec<i64>, _> =
                store.run("rate_limit_settle", &SCRIPT, &keys, &args).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_errors_name_the_path() {
        let p = "policies.globalRateLimit";
        let e =
            GlobalLimits::parse(&json!({"limits": [], "failureMode": "failSoft"}), p).unwrap_err();
        assert_eq!(e.0, "policies.globalRateLimit.failureMode");
        let e = GlobalLimits::parse(&json!({"failureMode": "failOpen"}), p).unwrap_err();
        assert_eq!(e.0, "policies.globalRateLimit.limits");
        let e = GlobalLimits::parse(
            &json!({"limits": [{"maxTokens": 1, "fillInterval": "0s"}]}),
            p,
        )
        .unwrap_err();
        assert_eq!(e.0, "policies.globalRateLimit.limits[0].fillInterval");
        let g = GlobalLimits::parse(
            &json!({"limits": [{"maxTokens": 1, "fillInterval": "1s"}], "failureMode": "failClosed"}),
            p,
        )
        .unwrap();
        assert_eq!(g.failure_mode, FailureMode::FailClosed);
        assert!(g.has(Kind::Requests, Phase::Route));
    }

    #[tokio::test]
    async fn store_failures_follow_the_failure_mode() {
        let failures = prometheus::IntCounterVec::new(
            prometheus::Opts::new("f", "f"),
            &["operation", "reason"],
        )
        .unwrap();
        let store = Shared::new(failures);
        store.configure(Some(&crate::store::RedisConfig {
            url: "redis://127.0.0.1:1".into(),
            timeout: std::time::Duration::from_millis(20),
            key_prefix: "agw:".into(),
        }));
        let log = RequestLog::new("gw".into(), "l".into());
        let spec = json!([{"maxTokens": 1, "fillInterval": "1s"}]);
        let open =
            GlobalLimits::parse(&json!({"limits": spec, "failureMode": "FailOpen"}), "p").unwrap();
        let t = open
            .take(&store, &[Phase::Route], None, &log)
            .await
            .unwrap();
        assert_eq!(t.failed_open, Some(Failure::Unavailable));
        let closed = GlobalLimits::parse(&json!({"limits": spec}), "p").unwrap();
        assert_eq!(closed.failure_mode, FailureMode::FailClosed, "the default");
        let r = closed
            .take(&store, &[Phase::Route], None, &log)
            .await
            .unwrap_err();
        assert_eq!(r, Refused::Unavailable(Failure::Unavailable));
    }
}
