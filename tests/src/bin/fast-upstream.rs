//! `fast-upstream`: a minimal-CPU OpenAI-shaped upstream for benchmarks (`cargo xtask bench`).
//!
//! `POST /v1/chat/completions` answers a fixed `chat.completion` JSON body, or, when the request
//! body has `"stream":true`, an SSE stream of N `chat.completion.chunk` events spaced by a
//! configurable delay, then a usage chunk (when `"include_usage":true` was asked) and
//! `data: [DONE]`. Every streamed event carries `"x_sent_ns"`: the wall-clock time (ns since the
//! Unix epoch) at which it was handed to the socket, so a client on the same host can measure
//! each event's one-way delay through any path. `GET /health` answers `ok`.
//!
//! Per-request overrides (request headers, forwarded unchanged by the gateway):
//! `x-bench-chunks: N`, `x-bench-interval-us: µs` (delay between events; the first event is sent
//! at once). A huge interval gives an idle stream that stays open (the 10k-stream test).
//!
//! The request body is only scanned for two byte strings, never parsed, and the plain answer is
//! a precomputed `Bytes`: the upstream should be the cheapest process in any benchmark.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use http::{Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
#[command(
    name = "fast-upstream",
    about = "Minimal-CPU OpenAI-shaped upstream for benchmarks"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18800")]
    listen: SocketAddr,
    /// Runtime worker threads; 1 runs everything on the main thread.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Content events per streamed response (before usage and `[DONE]`).
    #[arg(long, default_value_t = 20)]
    chunks: u32,
    /// Delay between streamed events, in microseconds.
    #[arg(long, default_value_t = 0)]
    interval_us: u64,
}

const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}},"system_fingerprint":"fp_bench"}"#;
const USAGE: &str = "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":20,\"total_tokens\":29}}\n\n";
const DONE: &str = "data: [DONE]\n\n";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    rt.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let listener = tokio::net::TcpSocket::new_v4()?;
    listener.set_reuseaddr(true)?;
    listener
        .bind(args.listen)
        .with_context(|| format!("binding {}", args.listen))?;
    let listener: TcpListener = listener.listen(4096)?;
    println!("listening on {}", listener.local_addr()?);
    let defaults = Defaults {
        chunks: args.chunks,
        interval: Duration::from_micros(args.interval_us),
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    eprintln!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = term.recv() => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, defaults));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[derive(Clone, Copy)]
struct Defaults {
    chunks: u32,
    interval: Duration,
}

type Out = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

async fn handle(req: Request<Incoming>, d: Defaults) -> Result<Response<Out>, Infallible> {
    if req.uri().path() == "/health" {
        return Ok(plain(
            StatusCode::OK,
            "text/plain",
            Bytes::from_static(b"ok"),
        ));
    }
    let header_num = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let chunks = header_num("x-bench-chunks").map_or(d.chunks, |n| n.min(100_000) as u32);
    let interval = header_num("x-bench-interval-us").map_or(d.interval, Duration::from_micros);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(plain(StatusCode::BAD_REQUEST, "text/plain", Bytes::new())),
    };
    if !contains(&body, b"\"stream\":true") && !contains(&body, b"\"stream\": true") {
        let json = Bytes::from_static(COMPLETION.as_bytes());
        return Ok(plain(StatusCode::OK, "application/json", json));
    }
    let usage = contains(&body, b"\"include_usage\":true");
    let sse = SseBody {
        left: chunks,
        usage,
        done: false,
        interval,
        sleep: None,
        seq: 0,
    };
    let resp = Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(sse.boxed_unsync());
    Ok(resp.unwrap_or_else(|_| {
        plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            Bytes::new(),
        )
    }))
}

fn plain(status: StatusCode, ctype: &'static str, body: Bytes) -> Response<Out> {
    let mut r = Response::new(Full::new(body).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static(ctype));
    r
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The streamed answer: `left` content events, each after `interval` (the first at once).
struct SseBody {
    left: u32,
    usage: bool,
    done: bool,
    interval: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    seq: u32,
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if this.left == 0 {
            this.done = true;
            let tail = if this.usage {
                Bytes::from(format!("{USAGE}{DONE}"))
            } else {
                Bytes::from_static(DONE.as_bytes())
            };
            return Poll::Ready(Some(Ok(Frame::data(tail))));
        }
        if this.seq > 0 && !this.interval.is_zero() {
            let interval = this.interval;
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(interval)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        this.left -= 1;
        let seq = this.seq;
        this.seq += 1;
        let role = if seq == 0 {
            r#""role":"assistant","#
        } else {
            ""
        };
        let ev = format!(
            "data: {{\"x_sent_ns\":{},\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{{\"index\":0,\"delta\":{{{role}\"content\":\"tok{seq} \"}},\"finish_reason\":null}}]}}\n\n",
            now_ns()
        );
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(ev)))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
