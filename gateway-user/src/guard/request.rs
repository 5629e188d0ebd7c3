//! The request phase: each request guard, in order, over the client's text (within its
//! scope). Masks edit the body in place; the first reject stops the phase.

use bytes::Bytes;
use http::HeaderMap;
use serde_json::Value;

use super::outcome::{Found, Timer, rule_name};
use super::webhook::{self, Called, Verdict};
use super::{Action, Guard, GuardKind, PromptGuard, Rejection, Transport, text};
use crate::ctx::{GuardAction, GuardInfo, GuardPhase, RequestLog};
use crate::llm::RouteType;

/// A rejected request or response: what the client gets.
#[derive(Debug)]
pub struct Rejected {
    pub status: u16,
    /// The configured body (or the webhook's); the proxy shapes it for the client.
    pub body: Bytes,
    pub headers: super::config::HeaderEdits,
    /// `regex[0]`, `webhook[1]`... and what fired, for the log (never the matched text).
    pub by: String,
}

impl Rejected {
    pub fn from(r: &Rejection, by: String) -> Rejected {
        Rejected {
            status: r.status,
            body: Bytes::copy_from_slice(&r.body),
            headers: r.headers.clone(),
            by,
        }
    }
}

/// What a remote guard needs from the request.
pub struct Remote<'a> {
    pub transport: &'a dyn Transport,
    pub log: &'a RequestLog,
    pub headers: &'a HeaderMap,
}

/// Runs the request guards over `body` (client format `route`). `Ok(true)` when a guard
/// changed the body. Outcomes go to `info`.
pub async fn check(
    pg: &PromptGuard,
    route: RouteType,
    body: &mut Value,
    remote: &Remote<'_>,
    info: &mut GuardInfo,
) -> Result<bool, Rejected> {
    let mut changed = false;
    for g in &pg.request {
        changed |= run(g, route, body, remote, info).await?;
    }
    Ok(changed)
}

async fn run(
    g: &Guard,
    route: RouteType,
    body: &mut Value,
    remote: &Remote<'_>,
    info: &mut GuardInfo,
) -> Result<bool, Rejected> {
    let t = Timer::start(GuardPhase::Request, g.kind.name(), g.index);
    match &g.kind {
        GuardKind::Regex { action, rules } => {
            let mut found = Found::default();
            let mut hits = Vec::new();
            let mut changed = false;
            let mut rejected = false;
            text::request(route, body, g.scope, &mut |_, _, s| {
                if rejected {
                    return;
                }
                match action {
                    Action::Mask => {
                        if let Some(m) = rules.mask(s, &mut hits) {
                            *s = m;
                            changed = true;
                        }
                    }
                    Action::Reject => {
                        if let Some(h) = rules.first_hit(s) {
                            hits.push(h);
                            rejected = true;
                        }
                    }
                }
            });
            for h in &hits {
                found.rule(rule_name(rules.pattern(h.pattern)));
            }
            if rejected {
                found.action = GuardAction::Reject;
                let by = format!("regex[{}] ({})", g.index, found.rules[0].0);
                info.record(t, found);
                return Err(Rejected::from(&g.rejection, by));
            }
            if changed {
                found.action = GuardAction::Mask;
                found.masked = hits.len() as u32;
            }
            info.record(t, found);
            Ok(changed)
        }
        GuardKind::Webhook(w) => {
            let texts = collect(route, body, g);
            if texts.is_empty() {
                info.record(t, Found::default());
                return Ok(false);
            }
            let called = webhook::call_webhook(
                w,
                remote.transport,
                remote.log,
                remote.headers,
                true,
                &texts,
            )
            .await;
            let fail_open = w.fail_open;
            settle(g, t, called, fail_open, info, |replacements| {
                let mut it = replacements.into_iter();
                let mut changed = false;
                text::request(route, body, g.scope, &mut |_, _, s| {
                    if let Some(r) = it.next()
                        && *s != r
                    {
                        *s = r;
                        changed = true;
                    }
                });
                changed
            })
        }
        GuardKind::Moderation(m) => {
            let texts = collect(route, body, g);
            if texts.is_empty() {
                info.record(t, Found::default());
                return Ok(false);
            }
            let called = webhook::call_moderation(m, remote.transport, &texts).await;
            // The moderation API is OpenAI's; when it cannot answer the request is refused,
            // as a failed webhook is by default.
            settle(g, t, called, false, info, |_| false)
        }
    }
}

/// The texts a remote guard is sent: (role, content) in document order.
fn collect(route: RouteType, body: &mut Value, g: &Guard) -> Vec<(String, String)> {
    let mut texts = Vec::new();
    text::request(route, body, g.scope, &mut |_, role, s| {
        texts.push((role.to_owned(), s.clone()))
    });
    texts
}

/// Applies a remote verdict: pass, mask (via `apply`), reject, or a failure settled by the
/// failure mode.
pub(super) fn settle(
    g: &Guard,
    t: Timer,
    called: Called,
    fail_open: bool,
    info: &mut GuardInfo,
    apply: impl FnOnce(Vec<String>) -> bool,
) -> Result<bool, Rejected> {
    let mut found = Found {
        http: Some(called.http),
        ..Found::default()
    };
    let kind = g.kind.name();
    match called.result {
        Ok(Verdict::Pass) => {
            info.record(t, found);
            Ok(false)
        }
        Ok(Verdict::Mask(texts)) => {
            let changed = apply(texts);
            if changed {
                found.action = GuardAction::Mask;
                found.masked = 1;
                found.rule(kind.to_owned());
            }
            info.record(t, found);
            Ok(changed)
        }
        Ok(Verdict::Reject {
            status,
            body,
            reason,
        }) => {
            found.action = GuardAction::Reject;
            found.rule(kind.to_owned());
            let by = match &reason {
                Some(r) => format!("{kind}[{}] ({r})", g.index),
                None => format!("{kind}[{}]", g.index),
            };
            info.record(t, found);
            Err(Rejected {
                status,
                body: Bytes::from(body),
                headers: g.rejection.headers.clone(),
                by,
            })
        }
        Ok(Verdict::Flagged(cats)) => {
            found.action = GuardAction::Reject;
            for c in &cats {
                found.rule(format!("{kind}:{c}"));
            }
            if cats.is_empty() {
                found.rule(kind.to_owned());
            }
            let by = format!("{kind}[{}] ({})", g.index, cats.join(","));
            info.record(t, found);
            Err(Rejected::from(&g.rejection, by))
        }
        Err(e) if fail_open => {
            found.action = GuardAction::FailOpen;
            found.error = Some(e);
            info.record(t, found);
            Ok(false)
        }
        Err(e) => {
            found.action = GuardAction::Reject;
            found.error = Some(e.clone());
            info.record(t, found);
            Err(Rejected {
                status: 503,
                body: Bytes::from(format!(
                    "the {kind} guard could not check this request: {e}"
                )),
                headers: (Vec::new(), Vec::new()),
                by: format!("{kind}[{}] (unavailable, failClosed)", g.index),
            })
        }
    }
}
