//! `policies.authorization` (agentgateway's `RuleSet`): CEL rules over the request and its
//! caller (`apiKey.*`, `request.*`, `source.*`), decided as agentgateway decides them:
//!
//! 1. no rules: allow;
//! 2. any `deny` true: deny;
//! 3. any `require` not true: deny;
//! 4. any `allow` true: allow;
//! 5. otherwise deny when there are `allow` rules (an allowlist), allow when there are none.
//!
//! A rule that fails to evaluate (a missing field, a non-boolean) counts as false: a broken
//! `allow` does not allow, a broken `require` denies, a broken `deny` does not deny. A plain
//! string is an `allow` rule. A denied request gets 403.

use serde_json::Value;

use crate::cel::{Executor, Expression, Refs};
use crate::ctx::RequestLog;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Allow,
    Deny,
    Require,
}

#[derive(Debug)]
pub struct Rules {
    rules: Vec<(Kind, Expression)>,
    refs: Refs,
}

impl Rules {
    /// Parses `{rules: [...]}`; errors name the path below `path`.
    pub fn parse(v: &Value, path: &str) -> Result<Rules, (String, String)> {
        let o = v
            .as_object()
            .ok_or_else(|| (path.to_owned(), format!("expected `rules: [...]`, got {v}")))?;
        if let Some(k) = o.keys().find(|k| *k != "rules") {
            return Err((format!("{path}.{k}"), "unknown field".into()));
        }
        let list = o
            .get("rules")
            .and_then(Value::as_array)
            .ok_or_else(|| (format!("{path}.rules"), "required: a list of rules".into()))?;
        let mut rules = Vec::new();
        let mut refs = Refs::default();
        for (i, r) in list.iter().enumerate() {
            let p = format!("{path}.rules[{i}]");
            let (kind, src, at) = match r {
                Value::String(s) => (Kind::Allow, s.as_str(), p.clone()),
                Value::Object(m) if m.len() == 1 => {
                    let (k, v) = m.iter().next().expect("one entry");
                    let kind = match k.as_str() {
                        "allow" => Kind::Allow,
                        "deny" => Kind::Deny,
                        "require" => Kind::Require,
                        other => {
                            return Err((
                                format!("{p}.{other}"),
                                "expected `allow`, `deny` or `require`".into(),
                            ));
                        }
                    };
                    let src = v.as_str().ok_or_else(|| {
                        (
                            format!("{p}.{k}"),
                            format!("expected a CEL expression, got {v}"),
                        )
                    })?;
                    (kind, src, format!("{p}.{k}"))
                }
                other => {
                    return Err((
                        p,
                        format!(
                            "expected an expression or `{{allow|deny|require: expr}}`, got {other}"
                        ),
                    ));
                }
            };
            let expr = Expression::compile(src).map_err(|e| (at, e.to_string()))?;
            refs = refs.union(expr.references());
            rules.push((kind, expr));
        }
        Ok(Rules { rules, refs })
    }

    /// What the rules read (so the proxy can capture request headers when they do).
    pub fn references(&self) -> Refs {
        self.refs
    }

    pub fn allows(&self, log: &RequestLog) -> bool {
        if self.rules.is_empty() {
            return true;
        }
        let exec = Executor::new(log, self.refs);
        let holds = |e: &Expression| exec.eval_bool(e);
        let of = |k: Kind| self.rules.iter().filter(move |(kind, _)| *kind == k);
        if of(Kind::Deny).any(|(_, e)| holds(e)) {
            return false;
        }
        if of(Kind::Require).any(|(_, e)| !holds(e)) {
            return false;
        }
        if of(Kind::Allow).any(|(_, e)| holds(e)) {
            return true;
        }
        of(Kind::Allow).next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn log_with(team: Option<&str>, path: &str) -> RequestLog {
        let mut log = RequestLog::new("gw".into(), "l".into());
        log.path = path.into();
        log.method = "POST".into();
        if let Some(t) = team {
            log.identity = Some(Box::new(crate::ctx::Identity {
                key_id: "sha256:000000000000".into(),
                metadata: json!({"team": t}),
                allowed_models: None,
            }));
        }
        log
    }

    #[test]
    fn agentgateway_decision_order() {
        let r = Rules::parse(
            &json!({"rules": ["apiKey.team == 'red'", {"deny": "request.path.startsWith('/admin')"}]}),
            "p",
        )
        .unwrap();
        assert!(r.allows(&log_with(Some("red"), "/v1")));
        assert!(
            !r.allows(&log_with(Some("blue"), "/v1")),
            "allowlist: nothing allowed"
        );
        assert!(
            !r.allows(&log_with(None, "/v1")),
            "missing apiKey: the allow errs, so false"
        );
        assert!(!r.allows(&log_with(Some("red"), "/admin/x")), "deny wins");
        let deny_only =
            Rules::parse(&json!({"rules": [{"deny": "apiKey.team == 'blue'"}]}), "p").unwrap();
        assert!(
            deny_only.allows(&log_with(None, "/")),
            "a failing deny does not deny"
        );
        assert!(!deny_only.allows(&log_with(Some("blue"), "/")));
        let require = Rules::parse(
            &json!({"rules": [{"require": "apiKey.team == 'red'"}]}),
            "p",
        )
        .unwrap();
        assert!(
            !require.allows(&log_with(None, "/")),
            "a failing require denies"
        );
        assert!(require.allows(&log_with(Some("red"), "/")));
    }

    #[test]
    fn bad_rules_name_the_path() {
        let e = Rules::parse(&json!({"rules": [{"permit": "true"}]}), "p").unwrap_err();
        assert_eq!(e.0, "p.rules[0].permit");
        let e = Rules::parse(&json!({"rules": ["1 +"]}), "p").unwrap_err();
        assert_eq!(e.0, "p.rules[0]");
    }
}
