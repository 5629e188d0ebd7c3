//! `cargo xtask demo`: the offline demo. Builds the gateway and the provider simulator, starts
//! the simulator on 127.0.0.1:18700 and the gateway on its embedded default config, sends a few
//! LLM requests (OpenAI plain and streamed, Anthropic, OpenAI-to-Gemini translation), and shows
//! what the gateway saw: its access-log lines, its token metrics, and the built-in viewer at
//! http://127.0.0.1:15000/ui holding the tour's requests. Then the gateway keeps running on
//! http://127.0.0.1:3000 until Ctrl-C (`--once` stops after the tour).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

const SIM: &str = "127.0.0.1:18700";
const GATEWAY: &str = "127.0.0.1:3000";
const READY: &str = "127.0.0.1:15021";
const STATS: &str = "127.0.0.1:15020";
const ADMIN: &str = "127.0.0.1:15000";

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        // SIGTERM first so the gateway drains and flushes; then make sure.
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Minimal HTTP/1.1 client (std only): returns (status, body).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn wait_http(addr: &str, path: &str, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok((200, _)) = http(addr, "GET", path, &[], "") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{what} did not become ready on {addr}{path} within 30 s")
}

/// Waits until the viewer's ring holds the tour's `n` requests; returns how many it keeps.
fn viewer_rows(n: usize) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = http(ADMIN, "GET", "/api/requests?limit=1000", &[], "")?;
        let kept = body.matches("\"kind\":").count();
        if status == 200 && kept >= n {
            return Ok(kept);
        }
        if Instant::now() > deadline {
            bail!(
                "the viewer at http://{ADMIN}/api/requests kept {kept} of the tour's {n} requests (HTTP {status})"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(Into::into)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let once = args.iter().any(|a| a == "--once");
    println!("==> building gateway and provider simulator (first build takes a few minutes)");
    // The build environment of the `cargo xtask` that runs us, so what it built is reused
    // (AYA_BUILD_SKIP=1 would rebuild gateway-user, and again on the next run). Without the eBPF
    // toolchain, build.rs has warned once in that build and left the kernel programs out: the
    // demo does not need them, and the gateway says why (shown below). `-q`: cargo would
    // replay that warning.
    let st = crate::nested_cargo()
        .args(["build", "-q", "-p", "gateway-user", "-p", "gateway-tests"])
        .status()?;
    if !st.success() {
        bail!("cargo build failed");
    }
    let bin = target_dir().join("debug");
    let sim = Kill(
        Command::new(bin.join("provider-sim"))
            .args(["--listen", SIM])
            .stdout(Stdio::null())
            .spawn()
            .context("starting provider-sim")?,
    );
    wait_http(SIM, "/health", "provider simulator")?;
    let mut gw_child = Command::new(bin.join("gateway"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting gateway")?;
    let stdout = gw_child.stdout.take().context("gateway stdout")?;
    let gw = Kill(gw_child);
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    wait_http(READY, "/healthz/ready", "gateway")?;
    println!("==> gateway ready on http://{GATEWAY} (embedded default config; `gateway --help`)\n");

    let json = [
        ("content-type", "application/json"),
        ("authorization", "Bearer any-client-key"),
    ];
    let calls: [(&str, &str, &str); 4] = [
        (
            "OpenAI chat",
            "/v1/chat/completions",
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"What does a node gateway see?"}]}"#,
        ),
        (
            "OpenAI chat, streamed",
            "/v1/chat/completions",
            r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Stream me a haiku"}]}"#,
        ),
        (
            "Anthropic messages",
            "/anthropic/v1/messages",
            r#"{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"Hello Claude"}]}"#,
        ),
        (
            "OpenAI SDK shape to Gemini (translated)",
            "/gemini/v1/chat/completions",
            r#"{"model":"gemini-2.0-flash","messages":[{"role":"user","content":"Hello Gemini"}]}"#,
        ),
    ];
    for (name, path, body) in calls {
        let (status, resp) = http(GATEWAY, "POST", path, &json, body)?;
        let shown: String = resp.chars().take(220).collect();
        println!(
            "--> {name}: POST {path} -> {status}\n    {}\n",
            shown.replace('\n', "\n    ")
        );
        if status != 200 {
            bail!("{name} failed with status {status}");
        }
    }
    println!("==> what the gateway logged (one access-log line per request):");
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seen = 0;
    while seen < calls.len() && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200))
            && line.contains("\trequest\t")
        {
            println!("    {line}");
            seen += 1;
        }
    }
    println!("\n==> token metrics and eBPF status from http://{STATS}/metrics:");
    let (_, metrics) = http(STATS, "GET", "/metrics", &[], "")?;
    for line in metrics.lines().filter(|l| {
        (l.starts_with("agentgateway_gen_ai_client_token_usage_sum")
            || l.starts_with("agentgateway_requests_total")
            || l.starts_with("agentgateway_ebpf_enabled"))
            && !l.starts_with('#')
    }) {
        println!("    {line}");
    }
    let kept = viewer_rows(calls.len())?;
    println!(
        "\n==> every request, its spans and the overview in the built-in viewer (no install, works offline):\n    http://{ADMIN}/ui   ({kept} requests kept; JSON: curl -s '{ADMIN}/api/requests?limit=20')"
    );
    if once {
        println!("\n==> done (--once)");
        drop(gw);
        drop(sim);
        return Ok(());
    }
    println!(
        "\n==> gateway still running on http://{GATEWAY}: try\n    curl -s {GATEWAY}/v1/chat/completions -H 'content-type: application/json' -d '{{\"model\":\"m\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'\n    Ctrl-C to stop."
    );
    for line in rx {
        println!("{line}");
    }
    Ok(())
}
