//! The shared store behind global rate limits and budgets: Redis (`config.redis`, our
//! extension; agentgateway OSS has no shared limit store).
//!
//! One [`Shared`] lives for the process. A config load points it at a URL; the connection is
//! made in the background and kept by redis-rs's `ConnectionManager` (which reconnects after
//! an error), so an unreachable Redis never stops start-up or a reload: until it connects,
//! every call fails at once and the policy's `failureMode` decides. Every call is bounded by
//! `timeout` (a slow Redis is a failure, never a hung request) and every failure is counted in
//! `agentgateway_redis_failures_total{operation, reason}`.
//!
//! Work is done by Lua scripts (`EVALSHA`, loaded on first use): each is atomic in Redis, so
//! two gateways racing for the last unit of a limit cannot both win, and a request needs one
//! round trip for all the keys it touches.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::ConnectionManager;
use serde_json::Value;

/// `config.redis`, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` or `rediss://` (the password is never logged).
    pub url: String,
    /// Bound on one call, connection included (default 100ms).
    pub timeout: Duration,
    /// Prefix of every key the gateway writes (default `agw:`).
    pub key_prefix: String,
}

impl RedisConfig {
    /// Parses `config.redis` (`{url, timeout, keyPrefix}`); errors name the path.
    pub fn parse(v: &Value, path: &str) -> Result<RedisConfig, (String, String)> {
        let o = v
            .as_object()
            .ok_or_else(|| (path.to_owned(), format!("expected a mapping, got {v}")))?;
        if let Some(k) = o
            .keys()
            .find(|k| !matches!(k.as_str(), "url" | "timeout" | "keyPrefix"))
        {
            return Err((format!("{path}.{k}"), "unknown field".into()));
        }
        let url = match o.get("url") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err((
                    format!("{path}.url"),
                    format!("expected a redis:// URL, got {other}"),
                ));
            }
            None => return Err((format!("{path}.url"), "required".into())),
        };
        if let Err(e) = redis::Client::open(url.as_str()) {
            return Err((format!("{path}.url"), format!("{}: {e}", redact_url(&url))));
        }
        let timeout = match o.get("timeout") {
            None => Duration::from_millis(100),
            Some(Value::String(s)) => {
                let d =
                    crate::time::parse_duration(s).map_err(|e| (format!("{path}.timeout"), e))?;
                if d.is_zero() {
                    return Err((format!("{path}.timeout"), "must be longer than zero".into()));
                }
                d
            }
            Some(other) => {
                return Err((
                    format!("{path}.timeout"),
                    format!("expected a duration such as \"100ms\", got {other}"),
                ));
            }
        };
        let key_prefix = match o.get("keyPrefix") {
            None => "agw:".to_owned(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err((
                    format!("{path}.keyPrefix"),
                    format!("expected a string, got {other}"),
                ));
            }
        };
        Ok(RedisConfig {
            url,
            timeout,
            key_prefix,
        })
    }
}

/// The URL with any password replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:<redacted>{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Why a call failed (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No Redis configured for a policy that needs one (refused at load; kept for safety).
    NotConfigured,
    /// Not connected (yet, or after losing the connection).
    Unavailable,
    /// The call took longer than `timeout`.
    Timeout,
    /// Redis answered with an error, or with something the script never returns.
    Error,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::NotConfigured => "not_configured",
            Failure::Unavailable => "unavailable",
            Failure::Timeout => "timeout",
            Failure::Error => "error",
        }
    }
}

struct Conn {
    config: RedisConfig,
    /// Set once the background connect succeeds.
    manager: ArcSwapOption<ConnectionManager>,
}

/// The process's Redis handle.
pub struct Shared {
    conn: ArcSwapOption<Conn>,
    /// Serialises `configure` (loads and reloads).
    configuring: Mutex<()>,
    failures: prometheus::IntCounterVec,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    /// `failures` is `agentgateway_redis_failures_total{operation, reason}`.
    pub fn new(failures: prometheus::IntCounterVec) -> Arc<Shared> {
        Arc::new(Shared {
            conn: ArcSwapOption::empty(),
            configuring: Mutex::new(()),
            failures,
        })
    }

    /// Points the store at `cfg` (a reload with the same settings keeps the connection).
    /// Must run inside the tokio runtime when `cfg` is set: the connection is made in the
    /// background.
    pub fn configure(&self, cfg: Option<&RedisConfig>) {
        let _g = self.configuring.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.conn.load_full();
        if current.as_ref().map(|c| &c.config) == cfg {
            return;
        }
        let Some(cfg) = cfg else {
            self.conn.store(None);
            return;
        };
        let conn = Arc::new(Conn {
            config: cfg.clone(),
            manager: ArcSwapOption::empty(),
        });
        self.conn.store(Some(conn.clone()));
        let weak = Arc::downgrade(&conn);
        let shown = redact_url(&cfg.url);
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        tokio::spawn(async move {
            let mut warned = false;
            loop {
                let Some(conn) = weak.upgrade() else { return };
                let client = match redis::Client::open(conn.config.url.as_str()) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(target: "redis", url = %shown, error = %e, "redis: bad URL");
                        return;
                    }
                };
                let mcfg = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(conn.config.timeout.max(Duration::from_secs(1))))
                    .set_response_timeout(Some(conn.config.timeout))
                    .set_number_of_retries(1);
                match ConnectionManager::new_with_config(client, mcfg).await {
                    Ok(m) => {
                        conn.manager.store(Some(Arc::new(m)));
                        tracing::info!(target: "redis", url = %shown, "redis: connected");
                        return;
                    }
                    Err(e) => {
                        if !warned {
                            tracing::warn!(target: "redis", url = %shown, error = %e,
                                "redis: unreachable; shared limits and budgets apply their \
                                 failureMode until it connects (retrying every second)");
                            warned = true;
                        }
                    }
                }
                drop(conn);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    pub fn configured(&self) -> bool {
        self.conn.load().is_some()
    }

    /// The key prefix (`config.redis.keyPrefix`), when configured.
    pub fn key_prefix(&self) -> Option<String> {
        self.conn
            .load()
            .as_ref()
            .map(|c| c.config.key_prefix.clone())
    }

    /// Runs `script` once over `keys` and `args` (a batch of one), within the timeout. A
    /// failure is counted under `operation` before it is returned.
    pub async fn run(
        &self,
        operation: &'static str,
        script: &redis::Script,
        keys: &[String],
        args: &[i64],
    ) -> Result<Vec<i64>, Failure> {
        let call = Call { script, keys, args };
        let mut out = self.run_batch(operation, &[call]).await?;
        out.pop().ok_or(Failure::Error)
    }

    /// Runs several scripts in one round trip (a pipeline); each answers a list of integers.
    /// A script Redis does not know yet (a restarted server) is loaded and the batch retried
    /// once. A failure is counted under `operation` before it is returned.
    pub async fn run_batch(
        &self,
        operation: &'static str,
        calls: &[Call<'_>],
    ) -> Result<Vec<Vec<i64>>, Failure> {
        let r = self.try_batch(calls).await;
        if let Err(f) = r.as_ref() {
            self.failures
                .with_label_values(&[operation, f.as_str()])
                .inc();
        }
        r
    }

    async fn try_batch(&self, calls: &[Call<'_>]) -> Result<Vec<Vec<i64>>, Failure> {
        let conn = self.conn.load_full().ok_or(Failure::NotConfigured)?;
        let manager = conn.manager.load_full().ok_or(Failure::Unavailable)?;
        let mut m = (*manager).clone();
        let invocations: Vec<redis::ScriptInvocation<'_>> = calls
            .iter()
            .map(|c| {
                let mut inv = c.script.prepare_invoke();
                for k in c.keys {
                    inv.key(k);
                }
                for a in c.args {
                    inv.arg(*a);
                }
                inv
            })
            .collect();
        let mut pipe = redis::pipe();
        for inv in &invocations {
            pipe.invoke_script(inv);
        }
        let attempt = async {
            match pipe.query_async::<Vec<Vec<i64>>>(&mut m).await {
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    let mut load = redis::pipe();
                    for c in calls {
                        load.load_script(c.script);
                    }
                    load.query_async::<Vec<String>>(&mut m).await?;
                    pipe.query_async::<Vec<Vec<i64>>>(&mut m).await
                }
                other => other,
            }
        };
        match tokio::time::timeout(conn.config.timeout, attempt).await {
            Err(_) => Err(Failure::Timeout),
            Ok(Ok(v)) if v.len() == calls.len() => Ok(v),
            Ok(Ok(_)) => Err(Failure::Error),
            Ok(Err(e)) => Err(classify(&e)),
        }
    }
}

/// One script call of a batch.
pub struct Call<'a> {
    pub script: &'a redis::Script,
    pub keys: &'a [String],
    pub args: &'a [i64],
}

fn classify(e: &redis::RedisError) -> Failure {
    if e.is_timeout() {
        Failure::Timeout
    } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        Failure::Unavailable
    } else {
        tracing::debug!(target: "redis", error = %e, "redis: script failed");
        Failure::Error
    }
}

/// Builds a Redis key: the prefix, a kind, then parts; parts are length-prefixed so no two
/// different descriptor lists can produce the same key.
pub fn key(prefix: &str, kind: &str, parts: &[&str]) -> String {
    let mut k = String::with_capacity(prefix.len() + kind.len() + 32);
    k.push_str(prefix);
    k.push_str(kind);
    for p in parts {
        k.push(':');
        k.push_str(&p.len().to_string());
        k.push('=');
        k.push_str(p);
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn config_errors_name_the_path_and_never_show_the_password() {
        let e = RedisConfig::parse(&json!({"url": "http://x"}), "config.redis").unwrap_err();
        assert_eq!(e.0, "config.redis.url");
        let e = RedisConfig::parse(
            &json!({"url": "redis://h", "timeout": "0s"}),
            "config.redis",
        )
        .unwrap_err();
        assert_eq!(e.0, "config.redis.timeout");
        let e = RedisConfig::parse(&json!({"url": "redis://h", "pool": 3}), "config.redis")
            .unwrap_err();
        assert_eq!(e.0, "config.redis.pool");
        let c =
            RedisConfig::parse(&json!({"url": "redis://:s3cret@h:1/0"}), "config.redis").unwrap();
        assert_eq!(c.timeout, Duration::from_millis(100));
        assert_eq!(redact_url(&c.url), "redis://:<redacted>@h:1/0");
        assert_eq!(redact_url("redis://u:p@h"), "redis://u:<redacted>@h");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
    }

    #[test]
    fn keys_are_unambiguous() {
        assert_ne!(
            key("agw:", "rl", &["a:1", "b"]),
            key("agw:", "rl", &["a", "1:b"])
        );
        assert_eq!(key("agw:", "rl", &["x"]), "agw:rl:1=x");
    }

    #[tokio::test]
    async fn unreachable_redis_fails_fast_and_is_counted() {
        let failures = prometheus::IntCounterVec::new(
            prometheus::Opts::new("f", "f"),
            &["operation", "reason"],
        )
        .unwrap();
        let s = Shared::new(failures.clone());
        let script = redis::Script::new("return 1");
        let r = s.run("test", &script, &[], &[]).await;
        assert_eq!(r, Err(Failure::NotConfigured));
        // Port 1 on loopback: nothing listens.
        s.configure(Some(&RedisConfig {
            url: "redis://127.0.0.1:1".into(),
            timeout: Duration::from_millis(50),
            key_prefix: "agw:".into(),
        }));
        let t = std::time::Instant::now();
        let r = s.run("test", &script, &[], &[]).await;
        assert_eq!(r, Err(Failure::Unavailable));
        assert!(t.elapsed() < Duration::from_millis(50));
        assert_eq!(
            failures.with_label_values(&["test", "unavailable"]).get(),
            1
        );
    }
}
