//! MCP protocol edges through `McpBackend::serve`: malformed input, session handling, size
//! limits, failure modes, stateless mode and prefix modes.

#[path = "mcp/harness.rs"]
mod harness;

use harness::*;
use serde_json::{Value as Json, json};

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

fn body_json(body: &str) -> Json {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON body {body:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_jsonrpc_errors() {
    let yaml = format!("targets:\n- {}\nmaxMessageBytes: 2048\n", stdio_target("a"));
    let gw = Gateway::start(&yaml, None).await;
    let a = gw.addr;

    let cases: Vec<(&str, u16, i64)> = vec![
        ("{not json", 400, -32700),
        ("[]", 400, -32600),
        (r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#, 400, -32600),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            400,
            -32600,
        ),
    ];
    for (body, status, code) in cases {
        let (s, _, b) = raw_post(a, "/mcp", &[], body.to_string()).await;
        assert_eq!(s, status, "{body} -> {b}");
        assert_eq!(body_json(&b)["error"]["code"], json!(code), "{body} -> {b}");
    }
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#,
        "x".repeat(4096)
    );
    let (s, _, b) = raw_post(a, "/mcp", &[], big).await;
    assert_eq!(s, 413, "{b}");
    assert!(b.contains("maxMessageBytes (2048 bytes)"), "{b}");

    let (s, _, b) = raw_post(
        a,
        "/mcp",
        &[("mcp-session-id", "nope")],
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
    .await;
    assert_eq!(s, 404, "{b}");

    let (s, _, b) = raw_post(
        a,
        "/mcp",
        &[],
        r#"{"jsonrpc":"2.0","id":"d","method":"server/discover"}"#,
    )
    .await;
    assert_eq!(
        (s, body_json(&b)["error"]["code"].clone()),
        (200, json!(-32601)),
        "{b}"
    );

    let (s, h, b) = raw_post(a, "/mcp", &[], INIT).await;
    assert_eq!(s, 200, "{b}");
    let init = body_json(&b);
    assert_eq!(init["result"]["protocolVersion"], json!("2025-06-18"));
    assert!(init["result"]["capabilities"]["tools"].is_object());
    let sid = h
        .get("mcp-session-id")
        .expect("session header")
        .to_str()
        .expect("ascii")
        .to_string();
    let hs = [("mcp-session-id", sid.as_str())];

    let rpc = |id: u32, method: &str, params: Json| {
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
    };
    let (_, _, b) = raw_post(a, "/mcp", &hs, rpc(2, "no/such", json!({}))).await;
    assert_eq!(body_json(&b)["error"]["code"], json!(-32601), "{b}");
    let (_, _, b) = raw_post(a, "/mcp", &hs, rpc(3, "tools/call", json!({}))).await;
    assert_eq!(body_json(&b)["error"]["code"], json!(-32602), "{b}");
    let (_, _, b) = raw_post(
        a,
        "/mcp",
        &hs,
        rpc(4, "tools/call", json!({"name": "nope"})),
    )
    .await;
    // One target, no prefix: the name goes to the target as is, and its own answer comes back.
    let v = body_json(&b);
    assert_eq!(v["id"], json!(4));
    assert_eq!(v["result"]["isError"], json!(true), "{b}");
    assert!(b.contains("Unknown tool: nope"), "{b}");
    let (_, _, b) = raw_post(a, "/mcp", &hs, rpc(5, "ping", json!({}))).await;
    assert_eq!(
        body_json(&b),
        json!({"jsonrpc": "2.0", "id": 5, "result": {}})
    );
    let (s, _, _) = raw_post(
        a,
        "/mcp",
        &hs,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(s, 202);
    let (s, _, b) = raw_post(
        a,
        "/mcp",
        &hs,
        r#"{"jsonrpc":"2.0","id":"gw-0-99","result":{}}"#,
    )
    .await;
    assert_eq!(s, 400, "a response to no pending request: {b}");

    let (s, _, _) = raw(a, "PUT", "/mcp", &hs, "").await;
    assert_eq!(s, 405);
    let pids = gw.backend.session_pids(&sid);
    assert_eq!(pids.len(), 1);
    assert!(alive(pids[0]));
    let (s, _, _) = raw(a, "DELETE", "/mcp", &hs, "").await;
    assert_eq!(s, 200);
    assert!(!alive(pids[0]), "DELETE waits for the child to exit");
    let (s, _, _) = raw_post(a, "/mcp", &hs, rpc(6, "ping", json!({}))).await;
    assert_eq!(s, 404, "deleted session is gone");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_and_fail_open_initialize() {
    let bad = "{name: bad, stdio: {cmd: /nonexistent/mcp-server}}";
    let closed = Gateway::start(
        &format!("targets:\n- {}\n- {bad}\n", stdio_target("a")),
        None,
    )
    .await;
    let (s, h, b) = raw_post(closed.addr, "/mcp", &[], INIT).await;
    assert_eq!(s, 200);
    assert!(h.get("mcp-session-id").is_none());
    let v = body_json(&b);
    assert_eq!(v["error"]["code"], json!(-32603), "{b}");
    assert!(b.contains("target 'bad' failed to initialize"), "{b}");
    assert!(b.contains("/nonexistent/mcp-server"), "{b}");
    closed.stop().await;

    let open = Gateway::start(
        &format!(
            "targets:\n- {}\n- {bad}\nfailureMode: failOpen\n",
            stdio_target("a")
        ),
        None,
    )
    .await;
    let out = open
        .client(
            "http",
            r#"out(sorted(t.name for t in (await c.list_tools()).tools)[:2])"#,
        )
        .await;
    assert_eq!(out[0], json!(["a_add", "a_crash"]));
    open.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_list_reports_the_dead_target() {
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
try:
    await c.call_tool("a_crash", {})
except Exception as e:
    pass
try:
    await c.list_tools()
    out("listed")
except Exception as e:
    out(str(e))
"#,
        )
        .await;
    let e = out[0].as_str().expect("error");
    assert!(e.contains("MCP target 'a' failed"), "{e}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_mode_uses_fresh_upstream_sessions() {
    let yaml = format!(
        "targets:\n- {}\nstatefulMode: stateless\n",
        stdio_target("a")
    );
    let gw = Gateway::start(&yaml, None).await;
    let out = gw
        .client(
            "http",
            r#"
out((await c.call_tool("echo", {"message": "s"})).content[0].text)
out(int((await c.call_tool("pid", {})).content[0].text))
out(int((await c.call_tool("pid", {})).content[0].text))
"#,
        )
        .await;
    assert_eq!(out[0], json!("a:s"));
    assert_ne!(out[1], out[2], "every request gets its own child");
    assert!(!alive(out[1].as_u64().expect("pid") as u32));
    assert_eq!(gw.backend.session_count(), 0);
    let (s, _, _) = raw(gw.addr, "GET", "/mcp", &[], "").await;
    assert_eq!(s, 405, "no GET stream without sessions");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_modes() {
    let always = Gateway::start(
        &format!("targets:\n- {}\nprefixMode: always\n", stdio_target("a")),
        None,
    )
    .await;
    let out = always
        .client(
            "http",
            r#"
out(sorted(t.name for t in (await c.list_tools()).tools)[:2])
out((await c.call_tool("a_echo", {"message": "p"})).content[0].text)
"#,
        )
        .await;
    assert_eq!(out, json!([["a_add", "a_crash"], "a:p"]));
    always.stop().await;

    let (_e, port) = everything_http().await;
    let never = Gateway::start(
        &format!(
            "targets:\n- {}\n- {{name: ev, mcp: {{host: 'http://127.0.0.1:{port}/mcp'}}}}\nprefixMode: never\n",
            stdio_target("a")
        ),
        None,
    )
    .await;
    let out = never
        .client(
            "http",
            r#"
names = [t.name for t in (await c.list_tools()).tools]
out(len(names) == len(set(names)))
out("get-sum" in names and "add" in names)
out((await c.call_tool("echo", {"message": "n"})).content[0].text)
out((await c.call_tool("get-sum", {"a": 1, "b": 2})).content[0].text)
"#,
        )
        .await;
    assert_eq!(out[0], json!(true), "duplicates hidden");
    assert_eq!(out[1], json!(true));
    assert_eq!(
        out[2],
        json!("a:n"),
        "first target serves a duplicated name"
    );
    assert!(out[3].as_str().expect("text").contains('3'), "{}", out[3]);
    never.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_rebinding_protection() {
    let gw = Gateway::start(
        &format!(
            "targets:\n- {}\ndnsRebindingProtection: true\n",
            stdio_target("a")
        ),
        None,
    )
    .await;
    let (s, _, b) = raw_post(gw.addr, "/mcp", &[("origin", "http://evil.example")], INIT).await;
    assert_eq!(s, 403, "{b}");
    let (s, _, _) = raw_post(
        gw.addr,
        "/mcp",
        &[("origin", "http://localhost:5173")],
        INIT,
    )
    .await;
    assert_eq!(s, 200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_are_reaped_with_their_children() {
    let yaml = format!(
        "targets:\n- {}\nsessionIdleTimeout: 1s\n",
        stdio_target("a")
    );
    let gw = Gateway::start(&yaml, None).await;
    let (s, h, b) = raw_post(gw.addr, "/mcp", &[], INIT).await;
    assert_eq!(s, 200, "{b}");
    let sid = h
        .get("mcp-session-id")
        .expect("session")
        .to_str()
        .expect("ascii")
        .to_string();
    let pids = gw.backend.session_pids(&sid);
    assert_eq!(pids.len(), 1);
    // Activity keeps it alive past the timeout...
    for _ in 0..4 {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        let (s, _, _) = raw_post(
            gw.addr,
            "/mcp",
            &[("mcp-session-id", &sid)],
            r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#,
        )
        .await;
        assert_eq!(s, 200);
    }
    assert_eq!(gw.backend.session_count(), 1);
    // ...silence ends it and its child.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while (gw.backend.session_count() > 0 || alive(pids[0])) && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(gw.backend.session_count(), 0);
    assert!(!alive(pids[0]), "reaped session's child must exit");
    gw.stop().await;
}
