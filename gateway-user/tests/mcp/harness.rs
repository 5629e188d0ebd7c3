//! Test harness: serves `McpBackend::serve` on a loopback hyper server, starts Python/npm MCP
//! targets, and runs the official MCP Python SDK client against the gateway.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway::ctx::RequestLog;
use gateway::mcp::McpBackend;
use gateway::mcp::config::{RawMcpAuthorization, RawMcpBackend};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

/// Trace id the harness puts on every request, to check traceparent propagation.
pub const TRACE_ID: [u8; 16] = [0x11; 16];
pub const TRACE_ID_HEX: &str = "11111111111111111111111111111111";

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The test venv: `$GATEWAY_TEST_VENV`, else `<root>/target/test-venv` (made by
/// tests/scripts/install-deps.sh). Missing → the test fails with instructions.
pub fn python() -> String {
    let venv = std::env::var("GATEWAY_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target/test-venv"));
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "{} not found: run tests/scripts/install-deps.sh or set GATEWAY_TEST_VENV",
        py.display()
    );
    py.display().to_string()
}

/// npm packages dir: `$GATEWAY_TEST_NPM`, else `<root>/target/npm`.
pub fn npm_dir() -> PathBuf {
    let dir = std::env::var("GATEWAY_TEST_NPM")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target/npm"));
    assert!(
        dir.join("node_modules/@modelcontextprotocol/server-everything")
            .exists(),
        "{}: server-everything missing; run tests/scripts/install-deps.sh or set GATEWAY_TEST_NPM",
        dir.display()
    );
    dir
}

pub fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mcp")
        .join(name)
        .display()
        .to_string()
}

/// YAML for a stdio Python target.
pub fn stdio_target(name: &str) -> String {
    format!(
        "{{name: {name}, stdio: {{cmd: '{}', args: ['{}', '{name}', stdio]}}}}",
        python(),
        fixture("target_server.py")
    )
}

/// A gateway serving one MCP backend.
pub struct Gateway {
    pub addr: SocketAddr,
    pub backend: Arc<McpBackend>,
    pub logs: Arc<Mutex<Vec<RequestLog>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Gateway {
    pub async fn start(backend_yaml: &str, authz_yaml: Option<&str>) -> Gateway {
        let raw: RawMcpBackend = yaml_serde::from_str(backend_yaml).expect("backend YAML");
        let authz: Option<RawMcpAuthorization> =
            authz_yaml.map(|y| yaml_serde::from_str(y).expect("authz YAML"));
        let backend =
            McpBackend::new("test", &raw, authz.as_ref(), "test.mcp").expect("valid backend");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (b, l) = (backend.clone(), logs.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let (b, l) = (b.clone(), l.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (b, l) = (b.clone(), l.clone());
                        async move {
                            let mut log = RequestLog::new("gw".into(), "test".into());
                            log.trace.trace_id = TRACE_ID;
                            log.method = req.method().to_string();
                            log.path = req.uri().path().to_string();
                            log.request_headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                                .collect();
                            let resp = b.serve(req, &mut log).await;
                            l.lock().expect("logs").push(log);
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Gateway {
            addr,
            backend,
            logs,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Runs a Python client scenario (see tests/mcp/client.py) and returns its `out` values.
    pub async fn client(&self, transport: &str, scenario: &str) -> serde_json::Value {
        let path = if transport == "sse" { "/sse" } else { "/mcp" };
        run_client(&self.url(path), transport, scenario).await
    }

    /// Request logs whose MCP method is `method`.
    pub fn logs_for(&self, method: &str) -> Vec<RequestLog> {
        self.logs
            .lock()
            .expect("logs")
            .iter()
            .filter(|l| l.mcp.as_ref().and_then(|m| m.method.as_deref()) == Some(method))
            .cloned()
            .collect()
    }

    pub async fn stop(self) {
        self.backend.shutdown().await;
        self.task.abort();
    }
}

pub async fn run_client(url: &str, transport: &str, scenario: &str) -> serde_json::Value {
    let out = run_client_raw(url, transport, scenario).await;
    assert!(
        out.status.success(),
        "python client failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        tail(&String::from_utf8_lossy(&out.stderr), 6000),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("client output {stdout:?}: {e}"))
}

pub async fn run_client_raw(url: &str, transport: &str, scenario: &str) -> std::process::Output {
    let mut child = Command::new(python())
        .arg(fixture("client.py"))
        .arg(url)
        .arg(transport)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn python client");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(scenario.as_bytes())
        .await
        .expect("write scenario");
    drop(stdin);
    tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("python client finished within 90s")
        .expect("client output")
}

fn tail(s: &str, n: usize) -> &str {
    let start = s.len().saturating_sub(n);
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    &s[start..]
}

/// A free loopback port (racy but fine for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A background process killed on drop.
pub struct Proc(pub Child);

/// Starts a Python target over HTTP (`http` = streamable at /mcp, `sse` = legacy at /sse).
pub async fn python_http_target(name: &str, transport: &str) -> (Proc, u16) {
    let port = free_port();
    let child = Command::new(python())
        .arg(fixture("target_server.py"))
        .arg(name)
        .arg(transport)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn python target");
    wait_port(port).await;
    (Proc(child), port)
}

/// Starts `@modelcontextprotocol/server-everything` in streamable HTTP mode.
pub async fn everything_http() -> (Proc, u16) {
    let port = free_port();
    let child = Command::new("node")
        .arg(npm_dir().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js"))
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn server-everything");
    wait_port(port).await;
    (Proc(child), port)
}

pub async fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing listening on 127.0.0.1:{port} after 30s");
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A raw HTTP exchange with the gateway, for protocol-error tests.
pub async fn raw_post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<bytes::Bytes>,
) -> (u16, http::HeaderMap, String) {
    raw(addr, "POST", path, headers, body).await
}

/// Any-method raw HTTP exchange with the gateway.
pub async fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<bytes::Bytes>,
) -> (u16, http::HeaderMap, String) {
    use http_body_util::{BodyExt, Full};
    let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let mut b = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = client
        .request(b.body(Full::new(body.into())).expect("request"))
        .await
        .expect("gateway answers");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, headers, String::from_utf8_lossy(&body).to_string())
}
