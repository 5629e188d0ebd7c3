//! Metric families: label sets, streamed vs. plain counting, and a promtool lint of the exposition.

use std::time::{Duration, Instant};

use super::*;
use crate::ctx::{LlmInfo, McpInfo};

fn llm_log(streaming: bool) -> RequestLog {
    let mut log = RequestLog::new("default/gw".into(), "http".into());
    log.route = Some("default/openai".into());
    log.backend = Some("openai".into());
    log.method = "POST".into();
    log.status = Some(200);
    log.end = Some(log.start + Duration::from_millis(1500));
    log.llm = Some(LlmInfo {
        provider: "openai".into(),
        operation: "chat",
        request_model: Some("gpt-4o-mini".into()),
        response_model: Some("gpt-4o-mini-2024-07-18".into()),
        input_tokens: Some(12),
        output_tokens: Some(30),
        streaming,
        first_token: streaming.then(|| Duration::from_millis(300)),
        ..Default::default()
    });
    log
}

fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn streamed_and_plain_requests_count_alike() {
    let m = Metrics::new();
    m.record(&llm_log(false));
    m.record(&llm_log(true));
    let text = m.encode();
    let req = r#"agentgateway_requests_total{backend="openai",gateway="default/gw",listener="http",method="POST",protocol="llm",route="default/openai",status="200"}"#;
    assert_eq!(sample(&text, req), Some(2.0), "{text}");
    let input = r#"agentgateway_gen_ai_client_token_usage_sum{gateway="default/gw",gen_ai_operation_name="chat",gen_ai_request_model="gpt-4o-mini",gen_ai_response_model="gpt-4o-mini-2024-07-18",gen_ai_system="openai",gen_ai_token_type="input",listener="http",route="default/openai"}"#;
    assert_eq!(sample(&text, input), Some(24.0), "{text}");
    let ttft = "agentgateway_gen_ai_server_time_to_first_token_count{";
    assert_eq!(sample(&text, ttft), Some(1.0), "{text}");
    let tpot = "agentgateway_gen_ai_server_time_per_output_token_count{";
    assert_eq!(sample(&text, tpot), Some(2.0), "{text}");
}

#[test]
fn mcp_requests_are_labelled_by_method_server_resource() {
    let m = Metrics::new();
    let mut log = RequestLog::new("gw".into(), "l".into());
    log.end = Some(Instant::now());
    log.mcp = Some(McpInfo {
        method: Some("tools/call".into()),
        target: Some("everything".into()),
        tool_name: Some("echo".into()),
        ..Default::default()
    });
    m.record(&log);
    let text = m.encode();
    assert!(
        text.contains(r#"agentgateway_mcp_requests_total{gateway="gw",listener="l",method="tools/call",resource="echo",resource_type="tool",route="unknown",server="everything"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("agentgateway_mcp_operation_duration_seconds_count{"),
        "{text}"
    );
}

/// The exposition must lint clean. promtool is required in CI (CI=true) and skipped with a
/// note elsewhere.
#[test]
fn exposition_passes_promtool() {
    let m = Metrics::new();
    m.record(&llm_log(true));
    m.spans_dropped
        .with_label_values(&["default", "queue_full"])
        .inc();
    m.cel_errors.with_label_values(&["tracing"]).inc();
    m.access_log_dropped.inc();
    let text = m.encode();
    let promtool = std::path::Path::new("/usr/bin/promtool");
    if !promtool.exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "promtool missing under CI=true; install the Debian `prometheus` package"
        );
        eprintln!("promtool not installed; skipping lint");
        return;
    }
    use std::io::Write;
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn configured_labels_and_removed_families() {
    let cfg = MetricsConfig::parse(
        &serde_json::json!({
            "remove": ["agentgateway_mcp_requests_total", "request_duration_seconds"],
            "fields": {"add": {"team": "apiKey.team", "path": "request.path"}}
        }),
        "config.metrics",
    )
    .unwrap();
    let m = Metrics::with_config(std::sync::Arc::new(cfg)).unwrap();
    let mut log = RequestLog::new("gw".into(), "l".into());
    log.path = "/v1/chat".into();
    log.status = Some(200);
    log.identity = Some(Box::new(crate::ctx::Identity {
        key_id: "sha256:000000000000".into(),
        metadata: serde_json::json!({"team": "red"}),
        allowed_models: None,
    }));
    m.record(&log);
    let mut anon = RequestLog::new("gw".into(), "l".into());
    anon.path = "x".repeat(300);
    m.record(&anon);
    let text = m.encode();
    assert!(text.contains("team=\"red\""), "{text}");
    assert!(text.contains("path=\"/v1/chat\""), "{text}");
    assert!(text.contains("team=\"unknown\""), "a missing value: {text}");
    assert!(
        text.contains(&format!("path=\"{}\"", "x".repeat(128))),
        "cut at 128 bytes"
    );
    assert!(!text.contains(&"x".repeat(129)));
    assert!(!text.contains("agentgateway_mcp_requests_total"));
    assert!(!text.contains("agentgateway_request_duration_seconds"));
    assert!(text.contains("agentgateway_requests_total"));
}

#[test]
fn bad_metrics_config_names_the_path() {
    let p = "config.metrics";
    let e = MetricsConfig::parse(&serde_json::json!({"fields": {"add": {"route": "1"}}}), p)
        .unwrap_err();
    assert_eq!(
        e.0, "config.metrics.fields.add.route",
        "a label the gateway sets"
    );
    let e =
        MetricsConfig::parse(&serde_json::json!({"fields": {"add": {"a-b": "1"}}}), p).unwrap_err();
    assert_eq!(e.0, "config.metrics.fields.add.a-b");
    let e =
        MetricsConfig::parse(&serde_json::json!({"fields": {"add": {"t": "1 +"}}}), p).unwrap_err();
    assert_eq!(e.0, "config.metrics.fields.add.t");
    let e = MetricsConfig::parse(&serde_json::json!({"drop": []}), p).unwrap_err();
    assert_eq!(e.0, "config.metrics.drop");
}
