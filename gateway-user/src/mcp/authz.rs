//! `mcpAuthorization`: CEL rules over `mcp.*` and the HTTP request, compiled at config load
//! with the shared engine (`crate::cel`), evaluated per tool/prompt/resource to filter list
//! results and to deny calls.
//!
//! Each question is evaluated against the request record with `mcp` describing the subject:
//! `mcp.methodName`, `mcp.sessionId`, and `mcp.tool.{name,target,arguments}` for tools,
//! `mcp.prompt.{name,target}` for prompts, `mcp.resource.{name,target}` for resources (the
//! target's own names, not the prefixed ones, as agentgateway does). `request.*`, `source.*`
//! and the rest of the CEL context come from the HTTP request. An expression that fails to
//! evaluate (for example one reading `jwt`, which this gateway does not populate) counts as
//! "did not match": it never allows and never denies.

use serde_json::Value as Json;

use super::config::{RawMcpAuthorization, RawMcpKeyedRule, RawMcpRule};
use crate::cel::{CelError, Executor, Expression, Refs};
use crate::ctx::{McpInfo, RequestLog};

/// Errors while compiling rules.
#[derive(Debug, thiserror::Error)]
pub enum AuthzError {
    #[error("{path}: {source}")]
    Compile { path: String, source: CelError },
}

/// What a rule is asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tool,
    Prompt,
    Resource,
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

impl Subject<'_> {
    /// The `mcp` record CEL sees for this question.
    fn info(&self) -> McpInfo {
        let mut m = McpInfo {
            method: Some(self.method.to_string()),
            session_id: self.session_id.map(str::to_string),
            target: Some(self.target.to_string()),
            ..Default::default()
        };
        match self.kind {
            Kind::Tool => {
                m.tool_name = Some(self.name.to_string());
                m.tool_arguments = self.arguments.cloned();
            }
            Kind::Prompt => m.prompt_name = Some(self.name.to_string()),
            Kind::Resource => m.resource = Some(self.name.to_string()),
        }
        m
    }
}

/// A compiled rule set.
#[derive(Debug, Default)]
pub struct Authorizer {
    allow: Vec<Expression>,
    deny: Vec<Expression>,
    require: Vec<Expression>,
    refs: Refs,
}

impl Authorizer {
    /// Compiles `raw`; `yaml_path` points at the `mcpAuthorization` block for error messages.
    pub fn compile(raw: Option<&RawMcpAuthorization>, yaml_path: &str) -> Result<Self, AuthzError> {
        let mut a = Authorizer::default();
        let Some(raw) = raw else { return Ok(a) };
        let mut refs: Option<Refs> = None;
        for (i, rule) in raw.rules.iter().enumerate() {
            let (list, src) = match rule {
                RawMcpRule::Allow(s) | RawMcpRule::Keyed(RawMcpKeyedRule::Allow(s)) => {
                    (&mut a.allow, s)
                }
                RawMcpRule::Keyed(RawMcpKeyedRule::Deny(s)) => (&mut a.deny, s),
                RawMcpRule::Keyed(RawMcpKeyedRule::Require(s)) => (&mut a.require, s),
            };
            let expr = Expression::compile(src).map_err(|source| AuthzError::Compile {
                path: format!("{yaml_path}.rules[{i}]"),
                source,
            })?;
            let r = expr.references();
            refs = Some(refs.map_or(r, |acc| acc.union(r)));
            list.push(expr);
        }
        a.refs = refs.unwrap_or_default();
        Ok(a)
    }

    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty() && self.require.is_empty()
    }

    /// agentgateway semantics: no rules allows; a true deny denies; every require must be true;
    /// with allow rules, one must be true; with only deny/require rules, allow.
    ///
    /// `scratch` is a copy of the request record that this call overwrites `mcp` in; callers
    /// reuse one per request so a list of N tools costs one clone, not N.
    pub fn allows(&self, subject: &Subject<'_>, scratch: &mut RequestLog) -> bool {
        if self.is_empty() {
            return true;
        }
        scratch.mcp = Some(subject.info());
        let exec = Executor::new(scratch, self.refs);
        let matches = |e: &Expression| match exec.eval(e) {
            Ok(crate::cel::Value::Bool(b)) => b,
            Ok(other) => {
                tracing::debug!(rule = %e.source(), "mcpAuthorization rule returned {other:?}, not a bool");
                false
            }
            Err(err) => {
                tracing::debug!(rule = %e.source(), "mcpAuthorization rule did not evaluate: {err}");
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
                a.allows(&subject, &mut log),
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
    fn prompts_and_resources_have_their_own_names() {
        let mut log = RequestLog::new(String::new(), String::new());
        let a = authorizer(&[
            allow(r#"mcp.prompt.name == "greet" && mcp.prompt.target == "a""#),
            allow(r#"mcp.resource.name == "memo://note""#),
        ]);
        let mut s = tool("greet", "a");
        s.kind = Kind::Prompt;
        assert!(a.allows(&s, &mut log));
        s.kind = Kind::Tool;
        assert!(
            !a.allows(&s, &mut log),
            "a tool named greet is not the prompt"
        );
        let mut r = tool("memo://note", "b");
        r.kind = Kind::Resource;
        assert!(a.allows(&r, &mut log));
    }

    #[test]
    fn arguments_are_visible() {
        let args = json!({"message": "secret"});
        let mut s = tool("echo", "a");
        s.arguments = Some(&args);
        let a = authorizer(&[allow(r#"mcp.tool.arguments.message != "secret""#)]);
        assert!(!a.allows(&s, &mut RequestLog::new(String::new(), String::new())));
    }
}
