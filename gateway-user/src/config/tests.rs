//! Config loading: every error path names its YAML path and value.

use super::*;

fn errs(yaml: &str) -> Vec<String> {
    match load_str(yaml, Source::Embedded) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn env_none(_: &str) -> Option<String> {
    None
}

#[test]
fn errors_under_secret_fields_do_not_echo_the_value() {
    let e = errs(
        "binds:\n- port: 3000\n  listeners:\n  - routes:\n    - backends: [{host: 127.0.0.1:1}]\n      policies:\n        backendAuth: \"sk-live-do-not-print\"\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(!e[0].contains("sk-live-do-not-print"), "{}", e[0]);
    assert!(
        e[0].contains("backendAuth") && e[0].contains("<redacted>"),
        "{}",
        e[0]
    );
    let e = errs("config:\n  tracing:\n    headers: \"Authorization: Basic c2VjcmV0\"\n");
    assert!(!e[0].contains("c2VjcmV0"), "{}", e[0]);
    // Other fields keep naming the bad value.
    let e = errs("binds:\n- port: \"not-a-port\"\n");
    assert!(e[0].contains("not-a-port"), "{}", e[0]);
}

#[test]
fn embedded_default_is_valid() {
    let snap = load_str(EMBEDDED_DEFAULT, Source::Embedded).expect("embedded default");
    assert_eq!(snap.binds.len(), 1);
    assert_eq!(snap.binds[0].listeners[0].routes.len(), 3);
}

#[test]
fn unknown_field_names_path() {
    let e =
        errs("binds:\n- port: 3000\n  listeners:\n  - routes:\n    - backends:\n      - hots: x\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("binds[0].listeners[0].routes[0].backends[0]"),
        "{e:?}"
    );
    assert!(e[0].contains("hots"), "{e:?}");
}

#[test]
fn bad_type_names_path_and_value() {
    let e = errs("binds:\n- port: notaport\n  listeners: []\n");
    assert!(e[0].contains("binds[0].port"), "{e:?}");
    assert!(e[0].contains("notaport"), "{e:?}");
}

#[test]
fn backend_needs_exactly_one_kind() {
    let e = errs(
        "binds:\n- port: 1\n  listeners:\n  - routes:\n    - backends:\n      - {host: 'a:1', ai: {provider: {openAI: {}}}}\n",
    );
    assert!(
        e[0].contains("backends[0]") && e[0].contains("exactly one"),
        "{e:?}"
    );
}

#[test]
fn unknown_provider_is_listed() {
    let e = errs(
        "binds:\n- port: 1\n  listeners:\n  - routes:\n    - backends:\n      - ai: {name: x, provider: {openaii: {}}}\n",
    );
    assert!(
        e.iter()
            .any(|e| e.contains("ai.provider.openaii") && e.contains("unknown provider")),
        "{e:?}"
    );
}

#[test]
fn every_error_is_reported() {
    let e = errs(
        "config:\n  statsAddr: nonsense\nbinds:\n- port: 1\n  listeners:\n  - routes:\n    - matches: [{path: {regex: '('}}]\n      policies: {timeout: {requestTimeout: 5 parsecs}}\n      backends: [{host: 'h:1'}]\n",
    );
    assert!(e.iter().any(|e| e.contains("config.statsAddr")), "{e:?}");
    assert!(
        e.iter().any(|e| e.contains("matches[0].path.regex")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.contains("timeout.requestTimeout") && e.contains("5 parsecs")),
        "{e:?}"
    );
}

#[test]
fn duplicate_ports_rejected() {
    let e = errs("binds:\n- {port: 1, listeners: []}\n- {port: 1, listeners: []}\n");
    assert!(e[0].contains("already used"), "{e:?}");
}

#[test]
fn env_expansion() {
    let env = |k: &str| (k == "KEY").then(|| "sk-123".to_owned());
    let raw = parse_raw(
        "binds:\n- port: 1\n  listeners:\n  - routes:\n    - backends: [{host: 'h:1'}]\n      policies: {backendAuth: {key: $KEY}, requestHeaderModifier: {set: {x: 'a-${KEY}-b'}}}\n",
        &env,
    )
    .expect("parse");
    let p = raw.binds[0].listeners[0].routes[0]
        .policies
        .as_ref()
        .expect("policies");
    match p.backend_auth.as_ref().and_then(|a| a.key.as_ref()) {
        Some(raw::RawSecretRef::Inline(k)) => assert_eq!(k, "sk-123"),
        other => panic!("unexpected {other:?}"),
    }
    let set = &p.request_header_modifier.as_ref().expect("modifier").set;
    assert_eq!(set["x"], "a-sk-123-b");
}

#[test]
fn missing_env_var_names_path() {
    let e = parse_raw("binds:\n- port: 1\n  listeners:\n  - routes:\n    - policies: {backendAuth: {key: $NOPE}}\n", &env_none)
        .expect_err("missing var");
    assert!(
        e.to_string()
            .contains("binds[0].listeners[0].routes[0].policies.backendAuth.key"),
        "{e}"
    );
    assert!(e.to_string().contains("NOPE"), "{e}");
}

#[test]
fn llm_shorthand_and_mcp_shorthand_compile() {
    let snap = load_str(
        "llm:\n  port: 4001\n  models:\n  - name: smart\n    provider: openAI\n    params: {model: gpt-5, apiKey: k}\n  - name: anthropic/*\n    provider: anthropic\n    params: {apiKey: k}\n    transformation:\n      model: llmRequest.model.stripPrefix(\"anthropic/\")\n",
        Source::Embedded,
    )
    .expect("llm shorthand");
    assert_eq!(snap.binds[0].port, 4001);
}

#[test]
fn access_log_policy_merges_over_config_logging() {
    let snap = load_str(
        "config:\n  logging:\n    format: json\n    fields:\n      add: {a: '\"1\"'}\nfrontendPolicies:\n  accessLog:\n    filter: 'response.code >= 400'\n    add: {user: 'request.headers[\"x-user\"]'}\n    remove: [src.addr]\n",
        Source::Embedded,
    )
    .expect("accessLog policy");
    let l = snap.logging.as_ref().expect("logging");
    assert_eq!(l.format.as_deref(), Some("json"));
    assert_eq!(l.filter.as_deref(), Some("response.code >= 400"));
    let f = l.fields.as_ref().expect("fields");
    let names: Vec<&str> = f.add.0.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, vec!["a", "user"]);
    assert_eq!(f.remove, vec!["src.addr".to_owned()]);
}

/// A 205-byte expression found by fuzzing made the previous CEL parser grow to 4.9 GB in 21 s
/// and abort the process. Loading it must fail fast, naming the rule's path and quoting it.
#[test]
fn cel_parser_blowup_input_is_a_fast_config_error() {
    let expr = include_str!("../../fuzz/regressions/cel/parser-memory-blowup");
    // Single-quoted YAML keeps the backslash; the expression has no quote of its own.
    assert!(!expr.contains('\''));
    let yaml = format!(
        "binds:\n- port: 3000\n  listeners:\n  - routes:\n    - backends:\n      - mcp:\n          targets: [{{name: a, stdio: {{cmd: x}}}}]\n        policies:\n          mcpAuthorization:\n            rules: ['{expr}']\n"
    );
    let start = std::time::Instant::now();
    let e = errs(&yaml);
    let took = start.elapsed();
    assert!(took < std::time::Duration::from_secs(1), "took {took:?}");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("backends[0].mcp.policies.mcpAuthorization.rules[0]: CEL expression \"o+[[Y[--(--[[,--;;;("),
        "{}",
        e[0]
    );
    assert!(
        e[0].ends_with("has ';' at byte 16, which starts no CEL token"),
        "{}",
        e[0]
    );
    assert!(
        e[0].len() < 600,
        "the expression is quoted cut short: {}",
        e[0]
    );
}

fn guarded(block: &str) -> Vec<String> {
    let indented: String = block
        .lines()
        .map(|l| format!("            {l}\n"))
        .collect();
    errs(&format!(
        "binds:\n- port: 3000\n  listeners:\n  - routes:\n    - backends: [{{ai: {{name: o, provider: {{openAI: {{}}}}}}}}]\n      policies:\n        ai:\n          promptGuard:\n{indented}"
    ))
}

#[test]
fn prompt_guard_errors_name_the_path() {
    let base = "binds[0].listeners[0].routes[0].policies.ai.promptGuard";
    let cases = [
        (
            "request:\n- regex:\n    rules:\n    - pattern: \"(\"",
            format!("{base}.request[0].regex.rules[0].pattern"),
            "invalid regex",
        ),
        (
            "request:\n- regex:\n    rules:\n    - builtin: ssn\n    - builtin: nope",
            format!("{base}.request[0].regex.rules[1].builtin"),
            "unknown builtin \"nope\"",
        ),
        (
            "request:\n- regex: {rules: [{builtin: ssn}]}\n  rejection: {status: 99}",
            format!("{base}.request[0].rejection.status"),
            "invalid HTTP status 99",
        ),
        (
            "response:\n- bedrockGuardrails: {guardrailIdentifier: x, guardrailVersion: '1', region: us-east-1}",
            format!("{base}.response[0].bedrockGuardrails"),
            "not supported",
        ),
        (
            "request:\n- regex: {action: block, rules: [{builtin: ssn}]}",
            format!("{base}.request[0].regex.action"),
            "unknown action",
        ),
        (
            "request:\n- webhook: {target: {host: 'localhost:1'}, failureMode: sometimes}",
            format!("{base}.request[0].webhook.failureMode"),
            "unknown failure mode",
        ),
        (
            "request:\n- regex: {rules: [{builtin: ssn}]}\n  scope: [messages, everything]",
            format!("{base}.request[0].scope[1]"),
            "unknown scope",
        ),
        (
            "streaming: Sometimes",
            format!("{base}.streaming"),
            "unknown mode",
        ),
    ];
    for (block, path, msg) in cases {
        let e = guarded(block);
        assert_eq!(e.len(), 1, "{block}: {e:?}");
        assert!(e[0].contains(&format!("{path}: ")), "{block}: {}", e[0]);
        assert!(e[0].contains(msg), "{block}: {}", e[0]);
    }
    assert!(guarded("request:\n- regex: {rules: [{builtin: ssn}, {pattern: 'k-[0-9]+'}]}\n  scope: [toolOutput]\nresponse:\n- webhook: {target: {host: 'http://127.0.0.1:9'}, timeout: 2s}").is_empty());
}

#[test]
fn llm_guardrails_and_unimplemented_llm_policies() {
    let ok = "llm:\n  policies:\n    guardrails:\n      request:\n      - regex: {rules: [{builtin: email}]}\n  models:\n  - name: a\n    provider: openAI\n  - name: b\n    provider: openAI\n    guardrails:\n      response:\n      - regex: {rules: [{builtin: ssn}]}\n";
    let snap = load_str(ok, Source::Embedded).expect("valid");
    let snapshot::BackendKind::Models(models) =
        &snap.binds[0].listeners[0].routes[0].backends[0].kind
    else {
        panic!("llm backend");
    };
    let a = models.entries[0]
        .backend
        .prompt_guard
        .as_ref()
        .expect("shared guard");
    assert_eq!((a.request.len(), a.response.len()), (1, 0));
    let b = models.entries[1]
        .backend
        .prompt_guard
        .as_ref()
        .expect("own guard");
    assert_eq!((b.request.len(), b.response.len()), (0, 1));
    let e = errs("llm:\n  policies:\n    extAuthz: {}\n  models: []\n");
    assert!(
        e[0].contains("llm.policies.extAuthz: ") && e[0].contains("not supported"),
        "{e:?}"
    );
    // Identity and limits compile onto the model router, errors under `llm.policies`.
    let snap = load_str(
        "llm:\n  policies:\n    apiKey: {mode: strict, keys: [{key: k}]}\n    localRateLimit: [{maxTokens: 1, fillInterval: 1s}]\n  models: []\n",
        Source::Embedded,
    )
    .expect("valid");
    let p = &snap.binds[0].listeners[0].routes[0].backends[0].policies;
    assert!(p.api_key.is_some() && p.local_rate_limit.is_some());
    let e = errs(
        "llm:\n  policies:\n    localRateLimit: [{maxTokens: 1, fillInterval: 0s}]\n  models: []\n",
    );
    assert!(
        e[0].contains("llm.policies.localRateLimit[0].fillInterval: "),
        "{e:?}"
    );
    let e = errs(
        "llm:\n  models:\n  - name: a\n    provider: openAI\n    guardrails:\n      request:\n      - regex: {rules: [{builtin: zip}]}\n",
    );
    assert!(
        e[0].contains("llm.models[0].guardrails.request[0].regex.rules[0].builtin: "),
        "{e:?}"
    );
}
