//! What prompt guards cost, in process, on one thread:
//!
//! - request: a 4 KB chat prompt (system + user message) through `guard::request::check` with
//!   agentgateway's example guard set (two `reject` regex guards: custom patterns, `email`)
//!   plus a `mask` guard over the five PII builtins and `promptInjection`; once with a clean
//!   prompt (the common case: nothing matches) and once with three PII items masked (which also
//!   re-serialises the body, as the proxy then does);
//! - stream: a 4 KB completion as OpenAI chat chunks of 4 characters (about 1,000 events)
//!   through the SSE transform, with and without the stream guard; the added CPU per event
//!   (p50 and p99 over per-event timings), and how much text the masker held back.
//!
//! `cargo xtask bench` reports it; `target/release/xtask __guardbench` prints it alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use gateway::ctx::{GuardInfo, LlmInfo, RequestLog};
use gateway::guard::{PromptGuard, Transport};
use gateway::llm::RouteType;
use gateway::llm::provider::Wire;
use gateway::llm::stream::SseTransform;
use serde_json::{Value, json};

const GUARDS: &str = r#"
request:
- regex:
    action: reject
    rules:
    - pattern: SSN
    - pattern: Social Security
- regex:
    action: reject
    rules:
    - builtin: email
- regex:
    action: mask
    rules:
    - builtin: ssn
    - builtin: creditCard
    - builtin: phoneNumber
    - builtin: caSin
    - builtin: promptInjection
response:
- regex:
    rules:
    - builtin: ssn
    - builtin: creditCard
    - builtin: phoneNumber
    - builtin: email
    - builtin: caSin
"#;

#[derive(Clone, Debug, Default)]
pub struct GuardMicro {
    pub prompt_bytes: usize,
    /// µs per request, nothing matched.
    pub request_clean_us: f64,
    /// µs per request, three items masked, body re-serialised.
    pub request_masked_us: f64,
    /// Of which the guards alone (without re-serialising the body).
    pub request_masked_guards_us: f64,
    pub events: usize,
    /// Added µs per event, p50 / p99 (with guard minus without, per-event timings).
    pub event_p50_us: f64,
    pub event_p99_us: f64,
    /// Mean added µs per event.
    pub event_mean_us: f64,
    /// Share of events whose text was partly held back, and the most held at once.
    pub held_events: f64,
    pub max_held_bytes: usize,
}

struct NoTransport;

impl Transport for NoTransport {
    fn call(
        &self,
        _: &str,
        _: bool,
        _: http::Request<bytes::Bytes>,
        _: Duration,
    ) -> futures_util::future::BoxFuture<'_, Result<(http::StatusCode, bytes::Bytes), String>> {
        Box::pin(async { Err("no remote guards in this bench".into()) })
    }
}

fn guard() -> anyhow::Result<Arc<PromptGuard>> {
    let raw: gateway::guard::config::RawPromptGuard = yaml_serde::from_str(GUARDS)?;
    let pg = gateway::guard::config::compile(&raw, "bench")
        .map_err(|e| anyhow::anyhow!("guard config: {e:?}"))?;
    Ok(Arc::new(pg))
}

/// Ordinary prose of `n` bytes (no PII, no injection phrasing).
fn prose(n: usize) -> String {
    const WORDS: &str = "the gateway forwards each request to the provider and records what the agent asked for how long it took and which model answered so platform teams can see tokens latency and errors per route before anything goes wrong in production ";
    let mut s = String::with_capacity(n + WORDS.len());
    while s.len() < n {
        s.push_str(WORDS);
    }
    s.truncate(n);
    s
}

fn body(user: &str) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": prose(600)},
            {"role": "user", "content": user},
        ]
    })
}

fn time_requests(pg: &PromptGuard, b: &Value, n: usize, serialise: bool) -> anyhow::Result<f64> {
    let log = RequestLog::new("bench".into(), "bench".into());
    let headers = http::HeaderMap::new();
    let remote = gateway::guard::request::Remote {
        transport: &NoTransport,
        log: &log,
        headers: &headers,
    };
    // Bodies cloned ahead, so the loop times the guards alone.
    let mut bodies: Vec<Value> = (0..n).map(|_| b.clone()).collect();
    let t0 = Instant::now();
    for v in &mut bodies {
        let mut info = GuardInfo::default();
        let changed =
            gateway::guard::request::check(pg, RouteType::Completions, v, &remote, &mut info)
                .now_or_never()
                .ok_or_else(|| anyhow::anyhow!("a regex guard awaited"))?
                .map_err(|r| anyhow::anyhow!("rejected: {}", r.by))?;
        if serialise && changed {
            std::hint::black_box(serde_json::to_vec(v)?);
        }
        std::hint::black_box(&info);
    }
    Ok(t0.elapsed().as_secs_f64() * 1e6 / n as f64)
}

fn chat_events(text: &str, piece: usize) -> Vec<Vec<u8>> {
    let chars: Vec<char> = text.chars().collect();
    let mut evs = Vec::new();
    let frame = |delta: Value, finish: Value| {
        let v = json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {v}\n\n").into_bytes()
    };
    evs.push(frame(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    ));
    for c in chars.chunks(piece) {
        let s: String = c.iter().collect();
        evs.push(frame(json!({"content": s}), Value::Null));
    }
    evs.push(frame(json!({}), json!("stop")));
    evs.push(b"data: [DONE]\n\n".to_vec());
    evs
}

/// Per-event µs through a fresh transform, guarded or not; `held` gets (events that held
/// text, most held).
fn time_stream(pg: Option<&PromptGuard>, evs: &[Vec<u8>]) -> Vec<f64> {
    let handler = Box::new(gateway::llm::openai::ChatStream::new(false));
    let mut t = SseTransform::new(handler, Instant::now(), false);
    if let Some(pg) = pg
        && let Some(g) = gateway::guard::stream::StreamGuard::new(
            pg,
            Wire::OpenAi,
            false,
            RouteType::Completions,
            None,
        )
    {
        t = t.with_filter(Box::new(g));
    }
    let mut info = LlmInfo::default();
    let mut out = Vec::with_capacity(evs.len());
    for e in evs {
        let t0 = Instant::now();
        let b = t.data(e, &mut info);
        out.push(t0.elapsed().as_secs_f64() * 1e6);
        std::hint::black_box(b.ok());
    }
    std::hint::black_box(t.end(&mut info));
    out
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p / 100.0).round() as usize;
    v[i.min(v.len() - 1)]
}

pub fn micro() -> anyhow::Result<GuardMicro> {
    let pg = guard()?;
    let clean = prose(3500);
    let b = body(&clean);
    let prompt_bytes = serde_json::to_vec(&b)?.len();
    let mut dirty = prose(3300);
    dirty.push_str(" card 4111 1111 1111 1111, ssn 123-45-6789, call (555) 234-5678 ");
    let bd = body(&dirty);
    const N: usize = 4000;
    time_requests(&pg, &b, N / 10, false)?;
    let request_clean_us = time_requests(&pg, &b, N, false)?;
    time_requests(&pg, &bd, N / 10, true)?;
    let request_masked_us = time_requests(&pg, &bd, N, true)?;
    let request_masked_guards_us = time_requests(&pg, &bd, N, false)?;

    let mut completion = prose(4000);
    completion.push_str(" ssn 123-45-6789 and card 4111 1111 1111 1111 end");
    let evs = chat_events(&completion, 4);
    // Interleaved rounds, so drift on a busy machine hits both sides alike.
    let (mut plain, mut guarded) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        plain.extend(time_stream(None, &evs));
        guarded.extend(time_stream(Some(&pg), &evs));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let event_mean_us = mean(&guarded) - mean(&plain);
    let event_p50_us = pct(&mut guarded.clone(), 50.0) - pct(&mut plain.clone(), 50.0);
    let event_p99_us = pct(&mut guarded, 99.0) - pct(&mut plain, 99.0);

    // How much the masker holds back: replay the text pieces through one masker.
    let rules = match &pg.response[0].kind {
        gateway::guard::GuardKind::Regex { rules, .. } => rules.clone(),
        _ => anyhow::bail!("bench guard set changed"),
    };
    let mut m = gateway::guard::scan::Masker::new();
    let (mut out, mut hits) = (String::new(), Vec::new());
    let chars: Vec<char> = completion.chars().collect();
    let (mut held, mut max_held, mut pieces) = (0usize, 0usize, 0usize);
    for c in chars.chunks(4) {
        let s: String = c.iter().collect();
        m.push(&rules, &s, &mut out, &mut hits);
        pieces += 1;
        if m.pending() > 0 {
            held += 1;
        }
        max_held = max_held.max(m.pending());
    }
    Ok(GuardMicro {
        prompt_bytes,
        request_clean_us,
        request_masked_us,
        request_masked_guards_us,
        events: evs.len(),
        event_p50_us,
        event_p99_us,
        event_mean_us,
        held_events: held as f64 / pieces as f64,
        max_held_bytes: max_held,
    })
}

/// Hidden `__guardbench`: the figures alone.
pub fn main() -> anyhow::Result<()> {
    let m = micro()?;
    println!(
        "request guards, {} B prompt: {:.2} µs clean, {:.2} µs with 3 items masked ({:.2} µs guards, the rest re-serialising)",
        m.prompt_bytes, m.request_clean_us, m.request_masked_us, m.request_masked_guards_us
    );
    println!(
        "stream guard, {} events: added {:.2} µs p50, {:.2} µs p99, {:.2} µs mean per event; {:.0}% of events held text back (at most {} B)",
        m.events,
        m.event_p50_us,
        m.event_p99_us,
        m.event_mean_us,
        m.held_events * 100.0,
        m.max_held_bytes
    );
    Ok(())
}
