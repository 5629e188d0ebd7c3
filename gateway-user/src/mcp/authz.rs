//! `mcpAuthorization`: CEL rules over `mcp.*` and the HTTP request, compiled at config load,
//! evaluated per tool/prompt/resource to filter list results and to deny calls.
//!
//! The CEL activation is `mcp = {methodName, sessionId, tool|prompt|resource: {name, target,
//! arguments?}}` plus `request = {method, path, host, headers}`. An expression that fails to
//! evaluate (for example one referring to `jwt`, which this gateway does not populate) counts
//! as "did not match": it never allows, and never denies.
//!
//! TODO(cel): `crate::cel` (the shared engine the telemetry helper is writing) had not landed
//! when this was written, so expressions are compiled with `cel-interpreter` directly behind
//! [`RuleEngine`]. Swap [`CelInterpreter`] for an adapter over `crate::cel::Expression` once it
//! is on main, and drop the duplicate dependency.

use serde_json::{Map, Value as Json, json};

use crate::config::mcp::{RawMcpAuthorization, RawMcpKeyedRule, RawMcpRule};
use crate::ctx::RequestLog;

/// Errors while compiling rules.
#[derive(Debug, thiserror::Error)]
pub enum AuthzError {
    #[error("{path}: invalid CEL expression {expr:?}: {reason}")]
    Compile {
        path: String,
        expr: String,
        reason: String,
    },
}

/// What a rule is asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tool,
    Prompt,
    Resource,
}

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::Tool => "tool",
            Kind::Prompt => "prompt",
            Kind::Resource => "resource",
        }
    }
}

/// One authorization question: may this session use `kind` `name` of `target`?
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub kind: Kind,
    pub target: &'a str,
    /// The target's own name (not the prefixed one), as agentgateway evaluates it.
    pub name: &'a str,
    pub arguments: Option<&'a Json>,
    pub method: &'a str,
    pub session_id: Option<&'a str>,
}

/// A compiled boolean expression. The seam where `crate::cel` plugs in.
pub trait RuleEngine: Send + Sync + std::fmt::Debug {
    /// Evaluates to a bool; `Err` (including a non-bool result) means "no match".
    fn eval_bool(&self, activation: &Map<String, Json>) -> Result<bool, String>;
}

/// `cel-interpreter` backed rule.
#[derive(Debug)]
pub struct CelInterpreter {
    program: cel_interpreter::Program,
}

impl CelInterpreter {
    pub fn compile(src: &str) -> Result<Self, String> {
        // cel-parser 0.10 panics (antlr `unreachable!`) on some malformed input such as
        // `a ==`; a config typo must be an error, not a crash.
        let parsed = std::panic::catch_unwind(|| cel_interpreter::Program::compile(src))
            .map_err(|_| "syntax error (the CEL parser rejected the expression)".to_string())?;
        parsed
            .map(|program| CelInterpreter { program })
            .map_err(|e| e.to_string())
    }
}

impl RuleEngine for CelInterpreter {
    fn eval_bool(&self, activation: &Map<String, Json>) -> Result<bool, String> {
        let mut ctx = cel_interpreter::Context::default();
        for (k, v) in activation {
            ctx.add_variable(k.as_str(), v).map_err(|e| e.to_string())?;
        }
        match self.program.execute(&ctx) {
            Ok(cel_interpreter::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!("expected bool, got {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[derive(Debug)]
struct Rule {
    src: String,
    engine: Box<dyn RuleEngine>,
}

/// A compiled rule set.
#[derive(Debug, Default)]
pub struct Authorizer {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
    require: Vec<Rule>,
}

impl Authorizer {
    /// Compiles `raw`; `yaml_path` points at the `mcpAuthorization` block for error messages.
    pub fn compile(raw: Option<&RawMcpAuthorization>, yaml_path: &str) -> Result<Self, AuthzError> {
        let mut a = Authorizer::default();
        let Some(raw) = raw else { return Ok(a) };
        for (i, rule) in raw.rules.iter().enumerate() {
            let (list, src) = match rule {
                RawMcpRule::Allow(s) | RawMcpRule::Keyed(RawMcpKeyedRule::Allow(s)) => {
                    (&mut a.allow, s)
                }
                RawMcpRule::Keyed(RawMcpKeyedRule::Deny(s)) => (&mut a.deny, s),
                RawMcpRule::Keyed(RawMcpKeyedRule::Require(s)) => (&mut a.require, s),
            };
            let engine = CelInterpreter::compile(src).map_err(|reason| AuthzError::Compile {
                path: format!("{yaml_path}.rules[{i}]"),
                expr: src.clone(),
                reason,
            })?;
            list.push(Rule {
                src: src.clone(),
                engine: Box::new(engine),
            });
        }
        Ok(a)
    }

    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty() && self.require.is_empty()
    }

    /// agentgateway semantics: no rules allows; a true deny denies; every require must be true;
    /// with allow rules, one must be true; with only deny/require rules, allow.
    pub fn allows(&self, subject: &Subject<'_>, log: &RequestLog) -> bool {
        if self.is_empty() {
            return true;
        }
        let act = activation(subject, log);
        let matches = |r: &Rule| match r.engine.eval_bool(&act) {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(rule = %r.src, error = %e, "mcpAuthorization rule did not evaluate");
                false
            }
        };
        if self.deny.iter().any(matches) {
            return false;
        }
        if !self.require.iter().all(matches) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(matches)
    }
}

/// Builds the CEL variables for one question.
fn activation(subject: &Subject<'_>, log: &RequestLog) -> Map<String, Json> {
    let mut res = Map::new();
    res.insert("name".into(), subject.name.into());
    res.insert("target".into(), subject.target.into());
    if let Some(args) = subject.arguments {
        res.insert("arguments".into(), args.clone());
    }
    let mut mcp = Map::new();
    mcp.insert("methodName".into(), subject.method.into());
    if let Some(s) = subject.session_id {
        mcp.insert("sessionId".into(), s.into());
    }
    mcp.insert(subject.kind.key().into(), Json::Object(res));
    let headers: Map<String, Json> = log
        .request_headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), Json::String(v.clone())))
        .collect();
    let mut act = Map::new();
    act.insert("mcp".into(), Json::Object(mcp));
    act.insert(
        "request".into(),
        json!({"method": log.method, "path": log.path, "host": log.host, "headers": headers}),
    );
    act
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authorizer(rules: &[RawMcpRule]) -> Authorizer {
        let raw = RawMcpAuthorization {
            rules: rules.to_vec(),
        };
        Authorizer::compile(Some(&raw), "p").expect("compiles")
    }

    fn tool<'a>(name: &'a str, target: &'a str) -> Subject<'a> {
        Subject {
            kind: Kind::Tool,
            target,
            name,
            arguments: None,
            method: "tools/call",
            session_id: Some("s1"),
        }
    }

    fn allow(s: &str) -> RawMcpRule {
        RawMcpRule::Allow(s.into())
    }

    #[test]
    fn rule_table() {
        let mut log = RequestLog::new("gw".into(), "l".into());
        log.request_headers = vec![("X-User".into(), "alice".into())];
        let echo = tool("echo", "a");
        let add = tool("add", "b");
        let cases: Vec<(Vec<RawMcpRule>, Subject<'_>, bool)> = vec![
            (vec![], add, true),
            (vec![allow(r#"mcp.tool.name == "echo""#)], echo, true),
            (vec![allow(r#"mcp.tool.name == "echo""#)], add, false),
            (vec![allow(r#"mcp.tool.target == "b""#)], add, true),
            (
                vec![allow(
                    r#"request.headers["x-user"] == "alice" && mcp.tool.name == "add""#,
                )],
                add,
                true,
            ),
            // Unknown variable: evaluation error is no match.
            (vec![allow(r#"jwt.sub == "x""#)], echo, false),
            (
                vec![RawMcpRule::Keyed(RawMcpKeyedRule::Deny(
                    r#"mcp.tool.name == "add""#.into(),
                ))],
                add,
                false,
            ),
            (
                vec![RawMcpRule::Keyed(RawMcpKeyedRule::Deny(
                    r#"mcp.tool.name == "add""#.into(),
                ))],
                echo,
                true,
            ),
            (
                vec![
                    allow("true"),
                    RawMcpRule::Keyed(RawMcpKeyedRule::Require(r#"mcp.sessionId == "s2""#.into())),
                ],
                echo,
                false,
            ),
            // Non-bool result does not allow.
            (vec![allow(r#""yes""#)], echo, false),
        ];
        for (rules, subject, want) in cases {
            let a = authorizer(&rules);
            assert_eq!(
                a.allows(&subject, &log),
                want,
                "rules {rules:?} subject {subject:?}"
            );
        }
    }

    #[test]
    fn compile_error_names_path_and_rule() {
        let raw = RawMcpAuthorization {
            rules: vec![allow("true"), allow("mcp.tool.name ==")],
        };
        let err = Authorizer::compile(Some(&raw), "binds[0].policies.mcpAuthorization")
            .expect_err("bad CEL");
        let msg = err.to_string();
        assert!(
            msg.contains("binds[0].policies.mcpAuthorization.rules[1]"),
            "{msg}"
        );
        assert!(msg.contains("mcp.tool.name =="), "{msg}");
    }

    #[test]
    fn arguments_are_visible() {
        let args = json!({"message": "secret"});
        let mut s = tool("echo", "a");
        s.arguments = Some(&args);
        let a = authorizer(&[allow(r#"mcp.tool.arguments.message != "secret""#)]);
        assert!(!a.allows(&s, &RequestLog::new(String::new(), String::new())));
    }
}
