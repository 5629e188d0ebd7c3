//! A reload's telemetry: every changed expression applies to the next request, a bad one
//! changes nothing, and a changed exporter is named as waiting for a restart.

use super::*;

fn line_of(t: &Telemetry, lines: &Lines) -> String {
    t.finish(gemini_log());
    lines.recv_timeout(Duration::from_secs(1)).expect("a line")
}

fn cfg<'a>(
    tracing: Option<&'a RawTracing>,
    logging: Option<&'a RawLogging>,
) -> TelemetryConfig<'a> {
    TelemetryConfig {
        tracing,
        otlp_logs: None,
        logging,
        frontend_tracing: None,
        gateway_name: "default/agentgateway",
    }
}

#[test]
fn changed_access_log_fields_apply_to_the_next_request() {
    let first: RawLogging = yaml("fields: {add: {team: '\"red\"'}}");
    let (t, _, lines) = build_with(None, Some(&first), None, &no_env).expect("builds");
    assert!(line_of(&t, &lines).contains("team=red"));

    let second: RawLogging = yaml(
        "fields: {add: {team: '\"blue\"', model: llm.response_model}, remove: [duration]}\nfilter: 'true'",
    );
    let p = t
        .prepare_with(cfg(None, Some(&second)), &no_env)
        .expect("compiles");
    assert!(p.restart.is_empty());
    t.apply(p);
    let line = line_of(&t, &lines);
    assert!(line.contains("team=blue"), "{line}");
    assert!(line.contains("model=gemini-1.5-flash-latest"), "{line}");
    assert!(!line.contains("duration="), "{line}");

    // A level that hides `info` turns the access log off; a filter that drops does too.
    let quiet: RawLogging = yaml("level: warn");
    t.apply(
        t.prepare_with(cfg(None, Some(&quiet)), &no_env)
            .expect("compiles"),
    );
    t.finish(gemini_log());
    assert!(lines.recv_timeout(Duration::from_millis(200)).is_err());
}

#[test]
fn a_bad_expression_fails_prepare_with_its_path_and_changes_nothing() {
    let first: RawLogging = yaml("fields: {add: {team: '\"red\"'}}");
    let (t, _, lines) = build_with(None, Some(&first), None, &no_env).expect("builds");
    let bad: RawLogging = yaml("fields: {add: {team: 'llm.(('}}");
    let err = t
        .prepare_with(cfg(None, Some(&bad)), &no_env)
        .err()
        .expect("a bad expression");
    assert!(
        err.to_string()
            .contains(r#"config.logging.fields.add["team"]"#),
        "{err}"
    );
    assert!(line_of(&t, &lines).contains("team=red"));
}

#[test]
fn tracing_fields_and_sampling_reload_but_the_exporter_waits_for_a_restart() {
    let port = dead_port();
    let first: RawTracing = yaml(&format!(
        "otlpEndpoint: http://127.0.0.1:{port}\nrandomSampling: false\nfields: {{add: {{a: '\"1\"'}}}}"
    ));
    let (t, _, _) = build_with(Some(&first), None, None, &no_env).expect("builds");
    let mut log = fixture();
    let headers = HeaderMap::new();
    t.start(&headers, &mut log);
    assert!(!log.trace.sampled);

    // Same exporter, new sampling and fields: applied.
    let second: RawTracing = yaml(&format!(
        "otlpEndpoint: http://127.0.0.1:{port}\nrandomSampling: true\nfields: {{add: {{a: llm.prompt}}}}"
    ));
    let p = t
        .prepare_with(cfg(Some(&second), None), &no_env)
        .expect("compiles");
    assert!(p.restart.is_empty());
    t.apply(p);
    let mut log = fixture();
    t.start(&headers, &mut log);
    assert!(log.trace.sampled, "the new sampling applies");
    assert!(t.capture().prompt, "the new fields decide what is captured");

    // A new collector (with a credential header) is reported, without the credential, and
    // the running tracing block stays whole.
    let moved: RawTracing = yaml(
        "otlpEndpoint: http://127.0.0.1:1\nheaders: {authorization: Basic c2VjcmV0}\nrandomSampling: false",
    );
    let p = t
        .prepare_with(cfg(Some(&moved), None), &no_env)
        .expect("compiles");
    assert_eq!(p.restart.len(), 1, "{:?}", p.restart);
    let r = &p.restart[0];
    assert_eq!(r.path, "config.tracing (exporter)");
    assert!(r.running.contains(&format!("127.0.0.1:{port}")), "{r:?}");
    assert!(
        r.configured.contains("127.0.0.1:1") && r.configured.contains("authorization"),
        "{r:?}"
    );
    assert!(!format!("{r:?}").contains("c2VjcmV0"));
    t.apply(p);
    let mut log = fixture();
    t.start(&headers, &mut log);
    assert!(
        log.trace.sampled,
        "the running sampling stays until the restart"
    );
}

#[test]
fn a_new_trace_destination_waits_for_a_restart_and_a_destinations_filter_reloads() {
    let port = dead_port();
    let first: RawTracing = yaml(&format!(
        "otlpEndpoint: http://127.0.0.1:{port}\nrandomSampling: true\ndestinations:\n- {{name: b, otlpEndpoint: 'http://127.0.0.1:{port}', filter: 'true'}}"
    ));
    let (t, _, _) = build_with(Some(&first), None, None, &no_env).expect("builds");
    assert_eq!(t.queues.len(), 2, "one exporter per destination");
    // Same destinations, a new filter: applied now.
    let refiltered: RawTracing = yaml(&format!(
        "otlpEndpoint: http://127.0.0.1:{port}\nrandomSampling: true\ndestinations:\n- {{name: b, otlpEndpoint: 'http://127.0.0.1:{port}', filter: 'request.path == \"/x\"'}}"
    ));
    let p = t
        .prepare_with(cfg(Some(&refiltered), None), &no_env)
        .expect("compiles");
    assert!(p.restart.is_empty(), "{:?}", p.restart);
    // Another destination (with a credential header): reported by name, without the credential.
    let more: RawTracing = yaml(&format!(
        "otlpEndpoint: http://127.0.0.1:{port}\nrandomSampling: true\ndestinations:\n- {{name: b, otlpEndpoint: 'http://127.0.0.1:{port}'}}\n- {{name: c, otlpEndpoint: 'http://127.0.0.1:1', headers: {{authorization: Basic c2VjcmV0}}}}"
    ));
    let p = t
        .prepare_with(cfg(Some(&more), None), &no_env)
        .expect("compiles");
    assert_eq!(p.restart.len(), 1, "{:?}", p.restart);
    let r = &p.restart[0];
    assert!(
        r.configured.contains("c: grpc http://127.0.0.1:1")
            && r.configured.contains("authorization"),
        "{r:?}"
    );
    assert!(!r.running.contains("c:"), "{r:?}");
    assert!(!format!("{r:?}").contains("c2VjcmV0"));
}
