//! Streaming measurements: the one-way delay of each SSE event, and many idle streams held
//! open at once.
//!
//! The upstream (`fast-upstream`) stamps every content event with `"x_sent_ns"`, the wall
//! clock at which it handed the event to its socket. This client reads each stream on its own
//! connection and, for every event, records `arrival - x_sent_ns`. Run once direct and once
//! through the gateway, the difference of the two distributions is what the gateway adds per
//! event (both ends read the same clock, on the same host).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::sync::Semaphore;

pub const STREAM_BODY: &str = r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Stream me twenty tokens"}]}"#;

/// One-way event delays of one path, in µs.
#[derive(Clone, Debug, Default)]
pub struct EventDelays {
    /// The first content event of each stream (includes response-header handling).
    pub first_us: Vec<f64>,
    /// Every later content event: the per-event forwarding cost.
    pub rest_us: Vec<f64>,
    pub streams: usize,
    pub errors: usize,
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// `x_sent_ns` of an event's data, if present.
fn sent_ns(event: &[u8]) -> Option<u128> {
    const KEY: &[u8] = b"\"x_sent_ns\":";
    let at = event.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits: Vec<u8> = event[at..]
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// Splits complete events (`\n\n`-terminated) off the front of `buf`.
fn take_events(buf: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
        out.push(buf.drain(..end + 2).collect());
    }
    out
}

async fn open(
    addr: SocketAddr,
    chunks: u32,
    interval_us: u64,
) -> anyhow::Result<hyper::body::Incoming> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    tcp.set_nodelay(true)?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let req = http::Request::post("/v1/chat/completions")
        .header(http::header::HOST, addr.to_string())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::AUTHORIZATION, "Bearer sk-bench-client-key")
        .header("x-bench-chunks", chunks.to_string())
        .header("x-bench-interval-us", interval_us.to_string())
        .body(Full::new(Bytes::from_static(STREAM_BODY.as_bytes())))?;
    let resp = send.send_request(req).await?;
    if !resp.status().is_success() {
        bail!("status {}", resp.status());
    }
    Ok(resp.into_body())
}

/// Reads one stream to its end, pushing each event's delay.
async fn timed_stream(
    addr: SocketAddr,
    chunks: u32,
    interval_us: u64,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let mut body = open(addr, chunks, interval_us).await?;
    let (mut first, mut rest) = (Vec::new(), Vec::new());
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let arrived = now_ns();
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        for ev in take_events(&mut buf) {
            if let Some(sent) = sent_ns(&ev) {
                let us = arrived.saturating_sub(sent) as f64 / 1e3;
                if seen == 0 {
                    first.push(us);
                } else {
                    rest.push(us);
                }
                seen += 1;
            }
        }
    }
    if seen != chunks as usize {
        bail!("stream carried {seen} timed events, expected {chunks}");
    }
    Ok((first, rest))
}

/// Runs `concurrency` streams at a time for `duration`, each `chunks` events spaced by
/// `interval_us`, each on a fresh connection.
pub fn event_delays(
    addr: SocketAddr,
    concurrency: usize,
    duration: Duration,
    chunks: u32,
    interval_us: u64,
) -> anyhow::Result<EventDelays> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let end = Instant::now() + duration;
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            workers.spawn(async move {
                let mut d = EventDelays::default();
                while Instant::now() < end {
                    match timed_stream(addr, chunks, interval_us).await {
                        Ok((f, r)) => {
                            d.first_us.extend(f);
                            d.rest_us.extend(r);
                            d.streams += 1;
                        }
                        Err(_) => d.errors += 1,
                    }
                }
                d
            });
        }
        let mut all = EventDelays::default();
        while let Some(r) = workers.join_next().await {
            let d = r.context("stream worker")?;
            all.first_us.extend(d.first_us);
            all.rest_us.extend(d.rest_us);
            all.streams += d.streams;
            all.errors += d.errors;
        }
        Ok(all)
    })
}

/// Opens `n` streams through `addr` whose upstream sends one event and then stays silent,
/// waits until every stream delivered its first event, calls `measure(open)` while they are
/// all held, then closes them. `parallel` bounds connection attempts in flight.
pub fn hold_idle_streams<T: Send + 'static>(
    addr: SocketAddr,
    n: usize,
    parallel: usize,
    measure: impl FnOnce(usize) -> T + Send + 'static,
) -> anyhow::Result<(usize, Duration, T)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let result = rt.block_on(async move {
        let gate = Arc::new(Semaphore::new(parallel.max(1)));
        let opened = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let (hold_tx, hold_rx) = tokio::sync::watch::channel(false);
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            let gate = gate.clone();
            let opened = opened.clone();
            let failed = failed.clone();
            let mut hold_rx = hold_rx.clone();
            tasks.push(tokio::spawn(async move {
                let permit = gate.acquire_owned().await;
                // Two events, ten minutes apart: the stream stays open and silent.
                let first = async {
                    let mut body = open(addr, 2, 600_000_000).await?;
                    let frame = body.frame().await.context("stream ended at once")??;
                    anyhow::Ok((body, frame))
                };
                match tokio::time::timeout(Duration::from_secs(60), first).await {
                    Ok(Ok((body, _))) => {
                        drop(permit);
                        opened.fetch_add(1, Ordering::Relaxed);
                        // Hold the connection until told to let go.
                        let _ = hold_rx.wait_for(|v| *v).await;
                        drop(body);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let (o, f) = (
                opened.load(Ordering::Relaxed),
                failed.load(Ordering::Relaxed),
            );
            if o + f >= n || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let took = started.elapsed();
        let o = opened.load(Ordering::Relaxed);
        let measured = tokio::task::spawn_blocking(move || measure(o))
            .await
            .context("measuring held streams")?;
        let _ = hold_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        anyhow::Ok((o, took, measured))
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sent_stamp() {
        let ev = br#"data: {"x_sent_ns":1700000000123456789,"id":"x"}"#;
        assert_eq!(sent_ns(ev), Some(1_700_000_000_123_456_789));
        assert_eq!(sent_ns(b"data: [DONE]"), None);
    }

    #[test]
    fn splits_events_across_chunks() {
        let mut buf = b"data: a\n\ndata: b".to_vec();
        assert_eq!(take_events(&mut buf), vec![b"data: a\n\n".to_vec()]);
        buf.extend_from_slice(b"\n\n");
        assert_eq!(take_events(&mut buf), vec![b"data: b\n\n".to_vec()]);
        assert!(buf.is_empty());
    }
}
