//! Fixed-rate (open-loop) HTTP load: request `i` is due at `start + i / rate` whatever happened
//! to earlier requests, and its latency is measured from that due time, so a stall in the
//! server shows up as latency of every request it delayed (no coordinated omission, as in
//! wrk2).
//!
//! A pacer thread sleeps until each due time (timer slack lowered to 1 µs, so it wakes within
//! tens of µs rather than tokio's 1 ms timer wheel) and hands the slot to a one-thread tokio
//! runtime, which sends the request on a pooled keep-alive connection (a new connection opens
//! only when every pooled one is busy). Percentiles come from the sorted vector of samples.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// What to send.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
    pub body: Bytes,
}

/// Samples of one run (after warm-up), in microseconds.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    /// From the due time to the last body byte: what a client at this rate experiences.
    pub latency_us: Vec<f64>,
    /// From the moment the request was handed to the connection to the last body byte.
    pub service_us: Vec<f64>,
    pub errors: u64,
    /// Requests measured (after warm-up) over the measured wall time.
    pub achieved_rps: f64,
}

impl Samples {
    pub fn merge(&mut self, other: Samples) {
        self.latency_us.extend(other.latency_us);
        self.service_us.extend(other.service_us);
        self.errors += other.errors;
        self.achieved_rps = if self.achieved_rps == 0.0 {
            other.achieved_rps
        } else {
            (self.achieved_rps + other.achieved_rps) / 2.0
        };
    }
}

/// Nearest-rank percentile `p` (0..=100) of unsorted samples; NaN when empty.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

struct Slot {
    due: Instant,
    measured: bool,
}

/// Sends `rate` requests per second for `warmup + measure`; returns the measured samples.
pub fn run(
    target: &Target,
    rate: f64,
    warmup: Duration,
    measure: Duration,
) -> anyhow::Result<Samples> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the load generator runtime")?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Slot>();
    let period = Duration::from_secs_f64(1.0 / rate);
    let total = ((warmup + measure).as_secs_f64() * rate) as u64;
    let warm_n = (warmup.as_secs_f64() * rate) as u64;
    let start = Instant::now() + Duration::from_millis(50);
    let pacer = std::thread::spawn(move || {
        // 1 ns timer slack: nanosleep then wakes within the scheduler's latency, not +50 µs.
        // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
        for i in 0..total {
            let due = start + period.mul_f64(i as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if tx
                .send(Slot {
                    due,
                    measured: i >= warm_n,
                })
                .is_err()
            {
                return;
            }
        }
    });
    let samples = Arc::new(Mutex::new(Samples::default()));
    let result = rt.block_on({
        let samples = samples.clone();
        let target = target.clone();
        async move {
            let mut http = HttpConnector::new();
            http.set_nodelay(true);
            let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(4096)
                .pool_idle_timeout(Duration::from_secs(30))
                .build(http);
            let uri: http::Uri = format!("http://{}{}", target.addr, target.path)
                .parse()
                .context("target URI")?;
            let mut tasks = tokio::task::JoinSet::new();
            let mut first_measured: Option<Instant> = None;
            while let Some(slot) = rx.recv().await {
                if slot.measured && first_measured.is_none() {
                    first_measured = Some(slot.due);
                }
                let client = client.clone();
                let uri = uri.clone();
                let body = target.body.clone();
                let samples = samples.clone();
                tasks.spawn(async move {
                    let sent = Instant::now();
                    let ok = one(&client, uri, body).await;
                    let done = Instant::now();
                    if !slot.measured {
                        return;
                    }
                    if let Ok(mut s) = samples.lock() {
                        if ok {
                            s.latency_us.push((done - slot.due).as_secs_f64() * 1e6);
                            s.service_us.push((done - sent).as_secs_f64() * 1e6);
                        } else {
                            s.errors += 1;
                        }
                    }
                });
                // Reap finished tasks so the set stays small at high rates.
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
            let wall = first_measured.map_or(measure, |t| t.elapsed());
            anyhow::Ok(wall)
        }
    });
    let _ = pacer.join();
    let wall = result?;
    let mut s = samples
        .lock()
        .map(|s| s.clone())
        .map_err(|_| anyhow::anyhow!("sample lock poisoned"))?;
    s.achieved_rps = (s.latency_us.len() as u64 + s.errors) as f64 / wall.as_secs_f64().max(1e-9);
    Ok(s)
}

async fn one(client: &Client<HttpConnector, Full<Bytes>>, uri: http::Uri, body: Bytes) -> bool {
    let req = http::Request::post(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::AUTHORIZATION, "Bearer sk-bench-client-key")
        .body(Full::new(body));
    let Ok(req) = req else { return false };
    let Ok(resp) = client.request(req).await else {
        return false;
    };
    let ok = resp.status().is_success();
    resp.into_body().collect().await.is_ok() && ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert!(percentile(&[], 50.0).is_nan());
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), 2.0);
    }

    #[test]
    fn open_loop_against_a_local_server() {
        // A tiny HTTP/1.1 server that answers every request with "{}".
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                std::thread::spawn(move || serve_conn(conn));
            }
        });
        let target = Target {
            addr,
            path: "/v1/chat/completions".into(),
            body: Bytes::from_static(b"{}"),
        };
        let s = run(
            &target,
            200.0,
            Duration::from_millis(100),
            Duration::from_millis(500),
        )
        .expect("run");
        assert_eq!(s.errors, 0);
        // 100 requests due in the measured half second (±1 for rounding).
        assert!(
            (99..=101).contains(&s.latency_us.len()),
            "{}",
            s.latency_us.len()
        );
        assert!(
            s.achieved_rps > 150.0 && s.achieved_rps < 250.0,
            "{}",
            s.achieved_rps
        );
        assert!(percentile(&s.latency_us, 50.0) > 0.0);
    }

    fn serve_conn(mut c: std::net::TcpStream) {
        use std::io::{Read, Write};
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        loop {
            let Ok(n) = c.read(&mut tmp) else { return };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&tmp[..n]);
            // Requests here are tiny: headers plus a 2-byte body.
            while let Some(end) = find(&buf, b"\r\n\r\n") {
                if buf.len() < end + 4 + 2 {
                    break;
                }
                buf.drain(..end + 4 + 2);
                let resp = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                if c.write_all(resp).is_err() {
                    return;
                }
            }
        }
    }

    fn find(h: &[u8], n: &[u8]) -> Option<usize> {
        h.windows(n.len()).position(|w| w == n)
    }
}
