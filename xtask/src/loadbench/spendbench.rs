//! What cost, limits and budgets add per request (issue 15's targets):
//!
//! - in process, one thread: pricing a finished request against an inline catalog; a route's
//!   `localRateLimit` (a request bucket charged before the body is read, a token bucket
//!   charged with the prompt's estimate and settled with the real usage), plain and keyed by
//!   a CEL descriptor (`apiKey.id`); a per-process token budget (check, then add the spend);
//! - against a real `redis-server` on loopback: one `globalRateLimit` charge (a request and a
//!   token bucket in one script call) next to a bare `PING`, both timed from a client on one
//!   thread, and Redis's own command counts, which show how many round trips a request makes.
//!
//! `cargo xtask bench` reports it; `target/release/xtask __spendbench` prints it alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use gateway::ctx::{Identity, LlmInfo, RequestLog};
use gateway::limit::{Kind, LocalLimits, Phase};
use serde_json::json;

#[derive(Clone, Debug, Default)]
pub struct SpendMicro {
    /// µs per request: pricing the usage.
    pub cost_us: f64,
    /// µs per request: request + token buckets, charged and settled.
    pub local_limit_us: f64,
    /// The same with each bucket keyed by `apiKey.id` (1,000 callers).
    pub keyed_limit_us: f64,
    /// µs per request: a per-process token budget checked and settled.
    pub budget_us: f64,
    /// Redis: µs per `globalRateLimit` charge and per bare PING, from one client thread.
    pub redis: Option<RedisFigures>,
}

#[derive(Clone, Debug, Default)]
pub struct RedisFigures {
    pub charge_us: f64,
    pub ping_us: f64,
    /// Script calls Redis counted per request on the request path (the charge).
    pub calls_per_request: f64,
    /// And after the response (token settlement), per request.
    pub settle_calls_per_request: f64,
    /// With a Redis-backed budget too (both scripts in one pipelined batch): µs per request
    /// and script calls Redis counted per request.
    pub with_budget_us: f64,
    pub with_budget_calls: f64,
}

fn llm(model: &str) -> LlmInfo {
    LlmInfo {
        provider: "openai".into(),
        request_model: Some(model.into()),
        response_model: Some(format!("{model}-2024-07-18")),
        input_tokens: Some(1200),
        output_tokens: Some(300),
        ..LlmInfo::default()
    }
}

fn prices() -> anyhow::Result<Arc<gateway::spend::Prices>> {
    let src = gateway::spend::CatalogConfig::source(&json!({"inline": {"providers": {"openai": {
    "models": {
        "gpt-4o-mini": {"rates": {"input": "0.15", "output": "0.60", "cacheRead": "0.075"}},
        "gpt-4o": {"rates": {"input": "2.5", "output": "10"}}
    }}}}}))
    .map_err(anyhow::Error::msg)?;
    let p = gateway::spend::Prices::new();
    p.configure(Some(&gateway::spend::CatalogConfig { sources: vec![src] }));
    Ok(p)
}

fn per_op(n: usize, mut f: impl FnMut(usize)) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn with_key(i: usize) -> RequestLog {
    let mut log = RequestLog::new("gw".into(), "l".into());
    log.identity = Some(Box::new(Identity {
        key_id: format!("sha256:{:012x}", i % 1000),
        metadata: json!({}),
        allowed_models: None,
    }));
    log
}

/// One request through `limits`: the request bucket, the token estimate, the settlement.
fn limit_once(limits: &LocalLimits, log: &RequestLog, usage: &LlmInfo) {
    let r = limits.take(Kind::Requests, Phase::Route, 1, log);
    std::hint::black_box(r.is_ok());
    if let Ok(t) = limits.take(Kind::Tokens, Phase::Llm, 1000, log)
        && let Some(s) = t.settlement(1000)
    {
        s.settle(Some(usage));
    }
}

pub fn micro() -> anyhow::Result<SpendMicro> {
    const N: usize = 200_000;
    let p = prices()?;
    let mut infos: Vec<LlmInfo> = (0..N).map(|_| llm("gpt-4o-mini")).collect();
    let cost_us = per_op(N, |i| p.price(&mut infos[i]));
    anyhow::ensure!(
        infos[0].cost.as_ref().and_then(|c| c.total()).is_some(),
        "the bench request was not priced"
    );

    let huge = 1u64 << 50;
    let spec = |extra: serde_json::Value| {
        let mut r = json!({"maxTokens": huge, "tokensPerFill": huge, "fillInterval": "1s"});
        let mut t = r.clone();
        t["type"] = json!("tokens");
        if !extra.is_null() {
            r["descriptors"] = extra.clone();
            t["descriptors"] = extra;
        }
        json!([r, t])
    };
    let plain = LocalLimits::parse(&spec(serde_json::Value::Null), "bench")
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let keyed = LocalLimits::parse(&spec(json!([{"key": "k", "value": "apiKey.id"}])), "bench")
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let usage = llm("gpt-4o-mini");
    let anon = RequestLog::new("gw".into(), "l".into());
    per_op(N / 10, |_| limit_once(&plain, &anon, &usage));
    let local_limit_us = per_op(N, |_| limit_once(&plain, &anon, &usage));
    let logs: Vec<RequestLog> = (0..1000).map(with_key).collect();
    per_op(N / 10, |i| limit_once(&keyed, &logs[i % 1000], &usage));
    let keyed_limit_us = per_op(N, |i| limit_once(&keyed, &logs[i % 1000], &usage));

    let metrics = gateway::metrics::Metrics::new();
    let store = gateway::store::Shared::new(metrics.redis_failures.clone());
    let ledger = gateway::spend::budget::Ledger::new(
        store,
        metrics.budget_remaining.clone(),
        metrics.budget_exceeded.clone(),
    );
    let budgets = Arc::new(
        gateway::spend::budget::Budgets::parse(
            &json!([{"name": "bench", "tokens": huge, "window": "day"}]),
            "bench",
        )
        .map_err(|e| anyhow::anyhow!("{e:?}"))?,
    );
    let budget_us = per_op(N, |_| {
        let mut log = RequestLog::new("gw".into(), "l".into());
        // No Redis: the check never waits.
        let r = ledger.check(&budgets, &mut log).now_or_never();
        std::hint::black_box(r.is_some());
        for s in log.settle.drain(..) {
            s.settle(Some(&usage));
        }
    });
    Ok(SpendMicro {
        cost_us,
        local_limit_us,
        keyed_limit_us,
        budget_us,
        redis: redis_figures().unwrap_or_else(|e| {
            println!("    redis figures skipped: {e:#}");
            None
        }),
    })
}

/// A `redis-server` on a free loopback port for the length of the bench.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_info(port: u16) -> anyhow::Result<String> {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "INFO", "commandstats"])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `calls=` of one command in `INFO commandstats`.
fn calls(info: &str, cmd: &str) -> u64 {
    info.lines()
        .find(|l| l.starts_with(&format!("cmdstat_{cmd}:")))
        .and_then(|l| l.split("calls=").nth(1))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn redis_figures() -> anyhow::Result<Option<RedisFigures>> {
    let Ok(server) = which("redis-server") else {
        println!("    redis-server not installed: Redis figures skipped");
        return Ok(None);
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = std::process::Command::new(server)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let _server = Server(child);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let url = format!("redis://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = redis::Client::open(url.as_str())?;
        let mut conn = loop {
            match client.get_multiplexed_async_connection().await {
                Ok(c) => break c,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => return Err(e.into()),
            }
        };
        let metrics = gateway::metrics::Metrics::new();
        let store = gateway::store::Shared::new(metrics.redis_failures.clone());
        store.configure(Some(&gateway::store::RedisConfig {
            url,
            timeout: Duration::from_secs(1),
            key_prefix: "agw:".into(),
        }));
        let limits = gateway::limit::global::GlobalLimits::parse(
            &json!({"limits": [
                {"maxTokens": 1u64 << 50, "tokensPerFill": 1u64 << 50, "fillInterval": "1s"},
                {"maxTokens": 1u64 << 50, "tokensPerFill": 1u64 << 50, "fillInterval": "1s", "type": "tokens"}
            ]}),
            "bench",
        )
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let log = RequestLog::new("gw".into(), "l".into());
        // Connected once the first charge succeeds.
        loop {
            if limits
                .take(&store, &[Phase::Route], None, &log)
                .await
                .is_ok_and(|t| t.failed_open.is_none())
            {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "the store never connected");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        const N: usize = 4000;
        let count = || -> anyhow::Result<u64> {
            let i = redis_info(port)?;
            Ok(calls(&i, "evalsha") + calls(&i, "eval"))
        };
        let usage = llm("gpt-4o-mini");
        let before = count()?;
        let mut settlements = Vec::with_capacity(N);
        let t = Instant::now();
        for _ in 0..N {
            // The proxy's LLM phase: a request's request and token buckets, one script call.
            let taken = limits
                .take(&store, &[Phase::Route, Phase::Llm], Some(1000), &log)
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            settlements.extend(taken.settlement());
        }
        let charge_us = t.elapsed().as_secs_f64() * 1e6 / N as f64;
        let charged = count()?;
        for s in settlements {
            s.settle(Some(&usage));
        }
        // The settlements are spawned: let them land before counting.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let settled = count()?;

        // The same with a Redis-backed budget: both scripts in one pipelined batch, as
        // `proxy::limits::llm_phase` sends them.
        let ledger = gateway::spend::budget::Ledger::new(
            store.clone(),
            metrics.budget_remaining.clone(),
            metrics.budget_exceeded.clone(),
        );
        let budgets = Arc::new(
            gateway::spend::budget::Budgets::parse(
                &json!([{"name": "bench", "tokens": 1u64 << 50, "window": "day"}]),
                "bench",
            )
            .map_err(|e| anyhow::anyhow!("{e:?}"))?,
        );
        let before_b = count()?;
        let t = Instant::now();
        for _ in 0..N {
            let mut log = RequestLog::new("gw".into(), "l".into());
            let charge = limits
                .prepare("agw:", &[Phase::Route, Phase::Llm], Some(1000), &log)
                .ok_or_else(|| anyhow::anyhow!("no buckets"))?;
            let check = ledger
                .prepare(&budgets, &log)
                .ok_or_else(|| anyhow::anyhow!("no budget"))?;
            let calls = [
                gateway::store::Call {
                    script: &gateway::limit::global::SCRIPT,
                    keys: &charge.keys,
                    args: &charge.args,
                },
                check.call().ok_or_else(|| anyhow::anyhow!("budget not in Redis"))?,
            ];
            let mut out = store
                .run_batch("bench", &calls)
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let budget = out.pop();
            let rl = out.pop().ok_or_else(|| anyhow::anyhow!("short batch"))?;
            limits
                .finish(&store, charge, Ok(rl))
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            ledger
                .finish(check, budget.map(Ok), &mut log)
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
        let with_budget_us = t.elapsed().as_secs_f64() * 1e6 / N as f64;
        let with_budget_calls = count()?.saturating_sub(before_b) as f64 / N as f64;
        let t = Instant::now();
        for _ in 0..N {
            let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        }
        let ping_us = t.elapsed().as_secs_f64() * 1e6 / N as f64;
        Ok(Some(RedisFigures {
            charge_us,
            ping_us,
            calls_per_request: charged.saturating_sub(before) as f64 / N as f64,
            settle_calls_per_request: settled.saturating_sub(charged) as f64 / N as f64,
            with_budget_us,
            with_budget_calls,
        }))
    })
}

fn which(cmd: &str) -> anyhow::Result<std::path::PathBuf> {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(cmd))
                .find(|f| f.is_file())
        })
        .ok_or_else(|| anyhow::anyhow!("{cmd} not found"))
}

/// Hidden `__spendbench`: the figures alone.
pub fn main() -> anyhow::Result<()> {
    let m = micro()?;
    println!(
        "cost {:.2} µs; local limits (request + token bucket, settled) {:.2} µs, keyed by apiKey.id {:.2} µs; per-process budget {:.2} µs; cost + local limits {:.2} µs per request",
        m.cost_us,
        m.local_limit_us,
        m.keyed_limit_us,
        m.budget_us,
        m.cost_us + m.local_limit_us
    );
    if let Some(r) = &m.redis {
        println!(
            "redis: globalRateLimit charge {:.1} µs vs PING {:.1} µs; {:.2} script calls per request on the path, {:.2} after it (settlement); with a budget, pipelined: {:.1} µs, {:.2} script calls per request",
            r.charge_us,
            r.ping_us,
            r.calls_per_request,
            r.settle_calls_per_request,
            r.with_budget_us,
            r.with_budget_calls
        );
    }
    Ok(())
}
