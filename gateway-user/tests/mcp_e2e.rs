//! End-to-end MCP tests: the official MCP Python SDK client (and the MCP Inspector CLI) against
//! `McpBackend::serve` on a loopback server, with real targets: Python SDK servers over stdio,
//! streamable HTTP and legacy SSE, and `@modelcontextprotocol/server-everything`.
//!
//! Needs tests/scripts/install-deps.sh (venv in target/test-venv, npm packages in target/npm),
//! or GATEWAY_TEST_VENV / GATEWAY_TEST_NPM pointing at them.

#[path = "mcp/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::*;
use serde_json::{Value as Json, json};

fn names(v: &Json) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiplexed_list_and_routed_calls() {
    let (_b, port) = python_http_target("b", "http").await;
    let yaml = format!(
        "targets:\n- {}\n- {{name: b, mcp: {{host: 'http://127.0.0.1:{port}/mcp'}}}}\n",
        stdio_target("a")
    );
    let gw = Gateway::start(&yaml, None).await;
    let out = gw
        .client(
            "http",
            r#"
out(sorted(t.name for t in (await c.list_tools()).tools))
out(sorted(p.name for p in (await c.list_prompts()).prompts))
out(sorted(str(r.uri) for r in (await c.list_resources()).resources))
out((await c.call_tool("b_echo", {"message": "hi"})).content[0].text)
out((await c.call_tool("a_echo", {"message": "yo"})).content[0].text)
out((await c.call_tool("a_add", {"a": 2, "b": 3})).content[0].text)
out((await c.read_resource("b+memo://note")).contents[0].text)
out((await c.get_prompt("a_greet", {"who": "x"})).messages[0].content.text)
try:
    await c.call_tool("c_echo", {"message": "x"})
    out("no error")
except Exception as e:
    out(str(e))
out(json.loads((await c.call_tool("a_meta", {})).content[0].text))
out(json.loads((await c.call_tool("b_meta", {})).content[0].text))
"#,
        )
        .await;
    let tools = names(&out[0]);
    for want in [
        "a_echo",
        "a_add",
        "a_crash",
        "b_echo",
        "b_progress",
        "b_sample",
    ] {
        assert!(
            tools.contains(&want.to_string()),
            "{want} missing from {tools:?}"
        );
    }
    assert_eq!(tools.len(), 18, "9 tools per target: {tools:?}");
    assert_eq!(names(&out[1]), vec!["a_greet", "b_greet"]);
    assert_eq!(names(&out[2]), vec!["a+memo://note", "b+memo://note"]);
    assert_eq!(out[3], json!("b:hi"));
    assert_eq!(out[4], json!("a:yo"));
    assert_eq!(out[5], json!("5"));
    assert_eq!(out[6], json!("note from b"));
    assert_eq!(out[7], json!("hello x from a"));
    assert!(
        out[8]
            .as_str()
            .expect("error text")
            .contains("Unknown tool: c_echo"),
        "{}",
        out[8]
    );

    // Trace context: `_meta.traceparent` on stdio, plus the HTTP header on streamable HTTP,
    // both under the request's trace id.
    let prefix = format!("00-{TRACE_ID_HEX}-");
    let stdio_tp = out[9]["meta"]["traceparent"]
        .as_str()
        .expect("stdio _meta.traceparent");
    assert!(
        stdio_tp.starts_with(&prefix) && stdio_tp.ends_with("-01"),
        "{stdio_tp}"
    );
    let http_tp = out[10]["meta"]["traceparent"]
        .as_str()
        .expect("http _meta.traceparent");
    assert!(http_tp.starts_with(&prefix), "{http_tp}");
    assert_eq!(out[10]["headers"]["traceparent"].as_str(), Some(http_tp));

    // Telemetry: one TargetCall per upstream call, whose span id is the one sent upstream.
    let calls = gw.logs_for("tools/call");
    let echo = calls
        .iter()
        .filter_map(|l| l.mcp.as_ref())
        .find(|m| m.target.as_deref() == Some("b") && m.tool_name.as_deref() == Some("echo"))
        .expect("log for b_echo");
    assert_eq!(echo.tool_arguments, Some(json!({"message": "hi"})));
    assert!(echo.session_id.is_some());
    assert_eq!(echo.target_calls.len(), 1);
    assert_eq!(echo.target_calls[0].target, "b");
    assert!(echo.target_calls[0].end.is_some());
    assert!(echo.tool_result.is_some());
    let meta = calls
        .iter()
        .filter_map(|l| l.mcp.as_ref())
        .find(|m| m.target.as_deref() == Some("b") && m.tool_name.as_deref() == Some("meta"))
        .expect("log for b_meta");
    let span = gateway::ctx::hex(&meta.target_calls[0].span_id);
    assert_eq!(http_tp, format!("00-{TRACE_ID_HEX}-{span}-01"));
    let list = gw.logs_for("tools/list");
    let fanout = list
        .last()
        .and_then(|l| l.mcp.as_ref())
        .expect("tools/list log");
    assert_eq!(
        fanout.target_calls.len(),
        2,
        "tools/list fans out to both targets"
    );
    let unknown = calls
        .iter()
        .filter_map(|l| l.mcp.as_ref())
        .find(|m| m.tool_name.as_deref() == Some("c_echo"))
        .expect("log for unknown tool");
    assert_eq!(unknown.error_type.as_deref(), Some("invalid_request"));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_error_is_recorded() {
    let gw = Gateway::start(&format!("targets:\n- {}\n", stdio_target("a")), None).await;
    let out = gw
        .client(
            "http",
            r#"
r = await c.call_tool("fail", {})
out([r.is_error, r.content[0].text])
"#,
        )
        .await;
    assert_eq!(out[0][0], json!(true), "single target: no prefix; {out}");
    let log = gw.logs_for("tools/call");
    let m = log.last().and_then(|l| l.mcp.as_ref()).expect("log");
    assert_eq!(m.error_type.as_deref(), Some("tool_error"));
    assert!(m.tool_error.is_some());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_filters_lists_and_denies_calls() {
    let yaml = format!(
        "targets:\n- {}\n- {}\n",
        stdio_target("a"),
        stdio_target("b")
    );
    let authz = r#"
rules:
- 'mcp.tool.name == "echo"'
- 'mcp.tool.target == "b" && mcp.tool.name == "add"'
- 'has(mcp.prompt)'
- 'has(mcp.resource)'
"#;
    let gw = Gateway::start(&yaml, Some(authz)).await;
    let out = gw
        .client(
            "http",
            r#"
out(sorted(t.name for t in (await c.list_tools()).tools))
out((await c.call_tool("b_add", {"a": 1, "b": 1})).content[0].text)
try:
    await c.call_tool("a_add", {"a": 1, "b": 1})
    out("allowed")
except Exception as e:
    out(str(e))
"#,
        )
        .await;
    assert_eq!(names(&out[0]), vec!["a_echo", "b_add", "b_echo"]);
    assert_eq!(out[1], json!("2"));
    let denied = out[2].as_str().expect("error");
    assert!(
        denied.contains("Unauthorized") && denied.contains("a_add"),
        "{denied}"
    );
    let log = gw.logs_for("tools/call");
    let m = log
        .iter()
        .filter_map(|l| l.mcp.as_ref())
        .find(|m| m.error_type.as_deref() == Some("unauthorized"))
        .expect("denied call logged");
    assert!(
        m.target_calls.is_empty(),
        "a denied call never reaches the target"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_stdio_target_gives_prompt_jsonrpc_error() {
    let yaml = format!(
        "targets:\n- {}\n- {}\nrequestTimeout: 30s\nfailureMode: failOpen\n",
        stdio_target("a"),
        stdio_target("b")
    );
    let gw = Gateway::start(&yaml, None).await;
    let out = gw
        .client(
            "http",
            r#"
import time
took = []
for name in ["a_crash", "a_echo"]:
    t0 = time.monotonic()
    try:
        await c.call_tool(name, {"message": "x"})
        out("no error")
    except Exception as e:
        out(str(e))
    took.append(time.monotonic() - t0)
out((await c.call_tool("b_echo", {"message": "still"})).content[0].text)
out(sorted({t.name.split("_")[0] for t in (await c.list_tools()).tools}))
out(took)
"#,
        )
        .await;
    for e in [&out[0], &out[1]] {
        let e = e.as_str().expect("error text");
        assert!(e.contains("MCP target 'a' failed"), "{e}");
    }
    assert_eq!(out[2], json!("b:still"), "the other target keeps working");
    assert_eq!(
        out[3],
        json!(["b"]),
        "failOpen: listing skips the dead target"
    );
    // requestTimeout is 30s: both calls must fail on the crash itself, not on the timeout.
    for t in out[4].as_array().expect("durations") {
        let secs = t.as_f64().expect("seconds");
        assert!(secs < 10.0, "crash must not wait for the timeout: {secs}s");
    }
    let log = gw.logs_for("tools/call");
    let m = log.first().and_then(|l| l.mcp.as_ref()).expect("log");
    assert_eq!(m.error_type.as_deref(), Some("target_unavailable"));
    assert!(m.target_calls[0].error.is_some());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_target_times_out() {
    // `sleep` never answers initialize: the configured timeout must end the wait.
    let gw = Gateway::start(
        "targets: [{name: z, stdio: {cmd: sleep, args: ['30']}}]\nrequestTimeout: 1s\n",
        None,
    )
    .await;
    let started = Instant::now();
    let (status, _, body) = raw_post(
        gw.addr,
        "/mcp",
        &[],
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(status, 200);
    let v: Json = serde_json::from_str(&body).expect("json");
    assert_eq!(v["error"]["code"], json!(-32603), "{body}");
    assert!(body.contains("no response within"), "{body}");
    assert_eq!(gw.backend.session_count(), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_delete_kills_stdio_children() {
    let yaml = format!(
        "targets:\n- {}\n- {}\n",
        stdio_target("a"),
        stdio_target("b")
    );
    let gw = Gateway::start(&yaml, None).await;
    let out = gw
        .client(
            "http",
            r#"
out(int((await c.call_tool("a_pid", {})).content[0].text))
out(int((await c.call_tool("b_pid", {})).content[0].text))
"#,
        )
        .await;
    let pids: Vec<u32> = out
        .as_array()
        .expect("pids")
        .iter()
        .map(|p| p.as_u64().expect("pid") as u32)
        .collect();
    assert_eq!(pids.len(), 2);
    assert_ne!(pids[0], pids[1]);
    // The SDK client sends DELETE on exit; the gateway must reap both children.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for p in &pids {
        assert!(
            !alive(*p),
            "stdio target pid {p} still running after DELETE"
        );
    }
    assert_eq!(gw.backend.session_count(), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_and_sampling_are_relayed() {
    let (_b, port) = python_http_target("b", "http").await;
    let yaml = format!(
        "targets:\n- {}\n- {{name: b, mcp: {{host: 'http://127.0.0.1:{port}/mcp'}}}}\n",
        stdio_target("a")
    );
    let gw = Gateway::start(&yaml, None).await;
    let out = gw
        .client(
            "http",
            r#"
for target in ["a", "b"]:
    seen = []
    async def on_progress(progress, total, message):
        seen.append(progress)
    r = await c.call_tool(target + "_progress", {"steps": 3}, progress_callback=on_progress)
    out([r.content[0].text, seen])
    out((await c.call_tool(target + "_sample", {"prompt": "q"})).content[0].text)
"#,
        )
        .await;
    assert_eq!(out[0], json!(["a:done", [1.0, 2.0, 3.0]]));
    assert_eq!(out[1], json!("a:sampled:sampled-ok"));
    assert_eq!(out[2], json!(["b:done", [1.0, 2.0, 3.0]]));
    assert_eq!(out[3], json!("b:sampled:sampled-ok"));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cancel_reaches_the_target() {
    let (_b, port) = python_http_target("b", "http").await;
    let yaml = format!(
        "targets:\n- {}\n- {{name: b, mcp: {{host: 'http://127.0.0.1:{port}/mcp'}}}}\n",
        stdio_target("a")
    );
    let gw = Gateway::start(&yaml, None).await;
    let dir = std::env::temp_dir().join(format!("mcp-cancel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let scenario = format!(
        r#"
import os
for t in ["a", "b"]:
    marker = "{}/" + t
    try:
        await asyncio.wait_for(c.call_tool(t + "_hang", {{"marker": marker}}), 1.0)
        out("finished")
    except asyncio.TimeoutError:
        pass
    for _ in range(50):
        if os.path.exists(marker):
            break
        await asyncio.sleep(0.1)
    out(os.path.exists(marker))
"#,
        dir.display()
    );
    let out = gw.client("http", &scenario).await;
    assert_eq!(
        out,
        json!([true, true]),
        "both targets saw notifications/cancelled"
    );
    let _ = std::fs::remove_dir_all(&dir);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sse_client_and_sse_target() {
    let (_s, port) = python_http_target("s", "sse").await;
    let yaml = format!(
        "targets:\n- {}\n- {{name: s, sse: {{host: 127.0.0.1, port: {port}, path: /sse}}}}\n",
        stdio_target("a")
    );
    let gw = Gateway::start(&yaml, None).await;
    let out = gw
        .client(
            "sse",
            r#"
out(sorted(t.name for t in (await c.list_tools()).tools if t.name.endswith("echo")))
out((await c.call_tool("s_echo", {"message": "via-sse"})).content[0].text)
out((await c.call_tool("a_sample", {"prompt": "q"})).content[0].text)
"#,
        )
        .await;
    assert_eq!(names(&out[0]), vec!["a_echo", "s_echo"]);
    assert_eq!(out[1], json!("s:via-sse"));
    assert_eq!(out[2], json!("a:sampled:sampled-ok"));
    // Closing the SSE stream ends the session.
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.backend.session_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gw.backend.session_count(), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_over_stdio_and_http_with_inspector() {
    let (_e, port) = everything_http().await;
    let script =
        npm_dir().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let yaml = format!(
        "targets:\n- {{name: local, stdio: {{cmd: node, args: ['{}', stdio]}}}}\n- {{name: remote, mcp: {{host: 'http://127.0.0.1:{port}/mcp'}}}}\n",
        script.display()
    );
    let gw = Gateway::start(&yaml, None).await;
    let out = gw
        .client(
            "http",
            r#"
tools = [t.name for t in (await c.list_tools()).tools]
out(sorted(t for t in tools if t.endswith("_echo") or t.endswith("_get-sum")))
out((await c.call_tool("remote_echo", {"message": "e2e"})).content[0].text)
out((await c.call_tool("local_get-sum", {"a": 20, "b": 22})).content[0].text)
"#,
        )
        .await;
    assert_eq!(
        names(&out[0]),
        vec![
            "local_echo",
            "local_get-sum",
            "remote_echo",
            "remote_get-sum"
        ]
    );
    assert!(out[1].as_str().expect("text").contains("e2e"), "{}", out[1]);
    assert!(out[2].as_str().expect("text").contains("42"), "{}", out[2]);

    let inspector = npm_dir().join("node_modules/.bin/mcp-inspector");
    let run = |args: Vec<String>| {
        let inspector = inspector.clone();
        async move {
            let o = tokio::process::Command::new(&inspector)
                .args(args)
                .output()
                .await
                .expect("run mcp-inspector");
            assert!(
                o.status.success(),
                "inspector: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            String::from_utf8_lossy(&o.stdout).to_string()
        }
    };
    let base = vec![
        "--cli".to_string(),
        gw.url("/mcp"),
        "--transport".into(),
        "http".into(),
    ];
    let mut list = base.clone();
    list.extend(["--method".into(), "tools/list".into()]);
    let listed: Json = serde_json::from_str(&run(list).await).expect("inspector JSON");
    let count = listed["tools"].as_array().map_or(0, Vec::len);
    assert!(count >= 20, "inspector saw {count} tools");
    let mut call = base;
    call.extend(
        [
            "--method",
            "tools/call",
            "--tool-name",
            "remote_echo",
            "--tool-arg",
            "message=inspector",
        ]
        .map(String::from),
    );
    let called = run(call).await;
    assert!(called.contains("inspector"), "{called}");
    gw.stop().await;
}
