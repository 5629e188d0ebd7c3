//! What the built-in viewer (`/ui`) costs the gateway, measured two ways:
//!
//! 1. In process, precisely: `Recent::record` of a bench-shaped request record into a full
//!    ring of 1,000 (so each record also frees the evicted one), per request, the records
//!    built on another thread as the proxy workers build them; the memory a kept record holds
//!    (RSS growth while a ring of 10,000 fills, and the ring's own estimate); and the admin
//!    server's work to answer the page's poll (`/api/requests?limit=200`).
//! 2. End to end: `gw-plain` (default ring of 1,000) against `gw-noring` (`recentRequests: 0`)
//!    in the same alternating rounds, and `gw-plain` again while a client polls the API as an
//!    open page does (`Poller`: the request list every second, the overview every 2 s).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gateway::admin::ui::ring::{Recent, approx_bytes};
use gateway::ctx::{LlmInfo, RequestLog};
use gateway::telemetry::RequestSink;

use super::procs;

/// In-process figures.
#[derive(Clone, Debug, Default)]
pub struct Micro {
    /// Per request: move into a full ring of 1,000, count the minute totals, free the evicted.
    pub record_ns: f64,
    /// RSS growth per kept record while a ring of 10,000 fills.
    pub rss_bytes_per_record: f64,
    /// The ring's own estimate per record (`approx_bytes`), as the overview reports it.
    pub approx_bytes_per_record: f64,
    /// Formatting the page's poll (the newest 200 rows of a full ring of 1,000).
    pub list_200_us: f64,
}

/// A record shaped like the bench's requests: an OpenAI chat call, usage, default capture.
/// `i` varies the client port.
pub fn bench_log(i: u64) -> RequestLog {
    let mut l = RequestLog::new("bench-gw".into(), "bench".into());
    l.route = Some("openai".into());
    l.endpoint = Some("127.0.0.1:18800".into());
    l.backend = Some("fast-upstream".into());
    l.src_addr = Some(([127, 0, 0, 1], 40000 + (i % 20000) as u16).into());
    l.method = "POST".into();
    l.host = "127.0.0.1:18801".into();
    l.path = "/v1/chat/completions".into();
    l.uri = l.path.clone();
    l.status = Some(200);
    l.upstream_start = Some(l.start);
    l.upstream_end = Some(l.start + Duration::from_micros(300));
    l.end = Some(l.start + Duration::from_micros(400));
    let mut params = serde_json::Map::new();
    params.insert("max_tokens".into(), 32.into());
    l.llm = Some(LlmInfo {
        provider: "openai".into(),
        operation: "chat",
        request_model: Some("gpt-4o-mini".into()),
        response_model: Some("gpt-4o-mini-2024-07-18".into()),
        input_tokens: Some(14),
        output_tokens: Some(9),
        total_tokens: Some(23),
        params,
        finish_reasons: vec!["stop".into()],
        ..LlmInfo::default()
    });
    l
}

fn record(i: u64) -> Box<RequestLog> {
    Box::new(bench_log(i))
}

fn rss_bytes() -> f64 {
    procs::mem(std::process::id()).map_or(f64::NAN, |m| m.rss_kib as f64 * 1024.0)
}

pub fn micro() -> Micro {
    const BATCH: u64 = 20_000;
    const BATCHES: u64 = 10;
    let ring = Recent::new(1000);
    // Fill the ring first: every timed record then also evicts (and frees) the oldest.
    for i in 0..1000 {
        ring.record(record(i));
    }
    let mut spent = Duration::ZERO;
    for b in 0..BATCHES {
        let batch: Vec<Box<RequestLog>> =
            std::thread::spawn(move || (b * BATCH..(b + 1) * BATCH).map(record).collect())
                .join()
                .unwrap_or_default();
        let t0 = Instant::now();
        for log in batch {
            ring.record(log);
        }
        spent += t0.elapsed();
    }
    let record_ns = spent.as_nanos() as f64 / (BATCH * BATCHES) as f64;

    let t0 = Instant::now();
    let (entries, _) = ring.snapshot();
    let rows: Vec<serde_json::Value> = entries
        .iter()
        .take(200)
        .map(|e| gateway::admin::ui::view::row(e))
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({ "requests": rows })).unwrap_or_default();
    let list_200_us = t0.elapsed().as_secs_f64() * 1e6;
    std::hint::black_box(body);
    drop(entries);
    drop(ring);

    const KEPT: u64 = 10_000;
    let big = Recent::new(KEPT as usize);
    let before = rss_bytes();
    for i in 0..KEPT {
        big.record(record(i));
    }
    let after = rss_bytes();
    let (entries, _) = big.snapshot();
    let approx = entries.iter().map(|e| approx_bytes(&e.log)).sum::<usize>() as f64 / KEPT as f64;
    Micro {
        record_ns,
        rss_bytes_per_record: (after - before) / KEPT as f64,
        approx_bytes_per_record: approx,
        list_200_us,
    }
}

/// A client that polls the viewer's API as an open `/ui` page does.
pub struct Poller {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<u64>>,
}

impl Poller {
    pub fn start(admin: String) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut polls = 0;
            let mut since: Option<u64> = None;
            let mut tick = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let path = match since {
                    Some(s) => format!("/api/requests?limit=200&since={s}"),
                    None => "/api/requests?limit=200".into(),
                };
                if let Ok((200, body)) = procs::http_get(&admin, &path) {
                    polls += 1;
                    since = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["next"].as_u64())
                        .map(|n| n.saturating_sub(1));
                }
                if tick.is_multiple_of(2)
                    && procs::http_get(&admin, "/api/overview?minutes=15").is_ok()
                {
                    polls += 1;
                }
                tick += 1;
                // Sleep a second in small steps so `stop` is prompt.
                for _ in 0..10 {
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            polls
        });
        Poller {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
