//! `promptGuard` (route `policies.ai.promptGuard`) and `guardrails` (`llm.policies`,
//! `llm.models[]`), as agentgateway's schema writes them, and their compilation. Every error
//! names its YAML path; guards this gateway cannot run (the cloud guards) are load errors.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::scan::{RuleSet, RuleSpec};
use super::{
    Action, Guard, GuardKind, Moderation, PromptGuard, Rejection, Scope, Webhook, WebhookHeader,
};
use crate::cel::Expression;

/// Default rejection, as agentgateway answers.
pub const DEFAULT_REJECTION_BODY: &str = "The request was rejected due to inappropriate content";
/// Default webhook and moderation call timeout (our extension: agentgateway has none).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawPromptGuard {
    /// `Enabled` (default) or `Disabled`: whether response guards apply to streams.
    pub streaming: Option<String>,
    #[serde(default)]
    pub request: Vec<RawGuard>,
    #[serde(default)]
    pub response: Vec<RawGuard>,
}

/// One guard: exactly one of `regex`, `webhook`, `openAIModeration` (or a cloud guard, which
/// is refused).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawGuard {
    pub rejection: Option<RawRejection>,
    /// Request guards only: `systemPrompt`, `messages`, `toolOutput`, `toolInput`.
    pub scope: Option<Vec<String>>,
    pub regex: Option<RawRegexRules>,
    pub webhook: Option<RawWebhook>,
    #[serde(rename = "openAIModeration")]
    pub openai_moderation: Option<RawModeration>,
    pub bedrock_guardrails: Option<yaml_serde::Value>,
    pub google_model_armor: Option<yaml_serde::Value>,
    pub azure_content_safety: Option<yaml_serde::Value>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawRejection {
    /// A string, or bytes as a list of integers (agentgateway's `Bytes`).
    pub body: Option<yaml_serde::Value>,
    pub status: Option<yaml_serde::Value>,
    pub headers: Option<RawHeaders>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawHeaders {
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawRegexRules {
    /// `mask` (default) or `reject`.
    pub action: Option<String>,
    pub rules: Vec<RawRegexRule>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawRegexRule {
    pub builtin: Option<String>,
    pub pattern: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawWebhook {
    pub target: RawTarget,
    /// Header name (or `:path`, `:method`, `:authority`) → CEL expression over the client's
    /// request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub forward_header_matches: Vec<RawHeaderMatch>,
    /// `failClosed` (default) or `failOpen`.
    pub failure_mode: Option<String>,
    /// Our extension: how long one call may take. Default 10s.
    pub timeout: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawTarget {
    /// `host:port`, or `http(s)://host[:port]`.
    pub host: Option<String>,
    pub service: Option<yaml_serde::Value>,
    pub backend: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawHeaderMatch {
    pub name: String,
    pub value: RawHeaderValueMatch,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawHeaderValueMatch {
    pub exact: Option<String>,
    pub regex: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawModeration {
    /// Default `omni-moderation-latest`.
    pub model: Option<String>,
    /// `backendAuth` (the key), and our `host` extension for an OpenAI-compatible endpoint.
    pub policies: Option<RawModerationPolicies>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawModerationPolicies {
    pub backend_auth: Option<RawModerationAuth>,
    #[serde(rename = "backendTLS")]
    pub backend_tls: Option<yaml_serde::Value>,
    pub request_header_modifier: Option<RawHeaders>,
    /// Our extension: the OpenAI-compatible endpoint (`http(s)://host[:port]`), default
    /// `https://api.openai.com`.
    pub host: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawModerationAuth {
    pub key: Option<RawKey>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum RawKey {
    Inline(String),
    File { file: String },
}

/// A compile error: YAML path and message.
pub type Problem = (String, String);

/// Compiles `raw` found at `path`.
pub fn compile(raw: &RawPromptGuard, path: &str) -> Result<PromptGuard, Vec<Problem>> {
    let mut problems = Vec::new();
    let streaming = match raw.streaming.as_deref() {
        None | Some("Enabled") => true,
        Some("Disabled") => false,
        Some(other) => {
            problems.push((
                format!("{path}.streaming"),
                format!("unknown mode {other:?} (use Enabled or Disabled)"),
            ));
            true
        }
    };
    let mut compile_phase = |guards: &[RawGuard], phase: &str| -> Vec<Guard> {
        guards
            .iter()
            .enumerate()
            .filter_map(|(i, g)| {
                let p = format!("{path}.{phase}[{i}]");
                compile_guard(g, &p, phase == "request", i, &mut problems)
            })
            .collect()
    };
    let request = compile_phase(&raw.request, "request");
    let response = compile_phase(&raw.response, "response");
    if problems.is_empty() {
        Ok(PromptGuard {
            streaming,
            request,
            response,
        })
    } else {
        Err(problems)
    }
}

fn compile_guard(
    g: &RawGuard,
    path: &str,
    request: bool,
    index: usize,
    problems: &mut Vec<Problem>,
) -> Option<Guard> {
    for (name, set) in [
        ("bedrockGuardrails", g.bedrock_guardrails.is_some()),
        ("googleModelArmor", g.google_model_armor.is_some()),
        ("azureContentSafety", g.azure_content_safety.is_some()),
    ] {
        if set {
            problems.push((
                format!("{path}.{name}"),
                format!("{name} is not supported by this gateway: it cannot be tested without the cloud service, so it is refused rather than accepted and skipped; use a regex, webhook or openAIModeration guard"),
            ));
            return None;
        }
    }
    let kinds = [
        g.regex.is_some(),
        g.webhook.is_some(),
        g.openai_moderation.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        problems.push((
            path.to_owned(),
            "set exactly one of regex, webhook or openAIModeration".into(),
        ));
        return None;
    }
    let scope = match (&g.scope, request) {
        (Some(_), false) => {
            problems.push((
                format!("{path}.scope"),
                "scope applies to request guards only".into(),
            ));
            return None;
        }
        (Some(list), true) => scope(list, &format!("{path}.scope"), problems)?,
        (None, _) => Scope::DEFAULT,
    };
    let rejection = rejection(g.rejection.as_ref(), &format!("{path}.rejection"), problems)?;
    let kind = if let Some(r) = &g.regex {
        regex(r, &format!("{path}.regex"), problems)?
    } else if let Some(w) = &g.webhook {
        webhook(w, &format!("{path}.webhook"), problems)?
    } else if let Some(m) = &g.openai_moderation {
        if !request {
            problems.push((
                format!("{path}.openAIModeration"),
                "openAIModeration is a request guard (agentgateway's schema has no response form)"
                    .into(),
            ));
            return None;
        }
        moderation(m, &format!("{path}.openAIModeration"), problems)?
    } else {
        return None;
    };
    Some(Guard {
        index,
        kind,
        rejection,
        scope,
    })
}

fn scope(list: &[String], path: &str, problems: &mut Vec<Problem>) -> Option<Scope> {
    if list.is_empty() {
        problems.push((path.to_owned(), "list at least one scope".into()));
        return None;
    }
    let mut s = Scope::NONE;
    for (i, v) in list.iter().enumerate() {
        s = s.with(match v.as_str() {
            "systemPrompt" => Scope::SYSTEM_PROMPT,
            "messages" => Scope::MESSAGES,
            "toolOutput" => Scope::TOOL_OUTPUT,
            "toolInput" => Scope::TOOL_INPUT,
            other => {
                problems.push((
                    format!("{path}[{i}]"),
                    format!(
                        "unknown scope {other:?} (use systemPrompt, messages, toolOutput, toolInput)"
                    ),
                ));
                return None;
            }
        });
    }
    Some(s)
}

fn rejection(
    r: Option<&RawRejection>,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<Rejection> {
    let mut out = Rejection::default();
    let Some(r) = r else {
        return Some(out);
    };
    if let Some(s) = &r.status {
        match s.as_u64().filter(|n| (100..=599).contains(n)) {
            Some(n) => out.status = n as u16,
            None => {
                problems.push((
                    format!("{path}.status"),
                    format!(
                        "invalid HTTP status {} (use 100-599)",
                        yaml_serde::to_string(s).unwrap_or_default().trim()
                    ),
                ));
                return None;
            }
        }
    }
    match &r.body {
        None => {}
        Some(yaml_serde::Value::String(s)) => out.body = Arc::from(s.as_bytes()),
        Some(yaml_serde::Value::Sequence(items)) => {
            let bytes: Option<Vec<u8>> = items
                .iter()
                .map(|v| v.as_u64().and_then(|n| u8::try_from(n).ok()))
                .collect();
            match bytes {
                Some(b) => out.body = Arc::from(b),
                None => {
                    problems.push((
                        format!("{path}.body"),
                        "a byte list holds integers 0-255".into(),
                    ));
                    return None;
                }
            }
        }
        Some(_) => {
            problems.push((
                format!("{path}.body"),
                "use a string (or a list of bytes)".into(),
            ));
            return None;
        }
    }
    if let Some(h) = &r.headers {
        out.headers = headers(h, &format!("{path}.headers"), problems)?;
    }
    Some(out)
}

/// Header edits: `(name, value, append)` pairs, and names to remove.
pub type HeaderEdits = (
    Vec<(http::HeaderName, http::HeaderValue, bool)>,
    Vec<http::HeaderName>,
);

fn headers(h: &RawHeaders, path: &str, problems: &mut Vec<Problem>) -> Option<HeaderEdits> {
    let mut edits = Vec::new();
    let mut remove = Vec::new();
    let mut ok = true;
    for (field, map, append) in [("set", &h.set, false), ("add", &h.add, true)] {
        for (k, v) in map {
            match (
                http::HeaderName::from_bytes(k.as_bytes()),
                http::HeaderValue::from_str(v),
            ) {
                (Ok(n), Ok(val)) => edits.push((n, val, append)),
                _ => {
                    problems.push((
                        format!("{path}.{field}[{k:?}]"),
                        format!("invalid header {k:?}: {v:?}"),
                    ));
                    ok = false;
                }
            }
        }
    }
    for (i, k) in h.remove.iter().enumerate() {
        match http::HeaderName::from_bytes(k.as_bytes()) {
            Ok(n) => remove.push(n),
            Err(_) => {
                problems.push((
                    format!("{path}.remove[{i}]"),
                    format!("invalid header name {k:?}"),
                ));
                ok = false;
            }
        }
    }
    ok.then_some((edits, remove))
}

fn regex(r: &RawRegexRules, path: &str, problems: &mut Vec<Problem>) -> Option<GuardKind> {
    let action = match r.action.as_deref() {
        None | Some("mask") | Some("Mask") => Action::Mask,
        Some("reject") | Some("Reject") => Action::Reject,
        Some(other) => {
            problems.push((
                format!("{path}.action"),
                format!("unknown action {other:?} (use mask or reject)"),
            ));
            return None;
        }
    };
    if r.rules.is_empty() {
        problems.push((format!("{path}.rules"), "list at least one rule".into()));
        return None;
    }
    let mut specs = Vec::new();
    for (i, rule) in r.rules.iter().enumerate() {
        match (&rule.builtin, &rule.pattern) {
            (Some(b), None) => specs.push(RuleSpec::Builtin(b.clone())),
            (None, Some(p)) => specs.push(RuleSpec::Pattern(p.clone())),
            _ => {
                problems.push((
                    format!("{path}.rules[{i}]"),
                    "set exactly one of builtin or pattern".into(),
                ));
                return None;
            }
        }
    }
    match RuleSet::compile(&specs) {
        Ok(rules) => Some(GuardKind::Regex {
            action,
            rules: Arc::new(rules),
        }),
        Err(e) => {
            let field = match specs.get(e.index) {
                Some(RuleSpec::Builtin(_)) => "builtin",
                _ => "pattern",
            };
            problems.push((format!("{path}.rules[{}].{field}", e.index), e.message));
            None
        }
    }
}

/// `http(s)://host[:port]` or `host:port` → (authority, tls).
pub fn parse_target(s: &str) -> Result<(String, bool), String> {
    let (rest, tls) = if let Some(r) = s.strip_prefix("https://") {
        (r, true)
    } else if let Some(r) = s.strip_prefix("http://") {
        (r, false)
    } else {
        (s, false)
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(format!(
            "invalid target {s:?} (use host:port or http(s)://host[:port])"
        ));
    }
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.ends_with(':') && p.parse::<u16>().is_ok());
    let authority = if has_port {
        authority.to_owned()
    } else if authority.contains(':') && !authority.starts_with('[') {
        return Err(format!("invalid port in target {s:?}"));
    } else {
        format!("{authority}:{}", if tls { 443 } else { 80 })
    };
    Ok((authority, tls))
}

fn webhook(w: &RawWebhook, path: &str, problems: &mut Vec<Problem>) -> Option<GuardKind> {
    let target = match (&w.target.host, &w.target.service, &w.target.backend) {
        (Some(h), None, None) => match parse_target(h) {
            Ok(t) => t,
            Err(e) => {
                problems.push((format!("{path}.target.host"), e));
                return None;
            }
        },
        (None, Some(_), None) => {
            problems.push((
                format!("{path}.target.service"),
                "service targets need a service registry, which this gateway does not have; use target.host".into(),
            ));
            return None;
        }
        (None, None, Some(b)) => {
            problems.push((
                format!("{path}.target.backend"),
                format!(
                    "backend {b:?}: named top-level backends are not supported; use target.host"
                ),
            ));
            return None;
        }
        _ => {
            problems.push((
                format!("{path}.target"),
                "set exactly one of host, service or backend".into(),
            ));
            return None;
        }
    };
    let fail_open = match w.failure_mode.as_deref() {
        None | Some("failClosed") => false,
        Some("failOpen") => true,
        Some(other) => {
            problems.push((
                format!("{path}.failureMode"),
                format!("unknown failure mode {other:?} (use failClosed or failOpen)"),
            ));
            return None;
        }
    };
    let timeout = match &w.timeout {
        None => DEFAULT_CALL_TIMEOUT,
        Some(t) => match crate::time::parse_duration(t) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                problems.push((format!("{path}.timeout"), "must be above zero".into()));
                return None;
            }
            Err(e) => {
                problems.push((format!("{path}.timeout"), e));
                return None;
            }
        },
    };
    let mut headers = Vec::new();
    for (name, expr) in &w.headers {
        let p = format!("{path}.headers[{name:?}]");
        let target = match name.as_str() {
            ":path" | ":method" | ":authority" => None,
            n => match http::HeaderName::from_bytes(n.as_bytes()) {
                Ok(h) => Some(h),
                Err(_) => {
                    problems.push((p, format!("invalid header name {name:?}")));
                    return None;
                }
            },
        };
        match Expression::compile(expr) {
            Ok(e) => headers.push(WebhookHeader {
                name: name.clone(),
                header: target,
                expr: Arc::new(e),
            }),
            Err(e) => {
                problems.push((p, format!("invalid CEL expression {expr:?}: {e}")));
                return None;
            }
        }
    }
    let mut forward = Vec::new();
    for (i, m) in w.forward_header_matches.iter().enumerate() {
        let p = format!("{path}.forwardHeaderMatches[{i}]");
        let Ok(name) = http::HeaderName::from_bytes(m.name.as_bytes()) else {
            problems.push((
                format!("{p}.name"),
                format!("invalid header name {:?}", m.name),
            ));
            return None;
        };
        let matcher = match (&m.value.exact, &m.value.regex) {
            (Some(e), None) => super::HeaderValueMatch::Exact(e.clone()),
            (None, Some(r)) => match regex::Regex::new(&format!("^(?:{r})$")) {
                Ok(re) => super::HeaderValueMatch::Regex(re),
                Err(e) => {
                    problems.push((
                        format!("{p}.value.regex"),
                        format!("invalid regex {r:?}: {e}"),
                    ));
                    return None;
                }
            },
            _ => {
                problems.push((
                    format!("{p}.value"),
                    "set exactly one of exact or regex".into(),
                ));
                return None;
            }
        };
        forward.push((name, matcher));
    }
    Some(GuardKind::Webhook(Arc::new(Webhook {
        authority: target.0,
        tls: target.1,
        headers,
        forward,
        fail_open,
        timeout,
    })))
}

fn moderation(m: &RawModeration, path: &str, problems: &mut Vec<Problem>) -> Option<GuardKind> {
    let pol = m.policies.clone().unwrap_or_default();
    if pol.backend_tls.is_some() {
        problems.push((
            format!("{path}.policies.backendTLS"),
            "backendTLS is not supported for openAIModeration; the endpoint is verified against the system's web PKI roots".into(),
        ));
        return None;
    }
    let (authority, tls) =
        match parse_target(pol.host.as_deref().unwrap_or("https://api.openai.com")) {
            Ok(t) => t,
            Err(e) => {
                problems.push((format!("{path}.policies.host"), e));
                return None;
            }
        };
    let key = match pol.backend_auth.as_ref().and_then(|a| a.key.as_ref()) {
        None => None,
        Some(RawKey::Inline(k)) => Some(k.clone()),
        Some(RawKey::File { file }) => match std::fs::read_to_string(file) {
            Ok(k) => Some(k.trim().to_owned()),
            Err(e) => {
                problems.push((
                    format!("{path}.policies.backendAuth.key.file"),
                    format!("cannot read {file:?}: {e}"),
                ));
                return None;
            }
        },
    };
    let headers = match &pol.request_header_modifier {
        Some(h) => headers(
            h,
            &format!("{path}.policies.requestHeaderModifier"),
            problems,
        )?,
        None => (Vec::new(), Vec::new()),
    };
    Some(GuardKind::Moderation(Arc::new(Moderation {
        authority,
        tls,
        model: m
            .model
            .clone()
            .unwrap_or_else(|| "omni-moderation-latest".into()),
        key: key.map(crate::ctx::redact::Secret::new),
        headers,
        timeout: DEFAULT_CALL_TIMEOUT,
    })))
}
