//! Export against real sockets: a dead collector, a stalled one, a Langfuse-style HTTP path,
//! and rotel receiving over gRPC and HTTP.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn sampled_log() -> RequestLog {
    let mut log = fixture();
    log.trace = TraceIds {
        trace_id: traceparent::new_trace_id(),
        span_id: traceparent::new_span_id(),
        parent_span_id: None,
        sampled: true,
    };
    log
}

fn dropped(m: &Metrics, reason: &str) -> u64 {
    m.spans_dropped
        .with_label_values(&[settings::PRIMARY, reason])
        .get()
}

#[tokio::test]
async fn dead_collector_never_slows_requests_and_drops_are_counted() {
    let tracing: RawTracing = yaml(&format!(
        "otlpEndpoint: http://127.0.0.1:{}\nrandomSampling: true",
        dead_port()
    ));
    let (t, metrics, _lines) = build_with(Some(&tracing), None, None, &no_env).expect("builds");
    let started = Instant::now();
    for _ in 0..200 {
        t.finish(sampled_log());
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    t.shutdown().await;
    assert_eq!(dropped(&metrics, "export_failed"), 200);
    assert!(
        metrics
            .encode()
            .contains(r#"agentgateway_tracing_spans_dropped_total{destination="default",reason="export_failed"} 200"#)
    );
}

#[tokio::test]
async fn stalled_collector_fills_the_queue_without_blocking() {
    // Accepts connections and never answers: every export waits for its timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let tracing: RawTracing = yaml(&format!(
        "otlpEndpoint: http://127.0.0.1:{port}\notlpProtocol: http\nrandomSampling: true"
    ));
    let (t, metrics, _lines) = build_with(Some(&tracing), None, None, &no_env).expect("builds");
    let n = otlp::QUEUE + (otlp::IN_FLIGHT + 1) * otlp::MAX_BATCH + 2000;
    let started = Instant::now();
    for i in 0..n {
        t.finish(sampled_log());
        if i == 600 {
            // Let the exporter take its first batch and stall on it.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    // Every span that did not get a place is counted, whether it was shed before being built
    // (queue already full) or refused by the queue: at most a full queue, the stalled exports'
    // batches and the one gathering behind them were accepted.
    let per = spans::count(&sampled_log());
    let accepted_max = otlp::QUEUE + (otlp::IN_FLIGHT + 1) * (otlp::MAX_BATCH + per);
    let shed = dropped(&metrics, "queue_full") as usize;
    assert!(
        shed >= n * per - accepted_max,
        "{shed} dropped of {}: {}",
        n * per,
        metrics.encode()
    );
    hold.abort();
}

#[tokio::test]
async fn http_export_keeps_endpoint_path_and_sends_headers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = tokio::sync::oneshot::channel::<String>();
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // Read the head and the body (content-length) before answering.
        loop {
            let Ok(n) = s.read(&mut chunk).await else {
                return;
            };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    let _ = tx.send(text[..end].to_string());
                    return;
                }
            }
        }
    });
    let tracing: RawTracing = yaml(&format!(
        "otlpEndpoint: http://127.0.0.1:{port}/api/public/otel\notlpProtocol: http\nheaders:\n  Authorization: \"Basic abc\"\nrandomSampling: true"
    ));
    let (t, metrics, _lines) = build_with(Some(&tracing), None, None, &no_env).expect("builds");
    t.finish(sampled_log());
    t.shutdown().await;
    let head = tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .expect("collector got a request")
        .expect("head");
    let lower = head.to_ascii_lowercase();
    assert!(
        head.starts_with("POST /api/public/otel/v1/traces HTTP/1.1"),
        "{head}"
    );
    assert!(lower.contains("authorization: basic abc"), "{head}");
    assert!(
        lower.contains("content-type: application/x-protobuf"),
        "{head}"
    );
    assert_eq!(dropped(&metrics, "export_failed"), 0);
}

/// `rotel-agent` from `ROTEL_AGENT`, or from the test venv (`GATEWAY_TEST_VENV`, default
/// `target/test-venv`, as tests/scripts/install-deps.sh creates it).
fn rotel_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ROTEL_AGENT").map(PathBuf::from) {
        return p.exists().then_some(p);
    }
    let venv = std::env::var_os("GATEWAY_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-venv"));
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    lib.flatten()
        .map(|d| d.path().join("site-packages/rotel/rotel-agent"))
        .find(|p| p.exists())
}

/// Kills the receiver when the test ends, however it ends.
struct Rotel {
    child: Child,
    log: PathBuf,
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Rotel {
    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

async fn start_rotel(bin: &PathBuf, grpc: u16, http: u16) -> Rotel {
    let dir = std::env::temp_dir().join(format!("gw-rotel-{}-{grpc}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let log = dir.join("rotel.log");
    let out = std::fs::File::create(&log).expect("log file");
    let child = Command::new(bin)
        .args([
            "start",
            "--otlp-grpc-endpoint",
            &format!("127.0.0.1:{grpc}"),
            "--otlp-http-endpoint",
            &format!("127.0.0.1:{http}"),
            "--exporter",
            "blackhole",
            "--debug-log",
            "traces",
            "--debug-log-verbosity",
            "detailed",
            "--pid-file",
            &dir.join("rotel.pid").to_string_lossy(),
        ])
        .stdout(Stdio::from(out.try_clone().expect("clone")))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("rotel starts");
    let rotel = Rotel { child, log };
    for _ in 0..100 {
        let g = tokio::net::TcpStream::connect(("127.0.0.1", grpc))
            .await
            .is_ok();
        let h = tokio::net::TcpStream::connect(("127.0.0.1", http))
            .await
            .is_ok();
        if g && h {
            return rotel;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("rotel did not listen: {}", rotel.output());
}

async fn wait_for(rotel: &Rotel, needles: &[String]) {
    for _ in 0..100 {
        let out = rotel.output();
        if needles.iter().all(|n| out.contains(n.as_str())) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = rotel.output();
    let missing: Vec<_> = needles
        .iter()
        .filter(|n| !out.contains(n.as_str()))
        .collect();
    panic!("rotel output lacks {missing:?}:\n{out}");
}

#[tokio::test]
async fn rotel_receives_spans_over_grpc_and_http() {
    let Some(bin) = rotel_path() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "rotel-agent missing under CI=true; run tests/scripts/install-deps.sh"
        );
        eprintln!("rotel-agent not installed; skipping");
        return;
    };
    let (grpc, http) = (dead_port(), dead_port());
    let rotel = start_rotel(&bin, grpc, http).await;
    let mut needles = Vec::new();
    for (proto, port, name) in [
        ("grpc", grpc, "gw.grpc.chat"),
        ("http", http, "gw.http.chat"),
    ] {
        let tracing: RawTracing = yaml(&format!(
            r#"
otlpEndpoint: http://127.0.0.1:{port}
otlpProtocol: {proto}
randomSampling: true
fields:
  add:
    span.name: '"{name}"'
    gen_ai.system: "llm.provider"
    gen_ai.prompt: "llm.prompt"
    gen_ai.request: "flatten(llm.params)"
    llm.is_streaming: "llm.streaming"
"#
        ));
        let (t, metrics, _lines) = build_with(Some(&tracing), None, None, &no_env).expect("builds");
        let log = sampled_log();
        needles.push(format!("Trace ID       : {}", log.trace.trace_id_hex()));
        needles.push(format!("Name           : {name}"));
        t.finish(log);
        t.shutdown().await;
        assert_eq!(
            dropped(&metrics, "export_failed"),
            0,
            "{proto}: {}",
            rotel.output()
        );
    }
    for n in [
        "-> gen_ai.system: Str(openai)",
        "-> http.status: Int(200)",
        "-> gen_ai.request.temperature: Double(0.7)",
        "-> gen_ai.request.max_tokens: Int(100)",
        "-> llm.is_streaming: Bool(false)",
        "-> gen_ai.usage.input_tokens: Int(8)",
        r#"-> gen_ai.prompt: Str([{"content":"Be brief","role":"system"},{"content":"hi","role":"user"}])"#,
        "-> url.scheme: Str(http)",
        "Kind           : SPAN_KIND_SERVER",
    ] {
        needles.push(n.to_owned());
    }
    wait_for(&rotel, &needles).await;
}

/// Cost of one request's telemetry (metrics, access-log line, SERVER and CLIENT spans) on the
/// `telemetry` thread, without export. A measurement, not a check:
/// `cargo test --release -p gateway-user --lib emit_cost -- --ignored --nocapture`.
#[test]
#[ignore = "measurement; run in release by hand"]
fn emit_cost() {
    let tracing: RawTracing = yaml(&format!(
        "otlpEndpoint: http://127.0.0.1:{}\nrandomSampling: true",
        dead_port()
    ));
    let (t, _metrics, lines) = build_with(Some(&tracing), None, None, &no_env).expect("builds");
    let logs: Vec<RequestLog> = (0..20_000)
        .map(|_| {
            let mut l = sampled_log();
            l.upstream_span_id = Some(traceparent::new_span_id());
            l
        })
        .collect();
    let started = Instant::now();
    let mut out = Batch::default();
    for (i, log) in logs.iter().enumerate() {
        t.metrics.record(log);
        t.emit_into(log, &mut out);
        if i % 64 == 63 {
            // Spans into a queue that drops (nothing listens): the cost of building them only.
            t.flush_batch(&mut out, true);
        }
    }
    let per = started.elapsed() / logs.len() as u32;
    drop(lines);
    println!("emit_cost: {per:?} per request (metrics + access log + 2 spans)");
}
