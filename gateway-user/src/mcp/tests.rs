//! Unit tests for backend construction (config validation) and small helpers.

use super::*;

fn backend(yaml: &str) -> Result<Arc<McpBackend>, McpError> {
    let raw: RawMcpBackend = yaml_serde::from_str(yaml).expect("valid YAML for RawMcpBackend");
    McpBackend::new(
        "b",
        &raw,
        None,
        "binds[0].listeners[0].routes[1].backends[0].mcp",
    )
}

fn err(yaml: &str) -> String {
    backend(yaml)
        .expect_err("config must be rejected")
        .to_string()
}

#[test]
fn config_errors_name_path_and_value() {
    let cases = [
        ("targets: []", "backends[0].mcp.targets: at least one"),
        (
            "targets: [{name: a, stdio: {cmd: x}}, {name: a, stdio: {cmd: y}}]",
            "targets[1].name: duplicate target name \"a\"",
        ),
        (
            "targets: [{name: a}]",
            "targets[0]: target \"a\" needs exactly one",
        ),
        (
            "targets: [{name: a, stdio: {cmd: x}, mcp: {host: 'http://h/mcp'}}]",
            "needs exactly one",
        ),
        (
            "targets: [{name: '', stdio: {cmd: x}}]",
            "targets[0].name: must not be empty",
        ),
        (
            "targets: [{name: a, mcp: {host: 'ftp://h/x'}}]",
            "must be an http:// or https:// URL",
        ),
        (
            "targets: [{name: a, mcp: {backend: svc}}]",
            "targets[0].mcp.backend",
        ),
        (
            "targets: [{name: a, openapi: {schema: {}}}]",
            "OpenAPI targets are not supported",
        ),
        (
            "targets: [{name: a, stdio: {cmd: x}}]\nrequestTimeout: soon",
            "requestTimeout: invalid duration \"soon\"",
        ),
        (
            "targets: [{name: a, stdio: {cmd: x}}]\nmaxMessageBytes: 0",
            "maxMessageBytes: 0 is out of range",
        ),
    ];
    for (yaml, want) in cases {
        let got = err(yaml);
        assert!(
            got.contains(want),
            "yaml {yaml:?}\n got: {got}\nwant: {want}"
        );
    }
}

#[test]
fn authz_compile_error_is_reported() {
    let raw: RawMcpBackend =
        yaml_serde::from_str("targets: [{name: a, stdio: {cmd: x}}]").expect("yaml");
    let authz: RawMcpAuthorization =
        yaml_serde::from_str("rules: ['mcp.tool.name ==']").expect("yaml");
    let e = McpBackend::new("b", &raw, Some(&authz), "r.backends[0].mcp").expect_err("bad CEL");
    assert!(
        e.to_string()
            .contains("r.backends[0].mcp.policies.mcpAuthorization.rules[0]"),
        "{e}"
    );
}

#[test]
fn target_urls() {
    let cases: [(&str, &str); 6] = [
        (
            "{host: 'http://localhost:3001/mcp'}",
            "http://localhost:3001/mcp",
        ),
        ("{host: 'https://example.com'}", "https://example.com/mcp"),
        ("{host: 'example.com:443'}", "https://example.com:443/mcp"),
        ("{host: '127.0.0.1:8080'}", "http://127.0.0.1:8080/mcp"),
        (
            "{host: 127.0.0.1, port: 9000, path: /custom}",
            "http://127.0.0.1:9000/custom",
        ),
        ("{host: h, port: 443, path: x}", "https://h:443/x"),
    ];
    for (yaml, want) in cases {
        let h: RawMcpHttpTarget = yaml_serde::from_str(yaml).expect("yaml");
        assert_eq!(
            target_url(&h, "/mcp", "p").expect("valid").to_string(),
            want,
            "{yaml}"
        );
    }
    let h: RawMcpHttpTarget = yaml_serde::from_str("{host: 'http://h/x', port: 1}").expect("yaml");
    assert!(target_url(&h, "/mcp", "p").is_err());
}

#[test]
fn query_and_locality() {
    let u: Uri = "/message?x=1&sessionId=abc".parse().expect("uri");
    assert_eq!(query_param(&u, "sessionId").as_deref(), Some("abc"));
    assert_eq!(query_param(&u, "y"), None);
    let mut h = http::HeaderMap::new();
    h.insert(http::header::HOST, "localhost:3000".parse().expect("hv"));
    assert!(is_local(&h));
    h.insert(
        http::header::ORIGIN,
        "http://evil.example".parse().expect("hv"),
    );
    assert!(!is_local(&h));
    h.insert(
        http::header::ORIGIN,
        "http://127.0.0.1:5173".parse().expect("hv"),
    );
    assert!(is_local(&h));
    h.insert(http::header::HOST, "[::1]:3000".parse().expect("hv"));
    assert!(is_local(&h));
    h.insert(http::header::HOST, "attacker.example".parse().expect("hv"));
    assert!(!is_local(&h));
}

#[tokio::test]
async fn session_map_reaps_idle_sessions_only() {
    let b = backend("targets: [{name: a, stdio: {cmd: x}}]").expect("valid");
    let idle = session::Session::new(b.shared.clone());
    let busy = session::Session::new(b.shared.clone());
    let streaming = session::Session::new(b.shared.clone());
    let running = session::Session::new(b.shared.clone());
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    streaming.set_stream(tx);
    let map = SessionMap::default();
    map.insert(idle.clone());
    map.insert(busy.clone());
    map.insert(streaming.clone());
    map.insert(running.clone());
    let guard = running.busy();
    tokio::time::sleep(Duration::from_millis(30)).await;
    busy.touch();
    let reaped = map.take_idle(Duration::from_millis(20));
    assert_eq!(reaped.len(), 1);
    assert_eq!(reaped[0].id, idle.id);
    assert_eq!(map.len(), 3);
    assert!(
        map.get(&running.id).is_some(),
        "a request in flight keeps the session"
    );
    drop(guard);
    tokio::time::sleep(Duration::from_millis(30)).await;
    let reaped = map.take_idle(Duration::from_millis(20));
    assert!(
        reaped.iter().any(|s| s.id == running.id),
        "idle once the request ended"
    );
    assert!(map.get(&streaming.id).is_some());
    assert_ne!(idle.id, busy.id, "session ids are random");
}
